//! `kiln export k8s`: Kubernetes manifests for the data and control planes, the ConfigMap
//! with `kiln.toml`, and Prometheus operator rules, from the project file. Rendering lives in
//! `kiln_pipeline::k8s`; this module reads the file and the flags and checks the alert rules
//! and SLOs exactly as `kiln serve --monitor` will.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use kiln_monitor::alert::{Rule, RuleSpec};
use kiln_monitor::config::{DeployConfig, MonitorConfig};
use kiln_monitor::slo::{Objective, SloSpec};
use kiln_pipeline::k8s;

use super::incidents::parse_duration_ms;

#[derive(Args, Debug)]
pub struct ExportArgs {
    #[command(subcommand)]
    pub target: ExportTarget,
}

#[derive(Subcommand, Debug)]
pub enum ExportTarget {
    /// Deployments, Services, HorizontalPodAutoscalers and PodDisruptionBudgets for `kiln
    /// serve` (one set per `[deploy.NAME]`) and `kiln server`, a ConfigMap with kiln.toml,
    /// and a ServiceMonitor and PrometheusRule (the alert rules and SLO burn-rate alerts in
    /// PromQL). Secrets are referenced, never rendered: create the Secret named by
    /// `--secret` with KILN_STORE and KILN_ARTIFACTS (and AWS_* if needed).
    K8s(K8sArgs),
}

#[derive(Args, Debug)]
pub struct K8sArgs {
    /// The project file.
    #[arg(long, env = "KILN_CONFIG", default_value = "kiln.toml")]
    pub config: PathBuf,
    /// Write one file per component into this directory (default: one YAML stream on stdout).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// The container image with the `kiln` binary on its PATH.
    #[arg(long, env = "KILN_K8S_IMAGE", default_value = concat!("kiln:", env!("CARGO_PKG_VERSION")))]
    pub image: String,
    #[arg(long, default_value = "IfNotPresent", value_parser = ["Always", "IfNotPresent", "Never"])]
    pub image_pull_policy: String,
    /// Namespace of every object (default: none, so `kubectl -n` decides).
    #[arg(long, env = "KILN_K8S_NAMESPACE")]
    pub namespace: Option<String>,
    /// Prefix of every object's name (`kiln-server`, `kiln-serve-NAME`, `kiln-config`).
    #[arg(long, default_value = "kiln")]
    pub name_prefix: String,
    /// The Secret holding KILN_STORE (postgres://…) and KILN_ARTIFACTS (s3://…), and
    /// optionally AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION,
    /// AWS_ENDPOINT, AWS_ALLOW_HTTP, KILN_ADMIN_TOKEN and KILN_SERVE_ADMIN_TOKEN.
    #[arg(long, default_value = "kiln-store")]
    pub secret: String,

    /// Data-plane replicas per deployment (the autoscaler's minimum).
    #[arg(long, default_value_t = 2)]
    pub serve_replicas: u32,
    /// The autoscaler's maximum (equal to --serve-replicas: no autoscaler).
    #[arg(long, default_value_t = 10)]
    pub serve_max_replicas: u32,
    #[arg(long, default_value = "1")]
    pub serve_cpu: String,
    #[arg(long, default_value = "1Gi")]
    pub serve_memory: String,
    /// Also the number of inference threads `kiln serve` starts; empty for none.
    #[arg(long, default_value = "2")]
    pub serve_cpu_limit: String,
    /// Empty for none.
    #[arg(long, default_value = "2Gi")]
    pub serve_memory_limit: String,

    /// Control-plane replicas (the autoscaler's minimum).
    #[arg(long, default_value_t = 2)]
    pub server_replicas: u32,
    #[arg(long, default_value_t = 4)]
    pub server_max_replicas: u32,
    #[arg(long, default_value = "250m")]
    pub server_cpu: String,
    #[arg(long, default_value = "512Mi")]
    pub server_memory: String,
    /// Empty for none.
    #[arg(long, default_value = "2")]
    pub server_cpu_limit: String,
    /// Empty for none.
    #[arg(long, default_value = "1Gi")]
    pub server_memory_limit: String,
    /// The autoscalers' CPU target, in percent of the request.
    #[arg(long, default_value_t = 70)]
    pub cpu_target: u32,
    /// Leave the control plane out (it runs elsewhere).
    #[arg(long)]
    pub no_control_plane: bool,

    /// Run `kiln serve --monitor` in every data-plane pod: alerts, incidents and automatic
    /// canary rollback in process. Each replica then judges its own share of the traffic;
    /// the PrometheusRule judges all replicas together.
    #[arg(long)]
    pub monitor: bool,
    /// `kiln serve --prediction-log URL` (e.g. s3://bucket/predictions).
    #[arg(long, value_name = "URL")]
    pub prediction_log: Option<String>,
    /// No ServiceMonitor or PrometheusRule (clusters without the Prometheus operator); the
    /// pods keep their prometheus.io/* scrape annotations.
    #[arg(long)]
    pub no_prometheus_operator: bool,
    /// A label on the ServiceMonitor and PrometheusRule, for the Prometheus operator's
    /// selectors (e.g. `release=kube-prometheus-stack`). Repeatable.
    #[arg(long = "rule-label", value_name = "KEY=VALUE")]
    pub rule_labels: Vec<String>,
    /// Runbook paths (`runbooks/latency.md`) become links under this URL.
    #[arg(long, value_name = "URL")]
    pub runbook_base_url: Option<String>,
}

pub fn run(args: ExportArgs) -> anyhow::Result<()> {
    match args.target {
        ExportTarget::K8s(a) => k8s_command(a),
    }
}

fn k8s_command(args: K8sArgs) -> anyhow::Result<()> {
    let project = crate::project::Project::load(&args.config)?;
    let text = std::fs::read_to_string(&args.config)
        .with_context(|| format!("cannot read {}", args.config.display()))?;
    let spec = project_spec(&project.file, text)?;
    let opts = options(&args)?;
    let manifests = k8s::render(&spec, &opts)?;
    for w in &manifests.warnings {
        eprintln!("warning: {w}");
    }
    match &args.out {
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(manifests.to_yaml()?.as_bytes())?;
            out.flush()?;
        }
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            for (file, text) in manifests.files()? {
                let path = dir.join(&file);
                std::fs::write(&path, text)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                eprintln!("wrote {}", path.display());
            }
        }
    }
    Ok(())
}

fn options(args: &K8sArgs) -> anyhow::Result<k8s::Options> {
    let some = |s: &str| Some(s.to_string()).filter(|s| !s.is_empty());
    let mut selector_labels = BTreeMap::new();
    for l in &args.rule_labels {
        let Some((k, v)) = l.split_once('=') else {
            bail!("--rule-label {l:?}: expected KEY=VALUE");
        };
        selector_labels.insert(k.to_string(), v.to_string());
    }
    // The buckets `kiln serve` really exports, so SLO thresholds pick a bucket that exists.
    let latency_buckets_s = kiln_serve::metrics::Metrics::default()
        .version("-", "-")
        .latency_snapshot()
        .bounds
        .to_vec();
    Ok(k8s::Options {
        image: args.image.clone(),
        image_pull_policy: args.image_pull_policy.clone(),
        namespace: args.namespace.clone(),
        prefix: args.name_prefix.clone(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        secret: args.secret.clone(),
        serve: k8s::Workload {
            min_replicas: args.serve_replicas,
            max_replicas: args.serve_max_replicas,
            cpu_target_percent: args.cpu_target,
            cpu_request: args.serve_cpu.clone(),
            memory_request: args.serve_memory.clone(),
            cpu_limit: some(&args.serve_cpu_limit),
            memory_limit: some(&args.serve_memory_limit),
        },
        server: (!args.no_control_plane).then(|| k8s::Workload {
            min_replicas: args.server_replicas,
            max_replicas: args.server_max_replicas,
            cpu_target_percent: args.cpu_target,
            cpu_request: args.server_cpu.clone(),
            memory_request: args.server_memory.clone(),
            cpu_limit: some(&args.server_cpu_limit),
            memory_limit: some(&args.server_memory_limit),
        }),
        monitor: args.monitor,
        prediction_log: args.prediction_log.clone(),
        prometheus_operator: !args.no_prometheus_operator,
        selector_labels,
        runbook_base_url: args.runbook_base_url.clone(),
        latency_buckets_s,
    })
}

/// The project as the renderer takes it; the alert rules and SLOs are checked with
/// `kiln-monitor`, so a rule `kiln serve --monitor` would refuse is refused here too.
fn project_spec(file: &crate::project::KilnToml, text: String) -> anyhow::Result<k8s::Project> {
    let deployments = file
        .deploy
        .iter()
        .map(|(name, d)| k8s::Deployment {
            name: name.clone(),
            model: d.model.clone(),
            canary: d.canary.is_some(),
        })
        .collect();
    let mut names: Vec<&String> = file.deploy.keys().chain(file.monitor.keys()).collect();
    names.sort();
    names.dedup();
    let mut alerting = vec![];
    for name in names {
        let monitor = file.monitor.get(name).cloned().unwrap_or_default();
        let a = alerting_of(name, file.deploy.get(name), &monitor)?;
        if !a.rules.is_empty() || !a.slo_rules.is_empty() {
            alerting.push(a);
        }
    }
    Ok(k8s::Project {
        name: file.project.name.clone().unwrap_or_default(),
        config_text: text,
        deployments,
        alerting,
    })
}

fn alerting_of(
    name: &str,
    deploy: Option<&DeployConfig>,
    monitor: &MonitorConfig,
) -> anyhow::Result<k8s::Alerting> {
    let dur = |field: &str, v: &Option<String>| -> anyhow::Result<Option<i64>> {
        v.as_ref()
            .map(|s| {
                parse_duration_ms(s).filter(|ms| *ms > 0).with_context(|| {
                    format!("[monitor.{name}].{field} = {s:?}: expected a duration like 5s, 1m, 1h")
                })
            })
            .transpose()
    };
    let mut rules = vec![];
    for spec in &monitor.alerts {
        Rule::compile(spec).map_err(|e| anyhow::anyhow!("[monitor.{name}].alerts: {e}"))?;
        rules.push(alert_rule(spec));
    }
    let (slos, slo_rules) = slos_of(name, deploy)?;
    Ok(k8s::Alerting {
        deployment: name.to_string(),
        window_ms: dur("window", &monitor.window)?.unwrap_or(60_000),
        interval_ms: dur("interval", &monitor.interval)?,
        rules,
        slos,
        slo_rules,
    })
}

/// `[deploy.NAME].slo` as `kiln serve --monitor` reads it: the SLOs and their burn-rate
/// rules (the 14.4 / 6 / 1 table, scaled to the period).
fn slos_of(
    name: &str,
    deploy: Option<&DeployConfig>,
) -> anyhow::Result<(Vec<k8s::Slo>, Vec<k8s::AlertRule>)> {
    let Some(slo) = deploy.and_then(|d| d.slo.as_ref()) else {
        return Ok((vec![], vec![]));
    };
    let mut specs = vec![];
    for (key, value, runbook) in [
        ("p99_ms", slo.p99_ms, "runbooks/high-latency.md"),
        ("availability", slo.availability, "runbooks/errors.md"),
    ] {
        let Some(v) = value else { continue };
        let mut s = SloSpec::from_shorthand(name, key, v)
            .map_err(|e| anyhow::anyhow!("[deploy.{name}].slo.{key}: {e}"))?;
        if let Some(days) = slo.period_days {
            s.period_ms = (days * 86_400_000.0) as i64;
            s.validate()
                .map_err(|e| anyhow::anyhow!("[deploy.{name}].slo.period_days: {e}"))?;
        }
        s.runbook = Some(runbook.into());
        specs.push(s);
    }
    let slos = specs
        .iter()
        .map(|s| k8s::Slo {
            name: s.name.clone(),
            objective: match s.objective {
                Objective::Availability { percent } => k8s::Objective::Availability { percent },
                Objective::Latency {
                    percentile,
                    threshold_ms,
                } => k8s::Objective::Latency {
                    percentile,
                    threshold_ms,
                },
            },
        })
        .collect();
    let rules = specs
        .iter()
        .flat_map(SloSpec::alert_rules)
        .map(|r| alert_rule(&r))
        .collect();
    Ok((slos, rules))
}

fn alert_rule(r: &RuleSpec) -> k8s::AlertRule {
    k8s::AlertRule {
        name: r.name.clone(),
        when: r.when.clone(),
        for_ms: r.for_ms,
        severity: r.severity.as_str().to_string(),
        labels: r.labels.clone(),
        annotations: r.annotations.clone(),
        summary: r.summary.clone(),
        description: r.description.clone(),
        runbook: r.runbook.clone(),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    /// The rendered container arguments parse as the real `kiln serve` / `kiln server`
    /// command lines.
    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        command: Cmd,
    }

    #[derive(clap::Subcommand)]
    enum Cmd {
        Serve(super::super::serve::ServeArgs),
        Server(super::super::server::ServerArgs),
        Export(ExportArgs),
    }

    fn export_args(extra: &[&str]) -> K8sArgs {
        let mut argv = vec!["kiln", "export", "k8s"];
        argv.extend(extra);
        match Cli::try_parse_from(argv).unwrap().command {
            Cmd::Export(ExportArgs {
                target: ExportTarget::K8s(a),
            }) => a,
            _ => unreachable!(),
        }
    }

    const PROJECT: &str = r#"
[project]
name = "flight-delays"

[deploy.delay]
model = "delay@champion"
slo = { p99_ms = 25, availability = 99.9 }

[monitor.delay]
window = "5m"
alerts = [
  { name = "HighErrorRate", when = "error_rate > 0.01", for = "5m", severity = "page", runbook = "runbooks/errors.md" },
  { name = "InputDrift", when = "drift_share >= 0.3", for = "15m", severity = "page" },
]
"#;

    fn render(extra: &[&str]) -> k8s::Manifests {
        let file = crate::project::parse(PROJECT).unwrap();
        let spec = project_spec(&file, PROJECT.to_string()).unwrap();
        k8s::render(&spec, &options(&export_args(extra)).unwrap()).unwrap()
    }

    fn container_args(m: &k8s::Manifests, name: &str) -> Vec<String> {
        let d = m
            .documents
            .iter()
            .find(|d| d.value["kind"] == "Deployment" && d.value["metadata"]["name"] == name)
            .unwrap();
        d.value["spec"]["template"]["spec"]["containers"][0]["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn export_k8s_container_args_are_real_kiln_command_lines() {
        let m = render(&["--monitor", "--prediction-log", "s3://b/p"]);
        let mut argv = vec!["kiln".to_string()];
        argv.extend(container_args(&m, "kiln-serve-delay"));
        let Cmd::Serve(s) = Cli::try_parse_from(&argv).unwrap().command else {
            panic!("{argv:?}")
        };
        assert_eq!((s.host.as_str(), s.port), ("0.0.0.0", 8000));
        assert_eq!(s.models, ["delay=delay@champion"]);
        assert!(s.monitor);
        assert_eq!(s.config, PathBuf::from("/etc/kiln/kiln.toml"));
        assert_eq!(s.prediction_log.as_deref(), Some("s3://b/p"));
        let mut argv = vec!["kiln".to_string()];
        argv.extend(container_args(&m, "kiln-server"));
        let Cmd::Server(s) = Cli::try_parse_from(&argv).unwrap().command else {
            panic!("{argv:?}")
        };
        assert_eq!((s.host.as_str(), s.port), ("0.0.0.0", 5000));
    }

    #[test]
    fn export_k8s_slo_rules_come_from_kiln_monitor() {
        let m = render(&[]);
        let rule = m
            .documents
            .iter()
            .find(|d| d.value["kind"] == "PrometheusRule")
            .unwrap();
        let groups = rule.value["spec"]["groups"].as_array().unwrap();
        let slo = &groups[1]["rules"];
        // Two SLOs, three windows each: 14.4 / 6 / 1.
        assert_eq!(slo.as_array().unwrap().len(), 6);
        let rates: Vec<&str> = slo
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["labels"]["long_window"].as_str().unwrap())
            .collect();
        assert_eq!(rates, ["1h", "6h", "3d", "1h", "6h", "3d"]);
        let first = slo[0]["expr"].as_str().unwrap();
        // 25 ms is a bucket bound: requests above it are the slow ones.
        assert!(first.contains("le=\"0.025\""), "{first}");
        assert!(first.contains("> 14.4"), "{first}");
        assert!(
            m.warnings.iter().any(|w| w.contains("InputDrift")),
            "{:?}",
            m.warnings
        );
    }

    #[test]
    fn export_k8s_refuses_a_rule_kiln_serve_would_refuse() {
        let bad = "[monitor.delay]\nalerts = [{ name = \"X\", when = \"p99_ms >\" }]\n";
        let file = crate::project::parse(bad).unwrap();
        let e = project_spec(&file, bad.into()).unwrap_err().to_string();
        assert!(e.contains("[monitor.delay].alerts"), "{e}");
    }
}
