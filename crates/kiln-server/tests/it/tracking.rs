//! Tracking API over HTTP: wire shapes, error codes and the artifact proxy.

use kiln_testkit::TestDb;
use serde_json::{Value, json};

use crate::common::start_app;

async fn new_run(app: &crate::common::TestApp, exp: &str) -> String {
    let (status, body) = app
        .post("runs/create", json!({"experiment_id": exp, "user_id": "u"}))
        .await;
    assert_eq!(status, 200, "{body}");
    body["run"]["info"]["run_id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn errors_have_mlflow_codes_statuses_and_name_the_field() {
    for db in TestDb::all().await {
        let app = start_app(&db).await;
        // Malformed JSON: 400 with the position.
        let resp = app
            .client
            .post(app.api("experiments/create"))
            .body("{\"name\": ")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error_code"], "MALFORMED_REQUEST");
        assert!(
            body["message"].as_str().unwrap().contains("line 1"),
            "{body}"
        );

        // Missing field: INVALID_PARAMETER_VALUE naming it.
        let (status, body) = app.post("experiments/create", json!({})).await;
        assert_eq!(
            (status, body["error_code"].as_str()),
            (400, Some("INVALID_PARAMETER_VALUE"))
        );
        assert!(
            body["message"].as_str().unwrap().contains("'name'"),
            "{body}"
        );

        // Wrong type: the field path is named.
        let run = new_run(&app, "0").await;
        let (status, body) = app
            .post(
                "runs/log-batch",
                json!({"run_id": run, "metrics": [{"key": "a", "value": 1, "timestamp": 1},
                                                   {"key": "b", "value": "high", "timestamp": 1}]}),
            )
            .await;
        assert_eq!(status, 400, "{body}");
        assert!(
            body["message"].as_str().unwrap().contains("metrics[1]"),
            "{body}"
        );

        // Duplicate name: 400 RESOURCE_ALREADY_EXISTS (not 409).
        let (s1, _) = app.post("experiments/create", json!({"name": "dup"})).await;
        let (s2, body) = app.post("experiments/create", json!({"name": "dup"})).await;
        assert_eq!((s1, s2), (200, 400));
        assert_eq!(body["error_code"], "RESOURCE_ALREADY_EXISTS");

        // Unknown ids: 404 RESOURCE_DOES_NOT_EXIST.
        let (status, body) = app
            .get("runs/get?run_id=0123456789abcdef0123456789abcdef")
            .await;
        assert_eq!(
            (status, body["error_code"].as_str()),
            (404, Some("RESOURCE_DOES_NOT_EXIST"))
        );
        let (status, body) = app
            .get("experiments/get-by-name?experiment_name=nope")
            .await;
        assert_eq!(
            (status, body["error_code"].as_str()),
            (404, Some("RESOURCE_DOES_NOT_EXIST"))
        );

        // Unknown endpoint.
        let (status, body) = app.get("no/such/endpoint").await;
        assert_eq!(
            (status, body["error_code"].as_str()),
            (404, Some("ENDPOINT_NOT_FOUND"))
        );

        // Over-long key, over-limit batch, over-size body.
        let (status, body) = app
            .post(
                "runs/log-parameter",
                json!({"run_id": run, "key": "k".repeat(251), "value": "v"}),
            )
            .await;
        assert_eq!(
            (status, body["error_code"].as_str()),
            (400, Some("INVALID_PARAMETER_VALUE"))
        );
        let metrics: Vec<Value> = (0..1001)
            .map(|i| json!({"key": "m", "value": 1.0, "timestamp": 1, "step": i}))
            .collect();
        let (status, body) = app
            .post("runs/log-batch", json!({"run_id": run, "metrics": metrics}))
            .await;
        assert_eq!(status, 400);
        assert!(
            body["message"].as_str().unwrap().contains("metrics"),
            "{body}"
        );
        // 100 params of 6,000 and 100 tags of 8,000 characters: valid entities, 1.4 MB.
        let tags: Vec<Value> = (0..100)
            .map(|i| json!({"key": format!("t{i}"), "value": "x".repeat(8000)}))
            .collect();
        let params: Vec<Value> = (0..100)
            .map(|i| json!({"key": format!("p{i}"), "value": "y".repeat(6000)}))
            .collect();
        let (status, body) = app
            .post(
                "runs/log-batch",
                json!({"run_id": run, "tags": tags, "params": params}),
            )
            .await;
        assert_eq!(status, 400);
        assert!(
            body["message"].as_str().unwrap().contains("bytes"),
            "{body}"
        );
    }
}

#[tokio::test]
async fn wire_shapes_match_the_client() {
    for db in TestDb::all().await {
        let app = start_app(&db).await;
        let run = new_run(&app, "0").await;
        // int64 as strings (protobuf JSON) and non-finite doubles as strings.
        for (v, ts) in [("NaN", "1"), ("Infinity", "2"), ("-Infinity", "3")] {
            let (status, body) = app
                .post(
                    "runs/log-metric",
                    json!({"run_id": run, "run_uuid": run, "key": "x", "value": v, "timestamp": ts, "step": ts}),
                )
                .await;
            assert_eq!(status, 200, "{body}");
        }
        let (_, hist) = app
            .get(&format!("metrics/get-history?run_id={run}&metric_key=x"))
            .await;
        let values: Vec<&str> = hist["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["value"].as_str().unwrap())
            .collect();
        assert_eq!(values, ["NaN", "Infinity", "-Infinity"], "{}", db.kind);

        // GET with repeated keys and bools; the ajax-api mirror answers the same.
        for i in 0..3 {
            app.post("experiments/create", json!({"name": format!("q{i}")}))
                .await;
        }
        let (status, body) = app
            .get("experiments/search?max_results=2&view_type=ALL&order_by=name%20DESC&order_by=experiment_id")
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["experiments"].as_array().unwrap().len(), 2);
        assert!(body["next_page_token"].is_string());
        let (s, a) = app
            .send(
                reqwest::Method::GET,
                &format!(
                    "{}/ajax-api/2.0/mlflow/experiments/get?experiment_id=0",
                    app.url
                ),
                None,
            )
            .await;
        let (_, b) = app.get("experiments/get?experiment_id=0").await;
        assert_eq!((s, &a), (200, &b));

        // A double-encoded JSON body, as older clients send.
        let resp = app
            .client
            .post(app.api("runs/set-tag"))
            .json(&json!({"run_id": run, "key": "k", "value": "v"}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);

        // runs/update answers with run_info; runs/get returns latest metrics and tags.
        let (_, body) = app
            .post(
                "runs/update",
                json!({"run_id": run, "status": "FINISHED", "end_time": 99}),
            )
            .await;
        assert_eq!(body["run_info"]["status"], "FINISHED");
        assert_eq!(body["run_info"]["end_time"], 99);
        let (_, body) = app.get(&format!("runs/get?run_id={run}")).await;
        let tags = body["run"]["data"]["tags"].as_array().unwrap();
        assert!(tags.iter().any(|t| t["key"] == "k" && t["value"] == "v"));

        // Dataset inputs appear on the run and are searchable.
        let (status, body) = app
            .post(
                "runs/log-inputs",
                json!({"run_id": run, "datasets": [{"tags": [{"key": "mlflow.data.context", "value": "training"}],
                        "dataset": {"name": "flights", "digest": "abc123", "source_type": "local", "source": "{}"}}]}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let (_, body) = app
            .post(
                "runs/search",
                json!({"experiment_ids": ["0"], "filter": "datasets.name = 'flights' AND datasets.context = 'training'"}),
            )
            .await;
        let runs = body["runs"].as_array().unwrap();
        assert_eq!(runs.len(), 1, "{}: {body}", db.kind);
        assert_eq!(
            runs[0]["inputs"]["dataset_inputs"][0]["dataset"]["digest"],
            "abc123"
        );

        let (status, body) = app.get("server-info").await;
        assert_eq!(status, 200);
        assert_eq!(body["store_backend"], db.kind);
    }
}

#[tokio::test]
async fn artifacts_stream_up_and_down_list_and_delete() {
    let db = TestDb::sqlite();
    let app = start_app(&db).await;
    let run = new_run(&app, "0").await;
    let base = format!(
        "{}/api/2.0/mlflow-artifacts/artifacts/0/{run}/artifacts",
        app.url
    );

    // 48 MiB streamed in 1 MiB chunks, never as one buffer on our side either.
    let chunk: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = (0..48).map(|_| Ok(chunk.clone())).collect();
    let body = reqwest::Body::wrap_stream(futures::stream::iter(chunks));
    let resp = app
        .client
        .put(format!("{base}/model/weights.bin"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    app.client
        .put(format!("{base}/notes.txt"))
        .body("hello")
        .send()
        .await
        .unwrap();

    let resp = app
        .client
        .get(format!("{base}/model/weights.bin"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.content_length(), Some(48 * 1024 * 1024));
    let bytes = resp.bytes().await.unwrap();
    assert!(bytes.chunks(1024 * 1024).all(|c| c == chunk.as_slice()));

    let (_, listing) = app
        .send(
            reqwest::Method::GET,
            &format!(
                "{}/api/2.0/mlflow-artifacts/artifacts?path=0/{run}/artifacts",
                app.url
            ),
            None,
        )
        .await;
    assert_eq!(
        listing["files"],
        json!([{"path": "model", "is_dir": true},
               {"path": "notes.txt", "is_dir": false, "file_size": 5}])
    );
    let (_, listing) = app
        .get(&format!("artifacts/list?run_id={run}&path=model"))
        .await;
    assert_eq!(listing["files"][0]["path"], "model/weights.bin");

    let (status, _) = app
        .send(reqwest::Method::DELETE, &format!("{base}/model"), None)
        .await;
    assert_eq!(status, 200);
    let resp = app
        .client
        .get(format!("{base}/model/weights.bin"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);

    // Path traversal is refused.
    let resp = app
        .client
        .get(format!(
            "{}/api/2.0/mlflow-artifacts/artifacts?path=../../etc",
            app.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
}
