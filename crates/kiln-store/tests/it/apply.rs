//! `kiln apply` state on both backends: records upsert and delete together with their
//! timeline events, the lock admits one holder at a time (and a racing pair exactly one),
//! expires, renews and releases; the history of applies.

use kiln_store::{ApplyRecord, NewEvent, StoreError};
use serde_json::json;

use crate::stores;

fn event(subject: &str, summary: &str) -> NewEvent {
    NewEvent {
        at: kiln_store::now_ms(),
        kind: "apply".into(),
        subject: subject.into(),
        actor: "tester".into(),
        summary: summary.into(),
        detail: json!({"changed": ["canary.percent"]}),
    }
}

#[tokio::test]
async fn records_events_lock_and_history() {
    for (db, store) in stores().await {
        let kind = db.kind;
        assert!(store.apply_records().await.unwrap().is_empty(), "{kind}");
        let id = store.start_apply("tester").await.unwrap();
        let rec = ApplyRecord {
            kind: "deploy".into(),
            name: "delay".into(),
            spec: json!({"model": "delay@champion", "canary": {"percent": 10}}),
            step_key: "k1".into(),
            outputs: json!({"version": "3"}),
            applied_at: 1000,
            apply_id: id,
        };
        store
            .save_apply_record(rec.clone(), vec![event("delay", "deploy delay created")])
            .await
            .unwrap();
        // Saving again replaces the record; the events accumulate on the timeline.
        let rec2 = ApplyRecord {
            step_key: "k2".into(),
            outputs: json!({"version": "4"}),
            ..rec.clone()
        };
        store
            .save_apply_record(rec2.clone(), vec![event("delay", "deploy delay updated")])
            .await
            .unwrap();
        assert_eq!(store.apply_records().await.unwrap(), vec![rec2], "{kind}");
        let evs = store.events("delay", 0, i64::MAX).await.unwrap();
        assert_eq!(evs.len(), 2, "{kind}");
        assert_eq!(evs[1].kind, "apply");
        assert_eq!(evs[1].detail["changed"][0], "canary.percent");
        store
            .delete_apply_record(
                "deploy",
                "delay",
                vec![event("delay", "deploy delay removed")],
            )
            .await
            .unwrap();
        assert!(store.apply_records().await.unwrap().is_empty(), "{kind}");
        assert_eq!(store.events("delay", 0, i64::MAX).await.unwrap().len(), 3);

        // The lock: one holder; a second is refused with the holder's name.
        store.acquire_apply_lock("alice", 60_000).await.unwrap();
        match store.acquire_apply_lock("bob", 60_000).await {
            Err(StoreError::Conflict(m)) => assert!(m.contains("alice"), "{kind}: {m}"),
            other => panic!("{kind}: bob took a held lock: {other:?}"),
        }
        // Its holder renews it; another cannot.
        assert!(store.renew_apply_lock("alice", 60_000).await.unwrap());
        assert!(!store.renew_apply_lock("bob", 60_000).await.unwrap());
        // Releasing by someone else does nothing; by the holder frees it.
        store.release_apply_lock("bob").await.unwrap();
        assert_eq!(store.apply_lock().await.unwrap().unwrap().holder, "alice");
        store.release_apply_lock("alice").await.unwrap();
        assert!(store.apply_lock().await.unwrap().is_none(), "{kind}");
        // An expired lock (its holder crashed) is taken over.
        store.acquire_apply_lock("crashed", -1).await.unwrap();
        store.acquire_apply_lock("bob", 60_000).await.unwrap();
        assert_eq!(store.apply_lock().await.unwrap().unwrap().holder, "bob");
        store.release_apply_lock("bob").await.unwrap();
        // Two racing for a free lock: exactly one wins.
        let (a, b) = tokio::join!(
            store.acquire_apply_lock("racer-a", 60_000),
            store.acquire_apply_lock("racer-b", 60_000)
        );
        assert_eq!(
            [a.is_ok(), b.is_ok()].iter().filter(|x| **x).count(),
            1,
            "{kind}: {a:?} {b:?}"
        );

        // History.
        store
            .finish_apply(id, "succeeded", json!({"changed": 1}))
            .await
            .unwrap();
        let id2 = store.start_apply("tester").await.unwrap();
        assert_eq!(id2, id + 1);
        let runs = store.applies(10).await.unwrap();
        assert_eq!(runs.len(), 2, "{kind}");
        assert_eq!(runs[0].status, "running");
        assert_eq!(runs[1].status, "succeeded");
        assert_eq!(runs[1].summary["changed"], 1);
        assert!(runs[1].finished_at.is_some());
    }
}
