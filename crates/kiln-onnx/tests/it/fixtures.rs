//! Reading tests/fixtures/onnx/ (made by scripts/onnx_fixtures.py; layout in its README).

use std::path::{Path, PathBuf};

use kiln_ml::{Tensor, TensorData};
use serde::Deserialize;

pub fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/onnx")
}

#[derive(Deserialize)]
pub struct Manifest {
    pub fixtures: Vec<String>,
}

#[derive(Deserialize)]
pub struct JsonTensor {
    pub name: String,
    pub datatype: String,
    pub shape: Vec<usize>,
    pub data: Vec<serde_json::Value>,
    #[serde(default)]
    pub zipmap: bool,
}

#[derive(Deserialize)]
struct DataFile {
    tensors: Vec<JsonTensor>,
}

#[derive(Deserialize)]
pub struct Fixture {
    #[serde(skip)]
    pub name: String,
    #[allow(dead_code)]
    pub model: String,
    pub inputs: String,
    pub rows: usize,
    pub backend: String,
    pub outputs: Vec<JsonTensor>,
}

pub fn manifest() -> Manifest {
    let text = std::fs::read_to_string(dir().join("manifest.json"))
        .expect("tests/fixtures/onnx/manifest.json");
    serde_json::from_str(&text).expect("manifest.json parses")
}

pub fn fixture(name: &str) -> Fixture {
    let text = std::fs::read_to_string(dir().join(format!("{name}.json"))).expect("fixture json");
    let mut f: Fixture = serde_json::from_str(&text).expect("fixture json parses");
    f.name = name.to_string();
    f
}

pub fn model_bytes(name: &str) -> Vec<u8> {
    std::fs::read(dir().join(format!("{name}.onnx"))).expect("fixture model")
}

fn num(v: &serde_json::Value) -> f64 {
    if v.is_null() {
        f64::NAN
    } else {
        v.as_f64().expect("a number")
    }
}

impl JsonTensor {
    /// As a Kiln tensor.
    pub fn tensor(&self) -> Tensor {
        let d = &self.data;
        let data = match self.datatype.as_str() {
            "FP32" => TensorData::Fp32(d.iter().map(|v| num(v) as f32).collect()),
            "FP64" => TensorData::Fp64(d.iter().map(num).collect()),
            "INT64" => TensorData::Int64(d.iter().map(|v| v.as_i64().expect("int")).collect()),
            "INT32" => {
                TensorData::Int32(d.iter().map(|v| v.as_i64().expect("int") as i32).collect())
            }
            "BOOL" => TensorData::Bool(d.iter().map(|v| v.as_bool().expect("bool")).collect()),
            "BYTES" => TensorData::Bytes(
                d.iter()
                    .map(|v| v.as_str().expect("string").as_bytes().to_vec())
                    .collect(),
            ),
            other => panic!("fixture datatype {other}"),
        };
        Tensor::new(self.name.clone(), self.shape.clone(), data).expect("consistent fixture tensor")
    }
}

/// The first `rows` rows of a tensor.
pub fn first_rows(t: &Tensor, rows: usize) -> Tensor {
    let per_row: usize = t.shape[1..].iter().product();
    let n = rows * per_row;
    let data = match &t.data {
        TensorData::Fp32(v) => TensorData::Fp32(v[..n].to_vec()),
        TensorData::Fp64(v) => TensorData::Fp64(v[..n].to_vec()),
        TensorData::Int64(v) => TensorData::Int64(v[..n].to_vec()),
        TensorData::Int32(v) => TensorData::Int32(v[..n].to_vec()),
        TensorData::Bool(v) => TensorData::Bool(v[..n].to_vec()),
        TensorData::Bytes(v) => TensorData::Bytes(v[..n].to_vec()),
    };
    let mut shape = t.shape.clone();
    shape[0] = rows;
    Tensor::new(t.name.clone(), shape, data).expect("rows")
}

impl Fixture {
    /// The input tensors, limited to the fixture's rows.
    pub fn inputs(&self) -> Vec<Tensor> {
        let text = std::fs::read_to_string(dir().join(&self.inputs)).expect("inputs file");
        let data: DataFile = serde_json::from_str(&text).expect("inputs parse");
        data.tensors
            .iter()
            .map(|t| first_rows(&t.tensor(), self.rows))
            .collect()
    }
}
