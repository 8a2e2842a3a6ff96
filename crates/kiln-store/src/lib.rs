//! Kiln's stores: the metadata database (sqlx; SQLite by default, PostgreSQL for scale-out)
//! and the artifact store (`object_store`; a local directory by default, S3 by URL).
//!
//! One repository API for the rest of Kiln: methods on [`Store`] take plain values, validate
//! them against MLflow's limits, and return the entities of `kiln_core::entities`.

mod apply;
pub mod artifacts;
mod datasets;
pub mod db;
mod deployments;
pub mod error;
mod experiments;
mod history;
mod logged_model_search;
mod logged_models;
mod monitoring;
mod page;
mod registry;
mod registry_search;
mod registry_versions;
mod releases;
mod run_load;
mod run_search;
mod runs;
mod search_sql;
pub mod validation;

pub use apply::{ApplyRecord, ApplyRun, LockHolder};
pub use artifacts::{ArtifactStore, FileInfo};
pub use datasets::{DatasetVersion, DatasetVersionInput};
pub use db::{Backend, Db};
pub use deployments::Deployment;
pub use error::{Result, StoreError};
pub use experiments::ViewType;
pub use logged_models::{
    LoggedModelCreate, LoggedModelDataset, LoggedModelOrder, LoggedModelSearch, ModelMetricInput,
};
pub use monitoring::{Event, Feedback, Incident, NewEvent, NewIncident, TimelineEntry};
pub use registry::CreateModelVersion;
pub use registry_search::RegistrySearch;
pub use releases::{AliasMove, Expect, NewEvaluation, StoredPolicy};
pub use runs::{BatchInput, MetricInput, RunCreate, RunSearch, RunUpdate};

/// Milliseconds since the Unix epoch, the unit of every MLflow timestamp.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The metadata repository. Cheap to clone; all clones share one pool and one writer.
#[derive(Clone)]
pub struct Store {
    db: Db,
}

impl Store {
    /// Opens the metadata store at `url` (see [`Db::open`]) and makes sure the default
    /// experiment "0" exists.
    pub async fn open(url: &str) -> Result<Store> {
        let db = Db::open(url).await?;
        let store = Store { db };
        store.ensure_default_experiment().await?;
        Ok(store)
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    pub async fn close(&self) {
        self.db.close().await;
    }
}
