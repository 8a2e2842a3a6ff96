use std::time::{Duration, Instant};

use kiln_testkit::ServerProcess;

use crate::kiln_bin;

#[tokio::test]
async fn starts_fast_serves_health_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let mut server = ServerProcess::start(&kiln_bin(), dir.path(), &[]);
    let health = reqwest::get(format!("{}/health", server.url))
        .await
        .unwrap();
    let elapsed = started.elapsed();
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().await.unwrap(), "OK");
    // Generous bound for a debug build on a loaded CI machine; the benchmark measures the
    // release figure.
    assert!(
        elapsed < Duration::from_secs(5),
        "start-up took {elapsed:?}"
    );
    let version = reqwest::get(format!("{}/version", server.url))
        .await
        .unwrap();
    assert_eq!(version.status(), 200);
    let v = version.text().await.unwrap();
    assert_eq!(v.split('.').count(), 3, "{v}");
    assert!(
        dir.path().join("kiln.db").exists(),
        "SQLite store lives in the data dir"
    );

    let pid = server.child.id().to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let exited = kiln_testkit::wait_until(Duration::from_secs(10), || {
        matches!(server.child.try_wait(), Ok(Some(_)))
    });
    assert!(exited, "server did not exit after SIGTERM");
    assert!(server.child.wait().unwrap().success());
}

#[test]
fn a_bad_store_url_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(kiln_bin())
        .args([
            "server",
            "--port",
            "0",
            "--store",
            "mysql://x/y",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unsupported store URL"), "{err}");
}

/// `kiln export k8s … | head -1`: when the reader of a report goes away, kiln stops as Unix
/// filters do (SIGPIPE), not with a panic about a broken pipe.
#[test]
fn a_report_into_a_closed_pipe_ends_quietly() {
    use std::os::unix::process::ExitStatusExt;
    use std::process::{Command, Stdio};
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/../../kiln.toml");
    // A pipe whose reading end is already closed: kiln's first write to stdout fails.
    let (reader, writer) = nix::unistd::pipe().unwrap();
    drop(reader);
    let out = Command::new(kiln_bin())
        .args(["export", "k8s", "--config", config])
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.signal(), Some(13), "{:?}: {stderr}", out.status);
}
