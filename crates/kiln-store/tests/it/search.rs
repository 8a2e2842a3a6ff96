use kiln_core::entities::{KeyValue, Run};
use kiln_store::{BatchInput, MetricInput, RunCreate, RunSearch, Store, ViewType};

use crate::stores;

struct Seeded {
    exp: String,
    /// (run_id, acc, lr, team)
    runs: Vec<(String, Option<f64>, String, String)>,
}

async fn seed(store: &Store, name: &str) -> Seeded {
    let exp = store
        .create_experiment(name.into(), None, vec![])
        .await
        .unwrap();
    let mut runs = Vec::new();
    for i in 0..25i64 {
        let run = store
            .create_run(RunCreate {
                experiment_id: exp.clone(),
                user_id: "u".into(),
                run_name: Some(format!("r{i:02}")),
                start_time: Some(1000 + i),
                tags: vec![],
            })
            .await
            .unwrap()
            .info
            .run_id;
        // Every 5th run has no `acc`; every 7th has NaN.
        let acc = if i % 5 == 0 {
            None
        } else if i % 7 == 0 {
            Some(f64::NAN)
        } else {
            Some((i * 37 % 25) as f64 / 25.0)
        };
        let lr = ["0.1", "0.01", "0.001"][i as usize % 3].to_string();
        let team = ["a", "b"][i as usize % 2].to_string();
        let mut metrics = vec![MetricInput {
            key: "val loss".into(),
            value: i as f64,
            timestamp: 1,
            step: 0,
        }];
        if let Some(a) = acc {
            metrics.push(MetricInput {
                key: "acc".into(),
                value: a,
                timestamp: 1,
                step: 0,
            });
        }
        store
            .log_batch(
                &run,
                BatchInput {
                    metrics,
                    params: vec![KeyValue {
                        key: "lr".into(),
                        value: lr.clone(),
                    }],
                    tags: vec![KeyValue {
                        key: "team".into(),
                        value: team.clone(),
                    }],
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        runs.push((run, acc, lr, team));
    }
    Seeded { exp, runs }
}

async fn search_all(store: &Store, exp: &str, filter: &str, order: &[&str], page: i64) -> Vec<Run> {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let (runs, next) = store
            .search_runs(RunSearch {
                experiment_ids: vec![exp.to_string()],
                filter: Some(filter.to_string()),
                view: ViewType::ActiveOnly,
                max_results: Some(page),
                order_by: order.iter().map(|s| s.to_string()).collect(),
                page_token: token,
            })
            .await
            .unwrap();
        out.extend(runs);
        match next {
            Some(t) => token = Some(t),
            None => return out,
        }
    }
}

fn acc_of(r: &Run) -> Option<f64> {
    r.data
        .metrics
        .iter()
        .find(|m| m.key == "acc")
        .map(|m| m.value)
}

#[tokio::test]
async fn filters_ordering_and_pages_match_a_reference() {
    for (db, store) in stores().await {
        let s = seed(&store, "search-ref").await;
        // metrics filter + order DESC, paged by 4.
        let got = search_all(
            &store,
            &s.exp,
            "metrics.acc > 0.3",
            &["metrics.acc DESC"],
            4,
        )
        .await;
        let mut want: Vec<(String, f64)> = s
            .runs
            .iter()
            .filter_map(|(id, acc, _, _)| {
                acc.filter(|a| !a.is_nan() && *a > 0.3)
                    .map(|a| (id.clone(), a))
            })
            .collect();
        want.sort_by(|a, b| {
            b.1.partial_cmp(&a.1)
                .unwrap()
                .then(std::cmp::Ordering::Equal)
        });
        let got_acc: Vec<f64> = got.iter().map(|r| acc_of(r).unwrap()).collect();
        let want_acc: Vec<f64> = want.iter().map(|w| w.1).collect();
        assert_eq!(got_acc, want_acc, "{}", db.kind);
        let mut ids: Vec<&str> = got.iter().map(|r| r.info.run_id.as_str()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(
            ids.len(),
            want.len(),
            "{}: pages repeat or drop runs",
            db.kind
        );

        // params + tags + IN + LIKE.
        let got = search_all(
            &store,
            &s.exp,
            "params.lr IN ('0.1', '0.001') AND tags.team = 'a' AND attributes.run_name LIKE 'r1%'",
            &[],
            100,
        )
        .await;
        let mut want: Vec<String> = s
            .runs
            .iter()
            .enumerate()
            .filter(|(i, (_, _, lr, team))| {
                (lr == "0.1" || lr == "0.001")
                    && team == "a"
                    && format!("r{i:02}").starts_with("r1")
            })
            .map(|(_, r)| r.0.clone())
            .collect();
        let mut got_ids: Vec<String> = got.iter().map(|r| r.info.run_id.clone()).collect();
        want.sort();
        got_ids.sort();
        assert_eq!(got_ids, want, "{}", db.kind);

        // Backticked metric keys with spaces.
        let got = search_all(&store, &s.exp, "metrics.`val loss` < 3", &[], 100).await;
        assert_eq!(got.len(), 3, "{}", db.kind);

        // ASC puts NaN and missing values last; default order is start_time DESC.
        let got = search_all(&store, &s.exp, "", &["metrics.acc ASC"], 7).await;
        assert_eq!(got.len(), 25);
        let accs: Vec<Option<f64>> = got.iter().map(acc_of).collect();
        let first_gap = accs
            .iter()
            .position(|a| a.is_none_or(|v| v.is_nan()))
            .unwrap();
        assert!(
            accs[..first_gap].windows(2).all(|w| w[0] <= w[1]),
            "{}: {accs:?}",
            db.kind
        );
        assert!(
            accs[first_gap..]
                .iter()
                .all(|a| a.is_none_or(|v| v.is_nan()))
        );
        let nan_pos: Vec<usize> = accs
            .iter()
            .enumerate()
            .filter(|(_, a)| a.is_some_and(|v| v.is_nan()))
            .map(|(i, _)| i)
            .collect();
        let none_pos: Vec<usize> = accs
            .iter()
            .enumerate()
            .filter(|(_, a)| a.is_none())
            .map(|(i, _)| i)
            .collect();
        assert!(
            nan_pos.iter().max() < none_pos.iter().min(),
            "{}: NaN before missing",
            db.kind
        );
        let got = search_all(&store, &s.exp, "", &[], 10).await;
        let starts: Vec<i64> = got.iter().map(|r| r.info.start_time.unwrap()).collect();
        assert!(starts.windows(2).all(|w| w[0] > w[1]));

        // Presence of params and tags.
        assert_eq!(
            search_all(&store, &s.exp, "tags.missing IS NULL", &[], 100)
                .await
                .len(),
            25
        );
        assert_eq!(
            search_all(&store, &s.exp, "params.lr IS NOT NULL", &[], 100)
                .await
                .len(),
            25
        );
        assert_eq!(
            search_all(&store, &s.exp, "tags.team IS NULL", &[], 100)
                .await
                .len(),
            0
        );

        // Attribute comparison with a number.
        let got = search_all(&store, &s.exp, "attributes.start_time >= 1020", &[], 100).await;
        assert_eq!(got.len(), 5, "{}", db.kind);

        // LIKE is case-sensitive, ILIKE is not.
        assert_eq!(
            search_all(&store, &s.exp, "run_name LIKE 'R0%'", &[], 100)
                .await
                .len(),
            0
        );
        assert_eq!(
            search_all(&store, &s.exp, "run_name ILIKE 'R0%'", &[], 100)
                .await
                .len(),
            10
        );

        // Deleted runs only show with the right view.
        let victim = s.runs[1].0.clone();
        store.set_run_lifecycle(&victim, true).await.unwrap();
        assert_eq!(search_all(&store, &s.exp, "", &[], 100).await.len(), 24);
        let (deleted, _) = store
            .search_runs(RunSearch {
                experiment_ids: vec![s.exp.clone()],
                view: ViewType::DeletedOnly,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(deleted.len(), 1);
        assert_eq!(deleted[0].info.run_id, victim);
    }
}

#[tokio::test]
async fn bad_filters_are_refused_with_the_token_named() {
    for (_db, store) in stores().await {
        let err = store
            .search_runs(RunSearch {
                experiment_ids: vec!["0".into()],
                filter: Some("metrics.acc > 'high'".into()),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert!(err.to_string().contains("acc"), "{err}");
        let err = store
            .search_runs(RunSearch {
                experiment_ids: vec!["0".into()],
                filter: Some("attributes.nonsense = 'x'".into()),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert!(err.to_string().contains("nonsense"), "{err}");
        let err = store
            .search_runs(RunSearch {
                experiment_ids: vec!["0".into()],
                page_token: Some("garbage".into()),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert!(err.to_string().contains("page token"), "{err}");
    }
}
