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
    Database(sqlx::Error),
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

impl From<sqlx::Error> for StoreError {
    /// Errors the database raises because of the request's content become client errors:
    /// a unique violation is a lost creation race (RESOURCE_ALREADY_EXISTS, which the
    /// client treats as such), a data exception (SQLSTATE class 22, e.g. a NUL character
    /// PostgreSQL refuses in text) is an invalid value. Everything else is internal.
    fn from(e: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &e {
            if db.is_unique_violation() {
                return StoreError::AlreadyExists(
                    "A resource with this name or key already exists.".into(),
                );
            }
            if db.code().is_some_and(|c| c.starts_with("22")) {
                return StoreError::Invalid(format!(
                    "A value in the request cannot be stored: {}",
                    db.message()
                ));
            }
        }
        StoreError::Database(e)
    }
}
