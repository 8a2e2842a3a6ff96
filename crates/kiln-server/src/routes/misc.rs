//! Health, version, server-info and the JSON 404.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use kiln_core::ErrorCode;
use serde_json::json;

use crate::error::ApiError;
use crate::{AppState, MLFLOW_COMPAT_VERSION};

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/health", get(health))
        .route("/version", get(version))
}

pub fn api_routes() -> Router<Arc<AppState>> {
    Router::new().route("/server-info", get(server_info))
}

/// `OK` while the server can take writes; 503 once its store writer has stopped.
async fn health(State(s): State<Arc<AppState>>) -> impl IntoResponse {
    let plain = [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];
    if s.store.db().writer_alive() {
        (StatusCode::OK, plain, "OK")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            plain,
            "store writer stopped",
        )
    }
}

async fn version(State(s): State<Arc<AppState>>) -> impl IntoResponse {
    (
        [
            (
                header::CONTENT_TYPE,
                "text/plain; charset=utf-8".to_string(),
            ),
            (
                header::HeaderName::from_static("x-kiln-version"),
                s.kiln_version.clone(),
            ),
        ],
        MLFLOW_COMPAT_VERSION,
    )
}

/// Capabilities, no secrets: what a client may ask of this server.
async fn server_info(State(s): State<Arc<AppState>>) -> impl IntoResponse {
    Json(json!({
        "server": "kiln",
        "kiln_version": s.kiln_version,
        "mlflow_version": MLFLOW_COMPAT_VERSION,
        "store_type": "SqlStore",
        "store_backend": s.store_kind,
        "workspaces_enabled": false,
        "multipart_uploads_enabled": false,
        "serve_artifacts": true,
    }))
}

pub async fn not_found(uri: axum::http::Uri) -> impl IntoResponse {
    let err = ApiError::new(
        ErrorCode::EndpointNotFound,
        format!("No API endpoint found for '{}'", uri.path()),
    );
    debug_assert_eq!(err.code.http_status(), StatusCode::NOT_FOUND.as_u16());
    err
}
