//! Graphs Kiln's executor does not cover (neural networks: MatMul, Gemm, Relu…) run on tract,
//! optimised once for a symbolic batch dimension so that any batch size works. Before tract sees
//! the graph, the ai.onnx.ml operators it lacks but that have a plain equivalent are rewritten:
//! ZipMap becomes Identity (the probability tensor is served), Scaler becomes Cast + Sub + Mul.

use std::collections::HashSet;
use std::sync::Arc;

use kiln_ml::{ElemType, MlError, Tensor, TensorData, TensorSpec};
use tract_onnx::pb;
use tract_onnx::prelude::{
    Datum, DatumType, Framework, InferenceFact, InferenceModelExt, IntoTensor, TDim, TValue, TVec,
    Tensor as TTensor, ToDim, TypedRunnableModel, tract_ndarray,
};

use crate::error::{OnnxError, Result};
use crate::graph::{domain_of, fed_inputs, match_inputs};
use crate::proto::{NodeCx, data_type_name, elem_type};

pub(crate) struct TractGraph {
    plan: Arc<TypedRunnableModel>,
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
}

fn tract_err(e: impl std::fmt::Display) -> OnnxError {
    OnnxError::Tract(format!("{e:#}").replace('\n', " "))
}

fn datum(elem: ElemType) -> DatumType {
    match elem {
        ElemType::Fp32 => f32::datum_type(),
        ElemType::Fp64 => f64::datum_type(),
        ElemType::Int64 => i64::datum_type(),
        ElemType::Int32 => i32::datum_type(),
        ElemType::Bool => bool::datum_type(),
        ElemType::Bytes => String::datum_type(),
    }
}

fn elem_of(dt: DatumType) -> ElemType {
    if dt == f64::datum_type() {
        ElemType::Fp64
    } else if dt == i64::datum_type() || dt == TDim::datum_type() {
        ElemType::Int64
    } else if dt == i32::datum_type() {
        ElemType::Int32
    } else if dt == bool::datum_type() {
        ElemType::Bool
    } else if dt == String::datum_type() {
        ElemType::Bytes
    } else {
        // f32, and whatever else (f16, u8…) is served as f32.
        ElemType::Fp32
    }
}

fn float_tensor(name: String, values: &[f32]) -> pb::TensorProto {
    pb::TensorProto {
        dims: vec![values.len() as i64],
        data_type: pb::tensor_proto::DataType::Float as i32,
        float_data: values.to_vec(),
        name,
        ..Default::default()
    }
}

fn int_attr(name: &str, v: i64) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: pb::attribute_proto::AttributeType::Int as i32,
        i: v,
        ..Default::default()
    }
}

/// Replaces the ai.onnx.ml operators tract lacks by standard ones.
fn rewrite(model: &mut pb::ModelProto) -> Result<()> {
    let Some(graph) = model.graph.as_mut() else {
        return Ok(());
    };
    let mut nodes = Vec::with_capacity(graph.node.len());
    let mut inits = Vec::new();
    for (index, node) in std::mem::take(&mut graph.node).into_iter().enumerate() {
        match (domain_of(&node), node.op_type.as_str()) {
            ("ai.onnx.ml", "ZipMap") => nodes.push(pb::NodeProto {
                op_type: "Identity".into(),
                domain: String::new(),
                attribute: vec![],
                ..node
            }),
            ("ai.onnx.ml", "Scaler") => {
                let cx = NodeCx::new(&node, index);
                let offset = cx.floats("offset")?.unwrap_or_default().to_vec();
                let scale = cx.floats("scale")?.unwrap_or_default().to_vec();
                if scale.is_empty() || scale.len() != offset.len() {
                    return Err(cx.attr_err(
                        "scale",
                        format!("{} scales for {} offsets", scale.len(), offset.len()),
                    ));
                }
                let (Some(x), Some(y)) = (node.input.first(), node.output.first()) else {
                    return Err(cx.err("needs one input and one output"));
                };
                let p = format!("{y}__kiln_scaler");
                inits.push(float_tensor(format!("{p}_offset"), &offset));
                inits.push(float_tensor(format!("{p}_scale"), &scale));
                let std_node =
                    |op: &str, inputs: Vec<String>, output: String, attribute| pb::NodeProto {
                        op_type: op.into(),
                        name: format!("{}/{op}", cx.name),
                        input: inputs,
                        output: vec![output],
                        attribute,
                        ..Default::default()
                    };
                nodes.push(std_node(
                    "Cast",
                    vec![x.clone()],
                    format!("{p}_cast"),
                    vec![int_attr("to", pb::tensor_proto::DataType::Float as i64)],
                ));
                nodes.push(std_node(
                    "Sub",
                    vec![format!("{p}_cast"), format!("{p}_offset")],
                    format!("{p}_sub"),
                    vec![],
                ));
                nodes.push(std_node(
                    "Mul",
                    vec![format!("{p}_sub"), format!("{p}_scale")],
                    y.clone(),
                    vec![],
                ));
            }
            _ => nodes.push(node),
        }
    }
    graph.node = nodes;
    graph.initializer.extend(inits);
    Ok(())
}

/// Refuses what tract would refuse (or panic on) with an error naming the node.
fn precheck(model: &pb::ModelProto, registered: &HashSet<String>) -> Result<()> {
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| OnnxError::Invalid("the model has no graph".into()))?;
    let mut known: HashSet<&str> = graph.input.iter().map(|i| i.name.as_str()).collect();
    known.extend(graph.initializer.iter().map(|t| t.name.as_str()));
    for (index, node) in graph.node.iter().enumerate() {
        let cx = NodeCx::new(node, index);
        let domain_ok = matches!(domain_of(node), "" | "ai.onnx.ml");
        if !domain_ok || !registered.contains(&node.op_type) {
            return Err(OnnxError::UnsupportedOp {
                node: cx.name,
                op: node.op_type.clone(),
                domain: node.domain.clone(),
            });
        }
        known.extend(node.output.iter().map(String::as_str));
    }
    for node in &graph.node {
        if let Some(i) = node
            .input
            .iter()
            .find(|i| !i.is_empty() && !known.contains(i.as_str()))
        {
            return Err(OnnxError::Invalid(format!(
                "value `{i}` is used but never produced"
            )));
        }
    }
    if let Some(o) = graph
        .output
        .iter()
        .find(|o| !known.contains(o.name.as_str()))
    {
        return Err(OnnxError::Invalid(format!(
            "graph output `{}` is not produced by any node",
            o.name
        )));
    }
    if graph.output.is_empty() {
        return Err(OnnxError::Invalid("the graph has no outputs".into()));
    }
    Ok(())
}

/// Runs `f`, turning a panic inside tract into an error.
fn guarded<T>(what: &str, f: impl FnOnce() -> T) -> std::result::Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|p| {
        let msg = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        format!("tract panicked while {what}: {msg}")
    })
}

pub(crate) fn compile(mut model: pb::ModelProto) -> Result<TractGraph> {
    rewrite(&mut model)?;
    let onnx = tract_onnx::onnx();
    let registered: HashSet<String> = onnx.op_register.0.keys().cloned().collect();
    precheck(&model, &registered)?;
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| OnnxError::Invalid("the model has no graph".into()))?;
    let fed = fed_inputs(graph)?;
    let mut inputs = Vec::new();
    for (info, decl) in &fed {
        let elem = elem_type(decl.elem).ok_or_else(|| OnnxError::Unsupported {
            node: format!("input {}", info.name),
            op: "input".into(),
            reason: format!("a {} input", data_type_name(decl.elem)),
        })?;
        let dims = decl.dims.clone().unwrap_or_else(|| vec![None, None]);
        inputs.push(TensorSpec {
            name: info.name.clone(),
            datatype: elem,
            shape: dims.iter().map(|d| d.map_or(-1, |v| v as i64)).collect(),
        });
    }
    let built = guarded("loading the model", || -> Result<TractGraph> {
        let mut m = onnx.model_for_proto_model(&model).map_err(tract_err)?;
        let batch = m.sym("N");
        for (i, spec) in inputs.iter().enumerate() {
            let dims: Vec<TDim> = spec
                .shape
                .iter()
                .enumerate()
                .map(|(j, &d)| match (j, d) {
                    (_, d) if d >= 0 => (d as usize).to_dim(),
                    (0, _) => batch.to_dim(),
                    (j, _) => m.sym(&format!("d{i}_{j}")).to_dim(),
                })
                .collect();
            m.set_input_fact(i, InferenceFact::dt_shape(datum(spec.datatype), dims))
                .map_err(tract_err)?;
        }
        let typed = m.into_optimized().map_err(tract_err)?;
        let mut outputs = Vec::new();
        for (i, o) in graph.output.iter().enumerate() {
            let fact = typed.output_fact(i).map_err(tract_err)?;
            // The declared type when there is one: tract carries integers as TDim inside.
            let declared = crate::proto::declared_type(o).and_then(|d| elem_type(d.elem));
            outputs.push(TensorSpec {
                name: o.name.clone(),
                datatype: declared.unwrap_or_else(|| elem_of(fact.datum_type)),
                shape: fact
                    .shape
                    .iter()
                    .map(|d| d.to_i64().unwrap_or(-1))
                    .collect(),
            });
        }
        let plan = tract_onnx::prelude::IntoRunnable::into_runnable(typed).map_err(tract_err)?;
        Ok(TractGraph {
            plan,
            inputs: inputs.clone(),
            outputs,
        })
    })
    .map_err(OnnxError::Tract)??;
    Ok(built)
}

fn to_tract(t: &Tensor) -> std::result::Result<TTensor, String> {
    let shape = tract_ndarray::IxDyn(&t.shape);
    let err = |e: tract_ndarray::ShapeError| e.to_string();
    Ok(match &t.data {
        TensorData::Fp32(v) => tract_ndarray::ArrayD::from_shape_vec(shape, v.clone())
            .map_err(err)?
            .into_tensor(),
        TensorData::Fp64(v) => tract_ndarray::ArrayD::from_shape_vec(shape, v.clone())
            .map_err(err)?
            .into_tensor(),
        TensorData::Int64(v) => tract_ndarray::ArrayD::from_shape_vec(shape, v.clone())
            .map_err(err)?
            .into_tensor(),
        TensorData::Int32(v) => tract_ndarray::ArrayD::from_shape_vec(shape, v.clone())
            .map_err(err)?
            .into_tensor(),
        TensorData::Bool(v) => tract_ndarray::ArrayD::from_shape_vec(shape, v.clone())
            .map_err(err)?
            .into_tensor(),
        TensorData::Bytes(v) => {
            let s: Vec<String> = v
                .iter()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .collect();
            tract_ndarray::ArrayD::from_shape_vec(shape, s)
                .map_err(err)?
                .into_tensor()
        }
    })
}

/// The values as `D`, converted (tract keeps integers as TDim, and may widen types).
fn plain<D: Datum + Clone>(t: &TTensor) -> std::result::Result<Vec<D>, String> {
    let t = t.cast_to::<D>().map_err(|e| format!("{e:#}"))?;
    t.to_plain_array_view::<D>()
        .map(|a| a.iter().cloned().collect())
        .map_err(|e| format!("{e:#}"))
}

fn from_tract(spec: &TensorSpec, t: TTensor) -> std::result::Result<Tensor, String> {
    let shape = t.shape().to_vec();
    let data = match spec.datatype {
        ElemType::Fp32 => TensorData::Fp32(plain::<f32>(&t)?),
        ElemType::Fp64 => TensorData::Fp64(plain::<f64>(&t)?),
        ElemType::Int64 => TensorData::Int64(plain::<i64>(&t)?),
        ElemType::Int32 => TensorData::Int32(plain::<i32>(&t)?),
        ElemType::Bool => TensorData::Bool(plain::<bool>(&t)?),
        ElemType::Bytes => TensorData::Bytes(
            plain::<String>(&t)?
                .into_iter()
                .map(String::into_bytes)
                .collect(),
        ),
    };
    Tensor::new(spec.name.clone(), shape, data).map_err(|e| e.to_string())
}

impl TractGraph {
    pub fn run(&self, given: &[Tensor]) -> kiln_ml::Result<Vec<Tensor>> {
        let matched = match_inputs(&self.inputs, given)?;
        let mut feed: TVec<TValue> = TVec::new();
        for t in matched {
            feed.push(
                to_tract(t)
                    .map_err(|e| MlError::BadInput(format!("input `{}`: {e}", t.name)))?
                    .into(),
            );
        }
        let out = guarded("running the model", || self.plan.run(feed))
            .map_err(MlError::InvalidModel)?
            .map_err(|e| {
                MlError::BadInput(format!("tract: {}", format!("{e:#}").replace('\n', " ")))
            })?;
        if out.len() != self.outputs.len() {
            return Err(MlError::InvalidModel(format!(
                "tract returned {} outputs for {}",
                out.len(),
                self.outputs.len()
            )));
        }
        out.into_iter()
            .zip(&self.outputs)
            .map(|(v, spec)| from_tract(spec, v.into_tensor()).map_err(MlError::InvalidModel))
            .collect()
    }
}
