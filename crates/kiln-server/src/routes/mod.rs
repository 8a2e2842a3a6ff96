//! Route tables, one module per resource.

use std::sync::Arc;

use axum::Router;

use crate::AppState;

pub mod artifacts;
pub mod experiments;
pub mod logged_models;
pub mod misc;
pub mod monitoring;
pub mod registry;
pub mod releases;
pub mod runs;

/// The MLflow REST API under one prefix (`/api/2.0/mlflow`, its `/ajax-api` mirror, …).
pub fn api() -> Router<Arc<AppState>> {
    Router::new()
        .merge(experiments::routes())
        .merge(runs::routes())
        .merge(logged_models::routes())
        .merge(artifacts::run_listing())
        .merge(registry::routes())
        .merge(misc::api_routes())
}
