//! Lineage of versions and datasets, and MLflow ONNX versions (`models:/m-…`) end to end.

use kiln_core::entities::{Dataset, DatasetInput, KeyValue};
use kiln_core::release::{AliasGates, MetricGate};
use kiln_release::{ReleaseError, VersionKind, dataset_lineage, fetch_version, version_lineage};
use kiln_store::{BatchInput, LoggedModelCreate, MetricInput, RunCreate};

use crate::common::*;

async fn run(env: &Env) -> String {
    env.store
        .create_run(RunCreate {
            experiment_id: "0".into(),
            user_id: "tester".into(),
            run_name: Some("train-delay".into()),
            start_time: Some(1_000),
            tags: vec![],
        })
        .await
        .unwrap()
        .info
        .run_id
}

#[tokio::test]
async fn version_lineage_of_a_package() {
    let env = Env::new().await;
    let flights = "f1".repeat(32);
    env.record_dataset("flights", &flights, Some(r#"{"success": true}"#))
        .await;
    let run_id = run(&env).await;
    let s = Spec {
        sources: vec![("flights".into(), flights.clone())],
        run_id: Some(run_id.clone()),
        ..spec(&[("test_auc", 0.8)])
    };
    let v = env.register("delay", &s).await;
    let l = version_lineage(&env.store, &env.artifacts, &v)
        .await
        .unwrap();
    assert_eq!(l.error, None);
    assert_eq!(l.kind, Some(VersionKind::KilnPackage));
    assert_eq!(l.format.as_deref(), Some("kiln-native"));
    let f = fetch_version(&env.store, &env.artifacts, &v).await.unwrap();
    assert_eq!(
        l.package_digest.as_deref(),
        Some(f.package().unwrap().digest())
    );
    assert_eq!(l.signed, Some(false));
    let r = l.run.as_ref().unwrap();
    assert_eq!(r.id, run_id);
    assert_eq!(r.name.as_deref(), Some("train-delay"));
    assert_eq!(r.experiment_id.as_deref(), Some("0"));
    assert_eq!(l.datasets.len(), 2);
    assert_eq!(l.datasets[0].name, "flights");
    assert_eq!(l.datasets[0].role, "source");
    assert_eq!(l.datasets[0].validated, Some(true));
    assert_eq!(l.datasets[0].rows, Some(42));
    assert_eq!(l.datasets[1].name, FEATURES);
    assert_eq!(l.datasets[1].validated, None, "not recorded");
    assert_eq!(l.code_commit.as_deref(), Some("0123abc"));
    assert_eq!(l.metrics["test_auc"], 0.8);
    assert_eq!(l.inputs[0].shape, vec![-1, 2]);
    let json = serde_json::to_value(&l).unwrap();
    assert_eq!(json["kind"], "kiln-package");
}

#[tokio::test]
async fn dataset_lineage_finds_versions_by_digest_prefix() {
    let env = Env::new().await;
    let flights = "ab12".repeat(16);
    let other = "ab13".repeat(16);
    env.record_dataset("flights", &flights, None).await;
    let with = |d: &str| Spec {
        sources: vec![("flights".into(), d.to_string())],
        ..Spec::default()
    };
    let v1 = env.register("delay", &with(&flights)).await;
    let _v2 = env.register("delay", &with(&other)).await;
    let v3 = env.register("delay", &with(&flights)).await;
    env.store
        .set_registered_model_alias("delay".into(), "champion".into(), &v3.version)
        .await
        .unwrap();

    let l = dataset_lineage(&env.store, "flights", &flights[..8])
        .await
        .unwrap();
    assert_eq!(l.digest, flights);
    assert_eq!(l.dataset_version, Some(1));
    let found: Vec<&str> = l.versions.iter().map(|v| v.version.as_str()).collect();
    assert_eq!(found, vec![v1.version.as_str(), v3.version.as_str()]);
    assert_eq!(l.versions[1].aliases, vec!["champion".to_string()]);

    // Not recorded in the dataset store: resolved from the version tags.
    let l = dataset_lineage(&env.store, "flights", &other[..10])
        .await
        .unwrap();
    assert_eq!(l.digest, other);
    assert_eq!(l.versions.len(), 1);
    // The features table is not recorded either; both digests start with "aaaa…".
    let l = dataset_lineage(&env.store, FEATURES, &DIGEST_A[..8])
        .await
        .unwrap();
    assert_eq!(l.versions.len(), 3);

    let short = dataset_lineage(&env.store, "flights", "ab12")
        .await
        .unwrap_err();
    assert!(matches!(short, ReleaseError::Invalid(_)), "{short}");
    let missing = dataset_lineage(&env.store, "flights", "ffffffff")
        .await
        .unwrap_err();
    assert!(missing.to_string().contains("ffffffff"), "{missing}");
}

const MLMODEL: &str = "artifact_path: model
flavors:
  onnx:
    code: null
    onnx_model: model.onnx
    providers: []
  python_function:
    loader_module: mlflow.onnx
model_id: m-x
";

/// An MLflow-logged ONNX model registered from `models:/m-…`, its run evaluated on `digest`.
async fn mlflow_version(env: &Env, auc: f64, digest: &str) -> kiln_core::entities::ModelVersion {
    let run_id = run(env).await;
    env.store
        .log_batch(
            &run_id,
            BatchInput {
                metrics: vec![MetricInput {
                    key: "test_auc".into(),
                    value: auc,
                    timestamp: 1,
                    step: 0,
                }],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let input = |ctx: &str, d: &str| DatasetInput {
        tags: vec![KeyValue {
            key: "mlflow.data.context".into(),
            value: ctx.into(),
        }],
        dataset: Dataset {
            name: "delay_eval".into(),
            digest: d.into(),
            source_type: "local".into(),
            source: "{}".into(),
            schema: None,
            profile: None,
        },
    };
    env.store
        .log_inputs(
            &run_id,
            vec![input("training", "0000aaaa"), input("test", digest)],
            vec![],
        )
        .await
        .unwrap();
    let lm = env
        .store
        .create_logged_model(LoggedModelCreate {
            experiment_id: "0".into(),
            source_run_id: Some(run_id.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    let path = lm
        .info
        .artifact_uri
        .strip_prefix("mlflow-artifacts:/")
        .unwrap()
        .to_string();
    let onnx = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/onnx/linear_regression.onnx"),
    )
    .unwrap();
    env.put(&format!("{path}/MLmodel"), MLMODEL.as_bytes().to_vec())
        .await;
    env.put(&format!("{path}/model.onnx"), onnx).await;
    env.version_with(
        "delay",
        &format!("models:/{}", lm.info.model_id),
        vec![],
        None,
        Some(lm.info.model_id.clone()),
    )
    .await
}

#[tokio::test]
async fn mlflow_onnx_versions_are_gated_on_their_run() {
    let env = Env::new().await;
    let holder = mlflow_version(&env, 0.80, "e1e1e1e1e1e1e1e1").await;
    let cand = mlflow_version(&env, 0.70, "e1e1e1e1e1e1e1e1").await;
    let f = fetch_version(&env.store, &env.artifacts, &cand)
        .await
        .unwrap();
    assert_eq!(f.kind(), VersionKind::MlflowOnnx);
    assert!(f.package().is_none());
    assert_eq!(f.model_file(), Some("model.onnx"));
    assert!(!f.inputs().unwrap().is_empty());

    let p = policy(AliasGates {
        metrics: vec![MetricGate {
            max_drop: Some(0.05),
            ..metric("test_auc")
        }],
        signed: true,
        validated_data: true,
        compatible_inputs: true,
        latency: None,
    });
    let r = env
        .engine
        .evaluate(&p, "champion", &cand, Some(&holder))
        .await;
    let g = |name: &str| of(&r, name)[0].clone();
    assert!(g("integrity").passed, "{r:?}");
    assert!(!g("signature").passed);
    assert!(g("signature").message.contains("MLflow"));
    assert!(g("inputs").passed, "{r:?}");
    assert!(!g("data").passed);
    assert!(g("data").message.contains("records no training datasets"));
    let rel = g("metric_relative");
    assert!(!rel.passed);
    assert!(
        rel.message.contains("0.100 below the holder's 0.800"),
        "{}",
        rel.message
    );
    assert_eq!(rel.inputs["holder_dataset"], "delay_eval@e1e1e1e1e1e1e1e1");

    let l = version_lineage(&env.store, &env.artifacts, &cand)
        .await
        .unwrap();
    assert_eq!(l.kind, Some(VersionKind::MlflowOnnx));
    assert_eq!(l.package_digest, None);
    assert_eq!(l.metrics["test_auc"], 0.70);
    let roles: Vec<&str> = l.datasets.iter().map(|d| d.role.as_str()).collect();
    assert_eq!(roles, vec!["training", "test"]);
    assert!(l.run.is_some());
    assert!(!l.inputs.is_empty());
}
