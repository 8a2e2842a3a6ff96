//! A stand-in model server on 127.0.0.1:0: OIP metadata for model `m` (input `X`, FP32,
//! `[-1, 4]`) and an `infer` route whose delay, stall and statuses a test chooses.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use serde_json::{Value, json};

/// How `infer` answers.
#[derive(Debug, Clone, Default)]
pub struct Behavior {
    /// Every answer waits this long.
    pub delay: Duration,
    /// `(at, for)`: every request arriving between `at` and `at + for` after the first
    /// request is held until `at + for` (a server pause, e.g. a GC or a stuck lock).
    pub stall: Option<(Duration, Duration)>,
    /// Requests from the n-th on (counting from 0, the probe first) are never answered.
    pub hang_from: Option<u64>,
    /// `(every, status, offset)`: the n-th request (counting from 0, the probe first)
    /// answers `status` when `n % every == offset`; the first rule that matches wins.
    pub statuses: Vec<(u64, u16, u64)>,
}

#[derive(Clone)]
struct Shared {
    behavior: Behavior,
    first: Arc<Mutex<Option<Instant>>>,
    count: Arc<AtomicU64>,
}

pub struct Server {
    pub url: String,
    count: Arc<AtomicU64>,
}

impl Server {
    /// Requests `infer` has received (the probe included).
    pub fn requests(&self) -> u64 {
        self.count.load(Ordering::SeqCst)
    }
}

pub async fn start(behavior: Behavior) -> Server {
    let shared = Shared {
        behavior,
        first: Arc::default(),
        count: Arc::default(),
    };
    let count = shared.count.clone();
    let app = Router::new()
        .route("/v2/models/m", get(metadata))
        .route("/v2/models/m/infer", post(infer))
        .with_state(shared);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Server { url, count }
}

async fn metadata() -> axum::Json<Value> {
    axum::Json(json!({
        "name": "m", "versions": ["1"], "platform": "test",
        "inputs": [{"name": "X", "datatype": "FP32", "shape": [-1, 4]}],
        "outputs": [{"name": "Y", "datatype": "FP32", "shape": [-1]}],
    }))
}

/// Checks the body as a server would: JSON with an `X` input of 4 columns, or the binary
/// extension with a header whose sizes add up to the bytes after it.
fn check(headers: &HeaderMap, body: &[u8]) -> Result<usize, String> {
    let (head, rest) = match headers.get("inference-header-content-length") {
        Some(n) => {
            let n: usize = n
                .to_str()
                .unwrap()
                .parse()
                .map_err(|_| "bad header length")?;
            if n > body.len() {
                return Err("header length past the end".into());
            }
            (&body[..n], Some(&body[n..]))
        }
        None => (body, None),
    };
    let v: Value = serde_json::from_slice(head).map_err(|e| e.to_string())?;
    let input = &v["inputs"][0];
    if input["name"] != "X" || input["shape"][1] != 4 {
        return Err(format!("wrong input: {input}"));
    }
    let rows = input["shape"][0].as_u64().ok_or("no rows")? as usize;
    match rest {
        Some(raw) => {
            let size = input["parameters"]["binary_data_size"]
                .as_u64()
                .ok_or("no size")?;
            if size as usize != raw.len() || raw.len() != rows * 4 * 4 {
                return Err(format!("binary size {size}, {} bytes", raw.len()));
            }
        }
        None => {
            if input["data"].as_array().map(Vec::len) != Some(rows * 4) {
                return Err("wrong data length".into());
            }
        }
    }
    Ok(rows)
}

async fn infer(
    State(s): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, axum::Json<Value>) {
    let n = s.count.fetch_add(1, Ordering::SeqCst);
    let now = Instant::now();
    let first = *s.first.lock().unwrap().get_or_insert(now);
    if let Some((at, length)) = s.behavior.stall {
        let (from, to) = (first + at, first + at + length);
        if now >= from && now < to {
            tokio::time::sleep_until(to.into()).await;
        }
    }
    if s.behavior.hang_from.is_some_and(|from| n >= from) {
        std::future::pending::<()>().await;
    }
    if !s.behavior.delay.is_zero() {
        tokio::time::sleep(s.behavior.delay).await;
    }
    for &(every, status, offset) in &s.behavior.statuses {
        if n % every == offset {
            return (
                StatusCode::from_u16(status).unwrap(),
                axum::Json(json!({"error": "as the test asked"})),
            );
        }
    }
    match check(&headers, &body) {
        Ok(rows) => (
            StatusCode::OK,
            axum::Json(json!({"model_name": "m", "outputs": [
                {"name": "Y", "datatype": "FP32", "shape": [rows], "data": vec![0.5; rows]}]})),
        ),
        Err(e) => (StatusCode::BAD_REQUEST, axum::Json(json!({"error": e}))),
    }
}

/// [`start`] on a runtime of its own (on its own thread), so that the server keeps
/// answering while a test blocks the runtime the load generator runs on.
pub fn start_detached(behavior: Behavior) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let server = start(behavior).await;
            tx.send(server.url.clone()).unwrap();
            std::future::pending::<()>().await;
        });
    });
    rx.recv().unwrap()
}
