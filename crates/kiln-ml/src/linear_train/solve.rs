//! The solvers: the standardised design, the objective and its gradient, ridge by the
//! normal equations, and L-BFGS with a strong-Wolfe line search.

use std::collections::VecDeque;

use super::{LBFGS_MEMORY, LinearParams};
use crate::linear::LinearModel;
use crate::matrix::Matrix;
use crate::native::Task;

/// The standardised training data.
pub(super) struct Design {
    pub(super) n: usize,
    pub(super) f: usize,
    /// `n × f`, row-major: `(x − mean) / scale`.
    pub(super) x: Vec<f64>,
    pub(super) mean: Vec<f64>,
    pub(super) scale: Vec<f64>,
    /// Population standard deviation of each raw feature.
    pub(super) std: Vec<f64>,
    /// Regression: `(y − y_mean) / y_scale`; classification: the labels as given.
    pub(super) y: Vec<f64>,
    pub(super) y_mean: f64,
    pub(super) y_scale: f64,
}

impl Design {
    pub(super) fn new(m: &Matrix, y: &[f64], task: Task, fit_intercept: bool) -> Design {
        let (n, f) = (m.rows, m.cols);
        let nf = n as f64;
        let mut raw_mean = vec![0.0; f];
        for i in 0..n {
            for (s, v) in raw_mean.iter_mut().zip(m.row(i)) {
                *s += f64::from(*v);
            }
        }
        for s in &mut raw_mean {
            *s /= nf;
        }
        let mut var = vec![0.0; f];
        let mut sq = vec![0.0; f];
        for i in 0..n {
            for (j, v) in m.row(i).iter().enumerate() {
                let v = f64::from(*v);
                let d = v - raw_mean[j];
                var[j] += d * d;
                sq[j] += v * v;
            }
        }
        let std: Vec<f64> = var.iter().map(|v| (v / nf).sqrt()).collect();
        let (mean, scale): (Vec<f64>, Vec<f64>) = if fit_intercept {
            (
                raw_mean,
                std.iter().map(|&s| if s > 0.0 { s } else { 1.0 }).collect(),
            )
        } else {
            (
                vec![0.0; f],
                sq.iter()
                    .map(|&s| {
                        let r = (s / nf).sqrt();
                        if r > 0.0 { r } else { 1.0 }
                    })
                    .collect(),
            )
        };
        let mut x = Vec::with_capacity(n * f);
        for i in 0..n {
            for (j, v) in m.row(i).iter().enumerate() {
                x.push((f64::from(*v) - mean[j]) / scale[j]);
            }
        }
        let (y, y_mean, y_scale) = if task == Task::Regression {
            let (c, s) = if fit_intercept {
                let c = y.iter().sum::<f64>() / nf;
                let s = (y.iter().map(|v| (v - c) * (v - c)).sum::<f64>() / nf).sqrt();
                (c, s)
            } else {
                (0.0, (y.iter().map(|v| v * v).sum::<f64>() / nf).sqrt())
            };
            let s = if s > 0.0 { s } else { 1.0 };
            (y.iter().map(|v| (v - c) / s).collect(), c, s)
        } else {
            (y.to_vec(), 0.0, 1.0)
        };
        Design {
            n,
            f,
            x,
            mean,
            scale,
            std,
            y,
            y_mean,
            y_scale,
        }
    }

    #[inline]
    fn row(&self, i: usize) -> &[f64] {
        &self.x[i * self.f..(i + 1) * self.f]
    }
}

/// The objective in standardised parameters `θ = [w_0 (f), …, w_{k-1} (f), b_0 … b_{k-1}]`:
/// `(Σ_i loss_i + alpha/2 · Σ_t Σ_j w_tj² / scale_j²) / n`, with `loss = r²/2` for
/// regression (standardised label) and the log-loss for classification.
pub(super) struct Problem<'a> {
    pub(super) task: Task,
    pub(super) k: usize,
    pub(super) design: &'a Design,
    pub(super) alpha: f64,
    pub(super) fit_intercept: bool,
}

impl Problem<'_> {
    pub(super) fn n_params(&self) -> usize {
        self.k * (self.design.f + 1)
    }

    /// Returns (objective, mean data loss in raw units) and writes the gradient.
    pub(super) fn eval(&self, theta: &[f64], grad: &mut [f64]) -> (f64, f64) {
        let d = self.design;
        let (n, f, k) = (d.n, d.f, self.k);
        grad.iter_mut().for_each(|g| *g = 0.0);
        let (w, b) = theta.split_at(k * f);
        let mut z = vec![0.0; k];
        let mut loss = 0.0;
        for i in 0..n {
            let x = d.row(i);
            for t in 0..k {
                z[t] = b[t] + dot(&w[t * f..(t + 1) * f], x);
            }
            let y = d.y[i];
            match self.task {
                Task::Regression => {
                    let r = z[0] - y;
                    loss += 0.5 * r * r;
                    z[0] = r;
                }
                Task::Binary => {
                    let s = z[0];
                    loss += softplus(s) - y * s;
                    z[0] = crate::predictor::sigmoid(s) - y;
                }
                Task::Multiclass { .. } => {
                    let max = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let sum: f64 = z.iter().map(|v| (v - max).exp()).sum();
                    let lse = max + sum.ln();
                    let c = y as usize;
                    loss += lse - z[c];
                    for (t, v) in z.iter_mut().enumerate() {
                        *v = (*v - lse).exp() - f64::from(u8::from(t == c));
                    }
                }
            }
            // z now holds d loss / d score.
            for t in 0..k {
                let g = z[t];
                if g != 0.0 {
                    for (gw, xv) in grad[t * f..(t + 1) * f].iter_mut().zip(x) {
                        *gw += g * xv;
                    }
                }
                grad[k * f + t] += g;
            }
        }
        let mut penalty = 0.0;
        for t in 0..k {
            for j in 0..f {
                let p = self.alpha / (d.scale[j] * d.scale[j]);
                let wv = w[t * f + j];
                penalty += 0.5 * p * wv * wv;
                grad[t * f + j] += p * wv;
            }
        }
        let nf = n as f64;
        for g in grad.iter_mut() {
            *g /= nf;
        }
        if !self.fit_intercept {
            grad[k * f..].iter_mut().for_each(|g| *g = 0.0);
        }
        let data = match self.task {
            Task::Regression => 2.0 * loss / nf * d.y_scale * d.y_scale,
            _ => loss / nf,
        };
        ((loss + penalty) / nf, data)
    }

    /// A deterministic starting point: zero coefficients, intercepts at the label's base
    /// rate.
    fn start(&self) -> Vec<f64> {
        let d = self.design;
        let (f, k) = (d.f, self.k);
        let mut theta = vec![0.0; k * (f + 1)];
        if !self.fit_intercept {
            return theta;
        }
        let nf = d.n as f64;
        match self.task {
            Task::Regression => {}
            Task::Binary => {
                let p = (d.y.iter().sum::<f64>() / nf).clamp(1e-6, 1.0 - 1e-6);
                theta[f] = (p / (1.0 - p)).ln();
            }
            Task::Multiclass { .. } => {
                let mut counts = vec![0.0; k];
                for y in &d.y {
                    counts[*y as usize] += 1.0;
                }
                let logs: Vec<f64> = counts.iter().map(|c: &f64| (c / nf).ln()).collect();
                let mean = logs.iter().sum::<f64>() / k as f64;
                for t in 0..k {
                    theta[k * f + t] = logs[t] - mean;
                }
            }
        }
        theta
    }
}

#[inline]
pub(super) fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// ln(1 + e^x) without overflow.
#[inline]
fn softplus(x: f64) -> f64 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

/// Standardised parameters → a linear model over raw features.
pub(super) fn fold(d: &Design, p: &Problem<'_>, theta: &[f64]) -> LinearModel {
    let (f, k) = (d.f, p.k);
    let mut coefficients = vec![0.0; k * f];
    let mut intercepts = vec![0.0; k];
    for t in 0..k {
        let mut b = theta[k * f + t] * d.y_scale + d.y_mean;
        for j in 0..f {
            let w = theta[t * f + j] * d.y_scale / d.scale[j];
            coefficients[t * f + j] = w;
            b -= w * d.mean[j];
        }
        intercepts[t] = if p.fit_intercept { b } else { 0.0 };
    }
    if matches!(p.task, Task::Multiclass { .. }) && p.fit_intercept {
        // Softmax is unchanged by a common shift; centre like scikit-learn.
        let mean = intercepts.iter().sum::<f64>() / k as f64;
        intercepts.iter_mut().for_each(|b| *b -= mean);
    }
    LinearModel {
        n_features: f,
        n_targets: k,
        coefficients,
        intercepts,
    }
}

/// Mean data loss (MSE or log-loss) of a raw-feature model.
pub(super) fn data_loss(task: Task, m: &LinearModel, x: &Matrix, y: &[f64]) -> f64 {
    let (f, k) = (m.n_features, m.n_targets);
    let mut z = vec![0.0; k];
    let mut loss = 0.0;
    for (i, &yi) in y.iter().enumerate().take(x.rows) {
        let row = x.row(i);
        for (t, zt) in z.iter_mut().enumerate() {
            let w = &m.coefficients[t * f..(t + 1) * f];
            *zt = m.intercepts[t]
                + w.iter()
                    .zip(row)
                    .map(|(a, b)| a * f64::from(*b))
                    .sum::<f64>();
        }
        loss += match task {
            Task::Regression => (z[0] - yi) * (z[0] - yi),
            Task::Binary => softplus(z[0]) - yi * z[0],
            Task::Multiclass { .. } => {
                let max = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let lse = max + z.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
                lse - z[yi as usize]
            }
        };
    }
    loss / x.rows as f64
}

/// Ridge by the normal equations in standardised space:
/// `(XᵀX + alpha · diag(1/scale²)) w = Xᵀy`; the intercept is 0 there (both centred).
pub(super) fn ridge_cholesky(p: &Problem<'_>) -> std::result::Result<Vec<f64>, String> {
    let d = p.design;
    let f = d.f;
    let mut a = vec![0.0; f * f];
    let mut rhs = vec![0.0; f];
    for i in 0..d.n {
        let x = d.row(i);
        let y = d.y[i];
        for j in 0..f {
            let xj = x[j];
            if xj == 0.0 {
                continue;
            }
            rhs[j] += xj * y;
            for (aj, xl) in a[j * f..j * f + j + 1].iter_mut().zip(&x[..=j]) {
                *aj += xj * xl;
            }
        }
    }
    // Constant features (an all-zero standardised column) get coefficient 0.
    let constant: Vec<bool> = (0..f).map(|j| a[j * f + j] == 0.0).collect();
    for j in 0..f {
        a[j * f + j] += p.alpha / (d.scale[j] * d.scale[j]);
        if constant[j] {
            a[j * f + j] = 1.0;
            rhs[j] = 0.0;
        }
    }
    // In-place Cholesky of the lower triangle: A = L Lᵀ.
    for j in 0..f {
        let diag0 = a[j * f + j];
        let mut s = diag0;
        for l in 0..j {
            s -= a[j * f + l] * a[j * f + l];
        }
        if s <= diag0 * 1e-12 || s <= 0.0 {
            return Err(format!(
                "feature column {j} is a linear combination of earlier columns and alpha = {}: \
                 the normal equations are singular; set alpha > 0 or drop the column",
                p.alpha
            ));
        }
        let djj = s.sqrt();
        a[j * f + j] = djj;
        for i in j + 1..f {
            let mut s = a[i * f + j];
            for l in 0..j {
                s -= a[i * f + l] * a[j * f + l];
            }
            a[i * f + j] = s / djj;
        }
    }
    // Solve L z = rhs, then Lᵀ w = z.
    let mut w = rhs;
    for i in 0..f {
        let mut s = w[i];
        for l in 0..i {
            s -= a[i * f + l] * w[l];
        }
        w[i] = s / a[i * f + i];
    }
    for i in (0..f).rev() {
        let mut s = w[i];
        for l in i + 1..f {
            s -= a[l * f + i] * w[l];
        }
        w[i] = s / a[i * f + i];
    }
    let mut theta = w;
    theta.push(0.0);
    Ok(theta)
}

/// A line search along `dir` from `theta` for a step meeting the strong Wolfe conditions
/// (Nocedal & Wright, algorithms 3.5 and 3.6; c1 = 1e-4, c2 = 0.9), starting at step 1.
/// On success `new_theta` / `new_grad` hold the accepted point and (objective, data loss)
/// is returned; `None` when no step decreases the objective.
fn line_search(
    p: &Problem<'_>,
    theta: &[f64],
    fx: f64,
    dir: &[f64],
    slope: f64,
    new_theta: &mut [f64],
    new_grad: &mut [f64],
) -> Option<(f64, f64)> {
    const C1: f64 = 1e-4;
    const C2: f64 = 0.9;
    // Evaluates φ(a) = f(θ + a·d); returns (φ, φ', data loss).
    let eval = |a: f64, nt: &mut [f64], ng: &mut [f64]| -> (f64, f64, f64) {
        for ((n, t), d) in nt.iter_mut().zip(theta).zip(dir) {
            *n = t + a * d;
        }
        let (f, loss) = p.eval(nt, ng);
        (f, dot(ng, dir), loss)
    };
    let armijo = |a: f64, f: f64| f.is_finite() && f <= fx + C1 * a * slope;
    let curvature = |d: f64| d.abs() <= -C2 * slope;
    // Bracketing phase.
    let (mut lo, mut f_lo, mut d_lo) = (0.0, fx, slope);
    let mut hi;
    let mut f_hi;
    let mut a = 1.0;
    let mut first = true;
    loop {
        let (f, d, loss) = eval(a, new_theta, new_grad);
        if !armijo(a, f) || (!first && f >= f_lo) {
            hi = a;
            f_hi = f;
            break;
        }
        if curvature(d) {
            return Some((f, loss));
        }
        if d >= 0.0 {
            hi = lo;
            f_hi = f_lo;
            lo = a;
            f_lo = f;
            d_lo = d;
            break;
        }
        lo = a;
        f_lo = f;
        d_lo = d;
        first = false;
        a *= 2.0;
        if a > 1e10 {
            let (f, _, loss) = eval(lo, new_theta, new_grad);
            return Some((f, loss));
        }
    }
    // Zoom phase: `lo` always satisfies the sufficient-decrease condition (or is 0).
    for _ in 0..40 {
        let width = hi - lo;
        let mut a = if f_hi.is_finite() {
            // Minimum of the quadratic through φ(lo), φ'(lo), φ(hi).
            let denom = 2.0 * (f_hi - f_lo - d_lo * width);
            if denom > 0.0 {
                lo - d_lo * width * width / denom
            } else {
                lo + 0.5 * width
            }
        } else {
            lo + 0.5 * width
        };
        let (l, h) = if lo < hi { (lo, hi) } else { (hi, lo) };
        let margin = 0.1 * (h - l);
        if !a.is_finite() || a < l + margin || a > h - margin {
            a = lo + 0.5 * width;
        }
        if (h - l) <= 1e-16 * h.max(1.0) {
            break;
        }
        let (f, d, loss) = eval(a, new_theta, new_grad);
        if !armijo(a, f) || f >= f_lo {
            hi = a;
            f_hi = f;
        } else {
            if curvature(d) {
                return Some((f, loss));
            }
            if d * (hi - lo) >= 0.0 {
                hi = lo;
                f_hi = f_lo;
            }
            lo = a;
            f_lo = f;
            d_lo = d;
        }
    }
    // No Wolfe point found: take the best decreasing step, if any.
    if lo > 0.0 && f_lo < fx {
        let (f, _, loss) = eval(lo, new_theta, new_grad);
        return Some((f, loss));
    }
    None
}

/// L-BFGS with a strong-Wolfe line search. Returns (θ, iterations, converged);
/// `report(iteration, θ, train_loss)` after each iteration.
pub(super) fn lbfgs(
    p: &Problem<'_>,
    params: &LinearParams,
    report: &mut dyn FnMut(usize, &[f64], f64),
) -> (Vec<f64>, usize, bool) {
    let np = p.n_params();
    let mut theta = p.start();
    let mut grad = vec![0.0; np];
    let (mut fx, _) = p.eval(&theta, &mut grad);
    let mut s_hist: VecDeque<Vec<f64>> = VecDeque::new();
    let mut y_hist: VecDeque<Vec<f64>> = VecDeque::new();
    let mut rho_hist: VecDeque<f64> = VecDeque::new();
    let max_abs = |g: &[f64]| g.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    if max_abs(&grad) <= params.tol {
        return (theta, 0, true);
    }
    let mut new_theta = vec![0.0; np];
    let mut new_grad = vec![0.0; np];
    for iter in 0..params.max_iter {
        // Two-loop recursion: direction = −H g.
        let mut q = grad.clone();
        let mut a = vec![0.0; s_hist.len()];
        for i in (0..s_hist.len()).rev() {
            a[i] = rho_hist[i] * dot(&s_hist[i], &q);
            for (qv, yv) in q.iter_mut().zip(&y_hist[i]) {
                *qv -= a[i] * yv;
            }
        }
        let gamma = match (s_hist.back(), y_hist.back()) {
            (Some(s), Some(y)) => dot(s, y) / dot(y, y),
            _ => 1.0 / dot(&grad, &grad).sqrt().max(1.0),
        };
        q.iter_mut().for_each(|v| *v *= gamma);
        for i in 0..s_hist.len() {
            let b = rho_hist[i] * dot(&y_hist[i], &q);
            for (qv, sv) in q.iter_mut().zip(&s_hist[i]) {
                *qv += sv * (a[i] - b);
            }
        }
        let mut dir: Vec<f64> = q.iter().map(|v| -v).collect();
        let mut slope = dot(&dir, &grad);
        if slope >= 0.0 {
            // Not a descent direction (numerical trouble): restart from steepest descent.
            s_hist.clear();
            y_hist.clear();
            rho_hist.clear();
            let scale = 1.0 / dot(&grad, &grad).sqrt().max(1.0);
            dir = grad.iter().map(|g| -g * scale).collect();
            slope = dot(&dir, &grad);
        }
        let Some((fnew, loss)) =
            line_search(p, &theta, fx, &dir, slope, &mut new_theta, &mut new_grad)
        else {
            // No decrease possible at this precision.
            return (theta, iter, max_abs(&grad) <= params.tol);
        };
        let s: Vec<f64> = new_theta.iter().zip(&theta).map(|(a, b)| a - b).collect();
        let yv: Vec<f64> = new_grad.iter().zip(&grad).map(|(a, b)| a - b).collect();
        let sy = dot(&s, &yv);
        if sy > 1e-12 * dot(&yv, &yv).max(f64::MIN_POSITIVE) {
            if s_hist.len() == LBFGS_MEMORY {
                s_hist.pop_front();
                y_hist.pop_front();
                rho_hist.pop_front();
            }
            s_hist.push_back(s);
            y_hist.push_back(yv);
            rho_hist.push_back(1.0 / sy);
        }
        std::mem::swap(&mut theta, &mut new_theta);
        std::mem::swap(&mut grad, &mut new_grad);
        let fprev = fx;
        fx = fnew;
        report(iter, &theta, loss);
        let gmax = max_abs(&grad);
        if gmax <= params.tol {
            return (theta, iter + 1, true);
        }
        let ftol = 64.0 * f64::EPSILON;
        if (fprev - fx) <= ftol * fprev.abs().max(fx.abs()).max(1.0) {
            return (theta, iter + 1, true);
        }
    }
    let converged = max_abs(&grad) <= params.tol;
    (theta, params.max_iter, converged)
}
