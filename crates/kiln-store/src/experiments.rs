//! Experiments: create, read, search, rename, delete/restore, tags.

use kiln_core::entities::{Experiment, KeyValue};
use kiln_core::search::{self, EntityType};
use sqlx::AssertSqlSafe;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::error::{Result, StoreError};
use crate::search_sql::Sql;
use crate::validation;
use crate::{Store, now_ms, page};

/// Which lifecycle stages a search returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ViewType {
    #[default]
    ActiveOnly,
    DeletedOnly,
    All,
}

impl ViewType {
    /// Parses MLflow's `ViewType` names (and the numeric enum values the proto allows).
    pub fn parse(s: &str) -> Result<ViewType> {
        match s.to_ascii_uppercase().as_str() {
            "" | "ACTIVE_ONLY" | "1" => Ok(ViewType::ActiveOnly),
            "DELETED_ONLY" | "2" => Ok(ViewType::DeletedOnly),
            "ALL" | "3" => Ok(ViewType::All),
            _ => Err(StoreError::invalid(format!(
                "Invalid value {s:?} for parameter 'view_type' supplied: expected ACTIVE_ONLY, DELETED_ONLY or ALL"
            ))),
        }
    }

    pub(crate) fn sql(self, column: &str) -> String {
        match self {
            ViewType::ActiveOnly => format!("{column} = 'active'"),
            ViewType::DeletedOnly => format!("{column} = 'deleted'"),
            ViewType::All => "1 = 1".to_string(),
        }
    }
}

const EXP_COLUMNS: &str =
    "experiment_id, name, artifact_location, lifecycle_stage, creation_time, last_update_time";

fn exp_from_row(row: &AnyRow) -> Result<Experiment> {
    Ok(Experiment {
        experiment_id: row.try_get::<i64, _>(0)?.to_string(),
        name: row.try_get(1)?,
        artifact_location: row.try_get(2)?,
        lifecycle_stage: row.try_get(3)?,
        creation_time: row.try_get(4)?,
        last_update_time: row.try_get(5)?,
        tags: Vec::new(),
    })
}

/// Parses an experiment id as MLflow does: a decimal integer in a string.
pub(crate) fn parse_experiment_id(id: &str) -> Result<i64> {
    id.trim().parse::<i64>().map_err(|_| {
        StoreError::invalid(format!(
            "Invalid value {id:?} for parameter 'experiment_id' supplied: expected an integer id"
        ))
    })
}

fn validate_name(name: &str) -> Result<()> {
    if name.trim().is_empty() {
        return Err(StoreError::invalid(
            "Invalid experiment name: '' — parameter 'name' must be a non-empty string",
        ));
    }
    validation::value_len(
        "Experiment name",
        "name",
        name,
        validation::MAX_EXPERIMENT_NAME_LENGTH,
    )
}

pub(crate) async fn load_experiment(conn: &mut AnyConnection, id: i64) -> Result<Experiment> {
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT {EXP_COLUMNS} FROM experiments WHERE experiment_id = $1"
    )))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| StoreError::not_found(format!("No Experiment with id={id} exists")))?;
    exp_from_row(&row)
}

impl Store {
    pub(crate) async fn ensure_default_experiment(&self) -> Result<()> {
        self.db
            .write(|conn| {
                Box::pin(async move {
                    let now = now_ms();
                    sqlx::query(
                        "INSERT INTO experiments (experiment_id, name, artifact_location, \
                         lifecycle_stage, creation_time, last_update_time) \
                         VALUES (0, 'Default', 'mlflow-artifacts:/0', 'active', $1, $1) \
                         ON CONFLICT DO NOTHING",
                    )
                    .bind(now)
                    .execute(&mut *conn)
                    .await?;
                    Ok(())
                })
            })
            .await
    }

    /// Creates an experiment and returns its id. `artifact_location` defaults to the
    /// server-proxied `mlflow-artifacts:/<id>`.
    pub async fn create_experiment(
        &self,
        name: String,
        artifact_location: Option<String>,
        tags: Vec<KeyValue>,
    ) -> Result<String> {
        validate_name(&name)?;
        for t in &tags {
            validation::tag_key("Experiment tag", &t.key)?;
            validation::value_len(
                "Experiment tag",
                &t.key,
                &t.value,
                validation::MAX_EXPERIMENT_TAG_VAL_LENGTH,
            )?;
        }
        self.db
            .write(move |conn| {
                Box::pin(async move {
                    let existing: Option<i64> =
                        sqlx::query_scalar("SELECT experiment_id FROM experiments WHERE name = $1")
                            .bind(&name)
                            .fetch_optional(&mut *conn)
                            .await?;
                    if existing.is_some() {
                        return Err(StoreError::AlreadyExists(format!(
                            "Experiment '{name}' already exists."
                        )));
                    }
                    let id: i64 = sqlx::query_scalar(
                        "UPDATE kiln_sequences SET value = value + 1 WHERE name = 'experiment' \
                         RETURNING value",
                    )
                    .fetch_one(&mut *conn)
                    .await?;
                    let location = artifact_location
                        .filter(|l| !l.is_empty())
                        .unwrap_or_else(|| format!("mlflow-artifacts:/{id}"));
                    let now = now_ms();
                    sqlx::query(
                        "INSERT INTO experiments (experiment_id, name, artifact_location, \
                         lifecycle_stage, creation_time, last_update_time) \
                         VALUES ($1, $2, $3, 'active', $4, $4)",
                    )
                    .bind(id)
                    .bind(&name)
                    .bind(&location)
                    .bind(now)
                    .execute(&mut *conn)
                    .await?;
                    for t in tags {
                        sqlx::query(
                            "INSERT INTO experiment_tags (experiment_id, key, value) VALUES ($1, $2, $3) \
                             ON CONFLICT (experiment_id, key) DO UPDATE SET value = excluded.value",
                        )
                        .bind(id)
                        .bind(&t.key)
                        .bind(&t.value)
                        .execute(&mut *conn)
                        .await?;
                    }
                    Ok(id.to_string())
                })
            })
            .await
    }

    pub async fn get_experiment(&self, id: &str) -> Result<Experiment> {
        let id = parse_experiment_id(id)?;
        let mut conn = self.db.pool.acquire().await?;
        let mut exp = load_experiment(&mut conn, id).await?;
        exp.tags = experiment_tags(&mut conn, &[id])
            .await?
            .remove(&id)
            .unwrap_or_default();
        Ok(exp)
    }

    /// Finds an experiment by name, whatever its lifecycle stage.
    pub async fn get_experiment_by_name(&self, name: &str) -> Result<Experiment> {
        let mut conn = self.db.pool.acquire().await?;
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {EXP_COLUMNS} FROM experiments WHERE name = $1"
        )))
        .bind(name)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| {
            StoreError::not_found(format!("Could not find experiment with name '{name}'"))
        })?;
        let mut exp = exp_from_row(&row)?;
        let id = parse_experiment_id(&exp.experiment_id)?;
        exp.tags = experiment_tags(&mut conn, &[id])
            .await?
            .remove(&id)
            .unwrap_or_default();
        Ok(exp)
    }

    /// Searches experiments with MLflow's filter grammar; returns a page and the next token.
    pub async fn search_experiments(
        &self,
        view: ViewType,
        filter: Option<&str>,
        order_by: &[String],
        max_results: Option<i64>,
        page_token: Option<&str>,
    ) -> Result<(Vec<Experiment>, Option<String>)> {
        let limit = page::max_results(max_results, 1000, 50_000)?;
        let offset = page::decode(page_token)?;
        let mut sql = Sql::new(self.db.backend);
        sql.push(&format!(
            "SELECT {EXP_COLUMNS} FROM experiments e WHERE {}",
            view.sql("e.lifecycle_stage")
        ));
        for c in search::parse_experiment_filter(filter.unwrap_or(""))? {
            sql.push(" AND ");
            match c.entity {
                EntityType::Tag => {
                    sql.push("EXISTS (SELECT 1 FROM experiment_tags t WHERE t.experiment_id = e.experiment_id AND t.key = ");
                    sql.bind_str(&c.key);
                    sql.push(" AND ");
                    sql.compare("t.value", c.op, &c.value)?;
                    sql.push(")");
                }
                EntityType::Attribute => {
                    let column = match c.key.as_str() {
                        "name" => "e.name",
                        "creation_time" => "e.creation_time",
                        "last_update_time" => "e.last_update_time",
                        other => {
                            return Err(StoreError::invalid(format!(
                                "Invalid attribute key '{other}' in experiment filter"
                            )));
                        }
                    };
                    sql.compare(column, c.op, &c.value)?;
                }
                _ => {
                    return Err(StoreError::invalid(format!(
                        "Invalid entity type for experiment search: '{}'",
                        c.key
                    )));
                }
            }
        }
        let mut orders = Vec::new();
        for clause in order_by.iter().filter(|o| !o.trim().is_empty()) {
            let ob = search::parse_experiment_order_by(clause)?;
            let column = match ob.key.as_str() {
                "name" => self.db.text_order("e.name"),
                "experiment_id" => "e.experiment_id".to_string(),
                "creation_time" => "e.creation_time".to_string(),
                "last_update_time" => "e.last_update_time".to_string(),
                other => {
                    return Err(StoreError::invalid(format!(
                        "Invalid order_by key '{other}' for experiments"
                    )));
                }
            };
            orders.push(format!(
                "{column} {}",
                if ob.ascending { "ASC" } else { "DESC" }
            ));
        }
        if orders.is_empty() {
            orders.push("e.creation_time DESC".into());
        }
        orders.push("e.experiment_id ASC".into());
        sql.push(&format!(" ORDER BY {} LIMIT ", orders.join(", ")));
        sql.bind_i64(limit + 1);
        sql.push(" OFFSET ");
        sql.bind_i64(offset);
        let mut conn = self.db.pool.acquire().await?;
        let rows = sql.query().fetch_all(&mut *conn).await?;
        let mut exps = rows.iter().map(exp_from_row).collect::<Result<Vec<_>>>()?;
        let next = if exps.len() as i64 > limit {
            exps.truncate(limit as usize);
            Some(page::encode(offset + limit))
        } else {
            None
        };
        let ids: Vec<i64> = exps
            .iter()
            .map(|e| parse_experiment_id(&e.experiment_id))
            .collect::<Result<_>>()?;
        let mut tags = experiment_tags(&mut conn, &ids).await?;
        for (exp, id) in exps.iter_mut().zip(&ids) {
            exp.tags = tags.remove(id).unwrap_or_default();
        }
        Ok((exps, next))
    }

    pub async fn rename_experiment(&self, id: &str, new_name: String) -> Result<()> {
        let id = parse_experiment_id(id)?;
        validate_name(&new_name)?;
        self.db
            .write(move |conn| {
                Box::pin(async move {
                    let exp = load_experiment(conn, id).await?;
                    if exp.lifecycle_stage != "active" {
                        return Err(StoreError::invalid(format!(
                            "Cannot rename a non-active experiment. Experiment {id} is {}.",
                            exp.lifecycle_stage
                        )));
                    }
                    let taken: Option<i64> = sqlx::query_scalar(
                        "SELECT experiment_id FROM experiments WHERE name = $1 AND experiment_id <> $2",
                    )
                    .bind(&new_name)
                    .bind(id)
                    .fetch_optional(&mut *conn)
                    .await?;
                    if taken.is_some() {
                        return Err(StoreError::AlreadyExists(format!(
                            "Experiment '{new_name}' already exists."
                        )));
                    }
                    sqlx::query(
                        "UPDATE experiments SET name = $1, last_update_time = $2 WHERE experiment_id = $3",
                    )
                    .bind(&new_name)
                    .bind(now_ms())
                    .bind(id)
                    .execute(&mut *conn)
                    .await?;
                    Ok(())
                })
            })
            .await
    }

    /// Marks an experiment and its runs deleted (restorable), as MLflow's SQL store does.
    pub async fn set_experiment_lifecycle(&self, id: &str, deleted: bool) -> Result<()> {
        let id = parse_experiment_id(id)?;
        if deleted && id == 0 {
            return Err(StoreError::invalid(
                "Cannot delete the default experiment '0'. This is an internally reserved experiment.",
            ));
        }
        self.db
            .write(move |conn| {
                Box::pin(async move {
                    let exp = load_experiment(conn, id).await?;
                    let (from, to) = if deleted {
                        ("active", "deleted")
                    } else {
                        ("deleted", "active")
                    };
                    // MLflow looks the experiment up in the stage it expects and reports
                    // any other as not existing.
                    if exp.lifecycle_stage != from {
                        return Err(StoreError::not_found(format!(
                            "No Experiment with id={id} exists"
                        )));
                    }
                    let now = now_ms();
                    sqlx::query(
                        "UPDATE experiments SET lifecycle_stage = $1, last_update_time = $2 WHERE experiment_id = $3",
                    )
                    .bind(to)
                    .bind(now)
                    .bind(id)
                    .execute(&mut *conn)
                    .await?;
                    let deleted_time = if deleted { Some(now) } else { None };
                    sqlx::query(
                        "UPDATE runs SET lifecycle_stage = $1, deleted_time = $2 \
                         WHERE experiment_id = $3 AND lifecycle_stage = $4",
                    )
                    .bind(to)
                    .bind(deleted_time)
                    .bind(id)
                    .bind(from)
                    .execute(&mut *conn)
                    .await?;
                    Ok(())
                })
            })
            .await
    }

    pub async fn set_experiment_tag(&self, id: &str, key: String, value: String) -> Result<()> {
        let id = parse_experiment_id(id)?;
        validation::tag_key("Experiment tag", &key)?;
        validation::value_len(
            "Experiment tag",
            &key,
            &value,
            validation::MAX_EXPERIMENT_TAG_VAL_LENGTH,
        )?;
        self.db
            .write(move |conn| {
                Box::pin(async move {
                    let exp = load_experiment(conn, id).await?;
                    if exp.lifecycle_stage != "active" {
                        return Err(StoreError::invalid(format!(
                            "The experiment {id} must be in the 'active' state. Current state is {}.",
                            exp.lifecycle_stage
                        )));
                    }
                    sqlx::query(
                        "INSERT INTO experiment_tags (experiment_id, key, value) VALUES ($1, $2, $3) \
                         ON CONFLICT (experiment_id, key) DO UPDATE SET value = excluded.value",
                    )
                    .bind(id)
                    .bind(&key)
                    .bind(&value)
                    .execute(&mut *conn)
                    .await?;
                    Ok(())
                })
            })
            .await
    }

    pub async fn delete_experiment_tag(&self, id: &str, key: String) -> Result<()> {
        let id = parse_experiment_id(id)?;
        self.db
            .write(move |conn| {
                Box::pin(async move {
                    load_experiment(conn, id).await?;
                    let done = sqlx::query(
                        "DELETE FROM experiment_tags WHERE experiment_id = $1 AND key = $2",
                    )
                    .bind(id)
                    .bind(&key)
                    .execute(&mut *conn)
                    .await?;
                    if done.rows_affected() == 0 {
                        return Err(StoreError::not_found(format!(
                            "No tag with name: {key} in experiment with id {id}"
                        )));
                    }
                    Ok(())
                })
            })
            .await
    }
}

/// Tags of several experiments in one query.
async fn experiment_tags(
    conn: &mut AnyConnection,
    ids: &[i64],
) -> Result<std::collections::HashMap<i64, Vec<KeyValue>>> {
    let mut out: std::collections::HashMap<i64, Vec<KeyValue>> = Default::default();
    for chunk in ids.chunks(500) {
        if chunk.is_empty() {
            continue;
        }
        let list = chunk
            .iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(",");
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT experiment_id, key, value FROM experiment_tags WHERE experiment_id IN ({list}) ORDER BY key"
        )))
        .fetch_all(&mut *conn)
        .await?;
        for row in rows {
            out.entry(row.try_get::<i64, _>(0)?)
                .or_default()
                .push(KeyValue {
                    key: row.try_get(1)?,
                    value: row.try_get(2)?,
                });
        }
    }
    Ok(out)
}
