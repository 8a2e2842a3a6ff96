//! Routing and grouping, as Alertmanager's dispatcher does it.
//!
//! A [`RouteConfig`] tree picks the receiver of each alert: an alert enters the root, then the
//! first child whose `matchers` all hold (depth first), and further siblings too when that child
//! has `continue = true`; if no child matches, the route itself takes it. Children inherit the
//! receiver, `group_by` and timings they do not set.
//!
//! Within a route, alerts with the same values of the `group_by` labels form a *group*
//! (`group_by = ["..."]` groups by all labels, an empty list puts every alert of the route in one
//! group). A group is notified as one webhook payload:
//!
//! - `group_wait` (default 30s) after the group is created, so alerts that start together go out
//!   together;
//! - then at most every `group_interval` (default 5m), when something changed: a new firing
//!   alert, or an alert notified as firing that resolved;
//! - and, with nothing changed, again once `repeat_interval` (default 4h) has passed since the
//!   last notification while alerts still fire.
//!
//! Silenced alerts stay in their group but are left out of payloads and of the change
//! detection. A resolved alert is notified once (if the receiver has `send_resolved`) and then
//! leaves the group; an empty group is dropped. A notification that could not be delivered
//! changes nothing, so the next flush of the group (one `group_interval` later) sends it again.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::silence::Silences;
use super::state::{Alert, AlertState};
use super::time;
use crate::indicator::{Labels, Matcher, is_valid_label_name, matchers_to_string, matches_all};
use crate::notify::{ReceiverConfig, WebhookAlert, WebhookPayload};

pub const DEFAULT_GROUP_WAIT_MS: i64 = 30_000;
pub const DEFAULT_GROUP_INTERVAL_MS: i64 = 5 * 60_000;
pub const DEFAULT_REPEAT_INTERVAL_MS: i64 = 4 * 3_600_000;

/// A node of the routing tree, as written in configuration (Alertmanager's `route`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Required on the root; inherited by children that leave it out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receiver: Option<String>,
    /// All must hold for an alert to enter this route (not allowed on the root).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub matchers: Vec<Matcher>,
    /// Label names to group by; `["..."]` = all labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_by: Option<Vec<String>>,
    #[serde(
        default,
        rename = "group_wait",
        with = "time::opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub group_wait_ms: Option<i64>,
    #[serde(
        default,
        rename = "group_interval",
        with = "time::opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub group_interval_ms: Option<i64>,
    #[serde(
        default,
        rename = "repeat_interval",
        with = "time::opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub repeat_interval_ms: Option<i64>,
    /// Keep matching later siblings after this route matched.
    #[serde(default, rename = "continue")]
    pub continue_matching: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RouteConfig>,
}

impl RouteConfig {
    /// A root route sending everything to `receiver` with the default timings.
    pub fn to_receiver(receiver: impl Into<String>) -> RouteConfig {
        RouteConfig {
            receiver: Some(receiver.into()),
            ..Default::default()
        }
    }
}

/// Why a routing configuration was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("the root route needs a receiver")]
    NoRootReceiver,
    #[error("the root route must not have matchers (every alert enters it)")]
    RootMatchers,
    #[error("route {route}: unknown receiver {receiver:?}")]
    UnknownReceiver { route: String, receiver: String },
    #[error("two receivers are named {0:?}")]
    DuplicateReceiver(String),
    #[error("route {route}: invalid group_by label {label:?}")]
    InvalidGroupBy { route: String, label: String },
    #[error("route {route}: {field} must be positive")]
    NonPositive { route: String, field: &'static str },
}

#[derive(Debug, Clone, PartialEq)]
enum GroupBy {
    All,
    Labels(Vec<String>),
}

#[derive(Debug, Clone)]
struct Route {
    key: String,
    receiver: String,
    matchers: Vec<Matcher>,
    group_by: GroupBy,
    group_wait_ms: i64,
    group_interval_ms: i64,
    repeat_interval_ms: i64,
    continue_matching: bool,
    children: Vec<usize>,
}

/// What was last notified for a group: Alertmanager's notification log entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NotifyLog {
    pub firing: BTreeSet<String>,
    pub resolved: BTreeSet<String>,
    pub at_ms: i64,
}

/// An aggregation group: the alerts of one route with the same group labels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertGroup {
    /// Alertmanager's group key, `<route key>:<group labels>`, e.g.
    /// `{}/{severity="page"}:{alertname="HighLatency"}`.
    pub key: String,
    pub route_key: String,
    pub receiver: String,
    pub labels: Labels,
    /// By fingerprint.
    pub alerts: BTreeMap<String, Alert>,
    pub next_flush_ms: i64,
    pub has_flushed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_notified: Option<NotifyLog>,
}

/// The groups of a [`Dispatcher`], for persisting and restoring.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DispatcherState {
    pub groups: Vec<AlertGroup>,
}

/// A notification to deliver. After a successful delivery, hand it back with
/// [`Dispatcher::delivered`].
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub receiver: String,
    pub group_key: String,
    pub payload: WebhookPayload,
    pub flushed_at_ms: i64,
    firing: BTreeSet<String>,
    resolved: BTreeSet<String>,
    /// Resolved alerts of the group at flush time (with their `endsAt`), dropped on delivery.
    drop_resolved: Vec<(String, Option<i64>)>,
}

/// Routes alerts into groups and decides when each group is notified.
#[derive(Debug, Clone)]
pub struct Dispatcher {
    routes: Vec<Route>,
    send_resolved: BTreeMap<String, bool>,
    external_url: String,
    groups: BTreeMap<String, AlertGroup>,
}

struct Inherited<'a> {
    receiver: &'a str,
    group_by: &'a GroupBy,
    group_wait_ms: i64,
    group_interval_ms: i64,
    repeat_interval_ms: i64,
}

impl Dispatcher {
    pub fn new(
        root: &RouteConfig,
        receivers: &[ReceiverConfig],
        external_url: impl Into<String>,
    ) -> Result<Dispatcher, RouteError> {
        let mut send_resolved = BTreeMap::new();
        for r in receivers {
            if send_resolved
                .insert(r.name.clone(), r.send_resolved)
                .is_some()
            {
                return Err(RouteError::DuplicateReceiver(r.name.clone()));
            }
        }
        if root.receiver.is_none() {
            return Err(RouteError::NoRootReceiver);
        }
        if !root.matchers.is_empty() {
            return Err(RouteError::RootMatchers);
        }
        let defaults = GroupBy::Labels(Vec::new());
        let mut d = Dispatcher {
            routes: Vec::new(),
            send_resolved,
            external_url: external_url.into(),
            groups: BTreeMap::new(),
        };
        let inherited = Inherited {
            receiver: "",
            group_by: &defaults,
            group_wait_ms: DEFAULT_GROUP_WAIT_MS,
            group_interval_ms: DEFAULT_GROUP_INTERVAL_MS,
            repeat_interval_ms: DEFAULT_REPEAT_INTERVAL_MS,
        };
        d.add_route(root, None, &inherited)?;
        Ok(d)
    }

    fn add_route(
        &mut self,
        cfg: &RouteConfig,
        parent: Option<usize>,
        inh: &Inherited<'_>,
    ) -> Result<usize, RouteError> {
        let mut key = match parent {
            Some(p) => format!(
                "{}/{}",
                self.routes[p].key,
                matchers_to_string(&cfg.matchers)
            ),
            None => matchers_to_string(&cfg.matchers),
        };
        if self.routes.iter().any(|r| r.key == key) {
            key = format!("{key}#{}", self.routes.len());
        }
        let receiver = cfg.receiver.as_deref().unwrap_or(inh.receiver).to_string();
        if !self.send_resolved.contains_key(&receiver) {
            return Err(RouteError::UnknownReceiver {
                route: key,
                receiver,
            });
        }
        let group_by = match &cfg.group_by {
            None => inh.group_by.clone(),
            Some(names) if names.iter().any(|n| n == "...") => GroupBy::All,
            Some(names) => {
                if let Some(bad) = names.iter().find(|n| !is_valid_label_name(n)) {
                    return Err(RouteError::InvalidGroupBy {
                        route: key,
                        label: bad.clone(),
                    });
                }
                GroupBy::Labels(names.clone())
            }
        };
        let group_wait_ms = cfg.group_wait_ms.unwrap_or(inh.group_wait_ms);
        let group_interval_ms = cfg.group_interval_ms.unwrap_or(inh.group_interval_ms);
        let repeat_interval_ms = cfg.repeat_interval_ms.unwrap_or(inh.repeat_interval_ms);
        if group_wait_ms < 0 {
            return Err(RouteError::NonPositive {
                route: key,
                field: "group_wait",
            });
        }
        for (v, field) in [
            (group_interval_ms, "group_interval"),
            (repeat_interval_ms, "repeat_interval"),
        ] {
            if v <= 0 {
                return Err(RouteError::NonPositive { route: key, field });
            }
        }
        let idx = self.routes.len();
        self.routes.push(Route {
            key,
            receiver: receiver.clone(),
            matchers: cfg.matchers.clone(),
            group_by: group_by.clone(),
            group_wait_ms,
            group_interval_ms,
            repeat_interval_ms,
            continue_matching: cfg.continue_matching,
            children: Vec::new(),
        });
        let child_inh = Inherited {
            receiver: &receiver,
            group_by: &group_by,
            group_wait_ms,
            group_interval_ms,
            repeat_interval_ms,
        };
        for child in &cfg.routes {
            let c = self.add_route(child, Some(idx), &child_inh)?;
            self.routes[idx].children.push(c);
        }
        Ok(idx)
    }

    /// The routes an alert with `labels` goes to (Alertmanager's `Route.Match`).
    fn match_routes(&self, idx: usize, labels: &Labels, out: &mut Vec<usize>) -> bool {
        let route = &self.routes[idx];
        if !matches_all(&route.matchers, labels) {
            return false;
        }
        let before = out.len();
        for &c in &route.children {
            if self.match_routes(c, labels, out) && !self.routes[c].continue_matching {
                break;
            }
        }
        if out.len() == before {
            out.push(idx);
        }
        true
    }

    /// The receivers an alert with these labels would be sent to.
    pub fn receivers_for(&self, labels: &Labels) -> Vec<&str> {
        let mut out = Vec::new();
        self.match_routes(0, labels, &mut out);
        out.iter()
            .map(|&i| self.routes[i].receiver.as_str())
            .collect()
    }

    /// Adds or updates an alert (firing, or just resolved) in the groups of its routes.
    pub fn insert(&mut self, alert: &Alert, now_ms: i64) {
        let mut matched = Vec::new();
        self.match_routes(0, &alert.labels, &mut matched);
        for idx in matched {
            let route = &self.routes[idx];
            let labels = match &route.group_by {
                GroupBy::All => alert.labels.clone(),
                GroupBy::Labels(names) => alert.labels.subset(names.iter().map(String::as_str)),
            };
            let key = format!("{}:{}", route.key, labels);
            let group = self
                .groups
                .entry(key.clone())
                .or_insert_with(|| AlertGroup {
                    key,
                    route_key: route.key.clone(),
                    receiver: route.receiver.clone(),
                    labels,
                    alerts: BTreeMap::new(),
                    next_flush_ms: now_ms + route.group_wait_ms,
                    has_flushed: false,
                    last_notified: None,
                });
            // As Alertmanager: an alert that started more than `group_wait` ago does not wait
            // for a group's first flush.
            let started = alert.starts_at_ms.unwrap_or(alert.active_at_ms);
            if !group.has_flushed && started + route.group_wait_ms < now_ms {
                group.next_flush_ms = group.next_flush_ms.min(now_ms);
            }
            group
                .alerts
                .insert(alert.fingerprint.clone(), alert.clone());
        }
    }

    fn route_by_key(&self, key: &str) -> Option<&Route> {
        self.routes.iter().find(|r| r.key == key)
    }

    /// Flushes every group whose timer has come: returns the notifications to send now.
    pub fn flush_due(&mut self, now_ms: i64, silences: &Silences) -> Vec<Notification> {
        let mut out = Vec::new();
        let keys: Vec<String> = self
            .groups
            .values()
            .filter(|g| g.next_flush_ms <= now_ms)
            .map(|g| g.key.clone())
            .collect();
        for key in keys {
            let Some(route) = self
                .groups
                .get(&key)
                .and_then(|g| self.route_by_key(&g.route_key))
                .cloned()
            else {
                self.groups.remove(&key);
                continue;
            };
            let send_resolved = self
                .send_resolved
                .get(&route.receiver)
                .copied()
                .unwrap_or(true);
            let Some(group) = self.groups.get_mut(&key) else {
                continue;
            };
            group.next_flush_ms = now_ms + route.group_interval_ms;
            group.has_flushed = true;

            let visible: Vec<&Alert> = group
                .alerts
                .values()
                .filter(|a| !silences.is_silenced(&a.labels, now_ms))
                .collect();
            let firing: BTreeSet<String> = visible
                .iter()
                .filter(|a| a.state == AlertState::Firing)
                .map(|a| a.fingerprint.clone())
                .collect();
            let resolved: BTreeSet<String> = visible
                .iter()
                .filter(|a| a.state == AlertState::Resolved)
                .map(|a| a.fingerprint.clone())
                .collect();
            let drop_resolved: Vec<(String, Option<i64>)> = group
                .alerts
                .values()
                .filter(|a| a.state == AlertState::Resolved)
                .map(|a| (a.fingerprint.clone(), a.ends_at_ms))
                .collect();

            let any_visible = !visible.is_empty();
            let update = any_visible
                && needs_update(
                    group.last_notified.as_ref(),
                    &firing,
                    &resolved,
                    send_resolved,
                    route.repeat_interval_ms,
                    now_ms,
                );
            let mut wire: Vec<&Alert> = visible
                .into_iter()
                .filter(|a| send_resolved || a.state == AlertState::Firing)
                .collect();
            wire.sort_by(|a, b| a.labels.cmp(&b.labels));
            if !update || wire.is_empty() {
                // Nothing to send. When every alert is silenced the log is left alone (as
                // Alertmanager's mute stage stops the pipeline before the log); when only
                // resolved alerts remain for a receiver without send_resolved, the log forgets
                // the alerts that fired.
                if update {
                    group.last_notified = Some(NotifyLog {
                        firing,
                        resolved,
                        at_ms: now_ms,
                    });
                }
                for (fp, _) in &drop_resolved {
                    group.alerts.remove(fp);
                }
                if group.alerts.is_empty() {
                    self.groups.remove(&key);
                }
                continue;
            }
            let payload = WebhookPayload::new(
                &group.receiver,
                &group.key,
                group.labels.clone(),
                &self.external_url,
                wire.into_iter().map(WebhookAlert::from_alert).collect(),
            );
            out.push(Notification {
                receiver: group.receiver.clone(),
                group_key: group.key.clone(),
                payload,
                flushed_at_ms: now_ms,
                firing,
                resolved,
                drop_resolved,
            });
        }
        out
    }

    /// Records a delivered notification: the group's log now holds what was sent, and its
    /// resolved alerts (unless they changed since the flush) leave the group.
    pub fn delivered(&mut self, n: &Notification) {
        let Some(group) = self.groups.get_mut(&n.group_key) else {
            return;
        };
        group.last_notified = Some(NotifyLog {
            firing: n.firing.clone(),
            resolved: n.resolved.clone(),
            at_ms: n.flushed_at_ms,
        });
        for (fp, ends) in &n.drop_resolved {
            let unchanged = group
                .alerts
                .get(fp)
                .is_some_and(|a| a.state == AlertState::Resolved && a.ends_at_ms == *ends);
            if unchanged {
                group.alerts.remove(fp);
            }
        }
        if group.alerts.is_empty() {
            self.groups.remove(&n.group_key);
        }
    }

    /// The earliest time a group is due, to sleep until.
    pub fn next_flush_ms(&self) -> Option<i64> {
        self.groups.values().map(|g| g.next_flush_ms).min()
    }

    /// The current groups.
    pub fn groups(&self) -> impl Iterator<Item = &AlertGroup> {
        self.groups.values()
    }

    pub fn state(&self) -> DispatcherState {
        DispatcherState {
            groups: self.groups.values().cloned().collect(),
        }
    }

    /// Replaces the groups with persisted ones; groups of routes that no longer exist, or whose
    /// receiver changed, are dropped.
    pub fn restore(&mut self, state: DispatcherState) {
        self.groups = state
            .groups
            .into_iter()
            .filter(|g| {
                self.route_by_key(&g.route_key)
                    .is_some_and(|r| r.receiver == g.receiver)
            })
            .map(|g| (g.key.clone(), g))
            .collect();
    }
}

/// Alertmanager's `DedupStage.needsUpdate`.
fn needs_update(
    last: Option<&NotifyLog>,
    firing: &BTreeSet<String>,
    resolved: &BTreeSet<String>,
    send_resolved: bool,
    repeat_ms: i64,
    now_ms: i64,
) -> bool {
    let Some(last) = last else {
        return !firing.is_empty();
    };
    if !firing.is_subset(&last.firing) {
        return true;
    }
    if firing.is_empty() {
        // Everything resolved: tell the receiver only if it was told something fired.
        return !last.firing.is_empty();
    }
    if send_resolved && !resolved.is_subset(&last.resolved) {
        return true;
    }
    now_ms >= last.at_ms + repeat_ms
}
