//! `/logged-models*` over HTTP, on every available backend: create → get → finalize → tags →
//! params → search (filters, order, pages) → delete → 404, model metrics, and the artifact
//! directory listing.

use kiln_store::ModelMetricInput;
use kiln_testkit::TestDb;
use serde_json::{Value, json};

use crate::common::{TestApp, start_app};

async fn create_experiment(app: &TestApp, name: &str) -> String {
    let (status, body) = app
        .post("experiments/create", json!({ "name": name }))
        .await;
    assert_eq!(status, 200, "{body}");
    body["experiment_id"]
        .as_str()
        .expect("experiment_id")
        .to_string()
}

async fn create_run(app: &TestApp, experiment_id: &str) -> String {
    let (status, body) = app
        .post(
            "runs/create",
            json!({ "experiment_id": experiment_id, "user_id": "t" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["run"]["info"]["run_id"]
        .as_str()
        .expect("run_id")
        .to_string()
}

async fn create_model(app: &TestApp, body: Value) -> Value {
    let (status, resp) = app.post("logged-models", body).await;
    assert_eq!(status, 200, "{resp}");
    resp["model"].clone()
}

fn pairs(list: &Value) -> Vec<(String, String)> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|kv| {
            (
                kv["key"].as_str().unwrap().to_string(),
                kv["value"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn kv(k: &str, v: &str) -> (String, String) {
    (k.to_string(), v.to_string())
}

fn assert_error(status: u16, body: &Value, want_status: u16, code: &str, needle: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["error_code"], code, "{body}");
    let msg = body["message"].as_str().unwrap_or_default();
    assert!(msg.contains(needle), "message {msg:?} lacks {needle:?}");
}

#[tokio::test]
async fn lifecycle_create_get_finalize_tags_params_delete() {
    for db in TestDb::all().await {
        let app = start_app(&db).await;
        let kind = db.kind;
        let exp = create_experiment(&app, "lm-lifecycle").await;
        let run = create_run(&app, &exp).await;

        let model = create_model(
            &app,
            json!({
                "experiment_id": exp,
                "name": "clf",
                "model_type": "sklearn",
                "source_run_id": run,
                "params": [{"key": "lr", "value": "0.1"}, {"key": "depth", "value": "3"}],
                "tags": [{"key": "team", "value": "ml"}],
            }),
        )
        .await;
        let info = &model["info"];
        let id = info["model_id"].as_str().unwrap().to_string();
        assert!(id.starts_with("m-") && id.len() == 34, "{kind}: {id}");
        assert!(
            id[2..].chars().all(|c| c.is_ascii_hexdigit()),
            "{kind}: {id}"
        );
        assert_eq!(info["experiment_id"], exp.as_str(), "{kind}");
        assert_eq!(info["name"], "clf", "{kind}");
        assert_eq!(info["model_type"], "sklearn", "{kind}");
        assert_eq!(info["source_run_id"], run.as_str(), "{kind}");
        assert_eq!(info["status"], "LOGGED_MODEL_PENDING", "{kind}");
        assert_eq!(
            info["artifact_uri"],
            format!("mlflow-artifacts:/{exp}/models/{id}/artifacts"),
            "{kind}"
        );
        assert!(
            info["creation_timestamp_ms"].as_i64().unwrap() > 0,
            "{kind}"
        );
        assert_eq!(pairs(&info["tags"]), vec![kv("team", "ml")], "{kind}");
        assert_eq!(
            pairs(&model["data"]["params"]),
            vec![kv("depth", "3"), kv("lr", "0.1")],
            "{kind}"
        );
        assert_eq!(model["data"]["metrics"], json!([]), "{kind}");

        // GET returns the same model, under every API prefix.
        let (status, got) = app.get(&format!("logged-models/{id}")).await;
        assert_eq!(status, 200, "{kind}: {got}");
        assert_eq!(got["model"], model, "{kind}");
        let (status, got) = app
            .send(
                reqwest::Method::GET,
                &format!("{}/ajax-api/2.0/mlflow/logged-models/{id}", app.url),
                None,
            )
            .await;
        assert_eq!(
            (status, &got["model"]["info"]["model_id"]),
            (200, &json!(id)),
            "{kind}"
        );

        // Finalize: names and enum numbers; anything else names 'status'.
        let (status, fin) = app
            .patch(
                &format!("logged-models/{id}"),
                json!({ "model_id": id, "status": "LOGGED_MODEL_UPLOAD_FAILED" }),
            )
            .await;
        assert_eq!(status, 200, "{kind}: {fin}");
        assert_eq!(
            fin["model"]["info"]["status"], "LOGGED_MODEL_UPLOAD_FAILED",
            "{kind}"
        );
        let (status, fin) = app
            .patch(
                &format!("logged-models/{id}"),
                json!({ "model_id": id, "status": 2 }),
            )
            .await;
        assert_eq!(status, 200, "{kind}: {fin}");
        assert_eq!(
            fin["model"]["info"]["status"], "LOGGED_MODEL_READY",
            "{kind}"
        );
        assert!(
            fin["model"]["info"]["last_updated_timestamp_ms"]
                .as_i64()
                .unwrap()
                >= info["creation_timestamp_ms"].as_i64().unwrap(),
            "{kind}"
        );
        let (status, body) = app
            .patch(
                &format!("logged-models/{id}"),
                json!({ "model_id": id, "status": "DONE" }),
            )
            .await;
        assert_error(status, &body, 400, "INVALID_PARAMETER_VALUE", "'status'");
        let (status, body) = app
            .patch(&format!("logged-models/{id}"), json!({ "model_id": id }))
            .await;
        assert_error(status, &body, 400, "INVALID_PARAMETER_VALUE", "'status'");
        let (_, got) = app.get(&format!("logged-models/{id}")).await;
        assert_eq!(
            got["model"]["info"]["status"], "LOGGED_MODEL_READY",
            "{kind}"
        );

        // Tags: upsert (the client's `mlflow.modelVersions` after registering), keys with a
        // slash, delete one, deleting it again is RESOURCE_DOES_NOT_EXIST.
        let (status, body) = app
            .patch(
                &format!("logged-models/{id}/tags"),
                json!({ "tags": [
                    {"key": "mlflow.modelVersions", "value": "[{\"name\": \"churn\", \"version\": \"1\"}]"},
                    {"key": "team", "value": "platform"},
                    {"key": "a/b", "value": "slash"},
                ]}),
            )
            .await;
        assert_eq!((status, &body), (200, &json!({})), "{kind}");
        let (_, got) = app.get(&format!("logged-models/{id}")).await;
        assert_eq!(
            pairs(&got["model"]["info"]["tags"]),
            vec![
                kv("a/b", "slash"),
                kv(
                    "mlflow.modelVersions",
                    "[{\"name\": \"churn\", \"version\": \"1\"}]"
                ),
                kv("team", "platform"),
            ],
            "{kind}"
        );
        let (status, body) = app
            .delete(&format!("logged-models/{id}/tags/a/b"), json!({}))
            .await;
        assert_eq!((status, &body), (200, &json!({})), "{kind}");
        let (status, body) = app
            .delete(&format!("logged-models/{id}/tags/team"), json!({}))
            .await;
        assert_eq!((status, &body), (200, &json!({})), "{kind}");
        let (_, got) = app.get(&format!("logged-models/{id}")).await;
        assert_eq!(
            pairs(&got["model"]["info"]["tags"]),
            vec![kv(
                "mlflow.modelVersions",
                "[{\"name\": \"churn\", \"version\": \"1\"}]"
            )],
            "{kind}"
        );
        let (status, body) = app
            .delete(&format!("logged-models/{id}/tags/team"), json!({}))
            .await;
        assert_error(status, &body, 404, "RESOURCE_DOES_NOT_EXIST", "team");
        let (status, body) = app
            .patch(
                &format!("logged-models/{id}/tags"),
                json!({ "tags": [{"key": "a?b", "value": "x"}] }),
            )
            .await;
        assert_error(status, &body, 400, "INVALID_PARAMETER_VALUE", "a?b");

        // Params: upsert.
        let (status, body) = app
            .post(
                &format!("logged-models/{id}/params"),
                json!({ "params": [{"key": "lr", "value": "0.2"}, {"key": "batch", "value": "32"}] }),
            )
            .await;
        assert_eq!((status, &body), (200, &json!({})), "{kind}");
        let (_, got) = app.get(&format!("logged-models/{id}")).await;
        assert_eq!(
            pairs(&got["model"]["data"]["params"]),
            vec![kv("batch", "32"), kv("depth", "3"), kv("lr", "0.2")],
            "{kind}"
        );

        // Delete: gone from get, search and every write.
        let (status, body) = app.delete(&format!("logged-models/{id}"), json!({})).await;
        assert_eq!((status, &body), (200, &json!({})), "{kind}");
        let (status, body) = app.get(&format!("logged-models/{id}")).await;
        assert_error(status, &body, 404, "RESOURCE_DOES_NOT_EXIST", &id);
        let (status, body) = app
            .post("logged-models/search", json!({ "experiment_ids": [exp] }))
            .await;
        assert_eq!(status, 200, "{kind}: {body}");
        assert_eq!(body["models"], json!([]), "{kind}");
        let (status, body) = app
            .patch(
                &format!("logged-models/{id}/tags"),
                json!({ "tags": [{"key": "k", "value": "v"}] }),
            )
            .await;
        assert_error(status, &body, 404, "RESOURCE_DOES_NOT_EXIST", &id);
        let (status, body) = app
            .patch(
                &format!("logged-models/{id}"),
                json!({ "status": "LOGGED_MODEL_READY" }),
            )
            .await;
        assert_error(status, &body, 404, "RESOURCE_DOES_NOT_EXIST", &id);
        let (status, body) = app.delete(&format!("logged-models/{id}"), json!({})).await;
        assert_error(status, &body, 404, "RESOURCE_DOES_NOT_EXIST", &id);
        drop(app);
    }
}

#[tokio::test]
async fn create_defaults_and_errors() {
    for db in TestDb::all().await {
        let app = start_app(&db).await;
        let kind = db.kind;
        let exp = create_experiment(&app, "lm-errors").await;

        // No name: a random one. No run, no type: absent from the response.
        let model = create_model(&app, json!({ "experiment_id": exp })).await;
        let name = model["info"]["name"].as_str().unwrap();
        assert!(!name.is_empty(), "{kind}");
        assert!(
            model["info"].get("source_run_id").is_none(),
            "{kind}: {model}"
        );
        assert!(model["info"].get("model_type").is_none(), "{kind}: {model}");
        // The default experiment "0" works and has its own artifact root.
        let m0 = create_model(&app, json!({ "experiment_id": "0", "name": "zero" })).await;
        let id0 = m0["info"]["model_id"].as_str().unwrap();
        assert_eq!(
            m0["info"]["artifact_uri"],
            format!("mlflow-artifacts:/0/models/{id0}/artifacts"),
            "{kind}"
        );

        let (status, body) = app.post("logged-models", json!({ "name": "x" })).await;
        assert_error(
            status,
            &body,
            400,
            "INVALID_PARAMETER_VALUE",
            "experiment_id",
        );
        let (status, body) = app
            .post(
                "logged-models",
                json!({ "experiment_id": "424242", "name": "x" }),
            )
            .await;
        assert_error(status, &body, 404, "RESOURCE_DOES_NOT_EXIST", "424242");
        let (status, body) = app
            .post(
                "logged-models",
                json!({ "experiment_id": exp, "source_run_id": "0123456789abcdef0123456789abcdef" }),
            )
            .await;
        assert_error(
            status,
            &body,
            404,
            "RESOURCE_DOES_NOT_EXIST",
            "0123456789abcdef",
        );
        let (status, body) = app
            .post(
                "logged-models",
                json!({ "experiment_id": exp, "params": [{"key": "", "value": "x"}] }),
            )
            .await;
        assert_error(status, &body, 400, "INVALID_PARAMETER_VALUE", "Param");
        let (status, body) = app
            .get("logged-models/m-00000000000000000000000000000000")
            .await;
        assert_error(status, &body, 404, "RESOURCE_DOES_NOT_EXIST", "m-0000");

        // A deleted experiment takes no new models.
        let (status, body) = app
            .post("experiments/delete", json!({ "experiment_id": exp }))
            .await;
        assert_eq!(status, 200, "{kind}: {body}");
        let (status, body) = app
            .post(
                "logged-models",
                json!({ "experiment_id": exp, "name": "late" }),
            )
            .await;
        assert_error(status, &body, 400, "INVALID_PARAMETER_VALUE", "active");
        drop(app);
    }
}

fn metric(
    key: &str,
    value: f64,
    timestamp: i64,
    dataset: Option<(&str, &str)>,
) -> ModelMetricInput {
    ModelMetricInput {
        key: key.into(),
        value,
        timestamp,
        step: 0,
        dataset_name: dataset.map(|d| d.0.to_string()),
        dataset_digest: dataset.map(|d| d.1.to_string()),
    }
}

async fn search(app: &TestApp, body: Value) -> (u16, Value) {
    app.post("logged-models/search", body).await
}

/// Names of the models of a successful search, in order.
async fn search_names(app: &TestApp, body: Value) -> Vec<String> {
    let (status, resp) = search(app, body.clone()).await;
    assert_eq!(status, 200, "{body} -> {resp}");
    resp["models"]
        .as_array()
        .unwrap_or_else(|| panic!("{body} -> {resp}"))
        .iter()
        .map(|m| m["info"]["name"].as_str().unwrap().to_string())
        .collect()
}

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[tokio::test]
async fn search_filters_order_and_pages() {
    for db in TestDb::all().await {
        let app = start_app(&db).await;
        let kind = db.kind;
        let exp = create_experiment(&app, "lm-search").await;
        let other = create_experiment(&app, "lm-search-other").await;
        let run = create_run(&app, &exp).await;

        // alpha: READY, acc eval 0.95 (latest), lr 0.1, team ml, from `run`.
        // beta: READY, acc eval 0.7, lr 0.01, team ml.
        // gamma: PENDING, acc eval: 0.99 then 0.4 (latest 0.4), train 0.97; lr 0.1.
        // delta: UPLOAD_FAILED, no metrics, tag `a b` = y.
        // epsilon (other experiment): READY, acc NaN.
        let mut ids = std::collections::HashMap::new();
        for (name, exp_id, params, tags, status) in [
            (
                "alpha",
                &exp,
                vec![("lr", "0.1")],
                vec![("team", "ml")],
                Some("LOGGED_MODEL_READY"),
            ),
            (
                "beta",
                &exp,
                vec![("lr", "0.01")],
                vec![("team", "ml")],
                Some("LOGGED_MODEL_READY"),
            ),
            (
                "gamma",
                &exp,
                vec![("lr", "0.1")],
                vec![("team", "infra")],
                None,
            ),
            (
                "delta",
                &exp,
                vec![],
                vec![("a b", "y")],
                Some("LOGGED_MODEL_UPLOAD_FAILED"),
            ),
            (
                "epsilon",
                &other,
                vec![],
                vec![],
                Some("LOGGED_MODEL_READY"),
            ),
        ] {
            let mut body = json!({
                "experiment_id": exp_id,
                "name": name,
                "params": params.iter().map(|(k, v)| json!({"key": k, "value": v})).collect::<Vec<_>>(),
                "tags": tags.iter().map(|(k, v)| json!({"key": k, "value": v})).collect::<Vec<_>>(),
            });
            if name == "alpha" {
                body["source_run_id"] = json!(run);
            }
            let m = create_model(&app, body).await;
            let id = m["info"]["model_id"].as_str().unwrap().to_string();
            if let Some(status) = status {
                let (code, resp) = app
                    .patch(
                        &format!("logged-models/{id}"),
                        json!({ "model_id": id, "status": status }),
                    )
                    .await;
                assert_eq!(code, 200, "{kind}: {resp}");
            }
            ids.insert(name, id);
            // Distinct creation timestamps make the default order deterministic.
            tokio::time::sleep(std::time::Duration::from_millis(3)).await;
        }
        let eval = Some(("eval", "d1"));
        app.store
            .log_model_metrics(&ids["alpha"], &run, vec![metric("acc", 0.95, 10, eval)])
            .await
            .unwrap();
        app.store
            .log_model_metrics(&ids["beta"], &run, vec![metric("acc", 0.7, 10, eval)])
            .await
            .unwrap();
        app.store
            .log_model_metrics(
                &ids["gamma"],
                &run,
                vec![
                    metric("acc", 0.99, 10, eval),
                    metric("acc", 0.4, 20, eval),
                    metric("acc", 0.97, 10, Some(("train", "d2"))),
                ],
            )
            .await
            .unwrap();
        app.store
            .log_model_metrics(
                &ids["epsilon"],
                &run,
                vec![metric("acc", f64::NAN, 10, None)],
            )
            .await
            .unwrap();
        // Logging to a missing model is RESOURCE_DOES_NOT_EXIST.
        let e = app
            .store
            .log_model_metrics(
                "m-ffffffffffffffffffffffffffffffff",
                &run,
                vec![metric("acc", 1.0, 1, None)],
            )
            .await
            .unwrap_err();
        assert!(
            matches!(e, kiln_store::StoreError::NotFound(_)),
            "{kind}: {e}"
        );

        let all = json!([exp, other]);
        let f = |filter: &str| json!({ "experiment_ids": [exp], "filter": filter });

        // Default order: newest first.
        assert_eq!(
            search_names(&app, json!({ "experiment_ids": all })).await,
            names(&["epsilon", "delta", "gamma", "beta", "alpha"]),
            "{kind}"
        );
        assert_eq!(
            search_names(&app, json!({ "experiment_ids": [other] })).await,
            names(&["epsilon"]),
            "{kind}"
        );

        for (filter, want) in [
            ("name = 'beta'", vec!["beta"]),
            ("name != 'beta'", vec!["alpha", "delta", "gamma"]),
            ("name LIKE '%a'", vec!["alpha", "beta", "delta", "gamma"]),
            ("name LIKE 'A%'", vec![]),
            ("name ILIKE 'A%'", vec!["alpha"]),
            (
                "attributes.name IN ('alpha', 'delta')",
                vec!["alpha", "delta"],
            ),
            ("status = 'LOGGED_MODEL_READY'", vec!["alpha", "beta"]),
            ("status = 'READY'", vec!["alpha", "beta"]),
            ("status != 'LOGGED_MODEL_READY'", vec!["delta", "gamma"]),
            ("status = 'LOGGED_MODEL_PENDING'", vec!["gamma"]),
            ("params.lr = '0.1'", vec!["alpha", "gamma"]),
            ("params.lr = '0.1' AND status = 'READY'", vec!["alpha"]),
            ("tags.team = 'ml'", vec!["alpha", "beta"]),
            ("tags.team LIKE 'in%'", vec!["gamma"]),
            ("tags.`a b` = 'y'", vec!["delta"]),
            ("metrics.acc > 0.9", vec!["alpha", "gamma"]), // gamma by its train value
            ("metrics.acc <= 0.7", vec!["beta", "gamma"]),
            ("metrics.acc = 0.95 AND tags.team = 'ml'", vec!["alpha"]),
            ("metrics.acc < 0.5", vec!["gamma"]), // gamma's latest eval point
            ("metrics.missing > 0", vec![]),
            (
                "creation_timestamp > 0",
                vec!["alpha", "beta", "delta", "gamma"],
            ),
            (
                "last_updated_timestamp >= 0 and name = 'delta'",
                vec!["delta"],
            ),
        ] {
            let got = sorted(search_names(&app, f(filter)).await);
            assert_eq!(got, names(&want), "{kind}: {filter}");
        }
        let by_id = format!("model_id = '{}'", ids["beta"]);
        assert_eq!(
            search_names(&app, f(&by_id)).await,
            names(&["beta"]),
            "{kind}"
        );
        let by_run = format!("source_run_id = '{run}'");
        assert_eq!(
            search_names(&app, f(&by_run)).await,
            names(&["alpha"]),
            "{kind}"
        );
        // NaN satisfies no comparison.
        let got = search_names(
            &app,
            json!({ "experiment_ids": [other], "filter": "metrics.acc > -1e308" }),
        )
        .await;
        assert!(got.is_empty(), "{kind}: {got:?}");

        // `datasets` restricts metric filters to those datasets.
        let got = sorted(
            search_names(
                &app,
                json!({ "experiment_ids": [exp], "filter": "metrics.acc > 0.9",
                        "datasets": [{"dataset_name": "eval"}] }),
            )
            .await,
        );
        assert_eq!(got, names(&["alpha"]), "{kind}");
        let got = search_names(
            &app,
            json!({ "experiment_ids": [exp], "filter": "metrics.acc > 0.9",
                    "datasets": [{"dataset_name": "train", "dataset_digest": "d2"}] }),
        )
        .await;
        assert_eq!(got, names(&["gamma"]), "{kind}");
        let got = search_names(
            &app,
            json!({ "experiment_ids": [exp], "filter": "metrics.acc > 0.9",
                    "datasets": [{"dataset_name": "train", "dataset_digest": "other"}] }),
        )
        .await;
        assert!(got.is_empty(), "{kind}: {got:?}");

        // Bad filters are INVALID_PARAMETER_VALUE with a reason.
        for (filter, needle) in [
            ("bogus = 'x'", "bogus"),
            ("metrics.acc LIKE '1'", "LIKE"),
            ("name = 'a' OR name = 'b'", "AND"),
            ("params.lr = 0.1", "quoted"),
        ] {
            let (status, body) = search(&app, f(filter)).await;
            assert_error(status, &body, 400, "INVALID_PARAMETER_VALUE", needle);
        }

        // Order: attributes either way, metrics with missing values last.
        let ob = |field: &str, asc: bool| json!({ "experiment_ids": [exp], "order_by": [{"field_name": field, "ascending": asc}] });
        assert_eq!(
            search_names(&app, ob("name", true)).await,
            names(&["alpha", "beta", "delta", "gamma"]),
            "{kind}"
        );
        assert_eq!(
            search_names(&app, ob("name", false)).await,
            names(&["gamma", "delta", "beta", "alpha"]),
            "{kind}"
        );
        assert_eq!(
            search_names(&app, ob("creation_timestamp", true)).await,
            names(&["alpha", "beta", "gamma", "delta"]),
            "{kind}"
        );
        // Latest point per model: alpha 0.95, beta 0.7, gamma 0.4 (eval, t=20), delta none.
        assert_eq!(
            search_names(&app, ob("metrics.acc", false)).await,
            names(&["alpha", "beta", "gamma", "delta"]),
            "{kind}"
        );
        assert_eq!(
            search_names(&app, ob("metrics.acc", true)).await,
            names(&["gamma", "beta", "alpha", "delta"]),
            "{kind}"
        );
        // Ordered by the train dataset's value: only gamma has one.
        let got = search_names(
            &app,
            json!({ "experiment_ids": [exp], "order_by": [{"field_name": "metrics.acc",
                    "ascending": false, "dataset_name": "train", "dataset_digest": "d2"}] }),
        )
        .await;
        assert_eq!(got[0], "gamma", "{kind}: {got:?}");
        // `ascending` defaults to true.
        assert_eq!(
            search_names(
                &app,
                json!({ "experiment_ids": [exp], "order_by": [{"field_name": "name"}] })
            )
            .await,
            names(&["alpha", "beta", "delta", "gamma"]),
            "{kind}"
        );
        let (status, body) = search(&app, ob("params.lr", true)).await;
        assert_error(status, &body, 400, "INVALID_PARAMETER_VALUE", "params.lr");

        // Pages: 2 + 2 + 1 over both experiments, ordered by name.
        let mut seen = Vec::new();
        let mut token: Option<String> = None;
        let mut pages = 0;
        loop {
            let mut body = json!({ "experiment_ids": all, "max_results": 2,
                                   "order_by": [{"field_name": "name", "ascending": true}] });
            if let Some(t) = &token {
                body["page_token"] = json!(t);
            }
            let (status, resp) = search(&app, body).await;
            assert_eq!(status, 200, "{kind}: {resp}");
            let page: Vec<String> = resp["models"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["info"]["name"].as_str().unwrap().to_string())
                .collect();
            pages += 1;
            assert!(page.len() <= 2, "{kind}: {page:?}");
            seen.extend(page);
            match resp.get("next_page_token").and_then(|t| t.as_str()) {
                Some(t) => token = Some(t.to_string()),
                None => break,
            }
            assert!(pages < 10, "{kind}: paging does not end");
        }
        assert_eq!(pages, 3, "{kind}");
        assert_eq!(
            seen,
            names(&["alpha", "beta", "delta", "epsilon", "gamma"]),
            "{kind}"
        );
        let (status, body) = search(
            &app,
            json!({ "experiment_ids": [exp], "page_token": "garbage" }),
        )
        .await;
        assert_error(status, &body, 400, "INVALID_PARAMETER_VALUE", "page token");
        let (status, body) =
            search(&app, json!({ "experiment_ids": [exp], "max_results": 0 })).await;
        assert_error(status, &body, 400, "INVALID_PARAMETER_VALUE", "max_results");
        drop(app);
    }
}

#[tokio::test]
async fn model_metrics_are_part_of_the_model() {
    for db in TestDb::all().await {
        let app = start_app(&db).await;
        let kind = db.kind;
        let exp = create_experiment(&app, "lm-metrics").await;
        let run = create_run(&app, &exp).await;
        let model = create_model(&app, json!({ "experiment_id": exp, "source_run_id": run })).await;
        let id = model["info"]["model_id"].as_str().unwrap().to_string();
        let points = vec![
            ModelMetricInput {
                key: "loss".into(),
                value: 0.5,
                timestamp: 100,
                step: 1,
                dataset_name: Some("eval".into()),
                dataset_digest: Some("abc".into()),
            },
            ModelMetricInput {
                key: "loss".into(),
                value: f64::NAN,
                timestamp: 200,
                step: 2,
                dataset_name: None,
                dataset_digest: None,
            },
        ];
        app.store
            .log_model_metrics(&id, &run, points.clone())
            .await
            .unwrap();
        // A retried request stores nothing twice.
        app.store
            .log_model_metrics(&id, &run, points)
            .await
            .unwrap();
        let (status, got) = app.get(&format!("logged-models/{id}")).await;
        assert_eq!(status, 200, "{kind}: {got}");
        let metrics = got["model"]["data"]["metrics"].as_array().unwrap().clone();
        assert_eq!(metrics.len(), 2, "{kind}: {metrics:?}");
        assert!(
            metrics.contains(&json!({
                "key": "loss", "value": 0.5, "timestamp": 100, "step": 1,
                "model_id": id, "run_id": run, "dataset_name": "eval", "dataset_digest": "abc"
            })),
            "{kind}: {metrics:?}"
        );
        assert!(
            metrics.contains(&json!({
                "key": "loss", "value": "NaN", "timestamp": 200, "step": 2,
                "model_id": id, "run_id": run
            })),
            "{kind}: {metrics:?}"
        );
        drop(app);
    }
}

#[tokio::test]
async fn artifact_directories_list_relative_to_the_model_root() {
    for db in TestDb::all().await {
        let app = start_app(&db).await;
        let kind = db.kind;
        let exp = create_experiment(&app, "lm-artifacts").await;
        let model = create_model(&app, json!({ "experiment_id": exp, "name": "files" })).await;
        let id = model["info"]["model_id"].as_str().unwrap().to_string();
        let root_uri = model["info"]["artifact_uri"].as_str().unwrap().to_string();
        let root = root_uri
            .strip_prefix("mlflow-artifacts:/")
            .unwrap()
            .to_string();

        // Empty before the upload.
        let (status, body) = app
            .get(&format!("logged-models/{id}/artifacts/directories"))
            .await;
        assert_eq!(status, 200, "{kind}: {body}");
        assert_eq!(body, json!({ "root_uri": root_uri, "files": [] }), "{kind}");

        for (path, content) in [
            ("MLmodel", "flavors: {}\n"),
            ("sub/model.pkl", "0123456789"),
        ] {
            let url = format!(
                "{}/api/2.0/mlflow-artifacts/artifacts/{root}/{path}",
                app.url
            );
            let resp = app.client.put(&url).body(content).send().await.unwrap();
            assert_eq!(resp.status().as_u16(), 200, "{kind}: PUT {url}");
        }

        let (status, body) = app
            .get(&format!("logged-models/{id}/artifacts/directories"))
            .await;
        assert_eq!(status, 200, "{kind}: {body}");
        assert_eq!(
            body,
            json!({
                "root_uri": root_uri,
                "files": [
                    {"path": "MLmodel", "is_dir": false, "file_size": 12},
                    {"path": "sub", "is_dir": true},
                ],
            }),
            "{kind}"
        );
        let (status, body) = app
            .get(&format!(
                "logged-models/{id}/artifacts/directories?artifact_directory_path=sub"
            ))
            .await;
        assert_eq!(status, 200, "{kind}: {body}");
        assert_eq!(
            body["files"],
            json!([{"path": "sub/model.pkl", "is_dir": false, "file_size": 10}]),
            "{kind}"
        );
        let (status, body) = app
            .get(&format!(
                "logged-models/{id}/artifacts/directories?artifact_directory_path=../x"
            ))
            .await;
        assert_error(status, &body, 400, "INVALID_PARAMETER_VALUE", "..");
        let (status, body) = app
            .get("logged-models/m-00000000000000000000000000000000/artifacts/directories")
            .await;
        assert_error(status, &body, 404, "RESOURCE_DOES_NOT_EXIST", "m-0000");
        drop(app);
    }
}
