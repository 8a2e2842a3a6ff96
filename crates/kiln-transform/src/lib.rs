//! Kiln's feature transforms without a data-frame engine: the column types, the expression
//! language of derived columns, and the transform spec that training writes and serving
//! replays on raw rows.
//!
//! The same semantics are compiled to Polars by `kiln-data::transform`; the scalar rules both
//! follow are in [`ops`].

pub mod dtype;
pub mod error;
pub mod expr;
pub mod ops;
pub mod spec;
pub mod time;
pub mod value;

pub use dtype::{DType, UnknownDType};
pub use error::{Result, TransformError};
pub use expr::{BinaryOp, Expr, Function, Resolved, UnaryOp};
pub use spec::{Column, CompiledSpec, Step, TransformSpec};
pub use value::Value;
