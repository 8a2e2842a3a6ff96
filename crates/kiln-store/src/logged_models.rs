//! MLflow 3.x logged models (`/logged-models*`): create, get, finalize, delete, tags,
//! params, model metrics and search.
//!
//! A logged model lives in an experiment, optionally comes from a run (`source_run_id`), and
//! keeps its files at `<experiment artifact_location>/models/<model_id>/artifacts`. It is
//! created `LOGGED_MODEL_PENDING` and finalized `LOGGED_MODEL_READY` (or
//! `LOGGED_MODEL_UPLOAD_FAILED`) once the client uploaded its files. Deleting marks it
//! deleted; deleted models are invisible to get, search and every write.
//!
//! Metrics logged by a run with a `model_id` are recorded on the model as well
//! ([`Store::log_model_metrics`], or [`write_model_metrics`] inside another write).
//!
//! Search has its own small filter grammar (the shared `kiln_core::search` contexts do not
//! know the logged-model attributes): comparisons `<identifier> <op> <value>` joined by
//! `AND`; identifiers are the attributes `name`, `model_id`, `model_type`, `status`,
//! `source_run_id`, `creation_timestamp` (`creation_time`), `last_updated_timestamp`, or
//! `metrics.<key>` (numeric), `params.<key>`, `tags.<key>` (strings), with keys in
//! backticks or double quotes when they hold other characters; operators `= != < <= > >=`
//! for numbers and `= != LIKE ILIKE IN NOT IN` for strings; strings in single or double
//! quotes, lists as `('a', 'b')`.

use std::collections::HashMap;

use kiln_core::entities::{KeyValue, LoggedModel, LoggedModelData, LoggedModelInfo, Metric};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AssertSqlSafe, Row};

use crate::error::{Result, StoreError};
use crate::experiments::{load_experiment, parse_experiment_id};
use crate::logged_model_search::{OrderField, order_field, parse_filter, push_condition};
use crate::runs::{in_params, load_info, loaded_value, push_value_tuples, stored_value};
use crate::search_sql::Sql;
use crate::validation::{self, MAX_PARAM_VAL_LENGTH, MAX_TAG_VAL_LENGTH};
use crate::{Store, now_ms, page};

/// Input of `POST logged-models`.
#[derive(Debug, Clone, Default)]
pub struct LoggedModelCreate {
    pub experiment_id: String,
    /// A random name is chosen when empty or absent.
    pub name: Option<String>,
    pub model_type: Option<String>,
    pub source_run_id: Option<String>,
    pub params: Vec<KeyValue>,
    pub tags: Vec<KeyValue>,
}

/// One metric point recorded on a logged model (a run metric that carried `model_id`).
#[derive(Debug, Clone, PartialEq)]
pub struct ModelMetricInput {
    pub key: String,
    pub value: f64,
    pub timestamp: i64,
    pub step: i64,
    pub dataset_name: Option<String>,
    pub dataset_digest: Option<String>,
}

/// A dataset that restricts which model metrics a search's metric filters consider.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoggedModelDataset {
    pub dataset_name: String,
    pub dataset_digest: Option<String>,
}

/// One `order_by` entry of `logged-models/search`.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedModelOrder {
    /// An attribute (`creation_timestamp`, `last_updated_timestamp`, `name`, `model_id`, ...)
    /// or `metrics.<key>`.
    pub field_name: String,
    pub ascending: bool,
    pub dataset_name: Option<String>,
    pub dataset_digest: Option<String>,
}

/// Input of `POST logged-models/search`.
#[derive(Debug, Clone, Default)]
pub struct LoggedModelSearch {
    pub experiment_ids: Vec<String>,
    pub filter: Option<String>,
    pub datasets: Vec<LoggedModelDataset>,
    pub max_results: Option<i64>,
    pub order_by: Vec<LoggedModelOrder>,
    pub page_token: Option<String>,
}

pub const STATUS_PENDING: &str = "LOGGED_MODEL_PENDING";
pub const STATUS_READY: &str = "LOGGED_MODEL_READY";
pub const STATUS_UPLOAD_FAILED: &str = "LOGGED_MODEL_UPLOAD_FAILED";

/// Page size of a search when the client names none, and the most it may ask for.
const SEARCH_DEFAULT_MAX_RESULTS: i64 = 100;
const SEARCH_MAX_RESULTS: i64 = 50_000;
/// Rows per multi-row INSERT, as in `runs.rs`.
const ROWS_PER_INSERT: usize = 100;

/// Parses the status a finalize request may set: the enum name (with or without the
/// `LOGGED_MODEL_` prefix, any case) or its number (2 = READY, 3 = UPLOAD_FAILED).
pub fn parse_finalize_status(s: &str) -> Result<&'static str> {
    let upper = s.trim().to_ascii_uppercase();
    match upper.strip_prefix("LOGGED_MODEL_").unwrap_or(&upper) {
        "READY" | "2" => Ok(STATUS_READY),
        "UPLOAD_FAILED" | "3" => Ok(STATUS_UPLOAD_FAILED),
        _ => Err(StoreError::invalid(format!(
            "Invalid value {s:?} for parameter 'status' supplied: expected \
             LOGGED_MODEL_READY or LOGGED_MODEL_UPLOAD_FAILED"
        ))),
    }
}

const MODEL_COLUMNS: &str = "model_id, experiment_id, name, artifact_location, creation_time, \
     last_update_time, status, status_message, model_type, source_run_id";

fn info_from_row(row: &AnyRow) -> Result<LoggedModelInfo> {
    Ok(LoggedModelInfo {
        model_id: row.try_get(0)?,
        experiment_id: row.try_get::<i64, _>(1)?.to_string(),
        name: row.try_get(2)?,
        artifact_uri: row.try_get(3)?,
        creation_timestamp_ms: row.try_get(4)?,
        last_updated_timestamp_ms: row.try_get(5)?,
        status: row.try_get(6)?,
        status_message: row.try_get(7)?,
        model_type: row.try_get(8)?,
        source_run_id: row.try_get(9)?,
        tags: Vec::new(),
    })
}

fn not_found(model_id: &str) -> StoreError {
    StoreError::not_found(format!("Logged model with ID '{model_id}' not found."))
}

/// Reads a logged model's info unless it is missing or deleted.
async fn load_active_info(conn: &mut AnyConnection, model_id: &str) -> Result<LoggedModelInfo> {
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT {MODEL_COLUMNS} FROM logged_models WHERE model_id = $1 AND lifecycle_stage = 'active'"
    )))
    .bind(model_id)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| not_found(model_id))?;
    info_from_row(&row)
}

fn validate_param(p: &KeyValue) -> Result<()> {
    validation::key("Param", &p.key)?;
    validation::value_len("Param", &p.key, &p.value, MAX_PARAM_VAL_LENGTH)
}

fn validate_tag(t: &KeyValue) -> Result<()> {
    validation::key("Tag", &t.key)?;
    validation::value_len("Tag", &t.key, &t.value, MAX_TAG_VAL_LENGTH)
}

/// The last value of each key: PostgreSQL refuses an upsert that touches one row twice.
fn last_per_key(items: &[KeyValue]) -> Vec<(&str, &str)> {
    let mut last: HashMap<&str, &str> = HashMap::new();
    for kv in items {
        last.insert(&kv.key, &kv.value);
    }
    let mut rows: Vec<(&str, &str)> = last.into_iter().collect();
    rows.sort_unstable();
    rows
}

/// Upserts key/value rows into `logged_model_params` or `logged_model_tags`.
async fn upsert_pairs(
    conn: &mut AnyConnection,
    table: &'static str,
    model_id: &str,
    items: &[KeyValue],
) -> Result<()> {
    let rows = last_per_key(items);
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let mut sql = format!("INSERT INTO {table} (model_id, key, value) VALUES ");
        push_value_tuples(conn, &mut sql, chunk.len(), 3);
        sql.push_str(" ON CONFLICT (model_id, key) DO UPDATE SET value = excluded.value");
        let mut q = sqlx::query(AssertSqlSafe(sql.as_str()));
        for (k, v) in chunk {
            q = q.bind(model_id).bind(*k).bind(*v);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Records metric points on a logged model inside the caller's write transaction (for use
/// from the run-metric path). The model must exist and not be deleted. A point logged
/// twice (a retried request) is stored once.
pub(crate) async fn write_model_metrics(
    conn: &mut AnyConnection,
    model_id: &str,
    run_id: &str,
    metrics: &[ModelMetricInput],
) -> Result<()> {
    if metrics.is_empty() {
        return Ok(());
    }
    load_active_info(conn, model_id).await?;
    for chunk in metrics.chunks(ROWS_PER_INSERT) {
        let mut sql = String::from(
            "INSERT INTO logged_model_metrics (model_id, key, value, is_nan, timestamp, step, \
             run_id, dataset_name, dataset_digest) VALUES ",
        );
        push_value_tuples(conn, &mut sql, chunk.len(), 9);
        sql.push_str(" ON CONFLICT DO NOTHING");
        let mut q = sqlx::query(AssertSqlSafe(sql.as_str()));
        for m in chunk {
            let (value, is_nan) = stored_value(m.value);
            q = q
                .bind(model_id)
                .bind(&m.key)
                .bind(value)
                .bind(is_nan)
                .bind(m.timestamp)
                .bind(m.step)
                .bind(run_id)
                .bind(m.dataset_name.clone().unwrap_or_default())
                .bind(m.dataset_digest.clone().unwrap_or_default());
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Fills in tags, params and metrics of the given infos, keeping their order.
async fn load_models(
    conn: &mut AnyConnection,
    infos: Vec<LoggedModelInfo>,
) -> Result<Vec<LoggedModel>> {
    let mut models: Vec<LoggedModel> = infos
        .into_iter()
        .map(|info| LoggedModel {
            info,
            data: LoggedModelData::default(),
        })
        .collect();
    let index: HashMap<String, usize> = models
        .iter()
        .enumerate()
        .map(|(i, m)| (m.info.model_id.clone(), i))
        .collect();
    let ids: Vec<String> = models.iter().map(|m| m.info.model_id.clone()).collect();
    for chunk in ids.chunks(500) {
        let list = in_params(conn, chunk.len());
        macro_rules! fetch {
            ($sql:expr) => {{
                let sql = $sql;
                let mut q = sqlx::query(AssertSqlSafe(sql.as_str()));
                for id in chunk {
                    q = q.bind(id.as_str());
                }
                q.fetch_all(&mut *conn).await?
            }};
        }
        for row in fetch!(format!(
            "SELECT model_id, key, value FROM logged_model_tags WHERE model_id IN {list} ORDER BY key"
        )) {
            let id: String = row.try_get(0)?;
            models[index[&id]].info.tags.push(KeyValue {
                key: row.try_get(1)?,
                value: row.try_get(2)?,
            });
        }
        for row in fetch!(format!(
            "SELECT model_id, key, value FROM logged_model_params WHERE model_id IN {list} ORDER BY key"
        )) {
            let id: String = row.try_get(0)?;
            models[index[&id]].data.params.push(KeyValue {
                key: row.try_get(1)?,
                value: row.try_get(2)?,
            });
        }
        for row in fetch!(format!(
            "SELECT model_id, key, value, is_nan, timestamp, step, run_id, dataset_name, dataset_digest \
             FROM logged_model_metrics WHERE model_id IN {list} \
             ORDER BY key, dataset_name, dataset_digest, step, timestamp, run_id"
        )) {
            let id: String = row.try_get(0)?;
            let dataset_name: String = row.try_get(7)?;
            let dataset_digest: String = row.try_get(8)?;
            models[index[&id]].data.metrics.push(Metric {
                key: row.try_get(1)?,
                value: loaded_value(row.try_get(2)?, row.try_get(3)?),
                timestamp: row.try_get(4)?,
                step: row.try_get(5)?,
                run_id: Some(row.try_get(6)?),
                dataset_name: Some(dataset_name).filter(|s| !s.is_empty()),
                dataset_digest: Some(dataset_digest).filter(|s| !s.is_empty()),
                model_id: Some(id),
            });
        }
    }
    Ok(models)
}

impl Store {
    /// Creates a logged model (`LOGGED_MODEL_PENDING`) in an active experiment.
    pub async fn create_logged_model(&self, req: LoggedModelCreate) -> Result<LoggedModel> {
        let exp_id = parse_experiment_id(&req.experiment_id)?;
        for p in &req.params {
            validate_param(p)?;
        }
        for t in &req.tags {
            validate_tag(t)?;
        }
        let model_id = kiln_core::ids::new_logged_model_id();
        let id = model_id.clone();
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
                    let source_run_id = req.source_run_id.filter(|r| !r.is_empty());
                    if let Some(run_id) = &source_run_id {
                        load_info(conn, run_id).await?;
                    }
                    let name = req
                        .name
                        .filter(|n| !n.is_empty())
                        .unwrap_or_else(kiln_core::ids::random_run_name);
                    let artifact_uri = format!(
                        "{}/models/{id}/artifacts",
                        exp.artifact_location.trim_end_matches('/')
                    );
                    let now = now_ms();
                    sqlx::query(
                        "INSERT INTO logged_models (model_id, experiment_id, name, artifact_location, \
                         creation_time, last_update_time, status, status_message, model_type, \
                         source_run_id, lifecycle_stage) \
                         VALUES ($1, $2, $3, $4, $5, $5, $6, NULL, $7, $8, 'active')",
                    )
                    .bind(&id)
                    .bind(exp_id)
                    .bind(&name)
                    .bind(&artifact_uri)
                    .bind(now)
                    .bind(STATUS_PENDING)
                    .bind(req.model_type.filter(|t| !t.is_empty()))
                    .bind(source_run_id)
                    .execute(&mut *conn)
                    .await?;
                    upsert_pairs(conn, "logged_model_params", &id, &req.params).await?;
                    upsert_pairs(conn, "logged_model_tags", &id, &req.tags).await?;
                    Ok(())
                })
            })
            .await?;
        self.get_logged_model(&model_id).await
    }

    /// A logged model with its tags, params and metrics; deleted models are not found.
    pub async fn get_logged_model(&self, model_id: &str) -> Result<LoggedModel> {
        let mut conn = self.db.pool.acquire().await?;
        let info = load_active_info(&mut conn, model_id).await?;
        let mut models = load_models(&mut conn, vec![info]).await?;
        Ok(models.remove(0))
    }

    /// Sets the final status of an upload (see [`parse_finalize_status`]) and returns the
    /// model.
    pub async fn finalize_logged_model(&self, model_id: &str, status: &str) -> Result<LoggedModel> {
        let status = parse_finalize_status(status)?;
        let id = model_id.to_string();
        self.db
            .write(move |conn| {
                Box::pin(async move {
                    load_active_info(conn, &id).await?;
                    sqlx::query(
                        "UPDATE logged_models SET status = $1, last_update_time = $2 WHERE model_id = $3",
                    )
                    .bind(status)
                    .bind(now_ms())
                    .bind(&id)
                    .execute(&mut *conn)
                    .await?;
                    Ok(())
                })
            })
            .await?;
        self.get_logged_model(model_id).await
    }

    /// Marks a logged model deleted; from then on it is not found.
    pub async fn delete_logged_model(&self, model_id: &str) -> Result<()> {
        let id = model_id.to_string();
        self.db
            .write(move |conn| {
                Box::pin(async move {
                    load_active_info(conn, &id).await?;
                    sqlx::query(
                        "UPDATE logged_models SET lifecycle_stage = 'deleted', last_update_time = $1 \
                         WHERE model_id = $2",
                    )
                    .bind(now_ms())
                    .bind(&id)
                    .execute(&mut *conn)
                    .await?;
                    Ok(())
                })
            })
            .await
    }

    /// Sets (upserts) tags on a logged model.
    pub async fn set_logged_model_tags(&self, model_id: &str, tags: Vec<KeyValue>) -> Result<()> {
        for t in &tags {
            validate_tag(t)?;
        }
        let id = model_id.to_string();
        self.db
            .write(move |conn| {
                Box::pin(async move {
                    load_active_info(conn, &id).await?;
                    upsert_pairs(conn, "logged_model_tags", &id, &tags).await
                })
            })
            .await
    }

    /// Deletes one tag of a logged model; a missing tag is RESOURCE_DOES_NOT_EXIST.
    pub async fn delete_logged_model_tag(&self, model_id: &str, key: String) -> Result<()> {
        let id = model_id.to_string();
        self.db
            .write(move |conn| {
                Box::pin(async move {
                    load_active_info(conn, &id).await?;
                    let done = sqlx::query(
                        "DELETE FROM logged_model_tags WHERE model_id = $1 AND key = $2",
                    )
                    .bind(&id)
                    .bind(&key)
                    .execute(&mut *conn)
                    .await?;
                    if done.rows_affected() == 0 {
                        return Err(StoreError::not_found(format!(
                            "No tag with key '{key}' found for logged model '{id}'."
                        )));
                    }
                    Ok(())
                })
            })
            .await
    }

    /// Logs (upserts) params on a logged model.
    pub async fn log_logged_model_params(
        &self,
        model_id: &str,
        params: Vec<KeyValue>,
    ) -> Result<()> {
        if params.len() > validation::MAX_PARAMS_PER_BATCH {
            return Err(StoreError::invalid(format!(
                "A request can contain at most {} params. Got {} params.",
                validation::MAX_PARAMS_PER_BATCH,
                params.len()
            )));
        }
        for p in &params {
            validate_param(p)?;
        }
        let id = model_id.to_string();
        self.db
            .write(move |conn| {
                Box::pin(async move {
                    load_active_info(conn, &id).await?;
                    upsert_pairs(conn, "logged_model_params", &id, &params).await
                })
            })
            .await
    }

    /// Records metric points of run `run_id` on logged model `model_id` in their own write.
    /// (Inside another write, call [`write_model_metrics`] instead.)
    pub async fn log_model_metrics(
        &self,
        model_id: &str,
        run_id: &str,
        metrics: Vec<ModelMetricInput>,
    ) -> Result<()> {
        for m in &metrics {
            validation::key("Metric", &m.key)?;
        }
        let id = model_id.to_string();
        let run_id = run_id.to_string();
        self.db
            .write(move |conn| {
                Box::pin(async move { write_model_metrics(conn, &id, &run_id, &metrics).await })
            })
            .await
    }

    /// Searches the active logged models of some experiments. Returns a page and the token
    /// of the next.
    pub async fn search_logged_models(
        &self,
        req: LoggedModelSearch,
    ) -> Result<(Vec<LoggedModel>, Option<String>)> {
        let limit = page::max_results(
            req.max_results,
            SEARCH_DEFAULT_MAX_RESULTS,
            SEARCH_MAX_RESULTS,
        )?;
        let offset = page::decode(req.page_token.as_deref())?;
        let conds = parse_filter(req.filter.as_deref().unwrap_or(""))?;
        let exp_ids = req
            .experiment_ids
            .iter()
            .map(|id| parse_experiment_id(id))
            .collect::<Result<Vec<_>>>()?;
        for d in &req.datasets {
            if d.dataset_name.is_empty() {
                return Err(StoreError::invalid(
                    "Invalid dataset in 'datasets': 'dataset_name' is required",
                ));
            }
        }
        if exp_ids.is_empty() {
            return Ok((Vec::new(), None));
        }

        let mut sql = Sql::new(self.db.backend);
        let cols = MODEL_COLUMNS
            .split(", ")
            .map(|c| format!("lm.{}", c.trim()))
            .collect::<Vec<_>>()
            .join(", ");
        sql.push(&format!(
            "SELECT {cols} FROM logged_models lm WHERE lm.experiment_id IN ("
        ));
        for (i, id) in exp_ids.iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.bind_i64(*id);
        }
        sql.push(") AND lm.lifecycle_stage = 'active'");
        for c in &conds {
            sql.push(" AND ");
            push_condition(&mut sql, c, &req.datasets)?;
        }
        sql.push(" ORDER BY ");
        let mut by_creation = false;
        for ob in &req.order_by {
            let dir = if ob.ascending { "ASC" } else { "DESC" };
            match order_field(&ob.field_name)? {
                OrderField::Column(column) => {
                    by_creation |= column == "lm.creation_time";
                    sql.push(&format!("{column} {dir} NULLS LAST, "));
                }
                OrderField::Metric(key) => {
                    // The latest value of the metric (NaN counts as missing); models without
                    // it sort last whatever the direction.
                    sql.push(
                        "(SELECT CASE WHEN m.is_nan = 1 THEN NULL ELSE m.value END \
                         FROM logged_model_metrics m WHERE m.model_id = lm.model_id AND m.key = ",
                    );
                    sql.bind_str(&key);
                    if let Some(name) = ob.dataset_name.as_deref().filter(|n| !n.is_empty()) {
                        sql.push(" AND m.dataset_name = ");
                        sql.bind_str(name);
                        if let Some(digest) = ob.dataset_digest.as_deref().filter(|d| !d.is_empty())
                        {
                            sql.push(" AND m.dataset_digest = ");
                            sql.bind_str(digest);
                        }
                    }
                    sql.push(&format!(
                        " ORDER BY m.timestamp DESC, m.step DESC LIMIT 1) {dir} NULLS LAST, "
                    ));
                }
            }
        }
        if !by_creation {
            sql.push("lm.creation_time DESC, ");
        }
        sql.push("lm.model_id ASC LIMIT ");
        sql.bind_i64(limit + 1);
        sql.push(" OFFSET ");
        sql.bind_i64(offset);

        let mut conn = self.db.pool.acquire().await?;
        let rows = sql.query().fetch_all(&mut *conn).await?;
        let mut infos = rows.iter().map(info_from_row).collect::<Result<Vec<_>>>()?;
        let next = if infos.len() as i64 > limit {
            infos.truncate(limit as usize);
            Some(page::encode(offset + limit))
        } else {
            None
        };
        let models = load_models(&mut conn, infos).await?;
        Ok((models, next))
    }
}
