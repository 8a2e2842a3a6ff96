//! Kiln dataset versions: what was read (source, digest, schema, rows), its profile, and its
//! latest validation verdict. The data layer computes these; this module only keeps them.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::error::{Result, StoreError};
use crate::{Store, now_ms};

/// One version of a dataset.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DatasetVersion {
    pub name: String,
    pub version: i64,
    pub digest: String,
    pub source: String,
    pub format: String,
    /// JSON array of `{"name", "type"}`.
    pub schema_json: String,
    pub row_count: i64,
    pub bytes: i64,
    /// The dataset profile (kiln-data's JSON format), once computed.
    pub profile_json: Option<String>,
    /// The latest validation summary, once validated.
    pub validation_json: Option<String>,
    pub created_at: i64,
    pub last_seen_at: i64,
}

/// What the data layer reports about a dataset it has just read.
#[derive(Debug, Clone)]
pub struct DatasetVersionInput {
    pub name: String,
    pub digest: String,
    pub source: String,
    pub format: String,
    pub schema_json: String,
    pub row_count: i64,
    pub bytes: i64,
}

const COLUMNS: &str = "name, version, digest, source, format, schema_json, row_count, bytes, \
                       profile_json, validation_json, created_at, last_seen_at";

fn from_row(r: &AnyRow) -> Result<DatasetVersion> {
    Ok(DatasetVersion {
        name: r.try_get("name")?,
        version: r.try_get("version")?,
        digest: r.try_get("digest")?,
        source: r.try_get("source")?,
        format: r.try_get("format")?,
        schema_json: r.try_get("schema_json")?,
        row_count: r.try_get("row_count")?,
        bytes: r.try_get("bytes")?,
        profile_json: r.try_get("profile_json")?,
        validation_json: r.try_get("validation_json")?,
        created_at: r.try_get("created_at")?,
        last_seen_at: r.try_get("last_seen_at")?,
    })
}

fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 256 {
        return Err(StoreError::invalid(
            "dataset name must be 1 to 256 characters",
        ));
    }
    Ok(())
}

impl Store {
    /// Records that `input` was read: a new version the first time its digest is seen for
    /// this name, otherwise only `last_seen_at` moves. Returns the stored version.
    pub async fn record_dataset_version(
        &self,
        input: DatasetVersionInput,
    ) -> Result<DatasetVersion> {
        check_name(&input.name)?;
        let now = now_ms();
        let name = input.name.clone();
        let digest = input.digest.clone();
        self.db
            .write(move |conn| {
                Box::pin(async move {
                    let updated = sqlx::query(
                        "UPDATE kiln_dataset_versions SET last_seen_at = $1 WHERE name = $2 AND digest = $3",
                    )
                    .bind(now)
                    .bind(&input.name)
                    .bind(&input.digest)
                    .execute(&mut *conn)
                    .await?;
                    if updated.rows_affected() == 0 {
                        let next: i64 = sqlx::query_scalar(
                            "SELECT COALESCE(MAX(version), 0) + 1 FROM kiln_dataset_versions WHERE name = $1",
                        )
                        .bind(&input.name)
                        .fetch_one(&mut *conn)
                        .await?;
                        sqlx::query(
                            "INSERT INTO kiln_dataset_versions (name, digest, version, source, format, \
                             schema_json, row_count, bytes, created_at, last_seen_at) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
                        )
                        .bind(&input.name)
                        .bind(&input.digest)
                        .bind(next)
                        .bind(&input.source)
                        .bind(&input.format)
                        .bind(&input.schema_json)
                        .bind(input.row_count)
                        .bind(input.bytes)
                        .bind(now)
                        .execute(&mut *conn)
                        .await?;
                    }
                    Ok(())
                })
            })
            .await?;
        self.get_dataset_version(&name, &digest).await
    }

    /// Stores the profile of a version.
    pub async fn set_dataset_profile(
        &self,
        name: &str,
        digest: &str,
        profile_json: String,
    ) -> Result<()> {
        self.set_dataset_column(name, digest, "profile_json", profile_json)
            .await
    }

    /// Stores the latest validation summary of a version.
    pub async fn set_dataset_validation(
        &self,
        name: &str,
        digest: &str,
        validation_json: String,
    ) -> Result<()> {
        self.set_dataset_column(name, digest, "validation_json", validation_json)
            .await
    }

    async fn set_dataset_column(
        &self,
        name: &str,
        digest: &str,
        column: &'static str,
        value: String,
    ) -> Result<()> {
        let (name, digest) = (name.to_string(), digest.to_string());
        let (n2, d2) = (name.clone(), digest.clone());
        let changed = self
            .db
            .write(move |conn| {
                Box::pin(async move {
                    let sql = format!(
                        "UPDATE kiln_dataset_versions SET {column} = $1 WHERE name = $2 AND digest = $3"
                    );
                    let r = sqlx::query(sqlx::AssertSqlSafe(sql))
                        .bind(&value)
                        .bind(&n2)
                        .bind(&d2)
                        .execute(&mut *conn)
                        .await?;
                    Ok(r.rows_affected())
                })
            })
            .await?;
        if changed == 0 {
            return Err(StoreError::not_found(format!(
                "Dataset '{name}' has no version with digest '{digest}'"
            )));
        }
        Ok(())
    }

    /// One version by its full digest.
    pub async fn get_dataset_version(&self, name: &str, digest: &str) -> Result<DatasetVersion> {
        let sql =
            format!("SELECT {COLUMNS} FROM kiln_dataset_versions WHERE name = $1 AND digest = $2");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(name)
            .bind(digest)
            .fetch_optional(self.db.pool())
            .await?;
        match row {
            Some(r) => from_row(&r),
            None => Err(StoreError::not_found(format!(
                "Dataset '{name}' has no version with digest '{digest}'"
            ))),
        }
    }

    /// Finds a version by number (`3`, `v3`) or by a digest prefix of at least 6 characters.
    pub async fn find_dataset_version(&self, name: &str, selector: &str) -> Result<DatasetVersion> {
        let versions = self.list_dataset_versions(name).await?;
        let num = selector
            .strip_prefix('v')
            .unwrap_or(selector)
            .parse::<i64>()
            .ok();
        let matches: Vec<&DatasetVersion> = versions
            .iter()
            .filter(|v| {
                Some(v.version) == num || (selector.len() >= 6 && v.digest.starts_with(selector))
            })
            .collect();
        match matches.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(StoreError::not_found(format!(
                "Dataset '{name}' has no version '{selector}'"
            ))),
            _ => Err(StoreError::invalid(format!(
                "'{selector}' matches several versions of dataset '{name}'; give more of the digest"
            ))),
        }
    }

    /// Every version of a dataset, newest first.
    pub async fn list_dataset_versions(&self, name: &str) -> Result<Vec<DatasetVersion>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM kiln_dataset_versions WHERE name = $1 ORDER BY version DESC"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(name)
            .fetch_all(self.db.pool())
            .await?;
        rows.iter().map(from_row).collect()
    }

    /// The names of all datasets with at least one version.
    pub async fn list_dataset_names(&self) -> Result<Vec<String>> {
        let rows: Vec<String> =
            sqlx::query_scalar("SELECT DISTINCT name FROM kiln_dataset_versions ORDER BY name")
                .fetch_all(self.db.pool())
                .await?;
        Ok(rows)
    }
}
