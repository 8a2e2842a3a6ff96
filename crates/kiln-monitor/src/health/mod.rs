//! Model health over the prediction log: drift of the logged inputs against the training
//! profile, prediction drift, and realised performance once labels arrive.
//!
//! [`assess`] takes the rows [`crate::predlog::read_predictions`] returns for a time range,
//! the feedback labels received for the deployment, and the reference profile (the
//! package's training profile), and computes:
//!
//! - per version: logged requests and rows, latency quantiles of the logged requests, and
//!   realised metrics (AUC, accuracy, log-loss, precision, recall, F1 for a binary
//!   classifier; accuracy, log-loss and macro AUC for several classes; RMSE, MAE and R² for
//!   a regression) over the rows whose label arrived;
//! - per window (fixed time buckets aligned to the epoch, or runs of N rows): the same
//!   realised metrics per version, the drift of the inputs against the reference, and the
//!   drift of the predictions against the first window (the training profile holds no
//!   predictions, so prediction drift is measured from where the range starts);
//! - the drift of the whole range, and the drift onset: the first window that drifts after
//!   one that did not (or the first window, when it drifts already).
//!
//! Labels join predictions by request id. A label that is a list gives one label per row of
//! its request, in order; a single label is the label of a one-row request (a request of
//! several rows with one label is counted as unusable, never guessed at). Class labels may
//! be class indices, booleans, or class names (given the model's class names).

use std::collections::{BTreeMap, HashMap};

use kiln_data::drift::{DriftOptions, DriftReport};
use kiln_data::plain::{PlainColumn, PlainTable};
use kiln_data::profile::Profile;
use serde::Serialize;
use serde_json::Value;

use crate::predlog::table::FIXED;

#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    #[error("{0}")]
    Data(String),
    #[error("{0}")]
    Option(String),
}

/// What kind of predictions the model makes (decides the realised metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskKind {
    Binary,
    Multiclass,
    Regression,
}

/// How the range is cut into windows.
#[derive(Debug, Clone, PartialEq)]
pub enum Windows {
    /// The whole range is one window.
    Whole,
    /// Fixed buckets of this many milliseconds, aligned to the Unix epoch.
    Time(i64),
    /// Runs of this many logged rows, in time order; the last may be shorter.
    Rows(usize),
}

#[derive(Debug, Clone)]
pub struct HealthOptions {
    /// Input drift settings. `columns: None` compares every reference column the log has.
    pub drift: DriftOptions,
    pub windows: Windows,
    /// The task, else inferred from the output columns (`probabilities_*` → a classifier,
    /// else a regression on `prediction`/`variable`).
    pub task: Option<TaskKind>,
    /// The model's class names, in class order (to read labels given as names).
    pub class_labels: Vec<String>,
    /// The output columns; default: inferred (see [`infer_outputs`]).
    pub outputs: Option<Vec<String>>,
    /// Above this P(class 1), a binary prediction is class 1.
    pub threshold: f64,
    /// Windows with fewer rows than this are not compared for drift (too few to say).
    pub min_drift_rows: usize,
}

impl Default for HealthOptions {
    fn default() -> Self {
        HealthOptions {
            drift: DriftOptions::default(),
            windows: Windows::Whole,
            task: None,
            class_labels: vec![],
            outputs: None,
            threshold: 0.5,
            min_drift_rows: 30,
        }
    }
}

/// Realised performance over labelled rows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Realised {
    pub task: TaskKind,
    /// Rows with a usable label.
    pub labelled: u64,
    /// `auc`, `accuracy`, `log_loss`, … / `rmse`, `mae`, `r2`; undefined metrics are absent.
    pub metrics: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VersionHealth {
    pub version: String,
    pub requests: u64,
    pub rows: u64,
    /// Latency of the logged requests (decode, queue and compute), milliseconds.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub realised: Option<Realised>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WindowHealth {
    pub index: usize,
    /// First and last logged time in the window (ms since the epoch); for time windows, the
    /// bucket's bounds.
    pub start_ms: i64,
    pub end_ms: i64,
    pub rows: u64,
    /// Input drift against the reference; absent with too few rows or nothing to compare.
    pub drift: Option<DriftReport>,
    /// The outputs against the first window's (absent for the first window).
    pub prediction_drift: Option<DriftReport>,
    /// Version → realised metrics of the window's labelled rows.
    pub realised: BTreeMap<String, Realised>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FeedbackSummary {
    /// Labels received for the deployment.
    pub received: u64,
    /// Logged rows in the range that have a usable label.
    pub matched_rows: u64,
    /// Labels of requests logged in the range that could not be used (wrong type, an unknown
    /// class, one label for a request of several rows, a list of the wrong length).
    pub unusable: u64,
    /// The first few reasons, for the report.
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthReport {
    pub from_ms: i64,
    pub to_ms: i64,
    pub requests: u64,
    pub rows: u64,
    pub task: Option<TaskKind>,
    pub outputs: Vec<String>,
    /// Input columns compared with the reference.
    pub compared_columns: Vec<String>,
    /// Why input drift was not computed, when it was not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drift_unavailable: Option<String>,
    /// The whole range against the reference.
    pub drift: Option<DriftReport>,
    /// The first window that drifts after one that did not (or the first, if it drifts).
    pub drift_onset: Option<usize>,
    pub versions: Vec<VersionHealth>,
    pub windows: Vec<WindowHealth>,
    pub feedback: FeedbackSummary,
}

/// The output columns of a logged table: every column that is not fixed, not an input the
/// reference knows, and is named like a model output (`label`, `prediction`, `variable`,
/// `probabilities…`, `output_…`).
pub fn infer_outputs(t: &PlainTable, reference: Option<&Profile>) -> Vec<String> {
    t.names()
        .into_iter()
        .filter(|n| !FIXED.contains(n))
        .filter(|n| reference.is_none_or(|r| r.column(n).is_none()))
        .filter(|n| {
            matches!(
                *n,
                "label" | "prediction" | "predictions" | "variable" | "output_label"
            ) || n.starts_with("probabilities")
                || n.starts_with("output_")
        })
        .map(str::to_string)
        .collect()
}

/// `probabilities_0 … probabilities_{k-1}` (or `output_probabilities_…`), in class order.
fn probability_columns(outputs: &[String]) -> Vec<String> {
    for prefix in ["probabilities_", "output_probabilities_"] {
        let mut found: Vec<(usize, String)> = outputs
            .iter()
            .filter_map(|n| {
                n.strip_prefix(prefix)
                    .and_then(|k| k.parse::<usize>().ok())
                    .map(|k| (k, n.clone()))
            })
            .collect();
        found.sort();
        if found.len() >= 2 && found.iter().enumerate().all(|(i, (k, _))| i == *k) {
            return found.into_iter().map(|(_, n)| n).collect();
        }
    }
    vec![]
}

fn regression_column(outputs: &[String]) -> Option<String> {
    ["prediction", "predictions", "variable", "output_prediction"]
        .iter()
        .find(|c| outputs.iter().any(|o| o == *c))
        .map(|c| c.to_string())
}

fn f64s(c: &PlainColumn) -> Vec<Option<f64>> {
    match c {
        PlainColumn::F64(v) => v.clone(),
        PlainColumn::I64(v) => v.iter().map(|x| x.map(|x| x as f64)).collect(),
        PlainColumn::Bool(v) => v
            .iter()
            .map(|x| x.map(|b| f64::from(u8::from(b))))
            .collect(),
        other => vec![None; other.len()],
    }
}

fn strs(t: &PlainTable, name: &str) -> Vec<Option<String>> {
    match t.column(name) {
        Some(PlainColumn::Str(v)) => v.clone(),
        Some(c) => vec![None; c.len()],
        None => vec![None; t.height()],
    }
}

fn ints(t: &PlainTable, name: &str) -> Vec<Option<i64>> {
    match t.column(name) {
        Some(PlainColumn::I64(v)) | Some(PlainColumn::Timestamp(v)) => v.clone(),
        Some(c) => vec![None; c.len()],
        None => vec![None; t.height()],
    }
}

/// A label as a number for `task`, or why it cannot be used.
fn label_value(v: &Value, task: TaskKind, classes: usize, names: &[String]) -> Result<f64, String> {
    let x = match v {
        Value::Bool(b) => f64::from(u8::from(*b)),
        Value::Number(n) => n.as_f64().ok_or("not a finite number")?,
        Value::String(s) => {
            if let Some(i) = names.iter().position(|n| n == s) {
                i as f64
            } else if let Ok(x) = s.trim().parse::<f64>() {
                x
            } else {
                match s.trim().to_ascii_lowercase().as_str() {
                    "true" => 1.0,
                    "false" => 0.0,
                    _ if names.is_empty() => {
                        return Err(format!(
                            "class name {s:?} given, and the model's class names are unknown"
                        ));
                    }
                    _ => return Err(format!("{s:?} is not one of the classes {names:?}")),
                }
            }
        }
        other => return Err(format!("{other} is not a label")),
    };
    if !x.is_finite() {
        return Err("not a finite number".into());
    }
    match task {
        TaskKind::Regression => Ok(x),
        TaskKind::Binary | TaskKind::Multiclass => {
            if x.fract() != 0.0 || x < 0.0 || x as usize >= classes.max(2) {
                Err(format!("{x} is not a class index below {}", classes.max(2)))
            } else {
                Ok(x)
            }
        }
    }
}

/// Realised metrics of `labels` against the predictions in `scores` (binary: P(1) per row;
/// multiclass: `rows × classes` probabilities; regression: the prediction per row).
fn realised(
    task: TaskKind,
    labels: &[f64],
    scores: &[f64],
    classes: usize,
    threshold: f64,
) -> Realised {
    let mut metrics = BTreeMap::new();
    let mut put = |k: &str, v: Option<f64>| {
        if let Some(v) = v.filter(|v| v.is_finite()) {
            metrics.insert(k.to_string(), v);
        }
    };
    match task {
        TaskKind::Binary => {
            let m = kiln_ml::metrics::binary(labels, scores, threshold);
            put("auc", m.auc);
            put("accuracy", m.accuracy);
            put("log_loss", m.log_loss);
            put("precision", m.precision);
            put("recall", m.recall);
            put("f1", m.f1);
            put("calibration_error", m.calibration_error);
        }
        TaskKind::Multiclass => {
            let m = kiln_ml::metrics::multiclass(labels, scores, classes);
            put("accuracy", m.accuracy);
            put("log_loss", m.log_loss);
            put("auc", m.auc);
            put("f1", m.f1);
        }
        TaskKind::Regression => {
            let m = kiln_ml::metrics::regression(labels, scores);
            put("rmse", m.rmse);
            put("mae", m.mae);
            put("r2", m.r2);
        }
    }
    Realised {
        task,
        labelled: labels.len() as u64,
        metrics,
    }
}

/// One labelled row: (version, label, its scores).
struct Labelled {
    row: usize,
    label: f64,
    scores: Vec<f64>,
}

/// Assesses `predictions` (the log's rows in `[from_ms, to_ms)`, as read back) against
/// `feedback` (request id → label, as received) and `reference`.
pub fn assess(
    predictions: &PlainTable,
    feedback: &HashMap<String, Value>,
    reference: Option<&Profile>,
    opts: &HealthOptions,
    from_ms: i64,
    to_ms: i64,
) -> Result<HealthReport, HealthError> {
    if let Windows::Time(ms) = opts.windows
        && ms <= 0
    {
        return Err(HealthError::Option(format!(
            "window of {ms} ms: expected a positive duration"
        )));
    }
    if let Windows::Rows(0) = opts.windows {
        return Err(HealthError::Option(
            "windows of 0 rows: expected at least one".into(),
        ));
    }
    let t = predictions;
    let n = t.height();
    let request_ids = strs(t, "request_id");
    let row_in_request = ints(t, "row");
    let times = ints(t, "time");
    let versions = strs(t, "version");
    let latency = ints(t, "latency_us");

    let outputs = opts
        .outputs
        .clone()
        .unwrap_or_else(|| infer_outputs(t, reference));
    let probs = probability_columns(&outputs);
    let task = opts.task.or(if probs.len() == 2 {
        Some(TaskKind::Binary)
    } else if probs.len() > 2 {
        Some(TaskKind::Multiclass)
    } else if regression_column(&outputs).is_some() {
        Some(TaskKind::Regression)
    } else {
        None
    });
    let classes = probs.len().max(opts.class_labels.len()).max(2);

    // Rows per request (a list label must match it).
    let mut rows_of: HashMap<&str, usize> = HashMap::new();
    for id in request_ids.iter().flatten() {
        *rows_of.entry(id.as_str()).or_default() += 1;
    }

    // Scores per row.
    let score_cols: Vec<Vec<Option<f64>>> = match task {
        Some(TaskKind::Binary) => vec![t.column(&probs[1]).map(f64s).unwrap_or_default()],
        Some(TaskKind::Multiclass) => probs
            .iter()
            .map(|p| t.column(p).map(f64s).unwrap_or_default())
            .collect(),
        Some(TaskKind::Regression) => {
            let c = regression_column(&outputs).unwrap_or_default();
            vec![t.column(&c).map(f64s).unwrap_or_default()]
        }
        None => vec![],
    };

    // Join labels.
    let mut summary = FeedbackSummary {
        received: feedback.len() as u64,
        ..FeedbackSummary::default()
    };
    let mut labelled: Vec<Labelled> = vec![];
    let mut problem_ids: std::collections::HashSet<&str> = Default::default();
    let problem = |summary: &mut FeedbackSummary, id: &str, why: String| {
        summary.unusable += 1;
        if summary.problems.len() < 5 {
            summary.problems.push(format!("request {id}: {why}"));
        }
    };
    if let Some(task) = task {
        for i in 0..n {
            let (Some(id), Some(r)) = (&request_ids[i], row_in_request[i]) else {
                continue;
            };
            let Some(v) = feedback.get(id) else { continue };
            if problem_ids.contains(id.as_str()) {
                continue;
            }
            let rows = rows_of.get(id.as_str()).copied().unwrap_or(1);
            let one = match v {
                Value::Array(items) if items.len() == rows => &items[r as usize % rows.max(1)],
                Value::Array(items) => {
                    problem_ids.insert(id);
                    problem(
                        &mut summary,
                        id,
                        format!("{} labels for a request of {rows} rows", items.len()),
                    );
                    continue;
                }
                _ if rows > 1 => {
                    problem_ids.insert(id);
                    problem(
                        &mut summary,
                        id,
                        format!("one label for a request of {rows} rows (send a list)"),
                    );
                    continue;
                }
                other => other,
            };
            let label = match label_value(one, task, classes, &opts.class_labels) {
                Ok(x) => x,
                Err(why) => {
                    problem_ids.insert(id);
                    problem(&mut summary, id, why);
                    continue;
                }
            };
            let scores: Vec<f64> = score_cols
                .iter()
                .map(|c| c.get(i).copied().flatten().unwrap_or(f64::NAN))
                .collect();
            if scores.iter().any(|s| !s.is_finite()) {
                continue;
            }
            labelled.push(Labelled {
                row: i,
                label,
                scores,
            });
        }
    }
    summary.matched_rows = labelled.len() as u64;

    let realised_of = |rows: &[&Labelled]| -> Option<Realised> {
        let task = task?;
        if rows.is_empty() {
            return None;
        }
        let labels: Vec<f64> = rows.iter().map(|l| l.label).collect();
        let scores: Vec<f64> = rows.iter().flat_map(|l| l.scores.iter().copied()).collect();
        Some(realised(task, &labels, &scores, classes, opts.threshold))
    };
    let version_of = |i: usize| versions[i].clone().unwrap_or_default();

    // Per version.
    let mut by_version: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for i in 0..n {
        by_version.entry(version_of(i)).or_default().push(i);
    }
    let mut requests_total = 0u64;
    let mut version_health = vec![];
    for (v, rows) in &by_version {
        let mut lat: Vec<f64> = rows
            .iter()
            .filter(|&&i| row_in_request[i] == Some(0))
            .filter_map(|&i| latency[i].map(|us| us as f64 / 1e3))
            .collect();
        lat.sort_by(f64::total_cmp);
        requests_total += lat.len() as u64;
        let q = |p: f64| -> Option<f64> {
            (!lat.is_empty())
                .then(|| lat[((p * lat.len() as f64).ceil() as usize).clamp(1, lat.len()) - 1])
        };
        let mine: Vec<&Labelled> = labelled
            .iter()
            .filter(|l| version_of(l.row) == *v)
            .collect();
        version_health.push(VersionHealth {
            version: v.clone(),
            requests: lat.len() as u64,
            rows: rows.len() as u64,
            p50_ms: q(0.5),
            p99_ms: q(0.99),
            realised: realised_of(&mine),
        });
    }

    // Drift columns: the reference's inputs the log has.
    let (compared, unavailable): (Vec<String>, Option<String>) = match reference {
        None => (
            vec![],
            Some("no reference profile (the package has no training profile)".into()),
        ),
        Some(r) => {
            let wanted: Vec<String> = match &opts.drift.columns {
                Some(cs) => cs.clone(),
                None => kiln_data::drift::default_columns(r)
                    .into_iter()
                    .map(str::to_string)
                    .collect(),
            };
            let have: Vec<String> = wanted
                .iter()
                .filter(|c| t.column(c).is_some())
                .cloned()
                .collect();
            if have.is_empty() {
                let logged: Vec<&str> = t
                    .names()
                    .into_iter()
                    .filter(|n| !FIXED.contains(n))
                    .take(8)
                    .collect();
                (
                    vec![],
                    Some(format!(
                        "the logged inputs ({}) are not the reference's columns ({})",
                        if logged.is_empty() {
                            "none".to_string()
                        } else {
                            logged.join(", ")
                        },
                        wanted
                            .iter()
                            .take(8)
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(", ")
                    )),
                )
            } else {
                (have, None)
            }
        }
    };
    let drift_opts = DriftOptions {
        columns: Some(compared.clone()),
        ..opts.drift.clone()
    };
    let drift_of = |idx: &[usize]| -> Result<Option<DriftReport>, HealthError> {
        let Some(r) = reference else { return Ok(None) };
        if compared.is_empty() || idx.len() < opts.min_drift_rows {
            return Ok(None);
        }
        let part = select(t, idx, &compared);
        let df = kiln_data::plain::to_frame(&part).map_err(|e| HealthError::Data(e.to_string()))?;
        let (_, report) = kiln_data::drift::drift(&df, r, &drift_opts)
            .map_err(|e| HealthError::Data(e.to_string()))?;
        Ok(Some(report))
    };
    let all: Vec<usize> = (0..n).collect();
    let drift = drift_of(&all)?;

    // Windows, in time order.
    let mut order: Vec<usize> = (0..n).filter(|&i| times[i].is_some()).collect();
    order.sort_by_key(|&i| times[i]);
    let groups: Vec<(i64, i64, Vec<usize>)> = match opts.windows {
        Windows::Whole => {
            if order.is_empty() {
                vec![]
            } else {
                vec![(from_ms, to_ms, order.clone())]
            }
        }
        Windows::Time(every) => {
            let mut g: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
            for &i in &order {
                let ms = times[i].unwrap_or(0).div_euclid(1_000);
                g.entry(ms.div_euclid(every)).or_default().push(i);
            }
            g.into_iter()
                .map(|(k, idx)| (k * every, (k + 1) * every, idx))
                .collect()
        }
        Windows::Rows(size) => order
            .chunks(size)
            .map(|idx| {
                let first = times[idx[0]].unwrap_or(0).div_euclid(1_000);
                let last = times[idx[idx.len() - 1]].unwrap_or(0).div_euclid(1_000);
                (first, last + 1, idx.to_vec())
            })
            .collect(),
    };
    let output_cols: Vec<String> = outputs
        .iter()
        .filter(|o| {
            matches!(
                t.column(o),
                Some(
                    PlainColumn::F64(_)
                        | PlainColumn::I64(_)
                        | PlainColumn::Bool(_)
                        | PlainColumn::Str(_)
                )
            )
        })
        .cloned()
        .collect();
    let mut baseline: Option<Profile> = None;
    let mut windows = vec![];
    let label_rows: HashMap<usize, usize> = labelled
        .iter()
        .enumerate()
        .map(|(k, l)| (l.row, k))
        .collect();
    for (index, (start_ms, end_ms, idx)) in groups.into_iter().enumerate() {
        let drift = drift_of(&idx)?;
        let prediction_drift = if output_cols.is_empty() || idx.len() < opts.min_drift_rows {
            None
        } else {
            let part = select(t, &idx, &output_cols);
            let df =
                kiln_data::plain::to_frame(&part).map_err(|e| HealthError::Data(e.to_string()))?;
            match &baseline {
                None => {
                    baseline = Some(
                        kiln_data::profile::profile(&df)
                            .map_err(|e| HealthError::Data(e.to_string()))?,
                    );
                    None
                }
                Some(b) => {
                    let o = DriftOptions {
                        columns: Some(output_cols.clone()),
                        ..opts.drift.clone()
                    };
                    Some(
                        kiln_data::drift::drift(&df, b, &o)
                            .map_err(|e| HealthError::Data(e.to_string()))?
                            .1,
                    )
                }
            }
        };
        let mut per_version: BTreeMap<String, Vec<&Labelled>> = BTreeMap::new();
        for i in &idx {
            if let Some(&k) = label_rows.get(i) {
                per_version
                    .entry(version_of(*i))
                    .or_default()
                    .push(&labelled[k]);
            }
        }
        let realised = per_version
            .into_iter()
            .filter_map(|(v, rows)| realised_of(&rows).map(|r| (v, r)))
            .collect();
        windows.push(WindowHealth {
            index,
            start_ms,
            end_ms,
            rows: idx.len() as u64,
            drift,
            prediction_drift,
            realised,
        });
    }
    let drift_onset = drift_onset(&windows);
    Ok(HealthReport {
        from_ms,
        to_ms,
        requests: requests_total,
        rows: n as u64,
        task,
        outputs,
        compared_columns: compared,
        drift_unavailable: unavailable,
        drift,
        drift_onset,
        versions: version_health,
        windows,
        feedback: summary,
    })
}

/// The first window that drifts after one that was compared and did not (or the first
/// compared window, when it drifts already).
pub fn drift_onset(windows: &[WindowHealth]) -> Option<usize> {
    let mut seen_quiet = false;
    let mut first = true;
    for w in windows {
        let Some(d) = &w.drift else { continue };
        if d.dataset_drift && (seen_quiet || first) {
            return Some(w.index);
        }
        if !d.dataset_drift {
            seen_quiet = true;
        }
        first = false;
    }
    None
}

/// The rows `idx` of the columns `names` (those present).
fn select(t: &PlainTable, idx: &[usize], names: &[String]) -> PlainTable {
    PlainTable {
        columns: names
            .iter()
            .filter_map(|n| t.column(n).map(|c| (n.clone(), c.take(idx))))
            .collect(),
    }
}

mod render;
pub use render::render_text;

#[cfg(test)]
mod tests;
