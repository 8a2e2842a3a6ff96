//! Release gates: what the server checks before a protected alias (e.g. `champion`) of a
//! registered model moves to a version, and the lineage of versions and datasets.
//!
//! The vocabulary (policy, gate results) is `kiln_core::release`; this crate evaluates it.
//!
//! - [`fetch`]: downloads a version's files from the artifact store — a Kiln package
//!   (`manifest.json`) or an MLflow model with an ONNX flavor (`MLmodel`) — into a temporary
//!   folder ([`Fetched`]) and loads its predictor.
//! - [`evaluation`](mod@evaluation): the metrics a version was evaluated with and the dataset
//!   digest they were measured on.
//! - [`gates`]: the [`Engine`] that runs every gate of an alias for a candidate against the
//!   alias's current holder; [`latency`] is the micro-benchmark of the latency gate.
//! - [`lineage`]: where a version came from ([`version_lineage`]) and which versions were
//!   built from a dataset ([`dataset_lineage`]).
//!
//! Nothing here knows HTTP; errors are [`ReleaseError`]s, and gate evaluation never fails:
//! an error in fetching or loading becomes a failing gate that says why.

pub mod evaluation;
pub mod fetch;
pub mod gates;
pub mod latency;
pub mod lineage;

use thiserror::Error;

pub use evaluation::{Evaluation, evaluation};
pub use fetch::{Fetched, VersionKind, fetch_version};
pub use gates::Engine;
pub use lineage::{
    DatasetLineage, LineageDataset, LineageRun, LinkedVersion, VersionLineage, dataset_lineage,
    version_lineage,
};

/// What can go wrong while fetching, loading or tracing a version.
#[derive(Debug, Error)]
pub enum ReleaseError {
    /// The metadata or artifact store failed (not found, I/O…).
    #[error(transparent)]
    Store(#[from] kiln_store::StoreError),
    /// The version's files are neither a Kiln package nor an MLflow ONNX model.
    #[error(
        "version {version} of `{model}` has source {uri}, which is neither a Kiln package nor an MLflow ONNX model{detail}"
    )]
    UnsupportedSource {
        model: String,
        version: String,
        uri: String,
        /// Empty, or `" (…)"` with what was found instead.
        detail: String,
    },
    /// The version's location holds no files.
    #[error("version {version} of `{model}` has no files under {location}")]
    NoFiles {
        model: String,
        version: String,
        location: String,
    },
    /// A local file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The package does not open (a file changed, is missing, or the manifest is invalid).
    #[error("the package does not verify: {0}")]
    Package(String),
    /// The model file does not load into a predictor.
    #[error("the model does not load: {0}")]
    Load(String),
    /// A request that cannot be answered as asked (e.g. a too-short digest prefix).
    #[error("{0}")]
    Invalid(String),
}

/// The first 12 characters of a digest, as Kiln shows them.
pub fn short(digest: &str) -> &str {
    digest.get(..12).unwrap_or(digest)
}
