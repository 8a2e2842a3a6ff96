//! Gradient-boosted trees, histogram based and grown leaf-wise (the LightGBM recipe):
//! features are binned once on the training split, each leaf keeps gradient/hessian
//! histograms (the larger child's by subtraction), missing values get the side that gains
//! more at each split, and the result is a [`TreeEnsemble`] served by the same code as
//! compiled ONNX tree ensembles. Deterministic: the same data, parameters and seed give the
//! same model, byte for byte.

use std::collections::BTreeMap;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::index::sample;
use serde::{Deserialize, Serialize};

use crate::error::{MlError, Result};
use crate::matrix::Matrix;
use crate::native::{NativeModel, Scorer, Task};
use crate::trees::{Aggregate, LeafWeight, Node, NodeMode, Tree, TreeEnsemble};
use binning::{Binned, MISSING, bin_features};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GbdtParams {
    #[serde(
        alias = "n_estimators",
        alias = "num_iterations",
        alias = "num_boost_round"
    )]
    pub num_rounds: usize,
    #[serde(alias = "eta", alias = "shrinkage_rate")]
    pub learning_rate: f64,
    #[serde(alias = "max_leaves", alias = "max_leaf_nodes")]
    pub num_leaves: usize,
    /// 0 = no limit.
    pub max_depth: usize,
    #[serde(alias = "min_child_samples", alias = "min_samples_leaf")]
    pub min_data_in_leaf: usize,
    #[serde(alias = "min_child_weight")]
    pub min_sum_hessian_in_leaf: f64,
    #[serde(alias = "reg_lambda", alias = "l2_regularization")]
    pub lambda_l2: f64,
    #[serde(alias = "min_split_gain")]
    pub min_gain_to_split: f64,
    #[serde(alias = "max_bins")]
    pub max_bin: usize,
    #[serde(alias = "colsample_bytree")]
    pub feature_fraction: f64,
    #[serde(alias = "subsample")]
    pub bagging_fraction: f64,
    #[serde(alias = "subsample_freq")]
    pub bagging_freq: usize,
    /// Stop when the validation loss has not improved for this many rounds (0 = never).
    pub early_stopping_rounds: usize,
    /// Features (by name) whose values are category codes (e.g. an `ordinal` encoding):
    /// their splits send one category one way and every other category the other
    /// (`x == code`), rather than comparing codes as magnitudes.
    #[serde(alias = "categorical_feature")]
    pub categorical_features: Vec<String>,
    /// The columns of `categorical_features`, resolved by the caller, which knows the
    /// feature names (see [`GbdtParams::resolve_categorical`]).
    #[serde(skip)]
    pub categorical_columns: Vec<usize>,
    #[serde(alias = "random_state")]
    pub seed: u64,
}

impl Default for GbdtParams {
    fn default() -> Self {
        GbdtParams {
            num_rounds: 100,
            learning_rate: 0.1,
            num_leaves: 31,
            max_depth: 0,
            min_data_in_leaf: 20,
            min_sum_hessian_in_leaf: 1e-3,
            lambda_l2: 0.0,
            min_gain_to_split: 0.0,
            max_bin: 255,
            feature_fraction: 1.0,
            bagging_fraction: 1.0,
            bagging_freq: 0,
            early_stopping_rounds: 0,
            categorical_features: Vec::new(),
            categorical_columns: Vec::new(),
            seed: 0,
        }
    }
}

impl GbdtParams {
    /// Parameters from a JSON map (the `[train.x.params]` table); errors name the field.
    pub fn from_map(map: &BTreeMap<String, serde_json::Value>) -> Result<Self> {
        let p: GbdtParams = crate::error::params_from_map(map)?;
        p.validate()?;
        Ok(p)
    }

    /// Resolves `categorical_features` against the model's feature names.
    pub fn resolve_categorical(&mut self, features: &[String]) -> Result<()> {
        self.categorical_columns = self
            .categorical_features
            .iter()
            .map(|name| {
                features.iter().position(|f| f == name).ok_or_else(|| {
                    MlError::Training(format!(
                        "params.categorical_features: no feature `{name}` (features: {})",
                        features.join(", ")
                    ))
                })
            })
            .collect::<Result<_>>()?;
        Ok(())
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(MlError::Training(format!("params.{m}")));
        if self.num_rounds == 0 {
            return bad("num_rounds: must be ≥ 1".into());
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return bad(format!("learning_rate: {} must be > 0", self.learning_rate));
        }
        if self.num_leaves < 2 {
            return bad(format!("num_leaves: {} must be ≥ 2", self.num_leaves));
        }
        if self.min_data_in_leaf == 0 {
            return bad("min_data_in_leaf: must be ≥ 1".into());
        }
        if !(self.lambda_l2.is_finite() && self.lambda_l2 >= 0.0) {
            return bad(format!("lambda_l2: {} must be ≥ 0", self.lambda_l2));
        }
        if !(self.min_sum_hessian_in_leaf.is_finite() && self.min_sum_hessian_in_leaf >= 0.0) {
            return bad("min_sum_hessian_in_leaf: must be ≥ 0".into());
        }
        if !(2..=255).contains(&self.max_bin) {
            return bad(format!("max_bin: {} must be within 2..=255", self.max_bin));
        }
        for (n, v) in [
            ("feature_fraction", self.feature_fraction),
            ("bagging_fraction", self.bagging_fraction),
        ] {
            if !(v > 0.0 && v <= 1.0) {
                return bad(format!("{n}: {v} must be within (0, 1]"));
            }
        }
        Ok(())
    }
}

/// One boosting round's losses (mean objective loss; the validation one when there is a
/// validation split).
#[derive(Debug, Clone, Copy)]
pub struct Iteration {
    pub iteration: usize,
    pub train_loss: f64,
    pub valid_loss: Option<f64>,
}

pub struct GbdtOutcome {
    pub model: NativeModel,
    /// Rounds kept (after early stopping), 1-based count.
    pub best_iteration: usize,
    pub history: Vec<Iteration>,
    /// Total gain of the splits on each feature.
    pub importance_gain: Vec<f64>,
    /// Number of splits on each feature.
    pub importance_splits: Vec<u64>,
}

#[derive(Clone, Copy, Default)]
struct Bin {
    g: f64,
    h: f64,
    n: u32,
}

impl Bin {
    #[inline]
    fn add(&mut self, o: &Bin) {
        self.g += o.g;
        self.h += o.h;
        self.n += o.n;
    }

    #[inline]
    fn sub(&mut self, o: &Bin) {
        self.g -= o.g;
        self.h -= o.h;
        self.n -= o.n;
    }
}

struct Leaf {
    /// The leaf's rows are `order[begin..end]` of [`grow_tree`]'s row order.
    begin: usize,
    end: usize,
    /// The flat histogram over every feature (see [`Grower::offsets`]).
    hist: Vec<Bin>,
    g: f64,
    h: f64,
    depth: usize,
    node: usize,
    best: Option<Split>,
}

/// A split: rows go left when their bin is `<= bin` (numeric) or `== bin` (categorical).
#[derive(Clone, Copy)]
struct Split {
    feature: usize,
    bin: u8,
    categorical: bool,
    missing_left: bool,
    gain: f64,
    /// How many of the leaf's rows go left.
    left_n: u32,
}

struct Grower<'a> {
    n_bins: Vec<usize>,
    categorical: Vec<bool>,
    p: &'a GbdtParams,
    /// Where each feature's slots start in a flat histogram (its bins, then its missing
    /// slot), and the flat length.
    offsets: Vec<usize>,
    total_slots: usize,
    /// Per feature, the flat slot of its most frequent bin (missing included). Rows are not
    /// stored under it: its sums are the leaf's totals minus the feature's other slots. With
    /// one-hot columns, mostly-zero and mostly-missing features this skips most of each row,
    /// the effect of LightGBM's exclusive feature bundling without bundles.
    default_slot: Vec<usize>,
    /// Row-major sparse rows: row `r`'s flat slots outside the defaults are
    /// `row_slots[row_start[r]..row_start[r + 1]]`. Histograms are built row by row over
    /// these (one pass over a row's slots while its gradient and hessian are in registers).
    row_start: Vec<u32>,
    row_slots: Vec<u16>,
}

impl<'a> Grower<'a> {
    fn new(binned: &'a Binned, p: &'a GbdtParams) -> Result<Self> {
        let cols = binned.bins.len();
        let rows = binned.bins.first().map_or(0, Vec::len);
        let n_bins: Vec<usize> = binned.edges.iter().map(|e| e.len() + 1).collect();
        let mut offsets = Vec::with_capacity(cols);
        let mut total_slots = 0;
        for nb in &n_bins {
            offsets.push(total_slots);
            total_slots += nb + 1;
        }
        if total_slots > usize::from(u16::MAX) || rows > u32::MAX as usize {
            return Err(MlError::Training(format!(
                "gbdt: {cols} features × {} bins need {total_slots} histogram slots over {rows} \
                 rows; at most 65,535 slots and 2^32 rows are supported (lower max_bin)",
                p.max_bin
            )));
        }
        let slot = |j: usize, b: u8| offsets[j] + if b == MISSING { n_bins[j] } else { b as usize };
        let mut default_slot = Vec::with_capacity(cols);
        for (j, col) in binned.bins.iter().enumerate() {
            let mut counts = vec![0usize; n_bins[j] + 1];
            for b in col {
                counts[slot(j, *b) - offsets[j]] += 1;
            }
            let most = (0..counts.len()).max_by_key(|i| (counts[*i], std::cmp::Reverse(*i)));
            default_slot.push(offsets[j] + most.unwrap_or(0));
        }
        let mut row_start = Vec::with_capacity(rows + 1);
        let mut row_slots = Vec::new();
        row_start.push(0u32);
        for r in 0..rows {
            for (j, col) in binned.bins.iter().enumerate() {
                let s = slot(j, col[r]);
                if s != default_slot[j] {
                    row_slots.push(s as u16);
                }
            }
            if row_slots.len() > u32::MAX as usize {
                return Err(MlError::Training(format!(
                    "gbdt: {rows} rows × {cols} features are more than this trainer supports"
                )));
            }
            row_start.push(row_slots.len() as u32);
        }
        Ok(Grower {
            n_bins,
            categorical: binned.categories.iter().map(Option::is_some).collect(),
            p,
            offsets,
            total_slots,
            default_slot,
            row_start,
            row_slots,
        })
    }

    /// The flat histogram of `rows` without the default slots, and the rows' totals.
    fn sparse_histogram(&self, rows: &[u32], gh: &[[f64; 2]]) -> (Vec<Bin>, Bin) {
        let mut hist = vec![Bin::default(); self.total_slots];
        let (mut tg, mut th) = (0.0, 0.0);
        for &r in rows {
            let r = r as usize;
            let [gr, hr] = gh[r];
            tg += gr;
            th += hr;
            let slots = &self.row_slots[self.row_start[r] as usize..self.row_start[r + 1] as usize];
            for &s in slots {
                let e = &mut hist[s as usize];
                e.g += gr;
                e.h += hr;
                e.n += 1;
            }
        }
        let total = Bin {
            g: tg,
            h: th,
            n: rows.len() as u32,
        };
        (hist, total)
    }

    /// The flat histogram of `rows` over every feature, and the rows' gradient and hessian
    /// sums. Large leaves are split over two threads by rows.
    fn histogram(&self, rows: &[u32], gh: &[[f64; 2]]) -> (Vec<Bin>, Bin) {
        let (mut hist, total) = if rows.len() >= 4096 {
            let (a, b) = rows.split_at(rows.len() / 2);
            merge(join(
                || self.sparse_histogram(a, gh),
                || self.sparse_histogram(b, gh),
            ))
        } else {
            self.sparse_histogram(rows, gh)
        };
        self.fill_defaults(&mut hist, &total);
        (hist, total)
    }

    /// Each default slot gets what the feature's other slots do not hold of `total`.
    fn fill_defaults(&self, hist: &mut [Bin], total: &Bin) {
        for (j, &d) in self.default_slot.iter().enumerate() {
            let start = self.offsets[j];
            let mut rest = *total;
            for (i, e) in hist[start..start + self.n_bins[j] + 1].iter().enumerate() {
                if start + i != d {
                    rest.sub(e);
                }
            }
            hist[d] = rest;
        }
    }

    /// Splits a leaf: reorders its `rows` so that those going left under `s` come first (each
    /// side in its original order) and, in the same pass over the rows, builds the histogram
    /// of the smaller side (`small_left` says which; after a tree's `last` split only its
    /// sums). Returns how many rows go left, that histogram and the side's sums. `scratch` is
    /// working space at least as long as `rows`. Large leaves are split over two threads by
    /// rows, each partitioning its half and counting its part of the smaller side.
    #[allow(clippy::too_many_arguments)]
    fn split_leaf(
        &self,
        rows: &mut [u32],
        scratch: &mut [u32],
        s: &Split,
        col: &[u8],
        gh: &[[f64; 2]],
        small_left: bool,
        last: bool,
    ) -> (usize, Vec<Bin>, Bin) {
        let (bin, ml) = (s.bin, s.missing_left);
        // MISSING is above every value bin, so `b <= bin` is false for it.
        if s.categorical {
            let left = |b: u8| (b == bin) | (ml & (b == MISSING));
            self.split_by(rows, scratch, col, gh, small_left, last, left)
        } else {
            let left = |b: u8| (b <= bin) | (ml & (b == MISSING));
            self.split_by(rows, scratch, col, gh, small_left, last, left)
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn split_by(
        &self,
        rows: &mut [u32],
        scratch: &mut [u32],
        col: &[u8],
        gh: &[[f64; 2]],
        small_left: bool,
        last: bool,
        left: impl Fn(u8) -> bool + Sync,
    ) -> (usize, Vec<Bin>, Bin) {
        // One part: its rows split into lefts (in place) and rights (in `scratch`), then the
        // smaller side's histogram (unfinished) or sums.
        let part = |rows: &mut [u32], scratch: &mut [u32]| {
            let nl = split_rows(rows, scratch, col, &left);
            let side: &[u32] = if small_left {
                &rows[..nl]
            } else {
                &scratch[..rows.len() - nl]
            };
            let (hist, total) = if last {
                (Vec::new(), sums(side, gh))
            } else {
                self.sparse_histogram(side, gh)
            };
            (nl, hist, total)
        };
        let n = rows.len();
        let (nl, mut hist, total) = if n < 8192 {
            let (nl, hist, total) = part(rows, scratch);
            rows[nl..].copy_from_slice(&scratch[..n - nl]);
            (nl, hist, total)
        } else {
            // Lefts of the first half, lefts of the second, rights of the first, rights of
            // the second.
            let h = n / 2;
            let (ra, rb) = rows.split_at_mut(h);
            let (sa, sb) = scratch[..n].split_at_mut(h);
            let ((la, ha, ta), (lb, hb, tb)) = join(|| part(ra, sa), || part(rb, sb));
            rows.copy_within(h..h + lb, la);
            let nl = la + lb;
            rows[nl..nl + h - la].copy_from_slice(&scratch[..h - la]);
            rows[nl + h - la..].copy_from_slice(&scratch[h..h + (n - h - lb)]);
            let (hist, total) = merge(((ha, ta), (hb, tb)));
            (nl, hist, total)
        };
        if !last {
            self.fill_defaults(&mut hist, &total);
        }
        (nl, hist, total)
    }

    /// The histogram of feature `j` (its bins, then the missing slot) in a flat one.
    fn feature_hist<'h>(&self, flat: &'h [Bin], j: usize) -> &'h [Bin] {
        &flat[self.offsets[j]..self.offsets[j] + self.n_bins[j] + 1]
    }

    fn best_split(&self, leaf: &Leaf, features: &[usize]) -> Option<Split> {
        let p = self.p;
        if p.max_depth > 0 && leaf.depth >= p.max_depth {
            return None;
        }
        let parent = self.score(leaf.g, leaf.h);
        let mut best: Option<Split> = None;
        for &j in features {
            if self.categorical[j] {
                self.best_category(leaf, parent, j, &mut best);
                continue;
            }
            let hist = self.feature_hist(&leaf.hist, j);
            let nb = self.n_bins[j];
            let miss = hist[nb];
            for missing_left in [false, true] {
                if missing_left && miss.n == 0 {
                    continue;
                }
                let mut left = if missing_left { miss } else { Bin::default() };
                for (b, e) in hist.iter().enumerate().take(nb.saturating_sub(1)) {
                    left.add(e);
                    if let Some(gain) = self.gain(leaf, parent, left.g, left.h, left.n)
                        && best.is_none_or(|s| gain > s.gain)
                    {
                        best = Some(Split {
                            feature: j,
                            bin: b as u8,
                            categorical: false,
                            missing_left,
                            gain,
                            left_n: left.n,
                        });
                    }
                }
            }
        }
        best
    }
}

impl Grower<'_> {
    fn score(&self, g: f64, h: f64) -> f64 {
        g * g / (h + self.p.lambda_l2)
    }

    /// The gain of sending `nl` rows with sums `gl`, `hl` left and the rest of `leaf` right,
    /// if both sides meet the leaf-size limits and the gain is worth a split.
    #[inline]
    fn gain(&self, leaf: &Leaf, parent: f64, gl: f64, hl: f64, nl: u32) -> Option<f64> {
        let p = self.p;
        let nr = (leaf.end - leaf.begin) as u32 - nl;
        if (nl as usize) < p.min_data_in_leaf || (nr as usize) < p.min_data_in_leaf {
            return None;
        }
        let (gr, hr) = (leaf.g - gl, leaf.h - hl);
        if hl < p.min_sum_hessian_in_leaf || hr < p.min_sum_hessian_in_leaf {
            return None;
        }
        let gain = self.score(gl, hl) + self.score(gr, hr) - parent;
        (gain > p.min_gain_to_split && gain > 1e-12).then_some(gain)
    }

    /// One category against the rest, for categorical feature `j` (missing values on the side
    /// that gains more); improves `best` if one beats it.
    fn best_category(&self, leaf: &Leaf, parent: f64, j: usize, best: &mut Option<Split>) {
        let hist = self.feature_hist(&leaf.hist, j);
        let nb = self.n_bins[j];
        let miss = hist[nb];
        for (b, e) in hist.iter().enumerate().take(nb) {
            if e.n == 0 {
                continue;
            }
            for missing_left in [false, true] {
                if missing_left && miss.n == 0 {
                    continue;
                }
                let (gl, hl, nl) = if missing_left {
                    (e.g + miss.g, e.h + miss.h, e.n + miss.n)
                } else {
                    (e.g, e.h, e.n)
                };
                if let Some(gain) = self.gain(leaf, parent, gl, hl, nl)
                    && best.is_none_or(|s| gain > s.gain)
                {
                    *best = Some(Split {
                        feature: j,
                        bin: b as u8,
                        categorical: true,
                        missing_left,
                        gain,
                        left_n: nl,
                    });
                }
            }
        }
    }
}

fn check_labels(task: Task, y: &[f64], split: &str) -> Result<()> {
    let err = |m: String| Err(MlError::Training(format!("gbdt: {m}")));
    if let Some((i, v)) = y.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return err(format!(
            "{split} label {} is {v}: labels must be finite",
            i + 1
        ));
    }
    match task {
        Task::Binary => {
            if let Some((i, v)) = y.iter().enumerate().find(|(_, v)| **v != 0.0 && **v != 1.0) {
                return err(format!(
                    "{split} label {} is {v}: binary labels must be 0 or 1",
                    i + 1
                ));
            }
        }
        Task::Multiclass { classes } => {
            if let Some((i, v)) = y
                .iter()
                .enumerate()
                .find(|(_, v)| v.fract() != 0.0 || **v < 0.0 || **v >= classes as f64)
            {
                return err(format!(
                    "{split} label {} is {v}: multiclass labels must be 0..{}",
                    i + 1,
                    classes - 1
                ));
            }
        }
        Task::Regression => {}
    }
    Ok(())
}

/// The mean loss of raw scores `s` (rows × k) against labels, over two threads for large inputs (each half summed in order, so the
/// result is deterministic).
/// The gradient and hessian of the objective for score `class` of each row, at scores `s`
/// (row-major, `task.n_scores()` per row) and labels `y`.
fn gradients(task: Task, class: usize, s: &[f64], y: &[f64], gh: &mut [[f64; 2]]) {
    let k = task.n_scores();
    for (i, (out, y)) in gh.iter_mut().zip(y).enumerate() {
        *out = match task {
            Task::Regression => [s[i] - y, 1.0],
            Task::Binary => {
                let pr = logistic(s[i]);
                [pr - y, (pr * (1.0 - pr)).max(1e-16)]
            }
            Task::Multiclass { .. } => {
                let row = &s[i * k..(i + 1) * k];
                let m = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let z: f64 = row.iter().map(|v| (v - m).exp()).sum();
                let pr = (row[class] - m).exp() / z;
                let t = if *y as usize == class { 1.0 } else { 0.0 };
                // LightGBM's factor K/(K-1) on the softmax hessian.
                let factor = k as f64 / (k as f64 - 1.0);
                [pr - t, (factor * pr * (1.0 - pr)).max(1e-16)]
            }
        };
    }
}

/// The mean loss of scores `s` (row-major, `task.n_scores()` per row) on labels `y`; for a
/// one-score task, also the gradients and hessians at `s` into `gh` when given (one pass).
/// Large data is split over two threads by rows.
fn loss(task: Task, s: &[f64], y: &[f64], gh: Option<&mut [[f64; 2]]>) -> f64 {
    let n = y.len().max(1) as f64;
    if y.len() < 32_768 {
        return loss_sum(task, s, y, gh) / n;
    }
    let half = y.len() / 2;
    let k = task.n_scores();
    let (sa, sb) = s.split_at(half * k);
    let (ya, yb) = y.split_at(half);
    let (gha, ghb) = match gh {
        Some(gh) => {
            let (a, b) = gh.split_at_mut(half);
            (Some(a), Some(b))
        }
        None => (None, None),
    };
    let (a, b) = join(
        || loss_sum(task, sa, ya, gha),
        || loss_sum(task, sb, yb, ghb),
    );
    (a + b) / n
}

fn loss_sum(task: Task, s: &[f64], y: &[f64], mut gh: Option<&mut [[f64; 2]]>) -> f64 {
    match task {
        Task::Regression => {
            let mut total = 0.0;
            for (i, (y, s)) in y.iter().zip(s).enumerate() {
                if let Some(gh) = gh.as_deref_mut() {
                    gh[i] = [s - y, 1.0];
                }
                total += (s - y).powi(2);
            }
            total
        }
        // Labels are 0 or 1 (checked before training). The log-likelihood is the logarithm of
        // the product of each row's probability of its label, kept as a mantissa and a binary
        // exponent: one logarithm per call instead of one per row.
        Task::Binary => {
            let (mut m, mut e) = (1.0f64, 0i64);
            // Four partial products per 16 rows, so that the multiplications do not wait on
            // each other; 16 factors ≥ 1e-15 stay far above f64's smallest normal number.
            let mut part = [1.0f64; 4];
            for (i, (y, s)) in y.iter().zip(s).enumerate() {
                // Without branches (labels are unpredictable): the label picks p or 1 - p
                // by arithmetic (y is exactly 0 or 1).
                let p = logistic(*s);
                if let Some(gh) = gh.as_deref_mut() {
                    gh[i] = [p - y, (p * (1.0 - p)).max(1e-16)];
                }
                part[i % 4] *= (y * p + (1.0 - y) * (1.0 - p)).clamp(1e-15, 1.0 - 1e-15);
                if i % 16 == 15 {
                    let (mant, exp) = split_exponent(m * (part[0] * part[1]) * (part[2] * part[3]));
                    m = mant;
                    e += exp;
                    part = [1.0; 4];
                }
            }
            m *= (part[0] * part[1]) * (part[2] * part[3]);
            -(m.ln() + e as f64 * std::f64::consts::LN_2)
        }
        Task::Multiclass { classes: k } => {
            let mut total = 0.0;
            for (i, y) in y.iter().enumerate() {
                let row = &s[i * k..(i + 1) * k];
                let m = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let z: f64 = row.iter().map(|v| (v - m).exp()).sum();
                total += -(row[*y as usize] - m - z.ln());
            }
            total
        }
    }
}

/// Runs `a` here and `b` on a new thread, at once.
fn join<A: Send, B: Send>(a: impl FnOnce() -> A + Send, b: impl FnOnce() -> B + Send) -> (A, B) {
    rayon::join(a, b)
}

/// The logistic function without a branch on the sign (signs are unpredictable):
/// `1 / (1 + e^-s)` keeps its relative precision at both ends in f64 (e^-s overflowing to
/// infinity gives exactly 0).
#[inline]
fn logistic(s: f64) -> f64 {
    1.0 / (1.0 + (-s).exp())
}

/// `x = mant · 2^exp` with `mant` in [1, 2), for a positive normal `x`.
fn split_exponent(x: f64) -> (f64, i64) {
    const EXP: u64 = 0x7ff << 52;
    let bits = x.to_bits();
    let exp = ((bits & EXP) >> 52) as i64 - 1023;
    (f64::from_bits((bits & !EXP) | (1023 << 52)), exp)
}

/// Trains gradient-boosted trees for `task` (labels: 0/1, class ids 0..K-1, or numbers).
pub fn train(
    x: &Matrix,
    y: &[f64],
    valid: Option<(&Matrix, &[f64])>,
    task: Task,
    p: &GbdtParams,
    on_iteration: &mut dyn FnMut(&Iteration),
) -> Result<GbdtOutcome> {
    p.validate()?;
    // Training runs in a pool of two threads (its work is always split in two, so the model
    // does not depend on the machine); each iteration is handed back to this thread for
    // `on_iteration`, which need not be `Send`.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .thread_name(|i| format!("kiln-gbdt-{i}"))
        .build()
        .map_err(|e| MlError::Training(format!("gbdt: cannot start its threads: {e}")))?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        let t = s.spawn(move || {
            pool.install(|| {
                train_in_pool(x, y, valid, task, p, &mut |it| {
                    let _ = tx.send(*it);
                })
            })
        });
        for it in rx {
            on_iteration(&it);
        }
        t.join().expect("the training thread panicked")
    })
}

fn train_in_pool(
    x: &Matrix,
    y: &[f64],
    valid: Option<(&Matrix, &[f64])>,
    task: Task,
    p: &GbdtParams,
    on_iteration: &mut dyn FnMut(&Iteration),
) -> Result<GbdtOutcome> {
    let err = |m: String| MlError::Training(format!("gbdt: {m}"));
    if x.rows == 0 || x.cols == 0 {
        return Err(err(format!(
            "the training data is empty ({} rows × {} features)",
            x.rows, x.cols
        )));
    }
    if y.len() != x.rows {
        return Err(err(format!("{} labels for {} rows", y.len(), x.rows)));
    }
    check_labels(task, y, "training")?;
    if y.iter().all(|v| *v == y[0]) {
        return Err(err(format!(
            "the training label is constant ({}): there is nothing to learn",
            y[0]
        )));
    }
    if let Some((vx, vy)) = valid {
        if vx.cols != x.cols || vy.len() != vx.rows {
            return Err(err(format!(
                "the validation split has {} features and {} labels for {} rows; training has {} features",
                vx.cols,
                vy.len(),
                vx.rows,
                x.cols
            )));
        }
        check_labels(task, vy, "validation")?;
    }
    let k = task.n_scores();
    let n = x.rows;
    if let Some(j) = p.categorical_columns.iter().find(|j| **j >= x.cols) {
        return Err(err(format!(
            "categorical feature {j} is out of range ({} features)",
            x.cols
        )));
    }
    let binned = bin_features(
        x,
        p.max_bin,
        &p.categorical_columns,
        &p.categorical_features,
    )?;
    let grower = Grower::new(&binned, p)?;

    // Base scores: prior log-odds, log class frequencies, or the mean.
    let base: Vec<f64> = match task {
        Task::Regression => vec![y.iter().sum::<f64>() / n as f64],
        Task::Binary => {
            let m = (y.iter().sum::<f64>() / n as f64).clamp(1e-6, 1.0 - 1e-6);
            vec![(m / (1.0 - m)).ln()]
        }
        Task::Multiclass { classes } => {
            let mut c = vec![0.0f64; classes];
            for v in y {
                c[*v as usize] += 1.0;
            }
            c.iter().map(|c| (c.max(1.0) / n as f64).ln()).collect()
        }
    };
    let mut scores: Vec<f64> = (0..n).flat_map(|_| base.iter().copied()).collect();
    let mut vscores: Vec<f64> = valid
        .map(|(vx, _)| (0..vx.rows).flat_map(|_| base.iter().copied()).collect())
        .unwrap_or_default();

    let mut rng = StdRng::seed_from_u64(p.seed);
    let mut trees: Vec<Tree> = Vec::new();
    let mut weights: Vec<LeafWeight> = Vec::new();
    let mut gain_imp = vec![0.0; x.cols];
    let mut split_imp = vec![0u64; x.cols];
    let mut history = Vec::new();
    let mut best = (f64::INFINITY, 0usize);
    let mut gh = vec![[0.0f64; 2]; n];
    let mut gh_ready = false;
    let mut order = vec![0u32; n];
    let mut scratch = vec![0u32; n];
    let mut bag: Vec<u32> = (0..n as u32).collect();
    let all_features: Vec<usize> = (0..x.cols).collect();

    for round in 0..p.num_rounds {
        if p.bagging_fraction < 1.0 && p.bagging_freq > 0 && round % p.bagging_freq == 0 {
            let m = ((n as f64 * p.bagging_fraction).round() as usize).max(1);
            let mut idx: Vec<u32> = sample(&mut rng, n, m)
                .into_iter()
                .map(|i| i as u32)
                .collect();
            idx.sort_unstable();
            bag = idx;
        }
        for class in 0..k {
            // Gradients and hessians of the objective at the current scores, over two threads
            // for large data (each row's own: the split does not change a value). With one
            // score per row they were computed with the last round's loss.
            if !std::mem::take(&mut gh_ready) {
                if n >= 32_768 {
                    let (ga, gb) = gh.split_at_mut(n / 2);
                    let (sa, sb) = scores.split_at(n / 2 * k);
                    let (ya, yb) = y.split_at(n / 2);
                    join(
                        || gradients(task, class, sa, ya, ga),
                        || gradients(task, class, sb, yb, gb),
                    );
                } else {
                    gradients(task, class, &scores, y, &mut gh);
                }
            }
            let features: Vec<usize> = if p.feature_fraction < 1.0 {
                let m = ((x.cols as f64 * p.feature_fraction).round() as usize).max(1);
                let mut f = sample(&mut rng, x.cols, m).into_vec();
                f.sort_unstable();
                f
            } else {
                all_features.clone()
            };
            let order = &mut order[..bag.len()];
            order.copy_from_slice(&bag);
            let (tree, leaf_rows, leaf_values) = grow_tree(
                &grower,
                order,
                &mut scratch,
                &gh,
                &features,
                &binned,
                &mut gain_imp,
                &mut split_imp,
            );
            // Leaf outputs scaled by the learning rate; train scores updated by leaf rows
            // (out-of-bag rows through the tree).
            let mut nodes = tree;
            for (li, node) in nodes.iter_mut().enumerate() {
                if node.leaf {
                    let v = leaf_values[li] * p.learning_rate;
                    let w = weights.len() as u32;
                    weights.push(LeafWeight {
                        target: class as u32,
                        value: v,
                    });
                    node.weight_start = w;
                    node.weight_end = w + 1;
                }
            }
            let tree = Tree { nodes };
            if bag.len() == n {
                for &(li, begin, end) in &leaf_rows {
                    let w = weights[tree.nodes[li].weight_start as usize].value;
                    for &r in &order[begin..end] {
                        scores[r as usize * k + class] += w;
                    }
                }
            } else {
                for i in 0..n {
                    let leaf = TreeEnsemble::leaf_of(&tree, x.row(i));
                    scores[i * k + class] += weights[tree.nodes[leaf].weight_start as usize].value;
                }
            }
            if let Some((vx, _)) = valid {
                for i in 0..vx.rows {
                    let leaf = TreeEnsemble::leaf_of(&tree, vx.row(i));
                    vscores[i * k + class] += weights[tree.nodes[leaf].weight_start as usize].value;
                }
            }
            trees.push(tree);
        }
        let it = Iteration {
            iteration: round,
            train_loss: {
                // With one score per row, the next round's gradients come in the same pass.
                gh_ready = k == 1;
                loss(task, &scores, y, gh_ready.then_some(&mut gh[..]))
            },
            valid_loss: valid.map(|(_, vy)| loss(task, &vscores, vy, None)),
        };
        on_iteration(&it);
        history.push(it);
        if let Some(vl) = it.valid_loss {
            if vl < best.0 - 1e-12 {
                best = (vl, round + 1);
            } else if p.early_stopping_rounds > 0 && round + 1 - best.1 >= p.early_stopping_rounds {
                break;
            }
        }
    }
    let kept = if valid.is_some() && best.1 > 0 && p.early_stopping_rounds > 0 {
        best.1
    } else {
        history.len()
    };
    trees.truncate(kept * k);
    // Drop the weights of trees that were cut, and renumber.
    let used = trees
        .iter()
        .flat_map(|t| t.nodes.iter().filter(|n| n.leaf).map(|n| n.weight_end))
        .max()
        .unwrap_or(0) as usize;
    weights.truncate(used);
    let ensemble = TreeEnsemble {
        n_features: x.cols,
        n_targets: k,
        trees,
        weights,
        aggregate: Aggregate::Sum,
        base_values: base,
    };
    ensemble.validate()?;
    let model = NativeModel {
        algorithm: "gbdt".into(),
        task,
        feature_names: (0..x.cols).map(|j| format!("f{j}")).collect(),
        class_labels: (0..task.n_classes()).map(|c| c.to_string()).collect(),
        scorer: Scorer::Trees(ensemble),
    };
    Ok(GbdtOutcome {
        model,
        best_iteration: kept,
        history,
        importance_gain: gain_imp,
        importance_splits: split_imp,
    })
}

/// A leaf's node and its rows' range of the row order: `(node, begin, end)`.
type LeafRange = (usize, usize, usize);

/// Grows one tree leaf-wise over the rows in `order`, which it reorders so that each leaf's
/// rows are a contiguous range (`scratch` is working space at least as long). Returns the
/// tree's nodes (leaves without weights yet), each leaf's node and range of `order`, and each
/// leaf's raw value `-G / (H + λ)` (indexed by node).
#[allow(clippy::too_many_arguments)]
fn grow_tree(
    grower: &Grower<'_>,
    order: &mut [u32],
    scratch: &mut [u32],
    gh: &[[f64; 2]],
    features: &[usize],
    binned: &Binned,
    gain_imp: &mut [f64],
    split_imp: &mut [u64],
) -> (Vec<Node>, Vec<LeafRange>, Vec<f64>) {
    let p = grower.p;
    let mut nodes = vec![Node::leaf(0, 0)];
    let (hist, total) = grower.histogram(order, gh);
    let mut root = Leaf {
        begin: 0,
        end: order.len(),
        hist,
        g: total.g,
        h: total.h,
        depth: 0,
        node: 0,
        best: None,
    };
    root.best = grower.best_split(&root, features);
    let mut open = vec![root];
    let mut leaves = 1usize;
    while leaves < p.num_leaves {
        // The open leaf with the largest gain (first on ties: deterministic).
        let Some((pos, _)) = open
            .iter()
            .enumerate()
            .filter_map(|(i, l)| l.best.map(|s| (i, s.gain)))
            .fold(None, |b: Option<(usize, f64)>, (i, gn)| match b {
                Some((_, bg)) if bg >= gn => b,
                _ => Some((i, gn)),
            })
        else {
            break;
        };
        let leaf = open.swap_remove(pos);
        let s = leaf.best.expect("chosen leaf has a split");
        // The smaller child's histogram is built with the partition; the larger one's is the
        // parent's minus it. After the last split the children only need their sums.
        let n_leaf = leaf.end - leaf.begin;
        let small_is_left = s.left_n as usize <= n_leaf - s.left_n as usize;
        let last = leaves + 1 == p.num_leaves;
        let (nl, small_hist, st) = grower.split_leaf(
            &mut order[leaf.begin..leaf.end],
            scratch,
            &s,
            &binned.bins[s.feature],
            gh,
            small_is_left,
            last,
        );
        let mid = leaf.begin + nl;
        let left = (leaf.begin, mid);
        let right = (mid, leaf.end);
        gain_imp[s.feature] += s.gain;
        split_imp[s.feature] += 1;
        let li = nodes.len();
        nodes.push(Node::leaf(0, 0));
        nodes.push(Node::leaf(0, 0));
        let mut split = match &binned.categories[s.feature] {
            Some(codes) if s.categorical => Node::split(
                s.feature as u32,
                codes[s.bin as usize],
                NodeMode::BranchEq,
                s.missing_left,
            ),
            _ => Node::split(
                s.feature as u32,
                binned.edges[s.feature][s.bin as usize],
                NodeMode::BranchLeq,
                s.missing_left,
            ),
        };
        split.true_child = li as u32;
        split.false_child = (li + 1) as u32;
        nodes[leaf.node] = split;
        let (small, large) = if small_is_left {
            (left, right)
        } else {
            (right, left)
        };
        let mut large_hist = if last { Vec::new() } else { leaf.hist };
        for (a, b) in large_hist.iter_mut().zip(&small_hist) {
            a.sub(b);
        }
        let depth = leaf.depth + 1;
        let make = |(begin, end), hist, g, h, node| Leaf {
            begin,
            end,
            hist,
            g,
            h,
            depth,
            node,
            best: None,
        };
        let (lnode, rnode) = (li, li + 1);
        let (small_node, large_node) = if small_is_left {
            (lnode, rnode)
        } else {
            (rnode, lnode)
        };
        let mut a = make(small, small_hist, st.g, st.h, small_node);
        let mut b = make(large, large_hist, leaf.g - st.g, leaf.h - st.h, large_node);
        if !last {
            a.best = grower.best_split(&a, features);
            b.best = grower.best_split(&b, features);
        }
        // Keep node order stable: left child first.
        if small_is_left {
            open.push(a);
            open.push(b);
        } else {
            open.push(b);
            open.push(a);
        }
        leaves += 1;
    }
    let mut ranges = Vec::with_capacity(open.len());
    let mut values = vec![0.0; nodes.len()];
    for l in open {
        values[l.node] = -l.g / (l.h + p.lambda_l2);
        ranges.push((l.node, l.begin, l.end));
    }
    (nodes, ranges, values)
}

/// Two partial histograms (either may be empty) and sums added up.
fn merge(((mut ha, mut ta), (hb, tb)): ((Vec<Bin>, Bin), (Vec<Bin>, Bin))) -> (Vec<Bin>, Bin) {
    for (x, y) in ha.iter_mut().zip(&hb) {
        x.add(y);
    }
    ta.add(&tb);
    (ha, ta)
}

/// The gradient and hessian sums and the count of `rows`.
fn sums(rows: &[u32], gh: &[[f64; 2]]) -> Bin {
    let (mut g, mut h) = (0.0, 0.0);
    for &r in rows {
        let [gr, hr] = gh[r as usize];
        g += gr;
        h += hr;
    }
    Bin {
        g,
        h,
        n: rows.len() as u32,
    }
}

/// Writes the rows going left to the start of `rows` and the others to the start of
/// `scratch`, each in order; returns how many go left.
fn split_rows(
    rows: &mut [u32],
    scratch: &mut [u32],
    col: &[u8],
    left: impl Fn(u8) -> bool,
) -> usize {
    let (mut nl, mut nr) = (0, 0);
    for i in 0..rows.len() {
        let r = rows[i];
        let l = left(col[r as usize]);
        // Both writes always happen; only the counts depend on the side (no branch).
        rows[nl] = r;
        scratch[nr] = r;
        nl += usize::from(l);
        nr += usize::from(!l);
    }
    nl
}

mod binning;
#[cfg(test)]
mod tests;
