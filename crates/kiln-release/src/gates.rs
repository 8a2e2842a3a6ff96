//! The gate engine: runs every gate of a protected alias for a candidate version against the
//! alias's current holder and returns one [`GateResult`] per check, in this order:
//!
//! | gate | when | passes when |
//! |---|---|---|
//! | `integrity` | always | the package opens (every file matches the manifest); an MLflow ONNX model loads |
//! | `signature` | `signed` | the package's signature verifies against a trusted key |
//! | `metric` | per `min` / `max` | the candidate's metric is within the bound |
//! | `metric_relative` | per `max_drop` / `max_rise` | within the allowed change from the holder, both evaluated on the same dataset digest |
//! | `inputs` | `compatible_inputs` and a holder | no holder input is removed or retyped |
//! | `data` | `validated_data` | every source dataset passed validation (one result per dataset) |
//! | `latency` | `latency` | the measured p99 is within the budget |
//!
//! Evaluation never fails: an error in fetching or loading a version becomes a failing gate
//! whose message says what went wrong.

use std::collections::BTreeMap;

use kiln_core::entities::ModelVersion;
use kiln_core::release::{GateResult, LatencyGate, ReleasePolicy};
use kiln_ml::package::PackageError;
use kiln_ml::package::PublicKey;
use kiln_ml::{MlError, TrustedKeys};
use kiln_store::{ArtifactStore, Store};
use serde_json::{Value, json};

use crate::evaluation::{Evaluation, evaluation, version_metrics};
use crate::fetch::{Fetched, VersionKind, fetch_version};
use crate::{latency, short};

mod inputs;
mod metrics;

/// Runs release gates against the stores.
#[derive(Clone)]
pub struct Engine {
    store: Store,
    artifacts: ArtifactStore,
}

/// What the gates know about one version.
struct Facts<'a> {
    mv: &'a ModelVersion,
    fetched: Result<Fetched, String>,
    evaluation: Option<Evaluation>,
    /// Every metric of the version, or why they cannot be read.
    metrics: Result<BTreeMap<String, f64>, String>,
}

impl Facts<'_> {
    fn who(&self) -> String {
        format!("version {}", self.mv.version)
    }
}

impl Engine {
    pub fn new(store: Store, artifacts: ArtifactStore) -> Engine {
        Engine { store, artifacts }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn artifacts(&self) -> &ArtifactStore {
        &self.artifacts
    }

    /// Fetches version `mv` (see [`fetch_version`]).
    pub async fn fetch(&self, mv: &ModelVersion) -> Result<Fetched, crate::ReleaseError> {
        fetch_version(&self.store, &self.artifacts, mv).await
    }

    async fn facts<'a>(&self, mv: &'a ModelVersion) -> Facts<'a> {
        let fetched = self.fetch(mv).await.map_err(|e| e.to_string());
        let (evaluation, metrics) = match &fetched {
            Err(e) => (
                None,
                Err(format!("version {} could not be fetched: {e}", mv.version)),
            ),
            Ok(f) => match f.package_error() {
                Some(e) => (
                    None,
                    Err(format!(
                        "the package of version {} does not verify: {e}",
                        mv.version
                    )),
                ),
                None => (
                    evaluation(&self.store, f, mv).await,
                    Ok(version_metrics(&self.store, f, mv).await),
                ),
            },
        };
        Facts {
            mv,
            fetched,
            evaluation,
            metrics,
        }
    }

    /// Runs every gate of `policy.aliases[alias]` for `candidate` against `holder` (the
    /// alias's current version, if any). An alias the policy does not protect has no gates
    /// (an empty list). Never panics; errors become failing gates.
    pub async fn evaluate(
        &self,
        policy: &ReleasePolicy,
        alias: &str,
        candidate: &ModelVersion,
        holder: Option<&ModelVersion>,
    ) -> Vec<GateResult> {
        let Some(gates) = policy.gates(alias) else {
            return vec![];
        };
        let cand = self.facts(candidate).await;
        let hold = match holder {
            Some(h) => Some(self.facts(h).await),
            None => None,
        };
        let mut out = vec![integrity(&cand)];
        if gates.signed {
            out.push(signature(policy, &cand));
        }
        for g in &gates.metrics {
            out.extend(metrics::absolute(g, &cand));
        }
        for g in &gates.metrics {
            out.extend(metrics::relative(g, alias, &cand, hold.as_ref()));
        }
        if gates.compatible_inputs
            && let Some(h) = &hold
        {
            out.push(inputs::gate(&cand, h));
        }
        if gates.validated_data {
            out.extend(self.data(&cand).await);
        }
        if let Some(l) = &gates.latency {
            out.push(latency_gate(l, &cand).await);
        }
        out
    }

    /// The `data` gate: one result per source dataset of the candidate's lineage.
    async fn data(&self, cand: &Facts<'_>) -> Vec<GateResult> {
        let pkg = match &cand.fetched {
            Err(e) => return vec![fail("data", "", json!({}), e.clone())],
            Ok(f) => f.package(),
        };
        if let Some(e) = cand.fetched.as_ref().ok().and_then(|f| f.package_error()) {
            return vec![fail(
                "data",
                "",
                json!({}),
                format!("cannot read the training datasets: the package does not verify: {e}"),
            )];
        }
        let sources: Vec<_> = pkg
            .map(|p| {
                p.manifest()
                    .lineage
                    .datasets
                    .iter()
                    .filter(|d| d.role == "source")
                    .collect()
            })
            .unwrap_or_default();
        if sources.is_empty() {
            return vec![fail(
                "data",
                "",
                json!({}),
                format!(
                    "{} records no training datasets, so none can be shown to be validated",
                    cand.who()
                ),
            )];
        }
        let mut out = vec![];
        for d in sources {
            let subject = format!("{}@{}", d.name, short(&d.digest));
            let inputs = json!({"dataset": d.name, "digest": d.digest});
            let r = match self.store.get_dataset_version(&d.name, &d.digest).await {
                Err(kiln_store::StoreError::NotFound(_)) => fail(
                    "data",
                    &subject,
                    inputs,
                    format!("{subject} was never validated (no version of it is recorded)"),
                ),
                Err(e) => fail(
                    "data",
                    &subject,
                    inputs,
                    format!("cannot look up {subject}: {e}"),
                ),
                Ok(v) => match v
                    .validation_json
                    .as_deref()
                    .map(serde_json::from_str::<Value>)
                {
                    None => fail(
                        "data",
                        &subject,
                        inputs,
                        format!("{subject} was never validated"),
                    ),
                    Some(Err(e)) => fail(
                        "data",
                        &subject,
                        inputs,
                        format!("{subject} has an unreadable validation record: {e}"),
                    ),
                    Some(Ok(j)) if j["success"] == true => GateResult {
                        gate: "data".into(),
                        subject: subject.clone(),
                        passed: true,
                        value: None,
                        threshold: None,
                        inputs: json!({"dataset": d.name, "digest": d.digest, "validation": j}),
                        message: format!("{subject} passed validation"),
                    },
                    Some(Ok(j)) => {
                        let rules: Vec<&str> = j["failed_rules"]
                            .as_array()
                            .map(|a| a.iter().filter_map(Value::as_str).collect())
                            .unwrap_or_default();
                        let why = if rules.is_empty() {
                            String::new()
                        } else {
                            format!(": rules {} failed", rules.join(", "))
                        };
                        fail(
                            "data",
                            &subject,
                            json!({"dataset": d.name, "digest": d.digest, "validation": j}),
                            format!("{subject} failed validation{why}"),
                        )
                    }
                },
            };
            out.push(r);
        }
        out
    }
}

fn fail(gate: &str, subject: &str, inputs: Value, message: String) -> GateResult {
    GateResult {
        gate: gate.into(),
        subject: subject.into(),
        passed: false,
        value: None,
        threshold: None,
        inputs,
        message,
    }
}

/// Decimals enough to show every non-zero number of a message as non-zero (3 to 12).
pub(crate) fn decimals(values: &[f64]) -> usize {
    let mut d = 3;
    for v in values {
        let a = v.abs();
        while d < 12 && a > 0.0 && a.is_finite() && (a * 10f64.powi(d as i32)).round() == 0.0 {
            d += 1;
        }
    }
    d
}

fn integrity(cand: &Facts<'_>) -> GateResult {
    let f = match &cand.fetched {
        Ok(f) => f,
        Err(e) => return fail("integrity", "", json!({}), e.clone()),
    };
    match (f.kind(), f.package(), f.package_error()) {
        (VersionKind::KilnPackage, Some(p), _) => GateResult {
            gate: "integrity".into(),
            subject: short(p.digest()).into(),
            passed: true,
            value: None,
            threshold: None,
            inputs: json!({"digest": p.digest(), "files": p.manifest().files.len()}),
            message: format!(
                "package {} verifies: all {} files match its manifest",
                short(p.digest()),
                p.manifest().files.len()
            ),
        },
        (VersionKind::KilnPackage, None, e) => {
            let e = e.map(ToString::to_string).unwrap_or_default();
            let subject = match f.package_error() {
                Some(MlError::Package(
                    PackageError::FileMismatch { file, .. } | PackageError::MissingFile { file },
                )) => file.clone(),
                Some(MlError::Package(PackageError::ExtraFiles { files })) => files.join(", "),
                Some(MlError::Package(PackageError::Manifest { file, .. })) => file.clone(),
                _ => String::new(),
            };
            fail(
                "integrity",
                &subject,
                json!({"error": e}),
                format!("the package does not verify: {e}"),
            )
        }
        (VersionKind::MlflowOnnx, ..) => {
            let file = f.model_file().unwrap_or_default().to_string();
            match f.predictor() {
                Ok(_) => GateResult {
                    gate: "integrity".into(),
                    subject: file.clone(),
                    passed: true,
                    value: None,
                    threshold: None,
                    inputs: json!({"model_file": file}),
                    message: format!(
                        "the MLflow ONNX model {file} loads (an MLflow model lists no file digests to check)"
                    ),
                },
                Err(e) => fail(
                    "integrity",
                    &file,
                    json!({"model_file": file}),
                    format!("the MLflow ONNX model does not load: {e}"),
                ),
            }
        }
    }
}

fn signature(policy: &ReleasePolicy, cand: &Facts<'_>) -> GateResult {
    let mut trusted = TrustedKeys::new();
    let mut invalid = vec![];
    for (i, text) in policy.trusted_keys.iter().enumerate() {
        match PublicKey::from_text(text) {
            Ok(k) => trusted.add(k),
            Err(e) => invalid.push(format!("trusted key #{}: {e}", i + 1)),
        }
    }
    let inputs = json!({
        "trusted_keys": trusted.key_ids().collect::<Vec<_>>(),
        "invalid_trusted_keys": invalid,
    });
    let f = match &cand.fetched {
        Ok(f) => f,
        Err(e) => return fail("signature", "", inputs, e.clone()),
    };
    if f.kind() == VersionKind::MlflowOnnx {
        return fail(
            "signature",
            "",
            inputs,
            "the version is an MLflow ONNX model, which carries no signature (only Kiln packages are signed)".into(),
        );
    }
    let Some(p) = f.package() else {
        return fail(
            "signature",
            "",
            inputs,
            "the package does not verify, so its signature cannot be checked".into(),
        );
    };
    match p.verify_signature(&trusted) {
        Ok(key) => GateResult {
            gate: "signature".into(),
            subject: key.clone(),
            passed: true,
            value: None,
            threshold: None,
            inputs,
            message: format!("the package is signed by trusted key {key}"),
        },
        Err(e) => {
            let subject = match &e {
                MlError::Package(
                    PackageError::UnknownKey { key_id } | PackageError::BadSignature { key_id },
                ) => key_id.clone(),
                _ => String::new(),
            };
            fail("signature", &subject, inputs, e.to_string())
        }
    }
}

async fn latency_gate(l: &LatencyGate, cand: &Facts<'_>) -> GateResult {
    let budget = l.p99_ms;
    let mut inputs =
        json!({"rows": l.rows, "iterations": l.iterations, "warm_up": latency::WARM_UP});
    let predictor = match cand
        .fetched
        .as_ref()
        .map_err(Clone::clone)
        .and_then(|f| f.predictor().map_err(|e| e.to_string()))
    {
        Ok(p) => p,
        Err(e) => {
            return fail(
                "latency",
                "p99_ms",
                inputs,
                format!("cannot measure latency: {e}"),
            );
        }
    };
    let (rows, iterations) = (l.rows, l.iterations);
    let measured =
        tokio::task::spawn_blocking(move || latency::measure(&*predictor, rows, iterations)).await;
    let lat = match measured {
        Ok(Ok(lat)) => lat,
        Ok(Err(e)) => {
            return fail(
                "latency",
                "p99_ms",
                inputs,
                format!("the predictor failed on {rows}-row inputs of zeros: {e}"),
            );
        }
        Err(e) => {
            return fail(
                "latency",
                "p99_ms",
                inputs,
                format!("the benchmark stopped: {e}"),
            );
        }
    };
    inputs["p50_ms"] = json!(lat.p50_ms);
    inputs["max_ms"] = json!(lat.max_ms);
    inputs["rows"] = json!(lat.rows);
    inputs["iterations"] = json!(lat.iterations);
    let p99 = lat.p99_ms;
    let passed = p99 <= budget;
    let d = decimals(&[p99, budget, lat.p50_ms, p99 - budget]);
    let message = if passed {
        format!(
            "p99 latency {p99:.d$} ms for {}-row predictions is within the budget {budget:.d$} ms (p50 {:.d$} ms over {} calls)",
            lat.rows, lat.p50_ms, lat.iterations
        )
    } else {
        format!(
            "p99 latency {p99:.d$} ms for {}-row predictions is over the budget {budget:.d$} ms by {:.d$} ms",
            lat.rows,
            p99 - budget
        )
    };
    GateResult {
        gate: "latency".into(),
        subject: "p99_ms".into(),
        passed,
        value: Some(p99),
        threshold: Some(budget),
        inputs,
        message,
    }
}
