//! The standard ONNX operators that scikit-learn exports put around the ai.onnx.ml ones:
//! shape plumbing (Identity, Reshape, Flatten, Concat, Gather, Shape, Squeeze, Unsqueeze,
//! Constant), Cast, ArgMax/ArgMin, broadcasting arithmetic and a few element-wise functions.
//! Integer arithmetic wraps instead of overflowing; an integer division by zero is an error.

use kiln_ml::{ElemType, TensorData};

use super::{Compiled, In, Kernel, TypeInfo, arg, input};
use crate::error::Result;
use crate::proto::{NodeCx, elem_type};
use crate::value::{Value, View, checked_count, f64_to_i32, f64_to_i64, to_i64};

type RunResult = std::result::Result<Vec<Value>, String>;

pub(super) fn compile(
    cx: &NodeCx<'_>,
    op: &str,
    ins: &[Option<In<'_>>],
    opset: i64,
) -> Result<Compiled> {
    match op {
        "Identity" => {
            input(cx, ins, 0)?;
            Ok(Compiled::Alias)
        }
        "Cast" => cast(cx, ins),
        "Reshape" => reshape(cx, ins),
        "Flatten" => flatten(cx, ins),
        "Concat" => concat(cx, ins),
        "ArgMax" | "ArgMin" => arg_extreme(cx, ins, op == "ArgMax"),
        "Add" | "Sub" | "Mul" | "Div" => binary(cx, ins, op),
        "Sigmoid" | "Abs" | "Neg" | "Exp" | "Log" | "Sqrt" => unary(cx, ins, op),
        "Softmax" => softmax(cx, ins, opset),
        "Gather" => gather(cx, ins),
        "Shape" => shape(cx, ins),
        "Constant" => constant(cx),
        "Squeeze" | "Unsqueeze" => squeeze(cx, ins, op == "Unsqueeze", opset),
        other => Err(crate::error::OnnxError::UnsupportedOp {
            node: cx.name.clone(),
            op: other.to_string(),
            domain: cx.node.domain.clone(),
        }),
    }
}

/// `axis` normalised against `rank` (negative counts from the end).
fn norm_axis(axis: i64, rank: usize) -> Option<usize> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    (0..r).contains(&a).then_some(a as usize)
}

// ---- Cast ----------------------------------------------------------------------------------

struct Cast {
    to: ElemType,
}

fn cast_data(data: &TensorData, to: ElemType) -> std::result::Result<TensorData, String> {
    use TensorData as D;
    Ok(match (data, to) {
        (d, t) if d.elem_type() == t => d.clone(),
        (D::Fp32(v), ElemType::Fp64) => D::Fp64(v.iter().map(|x| f64::from(*x)).collect()),
        (D::Fp32(v), ElemType::Int64) => {
            D::Int64(v.iter().map(|x| f64_to_i64(f64::from(*x))).collect())
        }
        (D::Fp32(v), ElemType::Int32) => {
            D::Int32(v.iter().map(|x| f64_to_i32(f64::from(*x))).collect())
        }
        (D::Fp32(v), ElemType::Bool) => D::Bool(v.iter().map(|x| *x != 0.0).collect()),
        (D::Fp64(v), ElemType::Fp32) => D::Fp32(v.iter().map(|x| *x as f32).collect()),
        (D::Fp64(v), ElemType::Int64) => D::Int64(v.iter().map(|x| f64_to_i64(*x)).collect()),
        (D::Fp64(v), ElemType::Int32) => D::Int32(v.iter().map(|x| f64_to_i32(*x)).collect()),
        (D::Fp64(v), ElemType::Bool) => D::Bool(v.iter().map(|x| *x != 0.0).collect()),
        (D::Int64(v), ElemType::Fp32) => D::Fp32(v.iter().map(|x| *x as f32).collect()),
        (D::Int64(v), ElemType::Fp64) => D::Fp64(v.iter().map(|x| *x as f64).collect()),
        (D::Int64(v), ElemType::Int32) => D::Int32(v.iter().map(|x| *x as i32).collect()),
        (D::Int64(v), ElemType::Bool) => D::Bool(v.iter().map(|x| *x != 0).collect()),
        (D::Int32(v), ElemType::Fp32) => D::Fp32(v.iter().map(|x| *x as f32).collect()),
        (D::Int32(v), ElemType::Fp64) => D::Fp64(v.iter().map(|x| f64::from(*x)).collect()),
        (D::Int32(v), ElemType::Int64) => D::Int64(v.iter().map(|x| i64::from(*x)).collect()),
        (D::Int32(v), ElemType::Bool) => D::Bool(v.iter().map(|x| *x != 0).collect()),
        (D::Bool(v), ElemType::Fp32) => {
            D::Fp32(v.iter().map(|x| f32::from(u8::from(*x))).collect())
        }
        (D::Bool(v), ElemType::Fp64) => {
            D::Fp64(v.iter().map(|x| f64::from(u8::from(*x))).collect())
        }
        (D::Bool(v), ElemType::Int64) => D::Int64(v.iter().map(|x| i64::from(*x)).collect()),
        (D::Bool(v), ElemType::Int32) => D::Int32(v.iter().map(|x| i32::from(*x)).collect()),
        (d, t) => {
            return Err(format!(
                "cannot cast {} to {}",
                d.elem_type().as_oip(),
                t.as_oip()
            ));
        }
    })
}

impl Kernel for Cast {
    fn run(&self, inputs: &[Option<View<'_>>]) -> RunResult {
        let x = arg(inputs, 0)?;
        Ok(vec![Value::new(
            x.shape.to_vec(),
            cast_data(x.data, self.to)?,
        )])
    }
}

fn cast(cx: &NodeCx<'_>, ins: &[Option<In<'_>>]) -> Result<Compiled> {
    let x = input(cx, ins, 0)?;
    let to_code = cx
        .int("to")?
        .ok_or_else(|| cx.attr_err("to", "is required"))?;
    let to = i32::try_from(to_code)
        .ok()
        .and_then(elem_type)
        .ok_or_else(|| {
            cx.unsupported(format!(
                "a cast to {}",
                crate::proto::data_type_name(to_code as i32)
            ))
        })?;
    if (to == ElemType::Bytes) != (x.ty.elem == ElemType::Bytes) {
        return Err(cx.unsupported(format!(
            "a cast from {} to {}",
            x.ty.elem.as_oip(),
            to.as_oip()
        )));
    }
    if x.ty.elem == to {
        return Ok(Compiled::Alias);
    }
    Ok(Compiled::kernel(
        Cast { to },
        vec![TypeInfo {
            elem: to,
            dims: x.ty.dims.clone(),
        }],
    ))
}

// ---- Reshape, Flatten, Squeeze, Unsqueeze --------------------------------------------------

/// Moves or copies the data under a new shape.
fn reshaped(x: View<'_>, shape: Vec<usize>) -> std::result::Result<Value, String> {
    if checked_count(&shape) != Some(x.data.len()) {
        return Err(format!("cannot reshape {:?} to {shape:?}", x.shape));
    }
    Ok(Value::new(shape, x.data.clone()))
}

fn reshape_target(
    input: &[usize],
    spec: &[i64],
    allowzero: bool,
) -> std::result::Result<Vec<usize>, String> {
    let total = input.iter().product::<usize>();
    let mut out = Vec::with_capacity(spec.len());
    let mut infer = None;
    for (i, &s) in spec.iter().enumerate() {
        out.push(match s {
            -1 if infer.is_none() => {
                infer = Some(i);
                1
            }
            0 if !allowzero => *input.get(i).ok_or_else(|| {
                format!(
                    "shape {spec:?}: dimension {i} copies an input dimension that does not exist"
                )
            })?,
            s if s >= 0 => s as usize,
            _ => return Err(format!("invalid shape {spec:?}")),
        });
    }
    if let Some(i) = infer {
        let known: usize = out.iter().product();
        if known == 0 || total % known != 0 {
            return Err(format!("cannot reshape {input:?} to {spec:?}"));
        }
        out[i] = total / known;
    }
    Ok(out)
}

struct Reshape {
    spec: Option<Vec<i64>>,
    allowzero: bool,
}

impl Kernel for Reshape {
    fn run(&self, inputs: &[Option<View<'_>>]) -> RunResult {
        let x = arg(inputs, 0)?;
        let spec = match &self.spec {
            Some(s) => s.clone(),
            None => to_i64(arg(inputs, 1)?.data).ok_or("the shape is not INT64")?,
        };
        let shape = reshape_target(x.shape, &spec, self.allowzero)?;
        Ok(vec![reshaped(x, shape)?])
    }
}

fn reshape(cx: &NodeCx<'_>, ins: &[Option<In<'_>>]) -> Result<Compiled> {
    let x = input(cx, ins, 0)?;
    let s = input(cx, ins, 1)?;
    if s.ty.elem != ElemType::Int64 {
        return Err(cx.err("the shape input is not INT64"));
    }
    let allowzero = cx.int_or("allowzero", 0)? != 0;
    let spec = s.konst.and_then(|v| to_i64(&v.data));
    let dims = spec.as_ref().map(|spec| {
        spec.iter()
            .enumerate()
            .map(|(i, &d)| match d {
                d if d > 0 => Some(d as usize),
                0 if !allowzero => {
                    x.ty.dims
                        .as_ref()
                        .and_then(|xd| xd.get(i).copied().flatten())
                }
                0 => Some(0),
                _ => None,
            })
            .collect()
    });
    Ok(Compiled::kernel(
        Reshape { spec, allowzero },
        vec![TypeInfo {
            elem: x.ty.elem,
            dims,
        }],
    ))
}

struct Flatten {
    axis: i64,
}

impl Kernel for Flatten {
    fn run(&self, inputs: &[Option<View<'_>>]) -> RunResult {
        let x = arg(inputs, 0)?;
        let r = x.shape.len() as i64;
        let a = if self.axis < 0 {
            self.axis + r
        } else {
            self.axis
        };
        if !(0..=r).contains(&a) {
            return Err(format!(
                "axis {} is out of range for shape {:?}",
                self.axis, x.shape
            ));
        }
        let (outer, inner) = x.shape.split_at(a as usize);
        let shape = vec![outer.iter().product(), inner.iter().product()];
        Ok(vec![reshaped(x, shape)?])
    }
}

fn flatten(cx: &NodeCx<'_>, ins: &[Option<In<'_>>]) -> Result<Compiled> {
    let x = input(cx, ins, 0)?;
    let axis = cx.int_or("axis", 1)?;
    let dims = x.ty.dims.as_ref().and_then(|d| {
        let r = d.len() as i64;
        let a = if axis < 0 { axis + r } else { axis };
        if !(0..=r).contains(&a) {
            return None;
        }
        let (o, i) = d.split_at(a as usize);
        let prod = |s: &[Option<usize>]| s.iter().try_fold(1usize, |acc, d| d.map(|d| acc * d));
        Some(vec![prod(o), prod(i)])
    });
    Ok(Compiled::kernel(
        Flatten { axis },
        vec![TypeInfo {
            elem: x.ty.elem,
            dims,
        }],
    ))
}

struct Squeeze {
    axes: Option<Vec<i64>>,
    unsqueeze: bool,
}

impl Kernel for Squeeze {
    fn run(&self, inputs: &[Option<View<'_>>]) -> RunResult {
        let x = arg(inputs, 0)?;
        let shape = if self.unsqueeze {
            let axes = self.axes.as_deref().unwrap_or(&[]);
            let rank = x.shape.len() + axes.len();
            let mut norm: Vec<usize> = axes
                .iter()
                .map(|&a| norm_axis(a, rank).ok_or(format!("axis {a} is out of range")))
                .collect::<std::result::Result<_, _>>()?;
            norm.sort_unstable();
            norm.dedup();
            if norm.len() != axes.len() {
                return Err("repeated axes".into());
            }
            let mut it = x.shape.iter();
            (0..rank)
                .map(|i| {
                    if norm.contains(&i) {
                        1
                    } else {
                        it.next().copied().unwrap_or(1)
                    }
                })
                .collect()
        } else {
            match &self.axes {
                None => x.shape.iter().copied().filter(|d| *d != 1).collect(),
                Some(axes) => {
                    let norm: Vec<usize> = axes
                        .iter()
                        .map(|&a| {
                            norm_axis(a, x.shape.len()).ok_or(format!("axis {a} is out of range"))
                        })
                        .collect::<std::result::Result<_, _>>()?;
                    if let Some(a) = norm.iter().find(|&&a| x.shape[a] != 1) {
                        return Err(format!("dimension {a} of {:?} is not 1", x.shape));
                    }
                    x.shape
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| !norm.contains(i))
                        .map(|(_, d)| *d)
                        .collect()
                }
            }
        };
        Ok(vec![reshaped(x, shape)?])
    }
}

fn squeeze(
    cx: &NodeCx<'_>,
    ins: &[Option<In<'_>>],
    unsqueeze: bool,
    opset: i64,
) -> Result<Compiled> {
    let x = input(cx, ins, 0)?;
    let axes = if opset >= 13 {
        match ins.get(1).and_then(Option::as_ref) {
            None => None,
            Some(a) => match a.konst.and_then(|v| to_i64(&v.data)) {
                Some(v) => Some(v),
                None => return Err(cx.unsupported("axes that are not a constant")),
            },
        }
    } else {
        cx.ints("axes")?.map(<[i64]>::to_vec)
    };
    if unsqueeze && axes.is_none() {
        return Err(cx.attr_err("axes", "is required"));
    }
    let dims = match (&x.ty.dims, &axes) {
        (Some(d), Some(a)) if unsqueeze => {
            let rank = d.len() + a.len();
            let norm: Vec<usize> = a.iter().filter_map(|&a| norm_axis(a, rank)).collect();
            let mut it = d.iter();
            Some(
                (0..rank)
                    .map(|i| {
                        if norm.contains(&i) {
                            Some(1)
                        } else {
                            it.next().copied().flatten()
                        }
                    })
                    .collect(),
            )
        }
        (Some(d), Some(a)) => {
            let norm: Vec<usize> = a.iter().filter_map(|&a| norm_axis(a, d.len())).collect();
            Some(
                d.iter()
                    .enumerate()
                    .filter(|(i, _)| !norm.contains(i))
                    .map(|(_, d)| *d)
                    .collect(),
            )
        }
        _ => None,
    };
    Ok(Compiled::kernel(
        Squeeze { axes, unsqueeze },
        vec![TypeInfo {
            elem: x.ty.elem,
            dims,
        }],
    ))
}

// ---- Concat, Gather, Shape, Constant -------------------------------------------------------

/// The same variant's slices of every input, or an error.
macro_rules! slices {
    ($views:expr, $variant:ident) => {
        $views
            .iter()
            .map(|v| match v.data {
                TensorData::$variant(d) => Ok(d.as_slice()),
                other => Err(format!(
                    "mixed input types ({})",
                    other.elem_type().as_oip()
                )),
            })
            .collect::<std::result::Result<Vec<_>, String>>()
    };
}

/// Applies a generic function to the data of every variant.
macro_rules! per_variant {
    ($views:expr, $f:ident $(, $arg:expr)*) => {
        match $views[0].data {
            TensorData::Fp32(_) => TensorData::Fp32($f(&slices!($views, Fp32)? $(, $arg)*)),
            TensorData::Fp64(_) => TensorData::Fp64($f(&slices!($views, Fp64)? $(, $arg)*)),
            TensorData::Int64(_) => TensorData::Int64($f(&slices!($views, Int64)? $(, $arg)*)),
            TensorData::Int32(_) => TensorData::Int32($f(&slices!($views, Int32)? $(, $arg)*)),
            TensorData::Bool(_) => TensorData::Bool($f(&slices!($views, Bool)? $(, $arg)*)),
            TensorData::Bytes(_) => TensorData::Bytes($f(&slices!($views, Bytes)? $(, $arg)*)),
        }
    };
}

struct Concat {
    axis: i64,
}

fn concat_blocks<T: Clone>(parts: &[&[T]], outer: usize, inners: &[usize]) -> Vec<T> {
    let mut out = Vec::with_capacity(inners.iter().sum::<usize>() * outer);
    for o in 0..outer {
        for (p, &inner) in parts.iter().zip(inners) {
            out.extend_from_slice(&p[o * inner..(o + 1) * inner]);
        }
    }
    out
}

impl Kernel for Concat {
    fn run(&self, inputs: &[Option<View<'_>>]) -> RunResult {
        let views: Vec<View<'_>> = inputs.iter().flatten().copied().collect();
        let Some(first) = views.first() else {
            return Err("no inputs".into());
        };
        let rank = first.shape.len();
        let axis = norm_axis(self.axis, rank).ok_or(format!(
            "axis {} is out of range for rank {rank}",
            self.axis
        ))?;
        let mut shape = first.shape.to_vec();
        shape[axis] = 0;
        for v in &views {
            if v.shape.len() != rank
                || v.shape
                    .iter()
                    .enumerate()
                    .any(|(i, d)| i != axis && *d != first.shape[i])
            {
                return Err(format!(
                    "cannot concatenate {:?} with {:?} on axis {axis}",
                    first.shape, v.shape
                ));
            }
            shape[axis] += v.shape[axis];
        }
        let outer: usize = first.shape[..axis].iter().product();
        let inners: Vec<usize> = views
            .iter()
            .map(|v| v.shape[axis..].iter().product())
            .collect();
        let data = per_variant!(views, concat_blocks, outer, &inners);
        Ok(vec![Value::new(shape, data)])
    }
}

fn concat(cx: &NodeCx<'_>, ins: &[Option<In<'_>>]) -> Result<Compiled> {
    let present: Vec<&In<'_>> = ins.iter().flatten().collect();
    let Some(first) = present.first() else {
        return Err(cx.err("no inputs"));
    };
    if let Some(other) = present.iter().find(|i| i.ty.elem != first.ty.elem) {
        return Err(cx.err(format!(
            "inputs of different types ({} and {})",
            first.ty.elem.as_oip(),
            other.ty.elem.as_oip()
        )));
    }
    let axis = cx
        .int("axis")?
        .ok_or_else(|| cx.attr_err("axis", "is required"))?;
    let dims = present
        .iter()
        .map(|i| i.ty.dims.clone())
        .collect::<Option<Vec<_>>>()
        .and_then(|all| {
            let rank = all[0].len();
            let a = norm_axis(axis, rank)?;
            if all.iter().any(|d| d.len() != rank) {
                return None;
            }
            Some(
                (0..rank)
                    .map(|i| {
                        if i == a {
                            all.iter().try_fold(0usize, |acc, d| d[i].map(|x| acc + x))
                        } else {
                            all.iter().find_map(|d| d[i])
                        }
                    })
                    .collect(),
            )
        });
    Ok(Compiled::kernel(
        Concat { axis },
        vec![TypeInfo {
            elem: first.ty.elem,
            dims,
        }],
    ))
}

struct Gather {
    axis: i64,
}

fn gather_blocks<T: Clone>(
    parts: &[&[T]],
    outer: usize,
    len: usize,
    inner: usize,
    idx: &[usize],
) -> Vec<T> {
    let d = parts[0];
    let mut out = Vec::with_capacity(outer * idx.len() * inner);
    for o in 0..outer {
        for &i in idx {
            let s = (o * len + i) * inner;
            out.extend_from_slice(&d[s..s + inner]);
        }
    }
    out
}

impl Kernel for Gather {
    fn run(&self, inputs: &[Option<View<'_>>]) -> RunResult {
        let x = arg(inputs, 0)?;
        let ind = arg(inputs, 1)?;
        let axis = norm_axis(self.axis, x.shape.len()).ok_or(format!(
            "axis {} is out of range for {:?}",
            self.axis, x.shape
        ))?;
        let len = x.shape[axis];
        let raw = to_i64(ind.data).ok_or("the indices are not integers")?;
        let idx = raw
            .iter()
            .map(|&i| {
                let j = if i < 0 { i + len as i64 } else { i };
                if (0..len as i64).contains(&j) {
                    Ok(j as usize)
                } else {
                    Err(format!(
                        "index {i} is out of range for a dimension of {len}"
                    ))
                }
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let outer: usize = x.shape[..axis].iter().product();
        let inner: usize = x.shape[axis + 1..].iter().product();
        let views = [x];
        let data = per_variant!(views, gather_blocks, outer, len, inner, &idx);
        let mut shape = x.shape[..axis].to_vec();
        shape.extend_from_slice(ind.shape);
        shape.extend_from_slice(&x.shape[axis + 1..]);
        Ok(vec![Value::new(shape, data)])
    }
}

fn gather(cx: &NodeCx<'_>, ins: &[Option<In<'_>>]) -> Result<Compiled> {
    let x = input(cx, ins, 0)?;
    let i = input(cx, ins, 1)?;
    if !matches!(i.ty.elem, ElemType::Int64 | ElemType::Int32) {
        return Err(cx.err("the indices are not INT64 or INT32"));
    }
    let axis = cx.int_or("axis", 0)?;
    let dims = match (&x.ty.dims, &i.ty.dims) {
        (Some(d), Some(id)) => norm_axis(axis, d.len()).map(|a| {
            let mut out = d[..a].to_vec();
            out.extend_from_slice(id);
            out.extend_from_slice(&d[a + 1..]);
            out
        }),
        _ => None,
    };
    Ok(Compiled::kernel(
        Gather { axis },
        vec![TypeInfo {
            elem: x.ty.elem,
            dims,
        }],
    ))
}

struct Shape {
    start: i64,
    end: Option<i64>,
}

impl Shape {
    fn range(&self, rank: usize) -> (usize, usize) {
        let r = rank as i64;
        let clamp = |a: i64| (if a < 0 { a + r } else { a }).clamp(0, r) as usize;
        let s = clamp(self.start);
        let e = clamp(self.end.unwrap_or(r));
        (s, e.max(s))
    }
}

impl Kernel for Shape {
    fn run(&self, inputs: &[Option<View<'_>>]) -> RunResult {
        let x = arg(inputs, 0)?;
        let (s, e) = self.range(x.shape.len());
        let v: Vec<i64> = x.shape[s..e].iter().map(|d| *d as i64).collect();
        Ok(vec![Value::new(vec![v.len()], TensorData::Int64(v))])
    }
}

fn shape(cx: &NodeCx<'_>, ins: &[Option<In<'_>>]) -> Result<Compiled> {
    let x = input(cx, ins, 0)?;
    let k = Shape {
        start: cx.int_or("start", 0)?,
        end: cx.int("end")?,
    };
    let dims = x.ty.rank().map(|r| {
        let (s, e) = k.range(r);
        vec![Some(e - s)]
    });
    Ok(Compiled::kernel(
        k,
        vec![TypeInfo {
            elem: ElemType::Int64,
            dims,
        }],
    ))
}

struct Constant(Value);

impl Kernel for Constant {
    fn run(&self, _: &[Option<View<'_>>]) -> RunResult {
        Ok(vec![self.0.clone()])
    }
}

fn constant(cx: &NodeCx<'_>) -> Result<Compiled> {
    let v = if let Some(t) = cx.tensor("value")? {
        t
    } else if let Some(f) = cx.float("value_float")? {
        Value::new(vec![], TensorData::Fp32(vec![f]))
    } else if let Some(f) = cx.floats("value_floats")? {
        Value::new(vec![f.len()], TensorData::Fp32(f.to_vec()))
    } else if let Some(i) = cx.int("value_int")? {
        Value::new(vec![], TensorData::Int64(vec![i]))
    } else if let Some(i) = cx.ints("value_ints")? {
        Value::new(vec![i.len()], TensorData::Int64(i.to_vec()))
    } else if let Some(s) = cx.string("value_string")? {
        Value::new(vec![], TensorData::Bytes(vec![s.into_bytes()]))
    } else if let Some(s) = cx.strings("value_strings")? {
        Value::new(vec![s.len()], TensorData::Bytes(s.to_vec()))
    } else {
        return Err(cx.attr_err(
            "value",
            "no value (value, value_float(s), value_int(s), value_string(s))",
        ));
    };
    let ty = TypeInfo::new(
        v.data.elem_type(),
        v.shape.iter().map(|d| Some(*d)).collect(),
    );
    Ok(Compiled::kernel(Constant(v), vec![ty]))
}

// ---- ArgMax / ArgMin -----------------------------------------------------------------------

struct ArgExtreme {
    max: bool,
    axis: i64,
    keepdims: bool,
    last: bool,
}

fn arg_best<T: PartialOrd + Copy>(
    v: &[T],
    outer: usize,
    len: usize,
    inner: usize,
    max: bool,
    last: bool,
) -> Vec<i64> {
    let mut out = Vec::with_capacity(outer * inner);
    for o in 0..outer {
        for i in 0..inner {
            let at = |k: usize| v[(o * len + k) * inner + i];
            let mut best = 0usize;
            for k in 1..len {
                let (a, b) = (at(k), at(best));
                let better = if max {
                    a > b || (last && a == b)
                } else {
                    a < b || (last && a == b)
                };
                if better {
                    best = k;
                }
            }
            out.push(best as i64);
        }
    }
    out
}

impl Kernel for ArgExtreme {
    fn run(&self, inputs: &[Option<View<'_>>]) -> RunResult {
        let x = arg(inputs, 0)?;
        let axis = norm_axis(self.axis, x.shape.len()).ok_or(format!(
            "axis {} is out of range for {:?}",
            self.axis, x.shape
        ))?;
        let len = x.shape[axis];
        if len == 0 {
            return Err("cannot take the arg max of an empty axis".into());
        }
        let outer: usize = x.shape[..axis].iter().product();
        let inner: usize = x.shape[axis + 1..].iter().product();
        let (m, l) = (self.max, self.last);
        let v = match x.data {
            TensorData::Fp32(d) => arg_best(d, outer, len, inner, m, l),
            TensorData::Fp64(d) => arg_best(d, outer, len, inner, m, l),
            TensorData::Int64(d) => arg_best(d, outer, len, inner, m, l),
            TensorData::Int32(d) => arg_best(d, outer, len, inner, m, l),
            other => return Err(format!("arg max of {}", other.elem_type().as_oip())),
        };
        let mut shape = x.shape.to_vec();
        if self.keepdims {
            shape[axis] = 1;
        } else {
            shape.remove(axis);
        }
        Ok(vec![Value::new(shape, TensorData::Int64(v))])
    }
}

fn arg_extreme(cx: &NodeCx<'_>, ins: &[Option<In<'_>>], max: bool) -> Result<Compiled> {
    let x = input(cx, ins, 0)?;
    if !super::numeric(x.ty.elem) {
        return Err(cx.err(format!("input is {}", x.ty.elem.as_oip())));
    }
    let k = ArgExtreme {
        max,
        axis: cx.int_or("axis", 0)?,
        keepdims: cx.int_or("keepdims", 1)? != 0,
        last: cx.int_or("select_last_index", 0)? != 0,
    };
    let dims = x.ty.dims.as_ref().and_then(|d| {
        let a = norm_axis(k.axis, d.len())?;
        let mut d = d.clone();
        if k.keepdims {
            d[a] = Some(1);
        } else {
            d.remove(a);
        }
        Some(d)
    });
    Ok(Compiled::kernel(
        k,
        vec![TypeInfo {
            elem: ElemType::Int64,
            dims,
        }],
    ))
}

// ---- Arithmetic ----------------------------------------------------------------------------

#[derive(Clone, Copy)]
enum Bin {
    Add,
    Sub,
    Mul,
    Div,
}

/// numpy broadcasting of two shapes.
fn broadcast(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let r = a.len().max(b.len());
    (0..r)
        .map(|i| {
            let da = if i + a.len() >= r {
                a[i + a.len() - r]
            } else {
                1
            };
            let db = if i + b.len() >= r {
                b[i + b.len() - r]
            } else {
                1
            };
            match (da, db) {
                (x, y) if x == y => Some(x),
                (1, y) => Some(y),
                (x, 1) => Some(x),
                _ => None,
            }
        })
        .collect()
}

/// Strides of `shape` (right-aligned in `out`), 0 where broadcast.
fn bstrides(shape: &[usize], out: &[usize]) -> Vec<usize> {
    let r = out.len();
    let mut strides = vec![0; r];
    let mut acc = 1;
    for i in (0..shape.len()).rev() {
        let o = i + r - shape.len();
        strides[o] = if shape[i] == 1 { 0 } else { acc };
        acc *= shape[i];
    }
    strides
}

/// Refuse to materialise more elements than this from broadcasting (2³¹).
const MAX_BROADCAST: usize = 1 << 31;

fn apply_bin<T: Copy>(
    a: &[T],
    ash: &[usize],
    b: &[T],
    bsh: &[usize],
    out: &[usize],
    f: impl Fn(T, T) -> std::result::Result<T, String>,
) -> std::result::Result<Vec<T>, String> {
    let n = checked_count(out)
        .filter(|n| *n <= MAX_BROADCAST)
        .ok_or(format!(
            "broadcasting {ash:?} with {bsh:?} gives too large an output"
        ))?;
    if ash == bsh {
        return a.iter().zip(b).map(|(x, y)| f(*x, *y)).collect();
    }
    if b.len() == 1 {
        return a.iter().map(|x| f(*x, b[0])).collect();
    }
    let (sa, sb) = (bstrides(ash, out), bstrides(bsh, out));
    let mut res = Vec::with_capacity(n);
    let mut idx = vec![0usize; out.len()];
    let (mut ia, mut ib) = (0usize, 0usize);
    for _ in 0..n {
        res.push(f(a[ia], b[ib])?);
        for d in (0..out.len()).rev() {
            idx[d] += 1;
            ia += sa[d];
            ib += sb[d];
            if idx[d] < out[d] {
                break;
            }
            ia -= sa[d] * idx[d];
            ib -= sb[d] * idx[d];
            idx[d] = 0;
        }
    }
    Ok(res)
}

struct Binary(Bin);

macro_rules! float_bin {
    ($op:expr) => {
        move |x, y| {
            Ok(match $op {
                Bin::Add => x + y,
                Bin::Sub => x - y,
                Bin::Mul => x * y,
                Bin::Div => x / y,
            })
        }
    };
}

macro_rules! int_bin {
    ($op:expr) => {
        move |x, y| match $op {
            Bin::Add => Ok(x.wrapping_add(y)),
            Bin::Sub => Ok(x.wrapping_sub(y)),
            Bin::Mul => Ok(x.wrapping_mul(y)),
            Bin::Div => {
                if y == 0 {
                    Err("integer division by zero".to_string())
                } else {
                    Ok(x.wrapping_div(y))
                }
            }
        }
    };
}

impl Kernel for Binary {
    fn run(&self, inputs: &[Option<View<'_>>]) -> RunResult {
        let a = arg(inputs, 0)?;
        let b = arg(inputs, 1)?;
        let out = broadcast(a.shape, b.shape)
            .ok_or(format!("cannot broadcast {:?} with {:?}", a.shape, b.shape))?;
        let op = self.0;
        let data = match (a.data, b.data) {
            (TensorData::Fp32(x), TensorData::Fp32(y)) => {
                TensorData::Fp32(apply_bin(x, a.shape, y, b.shape, &out, float_bin!(op))?)
            }
            (TensorData::Fp64(x), TensorData::Fp64(y)) => {
                TensorData::Fp64(apply_bin(x, a.shape, y, b.shape, &out, float_bin!(op))?)
            }
            (TensorData::Int64(x), TensorData::Int64(y)) => {
                TensorData::Int64(apply_bin(x, a.shape, y, b.shape, &out, int_bin!(op))?)
            }
            (TensorData::Int32(x), TensorData::Int32(y)) => {
                TensorData::Int32(apply_bin(x, a.shape, y, b.shape, &out, int_bin!(op))?)
            }
            (x, y) => {
                return Err(format!(
                    "cannot combine {} with {}",
                    x.elem_type().as_oip(),
                    y.elem_type().as_oip()
                ));
            }
        };
        Ok(vec![Value::new(out, data)])
    }
}

fn binary(cx: &NodeCx<'_>, ins: &[Option<In<'_>>], op: &str) -> Result<Compiled> {
    let a = input(cx, ins, 0)?;
    let b = input(cx, ins, 1)?;
    if a.ty.elem != b.ty.elem || !super::numeric(a.ty.elem) {
        return Err(cx.err(format!(
            "inputs are {} and {}",
            a.ty.elem.as_oip(),
            b.ty.elem.as_oip()
        )));
    }
    let bin = match op {
        "Add" => Bin::Add,
        "Sub" => Bin::Sub,
        "Mul" => Bin::Mul,
        _ => Bin::Div,
    };
    let dims = match (&a.ty.dims, &b.ty.dims) {
        (Some(x), Some(y)) => {
            let r = x.len().max(y.len());
            Some(
                (0..r)
                    .map(|i| {
                        let dx = if i + x.len() >= r {
                            x[i + x.len() - r]
                        } else {
                            Some(1)
                        };
                        let dy = if i + y.len() >= r {
                            y[i + y.len() - r]
                        } else {
                            Some(1)
                        };
                        match (dx, dy) {
                            (Some(1), d) | (d, Some(1)) => d,
                            (Some(p), Some(q)) if p == q => Some(p),
                            _ => None,
                        }
                    })
                    .collect(),
            )
        }
        _ => None,
    };
    Ok(Compiled::kernel(
        Binary(bin),
        vec![TypeInfo {
            elem: a.ty.elem,
            dims,
        }],
    ))
}

struct Unary(&'static str);

fn unary_f<T: Copy>(v: &[T], f: impl Fn(T) -> T) -> Vec<T> {
    v.iter().map(|x| f(*x)).collect()
}

impl Kernel for Unary {
    fn run(&self, inputs: &[Option<View<'_>>]) -> RunResult {
        let x = arg(inputs, 0)?;
        let op = self.0;
        let data = match x.data {
            TensorData::Fp32(v) => TensorData::Fp32(match op {
                "Sigmoid" => unary_f(v, super::ort_math::logistic),
                "Abs" => unary_f(v, f32::abs),
                "Neg" => unary_f(v, |x| -x),
                "Exp" => unary_f(v, f32::exp),
                "Log" => unary_f(v, f32::ln),
                _ => unary_f(v, f32::sqrt),
            }),
            TensorData::Fp64(v) => TensorData::Fp64(match op {
                "Sigmoid" => unary_f(v, |x| 1.0 / (1.0 + (-x).exp())),
                "Abs" => unary_f(v, f64::abs),
                "Neg" => unary_f(v, |x| -x),
                "Exp" => unary_f(v, f64::exp),
                "Log" => unary_f(v, f64::ln),
                _ => unary_f(v, f64::sqrt),
            }),
            TensorData::Int64(v) if op == "Abs" => TensorData::Int64(unary_f(v, i64::wrapping_abs)),
            TensorData::Int64(v) if op == "Neg" => TensorData::Int64(unary_f(v, i64::wrapping_neg)),
            TensorData::Int32(v) if op == "Abs" => TensorData::Int32(unary_f(v, i32::wrapping_abs)),
            TensorData::Int32(v) if op == "Neg" => TensorData::Int32(unary_f(v, i32::wrapping_neg)),
            other => return Err(format!("{op} of {}", other.elem_type().as_oip())),
        };
        Ok(vec![Value::new(x.shape.to_vec(), data)])
    }
}

fn unary(cx: &NodeCx<'_>, ins: &[Option<In<'_>>], op: &str) -> Result<Compiled> {
    let x = input(cx, ins, 0)?;
    let ok = match x.ty.elem {
        ElemType::Fp32 | ElemType::Fp64 => true,
        ElemType::Int64 | ElemType::Int32 => matches!(op, "Abs" | "Neg"),
        _ => false,
    };
    if !ok {
        return Err(cx.unsupported(format!("{op} of {}", x.ty.elem.as_oip())));
    }
    let name: &'static str = match op {
        "Sigmoid" => "Sigmoid",
        "Abs" => "Abs",
        "Neg" => "Neg",
        "Exp" => "Exp",
        "Log" => "Log",
        _ => "Sqrt",
    };
    Ok(Compiled::kernel(Unary(name), vec![x.ty.clone()]))
}

struct Softmax {
    axis: i64,
    /// opset < 13: the input is seen as 2-D, `[prod(dims[..axis]), prod(dims[axis..])]`.
    coerce_2d: bool,
}

fn softmax_rows<T: num_like::Float>(v: &mut [T], outer: usize, len: usize, inner: usize) {
    for o in 0..outer {
        for i in 0..inner {
            let at = |k: usize| (o * len + k) * inner + i;
            let mut max = T::NEG_INF;
            for k in 0..len {
                if v[at(k)] > max {
                    max = v[at(k)];
                }
            }
            let mut sum = T::ZERO;
            for k in 0..len {
                let e = (v[at(k)] - max).exp();
                v[at(k)] = e;
                sum = sum + e;
            }
            for k in 0..len {
                v[at(k)] = v[at(k)] / sum;
            }
        }
    }
}

mod num_like {
    pub trait Float:
        Copy
        + PartialOrd
        + std::ops::Sub<Output = Self>
        + std::ops::Add<Output = Self>
        + std::ops::Div<Output = Self>
    {
        const NEG_INF: Self;
        const ZERO: Self;
        fn exp(self) -> Self;
    }
    impl Float for f32 {
        const NEG_INF: Self = f32::NEG_INFINITY;
        const ZERO: Self = 0.0;
        fn exp(self) -> Self {
            f32::exp(self)
        }
    }
    impl Float for f64 {
        const NEG_INF: Self = f64::NEG_INFINITY;
        const ZERO: Self = 0.0;
        fn exp(self) -> Self {
            f64::exp(self)
        }
    }
}

impl Kernel for Softmax {
    fn run(&self, inputs: &[Option<View<'_>>]) -> RunResult {
        let x = arg(inputs, 0)?;
        let rank = x.shape.len();
        let axis = norm_axis(self.axis, rank).ok_or(format!(
            "axis {} is out of range for {:?}",
            self.axis, x.shape
        ))?;
        let (outer, len, inner) = if self.coerce_2d {
            (
                x.shape[..axis].iter().product(),
                x.shape[axis..].iter().product(),
                1,
            )
        } else {
            (
                x.shape[..axis].iter().product(),
                x.shape[axis],
                x.shape[axis + 1..].iter().product(),
            )
        };
        let data = match x.data {
            TensorData::Fp32(v) => {
                let mut v = v.clone();
                softmax_rows(&mut v, outer, len, inner);
                TensorData::Fp32(v)
            }
            TensorData::Fp64(v) => {
                let mut v = v.clone();
                softmax_rows(&mut v, outer, len, inner);
                TensorData::Fp64(v)
            }
            other => return Err(format!("softmax of {}", other.elem_type().as_oip())),
        };
        Ok(vec![Value::new(x.shape.to_vec(), data)])
    }
}

fn softmax(cx: &NodeCx<'_>, ins: &[Option<In<'_>>], opset: i64) -> Result<Compiled> {
    let x = input(cx, ins, 0)?;
    if !matches!(x.ty.elem, ElemType::Fp32 | ElemType::Fp64) {
        return Err(cx.err(format!("input is {}", x.ty.elem.as_oip())));
    }
    let coerce_2d = opset < 13;
    let axis = cx.int_or("axis", if coerce_2d { 1 } else { -1 })?;
    Ok(Compiled::kernel(
        Softmax { axis, coerce_2d },
        vec![x.ty.clone()],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcasting_follows_numpy() {
        assert_eq!(broadcast(&[3, 1], &[4]), Some(vec![3, 4]));
        assert_eq!(broadcast(&[2, 3], &[3, 2]), None);
        let r = apply_bin(
            &[1.0f32, 2.0, 3.0],
            &[3, 1],
            &[10.0, 20.0],
            &[2],
            &[3, 2],
            |a, b| Ok(a + b),
        )
        .unwrap();
        assert_eq!(r, vec![11.0, 21.0, 12.0, 22.0, 13.0, 23.0]);
    }

    #[test]
    fn reshape_copies_zero_and_infers_minus_one() {
        assert_eq!(
            reshape_target(&[4, 3], &[0, -1], false).unwrap(),
            vec![4, 3]
        );
        assert_eq!(reshape_target(&[4, 3], &[-1], false).unwrap(), vec![12]);
        assert!(reshape_target(&[4, 3], &[5, -1], false).is_err());
    }

    #[test]
    fn casts_follow_onnxruntime_on_x86() {
        let d = cast_data(
            &TensorData::Fp32(vec![1.9, -1.9, f32::NAN]),
            ElemType::Int64,
        )
        .unwrap();
        assert_eq!(d, TensorData::Int64(vec![1, -1, i64::MIN]));
    }
}
