//! `kiln plan` / `kiln apply` end to end on the bundled nycflights13 project: the first apply
//! validates, builds, trains, stores the release policy, releases the new version to
//! `champion` through its gates and checks the monitor; a second changes nothing; a changed
//! parameter reruns only what depends on it; a failed step resumes after the steps that
//! finished; the lock keeps a second apply out; every change is an `apply` event on the
//! deployment's timeline; a version the gates refuse stays off the alias.

use std::path::Path;
use std::process::Output;

use serde_json::Value;

use super::train::{kiln, ok_json, project, store, text};

fn definitions(rounds: u32, algorithm: &str, min_auc: f64, rule: &str) -> String {
    format!(
        r#"
[train.delay]
features = "delay"
algorithm = "{algorithm}"
register = "delay"
[train.delay.params]
num_rounds = {rounds}
num_leaves = 15
seed = 7

[release.delay]
[release.delay.aliases.champion]
validated_data = true
[[release.delay.aliases.champion.metrics]]
metric = "test_auc"
min = {min_auc}

[deploy.delay]
model = "delay@champion"
slo = {{ p99_ms = 50 }}
canary = {{ percent = 25, window = "2s", rollback_when = ["error_rate > 0.5"] }}

[monitor.delay]
alerts = [{{ name = "HighLatency", when = "{rule}", for = "1m", severity = "page", runbook = "runbooks/high-latency.md" }}]
"#
    )
}

/// The project with its weather source copied into `dir` (so a test can change it).
fn write_project(dir: &Path, defs: &str) -> std::path::PathBuf {
    let config = project(dir, defs);
    let weather = super::train::repo().join("data/nycflights13/weather.csv");
    std::fs::copy(&weather, dir.join("weather.csv")).unwrap();
    let text = std::fs::read_to_string(&config).unwrap().replace(
        &format!("source = \"{}\"", weather.display()),
        "source = \"weather.csv\"",
    );
    std::fs::write(&config, text).unwrap();
    config
}

fn set_defs(config: &Path, defs: &str) {
    let dir = config.parent().unwrap();
    let keep_weather = std::fs::read(dir.join("weather.csv")).unwrap();
    write_project(dir, defs);
    std::fs::write(dir.join("weather.csv"), keep_weather).unwrap();
}

fn ran(summary: &Value) -> Vec<String> {
    summary["ran"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["resource"].as_str().unwrap().to_string())
        .collect()
}

fn plan_text(config: &Path, data: &Path) -> String {
    let out = kiln(config, data, &["plan"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
}

fn apply(config: &Path, data: &Path) -> Output {
    kiln(config, data, &["apply", "--json", "--user", "carol"])
}

#[test]
fn plan_apply_idempotence_changes_resumption_lock_and_timeline() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("state");
    let config = write_project(dir.path(), &definitions(20, "gbdt", 0.55, "p99_ms > 50"));

    // The first plan creates everything, in dependency order.
    let p = plan_text(&config, &data);
    for r in [
        "+ dataset.flights",
        "+ dataset.weather",
        "+ features.delay",
        "+ train.delay",
        "+ release.delay",
        "+ deploy.delay",
        "+ monitor.delay",
    ] {
        assert!(p.contains(r), "{r} missing from:\n{p}");
    }
    assert!(p.contains("Plan: 7 to create, 0 to update"), "{p}");
    assert!(
        p.find("dataset.weather").unwrap() < p.find("features.delay").unwrap()
            && p.find("train.delay").unwrap() < p.find("deploy.delay").unwrap()
    );

    // The first apply does it all; the new version passes the gates and becomes champion.
    let s = ok_json(&apply(&config, &data));
    assert_eq!(s["status"], "succeeded");
    assert_eq!(
        ran(&s),
        [
            "dataset.flights",
            "dataset.weather",
            "features.delay",
            "train.delay",
            "release.delay",
            "deploy.delay",
            "monitor.delay"
        ]
    );
    {
        let (rt, st) = store(&data);
        let champ = rt
            .block_on(st.get_model_version_by_alias("delay", "champion"))
            .unwrap();
        assert_eq!(champ.version.to_string(), "1");
        let history = rt
            .block_on(st.alias_history("delay", Some("champion")))
            .unwrap();
        assert_eq!(history.len(), 1);
        assert!(
            history[0].actor.contains("carol (kiln apply)"),
            "{:?}",
            history[0]
        );
        assert!(
            history[0].evaluation.is_some(),
            "the gates ran: {:?}",
            history[0]
        );
        assert_eq!(rt.block_on(st.apply_records()).unwrap().len(), 7);
        let events = rt.block_on(st.events("delay", 0, i64::MAX)).unwrap();
        let applies: Vec<&str> = events
            .iter()
            .filter(|e| e.kind == "apply")
            .map(|e| e.summary.as_str())
            .collect();
        assert!(
            applies.iter().any(|s| s.contains("deploy.delay created")),
            "{applies:?}"
        );
        assert!(applies.iter().any(|s| s.contains("train.delay created")));
    }

    // A second apply changes nothing and trains nothing.
    let p = plan_text(&config, &data);
    assert!(p.starts_with("No changes"), "{p}");
    let s = ok_json(&apply(&config, &data));
    assert!(ran(&s).is_empty(), "{s}");
    assert_eq!(s["unchanged"], 7);

    // A data plane serving `delay@champion` (version 1) is running.
    let (served, _) = super::serve::serve(&[
        "--model",
        "delay=delay@champion",
        "--data-dir",
        data.to_str().unwrap(),
    ]);

    // A changed parameter: the training (and the deployment that follows its model) only.
    set_defs(&config, &definitions(25, "gbdt", 0.55, "p99_ms > 50"));
    let p = plan_text(&config, &data);
    assert!(p.contains("~ train.delay"), "{p}");
    assert!(p.contains("params.num_rounds: 20 → 25"), "{p}");
    assert!(p.contains("↻ deploy.delay"), "{p}");
    assert!(p.contains("train.delay will run"), "{p}");
    assert!(!p.contains("features.delay"), "{p}");
    let s = ok_json(&apply(&config, &data));
    assert_eq!(ran(&s), ["train.delay", "deploy.delay", "monitor.delay"]);
    {
        let (rt, st) = store(&data);
        let champ = rt
            .block_on(st.get_model_version_by_alias("delay", "champion"))
            .unwrap();
        assert_eq!(
            champ.version.to_string(),
            "2",
            "the retrained version released"
        );
    }
    // The running data plane was told to load `delay@champion` again as a canary: version
    // 2 takes 25% beside version 1.
    let rt = super::serve::rt();
    let get = |path: &str| -> Value {
        rt.block_on(async {
            reqwest::get(format!("{}{path}", served.url))
                .await
                .unwrap()
                .json()
                .await
                .unwrap()
        })
    };
    assert_eq!(s["ran"][1]["resource"], "deploy.delay");
    let t = get("/api/kiln/serve/models/delay/traffic");
    assert_eq!(t["versions"], serde_json::json!(["1", "2"]), "{t}");
    assert_eq!(t["weights"], serde_json::json!({"1": 75, "2": 25}), "{t}");
    // After the canary's window the next apply promotes it: version 2 alone.
    std::thread::sleep(std::time::Duration::from_millis(2_200));
    let p = plan_text(&config, &data);
    assert!(p.contains("↻ deploy.delay"), "{p}");
    assert!(p.contains("canary version 2 has run its window"), "{p}");
    let s = ok_json(&apply(&config, &data));
    assert_eq!(ran(&s)[0], "deploy.delay", "{s}");
    let t = get("/api/kiln/serve/models/delay/traffic");
    assert_eq!(t["versions"], serde_json::json!(["2"]), "{t}");
    let p = plan_text(&config, &data);
    assert!(p.starts_with("No changes"), "the canary ended:\n{p}");
    drop(served);

    // A changed input and a training that fails: the steps before it are recorded, and the
    // next apply goes on from the failed step.
    let mut w = std::fs::read_to_string(dir.path().join("weather.csv")).unwrap();
    let last = w.lines().last().unwrap().to_string();
    w.push_str(
        &last
            .replace("2013,12,30,18", "2013,12,30,19")
            .replace("2013-12-30T23:00:00Z", "2013-12-31T00:00:00Z"),
    );
    w.push('\n');
    std::fs::write(dir.path().join("weather.csv"), w).unwrap();
    set_defs(
        &config,
        &definitions(25, "no-such-trainer", 0.55, "p99_ms > 50"),
    );
    let out = apply(&config, &data);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("train.delay failed"), "{err}");
    assert!(err.contains("run kiln apply again"), "{err}");
    set_defs(&config, &definitions(25, "gbdt", 0.55, "p99_ms > 50"));
    let p = plan_text(&config, &data);
    assert!(
        !p.contains("dataset.weather"),
        "done before the failure:\n{p}"
    );
    let s = ok_json(&apply(&config, &data));
    assert_eq!(ran(&s)[0], "train.delay", "{s}");
    assert!(!ran(&s).contains(&"features.delay".to_string()));
    let history = kiln(&config, &data, &["apply", "--history"]);
    let h = text(&history.stdout);
    assert!(h.contains("failed"), "{h}");
    assert!(h.contains("succeeded"), "{h}");

    // The lock: while another apply holds it, apply refuses and names the holder.
    {
        let (rt, st) = store(&data);
        rt.block_on(st.acquire_apply_lock("dave@ci pid 1", 60_000))
            .unwrap();
    }
    set_defs(&config, &definitions(25, "gbdt", 0.55, "p99_ms > 80"));
    let out = apply(&config, &data);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("dave@ci pid 1"),
        "{}",
        text(&out.stderr)
    );
    // Breaking it on purpose lets the apply through: only the monitor changed.
    let out = kiln(
        &config,
        &data,
        &["apply", "--json", "--user", "carol", "--force-unlock"],
    );
    let s = ok_json(&out);
    assert_eq!(ran(&s), ["monitor.delay"]);
    let (rt, st) = store(&data);
    assert!(rt.block_on(st.apply_lock()).unwrap().is_none(), "released");
    let events = rt.block_on(st.events("delay", 0, i64::MAX)).unwrap();
    let last = events.iter().rev().find(|e| e.kind == "apply").unwrap();
    assert!(
        last.summary.contains("monitor.delay updated (alerts)"),
        "{}",
        last.summary
    );
    assert_eq!(last.actor, "carol");
}

#[test]
fn a_version_the_gates_refuse_stays_off_the_alias_and_apply_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("state");
    let config = write_project(dir.path(), &definitions(5, "gbdt", 0.99, "p99_ms > 50"));
    let out = apply(&config, &data);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["status"], "succeeded");
    let msg = s["refused"][0]["message"].as_str().unwrap();
    assert!(msg.contains("test_auc"), "{msg}");
    assert!(msg.contains("0.99"), "{msg}");
    let (rt, st) = store(&data);
    assert!(
        rt.block_on(st.get_model_version_by_alias("delay", "champion"))
            .is_err(),
        "no champion"
    );
    // The refusal is recorded: a second apply does not retrain or retry.
    let s = ok_json(&apply(&config, &data));
    assert!(ran(&s).is_empty(), "{s}");
}

#[test]
fn a_bad_monitor_rule_fails_its_step_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("state");
    let config = write_project(dir.path(), &definitions(5, "gbdt", 0.55, "p99_ms >> 50"));
    let out = apply(&config, &data);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("monitor.delay failed"), "{err}");
    assert!(err.contains("[monitor.delay]"), "{err}");
}

/// `${NAME}` takes a value from the environment; the value never reaches the store (specs
/// keep the placeholder), a rotated value re-applies what uses it, and an unset variable is
/// an error naming it and its line.
#[test]
fn secrets_from_the_environment_never_reach_the_state() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("state");
    std::fs::copy(
        super::serve::fixtures().join("gb_classifier.onnx"),
        dir.path().join("gb.onnx"),
    )
    .unwrap();
    let config = dir.path().join("kiln.toml");
    std::fs::write(
        &config,
        "[deploy.gb]\nmodel = \"gb.onnx\"\n\n[monitor.gb]\nreceivers = [{ name = \"hook\", url = \"http://127.0.0.1:9/hook/${HOOK_TOKEN}\" }]\nalerts = [{ name = \"Slow\", when = \"p99_ms > 50\", for = \"1m\" }]\n",
    )
    .unwrap();
    let run = |token: Option<&str>, args: &[&str]| {
        let mut c = std::process::Command::new(crate::kiln_bin());
        c.args(args)
            .arg("--config")
            .arg(&config)
            .arg("--data-dir")
            .arg(&data)
            .env("KILN_LOG", "warn")
            .env_remove("HOOK_TOKEN");
        if let Some(t) = token {
            c.env("HOOK_TOKEN", t);
        }
        c.output().unwrap()
    };
    let s = ok_json(&run(Some("tok-AAAA-1111"), &["apply", "--json"]));
    assert_eq!(ran(&s), ["deploy.gb", "monitor.gb"]);
    let p = run(Some("tok-AAAA-1111"), &["plan", "--json"]);
    assert!(p.status.success());
    assert!(!text(&p.stdout).contains("tok-AAAA"), "{}", text(&p.stdout));
    // Nothing in the database files holds the value; the placeholder is there.
    let mut bytes = vec![];
    for f in std::fs::read_dir(&data).unwrap() {
        let f = f.unwrap().path();
        if f.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("kiln.db")
        {
            bytes.extend(std::fs::read(&f).unwrap());
        }
    }
    let hay = String::from_utf8_lossy(&bytes);
    assert!(!hay.contains("tok-AAAA-1111"), "the secret is in the store");
    assert!(hay.contains("${HOOK_TOKEN}"), "the placeholder is recorded");
    // A rotated value: the monitor is applied again, the deployment is not.
    let p = run(Some("tok-BBBB-2222"), &["plan"]);
    let t = text(&p.stdout);
    assert!(t.contains("↻ monitor.gb"), "{t}");
    assert!(t.contains("input environment changed"), "{t}");
    assert!(!t.contains("deploy.gb"), "{t}");
    // Unset: an error naming the variable and its line.
    let out = run(None, &["plan"]);
    assert_eq!(out.status.code(), Some(2));
    let e = text(&out.stderr);
    assert!(e.contains("HOOK_TOKEN") && e.contains("line 5"), "{e}");
}

/// Of the versions trained in one apply, the deployment gets the best by the alias's metric
/// gate, not the newest.
#[test]
fn the_best_new_version_is_released_not_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("state");
    let defs = r#"
[train.a_good]
features = "delay"
algorithm = "gbdt"
register = "delay"
[train.a_good.params]
num_rounds = 20
num_leaves = 15
seed = 7

[train.b_weak]
features = "delay"
algorithm = "gbdt"
register = "delay"
[train.b_weak.params]
num_rounds = 1
num_leaves = 2
learning_rate = 0.01
seed = 7

[release.delay.aliases.champion]
[[release.delay.aliases.champion.metrics]]
metric = "test_auc"
min = 0.5

[deploy.delay]
model = "delay@champion"
"#;
    let config = write_project(dir.path(), defs);
    let s = ok_json(&apply(&config, &data));
    assert_eq!(
        ran(&s)[3..5],
        ["train.a_good".to_string(), "train.b_weak".to_string()]
    );
    let (rt, st) = store(&data);
    let champ = rt
        .block_on(st.get_model_version_by_alias("delay", "champion"))
        .unwrap();
    assert_eq!(
        champ.version.to_string(),
        "1",
        "a_good (version 1) beats the newer b_weak (version 2)"
    );
}

/// An apply killed in the middle of a training: the next apply takes over its lock at once
/// (its process is gone) and does not redo the steps that finished before the kill.
#[test]
fn an_apply_killed_mid_training_resumes_without_redoing_finished_steps() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("state");
    let config = write_project(dir.path(), &definitions(300, "gbdt", 0.55, "p99_ms > 50"));
    let mut child = std::process::Command::new(crate::kiln_bin())
        .args(["apply", "--user", "erin", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(&data)
        .env("KILN_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        assert!(
            err.read_line(&mut line).unwrap() > 0,
            "apply ended early:\n{seen}"
        );
        seen.push_str(&line);
        if line.contains("train.delay (Create)") {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    {
        let (rt, st) = store(&data);
        let recorded = rt.block_on(st.apply_records()).unwrap();
        assert_eq!(recorded.len(), 3, "datasets and features were recorded");
        assert!(
            rt.block_on(st.apply_lock()).unwrap().is_some(),
            "the lock is left"
        );
    }
    let out = apply(&config, &data);
    let s = ok_json(&out);
    assert!(
        text(&out.stderr).contains("taking over the apply lock of erin@"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(ran(&s)[0], "train.delay", "{s}");
    assert!(
        !ran(&s)
            .iter()
            .any(|r| r.starts_with("dataset.") || r.starts_with("features."))
    );
}
