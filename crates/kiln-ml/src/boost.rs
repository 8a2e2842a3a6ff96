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
            seed: 0,
        }
    }
}

impl GbdtParams {
    /// Parameters from a JSON map (the `[train.x.params]` table); errors name the field.
    pub fn from_map(map: &BTreeMap<String, serde_json::Value>) -> Result<Self> {
        let value =
            serde_json::Value::Object(map.iter().map(|(k, v)| (k.clone(), v.clone())).collect());
        let p: GbdtParams = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            if path == "." {
                MlError::Training(format!("params: {}", e.into_inner()))
            } else {
                MlError::Training(format!("params.{path}: {}", e.into_inner()))
            }
        })?;
        p.validate()?;
        Ok(p)
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

/// The missing-value bin (values get bins `0..n_bins`).
const MISSING: u8 = 255;

struct Binned {
    /// Per feature: the upper edge of each bin but the last (`v <= edges[b]` ⇔ bin ≤ b).
    edges: Vec<Vec<f32>>,
    /// Column-major bins, `MISSING` for NaN.
    bins: Vec<Vec<u8>>,
}

fn bin_features(x: &Matrix, max_bin: usize) -> Binned {
    let mut edges = Vec::with_capacity(x.cols);
    let mut bins = Vec::with_capacity(x.cols);
    for j in 0..x.cols {
        let col = x.column(j);
        let mut vals: Vec<f32> = col.iter().copied().filter(|v| !v.is_nan()).collect();
        vals.sort_by(f32::total_cmp);
        vals.dedup();
        let e: Vec<f32> = if vals.len() <= max_bin {
            vals.windows(2).map(|w| midpoint(w[0], w[1])).collect()
        } else {
            // Quantile edges over distinct values.
            let mut e: Vec<f32> = (1..max_bin)
                .map(|q| {
                    let i = q * vals.len() / max_bin;
                    midpoint(vals[i - 1], vals[i])
                })
                .collect();
            e.dedup();
            e
        };
        let b: Vec<u8> = col
            .iter()
            .map(|v| {
                if v.is_nan() {
                    MISSING
                } else {
                    e.partition_point(|edge| *edge < *v) as u8
                }
            })
            .collect();
        edges.push(e);
        bins.push(b);
    }
    Binned { edges, bins }
}

/// A threshold between two values, in f32, with `a <= t < b`.
fn midpoint(a: f32, b: f32) -> f32 {
    let m = ((f64::from(a) + f64::from(b)) / 2.0) as f32;
    if m >= b { a } else { m }
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

#[derive(Clone, Copy)]
struct Split {
    feature: usize,
    bin: u8,
    missing_left: bool,
    gain: f64,
}

struct Grower<'a> {
    bins: &'a [Vec<u8>],
    n_bins: Vec<usize>,
    p: &'a GbdtParams,
}

impl Grower<'_> {
    fn histogram(&self, rows: &[u32], g: &[f64], h: &[f64], features: &[usize]) -> Vec<Vec<Bin>> {
        let one = |j: usize| -> Vec<Bin> {
            let mut hist = vec![Bin::default(); self.n_bins[j] + 1];
            let col = &self.bins[j];
            let miss = self.n_bins[j];
            for &r in rows {
                let r = r as usize;
                let b = col[r];
                let slot = if b == MISSING { miss } else { b as usize };
                let e = &mut hist[slot];
                e.g += g[r];
                e.h += h[r];
                e.n += 1;
            }
            hist
        };
        let mut out: Vec<Vec<Bin>> = vec![Vec::new(); self.bins.len()];
        if rows.len() >= 4096 && features.len() >= 2 {
            let (a, b) = features.split_at(features.len() / 2);
            let (ha, hb) = std::thread::scope(|s| {
                let t = s.spawn(|| b.iter().map(|&j| one(j)).collect::<Vec<_>>());
                let ha: Vec<_> = a.iter().map(|&j| one(j)).collect();
                (ha, t.join().expect("histogram thread"))
            });
            for (&j, hj) in a.iter().zip(ha).chain(b.iter().zip(hb)) {
                out[j] = hj;
            }
        } else {
            for &j in features {
                out[j] = one(j);
            }
        }
        out
    }

    fn best_split(&self, leaf: &Leaf, features: &[usize]) -> Option<Split> {
        let p = self.p;
        if p.max_depth > 0 && leaf.depth >= p.max_depth {
            return None;
        }
        let lambda = p.lambda_l2;
        let score = |g: f64, h: f64| g * g / (h + lambda);
        let parent = score(leaf.g, leaf.h);
        let total_n = leaf.rows.len() as u32;
        let mut best: Option<Split> = None;
        for &j in features {
            let hist = &leaf.hist[j];
            if hist.is_empty() {
                continue;
            }
            let nb = self.n_bins[j];
            let miss = hist[nb];
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
                    let nr = total_n - nl;
                    if (nl as usize) < p.min_data_in_leaf || (nr as usize) < p.min_data_in_leaf {
                        continue;
                    }
                    let (gr, hr) = (leaf.g - gl, leaf.h - hl);
                    if hl < p.min_sum_hessian_in_leaf || hr < p.min_sum_hessian_in_leaf {
                        continue;
                    }
                    let gain = score(gl, hl) + score(gr, hr) - parent;
                    if gain > p.min_gain_to_split
                        && gain > 1e-12
                        && best.is_none_or(|s| gain > s.gain)
                    {
                        best = Some(Split {
                            feature: j,
                            bin: b as u8,
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

/// Mean loss of raw scores `s` (rows × k) against labels.
fn loss(task: Task, s: &[f64], y: &[f64]) -> f64 {
    let n = y.len().max(1) as f64;
    match task {
        Task::Regression => y.iter().zip(s).map(|(y, s)| (s - y).powi(2)).sum::<f64>() / n,
        Task::Binary => {
            y.iter()
                .zip(s)
                .map(|(y, s)| {
                    let p = sigmoid(*s).clamp(1e-15, 1.0 - 1e-15);
                    -(y * p.ln() + (1.0 - y) * (1.0 - p).ln())
                })
                .sum::<f64>()
                / n
        }
        Task::Multiclass { classes: k } => {
            let mut total = 0.0;
            for (i, y) in y.iter().enumerate() {
                let row = &s[i * k..(i + 1) * k];
                let m = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let z: f64 = row.iter().map(|v| (v - m).exp()).sum();
                total += -(row[*y as usize] - m - z.ln());
            }
            total / n
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
    let binned = bin_features(x, p.max_bin);
    let n_bins: Vec<usize> = binned.edges.iter().map(|e| e.len() + 1).collect();
    let grower = Grower {
        bins: &binned.bins,
        n_bins,
        p,
    };

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
    let mut done: Vec<Leaf> = vec![];
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
        let (left, right): (Vec<u32>, Vec<u32>) = leaf.rows.iter().partition(|&&r| {
            let b = col[r as usize];
            if b == MISSING {
                s.missing_left
            } else {
                b <= s.bin
            }
        });
        gain_imp[s.feature] += s.gain;
        split_imp[s.feature] += 1;
        let li = nodes.len();
        nodes.push(Node::leaf(0, 0));
        nodes.push(Node::leaf(0, 0));
        let mut split = Node::split(
            s.feature as u32,
            binned.edges[s.feature][s.bin as usize],
            NodeMode::BranchLeq,
            s.missing_left,
        );
        split.true_child = li as u32;
        split.false_child = (li + 1) as u32;
        nodes[leaf.node] = split;
        // The smaller child's histogram is built; the larger one's is the parent's minus it.
        let (small, large, small_is_left) = if left.len() <= right.len() {
            (&left, &right, true)
        } else {
            (&right, &left, false)
        };
        let small_hist = grower.histogram(small, g, h, features);
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
        let (sg, sh) = sum(small);
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
        let small_rows = small.clone();
        let large_rows = large.clone();
        let mut a = make(small_rows, small_hist, sg, sh, small_node);
        let mut b = make(large_rows, large_hist, leaf.g - sg, leaf.h - sh, large_node);
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
    done.extend(open);
    let mut leaf_rows = vec![Vec::new(); nodes.len()];
    let mut values = vec![0.0; nodes.len()];
    for l in done {
        values[l.node] = -l.g / (l.h + p.lambda_l2);
        leaf_rows[l.node] = l.rows;
    }
    (nodes, leaf_rows, values)
}

/// Used by tests: a random matrix.
#[cfg(test)]
fn random_matrix(rows: usize, cols: usize, seed: u64) -> Matrix {
    use rand::Rng;
    let mut rng = StdRng::seed_from_u64(seed);
    Matrix::new(
        rows,
        cols,
        (0..rows * cols)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect(),
    )
    .unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auc(y: &[f64], p: &[f64]) -> f64 {
        crate::metrics::auc(&y.iter().map(|v| *v > 0.5).collect::<Vec<_>>(), p).unwrap()
    }

    fn nonlinear(n: usize, seed: u64) -> (Matrix, Vec<f64>) {
        let x = random_matrix(n, 4, seed);
        let y = (0..n)
            .map(|i| {
                let r = x.row(i);
                f64::from(u8::from(r[0] * r[1] > 0.0 || r[2] > 0.8))
            })
            .collect();
        (x, y)
    }

    #[test]
    fn learns_a_nonlinear_binary_rule() {
        let (x, y) = nonlinear(4000, 1);
        let (vx, vy) = nonlinear(2000, 2);
        let p = GbdtParams {
            num_rounds: 80,
            ..Default::default()
        };
        let out = train(&x, &y, Some((&vx, &vy)), Task::Binary, &p, &mut |_| {}).unwrap();
        let pred = out.model.predict(&vx).unwrap();
        assert!(auc(&vy, &pred.value) > 0.97, "{}", auc(&vy, &pred.value));
        assert!(
            out.history
                .windows(2)
                .all(|w| w[1].train_loss <= w[0].train_loss + 1e-9)
        );
        // Feature 3 is noise.
        assert!(out.importance_gain[3] < out.importance_gain[0] / 5.0);
    }

    #[test]
    fn regression_and_multiclass_fit() {
        let x = random_matrix(3000, 3, 3);
        let y: Vec<f64> = (0..3000)
            .map(|i| f64::from(3.0 * x.get(i, 0) + x.get(i, 1).abs()))
            .collect();
        let out = train(
            &x,
            &y,
            None,
            Task::Regression,
            &GbdtParams::default(),
            &mut |_| {},
        )
        .unwrap();
        let pred = out.model.predict(&x).unwrap();
        let mse: f64 = pred
            .value
            .iter()
            .zip(&y)
            .map(|(a, b)| (a - b).powi(2))
            .sum::<f64>()
            / 3000.0;
        assert!(mse < 0.02, "{mse}");

        let y: Vec<f64> = (0..3000)
            .map(|i| {
                if x.get(i, 0) < -0.3 {
                    0.0
                } else if x.get(i, 1) < 0.0 {
                    1.0
                } else {
                    2.0
                }
            })
            .collect();
        let task = Task::Multiclass { classes: 3 };
        let out = train(&x, &y, None, task, &GbdtParams::default(), &mut |_| {}).unwrap();
        let pred = out.model.predict(&x).unwrap();
        let acc = pred
            .label
            .iter()
            .zip(&y)
            .filter(|(a, b)| **a as f64 == **b)
            .count();
        assert!(acc > 2900, "{acc}");
    }

    #[test]
    fn missing_values_take_the_side_that_gains() {
        // NaN in feature 0 means positive; otherwise x0 > 0.5 is positive.
        let mut x = random_matrix(4000, 2, 4);
        let mut y = vec![0.0; 4000];
        for (i, yi) in y.iter_mut().enumerate() {
            if i % 4 == 0 {
                x.data[i * 2] = f32::NAN;
                *yi = 1.0;
            } else {
                *yi = f64::from(u8::from(x.get(i, 0) > 0.5));
            }
        }
        let out = train(
            &x,
            &y,
            None,
            Task::Binary,
            &GbdtParams::default(),
            &mut |_| {},
        )
        .unwrap();
        let probe = Matrix::new(2, 2, vec![f32::NAN, 0.0, -0.9, 0.0]).unwrap();
        let pred = out.model.predict(&probe).unwrap();
        assert!(
            pred.value[0] > 0.9 && pred.value[1] < 0.1,
            "{:?}",
            pred.value
        );
    }

    #[test]
    fn early_stopping_keeps_the_best_round_and_training_is_deterministic() {
        let (x, mut y) = nonlinear(2000, 5);
        // Noisy labels make the validation loss turn up.
        for i in (0..2000).step_by(3) {
            y[i] = 1.0 - y[i];
        }
        let (vx, vy) = nonlinear(1000, 6);
        let p = GbdtParams {
            num_rounds: 300,
            learning_rate: 0.3,
            num_leaves: 63,
            min_data_in_leaf: 2,
            early_stopping_rounds: 10,
            bagging_fraction: 0.8,
            bagging_freq: 1,
            feature_fraction: 0.75,
            seed: 9,
            ..Default::default()
        };
        let a = train(&x, &y, Some((&vx, &vy)), Task::Binary, &p, &mut |_| {}).unwrap();
        assert!(a.history.len() < 300);
        assert_eq!(
            match &a.model.scorer {
                Scorer::Trees(t) => t.trees.len(),
                _ => 0,
            },
            a.best_iteration
        );
        let b = train(&x, &y, Some((&vx, &vy)), Task::Binary, &p, &mut |_| {}).unwrap();
        assert_eq!(
            serde_json::to_vec(&a.model).unwrap(),
            serde_json::to_vec(&b.model).unwrap()
        );
        let c = train(
            &x,
            &y,
            Some((&vx, &vy)),
            Task::Binary,
            &GbdtParams { seed: 10, ..p },
            &mut |_| {},
        )
        .unwrap();
        assert_ne!(
            serde_json::to_vec(&a.model).unwrap(),
            serde_json::to_vec(&c.model).unwrap()
        );
    }

    #[test]
    fn bad_input_is_named() {
        let x = random_matrix(50, 2, 7);
        let y: Vec<f64> = (0..50).map(|i| f64::from(i % 2)).collect();
        let p = GbdtParams::default();
        let e = |r: Result<GbdtOutcome>| r.err().expect("an error").to_string();
        assert!(e(train(&x, &y[..10], None, Task::Binary, &p, &mut |_| {})).contains("labels"));
        assert!(e(train(&x, &[1.0; 50], None, Task::Binary, &p, &mut |_| {})).contains("constant"));
        let mut bad = y.clone();
        bad[3] = 2.0;
        assert!(e(train(&x, &bad, None, Task::Binary, &p, &mut |_| {})).contains("label 4"));
        bad[3] = f64::NAN;
        assert!(e(train(&x, &bad, None, Task::Regression, &p, &mut |_| {})).contains("finite"));
        let m = |s: &str| {
            GbdtParams::from_map(&serde_json::from_str(s).unwrap())
                .err()
                .unwrap()
                .to_string()
        };
        assert!(m(r#"{"num_roundz": 3}"#).contains("num_roundz"));
        assert!(m(r#"{"learning_rate": -1}"#).contains("learning_rate"));
        assert!(m(r#"{"num_leaves": 1}"#).contains("num_leaves"));
        assert!(m(r#"{"num_leaves": "many"}"#).contains("num_leaves"));
        let ok = GbdtParams::from_map(
            &serde_json::from_str(r#"{"n_estimators": 7, "eta": 0.2}"#).unwrap(),
        )
        .unwrap();
        assert_eq!((ok.num_rounds, ok.learning_rate), (7, 0.2));
    }
}
