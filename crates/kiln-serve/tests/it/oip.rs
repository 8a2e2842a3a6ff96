//! OIP v2 request decoding and response encoding: JSON, binary extension, conversions,
//! every error naming its field, and never panicking on arbitrary bytes.

use kiln_ml::{ElemType, Tensor, TensorData, TensorSpec};
use kiln_serve::oip::{
    InferRequest, OipError, RequestedOutput, check_outputs, decode_request, encode_response,
    f16_to_f32,
};
use proptest::prelude::*;
use serde_json::{Value, json};

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

#[test]
fn json_round_trip_for_every_elem_type() {
    let cases = [
        (
            ElemType::Bool,
            json!([true, false, true]),
            TensorData::Bool(vec![true, false, true]),
        ),
        (
            ElemType::Int32,
            json!([-1, 0, 2147483647]),
            TensorData::Int32(vec![-1, 0, i32::MAX]),
        ),
        (
            ElemType::Int64,
            json!([i64::MIN, 0, 7]),
            TensorData::Int64(vec![i64::MIN, 0, 7]),
        ),
        (
            ElemType::Fp32,
            json!([1.5, -0.25, 3e38]),
            TensorData::Fp32(vec![1.5, -0.25, 3e38]),
        ),
        (
            ElemType::Fp64,
            json!([0.1, -2.0, 1e300]),
            TensorData::Fp64(vec![0.1, -2.0, 1e300]),
        ),
        (
            ElemType::Bytes,
            json!(["a", "", "ünï"]),
            TensorData::Bytes(vec![b"a".to_vec(), vec![], "ünï".as_bytes().to_vec()]),
        ),
    ];
    for (t, data, want) in cases {
        let body = one_input("x", t.as_oip(), json!([1, 3]), data.clone());
        let req = decode(&body, &x(t)).unwrap();
        assert_eq!(req.inputs.len(), 1);
        assert_eq!(req.inputs[0].shape, vec![1, 3]);
        assert_eq!(req.inputs[0].data, want, "{t:?}");
        let (out, header) = encode_response("m", Some("2"), Some("r1"), &req.inputs, &req).unwrap();
        assert_eq!(header, None);
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v,
            json!({"model_name": "m", "model_version": "2", "id": "r1", "outputs": [
                {"name": "x", "datatype": t.as_oip(), "shape": [1, 3], "data": data}
            ]}),
            "{t:?}"
        );
    }
}

#[test]
fn nested_and_flat_data_agree() {
    let flat = decode(
        &one_input("x", "FP32", json!([2, 3]), json!([1, 2, 3, 4, 5, 6])),
        &x(ElemType::Fp32),
    );
    let nested = decode(
        &one_input("x", "FP32", json!([2, 3]), json!([[1, 2, 3], [4, 5, 6]])),
        &x(ElemType::Fp32),
    );
    let want = TensorData::Fp32(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    assert_eq!(flat.unwrap().inputs[0].data, want);
    assert_eq!(nested.unwrap().inputs[0].data, want);
    // Three levels.
    let specs = [spec("x", ElemType::Int64, &[-1, 2, 2])];
    let req = decode(
        &one_input("x", "INT64", json!([1, 2, 2]), json!([[[1, 2], [3, 4]]])),
        &specs,
    );
    assert_eq!(
        req.unwrap().inputs[0].data,
        TensorData::Int64(vec![1, 2, 3, 4])
    );
}

#[test]
fn nested_data_must_be_rectangular_and_match_the_shape() {
    let s = x(ElemType::Fp32);
    let e = decode_err(
        &one_input("x", "FP32", json!([2, 3]), json!([[1, 2, 3], [4, 5]])),
        &s,
    );
    assert!(e.contains("inputs[0].data is not rectangular"), "{e}");
    let e = decode_err(
        &one_input("x", "FP32", json!([2, 3]), json!([[1, 2, 3], 4, 5, 6])),
        &s,
    );
    assert!(
        e.contains("inputs[0].data[3]") && e.contains("rectangular"),
        "{e}"
    );
    let e = decode_err(
        &one_input("x", "FP32", json!([2, 3]), json!([1, 2, 3, [4, 5, 6]])),
        &s,
    );
    assert!(e.contains("inputs[0].data[3] is a list"), "{e}");
    let e = decode_err(
        &one_input("x", "FP32", json!([2, 3]), json!([[1, 2], [3, 4], [5, 6]])),
        &s,
    );
    assert!(
        e.contains("inputs[0] (`x`).data is nested as [3, 2] but shape is [2, 3]"),
        "{e}"
    );
}

#[test]
fn element_count_must_match_the_shape() {
    let e = decode_err(
        &one_input("x", "FP32", json!([2, 3]), json!([1, 2, 3, 4, 5])),
        &x(ElemType::Fp32),
    );
    assert_eq!(
        e,
        "inputs[0] (`x`).shape [2, 3] has 6 elements but data has 5"
    );
}

#[test]
fn json_conversions() {
    // INT32 on the wire to an FP32 model.
    let req = decode(
        &one_input("x", "INT32", json!([1, 3]), json!([1, -2, 3])),
        &x(ElemType::Fp32),
    );
    assert_eq!(
        req.unwrap().inputs[0].data,
        TensorData::Fp32(vec![1.0, -2.0, 3.0])
    );
    // FP64 to FP32, UINT64 to INT64, INT8 to INT32, integral floats to INT64.
    let req = decode(
        &one_input("x", "FP64", json!([1, 3]), json!([0.5, 1, 2])),
        &x(ElemType::Fp32),
    );
    assert_eq!(
        req.unwrap().inputs[0].data,
        TensorData::Fp32(vec![0.5, 1.0, 2.0])
    );
    let req = decode(
        &one_input("x", "UINT64", json!([1, 3]), json!([0, 5, 9])),
        &x(ElemType::Int64),
    );
    assert_eq!(
        req.unwrap().inputs[0].data,
        TensorData::Int64(vec![0, 5, 9])
    );
    let req = decode(
        &one_input("x", "INT8", json!([1, 3]), json!([-128, 0, 127])),
        &x(ElemType::Int32),
    );
    assert_eq!(
        req.unwrap().inputs[0].data,
        TensorData::Int32(vec![-128, 0, 127])
    );
    let req = decode(
        &one_input("x", "INT64", json!([1, 3]), json!([1.0, 2, 3])),
        &x(ElemType::Int64),
    );
    assert_eq!(
        req.unwrap().inputs[0].data,
        TensorData::Int64(vec![1, 2, 3])
    );
    // FP16 / BF16 as JSON numbers are just numbers.
    let req = decode(
        &one_input("x", "FP16", json!([1, 3]), json!([1.5, 2, 65504])),
        &x(ElemType::Fp64),
    );
    assert_eq!(
        req.unwrap().inputs[0].data,
        TensorData::Fp64(vec![1.5, 2.0, 65504.0])
    );
}

#[test]
fn json_range_and_type_errors_name_the_index() {
    let e = decode_err(
        &one_input("x", "INT64", json!([1, 3]), json!([1, 2, 3000000000_i64])),
        &x(ElemType::Int32),
    );
    assert_eq!(
        e,
        "inputs[0].data[2] is 3000000000, out of range for the model's INT32"
    );
    let e = decode_err(
        &one_input("x", "UINT8", json!([1, 3]), json!([1, 300, 2])),
        &x(ElemType::Fp32),
    );
    assert_eq!(e, "inputs[0].data[1] is 300, out of range for UINT8");
    let e = decode_err(
        &one_input("x", "UINT32", json!([1, 3]), json!([1, -1, 2])),
        &x(ElemType::Int64),
    );
    assert_eq!(e, "inputs[0].data[1] is -1, out of range for UINT32");
    let e = decode_err(
        &one_input("x", "UINT64", json!([1, 3]), json!([1, u64::MAX, 2])),
        &x(ElemType::Int64),
    );
    assert!(
        e.starts_with(
            "inputs[0].data[1] is 18446744073709551615, out of range for the model's INT64"
        ),
        "{e}"
    );
    let e = decode_err(
        &one_input("x", "INT64", json!([1, 3]), json!([1, 2, 2.5])),
        &x(ElemType::Int64),
    );
    assert_eq!(e, "inputs[0].data[2] is 2.5; INT64 takes integers");
    let e = decode_err(
        &one_input("x", "FP32", json!([1, 4]), json!([1, 2, 3, "abc"])),
        &[spec("x", ElemType::Fp32, &[1, 4])],
    );
    assert_eq!(e, "inputs[0].data[3] is \"abc\"; a number was expected");
    let e = decode_err(
        &one_input("x", "FP32", json!([1, 3]), json!([1, null, 2])),
        &x(ElemType::Fp32),
    );
    assert_eq!(e, "inputs[0].data[1] is null; a number was expected");
    let e = decode_err(
        &one_input("x", "FP64", json!([1, 3]), json!([1, 1e300, 2])),
        &x(ElemType::Fp32),
    );
    assert!(e.starts_with("inputs[0].data[1] is 1"), "{e}");
    assert!(
        e.contains("out of range for FP64") || e.contains("model's FP32"),
        "{e}"
    );
    let e = decode_err(
        &one_input("x", "FP16", json!([1, 3]), json!([1, 70000, 2])),
        &x(ElemType::Fp32),
    );
    assert_eq!(e, "inputs[0].data[1] is 70000, out of range for FP16");
    let e = decode_err(
        &one_input("x", "BOOL", json!([1, 3]), json!([true, 1, false])),
        &x(ElemType::Bool),
    );
    assert_eq!(e, "inputs[0].data[1] is 1; BOOL takes true or false");
    let e = decode_err(
        &one_input("x", "BYTES", json!([1, 3]), json!(["a", 1, "b"])),
        &x(ElemType::Bytes),
    );
    assert_eq!(e, "inputs[0].data[1] is 1; BYTES takes strings");
    let e = decode_err(
        &one_input("x", "FP32", json!([1, 3]), json!([1, {"a": 1}, 2])),
        &x(ElemType::Fp32),
    );
    assert_eq!(e, "inputs[0].data[1] is an object; a number was expected");
}

#[test]
fn field_order_does_not_matter() {
    // `data` before `name` and `datatype` takes the untyped path; same result and errors.
    let body = r#"{"inputs":[{"data":[[1,2,3]],"shape":[1,3],"datatype":"INT32","name":"x"}]}"#;
    let req = decode_request(body.as_bytes(), None, &x(ElemType::Fp64)).unwrap();
    assert_eq!(req.inputs[0].data, TensorData::Fp64(vec![1.0, 2.0, 3.0]));
    let body = r#"{"inputs":[{"data":[1,2.5,3],"shape":[1,3],"datatype":"INT32","name":"x"}]}"#;
    let e = decode_request(body.as_bytes(), None, &x(ElemType::Fp64)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "inputs[0].data[1] is 2.5; INT32 takes integers"
    );
}

#[test]
fn request_level_fields() {
    let body = json!({
        "id": "req-7",
        "parameters": {"binary_data_output": true, "priority": 3},
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}],
        "outputs": [{"name": "y", "parameters": {"binary_data": false}}, {"name": "z"}],
    });
    let req = decode(&body, &x(ElemType::Fp32)).unwrap();
    assert_eq!(req.id.as_deref(), Some("req-7"));
    assert!(req.binary_output_default);
    assert_eq!(req.parameters.get("priority"), Some(&json!(3)));
    assert_eq!(
        req.outputs,
        vec![
            RequestedOutput {
                name: "y".into(),
                binary: Some(false)
            },
            RequestedOutput {
                name: "z".into(),
                binary: None
            },
        ]
    );
    let outs = [
        spec("y", ElemType::Fp32, &[-1]),
        spec("z", ElemType::Fp32, &[-1]),
    ];
    check_outputs(&req, &outs).unwrap();
    let e = check_outputs(&req, &outs[..1]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "unknown output `z` (outputs[1]); the model's outputs are: y"
    );
    assert_eq!(e.status(), 400);
}

#[test]
fn inputs_come_back_in_model_order() {
    let specs = [
        spec("a", ElemType::Int64, &[1]),
        spec("b", ElemType::Bool, &[1]),
    ];
    let body = json!({"inputs": [
        {"name": "b", "datatype": "BOOL", "shape": [1], "data": [true]},
        {"name": "a", "datatype": "INT64", "shape": [1], "data": [4]},
    ]});
    let req = decode(&body, &specs).unwrap();
    assert_eq!(req.inputs[0].name, "a");
    assert_eq!(req.inputs[1].name, "b");
}

#[test]
fn input_and_field_errors_name_the_field() {
    let s = x(ElemType::Fp32);
    let two = [
        spec("x", ElemType::Fp32, &[-1, 3]),
        spec("y", ElemType::Int64, &[-1]),
    ];
    let e = decode_err(
        &one_input("foo", "FP32", json!([1, 3]), json!([1, 2, 3])),
        &s,
    );
    assert_eq!(
        e,
        "unknown input `foo` (inputs[0]); the model's inputs are: x"
    );
    let e = decode_err(
        &one_input("x", "FP32", json!([1, 3]), json!([1, 2, 3])),
        &two,
    );
    assert_eq!(e, "missing input `y`; the model's inputs are: x, y");
    let body = json!({"inputs": [
        {"name": "x", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]},
        {"name": "x", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]},
    ]});
    assert_eq!(
        decode_err(&body, &s),
        "inputs[1] (`x`) duplicates inputs[0]"
    );
    let body = json!({"inputs": [
        {"name": "y", "datatype": "INT64", "shape": [1], "data": [1]},
        {"name": "x", "datatype": "FP16", "shape": [1, 3], "data": [1, 2, 3]},
    ]});
    let ints = [
        spec("x", ElemType::Int64, &[-1, 3]),
        spec("y", ElemType::Int64, &[-1]),
    ];
    assert_eq!(
        decode_err(&body, &ints),
        "inputs[1].datatype `FP16` is not supported; input `x` takes INT64"
    );
    let e = decode_err(
        &one_input("x", "BYTES", json!([1, 3]), json!(["a", "b", "c"])),
        &s,
    );
    assert_eq!(
        e,
        "inputs[0].datatype `BYTES` is not supported; input `x` takes FP32"
    );
    let e = decode_err(&one_input("x", "FP8", json!([1, 3]), json!([1, 2, 3])), &s);
    assert_eq!(
        e,
        "inputs[0].datatype `FP8` is not an OIP datatype; input `x` takes FP32"
    );
    let e = decode_err(
        &one_input("x", "FP32", json!([2, 4]), json!([1, 2, 3, 4, 5, 6, 7, 8])),
        &s,
    );
    assert!(
        e.starts_with("inputs[0] (`x`).shape[1] is 4; the model's input takes 3"),
        "{e}"
    );
    let e = decode_err(&one_input("x", "FP32", json!([3]), json!([1, 2, 3])), &s);
    assert!(
        e.starts_with("inputs[0] (`x`).shape [3] has 1 dimensions; the model's input takes 2"),
        "{e}"
    );
    let e = decode_err(
        &one_input("x", "FP32", json!([-1, 3]), json!([1, 2, 3])),
        &s,
    );
    assert_eq!(
        e,
        "inputs[0] (`x`).shape[0] is -1; dimensions are non-negative integers"
    );
    let e = decode_err(
        &one_input("x", "FP32", json!([1u64 << 40, 3]), json!([])),
        &s,
    );
    assert!(
        e.starts_with("inputs[0] (`x`).shape [1099511627776, 3] has more than"),
        "{e}"
    );
    let e = decode_err(&one_input("x", "FP32", json!([u64::MAX, 3]), json!([])), &s);
    assert!(e.contains("has more than 268435456 elements"), "{e}");
    let body = json!({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3]}]});
    assert_eq!(
        decode_err(&body, &s),
        "inputs[0] (`x`) has neither `data` nor parameters.binary_data_size"
    );
    let body = json!({"inputs": [{"datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}]});
    assert_eq!(decode_err(&body, &s), "inputs[0] has no `name`");
    let body = json!({"inputs": [{"name": "x", "shape": [1, 3], "data": [1, 2, 3]}]});
    assert_eq!(decode_err(&body, &s), "inputs[0] (`x`) has no `datatype`");
    let body = json!({"inputs": [{"name": "x", "datatype": "FP32", "data": [1, 2, 3]}]});
    assert_eq!(decode_err(&body, &s), "inputs[0] (`x`) has no `shape`");
    assert_eq!(
        decode_err(&json!({"id": "a"}), &s),
        "request has no `inputs`"
    );
    let e = decode_err(&json!({"inputs": 5}), &s);
    assert!(e.contains("`inputs` to be a list"), "{e}");
    let e = decode_err(&json!({"inputs": [], "id": 5}), &s);
    assert!(e.starts_with("id must be a string"), "{e}");
    let e = decode_err(
        &json!({"inputs": [], "parameters": {"binary_data_output": "yes"}}),
        &s,
    );
    assert!(
        e.starts_with("parameters.binary_data_output must be true or false"),
        "{e}"
    );
    let e = decode_err(
        &json!({"inputs": [], "outputs": [{"name": "y", "parameters": {"binary_data": 1}}]}),
        &[],
    );
    assert!(
        e.starts_with("outputs[0] (`y`).parameters.binary_data must be true or false"),
        "{e}"
    );
    let e = decode_err(
        &json!({"inputs": [], "outputs": [{"name": "y"}, {"name": "y"}]}),
        &[],
    );
    assert_eq!(e, "outputs[1] (`y`) duplicates outputs[0]");
    let body =
        r#"{"inputs":[{"name":"x","name":"x","datatype":"FP32","shape":[1,3],"data":[1,2,3]}]}"#;
    let e = decode_request(body.as_bytes(), None, &s)
        .unwrap_err()
        .to_string();
    assert_eq!(e, "inputs[0].name appears twice");
}

#[test]
fn malformed_json_and_utf8() {
    let s = x(ElemType::Fp32);
    let e = decode_request(br#"{"inputs": [{"name": "x",}]}"#, None, &s).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("request body is not valid JSON at line 1 column"),
        "{e}"
    );
    assert_eq!(e.status(), 400);
    let e = decode_request(b"{\"id\": \"a\xff\", \"inputs\": []}", None, &s).unwrap_err();
    assert_eq!(
        e.to_string(),
        "request JSON is not valid UTF-8 (invalid byte at offset 9)"
    );
    let e = decode_request(b"", None, &s).unwrap_err();
    assert!(
        e.to_string().starts_with("request body is not valid JSON"),
        "{e}"
    );
    let e = decode_request(b"{\"inputs\": []} x", None, &s).unwrap_err();
    assert!(e.to_string().contains("trailing characters"), "{e}");
}

#[test]
fn binary_body_as_tritonclient_builds_it() {
    let header = json!({
        "inputs": [binary_input("INPUT0", "INT32", json!([1, 4]), 16)],
        "parameters": {"binary_data_output": true},
    });
    let (body, len) = binary_body(&header, &[&le(&[1i32, -2, 3, i32::MAX], i32::to_le_bytes)]);
    assert!(String::from_utf8_lossy(&body).contains("\"name\": \"INPUT0\""));
    let specs = [spec("INPUT0", ElemType::Int32, &[-1, 4])];
    let req = decode_request(&body, Some(&len), &specs).unwrap();
    assert_eq!(
        req.inputs[0].data,
        TensorData::Int32(vec![1, -2, 3, i32::MAX])
    );
    assert!(req.binary_output_default);
}

#[test]
fn binary_conversions() {
    // UINT8 → FP32.
    let (body, len) = binary_body(
        &json!({"inputs": [binary_input("x", "UINT8", json!([1, 3]), 3)]}),
        &[&[0, 7, 255]],
    );
    let req = decode_request(&body, Some(&len), &x(ElemType::Fp32)).unwrap();
    assert_eq!(req.inputs[0].data, TensorData::Fp32(vec![0.0, 7.0, 255.0]));
    // FP16 → FP32 with known values, NaN and infinity.
    let halves: [u16; 6] = [0x3C00, 0xC100, 0x7BFF, 0x0001, 0x7C00, 0x7E00];
    let (body, len) = binary_body(
        &json!({"inputs": [binary_input("x", "FP16", json!([2, 3]), 12)]}),
        &[&le(&halves, u16::to_le_bytes)],
    );
    let req = decode_request(&body, Some(&len), &x(ElemType::Fp32)).unwrap();
    let TensorData::Fp32(v) = &req.inputs[0].data else {
        panic!("not FP32")
    };
    assert_eq!(
        &v[..5],
        &[1.0, -2.5, 65504.0, 2f32.powi(-24), f32::INFINITY]
    );
    assert!(v[5].is_nan());
    assert_eq!(f16_to_f32(0x8000).to_bits(), (-0.0f32).to_bits());
    assert_eq!(f16_to_f32(0x0400), 2f32.powi(-14));
    // BF16 → FP64, INT16 → INT64, FP64 → FP32, UINT32 → INT32 in range.
    let (body, len) = binary_body(
        &json!({"inputs": [binary_input("x", "BF16", json!([1, 3]), 6)]}),
        &[&le(&[0x3F80u16, 0xC020, 0], u16::to_le_bytes)],
    );
    let req = decode_request(&body, Some(&len), &x(ElemType::Fp64)).unwrap();
    assert_eq!(req.inputs[0].data, TensorData::Fp64(vec![1.0, -2.5, 0.0]));
    let (body, len) = binary_body(
        &json!({"inputs": [binary_input("x", "INT16", json!([1, 3]), 6)]}),
        &[&le(&[-5i16, 0, 300], i16::to_le_bytes)],
    );
    let req = decode_request(&body, Some(&len), &x(ElemType::Int64)).unwrap();
    assert_eq!(req.inputs[0].data, TensorData::Int64(vec![-5, 0, 300]));
    let (body, len) = binary_body(
        &json!({"inputs": [binary_input("x", "FP64", json!([1, 3]), 24)]}),
        &[&le(&[0.5f64, f64::NAN, -1.0], f64::to_le_bytes)],
    );
    let req = decode_request(&body, Some(&len), &x(ElemType::Fp32)).unwrap();
    let TensorData::Fp32(v) = &req.inputs[0].data else {
        panic!("not FP32")
    };
    assert!(v[0] == 0.5 && v[1].is_nan() && v[2] == -1.0);
    // Range errors name the element.
    let (body, len) = binary_body(
        &json!({"inputs": [binary_input("x", "INT64", json!([1, 3]), 24)]}),
        &[&le(&[1i64, 2, 1 << 40], i64::to_le_bytes)],
    );
    let e = decode_request(&body, Some(&len), &x(ElemType::Int32))
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "inputs[0] (`x`) element 2 is 1099511627776, out of range for the model's INT32"
    );
    let (body, len) = binary_body(
        &json!({"inputs": [binary_input("x", "UINT64", json!([1, 3]), 24)]}),
        &[&le(&[1u64, u64::MAX, 2], u64::to_le_bytes)],
    );
    let e = decode_request(&body, Some(&len), &x(ElemType::Int64))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("inputs[0] (`x`) element 1 is 18446744073709551615"),
        "{e}"
    );
    let (body, len) = binary_body(
        &json!({"inputs": [binary_input("x", "FP64", json!([1, 3]), 24)]}),
        &[&le(&[0.0, 1e300, 0.0], f64::to_le_bytes)],
    );
    let e = decode_request(&body, Some(&len), &x(ElemType::Fp32))
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("inputs[0] (`x`) element 1 is 1"), "{e}");
    let (body, len) = binary_body(
        &json!({"inputs": [binary_input("x", "BOOL", json!([1, 3]), 3)]}),
        &[&[1, 0, 2]],
    );
    let e = decode_request(&body, Some(&len), &x(ElemType::Bool))
        .unwrap_err()
        .to_string();
    assert_eq!(e, "inputs[0] (`x`) element 2 is byte 2; BOOL takes 0 or 1");
}

#[test]
fn mixed_binary_and_json_inputs_and_binary_bytes() {
    let specs = [
        spec("a", ElemType::Fp32, &[2]),
        spec("b", ElemType::Int64, &[-1]),
        spec("s", ElemType::Bytes, &[-1]),
        spec("flag", ElemType::Bool, &[2]),
    ];
    let mut strings = Vec::new();
    for s in [&b"hi"[..], b"", b"\xff\x00bin"] {
        strings.extend_from_slice(&(s.len() as u32).to_le_bytes());
        strings.extend_from_slice(s);
    }
    let header = json!({"inputs": [
        binary_input("a", "FP32", json!([2]), 8),
        {"name": "b", "datatype": "INT64", "shape": [2], "data": [5, 6]},
        binary_input("s", "BYTES", json!([3]), strings.len()),
        binary_input("flag", "BOOL", json!([2]), 2),
    ]});
    let (body, len) = binary_body(
        &header,
        &[
            &le(&[1.5f32, f32::NEG_INFINITY], f32::to_le_bytes),
            &strings,
            &[1, 0],
        ],
    );
    let req = decode_request(&body, Some(&len), &specs).unwrap();
    assert_eq!(
        req.inputs[0].data,
        TensorData::Fp32(vec![1.5, f32::NEG_INFINITY])
    );
    assert_eq!(req.inputs[1].data, TensorData::Int64(vec![5, 6]));
    assert_eq!(
        req.inputs[2].data,
        TensorData::Bytes(vec![b"hi".to_vec(), vec![], b"\xff\x00bin".to_vec()])
    );
    assert_eq!(req.inputs[3].data, TensorData::Bool(vec![true, false]));

    // BYTES whose lengths do not add up.
    let header = json!({"inputs": [binary_input("s", "BYTES", json!([2]), 9)]});
    let bad = [2, 0, 0, 0, b'h', b'i', 9, 0, 0];
    let (body, len) = binary_body(&header, &[&bad]);
    let s = [spec("s", ElemType::Bytes, &[-1])];
    let e = decode_request(&body, Some(&len), &s)
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "inputs[0] (`s`): BYTES element 1 of 2 runs past its binary_data_size (9 bytes)"
    );
    let header = json!({"inputs": [binary_input("s", "BYTES", json!([1]), 9)]});
    let (body, len) = binary_body(&header, &[&bad]);
    let e = decode_request(&body, Some(&len), &s)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("inputs[0] (`s`): 3 bytes are left over after its 1 BYTES elements"),
        "{e}"
    );
}

#[test]
fn binary_framing_errors() {
    let specs = x(ElemType::Fp32);
    let data = le(&[1f32, 2.0, 3.0], f32::to_le_bytes);
    let header = json!({"inputs": [binary_input("x", "FP32", json!([1, 3]), 12)]});
    let (body, len) = binary_body(&header, &[&data]);
    decode_request(&body, Some(&len), &specs).unwrap();
    // Truncated.
    let e = decode_request(&body[..body.len() - 1], Some(&len), &specs).unwrap_err();
    assert_eq!(
        e.to_string(),
        "binary_data_size 12 for inputs[0] (`x`) runs past the end of the body (11 bytes of tensor data remain)"
    );
    // Header length too large, not a number.
    let e = decode_request(&body, Some("9999"), &specs).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "Inference-Header-Content-Length 9999 is larger than the body ({} bytes)",
            body.len()
        )
    );
    let e = decode_request(&body, Some("12a"), &specs).unwrap_err();
    assert_eq!(
        e.to_string(),
        "Inference-Header-Content-Length `12a` is not a number of bytes"
    );
    let e = decode_request(&body, Some("-1"), &specs).unwrap_err();
    assert!(matches!(e, OipError::Header(_)), "{e}");
    // Header length cutting the JSON short.
    let short = (len.parse::<usize>().unwrap() - 2).to_string();
    let e = decode_request(&body, Some(&short), &specs).unwrap_err();
    assert!(
        e.to_string().starts_with("request body is not valid JSON"),
        "{e}"
    );
    // Leftover bytes.
    let (body, len) = binary_body(&header, &[&data, &[0, 0]]);
    let e = decode_request(&body, Some(&len), &specs).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("2 bytes of binary tensor data after the last binary input"),
        "{e}"
    );
    // Size not matching the shape.
    let header = json!({"inputs": [binary_input("x", "FP32", json!([1, 3]), 8)]});
    let (body, len) = binary_body(&header, &[&data[..8]]);
    let e = decode_request(&body, Some(&len), &specs).unwrap_err();
    assert_eq!(
        e.to_string(),
        "binary_data_size 8 for inputs[0] (`x`) does not match its shape: 3 FP32 elements take 12 bytes"
    );
    // Binary without the header; both data and binary_data_size.
    let e = decode_request(header.to_string().as_bytes(), None, &specs).unwrap_err();
    assert!(
        e.to_string()
            .contains("no Inference-Header-Content-Length header"),
        "{e}"
    );
    let both = json!({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3],
                                  "parameters": {"binary_data_size": 12}}]});
    let (body, len) = binary_body(&both, &[&data]);
    let e = decode_request(&body, Some(&len), &specs).unwrap_err();
    assert_eq!(
        e.to_string(),
        "inputs[0] (`x`) has both `data` and parameters.binary_data_size; give one"
    );
    let neg = json!({"inputs": [binary_input("x", "FP32", json!([1, 3]), 0)]});
    let neg = neg
        .to_string()
        .replace("\"binary_data_size\":0", "\"binary_data_size\":-4");
    let e = decode_request(neg.as_bytes(), Some(&neg.len().to_string()), &specs).unwrap_err();
    assert_eq!(
        e.to_string(),
        "inputs[0] (`x`).parameters.binary_data_size must be a byte count, not -4"
    );
    // A header length with no binary inputs and nothing after the JSON is fine.
    let plain = one_input("x", "FP32", json!([1, 3]), json!([1, 2, 3])).to_string();
    decode_request(plain.as_bytes(), Some(&plain.len().to_string()), &specs).unwrap();
}

fn request(outputs: Vec<RequestedOutput>, binary_output_default: bool) -> InferRequest {
    InferRequest {
        id: None,
        parameters: Default::default(),
        inputs: vec![],
        outputs,
        binary_output_default,
    }
}

fn model_outputs() -> Vec<Tensor> {
    vec![
        Tensor::fp32("y", vec![2, 2], vec![1.0, -0.5, f32::NAN, f32::INFINITY]).unwrap(),
        Tensor::new(
            "label",
            vec![2],
            TensorData::Bytes(vec![b"cat".to_vec(), b"dog".to_vec()]),
        )
        .unwrap(),
        Tensor::new("n", vec![3], TensorData::Int64(vec![1, -2, i64::MAX])).unwrap(),
    ]
}

/// Splits a binary response and returns the header JSON and the tensor bytes.
fn split(body: &[u8], header_len: Option<usize>) -> (Value, Vec<u8>) {
    let n = header_len.expect("a binary response");
    (
        serde_json::from_slice(&body[..n]).unwrap(),
        body[n..].to_vec(),
    )
}

#[test]
fn encode_json_writes_non_finite_as_null() {
    let (body, h) =
        encode_response("m", None, None, &model_outputs(), &request(vec![], false)).unwrap();
    assert_eq!(h, None);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        v,
        json!({"model_name": "m", "outputs": [
            {"name": "y", "datatype": "FP32", "shape": [2, 2], "data": [1.0, -0.5, null, null]},
            {"name": "label", "datatype": "BYTES", "shape": [2], "data": ["cat", "dog"]},
            {"name": "n", "datatype": "INT64", "shape": [3], "data": [1, -2, i64::MAX]},
        ]})
    );
}

#[test]
fn encode_binary_by_default_and_per_output() {
    let outs = model_outputs();
    let (body, h) =
        encode_response("m", Some("1"), Some("i"), &outs, &request(vec![], true)).unwrap();
    let (header, bin) = split(&body, h);
    let sizes: Vec<_> = header["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            assert!(o.get("data").is_none());
            o["parameters"]["binary_data_size"].as_u64().unwrap() as usize
        })
        .collect();
    assert_eq!(sizes, vec![16, 14, 24]);
    assert_eq!(bin.len(), 54);
    let y: Vec<f32> = bin[..16]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(&y[..2], &[1.0, -0.5]);
    assert!(y[2].is_nan() && y[3] == f32::INFINITY);
    assert_eq!(&bin[16..30], b"\x03\0\0\0cat\x03\0\0\0dog");
    let n: Vec<i64> = bin[30..]
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(n, vec![1, -2, i64::MAX]);

    // A subset, in request order, one binary and one JSON overriding the default.
    let req = request(
        vec![
            RequestedOutput {
                name: "n".into(),
                binary: Some(true),
            },
            RequestedOutput {
                name: "label".into(),
                binary: None,
            },
        ],
        false,
    );
    let (body, h) = encode_response("m", None, None, &outs, &req).unwrap();
    let (header, bin) = split(&body, h);
    assert_eq!(
        header["outputs"],
        json!([
            {"name": "n", "datatype": "INT64", "shape": [3], "parameters": {"binary_data_size": 24}},
            {"name": "label", "datatype": "BYTES", "shape": [2], "data": ["cat", "dog"]},
        ])
    );
    assert_eq!(bin, le(&[1i64, -2, i64::MAX], i64::to_le_bytes));
    let req = request(
        vec![RequestedOutput {
            name: "y".into(),
            binary: Some(false),
        }],
        true,
    );
    let (body, h) = encode_response("m", None, None, &outs, &req).unwrap();
    assert_eq!(h, None);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["outputs"][0]["data"], json!([1.0, -0.5, null, null]));
}

#[test]
fn encode_errors() {
    let outs = model_outputs();
    let req = request(
        vec![RequestedOutput {
            name: "zz".into(),
            binary: None,
        }],
        false,
    );
    let e = encode_response("m", None, None, &outs, &req).unwrap_err();
    assert_eq!(
        e.to_string(),
        "unknown output `zz` (outputs[0]); the model's outputs are: y, label, n"
    );
    assert_eq!(e.status(), 400);
    let bin = [Tensor::new("b", vec![1], TensorData::Bytes(vec![vec![0xff]])).unwrap()];
    let e = encode_response("m", None, None, &bin, &request(vec![], false)).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("output `b` element 0 is not UTF-8"),
        "{e}"
    );
    assert!(encode_response("m", None, None, &bin, &request(vec![], true)).is_ok());
    let broken = [Tensor {
        name: "y".into(),
        shape: vec![2, 2],
        data: TensorData::Fp32(vec![1.0]),
    }];
    let e = encode_response("m", None, None, &broken, &request(vec![], false)).unwrap_err();
    assert_eq!(e.status(), 500);
    assert_eq!(e.to_string(), "output `y` has shape [2, 2] but 1 values");
}

fn valid_binary_request() -> (Vec<u8>, usize, Vec<TensorSpec>) {
    let specs = vec![
        spec("a", ElemType::Fp32, &[-1, 2]),
        spec("s", ElemType::Bytes, &[-1]),
        spec("b", ElemType::Int64, &[2]),
    ];
    let header = json!({"id": "1", "inputs": [
        binary_input("a", "FP16", json!([2, 2]), 8),
        binary_input("s", "BYTES", json!([1]), 6),
        {"name": "b", "datatype": "INT32", "shape": [2], "data": [1, 2]},
    ], "outputs": [{"name": "y", "parameters": {"binary_data": true}}]});
    let (body, len) = binary_body(
        &header,
        &[
            &le(&[0x3C00u16, 0, 0xC100, 0x7BFF], u16::to_le_bytes),
            &[2, 0, 0, 0, b'o', b'k'],
        ],
    );
    (body, len.parse().unwrap(), specs)
}

#[test]
fn the_valid_binary_request_for_the_fuzzer_is_valid() {
    let (body, len, specs) = valid_binary_request();
    let req = decode_request(&body, Some(&len.to_string()), &specs).unwrap();
    assert_eq!(
        req.inputs[0].data,
        TensorData::Fp32(vec![1.0, 0.0, -2.5, 65504.0])
    );
    assert_eq!(req.inputs[2].data, TensorData::Int64(vec![1, 2]));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512),
                                   header in proptest::option::of(0usize..600)) {
        let specs = x(ElemType::Fp32);
        let h = header.map(|n| n.to_string());
        if let Err(e) = decode_request(&body, h.as_deref(), &specs) {
            prop_assert_eq!(e.status(), 400);
        }
    }

    #[test]
    fn mutated_binary_requests_never_panic(edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
                                           cut in any::<prop::sample::Index>(),
                                           delta in -3i64..3) {
        let (mut body, len, specs) = valid_binary_request();
        for (at, byte) in edits {
            let i = at.index(body.len());
            body[i] = byte;
        }
        body.truncate(cut.index(body.len() + 1).max(body.len() / 2));
        let h = (len as i64 + delta).to_string();
        match decode_request(&body, Some(&h), &specs) {
            Ok(req) => {
                // Whatever decoded must be consistent, and encodable.
                for t in &req.inputs {
                    prop_assert_eq!(t.shape.iter().product::<usize>(), t.data.len());
                }
                let outs = req.inputs.clone();
                let id = req.id.clone();
                let all = InferRequest { outputs: vec![], ..req };
                prop_assert!(encode_response("m", None, id.as_deref(), &outs, &all).is_ok());
            }
            Err(e) => prop_assert_eq!(e.status(), 400),
        }
    }

    #[test]
    fn json_numbers_round_trip(v in proptest::collection::vec(any::<f32>().prop_filter("finite", |f| f.is_finite()), 0..40)) {
        let n = v.len();
        let specs = [spec("x", ElemType::Fp32, &[-1])];
        let body = one_input("x", "FP32", json!([n]), json!(v));
        let req = decode(&body, &specs).unwrap();
        let (out, _) = encode_response("m", None, None, &req.inputs, &req).unwrap();
        let back: Value = serde_json::from_slice(&out).unwrap();
        let got: Vec<f32> = back["outputs"][0]["data"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
        prop_assert_eq!(got, v);
    }
}
