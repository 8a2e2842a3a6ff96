#![allow(clippy::needless_range_loop)] // reference maths reads best with indexes

use super::solve::dot;
use super::*;
use crate::linear::LinearModel;

/// A small deterministic pseudo-random sequence in [-1, 1).
fn noise(seed: u64, n: usize) -> Vec<f64> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
        })
        .collect()
}

/// n rows of 3 features on different scales and offsets.
fn features(n: usize, seed: u64) -> Matrix {
    let a = noise(seed, n);
    let b = noise(seed + 1, n);
    let c = noise(seed + 2, n);
    let cols = vec![
        a.iter().map(|v| (v * 3.0 + 10.0) as f32).collect(),
        b.iter().map(|v| (v * 200.0 - 50.0) as f32).collect(),
        a.iter()
            .zip(&c)
            .map(|(a, c)| (0.5 * a + 0.1 * c) as f32)
            .collect(),
    ];
    Matrix::from_columns(&cols).unwrap()
}

/// Solves a small dense system by Gaussian elimination with partial pivoting.
fn solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Vec<f64> {
    let n = b.len();
    for c in 0..n {
        let p = (c..n)
            .max_by(|&i, &j| a[i][c].abs().total_cmp(&a[j][c].abs()))
            .unwrap();
        a.swap(c, p);
        b.swap(c, p);
        for r in c + 1..n {
            let m = a[r][c] / a[c][c];
            for k in c..n {
                a[r][k] -= m * a[c][k];
            }
            b[r] -= m * b[c];
        }
    }
    let mut x = vec![0.0; n];
    for r in (0..n).rev() {
        let s: f64 = (r + 1..n).map(|k| a[r][k] * x[k]).sum();
        x[r] = (b[r] - s) / a[r][r];
    }
    x
}

/// Ridge with intercept by its definition: centre, solve (XcᵀXc + αI) w = Xcᵀyc.
fn ridge_reference(x: &Matrix, y: &[f64], alpha: f64) -> (Vec<f64>, f64) {
    let (n, f) = (x.rows, x.cols);
    let mean: Vec<f64> = (0..f)
        .map(|j| x.column(j).iter().map(|v| f64::from(*v)).sum::<f64>() / n as f64)
        .collect();
    let ym = y.iter().sum::<f64>() / n as f64;
    let mut a = vec![vec![0.0; f]; f];
    let mut b = vec![0.0; f];
    for i in 0..n {
        let r: Vec<f64> = (0..f).map(|j| f64::from(x.get(i, j)) - mean[j]).collect();
        for j in 0..f {
            b[j] += r[j] * (y[i] - ym);
            for l in 0..f {
                a[j][l] += r[j] * r[l];
            }
        }
    }
    for (j, row) in a.iter_mut().enumerate() {
        row[j] += alpha;
    }
    let w = solve(a, b);
    let b0 = ym - w.iter().zip(&mean).map(|(w, m)| w * m).sum::<f64>();
    (w, b0)
}

fn linear_of(o: &LinearOutcome) -> &LinearModel {
    match &o.model.scorer {
        Scorer::Linear(l) => l,
        Scorer::Trees(_) => panic!("not linear"),
    }
}

fn regression_data() -> (Matrix, Vec<f64>) {
    let x = features(200, 7);
    let e = noise(99, 200);
    let y = (0..200)
        .map(|i| {
            3.0 + 2.0 * f64::from(x.get(i, 0)) - 0.01 * f64::from(x.get(i, 1))
                + 4.0 * f64::from(x.get(i, 2))
                + 0.3 * e[i]
        })
        .collect();
    (x, y)
}

#[test]
fn ridge_matches_the_closed_form() {
    let (x, y) = regression_data();
    for alpha in [0.0, 1.0, 25.0] {
        let (w, b) = ridge_reference(&x, &y, alpha);
        for solver in [LinearSolver::Cholesky, LinearSolver::Lbfgs] {
            let params = LinearParams {
                alpha,
                solver,
                tol: 1e-10,
                max_iter: 500,
                ..LinearParams::default()
            };
            let o = train_linear(&x, &y, None, &params, Task::Regression).unwrap();
            assert_eq!(o.solver, solver);
            assert!(o.converged, "{solver:?} alpha {alpha}");
            let m = linear_of(&o);
            for (got, want) in m.coefficients.iter().zip(&w) {
                assert!(
                    (got - want).abs() <= 1e-6 * want.abs().max(1e-3),
                    "{solver:?} alpha {alpha}: {got} vs {want}"
                );
            }
            assert!(
                (m.intercepts[0] - b).abs() < 1e-5,
                "{} vs {b}",
                m.intercepts[0]
            );
        }
    }
}

#[test]
fn ridge_without_intercept() {
    let (x, y) = regression_data();
    let params = LinearParams {
        fit_intercept: false,
        alpha: 2.0,
        ..LinearParams::default()
    };
    let o = train_linear(&x, &y, None, &params, Task::Regression).unwrap();
    let m = linear_of(&o);
    assert_eq!(m.intercepts, vec![0.0]);
    // Normal equations without centring: (XᵀX + αI) w = Xᵀy.
    let f = 3;
    let mut a = vec![vec![0.0; f]; f];
    let mut b = vec![0.0; f];
    for i in 0..x.rows {
        for j in 0..f {
            let xj = f64::from(x.get(i, j));
            b[j] += xj * y[i];
            for l in 0..f {
                a[j][l] += xj * f64::from(x.get(i, l));
            }
        }
    }
    for (j, row) in a.iter_mut().enumerate() {
        row[j] += 2.0;
    }
    let w = solve(a, b);
    for (got, want) in m.coefficients.iter().zip(&w) {
        assert!(
            (got - want).abs() <= 1e-6 * want.abs().max(1e-3),
            "{got} vs {want}"
        );
    }
}

fn binary_data(n: usize) -> (Matrix, Vec<f64>) {
    let x = features(n, 3);
    let e = noise(42, n);
    let y = (0..n)
        .map(|i| {
            let z = 0.8 * (f64::from(x.get(i, 0)) - 10.0) + 0.004 * f64::from(x.get(i, 1))
                - 1.5 * f64::from(x.get(i, 2));
            let p = crate::predictor::sigmoid(z);
            f64::from(u8::from((e[i] + 1.0) / 2.0 < p))
        })
        .collect();
    (x, y)
}

/// The raw-space gradient of (Σ loss + α/2 ‖w‖²) / n at a raw-feature model, each
/// coefficient's component divided by `1 + max |x_j|` (a scale-free size).
fn raw_gradient(task: Task, m: &LinearModel, x: &Matrix, y: &[f64], alpha: f64) -> f64 {
    let (f, k) = (m.n_features, m.n_targets);
    let scores = m.scores(x).unwrap();
    let mut g = vec![0.0; k * (f + 1)];
    for i in 0..x.rows {
        let z = &scores[i * k..(i + 1) * k];
        let d: Vec<f64> = match task {
            Task::Binary => vec![crate::predictor::sigmoid(z[0]) - y[i]],
            _ => {
                let mut p = z.to_vec();
                crate::predictor::PostTransform::Softmax.apply(&mut p);
                p.iter()
                    .enumerate()
                    .map(|(t, p)| p - f64::from(u8::from(t == y[i] as usize)))
                    .collect()
            }
        };
        for t in 0..k {
            for j in 0..f {
                g[t * f + j] += d[t] * f64::from(x.get(i, j));
            }
            g[k * f + t] += d[t];
        }
    }
    let size: Vec<f64> = (0..f)
        .map(|j| {
            1.0 + x
                .column(j)
                .iter()
                .fold(0.0f64, |a, v| a.max(f64::from(*v).abs()))
        })
        .collect();
    for t in 0..k {
        for j in 0..f {
            g[t * f + j] += alpha * m.coefficients[t * f + j];
            g[t * f + j] /= size[j];
        }
    }
    g.iter()
        .map(|v| v / x.rows as f64)
        .fold(0.0, |a, v| a.max(v.abs()))
}

/// Binary logistic regression by Newton's method on the raw features: the reference
/// optimum of Σ logloss + α/2 ‖w‖² (scikit-learn's objective with C = 1/α).
fn logistic_newton(x: &Matrix, y: &[f64], alpha: f64) -> Vec<f64> {
    let f = x.cols;
    let mut theta = vec![0.0; f + 1];
    for _ in 0..100 {
        let mut g = vec![0.0; f + 1];
        let mut h = vec![vec![0.0; f + 1]; f + 1];
        for i in 0..x.rows {
            let mut v: Vec<f64> = x.row(i).iter().map(|v| f64::from(*v)).collect();
            v.push(1.0);
            let p = crate::predictor::sigmoid(dot(&theta, &v));
            for a in 0..=f {
                g[a] += (p - y[i]) * v[a];
                for b in 0..=f {
                    h[a][b] += p * (1.0 - p) * v[a] * v[b];
                }
            }
        }
        for j in 0..f {
            g[j] += alpha * theta[j];
            h[j][j] += alpha;
        }
        let step = solve(h, g);
        for (t, s) in theta.iter_mut().zip(&step) {
            *t -= s;
        }
        if step.iter().all(|s| s.abs() < 1e-14) {
            break;
        }
    }
    theta
}

#[test]
fn logistic_reaches_the_optimum() {
    let (x, y) = binary_data(400);
    let (vx, vy) = binary_data(100);
    let mut history = vec![];
    let params = LinearParams {
        alpha: 0.5,
        tol: 1e-9,
        ..LinearParams::default()
    };
    let o = train_linear_with(
        &x,
        &y,
        Some((&vx, &vy)),
        &params,
        Task::Binary,
        &mut |i, t, v| history.push((i, t, v)),
    )
    .unwrap();
    assert!(o.converged && o.gradient_norm <= 1e-8, "{o:?}");
    assert_eq!(o.model.algorithm, "logistic");
    assert!(history.len() >= 2);
    assert!(history.iter().all(|h| h.2.is_some()));
    assert!(history.last().unwrap().1 < history[0].1);
    assert_eq!(history.last().unwrap().1, o.train_loss);
    // The same optimum as Newton's method on the raw objective.
    let m = linear_of(&o);
    let want = logistic_newton(&x, &y, 0.5);
    let got: Vec<f64> = m
        .coefficients
        .iter()
        .chain(&m.intercepts)
        .copied()
        .collect();
    for (g, w) in got.iter().zip(&want) {
        assert!(
            (g - w).abs() <= 1e-6 * w.abs().max(1e-2),
            "{got:?} vs {want:?}"
        );
    }
    let g = raw_gradient(Task::Binary, m, &x, &y, 0.5);
    assert!(g < 1e-8, "raw gradient {g}");
    // A larger penalty gives smaller coefficients.
    let strong = LinearParams {
        alpha: 500.0,
        tol: 1e-9,
        ..LinearParams::default()
    };
    let o2 = train_linear(&x, &y, None, &strong, Task::Binary).unwrap();
    let norm = |m: &LinearModel| m.coefficients.iter().map(|c| c * c).sum::<f64>();
    assert!(norm(linear_of(&o2)) < norm(linear_of(&o)));
    let g2 = raw_gradient(Task::Binary, linear_of(&o2), &x, &y, 500.0);
    assert!(g2 < 1e-8, "raw gradient {g2}; {o2:?}");
}

#[test]
fn multinomial_reaches_the_optimum() {
    let n = 300;
    let x = features(n, 11);
    let e = noise(5, n);
    let y: Vec<f64> = (0..n)
        .map(|i| {
            let s = f64::from(x.get(i, 0)) - 10.0 + 0.5 * e[i];
            if s < -1.0 {
                0.0
            } else if s < 1.0 {
                1.0
            } else {
                2.0
            }
        })
        .collect();
    let task = Task::Multiclass { classes: 3 };
    let params = LinearParams {
        tol: 1e-9,
        ..LinearParams::default()
    };
    let o = train_linear(&x, &y, None, &params, task).unwrap();
    assert!(o.converged, "{o:?}");
    let m = linear_of(&o);
    assert_eq!(m.n_targets, 3);
    assert!(m.intercepts.iter().sum::<f64>().abs() < 1e-9);
    let g = raw_gradient(task, m, &x, &y, 1.0);
    assert!(g < 1e-7, "raw gradient {g}; {o:?}");
    let p = o.model.predict(&x).unwrap();
    let acc = p
        .label
        .iter()
        .zip(&y)
        .filter(|(l, y)| **l as f64 == **y)
        .count() as f64
        / n as f64;
    assert!(acc > 0.8, "accuracy {acc}");
    assert_eq!(o.importance.len(), 3);
    // Feature 0 drives the classes.
    assert!(o.importance[0] > o.importance[1]);
}

#[test]
fn training_is_deterministic() {
    let (x, y) = binary_data(150);
    let run = || {
        let o = train_linear(&x, &y, None, &LinearParams::default(), Task::Binary).unwrap();
        serde_json::to_vec(&o.model).unwrap()
    };
    assert_eq!(run(), run());
}

#[test]
fn importance_is_coef_times_std() {
    let (x, y) = regression_data();
    let o = train_linear(&x, &y, None, &LinearParams::default(), Task::Regression).unwrap();
    let m = linear_of(&o);
    for j in 0..3 {
        let c: Vec<f64> = x.column(j).iter().map(|v| f64::from(*v)).collect();
        let mean = c.iter().sum::<f64>() / c.len() as f64;
        let sd = (c.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / c.len() as f64).sqrt();
        assert!((o.importance[j] - m.coefficients[j].abs() * sd).abs() < 1e-9);
    }
}

#[test]
fn constant_feature_gets_zero() {
    let (x, y) = regression_data();
    let mut cols: Vec<Vec<f32>> = (0..3).map(|j| x.column(j)).collect();
    cols.push(vec![5.0; x.rows]);
    let x2 = Matrix::from_columns(&cols).unwrap();
    for solver in [LinearSolver::Cholesky, LinearSolver::Lbfgs] {
        let params = LinearParams {
            alpha: 0.0,
            solver,
            ..LinearParams::default()
        };
        let o = train_linear(&x2, &y, None, &params, Task::Regression).unwrap();
        assert_eq!(linear_of(&o).coefficients[3], 0.0);
    }
}

fn training_error(r: Result<LinearOutcome>) -> String {
    match r {
        Err(MlError::Training(m)) => m,
        other => panic!("expected a training error, got {other:?}"),
    }
}

#[test]
fn bad_input_is_named() {
    let (mut x, y) = regression_data();
    let p = LinearParams::default();
    let r = Task::Regression;
    x.data[5 * 3 + 1] = f32::NAN;
    x.data[9 * 3 + 1] = f32::NAN;
    let e = training_error(train_linear(&x, &y, None, &p, r));
    assert!(
        e.contains("column 1") && e.contains("row 5") && e.contains("2 such rows"),
        "{e}"
    );
    assert!(e.contains("gbdt") && e.contains("impute"), "{e}");
    let nf = first_non_finite(&x).unwrap();
    assert_eq!((nf.column, nf.row, nf.count), (1, 5, 2));
    x.data[5 * 3 + 1] = f32::INFINITY;
    let e = training_error(train_linear(&x, &y, None, &p, r));
    assert!(e.contains("inf"), "{e}");

    let (x, y) = regression_data();
    let empty = Matrix::new(0, 3, vec![]).unwrap();
    assert!(training_error(train_linear(&empty, &[], None, &p, r)).contains("no rows"));
    assert!(training_error(train_linear(&x, &y[1..], None, &p, r)).contains("labels"));
    let constant = vec![2.0; x.rows];
    assert!(training_error(train_linear(&x, &constant, None, &p, r)).contains("constant"));
    let mut yb: Vec<f64> = (0..x.rows).map(|i| (i % 2) as f64).collect();
    yb[7] = 2.0;
    let e = training_error(train_linear(&x, &yb, None, &p, Task::Binary));
    assert!(e.contains("row 7") && e.contains("0 or 1"), "{e}");
    let ym: Vec<f64> = (0..x.rows).map(|i| (i % 2) as f64).collect();
    let e = training_error(train_linear(
        &x,
        &ym,
        None,
        &p,
        Task::Multiclass { classes: 3 },
    ));
    assert!(e.contains("class 2"), "{e}");
    let mut ym3: Vec<f64> = (0..x.rows).map(|i| (i % 3) as f64).collect();
    ym3[4] = 1.5;
    let e = training_error(train_linear(
        &x,
        &ym3,
        None,
        &p,
        Task::Multiclass { classes: 3 },
    ));
    assert!(e.contains("row 4"), "{e}");
    let chol = LinearParams {
        solver: LinearSolver::Cholesky,
        ..LinearParams::default()
    };
    let yb: Vec<f64> = (0..x.rows).map(|i| (i % 2) as f64).collect();
    assert!(training_error(train_linear(&x, &yb, None, &chol, Task::Binary)).contains("cholesky"));
    // Validation data is checked too.
    let mut vx = x.clone();
    vx.data[0] = f32::NAN;
    let e = training_error(train_linear(&x, &y, Some((&vx, &y)), &p, r));
    assert!(e.contains("validation"), "{e}");
}

#[test]
fn params_from_a_map() {
    let map = |v: serde_json::Value| -> BTreeMap<String, serde_json::Value> {
        serde_json::from_value(v).unwrap()
    };
    let p =
        LinearParams::from_map(&map(serde_json::json!({"alpha": 0.1, "max_iter": 50}))).unwrap();
    assert_eq!((p.alpha, p.max_iter, p.fit_intercept), (0.1, 50, true));
    let p = LinearParams::from_map(&map(serde_json::json!({"solver": "lbfgs"}))).unwrap();
    assert_eq!(p.solver, LinearSolver::Lbfgs);
    let e = LinearParams::from_map(&map(serde_json::json!({"learning_rate": 0.1})))
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown field `learning_rate`"), "{e}");
    let e = LinearParams::from_map(&map(serde_json::json!({"max_iter": "many"})))
        .unwrap_err()
        .to_string();
    assert!(e.contains("max_iter"), "{e}");
    let e = LinearParams::from_map(&map(serde_json::json!({"alpha": -1})))
        .unwrap_err()
        .to_string();
    assert!(e.contains("alpha"), "{e}");
    let e = LinearParams::from_map(&map(serde_json::json!({"max_iter": 0})))
        .unwrap_err()
        .to_string();
    assert!(e.contains("max_iter"), "{e}");
}
