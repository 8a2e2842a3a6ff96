//! Linear scores with ONNX `LinearClassifier` / `LinearRegressor` semantics:
//! `score[t] = intercept[t] + Σ_j coef[t][j] · x[j]`.

use serde::{Deserialize, Serialize};

use crate::error::{MlError, Result};
use crate::matrix::Matrix;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinearModel {
    pub n_features: usize,
    pub n_targets: usize,
    /// `n_targets × n_features`, target after target.
    pub coefficients: Vec<f64>,
    /// One per target (empty for zeros).
    pub intercepts: Vec<f64>,
}

impl LinearModel {
    pub fn validate(&self) -> Result<()> {
        if self.coefficients.len() != self.n_targets * self.n_features {
            return Err(MlError::InvalidModel(format!(
                "{} coefficients for {} targets × {} features",
                self.coefficients.len(),
                self.n_targets,
                self.n_features
            )));
        }
        if !self.intercepts.is_empty() && self.intercepts.len() != self.n_targets {
            return Err(MlError::InvalidModel(format!(
                "{} intercepts for {} targets",
                self.intercepts.len(),
                self.n_targets
            )));
        }
        Ok(())
    }

    /// Raw scores, `rows × n_targets`, row-major. A missing value (NaN) in an input row makes
    /// that row's scores NaN; callers that refuse NaN check before.
    pub fn scores(&self, x: &Matrix) -> Result<Vec<f64>> {
        if x.cols != self.n_features {
            return Err(MlError::BadInput(format!(
                "the model takes {} features, the input has {}",
                self.n_features, x.cols
            )));
        }
        let (k, f) = (self.n_targets, self.n_features);
        let mut out = vec![0.0; x.rows * k];
        for r in 0..x.rows {
            let row = x.row(r);
            for t in 0..k {
                let w = &self.coefficients[t * f..(t + 1) * f];
                let mut s = self.intercepts.get(t).copied().unwrap_or(0.0);
                for (a, b) in w.iter().zip(row) {
                    s += a * f64::from(*b);
                }
                out[r * k + t] = s;
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_are_affine() {
        let m = LinearModel {
            n_features: 2,
            n_targets: 2,
            coefficients: vec![1.0, 2.0, -1.0, 0.5],
            intercepts: vec![0.5, 0.0],
        };
        m.validate().unwrap();
        let x = Matrix::new(1, 2, vec![3.0, 4.0]).unwrap();
        assert_eq!(m.scores(&x).unwrap(), vec![11.5, -1.0]);
    }
}
