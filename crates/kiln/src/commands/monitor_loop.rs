//! The monitor inside `kiln serve --monitor`: every interval it samples the data plane's
//! counters per model version, turns them into windowed indicators (latency quantiles, error
//! and request rates, SLO burn rates), evaluates the `[monitor.NAME]` alert rules and the
//! SLOs' burn-rate rules, sends notifications, opens an incident for each page-level alert,
//! records traffic changes and alerts on the timeline, and rolls a canary back to 0% when it
//! breaches its `[deploy.NAME].canary.rollback_when`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use kiln_monitor::alert::{
    AlertEngine, AlertState, AlertingConfig, RouteConfig, Severity, Silences,
};
use kiln_monitor::clock::Clock;
use kiln_monitor::config::{DeployConfig, MonitorConfig};
use kiln_monitor::expr::{Expr, Truth};
use kiln_monitor::indicator::{Indicators, Labels, names};
use kiln_monitor::slo::{SloSpec, SloTracker};
use kiln_monitor::window::{CounterSample, SeriesWindow, WindowIndicators};
use kiln_serve::ServeState;
use kiln_serve::traffic::TrafficSpec;
use kiln_store::{AliasMove, Expect, NewEvent, NewIncident, Store};
use serde_json::{Value, json};

use super::incidents::parse_duration_ms;

/// A registered version served under a name: (name, model, version, reference).
pub type Served = (String, String, String, String);

/// One monitored name.
struct Watch {
    name: String,
    deploy: DeployConfig,
    window_ms: i64,
    canary_window_ms: i64,
    rollback_when: Vec<Expr>,
    engine: Option<AlertEngine>,
    slos: Option<SloTracker>,
    /// SLO name → (latency threshold in ms for latency SLOs).
    slo_thresholds: BTreeMap<String, Option<f64>>,
    series: BTreeMap<String, SeriesWindow>,
    last_traffic: Option<TrafficSpec>,
    /// The last counters fed to the SLO tracker, per version.
    slo_seen: BTreeMap<String, CounterSample>,
    /// Model health from the prediction log (with `--prediction-log`).
    health: HealthWatch,
    /// `{"deploy": …, "monitor": …}` as configured: compared with the last run's at start.
    config: Value,
    /// The last model-health indicators (drift per deployment, realised metrics per
    /// version), included in every tick until the next assessment.
    health_values: Indicators,
}

/// When and how model health is assessed.
struct HealthWatch {
    every_ms: i64,
    /// How far back the prediction log is read.
    span_ms: i64,
    /// Only the last this many logged rows (`[monitor.NAME].drift.rows`).
    rows: Option<usize>,
    /// Fewer rows than this are not compared for drift.
    min_rows: usize,
    drift: kiln_data::drift::DriftOptions,
    last_ms: Option<i64>,
    /// Whether the last assessment saw dataset drift (None: not compared).
    drifting: Option<bool>,
}

pub struct Monitor {
    state: Arc<ServeState>,
    store: Store,
    /// Where `kiln serve --prediction-log` writes: read back for drift and realised metrics.
    prediction_log: Option<kiln_store::ArtifactStore>,
    clock: Arc<dyn Clock>,
    served: Vec<Served>,
    watches: Vec<Watch>,
    pub interval: Duration,
}

const ACTOR: &str = "kiln monitor";

/// Checks `[deploy.NAME]` and `[monitor.NAME]` as `kiln serve --monitor` will read them
/// (durations, expressions, SLOs, alert rules and routes, drift options), without serving.
pub fn check_config(
    name: &str,
    deploy: Option<&DeployConfig>,
    monitor: &MonitorConfig,
) -> anyhow::Result<()> {
    let clock: Arc<dyn Clock> = Arc::new(kiln_monitor::clock::SystemClock);
    build_watch(
        name,
        deploy.cloned().unwrap_or_default(),
        monitor.clone(),
        &clock,
    )?;
    Ok(())
}

/// What the monitor watches of one served name, from its sections of the project file;
/// also returns its evaluation interval in milliseconds.
fn build_watch(
    name: &str,
    deploy: DeployConfig,
    monitor: MonitorConfig,
    clock: &Arc<dyn Clock>,
) -> anyhow::Result<(Watch, i64)> {
    let dur = |field: &str, v: &Option<String>, default: i64| -> anyhow::Result<i64> {
        match v {
            None => Ok(default),
            Some(s) => parse_duration_ms(s).filter(|ms| *ms > 0).with_context(|| {
                format!("[monitor.{name}].{field} = {s:?}: expected a duration like 5s, 1m, 1h")
            }),
        }
    };
    let every = dur("interval", &monitor.interval, 5_000)?;
    let window_ms = dur("window", &monitor.window, 60_000)?;
    let (canary_window_ms, rollback_when) = match &deploy.canary {
        None => (0, vec![]),
        Some(c) => {
            let w = parse_duration_ms(&c.window)
                .filter(|ms| *ms > 0)
                .with_context(|| {
                    format!(
                        "[deploy.{name}].canary.window = {:?}: expected a duration like 30s",
                        c.window
                    )
                })?;
            let mut exprs = vec![];
            for (i, src) in c.rollback_when.iter().enumerate() {
                exprs.push(Expr::parse(src).map_err(|e| {
                    anyhow::anyhow!("[deploy.{name}].canary.rollback_when[{i}] = {src:?}: {e}")
                })?);
            }
            (w, exprs)
        }
    };
    // SLOs from the shorthand.
    let mut slo_specs = vec![];
    let mut slo_thresholds = BTreeMap::new();
    if let Some(slo) = &deploy.slo {
        if let Some(ms) = slo.p99_ms {
            let mut s = SloSpec::from_shorthand(name, "p99_ms", ms)
                .map_err(|e| anyhow::anyhow!("[deploy.{name}].slo.p99_ms: {e}"))?;
            if let Some(days) = slo.period_days {
                s.period_ms = (days * 86_400_000.0) as i64;
            }
            s.runbook = Some("runbooks/high-latency.md".into());
            slo_thresholds.insert(s.name.clone(), Some(ms));
            slo_specs.push(s);
        }
        if let Some(pct) = slo.availability {
            let mut s = SloSpec::from_shorthand(name, "availability", pct)
                .map_err(|e| anyhow::anyhow!("[deploy.{name}].slo.availability: {e}"))?;
            if let Some(days) = slo.period_days {
                s.period_ms = (days * 86_400_000.0) as i64;
            }
            s.runbook = Some("runbooks/errors.md".into());
            slo_thresholds.insert(s.name.clone(), None);
            slo_specs.push(s);
        }
    }
    let slos = if slo_specs.is_empty() {
        None
    } else {
        Some(
            SloTracker::new(slo_specs, clock.clone())
                .map_err(|e| anyhow::anyhow!("[deploy.{name}].slo: {e}"))?,
        )
    };
    let mut rules = monitor.alerts.clone();
    if let Some(t) = &slos {
        rules.extend(t.alert_rules());
    }
    let engine = if rules.is_empty() {
        None
    } else {
        if monitor.receivers.is_empty() && !monitor.alerts.is_empty() {
            tracing::warn!(deployment = %name, "alert rules without receivers: alerts are recorded, not sent");
        }
        let route = match &monitor.route {
            Some(r) => r.clone(),
            None => {
                let mut r = RouteConfig::to_receiver(
                    monitor
                        .receivers
                        .first()
                        .map_or(placeholder_receiver().name, |r| r.name.clone()),
                );
                r.group_by = Some(vec!["alertname".into(), "deployment".into()]);
                r
            }
        };
        let mut cfg = AlertingConfig::new(rules, placeholder_receiver());
        cfg.route = route;
        cfg.receivers = if monitor.receivers.is_empty() {
            vec![placeholder_receiver()]
        } else {
            monitor.receivers.clone()
        };
        Some(
            AlertEngine::new(&cfg, clock.clone())
                .map_err(|e| anyhow::anyhow!("[monitor.{name}]: {e}"))?,
        )
    };
    let drift_cfg = monitor.drift.clone().unwrap_or_default();
    let health = HealthWatch {
        every_ms: dur("drift.every", &drift_cfg.every, 60_000)?,
        span_ms: dur("drift.window", &drift_cfg.window, 3_600_000)?,
        rows: drift_cfg.rows.filter(|r| *r > 0),
        min_rows: drift_cfg.min_rows.unwrap_or(100).max(1),
        drift: drift_cfg
            .options()
            .map_err(|e| anyhow::anyhow!("[monitor.{name}].{e}"))?,
        last_ms: None,
        drifting: None,
    };
    let config = json!({"deploy": deploy, "monitor": monitor});
    let watch = Watch {
        name: name.to_string(),
        health,
        config,
        health_values: Indicators::new(),
        deploy,
        window_ms,
        canary_window_ms,
        rollback_when,
        engine,
        slos,
        slo_thresholds,
        series: BTreeMap::new(),
        last_traffic: None,
        slo_seen: BTreeMap::new(),
    };
    Ok((watch, every))
}

impl Monitor {
    /// Builds the monitor for every served name that has a `[deploy.NAME]` or
    /// `[monitor.NAME]` section. Bad expressions, durations and SLOs are errors naming the
    /// section and field.
    pub fn new(
        state: Arc<ServeState>,
        store: Store,
        clock: Arc<dyn Clock>,
        served: Vec<Served>,
        deploys: &BTreeMap<String, DeployConfig>,
        monitors: &BTreeMap<String, MonitorConfig>,
        interval_override: Option<Duration>,
    ) -> anyhow::Result<Monitor> {
        let mut watches = vec![];
        let mut interval: Option<i64> = None;
        let mut names: Vec<&String> = deploys.keys().chain(monitors.keys()).collect();
        names.sort();
        names.dedup();
        for name in names {
            if state.endpoint(name).is_none() {
                tracing::warn!(deployment = %name, "configured for monitoring but not served here");
                continue;
            }
            let deploy = deploys.get(name).cloned().unwrap_or_default();
            let monitor = monitors.get(name).cloned().unwrap_or_default();
            let (watch, every) = build_watch(name, deploy, monitor, &clock)?;
            interval = Some(interval.map_or(every, |i| i.min(every)));
            watches.push(watch);
        }
        if watches.is_empty() {
            bail!(
                "--monitor: no served name has a [deploy.NAME] or [monitor.NAME] section in the \
                 project file"
            );
        }
        let interval = interval_override
            .unwrap_or_else(|| Duration::from_millis(interval.unwrap_or(5_000) as u64));
        Ok(Monitor {
            state,
            store,
            prediction_log: None,
            clock,
            served,
            watches,
            interval,
        })
    }

    /// Passes each deployment's configuration (stored, and shown in `config` events)
    /// through `redact`, so values taken from the environment are never stored.
    pub fn redact_configs(mut self, redact: impl Fn(Value) -> Value) -> Monitor {
        for w in &mut self.watches {
            w.config = redact(std::mem::take(&mut w.config));
        }
        self
    }

    /// Reads the prediction log in `store` for model health (drift against the served
    /// version's training profile, realised metrics from feedback).
    pub fn with_prediction_log(mut self, store: kiln_store::ArtifactStore) -> Monitor {
        self.prediction_log = Some(store);
        self
    }

    /// Runs until `stop` resolves.
    pub async fn run(mut self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => return,
            }
            if let Err(e) = self.tick().await {
                tracing::warn!(error = %format!("{e:#}"), "monitor tick failed");
            }
        }
    }

    /// One evaluation of every watched name.
    pub async fn tick(&mut self) -> anyhow::Result<()> {
        let now = self.clock.now_ms();
        for i in 0..self.watches.len() {
            self.tick_one(i, now).await?;
        }
        Ok(())
    }

    async fn tick_one(&mut self, i: usize, now: i64) -> anyhow::Result<()> {
        let name = self.watches[i].name.clone();
        let Some(ep) = self.state.endpoint(&name) else {
            return Ok(());
        };
        // Traffic changes (the API, a repository load, a rollback) go on the timeline.
        let traffic = ep.traffic();
        let summary = match &self.watches[i].last_traffic {
            None => Some(format!(
                "monitoring starts; traffic of `{name}` is {}",
                show_weights(&traffic.weights)
            )),
            Some(t) if *t != traffic => Some(format!(
                "traffic of `{name}` set to {}",
                show_weights(&traffic.weights)
            )),
            Some(_) => None,
        };
        if self.watches[i].last_traffic.is_none() {
            self.config_event(i, now).await;
        }
        if let Some(summary) = summary {
            self.event(
                now,
                "traffic",
                &name,
                "kiln serve",
                summary,
                json!({"weights": traffic.weights, "shadow": traffic.shadow}),
            )
            .await;
        }
        self.watches[i].last_traffic = Some(traffic.clone());

        // Silences come from `kiln alerts silence`, through the store.
        let silences = match self.store.monitor_state(&format!("silences/{name}")).await {
            Ok(Some(v)) => serde_json::from_value::<Silences>(v).ok(),
            _ => None,
        };

        self.refresh_health(i, now).await;

        // Sample every version's counters.
        let mut indicators = Indicators::new();
        let w = &mut self.watches[i];
        if let (Some(engine), Some(silences)) = (&mut w.engine, silences) {
            let mut st = engine.state();
            st.silences = silences;
            engine.restore(st);
        }
        let keep = (w.window_ms.max(w.canary_window_ms)).max(1) * 2;
        let mut by_version: BTreeMap<String, (Labels, Option<WindowIndicators>)> = BTreeMap::new();
        for v in ep.versions() {
            let m = self.state.metrics.version(&name, &v);
            let snap = m.latency_snapshot();
            let sample = CounterSample {
                at_ms: now,
                requests: m.requests.load(std::sync::atomic::Ordering::Relaxed),
                server_errors: m.server_errors.load(std::sync::atomic::Ordering::Relaxed),
                bounds_s: snap.bounds.to_vec(),
                buckets: snap.counts.clone(),
                latency_count: snap.count,
            };
            // SLO good/bad counts since the last tick.
            if let Some(t) = &mut w.slos {
                let labels =
                    Labels::from_pairs([("deployment", name.as_str()), ("version", v.as_str())]);
                if let Some(prev) = w.slo_seen.get(&v)
                    && sample.requests >= prev.requests
                    && sample.latency_count >= prev.latency_count
                {
                    for (slo, threshold) in &w.slo_thresholds {
                        let (total, bad) = match threshold {
                            Some(ms) => (
                                sample.latency_count - prev.latency_count,
                                slow(&sample, *ms).saturating_sub(slow(prev, *ms)),
                            ),
                            None => (
                                sample.requests - prev.requests,
                                sample.server_errors.saturating_sub(prev.server_errors),
                            ),
                        };
                        if total > 0 {
                            let _ = t.record(slo, &labels, total.saturating_sub(bad), bad);
                        }
                    }
                }
                w.slo_seen.insert(v.clone(), sample.clone());
            }
            let series = w
                .series
                .entry(v.clone())
                .or_insert_with(|| SeriesWindow::new(keep));
            series.push(sample);
            let labels =
                Labels::from_pairs([("deployment", name.as_str()), ("version", v.as_str())]);
            let wi = series.indicators(w.window_ms, None);
            if let Some(wi) = &wi {
                for (k, v) in values(wi) {
                    indicators.set(&labels, k, v);
                }
            }
            by_version.insert(v.clone(), (labels, wi));
        }
        if let Some(t) = &w.slos {
            let slo = t.indicators();
            // Kept for `kiln monitor report`: where each SLO stands.
            let doc: Vec<Value> = slo
                .series()
                .map(|(l, v)| json!({"labels": l, "values": v}))
                .collect();
            if let Err(e) = self
                .store
                .put_monitor_state(&format!("slo/{name}"), json!({"at": now, "series": doc}))
                .await
            {
                tracing::warn!(error = %e, "cannot save the SLO state");
            }
            indicators.extend(slo);
        }
        indicators.extend(w.health_values.clone());

        // Alerts.
        let mut opened = vec![];
        if let Some(engine) = &mut w.engine {
            let report = engine.tick(&indicators).await;
            let alerts = engine.alerts();
            for t in report.transitions {
                let Some(a) = alerts.iter().find(|a| a.alert.fingerprint == t.fingerprint) else {
                    continue;
                };
                // Several rules may share a name (an SLO's burn windows): the alert's own
                // severity label says which fired.
                let severity = a.alert.labels.get("severity").map(str::to_string);
                opened.push((t.clone(), a.alert.clone(), severity));
            }
        }
        for (t, alert, severity) in opened {
            let labels: BTreeMap<&str, &str> = t.labels.iter().collect();
            match t.to {
                Some(AlertState::Firing) => {
                    let value = alert
                        .value
                        .map_or("no value".to_string(), |v| format!("{v:.4}"));
                    self.event(
                        now,
                        "alert",
                        &name,
                        ACTOR,
                        format!("{} firing ({value}) on {labels:?}", t.rule),
                        json!({"rule": t.rule, "labels": labels, "value": alert.value, "fingerprint": t.fingerprint}),
                    )
                    .await;
                    if severity.as_deref() == Some(Severity::Page.as_str()) {
                        let runbook = alert.annotations.get("runbook_url").cloned();
                        let evidence = json!({
                            "alert": t.rule,
                            "labels": labels,
                            "value": alert.value,
                            "annotations": alert.annotations,
                            "indicators": series_values(&indicators, &t.labels),
                        });
                        self.incident(
                            now,
                            &name,
                            format!("{} firing", t.rule),
                            "page",
                            &t.fingerprint,
                            runbook,
                            evidence,
                        )
                        .await;
                    }
                }
                Some(AlertState::Resolved) => {
                    self.event(
                        now,
                        "alert",
                        &name,
                        ACTOR,
                        format!("{} resolved on {labels:?}", t.rule),
                        json!({"rule": t.rule, "labels": labels, "fingerprint": t.fingerprint}),
                    )
                    .await;
                }
                _ => {}
            }
        }
        if let Some(engine) = &self.watches[i].engine {
            let state = serde_json::to_value(engine.state()).unwrap_or(Value::Null);
            if let Err(e) = self
                .store
                .put_monitor_state(&format!("alerts/{name}"), state)
                .await
            {
                tracing::warn!(error = %e, "cannot save the alert state");
            }
        }

        // Canary judgement.
        self.judge_canaries(i, now, &traffic, &by_version).await;
        Ok(())
    }

    async fn judge_canaries(
        &mut self,
        i: usize,
        now: i64,
        traffic: &TrafficSpec,
        by_version: &BTreeMap<String, (Labels, Option<WindowIndicators>)>,
    ) {
        let w = &self.watches[i];
        let Some(canary) = &w.deploy.canary else {
            return;
        };
        let live: Vec<(&String, u32)> = traffic
            .weights
            .iter()
            .filter(|(_, w)| **w > 0)
            .map(|(v, w)| (v, *w))
            .collect();
        if live.len() < 2 {
            return;
        }
        // The stable version takes the largest share (the lowest number on a tie).
        let stable = live
            .iter()
            .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(a.0)))
            .map(|(v, _)| (*v).clone())
            .unwrap_or_default();
        let name = w.name.clone();
        for (version, weight) in live.iter().filter(|(v, _)| **v != stable) {
            let Some(series) = w.series.get(*version) else {
                continue;
            };
            let Some(wi) = series.indicators(w.canary_window_ms, None) else {
                continue;
            };
            if wi.requests < canary.min_requests {
                continue;
            }
            let labels = by_version
                .get(*version)
                .map(|(l, _)| l.clone())
                .unwrap_or_default();
            let mut vals: BTreeMap<String, f64> = values(&wi)
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect();
            // Model health of the canary (realised metrics), and the deployment's drift.
            for (l, hv) in w.health_values.series() {
                if l.get("version").is_none_or(|v| v == version.as_str()) {
                    for (k, x) in hv {
                        vals.entry(k.clone()).or_insert(*x);
                    }
                }
            }
            let breached = w
                .rollback_when
                .iter()
                .find(|e| e.eval(&labels, &vals).truth == Truth::True);
            let Some(cond) = breached else { continue };
            let cond = cond.source().to_string();
            let stable_vals = w
                .series
                .get(&stable)
                .and_then(|s| s.indicators(w.canary_window_ms, None))
                .map(|s| json!(values(&s).into_iter().collect::<BTreeMap<_, _>>()));
            let mut after = traffic.weights.clone();
            after.insert((*version).clone(), 0);
            *after.entry(stable.clone()).or_insert(0) += weight;
            let spec = TrafficSpec {
                weights: after.clone(),
                shadow: traffic.shadow.clone(),
            };
            if let Err(e) = self.state.set_traffic(&name, &spec) {
                tracing::error!(deployment = %name, error = %e, "automatic rollback: cannot set traffic");
                continue;
            }
            tracing::warn!(deployment = %name, canary = %version, condition = %cond, "canary breached its rollback condition: back to 0%");
            self.watches[i].last_traffic = Some(spec.clone());
            let evidence = json!({
                "canary": version,
                "stable": stable,
                "condition": cond,
                "canary_indicators": vals,
                "stable_indicators": stable_vals,
                "window_ms": wi.window_ms,
                "weights_before": traffic.weights,
                "weights_after": after,
            });
            self.event(
                now,
                "rollback",
                &name,
                ACTOR,
                format!(
                    "canary v{version} of `{name}` breached `{cond}`: traffic {} → {}",
                    show_weights(&traffic.weights),
                    show_weights(&after)
                ),
                evidence.clone(),
            )
            .await;
            let alias_note = self.move_alias_back(&name, version, &cond).await;
            let mut evidence = evidence;
            evidence["alias"] = alias_note;
            self.incident(
                now,
                &name,
                format!("CanaryRolledBack: v{version} of {name} breached {cond}"),
                "page",
                &format!("canary-rollback/{name}/{version}/{now}"),
                Some("runbooks/rollback.md".into()),
                evidence,
            )
            .await;
            return;
        }
    }

    /// When the canary was loaded through an alias that still points at it, moves the alias
    /// back to its previous holder.
    async fn move_alias_back(&self, name: &str, version: &str, cond: &str) -> Value {
        let Some((_, model, registered, reference)) = self
            .served
            .iter()
            .find(|(n, _, v, _)| n == name && v == version)
        else {
            return Value::Null;
        };
        let Some((_, alias)) = reference.rsplit_once('@') else {
            return Value::Null;
        };
        let holder = match self.store.alias_holder(model, alias).await {
            Ok(h) => h,
            Err(e) => return json!({"error": e.to_string()}),
        };
        if holder.map(|h| h.to_string()).as_deref() != Some(registered.as_str()) {
            return json!({"alias": alias, "moved": false, "why": "the alias no longer points at the canary"});
        }
        let previous = match self.store.rollback_target(model, alias).await {
            Ok((_, p)) => p,
            Err(e) => return json!({"alias": alias, "moved": false, "why": e.to_string()}),
        };
        let mv = AliasMove {
            name: model.clone(),
            alias: alias.to_string(),
            version: previous.to_string(),
            expect: Expect::Holder(holder),
            action: "rollback".into(),
            actor: ACTOR.into(),
            reason: Some(format!("automatic rollback: the canary breached `{cond}`")),
            refuse_archived: false,
            evaluation: None,
        };
        match self.store.move_alias(mv).await {
            Ok(_) => {
                json!({"alias": alias, "moved": true, "from": registered, "to": previous.to_string()})
            }
            Err(e) => json!({"alias": alias, "moved": false, "why": e.to_string()}),
        }
    }

    /// At start: records a `config` event when the deployment's `[deploy]`/`[monitor]`
    /// sections differ from what the last monitor of this name ran with (or were never seen).
    async fn config_event(&self, i: usize, now: i64) {
        let w = &self.watches[i];
        let key = format!("config/{}", w.name);
        let before = self.store.monitor_state(&key).await.ok().flatten();
        if before.as_ref() == Some(&w.config) {
            return;
        }
        let changed: Vec<String> = match &before {
            None => vec![],
            Some(old) => {
                let mut keys = vec![];
                for section in ["deploy", "monitor"] {
                    let (a, b) = (&old[section], &w.config[section]);
                    let names: std::collections::BTreeSet<&String> = a
                        .as_object()
                        .into_iter()
                        .chain(b.as_object())
                        .flat_map(|o| o.keys())
                        .collect();
                    for k in names {
                        if a.get(k) != b.get(k) {
                            keys.push(format!("{section}.{}.{k}", w.name));
                        }
                    }
                }
                keys
            }
        };
        let summary = if before.is_none() {
            format!("monitoring configuration of `{}` first seen", w.name)
        } else {
            format!(
                "monitoring configuration of `{}` changed: {}",
                w.name,
                changed.join(", ")
            )
        };
        self.event(
            now,
            "config",
            &w.name,
            ACTOR,
            summary,
            json!({"changed": changed, "before": before, "after": w.config}),
        )
        .await;
        if let Err(e) = self.store.put_monitor_state(&key, w.config.clone()).await {
            tracing::warn!(error = %e, "cannot save the monitoring configuration");
        }
    }

    /// Assesses model health from the prediction log when it is due: input drift of the
    /// recent window against the primary version's training profile (an event when drift
    /// starts or ends), and realised metrics per version from the feedback received. The
    /// results become indicators (`drift_share`, `drift.COLUMN` on the deployment; `auc`,
    /// `accuracy`, `rmse`, … and `labelled` on each version) for rules and canary judgement.
    async fn refresh_health(&mut self, i: usize, now: i64) {
        use kiln_monitor::health::{HealthOptions, Windows, assess};
        let Some(log) = self.prediction_log.clone() else {
            return;
        };
        let w = &self.watches[i];
        if w.health
            .last_ms
            .is_some_and(|t| now - t < w.health.every_ms)
        {
            return;
        }
        let name = w.name.clone();
        let Some(ep) = self.state.endpoint(&name) else {
            return;
        };
        let primary = ep.primary().clone();
        let reference = primary.training_profile.as_ref().and_then(|v| {
            serde_json::from_value::<kiln_data::profile::Profile>((**v).clone())
                .inspect_err(|e| tracing::warn!(deployment = %name, error = %e, "the package's training profile cannot be read"))
                .ok()
        });
        let from = now - w.health.span_ms;
        let table = match kiln_monitor::predlog::read_predictions(&log, &name, from, now + 1).await
        {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(deployment = %name, error = %e, "cannot read the prediction log");
                return;
            }
        };
        let table = match w.health.rows {
            Some(n) if table.height() > n => {
                let idx: Vec<usize> = (table.height() - n..table.height()).collect();
                table.take(&idx)
            }
            _ => table,
        };
        let feedback: std::collections::HashMap<String, Value> =
            match self.store.feedback(&name).await {
                Ok(f) => f.into_iter().map(|f| (f.request_id, f.label)).collect(),
                Err(e) => {
                    tracing::warn!(deployment = %name, error = %e, "cannot read feedback");
                    return;
                }
            };
        let opts = HealthOptions {
            drift: w.health.drift.clone(),
            windows: Windows::Whole,
            min_drift_rows: w.health.min_rows,
            class_labels: primary.class_labels.clone(),
            ..HealthOptions::default()
        };
        let report = match tokio::task::spawn_blocking(move || {
            assess(&table, &feedback, reference.as_ref(), &opts, from, now + 1)
        })
        .await
        {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                tracing::warn!(deployment = %name, error = %e, "model health not assessed");
                return;
            }
            Err(e) => {
                tracing::error!(deployment = %name, error = %e, "model health assessment failed");
                return;
            }
        };
        let mut ind = Indicators::new();
        let dl = Labels::from_pairs([("deployment", name.as_str())]);
        if let Some(d) = &report.drift {
            ind.set(&dl, names::DRIFT_SHARE, d.share_drifted);
            for c in &d.columns {
                ind.set(&dl, names::drift(&c.column), c.statistic);
            }
        }
        for v in &report.versions {
            if let Some(re) = &v.realised {
                let vl = Labels::from_pairs([
                    ("deployment", name.as_str()),
                    ("version", v.version.as_str()),
                ]);
                for (k, x) in &re.metrics {
                    ind.set(&vl, k.clone(), *x);
                }
                ind.set(&vl, "labelled", re.labelled as f64);
            }
        }
        let drifting = report.drift.as_ref().map(|d| d.dataset_drift);
        let was = self.watches[i].health.drifting;
        if let Some(d) = &report.drift
            && drifting != was
            && (drifting == Some(true) || was == Some(true))
        {
            let cols: Vec<Value> = d
                .columns
                .iter()
                .filter(|c| c.drifted)
                .map(|c| json!({"column": c.column, "method": c.method.name(), "statistic": c.statistic, "threshold": c.threshold}))
                .collect();
            let summary = if d.dataset_drift {
                format!(
                    "input drift starts: {} of {} columns drifted ({}) over the last {} rows",
                    d.drifted_columns,
                    d.columns.len(),
                    d.drifted().join(", "),
                    d.current_rows
                )
            } else {
                format!(
                    "input drift ends: {} of {} columns drifted over the last {} rows",
                    d.drifted_columns,
                    d.columns.len(),
                    d.current_rows
                )
            };
            self.event(
                now,
                "drift",
                &name,
                ACTOR,
                summary,
                json!({"dataset_drift": d.dataset_drift, "share_drifted": d.share_drifted, "drift_share": d.drift_share, "drifted": cols, "rows": d.current_rows}),
            )
            .await;
        }
        let h = &mut self.watches[i].health;
        h.last_ms = Some(now);
        if drifting.is_some() {
            h.drifting = drifting;
        }
        self.watches[i].health_values = ind;
    }

    async fn event(
        &self,
        at: i64,
        kind: &str,
        subject: &str,
        actor: &str,
        summary: String,
        detail: Value,
    ) {
        let e = NewEvent {
            at,
            kind: kind.into(),
            subject: subject.into(),
            actor: actor.into(),
            summary,
            detail,
        };
        if let Err(e) = self.store.record_event(e).await {
            tracing::warn!(error = %e, "cannot record a timeline event");
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn incident(
        &self,
        at: i64,
        subject: &str,
        title: String,
        severity: &str,
        fingerprint: &str,
        runbook: Option<String>,
        evidence: Value,
    ) {
        // One open incident per alert instance.
        if let Ok(open) = self.store.incidents(true).await
            && open.iter().any(|i| i.fingerprint == fingerprint)
        {
            return;
        }
        let new = NewIncident {
            subject: subject.into(),
            title,
            severity: severity.into(),
            opened_at: at,
            fingerprint: fingerprint.into(),
            runbook,
            evidence,
        };
        match self.store.open_incident(new).await {
            Ok(i) => tracing::warn!(incident = i.id, title = %i.title, "incident opened"),
            Err(e) => tracing::error!(error = %e, "cannot open an incident"),
        }
    }
}

/// Where notifications go when no receiver is configured: nowhere (alerts are recorded).
fn placeholder_receiver() -> kiln_monitor::notify::ReceiverConfig {
    kiln_monitor::notify::ReceiverConfig::record_only()
}

fn values(wi: &WindowIndicators) -> Vec<(&'static str, f64)> {
    let mut out = vec![
        (names::REQUEST_RATE, wi.request_rate),
        ("requests", wi.requests as f64),
    ];
    if let Some(e) = wi.error_rate {
        out.push((names::ERROR_RATE, e));
    }
    for (k, v) in [
        (names::P50_MS, wi.p50_ms),
        (names::P90_MS, wi.p90_ms),
        (names::P99_MS, wi.p99_ms),
    ] {
        if let Some(v) = v {
            out.push((k, v));
        }
    }
    out
}

fn series_values(ind: &Indicators, labels: &Labels) -> Value {
    for (l, vals) in ind.series() {
        if labels
            .iter()
            .all(|(k, v)| k == "alertname" || k == "severity" || l.get(k) == Some(v))
            && !l.is_empty()
        {
            return json!(
                vals.iter()
                    .filter(|(_, v)| v.is_finite())
                    .map(|(k, v)| (k.clone(), *v))
                    .collect::<BTreeMap<_, _>>()
            );
        }
    }
    Value::Null
}

/// Requests of a sample slower than `ms` (by whole buckets).
fn slow(s: &CounterSample, ms: f64) -> u64 {
    let at_or_below: u64 = s
        .bounds_s
        .iter()
        .zip(&s.buckets)
        .filter(|(b, _)| **b * 1e3 <= ms)
        .map(|(_, c)| c)
        .sum();
    s.latency_count.saturating_sub(at_or_below)
}

fn show_weights(w: &BTreeMap<String, u32>) -> String {
    let parts: Vec<String> = w.iter().map(|(v, w)| format!("v{v}:{w}")).collect();
    parts.join(",")
}
