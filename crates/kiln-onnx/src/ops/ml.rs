//! The other `ai.onnx.ml` operators scikit-learn pipelines export, with onnxruntime's
//! semantics: Scaler, Normalizer, OneHotEncoder, Imputer, ArrayFeatureExtractor, Binarizer,
//! LabelEncoder and ZipMap (served as the probability tensor it wraps: a sequence of maps is
//! not a tensor).

use std::collections::HashMap;

use kiln_ml::{ElemType, TensorData};

use super::{Compiled, In, Kernel, TypeInfo, arg, input, numeric};
use crate::error::Result;
use crate::proto::NodeCx;
use crate::value::{Value, View, f64_to_i64, to_f32};

pub(super) fn compile(cx: &NodeCx<'_>, op: &str, ins: &[Option<In<'_>>]) -> Result<Compiled> {
    match op {
        "Scaler" => scaler(cx, ins),
        "Normalizer" => normalizer(cx, ins),
        "OneHotEncoder" => one_hot(cx, ins),
        "Imputer" => imputer(cx, ins),
        "ArrayFeatureExtractor" => array_feature_extractor(cx, ins),
        "Binarizer" => binarizer(cx, ins),
        "LabelEncoder" => label_encoder(cx, ins),
        "ZipMap" => zipmap(cx, ins),
        other => Err(crate::error::OnnxError::UnsupportedOp {
            node: cx.name.clone(),
            op: other.to_string(),
            domain: "ai.onnx.ml".into(),
        }),
    }
}

fn require_numeric(cx: &NodeCx<'_>, x: &In<'_>, what: &str) -> Result<()> {
    if numeric(x.ty.elem) {
        Ok(())
    } else {
        Err(cx.err(format!(
            "{what} is {}; a number type was expected",
            x.ty.elem.as_oip()
        )))
    }
}

/// The stride onnxruntime's row-wise ml operators use: the length of a 1-D input, else the
/// second dimension.
fn stride(shape: &[usize]) -> std::result::Result<usize, String> {
    match shape {
        [] => Err("the input has no dimensions".into()),
        [c] => Ok(*c),
        [_, c, ..] => Ok(*c),
    }
}

// ---- Scaler --------------------------------------------------------------------------------

struct Scaler {
    offset: Vec<f32>,
    scale: Vec<f32>,
}

impl Kernel for Scaler {
    fn run(&self, inputs: &[Option<View<'_>>]) -> std::result::Result<Vec<Value>, String> {
        let x = arg(inputs, 0)?;
        let stride = stride(x.shape)?;
        let per_feature = self.offset.len() == stride;
        if !per_feature && self.offset.len() != 1 {
            return Err(format!(
                "the input has {stride} columns, the scaler has {} offsets",
                self.offset.len()
            ));
        }
        let at = |i: usize| if per_feature { i % stride.max(1) } else { 0 };
        // (x - offset) * scale in the input's type, as onnxruntime's ScalerOp<T>.
        let y: Vec<f32> = match x.data {
            TensorData::Fp64(v) => v
                .iter()
                .enumerate()
                .map(|(i, x)| {
                    ((x - f64::from(self.offset[at(i)])) * f64::from(self.scale[at(i)])) as f32
                })
                .collect(),
            other => {
                let v = to_f32(other).ok_or("the input is not numeric")?;
                v.iter()
                    .enumerate()
                    .map(|(i, x)| (x - self.offset[at(i)]) * self.scale[at(i)])
                    .collect()
            }
        };
        Ok(vec![Value::new(x.shape.to_vec(), TensorData::Fp32(y))])
    }
}

fn scaler(cx: &NodeCx<'_>, ins: &[Option<In<'_>>]) -> Result<Compiled> {
    let x = input(cx, ins, 0)?;
    require_numeric(cx, x, "input X")?;
    let scale = cx.floats("scale")?.unwrap_or_default().to_vec();
    let offset = cx.floats("offset")?.unwrap_or_default().to_vec();
    if scale.is_empty() {
        return Err(cx.attr_err("scale", "is empty"));
    }
    if scale.len() != offset.len() {
        return Err(cx.attr_err(
            "offset",
            format!("{} offsets for {} scales", offset.len(), scale.len()),
        ));
    }
    if let Some(c) =
        x.ty.dims
            .as_deref()
            .and_then(|d| d.get(1).or(d.first()).copied().flatten())
        && scale.len() != 1
        && scale.len() != c
    {
        return Err(cx.attr_err("scale", format!("{} values for {c} columns", scale.len())));
    }
    let dims = x.ty.dims.clone();
    Ok(Compiled::kernel(
        Scaler { offset, scale },
        vec![TypeInfo {
            elem: ElemType::Fp32,
            dims,
        }],
    ))
}

// ---- Normalizer ----------------------------------------------------------------------------

#[derive(Clone, Copy)]
enum Norm {
    Max,
    L1,
    L2,
}

struct Normalizer {
    norm: Norm,
}

impl Kernel for Normalizer {
    fn run(&self, inputs: &[Option<View<'_>>]) -> std::result::Result<Vec<Value>, String> {
        let x = arg(inputs, 0)?;
        if x.shape.len() > 2 {
            return Err(format!(
                "the input has shape {:?}; [N, C] or [C] was expected",
                x.shape
            ));
        }
        let stride = stride(x.shape)?;
        // onnxruntime normalises in f32 (a float64 x² is squared before the cast).
        let (v, sq): (Vec<f32>, Option<Vec<f32>>) = match x.data {
            TensorData::Fp64(d) => (
                d.iter().map(|x| *x as f32).collect(),
                Some(d.iter().map(|x| (x * x) as f32).collect()),
            ),
            TensorData::Int64(d) => (
                d.iter().map(|x| *x as f32).collect(),
                Some(d.iter().map(|x| x.wrapping_mul(*x) as f32).collect()),
            ),
            TensorData::Int32(d) => (
                d.iter().map(|x| *x as f32).collect(),
                Some(d.iter().map(|x| x.wrapping_mul(*x) as f32).collect()),
            ),
            other => (
                to_f32(other)
                    .ok_or("the input is not numeric")?
                    .into_owned(),
                None,
            ),
        };
        let mut out = vec![0.0f32; v.len()];
        if stride > 0 {
            for (r, row) in v.chunks(stride).enumerate() {
                let o = &mut out[r * stride..(r + 1) * stride];
                match self.norm {
                    Norm::Max => {
                        let mut max = f32::MIN;
                        for x in row {
                            // std::max(max, x)
                            if max < *x {
                                max = *x;
                            }
                        }
                        for (o, x) in o.iter_mut().zip(row) {
                            *o = if max != 0.0 { x / max } else { *x };
                        }
                    }
                    Norm::L1 => {
                        let mut sum = 0.0f32;
                        for x in row {
                            sum += x.abs();
                        }
                        for (o, x) in o.iter_mut().zip(row) {
                            *o = if sum != 0.0 { x / sum } else { *x };
                        }
                    }
                    Norm::L2 => {
                        let squares: Vec<f32> = match &sq {
                            Some(s) => s[r * stride..(r + 1) * stride].to_vec(),
                            None => row.iter().map(|x| x * x).collect(),
                        };
                        let mut sum = 0.0f32;
                        for s in &squares {
                            sum += s;
                        }
                        for ((o, x), s) in o.iter_mut().zip(row).zip(&squares) {
                            *o = if sum != 0.0 {
                                let q = (s / sum).sqrt();
                                if *x < 0.0 { -q } else { q }
                            } else {
                                *x
                            };
                        }
                    }
                }
            }
        }
        Ok(vec![Value::new(x.shape.to_vec(), TensorData::Fp32(out))])
    }
}

fn normalizer(cx: &NodeCx<'_>, ins: &[Option<In<'_>>]) -> Result<Compiled> {
    let x = input(cx, ins, 0)?;
    require_numeric(cx, x, "input X")?;
    let norm = match cx.string_or("norm", "MAX")?.as_str() {
        "MAX" => Norm::Max,
        "L1" => Norm::L1,
        "L2" => Norm::L2,
        other => return Err(cx.attr_err("norm", format!("`{other}` is not MAX, L1 or L2"))),
    };
    Ok(Compiled::kernel(
        Normalizer { norm },
        vec![TypeInfo {
            elem: ElemType::Fp32,
            dims: x.ty.dims.clone(),
        }],
    ))
}

// ---- OneHotEncoder -------------------------------------------------------------------------

struct OneHot {
    ints: HashMap<i64, usize>,
    strings: HashMap<Vec<u8>, usize>,
    n: usize,
    zeros: bool,
}

impl Kernel for OneHot {
    fn run(&self, inputs: &[Option<View<'_>>]) -> std::result::Result<Vec<Value>, String> {
        let x = arg(inputs, 0)?;
        let count = x.data.len();
        let mut y = vec![0.0f32; count.checked_mul(self.n).ok_or("the output is too large")?];
        let mut unknown = |i: usize, hit: Option<&usize>| -> std::result::Result<(), String> {
            match hit {
                Some(j) => {
                    y[i * self.n + j] = 1.0;
                    Ok(())
                }
                None if self.zeros => Ok(()),
                None => Err("a category is not in the encoder's list and zeros = 0".to_string()),
            }
        };
        match x.data {
            TensorData::Bytes(v) => {
                for (i, s) in v.iter().enumerate() {
                    unknown(i, self.strings.get(s))?;
                }
            }
            TensorData::Int64(v) => {
                for (i, c) in v.iter().enumerate() {
                    unknown(i, self.ints.get(c))?;
                }
            }
            TensorData::Int32(v) => {
                for (i, c) in v.iter().enumerate() {
                    unknown(i, self.ints.get(&i64::from(*c)))?;
                }
            }
            TensorData::Fp32(v) => {
                for (i, c) in v.iter().enumerate() {
                    unknown(i, self.ints.get(&f64_to_i64(f64::from(*c))))?;
                }
            }
            TensorData::Fp64(v) => {
                for (i, c) in v.iter().enumerate() {
                    unknown(i, self.ints.get(&f64_to_i64(*c)))?;
                }
            }
            TensorData::Bool(_) => return Err("a BOOL input cannot be one-hot encoded".into()),
        }
        let mut shape = x.shape.to_vec();
        shape.push(self.n);
        Ok(vec![Value::new(shape, TensorData::Fp32(y))])
    }
}

fn one_hot(cx: &NodeCx<'_>, ins: &[Option<In<'_>>]) -> Result<Compiled> {
    let x = input(cx, ins, 0)?;
    let cats_i = cx.ints("cats_int64s")?.unwrap_or_default();
    let cats_s = cx.strings("cats_strings")?.unwrap_or_default();
    if !cats_i.is_empty() && !cats_s.is_empty() {
        return Err(cx.attr_err("cats_strings", "both cats_int64s and cats_strings are set"));
    }
    let n = cats_i.len().max(cats_s.len());
    if n == 0 {
        return Err(cx.attr_err("cats_int64s", "no categories (cats_int64s or cats_strings)"));
    }
    if x.ty.elem == ElemType::Bool {
        return Err(cx.err("input X is BOOL; one-hot encoding needs numbers or strings"));
    }
    // A repeated category keeps its last position, as onnxruntime's map does.
    let ints = cats_i.iter().enumerate().map(|(i, c)| (*c, i)).collect();
    let strings = cats_s
        .iter()
        .enumerate()
        .map(|(i, c)| (c.clone(), i))
        .collect();
    let dims = x.ty.dims.clone().map(|mut d| {
        d.push(Some(n));
        d
    });
    Ok(Compiled::kernel(
        OneHot {
            ints,
            strings,
            n,
            zeros: cx.int_or("zeros", 1)? != 0,
        },
        vec![TypeInfo {
            elem: ElemType::Fp32,
            dims,
        }],
    ))
}

// ---- Imputer -------------------------------------------------------------------------------

enum Imputed {
    Float { values: Vec<f32>, replaced: f32 },
    Int { values: Vec<i64>, replaced: i64 },
}

struct Imputer(Imputed);

impl Kernel for Imputer {
    fn run(&self, inputs: &[Option<View<'_>>]) -> std::result::Result<Vec<Value>, String> {
        let x = arg(inputs, 0)?;
        let stride = stride(x.shape)?;
        let data = match (&self.0, x.data) {
            (Imputed::Float { values, replaced }, TensorData::Fp32(v)) => {
                let per = values.len() == stride;
                TensorData::Fp32(
                    v.iter()
                        .enumerate()
                        .map(|(i, x)| {
                            if (x.is_nan() && replaced.is_nan()) || x == replaced {
                                values[if per { i % stride } else { 0 }]
                            } else {
                                *x
                            }
                        })
                        .collect(),
                )
            }
            (Imputed::Int { values, replaced }, TensorData::Int64(v)) => {
                let per = values.len() == stride;
                TensorData::Int64(
                    v.iter()
                        .enumerate()
                        .map(|(i, x)| {
                            if x == replaced {
                                values[if per { i % stride } else { 0 }]
                            } else {
                                *x
                            }
                        })
                        .collect(),
                )
            }
            (_, other) => {
                return Err(format!(
                    "the input is {}, not the imputer's type",
                    other.elem_type().as_oip()
                ));
            }
        };
        Ok(vec![Value::new(x.shape.to_vec(), data)])
    }
}

fn imputer(cx: &NodeCx<'_>, ins: &[Option<In<'_>>]) -> Result<Compiled> {
    let x = input(cx, ins, 0)?;
    let floats = cx.floats("imputed_value_floats")?.unwrap_or_default();
    let ints = cx.ints("imputed_value_int64s")?.unwrap_or_default();
    let imputed = match (floats.is_empty(), ints.is_empty()) {
        (false, true) => {
            if x.ty.elem != ElemType::Fp32 {
                return Err(cx.err(format!(
                    "input X is {}; float imputed values need FP32",
                    x.ty.elem.as_oip()
                )));
            }
            Imputed::Float {
                values: floats.to_vec(),
                replaced: cx.float("replaced_value_float")?.unwrap_or(0.0),
            }
        }
        (true, false) => {
            if x.ty.elem != ElemType::Int64 {
                return Err(cx.err(format!(
                    "input X is {}; int64 imputed values need INT64",
                    x.ty.elem.as_oip()
                )));
            }
            Imputed::Int {
                values: ints.to_vec(),
                replaced: cx.int_or("replaced_value_int64", 0)?,
            }
        }
        _ => {
            return Err(cx.attr_err(
                "imputed_value_floats",
                "exactly one of imputed_value_floats and imputed_value_int64s must be set",
            ));
        }
    };
    Ok(Compiled::kernel(Imputer(imputed), vec![x.ty.clone()]))
}

// ---- ArrayFeatureExtractor -----------------------------------------------------------------

struct ArrayFeatureExtractor;

fn gather_last<T: Clone>(v: &[T], stride: usize, idx: &[usize]) -> Vec<T> {
    let outer = v.len().checked_div(stride).unwrap_or(0);
    let mut out = Vec::with_capacity(outer * idx.len());
    for r in 0..outer {
        let row = &v[r * stride..(r + 1) * stride];
        out.extend(idx.iter().map(|&j| row[j].clone()));
    }
    out
}

impl Kernel for ArrayFeatureExtractor {
    fn run(&self, inputs: &[Option<View<'_>>]) -> std::result::Result<Vec<Value>, String> {
        let x = arg(inputs, 0)?;
        let y = arg(inputs, 1)?;
        let Some(&stride) = x.shape.last() else {
            return Err("X has no dimensions".into());
        };
        let TensorData::Int64(iv) = y.data else {
            return Err("the indices are not INT64".into());
        };
        if iv.is_empty() {
            return Err("no indices".into());
        }
        let mut idx = Vec::with_capacity(iv.len());
        for &i in iv {
            match usize::try_from(i) {
                Ok(j) if j < stride => idx.push(j),
                _ => return Err(format!("index {i} is out of range for {stride} columns")),
            }
        }
        let data = match x.data {
            TensorData::Fp32(v) => TensorData::Fp32(gather_last(v, stride, &idx)),
            TensorData::Fp64(v) => TensorData::Fp64(gather_last(v, stride, &idx)),
            TensorData::Int64(v) => TensorData::Int64(gather_last(v, stride, &idx)),
            TensorData::Int32(v) => TensorData::Int32(gather_last(v, stride, &idx)),
            TensorData::Bytes(v) => TensorData::Bytes(gather_last(v, stride, &idx)),
            TensorData::Bool(v) => TensorData::Bool(gather_last(v, stride, &idx)),
        };
        let shape = if x.shape.len() == 1 {
            vec![1, idx.len()]
        } else {
            let mut s = x.shape.to_vec();
            if let Some(l) = s.last_mut() {
                *l = idx.len();
            }
            s
        };
        Ok(vec![Value::new(shape, data)])
    }
}

fn array_feature_extractor(cx: &NodeCx<'_>, ins: &[Option<In<'_>>]) -> Result<Compiled> {
    let x = input(cx, ins, 0)?;
    let y = input(cx, ins, 1)?;
    if y.ty.elem != ElemType::Int64 {
        return Err(cx.err(format!(
            "input Y is {}; INT64 indices were expected",
            y.ty.elem.as_oip()
        )));
    }
    let n_idx = y.konst.map(|v| v.data.len());
    let dims = match x.ty.dims.as_deref() {
        Some([_]) => Some(vec![Some(1), n_idx]),
        Some(d) if !d.is_empty() => {
            let mut d = d.to_vec();
            if let Some(l) = d.last_mut() {
                *l = n_idx;
            }
            Some(d)
        }
        _ => None,
    };
    Ok(Compiled::kernel(
        ArrayFeatureExtractor,
        vec![TypeInfo {
            elem: x.ty.elem,
            dims,
        }],
    ))
}

// ---- Binarizer -----------------------------------------------------------------------------

struct Binarizer {
    threshold: f32,
}

impl Kernel for Binarizer {
    fn run(&self, inputs: &[Option<View<'_>>]) -> std::result::Result<Vec<Value>, String> {
        let x = arg(inputs, 0)?;
        let t = self.threshold;
        let data = match x.data {
            TensorData::Fp32(v) => {
                TensorData::Fp32(v.iter().map(|x| if *x > t { 1.0 } else { 0.0 }).collect())
            }
            TensorData::Fp64(v) => TensorData::Fp64(
                v.iter()
                    .map(|x| if *x > f64::from(t) { 1.0 } else { 0.0 })
                    .collect(),
            ),
            other => {
                return Err(format!(
                    "the input is {}; FP32 or FP64 was expected",
                    other.elem_type().as_oip()
                ));
            }
        };
        Ok(vec![Value::new(x.shape.to_vec(), data)])
    }
}

fn binarizer(cx: &NodeCx<'_>, ins: &[Option<In<'_>>]) -> Result<Compiled> {
    let x = input(cx, ins, 0)?;
    if !matches!(x.ty.elem, ElemType::Fp32 | ElemType::Fp64) {
        return Err(cx.unsupported(format!("a {} input", x.ty.elem.as_oip())));
    }
    Ok(Compiled::kernel(
        Binarizer {
            threshold: cx.float("threshold")?.unwrap_or(0.0),
        },
        vec![x.ty.clone()],
    ))
}

// ---- LabelEncoder --------------------------------------------------------------------------

#[derive(Clone, PartialEq, Eq, Hash)]
enum Key {
    Str(Vec<u8>),
    Int(i64),
    /// f32 bits, NaN folded to one key.
    Float(u32),
}

#[derive(Clone)]
enum Out {
    Str(Vec<u8>),
    Int(i64),
    Float(f32),
}

struct LabelEncoder {
    map: HashMap<Key, Out>,
    default: Out,
}

fn float_key(x: f32) -> Key {
    Key::Float(if x.is_nan() {
        f32::NAN.to_bits()
    } else {
        (x + 0.0).to_bits()
    })
}

impl Kernel for LabelEncoder {
    fn run(&self, inputs: &[Option<View<'_>>]) -> std::result::Result<Vec<Value>, String> {
        let x = arg(inputs, 0)?;
        let keys: Vec<Key> = match x.data {
            TensorData::Bytes(v) => v.iter().map(|s| Key::Str(s.clone())).collect(),
            TensorData::Int64(v) => v.iter().map(|i| Key::Int(*i)).collect(),
            TensorData::Fp32(v) => v.iter().map(|f| float_key(*f)).collect(),
            other => return Err(format!("the input is {}", other.elem_type().as_oip())),
        };
        let outs = keys
            .iter()
            .map(|k| self.map.get(k).unwrap_or(&self.default));
        let data = match self.default {
            Out::Str(_) => TensorData::Bytes(
                outs.map(|o| match o {
                    Out::Str(s) => s.clone(),
                    _ => Vec::new(),
                })
                .collect(),
            ),
            Out::Int(_) => TensorData::Int64(
                outs.map(|o| if let Out::Int(i) = o { *i } else { 0 })
                    .collect(),
            ),
            Out::Float(_) => TensorData::Fp32(
                outs.map(|o| if let Out::Float(f) = o { *f } else { 0.0 })
                    .collect(),
            ),
        };
        Ok(vec![Value::new(x.shape.to_vec(), data)])
    }
}

fn label_encoder(cx: &NodeCx<'_>, ins: &[Option<In<'_>>]) -> Result<Compiled> {
    let x = input(cx, ins, 0)?;
    for t in ["keys_tensor", "values_tensor", "default_tensor"] {
        if cx.has(t) {
            return Err(cx.unsupported(format!("attribute `{t}` (ai.onnx.ml 4)")));
        }
    }
    let default_string = || -> Result<Out> {
        Ok(Out::Str(
            cx.string_or("default_string", "_Unused")?.into_bytes(),
        ))
    };
    let default_int = || -> Result<Out> { Ok(Out::Int(cx.int_or("default_int64", -1)?)) };
    let (keys, values, default): (Vec<Key>, Vec<Out>, Out) = if let Some(classes) =
        cx.strings("classes_strings")?
    {
        // ai.onnx.ml 1: strings ↔ their index.
        match x.ty.elem {
            ElemType::Bytes => (
                classes.iter().map(|s| Key::Str(s.clone())).collect(),
                (0..classes.len()).map(|i| Out::Int(i as i64)).collect(),
                default_int()?,
            ),
            ElemType::Int64 => (
                (0..classes.len()).map(|i| Key::Int(i as i64)).collect(),
                classes.iter().map(|s| Out::Str(s.clone())).collect(),
                default_string()?,
            ),
            other => {
                return Err(cx.err(format!(
                    "input X is {}; STRING or INT64 was expected",
                    other.as_oip()
                )));
            }
        }
    } else {
        let keys: Vec<Key> = if let Some(k) = cx.strings("keys_strings")? {
            k.iter().map(|s| Key::Str(s.clone())).collect()
        } else if let Some(k) = cx.ints("keys_int64s")? {
            k.iter().map(|i| Key::Int(*i)).collect()
        } else if let Some(k) = cx.floats("keys_floats")? {
            k.iter().map(|f| float_key(*f)).collect()
        } else {
            return Err(cx.attr_err(
                "keys_strings",
                "no keys (keys_strings, keys_int64s or keys_floats)",
            ));
        };
        let (values, default): (Vec<Out>, Out) = if let Some(v) = cx.strings("values_strings")? {
            (
                v.iter().map(|s| Out::Str(s.clone())).collect(),
                default_string()?,
            )
        } else if let Some(v) = cx.ints("values_int64s")? {
            (v.iter().map(|i| Out::Int(*i)).collect(), default_int()?)
        } else if let Some(v) = cx.floats("values_floats")? {
            (
                v.iter().map(|f| Out::Float(*f)).collect(),
                Out::Float(cx.float("default_float")?.unwrap_or(-0.0)),
            )
        } else {
            return Err(cx.attr_err(
                "values_strings",
                "no values (values_strings, values_int64s or values_floats)",
            ));
        };
        (keys, values, default)
    };
    if keys.len() != values.len() {
        return Err(cx.attr_err(
            "keys_strings",
            format!("{} keys for {} values", keys.len(), values.len()),
        ));
    }
    let key_ok = matches!(
        (keys.first(), x.ty.elem),
        (None, _)
            | (Some(Key::Str(_)), ElemType::Bytes)
            | (Some(Key::Int(_)), ElemType::Int64)
            | (Some(Key::Float(_)), ElemType::Fp32)
    );
    if !key_ok {
        return Err(cx.err(format!(
            "input X is {}, which does not match the keys",
            x.ty.elem.as_oip()
        )));
    }
    let elem = match default {
        Out::Str(_) => ElemType::Bytes,
        Out::Int(_) => ElemType::Int64,
        Out::Float(_) => ElemType::Fp32,
    };
    Ok(Compiled::kernel(
        LabelEncoder {
            map: keys.into_iter().zip(values).collect(),
            default,
        },
        vec![TypeInfo {
            elem,
            dims: x.ty.dims.clone(),
        }],
    ))
}

// ---- ZipMap --------------------------------------------------------------------------------

fn zipmap(cx: &NodeCx<'_>, ins: &[Option<In<'_>>]) -> Result<Compiled> {
    let x = input(cx, ins, 0)?;
    let n = match (
        cx.ints("classlabels_int64s")?,
        cx.strings("classlabels_strings")?,
    ) {
        (Some(v), _) if !v.is_empty() => v.len(),
        (_, Some(v)) if !v.is_empty() => v.len(),
        _ => return Err(cx.attr_err("classlabels_int64s", "no class labels")),
    };
    if x.ty.elem != ElemType::Fp32 {
        return Err(cx.err(format!(
            "input X is {}; FP32 probabilities were expected",
            x.ty.elem.as_oip()
        )));
    }
    if let Some(c) = x.ty.last_dim()
        && c != n
    {
        return Err(cx.err(format!("{n} class labels for {c} probability columns")));
    }
    Ok(Compiled::Alias)
}
