//! kill -9 the server while clients log; every acknowledged write must survive.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kiln_testkit::{ServerProcess, TestDb};
use serde_json::{Value, json};

use crate::kiln_bin;

async fn crash_while_logging(db: &TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let store_args = ["--store", db.url.as_str()];
    let mut server = ServerProcess::start(&kiln_bin(), dir.path(), &store_args);
    let api = format!("{}/api/2.0/mlflow", server.url);
    let http = reqwest::Client::new();
    let run: Value = http
        .post(format!("{api}/runs/create"))
        .json(&json!({"experiment_id": "0"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let run_id = run["run"]["info"]["run_id"].as_str().unwrap().to_string();

    let acked: Arc<Mutex<Vec<(usize, i64)>>> = Arc::default();
    let mut writers = Vec::new();
    for w in 0..4usize {
        let (http, api, run_id, acked) = (http.clone(), api.clone(), run_id.clone(), acked.clone());
        writers.push(tokio::spawn(async move {
            for step in 0..i64::MAX {
                let res = http
                    .post(format!("{api}/runs/log-metric"))
                    .json(
                        &json!({"run_id": run_id, "key": format!("w{w}"), "value": step as f64,
                                  "timestamp": 1, "step": step}),
                    )
                    .send()
                    .await;
                match res {
                    Ok(r) if r.status() == 200 => acked.lock().unwrap().push((w, step)),
                    // The server died mid-request: that write was not acknowledged.
                    _ => return,
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.kill_hard();
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 50,
        "{}: too few writes before the crash: {}",
        db.kind,
        acked.len()
    );

    let server = ServerProcess::start(&kiln_bin(), dir.path(), &store_args);
    let api = format!("{}/api/2.0/mlflow", server.url);
    for w in 0..4 {
        let hist: Value = http
            .get(format!("{api}/metrics/get-history"))
            .query(&[
                ("run_id", run_id.as_str()),
                ("metric_key", &format!("w{w}")),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let steps: std::collections::HashSet<i64> = hist["metrics"]
            .as_array()
            .map(|a| a.iter().map(|m| m["step"].as_i64().unwrap()).collect())
            .unwrap_or_default();
        for (_, step) in acked.iter().filter(|(aw, _)| *aw == w) {
            assert!(
                steps.contains(step),
                "{}: acknowledged write w{w} step {step} was lost in the crash",
                db.kind
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_writes_survive_kill_9() {
    for db in TestDb::all().await {
        crash_while_logging(&db).await;
    }
}
