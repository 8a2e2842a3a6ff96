//! `kiln export k8s`: Kubernetes manifests from the same `kiln.toml`.
//!
//! What is rendered, and why it is shaped so:
//!
//! - **Data plane**: one Deployment, Service, HorizontalPodAutoscaler and PodDisruptionBudget
//!   per `[deploy.NAME]`, running `kiln serve --model NAME=MODEL`. One per deployment, not
//!   one for all, because models scale, roll out and fail independently: a heavy model must
//!   not take a light one's replicas with it, and a bad rollout of one must not touch the
//!   others.
//! - **Control plane**: one of each for `kiln server` (tracking, registry, releases).
//! - A ConfigMap holding `kiln.toml`, mounted where `KILN_CONFIG` points.
//! - With the Prometheus operator: a ServiceMonitor for the data plane's `/metrics` and a
//!   PrometheusRule with the `[monitor.NAME].alerts` rules and the `[deploy.NAME].slo`
//!   burn-rate alerts, translated into PromQL over the series Kiln exports (see `promql.rs`).
//!
//! Secrets are never rendered: the store URL, the artifact store URL, object-store
//! credentials and admin tokens come from one Secret by reference.
//!
//! This module takes plain option structs: the binary reads `kiln.toml` and the command line.

mod promql;
mod rules;
mod when;
mod workloads;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value;

pub use promql::{duration, parse_duration};

/// Why manifests could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum K8sError {
    #[error("{what} {value:?}: {reason}")]
    Invalid {
        what: String,
        value: String,
        reason: String,
    },
    #[error("[deploy.{0}] has no `model`: say what it serves, e.g. model = \"{0}@champion\"")]
    NoModel(String),
    #[error("[deploy.{a}] and [deploy.{b}] both become the Kubernetes name {name:?}")]
    NameClash { a: String, b: String, name: String },
    #[error("kiln.toml is {0} bytes; a ConfigMap holds at most 1 MiB")]
    ConfigTooLarge(usize),
    #[error("cannot write YAML: {0}")]
    Yaml(String),
}

pub type Result<T> = std::result::Result<T, K8sError>;

/// What the project declares, as the renderer needs it.
#[derive(Debug, Clone, Default)]
pub struct Project {
    /// `[project].name` (the `app.kubernetes.io/part-of` label); may be empty.
    pub name: String,
    /// The text of `kiln.toml`, kept byte for byte in the ConfigMap.
    pub config_text: String,
    /// `[deploy.NAME]` sections, in name order.
    pub deployments: Vec<Deployment>,
    /// Alert rules and SLOs per served name (`[monitor.NAME]`, `[deploy.NAME].slo`).
    pub alerting: Vec<Alerting>,
}

/// One `[deploy.NAME]`: what `kiln serve` serves under NAME.
#[derive(Debug, Clone)]
pub struct Deployment {
    pub name: String,
    /// `MODEL@ALIAS`, `MODEL/VERSION`, or a path inside the image.
    pub model: Option<String>,
    /// Whether a canary policy is declared (it is carried out by `kiln serve --monitor`).
    pub canary: bool,
}

/// The alerting of one served name.
#[derive(Debug, Clone)]
pub struct Alerting {
    pub deployment: String,
    /// `[monitor.NAME].window`: the window of latency, error and rate indicators.
    pub window_ms: i64,
    /// `[monitor.NAME].interval`, when set: the rule group's evaluation interval.
    pub interval_ms: Option<i64>,
    /// `[monitor.NAME].alerts`.
    pub rules: Vec<AlertRule>,
    /// The SLOs of `[deploy.NAME].slo`…
    pub slos: Vec<Slo>,
    /// …and their multi-window burn-rate rules (`kiln-monitor`'s, over `burn_rate_<w>`).
    pub slo_rules: Vec<AlertRule>,
}

/// An SLO of a deployment, by the name its burn-rate series carry (`slo="…"`).
#[derive(Debug, Clone, PartialEq)]
pub struct Slo {
    pub name: String,
    pub objective: Objective,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Objective {
    /// At least `percent` % of requests succeed.
    Availability { percent: f64 },
    /// At least `percentile` % of requests take at most `threshold_ms`.
    Latency { percentile: f64, threshold_ms: f64 },
}

/// An alert rule as Kiln evaluates it.
#[derive(Debug, Clone, Default)]
pub struct AlertRule {
    pub name: String,
    pub when: String,
    pub for_ms: i64,
    /// `page`, `ticket` or `info`.
    pub severity: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub summary: Option<String>,
    pub description: Option<String>,
    pub runbook: Option<String>,
}

/// How the manifests are rendered.
#[derive(Debug, Clone)]
pub struct Options {
    pub image: String,
    pub image_pull_policy: String,
    /// `metadata.namespace` of every object (none: the namespace `kubectl` is told).
    pub namespace: Option<String>,
    /// Prefix of every object's name, and the `app.kubernetes.io/instance` label.
    pub prefix: String,
    /// `app.kubernetes.io/version`.
    pub version: String,
    /// The Secret with `KILN_STORE` and `KILN_ARTIFACTS` (required) and `AWS_*`,
    /// `KILN_ADMIN_TOKEN`, `KILN_SERVE_ADMIN_TOKEN` (optional).
    pub secret: String,
    pub serve: Workload,
    /// The control plane; `None` leaves it out (it runs elsewhere).
    pub server: Option<Workload>,
    /// Run `kiln serve --monitor` (alerts, incidents and canary rollback in process).
    pub monitor: bool,
    /// `kiln serve --prediction-log URL`.
    pub prediction_log: Option<String>,
    /// Render a ServiceMonitor and a PrometheusRule (`monitoring.coreos.com/v1`).
    pub prometheus_operator: bool,
    /// Labels the Prometheus operator selects rules and monitors by (e.g. `release=prom`).
    pub selector_labels: BTreeMap<String, String>,
    /// Joined to runbook paths that are not URLs already.
    pub runbook_base_url: Option<String>,
    /// Upper bounds of `kiln_inference_request_duration_seconds`, in seconds.
    pub latency_buckets_s: Vec<f64>,
}

/// Replicas and resources of one plane.
#[derive(Debug, Clone)]
pub struct Workload {
    pub min_replicas: u32,
    pub max_replicas: u32,
    /// The HorizontalPodAutoscaler's CPU target, in percent of the request.
    pub cpu_target_percent: u32,
    pub cpu_request: String,
    pub memory_request: String,
    pub cpu_limit: Option<String>,
    pub memory_limit: Option<String>,
}

/// One YAML document.
#[derive(Debug, Clone)]
pub struct Document {
    /// The file it belongs in with `--out DIR`.
    pub file: String,
    /// `#` comment lines written above it.
    pub comments: Vec<String>,
    pub value: Value,
}

/// The rendered manifests and what could not be rendered.
#[derive(Debug, Clone, Default)]
pub struct Manifests {
    pub documents: Vec<Document>,
    /// One line each: a rule left out and why, a path that must exist in the image, …
    pub warnings: Vec<String>,
}

impl Manifests {
    /// Every document as one multi-document YAML stream.
    pub fn to_yaml(&self) -> Result<String> {
        let mut out = String::new();
        for d in &self.documents {
            out.push_str(&document_yaml(d)?);
        }
        Ok(out)
    }

    /// `(file name, multi-document YAML)` per file, in the order of first appearance.
    pub fn files(&self) -> Result<Vec<(String, String)>> {
        let mut out: Vec<(String, String)> = vec![];
        for d in &self.documents {
            let text = document_yaml(d)?;
            match out.iter_mut().find(|(f, _)| *f == d.file) {
                Some((_, t)) => t.push_str(&text),
                None => out.push((d.file.clone(), text)),
            }
        }
        Ok(out)
    }
}

fn document_yaml(d: &Document) -> Result<String> {
    let mut out = String::from("---\n");
    for c in &d.comments {
        for line in c.lines() {
            let _ = writeln!(out, "# {line}");
        }
    }
    if d.value.is_null() {
        // A comment alone: an empty document, which `kubectl apply` skips.
        return Ok(out);
    }
    let body =
        serde_saphyr::to_string(&Ordered(&d.value)).map_err(|e| K8sError::Yaml(e.to_string()))?;
    out.push_str(&body);
    if !out.ends_with('\n') {
        out.push('\n');
    }
    Ok(out)
}

/// A value whose maps serialise in the order people read manifests in (`apiVersion`,
/// `kind`, `metadata`, then `name`, …), the rest alphabetically.
struct Ordered<'a>(&'a Value);

const KEY_ORDER: [&str; 15] = [
    "apiVersion",
    "kind",
    "metadata",
    "name",
    "namespace",
    "alert",
    "expr",
    "for",
    "interval",
    "labels",
    "annotations",
    "image",
    "imagePullPolicy",
    "command",
    "args",
];

impl serde::Serialize for Ordered<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match self.0 {
            Value::Object(m) => {
                let mut entries: Vec<(&String, &Value)> = m.iter().collect();
                entries.sort_by_key(|(k, _)| {
                    (
                        KEY_ORDER
                            .iter()
                            .position(|o| o == k)
                            .unwrap_or(KEY_ORDER.len()),
                        k.as_str(),
                    )
                });
                let mut map = s.serialize_map(Some(entries.len()))?;
                for (k, v) in entries {
                    map.serialize_entry(k, &Ordered(v))?;
                }
                map.end()
            }
            Value::Array(a) => {
                let mut seq = s.serialize_seq(Some(a.len()))?;
                for v in a {
                    seq.serialize_element(&Ordered(v))?;
                }
                seq.end()
            }
            other => other.serialize(s),
        }
    }
}

/// Renders every manifest of `project`.
pub fn render(project: &Project, opts: &Options) -> Result<Manifests> {
    check_options(opts)?;
    if project.config_text.len() > 1 << 20 {
        return Err(K8sError::ConfigTooLarge(project.config_text.len()));
    }
    let mut m = Manifests::default();
    let names = workloads::names(project, opts)?;
    m.documents.push(workloads::config_map(project, opts));
    if let Some(server) = &opts.server {
        m.documents
            .extend(workloads::control_plane(project, opts, server));
    }
    for d in &project.deployments {
        let k8s_name = &names[&d.name];
        m.documents.extend(workloads::data_plane(
            project,
            opts,
            d,
            k8s_name,
            &mut m.warnings,
        )?);
    }
    if opts.prometheus_operator {
        if !project.deployments.is_empty() {
            m.documents.push(workloads::service_monitor(project, opts));
        }
        if let Some(doc) = rules::prometheus_rule(project, opts, &mut m.warnings) {
            m.documents.push(doc);
        }
    } else if project
        .alerting
        .iter()
        .any(|a| !a.rules.is_empty() || !a.slo_rules.is_empty())
    {
        m.warnings.push(
            "alert rules and SLOs are not rendered without the Prometheus operator \
             (they still run in `kiln serve --monitor`)"
                .into(),
        );
    }
    Ok(m)
}

fn check_options(opts: &Options) -> Result<()> {
    let invalid = |what: &str, value: &str, reason: &str| K8sError::Invalid {
        what: what.into(),
        value: value.into(),
        reason: reason.into(),
    };
    if opts.image.trim().is_empty() || opts.image.chars().any(char::is_whitespace) {
        return Err(invalid(
            "--image",
            &opts.image,
            "expected an image reference",
        ));
    }
    if let Some(ns) = &opts.namespace
        && !is_dns_label(ns)
    {
        return Err(invalid(
            "--namespace",
            ns,
            "expected lower-case letters, digits and `-`, at most 63 characters",
        ));
    }
    if !is_dns_label(&opts.prefix)
        || opts.prefix.len() > 30
        || !opts.prefix.starts_with(|c: char| c.is_ascii_lowercase())
    {
        return Err(invalid(
            "--name-prefix",
            &opts.prefix,
            "expected a lower-case letter, then letters, digits and `-`, at most 30 characters",
        ));
    }
    if !is_dns_subdomain(&opts.secret) {
        return Err(invalid(
            "--secret",
            &opts.secret,
            "expected a Secret's name",
        ));
    }
    for (plane, w) in [
        ("serve", Some(&opts.serve)),
        ("server", opts.server.as_ref()),
    ] {
        let Some(w) = w else { continue };
        if w.min_replicas == 0 || w.max_replicas < w.min_replicas {
            return Err(invalid(
                &format!("--{plane}-replicas / --{plane}-max-replicas"),
                &format!("{} / {}", w.min_replicas, w.max_replicas),
                "expected at least 1, and a maximum not below the minimum",
            ));
        }
        if !(1..=1000).contains(&w.cpu_target_percent) {
            return Err(invalid(
                "--cpu-target",
                &w.cpu_target_percent.to_string(),
                "expected a percentage of the CPU request, 1 to 1000",
            ));
        }
        for (flag, q) in [
            ("cpu", Some(&w.cpu_request)),
            ("memory", Some(&w.memory_request)),
            ("cpu-limit", w.cpu_limit.as_ref()),
            ("memory-limit", w.memory_limit.as_ref()),
        ] {
            if let Some(q) = q
                && !is_quantity(q)
            {
                return Err(invalid(
                    &format!("--{plane}-{flag}"),
                    q,
                    "expected a Kubernetes quantity such as 500m, 2, 512Mi or 1Gi",
                ));
            }
        }
    }
    for (k, v) in &opts.selector_labels {
        if !is_label_key(k) || !is_label_value(v) {
            return Err(invalid(
                "--rule-label",
                &format!("{k}={v}"),
                "expected a Kubernetes label KEY=VALUE",
            ));
        }
    }
    Ok(())
}

/// RFC 1123 label: what Service, Deployment and namespace names must be.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// A label value: at most 63 of `[A-Za-z0-9._-]`, alphanumeric at both ends, or empty.
pub fn is_label_value(s: &str) -> bool {
    s.is_empty()
        || (s.len() <= 63
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
            && s.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric()))
}

fn is_label_key(s: &str) -> bool {
    let (prefix, name) = match s.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    prefix.is_none_or(is_dns_subdomain) && !name.is_empty() && is_label_value(name)
}

/// A resource quantity: `500m`, `2`, `0.5`, `512Mi`, `1G`, `1e3`.
pub fn is_quantity(s: &str) -> bool {
    let digits_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(digits_end);
    let num_ok = !num.is_empty()
        && num != "."
        && num.matches('.').count() <= 1
        && num.bytes().any(|b| b.is_ascii_digit());
    let exponent = suffix
        .strip_prefix(['e', 'E'])
        .map(|e| e.trim_start_matches(['+', '-']));
    let suffix_ok = matches!(
        suffix,
        "" | "m" | "k" | "M" | "G" | "T" | "P" | "E" | "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei"
    ) || exponent
        .is_some_and(|e| !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit()));
    num_ok && suffix_ok
}

/// A Kubernetes name for a `[deploy.NAME]`: lower case, `_` and `.` become `-`.
pub fn k8s_name(name: &str) -> Option<String> {
    let s: String = name
        .chars()
        .map(|c| match c {
            'A'..='Z' => c.to_ascii_lowercase(),
            'a'..='z' | '0'..='9' | '-' => c,
            _ => '-',
        })
        .collect();
    let s = s.trim_matches('-').to_string();
    is_dns_label(&s).then_some(s)
}

#[cfg(test)]
mod tests;
