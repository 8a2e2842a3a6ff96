//! The binary tensor extension, and fuzzing the decoder.

use super::*;

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
    assert_eq!(
        e,
        "inputs[0] (`x`) element 1 is 1e300, out of range for the model's FP32"
    );
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
