//! A dense, row-major `f32` matrix: the input of trainers and of native predictors.
//! Missing values are `NaN`.

use serde::{Deserialize, Serialize};

use crate::error::{MlError, Result};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Matrix {
    pub rows: usize,
    pub cols: usize,
    /// `rows * cols` values, row after row.
    pub data: Vec<f32>,
}

impl Matrix {
    pub fn new(rows: usize, cols: usize, data: Vec<f32>) -> Result<Self> {
        if rows.checked_mul(cols) != Some(data.len()) {
            return Err(MlError::BadInput(format!(
                "a {rows}×{cols} matrix needs {} values, got {}",
                rows.saturating_mul(cols),
                data.len()
            )));
        }
        Ok(Matrix { rows, cols, data })
    }

    pub fn zeros(rows: usize, cols: usize) -> Self {
        Matrix {
            rows,
            cols,
            data: vec![0.0; rows * cols],
        }
    }

    /// Builds a matrix from columns of equal length.
    pub fn from_columns(columns: &[Vec<f32>]) -> Result<Self> {
        let cols = columns.len();
        let rows = columns.first().map_or(0, Vec::len);
        if let Some((i, c)) = columns.iter().enumerate().find(|(_, c)| c.len() != rows) {
            return Err(MlError::BadInput(format!(
                "column {i} has {} values, column 0 has {rows}",
                c.len()
            )));
        }
        let mut data = vec![0.0; rows * cols];
        for (j, c) in columns.iter().enumerate() {
            for (i, v) in c.iter().enumerate() {
                data[i * cols + j] = *v;
            }
        }
        Ok(Matrix { rows, cols, data })
    }

    #[inline]
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }

    #[inline]
    pub fn get(&self, i: usize, j: usize) -> f32 {
        self.data[i * self.cols + j]
    }

    /// Column `j` copied out.
    pub fn column(&self, j: usize) -> Vec<f32> {
        (0..self.rows).map(|i| self.get(i, j)).collect()
    }

    /// The rows at `idx`, in that order.
    pub fn take_rows(&self, idx: &[usize]) -> Matrix {
        let mut data = Vec::with_capacity(idx.len() * self.cols);
        for &i in idx {
            data.extend_from_slice(self.row(i));
        }
        Matrix {
            rows: idx.len(),
            cols: self.cols,
            data,
        }
    }
}
