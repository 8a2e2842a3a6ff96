//! Kiln's model maths without I/O: tensors, the `Predictor` trait every model serves through,
//! the tree-ensemble and linear predictors (native models and compiled ONNX `ai.onnx.ml`
//! graphs share them), trainers, evaluation metrics and the model package format.
//!
//! Nothing here knows HTTP, the store or a data-frame engine: trainers take a dense
//! [`Matrix`]; predictors take and return [`Tensor`]s.

pub mod error;
pub mod linear;
pub mod matrix;
pub mod native;
pub mod predictor;
pub mod tensor;
pub mod trees;

pub use error::{MlError, Result};
pub use matrix::Matrix;
pub use native::{NativeModel, NativePredictor, Predictions, Scorer, Task};
pub use predictor::{PostTransform, Predictor};
pub use tensor::{ElemType, Tensor, TensorData, TensorSpec};
