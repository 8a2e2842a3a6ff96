//! `kiln serve --monitor`: a canary made slow by fault injection is taken back to 0% traffic
//! by itself under load, with no failed request; a page alert reaches a webhook receiver as
//! an Alertmanager v4 payload; incidents record the evidence and the timeline; a canary
//! served through a registry alias takes the alias back to its previous holder.

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::kiln_bin;
use crate::serve::{fixture, fixtures, rt, serve};

#[test]
fn a_slow_canary_is_rolled_back_under_load_and_the_incident_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("state");
    let rt = rt();
    // The webhook receiver.
    let received: Arc<Mutex<Vec<Value>>> = Arc::default();
    let hook = {
        let received = received.clone();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |axum::Json(v): axum::Json<Value>| {
                let received = received.clone();
                async move {
                    received.lock().unwrap().push(v);
                    "ok"
                }
            }),
        );
        rt.spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}/hook")
    };
    let config = dir.path().join("kiln.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[deploy.gb]
canary = {{ rollback_when = ["error_rate > 0.05", "p99_ms > 20"], min_requests = 20, window = "3s" }}

[monitor.gb]
window = "3s"
receivers = [{{ name = "oncall", url = "{hook}" }}]
route = {{ receiver = "oncall", group_by = ["alertname"], group_wait = "0s", group_interval = "1s" }}
alerts = [{{ name = "HighLatency", when = "p99_ms > 20", for = "0s", severity = "page", runbook = "runbooks/high-latency.md", summary = "p99 of {{{{ $labels.version }}}} is {{{{ $value }}}} ms" }}]
"#
        ),
    )
    .unwrap();
    let model = fixtures().join("gb_classifier.onnx");
    let m = format!("gb={}", model.display());
    let (server, _) = serve(&[
        "--model",
        &m,
        "--model",
        &m,
        "--traffic",
        "gb=1:70,2:30",
        "--inject-latency",
        "gb=2:40",
        "--monitor",
        "--config",
        config.to_str().unwrap(),
        "--monitor-interval-ms",
        "250",
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    let url = server.url.clone();
    let (rows, _) = fixture();
    let rows: Vec<Vec<f32>> = rows
        .into_iter()
        .filter(|r| r.iter().all(|x| x.is_finite()))
        .collect();

    // Load from 4 clients until the canary is out of traffic (or 30 s pass).
    let started = Instant::now();
    let (answers, rolled_back_after) = rt.block_on(async {
        let c = reqwest::Client::new();
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut tasks = vec![];
        for k in 0..4 {
            let (c, url, rows, done) = (c.clone(), url.clone(), rows.clone(), done.clone());
            tasks.push(tokio::spawn(async move {
                let mut out: Vec<(u16, String, Instant)> = vec![];
                let mut i = k;
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    let r = c
                        .post(format!("{url}/invocations"))
                        .json(&json!({"inputs": [rows[i % rows.len()]]}))
                        .send()
                        .await
                        .unwrap();
                    let v = r
                        .headers()
                        .get("x-kiln-version")
                        .map(|v| v.to_str().unwrap().to_string())
                        .unwrap_or_default();
                    out.push((r.status().as_u16(), v, Instant::now()));
                    i += 4;
                }
                out
            }));
        }
        let mut rolled_back_after = None;
        while started.elapsed() < Duration::from_secs(30) {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let t: Value = c
                .get(format!("{url}/api/kiln/serve/models/gb/traffic"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if t["weights"]["2"] == 0 {
                rolled_back_after = Some(started.elapsed());
                assert_eq!(t["weights"]["1"], 100, "{t}");
                break;
            }
        }
        // Keep the load on a little after the rollback.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut all = vec![];
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        (all, rolled_back_after)
    });
    let after = rolled_back_after.expect("the canary was not rolled back within 30 s");
    // The canary needs a 3 s window of evidence; then one monitor interval.
    assert!(
        after < Duration::from_secs(15),
        "rolled back after {after:?}"
    );
    // No failed request, before, during or after.
    let failed: Vec<_> = answers.iter().filter(|(s, _, _)| *s != 200).collect();
    assert!(
        failed.is_empty(),
        "{} failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    let canary = answers.iter().filter(|(_, v, _)| v == "2").count();
    assert!(
        canary >= 20,
        "the canary served {canary} of {}",
        answers.len()
    );
    // Nothing reaches the canary once the rollback is visible (requests in flight at the
    // switch, which take 40 ms and more, aside).
    let cutoff = started + after + Duration::from_secs(1);
    let late = answers
        .iter()
        .filter(|(_, v, at)| v == "2" && *at > cutoff)
        .count();
    assert_eq!(late, 0, "canary answers after the rollback");

    // The webhook saw the page alert as an Alertmanager v4 payload.
    let deadline = Instant::now() + Duration::from_secs(10);
    let payload = loop {
        let got = received.lock().unwrap().clone();
        if let Some(p) = got
            .iter()
            .find(|p| p["commonLabels"]["alertname"] == "HighLatency")
        {
            break p.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no HighLatency notification: {got:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(payload["version"], "4", "{payload}");
    assert_eq!(payload["receiver"], "oncall");
    let alert = &payload["alerts"][0];
    assert_eq!(alert["labels"]["deployment"], "gb", "{payload}");
    assert_eq!(alert["labels"]["version"], "2", "{payload}");
    assert_eq!(alert["labels"]["severity"], "page", "{payload}");
    assert!(
        alert["annotations"]["runbook_url"]
            .as_str()
            .is_some_and(|r| r.contains("high-latency")),
        "{payload}"
    );
    drop(server);

    // Incidents: the rollback, with its evidence and timeline.
    let kiln = |args: &[&str]| {
        let out = Command::new(kiln_bin())
            .args(args)
            .args(["--data-dir", data.to_str().unwrap()])
            .env("KILN_LOG", "warn")
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let list: Value = serde_json::from_str(&kiln(&["incidents", "list", "--json"])).unwrap();
    let list = list.as_array().unwrap();
    let rollback = list
        .iter()
        .find(|i| i["title"].as_str().unwrap().starts_with("CanaryRolledBack"))
        .unwrap_or_else(|| panic!("no rollback incident: {list:?}"));
    let ev = &rollback["evidence"];
    assert_eq!(ev["canary"], "2", "{ev}");
    assert_eq!(ev["stable"], "1", "{ev}");
    assert_eq!(ev["condition"], "p99_ms > 20", "{ev}");
    assert!(
        ev["canary_indicators"]["p99_ms"].as_f64().unwrap() > 20.0,
        "{ev}"
    );
    assert!(
        ev["canary_indicators"]["requests"].as_f64().unwrap() >= 20.0,
        "{ev}"
    );
    assert!(
        ev["stable_indicators"]["p99_ms"].as_f64().unwrap_or(0.0)
            < ev["canary_indicators"]["p99_ms"].as_f64().unwrap(),
        "{ev}"
    );
    assert_eq!(ev["weights_after"], json!({"1": 100, "2": 0}), "{ev}");
    assert!(
        list.iter().any(|i| i["title"] == "HighLatency firing"),
        "no incident for the page alert: {list:?}"
    );
    let id = rollback["id"].to_string();
    let shown = kiln(&["incidents", "show", &id]);
    assert!(
        shown.contains("rollback") && shown.contains("v1:70,v2:30"),
        "{shown}"
    );
    assert!(shown.contains("likely trigger"), "{shown}");
    assert!(shown.contains("runbook: runbooks/rollback.md"), "{shown}");
    let out = kiln(&[
        "incidents",
        "resolve",
        &id,
        "--note",
        "fault injection drill",
    ]);
    assert!(out.contains("resolved"), "{out}");
    let open: Value = serde_json::from_str(&kiln(&["incidents", "list", "--json"])).unwrap();
    assert!(
        open.as_array()
            .unwrap()
            .iter()
            .all(|i| i["id"].as_i64() != rollback["id"].as_i64()),
        "{open}"
    );
}

/// `[deploy.NAME].slo` becomes burn-rate alerts in `kiln serve --monitor`: every request
/// slower than the objective burns the budget at 100×, which pages (and opens an incident);
/// `kiln alerts` lists the alert and silences it.
#[test]
fn an_slo_burning_its_budget_pages_and_can_be_silenced() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("state");
    let config = dir.path().join("kiln.toml");
    std::fs::write(&config, "[deploy.gb]\nslo = { p99_ms = 5 }\n").unwrap();
    let model = fixtures().join("gb_classifier.onnx");
    let (server, _) = serve(&[
        "--model",
        &format!("gb={}", model.display()),
        "--inject-latency",
        "gb=1:12",
        "--monitor",
        "--config",
        config.to_str().unwrap(),
        "--monitor-interval-ms",
        "200",
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    let (rows, _) = fixture();
    let row: Vec<f32> = rows
        .into_iter()
        .find(|r| r.iter().all(|x| x.is_finite()))
        .unwrap();
    let kiln = |args: &[&str]| {
        Command::new(kiln_bin())
            .args(args)
            .args(["--data-dir", data.to_str().unwrap()])
            .env("KILN_LOG", "warn")
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    let ok = |args: &[&str]| {
        let out = kiln(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    rt().block_on(async {
        let c = reqwest::Client::new();
        for _ in 0..30 {
            let r = c
                .post(format!("{}/invocations", server.url))
                .json(&json!({"inputs": [row]}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(15);
    let firing = loop {
        let v: Value =
            serde_json::from_str(&ok(&["alerts", "list", "--deployment", "gb", "--json"])).unwrap();
        let page = v["alerts"].as_array().and_then(|a| {
            a.iter()
                .find(|a| {
                    a["rule"] == "ErrorBudgetBurn"
                        && a["state"] == "firing"
                        && a["labels"]["severity"] == "page"
                })
                .cloned()
        });
        if let Some(p) = page {
            break p;
        }
        assert!(Instant::now() < deadline, "no page-level burn alert: {v}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(firing["labels"]["slo"], "gb-latency-p99", "{firing}");
    assert!(firing["value"].as_f64().unwrap() > 14.4, "{firing}");
    // Each page-level burn window opened an incident that links the latency runbook; the
    // ticket-level one did not.
    let incidents: Value = serde_json::from_str(&ok(&["incidents", "list", "--json"])).unwrap();
    let burns = incidents
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["title"] == "ErrorBudgetBurn firing")
        .count();
    assert_eq!(burns, 2, "{incidents}");
    let inc = incidents
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["title"] == "ErrorBudgetBurn firing")
        .unwrap_or_else(|| panic!("{incidents}"));
    assert_eq!(inc["runbook"], "runbooks/high-latency.md", "{inc}");
    // Silences: a bad matcher is refused by name; a good one mutes the alert.
    let out = kiln(&[
        "alerts",
        "silence",
        "alertname~Error",
        "--deployment",
        "gb",
        "--for",
        "1h",
        "--comment",
        "drill",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("alertname~Error"));
    let out = ok(&[
        "alerts",
        "silence",
        "alertname=ErrorBudgetBurn",
        "--deployment",
        "gb",
        "--for",
        "1h",
        "--comment",
        "drill",
    ]);
    assert!(out.starts_with("silence "), "{out}");
    let listed = ok(&["alerts", "list", "--deployment", "gb"]);
    assert!(
        listed.contains("(silenced)") && listed.contains("drill"),
        "{listed}"
    );
    drop(server);
}

/// An MLflow model's metadata for the ONNX fixture (`mlflow.onnx.log_model`).
const MLMODEL: &str = "artifact_path: model
flavors:
  onnx:
    code: null
    onnx_model: model.onnx
    providers: []
  python_function:
    loader_module: mlflow.onnx
";

/// A canary loaded through a registry alias (`gb@champion`, which an MLflow client had moved
/// from version 1 to version 2) that breaches `[deploy.gb].canary.rollback_when` is taken
/// back to 0% by the monitor, which also moves `champion` back to version 1 in the registry,
/// as a `rollback` by `kiln monitor`; the incident's evidence and timeline show the move.
#[test]
fn a_canary_served_through_an_alias_is_rolled_back_in_the_registry_too() {
    use kiln_store::{CreateModelVersion, Store};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("state");
    std::fs::create_dir_all(&data).unwrap();
    let rt = rt();
    // Two registered versions of `gb` (the ONNX fixture as an MLflow model in the artifact
    // store), and `champion` set on version 1, then moved to version 2.
    let onnx = std::fs::read(fixtures().join("gb_classifier.onnx")).unwrap();
    let store = rt.block_on(async {
        let url = format!("sqlite://{}", data.join("kiln.db").display());
        let store = Store::open(&url).await.unwrap();
        store
            .create_registered_model("gb".into(), vec![], None)
            .await
            .unwrap();
        for v in ["1", "2"] {
            let path = format!("registered/gb-{v}/model");
            let local = data.join("artifacts").join(&path);
            std::fs::create_dir_all(&local).unwrap();
            std::fs::write(local.join("MLmodel"), MLMODEL).unwrap();
            std::fs::write(local.join("model.onnx"), &onnx).unwrap();
            let mv = store
                .create_model_version(CreateModelVersion {
                    name: "gb".into(),
                    source: format!("mlflow-artifacts:/{path}"),
                    ..Default::default()
                })
                .await
                .unwrap();
            assert_eq!(mv.version, v);
            store
                .set_registered_model_alias("gb".into(), "champion".into(), v)
                .await
                .unwrap();
        }
        store
    });
    let config = dir.path().join("kiln.toml");
    std::fs::write(
        &config,
        r#"
[deploy.gb]
canary = { rollback_when = ["p99_ms > 20"], min_requests = 20, window = "2s" }
"#,
    )
    .unwrap();
    // The stable version by number, the canary through the alias (version 2 now); the canary
    // is made slow.
    let (server, _) = serve(&[
        "--model",
        "gb=models:/gb/1",
        "--model",
        "gb=gb@champion",
        "--traffic",
        "gb=1:60,2:40",
        "--inject-latency",
        "gb=2:40",
        "--monitor",
        "--config",
        config.to_str().unwrap(),
        "--monitor-interval-ms",
        "250",
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    let url = server.url.clone();
    let (rows, _) = fixture();
    let rows: Vec<Vec<f32>> = rows
        .into_iter()
        .filter(|r| r.iter().all(|x| x.is_finite()))
        .collect();

    // Load from 4 clients until the rollback incident is open (or 30 s pass).
    let (incident, traffic, canary_answers) = rt.block_on(async {
        let c = reqwest::Client::new();
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut tasks = vec![];
        for k in 0..4 {
            let (c, url, rows, done) = (c.clone(), url.clone(), rows.clone(), done.clone());
            tasks.push(tokio::spawn(async move {
                let mut canary = 0;
                let mut i = k;
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    let r = c
                        .post(format!("{url}/invocations"))
                        .json(&json!({"inputs": [rows[i % rows.len()]]}))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 200);
                    if r.headers().get("x-kiln-version").is_some_and(|v| v == "2") {
                        canary += 1;
                    }
                    i += 4;
                }
                canary
            }));
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        let incident = loop {
            let open = store.incidents(false).await.unwrap();
            if let Some(i) = open
                .into_iter()
                .find(|i| i.title.starts_with("CanaryRolledBack"))
            {
                break i;
            }
            if Instant::now() > deadline {
                done.store(true, std::sync::atomic::Ordering::Relaxed);
                panic!("no rollback incident within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut canary = 0;
        for t in tasks {
            canary += t.await.unwrap();
        }
        let traffic: Value = c
            .get(format!("{url}/api/kiln/serve/models/gb/traffic"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        (incident, traffic, canary)
    });
    assert!(canary_answers >= 20, "the canary served {canary_answers}");
    // (a) The canary is out of traffic.
    assert_eq!(traffic["weights"], json!({"1": 100, "2": 0}), "{traffic}");
    drop(server);

    // (b) `champion` is back on version 1 in the registry, moved by the monitor as a rollback.
    let (holder, by_alias, history) = rt.block_on(async {
        (
            store.alias_holder("gb", "champion").await.unwrap(),
            store
                .get_model_version_by_alias("gb", "champion")
                .await
                .unwrap(),
            store.alias_history("gb", Some("champion")).await.unwrap(),
        )
    });
    assert_eq!(holder, Some(1), "{history:?}");
    assert_eq!(by_alias.version, "1");
    let moves: Vec<_> = history
        .iter()
        .map(|e| {
            (
                e.previous.as_deref(),
                e.version.as_deref(),
                e.action.as_str(),
                e.actor.as_str(),
            )
        })
        .collect();
    assert_eq!(
        moves,
        [
            (None, Some("1"), "set", "anonymous"),
            (Some("1"), Some("2"), "set", "anonymous"),
            (Some("2"), Some("1"), "rollback", "kiln monitor"),
        ],
        "{history:?}"
    );
    let last = history.last().unwrap();
    assert!(
        last.reason
            .as_deref()
            .is_some_and(|r| r.contains("p99_ms > 20")),
        "{last:?}"
    );

    // (c) The incident's evidence says the alias moved, from 2 to 1.
    let ev = &incident.evidence;
    assert_eq!(ev["canary"], "2", "{ev}");
    assert_eq!(ev["stable"], "1", "{ev}");
    assert_eq!(ev["condition"], "p99_ms > 20", "{ev}");
    assert_eq!(
        ev["alias"],
        json!({"alias": "champion", "moved": true, "from": "2", "to": "1"}),
        "{ev}"
    );
    // The incident's timeline shows the move, by the monitor.
    let out = Command::new(kiln_bin())
        .args(["incidents", "show", &incident.id.to_string(), "--json"])
        .args(["--data-dir", data.to_str().unwrap()])
        .env("KILN_LOG", "warn")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        shown["incident"]["evidence"]["alias"], ev["alias"],
        "{shown}"
    );
    let timeline = shown["timeline"].as_array().unwrap();
    let alias_move = timeline
        .iter()
        .find(|e| e["kind"] == "alias" && e["detail"]["action"] == "rollback")
        .unwrap_or_else(|| panic!("no alias rollback on the timeline: {shown:#}"));
    assert_eq!(alias_move["actor"], "kiln monitor", "{alias_move}");
    assert_eq!(alias_move["detail"]["alias"], "champion", "{alias_move}");
    assert_eq!(alias_move["detail"]["previous"], 2, "{alias_move}");
    assert_eq!(alias_move["detail"]["version"], 1, "{alias_move}");
    assert!(
        timeline
            .iter()
            .any(|e| e["kind"] == "rollback" && e["actor"] == "kiln monitor"),
        "{shown:#}"
    );
}
