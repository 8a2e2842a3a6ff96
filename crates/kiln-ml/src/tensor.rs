//! Named tensors: what predictors take and return, and what the inference protocols carry.

use serde::{Deserialize, Serialize};

use crate::error::{MlError, Result};

/// Element types, named as the Open Inference Protocol names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ElemType {
    Bool,
    Int32,
    Int64,
    Fp32,
    Fp64,
    Bytes,
}

impl ElemType {
    /// The OIP v2 datatype string (`FP32`, `INT64`, `BYTES`…).
    pub fn as_oip(self) -> &'static str {
        match self {
            ElemType::Bool => "BOOL",
            ElemType::Int32 => "INT32",
            ElemType::Int64 => "INT64",
            ElemType::Fp32 => "FP32",
            ElemType::Fp64 => "FP64",
            ElemType::Bytes => "BYTES",
        }
    }

    pub fn from_oip(s: &str) -> Option<Self> {
        Some(match s {
            "BOOL" => ElemType::Bool,
            "INT32" => ElemType::Int32,
            "INT64" => ElemType::Int64,
            "FP32" => ElemType::Fp32,
            "FP64" => ElemType::Fp64,
            "BYTES" => ElemType::Bytes,
            _ => return None,
        })
    }
}

/// The declared name, type and shape of a model input or output; `-1` is a free dimension.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorSpec {
    pub name: String,
    pub datatype: ElemType,
    pub shape: Vec<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TensorData {
    Bool(Vec<bool>),
    Int32(Vec<i32>),
    Int64(Vec<i64>),
    Fp32(Vec<f32>),
    Fp64(Vec<f64>),
    Bytes(Vec<Vec<u8>>),
}

impl TensorData {
    pub fn len(&self) -> usize {
        match self {
            TensorData::Bool(v) => v.len(),
            TensorData::Int32(v) => v.len(),
            TensorData::Int64(v) => v.len(),
            TensorData::Fp32(v) => v.len(),
            TensorData::Fp64(v) => v.len(),
            TensorData::Bytes(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn elem_type(&self) -> ElemType {
        match self {
            TensorData::Bool(_) => ElemType::Bool,
            TensorData::Int32(_) => ElemType::Int32,
            TensorData::Int64(_) => ElemType::Int64,
            TensorData::Fp32(_) => ElemType::Fp32,
            TensorData::Fp64(_) => ElemType::Fp64,
            TensorData::Bytes(_) => ElemType::Bytes,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: TensorData,
}

impl Tensor {
    /// A tensor whose element count matches its shape.
    pub fn new(name: impl Into<String>, shape: Vec<usize>, data: TensorData) -> Result<Self> {
        let name = name.into();
        let want: usize = shape.iter().product();
        if want != data.len() {
            return Err(MlError::BadInput(format!(
                "tensor `{name}` has shape {shape:?} ({want} values) but {} values",
                data.len()
            )));
        }
        Ok(Tensor { name, shape, data })
    }

    pub fn fp32(name: impl Into<String>, shape: Vec<usize>, data: Vec<f32>) -> Result<Self> {
        Tensor::new(name, shape, TensorData::Fp32(data))
    }

    pub fn elem_type(&self) -> ElemType {
        self.data.elem_type()
    }

    /// The values as `f32` (numbers and booleans convert; bytes do not).
    pub fn to_f32(&self) -> Result<Vec<f32>> {
        Ok(match &self.data {
            TensorData::Fp32(v) => v.clone(),
            TensorData::Fp64(v) => v.iter().map(|x| *x as f32).collect(),
            TensorData::Int32(v) => v.iter().map(|x| *x as f32).collect(),
            TensorData::Int64(v) => v.iter().map(|x| *x as f32).collect(),
            TensorData::Bool(v) => v.iter().map(|x| if *x { 1.0 } else { 0.0 }).collect(),
            TensorData::Bytes(_) => {
                return Err(MlError::BadInput(format!(
                    "input `{}` is BYTES; a number type was expected",
                    self.name
                )));
            }
        })
    }

    /// Checks this tensor against a spec: same type, same rank, fixed dimensions equal.
    pub fn check(&self, spec: &TensorSpec) -> Result<()> {
        if self.elem_type() != spec.datatype {
            return Err(MlError::BadInput(format!(
                "input `{}` has datatype {}, the model expects {}",
                self.name,
                self.elem_type().as_oip(),
                spec.datatype.as_oip()
            )));
        }
        if self.shape.len() != spec.shape.len()
            || self
                .shape
                .iter()
                .zip(&spec.shape)
                .any(|(&have, &want)| want >= 0 && have as i64 != want)
        {
            return Err(MlError::BadInput(format!(
                "input `{}` has shape {:?}, the model expects {:?} (-1 = any)",
                self.name, self.shape, spec.shape
            )));
        }
        Ok(())
    }
}
