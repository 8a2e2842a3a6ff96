//! Request bodies generated from a model's OIP v2 metadata (`GET /v2/models/NAME`): random
//! values of each input's datatype, in the shape the metadata gives with the batch dimension
//! (`-1` first) set to the number of rows, encoded as
//!
//! - OIP JSON: `{"inputs": [{"name", "datatype", "shape", "data": [...]}]}`;
//! - OIP binary tensors (`--binary`): a JSON header whose inputs carry
//!   `"parameters": {"binary_data_size": N}`, then each input's raw little-endian bytes,
//!   with the header's length in `Inference-Header-Content-Length` (as `tritonclient` sends);
//! - MLflow `/invocations`: `{"inputs": [[...], ...]}` (one input, nested lists in its
//!   shape) or `{"inputs": {"NAME": [[...]], ...}}` (several).
//!
//! Also [`rows_in_body`]: how many rows a given body holds, for rows per second.

use rand::Rng;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{LoadtestError, Result};

/// A model's metadata, as far as bodies need it.
#[derive(Debug, Clone, Deserialize)]
pub struct ModelMetadata {
    #[serde(default)]
    pub name: String,
    pub inputs: Vec<TensorMetadata>,
}

/// One input: `shape` uses `-1` for a free dimension (the first is the batch).
#[derive(Debug, Clone, Deserialize)]
pub struct TensorMetadata {
    pub name: String,
    pub datatype: String,
    pub shape: Vec<i64>,
}

/// A generated body and how it is sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    pub bytes: Vec<u8>,
    pub content_type: &'static str,
    /// `Inference-Header-Content-Length` for binary OIP bodies.
    pub header_length: Option<usize>,
    pub rows: usize,
}

/// How generated bodies are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    OipJson,
    OipBinary,
    Invocations,
}

/// Random values of one datatype.
#[derive(Debug, Clone, PartialEq)]
enum Values {
    Float(Vec<f32>),
    Int(Vec<i64>),
    Uint(Vec<u64>),
    Bool(Vec<bool>),
    Bytes(Vec<String>),
}

impl Values {
    fn random(datatype: &str, n: usize, rng: &mut impl Rng) -> Result<Values> {
        Ok(match datatype {
            "FP16" | "FP32" | "FP64" => Values::Float((0..n).map(|_| rng.random()).collect()),
            "INT8" | "INT16" | "INT32" | "INT64" => {
                Values::Int((0..n).map(|_| rng.random_range(0..100)).collect())
            }
            "UINT8" | "UINT16" | "UINT32" | "UINT64" => {
                Values::Uint((0..n).map(|_| rng.random_range(0..100)).collect())
            }
            "BOOL" => Values::Bool((0..n).map(|_| rng.random()).collect()),
            "BYTES" => Values::Bytes(
                (0..n)
                    .map(|_| format!("v{}", rng.random_range(0..1000)))
                    .collect(),
            ),
            other => {
                return Err(LoadtestError::Body(format!(
                    "datatype `{other}` is not an OIP datatype"
                )));
            }
        })
    }

    fn json(&self, i: usize) -> Value {
        match self {
            // Through f64 as its shortest decimal, so 0.1f32 is written 0.1.
            Values::Float(v) => json!(v[i].to_string().parse::<f64>().unwrap_or(0.0)),
            Values::Int(v) => json!(v[i]),
            Values::Uint(v) => json!(v[i]),
            Values::Bool(v) => json!(v[i]),
            Values::Bytes(v) => json!(v[i]),
        }
    }

    fn len(&self) -> usize {
        match self {
            Values::Float(v) => v.len(),
            Values::Int(v) => v.len(),
            Values::Uint(v) => v.len(),
            Values::Bool(v) => v.len(),
            Values::Bytes(v) => v.len(),
        }
    }

    fn flat_json(&self) -> Value {
        Value::Array((0..self.len()).map(|i| self.json(i)).collect())
    }

    /// Raw little-endian bytes of the binary tensor extension; BYTES elements are each a
    /// 4-byte length then the bytes.
    fn raw(&self, datatype: &str) -> Vec<u8> {
        let mut out = vec![];
        match self {
            Values::Float(v) => {
                for &x in v {
                    match datatype {
                        "FP16" => out.extend_from_slice(&f16_bits(x).to_le_bytes()),
                        "FP64" => out.extend_from_slice(&f64::from(x).to_le_bytes()),
                        _ => out.extend_from_slice(&x.to_le_bytes()),
                    }
                }
            }
            Values::Int(v) => {
                for &x in v {
                    let b = x.to_le_bytes();
                    out.extend_from_slice(&b[..int_width(datatype)]);
                }
            }
            Values::Uint(v) => {
                for &x in v {
                    let b = x.to_le_bytes();
                    out.extend_from_slice(&b[..int_width(datatype)]);
                }
            }
            Values::Bool(v) => out.extend(v.iter().map(|&b| u8::from(b))),
            Values::Bytes(v) => {
                for s in v {
                    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
                    out.extend_from_slice(s.as_bytes());
                }
            }
        }
        out
    }
}

fn int_width(datatype: &str) -> usize {
    match datatype {
        "INT8" | "UINT8" => 1,
        "INT16" | "UINT16" => 2,
        "INT32" | "UINT32" => 4,
        _ => 8,
    }
}

/// IEEE half precision of a float in [0, 1) (what [`Values::random`] makes): exponent
/// rebiased, mantissa truncated, tiny values flushed to zero.
fn f16_bits(x: f32) -> u16 {
    let b = x.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let exp = ((b >> 23) & 0xff) as i32 - 127 + 15;
    let mant = ((b >> 13) & 0x3ff) as u16;
    if exp <= 0 {
        sign
    } else if exp >= 31 {
        sign | 0x7c00
    } else {
        sign | ((exp as u16) << 10) | mant
    }
}

/// The concrete shape of an input for `rows` rows: a free first dimension is the rows, any
/// other free dimension 1. Returns the shape and the rows it holds (a fixed first
/// dimension is its own row count; a scalar is one row).
pub fn concrete_shape(shape: &[i64], rows: usize) -> Result<(Vec<usize>, usize)> {
    let mut out = Vec::with_capacity(shape.len());
    for (i, &d) in shape.iter().enumerate() {
        out.push(match d {
            -1 if i == 0 => rows,
            -1 => 1,
            d if d >= 0 => d as usize,
            d => {
                return Err(LoadtestError::Body(format!(
                    "dimension {i} of the shape is {d}; expected -1 or a size"
                )));
            }
        });
    }
    let held = out.first().copied().unwrap_or(1);
    if out.iter().product::<usize>() > 100_000_000 {
        return Err(LoadtestError::Body(format!(
            "shape {out:?} has more than 100,000,000 elements"
        )));
    }
    Ok((out, held))
}

/// Nests a flat list into `shape` (row-major).
fn nest(values: &Values, shape: &[usize], offset: usize) -> Value {
    match shape {
        [] => values.json(offset),
        [n] => Value::Array((0..*n).map(|i| values.json(offset + i)).collect()),
        [n, rest @ ..] => {
            let stride: usize = rest.iter().product();
            Value::Array(
                (0..*n)
                    .map(|i| nest(values, rest, offset + i * stride))
                    .collect(),
            )
        }
    }
}

/// A body of `rows` rows of random values for every input of `meta`.
pub fn generate(
    meta: &ModelMetadata,
    rows: usize,
    encoding: Encoding,
    rng: &mut impl Rng,
) -> Result<Generated> {
    if meta.inputs.is_empty() {
        return Err(LoadtestError::Body(format!(
            "model `{}` declares no inputs",
            meta.name
        )));
    }
    let mut tensors = vec![];
    let mut held_rows = None;
    for input in &meta.inputs {
        let (shape, held) = concrete_shape(&input.shape, rows)
            .map_err(|e| LoadtestError::Body(format!("input `{}`: {e}", input.name)))?;
        held_rows.get_or_insert(held);
        let values = Values::random(&input.datatype, shape.iter().product(), rng)?;
        tensors.push((input, shape, values));
    }
    let rows = held_rows.unwrap_or(rows);
    Ok(match encoding {
        Encoding::OipJson => {
            let inputs: Vec<Value> = tensors
                .iter()
                .map(|(input, shape, values)| {
                    json!({"name": input.name, "datatype": input.datatype, "shape": shape,
                           "data": values.flat_json()})
                })
                .collect();
            Generated {
                bytes: json!({ "inputs": inputs }).to_string().into_bytes(),
                content_type: "application/json",
                header_length: None,
                rows,
            }
        }
        Encoding::OipBinary => {
            let mut raw = vec![];
            let mut inputs = vec![];
            for (input, shape, values) in &tensors {
                let bytes = values.raw(&input.datatype);
                inputs.push(json!({"name": input.name, "datatype": input.datatype,
                                   "shape": shape,
                                   "parameters": {"binary_data_size": bytes.len()}}));
                raw.extend_from_slice(&bytes);
            }
            // Outputs come back binary too, as tritonclient asks by default.
            let header = json!({"inputs": inputs, "parameters": {"binary_data_output": true}})
                .to_string()
                .into_bytes();
            let header_length = header.len();
            let mut bytes = header;
            bytes.extend_from_slice(&raw);
            Generated {
                bytes,
                content_type: "application/octet-stream",
                header_length: Some(header_length),
                rows,
            }
        }
        Encoding::Invocations => {
            let body = if let [(_, shape, values)] = &tensors[..] {
                json!({ "inputs": nest(values, shape, 0) })
            } else {
                let map: serde_json::Map<String, Value> = tensors
                    .iter()
                    .map(|(input, shape, values)| (input.name.clone(), nest(values, shape, 0)))
                    .collect();
                json!({ "inputs": map })
            };
            Generated {
                bytes: body.to_string().into_bytes(),
                content_type: "application/json",
                header_length: None,
                rows,
            }
        }
    })
}

/// The rows a JSON body holds: the first dimension of an OIP body's first input, or the
/// length of an `/invocations` body's table (`dataframe_split.data`, `dataframe_records`,
/// `instances`, `inputs`). `None` when the body is not JSON or says nothing about rows.
pub fn rows_in_body(bytes: &[u8]) -> Option<usize> {
    let v: Value = serde_json::from_slice(bytes).ok()?;
    let first_dim = |shape: &Value| shape.get(0).and_then(Value::as_u64);
    let inputs = v.get("inputs");
    if let Some(Value::Array(items)) = inputs
        && let Some(shape) = items.first().and_then(|i| i.get("shape"))
    {
        return first_dim(shape).map(|n| n as usize);
    }
    if let Some(data) = v.get("dataframe_split").and_then(|d| d.get("data")) {
        return data.as_array().map(Vec::len);
    }
    for key in ["dataframe_records", "instances", "inputs"] {
        match v.get(key) {
            Some(Value::Array(a)) => return Some(a.len()),
            Some(Value::Object(m)) => {
                return m.values().next().and_then(Value::as_array).map(Vec::len);
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn gb() -> ModelMetadata {
        serde_json::from_value(json!({
            "name": "gb", "platform": "onnx",
            "inputs": [{"name": "X", "datatype": "FP32", "shape": [-1, 30]}],
            "outputs": [{"name": "label", "datatype": "INT64", "shape": [-1]}],
        }))
        .unwrap()
    }

    #[test]
    fn shapes() {
        assert_eq!(concrete_shape(&[-1, 30], 4).unwrap(), (vec![4, 30], 4));
        assert_eq!(concrete_shape(&[-1, -1, 3], 2).unwrap(), (vec![2, 1, 3], 2));
        assert_eq!(concrete_shape(&[8, 3], 2).unwrap(), (vec![8, 3], 8));
        assert_eq!(concrete_shape(&[], 2).unwrap(), (vec![], 1));
        assert!(concrete_shape(&[-2], 1).is_err());
    }

    #[test]
    fn oip_json_body() {
        let mut rng = StdRng::seed_from_u64(7);
        let g = generate(&gb(), 3, Encoding::OipJson, &mut rng).unwrap();
        assert_eq!(
            (g.rows, g.content_type, g.header_length),
            (3, "application/json", None)
        );
        let v: Value = serde_json::from_slice(&g.bytes).unwrap();
        let input = &v["inputs"][0];
        assert_eq!(input["name"], "X");
        assert_eq!(input["datatype"], "FP32");
        assert_eq!(input["shape"], json!([3, 30]));
        let data = input["data"].as_array().unwrap();
        assert_eq!(data.len(), 90);
        assert!(
            data.iter()
                .all(|x| (0.0..1.0).contains(&x.as_f64().unwrap()))
        );
        assert_eq!(rows_in_body(&g.bytes), Some(3));
        // The same seed gives the same body.
        let again = generate(&gb(), 3, Encoding::OipJson, &mut StdRng::seed_from_u64(7)).unwrap();
        assert_eq!(g, again);
    }

    #[test]
    fn oip_binary_body() {
        let meta: ModelMetadata = serde_json::from_value(json!({"name": "m", "inputs": [
            {"name": "a", "datatype": "FP32", "shape": [-1, 2]},
            {"name": "b", "datatype": "INT16", "shape": [-1]},
            {"name": "c", "datatype": "BYTES", "shape": [-1]},
            {"name": "d", "datatype": "FP16", "shape": [-1]},
        ]}))
        .unwrap();
        let mut rng = StdRng::seed_from_u64(1);
        let g = generate(&meta, 2, Encoding::OipBinary, &mut rng).unwrap();
        let hl = g.header_length.unwrap();
        let head: Value = serde_json::from_slice(&g.bytes[..hl]).unwrap();
        let size = |i: usize| {
            head["inputs"][i]["parameters"]["binary_data_size"]
                .as_u64()
                .unwrap()
        };
        assert_eq!(size(0), 2 * 2 * 4);
        assert_eq!(size(1), 2 * 2);
        // Two strings "vN" to "vNNN", each after its 4-byte length.
        assert!((12..=16).contains(&size(2)), "{head}");
        assert_eq!(size(3), 2 * 2);
        let total: u64 = (0..4).map(size).sum();
        assert_eq!(g.bytes.len() - hl, total as usize);
        assert_eq!(head["inputs"][0]["shape"], json!([2, 2]));
        assert_eq!(head["parameters"]["binary_data_output"], true);
        // The raw floats are the little-endian f32s of values in [0, 1).
        let first = f32::from_le_bytes(g.bytes[hl..hl + 4].try_into().unwrap());
        assert!((0.0..1.0).contains(&first));
    }

    #[test]
    fn half_floats() {
        assert_eq!(f16_bits(0.0), 0);
        assert_eq!(f16_bits(0.5), 0x3800);
        assert_eq!(f16_bits(0.25), 0x3400);
        assert_eq!(f16_bits(1.0), 0x3c00);
        assert_eq!(f16_bits(1e-9), 0);
    }

    #[test]
    fn invocations_bodies() {
        let mut rng = StdRng::seed_from_u64(3);
        let g = generate(&gb(), 2, Encoding::Invocations, &mut rng).unwrap();
        let v: Value = serde_json::from_slice(&g.bytes).unwrap();
        let rows = v["inputs"].as_array().unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].as_array().unwrap().len(), 30);
        assert_eq!(rows_in_body(&g.bytes), Some(2));
        let two: ModelMetadata = serde_json::from_value(json!({"name": "m", "inputs": [
            {"name": "a", "datatype": "INT64", "shape": [-1, 2]},
            {"name": "b", "datatype": "BOOL", "shape": [-1]},
        ]}))
        .unwrap();
        let g = generate(&two, 3, Encoding::Invocations, &mut rng).unwrap();
        let v: Value = serde_json::from_slice(&g.bytes).unwrap();
        assert_eq!(v["inputs"]["a"].as_array().unwrap().len(), 3);
        assert!(v["inputs"]["b"][2].is_boolean(), "{v}");
    }

    #[test]
    fn rows_of_given_bodies() {
        let rows = |v: Value| rows_in_body(v.to_string().as_bytes());
        assert_eq!(
            rows(json!({"dataframe_split": {"columns": ["a"], "data": [[1], [2]]}})),
            Some(2)
        );
        assert_eq!(rows(json!({"dataframe_records": [{"a": 1}]})), Some(1));
        assert_eq!(rows(json!({"instances": [[1], [2], [3]]})), Some(3));
        assert_eq!(rows(json!({"inputs": {"a": [[1], [2]]}})), Some(2));
        assert_eq!(rows(json!({"other": 1})), None);
        assert_eq!(rows_in_body(b"a,b\n1,2\n"), None);
    }

    #[test]
    fn unknown_datatype_is_named() {
        let meta: ModelMetadata = serde_json::from_value(json!({"name": "m", "inputs": [
            {"name": "a", "datatype": "FP8", "shape": [-1]}]}))
        .unwrap();
        let e = generate(&meta, 1, Encoding::OipJson, &mut StdRng::seed_from_u64(1))
            .unwrap_err()
            .to_string();
        assert!(e.contains("FP8"), "{e}");
    }
}
