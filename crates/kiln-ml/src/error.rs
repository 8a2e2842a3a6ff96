use thiserror::Error;

#[derive(Debug, Error)]
pub enum MlError {
    /// The caller's input does not fit the model (names the input and what was expected).
    #[error("bad input: {0}")]
    BadInput(String),
    /// A model, package or parameter set that cannot be used as given.
    #[error("invalid model: {0}")]
    InvalidModel(String),
    /// Training parameters or data that cannot train (names the parameter or column).
    #[error("invalid training setup: {0}")]
    Training(String),
    #[error("io error on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// A model package that does not verify, a signature problem, or a bad key file.
    #[error(transparent)]
    Package(crate::package::PackageError),
}

pub type Result<T, E = MlError> = std::result::Result<T, E>;
