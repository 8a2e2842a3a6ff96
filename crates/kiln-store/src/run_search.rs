//! `runs/search`: MLflow's filter and order_by grammar compiled to one SQL query over the
//! runs table, with EXISTS sub-queries against `latest_metrics`, `params`, `tags` and
//! `run_inputs`. History is never scanned.

use kiln_core::entities::Run;
use kiln_core::search::{self, CompOp, Comparison, EntityType, Value};

use crate::error::{Result, StoreError};
use crate::experiments::{ViewType, parse_experiment_id};
use crate::run_load::load_runs;
use crate::runs::{RUN_COLUMNS, info_from_row};
use crate::search_sql::Sql;
use crate::{Store, page};

/// Input of `runs/search`.
#[derive(Debug, Clone, Default)]
pub struct RunSearch {
    pub experiment_ids: Vec<String>,
    pub filter: Option<String>,
    pub view: ViewType,
    pub max_results: Option<i64>,
    pub order_by: Vec<String>,
    pub page_token: Option<String>,
}

fn attribute_column(key: &str) -> Result<&'static str> {
    Ok(match key {
        "run_id" | "run_uuid" => "r.run_id",
        "run_name" => "r.name",
        "status" => "r.status",
        "user_id" => "r.user_id",
        "artifact_uri" => "r.artifact_uri",
        "lifecycle_stage" => "r.lifecycle_stage",
        "start_time" | "created" | "Created" => "r.start_time",
        "end_time" => "r.end_time",
        other => {
            return Err(StoreError::invalid(format!(
                "Invalid attribute key '{other}' specified. Valid keys are 'run_id', 'run_name', \
                 'status', 'user_id', 'artifact_uri', 'lifecycle_stage', 'start_time', 'end_time'"
            )));
        }
    })
}

fn push_comparison(sql: &mut Sql, c: &Comparison) -> Result<()> {
    match c.entity {
        // Each filter is an `IN (sub-query)` over its table rather than a correlated EXISTS:
        // the database builds the matching set once through the (key, value) index instead
        // of probing once per run of the experiment.
        EntityType::Metric => {
            // NaN never satisfies a numeric comparison.
            sql.push("r.run_id IN (SELECT m.run_id FROM latest_metrics m WHERE m.key = ");
            sql.bind_str(&c.key);
            sql.push(" AND m.is_nan = 0 AND ");
            let v = match &c.value {
                Value::Number(n) => *n,
                other => {
                    return Err(StoreError::invalid(format!(
                        "Expected a numeric value for metrics.{} but got {other:?}",
                        c.key
                    )));
                }
            };
            sql.compare("m.value", c.op, &Value::Number(v))?;
            sql.push(")");
        }
        EntityType::Param | EntityType::Tag => {
            let table = if c.entity == EntityType::Param {
                "params"
            } else {
                "tags"
            };
            let presence = match c.op {
                CompOp::IsNull => Some("NOT IN"),
                CompOp::IsNotNull => Some("IN"),
                _ => None,
            };
            sql.push(&format!(
                "r.run_id {} (SELECT p.run_id FROM {table} p WHERE p.key = ",
                presence.unwrap_or("IN")
            ));
            sql.bind_str(&c.key);
            if presence.is_none() {
                sql.push(" AND ");
                sql.compare("p.value", c.op, &c.value)?;
            }
            sql.push(")");
        }
        EntityType::Attribute => {
            let column = attribute_column(&c.key)?;
            sql.compare(column, c.op, &c.value)?;
        }
        EntityType::Dataset => {
            let column = match c.key.as_str() {
                "name" => "ri.dataset_name",
                "digest" => "ri.dataset_digest",
                "context" => "ri.context",
                other => {
                    return Err(StoreError::invalid(format!(
                        "Invalid dataset key '{other}' specified. Valid keys are 'name', 'digest', 'context'"
                    )));
                }
            };
            sql.push("EXISTS (SELECT 1 FROM run_inputs ri WHERE ri.run_id = r.run_id AND ");
            sql.compare(column, c.op, &c.value)?;
            sql.push(")");
        }
    }
    Ok(())
}

impl Store {
    /// Searches runs across experiments. Returns one page and the token of the next.
    pub async fn search_runs(&self, req: RunSearch) -> Result<(Vec<Run>, Option<String>)> {
        let limit = page::max_results(req.max_results, 1000, 50_000)?;
        let offset = page::decode(req.page_token.as_deref())?;
        let filters = search::parse_run_filter(req.filter.as_deref().unwrap_or(""))?;
        let orders = req
            .order_by
            .iter()
            .filter(|o| !o.trim().is_empty())
            .map(|o| search::parse_run_order_by(o))
            .collect::<Result<Vec<_>, _>>()?;
        let exp_ids = req
            .experiment_ids
            .iter()
            .map(|id| parse_experiment_id(id))
            .collect::<Result<Vec<_>>>()?;
        if exp_ids.is_empty() {
            return Ok((Vec::new(), None));
        }

        let mut sql = Sql::new(self.db.backend);
        let cols = RUN_COLUMNS
            .split(", ")
            .map(|c| format!("r.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        sql.push(&format!("SELECT {cols} FROM runs r"));
        // One LEFT JOIN per order_by key, so ordering reads one row per run.
        let mut order_sql = Vec::new();
        for (i, ob) in orders.iter().enumerate() {
            let dir = if ob.ascending { "ASC" } else { "DESC" };
            match ob.entity {
                EntityType::Metric => {
                    sql.push(&format!(
                        " LEFT JOIN latest_metrics o{i} ON o{i}.run_id = r.run_id AND o{i}.key = "
                    ));
                    sql.bind_str(&ob.key);
                    // MLflow puts NaN and missing values last whatever the direction.
                    order_sql.push(format!(
                        "CASE WHEN o{i}.run_id IS NULL THEN 2 WHEN o{i}.is_nan = 1 THEN 1 ELSE 0 END ASC, o{i}.value {dir}"
                    ));
                }
                EntityType::Param | EntityType::Tag => {
                    let table = if ob.entity == EntityType::Param {
                        "params"
                    } else {
                        "tags"
                    };
                    sql.push(&format!(
                        " LEFT JOIN {table} o{i} ON o{i}.run_id = r.run_id AND o{i}.key = "
                    ));
                    sql.bind_str(&ob.key);
                    order_sql.push(format!(
                        "CASE WHEN o{i}.value IS NULL THEN 1 ELSE 0 END ASC, {} {dir}",
                        self.db.text_order(&format!("o{i}.value"))
                    ));
                }
                EntityType::Attribute => {
                    let column = attribute_column(&ob.key)?;
                    order_sql.push(format!(
                        "CASE WHEN {column} IS NULL THEN 1 ELSE 0 END ASC, {} {dir}",
                        if matches!(column, "r.start_time" | "r.end_time") {
                            column.to_string()
                        } else {
                            self.db.text_order(column)
                        }
                    ));
                }
                EntityType::Dataset => {
                    return Err(StoreError::invalid(format!(
                        "Ordering by dataset attributes is not supported: '{}'",
                        ob.key
                    )));
                }
            }
        }
        sql.push(" WHERE r.experiment_id IN (");
        for (i, id) in exp_ids.iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.bind_i64(*id);
        }
        sql.push(") AND ");
        sql.push(&req.view.sql("r.lifecycle_stage"));
        for c in &filters {
            sql.push(" AND ");
            if c.entity == EntityType::Metric && matches!(c.op, CompOp::Like | CompOp::ILike) {
                return Err(StoreError::invalid(format!(
                    "Invalid comparator for metrics.{}: LIKE is for strings",
                    c.key
                )));
            }
            push_comparison(&mut sql, c)?;
        }
        if !orders
            .iter()
            .any(|o| o.entity == EntityType::Attribute && o.key == "start_time")
        {
            order_sql.push("r.start_time DESC".into());
        }
        order_sql.push("r.run_id ASC".into());
        sql.push(&format!(" ORDER BY {} LIMIT ", order_sql.join(", ")));
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
        let runs = load_runs(&mut conn, self.db.backend, infos).await?;
        Ok((runs, next))
    }
}
