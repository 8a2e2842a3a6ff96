//! `kiln plan` and `kiln apply`: the difference between `kiln.toml` and the platform's
//! state, and carrying it out — datasets validated and versioned, feature sets built,
//! trainings run and registered, release policies stored, the deployments' models released
//! through their gates, monitors checked — in dependency order, each finished step recorded
//! with the key of its spec and inputs (so a second apply changes nothing and an apply that
//! stopped resumes where it stopped), under a lock so two applies never interleave.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use kiln_pipeline::plan::{self, Action, Applied, Kind, Plan, Resource, ResourceId, Step};
use kiln_pipeline::{Executor, Ledger, Progress, StepError};
use kiln_store::{ApplyRecord, NewEvent, Store};
use serde_json::{Value, json};

use super::data::{Ctx, ProjectArgs, short, thousands};
use super::features::ensure_built;
use super::train::{TrainArgs, train};

#[derive(Args, Debug)]
pub struct PlanArgs {
    #[command(flatten)]
    pub project: ProjectArgs,
    /// List unchanged resources too.
    #[arg(long)]
    pub all: bool,
    /// Print the plan as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub project: ProjectArgs,
    /// Sign the packages of trainings with this ed25519 private key.
    #[arg(long, env = "KILN_SIGNING_KEY")]
    pub sign_key: Option<PathBuf>,
    /// Who is applying, recorded with every change (default: $USER).
    #[arg(long, env = "KILN_USER")]
    pub user: Option<String>,
    /// Take the apply lock even if another apply holds it (after that apply crashed on a
    /// machine where it cannot be restarted; the lock also expires by itself 90 s after its
    /// holder stops renewing it).
    #[arg(long)]
    pub force_unlock: bool,
    /// Show the past applies instead of applying.
    #[arg(long)]
    pub history: bool,
    /// Print the outcome as JSON.
    #[arg(long)]
    pub json: bool,
}

/// How long the apply lock lasts without renewal, and how often it is renewed.
const LOCK_TTL_MS: i64 = 90_000;
const LOCK_RENEW: Duration = Duration::from_secs(20);

pub fn plan_command(a: PlanArgs) -> anyhow::Result<ExitCode> {
    let ctx = Ctx::new(&a.project)?;
    let desired = resources(&ctx)?;
    let applied = applied(&ctx)?;
    let plan = make_plan(&ctx, &desired, &applied)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&plan)?);
    } else if plan.is_empty() && !a.all {
        println!(
            "No changes: the platform matches {} ({} resources).",
            ctx.project.path.display(),
            plan.count(Action::Unchanged)
        );
    } else {
        print!("{}", plan.render(a.all));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn apply_command(a: ApplyArgs) -> anyhow::Result<ExitCode> {
    let ctx = Ctx::new(&a.project)?;
    if a.history {
        return history(&ctx, a.json);
    }
    let actor = a
        .user
        .clone()
        .or_else(|| std::env::var("USER").ok())
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "kiln".into());
    let outcome = run_apply(&ctx, &actor, a.sign_key.clone(), a.force_unlock, !a.json)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&outcome.summary)?);
    }
    Ok(if outcome.refusals.is_empty() {
        ExitCode::SUCCESS
    } else {
        // Ran to the end, but a release gate kept a new version from its alias.
        ExitCode::from(1)
    })
}

/// What an apply did.
pub struct Outcome {
    pub summary: Value,
    /// Releases refused by their gates: (deployment, message).
    pub refusals: Vec<(String, String)>,
}

/// Plans and applies the project under the store's apply lock. Progress goes to stderr
/// when `print` is set.
pub fn run_apply(
    ctx: &Ctx,
    actor: &str,
    sign_key: Option<PathBuf>,
    force_unlock: bool,
    print: bool,
) -> anyhow::Result<Outcome> {
    let store = ctx.store()?;
    let holder = format!(
        "{actor}@{} pid {}",
        super::train::resources::host(),
        std::process::id()
    );
    if force_unlock && let Some(l) = ctx.rt.block_on(store.apply_lock())? {
        eprintln!("breaking the apply lock held by {}", l.holder);
        ctx.rt.block_on(store.release_apply_lock(&l.holder))?;
    }
    if ctx
        .rt
        .block_on(store.acquire_apply_lock(&holder, LOCK_TTL_MS))
        .is_err()
        && let Some(l) = ctx.rt.block_on(store.apply_lock())?
        && crashed_here(&l.holder)
    {
        // Its holder was an apply on this machine whose process is gone (killed, crashed):
        // no need to wait for the lease to expire.
        eprintln!(
            "taking over the apply lock of {}, which is no longer running",
            l.holder
        );
        ctx.rt.block_on(store.release_apply_lock(&l.holder))?;
    }
    ctx.rt
        .block_on(store.acquire_apply_lock(&holder, LOCK_TTL_MS))
        .context("cannot take the apply lock (kiln apply --force-unlock breaks it once you are sure its holder is gone)")?;
    let lock = LockKeeper::start(ctx, &holder)?;
    let result = plan_and_apply(ctx, actor, sign_key, print, &lock);
    lock.stop();
    let _ = ctx.rt.block_on(store.release_apply_lock(&holder));
    result
}

/// Whether a lock holder (`USER@HOST pid N`) was a process on this host that no longer runs.
fn crashed_here(holder: &str) -> bool {
    let Some((who, pid)) = holder.rsplit_once(" pid ") else {
        return false;
    };
    let Some((_, host)) = who.rsplit_once('@') else {
        return false;
    };
    let Ok(pid) = pid.trim().parse::<i32>() else {
        return false;
    };
    if host != super::train::resources::host() || pid <= 0 || pid as u32 == std::process::id() {
        return false;
    }
    matches!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
        Err(nix::errno::Errno::ESRCH)
    )
}

fn plan_and_apply(
    ctx: &Ctx,
    actor: &str,
    sign_key: Option<PathBuf>,
    print: bool,
    lock: &LockKeeper,
) -> anyhow::Result<Outcome> {
    let store = ctx.store()?;
    // Planned under the lock, so no other apply changes the state in between.
    let desired = resources(ctx)?;
    let applied_now = applied(ctx)?;
    let plan = make_plan(ctx, &desired, &applied_now)?;
    if print {
        if plan.is_empty() {
            eprintln!(
                "No changes: the platform matches {}.",
                ctx.project.path.display()
            );
        } else {
            eprint!("{}", plan.render(false));
        }
    }
    let apply_id = ctx.rt.block_on(store.start_apply(actor))?;
    let mut exec = Steps {
        ctx,
        actor: actor.to_string(),
        sign_key,
        print,
        refusals: vec![],
    };
    let mut ledger = StoreLedger {
        ctx,
        actor: actor.to_string(),
        apply_id,
        lock,
    };
    let mut progress = |p: Progress<'_>| {
        if !print {
            return;
        }
        match p {
            Progress::Start { step, index, total } => {
                eprintln!("[{index}/{total}] {} ({:?})", step.id, step.action)
            }
            Progress::Done {
                step,
                outputs,
                seconds,
            } => eprintln!(
                "      done in {seconds:.1}s: {}",
                describe(&step.id, outputs)
            ),
            Progress::Removed { step } => eprintln!("      {} forgotten", step.id),
        }
    };
    let result = kiln_pipeline::apply(
        &plan,
        &desired,
        &applied_now,
        &mut exec,
        &mut ledger,
        &mut progress,
    );
    let (status, report, error) = match &result {
        Ok(r) => ("succeeded", r.clone(), None),
        Err(e) => ("failed", e.report.clone(), Some(e.to_string())),
    };
    let summary = json!({
        "apply_id": apply_id,
        "status": status,
        "ran": report.ran.iter().map(|(id, action, s)| json!({
            "resource": id.to_string(), "action": action, "seconds": s
        })).collect::<Vec<_>>(),
        "unchanged": report.unchanged,
        "refused": exec.refusals.iter().map(|(d, m)| json!({"deployment": d, "message": m})).collect::<Vec<_>>(),
        "error": error,
    });
    ctx.rt
        .block_on(store.finish_apply(apply_id, status, summary.clone()))?;
    if let Err(e) = result {
        return Err(anyhow::anyhow!(
            "{e}\n(the steps before it are recorded; fix the cause and run kiln apply again to go on from there)"
        ));
    }
    if print {
        eprintln!(
            "Apply {apply_id} complete: {} ran, {} unchanged.",
            report.ran.len(),
            report.unchanged
        );
        for (d, m) in &exec.refusals {
            eprintln!("refused: deploy.{d}: {m}");
        }
    }
    Ok(Outcome {
        summary,
        refusals: exec.refusals,
    })
}

fn history(ctx: &Ctx, as_json: bool) -> anyhow::Result<ExitCode> {
    let runs = ctx.rt.block_on(ctx.store()?.applies(20))?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&runs)?);
        return Ok(ExitCode::SUCCESS);
    }
    if runs.is_empty() {
        println!("no applies yet");
    }
    for r in runs {
        let ran = r.summary["ran"].as_array().map_or(0, Vec::len);
        println!(
            "apply {:<4} {}  {:<9} by {}: {ran} ran, {} unchanged{}",
            r.id,
            super::data::utc(r.started_at),
            r.status,
            r.actor,
            r.summary["unchanged"].as_u64().unwrap_or(0),
            r.summary["error"]
                .as_str()
                .map_or(String::new(), |e| format!(" — {e}"))
        );
    }
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------- resources

/// The resources `kiln.toml` declares, with their dependencies and external inputs.
pub fn resources(ctx: &Ctx) -> anyhow::Result<Vec<Resource>> {
    let mut out = declared(ctx)?;
    // Values from the environment never reach the state: specs keep `${NAME}`, and a digest
    // of the values stands for them in the key (a rotated secret re-applies what uses it).
    let secrets = &ctx.project.secrets;
    for r in &mut out {
        let raw = r.spec.to_string();
        let used: Vec<&(String, String)> = secrets
            .iter()
            .filter(|(_, v)| raw.contains(v.as_str()))
            .collect();
        if !used.is_empty() {
            let joined: String = used.iter().map(|(n, v)| format!("{n}={v}\n")).collect();
            r.inputs.insert(
                "environment".into(),
                kiln_ml::package::sha256_hex(joined.as_bytes()),
            );
            r.spec = ctx.project.redact(std::mem::take(&mut r.spec));
        }
    }
    Ok(out)
}

fn declared(ctx: &Ctx) -> anyhow::Result<Vec<Resource>> {
    let f = &ctx.project.file;
    let mut out = vec![];
    for (name, cfg) in &f.data {
        let mut inputs = BTreeMap::new();
        let source = ctx.project.resolve_source(&cfg.source);
        inputs.insert("source".to_string(), source_digest(&source)?);
        out.push(Resource {
            id: ResourceId::new(Kind::Dataset, name),
            spec: serde_json::to_value(cfg)?,
            inputs,
            depends_on: vec![],
        });
    }
    for (name, cfg) in &f.features {
        let mut deps = vec![ResourceId::new(Kind::Dataset, &cfg.source)];
        deps.extend(
            cfg.join
                .iter()
                .map(|j| ResourceId::new(Kind::Dataset, &j.dataset)),
        );
        out.push(Resource {
            id: ResourceId::new(Kind::Features, name),
            spec: serde_json::to_value(cfg)?,
            inputs: BTreeMap::new(),
            depends_on: deps,
        });
    }
    for (name, cfg) in &f.train {
        let mut inputs = BTreeMap::new();
        inputs.insert(
            "costs".to_string(),
            serde_json::to_string(&(f.costs.core_hour, f.costs.gb_hour, &f.costs.currency))?,
        );
        out.push(Resource {
            id: ResourceId::new(Kind::Train, name),
            spec: serde_json::to_value(cfg)?,
            inputs,
            depends_on: cfg
                .features
                .iter()
                .map(|x| ResourceId::new(Kind::Features, x))
                .collect(),
        });
    }
    for (name, cfg) in &f.release {
        let mut inputs = BTreeMap::new();
        for k in &cfg.trusted_keys {
            let path = ctx.project.dir.join(k);
            let digest = kiln_data::read::file_digest(&path).with_context(|| {
                format!(
                    "[release.{name}].trusted_keys: cannot read {}",
                    path.display()
                )
            })?;
            inputs.insert(format!("key {}", k.display()), digest);
        }
        out.push(Resource {
            id: ResourceId::new(Kind::Release, name),
            spec: serde_json::to_value(cfg)?,
            inputs,
            depends_on: vec![],
        });
    }
    for (name, cfg) in &f.deploy {
        let mut deps = vec![];
        if let Some(model) = cfg
            .model
            .as_deref()
            .and_then(|m| registered_model(&ctx.project.dir, m))
        {
            if f.release.contains_key(model) {
                deps.push(ResourceId::new(Kind::Release, model));
            }
            for (t, tc) in &f.train {
                if tc.register.as_deref() == Some(model) {
                    deps.push(ResourceId::new(Kind::Train, t));
                }
            }
        }
        out.push(Resource {
            id: ResourceId::new(Kind::Deploy, name),
            spec: serde_json::to_value(cfg)?,
            inputs: BTreeMap::new(),
            depends_on: deps,
        });
    }
    for (name, cfg) in &f.monitor {
        let deps = if f.deploy.contains_key(name) {
            vec![ResourceId::new(Kind::Deploy, name)]
        } else {
            vec![]
        };
        out.push(Resource {
            id: ResourceId::new(Kind::Monitor, name),
            spec: serde_json::to_value(cfg)?,
            inputs: BTreeMap::new(),
            depends_on: deps,
        });
    }
    Ok(out)
}

/// `[deploy.NAME].canary.window` in milliseconds (30 s when it does not parse; `kiln apply`
/// checks it in the monitor step).
fn canary_window_ms(cfg: &kiln_monitor::config::DeployConfig) -> i64 {
    cfg.canary
        .as_ref()
        .and_then(|c| super::incidents::parse_duration_ms(&c.window))
        .unwrap_or(30_000)
}

/// The registered model a deployment's `model` names (`MODEL@ALIAS`, `MODEL/VERSION`,
/// `models:/…`), or None for a file path (relative to the project directory `dir`).
fn registered_model<'a>(dir: &Path, reference: &'a str) -> Option<&'a str> {
    let rest = reference.strip_prefix("models:/").unwrap_or(reference);
    if dir.join(rest).exists() || rest.ends_with(".onnx") {
        return None;
    }
    if let Some((m, _)) = rest.split_once('@') {
        return Some(m);
    }
    rest.rsplit_once('/').map(|(m, _)| m)
}

/// The content digest of a local source; a remote source is keyed by its URL (its changes
/// are seen by the dataset version digest when it is read, not by the plan).
fn source_digest(source: &str) -> anyhow::Result<String> {
    let local = source.strip_prefix("file://").unwrap_or(source);
    if source.contains("://") && !source.starts_with("file://") {
        return Ok(format!("url {source}"));
    }
    let path = Path::new(local);
    if !path.exists() {
        bail!("dataset source {} does not exist", path.display());
    }
    Ok(kiln_data::read::file_digest(path)?)
}

/// What was applied before, from the store.
pub fn applied(ctx: &Ctx) -> anyhow::Result<Vec<Applied>> {
    let records = ctx.rt.block_on(ctx.store()?.apply_records())?;
    let mut out = vec![];
    for r in records {
        let Some(kind) = Kind::parse(&r.kind) else {
            // A kind a newer Kiln wrote: leave it alone.
            continue;
        };
        let inputs: BTreeMap<String, String> =
            serde_json::from_value(r.spec["inputs"].clone()).unwrap_or_default();
        out.push(Applied {
            id: ResourceId::new(kind, r.name),
            spec: r.spec["spec"].clone(),
            inputs,
            key: r.step_key,
            outputs: r.outputs,
        });
    }
    Ok(out)
}

fn make_plan(ctx: &Ctx, desired: &[Resource], applied: &[Applied]) -> anyhow::Result<Plan> {
    let store = ctx.store()?;
    let gone = |a: &Applied| -> Option<String> {
        match a.id.kind {
            Kind::Features => {
                let dir = a.outputs["dir"].as_str()?;
                (!Path::new(dir).join("features.parquet").is_file())
                    .then(|| format!("its build {dir} is gone"))
            }
            Kind::Train => {
                let model = a.outputs["registered_model"].as_str()?;
                let version = a.outputs["version"].as_str()?;
                ctx.rt
                    .block_on(store.get_model_version(model, version))
                    .is_err()
                    .then(|| format!("version {version} of `{model}` is gone"))
            }
            Kind::Deploy => {
                let c = a.outputs.get("canary").filter(|c| c.is_object())?;
                let due = c["started_at"].as_i64()? + c["window_ms"].as_i64()?;
                (kiln_store::now_ms() >= due).then(|| {
                    format!(
                        "canary version {} has run its window: end it (promote, or finish its rollback)",
                        c["version"].as_str().unwrap_or("?")
                    )
                })
            }
            _ => None,
        }
    };
    plan::plan(desired, applied, &gone)
        .map_err(|e| anyhow::anyhow!("{}: {e}", ctx.project.path.display()))
}

/// One line about a step's outputs.
fn describe(id: &ResourceId, o: &Value) -> String {
    let s = |k: &str| o[k].as_str().unwrap_or("").to_string();
    match id.kind {
        Kind::Dataset => format!(
            "version {} ({} rows, digest {}), {} rules passed{}",
            o["version"],
            thousands(o["rows"].as_u64().unwrap_or(0)),
            short(&s("digest")),
            o["rules"],
            match o["quarantined_rows"].as_u64() {
                Some(n) if n > 0 =>
                    format!(", {} rows quarantined to {}", thousands(n), s("quarantine")),
                _ => String::new(),
            }
        ),
        Kind::Features => format!(
            "{} build {} ({} rows) in {}",
            if o["reused"] == true { "reused" } else { "new" },
            short(&s("build_digest")),
            thousands(o["rows"].as_u64().unwrap_or(0)),
            s("dir")
        ),
        Kind::Train => format!(
            "run {}{}{}",
            s("run_id"),
            match (o["registered_model"].as_str(), o["version"].as_str()) {
                (Some(m), Some(v)) => format!(", registered {m} version {v}"),
                _ => String::new(),
            },
            o["metrics"]
                .as_object()
                .map(|m| m
                    .iter()
                    .filter(|(k, _)| k.starts_with("test_"))
                    .take(3)
                    .map(|(k, v)| format!(" {k}={:.4}", v.as_f64().unwrap_or(f64::NAN)))
                    .collect::<String>())
                .unwrap_or_default()
        ),
        Kind::Release => format!(
            "policy stored (protected: {})",
            o["protected"]
                .as_array()
                .map(|a| a
                    .iter()
                    .filter_map(|x| x.as_str())
                    .collect::<Vec<_>>()
                    .join(", "))
                .unwrap_or_default()
        ),
        Kind::Deploy => {
            let mut t = match o["version"].as_str() {
                Some(v) => format!("{} serves version {v}", s("model")),
                None => format!("{} (no version yet)", s("model")),
            };
            if let Some(p) = o["released"].as_object() {
                t.push_str(&format!(
                    "; released version {} to `{}`",
                    p["version"].as_str().unwrap_or(""),
                    p["alias"].as_str().unwrap_or("")
                ));
            }
            if let Some(c) = o["canary"].as_object() {
                t.push_str(&format!(
                    "; version {} runs as a {}% canary beside version {} until the next apply after its window",
                    c["version"].as_str().unwrap_or(""),
                    c["percent"],
                    c["previous"].as_str().unwrap_or("")
                ));
            }
            if let Some(c) = o["canary_ended"].as_object() {
                t.push_str(&format!(
                    "; canary version {} {}",
                    c["version"].as_str().unwrap_or(""),
                    c["outcome"].as_str().unwrap_or("")
                ));
            }
            if let Some(r) = o["refused"]["message"].as_str() {
                t.push_str(&format!("; release refused: {r}"));
            }
            t
        }
        Kind::Monitor => format!(
            "{} alert rules, {} receivers checked",
            o["rules"], o["receivers"]
        ),
    }
}

// ---------------------------------------------------------------- the steps

struct Steps<'a> {
    ctx: &'a Ctx,
    actor: String,
    sign_key: Option<PathBuf>,
    print: bool,
    refusals: Vec<(String, String)>,
}

impl Executor for Steps<'_> {
    fn run(
        &mut self,
        step: &Step,
        r: &Resource,
        upstream: &BTreeMap<ResourceId, Value>,
    ) -> Result<Value, StepError> {
        let name = r.id.name.as_str();
        let out = match r.id.kind {
            Kind::Dataset => self.dataset(name),
            Kind::Features => self.features(name),
            Kind::Train => self.train(name),
            Kind::Release => self.release(name),
            Kind::Deploy => self.deploy(name, step, upstream),
            Kind::Monitor => self.monitor(name),
        };
        out.map_err(|e| format!("{e:#}").into())
    }

    fn remove(&mut self, a: &Applied) -> Result<(), StepError> {
        // Datasets' versions, feature builds, runs, registered versions and stored policies
        // are history: forgetting the declaration keeps them, as removing a Terraform
        // resource with `prevent_destroy` would. Deployments and monitors are only
        // declarations here; the data plane stops serving a name when it is restarted
        // without it.
        if self.print {
            eprintln!(
                "      {} is no longer declared; what it produced is kept",
                a.id
            );
        }
        Ok(())
    }
}

impl Steps<'_> {
    fn dataset(&self, name: &str) -> anyhow::Result<Value> {
        let ctx = self.ctx;
        let table = ctx.read(name, None)?;
        let cfg = ctx.project.dataset(name)?;
        if cfg.expect.is_empty() {
            let v = ctx.record(name, &table)?;
            return Ok(json!({
                "digest": table.digest, "version": v.version, "rows": table.df.height(),
                "rules": 0, "success": true,
            }));
        }
        let (v, version) = ctx.validate(name, &table, None)?;
        if !v.report.success {
            eprint!("{}", super::data::render_report(&v.report, version.version));
            bail!("dataset `{name}` failed validation (report above); nothing downstream runs");
        }
        Ok(json!({
            "digest": table.digest,
            "version": version.version,
            "rows": v.report.rows,
            "rules": v.report.rules.len(),
            "success": v.report.success,
            "quarantined_rows": v.report.quarantined_rows,
            "quarantine": v.report.quarantine,
        }))
    }

    fn features(&self, name: &str) -> anyhow::Result<Value> {
        let built = ensure_built(self.ctx, name, false, None)?;
        let s = &built.summary;
        Ok(json!({
            "dir": built.dir.display().to_string(),
            "build_digest": s.build_digest,
            "table_digest": built.table_digest,
            "rows": s.train + s.valid + s.test,
            "reused": built.reused,
            "inputs": built.inputs,
        }))
    }

    fn train(&self, name: &str) -> anyhow::Result<Value> {
        let args = TrainArgs {
            project: self.ctx.args.clone(),
            name: name.to_string(),
            sign_key: self.sign_key.clone(),
            no_register: false,
            json: false,
        };
        let o = train(self.ctx, &args)?;
        let metrics: BTreeMap<&String, &f64> = o
            .metrics
            .iter()
            .filter(|(k, _)| {
                (k.starts_with("valid_") || k.starts_with("test_")) && !k.contains('.')
            })
            .collect();
        Ok(json!({
            "run_id": o.run_id,
            "experiment_id": o.experiment_id,
            "parent_run_id": o.parent_run_id,
            "package_digest": o.package_digest,
            "package_uri": o.package_uri,
            "registered_model": o.registered.as_ref().map(|r| &r.0),
            "version": o.registered.as_ref().map(|r| &r.1),
            "metrics": metrics,
        }))
    }

    fn release(&self, name: &str) -> anyhow::Result<Value> {
        let policy = self.ctx.project.release_policy(name)?;
        let protected: Vec<String> = policy.aliases.keys().cloned().collect();
        self.ctx.rt.block_on(
            self.ctx
                .store()?
                .put_release_policy(policy, format!("{} (kiln apply)", self.actor)),
        )?;
        Ok(json!({ "protected": protected }))
    }

    /// Releases a version trained in this apply to the alias the deployment follows,
    /// through the model's gates (the server's own code, on the same store), and resolves
    /// the version the deployment serves.
    fn deploy(
        &mut self,
        name: &str,
        step: &Step,
        upstream: &BTreeMap<ResourceId, Value>,
    ) -> anyhow::Result<Value> {
        let ctx = self.ctx;
        let cfg = ctx
            .project
            .file
            .deploy
            .get(name)
            .with_context(|| format!("no [deploy.{name}]"))?;
        let Some(reference) = cfg.model.clone() else {
            bail!("[deploy.{name}].model is missing: give MODEL@ALIAS, MODEL/VERSION or a path");
        };
        let mut out = json!({ "model": reference });
        let Some(model) = registered_model(&ctx.project.dir, &reference) else {
            return Ok(out);
        };
        let store = ctx.store()?;
        let alias = reference
            .strip_prefix("models:/")
            .unwrap_or(&reference)
            .split_once('@')
            .map(|(_, a)| a.to_string());
        // Candidates: versions of this model registered by trainings that ran now. The best
        // by the alias's first metric gate (higher is better unless the gate only caps it),
        // else the newest.
        let ranked_by = alias.as_deref().and_then(|a| {
            let g = ctx.project.file.release.get(model)?.aliases.get(a)?;
            let m = g.metrics.first()?;
            Some((m.metric.clone(), m.min.is_some() || m.max.is_none()))
        });
        let mut candidates: Vec<(String, Option<f64>)> = upstream
            .iter()
            .filter(|(id, _)| id.kind == Kind::Train && step.because.contains(id))
            .filter(|(_, o)| o["registered_model"] == model)
            .filter_map(|(_, o)| {
                let v = o["version"].as_str()?.to_string();
                let score = ranked_by
                    .as_ref()
                    .and_then(|(m, _)| o["metrics"][m.as_str()].as_f64())
                    .filter(|x| x.is_finite());
                Some((v, score))
            })
            .collect();
        let higher = ranked_by.as_ref().is_none_or(|(_, h)| *h);
        candidates.sort_by(|(va, sa), (vb, sb)| {
            let by_score = match (sa, sb) {
                (Some(a), Some(b)) if higher => a.total_cmp(b),
                (Some(a), Some(b)) => b.total_cmp(a),
                (Some(_), None) => std::cmp::Ordering::Greater,
                (None, Some(_)) => std::cmp::Ordering::Less,
                (None, None) => std::cmp::Ordering::Equal,
            };
            by_score.then(
                va.parse::<i64>()
                    .unwrap_or(0)
                    .cmp(&vb.parse::<i64>().unwrap_or(0)),
            )
        });
        if candidates.len() > 1 {
            out["candidates"] = json!(candidates);
        }
        let candidate = candidates.pop().map(|(v, _)| v);
        // A canary the last apply started, and no newer version now: its window has passed
        // (that is why this step runs), so it ends — promoted to all traffic if the alias
        // still holds it, or gone if the monitor rolled it back.
        let pending = match self.pending_canary(name)? {
            Some(c) if candidate.is_none() => {
                let due =
                    c["started_at"].as_i64().unwrap_or(0) + c["window_ms"].as_i64().unwrap_or(0);
                if kiln_store::now_ms() < due {
                    // Not due yet (this step runs for another reason): it goes on.
                    out["canary"] = c;
                    None
                } else {
                    Some(c)
                }
            }
            _ => None,
        };
        if let Some(c) = pending {
            let v = c["version"].as_str().unwrap_or_default().to_string();
            let prev = c["previous"].as_str().unwrap_or_default().to_string();
            let holder = match &alias {
                Some(a) => ctx
                    .rt
                    .block_on(store.alias_holder(model, a))?
                    .map(|x| x.to_string()),
                None => None,
            };
            out["reloaded"] = self.reload_running(name, model, &[&prev, &v], None)?;
            out["canary_ended"] = json!({
                "version": v,
                "outcome": if holder.as_deref() == Some(v.as_str()) { "promoted" } else { "rolled back" },
            });
        }
        if let (Some(alias), Some(version)) = (&alias, candidate) {
            let holder = ctx
                .rt
                .block_on(store.alias_holder(model, alias))?
                .map(|v| v.to_string());
            if holder.as_deref() != Some(version.as_str()) {
                match self.release_to(model, alias, &version, holder.clone()) {
                    Ok(ev) => {
                        out["released"] = json!({
                            "version": version, "alias": alias, "previous": holder,
                            "evaluation": ev,
                        });
                        if let Some(h) = &holder {
                            // With a canary policy the new version starts beside the old
                            // one at `canary.percent`; the monitor rolls it back on a
                            // breach, and the apply after `canary.window` promotes it.
                            let canary = cfg
                                .canary
                                .as_ref()
                                .map(|c| c.percent)
                                .filter(|p| (1..=99).contains(p));
                            let reloaded = self.reload_running(name, model, &[h], canary)?;
                            let any = reloaded
                                .as_array()
                                .is_some_and(|a| a.iter().any(|r| r["ok"] == true));
                            if let (Some(p), true) = (canary, any) {
                                out["canary"] = json!({
                                    "version": version, "previous": h, "percent": p,
                                    "started_at": kiln_store::now_ms(),
                                    "window_ms": canary_window_ms(cfg),
                                });
                            }
                            out["reloaded"] = reloaded;
                        }
                    }
                    Err(msg) => {
                        self.refusals.push((name.to_string(), msg.clone()));
                        out["refused"] = json!({
                            "version": version, "alias": alias, "message": msg,
                        });
                    }
                }
            }
        }
        match ctx
            .rt
            .block_on(super::serve::resolve_ref(store, &reference))
        {
            Ok(mv) => out["version"] = json!(mv.version.to_string()),
            Err(e) => out["unresolved"] = json!(format!("{e:#}")),
        }
        Ok(out)
    }

    /// Asks every running data plane that serves `name` from `model`'s `previous` version to
    /// load it again (the repository load API re-resolves `MODEL@ALIAS`, warms the new
    /// version beside the old one and swaps them). Returns what each answered; a data plane
    /// that cannot be reached is reported, not an error (it resolves the alias when it
    /// starts).
    fn reload_running(
        &self,
        name: &str,
        model: &str,
        started_with: &[&str],
        canary_percent: Option<u32>,
    ) -> anyhow::Result<Value> {
        let ctx = self.ctx;
        let mut running = vec![];
        for v in started_with {
            running.extend(
                ctx.rt
                    .block_on(ctx.store()?.version_deployments(model, v))?
                    .into_iter()
                    .filter(|d| {
                        d.stopped_at.is_none() && d.name == name && d.reference.contains('@')
                    }),
            );
        }
        running.sort_by(|a, b| a.endpoint.cmp(&b.endpoint));
        running.dedup_by(|a, b| a.endpoint == b.endpoint);
        let body = match canary_percent {
            Some(p) => json!({"parameters": {"kiln_canary_percent": p}}),
            None => json!({}),
        };
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()?;
        let mut out = vec![];
        for d in running {
            let url = format!("{}/v2/repository/models/{name}/load", d.endpoint);
            let answer = ctx.rt.block_on(async {
                let r = client.post(&url).json(&body).send().await?;
                let status = r.status();
                let body = r.text().await.unwrap_or_default();
                anyhow::Ok((status, body))
            });
            let (ok, note) = match answer {
                Ok((status, _)) if status.is_success() => (
                    true,
                    match canary_percent {
                        Some(p) => format!("new version loaded as a {p}% canary"),
                        None => "reloaded".to_string(),
                    },
                ),
                Ok((status, body)) => (false, format!("{status}: {body}")),
                Err(e) => (false, format!("unreachable: {e:#}")),
            };
            if self.print {
                eprintln!(
                    "      data plane {} ({}): {note}",
                    d.endpoint,
                    if ok { "reached" } else { "not reloaded" }
                );
            }
            out.push(json!({"endpoint": d.endpoint, "ok": ok, "note": note}));
        }
        Ok(Value::Array(out))
    }

    /// The canary the last apply of `deploy.NAME` started, if it has not ended.
    fn pending_canary(&self, name: &str) -> anyhow::Result<Option<Value>> {
        let records = self.ctx.rt.block_on(self.ctx.store()?.apply_records())?;
        Ok(records
            .into_iter()
            .find(|r| r.kind == "deploy" && r.name == name)
            .map(|r| r.outputs["canary"].clone())
            .filter(|c| c.is_object()))
    }

    /// Moves `alias` of `model` to `version` as the server would: gated by the stored
    /// policy, the evaluation recorded, refused if the holder changed meanwhile. Returns the
    /// evaluation id, or the refusal's message.
    fn release_to(
        &self,
        model: &str,
        alias: &str,
        version: &str,
        holder: Option<String>,
    ) -> Result<Option<i64>, String> {
        let ctx = self.ctx;
        let store = ctx.store().map_err(|e| format!("{e:#}"))?;
        let artifacts = ctx.artifacts().map_err(|e| format!("{e:#}"))?;
        let state = kiln_server::AppState {
            store: store.clone(),
            artifacts: artifacts.clone(),
            releases: super::server::releases(store, &artifacts, None),
            kiln_version: env!("CARGO_PKG_VERSION").to_string(),
            store_kind: String::new(),
        };
        let actor = kiln_server::release::Actor {
            name: format!("{} (kiln apply)", self.actor),
            admin: false,
        };
        let req = kiln_server::release::MoveRequest {
            name: model.to_string(),
            alias: alias.to_string(),
            version: version.to_string(),
            override_reason: None,
            expect: Some(holder),
        };
        match ctx
            .rt
            .block_on(kiln_server::release::move_alias(&state, &actor, req))
        {
            Ok(r) => Ok(r.evaluation.map(|e| e.id)),
            Err(e) => Err(e.message),
        }
    }

    fn monitor(&self, name: &str) -> anyhow::Result<Value> {
        let f = &self.ctx.project.file;
        let m = f
            .monitor
            .get(name)
            .with_context(|| format!("no [monitor.{name}]"))?;
        super::monitor_loop::check_config(name, f.deploy.get(name), m)?;
        Ok(json!({ "rules": m.alerts.len(), "receivers": m.receivers.len() }))
    }
}

// ---------------------------------------------------------------- the ledger and the lock

struct StoreLedger<'a> {
    ctx: &'a Ctx,
    actor: String,
    apply_id: i64,
    lock: &'a LockKeeper,
}

impl StoreLedger<'_> {
    fn event(&self, a: &Applied, step: &Step) -> NewEvent {
        let subject = match a.id.kind {
            Kind::Deploy | Kind::Monitor | Kind::Release => a.id.name.clone(),
            Kind::Train => a.outputs["registered_model"]
                .as_str()
                .map_or_else(|| a.id.to_string(), str::to_string),
            Kind::Dataset | Kind::Features => a.id.to_string(),
        };
        let what = match step.action {
            Action::Create => "created".to_string(),
            Action::Update => format!(
                "updated ({})",
                step.changes
                    .iter()
                    .map(|c| c.path.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Action::Rerun => "run again (its inputs changed)".to_string(),
            Action::Remove => "removed from kiln.toml".to_string(),
            Action::Unchanged => "unchanged".to_string(),
        };
        NewEvent {
            at: kiln_store::now_ms(),
            kind: "apply".into(),
            subject,
            actor: self.actor.clone(),
            summary: format!("kiln apply {}: {} {what}", self.apply_id, a.id),
            detail: json!({
                "apply_id": self.apply_id,
                "resource": a.id.to_string(),
                "action": step.action,
                "changes": step.changes,
                "key": a.key,
                "outputs": a.outputs,
            }),
        }
    }

    fn store(&self) -> Result<&Store, StepError> {
        self.ctx.store().map_err(|e| format!("{e:#}").into())
    }
}

impl Ledger for StoreLedger<'_> {
    fn record(&mut self, a: &Applied, step: &Step) -> Result<(), StepError> {
        let rec = ApplyRecord {
            kind: a.id.kind.as_str().to_string(),
            name: a.id.name.clone(),
            spec: json!({ "spec": a.spec, "inputs": a.inputs }),
            step_key: a.key.clone(),
            outputs: a.outputs.clone(),
            applied_at: kiln_store::now_ms(),
            apply_id: self.apply_id,
        };
        let ev = self.event(a, step);
        self.ctx
            .rt
            .block_on(self.store()?.save_apply_record(rec, vec![ev]))?;
        Ok(())
    }

    fn forget(&mut self, a: &Applied, step: &Step) -> Result<(), StepError> {
        let ev = self.event(a, step);
        self.ctx.rt.block_on(self.store()?.delete_apply_record(
            a.id.kind.as_str(),
            &a.id.name,
            vec![ev],
        ))?;
        Ok(())
    }

    fn heartbeat(&mut self) -> Result<(), StepError> {
        if self.lock.lost.load(Ordering::SeqCst) {
            return Err("the apply lock was lost (another apply broke it with --force-unlock, or this one stalled past its expiry); stopping".into());
        }
        let renewed = self.ctx.rt.block_on(
            self.store()?
                .renew_apply_lock(&self.lock.holder, LOCK_TTL_MS),
        )?;
        if !renewed {
            self.lock.lost.store(true, Ordering::SeqCst);
            return Err("the apply lock is held by another apply now; stopping".into());
        }
        Ok(())
    }
}

/// Renews the apply lock from a thread of its own (with its own connection) while long
/// steps run, so a training of an hour keeps it and a crashed apply loses it in 90 s.
struct LockKeeper {
    holder: String,
    lost: Arc<AtomicBool>,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LockKeeper {
    fn start(ctx: &Ctx, holder: &str) -> anyhow::Result<LockKeeper> {
        let url = match &ctx.args.store {
            Some(u) => u.clone(),
            None => format!("sqlite://{}", ctx.args.data_dir.join("kiln.db").display()),
        };
        let lost = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel::<()>();
        let (h, l) = (holder.to_string(), lost.clone());
        let thread = std::thread::Builder::new()
            .name("kiln-apply-lock".into())
            .spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                let Ok(store) = rt.block_on(Store::open(&url)) else {
                    return;
                };
                while let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(LOCK_RENEW) {
                    match rt.block_on(store.renew_apply_lock(&h, LOCK_TTL_MS)) {
                        Ok(true) => {}
                        Ok(false) => {
                            l.store(true, Ordering::SeqCst);
                            break;
                        }
                        Err(e) => tracing::warn!(error = %e, "cannot renew the apply lock"),
                    }
                }
                rt.block_on(store.close());
            })?;
        Ok(LockKeeper {
            holder: holder.to_string(),
            lost,
            stop: Some(tx),
            thread: Some(thread),
        })
    }

    fn stop(mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
