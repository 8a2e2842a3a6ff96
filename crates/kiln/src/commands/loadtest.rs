//! `kiln loadtest`: loads a model server (OIP v2 or MLflow `/invocations`) at a constant
//! rate (open loop) or through a concurrency sweep, and prints throughput and latency
//! percentiles, with an SLO verdict when one is given. The work is `kiln_loadtest`'s.
//!
//! Exit status: 0 done (and the SLO, if any, met), 1 an SLO objective failed, 2 any other
//! error (the server could not be reached, refused the probe request, bad options).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{ArgGroup, Args};
use kiln_loadtest::{
    Levels, Mode, OpenLoopConfig, Options, Protocol, Slo, SweepConfig, TargetSpec,
};

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("mode").required(true).args(["rate", "concurrency"])))]
pub struct LoadtestArgs {
    /// The server's base URL.
    #[arg(
        long,
        env = "KILN_LOADTEST_URL",
        default_value = "http://127.0.0.1:8000"
    )]
    pub url: String,
    /// `oip` (POST /v2/models/MODEL/infer) or `invocations` (POST /invocations?model=MODEL).
    #[arg(long, default_value = "oip", value_parser = parse_protocol)]
    pub protocol: Protocol,
    /// The model. Required for OIP and for generated bodies (its inputs are read from
    /// GET /v2/models/MODEL).
    #[arg(long)]
    pub model: Option<String>,
    /// Send this file as every request's body instead of generated ones.
    #[arg(long, value_name = "FILE")]
    pub body: Option<PathBuf>,
    /// The Content-Type of a --body file.
    #[arg(long, default_value = "application/json")]
    pub content_type: String,
    /// Rows of random values per generated request (default 1); with --body, the rows the
    /// file holds when they cannot be read from it.
    #[arg(long)]
    pub rows: Option<usize>,
    /// Send generated OIP bodies as binary tensors (Inference-Header-Content-Length).
    #[arg(long, conflicts_with = "body")]
    pub binary: bool,
    /// Seed of the generated values.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,

    /// Open loop: requests per second, each sent at its scheduled time whatever is
    /// outstanding; latency is measured from the scheduled time.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Open loop: the measured period (10s, 500ms, 2m).
    #[arg(long, default_value = "10s", value_parser = kiln_loadtest::parse_duration)]
    pub duration: Duration,
    /// Open loop: a period before it whose requests are not counted; in a sweep, the time
    /// at each level before its first window.
    #[arg(long, default_value = "0s", value_parser = kiln_loadtest::parse_duration)]
    pub warmup: Duration,
    /// Open loop: requests in flight at most; a request due beyond it is dropped and
    /// counted as an error.
    #[arg(long, default_value_t = 1000)]
    pub max_outstanding: usize,

    /// Sweep: closed-loop concurrency levels, `1,2,4,8` or `START:END[:STEP]`.
    #[arg(long, value_parser = kiln_loadtest::parse_levels)]
    pub concurrency: Option<Levels>,
    /// Sweep: one measurement window.
    #[arg(long, default_value = "2s", value_parser = kiln_loadtest::parse_duration)]
    pub window: Duration,
    /// Sweep: a level is stable when the last 3 windows' throughput and p99 are each
    /// within this percentage of their mean.
    #[arg(long, default_value_t = 10.0)]
    pub stability: f64,
    /// Sweep: windows per level at most; a level not stable by then is reported unstable.
    #[arg(long, default_value_t = 10)]
    pub max_windows: usize,

    /// A request not answered within this is an error (`timeout`).
    #[arg(long, default_value = "30s", value_parser = kiln_loadtest::parse_duration)]
    pub timeout: Duration,
    /// Objectives to check, e.g. `p99=5ms,error_rate=0.1%,throughput>=500`; exit 1 when
    /// one fails.
    #[arg(long, value_parser = parse_slo)]
    pub slo: Option<Slo>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

fn parse_protocol(s: &str) -> Result<Protocol, kiln_loadtest::LoadtestError> {
    s.parse()
}

fn parse_slo(s: &str) -> Result<Slo, kiln_loadtest::LoadtestError> {
    Slo::parse(s)
}

pub fn run(args: LoadtestArgs) -> anyhow::Result<ExitCode> {
    let body = match &args.body {
        Some(path) => {
            Some(std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?)
        }
        None => None,
    };
    let mode = match (args.rate, args.concurrency) {
        (Some(rate), _) => Mode::OpenLoop(OpenLoopConfig {
            rate,
            duration: args.duration,
            warmup: args.warmup,
            max_outstanding: args.max_outstanding,
        }),
        (None, Some(levels)) => Mode::Sweep(SweepConfig {
            levels,
            window: args.window,
            stability_pct: args.stability,
            max_windows: args.max_windows,
            warmup: args.warmup,
        }),
        (None, None) => anyhow::bail!("give --rate (open loop) or --concurrency (sweep)"),
    };
    let options = Options {
        target: TargetSpec {
            url: args.url,
            protocol: args.protocol,
            model: args.model,
            body,
            content_type: args.content_type,
            rows: args.rows,
            binary: args.binary,
            seed: args.seed,
        },
        mode,
        timeout: args.timeout,
        slo: args.slo,
    };
    let report = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("kiln-loadtest")
        .build()
        .context("cannot start the async runtime")?
        .block_on(kiln_loadtest::run(&options))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
    }
    Ok(match &report.slo {
        Some(slo) if !slo.pass => ExitCode::from(1),
        _ => ExitCode::SUCCESS,
    })
}
