//! Alerting: rules over indicators, the pending → firing → resolved state machine, silences,
//! Alertmanager-style routing and grouping, and webhook notifications.
//!
//! The pieces work alone ([`Evaluator`], [`Silences`], [`Dispatcher`],
//! [`crate::notify::Notifier`]) and together in an [`AlertEngine`], which reads the time from an
//! injected [`Clock`]:
//!
//! ```text
//!   Indicators ──evaluate──► Evaluator (alerts) ──firing / resolved──► Dispatcher (groups)
//!                                                                          │ flush_due (timers)
//!                                 Silences ── filter ─────────────────────►│
//!                                                                          ▼
//!                                                    Notification ──► Notifier (POST, retries)
//! ```
//!
//! The caller (the server) calls [`AlertEngine::tick`] periodically — say every 15 seconds —
//! with a fresh [`Indicators`] snapshot, and persists [`AlertEngine::state`] if alerts,
//! silences and groups should survive a restart. To change the configuration (new rules,
//! routes, receivers), build a new engine and [`AlertEngine::restore`] the old one's state:
//! alerts of rules that are gone resolve at the next evaluation.
//!
//! Alerts can also be posted to a real Alertmanager (`alertmanagers`), as Prometheus does.
//!
//! ```toml
//! external_url = "http://127.0.0.1:5000"
//! rules = [{ name = "HighLatency", when = "p99_ms > 20", for = "5m", severity = "page",
//!            runbook = "runbooks/latency.md" }]
//! receivers = [{ name = "oncall", url = "http://127.0.0.1:9095/hook" }]
//! [route]
//! receiver = "oncall"
//! group_by = ["alertname", "deployment"]
//! routes = [{ matchers = ["severity=ticket"], receiver = "oncall", repeat_interval = "24h" }]
//! ```

pub mod dispatch;
pub mod rule;
pub mod silence;
pub mod state;
pub mod time;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use dispatch::{
    AlertGroup, Dispatcher, DispatcherState, Notification, NotifyLog, RouteConfig, RouteError,
};
pub use rule::{Rule, RuleError, RuleSpec, Severity};
pub use silence::{Silence, SilenceError, SilenceSpec, SilenceState, Silences};
pub use state::{Alert, AlertState, Evaluator, EvaluatorState, Transition};

use crate::clock::Clock;
use crate::indicator::Indicators;
use crate::notify::{
    AlertmanagerConfig, Delivery, Notifier, NotifyError, PostableAlert, ReceiverConfig, RetryPolicy,
};

fn default_resolved_retention() -> i64 {
    state::DEFAULT_RESOLVED_RETENTION_MS
}

fn default_resend_delay() -> i64 {
    60_000
}

/// Everything an [`AlertEngine`] needs, in one serde-readable block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertingConfig {
    #[serde(default)]
    pub rules: Vec<RuleSpec>,
    pub route: RouteConfig,
    pub receivers: Vec<ReceiverConfig>,
    #[serde(default)]
    pub retry: RetryPolicy,
    /// Where people reach Kiln (the payload's `externalURL`).
    #[serde(default)]
    pub external_url: String,
    /// Each alert's `generatorURL`; `{rule}` is replaced by the rule name.
    #[serde(default)]
    pub generator_url: String,
    /// How long resolved alerts stay listed (default 15m).
    #[serde(
        default = "default_resolved_retention",
        rename = "resolved_retention",
        with = "time::duration"
    )]
    pub resolved_retention_ms: i64,
    /// Real Alertmanagers that alerts are also posted to (`POST /api/v2/alerts`), as Prometheus
    /// does. Kiln's own silences and grouping do not apply there: the Alertmanager has its own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alertmanagers: Vec<AlertmanagerConfig>,
    /// How often unchanged alerts are re-posted to the Alertmanagers (default 1m); a firing
    /// alert's `endsAt` there is four times this ahead.
    #[serde(
        default = "default_resend_delay",
        rename = "resend_delay",
        with = "time::duration"
    )]
    pub resend_delay_ms: i64,
}

impl AlertingConfig {
    /// Rules sent to one receiver with the default route.
    pub fn new(rules: Vec<RuleSpec>, receiver: ReceiverConfig) -> AlertingConfig {
        AlertingConfig {
            rules,
            route: RouteConfig::to_receiver(receiver.name.clone()),
            receivers: vec![receiver],
            retry: RetryPolicy::default(),
            external_url: String::new(),
            generator_url: String::new(),
            resolved_retention_ms: default_resolved_retention(),
            alertmanagers: Vec::new(),
            resend_delay_ms: default_resend_delay(),
        }
    }
}

/// Why an [`AlertEngine`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error(transparent)]
    Rule(#[from] RuleError),
    #[error(transparent)]
    Route(#[from] RouteError),
    #[error(transparent)]
    Notify(#[from] NotifyError),
}

/// An alert as listed to users: the alert and the silences that mute it now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertStatus {
    #[serde(flatten)]
    pub alert: Alert,
    pub silenced_by: Vec<String>,
}

/// Everything an [`AlertEngine`] remembers between evaluations.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EngineState {
    pub alerts: EvaluatorState,
    pub silences: Silences,
    pub groups: DispatcherState,
}

/// What one [`AlertEngine::tick`] did.
#[derive(Debug)]
pub struct TickReport {
    pub transitions: Vec<Transition>,
    pub deliveries: Vec<(Notification, Result<Delivery, NotifyError>)>,
    /// Posts to the configured Alertmanagers, by URL.
    pub alertmanager_posts: Vec<(String, Result<Delivery, NotifyError>)>,
}

/// Rules, alerts, silences, groups and the notifier, driven by one clock.
pub struct AlertEngine {
    clock: Arc<dyn Clock>,
    evaluator: Evaluator,
    silences: Silences,
    dispatcher: Dispatcher,
    notifier: Notifier,
    resend_delay_ms: i64,
    last_alertmanager_post_ms: Option<i64>,
}

impl std::fmt::Debug for AlertEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlertEngine")
            .field("evaluator", &self.evaluator)
            .field("silences", &self.silences)
            .field("dispatcher", &self.dispatcher)
            .finish_non_exhaustive()
    }
}

impl AlertEngine {
    pub fn new(config: &AlertingConfig, clock: Arc<dyn Clock>) -> Result<AlertEngine, AlertError> {
        let evaluator = Evaluator::new(&config.rules)?
            .with_resolved_retention_ms(config.resolved_retention_ms)
            .with_generator_url(config.generator_url.clone());
        let dispatcher = Dispatcher::new(&config.route, &config.receivers, &config.external_url)?;
        let notifier = Notifier::new(&config.receivers, config.retry)?
            .with_alertmanagers(&config.alertmanagers)?;
        Ok(AlertEngine {
            clock,
            evaluator,
            silences: Silences::new(),
            dispatcher,
            notifier,
            resend_delay_ms: config.resend_delay_ms.max(1),
            last_alertmanager_post_ms: None,
        })
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Evaluates the rules on `indicators` at the clock's time and hands firing and newly
    /// resolved alerts to the dispatcher. Also drops silences expired for more than 120 h.
    pub fn evaluate(&mut self, indicators: &Indicators) -> Vec<Transition> {
        let now = self.clock.now_ms();
        let transitions = self.evaluator.evaluate(indicators, now);
        for a in self.evaluator.alerts() {
            if a.state == AlertState::Firing {
                self.dispatcher.insert(a, now);
            }
        }
        for t in &transitions {
            if t.to == Some(AlertState::Resolved)
                && let Some(a) = self.evaluator.alert(&t.fingerprint)
            {
                self.dispatcher.insert(a, now);
            }
        }
        self.silences.gc(now, silence::DEFAULT_SILENCE_RETENTION_MS);
        transitions
    }

    /// The notifications whose group timers have come (see [`Dispatcher::flush_due`]). Report
    /// each one delivered with [`Self::delivered`]; an undelivered one is sent again at its
    /// group's next flush.
    pub fn due_notifications(&mut self) -> Vec<Notification> {
        let now = self.clock.now_ms();
        self.dispatcher.flush_due(now, &self.silences)
    }

    pub fn delivered(&mut self, n: &Notification) {
        self.dispatcher.delivered(n);
    }

    /// Sends the due notifications (concurrently, each with its retries) and records the
    /// deliveries.
    pub async fn send_due(&mut self) -> Vec<(Notification, Result<Delivery, NotifyError>)> {
        let mut due = self.due_notifications();
        // Notifications to the record-only receiver are done as soon as they are due.
        due.retain(|n| {
            let record_only = n.receiver == ReceiverConfig::RECORD_ONLY;
            if record_only {
                self.dispatcher.delivered(n);
            }
            !record_only
        });
        let results = futures::future::join_all(
            due.iter()
                .map(|n| self.notifier.send(&n.receiver, &n.payload)),
        )
        .await;
        let mut out = Vec::with_capacity(due.len());
        for (n, r) in due.into_iter().zip(results) {
            match &r {
                Ok(_) => self.dispatcher.delivered(&n),
                Err(e) => {
                    tracing::warn!(group = %n.group_key, error = %e, "notification not delivered")
                }
            }
            out.push((n, r));
        }
        out
    }

    /// Posts the firing and recently resolved alerts to the configured Alertmanagers if
    /// `changed` (some alert changed state) or `resend_delay` has passed since the last post.
    pub async fn post_to_alertmanagers(
        &mut self,
        changed: bool,
    ) -> Vec<(String, Result<Delivery, NotifyError>)> {
        if self.notifier.alertmanagers().is_empty() {
            return Vec::new();
        }
        let now = self.clock.now_ms();
        let due = changed
            || self
                .last_alertmanager_post_ms
                .is_none_or(|t| now - t >= self.resend_delay_ms);
        if !due {
            return Vec::new();
        }
        let valid_until = now + 4 * self.resend_delay_ms;
        let alerts: Vec<PostableAlert> = self
            .evaluator
            .alerts()
            .filter_map(|a| PostableAlert::from_alert(a, valid_until))
            .collect();
        self.last_alertmanager_post_ms = Some(now);
        if alerts.is_empty() {
            return Vec::new();
        }
        self.notifier.post_alerts(&alerts).await
    }

    /// One round: [`Self::evaluate`], [`Self::send_due`], then
    /// [`Self::post_to_alertmanagers`].
    pub async fn tick(&mut self, indicators: &Indicators) -> TickReport {
        let transitions = self.evaluate(indicators);
        let deliveries = self.send_due().await;
        let changed = transitions
            .iter()
            .any(|t| matches!(t.to, Some(AlertState::Firing) | Some(AlertState::Resolved)));
        let alertmanager_posts = self.post_to_alertmanagers(changed).await;
        TickReport {
            transitions,
            deliveries,
            alertmanager_posts,
        }
    }

    /// Every alert (pending, firing, recently resolved) with the silences muting it.
    pub fn alerts(&self) -> Vec<AlertStatus> {
        let now = self.clock.now_ms();
        self.evaluator
            .alerts()
            .map(|a| AlertStatus {
                alert: a.clone(),
                silenced_by: self.silences.silencing(&a.labels, now),
            })
            .collect()
    }

    pub fn rules(&self) -> &[Rule] {
        self.evaluator.rules()
    }

    pub fn groups(&self) -> impl Iterator<Item = &AlertGroup> {
        self.dispatcher.groups()
    }

    /// When the next group is due (to sleep until, if it is sooner than the next evaluation).
    pub fn next_flush_ms(&self) -> Option<i64> {
        self.dispatcher.next_flush_ms()
    }

    pub fn silences(&self) -> &Silences {
        &self.silences
    }

    /// `kiln alerts silence …`: adds a silence, returns its id.
    pub fn add_silence(&mut self, spec: SilenceSpec) -> Result<String, SilenceError> {
        let now = self.clock.now_ms();
        self.silences.add(spec, now)
    }

    pub fn expire_silence(&mut self, id: &str) -> Result<(), SilenceError> {
        let now = self.clock.now_ms();
        self.silences.expire(id, now)
    }

    pub fn state(&self) -> EngineState {
        EngineState {
            alerts: self.evaluator.state(),
            silences: self.silences.clone(),
            groups: self.dispatcher.state(),
        }
    }

    pub fn restore(&mut self, state: EngineState) {
        self.evaluator.restore(state.alerts);
        self.silences = state.silences;
        self.dispatcher.restore(state.groups);
    }
}
