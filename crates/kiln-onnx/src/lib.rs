//! ONNX models served through [`kiln_ml::Predictor`].
//!
//! A graph made only of operators Kiln's executor implements — the classical-ML ones that
//! scikit-learn exports through skl2onnx (`ai.onnx.ml` LinearClassifier, LinearRegressor,
//! TreeEnsembleClassifier, TreeEnsembleRegressor, Scaler, Normalizer, OneHotEncoder, Imputer,
//! ArrayFeatureExtractor, Binarizer, LabelEncoder, ZipMap, and the standard Identity, Cast,
//! Reshape, Flatten, Concat, Gather, Shape, Squeeze, Unsqueeze, Constant, ArgMax/ArgMin,
//! Add/Sub/Mul/Div, Sigmoid, Softmax, Abs/Neg/Exp/Log/Sqrt) — is compiled into that executor,
//! which runs a whole batch per operator. Tree ensembles are built and validated as
//! [`kiln_ml::trees::TreeEnsemble`] and linear models as [`kiln_ml::linear::LinearModel`], the
//! structures Kiln's own models use, then scored with onnxruntime's semantics and float32
//! arithmetic (labels, probability columns, base values, missing values; see `ops/trees.rs` and
//! `ops/linear.rs`): on scikit-learn's exports the outputs equal onnxruntime's to the bit. Any
//! other graph (neural networks: MatMul, Gemm, Relu…) runs on tract, optimised for a symbolic
//! batch dimension.
//!
//! ZipMap's output is a sequence of maps, which is not a tensor: Kiln serves the `[N, classes]`
//! probability tensor it wraps under the ZipMap output's name, columns in class-label order.
//!
//! Loading errors ([`OnnxError`]) name the node, operator and attribute at fault. `predict`
//! checks input names, types and shapes against [`Predictor::inputs`] and answers
//! [`kiln_ml::MlError::BadInput`] naming the input; it does not panic on any input.

mod error;
mod graph;
mod ops;
mod proto;
mod tract_backend;
mod value;

use std::path::Path;

use kiln_ml::{MlError, Predictor, Tensor, TensorSpec};
use tract_onnx::pb;
use tract_onnx::prelude::Framework;

pub use error::{OnnxError, Result};

/// Which engine runs a loaded model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Kiln's executor (classical-ML graphs).
    Native,
    /// tract (neural networks and anything else it supports).
    Tract,
}

enum Engine {
    Native(graph::NativeGraph),
    Tract(tract_backend::TractGraph),
}

/// A loaded ONNX model.
pub struct OnnxModel {
    engine: Engine,
}

impl std::fmt::Debug for OnnxModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxModel")
            .field("backend", &self.backend())
            .field("inputs", &self.inputs())
            .field("outputs", &self.outputs())
            .finish()
    }
}

fn decode(bytes: &[u8]) -> Result<pb::ModelProto> {
    let mut reader = bytes;
    let proto = tract_onnx::onnx()
        .proto_model_for_read(&mut reader)
        .map_err(|e| OnnxError::Decode(format!("{e:#}")))?;
    if proto.graph.is_none() {
        return Err(if proto.ir_version == 0 && proto.opset_import.is_empty() {
            OnnxError::Decode("no ONNX model in these bytes (empty, or another format)".into())
        } else {
            OnnxError::Invalid("the model has no graph".into())
        });
    }
    Ok(proto)
}

impl OnnxModel {
    /// Loads a model from the bytes of an `.onnx` file.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let proto = decode(bytes)?;
        let all_native = proto.graph.as_ref().is_some_and(|g| {
            g.node
                .iter()
                .all(|n| ops::is_native(graph::domain_of(n), &n.op_type))
        });
        if all_native {
            match graph::compile(&proto) {
                Ok(g) => {
                    return Ok(OnnxModel {
                        engine: Engine::Native(g),
                    });
                }
                // A capability Kiln's executor lacks: tract may have it.
                Err(native @ OnnxError::Unsupported { .. }) => {
                    return match tract_backend::compile(proto) {
                        Ok(t) => Ok(OnnxModel {
                            engine: Engine::Tract(t),
                        }),
                        Err(_) => Err(native),
                    };
                }
                Err(e) => return Err(e),
            }
        }
        Ok(OnnxModel {
            engine: Engine::Tract(tract_backend::compile(proto)?),
        })
    }

    /// Loads an `.onnx` file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| OnnxError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_bytes(&bytes)
    }

    pub fn backend(&self) -> Backend {
        match self.engine {
            Engine::Native(_) => Backend::Native,
            Engine::Tract(_) => Backend::Tract,
        }
    }
}

impl Predictor for OnnxModel {
    fn inputs(&self) -> &[TensorSpec] {
        match &self.engine {
            Engine::Native(g) => &g.inputs,
            Engine::Tract(g) => &g.inputs,
        }
    }

    fn outputs(&self) -> &[TensorSpec] {
        match &self.engine {
            Engine::Native(g) => &g.outputs,
            Engine::Tract(g) => &g.outputs,
        }
    }

    fn predict(&self, inputs: &[Tensor]) -> kiln_ml::Result<Vec<Tensor>> {
        // Defence in depth: a panic is a bug, but it must not take a server thread down.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match &self.engine {
            Engine::Native(g) => g.run(inputs),
            Engine::Tract(g) => g.run(inputs),
        }))
        .unwrap_or_else(|_| {
            Err(MlError::InvalidModel(
                "internal error: prediction panicked".into(),
            ))
        })
    }
}

/// Loads an ONNX model from bytes, ready to serve.
pub fn load(bytes: &[u8]) -> Result<Box<dyn Predictor>> {
    Ok(Box::new(OnnxModel::from_bytes(bytes)?))
}

/// Loads an `.onnx` file, ready to serve.
pub fn load_file(path: impl AsRef<Path>) -> Result<Box<dyn Predictor>> {
    Ok(Box::new(OnnxModel::from_file(path)?))
}

#[cfg(test)]
mod tests {
    fn send_sync<T: Send + Sync>() {}

    #[test]
    fn models_are_send_and_sync() {
        send_sync::<super::OnnxModel>();
    }
}
