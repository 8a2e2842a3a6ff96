//! Helpers shared by the HTTP suite: the in-process app on 127.0.0.1:0 over a `TestDb`, and
//! a JSON client for it.

// Each test module uses a different subset of these helpers.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use kiln_store::{ArtifactStore, Store};
use kiln_testkit::TestDb;
use serde_json::Value;

/// One running in-process app. Dropping it stops the server task and removes its artifact
/// directory (drop it before its `TestDb`, i.e. declare it after).
pub struct TestApp {
    /// Base URL, `http://127.0.0.1:PORT` (no trailing slash).
    pub url: String,
    /// The app's metadata store, for setting up state the HTTP API cannot reach.
    pub store: Store,
    pub artifacts: ArtifactStore,
    pub client: reqwest::Client,
    artifacts_dir: PathBuf,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.server.abort();
        let _ = std::fs::remove_dir_all(&self.artifacts_dir);
    }
}

/// A fresh directory under the system temp dir (no `tempfile` dev-dependency here).
fn fresh_dir() -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!(
        "kiln-server-it-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("create the artifact directory");
    dir
}

/// Starts `kiln_server::router` for `db` on 127.0.0.1:0 with a fresh local artifact store.
pub async fn start_app(db: &TestDb) -> TestApp {
    let store = Store::open(&db.url)
        .await
        .unwrap_or_else(|e| panic!("open the {} store: {e}", db.kind));
    let artifacts_dir = fresh_dir();
    let artifacts = ArtifactStore::open(artifacts_dir.to_str().expect("utf-8 temp path"))
        .expect("open the artifact store");
    let state = Arc::new(kiln_server::AppState {
        store: store.clone(),
        artifacts: artifacts.clone(),
        kiln_version: "test".into(),
        store_kind: db.kind.into(),
        releases: Default::default(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local addr");
    let server = tokio::spawn(async move {
        axum::serve(listener, kiln_server::router(state))
            .await
            .expect("serve");
    });
    TestApp {
        url: format!("http://{addr}"),
        store,
        artifacts,
        client: reqwest::Client::new(),
        artifacts_dir,
        server,
    }
}

impl TestApp {
    /// `{url}/api/2.0/mlflow/{path}`.
    pub fn api(&self, path: &str) -> String {
        format!(
            "{}/api/2.0/mlflow/{}",
            self.url,
            path.trim_start_matches('/')
        )
    }

    /// Sends `method` to `url` (absolute) with an optional JSON body; returns the status
    /// and the JSON body (`Value::Null` if the body is not JSON).
    pub async fn send(
        &self,
        method: reqwest::Method,
        url: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let mut req = self.client.request(method, url);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.unwrap_or_else(|e| panic!("{url}: {e}"));
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("response body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// GET `api(path)` (query string included in `path`).
    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.send(reqwest::Method::GET, &self.api(path), None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::POST, &self.api(path), Some(&body))
            .await
    }

    pub async fn patch(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::PATCH, &self.api(path), Some(&body))
            .await
    }

    pub async fn delete(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::DELETE, &self.api(path), Some(&body))
            .await
    }
}
