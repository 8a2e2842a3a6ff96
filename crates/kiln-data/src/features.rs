//! Feature pipelines: point-in-time joins, derived columns, categorical encodings learned on
//! the training split, and a time-based split. The output is a feature table and the
//! [`TransformSpec`] that serving replays on raw rows, so a row is encoded the same way in
//! training and in production.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use kiln_transform::{DType, Expr as TExpr, Step, TransformSpec};
use polars::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::{EncodingMethod, FeatureConfig};
use crate::error::{DataError, Result};
use crate::read::{ColumnType, Table, physical};

/// The split column of a feature table.
pub const SPLIT_COLUMN: &str = "_split";

/// One input of a build: a dataset read, and which of its rows to leave out (rows that
/// failed validation; they are in that dataset's quarantine file).
pub struct Input<'a> {
    pub name: &'a str,
    pub table: &'a Table,
    pub excluded: Option<&'a BooleanChunked>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JoinSummary {
    pub dataset: String,
    pub digest: String,
    /// Rows of the feature table that found a row within the tolerance.
    pub matched: u64,
    pub unmatched: u64,
}

/// What a build read, produced and left out, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuildSummary {
    pub name: String,
    pub source: String,
    pub source_digest: String,
    pub joins: Vec<JoinSummary>,
    /// Rows in the source dataset.
    pub rows_in: u64,
    /// Source rows left out because they failed validation (see the quarantine file).
    pub quarantined: u64,
    /// Rows left out because their label is missing.
    pub unlabeled: u64,
    /// Rows left out because their split time is missing or at/after `split.end`.
    pub outside_split: u64,
    pub train: u64,
    pub valid: u64,
    pub test: u64,
    pub label: String,
    /// The model's input columns, in order, after encoding.
    pub features: Vec<String>,
    /// sha256 of the transform spec's JSON.
    pub spec_digest: String,
    /// sha256 over the configuration and every input's digest: the build's identity.
    pub build_digest: String,
}

pub struct FeatureOutput {
    /// `keep` columns, `_split`, the label, then the features (Float64).
    pub table: DataFrame,
    /// The spec's raw input columns for the same rows: what a serving request carries.
    pub raw: DataFrame,
    pub spec: TransformSpec,
    pub summary: BuildSummary,
}

/// The identity of a build: the same configuration over the same input bytes gives the same
/// digest, so a finished build can be reused.
pub fn build_digest(name: &str, cfg: &FeatureConfig, inputs: &[(&str, &str)]) -> String {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(serde_json::to_vec(cfg).unwrap_or_default());
    for (n, d) in inputs {
        h.update(b"\0");
        h.update(n.as_bytes());
        h.update(b"=");
        h.update(d.as_bytes());
    }
    hex::encode(h.finalize())
}

/// Builds feature set `name` from `source` and the joined datasets (in `cfg.join` order).
pub fn build(
    name: &str,
    cfg: &FeatureConfig,
    source: Input<'_>,
    joined: &[Input<'_>],
) -> Result<FeatureOutput> {
    if joined.len() != cfg.join.len() {
        return Err(DataError::config(format!(
            "features.{name}: {} joins declared but {} datasets given",
            cfg.join.len(),
            joined.len()
        )));
    }
    let mut types: BTreeMap<String, DType> = source
        .table
        .schema
        .iter()
        .map(|c| (c.name.clone(), c.dtype))
        .collect();
    let rows_in = source.table.rows() as u64;
    let mut df = source.table.df.clone();
    let mut quarantined = 0;
    if let Some(mask) = source.excluded {
        quarantined = mask.sum().unwrap_or(0) as u64;
        df = df.filter(&!mask)?;
    }

    // Point-in-time joins, each keeping the feature table's row order.
    let mut join_summaries = Vec::new();
    for (j, input) in cfg.join.iter().zip(joined) {
        let right_on = j.right_on.clone().unwrap_or_else(|| j.on.clone());
        let ctx =
            |m: String| DataError::config(format!("features.{name}.join({}): {m}", j.dataset));
        for key in j.by.iter().chain([&j.on]) {
            if !types.contains_key(key) {
                return Err(ctx(format!("no column `{key}` in the feature rows")));
            }
        }
        let rt: BTreeMap<&str, DType> = input
            .table
            .schema
            .iter()
            .map(|c| (c.name.as_str(), c.dtype))
            .collect();
        for key in j.by.iter().chain([&right_on]) {
            if !rt.contains_key(key.as_str()) {
                return Err(ctx(format!("no column `{key}` in dataset `{}`", j.dataset)));
            }
        }
        let left_t = types[&j.on];
        let right_t = rt[right_on.as_str()];
        if left_t != right_t || !matches!(left_t, DType::Timestamp | DType::Date | DType::Int) {
            return Err(ctx(format!(
                "`{}` ({left_t}) and `{right_on}` ({right_t}) must both be timestamps, dates or ints",
                j.on
            )));
        }
        let tolerance = parse_tolerance(&j.tolerance, left_t).map_err(ctx)?;
        let bring: Vec<String> = if j.columns.is_empty() {
            input
                .table
                .schema
                .iter()
                .map(|c| c.name.clone())
                .filter(|c| !j.by.contains(c) && *c != right_on)
                .collect()
        } else {
            j.columns.clone()
        };
        let prefix = j.prefix.clone().unwrap_or_default();
        let mut right_cols: Vec<Expr> = j.by.iter().map(|b| col(b.as_str())).collect();
        right_cols.push(col(right_on.as_str()).alias("__kiln_rt"));
        for b in &bring {
            let Some(t) = rt.get(b.as_str()) else {
                return Err(ctx(format!("no column `{b}` in dataset `{}`", j.dataset)));
            };
            let out = format!("{prefix}{b}");
            if types.contains_key(&out) {
                return Err(ctx(format!(
                    "column `{out}` already exists in the feature rows; set `prefix`"
                )));
            }
            types.insert(out.clone(), *t);
            right_cols.push(col(b.as_str()).alias(out));
        }
        let mut right = input.table.df.clone();
        if let Some(mask) = input.excluded {
            right = right.filter(&!mask)?;
        }
        // Rows without a key or time can never match; as-of joins want both sides sorted.
        let mut has_keys = col("__kiln_rt").is_not_null();
        for b in &j.by {
            has_keys = has_keys.and(col(b.as_str()).is_not_null());
        }
        let right = right
            .lazy()
            .select(right_cols)
            .filter(has_keys)
            .sort(["__kiln_rt"], Default::default())
            .collect()?;
        let left = df
            .lazy()
            .with_row_index("__kiln_row", None)
            .with_column(col(j.on.as_str()).alias("__kiln_lt"))
            .sort(
                ["__kiln_lt"],
                SortMultipleOptions::default().with_nulls_last(true),
            )
            .collect()?;
        let joined_df = left.join_asof_by(
            &right,
            "__kiln_lt",
            "__kiln_rt",
            j.by.iter().map(String::as_str).collect::<Vec<_>>(),
            j.by.iter().map(String::as_str).collect::<Vec<_>>(),
            AsofStrategy::Backward,
            Some(tolerance),
            // "Latest at or before": a feature stamped exactly at the row's time is known.
            true,
            false,
        )?;
        let matched_col = format!("{prefix}{}", bring.first().cloned().unwrap_or_default());
        df = joined_df
            .lazy()
            .sort(["__kiln_row"], Default::default())
            .drop(cols(["__kiln_row", "__kiln_lt", "__kiln_rt"]))
            .collect()?;
        // A match marker, counted once the rows that leave the build are gone.
        let marker = format!("__kiln_matched_{}", join_summaries.len());
        df = df
            .lazy()
            .with_column(if bring.is_empty() {
                lit(false).alias(marker.as_str())
            } else {
                col(matched_col.as_str())
                    .is_not_null()
                    .alias(marker.as_str())
            })
            .collect()?;
        join_summaries.push(JoinSummary {
            dataset: input.name.to_string(),
            digest: input.table.digest.clone(),
            matched: 0,
            unmatched: 0,
        });
    }

    // Derived columns, in order; each may use the ones before it.
    let mut lf = df.lazy();
    let mut derived: Vec<(String, TExpr, DType, String)> = Vec::new();
    for d in &cfg.derive {
        let e = TExpr::parse(&d.expr)?;
        let t = e.output_type(&|c: &str| types.get(c).copied())?;
        let schema = lf.collect_schema()?;
        let pe = crate::transform::compile(&e, &schema)?;
        lf = lf.with_column(pe.alias(d.name.as_str()));
        types.insert(d.name.clone(), t);
        derived.push((d.name.clone(), e, t, d.expr.clone()));
    }

    // Label and split.
    let label_t = *types.get(&cfg.label).ok_or_else(|| {
        DataError::config(format!(
            "features.{name}: label `{}` is neither a column nor derived",
            cfg.label
        ))
    })?;
    if !(label_t.is_numeric() || label_t == DType::Bool) {
        return Err(DataError::config(format!(
            "features.{name}: label `{}` is {label_t}; it must be bool, int or float",
            cfg.label
        )));
    }
    let split_t = *types.get(&cfg.split.column).ok_or_else(|| {
        DataError::config(format!(
            "features.{name}: split column `{}` does not exist",
            cfg.split.column
        ))
    })?;
    let bound = |s: &str, what: &str| -> Result<Expr> {
        parse_bound(s, split_t).ok_or_else(|| {
            DataError::config(format!(
                "features.{name}: split.{what} = {s:?} is not a date or timestamp"
            ))
        })
    };
    let t = col(cfg.split.column.as_str());
    let valid_from = bound(&cfg.split.valid_from, "valid_from")?;
    let test_from = bound(&cfg.split.test_from, "test_from")?;
    let mut inside = t.clone().is_not_null();
    if let Some(end) = &cfg.split.end {
        inside = inside.and(t.clone().lt(bound(end, "end")?));
    }
    let split = when(inside.clone().not())
        .then(lit(NULL).cast(DataType::String))
        .when(t.clone().lt(valid_from))
        .then(lit("train"))
        .when(t.lt(test_from))
        .then(lit("valid"))
        .otherwise(lit("test"));
    let label_f = col(cfg.label.as_str()).cast(DataType::Float64);
    let all = lf
        .with_column(split.alias(SPLIT_COLUMN))
        .with_column(label_f.alias("__kiln_label"))
        .collect()?;
    let unlabeled_mask = all.column("__kiln_label")?.is_null();
    let outside_mask = all.column(SPLIT_COLUMN)?.is_null();
    let unlabeled = unlabeled_mask.sum().unwrap_or(0) as u64;
    let outside = (&outside_mask & &!&unlabeled_mask).sum().unwrap_or(0) as u64;
    let kept = all.filter(&!(&unlabeled_mask | &outside_mask))?;
    for (i, j) in join_summaries.iter_mut().enumerate() {
        let m = kept
            .column(&format!("__kiln_matched_{i}"))?
            .bool()?
            .sum()
            .unwrap_or(0) as u64;
        j.matched = m;
        j.unmatched = kept.height() as u64 - m;
    }

    // Encodings are learned on the training rows only.
    let train_rows = kept.filter(&kept.column(SPLIT_COLUMN)?.str()?.equal("train"))?;
    let mut encoded: BTreeMap<String, Step> = BTreeMap::new();
    for enc in &cfg.encode {
        let Some(t) = types.get(&enc.column) else {
            return Err(DataError::config(format!(
                "features.{name}.encode: no column `{}`",
                enc.column
            )));
        };
        if !(t.is_text() || *t == DType::Int || *t == DType::Bool) {
            return Err(DataError::config(format!(
                "features.{name}.encode: `{}` is {t}; encode text, int or bool columns",
                enc.column
            )));
        }
        let categories = crate::transform::fit_categories(
            &train_rows,
            &enc.column,
            enc.max_categories,
            enc.min_count,
        )?;
        let step = match enc.method {
            EncodingMethod::OneHot => Step::OneHot {
                column: enc.column.clone(),
                categories,
            },
            EncodingMethod::Ordinal => Step::Ordinal {
                column: enc.column.clone(),
                categories,
            },
        };
        encoded.insert(enc.column.clone(), step);
    }

    // The spec: only what the features need (the label's derivation is not replayed).
    let derived_by_name: BTreeMap<&str, &(String, TExpr, DType, String)> =
        derived.iter().map(|d| (d.0.as_str(), d)).collect();
    let mut needed: BTreeSet<String> = BTreeSet::new();
    let mut stack: Vec<String> = cfg.features.clone();
    while let Some(c) = stack.pop() {
        if !needed.insert(c.clone()) {
            continue;
        }
        if let Some((_, e, _, _)) = derived_by_name.get(c.as_str()) {
            stack.extend(e.columns());
        }
    }
    let mut inputs = Vec::new();
    for c in &needed {
        if derived_by_name.contains_key(c.as_str()) {
            continue;
        }
        let Some(t) = types.get(c) else {
            return Err(DataError::config(format!(
                "features.{name}: feature `{c}` is neither a column nor derived"
            )));
        };
        inputs.push(kiln_transform::Column {
            name: c.clone(),
            dtype: *t,
        });
    }
    let mut steps = Vec::new();
    for (n, _, t, text) in &derived {
        if needed.contains(n) {
            steps.push(Step::Derive {
                name: n.clone(),
                expr: text.clone(),
                dtype: *t,
            });
        }
    }
    let mut outputs = Vec::new();
    for f in &cfg.features {
        let t = types[f];
        match encoded.get(f) {
            Some(step) => {
                if let Step::OneHot { column, categories } = step {
                    outputs.extend(categories.iter().map(|c| format!("{column}={c}")));
                } else {
                    outputs.push(f.clone());
                }
                steps.push(step.clone());
            }
            None if t.is_numeric() || t == DType::Bool => outputs.push(f.clone()),
            None => {
                return Err(DataError::config(format!(
                    "features.{name}: feature `{f}` is {t}; {}",
                    if t.is_text() {
                        format!(
                            "add an encoding for it ([[features.{name}.encode]] column = \"{f}\")"
                        )
                    } else {
                        "derive a number from it (e.g. hour(...), day_of_week(...))".to_string()
                    }
                )));
            }
        }
    }
    let spec = TransformSpec {
        inputs,
        steps,
        outputs,
    };
    spec.validate()?;

    let feats = crate::transform::apply_steps(kept.clone().lazy(), &spec)?.collect()?;
    let mut out_cols: Vec<Column> = Vec::new();
    for k in &cfg.keep {
        let c = kept
            .column(k)
            .map_err(|_| DataError::config(format!("features.{name}.keep: no column `{k}`")))?;
        out_cols.push(c.clone());
    }
    out_cols.push(kept.column(SPLIT_COLUMN)?.clone());
    out_cols.push(
        kept.column("__kiln_label")?
            .clone()
            .with_name(cfg.label.as_str().into()),
    );
    for c in feats.columns() {
        if out_cols.iter().any(|o| o.name() == c.name()) {
            return Err(DataError::config(format!(
                "features.{name}: output `{}` collides with a kept or label column",
                c.name()
            )));
        }
        out_cols.push(c.clone());
    }
    let table = DataFrame::new(kept.height(), out_cols)?;
    let raw = kept.select(spec.inputs.iter().map(|c| c.name.as_str()))?;
    let split_counts = |s: &str| -> Result<u64> {
        Ok(table
            .column(SPLIT_COLUMN)?
            .str()?
            .equal(s)
            .sum()
            .unwrap_or(0) as u64)
    };
    let spec_json = serde_json::to_vec(&spec).map_err(|e| DataError::config(e.to_string()))?;
    let mut digests: Vec<(&str, &str)> = vec![(source.name, source.table.digest.as_str())];
    for i in joined {
        digests.push((i.name, i.table.digest.as_str()));
    }
    let summary = BuildSummary {
        name: name.to_string(),
        source: source.name.to_string(),
        source_digest: source.table.digest.clone(),
        joins: join_summaries,
        rows_in,
        quarantined,
        unlabeled,
        outside_split: outside,
        train: split_counts("train")?,
        valid: split_counts("valid")?,
        test: split_counts("test")?,
        label: cfg.label.clone(),
        features: spec.outputs.clone(),
        spec_digest: hex::encode(Sha256::digest(&spec_json)),
        build_digest: build_digest(name, cfg, &digests),
    };
    Ok(FeatureOutput {
        table,
        raw,
        spec,
        summary,
    })
}

/// The file of a build holding [`training_profile`].
pub const PROFILE_FILE: &str = "profile.json";

/// The profile of the raw input columns (what a serving request carries) over the training
/// split: the reference that drift in production is measured against.
pub fn training_profile(out: &FeatureOutput) -> Result<crate::profile::Profile> {
    let train = out.table.column(SPLIT_COLUMN)?.str()?.equal("train");
    let rows = out.raw.filter(&train)?;
    let schema: Vec<ColumnType> = out
        .spec
        .inputs
        .iter()
        .map(|c| ColumnType {
            name: c.name.clone(),
            dtype: c.dtype,
        })
        .collect();
    Ok(crate::profile::profile_with_schema(&rows, &schema)?)
}

/// Writes `features.parquet`, `spec.json` and `build.json` into `dir`, all or nothing: they
/// are written into a temporary directory beside it, which is renamed into place at the end.
pub fn write_output(out: &mut FeatureOutput, dir: &Path) -> Result<()> {
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| DataError::io(parent, e))?;
    let tmp = tempfile::Builder::new()
        .prefix(".kiln-partial-")
        .tempdir_in(parent)
        .map_err(|e| DataError::io(parent, e))?;
    let table_path = tmp.path().join("features.parquet");
    crate::fsutil::write_atomically(&table_path, |w| {
        ParquetWriter::new(w)
            .finish(&mut out.table)
            .map(|_| ())
            .map_err(DataError::from)
    })?;
    let spec =
        serde_json::to_vec_pretty(&out.spec).map_err(|e| DataError::config(e.to_string()))?;
    crate::fsutil::write_bytes(&tmp.path().join("spec.json"), &spec)?;
    let summary =
        serde_json::to_vec_pretty(&out.summary).map_err(|e| DataError::config(e.to_string()))?;
    crate::fsutil::write_bytes(&tmp.path().join("build.json"), &summary)?;
    let profile = serde_json::to_vec(&training_profile(out)?)
        .map_err(|e| DataError::config(e.to_string()))?;
    crate::fsutil::write_bytes(&tmp.path().join(PROFILE_FILE), &profile)?;
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
    }
    let kept = tmp.keep();
    std::fs::rename(&kept, dir).map_err(|e| DataError::io(dir, e))?;
    Ok(())
}

/// `1h`, `90m`, `2d`, `30s`, `1h30m` as the join key's native tolerance (µs for timestamps,
/// days for dates, the number itself for ints).
fn parse_tolerance(s: &str, t: DType) -> std::result::Result<AnyValue<'static>, String> {
    if t == DType::Int {
        return s
            .trim()
            .parse::<i64>()
            .map(AnyValue::Int64)
            .map_err(|_| format!("tolerance {s:?} must be an integer for an int key"));
    }
    let mut total_us: i64 = 0;
    let mut num = String::new();
    let text = s.trim();
    if text.is_empty() {
        return Err("tolerance is empty".into());
    }
    for ch in text.chars() {
        if ch.is_ascii_digit() {
            num.push(ch);
            continue;
        }
        let n: i64 = num
            .parse()
            .map_err(|_| format!("tolerance {s:?}: expected e.g. \"1h\", \"90m\", \"2d\""))?;
        num.clear();
        let unit = match ch {
            'd' => 86_400_000_000,
            'h' => 3_600_000_000,
            'm' => 60_000_000,
            's' => 1_000_000,
            _ => {
                return Err(format!(
                    "tolerance {s:?}: unknown unit {ch:?} (use d, h, m, s)"
                ));
            }
        };
        total_us += n * unit;
    }
    if !num.is_empty() {
        return Err(format!("tolerance {s:?} needs a unit (d, h, m, s)"));
    }
    Ok(match t {
        DType::Date => AnyValue::Int32((total_us / 86_400_000_000) as i32),
        _ => AnyValue::Int64(total_us),
    })
}

fn parse_bound(s: &str, t: DType) -> Option<Expr> {
    match t {
        DType::Timestamp => {
            let us = kiln_transform::time::parse_timestamp(s).or_else(|| {
                kiln_transform::time::parse_date(s).map(|d| d as i64 * 86_400_000_000)
            })?;
            Some(lit(us).cast(physical(DType::Timestamp)))
        }
        DType::Date => {
            let d = kiln_transform::time::parse_date(s)?;
            Some(lit(d).cast(DataType::Date))
        }
        DType::Int => s.trim().parse::<i64>().ok().map(lit),
        _ => None,
    }
}

/// The schema of a feature table as Kiln columns.
pub fn schema_of(df: &DataFrame) -> Vec<ColumnType> {
    df.schema()
        .iter()
        .map(|(n, t)| ColumnType {
            name: n.to_string(),
            dtype: match t {
                DataType::Float64 | DataType::Float32 => DType::Float,
                DataType::Boolean => DType::Bool,
                DataType::Date => DType::Date,
                DataType::Datetime(_, _) => DType::Timestamp,
                DataType::String => DType::String,
                _ if t.is_integer() => DType::Int,
                _ => DType::String,
            },
        })
        .collect()
}
