//! Responses: JSON, binary, output selection.

use super::*;

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
