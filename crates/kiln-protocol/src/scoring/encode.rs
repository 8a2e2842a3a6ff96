//! `{"predictions": …}`, records-oriented as MLflow writes it.

use std::fmt::Write;

use kiln_ml::{Tensor, TensorData};

use super::{Result, ScoringError};

/// Writes the model's outputs as `{"predictions": [...]}`, one entry per row (the first
/// dimension, which every output must share):
///
/// - one output of shape `[n]` or `[n, 1]`: a flat list of values;
/// - one output of shape `[n, k, …]`: a list of (nested) lists;
/// - several outputs: a list of objects `{output_name: value}`, each value a scalar or a
///   nested list as above.
///
/// Floats are written in their shortest exact form; NaN and infinities (which JSON lacks) as
/// `null`; bytes as (lossy UTF-8) strings.
pub fn encode_predictions(outputs: &[Tensor]) -> Result<Vec<u8>, ScoringError> {
    let Some(first) = outputs.first() else {
        return Err(ScoringError::Encode("the model returned no outputs".into()));
    };
    let mut rows = None;
    for t in outputs {
        let n = *t.shape.first().ok_or_else(|| {
            ScoringError::Encode(format!("output `{}` is a scalar, not a batch", t.name))
        })?;
        let size = t
            .shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d));
        if size != Some(t.data.len()) {
            return Err(ScoringError::Encode(format!(
                "output `{}` has shape {:?} but {} values",
                t.name,
                t.shape,
                t.data.len()
            )));
        }
        match rows {
            Some(rows) if rows != n => {
                return Err(ScoringError::Encode(format!(
                    "outputs `{}` and `{}` have {rows} and {n} rows",
                    first.name, t.name
                )));
            }
            _ => rows = Some(n),
        }
    }
    let rows = rows.unwrap_or(0);
    let mut out = String::with_capacity(16 + rows * 8 * outputs.len());
    let fail = |_| ScoringError::Encode("formatting failed".into());
    out.push_str("{\"predictions\":[");
    for r in 0..rows {
        if r > 0 {
            out.push(',');
        }
        if let [only] = outputs {
            write_row(&mut out, only, r).map_err(fail)?;
        } else {
            out.push('{');
            for (i, t) in outputs.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(
                    &serde_json::to_string(&t.name).map_err(|e| {
                        ScoringError::Encode(format!("output name `{}`: {e}", t.name))
                    })?,
                );
                out.push(':');
                write_row(&mut out, t, r).map_err(fail)?;
            }
            out.push('}');
        }
    }
    out.push_str("]}");
    Ok(out.into_bytes())
}

/// Row `r` of a tensor: a scalar when a row holds one value, else nested lists.
fn write_row(out: &mut String, t: &Tensor, r: usize) -> std::fmt::Result {
    let inner = &t.shape[1..];
    let per = product(inner);
    if inner.is_empty() || inner == [1] {
        write_elem(out, &t.data, r * per)
    } else {
        write_nested(out, &t.data, inner, r * per)
    }
}

fn write_nested(
    out: &mut String,
    data: &TensorData,
    dims: &[usize],
    start: usize,
) -> std::fmt::Result {
    let Some((&len, rest)) = dims.split_first() else {
        return write_elem(out, data, start);
    };
    let stride = product(rest);
    out.push('[');
    for i in 0..len {
        if i > 0 {
            out.push(',');
        }
        write_nested(out, data, rest, start + i * stride)?;
    }
    out.push(']');
    Ok(())
}

fn write_elem(out: &mut String, data: &TensorData, i: usize) -> std::fmt::Result {
    match data {
        TensorData::Bool(v) => out.push_str(if v[i] { "true" } else { "false" }),
        TensorData::Int32(v) => write!(out, "{}", v[i])?,
        TensorData::Int64(v) => write!(out, "{}", v[i])?,
        TensorData::Fp32(v) if v[i].is_finite() => write!(out, "{:?}", v[i])?,
        TensorData::Fp64(v) if v[i].is_finite() => write!(out, "{:?}", v[i])?,
        TensorData::Fp32(_) | TensorData::Fp64(_) => out.push_str("null"),
        TensorData::Bytes(v) => {
            let text = String::from_utf8_lossy(&v[i]);
            out.push_str(&serde_json::to_string(&text).map_err(|_| std::fmt::Error)?);
        }
    }
    Ok(())
}

/// A product of dimensions that saturates instead of overflowing (a zero still gives zero).
fn product(dims: &[usize]) -> usize {
    dims.iter().fold(1usize, |acc, &d| acc.saturating_mul(d))
}
