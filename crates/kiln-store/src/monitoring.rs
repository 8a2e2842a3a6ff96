//! Monitoring records: feedback labels by request id, the timeline of events (traffic
//! changes, rollbacks, drift onsets, alerts, applies) that incidents are read against,
//! incidents themselves, and the monitor's state documents (alert instances, silences).
//!
//! Times are given by the caller (milliseconds since the epoch) wherever the monitor decides
//! them, so a monitor driven by a test clock writes a consistent timeline.

use serde::Serialize;
use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

use crate::error::{Result, StoreError};
use crate::{Store, now_ms};

/// One label for one earlier prediction.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Feedback {
    pub deployment: String,
    pub request_id: String,
    /// A number (class index, 0/1, a regression target), a boolean or a string (a class
    /// name); for a request of several rows, a list of them, one per row.
    pub label: Value,
    pub received_at: i64,
}

/// One entry of the timeline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    pub id: i64,
    pub at: i64,
    /// `deploy`, `undeploy`, `alias`, `traffic`, `rollback`, `apply`, `config`, `drift`,
    /// `alert`, `incident`, …
    pub kind: String,
    /// What it is about: a deployment or model name.
    pub subject: String,
    pub actor: String,
    pub summary: String,
    pub detail: Value,
}

/// An event to append.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub at: i64,
    pub kind: String,
    pub subject: String,
    pub actor: String,
    pub summary: String,
    pub detail: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Incident {
    pub id: i64,
    pub subject: String,
    pub title: String,
    pub severity: String,
    pub opened_at: i64,
    /// The alert instance that opened it.
    pub fingerprint: String,
    pub runbook: Option<String>,
    /// What was seen when it opened (indicator values, the alert's labels…).
    pub evidence: Value,
    pub resolved_at: Option<i64>,
    pub resolved_by: Option<String>,
    pub resolution: Option<String>,
}

/// An incident to open.
#[derive(Debug, Clone)]
pub struct NewIncident {
    pub subject: String,
    pub title: String,
    pub severity: String,
    pub opened_at: i64,
    pub fingerprint: String,
    pub runbook: Option<String>,
    pub evidence: Value,
}

/// What happened to a subject, oldest first: its events, its alias moves (for a model name)
/// and the starts and stops of its deployments, merged by time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimelineEntry {
    pub at: i64,
    pub kind: String,
    pub actor: String,
    pub summary: String,
    pub detail: Value,
}

const INCIDENT_COLUMNS: &str = "id, subject, title, severity, opened_at, fingerprint, runbook, \
     evidence_json, resolved_at, resolved_by, resolution";
const EVENT_COLUMNS: &str = "id, at, kind, subject, actor, summary, detail_json";

pub(crate) fn json_col(r: &AnyRow, col: &str) -> Result<Value> {
    let text: String = r.try_get(col)?;
    serde_json::from_str(&text)
        .map_err(|e| StoreError::invalid(format!("stored {col} is not JSON: {e}")))
}

fn incident_row(r: &AnyRow) -> Result<Incident> {
    Ok(Incident {
        id: r.try_get("id")?,
        subject: r.try_get("subject")?,
        title: r.try_get("title")?,
        severity: r.try_get("severity")?,
        opened_at: r.try_get("opened_at")?,
        fingerprint: r.try_get("fingerprint")?,
        runbook: r.try_get("runbook")?,
        evidence: json_col(r, "evidence_json")?,
        resolved_at: r.try_get("resolved_at")?,
        resolved_by: r.try_get("resolved_by")?,
        resolution: r.try_get("resolution")?,
    })
}

fn event_row(r: &AnyRow) -> Result<Event> {
    Ok(Event {
        id: r.try_get("id")?,
        at: r.try_get("at")?,
        kind: r.try_get("kind")?,
        subject: r.try_get("subject")?,
        actor: r.try_get("actor")?,
        summary: r.try_get("summary")?,
        detail: json_col(r, "detail_json")?,
    })
}

pub(crate) async fn insert_event(conn: &mut sqlx::AnyConnection, e: &NewEvent) -> Result<i64> {
    let id: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) + 1 FROM kiln_events")
        .fetch_one(&mut *conn)
        .await?;
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO kiln_events ({EVENT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
    )))
    .bind(id)
    .bind(e.at)
    .bind(&e.kind)
    .bind(&e.subject)
    .bind(&e.actor)
    .bind(&e.summary)
    .bind(e.detail.to_string())
    .execute(&mut *conn)
    .await?;
    Ok(id)
}

impl Store {
    /// Stores labels for earlier predictions of `deployment`; a label sent again for the same
    /// request replaces the earlier one. Returns how many were stored.
    pub async fn put_feedback(
        &self,
        deployment: &str,
        labels: Vec<(String, Value)>,
    ) -> Result<usize> {
        if deployment.is_empty() {
            return Err(StoreError::invalid("feedback needs a deployment name"));
        }
        for (i, (id, label)) in labels.iter().enumerate() {
            if id.is_empty() {
                return Err(StoreError::invalid(format!(
                    "feedback item {i}: `request_id` is empty"
                )));
            }
            let scalar = |v: &Value| v.is_number() || v.is_string() || v.is_boolean();
            let ok = match label {
                // One label per row of a request of several rows, in order.
                Value::Array(items) => !items.is_empty() && items.iter().all(scalar),
                other => scalar(other),
            };
            if !ok {
                return Err(StoreError::invalid(format!(
                    "feedback item {i} (request `{id}`): `label` must be a number, a string, \
                     a boolean, or a non-empty list of them (one per row), found {label}"
                )));
            }
        }
        let n = labels.len();
        let deployment = deployment.to_string();
        self.db
            .write(move |conn| {
                Box::pin(async move {
                    let now = now_ms();
                    for (id, label) in &labels {
                        sqlx::query(
                            "INSERT INTO kiln_feedback (deployment, request_id, label_json, \
                             received_at) VALUES ($1, $2, $3, $4) \
                             ON CONFLICT (deployment, request_id) DO UPDATE SET \
                             label_json = excluded.label_json, received_at = excluded.received_at",
                        )
                        .bind(&deployment)
                        .bind(id)
                        .bind(label.to_string())
                        .bind(now)
                        .execute(&mut *conn)
                        .await?;
                    }
                    Ok(())
                })
            })
            .await?;
        Ok(n)
    }

    /// Every label of a deployment.
    pub async fn feedback(&self, deployment: &str) -> Result<Vec<Feedback>> {
        let rows = sqlx::query(
            "SELECT deployment, request_id, label_json, received_at FROM kiln_feedback \
             WHERE deployment = $1 ORDER BY request_id",
        )
        .bind(deployment)
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Feedback {
                    deployment: r.try_get("deployment")?,
                    request_id: r.try_get("request_id")?,
                    label: json_col(r, "label_json")?,
                    received_at: r.try_get("received_at")?,
                })
            })
            .collect()
    }

    /// Appends an event to the timeline; returns its id.
    pub async fn record_event(&self, event: NewEvent) -> Result<i64> {
        self.db
            .write(move |conn| Box::pin(async move { insert_event(conn, &event).await }))
            .await
    }

    /// Events of a subject with `from <= at < to`, oldest first.
    pub async fn events(&self, subject: &str, from: i64, to: i64) -> Result<Vec<Event>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {EVENT_COLUMNS} FROM kiln_events WHERE subject = $1 AND at >= $2 AND at < $3 \
             ORDER BY at, id"
        )))
        .bind(subject)
        .bind(from)
        .bind(to)
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter().map(event_row).collect()
    }

    /// The subject's timeline between `from` and `to`: its events, the alias moves of a model
    /// of that name, and the starts and stops of deployments served under that name.
    pub async fn timeline(&self, subject: &str, from: i64, to: i64) -> Result<Vec<TimelineEntry>> {
        let mut out: Vec<TimelineEntry> = self
            .events(subject, from, to)
            .await?
            .into_iter()
            .map(|e| TimelineEntry {
                at: e.at,
                kind: e.kind,
                actor: e.actor,
                summary: e.summary,
                detail: e.detail,
            })
            .collect();
        let moves = sqlx::query(
            "SELECT alias, version, previous, action, actor, at, reason FROM kiln_alias_history \
             WHERE name = $1 AND at >= $2 AND at < $3",
        )
        .bind(subject)
        .bind(from)
        .bind(to)
        .fetch_all(&self.db.pool)
        .await?;
        for r in &moves {
            let alias: String = r.try_get("alias")?;
            let version: Option<i64> = r.try_get("version")?;
            let previous: Option<i64> = r.try_get("previous")?;
            let action: String = r.try_get("action")?;
            let show = |v: Option<i64>| v.map_or("none".to_string(), |v| format!("v{v}"));
            out.push(TimelineEntry {
                at: r.try_get("at")?,
                kind: "alias".into(),
                actor: r.try_get("actor")?,
                summary: format!(
                    "{action}: alias `{alias}` {} → {}",
                    show(previous),
                    show(version)
                ),
                detail: serde_json::json!({
                    "alias": alias, "version": version, "previous": previous,
                    "action": action, "reason": r.try_get::<Option<String>, _>("reason")?,
                }),
            });
        }
        let deployments = sqlx::query(
            "SELECT id, model, version, reference, endpoint, started_at, stopped_at \
             FROM kiln_deployments WHERE name = $1 OR model = $1",
        )
        .bind(subject)
        .fetch_all(&self.db.pool)
        .await?;
        for r in &deployments {
            let model: String = r.try_get("model")?;
            let version: i64 = r.try_get("version")?;
            let endpoint: String = r.try_get("endpoint")?;
            let detail = serde_json::json!({
                "deployment": r.try_get::<String, _>("id")?, "model": model, "version": version,
                "reference": r.try_get::<String, _>("reference")?, "endpoint": endpoint,
            });
            let started: i64 = r.try_get("started_at")?;
            if (from..to).contains(&started) {
                out.push(TimelineEntry {
                    at: started,
                    kind: "deploy".into(),
                    actor: "kiln serve".into(),
                    summary: format!("{model} v{version} started serving at {endpoint}"),
                    detail: detail.clone(),
                });
            }
            if let Some(stopped) = r.try_get::<Option<i64>, _>("stopped_at")?
                && (from..to).contains(&stopped)
            {
                out.push(TimelineEntry {
                    at: stopped,
                    kind: "undeploy".into(),
                    actor: "kiln serve".into(),
                    summary: format!("{model} v{version} stopped serving at {endpoint}"),
                    detail,
                });
            }
        }
        out.sort_by_key(|e| e.at);
        Ok(out)
    }

    /// Opens an incident and records it on the timeline, in one transaction; returns it.
    pub async fn open_incident(&self, new: NewIncident) -> Result<Incident> {
        self.db
            .write(move |conn| {
                Box::pin(async move {
                    let id: i64 =
                        sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) + 1 FROM kiln_incidents")
                            .fetch_one(&mut *conn)
                            .await?;
                    sqlx::query(AssertSqlSafe(format!(
                        "INSERT INTO kiln_incidents ({INCIDENT_COLUMNS}) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, NULL, NULL)"
                    )))
                    .bind(id)
                    .bind(&new.subject)
                    .bind(&new.title)
                    .bind(&new.severity)
                    .bind(new.opened_at)
                    .bind(&new.fingerprint)
                    .bind(&new.runbook)
                    .bind(new.evidence.to_string())
                    .execute(&mut *conn)
                    .await?;
                    insert_event(
                        conn,
                        &NewEvent {
                            at: new.opened_at,
                            kind: "incident".into(),
                            subject: new.subject.clone(),
                            actor: "kiln monitor".into(),
                            summary: format!("incident {id} opened: {}", new.title),
                            detail: serde_json::json!({"incident": id, "severity": new.severity}),
                        },
                    )
                    .await?;
                    Ok(Incident {
                        id,
                        subject: new.subject,
                        title: new.title,
                        severity: new.severity,
                        opened_at: new.opened_at,
                        fingerprint: new.fingerprint,
                        runbook: new.runbook,
                        evidence: new.evidence,
                        resolved_at: None,
                        resolved_by: None,
                        resolution: None,
                    })
                })
            })
            .await
    }

    /// Resolves an open incident with a note (required) and records it on the timeline.
    pub async fn resolve_incident(
        &self,
        id: i64,
        by: &str,
        note: &str,
        at: i64,
    ) -> Result<Incident> {
        if note.trim().is_empty() {
            return Err(StoreError::invalid(
                "resolving an incident takes a note saying what was found and done",
            ));
        }
        let by = by.to_string();
        let note = note.to_string();
        self.db
            .write(move |conn| {
                Box::pin(async move {
                    let row = sqlx::query(AssertSqlSafe(format!(
                        "SELECT {INCIDENT_COLUMNS} FROM kiln_incidents WHERE id = $1"
                    )))
                    .bind(id)
                    .fetch_optional(&mut *conn)
                    .await?
                    .ok_or_else(|| StoreError::NotFound(format!("incident {id} does not exist")))?;
                    let mut incident = incident_row(&row)?;
                    if incident.resolved_at.is_some() {
                        return Err(StoreError::Conflict(format!(
                            "incident {id} is already resolved"
                        )));
                    }
                    sqlx::query(
                        "UPDATE kiln_incidents SET resolved_at = $1, resolved_by = $2, \
                         resolution = $3 WHERE id = $4",
                    )
                    .bind(at)
                    .bind(&by)
                    .bind(&note)
                    .bind(id)
                    .execute(&mut *conn)
                    .await?;
                    insert_event(
                        conn,
                        &NewEvent {
                            at,
                            kind: "incident".into(),
                            subject: incident.subject.clone(),
                            actor: by.clone(),
                            summary: format!("incident {id} resolved: {note}"),
                            detail: serde_json::json!({"incident": id}),
                        },
                    )
                    .await?;
                    incident.resolved_at = Some(at);
                    incident.resolved_by = Some(by);
                    incident.resolution = Some(note);
                    Ok(incident)
                })
            })
            .await
    }

    pub async fn incident(&self, id: i64) -> Result<Incident> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {INCIDENT_COLUMNS} FROM kiln_incidents WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.db.pool)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("incident {id} does not exist")))?;
        incident_row(&row)
    }

    /// Incidents, newest first; only open ones when `open_only`.
    pub async fn incidents(&self, open_only: bool) -> Result<Vec<Incident>> {
        let filter = if open_only {
            "WHERE resolved_at IS NULL"
        } else {
            ""
        };
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {INCIDENT_COLUMNS} FROM kiln_incidents {filter} ORDER BY id DESC"
        )))
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter().map(incident_row).collect()
    }

    /// Saves one of the monitor's state documents.
    pub async fn put_monitor_state(&self, key: &str, value: Value) -> Result<()> {
        let key = key.to_string();
        self.db
            .write(move |conn| {
                Box::pin(async move {
                    sqlx::query(
                        "INSERT INTO kiln_monitor_state (key, value_json, updated_at) \
                         VALUES ($1, $2, $3) ON CONFLICT (key) DO UPDATE SET \
                         value_json = excluded.value_json, updated_at = excluded.updated_at",
                    )
                    .bind(&key)
                    .bind(value.to_string())
                    .bind(now_ms())
                    .execute(&mut *conn)
                    .await?;
                    Ok(())
                })
            })
            .await
    }

    pub async fn monitor_state(&self, key: &str) -> Result<Option<Value>> {
        let row = sqlx::query("SELECT value_json FROM kiln_monitor_state WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.db.pool)
            .await?;
        row.map(|r| json_col(&r, "value_json")).transpose()
    }
}
