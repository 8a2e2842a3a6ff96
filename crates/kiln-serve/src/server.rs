//! The HTTP data plane: OIP v2 (KServe / Triton REST) and MLflow scoring routes over the
//! loaded models, admission control, and `/metrics`.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use kiln_ml::Tensor;
use serde_json::json;

use crate::batch::{BatchError, Timing};
use crate::metrics::Metrics;
use crate::model::ModelVersion;
use crate::{oip, scoring};

/// The MLflow version whose scoring protocol `/invocations` speaks (reported by `/version`).
pub const MLFLOW_VERSION: &str = "3.17.2";

/// Loads (again) a model the server was started with, for Triton's repository `load`:
/// returns the new version, or why it could not be loaded. Runs on a blocking thread.
pub trait Loader: Send + Sync {
    fn load(&self, name: &str) -> Result<ModelVersion, String>;
    /// The names this loader knows (loaded or not).
    fn names(&self) -> Vec<String>;
}

/// Shared state of the data plane.
pub struct ServeState {
    models: RwLock<BTreeMap<String, Arc<ModelVersion>>>,
    /// Reloads models for `/v2/repository/models/{m}/load`.
    pub loader: Option<Arc<dyn Loader>>,
    pub metrics: Metrics,
    /// Requests handled at once before new ones get 429.
    pub max_in_flight: usize,
    /// How long a request may wait for its batch before it is answered with a timeout.
    pub request_timeout: Duration,
    pub kiln_version: String,
}

impl ServeState {
    pub fn new(max_in_flight: usize, request_timeout: Duration, kiln_version: &str) -> ServeState {
        ServeState {
            models: RwLock::new(BTreeMap::new()),
            loader: None,
            metrics: Metrics::default(),
            max_in_flight,
            request_timeout,
            kiln_version: kiln_version.to_string(),
        }
    }

    /// Adds or replaces a model (the previous version finishes its queued requests).
    pub fn insert(&self, model: ModelVersion) -> Option<Arc<ModelVersion>> {
        self.models
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(model.name.clone(), Arc::new(model))
    }

    /// Removes a model; requests already holding it finish on it.
    pub fn remove(&self, name: &str) -> Option<Arc<ModelVersion>> {
        self.models
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name)
    }

    pub fn get(&self, name: &str) -> Option<Arc<ModelVersion>> {
        self.models
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    pub fn names(&self) -> Vec<String> {
        self.models
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    /// Stops every model's queue after the queued requests are answered.
    pub fn drain(&self) {
        let models: Vec<_> = self
            .models
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        for m in models {
            m.batcher.close();
        }
    }
}

pub fn router(state: Arc<ServeState>) -> Router {
    Router::new()
        .route("/v2", get(server_metadata))
        .route("/v2/health/live", get(live))
        .route("/v2/health/ready", get(ready))
        .route("/v2/models/{m}", get(model_metadata))
        .route("/v2/models/{m}/versions/{v}", get(model_metadata_v))
        .route("/v2/models/{m}/ready", get(model_ready))
        .route("/v2/models/{m}/versions/{v}/ready", get(model_ready_v))
        .route("/v2/models/{m}/config", get(model_config))
        .route("/v2/models/{m}/stats", get(model_stats))
        .route("/v2/models/{m}/versions/{v}/stats", get(model_stats_v))
        .route("/v2/models/{m}/infer", post(infer))
        .route("/v2/models/{m}/versions/{v}/infer", post(infer_v))
        .route("/v2/repository/index", post(repository_index))
        .route("/v2/repository/models/{m}/load", post(repository_load))
        .route("/v2/repository/models/{m}/unload", post(repository_unload))
        .route("/invocations", post(invocations))
        .route("/ping", get(ping))
        .route("/health", get(ping))
        .route("/version", get(mlflow_version))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .layer(tower_http::decompression::RequestDecompressionLayer::new())
        .layer(axum::middleware::from_fn(json_errors))
        .layer(tower_http::compression::CompressionLayer::new())
        .layer(axum::extract::DefaultBodyLimit::max(64 << 20))
        .with_state(state)
}

fn oip_error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": message.into() }))).into_response()
}

async fn not_found() -> Response {
    oip_error(StatusCode::NOT_FOUND, "no such endpoint")
}

async fn server_metadata(State(s): State<Arc<ServeState>>) -> Response {
    axum::Json(json!({
        "name": "kiln",
        "version": s.kiln_version,
        "extensions": ["binary_tensor_data", "statistics", "model_configuration", "model_repository"],
    }))
    .into_response()
}

async fn live() -> Response {
    axum::Json(json!({ "live": true })).into_response()
}

async fn ready(State(s): State<Arc<ServeState>>) -> Response {
    let ready = !s.names().is_empty();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(json!({ "ready": ready }))).into_response()
}

/// The model `m`, at version `v` when one is named.
fn find(s: &ServeState, m: &str, v: Option<&str>) -> Result<Arc<ModelVersion>, Box<Response>> {
    let Some(model) = s.get(m) else {
        return Err(Box::new(oip_error(
            StatusCode::NOT_FOUND,
            format!("unknown model `{m}`; loaded: {}", s.names().join(", ")),
        )));
    };
    if let Some(v) = v
        && v != model.version
    {
        return Err(Box::new(oip_error(
            StatusCode::NOT_FOUND,
            format!(
                "model `{m}` has no loaded version `{v}` (loaded: {})",
                model.version
            ),
        )));
    }
    Ok(model)
}

fn metadata(m: &ModelVersion) -> Response {
    let tensors = |specs: &[kiln_ml::TensorSpec]| {
        specs
            .iter()
            .map(|t| json!({"name": t.name, "datatype": t.datatype.as_oip(), "shape": t.shape}))
            .collect::<Vec<_>>()
    };
    axum::Json(json!({
        "name": m.name,
        "versions": [m.version],
        "platform": m.platform,
        "inputs": tensors(&m.inputs),
        "outputs": tensors(&m.outputs),
    }))
    .into_response()
}

async fn model_metadata(State(s): State<Arc<ServeState>>, Path(m): Path<String>) -> Response {
    find(&s, &m, None).map_or_else(|e| *e, |m| metadata(&m))
}

async fn model_metadata_v(
    State(s): State<Arc<ServeState>>,
    Path((m, v)): Path<(String, String)>,
) -> Response {
    find(&s, &m, Some(&v)).map_or_else(|e| *e, |m| metadata(&m))
}

async fn model_ready(State(s): State<Arc<ServeState>>, Path(m): Path<String>) -> Response {
    find(&s, &m, None).map_or_else(
        |e| *e,
        |m| axum::Json(json!({"name": m.name, "ready": true})).into_response(),
    )
}

async fn model_ready_v(
    State(s): State<Arc<ServeState>>,
    Path((m, v)): Path<(String, String)>,
) -> Response {
    find(&s, &m, Some(&v)).map_or_else(
        |e| *e,
        |m| axum::Json(json!({"name": m.name, "ready": true})).into_response(),
    )
}

/// Triton's repository index: every model the server knows, loaded or not.
async fn repository_index(State(s): State<Arc<ServeState>>) -> Response {
    let mut names = s.names();
    if let Some(l) = &s.loader {
        names.extend(l.names());
    }
    names.sort();
    names.dedup();
    let rows: Vec<_> = names
        .iter()
        .map(|n| match s.get(n) {
            Some(m) => json!({"name": n, "version": m.version, "state": "READY", "reason": ""}),
            None => json!({"name": n, "state": "UNAVAILABLE", "reason": "unloaded"}),
        })
        .collect();
    axum::Json(json!(rows)).into_response()
}

/// Loads a model again from where it came from and swaps it in: requests in flight finish
/// on the old version, new ones go to the new. A failed load keeps the old version.
async fn repository_load(State(s): State<Arc<ServeState>>, Path(m): Path<String>) -> Response {
    let Some(loader) = s.loader.clone() else {
        return oip_error(
            StatusCode::NOT_IMPLEMENTED,
            "this server has no model repository to load from",
        );
    };
    if !loader.names().contains(&m) {
        return oip_error(
            StatusCode::NOT_FOUND,
            format!(
                "unknown model `{m}`; the repository has: {}",
                loader.names().join(", ")
            ),
        );
    }
    let name = m.clone();
    let loaded = tokio::task::spawn_blocking(move || loader.load(&name)).await;
    match loaded {
        Ok(Ok(model)) => {
            let version = model.version.clone();
            let old = s.insert(model);
            tracing::info!(model = %m, %version, previous = ?old.as_ref().map(|o| o.version.clone()), "model loaded");
            axum::Json(json!({})).into_response()
        }
        Ok(Err(e)) => oip_error(
            StatusCode::BAD_REQUEST,
            format!("failed to load `{m}`, the loaded version stays: {e}"),
        ),
        Err(e) => oip_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the load stopped: {e}"),
        ),
    }
}

async fn repository_unload(State(s): State<Arc<ServeState>>, Path(m): Path<String>) -> Response {
    match s.remove(&m) {
        Some(_) => axum::Json(json!({})).into_response(),
        None => oip_error(StatusCode::NOT_FOUND, format!("model `{m}` is not loaded")),
    }
}

/// Triton's type names (`TYPE_FP32` …).
fn triton_type(t: kiln_ml::ElemType) -> &'static str {
    match t {
        kiln_ml::ElemType::Bool => "TYPE_BOOL",
        kiln_ml::ElemType::Int32 => "TYPE_INT32",
        kiln_ml::ElemType::Int64 => "TYPE_INT64",
        kiln_ml::ElemType::Fp32 => "TYPE_FP32",
        kiln_ml::ElemType::Fp64 => "TYPE_FP64",
        kiln_ml::ElemType::Bytes => "TYPE_STRING",
    }
}

/// Triton's model configuration (what perf_analyzer reads): with `max_batch_size` > 0 the
/// dims leave out the batch dimension.
async fn model_config(State(s): State<Arc<ServeState>>, Path(m): Path<String>) -> Response {
    let model = match find(&s, &m, None) {
        Ok(m) => m,
        Err(r) => return *r,
    };
    let tensors = |specs: &[kiln_ml::TensorSpec]| {
        specs
            .iter()
            .map(|t| {
                json!({"name": t.name, "data_type": triton_type(t.datatype),
                       "dims": t.shape.get(1..).unwrap_or(&[])})
            })
            .collect::<Vec<_>>()
    };
    axum::Json(json!({
        "name": model.name,
        "platform": model.platform,
        "backend": "kiln",
        "max_batch_size": model.batch.max_batch_rows,
        "input": tensors(&model.inputs),
        "output": tensors(&model.outputs),
        "dynamic_batching": {
            "max_queue_delay_microseconds": model.batch.max_delay.as_micros() as u64,
        },
        "instance_group": [{"count": model.batch.threads, "kind": "KIND_CPU"}],
        "version_policy": {"specific": {"versions": [model.version]}},
    }))
    .into_response()
}

fn stats(s: &ServeState, model: &ModelVersion) -> Response {
    let m = s.metrics.version(&model.name, &model.version);
    let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let b = &model.batcher.stats;
    let inferences = get(&m.inferences);
    let failures = get(&m.failures);
    let successes = get(&m.requests).saturating_sub(failures);
    axum::Json(json!({"model_stats": [{
        "name": model.name,
        "version": model.version,
        "last_inference": get(&m.last_inference_ms),
        "inference_count": get(&b.rows),
        "execution_count": get(&b.executions),
        "inference_stats": {
            "success": {"count": successes, "ns": get(&m.success_ns)},
            "fail": {"count": failures, "ns": get(&m.failure_ns)},
            "queue": {"count": inferences, "ns": get(&m.queue_ns)},
            "compute_input": {"count": inferences, "ns": 0},
            "compute_infer": {"count": inferences, "ns": get(&m.compute_ns)},
            "compute_output": {"count": inferences, "ns": 0},
        },
    }]}))
    .into_response()
}

async fn model_stats(State(s): State<Arc<ServeState>>, Path(m): Path<String>) -> Response {
    find(&s, &m, None).map_or_else(|e| *e, |model| stats(&s, &model))
}

async fn model_stats_v(
    State(s): State<Arc<ServeState>>,
    Path((m, v)): Path<(String, String)>,
) -> Response {
    find(&s, &m, Some(&v)).map_or_else(|e| *e, |model| stats(&s, &model))
}

/// Holds one in-flight slot; `None` when the server is over its bound.
struct Slot<'a>(&'a ServeState);

impl<'a> Slot<'a> {
    fn take(s: &'a ServeState) -> Option<Slot<'a>> {
        let n = s.metrics.in_flight.fetch_add(1, Ordering::AcqRel);
        if n as usize >= s.max_in_flight {
            s.metrics.in_flight.fetch_sub(1, Ordering::AcqRel);
            s.metrics.rejected.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(Slot(s))
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.metrics.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A 429 with `Retry-After: 1`.
fn busy(mut r: Response) -> Response {
    *r.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

/// Runs a request's tensors through the model's queue.
async fn predict(
    s: &ServeState,
    m: &ModelVersion,
    inputs: Vec<Tensor>,
) -> Result<(Vec<Tensor>, Timing), BatchError> {
    let rows = inputs
        .first()
        .and_then(|t| t.shape.first().copied())
        .unwrap_or(1);
    let started = Instant::now();
    let deadline = started + s.request_timeout;
    // The queue skips a request whose deadline passed; the timer answers one that is still
    // waiting when it does.
    match tokio::time::timeout(
        s.request_timeout,
        m.batcher.submit(inputs, rows, Some(deadline)),
    )
    .await
    {
        Ok(r) => r,
        Err(_) => Err(BatchError::Expired {
            waited_ms: started.elapsed().as_millis() as u64,
        }),
    }
}

fn batch_status(e: &BatchError) -> StatusCode {
    match e {
        BatchError::Full(_) => StatusCode::TOO_MANY_REQUESTS,
        BatchError::Expired { .. } => StatusCode::GATEWAY_TIMEOUT,
        BatchError::Closed => StatusCode::SERVICE_UNAVAILABLE,
        BatchError::Predict(_) => StatusCode::BAD_REQUEST,
    }
}

async fn infer(
    State(s): State<Arc<ServeState>>,
    Path(m): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    infer_inner(&s, &m, None, &headers, &body).await
}

async fn infer_v(
    State(s): State<Arc<ServeState>>,
    Path((m, v)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    infer_inner(&s, &m, Some(&v), &headers, &body).await
}

async fn infer_inner(
    s: &ServeState,
    m: &str,
    v: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let started = Instant::now();
    let model = match find(s, m, v) {
        Ok(m) => m,
        Err(r) => return *r,
    };
    let series = s.metrics.version(&model.name, &model.version);
    let Some(_slot) = Slot::take(s) else {
        return busy(oip_error(
            StatusCode::TOO_MANY_REQUESTS,
            format!("over {} requests in flight; retry shortly", s.max_in_flight),
        ));
    };
    let header_len = headers
        .get("inference-header-content-length")
        .and_then(|v| v.to_str().ok());
    let req = match oip::decode_request(body, header_len, &model.inputs) {
        Ok(r) => r,
        Err(e) => {
            series.request(started.elapsed(), false);
            let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
            return oip_error(status, e.to_string());
        }
    };
    if let Err(e) = oip::check_outputs(&req, &model.outputs) {
        series.request(started.elapsed(), false);
        return oip_error(StatusCode::BAD_REQUEST, e.to_string());
    }
    let inputs = req.inputs.clone();
    let (outputs, timing) = match predict(s, &model, inputs).await {
        Ok(x) => x,
        Err(e) => {
            series.request(started.elapsed(), false);
            let status = batch_status(&e);
            let r = oip_error(status, e.to_string());
            return if status == StatusCode::TOO_MANY_REQUESTS {
                busy(r)
            } else {
                r
            };
        }
    };
    series.inference(timing.queue, timing.compute, timing.batch_rows);
    let encoded = oip::encode_response(
        &model.name,
        Some(&model.version),
        req.id.as_deref(),
        &outputs,
        &req,
    );
    match encoded {
        Ok((bytes, header_len)) => {
            series.request(started.elapsed(), true);
            let mut r = (StatusCode::OK, bytes).into_response();
            let h = r.headers_mut();
            match header_len {
                Some(n) => {
                    h.insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/octet-stream"),
                    );
                    if let Ok(v) = HeaderValue::from_str(&n.to_string()) {
                        h.insert("inference-header-content-length", v);
                    }
                }
                None => {
                    h.insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    );
                }
            }
            r
        }
        Err(e) => {
            series.request(started.elapsed(), false);
            oip_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        }
    }
}

#[derive(serde::Deserialize)]
struct InvocationQuery {
    model: Option<String>,
}

/// MLflow's error code for a status.
fn mlflow_code(status: StatusCode) -> &'static str {
    match status.as_u16() {
        404 => "RESOURCE_DOES_NOT_EXIST",
        429 => "REQUEST_LIMIT_EXCEEDED",
        503 => "TEMPORARILY_UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        500..=599 => "INTERNAL_ERROR",
        _ => "BAD_REQUEST",
    }
}

fn scoring_error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        axum::Json(json!({"error_code": mlflow_code(status), "message": message.into()})),
    )
        .into_response()
}

/// Errors produced outside the handlers (a body that does not decompress, an unsupported
/// `Content-Encoding`) in the route's own JSON error shape.
async fn json_errors(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let scoring = req.uri().path() == "/invocations";
    let r = next.run(req).await;
    let status = r.status();
    let is_json = r
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return r;
    }
    let retry = r.headers().get(header::RETRY_AFTER).cloned();
    let bytes = axum::body::to_bytes(r.into_body(), 64 << 10)
        .await
        .unwrap_or_default();
    let mut text = String::from_utf8_lossy(&bytes).trim().to_string();
    if text.is_empty() {
        text = match status {
            StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                "unsupported Content-Encoding; send identity or gzip".to_string()
            }
            s => s.canonical_reason().unwrap_or("error").to_string(),
        };
    }
    let mut out = if scoring {
        scoring_error(status, text)
    } else {
        oip_error(status, text)
    };
    if let Some(v) = retry {
        out.headers_mut().insert(header::RETRY_AFTER, v);
    }
    out
}

/// MLflow's `/invocations`: the only loaded model, or the one named by `?model=` or the
/// `X-Kiln-Model` header.
async fn invocations(
    State(s): State<Arc<ServeState>>,
    Query(q): Query<InvocationQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    let named = q.model.or_else(|| {
        headers
            .get("x-kiln-model")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    });
    let model = match &named {
        Some(n) => s.get(n),
        None => {
            let names = s.names();
            if names.len() == 1 {
                s.get(&names[0])
            } else {
                return scoring_error(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "several models are loaded ({}); name one with ?model=NAME or the \
                         X-Kiln-Model header",
                        names.join(", ")
                    ),
                );
            }
        }
    };
    let Some(model) = model else {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"error_code": "RESOURCE_DOES_NOT_EXIST",
                              "message": format!("unknown model `{}`; loaded: {}",
                                                 named.as_deref().unwrap_or(""),
                                                 s.names().join(", "))})),
        )
            .into_response();
    };
    let series = s.metrics.version(&model.name, &model.version);
    let Some(_slot) = Slot::take(&s) else {
        return busy(scoring_error(
            StatusCode::TOO_MANY_REQUESTS,
            format!("over {} requests in flight; retry shortly", s.max_in_flight),
        ));
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let wants = if model.transform.is_some() {
        scoring::ModelInputs::Columns(model.raw_inputs())
    } else {
        scoring::ModelInputs::Tensors(&model.inputs)
    };
    let batch = match scoring::decode(content_type, &body, wants) {
        Ok(b) => b,
        Err(e) => {
            series.request(started.elapsed(), false);
            let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
            return (
                status,
                [(header::CONTENT_TYPE, "application/json")],
                e.to_json(),
            )
                .into_response();
        }
    };
    let inputs = match batch {
        scoring::Batch::Tensors(t) => t,
        scoring::Batch::Rows { rows } => match model.encode_rows(&rows) {
            Ok(t) => vec![t],
            Err(e) => {
                series.request(started.elapsed(), false);
                return scoring_error(StatusCode::BAD_REQUEST, e);
            }
        },
    };
    let (outputs, timing) = match predict(&s, &model, inputs).await {
        Ok(x) => x,
        Err(e) => {
            series.request(started.elapsed(), false);
            let status = batch_status(&e);
            let r = scoring_error(status, e.to_string());
            return if status == StatusCode::TOO_MANY_REQUESTS {
                busy(r)
            } else {
                r
            };
        }
    };
    series.inference(timing.queue, timing.compute, timing.batch_rows);
    match scoring::encode_predictions(&outputs) {
        Ok(bytes) => {
            series.request(started.elapsed(), true);
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                bytes,
            )
                .into_response()
        }
        Err(e) => {
            series.request(started.elapsed(), false);
            scoring_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        }
    }
}

async fn ping(State(s): State<Arc<ServeState>>) -> Response {
    if s.names().is_empty() {
        return (StatusCode::SERVICE_UNAVAILABLE, "no model loaded\n").into_response();
    }
    (StatusCode::OK, "\n").into_response()
}

async fn mlflow_version() -> Response {
    (StatusCode::OK, MLFLOW_VERSION).into_response()
}

async fn metrics(State(s): State<Arc<ServeState>>) -> Response {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.render(),
    )
        .into_response()
}
