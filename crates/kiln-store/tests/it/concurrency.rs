use kiln_core::entities::KeyValue;
use kiln_store::{MetricInput, RunCreate, StoreError};

use crate::stores;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_share_commits_and_lose_nothing() {
    for (db, store) in stores().await {
        let run = store
            .create_run(RunCreate {
                experiment_id: "0".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .info
            .run_id;
        let (commits_before, writes_before) = store.db().writer_stats();
        let mut tasks = Vec::new();
        for t in 0..32 {
            let store = store.clone();
            let run = run.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..25 {
                    store
                        .log_metric(
                            &run,
                            MetricInput {
                                key: format!("k{}", t % 4),
                                value: i as f64,
                                timestamp: 1,
                                step: t * 100 + i,
                            },
                        )
                        .await
                        .unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let (commits, writes) = store.db().writer_stats();
        let (commits, writes) = (commits - commits_before, writes - writes_before);
        assert_eq!(writes, 32 * 25, "{}", db.kind);
        assert!(
            commits < writes,
            "{}: expected group commits, got {commits} commits for {writes} writes",
            db.kind
        );
        let mut total = 0;
        for k in 0..4 {
            let (h, _) = store
                .get_metric_history(&run, &format!("k{k}"), None, None)
                .await
                .unwrap();
            total += h.len();
        }
        assert_eq!(total, 800, "{}", db.kind);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_different_param_values_exactly_one_wins() {
    for (db, store) in stores().await {
        let run = store
            .create_run(RunCreate {
                experiment_id: "0".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .info
            .run_id;
        let mut tasks = Vec::new();
        for i in 0..10 {
            let store = store.clone();
            let run = run.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .log_param(
                        &run,
                        KeyValue {
                            key: "seed".into(),
                            value: i.to_string(),
                        },
                    )
                    .await
            }));
        }
        let mut ok = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(()) => ok += 1,
                Err(StoreError::Invalid(_)) => {}
                Err(e) => panic!("{}: unexpected {e}", db.kind),
            }
        }
        assert_eq!(ok, 1, "{}", db.kind);
        let r = store.get_run(&run).await.unwrap();
        assert_eq!(r.data.params.len(), 1);
    }
}

/// Replicas that start together on a fresh database all come up: one applies each migration,
/// the others wait for it and find it applied (before, all but one failed with "already
/// exists").
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn processes_opening_a_fresh_database_together_all_start() {
    for db in kiln_testkit::TestDb::all().await {
        let opens: Vec<_> = (0..6)
            .map(|_| {
                let url = db.url.clone();
                tokio::spawn(async move { kiln_store::Store::open(&url).await })
            })
            .collect();
        let mut stores = Vec::new();
        for (i, open) in opens.into_iter().enumerate() {
            let store = open
                .await
                .unwrap()
                .unwrap_or_else(|e| panic!("{}: open {i} failed: {e}", db.kind));
            stores.push(store);
        }
        // Every one of them works on the one schema.
        for (i, store) in stores.iter().enumerate() {
            store
                .create_experiment(format!("replica-{i}"), None, vec![])
                .await
                .unwrap_or_else(|e| panic!("{}: replica {i}: {e}", db.kind));
        }
        for store in stores {
            store.close().await;
        }
    }
}
