//! Notifications: Alertmanager's webhook payload (version 4) and a [`Notifier`] that POSTs it to
//! the configured receivers, retrying with bounded exponential backoff.
//!
//! The payload is what Alertmanager's `webhook_config` receivers get, so anything that consumes
//! Alertmanager webhooks (chat bridges, incident tools, a real Alertmanager's receivers) can take
//! Kiln's notifications unchanged:
//!
//! ```json
//! { "version": "4", "groupKey": "{}:{alertname=\"HighLatency\"}", "truncatedAlerts": 0,
//!   "status": "firing", "receiver": "oncall", "groupLabels": {"alertname": "HighLatency"},
//!   "commonLabels": {…}, "commonAnnotations": {…}, "externalURL": "http://127.0.0.1:5000",
//!   "alerts": [{ "status": "firing", "labels": {…}, "annotations": {…},
//!                "startsAt": "2024-05-01T10:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
//!                "generatorURL": "…", "fingerprint": "507a62d79ee76c9a" }] }
//! ```
//!
//! [`Notifier::post_alerts`] also speaks Alertmanager's ingest API (`POST /api/v2/alerts` with
//! [`PostableAlert`]s), for teams that run their own Alertmanager.
//!
//! Delivery: a 2xx answer is success; 5xx, 429 and transport errors (refused connection,
//! timeout) are retried up to [`RetryPolicy::max_attempts`] with delays doubling from
//! `initial_backoff` up to `max_backoff`; any other status is a permanent failure (Alertmanager
//! does not retry 4xx either). Receivers may be `http://` or `https://` (rustls, with the
//! platform's root certificates).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::alert::time::{self, ZERO_TIME};
use crate::alert::{Alert, AlertState};
use crate::indicator::Labels;

/// `firing` if any alert of the notification fires, else `resolved`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotificationStatus {
    Firing,
    Resolved,
}

/// One alert in a webhook payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookAlert {
    pub status: NotificationStatus,
    pub labels: Labels,
    pub annotations: BTreeMap<String, String>,
    /// RFC 3339.
    pub starts_at: String,
    /// RFC 3339; [`ZERO_TIME`] while the alert fires.
    pub ends_at: String,
    #[serde(rename = "generatorURL")]
    pub generator_url: String,
    pub fingerprint: String,
}

impl WebhookAlert {
    /// The wire form of an alert (pending alerts are never sent; they would show as firing).
    pub fn from_alert(a: &Alert) -> WebhookAlert {
        let resolved = a.state == AlertState::Resolved;
        WebhookAlert {
            status: if resolved {
                NotificationStatus::Resolved
            } else {
                NotificationStatus::Firing
            },
            labels: a.labels.clone(),
            annotations: a.annotations.clone(),
            starts_at: time::rfc3339(a.starts_at_ms.unwrap_or(a.active_at_ms)),
            ends_at: match (resolved, a.ends_at_ms) {
                (true, Some(ms)) => time::rfc3339(ms),
                _ => ZERO_TIME.to_string(),
            },
            generator_url: a.generator_url.clone(),
            fingerprint: a.fingerprint.clone(),
        }
    }
}

/// Alertmanager's webhook payload, version 4.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookPayload {
    /// Always `"4"`.
    pub version: String,
    pub group_key: String,
    /// How many alerts were left out because of the receiver's `max_alerts`.
    pub truncated_alerts: u64,
    pub status: NotificationStatus,
    pub receiver: String,
    pub group_labels: Labels,
    pub common_labels: Labels,
    pub common_annotations: BTreeMap<String, String>,
    #[serde(rename = "externalURL")]
    pub external_url: String,
    pub alerts: Vec<WebhookAlert>,
}

impl WebhookPayload {
    /// A payload for `alerts` (at least one). Common labels and annotations are those every
    /// alert has with the same value.
    pub fn new(
        receiver: &str,
        group_key: &str,
        group_labels: Labels,
        external_url: &str,
        alerts: Vec<WebhookAlert>,
    ) -> WebhookPayload {
        let status = if alerts
            .iter()
            .any(|a| a.status == NotificationStatus::Firing)
        {
            NotificationStatus::Firing
        } else {
            NotificationStatus::Resolved
        };
        let mut common_labels = alerts.first().map(|a| a.labels.clone()).unwrap_or_default();
        let mut common_annotations = alerts
            .first()
            .map(|a| a.annotations.clone())
            .unwrap_or_default();
        for a in alerts.iter().skip(1) {
            let keep: Vec<(String, String)> = common_labels
                .iter()
                .filter(|(k, v)| a.labels.get(k) == Some(*v))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            common_labels = Labels::from_pairs(keep);
            common_annotations.retain(|k, v| a.annotations.get(k) == Some(v));
        }
        WebhookPayload {
            version: "4".to_string(),
            group_key: group_key.to_string(),
            truncated_alerts: 0,
            status,
            receiver: receiver.to_string(),
            group_labels,
            common_labels,
            common_annotations,
            external_url: external_url.to_string(),
            alerts,
        }
    }

    /// Keeps the first `max` alerts and counts the rest in `truncatedAlerts` (0 = no limit).
    pub fn truncated(&self, max: usize) -> WebhookPayload {
        let mut p = self.clone();
        if max > 0 && p.alerts.len() > max {
            p.truncated_alerts += (p.alerts.len() - max) as u64;
            p.alerts.truncate(max);
        }
        p
    }
}

/// An alert as Alertmanager's API v2 takes it (`POST /api/v2/alerts`), the way Prometheus sends
/// them: firing alerts carry an `endsAt` in the near future and are re-sent before it passes
/// (Alertmanager resolves an alert whose `endsAt` passes without a re-send); resolved alerts
/// carry the time they resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PostableAlert {
    pub labels: Labels,
    pub annotations: BTreeMap<String, String>,
    pub starts_at: String,
    pub ends_at: String,
    #[serde(rename = "generatorURL")]
    pub generator_url: String,
}

impl PostableAlert {
    /// `valid_until_ms` is the `endsAt` of a firing alert; pending alerts are not sent.
    pub fn from_alert(a: &Alert, valid_until_ms: i64) -> Option<PostableAlert> {
        let ends = match a.state {
            AlertState::Pending => return None,
            AlertState::Firing => valid_until_ms,
            AlertState::Resolved => a.ends_at_ms.unwrap_or(a.last_eval_ms),
        };
        Some(PostableAlert {
            labels: a.labels.clone(),
            annotations: a.annotations.clone(),
            starts_at: time::rfc3339(a.starts_at_ms.unwrap_or(a.active_at_ms)),
            ends_at: time::rfc3339(ends),
            generator_url: a.generator_url.clone(),
        })
    }
}

/// A real Alertmanager that alerts are posted to (it then groups, silences and notifies by its
/// own configuration).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerConfig {
    /// Base URL, e.g. `http://alertmanager:9093`.
    pub url: String,
    /// Timeout of one attempt (default 10s).
    #[serde(
        default = "default_timeout_ms",
        rename = "timeout",
        with = "crate::alert::time::duration"
    )]
    pub timeout_ms: i64,
}

impl AlertmanagerConfig {
    pub fn new(url: impl Into<String>) -> AlertmanagerConfig {
        AlertmanagerConfig {
            url: url.into(),
            timeout_ms: default_timeout_ms(),
        }
    }
}

fn default_true() -> bool {
    true
}

fn default_timeout_ms() -> i64 {
    10_000
}

/// A webhook receiver.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiverConfig {
    pub name: String,
    /// `http://…` or `https://…` URL the payload is POSTed to.
    pub url: String,
    /// Whether resolved alerts are sent (Alertmanager's `send_resolved`, default true).
    #[serde(default = "default_true")]
    pub send_resolved: bool,
    /// At most this many alerts per notification, the rest counted in `truncatedAlerts`
    /// (0 = all).
    #[serde(default)]
    pub max_alerts: usize,
    /// Timeout of one attempt (default 10s).
    #[serde(
        default = "default_timeout_ms",
        rename = "timeout",
        with = "crate::alert::time::duration"
    )]
    pub timeout_ms: i64,
}

impl ReceiverConfig {
    /// The name of the receiver that records alerts without sending them anywhere: a
    /// deployment without receivers routes to it.
    pub const RECORD_ONLY: &'static str = "(record only)";

    /// The receiver of a deployment that has none: notifications to it are marked delivered
    /// without a request.
    pub fn record_only() -> ReceiverConfig {
        ReceiverConfig::webhook(Self::RECORD_ONLY, "http://127.0.0.1/")
    }

    pub fn is_record_only(&self) -> bool {
        self.name == Self::RECORD_ONLY
    }

    pub fn webhook(name: impl Into<String>, url: impl Into<String>) -> ReceiverConfig {
        ReceiverConfig {
            name: name.into(),
            url: url.into(),
            send_resolved: true,
            max_alerts: 0,
            timeout_ms: default_timeout_ms(),
        }
    }
}

/// Retries of one delivery: `max_attempts` in all (≥ 1), waiting `initial_backoff`, then twice
/// that, … capped at `max_backoff` between attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    #[serde(rename = "initial_backoff", with = "crate::alert::time::duration")]
    pub initial_backoff_ms: i64,
    #[serde(rename = "max_backoff", with = "crate::alert::time::duration")]
    pub max_backoff_ms: i64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            initial_backoff_ms: 500,
            max_backoff_ms: 30_000,
        }
    }
}

impl RetryPolicy {
    /// The wait after failed attempt number `attempt` (1-based).
    pub fn backoff_ms(&self, attempt: u32) -> i64 {
        let factor = 1_i64
            .checked_shl(attempt.saturating_sub(1))
            .unwrap_or(i64::MAX);
        self.initial_backoff_ms
            .max(0)
            .saturating_mul(factor)
            .min(self.max_backoff_ms.max(0))
    }
}

/// Why a notification was not delivered.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("no receiver named {0:?}")]
    UnknownReceiver(String),
    #[error("receiver {receiver:?}: invalid URL: {message}")]
    InvalidUrl {
        receiver: String,
        url: String,
        message: String,
    },
    #[error("could not build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    #[error("receiver {receiver:?} refused the notification with HTTP {status}: {body}")]
    Rejected {
        receiver: String,
        status: u16,
        body: String,
    },
    #[error("receiver {receiver:?}: gave up after {attempts} attempts: {last_error}")]
    GaveUp {
        receiver: String,
        attempts: u32,
        last_error: String,
    },
}

/// A successful delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub receiver: String,
    /// Attempts it took (1 = first try).
    pub attempts: u32,
    pub status: u16,
}

/// Sends webhook payloads to the configured receivers.
#[derive(Debug, Clone)]
pub struct Notifier {
    client: reqwest::Client,
    receivers: BTreeMap<String, ReceiverConfig>,
    retry: RetryPolicy,
    alertmanagers: Vec<AlertmanagerConfig>,
}

impl Notifier {
    pub fn new(receivers: &[ReceiverConfig], retry: RetryPolicy) -> Result<Notifier, NotifyError> {
        for r in receivers {
            check_url(&r.name, &r.url)?;
        }
        let client = reqwest::Client::builder()
            .user_agent(concat!("kiln-monitor/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(NotifyError::Client)?;
        Ok(Notifier {
            client,
            receivers: receivers
                .iter()
                .map(|r| (r.name.clone(), r.clone()))
                .collect(),
            retry,
            alertmanagers: Vec::new(),
        })
    }

    pub fn receiver(&self, name: &str) -> Option<&ReceiverConfig> {
        self.receivers.get(name)
    }

    /// POSTs `payload` to the receiver named `receiver` (truncated to its `max_alerts`),
    /// retrying as the [`RetryPolicy`] says.
    pub async fn send(
        &self,
        receiver: &str,
        payload: &WebhookPayload,
    ) -> Result<Delivery, NotifyError> {
        let rc = self
            .receivers
            .get(receiver)
            .ok_or_else(|| NotifyError::UnknownReceiver(receiver.to_string()))?;
        let mut body = payload.truncated(rc.max_alerts);
        body.receiver = rc.name.clone();
        self.post_with_retries(&rc.name, &rc.url, rc.timeout_ms, &body)
            .await
    }

    /// Adds Alertmanager instances that [`Self::post_alerts`] posts to.
    pub fn with_alertmanagers(
        mut self,
        alertmanagers: &[AlertmanagerConfig],
    ) -> Result<Notifier, NotifyError> {
        for am in alertmanagers {
            check_url(&am.url, &am.url)?;
        }
        self.alertmanagers = alertmanagers.to_vec();
        Ok(self)
    }

    pub fn alertmanagers(&self) -> &[AlertmanagerConfig] {
        &self.alertmanagers
    }

    /// POSTs `alerts` to `<url>/api/v2/alerts` of every configured Alertmanager (concurrently,
    /// each with the retry policy). Returns one result per Alertmanager, by URL.
    pub async fn post_alerts(
        &self,
        alerts: &[PostableAlert],
    ) -> Vec<(String, Result<Delivery, NotifyError>)> {
        let posts = self.alertmanagers.iter().map(|am| async move {
            let url = format!("{}/api/v2/alerts", am.url.trim_end_matches('/'));
            let r = self
                .post_with_retries(&am.url, &url, am.timeout_ms, &alerts)
                .await;
            (am.url.clone(), r)
        });
        futures::future::join_all(posts).await
    }

    async fn post_with_retries<T: Serialize + ?Sized>(
        &self,
        name: &str,
        url: &str,
        timeout_ms: i64,
        body: &T,
    ) -> Result<Delivery, NotifyError> {
        let max_attempts = self.retry.max_attempts.max(1);
        let mut last_error = String::new();
        for attempt in 1..=max_attempts {
            let result = self
                .client
                .post(url)
                .timeout(Duration::from_millis(timeout_ms.max(1) as u64))
                .json(body)
                .send()
                .await;
            match result {
                Ok(resp) if resp.status().is_success() => {
                    return Ok(Delivery {
                        receiver: name.to_string(),
                        attempts: attempt,
                        status: resp.status().as_u16(),
                    });
                }
                Ok(resp) => {
                    let status = resp.status();
                    let text = resp.text().await.unwrap_or_default();
                    let text: String = text.chars().take(512).collect();
                    if !(status.is_server_error() || status.as_u16() == 429) {
                        return Err(NotifyError::Rejected {
                            receiver: name.to_string(),
                            status: status.as_u16(),
                            body: text,
                        });
                    }
                    last_error = format!("HTTP {}: {text}", status.as_u16());
                }
                // Without the URL: a receiver's URL may carry a token from `${ENV}`.
                Err(e) => last_error = e.without_url().to_string(),
            }
            tracing::warn!(
                receiver = %name,
                attempt,
                max_attempts,
                error = %last_error,
                "notification attempt failed"
            );
            if attempt < max_attempts {
                let wait = self.retry.backoff_ms(attempt);
                tokio::time::sleep(Duration::from_millis(wait as u64)).await;
            }
        }
        Err(NotifyError::GaveUp {
            receiver: name.to_string(),
            attempts: max_attempts,
            last_error,
        })
    }
}

fn check_url(name: &str, url: &str) -> Result<(), NotifyError> {
    let parsed = url::Url::parse(url).map_err(|e| NotifyError::InvalidUrl {
        receiver: name.to_string(),
        url: url.to_string(),
        message: e.to_string(),
    })?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(NotifyError::InvalidUrl {
            receiver: name.to_string(),
            url: url.to_string(),
            message: "expected an http:// or https:// URL".to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let p = RetryPolicy {
            max_attempts: 10,
            initial_backoff_ms: 100,
            max_backoff_ms: 1_000,
        };
        let waits: Vec<i64> = (1..=6).map(|a| p.backoff_ms(a)).collect();
        assert_eq!(waits, vec![100, 200, 400, 800, 1_000, 1_000]);
        assert_eq!(p.backoff_ms(200), 1_000);
    }

    #[test]
    fn truncation_counts_what_it_drops() {
        let alert = |n: &str| WebhookAlert {
            status: NotificationStatus::Firing,
            labels: Labels::from_pairs([("alertname", n)]),
            annotations: BTreeMap::new(),
            starts_at: ZERO_TIME.into(),
            ends_at: ZERO_TIME.into(),
            generator_url: String::new(),
            fingerprint: String::new(),
        };
        let p = WebhookPayload::new(
            "r",
            "{}:{}",
            Labels::new(),
            "",
            vec![alert("a"), alert("b"), alert("c")],
        );
        assert!(p.common_labels.is_empty());
        let t = p.truncated(2);
        assert_eq!(t.alerts.len(), 2);
        assert_eq!(t.truncated_alerts, 1);
        assert_eq!(p.truncated(0), p);
    }

    #[test]
    fn receiver_urls_are_checked_up_front() {
        for bad in ["ftp://example.com/hook", "not a url", "/hook"] {
            let e = Notifier::new(&[ReceiverConfig::webhook("r", bad)], RetryPolicy::default())
                .unwrap_err();
            assert!(matches!(e, NotifyError::InvalidUrl { .. }), "{bad}: {e}");
        }
        assert!(
            Notifier::new(
                &[
                    ReceiverConfig::webhook("a", "https://hooks.example.com/x"),
                    ReceiverConfig::webhook("b", "http://127.0.0.1:9/x"),
                ],
                RetryPolicy::default()
            )
            .is_ok()
        );
    }
}
