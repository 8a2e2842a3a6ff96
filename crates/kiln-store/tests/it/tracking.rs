use kiln_core::entities::KeyValue;
use kiln_store::{BatchInput, MetricInput, RunCreate, RunUpdate, StoreError, ViewType};

use crate::stores;

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: v.into(),
    }
}

fn metric(key: &str, value: f64, step: i64, ts: i64) -> MetricInput {
    MetricInput {
        key: key.into(),
        value,
        timestamp: ts,
        step,
    }
}

async fn new_run(store: &kiln_store::Store, exp: &str) -> String {
    store
        .create_run(RunCreate {
            experiment_id: exp.into(),
            user_id: "tester".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .info
        .run_id
}

#[tokio::test]
async fn experiments_lifecycle() {
    for (db, store) in stores().await {
        let default = store.get_experiment("0").await.unwrap();
        assert_eq!(default.name, "Default", "{}", db.kind);
        let id = store
            .create_experiment("exp-a".into(), None, vec![kv("team", "ml")])
            .await
            .unwrap();
        let exp = store.get_experiment(&id).await.unwrap();
        assert_eq!(exp.artifact_location, format!("mlflow-artifacts:/{id}"));
        assert_eq!(exp.tags, vec![kv("team", "ml")]);
        assert!(matches!(
            store.create_experiment("exp-a".into(), None, vec![]).await,
            Err(StoreError::AlreadyExists(_))
        ));
        assert!(matches!(
            store.get_experiment("999").await,
            Err(StoreError::NotFound(_))
        ));
        assert!(matches!(
            store.get_experiment("abc").await,
            Err(StoreError::Invalid(_))
        ));
        store.rename_experiment(&id, "exp-b".into()).await.unwrap();
        assert_eq!(
            store
                .get_experiment_by_name("exp-b")
                .await
                .unwrap()
                .experiment_id,
            id
        );
        let run = new_run(&store, &id).await;
        store.set_experiment_lifecycle(&id, true).await.unwrap();
        assert_eq!(
            store.get_run(&run).await.unwrap().info.lifecycle_stage,
            "deleted"
        );
        let (deleted, _) = store
            .search_experiments(ViewType::DeletedOnly, None, &[], None, None)
            .await
            .unwrap();
        assert_eq!(deleted.len(), 1);
        store.set_experiment_lifecycle(&id, false).await.unwrap();
        assert_eq!(
            store.get_run(&run).await.unwrap().info.lifecycle_stage,
            "active"
        );
        assert!(store.set_experiment_lifecycle("0", true).await.is_err());
        store
            .set_experiment_tag(&id, "k".into(), "v".into())
            .await
            .unwrap();
        store.delete_experiment_tag(&id, "k".into()).await.unwrap();
        assert!(matches!(
            store.delete_experiment_tag(&id, "k".into()).await,
            Err(StoreError::NotFound(_))
        ));
    }
}

#[tokio::test]
async fn experiment_search_pages_without_duplicates() {
    for (db, store) in stores().await {
        for i in 0..7 {
            store
                .create_experiment(format!("page-{i}"), None, vec![])
                .await
                .unwrap();
        }
        let mut seen = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let (page, next) = store
                .search_experiments(
                    ViewType::ActiveOnly,
                    Some("name LIKE 'page-%'"),
                    &["name ASC".to_string()],
                    Some(3),
                    token.as_deref(),
                )
                .await
                .unwrap();
            seen.extend(page.into_iter().map(|e| e.name));
            match next {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        let want: Vec<String> = (0..7).map(|i| format!("page-{i}")).collect();
        assert_eq!(seen, want, "{}", db.kind);
    }
}

#[tokio::test]
async fn params_are_write_once_and_batches_are_atomic() {
    for (db, store) in stores().await {
        let run = new_run(&store, "0").await;
        store.log_param(&run, kv("lr", "0.1")).await.unwrap();
        // The same value again is a no-op.
        store.log_param(&run, kv("lr", "0.1")).await.unwrap();
        let err = store.log_param(&run, kv("lr", "0.2")).await.unwrap_err();
        assert!(
            matches!(&err, StoreError::Invalid(m) if m.contains("lr") && m.contains("0.2")),
            "{}: {err}",
            db.kind
        );
        // A batch with a conflicting param writes nothing at all.
        let err = store
            .log_batch(
                &run,
                BatchInput {
                    metrics: vec![metric("m", 1.0, 0, 1)],
                    params: vec![kv("lr", "0.3")],
                    tags: vec![kv("t", "x")],
                    ..Default::default()
                },
            )
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Invalid(_)));
        let r = store.get_run(&run).await.unwrap();
        assert!(r.data.metrics.is_empty(), "{}", db.kind);
        assert!(!r.data.tags.iter().any(|t| t.key == "t"));
    }
}

#[tokio::test]
async fn batch_limits_name_the_field() {
    for (_db, store) in stores().await {
        let run = new_run(&store, "0").await;
        let metrics = (0..1001).map(|i| metric("m", 1.0, i, 1)).collect();
        let err = store
            .log_batch(
                &run,
                BatchInput {
                    metrics,
                    ..Default::default()
                },
            )
            .await
            .unwrap_err();
        assert!(err.to_string().contains("1000 metrics"), "{err}");
        let params = (0..101).map(|i| kv(&format!("p{i}"), "v")).collect();
        let err = store
            .log_batch(
                &run,
                BatchInput {
                    params,
                    ..Default::default()
                },
            )
            .await
            .unwrap_err();
        assert!(err.to_string().contains("100 params"), "{err}");
        let err = store
            .log_param(&run, kv(&"k".repeat(251), "v"))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("250"), "{err}");
        let err = store
            .log_param(&run, kv("p", &"v".repeat(6001)))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("6000"), "{err}");
        let err = store
            .set_tag(&run, kv("t", &"v".repeat(8001)))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("8000"), "{err}");
    }
}

#[tokio::test]
async fn metrics_keep_non_finite_values_history_and_latest() {
    for (db, store) in stores().await {
        let run = new_run(&store, "0").await;
        let points = vec![
            metric("loss", f64::NAN, 0, 10),
            metric("loss", f64::INFINITY, 1, 11),
            metric("loss", f64::NEG_INFINITY, 2, 12),
            metric("loss", 0.25, 3, 13),
        ];
        for p in points.clone() {
            store.log_metric(&run, p).await.unwrap();
        }
        // A retried point is absorbed, not duplicated.
        store.log_metric(&run, points[3].clone()).await.unwrap();
        let (hist, next) = store
            .get_metric_history(&run, "loss", None, None)
            .await
            .unwrap();
        assert!(next.is_none());
        assert_eq!(hist.len(), 4, "{}", db.kind);
        assert!(hist[0].value.is_nan());
        assert_eq!(hist[1].value, f64::INFINITY);
        assert_eq!(hist[2].value, f64::NEG_INFINITY);
        assert_eq!(hist[3].value, 0.25);
        // Latest is the greatest step, even if logged out of order.
        store
            .log_metric(&run, metric("loss", 9.0, 1, 99))
            .await
            .unwrap();
        let r = store.get_run(&run).await.unwrap();
        let latest = r.data.metrics.iter().find(|m| m.key == "loss").unwrap();
        assert_eq!((latest.step, latest.value), (3, 0.25), "{}", db.kind);
    }
}

#[tokio::test]
async fn history_returns_every_double_exactly() {
    let awkward = [
        0.1 + 0.2,
        1.0 / 3.0,
        -2.5e-310,
        f64::MAX,
        f64::MIN_POSITIVE,
        -1234567.8912345678,
        123456789012345680.0,
    ];
    for (db, store) in stores().await {
        let run = new_run(&store, "0").await;
        let metrics = awkward
            .iter()
            .enumerate()
            .map(|(i, v)| metric("x", *v, i as i64, 1))
            .collect();
        store
            .log_batch(
                &run,
                BatchInput {
                    metrics,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let (hist, _) = store
            .get_metric_history(&run, "x", None, None)
            .await
            .unwrap();
        let got: Vec<u64> = hist.iter().map(|m| m.value.to_bits()).collect();
        let want: Vec<u64> = awkward.iter().map(|v| v.to_bits()).collect();
        assert_eq!(got, want, "{}", db.kind);
    }
}

#[tokio::test]
async fn metric_history_pages() {
    for (db, store) in stores().await {
        let run = new_run(&store, "0").await;
        for chunk in 0..3 {
            let metrics = (0..1000)
                .map(|i| metric("m", i as f64, chunk * 1000 + i, 1))
                .collect();
            store
                .log_batch(
                    &run,
                    BatchInput {
                        metrics,
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
        }
        let mut all = Vec::new();
        let mut token = None;
        loop {
            let (page, next) = store
                .get_metric_history(&run, "m", Some(700), token.as_deref())
                .await
                .unwrap();
            assert!(page.len() <= 700);
            all.extend(page);
            match next {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        assert_eq!(all.len(), 3000, "{}", db.kind);
        assert!(all.windows(2).all(|w| w[0].step < w[1].step));
        assert!(matches!(
            store.get_metric_history("nope", "m", None, None).await,
            Err(StoreError::NotFound(_))
        ));
    }
}

#[tokio::test]
async fn runs_update_delete_restore_and_tags() {
    for (db, store) in stores().await {
        let run = store
            .create_run(RunCreate {
                experiment_id: "0".into(),
                user_id: "u".into(),
                run_name: Some("first".into()),
                start_time: Some(5),
                tags: vec![kv("team", "a")],
            })
            .await
            .unwrap();
        assert_eq!(run.info.run_name, "first");
        assert!(run.data.tags.contains(&kv("mlflow.runName", "first")));
        let id = run.info.run_id.clone();
        let info = store
            .update_run(
                &id,
                RunUpdate {
                    status: Some("FINISHED".into()),
                    end_time: Some(10),
                    run_name: Some("renamed".into()),
                },
            )
            .await
            .unwrap();
        assert_eq!(
            (info.status.as_str(), info.end_time),
            ("FINISHED", Some(10))
        );
        let run = store.get_run(&id).await.unwrap();
        assert_eq!(run.info.run_name, "renamed", "{}", db.kind);
        assert!(run.data.tags.contains(&kv("mlflow.runName", "renamed")));
        assert!(
            store
                .update_run(
                    &id,
                    RunUpdate {
                        status: Some("DONE".into()),
                        ..Default::default()
                    }
                )
                .await
                .is_err()
        );
        store.delete_tag(&id, "team".into()).await.unwrap();
        assert!(matches!(
            store.delete_tag(&id, "team".into()).await,
            Err(StoreError::NotFound(_))
        ));
        store.set_run_lifecycle(&id, true).await.unwrap();
        let err = store.log_param(&id, kv("a", "b")).await.unwrap_err();
        assert!(err.to_string().contains("active"), "{err}");
        store.set_run_lifecycle(&id, false).await.unwrap();
        store.log_param(&id, kv("a", "b")).await.unwrap();
        assert!(matches!(
            store.get_run("0123456789abcdef0123456789abcdef").await,
            Err(StoreError::NotFound(_))
        ));
    }
}

#[tokio::test]
async fn the_store_survives_reopening() {
    let db = kiln_testkit::TestDb::sqlite();
    let run = {
        let store = kiln_store::Store::open(&db.url).await.unwrap();
        let run = new_run(&store, "0").await;
        store
            .log_metric(&run, metric("m", 1.5, 0, 1))
            .await
            .unwrap();
        store.close().await;
        run
    };
    let store = kiln_store::Store::open(&db.url).await.unwrap();
    let r = store.get_run(&run).await.unwrap();
    assert_eq!(r.data.metrics[0].value, 1.5);
}
