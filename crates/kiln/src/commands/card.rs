//! `kiln card NAME@ALIAS`: a model card in Markdown — purpose (from `[release.NAME]` or the
//! training definition), the training data and its validation, metrics overall and per
//! segment, the release gates the version passed, its signature, and its limitations.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use kiln_core::entities::ModelVersion;
use kiln_release::Fetched;
use serde_json::Value;

use super::client::time;
use super::data::{Ctx, ProjectArgs};
use super::lineage::resolve;

#[derive(Args, Debug)]
pub struct CardArgs {
    #[command(flatten)]
    pub project: ProjectArgs,
    /// `NAME@ALIAS`, `NAME/VERSION` or `models:/…`.
    pub model: String,
    /// Write the card here (default: standard output).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn run(a: CardArgs) -> anyhow::Result<ExitCode> {
    let ctx = Ctx::new(&a.project)?;
    let store = ctx.store()?;
    let artifacts = ctx.artifacts()?;
    let (mv, alias) = resolve(&ctx, &a.model)?;
    let fetched = ctx
        .rt
        .block_on(kiln_release::fetch_version(store, &artifacts, &mv))
        .with_context(|| format!("cannot read version {} of `{}`", mv.version, mv.name))?;
    let md = card(&ctx, &mv, alias.as_deref(), &fetched)?;
    match &a.out {
        Some(path) => {
            std::fs::write(path, &md)
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!("wrote {}", path.display());
        }
        None => print!("{md}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// Metrics that describe the run rather than the model.
const RESOURCE_METRICS: [&str; 6] = [
    "wall_seconds",
    "cpu_seconds",
    "peak_rss_mb",
    "cost_estimate",
    "best_iteration",
    "train_seconds",
];

fn num(x: f64) -> String {
    if x == x.trunc() && x.abs() < 1e15 {
        format!("{x}")
    } else {
        format!("{x:.4}")
    }
}

fn card(
    ctx: &Ctx,
    mv: &ModelVersion,
    alias: Option<&str>,
    fetched: &Fetched,
) -> anyhow::Result<String> {
    let store = ctx.store()?;
    let name = &mv.name;
    let release_cfg = ctx.project.file.release.get(name);
    let training = ctx
        .project
        .file
        .train
        .values()
        .find(|t| t.register.as_deref() == Some(name.as_str()));
    let mut md = String::new();
    let title = match alias {
        Some(a) => format!("{name}@{a} (version {})", mv.version),
        None => format!("{name} version {}", mv.version),
    };
    writeln!(md, "# Model card: {title}\n")?;

    writeln!(md, "## Purpose\n")?;
    let purpose = release_cfg
        .and_then(|r| r.purpose.clone())
        .or_else(|| training.and_then(|t| t.description.clone()))
        .or_else(|| mv.description.clone());
    writeln!(
        md,
        "{}\n",
        purpose.unwrap_or_else(|| format!(
            "(not stated: add `purpose` to `[release.{name}]` in kiln.toml)"
        ))
    )?;

    // ---------------------------------------------------------------- model
    writeln!(md, "## Model\n")?;
    writeln!(md, "| | |\n|---|---|")?;
    writeln!(md, "| registered model | `{name}` version {} |", mv.version)?;
    if !mv.aliases.is_empty() {
        writeln!(md, "| aliases | {} |", mv.aliases.join(", "))?;
    }
    writeln!(md, "| stage | {} |", mv.current_stage)?;
    writeln!(md, "| kind | {} |", fetched.kind().as_str())?;
    if let Some(f) = fetched.format() {
        writeln!(md, "| format | {f} |")?;
    }
    let manifest = fetched.package().map(|p| p.manifest());
    if let Some(p) = fetched.package() {
        writeln!(md, "| package digest | `{}` |", p.digest())?;
        writeln!(
            md,
            "| signed | {} |",
            if p.is_signed() { "yes" } else { "no" }
        )?;
    }
    if let Some(m) = manifest {
        if let Some(task) = &m.task {
            let t = serde_json::to_value(task)?;
            let kind = t["kind"].as_str().unwrap_or("?").to_string();
            let task = match t["classes"].as_u64() {
                Some(n) => format!("{kind} ({n} classes)"),
                None => kind,
            };
            writeln!(md, "| task | {task} |")?;
        }
        if let Some(alg) = m.params.get("algorithm").and_then(Value::as_str) {
            writeln!(md, "| algorithm | {alg} |")?;
        }
        writeln!(
            md,
            "| created | {} (Kiln {}) |",
            m.created_at, m.kiln_version
        )?;
        if let Some(c) = &m.lineage.code_commit {
            writeln!(
                md,
                "| code commit | `{c}`{} |",
                if m.lineage.code_dirty == Some(true) {
                    " with uncommitted changes"
                } else {
                    ""
                }
            )?;
        }
    }
    if let Some(r) = &mv.run_id {
        writeln!(md, "| training run | `{r}` |")?;
    }
    writeln!(md)?;
    if let Some(m) = manifest {
        let params: Vec<String> = m
            .params
            .iter()
            .filter(|(k, _)| k.as_str() != "algorithm")
            .map(|(k, v)| format!("`{k}` = {v}"))
            .collect();
        if !params.is_empty() {
            writeln!(md, "Parameters: {}.\n", params.join(", "))?;
        }
    }

    // ---------------------------------------------------------------- data
    writeln!(md, "## Training data\n")?;
    let datasets = manifest
        .map(|m| m.lineage.datasets.clone())
        .unwrap_or_default();
    if datasets.is_empty() {
        writeln!(md, "The version records no training datasets.\n")?;
    } else {
        writeln!(
            md,
            "| dataset | role | digest | rows | validation |\n|---|---|---|--:|---|"
        )?;
        for d in &datasets {
            let stored = ctx
                .rt
                .block_on(store.get_dataset_version(&d.name, &d.digest))
                .ok();
            let rows = stored
                .as_ref()
                .map_or("-".to_string(), |s| s.row_count.to_string());
            let validation = match stored.as_ref().and_then(|s| s.validation_json.clone()) {
                None if d.role == "features" => "built by the feature pipeline".to_string(),
                None => "never validated".to_string(),
                Some(j) => {
                    let v: Value = serde_json::from_str(&j).unwrap_or(Value::Null);
                    let verdict = if v["success"].as_bool() == Some(true) {
                        "passed"
                    } else {
                        "FAILED"
                    };
                    format!(
                        "{verdict}: {} rules, {} rows quarantined ({})",
                        v["rules"],
                        v["quarantined_rows"],
                        time(v["validated_at"].as_i64().unwrap_or(0))
                    )
                }
            };
            writeln!(
                md,
                "| {} | {} | `{}` | {rows} | {validation} |",
                d.name,
                d.role,
                kiln_release::short(&d.digest)
            )?;
        }
        writeln!(md)?;
    }
    if let Some(t) = manifest.and_then(|m| m.transform.as_ref()) {
        writeln!(
            md,
            "Features: the packaged transform turns {} raw columns into the model's inputs; \
             serving replays it on raw rows.\n",
            t.inputs.len()
        )?;
    }

    // ---------------------------------------------------------------- metrics
    let eval = ctx
        .rt
        .block_on(kiln_release::evaluation(store, fetched, mv));
    let metrics = ctx.rt.block_on(kiln_release::evaluation::version_metrics(
        store, fetched, mv,
    ));
    writeln!(md, "## Evaluation\n")?;
    if let Some(e) = &eval {
        writeln!(
            md,
            "Measured on `{}` (digest `{}`); for a Kiln package, its test split.\n",
            e.dataset,
            kiln_release::short(&e.digest)
        )?;
    }
    // Overall: `train_auc`, `valid_auc`, `test_auc` … as one row per metric.
    let splits = ["train", "valid", "test"];
    let mut table: BTreeMap<&str, [Option<f64>; 3]> = BTreeMap::new();
    let mut other: Vec<(&String, f64)> = vec![];
    for (k, v) in &metrics {
        if k.contains('.') || RESOURCE_METRICS.contains(&k.as_str()) {
            continue;
        }
        let split = splits
            .iter()
            .position(|s| k.strip_prefix(s).is_some_and(|r| r.starts_with('_')));
        match split {
            Some(i) => table.entry(&k[splits[i].len() + 1..]).or_default()[i] = Some(*v),
            None => other.push((k, *v)),
        }
    }
    if table.is_empty() && other.is_empty() {
        writeln!(md, "No metrics were recorded.\n")?;
    }
    if !table.is_empty() {
        writeln!(md, "| metric | train | valid | test |\n|---|--:|--:|--:|")?;
        for (k, vals) in &table {
            let cells: Vec<String> = vals.iter().map(|v| v.map_or("-".into(), num)).collect();
            writeln!(md, "| {k} | {} |", cells.join(" | "))?;
        }
        writeln!(md)?;
    }
    if !other.is_empty() {
        writeln!(md, "| metric | value |\n|---|--:|")?;
        for (k, v) in &other {
            writeln!(md, "| {k} | {} |", num(*v))?;
        }
        writeln!(md)?;
    }
    // Per segment: `test.<column>.<value>.<metric>`.
    let mut segments: BTreeMap<(String, String), BTreeMap<String, f64>> = BTreeMap::new();
    for (k, v) in &metrics {
        let parts: Vec<&str> = k.splitn(4, '.').collect();
        if parts.len() == 4 && parts[0] == "test" {
            segments
                .entry((parts[1].to_string(), parts[2].to_string()))
                .or_default()
                .insert(parts[3].to_string(), *v);
        }
    }
    if !segments.is_empty() {
        let cols: Vec<String> = {
            let mut c: Vec<String> = segments.values().flat_map(|m| m.keys().cloned()).collect();
            c.sort();
            c.dedup();
            c
        };
        writeln!(md, "### Per segment (test split)\n")?;
        writeln!(md, "| segment | {} |", cols.join(" | "))?;
        writeln!(md, "|---|{}|", vec!["--:"; cols.len()].join("|"))?;
        for ((col, val), m) in &segments {
            let cells: Vec<String> = cols
                .iter()
                .map(|c| m.get(c).map_or("-".into(), |v| num(*v)))
                .collect();
            writeln!(md, "| {col} = {val} | {} |", cells.join(" | "))?;
        }
        writeln!(md)?;
    }

    // ---------------------------------------------------------------- gates
    writeln!(md, "## Release gates\n")?;
    let evaluations = ctx
        .rt
        .block_on(store.version_evaluations(name, &mv.version))?;
    let shown = evaluations
        .iter()
        .find(|e| alias.is_none_or(|a| e.alias == a) && e.outcome.as_str() != "blocked")
        .or(evaluations.first());
    match shown {
        None => writeln!(md, "No gate evaluation is recorded for this version.\n")?,
        Some(e) => {
            writeln!(
                md,
                "Evaluation {} for `{}`: **{}**, asked by {} at {}{}.\n",
                e.id,
                e.alias,
                e.outcome.as_str(),
                e.actor,
                time(e.created_at),
                e.holder
                    .as_deref()
                    .map_or(String::new(), |h| format!(", against version {h}"))
            )?;
            writeln!(md, "| gate | verdict | detail |\n|---|---|---|")?;
            for g in &e.gates {
                let gate = if g.subject.is_empty() {
                    g.gate.clone()
                } else {
                    format!("{} {}", g.gate, g.subject)
                };
                writeln!(
                    md,
                    "| {gate} | {} | {} |",
                    if g.passed { "pass" } else { "FAIL" },
                    g.message.replace('|', "\\|")
                )?;
            }
            if let Some(r) = &e.override_reason {
                writeln!(md, "\nOverridden by an admin: {r}")?;
            }
            writeln!(md)?;
        }
    }

    // ---------------------------------------------------------------- signature
    writeln!(md, "## Signature\n")?;
    let raw = fetched.raw_inputs();
    if !raw.is_empty() {
        writeln!(
            md,
            "Raw inputs (named columns, encoded by the packaged transform):\n"
        )?;
        writeln!(md, "| column | type |\n|---|---|")?;
        for c in raw {
            writeln!(
                md,
                "| {} | {} |",
                c.name,
                serde_json::to_value(c.dtype)?.as_str().unwrap_or("?")
            )?;
        }
        writeln!(md)?;
    }
    let tensors = |specs: Vec<kiln_ml::TensorSpec>| -> String {
        specs
            .iter()
            .map(|t| format!("`{}` {} {:?}", t.name, t.datatype.as_oip(), t.shape))
            .collect::<Vec<_>>()
            .join(", ")
    };
    writeln!(md, "Model inputs: {}.\n", tensors(fetched.inputs()?))?;
    writeln!(md, "Model outputs: {}.\n", tensors(fetched.outputs()?))?;

    // ---------------------------------------------------------------- limitations
    writeln!(md, "## Limitations\n")?;
    let mut lims: Vec<String> = release_cfg
        .map(|r| r.limitations.clone())
        .unwrap_or_default();
    // The weakest segment, measured: where the model is least reliable.
    if let Some(overall_auc) = metrics.get("test_auc") {
        let worst = segments
            .iter()
            .filter_map(|((c, v), m)| m.get("auc").map(|a| (c, v, *a)))
            .min_by(|a, b| a.2.total_cmp(&b.2));
        if let Some((c, v, a)) = worst
            && a < *overall_auc
        {
            lims.push(format!(
                "Weakest segment: {c} = {v}, test AUC {} against {} overall.",
                num(a),
                num(*overall_auc)
            ));
        }
    }
    if manifest.is_some_and(|m| m.lineage.code_dirty == Some(true)) {
        lims.push("Trained from a working tree with uncommitted changes: the code commit does not fully reproduce it.".into());
    }
    if lims.is_empty() {
        writeln!(
            md,
            "None stated: add `limitations` to `[release.{name}]` in kiln.toml.\n"
        )?;
    } else {
        for l in lims {
            writeln!(md, "- {l}")?;
        }
        writeln!(md)?;
    }
    Ok(md)
}
