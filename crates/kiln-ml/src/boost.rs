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
use crate::predictor::sigmoid;
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

struct Leaf {
    rows: Vec<u32>,
    hist: Vec<Vec<Bin>>,
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
}

impl Split {
    #[inline]
    fn goes_left(&self, b: u8) -> bool {
        if b == MISSING {
            self.missing_left
        } else if self.categorical {
            b == self.bin
        } else {
            b <= self.bin
        }
    }
}

struct Grower<'a> {
    bins: &'a [Vec<u8>],
    n_bins: Vec<usize>,
    categorical: Vec<bool>,
    p: &'a GbdtParams,
    /// Row-major histogram slots: per row and feature, the bin, or `n_bins[j]` for missing.
    /// Histograms are built row by row over these (one pass over a row's features while its
    /// gradient and hessian are in registers), which beats a pass per feature when rows
    /// have a few dozen features.
    row_slots: Vec<u8>,
    /// Where each feature's slots start in a flat histogram, and the flat length.
    offsets: Vec<usize>,
    total_slots: usize,
}

impl<'a> Grower<'a> {
    fn new(binned: &'a Binned, p: &'a GbdtParams) -> Self {
        let cols = binned.bins.len();
        let rows = binned.bins.first().map_or(0, Vec::len);
        let n_bins: Vec<usize> = binned.edges.iter().map(|e| e.len() + 1).collect();
        let mut offsets = Vec::with_capacity(cols);
        let mut total_slots = 0;
        for nb in &n_bins {
            offsets.push(total_slots);
            total_slots += nb + 1;
        }
        let mut row_slots = vec![0u8; rows * cols];
        for (j, col) in binned.bins.iter().enumerate() {
            // n_bins ≤ max_bin ≤ 255, so the missing slot fits a byte.
            let miss = n_bins[j] as u8;
            for (r, b) in col.iter().enumerate() {
                row_slots[r * cols + j] = if *b == MISSING { miss } else { *b };
            }
        }
        Grower {
            bins: &binned.bins,
            n_bins,
            categorical: binned.categories.iter().map(Option::is_some).collect(),
            p,
            row_slots,
            offsets,
            total_slots,
        }
    }

    /// The flat histogram of `rows` over every feature.
    fn flat_histogram(&self, rows: &[u32], g: &[f64], h: &[f64]) -> Vec<Bin> {
        let cols = self.bins.len();
        let mut hist = vec![Bin::default(); self.total_slots];
        for &r in rows {
            let r = r as usize;
            let (gr, hr) = (g[r], h[r]);
            let slots = &self.row_slots[r * cols..(r + 1) * cols];
            for (off, slot) in self.offsets.iter().zip(slots) {
                let e = &mut hist[off + *slot as usize];
                e.g += gr;
                e.h += hr;
                e.n += 1;
            }
        }
        hist
    }
}

impl Grower<'_> {
    /// Per feature in `features`, the gradient/hessian/count histogram of `rows` (other
    /// features get an empty one). Large leaves are split over two threads by rows.
    fn histogram(&self, rows: &[u32], g: &[f64], h: &[f64], features: &[usize]) -> Vec<Vec<Bin>> {
        let flat = if rows.len() >= 8192 {
            let (a, b) = rows.split_at(rows.len() / 2);
            let (mut ha, hb) = std::thread::scope(|s| {
                let t = s.spawn(|| self.flat_histogram(b, g, h));
                let ha = self.flat_histogram(a, g, h);
                (ha, t.join().expect("histogram thread"))
            });
            for (x, y) in ha.iter_mut().zip(&hb) {
                x.g += y.g;
                x.h += y.h;
                x.n += y.n;
            }
            ha
        } else {
            self.flat_histogram(rows, g, h)
        };
        let mut out: Vec<Vec<Bin>> = vec![Vec::new(); self.bins.len()];
        for &j in features {
            let start = self.offsets[j];
            out[j] = flat[start..start + self.n_bins[j] + 1].to_vec();
        }
        out
    }

    fn best_split(&self, leaf: &Leaf, features: &[usize]) -> Option<Split> {
        let p = self.p;
        if p.max_depth > 0 && leaf.depth >= p.max_depth {
            return None;
        }
        let parent = self.score(leaf.g, leaf.h);
        let mut best: Option<Split> = None;
        for &j in features {
            let hist = &leaf.hist[j];
            if hist.is_empty() {
                continue;
            }
            let nb = self.n_bins[j];
            let miss = hist[nb];
            if self.categorical[j] {
                self.best_category(leaf, parent, j, &mut best);
                continue;
            }
            for missing_left in [false, true] {
                if missing_left && miss.n == 0 {
                    continue;
                }
                let (mut gl, mut hl, mut nl) = if missing_left {
                    (miss.g, miss.h, miss.n)
                } else {
                    (0.0, 0.0, 0)
                };
                for (b, e) in hist.iter().enumerate().take(nb.saturating_sub(1)) {
                    gl += e.g;
                    hl += e.h;
                    nl += e.n;
                    if let Some(gain) = self.gain(leaf, parent, gl, hl, nl)
                        && best.is_none_or(|s| gain > s.gain)
                    {
                        best = Some(Split {
                            feature: j,
                            bin: b as u8,
                            categorical: false,
                            missing_left,
                            gain,
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
        let nr = leaf.rows.len() as u32 - nl;
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
        let hist = &leaf.hist[j];
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
fn loss(task: Task, s: &[f64], y: &[f64]) -> f64 {
    let n = y.len().max(1) as f64;
    if y.len() < 32_768 {
        return loss_sum(task, s, y) / n;
    }
    let half = y.len() / 2;
    let k = task.n_scores();
    let (sa, sb) = s.split_at(half * k);
    let (ya, yb) = y.split_at(half);
    let (a, b) = std::thread::scope(|sc| {
        let t = sc.spawn(|| loss_sum(task, sb, yb));
        (loss_sum(task, sa, ya), t.join().expect("loss thread"))
    });
    (a + b) / n
}

fn loss_sum(task: Task, s: &[f64], y: &[f64]) -> f64 {
    match task {
        Task::Regression => y.iter().zip(s).map(|(y, s)| (s - y).powi(2)).sum::<f64>(),
        // Labels are 0 or 1 (checked before training): one logarithm per row.
        Task::Binary => y
            .iter()
            .zip(s)
            .map(|(y, s)| {
                let p = sigmoid(*s).clamp(1e-15, 1.0 - 1e-15);
                -(if *y > 0.5 { p } else { 1.0 - p }).ln()
            })
            .sum::<f64>(),
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
    let grower = Grower::new(&binned, p);

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
    let mut g = vec![0.0; n];
    let mut h = vec![0.0; n];
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
            // Gradients and hessians of the objective at the current scores.
            for i in 0..n {
                let (gi, hi) = match task {
                    Task::Regression => (scores[i] - y[i], 1.0),
                    Task::Binary => {
                        let pr = sigmoid(scores[i]);
                        (pr - y[i], (pr * (1.0 - pr)).max(1e-16))
                    }
                    Task::Multiclass { .. } => {
                        let row = &scores[i * k..(i + 1) * k];
                        let m = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                        let z: f64 = row.iter().map(|v| (v - m).exp()).sum();
                        let pr = (row[class] - m).exp() / z;
                        let t = if y[i] as usize == class { 1.0 } else { 0.0 };
                        // LightGBM's factor K/(K-1) on the softmax hessian.
                        let factor = k as f64 / (k as f64 - 1.0);
                        (pr - t, (factor * pr * (1.0 - pr)).max(1e-16))
                    }
                };
                g[i] = gi;
                h[i] = hi;
            }
            let features: Vec<usize> = if p.feature_fraction < 1.0 {
                let m = ((x.cols as f64 * p.feature_fraction).round() as usize).max(1);
                let mut f = sample(&mut rng, x.cols, m).into_vec();
                f.sort_unstable();
                f
            } else {
                all_features.clone()
            };
            let (tree, leaf_rows, leaf_values) = grow_tree(
                &grower,
                &bag,
                &g,
                &h,
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
                for (li, rows) in leaf_rows.iter().enumerate() {
                    if rows.is_empty() {
                        continue;
                    }
                    let w = weights[tree.nodes[li].weight_start as usize].value;
                    for &r in rows {
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
            train_loss: loss(task, &scores, y),
            valid_loss: valid.map(|(_, vy)| loss(task, &vscores, vy)),
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

/// Grows one tree leaf-wise. Returns its nodes (leaves without weights yet), the training
/// rows of each leaf (indexed by node), and each leaf's raw value `-G / (H + λ)`.
#[allow(clippy::too_many_arguments)]
fn grow_tree(
    grower: &Grower<'_>,
    rows: &[u32],
    g: &[f64],
    h: &[f64],
    features: &[usize],
    binned: &Binned,
    gain_imp: &mut [f64],
    split_imp: &mut [u64],
) -> (Vec<Node>, Vec<Vec<u32>>, Vec<f64>) {
    let p = grower.p;
    let sum = |rows: &[u32]| {
        rows.iter().fold((0.0, 0.0), |(a, b), &r| {
            (a + g[r as usize], b + h[r as usize])
        })
    };
    let (g0, h0) = sum(rows);
    let mut nodes = vec![Node::leaf(0, 0)];
    let mut root = Leaf {
        rows: rows.to_vec(),
        hist: grower.histogram(rows, g, h, features),
        g: g0,
        h: h0,
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
        let col = &binned.bins[s.feature];
        let (left, right): (Vec<u32>, Vec<u32>) = leaf
            .rows
            .iter()
            .partition(|&&r| s.goes_left(col[r as usize]));
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
        // The smaller child's histogram is built; the larger one's is the parent's minus it.
        let (small, large, small_is_left) = if left.len() <= right.len() {
            (left, right, true)
        } else {
            (right, left, false)
        };
        let small_hist = grower.histogram(&small, g, h, features);
        let large_hist: Vec<Vec<Bin>> = leaf
            .hist
            .iter()
            .zip(&small_hist)
            .map(|(ph, sh)| {
                ph.iter()
                    .zip(sh)
                    .map(|(a, b)| Bin {
                        g: a.g - b.g,
                        h: a.h - b.h,
                        n: a.n - b.n,
                    })
                    .collect()
            })
            .collect();
        let (sg, sh) = sum(&small);
        let make = |rows: Vec<u32>, hist, g, h, node| Leaf {
            rows,
            hist,
            g,
            h,
            depth: leaf.depth + 1,
            node,
            best: None,
        };
        let (lnode, rnode) = (li, li + 1);
        let (small_node, large_node) = if small_is_left {
            (lnode, rnode)
        } else {
            (rnode, lnode)
        };
        let mut a = make(small, small_hist, sg, sh, small_node);
        let mut b = make(large, large_hist, leaf.g - sg, leaf.h - sh, large_node);
        a.best = grower.best_split(&a, features);
        b.best = grower.best_split(&b, features);
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
    let mut leaf_rows = vec![Vec::new(); nodes.len()];
    let mut values = vec![0.0; nodes.len()];
    for l in open {
        values[l.node] = -l.g / (l.h + p.lambda_l2);
        leaf_rows[l.node] = l.rows;
    }
    (nodes, leaf_rows, values)
}

mod binning;
#[cfg(test)]
mod tests;
