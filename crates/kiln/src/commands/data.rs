//! `kiln data …`: read, validate, profile and version the datasets declared in `kiln.toml`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use kiln_core::entities::{Dataset, DatasetInput, KeyValue};
use kiln_data::expect::ValidationReport;
use kiln_data::{Table, read_dataset};
use kiln_store::{ArtifactStore, DatasetVersion, DatasetVersionInput, Store};

use crate::project::Project;

/// Where the project file and the platform's state are.
#[derive(Args, Debug, Clone)]
pub struct ProjectArgs {
    /// The project file.
    #[arg(long, env = "KILN_CONFIG", default_value = "kiln.toml", global = true)]
    pub config: PathBuf,
    /// Directory for the embedded store, artifacts and quarantine files.
    #[arg(long, env = "KILN_DATA_DIR", default_value = "./.kiln", global = true)]
    pub data_dir: PathBuf,
    /// Metadata store URL: `sqlite://PATH` or `postgres://…` (default: DATA_DIR/kiln.db).
    #[arg(long, env = "KILN_STORE", global = true)]
    pub store: Option<String>,
    /// Artifact store URL: a directory, `file:///DIR` or `s3://BUCKET/PREFIX`
    /// (default: DATA_DIR/artifacts). Must be the one `kiln server` uses.
    #[arg(long, env = "KILN_ARTIFACTS", global = true)]
    pub artifacts: Option<String>,
}

#[derive(Args, Debug)]
pub struct DataArgs {
    #[command(flatten)]
    pub project: ProjectArgs,
    #[command(subcommand)]
    pub command: DataCommand,
}

#[derive(Subcommand, Debug)]
pub enum DataCommand {
    /// Check a dataset against its expectations; failing rows go to a quarantine file.
    /// Exit status 1 when a rule fails.
    Validate(ValidateArgs),
    /// Compute a dataset's profile (per-column statistics and sketches) and store it.
    Profile(ProfileArgs),
    /// Propose expectations from a dataset's profile, as `kiln.toml` text.
    Infer(SourceArgs),
    /// Record the current version of a dataset (digest, schema, rows, profile), optionally
    /// as an input of an MLflow run.
    Register(RegisterArgs),
    /// List a dataset's recorded versions, newest first.
    Versions(VersionsArgs),
    /// Build a feature set (`[features.NAME]`): validated inputs, as-of joins, derived
    /// columns, encodings, time split; writes the feature table and its transform spec.
    Features(FeaturesArgs),
    /// Compare a data file with a reference (a profile, a model package's training profile or
    /// another data file), column by column: KS / chi-square for small references,
    /// Wasserstein / Jensen–Shannon for large ones, PSI on request. Needs no project file.
    /// Exit status 0 whether or not the data drifted, unless --fail-on-drift.
    Drift(DriftArgs),
}

#[derive(Args, Debug)]
pub struct DriftArgs {
    /// The reference: a profile JSON (`kiln data profile --out`), a model package directory
    /// or its manifest.json (its training profile), or a data file (CSV, .gz, .zip, Parquet)
    /// profiled here.
    #[arg(long, value_name = "PROFILE_OR_FILE")]
    pub reference: PathBuf,
    /// The current data: a CSV (.gz, .zip) or Parquet file.
    pub current: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// One method for every column: ks, chisquare, wasserstein, jensenshannon or psi
    /// (default: per column, KS / chi-square up to 1,000 reference values, Wasserstein /
    /// Jensen–Shannon above).
    #[arg(long, value_parser = parse_method)]
    pub method: Option<kiln_data::drift::Method>,
    /// A method for one column (repeatable); wins over --method.
    #[arg(long = "column-method", value_name = "COLUMN=METHOD", value_parser = parse_column_method)]
    pub column_method: Vec<(String, kiln_data::drift::Method)>,
    /// Feature columns to compare, comma-separated (default: every reference column except
    /// dates and timestamps).
    #[arg(long, value_delimiter = ',')]
    pub columns: Vec<String>,
    /// Output (prediction) columns, comma-separated: compared the same way and reported as
    /// prediction drift, apart from the share of drifted features.
    #[arg(long, value_delimiter = ',')]
    pub outputs: Vec<String>,
    /// The dataset drifts when at least this share of the compared columns drift.
    #[arg(long, default_value_t = 0.5)]
    pub drift_share: f64,
    /// A threshold for a method (repeatable): the p-value level of ks and chisquare, the
    /// distance of the others (defaults 0.05, 0.05, 0.1, 0.1, 0.1).
    #[arg(long, value_name = "METHOD=VALUE", value_parser = parse_threshold)]
    pub threshold: Vec<(kiln_data::drift::Method, f64)>,
    /// Effect-size floor of KS: a significant test drifts only when D is at least this
    /// (0 turns the floor off).
    #[arg(long, default_value_t = 0.1)]
    pub ks_floor: f64,
    /// Effect-size floor of chi-square: Cramér's V of the two samples' proportions.
    #[arg(long, default_value_t = 0.1)]
    pub cramers_v_floor: f64,
    /// Compare windows of this length (`30m`, `1h`, `1d`, `1w`) of the --timestamp column
    /// instead of the whole file.
    #[arg(long, value_name = "DURATION", requires = "timestamp", value_parser = parse_window)]
    pub window: Option<std::time::Duration>,
    /// The date or timestamp column that --window cuts on.
    #[arg(long, value_name = "COLUMN", requires = "window")]
    pub timestamp: Option<String>,
    /// Compare consecutive windows of this many rows instead of the whole file.
    #[arg(long, value_name = "ROWS", conflicts_with = "window")]
    pub window_rows: Option<usize>,
    /// Exit with status 1 when the data drifts (the dataset, or with --outputs the
    /// predictions; with windows, any window).
    #[arg(long)]
    pub fail_on_drift: bool,
}

fn parse_method(s: &str) -> Result<kiln_data::drift::Method, String> {
    s.parse()
        .map_err(|e: kiln_data::drift::DriftError| e.to_string())
}

fn parse_column_method(s: &str) -> Result<(String, kiln_data::drift::Method), String> {
    let (c, m) = s
        .split_once('=')
        .ok_or_else(|| format!("expected COLUMN=METHOD, got {s:?}"))?;
    Ok((c.trim().to_string(), parse_method(m)?))
}

fn parse_threshold(s: &str) -> Result<(kiln_data::drift::Method, f64), String> {
    let (m, v) = s
        .split_once('=')
        .ok_or_else(|| format!("expected METHOD=VALUE, got {s:?}"))?;
    let v: f64 = v
        .trim()
        .parse()
        .map_err(|_| format!("threshold {s:?}: {v:?} is not a number"))?;
    Ok((parse_method(m)?, v))
}

/// `90s`, `30m`, `1h`, `1d`, `1w`, `1h30m`; a bare number is seconds.
fn parse_window(s: &str) -> Result<std::time::Duration, String> {
    let t = s.trim();
    if let Ok(n) = t.parse::<u64>() {
        return (n > 0)
            .then(|| std::time::Duration::from_secs(n))
            .ok_or_else(|| format!("window {s:?} must be longer than zero"));
    }
    let (mut total, mut num) = (0u64, String::new());
    for ch in t.chars() {
        if ch.is_ascii_digit() {
            num.push(ch);
            continue;
        }
        let n: u64 = num
            .parse()
            .map_err(|_| format!("window {s:?}: expected a number before `{ch}`"))?;
        num.clear();
        let unit = match ch {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            _ => {
                return Err(format!(
                    "window {s:?}: unknown unit `{ch}` (use s, m, h, d or w)"
                ));
            }
        };
        total = total.saturating_add(n.saturating_mul(unit));
    }
    if !num.is_empty() {
        return Err(format!(
            "window {s:?}: the last number has no unit (s, m, h, d or w)"
        ));
    }
    if total == 0 {
        return Err(format!("window {s:?} must be longer than zero"));
    }
    Ok(std::time::Duration::from_secs(total))
}

#[derive(Args, Debug)]
pub struct FeaturesArgs {
    /// Feature set name (a `[features.NAME]` section).
    pub name: String,
    /// Output directory (default DATA_DIR/features/NAME/BUILD_DIGEST).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Rebuild even if a finished build with the same inputs exists.
    #[arg(long)]
    pub force: bool,
    /// Print the build summary as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct SourceArgs {
    /// Dataset name (a `[data.NAME]` section).
    pub name: String,
    /// Read this file or URL instead of the configured source (e.g. a new batch).
    #[arg(long)]
    pub source: Option<String>,
}

#[derive(Args, Debug)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub src: SourceArgs,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Where to write failing rows (CSV; default DATA_DIR/quarantine/NAME/DIGEST.csv).
    #[arg(long)]
    pub quarantine: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ProfileArgs {
    #[command(flatten)]
    pub src: SourceArgs,
    /// Print the whole profile as JSON (default: a table).
    #[arg(long)]
    pub json: bool,
    /// Also write the profile JSON to this file.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct RegisterArgs {
    #[command(flatten)]
    pub src: SourceArgs,
    /// Log the version as an input of this MLflow run.
    #[arg(long)]
    pub run_id: Option<String>,
    /// The input's context tag (`mlflow.data.context`).
    #[arg(long, default_value = "training")]
    pub context: String,
}

#[derive(Args, Debug)]
pub struct VersionsArgs {
    pub name: String,
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: DataArgs) -> anyhow::Result<ExitCode> {
    // `drift` compares files and needs no project.
    let command = match args.command {
        DataCommand::Drift(a) => return drift(a),
        other => other,
    };
    let ctx = Ctx::new(&args.project)?;
    match command {
        DataCommand::Validate(a) => validate(&ctx, a),
        DataCommand::Profile(a) => profile(&ctx, a),
        DataCommand::Infer(a) => infer(&ctx, a),
        DataCommand::Register(a) => register(&ctx, a),
        DataCommand::Versions(a) => versions(&ctx, a),
        DataCommand::Features(a) => super::features::run(&ctx, a),
        DataCommand::Drift(_) => unreachable!("handled above"),
    }
}

/// The runtime, project and store of one command.
pub struct Ctx {
    pub rt: tokio::runtime::Runtime,
    pub project: Project,
    pub args: ProjectArgs,
    store: std::cell::OnceCell<Store>,
}

impl Ctx {
    pub fn new(args: &ProjectArgs) -> anyhow::Result<Ctx> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        let project = Project::load(&args.config)?;
        Ok(Ctx {
            rt,
            project,
            args: args.clone(),
            store: std::cell::OnceCell::new(),
        })
    }

    /// Like [`Ctx::new`], for commands that work without a project file: an empty project
    /// in the current directory when the file does not exist.
    pub fn new_optional_project(args: &ProjectArgs) -> anyhow::Result<Ctx> {
        if args.config.exists() {
            return Ctx::new(args);
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        Ok(Ctx {
            rt,
            project: Project {
                path: args.config.clone(),
                dir: std::path::PathBuf::from("."),
                file: Default::default(),
                secrets: vec![],
            },
            args: args.clone(),
            store: std::cell::OnceCell::new(),
        })
    }

    pub fn store(&self) -> anyhow::Result<&Store> {
        if let Some(s) = self.store.get() {
            return Ok(s);
        }
        std::fs::create_dir_all(&self.args.data_dir).with_context(|| {
            format!(
                "cannot create data directory {}",
                self.args.data_dir.display()
            )
        })?;
        let url = match &self.args.store {
            Some(u) => u.clone(),
            None => format!("sqlite://{}", self.args.data_dir.join("kiln.db").display()),
        };
        let store = self
            .rt
            .block_on(Store::open(&url))
            .context("cannot open the metadata store")?;
        Ok(self.store.get_or_init(|| store))
    }

    /// The artifact store (runs' artifacts and packages).
    pub fn artifacts(&self) -> anyhow::Result<ArtifactStore> {
        let url = match &self.args.artifacts {
            Some(u) => u.clone(),
            None => {
                let dir = self.args.data_dir.join("artifacts");
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
                dir.display().to_string()
            }
        };
        ArtifactStore::open(&url).with_context(|| format!("cannot open the artifact store {url}"))
    }

    /// Reads a dataset from its configured source or `override_source`.
    pub fn read(&self, name: &str, override_source: Option<&str>) -> anyhow::Result<Table> {
        let cfg = self.project.dataset(name)?;
        let source = match override_source {
            Some(s) => s.to_string(),
            None => self.project.resolve_source(&cfg.source),
        };
        let local = self.fetch(&source)?;
        let started = std::time::Instant::now();
        let table = read_dataset(cfg, local.path(), &source)
            .with_context(|| format!("cannot read dataset `{name}`"))?;
        tracing::debug!(
            dataset = name,
            rows = table.rows(),
            elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
            "read"
        );
        Ok(table)
    }

    /// A local file holding the source: the path itself, or a download of a URL.
    fn fetch(&self, source: &str) -> anyhow::Result<LocalSource> {
        if let Some(path) = source.strip_prefix("file://") {
            return Ok(LocalSource::Path(PathBuf::from(path)));
        }
        if !source.contains("://") {
            return Ok(LocalSource::Path(PathBuf::from(source)));
        }
        if !source.starts_with("s3://") {
            bail!("unsupported source URL {source:?}: use a path, file:///PATH or s3://BUCKET/KEY");
        }
        let (dir, file) = source
            .rsplit_once('/')
            .filter(|(d, f)| !f.is_empty() && d.len() > "s3:/".len())
            .with_context(|| format!("{source}: expected s3://BUCKET/KEY"))?;
        let store = ArtifactStore::open(dir)?;
        let tmp = tempfile::tempdir().context("cannot create a temporary directory")?;
        let path = tmp.path().join(file);
        self.rt.block_on(async {
            use futures::StreamExt;
            use std::io::Write;
            let (_, mut stream) = store
                .get_stream(file)
                .await
                .with_context(|| format!("cannot read {source}"))?;
            let mut out = std::io::BufWriter::new(
                std::fs::File::create(&path)
                    .with_context(|| format!("cannot write {}", path.display()))?,
            );
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.with_context(|| format!("cannot read {source}"))?;
                out.write_all(&chunk)?;
            }
            out.flush()?;
            anyhow::Ok(())
        })?;
        Ok(LocalSource::Temp { _dir: tmp, path })
    }

    /// Records the table as a version of dataset `name`.
    pub fn record(&self, name: &str, table: &Table) -> anyhow::Result<DatasetVersion> {
        let store = self.store()?;
        let input = DatasetVersionInput {
            name: name.to_string(),
            digest: table.digest.clone(),
            source: table.source.clone(),
            format: format!("{:?}", table.format).to_lowercase(),
            schema_json: serde_json::to_string(&table.schema)?,
            row_count: table.rows() as i64,
            bytes: table.bytes as i64,
        };
        Ok(self.rt.block_on(store.record_dataset_version(input))?)
    }
    /// Validates `table` against dataset `name`'s expectations, records the version and its
    /// verdict, and writes the failing rows to `quarantine` (default
    /// DATA_DIR/quarantine/NAME/DIGEST.csv).
    pub fn validate(
        &self,
        name: &str,
        table: &Table,
        quarantine: Option<PathBuf>,
    ) -> anyhow::Result<(kiln_data::expect::Validation, DatasetVersion)> {
        let cfg = self.project.dataset(name)?;
        let started = std::time::Instant::now();
        let mut v = kiln_data::expect::validate(name, table, &cfg.expect)?;
        tracing::debug!(
            dataset = name,
            elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
            "expectations judged"
        );
        let started = std::time::Instant::now();
        let version = self.record(name, table)?;
        tracing::debug!(
            dataset = name,
            elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
            "version recorded"
        );
        if v.quarantine.height() > 0 {
            let path = quarantine.unwrap_or_else(|| {
                self.args
                    .data_dir
                    .join("quarantine")
                    .join(name)
                    .join(format!("{}.csv", &table.digest[..16]))
            });
            kiln_data::expect::write_quarantine_csv(&mut v.quarantine, &path)?;
            v.report.quarantine = Some(path.display().to_string());
        }
        let summary = serde_json::json!({
            "success": v.report.success,
            "failed_rules": v.report.rules.iter().filter(|r| !r.success).map(|r| r.name.clone()).collect::<Vec<_>>(),
            "rules": v.report.rules.len(),
            "quarantined_rows": v.report.quarantined_rows,
            "validated_at": kiln_store::now_ms(),
        });
        self.rt.block_on(self.store()?.set_dataset_validation(
            name,
            &table.digest,
            summary.to_string(),
        ))?;
        Ok((v, version))
    }
}

enum LocalSource {
    Path(PathBuf),
    /// A download; the directory is removed when this is dropped.
    Temp {
        _dir: tempfile::TempDir,
        path: PathBuf,
    },
}

impl LocalSource {
    fn path(&self) -> &Path {
        match self {
            LocalSource::Path(p) => p,
            LocalSource::Temp { path, .. } => path,
        }
    }
}

fn validate(ctx: &Ctx, a: ValidateArgs) -> anyhow::Result<ExitCode> {
    let name = &a.src.name;
    let cfg = ctx.project.dataset(name)?;
    if cfg.expect.is_empty() {
        bail!(
            "dataset `{name}` declares no expectations; add [[data.{name}.expect]] tables \
             (`kiln data infer {name}` proposes some)"
        );
    }
    let table = ctx.read(name, a.src.source.as_deref())?;
    let (v, version) = ctx.validate(name, &table, a.quarantine.clone())?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&v.report)?);
    } else {
        print!("{}", render_report(&v.report, version.version));
    }
    Ok(if v.report.success {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

pub(super) fn short(d: &str) -> &str {
    &d[..d.len().min(12)]
}

pub(super) fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The human report of a validation.
pub fn render_report(r: &ValidationReport, version: i64) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "dataset {} v{version}  {}  {} rows  digest {}",
        r.dataset,
        r.source,
        thousands(r.rows),
        short(&r.digest)
    );
    let width = r.rules.iter().map(|x| x.name.len()).max().unwrap_or(10);
    for rule in &r.rules {
        let verdict = if rule.success { "PASS" } else { "FAIL" };
        let detail = if let Some(err) = &rule.error {
            format!("error: {err}")
        } else if let Some(obs) = &rule.observed {
            format!("{}; observed {obs}", rule.expected)
        } else {
            let pct = if rule.checked > 0 {
                100.0 * rule.failing as f64 / rule.checked as f64
            } else {
                0.0
            };
            let mut d = format!(
                "{}; {} of {} failing ({pct:.3}%)",
                rule.expected,
                thousands(rule.failing),
                thousands(rule.checked)
            );
            if let Some(m) = rule.mostly {
                let _ = write!(d, ", mostly {m}");
            }
            d
        };
        let _ = writeln!(s, "  {verdict}  {:width$}  {detail}", rule.name);
        for ex in &rule.examples {
            let line = ex.line.map(|l| format!(" (line {l})")).unwrap_or_default();
            let _ = writeln!(s, "          row {}{line}: {}", ex.row, ex.value);
        }
    }
    let failed = r.rules.iter().filter(|x| !x.success).count();
    if failed == 0 {
        let _ = write!(s, "PASSED: all {} rules", r.rules.len());
    } else {
        let _ = write!(s, "FAILED: {failed} of {} rules", r.rules.len());
    }
    match &r.quarantine {
        Some(q) => {
            let _ = writeln!(
                s,
                "; {} rows quarantined to {q}",
                thousands(r.quarantined_rows)
            );
        }
        None => s.push('\n'),
    }
    s
}

fn profile_table(name: &str, table: &Table) -> anyhow::Result<kiln_data::profile::Profile> {
    let mut p = kiln_data::profile::profile(&table.df)
        .with_context(|| format!("cannot profile dataset `{name}`"))?;
    // The frame holds categorical columns as text; the schema knows which they are.
    for c in &mut p.columns {
        if let Some(t) = table.dtype_of(&c.name) {
            c.dtype = t;
        }
    }
    Ok(p)
}

fn profile(ctx: &Ctx, a: ProfileArgs) -> anyhow::Result<ExitCode> {
    let name = &a.src.name;
    let table = ctx.read(name, a.src.source.as_deref())?;
    let p = profile_table(name, &table)?;
    let json = serde_json::to_string(&p)?;
    ctx.record(name, &table)?;
    ctx.rt.block_on(
        ctx.store()?
            .set_dataset_profile(name, &table.digest, json.clone()),
    )?;
    if let Some(out) = &a.out {
        kiln_data::fsutil::write_bytes(out, json.as_bytes())?;
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&p)?);
    } else {
        print!("{}", render_profile(name, &p));
    }
    Ok(ExitCode::SUCCESS)
}

fn infer(ctx: &Ctx, a: SourceArgs) -> anyhow::Result<ExitCode> {
    let table = ctx.read(&a.name, a.source.as_deref())?;
    let p = profile_table(&a.name, &table)?;
    let rules = kiln_data::infer::propose(&p);
    print!("{}", kiln_data::infer::to_toml(&a.name, &rules));
    Ok(ExitCode::SUCCESS)
}

fn register(ctx: &Ctx, a: RegisterArgs) -> anyhow::Result<ExitCode> {
    let name = &a.src.name;
    let table = ctx.read(name, a.src.source.as_deref())?;
    let p = profile_table(name, &table)?;
    let version = ctx.record(name, &table)?;
    let store = ctx.store()?;
    ctx.rt
        .block_on(store.set_dataset_profile(name, &table.digest, serde_json::to_string(&p)?))?;
    if let Some(run_id) = &a.run_id {
        let input = mlflow_input(name, &table, &a.context);
        ctx.rt
            .block_on(store.log_inputs(run_id, vec![input], vec![]))
            .with_context(|| format!("cannot log dataset `{name}` as an input of run {run_id}"))?;
    }
    println!(
        "dataset {name} v{}  digest {}  {} rows{}",
        version.version,
        version.digest,
        thousands(version.row_count as u64),
        a.run_id
            .as_ref()
            .map(|r| format!("  logged to run {r}"))
            .unwrap_or_default()
    );
    Ok(ExitCode::SUCCESS)
}

/// The MLflow dataset input for a table: MLflow's column-spec schema and a small profile.
pub fn mlflow_input(name: &str, table: &Table, context: &str) -> DatasetInput {
    let colspec: Vec<serde_json::Value> = table
        .schema
        .iter()
        .map(|c| {
            let t = match c.dtype {
                kiln_transform::DType::Int => "long",
                kiln_transform::DType::Float => "double",
                kiln_transform::DType::Bool => "boolean",
                kiln_transform::DType::String | kiln_transform::DType::Categorical => "string",
                kiln_transform::DType::Date | kiln_transform::DType::Timestamp => "datetime",
            };
            serde_json::json!({"type": t, "name": c.name, "required": false})
        })
        .collect();
    let source_type = if table.source.starts_with("s3://") {
        "s3"
    } else {
        "local"
    };
    DatasetInput {
        tags: vec![KeyValue {
            key: "mlflow.data.context".into(),
            value: context.to_string(),
        }],
        dataset: Dataset {
            name: name.to_string(),
            digest: table.digest.clone(),
            source_type: source_type.into(),
            source: serde_json::json!({"uri": table.source}).to_string(),
            schema: Some(serde_json::json!({"mlflow_colspec": colspec}).to_string()),
            profile: Some(
                serde_json::json!({"num_rows": table.rows(), "num_elements": table.rows() * table.df.width()})
                    .to_string(),
            ),
        },
    }
}

fn versions(ctx: &Ctx, a: VersionsArgs) -> anyhow::Result<ExitCode> {
    let store = ctx.store()?;
    let list = ctx.rt.block_on(store.list_dataset_versions(&a.name))?;
    if a.json {
        let out: Vec<serde_json::Value> = list
            .iter()
            .map(|v| {
                serde_json::json!({
                    "name": v.name,
                    "version": v.version,
                    "digest": v.digest,
                    "source": v.source,
                    "format": v.format,
                    "rows": v.row_count,
                    "bytes": v.bytes,
                    "schema": serde_json::from_str::<serde_json::Value>(&v.schema_json).unwrap_or_default(),
                    "profiled": v.profile_json.is_some(),
                    "validation": v.validation_json.as_deref().and_then(|j| serde_json::from_str::<serde_json::Value>(j).ok()),
                    "created_at": v.created_at,
                    "last_seen_at": v.last_seen_at,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    if list.is_empty() {
        if ctx.project.file.data.contains_key(&a.name) {
            println!(
                "dataset {} has no recorded versions yet (`kiln data validate {}` or `kiln data register {}` records one)",
                a.name, a.name, a.name
            );
            return Ok(ExitCode::SUCCESS);
        }
        bail!("no dataset `{}` has been recorded", a.name);
    }
    println!(
        "{:>4}  {:12}  {:>10}  {:24}  {:10}  SOURCE",
        "VER", "DIGEST", "ROWS", "CREATED (UTC)", "VALIDATED"
    );
    for v in &list {
        let validated = match v
            .validation_json
            .as_deref()
            .and_then(|j| serde_json::from_str::<serde_json::Value>(j).ok())
        {
            Some(j) if j["success"] == true => "passed",
            Some(_) => "FAILED",
            None => "-",
        };
        let ver = format!("v{}", v.version);
        println!(
            "{:>4}  {:12}  {:>10}  {:24}  {:10}  {}",
            ver,
            short(&v.digest),
            thousands(v.row_count as u64),
            utc(v.created_at),
            validated,
            v.source
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Milliseconds since the epoch as `YYYY-MM-DD HH:MM:SS`.
pub fn utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// The human table of a profile: one line per column.
fn render_profile(name: &str, p: &kiln_data::profile::Profile) -> String {
    use std::fmt::Write;
    fn num(v: &Option<kiln_data::config::SetValue>) -> String {
        use kiln_data::config::SetValue;
        match v {
            None => "-".into(),
            Some(SetValue::Int(i)) => i.to_string(),
            Some(SetValue::Float(f)) => format!("{f:.4}")
                .trim_end_matches('0')
                .trim_end_matches('.')
                .to_string(),
            Some(SetValue::Bool(b)) => b.to_string(),
            Some(SetValue::Str(s)) => s.clone(),
        }
    }
    fn f(v: Option<f64>) -> String {
        match v {
            Some(x) if x.abs() >= 1e6 || (x != 0.0 && x.abs() < 1e-3) => format!("{x:.3e}"),
            Some(x) => format!("{x:.3}"),
            None => "-".into(),
        }
    }
    let mut s = String::new();
    let _ = writeln!(
        s,
        "dataset {name}: {} rows, {} columns",
        thousands(p.rows),
        p.columns.len()
    );
    let w = p
        .columns
        .iter()
        .map(|c| c.name.len())
        .max()
        .unwrap_or(6)
        .max(6);
    let _ = writeln!(
        s,
        "{:w$}  {:11}  {:>9}  {:>7}  {:>9}  {:>20}  {:>20}  {:>10}  {:>10}  {:>10}  TOP",
        "COLUMN", "TYPE", "COUNT", "NULLS", "DISTINCT", "MIN", "MAX", "MEAN", "STD", "MEDIAN"
    );
    for c in &p.columns {
        let median = c.quantiles.as_ref().and_then(|q| q.get("0.5").copied());
        let top = c
            .top_values
            .as_ref()
            .map(|t| {
                t.iter()
                    .take(3)
                    .map(|v| format!("{} ({})", num(&Some(v.value.clone())), thousands(v.count)))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        let approx = if c.distinct_exact { "" } else { "~" };
        let distinct = format!("{approx}{}", thousands(c.distinct));
        let _ = writeln!(
            s,
            "{:w$}  {:11}  {:>9}  {:>7}  {:>9}  {:>20}  {:>20}  {:>10}  {:>10}  {:>10}  {top}",
            c.name,
            c.dtype.as_str(),
            thousands(c.count),
            thousands(c.nulls + c.nan.unwrap_or(0)),
            distinct,
            num(&c.min),
            num(&c.max),
            f(c.mean),
            f(c.std),
            f(median),
        );
    }
    s
}

/// `kiln data drift`: reads the reference and the current file, compares them (whole or by
/// windows) and prints the report.
fn drift(a: DriftArgs) -> anyhow::Result<ExitCode> {
    use kiln_data::drift::{DriftOptions, Floors, Thresholds, Windowing};
    let started = std::time::Instant::now();
    let reference = load_reference(&a.reference)?;
    tracing::debug!(
        elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
        "reference loaded"
    );
    let mut thresholds = Thresholds::default();
    for (m, v) in &a.threshold {
        use kiln_data::drift::Method;
        match m {
            Method::Ks => thresholds.ks = *v,
            Method::ChiSquare => thresholds.chisquare = *v,
            Method::Wasserstein => thresholds.wasserstein = *v,
            Method::JensenShannon => thresholds.jensenshannon = *v,
            Method::Psi => thresholds.psi = *v,
        }
    }
    let opts = DriftOptions {
        columns: (!a.columns.is_empty()).then(|| a.columns.clone()),
        outputs: a.outputs.clone(),
        method: a.method,
        column_methods: a.column_method.iter().cloned().collect(),
        thresholds,
        floors: Floors {
            ks_statistic: a.ks_floor,
            cramers_v: a.cramers_v_floor,
        },
        drift_share: a.drift_share,
        ..DriftOptions::default()
    };

    // Read the compared columns with the reference's types (a text column of digits stays
    // text, a timestamp stays a timestamp); numbers are left to inference, int and float
    // compare alike.
    let mut cfg = kiln_data::config::DatasetConfig {
        source: a.current.display().to_string(),
        format: None,
        description: None,
        schema: Default::default(),
        csv: Default::default(),
        expect: vec![],
    };
    let compared: Vec<&str> = match &opts.columns {
        Some(cs) => cs.iter().map(String::as_str).collect(),
        None => kiln_data::drift::default_columns(&reference),
    };
    for name in compared
        .iter()
        .copied()
        .chain(opts.outputs.iter().map(String::as_str))
    {
        if let Some(c) = reference.column(name)
            && !c.dtype.is_numeric()
        {
            cfg.schema.insert(name.to_string(), c.dtype);
        }
    }
    if let Some(t) = &a.timestamp {
        let dtype = reference
            .column(t)
            .map(|c| c.dtype)
            .filter(|d| matches!(d, kiln_transform::DType::Date))
            .unwrap_or(kiln_transform::DType::Timestamp);
        cfg.schema.insert(t.clone(), dtype);
    }
    let started = std::time::Instant::now();
    let table = read_dataset(&cfg, &a.current, &cfg.source)
        .with_context(|| format!("cannot read {}", a.current.display()))?;
    tracing::debug!(
        rows = table.rows(),
        elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
        "current data read"
    );

    let windowing = match (&a.window, &a.timestamp, a.window_rows) {
        (Some(every), Some(column), _) => Some(Windowing::Time {
            column: column.clone(),
            every: *every,
        }),
        (_, _, Some(rows)) => Some(Windowing::Rows(rows)),
        _ => None,
    };
    let started = std::time::Instant::now();
    let drifted = match windowing {
        None => {
            let (_, report) = kiln_data::drift::drift(&table.df, &reference, &opts)?;
            tracing::debug!(
                elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
                "profiled and compared"
            );
            if a.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", kiln_data::drift::render_text(&report));
            }
            report.dataset_drift || report.prediction_drift == Some(true)
        }
        Some(w) => {
            let windows = kiln_data::drift::drift_windows(&table.df, &reference, &w, &opts)?;
            tracing::debug!(
                windows = windows.windows.len(),
                elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
                "profiled and compared"
            );
            if a.json {
                println!("{}", serde_json::to_string_pretty(&windows)?);
            } else {
                print!("{}", render_windows(&windows));
            }
            windows
                .windows
                .iter()
                .any(|w| w.report.dataset_drift || w.report.prediction_drift == Some(true))
        }
    };
    Ok(if a.fail_on_drift && drifted {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The reference profile: a profile JSON, a package's (directory or manifest.json) training
/// profile, or the profile of a data file.
pub(crate) fn load_reference(path: &Path) -> anyhow::Result<kiln_data::profile::Profile> {
    use kiln_data::profile::Profile;
    let manifest = if path.is_dir() {
        Some(path.join("manifest.json"))
    } else {
        None
    };
    let json_path = manifest.as_deref().unwrap_or(path);
    let is_json = json_path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    if is_json {
        let bytes = std::fs::read(json_path)
            .with_context(|| format!("cannot read the reference {}", json_path.display()))?;
        let value: serde_json::Value = serde_json::from_slice(&bytes)
            .with_context(|| format!("{}: not JSON", json_path.display()))?;
        let profile = match value.get("training_profile") {
            Some(serde_json::Value::Null) => bail!(
                "{}: the package has no training profile (build it from a feature set to \
                 carry one)",
                json_path.display()
            ),
            Some(p) => p.clone(),
            None if value.get("files").is_some() && value.get("model_file").is_some() => bail!(
                "{}: the package has no training profile",
                json_path.display()
            ),
            None => value,
        };
        return serde_json::from_value::<Profile>(profile).with_context(|| {
            format!(
                "{}: not a Kiln profile (`kiln data profile NAME --out FILE` writes one)",
                json_path.display()
            )
        });
    }
    let cfg = kiln_data::config::DatasetConfig {
        source: path.display().to_string(),
        format: None,
        description: None,
        schema: Default::default(),
        csv: Default::default(),
        expect: vec![],
    };
    let table = read_dataset(&cfg, path, &cfg.source)
        .with_context(|| format!("cannot read the reference {}", path.display()))?;
    kiln_data::profile::profile_with_schema(&table.df, &table.schema)
        .with_context(|| format!("cannot profile the reference {}", path.display()))
}

fn render_windows(w: &kiln_data::drift::WindowedDrift) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let drifted = w.windows.iter().filter(|x| x.report.dataset_drift).count();
    let _ = writeln!(
        s,
        "{} windows, {drifted} with dataset drift",
        w.windows.len()
    );
    if w.rows_without_time > 0 {
        let _ = writeln!(
            s,
            "{} rows have no time and are in no window",
            thousands(w.rows_without_time)
        );
    }
    for x in &w.windows {
        let place = match (&x.window.start, &x.window.end, x.window.first_row) {
            (Some(a), Some(b), _) => format!("{a} .. {b}"),
            (_, _, Some(first)) => format!(
                "rows {}..{}",
                thousands(first),
                thousands(first + x.window.rows)
            ),
            _ => String::new(),
        };
        let _ = writeln!(
            s,
            "\nwindow {}: {place}, {} rows",
            x.window.index,
            thousands(x.window.rows)
        );
        s.push_str(&kiln_data::drift::render_text(&x.report));
    }
    s
}
