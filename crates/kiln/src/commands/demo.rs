//! `kiln demo`: the whole loop on the bundled nycflights13 data, on the embedded store, with
//! no other software. Data validated (and a bad batch quarantined), features built with the
//! weather as-of join, models trained and searched as tracked runs, the best registered and
//! released to `champion` through its gates (`kiln apply`), both planes started, a candidate
//! deployed as a canary with a latency fault injected and rolled back by the monitor, traffic
//! from the training months and then from July (input drift, an alert with its runbook, an
//! incident), the real arrival delays sent back as feedback, and a final report.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Parser};
use kiln_data::plain::{PlainColumn, PlainTable};
use serde_json::{Value, json};

use super::data::{Ctx, ProjectArgs, render_report, thousands};
use super::train::{TrainArgs, train};

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// The bundled project file (its datasets, features, trainings and release policy).
    #[arg(long, env = "KILN_CONFIG", default_value = "kiln.toml")]
    pub config: PathBuf,
    /// Where the demo keeps its state (the embedded store, artifacts, the prediction log);
    /// delete it to start over.
    #[arg(long, env = "KILN_DATA_DIR", default_value = "./.kiln")]
    pub data_dir: PathBuf,
}

/// The demo's own monitoring settings: the same rules as a production project, on windows
/// of seconds so the story fits in minutes.
const DEMO_SECTIONS: &str = r#"
# ---------------------------------------------------------------- written by `kiln demo`
[deploy.delay]
model = "delay@champion"
slo = { p99_ms = 25 }
canary = { percent = 25, rollback_when = ["error_rate > 0.01", "p99_ms > 25"], min_requests = 30, window = "3s" }

[monitor.delay]
interval = "500ms"
window = "3s"
drift = { every = "500ms", rows = 300, min_rows = 300, window = "1h", share = 0.3 }
alerts = [
  { name = "InputDrift", when = "drift_share >= 0.3", for = "0s", severity = "page", runbook = "RUNBOOKS/drift.md", summary = "input drift in {{ $value }} of the columns" },
  { name = "RealisedAucLow", when = "auc < 0.72 and labelled >= 300", for = "0s", severity = "ticket", runbook = "RUNBOOKS/performance-drop.md" },
]
"#;

#[derive(Parser)]
struct IncidentsCli {
    #[command(flatten)]
    args: super::incidents::IncidentsArgs,
}

#[derive(Parser)]
struct MonitorCli {
    #[command(flatten)]
    args: super::monitor::MonitorArgs,
}

fn step(n: usize, title: &str) {
    println!("\n[{n}/7] {title}");
}

pub fn run(a: DemoArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let source_config = a.config.canonicalize().with_context(|| {
        format!(
            "cannot find the bundled project {} (run kiln demo from the repository root, or give --config)",
            a.config.display()
        )
    })?;
    let root = source_config
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    std::fs::create_dir_all(&a.data_dir)
        .with_context(|| format!("cannot create {}", a.data_dir.display()))?;
    let demo_dir = a.data_dir.join("demo");
    std::fs::create_dir_all(&demo_dir)?;
    let config = demo_dir.join("kiln.toml");
    std::fs::write(&config, demo_project(&source_config, &root)?)?;
    let mut ctx = Ctx::new(&ProjectArgs {
        config: config.clone(),
        data_dir: a.data_dir.clone(),
        store: None,
        artifacts: None,
    })?;
    for (kind, name, present) in [
        (
            "dataset",
            "flights",
            ctx.project.file.data.contains_key("flights"),
        ),
        (
            "dataset",
            "weather",
            ctx.project.file.data.contains_key("weather"),
        ),
        (
            "feature set",
            "delay",
            ctx.project.file.features.contains_key("delay"),
        ),
        (
            "training",
            "delay",
            ctx.project.file.train.contains_key("delay"),
        ),
    ] {
        if !present {
            bail!(
                "{} declares no {kind} `{name}`: kiln demo runs on the bundled nycflights13 project (the repository's kiln.toml)",
                source_config.display()
            );
        }
    }
    println!(
        "Kiln demo: will a flight from New York arrive more than 15 minutes late?\n\
         State in {} (delete it to start over); the demo's project file is {}.",
        a.data_dir.display(),
        config.display()
    );

    // 1. Data.
    step(
        1,
        "Validating the data; a bad batch is quarantined, never dropped",
    );
    for name in ["flights", "weather"] {
        let t = ctx.read(name, None)?;
        let (v, version) = ctx.validate(name, &t, None)?;
        println!(
            "  {name}: version {}, {} rows, {}/{} rules passed{}",
            version.version,
            thousands(v.report.rows),
            v.report.rules.iter().filter(|r| r.success).count(),
            v.report.rules.len(),
            match &v.report.quarantine {
                Some(q) => format!(
                    ", {} row{} quarantined to {q}",
                    thousands(v.report.quarantined_rows),
                    if v.report.quarantined_rows == 1 {
                        ""
                    } else {
                        "s"
                    }
                ),
                None => String::new(),
            }
        );
    }
    let bad = demo_dir.join("weather-batch-bad.csv");
    write_bad_batch(&ctx, &bad)?;
    let t = ctx.read("weather", Some(&bad.display().to_string()))?;
    let (v, version) = ctx.validate("weather", &t, None)?;
    println!(
        "  a new weather batch ({}) arrives with broken sensors:",
        bad.display()
    );
    for line in render_report(&v.report, version.version).lines() {
        println!("    {line}");
    }

    // 2. Plan and apply.
    step(
        2,
        "kiln apply: features, trainings (one a search), the best new version released to `champion` through its gates",
    );
    // `kiln apply` prints its plan and each step as it goes.
    let outcome = super::apply::run_apply(&ctx, "demo", None, false, true)?;
    for (d, m) in &outcome.refusals {
        println!("  deploy.{d}: the gates kept the new version off `champion`: {m}");
    }
    let store = ctx.store()?.clone();
    let champion = ctx
        .rt
        .block_on(super::serve::resolve_ref(&store, "delay@champion"))
        .context("no version of `delay` is champion after the apply")?;
    let champion_v = champion.version.to_string();
    println!("  `delay@champion` is version {champion_v}");

    // 3. A candidate, deployed as a canary with a fault.
    step(
        3,
        "A candidate model goes out as a 25% canary, with 40 ms of latency injected",
    );
    let mut cand = ctx.project.training("delay")?.clone();
    cand.description = Some("A deeper candidate (the demo's canary).".into());
    cand.params
        .insert("num_leaves".into(), toml::Value::Integer(63));
    cand.params
        .insert("learning_rate".into(), toml::Value::Float(0.05));
    cand.params.insert("seed".into(), toml::Value::Integer(11));
    ctx.project
        .file
        .train
        .insert("delay_candidate".into(), cand);
    let o = train(
        &ctx,
        &TrainArgs {
            project: ctx.args.clone(),
            name: "delay_candidate".into(),
            sign_key: None,
            no_register: false,
            json: false,
        },
    )?;
    let Some((_, cand_v)) = o.registered.clone() else {
        bail!("the candidate was not registered");
    };
    println!(
        "  trained the candidate: run {}, registered delay version {cand_v} (test_auc {:.4})",
        o.run_id,
        o.metrics.get("test_auc").copied().unwrap_or(f64::NAN)
    );
    let fetched = ctx.rt.block_on(kiln_release::fetch_version(
        &store,
        &ctx.artifacts()?,
        &champion,
    ))?;
    let inputs: Vec<String> = fetched
        .raw_inputs()
        .iter()
        .map(|c| c.name.clone())
        .collect();
    if inputs.is_empty() {
        bail!("the champion's package declares no raw inputs");
    }
    let flights = kiln_data::plain::from_frame(&ctx.read("flights", None)?.df)?;
    let weather = kiln_data::plain::from_frame(&ctx.read("weather", None)?.df)?;
    let early = sample(&flights, &weather, &inputs, &[1, 2], 600)?;
    let july = sample(&flights, &weather, &inputs, &[7], 600)?;

    let log = ctx.args.data_dir.join("artifacts").display().to_string();
    let serve_args = super::up::serve_args(
        &ctx,
        "127.0.0.1",
        0,
        Some(log.clone()),
        Some(250),
        None,
        &[
            "--model".into(),
            format!("delay=delay/{cand_v}"),
            "--traffic".into(),
            format!("delay={champion_v}:75,{cand_v}:25"),
            "--inject-latency".into(),
            format!("delay={cand_v}:40"),
            "--log-flush-seconds".into(),
            "0.25".into(),
        ],
    )?
    .context("the demo project declares no deployment")?;
    let server_args = super::up::server_args(&ctx, "127.0.0.1", 0)?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let (ctl_tx, ctl_rx) = std::sync::mpsc::channel();
    let (dat_tx, dat_rx) = std::sync::mpsc::channel();
    // Each plane on a runtime of its own, as `kiln server` and `kiln serve` run.
    let plane = |name: &'static str, f: Box<dyn FnOnce() -> anyhow::Result<()> + Send>| {
        std::thread::Builder::new()
            .name(name.into())
            .spawn(f)
            .expect("a thread starts")
    };
    let rx = stopped.clone();
    let control = plane(
        "demo-control-plane",
        Box::new(move || {
            super::server::runtime(Some(2))?.block_on(super::server::serve(
                server_args,
                Box::new(move |addr| {
                    let _ = ctl_tx.send(addr);
                    Ok(())
                }),
                until(rx),
            ))
        }),
    );
    let rx = stopped.clone();
    let data = plane(
        "demo-data-plane",
        Box::new(move || {
            super::server::runtime(Some(2))?.block_on(super::serve::serve(
                serve_args,
                Box::new(move |addr| {
                    let _ = dat_tx.send(addr);
                    Ok(())
                }),
                until(rx),
            ))
        }),
    );
    let join = |h: std::thread::JoinHandle<anyhow::Result<()>>| -> anyhow::Result<()> {
        h.join()
            .map_err(|_| anyhow::anyhow!("the plane's thread panicked"))?
    };
    let wait_addr = |rx: std::sync::mpsc::Receiver<std::net::SocketAddr>| {
        rx.recv_timeout(Duration::from_secs(120))
            .map(|a| format!("http://{a}"))
    };
    let (control_url, data_url) = match (wait_addr(ctl_rx), wait_addr(dat_rx)) {
        (Ok(c), Ok(d)) => (c, d),
        _ => {
            let _ = stop.send(true);
            let c = join(control);
            let d = join(data);
            bail!("the planes did not start: control plane {c:?}, data plane {d:?}");
        }
    };
    println!(
        "  control plane {control_url} (MLflow API, registry, feedback), data plane {data_url} (OIP v2, /invocations, /metrics)"
    );
    println!(
        "  serving delay: version {champion_v} at 75%, canary version {cand_v} at 25% (+40 ms per call)"
    );
    let client = reqwest::Client::new();
    let rt = super::server::runtime(Some(2))?;
    let result = rt.block_on(story(
        &client,
        &control_url,
        &data_url,
        &inputs,
        &early,
        &july,
        &cand_v,
        &store_url(&ctx),
    ));
    let _ = stop.send(true);
    let c = join(control);
    let d = join(data);
    let ids = result?;
    c.context("control plane")?;
    d.context("data plane")?;

    // 7. The report.
    step(7, "Report");
    let incidents = ctx.rt.block_on(store.incidents(false))?;
    println!("  incidents opened:");
    for i in &incidents {
        println!(
            "    #{} {} [{}] runbook {}",
            i.id,
            i.title,
            i.severity,
            i.runbook.as_deref().unwrap_or("-")
        );
    }
    if let Some(drift) = incidents.iter().find(|i| i.title.contains("InputDrift")) {
        println!("\n$ kiln incidents show {}", drift.id);
        let cmd = IncidentsCli::try_parse_from([
            "incidents".to_string(),
            "show".into(),
            drift.id.to_string(),
            "--config".into(),
            config.display().to_string(),
            "--data-dir".into(),
            a.data_dir.display().to_string(),
        ])?;
        super::incidents::run(cmd.args)?;
    }
    println!("\n$ kiln monitor report delay --rows 600");
    let cmd = MonitorCli::try_parse_from([
        "monitor".to_string(),
        "report".into(),
        "delay".into(),
        "--rows".into(),
        "600".into(),
        "--since".into(),
        "1h".into(),
        "--prediction-log".into(),
        log.clone(),
        "--config".into(),
        config.display().to_string(),
        "--data-dir".into(),
        a.data_dir.display().to_string(),
    ])?;
    super::monitor::run(cmd.args)?;
    let d = a.data_dir.display();
    let c = config.display();
    println!(
        "\nDone in {:.0} s: {} requests sent, {} labels fed back. Where to look next (state in {d}):\n\
         \x20 kiln apply --history --config {c} --data-dir {d}      what each apply did\n\
         \x20 kiln plan --config {c} --data-dir {d}                 nothing to change now\n\
         \x20 kiln incidents list --all --config {c} --data-dir {d}  the rollback and the drift\n\
         \x20 kiln lineage delay@champion --data-dir {d}            version → package → run → data\n\
         \x20 kiln card delay@champion --config {c} --data-dir {d}  the model card\n\
         \x20 kiln data versions weather --config {c} --data-dir {d} the bad batch's verdict\n\
         \x20 kiln up --config {c} --data-dir {d}                   both planes, then point mlflow at :5000",
        started.elapsed().as_secs_f64(),
        ids.0,
        ids.1
    );
    Ok(ExitCode::SUCCESS)
}

fn store_url(ctx: &Ctx) -> String {
    format!("sqlite://{}", ctx.args.data_dir.join("kiln.db").display())
}

/// The bundled project with its sources made absolute, its own deployments and monitors
/// replaced by the demo's.
fn demo_project(source: &Path, root: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(source)
        .with_context(|| format!("cannot read {}", source.display()))?;
    let mut kept = String::new();
    let mut skip = false;
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with('[') {
            skip = t.starts_with("[deploy.")
                || t.starts_with("[monitor.")
                || t.starts_with("[[monitor.");
        }
        if !skip {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    let r = root.display().to_string();
    let kept = kept.replace("source = \"data/", &format!("source = \"{r}/data/"));
    let runbooks = root.join("runbooks").display().to_string();
    Ok(format!(
        "{kept}{}",
        DEMO_SECTIONS.replace("RUNBOOKS", &runbooks)
    ))
}

/// A weather batch of July readings with failing sensors: humidity over 100% in some rows,
/// an unknown airport in others.
fn write_bad_batch(ctx: &Ctx, path: &Path) -> anyhow::Result<()> {
    let cfg = ctx.project.dataset("weather")?;
    let src = ctx.project.resolve_source(&cfg.source);
    let text = std::fs::read_to_string(&src).with_context(|| format!("cannot read {src}"))?;
    let mut lines = text.lines();
    let header = lines.next().context("the weather file is empty")?;
    let cols: Vec<&str> = header.split(',').collect();
    let humid = cols.iter().position(|c| *c == "humid");
    let origin = cols.iter().position(|c| *c == "origin");
    let (Some(humid), Some(origin)) = (humid, origin) else {
        bail!("{src}: no humid or origin column");
    };
    let mut out = String::from(header);
    out.push('\n');
    for (i, line) in lines
        .filter(|l| l.contains(",2013,7,"))
        .take(400)
        .enumerate()
    {
        let mut f: Vec<String> = line.split(',').map(str::to_string).collect();
        if i % 40 == 5 && f.len() > humid {
            f[humid] = "140.2".into();
        }
        if i % 100 == 17 && f.len() > origin {
            f[origin] = "XYZ".into();
        }
        out.push_str(&f.join(","));
        out.push('\n');
    }
    std::fs::write(path, out).with_context(|| format!("cannot write {}", path.display()))
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

/// `want` flights of `months`, spread over them and shuffled, with their origin's weather at
/// the scheduled hour: (the package's raw input values, arrived late or not).
fn sample(
    flights: &PlainTable,
    weather: &PlainTable,
    inputs: &[String],
    months: &[i64],
    want: usize,
) -> anyhow::Result<Vec<(Vec<Value>, bool)>> {
    let key = |t: &PlainTable, i: usize| -> Option<(String, i64)> {
        let origin = match t.column("origin")? {
            PlainColumn::Str(v) => v[i].clone()?,
            _ => return None,
        };
        let at = match t.column("time_hour")? {
            PlainColumn::Timestamp(v) => v[i]?,
            _ => return None,
        };
        Some((origin, at))
    };
    let mut at_hour: HashMap<(String, i64), usize> = HashMap::new();
    for i in 0..weather.height() {
        if let Some(k) = key(weather, i) {
            at_hour.insert(k, i);
        }
    }
    let ints = |name: &str| -> anyhow::Result<Vec<Option<f64>>> {
        Ok(match flights.column(name) {
            Some(PlainColumn::I64(v)) => v.iter().map(|x| x.map(|x| x as f64)).collect(),
            Some(PlainColumn::F64(v)) => v.clone(),
            _ => bail!("flights has no numeric column `{name}`"),
        })
    };
    let month = ints("month")?;
    let delay = ints("arr_delay")?;
    let candidates: Vec<(usize, usize, f64)> = (0..flights.height())
        .filter(|&i| month[i].is_some_and(|m| months.contains(&(m as i64))))
        .filter_map(|i| {
            let w = *at_hour.get(&key(flights, i)?)?;
            Some((i, w, delay[i]?))
        })
        .collect();
    if candidates.len() < want {
        bail!("only {} flights in months {months:?}", candidates.len());
    }
    let mut out = vec![];
    for k in (0..want).map(|k| k * 97 % want) {
        let (i, w, d) = candidates[k * candidates.len() / want];
        let mut row = vec![];
        for name in inputs {
            // Weather columns from the weather table, the rest from the flight.
            let c = weather
                .column(name)
                .filter(|_| {
                    !["origin", "year", "month", "day", "hour", "time_hour"]
                        .contains(&name.as_str())
                })
                .map(|c| cell(c, w))
                .or_else(|| flights.column(name).map(|c| cell(c, i)));
            row.push(c.with_context(|| format!("raw input `{name}` is in neither table"))?);
        }
        out.push((row, d > 15.0));
    }
    Ok(out)
}

/// Steps 4 to 6 against the running planes. Returns (requests sent, labels sent).
#[allow(clippy::too_many_arguments)]
async fn story(
    client: &reqwest::Client,
    control: &str,
    data: &str,
    inputs: &[String],
    early: &[(Vec<Value>, bool)],
    july: &[(Vec<Value>, bool)],
    cand_v: &str,
    store_url: &str,
) -> anyhow::Result<(usize, usize)> {
    let store = kiln_store::Store::open(store_url).await?;
    let mut sent = 0usize;
    let invoke = |id: String, rows: Vec<Vec<Value>>| {
        let body = json!({"dataframe_split": {"columns": inputs, "data": rows}});
        let req = client
            .post(format!("{data}/invocations"))
            .header("x-request-id", id)
            .json(&body);
        async move {
            let r = req.send().await.context("the data plane did not answer")?;
            let status = r.status();
            if !status.is_success() {
                bail!("/invocations answered {status}: {}", r.text().await?);
            }
            anyhow::Ok(())
        }
    };

    // 4. The canary under load, until the monitor takes it back.
    step(4, "Traffic: the monitor judges the canary every 250 ms");
    let t0 = Instant::now();
    let mut k = 0usize;
    let rolled_back = loop {
        let batch: Vec<_> = (0..8)
            .map(|j| {
                let (row, _) = &early[(k * 8 + j) % early.len()];
                invoke(format!("demo-canary-{}", k * 8 + j), vec![row.clone()])
            })
            .collect();
        for r in futures::future::join_all(batch).await {
            r?;
        }
        sent += 8;
        k += 1;
        if k.is_multiple_of(10) {
            let t: Value = client
                .get(format!("{data}/api/kiln/serve/models/delay/traffic"))
                .send()
                .await?
                .json()
                .await?;
            if t["weights"][cand_v].as_f64() == Some(0.0) {
                break true;
            }
        }
        if t0.elapsed() > Duration::from_secs(60) {
            break false;
        }
    };
    if !rolled_back {
        bail!("the canary was not rolled back within 60 s");
    }
    println!(
        "  after {sent} requests ({:.1} s) the monitor rolled the canary back to 0%",
        t0.elapsed().as_secs_f64()
    );
    if let Some(i) = store
        .incidents(true)
        .await?
        .into_iter()
        .find(|i| i.title.starts_with("CanaryRolledBack"))
    {
        println!(
            "  incident #{}: {} (runbook {})",
            i.id,
            i.title,
            i.runbook.as_deref().unwrap_or("-")
        );
    }

    // 5. The training months, then July.
    step(
        5,
        "600 flights from the training months (January and February), then 600 from July",
    );
    let mut labels: Vec<(String, Vec<bool>)> = vec![];
    for (prefix, rows) in [("demo-jfm", early), ("demo-jul", july)] {
        for (n, chunk) in rows.chunks(10).enumerate() {
            let id = format!("{prefix}-{n}");
            invoke(id.clone(), chunk.iter().map(|(r, _)| r.clone()).collect()).await?;
            labels.push((id, chunk.iter().map(|(_, l)| *l).collect()));
            sent += 1;
        }
        if prefix == "demo-jfm" {
            tokio::time::sleep(Duration::from_millis(1_500)).await;
            let drift = store
                .incidents(true)
                .await?
                .into_iter()
                .any(|i| i.title.contains("InputDrift"));
            println!(
                "  training months: {}",
                if drift {
                    "input drift (unexpected)"
                } else {
                    "no input drift"
                }
            );
        }
    }
    let t1 = Instant::now();
    let drift = loop {
        if let Some(i) = store
            .incidents(true)
            .await?
            .into_iter()
            .find(|i| i.title.contains("InputDrift"))
        {
            break Some(i);
        }
        if t1.elapsed() > Duration::from_secs(30) {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    match drift {
        Some(i) => println!(
            "  July: the InputDrift alert fired and paged: incident #{} (runbook {})",
            i.id,
            i.runbook.as_deref().unwrap_or("-")
        ),
        None => println!("  July: no drift incident within 30 s"),
    }

    // 6. Feedback.
    step(
        6,
        "The real arrival delays come back as feedback, joined to the predictions by request id",
    );
    let body = json!({
        "deployment": "delay",
        "labels": labels.iter().map(|(id, l)| json!({
            "request_id": id,
            "label": l.iter().map(|x| u8::from(*x)).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    });
    let r = client
        .post(format!("{control}/api/kiln/feedback"))
        .json(&body)
        .send()
        .await?;
    if !r.status().is_success() {
        bail!("feedback refused: {}", r.text().await?);
    }
    let n: usize = labels.iter().map(|(_, l)| l.len()).sum();
    println!("  {n} labels for {} requests stored", labels.len());
    // Give the monitor a moment to join them (realised AUC becomes an indicator).
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    store.close().await;
    Ok((sent, n))
}

/// Resolves once `stop` is set.
async fn until(mut stop: tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
