//! `kiln lineage NAME@ALIAS`: version → package digest → run → datasets (digests, validation)
//! → code commit → gate results; `kiln lineage --dataset NAME@DIGEST`: which versions and
//! aliases were built from a dataset. Text, or `--json`.

use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;
use kiln_core::entities::ModelVersion;
use serde_json::json;

use super::client::time;
use super::data::{Ctx, ProjectArgs};

#[derive(Args, Debug)]
pub struct LineageArgs {
    #[command(flatten)]
    pub project: ProjectArgs,
    /// `NAME@ALIAS`, `NAME/VERSION` or `models:/…`.
    #[arg(required_unless_present = "dataset", conflicts_with = "dataset")]
    pub model: Option<String>,
    /// `NAME@DIGEST` (8 or more hex characters of the digest): the versions built from it.
    #[arg(long)]
    pub dataset: Option<String>,
    #[arg(long)]
    pub json: bool,
}

/// A version from `NAME@ALIAS`, `NAME/VERSION`, `models:/NAME@ALIAS` or `models:/NAME/V`,
/// with the alias when one was named.
pub fn resolve(ctx: &Ctx, reference: &str) -> anyhow::Result<(ModelVersion, Option<String>)> {
    let store = ctx.store()?;
    let rest = reference.strip_prefix("models:/").unwrap_or(reference);
    if let Some((name, alias)) = rest.split_once('@') {
        let mv = ctx
            .rt
            .block_on(store.get_model_version_by_alias(name, alias))
            .with_context(|| format!("no version of `{name}` has alias `{alias}`"))?;
        return Ok((mv, Some(alias.to_string())));
    }
    if let Some((name, v)) = rest.rsplit_once('/') {
        let mv = ctx
            .rt
            .block_on(store.get_model_version(name, v))
            .with_context(|| format!("no version {v} of `{name}`"))?;
        return Ok((mv, None));
    }
    bail!("{reference:?}: expected NAME@ALIAS or NAME/VERSION")
}

pub fn run(a: LineageArgs) -> anyhow::Result<ExitCode> {
    let ctx = Ctx::new(&a.project)?;
    match (&a.model, &a.dataset) {
        (_, Some(d)) => dataset(&ctx, d, a.json),
        (Some(m), None) => version(&ctx, m, a.json),
        (None, None) => bail!("give a model (NAME@ALIAS) or --dataset NAME@DIGEST"),
    }
}

fn version(ctx: &Ctx, reference: &str, as_json: bool) -> anyhow::Result<ExitCode> {
    let store = ctx.store()?;
    let artifacts = ctx.artifacts()?;
    let (mv, _) = resolve(ctx, reference)?;
    let lineage = ctx
        .rt
        .block_on(kiln_release::version_lineage(store, &artifacts, &mv))?;
    let evaluations = ctx
        .rt
        .block_on(store.version_evaluations(&mv.name, &mv.version))?;
    if as_json {
        let mut v = serde_json::to_value(&lineage)?;
        v["gate_evaluations"] = json!(evaluations);
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    let l = &lineage;
    println!("{reference}");
    println!(
        "  version     {} of `{}` (stage {}{})",
        l.version,
        l.model,
        l.stage,
        if l.aliases.is_empty() {
            String::new()
        } else {
            format!("; aliases: {}", l.aliases.join(", "))
        }
    );
    match &l.package_digest {
        Some(d) => println!(
            "  package     sha256 {d} ({}, {})",
            l.format.as_deref().unwrap_or("?"),
            if l.signed == Some(true) {
                "signed"
            } else {
                "unsigned"
            }
        ),
        None => println!(
            "  model       {} ({})",
            l.location.as_deref().unwrap_or(&l.source),
            l.kind.map_or("unknown kind", |k| k.as_str())
        ),
    }
    if let Some(e) = &l.error {
        println!("  files       NOT READABLE: {e}");
    }
    match &l.run {
        Some(r) => println!(
            "  run         {} (experiment {}, {}{})",
            r.id,
            r.experiment_id.as_deref().unwrap_or("?"),
            r.status.as_deref().unwrap_or("?"),
            r.start_time
                .map_or(String::new(), |t| format!(", started {}", time(t)))
        ),
        None => println!("  run         (none recorded)"),
    }
    if l.datasets.is_empty() {
        println!("  datasets    (none recorded)");
    }
    for d in &l.datasets {
        println!(
            "  dataset     {}@{} ({}{}{})",
            d.name,
            kiln_release::short(&d.digest),
            d.role,
            d.rows.map_or(String::new(), |r| format!(", {r} rows")),
            match d.validated {
                Some(true) => ", validation passed",
                Some(false) => ", validation FAILED",
                None if d.role == "features" => "",
                None => ", never validated",
            }
        );
    }
    println!(
        "  code        {}",
        match (&l.code_commit, l.code_dirty) {
            (Some(c), Some(true)) => format!("{c} (with uncommitted changes)"),
            (Some(c), _) => c.clone(),
            (None, _) => "(no commit recorded)".into(),
        }
    );
    if evaluations.is_empty() {
        println!("  gates       (never evaluated)");
    }
    for e in &evaluations {
        let passed = e.gates.iter().filter(|g| g.passed).count();
        println!(
            "  gates       evaluation {} for `{}`: {} ({passed}/{} passed) by {} at {}",
            e.id,
            e.alias,
            e.outcome.as_str(),
            e.gates.len(),
            e.actor,
            time(e.created_at)
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn dataset(ctx: &Ctx, reference: &str, as_json: bool) -> anyhow::Result<ExitCode> {
    let Some((name, digest)) = reference.split_once('@') else {
        bail!("--dataset {reference:?}: expected NAME@DIGEST");
    };
    let store = ctx.store()?;
    let l = ctx
        .rt
        .block_on(kiln_release::dataset_lineage(store, name, digest))?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&l)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{}@{} ({}{})",
        l.name,
        kiln_release::short(&l.digest),
        l.rows
            .map_or("rows unknown".into(), |r| format!("{r} rows")),
        match l.validated {
            Some(true) => ", validation passed",
            Some(false) => ", validation FAILED",
            None => "",
        }
    );
    if l.versions.is_empty() {
        println!("  no registered version was built from it");
    }
    for v in &l.versions {
        println!(
            "  {} version {} (stage {}{})",
            v.model,
            v.version,
            v.stage,
            if v.aliases.is_empty() {
                String::new()
            } else {
                format!("; aliases: {}", v.aliases.join(", "))
            }
        );
        for d in &v.deployments {
            println!(
                "    deployed as `{}` at {} on {} since {}{}",
                d.name,
                d.endpoint,
                d.host,
                time(d.started_at),
                d.stopped_at
                    .map_or(String::new(), |t| format!(", stopped {}", time(t)))
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
