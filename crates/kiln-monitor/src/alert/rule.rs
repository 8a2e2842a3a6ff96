//! Alert rules: what a user writes ([`RuleSpec`]) and its checked, compiled form ([`Rule`]).
//!
//! ```toml
//! alerts = [{ name = "HighLatency", when = "p99_ms > 20", for = "5m", severity = "page",
//!             summary = "p99 is {{ $value }} ms on {{ $labels.deployment }}",
//!             runbook = "runbooks/latency.md" }]
//! ```
//!
//! Every alert of a rule carries the labels of its series, then the rule's `labels` (which win),
//! then `alertname` (the rule name) and `severity`. `summary`, `description` and `runbook` become
//! the annotations `summary`, `description` and `runbook_url` (Prometheus' conventional names);
//! other annotations go in `annotations`. Annotation text may use `{{ $value }}` (the observed
//! value, see [`crate::expr::Outcome::value`]) and `{{ $labels.<name> }}`.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::time;
use crate::expr::{Expr, ParseError};
use crate::indicator::{Labels, is_valid_label_name};

/// How urgently a human must act: `page` (now), `ticket` (within days), `info` (no action).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Page,
    #[default]
    Ticket,
    Info,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Page => "page",
            Severity::Ticket => "ticket",
            Severity::Info => "info",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Severity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "page" => Ok(Severity::Page),
            "ticket" => Ok(Severity::Ticket),
            "info" => Ok(Severity::Info),
            _ => Err(format!(
                "unknown severity {s:?}: expected page, ticket or info"
            )),
        }
    }
}

/// An alert rule as written in configuration. `for` defaults to 0 (fire on the first true
/// evaluation) and `severity` to `ticket`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    pub name: String,
    pub when: String,
    /// How long the condition must hold before the alert fires, in milliseconds (written
    /// `"5m"`).
    #[serde(rename = "for", default, with = "time::duration")]
    pub for_ms: i64,
    #[serde(default)]
    pub severity: Severity,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// A runbook URL or repository path; becomes the `runbook_url` annotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runbook: Option<String>,
}

impl RuleSpec {
    /// A rule with the defaults (`for = 0`, severity `ticket`).
    pub fn new(name: impl Into<String>, when: impl Into<String>) -> Self {
        RuleSpec {
            name: name.into(),
            when: when.into(),
            ..Default::default()
        }
    }
}

/// Why a rule was rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RuleError {
    #[error("an alert rule needs a name")]
    EmptyName,
    #[error("rule {rule}: `when` {source}")]
    When { rule: String, source: ParseError },
    #[error("rule {rule}: `for` must not be negative")]
    NegativeFor { rule: String },
    #[error("rule {rule}: invalid label name {label:?}: must match [a-zA-Z_][a-zA-Z0-9_]*")]
    InvalidLabel { rule: String, label: String },
    #[error("rule {rule}: label {label:?} is set by Kiln (use `name` / `severity`)")]
    ReservedLabel { rule: String, label: String },
    #[error("rule {rule}: annotation {annotation:?}: {message}")]
    Template {
        rule: String,
        annotation: String,
        message: String,
    },
    #[error("rule {rule}: annotation {annotation:?} is also given by the `{field}` field")]
    DuplicateAnnotation {
        rule: String,
        annotation: String,
        field: &'static str,
    },
    #[error("two rules named {rule} have the same labels; their alerts could not be told apart")]
    Duplicate { rule: String },
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Value,
    Label(String),
}

/// An annotation template: text with `{{ $value }}` and `{{ $labels.<name> }}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Template(Vec<Part>);

impl Template {
    pub fn parse(s: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = s;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_string()));
            }
            let after = &rest[open + 2..];
            let close = after.find("}}").ok_or_else(|| {
                format!(
                    "`{{{{` at byte {} is not closed by `}}}}`",
                    s.len() - rest.len() + open
                )
            })?;
            let inner = after[..close].trim();
            if inner == "$value" {
                parts.push(Part::Value);
            } else if let Some(name) = inner.strip_prefix("$labels.") {
                if !is_valid_label_name(name) {
                    return Err(format!("invalid label name in `{{{{ {inner} }}}}`"));
                }
                parts.push(Part::Label(name.to_string()));
            } else {
                return Err(format!(
                    "unknown template expression `{{{{ {inner} }}}}`: use `{{{{ $value }}}}` or `{{{{ $labels.<name> }}}}`"
                ));
            }
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Template(parts))
    }

    /// Fills in the template. A missing label renders empty; a missing value renders as
    /// `no data`.
    pub fn render(&self, labels: &Labels, value: Option<f64>) -> String {
        let mut out = String::new();
        for p in &self.0 {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Value => match value {
                    Some(v) => out.push_str(&format_value(v)),
                    None => out.push_str("no data"),
                },
                Part::Label(n) => out.push_str(labels.get(n).unwrap_or("")),
            }
        }
        out
    }
}

/// A value for humans: integers without a fraction, others with up to 4 significant decimals.
pub fn format_value(v: f64) -> String {
    if v.is_finite() && v == v.trunc() && v.abs() < 1e15 {
        return format!("{v:.0}");
    }
    if !v.is_finite() {
        return v.to_string();
    }
    let magnitude = v.abs().log10().floor() as i32;
    let decimals = (3 - magnitude).clamp(0, 12) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// A checked rule, ready to evaluate.
#[derive(Debug, Clone)]
pub struct Rule {
    spec: RuleSpec,
    expr: Expr,
    labels: Labels,
    annotations: BTreeMap<String, Template>,
}

impl Rule {
    pub fn compile(spec: &RuleSpec) -> Result<Rule, RuleError> {
        let name = spec.name.trim();
        if name.is_empty() {
            return Err(RuleError::EmptyName);
        }
        let rule = || name.to_string();
        let expr = Expr::parse(&spec.when).map_err(|source| RuleError::When {
            rule: rule(),
            source,
        })?;
        if spec.for_ms < 0 {
            return Err(RuleError::NegativeFor { rule: rule() });
        }
        let mut labels = Labels::new();
        for (k, v) in &spec.labels {
            if !is_valid_label_name(k) {
                return Err(RuleError::InvalidLabel {
                    rule: rule(),
                    label: k.clone(),
                });
            }
            if k == "alertname" || k == "severity" {
                return Err(RuleError::ReservedLabel {
                    rule: rule(),
                    label: k.clone(),
                });
            }
            labels.insert(k, v);
        }
        labels.insert("alertname", name);
        labels.insert("severity", spec.severity.as_str());

        let mut texts: Vec<(String, &str)> = spec
            .annotations
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str()))
            .collect();
        for (field, key, value) in [
            ("summary", "summary", &spec.summary),
            ("description", "description", &spec.description),
            ("runbook", "runbook_url", &spec.runbook),
        ] {
            if let Some(v) = value {
                if spec.annotations.contains_key(key) {
                    return Err(RuleError::DuplicateAnnotation {
                        rule: rule(),
                        annotation: key.to_string(),
                        field,
                    });
                }
                texts.push((key.to_string(), v.as_str()));
            }
        }
        let mut annotations = BTreeMap::new();
        for (k, text) in texts {
            let t = Template::parse(text).map_err(|message| RuleError::Template {
                rule: rule(),
                annotation: k.clone(),
                message,
            })?;
            annotations.insert(k, t);
        }
        Ok(Rule {
            spec: spec.clone(),
            expr,
            labels,
            annotations,
        })
    }

    pub fn name(&self) -> &str {
        self.spec.name.trim()
    }

    pub fn expr(&self) -> &Expr {
        &self.expr
    }

    pub fn for_ms(&self) -> i64 {
        self.spec.for_ms
    }

    pub fn severity(&self) -> Severity {
        self.spec.severity
    }

    /// The labels the rule puts on every alert: its own, `alertname` and `severity`.
    pub fn labels(&self) -> &Labels {
        &self.labels
    }

    pub fn spec(&self) -> &RuleSpec {
        &self.spec
    }

    /// The annotations for an alert with these labels and observed value.
    pub fn render_annotations(
        &self,
        labels: &Labels,
        value: Option<f64>,
    ) -> BTreeMap<String, String> {
        self.annotations
            .iter()
            .map(|(k, t)| (k.clone(), t.render(labels, value)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_reads_the_kiln_toml_shape_and_compiles() {
        let spec: RuleSpec = serde_json::from_value(serde_json::json!({
            "name": "HighLatency", "when": "p99_ms > 20", "for": "5m", "severity": "page",
            "runbook": "runbooks/latency.md",
            "summary": "p99 is {{ $value }} ms on {{$labels.deployment}}"
        }))
        .unwrap();
        assert_eq!(spec.for_ms, 300_000);
        let rule = Rule::compile(&spec).unwrap();
        assert_eq!(rule.labels().get("alertname"), Some("HighLatency"));
        assert_eq!(rule.labels().get("severity"), Some("page"));
        let l = Labels::from_pairs([("deployment", "flights")]);
        let a = rule.render_annotations(&l, Some(35.25));
        assert_eq!(a["summary"], "p99 is 35.25 ms on flights");
        assert_eq!(a["runbook_url"], "runbooks/latency.md");
        let back: RuleSpec = serde_json::from_value(serde_json::to_value(&spec).unwrap()).unwrap();
        assert_eq!(back, spec);

        let bad: Result<RuleSpec, _> = serde_json::from_value(
            serde_json::json!({"name": "X", "when": "a > 1", "for": "5 minutes"}),
        );
        assert!(bad.unwrap_err().to_string().contains("invalid duration"));
        let bad: Result<RuleSpec, _> = serde_json::from_value(
            serde_json::json!({"name": "X", "when": "a > 1", "severity": "urgent"}),
        );
        assert!(bad.is_err());
        let bad: Result<RuleSpec, _> =
            serde_json::from_value(serde_json::json!({"name": "X", "when": "a > 1", "fro": "5m"}));
        assert!(bad.is_err());
    }

    #[test]
    fn compile_rejects_bad_rules_with_reasons() {
        let mut s = RuleSpec::new("X", "p99_ms >");
        match Rule::compile(&s) {
            Err(RuleError::When { source, .. }) => assert_eq!(source.column, 9),
            other => panic!("{other:?}"),
        }
        s.when = "p99_ms > 1".into();
        s.labels.insert("severity".into(), "x".into());
        assert!(matches!(
            Rule::compile(&s),
            Err(RuleError::ReservedLabel { .. })
        ));
        s.labels.clear();
        s.labels.insert("bad-name".into(), "x".into());
        assert!(matches!(
            Rule::compile(&s),
            Err(RuleError::InvalidLabel { .. })
        ));
        s.labels.clear();
        s.summary = Some("{{ $value".into());
        assert!(matches!(Rule::compile(&s), Err(RuleError::Template { .. })));
        s.summary = Some("{{ .Value }}".into());
        assert!(matches!(Rule::compile(&s), Err(RuleError::Template { .. })));
        s.summary = Some("ok".into());
        s.annotations.insert("summary".into(), "again".into());
        assert!(matches!(
            Rule::compile(&s),
            Err(RuleError::DuplicateAnnotation { .. })
        ));
        assert!(matches!(
            Rule::compile(&RuleSpec::new(" ", "a > 1")),
            Err(RuleError::EmptyName)
        ));
    }

    #[test]
    fn values_format_for_humans() {
        assert_eq!(format_value(35.0), "35");
        assert_eq!(format_value(35.254_9), "35.25");
        assert_eq!(format_value(0.012_345_6), "0.01235");
        assert_eq!(format_value(1234.5678), "1235");
        assert_eq!(format_value(f64::INFINITY), "inf");
    }
}
