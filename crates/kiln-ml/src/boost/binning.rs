//! Binning for the booster: each feature's values mapped once to at most `max_bin` bins of
//! about equal row counts (categorical features: one bin per category), NaN to its own bin.

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
    // Columns are independent: the two halves at once.
    let half = x.cols / 2;
    let bin_range = |r: std::ops::Range<usize>| {
        r.map(|j| bin_column(x, j, max_bin, categorical, names))
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
    x: &Matrix,
    j: usize,
    max_bin: usize,
    categorical: &[usize],
    names: &[String],
) -> Result<Column> {
    let col = x.column(j);
    let mut sorted: Vec<f32> = col.iter().copied().filter(|v| !v.is_nan()).collect();
    // Equal keys under total_cmp are the same bits, so an unstable sort gives the same order.
    sorted.sort_unstable_by(f32::total_cmp);
    // Distinct values and how many rows hold each.
    let mut vals: Vec<f32> = Vec::new();
    let mut counts: Vec<usize> = Vec::new();
    for v in sorted {
        match vals.last() {
            Some(last) if *last == v => *counts.last_mut().expect("a count per value") += 1,
            _ => {
                vals.push(v);
                counts.push(1);
            }
        }
    }
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
