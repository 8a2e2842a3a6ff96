//! Deployments: the `kiln serve` processes serving registered versions. A process records
//! each registered version it loads when it starts and marks the records stopped when it
//! shuts down, so lineage can say where a version (and the data it was built from) runs.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::error::Result;
use crate::{Store, now_ms};

/// One served registered version.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Deployment {
    pub id: String,
    /// The name it is served under (`--model NAME=…`).
    pub name: String,
    pub model: String,
    pub version: String,
    /// What was asked for (`delay@champion`, `delay/3`).
    pub reference: String,
    /// `http://ADDR`.
    pub endpoint: String,
    pub host: String,
    pub started_at: i64,
    /// `None` while it runs (or if the process died without shutting down).
    pub stopped_at: Option<i64>,
}

const COLUMNS: &str = "id, name, model, version, reference, endpoint, host, started_at, stopped_at";

fn from_row(r: &AnyRow) -> Result<Deployment> {
    Ok(Deployment {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        model: r.try_get("model")?,
        version: r.try_get::<i64, _>("version")?.to_string(),
        reference: r.try_get("reference")?,
        endpoint: r.try_get("endpoint")?,
        host: r.try_get("host")?,
        started_at: r.try_get("started_at")?,
        stopped_at: r.try_get("stopped_at")?,
    })
}

impl Store {
    /// Records a served version; returns the deployment id.
    pub async fn record_deployment(
        &self,
        name: String,
        model: String,
        version: &str,
        reference: String,
        endpoint: String,
        host: String,
    ) -> Result<String> {
        let version = crate::registry_versions::parse_version(version)?;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let id2 = id.clone();
        self.db
            .write(move |conn| {
                Box::pin(async move {
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "INSERT INTO kiln_deployments ({COLUMNS}) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL)"
                    )))
                    .bind(&id2)
                    .bind(&name)
                    .bind(&model)
                    .bind(version)
                    .bind(&reference)
                    .bind(&endpoint)
                    .bind(&host)
                    .bind(now_ms())
                    .execute(&mut *conn)
                    .await?;
                    Ok(())
                })
            })
            .await?;
        Ok(id)
    }

    /// Marks deployments stopped.
    pub async fn stop_deployments(&self, ids: Vec<String>) -> Result<()> {
        self.db
            .write(move |conn| {
                Box::pin(async move {
                    let now = now_ms();
                    for id in &ids {
                        sqlx::query("UPDATE kiln_deployments SET stopped_at = $1 WHERE id = $2")
                            .bind(now)
                            .bind(id)
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .await
    }

    /// The deployments of one version, newest first.
    pub async fn version_deployments(&self, model: &str, version: &str) -> Result<Vec<Deployment>> {
        let version = crate::registry_versions::parse_version(version)?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM kiln_deployments WHERE model = $1 AND version = $2 \
             ORDER BY started_at DESC"
        )))
        .bind(model)
        .bind(version)
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter().map(from_row).collect()
    }
}
