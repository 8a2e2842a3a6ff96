//! onnxruntime's score transforms (`ml_common.h`), in single precision the way it computes
//! them, so that Kiln's outputs match onnxruntime's to the last bits where it can.

use kiln_ml::PostTransform;

/// `ComputeLogistic`: 1 / (1 + e^-|x|), mirrored for negative x.
#[inline]
pub(crate) fn logistic(x: f32) -> f32 {
    let v = 1.0 / (1.0 + (-x.abs()).exp());
    if x < 0.0 { 1.0 - v } else { v }
}

/// onnxruntime's `ErfInv`: the closed-form approximation with a = 0.147 (not Giles').
#[inline]
fn erf_inv(x: f32) -> f32 {
    let sgn = if x < 0.0 { -1.0f32 } else { 1.0 };
    let x = (1.0 - x) * (1.0 + x);
    let log = x.ln();
    let v = 2.0 / (std::f32::consts::PI * 0.147) + 0.5 * log;
    let v2 = 1.0 / 0.147 * log;
    let v3 = -v + (v * v - v2).sqrt();
    sgn * v3.sqrt()
}

/// `ComputeProbit`: √2 · erfinv(2x − 1).
#[inline]
pub(crate) fn probit(x: f32) -> f32 {
    std::f32::consts::SQRT_2 * erf_inv(2.0 * x - 1.0)
}

/// `ComputeSoftmax`.
pub(crate) fn softmax(v: &mut [f32]) {
    let mut max = -f32::MAX;
    for x in v.iter() {
        if *x > max {
            max = *x;
        }
    }
    let mut sum = 0.0f32;
    for x in v.iter_mut() {
        *x = (*x - max).exp();
        sum += *x;
    }
    for x in v.iter_mut() {
        *x /= sum;
    }
}

/// `ComputeSoftmaxZero`: scores within 1e-7 of zero stay (about) zero.
pub(crate) fn softmax_zero(v: &mut [f32]) {
    let mut max = -f32::MAX;
    for x in v.iter() {
        if *x > max {
            max = *x;
        }
    }
    let exp_neg_max = (-max).exp();
    let mut sum = 0.0f32;
    for x in v.iter_mut() {
        if *x > 0.000_000_1 || *x < -0.000_000_1 {
            *x = (*x - max).exp();
            sum += *x;
        } else {
            *x *= exp_neg_max;
        }
    }
    for x in v.iter_mut() {
        *x /= sum;
    }
}

/// Applies `post` to one row of two or more scores (the `scores.size() >= 2` branch of
/// onnxruntime's `write_scores`).
pub(crate) fn transform_row(post: PostTransform, row: &mut [f32]) {
    match post {
        PostTransform::None => {}
        PostTransform::Logistic => row.iter_mut().for_each(|x| *x = logistic(*x)),
        PostTransform::Probit => row.iter_mut().for_each(|x| *x = probit(*x)),
        PostTransform::Softmax => softmax(row),
        PostTransform::SoftmaxZero => softmax_zero(row),
    }
}

/// `post_transform` parsed with the error naming the attribute.
pub(crate) fn post_transform(cx: &crate::proto::NodeCx<'_>) -> crate::error::Result<PostTransform> {
    let s = cx.string_or("post_transform", "NONE")?;
    PostTransform::parse(&s).ok_or_else(|| {
        cx.attr_err(
            "post_transform",
            format!("`{s}` is not one of NONE, LOGISTIC, SOFTMAX, SOFTMAX_ZERO, PROBIT"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transforms_behave() {
        assert!((logistic(0.0) - 0.5).abs() < 1e-7);
        assert!((logistic(-3.0) + logistic(3.0) - 1.0).abs() < 1e-6);
        let mut r = [1.0f32, 2.0, 3.0];
        softmax(&mut r);
        assert!((r.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        // onnxruntime's approximation is close to the true quantile, not exact.
        assert!((probit(0.975) - 1.959_964).abs() < 5e-3);
        let mut z = [0.0f32, 1.0, 2.0];
        softmax_zero(&mut z);
        assert_eq!(z[0], 0.0);
    }
}
