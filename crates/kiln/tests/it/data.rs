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

/// The weather table by month, as CSV files: every other January–March row as the reference,
/// the rows between held back, and July.
struct WeatherSplit {
    reference: PathBuf,
    held_back: PathBuf,
    july: PathBuf,
    july_rows: u64,
}

fn weather_split(dir: &Path) -> WeatherSplit {
    let all = std::fs::read_to_string(repo().join("data/nycflights13/weather.csv")).unwrap();
    let mut lines = all.lines();
    let header = lines.next().unwrap();
    assert!(header.starts_with("origin,year,month,"), "{header}");
    let (mut reference, mut held_back, mut july) = (vec![header], vec![header], vec![header]);
    let mut q1 = 0usize;
    for line in lines {
        match line.split(',').nth(2).unwrap().parse::<u32>().unwrap() {
            1..=3 => {
                if q1.is_multiple_of(2) {
                    reference.push(line);
                } else {
                    held_back.push(line);
                }
                q1 += 1;
            }
            7 => july.push(line),
            _ => {}
        }
    }
    let write = |name: &str, rows: &[&str]| {
        let p = dir.join(name);
        std::fs::write(&p, rows.join("\n") + "\n").unwrap();
        p
    };
    WeatherSplit {
        reference: write("q1-even.csv", &reference),
        held_back: write("q1-odd.csv", &held_back),
        july_rows: july.len() as u64 - 1,
        july: write("july.csv", &july),
    }
}

/// `kiln data drift …` in `cwd` (no project file there).
fn kiln_drift(cwd: &Path, args: &[&str]) -> Output {
    Command::new(kiln_bin())
        .args(["data", "drift"])
        .args(args)
        .current_dir(cwd)
        .env("KILN_LOG", "warn")
        .output()
        .expect("kiln runs")
}

fn drift_json(out: &Output) -> serde_json::Value {
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("a JSON report")
}

fn column<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["columns"]
        .as_array()
        .unwrap()
        .iter()
        .chain(report["outputs"].as_array().into_iter().flatten())
        .find(|c| c["column"] == name)
        .unwrap_or_else(|| panic!("no column {name} in {report}"))
}

#[test]
fn drift_of_july_weather_against_january_to_march_needs_no_project() {
    let dir = tempfile::tempdir().unwrap();
    let w = weather_split(dir.path());
    let (reference, july, held) = (
        w.reference.to_str().unwrap(),
        w.july.to_str().unwrap(),
        w.held_back.to_str().unwrap(),
    );

    // The table: drift is a finding, not an error.
    let out = kiln_drift(dir.path(), &["--reference", reference, july]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("dataset drift: YES"), "{stdout}");
    let temp = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("temp "))
        .unwrap();
    assert!(
        temp.contains("wasserstein") && temp.ends_with("DRIFT"),
        "{temp}"
    );

    let r = drift_json(&kiln_drift(
        dir.path(),
        &["--reference", reference, july, "--json"],
    ));
    assert_eq!(r["dataset_drift"], true);
    assert_eq!(r["current_rows"], w.july_rows);
    for c in ["temp", "dewp", "humid"] {
        assert_eq!(column(&r, c)["drifted"], true, "{c}");
        assert_eq!(column(&r, c)["method"], "wasserstein", "{c}");
    }
    // The timestamp is not compared by default.
    assert!(
        r["columns"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["column"] != "time_hour")
    );

    // --fail-on-drift turns the finding into exit status 1.
    let out = kiln_drift(
        dir.path(),
        &["--reference", reference, july, "--fail-on-drift"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));

    // The held-back half of January–March: nothing drifts, so even --fail-on-drift passes.
    let r = drift_json(&kiln_drift(
        dir.path(),
        &["--reference", reference, held, "--json", "--fail-on-drift"],
    ));
    assert_eq!(r["dataset_drift"], false);
    assert_eq!(r["drifted_columns"], 0, "{r}");
    assert!(r["columns"].as_array().unwrap().len() >= 12);

    // Methods forced, columns chosen, an output marked.
    let r = drift_json(&kiln_drift(
        dir.path(),
        &[
            "--reference",
            reference,
            july,
            "--json",
            "--columns",
            "temp,origin",
            "--method",
            "psi",
            "--column-method",
            "origin=chisquare",
            "--outputs",
            "humid",
        ],
    ));
    assert_eq!(r["columns"].as_array().unwrap().len(), 2);
    assert_eq!(column(&r, "temp")["method"], "psi");
    assert_eq!(column(&r, "origin")["method"], "chisquare");
    assert_eq!(column(&r, "humid")["method"], "psi");
    assert_eq!(r["outputs"][0]["column"], "humid");
    assert_eq!(r["prediction_drift"], column(&r, "humid")["drifted"]);

    // Floors: without the KS floor a tiny effect on many rows would count; the floor is
    // reported with the statistic.
    let r = drift_json(&kiln_drift(
        dir.path(),
        &[
            "--reference",
            reference,
            held,
            "--json",
            "--method",
            "ks",
            "--columns",
            "temp,dewp",
            "--ks-floor",
            "0.2",
        ],
    ));
    assert_eq!(column(&r, "temp")["effect"]["floor"], 0.2);
    assert_eq!(column(&r, "temp")["effect"]["measure"], "ks_statistic");
}

#[test]
fn drift_against_a_profile_and_by_windows() {
    let dir = tempfile::tempdir().unwrap();
    let w = weather_split(dir.path());
    let profile = dir.path().join("q1.profile.json");
    let out = kiln_data(
        dir.path(),
        &[
            "profile",
            "weather",
            "--source",
            w.reference.to_str().unwrap(),
            "--out",
            profile.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let (profile, july) = (profile.to_str().unwrap(), w.july.to_str().unwrap());

    let r = drift_json(&kiln_drift(
        dir.path(),
        &["--reference", profile, july, "--json"],
    ));
    assert_eq!(r["dataset_drift"], true);
    assert_eq!(column(&r, "temp")["drifted"], true);
    // The project calls `origin` categorical; the profile says so, and the file is read so.
    assert_eq!(column(&r, "origin")["dtype"], "categorical");
    assert_eq!(column(&r, "origin")["method"], "jensenshannon");

    // Weekly windows of July's `time_hour`.
    let r = drift_json(&kiln_drift(
        dir.path(),
        &[
            "--reference",
            profile,
            july,
            "--json",
            "--window",
            "1w",
            "--timestamp",
            "time_hour",
        ],
    ));
    let windows = r["windows"].as_array().unwrap();
    assert!(
        (5..=6).contains(&windows.len()),
        "{} windows",
        windows.len()
    );
    let rows: u64 = windows
        .iter()
        .map(|x| x["window"]["rows"].as_u64().unwrap())
        .sum();
    assert_eq!(rows, w.july_rows);
    for x in windows {
        assert_eq!(x["report"]["current_rows"], x["window"]["rows"]);
        assert!(x["window"]["start"].as_str().unwrap() < x["window"]["end"].as_str().unwrap());
        assert_eq!(column(&x["report"], "temp")["drifted"], true);
    }
    // Row windows.
    let r = drift_json(&kiln_drift(
        dir.path(),
        &[
            "--reference",
            profile,
            july,
            "--json",
            "--window-rows",
            "500",
        ],
    ));
    let windows = r["windows"].as_array().unwrap();
    assert_eq!(windows.len() as u64, w.july_rows.div_ceil(500));
    assert_eq!(windows[1]["window"]["first_row"], 500);
    let text_out = kiln_drift(
        dir.path(),
        &["--reference", profile, july, "--window-rows", "500"],
    );
    let stdout = text(&text_out.stdout);
    assert!(
        stdout.contains("window 1: rows 500..1,000, 500 rows"),
        "{stdout}"
    );
}

#[test]
fn drift_errors_name_the_column_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let w = weather_split(dir.path());
    let (reference, july) = (w.reference.to_str().unwrap(), w.july.to_str().unwrap());
    let fails = |args: &[&str], expected: &str| {
        let out = kiln_drift(dir.path(), args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    };
    fails(
        &["--reference", reference, july, "--columns", "temp,nope"],
        "no column `nope` in the reference profile",
    );
    fails(
        &["--reference", reference, july, "--method", "kolmogorov"],
        "unknown method \"kolmogorov\"",
    );
    fails(
        &["--reference", reference, july, "--method", "ks"],
        "method `ks` compares numeric columns, and column `origin` is string",
    );

    // July with `temp` as words, and without `dewp`.
    let all = std::fs::read_to_string(&w.july).unwrap();
    let mut lines = all.lines();
    let header = lines.next().unwrap();
    let mut worded = vec![header.to_string()];
    let mut dropped = vec![header.replace(",dewp,", ",")];
    for line in lines {
        let mut cells: Vec<&str> = line.split(',').collect();
        cells[5] = "warm";
        worded.push(cells.join(","));
        let mut cells: Vec<&str> = line.split(',').collect();
        cells.remove(6);
        dropped.push(cells.join(","));
    }
    let worded_path = dir.path().join("worded.csv");
    std::fs::write(&worded_path, worded.join("\n") + "\n").unwrap();
    let dropped_path = dir.path().join("dropped.csv");
    std::fs::write(&dropped_path, dropped.join("\n") + "\n").unwrap();
    fails(
        &["--reference", reference, worded_path.to_str().unwrap()],
        "column `temp` is float in the reference but string in the current data",
    );
    fails(
        &["--reference", reference, dropped_path.to_str().unwrap()],
        "column `dewp` of the reference is missing from the current data",
    );
    fails(
        &["--reference", "no-such-profile.json", july],
        "no-such-profile.json",
    );
}

#[test]
fn drift_against_a_trained_packages_training_profile() {
    use crate::train::{kiln, ok_json, project};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("state");
    let config = project(
        dir.path(),
        r#"
[train.delay]
features = "delay"
algorithm = "gbdt"
register = "delay"
[train.delay.params]
num_rounds = 5
seed = 7
"#,
    );
    let outcome = ok_json(&kiln(&config, &data, &["train", "delay", "--json"]));
    let package = data
        .join("packages")
        .join(outcome["package_digest"].as_str().unwrap());
    let w = weather_split(dir.path());
    let july = w.july.to_str().unwrap();
    // The package's training profile holds the model's raw inputs over its training split
    // (January and February flights with their origin's weather); July's weather has moved.
    for reference in [package.clone(), package.join("manifest.json")] {
        let r = drift_json(&kiln_drift(
            dir.path(),
            &[
                "--reference",
                reference.to_str().unwrap(),
                july,
                "--json",
                "--columns",
                "temp,dewp,humid,origin",
            ],
        ));
        for c in ["temp", "dewp"] {
            assert_eq!(column(&r, c)["drifted"], true, "{c}: {r}");
        }
        assert_eq!(column(&r, "origin")["dtype"], "categorical");
        assert!(r["reference_rows"].as_u64().unwrap() > 40_000, "{r}");
    }
}
