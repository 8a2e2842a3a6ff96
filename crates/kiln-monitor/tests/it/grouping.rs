//! Routing and grouping timings (group_wait / group_interval / repeat_interval), stepped with a
//! manual clock; notifications are taken from the engine without HTTP.

use std::sync::Arc;

use kiln_monitor::alert::{
    AlertEngine, AlertingConfig, Dispatcher, Notification, RouteConfig, RouteError, RuleSpec,
    Severity,
};
use kiln_monitor::clock::ManualClock;
use kiln_monitor::indicator::{Indicators, Labels, Matcher};
use kiln_monitor::notify::{NotificationStatus, ReceiverConfig};

use crate::alerts::{MIN, SEC, T0, latency_rule};

const HOUR: i64 = 60 * MIN;

fn dep(name: &str) -> Labels {
    Labels::from_pairs([("deployment", name)])
}

fn snapshot(p99: &[(&Labels, f64)]) -> Indicators {
    let mut s = Indicators::new();
    for (l, v) in p99 {
        s.set(l, "p99_ms", *v);
    }
    s
}

fn engine_with(cfg: AlertingConfig, clock: &ManualClock) -> AlertEngine {
    AlertEngine::new(&cfg, Arc::new(clock.clone())).unwrap()
}

fn one_receiver(rules: Vec<RuleSpec>, route: RouteConfig) -> AlertingConfig {
    AlertingConfig {
        route,
        external_url: "http://kiln.example:5000".into(),
        ..AlertingConfig::new(
            rules,
            ReceiverConfig::webhook("oncall", "http://127.0.0.1:9/x"),
        )
    }
}

/// Takes the due notifications and reports them delivered.
fn deliver(e: &mut AlertEngine) -> Vec<Notification> {
    let due = e.due_notifications();
    for n in &due {
        e.delivered(n);
    }
    due
}

fn alert_deployments(n: &Notification) -> Vec<(String, NotificationStatus)> {
    n.payload
        .alerts
        .iter()
        .map(|a| {
            (
                a.labels.get("deployment").unwrap_or("").to_string(),
                a.status,
            )
        })
        .collect()
}

#[test]
fn group_wait_sends_alerts_that_start_together_in_one_notification() {
    let clock = ManualClock::new(T0);
    let route = RouteConfig {
        group_by: Some(vec!["alertname".into()]),
        ..RouteConfig::to_receiver("oncall")
    };
    let mut e = engine_with(one_receiver(vec![latency_rule(0)], route), &clock);
    let (a, b) = (dep("flights"), dep("churn"));

    e.evaluate(&snapshot(&[(&a, 30.0)]));
    assert!(deliver(&mut e).is_empty());
    clock.advance_ms(10 * SEC);
    e.evaluate(&snapshot(&[(&a, 30.0), (&b, 25.0)]));
    clock.advance_ms(19 * SEC);
    e.evaluate(&snapshot(&[(&a, 30.0), (&b, 25.0)]));
    assert!(deliver(&mut e).is_empty(), "29s < group_wait");

    clock.advance_ms(SEC);
    let sent = deliver(&mut e);
    assert_eq!(sent.len(), 1);
    let p = &sent[0].payload;
    assert_eq!(p.group_key, r#"{}:{alertname="HighLatency"}"#);
    assert_eq!(
        p.group_labels,
        Labels::from_pairs([("alertname", "HighLatency")])
    );
    assert_eq!(p.receiver, "oncall");
    assert_eq!(p.status, NotificationStatus::Firing);
    assert_eq!(
        alert_deployments(&sent[0]),
        vec![
            ("churn".to_string(), NotificationStatus::Firing),
            ("flights".to_string(), NotificationStatus::Firing)
        ]
    );
    // Common labels are those both alerts share.
    assert_eq!(
        p.common_labels,
        Labels::from_pairs([
            ("alertname", "HighLatency"),
            ("severity", "page"),
            ("team", "serving")
        ])
    );
    assert_eq!(
        p.common_annotations.get("runbook_url").map(String::as_str),
        Some("runbooks/latency.md")
    );
    assert!(
        !p.common_annotations.contains_key("summary"),
        "summaries differ"
    );
    assert_eq!(e.next_flush_ms(), Some(T0 + 30 * SEC + 5 * MIN));
}

#[test]
fn group_interval_batches_changes_and_a_resolution_is_sent_once() {
    let clock = ManualClock::new(T0);
    let mut e = engine_with(
        one_receiver(vec![latency_rule(0)], RouteConfig::to_receiver("oncall")),
        &clock,
    );
    let (a, b) = (dep("flights"), dep("churn"));
    e.evaluate(&snapshot(&[(&a, 30.0)]));
    clock.advance_ms(30 * SEC);
    e.evaluate(&snapshot(&[(&a, 30.0)]));
    assert_eq!(deliver(&mut e).len(), 1);
    let first_flush = T0 + 30 * SEC;

    // A second alert a minute later waits for the group's next interval.
    clock.advance_ms(MIN);
    e.evaluate(&snapshot(&[(&a, 30.0), (&b, 30.0)]));
    // …and the first one resolves before that.
    clock.advance_ms(MIN);
    e.evaluate(&snapshot(&[(&b, 30.0)]));
    clock.set_ms(first_flush + 5 * MIN - 1);
    e.evaluate(&snapshot(&[(&b, 30.0)]));
    assert!(deliver(&mut e).is_empty());

    clock.set_ms(first_flush + 5 * MIN);
    e.evaluate(&snapshot(&[(&b, 30.0)]));
    let sent = deliver(&mut e);
    assert_eq!(sent.len(), 1);
    assert_eq!(
        alert_deployments(&sent[0]),
        vec![
            ("churn".to_string(), NotificationStatus::Firing),
            ("flights".to_string(), NotificationStatus::Resolved)
        ]
    );
    let resolved = sent[0]
        .payload
        .alerts
        .iter()
        .find(|x| x.status == NotificationStatus::Resolved)
        .unwrap();
    assert_eq!(resolved.ends_at, "2024-05-01T10:02:30Z");
    assert_eq!(resolved.starts_at, "2024-05-01T10:00:00Z");

    // Nothing changed: no notification at the next intervals; the resolved alert is not repeated.
    for k in 1..=3 {
        clock.set_ms(first_flush + (5 + 5 * k) * MIN);
        e.evaluate(&snapshot(&[(&b, 30.0)]));
        assert!(deliver(&mut e).is_empty(), "interval {k}");
    }

    // The last alert resolves: one resolved notification, then the group is gone.
    clock.advance_ms(MIN);
    e.evaluate(&snapshot(&[]));
    clock.set_ms(first_flush + 25 * MIN);
    e.evaluate(&snapshot(&[]));
    let sent = deliver(&mut e);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].payload.status, NotificationStatus::Resolved);
    assert_eq!(
        alert_deployments(&sent[0]),
        vec![("churn".to_string(), NotificationStatus::Resolved)]
    );
    assert_eq!(e.groups().count(), 0);
    clock.advance_ms(HOUR);
    e.evaluate(&snapshot(&[]));
    assert!(deliver(&mut e).is_empty());
}

#[test]
fn repeat_interval_resends_a_group_that_keeps_firing() {
    let clock = ManualClock::new(T0);
    let route = RouteConfig {
        group_wait_ms: Some(0),
        group_interval_ms: Some(MIN),
        repeat_interval_ms: Some(HOUR),
        ..RouteConfig::to_receiver("oncall")
    };
    let mut e = engine_with(one_receiver(vec![latency_rule(0)], route), &clock);
    let a = dep("flights");
    let mut sent_at = Vec::new();
    for _ in 0..=150 {
        e.evaluate(&snapshot(&[(&a, 30.0)]));
        if !deliver(&mut e).is_empty() {
            sent_at.push((crate::alerts::clock_now(&clock) - T0) / MIN);
        }
        clock.advance_ms(MIN);
    }
    assert_eq!(sent_at, vec![0, 60, 120]);
}

#[test]
fn an_undelivered_notification_is_sent_again_at_the_next_interval() {
    let clock = ManualClock::new(T0);
    let mut e = engine_with(
        one_receiver(vec![latency_rule(0)], RouteConfig::to_receiver("oncall")),
        &clock,
    );
    let a = dep("flights");
    e.evaluate(&snapshot(&[(&a, 30.0)]));
    clock.advance_ms(30 * SEC);
    let first = e.due_notifications(); // not reported delivered
    assert_eq!(first.len(), 1);
    clock.advance_ms(5 * MIN - 1);
    assert!(e.due_notifications().is_empty());
    clock.advance_ms(1);
    let again = e.due_notifications();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].payload, first[0].payload);
    e.delivered(&again[0]);
    clock.advance_ms(5 * MIN);
    assert!(e.due_notifications().is_empty());
}

#[test]
fn routes_pick_receivers_and_group_by_splits_groups() {
    let clock = ManualClock::new(T0);
    let ticket_rule = RuleSpec {
        severity: Severity::Ticket,
        ..RuleSpec::new("Drift", "drift_share > 0.5")
    };
    let cfg = AlertingConfig {
        rules: vec![latency_rule(0), ticket_rule],
        receivers: vec![
            ReceiverConfig::webhook("default", "http://127.0.0.1:9/a"),
            ReceiverConfig::webhook("pager", "http://127.0.0.1:9/b"),
            ReceiverConfig::webhook("audit", "http://127.0.0.1:9/c"),
        ],
        route: RouteConfig {
            receiver: Some("default".into()),
            group_by: Some(vec!["alertname".into(), "deployment".into()]),
            group_wait_ms: Some(10 * SEC),
            routes: vec![
                RouteConfig {
                    receiver: Some("audit".into()),
                    matchers: vec![Matcher::parse("severity=~page|ticket").unwrap()],
                    group_by: Some(vec!["...".into()]),
                    continue_matching: true,
                    ..Default::default()
                },
                RouteConfig {
                    receiver: Some("pager".into()),
                    matchers: vec![Matcher::parse("severity=page").unwrap()],
                    ..Default::default()
                },
            ],
            ..Default::default()
        },
        ..one_receiver(vec![], RouteConfig::to_receiver("oncall"))
    };
    let mut e = engine_with(cfg, &clock);
    let (a, b) = (dep("flights"), dep("churn"));
    let snap = snapshot(&[(&a, 30.0), (&b, 30.0)]).with(&a, "drift_share", 0.8);
    e.evaluate(&snap);
    clock.advance_ms(10 * SEC);
    let mut sent: Vec<(String, String, usize)> = deliver(&mut e)
        .iter()
        .map(|n| {
            (
                n.receiver.clone(),
                n.group_key.clone(),
                n.payload.alerts.len(),
            )
        })
        .collect();
    sent.sort();
    let audit = r#"{}/{severity=~"page|ticket"}"#;
    let pager = r#"{}/{severity="page"}"#;
    let want: Vec<(String, String, usize)> = vec![
        // `continue`: each alert also goes to the audit route, grouped by all labels.
        (
            "audit".into(),
            format!(r#"{audit}:{{alertname="Drift", deployment="flights", severity="ticket"}}"#),
            1,
        ),
        (
            "audit".into(),
            format!(
                r#"{audit}:{{alertname="HighLatency", deployment="churn", severity="page", team="serving"}}"#
            ),
            1,
        ),
        (
            "audit".into(),
            format!(
                r#"{audit}:{{alertname="HighLatency", deployment="flights", severity="page", team="serving"}}"#
            ),
            1,
        ),
        // Pages go to the pager, grouped by the inherited alertname + deployment.
        (
            "pager".into(),
            format!(r#"{pager}:{{alertname="HighLatency", deployment="churn"}}"#),
            1,
        ),
        (
            "pager".into(),
            format!(r#"{pager}:{{alertname="HighLatency", deployment="flights"}}"#),
            1,
        ),
    ];
    assert_eq!(sent, want);
    // The drift ticket matched only the audit route (which continues): the root's default
    // receiver is used only when no child matches.
    let d = Dispatcher::new(
        &RouteConfig {
            routes: vec![RouteConfig {
                receiver: Some("pager".into()),
                matchers: vec![Matcher::parse("severity=page").unwrap()],
                ..Default::default()
            }],
            ..RouteConfig::to_receiver("default")
        },
        &[
            ReceiverConfig::webhook("default", "http://127.0.0.1:9/a"),
            ReceiverConfig::webhook("pager", "http://127.0.0.1:9/b"),
        ],
        "",
    )
    .unwrap();
    assert_eq!(
        d.receivers_for(&Labels::from_pairs([("severity", "ticket")])),
        vec!["default"]
    );
    assert_eq!(
        d.receivers_for(&Labels::from_pairs([("severity", "page")])),
        vec!["pager"]
    );
}

#[test]
fn a_receiver_without_send_resolved_gets_no_resolution() {
    let clock = ManualClock::new(T0);
    let cfg = AlertingConfig {
        receivers: vec![ReceiverConfig {
            send_resolved: false,
            ..ReceiverConfig::webhook("oncall", "http://127.0.0.1:9/x")
        }],
        ..one_receiver(vec![latency_rule(0)], RouteConfig::to_receiver("oncall"))
    };
    let mut e = engine_with(cfg, &clock);
    let a = dep("flights");
    e.evaluate(&snapshot(&[(&a, 30.0)]));
    clock.advance_ms(30 * SEC);
    assert_eq!(deliver(&mut e).len(), 1);
    clock.advance_ms(MIN);
    e.evaluate(&snapshot(&[]));
    clock.advance_ms(5 * MIN);
    assert!(deliver(&mut e).is_empty());
    assert_eq!(e.groups().count(), 0);
    // A new firing alert later is a new group and is notified again.
    e.evaluate(&snapshot(&[(&a, 30.0)]));
    clock.advance_ms(30 * SEC);
    assert_eq!(deliver(&mut e).len(), 1);
}

#[test]
fn routing_configuration_errors() {
    let rx = [ReceiverConfig::webhook("oncall", "http://127.0.0.1:9/x")];
    let err = |r: RouteConfig| Dispatcher::new(&r, &rx, "").unwrap_err();
    assert_eq!(err(RouteConfig::default()), RouteError::NoRootReceiver);
    assert!(matches!(
        err(RouteConfig::to_receiver("nobody")),
        RouteError::UnknownReceiver { .. }
    ));
    assert_eq!(
        err(RouteConfig {
            matchers: vec![Matcher::parse("a=b").unwrap()],
            ..RouteConfig::to_receiver("oncall")
        }),
        RouteError::RootMatchers
    );
    assert!(matches!(
        err(RouteConfig {
            group_by: Some(vec!["bad-label".into()]),
            ..RouteConfig::to_receiver("oncall")
        }),
        RouteError::InvalidGroupBy { .. }
    ));
    assert!(matches!(
        err(RouteConfig {
            group_interval_ms: Some(0),
            ..RouteConfig::to_receiver("oncall")
        }),
        RouteError::NonPositive { .. }
    ));
    // The configuration reads as Alertmanager's route block does.
    let r: RouteConfig = serde_json::from_value(serde_json::json!({
        "receiver": "oncall", "group_by": ["alertname"], "group_wait": "10s",
        "group_interval": "1m", "repeat_interval": "2h",
        "routes": [{"matchers": ["severity=page"], "continue": true}]
    }))
    .unwrap();
    assert_eq!(r.group_wait_ms, Some(10 * SEC));
    assert_eq!(r.repeat_interval_ms, Some(2 * HOUR));
    assert!(r.routes[0].continue_matching);
    assert!(Dispatcher::new(&r, &rx, "").is_ok());
}
