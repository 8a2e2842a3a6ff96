//! Why a model cannot be loaded: each error names the node, operator and attribute at fault.
//! Errors at prediction time are [`kiln_ml::MlError`]s (`BadInput` naming the input).

use thiserror::Error;

#[derive(Debug, Error)]
pub enum OnnxError {
    /// The bytes are not an ONNX `ModelProto` (corrupt, truncated, another format).
    #[error("not a readable ONNX model: {0}")]
    Decode(String),
    /// A well-formed protobuf that is not a usable model (no graph, an input without a type…).
    #[error("invalid ONNX model: {0}")]
    Invalid(String),
    /// An operator neither Kiln's executor nor tract runs.
    #[error("node `{node}`: operator `{op}` (domain `{domain}`) is not supported")]
    UnsupportedOp {
        node: String,
        op: String,
        domain: String,
    },
    /// An attribute that is missing, of the wrong type, or with a value that cannot work.
    #[error("node `{node}` ({op}): attribute `{attribute}`: {reason}")]
    Attribute {
        node: String,
        op: String,
        attribute: String,
        reason: String,
    },
    /// A node whose inputs, outputs or types do not fit its operator.
    #[error("node `{node}` ({op}): {reason}")]
    Node {
        node: String,
        op: String,
        reason: String,
    },
    /// A supported operator used in a way Kiln's executor does not implement (a type, an
    /// attribute value); such graphs are tried with tract before this is reported.
    #[error("node `{node}` ({op}): {reason} is not supported")]
    Unsupported {
        node: String,
        op: String,
        reason: String,
    },
    /// tract could not load or optimise the graph.
    #[error("tract could not load the model: {0}")]
    Tract(String),
    #[error("io error on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = OnnxError> = std::result::Result<T, E>;

impl From<OnnxError> for kiln_ml::MlError {
    fn from(e: OnnxError) -> Self {
        match e {
            OnnxError::Io { path, source } => kiln_ml::MlError::Io { path, source },
            other => kiln_ml::MlError::InvalidModel(other.to_string()),
        }
    }
}
