//! Open Inference Protocol v2 (KServe / Triton REST) infer requests and responses, JSON and
//! the binary tensor extension, as pure functions over bytes: no HTTP framework types.
//!
//! - [`decode_request`] reads a request body (JSON, or a JSON header of
//!   `Inference-Header-Content-Length` bytes followed by raw tensors), checks every input
//!   against the model's declared inputs and converts it to the model's element type.
//! - [`check_outputs`] checks the requested output names against the model's outputs.
//! - [`encode_response`] writes the response: JSON, or JSON header + binary outputs.
//!
//! # Conversions
//! Every OIP datatype is accepted on the wire (BOOL, UINT8–64, INT8–64, FP16, FP32, FP64,
//! BYTES, and Triton's BF16). Integers go to a model's INT32/INT64 (range-checked, a value
//! out of range is an error naming its index) or FP32/FP64; floats go to FP32/FP64 (a finite
//! value too large for FP32 is an error); BOOL only to BOOL; BYTES only to BYTES. In JSON,
//! integer datatypes take integers (`3.0` is accepted, `2.5` is not) and BOOL takes
//! `true`/`false`; in binary, a BOOL byte must be 0 or 1. NaN and ±infinity pass through in
//! binary data (JSON cannot carry them).
//!
//! # Data layout
//! JSON `data` is row-major and either flat or nested exactly to the shape's rank
//! (rectangular, each level's length equal to that dimension). Inputs come back in the
//! model's declared order, whatever the request's order.
//!
//! # Non-finite outputs
//! JSON has no NaN or infinity. A non-finite float in a JSON output is written as `null`
//! (the model did produce it, so refusing the request would be wrong); clients that need the
//! exact value should ask for binary outputs (`binary_data: true`), which carry it bit for
//! bit.
//!
//! # Errors
//! Every [`OipError`] message names the field it is about (`inputs[0] (\`x\`).shape …`);
//! all client mistakes map to 400, only an output tensor the model got wrong maps to 500.

use kiln_ml::{Tensor, TensorSpec};
use serde_json::{Map, Value};

mod encode;
mod json;
mod wire;

pub use encode::encode_response;
pub use wire::{bf16_to_f32, f16_to_f32};

use json::{Collector, MAX_ELEMS, RawInput};
use wire::Wire;

/// A decoded infer request.
#[derive(Debug, Clone, PartialEq)]
pub struct InferRequest {
    pub id: Option<String>,
    /// Request-level parameters, as sent.
    pub parameters: Map<String, Value>,
    /// One tensor per model input, in the model's declared order, converted to its type.
    pub inputs: Vec<Tensor>,
    /// Requested outputs in request order; empty = all outputs.
    pub outputs: Vec<RequestedOutput>,
    /// `parameters.binary_data_output`: whether outputs default to binary.
    pub binary_output_default: bool,
}

/// An entry of the request's `outputs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestedOutput {
    pub name: String,
    /// `parameters.binary_data`, if given.
    pub binary: Option<bool>,
}

/// Why a request could not be decoded or a response encoded. The message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OipError {
    /// The body (or its JSON header) is not JSON, or not shaped like an infer request.
    #[error("{0}")]
    Json(String),
    /// The `Inference-Header-Content-Length` header is unusable.
    #[error("{0}")]
    Header(String),
    /// An input is unknown, missing, duplicated, or its shape, datatype or data is wrong.
    #[error("{0}")]
    Input(String),
    /// A requested output is unknown, duplicated or cannot be returned as asked.
    #[error("{0}")]
    Output(String),
    /// The model produced an output tensor that cannot be encoded (a server-side fault).
    #[error("{0}")]
    Encode(String),
}

impl OipError {
    /// The HTTP status to answer with: 400 for anything the client sent, 500 otherwise.
    pub fn status(&self) -> u16 {
        match self {
            OipError::Encode(_) => 500,
            _ => 400,
        }
    }
}

fn input_err(msg: String) -> OipError {
    OipError::Input(msg)
}

fn names(specs: &[TensorSpec]) -> String {
    let v: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
    if v.is_empty() {
        "(none)".to_owned()
    } else {
        v.join(", ")
    }
}

/// Shows a short, printable prefix of client-supplied text.
fn clip(s: &str) -> String {
    match s.char_indices().nth(64) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_owned(),
    }
}

/// Decodes an infer request body. `header_len` is the `Inference-Header-Content-Length`
/// header, if present: then the body is a JSON header of that many bytes followed by the
/// binary tensor data. `inputs` are the model's declared inputs.
pub fn decode_request(
    body: &[u8],
    header_len: Option<&str>,
    inputs: &[TensorSpec],
) -> Result<InferRequest, OipError> {
    let (json, binary) = split_body(body, header_len)?;
    let text = std::str::from_utf8(json).map_err(|e| {
        OipError::Json(format!(
            "request JSON is not valid UTF-8 (invalid byte at offset {})",
            e.valid_up_to()
        ))
    })?;
    let raw = json::parse(text, inputs)?;

    let id = match raw.id {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(other) => return Err(OipError::Json(format!("id must be a string, not {other}"))),
    };
    let parameters = match raw.parameters {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m,
        Some(_) => return Err(OipError::Json("parameters must be an object".into())),
    };
    let binary_output_default = match parameters.get("binary_data_output") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(v) => {
            return Err(OipError::Json(format!(
                "parameters.binary_data_output must be true or false, not {v}"
            )));
        }
    };
    let Some(raw_inputs) = raw.inputs else {
        return Err(OipError::Json("request has no `inputs`".into()));
    };

    let mut rest = binary;
    let mut slots: Vec<Option<(usize, Tensor)>> = vec![None; inputs.len()];
    for (i, raw) in raw_inputs.into_iter().enumerate() {
        let (slot, tensor) = decode_input(i, raw, inputs, &mut rest)?;
        if let Some(Some((first, _))) = slots.get(slot) {
            return Err(input_err(format!(
                "inputs[{i}] (`{}`) duplicates inputs[{first}]",
                tensor.name
            )));
        }
        if let Some(s) = slots.get_mut(slot) {
            *s = Some((i, tensor));
        }
    }
    if let Some(rest) = rest
        && !rest.is_empty()
    {
        return Err(input_err(format!(
            "{} bytes of binary tensor data after the last binary input belong to no input \
             (the binary_data_size values add up to less than the body)",
            rest.len()
        )));
    }
    let mut tensors = Vec::with_capacity(inputs.len());
    for (spec, slot) in inputs.iter().zip(slots) {
        match slot {
            Some((_, t)) => tensors.push(t),
            None => {
                return Err(input_err(format!(
                    "missing input `{}`; the model's inputs are: {}",
                    spec.name,
                    names(inputs)
                )));
            }
        }
    }
    Ok(InferRequest {
        id,
        parameters,
        inputs: tensors,
        outputs: decode_outputs(raw.outputs)?,
        binary_output_default,
    })
}

fn split_body<'b>(
    body: &'b [u8],
    header_len: Option<&str>,
) -> Result<(&'b [u8], Option<&'b [u8]>), OipError> {
    let Some(h) = header_len else {
        return Ok((body, None));
    };
    let n: usize = h.trim().parse().map_err(|_| {
        OipError::Header(format!(
            "Inference-Header-Content-Length `{}` is not a number of bytes",
            clip(h)
        ))
    })?;
    match body.split_at_checked(n) {
        Some((json, bin)) => Ok((json, Some(bin))),
        None => Err(OipError::Header(format!(
            "Inference-Header-Content-Length {n} is larger than the body ({} bytes)",
            body.len()
        ))),
    }
}

/// Checks and converts one input; returns the index of its model input and the tensor.
/// `rest` is the binary data not yet claimed (`None` without the binary extension).
fn decode_input(
    i: usize,
    raw: RawInput,
    specs: &[TensorSpec],
    rest: &mut Option<&[u8]>,
) -> Result<(usize, Tensor), OipError> {
    let name = match raw.name {
        Some(Value::String(s)) => s,
        None => return Err(input_err(format!("inputs[{i}] has no `name`"))),
        Some(v) => {
            return Err(input_err(format!(
                "inputs[{i}].name must be a string, not {v}"
            )));
        }
    };
    let Some(slot) = specs.iter().position(|s| s.name == name) else {
        return Err(input_err(format!(
            "unknown input `{}` (inputs[{i}]); the model's inputs are: {}",
            clip(&name),
            names(specs)
        )));
    };
    let spec = &specs[slot];
    let field = format!("inputs[{i}] (`{name}`)");
    let dt = match &raw.datatype {
        Some(Value::String(s)) => s.as_str(),
        None => return Err(input_err(format!("{field} has no `datatype`"))),
        Some(v) => {
            return Err(input_err(format!(
                "inputs[{i}].datatype must be a string, not {v}"
            )));
        }
    };
    let want = spec.datatype.as_oip();
    let wire = match Wire::parse(dt) {
        Some(w) if w.converts_to(spec.datatype) => w,
        Some(_) => {
            return Err(input_err(format!(
                "inputs[{i}].datatype `{dt}` is not supported; input `{name}` takes {want}"
            )));
        }
        None => {
            return Err(input_err(format!(
                "inputs[{i}].datatype `{}` is not an OIP datatype; input `{name}` takes {want}",
                clip(dt)
            )));
        }
    };
    let shape = decode_shape(&field, raw.shape.as_ref(), spec)?;
    let count = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= MAX_ELEMS)
        .ok_or_else(|| {
            input_err(format!(
                "{field}.shape {shape:?} has more than {MAX_ELEMS} elements"
            ))
        })?;
    let binary_size = match raw
        .parameters
        .as_ref()
        .map(|p| (p, p.get("binary_data_size")))
    {
        None | Some((Value::Object(_), None)) => None,
        Some((Value::Object(_), Some(v))) => match v.as_u64().and_then(|n| usize::try_from(n).ok())
        {
            Some(n) => Some(n),
            None => {
                return Err(input_err(format!(
                    "{field}.parameters.binary_data_size must be a byte count, not {v}"
                )));
            }
        },
        Some(_) => return Err(input_err(format!("{field}.parameters must be an object"))),
    };
    let data = match (raw.data, binary_size) {
        (Some(_), Some(_)) => {
            return Err(input_err(format!(
                "{field} has both `data` and parameters.binary_data_size; give one"
            )));
        }
        (None, None) => {
            return Err(input_err(format!(
                "{field} has neither `data` nor parameters.binary_data_size"
            )));
        }
        (Some(parsed), None) => {
            check_nesting(&field, &parsed.dims, &shape, parsed.coll.len, count)?;
            let typed = parsed
                .coll
                .retype(wire, spec.datatype, &format!("inputs[{i}]"));
            into_data(typed.map_err(input_err)?)
        }
        (None, Some(size)) => {
            let Some(avail) = rest.as_mut() else {
                return Err(input_err(format!(
                    "{field} has parameters.binary_data_size but the request has no \
                     Inference-Header-Content-Length header"
                )));
            };
            let Some((bytes, tail)) = avail.split_at_checked(size) else {
                return Err(input_err(format!(
                    "binary_data_size {size} for {field} runs past the end of the body \
                     ({} bytes of tensor data remain)",
                    avail.len()
                )));
            };
            *avail = tail;
            wire::decode_binary(bytes, wire, spec.datatype, count, &field).map_err(input_err)?
        }
    };
    Ok((slot, Tensor { name, shape, data }))
}

fn decode_shape(
    field: &str,
    shape: Option<&Value>,
    spec: &TensorSpec,
) -> Result<Vec<usize>, OipError> {
    let dims = match shape {
        Some(Value::Array(a)) => a,
        None => return Err(input_err(format!("{field} has no `shape`"))),
        Some(v) => return Err(input_err(format!("{field}.shape must be a list, not {v}"))),
    };
    let mut shape = Vec::with_capacity(dims.len());
    for (d, v) in dims.iter().enumerate() {
        match v.as_u64().and_then(|n| usize::try_from(n).ok()) {
            Some(n) => shape.push(n),
            None => {
                return Err(input_err(format!(
                    "{field}.shape[{d}] is {v}; dimensions are non-negative integers"
                )));
            }
        }
    }
    if shape.len() != spec.shape.len() {
        return Err(input_err(format!(
            "{field}.shape {shape:?} has {} dimensions; the model's input takes {} ({:?}, -1 = any)",
            shape.len(),
            spec.shape.len(),
            spec.shape
        )));
    }
    for (d, (&have, &want)) in shape.iter().zip(&spec.shape).enumerate() {
        if want >= 0 && u64::try_from(have).ok() != u64::try_from(want).ok() {
            return Err(input_err(format!(
                "{field}.shape[{d}] is {have}; the model's input takes {want} there (shape {:?}, -1 = any)",
                spec.shape
            )));
        }
    }
    Ok(shape)
}

/// `data` must be flat with product(shape) elements, or nested exactly like `shape`.
fn check_nesting(
    field: &str,
    dims: &[usize],
    shape: &[usize],
    len: usize,
    count: usize,
) -> Result<(), OipError> {
    if dims.len() > 1 && dims != shape {
        return Err(input_err(format!(
            "{field}.data is nested as {dims:?} but shape is {shape:?}; nest it like the shape or \
             send it flat"
        )));
    }
    if len != count {
        return Err(input_err(format!(
            "{field}.shape {shape:?} has {count} elements but data has {len}"
        )));
    }
    Ok(())
}

fn into_data(c: Collector) -> kiln_ml::TensorData {
    use json::Out;
    use kiln_ml::TensorData;
    match c.out {
        Out::Bool(v) => TensorData::Bool(v),
        Out::I32(v) => TensorData::Int32(v),
        Out::I64(v) => TensorData::Int64(v),
        Out::F32(v) => TensorData::Fp32(v),
        Out::F64(v) => TensorData::Fp64(v),
        Out::Bytes(v) => TensorData::Bytes(v),
        // `retype` never leaves a generic collection.
        Out::Generic(_) => TensorData::Fp32(Vec::new()),
    }
}

fn decode_outputs(outputs: Option<Value>) -> Result<Vec<RequestedOutput>, OipError> {
    let list = match outputs {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(OipError::Output("outputs must be a list".into())),
    };
    let mut out: Vec<RequestedOutput> = Vec::with_capacity(list.len());
    for (i, o) in list.iter().enumerate() {
        let name = match o.get("name") {
            Some(Value::String(s)) => s.clone(),
            Some(v) => {
                return Err(OipError::Output(format!(
                    "outputs[{i}].name must be a string, not {v}"
                )));
            }
            None => return Err(OipError::Output(format!("outputs[{i}] has no `name`"))),
        };
        let binary = match o.get("parameters") {
            None | Some(Value::Null) => None,
            Some(Value::Object(p)) => {
                if p.contains_key("classification") {
                    return Err(OipError::Output(format!(
                        "outputs[{i}] (`{name}`).parameters.classification is not supported"
                    )));
                }
                match p.get("binary_data") {
                    None => None,
                    Some(Value::Bool(b)) => Some(*b),
                    Some(v) => {
                        return Err(OipError::Output(format!(
                            "outputs[{i}] (`{name}`).parameters.binary_data must be true or false, not {v}"
                        )));
                    }
                }
            }
            Some(_) => {
                return Err(OipError::Output(format!(
                    "outputs[{i}] (`{name}`).parameters must be an object"
                )));
            }
        };
        if let Some(first) = out.iter().position(|r| r.name == name) {
            return Err(OipError::Output(format!(
                "outputs[{i}] (`{}`) duplicates outputs[{first}]",
                clip(&name)
            )));
        }
        out.push(RequestedOutput { name, binary });
    }
    Ok(out)
}

/// Checks that every requested output is one of the model's outputs.
pub fn check_outputs(req: &InferRequest, outputs: &[TensorSpec]) -> Result<(), OipError> {
    for (i, r) in req.outputs.iter().enumerate() {
        if !outputs.iter().any(|s| s.name == r.name) {
            return Err(OipError::Output(format!(
                "unknown output `{}` (outputs[{i}]); the model's outputs are: {}",
                clip(&r.name),
                names(outputs)
            )));
        }
    }
    Ok(())
}
