//! The state `kiln apply` keeps: one record per declared resource it has carried out (the
//! spec it was applied with, the key of that spec and its inputs, and what the step
//! produced), a lease-style lock so two applies never interleave, and the history of
//! applies. A record and the timeline events of its change are written in one transaction.

use serde::Serialize;
use serde_json::Value;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::error::{Result, StoreError};
use crate::monitoring::{insert_event, json_col};
use crate::{NewEvent, Store, now_ms};

/// What one resource was last applied with.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApplyRecord {
    /// `dataset`, `features`, `train`, `release`, `deploy`, `monitor`.
    pub kind: String,
    pub name: String,
    /// The declared spec (canonical JSON) the step ran with.
    pub spec: Value,
    /// Digest of the spec and of every input the step read.
    pub step_key: String,
    /// What the step produced (digests, run id, version, …).
    pub outputs: Value,
    pub applied_at: i64,
    /// The apply that wrote it.
    pub apply_id: i64,
}

/// Who holds the apply lock, when a second apply is refused.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LockHolder {
    pub holder: String,
    pub acquired_at: i64,
    pub expires_at: i64,
}

/// One `kiln apply` in the history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApplyRun {
    pub id: i64,
    pub actor: String,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    /// `running`, `succeeded`, `failed`.
    pub status: String,
    pub summary: Value,
}

const LOCK_ID: i64 = 1;

fn record_row(r: &AnyRow) -> Result<ApplyRecord> {
    Ok(ApplyRecord {
        kind: r.try_get("kind")?,
        name: r.try_get("name")?,
        spec: json_col(r, "spec_json")?,
        step_key: r.try_get("step_key")?,
        outputs: json_col(r, "outputs_json")?,
        applied_at: r.try_get("applied_at")?,
        apply_id: r.try_get("apply_id")?,
    })
}

impl Store {
    /// Every applied resource, by kind and name.
    pub async fn apply_records(&self) -> Result<Vec<ApplyRecord>> {
        let rows = sqlx::query(
            "SELECT kind, name, spec_json, step_key, outputs_json, applied_at, apply_id \
             FROM kiln_apply_state ORDER BY kind, name",
        )
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter().map(record_row).collect()
    }

    /// Saves a finished step's record and its timeline events in one transaction.
    pub async fn save_apply_record(&self, rec: ApplyRecord, events: Vec<NewEvent>) -> Result<()> {
        self.db
            .write(move |conn| {
                Box::pin(async move {
                    sqlx::query(
                        "INSERT INTO kiln_apply_state \
                         (kind, name, spec_json, step_key, outputs_json, applied_at, apply_id) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (kind, name) DO UPDATE SET \
                         spec_json = excluded.spec_json, step_key = excluded.step_key, \
                         outputs_json = excluded.outputs_json, applied_at = excluded.applied_at, \
                         apply_id = excluded.apply_id",
                    )
                    .bind(&rec.kind)
                    .bind(&rec.name)
                    .bind(rec.spec.to_string())
                    .bind(&rec.step_key)
                    .bind(rec.outputs.to_string())
                    .bind(rec.applied_at)
                    .bind(rec.apply_id)
                    .execute(&mut *conn)
                    .await?;
                    for e in &events {
                        insert_event(conn, e).await?;
                    }
                    Ok(())
                })
            })
            .await
    }

    /// Forgets a resource no longer declared, with its timeline events, in one transaction.
    pub async fn delete_apply_record(
        &self,
        kind: &str,
        name: &str,
        events: Vec<NewEvent>,
    ) -> Result<()> {
        let (kind, name) = (kind.to_string(), name.to_string());
        self.db
            .write(move |conn| {
                Box::pin(async move {
                    sqlx::query("DELETE FROM kiln_apply_state WHERE kind = $1 AND name = $2")
                        .bind(&kind)
                        .bind(&name)
                        .execute(&mut *conn)
                        .await?;
                    for e in &events {
                        insert_event(conn, e).await?;
                    }
                    Ok(())
                })
            })
            .await
    }

    /// Takes the apply lock for `holder` until `ttl_ms` from now. Taken when free, expired,
    /// or already `holder`'s (which renews it); otherwise `Err(StoreError::Conflict)` whose
    /// message names the holder.
    pub async fn acquire_apply_lock(&self, holder: &str, ttl_ms: i64) -> Result<()> {
        let h = holder.to_string();
        let taken = self
            .db
            .write(move |conn| {
                Box::pin(async move {
                    let now = now_ms();
                    let r = sqlx::query(
                        "INSERT INTO kiln_apply_lock (id, holder, acquired_at, expires_at) \
                         VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO UPDATE SET \
                         holder = excluded.holder, acquired_at = excluded.acquired_at, \
                         expires_at = excluded.expires_at \
                         WHERE kiln_apply_lock.expires_at < $3 OR kiln_apply_lock.holder = $2",
                    )
                    .bind(LOCK_ID)
                    .bind(&h)
                    .bind(now)
                    .bind(now + ttl_ms)
                    .execute(&mut *conn)
                    .await?;
                    Ok(r.rows_affected() == 1)
                })
            })
            .await?;
        if taken {
            return Ok(());
        }
        let held = self.apply_lock().await?;
        Err(StoreError::Conflict(match held {
            Some(l) => format!(
                "another apply holds the lock: {} (since {} ms since the epoch, until {} unless renewed)",
                l.holder, l.acquired_at, l.expires_at
            ),
            None => "another apply holds the lock".into(),
        }))
    }

    /// Extends `holder`'s lock to `ttl_ms` from now; false if it is no longer `holder`'s.
    pub async fn renew_apply_lock(&self, holder: &str, ttl_ms: i64) -> Result<bool> {
        let h = holder.to_string();
        self.db
            .write(move |conn| {
                Box::pin(async move {
                    let r = sqlx::query(
                        "UPDATE kiln_apply_lock SET expires_at = $1 WHERE id = $2 AND holder = $3",
                    )
                    .bind(now_ms() + ttl_ms)
                    .bind(LOCK_ID)
                    .bind(&h)
                    .execute(&mut *conn)
                    .await?;
                    Ok(r.rows_affected() == 1)
                })
            })
            .await
    }

    /// Releases `holder`'s lock (nothing if another holds it).
    pub async fn release_apply_lock(&self, holder: &str) -> Result<()> {
        let h = holder.to_string();
        self.db
            .write(move |conn| {
                Box::pin(async move {
                    sqlx::query("DELETE FROM kiln_apply_lock WHERE id = $1 AND holder = $2")
                        .bind(LOCK_ID)
                        .bind(&h)
                        .execute(&mut *conn)
                        .await?;
                    Ok(())
                })
            })
            .await
    }

    /// The current holder of the apply lock, if any (expired or not).
    pub async fn apply_lock(&self) -> Result<Option<LockHolder>> {
        let row = sqlx::query(
            "SELECT holder, acquired_at, expires_at FROM kiln_apply_lock WHERE id = $1",
        )
        .bind(LOCK_ID)
        .fetch_optional(&self.db.pool)
        .await?;
        row.map(|r| {
            Ok(LockHolder {
                holder: r.try_get("holder")?,
                acquired_at: r.try_get("acquired_at")?,
                expires_at: r.try_get("expires_at")?,
            })
        })
        .transpose()
    }

    /// Starts an apply in the history; returns its id.
    pub async fn start_apply(&self, actor: &str) -> Result<i64> {
        let actor = actor.to_string();
        self.db
            .write(move |conn| {
                Box::pin(async move {
                    let id: i64 =
                        sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) + 1 FROM kiln_applies")
                            .fetch_one(&mut *conn)
                            .await?;
                    sqlx::query(
                        "INSERT INTO kiln_applies (id, actor, started_at, status, summary_json) \
                         VALUES ($1, $2, $3, 'running', '{}')",
                    )
                    .bind(id)
                    .bind(&actor)
                    .bind(now_ms())
                    .execute(&mut *conn)
                    .await?;
                    Ok(id)
                })
            })
            .await
    }

    /// Ends an apply: `succeeded` or `failed`, with its summary.
    pub async fn finish_apply(&self, id: i64, status: &str, summary: Value) -> Result<()> {
        let status = status.to_string();
        self.db
            .write(move |conn| {
                Box::pin(async move {
                    sqlx::query(
                        "UPDATE kiln_applies SET finished_at = $1, status = $2, summary_json = $3 \
                         WHERE id = $4",
                    )
                    .bind(now_ms())
                    .bind(&status)
                    .bind(summary.to_string())
                    .bind(id)
                    .execute(&mut *conn)
                    .await?;
                    Ok(())
                })
            })
            .await
    }

    /// The most recent applies, newest first.
    pub async fn applies(&self, limit: i64) -> Result<Vec<ApplyRun>> {
        let rows = sqlx::query(
            "SELECT id, actor, started_at, finished_at, status, summary_json FROM kiln_applies \
             ORDER BY id DESC LIMIT $1",
        )
        .bind(limit.max(1))
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ApplyRun {
                    id: r.try_get("id")?,
                    actor: r.try_get("actor")?,
                    started_at: r.try_get("started_at")?,
                    finished_at: r.try_get("finished_at")?,
                    status: r.try_get("status")?,
                    summary: json_col(r, "summary_json")?,
                })
            })
            .collect()
    }
}
