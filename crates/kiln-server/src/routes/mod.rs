//! Route tables, one module per resource.

use std::sync::Arc;

use axum::Router;

use crate::AppState;

pub mod artifacts;
pub mod experiments;
pub mod misc;
pub mod runs;

/// The MLflow REST API under one prefix (`/api/2.0/mlflow`, its `/ajax-api` mirror, …).
pub fn api() -> Router<Arc<AppState>> {
    Router::new()
        .merge(experiments::routes())
        .merge(runs::routes())
        .merge(artifacts::run_listing())
        .merge(misc::api_routes())
}
