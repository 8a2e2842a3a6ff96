use thiserror::Error;

/// Errors from the metadata and artifact stores. Each variant maps to one MLflow error
/// code at the API edge; `Database` and `Artifacts` carry internals that are logged, not
/// shown to clients.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The named resource does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A resource with that name or key already exists.
    #[error("{0}")]
    AlreadyExists(String),
    /// A field has a value the store refuses; the message names the field.
    #[error("{0}")]
    Invalid(String),
    /// The write conflicts with the current state (for example a concurrent change).
    #[error("{0}")]
    Conflict(String),
    /// The store is shutting down or its writer stopped.
    #[error("the metadata store is unavailable: {0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("artifact store error: {0}")]
    Artifacts(#[from] object_store::Error),
    #[error("invalid store configuration: {0}")]
    Config(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

impl StoreError {
    pub fn not_found(msg: impl Into<String>) -> Self {
        StoreError::NotFound(msg.into())
    }
    pub fn invalid(msg: impl Into<String>) -> Self {
        StoreError::Invalid(msg.into())
    }
}

impl From<kiln_core::search::SearchError> for StoreError {
    fn from(e: kiln_core::search::SearchError) -> Self {
        StoreError::Invalid(e.message)
    }
}
