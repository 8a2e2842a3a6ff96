//! JSON requests: data layouts, conversions, and errors naming their field.

use super::*;

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
    assert_eq!(
        e,
        "inputs[0].data[1] is 1e300, out of range for the model's FP32"
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
