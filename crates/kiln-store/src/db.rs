//! The metadata database: one sqlx `Any` pool for reads and one writer task that applies
//! writes in group-committed transactions.
//!
//! Why a single writer: SQLite admits one writer at a time, and a commit costs one fsync of
//! the WAL. Funnelling writes through one task lets every write that arrived while the
//! previous commit was in flight share the next commit (group commit), so durability does
//! not cost throughput. Each write runs inside its own SAVEPOINT, so one failing write (a
//! conflicting param, say) is rolled back alone and the others in the batch still commit.
//! A caller is answered only after the commit returned: an acknowledged write is durable.

use std::any::Any as StdAny;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::FutureExt;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyConnection, AnyPool, Connection};
use tokio::sync::{mpsc, oneshot};

use crate::error::{Result, StoreError};

/// Which SQL dialect the pool speaks; only a few statements differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub type BoxFut<'c, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'c>>;
type Erased = Box<dyn StdAny + Send>;
type Op = Box<dyn for<'c> FnOnce(&'c mut AnyConnection) -> BoxFut<'c, Erased> + Send>;

struct Job {
    op: Op,
    reply: oneshot::Sender<Result<Erased>>,
}

/// Most writes one commit may carry. Bounded so a burst cannot hold the write lock for long.
const MAX_GROUP: usize = 512;

/// The metadata database handle. Cheap to clone.
#[derive(Clone)]
pub struct Db {
    pub(crate) pool: AnyPool,
    pub(crate) backend: Backend,
    writer: mpsc::Sender<Job>,
    stats: Arc<WriterStats>,
}

/// Counters of the writer, for tests and metrics: how many writes shared how many commits.
#[derive(Debug, Default)]
pub struct WriterStats {
    pub commits: AtomicU64,
    pub writes: AtomicU64,
}

static MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "init", include_str!("../migrations/0001_init.sql")),
    (
        2,
        "datasets",
        include_str!("../migrations/0002_datasets.sql"),
    ),
    (
        3,
        "releases",
        include_str!("../migrations/0003_releases.sql"),
    ),
    (
        4,
        "deployments",
        include_str!("../migrations/0004_deployments.sql"),
    ),
    (
        5,
        "monitoring",
        include_str!("../migrations/0005_monitoring.sql"),
    ),
    (6, "apply", include_str!("../migrations/0006_apply.sql")),
];

impl Db {
    /// Opens (creating if needed) the database at `url` and brings its schema up to date.
    /// `sqlite://PATH` and `postgres://…` URLs are accepted.
    pub async fn open(url: &str) -> Result<Db> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(StoreError::Config(format!(
                "unsupported store URL {url:?}: expected sqlite://PATH or postgres://…"
            )));
        };
        let url = match backend {
            Backend::Sqlite if !url.contains("mode=") => {
                let sep = if url.contains('?') { '&' } else { '?' };
                format!("{url}{sep}mode=rwc")
            }
            _ => url.to_string(),
        };
        let options: AnyConnectOptions = url
            .parse()
            .map_err(|e| StoreError::Config(format!("invalid store URL: {e}")))?;
        let pool = AnyPoolOptions::new()
            .max_connections(match backend {
                Backend::Sqlite => 8,
                Backend::Postgres => 16,
            })
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Postgres {
                        // A stuck statement must not hold the single writer forever.
                        sqlx::raw_sql("SET statement_timeout = '60s'; SET lock_timeout = '30s'")
                            .execute(&mut *conn)
                            .await?;
                    }
                    if backend == Backend::Sqlite {
                        // WAL lets readers proceed while the writer commits. synchronous=FULL
                        // fsyncs the WAL on every commit, so an acknowledged write survives
                        // a crash of the process and of the machine.
                        sqlx::raw_sql(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                             PRAGMA busy_timeout = 10000; PRAGMA cache_size = -4000; \
                             PRAGMA temp_store = MEMORY;",
                        )
                        .execute(&mut *conn)
                        .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        migrate(&pool, backend).await?;
        let (tx, rx) = mpsc::channel::<Job>(4096);
        let writer_conn = pool.acquire().await?.detach();
        let stats = Arc::new(WriterStats::default());
        tokio::spawn(writer_loop(
            pool.clone(),
            backend,
            writer_conn,
            rx,
            stats.clone(),
        ));
        Ok(Db {
            pool,
            backend,
            writer: tx,
            stats,
        })
    }

    /// Opens the default embedded store: `kiln.db` in `data_dir`.
    pub async fn open_sqlite_dir(data_dir: &Path) -> Result<Db> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            StoreError::Config(format!(
                "cannot create data directory {}: {e}",
                data_dir.display()
            ))
        })?;
        let path = data_dir.join("kiln.db");
        Db::open(&format!("sqlite://{}", path.display())).await
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// `column` as an ORDER BY term that sorts text by bytes on both backends (PostgreSQL
    /// would otherwise use the locale's collation and page differently from SQLite).
    pub(crate) fn text_order(&self, column: &str) -> String {
        match self.backend {
            Backend::Sqlite => column.to_string(),
            Backend::Postgres => format!("{column} COLLATE \"C\""),
        }
    }

    /// Whether the writer task is alive (false after it stopped for good).
    pub fn writer_alive(&self) -> bool {
        !self.writer.is_closed()
    }

    /// (commits, writes) so far: with concurrent writers, commits < writes.
    pub fn writer_stats(&self) -> (u64, u64) {
        (
            self.stats.commits.load(Ordering::Relaxed),
            self.stats.writes.load(Ordering::Relaxed),
        )
    }

    /// Runs `f` in the next group commit and returns its result once that commit is durable.
    /// `f` sees a connection inside an open transaction; if it returns an error, its own
    /// changes are rolled back and the error is returned.
    pub async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut AnyConnection) -> BoxFut<'c, T> + Send + 'static,
    {
        let op: Op = Box::new(move |conn| {
            let fut = f(conn);
            Box::pin(async move { fut.await.map(|v| Box::new(v) as Erased) })
        });
        let (reply, rx) = oneshot::channel();
        self.writer
            .send(Job { op, reply })
            .await
            .map_err(|_| StoreError::Unavailable("the writer has stopped".into()))?;
        let out = rx
            .await
            .map_err(|_| StoreError::Unavailable("the writer dropped a request".into()))??;
        Ok(*out
            .downcast::<T>()
            .expect("the writer returns the type its op produced"))
    }

    /// Closes the pool after the writer has drained.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// The PostgreSQL advisory lock that serialises schema migrations across processes
/// (`kiln` in ASCII).
const MIGRATION_LOCK: i64 = 0x6b69_6c6e;

/// Brings the schema up to date. Several processes may open one database at the same moment
/// (replicas of the control and data planes starting together, a `kiln train` beside a
/// server): exactly one applies each migration and the others wait for it and then find it
/// applied. On PostgreSQL the whole run holds a session advisory lock; on SQLite each
/// migration runs in a `BEGIN IMMEDIATE` transaction (the database's write lock) and checks
/// again, under the lock, that no other process applied it meanwhile.
async fn migrate(pool: &AnyPool, backend: Backend) -> Result<()> {
    let mut conn = pool.acquire().await?;
    if backend == Backend::Sqlite {
        return apply_migrations(&mut conn, backend).await;
    }
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *conn)
        .await?;
    let applied = apply_migrations(&mut conn, backend).await;
    let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *conn)
        .await;
    if unlocked.is_err() {
        // The connection may still hold the lock: it must not go back to the pool. Closing
        // it ends the session, which releases the lock.
        conn.close_on_drop();
    }
    applied?;
    unlocked?;
    Ok(())
}

async fn apply_migrations(conn: &mut AnyConnection, backend: Backend) -> Result<()> {
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS kiln_schema_migrations (\
         version BIGINT PRIMARY KEY, description TEXT NOT NULL, applied_at BIGINT NOT NULL)",
    )
    .execute(&mut *conn)
    .await?;
    for (version, description, sql) in MIGRATIONS {
        if is_applied(&mut *conn, *version).await? {
            continue;
        }
        let mut tx = match backend {
            Backend::Sqlite => conn.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => conn.begin().await?,
        };
        // Another process may have applied it between the check and the lock.
        if is_applied(&mut tx, *version).await? {
            tx.rollback().await?;
            continue;
        }
        let sql = match backend {
            Backend::Sqlite => sql.replace("/*CLUSTERED*/", "WITHOUT ROWID"),
            Backend::Postgres => sql.to_string(),
        };
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO kiln_schema_migrations (version, description, applied_at) VALUES ($1, $2, $3)",
        )
        .bind(*version)
        .bind(*description)
        .bind(crate::now_ms())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        tracing::info!(version, description, "applied migration");
    }
    Ok(())
}

async fn is_applied(conn: &mut AnyConnection, version: i64) -> Result<bool> {
    let found: Option<i64> =
        sqlx::query_scalar("SELECT version FROM kiln_schema_migrations WHERE version = $1")
            .bind(version)
            .fetch_optional(&mut *conn)
            .await?;
    Ok(found.is_some())
}

async fn writer_loop(
    pool: AnyPool,
    backend: Backend,
    mut conn: AnyConnection,
    mut rx: mpsc::Receiver<Job>,
    stats: Arc<WriterStats>,
) {
    while let Some(first) = rx.recv().await {
        let mut jobs = Vec::with_capacity(16);
        jobs.push(first);
        while jobs.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        match run_group(&mut conn, backend, jobs, &stats).await {
            Ok(()) => {}
            Err(e) => {
                // The connection may be broken; get a fresh one before the next group.
                tracing::error!(error = %e, "group commit failed");
                loop {
                    match pool.acquire().await {
                        Ok(c) => {
                            conn = c.detach();
                            break;
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "writer cannot reconnect; retrying");
                            tokio::time::sleep(Duration::from_millis(500)).await;
                        }
                    }
                }
            }
        }
    }
}

/// Applies one group of writes in one transaction and answers every caller after commit.
async fn run_group(
    conn: &mut AnyConnection,
    backend: Backend,
    jobs: Vec<Job>,
    stats: &WriterStats,
) -> Result<()> {
    let n = jobs.len() as u64;
    let mut results: Vec<(oneshot::Sender<Result<Erased>>, Result<Erased>)> =
        Vec::with_capacity(jobs.len());
    let outcome: Result<()> = async {
        // IMMEDIATE takes SQLite's write lock up front, so another process writing the same
        // file makes us wait (busy_timeout) instead of failing at the first write.
        // Each statement is a round trip to the database (for SQLite, to its own thread),
        // so savepoint bookkeeping rides along with its neighbours: the savepoint of the
        // first write opens with the transaction, each next one replaces the previous in
        // one statement, and the last is released with the commit.
        let begin = match backend {
            Backend::Sqlite => "BEGIN IMMEDIATE; SAVEPOINT kiln_op",
            Backend::Postgres => "BEGIN; SAVEPOINT kiln_op",
        };
        sqlx::raw_sql(begin).execute(&mut *conn).await?;
        for (i, job) in jobs.into_iter().enumerate() {
            if i > 0 {
                sqlx::raw_sql("RELEASE SAVEPOINT kiln_op; SAVEPOINT kiln_op")
                    .execute(&mut *conn)
                    .await?;
            }
            // A panic inside one write (a driver bug, say) must not kill the writer task:
            // it fails this group, the connection is replaced, and the writer goes on.
            let r = match AssertUnwindSafe((job.op)(&mut *conn)).catch_unwind().await {
                Ok(r) => r,
                Err(_) => {
                    let _ = job.reply.send(Err(StoreError::Unavailable(
                        "a write failed unexpectedly; nothing of it was written".into(),
                    )));
                    return Err(StoreError::Unavailable("a write panicked".into()));
                }
            };
            if r.is_err() {
                // Undo this write alone; the savepoint stays open for the next transition.
                sqlx::raw_sql("ROLLBACK TO SAVEPOINT kiln_op")
                    .execute(&mut *conn)
                    .await?;
            }
            results.push((job.reply, r));
        }
        sqlx::raw_sql("RELEASE SAVEPOINT kiln_op; COMMIT")
            .execute(&mut *conn)
            .await?;
        Ok(())
    }
    .await;
    match outcome {
        Ok(()) => {
            // Counted before anyone is answered, so a caller that reads the counters after
            // its write returned sees that write counted.
            stats.commits.fetch_add(1, Ordering::Relaxed);
            stats.writes.fetch_add(n, Ordering::Relaxed);
            for (reply, r) in results {
                let _ = reply.send(r);
            }
            Ok(())
        }
        Err(e) => {
            let _ = sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await;
            let msg = e.to_string();
            for (reply, _) in results {
                let _ = reply.send(Err(StoreError::Unavailable(format!(
                    "the transaction failed; the write may not have been applied: {msg}"
                ))));
            }
            Err(e)
        }
    }
}
