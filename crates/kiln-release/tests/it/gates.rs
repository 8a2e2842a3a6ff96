//! Each gate against real stores: passing and failing cases, with the numbers in messages.

use kiln_core::release::{AliasGates, LatencyGate, MetricGate};
use kiln_ml::package::generate_keypair;
use kiln_release::{ReleaseError, VersionKind, fetch_version};
use kiln_transform::{Column, DType};

use crate::common::*;

#[tokio::test]
async fn integrity_passes_and_a_tampered_file_fails_naming_it() {
    let env = Env::new().await;
    let v = env.register("delay", &Spec::default()).await;
    let r = env
        .engine
        .evaluate(&policy(no_gates()), "champion", &v, None)
        .await;
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0].gate, "integrity");
    assert!(r[0].passed, "{r:?}");

    // Replace model.json in the artifact store with different bytes.
    let root = v.source.strip_prefix("mlflow-artifacts:/").unwrap();
    env.put(
        &format!("{root}/model.json"),
        b"{\"tampered\": true}".to_vec(),
    )
    .await;
    let r = env
        .engine
        .evaluate(&policy(no_gates()), "champion", &v, None)
        .await;
    let g = &of(&r, "integrity")[0];
    assert!(!g.passed);
    assert_eq!(g.subject, "model.json");
    assert!(g.message.contains("model.json"), "{}", g.message);
}

#[tokio::test]
async fn an_alias_without_gates_has_no_results() {
    let env = Env::new().await;
    let v = env.register("delay", &Spec::default()).await;
    let r = env
        .engine
        .evaluate(&policy(no_gates()), "staging", &v, None)
        .await;
    assert!(r.is_empty());
}

#[tokio::test]
async fn signature_trusted_unknown_and_unsigned() {
    let env = Env::new().await;
    let (trusted_key, trusted_pub) = generate_keypair().unwrap();
    let (other_key, _) = generate_keypair().unwrap();
    let mut p = policy(AliasGates {
        signed: true,
        ..no_gates()
    });
    p.trusted_keys = vec![trusted_pub.to_text()];

    let signed = Spec {
        key: Some(trusted_key),
        ..Spec::default()
    };
    let v = env.register("delay", &signed).await;
    let r = env.engine.evaluate(&p, "champion", &v, None).await;
    let g = &of(&r, "signature")[0];
    assert!(g.passed, "{g:?}");
    assert_eq!(g.subject, trusted_pub.key_id());

    let foreign = Spec {
        key: Some(other_key.clone()),
        ..Spec::default()
    };
    let v = env.register("delay", &foreign).await;
    let r = env.engine.evaluate(&p, "champion", &v, None).await;
    let g = &of(&r, "signature")[0];
    assert!(!g.passed);
    assert_eq!(g.subject, other_key.key_id());
    assert!(g.message.contains("not a trusted key"), "{}", g.message);

    let v = env.register("delay", &Spec::default()).await;
    let r = env.engine.evaluate(&p, "champion", &v, None).await;
    let g = &of(&r, "signature")[0];
    assert!(!g.passed);
    assert!(g.message.contains("not signed"), "{}", g.message);
}

#[tokio::test]
async fn absolute_metric_bounds_report_the_shortfall() {
    let env = Env::new().await;
    let v = env
        .register("delay", &spec(&[("test_auc", 0.612), ("test_rmse", 3.5)]))
        .await;
    let gates = AliasGates {
        metrics: vec![
            MetricGate {
                min: Some(0.65),
                ..metric("test_auc")
            },
            MetricGate {
                max: Some(4.0),
                ..metric("test_rmse")
            },
            MetricGate {
                min: Some(0.1),
                ..metric("test_f1")
            },
        ],
        ..no_gates()
    };
    let r = env
        .engine
        .evaluate(&policy(gates), "champion", &v, None)
        .await;
    let m = of(&r, "metric");
    assert_eq!(m.len(), 3);
    assert!(!m[0].passed);
    assert_eq!(m[0].value, Some(0.612));
    assert_eq!(m[0].threshold, Some(0.65));
    assert_eq!(
        m[0].message,
        "test_auc 0.612 is below the minimum 0.650 by 0.038"
    );
    assert!(m[1].passed, "{:?}", m[1]);
    assert!(!m[2].passed);
    assert!(
        m[2].message
            .contains("candidate has no metric test_f1; it has: test_auc, test_rmse"),
        "{}",
        m[2].message
    );
}

fn relative(max_drop: f64) -> AliasGates {
    AliasGates {
        metrics: vec![MetricGate {
            max_drop: Some(max_drop),
            ..metric("test_auc")
        }],
        ..no_gates()
    }
}

#[tokio::test]
async fn relative_metric_pass_fail_and_not_comparable() {
    let env = Env::new().await;
    let holder = env.register("delay", &spec(&[("test_auc", 0.75)])).await;
    let close = env.register("delay", &spec(&[("test_auc", 0.74)])).await;
    let worse = env.register("delay", &spec(&[("test_auc", 0.70)])).await;
    let elsewhere = env
        .register(
            "delay",
            &Spec {
                features_digest: Some(DIGEST_B.into()),
                ..spec(&[("test_auc", 0.9)])
            },
        )
        .await;
    let p = policy(relative(0.02));

    let r = env.engine.evaluate(&p, "champion", &close, None).await;
    let g = &of(&r, "metric_relative")[0];
    assert!(g.passed);
    assert_eq!(
        g.message,
        "no current holder of `champion`; nothing to compare test_auc with"
    );

    let r = env
        .engine
        .evaluate(&p, "champion", &close, Some(&holder))
        .await;
    let g = &of(&r, "metric_relative")[0];
    assert!(g.passed, "{g:?}");
    assert_eq!(g.value, Some(0.74));

    let r = env
        .engine
        .evaluate(&p, "champion", &worse, Some(&holder))
        .await;
    let g = &of(&r, "metric_relative")[0];
    assert!(!g.passed);
    assert!(g.message.contains("by 0.030"), "{}", g.message);
    assert!(
        g.message.contains("0.050 below the holder's 0.750"),
        "{}",
        g.message
    );

    let r = env
        .engine
        .evaluate(&p, "champion", &elsewhere, Some(&holder))
        .await;
    let g = &of(&r, "metric_relative")[0];
    assert!(!g.passed, "a better metric on other data must not pass");
    assert!(g.message.contains("not comparable"), "{}", g.message);
    assert!(g.message.contains(&DIGEST_A[..12]), "{}", g.message);
    assert!(g.message.contains(&DIGEST_B[..12]), "{}", g.message);
    assert!(!g.message.contains(&DIGEST_A[..13]), "{}", g.message);
}

fn inputs_gates() -> AliasGates {
    AliasGates {
        compatible_inputs: true,
        ..no_gates()
    }
}

#[tokio::test]
async fn raw_inputs_removed_or_retyped_fail() {
    let env = Env::new().await;
    let raw = |cols: &[(&str, DType)]| Spec {
        raw_inputs: cols.iter().map(|(n, t)| Column::new(*n, *t)).collect(),
        ..Spec::default()
    };
    let holder = env
        .register(
            "delay",
            &raw(&[("a", DType::Int), ("b", DType::Float), ("c", DType::String)]),
        )
        .await;
    let broken = env
        .register(
            "delay",
            &raw(&[("a", DType::Float), ("b", DType::Float), ("d", DType::Int)]),
        )
        .await;
    let fine = env
        .register(
            "delay",
            &raw(&[
                ("c", DType::String),
                ("b", DType::Float),
                ("a", DType::Int),
                ("e", DType::Bool),
            ]),
        )
        .await;
    let p = policy(inputs_gates());

    let r = env.engine.evaluate(&p, "champion", &broken, None).await;
    assert!(of(&r, "inputs").is_empty(), "no holder, nothing to compare");

    let r = env
        .engine
        .evaluate(&p, "champion", &broken, Some(&holder))
        .await;
    let g = &of(&r, "inputs")[0];
    assert!(!g.passed);
    assert_eq!(g.subject, "raw columns");
    assert!(g.message.contains("removes c"), "{}", g.message);
    assert!(
        g.message.contains("retypes a (int → float)"),
        "{}",
        g.message
    );
    assert_eq!(g.inputs["removed"], serde_json::json!(["c"]));
    assert_eq!(
        g.inputs["added"],
        serde_json::json!(["d"]),
        "added columns are fine"
    );

    let r = env
        .engine
        .evaluate(&p, "champion", &fine, Some(&holder))
        .await;
    assert!(of(&r, "inputs")[0].passed, "{r:?}");
}

#[tokio::test]
async fn tensor_inputs_are_compared_without_raw_columns() {
    let env = Env::new().await;
    let two = env.register("delay", &Spec::default()).await;
    let three = env
        .register(
            "delay",
            &Spec {
                n_features: 3,
                ..Spec::default()
            },
        )
        .await;
    let r = env
        .engine
        .evaluate(&policy(inputs_gates()), "champion", &three, Some(&two))
        .await;
    let g = &of(&r, "inputs")[0];
    assert!(!g.passed);
    assert_eq!(g.subject, "tensor inputs");
    assert!(
        g.message.contains("retypes input (FP32[2] → FP32[3])"),
        "{}",
        g.message
    );
}

#[tokio::test]
async fn data_gate_needs_every_source_validated() {
    let env = Env::new().await;
    let d = |c: char| c.to_string().repeat(64);
    env.record_dataset(
        "flights",
        &d('1'),
        Some(r#"{"success": true, "failed_rules": []}"#),
    )
    .await;
    env.record_dataset("weather", &d('2'), None).await;
    env.record_dataset(
        "planes",
        &d('3'),
        Some(r#"{"success": false, "failed_rules": ["year_range", "not_null(tailnum)"]}"#),
    )
    .await;
    let s = Spec {
        sources: vec![
            ("flights".into(), d('1')),
            ("weather".into(), d('2')),
            ("planes".into(), d('3')),
            ("airports".into(), d('4')),
        ],
        ..Spec::default()
    };
    let v = env.register("delay", &s).await;
    let p = policy(AliasGates {
        validated_data: true,
        ..no_gates()
    });
    let r = env.engine.evaluate(&p, "champion", &v, None).await;
    let g = of(&r, "data");
    assert_eq!(g.len(), 4);
    assert!(g[0].passed, "{:?}", g[0]);
    assert_eq!(g[0].subject, format!("flights@{}", &d('1')[..12]));
    assert!(!g[1].passed);
    assert_eq!(
        g[1].message,
        format!("weather@{} was never validated", &d('2')[..12])
    );
    assert!(!g[2].passed);
    assert_eq!(
        g[2].message,
        format!(
            "planes@{} failed validation: rules year_range, not_null(tailnum) failed",
            &d('3')[..12]
        )
    );
    assert!(!g[3].passed);
    assert!(
        g[3].message.contains("was never validated"),
        "{}",
        g[3].message
    );

    let none = env.register("delay", &Spec::default()).await;
    let r = env.engine.evaluate(&p, "champion", &none, None).await;
    let g = of(&r, "data");
    assert_eq!(g.len(), 1);
    assert!(!g[0].passed);
    assert!(g[0].message.contains("records no training datasets"));
}

#[tokio::test]
async fn latency_gate_measures_p99() {
    let env = Env::new().await;
    let v = env.register("delay", &Spec::default()).await;
    let gates = |budget: f64| {
        policy(AliasGates {
            latency: Some(LatencyGate {
                p99_ms: budget,
                rows: 8,
                iterations: 50,
            }),
            ..no_gates()
        })
    };
    let r = env
        .engine
        .evaluate(&gates(10_000.0), "champion", &v, None)
        .await;
    let g = &of(&r, "latency")[0];
    assert!(g.passed, "{g:?}");
    let p99 = g.value.unwrap();
    assert!(p99 > 0.0 && p99 < 10_000.0);
    assert_eq!(g.inputs["rows"], 8);
    assert_eq!(g.inputs["iterations"], 50);
    assert!(g.inputs["p50_ms"].as_f64().unwrap() <= p99);

    let r = env
        .engine
        .evaluate(&gates(0.000001), "champion", &v, None)
        .await;
    let g = &of(&r, "latency")[0];
    assert!(!g.passed);
    assert_eq!(g.threshold, Some(0.000001));
    assert!(
        g.message.contains("over the budget 0.000001 ms by"),
        "{}",
        g.message
    );
}

#[tokio::test]
async fn an_unknown_source_is_a_clean_error() {
    let env = Env::new().await;
    let v = env.version("delay", "s3://bucket/somewhere", vec![]).await;
    let err = fetch_version(&env.store, &env.artifacts, &v)
        .await
        .unwrap_err();
    assert!(matches!(err, ReleaseError::UnsupportedSource { .. }));
    assert_eq!(
        err.to_string(),
        "version 1 of `delay` has source s3://bucket/somewhere, which is neither a Kiln package nor an MLflow ONNX model"
    );
    // A folder of the artifact store holding something else.
    env.put("0/misc/readme.txt", b"hello".to_vec()).await;
    let v = env
        .version("delay", "mlflow-artifacts:/0/misc", vec![])
        .await;
    let err = fetch_version(&env.store, &env.artifacts, &v)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ReleaseError::UnsupportedSource { .. }),
        "{err}"
    );

    let p = policy(AliasGates {
        metrics: vec![MetricGate {
            min: Some(0.5),
            ..metric("test_auc")
        }],
        ..no_gates()
    });
    let r = env.engine.evaluate(&p, "champion", &v, None).await;
    assert!(r.iter().all(|g| !g.passed), "{r:?}");
    assert!(
        r[0].message.contains("neither a Kiln package"),
        "{}",
        r[0].message
    );
}

#[tokio::test]
async fn fetched_package_exposes_its_parts() {
    let env = Env::new().await;
    let v = env.register("delay", &Spec::default()).await;
    let f = fetch_version(&env.store, &env.artifacts, &v).await.unwrap();
    assert_eq!(f.kind(), VersionKind::KilnPackage);
    let p = f.package().unwrap();
    assert!(f.dir().join("model.json").is_file());
    assert_eq!(f.inputs().unwrap(), p.manifest().inputs);
    let predictor = f.predictor().unwrap();
    assert_eq!(predictor.inputs()[0].shape, vec![-1, 2]);
}
