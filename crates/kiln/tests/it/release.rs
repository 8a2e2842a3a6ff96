//! Releases end to end: real trainings on the nycflights13 delay features, a real `kiln
//! server` enforcing the policy from kiln.toml, and the `kiln release` / `rollback` /
//! `lineage` / `card` commands — gates that pass, gates that block (by how much), overrides,
//! rollback, tampering, racing releases, and the MLflow alias endpoint gated the same way.

use std::path::Path;
use std::process::{Command, Output};

use kiln_testkit::ServerProcess;
use serde_json::{Value, json};

use super::train::{keys_new, kiln, ok_json, project, store, text};
use crate::kiln_bin;

const ADMIN: &str = "let-me-in";

const TRAIN: &str = r#"
[train.good]
features = "delay"
algorithm = "gbdt"
register = "delay"
segments = ["origin"]
[train.good.params]
num_rounds = 30
num_leaves = 15
seed = 7

[train.better]
features = "delay"
algorithm = "gbdt"
register = "delay"
segments = ["origin"]
[train.better.params]
num_rounds = 45
num_leaves = 15
seed = 8

[train.weak]
features = "delay"
algorithm = "gbdt"
register = "delay"
[train.weak.params]
num_rounds = 1
num_leaves = 2
learning_rate = 0.01
seed = 7

[release.delay]
purpose = "Warn travellers that a flight from New York is likely to arrive late."
limitations = ["Trained on January to March 2013 only."]
trusted_keys = ["keys/kiln.pub"]

[release.delay.aliases.champion]
signed = true
validated_data = true
latency = { p99_ms = 500.0, rows = 1, iterations = 40 }

[[release.delay.aliases.champion.metrics]]
metric = "test_auc"
min = 0.55
max_drop = 0.01
"#;

/// `kiln ARGS --server URL` as user `alice`, optionally with the admin token.
fn client(config: &Path, url: &str, admin: bool, args: &[&str]) -> Output {
    let mut c = Command::new(kiln_bin());
    c.args(args)
        .args(["--server", url, "--user", "alice"])
        .env("KILN_LOG", "warn")
        .env_remove("KILN_ADMIN_TOKEN")
        .env_remove("KILN_SERVER")
        .current_dir(config.parent().unwrap());
    if admin {
        c.args(["--admin-token", ADMIN]);
    }
    c.output().expect("kiln runs")
}

fn refused_json(out: &Output) -> Value {
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout:\n{}\nstderr:\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON refusal")
}

/// One JSON request; (status, body).
fn http(method: reqwest::Method, url: &str, body: Value) -> (u16, Value) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let r = reqwest::Client::new()
            .request(method, url)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    })
}

fn gate<'a>(ev: &'a Value, name: &str) -> &'a Value {
    ev["gates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["gate"] == name)
        .unwrap_or_else(|| panic!("no {name} gate in {ev:#}"))
}

fn status(config: &Path, url: &str) -> Value {
    ok_json(&client(
        config,
        url,
        false,
        &["release", "status", "delay", "--json"],
    ))
}

fn champion(config: &Path, url: &str) -> Option<String> {
    status(config, url)["aliases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["alias"] == "champion")
        .and_then(|a| a["version"].as_str().map(str::to_string))
}

#[test]
fn protected_aliases_move_only_through_their_gates() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("state");
    let config = project(dir.path(), TRAIN);
    let out = keys_new(&dir.path().join("keys"));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let key = dir.path().join("keys/kiln.key");
    let signed = ["--json", "--sign-key", key.to_str().unwrap()];
    let train = |name: &str, sign: bool| {
        let mut args = vec!["train", name];
        args.extend(if sign { &signed[..] } else { &signed[..1] });
        ok_json(&kiln(&config, &data, &args))
    };
    let good = train("good", true); // version 1
    let weak = train("weak", true); // version 2
    let better = train("better", true); // version 3
    let unsigned = train("good", false); // version 4
    assert_eq!(unsigned["registered"][1], "4");
    let auc = |o: &Value| o["metrics"]["test_auc"].as_f64().unwrap();
    assert!(
        auc(&weak) < auc(&good) - 0.01,
        "the weak model must be clearly worse: {} vs {}",
        auc(&weak),
        auc(&good)
    );
    assert!(auc(&better) >= auc(&good) - 0.01);
    // The feature build validated flights and weather. Then the weather's expectations were
    // tightened and the same data no longer passes: that verdict is what the gate sees.
    let strict_dir = dir.path().join("strict");
    std::fs::create_dir_all(&strict_dir).unwrap();
    let strict = project(
        &strict_dir,
        "[[data.weather.expect]]\nrule = \"between\"\ncolumn = \"temp\"\nmin = 20\nmax = 90\n",
    );
    let v = kiln(&strict, &data, &["data", "validate", "weather"]);
    assert_eq!(v.status.code(), Some(1), "{}", text(&v.stderr));

    let server = ServerProcess::start(&kiln_bin(), &data, &["--admin-token", ADMIN]);
    let url = server.url.clone();

    // The policy goes to the server; a second apply changes nothing.
    let out = client(&config, &url, false, &["release", "policy", "--apply"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "policy changes need the admin token"
    );
    assert!(
        text(&out.stderr).contains("admin token"),
        "{}",
        text(&out.stderr)
    );
    let p = ok_json(&client(
        &config,
        &url,
        true,
        &["release", "policy", "--apply", "--json"],
    ));
    assert_eq!(p[0]["applied"], true, "{p}");
    let p = ok_json(&client(
        &config,
        &url,
        true,
        &["release", "policy", "--apply", "--json"],
    ));
    assert_eq!(p[0]["state"], "up to date", "{p}");

    // Version 1: the weather it was trained with now fails validation.
    let r = refused_json(&client(
        &config,
        &url,
        false,
        &["release", "delay", "--version", "1", "--json"],
    ));
    assert_eq!(r["error_code"], "PERMISSION_DENIED");
    let msg = r["message"].as_str().unwrap();
    assert!(
        msg.contains("[data weather@") && msg.contains("failed validation"),
        "{msg}"
    );
    assert_eq!(champion(&config, &url), None);
    let v = kiln(&config, &data, &["data", "validate", "weather"]);
    assert_eq!(v.status.code(), Some(0), "{}", text(&v.stderr));

    // Now every gate passes; the evaluation is stored with who, when and each gate.
    let ok = ok_json(&client(
        &config,
        &url,
        false,
        &["release", "delay", "--version", "1", "--json"],
    ));
    let ev = &ok["evaluation"];
    assert_eq!(ev["outcome"], "moved");
    assert_eq!(ev["actor"], "alice");
    for g in [
        "integrity",
        "signature",
        "metric",
        "metric_relative",
        "data",
        "latency",
    ] {
        assert_eq!(gate(ev, g)["passed"], true, "{g}: {ev:#}");
    }
    assert_eq!(
        gate(ev, "integrity")["inputs"]["digest"],
        good["package_digest"],
        "the gates checked version 1's package"
    );
    let lat = gate(ev, "latency");
    assert!(lat["value"].as_f64().unwrap() > 0.0, "{lat}");
    assert_eq!(gate(ev, "metric")["value"].as_f64().unwrap(), auc(&good));
    assert_eq!(champion(&config, &url).as_deref(), Some("1"));

    // Version 2 is worse than the champion by more than the allowed drop.
    let r = refused_json(&client(
        &config,
        &url,
        false,
        &["release", "delay", "--version", "2", "--json"],
    ));
    let msg = r["message"].as_str().unwrap();
    assert!(
        msg.contains("metric_relative") && msg.contains("test_auc"),
        "{msg}"
    );
    let fell = format!("{:.3}", auc(&good) - auc(&weak));
    assert!(
        msg.contains(&fell),
        "the message gives the drop {fell}: {msg}"
    );
    // The human form names the failing gate too.
    let out = client(
        &config,
        &url,
        false,
        &["release", "delay", "--version", "2"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("FAIL metric_relative"),
        "{}",
        text(&out.stdout)
    );

    // Version 4 is not signed.
    let r = refused_json(&client(
        &config,
        &url,
        false,
        &["release", "delay", "--version", "4", "--json"],
    ));
    assert!(r["message"].as_str().unwrap().contains("signature"), "{r}");

    // The MLflow alias endpoint is gated the same way; other aliases are not.
    let set = |alias: &str, version: &str| {
        http(
            reqwest::Method::POST,
            &format!("{url}/api/2.0/mlflow/registered-models/alias"),
            json!({"name": "delay", "alias": alias, "version": version}),
        )
    };
    let (code, body) = set("champion", "2");
    assert_eq!(code, 403);
    assert_eq!(body["error_code"], "PERMISSION_DENIED");
    assert!(
        body["message"].as_str().unwrap().contains("test_auc"),
        "{body}"
    );
    assert_eq!(set("challenger", "2").0, 200);
    assert_eq!(champion(&config, &url).as_deref(), Some("1"));

    // An override needs the admin token and a reason, and is recorded as such.
    let r = refused_json(&client(
        &config,
        &url,
        false,
        &[
            "release",
            "delay",
            "--version",
            "2",
            "--override",
            "hotfix",
            "--json",
        ],
    ));
    assert!(r["message"].as_str().unwrap().contains("admin"), "{r}");
    let ok = ok_json(&client(
        &config,
        &url,
        true,
        &[
            "release",
            "delay",
            "--version",
            "2",
            "--override",
            "incident 12: v1 misroutes",
            "--json",
        ],
    ));
    assert_eq!(ok["evaluation"]["outcome"], "overridden");
    assert_eq!(
        ok["evaluation"]["override_reason"],
        "incident 12: v1 misroutes"
    );
    assert_eq!(ok["event"]["action"], "override");
    assert_eq!(champion(&config, &url).as_deref(), Some("2"));

    // One step back, and the history shows every move.
    let out = client(
        &config,
        &url,
        false,
        &["rollback", "delay", "--reason", "AUC fell"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("version 2 -> version 1"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(champion(&config, &url).as_deref(), Some("1"));
    let s = status(&config, &url);
    let actions: Vec<(&str, &str)> = s["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["alias"] == "champion")
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                e["version"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [("release", "1"), ("override", "2"), ("rollback", "1")]
    );
    let blocked = s["evaluations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["outcome"] == "blocked")
        .count();
    // Five refusals plus the override a non-admin asked for (kept with its reason).
    assert_eq!(blocked, 6, "{s:#}");
    assert!(
        s["evaluations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["outcome"] == "blocked" && e["override_reason"] == "hotfix"),
        "{s:#}"
    );
    let human = client(&config, &url, false, &["release", "status", "delay"]);
    let human = text(&human.stdout);
    assert!(
        human.contains("champion") && human.contains("(protected)"),
        "{human}"
    );
    assert!(
        human.contains("rollback") && human.contains("AUC fell"),
        "{human}"
    );

    // Two releases racing for the alias, both made against the holder they saw (version
    // 1): exactly one wins, the other gets a conflict.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let c = reqwest::Client::new();
    let post = || {
        c.post(format!("{url}/api/kiln/releases"))
            .json(
                &json!({"name": "delay", "version": "3", "alias": "champion",
                          "expected_holder": "1"}),
            )
            .send()
    };
    let (a, b) = rt.block_on(async { tokio::join!(post(), post()) });
    let mut codes = [a.unwrap().status().as_u16(), b.unwrap().status().as_u16()];
    codes.sort();
    assert_eq!(codes, [200, 409]);
    assert_eq!(champion(&config, &url).as_deref(), Some("3"));

    // Lineage: version → package → run → datasets → code → gates, and back from a dataset.
    let l = ok_json(&kiln(
        &config,
        &data,
        &["lineage", "delay@champion", "--json"],
    ));
    assert_eq!(l["version"], "3");
    assert_eq!(l["package_digest"], better["package_digest"]);
    assert_eq!(l["run"]["id"], better["run_id"]);
    let flights = l["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "flights")
        .unwrap_or_else(|| panic!("{l:#}"))
        .clone();
    assert_eq!(flights["validated"], true);
    assert!(l["code_commit"].is_string() || l["code_commit"].is_null());
    assert_eq!(l["gate_evaluations"][0]["outcome"], "moved", "{l:#}");
    let out = kiln(&config, &data, &["lineage", "delay@champion"]);
    let t = text(&out.stdout);
    assert!(t.contains("flights@") && t.contains("evaluation"), "{t}");
    let digest = flights["digest"].as_str().unwrap();
    let d = ok_json(&kiln(
        &config,
        &data,
        &[
            "lineage",
            "--dataset",
            &format!("flights@{}", &digest[..12]),
            "--json",
        ],
    ));
    let versions: Vec<&str> = d["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_str().unwrap())
        .collect();
    assert_eq!(versions, ["1", "2", "3", "4"], "{d:#}");
    let champ = d["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["version"] == "3")
        .unwrap();
    assert!(
        champ["aliases"]
            .as_array()
            .unwrap()
            .contains(&json!("champion")),
        "{d:#}"
    );

    // The model card.
    let card_path = dir.path().join("card.md");
    let out = kiln(
        &config,
        &data,
        &[
            "card",
            "delay@champion",
            "--out",
            card_path.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let card = std::fs::read_to_string(&card_path).unwrap();
    for needle in [
        "# Model card: delay@champion (version 3)",
        "Warn travellers",
        "## Training data",
        "| flights | source |",
        "passed",
        "| auc | ",
        "| task | binary |",
        "origin = JFK",
        "## Release gates",
        "**moved**",
        "| latency p99_ms | pass |",
        "## Signature",
        "## Limitations",
        "Trained on January to March 2013 only.",
    ] {
        assert!(card.contains(needle), "card lacks {needle:?}:\n{card}");
    }
    let digest = better["package_digest"].as_str().unwrap();
    assert!(
        card.contains(&format!("| package digest | `{digest}` |")),
        "{card}"
    );
    assert!(
        card.contains(&format!("| integrity {} | pass |", &digest[..12])),
        "{card}"
    );

    // A package changed after registration fails its integrity gate, naming the file.
    let (rt, st) = store(&data);
    let mv = rt.block_on(st.get_model_version("delay", "1")).unwrap();
    let root = mv
        .source
        .trim_start_matches("mlflow-artifacts:")
        .trim_matches('/');
    let model = data.join("artifacts").join(root).join("model.json");
    let mut bytes = std::fs::read(&model).unwrap();
    let i = bytes.len() / 2;
    bytes[i] = if bytes[i] == b'1' { b'2' } else { b'1' };
    std::fs::write(&model, bytes).unwrap();
    let r = refused_json(&client(
        &config,
        &url,
        false,
        &["release", "delay", "--version", "1", "--json"],
    ));
    let msg = r["message"].as_str().unwrap();
    assert!(
        msg.contains("integrity") && msg.contains("model.json"),
        "{msg}"
    );

    // Archived and deleted versions cannot be promoted; unknown names get MLflow's codes.
    rt.block_on(st.transition_model_version_stage("delay".into(), "4", "Archived", false))
        .unwrap();
    let out = client(
        &config,
        &url,
        false,
        &["release", "delay", "--version", "4"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("archived"),
        "{}",
        text(&out.stderr)
    );
    let (code, _) = http(
        reqwest::Method::DELETE,
        &format!("{url}/api/2.0/mlflow/model-versions/delete"),
        json!({"name": "delay", "version": "3"}),
    );
    assert_eq!(code, 403, "the champion cannot be deleted");
    rt.block_on(st.delete_model_version("delay".into(), "2"))
        .unwrap();
    let out = client(
        &config,
        &url,
        false,
        &["release", "delay", "--version", "2"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("RESOURCE_DOES_NOT_EXIST"),
        "{}",
        text(&out.stderr)
    );
    let out = client(&config, &url, false, &["release", "nope", "--version", "1"]);
    assert!(
        text(&out.stderr).contains("RESOURCE_DOES_NOT_EXIST"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(set("champion", "99").0, 404);
    drop(server);
}
