//! Kiln's executor: a graph of supported operators compiled into a list of kernels over
//! numbered value slots, run once per batch.

use std::collections::HashMap;

use kiln_ml::{MlError, Tensor, TensorData, TensorSpec};
use tract_onnx::pb;

use crate::error::{OnnxError, Result};
use crate::ops::{self, Compiled, In, Kernel, TypeInfo};
use crate::proto::{
    DeclaredType, NodeCx, TensorError, data_type_name, declared_type, elem_type, tensor_value,
};
use crate::value::{Value, View, checked_count};

struct Step {
    node: String,
    op: String,
    kernel: Box<dyn Kernel>,
    inputs: Vec<Option<usize>>,
    outputs: Vec<usize>,
    /// Slots no later step reads: dropped after this one.
    free: Vec<usize>,
}

pub(crate) struct NativeGraph {
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
    input_slots: Vec<usize>,
    output_slots: Vec<usize>,
    consts: Vec<(usize, Value)>,
    steps: Vec<Step>,
    n_slots: usize,
}

/// The version of each operator domain the model imports ("" and "ai.onnx" are one).
pub(crate) fn opsets(model: &pb::ModelProto) -> HashMap<String, i64> {
    model
        .opset_import
        .iter()
        .map(|o| {
            let d = if o.domain == "ai.onnx" {
                String::new()
            } else {
                o.domain.clone()
            };
            (d, o.version)
        })
        .collect()
}

pub(crate) fn domain_of(node: &pb::NodeProto) -> &str {
    if node.domain == "ai.onnx" {
        ""
    } else {
        &node.domain
    }
}

/// The spec shape of a value: declared dimensions where the graph gives them, else inferred
/// ones; -1 for a free dimension.
fn spec_shape(declared: Option<&DeclaredType>, inferred: &TypeInfo) -> Vec<i64> {
    let dims = inferred.dims.clone().unwrap_or_default();
    let decl = declared
        .and_then(|d| d.dims.clone())
        .filter(|d| d.len() == dims.len());
    dims.iter()
        .enumerate()
        .map(|(i, d)| {
            d.or_else(|| decl.as_ref().and_then(|dd| dd[i]))
                .map_or(-1, |v| v as i64)
        })
        .collect()
}

/// The graph inputs a caller feeds (graph inputs that are not initializers), with their
/// declared types.
pub(crate) fn fed_inputs(
    graph: &pb::GraphProto,
) -> Result<Vec<(&pb::ValueInfoProto, DeclaredType)>> {
    let inits: std::collections::HashSet<&str> =
        graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let mut out = Vec::new();
    for i in &graph.input {
        if inits.contains(i.name.as_str()) {
            continue;
        }
        let ty = declared_type(i).ok_or_else(|| {
            OnnxError::Invalid(format!("graph input `{}` has no tensor type", i.name))
        })?;
        out.push((i, ty));
    }
    if out.is_empty() {
        return Err(OnnxError::Invalid("the graph has no inputs".into()));
    }
    Ok(out)
}

pub(crate) fn compile(model: &pb::ModelProto) -> Result<NativeGraph> {
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| OnnxError::Invalid("the model has no graph".into()))?;
    let opsets = opsets(model);
    let mut slots: HashMap<String, usize> = HashMap::new();
    let mut types: Vec<TypeInfo> = Vec::new();
    let mut konst: Vec<Option<Value>> = Vec::new();

    for t in &graph.initializer {
        let v = tensor_value(t).map_err(|e| match e {
            TensorError::Unsupported(reason) => OnnxError::Unsupported {
                node: format!("initializer {}", t.name),
                op: "initializer".into(),
                reason,
            },
            TensorError::Invalid(m) => OnnxError::Invalid(format!("initializer `{}`: {m}", t.name)),
        })?;
        slots.insert(t.name.clone(), types.len());
        types.push(TypeInfo::new(
            v.data.elem_type(),
            v.shape.iter().map(|d| Some(*d)).collect(),
        ));
        konst.push(Some(v));
    }

    let mut inputs = Vec::new();
    let mut input_slots = Vec::new();
    for (info, decl) in fed_inputs(graph)? {
        let elem = elem_type(decl.elem).ok_or_else(|| OnnxError::Unsupported {
            node: format!("input {}", info.name),
            op: "input".into(),
            reason: format!("a {} input", data_type_name(decl.elem)),
        })?;
        let dims = decl.dims.clone().unwrap_or_else(|| vec![None, None]);
        let ty = TypeInfo::new(elem, dims);
        inputs.push(TensorSpec {
            name: info.name.clone(),
            datatype: elem,
            shape: spec_shape(Some(&decl), &ty),
        });
        input_slots.push(types.len());
        slots.insert(info.name.clone(), types.len());
        types.push(ty);
        konst.push(None);
    }

    let mut steps = Vec::new();
    for (index, node) in graph.node.iter().enumerate() {
        let cx = NodeCx::new(node, index);
        let domain = domain_of(node);
        if !ops::is_native(domain, &node.op_type) {
            return Err(OnnxError::UnsupportedOp {
                node: cx.name.clone(),
                op: node.op_type.clone(),
                domain: node.domain.clone(),
            });
        }
        let opset = opsets.get(domain).copied().unwrap_or(1);
        let mut ins = Vec::with_capacity(node.input.len());
        let mut in_slots = Vec::with_capacity(node.input.len());
        for name in &node.input {
            if name.is_empty() {
                ins.push(None);
                in_slots.push(None);
                continue;
            }
            let &s = slots.get(name).ok_or_else(|| {
                cx.err(format!("input `{name}` is not a graph input, an initializer or an earlier node's output"))
            })?;
            ins.push(Some(In {
                ty: types[s].clone(),
                konst: konst[s].as_ref(),
            }));
            in_slots.push(Some(s));
        }
        match ops::compile(&cx, &ins, opset)? {
            Compiled::Alias => {
                let src = in_slots
                    .first()
                    .copied()
                    .flatten()
                    .ok_or_else(|| cx.err("input 0 is missing"))?;
                if let Some(out) = node.output.first().filter(|o| !o.is_empty()) {
                    slots.insert(out.clone(), src);
                }
            }
            Compiled::Kernel { kernel, outputs } => {
                if node.output.len() > outputs.len() {
                    return Err(cx.err(format!(
                        "{} outputs; the operator has {}",
                        node.output.len(),
                        outputs.len()
                    )));
                }
                let all_const = in_slots.iter().flatten().all(|s| konst[*s].is_some());
                let folded = if all_const {
                    let views: Vec<Option<View<'_>>> = in_slots
                        .iter()
                        .map(|s| s.and_then(|s| konst[s].as_ref().map(Value::view)))
                        .collect();
                    Some(kernel.run(&views).map_err(|e| cx.err(e))?)
                } else {
                    None
                };
                let mut out_slots = Vec::new();
                let mut folded = folded.map(Vec::into_iter);
                for (name, ty) in node.output.iter().zip(outputs) {
                    let value = folded.as_mut().and_then(Iterator::next);
                    if name.is_empty() {
                        continue;
                    }
                    let s = types.len();
                    slots.insert(name.clone(), s);
                    types.push(match &value {
                        Some(v) => TypeInfo::new(
                            v.data.elem_type(),
                            v.shape.iter().map(|d| Some(*d)).collect(),
                        ),
                        None => ty,
                    });
                    konst.push(value);
                    out_slots.push(s);
                }
                // Produced outputs the graph does not name are dropped.
                if !all_const {
                    let mut positional = Vec::new();
                    let mut it = out_slots.iter();
                    for name in &node.output {
                        positional.push(if name.is_empty() {
                            usize::MAX
                        } else {
                            *it.next().unwrap_or(&usize::MAX)
                        });
                    }
                    steps.push(Step {
                        node: cx.name.clone(),
                        op: node.op_type.clone(),
                        kernel,
                        inputs: in_slots,
                        outputs: positional,
                        free: Vec::new(),
                    });
                }
            }
        }
    }

    let mut outputs = Vec::new();
    let mut output_slots = Vec::new();
    for o in &graph.output {
        let &s = slots.get(&o.name).ok_or_else(|| {
            OnnxError::Invalid(format!(
                "graph output `{}` is not produced by any node",
                o.name
            ))
        })?;
        let decl = declared_type(o);
        outputs.push(TensorSpec {
            name: o.name.clone(),
            datatype: types[s].elem,
            shape: spec_shape(decl.as_ref(), &types[s]),
        });
        output_slots.push(s);
    }
    if outputs.is_empty() {
        return Err(OnnxError::Invalid("the graph has no outputs".into()));
    }

    // Free each computed value after its last reader.
    let mut last_use: HashMap<usize, usize> = HashMap::new();
    for (i, st) in steps.iter().enumerate() {
        for s in st.inputs.iter().flatten() {
            last_use.insert(*s, i);
        }
    }
    for (s, i) in last_use {
        if !output_slots.contains(&s) {
            steps[i].free.push(s);
        }
    }

    let consts = konst
        .into_iter()
        .enumerate()
        .filter_map(|(i, v)| v.map(|v| (i, v)))
        .collect();
    Ok(NativeGraph {
        inputs,
        outputs,
        input_slots,
        output_slots,
        consts,
        steps,
        n_slots: types.len(),
    })
}

enum Held<'a> {
    Empty,
    Borrowed(View<'a>),
    Owned(Value),
}

impl Held<'_> {
    fn view(&self) -> Option<View<'_>> {
        match self {
            Held::Empty => None,
            Held::Borrowed(v) => Some(*v),
            Held::Owned(v) => Some(v.view()),
        }
    }
}

/// Matches the caller's tensors to the model's inputs by name and checks each against its spec.
pub(crate) fn match_inputs<'a>(
    specs: &[TensorSpec],
    given: &'a [Tensor],
) -> kiln_ml::Result<Vec<&'a Tensor>> {
    let mut found: Vec<Option<&Tensor>> = vec![None; specs.len()];
    for t in given {
        let Some(i) = specs.iter().position(|s| s.name == t.name) else {
            let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
            return Err(MlError::BadInput(format!(
                "unknown input `{}`; the model's inputs are {}",
                t.name,
                names
                    .iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        };
        if found[i].is_some() {
            return Err(MlError::BadInput(format!(
                "input `{}` is given twice",
                t.name
            )));
        }
        if checked_count(&t.shape) != Some(t.data.len()) {
            return Err(MlError::BadInput(format!(
                "input `{}` has shape {:?} but {} values",
                t.name,
                t.shape,
                t.data.len()
            )));
        }
        t.check(&specs[i])?;
        found[i] = Some(t);
    }
    found
        .into_iter()
        .zip(specs)
        .map(|(t, s)| t.ok_or_else(|| MlError::BadInput(format!("input `{}` is missing", s.name))))
        .collect()
}

impl NativeGraph {
    pub fn run(&self, given: &[Tensor]) -> kiln_ml::Result<Vec<Tensor>> {
        let matched = match_inputs(&self.inputs, given)?;
        let mut env: Vec<Held<'_>> = (0..self.n_slots).map(|_| Held::Empty).collect();
        for (slot, v) in &self.consts {
            env[*slot] = Held::Borrowed(v.view());
        }
        for (slot, t) in self.input_slots.iter().zip(matched) {
            env[*slot] = Held::Borrowed(View {
                shape: &t.shape,
                data: &t.data,
            });
        }
        for st in &self.steps {
            let produced = {
                let views: Vec<Option<View<'_>>> = st
                    .inputs
                    .iter()
                    .map(|s| s.and_then(|s| env[s].view()))
                    .collect();
                st.kernel.run(&views).map_err(|e| {
                    MlError::BadInput(format!("node `{}` ({}): {e}", st.node, st.op))
                })?
            };
            for (slot, v) in st.outputs.iter().zip(produced) {
                if *slot != usize::MAX {
                    env[*slot] = Held::Owned(v);
                }
            }
            for s in &st.free {
                env[*s] = Held::Empty;
            }
        }
        let mut out = Vec::with_capacity(self.outputs.len());
        for (i, (spec, slot)) in self.outputs.iter().zip(&self.output_slots).enumerate() {
            // A slot that is a later output too must stay: clone unless this is its last use.
            let last = !self.output_slots[i + 1..].contains(slot);
            let held = if last {
                std::mem::replace(&mut env[*slot], Held::Empty)
            } else {
                match env[*slot].view() {
                    Some(v) => Held::Owned(v.to_owned()),
                    None => Held::Empty,
                }
            };
            let (shape, data): (Vec<usize>, TensorData) = match held {
                Held::Owned(v) => (v.shape, v.data),
                Held::Borrowed(v) => (v.shape.to_vec(), v.data.clone()),
                Held::Empty => {
                    return Err(MlError::InvalidModel(format!(
                        "output `{}` was not computed",
                        spec.name
                    )));
                }
            };
            if data.elem_type() != spec.datatype {
                return Err(MlError::InvalidModel(format!(
                    "output `{}` came out {}, the model declares {}",
                    spec.name,
                    data.elem_type().as_oip(),
                    spec.datatype.as_oip()
                )));
            }
            out.push(Tensor::new(spec.name.clone(), shape, data)?);
        }
        Ok(out)
    }
}
