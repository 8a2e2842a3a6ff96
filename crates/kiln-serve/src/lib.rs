//! Kiln's data plane: serves loaded models over the Open Inference Protocol v2 (KServe /
//! Triton REST, JSON and binary tensors) and MLflow's scoring protocol, with dynamic
//! batching, admission control and Prometheus metrics.
//!
//! - [`oip`] and [`scoring`] (from `kiln-protocol`): the wire formats, OIP v2 JSON and
//!   binary tensors, and MLflow `/invocations` bodies.
//! - [`model`]: a loaded version (package or ONNX file) with its transform and queue;
//!   [`batch`]: the dynamic batcher; [`metrics`]: Prometheus series; [`server`]: the routes.
//! - [`traffic`]: several versions per name, the weighted split, shadows and pinning.
//! - [`predlog`]: the prediction log's hook: sampling, request ids, records for a sink.

pub mod batch;
pub mod metrics;
pub mod model;
pub mod predlog;
pub mod server;
pub mod traffic;

pub use kiln_protocol::{oip, scoring};
pub use server::{Loader, ServeState, router};

use std::future::Future;
use std::sync::Arc;

/// Serves `router(state)` on `listener` until `shutdown` completes, lets in-flight requests
/// finish, then drains every model's queue.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<ServeState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state.clone()))
        .with_graceful_shutdown(shutdown)
        .await?;
    tokio::task::spawn_blocking(move || state.drain())
        .await
        .map_err(std::io::Error::other)
}
