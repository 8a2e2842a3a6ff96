//! Lineage: where a registered version came from (run, datasets, code, metrics, signature)
//! and, the other way, which registered versions were built from a dataset version.
//!
//! A Kiln package carries its lineage in its manifest; `kiln train` also tags each version
//! `kiln.dataset.<dataset name>` = digest, which [`dataset_lineage`] searches. An MLflow model
//! has only its run: the run's dataset inputs (role = their `mlflow.data.context` tag) and
//! metrics.

use std::collections::BTreeMap;

use kiln_core::entities::{ModelVersion, Run};
use kiln_ml::TensorSpec;
use kiln_store::{ArtifactStore, DatasetVersion, RegistrySearch, Store, StoreError};
use kiln_transform::Column;
use serde::Serialize;

use crate::evaluation::{CONTEXT_TAG, run_metrics};
use crate::fetch::{VersionKind, fetch_version};
use crate::{ReleaseError, short};

/// The tag prefix `kiln train` records each lineage dataset under on a model version.
pub const DATASET_TAG_PREFIX: &str = "kiln.dataset.";

/// Where a version came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VersionLineage {
    pub model: String,
    pub version: String,
    pub aliases: Vec<String>,
    pub stage: String,
    pub source: String,
    /// Where its files are (the resolved storage location, else the source).
    pub location: Option<String>,
    /// `kiln-package` or `mlflow-onnx`; `None` when the files could not be read.
    pub kind: Option<VersionKind>,
    /// The package digest (sha256 of `manifest.json`).
    pub package_digest: Option<String>,
    /// Whether the package carries a signature (not whether it is trusted).
    pub signed: Option<bool>,
    /// `kiln-native` or `onnx`.
    pub format: Option<String>,
    /// Registration time, milliseconds since the epoch.
    pub created_at: i64,
    /// When the package was written (RFC 3339), for a package.
    pub packaged_at: Option<String>,
    pub run: Option<LineageRun>,
    pub datasets: Vec<LineageDataset>,
    pub code_commit: Option<String>,
    pub code_dirty: Option<bool>,
    pub metrics: BTreeMap<String, f64>,
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
    /// The raw columns of the feature transform, for a package that has one.
    pub raw_inputs: Vec<Column>,
    /// Why part of the lineage is missing (files not fetched, package not verified…).
    pub error: Option<String>,
}

/// The run that produced a version.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LineageRun {
    pub id: String,
    pub experiment_id: Option<String>,
    pub name: Option<String>,
    pub status: Option<String>,
    pub start_time: Option<i64>,
    pub end_time: Option<i64>,
}

/// One dataset a version was built or evaluated from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LineageDataset {
    pub name: String,
    pub digest: String,
    /// `source`, `features` (Kiln packages) or the MLflow context (`training`, `test`…).
    pub role: String,
    /// The recorded dataset version number, when the store knows it.
    pub dataset_version: Option<i64>,
    /// The latest validation verdict; `None` when never validated or not recorded.
    pub validated: Option<bool>,
    pub rows: Option<i64>,
}

/// A registered version built from a dataset.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LinkedVersion {
    pub model: String,
    pub version: String,
    pub aliases: Vec<String>,
    pub stage: String,
    pub created_at: i64,
    /// `kiln serve` processes that served this version (newest first).
    pub deployments: Vec<kiln_store::Deployment>,
}

/// The versions built from one dataset version.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DatasetLineage {
    pub name: String,
    pub digest: String,
    pub dataset_version: Option<i64>,
    pub validated: Option<bool>,
    pub rows: Option<i64>,
    pub versions: Vec<LinkedVersion>,
}

fn verdict(v: &DatasetVersion) -> Option<bool> {
    let j: serde_json::Value = serde_json::from_str(v.validation_json.as_deref()?).ok()?;
    Some(j["success"] == true)
}

async fn dataset(store: &Store, name: &str, digest: &str, role: &str) -> LineageDataset {
    let recorded = store.get_dataset_version(name, digest).await.ok();
    LineageDataset {
        name: name.into(),
        digest: digest.into(),
        role: role.into(),
        dataset_version: recorded.as_ref().map(|v| v.version),
        validated: recorded.as_ref().and_then(verdict),
        rows: recorded.as_ref().map(|v| v.row_count),
    }
}

fn run_summary(id: &str, run: Option<&Run>) -> LineageRun {
    LineageRun {
        id: id.into(),
        experiment_id: run.map(|r| r.info.experiment_id.clone()),
        name: run.map(|r| r.info.run_name.clone()),
        status: run.map(|r| r.info.status.clone()),
        start_time: run.and_then(|r| r.info.start_time),
        end_time: run.and_then(|r| r.info.end_time),
    }
}

/// The lineage of version `mv`. Fails only when the store fails on the version itself;
/// files that cannot be fetched leave the package fields empty and say why in `error`.
pub async fn version_lineage(
    store: &Store,
    artifacts: &ArtifactStore,
    mv: &ModelVersion,
) -> Result<VersionLineage, ReleaseError> {
    let location = store
        .get_model_version_download_uri(&mv.name, &mv.version)
        .await?;
    let mut out = VersionLineage {
        model: mv.name.clone(),
        version: mv.version.clone(),
        aliases: mv.aliases.clone(),
        stage: mv.current_stage.clone(),
        source: mv.source.clone(),
        location: Some(location),
        kind: None,
        package_digest: None,
        signed: None,
        format: None,
        created_at: mv.creation_timestamp,
        packaged_at: None,
        run: None,
        datasets: vec![],
        code_commit: None,
        code_dirty: None,
        metrics: BTreeMap::new(),
        inputs: vec![],
        outputs: vec![],
        raw_inputs: vec![],
        error: None,
    };
    let fetched = match fetch_version(store, artifacts, mv).await {
        Ok(f) => Some(f),
        Err(e) => {
            out.error = Some(e.to_string());
            None
        }
    };
    let manifest = fetched
        .as_ref()
        .and_then(|f| f.package())
        .map(|p| p.manifest());
    let run_id = mv
        .run_id
        .clone()
        .or_else(|| manifest.and_then(|m| m.lineage.run_id.clone()));
    let run = match &run_id {
        Some(id) => store.get_run(id).await.ok(),
        None => None,
    };
    out.run = run_id.as_deref().map(|id| run_summary(id, run.as_ref()));
    if let Some(f) = &fetched {
        out.kind = Some(f.kind());
        out.format = f.format().map(str::to_string);
        if let Some(e) = f.package_error() {
            out.error = Some(format!("the package does not verify: {e}"));
        }
    }
    if let (Some(p), Some(m)) = (fetched.as_ref().and_then(|f| f.package()), manifest) {
        out.package_digest = Some(p.digest().to_string());
        out.signed = Some(p.is_signed());
        out.packaged_at = Some(m.created_at.clone());
        out.code_commit = m.lineage.code_commit.clone();
        out.code_dirty = m.lineage.code_dirty;
        out.metrics = m.metrics.clone();
        out.inputs = m.inputs.clone();
        out.outputs = m.outputs.clone();
        out.raw_inputs = m.raw_inputs.clone();
        if let (Some(r), None) = (&mut out.run, &run) {
            r.experiment_id = m.lineage.experiment_id.clone();
        }
        for d in &m.lineage.datasets {
            out.datasets
                .push(dataset(store, &d.name, &d.digest, &d.role).await);
        }
    } else if let Some(f) = fetched
        .as_ref()
        .filter(|f| f.kind() == VersionKind::MlflowOnnx)
    {
        match (f.inputs(), f.outputs()) {
            (Ok(i), Ok(o)) => (out.inputs, out.outputs) = (i, o),
            (Err(e), _) | (_, Err(e)) => out.error = Some(e.to_string()),
        }
    }
    if manifest.is_none()
        && let Some(r) = &run
    {
        out.metrics = run_metrics(r);
        for i in &r.inputs.dataset_inputs {
            let role = i
                .tags
                .iter()
                .find(|t| t.key == CONTEXT_TAG)
                .map_or("input", |t| t.value.as_str());
            out.datasets
                .push(dataset(store, &i.dataset.name, &i.dataset.digest, role).await);
        }
    }
    Ok(out)
}

fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The registered versions built from dataset `name` at the digest starting with
/// `digest_prefix` (at least 8 hex characters): versions tagged
/// `kiln.dataset.<name>` = digest by `kiln train`, sorted by model and version, with their
/// aliases. The prefix is resolved against the recorded dataset versions, else against the
/// digests the tags hold; a prefix matching several digests is an error.
pub async fn dataset_lineage(
    store: &Store,
    name: &str,
    digest_prefix: &str,
) -> Result<DatasetLineage, ReleaseError> {
    let prefix = digest_prefix.to_ascii_lowercase();
    if prefix.len() < 8 || !is_hex(&prefix) {
        return Err(ReleaseError::Invalid(format!(
            "{digest_prefix:?} is not a dataset digest: give at least 8 hex characters"
        )));
    }
    if name.is_empty() || name.contains(['`', '\'']) {
        return Err(ReleaseError::Invalid(format!(
            "{name:?} is not a dataset name that versions can be searched by"
        )));
    }
    let tag = format!("tags.`{DATASET_TAG_PREFIX}{name}`");
    let recorded = match store.find_dataset_version(name, &prefix).await {
        Ok(v) => Some(v),
        Err(StoreError::NotFound(_)) => None,
        Err(e) => return Err(e.into()),
    };
    let (digest, versions) = match &recorded {
        Some(v) => {
            let vs = search_all(store, format!("{tag} = '{}'", v.digest)).await?;
            (v.digest.clone(), vs)
        }
        None => {
            let vs = search_all(store, format!("{tag} LIKE '{prefix}%'")).await?;
            let key = format!("{DATASET_TAG_PREFIX}{name}");
            let mut digests: Vec<String> = vs
                .iter()
                .filter_map(|v| v.tags.iter().find(|t| t.key == key))
                .map(|t| t.value.clone())
                .collect();
            digests.sort();
            digests.dedup();
            match digests.as_slice() {
                [one] => (one.clone(), vs),
                [] => {
                    return Err(StoreError::not_found(format!(
                        "no recorded version of dataset '{name}' and no model version has a digest starting with '{prefix}'"
                    ))
                    .into());
                }
                many => {
                    return Err(ReleaseError::Invalid(format!(
                        "'{prefix}' matches several digests of dataset '{name}' ({}); give more of the digest",
                        many.iter().map(|d| short(d)).collect::<Vec<_>>().join(", ")
                    )));
                }
            }
        }
    };
    let mut linked: Vec<LinkedVersion> = versions
        .into_iter()
        .map(|v| LinkedVersion {
            model: v.name,
            version: v.version,
            aliases: v.aliases,
            stage: v.current_stage,
            created_at: v.creation_timestamp,
            deployments: vec![],
        })
        .collect();
    for l in &mut linked {
        l.deployments = store.version_deployments(&l.model, &l.version).await?;
    }
    linked.sort_by(|a, b| {
        (a.model.as_str(), a.version.parse::<i64>().unwrap_or(0))
            .cmp(&(b.model.as_str(), b.version.parse::<i64>().unwrap_or(0)))
    });
    Ok(DatasetLineage {
        name: name.into(),
        digest,
        dataset_version: recorded.as_ref().map(|v| v.version),
        validated: recorded.as_ref().and_then(verdict),
        rows: recorded.as_ref().map(|v| v.row_count),
        versions: linked,
    })
}

/// Every page of a model-version search.
async fn search_all(store: &Store, filter: String) -> Result<Vec<ModelVersion>, ReleaseError> {
    let mut out = vec![];
    let mut page_token = None;
    loop {
        let (page, next) = store
            .search_model_versions(RegistrySearch {
                filter: Some(filter.clone()),
                max_results: Some(10_000),
                order_by: vec![],
                page_token,
            })
            .await?;
        out.extend(page);
        match next {
            Some(t) => page_token = Some(t),
            None => return Ok(out),
        }
    }
}
