//! Monitoring records on both backends: feedback replaces by request id, events and the
//! merged timeline, incidents open and resolve once with a note, monitor state documents.

use kiln_store::{CreateModelVersion, NewEvent, NewIncident, StoreError};
use serde_json::json;

use crate::stores;

#[tokio::test]
async fn feedback_events_incidents_and_state() {
    for (db, store) in stores().await {
        let kind = db.kind;
        // Feedback: a label sent again replaces the first; bad labels are refused by index.
        let n = store
            .put_feedback(
                "delay",
                vec![("r1".into(), json!(1)), ("r2".into(), json!("late"))],
            )
            .await
            .unwrap();
        assert_eq!(n, 2);
        store
            .put_feedback("delay", vec![("r1".into(), json!(0))])
            .await
            .unwrap();
        store
            .put_feedback("other", vec![("r1".into(), json!(5.5))])
            .await
            .unwrap();
        let fb = store.feedback("delay").await.unwrap();
        let labels: Vec<_> = fb
            .iter()
            .map(|f| (f.request_id.as_str(), &f.label))
            .collect();
        assert_eq!(
            labels,
            vec![("r1", &json!(0)), ("r2", &json!("late"))],
            "{kind}"
        );
        let e = store
            .put_feedback(
                "delay",
                vec![("r3".into(), json!(1)), ("r4".into(), json!([1, {"x": 1}]))],
            )
            .await
            .unwrap_err();
        assert!(
            e.to_string().contains("item 1 (request `r4`)"),
            "{kind}: {e}"
        );
        // A list gives one label per row of a request of several rows; an empty one is refused.
        store
            .put_feedback("batch", vec![("r5".into(), json!([0, 1, "late", true]))])
            .await
            .unwrap();
        assert_eq!(
            store.feedback("batch").await.unwrap()[0].label,
            json!([0, 1, "late", true]),
            "{kind}"
        );
        assert!(
            store
                .put_feedback("batch", vec![("r6".into(), json!([]))])
                .await
                .is_err(),
            "{kind}"
        );
        let e = store
            .put_feedback("delay", vec![("".into(), json!(1))])
            .await
            .unwrap_err();
        assert!(e.to_string().contains("request_id"), "{kind}: {e}");
        // Nothing of the refused batch was stored.
        assert_eq!(store.feedback("delay").await.unwrap().len(), 2, "{kind}");

        // Events and the timeline, which merges alias moves of the model of that name.
        store
            .create_registered_model("delay".into(), vec![], None)
            .await
            .unwrap();
        store
            .create_model_version(CreateModelVersion {
                name: "delay".into(),
                source: "mlflow-artifacts:/x/package".into(),
                run_id: None,
                tags: vec![],
                run_link: None,
                description: None,
                model_id: None,
            })
            .await
            .unwrap();
        store
            .set_registered_model_alias("delay".into(), "champion".into(), "1")
            .await
            .unwrap();
        let now = kiln_store::now_ms();
        for (at, kind_, summary) in [
            (now - 5_000, "traffic", "canary v2 at 10%"),
            (now + 5_000, "rollback", "canary v2 back to 0%"),
        ] {
            store
                .record_event(NewEvent {
                    at,
                    kind: kind_.into(),
                    subject: "delay".into(),
                    actor: "kiln monitor".into(),
                    summary: summary.into(),
                    detail: json!({"weights": {"1": 90, "2": 10}}),
                })
                .await
                .unwrap();
        }
        let events = store.events("delay", now - 10_000, now).await.unwrap();
        assert_eq!(events.len(), 1, "{kind}: {events:?}");
        assert_eq!(events[0].detail["weights"]["2"], 10);
        let tl = store
            .timeline("delay", now - 60_000, now + 60_000)
            .await
            .unwrap();
        let kinds: Vec<&str> = tl.iter().map(|e| e.kind.as_str()).collect();
        assert!(
            kinds == ["traffic", "alias", "rollback"] || kinds == ["alias", "traffic", "rollback"],
            "{kind}: {tl:?}"
        );
        assert!(tl.windows(2).all(|w| w[0].at <= w[1].at), "{kind}");
        let alias = tl.iter().find(|e| e.kind == "alias").unwrap();
        assert!(alias.summary.contains("champion"), "{kind}: {alias:?}");

        // Incidents: opening records a timeline event; resolving needs a note, happens once.
        let inc = store
            .open_incident(NewIncident {
                subject: "delay".into(),
                title: "HighLatency firing".into(),
                severity: "page".into(),
                opened_at: now + 6_000,
                fingerprint: "abc".into(),
                runbook: Some("runbooks/latency.md".into()),
                evidence: json!({"p99_ms": 41.0}),
            })
            .await
            .unwrap();
        assert_eq!(inc.id, 1);
        let again = store
            .open_incident(NewIncident {
                subject: "other".into(),
                title: "x".into(),
                severity: "page".into(),
                opened_at: now,
                fingerprint: "def".into(),
                runbook: None,
                evidence: json!({}),
            })
            .await
            .unwrap();
        assert_eq!(again.id, 2);
        assert_eq!(store.incidents(true).await.unwrap().len(), 2);
        let e = store
            .resolve_incident(1, "alice", "  ", now + 7_000)
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::Invalid(_)), "{kind}: {e}");
        let done = store
            .resolve_incident(1, "alice", "rolled back; the canary was slow", now + 7_000)
            .await
            .unwrap();
        assert_eq!(done.resolved_by.as_deref(), Some("alice"));
        let e = store
            .resolve_incident(1, "bob", "again", now + 8_000)
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::Conflict(_)), "{kind}: {e}");
        assert!(matches!(
            store
                .resolve_incident(9, "bob", "x", now)
                .await
                .unwrap_err(),
            StoreError::NotFound(_)
        ));
        let open: Vec<i64> = store
            .incidents(true)
            .await
            .unwrap()
            .iter()
            .map(|i| i.id)
            .collect();
        assert_eq!(open, vec![2], "{kind}");
        let got = store.incident(1).await.unwrap();
        assert_eq!(got.evidence["p99_ms"], 41.0);
        assert_eq!(
            got.resolution.as_deref(),
            Some("rolled back; the canary was slow")
        );
        let tl = store
            .timeline("delay", now - 60_000, now + 60_000)
            .await
            .unwrap();
        let incident_events = tl.iter().filter(|e| e.kind == "incident").count();
        assert_eq!(incident_events, 2, "{kind}: {tl:?}");

        // State documents.
        assert_eq!(store.monitor_state("alerts").await.unwrap(), None);
        store
            .put_monitor_state("alerts", json!({"a": 1}))
            .await
            .unwrap();
        store
            .put_monitor_state("alerts", json!({"a": 2}))
            .await
            .unwrap();
        assert_eq!(
            store.monitor_state("alerts").await.unwrap(),
            Some(json!({"a": 2}))
        );
    }
}
