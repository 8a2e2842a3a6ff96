//! `LinearClassifier` and `LinearRegressor`: parameters held (and validated) as
//! [`kiln_ml::linear::LinearModel`], scores computed in f32 as onnxruntime's GEMM does, labels
//! and transforms with onnxruntime's semantics (`linearclassifier.cc`, `linearregressor.cc`, `batched_update_scores_inplace`):
//!
//! * the label is the first class with the highest raw score; with a single score column it is
//!   `score > 0 ? labels[1] : labels[0]` (or 1/0 when there are not two labels);
//! * one score column and two labels give two probability columns `[1 − s, s]` — onnxruntime
//!   applies no LOGISTIC there (scikit-learn's binary LogisticRegression exports two columns);
//! * with one column, only PROBIT is applied.

use kiln_ml::linear::LinearModel;
use kiln_ml::{ElemType, PostTransform, TensorData};

use super::ort_math::{post_transform, probit, transform_row};
use super::{Compiled, In, Kernel, TypeInfo, arg, batch_by, input, matrix_dims, numeric};
use crate::error::Result;
use crate::proto::NodeCx;
use crate::value::{Value, View, to_f32};

enum Labels {
    Int(Vec<i64>),
    Str(Vec<Vec<u8>>),
}

struct Linear {
    /// The parameters, validated by Kiln's linear model.
    model: LinearModel,
    /// The same coefficients and intercepts in f32, as onnxruntime holds them.
    coef: Vec<f32>,
    bias: Vec<f32>,
    post: PostTransform,
}

impl Linear {
    fn new(model: LinearModel, post: PostTransform) -> Self {
        let coef = model.coefficients.iter().map(|c| *c as f32).collect();
        let bias = (0..model.n_targets)
            .map(|t| model.intercepts.get(t).map_or(0.0, |b| *b as f32))
            .collect();
        Linear {
            model,
            coef,
            bias,
            post,
        }
    }

    /// Raw scores `rows × n_targets` computed the way onnxruntime's GEMM (MLAS) computes
    /// `X · Wᵀ + b` in f32: per output, a fused multiply-add chain over the features in order,
    /// added to the intercept per block of `K` (MLAS's K stride). This reproduces its float32
    /// rounding, which [`LinearModel::scores`] (f64) does not: up to 3e-5 apart on values near 150.
    fn scores(&self, x: &View<'_>) -> std::result::Result<(usize, Vec<f32>), String> {
        let (rows, cols) = matrix_dims(x, "the input")?;
        let (k, f) = (self.model.n_targets, self.model.n_features);
        if cols != f {
            return Err(format!(
                "the input has {cols} columns, the model has {f} coefficients per target"
            ));
        }
        let data = to_f32(x.data).ok_or("the input is not numeric")?;
        let stride = mlas_stride_k(k, f).max(1);
        let mut out = Vec::with_capacity(rows * k);
        for row in data.chunks_exact(f.max(1)).take(rows) {
            for t in 0..k {
                let w = &self.coef[t * f..(t + 1) * f];
                let mut c = self.bias[t];
                for (xb, wb) in row.chunks(stride).zip(w.chunks(stride)) {
                    let mut acc = 0.0f32;
                    for (a, b) in xb.iter().zip(wb) {
                        acc = a.mul_add(*b, acc);
                    }
                    c += acc;
                }
                out.push(c);
            }
        }
        if f == 0 {
            out = (0..rows).flat_map(|_| self.bias.iter().copied()).collect();
        }
        Ok((rows, out))
    }
}

/// MLAS's K stride for an `M × N × K` single-precision GEMM with a non-transposed A (it trades
/// N stride for K stride: halving one doubles the other).
fn mlas_stride_k(n: usize, k: usize) -> usize {
    let (mut stride_n, mut stride_k) = (128usize, 128usize);
    if n >= k {
        while stride_k / 2 >= k.max(1) {
            stride_k /= 2;
        }
    } else {
        while stride_n > 16 && stride_n / 2 >= n {
            stride_k *= 2;
            stride_n /= 2;
        }
    }
    stride_k
}

fn linear_model(
    cx: &NodeCx<'_>,
    x: &In<'_>,
    n_targets: usize,
    intercepts: Vec<f64>,
) -> Result<LinearModel> {
    if !numeric(x.ty.elem) {
        return Err(cx.err(format!(
            "input X is {}; a number type was expected",
            x.ty.elem.as_oip()
        )));
    }
    let coef = cx
        .floats("coefficients")?
        .ok_or_else(|| cx.attr_err("coefficients", "is required"))?;
    if n_targets == 0 || coef.len() % n_targets != 0 {
        return Err(cx.attr_err(
            "coefficients",
            format!("{} coefficients for {n_targets} targets", coef.len()),
        ));
    }
    let n_features = coef.len() / n_targets;
    if let Some(c) = x.ty.last_dim()
        && c != n_features
    {
        return Err(cx.err(format!(
            "input X has {c} columns, the model has {n_features} coefficients per target"
        )));
    }
    let m = LinearModel {
        n_features,
        n_targets,
        coefficients: coef.iter().map(|c| f64::from(*c)).collect(),
        intercepts,
    };
    m.validate().map_err(|e| cx.err(e.to_string()))?;
    Ok(m)
}

struct Classifier {
    lin: Linear,
    labels: Labels,
    add_second_class: bool,
}

impl Kernel for Classifier {
    fn run(&self, inputs: &[Option<View<'_>>]) -> std::result::Result<Vec<Value>, String> {
        let (rows, s) = self.lin.scores(&arg(inputs, 0)?)?;
        let k = self.lin.model.n_targets;
        let mut picks: Vec<Result<usize, i64>> = Vec::with_capacity(rows);
        if k == 1 {
            let two = match &self.labels {
                Labels::Int(l) => l.len() == 2,
                Labels::Str(l) => l.len() == 2,
            };
            for v in &s {
                let positive = *v > 0.0;
                picks.push(match (two, positive) {
                    (true, p) => Ok(usize::from(p)),
                    (false, p) => Err(i64::from(p)),
                });
            }
        } else {
            for r in 0..rows {
                let row = &s[r * k..(r + 1) * k];
                let mut best = 0;
                let mut w = row[0];
                for (j, v) in row.iter().enumerate().skip(1) {
                    if *v > w {
                        w = *v;
                        best = j;
                    }
                }
                picks.push(Ok(best));
            }
        }
        let label = match &self.labels {
            Labels::Int(l) => TensorData::Int64(
                picks
                    .iter()
                    .map(|p| match p {
                        Ok(i) => l.get(*i).copied().unwrap_or(0),
                        Err(v) => *v,
                    })
                    .collect(),
            ),
            Labels::Str(l) => TensorData::Bytes(
                picks
                    .iter()
                    .map(|p| match p {
                        Ok(i) => l.get(*i).cloned().unwrap_or_default(),
                        Err(v) => v.to_string().into_bytes(),
                    })
                    .collect(),
            ),
        };
        let post = self.lin.post;
        let cols = if self.add_second_class { 2 } else { k };
        let mut z = Vec::with_capacity(rows * cols);
        if k == 1 {
            for &v in &s {
                if post == PostTransform::Probit {
                    z.push(probit(v));
                } else if self.add_second_class {
                    z.extend([1.0 - v, v]);
                } else {
                    z.push(v);
                }
            }
        } else {
            z = s;
            for row in z.chunks_mut(k) {
                transform_row(post, row);
            }
        }
        Ok(vec![
            Value::new(vec![rows], label),
            Value::new(vec![rows, cols], TensorData::Fp32(z)),
        ])
    }
}

pub(super) fn linear_classifier(cx: &NodeCx<'_>, ins: &[Option<In<'_>>]) -> Result<Compiled> {
    let x = input(cx, ins, 0)?;
    let intercepts: Vec<f64> = cx
        .floats("intercepts")?
        .unwrap_or_default()
        .iter()
        .map(|v| f64::from(*v))
        .collect();
    // onnxruntime counts the classes by the intercepts.
    let k = intercepts.len();
    if k == 0 {
        return Err(cx.attr_err("intercepts", "is required: it gives the number of classes"));
    }
    let labels = match (
        cx.ints("classlabels_ints")?,
        cx.strings("classlabels_strings")?,
    ) {
        (Some(v), _) if !v.is_empty() => Labels::Int(v.to_vec()),
        (_, Some(v)) if !v.is_empty() => Labels::Str(v.to_vec()),
        _ => {
            return Err(cx.attr_err(
                "classlabels_ints",
                "no class labels (classlabels_ints or classlabels_strings)",
            ));
        }
    };
    let n_labels = match &labels {
        Labels::Int(l) => l.len(),
        Labels::Str(l) => l.len(),
    };
    if k > 1 && n_labels < k {
        return Err(cx.attr_err(
            "classlabels_ints",
            format!("{n_labels} labels for {k} classes"),
        ));
    }
    let model = linear_model(cx, x, k, intercepts)?;
    let add_second_class = k == 1 && n_labels == 2;
    let cols = if add_second_class { 2 } else { k };
    let label_type = match labels {
        Labels::Int(_) => ElemType::Int64,
        Labels::Str(_) => ElemType::Bytes,
    };
    Ok(Compiled::kernel(
        Classifier {
            lin: Linear::new(model, post_transform(cx)?),
            labels,
            add_second_class,
        },
        vec![
            TypeInfo::new(label_type, vec![x.ty.batch_dim()]),
            TypeInfo::new(ElemType::Fp32, batch_by(&x.ty, Some(cols))),
        ],
    ))
}

struct Regressor {
    lin: Linear,
}

impl Kernel for Regressor {
    fn run(&self, inputs: &[Option<View<'_>>]) -> std::result::Result<Vec<Value>, String> {
        let (rows, s) = self.lin.scores(&arg(inputs, 0)?)?;
        let k = self.lin.model.n_targets;
        let mut z = s;
        if k > 1 {
            for row in z.chunks_mut(k) {
                transform_row(self.lin.post, row);
            }
        } else if self.lin.post == PostTransform::Probit {
            z.iter_mut().for_each(|v| *v = probit(*v));
        }
        Ok(vec![Value::new(vec![rows, k], TensorData::Fp32(z))])
    }
}

pub(super) fn linear_regressor(cx: &NodeCx<'_>, ins: &[Option<In<'_>>]) -> Result<Compiled> {
    let x = input(cx, ins, 0)?;
    let targets = cx.int("targets")?.unwrap_or(1);
    let k = usize::try_from(targets)
        .ok()
        .filter(|k| *k >= 1)
        .ok_or_else(|| cx.attr_err("targets", format!("{targets} targets")))?;
    let intercepts: Vec<f64> = cx
        .floats("intercepts")?
        .unwrap_or_default()
        .iter()
        .map(|v| f64::from(*v))
        .collect();
    // onnxruntime uses the intercepts only when there is one per target.
    let intercepts = if intercepts.len() == k {
        intercepts
    } else {
        vec![]
    };
    let model = linear_model(cx, x, k, intercepts)?;
    Ok(Compiled::kernel(
        Regressor {
            lin: Linear::new(model, post_transform(cx)?),
        },
        vec![TypeInfo::new(ElemType::Fp32, batch_by(&x.ty, Some(k)))],
    ))
}
