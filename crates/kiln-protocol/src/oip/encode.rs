//! Encoding infer responses: JSON written straight into the body (numbers through
//! serde_json's formatter, no `Value` tree), then the binary outputs, if any.

use std::io::{self, Write};

use kiln_ml::{Tensor, TensorData};
use serde_json::ser::{CompactFormatter, Formatter};

use super::{InferRequest, OipError, clip};

/// Encodes a response: JSON, or a JSON header followed by binary outputs when the request
/// asked for them (per output `binary_data: true`, or request-level `binary_data_output`).
/// Returns the body and, when binary, the header length to send as
/// `Inference-Header-Content-Length`. Outputs are those the request named, in its order,
/// or all of `outputs` when it named none.
pub fn encode_response(
    model_name: &str,
    model_version: Option<&str>,
    id: Option<&str>,
    outputs: &[Tensor],
    req: &InferRequest,
) -> Result<(Vec<u8>, Option<usize>), OipError> {
    let selected: Vec<(&Tensor, bool)> = if req.outputs.is_empty() {
        outputs
            .iter()
            .map(|t| (t, req.binary_output_default))
            .collect()
    } else {
        let mut v = Vec::with_capacity(req.outputs.len());
        for (i, r) in req.outputs.iter().enumerate() {
            let Some(t) = outputs.iter().find(|t| t.name == r.name) else {
                let names: Vec<&str> = outputs.iter().map(|t| t.name.as_str()).collect();
                return Err(OipError::Output(format!(
                    "unknown output `{}` (outputs[{i}]); the model's outputs are: {}",
                    clip(&r.name),
                    names.join(", ")
                )));
            };
            v.push((t, r.binary.unwrap_or(req.binary_output_default)));
        }
        v
    };

    let mut cap = 128 + model_name.len();
    let mut binary_sizes = Vec::with_capacity(selected.len());
    for &(t, bin) in &selected {
        let count = t.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if count != Some(t.data.len()) {
            return Err(OipError::Encode(format!(
                "output `{}` has shape {:?} but {} values",
                t.name,
                t.shape,
                t.data.len()
            )));
        }
        let size = if bin { Some(binary_size(t)?) } else { None };
        cap = cap
            .saturating_add(64 + t.name.len())
            .saturating_add(match size {
                Some(n) => n,
                None => t.data.len().saturating_mul(12),
            });
        binary_sizes.push(size);
    }

    let mut buf = Vec::with_capacity(cap.min(1 << 30));
    write_header(
        &mut buf,
        model_name,
        model_version,
        id,
        &selected,
        &binary_sizes,
    )
    .map_err(|e| OipError::Encode(format!("writing the response failed: {e}")))??;
    if binary_sizes.iter().all(Option::is_none) {
        return Ok((buf, None));
    }
    let header_len = buf.len();
    for ((t, _), size) in selected.iter().zip(&binary_sizes) {
        if size.is_some() {
            write_binary(&mut buf, &t.data);
        }
    }
    Ok((buf, Some(header_len)))
}

fn binary_size(t: &Tensor) -> Result<usize, OipError> {
    let n = t.data.len();
    let size = match &t.data {
        TensorData::Bool(_) => Some(n),
        TensorData::Int32(_) | TensorData::Fp32(_) => n.checked_mul(4),
        TensorData::Int64(_) | TensorData::Fp64(_) => n.checked_mul(8),
        TensorData::Bytes(v) => {
            let mut total = 0usize;
            for (i, e) in v.iter().enumerate() {
                if u32::try_from(e.len()).is_err() {
                    return Err(OipError::Encode(format!(
                        "output `{}` element {i} is {} bytes, more than BYTES can carry",
                        t.name,
                        e.len()
                    )));
                }
                total = total.saturating_add(4 + e.len());
            }
            Some(total)
        }
    };
    size.ok_or_else(|| OipError::Encode(format!("output `{}` is too large", t.name)))
}

/// Writes the JSON part. The outer result is I/O (never fails on a Vec); the inner one is a
/// BYTES output that is not UTF-8 and so cannot be JSON.
fn write_header(
    w: &mut Vec<u8>,
    model_name: &str,
    model_version: Option<&str>,
    id: Option<&str>,
    selected: &[(&Tensor, bool)],
    binary_sizes: &[Option<usize>],
) -> io::Result<Result<(), OipError>> {
    w.write_all(b"{\"model_name\":")?;
    write_str(w, model_name)?;
    if let Some(v) = model_version {
        w.write_all(b",\"model_version\":")?;
        write_str(w, v)?;
    }
    if let Some(id) = id {
        w.write_all(b",\"id\":")?;
        write_str(w, id)?;
    }
    w.write_all(b",\"outputs\":[")?;
    for (k, ((t, _), size)) in selected.iter().zip(binary_sizes).enumerate() {
        if k > 0 {
            w.write_all(b",")?;
        }
        w.write_all(b"{\"name\":")?;
        write_str(w, &t.name)?;
        write!(
            w,
            ",\"datatype\":\"{}\",\"shape\":[",
            t.elem_type().as_oip()
        )?;
        let mut f = CompactFormatter;
        for (j, &d) in t.shape.iter().enumerate() {
            if j > 0 {
                w.write_all(b",")?;
            }
            f.write_u64(w, d as u64)?;
        }
        w.write_all(b"]")?;
        if let Some(n) = size {
            write!(w, ",\"parameters\":{{\"binary_data_size\":{n}}}}}")?;
            continue;
        }
        w.write_all(b",\"data\":[")?;
        if let Err(e) = write_data(w, t)? {
            return Ok(Err(e));
        }
        w.write_all(b"]}")?;
    }
    w.write_all(b"]}")?;
    Ok(Ok(()))
}

fn write_str(w: &mut Vec<u8>, s: &str) -> io::Result<()> {
    serde_json::to_writer(w, s).map_err(io::Error::other)
}

/// Writes a list's elements separated by commas.
fn list<T: Copy>(
    w: &mut Vec<u8>,
    v: &[T],
    mut one: impl FnMut(&mut Vec<u8>, T) -> io::Result<()>,
) -> io::Result<()> {
    for (i, &x) in v.iter().enumerate() {
        if i > 0 {
            w.push(b',');
        }
        one(w, x)?;
    }
    Ok(())
}

fn write_data(w: &mut Vec<u8>, t: &Tensor) -> io::Result<Result<(), OipError>> {
    let mut f = CompactFormatter;
    match &t.data {
        TensorData::Bool(v) => list(w, v, |w, x| f.write_bool(w, x))?,
        TensorData::Int32(v) => list(w, v, |w, x| f.write_i32(w, x))?,
        TensorData::Int64(v) => list(w, v, |w, x| f.write_i64(w, x))?,
        TensorData::Fp32(v) => list(w, v, |w, x| {
            if x.is_finite() {
                f.write_f32(w, x)
            } else {
                w.write_all(b"null")
            }
        })?,
        TensorData::Fp64(v) => list(w, v, |w, x| {
            if x.is_finite() {
                f.write_f64(w, x)
            } else {
                w.write_all(b"null")
            }
        })?,
        TensorData::Bytes(v) => {
            for (i, e) in v.iter().enumerate() {
                let Ok(s) = std::str::from_utf8(e) else {
                    return Ok(Err(OipError::Output(format!(
                        "output `{}` element {i} is not UTF-8 text, which JSON cannot carry; \
                         request it with parameters.binary_data: true",
                        t.name
                    ))));
                };
                if i > 0 {
                    w.push(b',');
                }
                write_str(w, s)?;
            }
        }
    }
    Ok(Ok(()))
}

fn write_binary(w: &mut Vec<u8>, data: &TensorData) {
    match data {
        TensorData::Bool(v) => w.extend(v.iter().map(|&b| u8::from(b))),
        TensorData::Int32(v) => v.iter().for_each(|x| w.extend_from_slice(&x.to_le_bytes())),
        TensorData::Int64(v) => v.iter().for_each(|x| w.extend_from_slice(&x.to_le_bytes())),
        TensorData::Fp32(v) => v.iter().for_each(|x| w.extend_from_slice(&x.to_le_bytes())),
        TensorData::Fp64(v) => v.iter().for_each(|x| w.extend_from_slice(&x.to_le_bytes())),
        TensorData::Bytes(v) => {
            for e in v {
                // Lengths were checked to fit u32 in `binary_size`.
                let n = u32::try_from(e.len()).unwrap_or(u32::MAX);
                w.extend_from_slice(&n.to_le_bytes());
                w.extend_from_slice(e);
            }
        }
    }
}
