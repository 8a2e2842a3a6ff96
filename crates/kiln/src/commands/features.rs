//! `kiln data features NAME`: validated inputs → as-of joins, derived columns, encodings and
//! a time split → the feature table and its transform spec, reused while inputs are unchanged.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use kiln_data::Table;
use kiln_store::DatasetVersionInput;

use super::data::{Ctx, FeaturesArgs, render_report, short, thousands};

/// Reads a dataset and, when it declares expectations, validates it: a failed rule stops the
/// build; rows that broke a rule are quarantined and left out.
fn checked_input(
    ctx: &Ctx,
    name: &str,
) -> anyhow::Result<(Table, Option<kiln_data::expect::Mask>)> {
    let table = ctx.read(name, None)?;
    if ctx.project.dataset(name)?.expect.is_empty() {
        ctx.record(name, &table)?;
        return Ok((table, None));
    }
    let (v, version) = ctx.validate(name, &table, None)?;
    let note = match &v.report.quarantine {
        Some(q) => format!(
            "; {} rows quarantined to {q}",
            thousands(v.report.quarantined_rows)
        ),
        None => String::new(),
    };
    if !v.report.success {
        eprint!("{}", render_report(&v.report, version.version));
        bail!("dataset `{name}` failed validation; the feature build stops here");
    }
    eprintln!(
        "validated {name}: {} rules passed on {} rows{note}",
        v.report.rules.len(),
        thousands(v.report.rows)
    );
    Ok((table, Some(v.failed_mask)))
}

pub fn run(ctx: &Ctx, a: FeaturesArgs) -> anyhow::Result<ExitCode> {
    let built = ensure_built(ctx, &a.name, a.force, a.out.clone())?;
    print_build(&built.summary, &built.dir, a.json, built.reused)?;
    Ok(ExitCode::SUCCESS)
}

/// A feature build on disk.
pub struct Built {
    pub dir: PathBuf,
    pub summary: kiln_data::features::BuildSummary,
    /// The build was already there for these inputs and configuration.
    pub reused: bool,
    /// Digests of the datasets read: (name, digest), source first.
    pub inputs: Vec<(String, String)>,
    /// The feature table's own dataset version digest.
    pub table_digest: String,
}

/// Builds feature set `name` unless a build for the same configuration and input bytes is
/// already in place (or `force`). Inputs are validated first (see [`checked_input`]).
pub fn ensure_built(
    ctx: &Ctx,
    name: &str,
    force: bool,
    out: Option<PathBuf>,
) -> anyhow::Result<Built> {
    let cfg = ctx.project.feature_set(name)?.clone();
    let (source, source_mask) = checked_input(ctx, &cfg.source)?;
    let mut joined = Vec::new();
    for j in &cfg.join {
        joined.push((j.dataset.clone(), checked_input(ctx, &j.dataset)?));
    }
    let mut digests: Vec<(&str, &str)> = vec![(cfg.source.as_str(), source.digest.as_str())];
    for (n, (t, _)) in &joined {
        digests.push((n.as_str(), t.digest.as_str()));
    }
    let inputs: Vec<(String, String)> = digests
        .iter()
        .map(|(n, d)| (n.to_string(), d.to_string()))
        .collect();
    let build_digest = kiln_data::features::build_digest(name, &cfg, &digests);
    let out = out.unwrap_or_else(|| {
        ctx.args
            .data_dir
            .join("features")
            .join(name)
            .join(&build_digest[..16])
    });
    let table_path = out.join("features.parquet");
    if !force
        && out.join("build.json").is_file()
        && table_path.is_file()
        && out.join(kiln_data::features::PROFILE_FILE).is_file()
    {
        let summary: kiln_data::features::BuildSummary =
            serde_json::from_slice(&std::fs::read(out.join("build.json"))?)
                .context("cannot read the previous build's summary")?;
        if summary.build_digest == build_digest {
            let table_digest = kiln_data::read::file_digest(&table_path)?;
            return Ok(Built {
                dir: out,
                summary,
                reused: true,
                inputs,
                table_digest,
            });
        }
    }
    let joined_inputs: Vec<kiln_data::features::Input<'_>> = joined
        .iter()
        .map(|(n, (t, m))| kiln_data::features::Input {
            name: n,
            table: t,
            excluded: m.as_ref(),
        })
        .collect();
    let mut output = kiln_data::features::build(
        name,
        &cfg,
        kiln_data::features::Input {
            name: &cfg.source,
            table: &source,
            excluded: source_mask.as_ref(),
        },
        &joined_inputs,
    )
    .with_context(|| format!("cannot build feature set `{name}`"))?;
    kiln_data::features::write_output(&mut output, &out)
        .with_context(|| format!("cannot write feature set `{name}` to {}", out.display()))?;
    // The feature table is itself a dataset version, so runs can log it as their input.
    let table_digest = kiln_data::read::file_digest(&table_path)?;
    let store = ctx.store()?;
    ctx.rt.block_on(
        store.record_dataset_version(DatasetVersionInput {
            name: format!("features.{name}"),
            digest: table_digest.clone(),
            source: table_path.display().to_string(),
            format: "parquet".into(),
            schema_json: serde_json::to_string(&kiln_data::features::schema_of(&output.table))?,
            row_count: output.table.height() as i64,
            bytes: std::fs::metadata(&table_path)
                .map(|m| m.len() as i64)
                .unwrap_or(0),
        }),
    )?;
    Ok(Built {
        dir: out,
        summary: output.summary,
        reused: false,
        inputs,
        table_digest,
    })
}

fn print_build(
    s: &kiln_data::features::BuildSummary,
    out: &Path,
    json: bool,
    reused: bool,
) -> anyhow::Result<()> {
    if json {
        let mut v = serde_json::to_value(s)?;
        v["output"] = serde_json::json!(out.display().to_string());
        v["reused"] = serde_json::json!(reused);
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!(
        "feature set {} {}  build {}",
        s.name,
        if reused { "up to date" } else { "built" },
        short(&s.build_digest)
    );
    println!(
        "  source {} ({} rows, digest {})",
        s.source,
        thousands(s.rows_in),
        short(&s.source_digest)
    );
    for j in &s.joins {
        println!(
            "  as-of join {} (digest {}): {} rows matched, {} without a match",
            j.dataset,
            short(&j.digest),
            thousands(j.matched),
            thousands(j.unmatched)
        );
    }
    println!(
        "  left out: {} quarantined, {} without a label, {} outside the split range",
        thousands(s.quarantined),
        thousands(s.unlabeled),
        thousands(s.outside_split)
    );
    println!(
        "  split: train {}  valid {}  test {}",
        thousands(s.train),
        thousands(s.valid),
        thousands(s.test)
    );
    println!(
        "  label {}; {} features: {}",
        s.label,
        s.features.len(),
        s.features.join(", ")
    );
    println!(
        "  wrote {}/{{features.parquet, spec.json, build.json, profile.json}}",
        out.display()
    );
    Ok(())
}
