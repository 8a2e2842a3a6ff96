//! The store suite: every test runs against SQLite and, when reachable, PostgreSQL.

mod apply;
mod concurrency;
mod monitoring;
mod releases;
mod search;
mod tracking;

use kiln_store::Store;
use kiln_testkit::TestDb;

/// Opens a fresh store per available backend.
pub async fn stores() -> Vec<(TestDb, Store)> {
    let mut out = Vec::new();
    for db in TestDb::all().await {
        let store = Store::open(&db.url)
            .await
            .unwrap_or_else(|e| panic!("open {} store: {e}", db.kind));
        out.push((db, store));
    }
    out
}
