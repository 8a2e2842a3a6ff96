//! OIP v2 request decoding and response encoding: JSON, binary extension, conversions,
//! every error naming its field, and never panicking on arbitrary bytes.

use kiln_ml::{ElemType, Tensor, TensorData, TensorSpec};
use kiln_protocol::oip::{
    InferRequest, OipError, RequestedOutput, check_outputs, decode_request, encode_response,
    f16_to_f32,
};
use proptest::prelude::*;
use serde_json::{Value, json};

mod binary;
mod encode;
mod json;

fn spec(name: &str, datatype: ElemType, shape: &[i64]) -> TensorSpec {
    TensorSpec {
        name: name.into(),
        datatype,
        shape: shape.to_vec(),
    }
}

fn x(datatype: ElemType) -> Vec<TensorSpec> {
    vec![spec("x", datatype, &[-1, 3])]
}

/// JSON with object keys in the order clients send them (`name`, `shape`, `datatype`,
/// `parameters`, `data`), which lets the decoder type `data` as it reads it.
fn client_order(v: &Value) -> String {
    let rank = |k: &str| {
        ["id", "name", "shape", "datatype", "parameters", "data"]
            .iter()
            .position(|x| *x == k)
    };
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort_by_key(|k| (rank(k).unwrap_or(9), k.as_str()));
            let parts: Vec<String> = keys
                .iter()
                .map(|k| format!("{}:{}", Value::from(k.as_str()), client_order(&m[*k])))
                .collect();
            format!("{{{}}}", parts.join(","))
        }
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(client_order).collect::<Vec<_>>().join(",")
        ),
        _ => v.to_string(),
    }
}

/// Decodes `body` twice: keys in client order (typed fast path) and sorted (`data` first,
/// the untyped path); both must agree.
fn decode(body: &Value, specs: &[TensorSpec]) -> Result<InferRequest, OipError> {
    let typed = decode_request(client_order(body).as_bytes(), None, specs);
    let sorted = decode_request(body.to_string().as_bytes(), None, specs);
    assert_eq!(
        typed, sorted,
        "client key order and sorted key order disagree"
    );
    typed
}

fn decode_err(body: &Value, specs: &[TensorSpec]) -> String {
    let e = decode(body, specs).expect_err("request should be refused");
    assert_eq!(e.status(), 400, "{e}");
    e.to_string()
}

fn one_input(name: &str, datatype: &str, shape: Value, data: Value) -> Value {
    json!({"inputs": [{"name": name, "datatype": datatype, "shape": shape, "data": data}]})
}

/// A body as tritonclient builds it: `json.dumps` header (with its `", "` / `": "`
/// separators), then the raw tensors; returns the body and the header length header.
fn binary_body(header: &Value, tensors: &[&[u8]]) -> (Vec<u8>, String) {
    let text = header
        .to_string()
        .replace("\",\"", "\", \"")
        .replace("\":", "\": ");
    let mut body = text.into_bytes();
    let len = body.len();
    for t in tensors {
        body.extend_from_slice(t);
    }
    (body, len.to_string())
}

fn le<T: Copy, const N: usize>(v: &[T], f: impl Fn(T) -> [u8; N]) -> Vec<u8> {
    v.iter().flat_map(|&x| f(x)).collect()
}

fn binary_input(name: &str, datatype: &str, shape: Value, size: usize) -> Value {
    json!({"name": name, "datatype": datatype, "shape": shape,
           "parameters": {"binary_data_size": size}})
}
