//! Release vocabulary: the per-model release policy the server enforces, the result of each
//! gate, the evaluation record of one attempted alias move, and the alias history.
//!
//! A policy is written in `kiln.toml` as `[release.NAME]` (see `kiln release policy`) and
//! stored as JSON in the metadata store; trusted keys travel inside it as public-key text,
//! so the server needs no files of its own.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The release policy of one registered model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleasePolicy {
    /// The registered model this policy governs.
    pub model: String,
    /// Public keys a package may be signed with: the text of each public key file that
    /// `kiln keys new` writes (JSON with `key_id` and `public_key`).
    #[serde(default)]
    pub trusted_keys: Vec<String>,
    /// Protected aliases and the gates a version must pass to take each.
    #[serde(default)]
    pub aliases: BTreeMap<String, AliasGates>,
}

impl ReleasePolicy {
    pub fn gates(&self, alias: &str) -> Option<&AliasGates> {
        self.aliases.get(alias)
    }
}

/// The gates of one protected alias.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AliasGates {
    /// Metric thresholds, absolute and relative to the alias's current holder.
    #[serde(default)]
    pub metrics: Vec<MetricGate>,
    /// No input of the current holder may be removed or retyped.
    #[serde(default = "yes")]
    pub compatible_inputs: bool,
    /// Every dataset the version was trained from passed `kiln data validate`.
    #[serde(default)]
    pub validated_data: bool,
    /// The package's signature verifies against one of the policy's trusted keys.
    #[serde(default)]
    pub signed: bool,
    /// A latency budget measured by micro-benchmarking the predictor.
    #[serde(default)]
    pub latency: Option<LatencyGate>,
}

fn yes() -> bool {
    true
}

/// A bound on one evaluation metric. `min`/`max` are absolute; `max_drop` (for metrics where
/// higher is better) and `max_rise` (lower is better) are relative to the current holder
/// evaluated on the same dataset digest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricGate {
    pub metric: String,
    #[serde(default)]
    pub min: Option<f64>,
    #[serde(default)]
    pub max: Option<f64>,
    #[serde(default)]
    pub max_drop: Option<f64>,
    #[serde(default)]
    pub max_rise: Option<f64>,
}

/// `p99_ms` of `rows`-row predictions, measured over `iterations` calls after a warm-up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatencyGate {
    pub p99_ms: f64,
    #[serde(default = "one")]
    pub rows: usize,
    #[serde(default = "default_iterations")]
    pub iterations: usize,
}

fn one() -> usize {
    1
}

fn default_iterations() -> usize {
    500
}

/// The verdict of one gate, with what it looked at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateResult {
    /// Which gate: `metric`, `metric_relative`, `inputs`, `data`, `integrity`, `signature`,
    /// `latency`.
    pub gate: String,
    /// What the gate was about (a metric name, a dataset, a key id …).
    #[serde(default)]
    pub subject: String,
    pub passed: bool,
    /// The measured or compared value, when the gate has one.
    #[serde(default)]
    pub value: Option<f64>,
    /// The bound it was held to, when the gate has one.
    #[serde(default)]
    pub threshold: Option<f64>,
    /// The facts the verdict rests on (digests, versions, holder's value …).
    #[serde(default)]
    pub inputs: Value,
    /// One sentence: why it passed or failed, with the numbers.
    pub message: String,
}

/// What became of one attempted move of a protected alias.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Every gate passed and the alias moved.
    Moved,
    /// A gate failed and the alias stayed.
    Blocked,
    /// A gate failed, an admin overrode it with a reason, and the alias moved.
    Overridden,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Moved => "moved",
            Outcome::Blocked => "blocked",
            Outcome::Overridden => "overridden",
        }
    }

    pub fn parse(s: &str) -> Option<Outcome> {
        Some(match s {
            "moved" => Outcome::Moved,
            "blocked" => Outcome::Blocked,
            "overridden" => Outcome::Overridden,
            _ => return None,
        })
    }
}

/// One stored gate evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReleaseEvaluation {
    /// Numbers the evaluations of one model from 1.
    pub id: i64,
    pub model: String,
    pub alias: String,
    pub version: String,
    /// The alias's holder when the gates ran.
    pub holder: Option<String>,
    pub actor: String,
    /// Milliseconds since the epoch.
    pub created_at: i64,
    pub outcome: Outcome,
    pub override_reason: Option<String>,
    pub gates: Vec<GateResult>,
}

/// One change of an alias.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AliasEvent {
    /// Numbers the events of one alias from 1.
    pub seq: i64,
    pub model: String,
    pub alias: String,
    /// The version the alias points at after the event; `None` when it was removed.
    pub version: Option<String>,
    pub previous: Option<String>,
    /// `set` (MLflow endpoint, unprotected), `release`, `override`, `rollback`, `delete`,
    /// `version_deleted`.
    pub action: String,
    pub actor: String,
    pub at: i64,
    pub reason: Option<String>,
    /// The gate evaluation that allowed the move, if any.
    pub evaluation: Option<i64>,
}
