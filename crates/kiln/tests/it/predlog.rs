//! The prediction log end to end: a real `kiln serve` on the GradientBoosting fixture with
//! `--prediction-log DIR`, requests over OIP (JSON and binary) and `/invocations` with and
//! without request ids, a graceful stop (SIGTERM), a restart on the same directory, more
//! requests, another stop; then every logged row is read back from the Parquet files and
//! compared with what was sent and what was answered.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kiln_data::plain::{PlainColumn, PlainTable};
use serde_json::{Value, json};

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

fn model() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/onnx/gb_classifier.onnx")
}

fn serve(args: &[&str]) -> Served {
    let mut child = Command::new(kiln_bin())
        .args(["serve", "--port", "0", "--model"])
        .arg(format!("gb={}", model().display()))
        .args(args)
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

/// SIGTERM, then the exit status must be success.
fn stop(mut s: Served) {
    let pid = s.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    assert!(
        s.child.wait().unwrap().success(),
        "kiln serve failed to stop cleanly"
    );
}

/// The fixture's first clean rows (30 floats each).
fn rows(n: usize) -> Vec<Vec<f32>> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/onnx/data/breast_cancer.json");
    let x: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let flat: Vec<f32> = x["tensors"][0]["data"]
        .as_array()
        .unwrap()
        .iter()
        .take(n * 30)
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    flat.chunks(30).map(<[f32]>::to_vec).collect()
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

/// What one request sent and got back.
struct Sent {
    id: String,
    inputs: Vec<Vec<f32>>,
    labels: Vec<i64>,
    probs: Vec<[f64; 2]>,
    sent_us: i64,
    answered_us: i64,
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// OIP JSON: `body_id` in the body, `header_id` as `X-Request-Id`; the answer's id header.
async fn oip_json(
    c: &reqwest::Client,
    url: &str,
    x: &[Vec<f32>],
    body_id: Option<&str>,
    header_id: Option<&str>,
) -> Sent {
    let mut body = json!({
        "inputs": [{"name": "X", "datatype": "FP32", "shape": [x.len(), 30], "data": x.concat()}],
    });
    if let Some(id) = body_id {
        body["id"] = json!(id);
    }
    let mut req = c.post(format!("{url}/v2/models/gb/infer")).json(&body);
    if let Some(h) = header_id {
        req = req.header("X-Request-Id", h);
    }
    let sent_us = now_us();
    let r = req.send().await.unwrap();
    let answered_us = now_us();
    assert_eq!(r.status(), 200);
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    let v: Value = r.json().await.unwrap();
    let out = |name: &str| {
        v["outputs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["name"] == name)
            .unwrap_or_else(|| panic!("no output {name}: {v}"))["data"]
            .as_array()
            .unwrap()
            .clone()
    };
    let labels = out("label").iter().map(|l| l.as_i64().unwrap()).collect();
    let probs = out("probabilities")
        .chunks(2)
        .map(|p| [p[0].as_f64().unwrap(), p[1].as_f64().unwrap()])
        .collect();
    Sent {
        id,
        inputs: x.to_vec(),
        labels,
        probs,
        sent_us,
        answered_us,
    }
}

/// OIP with the binary tensor extension (as tritonclient sends it), binary outputs.
async fn oip_binary(c: &reqwest::Client, url: &str, x: &[Vec<f32>], id: &str) -> Sent {
    let raw: Vec<u8> = x.concat().iter().flat_map(|f| f.to_le_bytes()).collect();
    let header = json!({
        "id": id,
        "inputs": [{"name": "X", "datatype": "FP32", "shape": [x.len(), 30],
                    "parameters": {"binary_data_size": raw.len()}}],
        "outputs": [{"name": "label", "parameters": {"binary_data": true}},
                    {"name": "probabilities", "parameters": {"binary_data": true}}],
    })
    .to_string();
    let mut body = header.clone().into_bytes();
    body.extend_from_slice(&raw);
    let sent_us = now_us();
    let r = c
        .post(format!("{url}/v2/models/gb/infer"))
        .header("Inference-Header-Content-Length", header.len().to_string())
        .body(body)
        .send()
        .await
        .unwrap();
    let answered_us = now_us();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-request-id"], id);
    let hl: usize = r.headers()["inference-header-content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let bytes = r.bytes().await.unwrap();
    let head: Value = serde_json::from_slice(&bytes[..hl]).unwrap();
    let mut at = hl;
    let mut parts: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for o in head["outputs"].as_array().unwrap() {
        let n = o["parameters"]["binary_data_size"].as_u64().unwrap() as usize;
        parts.insert(
            o["name"].as_str().unwrap().to_string(),
            bytes[at..at + n].to_vec(),
        );
        at += n;
    }
    let labels = parts["label"]
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
        .collect();
    let probs = parts["probabilities"]
        .chunks_exact(8)
        .map(|b| {
            [
                f64::from(f32::from_le_bytes(b[..4].try_into().unwrap())),
                f64::from(f32::from_le_bytes(b[4..].try_into().unwrap())),
            ]
        })
        .collect();
    Sent {
        id: id.to_string(),
        inputs: x.to_vec(),
        labels,
        probs,
        sent_us,
        answered_us,
    }
}

/// MLflow scoring, `{"inputs": [[…], …]}`.
async fn invocations(c: &reqwest::Client, url: &str, x: &[Vec<f32>], id: Option<&str>) -> Sent {
    let mut req = c
        .post(format!("{url}/invocations"))
        .json(&json!({ "inputs": x }));
    if let Some(id) = id {
        req = req.header("X-Request-Id", id);
    }
    let sent_us = now_us();
    let r = req.send().await.unwrap();
    let answered_us = now_us();
    assert_eq!(r.status(), 200);
    let got = r.headers()["x-request-id"].to_str().unwrap().to_string();
    if let Some(id) = id {
        assert_eq!(got, id);
    }
    let v: Value = r.json().await.unwrap();
    let preds = v["predictions"].as_array().unwrap();
    let labels = preds.iter().map(|p| p["label"].as_i64().unwrap()).collect();
    let probs = preds
        .iter()
        .map(|p| {
            let q = p["probabilities"].as_array().unwrap();
            [q[0].as_f64().unwrap(), q[1].as_f64().unwrap()]
        })
        .collect();
    Sent {
        id: got,
        inputs: x.to_vec(),
        labels,
        probs,
        sent_us,
        answered_us,
    }
}

async fn metric(c: &reqwest::Client, url: &str, name: &str) -> f64 {
    let text = c
        .get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
        .parse()
        .unwrap()
}

fn col<'a>(t: &'a PlainTable, name: &str) -> &'a PlainColumn {
    t.column(name)
        .unwrap_or_else(|| panic!("no column {name}: {:?}", t.names()))
}

/// Every row of `t`, by (request id, row): checks each against what was sent and answered.
fn check(t: &PlainTable, sent: &[Sent]) {
    let total: usize = sent.iter().map(|s| s.inputs.len()).sum();
    assert_eq!(t.height(), total, "logged rows");
    let (
        PlainColumn::Str(ids),
        PlainColumn::I64(row),
        PlainColumn::Timestamp(time),
        PlainColumn::Str(model),
        PlainColumn::Str(version),
        PlainColumn::I64(latency),
        PlainColumn::I64(label),
    ) = (
        col(t, "request_id"),
        col(t, "row"),
        col(t, "time"),
        col(t, "model"),
        col(t, "version"),
        col(t, "latency_us"),
        col(t, "label"),
    )
    else {
        panic!("unexpected column types: {t:?}")
    };
    let mut at: BTreeMap<(String, i64), usize> = BTreeMap::new();
    for i in 0..t.height() {
        let key = (ids[i].clone().unwrap(), row[i].unwrap());
        assert!(at.insert(key.clone(), i).is_none(), "{key:?} logged twice");
    }
    let f = |name: &str, i: usize| match col(t, name) {
        PlainColumn::F64(v) => v[i],
        other => panic!("{name}: {other:?}"),
    };
    for s in sent {
        for (r, x) in s.inputs.iter().enumerate() {
            let i = *at
                .get(&(s.id.clone(), r as i64))
                .unwrap_or_else(|| panic!("request {} row {r} is not in the log", s.id));
            assert_eq!(model[i].as_deref(), Some("gb"));
            assert_eq!(version[i].as_deref(), Some("1"));
            let t_us = time[i].unwrap();
            assert!(
                t_us >= s.sent_us - 1_000 && t_us <= s.answered_us,
                "{}: time {t_us} outside [{}, {}]",
                s.id,
                s.sent_us,
                s.answered_us
            );
            let lat = latency[i].unwrap();
            assert!(
                lat > 0 && lat <= s.answered_us - s.sent_us,
                "{}: latency {lat}",
                s.id
            );
            for (j, v) in x.iter().enumerate() {
                assert_eq!(
                    f(&format!("X_{j}"), i),
                    Some(f64::from(*v)),
                    "{} X_{j}",
                    s.id
                );
            }
            assert_eq!(label[i], Some(s.labels[r]), "{} label", s.id);
            for k in 0..2 {
                let got = f(&format!("probabilities_{k}"), i).unwrap();
                // JSON answers print f32 values in shortest form; compare as f32.
                assert_eq!(
                    got as f32, s.probs[r][k] as f32,
                    "{} probabilities_{k}",
                    s.id
                );
            }
        }
    }
}

fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn every_prediction_is_logged_across_a_graceful_restart() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let log_arg = log.to_str().unwrap();
    let x = rows(20);
    let rt = rt();
    let c = reqwest::Client::new();
    let mut sent = vec![];

    // First run: nothing reaches a file before shutdown (the bounds are far away).
    let server = serve(&["--prediction-log", log_arg, "--log-flush-seconds", "3600"]);
    let url = server.url.clone();
    rt.block_on(async {
        sent.push(oip_json(&c, &url, &x[0..3], Some("oip-body"), Some("ignored")).await);
        assert_eq!(sent.last().unwrap().id, "oip-body");
        sent.push(oip_json(&c, &url, &x[3..4], None, Some("oip-header")).await);
        assert_eq!(sent.last().unwrap().id, "oip-header");
        // No id: the server makes one up and says which.
        sent.push(oip_json(&c, &url, &x[4..5], None, None).await);
        let made = &sent.last().unwrap().id;
        assert_eq!(made.len(), 36, "{made}");
        sent.push(oip_binary(&c, &url, &x[5..7], "oip-binary").await);
        sent.push(invocations(&c, &url, &x[7..9], Some("inv-1")).await);
        sent.push(invocations(&c, &url, &x[9..10], None).await);
        // A refused request is not a prediction.
        let r = c
            .post(format!("{url}/v2/models/gb/infer"))
            .json(
                &json!({"id": "bad", "inputs": [{"name": "X", "datatype": "FP32",
                          "shape": [1, 29], "data": vec![0.0; 29]}]}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        assert_eq!(metric(&c, &url, "kiln_predlog_records_total").await, 6.0);
        assert_eq!(metric(&c, &url, "kiln_predlog_buffered").await, 6.0);
        assert_eq!(metric(&c, &url, "kiln_predlog_dropped_total").await, 0.0);
        assert_eq!(metric(&c, &url, "kiln_predlog_flushes_total").await, 0.0);
    });
    assert!(parquet_files(&log).is_empty());
    stop(server);
    let first_files = parquet_files(&log);
    assert!(!first_files.is_empty());
    let first_bytes: Vec<Vec<u8>> = first_files
        .iter()
        .map(|f| std::fs::read(f).unwrap())
        .collect();

    // Second run on the same directory, writing by size as it goes.
    let server = serve(&["--prediction-log", log_arg, "--log-flush-rows", "4"]);
    let url = server.url.clone();
    rt.block_on(async {
        let wait_for_files = async |n: f64| {
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while metric(&c, &url, "kiln_predlog_flushes_total").await < n {
                assert!(
                    std::time::Instant::now() < deadline,
                    "no size-triggered write"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        for (i, chunk) in x[10..20].chunks(2).enumerate() {
            let id = format!("run2-{i}");
            sent.push(if i % 2 == 0 {
                oip_json(&c, &url, chunk, Some(&id), None).await
            } else {
                invocations(&c, &url, chunk, Some(&id)).await
            });
            // Every four rows make a file, before the stop.
            if i % 2 == 1 {
                wait_for_files((i / 2 + 1) as f64).await;
            }
        }
        assert_eq!(metric(&c, &url, "kiln_predlog_records_total").await, 5.0);
        assert_eq!(
            metric(&c, &url, "kiln_predlog_flush_errors_total").await,
            0.0
        );
    });
    stop(server);
    let files = parquet_files(&log);
    assert!(files.len() >= first_files.len() + 2, "{files:?}");
    // The first run's files are still there, unchanged.
    for (f, b) in first_files.iter().zip(&first_bytes) {
        assert_eq!(&std::fs::read(f).unwrap(), b, "{}", f.display());
    }
    let rel = files[0].strip_prefix(&log).unwrap().display().to_string();
    assert!(rel.starts_with("predictions/deployment=gb/date="), "{rel}");

    let store = kiln_store::ArtifactStore::open(log_arg).unwrap();
    let from = sent.iter().map(|s| s.sent_us).min().unwrap() / 1_000 - 1;
    let to = sent.iter().map(|s| s.answered_us).max().unwrap() / 1_000 + 1;
    let table = rt
        .block_on(kiln_monitor::predlog::read_predictions(
            &store, "gb", from, to,
        ))
        .unwrap();
    check(&table, &sent);
}

#[test]
fn sampling_at_zero_logs_nothing_but_still_answers_with_ids() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let server = serve(&[
        "--prediction-log",
        log.to_str().unwrap(),
        "--log-sample",
        "0",
    ]);
    let url = server.url.clone();
    let x = rows(2);
    let rt = rt();
    let c = reqwest::Client::new();
    rt.block_on(async {
        let a = oip_json(&c, &url, &x, Some("zero"), None).await;
        assert_eq!(a.id, "zero");
        let b = invocations(&c, &url, &x, None).await;
        assert_eq!(b.id.len(), 36);
        assert_eq!(metric(&c, &url, "kiln_predlog_records_total").await, 0.0);
    });
    stop(server);
    assert!(parquet_files(&log).is_empty());

    // Without a log, no id header and no predlog series.
    let server = serve(&[]);
    let url = server.url.clone();
    rt.block_on(async {
        let r = c
            .post(format!("{url}/invocations"))
            .json(&json!({ "inputs": x }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.headers().get("x-request-id").is_none());
        let text = c
            .get(format!("{url}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(!text.contains("kiln_predlog_"), "{text}");
    });

    // A sample rate outside [0, 1] is refused at start.
    let out = Command::new(kiln_bin())
        .args(["serve", "--port", "0", "--model"])
        .arg(format!("gb={}", model().display()))
        .args([
            "--prediction-log",
            log.to_str().unwrap(),
            "--log-sample",
            "1.5",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--log-sample"), "{err}");
}
