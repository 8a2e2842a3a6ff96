//! Trainers of linear models: ridge regression (`linear`) and L2-regularised logistic
//! regression (`logistic`), binary or multinomial (softmax).
//!
//! # Objectives (scikit-learn's, with the same `alpha`)
//!
//! * Regression: `Σ_i (y_i − b − w·x_i)² + alpha · ‖w‖²` — scikit-learn's `Ridge(alpha)`.
//! * Binary: `Σ_i logloss_i + alpha/2 · ‖w‖²` — `LogisticRegression(C = 1/alpha)`.
//! * Multiclass: `Σ_i −ln softmax(z_i)[y_i] + alpha/2 · Σ_k ‖w_k‖²` with one coefficient
//!   vector per class — `LogisticRegression(C = 1/alpha)` (multinomial, lbfgs).
//!
//! The intercepts are not penalised. `alpha = 0` is allowed (unregularised; separable
//! classes then do not converge within `max_iter`).
//!
//! # Method
//!
//! Features are standardised internally (centred when fitting an intercept, divided by their
//! standard deviation; a constant feature gets coefficient 0) and, for regression, so is the
//! label. The penalty stays on the coefficients of the *raw* features, so the optimum is the
//! one above; the scaling is folded back into the coefficients, so the stored
//! [`LinearModel`](crate::linear::LinearModel) takes raw features. Ridge is solved in closed form (Cholesky of the
//! normal equations) or by L-BFGS; logistic regression by L-BFGS. Every loop runs in a fixed
//! order on one thread: the same data and parameters give a byte-identical model.
//!
//! L-BFGS stops when the largest absolute component of the gradient of the objective divided
//! by the row count (in the standardised parameters) is at most `tol`, when the objective
//! stops decreasing (relative change below 64·ε, scikit-learn's `ftol`), or after `max_iter`
//! iterations.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{MlError, Result};
use crate::matrix::Matrix;
use crate::metrics::class_of;
use crate::native::{NativeModel, Scorer, Task};

mod solve;
#[cfg(test)]
mod tests;

use solve::{Design, Problem, data_loss, fold, lbfgs, ridge_cholesky};

/// Parameters of [`train_linear`], read from the `params` map of a train config
/// ([`LinearParams::from_map`]); unknown names are refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LinearParams {
    /// L2 penalty strength (≥ 0): scikit-learn's `Ridge(alpha)` for regression and
    /// `LogisticRegression(C = 1 / alpha)` for classification. Default 1.
    pub alpha: f64,
    /// Fit an (unpenalised) intercept. Default true.
    pub fit_intercept: bool,
    /// L-BFGS iterations at most (≥ 1). Default 200.
    pub max_iter: usize,
    /// Gradient tolerance of L-BFGS (≥ 0). Default 1e-6.
    pub tol: f64,
    /// `auto` (default: Cholesky for regression with at most 500 features, else L-BFGS),
    /// `cholesky` (regression only) or `lbfgs`.
    pub solver: LinearSolver,
}

impl Default for LinearParams {
    fn default() -> Self {
        LinearParams {
            alpha: 1.0,
            fit_intercept: true,
            max_iter: 200,
            tol: 1e-6,
            solver: LinearSolver::Auto,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinearSolver {
    Auto,
    Cholesky,
    Lbfgs,
}

/// Features above which `auto` regression uses L-BFGS rather than the normal equations.
const CHOLESKY_MAX_FEATURES: usize = 500;
/// L-BFGS memory.
const LBFGS_MEMORY: usize = 10;

impl LinearParams {
    /// Reads and validates parameters from a JSON map (`alpha`, `fit_intercept`, `max_iter`,
    /// `tol`, `solver`); an unknown name or a value of the wrong type is an error naming it.
    pub fn from_map(map: &BTreeMap<String, serde_json::Value>) -> Result<Self> {
        let p: LinearParams = crate::error::params_from_map(map)?;
        p.validate()?;
        Ok(p)
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(MlError::Training(format!("params.{m}")));
        if !(self.alpha.is_finite() && self.alpha >= 0.0) {
            return bad(format!("alpha: {} must be a number ≥ 0", self.alpha));
        }
        if self.max_iter == 0 {
            return bad("max_iter: must be ≥ 1".into());
        }
        if !(self.tol.is_finite() && self.tol >= 0.0) {
            return bad(format!("tol: {} must be a number ≥ 0", self.tol));
        }
        Ok(())
    }
}

/// A trained linear model and how training went.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearOutcome {
    /// `algorithm` is `linear` (regression) or `logistic`; `feature_names` are placeholders
    /// `f0, f1, …` and `class_labels` are `0, 1, …` — the caller sets the real ones.
    pub model: NativeModel,
    /// Per feature: `|coefficient| × the feature's standard deviation` on the training
    /// rows (averaged over classes for multiclass).
    pub importance: Vec<f64>,
    /// The solver that ran (`Cholesky` or `Lbfgs`).
    pub solver: LinearSolver,
    /// L-BFGS iterations (1 for Cholesky).
    pub iterations: usize,
    /// Whether the solver met its tolerance (always for Cholesky).
    pub converged: bool,
    /// Largest absolute component of the gradient (objective / rows, standardised
    /// parameters) at the solution.
    pub gradient_norm: f64,
    /// Mean training loss at the solution: MSE for regression, log-loss for classification.
    pub train_loss: f64,
    pub valid_loss: Option<f64>,
}

/// The first missing or infinite value of a matrix, by column then row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NonFinite {
    pub column: usize,
    pub row: usize,
    pub value: f32,
    /// Rows of that column that are not finite.
    pub count: usize,
}

/// The lowest column holding a NaN or infinite value, with its first such row.
pub fn first_non_finite(x: &Matrix) -> Option<NonFinite> {
    for j in 0..x.cols {
        if let Some(row) = (0..x.rows).find(|&i| !x.get(i, j).is_finite()) {
            let count = (row..x.rows).filter(|&i| !x.get(i, j).is_finite()).count();
            return Some(NonFinite {
                column: j,
                row,
                value: x.get(row, j),
                count,
            });
        }
    }
    None
}

/// [`train_linear_with`] without progress reports.
pub fn train_linear(
    train: &Matrix,
    y: &[f64],
    valid: Option<(&Matrix, &[f64])>,
    params: &LinearParams,
    task: Task,
) -> Result<LinearOutcome> {
    train_linear_with(train, y, valid, params, task, &mut |_, _, _| {})
}

/// Trains a linear model for `task` on `train` (raw features, no missing values) and labels
/// `y` (regression: any finite number; binary: 0/1; multiclass: class ids 0..K-1).
/// `progress(iteration, train_loss, valid_loss)` is called after every L-BFGS iteration
/// (once for the closed form), with the mean data loss (MSE or log-loss, no penalty).
pub fn train_linear_with(
    train: &Matrix,
    y: &[f64],
    valid: Option<(&Matrix, &[f64])>,
    params: &LinearParams,
    task: Task,
    progress: &mut dyn FnMut(usize, f64, Option<f64>),
) -> Result<LinearOutcome> {
    let algorithm = if task.is_classification() {
        "logistic"
    } else {
        "linear"
    };
    let err = |m: String| MlError::Training(format!("{algorithm}: {m}"));
    params.validate()?;
    if let Task::Multiclass { classes } = task
        && classes < 2
    {
        return Err(err(format!(
            "a multiclass task needs ≥ 2 classes, got {classes}"
        )));
    }
    if train.rows == 0 {
        return Err(err("the training data has no rows".into()));
    }
    if train.cols == 0 {
        return Err(err("the training data has no feature columns".into()));
    }
    if y.len() != train.rows {
        return Err(err(format!(
            "{} labels for {} training rows",
            y.len(),
            train.rows
        )));
    }
    if let Some(nf) = first_non_finite(train) {
        return Err(err(non_finite_message(&nf, "training")));
    }
    check_labels(task, y, "training").map_err(err)?;
    check_varied(task, y).map_err(err)?;
    let valid = match valid {
        Some((vx, vy)) if vx.rows > 0 => {
            if vx.cols != train.cols {
                return Err(err(format!(
                    "the validation data has {} feature columns, the training data {}",
                    vx.cols, train.cols
                )));
            }
            if vy.len() != vx.rows {
                return Err(err(format!(
                    "{} labels for {} validation rows",
                    vy.len(),
                    vx.rows
                )));
            }
            if let Some(nf) = first_non_finite(vx) {
                return Err(err(non_finite_message(&nf, "validation")));
            }
            check_labels(task, vy, "validation").map_err(err)?;
            Some((vx, vy))
        }
        _ => None,
    };
    let solver = match (params.solver, task) {
        (LinearSolver::Cholesky, Task::Regression) => LinearSolver::Cholesky,
        (LinearSolver::Cholesky, _) => {
            return Err(MlError::Training(
                "params.solver: `cholesky` solves linear regression only; use `lbfgs` (or `auto`) for logistic regression".into(),
            ));
        }
        (LinearSolver::Auto, Task::Regression) if train.cols <= CHOLESKY_MAX_FEATURES => {
            LinearSolver::Cholesky
        }
        _ => LinearSolver::Lbfgs,
    };

    let design = Design::new(train, y, task, params.fit_intercept);
    let problem = Problem {
        task,
        k: task.n_scores(),
        design: &design,
        alpha: params.alpha,
        fit_intercept: params.fit_intercept,
    };
    let valid_loss = |theta: &[f64]| -> Option<f64> {
        valid.map(|(vx, vy)| {
            let m = fold(&design, &problem, theta);
            data_loss(task, &m, vx, vy)
        })
    };
    let mut grad = vec![0.0; problem.n_params()];
    let (theta, iterations, converged) = match solver {
        LinearSolver::Cholesky => {
            let theta = ridge_cholesky(&problem).map_err(err)?;
            let (_, loss) = problem.eval(&theta, &mut grad);
            progress(0, loss, valid_loss(&theta));
            (theta, 1, true)
        }
        _ => lbfgs(&problem, params, &mut |i, theta, loss| {
            progress(i, loss, valid_loss(theta));
        }),
    };
    let (_, train_loss) = problem.eval(&theta, &mut grad);
    let gradient_norm = grad.iter().fold(0.0f64, |m, g| m.max(g.abs()));
    let linear = fold(&design, &problem, &theta);
    let f = design.f;
    let k = problem.k;
    let importance = (0..f)
        .map(|j| {
            (0..k)
                .map(|t| linear.coefficients[t * f + j].abs())
                .sum::<f64>()
                / k as f64
                * design.std[j]
        })
        .collect();
    let valid_loss = valid.map(|(vx, vy)| data_loss(task, &linear, vx, vy));
    let model = NativeModel {
        algorithm: algorithm.to_string(),
        task,
        feature_names: (0..f).map(|j| format!("f{j}")).collect(),
        class_labels: (0..task.n_classes()).map(|c| c.to_string()).collect(),
        scorer: Scorer::Linear(linear),
    };
    model.validate()?;
    Ok(LinearOutcome {
        model,
        importance,
        solver,
        iterations,
        converged,
        gradient_norm,
        train_loss,
        valid_loss,
    })
}

fn non_finite_message(nf: &NonFinite, split: &str) -> String {
    let what = if nf.value.is_nan() {
        "a missing value".to_string()
    } else {
        format!("the value {}", nf.value)
    };
    format!(
        "feature column {} has {what} at row {} of the {split} data ({} such rows): a linear \
         model cannot take missing or infinite values — impute them in the feature transform \
         (e.g. a derived column with `coalesce(x, 0)`) or use algorithm `gbdt`, which handles \
         missing values",
        nf.column, nf.row, nf.count
    )
}

fn check_labels(task: Task, y: &[f64], split: &str) -> std::result::Result<(), String> {
    match task {
        Task::Regression => {
            if let Some(i) = y.iter().position(|v| !v.is_finite()) {
                return Err(format!(
                    "the label of {split} row {i} is {}; labels must be finite numbers",
                    y[i]
                ));
            }
        }
        Task::Binary => {
            if let Some(i) = y.iter().position(|&v| v != 0.0 && v != 1.0) {
                return Err(format!(
                    "the label of {split} row {i} is {}; binary labels must be 0 or 1",
                    y[i]
                ));
            }
        }
        Task::Multiclass { classes } => {
            if let Some(i) = y.iter().position(|&v| class_of(v, classes).is_none()) {
                return Err(format!(
                    "the label of {split} row {i} is {}; multiclass labels must be class ids 0..{}",
                    y[i],
                    classes - 1
                ));
            }
        }
    }
    Ok(())
}

fn check_varied(task: Task, y: &[f64]) -> std::result::Result<(), String> {
    if y.iter().all(|v| *v == y[0]) {
        return Err(format!(
            "the label is constant ({} on all {} training rows); there is nothing to learn",
            y[0],
            y.len()
        ));
    }
    if let Task::Multiclass { classes } = task {
        let mut seen = vec![false; classes];
        for v in y {
            seen[*v as usize] = true;
        }
        if let Some(c) = seen.iter().position(|s| !s) {
            return Err(format!(
                "class {c} has no training rows; multinomial logistic regression needs every class \
                 of 0..{} in the training data",
                classes - 1
            ));
        }
    }
    Ok(())
}
