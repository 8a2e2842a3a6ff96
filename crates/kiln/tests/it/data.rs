//! `kiln data …` end to end on the bundled nycflights13 tables: reports, exit statuses,
//! quarantine files, versions, inferred expectations and feature builds.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::kiln_bin;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn kiln_data(data_dir: &Path, args: &[&str]) -> Output {
    let config = repo().join("kiln.toml");
    Command::new(kiln_bin())
        .arg("data")
        .args(args)
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(data_dir)
        .env("KILN_LOG", "warn")
        .env_remove("KILN_STORE")
        .output()
        .expect("kiln runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The weather table's first `n` data lines, with `extra` rows appended.
fn weather_batch(dir: &Path, n: usize, extra: &[&str]) -> PathBuf {
    let all = std::fs::read_to_string(repo().join("data/nycflights13/weather.csv")).unwrap();
    let mut out: Vec<&str> = all.lines().take(n + 1).collect();
    out.extend_from_slice(extra);
    let p = dir.join("batch.csv");
    std::fs::write(&p, out.join("\n") + "\n").unwrap();
    p
}

#[test]
fn validate_passes_the_bundled_weather_and_quarantines_the_one_bad_reading() {
    let dir = tempfile::tempdir().unwrap();
    let out = kiln_data(dir.path(), &["validate", "weather"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("PASSED: all 6 rules"), "{stdout}");
    assert!(stdout.contains("26,115 rows"), "{stdout}");
    // The 1,048 mph wind reading breaks its rule (which passes thanks to `mostly`) and is
    // quarantined with its line.
    assert!(stdout.contains("1 rows quarantined"), "{stdout}");
    let q = std::fs::read_dir(dir.path().join("quarantine/weather"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let qtext = std::fs::read_to_string(&q).unwrap();
    let mut lines = qtext.lines();
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("_row,_line,_rules,origin,")
    );
    let row = lines.next().unwrap();
    assert!(row.contains("between(wind_speed)"), "{row}");
    assert!(row.contains("1048.36"), "{row}");
    assert!(lines.next().is_none());
}

#[test]
fn a_bad_batch_fails_with_examples_and_every_bad_row_is_quarantined() {
    let dir = tempfile::tempdir().unwrap();
    let batch = weather_batch(
        dir.path(),
        200,
        &[
            "XXX,2013,1,9,1,39.02,26.06,59.37,270,10.35,NA,0,1012,10,2013-01-09T06:00:00Z",
            "EWR,2013,1,9,2,39.02,26.96,161.63,250,8.05,NA,0,1012.3,10,2013-01-09T07:00:00Z",
            "JFK,2013,1,9,3,-40,26.96,61.63,250,8.05,NA,0,1012.3,10,NA",
        ],
    );
    let out = kiln_data(
        dir.path(),
        &[
            "validate",
            "weather",
            "--source",
            batch.to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["success"], false);
    assert_eq!(report["rows"], 203);
    let rule = |name: &str| {
        report["rules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .unwrap()
            .clone()
    };
    let origin = rule("in_set(origin)");
    assert_eq!(origin["success"], false);
    assert_eq!(origin["failing"], 1);
    assert_eq!(origin["examples"][0]["row"], 201);
    assert_eq!(origin["examples"][0]["line"], 202);
    assert_eq!(origin["examples"][0]["value"], "XXX");
    assert_eq!(rule("between(humid)")["failing"], 1);
    assert_eq!(rule("between(temp)")["failing"], 1);
    assert_eq!(rule("not_null(time_hour)")["failing"], 1);
    assert_eq!(report["quarantined_rows"], 3);
    let q = report["quarantine"].as_str().unwrap();
    let qtext = std::fs::read_to_string(q).unwrap();
    assert_eq!(qtext.lines().count(), 4, "{qtext}");
    assert!(
        qtext.contains("not_null(time_hour);between(temp)"),
        "{qtext}"
    );

    // The human report names the failing rule and the example's row and line.
    let out = kiln_data(
        dir.path(),
        &["validate", "weather", "--source", batch.to_str().unwrap()],
    );
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout.contains("FAIL  in_set(origin)"), "{stdout}");
    assert!(stdout.contains("row 201 (line 202): \"XXX\""), "{stdout}");
    assert!(stdout.contains("FAILED: 4 of 6 rules"), "{stdout}");

    // The batch is a version of `weather`, marked as failed.
    let out = kiln_data(dir.path(), &["versions", "weather"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(stdout.contains("  v1  "), "{stdout}");
    assert!(stdout.contains("FAILED"), "{stdout}");
    assert!(!stdout.contains("  v2  "), "{stdout}");

    // Validating the bundled file adds a second version that passed.
    let out = kiln_data(dir.path(), &["validate", "weather"]);
    assert_eq!(out.status.code(), Some(0));
    let out = kiln_data(dir.path(), &["versions", "weather", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2);
    assert_eq!(v[0]["version"], 2);
    assert_eq!(v[0]["validation"]["success"], true);
    assert_eq!(v[1]["validation"]["success"], false);
    assert_ne!(v[0]["digest"], v[1]["digest"]);
}

#[test]
fn unreadable_input_is_an_error_naming_file_and_line_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let batch = weather_batch(dir.path(), 50, &["EWR,2013,1,9,2,39.02"]);
    let out = kiln_data(
        dir.path(),
        &["validate", "weather", "--source", batch.to_str().unwrap()],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("batch.csv:52:"), "{stderr}");
    assert!(stderr.contains("expected 15 fields"), "{stderr}");
    assert!(!dir.path().join("quarantine").exists());

    // A wrongly typed value in an overridden column: line and column named.
    let batch = weather_batch(
        dir.path(),
        5,
        &["EWR,2013,1,9,2,39.02,26.96,61.63,250,8.05,NA,0,1012.3,10,yesterday"],
    );
    let out = kiln_data(
        dir.path(),
        &["validate", "weather", "--source", batch.to_str().unwrap()],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("batch.csv:7:"), "{stderr}");
    assert!(stderr.contains("column `time_hour`"), "{stderr}");

    // An unknown dataset lists the declared ones.
    let out = kiln_data(dir.path(), &["validate", "nope"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr.contains("no dataset `nope` (declared: flights, weather)"),
        "{stderr}"
    );
}

#[test]
fn infer_proposes_expectations_that_parse_as_kiln_toml_and_pass() {
    let dir = tempfile::tempdir().unwrap();
    let out = kiln_data(dir.path(), &["infer", "weather"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let proposed = text(&out.stdout);
    assert!(proposed.contains("[[data.weather.expect]]"), "{proposed}");
    // Paste them into a project of their own and validate the same data with them.
    let weather = repo().join("data/nycflights13/weather.csv");
    let project = format!(
        "[data.weather]\nsource = {:?}\n[data.weather.schema]\norigin = \"categorical\"\ntime_hour = \"timestamp\"\n\n{proposed}",
        weather.display().to_string()
    );
    let cfg = dir.path().join("kiln.toml");
    std::fs::write(&cfg, project).unwrap();
    let out = Command::new(kiln_bin())
        .args(["data", "validate", "weather", "--config"])
        .arg(&cfg)
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[test]
fn features_build_the_canonical_flights_weather_table_and_reuse_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = kiln_data(dir.path(), &["features", "delay", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["reused"], false);
    assert_eq!(s["rows_in"], 336_776);
    // Cancelled flights break `not_null(dep_time)` (allowed by `mostly`): quarantined and
    // left out, and counted.
    assert_eq!(s["quarantined"], 8255);
    let (train, valid, test) = (
        s["train"].as_u64().unwrap(),
        s["valid"].as_u64().unwrap(),
        s["test"].as_u64().unwrap(),
    );
    assert!(train > 40_000 && valid > 10_000 && test > 10_000, "{s}");
    assert!(s["joins"][0]["matched"].as_u64().unwrap() > (train + valid + test) * 9 / 10);
    let dir_out = PathBuf::from(s["output"].as_str().unwrap());
    assert!(dir_out.join("features.parquet").is_file());
    let spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir_out.join("spec.json")).unwrap()).unwrap();
    let outputs: Vec<&str> = spec["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(outputs.contains(&"carrier=UA"), "{outputs:?}");
    assert!(outputs.contains(&"origin=JFK"), "{outputs:?}");
    assert!(outputs.contains(&"temp"), "{outputs:?}");

    let again = kiln_data(dir.path(), &["features", "delay", "--json"]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stderr));
    let s2: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(s2["reused"], true);
    assert_eq!(s2["build_digest"], s["build_digest"]);

    // The feature table is recorded as a dataset version of its own.
    let out = kiln_data(dir.path(), &["versions", "features.delay", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["rows"].as_u64().unwrap(), train + valid + test);
}
