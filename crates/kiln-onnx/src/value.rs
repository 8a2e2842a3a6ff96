//! Tensors inside Kiln's executor: a shape and [`TensorData`] (the same element types Kiln's
//! inference protocols carry), owned or borrowed from the caller's input or the model's
//! constants.

use kiln_ml::TensorData;

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Value {
    pub shape: Vec<usize>,
    pub data: TensorData,
}

impl Value {
    pub fn new(shape: Vec<usize>, data: TensorData) -> Self {
        Value { shape, data }
    }

    pub fn view(&self) -> View<'_> {
        View {
            shape: &self.shape,
            data: &self.data,
        }
    }
}

/// A borrowed tensor: what operators read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct View<'a> {
    pub shape: &'a [usize],
    pub data: &'a TensorData,
}

impl<'a> View<'a> {
    pub fn to_owned(self) -> Value {
        Value {
            shape: self.shape.to_vec(),
            data: self.data.clone(),
        }
    }

    /// Rows and columns of a feature matrix the way ai.onnx.ml operators see one: `[N, C]`, or
    /// `[C]` as a single row.
    pub fn rows_cols(&self) -> Option<(usize, usize)> {
        match *self.shape {
            [c] => Some((1, c)),
            [n, c] => Some((n, c)),
            _ => None,
        }
    }
}

/// The values as f32 (what ONNX-ML operators do to any numeric input: C++ `static_cast<float>`).
pub(crate) fn to_f32(data: &TensorData) -> Option<std::borrow::Cow<'_, [f32]>> {
    use std::borrow::Cow;
    Some(match data {
        TensorData::Fp32(v) => Cow::Borrowed(v.as_slice()),
        TensorData::Fp64(v) => Cow::Owned(v.iter().map(|x| *x as f32).collect()),
        TensorData::Int64(v) => Cow::Owned(v.iter().map(|x| *x as f32).collect()),
        TensorData::Int32(v) => Cow::Owned(v.iter().map(|x| *x as f32).collect()),
        TensorData::Bool(v) => Cow::Owned(v.iter().map(|x| f32::from(u8::from(*x))).collect()),
        TensorData::Bytes(_) => return None,
    })
}

/// Integer values (indices, shapes) as i64.
pub(crate) fn to_i64(data: &TensorData) -> Option<Vec<i64>> {
    Some(match data {
        TensorData::Int64(v) => v.clone(),
        TensorData::Int32(v) => v.iter().map(|x| i64::from(*x)).collect(),
        _ => return None,
    })
}

/// C++ `static_cast<int64_t>(x)` as onnxruntime does it on x86-64: truncation, and the
/// "integer indefinite" value (i64::MIN) for NaN and out-of-range values.
#[inline]
pub(crate) fn f64_to_i64(x: f64) -> i64 {
    if !(-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&x) {
        i64::MIN
    } else {
        x as i64
    }
}

/// `static_cast<int32_t>` likewise.
#[inline]
pub(crate) fn f64_to_i32(x: f64) -> i32 {
    if !(-2_147_483_648.0..2_147_483_648.0).contains(&x) {
        i32::MIN
    } else {
        x as i32
    }
}

pub(crate) fn checked_count(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d))
}
