//! The one table of error codes clients see. Each code has its wire name (MLflow's
//! `error_code` strings, which the `mlflow` client branches on) and its HTTP status.
//! Domain crates map their typed errors onto these codes at the API edge.

use serde::Serialize;

/// Stable error codes, named as MLflow names them on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    InvalidParameterValue,
    BadRequest,
    MalformedRequest,
    ResourceAlreadyExists,
    ResourceDoesNotExist,
    EndpointNotFound,
    ResourceConflict,
    PermissionDenied,
    Unauthenticated,
    RequestLimitExceeded,
    InternalError,
    NotImplemented,
    TemporarilyUnavailable,
}

impl ErrorCode {
    /// The code string as it appears in `{"error_code": ...}`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidParameterValue => "INVALID_PARAMETER_VALUE",
            ErrorCode::BadRequest => "BAD_REQUEST",
            ErrorCode::MalformedRequest => "MALFORMED_REQUEST",
            ErrorCode::ResourceAlreadyExists => "RESOURCE_ALREADY_EXISTS",
            ErrorCode::ResourceDoesNotExist => "RESOURCE_DOES_NOT_EXIST",
            ErrorCode::EndpointNotFound => "ENDPOINT_NOT_FOUND",
            ErrorCode::ResourceConflict => "RESOURCE_CONFLICT",
            ErrorCode::PermissionDenied => "PERMISSION_DENIED",
            ErrorCode::Unauthenticated => "UNAUTHENTICATED",
            ErrorCode::RequestLimitExceeded => "REQUEST_LIMIT_EXCEEDED",
            ErrorCode::InternalError => "INTERNAL_ERROR",
            ErrorCode::NotImplemented => "NOT_IMPLEMENTED",
            ErrorCode::TemporarilyUnavailable => "TEMPORARILY_UNAVAILABLE",
        }
    }

    /// The HTTP status MLflow's server sends with this code (`mlflow/exceptions.py`).
    /// Note that RESOURCE_ALREADY_EXISTS is 400, not 409: the client relies on it.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::InvalidParameterValue
            | ErrorCode::BadRequest
            | ErrorCode::MalformedRequest
            | ErrorCode::ResourceAlreadyExists => 400,
            ErrorCode::Unauthenticated => 401,
            ErrorCode::PermissionDenied => 403,
            ErrorCode::ResourceDoesNotExist | ErrorCode::EndpointNotFound => 404,
            ErrorCode::ResourceConflict => 409,
            ErrorCode::RequestLimitExceeded => 429,
            ErrorCode::InternalError => 500,
            ErrorCode::NotImplemented => 501,
            ErrorCode::TemporarilyUnavailable => 503,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn already_exists_is_400_as_the_client_expects() {
        assert_eq!(ErrorCode::ResourceAlreadyExists.http_status(), 400);
        assert_eq!(ErrorCode::ResourceDoesNotExist.http_status(), 404);
        assert_eq!(
            serde_json::to_string(&ErrorCode::ResourceDoesNotExist).unwrap(),
            "\"RESOURCE_DOES_NOT_EXIST\""
        );
    }
}
