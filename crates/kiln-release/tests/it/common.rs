//! Test fixtures: a real SQLite store and a local artifact store in a temporary folder, tiny
//! native packages built with `PackageBuilder`, uploaded and registered as versions.

use std::path::{Path, PathBuf};

use kiln_core::entities::{KeyValue, ModelVersion};
use kiln_core::release::{AliasGates, MetricGate, ReleasePolicy};
use kiln_ml::linear::LinearModel;
use kiln_ml::package::{DatasetRef, Lineage, PrivateKey, sign_package};
use kiln_ml::{Manifest, ModelFormat, NativeModel, NativePredictor, PackageBuilder, Predictor};
use kiln_ml::{Scorer, Task};
use kiln_release::Engine;
use kiln_store::{ArtifactStore, CreateModelVersion, DatasetVersionInput, Store};
use kiln_transform::Column;

pub const FEATURES: &str = "features.delay";
pub const DIGEST_A: &str = "aaaaaaaaaaaa1111111111111111111111111111111111111111111111111111";
pub const DIGEST_B: &str = "bbbbbbbbbbbb2222222222222222222222222222222222222222222222222222";

pub struct Env {
    pub tmp: tempfile::TempDir,
    pub store: Store,
    pub artifacts: ArtifactStore,
    pub engine: Engine,
    next: std::sync::atomic::AtomicUsize,
}

/// What a test package holds.
#[derive(Clone)]
pub struct Spec {
    pub n_features: usize,
    pub metrics: Vec<(&'static str, f64)>,
    /// The `features` lineage dataset's digest; `None` for no features dataset.
    pub features_digest: Option<String>,
    /// `source` lineage datasets: (name, digest).
    pub sources: Vec<(String, String)>,
    pub raw_inputs: Vec<Column>,
    pub key: Option<PrivateKey>,
    pub run_id: Option<String>,
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            n_features: 2,
            metrics: vec![("test_auc", 0.75)],
            features_digest: Some(DIGEST_A.into()),
            sources: vec![],
            raw_inputs: vec![],
            key: None,
            run_id: None,
        }
    }
}

pub fn spec(metrics: &[(&'static str, f64)]) -> Spec {
    Spec {
        metrics: metrics.to_vec(),
        ..Spec::default()
    }
}

/// Writes a package into `dir` (a new folder).
pub fn build_package(dir: &Path, s: &Spec) {
    let model = NativeModel {
        algorithm: "linear".into(),
        task: Task::Regression,
        feature_names: (0..s.n_features).map(|i| format!("f{i}")).collect(),
        class_labels: vec![],
        scorer: Scorer::Linear(LinearModel {
            n_features: s.n_features,
            n_targets: 1,
            coefficients: (0..s.n_features).map(|i| i as f64 + 1.0).collect(),
            intercepts: vec![0.5],
        }),
    };
    let predictor = NativePredictor::new(model.clone()).unwrap();
    let mut m = Manifest::new("delay", ModelFormat::KilnNative, "model.json");
    m.task = Some(Task::Regression);
    m.inputs = predictor.inputs().to_vec();
    m.outputs = predictor.outputs().to_vec();
    m.raw_inputs = s.raw_inputs.clone();
    m.metrics = s.metrics.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    let mut datasets: Vec<DatasetRef> = s
        .sources
        .iter()
        .map(|(n, d)| DatasetRef {
            name: n.clone(),
            digest: d.clone(),
            role: "source".into(),
        })
        .collect();
    if let Some(d) = &s.features_digest {
        datasets.push(DatasetRef {
            name: FEATURES.into(),
            digest: d.clone(),
            role: "features".into(),
        });
    }
    m.lineage = Lineage {
        run_id: s.run_id.clone(),
        experiment_id: Some("0".into()),
        datasets,
        code_commit: Some("0123abc".into()),
        code_dirty: Some(false),
    };
    PackageBuilder::new(m)
        .file("model.json", serde_json::to_vec(&model).unwrap())
        .write(dir)
        .unwrap();
    if let Some(k) = &s.key {
        sign_package(dir, k).unwrap();
    }
}

impl Env {
    pub async fn new() -> Env {
        let tmp = tempfile::tempdir().unwrap();
        let db = tmp.path().join("kiln.db");
        let store = Store::open(&format!("sqlite://{}", db.display()))
            .await
            .unwrap();
        let root = tmp.path().join("artifacts");
        std::fs::create_dir_all(&root).unwrap();
        let artifacts = ArtifactStore::open(root.to_str().unwrap()).unwrap();
        let engine = Engine::new(store.clone(), artifacts.clone());
        Env {
            tmp,
            store,
            artifacts,
            engine,
            next: 0.into(),
        }
    }

    fn fresh(&self, what: &str) -> PathBuf {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.tmp.path().join(format!("{what}-{n}"))
    }

    /// Uploads `bytes` to artifact path `path`.
    pub async fn put(&self, path: &str, bytes: Vec<u8>) {
        let body = futures::stream::iter([Ok::<_, std::io::Error>(bytes.into())]);
        self.artifacts.put_stream(path, body).await.unwrap();
    }

    /// Uploads every file under local `dir` to artifact folder `prefix`.
    pub async fn upload(&self, dir: &Path, prefix: &str) {
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    let rel = p.strip_prefix(dir).unwrap().to_str().unwrap().to_string();
                    self.put(&format!("{prefix}/{rel}"), std::fs::read(&p).unwrap())
                        .await;
                }
            }
        }
    }

    /// A version of `model` with `source`, creating the registered model if needed.
    pub async fn version(&self, model: &str, source: &str, tags: Vec<KeyValue>) -> ModelVersion {
        self.version_with(model, source, tags, None, None).await
    }

    pub async fn version_with(
        &self,
        model: &str,
        source: &str,
        tags: Vec<KeyValue>,
        run_id: Option<String>,
        model_id: Option<String>,
    ) -> ModelVersion {
        if self.store.get_registered_model(model).await.is_err() {
            self.store
                .create_registered_model(model.into(), vec![], None)
                .await
                .unwrap();
        }
        self.store
            .create_model_version(CreateModelVersion {
                name: model.into(),
                source: source.into(),
                run_id,
                tags,
                model_id,
                ..Default::default()
            })
            .await
            .unwrap()
    }

    /// Builds a package from `s`, uploads it and registers it as a version of `model`,
    /// tagged with its datasets as `kiln train` does.
    pub async fn register(&self, model: &str, s: &Spec) -> ModelVersion {
        let local = self.fresh("pkg");
        build_package(&local, s);
        let prefix = format!(
            "0/{}/artifacts/package",
            local.file_name().unwrap().to_str().unwrap()
        );
        self.upload(&local, &prefix).await;
        let mut tags = vec![];
        for (n, d) in &s.sources {
            tags.push(KeyValue {
                key: format!("kiln.dataset.{n}"),
                value: d.clone(),
            });
        }
        if let Some(d) = &s.features_digest {
            tags.push(KeyValue {
                key: format!("kiln.dataset.{FEATURES}"),
                value: d.clone(),
            });
        }
        self.version_with(
            model,
            &format!("mlflow-artifacts:/{prefix}"),
            tags,
            s.run_id.clone(),
            None,
        )
        .await
    }

    pub async fn record_dataset(&self, name: &str, digest: &str, validation: Option<&str>) {
        self.store
            .record_dataset_version(DatasetVersionInput {
                name: name.into(),
                digest: digest.into(),
                source: format!("data/{name}.csv"),
                format: "csv".into(),
                schema_json: "[]".into(),
                row_count: 42,
                bytes: 1000,
            })
            .await
            .unwrap();
        if let Some(v) = validation {
            self.store
                .set_dataset_validation(name, digest, v.into())
                .await
                .unwrap();
        }
    }
}

/// A policy protecting `champion` with `gates`.
pub fn policy(gates: AliasGates) -> ReleasePolicy {
    ReleasePolicy {
        model: "delay".into(),
        trusted_keys: vec![],
        aliases: [("champion".to_string(), gates)].into(),
    }
}

/// Gates with nothing switched on (integrity always runs).
pub fn no_gates() -> AliasGates {
    AliasGates {
        metrics: vec![],
        compatible_inputs: false,
        validated_data: false,
        signed: false,
        latency: None,
    }
}

pub fn metric(name: &str) -> MetricGate {
    MetricGate {
        metric: name.into(),
        min: None,
        max: None,
        max_drop: None,
        max_rise: None,
    }
}

/// The results of one gate kind.
pub fn of<'a>(
    results: &'a [kiln_core::release::GateResult],
    gate: &str,
) -> Vec<&'a kiln_core::release::GateResult> {
    results.iter().filter(|r| r.gate == gate).collect()
}
