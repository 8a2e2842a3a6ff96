//! Reading the ONNX protobuf (tract-onnx's generated `pb` types): node attributes with errors
//! that name the node, initializer tensors, and declared value types.

use kiln_ml::{ElemType, TensorData};
use tract_onnx::pb;
use tract_onnx::pb::tensor_proto::DataType;

use crate::error::{OnnxError, Result};
use crate::value::Value;

/// A node with the name errors use for it (its name, else its first output).
pub(crate) struct NodeCx<'a> {
    pub node: &'a pb::NodeProto,
    pub name: String,
}

impl<'a> NodeCx<'a> {
    pub fn new(node: &'a pb::NodeProto, index: usize) -> Self {
        let name = if !node.name.is_empty() {
            node.name.clone()
        } else if let Some(o) = node.output.iter().find(|o| !o.is_empty()) {
            o.clone()
        } else {
            format!("#{index}")
        };
        NodeCx { node, name }
    }

    pub fn op(&self) -> &str {
        &self.node.op_type
    }

    pub fn attr_err(&self, attribute: &str, reason: impl Into<String>) -> OnnxError {
        OnnxError::Attribute {
            node: self.name.clone(),
            op: self.node.op_type.clone(),
            attribute: attribute.to_string(),
            reason: reason.into(),
        }
    }

    pub fn err(&self, reason: impl Into<String>) -> OnnxError {
        OnnxError::Node {
            node: self.name.clone(),
            op: self.node.op_type.clone(),
            reason: reason.into(),
        }
    }

    pub fn unsupported(&self, reason: impl Into<String>) -> OnnxError {
        OnnxError::Unsupported {
            node: self.name.clone(),
            op: self.node.op_type.clone(),
            reason: reason.into(),
        }
    }

    fn attr(&self, name: &str) -> Option<&'a pb::AttributeProto> {
        self.node.attribute.iter().find(|a| a.name == name)
    }

    pub fn has(&self, name: &str) -> bool {
        self.attr(name).is_some()
    }

    /// Checks the attribute's declared type when it has one (old exporters leave it unset).
    fn typed(
        &self,
        name: &str,
        want: pb::attribute_proto::AttributeType,
    ) -> Result<Option<&'a pb::AttributeProto>> {
        match self.attr(name) {
            None => Ok(None),
            Some(a) if a.r#type == 0 || a.r#type == want as i32 => Ok(Some(a)),
            Some(a) => Err(self.attr_err(
                name,
                format!(
                    "has type {}, {} was expected",
                    attr_type_name(a.r#type),
                    attr_type_name(want as i32)
                ),
            )),
        }
    }

    pub fn int(&self, name: &str) -> Result<Option<i64>> {
        Ok(self
            .typed(name, pb::attribute_proto::AttributeType::Int)?
            .map(|a| a.i))
    }

    pub fn int_or(&self, name: &str, default: i64) -> Result<i64> {
        Ok(self.int(name)?.unwrap_or(default))
    }

    pub fn float(&self, name: &str) -> Result<Option<f32>> {
        Ok(self
            .typed(name, pb::attribute_proto::AttributeType::Float)?
            .map(|a| a.f))
    }

    pub fn string(&self, name: &str) -> Result<Option<String>> {
        match self.typed(name, pb::attribute_proto::AttributeType::String)? {
            None => Ok(None),
            Some(a) => String::from_utf8(a.s.clone())
                .map(Some)
                .map_err(|_| self.attr_err(name, "is not UTF-8")),
        }
    }

    pub fn string_or(&self, name: &str, default: &str) -> Result<String> {
        Ok(self.string(name)?.unwrap_or_else(|| default.to_string()))
    }

    pub fn ints(&self, name: &str) -> Result<Option<&'a [i64]>> {
        Ok(self
            .typed(name, pb::attribute_proto::AttributeType::Ints)?
            .map(|a| a.ints.as_slice()))
    }

    pub fn floats(&self, name: &str) -> Result<Option<&'a [f32]>> {
        Ok(self
            .typed(name, pb::attribute_proto::AttributeType::Floats)?
            .map(|a| a.floats.as_slice()))
    }

    pub fn strings(&self, name: &str) -> Result<Option<&'a [Vec<u8>]>> {
        Ok(self
            .typed(name, pb::attribute_proto::AttributeType::Strings)?
            .map(|a| a.strings.as_slice()))
    }

    /// A list of UTF-8 strings (modes, transforms).
    pub fn utf8s(&self, name: &str) -> Result<Option<Vec<String>>> {
        match self.strings(name)? {
            None => Ok(None),
            Some(v) => v
                .iter()
                .map(|s| {
                    String::from_utf8(s.clone())
                        .map_err(|_| self.attr_err(name, "holds a string that is not UTF-8"))
                })
                .collect::<Result<Vec<_>>>()
                .map(Some),
        }
    }

    pub fn tensor(&self, name: &str) -> Result<Option<Value>> {
        match self.typed(name, pb::attribute_proto::AttributeType::Tensor)? {
            None => Ok(None),
            Some(a) => match &a.t {
                None => Err(self.attr_err(name, "holds no tensor")),
                Some(t) => tensor_value(t)
                    .map(Some)
                    .map_err(|e| self.attr_err(name, e.to_string())),
            },
        }
    }

    /// `name` as floats or `name_as_tensor` (ai.onnx.ml 3) as f32/f64 values, widened to f64;
    /// also says whether the values are double precision.
    pub fn floats_or_tensor(&self, name: &str) -> Result<Option<(Vec<f64>, bool)>> {
        let tname = format!("{name}_as_tensor");
        let plain = self.floats(name)?;
        let tensor = self.tensor(&tname)?;
        match (plain, tensor) {
            (Some(_), Some(_)) => {
                Err(self.attr_err(&tname, format!("both `{name}` and `{tname}` are set")))
            }
            (Some(v), None) => Ok(Some((v.iter().map(|x| f64::from(*x)).collect(), false))),
            (None, Some(t)) => match t.data {
                TensorData::Fp32(v) => Ok(Some((v.iter().map(|x| f64::from(*x)).collect(), false))),
                TensorData::Fp64(v) => Ok(Some((v, true))),
                other => Err(self.attr_err(
                    &tname,
                    format!(
                        "holds {} values, FP32 or FP64 was expected",
                        other.elem_type().as_oip()
                    ),
                )),
            },
            (None, None) => Ok(None),
        }
    }
}

fn attr_type_name(t: i32) -> &'static str {
    use pb::attribute_proto::AttributeType as A;
    match A::try_from(t) {
        Ok(A::Float) => "FLOAT",
        Ok(A::Int) => "INT",
        Ok(A::String) => "STRING",
        Ok(A::Tensor) => "TENSOR",
        Ok(A::Graph) => "GRAPH",
        Ok(A::Floats) => "FLOATS",
        Ok(A::Ints) => "INTS",
        Ok(A::Strings) => "STRINGS",
        Ok(A::Tensors) => "TENSORS",
        Ok(A::Graphs) => "GRAPHS",
        Ok(A::SparseTensor) => "SPARSE_TENSOR",
        Ok(A::SparseTensors) => "SPARSE_TENSORS",
        Ok(A::TypeProto) => "TYPE_PROTO",
        Ok(A::TypeProtos) => "TYPE_PROTOS",
        Ok(A::Undefined) | Err(_) => "UNDEFINED",
    }
}

/// The element type Kiln's executor handles for an ONNX `TensorProto.DataType`.
pub(crate) fn elem_type(data_type: i32) -> Option<ElemType> {
    Some(match DataType::try_from(data_type).ok()? {
        DataType::Float => ElemType::Fp32,
        DataType::Double => ElemType::Fp64,
        DataType::Int64 => ElemType::Int64,
        DataType::Int32 => ElemType::Int32,
        DataType::Bool => ElemType::Bool,
        DataType::String => ElemType::Bytes,
        _ => return None,
    })
}

pub(crate) fn data_type_name(data_type: i32) -> String {
    match DataType::try_from(data_type) {
        Ok(t) => t.as_str_name().to_string(),
        Err(_) => format!("type {data_type}"),
    }
}

/// A declared tensor type: element type (ONNX code) and dimensions (`None` = free).
pub(crate) struct DeclaredType {
    pub elem: i32,
    pub dims: Option<Vec<Option<usize>>>,
}

/// The declared type of a graph input or output, when it is a tensor type.
pub(crate) fn declared_type(v: &pb::ValueInfoProto) -> Option<DeclaredType> {
    let pb::type_proto::Value::TensorType(t) = v.r#type.as_ref()?.value.as_ref()?;
    let dims = t.shape.as_ref().map(|s| {
        s.dim
            .iter()
            .map(|d| match d.value {
                Some(pb::tensor_shape_proto::dimension::Value::DimValue(n)) if n > 0 => {
                    usize::try_from(n).ok()
                }
                _ => None,
            })
            .collect()
    });
    Some(DeclaredType {
        elem: t.elem_type,
        dims,
    })
}

fn le_chunks<const N: usize, T>(
    raw: &[u8],
    f: impl Fn([u8; N]) -> T,
) -> std::result::Result<Vec<T>, String> {
    if !raw.len().is_multiple_of(N) {
        return Err(format!(
            "raw data of {} bytes is not a whole number of {N}-byte values",
            raw.len()
        ));
    }
    Ok(raw
        .chunks_exact(N)
        .map(|c| {
            let mut b = [0u8; N];
            b.copy_from_slice(c);
            f(b)
        })
        .collect())
}

/// Why a tensor could not be read: something Kiln's executor lacks (tract may have it), or a
/// tensor that is wrong.
pub(crate) enum TensorError {
    Unsupported(String),
    Invalid(String),
}

impl std::fmt::Display for TensorError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TensorError::Unsupported(m) => write!(f, "{m} is not supported"),
            TensorError::Invalid(m) => f.write_str(m),
        }
    }
}

impl From<String> for TensorError {
    fn from(m: String) -> Self {
        TensorError::Invalid(m)
    }
}

/// An initializer or attribute tensor as a [`Value`].
pub(crate) fn tensor_value(t: &pb::TensorProto) -> std::result::Result<Value, TensorError> {
    if t.data_location == Some(pb::tensor_proto::DataLocation::External as i32)
        || !t.external_data.is_empty()
    {
        return Err(TensorError::Unsupported(
            "external tensor data (load a model with its data embedded)".into(),
        ));
    }
    if t.segment.is_some() {
        return Err(TensorError::Unsupported("a segmented tensor".into()));
    }
    let mut shape = Vec::with_capacity(t.dims.len());
    for &d in &t.dims {
        shape.push(usize::try_from(d).map_err(|_| format!("negative dimension {d}"))?);
    }
    let count = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| format!("dimensions {shape:?} overflow"))?;
    let raw = !t.raw_data.is_empty();
    let data = match DataType::try_from(t.data_type) {
        Ok(DataType::Float) => TensorData::Fp32(if raw {
            le_chunks(&t.raw_data, f32::from_le_bytes)?
        } else {
            t.float_data.clone()
        }),
        Ok(DataType::Double) => TensorData::Fp64(if raw {
            le_chunks(&t.raw_data, f64::from_le_bytes)?
        } else {
            t.double_data.clone()
        }),
        Ok(DataType::Int64) => TensorData::Int64(if raw {
            le_chunks(&t.raw_data, i64::from_le_bytes)?
        } else {
            t.int64_data.clone()
        }),
        Ok(DataType::Int32) => TensorData::Int32(if raw {
            le_chunks(&t.raw_data, i32::from_le_bytes)?
        } else {
            t.int32_data.clone()
        }),
        Ok(DataType::Bool) => TensorData::Bool(if raw {
            t.raw_data.iter().map(|b| *b != 0).collect()
        } else {
            t.int32_data.iter().map(|b| *b != 0).collect()
        }),
        Ok(DataType::String) => TensorData::Bytes(t.string_data.clone()),
        _ => {
            return Err(TensorError::Unsupported(format!(
                "a {} tensor",
                data_type_name(t.data_type)
            )));
        }
    };
    if data.len() != count {
        return Err(TensorError::Invalid(format!(
            "shape {shape:?} needs {count} values, the tensor holds {}",
            data.len()
        )));
    }
    Ok(Value { shape, data })
}
