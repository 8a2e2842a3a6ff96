//! The model registry over HTTP: registered models, versions, aliases, stages and search,
//! on every available backend.

mod search;

use serde_json::{Value, json};

use crate::common::{TestApp, start_app};
use kiln_testkit::TestDb;

/// A query string from pairs, form-encoded.
pub(crate) fn q(pairs: &[(&str, &str)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

#[track_caller]
pub(crate) fn ok(resp: &(u16, Value), what: &str) {
    assert_eq!(resp.0, 200, "{what}: {}", resp.1);
}

#[track_caller]
pub(crate) fn err(resp: &(u16, Value), status: u16, code: &str, what: &str) {
    assert_eq!(resp.0, status, "{what}: {}", resp.1);
    assert_eq!(resp.1["error_code"], code, "{what}: {}", resp.1);
}

pub(crate) async fn create_model(app: &TestApp, name: &str, tags: Value) {
    let r = app
        .post(
            "registered-models/create",
            json!({"name": name, "tags": tags}),
        )
        .await;
    ok(&r, &format!("create {name}"));
}

pub(crate) async fn create_version(
    app: &TestApp,
    name: &str,
    source: &str,
    run_id: Option<&str>,
) -> Value {
    let mut body = json!({"name": name, "source": source});
    if let Some(r) = run_id {
        body["run_id"] = json!(r);
    }
    let r = app.post("model-versions/create", body).await;
    ok(&r, &format!("create version of {name} from {source}"));
    r.1["model_version"].clone()
}

/// Creates a run in the default experiment; returns (run_id, artifact_uri).
pub(crate) async fn create_run(app: &TestApp) -> (String, String) {
    let r = app
        .post(
            "runs/create",
            json!({"experiment_id": "0", "user_id": "tester"}),
        )
        .await;
    ok(&r, "create run");
    let info = &r.1["run"]["info"];
    (
        info["run_id"].as_str().unwrap().to_string(),
        info["artifact_uri"].as_str().unwrap().to_string(),
    )
}

pub(crate) fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .map(|a| {
            a.iter()
                .map(|m| m["name"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

pub(crate) fn versions(list: &Value) -> Vec<String> {
    list.as_array()
        .map(|a| {
            a.iter()
                .map(|m| m["version"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn registered_model_lifecycle() {
    for db in TestDb::all().await {
        let app = start_app(&db).await;
        let k = db.kind;

        let r = app
            .post(
                "registered-models/create",
                json!({"name": "churn", "description": "d1", "tags": [{"key": "team", "value": "ml"}]}),
            )
            .await;
        ok(&r, k);
        let rm = &r.1["registered_model"];
        assert_eq!(rm["name"], "churn", "{k}");
        assert_eq!(rm["description"], "d1", "{k}");
        assert_eq!(rm["tags"], json!([{"key": "team", "value": "ml"}]), "{k}");
        assert_eq!(rm["aliases"], json!([]), "{k}");
        assert!(rm["creation_timestamp"].as_i64().unwrap() > 0, "{k}");

        let dup = app
            .post("registered-models/create", json!({"name": "churn"}))
            .await;
        err(&dup, 400, "RESOURCE_ALREADY_EXISTS", k);
        assert_eq!(
            dup.1["message"], "Registered Model (name=churn) already exists.",
            "{k}"
        );
        err(
            &app.post("registered-models/create", json!({"name": ""}))
                .await,
            400,
            "INVALID_PARAMETER_VALUE",
            k,
        );

        let got = app
            .get(&format!(
                "registered-models/get?{}",
                q(&[("name", "churn")])
            ))
            .await;
        ok(&got, k);
        assert_eq!(got.1["registered_model"]["name"], "churn", "{k}");
        let missing = app.get("registered-models/get?name=nope").await;
        err(&missing, 404, "RESOURCE_DOES_NOT_EXIST", k);
        assert!(
            missing.1["message"]
                .as_str()
                .unwrap()
                .contains("Registered Model with name=nope not found"),
            "{k}: {}",
            missing.1
        );

        let upd = app
            .patch(
                "registered-models/update",
                json!({"name": "churn", "description": "d2"}),
            )
            .await;
        ok(&upd, k);
        assert_eq!(upd.1["registered_model"]["description"], "d2", "{k}");

        ok(
            &app.post(
                "registered-models/set-tag",
                json!({"name": "churn", "key": "owner", "value": "ana"}),
            )
            .await,
            k,
        );
        err(
            &app.post(
                "registered-models/set-tag",
                json!({"name": "churn", "key": "big", "value": "x".repeat(100_001)}),
            )
            .await,
            400,
            "INVALID_PARAMETER_VALUE",
            k,
        );
        ok(
            &app.post(
                "registered-models/set-tag",
                json!({"name": "churn", "key": "big", "value": "x".repeat(100_000)}),
            )
            .await,
            k,
        );
        // DELETE carries a JSON body.
        ok(
            &app.delete(
                "registered-models/delete-tag",
                json!({"name": "churn", "key": "team"}),
            )
            .await,
            k,
        );
        ok(
            &app.delete(
                "registered-models/delete-tag",
                json!({"name": "churn", "key": "big"}),
            )
            .await,
            k,
        );
        let got = app.get("registered-models/get?name=churn").await;
        assert_eq!(
            got.1["registered_model"]["tags"],
            json!([{"key": "owner", "value": "ana"}]),
            "{k}"
        );
        err(
            &app.delete(
                "registered-models/delete-tag",
                json!({"name": "nope", "key": "team"}),
            )
            .await,
            404,
            "RESOURCE_DOES_NOT_EXIST",
            k,
        );

        // Rename carries versions, tags and aliases along.
        create_version(&app, "churn", "s3://bucket/a", None).await;
        let v = app
            .post(
                "model-versions/set-tag",
                json!({"name": "churn", "version": "1", "key": "q", "value": "ok"}),
            )
            .await;
        ok(&v, k);
        ok(
            &app.post(
                "registered-models/alias",
                json!({"name": "churn", "alias": "champ", "version": "1"}),
            )
            .await,
            k,
        );
        create_model(&app, "taken", json!([])).await;
        err(
            &app.post(
                "registered-models/rename",
                json!({"name": "churn", "new_name": "taken"}),
            )
            .await,
            400,
            "RESOURCE_ALREADY_EXISTS",
            k,
        );
        err(
            &app.post(
                "registered-models/rename",
                json!({"name": "nope", "new_name": "x"}),
            )
            .await,
            404,
            "RESOURCE_DOES_NOT_EXIST",
            k,
        );
        let ren = app
            .post(
                "registered-models/rename",
                json!({"name": "churn", "new_name": "churn2"}),
            )
            .await;
        ok(&ren, k);
        let rm = &ren.1["registered_model"];
        assert_eq!(rm["name"], "churn2", "{k}");
        assert_eq!(
            rm["aliases"],
            json!([{"alias": "champ", "version": "1"}]),
            "{k}"
        );
        assert_eq!(rm["latest_versions"][0]["name"], "churn2", "{k}");
        err(
            &app.get("registered-models/get?name=churn").await,
            404,
            "RESOURCE_DOES_NOT_EXIST",
            k,
        );
        let mv = app.get("model-versions/get?name=churn2&version=1").await;
        ok(&mv, k);
        assert_eq!(
            mv.1["model_version"]["tags"],
            json!([{"key": "q", "value": "ok"}]),
            "{k}"
        );
        assert_eq!(mv.1["model_version"]["aliases"], json!(["champ"]), "{k}");

        // Delete (JSON body) removes everything; a re-created model starts at version 1.
        ok(
            &app.delete("registered-models/delete", json!({"name": "churn2"}))
                .await,
            k,
        );
        err(
            &app.get("registered-models/get?name=churn2").await,
            404,
            "RESOURCE_DOES_NOT_EXIST",
            k,
        );
        err(
            &app.get("model-versions/get?name=churn2&version=1").await,
            404,
            "RESOURCE_DOES_NOT_EXIST",
            k,
        );
        err(
            &app.delete("registered-models/delete", json!({"name": "churn2"}))
                .await,
            404,
            "RESOURCE_DOES_NOT_EXIST",
            k,
        );
        create_model(&app, "churn2", json!([])).await;
        let mv = create_version(&app, "churn2", "s3://bucket/b", None).await;
        assert_eq!(mv["version"], "1", "{k}");
        assert_eq!(
            app.get("registered-models/get?name=churn2").await.1["registered_model"]["aliases"],
            json!([]),
            "{k}"
        );
        drop(app);
    }
}

#[tokio::test]
async fn model_versions_resolve_sources_and_validate() {
    for db in TestDb::all().await {
        let app = start_app(&db).await;
        let k = db.kind;
        let (run_id, artifact_uri) = create_run(&app).await;
        create_model(&app, "churn", json!([])).await;

        let mv = create_version(&app, "churn", &format!("runs:/{run_id}/model"), None).await;
        assert_eq!(mv["version"], "1", "{k}");
        assert_eq!(mv["run_id"], run_id, "{k}");
        assert_eq!(mv["status"], "READY", "{k}");
        assert_eq!(mv["current_stage"], "None", "{k}");
        assert_eq!(mv["source"], format!("runs:/{run_id}/model"), "{k}");
        assert_eq!(mv["aliases"], json!([]), "{k}");
        let uri = app
            .get("model-versions/get-download-uri?name=churn&version=1")
            .await;
        ok(&uri, k);
        assert_eq!(
            uri.1["artifact_uri"],
            format!("{artifact_uri}/model"),
            "{k}"
        );

        let mv2 = create_version(&app, "churn", "s3://bucket/m2", Some("abc123")).await;
        assert_eq!(mv2["version"], "2", "{k}");
        assert_eq!(mv2["run_id"], "abc123", "{k}");
        let uri = app
            .get("model-versions/get-download-uri?name=churn&version=2")
            .await;
        assert_eq!(uri.1["artifact_uri"], "s3://bucket/m2", "{k}");

        // Sources naming another version resolve to its location.
        let mv3 = create_version(&app, "churn", "models:/churn/1", None).await;
        let uri = app
            .get(&format!(
                "model-versions/get-download-uri?name=churn&version={}",
                mv3["version"].as_str().unwrap()
            ))
            .await;
        assert_eq!(
            uri.1["artifact_uri"],
            format!("{artifact_uri}/model"),
            "{k}"
        );

        // Creating a version bumps the model's last update time.
        let rm = app.get("registered-models/get?name=churn").await.1;
        assert!(
            rm["registered_model"]["last_updated_timestamp"].as_i64()
                >= Some(mv3["creation_timestamp"].as_i64().unwrap()),
            "{k}: {rm}"
        );

        err(
            &app.post(
                "model-versions/create",
                json!({"name": "churn", "source": "runs:/0123456789abcdef0123456789abcdef/model"}),
            )
            .await,
            404,
            "RESOURCE_DOES_NOT_EXIST",
            k,
        );
        err(
            &app.post(
                "model-versions/create",
                json!({"name": "nope", "source": "s3://b/x"}),
            )
            .await,
            404,
            "RESOURCE_DOES_NOT_EXIST",
            k,
        );
        err(
            &app.post("model-versions/create", json!({"name": "churn"}))
                .await,
            400,
            "INVALID_PARAMETER_VALUE",
            k,
        );
        err(
            &app.post(
                "model-versions/create",
                json!({"name": "churn", "source": "s3://b/x/../../etc"}),
            )
            .await,
            400,
            "INVALID_PARAMETER_VALUE",
            k,
        );
        let bad = app.get("model-versions/get?name=churn&version=x").await;
        err(&bad, 400, "INVALID_PARAMETER_VALUE", k);
        assert!(
            bad.1["message"].as_str().unwrap().contains("'version'"),
            "{k}: {}",
            bad.1
        );
        let missing = app.get("model-versions/get?name=churn&version=99").await;
        err(&missing, 404, "RESOURCE_DOES_NOT_EXIST", k);
        assert_eq!(
            missing.1["message"], "Model Version (name=churn, version=99) not found",
            "{k}"
        );

        // Update, tags.
        let upd = app
            .patch(
                "model-versions/update",
                json!({"name": "churn", "version": "1", "description": "first"}),
            )
            .await;
        ok(&upd, k);
        assert_eq!(upd.1["model_version"]["description"], "first", "{k}");
        ok(
            &app.post(
                "model-versions/set-tag",
                json!({"name": "churn", "version": "1", "key": "a", "value": "1"}),
            )
            .await,
            k,
        );
        ok(
            &app.post(
                "model-versions/set-tag",
                json!({"name": "churn", "version": "1", "key": "b", "value": "2"}),
            )
            .await,
            k,
        );
        ok(
            &app.delete(
                "model-versions/delete-tag",
                json!({"name": "churn", "version": "1", "key": "a"}),
            )
            .await,
            k,
        );
        let got = app.get("model-versions/get?name=churn&version=1").await;
        assert_eq!(
            got.1["model_version"]["tags"],
            json!([{"key": "b", "value": "2"}]),
            "{k}"
        );
        err(
            &app.post(
                "model-versions/set-tag",
                json!({"name": "churn", "version": "42", "key": "a", "value": "1"}),
            )
            .await,
            404,
            "RESOURCE_DOES_NOT_EXIST",
            k,
        );

        // Deleted numbers are not reused.
        ok(
            &app.delete(
                "model-versions/delete",
                json!({"name": "churn", "version": "2"}),
            )
            .await,
            k,
        );
        err(
            &app.get("model-versions/get?name=churn&version=2").await,
            404,
            "RESOURCE_DOES_NOT_EXIST",
            k,
        );
        err(
            &app.delete(
                "model-versions/delete",
                json!({"name": "churn", "version": "2"}),
            )
            .await,
            404,
            "RESOURCE_DOES_NOT_EXIST",
            k,
        );
        // Deleting the newest version must not free its number either.
        ok(
            &app.delete(
                "model-versions/delete",
                json!({"name": "churn", "version": "3"}),
            )
            .await,
            k,
        );
        let mv4 = create_version(&app, "churn", "s3://bucket/m4", None).await;
        assert_eq!(mv4["version"], "4", "{k}");

        // Concurrent creates for one model all succeed with distinct numbers.
        let mut tasks = Vec::new();
        for i in 0..12 {
            let client = app.client.clone();
            let url = app.api("model-versions/create");
            tasks.push(tokio::spawn(async move {
                let resp = client
                    .post(url)
                    .json(&json!({"name": "churn", "source": format!("s3://bucket/c{i}")}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status().as_u16(), 200);
                let body: Value = resp.json().await.unwrap();
                body["model_version"]["version"]
                    .as_str()
                    .unwrap()
                    .parse::<i64>()
                    .unwrap()
            }));
        }
        let mut got = Vec::new();
        for t in tasks {
            got.push(t.await.unwrap());
        }
        got.sort();
        assert_eq!(got, (5..17).collect::<Vec<i64>>(), "{k}");
        drop(app);
    }
}

#[tokio::test]
async fn aliases_set_get_delete_and_reserved_names() {
    for db in TestDb::all().await {
        let app = start_app(&db).await;
        let k = db.kind;
        create_model(&app, "churn", json!([])).await;
        create_version(&app, "churn", "s3://b/1", None).await;
        create_version(&app, "churn", "s3://b/2", None).await;

        ok(
            &app.post(
                "registered-models/alias",
                json!({"name": "churn", "alias": "champion", "version": "1"}),
            )
            .await,
            k,
        );
        let got = app
            .get(&format!(
                "registered-models/alias?{}",
                q(&[("name", "churn"), ("alias", "champion")])
            ))
            .await;
        ok(&got, k);
        assert_eq!(got.1["model_version"]["version"], "1", "{k}");
        assert_eq!(
            got.1["model_version"]["aliases"],
            json!(["champion"]),
            "{k}"
        );
        let rm = app.get("registered-models/get?name=churn").await.1;
        assert_eq!(
            rm["registered_model"]["aliases"],
            json!([{"alias": "champion", "version": "1"}]),
            "{k}"
        );

        // Moving an alias.
        ok(
            &app.post(
                "registered-models/alias",
                json!({"name": "churn", "alias": "champion", "version": 2}),
            )
            .await,
            k,
        );
        let got = app
            .get("registered-models/alias?name=churn&alias=champion")
            .await;
        assert_eq!(got.1["model_version"]["version"], "2", "{k}");
        let v1 = app.get("model-versions/get?name=churn&version=1").await;
        assert_eq!(v1.1["model_version"]["aliases"], json!([]), "{k}");

        for bad in ["latest", "LATEST", "v1", "V22", "a b", "x.y", ""] {
            err(
                &app.post(
                    "registered-models/alias",
                    json!({"name": "churn", "alias": bad, "version": "1"}),
                )
                .await,
                400,
                "INVALID_PARAMETER_VALUE",
                &format!("{k} alias {bad:?}"),
            );
        }
        err(
            &app.post(
                "registered-models/alias",
                json!({"name": "churn", "alias": "a".repeat(256), "version": "1"}),
            )
            .await,
            400,
            "INVALID_PARAMETER_VALUE",
            k,
        );
        ok(
            &app.post(
                "registered-models/alias",
                json!({"name": "churn", "alias": "v1-beta", "version": "1"}),
            )
            .await,
            k,
        );
        err(
            &app.post(
                "registered-models/alias",
                json!({"name": "churn", "alias": "x", "version": "9"}),
            )
            .await,
            404,
            "RESOURCE_DOES_NOT_EXIST",
            k,
        );
        err(
            &app.post(
                "registered-models/alias",
                json!({"name": "nope", "alias": "x", "version": "1"}),
            )
            .await,
            404,
            "RESOURCE_DOES_NOT_EXIST",
            k,
        );

        // DELETE with a JSON body, as the client sends it.
        ok(
            &app.delete(
                "registered-models/alias",
                json!({"name": "churn", "alias": "champion"}),
            )
            .await,
            k,
        );
        err(
            &app.get("registered-models/alias?name=churn&alias=champion")
                .await,
            404,
            "RESOURCE_DOES_NOT_EXIST",
            k,
        );

        // Deleting a version drops the aliases that point at it.
        ok(
            &app.delete(
                "model-versions/delete",
                json!({"name": "churn", "version": "1"}),
            )
            .await,
            k,
        );
        err(
            &app.get("registered-models/alias?name=churn&alias=v1-beta")
                .await,
            404,
            "RESOURCE_DOES_NOT_EXIST",
            k,
        );
        let rm = app.get("registered-models/get?name=churn").await.1;
        assert_eq!(rm["registered_model"]["aliases"], json!([]), "{k}");
        drop(app);
    }
}
