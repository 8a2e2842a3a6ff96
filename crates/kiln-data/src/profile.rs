//! Dataset profiles: per-column counts, moments, quantiles, distinct counts, frequent values
//! and histograms, with mergeable sketches so that profiles of windows merge into the profile
//! of their union, and a reference mode in which a live window is binned exactly like the
//! training set it is compared with.
//!
//! One lazy `select` computes every column's null count, NaN count, mean and standard deviation
//! and hands back each numeric column's present values sorted and each text column's value
//! counts; everything else (min/max, histograms, sketches, distinct counts, frequent values)
//! is read off those sorted arrays and value counts in linear passes. A training set and a
//! live window go through exactly the same code; [`profile_against`] only swaps in the
//! reference's histogram edges and categories.
//!
//! Missing values follow the expectations: null, and NaN in float columns, are missing; NaN
//! is counted apart (`nan`) and kept out of every statistic. Infinite floats count, are the
//! min/max, and make the mean undefined, but stay out of the sketch and the histogram.
//!
//! Date and timestamp columns: `min`/`max` are ISO strings; the numeric statistics (mean, std,
//! quantiles, sketch, histogram) are over epoch seconds, which `unit` says.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};

use kiln_transform::DType;
use kiln_transform::time::{format_date, format_timestamp, parse_date, parse_timestamp};
use polars::prelude::*;
use serde::{Deserialize, Serialize};

use crate::config::SetValue;
use crate::error::DataError;
use crate::read::ColumnType;
use crate::sketch::{Hll, QuantileSketch, SketchError};

/// The profile format's version.
pub const VERSION: u32 = 1;
/// The quantiles reported in [`ColumnProfile::quantiles`].
pub const QUANTILES: [f64; 7] = [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99];
/// How many frequent values are kept.
pub const TOP_VALUES: usize = 20;
/// Histogram bins.
pub const BINS: usize = 20;
/// The unit of the numeric statistics of date and timestamp columns.
pub const EPOCH_SECONDS: &str = "epoch_seconds";

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("{0}")]
    Polars(#[from] PolarsError),
    #[error(
        "column `{column}` has type {dtype}, which Kiln does not profile \
         (int, float, bool, string, categorical, date and timestamp are supported)"
    )]
    Unsupported { column: String, dtype: String },
    #[error("profile version {found} is not supported (expected {VERSION})")]
    Version { found: u32 },
    #[error("cannot merge profiles: {0}")]
    Merge(String),
    #[error("{0}")]
    Sketch(#[from] SketchError),
}

pub type Result<T, E = ProfileError> = std::result::Result<T, E>;

impl From<ProfileError> for DataError {
    fn from(e: ProfileError) -> DataError {
        match e {
            ProfileError::Polars(e) => DataError::Polars(e),
            other => DataError::Config(other.to_string()),
        }
    }
}

/// The profile of a table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub version: u32,
    pub rows: u64,
    pub columns: Vec<ColumnProfile>,
}

/// The profile of one column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnProfile {
    pub name: String,
    pub dtype: DType,
    /// Present values: neither null nor NaN.
    pub count: u64,
    pub nulls: u64,
    /// NaN values (float columns only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nan: Option<u64>,
    /// `epoch_seconds` for date and timestamp columns: the unit of mean, std, m2, quantiles,
    /// sketch and histogram.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// Numbers for int and float columns, ISO strings for dates and timestamps; absent for
    /// text and bool columns and when there are no values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<SetValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<SetValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean: Option<f64>,
    /// Sample standard deviation (n − 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub std: Option<f64>,
    /// Sum of squared deviations from the mean, kept so that merged moments are exact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub m2: Option<f64>,
    /// "0.01" … "0.99" → value, read from the sketch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantiles: Option<BTreeMap<String, f64>>,
    /// T-digest of the finite values (numeric, date and timestamp columns).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sketch: Option<QuantileSketch>,
    /// Distinct present values: exact when profiled from a frame, the HyperLogLog estimate
    /// after a merge (`distinct_exact` says which).
    pub distinct: u64,
    pub distinct_exact: bool,
    pub hll: Hll,
    /// Most frequent values, most frequent first (ties by value): the top 20 for string,
    /// categorical and bool columns, and every value of int columns with at most 20 distinct
    /// values. Against a reference, the reference's values are listed too (count 0 if absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_values: Option<Vec<TopValue>>,
    /// Equal-width histogram of the finite values (numeric, date and timestamp columns).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub histogram: Option<Histogram>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopValue {
    pub value: SetValue,
    pub count: u64,
}

/// `counts[i]` holds values in `[edges[i], edges[i+1])`, the last bin also its right edge.
/// `under`/`over` count values outside the edges, which happens only with a reference's edges.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    pub edges: Vec<f64>,
    pub counts: Vec<u64>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub under: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub over: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Profile {
    pub fn column(&self, name: &str) -> Option<&ColumnProfile> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// The profile of the union of the rows of both profiles.
    ///
    /// Counts add; min/max combine; mean and std combine exactly (Chan's parallel formula
    /// over `m2`); sketches and HyperLogLogs merge, so quantiles are within the sketch's error
    /// and `distinct` becomes an estimate. Frequent values are approximate: a value listed in
    /// both gets the sum of its counts, a value listed in one only keeps that count (its count
    /// in the other profile, below that profile's top 20, is not known). Histograms with
    /// identical edges add bin by bin; otherwise the merged histogram is re-binned over the
    /// merged min..max from the merged sketch (counts estimated from its CDF).
    ///
    /// Both profiles must have the same columns with the same types.
    pub fn merge(&self, other: &Profile) -> Result<Profile> {
        for p in [self, other] {
            if p.version != VERSION {
                return Err(ProfileError::Version { found: p.version });
            }
        }
        let names = |p: &Profile| p.columns.iter().map(|c| c.name.clone()).collect::<Vec<_>>();
        let (mine, theirs) = (names(self), names(other));
        if mine.len() != theirs.len() || mine.iter().any(|n| other.column(n).is_none()) {
            return Err(ProfileError::Merge(format!(
                "the profiles have different columns ({} vs {})",
                mine.join(", "),
                theirs.join(", ")
            )));
        }
        let columns = self
            .columns
            .iter()
            .map(|a| merge_column(a, other.column(&a.name).expect("checked above")))
            .collect::<Result<Vec<_>>>()?;
        Ok(Profile {
            version: VERSION,
            rows: self.rows + other.rows,
            columns,
        })
    }
}

/// Profiles a frame. Column types come from the frame (Polars categoricals are
/// `categorical`; use [`profile_with_schema`] when a string column is categorical by schema).
pub fn profile(df: &DataFrame) -> Result<Profile> {
    profile_impl(df, &HashMap::new(), None)
}

/// Profiles a frame read with a Kiln schema ([`crate::Table::schema`]): string columns the
/// schema calls categorical are profiled as categorical.
pub fn profile_with_schema(df: &DataFrame, schema: &[ColumnType]) -> Result<Profile> {
    let hints = schema
        .iter()
        .map(|c| (c.name.clone(), c.dtype))
        .collect::<HashMap<_, _>>();
    profile_impl(df, &hints, None)
}

/// Profiles a frame to compare it with `reference` (a training set's profile): numeric
/// histograms use the reference's edges (values outside go to `under`/`over`), frequent
/// values also count the reference's values, and string columns the reference calls
/// categorical are categorical. Everything else is exactly [`profile`].
pub fn profile_against(df: &DataFrame, reference: &Profile) -> Result<Profile> {
    if reference.version != VERSION {
        return Err(ProfileError::Version {
            found: reference.version,
        });
    }
    let hints = reference
        .columns
        .iter()
        .map(|c| (c.name.clone(), c.dtype))
        .collect::<HashMap<_, _>>();
    profile_impl(df, &hints, Some(reference))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Int,
    Float,
    Date,
    Timestamp,
    Text,
    Bool,
}

struct Plan {
    name: String,
    dtype: DType,
    kind: Kind,
}

fn plan(name: &str, dt: &DataType, hint: Option<DType>) -> Result<Plan> {
    let (dtype, kind) = match dt {
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64 => (DType::Int, Kind::Int),
        DataType::Float32 | DataType::Float64 => (DType::Float, Kind::Float),
        DataType::Boolean => (DType::Bool, Kind::Bool),
        DataType::String | DataType::Null => match hint {
            Some(DType::Categorical) => (DType::Categorical, Kind::Text),
            _ => (DType::String, Kind::Text),
        },
        DataType::Categorical(_, _) | DataType::Enum(_, _) => (DType::Categorical, Kind::Text),
        DataType::Date => (DType::Date, Kind::Date),
        DataType::Datetime(_, _) => (DType::Timestamp, Kind::Timestamp),
        other => {
            return Err(ProfileError::Unsupported {
                column: name.to_string(),
                dtype: other.to_string(),
            });
        }
    };
    Ok(Plan {
        name: name.to_string(),
        dtype,
        kind,
    })
}

// Output names of the one `select`, per column index.
fn out_name(i: usize, what: &str) -> String {
    format!("{i}:{what}")
}

fn profile_impl(
    df: &DataFrame,
    hints: &HashMap<String, DType>,
    reference: Option<&Profile>,
) -> Result<Profile> {
    let plans = df
        .schema()
        .iter()
        .map(|(name, dt)| plan(name.as_str(), dt, hints.get(name.as_str()).copied()))
        .collect::<Result<Vec<_>>>()?;

    let sorted = SortOptions::default().with_multithreaded(true);
    let mut exprs = Vec::new();
    for (i, p) in plans.iter().enumerate() {
        let c = col(p.name.as_str());
        exprs.push(
            c.clone()
                .null_count()
                .cast(DataType::UInt64)
                .alias(out_name(i, "nulls")),
        );
        // `values`: the physical values to sort; `stat`: the f64 the moments are over.
        let (values, stat) = match p.kind {
            Kind::Int => {
                let v = c.cast(DataType::Int64);
                (v.clone(), v.cast(DataType::Float64))
            }
            Kind::Float => {
                let v = c.cast(DataType::Float64);
                exprs.push(
                    v.clone()
                        .is_nan()
                        .sum()
                        .cast(DataType::UInt64)
                        .alias(out_name(i, "nan")),
                );
                let v = v.drop_nans();
                (v.clone(), v)
            }
            Kind::Date => {
                let v = c.cast(DataType::Int32);
                (v.clone(), v.cast(DataType::Float64) * lit(SECONDS_PER_DAY))
            }
            Kind::Timestamp => {
                let v = c
                    .dt()
                    .cast_time_unit(TimeUnit::Microseconds)
                    .cast(DataType::Int64);
                (
                    v.clone(),
                    v.cast(DataType::Float64) / lit(MICROS_PER_SECOND),
                )
            }
            // Counted in Rust from the column itself (below): a hash count over the values is
            // several times faster than Polars' `value_counts` on short strings.
            Kind::Text | Kind::Bool => continue,
        };
        exprs.push(
            values
                .drop_nulls()
                .sort(sorted)
                .implode(true)
                .alias(out_name(i, "sorted")),
        );
        exprs.push(stat.clone().mean().alias(out_name(i, "mean")));
        exprs.push(stat.std(1).alias(out_name(i, "std")));
    }
    let out = df.clone().lazy().select(exprs).collect()?;

    // Each column's remaining work (sketches, counts, bins) is independent: one scoped thread
    // per column, the cores shared by the OS.
    let work = |i: usize, p: &Plan| -> Result<ColumnProfile> {
        let refc = reference.and_then(|r| r.column(&p.name));
        let nulls = scalar_u64(&out, &out_name(i, "nulls"))?.unwrap_or(0);
        match p.kind {
            Kind::Text | Kind::Bool => {
                let column = df.column(&p.name)?.as_materialized_series();
                categorical_column(p, nulls, column, refc)
            }
            _ => {
                let values = list_item(&out, &out_name(i, "sorted"))?;
                let moments = Moments {
                    nan: if p.kind == Kind::Float {
                        Some(scalar_u64(&out, &out_name(i, "nan"))?.unwrap_or(0))
                    } else {
                        None
                    },
                    mean: scalar_f64(&out, &out_name(i, "mean"))?,
                    std: scalar_f64(&out, &out_name(i, "std"))?,
                };
                numeric_column(p, nulls, &values, moments, refc)
            }
        }
    };
    let columns = if plans.len() <= 1 {
        plans
            .iter()
            .enumerate()
            .map(|(i, p)| work(i, p))
            .collect::<Result<Vec<_>>>()?
    } else {
        std::thread::scope(|scope| {
            let handles: Vec<_> = plans
                .iter()
                .enumerate()
                .map(|(i, p)| scope.spawn(move || work(i, p)))
                .collect();
            handles
                .into_iter()
                .map(|h| match h.join() {
                    Ok(r) => r,
                    Err(panic) => std::panic::resume_unwind(panic),
                })
                .collect::<Result<Vec<_>>>()
        })?
    };
    Ok(Profile {
        version: VERSION,
        rows: df.height() as u64,
        columns,
    })
}

const SECONDS_PER_DAY: f64 = 86_400.0;
const MICROS_PER_SECOND: f64 = 1e6;

fn scalar_u64(out: &DataFrame, name: &str) -> Result<Option<u64>> {
    Ok(out.column(name)?.get(0)?.extract::<u64>())
}

fn scalar_f64(out: &DataFrame, name: &str) -> Result<Option<f64>> {
    Ok(out
        .column(name)?
        .get(0)?
        .extract::<f64>()
        .filter(|v| v.is_finite()))
}

fn list_item(out: &DataFrame, name: &str) -> Result<Series> {
    let list = out.column(name)?.list()?;
    match list.get_as_series(0) {
        Some(s) => Ok(s.rechunk()),
        None => Ok(Series::new_empty(name.into(), &list.inner_dtype().clone())),
    }
}

struct Moments {
    nan: Option<u64>,
    mean: Option<f64>,
    std: Option<f64>,
}

fn numeric_column(
    p: &Plan,
    nulls: u64,
    values: &Series,
    moments: Moments,
    reference: Option<&ColumnProfile>,
) -> Result<ColumnProfile> {
    let mut hll = Hll::new();
    let ref_top = reference.and_then(|r| r.top_values.as_ref());
    let (count, distinct, min, max, finite, top_values) = match p.kind {
        Kind::Int => {
            let v = values.i64()?.cont_slice()?;
            let mut top = TopInts::default();
            let distinct = runs(v, |x, n| {
                hll.insert_i64(x);
                top.push(x, n);
            });
            let top_values = match ref_top {
                Some(rt) => Some(top.with_reference(v, rt)),
                None if distinct <= TOP_VALUES as u64 => Some(top.into_values()),
                None => None,
            };
            (
                v.len(),
                distinct,
                v.first().map(|&x| SetValue::Int(x)),
                v.last().map(|&x| SetValue::Int(x)),
                v.iter().map(|&x| x as f64).collect::<Vec<_>>(),
                top_values,
            )
        }
        Kind::Float => {
            let v = values.f64()?.cont_slice()?;
            let distinct = runs(v, |x, _| hll.insert_f64(x));
            // Sorted: infinities sit at both ends.
            let lo = v.partition_point(|x| *x == f64::NEG_INFINITY);
            let hi = v.partition_point(|x| *x < f64::INFINITY);
            (
                v.len(),
                distinct,
                v.first().map(|&x| SetValue::Float(x)),
                v.last().map(|&x| SetValue::Float(x)),
                v[lo..hi].to_vec(),
                None,
            )
        }
        Kind::Date => {
            let v = values.i32()?.cont_slice()?;
            let distinct = runs(v, |x, _| hll.insert_i64(i64::from(x)));
            (
                v.len(),
                distinct,
                v.first().map(|&x| SetValue::Str(format_date(x))),
                v.last().map(|&x| SetValue::Str(format_date(x))),
                v.iter()
                    .map(|&x| f64::from(x) * SECONDS_PER_DAY)
                    .collect::<Vec<_>>(),
                None,
            )
        }
        Kind::Timestamp => {
            let v = values.i64()?.cont_slice()?;
            let distinct = runs(v, |x, _| hll.insert_i64(x));
            (
                v.len(),
                distinct,
                v.first().map(|&x| SetValue::Str(format_timestamp(x))),
                v.last().map(|&x| SetValue::Str(format_timestamp(x))),
                v.iter()
                    .map(|&x| x as f64 / MICROS_PER_SECOND)
                    .collect::<Vec<_>>(),
                None,
            )
        }
        Kind::Text | Kind::Bool => unreachable!("numeric_column is called for numeric kinds"),
    };
    let count = count as u64;

    let ref_edges = reference
        .and_then(|r| r.histogram.as_ref())
        .map(|h| h.edges.as_slice())
        .filter(|e| e.len() >= 2);
    let histogram = match (ref_edges, finite.first(), finite.last()) {
        (Some(edges), _, _) => Some(bin_sorted(&finite, edges.to_vec())),
        (None, Some(&lo), Some(&hi)) => Some(bin_sorted(&finite, equal_width_edges(lo, hi))),
        _ => None,
    };
    let sketch = QuantileSketch::from_sorted(finite);
    let (mean, std, m2) = moments_of(count, moments.mean, moments.std);

    Ok(ColumnProfile {
        name: p.name.clone(),
        dtype: p.dtype,
        count,
        nulls,
        nan: moments.nan,
        unit: matches!(p.kind, Kind::Date | Kind::Timestamp).then(|| EPOCH_SECONDS.to_string()),
        min,
        max,
        mean,
        std,
        m2,
        quantiles: quantiles_of(&sketch),
        sketch: Some(sketch),
        distinct,
        distinct_exact: true,
        hll,
        top_values,
        histogram,
    })
}

/// Mean, std and m2 from Polars' mean and sample std.
fn moments_of(
    count: u64,
    mean: Option<f64>,
    std: Option<f64>,
) -> (Option<f64>, Option<f64>, Option<f64>) {
    match (count, mean) {
        (0, _) | (_, None) => (None, None, None),
        (1, Some(m)) => (Some(m), None, Some(0.0)),
        (n, Some(m)) => match std {
            Some(s) => (Some(m), Some(s), Some(s * s * (n - 1) as f64)),
            None => (Some(m), None, None),
        },
    }
}

fn quantiles_of(sketch: &QuantileSketch) -> Option<BTreeMap<String, f64>> {
    if sketch.is_empty() {
        return None;
    }
    Some(
        QUANTILES
            .iter()
            .filter_map(|&q| sketch.quantile(q).map(|v| (q.to_string(), v)))
            .collect(),
    )
}

/// Calls `each(value, run length)` for each run of equal values of a sorted slice; returns
/// the number of runs (distinct values).
fn runs<T: Copy + PartialEq>(sorted: &[T], mut each: impl FnMut(T, u64)) -> u64 {
    let mut distinct = 0;
    let mut i = 0;
    while i < sorted.len() {
        let x = sorted[i];
        let mut j = i + 1;
        while j < sorted.len() && sorted[j] == x {
            j += 1;
        }
        each(x, (j - i) as u64);
        distinct += 1;
        i = j;
    }
    distinct
}

/// The most frequent int values seen in a run scan (a bounded selection, not every run).
#[derive(Default)]
struct TopInts {
    // (count, value), at most 2 × TOP_VALUES before a trim.
    best: Vec<(u64, i64)>,
}

impl TopInts {
    fn push(&mut self, value: i64, count: u64) {
        self.best.push((count, value));
        if self.best.len() >= 2 * TOP_VALUES {
            self.trim();
        }
    }

    fn trim(&mut self) {
        self.best.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        self.best.truncate(TOP_VALUES);
    }

    fn into_values(mut self) -> Vec<TopValue> {
        self.trim();
        self.best
            .into_iter()
            .map(|(count, v)| TopValue {
                value: SetValue::Int(v),
                count,
            })
            .collect()
    }

    /// The top values plus the reference's values, counted by binary search in `sorted`.
    fn with_reference(self, sorted: &[i64], reference: &[TopValue]) -> Vec<TopValue> {
        let mut out = self.into_values();
        for t in reference {
            let x = match t.value {
                SetValue::Int(x) => x,
                SetValue::Float(f) if f.fract() == 0.0 => f as i64,
                _ => continue,
            };
            if out.iter().any(|o| o.value == SetValue::Int(x)) {
                continue;
            }
            let count = sorted.partition_point(|v| *v <= x) - sorted.partition_point(|v| *v < x);
            out.push(TopValue {
                value: SetValue::Int(x),
                count: count as u64,
            });
        }
        sort_top(&mut out);
        out
    }
}

fn categorical_column(
    p: &Plan,
    nulls: u64,
    column: &Series,
    reference: Option<&ColumnProfile>,
) -> Result<ColumnProfile> {
    let mut hll = Hll::new();
    let ref_values: Vec<&SetValue> = reference
        .and_then(|r| r.top_values.as_ref())
        .map(|t| t.iter().map(|t| &t.value).collect())
        .unwrap_or_default();
    let (count, distinct, mut top) = match p.kind {
        Kind::Bool => {
            let ca = column.bool()?;
            let trues = ca.num_trues() as u64;
            let falses = (ca.len() - ca.null_count()) as u64 - trues;
            let mut top = Vec::new();
            for (v, c) in [(true, trues), (false, falses)] {
                if c > 0 {
                    hll.insert_bool(v);
                    top.push(TopValue {
                        value: SetValue::Bool(v),
                        count: c,
                    });
                }
            }
            (trues + falses, top.len() as u64, top)
        }
        _ => {
            let strings = if column.dtype() == &DataType::String {
                column.clone()
            } else {
                column.cast(&DataType::String)?
            };
            let counts = count_strings(strings.str()?);
            let count = counts.values().sum();
            let distinct = counts.len() as u64;
            let mut ranked: Vec<(u64, &str)> = Vec::with_capacity(counts.len());
            for (k, c) in &counts {
                // The key's hash is xxh3 of the string's bytes, as `Hll::insert_str` takes it.
                hll.insert_hash(k.hash);
                ranked.push((*c, k.s));
            }
            let by_rank = |a: &(u64, &str), b: &(u64, &str)| b.0.cmp(&a.0).then(a.1.cmp(b.1));
            if ranked.len() > TOP_VALUES {
                ranked.select_nth_unstable_by(TOP_VALUES, by_rank);
                ranked.truncate(TOP_VALUES);
            }
            let mut top: Vec<TopValue> = ranked
                .into_iter()
                .map(|(c, v)| TopValue {
                    value: SetValue::Str(v.to_string()),
                    count: c,
                })
                .collect();
            // The reference's values: counted here if present, 0 if not.
            for v in &ref_values {
                let SetValue::Str(s) = v else { continue };
                if top.iter().any(|t| &&t.value == v) {
                    continue;
                }
                let key = StrKey::new(s);
                top.push(TopValue {
                    value: (*v).clone(),
                    count: counts.get(&key).copied().unwrap_or(0),
                });
            }
            (count, distinct, top)
        }
    };
    // A bool column's list is complete: the reference's values missing from it are absent.
    for v in ref_values {
        if !top.iter().any(|t| &t.value == v) {
            top.push(TopValue {
                value: v.clone(),
                count: 0,
            });
        }
    }
    sort_top(&mut top);

    Ok(ColumnProfile {
        name: p.name.clone(),
        dtype: p.dtype,
        count,
        nulls,
        nan: None,
        unit: None,
        min: None,
        max: None,
        mean: None,
        std: None,
        m2: None,
        quantiles: None,
        sketch: None,
        distinct,
        distinct_exact: true,
        hll,
        top_values: Some(top),
        histogram: None,
    })
}

/// A string keyed by its xxh3 hash, computed once and reused by the table and the HLL.
struct StrKey<'a> {
    hash: u64,
    s: &'a str,
}

impl<'a> StrKey<'a> {
    fn new(s: &'a str) -> Self {
        StrKey {
            hash: xxhash_rust::xxh3::xxh3_64(s.as_bytes()),
            s,
        }
    }
}

impl PartialEq for StrKey<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash && self.s == other.s
    }
}

impl Eq for StrKey<'_> {}

impl std::hash::Hash for StrKey<'_> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// Passes a precomputed 64-bit hash through.
#[derive(Default)]
struct PassThrough(u64);

impl std::hash::Hasher for PassThrough {
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used by `StrKey`; fold anything else in anyway.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type StrCounts<'a> = HashMap<StrKey<'a>, u64, std::hash::BuildHasherDefault<PassThrough>>;

/// Occurrences of each non-null string.
fn count_strings(ca: &StringChunked) -> StrCounts<'_> {
    let mut counts = StrCounts::default();
    let no_nulls = ca.null_count() == 0;
    for arr in ca.downcast_iter() {
        if no_nulls {
            for s in arr.values_iter() {
                *counts.entry(StrKey::new(s)).or_insert(0) += 1;
            }
        } else {
            for s in arr.iter().flatten() {
                *counts.entry(StrKey::new(s)).or_insert(0) += 1;
            }
        }
    }
    counts
}

/// Most frequent first, ties by value.
fn sort_top(top: &mut [TopValue]) {
    top.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then_with(|| cmp_values(&a.value, &b.value))
    });
}

fn cmp_values(a: &SetValue, b: &SetValue) -> Ordering {
    match (a, b) {
        (SetValue::Int(x), SetValue::Int(y)) => x.cmp(y),
        (SetValue::Str(x), SetValue::Str(y)) => x.cmp(y),
        (SetValue::Bool(x), SetValue::Bool(y)) => x.cmp(y),
        _ => match (num(a), num(b)) {
            (Some(x), Some(y)) => x.total_cmp(&y),
            _ => format!("{a:?}").cmp(&format!("{b:?}")),
        },
    }
}

fn num(v: &SetValue) -> Option<f64> {
    match v {
        SetValue::Int(x) => Some(*x as f64),
        SetValue::Float(x) => Some(*x),
        _ => None,
    }
}

/// `BINS` equal-width bins from `lo` to `hi` (one unit wide around a constant).
fn equal_width_edges(lo: f64, hi: f64) -> Vec<f64> {
    let (lo, hi) = if lo < hi {
        (lo, hi)
    } else {
        (lo - 0.5, hi + 0.5)
    };
    (0..=BINS)
        .map(|i| {
            if i == BINS {
                hi
            } else {
                lo + (hi - lo) * i as f64 / BINS as f64
            }
        })
        .collect()
}

/// Bins sorted values by binary search at each edge.
fn bin_sorted(sorted: &[f64], edges: Vec<f64>) -> Histogram {
    let below = |e: f64| sorted.partition_point(|v| *v < e);
    let last = edges.len() - 1;
    let mut counts = Vec::with_capacity(last);
    for i in 0..last {
        let end = if i + 1 == last {
            sorted.partition_point(|v| *v <= edges[last])
        } else {
            below(edges[i + 1])
        };
        counts.push(end.saturating_sub(below(edges[i])) as u64);
    }
    Histogram {
        under: below(edges[0]) as u64,
        over: (sorted.len() - sorted.partition_point(|v| *v <= edges[last])) as u64,
        edges,
        counts,
    }
}

fn merge_column(a: &ColumnProfile, b: &ColumnProfile) -> Result<ColumnProfile> {
    if a.dtype != b.dtype {
        return Err(ProfileError::Merge(format!(
            "column `{}` is {} in one profile and {} in the other",
            a.name, a.dtype, b.dtype
        )));
    }
    let count = a.count + b.count;
    let (mean, m2) = combine_moments(a, b);
    let std = match (m2, count) {
        (Some(m2), n) if n >= 2 => Some((m2 / (n - 1) as f64).sqrt()),
        _ => None,
    };
    let sketch = match (&a.sketch, &b.sketch) {
        (Some(x), Some(y)) => Some(x.merge(y)),
        (x, y) => x.clone().or_else(|| y.clone()),
    };
    let mut hll = a.hll.clone();
    hll.merge(&b.hll)?;
    let (distinct, distinct_exact) = if b.count == 0 {
        (a.distinct, a.distinct_exact)
    } else if a.count == 0 {
        (b.distinct, b.distinct_exact)
    } else {
        (hll.estimate(), false)
    };
    let histogram = match (&a.histogram, &b.histogram) {
        (Some(x), Some(y)) if x.edges == y.edges => Some(Histogram {
            edges: x.edges.clone(),
            counts: x.counts.iter().zip(&y.counts).map(|(p, q)| p + q).collect(),
            under: x.under + y.under,
            over: x.over + y.over,
        }),
        (Some(_), Some(_)) => None,
        (x, y) => x.clone().or_else(|| y.clone()),
    };
    let top_values = merge_top(a, b);
    let histogram = match (histogram, &a.histogram, &b.histogram) {
        (Some(h), _, _) => Some(h),
        (None, Some(_), Some(_)) => match (&sketch, &top_values) {
            // An int column listing every value re-bins exactly.
            (Some(s), Some(top)) if a.dtype == DType::Int => rebin_values(s, top),
            (Some(s), _) => rebin(s),
            (None, _) => None,
        },
        _ => None,
    };
    Ok(ColumnProfile {
        name: a.name.clone(),
        dtype: a.dtype,
        count,
        nulls: a.nulls + b.nulls,
        nan: match (a.nan, b.nan) {
            (None, None) => None,
            (x, y) => Some(x.unwrap_or(0) + y.unwrap_or(0)),
        },
        unit: a.unit.clone().or_else(|| b.unit.clone()),
        min: pick(a.dtype, &a.min, &b.min, Ordering::Less),
        max: pick(a.dtype, &a.max, &b.max, Ordering::Greater),
        mean,
        std,
        m2,
        quantiles: sketch.as_ref().and_then(quantiles_of),
        sketch,
        distinct,
        distinct_exact,
        hll,
        top_values,
        histogram,
    })
}

/// Chan et al.'s pairwise update of mean and m2.
fn combine_moments(a: &ColumnProfile, b: &ColumnProfile) -> (Option<f64>, Option<f64>) {
    if b.count == 0 {
        return (a.mean, a.m2);
    }
    if a.count == 0 {
        return (b.mean, b.m2);
    }
    match (a.mean, a.m2, b.mean, b.m2) {
        (Some(ma), Some(m2a), Some(mb), Some(m2b)) => {
            let (na, nb) = (a.count as f64, b.count as f64);
            let n = na + nb;
            let delta = mb - ma;
            let mean = ma + delta * nb / n;
            let m2 = m2a + m2b + delta * delta * na * nb / n;
            (Some(mean), Some(m2))
        }
        _ => (None, None),
    }
}

/// The smaller (`want` = Less) or larger of two min/max values.
fn pick(
    dtype: DType,
    a: &Option<SetValue>,
    b: &Option<SetValue>,
    want: Ordering,
) -> Option<SetValue> {
    match (a, b) {
        (Some(x), Some(y)) => {
            let ord = match (dtype, x, y) {
                (DType::Date, SetValue::Str(p), SetValue::Str(q)) => {
                    parse_date(p).cmp(&parse_date(q))
                }
                (DType::Timestamp, SetValue::Str(p), SetValue::Str(q)) => {
                    parse_timestamp(p).cmp(&parse_timestamp(q))
                }
                _ => cmp_values(x, y),
            };
            Some(if ord == want { x.clone() } else { y.clone() })
        }
        (x, y) => x.clone().or_else(|| y.clone()),
    }
}

fn merge_top(a: &ColumnProfile, b: &ColumnProfile) -> Option<Vec<TopValue>> {
    let (x, y) = match (&a.top_values, &b.top_values) {
        (None, None) => return None,
        // An int column lists its values only while it has few; one side had many.
        (Some(_), None) | (None, Some(_)) if a.dtype == DType::Int => {
            if a.count == 0 || b.count == 0 {
                return a.top_values.clone().or_else(|| b.top_values.clone());
            }
            return None;
        }
        (x, y) => (
            x.as_deref().unwrap_or_default(),
            y.as_deref().unwrap_or_default(),
        ),
    };
    let mut merged: Vec<TopValue> = x.to_vec();
    for t in y {
        match merged.iter_mut().find(|m| m.value == t.value) {
            Some(m) => m.count += t.count,
            None => merged.push(t.clone()),
        }
    }
    sort_top(&mut merged);
    if a.dtype == DType::Int {
        // Both lists were complete; the union is complete while it stays small.
        return (merged.len() <= TOP_VALUES.max(x.len()).max(y.len())).then_some(merged);
    }
    merged.truncate(TOP_VALUES.max(x.len()).max(y.len()));
    Some(merged)
}

/// An equal-width histogram over the sketch's range from a complete list of values and
/// their counts: exact, with the bins of [`bin_sorted`].
fn rebin_values(sketch: &QuantileSketch, top: &[TopValue]) -> Option<Histogram> {
    if top.iter().map(|t| t.count).sum::<u64>() != sketch.count() {
        return rebin(sketch);
    }
    let edges = equal_width_edges(sketch.min()?, sketch.max()?);
    let last = edges.len() - 1;
    let mut h = Histogram {
        counts: vec![0; last],
        edges,
        under: 0,
        over: 0,
    };
    for t in top {
        let x = num(&t.value)?;
        if x < h.edges[0] {
            h.under += t.count;
        } else if x > h.edges[last] {
            h.over += t.count;
        } else {
            // The number of edges at or below x, less one; the right edge closes the last bin.
            let bin = (h.edges.partition_point(|e| *e <= x) - 1).min(last - 1);
            h.counts[bin] += t.count;
        }
    }
    Some(h)
}

/// An equal-width histogram over the sketch's range, counts estimated from its CDF.
fn rebin(sketch: &QuantileSketch) -> Option<Histogram> {
    let (lo, hi) = (sketch.min()?, sketch.max()?);
    let edges = equal_width_edges(lo, hi);
    let n = sketch.count();
    let mut cumulative = Vec::with_capacity(edges.len());
    let mut last = 0u64;
    for (i, &e) in edges.iter().enumerate() {
        let c = if i == 0 {
            0
        } else if i == BINS {
            n
        } else {
            let below = (sketch.cdf(e).unwrap_or(0.0) * n as f64).round() as u64;
            below.clamp(last, n)
        };
        cumulative.push(c);
        last = c;
    }
    Some(Histogram {
        counts: cumulative.windows(2).map(|w| w[1] - w[0]).collect(),
        edges,
        under: 0,
        over: 0,
    })
}
