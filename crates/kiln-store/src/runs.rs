//! Runs: create, read, update, delete/restore, params, tags, metrics, batches, history,
//! inputs and outputs. Search lives in `run_search.rs`.

use std::collections::HashMap;

use kiln_core::entities::{DatasetInput, KeyValue, ModelInput, ModelOutput, Run, RunInfo};
use sqlx::AssertSqlSafe;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::error::{Result, StoreError};
use crate::experiments::{load_experiment, parse_experiment_id};
use crate::logged_models::{ModelMetricInput, write_model_metrics};
use crate::validation::{self, MAX_PARAM_VAL_LENGTH, MAX_TAG_VAL_LENGTH};
use crate::{Store, now_ms};

pub use crate::run_search::RunSearch;

/// Input of `runs/create`.
#[derive(Debug, Clone, Default)]
pub struct RunCreate {
    pub experiment_id: String,
    pub user_id: String,
    pub run_name: Option<String>,
    pub start_time: Option<i64>,
    pub tags: Vec<KeyValue>,
}

/// Input of `runs/update`.
#[derive(Debug, Clone, Default)]
pub struct RunUpdate {
    pub status: Option<String>,
    pub end_time: Option<i64>,
    pub run_name: Option<String>,
}

/// One metric point to log.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricInput {
    pub key: String,
    pub value: f64,
    pub timestamp: i64,
    pub step: i64,
}

/// Input of `runs/log-batch`.
#[derive(Debug, Clone, Default)]
pub struct BatchInput {
    pub metrics: Vec<MetricInput>,
    pub params: Vec<KeyValue>,
    pub tags: Vec<KeyValue>,
    /// Metrics that MLflow 3 clients attach to a logged model (`model_id` on the metric);
    /// they are also recorded on that model, in the same transaction.
    pub model_metrics: Vec<(String, ModelMetricInput)>,
}

const RUN_NAME_TAG: &str = "mlflow.runName";
const RUN_STATUSES: &[&str] = &["RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED"];

pub(crate) const RUN_COLUMNS: &str = "run_id, experiment_id, name, user_id, status, start_time, \
     end_time, lifecycle_stage, artifact_uri";

pub(crate) fn info_from_row(row: &AnyRow) -> Result<RunInfo> {
    let run_id: String = row.try_get(0)?;
    Ok(RunInfo {
        run_uuid: run_id.clone(),
        run_id,
        experiment_id: row.try_get::<i64, _>(1)?.to_string(),
        run_name: row.try_get(2)?,
        user_id: row.try_get(3)?,
        status: row.try_get(4)?,
        start_time: row.try_get(5)?,
        end_time: row.try_get(6)?,
        lifecycle_stage: row.try_get(7)?,
        artifact_uri: row.try_get(8)?,
    })
}

/// Reads a run's info, or RESOURCE_DOES_NOT_EXIST.
pub(crate) async fn load_info(conn: &mut AnyConnection, run_id: &str) -> Result<RunInfo> {
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT {RUN_COLUMNS} FROM runs WHERE run_id = $1"
    )))
    .bind(run_id)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| StoreError::not_found(format!("Run with id={run_id} not found")))?;
    info_from_row(&row)
}

/// Reads a run and refuses it unless it is active (MLflow's `_check_run_is_active`).
pub(crate) async fn active_info(conn: &mut AnyConnection, run_id: &str) -> Result<RunInfo> {
    let info = load_info(conn, run_id).await?;
    if info.lifecycle_stage != "active" {
        return Err(StoreError::invalid(format!(
            "The run {run_id} must be in the 'active' state. Current state is {}.",
            info.lifecycle_stage
        )));
    }
    Ok(info)
}

fn validate_metric(m: &MetricInput) -> Result<()> {
    validation::key("Metric", &m.key)
}

fn validate_param(p: &KeyValue) -> Result<()> {
    validation::key("Param", &p.key)?;
    validation::value_len("Param", &p.key, &p.value, MAX_PARAM_VAL_LENGTH)
}

fn validate_tag(t: &KeyValue) -> Result<()> {
    validation::key("Tag", &t.key)?;
    validation::value_len("Tag", &t.key, &t.value, MAX_TAG_VAL_LENGTH)
}

/// Rows per multi-row INSERT: a whole batch (1,000 metrics × 6 = 6,000 parameters) in one
/// statement, since each statement is a round trip; within both SQLite's (32,766) and
/// PostgreSQL's (65,535) bound-parameter limits.
const ROWS_PER_INSERT: usize = 1000;

/// Appends metric points and keeps `latest_metrics` current, in the caller's transaction.
async fn write_metrics(
    conn: &mut AnyConnection,
    run_id: &str,
    metrics: &[MetricInput],
) -> Result<()> {
    for chunk in metrics.chunks(ROWS_PER_INSERT) {
        let mut sql = String::from(
            "INSERT INTO metrics (run_id, key, step, timestamp, value, is_nan) VALUES ",
        );
        push_value_tuples(conn, &mut sql, chunk.len(), 6);
        sql.push_str(" ON CONFLICT DO NOTHING");
        let mut q = sqlx::query(AssertSqlSafe(sql.as_str()));
        for m in chunk {
            let (value, is_nan) = stored_value(m.value);
            q = q
                .bind(run_id)
                .bind(&m.key)
                .bind(m.step)
                .bind(m.timestamp)
                .bind(value)
                .bind(is_nan);
        }
        q.execute(&mut *conn).await?;
    }
    // One candidate per key: PostgreSQL refuses an upsert that touches a row twice.
    let mut latest: HashMap<&str, &MetricInput> = HashMap::new();
    for m in metrics {
        match latest.get(m.key.as_str()) {
            Some(cur) if !newer(m, cur) => {}
            _ => {
                latest.insert(&m.key, m);
            }
        }
    }
    // Sorted, so that concurrent writers lock rows in the same order (no deadlocks when
    // several servers share one PostgreSQL).
    let mut latest: Vec<&MetricInput> = latest.into_values().collect();
    latest.sort_by(|a, b| a.key.cmp(&b.key));
    for chunk in latest.chunks(ROWS_PER_INSERT) {
        let mut sql = String::from(
            "INSERT INTO latest_metrics (run_id, key, step, timestamp, value, is_nan) VALUES ",
        );
        push_value_tuples(conn, &mut sql, chunk.len(), 6);
        // MLflow's rule: the latest value is the one with the greatest (step, timestamp, value).
        sql.push_str(
            " ON CONFLICT (run_id, key) DO UPDATE SET step = excluded.step, \
             timestamp = excluded.timestamp, value = excluded.value, is_nan = excluded.is_nan \
             WHERE excluded.step > latest_metrics.step OR (excluded.step = latest_metrics.step \
             AND (excluded.timestamp > latest_metrics.timestamp OR (excluded.timestamp = \
             latest_metrics.timestamp AND excluded.value > latest_metrics.value)))",
        );
        let mut q = sqlx::query(AssertSqlSafe(sql.as_str()));
        for m in chunk {
            let (value, is_nan) = stored_value(m.value);
            q = q
                .bind(run_id)
                .bind(&m.key)
                .bind(m.step)
                .bind(m.timestamp)
                .bind(value)
                .bind(is_nan);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

fn newer(a: &MetricInput, b: &MetricInput) -> bool {
    (a.step, a.timestamp) > (b.step, b.timestamp)
        || ((a.step, a.timestamp) == (b.step, b.timestamp) && a.value > b.value)
}

/// NaN cannot be stored in SQLite (it becomes NULL), so it is stored as 0 with a flag.
pub(crate) fn stored_value(v: f64) -> (f64, i64) {
    if v.is_nan() { (0.0, 1) } else { (v, 0) }
}

pub(crate) fn loaded_value(v: f64, is_nan: i64) -> f64 {
    if is_nan != 0 { f64::NAN } else { v }
}

/// The `i`-th (1-based) placeholder of a statement whose parameters are bound in order.
///
/// SQLite gets anonymous `?` placeholders: it resolves a named one (`$7`) by walking its
/// list of names, so binding a 6,000-parameter `$N` statement costs time quadratic in the
/// parameter count (measured: half of a 1,000-metric batch). PostgreSQL needs `$N`.
fn push_placeholder(sqlite: bool, sql: &mut String, i: usize) {
    if sqlite {
        sql.push('?');
    } else {
        sql.push('$');
        sql.push_str(&i.to_string());
    }
}

fn is_sqlite(conn: &AnyConnection) -> bool {
    conn.backend_name() == "SQLite"
}

/// Appends `(…), (…)` for `rows` tuples of `cols` placeholders, bound in order.
pub(crate) fn push_value_tuples(conn: &AnyConnection, sql: &mut String, rows: usize, cols: usize) {
    let sqlite = is_sqlite(conn);
    let mut n = 1;
    for r in 0..rows {
        if r > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for c in 0..cols {
            if c > 0 {
                sql.push_str(", ");
            }
            push_placeholder(sqlite, sql, n);
            n += 1;
        }
        sql.push(')');
    }
}

/// `(…)` over `n` placeholders for an `IN` list that is the statement's only parameters.
pub(crate) fn in_params(conn: &AnyConnection, n: usize) -> String {
    let sqlite = is_sqlite(conn);
    let mut s = String::from("(");
    for i in 1..=n {
        if i > 1 {
            s.push_str(", ");
        }
        push_placeholder(sqlite, &mut s, i);
    }
    s.push(')');
    s
}

/// Writes params under MLflow's write-once rule: the same value again is a no-op, a
/// different value is refused and nothing of the request is written.
async fn write_params(conn: &mut AnyConnection, run_id: &str, params: &[KeyValue]) -> Result<()> {
    if params.is_empty() {
        return Ok(());
    }
    // Keys are unique here: `log_batch` refuses duplicates before writing.
    let wanted: HashMap<&str, &str> = params
        .iter()
        .map(|p| (p.key.as_str(), p.value.as_str()))
        .collect();
    let mut sql = String::from("SELECT key, value FROM params WHERE run_id = $1 AND key IN (");
    for i in 0..wanted.len() {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push('$');
        sql.push_str(&(i + 2).to_string());
    }
    sql.push(')');
    let keys: Vec<&str> = wanted.keys().copied().collect();
    let mut q = sqlx::query(AssertSqlSafe(sql.as_str())).bind(run_id);
    for k in &keys {
        q = q.bind(*k);
    }
    let existing = q.fetch_all(&mut *conn).await?;
    let mut conflicts = Vec::new();
    let mut present = std::collections::HashSet::new();
    for row in &existing {
        let key: String = row.try_get(0)?;
        let value: String = row.try_get(1)?;
        if wanted.get(key.as_str()) != Some(&value.as_str()) {
            conflicts.push(format!(
                "{{key: '{key}', old_value: '{value}', new_value: '{}'}}",
                wanted[key.as_str()]
            ));
        }
        present.insert(key);
    }
    if !conflicts.is_empty() {
        return Err(StoreError::invalid(format!(
            "Changing param values is not allowed. Params were already logged='[{}]' for run ID='{run_id}'.",
            conflicts.join(", ")
        )));
    }
    let mut fresh: Vec<(&str, &str)> = wanted
        .iter()
        .filter(|(k, _)| !present.contains(**k))
        .map(|(k, v)| (*k, *v))
        .collect();
    fresh.sort();
    for chunk in fresh.chunks(ROWS_PER_INSERT) {
        let mut sql = String::from("INSERT INTO params (run_id, key, value) VALUES ");
        push_value_tuples(conn, &mut sql, chunk.len(), 3);
        sql.push_str(" ON CONFLICT DO NOTHING");
        let mut q = sqlx::query(AssertSqlSafe(sql.as_str()));
        for (k, v) in chunk {
            q = q.bind(run_id).bind(*k).bind(*v);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Upserts tags; `mlflow.runName` also renames the run, as MLflow keeps them in step.
async fn write_tags(conn: &mut AnyConnection, run_id: &str, tags: &[KeyValue]) -> Result<()> {
    let mut last: HashMap<&str, &str> = HashMap::new();
    for t in tags {
        last.insert(&t.key, &t.value);
    }
    let mut rows: Vec<(&str, &str)> = last.into_iter().collect();
    rows.sort();
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let mut sql = String::from("INSERT INTO tags (run_id, key, value) VALUES ");
        push_value_tuples(conn, &mut sql, chunk.len(), 3);
        sql.push_str(" ON CONFLICT (run_id, key) DO UPDATE SET value = excluded.value");
        let mut q = sqlx::query(AssertSqlSafe(sql.as_str()));
        for (k, v) in chunk {
            q = q.bind(run_id).bind(*k).bind(*v);
        }
        q.execute(&mut *conn).await?;
    }
    // An empty name is ignored for the run itself, as MLflow's `update_run_info` does.
    if let Some((_, name)) = rows
        .iter()
        .find(|(k, v)| *k == RUN_NAME_TAG && !v.is_empty())
    {
        sqlx::query("UPDATE runs SET name = $1 WHERE run_id = $2")
            .bind(*name)
            .bind(run_id)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

impl Store {
    /// Creates a run in an active experiment and returns it.
    pub async fn create_run(&self, req: RunCreate) -> Result<Run> {
        let exp_id = parse_experiment_id(&req.experiment_id)?;
        for t in &req.tags {
            validate_tag(t)?;
        }
        let run_id = kiln_core::ids::new_run_id();
        let id = run_id.clone();
        self.db
            .write(move |conn| {
                Box::pin(async move {
                    let exp = load_experiment(conn, exp_id).await?;
                    if exp.lifecycle_stage != "active" {
                        return Err(StoreError::invalid(format!(
                            "The experiment {exp_id} must be in the 'active' state. Current state is {}.",
                            exp.lifecycle_stage
                        )));
                    }
                    let tag_name = req
                        .tags
                        .iter()
                        .find(|t| t.key == RUN_NAME_TAG)
                        .map(|t| t.value.clone());
                    if let (Some(a), Some(b)) = (&req.run_name, &tag_name)
                        && !a.is_empty()
                        && a != b
                    {
                        return Err(StoreError::invalid(format!(
                            "Both 'run_name' argument and 'mlflow.runName' tag are specified, but with \
                             different values (run_name='{a}', mlflow.runName='{b}')."
                        )));
                    }
                    let name = req
                        .run_name
                        .filter(|n| !n.is_empty())
                        .or(tag_name)
                        .unwrap_or_else(kiln_core::ids::random_run_name);
                    let artifact_uri = format!(
                        "{}/{id}/artifacts",
                        exp.artifact_location.trim_end_matches('/')
                    );
                    sqlx::query(
                        "INSERT INTO runs (run_id, experiment_id, name, user_id, status, start_time, \
                         end_time, lifecycle_stage, artifact_uri) \
                         VALUES ($1, $2, $3, $4, 'RUNNING', $5, NULL, 'active', $6)",
                    )
                    .bind(&id)
                    .bind(exp_id)
                    .bind(&name)
                    .bind(&req.user_id)
                    .bind(req.start_time.unwrap_or_else(now_ms))
                    .bind(&artifact_uri)
                    .execute(&mut *conn)
                    .await?;
                    let mut tags = req.tags;
                    tags.retain(|t| t.key != RUN_NAME_TAG);
                    tags.push(KeyValue {
                        key: RUN_NAME_TAG.into(),
                        value: name,
                    });
                    write_tags(conn, &id, &tags).await?;
                    Ok(())
                })
            })
            .await?;
        self.get_run(&run_id).await
    }

    pub async fn get_run(&self, run_id: &str) -> Result<Run> {
        validation::run_id(run_id)
            .map_err(|_| StoreError::not_found(format!("Run with id={run_id} not found")))?;
        let mut conn = self.db.pool.acquire().await?;
        let info = load_info(&mut conn, run_id).await?;
        let mut runs = crate::run_load::load_runs(&mut conn, self.db.backend, vec![info]).await?;
        Ok(runs.remove(0))
    }

    pub async fn update_run(&self, run_id: &str, update: RunUpdate) -> Result<RunInfo> {
        if let Some(s) = &update.status
            && !RUN_STATUSES.contains(&s.as_str())
        {
            return Err(StoreError::invalid(format!(
                "Invalid value {s:?} for parameter 'status' supplied: expected one of {RUN_STATUSES:?}"
            )));
        }
        let run_id = run_id.to_string();
        self.db
            .write(move |conn| {
                Box::pin(async move {
                    let mut info = active_info(conn, &run_id).await?;
                    if let Some(status) = update.status {
                        info.status = status;
                    }
                    if update.end_time.is_some() {
                        info.end_time = update.end_time;
                    }
                    sqlx::query("UPDATE runs SET status = $1, end_time = $2 WHERE run_id = $3")
                        .bind(&info.status)
                        .bind(info.end_time)
                        .bind(&run_id)
                        .execute(&mut *conn)
                        .await?;
                    if let Some(name) = update.run_name.filter(|n| !n.is_empty()) {
                        write_tags(
                            conn,
                            &run_id,
                            &[KeyValue {
                                key: RUN_NAME_TAG.into(),
                                value: name.clone(),
                            }],
                        )
                        .await?;
                        info.run_name = name;
                    }
                    Ok(info)
                })
            })
            .await
    }

    /// Soft-deletes (`deleted = true`) or restores a run.
    pub async fn set_run_lifecycle(&self, run_id: &str, deleted: bool) -> Result<()> {
        let run_id = run_id.to_string();
        self.db
            .write(move |conn| {
                Box::pin(async move {
                    load_info(conn, &run_id).await?;
                    let (stage, when) = if deleted {
                        ("deleted", Some(now_ms()))
                    } else {
                        ("active", None)
                    };
                    sqlx::query(
                        "UPDATE runs SET lifecycle_stage = $1, deleted_time = $2 WHERE run_id = $3",
                    )
                    .bind(stage)
                    .bind(when)
                    .bind(&run_id)
                    .execute(&mut *conn)
                    .await?;
                    Ok(())
                })
            })
            .await
    }

    pub async fn log_metric(&self, run_id: &str, metric: MetricInput) -> Result<()> {
        validate_metric(&metric)?;
        self.log_batch(
            run_id,
            BatchInput {
                metrics: vec![metric],
                ..Default::default()
            },
        )
        .await
    }

    pub async fn log_param(&self, run_id: &str, param: KeyValue) -> Result<()> {
        self.log_batch(
            run_id,
            BatchInput {
                params: vec![param],
                ..Default::default()
            },
        )
        .await
    }

    pub async fn set_tag(&self, run_id: &str, tag: KeyValue) -> Result<()> {
        self.log_batch(
            run_id,
            BatchInput {
                tags: vec![tag],
                ..Default::default()
            },
        )
        .await
    }

    pub async fn delete_tag(&self, run_id: &str, key: String) -> Result<()> {
        let run_id = run_id.to_string();
        self.db
            .write(move |conn| {
                Box::pin(async move {
                    active_info(conn, &run_id).await?;
                    let done = sqlx::query("DELETE FROM tags WHERE run_id = $1 AND key = $2")
                        .bind(&run_id)
                        .bind(&key)
                        .execute(&mut *conn)
                        .await?;
                    if done.rows_affected() == 0 {
                        return Err(StoreError::not_found(format!(
                            "No tag with name: {key} in run with id {run_id}"
                        )));
                    }
                    Ok(())
                })
            })
            .await
    }

    /// Logs metrics, params and tags in one transaction, enforcing MLflow's batch limits.
    /// Either all of the batch is written or none of it.
    pub async fn log_batch(&self, run_id: &str, batch: BatchInput) -> Result<()> {
        let n = batch.metrics.len() + batch.params.len() + batch.tags.len();
        if batch.metrics.len() > validation::MAX_METRICS_PER_BATCH {
            return Err(StoreError::invalid(format!(
                "A batch logging request can contain at most {} metrics. Got {} metrics. Please \
                 split up metrics across multiple requests and try again.",
                validation::MAX_METRICS_PER_BATCH,
                batch.metrics.len()
            )));
        }
        if batch.params.len() > validation::MAX_PARAMS_PER_BATCH {
            return Err(StoreError::invalid(format!(
                "A batch logging request can contain at most {} params. Got {} params. Please \
                 split up params across multiple requests and try again.",
                validation::MAX_PARAMS_PER_BATCH,
                batch.params.len()
            )));
        }
        if batch.tags.len() > validation::MAX_TAGS_PER_BATCH {
            return Err(StoreError::invalid(format!(
                "A batch logging request can contain at most {} tags. Got {} tags. Please split \
                 up tags across multiple requests and try again.",
                validation::MAX_TAGS_PER_BATCH,
                batch.tags.len()
            )));
        }
        if n > validation::MAX_ENTITIES_PER_BATCH {
            return Err(StoreError::invalid(format!(
                "A batch logging request can contain at most {} metrics, params, and tags in \
                 total. Got {n} entities.",
                validation::MAX_ENTITIES_PER_BATCH
            )));
        }
        for m in &batch.metrics {
            validate_metric(m)?;
        }
        for p in &batch.params {
            validate_param(p)?;
        }
        let mut seen = std::collections::HashSet::new();
        let mut dup: Vec<&str> = batch
            .params
            .iter()
            .filter(|p| !seen.insert(p.key.as_str()))
            .map(|p| p.key.as_str())
            .collect();
        if !dup.is_empty() {
            dup.sort();
            dup.dedup();
            return Err(StoreError::invalid(format!(
                "Duplicate parameter keys have been submitted: {dup:?}. Please ensure the \
                 request contains only one param value per param key."
            )));
        }
        for t in &batch.tags {
            validate_tag(t)?;
        }
        let run_id = run_id.to_string();
        self.db
            .write(move |conn| {
                Box::pin(async move {
                    active_info(conn, &run_id).await?;
                    write_params(conn, &run_id, &batch.params).await?;
                    write_metrics(conn, &run_id, &batch.metrics).await?;
                    write_tags(conn, &run_id, &batch.tags).await?;
                    let mut by_model: HashMap<&str, Vec<ModelMetricInput>> = HashMap::new();
                    for (model_id, m) in &batch.model_metrics {
                        by_model.entry(model_id).or_default().push(m.clone());
                    }
                    for (model_id, metrics) in by_model {
                        write_model_metrics(conn, model_id, &run_id, &metrics).await?;
                    }
                    Ok(())
                })
            })
            .await
    }

    /// Records dataset inputs (deduplicated by name and digest per experiment) and model
    /// inputs of a run.
    pub async fn log_inputs(
        &self,
        run_id: &str,
        datasets: Vec<DatasetInput>,
        models: Vec<ModelInput>,
    ) -> Result<()> {
        for d in &datasets {
            if d.dataset.name.is_empty() || d.dataset.digest.is_empty() {
                return Err(StoreError::invalid(
                    "Invalid dataset input: 'dataset.name' and 'dataset.digest' are required",
                ));
            }
        }
        let run_id = run_id.to_string();
        self.db
            .write(move |conn| {
                Box::pin(async move {
                    let info = active_info(conn, &run_id).await?;
                    let exp_id = parse_experiment_id(&info.experiment_id)?;
                    for input in datasets {
                        let d = &input.dataset;
                        sqlx::query(
                            "INSERT INTO datasets (experiment_id, name, digest, source_type, source, \
                             schema_json, profile) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
                        )
                        .bind(exp_id)
                        .bind(&d.name)
                        .bind(&d.digest)
                        .bind(&d.source_type)
                        .bind(&d.source)
                        .bind(d.schema.clone())
                        .bind(d.profile.clone())
                        .execute(&mut *conn)
                        .await?;
                        let context = input
                            .tags
                            .iter()
                            .find(|t| t.key == "mlflow.data.context")
                            .map(|t| t.value.clone())
                            .unwrap_or_default();
                        let tags_json = serde_json::to_string(&input.tags)
                            .map_err(|e| StoreError::invalid(format!("dataset input tags: {e}")))?;
                        sqlx::query(
                            "INSERT INTO run_inputs (run_id, experiment_id, dataset_name, dataset_digest, \
                             context, tags_json) VALUES ($1, $2, $3, $4, $5, $6) \
                             ON CONFLICT (run_id, dataset_name, dataset_digest) DO UPDATE \
                             SET context = excluded.context, tags_json = excluded.tags_json",
                        )
                        .bind(&run_id)
                        .bind(exp_id)
                        .bind(&d.name)
                        .bind(&d.digest)
                        .bind(&context)
                        .bind(&tags_json)
                        .execute(&mut *conn)
                        .await?;
                    }
                    for m in models {
                        sqlx::query(
                            "INSERT INTO run_model_inputs (run_id, model_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                        )
                        .bind(&run_id)
                        .bind(&m.model_id)
                        .execute(&mut *conn)
                        .await?;
                    }
                    Ok(())
                })
            })
            .await
    }

    /// Links logged models to a run as its outputs (`runs/outputs`).
    pub async fn log_outputs(&self, run_id: &str, models: Vec<ModelOutput>) -> Result<()> {
        let run_id = run_id.to_string();
        self.db
            .write(move |conn| {
                Box::pin(async move {
                    active_info(conn, &run_id).await?;
                    for m in models {
                        let exists: Option<String> = sqlx::query_scalar(
                            "SELECT model_id FROM logged_models WHERE model_id = $1",
                        )
                        .bind(&m.model_id)
                        .fetch_optional(&mut *conn)
                        .await?;
                        if exists.is_none() {
                            return Err(StoreError::not_found(format!(
                                "Logged model with ID '{}' not found.",
                                m.model_id
                            )));
                        }
                        sqlx::query(
                            "INSERT INTO run_outputs (run_id, model_id, step) VALUES ($1, $2, $3) \
                             ON CONFLICT (run_id, model_id) DO UPDATE SET step = excluded.step",
                        )
                        .bind(&run_id)
                        .bind(&m.model_id)
                        .bind(m.step)
                        .execute(&mut *conn)
                        .await?;
                    }
                    Ok(())
                })
            })
            .await
    }
}
