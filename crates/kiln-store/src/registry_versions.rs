//! Model versions and aliases: create (with `runs:/` and `models:/` sources resolved),
//! read, update, delete, stages, tags and download locations.
//!
//! Deleted model versions are kept as redacted rows in the `Deleted_Internal` stage, as
//! MLflow's SQL store keeps them, so that a version number is never handed out twice.
//! Every read ignores them.

use kiln_core::entities::ModelVersion;
use sqlx::{AnyConnection, AssertSqlSafe, Row};

use crate::error::{Result, StoreError};
use crate::registry::{
    CreateModelVersion, DELETED_STAGE, MV_COLUMNS, canonical_stage, fill_versions, model_row,
    mv_from_row, validate_model_name, validate_tag,
};
use crate::runs::load_info;
use crate::validation;
use crate::{Store, now_ms};

const MAX_ALIAS_LENGTH: usize = 255;

/// A version number as the API sends it: an integer in a string.
pub(crate) fn parse_version(version: &str) -> Result<i64> {
    match version.trim().parse::<i64>() {
        Ok(v) => Ok(v),
        Err(_) => Err(StoreError::invalid(format!(
            "Parameter 'version' must be an integer, got '{version}'."
        ))),
    }
}

/// MLflow's `_validate_model_alias_name`.
pub(crate) fn validate_alias(alias: &str) -> Result<()> {
    if alias.is_empty() {
        return Err(StoreError::invalid(
            "Registered model alias name cannot be empty.",
        ));
    }
    if !alias
        .chars()
        .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
    {
        return Err(StoreError::invalid(format!(
            "Invalid alias name: '{alias}'. Names may only contain alphanumerics, underscores (_), \
             and dashes (-)."
        )));
    }
    let n = alias.chars().count();
    if n > MAX_ALIAS_LENGTH {
        return Err(StoreError::invalid(format!(
            "Registered model alias name '{}...' had length {n}, which exceeded length limit of \
             {MAX_ALIAS_LENGTH}",
            alias.chars().take(32).collect::<String>()
        )));
    }
    if alias.eq_ignore_ascii_case("latest") {
        return Err(StoreError::invalid(
            "'latest' alias name (case insensitive) is reserved.",
        ));
    }
    let mut chars = alias.chars();
    if matches!(chars.next(), Some('v' | 'V'))
        && alias.len() > 1
        && chars.all(|c| c.is_ascii_digit())
    {
        return Err(StoreError::invalid(format!(
            "Version alias name '{alias}' is reserved."
        )));
    }
    Ok(())
}

/// What a model version's `source` points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    /// `runs:/<run_id>/<path>`.
    Run { run_id: String, path: String },
    /// `models:/m-<id>`: a logged model.
    LoggedModel(String),
    /// `models:/<name>/<version>`.
    Version { name: String, version: i64 },
    /// `models:/<name>@<alias>`.
    Alias { name: String, alias: String },
    /// Anything else is a storage location in its own right.
    Other,
}

pub(crate) fn parse_source(source: &str) -> Source {
    if let Some(rest) = source.strip_prefix("runs:") {
        let rest = rest.trim_start_matches('/');
        let (run_id, path) = rest.split_once('/').unwrap_or((rest, ""));
        if !run_id.is_empty() {
            return Source::Run {
                run_id: run_id.to_string(),
                path: path.trim_matches('/').to_string(),
            };
        }
        return Source::Other;
    }
    if let Some(rest) = source.strip_prefix("models:") {
        let rest = rest.trim_start_matches('/').trim_end_matches('/');
        if let Some((name, version)) = rest.rsplit_once('/')
            && let Ok(v) = version.parse::<i64>()
            && !name.is_empty()
        {
            return Source::Version {
                name: name.to_string(),
                version: v,
            };
        }
        if let Some((name, alias)) = rest.rsplit_once('@')
            && !name.is_empty()
            && !alias.is_empty()
        {
            return Source::Alias {
                name: name.to_string(),
                alias: alias.to_string(),
            };
        }
        if rest.starts_with("m-") && !rest.contains('/') {
            return Source::LoggedModel(rest.to_string());
        }
    }
    Source::Other
}

/// MLflow refuses sources with relative path references (`..`), which could point a
/// download outside the intended location.
fn validate_source(source: &str) -> Result<()> {
    if source.is_empty() {
        return Err(StoreError::invalid(
            "Missing value for required parameter 'source'.",
        ));
    }
    let lower = source.to_ascii_lowercase();
    let traversal = source.split(['/', '\\']).any(|p| p == "..")
        || lower.contains("%2e%2e")
        || lower.contains("%252e%252e");
    if traversal {
        return Err(StoreError::invalid(format!(
            "Invalid model version source: '{source}'. An absolute path must be provided \
             without relative path references present."
        )));
    }
    Ok(())
}

fn join_uri(base: &str, path: &str) -> String {
    if path.is_empty() {
        base.to_string()
    } else {
        format!("{}/{}", base.trim_end_matches('/'), path)
    }
}

fn mv_not_found(name: &str, version: i64) -> StoreError {
    StoreError::not_found(format!(
        "Model Version (name={name}, version={version}) not found"
    ))
}

/// A live (not deleted) model version with its tags and aliases.
async fn load_version(conn: &mut AnyConnection, name: &str, version: i64) -> Result<ModelVersion> {
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT {} FROM model_versions WHERE name = $1 AND version = $2 AND current_stage <> $3",
        MV_COLUMNS.join(", ")
    )))
    .bind(name)
    .bind(version)
    .bind(DELETED_STAGE)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| mv_not_found(name, version))?;
    let mut versions = [mv_from_row(&row)?];
    fill_versions(conn, &mut versions).await?;
    let [mv] = versions;
    Ok(mv)
}

/// Fails unless the live version exists.
async fn check_version(conn: &mut AnyConnection, name: &str, version: i64) -> Result<()> {
    let found: Option<i64> = sqlx::query_scalar(
        "SELECT version FROM model_versions WHERE name = $1 AND version = $2 AND current_stage <> $3",
    )
    .bind(name)
    .bind(version)
    .bind(DELETED_STAGE)
    .fetch_optional(&mut *conn)
    .await?;
    found.map(|_| ()).ok_or_else(|| mv_not_found(name, version))
}

async fn touch_model(conn: &mut AnyConnection, name: &str, now: i64) -> Result<()> {
    sqlx::query("UPDATE registered_models SET last_update_time = $1 WHERE name = $2")
        .bind(now)
        .bind(name)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

async fn alias_version(conn: &mut AnyConnection, name: &str, alias: &str) -> Result<i64> {
    let version: Option<i64> = sqlx::query_scalar(
        "SELECT version FROM registered_model_aliases WHERE name = $1 AND alias = $2",
    )
    .bind(name)
    .bind(alias)
    .fetch_optional(&mut *conn)
    .await?;
    version
        .ok_or_else(|| StoreError::not_found(format!("Registered model alias {alias} not found.")))
}

/// (storage location, run id, model id) of a new version, from its source.
async fn resolve_source(
    conn: &mut AnyConnection,
    req: &CreateModelVersion,
) -> Result<(String, Option<String>, Option<String>)> {
    let mut run_id = req.run_id.clone().filter(|r| !r.is_empty());
    let mut model_id = req.model_id.clone().filter(|m| !m.is_empty());
    let mut storage = req.source.clone();
    match parse_source(&req.source) {
        Source::Run { run_id: rid, path } => {
            if let Some(given) = &run_id
                && *given != rid
            {
                return Err(StoreError::invalid(format!(
                    "Invalid model version source: '{}'. The run_id request parameter must \
                     identify the resource that contains the source.",
                    req.source
                )));
            }
            let info = load_info(conn, &rid).await?;
            storage = join_uri(&info.artifact_uri, &path);
            run_id = Some(rid);
        }
        Source::LoggedModel(id) => {
            model_id = Some(id);
        }
        Source::Version { name, version } => {
            storage = version_storage(conn, &name, version).await?;
        }
        Source::Alias { name, alias } => {
            let version = alias_version(conn, &name, &alias).await?;
            storage = version_storage(conn, &name, version).await?;
        }
        Source::Other => {}
    }
    if let Some(id) = &model_id {
        let row = sqlx::query(
            "SELECT artifact_location, source_run_id FROM logged_models WHERE model_id = $1",
        )
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::not_found(format!("Logged model with id={id} not found")))?;
        let location: String = row.try_get(0)?;
        let source_run: Option<String> = row.try_get(1)?;
        if matches!(parse_source(&req.source), Source::LoggedModel(_)) {
            storage = location;
        }
        if run_id.is_none() {
            run_id = source_run.filter(|r| !r.is_empty());
        }
    }
    Ok((storage, run_id, model_id))
}

async fn version_storage(conn: &mut AnyConnection, name: &str, version: i64) -> Result<String> {
    let row = sqlx::query(
        "SELECT storage_location, source FROM model_versions \
         WHERE name = $1 AND version = $2 AND current_stage <> $3",
    )
    .bind(name)
    .bind(version)
    .bind(DELETED_STAGE)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| mv_not_found(name, version))?;
    let location: Option<String> = row.try_get(0)?;
    match location {
        Some(l) if !l.is_empty() => Ok(l),
        _ => Ok(row.try_get(1)?),
    }
}

impl Store {
    // -- Model versions ----------------------------------------------------------------

    /// Registers a new version (number = highest ever used + 1), resolving `runs:/` and
    /// `models:/` sources to their run id and storage location.
    pub async fn create_model_version(&self, req: CreateModelVersion) -> Result<ModelVersion> {
        validate_model_name(&req.name, "name")?;
        validate_source(&req.source)?;
        for t in &req.tags {
            validate_tag("Model version tag", &t.key, &t.value)?;
        }
        self.db
            .write(move |conn| {
                Box::pin(async move {
                    model_row(conn, &req.name).await?;
                    let (storage, run_id, model_id) = resolve_source(conn, &req).await?;
                    let version: i64 = sqlx::query_scalar(
                        "SELECT COALESCE(MAX(version), 0) + 1 FROM model_versions WHERE name = $1",
                    )
                    .bind(&req.name)
                    .fetch_one(&mut *conn)
                    .await?;
                    let now = now_ms();
                    sqlx::query(
                        "INSERT INTO model_versions (name, version, creation_time, last_update_time, \
                         description, user_id, current_stage, source, run_id, run_link, status, \
                         status_message, storage_location, model_id) \
                         VALUES ($1, $2, $3, $3, $4, NULL, 'None', $5, $6, $7, 'READY', NULL, $8, $9)",
                    )
                    .bind(&req.name)
                    .bind(version)
                    .bind(now)
                    .bind(&req.description)
                    .bind(&req.source)
                    .bind(&run_id)
                    .bind(req.run_link.as_deref().filter(|l| !l.is_empty()))
                    .bind(&storage)
                    .bind(&model_id)
                    .execute(&mut *conn)
                    .await?;
                    for t in &req.tags {
                        sqlx::query(
                            "INSERT INTO model_version_tags (name, version, key, value) VALUES ($1, $2, $3, $4) \
                             ON CONFLICT (name, version, key) DO UPDATE SET value = excluded.value",
                        )
                        .bind(&req.name)
                        .bind(version)
                        .bind(&t.key)
                        .bind(&t.value)
                        .execute(&mut *conn)
                        .await?;
                    }
                    touch_model(conn, &req.name, now).await?;
                    load_version(conn, &req.name, version).await
                })
            })
            .await
    }

    pub async fn get_model_version(&self, name: &str, version: &str) -> Result<ModelVersion> {
        validate_model_name(name, "name")?;
        let version = parse_version(version)?;
        let mut conn = self.db.pool.acquire().await?;
        load_version(&mut conn, name, version).await
    }

    pub async fn update_model_version(
        &self,
        name: String,
        version: &str,
        description: Option<String>,
    ) -> Result<ModelVersion> {
        validate_model_name(&name, "name")?;
        let version = parse_version(version)?;
        self.db
            .write(move |conn| {
                Box::pin(async move {
                    check_version(conn, &name, version).await?;
                    let now = now_ms();
                    sqlx::query(
                        "UPDATE model_versions SET description = $1, last_update_time = $2 \
                         WHERE name = $3 AND version = $4",
                    )
                    .bind(description.unwrap_or_default())
                    .bind(now)
                    .bind(&name)
                    .bind(version)
                    .execute(&mut *conn)
                    .await?;
                    touch_model(conn, &name, now).await?;
                    load_version(conn, &name, version).await
                })
            })
            .await
    }

    /// Deletes a version and the aliases that point at it. The row stays, redacted, so its
    /// number is never reused.
    pub async fn delete_model_version(&self, name: String, version: &str) -> Result<()> {
        validate_model_name(&name, "name")?;
        let version = parse_version(version)?;
        self.db
            .write(move |conn| {
                Box::pin(async move {
                    check_version(conn, &name, version).await?;
                    let now = now_ms();
                    sqlx::query(
                        "UPDATE model_versions SET current_stage = $1, last_update_time = $2, \
                         description = NULL, user_id = NULL, source = 'REDACTED-SOURCE-PATH', \
                         run_id = NULL, run_link = NULL, status_message = NULL, \
                         storage_location = NULL, model_id = NULL \
                         WHERE name = $3 AND version = $4",
                    )
                    .bind(DELETED_STAGE)
                    .bind(now)
                    .bind(&name)
                    .bind(version)
                    .execute(&mut *conn)
                    .await?;
                    let aliases: Vec<String> = sqlx::query_scalar(
                        "SELECT alias FROM registered_model_aliases WHERE name = $1 AND version = $2",
                    )
                    .bind(&name)
                    .bind(version)
                    .fetch_all(&mut *conn)
                    .await?;
                    for alias in &aliases {
                        crate::releases::append_event(
                            conn,
                            &name,
                            alias,
                            None,
                            Some(version),
                            "version_deleted",
                            "anonymous",
                            None,
                            None,
                        )
                        .await?;
                    }
                    for table in ["model_version_tags", "registered_model_aliases"] {
                        sqlx::query(AssertSqlSafe(format!(
                            "DELETE FROM {table} WHERE name = $1 AND version = $2"
                        )))
                        .bind(&name)
                        .bind(version)
                        .execute(&mut *conn)
                        .await?;
                    }
                    touch_model(conn, &name, now).await?;
                    Ok(())
                })
            })
            .await
    }

    /// Moves a version to a stage; with `archive_existing`, the other versions in that
    /// stage (Staging or Production only) move to Archived.
    pub async fn transition_model_version_stage(
        &self,
        name: String,
        version: &str,
        stage: &str,
        archive_existing: bool,
    ) -> Result<ModelVersion> {
        validate_model_name(&name, "name")?;
        let version = parse_version(version)?;
        let stage = canonical_stage(stage)?;
        if archive_existing && !matches!(stage, "Staging" | "Production") {
            return Err(StoreError::invalid(format!(
                "Model version transition cannot archive existing model versions because \
                 '{stage}' is not an Active stage. Valid stages are Staging, Production"
            )));
        }
        self.db
            .write(move |conn| {
                Box::pin(async move {
                    check_version(conn, &name, version).await?;
                    let now = now_ms();
                    if archive_existing {
                        sqlx::query(
                            "UPDATE model_versions SET current_stage = 'Archived', last_update_time = $1 \
                             WHERE name = $2 AND version <> $3 AND current_stage = $4",
                        )
                        .bind(now)
                        .bind(&name)
                        .bind(version)
                        .bind(stage)
                        .execute(&mut *conn)
                        .await?;
                    }
                    sqlx::query(
                        "UPDATE model_versions SET current_stage = $1, last_update_time = $2 \
                         WHERE name = $3 AND version = $4",
                    )
                    .bind(stage)
                    .bind(now)
                    .bind(&name)
                    .bind(version)
                    .execute(&mut *conn)
                    .await?;
                    touch_model(conn, &name, now).await?;
                    load_version(conn, &name, version).await
                })
            })
            .await
    }

    /// Where a version's files are: its resolved storage location, else its source.
    pub async fn get_model_version_download_uri(
        &self,
        name: &str,
        version: &str,
    ) -> Result<String> {
        validate_model_name(name, "name")?;
        let version = parse_version(version)?;
        let mut conn = self.db.pool.acquire().await?;
        version_storage(&mut conn, name, version).await
    }

    pub async fn set_model_version_tag(
        &self,
        name: String,
        version: &str,
        key: String,
        value: String,
    ) -> Result<()> {
        validate_model_name(&name, "name")?;
        let version = parse_version(version)?;
        validate_tag("Model version tag", &key, &value)?;
        self.db
            .write(move |conn| {
                Box::pin(async move {
                    check_version(conn, &name, version).await?;
                    sqlx::query(
                        "INSERT INTO model_version_tags (name, version, key, value) VALUES ($1, $2, $3, $4) \
                         ON CONFLICT (name, version, key) DO UPDATE SET value = excluded.value",
                    )
                    .bind(&name)
                    .bind(version)
                    .bind(&key)
                    .bind(&value)
                    .execute(&mut *conn)
                    .await?;
                    Ok(())
                })
            })
            .await
    }

    pub async fn delete_model_version_tag(
        &self,
        name: String,
        version: &str,
        key: String,
    ) -> Result<()> {
        validate_model_name(&name, "name")?;
        let version = parse_version(version)?;
        validation::tag_key("Model version tag", &key)?;
        self.db
            .write(move |conn| {
                Box::pin(async move {
                    check_version(conn, &name, version).await?;
                    sqlx::query(
                        "DELETE FROM model_version_tags WHERE name = $1 AND version = $2 AND key = $3",
                    )
                    .bind(&name)
                    .bind(version)
                    .bind(&key)
                    .execute(&mut *conn)
                    .await?;
                    Ok(())
                })
            })
            .await
    }

    // -- Aliases -----------------------------------------------------------------------

    /// Points `alias` at a version (moving it if it pointed elsewhere), recorded in the
    /// alias history with an unknown actor; the server calls [`Store::move_alias`] itself.
    pub async fn set_registered_model_alias(
        &self,
        name: String,
        alias: String,
        version: &str,
    ) -> Result<()> {
        self.move_alias(crate::AliasMove {
            name,
            alias,
            version: version.to_string(),
            expect: crate::Expect::Any,
            action: "set".into(),
            actor: "anonymous".into(),
            reason: None,
            refuse_archived: false,
            evaluation: None,
        })
        .await
        .map(|_| ())
    }

    /// Removes an alias; a missing alias is not an error (as in MLflow).
    pub async fn delete_registered_model_alias(&self, name: String, alias: String) -> Result<()> {
        self.remove_alias(name, alias, "anonymous".into())
            .await
            .map(|_| ())
    }

    pub async fn get_model_version_by_alias(
        &self,
        name: &str,
        alias: &str,
    ) -> Result<ModelVersion> {
        validate_model_name(name, "name")?;
        validate_alias(alias)?;
        let mut conn = self.db.pool.acquire().await?;
        let version = alias_version(&mut conn, name, alias).await?;
        load_version(&mut conn, name, version).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_must_be_integers() {
        assert_eq!(parse_version("3").unwrap(), 3);
        let e = parse_version("x").unwrap_err();
        assert!(e.to_string().contains("'version'"), "{e}");
        assert!(parse_version("").is_err());
    }

    #[test]
    fn aliases_follow_mlflow_rules() {
        assert!(validate_alias("champion").is_ok());
        assert!(validate_alias("a-b_c9").is_ok());
        assert!(validate_alias("v1x").is_ok());
        assert!(validate_alias("v").is_ok());
        assert!(validate_alias("").is_err());
        assert!(validate_alias("Latest").is_err());
        assert!(validate_alias("v12").is_err());
        assert!(validate_alias("V3").is_err());
        assert!(validate_alias("a b").is_err());
        assert!(validate_alias("a.b").is_err());
        assert!(validate_alias(&"a".repeat(255)).is_ok());
        assert!(validate_alias(&"a".repeat(256)).is_err());
    }

    #[test]
    fn sources_are_classified() {
        assert_eq!(
            parse_source("runs:/abc/model/sub"),
            Source::Run {
                run_id: "abc".into(),
                path: "model/sub".into()
            }
        );
        assert_eq!(
            parse_source("runs:/abc"),
            Source::Run {
                run_id: "abc".into(),
                path: "".into()
            }
        );
        assert_eq!(
            parse_source("models:/m-0123"),
            Source::LoggedModel("m-0123".into())
        );
        assert_eq!(
            parse_source("models:/churn/4"),
            Source::Version {
                name: "churn".into(),
                version: 4
            }
        );
        assert_eq!(
            parse_source("models:/churn@champ"),
            Source::Alias {
                name: "churn".into(),
                alias: "champ".into()
            }
        );
        assert_eq!(parse_source("s3://bucket/path"), Source::Other);
        assert_eq!(parse_source("runs:/"), Source::Other);
    }

    #[test]
    fn traversal_in_sources_is_refused() {
        assert!(validate_source("s3://b/x/../y").is_err());
        assert!(validate_source("s3://b/x/%2E%2E/y").is_err());
        assert!(validate_source("").is_err());
        assert!(validate_source("s3://b/x..y/z").is_ok());
        assert_eq!(
            join_uri("mlflow-artifacts:/1/r/artifacts/", "model"),
            "mlflow-artifacts:/1/r/artifacts/model"
        );
        assert_eq!(join_uri("a", ""), "a");
    }

    /// The client's `log_model(registered_model_name=…)` flow: a `models:/m-…` source
    /// with no run id resolves both from the logged model.
    #[tokio::test]
    async fn logged_model_sources_resolve_run_and_location() {
        for db in kiln_testkit::TestDb::all().await {
            let store = Store::open(&db.url).await.unwrap();
            let run = store
                .create_run(crate::RunCreate {
                    experiment_id: "0".into(),
                    ..Default::default()
                })
                .await
                .unwrap();
            let rid = run.info.run_id.clone();
            let rid2 = rid.clone();
            store
                .db
                .write(move |conn| {
                    Box::pin(async move {
                        sqlx::query(
                            "INSERT INTO logged_models (model_id, experiment_id, name, artifact_location, \
                             creation_time, last_update_time, status, source_run_id, lifecycle_stage) \
                             VALUES ('m-abc', 0, 'm', 'mlflow-artifacts:/0/models/m-abc/artifacts', 1, 1, \
                             'LOGGED_MODEL_READY', $1, 'active')",
                        )
                        .bind(&rid2)
                        .execute(&mut *conn)
                        .await?;
                        Ok(())
                    })
                })
                .await
                .unwrap();
            store
                .create_registered_model("churn".into(), vec![], None)
                .await
                .unwrap();
            let mv = store
                .create_model_version(CreateModelVersion {
                    name: "churn".into(),
                    source: "models:/m-abc".into(),
                    model_id: Some("m-abc".into()),
                    ..Default::default()
                })
                .await
                .unwrap();
            assert_eq!(mv.version, "1", "{}", db.kind);
            assert_eq!(mv.run_id.as_deref(), Some(rid.as_str()), "{}", db.kind);
            assert_eq!(mv.model_id.as_deref(), Some("m-abc"));
            assert_eq!(
                store
                    .get_model_version_download_uri("churn", "1")
                    .await
                    .unwrap(),
                "mlflow-artifacts:/0/models/m-abc/artifacts"
            );
            let missing = store
                .create_model_version(CreateModelVersion {
                    name: "churn".into(),
                    source: "models:/m-nope".into(),
                    ..Default::default()
                })
                .await;
            assert!(
                matches!(missing, Err(StoreError::NotFound(_))),
                "{}",
                db.kind
            );
            store.close().await;
        }
    }
}
