//! The model registry: registered models and their tags, plus the row mapping and bulk
//! loaders shared with `registry_versions.rs` (model versions, aliases, stages) and
//! `registry_search.rs`.

use std::collections::HashMap;

use kiln_core::entities::{KeyValue, ModelVersion, RegisteredModel, RegisteredModelAlias};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AssertSqlSafe, Row};

use crate::error::{Result, StoreError};
use crate::runs::in_params;
use crate::validation::{self, MAX_REGISTRY_TAG_VAL_LENGTH};
use crate::{Store, now_ms};

/// The stages a version can be in, with MLflow's capitalisation.
pub const STAGES: [&str; 4] = ["None", "Staging", "Production", "Archived"];
/// The stage of a deleted version; never shown to clients.
pub(crate) const DELETED_STAGE: &str = "Deleted_Internal";

/// Input of `model-versions/create`.
#[derive(Debug, Clone, Default)]
pub struct CreateModelVersion {
    pub name: String,
    pub source: String,
    pub run_id: Option<String>,
    pub tags: Vec<KeyValue>,
    pub run_link: Option<String>,
    pub description: Option<String>,
    pub model_id: Option<String>,
}

// ---------------------------------------------------------------------------------------
// Pure helpers.

/// MLflow's `get_canonical_stage`: case-insensitive, normalised to `Staging`, ….
pub fn canonical_stage(stage: &str) -> Result<&'static str> {
    STAGES
        .iter()
        .find(|s| s.eq_ignore_ascii_case(stage.trim()))
        .copied()
        .ok_or_else(|| {
            StoreError::invalid(format!(
                "Invalid Model Version stage: {stage}. Value must be one of {}.",
                STAGES.join(", ")
            ))
        })
}

pub(crate) fn validate_model_name(name: &str, field: &str) -> Result<()> {
    if name.trim().is_empty() {
        return Err(StoreError::invalid(format!(
            "Missing value for required parameter '{field}'."
        )));
    }
    Ok(())
}

pub(crate) fn validate_tag(kind: &str, key: &str, value: &str) -> Result<()> {
    validation::tag_key(kind, key)?;
    validation::value_len(kind, key, value, MAX_REGISTRY_TAG_VAL_LENGTH)
}

pub(crate) fn rm_not_found(name: &str) -> StoreError {
    StoreError::not_found(format!("Registered Model with name={name} not found"))
}

// ---------------------------------------------------------------------------------------
// Rows.

pub(crate) const RM_COLUMNS: &[&str] =
    &["name", "creation_time", "last_update_time", "description"];
pub(crate) const MV_COLUMNS: &[&str] = &[
    "name",
    "version",
    "creation_time",
    "last_update_time",
    "description",
    "user_id",
    "current_stage",
    "source",
    "run_id",
    "run_link",
    "status",
    "status_message",
    "model_id",
];

/// `a.x, a.y, …` for a column list and table alias.
pub(crate) fn columns(cols: &[&str], alias: &str) -> String {
    cols.iter()
        .map(|c| format!("{alias}.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) fn rm_from_row(row: &AnyRow) -> Result<RegisteredModel> {
    Ok(RegisteredModel {
        name: row.try_get(0)?,
        creation_timestamp: row.try_get(1)?,
        last_updated_timestamp: row.try_get(2)?,
        description: row.try_get(3)?,
        latest_versions: Vec::new(),
        tags: Vec::new(),
        aliases: Vec::new(),
    })
}

pub(crate) fn mv_from_row(row: &AnyRow) -> Result<ModelVersion> {
    Ok(ModelVersion {
        name: row.try_get(0)?,
        version: row.try_get::<i64, _>(1)?.to_string(),
        creation_timestamp: row.try_get(2)?,
        last_updated_timestamp: row.try_get(3)?,
        description: row.try_get(4)?,
        user_id: row.try_get(5)?,
        current_stage: row.try_get(6)?,
        source: row.try_get(7)?,
        run_id: row.try_get(8)?,
        run_link: row.try_get(9)?,
        status: row.try_get(10)?,
        status_message: row.try_get(11)?,
        tags: Vec::new(),
        aliases: Vec::new(),
        model_id: row.try_get(12)?,
    })
}

/// Runs `sql` (which holds `{list}` where the name placeholders go, its only parameters)
/// once per 500 names and returns all rows.
async fn rows_by_names(
    conn: &mut AnyConnection,
    sql: &str,
    names: &[String],
) -> Result<Vec<AnyRow>> {
    let mut out = Vec::new();
    for chunk in names.chunks(500) {
        let text = sql.replace("{list}", &in_params(conn, chunk.len()));
        let mut q = sqlx::query(AssertSqlSafe(text.as_str()));
        for n in chunk {
            q = q.bind(n.as_str());
        }
        out.extend(q.fetch_all(&mut *conn).await?);
    }
    Ok(out)
}

fn distinct<'a>(names: impl Iterator<Item = &'a String>) -> Vec<String> {
    let mut v: Vec<String> = names.cloned().collect();
    v.sort();
    v.dedup();
    v
}

/// Fills tags and aliases of model versions with two queries per 500 model names.
pub(crate) async fn fill_versions(
    conn: &mut AnyConnection,
    versions: &mut [ModelVersion],
) -> Result<()> {
    if versions.is_empty() {
        return Ok(());
    }
    let index: HashMap<(String, String), usize> = versions
        .iter()
        .enumerate()
        .map(|(i, v)| ((v.name.clone(), v.version.clone()), i))
        .collect();
    let names = distinct(versions.iter().map(|v| &v.name));
    let tags = rows_by_names(
        conn,
        "SELECT name, version, key, value FROM model_version_tags WHERE name IN {list} ORDER BY key",
        &names,
    )
    .await?;
    for row in tags {
        let key = (
            row.try_get::<String, _>(0)?,
            row.try_get::<i64, _>(1)?.to_string(),
        );
        if let Some(&i) = index.get(&key) {
            versions[i].tags.push(KeyValue {
                key: row.try_get(2)?,
                value: row.try_get(3)?,
            });
        }
    }
    let aliases = rows_by_names(
        conn,
        "SELECT name, version, alias FROM registered_model_aliases WHERE name IN {list} ORDER BY alias",
        &names,
    )
    .await?;
    for row in aliases {
        let key = (
            row.try_get::<String, _>(0)?,
            row.try_get::<i64, _>(1)?.to_string(),
        );
        if let Some(&i) = index.get(&key) {
            versions[i].aliases.push(row.try_get(2)?);
        }
    }
    Ok(())
}

/// Fills tags, aliases and latest versions (per stage) of registered models with a few
/// queries per 500 models.
pub(crate) async fn fill_models(
    conn: &mut AnyConnection,
    models: &mut [RegisteredModel],
) -> Result<()> {
    if models.is_empty() {
        return Ok(());
    }
    let index: HashMap<String, usize> = models
        .iter()
        .enumerate()
        .map(|(i, m)| (m.name.clone(), i))
        .collect();
    let names: Vec<String> = models.iter().map(|m| m.name.clone()).collect();
    for row in rows_by_names(
        conn,
        "SELECT name, key, value FROM registered_model_tags WHERE name IN {list} ORDER BY key",
        &names,
    )
    .await?
    {
        let name: String = row.try_get(0)?;
        if let Some(&i) = index.get(&name) {
            models[i].tags.push(KeyValue {
                key: row.try_get(1)?,
                value: row.try_get(2)?,
            });
        }
    }
    for row in rows_by_names(
        conn,
        "SELECT name, alias, version FROM registered_model_aliases WHERE name IN {list} ORDER BY alias",
        &names,
    )
    .await?
    {
        let name: String = row.try_get(0)?;
        if let Some(&i) = index.get(&name) {
            models[i].aliases.push(RegisteredModelAlias {
                alias: row.try_get(1)?,
                version: row.try_get::<i64, _>(2)?.to_string(),
            });
        }
    }
    let mut latest = Vec::new();
    for row in rows_by_names(
        conn,
        &format!(
            "SELECT {} FROM model_versions mv WHERE mv.name IN {{list}} \
             AND mv.current_stage <> '{DELETED_STAGE}' AND mv.version = \
             (SELECT MAX(v2.version) FROM model_versions v2 \
              WHERE v2.name = mv.name AND v2.current_stage = mv.current_stage) \
             ORDER BY mv.name, mv.version",
            columns(MV_COLUMNS, "mv")
        ),
        &names,
    )
    .await?
    {
        latest.push(mv_from_row(&row)?);
    }
    fill_versions(conn, &mut latest).await?;
    for mv in latest {
        if let Some(&i) = index.get(&mv.name) {
            models[i].latest_versions.push(mv);
        }
    }
    Ok(())
}

/// Reads a registered model's own row, or RESOURCE_DOES_NOT_EXIST.
pub(crate) async fn model_row(conn: &mut AnyConnection, name: &str) -> Result<RegisteredModel> {
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT {} FROM registered_models WHERE name = $1",
        RM_COLUMNS.join(", ")
    )))
    .bind(name)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| rm_not_found(name))?;
    rm_from_row(&row)
}

/// A registered model with its tags, aliases and latest versions.
async fn load_model(conn: &mut AnyConnection, name: &str) -> Result<RegisteredModel> {
    let mut models = [model_row(conn, name).await?];
    fill_models(conn, &mut models).await?;
    let [model] = models;
    Ok(model)
}

impl Store {
    // -- Registered models -------------------------------------------------------------

    pub async fn create_registered_model(
        &self,
        name: String,
        tags: Vec<KeyValue>,
        description: Option<String>,
    ) -> Result<RegisteredModel> {
        validate_model_name(&name, "name")?;
        for t in &tags {
            validate_tag("Registered model tag", &t.key, &t.value)?;
        }
        self.db
            .write(move |conn| {
                Box::pin(async move {
                    let exists: Option<String> =
                        sqlx::query_scalar("SELECT name FROM registered_models WHERE name = $1")
                            .bind(&name)
                            .fetch_optional(&mut *conn)
                            .await?;
                    if exists.is_some() {
                        return Err(StoreError::AlreadyExists(format!(
                            "Registered Model (name={name}) already exists."
                        )));
                    }
                    let now = now_ms();
                    sqlx::query(
                        "INSERT INTO registered_models (name, creation_time, last_update_time, description) \
                         VALUES ($1, $2, $2, $3)",
                    )
                    .bind(&name)
                    .bind(now)
                    .bind(&description)
                    .execute(&mut *conn)
                    .await?;
                    for t in &tags {
                        sqlx::query(
                            "INSERT INTO registered_model_tags (name, key, value) VALUES ($1, $2, $3) \
                             ON CONFLICT (name, key) DO UPDATE SET value = excluded.value",
                        )
                        .bind(&name)
                        .bind(&t.key)
                        .bind(&t.value)
                        .execute(&mut *conn)
                        .await?;
                    }
                    load_model(conn, &name).await
                })
            })
            .await
    }

    pub async fn get_registered_model(&self, name: &str) -> Result<RegisteredModel> {
        validate_model_name(name, "name")?;
        let mut conn = self.db.pool.acquire().await?;
        load_model(&mut conn, name).await
    }

    /// Sets the description (MLflow stores what was sent, an empty string included).
    pub async fn update_registered_model(
        &self,
        name: String,
        description: Option<String>,
    ) -> Result<RegisteredModel> {
        validate_model_name(&name, "name")?;
        self.db
            .write(move |conn| {
                Box::pin(async move {
                    model_row(conn, &name).await?;
                    sqlx::query(
                        "UPDATE registered_models SET description = $1, last_update_time = $2 WHERE name = $3",
                    )
                    .bind(description.unwrap_or_default())
                    .bind(now_ms())
                    .bind(&name)
                    .execute(&mut *conn)
                    .await?;
                    load_model(conn, &name).await
                })
            })
            .await
    }

    /// Renames a model together with its versions, tags and aliases.
    pub async fn rename_registered_model(
        &self,
        name: String,
        new_name: String,
    ) -> Result<RegisteredModel> {
        validate_model_name(&name, "name")?;
        validate_model_name(&new_name, "new_name")?;
        self.db
            .write(move |conn| {
                Box::pin(async move {
                    model_row(conn, &name).await?;
                    if new_name != name {
                        let taken: Option<String> =
                            sqlx::query_scalar("SELECT name FROM registered_models WHERE name = $1")
                                .bind(&new_name)
                                .fetch_optional(&mut *conn)
                                .await?;
                        if taken.is_some() {
                            return Err(StoreError::AlreadyExists(format!(
                                "Registered Model (name={new_name}) already exists."
                            )));
                        }
                    }
                    let now = now_ms();
                    sqlx::query(
                        "UPDATE registered_models SET name = $1, last_update_time = $2 WHERE name = $3",
                    )
                    .bind(&new_name)
                    .bind(now)
                    .bind(&name)
                    .execute(&mut *conn)
                    .await?;
                    sqlx::query(
                        "UPDATE model_versions SET name = $1, last_update_time = $2 WHERE name = $3",
                    )
                    .bind(&new_name)
                    .bind(now)
                    .bind(&name)
                    .execute(&mut *conn)
                    .await?;
                    for table in [
                        "registered_model_tags",
                        "model_version_tags",
                        "registered_model_aliases",
                        "kiln_release_policies",
                        "kiln_release_evaluations",
                        "kiln_alias_history",
                    ] {
                        sqlx::query(AssertSqlSafe(format!("UPDATE {table} SET name = $1 WHERE name = $2")))
                            .bind(&new_name)
                            .bind(&name)
                            .execute(&mut *conn)
                            .await?;
                    }
                    load_model(conn, &new_name).await
                })
            })
            .await
    }

    /// Deletes a model with all its versions, tags and aliases.
    pub async fn delete_registered_model(&self, name: String) -> Result<()> {
        validate_model_name(&name, "name")?;
        self.db
            .write(move |conn| {
                Box::pin(async move {
                    model_row(conn, &name).await?;
                    for table in [
                        "registered_model_aliases",
                        "kiln_alias_history",
                        "kiln_release_evaluations",
                        "kiln_release_policies",
                        "model_version_tags",
                        "model_versions",
                        "registered_model_tags",
                        "registered_models",
                    ] {
                        sqlx::query(AssertSqlSafe(format!(
                            "DELETE FROM {table} WHERE name = $1"
                        )))
                        .bind(&name)
                        .execute(&mut *conn)
                        .await?;
                    }
                    Ok(())
                })
            })
            .await
    }

    pub async fn set_registered_model_tag(
        &self,
        name: String,
        key: String,
        value: String,
    ) -> Result<()> {
        validate_model_name(&name, "name")?;
        validate_tag("Registered model tag", &key, &value)?;
        self.db
            .write(move |conn| {
                Box::pin(async move {
                    model_row(conn, &name).await?;
                    sqlx::query(
                        "INSERT INTO registered_model_tags (name, key, value) VALUES ($1, $2, $3) \
                         ON CONFLICT (name, key) DO UPDATE SET value = excluded.value",
                    )
                    .bind(&name)
                    .bind(&key)
                    .bind(&value)
                    .execute(&mut *conn)
                    .await?;
                    Ok(())
                })
            })
            .await
    }

    /// Deletes a tag; a missing tag is not an error (as in MLflow), a missing model is.
    pub async fn delete_registered_model_tag(&self, name: String, key: String) -> Result<()> {
        validate_model_name(&name, "name")?;
        validation::tag_key("Registered model tag", &key)?;
        self.db
            .write(move |conn| {
                Box::pin(async move {
                    model_row(conn, &name).await?;
                    sqlx::query("DELETE FROM registered_model_tags WHERE name = $1 AND key = $2")
                        .bind(&name)
                        .bind(&key)
                        .execute(&mut *conn)
                        .await?;
                    Ok(())
                })
            })
            .await
    }

    /// The newest version in each requested stage (every stage if none is given).
    pub async fn get_latest_versions(
        &self,
        name: &str,
        stages: &[String],
    ) -> Result<Vec<ModelVersion>> {
        validate_model_name(name, "name")?;
        let wanted = stages
            .iter()
            .map(|s| canonical_stage(s))
            .collect::<Result<Vec<_>>>()?;
        let mut conn = self.db.pool.acquire().await?;
        let model = load_model(&mut conn, name).await?;
        Ok(model
            .latest_versions
            .into_iter()
            .filter(|mv| wanted.is_empty() || wanted.contains(&mv.current_stage.as_str()))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_are_case_insensitive_and_closed() {
        assert_eq!(canonical_stage("production").unwrap(), "Production");
        assert_eq!(canonical_stage("STAGING").unwrap(), "Staging");
        assert_eq!(canonical_stage("none").unwrap(), "None");
        assert_eq!(canonical_stage("Archived").unwrap(), "Archived");
        assert!(canonical_stage("Deleted_Internal").is_err());
        assert!(canonical_stage("prod").is_err());
    }
}
