//! `kiln alerts`: the alerts a `kiln serve --monitor` holds for a deployment (pending,
//! firing, recently resolved), and silences: `kiln alerts silence alertname=DataDrift
//! --deployment delay --for 24h --comment "…"`. Silences live in the metadata store under
//! `silences/NAME`; the monitor reads them at every evaluation.

use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use kiln_monitor::alert::{EngineState, SilenceSpec, Silences};
use kiln_monitor::indicator::Matcher;

use super::client::time;
use super::data::{Ctx, ProjectArgs};
use super::incidents::parse_duration_ms;

#[derive(Args, Debug)]
pub struct AlertsArgs {
    #[command(flatten)]
    pub project: ProjectArgs,
    #[command(subcommand)]
    pub command: AlertsCommand,
}

#[derive(Subcommand, Debug)]
pub enum AlertsCommand {
    /// Alerts of a deployment as its monitor last saved them, and its silences.
    List {
        #[arg(long)]
        deployment: String,
        #[arg(long)]
        json: bool,
    },
    /// Mute the alerts whose labels match every matcher (`name=value`, `name!=value`,
    /// `name=~regex`, `name!~regex`) for a while; they keep their state but are not sent.
    Silence {
        #[arg(required = true, value_name = "MATCHER")]
        matchers: Vec<String>,
        #[arg(long)]
        deployment: String,
        /// How long, e.g. `2h`, `1d`.
        #[arg(long = "for", value_name = "DURATION")]
        duration: String,
        /// Why (required: the next on-call reads it).
        #[arg(long)]
        comment: String,
        #[arg(long, env = "USER", default_value = "unknown")]
        by: String,
    },
    /// End a silence now.
    Expire {
        id: String,
        #[arg(long)]
        deployment: String,
    },
}

fn key(deployment: &str) -> String {
    format!("silences/{deployment}")
}

pub fn load_silences(
    ctx: &Ctx,
    store: &kiln_store::Store,
    deployment: &str,
) -> anyhow::Result<Silences> {
    match ctx.rt.block_on(store.monitor_state(&key(deployment)))? {
        None => Ok(Silences::new()),
        Some(v) => serde_json::from_value(v).context("the stored silences do not read"),
    }
}

pub fn run(a: AlertsArgs) -> anyhow::Result<ExitCode> {
    let ctx = Ctx::new_optional_project(&a.project)?;
    let store = ctx.store()?;
    let now = kiln_store::now_ms();
    match a.command {
        AlertsCommand::List { deployment, json } => {
            let state: Option<EngineState> = ctx
                .rt
                .block_on(store.monitor_state(&format!("alerts/{deployment}")))?
                .map(serde_json::from_value)
                .transpose()
                .context("the stored alert state does not read")?;
            let silences = load_silences(&ctx, store, &deployment)?;
            if json {
                let v = serde_json::json!({
                    "alerts": state.as_ref().map(|s| &s.alerts.alerts),
                    "silences": silences,
                });
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(ExitCode::SUCCESS);
            }
            match &state {
                None => println!(
                    "no alert state saved for `{deployment}` (is `kiln serve --monitor` watching it?)"
                ),
                Some(s) if s.alerts.alerts.is_empty() => println!("no alerts"),
                Some(s) => {
                    for a in &s.alerts.alerts {
                        let labels: Vec<String> =
                            a.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                        let since = a.starts_at_ms.unwrap_or(a.active_at_ms);
                        let muted = silences
                            .list()
                            .any(|x| x.matches(&a.labels) && x.ends_at_ms > now);
                        println!(
                            "{:<9} {:<22} since {}  {}{}",
                            format!("{:?}", a.state).to_lowercase(),
                            a.rule,
                            time(since),
                            labels.join(","),
                            if muted { "  (silenced)" } else { "" }
                        );
                    }
                }
            }
            for x in silences.list().filter(|x| x.ends_at_ms > now) {
                let m: Vec<String> = x.matchers.iter().map(ToString::to_string).collect();
                println!(
                    "silence {} until {} by {}: {} ({})",
                    x.id,
                    time(x.ends_at_ms),
                    x.created_by,
                    m.join(","),
                    x.comment
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        AlertsCommand::Silence {
            matchers,
            deployment,
            duration,
            comment,
            by,
        } => {
            let ms = parse_duration_ms(&duration)
                .filter(|ms| *ms > 0)
                .with_context(|| format!("--for {duration:?}: expected e.g. 30m, 2h, 1d"))?;
            if comment.trim().is_empty() {
                bail!("--comment: say why the alerts are silenced");
            }
            let mut ms_list = vec![];
            for m in &matchers {
                ms_list.push(Matcher::parse(m).map_err(|e| anyhow::anyhow!("{m:?}: {e}"))?);
            }
            let mut silences = load_silences(&ctx, store, &deployment)?;
            let id = silences
                .add(
                    SilenceSpec::for_duration(ms_list, now, ms, by, comment),
                    now,
                )
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            ctx.rt.block_on(
                store.put_monitor_state(&key(&deployment), serde_json::to_value(&silences)?),
            )?;
            println!("silence {id} until {}", time(now + ms));
            Ok(ExitCode::SUCCESS)
        }
        AlertsCommand::Expire { id, deployment } => {
            let mut silences = load_silences(&ctx, store, &deployment)?;
            silences
                .expire(&id, now)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            ctx.rt.block_on(
                store.put_monitor_state(&key(&deployment), serde_json::to_value(&silences)?),
            )?;
            println!("silence {id} expired");
            Ok(ExitCode::SUCCESS)
        }
    }
}
