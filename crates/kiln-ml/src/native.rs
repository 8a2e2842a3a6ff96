//! Kiln's own models (trained by `kiln train`): a tree ensemble or a linear model plus the
//! task that turns raw scores into predictions. Serialised as `model.json` in a package;
//! serving wraps one in a [`NativePredictor`].

use serde::{Deserialize, Serialize};

use crate::error::{MlError, Result};
use crate::linear::LinearModel;
use crate::matrix::Matrix;
use crate::predictor::{Predictor, sigmoid};
use crate::tensor::{ElemType, Tensor, TensorData, TensorSpec};
use crate::trees::TreeEnsemble;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Task {
    Regression,
    /// One raw score per row: the log-odds of class 1.
    Binary,
    /// One raw score per class; softmax gives the probabilities.
    Multiclass {
        classes: usize,
    },
}

impl Task {
    /// Raw scores per row the scorer must produce.
    pub fn n_scores(self) -> usize {
        match self {
            Task::Regression | Task::Binary => 1,
            Task::Multiclass { classes } => classes,
        }
    }

    pub fn is_classification(self) -> bool {
        !matches!(self, Task::Regression)
    }

    pub fn n_classes(self) -> usize {
        match self {
            Task::Regression => 0,
            Task::Binary => 2,
            Task::Multiclass { classes } => classes,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Scorer {
    Trees(TreeEnsemble),
    Linear(LinearModel),
}

impl Scorer {
    pub fn scores(&self, x: &Matrix) -> Result<Vec<f64>> {
        match self {
            Scorer::Trees(t) => t.scores(x),
            Scorer::Linear(l) => l.scores(x),
        }
    }

    pub fn n_features(&self) -> usize {
        match self {
            Scorer::Trees(t) => t.n_features,
            Scorer::Linear(l) => l.n_features,
        }
    }

    pub fn n_targets(&self) -> usize {
        match self {
            Scorer::Trees(t) => t.n_targets,
            Scorer::Linear(l) => l.n_targets,
        }
    }
}

/// A trained native model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NativeModel {
    /// `gbdt`, `linear`, `logistic`.
    pub algorithm: String,
    pub task: Task,
    pub feature_names: Vec<String>,
    /// Class labels as text, index = class id (empty for regression).
    #[serde(default)]
    pub class_labels: Vec<String>,
    pub scorer: Scorer,
}

/// Per row, what a native model predicts.
#[derive(Debug, Clone, PartialEq)]
pub struct Predictions {
    pub task: Task,
    /// Regression: the prediction. Binary: P(class 1). Multiclass: unused (see `probabilities`).
    pub value: Vec<f64>,
    /// Classification: `rows × n_classes` probabilities.
    pub probabilities: Vec<f64>,
    /// Classification: the most probable class.
    pub label: Vec<i64>,
}

impl NativeModel {
    pub fn validate(&self) -> Result<()> {
        match &self.scorer {
            Scorer::Trees(t) => t.validate()?,
            Scorer::Linear(l) => l.validate()?,
        }
        if self.scorer.n_features() != self.feature_names.len() {
            return Err(MlError::InvalidModel(format!(
                "{} feature names for a scorer of {} features",
                self.feature_names.len(),
                self.scorer.n_features()
            )));
        }
        if self.scorer.n_targets() != self.task.n_scores() {
            return Err(MlError::InvalidModel(format!(
                "the task needs {} scores per row, the scorer gives {}",
                self.task.n_scores(),
                self.scorer.n_targets()
            )));
        }
        Ok(())
    }

    pub fn predict(&self, x: &Matrix) -> Result<Predictions> {
        let raw = self.scorer.scores(x)?;
        Ok(finish(self.task, raw, x.rows))
    }
}

/// Turns raw scores into predictions for `task`.
pub fn finish(task: Task, raw: Vec<f64>, rows: usize) -> Predictions {
    match task {
        Task::Regression => Predictions {
            task,
            value: raw,
            probabilities: vec![],
            label: vec![],
        },
        Task::Binary => {
            let p: Vec<f64> = raw.iter().map(|s| sigmoid(*s)).collect();
            let probabilities = p.iter().flat_map(|p| [1.0 - p, *p]).collect();
            let label = p.iter().map(|p| i64::from(*p > 0.5)).collect();
            Predictions {
                task,
                value: p,
                probabilities,
                label,
            }
        }
        Task::Multiclass { classes } => {
            let mut probabilities = raw;
            let mut label = Vec::with_capacity(rows);
            for r in 0..rows {
                let row = &mut probabilities[r * classes..(r + 1) * classes];
                crate::predictor::PostTransform::Softmax.apply(row);
                let best = row
                    .iter()
                    .enumerate()
                    .fold(
                        (0, f64::NEG_INFINITY),
                        |b, (i, v)| if *v > b.1 { (i, *v) } else { b },
                    );
                label.push(best.0 as i64);
            }
            Predictions {
                task,
                value: vec![],
                probabilities,
                label,
            }
        }
    }
}

/// A native model served through the [`Predictor`] trait: one input `input` (`[-1, F]`, any
/// number type); outputs `label` (INT64 `[-1]`) and `probabilities` (FP32 `[-1, K]`) for
/// classifiers, `prediction` (FP32 `[-1]`) for regressors.
pub struct NativePredictor {
    model: NativeModel,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
}

impl NativePredictor {
    pub fn new(model: NativeModel) -> Result<Self> {
        model.validate()?;
        let f = model.feature_names.len() as i64;
        let inputs = vec![TensorSpec {
            name: "input".into(),
            datatype: ElemType::Fp32,
            shape: vec![-1, f],
        }];
        let outputs = if model.task.is_classification() {
            vec![
                TensorSpec {
                    name: "label".into(),
                    datatype: ElemType::Int64,
                    shape: vec![-1],
                },
                TensorSpec {
                    name: "probabilities".into(),
                    datatype: ElemType::Fp32,
                    shape: vec![-1, model.task.n_classes() as i64],
                },
            ]
        } else {
            vec![TensorSpec {
                name: "prediction".into(),
                datatype: ElemType::Fp32,
                shape: vec![-1],
            }]
        };
        Ok(NativePredictor {
            model,
            inputs,
            outputs,
        })
    }

    pub fn model(&self) -> &NativeModel {
        &self.model
    }
}

impl Predictor for NativePredictor {
    fn inputs(&self) -> &[TensorSpec] {
        &self.inputs
    }

    fn outputs(&self) -> &[TensorSpec] {
        &self.outputs
    }

    fn predict(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        let [input] = inputs else {
            return Err(MlError::BadInput(format!(
                "the model takes one input `input`, got {}",
                inputs.len()
            )));
        };
        let f = self.model.feature_names.len();
        let rows = match input.shape.as_slice() {
            [n, c] if *c == f => *n,
            [n] if f == 1 => *n,
            other => {
                return Err(MlError::BadInput(format!(
                    "input `{}` has shape {other:?}, the model expects [-1, {f}]",
                    input.name
                )));
            }
        };
        let x = Matrix::new(rows, f, input.to_f32()?)?;
        let p = self.model.predict(&x)?;
        Ok(if self.model.task.is_classification() {
            let k = self.model.task.n_classes();
            vec![
                Tensor::new("label", vec![rows], TensorData::Int64(p.label))?,
                Tensor::fp32(
                    "probabilities",
                    vec![rows, k],
                    p.probabilities.iter().map(|v| *v as f32).collect(),
                )?,
            ]
        } else {
            vec![Tensor::fp32(
                "prediction",
                vec![rows],
                p.value.iter().map(|v| *v as f32).collect(),
            )?]
        })
    }
}
