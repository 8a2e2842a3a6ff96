//! MLflow's limits (`mlflow/utils/validation.py`), enforced before anything is written.
//! Messages name the field and say what was expected.

use crate::error::{Result, StoreError};

pub const MAX_ENTITY_KEY_LENGTH: usize = 250;
pub const MAX_PARAM_VAL_LENGTH: usize = 6000;
pub const MAX_TAG_VAL_LENGTH: usize = 8000;
pub const MAX_EXPERIMENT_TAG_VAL_LENGTH: usize = 20000;
pub const MAX_EXPERIMENT_NAME_LENGTH: usize = 500;
pub const MAX_REGISTRY_TAG_VAL_LENGTH: usize = 100_000;
pub const MAX_METRICS_PER_BATCH: usize = 1000;
pub const MAX_PARAMS_PER_BATCH: usize = 100;
pub const MAX_TAGS_PER_BATCH: usize = 100;
pub const MAX_ENTITIES_PER_BATCH: usize = 1000;
pub const MAX_BATCH_REQUEST_BYTES: usize = 1024 * 1024;

/// Validates a metric, param or tag key: non-empty, at most 250 characters, made of
/// alphanumerics, `_ - . / :` and spaces, and no path traversal.
pub fn key(kind: &str, key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(StoreError::invalid(format!(
            "Invalid value \"\" for parameter '{kind} key' supplied: a {kind} key must not be empty"
        )));
    }
    if key.chars().count() > MAX_ENTITY_KEY_LENGTH {
        return Err(StoreError::invalid(format!(
            "{kind} key '{}...' had length {}, which exceeded length limit of {MAX_ENTITY_KEY_LENGTH}",
            key.chars().take(32).collect::<String>(),
            key.chars().count()
        )));
    }
    let ok = key
        .chars()
        .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ' ' | '/' | ':'));
    if !ok {
        return Err(StoreError::invalid(format!(
            "Invalid {kind} name: '{key}'. Names may only contain alphanumerics, underscores (_), \
             dashes (-), periods (.), spaces ( ), colon(:) and slashes (/)."
        )));
    }
    if key.split('/').any(|part| part == "..") || key.starts_with('/') {
        return Err(StoreError::invalid(format!(
            "Invalid {kind} name: '{key}'. Names may not be absolute paths or contain '..'."
        )));
    }
    Ok(())
}

/// Validates a value's length against `limit` characters.
pub fn value_len(kind: &str, key: &str, value: &str, limit: usize) -> Result<()> {
    let n = value.chars().count();
    if n > limit {
        return Err(StoreError::invalid(format!(
            "{kind} value for key '{key}' had length {n}, which exceeded length limit of {limit}"
        )));
    }
    Ok(())
}

/// Registry and tag keys are free-form but bounded.
pub fn tag_key(kind: &str, key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(StoreError::invalid(format!(
            "Missing value for required parameter '{kind} key'."
        )));
    }
    if key.chars().count() > MAX_ENTITY_KEY_LENGTH {
        return Err(StoreError::invalid(format!(
            "{kind} key '{}...' had length {}, which exceeded length limit of {MAX_ENTITY_KEY_LENGTH}",
            key.chars().take(32).collect::<String>(),
            key.chars().count()
        )));
    }
    Ok(())
}

/// Validates a run id's shape before it reaches a query.
pub fn run_id(id: &str) -> Result<()> {
    if kiln_core::ids::is_valid_run_id(id) {
        Ok(())
    } else {
        Err(StoreError::invalid(format!(
            "Invalid value \"{id}\" for parameter 'run_id' supplied."
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert!(key("Metric", "val/loss:1 a-b_c.d").is_ok());
        assert!(key("Metric", "").is_err());
        assert!(key("Metric", &"k".repeat(251)).is_err());
        assert!(key("Metric", &"k".repeat(250)).is_ok());
        assert!(key("Param", "a?b").is_err());
        assert!(key("Param", "../x").is_err());
        assert!(value_len("Param", "k", &"v".repeat(6001), MAX_PARAM_VAL_LENGTH).is_err());
    }
}
