//! The wire formats of Kiln's data plane, as pure functions over bytes (no HTTP framework
//! types), kept apart from the server so the fuzz targets (`fuzz/`) build without the model
//! runtimes:
//!
//! - [`oip`]: decoding and encoding Open Inference Protocol v2 infer requests and responses
//!   (JSON and the binary tensor extension), checked against a model's inputs.
//! - [`scoring`]: decoding MLflow `/invocations` bodies (`dataframe_split`,
//!   `dataframe_records`, `instances`, `inputs`, CSV) into named columns or tensors, and
//!   encoding predictions.

pub mod oip;
pub mod scoring;
