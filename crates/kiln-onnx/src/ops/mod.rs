//! The operators of Kiln's executor. Each is compiled once per node (attributes parsed and
//! checked, element types fixed) into a [`Kernel`] that runs a whole batch.

mod basic;
mod linear;
mod ml;
pub(crate) mod ort_math;
mod trees;

use kiln_ml::ElemType;

use crate::error::Result;
use crate::proto::NodeCx;
use crate::value::{Value, View};

/// What the compiler knows of a value: its element type and, when known, its dimensions
/// (`None` = free, e.g. the batch).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TypeInfo {
    pub elem: ElemType,
    pub dims: Option<Vec<Option<usize>>>,
}

impl TypeInfo {
    pub fn new(elem: ElemType, dims: Vec<Option<usize>>) -> Self {
        TypeInfo {
            elem,
            dims: Some(dims),
        }
    }

    pub fn rank(&self) -> Option<usize> {
        self.dims.as_ref().map(Vec::len)
    }

    /// The last dimension, when known (the feature count of a `[N, C]` input).
    pub fn last_dim(&self) -> Option<usize> {
        self.dims.as_ref().and_then(|d| d.last().copied().flatten())
    }

    /// The first dimension of a 2-D value, or 1 for a 1-D one (`[C]` is one row).
    pub fn batch_dim(&self) -> Option<usize> {
        match self.dims.as_deref() {
            Some([_]) => Some(1),
            Some([n, _]) => *n,
            _ => None,
        }
    }
}

/// One input of a node at compile time.
pub(crate) struct In<'a> {
    pub ty: TypeInfo,
    /// The value, when it is a constant (an initializer or folded).
    pub konst: Option<&'a Value>,
}

pub(crate) enum Compiled {
    /// The output is the first input (Identity, ZipMap).
    Alias,
    Kernel {
        kernel: Box<dyn Kernel>,
        outputs: Vec<TypeInfo>,
    },
}

impl Compiled {
    fn kernel(kernel: impl Kernel + 'static, outputs: Vec<TypeInfo>) -> Self {
        Compiled::Kernel {
            kernel: Box::new(kernel),
            outputs,
        }
    }
}

/// A compiled operator. Errors are reasons about the data (the executor names the node).
pub(crate) trait Kernel: Send + Sync {
    fn run(&self, inputs: &[Option<View<'_>>]) -> std::result::Result<Vec<Value>, String>;
}

/// The (domain, op_type) pairs Kiln's executor implements.
pub(crate) fn is_native(domain: &str, op: &str) -> bool {
    match domain {
        "" | "ai.onnx" => matches!(
            op,
            "Identity"
                | "Cast"
                | "Reshape"
                | "Flatten"
                | "Concat"
                | "ArgMax"
                | "ArgMin"
                | "Add"
                | "Sub"
                | "Mul"
                | "Div"
                | "Sigmoid"
                | "Softmax"
                | "Gather"
                | "Shape"
                | "Constant"
                | "Squeeze"
                | "Unsqueeze"
                | "Abs"
                | "Neg"
                | "Exp"
                | "Log"
                | "Sqrt"
        ),
        "ai.onnx.ml" => matches!(
            op,
            "LinearClassifier"
                | "LinearRegressor"
                | "TreeEnsembleClassifier"
                | "TreeEnsembleRegressor"
                | "Scaler"
                | "Normalizer"
                | "OneHotEncoder"
                | "ZipMap"
                | "ArrayFeatureExtractor"
                | "Imputer"
                | "LabelEncoder"
                | "Binarizer"
        ),
        _ => false,
    }
}

/// Compiles one node. `opset` is the version of the node's domain the model imports.
pub(crate) fn compile(cx: &NodeCx<'_>, ins: &[Option<In<'_>>], opset: i64) -> Result<Compiled> {
    let domain = cx.node.domain.as_str();
    match (domain, cx.op()) {
        ("" | "ai.onnx", op) => basic::compile(cx, op, ins, opset),
        ("ai.onnx.ml", "LinearClassifier") => linear::linear_classifier(cx, ins),
        ("ai.onnx.ml", "LinearRegressor") => linear::linear_regressor(cx, ins),
        ("ai.onnx.ml", "TreeEnsembleClassifier") => trees::classifier(cx, ins),
        ("ai.onnx.ml", "TreeEnsembleRegressor") => trees::regressor(cx, ins),
        ("ai.onnx.ml", op) => ml::compile(cx, op, ins),
        (d, op) => Err(crate::error::OnnxError::UnsupportedOp {
            node: cx.name.clone(),
            op: op.to_string(),
            domain: d.to_string(),
        }),
    }
}

// ---- helpers shared by the operators -------------------------------------------------------

/// Input `i`, which the operator requires.
pub(crate) fn input<'a, 'b>(
    cx: &NodeCx<'_>,
    ins: &'b [Option<In<'a>>],
    i: usize,
) -> Result<&'b In<'a>> {
    ins.get(i)
        .and_then(Option::as_ref)
        .ok_or_else(|| cx.err(format!("input {i} is missing")))
}

/// At run time: input `i`.
pub(crate) fn arg<'a>(ins: &[Option<View<'a>>], i: usize) -> std::result::Result<View<'a>, String> {
    ins.get(i)
        .copied()
        .flatten()
        .ok_or_else(|| format!("input {i} is missing"))
}

/// The rows and columns of a feature matrix (`[N, C]`, or `[C]` as one row) at run time.
pub(crate) fn matrix_dims(v: &View<'_>, what: &str) -> std::result::Result<(usize, usize), String> {
    v.rows_cols().ok_or_else(|| {
        format!(
            "{what} has shape {:?}; a [N, C] or [C] tensor was expected",
            v.shape
        )
    })
}

pub(crate) fn numeric(elem: ElemType) -> bool {
    matches!(
        elem,
        ElemType::Fp32 | ElemType::Fp64 | ElemType::Int64 | ElemType::Int32
    )
}

/// The dimensions `[N, C]` of an ai.onnx.ml operator's output with `c` columns, the batch taken
/// from its `[N, F]` input.
pub(crate) fn batch_by(input: &TypeInfo, c: Option<usize>) -> Vec<Option<usize>> {
    vec![input.batch_dim(), c]
}
