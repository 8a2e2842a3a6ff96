//! The monitoring sections of `kiln.toml`: `[deploy.NAME]` (its SLO and canary policy) and
//! `[monitor.NAME]` (prediction log, drift, alert rules, receivers). Parsed strictly: an
//! unknown key is an error naming it.

use serde::{Deserialize, Serialize};

use crate::alert::{RouteConfig, RuleSpec};
use crate::notify::ReceiverConfig;

/// `[deploy.NAME]`: what a deployment promises and how its canaries are judged.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployConfig {
    /// What is served (`delay@champion`, a package folder, an `.onnx` file).
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub slo: Option<SloConfig>,
    #[serde(default)]
    pub canary: Option<CanaryConfig>,
}

/// `slo = { p99_ms = 20, availability = 99.9 }` over a 30-day period.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SloConfig {
    /// Requests slower than this many milliseconds count against the latency objective…
    #[serde(default)]
    pub p99_ms: Option<f64>,
    /// …which allows this share of slow requests, in percent (default 1%: a p99 objective).
    #[serde(default)]
    pub latency_target: Option<f64>,
    /// Percent of requests answered without a server error (5xx, 429, timeouts).
    #[serde(default)]
    pub availability: Option<f64>,
    /// The SLO period in days (default 30).
    #[serde(default)]
    pub period_days: Option<f64>,
}

/// `canary = { percent = 10, rollback_when = ["error_rate > 0.01", "p99_ms > 20"] }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanaryConfig {
    /// The canary's share of traffic when it starts.
    #[serde(default = "default_percent")]
    pub percent: u32,
    /// `when` expressions over the canary version's own indicators (`p99_ms`, `error_rate`,
    /// `request_rate`, and the realised metrics); any one true rolls it back.
    #[serde(default)]
    pub rollback_when: Vec<String>,
    /// The canary must have answered this many requests in the window before it is judged.
    #[serde(default = "default_min_requests")]
    pub min_requests: u64,
    /// The window its indicators are computed over (`"30s"`, `"5m"`).
    #[serde(default = "default_window")]
    pub window: String,
}

fn default_percent() -> u32 {
    10
}
fn default_min_requests() -> u64 {
    20
}
fn default_window() -> String {
    "30s".into()
}

/// `[monitor.NAME]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonitorConfig {
    /// How often indicators are computed and rules evaluated (`"5s"`; default 5 s).
    #[serde(default)]
    pub interval: Option<String>,
    /// The window of the latency, error and rate indicators (default `"1m"`).
    #[serde(default)]
    pub window: Option<String>,
    #[serde(default)]
    pub drift: Option<DriftConfig>,
    #[serde(default)]
    pub alerts: Vec<RuleSpec>,
    /// Alertmanager-compatible webhooks notifications go to.
    #[serde(default)]
    pub receivers: Vec<ReceiverConfig>,
    /// Grouping and routing (Alertmanager's route); default: every alert to the first
    /// receiver, grouped by alert name and deployment.
    #[serde(default)]
    pub route: Option<RouteConfig>,
}

/// `drift = { share = 0.5, window = "1h", method = "auto" }`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriftConfig {
    /// Dataset drift when at least this share of columns drifted (default 0.5).
    #[serde(default)]
    pub share: Option<f64>,
    /// The live window compared with the training profile (default `"1h"`).
    #[serde(default)]
    pub window: Option<String>,
    /// Or windows of this many predictions instead of by time.
    #[serde(default)]
    pub rows: Option<usize>,
    /// `auto` (Evidently's choice per column), `ks`, `chisquare`, `wasserstein`,
    /// `jensenshannon`, `psi`.
    #[serde(default)]
    pub method: Option<String>,
    /// Only these columns (default: every input column in the profile).
    #[serde(default)]
    pub columns: Vec<String>,
    /// How often `kiln serve --monitor` assesses drift and realised metrics from the
    /// prediction log (default `"1m"`).
    #[serde(default)]
    pub every: Option<String>,
    /// Fewer logged rows than this are not compared (default 100): a handful of rows
    /// differs from any reference by chance.
    #[serde(default)]
    pub min_rows: Option<usize>,
}

impl DriftConfig {
    /// The drift options this section asks for; errors name the field (`share`, `method`).
    pub fn options(&self) -> Result<kiln_data::drift::DriftOptions, String> {
        let mut o = kiln_data::drift::DriftOptions::default();
        if let Some(share) = self.share {
            if !(share > 0.0 && share <= 1.0) {
                return Err(format!(
                    "drift.share = {share}: expected a fraction in (0, 1]"
                ));
            }
            o.drift_share = share;
        }
        if let Some(m) = self.method.as_deref().filter(|m| *m != "auto") {
            o.method = Some(
                m.parse()
                    .map_err(|e| format!("drift.method = {m:?}: {e}"))?,
            );
        }
        if !self.columns.is_empty() {
            o.columns = Some(self.columns.clone());
        }
        Ok(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        #[serde(default)]
        deploy: BTreeMap<String, DeployConfig>,
        #[serde(default)]
        monitor: BTreeMap<String, MonitorConfig>,
    }

    #[test]
    fn drift_options_come_from_the_section_and_bad_values_name_the_field() {
        let d = DriftConfig {
            share: Some(0.3),
            method: Some("psi".into()),
            columns: vec!["temp".into()],
            ..DriftConfig::default()
        };
        let o = d.options().unwrap();
        assert_eq!(o.drift_share, 0.3);
        assert_eq!(o.method, Some(kiln_data::drift::Method::Psi));
        assert_eq!(o.columns, Some(vec!["temp".to_string()]));
        let auto = DriftConfig {
            method: Some("auto".into()),
            ..DriftConfig::default()
        };
        assert_eq!(auto.options().unwrap().method, None);
        let e = DriftConfig {
            share: Some(1.5),
            ..DriftConfig::default()
        }
        .options()
        .unwrap_err();
        assert!(e.starts_with("drift.share = 1.5"), "{e}");
        let e = DriftConfig {
            method: Some("nope".into()),
            ..DriftConfig::default()
        }
        .options()
        .unwrap_err();
        assert!(e.starts_with("drift.method = \"nope\""), "{e}");
    }

    #[test]
    fn reads_the_sections_and_names_unknown_keys() {
        let f: File = toml::from_str(
            r#"
[deploy.delay]
model = "delay@champion"
slo = { p99_ms = 20, availability = 99.9 }
canary = { percent = 10, rollback_when = ["error_rate > 0.01", "p99_ms > 20"] }

[monitor.delay]
drift = { share = 0.5, window = "1h" }
receivers = [{ name = "oncall", url = "http://127.0.0.1:9093/hook" }]
alerts = [{ name = "HighLatency", when = "p99_ms > 20", for = "5m", severity = "page", runbook = "runbooks/high-latency.md" }]
"#,
        )
        .unwrap();
        let d = &f.deploy["delay"];
        assert_eq!(d.slo.as_ref().unwrap().p99_ms, Some(20.0));
        let c = d.canary.as_ref().unwrap();
        assert_eq!(
            (c.percent, c.min_requests, c.window.as_str()),
            (10, 20, "30s")
        );
        let m = &f.monitor["delay"];
        assert_eq!(m.alerts[0].for_ms, 300_000);
        assert_eq!(m.receivers[0].name, "oncall");
        let e = toml::from_str::<File>("[deploy.delay]\nslo = { p99 = 20 }\n")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("p99") && e.contains("line 2"), "{e}");
    }
}
