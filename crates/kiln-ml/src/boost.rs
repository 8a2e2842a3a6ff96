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
use crate::trees::{Aggregate, LeafWeight, Tree, TreeEnsemble};
use binning::bin_features;
use grow::{Grower, grow_tree};

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

mod binning;
mod grow;
#[cfg(test)]
mod tests;
