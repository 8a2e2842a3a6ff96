//! `kiln up` (both planes in one process) and `kiln demo` (the whole story on the bundled
//! data, from an empty state) end to end.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use serde_json::{Value, json};

use super::serve::{fixture, fixtures, rt};
use super::train::{repo, text};
use crate::kiln_bin;

#[test]
fn up_runs_the_control_plane_and_serves_every_deployment() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("kiln.toml");
    std::fs::copy(
        fixtures().join("gb_classifier.onnx"),
        dir.path().join("gb.onnx"),
    )
    .unwrap();
    // The model path is relative to the project file.
    std::fs::write(
        &config,
        "[deploy.gb]\nmodel = \"gb.onnx\"\nslo = { p99_ms = 100 }\n",
    )
    .unwrap();
    let mut child = Command::new(kiln_bin())
        .args(["up", "--port", "0", "--serve-port", "0", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path().join("state"))
        .env("KILN_LOG", "warn")
        .current_dir("/")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let (mut control, mut data) = (None, None);
    for _ in 0..2 {
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        let line = line.trim().to_string();
        if let Some(u) = line.strip_prefix("Control plane listening on ") {
            control = Some(u.to_string());
        } else if let Some(u) = line.strip_prefix("Data plane listening on ") {
            data = Some(u.to_string());
        } else {
            panic!("unexpected line {line:?}");
        }
    }
    let (control, data) = (control.unwrap(), data.unwrap());
    let (rows, probs) = fixture();
    let rt = rt();
    let c = reqwest::Client::new();
    rt.block_on(async {
        // The control plane: MLflow's API.
        let r = c
            .post(format!("{control}/api/2.0/mlflow/experiments/create"))
            .json(&json!({"name": "up"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        // The data plane: the declared deployment, ready and predicting.
        let r = c
            .get(format!("{data}/v2/models/gb/ready"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let r: Value = c
            .post(format!("{data}/invocations"))
            .json(&json!({"inputs": [rows[0].clone()]}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let p = r["predictions"][0]["probabilities"][1]
            .as_f64()
            .or_else(|| r["predictions"][0][1].as_f64())
            .unwrap_or_else(|| panic!("{r}"));
        assert!((p - probs[0][1] as f64).abs() < 1e-5, "{r}");
    });
    // SIGTERM stops both planes cleanly.
    let pid = child.id() as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

#[test]
fn demo_tells_the_whole_story_from_an_empty_state() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("state");
    let out = Command::new(kiln_bin())
        .args(["demo", "--config"])
        .arg(repo().join("kiln.toml"))
        .arg("--data-dir")
        .arg(&data)
        .env("KILN_LOG", "warn")
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}",
        text(&out.stderr)
    );
    for want in [
        "[1/7] Validating the data",
        "rows quarantined to",
        "[2/7] kiln apply",
        "`delay@champion` is version",
        "[3/7] A candidate model",
        "monitor rolled the canary back to 0%",
        "CanaryRolledBack",
        "training months: no input drift",
        "the InputDrift alert fired and paged",
        "labels for 120 requests stored",
        "[7/7] Report",
        "input drift starts",
        "kiln apply 1: deploy.delay created",
        "Where to look next",
    ] {
        assert!(stdout.contains(want), "`{want}` missing from:\n{stdout}");
    }
    // `kiln apply`'s plan and progress go to stderr.
    let stderr = text(&out.stderr);
    for want in ["+ train.delay_search", "[5/8] train.delay_search (Create)"] {
        assert!(stderr.contains(want), "`{want}` missing from:\n{stderr}");
    }
    // The state it leaves is the platform's own: nothing left to apply, incidents listed.
    let config = data.join("demo/kiln.toml");
    let plan = Command::new(kiln_bin())
        .args(["plan", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(&data)
        .env("KILN_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        text(&plan.stdout).starts_with("No changes"),
        "{}{}",
        text(&plan.stdout),
        text(&plan.stderr)
    );
    let list = Command::new(kiln_bin())
        .args(["incidents", "list", "--json", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    let incidents: Value = serde_json::from_slice(&list.stdout).unwrap();
    let titles: Vec<&str> = incidents
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["title"].as_str().unwrap())
        .collect();
    assert!(
        titles.iter().any(|t| t.starts_with("CanaryRolledBack")),
        "{titles:?}"
    );
    assert!(
        titles.iter().any(|t| t.contains("InputDrift")),
        "{titles:?}"
    );
}
