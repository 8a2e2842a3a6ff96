//! Kiln's model maths without I/O: tensors, the `Predictor` trait every model serves through,
//! the tree-ensemble and linear predictors (native models and compiled ONNX `ai.onnx.ml`
//! graphs share them), trainers, evaluation metrics and the model package format.
//!
//! Nothing here knows HTTP, the store or a data-frame engine: trainers take a dense
//! [`Matrix`]; predictors take and return [`Tensor`]s.

pub mod boost;
pub mod error;
pub mod linear;
pub mod linear_train;
pub mod matrix;
pub mod metrics;
pub mod native;
pub mod package;
pub mod predictor;
pub mod search;
pub mod tensor;
pub mod trees;

pub use error::{MlError, Result};
pub use linear_train::{LinearOutcome, LinearParams, train_linear};
pub use matrix::Matrix;
pub use metrics::{ConfusionMatrix, Evaluation, evaluate};
pub use native::{NativeModel, NativePredictor, Predictions, Scorer, Task};
pub use package::{Manifest, ModelFormat, Package, PackageBuilder, TrustedKeys};
pub use predictor::{PostTransform, Predictor};
pub use tensor::{ElemType, Tensor, TensorData, TensorSpec};
