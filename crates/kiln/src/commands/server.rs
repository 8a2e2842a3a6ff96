//! `kiln server`: the control plane.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use kiln_server::AppState;
use kiln_store::{ArtifactStore, Backend, Store};

#[derive(Args, Debug, Clone)]
pub struct ServerArgs {
    /// Address to bind.
    #[arg(long, env = "KILN_HOST", default_value = "127.0.0.1")]
    pub host: String,
    /// Port to bind; 0 lets the OS choose (the chosen port is printed).
    #[arg(long, env = "KILN_PORT", default_value_t = 5000)]
    pub port: u16,
    /// Directory for the embedded store and local artifacts.
    #[arg(long, env = "KILN_DATA_DIR", default_value = "./.kiln")]
    pub data_dir: PathBuf,
    /// Metadata store URL: `sqlite://PATH` or `postgres://…` (default: DATA_DIR/kiln.db).
    #[arg(long, env = "KILN_STORE")]
    pub store: Option<String>,
    /// Artifact store URL: a directory, `file:///DIR` or `s3://BUCKET/PREFIX`
    /// (default: DATA_DIR/artifacts).
    #[arg(long, env = "KILN_ARTIFACTS")]
    pub artifacts: Option<String>,
    /// Worker threads for the HTTP runtime (default: one per core).
    #[arg(long, env = "KILN_WORKERS")]
    pub workers: Option<usize>,
    /// A secret that makes a caller an admin (as a bearer token, or the password of basic
    /// auth): needed to override a failed release gate, change a release policy or remove a
    /// protected alias. Without it nobody can override a gate.
    #[arg(long, env = "KILN_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
}

/// Release gates evaluated by `kiln-release` on this server's stores.
pub struct Gates(pub Arc<kiln_release::Engine>);

impl kiln_server::release::GateRunner for Gates {
    fn run(
        &self,
        policy: kiln_core::release::ReleasePolicy,
        alias: String,
        candidate: kiln_core::entities::ModelVersion,
        holder: Option<kiln_core::entities::ModelVersion>,
    ) -> kiln_server::release::GateFuture {
        let engine = self.0.clone();
        Box::pin(async move {
            engine
                .evaluate(&policy, &alias, &candidate, holder.as_ref())
                .await
        })
    }
}

/// The release settings of a server on these stores.
pub fn releases(
    store: &Store,
    artifacts: &ArtifactStore,
    admin_token: Option<String>,
) -> kiln_server::release::Releases {
    let engine = kiln_release::Engine::new(store.clone(), artifacts.clone());
    kiln_server::release::Releases::new(Some(Arc::new(Gates(Arc::new(engine)))), admin_token)
}

pub fn run(args: ServerArgs) -> anyhow::Result<()> {
    runtime(args.workers)?.block_on(serve(args, announce("Listening on"), shutdown_signal()))
}

/// The multi-threaded runtime of a server, with `workers` threads (default: one per core).
pub fn runtime(workers: Option<usize>) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if let Some(n) = workers {
        rt.worker_threads(n.max(1));
    }
    rt.build().context("cannot start the async runtime")
}

/// Told a server's address once it listens.
pub type Announce = Box<dyn FnOnce(std::net::SocketAddr) -> anyhow::Result<()> + Send>;

/// Prints `BANNER http://ADDR` on stdout (tests and scripts read it to learn the port).
pub fn announce(banner: &str) -> Announce {
    let banner = banner.to_string();
    Box::new(move |addr| {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{banner} http://{addr}")?;
        out.flush()?;
        Ok(())
    })
}

/// Runs the control plane until `shutdown` resolves; `announce` is told its address once
/// it listens.
pub(crate) async fn serve(
    args: ServerArgs,
    announce: Announce,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create data directory {}", args.data_dir.display()))?;
    let store_url = match &args.store {
        Some(url) => url.clone(),
        None => format!("sqlite://{}", args.data_dir.join("kiln.db").display()),
    };
    let store = Store::open(&store_url)
        .await
        .with_context(|| format!("cannot open the metadata store {}", redact(&store_url)))?;
    let artifacts_url = match &args.artifacts {
        Some(url) => url.clone(),
        None => args.data_dir.join("artifacts").display().to_string(),
    };
    let artifacts = ArtifactStore::open(&artifacts_url)
        .with_context(|| format!("cannot open the artifact store {artifacts_url}"))?;
    let releases = releases(&store, &artifacts, args.admin_token.clone());
    let state = Arc::new(AppState {
        store: store.clone(),
        artifacts,
        releases,
        kiln_version: env!("CARGO_PKG_VERSION").to_string(),
        store_kind: match store.db().backend() {
            Backend::Sqlite => "sqlite".into(),
            Backend::Postgres => "postgresql".into(),
        },
    });
    let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port))
        .await
        .with_context(|| format!("cannot listen on {}:{}", args.host, args.port))?;
    let addr = listener.local_addr()?;
    if !addr.ip().is_loopback() {
        // Authentication is a later capability; say plainly that this bind is open.
        tracing::warn!(
            %addr,
            "listening beyond loopback without authentication: anyone who can reach this \
             address can read and write all tracking and registry data"
        );
    }
    announce(addr)?;
    tracing::info!(%addr, store = %redact(&store_url), artifacts = %artifacts_url, "kiln server ready");
    kiln_server::serve(listener, state, shutdown).await?;
    store.close().await;
    tracing::info!("kiln server stopped");
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received; draining requests");
}

/// Hides a password in a store URL before it is logged.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("****"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}
