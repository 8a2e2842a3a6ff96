//! Evaluation metrics for native (and any other) predictions.
//!
//! * Binary classification (labels 0/1, scores = P(class 1)): `auc` (ROC, ties by average
//!   rank), `log_loss`, `accuracy`, `precision`, `recall`, `f1` (at a threshold, default 0.5,
//!   a row is predicted positive when `p > threshold`, as [`crate::native::finish`] labels),
//!   `calibration_error` (expected calibration error over 10 equal-width bins of P(1)) and a
//!   2×2 confusion matrix.
//! * Multiclass (labels 0..K-1, `rows × K` probabilities): `accuracy`, `log_loss`, macro
//!   `precision` / `recall` / `f1` (averaged over the classes present in the labels or the
//!   predictions, a class with a zero denominator counting 0, as scikit-learn does),
//!   one-vs-rest macro `auc` (over the classes that have both positive and negative rows) and
//!   a K×K confusion matrix.
//! * Regression: `rmse`, `mae`, `r2`.
//!
//! A metric that is undefined on the rows given (AUC with one class, precision with no
//! predicted positive, R² of a constant label…) is left out of the map rather than reported
//! as 0 or NaN. Every name is a valid MLflow metric key; [`metric_key_part`] turns arbitrary
//! text (a segment value) into a valid fragment of one.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{MlError, Result};
use crate::native::{Predictions, Task};

/// Probabilities are clipped to `[EPS, 1 - EPS]` before taking logs.
pub const LOG_LOSS_EPS: f64 = 1e-15;
/// Bins of the expected calibration error.
pub const CALIBRATION_BINS: usize = 10;

/// Counts of (actual, predicted) class pairs: `counts[actual][predicted]`. For a binary task
/// this is `[[TN, FP], [FN, TP]]` (scikit-learn's layout).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfusionMatrix {
    pub classes: usize,
    pub counts: Vec<Vec<u64>>,
}

impl ConfusionMatrix {
    pub fn new(classes: usize) -> Self {
        ConfusionMatrix {
            classes,
            counts: vec![vec![0; classes]; classes],
        }
    }

    /// Builds the matrix from actual and predicted class ids (each `< classes`).
    pub fn from_labels(classes: usize, actual: &[usize], predicted: &[usize]) -> Self {
        let mut m = ConfusionMatrix::new(classes);
        for (&a, &p) in actual.iter().zip(predicted) {
            m.counts[a][p] += 1;
        }
        m
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().flatten().sum()
    }

    fn tp(&self, k: usize) -> u64 {
        self.counts[k][k]
    }

    /// Rows predicted `k` that are not `k`.
    fn fp(&self, k: usize) -> u64 {
        (0..self.classes)
            .filter(|&a| a != k)
            .map(|a| self.counts[a][k])
            .sum()
    }

    /// Rows of class `k` predicted as something else.
    fn fn_(&self, k: usize) -> u64 {
        (0..self.classes)
            .filter(|&p| p != k)
            .map(|p| self.counts[k][p])
            .sum()
    }

    pub fn accuracy(&self) -> Option<f64> {
        let n = self.total();
        (n > 0).then(|| (0..self.classes).map(|k| self.tp(k)).sum::<u64>() as f64 / n as f64)
    }
}

/// Options of [`evaluate_with`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EvalOptions {
    /// Binary: a row is predicted positive when `P(1) > threshold`.
    pub threshold: f64,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions { threshold: 0.5 }
    }
}

/// Metrics of one set of rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub rows: usize,
    /// Metric name → value, sorted by name; undefined metrics are absent.
    pub metrics: BTreeMap<String, f64>,
    /// Classification only.
    pub confusion: Option<ConfusionMatrix>,
}

/// Metrics of one segment (the rows that share a segment value).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentEvaluation {
    pub segment: String,
    pub rows: usize,
    pub metrics: BTreeMap<String, f64>,
    pub confusion: Option<ConfusionMatrix>,
    /// Why the segment has no metrics (too few rows), when it has none for that reason.
    pub skipped: Option<String>,
}

/// [`evaluate_with`] with the default threshold (0.5).
pub fn evaluate(task: Task, labels: &[f64], predictions: &Predictions) -> Result<Evaluation> {
    evaluate_with(task, labels, predictions, &EvalOptions::default())
}

/// The metrics of `predictions` against `labels` for `task` (see the module docs for names).
/// Errors (`BadInput`) when lengths disagree, a label is not a class id of the task, or a
/// prediction is not finite.
pub fn evaluate_with(
    task: Task,
    labels: &[f64],
    predictions: &Predictions,
    options: &EvalOptions,
) -> Result<Evaluation> {
    check(task, labels, predictions)?;
    let rows = labels.len();
    let mut metrics = BTreeMap::new();
    let mut put = |name: &str, v: Option<f64>| {
        if let Some(v) = v.filter(|v| v.is_finite()) {
            metrics.insert(name.to_string(), v);
        }
    };
    let confusion = match task {
        Task::Regression => {
            let r = regression(labels, &predictions.value);
            put("rmse", r.rmse);
            put("mae", r.mae);
            put("r2", r.r2);
            None
        }
        Task::Binary => {
            let b = binary(labels, &predictions.value, options.threshold);
            put("auc", b.auc);
            put("log_loss", b.log_loss);
            put("accuracy", b.accuracy);
            put("precision", b.precision);
            put("recall", b.recall);
            put("f1", b.f1);
            put("calibration_error", b.calibration_error);
            Some(b.confusion)
        }
        Task::Multiclass { classes } => {
            let m = multiclass(labels, &predictions.probabilities, classes);
            put("auc", m.auc);
            put("log_loss", m.log_loss);
            put("accuracy", m.accuracy);
            put("precision", m.precision);
            put("recall", m.recall);
            put("f1", m.f1);
            Some(m.confusion)
        }
    };
    Ok(Evaluation {
        rows,
        metrics,
        confusion,
    })
}

/// Metrics per segment: `segments[i]` is row `i`'s segment value. Segments come back sorted
/// by value. A segment with fewer than `min_rows` rows is reported with its row count and
/// `skipped` set, without metrics; otherwise it gets every metric defined on its rows (a
/// segment with one class has no AUC, and so on).
pub fn evaluate_segments<S: AsRef<str>>(
    task: Task,
    labels: &[f64],
    predictions: &Predictions,
    segments: &[S],
    options: &EvalOptions,
    min_rows: usize,
) -> Result<Vec<SegmentEvaluation>> {
    check(task, labels, predictions)?;
    if segments.len() != labels.len() {
        return Err(MlError::BadInput(format!(
            "{} segment values for {} rows",
            segments.len(),
            labels.len()
        )));
    }
    let mut groups: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, s) in segments.iter().enumerate() {
        groups.entry(s.as_ref()).or_default().push(i);
    }
    let mut out = Vec::with_capacity(groups.len());
    for (segment, idx) in groups {
        if idx.len() < min_rows {
            out.push(SegmentEvaluation {
                segment: segment.to_string(),
                rows: idx.len(),
                metrics: BTreeMap::new(),
                confusion: None,
                skipped: Some(format!(
                    "{} rows, fewer than the {min_rows} needed",
                    idx.len()
                )),
            });
            continue;
        }
        let y: Vec<f64> = idx.iter().map(|&i| labels[i]).collect();
        let p = take(predictions, &idx);
        let e = evaluate_with(task, &y, &p, options)?;
        out.push(SegmentEvaluation {
            segment: segment.to_string(),
            rows: e.rows,
            metrics: e.metrics,
            confusion: e.confusion,
            skipped: None,
        });
    }
    Ok(out)
}

/// The rows `idx` of `p`.
fn take(p: &Predictions, idx: &[usize]) -> Predictions {
    let k = p.task.n_classes();
    let pick = |v: &[f64], w: usize| -> Vec<f64> {
        if v.is_empty() {
            return vec![];
        }
        idx.iter()
            .flat_map(|&i| v[i * w..(i + 1) * w].iter().copied())
            .collect()
    };
    Predictions {
        task: p.task,
        value: pick(&p.value, 1),
        probabilities: pick(&p.probabilities, k.max(1)),
        label: if p.label.is_empty() {
            vec![]
        } else {
            idx.iter().map(|&i| p.label[i]).collect()
        },
    }
}

fn check(task: Task, labels: &[f64], p: &Predictions) -> Result<()> {
    let bad = |m: String| Err(MlError::BadInput(m));
    if p.task != task {
        return bad(format!(
            "predictions are for task {:?}, the evaluation is for {:?}",
            p.task, task
        ));
    }
    let n = labels.len();
    match task {
        Task::Regression | Task::Binary => {
            if p.value.len() != n {
                return bad(format!("{} predictions for {n} labels", p.value.len()));
            }
            if let Some(i) = p.value.iter().position(|v| !v.is_finite()) {
                return bad(format!(
                    "prediction of row {i} is {} (a missing input value?)",
                    p.value[i]
                ));
            }
        }
        Task::Multiclass { classes } => {
            if p.probabilities.len() != n * classes {
                return bad(format!(
                    "{} probabilities for {n} labels × {classes} classes",
                    p.probabilities.len()
                ));
            }
            if let Some(i) = p.probabilities.iter().position(|v| !v.is_finite()) {
                return bad(format!(
                    "probability of row {} is {} (a missing input value?)",
                    i / classes,
                    p.probabilities[i]
                ));
            }
        }
    }
    match task {
        Task::Regression => {
            if let Some(i) = labels.iter().position(|v| !v.is_finite()) {
                return bad(format!("label of row {i} is {}", labels[i]));
            }
        }
        Task::Binary | Task::Multiclass { .. } => {
            let k = task.n_classes();
            if let Some(i) = labels.iter().position(|&v| class_of(v, k).is_none()) {
                return bad(format!(
                    "label of row {i} is {}; labels must be class ids 0..{}",
                    labels[i],
                    k - 1
                ));
            }
        }
    }
    Ok(())
}

/// `v` as a class id below `k`, if it is one.
pub(crate) fn class_of(v: f64, k: usize) -> Option<usize> {
    (v >= 0.0 && v < k as f64 && v.fract() == 0.0).then_some(v as usize)
}

// ---------------------------------------------------------------------------------------
// Binary

/// Binary metrics; `None` where undefined.
#[derive(Debug, Clone, PartialEq)]
pub struct BinaryMetrics {
    pub auc: Option<f64>,
    pub log_loss: Option<f64>,
    pub accuracy: Option<f64>,
    pub precision: Option<f64>,
    pub recall: Option<f64>,
    pub f1: Option<f64>,
    pub calibration_error: Option<f64>,
    pub confusion: ConfusionMatrix,
}

/// Binary metrics of P(1) scores `p` against 0/1 `labels` (a label other than 1 counts as
/// 0; [`evaluate`] checks labels first).
pub fn binary(labels: &[f64], p: &[f64], threshold: f64) -> BinaryMetrics {
    let positive: Vec<bool> = labels.iter().map(|&y| y == 1.0).collect();
    let actual: Vec<usize> = positive.iter().map(|&b| usize::from(b)).collect();
    let predicted: Vec<usize> = p.iter().map(|&v| usize::from(v > threshold)).collect();
    let confusion = ConfusionMatrix::from_labels(2, &actual, &predicted);
    let (tp, fp, fn_) = (confusion.tp(1), confusion.fp(1), confusion.fn_(1));
    let ratio = |a: u64, b: u64| (b > 0).then(|| a as f64 / b as f64);
    BinaryMetrics {
        auc: auc(&positive, p),
        log_loss: binary_log_loss(&positive, p),
        accuracy: confusion.accuracy(),
        precision: ratio(tp, tp + fp),
        recall: ratio(tp, tp + fn_),
        f1: ratio(2 * tp, 2 * tp + fp + fn_),
        calibration_error: calibration_error(&positive, p, CALIBRATION_BINS),
        confusion,
    }
}

/// Area under the ROC curve of `scores` for the rows where `positive` is set: the
/// Mann–Whitney statistic with tied scores given their average rank, i.e. the probability
/// that a random positive scores above a random negative, ties counting half. `None` when
/// only one class is present, lengths differ, or a score is NaN.
pub fn auc(positive: &[bool], scores: &[f64]) -> Option<f64> {
    if positive.len() != scores.len() || scores.iter().any(|s| s.is_nan()) {
        return None;
    }
    let n_pos = positive.iter().filter(|&&b| b).count();
    let n_neg = positive.len() - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    // Sum of the (1-based, tie-averaged) ranks of the positives.
    let mut rank_sum = 0.0;
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && scores[order[end]] == scores[order[start]] {
            end += 1;
        }
        let avg_rank = (start + 1 + end) as f64 / 2.0;
        let pos_in_group = order[start..end].iter().filter(|&&i| positive[i]).count();
        rank_sum += avg_rank * pos_in_group as f64;
        start = end;
    }
    let (p, n) = (n_pos as f64, n_neg as f64);
    Some((rank_sum - p * (p + 1.0) / 2.0) / (p * n))
}

fn binary_log_loss(positive: &[bool], p: &[f64]) -> Option<f64> {
    if p.is_empty() {
        return None;
    }
    let sum: f64 = positive
        .iter()
        .zip(p)
        .map(|(&y, &p)| {
            let p = p.clamp(LOG_LOSS_EPS, 1.0 - LOG_LOSS_EPS);
            -(if y { p.ln() } else { (1.0 - p).ln() })
        })
        .sum();
    Some(sum / p.len() as f64)
}

/// Expected calibration error: rows are put in `bins` equal-width bins of P(1) (a
/// probability of exactly 1 goes in the last), and the bins' `|fraction positive − mean
/// P(1)|` are averaged weighted by their row counts.
pub fn calibration_error(positive: &[bool], p: &[f64], bins: usize) -> Option<f64> {
    if p.is_empty() || bins == 0 {
        return None;
    }
    let mut count = vec![0usize; bins];
    let mut sum_p = vec![0.0; bins];
    let mut sum_y = vec![0.0; bins];
    for (&y, &p) in positive.iter().zip(p) {
        let b = ((p.clamp(0.0, 1.0) * bins as f64).floor() as usize).min(bins - 1);
        count[b] += 1;
        sum_p[b] += p;
        sum_y[b] += f64::from(u8::from(y));
    }
    let n = p.len() as f64;
    Some(
        (0..bins)
            .filter(|&b| count[b] > 0)
            .map(|b| (sum_y[b] - sum_p[b]).abs() / n)
            .sum(),
    )
}

// ---------------------------------------------------------------------------------------
// Multiclass

#[derive(Debug, Clone, PartialEq)]
pub struct MulticlassMetrics {
    pub accuracy: Option<f64>,
    pub log_loss: Option<f64>,
    pub precision: Option<f64>,
    pub recall: Option<f64>,
    pub f1: Option<f64>,
    /// One-vs-rest macro AUC.
    pub auc: Option<f64>,
    pub confusion: ConfusionMatrix,
}

/// Multiclass metrics of `rows × classes` probabilities against class ids `labels` (each
/// already checked to be below `classes`). The predicted class is the most probable (the
/// first on ties).
pub fn multiclass(labels: &[f64], probabilities: &[f64], classes: usize) -> MulticlassMetrics {
    let n = labels.len();
    let actual: Vec<usize> = labels.iter().map(|&y| y as usize).collect();
    let predicted: Vec<usize> = (0..n)
        .map(|r| argmax(&probabilities[r * classes..(r + 1) * classes]))
        .collect();
    let confusion = ConfusionMatrix::from_labels(classes, &actual, &predicted);
    let present: Vec<usize> = (0..classes)
        .filter(|&k| actual.contains(&k) || predicted.contains(&k))
        .collect();
    let macro_avg = |f: &dyn Fn(usize) -> f64| -> Option<f64> {
        (!present.is_empty())
            .then(|| present.iter().map(|&k| f(k)).sum::<f64>() / present.len() as f64)
    };
    let safe = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let c = &confusion;
    let precision = macro_avg(&|k| safe(c.tp(k), c.tp(k) + c.fp(k)));
    let recall = macro_avg(&|k| safe(c.tp(k), c.tp(k) + c.fn_(k)));
    let f1 = macro_avg(&|k| safe(2 * c.tp(k), 2 * c.tp(k) + c.fp(k) + c.fn_(k)));
    let log_loss = (n > 0).then(|| {
        actual
            .iter()
            .enumerate()
            .map(|(r, &k)| {
                -probabilities[r * classes + k]
                    .clamp(LOG_LOSS_EPS, 1.0 - LOG_LOSS_EPS)
                    .ln()
            })
            .sum::<f64>()
            / n as f64
    });
    let aucs: Vec<f64> = (0..classes)
        .filter_map(|k| {
            let positive: Vec<bool> = actual.iter().map(|&a| a == k).collect();
            let scores: Vec<f64> = (0..n).map(|r| probabilities[r * classes + k]).collect();
            auc(&positive, &scores)
        })
        .collect();
    let auc = (!aucs.is_empty()).then(|| aucs.iter().sum::<f64>() / aucs.len() as f64);
    MulticlassMetrics {
        accuracy: confusion.accuracy(),
        log_loss,
        precision,
        recall,
        f1,
        auc,
        confusion,
    }
}

fn argmax(row: &[f64]) -> usize {
    let mut best = 0;
    for (i, v) in row.iter().enumerate() {
        if *v > row[best] {
            best = i;
        }
    }
    best
}

// ---------------------------------------------------------------------------------------
// Regression

#[derive(Debug, Clone, PartialEq)]
pub struct RegressionMetrics {
    pub rmse: Option<f64>,
    pub mae: Option<f64>,
    /// `1 − SS_res / SS_tot`; undefined (None) when the labels are constant.
    pub r2: Option<f64>,
}

pub fn regression(labels: &[f64], predictions: &[f64]) -> RegressionMetrics {
    let n = labels.len();
    if n == 0 {
        return RegressionMetrics {
            rmse: None,
            mae: None,
            r2: None,
        };
    }
    let nf = n as f64;
    let (mut ss_res, mut abs) = (0.0, 0.0);
    for (y, p) in labels.iter().zip(predictions) {
        ss_res += (y - p) * (y - p);
        abs += (y - p).abs();
    }
    let mean = labels.iter().sum::<f64>() / nf;
    let ss_tot: f64 = labels.iter().map(|y| (y - mean) * (y - mean)).sum();
    RegressionMetrics {
        rmse: Some((ss_res / nf).sqrt()),
        mae: Some(abs / nf),
        r2: (ss_tot > 0.0).then(|| 1.0 - ss_res / ss_tot),
    }
}

// ---------------------------------------------------------------------------------------
// Metric keys

/// Whether `key` is accepted as an MLflow metric key: 1 to 250 characters among ASCII
/// letters, digits, `_ - . /` and space, not starting with `/` and without `..`.
pub fn is_valid_metric_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 250
        && !key.starts_with('/')
        && !key.contains("..")
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | ' '))
}

/// Text (e.g. a segment value) made safe to embed between dots in a metric key: characters
/// other than ASCII letters, digits, `_`, `-` and `.` become `_`, and so do a dot that
/// follows a dot or starts or ends the text; the empty string becomes `_`. Different values
/// can map to the same fragment.
pub fn metric_key_part(text: &str) -> String {
    let mut out: Vec<char> = Vec::with_capacity(text.len());
    for c in text.chars() {
        let ok = c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
        let c = if !ok || (c == '.' && out.last().is_none_or(|l| *l == '.')) {
            '_'
        } else {
            c
        };
        out.push(c);
    }
    match out.last_mut() {
        None => out.push('_'),
        Some(l) if *l == '.' => *l = '_',
        Some(_) => {}
    }
    out.into_iter().collect()
}

#[cfg(test)]
mod tests;
