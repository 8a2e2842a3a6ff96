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

pub(crate) fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/onnx")
}

pub(crate) struct Served {
    pub(crate) child: Child,
    pub(crate) url: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn serve(args: &[&str]) -> (Served, Duration) {
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
pub(crate) fn fixture() -> (Vec<Vec<f32>>, Vec<[f32; 2]>) {
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

pub(crate) fn rt() -> tokio::runtime::Runtime {
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
        assert!(v["error"].as_str().unwrap().contains("stay"), "{v}");
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

fn oip_row(row: &[f32]) -> Value {
    json!({"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 30], "data": row}]})
}

/// Several versions under one name: a weighted canary split, pinning by header and by path,
/// and changing the split at run time through the traffic API (behind the admin token).
#[test]
fn canary_split_pinning_and_traffic_changes() {
    let gb = fixtures().join("gb_classifier.onnx");
    let rf = fixtures().join("rf_classifier.onnx");
    let (server, _) = serve(&[
        "--model",
        &format!("gb={}", gb.display()),
        "--model",
        &format!("gb={}", rf.display()),
        "--traffic",
        "gb=1:80,2:20",
        "--admin-token",
        "s3cret",
    ]);
    let url = server.url.clone();
    // Complete rows only: OIP's JSON has no way to send a missing value.
    let (rows, _) = fixture();
    let rows: Vec<Vec<f32>> = rows
        .into_iter()
        .filter(|r| r.iter().all(|x| x.is_finite()))
        .collect();
    rt().block_on(async {
        let c = reqwest::Client::new();
        let meta: Value = c
            .get(format!("{url}/v2/models/gb"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(meta["versions"], json!(["1", "2"]), "{meta}");

        // 1,000 unpinned requests split about 80/20; each answer names its version.
        let mut counts = std::collections::BTreeMap::<String, usize>::new();
        for i in 0..1000 {
            let (path, body) = if i % 2 == 0 {
                (
                    "v2/models/gb/infer".to_string(),
                    oip_row(&rows[i % rows.len()]),
                )
            } else {
                (
                    "invocations".to_string(),
                    json!({"inputs": [rows[i % rows.len()]]}),
                )
            };
            let r = c
                .post(format!("{url}/{path}"))
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            let v = r.headers()["x-kiln-version"].to_str().unwrap().to_string();
            if i % 2 == 0 {
                let b: Value = r.json().await.unwrap();
                assert_eq!(b["model_version"], v.as_str());
            }
            *counts.entry(v).or_default() += 1;
        }
        let canary = counts.get("2").copied().unwrap_or(0);
        assert!((140..=260).contains(&canary), "split {counts:?}");
        assert_eq!(counts.values().sum::<usize>(), 1000);

        // Pinning: by header on both protocols, and by OIP's versioned path.
        for _ in 0..20 {
            let r = c
                .post(format!("{url}/v2/models/gb/infer"))
                .header("X-Kiln-Version", "2")
                .json(&oip_row(&rows[0]))
                .send()
                .await
                .unwrap();
            assert_eq!(r.headers()["x-kiln-version"], "2");
            let r = c
                .post(format!("{url}/invocations"))
                .header("X-Kiln-Version", "1")
                .json(&json!({"inputs": [rows[0]]}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.headers()["x-kiln-version"], "1");
            let r = c
                .post(format!("{url}/v2/models/gb/versions/2/infer"))
                .json(&oip_row(&rows[0]))
                .send()
                .await
                .unwrap();
            assert_eq!(r.headers()["x-kiln-version"], "2");
        }
        let r = c
            .post(format!("{url}/v2/models/gb/infer"))
            .header("X-Kiln-Version", "7")
            .json(&oip_row(&rows[0]))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
        let e: Value = r.json().await.unwrap();
        assert!(e["error"].as_str().unwrap().contains("loaded: 1, 2"), "{e}");

        // The traffic API: read, refuse without the token, refuse bad bodies, then move all
        // traffic to version 2.
        let t: Value = c
            .get(format!("{url}/api/kiln/serve/models/gb/traffic"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(t["weights"], json!({"1": 80, "2": 20}), "{t}");
        let put = |body: Value, token: Option<&'static str>| {
            let mut r = c
                .put(format!("{url}/api/kiln/serve/models/gb/traffic"))
                .json(&body);
            if let Some(t) = token {
                r = r.bearer_auth(t);
            }
            r.send()
        };
        let r = put(json!({"weights": {"2": 100}}), None).await.unwrap();
        assert_eq!(r.status(), 401);
        let r = put(json!({"weights": {"2": 100}}), Some("wrong"))
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        let r = put(json!({"weights": {"9": 100}}), Some("s3cret"))
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let e: Value = r.json().await.unwrap();
        assert!(
            e["error"]
                .as_str()
                .unwrap()
                .contains("no loaded version `9`"),
            "{e}"
        );
        let r = put(json!({"weights": {"1": 0}}), Some("s3cret"))
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let r = put(json!({"weigths": {"1": 0}}), Some("s3cret"))
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let e: Value = r.json().await.unwrap();
        assert!(e["error"].as_str().unwrap().contains("weigths"), "{e}");
        let r = put(json!({"weights": {"1": 0, "2": 100}}), Some("s3cret"))
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        for _ in 0..50 {
            let r = c
                .post(format!("{url}/v2/models/gb/infer"))
                .json(&oip_row(&rows[1]))
                .send()
                .await
                .unwrap();
            assert_eq!(r.headers()["x-kiln-version"], "2");
        }
        // Repository changes need the token too.
        let r = c
            .post(format!("{url}/v2/repository/models/gb/unload"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        // Unloaded and loaded again (the files get new numbers, 3 and 4), the name keeps the
        // traffic last set for it, slot by slot.
        for op in ["unload", "load"] {
            let r = c
                .post(format!("{url}/v2/repository/models/gb/{op}"))
                .bearer_auth("s3cret")
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{op}: {}", r.text().await.unwrap());
        }
        let t: Value = c
            .get(format!("{url}/api/kiln/serve/models/gb/traffic"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(t["weights"], json!({"3": 0, "4": 100}), "{t}");
        for _ in 0..20 {
            let r = c
                .post(format!("{url}/invocations"))
                .json(&json!({"inputs": [rows[2]]}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.headers()["x-kiln-version"], "4");
        }
    });
    drop(server);
}

/// Shadow versions get a copy of every request; their answers are compared with the live
/// ones (the divergence recorded) and never returned.
#[test]
fn shadows_are_compared_and_never_answer() {
    let gb = fixtures().join("gb_classifier.onnx");
    let rf = fixtures().join("rf_classifier.onnx");
    let (server, _) = serve(&[
        "--model",
        &format!("gb={}", gb.display()),
        "--model",
        &format!("gb={}", gb.display()),
        "--model",
        &format!("gb={}", rf.display()),
        "--shadow",
        "gb=2,3",
    ]);
    let url = server.url.clone();
    let (rows, probs) = fixture();
    let (rows, probs): (Vec<Vec<f32>>, Vec<[f32; 2]>) = rows
        .into_iter()
        .zip(probs)
        .filter(|(r, _)| r.iter().all(|x| x.is_finite()))
        .unzip();
    rt().block_on(async {
        let c = reqwest::Client::new();
        let n = 60;
        for (i, row) in rows.iter().take(n).enumerate() {
            let r = c
                .post(format!("{url}/v2/models/gb/infer"))
                .json(&oip_row(row))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            assert_eq!(r.headers()["x-kiln-version"], "1");
            let b: Value = r.json().await.unwrap();
            let p = b["outputs"]
                .as_array()
                .unwrap()
                .iter()
                .find(|o| o["name"] == "probabilities")
                .unwrap()["data"][1]
                .as_f64()
                .unwrap();
            assert!(
                (p - f64::from(probs[i][1])).abs() < 1e-5,
                "row {i}: {p} vs {}",
                probs[i][1]
            );
        }
        // The comparisons finish off the request path; wait for them.
        let deadline = Instant::now() + Duration::from_secs(10);
        let t = loop {
            let t: Value = c
                .get(format!("{url}/api/kiln/serve/models/gb/traffic"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let done = |v: &str| t["shadow_stats"][v]["requests"].as_u64() == Some(n as u64);
            if (done("2") && done("3")) || Instant::now() > deadline {
                break t;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(t["shadow"], json!(["2", "3"]), "{t}");
        let same = &t["shadow_stats"]["2"];
        assert_eq!(same["requests"], n, "{t}");
        assert_eq!(same["rows"], n, "{t}");
        assert_eq!(same["errors"], 0, "{t}");
        assert_eq!(same["diverged_rows"], 0, "{t}");
        assert_eq!(same["max_abs_diff"], 0.0, "{t}");
        let other = &t["shadow_stats"]["3"];
        assert_eq!(other["rows"], n, "{t}");
        assert!(other["diverged_rows"].as_u64().unwrap() > 0, "{t}");
        assert!(other["max_abs_diff"].as_f64().unwrap() > 0.01, "{t}");
        let metrics = c
            .get(format!("{url}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            metrics.contains(&format!(
                "kiln_shadow_rows_total{{model=\"gb\",version=\"3\"}} {n}"
            )),
            "{metrics}"
        );
        assert!(
            metrics.contains("kiln_shadow_diverged_rows_total{model=\"gb\",version=\"2\"} 0"),
            "{metrics}"
        );
        // A pinned request is not mirrored.
        let r = c
            .post(format!("{url}/v2/models/gb/infer"))
            .header("X-Kiln-Version", "3")
            .json(&oip_row(&rows[0]))
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["x-kiln-version"], "3");
    });
    drop(server);
}

/// Client mistakes on a real server: each gets a 4xx whose message names what is wrong,
/// none a 5xx, and the server keeps answering good requests.
#[test]
fn bad_input_gets_a_named_4xx_and_never_a_5xx() {
    let gb = fixtures().join("gb_classifier.onnx");
    let (server, _) = serve(&[
        "--model",
        &format!("gb={}", gb.display()),
        "--refuse-nan",
        "gb",
        "--max-request-bytes",
        "65536",
    ]);
    let url = server.url.clone();
    let (rows, _) = fixture();
    let row: Vec<f32> = rows[0].clone();
    let json_body = |v: Value| serde_json::to_vec(&v).unwrap();
    // OIP binary body: JSON header + raw little-endian FP32.
    let binary = |values: &[f32], declared: usize| {
        let header = json!({"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 30],
                                        "parameters": {"binary_data_size": declared}}]});
        let mut h = serde_json::to_vec(&header).unwrap();
        let n = h.len();
        for v in values {
            h.extend_from_slice(&v.to_le_bytes());
        }
        (h, n)
    };
    let mut nan_row = row.clone();
    nan_row[17] = f32::NAN;
    let (nan_bin, nan_len) = binary(&nan_row, 120);
    let (short_bin, short_len) = binary(&row[..20], 120);
    let big = vec![row.clone(); 400];
    // (what, path, body, Inference-Header-Content-Length, status, text in the message)
    type Case = (
        &'static str,
        &'static str,
        Vec<u8>,
        Option<usize>,
        u16,
        &'static str,
    );
    let mut cases: Vec<Case> = vec![
        (
            "wrong shape",
            "/v2/models/gb/infer",
            json_body(
                json!({"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 29], "data": &row[..29]}]}),
            ),
            None,
            400,
            "shape",
        ),
        (
            "wrong length",
            "/v2/models/gb/infer",
            json_body(
                json!({"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 30], "data": &row[..29]}]}),
            ),
            None,
            400,
            "inputs[0]",
        ),
        (
            "wrong datatype",
            "/v2/models/gb/infer",
            json_body(
                json!({"inputs": [{"name": "X", "datatype": "BYTES", "shape": [1, 30], "data": &row}]}),
            ),
            None,
            400,
            "BYTES",
        ),
        (
            "wrong name",
            "/v2/models/gb/infer",
            json_body(
                json!({"inputs": [{"name": "Y", "datatype": "FP32", "shape": [1, 30], "data": &row}]}),
            ),
            None,
            400,
            "`Y`",
        ),
        (
            "non-numeric",
            "/v2/models/gb/infer",
            json_body(
                json!({"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 30], "data": vec!["a"; 30]}]}),
            ),
            None,
            400,
            "inputs[0]",
        ),
        (
            "NaN refused (binary)",
            "/v2/models/gb/infer",
            nan_bin,
            Some(nan_len),
            400,
            "row 0 column 17 is NaN",
        ),
        (
            "truncated binary",
            "/v2/models/gb/infer",
            short_bin,
            Some(short_len),
            400,
            "binary",
        ),
        (
            "bad UTF-8",
            "/v2/models/gb/infer",
            b"{\"inputs\": [\xff\xfe]}".to_vec(),
            None,
            400,
            "UTF-8",
        ),
        (
            "not JSON",
            "/v2/models/gb/infer",
            b"{\"inputs\": [".to_vec(),
            None,
            400,
            "JSON",
        ),
        (
            "oversized",
            "/v2/models/gb/infer",
            json_body(
                json!({"inputs": [{"name": "X", "datatype": "FP32", "shape": [400, 30], "data": &big}]}),
            ),
            None,
            413,
            "",
        ),
        (
            "NaN refused (scoring)",
            "/invocations",
            json_body(
                json!({"dataframe_split": {"columns": (0..30).map(|i| format!("c{i}")).collect::<Vec<_>>(),
                                              "data": [row.iter().enumerate().map(|(i, v)| if i == 3 { Value::Null } else { json!(v) }).collect::<Vec<_>>()]}}),
            ),
            None,
            400,
            "row 0 column 3",
        ),
        (
            "non-numeric (scoring)",
            "/invocations",
            json_body(
                json!({"inputs": [row.iter().enumerate().map(|(i, v)| if i == 5 { json!("abc") } else { json!(v) }).collect::<Vec<_>>()]}),
            ),
            None,
            400,
            "abc",
        ),
        (
            "wrong width (scoring)",
            "/invocations",
            json_body(json!({"inputs": [&row[..29]]})),
            None,
            400,
            "30",
        ),
        (
            "bad UTF-8 (scoring)",
            "/invocations",
            b"{\"inputs\": [[\xff]]}".to_vec(),
            None,
            400,
            "UTF-8",
        ),
        (
            "oversized (scoring)",
            "/invocations",
            json_body(json!({"inputs": &big})),
            None,
            413,
            "",
        ),
    ];
    cases.push((
        "unknown key (scoring)",
        "/invocations",
        json_body(json!({"rows": [&row]})),
        None,
        400,
        "rows",
    ));
    rt().block_on(async {
        let c = reqwest::Client::new();
        for (what, path, body, header_len, status, needle) in cases {
            let mut r = c
                .post(format!("{url}{path}"))
                .header("Content-Type", "application/json")
                .body(body);
            if let Some(n) = header_len {
                r = r.header("Inference-Header-Content-Length", n.to_string());
            }
            let r = r.send().await.unwrap();
            let got = r.status().as_u16();
            let text = r.text().await.unwrap();
            assert_eq!(got, status, "{what}: {text}");
            let v: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{what}: the error is not JSON ({e}): {text}"));
            let msg = v["error"]
                .as_str()
                .or(v["message"].as_str())
                .unwrap_or_default();
            assert!(!msg.is_empty(), "{what}: {text}");
            assert!(msg.contains(needle), "{what}: `{needle}` not in {msg}");
        }
        // Still serving.
        let r = c
            .post(format!("{url}/v2/models/gb/infer"))
            .json(&oip_row(&row))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    });
    drop(server);
}

/// A `--model` path that does not exist is named as a missing file, not looked up in the
/// registry; a registry reference that does not resolve says so.
#[test]
fn a_missing_model_file_is_reported_as_missing() {
    let dir = tempfile::tempdir().unwrap();
    let run = |m: &str| {
        Command::new(kiln_bin())
            .args(["serve", "--port", "0", "--model", m, "--data-dir"])
            .arg(dir.path())
            .env("KILN_LOG", "warn")
            .output()
            .unwrap()
    };
    let out = run("x=/no/such/model.onnx");
    assert_eq!(out.status.code(), Some(2));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("/no/such/model.onnx does not exist"), "{e}");
    let out = run("x=delay@champion");
    assert_eq!(out.status.code(), Some(2));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("no version of `delay` has alias `champion`"),
        "{e}"
    );
}

/// Kiln's extension of the repository load request: `kiln_canary_percent` out of range is a
/// 400 naming it; in range, the reloaded file (numbered as a new version) runs beside the
/// current one at that share; a plain load afterwards serves the newly loaded version alone.
#[test]
fn a_canary_load_request_is_checked() {
    let model = fixtures().join("gb_classifier.onnx");
    let (server, _) = serve(&["--model", &format!("gb={}", model.display())]);
    let rt = rt();
    let c = reqwest::Client::new();
    rt.block_on(async {
        let url = format!("{}/v2/repository/models/gb/load", server.url);
        let r = c
            .post(&url)
            .json(&json!({"parameters": {"kiln_canary_percent": 0}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        assert!(r.text().await.unwrap().contains("kiln_canary_percent"));
        let r = c.post(&url).body("{not json").send().await.unwrap();
        assert_eq!(r.status(), 400);
        let r = c
            .post(&url)
            .json(&json!({"parameters": {"kiln_canary_percent": 10}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        let t: Value = c
            .get(format!("{}/api/kiln/serve/models/gb/traffic", server.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(t["versions"], json!(["1", "2"]), "{t}");
        assert_eq!(t["weights"], json!({"1": 90, "2": 10}), "{t}");
        let r = c.post(&url).json(&json!({})).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let t: Value = c
            .get(format!("{}/api/kiln/serve/models/gb/traffic", server.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(t["versions"], json!(["3"]), "{t}");
    });
}
