//! `kiln up`: the control plane (tracking, registry, releases) and the data plane (every
//! `[deploy.NAME]` of the project, monitored, with its prediction log) in one process on one
//! store — the embedded default for a single machine.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser};

use super::data::{Ctx, ProjectArgs};
use super::serve::ServeArgs;
use super::server::ServerArgs;

#[derive(Args, Debug)]
pub struct UpArgs {
    #[command(flatten)]
    pub project: ProjectArgs,
    /// Address both planes bind.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Control plane port (MLflow tracking and registry, Kiln's API); 0 lets the OS choose.
    #[arg(long, default_value_t = 5000)]
    pub port: u16,
    /// Data plane port (OIP v2, MLflow scoring, /metrics); 0 lets the OS choose.
    #[arg(long, default_value_t = 8000)]
    pub serve_port: u16,
    /// Run `kiln apply` first, so what kiln.toml declares is trained, released and served.
    #[arg(long)]
    pub apply: bool,
    /// Where the prediction log goes (default: the artifact store, where `kiln monitor
    /// report` reads it).
    #[arg(long)]
    pub prediction_log: Option<String>,
    /// How often the monitor evaluates, in milliseconds (default: from `[monitor.*]`).
    #[arg(long)]
    pub monitor_interval_ms: Option<u64>,
    /// HTTP worker threads of each plane (default: one per core).
    #[arg(long, env = "KILN_WORKERS")]
    pub workers: Option<usize>,
}

#[derive(Parser)]
struct ServeCli {
    #[command(flatten)]
    args: ServeArgs,
}

#[derive(Parser)]
struct ServerCli {
    #[command(flatten)]
    args: ServerArgs,
}

fn common(p: &ProjectArgs) -> Vec<String> {
    let mut v = vec!["--data-dir".to_string(), p.data_dir.display().to_string()];
    if let Some(s) = &p.store {
        v.extend(["--store".to_string(), s.clone()]);
    }
    if let Some(a) = &p.artifacts {
        v.extend(["--artifacts".to_string(), a.clone()]);
    }
    v
}

/// The data plane's arguments for the project's deployments, or None when it declares none.
pub fn serve_args(
    ctx: &Ctx,
    host: &str,
    port: u16,
    prediction_log: Option<String>,
    monitor_interval_ms: Option<u64>,
    workers: Option<usize>,
    extra: &[String],
) -> anyhow::Result<Option<ServeArgs>> {
    let f = &ctx.project.file;
    let mut argv = vec![
        "serve".to_string(),
        "--host".into(),
        host.into(),
        "--port".into(),
        port.to_string(),
        "--config".into(),
        ctx.project.path.display().to_string(),
    ];
    let mut any = false;
    for (name, d) in &f.deploy {
        let Some(model) = &d.model else {
            continue;
        };
        // A file path is relative to the project; a registry reference stays as it is.
        let local = ctx.project.dir.join(model);
        let target = if local.exists() {
            local.display().to_string()
        } else {
            model.clone()
        };
        argv.extend(["--model".into(), format!("{name}={target}")]);
        any = true;
    }
    if !any {
        return Ok(None);
    }
    argv.extend(common(&ctx.args));
    argv.push("--monitor".into());
    if let Some(ms) = monitor_interval_ms {
        argv.extend(["--monitor-interval-ms".into(), ms.to_string()]);
    }
    // By default into the artifact store, where `kiln monitor report` looks for it.
    let log = prediction_log.unwrap_or_else(|| match &ctx.args.artifacts {
        Some(a) => a.clone(),
        None => ctx.args.data_dir.join("artifacts").display().to_string(),
    });
    argv.extend(["--prediction-log".into(), log]);
    if let Some(w) = workers {
        argv.extend(["--workers".into(), w.to_string()]);
    }
    argv.extend(extra.iter().cloned());
    let cli = ServeCli::try_parse_from(&argv).context("the data plane's settings")?;
    Ok(Some(cli.args))
}

/// The control plane's arguments on the project's stores.
pub fn server_args(ctx: &Ctx, host: &str, port: u16) -> anyhow::Result<ServerArgs> {
    let mut argv = vec![
        "server".to_string(),
        "--host".into(),
        host.into(),
        "--port".into(),
        port.to_string(),
    ];
    argv.extend(common(&ctx.args));
    Ok(ServerCli::try_parse_from(&argv)
        .context("the control plane's settings")?
        .args)
}

pub fn run(a: UpArgs) -> anyhow::Result<ExitCode> {
    let ctx = Ctx::new(&a.project)?;
    if a.apply {
        let actor = std::env::var("USER").unwrap_or_else(|_| "kiln".into());
        let outcome = super::apply::run_apply(&ctx, &actor, None, false, true)?;
        for (d, m) in &outcome.refusals {
            eprintln!("note: deploy.{d} keeps its current version: {m}");
        }
    }
    let server = server_args(&ctx, &a.host, a.port)?;
    let serve = serve_args(
        &ctx,
        &a.host,
        a.serve_port,
        a.prediction_log.clone(),
        a.monitor_interval_ms,
        a.workers,
        &[],
    )?;
    drop(ctx);
    let rt = super::server::runtime(a.workers)?;
    rt.block_on(async move {
        let control = super::server::serve(
            server,
            super::server::announce("Control plane listening on"),
            super::server::shutdown_signal(),
        );
        match serve {
            Some(s) => {
                let data = super::serve::serve(
                    s,
                    super::server::announce("Data plane listening on"),
                    super::server::shutdown_signal(),
                );
                let (c, d) = tokio::join!(control, data);
                c.context("control plane")?;
                d.context("data plane")?;
            }
            None => {
                eprintln!(
                    "no [deploy.NAME] declares a model: running the control plane only \
                     (add a [deploy.NAME] section with model = \"MODEL@ALIAS\" to serve it)"
                );
                control.await.context("control plane")?;
            }
        }
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
