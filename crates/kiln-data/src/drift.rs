//! Drift: how far a live window of data has moved from the training set, column by column,
//! computed from profiles alone.
//!
//! The reference is a training set's [`Profile`]; the current window is profiled against it
//! ([`profile_against`]: numeric columns binned with the reference's histogram edges, the
//! reference's frequent values counted), and each column's two profiles are compared. No raw
//! reference rows are needed, so a model package carrying its training profile can be checked
//! against any window.
//!
//! ## Methods and their defaults (Evidently's)
//!
//! | reference values | column | default | drift when |
//! |---|---|---|---|
//! | ≤ 1000 | numeric, > 5 distinct values | two-sample Kolmogorov–Smirnov | p ≤ 0.05 **and** D ≥ 0.1 |
//! | ≤ 1000 | categorical, or numeric with ≤ 5 values | chi-square | p < 0.05 **and** Cramér's V ≥ 0.1 |
//! | > 1000 | numeric, > 5 distinct values | normed Wasserstein | ≥ 0.1 |
//! | > 1000 | categorical, or numeric with ≤ 5 values | Jensen–Shannon distance | ≥ 0.1 |
//! | any, on request | any | PSI | ≥ 0.1 |
//!
//! "Reference values" are the column's present values in the reference; "distinct values" are
//! counted over both sides together. A method can be forced for every column
//! ([`DriftOptions::method`]) or per column ([`DriftOptions::column_methods`]). Date and
//! timestamp columns are left out unless named in [`DriftOptions::columns`] (time always moves
//! between windows).
//!
//! **Effect-size floors.** A p-value only says a difference is unlikely to be chance; with
//! enough rows any difference is. So the two tests also need an effect at least as large as a
//! floor ([`Floors`]): the KS statistic D itself, and for chi-square Cramér's V of the two
//! samples' *proportions* (the 2×k table with both rows scaled to the same total, so
//! V = √(½ Σ (p−q)²/(p+q)); the usual V of the raw counts shrinks towards 0 when one sample is
//! much larger than the other and could then never reach the floor). Distances (Wasserstein,
//! Jensen–Shannon, PSI) are effect sizes already; their thresholds are the floors. A floor of
//! 0 gives Evidently's behaviour exactly.
//!
//! **Chi-square.** Kiln runs the two-sample test of homogeneity on the 2×k table (reference
//! counts, current counts), k − 1 degrees of freedom, no continuity correction. Evidently runs
//! a goodness-of-fit of the current counts against the reference's proportions taken as exact,
//! which overstates the evidence when the reference is itself a sample of similar size, and
//! divides by zero on a value the reference never saw. For two categories the 2×2 test *is*
//! the two-proportion Z-test Evidently uses there (χ² = z², same p-value), so that case is
//! folded in and reported as `chisquare`.
//!
//! **Categories.** Categorical columns compare the reference's listed values (its 20 most
//! frequent) plus one "other" bucket for everything else, on both sides; values new in the
//! current window land in "other". Numeric columns compared with a categorical method use
//! their exact values where both profiles list them all (int columns with at most 20
//! values), and otherwise the reference's 20 histogram bins plus one bin below and one above
//! its range. PSI fills empty shares as Evidently does (0.0001, or a millionth of the
//! smallest share when that is smaller); Jensen–Shannon needs no filling (natural log, as
//! scipy's `jensenshannon`).
//!
//! **KS and Wasserstein from profiles.** Each side's distribution function is exact when the
//! profile lists every value (int columns with at most 20 values, or a t-digest whose every
//! centroid holds one value) and otherwise the t-digest's piecewise-linear CDF, the same curve
//! [`QuantileSketch::cdf`] reads. D is the largest gap between the two curves (found at their
//! knots, from both sides of a jump), raised to the largest gap seen at the shared histogram
//! edges, where both sides' counts are exact. The Wasserstein distance integrates the gap
//! exactly, segment by segment, and is normed by the reference's population standard
//! deviation (at least 0.001, as Evidently). Against raw samples the tests hold D within 0.01
//! and the normed Wasserstein distance within 0.01 + 2 %; `approximate` in a column's result
//! says a sketch was involved. The p-value is the asymptotic Kolmogorov distribution with
//! Stephens' correction, λ = (√nₑ + 0.12 + 0.11/√nₑ)·D with nₑ = nm/(n+m) (within ~5 % of
//! scipy's `ks_2samp`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use kiln_transform::DType;
use kiln_transform::time::format_timestamp;
use polars::prelude::*;
use serde::{Deserialize, Serialize};

use crate::config::SetValue;
use crate::error::DataError;
use crate::profile::{ColumnProfile, Histogram, Profile, ProfileError, profile_against};
use crate::sketch::QuantileSketch;

/// Reference columns with at most this many present values get the small-sample tests.
pub const SMALL_REFERENCE: u64 = 1000;
/// Numeric columns with at most this many distinct values (both sides together) are compared
/// as categories.
pub const LOW_CARDINALITY: u64 = 5;

#[derive(Debug, thiserror::Error)]
pub enum DriftError {
    #[error("no column `{column}` in the reference profile (columns: {})", available.join(", "))]
    UnknownColumn {
        column: String,
        available: Vec<String>,
    },
    #[error("column `{column}` of the reference is missing from the current data (columns: {})", available.join(", "))]
    MissingColumn {
        column: String,
        available: Vec<String>,
    },
    #[error("column `{column}` is {reference} in the reference but {current} in the current data")]
    TypeMismatch {
        column: String,
        reference: DType,
        current: DType,
    },
    #[error(
        "method `{method}` compares numeric columns, and column `{column}` is {dtype} \
         (use chisquare, jensenshannon or psi)"
    )]
    NotNumeric {
        column: String,
        method: Method,
        dtype: DType,
    },
    #[error("time window column `{column}` is {dtype}; expected a date or timestamp column")]
    NotTime { column: String, dtype: String },
    #[error("invalid drift option: {0}")]
    Option(String),
    #[error("{0}")]
    Profile(#[from] ProfileError),
    #[error("{0}")]
    Polars(#[from] PolarsError),
}

impl From<DriftError> for DataError {
    fn from(e: DriftError) -> DataError {
        match e {
            DriftError::Polars(e) | DriftError::Profile(ProfileError::Polars(e)) => {
                DataError::Polars(e)
            }
            other => DataError::Config(other.to_string()),
        }
    }
}

pub type Result<T, E = DriftError> = std::result::Result<T, E>;

// ---------------------------------------------------------------------------------------------
// Options

/// A drift method, named as in Evidently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Method {
    /// Two-sample Kolmogorov–Smirnov test (numeric).
    #[serde(rename = "ks")]
    Ks,
    /// Chi-square test of homogeneity (any column, as categories).
    #[serde(rename = "chisquare")]
    ChiSquare,
    /// Wasserstein-1 distance normed by the reference's standard deviation (numeric).
    #[serde(rename = "wasserstein")]
    Wasserstein,
    /// Jensen–Shannon distance, natural log (any column, as categories).
    #[serde(rename = "jensenshannon")]
    JensenShannon,
    /// Population stability index (any column, as categories).
    #[serde(rename = "psi")]
    Psi,
}

impl Method {
    pub const ALL: [Method; 5] = [
        Method::Ks,
        Method::ChiSquare,
        Method::Wasserstein,
        Method::JensenShannon,
        Method::Psi,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Method::Ks => "ks",
            Method::ChiSquare => "chisquare",
            Method::Wasserstein => "wasserstein",
            Method::JensenShannon => "jensenshannon",
            Method::Psi => "psi",
        }
    }

    /// True for the tests, whose verdict is a p-value (plus an effect-size floor).
    pub fn has_p_value(self) -> bool {
        matches!(self, Method::Ks | Method::ChiSquare)
    }

    /// True for the methods that need numbers (KS, Wasserstein).
    pub fn numeric_only(self) -> bool {
        matches!(self, Method::Ks | Method::Wasserstein)
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Method {
    type Err = DriftError;

    fn from_str(s: &str) -> Result<Method> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "ks" | "kolmogorov-smirnov" | "kolmogorov_smirnov" => Method::Ks,
            "chisquare" | "chi-square" | "chi_square" | "chi2" | "z" => Method::ChiSquare,
            "wasserstein" | "wasserstein_distance_norm" => Method::Wasserstein,
            "jensenshannon" | "jensen-shannon" | "jensen_shannon" | "js" => Method::JensenShannon,
            "psi" => Method::Psi,
            _ => {
                return Err(DriftError::Option(format!(
                    "unknown method {s:?} (expected one of ks, chisquare, wasserstein, \
                     jensenshannon, psi)"
                )));
            }
        })
    }
}

/// Drift thresholds per method: the p-value level for the tests, the distance for the others.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Thresholds {
    /// KS drifts when p ≤ this.
    pub ks: f64,
    /// Chi-square drifts when p < this.
    pub chisquare: f64,
    /// Normed Wasserstein drifts when ≥ this.
    pub wasserstein: f64,
    /// Jensen–Shannon distance drifts when ≥ this.
    pub jensenshannon: f64,
    /// PSI drifts when ≥ this.
    pub psi: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            ks: 0.05,
            chisquare: 0.05,
            wasserstein: 0.1,
            jensenshannon: 0.1,
            psi: 0.1,
        }
    }
}

impl Thresholds {
    pub fn of(&self, m: Method) -> f64 {
        match m {
            Method::Ks => self.ks,
            Method::ChiSquare => self.chisquare,
            Method::Wasserstein => self.wasserstein,
            Method::JensenShannon => self.jensenshannon,
            Method::Psi => self.psi,
        }
    }
}

/// Effect-size floors for the tests: a significant p-value drifts only with at least this
/// effect. 0 turns a floor off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Floors {
    /// The KS statistic D (the largest gap between the two CDFs). 0.1 is a shift of about a
    /// quarter of a standard deviation of a normal distribution.
    pub ks_statistic: f64,
    /// Cramér's V of the two samples' proportions. 0.1 is Cohen's "small" effect; it is a
    /// 10-point change of a 50/50 split.
    pub cramers_v: f64,
}

impl Default for Floors {
    fn default() -> Self {
        Floors {
            ks_statistic: 0.1,
            cramers_v: 0.1,
        }
    }
}

/// What to compare and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DriftOptions {
    /// Feature columns to compare; default: every reference column except dates and
    /// timestamps (and the outputs).
    pub columns: Option<Vec<String>>,
    /// Output (prediction) columns: compared the same way, reported apart as prediction drift
    /// and not counted in the share of drifted columns.
    pub outputs: Vec<String>,
    /// One method for every column, instead of the defaults.
    pub method: Option<Method>,
    /// A method for some columns (wins over `method`).
    pub column_methods: BTreeMap<String, Method>,
    pub thresholds: Thresholds,
    pub floors: Floors,
    /// The dataset drifts when at least this share of the feature columns drift.
    pub drift_share: f64,
    /// Reference columns with at most this many values get KS / chi-square by default.
    pub small_reference: u64,
}

impl Default for DriftOptions {
    fn default() -> Self {
        DriftOptions {
            columns: None,
            outputs: Vec::new(),
            method: None,
            column_methods: BTreeMap::new(),
            thresholds: Thresholds::default(),
            floors: Floors::default(),
            drift_share: 0.5,
            small_reference: SMALL_REFERENCE,
        }
    }
}

impl DriftOptions {
    fn check(&self) -> Result<()> {
        let bad = |m: String| Err(DriftError::Option(m));
        if !(self.drift_share > 0.0 && self.drift_share <= 1.0) {
            return bad(format!(
                "drift_share must be in (0, 1], got {}",
                self.drift_share
            ));
        }
        for m in Method::ALL {
            let t = self.thresholds.of(m);
            if !(t.is_finite() && t >= 0.0) {
                return bad(format!("the {m} threshold must be a number ≥ 0, got {t}"));
            }
            if m.has_p_value() && t > 1.0 {
                return bad(format!("the {m} threshold is a p-value level ≤ 1, got {t}"));
            }
        }
        for (what, v) in [
            ("ks_statistic", self.floors.ks_statistic),
            ("cramers_v", self.floors.cramers_v),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return bad(format!("the {what} floor must be in [0, 1], got {v}"));
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Report

/// A drift comparison of a current window with a reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftReport {
    /// Rows of the reference and of the current window.
    pub reference_rows: u64,
    pub current_rows: u64,
    /// Feature columns, in the reference's order.
    pub columns: Vec<ColumnDrift>,
    pub drifted_columns: usize,
    /// Drifted feature columns / compared feature columns (0 when none were compared).
    pub share_drifted: f64,
    /// The share at which the dataset drifts.
    pub drift_share: f64,
    pub dataset_drift: bool,
    /// Output columns (prediction drift).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<ColumnDrift>,
    /// Whether any output column drifted; absent without outputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prediction_drift: Option<bool>,
    /// Columns that could not be compared (no values on one side).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<SkippedColumn>,
}

impl DriftReport {
    /// A column's result, feature or output.
    pub fn column(&self, name: &str) -> Option<&ColumnDrift> {
        self.columns
            .iter()
            .chain(&self.outputs)
            .find(|c| c.column == name)
    }

    /// The names of the drifted feature columns.
    pub fn drifted(&self) -> Vec<&str> {
        self.columns
            .iter()
            .filter(|c| c.drifted)
            .map(|c| c.column.as_str())
            .collect()
    }
}

/// One column's comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnDrift {
    pub column: String,
    /// The reference's type.
    pub dtype: DType,
    pub method: Method,
    /// Whether the method was the default for the column or asked for.
    pub forced: bool,
    /// KS: D; chi-square: χ²; Wasserstein: the normed distance; Jensen–Shannon: the distance;
    /// PSI: the index.
    pub statistic: f64,
    /// KS and chi-square only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p_value: Option<f64>,
    /// Chi-square's degrees of freedom.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dof: Option<u64>,
    /// The p-value level (KS, chi-square) or the distance threshold (the others).
    pub threshold: f64,
    /// The effect size and its floor (KS, chi-square).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<Effect>,
    pub drifted: bool,
    /// The statistic was computed from a sketch (t-digest) rather than exact counts.
    pub approximate: bool,
    pub reference: SideStats,
    pub current: SideStats,
    /// Current share of missing values (null or NaN) minus the reference's.
    pub missing_share_change: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Effect {
    /// `ks_statistic` or `cramers_v`.
    pub measure: String,
    pub value: f64,
    pub floor: f64,
}

/// Counts of one side of a column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SideStats {
    pub rows: u64,
    /// Present values (neither null nor NaN).
    pub values: u64,
    /// Null or NaN.
    pub missing: u64,
    pub missing_share: f64,
    pub distinct: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SkippedColumn {
    pub column: String,
    pub reason: String,
}

// ---------------------------------------------------------------------------------------------
// Entry points

/// Profiles `df` against `reference` (only the columns compared) and compares the two.
/// Returns the current profile too (a window's profile is worth keeping).
pub fn drift(
    df: &DataFrame,
    reference: &Profile,
    opts: &DriftOptions,
) -> Result<(Profile, DriftReport)> {
    opts.check()?;
    let names: Vec<String> = df
        .get_column_names()
        .iter()
        .map(|s| s.to_string())
        .collect();
    let plan = plan_columns(reference, &names, opts)?;
    let selected = df.select(plan.iter().map(|(n, _)| n.as_str()))?;
    let current = profile_against(&selected, reference)?;
    let report = compare(reference, &current, opts)?;
    Ok((current, report))
}

/// The feature columns compared when none are named: every column of the reference except
/// dates and timestamps (which move by nature), in the reference's order.
pub fn default_columns(reference: &Profile) -> Vec<&str> {
    reference
        .columns
        .iter()
        .filter(|c| !is_time(c.dtype))
        .map(|c| c.name.as_str())
        .collect()
}

fn is_time(d: DType) -> bool {
    matches!(d, DType::Date | DType::Timestamp)
}

/// Compares a current profile (best computed with [`profile_against`] the reference, so that
/// bins and frequent values line up) with a reference profile.
pub fn compare(reference: &Profile, current: &Profile, opts: &DriftOptions) -> Result<DriftReport> {
    opts.check()?;
    let names: Vec<String> = current.columns.iter().map(|c| c.name.clone()).collect();
    let plan = plan_columns(reference, &names, opts)?;
    let mut report = DriftReport {
        reference_rows: reference.rows,
        current_rows: current.rows,
        columns: Vec::new(),
        drifted_columns: 0,
        share_drifted: 0.0,
        drift_share: opts.drift_share,
        dataset_drift: false,
        outputs: Vec::new(),
        prediction_drift: None,
        skipped: Vec::new(),
    };
    for (name, role) in &plan {
        let r = reference.column(name).expect("planned from the reference");
        let c = current
            .column(name)
            .expect("planned from the current columns");
        let forced = opts
            .column_methods
            .get(name)
            .copied()
            .or(opts.method)
            .map(|m| (m, true));
        match compare_column(r, c, forced, opts)? {
            Compared::Done(d) => match role {
                Role::Feature => report.columns.push(d),
                Role::Output => report.outputs.push(d),
            },
            Compared::Skipped(s) => report.skipped.push(s),
        }
    }
    report.drifted_columns = report.columns.iter().filter(|c| c.drifted).count();
    if !report.columns.is_empty() {
        report.share_drifted = report.drifted_columns as f64 / report.columns.len() as f64;
        report.dataset_drift = report.share_drifted >= opts.drift_share;
    }
    if !opts.outputs.is_empty() {
        report.prediction_drift = Some(report.outputs.iter().any(|c| c.drifted));
    }
    Ok(report)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Feature,
    Output,
}

/// The columns to compare, in the reference's order, checked against the current columns.
fn plan_columns(
    reference: &Profile,
    current: &[String],
    opts: &DriftOptions,
) -> Result<Vec<(String, Role)>> {
    let ref_names: Vec<String> = reference.columns.iter().map(|c| c.name.clone()).collect();
    let known = |c: &String| -> Result<()> {
        if reference.column(c).is_none() {
            return Err(DriftError::UnknownColumn {
                column: c.clone(),
                available: ref_names.clone(),
            });
        }
        Ok(())
    };
    for c in opts.columns.iter().flatten().chain(&opts.outputs) {
        known(c)?;
    }
    let outputs: BTreeSet<&str> = opts.outputs.iter().map(String::as_str).collect();
    let asked: Option<BTreeSet<&str>> = opts
        .columns
        .as_ref()
        .map(|cs| cs.iter().map(String::as_str).collect());
    let mut plan = Vec::new();
    for c in &reference.columns {
        let role = if outputs.contains(c.name.as_str()) {
            Role::Output
        } else {
            match &asked {
                Some(set) if set.contains(c.name.as_str()) => Role::Feature,
                Some(_) => continue,
                None if is_time(c.dtype) => continue,
                None => Role::Feature,
            }
        };
        if !current.iter().any(|n| n == &c.name) {
            return Err(DriftError::MissingColumn {
                column: c.name.clone(),
                available: current.to_vec(),
            });
        }
        plan.push((c.name.clone(), role));
    }
    for c in opts.column_methods.keys() {
        known(c)?;
        if !plan.iter().any(|(n, _)| n == c) {
            return Err(DriftError::Option(format!(
                "a method is given for column `{c}`, which is not compared"
            )));
        }
    }
    Ok(plan)
}

enum Compared {
    Done(ColumnDrift),
    Skipped(SkippedColumn),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Number,
    Time,
    Text,
    Bool,
}

fn family(t: DType) -> Family {
    match t {
        DType::Int | DType::Float => Family::Number,
        DType::Date | DType::Timestamp => Family::Time,
        DType::String | DType::Categorical => Family::Text,
        DType::Bool => Family::Bool,
    }
}

fn side(c: &ColumnProfile) -> SideStats {
    let missing = c.nulls + c.nan.unwrap_or(0);
    let rows = c.count + missing;
    SideStats {
        rows,
        values: c.count,
        missing,
        missing_share: if rows > 0 {
            missing as f64 / rows as f64
        } else {
            0.0
        },
        distinct: c.distinct,
    }
}

fn compare_column(
    r: &ColumnProfile,
    c: &ColumnProfile,
    forced: Option<(Method, bool)>,
    opts: &DriftOptions,
) -> Result<Compared> {
    if family(r.dtype) != family(c.dtype) {
        return Err(DriftError::TypeMismatch {
            column: r.name.clone(),
            reference: r.dtype,
            current: c.dtype,
        });
    }
    let numeric = matches!(family(r.dtype), Family::Number | Family::Time);
    let (rs, cs) = (side(r), side(c));
    let skip = |why: &str| {
        Ok(Compared::Skipped(SkippedColumn {
            column: r.name.clone(),
            reason: why.to_string(),
        }))
    };
    if let Some((m, _)) = forced
        && m.numeric_only()
        && !numeric
    {
        return Err(DriftError::NotNumeric {
            column: r.name.clone(),
            method: m,
            dtype: r.dtype,
        });
    }
    if r.count == 0 {
        return skip("no values in the reference");
    }
    if c.count == 0 {
        return skip(&format!(
            "no values in the current data ({} of {} rows missing)",
            cs.missing, cs.rows
        ));
    }
    let dists = if numeric {
        match (Dist::of(r), Dist::of(c)) {
            (Some(a), Some(b)) => Some((a, b)),
            // Only infinite values on one side: no finite distribution to compare.
            _ => return skip("no finite values on one side"),
        }
    } else {
        None
    };
    let (method, forced) = match forced {
        Some(f) => f,
        None => {
            let small = r.count <= opts.small_reference;
            let many = numeric && distinct_union(r, c) > LOW_CARDINALITY;
            let m = match (small, many) {
                (true, true) => Method::Ks,
                (true, false) => Method::ChiSquare,
                (false, true) => Method::Wasserstein,
                (false, false) => Method::JensenShannon,
            };
            (m, false)
        }
    };
    let threshold = opts.thresholds.of(method);
    let mut out = ColumnDrift {
        column: r.name.clone(),
        dtype: r.dtype,
        method,
        forced,
        statistic: 0.0,
        p_value: None,
        dof: None,
        threshold,
        effect: None,
        drifted: false,
        approximate: false,
        missing_share_change: cs.missing_share - rs.missing_share,
        reference: rs,
        current: cs,
    };
    match method {
        Method::Ks => {
            let (a, b) = dists.as_ref().expect("numeric");
            let mut d = ks_distance(&a.cdf, &b.cdf);
            if let (Some(hr), Some(hc)) = (&r.histogram, &c.histogram)
                && let Some(dh) = histogram_ks(hr, hc)
            {
                d = d.max(dh);
            }
            let p = stats::ks_p_value(d, a.cdf.n, b.cdf.n);
            let floor = opts.floors.ks_statistic;
            out.statistic = d;
            out.p_value = Some(p);
            out.effect = Some(Effect {
                measure: "ks_statistic".into(),
                value: d,
                floor,
            });
            out.drifted = p <= threshold && d >= floor;
            out.approximate = !(a.exact && b.exact);
        }
        Method::Wasserstein => {
            let (a, b) = dists.as_ref().expect("numeric");
            let norm = population_std(r).max(0.001);
            out.statistic = wasserstein(&a.cdf, &b.cdf) / norm;
            out.drifted = out.statistic >= threshold;
            out.approximate = !(a.exact && b.exact);
        }
        Method::ChiSquare | Method::JensenShannon | Method::Psi => {
            let binned = match &dists {
                Some((a, b)) => numeric_bins(r, c, a, b),
                None => categorical_bins(r, c),
            };
            let Some(binned) = binned else {
                return skip("no histogram in the reference profile");
            };
            out.approximate = binned.approximate;
            match method {
                Method::ChiSquare => {
                    let t = stats::chi_square_test(&binned.reference, &binned.current);
                    let floor = opts.floors.cramers_v;
                    out.statistic = t.statistic;
                    out.p_value = Some(t.p_value);
                    out.dof = Some(t.dof);
                    out.effect = Some(Effect {
                        measure: "cramers_v".into(),
                        value: t.cramers_v,
                        floor,
                    });
                    out.drifted = t.p_value < threshold && t.cramers_v >= floor;
                }
                Method::JensenShannon => {
                    out.statistic = stats::jensen_shannon(&binned.reference, &binned.current);
                    out.drifted = out.statistic >= threshold;
                }
                _ => {
                    out.statistic = stats::psi(&binned.reference, &binned.current);
                    out.drifted = out.statistic >= threshold;
                }
            }
        }
    }
    Ok(Compared::Done(out))
}

/// The profile's values with their counts when it lists them all: int columns whose frequent
/// values add up to the count (at most 20 values), bool and text columns likewise.
fn complete_values(c: &ColumnProfile) -> Option<&[crate::profile::TopValue]> {
    let top = c.top_values.as_deref()?;
    (top.iter().map(|t| t.count).sum::<u64>() == c.count).then_some(top)
}

/// Distinct values over both sides: exact when both list every value, otherwise the larger
/// exact count or the merged HyperLogLogs' estimate, whichever is larger.
fn distinct_union(r: &ColumnProfile, c: &ColumnProfile) -> u64 {
    if let (Some(a), Some(b)) = (complete_values(r), complete_values(c)) {
        let mut seen: Vec<&SetValue> = Vec::new();
        for t in a.iter().chain(b).filter(|t| t.count > 0) {
            if !seen.contains(&&t.value) {
                seen.push(&t.value);
            }
        }
        return seen.len() as u64;
    }
    let lower = r.distinct.max(c.distinct);
    if lower > LOW_CARDINALITY {
        return lower;
    }
    let mut h = r.hll.clone();
    match h.merge(&c.hll) {
        Ok(()) => h.estimate().max(lower),
        Err(_) => lower,
    }
}

/// The reference's population standard deviation (numpy's `std`, as Evidently norms by):
/// exact from the profile's moments, or from the sketch's centroids when the moments are
/// undefined (infinite values).
fn population_std(c: &ColumnProfile) -> f64 {
    if let Some(m2) = c.m2
        && c.count > 0
        && m2.is_finite()
    {
        return (m2 / c.count as f64).sqrt();
    }
    let Some(s) = &c.sketch else { return 0.0 };
    let n = s.count() as f64;
    if n == 0.0 {
        return 0.0;
    }
    let mean = s
        .centroids()
        .iter()
        .map(|&(m, w)| m * w as f64)
        .sum::<f64>()
        / n;
    let var = s
        .centroids()
        .iter()
        .map(|&(m, w)| w as f64 * (m - mean).powi(2))
        .sum::<f64>()
        / n;
    var.sqrt()
}

// ---------------------------------------------------------------------------------------------
// Distribution functions from profiles

/// A distribution function as fractions in [0, 1]: at knot `x[i]` it jumps from `lo[i]` (its
/// limit from the left) to `hi[i]` (its value there); between knots it is linear from `hi[i]`
/// to `lo[i + 1]`; 0 before the first knot and 1 from the last.
#[derive(Debug, Clone)]
struct Cdf {
    x: Vec<f64>,
    lo: Vec<f64>,
    hi: Vec<f64>,
    /// The values it describes.
    n: u64,
}

impl Cdf {
    /// The step function of values with counts, in increasing value.
    fn from_atoms(atoms: &[(f64, u64)]) -> Cdf {
        let n: u64 = atoms.iter().map(|a| a.1).sum();
        let mut cdf = Cdf {
            x: Vec::with_capacity(atoms.len()),
            lo: Vec::with_capacity(atoms.len()),
            hi: Vec::with_capacity(atoms.len()),
            n,
        };
        let mut before = 0u64;
        for &(x, w) in atoms {
            if w == 0 {
                continue;
            }
            if cdf.x.last() == Some(&x) {
                before += w;
                *cdf.hi.last_mut().expect("a knot") = before as f64 / n as f64;
                continue;
            }
            cdf.x.push(x);
            cdf.lo.push(before as f64 / n as f64);
            before += w;
            cdf.hi.push(before as f64 / n as f64);
        }
        cdf
    }

    /// The t-digest's curve: (min, 0), each centroid's mean at the weight before it plus half
    /// its own, (max, n) — as [`QuantileSketch::cdf`] interpolates it; repeated means are
    /// jumps.
    fn from_sketch(s: &QuantileSketch) -> Option<Cdf> {
        let (min, max) = (s.min()?, s.max()?);
        let n = s.count();
        let total = n as f64;
        let mut points = Vec::with_capacity(s.centroids().len() + 2);
        points.push((min, 0.0));
        let mut before = 0.0;
        let mut last_x = min;
        for &(mean, weight) in s.centroids() {
            let w = weight as f64;
            let x = mean.clamp(last_x, max);
            points.push((x, before + w / 2.0));
            before += w;
            last_x = x;
        }
        points.push((max, total));
        let mut cdf = Cdf {
            x: Vec::with_capacity(points.len()),
            lo: Vec::with_capacity(points.len()),
            hi: Vec::with_capacity(points.len()),
            n,
        };
        for (x, cum) in points {
            let f = (cum / total).clamp(0.0, 1.0);
            if cdf.x.last() == Some(&x) {
                *cdf.hi.last_mut().expect("a knot") = f;
            } else {
                cdf.x.push(x);
                cdf.lo.push(f);
                cdf.hi.push(f);
            }
        }
        Some(cdf)
    }

    /// (limit from the left, value) at `x`.
    fn at(&self, x: f64) -> (f64, f64) {
        let k = self.x.partition_point(|&v| v < x);
        if k < self.x.len() && self.x[k] == x {
            return (self.lo[k], self.hi[k]);
        }
        if k == 0 {
            return (0.0, 0.0);
        }
        if k == self.x.len() {
            return (1.0, 1.0);
        }
        let (x0, x1) = (self.x[k - 1], self.x[k]);
        let (f0, f1) = (self.hi[k - 1], self.lo[k]);
        let v = f0 + (x - x0) / (x1 - x0) * (f1 - f0);
        (v, v)
    }
}

/// One side of a numeric column: its distribution function and whether it is exact.
struct Dist {
    cdf: Cdf,
    exact: bool,
}

impl Dist {
    fn of(c: &ColumnProfile) -> Option<Dist> {
        if c.dtype == DType::Int
            && let Some(top) = complete_values(c)
        {
            let mut atoms: Vec<(f64, u64)> = top
                .iter()
                .filter_map(|t| match t.value {
                    SetValue::Int(v) => Some((v as f64, t.count)),
                    SetValue::Float(v) => Some((v, t.count)),
                    _ => None,
                })
                .collect();
            if atoms.iter().map(|a| a.1).sum::<u64>() == c.count && c.count > 0 {
                atoms.sort_by(|a, b| a.0.total_cmp(&b.0));
                return Some(Dist {
                    cdf: Cdf::from_atoms(&atoms),
                    exact: true,
                });
            }
        }
        let s = c.sketch.as_ref()?;
        if s.is_empty() {
            return None;
        }
        // A digest whose every centroid holds one value holds the values themselves.
        if s.centroids().iter().all(|&(_, w)| w == 1) {
            let atoms: Vec<(f64, u64)> = s.centroids().to_vec();
            return Some(Dist {
                cdf: Cdf::from_atoms(&atoms),
                exact: true,
            });
        }
        Some(Dist {
            cdf: Cdf::from_sketch(s)?,
            exact: false,
        })
    }
}

/// The largest gap between two distribution functions: both are linear between their knots,
/// so the supremum is at a knot, from one side of it or the other.
fn ks_distance(a: &Cdf, b: &Cdf) -> f64 {
    let mut d = 0.0f64;
    for &x in a.x.iter().chain(&b.x) {
        let (al, ah) = a.at(x);
        let (bl, bh) = b.at(x);
        d = d.max((al - bl).abs()).max((ah - bh).abs());
    }
    d
}

/// The KS gap at the histogram edges, where both sides' counts are exact (same edges only):
/// the share below each edge, and at or below the last. A lower bound of the true D.
fn histogram_ks(r: &Histogram, c: &Histogram) -> Option<f64> {
    if r.edges != c.edges || r.counts.len() != c.counts.len() {
        return None;
    }
    let total = |h: &Histogram| h.under + h.counts.iter().sum::<u64>() + h.over;
    let (nr, nc) = (total(r) as f64, total(c) as f64);
    if nr == 0.0 || nc == 0.0 {
        return None;
    }
    let (mut cr, mut cc) = (r.under, c.under);
    let mut d = (cr as f64 / nr - cc as f64 / nc).abs();
    for (a, b) in r.counts.iter().zip(&c.counts) {
        cr += a;
        cc += b;
        d = d.max((cr as f64 / nr - cc as f64 / nc).abs());
    }
    Some(d)
}

/// ∫ |A(x) − B(x)| dx, exactly for the two piecewise-linear functions.
fn wasserstein(a: &Cdf, b: &Cdf) -> f64 {
    let mut knots: Vec<f64> = a.x.iter().chain(&b.x).copied().collect();
    knots.sort_by(f64::total_cmp);
    knots.dedup();
    let mut total = 0.0;
    for w in knots.windows(2) {
        let (x0, x1) = (w[0], w[1]);
        let d0 = a.at(x0).1 - b.at(x0).1;
        let d1 = a.at(x1).0 - b.at(x1).0;
        let (p, q) = (d0.abs(), d1.abs());
        let mean_abs = if d0 * d1 >= 0.0 {
            (p + q) / 2.0
        } else {
            // The gap changes sign inside: two triangles.
            (p * p + q * q) / (2.0 * (p + q))
        };
        total += mean_abs * (x1 - x0);
    }
    total
}

// ---------------------------------------------------------------------------------------------
// Categories

/// Counts per category on both sides.
struct Binned {
    reference: Vec<f64>,
    current: Vec<f64>,
    approximate: bool,
}

/// The reference's listed values plus "other", counted on both sides.
fn categorical_bins(r: &ColumnProfile, c: &ColumnProfile) -> Option<Binned> {
    let rt = r.top_values.as_deref().unwrap_or_default();
    let ct = c.top_values.as_deref().unwrap_or_default();
    let mut reference = Vec::with_capacity(rt.len() + 1);
    let mut current = Vec::with_capacity(rt.len() + 1);
    let mut approximate = false;
    let (mut r_listed, mut c_listed) = (0u64, 0u64);
    for t in rt {
        let n = match ct.iter().find(|x| x.value == t.value) {
            Some(x) => x.count,
            None => {
                // Profiled against the reference, every reference value is listed; without
                // it, an unlisted value's count is folded into "other".
                approximate = true;
                0
            }
        };
        reference.push(t.count as f64);
        current.push(n as f64);
        r_listed += t.count;
        c_listed += n;
    }
    reference.push(r.count.saturating_sub(r_listed) as f64);
    current.push(c.count.saturating_sub(c_listed) as f64);
    Some(Binned {
        reference,
        current,
        approximate,
    })
}

/// Numeric columns as categories: their values when both sides are exact lists, otherwise the
/// reference's histogram bins plus one bin below and one above.
fn numeric_bins(r: &ColumnProfile, c: &ColumnProfile, a: &Dist, b: &Dist) -> Option<Binned> {
    if a.exact && b.exact {
        let mut values: Vec<f64> = a.cdf.x.iter().chain(&b.cdf.x).copied().collect();
        values.sort_by(f64::total_cmp);
        values.dedup();
        let counts = |d: &Cdf| -> Vec<f64> {
            values
                .iter()
                .map(|&v| {
                    let (lo, hi) = d.at(v);
                    ((hi - lo) * d.n as f64).round()
                })
                .collect()
        };
        return Some(Binned {
            reference: counts(&a.cdf),
            current: counts(&b.cdf),
            approximate: false,
        });
    }
    let rh = r.histogram.as_ref()?;
    let full = |h: &Histogram| -> Vec<f64> {
        std::iter::once(h.under)
            .chain(h.counts.iter().copied())
            .chain(std::iter::once(h.over))
            .map(|v| v as f64)
            .collect()
    };
    let reference = full(rh);
    match &c.histogram {
        Some(ch) if ch.edges == rh.edges && ch.counts.len() == rh.counts.len() => Some(Binned {
            reference,
            current: full(ch),
            approximate: false,
        }),
        _ => {
            // Different edges: the current counts from its distribution function.
            let d = &b.cdf;
            let n = d.n as f64;
            let last = rh.edges.len() - 1;
            let mut current = Vec::with_capacity(rh.edges.len() + 1);
            let mut below = d.at(rh.edges[0]).0 * n;
            current.push(below);
            for (i, &e) in rh.edges.iter().enumerate().skip(1) {
                let upto = if i == last { d.at(e).1 } else { d.at(e).0 } * n;
                current.push((upto - below).max(0.0));
                below = upto;
            }
            current.push((n - below).max(0.0));
            Some(Binned {
                reference,
                current,
                approximate: true,
            })
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Statistics

/// The statistics behind the drift methods, on plain numbers.
pub mod stats {
    /// ln Γ(x) for x > 0 (Lanczos, g = 7, 9 terms; relative error about 1e-15), with the
    /// reflection formula below 0.5.
    pub fn ln_gamma(x: f64) -> f64 {
        const G: f64 = 7.0;
        const C: [f64; 9] = [
            0.999_999_999_999_809_9,
            676.520_368_121_885_1,
            -1_259.139_216_722_402_8,
            771.323_428_777_653_1,
            -176.615_029_162_140_6,
            12.507_343_278_686_905,
            -0.138_571_095_265_720_12,
            9.984_369_578_019_572e-6,
            1.505_632_735_149_311_6e-7,
        ];
        if x < 0.5 {
            let pi = std::f64::consts::PI;
            return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
        }
        let x = x - 1.0;
        let mut a = C[0];
        for (i, c) in C.iter().enumerate().skip(1) {
            a += c / (x + i as f64);
        }
        let t = x + G + 0.5;
        0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
    }

    /// The regularized upper incomplete gamma function Q(a, x) = Γ(a, x) / Γ(a), a > 0: the
    /// series for P below a + 1, Lentz's continued fraction for Q above (accurate in the far
    /// tail, where p-values are tiny).
    pub fn gamma_q(a: f64, x: f64) -> f64 {
        const EPS: f64 = 1e-16;
        const TINY: f64 = 1e-300;
        if x <= 0.0 {
            return 1.0;
        }
        if !x.is_finite() {
            return 0.0;
        }
        let log_prefix = -x + a * x.ln() - ln_gamma(a);
        if x < a + 1.0 {
            let mut ap = a;
            let mut term = 1.0 / a;
            let mut sum = term;
            for _ in 0..10_000 {
                ap += 1.0;
                term *= x / ap;
                sum += term;
                if term.abs() < sum.abs() * EPS {
                    break;
                }
            }
            return (1.0 - sum * log_prefix.exp()).clamp(0.0, 1.0);
        }
        let mut b = x + 1.0 - a;
        let mut c = 1.0 / TINY;
        let mut d = 1.0 / b;
        let mut h = d;
        for i in 1..10_000 {
            let an = -(i as f64) * (i as f64 - a);
            b += 2.0;
            d = an * d + b;
            if d.abs() < TINY {
                d = TINY;
            }
            c = b + an / c;
            if c.abs() < TINY {
                c = TINY;
            }
            d = 1.0 / d;
            let step = d * c;
            h *= step;
            if (step - 1.0).abs() < EPS {
                break;
            }
        }
        (log_prefix.exp() * h).clamp(0.0, 1.0)
    }

    /// P(χ²ₖ > x): the chi-square distribution's survival function.
    pub fn chi_square_sf(x: f64, dof: f64) -> f64 {
        if dof <= 0.0 {
            return if x > 0.0 { 0.0 } else { 1.0 };
        }
        gamma_q(dof / 2.0, x / 2.0)
    }

    /// P(K > λ) for the Kolmogorov distribution (the limit of √n·Dₙ): the alternating
    /// series 2 Σ (−1)^(j−1) e^(−2j²λ²) from λ = 1.18 up, and below it the Jacobi form
    /// 1 − √(2π)/λ Σ e^(−(2j−1)²π²/(8λ²)), which converges fast there.
    pub fn kolmogorov_sf(lambda: f64) -> f64 {
        if lambda.is_nan() || lambda <= 0.0 {
            return 1.0;
        }
        if lambda < 1.18 {
            let y = (-std::f64::consts::PI.powi(2) / (8.0 * lambda * lambda)).exp();
            let mut sum = 0.0;
            for j in 1..=10i32 {
                let k = f64::from(2 * j - 1);
                let term = y.powf(k * k);
                sum += term;
                if term < 1e-18 {
                    break;
                }
            }
            let cdf = (2.0 * std::f64::consts::PI).sqrt() / lambda * sum;
            return (1.0 - cdf).clamp(0.0, 1.0);
        }
        let mut sum = 0.0;
        let mut sign = 1.0;
        for j in 1..=100i32 {
            let jf = f64::from(j);
            let term = (-2.0 * jf * jf * lambda * lambda).exp();
            sum += sign * term;
            if term < 1e-18 * sum.abs().max(1e-300) {
                break;
            }
            sign = -sign;
        }
        (2.0 * sum).clamp(0.0, 1.0)
    }

    /// The two-sided p-value of a two-sample KS statistic `d` for samples of `n` and `m`
    /// values: the Kolmogorov distribution at λ = (√nₑ + 0.12 + 0.11/√nₑ)·d, nₑ = nm/(n+m)
    /// (Stephens' correction for finite samples).
    pub fn ks_p_value(d: f64, n: u64, m: u64) -> f64 {
        if n == 0 || m == 0 {
            return 1.0;
        }
        let (n, m) = (n as f64, m as f64);
        let en = n * m / (n + m);
        let s = en.sqrt();
        kolmogorov_sf((s + 0.12 + 0.11 / s) * d)
    }

    /// A chi-square test of homogeneity on a 2×k table.
    #[derive(Debug, Clone, Copy, PartialEq)]
    pub struct ChiSquare {
        pub statistic: f64,
        pub dof: u64,
        pub p_value: f64,
        /// Cramér's V of the two rows' proportions (each row scaled to the same total).
        pub cramers_v: f64,
    }

    /// The test of homogeneity of two rows of counts (categories empty in both rows are
    /// dropped), without continuity correction, and Cramér's V of the rows' proportions.
    pub fn chi_square_test(reference: &[f64], current: &[f64]) -> ChiSquare {
        let n1: f64 = reference.iter().sum();
        let n2: f64 = current.iter().sum();
        let n = n1 + n2;
        let mut statistic = 0.0;
        let mut k = 0u64;
        let mut v2 = 0.0;
        for (&a, &b) in reference.iter().zip(current) {
            let t = a + b;
            if t <= 0.0 {
                continue;
            }
            k += 1;
            let e1 = n1 * t / n;
            let e2 = n2 * t / n;
            if e1 > 0.0 {
                statistic += (a - e1).powi(2) / e1;
            }
            if e2 > 0.0 {
                statistic += (b - e2).powi(2) / e2;
            }
            if n1 > 0.0 && n2 > 0.0 {
                let (p, q) = (a / n1, b / n2);
                if p + q > 0.0 {
                    v2 += (p - q).powi(2) / (p + q);
                }
            }
        }
        if k <= 1 || n1 == 0.0 || n2 == 0.0 {
            return ChiSquare {
                statistic: 0.0,
                dof: k.saturating_sub(1),
                p_value: 1.0,
                cramers_v: 0.0,
            };
        }
        let dof = k - 1;
        ChiSquare {
            statistic,
            dof,
            p_value: chi_square_sf(statistic, dof as f64),
            cramers_v: (v2 / 2.0).sqrt().min(1.0),
        }
    }

    fn shares(counts: &[f64]) -> Vec<f64> {
        let total: f64 = counts.iter().sum();
        counts
            .iter()
            .map(|&c| if total > 0.0 { c / total } else { 0.0 })
            .collect()
    }

    /// The Jensen–Shannon distance (natural log; the square root of the divergence) between
    /// two count or share vectors, each normalised to sum to 1, as scipy's `jensenshannon`.
    pub fn jensen_shannon(p: &[f64], q: &[f64]) -> f64 {
        let (p, q) = (shares(p), shares(q));
        let mut div = 0.0;
        for (&a, &b) in p.iter().zip(&q) {
            let m = (a + b) / 2.0;
            if a > 0.0 {
                div += 0.5 * a * (a / m).ln();
            }
            if b > 0.0 {
                div += 0.5 * b * (b / m).ln();
            }
        }
        div.max(0.0).sqrt()
    }

    /// Evidently's zero filling: a share of 0 becomes 0.0001, or a millionth of the smallest
    /// non-zero share when that is at most 0.0001.
    fn fill_zeroes(shares: &mut [f64]) {
        let smallest = shares
            .iter()
            .copied()
            .filter(|&s| s > 0.0)
            .fold(f64::INFINITY, f64::min);
        if !smallest.is_finite() {
            return;
        }
        let fill = if smallest <= 0.0001 {
            smallest / 1e6
        } else {
            0.0001
        };
        for s in shares.iter_mut().filter(|s| **s == 0.0) {
            *s = fill;
        }
    }

    /// The population stability index Σ (p − q)·ln(p/q) over categories (counts or shares),
    /// empty shares filled as Evidently does.
    pub fn psi(reference: &[f64], current: &[f64]) -> f64 {
        let keep: Vec<usize> = (0..reference.len().min(current.len()))
            .filter(|&i| reference[i] + current[i] > 0.0)
            .collect();
        let mut p = shares(&keep.iter().map(|&i| reference[i]).collect::<Vec<_>>());
        let mut q = shares(&keep.iter().map(|&i| current[i]).collect::<Vec<_>>());
        fill_zeroes(&mut p);
        fill_zeroes(&mut q);
        p.iter()
            .zip(&q)
            .filter(|(a, b)| **a > 0.0 && **b > 0.0)
            .map(|(&a, &b)| (a - b) * (a / b).ln())
            .sum()
    }
}

// ---------------------------------------------------------------------------------------------
// Windows

/// How to cut a table into windows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Windowing {
    /// Fixed time buckets of a date or timestamp column, aligned to the Unix epoch (UTC):
    /// `[k·every, (k+1)·every)`. Buckets without rows are not reported.
    Time { column: String, every: Duration },
    /// Consecutive runs of this many rows, in table order; the last may be shorter.
    Rows(usize),
}

/// Where a window lies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowInfo {
    pub index: usize,
    pub rows: u64,
    /// Row windows: the window's first row (0-based) in the table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_row: Option<u64>,
    /// Time windows: the bucket's start (inclusive) and end (exclusive), ISO 8601 UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
}

/// A table cut into windows.
#[derive(Debug, Clone)]
pub struct Windows {
    pub windows: Vec<(WindowInfo, DataFrame)>,
    /// Rows left out of time windows because their time is missing.
    pub rows_without_time: u64,
}

/// Cuts `df` into windows.
pub fn split_windows(df: &DataFrame, windowing: &Windowing) -> Result<Windows> {
    match windowing {
        Windowing::Rows(n) => {
            if *n == 0 {
                return Err(DriftError::Option(
                    "a row window needs at least 1 row".into(),
                ));
            }
            let mut windows = Vec::new();
            let mut offset = 0usize;
            while offset < df.height() {
                let w = df.slice(offset as i64, *n);
                windows.push((
                    WindowInfo {
                        index: windows.len(),
                        rows: w.height() as u64,
                        first_row: Some(offset as u64),
                        start: None,
                        end: None,
                    },
                    w,
                ));
                offset += n;
            }
            Ok(Windows {
                windows,
                rows_without_time: 0,
            })
        }
        Windowing::Time { column, every } => {
            let every_us = i64::try_from(every.as_micros()).unwrap_or(i64::MAX);
            if every_us <= 0 {
                return Err(DriftError::Option(
                    "a time window must be longer than zero".into(),
                ));
            }
            let names: Vec<String> = df
                .get_column_names()
                .iter()
                .map(|s| s.to_string())
                .collect();
            let Some(dtype) = df.schema().get(column.as_str()).cloned() else {
                return Err(DriftError::Option(format!(
                    "no time column `{column}` in the data (columns: {})",
                    names.join(", ")
                )));
            };
            let micros = match dtype {
                DataType::Datetime(_, _) => col(column.as_str())
                    .dt()
                    .cast_time_unit(TimeUnit::Microseconds)
                    .cast(DataType::Int64),
                DataType::Date => {
                    col(column.as_str())
                        .cast(DataType::Int32)
                        .cast(DataType::Int64)
                        * lit(86_400_000_000i64)
                }
                other => {
                    return Err(DriftError::NotTime {
                        column: column.clone(),
                        dtype: other.to_string(),
                    });
                }
            };
            let keys = df.clone().lazy().select([micros.alias("t")]).collect()?;
            let keys = keys.column("t")?.i64()?.clone();
            let mut buckets: BTreeMap<i64, Vec<IdxSize>> = BTreeMap::new();
            let mut missing = 0u64;
            for (i, t) in keys.iter().enumerate() {
                match t {
                    Some(t) => buckets
                        .entry(t.div_euclid(every_us))
                        .or_default()
                        .push(i as IdxSize),
                    None => missing += 1,
                }
            }
            let mut windows = Vec::with_capacity(buckets.len());
            for (k, idx) in buckets {
                let rows = idx.len() as u64;
                let w = df.take(&IdxCa::from_vec("idx".into(), idx))?;
                let start = k.saturating_mul(every_us);
                windows.push((
                    WindowInfo {
                        index: windows.len(),
                        rows,
                        first_row: None,
                        start: Some(format_timestamp(start)),
                        end: Some(format_timestamp(start.saturating_add(every_us))),
                    },
                    w,
                ));
            }
            Ok(Windows {
                windows,
                rows_without_time: missing,
            })
        }
    }
}

/// One window's drift.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowDrift {
    pub window: WindowInfo,
    pub report: DriftReport,
}

/// Drift of each window of a table against a reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowedDrift {
    pub windows: Vec<WindowDrift>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rows_without_time: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Cuts `df` into windows and compares each with `reference`.
pub fn drift_windows(
    df: &DataFrame,
    reference: &Profile,
    windowing: &Windowing,
    opts: &DriftOptions,
) -> Result<WindowedDrift> {
    opts.check()?;
    let names: Vec<String> = df
        .get_column_names()
        .iter()
        .map(|s| s.to_string())
        .collect();
    let plan = plan_columns(reference, &names, opts)?;
    let mut keep: Vec<&str> = plan.iter().map(|(n, _)| n.as_str()).collect();
    if let Windowing::Time { column, .. } = windowing
        && !keep.contains(&column.as_str())
    {
        keep.push(column.as_str());
    }
    let narrow = df.select(keep.iter().copied())?;
    let cut = split_windows(&narrow, windowing)?;
    let compared: Vec<&str> = plan.iter().map(|(n, _)| n.as_str()).collect();
    let mut windows = Vec::with_capacity(cut.windows.len());
    for (info, w) in cut.windows {
        let w = w.select(compared.iter().copied())?;
        let current = profile_against(&w, reference)?;
        let report = compare(reference, &current, opts)?;
        windows.push(WindowDrift {
            window: info,
            report,
        });
    }
    Ok(WindowedDrift {
        windows,
        rows_without_time: cut.rows_without_time,
    })
}

// ---------------------------------------------------------------------------------------------
// Text

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

fn number(x: f64) -> String {
    if x == 0.0 {
        "0".into()
    } else if x.abs() >= 1e5 || x.abs() < 1e-3 {
        format!("{x:.3e}")
    } else {
        format!("{x:.4}")
    }
}

/// A threshold or floor as written: `0.05`, `0.1`.
fn setting(x: f64) -> String {
    let s = format!("{x:.6}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn verdict_rule(c: &ColumnDrift) -> String {
    match c.method {
        Method::Ks => format!("p ≤ {}", setting(c.threshold)),
        Method::ChiSquare => format!("p < {}", setting(c.threshold)),
        _ => format!("≥ {}", setting(c.threshold)),
    }
}

/// The human report: a summary line, then one line per column.
pub fn render_text(r: &DriftReport) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "drift: {} of {} columns drifted ({:.0}%); dataset drift: {} (at ≥ {:.0}% of columns)",
        r.drifted_columns,
        r.columns.len(),
        100.0 * r.share_drifted,
        if r.dataset_drift { "YES" } else { "no" },
        100.0 * r.drift_share
    );
    let _ = writeln!(
        s,
        "reference {} rows, current {} rows",
        thousands(r.reference_rows),
        thousands(r.current_rows)
    );
    let all: Vec<&ColumnDrift> = r.columns.iter().chain(&r.outputs).collect();
    let w = all.iter().map(|c| c.column.len()).max().unwrap_or(6).max(6);
    let table = |s: &mut String, cols: &[ColumnDrift]| {
        let _ = writeln!(
            s,
            "  {:w$}  {:11}  {:13}  {:>11}  {:>10}  {:>10}  {:18}  {:>9}  DRIFT",
            "COLUMN", "TYPE", "METHOD", "STATISTIC", "P-VALUE", "RULE", "EFFECT", "MISSING Δ"
        );
        for c in cols {
            let stat = format!(
                "{}{}",
                if c.approximate { "~" } else { "" },
                number(c.statistic)
            );
            let p = c.p_value.map(number).unwrap_or_else(|| "-".into());
            let effect = match &c.effect {
                Some(e) => {
                    let name = if e.measure == "cramers_v" { "V" } else { "D" };
                    format!("{name} {} ≥ {}", number(e.value), setting(e.floor))
                }
                None => "-".into(),
            };
            let _ = writeln!(
                s,
                "  {:w$}  {:11}  {:13}  {:>11}  {:>10}  {:>10}  {:18}  {:>+8.2}%  {}",
                c.column,
                c.dtype.as_str(),
                c.method.name(),
                stat,
                p,
                verdict_rule(c),
                effect,
                100.0 * c.missing_share_change,
                if c.drifted { "DRIFT" } else { "-" }
            );
        }
    };
    table(&mut s, &r.columns);
    if let Some(pd) = r.prediction_drift {
        let _ = writeln!(s, "prediction drift: {}", if pd { "YES" } else { "no" });
        table(&mut s, &r.outputs);
    }
    for k in &r.skipped {
        let _ = writeln!(s, "  skipped {}: {}", k.column, k.reason);
    }
    s
}
