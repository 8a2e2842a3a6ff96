//! Kiln's shared vocabulary: ids, the MLflow-compatible entities, the error-code table and the
//! search grammar. Nothing here does I/O.

pub mod entities;
pub mod error;
pub mod ids;
pub mod release;
pub mod search;

pub use error::ErrorCode;
