//! A built feature table read back for training: the feature columns as `f32` (missing =
//! NaN), the label as numbers (class ids for text and boolean labels), the split of each
//! row, and the kept columns as text for per-segment metrics. Plain vectors, so trainers
//! need no data-frame engine.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use polars::prelude::*;

use crate::error::{DataError, Result};
use crate::features::{BuildSummary, SPLIT_COLUMN};

/// Which split a row belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Split {
    Train,
    Valid,
    Test,
}

/// What kind of label a table has.
#[derive(Debug, Clone, PartialEq)]
pub enum LabelKind {
    /// Boolean labels: false = 0, true = 1.
    Bool,
    /// Whole numbers (class ids or counts).
    Int,
    /// Real numbers.
    Float,
    /// Text labels mapped to class ids in sorted order.
    Text { classes: Vec<String> },
}

pub struct TrainingTable {
    pub features: Vec<String>,
    /// Feature columns, one vector per feature, NaN where missing.
    pub columns: Vec<Vec<f32>>,
    pub label: String,
    pub label_kind: LabelKind,
    /// One label per row; NaN only if the table holds a missing label (builds drop those).
    pub labels: Vec<f64>,
    pub split: Vec<Split>,
    /// The build's `keep` columns as text (None where missing).
    pub keep: BTreeMap<String, Vec<Option<String>>>,
    pub summary: BuildSummary,
}

impl TrainingTable {
    pub fn rows(&self) -> usize {
        self.labels.len()
    }

    /// Row indexes of one split, in table order.
    pub fn rows_of(&self, s: Split) -> Vec<usize> {
        self.split
            .iter()
            .enumerate()
            .filter(|(_, x)| **x == s)
            .map(|(i, _)| i)
            .collect()
    }
}

/// Reads the feature build in `dir` (`features.parquet` and `build.json`).
pub fn load_training(dir: &Path) -> Result<TrainingTable> {
    let summary_path = dir.join("build.json");
    let summary: BuildSummary = serde_json::from_slice(
        &std::fs::read(&summary_path).map_err(|e| DataError::io(&summary_path, e))?,
    )
    .map_err(|e| DataError::config(format!("{}: {e}", summary_path.display())))?;
    let table_path = dir.join("features.parquet");
    let file = std::fs::File::open(&table_path).map_err(|e| DataError::io(&table_path, e))?;
    let df = ParquetReader::new(file).finish()?;

    let mut columns = Vec::with_capacity(summary.features.len());
    for f in &summary.features {
        let c = df.column(f)?.cast(&DataType::Float32)?;
        let ca = c.f32()?;
        columns.push(ca.iter().map(|v| v.unwrap_or(f32::NAN)).collect());
    }

    let label_col = df.column(&summary.label)?;
    let (label_kind, labels) = match label_col.dtype() {
        DataType::Boolean => (
            LabelKind::Bool,
            label_col
                .bool()?
                .iter()
                .map(|v| v.map_or(f64::NAN, |b| f64::from(u8::from(b))))
                .collect(),
        ),
        DataType::String => {
            let ca = label_col.str()?;
            let classes: Vec<String> = ca
                .iter()
                .flatten()
                .map(str::to_string)
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            let index: BTreeMap<&str, usize> = classes
                .iter()
                .enumerate()
                .map(|(i, c)| (c.as_str(), i))
                .collect();
            let labels = ca
                .iter()
                .map(|v| v.map_or(f64::NAN, |s| index[s] as f64))
                .collect();
            (LabelKind::Text { classes }, labels)
        }
        t if t.is_integer() || t.is_float() => (
            if t.is_integer() {
                LabelKind::Int
            } else {
                LabelKind::Float
            },
            label_col
                .cast(&DataType::Float64)?
                .f64()?
                .iter()
                .map(|v| v.unwrap_or(f64::NAN))
                .collect(),
        ),
        other => {
            return Err(DataError::config(format!(
                "label `{}` has type {other}; a boolean, number or text label was expected",
                summary.label
            )));
        }
    };

    let split = df
        .column(SPLIT_COLUMN)?
        .str()?
        .iter()
        .enumerate()
        .map(|(i, s)| match s {
            Some("train") => Ok(Split::Train),
            Some("valid") => Ok(Split::Valid),
            Some("test") => Ok(Split::Test),
            other => Err(DataError::config(format!(
                "{}: row {} has split {other:?}",
                table_path.display(),
                i + 1
            ))),
        })
        .collect::<Result<Vec<_>>>()?;

    let mut keep = BTreeMap::new();
    for c in df.columns() {
        let name = c.name().as_str();
        if name == SPLIT_COLUMN
            || name == summary.label
            || summary.features.iter().any(|f| f == name)
        {
            continue;
        }
        let text = c.cast(&DataType::String)?;
        keep.insert(
            name.to_string(),
            text.str()?.iter().map(|v| v.map(str::to_string)).collect(),
        );
    }

    Ok(TrainingTable {
        features: summary.features.clone(),
        columns,
        label: summary.label.clone(),
        label_kind,
        labels,
        split,
        keep,
        summary,
    })
}
