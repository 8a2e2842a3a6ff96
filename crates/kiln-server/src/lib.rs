//! Kiln's control plane: the MLflow-compatible tracking and registry API over HTTP.
//!
//! [`router`] builds the one application used by production and tests alike; [`serve`]
//! runs it on a bound listener until a shutdown signal, then drains in-flight requests.

pub mod error;
pub mod extract;
pub mod release;
mod routes;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use kiln_store::{ArtifactStore, Store};
use tokio::net::TcpListener;

/// The MLflow version whose client protocol Kiln speaks, reported by `/version`.
pub const MLFLOW_COMPAT_VERSION: &str = "3.17.2";

/// Requests handled at once; each may hold a JSON body of up to 16 MiB or an upload's
/// part buffers.
pub const MAX_CONCURRENT_REQUESTS: usize = 256;

/// Shared state of every handler.
pub struct AppState {
    pub store: Store,
    pub artifacts: ArtifactStore,
    /// Kiln's own version, reported in `server-info` and a response header.
    pub kiln_version: String,
    /// Which metadata backend is in use ("sqlite" or "postgresql"), for `server-info`.
    pub store_kind: String,
    /// Release gates, the admin token and the moves in progress.
    pub releases: release::Releases,
}

/// The whole HTTP application.
pub fn router(state: Arc<AppState>) -> Router {
    let api = routes::api();
    Router::new()
        .nest("/api/2.0/mlflow", api.clone())
        .nest("/ajax-api/2.0/mlflow", api.clone())
        .nest("/api/3.0/mlflow", api.clone())
        .nest("/ajax-api/3.0/mlflow", api)
        .nest("/api/2.0/mlflow-artifacts", routes::artifacts::proxy())
        .nest("/ajax-api/2.0/mlflow-artifacts", routes::artifacts::proxy())
        .nest(
            "/api/kiln",
            routes::releases::routes().merge(routes::monitoring::routes()),
        )
        .merge(routes::misc::routes())
        .fallback(routes::misc::not_found)
        .layer(DefaultBodyLimit::max(extract::MAX_JSON_BODY))
        // Bounds memory under overload: requests beyond this wait for a slot.
        .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
            MAX_CONCURRENT_REQUESTS,
        ))
        .layer(tower_http::decompression::RequestDecompressionLayer::new())
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

/// Serves `router(state)` on `listener` until `shutdown` completes, then lets in-flight
/// requests finish.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}
