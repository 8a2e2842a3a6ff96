//! Command steps: `[train.x] command = "python train.py"`. The script runs with a tracking
//! server of this process's store on 127.0.0.1 (`MLFLOW_TRACKING_URI`) and its run already
//! created (`MLFLOW_RUN_ID`), so an unchanged MLflow script logs into Kiln. Its output is
//! kept as a run artifact, a timeout stops it, and the ONNX model it produced — a file in
//! `KILN_OUTPUT_DIR` or an MLflow model with an `onnx` flavour logged to the run — is packaged
//! and registered.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use futures::StreamExt;
use kiln_store::{Backend, LoggedModelSearch};
use tokio::io::{AsyncBufReadExt, BufReader};

use super::super::data::Ctx;
use super::tracking::{RunRef, Tracker};
use super::{Outcome, TrainArgs, base_tags, package, resources};
use crate::project::TrainConfig;

/// Output lines kept in memory for the error message of a failed command.
const TAIL_LINES: usize = 20;

/// `90`, `30s`, `10m`, `2h`, `1h30m`.
pub fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    let t = s.trim();
    if let Ok(n) = t.parse::<u64>() {
        return Ok(Duration::from_secs(n));
    }
    let mut total = 0u64;
    let mut num = String::new();
    for ch in t.chars() {
        if ch.is_ascii_digit() {
            num.push(ch);
            continue;
        }
        let n: u64 = num
            .parse()
            .with_context(|| format!("duration {s:?}: expected a number before `{ch}`"))?;
        num.clear();
        total += n * match ch {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            _ => bail!("duration {s:?}: unknown unit `{ch}` (use s, m, h or d)"),
        };
    }
    if !num.is_empty() {
        bail!("duration {s:?}: the last number has no unit (s, m, h or d)");
    }
    if total == 0 {
        bail!("duration {s:?} must be more than zero");
    }
    Ok(Duration::from_secs(total))
}

pub fn run(ctx: &Ctx, args: &TrainArgs, cfg: &TrainConfig) -> anyhow::Result<Outcome> {
    let name = &args.name;
    let command = cfg.command.as_deref().expect("a command step");
    let timeout = parse_duration(cfg.timeout.as_deref().unwrap_or("1h"))
        .with_context(|| format!("train.{name}.timeout"))?;
    let built = match &cfg.features {
        Some(f) => Some(super::super::features::ensure_built(ctx, f, false, None)?),
        None => None,
    };
    let mut tracker = Tracker::new(ctx)?;
    let experiment = cfg.experiment.clone().unwrap_or_else(|| name.clone());
    let experiment_id = tracker.experiment(&experiment)?;
    let mut tags = base_tags(ctx, name, cfg);
    tags.push(("kiln.command".into(), command.to_string()));
    let run = tracker.start(&experiment_id, name, tags)?;
    if let Some(b) = &built {
        tracker.inputs(&run, super::eval::dataset_inputs(ctx, b)?)?;
    }
    let output_dir = ctx.args.data_dir.join("outputs").join(&run.run_id);
    std::fs::create_dir_all(&output_dir)
        .with_context(|| format!("cannot create {}", output_dir.display()))?;
    let output_dir = output_dir.canonicalize()?;

    eprintln!(
        "running {name}: {command}  (run {}, timeout {timeout:?})",
        run.run_id
    );
    let meter = resources::Meter::start();
    let result = execute(
        ctx,
        &tracker,
        &run,
        cfg,
        command,
        timeout,
        &output_dir,
        built.as_ref(),
    );
    let measured = meter.stop();
    let (status, log) = match result {
        Ok(x) => x,
        Err(e) => {
            tracker.end(&run, "FAILED")?;
            return Err(e);
        }
    };
    tracker.artifact_bytes(&run, "logs/command.log", log.text.clone().into_bytes())?;
    for (k, v) in measured.metrics(&ctx.project.file.costs) {
        tracker.metric(&run, &k, v, 0)?;
    }
    tracker.flush()?;
    match status {
        Exit::Finished(0) => {}
        Exit::Finished(code) => {
            tracker.end(&run, "FAILED")?;
            bail!(
                "`{command}` exited with status {code}; its output is the run's artifact \
                 logs/command.log. Last lines:\n{}",
                log.tail()
            );
        }
        Exit::Signal => {
            tracker.end(&run, "FAILED")?;
            bail!(
                "`{command}` was killed by a signal. Last lines:\n{}",
                log.tail()
            );
        }
        Exit::TimedOut => {
            tracker.tags(&run, &[("kiln.timed_out".into(), "true".into())])?;
            tracker.end(&run, "KILLED")?;
            bail!(
                "`{command}` ran longer than its timeout of {timeout:?} and was stopped. Last \
                 lines:\n{}",
                log.tail()
            );
        }
    }

    let found = match find_model(ctx, &tracker, &run, cfg, &output_dir) {
        Ok(f) => f,
        Err(e) => {
            tracker.end(&run, "FAILED")?;
            return Err(e);
        }
    };
    eprintln!("  model: {}", found.origin);
    if let Some(id) = &found.model_id {
        tracker.tags(&run, &[("kiln.packaged_model_id".into(), id.clone())])?;
    }
    let pkg = package::onnx(ctx, &mut tracker, args, cfg, built.as_ref(), &run, &found);
    let pkg = match pkg {
        Ok(p) => p,
        Err(e) => {
            tracker.end(&run, "FAILED")?;
            return Err(e);
        }
    };
    tracker.end(&run, "FINISHED")?;
    let logged = ctx.rt.block_on(tracker.store.get_run(&run.run_id))?;
    let mut metrics: BTreeMap<String, f64> = logged
        .data
        .metrics
        .iter()
        .map(|m| (m.key.clone(), m.value))
        .collect();
    for (k, v) in measured.metrics(&ctx.project.file.costs) {
        metrics.insert(k, v);
    }
    Ok(Outcome {
        name: name.clone(),
        experiment_id,
        run_id: run.run_id.clone(),
        parent_run_id: None,
        metrics,
        params: logged
            .data
            .params
            .iter()
            .map(|p| (p.key.clone(), p.value.clone()))
            .collect(),
        package_digest: pkg.digest,
        package_uri: pkg.uri,
        registered: pkg.registered,
        trials: 1,
    })
}

enum Exit {
    Finished(i32),
    Signal,
    TimedOut,
}

#[derive(Default)]
struct Log {
    text: String,
}

impl Log {
    fn tail(&self) -> String {
        let lines: Vec<&str> = self.text.lines().collect();
        lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n")
    }
}

#[allow(clippy::too_many_arguments)]
fn execute(
    ctx: &Ctx,
    tracker: &Tracker<'_>,
    run: &RunRef,
    cfg: &TrainConfig,
    command: &str,
    timeout: Duration,
    output_dir: &Path,
    built: Option<&super::super::features::Built>,
) -> anyhow::Result<(Exit, Log)> {
    let store = tracker.store.clone();
    let artifacts = tracker.artifacts.clone();
    ctx.rt.block_on(async {
        // A tracking server over this store, for the script's MLflow client.
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .context("cannot start the tracking server for the command")?;
        let addr = listener.local_addr()?;
        let releases = crate::commands::server::releases(&store, &artifacts, None);
        let state = Arc::new(kiln_server::AppState {
            store: store.clone(),
            artifacts,
            kiln_version: env!("CARGO_PKG_VERSION").to_string(),
            store_kind: match store.db().backend() {
                Backend::Sqlite => "sqlite".into(),
                Backend::Postgres => "postgresql".into(),
            },
            releases,
        });
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(kiln_server::serve(listener, state, async move {
            let _ = stop_rx.await;
        }));

        let mut cmd = tokio::process::Command::new("sh");
        cmd.arg("-c")
            .arg(command)
            .current_dir(&ctx.project.dir)
            .env("MLFLOW_TRACKING_URI", format!("http://{addr}"))
            .env("MLFLOW_RUN_ID", &run.run_id)
            .env("MLFLOW_EXPERIMENT_ID", &run.experiment_id)
            .env("KILN_RUN_ID", &run.run_id)
            .env("KILN_OUTPUT_DIR", output_dir)
            .env("KILN_PROJECT_DIR", &ctx.project.dir)
            .env("KILN_DATA_DIR", &ctx.args.data_dir)
            .envs(&cfg.env)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        if let Some(b) = built {
            cmd.env("KILN_FEATURES_DIR", &b.dir);
            cmd.env("KILN_FEATURES_TABLE", b.dir.join("features.parquet"));
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start `{command}`"))?;
        let pid = child.id();
        let out = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let err = BufReader::new(child.stderr.take().expect("piped stderr")).lines();
        let lines = futures::stream::select(tokio_stream_lines(out), tokio_stream_lines(err));
        let mut log = Log::default();
        let collect = async {
            let mut lines = std::pin::pin!(lines);
            while let Some(line) = lines.next().await {
                eprintln!("  | {line}");
                log.text.push_str(&line);
                log.text.push('\n');
            }
        };
        let waited = tokio::time::timeout(timeout, async {
            let (status, ()) = tokio::join!(child.wait(), collect);
            status
        })
        .await;
        let exit = match waited {
            Ok(status) => {
                let status = status.context("cannot wait for the command")?;
                match status.code() {
                    Some(c) => Exit::Finished(c),
                    None => Exit::Signal,
                }
            }
            Err(_) => {
                stop_group(pid).await;
                let _ = child.wait().await;
                Exit::TimedOut
            }
        };
        let _ = stop_tx.send(());
        let _ = server.await;
        Ok((exit, log))
    })
}

fn tokio_stream_lines<R: tokio::io::AsyncBufRead + Unpin + Send + 'static>(
    lines: tokio::io::Lines<R>,
) -> impl futures::Stream<Item = String> + Send {
    futures::stream::unfold(lines, |mut l| async move {
        match l.next_line().await {
            Ok(Some(line)) => Some((line, l)),
            _ => None,
        }
    })
}

/// SIGTERM to the command's process group, then SIGKILL if it is still there after 5 s.
async fn stop_group(pid: Option<u32>) {
    use nix::sys::signal::{Signal, killpg};
    use nix::unistd::Pid;
    let Some(pid) = pid else { return };
    let group = Pid::from_raw(pid as i32);
    if killpg(group, Signal::SIGTERM).is_err() {
        return;
    }
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if killpg(group, None).is_err() {
            return;
        }
    }
    let _ = killpg(group, Signal::SIGKILL);
}

/// The model a command produced.
pub struct FoundModel {
    pub onnx: Vec<u8>,
    /// Where it came from, for messages and the manifest.
    pub origin: String,
    /// The logged model it came from, if any.
    pub model_id: Option<String>,
}

fn find_model(
    ctx: &Ctx,
    tracker: &Tracker<'_>,
    run: &RunRef,
    cfg: &TrainConfig,
    output_dir: &Path,
) -> anyhow::Result<FoundModel> {
    let declared = cfg.model.as_deref().unwrap_or("model.onnx");
    let file = output_dir.join(declared);
    if file.is_file() {
        return Ok(FoundModel {
            onnx: std::fs::read(&file)
                .with_context(|| format!("cannot read {}", file.display()))?,
            origin: format!("KILN_OUTPUT_DIR/{declared}"),
            model_id: None,
        });
    }
    if file.is_dir()
        && let Some(m) = onnx_in_mlflow_dir_local(&file)?
    {
        return Ok(FoundModel {
            onnx: std::fs::read(&m)?,
            origin: format!("KILN_OUTPUT_DIR/{declared} (MLflow model)"),
            model_id: None,
        });
    }
    // MLflow 3 logs models as logged models whose source is the run.
    let (models, _) = ctx
        .rt
        .block_on(tracker.store.search_logged_models(LoggedModelSearch {
            experiment_ids: vec![run.experiment_id.clone()],
            filter: Some(format!("source_run_id = '{}'", run.run_id)),
            datasets: vec![],
            max_results: Some(100),
            order_by: vec![],
            page_token: None,
        }))?;
    let mut tried = vec![];
    for m in &models {
        let uri = &m.info.artifact_uri;
        let Some(root) = uri.strip_prefix("mlflow-artifacts:") else {
            tried.push(format!(
                "{} (artifacts at {uri}, not readable by Kiln)",
                m.info.model_id
            ));
            continue;
        };
        let root = root.trim_matches('/');
        if let Some(bytes) = onnx_in_store(ctx, tracker, root)? {
            return Ok(FoundModel {
                onnx: bytes,
                origin: format!("logged model {} ({uri})", m.info.model_id),
                model_id: Some(m.info.model_id.clone()),
            });
        }
        tried.push(format!("{} (no `onnx` flavour)", m.info.model_id));
    }
    // MLflow 2-style: a model directory among the run's own artifacts.
    if let Some(dir) = &run.artifact_dir {
        let mut stack = vec![dir.clone()];
        while let Some(d) = stack.pop() {
            if let Some(bytes) = onnx_in_store(ctx, tracker, &d)? {
                return Ok(FoundModel {
                    onnx: bytes,
                    origin: format!("run artifact {d}"),
                    model_id: None,
                });
            }
            for f in ctx
                .rt
                .block_on(tracker.artifacts.list(&d))
                .unwrap_or_default()
            {
                if f.is_dir {
                    // Listings give paths from the store's root.
                    stack.push(f.path);
                }
            }
        }
    }
    bail!(
        "the command produced no model: no file KILN_OUTPUT_DIR/{declared} ({}), and no MLflow \
         model with an `onnx` flavour logged to run {}{}. Write the ONNX file there, or log it \
         with mlflow.onnx.log_model",
        file.display(),
        run.run_id,
        if tried.is_empty() {
            String::new()
        } else {
            format!(" (logged models: {})", tried.join("; "))
        }
    )
}

/// The `data:` file of the `onnx:` flavour in an MLmodel file's text.
pub fn onnx_flavour_file(mlmodel: &str) -> Option<String> {
    let mut in_flavors = false;
    let mut in_onnx = false;
    let mut onnx_indent = 0usize;
    for line in mlmodel.lines() {
        let indent = line.len() - line.trim_start().len();
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        if indent == 0 {
            in_flavors = t == "flavors:";
            in_onnx = false;
            continue;
        }
        if in_flavors && !in_onnx && t == "onnx:" {
            in_onnx = true;
            onnx_indent = indent;
            continue;
        }
        if in_onnx {
            if indent <= onnx_indent {
                in_onnx = t == "onnx:";
                continue;
            }
            if let Some(v) = t.strip_prefix("data:") {
                return Some(v.trim().trim_matches(|c| c == '"' || c == '\'').to_string());
            }
        }
    }
    None
}

fn onnx_in_mlflow_dir_local(dir: &Path) -> anyhow::Result<Option<PathBuf>> {
    let mlmodel = dir.join("MLmodel");
    if !mlmodel.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&mlmodel)?;
    Ok(onnx_flavour_file(&text).map(|f| dir.join(f)))
}

fn onnx_in_store(ctx: &Ctx, tracker: &Tracker<'_>, dir: &str) -> anyhow::Result<Option<Vec<u8>>> {
    let read = |path: String| -> anyhow::Result<Option<Vec<u8>>> {
        ctx.rt.block_on(async {
            if !tracker.artifacts.is_file(&path).await? {
                return Ok(None);
            }
            let (_, mut s) = tracker.artifacts.get_stream(&path).await?;
            let mut out = vec![];
            while let Some(c) = s.next().await {
                out.extend_from_slice(&c?);
            }
            Ok(Some(out))
        })
    };
    let Some(text) = read(format!("{dir}/MLmodel"))? else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(&text).to_string();
    let Some(file) = onnx_flavour_file(&text) else {
        return Ok(None);
    };
    read(format!("{dir}/{file}")).with_context(|| format!("cannot read {dir}/{file}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert!(parse_duration("10x").is_err());
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5m3").is_err());
    }

    #[test]
    fn mlmodel_onnx_flavour() {
        let text = "artifact_path: model\nflavors:\n  python_function:\n    data: model.onnx\n    loader_module: mlflow.onnx\n  onnx:\n    code: null\n    data: model.onnx\n    onnx_version: 1.17.0\nmlflow_version: 3.1.0\n";
        assert_eq!(onnx_flavour_file(text).as_deref(), Some("model.onnx"));
        let no = "flavors:\n  sklearn:\n    pickled_model: model.pkl\n";
        assert_eq!(onnx_flavour_file(no), None);
    }
}
