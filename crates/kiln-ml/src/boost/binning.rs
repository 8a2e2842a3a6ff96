//! Binning for the booster: each feature's values mapped once to at most `max_bin` bins of
//! about equal row counts (categorical features: one bin per category), NaN to its own bin.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::error::{MlError, Result};
use crate::matrix::Matrix;

/// The missing-value bin (values get bins `0..n_bins`).
pub(super) const MISSING: u8 = 255;

pub(super) struct Binned {
    /// Per feature: the upper edge of each bin but the last (`v <= edges[b]` ⇔ bin ≤ b).
    pub(super) edges: Vec<Vec<f32>>,
    /// Column-major bins, `MISSING` for NaN.
    pub(super) bins: Vec<Vec<u8>>,
    /// Per feature: for a categorical one, the code of each bin (one bin per category).
    pub(super) categories: Vec<Option<Vec<f32>>>,
}

/// `categorical` are the categorical columns, `names` their names (for messages; may be
/// shorter).
pub(super) fn bin_features(
    x: &Matrix,
    max_bin: usize,
    categorical: &[usize],
    names: &[String],
) -> Result<Binned> {
    // One pass over the row-major matrix gives every column (taking one column at a time
    // would read the whole matrix once per feature).
    let mut columns = vec![vec![0.0f32; x.rows]; x.cols];
    for i in 0..x.rows {
        for (col, v) in columns.iter_mut().zip(x.row(i)) {
            col[i] = *v;
        }
    }
    // Columns are independent: the two halves at once.
    let half = x.cols / 2;
    let bin_range = |r: std::ops::Range<usize>| {
        r.map(|j| bin_column(&columns[j], j, max_bin, categorical, names))
            .collect::<Result<Vec<_>>>()
    };
    let (a, b) = super::join(|| bin_range(0..half), || bin_range(half..x.cols));
    let mut out = Binned {
        edges: Vec::with_capacity(x.cols),
        bins: Vec::with_capacity(x.cols),
        categories: Vec::with_capacity(x.cols),
    };
    for (e, b, c) in a?.into_iter().chain(b?) {
        out.edges.push(e);
        out.bins.push(b);
        out.categories.push(c);
    }
    Ok(out)
}

type Column = (Vec<f32>, Vec<u8>, Option<Vec<f32>>);

/// Feature `j`'s edges, bins and (for a categorical one) category codes.
fn bin_column(
    col: &[f32],
    j: usize,
    max_bin: usize,
    categorical: &[usize],
    names: &[String],
) -> Result<Column> {
    let (vals, counts) = distinct_values(col);
    let mut category = None;
    if let Some(pos) = categorical.iter().position(|c| *c == j) {
        let name = names
            .get(pos)
            .map_or_else(|| format!("{j}"), |n| format!("`{n}`"));
        if let Some(v) = vals.iter().find(|v| v.fract() != 0.0 || v.is_infinite()) {
            return Err(MlError::Training(format!(
                "gbdt: categorical feature {name} holds {v}, not a category code (a whole \
                 number, as an `ordinal` encoding gives)"
            )));
        }
        if vals.len() > max_bin {
            return Err(MlError::Training(format!(
                "gbdt: categorical feature {name} has {} categories; at most max_bin = {max_bin}",
                vals.len()
            )));
        }
        category = Some(vals.clone());
    }
    let e: Vec<f32> = if vals.len() <= max_bin {
        vals.windows(2).map(|w| midpoint(w[0], w[1])).collect()
    } else {
        count_edges(&vals, &counts, max_bin)
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
    Ok((e, b, category))
}

/// The distinct values of `col` (NaN left out, -0 counted as 0) in increasing order, and how
/// many rows hold each. Counted in a hash table while there are few (most features), sorted
/// otherwise.
pub(super) fn distinct_values(col: &[f32]) -> (Vec<f32>, Vec<usize>) {
    const HASHED: usize = 4096;
    let key = |v: f32| if v == 0.0 { 0u32 } else { v.to_bits() };
    let mut seen: HashMap<u32, usize, BuildHasherDefault<BitsHasher>> = HashMap::default();
    let mut few = true;
    for v in col.iter().filter(|v| !v.is_nan()) {
        *seen.entry(key(*v)).or_insert(0) += 1;
        if seen.len() > HASHED {
            few = false;
            break;
        }
    }
    if few {
        let mut pairs: Vec<(f32, usize)> = seen
            .into_iter()
            .map(|(k, c)| (f32::from_bits(k), c))
            .collect();
        pairs.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
        return pairs.into_iter().unzip();
    }
    let mut sorted: Vec<f32> = col
        .iter()
        .filter(|v| !v.is_nan())
        .map(|v| f32::from_bits(key(*v)))
        .collect();
    // Equal keys under total_cmp are the same bits, so an unstable sort gives the same order.
    sorted.sort_unstable_by(f32::total_cmp);
    let mut vals: Vec<f32> = Vec::new();
    let mut counts: Vec<usize> = Vec::new();
    for v in sorted {
        match vals.last() {
            Some(last) if last.to_bits() == v.to_bits() => {
                *counts.last_mut().expect("a count per value") += 1
            }
            _ => {
                vals.push(v);
                counts.push(1);
            }
        }
    }
    (vals, counts)
}

/// A hasher for f32 bit patterns: one multiplication moves every input bit into the high
/// bits the hash table looks at.
#[derive(Default)]
struct BitsHasher(u64);

impl Hasher for BitsHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u32(&mut self, v: u32) {
        self.0 = (u64::from(v) ^ 0x5851_f42d_4c95_7f2d).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// Bin edges for more distinct values than bins: bins of about equal row counts (quantiles of
/// the data, not of the distinct values, so that dense ranges get fine splits), a value that
/// alone holds a bin's share of rows getting a bin of its own.
pub(super) fn count_edges(vals: &[f32], counts: &[usize], max_bin: usize) -> Vec<f32> {
    let mut remaining: usize = counts.iter().sum();
    let mut bins_left = max_bin;
    let mut edges = Vec::with_capacity(max_bin - 1);
    let mut acc = 0usize;
    for i in 0..vals.len() - 1 {
        acc += counts[i];
        let target = remaining as f64 / bins_left as f64;
        if acc as f64 >= target || counts[i + 1] as f64 >= target {
            edges.push(midpoint(vals[i], vals[i + 1]));
            remaining -= acc;
            acc = 0;
            bins_left -= 1;
            if bins_left == 1 {
                break;
            }
        }
    }
    edges
}

/// A threshold between two values, in f32, with `a <= t < b`.
fn midpoint(a: f32, b: f32) -> f32 {
    let m = ((f64::from(a) + f64::from(b)) / 2.0) as f32;
    if m >= b { a } else { m }
}
