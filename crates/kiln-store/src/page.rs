//! Opaque page tokens: base64 of `{"offset": N}`, the shape MLflow's SQL store uses.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::error::{Result, StoreError};

pub(crate) fn encode(offset: i64) -> String {
    STANDARD.encode(format!("{{\"offset\": {offset}}}"))
}

pub(crate) fn decode(token: Option<&str>) -> Result<i64> {
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return Ok(0);
    };
    let bad = || StoreError::invalid(format!("Invalid page token {token:?}: could not decode it"));
    let bytes = STANDARD.decode(token).map_err(|_| bad())?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    let offset = v.get("offset").and_then(|o| o.as_i64()).ok_or_else(bad)?;
    if offset < 0 {
        return Err(bad());
    }
    Ok(offset)
}

/// Checks a requested page size against a maximum, MLflow-style.
pub(crate) fn max_results(requested: Option<i64>, default: i64, max: i64) -> Result<i64> {
    let n = requested.unwrap_or(default);
    if n <= 0 {
        return Err(StoreError::invalid(format!(
            "Invalid value {n} for parameter 'max_results' supplied. It must be a positive integer"
        )));
    }
    if n > max {
        return Err(StoreError::invalid(format!(
            "Invalid value {n} for parameter 'max_results' supplied. It must be at most {max}"
        )));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_garbage_is_refused() {
        assert_eq!(decode(Some(&encode(1234))).unwrap(), 1234);
        assert_eq!(decode(None).unwrap(), 0);
        assert!(decode(Some("not base64!")).is_err());
        assert!(max_results(Some(0), 10, 100).is_err());
        assert!(max_results(Some(101), 10, 100).is_err());
        assert_eq!(max_results(None, 10, 100).unwrap(), 10);
    }
}
