//! `/api/kiln/feedback`: single and batch labels, replacement by request id, errors that name
//! the field, nothing stored from a refused batch.

use kiln_testkit::TestDb;
use serde_json::json;

use crate::common::start_app;

#[tokio::test]
async fn feedback_single_batch_and_errors() {
    for db in TestDb::all().await {
        let app = start_app(&db).await;
        let url = format!("{}/api/kiln/feedback", app.url);
        let post = |body: serde_json::Value| {
            let url = url.clone();
            let app = &app;
            async move { app.send(reqwest::Method::POST, &url, Some(&body)).await }
        };
        let (s, b) = post(json!({"deployment": "delay", "request_id": "r1", "label": 1})).await;
        assert_eq!((s, &b), (200, &json!({"stored": 1})), "{}", db.kind);
        let (s, b) = post(json!({"deployment": "delay", "labels": [
            {"request_id": "r2", "label": 0},
            {"request_id": "r1", "label": 0},
            {"request_id": "r3", "label": 12.5},
        ]}))
        .await;
        assert_eq!((s, &b), (200, &json!({"stored": 3})), "{}", db.kind);
        for (body, needle) in [
            (json!({"request_id": "r1", "label": 1}), "deployment"),
            (json!({"deployment": "delay", "request_id": "r1"}), "label"),
            (json!({"deployment": "delay", "label": 1}), "request_id"),
            (json!({"deployment": "delay"}), "labels"),
            (
                json!({"deployment": "delay", "labels": [{"request_id": "r9", "label": 1}, {"request_id": "r8", "label": {"x": 1}}]}),
                "item 1",
            ),
            (
                json!({"deployment": "delay", "labels": [{"request_id": "r9"}]}),
                "label",
            ),
            (
                json!({"deployment": "delay", "request_id": "r1", "label": 1, "lable": 2}),
                "lable",
            ),
        ] {
            let (s, b) = post(body.clone()).await;
            assert_eq!(s, 400, "{}: {body} → {b}", db.kind);
            let msg = b["message"].as_str().unwrap_or_default();
            assert!(
                msg.contains(needle),
                "{}: {body}: `{needle}` not in {b}",
                db.kind
            );
        }
        let (s, b) = app
            .send(
                reqwest::Method::GET,
                &format!("{url}?deployment=delay"),
                None,
            )
            .await;
        assert_eq!(s, 200);
        let got: Vec<(String, serde_json::Value)> = b["labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                (
                    l["request_id"].as_str().unwrap().to_string(),
                    l["label"].clone(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("r1".to_string(), json!(0)),
                ("r2".to_string(), json!(0)),
                ("r3".to_string(), json!(12.5)),
            ],
            "{}",
            db.kind
        );
    }
}
