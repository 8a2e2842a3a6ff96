//! `kiln monitor report DEPLOYMENT`: what the prediction log says about a deployment — input
//! drift against the training profile (whole range and per window, with the drift onset),
//! prediction drift, realised metrics per version once feedback labels arrive, latency of
//! the logged requests against the latency SLO, and where the SLOs stand as the monitor
//! last saw them. Text, or `--json`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use kiln_monitor::health::{HealthOptions, HealthReport, Windows, assess, render_text};
use serde_json::{Value, json};

use super::data::{Ctx, ProjectArgs};
use super::incidents::parse_duration_ms;

#[derive(Args, Debug)]
pub struct MonitorArgs {
    #[command(flatten)]
    pub project: ProjectArgs,
    #[command(subcommand)]
    pub command: MonitorCommand,
}

#[derive(Subcommand, Debug)]
pub enum MonitorCommand {
    /// A deployment's health over the recent prediction log.
    Report(ReportArgs),
}

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// The deployment: the name the model is served under (`kiln serve --model NAME=…`).
    pub deployment: String,
    /// How far back to look, e.g. `30m`, `6h`, `7d`.
    #[arg(long, default_value = "24h")]
    pub since: String,
    /// Cut the range into windows of this length (aligned to the epoch), e.g. `1h`
    /// (default: `[monitor.NAME].drift.window`, else 1h).
    #[arg(long)]
    pub window: Option<String>,
    /// Cut the range into windows of this many logged rows instead.
    #[arg(long, conflicts_with = "window")]
    pub rows: Option<usize>,
    /// Where `kiln serve --prediction-log` writes (default: the artifact store).
    #[arg(long, env = "KILN_PREDICTION_LOG", value_name = "URL_OR_DIR")]
    pub prediction_log: Option<String>,
    /// The drift reference: a profile JSON, a package (folder or manifest.json) or a data
    /// file (default: the training profile of `[deploy.NAME].model` in the registry).
    #[arg(long)]
    pub reference: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: MonitorArgs) -> anyhow::Result<ExitCode> {
    match a.command {
        MonitorCommand::Report(r) => report(&a.project, r),
    }
}

/// The reference profile, the model's class names and where they came from.
struct Reference {
    profile: Option<kiln_data::profile::Profile>,
    class_labels: Vec<String>,
    source: String,
}

fn reference(ctx: &Ctx, a: &ReportArgs) -> anyhow::Result<Reference> {
    if let Some(path) = &a.reference {
        let profile = super::data::load_reference(path)?;
        let class_labels = kiln_ml::Package::open(path)
            .ok()
            .and_then(|p| p.native_model().ok())
            .map(|m| m.class_labels)
            .unwrap_or_default();
        return Ok(Reference {
            profile: Some(profile),
            class_labels,
            source: path.display().to_string(),
        });
    }
    let Some(model_ref) = ctx
        .project
        .file
        .deploy
        .get(&a.deployment)
        .and_then(|d| d.model.clone())
    else {
        return Ok(Reference {
            profile: None,
            class_labels: vec![],
            source: format!(
                "none: no [deploy.{}].model in {} and no --reference",
                a.deployment,
                ctx.args.config.display()
            ),
        });
    };
    let store = ctx.store()?;
    let artifacts = ctx.artifacts()?;
    ctx.rt.block_on(async {
        let mv = super::serve::resolve_ref(store, &model_ref)
            .await
            .with_context(|| format!("[deploy.{}].model = {model_ref:?}", a.deployment))?;
        let fetched = kiln_release::fetch_version(store, &artifacts, &mv)
            .await
            .with_context(|| format!("cannot fetch {} version {}", mv.name, mv.version))?;
        let source = format!(
            "the training profile of {} version {} ({model_ref})",
            mv.name, mv.version
        );
        let Ok(pkg) = kiln_ml::Package::open(fetched.dir()) else {
            return Ok(Reference {
                profile: None,
                class_labels: vec![],
                source: format!(
                    "none: {} version {} is not a Kiln package",
                    mv.name, mv.version
                ),
            });
        };
        let profile = match &pkg.manifest().training_profile {
            Some(p) => Some(
                serde_json::from_value(p.clone())
                    .context("the package's training profile cannot be read")?,
            ),
            None => None,
        };
        let class_labels = pkg
            .native_model()
            .map(|m| m.class_labels)
            .unwrap_or_default();
        Ok(Reference {
            source: if profile.is_some() {
                source
            } else {
                format!(
                    "none: {} version {} has no training profile",
                    mv.name, mv.version
                )
            },
            profile,
            class_labels,
        })
    })
}

fn report(project: &ProjectArgs, a: ReportArgs) -> anyhow::Result<ExitCode> {
    let ctx = Ctx::new_optional_project(project)?;
    let name = a.deployment.clone();
    let since_ms = parse_duration_ms(&a.since)
        .filter(|ms| *ms > 0)
        .with_context(|| {
            format!(
                "--since {:?}: expected a duration like 30m, 6h, 7d",
                a.since
            )
        })?;
    let monitor = ctx
        .project
        .file
        .monitor
        .get(&name)
        .cloned()
        .unwrap_or_default();
    let drift_cfg = monitor.drift.clone().unwrap_or_default();
    let windows = match (&a.window, a.rows, drift_cfg.rows) {
        (_, Some(0), _) => bail!("--rows 0: expected at least one row per window"),
        (_, Some(n), _) => Windows::Rows(n),
        (Some(w), None, _) => Windows::Time(
            parse_duration_ms(w)
                .filter(|ms| *ms > 0)
                .with_context(|| format!("--window {w:?}: expected a duration like 10m, 1h"))?,
        ),
        (None, None, Some(n)) if n > 0 => Windows::Rows(n),
        (None, None, _) => Windows::Time(
            drift_cfg
                .window
                .as_deref()
                .and_then(parse_duration_ms)
                .filter(|ms| *ms > 0)
                .unwrap_or(3_600_000),
        ),
    };
    let drift = drift_cfg
        .options()
        .map_err(|e| anyhow::anyhow!("[monitor.{name}].{e}"))?;
    let log = match &a.prediction_log {
        Some(url) => kiln_store::ArtifactStore::open(url)
            .with_context(|| format!("--prediction-log {url}: cannot open the store"))?,
        None => ctx.artifacts()?,
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as i64;
    let from = now - since_ms;
    let table = ctx
        .rt
        .block_on(kiln_monitor::predlog::read_predictions(
            &log,
            &name,
            from,
            now + 1,
        ))
        .context("cannot read the prediction log")?;
    let store = ctx.store()?;
    let feedback: HashMap<String, Value> = ctx
        .rt
        .block_on(store.feedback(&name))?
        .into_iter()
        .map(|f| (f.request_id, f.label))
        .collect();
    let reference = reference(&ctx, &a)?;
    let opts = HealthOptions {
        drift,
        windows,
        min_drift_rows: drift_cfg.min_rows.unwrap_or(30).max(1),
        class_labels: reference.class_labels.clone(),
        ..HealthOptions::default()
    };
    let health = assess(
        &table,
        &feedback,
        reference.profile.as_ref(),
        &opts,
        from,
        now + 1,
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let slo = slo_status(&ctx, &name, &health)?;
    let incidents: Vec<Value> = ctx
        .rt
        .block_on(store.incidents(true))?
        .into_iter()
        .filter(|i| i.subject == name)
        .map(|i| json!({"id": i.id, "title": i.title, "opened_at": i.opened_at}))
        .collect();
    if a.json {
        let out = json!({
            "deployment": name,
            "reference": reference.source,
            "health": health,
            "slo": slo,
            "open_incidents": incidents,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    if table.height() == 0 {
        println!(
            "deployment {name}: nothing logged in the last {} (is `kiln serve --prediction-log` pointed at {}?)",
            a.since,
            a.prediction_log.as_deref().unwrap_or("the artifact store")
        );
    } else {
        print!("{}", render_text(&name, &health));
    }
    println!("\nreference: {}", reference.source);
    print!("{}", slo_text(&slo));
    if !incidents.is_empty() {
        println!("\nopen incidents:");
        for i in &incidents {
            println!("  #{}  {}", i["id"], i["title"].as_str().unwrap_or(""));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The SLOs of `[deploy.NAME].slo`: each logged version's share of requests within the
/// latency objective, and the burn rates and budget the monitor last saved.
fn slo_status(ctx: &Ctx, name: &str, health: &HealthReport) -> anyhow::Result<Value> {
    let Some(slo) = ctx
        .project
        .file
        .deploy
        .get(name)
        .and_then(|d| d.slo.clone())
    else {
        return Ok(Value::Null);
    };
    let saved = ctx
        .rt
        .block_on(ctx.store()?.monitor_state(&format!("slo/{name}")))?;
    let versions: Vec<Value> = health
        .versions
        .iter()
        .map(|v| json!({"version": v.version, "requests": v.requests, "p99_ms": v.p99_ms}))
        .collect();
    Ok(json!({
        "objectives": {
            "p99_ms": slo.p99_ms,
            "latency_target": slo.latency_target,
            "availability": slo.availability,
            "period_days": slo.period_days,
        },
        "logged": versions,
        "monitor": saved,
    }))
}

fn slo_text(slo: &Value) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    if slo.is_null() {
        return s;
    }
    let _ = writeln!(s, "\nSLOs:");
    let o = &slo["objectives"];
    if let Some(ms) = o["p99_ms"].as_f64() {
        let _ = writeln!(s, "  latency: p99 ≤ {ms} ms");
        for v in slo["logged"].as_array().into_iter().flatten() {
            if let Some(p99) = v["p99_ms"].as_f64() {
                let _ = writeln!(
                    s,
                    "    v{}: logged p99 {p99:.2} ms over {} requests: {}",
                    v["version"].as_str().unwrap_or("?"),
                    v["requests"],
                    if p99 <= ms { "within" } else { "OVER" }
                );
            }
        }
    }
    if let Some(a) = o["availability"].as_f64() {
        let _ = writeln!(s, "  availability: {a}%");
    }
    match slo["monitor"]["series"].as_array() {
        Some(series) if !series.is_empty() => {
            let at = slo["monitor"]["at"].as_i64().unwrap_or(0);
            let _ = writeln!(s, "  as the monitor saw it at {}:", super::client::time(at));
            for x in series {
                let labels = &x["labels"];
                let vals = &x["values"];
                let budget = vals["error_budget_remaining"].as_f64();
                let burns: Vec<String> = vals
                    .as_object()
                    .into_iter()
                    .flatten()
                    .filter(|(k, _)| k.starts_with("burn_rate_"))
                    .filter_map(|(k, v)| {
                        v.as_f64()
                            .map(|v| format!("{} {v:.2}", &k["burn_rate_".len()..]))
                    })
                    .collect();
                let _ = writeln!(
                    s,
                    "    {} v{}: budget left {}; burn rate {}",
                    labels["slo"].as_str().unwrap_or("?"),
                    labels["version"].as_str().unwrap_or("?"),
                    budget.map_or("-".to_string(), |b| format!("{:.1}%", b * 100.0)),
                    if burns.is_empty() {
                        "-".to_string()
                    } else {
                        burns.join(", ")
                    }
                );
            }
        }
        _ => {
            let _ = writeln!(
                s,
                "  (no burn rates saved yet: `kiln serve --monitor` saves them)"
            );
        }
    }
    s
}
