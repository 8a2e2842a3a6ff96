//! Kiln's data layer: reading datasets, versions and digests, expectations and quarantine,
//! profiles, and feature pipelines. The only crate that depends on Polars.

pub mod config;
pub mod drift;
pub mod error;
pub mod read;

pub use error::{DataError, Result};
pub use read::{ColumnType, Table, read_dataset};
pub mod expect;
mod expect_text;
pub mod features;
pub mod fsutil;
pub mod infer;
pub mod plain;
pub mod profile;
pub mod sketch;
pub mod training;
pub mod transform;
