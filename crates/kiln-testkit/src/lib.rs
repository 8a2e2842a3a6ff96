//! Test support shared by Kiln's crates: fresh databases for both store backends and a
//! real `kiln server` process on 127.0.0.1:0. Dev-only.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use sqlx::Connection;
use sqlx::postgres::PgConnection;

/// The PostgreSQL server tests use; override with `KILN_TEST_PG`.
pub fn pg_admin_url() -> String {
    std::env::var("KILN_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

/// A database for one test: an SQLite file in a temp dir, or a fresh PostgreSQL database.
pub struct TestDb {
    pub kind: &'static str,
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("kiln.db").display());
        TestDb {
            kind: "sqlite",
            url,
            _dir: Some(dir),
        }
    }

    /// A fresh, empty PostgreSQL database, or `None` (with a printed notice) when no
    /// server answers. With `KILN_REQUIRE_PG=1` an unreachable server is a test failure.
    pub async fn postgres() -> Option<TestDb> {
        let admin = pg_admin_url();
        let mut conn = match PgConnection::connect(&admin).await {
            Ok(c) => c,
            Err(e) => {
                if std::env::var("KILN_REQUIRE_PG").as_deref() == Ok("1") {
                    panic!("KILN_REQUIRE_PG=1 but PostgreSQL at {admin} is unreachable: {e}");
                }
                eprintln!(
                    "notice: PostgreSQL at {admin} is unreachable ({e}); skipping the PostgreSQL suite"
                );
                return None;
            }
        };
        let name = format!("kiln_test_{}", uuid::Uuid::new_v4().simple());
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("create test database");
        let mut url = url::Url::parse(&admin).expect("KILN_TEST_PG is a URL");
        url.set_path(&name);
        Some(TestDb {
            kind: "postgres",
            url: url.to_string(),
            _dir: None,
        })
    }

    /// Every backend available here: SQLite always, PostgreSQL when reachable.
    pub async fn all() -> Vec<TestDb> {
        let mut out = vec![TestDb::sqlite()];
        out.extend(TestDb::postgres().await);
        out
    }
}

impl Drop for TestDb {
    /// Drops a PostgreSQL test database (even if a pool still holds connections to it).
    fn drop(&mut self) {
        if self.kind != "postgres" {
            return;
        }
        let Some(name) = url::Url::parse(&self.url)
            .ok()
            .map(|u| u.path().trim_start_matches('/').to_string())
        else {
            return;
        };
        // Drop may run inside an async runtime; do the async work on a thread of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let mut conn = PgConnection::connect(&pg_admin_url()).await.ok()?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut conn)
                .await
                .ok()
            })
        })
        .join();
    }
}

/// A `kiln server` child process listening on 127.0.0.1 at a port the OS chose.
pub struct ServerProcess {
    pub url: String,
    pub child: Child,
}

impl ServerProcess {
    /// Starts `bin server --host 127.0.0.1 --port 0 --data-dir DIR [extra…]` and waits for
    /// its "Listening on" line.
    pub fn start(bin: &Path, data_dir: &Path, extra: &[&str]) -> ServerProcess {
        let mut child = Command::new(bin)
            .args(["server", "--host", "127.0.0.1", "--port", "0", "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .env("KILN_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn kiln server");
        let stdout = child.stdout.take().expect("stdout piped");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the Listening line");
        let url = line
            .trim()
            .strip_prefix("Listening on ")
            .unwrap_or_else(|| panic!("unexpected first line from kiln server: {line:?}"))
            .to_string();
        ServerProcess { url, child }
    }

    /// SIGKILL: the crash the durability tests simulate.
    pub fn kill_hard(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `cond` every 10 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < timeout {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    cond()
}
