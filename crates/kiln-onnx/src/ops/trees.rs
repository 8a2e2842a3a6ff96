//! `TreeEnsembleClassifier` and `TreeEnsembleRegressor` with onnxruntime's semantics
//! (`tree_ensemble_common.h`, `tree_ensemble_aggregator.h`, `ml_common.h`):
//!
//! * the trees are the runs of equal `nodes_treeids`, each rooted at its first listed node;
//! * a split goes to its true branch when `x <mode> threshold`, or when x is NaN and
//!   `nodes_missing_value_tracks_true` is set;
//! * scores add up in the threshold type, f32 (f64 for a float64 input), tree after tree, as
//!   onnxruntime does on one thread, so labels decided on sums (`> 0.5`, `> 0`) agree with it
//!   to the bit;
//! * a classifier sums whatever `aggregate_function` says, adds `base_values`, picks its label
//!   and fills the probability columns exactly as onnxruntime's classifier aggregator: the
//!   binary case with a single weight column (scikit-learn forests and boosting), base values
//!   of length 1 or 2, `[1 − p, p]` for all-positive weights, `[σ(−s), σ(s)]` for a logistic
//!   score; a class that no leaf reached reads as 0;
//! * a regressor with one target only uses each leaf's first weight, adds `base_values[0]`
//!   when there is exactly one, and of the transforms only applies PROBIT.
//!
//! Trees with float thresholds are built and validated as [`kiln_ml::trees::TreeEnsemble`]
//! (the structure Kiln's native tree models use), float64 ones (a float64 input) in the same
//! layout with f64 thresholds, since `TreeEnsemble` compares in f32. Both are then flattened
//! for scoring: all nodes in one array, a leaf pointing to itself, and eight rows walked down a
//! tree together for a fixed number of steps with the next node picked by index, not by a
//! branch — `TreeEnsemble::leaf_of` walks one row at a time with a branch per node, and was
//! 0.68× onnxruntime's speed on a 50-tree forest at batch 1024 where this is faster.

use std::collections::HashMap;

use kiln_ml::trees::{Aggregate, LeafWeight, Node, NodeMode, Tree, TreeEnsemble};
use kiln_ml::{ElemType, PostTransform, TensorData};

use super::ort_math::{logistic, post_transform, probit, transform_row};
use super::{Compiled, In, Kernel, TypeInfo, arg, batch_by, input, matrix_dims};
use crate::error::Result;
use crate::proto::NodeCx;
use crate::value::{Value, View};

/// Rows scored together, tree after tree (onnxruntime's `parallel_tree_N_` block).
const BLOCK: usize = 128;

// ---- parsing -------------------------------------------------------------------------------

struct RawNodes {
    tree_ids: Vec<i64>,
    node_ids: Vec<i64>,
    features: Vec<i64>,
    modes: Vec<Option<NodeMode>>, // None = LEAF
    values: Vec<f64>,
    values_f64: bool,
    true_ids: Vec<i64>,
    false_ids: Vec<i64>,
    missing_true: Vec<bool>,
}

fn req_ints<'a>(cx: &NodeCx<'a>, name: &str) -> Result<&'a [i64]> {
    cx.ints(name)?
        .ok_or_else(|| cx.attr_err(name, "is required"))
}

fn parse_nodes(cx: &NodeCx<'_>) -> Result<RawNodes> {
    let tree_ids = req_ints(cx, "nodes_treeids")?.to_vec();
    let n = tree_ids.len();
    if n == 0 {
        return Err(cx.attr_err("nodes_treeids", "is empty: the ensemble has no nodes"));
    }
    let same_len = |name: &str, len: usize| -> Result<()> {
        if len == n {
            Ok(())
        } else {
            Err(cx.attr_err(name, format!("has {len} values for {n} nodes")))
        }
    };
    let node_ids = req_ints(cx, "nodes_nodeids")?.to_vec();
    same_len("nodes_nodeids", node_ids.len())?;
    let features = req_ints(cx, "nodes_featureids")?.to_vec();
    same_len("nodes_featureids", features.len())?;
    let true_ids = req_ints(cx, "nodes_truenodeids")?.to_vec();
    same_len("nodes_truenodeids", true_ids.len())?;
    let false_ids = req_ints(cx, "nodes_falsenodeids")?.to_vec();
    same_len("nodes_falsenodeids", false_ids.len())?;
    let mode_names = cx
        .utf8s("nodes_modes")?
        .ok_or_else(|| cx.attr_err("nodes_modes", "is required"))?;
    same_len("nodes_modes", mode_names.len())?;
    let mut modes = Vec::with_capacity(n);
    for m in &mode_names {
        modes.push(match m.as_str() {
            "LEAF" => None,
            other => Some(NodeMode::parse(other).ok_or_else(|| {
                cx.attr_err("nodes_modes", format!("`{other}` is not a node mode"))
            })?),
        });
    }
    let (values, values_f64) = cx
        .floats_or_tensor("nodes_values")?
        .ok_or_else(|| cx.attr_err("nodes_values", "is required (or nodes_values_as_tensor)"))?;
    same_len("nodes_values", values.len())?;
    let missing_true = match cx.ints("nodes_missing_value_tracks_true")? {
        None => vec![false; n],
        // onnxruntime reads the flag of node i when there is one.
        Some(v) => (0..n).map(|i| v.get(i) == Some(&1)).collect(),
    };
    Ok(RawNodes {
        tree_ids,
        node_ids,
        features,
        modes,
        values,
        values_f64,
        true_ids,
        false_ids,
        missing_true,
    })
}

struct RawWeights {
    tree_ids: Vec<i64>,
    node_ids: Vec<i64>,
    ids: Vec<i64>,
    values: Vec<f64>,
    values_f64: bool,
}

fn parse_weights(cx: &NodeCx<'_>, prefix: &str) -> Result<RawWeights> {
    let name = |s: &str| format!("{prefix}_{s}");
    let tree_ids = req_ints(cx, &name("treeids"))?.to_vec();
    let node_ids = req_ints(cx, &name("nodeids"))?.to_vec();
    let ids = req_ints(cx, &name("ids"))?.to_vec();
    let (values, values_f64) = cx
        .floats_or_tensor(&name("weights"))?
        .ok_or_else(|| cx.attr_err(&name("weights"), "is required"))?;
    let n = tree_ids.len();
    for (attr, len) in [
        ("nodeids", node_ids.len()),
        ("ids", ids.len()),
        ("weights", values.len()),
    ] {
        if len != n {
            return Err(cx.attr_err(
                &name(attr),
                format!("has {len} values, {} has {n}", name("treeids")),
            ));
        }
    }
    Ok(RawWeights {
        tree_ids,
        node_ids,
        ids,
        values,
        values_f64,
    })
}

/// A tree ensemble in Kiln's layout, before the thresholds are typed.
struct Layout {
    /// Per tree, nodes in an order where children follow their parent; root first.
    trees: Vec<Vec<LNode>>,
    weights: Vec<(u32, f64)>,
    max_feature: usize,
}

#[derive(Clone)]
struct LNode {
    /// Index into the raw attribute arrays.
    raw: usize,
    leaf: bool,
    true_child: u32,
    false_child: u32,
    weight_start: u32,
    weight_end: u32,
}

/// Builds trees the way onnxruntime does: nodes keyed by (tree id, node id), a tree per run of
/// equal tree ids rooted at the run's first node, leaf weights sorted by (tree, node) and kept in
/// attribute order within a leaf. `first_weight_only` keeps a leaf's first weight (onnxruntime's
/// single-target path); `n_targets` bounds the target ids.
fn layout(
    cx: &NodeCx<'_>,
    nodes: &RawNodes,
    w: &RawWeights,
    weight_attr: &str,
    n_targets: usize,
    first_weight_only: bool,
) -> Result<Layout> {
    let n = nodes.tree_ids.len();
    let mut index: HashMap<(i64, i64), usize> = HashMap::with_capacity(n);
    for i in 0..n {
        if index
            .insert((nodes.tree_ids[i], nodes.node_ids[i]), i)
            .is_some()
        {
            return Err(cx.attr_err(
                "nodes_nodeids",
                format!(
                    "node {} of tree {} is listed twice",
                    nodes.node_ids[i], nodes.tree_ids[i]
                ),
            ));
        }
    }
    // Children of every split, as raw indices.
    let mut children = vec![(0usize, 0usize); n];
    let mut max_feature = 0usize;
    for (i, child) in children.iter_mut().enumerate() {
        if nodes.modes[i].is_none() {
            continue;
        }
        let t = nodes.tree_ids[i];
        let find = |id: i64, attr: &str| -> Result<usize> {
            match index.get(&(t, id)) {
                Some(&j) if j == i => Err(cx.attr_err(
                    attr,
                    format!("node {} of tree {t} points to itself", nodes.node_ids[i]),
                )),
                Some(&j) => Ok(j),
                None => Err(cx.attr_err(attr, format!("tree {t} has no node {id}"))),
            }
        };
        *child = (
            find(nodes.true_ids[i], "nodes_truenodeids")?,
            find(nodes.false_ids[i], "nodes_falsenodeids")?,
        );
        let f = usize::try_from(nodes.features[i]).map_err(|_| {
            cx.attr_err(
                "nodes_featureids",
                format!("negative feature id {}", nodes.features[i]),
            )
        })?;
        max_feature = max_feature.max(f);
    }
    // Leaf weights, sorted as onnxruntime sorts them.
    let mut order: Vec<usize> = (0..w.tree_ids.len()).collect();
    order.sort_by_key(|&k| (w.tree_ids[k], w.node_ids[k], k));
    let mut leaf_weights: Vec<Vec<(u32, f64)>> = vec![Vec::new(); n];
    for k in order {
        let Some(&i) = index.get(&(w.tree_ids[k], w.node_ids[k])) else {
            return Err(cx.attr_err(
                weight_attr,
                format!(
                    "a weight names node {} of tree {}, which does not exist",
                    w.node_ids[k], w.tree_ids[k]
                ),
            ));
        };
        if nodes.modes[i].is_some() {
            continue; // onnxruntime ignores weights on splits
        }
        let target = if first_weight_only {
            0
        } else {
            let id = w.ids[k];
            match usize::try_from(id) {
                Ok(t) if t < n_targets => t as u32,
                _ => {
                    return Err(cx.attr_err(
                        weight_attr,
                        format!("target/class id {id} is out of range for {n_targets} targets"),
                    ));
                }
            }
        };
        if first_weight_only && !leaf_weights[i].is_empty() {
            continue;
        }
        leaf_weights[i].push((target, w.values[k]));
    }
    // Roots: the first node of each run of equal tree ids.
    let mut roots = Vec::new();
    for i in 0..n {
        if i == 0 || nodes.tree_ids[i] != nodes.tree_ids[i - 1] {
            roots.push(i);
        }
    }
    let mut weights = Vec::new();
    let mut trees = Vec::with_capacity(roots.len());
    let mut state = vec![0u8; n]; // 0 unseen, 1 on the DFS stack, 2 done
    let mut pos = vec![0u32; n];
    for &root in &roots {
        // Topological order of the nodes reachable from the root (a tree, or a DAG when nodes
        // are shared): reverse DFS post-order, with cycles refused.
        state.iter_mut().for_each(|s| *s = 0);
        let mut post = Vec::new();
        let mut stack = vec![(root, false)];
        while let Some((i, expanded)) = stack.pop() {
            if expanded {
                state[i] = 2;
                post.push(i);
                continue;
            }
            match state[i] {
                2 => continue,
                1 => {
                    return Err(cx.attr_err(
                        "nodes_truenodeids",
                        format!(
                            "tree {} has a cycle through node {}",
                            nodes.tree_ids[root], nodes.node_ids[i]
                        ),
                    ));
                }
                _ => {}
            }
            state[i] = 1;
            stack.push((i, true));
            if nodes.modes[i].is_some() {
                let (a, b) = children[i];
                for c in [b, a] {
                    match state[c] {
                        0 => stack.push((c, false)),
                        1 => {
                            return Err(cx.attr_err(
                                "nodes_truenodeids",
                                format!(
                                    "tree {} has a cycle through node {}",
                                    nodes.tree_ids[root], nodes.node_ids[c]
                                ),
                            ));
                        }
                        _ => {}
                    }
                }
            }
        }
        post.reverse();
        for (p, &i) in post.iter().enumerate() {
            pos[i] = p as u32;
        }
        let mut tree = Vec::with_capacity(post.len());
        for &i in &post {
            if nodes.modes[i].is_some() {
                let (a, b) = children[i];
                tree.push(LNode {
                    raw: i,
                    leaf: false,
                    true_child: pos[a],
                    false_child: pos[b],
                    weight_start: 0,
                    weight_end: 0,
                });
            } else {
                if leaf_weights[i].is_empty() {
                    return Err(cx.attr_err(
                        weight_attr,
                        format!(
                            "leaf {} of tree {} has no weight",
                            nodes.node_ids[i], nodes.tree_ids[i]
                        ),
                    ));
                }
                let start = weights.len() as u32;
                weights.extend_from_slice(&leaf_weights[i]);
                tree.push(LNode {
                    raw: i,
                    leaf: true,
                    true_child: 0,
                    false_child: 0,
                    weight_start: start,
                    weight_end: weights.len() as u32,
                });
            }
        }
        trees.push(tree);
    }
    Ok(Layout {
        trees,
        weights,
        max_feature,
    })
}

// ---- walking -------------------------------------------------------------------------------

/// onnxruntime sends NaN down the true branch when the comparison holds or the node tracks
/// missing values to the true side; `TreeEnsemble` consults the flag alone for NaN. They agree
/// once BRANCH_NEQ nodes (where `NaN != t` holds) send NaN to the true side.
fn missing_goes_true(mode: NodeMode, flag: bool) -> bool {
    flag || mode == NodeMode::BranchNeq
}

/// Float thresholds: Kiln's tree ensemble.
fn f32_ensemble(
    cx: &NodeCx<'_>,
    nodes: &RawNodes,
    l: &Layout,
    n_targets: usize,
) -> Result<TreeEnsemble> {
    let trees = l
        .trees
        .iter()
        .map(|t| Tree {
            nodes: t
                .iter()
                .map(|n| {
                    if n.leaf {
                        Node::leaf(n.weight_start, n.weight_end)
                    } else {
                        let mode = nodes.modes[n.raw].unwrap_or(NodeMode::BranchLeq);
                        let mut s = Node::split(
                            nodes.features[n.raw] as u32,
                            nodes.values[n.raw] as f32,
                            mode,
                            missing_goes_true(mode, nodes.missing_true[n.raw]),
                        );
                        s.true_child = n.true_child;
                        s.false_child = n.false_child;
                        s
                    }
                })
                .collect(),
        })
        .collect();
    let e = TreeEnsemble {
        n_features: l.max_feature + 1,
        n_targets: n_targets.max(1),
        trees,
        weights: l
            .weights
            .iter()
            .map(|&(target, value)| LeafWeight { target, value })
            .collect(),
        aggregate: Aggregate::Sum,
        base_values: vec![],
    };
    e.validate()
        .map_err(|err| cx.err(format!("invalid tree ensemble: {err}")))?;
    Ok(e)
}

/// A split or leaf, trees in Kiln's order (children after their parent, root first) before
/// flattening: float thresholds come from the validated [`TreeEnsemble`], float64 ones straight
/// from the layout (`TreeEnsemble` compares in f32).
#[derive(Clone, Copy)]
struct GenNode<T> {
    leaf: bool,
    mode: NodeMode,
    missing_true: bool,
    feature: u32,
    threshold: T,
    true_child: u32,
    false_child: u32,
    weight_start: u32,
    weight_end: u32,
}

fn f64_trees(nodes: &RawNodes, l: &Layout) -> Vec<Vec<GenNode<f64>>> {
    l.trees
        .iter()
        .map(|t| {
            t.iter()
                .map(|n| {
                    let mode = nodes.modes[n.raw].unwrap_or(NodeMode::BranchLeq);
                    GenNode {
                        leaf: n.leaf,
                        mode,
                        missing_true: missing_goes_true(mode, nodes.missing_true[n.raw]),
                        feature: if n.leaf {
                            0
                        } else {
                            nodes.features[n.raw] as u32
                        },
                        threshold: nodes.values[n.raw],
                        true_child: n.true_child,
                        false_child: n.false_child,
                        weight_start: n.weight_start,
                        weight_end: n.weight_end,
                    }
                })
                .collect()
        })
        .collect()
}

fn f32_trees(e: &TreeEnsemble) -> Vec<Vec<GenNode<f32>>> {
    e.trees
        .iter()
        .map(|t| {
            t.nodes
                .iter()
                .map(|n| GenNode {
                    leaf: n.leaf,
                    mode: n.mode,
                    missing_true: n.missing_true,
                    feature: n.feature,
                    threshold: n.threshold,
                    true_child: n.true_child,
                    false_child: n.false_child,
                    weight_start: n.weight_start,
                    weight_end: n.weight_end,
                })
                .collect()
        })
        .collect()
}

/// A threshold and input type.
trait Thr: Copy + PartialOrd + Default {
    fn nan(self) -> bool;
}

impl Thr for f32 {
    #[inline(always)]
    fn nan(self) -> bool {
        self.is_nan()
    }
}

impl Thr for f64 {
    #[inline(always)]
    fn nan(self) -> bool {
        self.is_nan()
    }
}

const FEATURE_MASK: u32 = (1 << 28) - 1;
const MODE_SHIFT: u32 = 28;
const MISSING_BIT: u32 = 1 << 31;
/// The mode code of an ensemble whose splits do not all share one mode.
const MIXED: u8 = 7;
/// Rows walked down a tree together: independent chains of loads the CPU overlaps.
const LANES: usize = 8;

fn mode_code(m: NodeMode) -> u8 {
    match m {
        NodeMode::BranchLeq => 0,
        NodeMode::BranchLt => 1,
        NodeMode::BranchGte => 2,
        NodeMode::BranchGt => 3,
        NodeMode::BranchEq => 4,
        NodeMode::BranchNeq => 5,
    }
}

/// A node of the flat layout: feature (28 bits), mode (3 bits) and the missing-value flag
/// packed in one word, the threshold, and the next node for a false and a true test. A leaf
/// points to itself both ways, so every row can take exactly `depth` steps without a branch.
#[derive(Clone, Copy)]
struct FNode<T> {
    packed: u32,
    threshold: T,
    next: [u32; 2],
}

/// All trees of an ensemble in one array, walked without data-dependent branches: onnxruntime's
/// test (`x <mode> t`, or NaN with the missing flag) picks the next node by index.
struct Flat<T> {
    nodes: Vec<FNode<T>>,
    /// Per node: its leaf weights (empty for splits).
    leaf_weights: Vec<(u32, u32)>,
    /// Every leaf has exactly one weight: its value is in the leaf's `threshold` and its
    /// target here (per node), and scores add it without looking the weights up.
    single: Option<Vec<u32>>,
    roots: Vec<u32>,
    depths: Vec<u32>,
    mode: u8,
    /// Some split sends missing values to its true side.
    any_missing: bool,
}

impl<T: Thr> Flat<T> {
    fn build(trees: &[Vec<GenNode<T>>], weights: &[(u32, T)]) -> std::result::Result<Self, String> {
        let total: usize = trees.iter().map(Vec::len).sum();
        if total >= u32::MAX as usize {
            return Err(format!("{total} nodes are too many"));
        }
        let mut nodes = Vec::with_capacity(total);
        let mut leaf_weights = Vec::with_capacity(total);
        let mut roots = Vec::with_capacity(trees.len());
        let mut depths = Vec::with_capacity(trees.len());
        let mut modes = std::collections::BTreeSet::new();
        let mut any_missing = false;
        let mut single = Some(Vec::with_capacity(total));
        for tree in trees {
            let off = nodes.len() as u32;
            roots.push(off);
            for (i, n) in tree.iter().enumerate() {
                if n.leaf {
                    let me = off + i as u32;
                    let w = weights
                        .get(n.weight_start as usize..n.weight_end as usize)
                        .unwrap_or(&[]);
                    let (target, value) = match w {
                        [one] => (one.0, one.1),
                        _ => {
                            single = None;
                            (0, T::default())
                        }
                    };
                    nodes.push(FNode {
                        packed: 0,
                        threshold: value,
                        next: [me, me],
                    });
                    leaf_weights.push((n.weight_start, n.weight_end));
                    if let Some(s) = single.as_mut() {
                        s.push(target);
                    }
                } else {
                    if n.feature > FEATURE_MASK {
                        return Err(format!("feature {} is beyond what Kiln indexes", n.feature));
                    }
                    let code = mode_code(n.mode);
                    modes.insert(code);
                    any_missing |= n.missing_true;
                    nodes.push(FNode {
                        packed: n.feature
                            | (u32::from(code) << MODE_SHIFT)
                            | if n.missing_true { MISSING_BIT } else { 0 },
                        threshold: n.threshold,
                        next: [off + n.false_child, off + n.true_child],
                    });
                    leaf_weights.push((0, 0));
                    if let Some(s) = single.as_mut() {
                        s.push(0);
                    }
                }
            }
            // Children follow their parent: the depth of each node from the back.
            let mut depth = vec![0u32; tree.len()];
            for i in (0..tree.len()).rev() {
                let n = &tree[i];
                if !n.leaf {
                    depth[i] = 1 + depth[n.true_child as usize].max(depth[n.false_child as usize]);
                }
            }
            depths.push(depth.first().copied().unwrap_or(0));
        }
        let mode = match modes.len() {
            0 => 0,
            1 => modes.into_iter().next().unwrap_or(0),
            _ => MIXED,
        };
        Ok(Flat {
            nodes,
            leaf_weights,
            single,
            roots,
            depths,
            mode,
            any_missing,
        })
    }

    fn n_trees(&self) -> usize {
        self.roots.len()
    }
}

/// onnxruntime's branch test: `x <mode> t`, or x is NaN and the node sends missing values to
/// its true side (`MISSING`: some node of the ensemble does). 1 = true.
#[inline(always)]
fn go<T: Thr, const MODE: u8, const MISSING: bool>(x: T, n: &FNode<T>) -> usize {
    let t = n.threshold;
    let mode = if MODE == MIXED {
        ((n.packed >> MODE_SHIFT) & 7) as u8
    } else {
        MODE
    };
    let c = match mode {
        0 => x <= t,
        1 => x < t,
        2 => x >= t,
        3 => x > t,
        4 => x == t,
        _ => x != t,
    };
    if MISSING {
        usize::from(c | (((n.packed & MISSING_BIT) != 0) & x.nan()))
    } else {
        usize::from(c)
    }
}

/// The leaf of `tree` each row of `rows` reaches, into `out`.
fn leaves<T: Thr, const MODE: u8, const MISSING: bool>(
    f: &Flat<T>,
    tree: usize,
    x: &[T],
    cols: usize,
    rows: std::ops::Range<usize>,
    out: &mut [u32],
) {
    let root = f.roots[tree];
    let depth = f.depths[tree];
    let nodes = f.nodes.as_slice();
    let mut r = rows.start;
    let mut o = 0;
    while r + LANES <= rows.end {
        let mut idx = [root; LANES];
        let mut base = [0usize; LANES];
        for (l, b) in base.iter_mut().enumerate() {
            *b = (r + l) * cols;
        }
        for _ in 0..depth {
            for (i, b) in idx.iter_mut().zip(&base) {
                let n = &nodes[*i as usize];
                let xv = x[b + (n.packed & FEATURE_MASK) as usize];
                *i = n.next[go::<T, MODE, MISSING>(xv, n)];
            }
        }
        out[o..o + LANES].copy_from_slice(&idx);
        r += LANES;
        o += LANES;
    }
    while r < rows.end {
        let mut i = root;
        let b = r * cols;
        for _ in 0..depth {
            let n = &nodes[i as usize];
            i = n.next[go::<T, MODE, MISSING>(x[b + (n.packed & FEATURE_MASK) as usize], n)];
        }
        out[o] = i;
        r += 1;
        o += 1;
    }
}

/// The accumulation type: f32, or f64 for a float64 input.
trait Acc:
    Copy
    + PartialOrd
    + std::ops::AddAssign
    + std::ops::Add<Output = Self>
    + std::ops::Neg<Output = Self>
    + Default
{
    fn to_f32(self) -> f32;
    fn div_trees(self, n: usize) -> Self;
    const HALF: Self;
}

impl Acc for f32 {
    fn to_f32(self) -> f32 {
        self
    }
    fn div_trees(self, n: usize) -> Self {
        self / n as f32
    }
    const HALF: Self = 0.5;
}

impl Acc for f64 {
    fn to_f32(self) -> f32 {
        self as f32
    }
    fn div_trees(self, n: usize) -> Self {
        self / n as f64
    }
    const HALF: Self = 0.5;
}

enum Walker {
    F32(Flat<f32>),
    F64(Flat<f64>),
}

impl Walker {
    fn n_trees(&self) -> usize {
        match self {
            Walker::F32(f) => f.n_trees(),
            Walker::F64(f) => f.n_trees(),
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Agg {
    Sum,
    Average,
    Min,
    Max,
}

/// Leaf scores of a block of rows, tree after tree: `scores`/`has` are `rows × k`; `leaf` is
/// scratch for one leaf index per row.
#[allow(clippy::too_many_arguments)]
fn accumulate<T: Acc + Thr>(
    f: &Flat<T>,
    weights: &[(u32, T)],
    x: &[T],
    cols: usize,
    rows: std::ops::Range<usize>,
    k: usize,
    agg: Agg,
    scores: &mut [T],
    has: &mut [bool],
    leaf: &mut [u32],
) {
    let n = rows.len();
    for t in 0..f.n_trees() {
        let out = &mut leaf[..n];
        let r = rows.clone();
        match (f.mode, f.any_missing) {
            (0, false) => leaves::<T, 0, false>(f, t, x, cols, r, out),
            (0, true) => leaves::<T, 0, true>(f, t, x, cols, r, out),
            (1, _) => leaves::<T, 1, true>(f, t, x, cols, r, out),
            (2, _) => leaves::<T, 2, true>(f, t, x, cols, r, out),
            (3, _) => leaves::<T, 3, true>(f, t, x, cols, r, out),
            (4, _) => leaves::<T, 4, true>(f, t, x, cols, r, out),
            (5, _) => leaves::<T, 5, true>(f, t, x, cols, r, out),
            _ => leaves::<T, MIXED, true>(f, t, x, cols, r, out),
        }
        let add = |j: usize, v: T, scores: &mut [T], has: &mut [bool]| {
            match agg {
                Agg::Sum | Agg::Average => scores[j] += v,
                Agg::Min => {
                    if !has[j] || v < scores[j] {
                        scores[j] = v;
                    }
                }
                Agg::Max => {
                    if !has[j] || v > scores[j] {
                        scores[j] = v;
                    }
                }
            }
            has[j] = true;
        };
        match &f.single {
            Some(targets) if matches!(agg, Agg::Sum | Agg::Average) => {
                for (r, &node) in out.iter().enumerate() {
                    let j = r * k + targets[node as usize] as usize;
                    scores[j] += f.nodes[node as usize].threshold;
                    has[j] = true;
                }
            }
            Some(targets) => {
                for (r, &node) in out.iter().enumerate() {
                    let j = r * k + targets[node as usize] as usize;
                    add(j, f.nodes[node as usize].threshold, scores, has);
                }
            }
            None => {
                for (r, &node) in out.iter().enumerate() {
                    let (ws, we) = f.leaf_weights[node as usize];
                    for &(target, v) in &weights[ws as usize..we as usize] {
                        add(r * k + target as usize, v, scores, has);
                    }
                }
            }
        }
    }
}

// ---- the kernel ----------------------------------------------------------------------------

enum Labels {
    Int(Vec<i64>),
    Str(Vec<Vec<u8>>),
}

enum Kind {
    Classifier {
        labels: Labels,
        binary_case: bool,
        all_positive: bool,
    },
    Regressor {
        agg: Agg,
    },
}

struct TreeKernel {
    walker: Walker,
    /// Leaf weights and base values in the accumulation type (exact: they came from it).
    w32: Vec<(u32, f32)>,
    w64: Vec<(u32, f64)>,
    b32: Vec<f32>,
    b64: Vec<f64>,
    k: usize,
    kind: Kind,
    post: PostTransform,
    /// The input needs more columns than this.
    max_feature: usize,
}

/// What decides a label: a class index, or onnxruntime's literal 1/0 for a two-class model
/// that is not its "binary case".
enum Pick {
    Index(usize),
    Literal(i64),
}

impl TreeKernel {
    #[allow(clippy::too_many_arguments)]
    fn run_typed<T: Acc + Thr>(
        &self,
        flat: &Flat<T>,
        weights: &[(u32, T)],
        base: &[T],
        x: &[T],
        rows: usize,
        cols: usize,
    ) -> (Vec<f32>, Vec<Pick>) {
        let k = self.k;
        let n_trees = self.walker.n_trees();
        let out_cols = match self.kind {
            Kind::Classifier { .. } => k,
            Kind::Regressor { .. } => k,
        };
        let mut out = vec![0.0f32; rows * out_cols];
        let mut picks = Vec::new();
        let block = BLOCK.min(rows.max(1));
        let mut scores = vec![T::default(); block * k];
        let mut has = vec![false; block * k];
        let mut leaf = vec![0u32; block];
        let agg = match self.kind {
            Kind::Classifier { .. } => Agg::Sum,
            Kind::Regressor { agg } => agg,
        };
        let mut start = 0;
        while start < rows {
            let end = (start + block).min(rows);
            let n = end - start;
            scores[..n * k].iter_mut().for_each(|s| *s = T::default());
            has[..n * k].iter_mut().for_each(|h| *h = false);
            accumulate(
                flat,
                weights,
                x,
                cols,
                start..end,
                k,
                agg,
                &mut scores,
                &mut has,
                &mut leaf,
            );
            for r in 0..n {
                let s = &mut scores[r * k..(r + 1) * k];
                let h = &mut has[r * k..(r + 1) * k];
                let z = &mut out[(start + r) * out_cols..(start + r + 1) * out_cols];
                match &self.kind {
                    Kind::Classifier {
                        binary_case,
                        all_positive,
                        ..
                    } => picks.push(finish_classifier(
                        s,
                        h,
                        base,
                        *binary_case,
                        *all_positive,
                        self.post,
                        z,
                    )),
                    Kind::Regressor { agg } => {
                        finish_regressor(s, h, base, *agg, n_trees, self.post, z)
                    }
                }
            }
            start = end;
        }
        (out, picks)
    }
}

/// The value onnxruntime writes for a score: `ScoreValue`'s float conversion gives 0 for a
/// score no leaf set.
#[inline]
fn ev<A: Acc>(s: A, has: bool) -> f32 {
    if has { s.to_f32() } else { 0.0 }
}

/// onnxruntime's `TreeAggregatorClassifier::FinalizeScores` for one row.
fn finish_classifier<A: Acc>(
    s: &mut [A],
    has: &mut [bool],
    base: &[A],
    binary_case: bool,
    all_positive: bool,
    post: PostTransform,
    z: &mut [f32],
) -> Pick {
    let k = s.len();
    if k > 2 {
        for (j, b) in base.iter().enumerate().take(k) {
            if has[j] {
                s[j] += *b;
            } else {
                has[j] = true;
                s[j] = *b;
            }
        }
        let mut best: Option<(usize, A)> = None;
        for j in 0..k {
            if has[j] && best.is_none_or(|(_, w)| s[j] > w) {
                best = Some((j, s[j]));
            }
        }
        for j in 0..k {
            z[j] = ev(s[j], has[j]);
        }
        transform_row(post, z);
        return Pick::Index(best.map_or(0, |b| b.0));
    }
    // Two classes.
    let mut len = 2;
    let mut write_additional: i32 = -1;
    match base.len() {
        2 => {
            if has[1] {
                // onnxruntime: base_values[0] is not used and class 1's own score is replaced.
                s[1] = base[1] + s[0];
                s[0] = -s[1];
                has[1] = true;
            } else {
                s[1] += base[1];
                s[0] += base[0];
            }
        }
        1 => {
            s[0] += base[0];
            if !has[1] {
                len = 1;
            }
        }
        0 => {
            write_additional = 3;
            if !has[1] {
                len = 1;
            }
        }
        _ => {}
    }
    let zero = A::default();
    let pos = if len == 2 && has[1] {
        s[1]
    } else if has[0] {
        s[0]
    } else {
        zero
    };
    let pick = if binary_case {
        if all_positive {
            if pos > A::HALF {
                write_additional = 0;
                Pick::Index(1)
            } else {
                write_additional = 1;
                Pick::Index(0)
            }
        } else if pos > zero {
            write_additional = 2;
            Pick::Index(1)
        } else {
            write_additional = 3;
            Pick::Index(0)
        }
    } else if pos > zero {
        Pick::Literal(1)
    } else {
        Pick::Literal(0)
    };
    if len == 2 {
        z[0] = ev(s[0], has[0]);
        z[1] = ev(s[1], has[1]);
        transform_row(post, z);
    } else {
        let v = ev(s[0], has[0]);
        if post == PostTransform::Probit {
            z[0] = probit(v);
        } else {
            match write_additional {
                0 | 1 => {
                    z[0] = 1.0 - v;
                    z[1] = v;
                }
                2 | 3 => {
                    if post == PostTransform::Logistic {
                        z[0] = logistic(-v);
                        z[1] = logistic(v);
                    } else {
                        z[0] = -v;
                        z[1] = v;
                    }
                }
                _ => z[0] = v,
            }
        }
    }
    pick
}

/// onnxruntime's regressor aggregators' `FinalizeScores1` / `FinalizeScores` for one row.
fn finish_regressor<A: Acc>(
    s: &mut [A],
    has: &mut [bool],
    base: &[A],
    agg: Agg,
    n_trees: usize,
    post: PostTransform,
    z: &mut [f32],
) {
    let k = s.len();
    if k == 1 {
        let origin = if base.len() == 1 {
            base[0]
        } else {
            A::default()
        };
        let v = match agg {
            Agg::Sum => s[0] + origin,
            Agg::Average => s[0].div_trees(n_trees) + origin,
            Agg::Min | Agg::Max => {
                if has[0] {
                    s[0] + origin
                } else {
                    origin
                }
            }
        };
        z[0] = if post == PostTransform::Probit {
            probit(v.to_f32())
        } else {
            v.to_f32()
        };
        return;
    }
    let use_base = base.len() == k;
    for j in 0..k {
        let b = if use_base { base[j] } else { A::default() };
        s[j] = match agg {
            Agg::Sum => {
                if use_base {
                    s[j] + b
                } else {
                    s[j]
                }
            }
            Agg::Average => {
                if use_base {
                    s[j].div_trees(n_trees) + b
                } else {
                    s[j].div_trees(n_trees)
                }
            }
            Agg::Min | Agg::Max => {
                if has[j] {
                    b + s[j]
                } else {
                    b
                }
            }
        };
        z[j] = ev(s[j], has[j]);
    }
    transform_row(post, z);
}

impl Kernel for TreeKernel {
    fn run(&self, inputs: &[Option<View<'_>>]) -> std::result::Result<Vec<Value>, String> {
        let x = arg(inputs, 0)?;
        let (rows, cols) = matrix_dims(&x, "the input")?;
        if cols <= self.max_feature {
            return Err(format!(
                "the trees read feature {} but the input has {cols} columns",
                self.max_feature
            ));
        }
        let (scores, picks) = match &self.walker {
            Walker::F64(flat) => {
                let TensorData::Fp64(v) = x.data else {
                    return Err("the input is not FP64".into());
                };
                self.run_typed::<f64>(flat, &self.w64, &self.b64, v, rows, cols)
            }
            Walker::F32(flat) => {
                let v = crate::value::to_f32(x.data).ok_or("the input is not numeric")?;
                self.run_typed::<f32>(flat, &self.w32, &self.b32, &v, rows, cols)
            }
        };
        match &self.kind {
            Kind::Regressor { .. } => Ok(vec![Value::new(
                vec![rows, self.k],
                TensorData::Fp32(scores),
            )]),
            Kind::Classifier { labels, .. } => {
                let label = match labels {
                    Labels::Int(l) => TensorData::Int64(
                        picks
                            .iter()
                            .map(|p| match p {
                                Pick::Index(i) => l[*i],
                                Pick::Literal(v) => *v,
                            })
                            .collect(),
                    ),
                    Labels::Str(l) => TensorData::Bytes(
                        picks
                            .iter()
                            .map(|p| match p {
                                Pick::Index(i) => l[*i].clone(),
                                Pick::Literal(v) => l[*v as usize].clone(),
                            })
                            .collect(),
                    ),
                };
                Ok(vec![
                    Value::new(vec![rows], label),
                    Value::new(vec![rows, self.k], TensorData::Fp32(scores)),
                ])
            }
        }
    }
}

// ---- compilation ---------------------------------------------------------------------------

/// Checks the input type and builds the walker for the thresholds.
fn walker(
    cx: &NodeCx<'_>,
    x: &In<'_>,
    nodes: &RawNodes,
    l: &Layout,
    k: usize,
) -> Result<(Walker, bool)> {
    let double = match x.ty.elem {
        ElemType::Fp64 => true,
        ElemType::Fp32 | ElemType::Int64 | ElemType::Int32 => false,
        other => {
            return Err(cx.err(format!(
                "input X is {}; a number type was expected",
                other.as_oip()
            )));
        }
    };
    if let Some(c) = x.ty.last_dim()
        && c <= l.max_feature
    {
        return Err(cx.err(format!(
            "the trees read feature {} but input X has {c} columns",
            l.max_feature
        )));
    }
    if double {
        let w: Vec<(u32, f64)> = l.weights.clone();
        let flat = Flat::build(&f64_trees(nodes, l), &w).map_err(|e| cx.err(e))?;
        Ok((Walker::F64(flat), true))
    } else {
        if nodes.values_f64 {
            return Err(cx.unsupported(
                "float64 thresholds (nodes_values_as_tensor) with a non-float64 input",
            ));
        }
        let ensemble = f32_ensemble(cx, nodes, l, k)?;
        let w: Vec<(u32, f32)> = ensemble
            .weights
            .iter()
            .map(|w| (w.target, w.value as f32))
            .collect();
        let flat = Flat::build(&f32_trees(&ensemble), &w).map_err(|e| cx.err(e))?;
        Ok((Walker::F32(flat), false))
    }
}

fn check_weight_precision(cx: &NodeCx<'_>, double: bool, name: &str, is_f64: bool) -> Result<()> {
    if is_f64 && !double {
        return Err(cx.unsupported(format!("float64 {name} with a non-float64 input")));
    }
    Ok(())
}

pub(super) fn classifier(cx: &NodeCx<'_>, ins: &[Option<In<'_>>]) -> Result<Compiled> {
    let x = input(cx, ins, 0)?;
    let labels = match (
        cx.ints("classlabels_int64s")?,
        cx.strings("classlabels_strings")?,
    ) {
        (Some(_), Some(_)) => {
            return Err(cx.attr_err(
                "classlabels_strings",
                "both classlabels_int64s and classlabels_strings are set",
            ));
        }
        (Some(v), None) if !v.is_empty() => Labels::Int(v.to_vec()),
        (_, Some(v)) if !v.is_empty() => Labels::Str(v.to_vec()),
        _ => {
            return Err(cx.attr_err(
                "classlabels_int64s",
                "no class labels (classlabels_int64s or classlabels_strings)",
            ));
        }
    };
    let k = match &labels {
        Labels::Int(v) => v.len(),
        Labels::Str(v) => v.len(),
    };
    if k < 2 {
        return Err(cx.unsupported("a classifier with a single class label"));
    }
    let nodes = parse_nodes(cx)?;
    let weights = parse_weights(cx, "class")?;
    let l = layout(cx, &nodes, &weights, "class_ids", k, false)?;
    let (walker, double) = walker(cx, x, &nodes, &l, k)?;
    check_weight_precision(cx, double, "class weights", weights.values_f64)?;
    let (base, base_f64) = cx.floats_or_tensor("base_values")?.unwrap_or_default();
    check_weight_precision(cx, double, "base values", base_f64)?;
    if k > 2 && base.len() > k {
        return Err(cx.attr_err(
            "base_values",
            format!("{} values for {k} classes", base.len()),
        ));
    }
    let classes: std::collections::HashSet<i64> = weights.ids.iter().copied().collect();
    // onnxruntime: `weight < 0` clears the flag (a NaN weight does not).
    let all_positive = !weights.values.iter().any(|w| *w < 0.0);
    let label_type = match labels {
        Labels::Int(_) => ElemType::Int64,
        Labels::Str(_) => ElemType::Bytes,
    };
    let kernel = TreeKernel {
        w32: l.weights.iter().map(|&(t, v)| (t, v as f32)).collect(),
        w64: l.weights.iter().map(|&(t, v)| (t, v)).collect(),
        b32: base.iter().map(|&b| b as f32).collect(),
        b64: base,
        walker,
        k,
        kind: Kind::Classifier {
            labels,
            binary_case: k == 2 && classes.len() == 1,
            all_positive,
        },
        post: post_transform(cx)?,
        max_feature: l.max_feature,
    };
    Ok(Compiled::kernel(
        kernel,
        vec![
            TypeInfo::new(label_type, vec![x.ty.batch_dim()]),
            TypeInfo::new(ElemType::Fp32, batch_by(&x.ty, Some(k))),
        ],
    ))
}

pub(super) fn regressor(cx: &NodeCx<'_>, ins: &[Option<In<'_>>]) -> Result<Compiled> {
    let x = input(cx, ins, 0)?;
    let n_targets = cx.int("n_targets")?.unwrap_or(1);
    let k = match usize::try_from(n_targets) {
        Ok(k) if k >= 1 => k,
        _ => return Err(cx.attr_err("n_targets", format!("{n_targets} targets"))),
    };
    let agg_name = cx.string_or("aggregate_function", "SUM")?;
    let agg = match agg_name.as_str() {
        "SUM" => Agg::Sum,
        "AVERAGE" => Agg::Average,
        "MIN" => Agg::Min,
        "MAX" => Agg::Max,
        other => {
            return Err(cx.attr_err(
                "aggregate_function",
                format!("`{other}` is not SUM, AVERAGE, MIN or MAX"),
            ));
        }
    };
    let nodes = parse_nodes(cx)?;
    let weights = parse_weights(cx, "target")?;
    let l = layout(cx, &nodes, &weights, "target_ids", k, k == 1)?;
    let (walker, double) = walker(cx, x, &nodes, &l, k)?;
    check_weight_precision(cx, double, "target weights", weights.values_f64)?;
    let (base, base_f64) = cx.floats_or_tensor("base_values")?.unwrap_or_default();
    check_weight_precision(cx, double, "base values", base_f64)?;
    let kernel = TreeKernel {
        w32: l.weights.iter().map(|&(t, v)| (t, v as f32)).collect(),
        w64: l.weights.iter().map(|&(t, v)| (t, v)).collect(),
        b32: base.iter().map(|&b| b as f32).collect(),
        b64: base,
        walker,
        k,
        kind: Kind::Regressor { agg },
        post: post_transform(cx)?,
        max_feature: l.max_feature,
    };
    Ok(Compiled::kernel(
        kernel,
        vec![TypeInfo::new(ElemType::Fp32, batch_by(&x.ty, Some(k)))],
    ))
}
