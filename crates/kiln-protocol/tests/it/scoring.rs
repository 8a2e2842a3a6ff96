//! MLflow scoring protocol: decoding `/invocations` bodies and encoding predictions.

use kiln_ml::{ElemType, Tensor, TensorData, TensorSpec};
use kiln_protocol::scoring::{
    Batch, BodyFormat, ModelInputs, ScoringError, decode, encode_predictions, parse_content_type,
};
use kiln_transform::{Column, DType, Value};
use proptest::prelude::*;
use serde_json::json;

const JSON: Option<&str> = Some("application/json");
const CSV: Option<&str> = Some("text/csv");

fn columns() -> Vec<Column> {
    vec![
        Column::new("carrier", DType::Categorical),
        Column::new("dep_delay", DType::Float),
        Column::new("distance", DType::Int),
        Column::new("weekend", DType::Bool),
        Column::new("day", DType::Date),
        Column::new("sched", DType::Timestamp),
    ]
}

fn expected_rows() -> Batch {
    const DAY: i64 = 86_400_000_000;
    const HOUR: i64 = 3_600_000_000;
    Batch::Rows {
        rows: vec![
            vec![
                Value::Str("UA".into()),
                Value::Float(3.5),
                Value::Int(1400),
                Value::Bool(true),
                Value::Date(15706),
                Value::Timestamp(15706 * DAY + 5 * HOUR),
            ],
            vec![
                Value::Str("AA".into()),
                Value::Null,
                Value::Int(200),
                Value::Bool(false),
                Value::Date(15707),
                Value::Timestamp(15707 * DAY + 6 * HOUR + HOUR / 2),
            ],
        ],
    }
}

fn decode_columns(ct: Option<&str>, body: &str) -> Result<Batch, ScoringError> {
    decode(ct, body.as_bytes(), ModelInputs::Columns(&columns()))
}

fn json_body(v: serde_json::Value) -> String {
    v.to_string()
}

#[test]
fn every_format_gives_the_same_rows() {
    // Columns in another order, an extra column, numbers written as strings.
    let split = json!({"dataframe_split": {
    "index": [0, 1],
    "columns": ["sched", "distance", "extra", "carrier", "dep_delay", "weekend", "day"],
    "data": [
        ["2013-01-01 05:00:00", 1400, "x", "UA", 3.5, true, "2013-01-01"],
        ["2013-01-02T06:30:00", "200", 7, "AA", null, false, "2013-01-02"],
    ]}});
    let r0 = json!({"carrier": "UA", "dep_delay": "3.5", "distance": 1400.0, "weekend": true,
        "day": "2013-01-01", "sched": "2013-01-01T05:00:00Z", "extra": [1]});
    let r1 = json!({"sched": "2013-01-02 06:30", "day": "2013-01-02", "weekend": false,
        "distance": 200, "dep_delay": null, "carrier": "AA"});
    let records = json!({"dataframe_records": [r0, r1], "params": {"temperature": 1}});
    let instances = json!({"instances": [r0, r1]});
    let inputs_rows = json!({"inputs": [r0, r1]});
    let inputs_cols = json!({"inputs": {
        "carrier": ["UA", "AA"], "dep_delay": [3.5, null], "distance": [1400, 200],
        "weekend": [true, false], "day": ["2013-01-01", "2013-01-02"],
        "sched": ["2013-01-01 05:00:00", "2013-01-02 06:30:00"], "ignored": [1, 2, 3]}});
    for body in [split, records, instances, inputs_rows, inputs_cols] {
        let got = decode_columns(JSON, &json_body(body.clone()));
        assert_eq!(got, Ok(expected_rows()), "{body}");
    }
    let csv = "extra,carrier,dep_delay,distance,weekend,day,sched\r\n\
               1,UA,3.5,1400,True,2013-01-01,2013-01-01 05:00:00\r\n\
               \"a,b\",AA,,200,false,2013-01-02,2013-01-02T06:30:00\r\n";
    assert_eq!(decode_columns(CSV, csv), Ok(expected_rows()));
    // A byte-order mark and NA markers are fine too.
    let csv = "\u{feff}carrier,dep_delay,distance,weekend,day,sched\n\
               UA,3.5,1400,true,2013-01-01,2013-01-01 05:00:00\n\
               AA,NA,200,false,2013-01-02,2013-01-02 06:30:00\n";
    assert_eq!(decode_columns(CSV, csv), Ok(expected_rows()));
}

#[test]
fn missing_columns_name_the_column_and_row() {
    let body = json!({"dataframe_records": [
        {"carrier": "UA", "dep_delay": 1, "distance": 1, "weekend": true, "day": null, "sched": null},
        {"carrier": "UA", "dep_delay": 1, "weekend": true, "day": null, "sched": null},
    ]});
    let err = decode_columns(JSON, &json_body(body)).unwrap_err();
    assert_eq!(
        err,
        ScoringError::MissingColumn {
            column: "distance".into(),
            row: Some(1)
        }
    );
    assert_eq!(err.to_string(), "row 1: missing column `distance`");
    assert_eq!(err.status(), 400);

    let body = json!({"dataframe_split": {"columns": ["carrier"], "data": [["UA"]]}});
    let err = decode_columns(JSON, &json_body(body)).unwrap_err();
    assert!(
        matches!(&err, ScoringError::MissingColumn { column, row: None } if column == "dep_delay"),
        "{err:?}"
    );
    let err = decode_columns(CSV, "carrier,dep_delay\nUA,1\n").unwrap_err();
    assert!(err.to_string().contains("`distance`"), "{err}");
}

#[test]
fn wrong_types_name_row_and_column() {
    let row = |delay: serde_json::Value| {
        json!({"carrier": "UA", "dep_delay": delay, "distance": 1, "weekend": true,
               "day": null, "sched": null})
    };
    let body = json!({"dataframe_records": [row(json!(1.5)), row(json!("late"))]});
    let err = decode_columns(JSON, &json_body(body)).unwrap_err();
    assert!(
        matches!(&err, ScoringError::BadValue { row: 1, column, .. } if column == "dep_delay"),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "row 1, column `dep_delay`: expected a number, found the string \"late\""
    );
    assert_eq!(err.status(), 400);

    for (column, value) in [
        ("distance", json!(1.5)),
        ("distance", json!("1.5")),
        ("distance", json!(true)),
        ("weekend", json!(1)),
        ("carrier", json!(7)),
        ("day", json!("2013-02-30")),
        ("sched", json!([1])),
    ] {
        let mut r = row(json!(null));
        r[column] = value.clone();
        let body = json!({"instances": [r]});
        match decode_columns(JSON, &json_body(body)) {
            Err(ScoringError::BadValue {
                row: 0, column: c, ..
            }) if c == column => {}
            other => panic!("{column} = {value}: {other:?}"),
        }
    }

    let csv = "carrier,dep_delay,distance,weekend,day,sched\nUA,1,1,true,,\nAA,x1,2,false,,\n";
    let err = decode_columns(CSV, csv).unwrap_err();
    assert!(
        matches!(&err, ScoringError::BadValue { row: 1, column, .. } if column == "dep_delay"),
        "{err:?}"
    );
    // Lists of values have no column names: a columns model refuses them.
    let err = decode_columns(JSON, r#"{"instances": [[1, 2, 3]]}"#).unwrap_err();
    assert!(err.to_string().contains("named columns"), "{err}");
}

#[test]
fn exactly_one_input_field() {
    for body in [
        r#"{"inputs": [], "instances": []}"#,
        r#"{"params": {}}"#,
        r#"{}"#,
        r#"{"dataframe_split": {}, "dataframe_records": []}"#,
    ] {
        let err = decode_columns(JSON, body).unwrap_err();
        assert!(
            matches!(err, ScoringError::InputFormat { .. }),
            "{body}: {err:?}"
        );
        assert_eq!(err.status(), 400);
        let msg = err.to_string();
        assert!(
            msg.starts_with(
                "The input must be a JSON dictionary with exactly one of the input fields"
            ),
            "{msg}"
        );
    }
    let err = decode_columns(JSON, r#"{"inputs": [], "instances": []}"#).unwrap_err();
    assert!(
        err.to_string()
            .contains("Received dictionary with input fields: ['inputs', 'instances']"),
        "{err}"
    );
    let err = decode_columns(JSON, "[[1, 2]]").unwrap_err();
    assert!(err.to_string().contains("Received a list"), "{err}");
    let body: serde_json::Value = serde_json::from_slice(&err.to_json()).unwrap();
    assert_eq!(body["error_code"], "BAD_REQUEST");
    assert_eq!(body["message"], err.to_string());
}

#[test]
fn content_types() {
    assert_eq!(parse_content_type(JSON), Ok(BodyFormat::Json));
    assert_eq!(
        parse_content_type(Some("Application/JSON; charset=UTF-8")),
        Ok(BodyFormat::Json)
    );
    assert_eq!(
        parse_content_type(Some("text/csv;charset=\"utf-8\"")),
        Ok(BodyFormat::Csv)
    );
    let body = br#"{"inputs": []}"#;
    for ct in [
        None,
        Some(""),
        Some("text/plain"),
        Some("application/xml"),
        Some("application/json; charset=latin-1"),
        Some("text/csv; charset=iso-8859-1"),
        Some("application/json; format=pandas-split"),
        Some("application/json; charset=utf-8; orient=records"),
    ] {
        let err = decode(ct, body, ModelInputs::Columns(&columns())).unwrap_err();
        assert_eq!(err.status(), 415, "{ct:?}: {err}");
    }
    let err = parse_content_type(Some("text/plain")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "This predictor only supports the following content types: Types: ['text/csv', \
         'application/json']. Got 'text/plain'."
    );
    let err = parse_content_type(Some("application/json; charset=latin-1")).unwrap_err();
    assert_eq!(err, ScoringError::UnsupportedCharset("latin-1".into()));
    let err = parse_content_type(Some("application/json; format=pandas-split")).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("Unrecognized content type parameters: format.")
    );
}

#[test]
fn malformed_bodies() {
    let err = decode_columns(CSV, "a,b,c\n1,2,3\n4,5\n6,7,8\n").unwrap_err();
    assert_eq!(
        err,
        ScoringError::Csv {
            line: 3,
            message: "expected 3 fields (as in the header), found 2".into()
        }
    );
    assert!(err.to_string().contains("line 3"), "{err}");

    let body = b"{\"inputs\": [\"ok\", \"\xff\"]}";
    let offset = body.iter().position(|&b| b == 0xff).unwrap();
    for ct in [JSON, CSV] {
        let err = decode(ct, body, ModelInputs::Columns(&columns())).unwrap_err();
        assert_eq!(err, ScoringError::InvalidUtf8 { offset });
        assert!(err.to_string().contains(&format!("offset {offset}")));
    }

    let err = decode_columns(JSON, "{\n  \"inputs\": [1,\n   ]\n}").unwrap_err();
    match &err {
        ScoringError::InvalidJson { line, column, .. } => assert_eq!((*line, *column), (3, 4)),
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("line 3 column 4"), "{err}");
    assert_eq!(err.status(), 400);
    let err = decode_columns(JSON, r#"{"inputs": []} trailing"#).unwrap_err();
    assert!(
        matches!(err, ScoringError::InvalidJson { line: 1, .. }),
        "{err:?}"
    );

    for ct in [JSON, CSV] {
        for body in ["", " \n\t"] {
            assert_eq!(decode_columns(ct, body), Err(ScoringError::EmptyBody));
        }
    }
    // Nesting beyond serde_json's limit is an error, not a stack overflow.
    let deep = format!(
        "{{\"inputs\": {}{}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    assert!(matches!(
        decode_columns(JSON, &deep),
        Err(ScoringError::InvalidJson { .. })
    ));
}

fn spec(name: &str, datatype: ElemType, shape: &[i64]) -> TensorSpec {
    TensorSpec {
        name: name.into(),
        datatype,
        shape: shape.to_vec(),
    }
}

#[test]
fn every_format_gives_the_same_tensor() {
    let bodies = [
        json!({"dataframe_split": {"columns": ["a", "b", "c"], "data": [[1, 2.5, 3], [4, 5, "6"]]}}),
        json!({"dataframe_split": {"data": [[1, 2.5, 3], [4, 5, 6]]}}),
        json!({"dataframe_records": [{"a": 1, "b": 2.5, "c": 3}, {"a": 4, "b": 5, "c": 6}]}),
        json!({"instances": [[1, 2.5, 3], [4, 5, 6]]}),
        json!({"instances": [{"x": [1, 2.5, 3]}, {"x": [4, 5, 6]}]}),
        json!({"inputs": [[1, 2.5, 3], [4, 5, 6]], "params": null}),
        json!({"inputs": {"x": [[1, 2.5, 3], [4, 5, 6]]}}),
    ];
    let csv = "a,b,c\n1,2.5,3\n4,5,6\n";
    for (datatype, data) in [
        (
            ElemType::Fp32,
            TensorData::Fp32(vec![1.0, 2.5, 3.0, 4.0, 5.0, 6.0]),
        ),
        (
            ElemType::Fp64,
            TensorData::Fp64(vec![1.0, 2.5, 3.0, 4.0, 5.0, 6.0]),
        ),
    ] {
        let specs = [spec("x", datatype, &[-1, 3])];
        let want = Batch::Tensors(vec![Tensor::new("x", vec![2, 3], data).unwrap()]);
        for body in &bodies {
            let got = decode(
                JSON,
                body.to_string().as_bytes(),
                ModelInputs::Tensors(&specs),
            );
            assert_eq!(got.as_ref(), Ok(&want), "{body}");
        }
        let got = decode(CSV, csv.as_bytes(), ModelInputs::Tensors(&specs));
        assert_eq!(got, Ok(want));
    }
    // 2.5 is no integer.
    let specs = [spec("x", ElemType::Int64, &[-1, 3])];
    for body in &bodies {
        let err = decode(
            JSON,
            body.to_string().as_bytes(),
            ModelInputs::Tensors(&specs),
        );
        assert!(err.is_err(), "{body}");
    }
    let got = decode(CSV, b"a,b,c\n1,2,3\n", ModelInputs::Tensors(&specs)).unwrap();
    let want = Tensor::new("x", vec![1, 3], TensorData::Int64(vec![1, 2, 3])).unwrap();
    assert_eq!(got, Batch::Tensors(vec![want]));
}

#[test]
fn several_tensor_inputs() {
    let specs = [
        spec("a", ElemType::Fp32, &[-1, 2]),
        spec("b", ElemType::Int64, &[-1]),
    ];
    let want = Batch::Tensors(vec![
        Tensor::new("a", vec![2, 2], TensorData::Fp32(vec![1.0, 2.0, 3.0, 4.0])).unwrap(),
        Tensor::new("b", vec![2], TensorData::Int64(vec![5, 6])).unwrap(),
    ]);
    for body in [
        json!({"inputs": {"b": [5, 6], "a": [[1, 2], [3, 4]]}}),
        json!({"instances": [{"a": [1, 2], "b": 5}, {"b": 6, "a": [3, 4]}]}),
    ] {
        let got = decode(
            JSON,
            body.to_string().as_bytes(),
            ModelInputs::Tensors(&specs),
        );
        assert_eq!(got.as_ref(), Ok(&want), "{body}");
        assert_eq!(got.unwrap().len(), 2);
    }
    let err = decode(
        JSON,
        br#"{"inputs": {"a": [[1, 2]]}}"#,
        ModelInputs::Tensors(&specs),
    );
    assert!(err.unwrap_err().to_string().contains("missing input `b`"));
    let err = decode(CSV, b"a,b\n1,2\n", ModelInputs::Tensors(&specs)).unwrap_err();
    assert!(err.to_string().contains("2 inputs (a, b)"), "{err}");
}

#[test]
fn tensor_errors_and_missing_values() {
    let specs = [spec("x", ElemType::Fp32, &[-1, 3])];
    let tensors = ModelInputs::Tensors(&specs);
    let err = decode(CSV, b"a,b\n1,2\n", tensors).unwrap_err();
    assert!(err.to_string().contains("takes 3 columns"), "{err}");
    assert_eq!(err.status(), 400);
    let err = decode(JSON, br#"{"instances": [[1, 2, 3], [4, 5]]}"#, tensors).unwrap_err();
    assert!(err.to_string().contains("element [1]"), "{err}");
    let err = decode(JSON, br#"{"inputs": [[1, 2]]}"#, tensors).unwrap_err();
    assert!(err.to_string().contains("shape"), "{err}");
    let err = decode(
        JSON,
        br#"{"dataframe_records": [{"a": 1, "b": 2, "c": 3}, {"a": 1, "b": "x", "c": 3}]}"#,
        tensors,
    )
    .unwrap_err();
    assert!(
        matches!(&err, ScoringError::BadValue { row: 1, column, .. } if column == "b"),
        "{err:?}"
    );

    // NaN only for floats: CSV `nan`, empty fields and JSON null.
    let Batch::Tensors(t) = decode(CSV, b"a,b,c\nnan,,3\n", tensors).unwrap() else {
        panic!("not tensors")
    };
    let TensorData::Fp32(v) = &t[0].data else {
        panic!("not FP32")
    };
    assert!(v[0].is_nan() && v[1].is_nan() && v[2] == 3.0, "{v:?}");
    let ints = [spec("x", ElemType::Int64, &[-1, 3])];
    for body in ["a,b,c\nnan,1,2\n", "a,b,c\n,1,2\n"] {
        let err = decode(CSV, body.as_bytes(), ModelInputs::Tensors(&ints)).unwrap_err();
        assert!(
            matches!(&err, ScoringError::BadValue { row: 0, column, .. } if column == "a"),
            "{err:?}"
        );
    }
    // A 1-D input takes a single column; `[-1, 1]` takes a flat list.
    let flat = [spec("x", ElemType::Fp64, &[-1, 1])];
    let got = decode(JSON, br#"{"inputs": [1, 2]}"#, ModelInputs::Tensors(&flat)).unwrap();
    let want = Tensor::new("x", vec![2, 1], TensorData::Fp64(vec![1.0, 2.0])).unwrap();
    assert_eq!(got, Batch::Tensors(vec![want]));
}

#[test]
fn wide_shuffled_rows_are_linear() {
    // Rows listing 3,000 keys in opposite orders: a key-by-key scan would be quadratic.
    let k = 3000;
    let forward: serde_json::Map<String, serde_json::Value> =
        (0..k).map(|i| (format!("c{i:05}"), json!(i))).collect();
    let mut text = String::from("{\"dataframe_records\": [");
    for r in 0..60 {
        if r > 0 {
            text.push(',');
        }
        let keys: Vec<usize> = if r % 2 == 0 {
            (0..k).collect()
        } else {
            (0..k).rev().collect()
        };
        text.push('{');
        for (j, i) in keys.iter().enumerate() {
            if j > 0 {
                text.push(',');
            }
            text.push_str(&format!("\"c{i:05}\":{i}"));
        }
        text.push('}');
    }
    text.push_str("]}");
    assert_eq!(forward.len(), k);
    let specs = [spec("x", ElemType::Fp32, &[-1, k as i64])];
    let got = decode(JSON, text.as_bytes(), ModelInputs::Tensors(&specs)).unwrap();
    let Batch::Tensors(t) = got else { panic!() };
    assert_eq!(t[0].shape, vec![60, k]);
    let TensorData::Fp32(v) = &t[0].data else {
        panic!()
    };
    assert_eq!(v[k + 7], 7.0);
}

fn predictions(outputs: &[Tensor]) -> serde_json::Value {
    let bytes = encode_predictions(outputs).unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[test]
fn encodes_predictions() {
    let scores = Tensor::fp32("y", vec![3], vec![0.1, 1.0, f32::NAN]).unwrap();
    assert_eq!(
        predictions(&[scores]),
        json!({"predictions": [0.1, 1.0, null]})
    );
    let column = Tensor::new("y", vec![2, 1], TensorData::Int64(vec![3, -4])).unwrap();
    assert_eq!(predictions(&[column]), json!({"predictions": [3, -4]}));
    let probs = Tensor::fp32("probabilities", vec![2, 2], vec![0.25, 0.75, 0.5, 0.5]).unwrap();
    assert_eq!(
        predictions(std::slice::from_ref(&probs)),
        json!({"predictions": [[0.25, 0.75], [0.5, 0.5]]})
    );
    let label = Tensor::new("label", vec![2], TensorData::Int64(vec![1, 0])).unwrap();
    let names = Tensor::new(
        "name",
        vec![2, 1],
        TensorData::Bytes(vec![b"yes".to_vec(), b"n\"o".to_vec()]),
    )
    .unwrap();
    assert_eq!(
        predictions(&[label.clone(), probs.clone(), names]),
        json!({"predictions": [
            {"label": 1, "probabilities": [0.25, 0.75], "name": "yes"},
            {"label": 0, "probabilities": [0.5, 0.5], "name": "n\"o"},
        ]})
    );
    let cube = Tensor::new(
        "c",
        vec![1, 2, 2],
        TensorData::Bool(vec![true, false, false, true]),
    )
    .unwrap();
    assert_eq!(
        predictions(&[cube]),
        json!({"predictions": [[[true, false], [false, true]]]})
    );
    let empty = Tensor::fp32("y", vec![0], vec![]).unwrap();
    assert_eq!(predictions(&[empty]), json!({"predictions": []}));

    let short = Tensor::new("label", vec![1], TensorData::Int64(vec![1])).unwrap();
    let err = encode_predictions(&[probs, short]).unwrap_err();
    assert_eq!(err.status(), 500);
    assert!(encode_predictions(&[]).is_err());
    let bad = Tensor {
        name: "z".into(),
        shape: vec![2, 3],
        data: TensorData::Int64(vec![1]),
    };
    assert!(encode_predictions(&[bad]).is_err());
    let zero_width = Tensor {
        name: "z".into(),
        shape: vec![2, 0, usize::MAX, usize::MAX],
        data: TensorData::Int64(vec![]),
    };
    assert_eq!(predictions(&[zero_width]), json!({"predictions": [[], []]}));
}

fn any_content_type() -> impl Strategy<Value = Option<&'static str>> {
    prop::sample::select(vec![
        JSON,
        CSV,
        Some("application/json; charset=utf-8"),
        None,
    ])
}

fn decode_all(ct: Option<&str>, body: &[u8]) {
    let cols = columns();
    let specs = [spec("x", ElemType::Fp32, &[-1, 3])];
    let free = [spec("x", ElemType::Fp64, &[-1, -1])];
    let several = [
        spec("a", ElemType::Int64, &[-1, 2]),
        spec("b", ElemType::Bool, &[-1]),
    ];
    for inputs in [
        ModelInputs::Columns(&cols),
        ModelInputs::Tensors(&specs),
        ModelInputs::Tensors(&free),
        ModelInputs::Tensors(&several),
    ] {
        if let Err(e) = decode(ct, body, inputs) {
            assert!(matches!(e.status(), 400 | 415));
            let _ = e.to_json();
        }
    }
}

fn arbitrary_json() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value as V;
    let leaf = prop_oneof![
        Just(V::Null),
        any::<bool>().prop_map(V::Bool),
        any::<i64>().prop_map(|i| json!(i)),
        (-1e9f64..1e9).prop_map(|x| json!(x)),
        prop::sample::select(vec!["", "3.5", "nan", "true", "2013-01-01", "x", "12"])
            .prop_map(|s| json!(s)),
    ];
    let keys = prop::sample::select(vec![
        "columns",
        "data",
        "index",
        "x",
        "a",
        "b",
        "carrier",
        "dep_delay",
        "distance",
        "day",
    ]);
    leaf.prop_recursive(4, 64, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(V::Array),
            prop::collection::vec((keys.clone(), inner), 0..6).prop_map(|fields| {
                V::Object(
                    fields
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v))
                        .collect(),
                )
            }),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(ct in any_content_type(), body in prop::collection::vec(any::<u8>(), 0..256)) {
        decode_all(ct, &body);
    }

    #[test]
    fn json_like_bodies_never_panic(
        key in prop::sample::select(vec!["dataframe_split", "dataframe_records", "instances", "inputs"]),
        rest in "[\\[\\]{}\":,0-9a-cx \\-.e]{0,120}",
    ) {
        let body = format!("{{\"{key}\": {rest}");
        decode_all(JSON, body.as_bytes());
        decode_all(CSV, rest.as_bytes());
    }

    #[test]
    fn ragged_dataframes_never_panic(
        columns in prop::collection::vec(prop::sample::select(vec!["a", "b", "carrier", "x"]), 0..4),
        data in prop::collection::vec(prop::collection::vec(arbitrary_json(), 0..4), 0..4),
    ) {
        let body = json!({"dataframe_split": {"columns": columns, "data": data}}).to_string();
        decode_all(JSON, body.as_bytes());
    }

    #[test]
    fn structured_json_never_panics(
        key in prop::sample::select(vec!["dataframe_split", "dataframe_records", "instances", "inputs"]),
        value in arbitrary_json(),
    ) {
        let body = json!({ key: value }).to_string();
        decode_all(JSON, body.as_bytes());
    }
}
