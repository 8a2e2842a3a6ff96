//! The alert state machine: each rule, evaluated on each series of an [`Indicators`] snapshot,
//! moves one alert instance per series through
//!
//! ```text
//!   inactive ──condition true──► pending ──held for `for`──► firing ──condition not true──► resolved
//!      ▲                            │                                                          │
//!      └────condition not true──────┘ (never notified)        kept `resolved_retention`, then forgotten
//! ```
//!
//! With `for = 0` an alert goes straight from inactive to firing. `startsAt` is the moment it
//! fired, `endsAt` the moment it resolved (Prometheus' `FiredAt` / `ResolvedAt`). A series that
//! disappears from the snapshot, or whose condition evaluates to no data, counts as "not true".
//! If the condition holds again after a resolution, a new alert starts (new `startsAt`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::rule::{Rule, RuleError, RuleSpec};
use crate::expr::Truth;
use crate::indicator::{Indicators, Labels};

/// Where an alert is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    Pending,
    Firing,
    Resolved,
}

/// One alert instance: a rule on one series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    /// The rule's name (also the `alertname` label).
    pub rule: String,
    /// [`Labels::fingerprint_hex`] of `labels`: the alert's identity.
    pub fingerprint: String,
    pub labels: Labels,
    pub annotations: BTreeMap<String, String>,
    pub state: AlertState,
    /// When the condition became true (the start of `pending`).
    pub active_at_ms: i64,
    /// When the alert fired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starts_at_ms: Option<i64>,
    /// When the alert resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ends_at_ms: Option<i64>,
    /// The observed value at the last evaluation that found the condition true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// The last evaluation that looked at this alert.
    pub last_eval_ms: i64,
    /// A link back to where the alert comes from (Alertmanager's `generatorURL`).
    #[serde(default)]
    pub generator_url: String,
}

/// A change of an alert's state; `None` is inactive (never seen, or forgotten).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Transition {
    pub rule: String,
    pub fingerprint: String,
    pub labels: Labels,
    pub from: Option<AlertState>,
    pub to: Option<AlertState>,
    pub at_ms: i64,
}

/// How long a resolved alert stays listed (Prometheus keeps resolved alerts 15 minutes).
pub const DEFAULT_RESOLVED_RETENTION_MS: i64 = 15 * 60_000;

/// The alerts of an [`Evaluator`], for persisting and restoring.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EvaluatorState {
    pub alerts: Vec<Alert>,
}

/// Evaluates rules on indicator snapshots and keeps the alert instances.
#[derive(Debug, Clone)]
pub struct Evaluator {
    rules: Vec<Rule>,
    alerts: BTreeMap<String, Alert>,
    resolved_retention_ms: i64,
    generator_url: String,
}

impl Evaluator {
    /// Compiles the rules. Two rules with the same name and labels are rejected: their alerts
    /// would have the same identity.
    pub fn new(specs: &[RuleSpec]) -> Result<Evaluator, RuleError> {
        let mut rules: Vec<Rule> = Vec::with_capacity(specs.len());
        for spec in specs {
            let rule = Rule::compile(spec)?;
            if rules.iter().any(|r| r.labels() == rule.labels()) {
                return Err(RuleError::Duplicate {
                    rule: rule.name().to_string(),
                });
            }
            rules.push(rule);
        }
        Ok(Evaluator {
            rules,
            alerts: BTreeMap::new(),
            resolved_retention_ms: DEFAULT_RESOLVED_RETENTION_MS,
            generator_url: String::new(),
        })
    }

    /// How long resolved alerts stay listed before they are forgotten.
    pub fn with_resolved_retention_ms(mut self, ms: i64) -> Self {
        self.resolved_retention_ms = ms.max(0);
        self
    }

    /// The `generatorURL` of each alert: `{rule}` in `template` is replaced by the URL-encoded
    /// rule name (e.g. `http://127.0.0.1:5000/alerts?rule={rule}`). Empty by default.
    pub fn with_generator_url(mut self, template: impl Into<String>) -> Self {
        self.generator_url = template.into();
        self
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Every known alert (pending, firing, recently resolved), by fingerprint.
    pub fn alerts(&self) -> impl Iterator<Item = &Alert> {
        self.alerts.values()
    }

    pub fn alert(&self, fingerprint: &str) -> Option<&Alert> {
        self.alerts.get(fingerprint)
    }

    pub fn state(&self) -> EvaluatorState {
        EvaluatorState {
            alerts: self.alerts.values().cloned().collect(),
        }
    }

    /// Replaces the alerts with persisted ones. Alerts of rules that no longer exist are dropped
    /// at the next evaluation (firing ones resolve).
    pub fn restore(&mut self, state: EvaluatorState) {
        self.alerts = state
            .alerts
            .into_iter()
            .map(|a| (a.fingerprint.clone(), a))
            .collect();
    }

    fn generator_url_for(&self, rule: &str) -> String {
        if self.generator_url.is_empty() {
            return String::new();
        }
        let encoded: String = url::form_urlencoded::byte_serialize(rule.as_bytes()).collect();
        self.generator_url.replace("{rule}", &encoded)
    }

    /// Evaluates every rule on every series of `indicators` at `now_ms` and advances the alerts.
    /// Returns the state changes, in rule order.
    pub fn evaluate(&mut self, indicators: &Indicators, now_ms: i64) -> Vec<Transition> {
        let mut transitions = Vec::new();
        let mut seen: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
        let rules = std::mem::take(&mut self.rules);
        for rule in &rules {
            for (series, values) in indicators.series() {
                let outcome = rule.expr().eval(series, values);
                if outcome.truth != Truth::True {
                    continue;
                }
                let labels = series.merged(rule.labels());
                let fp = labels.fingerprint_hex();
                if !seen.insert(fp.clone()) {
                    tracing::warn!(
                        rule = rule.name(),
                        labels = %labels,
                        "two series give the same alert labels; evaluating the first only"
                    );
                    continue;
                }
                let annotations = rule.render_annotations(&labels, outcome.value);
                let existing = self
                    .alerts
                    .get_mut(&fp)
                    .filter(|a| a.state != AlertState::Resolved);
                match existing {
                    Some(a) => {
                        a.value = outcome.value;
                        a.annotations = annotations;
                        a.last_eval_ms = now_ms;
                        if a.state == AlertState::Pending
                            && now_ms - a.active_at_ms >= rule.for_ms()
                        {
                            a.state = AlertState::Firing;
                            a.starts_at_ms = Some(now_ms);
                            transitions.push(transition(a, Some(AlertState::Pending), now_ms));
                        }
                    }
                    None => {
                        let previous = self.alerts.get(&fp).map(|a| a.state);
                        let state = if rule.for_ms() == 0 {
                            AlertState::Firing
                        } else {
                            AlertState::Pending
                        };
                        let a = Alert {
                            rule: rule.name().to_string(),
                            fingerprint: fp.clone(),
                            labels,
                            annotations,
                            state,
                            active_at_ms: now_ms,
                            starts_at_ms: (state == AlertState::Firing).then_some(now_ms),
                            ends_at_ms: None,
                            value: outcome.value,
                            last_eval_ms: now_ms,
                            generator_url: self.generator_url_for(rule.name()),
                        };
                        transitions.push(transition(&a, previous, now_ms));
                        self.alerts.insert(fp, a);
                    }
                }
            }
        }
        self.rules = rules;

        // Alerts whose condition did not hold this time.
        let mut forget = Vec::new();
        for (fp, a) in self.alerts.iter_mut() {
            if seen.contains(fp) {
                continue;
            }
            match a.state {
                AlertState::Pending => {
                    transitions.push(Transition {
                        to: None,
                        ..transition(a, Some(AlertState::Pending), now_ms)
                    });
                    forget.push(fp.clone());
                }
                AlertState::Firing => {
                    a.state = AlertState::Resolved;
                    a.ends_at_ms = Some(now_ms);
                    a.last_eval_ms = now_ms;
                    transitions.push(transition(a, Some(AlertState::Firing), now_ms));
                }
                AlertState::Resolved => {
                    let ended = a.ends_at_ms.unwrap_or(a.last_eval_ms);
                    if now_ms - ended >= self.resolved_retention_ms {
                        transitions.push(Transition {
                            to: None,
                            ..transition(a, Some(AlertState::Resolved), now_ms)
                        });
                        forget.push(fp.clone());
                    }
                }
            }
        }
        for fp in forget {
            self.alerts.remove(&fp);
        }
        transitions
    }
}

fn transition(a: &Alert, from: Option<AlertState>, at_ms: i64) -> Transition {
    Transition {
        rule: a.rule.clone(),
        fingerprint: a.fingerprint.clone(),
        labels: a.labels.clone(),
        from,
        to: Some(a.state),
        at_ms,
    }
}
