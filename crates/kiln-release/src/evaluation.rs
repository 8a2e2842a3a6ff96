//! A version's evaluation: the metrics it was measured with, and the dataset digest they were
//! measured on — what makes two versions' metrics comparable.
//!
//! - A Kiln package: the manifest's metrics, measured on the lineage dataset whose role is
//!   `features` (the feature table, e.g. `features.delay`, whose time split gives the test
//!   rows).
//! - An MLflow model: its run's metrics (latest values), measured on the run's first dataset
//!   input whose `mlflow.data.context` tag is `test`, `eval`, `evaluation` or `validation`.

use std::collections::BTreeMap;

use kiln_core::entities::{ModelVersion, Run};
use kiln_store::Store;
use serde::Serialize;

use crate::fetch::{Fetched, VersionKind};

/// The dataset-input tag MLflow stores a dataset's role in.
pub const CONTEXT_TAG: &str = "mlflow.data.context";
/// Contexts that mark an evaluation dataset.
pub const EVAL_CONTEXTS: [&str; 4] = ["test", "eval", "evaluation", "validation"];

/// A version's evaluation: metrics measured on one dataset digest.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evaluation {
    pub dataset: String,
    pub digest: String,
    pub metrics: BTreeMap<String, f64>,
}

/// The evaluation of version `mv` (see the module docs); `None` when the version records no
/// evaluation dataset.
pub async fn evaluation(store: &Store, fetched: &Fetched, mv: &ModelVersion) -> Option<Evaluation> {
    match fetched.kind() {
        VersionKind::KilnPackage => {
            let m = fetched.package()?.manifest();
            let d = m.lineage.datasets.iter().find(|d| d.role == "features")?;
            Some(Evaluation {
                dataset: d.name.clone(),
                digest: d.digest.clone(),
                metrics: m.metrics.clone(),
            })
        }
        VersionKind::MlflowOnnx => {
            let run = store.get_run(mv.run_id.as_deref()?).await.ok()?;
            run_evaluation(&run)
        }
    }
}

/// Every metric of a version: the manifest's for a package, the run's for an MLflow model
/// (empty when neither is known).
pub async fn version_metrics(
    store: &Store,
    fetched: &Fetched,
    mv: &ModelVersion,
) -> BTreeMap<String, f64> {
    if let Some(p) = fetched.package() {
        return p.manifest().metrics.clone();
    }
    match mv.run_id.as_deref() {
        Some(id) if fetched.kind() == VersionKind::MlflowOnnx => match store.get_run(id).await {
            Ok(run) => run_metrics(&run),
            Err(_) => BTreeMap::new(),
        },
        _ => BTreeMap::new(),
    }
}

/// A run's metrics, latest values (what the store reports in `data.metrics`).
pub fn run_metrics(run: &Run) -> BTreeMap<String, f64> {
    run.data
        .metrics
        .iter()
        .map(|m| (m.key.clone(), m.value))
        .collect()
}

/// The evaluation of an MLflow run: its metrics on its first evaluation dataset input.
pub fn run_evaluation(run: &Run) -> Option<Evaluation> {
    let input = run.inputs.dataset_inputs.iter().find(|i| {
        i.tags
            .iter()
            .any(|t| t.key == CONTEXT_TAG && EVAL_CONTEXTS.contains(&t.value.as_str()))
    })?;
    Some(Evaluation {
        dataset: input.dataset.name.clone(),
        digest: input.dataset.digest.clone(),
        metrics: run_metrics(run),
    })
}
