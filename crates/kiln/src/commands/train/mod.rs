//! `kiln train NAME`: trains a `[train.NAME]` definition — a native trainer on a feature set
//! (with an optional search whose trials are child runs of one parent run) or an external
//! command — records every run, packages the model and registers it.

mod command;
mod eval;
mod fit;
mod package;
mod progress;
pub mod resources;
pub mod tracking;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;
use kiln_data::training::{LabelKind, Split, TrainingTable};
use kiln_ml::search::{Direction, Method, SearchConfig};
use kiln_ml::{Matrix, Task};

use super::data::{Ctx, ProjectArgs, short, thousands};
use crate::project::TrainConfig;
use tracking::{PARENT_TAG, RunRef, Tracker};

#[derive(Args, Debug)]
pub struct TrainArgs {
    #[command(flatten)]
    pub project: ProjectArgs,
    /// The `[train.NAME]` definition to run.
    pub name: String,
    /// Sign the package with this ed25519 private key (see `kiln keys new`).
    #[arg(long, env = "KILN_SIGNING_KEY")]
    pub sign_key: Option<PathBuf>,
    /// Do not register the model even if the definition names a registered model.
    #[arg(long)]
    pub no_register: bool,
    /// Print the outcome as JSON.
    #[arg(long)]
    pub json: bool,
}

/// What a finished training reports.
#[derive(Debug, serde::Serialize)]
pub struct Outcome {
    pub name: String,
    pub experiment_id: String,
    pub run_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_run_id: Option<String>,
    pub metrics: BTreeMap<String, f64>,
    pub params: BTreeMap<String, String>,
    pub package_digest: String,
    pub package_uri: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registered: Option<(String, String)>,
    pub trials: usize,
}

pub fn run(args: TrainArgs) -> anyhow::Result<ExitCode> {
    let ctx = Ctx::new(&args.project)?;
    let outcome = train(&ctx, &args)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&outcome)?);
    } else {
        print_outcome(&outcome);
    }
    Ok(ExitCode::SUCCESS)
}

/// Trains `[train.NAME]` (`args.name`): a native trainer or an external command, tracked,
/// packaged and registered. Used by `kiln train` and by `kiln apply`.
pub fn train(ctx: &Ctx, args: &TrainArgs) -> anyhow::Result<Outcome> {
    let cfg = ctx.project.training(&args.name)?.clone();
    if cfg.command.is_some() {
        if cfg.algorithm.is_some() {
            bail!(
                "train.{}: give either `command` or `algorithm`, not both",
                args.name
            );
        }
        command::run(ctx, args, &cfg)
    } else {
        native(ctx, args, &cfg)
    }
}

pub fn print_outcome(o: &Outcome) {
    println!(
        "trained {}: run {} (experiment {}){}",
        o.name,
        o.run_id,
        o.experiment_id,
        o.parent_run_id
            .as_ref()
            .map(|p| format!(", best of {} trials under parent run {p}", o.trials))
            .unwrap_or_default()
    );
    let shown: Vec<String> = o
        .metrics
        .iter()
        .filter(|(k, _)| (k.starts_with("valid_") || k.starts_with("test_")) && !k.contains('.'))
        .map(|(k, v)| format!("{k}={v:.4}"))
        .collect();
    if !shown.is_empty() {
        println!("  {}", shown.join("  "));
    }
    if let Some(c) = o.metrics.get("cost_estimate") {
        println!(
            "  wall {:.1}s  cpu {:.1}s  peak {:.0} MB  cost {:.6}",
            o.metrics.get("wall_seconds").copied().unwrap_or(0.0),
            o.metrics.get("cpu_seconds").copied().unwrap_or(0.0),
            o.metrics.get("peak_rss_mb").copied().unwrap_or(0.0),
            c
        );
    }
    println!(
        "  package {} at {}",
        short(&o.package_digest),
        o.package_uri
    );
    if let Some((m, v)) = &o.registered {
        println!("  registered {m} version {v}");
    }
}

/// Tags every Kiln training run carries.
fn base_tags(ctx: &Ctx, name: &str, cfg: &TrainConfig) -> Vec<(String, String)> {
    let code = resources::code_version(&ctx.project.dir);
    let mut tags = vec![
        ("mlflow.source.name".into(), format!("kiln train {name}")),
        ("mlflow.source.type".into(), "JOB".into()),
        ("kiln.train".into(), name.to_string()),
        ("kiln.version".into(), env!("CARGO_PKG_VERSION").to_string()),
        ("kiln.host".into(), resources::host()),
        ("kiln.code_dirty".into(), code.dirty.to_string()),
        (
            "kiln.cost_currency".into(),
            ctx.project.file.costs.currency.clone(),
        ),
    ];
    if let Some(c) = code.commit {
        tags.push(("mlflow.source.git.commit".into(), c));
    }
    if let Some(a) = &cfg.algorithm {
        tags.push(("kiln.algorithm".into(), a.clone()));
    }
    if let Some(d) = &cfg.description {
        tags.push(("mlflow.note.content".into(), d.clone()));
    }
    tags
}

/// The training data of a native run, split and ready for a trainer.
pub struct Data {
    pub table: TrainingTable,
    pub task: Task,
    pub class_labels: Vec<String>,
    pub train: (Matrix, Vec<f64>),
    pub valid: Option<(Matrix, Vec<f64>)>,
    pub test: Option<(Matrix, Vec<f64>)>,
    pub test_rows: Vec<usize>,
}

fn task_of(cfg_task: Option<&str>, table: &TrainingTable) -> anyhow::Result<(Task, Vec<String>)> {
    let distinct = |labels: &[f64]| -> Vec<i64> {
        let mut v: Vec<i64> = labels
            .iter()
            .filter(|x| x.is_finite())
            .map(|x| *x as i64)
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    let classes = match &table.label_kind {
        LabelKind::Bool => vec!["false".to_string(), "true".to_string()],
        LabelKind::Text { classes } => classes.clone(),
        LabelKind::Int | LabelKind::Float => vec![],
    };
    let task = match cfg_task {
        Some("regression") => {
            if matches!(table.label_kind, LabelKind::Text { .. }) {
                bail!("label `{}` is text; regression needs numbers", table.label);
            }
            Task::Regression
        }
        Some("binary") => Task::Binary,
        Some("multiclass") => {
            let n = if classes.is_empty() {
                distinct(&table.labels)
                    .last()
                    .map_or(0, |m| *m as usize + 1)
            } else {
                classes.len()
            };
            Task::Multiclass { classes: n }
        }
        Some(other) => {
            bail!("unknown task {other:?}: expected \"binary\", \"multiclass\" or \"regression\"")
        }
        None => match &table.label_kind {
            LabelKind::Bool => Task::Binary,
            LabelKind::Text { classes } if classes.len() == 2 => Task::Binary,
            LabelKind::Text { classes } => Task::Multiclass {
                classes: classes.len(),
            },
            // Numbers that are all 0 or 1 (a derived `x > 15` is stored as 0.0 / 1.0) are
            // a binary label; any other numbers are a regression target.
            LabelKind::Int | LabelKind::Float => {
                let whole = table
                    .labels
                    .iter()
                    .filter(|x| x.is_finite())
                    .all(|x| x.fract() == 0.0);
                if whole && distinct(&table.labels) == [0, 1] {
                    Task::Binary
                } else {
                    Task::Regression
                }
            }
        },
    };
    let labels = if classes.is_empty() && task.is_classification() {
        (0..task.n_classes()).map(|i| i.to_string()).collect()
    } else {
        classes
    };
    Ok((task, labels))
}

fn load_data(built: &super::features::Built, cfg: &TrainConfig) -> anyhow::Result<Data> {
    let table = kiln_data::training::load_training(&built.dir)
        .with_context(|| format!("cannot read the feature table in {}", built.dir.display()))?;
    let (task, class_labels) = task_of(cfg.task.as_deref(), &table)?;
    let part = |s: Split| -> Option<(Matrix, Vec<f64>, Vec<usize>)> {
        let idx = table.rows_of(s);
        if idx.is_empty() {
            return None;
        }
        let cols = table.columns.len();
        let mut data = Vec::with_capacity(idx.len() * cols);
        for &i in &idx {
            for c in &table.columns {
                data.push(c[i]);
            }
        }
        let y = idx.iter().map(|&i| table.labels[i]).collect();
        Some((
            Matrix {
                rows: idx.len(),
                cols,
                data,
            },
            y,
            idx,
        ))
    };
    let Some((tx, ty, _)) = part(Split::Train) else {
        bail!(
            "feature set `{}` has no training rows (check its split dates)",
            table.summary.name
        );
    };
    let valid = part(Split::Valid).map(|(x, y, _)| (x, y));
    let (test, test_rows) = match part(Split::Test) {
        Some((x, y, idx)) => (Some((x, y)), idx),
        None => (None, vec![]),
    };
    for s in &cfg.segments {
        if !table.keep.contains_key(s) {
            bail!(
                "segments: feature set `{}` keeps no column `{s}` (kept: {})",
                table.summary.name,
                table.keep.keys().cloned().collect::<Vec<_>>().join(", ")
            );
        }
    }
    Ok(Data {
        table,
        task,
        class_labels,
        train: (tx, ty),
        valid,
        test,
        test_rows,
    })
}

/// A parameter value as MLflow records it (text).
fn param_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn toml_to_json(v: &toml::Value) -> anyhow::Result<serde_json::Value> {
    Ok(serde_json::to_value(v)?)
}

/// One trained trial: its run, its model and its numbers.
struct Trial {
    run: RunRef,
    params: BTreeMap<String, serde_json::Value>,
    fitted: fit::Fitted,
    metrics: BTreeMap<String, f64>,
    measured: resources::Measured,
}

fn native(ctx: &Ctx, args: &TrainArgs, cfg: &TrainConfig) -> anyhow::Result<Outcome> {
    let name = &args.name;
    let algorithm = cfg.algorithm.as_deref().with_context(|| {
        format!("train.{name}: give `algorithm` (gbdt, linear, logistic) or `command`")
    })?;
    fit::check_algorithm(algorithm).with_context(|| format!("train.{name}.algorithm"))?;
    let features = cfg
        .features
        .as_deref()
        .with_context(|| format!("train.{name}: a native trainer needs `features = \"SET\"`"))?;
    let built = super::features::ensure_built(ctx, features, false, None)?;
    let data = load_data(&built, cfg)?;
    eprintln!(
        "training {name}: {algorithm} ({}) on {features} — train {} rows, valid {}, test {}; {} features",
        task_name(data.task),
        thousands(data.train.0.rows as u64),
        thousands(data.valid.as_ref().map_or(0, |v| v.0.rows) as u64),
        thousands(data.test.as_ref().map_or(0, |v| v.0.rows) as u64),
        data.table.features.len()
    );
    let base: BTreeMap<String, serde_json::Value> = cfg
        .params
        .iter()
        .map(|(k, v)| Ok((k.clone(), toml_to_json(v)?)))
        .collect::<anyhow::Result<_>>()?;
    // Check the declared parameters before any run is created.
    fit::check_params(algorithm, data.task, &data.table.features, &base)
        .with_context(|| format!("train.{name}.params"))?;
    fit::check_data(algorithm, &data).with_context(|| format!("train.{name}"))?;

    let mut tracker = Tracker::new(ctx)?;
    let experiment = cfg.experiment.clone().unwrap_or_else(|| name.clone());
    let experiment_id = tracker.experiment(&experiment)?;
    let tags = base_tags(ctx, name, cfg);
    let inputs = eval::dataset_inputs(ctx, &built)?;

    let search: Option<SearchConfig> = match &cfg.search {
        Some(v) => {
            let s: SearchConfig = serde_json::from_value(toml_to_json(v)?)
                .with_context(|| format!("train.{name}.search"))?;
            s.validate()
                .with_context(|| format!("train.{name}.search"))?;
            Some(s)
        }
        None => None,
    };

    let (best, parent, trials) = match search {
        None => {
            let run = tracker.start(&experiment_id, name, tags.clone())?;
            tracker.inputs(&run, inputs.clone())?;
            let t = run_trial(ctx, &mut tracker, run, algorithm, &data, &base, cfg, None)?;
            (t, None, 1)
        }
        Some(s) => {
            let parent_run = tracker.start(&experiment_id, name, tags.clone())?;
            tracker.inputs(&parent_run, inputs.clone())?;
            let meter = resources::Meter::start();
            let result = search_trials(
                ctx,
                &mut tracker,
                &parent_run,
                &experiment_id,
                &tags,
                &inputs,
                algorithm,
                &data,
                &base,
                cfg,
                &s,
            );
            match result {
                Ok((best, n)) => {
                    let m = meter.stop();
                    for (k, v) in m.metrics(&ctx.project.file.costs) {
                        tracker.metric(&parent_run, &k, v, 0)?;
                    }
                    (best, Some((parent_run, m)), n)
                }
                Err(e) => {
                    tracker.end(&parent_run, "FAILED")?;
                    return Err(e);
                }
            }
        }
    };

    // The best (or only) trial's model becomes the package.
    let pkg = package::native(ctx, &mut tracker, args, cfg, &built, &data, &best);
    let pkg = match pkg {
        Ok(p) => p,
        Err(e) => {
            tracker.end(&best.run, "FAILED")?;
            if let Some((p, _)) = &parent {
                tracker.end(p, "FAILED")?;
            }
            return Err(e);
        }
    };
    tracker.end(&best.run, "FINISHED")?;
    let mut metrics = best.metrics.clone();
    for (k, v) in best.measured.metrics(&ctx.project.file.costs) {
        metrics.insert(k, v);
    }
    let parent_id = if let Some((p, m)) = &parent {
        // The parent shows the winner: its params, metrics and run id.
        let summary: BTreeMap<String, String> = best
            .params
            .iter()
            .map(|(k, v)| (format!("best.{k}"), param_text(v)))
            .collect();
        tracker.params(p, &summary)?;
        for (k, v) in &best.metrics {
            if !k.contains('.') {
                tracker.metric(p, &format!("best_{k}"), *v, 0)?;
            }
        }
        tracker.tags(
            p,
            &[
                ("kiln.best_run_id".into(), best.run.run_id.clone()),
                ("kiln.trials".into(), trials.to_string()),
            ],
        )?;
        tracker.end(p, "FINISHED")?;
        for (k, v) in m.metrics(&ctx.project.file.costs) {
            metrics.insert(format!("search_{k}"), v);
        }
        Some(p.run_id.clone())
    } else {
        None
    };
    Ok(Outcome {
        name: name.clone(),
        experiment_id,
        run_id: best.run.run_id.clone(),
        parent_run_id: parent_id,
        metrics,
        params: best
            .params
            .iter()
            .map(|(k, v)| (k.clone(), param_text(v)))
            .collect(),
        package_digest: pkg.digest,
        package_uri: pkg.uri,
        registered: pkg.registered,
        trials,
    })
}

fn task_name(t: Task) -> String {
    match t {
        Task::Regression => "regression".into(),
        Task::Binary => "binary classification".into(),
        Task::Multiclass { classes } => format!("{classes}-class classification"),
    }
}

/// Trains one parameter set in `run`: params logged first, loss per iteration as it goes,
/// then metrics on valid and test (overall and per segment), importance, and resources.
#[allow(clippy::too_many_arguments)]
fn run_trial(
    ctx: &Ctx,
    tracker: &mut Tracker<'_>,
    run: RunRef,
    algorithm: &str,
    data: &Data,
    params: &BTreeMap<String, serde_json::Value>,
    cfg: &TrainConfig,
    label: Option<&str>,
) -> anyhow::Result<Trial> {
    let logged: BTreeMap<String, String> = params
        .iter()
        .map(|(k, v)| (k.clone(), param_text(v)))
        .chain([
            ("algorithm".to_string(), algorithm.to_string()),
            ("task".to_string(), task_name(data.task)),
        ])
        .collect();
    tracker.params(&run, &logged)?;
    let meter = resources::Meter::start();
    let mut bar = progress::Progress::new(
        label.unwrap_or(algorithm),
        fit::rounds_hint(algorithm, params),
    );
    let mut history: Vec<(usize, f64, Option<f64>)> = vec![];
    let fitted = fit::fit(algorithm, data, params, &mut |i, train_loss, valid_loss| {
        bar.step(i, train_loss, valid_loss);
        history.push((i, train_loss, valid_loss));
    });
    bar.finish();
    let fitted = match fitted {
        Ok(f) => f,
        Err(e) => {
            tracker.end(&run, "FAILED")?;
            return Err(e);
        }
    };
    for (i, tl, vl) in &history {
        tracker.metric(&run, "train_loss", *tl, *i as i64)?;
        if let Some(v) = vl {
            tracker.metric(&run, "valid_loss", *v, *i as i64)?;
        }
    }
    let metrics = eval::evaluate_model(tracker, &run, data, &fitted, cfg)?;
    let measured = meter.stop();
    for (k, v) in measured.metrics(&ctx.project.file.costs) {
        tracker.metric(&run, &k, v, 0)?;
    }
    tracker.flush()?;
    Ok(Trial {
        run,
        params: params.clone(),
        fitted,
        metrics,
        measured,
    })
}

fn default_metric(task: Task, has_valid: bool) -> String {
    let split = if has_valid { "valid" } else { "train" };
    match task {
        Task::Binary => format!("{split}_auc"),
        Task::Multiclass { .. } => format!("{split}_log_loss"),
        Task::Regression => format!("{split}_rmse"),
    }
}

/// Runs the search's trials as child runs; returns the best trial and how many ran.
#[allow(clippy::too_many_arguments)]
fn search_trials(
    ctx: &Ctx,
    tracker: &mut Tracker<'_>,
    parent: &RunRef,
    experiment_id: &str,
    tags: &[(String, String)],
    inputs: &[kiln_core::entities::DatasetInput],
    algorithm: &str,
    data: &Data,
    base: &BTreeMap<String, serde_json::Value>,
    cfg: &TrainConfig,
    s: &SearchConfig,
) -> anyhow::Result<(Trial, usize)> {
    let metric = s
        .metric
        .clone()
        .unwrap_or_else(|| default_metric(data.task, data.valid.is_some()));
    let direction = s
        .direction
        .unwrap_or_else(|| Direction::for_metric(&metric));
    let candidates = s.candidates()?;
    tracker.params(
        parent,
        &BTreeMap::from([
            (
                "search.method".into(),
                format!("{:?}", s.method).to_lowercase(),
            ),
            ("search.metric".into(), metric.clone()),
            ("search.candidates".into(), candidates.len().to_string()),
        ]),
    )?;
    let rungs: Vec<(usize, Option<u64>)> = match s.method {
        Method::Halving => s.rungs().into_iter().map(|(n, b)| (n, Some(b))).collect(),
        _ => vec![(candidates.len(), None)],
    };
    let mut alive: Vec<usize> = (0..candidates.len()).collect();
    let mut best: Option<Trial> = None;
    let mut ran = 0usize;
    for (rung, (_, budget)) in rungs.iter().enumerate() {
        let mut scores = Vec::with_capacity(alive.len());
        let mut this_rung: Vec<Trial> = vec![];
        for (k, &c) in alive.iter().enumerate() {
            let mut params = base.clone();
            params.extend(candidates[c].clone());
            if let (Some(b), Some(p)) = (budget, &s.budget_param) {
                params.insert(p.clone(), serde_json::json!(b));
            }
            fit::check_params(algorithm, data.task, &data.table.features, &params)
                .with_context(|| format!("search candidate {}", c + 1))?;
            let mut t = tags.to_vec();
            t.push((PARENT_TAG.into(), parent.run_id.clone()));
            t.push(("kiln.trial".into(), (c + 1).to_string()));
            if budget.is_some() {
                t.push(("kiln.rung".into(), (rung + 1).to_string()));
            }
            let run_name = match budget {
                Some(b) => format!("{}-trial-{}-rung-{}-b{b}", cfg_name(tags), c + 1, rung + 1),
                None => format!("{}-trial-{}", cfg_name(tags), c + 1),
            };
            let run = tracker.start(experiment_id, &run_name, t)?;
            tracker.inputs(&run, inputs.to_vec())?;
            let label = format!("trial {}/{}", k + 1, alive.len());
            let trial = run_trial(
                ctx,
                tracker,
                run,
                algorithm,
                data,
                &params,
                cfg,
                Some(&label),
            )?;
            ran += 1;
            let score = trial.metrics.get(&metric).copied().with_context(|| {
                format!(
                    "search metric `{metric}` was not measured (measured: {})",
                    trial
                        .metrics
                        .keys()
                        .filter(|k| !k.contains('.'))
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })?;
            eprintln!(
                "  {run_name}: {metric} = {score:.5}  ({})",
                candidates[c]
                    .iter()
                    .map(|(k, v)| format!("{k}={}", param_text(v)))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            scores.push(score);
            this_rung.push(trial);
        }
        let last = rung + 1 == rungs.len();
        if last {
            let winner = kiln_ml::search::survivors(&scores, 1, direction)[0];
            let mut trials = this_rung;
            let b = trials.swap_remove(winner);
            // Runs that are not the winner are finished now; the winner after packaging.
            for t in &trials {
                tracker.end(&t.run, "FINISHED")?;
            }
            tracker.tags(&b.run, &[("kiln.best_trial".into(), "true".into())])?;
            best = Some(b);
        } else {
            let keep = rungs[rung + 1].0;
            let kept = kiln_ml::search::survivors(&scores, keep, direction);
            for (i, t) in this_rung.iter().enumerate() {
                tracker.end(&t.run, "FINISHED")?;
                if !kept.contains(&i) {
                    tracker.tags(
                        &t.run,
                        &[("kiln.stopped_at_rung".into(), (rung + 1).to_string())],
                    )?;
                }
            }
            alive = kept.into_iter().map(|i| alive[i]).collect();
            alive.sort_unstable();
        }
    }
    Ok((best.expect("the last rung has a winner"), ran))
}

fn cfg_name(tags: &[(String, String)]) -> String {
    tags.iter()
        .find(|(k, _)| k == "kiln.train")
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}
