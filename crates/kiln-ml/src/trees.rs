//! Tree ensembles with ONNX `TreeEnsemble*` semantics: each node compares one feature with a
//! threshold under a mode, missing values (NaN) follow a per-node direction, and a leaf adds
//! weights to one or more targets. Native gradient-boosted trees and compiled ONNX tree
//! ensembles (scikit-learn forests and boosting via skl2onnx) are both executed here.

use serde::{Deserialize, Serialize};

use crate::error::{MlError, Result};
use crate::matrix::Matrix;

/// How a split node compares `x[feature]` with its threshold; `true` takes the true branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum NodeMode {
    BranchLeq,
    BranchLt,
    BranchGte,
    BranchGt,
    BranchEq,
    BranchNeq,
}

impl NodeMode {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "BRANCH_LEQ" => NodeMode::BranchLeq,
            "BRANCH_LT" => NodeMode::BranchLt,
            "BRANCH_GTE" => NodeMode::BranchGte,
            "BRANCH_GT" => NodeMode::BranchGt,
            "BRANCH_EQ" => NodeMode::BranchEq,
            "BRANCH_NEQ" => NodeMode::BranchNeq,
            _ => return None,
        })
    }

    #[inline]
    fn test(self, x: f32, t: f32) -> bool {
        match self {
            NodeMode::BranchLeq => x <= t,
            NodeMode::BranchLt => x < t,
            NodeMode::BranchGte => x >= t,
            NodeMode::BranchGt => x > t,
            NodeMode::BranchEq => x == t,
            NodeMode::BranchNeq => x != t,
        }
    }
}

/// One node. A leaf has `leaf = true` and owns `weights[weight_start..weight_end]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Node {
    pub leaf: bool,
    pub feature: u32,
    pub threshold: f32,
    pub mode: NodeMode,
    /// Where a missing value (NaN) goes: the true branch when set.
    pub missing_true: bool,
    pub true_child: u32,
    pub false_child: u32,
    pub weight_start: u32,
    pub weight_end: u32,
}

impl Node {
    pub fn split(feature: u32, threshold: f32, mode: NodeMode, missing_true: bool) -> Self {
        Node {
            leaf: false,
            feature,
            threshold,
            mode,
            missing_true,
            true_child: 0,
            false_child: 0,
            weight_start: 0,
            weight_end: 0,
        }
    }

    pub fn leaf(weight_start: u32, weight_end: u32) -> Self {
        Node {
            leaf: true,
            feature: 0,
            threshold: 0.0,
            mode: NodeMode::BranchLeq,
            missing_true: false,
            true_child: 0,
            false_child: 0,
            weight_start,
            weight_end,
        }
    }
}

/// A leaf's contribution to one target (class or regression output).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LeafWeight {
    pub target: u32,
    pub value: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tree {
    /// Node 0 is the root.
    pub nodes: Vec<Node>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Aggregate {
    #[default]
    Sum,
    Average,
    Min,
    Max,
}

impl Aggregate {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "SUM" => Aggregate::Sum,
            "AVERAGE" => Aggregate::Average,
            "MIN" => Aggregate::Min,
            "MAX" => Aggregate::Max,
            _ => return None,
        })
    }
}

/// Raw scores of a tree ensemble: `base_values[t] + aggregate over trees of leaf weights`.
/// Post transforms and class labels are the caller's (see `native` and the ONNX compiler).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TreeEnsemble {
    pub n_features: usize,
    pub n_targets: usize,
    pub trees: Vec<Tree>,
    pub weights: Vec<LeafWeight>,
    pub aggregate: Aggregate,
    /// One per target, or empty for zeros.
    pub base_values: Vec<f64>,
}

impl TreeEnsemble {
    /// Checks every index so that scoring cannot go out of bounds or loop.
    pub fn validate(&self) -> Result<()> {
        if !self.base_values.is_empty() && self.base_values.len() != self.n_targets {
            return Err(MlError::InvalidModel(format!(
                "{} base values for {} targets",
                self.base_values.len(),
                self.n_targets
            )));
        }
        for (t, tree) in self.trees.iter().enumerate() {
            if tree.nodes.is_empty() {
                return Err(MlError::InvalidModel(format!("tree {t} has no nodes")));
            }
            for (i, n) in tree.nodes.iter().enumerate() {
                if n.leaf {
                    if n.weight_start > n.weight_end || n.weight_end as usize > self.weights.len() {
                        return Err(MlError::InvalidModel(format!(
                            "tree {t} leaf {i}: weights {}..{} out of {}",
                            n.weight_start,
                            n.weight_end,
                            self.weights.len()
                        )));
                    }
                } else {
                    // Children must come after their parent: no cycles.
                    for c in [n.true_child, n.false_child] {
                        if c as usize <= i || c as usize >= tree.nodes.len() {
                            return Err(MlError::InvalidModel(format!(
                                "tree {t} node {i}: child {c} is not a later node"
                            )));
                        }
                    }
                    if n.feature as usize >= self.n_features {
                        return Err(MlError::InvalidModel(format!(
                            "tree {t} node {i}: feature {} of {}",
                            n.feature, self.n_features
                        )));
                    }
                }
            }
        }
        if let Some(w) = self
            .weights
            .iter()
            .find(|w| w.target as usize >= self.n_targets)
        {
            return Err(MlError::InvalidModel(format!(
                "leaf weight for target {} of {}",
                w.target, self.n_targets
            )));
        }
        Ok(())
    }

    /// The leaf of `tree` that `row` reaches.
    #[inline]
    pub fn leaf_of(tree: &Tree, row: &[f32]) -> usize {
        let mut i = 0usize;
        loop {
            let n = &tree.nodes[i];
            if n.leaf {
                return i;
            }
            let x = row[n.feature as usize];
            let go_true = if x.is_nan() {
                n.missing_true
            } else {
                n.mode.test(x, n.threshold)
            };
            i = if go_true { n.true_child } else { n.false_child } as usize;
        }
    }

    /// Raw scores, `rows × n_targets`, row-major.
    pub fn scores(&self, x: &Matrix) -> Result<Vec<f64>> {
        if x.cols != self.n_features {
            return Err(MlError::BadInput(format!(
                "the model takes {} features, the input has {}",
                self.n_features, x.cols
            )));
        }
        let k = self.n_targets;
        let mut out = vec![0.0f64; x.rows * k];
        let mut seen = vec![false; k];
        for r in 0..x.rows {
            let row = x.row(r);
            let acc = &mut out[r * k..(r + 1) * k];
            match self.aggregate {
                Aggregate::Sum | Aggregate::Average => {
                    for tree in &self.trees {
                        let leaf = &tree.nodes[Self::leaf_of(tree, row)];
                        for w in &self.weights[leaf.weight_start as usize..leaf.weight_end as usize]
                        {
                            acc[w.target as usize] += w.value;
                        }
                    }
                    if self.aggregate == Aggregate::Average && !self.trees.is_empty() {
                        let n = self.trees.len() as f64;
                        acc.iter_mut().for_each(|v| *v /= n);
                    }
                }
                Aggregate::Min | Aggregate::Max => {
                    seen.iter_mut().for_each(|s| *s = false);
                    for tree in &self.trees {
                        let leaf = &tree.nodes[Self::leaf_of(tree, row)];
                        for w in &self.weights[leaf.weight_start as usize..leaf.weight_end as usize]
                        {
                            let t = w.target as usize;
                            let better = match self.aggregate {
                                Aggregate::Min => w.value < acc[t],
                                _ => w.value > acc[t],
                            };
                            if !seen[t] || better {
                                acc[t] = w.value;
                                seen[t] = true;
                            }
                        }
                    }
                }
            }
            if !self.base_values.is_empty() {
                for (a, b) in acc.iter_mut().zip(&self.base_values) {
                    *a += b;
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// x0 <= 0.5 ? (x1 < 2 ? 1 : 2) : 3, NaN in x0 goes right.
    fn stump() -> TreeEnsemble {
        let mut root = Node::split(0, 0.5, NodeMode::BranchLeq, false);
        root.true_child = 1;
        root.false_child = 4;
        let mut inner = Node::split(1, 2.0, NodeMode::BranchLt, true);
        inner.true_child = 2;
        inner.false_child = 3;
        TreeEnsemble {
            n_features: 2,
            n_targets: 1,
            trees: vec![Tree {
                nodes: vec![
                    root,
                    inner,
                    Node::leaf(0, 1),
                    Node::leaf(1, 2),
                    Node::leaf(2, 3),
                ],
            }],
            weights: vec![
                LeafWeight {
                    target: 0,
                    value: 1.0,
                },
                LeafWeight {
                    target: 0,
                    value: 2.0,
                },
                LeafWeight {
                    target: 0,
                    value: 3.0,
                },
            ],
            aggregate: Aggregate::Sum,
            base_values: vec![10.0],
        }
    }

    #[test]
    fn scores_follow_modes_and_missing_directions() {
        let e = stump();
        e.validate().unwrap();
        let x = Matrix::new(4, 2, vec![0.0, 1.0, 0.5, 2.0, 0.6, 0.0, f32::NAN, f32::NAN]).unwrap();
        assert_eq!(e.scores(&x).unwrap(), vec![11.0, 12.0, 13.0, 13.0]);
        let x = Matrix::new(1, 2, vec![0.0, f32::NAN]).unwrap();
        assert_eq!(e.scores(&x).unwrap(), vec![11.0]);
    }

    #[test]
    fn validate_rejects_cycles_and_bad_indices() {
        let mut e = stump();
        e.trees[0].nodes[1].true_child = 0;
        assert!(e.validate().is_err());
        let mut e = stump();
        e.trees[0].nodes[0].feature = 7;
        assert!(e.validate().is_err());
        let mut e = stump();
        e.weights[0].target = 3;
        assert!(e.validate().is_err());
    }

    #[test]
    fn wrong_feature_count_is_bad_input() {
        let x = Matrix::new(1, 3, vec![0.0; 3]).unwrap();
        assert!(matches!(stump().scores(&x), Err(MlError::BadInput(_))));
    }
}
