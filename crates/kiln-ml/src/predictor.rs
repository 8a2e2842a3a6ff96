//! The one trait every served model implements, native or ONNX.

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::tensor::{Tensor, TensorSpec};

/// A loaded model. `predict` takes a whole batch (the first dimension of every input is the
/// batch) and must be safe to call from several threads at once.
pub trait Predictor: Send + Sync {
    fn inputs(&self) -> &[TensorSpec];
    fn outputs(&self) -> &[TensorSpec];
    fn predict(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>>;
}

/// What turns raw scores into outputs (the ONNX `post_transform` attribute).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PostTransform {
    #[default]
    None,
    /// 1 / (1 + e^-x) per score.
    Logistic,
    /// Softmax over a row's scores.
    Softmax,
    /// Softmax over a row's scores with zero scores left at zero.
    SoftmaxZero,
    /// The normal distribution's inverse CDF.
    Probit,
}

impl PostTransform {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "NONE" => PostTransform::None,
            "LOGISTIC" => PostTransform::Logistic,
            "SOFTMAX" => PostTransform::Softmax,
            "SOFTMAX_ZERO" => PostTransform::SoftmaxZero,
            "PROBIT" => PostTransform::Probit,
            _ => return None,
        })
    }

    /// Applies the transform to one row of scores in place.
    pub fn apply(self, row: &mut [f64]) {
        match self {
            PostTransform::None => {}
            PostTransform::Logistic => {
                for x in row.iter_mut() {
                    *x = sigmoid(*x);
                }
            }
            PostTransform::Softmax => softmax(row, false),
            PostTransform::SoftmaxZero => softmax(row, true),
            PostTransform::Probit => {
                for x in row.iter_mut() {
                    *x = probit(*x);
                }
            }
        }
    }
}

#[inline]
pub fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

fn softmax(row: &mut [f64], keep_zero: bool) {
    let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut sum = 0.0;
    for x in row.iter_mut() {
        if keep_zero && *x == 0.0 {
            continue;
        }
        *x = (*x - max).exp();
        sum += *x;
    }
    if sum > 0.0 {
        for x in row.iter_mut() {
            if !(keep_zero && *x == 0.0) {
                *x /= sum;
            }
        }
    }
}

/// ONNX's PROBIT: sqrt(2) * erfinv(2p - 1).
fn probit(p: f64) -> f64 {
    std::f64::consts::SQRT_2 * erfinv(2.0 * p - 1.0)
}

/// Giles' single-precision-quality approximation of erfinv, as ONNX runtimes use.
fn erfinv(x: f64) -> f64 {
    let w = -((1.0 - x) * (1.0 + x)).ln();
    if w < 5.0 {
        let w = w - 2.5;
        let mut p = 2.810_226_36e-08;
        for c in [
            3.432_739_39e-07,
            -3.523_387_7e-06,
            -4.391_506_54e-06,
            0.000_218_580_87,
            -0.001_253_725_03,
            -0.004_177_681_64,
            0.246_640_727,
            1.501_409_41,
        ] {
            p = c + p * w;
        }
        p * x
    } else {
        let w = w.sqrt() - 3.0;
        let mut p = -0.000_200_214_257;
        for c in [
            0.000_100_950_558,
            0.001_349_343_22,
            -0.003_673_428_44,
            0.005_739_507_73,
            -0.007_622_461_3,
            0.009_438_870_47,
            1.001_674_06,
            2.832_976_82,
        ] {
            p = c + p * w;
        }
        p * x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_sums_to_one_and_keeps_order() {
        let mut r = [1.0, 2.0, 3.0];
        PostTransform::Softmax.apply(&mut r);
        assert!((r.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!(r[0] < r[1] && r[1] < r[2]);
    }

    #[test]
    fn sigmoid_is_stable_at_extremes() {
        assert_eq!(sigmoid(-1000.0), 0.0);
        assert_eq!(sigmoid(1000.0), 1.0);
        assert!((sigmoid(0.0) - 0.5).abs() < 1e-15);
    }

    #[test]
    fn probit_inverts_the_normal_cdf() {
        // Φ⁻¹(0.975) = 1.959964
        assert!((probit(0.975) - 1.959_964).abs() < 1e-4);
        assert!(probit(0.5).abs() < 1e-9);
    }
}
