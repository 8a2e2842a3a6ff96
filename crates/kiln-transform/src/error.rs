//! Errors of the transform language. Every variant names what it is about: the expression (as
//! written, or as Kiln prints it back), the column, or the step of a spec.

pub type Result<T, E = TransformError> = std::result::Result<T, E>;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TransformError {
    /// The text is not a SQL expression.
    #[error("cannot parse expression `{expr}`: {message}")]
    Parse { expr: String, message: String },
    /// Valid SQL that Kiln's language does not have (sub-queries, LIKE, unknown functions, …).
    #[error("expression `{expr}`: {construct} is not supported")]
    Unsupported { expr: String, construct: String },
    /// The expression reads a column that does not exist (at that point of a spec).
    #[error("expression `{expr}`: unknown column `{column}`")]
    UnknownColumn { expr: String, column: String },
    /// The expression does not type-check (`'a' + 1`, `NOT 3`, …).
    #[error("expression `{expr}`: {message}")]
    Type { expr: String, message: String },
    /// An input value does not fit the column's declared type.
    #[error("column `{column}`: {message}")]
    Value { column: String, message: String },
    /// A raw input column the spec needs is absent from the row.
    #[error("missing input column `{column}`")]
    MissingInput { column: String },
    /// The transform spec is inconsistent.
    #[error("transform spec: {0}")]
    Spec(String),
    /// An error of the data-frame engine (Polars) while running a spec; Kiln's transform crate
    /// does not know the engine, so the message is kept as text.
    #[error("data engine: {0}")]
    Engine(String),
}

impl TransformError {
    pub(crate) fn type_error(expr: impl ToString, message: impl Into<String>) -> TransformError {
        TransformError::Type {
            expr: expr.to_string(),
            message: message.into(),
        }
    }

    pub(crate) fn value(column: &str, message: impl Into<String>) -> TransformError {
        TransformError::Value {
            column: column.to_string(),
            message: message.into(),
        }
    }
}
