#![allow(dead_code)] // each target uses a subset of the signatures
//! The model signatures the targets decode against: a plain ONNX classifier's tensors and a
//! Kiln package's raw columns, covering every element and column type.

use kiln_ml::{ElemType, TensorSpec};
use kiln_transform::{Column, DType};

pub fn tensors() -> Vec<TensorSpec> {
    let t = |name: &str, datatype, shape: &[i64]| TensorSpec {
        name: name.into(),
        datatype,
        shape: shape.to_vec(),
    };
    vec![
        t("X", ElemType::Fp32, &[-1, 3]),
        t("ids", ElemType::Int64, &[-1]),
        t("flags", ElemType::Bool, &[-1, 1]),
        t("text", ElemType::Bytes, &[-1]),
        t("w", ElemType::Fp64, &[-1, 2]),
        t("k", ElemType::Int32, &[-1]),
    ]
}

pub fn single_tensor() -> Vec<TensorSpec> {
    vec![TensorSpec {
        name: "X".into(),
        datatype: ElemType::Fp32,
        shape: vec![-1, 4],
    }]
}

pub fn columns() -> Vec<Column> {
    vec![
        Column::new("n", DType::Int),
        Column::new("x", DType::Float),
        Column::new("b", DType::Bool),
        Column::new("s", DType::String),
        Column::new("c", DType::Categorical),
        Column::new("d", DType::Date),
        Column::new("t", DType::Timestamp),
    ]
}
