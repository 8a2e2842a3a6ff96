//! Filling in runs: their latest metrics, params, tags, dataset inputs and model outputs,
//! for one run or a search page of thousands, with a handful of queries.
//!
//! Metrics, params and tags come back packed by the database as one JSON array per table
//! and chunk (`json_group_array` / `json_agg`), so a page of 1,000 runs with a few
//! thousand values costs a few rows rather than thousands of row transfers between the
//! database thread and the async side. Metric values travel as 17-digit text, which
//! round-trips every double exactly.

use std::collections::HashMap;

use kiln_core::entities::{
    Dataset, DatasetInput, KeyValue, Metric, ModelInput, ModelOutput, Run, RunData, RunInfo,
    RunInputs, RunOutputs,
};
use sqlx::{AnyConnection, AssertSqlSafe, Row};

use crate::db::Backend;
use crate::error::{Result, StoreError};
use crate::runs::{in_params, loaded_value};

/// Runs per query; keeps the IN list far below both backends' parameter limits.
const CHUNK: usize = 500;

/// `SELECT <array of arrays of cols> FROM <rest>` in the backend's JSON dialect.
fn packed(backend: Backend, cols: &[&str], rest: &str) -> String {
    match backend {
        Backend::Sqlite => format!(
            "SELECT json_group_array(json_array({})) FROM {rest}",
            cols.join(", ")
        ),
        Backend::Postgres => format!(
            "SELECT json_agg(json_build_array({}))::text FROM {rest}",
            cols.join(", ")
        ),
    }
}

async fn fetch_packed<T: serde::de::DeserializeOwned>(
    conn: &mut AnyConnection,
    sql: String,
    ids: &[String],
) -> Result<Vec<T>> {
    let mut q = sqlx::query_scalar::<_, Option<String>>(AssertSqlSafe(sql));
    for id in ids {
        q = q.bind(id.as_str());
    }
    match q.fetch_one(&mut *conn).await? {
        None => Ok(Vec::new()),
        Some(text) => serde_json::from_str(&text)
            .map_err(|e| StoreError::Config(format!("unreadable packed rows: {e}"))),
    }
}

/// Fills in data, inputs and outputs for a list of run infos, keeping the given order.
pub(crate) async fn load_runs(
    conn: &mut AnyConnection,
    backend: Backend,
    infos: Vec<RunInfo>,
) -> Result<Vec<Run>> {
    let mut runs: Vec<Run> = infos
        .into_iter()
        .map(|info| Run {
            info,
            data: RunData::default(),
            inputs: RunInputs::default(),
            outputs: RunOutputs::default(),
        })
        .collect();
    let index: HashMap<String, usize> = runs
        .iter()
        .enumerate()
        .map(|(i, r)| (r.info.run_id.clone(), i))
        .collect();
    let ids: Vec<String> = runs.iter().map(|r| r.info.run_id.clone()).collect();
    let value_text = match backend {
        Backend::Sqlite => "printf('%!.17g', value)",
        Backend::Postgres => "value::text",
    };
    for chunk in ids.chunks(CHUNK) {
        let list = in_params(conn, chunk.len());
        let where_ids = format!("WHERE run_id IN {list}");

        let sql = packed(
            backend,
            &["run_id", "key", value_text, "is_nan", "timestamp", "step"],
            &format!("latest_metrics {where_ids}"),
        );
        let rows: Vec<(String, String, String, i64, i64, i64)> =
            fetch_packed(conn, sql, chunk).await?;
        for (id, key, value, is_nan, timestamp, step) in rows {
            let value: f64 = value
                .parse()
                .map_err(|_| StoreError::Config(format!("unreadable metric value {value:?}")))?;
            runs[index[&id]].data.metrics.push(Metric {
                key,
                value: loaded_value(value, is_nan),
                timestamp,
                step,
                model_id: None,
                dataset_name: None,
                dataset_digest: None,
                run_id: None,
            });
        }
        for (table, is_params) in [("params", true), ("tags", false)] {
            let sql = packed(
                backend,
                &["run_id", "key", "value"],
                &format!("{table} {where_ids}"),
            );
            let rows: Vec<(String, String, String)> = fetch_packed(conn, sql, chunk).await?;
            for (id, key, value) in rows {
                let data = &mut runs[index[&id]].data;
                let list = if is_params {
                    &mut data.params
                } else {
                    &mut data.tags
                };
                list.push(KeyValue { key, value });
            }
        }

        macro_rules! fetch {
            ($sql:expr) => {{
                let sql: String = $sql;
                let mut q = sqlx::query(AssertSqlSafe(sql));
                for id in chunk {
                    q = q.bind(id.as_str());
                }
                q.fetch_all(&mut *conn).await?
            }};
        }
        for row in fetch!(format!(
            "SELECT ri.run_id, ri.tags_json, d.name, d.digest, d.source_type, d.source, d.schema_json, d.profile \
             FROM run_inputs ri JOIN datasets d ON d.experiment_id = ri.experiment_id \
             AND d.name = ri.dataset_name AND d.digest = ri.dataset_digest \
             WHERE ri.run_id IN {list} ORDER BY d.name, d.digest"
        )) {
            let id: String = row.try_get(0)?;
            let tags_json: String = row.try_get(1)?;
            runs[index[&id]].inputs.dataset_inputs.push(DatasetInput {
                tags: serde_json::from_str(&tags_json).unwrap_or_default(),
                dataset: Dataset {
                    name: row.try_get(2)?,
                    digest: row.try_get(3)?,
                    source_type: row.try_get(4)?,
                    source: row.try_get(5)?,
                    schema: row.try_get(6)?,
                    profile: row.try_get(7)?,
                },
            });
        }
        for row in fetch!(format!(
            "SELECT run_id, model_id FROM run_model_inputs WHERE run_id IN {list} ORDER BY model_id"
        )) {
            let id: String = row.try_get(0)?;
            runs[index[&id]].inputs.model_inputs.push(ModelInput {
                model_id: row.try_get(1)?,
            });
        }
        for row in fetch!(format!(
            "SELECT run_id, model_id, step FROM run_outputs WHERE run_id IN {list} ORDER BY model_id"
        )) {
            let id: String = row.try_get(0)?;
            runs[index[&id]].outputs.model_outputs.push(ModelOutput {
                model_id: row.try_get(1)?,
                step: row.try_get(2)?,
            });
        }
    }
    // Packed rows arrive in no promised order; runs list their values by key, as MLflow does.
    for run in &mut runs {
        run.data.metrics.sort_by(|a, b| a.key.cmp(&b.key));
        run.data.params.sort_by(|a, b| a.key.cmp(&b.key));
        run.data.tags.sort_by(|a, b| a.key.cmp(&b.key));
    }
    Ok(runs)
}
