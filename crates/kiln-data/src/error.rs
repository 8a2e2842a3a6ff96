//! Errors of the data layer. Every variant about a file names it, and where the problem has a
//! place in the file, the line (1-based, as an editor shows it) and the column.

use std::path::PathBuf;

pub type Result<T, E = DataError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: the file is empty (expected a header line with column names)", path.display())]
    Empty { path: PathBuf },
    /// A problem at a place in a CSV file.
    #[error("{}:{line}: {}{message}", path.display(), column.as_ref().map(|c| format!("column `{c}`: ")).unwrap_or_default())]
    Csv {
        path: PathBuf,
        line: u64,
        column: Option<String>,
        message: String,
    },
    #[error("{}: column `{column}` appears twice in the header (columns {first} and {second})", path.display())]
    DuplicateColumn {
        path: PathBuf,
        column: String,
        first: usize,
        second: usize,
    },
    #[error("{}: no column `{column}` (columns: {})", path.display(), available.join(", "))]
    MissingColumn {
        path: PathBuf,
        column: String,
        available: Vec<String>,
    },
    #[error("{}: {message}", path.display())]
    Format { path: PathBuf, message: String },
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Transform(#[from] kiln_transform::TransformError),
    #[error("{0}")]
    Polars(#[from] polars::error::PolarsError),
}

impl DataError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> DataError {
        DataError::Io {
            path: path.into(),
            source,
        }
    }

    pub fn config(msg: impl Into<String>) -> DataError {
        DataError::Config(msg.into())
    }
}
