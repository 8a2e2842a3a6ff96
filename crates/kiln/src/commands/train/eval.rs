//! Evaluation of a trained model on the valid and test splits (overall and per segment),
//! feature importance, and the datasets a run is logged as having read.

use std::collections::BTreeMap;

use kiln_core::entities::{Dataset, DatasetInput, KeyValue};
use kiln_ml::metrics::{EvalOptions, evaluate, evaluate_segments, metric_key_part};

use super::super::data::Ctx;
use super::super::features::Built;
use super::fit::Fitted;
use super::tracking::{RunRef, Tracker};
use super::{Data, TrainConfig};

/// Segments with fewer rows than this get a row count but no metrics.
const SEGMENT_MIN_ROWS: usize = 30;

/// The run's dataset inputs: the raw datasets the features were built from and the feature
/// table itself, each by digest.
pub fn dataset_inputs(ctx: &Ctx, built: &Built) -> anyhow::Result<Vec<DatasetInput>> {
    let input = |name: &str, digest: &str, source: &str, context: &str| DatasetInput {
        tags: vec![KeyValue {
            key: "mlflow.data.context".into(),
            value: context.to_string(),
        }],
        dataset: Dataset {
            name: name.to_string(),
            digest: digest.to_string(),
            source_type: if source.starts_with("s3://") {
                "s3".into()
            } else {
                "local".into()
            },
            source: serde_json::json!({ "uri": source }).to_string(),
            schema: None,
            profile: None,
        },
    };
    let mut out = vec![];
    for (name, digest) in &built.inputs {
        let source = ctx
            .project
            .dataset(name)
            .map(|d| ctx.project.resolve_source(&d.source))
            .unwrap_or_default();
        out.push(input(name, digest, &source, "source"));
    }
    out.push(input(
        &format!("features.{}", built.summary.name),
        &built.table_digest,
        &built.dir.join("features.parquet").display().to_string(),
        "training",
    ));
    Ok(out)
}

/// Scores the valid and test splits, logs every metric (`valid_auc`, `test_rmse`…, and
/// `test.SEGMENT.VALUE.METRIC` per segment) and artifacts (confusion matrices, segment
/// metrics, feature importance); returns the flat metrics.
pub fn evaluate_model(
    tracker: &mut Tracker<'_>,
    run: &RunRef,
    data: &Data,
    fitted: &Fitted,
    cfg: &TrainConfig,
) -> anyhow::Result<BTreeMap<String, f64>> {
    let mut metrics = BTreeMap::new();
    let mut confusion = serde_json::Map::new();
    let splits = [
        ("train", Some(&data.train)),
        ("valid", data.valid.as_ref()),
        ("test", data.test.as_ref()),
    ];
    let mut test_predictions = None;
    for (split, part) in splits {
        let Some((x, y)) = part else { continue };
        let p = fitted.model.predict(x)?;
        let e = evaluate(data.task, y, &p)?;
        for (k, v) in &e.metrics {
            let key = format!("{split}_{k}");
            tracker.metric(run, &key, *v, 0)?;
            metrics.insert(key, *v);
        }
        if let Some(c) = &e.confusion {
            confusion.insert(split.to_string(), serde_json::to_value(c)?);
        }
        if split == "test" {
            test_predictions = Some(p);
        }
    }
    if !confusion.is_empty() {
        tracker.artifact_bytes(
            run,
            "evaluation/confusion.json",
            serde_json::to_vec_pretty(&serde_json::json!({
                "classes": data.class_labels,
                "splits": confusion,
            }))?,
        )?;
    }
    if let (Some(p), Some((_, y))) = (&test_predictions, &data.test) {
        let mut all = serde_json::Map::new();
        for seg in &cfg.segments {
            let values = &data.table.keep[seg];
            let seg_values: Vec<String> = data
                .test_rows
                .iter()
                .map(|&i| values[i].clone().unwrap_or_else(|| "(missing)".into()))
                .collect();
            let per = evaluate_segments(
                data.task,
                y,
                p,
                &seg_values,
                &EvalOptions::default(),
                SEGMENT_MIN_ROWS,
            )?;
            for s in &per {
                for (k, v) in &s.metrics {
                    let key = format!("test.{seg}.{}.{k}", metric_key_part(&s.segment));
                    tracker.metric(run, &key, *v, 0)?;
                    metrics.insert(key, *v);
                }
            }
            all.insert(seg.clone(), serde_json::to_value(&per)?);
        }
        if !all.is_empty() {
            tracker.artifact_bytes(
                run,
                "evaluation/segments.json",
                serde_json::to_vec_pretty(&all)?,
            )?;
        }
    }
    // Importance, largest first.
    let mut imp: Vec<(&String, f64)> = data
        .table
        .features
        .iter()
        .zip(fitted.importance.iter().copied())
        .collect();
    imp.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    let total: f64 = imp.iter().map(|(_, v)| v.max(0.0)).sum();
    let rows: Vec<serde_json::Value> = imp
        .iter()
        .map(|(f, v)| {
            serde_json::json!({
                "feature": f,
                "importance": v,
                "share": if total > 0.0 { v / total } else { 0.0 },
            })
        })
        .collect();
    tracker.artifact_bytes(
        run,
        "evaluation/feature_importance.json",
        serde_json::to_vec_pretty(&serde_json::json!({
            "kind": fitted.importance_kind,
            "features": rows,
        }))?,
    )?;
    if let Some(b) = fitted.best_iteration {
        tracker.metric(run, "best_iteration", b as f64, 0)?;
        metrics.insert("best_iteration".into(), b as f64);
    }
    Ok(metrics)
}
