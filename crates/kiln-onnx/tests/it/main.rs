//! kiln-onnx against onnxruntime's outputs (tests/fixtures/onnx/) and against bad inputs.

mod bad_input;
mod conformance;
mod fixtures;
