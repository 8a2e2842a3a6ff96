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

/// Parameters from a JSON map (a `[train.x.params]` table): unknown names and wrong types are
/// errors naming the parameter (`params.num_leaves: …`).
pub(crate) fn params_from_map<T: serde::de::DeserializeOwned>(
    map: &std::collections::BTreeMap<String, serde_json::Value>,
) -> Result<T> {
    let value =
        serde_json::Value::Object(map.iter().map(|(k, v)| (k.clone(), v.clone())).collect());
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            MlError::Training(format!("params: {}", e.into_inner()))
        } else {
            MlError::Training(format!("params.{path}: {}", e.into_inner()))
        }
    })
}
