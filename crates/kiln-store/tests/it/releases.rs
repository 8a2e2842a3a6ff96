//! Release records on both backends: alias moves with compare-and-set, the alias history
//! (including removals and deleted versions), rollback targets, stored evaluations and
//! policies (which follow a renamed model).

use std::collections::BTreeMap;

use kiln_core::release::{AliasGates, GateResult, Outcome, ReleasePolicy};
use kiln_store::{AliasMove, CreateModelVersion, Expect, NewEvaluation, Store, StoreError};

use crate::stores;

async fn model_with_versions(store: &Store, name: &str, n: usize) {
    store
        .create_registered_model(name.into(), vec![], None)
        .await
        .unwrap();
    for _ in 0..n {
        store
            .create_model_version(CreateModelVersion {
                name: name.into(),
                source: "mlflow-artifacts:/x/package".into(),
                run_id: None,
                tags: vec![],
                run_link: None,
                description: None,
                model_id: None,
            })
            .await
            .unwrap();
    }
}

fn mv(name: &str, version: &str, expect: Expect, action: &str) -> AliasMove {
    AliasMove {
        name: name.into(),
        alias: "champion".into(),
        version: version.into(),
        expect,
        action: action.into(),
        actor: "alice".into(),
        reason: None,
        refuse_archived: true,
        evaluation: None,
    }
}

fn gate(passed: bool) -> GateResult {
    GateResult {
        gate: "metric".into(),
        subject: "test_auc".into(),
        passed,
        value: Some(0.7),
        threshold: Some(0.65),
        inputs: serde_json::json!({"digest": "abc"}),
        message: "test_auc 0.7000 is at least 0.6500".into(),
    }
}

#[tokio::test]
async fn moves_are_compare_and_set_and_every_change_is_history() {
    for (db, store) in stores().await {
        model_with_versions(&store, "m", 3).await;
        // First move: expects no holder.
        let (e1, ev) = store
            .move_alias(AliasMove {
                evaluation: Some(NewEvaluation {
                    alias: "champion".into(),
                    version: "1".into(),
                    holder: None,
                    actor: "alice".into(),
                    outcome: Outcome::Moved,
                    override_reason: None,
                    gates: vec![gate(true)],
                }),
                ..mv("m", "1", Expect::Holder(None), "release")
            })
            .await
            .unwrap();
        let ev = ev.expect("the evaluation is stored with the move");
        assert_eq!(ev.id, 1);
        assert_eq!(e1.evaluation, Some(1));
        assert_eq!((e1.seq, e1.previous.as_deref()), (1, None));
        // A stale expectation loses, whatever it expected.
        for stale in [Expect::Holder(None), Expect::Holder(Some(2))] {
            let err = store.move_alias(mv("m", "2", stale, "release")).await;
            assert!(
                matches!(err, Err(StoreError::Conflict(ref m)) if m.contains("version 1")),
                "{}: {err:?}",
                db.kind
            );
        }
        assert_eq!(store.alias_holder("m", "champion").await.unwrap(), Some(1));
        let (e2, _) = store
            .move_alias(mv("m", "2", Expect::Holder(Some(1)), "release"))
            .await
            .unwrap();
        assert_eq!((e2.seq, e2.previous.as_deref()), (2, Some("1")));
        // Rollback target is the previous holder; a rollback toggles back.
        assert_eq!(
            store.rollback_target("m", "champion").await.unwrap(),
            (2, 1)
        );
        store
            .move_alias(mv("m", "1", Expect::Holder(Some(2)), "rollback"))
            .await
            .unwrap();
        assert_eq!(
            store.rollback_target("m", "champion").await.unwrap(),
            (1, 2)
        );
        // Archived versions are refused for protected moves; deleted ones do not exist.
        store
            .transition_model_version_stage("m".into(), "3", "Archived", false)
            .await
            .unwrap();
        let err = store.move_alias(mv("m", "3", Expect::Any, "release")).await;
        assert!(
            matches!(err, Err(StoreError::Invalid(ref m)) if m.contains("archived")),
            "{err:?}"
        );
        // MLflow's unconditional set is recorded too.
        store
            .set_registered_model_alias("m".into(), "champion".into(), "2")
            .await
            .unwrap();
        store.delete_model_version("m".into(), "2").await.unwrap();
        let err = store.move_alias(mv("m", "2", Expect::Any, "release")).await;
        assert!(matches!(err, Err(StoreError::NotFound(_))), "{err:?}");
        let h = store.alias_history("m", Some("champion")).await.unwrap();
        let steps: Vec<(&str, Option<&str>, Option<&str>)> = h
            .iter()
            .map(|e| {
                (
                    e.action.as_str(),
                    e.previous.as_deref(),
                    e.version.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            steps,
            [
                ("release", None, Some("1")),
                ("release", Some("1"), Some("2")),
                ("rollback", Some("2"), Some("1")),
                ("set", Some("1"), Some("2")),
                ("version_deleted", Some("2"), None),
            ],
            "{}",
            db.kind
        );
        assert!(store.rollback_target("m", "champion").await.is_err());
        // Removing an alias is history; removing a missing one is not an error.
        store
            .set_registered_model_alias("m".into(), "staging".into(), "1")
            .await
            .unwrap();
        let removed = store
            .remove_alias("m".into(), "staging".into(), "bob".into())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (removed.action.as_str(), removed.actor.as_str()),
            ("delete", "bob")
        );
        assert!(
            store
                .remove_alias("m".into(), "staging".into(), "bob".into())
                .await
                .unwrap()
                .is_none()
        );
    }
}

#[tokio::test]
async fn evaluations_and_policies_are_kept_and_follow_renames() {
    for (db, store) in stores().await {
        model_with_versions(&store, "p", 2).await;
        for (i, outcome) in [Outcome::Blocked, Outcome::Overridden]
            .into_iter()
            .enumerate()
        {
            let e = store
                .record_release_evaluation(
                    "p".into(),
                    NewEvaluation {
                        alias: "champion".into(),
                        version: "2".into(),
                        holder: Some("1".into()),
                        actor: "carol".into(),
                        outcome,
                        override_reason: Some("hotfix".into()).filter(|_| i == 1),
                        gates: vec![gate(false)],
                    },
                )
                .await
                .unwrap();
            assert_eq!(e.id, i as i64 + 1);
        }
        let evs = store
            .release_evaluations("p", Some("champion"), 10)
            .await
            .unwrap();
        assert_eq!(evs.len(), 2);
        assert_eq!(
            evs[0].outcome,
            Outcome::Overridden,
            "newest first on {}",
            db.kind
        );
        assert_eq!(evs[0].override_reason.as_deref(), Some("hotfix"));
        assert_eq!(evs[1].gates, vec![gate(false)]);
        assert_eq!(store.version_evaluations("p", "2").await.unwrap().len(), 2);
        assert!(
            store
                .version_evaluations("p", "1")
                .await
                .unwrap()
                .is_empty()
        );

        assert!(store.get_release_policy("p").await.unwrap().is_none());
        let mut aliases = BTreeMap::new();
        aliases.insert(
            "champion".to_string(),
            AliasGates {
                metrics: vec![],
                compatible_inputs: true,
                validated_data: true,
                signed: false,
                latency: None,
            },
        );
        let policy = ReleasePolicy {
            model: "p".into(),
            trusted_keys: vec![],
            aliases,
        };
        store
            .put_release_policy(policy.clone(), "admin".into())
            .await
            .unwrap();
        let got = store.get_release_policy("p").await.unwrap().unwrap();
        assert_eq!(got.policy, policy);
        assert_eq!(got.updated_by, "admin");
        // A policy for a model that does not exist is refused.
        let err = store
            .put_release_policy(
                ReleasePolicy {
                    model: "nope".into(),
                    ..policy.clone()
                },
                "admin".into(),
            )
            .await;
        assert!(matches!(err, Err(StoreError::NotFound(_))), "{err:?}");
        // Renamed: the policy, evaluations and history move with the model.
        store
            .rename_registered_model("p".into(), "q".into())
            .await
            .unwrap();
        let got = store.get_release_policy("q").await.unwrap().unwrap();
        assert_eq!(got.policy.model, "q");
        assert_eq!(
            store
                .release_evaluations("q", None, 10)
                .await
                .unwrap()
                .len(),
            2
        );
        // Deleted: all of it goes.
        store.delete_registered_model("q".into()).await.unwrap();
        assert!(store.list_release_policies().await.unwrap().is_empty());
    }
}
