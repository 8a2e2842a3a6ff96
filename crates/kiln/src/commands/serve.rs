//! `kiln serve`: the data plane. Loads Kiln packages, ONNX files and registry references
//! (`NAME@ALIAS`, `NAME/VERSION`) and serves them over OIP v2 and MLflow's scoring protocol.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use kiln_monitor::predlog::{InputsRef, PredictionLog, PredictionLogConfig, PredictionRef};
use kiln_serve::ServeState;
use kiln_serve::batch::BatchConfig;
use kiln_serve::model::ModelVersion;
use kiln_store::{ArtifactStore, Store};

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to bind.
    #[arg(long, env = "KILN_SERVE_HOST", default_value = "127.0.0.1")]
    pub host: String,
    /// Port to bind; 0 lets the OS choose (printed on the first line).
    #[arg(long, env = "KILN_SERVE_PORT", default_value_t = 8000)]
    pub port: u16,
    /// `NAME=PATH_OR_REF`: a package folder, an `.onnx` file, or a registered version
    /// (`MODEL@ALIAS`, `MODEL/VERSION`). Repeatable; the same NAME again serves another
    /// version side by side (files are numbered 1, 2, … in order; registered versions keep
    /// their number). The first version of a name takes all traffic unless `--traffic` says
    /// otherwise.
    #[arg(long = "model", required = true, value_name = "NAME=PATH_OR_REF")]
    pub models: Vec<String>,
    /// `NAME=VERSION:WEIGHT,VERSION:WEIGHT`: split NAME's traffic by weight (a canary:
    /// `delay=3:90,4:10`). Versions left out get none but can still be pinned with the
    /// `X-Kiln-Version` header. Repeatable, one per name.
    #[arg(long = "traffic", value_name = "NAME=V:W,…")]
    pub traffic: Vec<String>,
    /// `NAME=VERSION[,VERSION]`: mirror NAME's traffic to these versions; their answers are
    /// compared with the live ones (GET /api/kiln/serve/models/NAME/traffic, /metrics) and
    /// never returned.
    #[arg(long = "shadow", value_name = "NAME=V,…")]
    pub shadow: Vec<String>,
    /// A model (by NAME) that refuses NaN and infinite inputs with a 400 naming the element,
    /// instead of taking them as missing values. Repeatable.
    #[arg(long = "refuse-nan", value_name = "NAME")]
    pub refuse_nan: Vec<String>,
    /// Largest request body, in bytes (after gzip decompression); larger ones get 413.
    #[arg(long, default_value_t = 64 << 20)]
    pub max_request_bytes: usize,
    /// Require `Authorization: Bearer TOKEN` to load or unload models or change traffic.
    #[arg(long, env = "KILN_SERVE_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Rows per predictor call at most.
    #[arg(long, default_value_t = 256)]
    pub max_batch_rows: usize,
    /// How long a partial batch may wait for more requests, in microseconds (0: never).
    #[arg(long, default_value_t = 0)]
    pub max_queue_delay_us: u64,
    /// Requests handled at once; more get 429 with Retry-After.
    #[arg(long, default_value_t = 1024)]
    pub max_in_flight: usize,
    /// Requests that may wait in one model's queue.
    #[arg(long, default_value_t = 1024)]
    pub queue_capacity: usize,
    /// Inference threads per model (default: one per core).
    #[arg(long)]
    pub inference_threads: Option<usize>,
    /// A request not computed within this many milliseconds is answered with 504.
    #[arg(long, default_value_t = 30_000)]
    pub timeout_ms: u64,
    /// HTTP worker threads (default: one per core).
    #[arg(long, env = "KILN_WORKERS")]
    pub workers: Option<usize>,
    /// For registry references: the store and artifacts of the control plane.
    #[arg(long, env = "KILN_DATA_DIR", default_value = "./.kiln")]
    pub data_dir: PathBuf,
    #[arg(long, env = "KILN_STORE")]
    pub store: Option<String>,
    #[arg(long, env = "KILN_ARTIFACTS")]
    pub artifacts: Option<String>,
    /// Watch every served name that has a `[deploy.NAME]` or `[monitor.NAME]` section in the
    /// project file: windowed latency, error and request rates per version, SLO burn rates,
    /// alert rules with notifications, incidents for page alerts, and automatic rollback of a
    /// canary that breaches `[deploy.NAME].canary.rollback_when`. Incidents and the timeline
    /// go to the metadata store (`--store` / `--data-dir`).
    #[arg(long)]
    pub monitor: bool,
    /// The project file `--monitor` reads.
    #[arg(long, env = "KILN_CONFIG", default_value = "kiln.toml")]
    pub config: PathBuf,
    /// How often the monitor evaluates, in milliseconds (default: the shortest
    /// `[monitor.*].interval`, else 5 s).
    #[arg(long, requires = "monitor")]
    pub monitor_interval_ms: Option<u64>,
    /// `NAME=VERSION:MS`: fault injection for drills and the demo: every predictor call of
    /// that version takes MS milliseconds longer, as a slow model would. Repeatable.
    #[arg(long = "inject-latency", value_name = "NAME=V:MS")]
    pub inject_latency: Vec<String>,
    /// Keep a sampled log of predictions (request id, time, model, version, latency, inputs,
    /// outputs) as Parquet files in this directory or object store (`s3://bucket/prefix`),
    /// under `predictions/deployment=NAME/date=YYYY-MM-DD/hour=HH/`. Off unless given.
    #[arg(long, value_name = "URL_OR_DIR")]
    pub prediction_log: Option<String>,
    /// The fraction of requests logged, 0 to 1.
    #[arg(
        long,
        value_name = "FRACTION",
        default_value_t = 1.0,
        requires = "prediction_log"
    )]
    pub log_sample: f64,
    /// Write a file once this many predicted rows are buffered.
    #[arg(
        long,
        value_name = "ROWS",
        default_value_t = 10_000,
        requires = "prediction_log"
    )]
    pub log_flush_rows: usize,
    /// Write a file once the oldest buffered prediction has waited this long (seconds); also
    /// the most a crash can lose.
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 60.0,
        requires = "prediction_log"
    )]
    pub log_flush_seconds: f64,
    /// Predictions buffered at most (accepted, not yet written); more are dropped and counted.
    #[arg(
        long,
        value_name = "RECORDS",
        default_value_t = 100_000,
        requires = "prediction_log"
    )]
    pub log_buffer_records: usize,
    /// Buffered predictions, in MiB as packed (held as columns they take about as much);
    /// more are dropped and counted.
    #[arg(
        long,
        value_name = "MIB",
        default_value_t = 64,
        requires = "prediction_log"
    )]
    pub log_buffer_mib: usize,
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    super::server::runtime(args.workers)?.block_on(serve(
        args,
        super::server::announce("Listening on"),
        super::server::shutdown_signal(),
    ))
}

/// Runs the data plane until `shutdown` resolves; `announce` is told its address once it
/// listens.
pub(crate) async fn serve(
    args: ServeArgs,
    announce: super::server::Announce,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let batch = BatchConfig {
        max_batch_rows: args.max_batch_rows.max(1),
        max_delay: Duration::from_micros(args.max_queue_delay_us),
        queue_capacity: args.queue_capacity.max(1),
        threads: args.inference_threads.unwrap_or(cores).max(1),
    };
    let mut state = ServeState::new(
        args.max_in_flight.max(1),
        Duration::from_millis(args.timeout_ms.max(1)),
        env!("CARGO_PKG_VERSION"),
    );
    state.admin_token = args.admin_token.clone().filter(|t| !t.is_empty());
    state.refuse_nan = args.refuse_nan.iter().cloned().collect();
    state.max_body_bytes = args.max_request_bytes.max(1);
    let prediction_log = open_prediction_log(&args)?;
    if let Some(log) = &prediction_log {
        state.prediction_log = Some(kiln_serve::predlog::PredictionLog::new(
            Arc::new(LogSink(log.clone())),
            args.log_sample,
        ));
    }
    let mut registry: Option<(Store, ArtifactStore)> = None;
    // (served name, model, version, reference) of registered versions, recorded as
    // deployments once the address is known.
    let mut served: Vec<(String, String, String, String)> = vec![];
    // Each name's slots, in order: where each version came from.
    let mut specs: BTreeMap<String, Vec<String>> = BTreeMap::new();
    // The last number given to a file-backed version of each name.
    let mut numbers: BTreeMap<String, u64> = BTreeMap::new();
    for spec in &args.models {
        let Some((name, target)) = spec.split_once('=') else {
            bail!("--model {spec:?}: expected NAME=PATH_OR_REF");
        };
        if name.is_empty() || target.is_empty() {
            bail!("--model {spec:?}: expected NAME=PATH_OR_REF");
        }
        let model = if Path::new(target).exists() {
            let n = numbers.entry(name.to_string()).or_insert(0);
            *n += 1;
            load_path(name, &n.to_string(), Path::new(target), batch)?
        } else {
            if looks_like_a_path(target) {
                bail!("--model {spec}: {target} does not exist");
            }
            if registry.is_none() {
                registry = Some(open_registry(&args).await?);
            }
            let (store, artifacts) = registry.as_ref().expect("opened above");
            let (model, registered) = load_ref(name, target, store, artifacts, batch).await?;
            served.push((
                name.to_string(),
                registered,
                model.version.clone(),
                target.to_string(),
            ));
            model
        };
        tracing::info!(model = name, version = %model.version, platform = model.platform, "model loaded");
        state
            .add(model)
            .map_err(|e| anyhow::anyhow!("--model {spec}: {e}"))?;
        specs
            .entry(name.to_string())
            .or_default()
            .push(target.to_string());
    }
    for name in &args.refuse_nan {
        if !specs.contains_key(name) {
            bail!("--refuse-nan {name}: no --model of that name");
        }
    }
    for (name, traffic) in parse_traffic(&args.traffic, &args.shadow)? {
        state
            .set_traffic(&name, &traffic)
            .map_err(|e| anyhow::anyhow!("--traffic/--shadow for `{name}`: {e}"))?;
    }
    for spec in &args.inject_latency {
        let parsed = spec.split_once('=').and_then(|(n, rest)| {
            let (v, ms) = rest.split_once(':')?;
            Some((
                n,
                v,
                ms.parse::<f64>()
                    .ok()
                    .filter(|m| m.is_finite() && *m >= 0.0)?,
            ))
        });
        let Some((name, version, ms)) = parsed else {
            bail!("--inject-latency {spec:?}: expected NAME=VERSION:MILLISECONDS");
        };
        let Some(model) = state
            .endpoint(name)
            .and_then(|e| e.version(version).cloned())
        else {
            bail!(
                "--inject-latency {spec:?}: no version `{version}` of a model `{name}` is loaded"
            );
        };
        model
            .batcher
            .inject_latency(Duration::from_secs_f64(ms / 1e3));
        tracing::warn!(
            model = name,
            version,
            ms,
            "fault injection: every predictor call is slower"
        );
    }
    state.loader = Some(Arc::new(Repo {
        specs,
        batch,
        registry: registry.clone(),
        rt: tokio::runtime::Handle::current(),
        numbers: std::sync::Mutex::new(numbers),
    }));
    let state = Arc::new(state);
    let monitor = if args.monitor {
        let project = crate::project::Project::load(&args.config)?;
        let store = match &registry {
            Some((store, _)) => store.clone(),
            None => open_registry(&args).await?.0,
        };
        let m = super::monitor_loop::Monitor::new(
            state.clone(),
            store,
            Arc::new(kiln_monitor::clock::SystemClock),
            served.clone(),
            &project.file.deploy,
            &project.file.monitor,
            args.monitor_interval_ms.map(Duration::from_millis),
        )?
        .redact_configs(|v| project.redact(v));
        let m = match &args.prediction_log {
            Some(url) => m.with_prediction_log(
                ArtifactStore::open(url)
                    .with_context(|| format!("--prediction-log {url}: cannot open the store"))?,
            ),
            None => m,
        };
        tracing::info!(interval_ms = m.interval.as_millis() as u64, "monitor on");
        let (stop, stopped) = tokio::sync::watch::channel(false);
        Some((stop, tokio::spawn(m.run(stopped))))
    } else {
        None
    };
    let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port))
        .await
        .with_context(|| format!("cannot listen on {}:{}", args.host, args.port))?;
    let addr = listener.local_addr()?;
    announce(addr)?;
    let mut deployments = vec![];
    if let Some((store, _)) = &registry {
        let host = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_default();
        for (name, model, version, reference) in served {
            let id = store
                .record_deployment(
                    name,
                    model,
                    &version,
                    reference,
                    format!("http://{addr}"),
                    host.clone(),
                )
                .await
                .context("cannot record the deployment in the store")?;
            deployments.push(id);
        }
    }
    kiln_serve::serve(listener, state, shutdown).await?;
    if let Some((stop, task)) = monitor {
        let _ = stop.send(true);
        let _ = task.await;
    }
    if let Some(log) = prediction_log {
        // Every answered request has been handed to the log: write what it holds.
        let report = tokio::task::spawn_blocking(move || log.close())
            .await
            .context("the prediction log's writer stopped")?;
        if report.discarded > 0 {
            tracing::error!(
                written = report.written,
                lost = report.discarded,
                "prediction log closed; some predictions could not be written"
            );
        } else {
            tracing::info!(written = report.written, "prediction log closed");
        }
    }
    if let Some((store, _)) = &registry {
        store
            .stop_deployments(deployments)
            .await
            .context("cannot mark the deployments stopped")?;
        store.close().await;
    }
    tracing::info!("kiln serve stopped");
    Ok(())
}

/// A `--model` target that can only be a file or folder (a registry reference is
/// `MODEL@ALIAS`, `MODEL/VERSION` or `models:/…`).
fn looks_like_a_path(target: &str) -> bool {
    !target.starts_with("models:/")
        && (target.starts_with('/')
            || target.starts_with("./")
            || target.starts_with("../")
            || target.starts_with('~')
            || target.ends_with(".onnx")
            || target.ends_with(".json"))
}

/// `--prediction-log` and its settings: the writer, started.
fn open_prediction_log(args: &ServeArgs) -> anyhow::Result<Option<Arc<PredictionLog>>> {
    let Some(url) = &args.prediction_log else {
        return Ok(None);
    };
    if !(0.0..=1.0).contains(&args.log_sample) {
        bail!(
            "--log-sample {}: expected a fraction from 0 to 1",
            args.log_sample
        );
    }
    if !(args.log_flush_seconds.is_finite() && args.log_flush_seconds > 0.0) {
        bail!(
            "--log-flush-seconds {}: expected a positive number of seconds",
            args.log_flush_seconds
        );
    }
    let store = ArtifactStore::open(url)
        .with_context(|| format!("--prediction-log {url}: cannot open the store"))?;
    let config = PredictionLogConfig {
        flush_rows: args.log_flush_rows.max(1),
        flush_interval: Duration::from_secs_f64(args.log_flush_seconds),
        max_buffered_records: args.log_buffer_records.max(1),
        max_buffered_bytes: args.log_buffer_mib.max(1) << 20,
        ..PredictionLogConfig::default()
    };
    let log = PredictionLog::start(store, config, Arc::new(kiln_monitor::clock::SystemClock))
        .context("cannot start the prediction log")?;
    tracing::info!(
        url = %url,
        sample = args.log_sample,
        flush_rows = args.log_flush_rows,
        flush_seconds = args.log_flush_seconds,
        "prediction log on"
    );
    Ok(Some(Arc::new(log)))
}

/// The data plane's prediction sink, backed by `kiln-monitor`'s Parquet writer (kiln-serve
/// does not know kiln-monitor; the borrowed record is passed on as is, the log packs it).
struct LogSink(Arc<PredictionLog>);

impl kiln_serve::predlog::PredictionSink for LogSink {
    fn record(&self, r: &kiln_serve::predlog::PredictionRecord<'_>) {
        use kiln_serve::predlog::LoggedInputs;
        self.0.record(&PredictionRef {
            deployment: r.model,
            version: r.version,
            request_id: r.request_id,
            time_us: r.time_us,
            latency_us: r.latency_us,
            inputs: match r.inputs {
                LoggedInputs::Tensors(t) => InputsRef::Tensors(t),
                LoggedInputs::Rows { columns, rows } => InputsRef::Rows { columns, rows },
            },
            outputs: r.outputs,
        });
    }

    fn stats(&self) -> kiln_serve::predlog::SinkStats {
        let s = self.0.stats();
        kiln_serve::predlog::SinkStats {
            records: s.records,
            dropped: s.dropped,
            flushes: s.flushes,
            flush_errors: s.flush_errors,
            written: s.written,
            buffered: s.buffered,
        }
    }
}

/// `--traffic NAME=V:W,…` and `--shadow NAME=V,…` as one traffic spec per name.
fn parse_traffic(
    traffic: &[String],
    shadow: &[String],
) -> anyhow::Result<BTreeMap<String, kiln_serve::traffic::TrafficSpec>> {
    let mut out: BTreeMap<String, kiln_serve::traffic::TrafficSpec> = BTreeMap::new();
    let mut weighted: BTreeMap<String, bool> = BTreeMap::new();
    for t in traffic {
        let Some((name, split)) = t.split_once('=') else {
            bail!("--traffic {t:?}: expected NAME=VERSION:WEIGHT,…");
        };
        if weighted.insert(name.to_string(), true).is_some() {
            bail!("--traffic {t:?}: `{name}` is given twice");
        }
        let spec = out.entry(name.to_string()).or_default();
        for part in split.split(',') {
            let Some((v, w)) = part.split_once(':') else {
                bail!("--traffic {t:?}: `{part}` should be VERSION:WEIGHT");
            };
            let w: u32 = w.trim().parse().with_context(|| {
                format!("--traffic {t:?}: the weight of version `{v}` must be a whole number")
            })?;
            spec.weights.insert(v.trim().to_string(), w);
        }
    }
    for sh in shadow {
        let Some((name, versions)) = sh.split_once('=') else {
            bail!("--shadow {sh:?}: expected NAME=VERSION[,VERSION]");
        };
        let spec = out.entry(name.to_string()).or_default();
        spec.shadow
            .extend(versions.split(',').map(|v| v.trim().to_string()));
    }
    Ok(out)
}

/// Where each served version came from, to load it again (Triton's repository `load`): a
/// file or folder is read again as the name's next version number; a registry reference is
/// resolved again, so `MODEL@ALIAS` picks up the alias's current holder.
struct Repo {
    /// Each name's slots, in order.
    specs: BTreeMap<String, Vec<String>>,
    batch: BatchConfig,
    registry: Option<(Store, ArtifactStore)>,
    rt: tokio::runtime::Handle,
    /// The last version number given to a file-backed version of each name.
    numbers: std::sync::Mutex<BTreeMap<String, u64>>,
}

impl kiln_serve::Loader for Repo {
    fn load(&self, name: &str) -> Result<Vec<ModelVersion>, String> {
        let targets = self
            .specs
            .get(name)
            .ok_or_else(|| format!("unknown model `{name}`"))?;
        let mut numbers = self
            .numbers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut out = Vec::with_capacity(targets.len());
        for target in targets {
            if Path::new(target).exists() {
                let n = numbers.entry(name.to_string()).or_insert(0);
                *n += 1;
                out.push(
                    ModelVersion::load(name, &n.to_string(), Path::new(target), self.batch)
                        .map_err(|e| e.to_string())?,
                );
                continue;
            }
            let Some((store, artifacts)) = &self.registry else {
                return Err(format!("{target} does not exist"));
            };
            let (model, _) = self
                .rt
                .block_on(load_ref(name, target, store, artifacts, self.batch))
                .map_err(|e| format!("{e:#}"))?;
            out.push(model);
        }
        // The numbers advance only once every slot loaded.
        *self.numbers.lock().unwrap_or_else(|p| p.into_inner()) = numbers;
        Ok(out)
    }

    fn names(&self) -> Vec<String> {
        self.specs.keys().cloned().collect()
    }
}

fn load_path(
    name: &str,
    version: &str,
    path: &Path,
    batch: BatchConfig,
) -> anyhow::Result<ModelVersion> {
    ModelVersion::load(name, version, path, batch)
        .with_context(|| format!("cannot load model `{name}`"))
}

async fn open_registry(args: &ServeArgs) -> anyhow::Result<(Store, ArtifactStore)> {
    let store_url = match &args.store {
        Some(u) => u.clone(),
        None => {
            std::fs::create_dir_all(&args.data_dir).with_context(|| {
                format!(
                    "cannot create the data directory {}",
                    args.data_dir.display()
                )
            })?;
            format!("sqlite://{}", args.data_dir.join("kiln.db").display())
        }
    };
    let store = Store::open(&store_url)
        .await
        .context("cannot open the metadata store for registry references")?;
    let artifacts_url = match &args.artifacts {
        Some(u) => u.clone(),
        None => args.data_dir.join("artifacts").display().to_string(),
    };
    let artifacts = ArtifactStore::open(&artifacts_url)
        .with_context(|| format!("cannot open the artifact store {artifacts_url}"))?;
    Ok((store, artifacts))
}

/// The registered version a reference names: `MODEL@ALIAS`, `MODEL/VERSION`, or either
/// after `models:/`.
pub(crate) async fn resolve_ref(
    store: &Store,
    reference: &str,
) -> anyhow::Result<kiln_core::entities::ModelVersion> {
    let rest = reference.strip_prefix("models:/").unwrap_or(reference);
    if let Some((m, alias)) = rest.split_once('@') {
        store
            .get_model_version_by_alias(m, alias)
            .await
            .with_context(|| format!("no version of `{m}` has alias `{alias}`"))
    } else if let Some((m, v)) = rest.rsplit_once('/') {
        store
            .get_model_version(m, v)
            .await
            .with_context(|| format!("no version {v} of `{m}`"))
    } else {
        bail!("no such file, and not MODEL@ALIAS or MODEL/VERSION");
    }
}

/// A registered version (`MODEL@ALIAS`, `MODEL/VERSION`, `models:/…`).
/// Returns the loaded version and the registered model it came from.
async fn load_ref(
    name: &str,
    reference: &str,
    store: &Store,
    artifacts: &ArtifactStore,
    batch: BatchConfig,
) -> anyhow::Result<(ModelVersion, String)> {
    let mv = resolve_ref(store, reference)
        .await
        .with_context(|| format!("--model {name}={reference}"))?;
    let fetched = kiln_release::fetch_version(store, artifacts, &mv)
        .await
        .with_context(|| format!("--model {name}={reference}"))?;
    let path = match fetched.kind() {
        kiln_release::VersionKind::KilnPackage => fetched.dir().to_path_buf(),
        kiln_release::VersionKind::MlflowOnnx => fetched
            .dir()
            .join(fetched.model_file().unwrap_or("model.onnx")),
    };
    Ok((load_path(name, &mv.version, &path, batch)?, mv.name.clone()))
}
