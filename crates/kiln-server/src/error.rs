//! The API edge's error type: an MLflow error code plus a message, rendered as
//! `{"error_code": ..., "message": ...}` with the code's HTTP status.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kiln_core::ErrorCode;
use kiln_store::StoreError;

#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::InvalidParameterValue, message)
    }

    pub fn missing(field: &str) -> ApiError {
        ApiError::invalid(format!(
            "Missing value for required parameter '{field}'. See the API docs for more \
             information about request parameters."
        ))
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        let code = match &e {
            StoreError::NotFound(_) => ErrorCode::ResourceDoesNotExist,
            StoreError::AlreadyExists(_) => ErrorCode::ResourceAlreadyExists,
            StoreError::Invalid(_) => ErrorCode::InvalidParameterValue,
            StoreError::Conflict(_) => ErrorCode::ResourceConflict,
            StoreError::Unavailable(_) => ErrorCode::TemporarilyUnavailable,
            StoreError::Artifacts(object_store::Error::NotFound { .. }) => {
                ErrorCode::ResourceDoesNotExist
            }
            StoreError::Database(_) | StoreError::Artifacts(_) | StoreError::Config(_) => {
                ErrorCode::InternalError
            }
        };
        let message = match code {
            // Internals are logged, not returned.
            ErrorCode::InternalError => {
                tracing::error!(error = %e, "internal error");
                "Internal error; see the server log".to_string()
            }
            ErrorCode::ResourceDoesNotExist => match &e {
                StoreError::Artifacts(_) => "Artifact not found".to_string(),
                _ => e.to_string(),
            },
            _ => e.to_string(),
        };
        ApiError { code, message }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::json!({
            "error_code": self.code.as_str(),
            "message": self.message,
        });
        (status, axum::Json(body)).into_response()
    }
}
