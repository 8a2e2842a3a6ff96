//! Corrupt models and bad inputs: typed errors that name what is wrong, never a panic.

use kiln_ml::{MlError, Predictor, Tensor, TensorData};
use kiln_onnx::{OnnxError, OnnxModel};
use prost::Message;
use tract_onnx::pb;

use crate::fixtures;

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn bad_input(r: kiln_ml::Result<Vec<Tensor>>) -> String {
    match r {
        Err(MlError::BadInput(m)) => m,
        other => panic!("expected BadInput, got {other:?}"),
    }
}

fn x(rows: usize, cols: usize, v: f32) -> Tensor {
    Tensor::fp32("X", vec![rows, cols], vec![v; rows * cols]).unwrap()
}

#[test]
fn garbage_bytes_are_a_decode_error() {
    for bytes in [
        &b""[..],
        b"hello, world",
        b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR",
        &[0xff; 64],
    ] {
        let e = OnnxModel::from_bytes(bytes).unwrap_err();
        assert!(
            matches!(e, OnnxError::Decode(_) | OnnxError::Invalid(_)),
            "{e}"
        );
    }
    let mut rng = Rng(7);
    for _ in 0..300 {
        let n = rng.below(512);
        let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
        assert!(OnnxModel::from_bytes(&bytes).is_err());
    }
}

#[test]
fn truncated_models_are_refused() {
    for name in [
        "gb_classifier",
        "logreg_binary",
        "onehot_ridge",
        "mlp_classifier",
    ] {
        let bytes = fixtures::model_bytes(name);
        let e = OnnxModel::from_bytes(&bytes[..bytes.len() / 2]).unwrap_err();
        assert!(matches!(e, OnnxError::Decode(_)), "{name}: {e}");
        // Any cut: an error or a model that still works, never a panic.
        for cut in (0..bytes.len()).step_by((bytes.len() / 97).max(1)) {
            if let Ok(m) = OnnxModel::from_bytes(&bytes[..cut]) {
                let cols = m.inputs()[0].shape.get(1).copied().unwrap_or(1).max(1) as usize;
                let _ = m.predict(&[x(2, cols, 1.0)]);
            }
        }
    }
}

#[test]
fn damaged_models_never_panic() {
    let mut rng = Rng(42);
    let names = fixtures::manifest().fixtures;
    for round in 0..400 {
        let name = &names[round % names.len()];
        let mut bytes = fixtures::model_bytes(name);
        for _ in 0..1 + rng.below(4) {
            let i = rng.below(bytes.len());
            bytes[i] = rng.next() as u8;
        }
        if let Ok(m) = OnnxModel::from_bytes(&bytes) {
            for spec in m.inputs() {
                let cols = spec.shape.get(1).copied().unwrap_or(4).max(1) as usize;
                let t = match spec.datatype {
                    kiln_ml::ElemType::Fp64 => Tensor::new(
                        spec.name.clone(),
                        vec![3, cols],
                        TensorData::Fp64(vec![0.5; 3 * cols]),
                    )
                    .unwrap(),
                    _ => {
                        Tensor::fp32(spec.name.clone(), vec![3, cols], vec![0.5; 3 * cols]).unwrap()
                    }
                };
                let _ = m.predict(&[t]);
            }
        }
    }
}

/// Replaces `from` by `to` (same length, so the protobuf stays well-formed) in a fixture.
fn patched(name: &str, from: &str, to: &str) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let mut bytes = fixtures::model_bytes(name);
    let f = from.as_bytes();
    let mut hits = 0;
    for i in 0..=bytes.len() - f.len() {
        if &bytes[i..i + f.len()] == f {
            bytes[i..i + f.len()].copy_from_slice(to.as_bytes());
            hits += 1;
        }
    }
    assert!(hits > 0, "{from} not in {name}");
    bytes
}

#[test]
fn an_unsupported_operator_is_named() {
    let e =
        OnnxModel::from_bytes(&patched("logreg_binary_zipmap", "ZipMap", "FooMap")).unwrap_err();
    assert!(
        matches!(&e, OnnxError::UnsupportedOp { op, .. } if op == "FooMap"),
        "{e}"
    );
    assert!(e.to_string().contains("FooMap"), "{e}");
    // In a neural network (the tract path) too.
    let e = OnnxModel::from_bytes(&patched("mlp_regressor", "Relu", "Relv")).unwrap_err();
    assert!(
        matches!(&e, OnnxError::UnsupportedOp { op, .. } if op == "Relv"),
        "{e}"
    );
}

#[test]
fn a_bad_attribute_is_named() {
    let e = OnnxModel::from_bytes(&patched("gb_classifier", "LOGISTIC", "LOGISTIX")).unwrap_err();
    match &e {
        OnnxError::Attribute { attribute, op, .. } => {
            assert_eq!(attribute, "post_transform");
            assert_eq!(op, "TreeEnsembleClassifier");
        }
        other => panic!("{other}"),
    }
    assert!(e.to_string().contains("LOGISTIX"), "{e}");
    let e =
        OnnxModel::from_bytes(&patched("rf_regressor", "BRANCH_LEQ", "BRANCH_LEX")).unwrap_err();
    assert!(
        matches!(&e, OnnxError::Attribute { attribute, .. } if attribute == "nodes_modes"),
        "{e}"
    );
}

fn model(name: &str) -> OnnxModel {
    OnnxModel::from_bytes(&fixtures::model_bytes(name)).unwrap()
}

#[test]
fn wrong_inputs_are_bad_input_naming_the_input() {
    for name in ["gb_classifier", "mlp_classifier"] {
        let m = model(name);
        let cols = m.inputs()[0].shape[1] as usize;
        // Wrong name.
        let t = Tensor::fp32("features", vec![1, cols], vec![0.0; cols]).unwrap();
        let msg = bad_input(m.predict(&[t]));
        assert!(
            msg.contains("`features`") && msg.contains("`X`"),
            "{name}: {msg}"
        );
        // Wrong width.
        let msg = bad_input(m.predict(&[x(2, cols - 1, 0.0)]));
        assert!(
            msg.contains("`X`") && msg.contains("shape"),
            "{name}: {msg}"
        );
        // Wrong rank.
        let t = Tensor::fp32("X", vec![cols], vec![0.0; cols]).unwrap();
        assert!(bad_input(m.predict(&[t])).contains("`X`"), "{name}");
        // Wrong type.
        let t = Tensor::new("X", vec![1, cols], TensorData::Fp64(vec![0.0; cols])).unwrap();
        let msg = bad_input(m.predict(&[t]));
        assert!(msg.contains("`X`") && msg.contains("FP64"), "{name}: {msg}");
        let t = Tensor::new(
            "X",
            vec![1, cols],
            TensorData::Bytes(vec![b"a".to_vec(); cols]),
        )
        .unwrap();
        assert!(bad_input(m.predict(&[t])).contains("`X`"), "{name}");
        // Missing, twice, and a shape that does not match the data.
        assert!(
            bad_input(m.predict(&[])).contains("`X` is missing"),
            "{name}"
        );
        let msg = bad_input(m.predict(&[x(1, cols, 0.0), x(1, cols, 0.0)]));
        assert!(msg.contains("`X`"), "{name}: {msg}");
        let t = Tensor {
            name: "X".into(),
            shape: vec![4, cols],
            data: TensorData::Fp32(vec![0.0; cols]),
        };
        assert!(bad_input(m.predict(&[t])).contains("`X`"), "{name}");
        let t = Tensor {
            name: "X".into(),
            shape: vec![usize::MAX, 2],
            data: TensorData::Fp32(vec![0.0; cols]),
        };
        assert!(bad_input(m.predict(&[t])).contains("`X`"), "{name}");
    }
}

#[test]
fn odd_values_and_sizes_do_not_panic() {
    for name in fixtures::manifest().fixtures {
        let m = model(&name);
        let spec = &m.inputs()[0];
        let cols = spec.shape[1] as usize;
        for v in [
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            1e300,
            -1e300,
            0.0,
        ] {
            for rows in [0, 1, 3] {
                let t = match spec.datatype {
                    kiln_ml::ElemType::Fp64 => Tensor::new(
                        "X",
                        vec![rows, cols],
                        TensorData::Fp64(vec![v; rows * cols]),
                    )
                    .unwrap(),
                    _ => x(rows, cols, v as f32),
                };
                let out = m.predict(&[t]);
                if rows > 0 {
                    // Missing values are data: every model answers them (trees route NaN, linear
                    // models propagate it).
                    let out = out.unwrap_or_else(|e| panic!("{name}: {v} × {rows}: {e}"));
                    assert_eq!(out[0].shape[0], rows, "{name}");
                }
            }
        }
    }
}

// ---- hand-made graphs ----------------------------------------------------------------------

fn attr_ints(name: &str, v: &[i64]) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: pb::attribute_proto::AttributeType::Ints as i32,
        ints: v.to_vec(),
        ..Default::default()
    }
}

fn attr_floats(name: &str, v: &[f32]) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: pb::attribute_proto::AttributeType::Floats as i32,
        floats: v.to_vec(),
        ..Default::default()
    }
}

fn attr_strings(name: &str, v: &[&str]) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: pb::attribute_proto::AttributeType::Strings as i32,
        strings: v.iter().map(|s| s.as_bytes().to_vec()).collect(),
        ..Default::default()
    }
}

fn tensor_info(name: &str, elem: i32, dims: &[i64]) -> pb::ValueInfoProto {
    use pb::tensor_shape_proto::{Dimension, dimension::Value};
    pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: elem,
                shape: Some(pb::TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|&d| Dimension {
                            value: Some(if d < 0 {
                                Value::DimParam("N".into())
                            } else {
                                Value::DimValue(d)
                            }),
                            ..Default::default()
                        })
                        .collect(),
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn one_node_model(
    node: pb::NodeProto,
    inputs: Vec<pb::ValueInfoProto>,
    outputs: Vec<pb::ValueInfoProto>,
) -> Vec<u8> {
    pb::ModelProto {
        ir_version: 8,
        opset_import: vec![
            pb::OperatorSetIdProto {
                domain: String::new(),
                version: 18,
            },
            pb::OperatorSetIdProto {
                domain: "ai.onnx.ml".into(),
                version: 3,
            },
        ],
        graph: Some(pb::GraphProto {
            name: "g".into(),
            node: vec![node],
            input: inputs,
            output: outputs,
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

const FLOAT: i32 = 1;
const INT64: i32 = 7;

/// A one-tree regressor: x0 <= 0.5 ? (x1 != 2 ? 1 : 2) : 3, node 1 sending NaN left.
fn stump(modify: impl FnOnce(&mut pb::NodeProto)) -> Vec<u8> {
    let mut node = pb::NodeProto {
        name: "trees".into(),
        op_type: "TreeEnsembleRegressor".into(),
        domain: "ai.onnx.ml".into(),
        input: vec!["X".into()],
        output: vec!["Y".into()],
        attribute: vec![
            attr_ints("nodes_treeids", &[0, 0, 0, 0, 0]),
            attr_ints("nodes_nodeids", &[0, 1, 2, 3, 4]),
            attr_ints("nodes_featureids", &[0, 1, 0, 0, 0]),
            attr_strings(
                "nodes_modes",
                &["BRANCH_LEQ", "BRANCH_NEQ", "LEAF", "LEAF", "LEAF"],
            ),
            attr_floats("nodes_values", &[0.5, 2.0, 0.0, 0.0, 0.0]),
            attr_ints("nodes_truenodeids", &[1, 2, 0, 0, 0]),
            attr_ints("nodes_falsenodeids", &[4, 3, 0, 0, 0]),
            attr_ints("target_treeids", &[0, 0, 0]),
            attr_ints("target_nodeids", &[2, 3, 4]),
            attr_ints("target_ids", &[0, 0, 0]),
            attr_floats("target_weights", &[1.0, 2.0, 3.0]),
        ],
        ..Default::default()
    };
    modify(&mut node);
    one_node_model(
        node,
        vec![tensor_info("X", FLOAT, &[-1, 2])],
        vec![tensor_info("Y", FLOAT, &[-1, 1])],
    )
}

fn set_ints(node: &mut pb::NodeProto, name: &str, v: &[i64]) {
    node.attribute
        .iter_mut()
        .find(|a| a.name == name)
        .unwrap()
        .ints = v.to_vec();
}

#[test]
fn hand_made_trees_follow_onnxruntime() {
    let m = OnnxModel::from_bytes(&stump(|_| {})).unwrap();
    let t = Tensor::fp32(
        "X",
        vec![5, 2],
        vec![0.0, 1.0, 0.0, 2.0, 0.9, 0.0, 0.0, f32::NAN, f32::NAN, 0.0],
    )
    .unwrap();
    let y = m.predict(&[t]).unwrap();
    // NaN != 2 holds, so onnxruntime takes the true branch at a BRANCH_NEQ node; NaN <= 0.5 fails.
    assert_eq!(y[0].data, TensorData::Fp32(vec![1.0, 2.0, 3.0, 1.0, 3.0]));
    assert_eq!(y[0].shape, vec![5, 1]);
}

#[test]
fn hand_made_tree_errors_name_the_attribute() {
    let cyc = stump(|n| set_ints(n, "nodes_truenodeids", &[1, 0, 0, 0, 0]));
    let e = OnnxModel::from_bytes(&cyc).unwrap_err();
    assert!(
        matches!(&e, OnnxError::Attribute { node, .. } if node == "trees"),
        "{e}"
    );
    assert!(e.to_string().contains("cycle"), "{e}");
    let dangling = stump(|n| set_ints(n, "nodes_falsenodeids", &[9, 3, 0, 0, 0]));
    let e = OnnxModel::from_bytes(&dangling).unwrap_err();
    assert!(
        e.to_string().contains("nodes_falsenodeids") && e.to_string().contains("no node 9"),
        "{e}"
    );
    let short = stump(|n| set_ints(n, "nodes_featureids", &[0, 1]));
    let e = OnnxModel::from_bytes(&short).unwrap_err();
    assert!(e.to_string().contains("nodes_featureids"), "{e}");
    let no_weight = stump(|n| {
        set_ints(n, "target_treeids", &[0, 0]);
        set_ints(n, "target_nodeids", &[2, 3]);
        set_ints(n, "target_ids", &[0, 0]);
        n.attribute
            .iter_mut()
            .find(|a| a.name == "target_weights")
            .unwrap()
            .floats = vec![1.0, 2.0];
    });
    let e = OnnxModel::from_bytes(&no_weight).unwrap_err();
    assert!(
        e.to_string().contains("leaf 4 of tree 0 has no weight"),
        "{e}"
    );
    // Too few columns at run time.
    let m = OnnxModel::from_bytes(&stump(|_| {})).unwrap();
    let t = Tensor::fp32("X", vec![1, 1], vec![0.0]).unwrap();
    assert!(bad_input(m.predict(&[t])).contains("`X`"));
}

#[test]
fn array_feature_extractor_out_of_range_is_bad_input() {
    let node = pb::NodeProto {
        name: "afe".into(),
        op_type: "ArrayFeatureExtractor".into(),
        domain: "ai.onnx.ml".into(),
        input: vec!["X".into(), "I".into()],
        output: vec!["Y".into()],
        ..Default::default()
    };
    let bytes = one_node_model(
        node,
        vec![
            tensor_info("X", FLOAT, &[-1, -1]),
            tensor_info("I", INT64, &[-1]),
        ],
        vec![tensor_info("Y", FLOAT, &[-1, -1])],
    );
    let m = OnnxModel::from_bytes(&bytes).unwrap();
    let xs = Tensor::fp32("X", vec![2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
    let ok = Tensor::new("I", vec![2], TensorData::Int64(vec![2, 0])).unwrap();
    let y = m.predict(&[xs.clone(), ok]).unwrap();
    assert_eq!(y[0].data, TensorData::Fp32(vec![3.0, 1.0, 6.0, 4.0]));
    for bad in [3, -1] {
        let i = Tensor::new("I", vec![1], TensorData::Int64(vec![bad])).unwrap();
        let msg = bad_input(m.predict(&[xs.clone(), i]));
        assert!(msg.contains("afe") && msg.contains("out of range"), "{msg}");
    }
}

#[test]
fn label_encoder_maps_strings() {
    let node = pb::NodeProto {
        name: "enc".into(),
        op_type: "LabelEncoder".into(),
        domain: "ai.onnx.ml".into(),
        input: vec!["X".into()],
        output: vec!["Y".into()],
        attribute: vec![
            attr_strings("keys_strings", &["a", "b"]),
            attr_ints("values_int64s", &[10, 20]),
        ],
        ..Default::default()
    };
    let bytes = one_node_model(
        node,
        vec![tensor_info("X", 8, &[-1])],
        vec![tensor_info("Y", INT64, &[-1])],
    );
    let m = OnnxModel::from_bytes(&bytes).unwrap();
    let t = Tensor::new(
        "X",
        vec![3],
        TensorData::Bytes(vec![b"b".to_vec(), b"z".to_vec(), b"a".to_vec()]),
    )
    .unwrap();
    assert_eq!(
        m.predict(&[t]).unwrap()[0].data,
        TensorData::Int64(vec![20, -1, 10])
    );
}
