//! Kiln's column types: the small set every part of Kiln (data, training, serving) agrees on.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A column type as written in `kiln.toml` and stored in dataset schemas and transform specs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DType {
    Int,
    Float,
    Bool,
    String,
    Categorical,
    Date,
    Timestamp,
}

impl DType {
    pub const ALL: [DType; 7] = [
        DType::Int,
        DType::Float,
        DType::Bool,
        DType::String,
        DType::Categorical,
        DType::Date,
        DType::Timestamp,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DType::Int => "int",
            DType::Float => "float",
            DType::Bool => "bool",
            DType::String => "string",
            DType::Categorical => "categorical",
            DType::Date => "date",
            DType::Timestamp => "timestamp",
        }
    }

    /// True for types whose values are numbers (int, float).
    pub fn is_numeric(self) -> bool {
        matches!(self, DType::Int | DType::Float)
    }

    /// True for types whose values are text (string, categorical).
    pub fn is_text(self) -> bool {
        matches!(self, DType::String | DType::Categorical)
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing an unknown type name; lists the names Kiln accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown column type {0:?}: expected one of int, float, bool, string, categorical, date, timestamp"
)]
pub struct UnknownDType(pub String);

impl FromStr for DType {
    type Err = UnknownDType;
    fn from_str(s: &str) -> Result<DType, UnknownDType> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "int" | "integer" | "int64" | "long" => DType::Int,
            "float" | "double" | "float64" | "number" => DType::Float,
            "bool" | "boolean" => DType::Bool,
            "string" | "str" | "text" | "utf8" => DType::String,
            "categorical" | "category" => DType::Categorical,
            "date" => DType::Date,
            "timestamp" | "datetime" => DType::Timestamp,
            other => return Err(UnknownDType(other.to_string())),
        })
    }
}
