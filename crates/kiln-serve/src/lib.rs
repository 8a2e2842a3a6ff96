//! Kiln's data plane: serves loaded models over the Open Inference Protocol v2 (KServe /
//! Triton REST, JSON and binary tensors) and MLflow's scoring protocol, with dynamic
//! batching, admission control and Prometheus metrics.
//!
//! - [`oip`]: decoding and encoding OIP v2 infer requests and responses (JSON and the
//!   binary tensor extension), checked against a model's inputs.
//! - [`model`]: a loaded version (package or ONNX file) with its transform and queue;
//!   [`batch`]: the dynamic batcher; [`metrics`]: Prometheus series; [`server`]: the routes.
//! - [`scoring`]: decoding MLflow `/invocations` bodies (`dataframe_split`,
//!   `dataframe_records`, `instances`, `inputs`, CSV) into named columns or tensors.

pub mod batch;
pub mod metrics;
pub mod model;
pub mod oip;
pub mod scoring;
pub mod server;

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
