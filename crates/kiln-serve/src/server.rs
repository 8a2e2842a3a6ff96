//! The HTTP data plane: OIP v2 (KServe / Triton REST) and MLflow scoring routes over the
//! loaded models, admission control, and `/metrics`.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use kiln_ml::Tensor;
use serde_json::json;

use crate::batch::{Answer, BatchError};
use crate::metrics::Metrics;
use crate::model::ModelVersion;
use crate::traffic::{Endpoint, RouteError, TrafficSpec};
use crate::{oip, scoring};

/// The MLflow version whose scoring protocol `/invocations` speaks (reported by `/version`).
pub const MLFLOW_VERSION: &str = "3.17.2";

/// Loads (again) a model the server was started with, for Triton's repository `load`:
/// returns the next version of each of the name's slots, in slot order (see
/// [`Endpoint`]), or why they could not be loaded. Runs on a blocking thread.
pub trait Loader: Send + Sync {
    fn load(&self, name: &str) -> Result<Vec<ModelVersion>, String>;
    /// The names this loader knows (loaded or not).
    fn names(&self) -> Vec<String>;
}

/// Shared state of the data plane.
pub struct ServeState {
    models: RwLock<BTreeMap<String, Arc<Endpoint>>>,
    /// The last split and shadows set for each name, with the versions in slot order at the
    /// time, re-applied slot by slot when the name is loaded again after an unload (its
    /// versions may have new numbers then).
    traffic_set: RwLock<BTreeMap<String, (Vec<String>, TrafficSpec)>>,
    /// Reloads models for `/v2/repository/models/{m}/load`.
    pub loader: Option<Arc<dyn Loader>>,
    pub metrics: Metrics,
    /// Requests handled at once before new ones get 429.
    pub max_in_flight: usize,
    /// How long a request may wait for its batch before it is answered with a timeout.
    pub request_timeout: Duration,
    pub kiln_version: String,
    /// When set, changing the model set or the traffic (repository load/unload, the traffic
    /// API) needs `Authorization: Bearer <token>`.
    pub admin_token: Option<String>,
    /// Models that refuse NaN and infinite inputs (a 400 naming the element) instead of
    /// passing them to the predictor as missing values.
    pub refuse_nan: std::collections::BTreeSet<String>,
    /// Largest request body accepted (after decompression); larger ones get 413.
    pub max_body_bytes: usize,
    /// The sampled prediction log, when one is configured.
    pub prediction_log: Option<crate::predlog::PredictionLog>,
}

impl ServeState {
    pub fn new(max_in_flight: usize, request_timeout: Duration, kiln_version: &str) -> ServeState {
        ServeState {
            models: RwLock::new(BTreeMap::new()),
            traffic_set: RwLock::new(BTreeMap::new()),
            loader: None,
            metrics: Metrics::default(),
            max_in_flight,
            request_timeout,
            kiln_version: kiln_version.to_string(),
            admin_token: None,
            refuse_nan: Default::default(),
            max_body_bytes: 64 << 20,
            prediction_log: None,
        }
    }

    /// Adds a version under its name: the first version of a name takes all traffic, later
    /// ones none until [`set_traffic`](Self::set_traffic) gives them a share.
    pub fn add(&self, model: ModelVersion) -> Result<(), String> {
        let mut models = self.models.write().unwrap_or_else(|p| p.into_inner());
        let next = match models.get(&model.name) {
            Some(e) => {
                if e.version(&model.version).is_some() {
                    return Err(format!(
                        "model `{}` already has a version `{}`",
                        model.name, model.version
                    ));
                }
                e.with_version(model)
            }
            None => Endpoint::single(model),
        };
        models.insert(next.name.clone(), Arc::new(next));
        Ok(())
    }

    /// Replaces a name's versions with their next ones (one per slot) keeping the split, or
    /// serves them afresh (the first taking all traffic) when the name was not loaded.
    /// Requests in flight finish on the versions they hold.
    pub fn reload(&self, name: &str, versions: Vec<ModelVersion>) -> Result<(), String> {
        if versions.is_empty() {
            return Err(format!("no version of `{name}` to serve"));
        }
        let mut models = self.models.write().unwrap_or_else(|p| p.into_inner());
        let next = match models.get(name) {
            // A canary added a slot the loader does not know: the reload replaces them all.
            Some(e) if e.versions().len() != versions.len() => e
                .replaced(versions)
                .ok_or_else(|| format!("no version of `{name}` to serve"))?,
            Some(e) => e.reloaded(versions)?,
            None => {
                let mut it = versions.into_iter();
                let mut e = Endpoint::single(it.next().expect("not empty"));
                for v in it {
                    e = e.with_version(v);
                }
                let set = self.traffic_set.read().unwrap_or_else(|p| p.into_inner());
                let now = e.versions();
                let by_slot = set.get(name).map(|(then, spec)| {
                    let relabel = |v: &String| {
                        then.iter()
                            .position(|t| t == v)
                            .and_then(|i| now.get(i))
                            .cloned()
                            .unwrap_or_else(|| v.clone())
                    };
                    let spec = if then.len() == now.len() {
                        TrafficSpec {
                            weights: spec.weights.iter().map(|(v, w)| (relabel(v), *w)).collect(),
                            shadow: spec.shadow.iter().map(relabel).collect(),
                        }
                    } else {
                        spec.clone()
                    };
                    e.with_traffic(&spec)
                });
                match by_slot {
                    Some(Ok(with)) => with,
                    Some(Err(why)) => {
                        tracing::warn!(model = %name, %why, "the traffic set before the unload no longer applies; the first version takes all traffic");
                        e
                    }
                    None => e,
                }
            }
        };
        models.insert(name.to_string(), Arc::new(next));
        Ok(())
    }

    /// Starts a canary: `versions` (exactly one, what the loader now resolves the name to)
    /// beside the name's current primary version, at `percent` of the traffic. The same
    /// version as the primary is a plain reload.
    pub fn start_canary(
        &self,
        name: &str,
        mut versions: Vec<ModelVersion>,
        percent: u32,
    ) -> Result<(), String> {
        if !(1..=99).contains(&percent) {
            return Err(format!(
                "a canary's share is from 1 to 99 percent, not {percent}"
            ));
        }
        if versions.len() != 1 {
            return Err(format!(
                "a canary needs the name to resolve to one version; `{name}` resolves to {}",
                versions.len()
            ));
        }
        let same = self
            .endpoint(name)
            .is_some_and(|e| e.primary().version == versions[0].version);
        if same {
            return self.reload(name, versions);
        }
        let mut models = self.models.write().unwrap_or_else(|p| p.into_inner());
        let Some(e) = models.get(name) else {
            return Err(format!("model `{name}` is not loaded"));
        };
        let next = e.canary(versions.remove(0), percent);
        let (slots, spec) = (next.versions(), next.traffic());
        models.insert(name.to_string(), Arc::new(next));
        self.traffic_set
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), (slots, spec));
        Ok(())
    }

    /// Sets a name's split and shadows.
    pub fn set_traffic(&self, name: &str, spec: &TrafficSpec) -> Result<TrafficSpec, String> {
        let mut models = self.models.write().unwrap_or_else(|p| p.into_inner());
        let Some(e) = models.get(name) else {
            return Err(format!("model `{name}` is not loaded"));
        };
        let next = e.with_traffic(spec)?;
        let out = next.traffic();
        let slots = next.versions();
        models.insert(name.to_string(), Arc::new(next));
        self.traffic_set
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), (slots, out.clone()));
        Ok(out)
    }

    /// Removes a model; requests already holding it finish on it.
    pub fn remove(&self, name: &str) -> Option<Arc<Endpoint>> {
        self.models
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name)
    }

    pub fn endpoint(&self, name: &str) -> Option<Arc<Endpoint>> {
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

    /// Stops every version's queue after the queued requests are answered.
    pub fn drain(&self) {
        let models: Vec<_> = self
            .models
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        for e in models {
            for slot in &e.slots {
                slot.model.batcher.close();
            }
        }
    }
}

pub fn router(state: Arc<ServeState>) -> Router {
    let max_body = state.max_body_bytes;
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
        .route(
            "/api/kiln/serve/models/{m}/traffic",
            get(get_traffic).put(put_traffic),
        )
        .fallback(not_found)
        .layer(tower_http::decompression::RequestDecompressionLayer::new())
        .layer(axum::middleware::from_fn(json_errors))
        .layer(tower_http::compression::CompressionLayer::new())
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn_with_state(
            max_body,
            read_whole_body,
        ))
        .with_state(state)
}

/// How long an over-limit body is still read (and thrown away) so the client, which may still be
/// sending, sees the 413 instead of a reset connection (nginx's "lingering close").
const LINGER: Duration = Duration::from_secs(5);

/// Reads each request body as sent, up to `max` bytes, before routing. A body over the limit is
/// read to its end (within [`LINGER`]) and discarded, then answered with 413: answering while
/// the client is still writing would make the kernel reset the connection and the client would
/// never see the status. The limit after decompression is `DefaultBodyLimit`'s.
async fn read_whole_body(
    State(max): State<usize>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    use axum::body::{Body, HttpBody};
    let (parts, mut body) = req.into_parts();
    if body.is_end_stream() {
        return next
            .run(axum::extract::Request::from_parts(parts, body))
            .await;
    }
    let scoring = parts.uri.path() == "/invocations";
    let too_large = || {
        let msg = format!("request body is larger than the limit of {max} bytes");
        if scoring {
            scoring_error(StatusCode::PAYLOAD_TOO_LARGE, msg)
        } else {
            oip_error(StatusCode::PAYLOAD_TOO_LARGE, msg)
        }
    };
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    // Usually one chunk, kept as it came; several are joined once at the end.
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut total = 0usize;
    let mut over = declared.is_some_and(|n| n > max as u64);
    let deadline = tokio::time::Instant::now() + LINGER;
    loop {
        let frame = std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx));
        let frame = if over {
            match tokio::time::timeout_at(deadline, frame).await {
                Ok(f) => f,
                Err(_) => break,
            }
        } else {
            frame.await
        };
        match frame {
            None => break,
            Some(Err(e)) => {
                if over {
                    break;
                }
                let msg = format!("could not read the request body: {e}");
                return if scoring {
                    scoring_error(StatusCode::BAD_REQUEST, msg)
                } else {
                    oip_error(StatusCode::BAD_REQUEST, msg)
                };
            }
            Some(Ok(f)) => {
                if let Ok(data) = f.into_data() {
                    total = total.saturating_add(data.len());
                    if !over && total > max {
                        over = true;
                        chunks = Vec::new();
                    }
                    if !over && !data.is_empty() {
                        chunks.push(data);
                    }
                }
            }
        }
    }
    if over {
        let mut r = too_large();
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return r;
    }
    let whole = if chunks.len() == 1 {
        chunks.pop().unwrap_or_default()
    } else {
        Bytes::from(chunks.concat())
    };
    next.run(axum::extract::Request::from_parts(parts, Body::from(whole)))
        .await
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

fn unknown_model(s: &ServeState, m: &str) -> Box<Response> {
    Box::new(oip_error(
        StatusCode::NOT_FOUND,
        format!("unknown model `{m}`; loaded: {}", s.names().join(", ")),
    ))
}

/// The model `m`: its version `v` when one is named, else the one with the largest share.
fn find(
    s: &ServeState,
    m: &str,
    v: Option<&str>,
) -> Result<(Arc<Endpoint>, Arc<ModelVersion>), Box<Response>> {
    let Some(e) = s.endpoint(m) else {
        return Err(unknown_model(s, m));
    };
    let model = match v {
        Some(v) => match e.version(v) {
            Some(model) => model.clone(),
            None => {
                return Err(Box::new(oip_error(
                    StatusCode::NOT_FOUND,
                    format!(
                        "model `{m}` has no loaded version `{v}` (loaded: {})",
                        e.versions().join(", ")
                    ),
                )));
            }
        },
        None => e.primary().clone(),
    };
    Ok((e, model))
}

fn metadata(m: &ModelVersion, versions: Vec<String>) -> Response {
    let tensors = |specs: &[kiln_ml::TensorSpec]| {
        specs
            .iter()
            .map(|t| json!({"name": t.name, "datatype": t.datatype.as_oip(), "shape": t.shape}))
            .collect::<Vec<_>>()
    };
    axum::Json(json!({
        "name": m.name,
        "versions": versions,
        "platform": m.platform,
        "inputs": tensors(&m.inputs),
        "outputs": tensors(&m.outputs),
    }))
    .into_response()
}

async fn model_metadata(State(s): State<Arc<ServeState>>, Path(m): Path<String>) -> Response {
    find(&s, &m, None).map_or_else(|e| *e, |(e, m)| metadata(&m, e.versions()))
}

async fn model_metadata_v(
    State(s): State<Arc<ServeState>>,
    Path((m, v)): Path<(String, String)>,
) -> Response {
    find(&s, &m, Some(&v)).map_or_else(|e| *e, |(_, m)| metadata(&m, vec![m.version.clone()]))
}

async fn model_ready(State(s): State<Arc<ServeState>>, Path(m): Path<String>) -> Response {
    find(&s, &m, None).map_or_else(
        |e| *e,
        |(_, m)| axum::Json(json!({"name": m.name, "ready": true})).into_response(),
    )
}

async fn model_ready_v(
    State(s): State<Arc<ServeState>>,
    Path((m, v)): Path<(String, String)>,
) -> Response {
    find(&s, &m, Some(&v)).map_or_else(
        |e| *e,
        |(_, m)| {
            axum::Json(json!({"name": m.name, "version": m.version, "ready": true})).into_response()
        },
    )
}

/// Whether a request may change the model set or the traffic.
fn admin_denied(s: &ServeState, headers: &HeaderMap) -> Option<Response> {
    let token = s.admin_token.as_deref()?;
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if given == Some(token) {
        return None;
    }
    let mut r = oip_error(
        StatusCode::UNAUTHORIZED,
        "changing models or traffic needs the admin token (Authorization: Bearer …)",
    );
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"kiln\""),
    );
    Some(r)
}

fn traffic_json(s: &ServeState, e: &Endpoint) -> Response {
    let spec = e.traffic();
    let shadows: serde_json::Map<String, serde_json::Value> = spec
        .shadow
        .iter()
        .filter_map(|v| {
            s.metrics
                .shadow_if_any(&e.name, v)
                .map(|m| (v.clone(), m.to_json()))
        })
        .collect();
    axum::Json(json!({
        "model": e.name,
        "versions": e.versions(),
        "weights": spec.weights,
        "shadow": spec.shadow,
        "shadow_stats": shadows,
    }))
    .into_response()
}

/// The split, shadows and shadow divergence of a model.
async fn get_traffic(State(s): State<Arc<ServeState>>, Path(m): Path<String>) -> Response {
    match s.endpoint(&m) {
        Some(e) => traffic_json(&s, &e),
        None => *unknown_model(&s, &m),
    }
}

/// Sets the split and shadows of a model: `{"weights": {"3": 90, "4": 10}, "shadow": ["5"]}`.
async fn put_traffic(
    State(s): State<Arc<ServeState>>,
    Path(m): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(r) = admin_denied(&s, &headers) {
        return r;
    }
    let spec: TrafficSpec = match serde_json::from_slice(&body) {
        Ok(t) => t,
        Err(e) => {
            return oip_error(
                StatusCode::BAD_REQUEST,
                format!(
                    "traffic: {e}; expected {{\"weights\": {{\"VERSION\": WEIGHT, …}}, \"shadow\": [\"VERSION\", …]}}"
                ),
            );
        }
    };
    if s.endpoint(&m).is_none() {
        return *unknown_model(&s, &m);
    }
    match s.set_traffic(&m, &spec) {
        Ok(t) => {
            tracing::info!(model = %m, weights = ?t.weights, shadow = ?t.shadow, "traffic changed");
            match s.endpoint(&m) {
                Some(e) => traffic_json(&s, &e),
                None => *unknown_model(&s, &m),
            }
        }
        Err(e) => oip_error(StatusCode::BAD_REQUEST, e),
    }
}

/// Triton's repository index: every version the server has loaded, and the names it could
/// load.
async fn repository_index(State(s): State<Arc<ServeState>>) -> Response {
    let mut names = s.names();
    if let Some(l) = &s.loader {
        names.extend(l.names());
    }
    names.sort();
    names.dedup();
    let mut rows = vec![];
    for n in &names {
        match s.endpoint(n) {
            Some(e) => rows.extend(
                e.versions()
                    .into_iter()
                    .map(|v| json!({"name": n, "version": v, "state": "READY", "reason": ""})),
            ),
            None => rows.push(json!({"name": n, "state": "UNAVAILABLE", "reason": "unloaded"})),
        }
    }
    axum::Json(json!(rows)).into_response()
}

/// Loads a model again from where it came from and swaps it in: requests in flight finish
/// on the old versions, new ones go to the new. A failed load keeps the old versions.
async fn repository_load(
    State(s): State<Arc<ServeState>>,
    Path(m): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(r) = admin_denied(&s, &headers) {
        return r;
    }
    // Kiln's extension of the load request: `{"parameters": {"kiln_canary_percent": 10}}`
    // keeps the current primary version and runs what the name now resolves to beside it.
    let canary = match canary_percent(&body) {
        Ok(c) => c,
        Err(e) => return oip_error(StatusCode::BAD_REQUEST, e),
    };
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
    let failed = |e: String| {
        oip_error(
            StatusCode::BAD_REQUEST,
            format!("failed to load `{m}`, the loaded versions stay: {e}"),
        )
    };
    match loaded {
        Ok(Ok(versions)) => {
            let labels: Vec<String> = versions.iter().map(|v| v.version.clone()).collect();
            let old = s.endpoint(&m).map(|e| e.versions());
            let done = match canary {
                Some(p) if old.is_some() => s.start_canary(&m, versions, p),
                _ => s.reload(&m, versions),
            };
            match done {
                Ok(()) => {
                    tracing::info!(model = %m, versions = ?labels, previous = ?old, "model loaded");
                    axum::Json(json!({})).into_response()
                }
                Err(e) => failed(e),
            }
        }
        Ok(Err(e)) => failed(e),
        Err(e) => oip_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the load stopped: {e}"),
        ),
    }
}

/// `parameters.kiln_canary_percent` of a load request, if given (an empty body has none).
fn canary_percent(body: &[u8]) -> Result<Option<u32>, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("the load request is not JSON: {e}"))?;
    match v
        .get("parameters")
        .and_then(|p| p.get("kiln_canary_percent"))
    {
        None => Ok(None),
        Some(p) => match p.as_u64().filter(|p| (1..=99).contains(p)) {
            Some(p) => Ok(Some(p as u32)),
            None => Err(format!(
                "parameters.kiln_canary_percent = {p}: expected a whole number from 1 to 99"
            )),
        },
    }
}

async fn repository_unload(
    State(s): State<Arc<ServeState>>,
    Path(m): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = admin_denied(&s, &headers) {
        return r;
    }
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
    let (endpoint, model) = match find(&s, &m, None) {
        Ok(x) => x,
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
        "version_policy": {"specific": {"versions": endpoint.versions()}},
    }))
    .into_response()
}

fn stats(s: &ServeState, models: &[&ModelVersion]) -> Response {
    let rows: Vec<_> = models.iter().map(|model| version_stats(s, model)).collect();
    axum::Json(json!({ "model_stats": rows })).into_response()
}

fn version_stats(s: &ServeState, model: &ModelVersion) -> serde_json::Value {
    let m = s.metrics.version(&model.name, &model.version);
    let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let b = &model.batcher.stats;
    let inferences = get(&m.inferences);
    let failures = get(&m.failures);
    let successes = get(&m.requests).saturating_sub(failures);
    json!({
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
    })
}

/// Triton's statistics: every loaded version of the model.
async fn model_stats(State(s): State<Arc<ServeState>>, Path(m): Path<String>) -> Response {
    match s.endpoint(&m) {
        Some(e) => {
            let models: Vec<&ModelVersion> = e.slots.iter().map(|x| &*x.model).collect();
            stats(&s, &models)
        }
        None => *unknown_model(&s, &m),
    }
}

async fn model_stats_v(
    State(s): State<Arc<ServeState>>,
    Path((m, v)): Path<(String, String)>,
) -> Response {
    find(&s, &m, Some(&v)).map_or_else(|e| *e, |(_, model)| stats(&s, &[&model]))
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
) -> Result<Answer, BatchError> {
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
    infer_inner(&s, &m, None, &headers, body).await
}

async fn infer_v(
    State(s): State<Arc<ServeState>>,
    Path((m, v)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    infer_inner(&s, &m, Some(&v), &headers, body).await
}

/// The header that pins a request to one version (and, on answers, names the version that
/// answered).
pub const VERSION_HEADER: &str = "x-kiln-version";

fn pinned(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(VERSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

fn route_status(e: &RouteError) -> StatusCode {
    match e {
        RouteError::NoSuchVersion { .. } => StatusCode::NOT_FOUND,
        RouteError::NoTraffic => StatusCode::SERVICE_UNAVAILABLE,
    }
}

fn with_version(mut r: Response, version: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(version) {
        r.headers_mut().insert(VERSION_HEADER, v);
    }
    r
}

/// For a model that refuses them: the first NaN or infinite input element, named by tensor,
/// row and column.
fn refused_non_finite(s: &ServeState, model: &ModelVersion, inputs: &[Tensor]) -> Option<String> {
    if !s.refuse_nan.contains(&model.name) {
        return None;
    }
    for t in inputs {
        let at = match &t.data {
            kiln_ml::TensorData::Fp32(v) => v
                .iter()
                .position(|x| !x.is_finite())
                .map(|i| (i, f64::from(v[i]))),
            kiln_ml::TensorData::Fp64(v) => {
                v.iter().position(|x| !x.is_finite()).map(|i| (i, v[i]))
            }
            _ => None,
        };
        if let Some((i, x)) = at {
            let width: usize = t.shape.iter().skip(1).product::<usize>().max(1);
            return Some(format!(
                "input `{}` row {} column {} is {x}; model `{}` refuses missing and infinite values",
                t.name,
                i / width,
                i % width,
                model.name
            ));
        }
    }
    None
}

/// Decodes a mirrored request for one shadow version.
type ShadowDecode = Arc<dyn Fn(&ModelVersion) -> Result<Vec<Tensor>, String> + Send + Sync>;

/// Sends a copy of an answered request to each shadow version of the model, off the request
/// path, and records how far each shadow's outputs are from the live ones. A shadow that is
/// busy or fails counts an error; the live answer never waits for or sees it.
fn mirror(
    s: &Arc<ServeState>,
    endpoint: &Endpoint,
    live: &ModelVersion,
    outputs: &[Tensor],
    decode: ShadowDecode,
) {
    let shadows = endpoint.shadows_of(live);
    if shadows.is_empty() {
        return;
    }
    let outputs = Arc::new(outputs.to_vec());
    for shadow in shadows {
        let s = s.clone();
        let outputs = outputs.clone();
        let decode = decode.clone();
        tokio::spawn(async move {
            let m = s.metrics.shadow(&shadow.name, &shadow.version);
            let inputs = match decode(&shadow) {
                Ok(i) => i,
                Err(e) => {
                    tracing::debug!(model = %shadow.name, version = %shadow.version, error = %e, "shadow could not decode");
                    m.failed();
                    return;
                }
            };
            match predict(&s, &shadow, inputs).await {
                Ok(Answer {
                    outputs: out,
                    timing,
                    ..
                }) => {
                    s.metrics.version(&shadow.name, &shadow.version).inference(
                        timing.queue,
                        timing.compute,
                        timing.batch_rows,
                    );
                    m.compared(&crate::traffic::compare(&outputs, &out));
                }
                Err(e) => {
                    tracing::debug!(model = %shadow.name, version = %shadow.version, error = %e, "shadow failed");
                    m.failed();
                }
            }
        });
    }
}

async fn infer_inner(
    s: &Arc<ServeState>,
    m: &str,
    v: Option<&str>,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    let Some(endpoint) = s.endpoint(m) else {
        return *unknown_model(s, m);
    };
    let pin = v.or_else(|| pinned(headers));
    let model = match endpoint.route(pin) {
        Ok(m) => m,
        Err(e) => return oip_error(route_status(&e), format!("model `{m}`: {e}")),
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
    let mut req = match oip::decode_request(&body, header_len, &model.inputs) {
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
    if let Some(e) = refused_non_finite(s, &model, &req.inputs) {
        series.request(started.elapsed(), false);
        return oip_error(StatusCode::BAD_REQUEST, e);
    }
    let logged = s
        .prediction_log
        .as_ref()
        .map(|l| l.begin(req.id.as_deref(), request_id_header(headers)));
    let inputs = std::mem::take(&mut req.inputs);
    let Answer {
        outputs,
        timing,
        inputs,
    } = match predict(s, &model, inputs).await {
        Ok(x) => x,
        Err(e) => {
            series.request(started.elapsed(), false);
            let status = batch_status(&e);
            if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
                series.server_error();
            }
            let r = oip_error(status, e.to_string());
            return if status == StatusCode::TOO_MANY_REQUESTS {
                busy(r)
            } else {
                r
            };
        }
    };
    series.inference(timing.queue, timing.compute, timing.batch_rows);
    if pin.is_none() {
        let header_len = header_len.map(str::to_string);
        let body = body.clone();
        let decode: ShadowDecode = Arc::new(move |shadow: &ModelVersion| {
            oip::decode_request(&body, header_len.as_deref(), &shadow.inputs)
                .map(|r| r.inputs)
                .map_err(|e| e.to_string())
        });
        mirror(s, &endpoint, &model, &outputs, decode);
    }
    if let Some(l) = &logged {
        l.record(
            &model.name,
            &model.version,
            started,
            crate::predlog::LoggedInputs::Tensors(&inputs),
            &outputs,
        );
    }
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
            with_request_id(with_version(r, &model.version), logged)
        }
        Err(e) => {
            series.request(started.elapsed(), false);
            series.server_error();
            oip_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        }
    }
}

/// `X-Request-Id`, parsed once (a name given as `&str` is parsed on every lookup).
static REQUEST_ID: HeaderName = HeaderName::from_static(crate::predlog::REQUEST_ID_HEADER);

/// A client's `X-Request-Id`.
fn request_id_header(headers: &HeaderMap) -> Option<&str> {
    headers.get(&REQUEST_ID).and_then(|v| v.to_str().ok())
}

/// With a prediction log, every answer names its request id (`X-Request-Id`), by which
/// feedback refers to the logged prediction.
/// The id is moved into the header, not copied (the record has been made).
fn with_request_id(mut r: Response, logged: Option<crate::predlog::Logged<'_>>) -> Response {
    if let Some(l) = logged
        && let Ok(v) = HeaderValue::from_maybe_shared(bytes::Bytes::from(l.id))
    {
        r.headers_mut().insert(REQUEST_ID.clone(), v);
    }
    r
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
    let endpoint = match &named {
        Some(n) => s.endpoint(n),
        None => {
            let names = s.names();
            if names.len() == 1 {
                s.endpoint(&names[0])
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
    let Some(endpoint) = endpoint else {
        return scoring_error(
            StatusCode::NOT_FOUND,
            format!(
                "unknown model `{}`; loaded: {}",
                named.as_deref().unwrap_or(""),
                s.names().join(", ")
            ),
        );
    };
    let pin = pinned(&headers);
    let model = match endpoint.route(pin) {
        Ok(m) => m,
        Err(e) => {
            return scoring_error(route_status(&e), format!("model `{}`: {e}", endpoint.name));
        }
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
    let logged = s
        .prediction_log
        .as_ref()
        .map(|l| l.begin(None, request_id_header(&headers)));
    let sampled = logged.as_ref().is_some_and(|l| l.sampled());
    let (inputs, raw_rows) = match decode_scoring_rows(content_type, &body, &model, sampled) {
        Ok(i) => i,
        Err(r) => {
            series.request(started.elapsed(), false);
            return *r;
        }
    };
    if let Some(e) = refused_non_finite(&s, &model, &inputs) {
        series.request(started.elapsed(), false);
        return scoring_error(StatusCode::BAD_REQUEST, e);
    }
    // The tensors the model took come back with its outputs (the log records them).
    let Answer {
        outputs,
        timing,
        inputs,
    } = match predict(&s, &model, inputs).await {
        Ok(x) => x,
        Err(e) => {
            series.request(started.elapsed(), false);
            let status = batch_status(&e);
            if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
                series.server_error();
            }
            let r = scoring_error(status, e.to_string());
            return if status == StatusCode::TOO_MANY_REQUESTS {
                busy(r)
            } else {
                r
            };
        }
    };
    series.inference(timing.queue, timing.compute, timing.batch_rows);
    if pin.is_none() {
        let content_type = content_type.map(str::to_string);
        let body = body.clone();
        let decode: ShadowDecode = Arc::new(move |shadow: &ModelVersion| {
            decode_scoring(content_type.as_deref(), &body, shadow)
                .map_err(|r| format!("the request does not fit this version ({})", r.status()))
        });
        mirror(&s, &endpoint, &model, &outputs, decode);
    }
    if let Some(l) = &logged {
        let inputs = match &raw_rows {
            Some(rows) => crate::predlog::LoggedInputs::Rows {
                columns: model.raw_inputs(),
                rows,
            },
            None => crate::predlog::LoggedInputs::Tensors(&inputs),
        };
        l.record(&model.name, &model.version, started, inputs, &outputs);
    }
    match scoring::encode_predictions(&outputs) {
        Ok(bytes) => {
            series.request(started.elapsed(), true);
            let r = with_version(
                (
                    StatusCode::OK,
                    [(header::CONTENT_TYPE, "application/json")],
                    bytes,
                )
                    .into_response(),
                &model.version,
            );
            with_request_id(r, logged)
        }
        Err(e) => {
            series.request(started.elapsed(), false);
            series.server_error();
            scoring_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        }
    }
}

/// Decodes an `/invocations` body into `model`'s input tensors (raw rows go through its
/// feature transform).
fn decode_scoring(
    content_type: Option<&str>,
    body: &[u8],
    model: &ModelVersion,
) -> Result<Vec<Tensor>, Box<Response>> {
    decode_scoring_rows(content_type, body, model, false).map(|(t, _)| t)
}

/// Raw rows (values in the transform's input order).
type RawRows = Vec<Vec<kiln_transform::Value>>;

/// [`decode_scoring`], also returning the raw rows a transform encoded when `keep_rows` (for
/// the prediction log).
fn decode_scoring_rows(
    content_type: Option<&str>,
    body: &[u8],
    model: &ModelVersion,
    keep_rows: bool,
) -> Result<(Vec<Tensor>, Option<RawRows>), Box<Response>> {
    let wants = if model.transform.is_some() {
        scoring::ModelInputs::Columns(model.raw_inputs())
    } else {
        scoring::ModelInputs::Tensors(&model.inputs)
    };
    let batch = match scoring::decode(content_type, body, wants) {
        Ok(b) => b,
        Err(e) => {
            let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
            return Err(Box::new(
                (
                    status,
                    [(header::CONTENT_TYPE, "application/json")],
                    e.to_json(),
                )
                    .into_response(),
            ));
        }
    };
    match batch {
        scoring::Batch::Tensors(t) => Ok((t, None)),
        scoring::Batch::Rows { rows } => match model.encode_rows(&rows) {
            Ok(t) => Ok((vec![t], keep_rows.then_some(rows))),
            Err(e) => Err(Box::new(scoring_error(StatusCode::BAD_REQUEST, e))),
        },
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
        match &s.prediction_log {
            Some(l) => {
                let mut text = s.metrics.render();
                crate::metrics::render_prediction_log(&mut text, &l.sink.stats());
                text
            }
            None => s.metrics.render(),
        },
    )
        .into_response()
}
