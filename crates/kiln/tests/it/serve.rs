//! `kiln serve` end to end: a real server process on 127.0.0.1:0 serving the scikit-learn
//! GradientBoostingClassifier fixture (30 float inputs) over OIP v2 (JSON and binary
//! tensors) and MLflow's `/invocations`, compared with the fixture's onnxruntime outputs;
//! batching under concurrent load, bad input, and `/metrics`.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::kiln_bin;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/onnx")
}

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

fn serve(args: &[&str]) -> (Served, Duration) {
    let started = Instant::now();
    let mut child = Command::new(kiln_bin())
        .args(["serve", "--port", "0"])
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
    (Served { child, url }, started.elapsed())
}

/// The fixture's inputs (rows × 30) and onnxruntime's probabilities.
fn fixture() -> (Vec<Vec<f32>>, Vec<[f32; 2]>) {
    let x: Value =
        serde_json::from_slice(&std::fs::read(fixtures().join("data/breast_cancer.json")).unwrap())
            .unwrap();
    let t = &x["tensors"][0];
    let flat: Vec<f32> = t["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().map_or(f32::NAN, |f| f as f32))
        .collect();
    let rows: Vec<Vec<f32>> = flat.chunks(30).map(<[f32]>::to_vec).collect();
    let y: Value =
        serde_json::from_slice(&std::fs::read(fixtures().join("gb_classifier.json")).unwrap())
            .unwrap();
    let probs = y["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "probabilities")
        .unwrap()["data"]
        .as_array()
        .unwrap()
        .chunks(2)
        .map(|c| {
            [
                c[0].as_f64().unwrap_or(f64::NAN) as f32,
                c[1].as_f64().unwrap_or(f64::NAN) as f32,
            ]
        })
        .collect();
    (rows, probs)
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn serves_oip_and_mlflow_scoring_with_the_fixtures_outputs() {
    let model = fixtures().join("gb_classifier.onnx");
    let (server, cold) = serve(&[
        "--model",
        &format!("gb={}", model.display()),
        "--max-queue-delay-us",
        "3000",
        "--inference-threads",
        "1",
    ]);
    // Generous for a debug build on a loaded machine; bench/serve.sh measures release.
    assert!(cold < Duration::from_secs(5), "cold start {cold:?}");
    let url = server.url.clone();
    let (rows, probs) = fixture();
    let c = reqwest::Client::new();
    let rt = rt();

    rt.block_on(async {
        // Health and metadata.
        for (path, key) in [("/v2/health/live", "live"), ("/v2/health/ready", "ready")] {
            let r = c.get(format!("{url}{path}")).send().await.unwrap();
            assert_eq!(r.status(), 200, "{path}");
            let v: Value = r.json().await.unwrap();
            assert_eq!(v[key], true, "{path}: {v}");
        }
        let meta: Value = c
            .get(format!("{url}/v2/models/gb"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(meta["inputs"][0]["shape"], json!([-1, 30]), "{meta}");
        let r = c.get(format!("{url}/v2/models/gb/ready")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let r = c.get(format!("{url}/v2/models/nope/ready")).send().await.unwrap();
        assert_eq!(r.status(), 404);
        assert_eq!(
            c.get(format!("{url}/ping")).send().await.unwrap().status(),
            200
        );

        // OIP JSON: three rows, the id echoed, probabilities as onnxruntime's.
        let n = 3;
        let body = json!({
            "id": "req-42",
            "inputs": [{"name": meta["inputs"][0]["name"], "datatype": "FP32", "shape": [n, 30],
                        "data": rows[..n].concat()}],
            "outputs": [{"name": "probabilities"}],
        });
        let r = c
            .post(format!("{url}/v2/models/gb/infer"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["id"], "req-42");
        assert_eq!(v["model_name"], "gb");
        let out = &v["outputs"][0];
        assert_eq!(out["name"], "probabilities");
        assert_eq!(out["shape"], json!([n, 2]));
        for (i, p) in out["data"].as_array().unwrap().chunks(2).enumerate() {
            for k in 0..2 {
                let got = p[k].as_f64().unwrap() as f32;
                assert!((got - probs[i][k]).abs() < 1e-5, "row {i}: {got} vs {}", probs[i][k]);
            }
        }

        // OIP binary, as tritonclient sends it: JSON header, then raw little-endian floats.
        let input_name = meta["inputs"][0]["name"].as_str().unwrap().to_string();
        let raw: Vec<u8> = rows[..2].concat().iter().flat_map(|f| f.to_le_bytes()).collect();
        let header = json!({
            "inputs": [{"name": input_name, "datatype": "FP32", "shape": [2, 30],
                        "parameters": {"binary_data_size": raw.len()}}],
            "outputs": [{"name": "probabilities", "parameters": {"binary_data": true}}],
        })
        .to_string();
        let mut body = header.clone().into_bytes();
        body.extend_from_slice(&raw);
        let r = c
            .post(format!("{url}/v2/models/gb/infer"))
            .header("Inference-Header-Content-Length", header.len().to_string())
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let hl: usize = r.headers()["inference-header-content-length"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let bytes = r.bytes().await.unwrap();
        let head: Value = serde_json::from_slice(&bytes[..hl]).unwrap();
        assert_eq!(head["outputs"][0]["parameters"]["binary_data_size"], 16, "{head}");
        let got: Vec<f32> = bytes[hl..]
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        assert!((got[2] - probs[1][0]).abs() < 1e-5, "{got:?}");

        // MLflow scoring: dataframe_split, as `mlflow models serve` takes it.
        let cols: Vec<String> = (0..30).map(|i| format!("f{i}")).collect();
        let body = json!({"dataframe_split": {"columns": cols, "data": [rows[0].clone(), rows[1].clone()]}});
        let r = c
            .post(format!("{url}/invocations"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["predictions"].as_array().unwrap().len(), 2, "{v}");

        // Client mistakes are 4xx naming the field; never 5xx.
        let bad = json!({"inputs": [{"name": input_name, "datatype": "FP32", "shape": [1, 29],
                                     "data": vec![0.0; 29]}]});
        let r = c
            .post(format!("{url}/v2/models/gb/infer"))
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let v: Value = r.json().await.unwrap();
        assert!(v["error"].as_str().unwrap().contains("shape"), "{v}");
        let r = c
            .post(format!("{url}/v2/models/gb/infer"))
            .header("Inference-Header-Content-Length", "100000")
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let r = c
            .post(format!("{url}/invocations"))
            .header("content-type", "text/plain")
            .body("1,2")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 415);

        // Concurrent single-row requests share predictor calls.
        let mut tasks = vec![];
        for row in rows.iter().take(32) {
            let c = c.clone();
            let url = url.clone();
            let name = input_name.clone();
            let row = row.clone();
            tasks.push(tokio::spawn(async move {
                let body = json!({"inputs": [{"name": name, "datatype": "FP32", "shape": [1, 30], "data": row}]});
                c.post(format!("{url}/v2/models/gb/infer"))
                    .json(&body)
                    .send()
                    .await
                    .unwrap()
                    .status()
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), 200);
        }
        let m = c
            .get(format!("{url}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let value = |prefix: &str| -> f64 {
            m.lines()
                .find(|l| l.starts_with(prefix))
                .unwrap_or_else(|| panic!("{prefix} missing:\n{m}"))
                .rsplit(' ')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        };
        let requests = value("kiln_inference_requests_total{model=\"gb\",version=\"1\"}");
        assert!(requests >= 35.0, "{requests}");
        let failures = value("kiln_inference_failures_total{model=\"gb\",version=\"1\"}");
        assert!(failures >= 2.0, "{failures}");
        // Some request was answered in a batch of more than one row.
        let single = value("kiln_inference_batch_rows_bucket{model=\"gb\",version=\"1\",le=\"1\"}");
        let all = value("kiln_inference_batch_rows_count{model=\"gb\",version=\"1\"}");
        assert!(single < all, "no batching: {single} of {all} requests ran alone\n{m}");
        assert!(m.contains("kiln_inference_in_flight "), "{m}");

        // Triton's configuration and statistics extensions (what perf_analyzer reads).
        let cfg: Value = c
            .get(format!("{url}/v2/models/gb/config"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(cfg["max_batch_size"], 256, "{cfg}");
        assert_eq!(cfg["input"][0]["dims"], json!([30]), "{cfg}");
        assert_eq!(cfg["input"][0]["data_type"], "TYPE_FP32", "{cfg}");
        assert_eq!(cfg["dynamic_batching"]["max_queue_delay_microseconds"], 3000);
        let st: Value = c
            .get(format!("{url}/v2/models/gb/stats"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let ms = &st["model_stats"][0];
        let executions = ms["execution_count"].as_u64().unwrap();
        let inferred = ms["inference_stats"]["queue"]["count"].as_u64().unwrap();
        assert!(executions > 0 && executions < inferred, "batched: {st}");
        assert!(ms["inference_stats"]["compute_infer"]["ns"].as_u64().unwrap() > 0, "{st}");
        assert!(ms["inference_count"].as_u64().unwrap() >= 37, "{st}");
    });
    drop(server);
}

/// A registered Kiln package served by reference: raw rows (named columns, as the data
/// arrives) are encoded by the package's feature transform, as in training.
#[test]
fn serves_a_registered_package_on_raw_rows() {
    use crate::train::{kiln, ok_json, project};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("state");
    let config = project(
        dir.path(),
        r#"
[train.delay]
features = "delay"
algorithm = "gbdt"
register = "delay"
[train.delay.params]
num_rounds = 10
num_leaves = 7
seed = 1
"#,
    );
    let trained = ok_json(&kiln(&config, &data, &["train", "delay", "--json"]));
    assert_eq!(trained["registered"][1], "1");
    let (server, _) = serve(&[
        "--model",
        "delay=delay/1",
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    let url = server.url.clone();
    let row = |carrier: &str, origin: &str, hour: u32| {
        json!({
            "carrier": carrier, "origin": origin, "dest": "ORD", "month": 1,
            "sched_dep_time": hour * 100 + 15, "distance": 719,
            "temp": 39.02, "dewp": 26.06, "humid": 59.37, "wind_speed": 10.36,
            "wind_gust": null, "precip": 0.0, "pressure": 1012.0, "visib": 10.0,
            "time_hour": format!("2013-01-01 {hour:02}:00:00"),
        })
    };
    let rt = rt();
    rt.block_on(async {
        let c = reqwest::Client::new();
        let body = json!({"dataframe_records": [row("UA", "EWR", 5), row("AA", "LGA", 18)]});
        let r = c
            .post(format!("{url}/invocations"))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let v: Value = r.json().await.unwrap();
        assert_eq!(status, 200, "{v}");
        let preds = v["predictions"].as_array().unwrap();
        assert_eq!(preds.len(), 2, "{v}");
        // The same rows one at a time give the same answers (batching changes nothing).
        for (i, r) in [row("UA", "EWR", 5), row("AA", "LGA", 18)]
            .into_iter()
            .enumerate()
        {
            let one: Value = c
                .post(format!("{url}/invocations"))
                .json(&json!({"dataframe_records": [r]}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(one["predictions"][0], preds[i], "row {i}");
        }
        // A raw column missing from a row is named.
        let mut bad = row("UA", "EWR", 5);
        bad.as_object_mut().unwrap().remove("temp");
        let r = c
            .post(format!("{url}/invocations"))
            .json(&json!({"dataframe_records": [row("UA", "EWR", 5), bad]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let v: Value = r.json().await.unwrap();
        assert!(v["message"].as_str().unwrap().contains("temp"), "{v}");
        // Served version and platform are the registry's.
        let meta: Value = c
            .get(format!("{url}/v2/models/delay"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(meta["versions"], json!(["1"]));
        assert_eq!(meta["platform"], "kiln-native");
    });
    // The serving process is a deployment of version 1, found from the data it was built
    // from; a clean shutdown marks it stopped.
    let lineage = |data_dir: &std::path::Path| {
        let l = ok_json(&kiln(&config, data_dir, &["lineage", "delay/1", "--json"]));
        let flights = l["datasets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["name"] == "flights")
            .unwrap()["digest"]
            .as_str()
            .unwrap()
            .to_string();
        ok_json(&kiln(
            &config,
            data_dir,
            &[
                "lineage",
                "--dataset",
                &format!("flights@{}", &flights[..10]),
                "--json",
            ],
        ))
    };
    let d = lineage(&data);
    let dep = &d["versions"][0]["deployments"][0];
    assert_eq!(dep["name"], "delay", "{d:#}");
    assert_eq!(dep["endpoint"], url.as_str(), "{d:#}");
    assert!(dep["stopped_at"].is_null(), "{d:#}");
    let pid = server.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let mut server = server;
    assert!(server.child.wait().unwrap().success());
    let d = lineage(&data);
    assert!(
        d["versions"][0]["deployments"][0]["stopped_at"].is_i64(),
        "{d:#}"
    );
}

/// Triton's repository API: `load` swaps in a new version while requests keep coming, and
/// none of them fails; a failed load keeps the serving version; `unload` removes the model.
#[test]
fn load_swaps_versions_under_load_with_no_failed_request() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gb.onnx");
    std::fs::copy(fixtures().join("gb_classifier.onnx"), &file).unwrap();
    let (server, _) = serve(&["--model", &format!("gb={}", file.display())]);
    let url = server.url.clone();
    let (rows, _) = fixture();
    let rt = rt();
    rt.block_on(async {
        let c = reqwest::Client::new();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut clients = vec![];
        for row in rows.iter().take(4) {
            let (c, url, stop) = (c.clone(), url.clone(), stop.clone());
            let row = row.clone();
            clients.push(tokio::spawn(async move {
                let (mut ok, mut failed, mut versions) = (0, 0, std::collections::BTreeSet::new());
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let body = json!({"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 30], "data": row}]});
                    match c.post(format!("{url}/v2/models/gb/infer")).json(&body).send().await {
                        Ok(r) if r.status() == 200 => {
                            let v: Value = r.json().await.unwrap();
                            versions.insert(v["model_version"].as_str().unwrap().to_string());
                            ok += 1;
                        }
                        _ => failed += 1,
                    }
                }
                (ok, failed, versions)
            }));
        }
        // Three swaps while the clients run.
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_millis(150)).await;
            let r = c
                .post(format!("{url}/v2/repository/models/gb/load"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (mut ok, mut failed) = (0, 0);
        let mut seen = std::collections::BTreeSet::new();
        for t in clients {
            let (o, f, v) = t.await.unwrap();
            ok += o;
            failed += f;
            seen.extend(v);
        }
        assert_eq!(failed, 0, "{ok} answered, {failed} failed");
        assert!(ok > 20, "{ok}");
        assert!(seen.contains("1") && seen.contains("4"), "versions served: {seen:?}");

        // A load that fails keeps version 4.
        std::fs::write(&file, b"not an onnx model").unwrap();
        let r = c
            .post(format!("{url}/v2/repository/models/gb/load"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let v: Value = r.json().await.unwrap();
        assert!(v["error"].as_str().unwrap().contains("stays"), "{v}");
        let meta: Value = c
            .get(format!("{url}/v2/models/gb"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(meta["versions"], json!(["4"]));

        // Unload: gone from serving, still in the index.
        let r = c
            .post(format!("{url}/v2/repository/models/gb/unload"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let r = c.get(format!("{url}/v2/models/gb/ready")).send().await.unwrap();
        assert_eq!(r.status(), 404);
        let index: Value = c
            .post(format!("{url}/v2/repository/index"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(index[0]["name"], "gb");
        assert_eq!(index[0]["state"], "UNAVAILABLE", "{index}");
    });
    drop(server);
}
