//! `kiln loadtest` end to end: a real `kiln serve` process serving the GradientBoosting
//! fixture (input `X`, FP32 `[-1, 30]`), loaded by the `kiln loadtest` binary in open-loop
//! mode (OIP JSON and binary, `/invocations`) and through a concurrency sweep; the JSON
//! report's counts and percentiles, and the exit status of an SLO verdict.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};

use serde_json::Value;

use crate::kiln_bin;

struct Served {
    child: Child,
    url: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve_gb() -> Served {
    let model = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/onnx/gb_classifier.onnx");
    let mut child = Command::new(kiln_bin())
        .args(["serve", "--port", "0", "--model"])
        .arg(format!("gb={}", model.display()))
        .env("KILN_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("kiln serve starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("Listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    Served { child, url }
}

fn loadtest(url: &str, args: &[&str]) -> Output {
    Command::new(kiln_bin())
        .args(["loadtest", "--url", url])
        .args(args)
        .env("KILN_LOG", "warn")
        .output()
        .expect("kiln loadtest runs")
}

fn report(out: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {stdout}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// Errors zero, and the latency percentiles positive and in order.
fn assert_clean(figures: &Value) {
    assert_eq!(figures["errors"], 0, "{figures}");
    assert_eq!(figures["requests"], figures["ok"], "{figures}");
    let l = &figures["latency_ms"];
    let p: Vec<f64> = ["p50", "p90", "p99", "p999", "max"]
        .iter()
        .map(|k| f(&l[*k]))
        .collect();
    assert!(p[0] > 0.0, "{l}");
    assert!(
        p.windows(2).all(|w| w[0] <= w[1]),
        "percentiles out of order: {l}"
    );
}

#[test]
fn open_loop_against_kiln_serve_counts_every_request_and_checks_an_slo() {
    let server = serve_gb();
    let url = server.url.as_str();

    // 200 req/s for 2 s: 400 requests, all answered, at about the offered rate.
    let r = report(&loadtest(
        url,
        &[
            "--model",
            "gb",
            "--rate",
            "200",
            "--duration",
            "2s",
            "--json",
        ],
    ));
    assert_eq!(r["mode"], "open_loop", "{r}");
    assert_eq!(r["requests"], 400, "{r}");
    assert_clean(&r);
    let tp = f(&r["throughput_rps"]);
    assert!(tp > 150.0 && tp <= 200.5, "throughput {tp}");
    assert_eq!(r["rows_per_s"], r["throughput_rps"]);
    assert_eq!(r["target"]["endpoint"], format!("{url}/v2/models/gb/infer"));
    assert_eq!(r["target"]["rows_per_request"], 1);
    assert!(r["schedule_lag_ms"]["p99_ms"].is_number(), "{r}");

    // Binary tensors with 4 rows a request, and MLflow's /invocations, after a warmup.
    let r = report(&loadtest(
        url,
        &[
            "--model",
            "gb",
            "--binary",
            "--rows",
            "4",
            "--rate",
            "50",
            "--duration",
            "1s",
            "--json",
        ],
    ));
    assert_eq!(
        (r["requests"].as_u64(), r["target"]["body"].as_str()),
        (Some(50), Some("oip-binary"))
    );
    assert_clean(&r);
    assert!((f(&r["rows_per_s"]) - 4.0 * f(&r["throughput_rps"])).abs() < 1e-6);
    let r = report(&loadtest(
        url,
        &[
            "--protocol",
            "invocations",
            "--model",
            "gb",
            "--rate",
            "50",
            "--duration",
            "1s",
            "--warmup",
            "500ms",
            "--json",
        ],
    ));
    assert_eq!(
        r["target"]["endpoint"],
        format!("{url}/invocations?model=gb")
    );
    assert_eq!(r["requests"], 50, "{r}");
    assert_clean(&r);

    // An SLO no server meets: exit 1, the failed objective named with its measured value.
    let out = loadtest(
        url,
        &[
            "--model",
            "gb",
            "--rate",
            "50",
            "--duration",
            "1s",
            "--slo",
            "p99=0.001ms,error_rate=1%",
        ],
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{table}");
    assert!(table.contains("SLO FAIL"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.contains("FAIL") && l.contains("p99<=0.001ms") && l.contains("measured")),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.contains("PASS") && l.contains("error_rate<=1%")),
        "{table}"
    );
    // The same run as JSON carries the verdict too.
    let out = loadtest(
        url,
        &[
            "--model",
            "gb",
            "--rate",
            "20",
            "--duration",
            "500ms",
            "--slo",
            "p99=0.001ms",
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["slo"]["pass"], false, "{v}");
    assert_eq!(v["slo"]["checks"][0]["objective"], "p99<=0.001ms");
    assert!(f(&v["slo"]["checks"][0]["measured"]) > 0.001, "{v}");
    // A met SLO exits 0.
    let out = loadtest(
        url,
        &[
            "--model",
            "gb",
            "--rate",
            "20",
            "--duration",
            "500ms",
            "--slo",
            "p99=10s,error_rate=0%",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // A model the server does not have: exit 2 with the server's answer.
    let out = loadtest(
        url,
        &["--model", "nope", "--rate", "10", "--duration", "1s"],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("404") && err.contains("/v2/models/nope"),
        "{err}"
    );
}

#[test]
fn concurrency_sweep_against_kiln_serve_reports_each_level() {
    let server = serve_gb();
    let r = report(&loadtest(
        &server.url,
        &[
            "--model",
            "gb",
            "--concurrency",
            "1,2",
            "--window",
            "500ms",
            "--max-windows",
            "6",
            "--json",
        ],
    ));
    assert_eq!(r["mode"], "sweep", "{r}");
    let levels = r["levels"].as_array().unwrap();
    assert_eq!(levels.len(), 2, "{r}");
    for (level, want) in levels.iter().zip([1, 2]) {
        assert_eq!(level["concurrency"], want);
        assert_clean(level);
        assert!(level["requests"].as_u64().unwrap() > 10, "{level}");
        let windows = level["windows_measured"].as_u64().unwrap();
        assert!((3..=6).contains(&windows), "{level}");
        assert_eq!(level["windows"].as_array().unwrap().len() as u64, windows);
        // The figures are the last three windows': about 1.5 s.
        let secs = f(&level["elapsed_s"]);
        assert!(secs > 1.3 && secs < 2.5, "{level}");
        assert!(level["stable"].is_boolean());
    }
    // The table says the same for people.
    let out = loadtest(
        &server.url,
        &[
            "--model",
            "gb",
            "--concurrency",
            "1",
            "--window",
            "300ms",
            "--max-windows",
            "3",
        ],
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{table}");
    assert!(
        table.contains("concurrency") && table.contains("p99.9 ms"),
        "{table}"
    );
    assert!(table.contains("windows"), "{table}");
}
