//! The native trainers behind one call: `gbdt` (gradient-boosted trees), `linear` (ridge
//! regression) and `logistic` (binary or multinomial logistic regression).

use std::collections::BTreeMap;

use anyhow::bail;
use kiln_ml::linear_train::{LinearParams, first_non_finite, train_linear_with};
use kiln_ml::{Matrix, NativeModel, Task};

use super::Data;

pub const ALGORITHMS: &[&str] = &["gbdt", "linear", "logistic"];

/// A trained model and what training learned about it.
pub struct Fitted {
    pub model: NativeModel,
    /// Per feature, in feature order.
    pub importance: Vec<f64>,
    /// What `importance` measures.
    pub importance_kind: &'static str,
    /// Trees: the round kept by early stopping.
    pub best_iteration: Option<usize>,
}

pub fn check_algorithm(algorithm: &str) -> anyhow::Result<()> {
    if !ALGORITHMS.contains(&algorithm) {
        bail!(
            "unknown algorithm {algorithm:?}: expected one of {}",
            ALGORITHMS.join(", ")
        );
    }
    Ok(())
}

fn check_task(algorithm: &str, task: Task) -> anyhow::Result<()> {
    match (algorithm, task) {
        ("linear", t) if t.is_classification() => bail!(
            "`linear` is linear regression, but the label makes this a classification task; use \
             `logistic` (or set task = \"regression\")"
        ),
        ("logistic", Task::Regression) => bail!(
            "`logistic` is for classification, but the label makes this a regression task; use \
             `linear` or `gbdt`"
        ),
        _ => Ok(()),
    }
}

/// Checks the parameters (names and values) without training.
pub fn check_params(
    algorithm: &str,
    task: Task,
    features: &[String],
    params: &BTreeMap<String, serde_json::Value>,
) -> anyhow::Result<()> {
    check_task(algorithm, task)?;
    match algorithm {
        "gbdt" => {
            kiln_ml::boost::GbdtParams::from_map(params)?.resolve_categorical(features)?;
        }
        _ => {
            LinearParams::from_map(params)?;
        }
    }
    Ok(())
}

/// How many iterations a progress bar should expect.
pub fn rounds_hint(algorithm: &str, params: &BTreeMap<String, serde_json::Value>) -> Option<usize> {
    match algorithm {
        "gbdt" => kiln_ml::boost::GbdtParams::from_map(params)
            .ok()
            .map(|p| p.num_rounds),
        _ => LinearParams::from_map(params).ok().map(|p| p.max_iter),
    }
}

/// Linear models cannot take missing values: say which feature and row has one.
fn refuse_missing(x: &Matrix, features: &[String], split: &str) -> anyhow::Result<()> {
    if let Some(nf) = first_non_finite(x) {
        bail!(
            "feature `{}` has {} missing or infinite value(s) in the {split} split (first at \
             {split} row {}); a linear model cannot take missing values — impute them in the \
             feature pipeline (e.g. a derived column with coalesce) or use algorithm = \"gbdt\", \
             which handles them",
            features.get(nf.column).map_or("?", String::as_str),
            nf.count,
            nf.row + 1
        );
    }
    Ok(())
}

/// Checks that the data can be trained on by `algorithm` (linear models refuse missing
/// values), before any run is created.
pub fn check_data(algorithm: &str, data: &Data) -> anyhow::Result<()> {
    if algorithm != "gbdt" {
        refuse_missing(&data.train.0, &data.table.features, "train")?;
        if let Some((vx, _)) = &data.valid {
            refuse_missing(vx, &data.table.features, "valid")?;
        }
    }
    Ok(())
}

pub fn fit(
    algorithm: &str,
    data: &Data,
    params: &BTreeMap<String, serde_json::Value>,
    on_iteration: &mut dyn FnMut(usize, f64, Option<f64>),
) -> anyhow::Result<Fitted> {
    check_task(algorithm, data.task)?;
    let (x, y) = &data.train;
    let valid = data.valid.as_ref().map(|(vx, vy)| (vx, vy.as_slice()));
    let features = &data.table.features;
    let mut fitted = match algorithm {
        "gbdt" => {
            let mut p = kiln_ml::boost::GbdtParams::from_map(params)?;
            p.resolve_categorical(features)?;
            let out = kiln_ml::boost::train(x, y, valid, data.task, &p, &mut |it| {
                on_iteration(it.iteration, it.train_loss, it.valid_loss)
            })?;
            Fitted {
                model: out.model,
                importance: out.importance_gain,
                importance_kind: "total gain of the splits on the feature",
                best_iteration: Some(out.best_iteration),
            }
        }
        _ => {
            refuse_missing(x, features, "train")?;
            if let Some((vx, _)) = &data.valid {
                refuse_missing(vx, features, "valid")?;
            }
            let p = LinearParams::from_map(params)?;
            let out = train_linear_with(x, y, valid, &p, data.task, on_iteration)?;
            Fitted {
                model: out.model,
                importance: out.importance,
                importance_kind: "|coefficient| × feature standard deviation",
                best_iteration: None,
            }
        }
    };
    fitted.model.feature_names = features.clone();
    Ok(fitted)
}
