//! Registry stages, latest versions and search over HTTP, on every available backend.

use serde_json::json;

use super::{create_model, create_run, create_version, err, names, ok, q, versions};
use crate::common::start_app;
use kiln_testkit::TestDb;

#[tokio::test]
async fn stages_and_latest_versions() {
    for db in TestDb::all().await {
        let app = start_app(&db).await;
        let k = db.kind;
        create_model(&app, "churn", json!([])).await;
        for i in 1..=3 {
            create_version(&app, "churn", &format!("s3://b/{i}"), None).await;
        }
        let t = app
            .post(
                "model-versions/transition-stage",
                json!({"name": "churn", "version": "1", "stage": "production", "archive_existing_versions": false}),
            )
            .await;
        ok(&t, k);
        assert_eq!(t.1["model_version"]["current_stage"], "Production", "{k}");
        ok(
            &app.post(
                "model-versions/transition-stage",
                json!({"name": "churn", "version": "2", "stage": "STAGING", "archive_existing_versions": false}),
            )
            .await,
            k,
        );

        let latest = app
            .post(
                "registered-models/get-latest-versions",
                json!({"name": "churn", "stages": ["Production"]}),
            )
            .await;
        ok(&latest, k);
        assert_eq!(versions(&latest.1["model_versions"]), vec!["1"], "{k}");
        let all = app
            .post(
                "registered-models/get-latest-versions",
                json!({"name": "churn"}),
            )
            .await;
        let mut got = versions(&all.1["model_versions"]);
        got.sort();
        assert_eq!(got, vec!["1", "2", "3"], "{k}");
        let via_get = app
            .get("registered-models/get-latest-versions?name=churn&stages=staging")
            .await;
        ok(&via_get, k);
        assert_eq!(versions(&via_get.1["model_versions"]), vec!["2"], "{k}");
        let rm = app.get("registered-models/get?name=churn").await.1;
        assert_eq!(
            rm["registered_model"]["latest_versions"]
                .as_array()
                .unwrap()
                .len(),
            3,
            "{k}"
        );

        // Promote 3 to Production, archiving 1.
        let t = app
            .post(
                "model-versions/transition-stage",
                json!({"name": "churn", "version": "3", "stage": "Production", "archive_existing_versions": true}),
            )
            .await;
        ok(&t, k);
        let v1 = app.get("model-versions/get?name=churn&version=1").await;
        assert_eq!(v1.1["model_version"]["current_stage"], "Archived", "{k}");
        let v2 = app.get("model-versions/get?name=churn&version=2").await;
        assert_eq!(v2.1["model_version"]["current_stage"], "Staging", "{k}");
        let latest = app
            .post(
                "registered-models/get-latest-versions",
                json!({"name": "churn", "stages": ["Production", "Archived"]}),
            )
            .await;
        let mut got = versions(&latest.1["model_versions"]);
        got.sort();
        assert_eq!(got, vec!["1", "3"], "{k}");

        err(
            &app.post(
                "model-versions/transition-stage",
                json!({"name": "churn", "version": "2", "stage": "Archived", "archive_existing_versions": true}),
            )
            .await,
            400,
            "INVALID_PARAMETER_VALUE",
            k,
        );
        err(
            &app.post(
                "model-versions/transition-stage",
                json!({"name": "churn", "version": "2", "stage": "bogus"}),
            )
            .await,
            400,
            "INVALID_PARAMETER_VALUE",
            k,
        );
        err(
            &app.post(
                "registered-models/get-latest-versions",
                json!({"name": "churn", "stages": ["bogus"]}),
            )
            .await,
            400,
            "INVALID_PARAMETER_VALUE",
            k,
        );
        err(
            &app.post(
                "registered-models/get-latest-versions",
                json!({"name": "nope"}),
            )
            .await,
            404,
            "RESOURCE_DOES_NOT_EXIST",
            k,
        );
        err(
            &app.post(
                "model-versions/transition-stage",
                json!({"name": "churn", "version": "7", "stage": "Staging"}),
            )
            .await,
            404,
            "RESOURCE_DOES_NOT_EXIST",
            k,
        );
        drop(app);
    }
}

#[tokio::test]
async fn search_registered_models_and_versions() {
    for db in TestDb::all().await {
        let app = start_app(&db).await;
        let k = db.kind;
        let (run_id, _) = create_run(&app).await;
        create_model(&app, "churn", json!([{"key": "team", "value": "ml"}])).await;
        create_model(&app, "churn-b", json!([{"key": "team", "value": "ops"}])).await;
        create_model(&app, "fraud", json!([])).await;
        create_model(
            &app,
            "prompt-a",
            json!([{"key": "mlflow.prompt.is_prompt", "value": "true"}]),
        )
        .await;
        create_model(
            &app,
            "not-prompt",
            json!([{"key": "mlflow.prompt.is_prompt", "value": "false"}]),
        )
        .await;

        let search =
            |filter: &str| format!("registered-models/search?{}", q(&[("filter", filter)]));
        // The filter the client injects.
        let r = app
            .get(&search(
                "name='churn' AND tag.`mlflow.prompt.is_prompt` != 'true'",
            ))
            .await;
        ok(&r, k);
        assert_eq!(names(&r.1["registered_models"]), vec!["churn"], "{k}");
        let r = app
            .get(&search("tag.`mlflow.prompt.is_prompt` != 'true'"))
            .await;
        assert_eq!(
            names(&r.1["registered_models"]),
            vec!["churn", "churn-b", "fraud", "not-prompt"],
            "{k}"
        );
        let r = app.get(&search("name LIKE 'churn%'")).await;
        assert_eq!(
            names(&r.1["registered_models"]),
            vec!["churn", "churn-b"],
            "{k}"
        );
        let r = app.get(&search("name LIKE 'CHURN%'")).await;
        assert_eq!(
            names(&r.1["registered_models"]),
            Vec::<String>::new(),
            "{k}: LIKE is case-sensitive"
        );
        let r = app.get(&search("name ILIKE 'CHURN%'")).await;
        assert_eq!(
            names(&r.1["registered_models"]),
            vec!["churn", "churn-b"],
            "{k}"
        );
        let r = app.get(&search("tags.team = 'ops'")).await;
        assert_eq!(names(&r.1["registered_models"]), vec!["churn-b"], "{k}");
        assert_eq!(
            r.1["registered_models"][0]["tags"],
            json!([{"key": "team", "value": "ops"}]),
            "{k}"
        );
        err(
            &app.get(&search("name = ")).await,
            400,
            "INVALID_PARAMETER_VALUE",
            k,
        );
        err(
            &app.get(&search("run_id = 'x'")).await,
            400,
            "INVALID_PARAMETER_VALUE",
            k,
        );

        // Pagination, by GET and by POST.
        let p1 = app.get("registered-models/search?max_results=2").await;
        ok(&p1, k);
        assert_eq!(
            names(&p1.1["registered_models"]),
            vec!["churn", "churn-b"],
            "{k}"
        );
        let token = p1.1["next_page_token"]
            .as_str()
            .expect("a next page token")
            .to_string();
        let p2 = app
            .post(
                "registered-models/search",
                json!({"max_results": 2, "page_token": token}),
            )
            .await;
        ok(&p2, k);
        assert_eq!(
            names(&p2.1["registered_models"]),
            vec!["fraud", "not-prompt"],
            "{k}"
        );
        let token = p2.1["next_page_token"].as_str().unwrap().to_string();
        let p3 = app
            .get(&format!(
                "registered-models/search?{}",
                q(&[("max_results", "2"), ("page_token", &token)])
            ))
            .await;
        assert_eq!(names(&p3.1["registered_models"]), vec!["prompt-a"], "{k}");
        assert!(p3.1.get("next_page_token").is_none(), "{k}: {}", p3.1);
        let desc = app
            .post(
                "registered-models/search",
                json!({"order_by": ["name DESC"], "max_results": 1}),
            )
            .await;
        assert_eq!(names(&desc.1["registered_models"]), vec!["prompt-a"], "{k}");
        err(
            &app.get("registered-models/search?max_results=1001").await,
            400,
            "INVALID_PARAMETER_VALUE",
            k,
        );
        err(
            &app.get("registered-models/search?page_token=garbage").await,
            400,
            "INVALID_PARAMETER_VALUE",
            k,
        );

        // Versions: latest_versions come back with search results.
        create_version(&app, "churn", &format!("runs:/{run_id}/model"), None).await;
        create_version(&app, "churn", "s3://bucket/two", Some("other-run")).await;
        create_version(&app, "fraud", "s3://bucket/fraud", None).await;
        ok(
            &app.post(
                "model-versions/set-tag",
                json!({"name": "churn", "version": "2", "key": "validated", "value": "yes"}),
            )
            .await,
            k,
        );
        let r = app.get(&search("name = 'churn'")).await;
        assert_eq!(
            versions(&r.1["registered_models"][0]["latest_versions"]),
            vec!["2"],
            "{k}: newest version in stage None"
        );
        assert_eq!(
            r.1["registered_models"][0]["latest_versions"][0]["tags"],
            json!([{"key": "validated", "value": "yes"}]),
            "{k}"
        );

        let vs = |filter: &str| format!("model-versions/search?{}", q(&[("filter", filter)]));
        let r = app.get(&vs("name='churn'")).await;
        ok(&r, k);
        assert_eq!(versions(&r.1["model_versions"]), vec!["2", "1"], "{k}");
        let r = app.get(&vs(&format!("run_id = '{run_id}'"))).await;
        assert_eq!(versions(&r.1["model_versions"]), vec!["1"], "{k}");
        let r = app
            .get(&vs(&format!("run_id IN ('{run_id}', 'other-run')")))
            .await;
        assert_eq!(versions(&r.1["model_versions"]), vec!["2", "1"], "{k}");
        let r = app.get(&vs("name = 'churn' AND version_number > 1")).await;
        assert_eq!(versions(&r.1["model_versions"]), vec!["2"], "{k}");
        let r = app.get(&vs("source_path LIKE 's3://bucket/%'")).await;
        // MLflow's default order is newest update first; the two may share a millisecond.
        let mut found = names(&r.1["model_versions"]);
        found.sort();
        assert_eq!(found, vec!["churn", "fraud"], "{k}");
        let r = app.get(&vs("tags.validated = 'yes'")).await;
        assert_eq!(versions(&r.1["model_versions"]), vec!["2"], "{k}");
        assert_eq!(
            r.1["model_versions"][0]["tags"],
            json!([{"key": "validated", "value": "yes"}]),
            "{k}"
        );
        let r = app.get(&vs("tags.validated != 'yes'")).await;
        assert_eq!(
            r.1["model_versions"].as_array().unwrap().len(),
            2,
            "{k}: {}",
            r.1
        );
        let r = app
            .post("model-versions/search", json!({"filter": "name = 'churn'", "order_by": ["version_number ASC"], "max_results": 1}))
            .await;
        ok(&r, k);
        assert_eq!(versions(&r.1["model_versions"]), vec!["1"], "{k}");
        let token = r.1["next_page_token"].as_str().expect("token").to_string();
        let r = app
            .post(
                "model-versions/search",
                json!({"filter": "name = 'churn'", "order_by": ["version_number ASC"], "max_results": 1, "page_token": token}),
            )
            .await;
        assert_eq!(versions(&r.1["model_versions"]), vec!["2"], "{k}");
        assert!(r.1.get("next_page_token").is_none(), "{k}");
        err(
            &app.get("model-versions/search?max_results=200001").await,
            400,
            "INVALID_PARAMETER_VALUE",
            k,
        );
        ok(
            &app.get("model-versions/search?max_results=200000").await,
            k,
        );

        // Deleted versions disappear from search.
        ok(
            &app.delete(
                "model-versions/delete",
                json!({"name": "churn", "version": "1"}),
            )
            .await,
            k,
        );
        let r = app.get(&vs("name='churn'")).await;
        assert_eq!(versions(&r.1["model_versions"]), vec!["2"], "{k}");
        drop(app);
    }
}
