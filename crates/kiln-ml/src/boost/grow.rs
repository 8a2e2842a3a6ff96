//! Growing one tree: histograms (sparse rows, each feature's most frequent bin rebuilt from
//! the totals), split search, and the in-place partition of a leaf's rows.

use super::binning::{Binned, MISSING};
use super::{GbdtParams, join};
use crate::error::{MlError, Result};
use crate::trees::{Node, NodeMode};

#[derive(Clone, Copy, Default)]
pub(super) struct Bin {
    pub(super) g: f64,
    pub(super) h: f64,
    pub(super) n: u32,
}

impl Bin {
    #[inline]
    pub(super) fn add(&mut self, o: &Bin) {
        self.g += o.g;
        self.h += o.h;
        self.n += o.n;
    }

    #[inline]
    pub(super) fn sub(&mut self, o: &Bin) {
        self.g -= o.g;
        self.h -= o.h;
        self.n -= o.n;
    }
}

pub(super) struct Leaf {
    /// The leaf's rows are `order[begin..end]` of [`grow_tree`]'s row order.
    pub(super) begin: usize,
    pub(super) end: usize,
    /// The flat histogram over every feature (see [`Grower::offsets`]).
    pub(super) hist: Vec<Bin>,
    pub(super) g: f64,
    pub(super) h: f64,
    pub(super) depth: usize,
    pub(super) node: usize,
    pub(super) best: Option<Split>,
}

/// A split: rows go left when their bin is `<= bin` (numeric) or `== bin` (categorical).
#[derive(Clone, Copy)]
pub(super) struct Split {
    pub(super) feature: usize,
    pub(super) bin: u8,
    pub(super) categorical: bool,
    pub(super) missing_left: bool,
    pub(super) gain: f64,
    /// How many of the leaf's rows go left.
    pub(super) left_n: u32,
}

pub(super) struct Grower<'a> {
    pub(super) n_bins: Vec<usize>,
    pub(super) categorical: Vec<bool>,
    pub(super) p: &'a GbdtParams,
    /// Where each feature's slots start in a flat histogram (its bins, then its missing
    /// slot), and the flat length.
    pub(super) offsets: Vec<usize>,
    pub(super) total_slots: usize,
    /// Per feature, the flat slot of its most frequent bin (missing included). Rows are not
    /// stored under it: its sums are the leaf's totals minus the feature's other slots. With
    /// one-hot columns, mostly-zero and mostly-missing features this skips most of each row,
    /// the effect of LightGBM's exclusive feature bundling without bundles.
    pub(super) default_slot: Vec<usize>,
    /// Row-major sparse rows: row `r`'s flat slots outside the defaults are
    /// `row_slots[row_start[r]..row_start[r + 1]]`. Histograms are built row by row over
    /// these (one pass over a row's slots while its gradient and hessian are in registers).
    pub(super) row_start: Vec<u32>,
    pub(super) row_slots: Vec<u16>,
}

impl<'a> Grower<'a> {
    pub(super) fn new(binned: &'a Binned, p: &'a GbdtParams) -> Result<Self> {
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
    pub(super) fn sparse_histogram(&self, rows: &[u32], gh: &[[f64; 2]]) -> (Vec<Bin>, Bin) {
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
    pub(super) fn histogram(&self, rows: &[u32], gh: &[[f64; 2]]) -> (Vec<Bin>, Bin) {
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
    pub(super) fn fill_defaults(&self, hist: &mut [Bin], total: &Bin) {
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
    pub(super) fn split_leaf(
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
    pub(super) fn split_by(
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
    pub(super) fn feature_hist<'h>(&self, flat: &'h [Bin], j: usize) -> &'h [Bin] {
        &flat[self.offsets[j]..self.offsets[j] + self.n_bins[j] + 1]
    }

    pub(super) fn best_split(&self, leaf: &Leaf, features: &[usize]) -> Option<Split> {
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
    pub(super) fn score(&self, g: f64, h: f64) -> f64 {
        g * g / (h + self.p.lambda_l2)
    }

    /// The gain of sending `nl` rows with sums `gl`, `hl` left and the rest of `leaf` right,
    /// if both sides meet the leaf-size limits and the gain is worth a split.
    #[inline]
    pub(super) fn gain(&self, leaf: &Leaf, parent: f64, gl: f64, hl: f64, nl: u32) -> Option<f64> {
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
    pub(super) fn best_category(
        &self,
        leaf: &Leaf,
        parent: f64,
        j: usize,
        best: &mut Option<Split>,
    ) {
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

/// A leaf's node and its rows' range of the row order: `(node, begin, end)`.
pub(super) type LeafRange = (usize, usize, usize);

/// Grows one tree leaf-wise over the rows in `order`, which it reorders so that each leaf's
/// rows are a contiguous range (`scratch` is working space at least as long). Returns the
/// tree's nodes (leaves without weights yet), each leaf's node and range of `order`, and each
/// leaf's raw value `-G / (H + λ)` (indexed by node).
#[allow(clippy::too_many_arguments)]
pub(super) fn grow_tree(
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
pub(super) fn merge(
    ((mut ha, mut ta), (hb, tb)): ((Vec<Bin>, Bin), (Vec<Bin>, Bin)),
) -> (Vec<Bin>, Bin) {
    for (x, y) in ha.iter_mut().zip(&hb) {
        x.add(y);
    }
    ta.add(&tb);
    (ha, ta)
}

/// The gradient and hessian sums and the count of `rows`.
pub(super) fn sums(rows: &[u32], gh: &[[f64; 2]]) -> Bin {
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
pub(super) fn split_rows(
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
