//! Load generation against a model server: what `kiln loadtest` runs.
//!
//! Two ways to load a server, as Triton's perf_analyzer and wrk2 do:
//!
//! - [`open_loop`](mod@open_loop): a constant request rate. Request *i* is due at
//!   `t0 + i / rate` and is sent then whatever else is outstanding; its latency is measured
//!   from that *scheduled* time, so a server that stalls shows the stall in the latency of
//!   every request that should have been sent during it (no coordinated omission).
//! - [`sweep`](mod@sweep): closed-loop concurrency levels. N workers each send a request as
//!   soon as their previous one is answered; throughput and p99 are measured in windows
//!   until the last three agree within a tolerance ([`sweep::is_stable`]).
//!
//! The requests come from a [`target::Target`]: an OIP v2 `…/infer` or MLflow
//! `/invocations` endpoint with a body given by the caller or generated from the model's
//! OIP metadata ([`body`]). Outcomes and latencies are gathered by a [`stats::Recorder`]
//! (an HDR histogram) and summarised as [`stats::Summary`]; [`slo`] checks a summary
//! against objectives; [`report`] renders the tables.
//!
//! [`run`] ties them together for one options struct. Nothing here knows the command line.

pub mod body;
pub mod open_loop;
pub mod parse;
pub mod report;
pub mod slo;
pub mod stats;
pub mod sweep;
pub mod target;

use std::time::Duration;

use thiserror::Error;

pub use open_loop::{OpenLoopConfig, OpenLoopReport, Schedule};
pub use parse::{Levels, parse_duration, parse_levels};
pub use report::Report;
pub use slo::{Slo, SloReport};
pub use stats::{Outcome, Recorder, Summary};
pub use sweep::{LevelReport, SweepConfig};
pub use target::{Protocol, Target, TargetSpec};

/// What can go wrong before or while loading a server. Failed requests are not errors:
/// they are counted in the [`Summary`].
#[derive(Debug, Error)]
pub enum LoadtestError {
    /// A command-line value does not parse (a duration, a level list, an SLO, a protocol).
    #[error("{what}: expected {expected}, found `{found}`")]
    Parse {
        what: &'static str,
        expected: &'static str,
        found: String,
    },
    /// Options that cannot work together, or a value out of range.
    #[error("{0}")]
    Invalid(String),
    /// The server could not be reached or did not answer.
    #[error("{url}: {source}")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The server answered a set-up request (model metadata, the probe) with an error.
    #[error("{what} {url} answered {status}: {body}")]
    Refused {
        what: &'static str,
        url: String,
        status: u16,
        body: String,
    },
    /// The model metadata is not what OIP v2 describes.
    #[error("model metadata from {url}: {detail}")]
    Metadata { url: String, detail: String },
    /// A request body cannot be generated for this model.
    #[error("cannot generate a request body: {0}")]
    Body(String),
    /// The body file could not be read.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The load generator itself failed (a thread or task died).
    #[error("load generator: {0}")]
    Internal(String),
}

pub type Result<T, E = LoadtestError> = std::result::Result<T, E>;

/// The two ways of loading the server.
#[derive(Debug, Clone)]
pub enum Mode {
    OpenLoop(OpenLoopConfig),
    Sweep(SweepConfig),
}

/// Everything one `kiln loadtest` run needs.
#[derive(Debug, Clone)]
pub struct Options {
    pub target: TargetSpec,
    pub mode: Mode,
    /// A request not answered within this is an error (`timeout`).
    pub timeout: Duration,
    pub slo: Option<Slo>,
}

/// The HTTP client every request goes through: no proxy (a proxy would be measured too),
/// Nagle off, and enough idle connections kept for every concurrent request.
pub fn client(timeout: Duration, max_connections: usize) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .pool_max_idle_per_host(max_connections.max(1))
        .build()
        .map_err(|e| LoadtestError::Internal(format!("cannot build the HTTP client: {e}")))
}

/// Prepares the target (reading model metadata and probing the endpoint), loads it as
/// `options.mode` says, and checks the SLO if one is given.
pub async fn run(options: &Options) -> Result<Report> {
    let connections = match &options.mode {
        Mode::OpenLoop(c) => c.max_outstanding,
        Mode::Sweep(c) => c.levels.0.iter().copied().max().unwrap_or(1),
    };
    let http = client(options.timeout, connections)?;
    let target = std::sync::Arc::new(Target::prepare(&http, &options.target).await?);
    target.probe(&http).await?;
    let runs = match &options.mode {
        Mode::OpenLoop(c) => {
            report::Runs::OpenLoop(Box::new(open_loop::run(&http, target.clone(), c).await?))
        }
        Mode::Sweep(c) => report::Runs::Sweep {
            levels: sweep::run(&http, target.clone(), c).await?,
        },
    };
    let slo = options.slo.as_ref().map(|slo| slo.check_runs(&runs));
    Ok(Report {
        target: target.describe(),
        runs,
        slo,
    })
}
