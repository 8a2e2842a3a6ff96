//! Releases: stored release policies, gate evaluations, and the history of every alias.
//!
//! Every alias change — through MLflow's alias endpoints, a gated release, an override or a
//! rollback — goes through [`Store::move_alias`] or [`Store::remove_alias`], which change
//! the alias and append to `kiln_alias_history` in one transaction. A move may name the
//! holder it expects; if the alias changed since, the move fails with
//! [`StoreError::Conflict`], so of two concurrent moves that both saw the same holder
//! exactly one wins.

use kiln_core::release::{AliasEvent, GateResult, Outcome, ReleaseEvaluation, ReleasePolicy};
use sqlx::AnyConnection;
use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

use crate::error::{Result, StoreError};
use crate::registry::{DELETED_STAGE, model_row, validate_model_name};
use crate::registry_versions::{parse_version, validate_alias};
use crate::{Store, now_ms};

/// A policy as stored, with who changed it last.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StoredPolicy {
    pub policy: ReleasePolicy,
    pub updated_at: i64,
    pub updated_by: String,
}

/// What a move expects the alias to point at when it is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Move whatever the alias points at (MLflow's unconditional set).
    Any,
    /// Move only if the alias points at this version (`None`: the alias does not exist).
    Holder(Option<i64>),
}

/// A gate evaluation to store.
#[derive(Debug, Clone)]
pub struct NewEvaluation {
    pub alias: String,
    pub version: String,
    pub holder: Option<String>,
    pub actor: String,
    pub outcome: Outcome,
    pub override_reason: Option<String>,
    pub gates: Vec<GateResult>,
}

/// One alias change to apply.
#[derive(Debug, Clone)]
pub struct AliasMove {
    pub name: String,
    pub alias: String,
    pub version: String,
    pub expect: Expect,
    /// `set`, `release`, `override` or `rollback`.
    pub action: String,
    pub actor: String,
    pub reason: Option<String>,
    /// Refuse a version in the Archived stage.
    pub refuse_archived: bool,
    /// Stored in the same transaction; the event refers to it.
    pub evaluation: Option<NewEvaluation>,
}

const EVAL_COLUMNS: &str = "name, id, alias, version, holder, actor, created_at, outcome, \
                            override_reason, gates_json";
const EVENT_COLUMNS: &str =
    "name, alias, seq, version, previous, action, actor, at, reason, evaluation";

fn eval_from_row(r: &AnyRow) -> Result<ReleaseEvaluation> {
    let outcome: String = r.try_get("outcome")?;
    let gates: String = r.try_get("gates_json")?;
    Ok(ReleaseEvaluation {
        model: r.try_get("name")?,
        id: r.try_get("id")?,
        alias: r.try_get("alias")?,
        version: r.try_get::<i64, _>("version")?.to_string(),
        holder: r
            .try_get::<Option<i64>, _>("holder")?
            .map(|v| v.to_string()),
        actor: r.try_get("actor")?,
        created_at: r.try_get("created_at")?,
        outcome: Outcome::parse(&outcome).ok_or_else(|| {
            StoreError::Config(format!(
                "unknown evaluation outcome {outcome:?} in the store"
            ))
        })?,
        override_reason: r.try_get("override_reason")?,
        gates: serde_json::from_str(&gates)
            .map_err(|e| StoreError::Config(format!("stored gate results do not parse: {e}")))?,
    })
}

fn event_from_row(r: &AnyRow) -> Result<AliasEvent> {
    Ok(AliasEvent {
        model: r.try_get("name")?,
        alias: r.try_get("alias")?,
        seq: r.try_get("seq")?,
        version: r
            .try_get::<Option<i64>, _>("version")?
            .map(|v| v.to_string()),
        previous: r
            .try_get::<Option<i64>, _>("previous")?
            .map(|v| v.to_string()),
        action: r.try_get("action")?,
        actor: r.try_get("actor")?,
        at: r.try_get("at")?,
        reason: r.try_get("reason")?,
        evaluation: r.try_get("evaluation")?,
    })
}

async fn holder(conn: &mut AnyConnection, name: &str, alias: &str) -> Result<Option<i64>> {
    Ok(sqlx::query_scalar(
        "SELECT version FROM registered_model_aliases WHERE name = $1 AND alias = $2",
    )
    .bind(name)
    .bind(alias)
    .fetch_optional(&mut *conn)
    .await?)
}

async fn insert_evaluation(
    conn: &mut AnyConnection,
    name: &str,
    e: &NewEvaluation,
    now: i64,
) -> Result<ReleaseEvaluation> {
    let id: i64 = sqlx::query_scalar(
        "SELECT COALESCE(MAX(id), 0) + 1 FROM kiln_release_evaluations WHERE name = $1",
    )
    .bind(name)
    .fetch_one(&mut *conn)
    .await?;
    let version = parse_version(&e.version)?;
    let holder = e.holder.as_deref().map(parse_version).transpose()?;
    let gates = serde_json::to_string(&e.gates)
        .map_err(|err| StoreError::invalid(format!("gate results do not serialise: {err}")))?;
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO kiln_release_evaluations ({EVAL_COLUMNS}) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
    )))
    .bind(name)
    .bind(id)
    .bind(&e.alias)
    .bind(version)
    .bind(holder)
    .bind(&e.actor)
    .bind(now)
    .bind(e.outcome.as_str())
    .bind(&e.override_reason)
    .bind(&gates)
    .execute(&mut *conn)
    .await?;
    Ok(ReleaseEvaluation {
        id,
        model: name.to_string(),
        alias: e.alias.clone(),
        version: version.to_string(),
        holder: holder.map(|h| h.to_string()),
        actor: e.actor.clone(),
        created_at: now,
        outcome: e.outcome,
        override_reason: e.override_reason.clone(),
        gates: e.gates.clone(),
    })
}

/// Appends one event to an alias's history.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn append_event(
    conn: &mut AnyConnection,
    name: &str,
    alias: &str,
    version: Option<i64>,
    previous: Option<i64>,
    action: &str,
    actor: &str,
    reason: Option<&str>,
    evaluation: Option<i64>,
) -> Result<AliasEvent> {
    let seq: i64 = sqlx::query_scalar(
        "SELECT COALESCE(MAX(seq), 0) + 1 FROM kiln_alias_history WHERE name = $1 AND alias = $2",
    )
    .bind(name)
    .bind(alias)
    .fetch_one(&mut *conn)
    .await?;
    let at = now_ms();
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO kiln_alias_history ({EVENT_COLUMNS}) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
    )))
    .bind(name)
    .bind(alias)
    .bind(seq)
    .bind(version)
    .bind(previous)
    .bind(action)
    .bind(actor)
    .bind(at)
    .bind(reason)
    .bind(evaluation)
    .execute(&mut *conn)
    .await?;
    Ok(AliasEvent {
        seq,
        model: name.to_string(),
        alias: alias.to_string(),
        version: version.map(|v| v.to_string()),
        previous: previous.map(|v| v.to_string()),
        action: action.to_string(),
        actor: actor.to_string(),
        at,
        reason: reason.map(str::to_string),
        evaluation,
    })
}

fn show(v: Option<i64>) -> String {
    v.map_or_else(|| "no version".to_string(), |v| format!("version {v}"))
}

impl Store {
    /// Points an alias at a version and records the change (and the evaluation that allowed
    /// it, if any) in one transaction.
    pub async fn move_alias(
        &self,
        m: AliasMove,
    ) -> Result<(AliasEvent, Option<ReleaseEvaluation>)> {
        validate_model_name(&m.name, "name")?;
        validate_alias(&m.alias)?;
        let version = parse_version(&m.version)?;
        self.db
            .write(move |conn| {
                Box::pin(async move {
                    model_row(conn, &m.name).await?;
                    let stage: Option<String> = sqlx::query_scalar(
                        "SELECT current_stage FROM model_versions WHERE name = $1 AND version = $2",
                    )
                    .bind(&m.name)
                    .bind(version)
                    .fetch_optional(&mut *conn)
                    .await?;
                    match stage.as_deref() {
                        None | Some(DELETED_STAGE) => {
                            return Err(StoreError::not_found(format!(
                                "Model Version (name={}, version={version}) not found",
                                m.name
                            )));
                        }
                        Some("Archived") if m.refuse_archived => {
                            return Err(StoreError::invalid(format!(
                                "Model Version (name={}, version={version}) is archived and \
                                 cannot take the protected alias '{}'",
                                m.name, m.alias
                            )));
                        }
                        _ => {}
                    }
                    let current = holder(conn, &m.name, &m.alias).await?;
                    if let Expect::Holder(expected) = m.expect
                        && expected != current
                    {
                        return Err(StoreError::Conflict(format!(
                            "alias '{}' of '{}' changed while this move was prepared: it was \
                             expected at {} but is at {}; nothing was changed",
                            m.alias,
                            m.name,
                            show(expected),
                            show(current)
                        )));
                    }
                    let now = now_ms();
                    let evaluation = match &m.evaluation {
                        Some(e) => Some(insert_evaluation(conn, &m.name, e, now).await?),
                        None => None,
                    };
                    sqlx::query(
                        "INSERT INTO registered_model_aliases (name, alias, version) VALUES ($1, $2, $3) \
                         ON CONFLICT (name, alias) DO UPDATE SET version = excluded.version",
                    )
                    .bind(&m.name)
                    .bind(&m.alias)
                    .bind(version)
                    .execute(&mut *conn)
                    .await?;
                    let event = append_event(
                        conn,
                        &m.name,
                        &m.alias,
                        Some(version),
                        current,
                        &m.action,
                        &m.actor,
                        m.reason.as_deref(),
                        evaluation.as_ref().map(|e| e.id),
                    )
                    .await?;
                    Ok((event, evaluation))
                })
            })
            .await
    }

    /// Removes an alias and records it; `None` when the alias did not exist (as in MLflow,
    /// not an error).
    pub async fn remove_alias(
        &self,
        name: String,
        alias: String,
        actor: String,
    ) -> Result<Option<AliasEvent>> {
        validate_model_name(&name, "name")?;
        validate_alias(&alias)?;
        self.db
            .write(move |conn| {
                Box::pin(async move {
                    let Some(current) = holder(conn, &name, &alias).await? else {
                        return Ok(None);
                    };
                    sqlx::query(
                        "DELETE FROM registered_model_aliases WHERE name = $1 AND alias = $2",
                    )
                    .bind(&name)
                    .bind(&alias)
                    .execute(&mut *conn)
                    .await?;
                    let e = append_event(
                        conn,
                        &name,
                        &alias,
                        None,
                        Some(current),
                        "delete",
                        &actor,
                        None,
                        None,
                    )
                    .await?;
                    Ok(Some(e))
                })
            })
            .await
    }

    /// Stores an evaluation that moved nothing (a blocked release).
    pub async fn record_release_evaluation(
        &self,
        name: String,
        e: NewEvaluation,
    ) -> Result<ReleaseEvaluation> {
        validate_model_name(&name, "name")?;
        self.db
            .write(move |conn| {
                Box::pin(async move {
                    model_row(conn, &name).await?;
                    insert_evaluation(conn, &name, &e, now_ms()).await
                })
            })
            .await
    }

    /// The version an alias points at, if it exists.
    pub async fn alias_holder(&self, name: &str, alias: &str) -> Result<Option<i64>> {
        let mut conn = self.db.pool.acquire().await?;
        holder(&mut conn, name, alias).await
    }

    /// The history of one alias, or of every alias of the model, oldest first.
    pub async fn alias_history(&self, name: &str, alias: Option<&str>) -> Result<Vec<AliasEvent>> {
        let mut conn = self.db.pool.acquire().await?;
        model_row(&mut conn, name).await?;
        let rows =
            match alias {
                Some(a) => sqlx::query(AssertSqlSafe(format!(
                    "SELECT {EVENT_COLUMNS} FROM kiln_alias_history WHERE name = $1 AND alias = $2 \
                     ORDER BY seq"
                )))
                .bind(name)
                .bind(a)
                .fetch_all(&mut *conn)
                .await?,
                None => {
                    sqlx::query(AssertSqlSafe(format!(
                        "SELECT {EVENT_COLUMNS} FROM kiln_alias_history WHERE name = $1 \
                     ORDER BY at, alias, seq"
                    )))
                    .bind(name)
                    .fetch_all(&mut *conn)
                    .await?
                }
            };
        rows.iter().map(event_from_row).collect()
    }

    /// The version that held `alias` before its current holder took it: the target of a
    /// one-step rollback. Returns (current, previous).
    pub async fn rollback_target(&self, name: &str, alias: &str) -> Result<(i64, i64)> {
        let mut conn = self.db.pool.acquire().await?;
        model_row(&mut conn, name).await?;
        let current = holder(&mut conn, name, alias).await?.ok_or_else(|| {
            StoreError::not_found(format!("Registered model alias {alias} not found."))
        })?;
        let previous: Option<Option<i64>> = sqlx::query_scalar(
            "SELECT previous FROM kiln_alias_history WHERE name = $1 AND alias = $2 \
             AND version = $3 ORDER BY seq DESC LIMIT 1",
        )
        .bind(name)
        .bind(alias)
        .bind(current)
        .fetch_optional(&mut *conn)
        .await?;
        match previous.flatten() {
            Some(p) => Ok((current, p)),
            None => Err(StoreError::invalid(format!(
                "alias '{alias}' of '{name}' has no previous holder to roll back to: version \
                 {current} was its first"
            ))),
        }
    }

    /// Stored evaluations, newest first (all aliases when `alias` is `None`).
    pub async fn release_evaluations(
        &self,
        name: &str,
        alias: Option<&str>,
        limit: i64,
    ) -> Result<Vec<ReleaseEvaluation>> {
        let mut conn = self.db.pool.acquire().await?;
        model_row(&mut conn, name).await?;
        let sql = format!(
            "SELECT {EVAL_COLUMNS} FROM kiln_release_evaluations WHERE name = $1 {} \
             ORDER BY id DESC LIMIT {}",
            if alias.is_some() {
                "AND alias = $2"
            } else {
                ""
            },
            limit.clamp(1, 10_000)
        );
        let mut q = sqlx::query(AssertSqlSafe(sql)).bind(name);
        if let Some(a) = alias {
            q = q.bind(a);
        }
        let rows = q.fetch_all(&mut *conn).await?;
        rows.iter().map(eval_from_row).collect()
    }

    /// Evaluations of one version, newest first.
    pub async fn version_evaluations(
        &self,
        name: &str,
        version: &str,
    ) -> Result<Vec<ReleaseEvaluation>> {
        let v = parse_version(version)?;
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {EVAL_COLUMNS} FROM kiln_release_evaluations WHERE name = $1 AND version = $2 \
             ORDER BY id DESC"
        )))
        .bind(name)
        .bind(v)
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter().map(eval_from_row).collect()
    }

    /// Creates or replaces the release policy of a registered model.
    pub async fn put_release_policy(&self, policy: ReleasePolicy, actor: String) -> Result<()> {
        validate_model_name(&policy.model, "model")?;
        for alias in policy.aliases.keys() {
            validate_alias(alias)?;
        }
        let json = serde_json::to_string(&policy)
            .map_err(|e| StoreError::invalid(format!("policy does not serialise: {e}")))?;
        self.db
            .write(move |conn| {
                Box::pin(async move {
                    model_row(conn, &policy.model).await?;
                    sqlx::query(
                        "INSERT INTO kiln_release_policies (name, policy_json, updated_at, updated_by) \
                         VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO UPDATE SET \
                         policy_json = excluded.policy_json, updated_at = excluded.updated_at, \
                         updated_by = excluded.updated_by",
                    )
                    .bind(&policy.model)
                    .bind(&json)
                    .bind(now_ms())
                    .bind(&actor)
                    .execute(&mut *conn)
                    .await?;
                    Ok(())
                })
            })
            .await
    }

    /// The release policy of a model, if it has one.
    pub async fn get_release_policy(&self, name: &str) -> Result<Option<StoredPolicy>> {
        let row = sqlx::query(
            "SELECT name, policy_json, updated_at, updated_by FROM kiln_release_policies \
             WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(&self.db.pool)
        .await?;
        row.as_ref().map(policy_from_row).transpose()
    }

    /// Every stored release policy, by model name.
    pub async fn list_release_policies(&self) -> Result<Vec<StoredPolicy>> {
        let rows = sqlx::query(
            "SELECT name, policy_json, updated_at, updated_by FROM kiln_release_policies \
             ORDER BY name",
        )
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter().map(policy_from_row).collect()
    }
}

fn policy_from_row(r: &AnyRow) -> Result<StoredPolicy> {
    let json: String = r.try_get("policy_json")?;
    let mut policy: ReleasePolicy = serde_json::from_str(&json)
        .map_err(|e| StoreError::Config(format!("stored release policy does not parse: {e}")))?;
    // A renamed model keeps its policy under the new name.
    policy.model = r.try_get("name")?;
    Ok(StoredPolicy {
        policy,
        updated_at: r.try_get("updated_at")?,
        updated_by: r.try_get("updated_by")?,
    })
}
