//! The alert state machine driven through `AlertEngine` with a manual clock.

use std::sync::Arc;

use kiln_monitor::alert::{
    AlertEngine, AlertState, AlertingConfig, EngineState, Evaluator, RuleError, RuleSpec, Severity,
    Transition,
};
use kiln_monitor::clock::ManualClock;
use kiln_monitor::indicator::{Indicators, Labels};
use kiln_monitor::notify::ReceiverConfig;

pub const T0: i64 = 1_714_557_600_000; // 2024-05-01T10:00:00Z
pub const SEC: i64 = 1_000;
pub const MIN: i64 = 60_000;

pub fn flights() -> Labels {
    Labels::from_pairs([("deployment", "flights"), ("version", "3")])
}

pub fn latency_rule(for_ms: i64) -> RuleSpec {
    RuleSpec {
        for_ms,
        severity: Severity::Page,
        summary: Some("p99 is {{ $value }} ms on {{ $labels.deployment }}".into()),
        runbook: Some("runbooks/latency.md".into()),
        labels: [("team".to_string(), "serving".to_string())].into(),
        ..RuleSpec::new("HighLatency", "p99_ms > 20")
    }
}

pub fn engine(rules: Vec<RuleSpec>, clock: &ManualClock) -> AlertEngine {
    let cfg = AlertingConfig {
        external_url: "http://kiln.example:5000".into(),
        generator_url: "http://kiln.example:5000/alerts?rule={rule}".into(),
        ..AlertingConfig::new(
            rules,
            ReceiverConfig::webhook("oncall", "http://127.0.0.1:9/unused"),
        )
    };
    AlertEngine::new(&cfg, Arc::new(clock.clone())).unwrap()
}

fn p99(labels: &Labels, v: f64) -> Indicators {
    Indicators::new().with(labels, "p99_ms", v)
}

fn states(ts: &[Transition]) -> Vec<(Option<AlertState>, Option<AlertState>)> {
    ts.iter().map(|t| (t.from, t.to)).collect()
}

#[test]
fn pending_then_firing_after_for_then_resolved() {
    let clock = ManualClock::new(T0);
    let mut e = engine(vec![latency_rule(5 * MIN)], &clock);
    let l = flights();

    assert!(e.evaluate(&p99(&l, 10.0)).is_empty());
    assert!(e.alerts().is_empty());

    clock.advance_ms(MIN);
    let t = e.evaluate(&p99(&l, 30.0));
    assert_eq!(states(&t), vec![(None, Some(AlertState::Pending))]);
    let active_at = clock_now(&clock);

    // Still pending just before `for` has elapsed.
    for _ in 0..4 {
        clock.advance_ms(MIN);
        assert!(e.evaluate(&p99(&l, 31.0)).is_empty());
    }
    clock.advance_ms(MIN - 1);
    assert!(e.evaluate(&p99(&l, 31.0)).is_empty());
    assert_eq!(e.alerts()[0].alert.state, AlertState::Pending);
    assert_eq!(e.alerts()[0].alert.starts_at_ms, None);

    clock.advance_ms(1);
    let t = e.evaluate(&p99(&l, 32.5));
    assert_eq!(
        states(&t),
        vec![(Some(AlertState::Pending), Some(AlertState::Firing))]
    );
    let a = e.alerts()[0].alert.clone();
    assert_eq!(a.state, AlertState::Firing);
    assert_eq!(a.active_at_ms, active_at);
    assert_eq!(a.starts_at_ms, Some(active_at + 5 * MIN));
    assert_eq!(a.ends_at_ms, None);
    assert_eq!(a.value, Some(32.5));

    clock.advance_ms(MIN);
    assert!(e.evaluate(&p99(&l, 40.0)).is_empty());
    clock.advance_ms(MIN);
    let t = e.evaluate(&p99(&l, 12.0));
    assert_eq!(
        states(&t),
        vec![(Some(AlertState::Firing), Some(AlertState::Resolved))]
    );
    let a = e.alerts()[0].alert.clone();
    assert_eq!(a.state, AlertState::Resolved);
    assert_eq!(a.starts_at_ms, Some(active_at + 5 * MIN));
    assert_eq!(a.ends_at_ms, Some(active_at + 7 * MIN));
    // The last true value is kept.
    assert_eq!(a.value, Some(40.0));
}

pub fn clock_now(c: &ManualClock) -> i64 {
    use kiln_monitor::clock::Clock;
    c.now_ms()
}

#[test]
fn for_zero_fires_on_the_first_true_evaluation() {
    let clock = ManualClock::new(T0);
    let mut e = engine(vec![latency_rule(0)], &clock);
    let t = e.evaluate(&p99(&flights(), 25.0));
    assert_eq!(states(&t), vec![(None, Some(AlertState::Firing))]);
    let a = &e.alerts()[0].alert;
    assert_eq!(a.active_at_ms, T0);
    assert_eq!(a.starts_at_ms, Some(T0));
}

#[test]
fn a_pending_alert_that_clears_is_dropped_without_firing() {
    let clock = ManualClock::new(T0);
    let mut e = engine(vec![latency_rule(5 * MIN)], &clock);
    let l = flights();
    e.evaluate(&p99(&l, 30.0));
    clock.advance_ms(4 * MIN);
    let t = e.evaluate(&p99(&l, 10.0));
    assert_eq!(states(&t), vec![(Some(AlertState::Pending), None)]);
    assert!(e.alerts().is_empty());
    // The `for` clock restarts.
    clock.advance_ms(MIN);
    e.evaluate(&p99(&l, 30.0));
    clock.advance_ms(4 * MIN);
    assert!(e.evaluate(&p99(&l, 30.0)).is_empty());
    clock.advance_ms(MIN);
    assert_eq!(
        states(&e.evaluate(&p99(&l, 30.0))),
        vec![(Some(AlertState::Pending), Some(AlertState::Firing))]
    );
}

#[test]
fn no_data_resolves_a_firing_alert_and_never_starts_one() {
    let clock = ManualClock::new(T0);
    let mut e = engine(vec![latency_rule(0)], &clock);
    let l = flights();
    // The series exists but has no p99_ms: no data, nothing starts.
    assert!(
        e.evaluate(&Indicators::new().with(&l, "error_rate", 0.5))
            .is_empty()
    );
    e.evaluate(&p99(&l, 30.0));
    clock.advance_ms(MIN);
    // The series vanished from the snapshot.
    let t = e.evaluate(&Indicators::new());
    assert_eq!(
        states(&t),
        vec![(Some(AlertState::Firing), Some(AlertState::Resolved))]
    );
}

#[test]
fn each_series_is_its_own_alert_with_merged_labels_and_rendered_annotations() {
    let clock = ManualClock::new(T0);
    let mut e = engine(vec![latency_rule(0)], &clock);
    let canary = Labels::from_pairs([
        ("deployment", "flights"),
        ("version", "4"),
        ("team", "data"),
    ]);
    let stable = flights();
    let snap = Indicators::new()
        .with(&canary, "p99_ms", 41.25)
        .with(&stable, "p99_ms", 18.0);
    let t = e.evaluate(&snap);
    assert_eq!(t.len(), 1);
    let a = &e.alerts()[0].alert;
    // Series labels, then the rule's (team wins), then alertname and severity.
    assert_eq!(
        a.labels,
        Labels::from_pairs([
            ("alertname", "HighLatency"),
            ("deployment", "flights"),
            ("severity", "page"),
            ("team", "serving"),
            ("version", "4"),
        ])
    );
    assert_eq!(a.fingerprint, a.labels.fingerprint_hex());
    assert_eq!(a.fingerprint.len(), 16);
    assert_eq!(a.annotations["summary"], "p99 is 41.25 ms on flights");
    assert_eq!(a.annotations["runbook_url"], "runbooks/latency.md");
    assert_eq!(
        a.generator_url,
        "http://kiln.example:5000/alerts?rule=HighLatency"
    );

    // Annotations follow the value.
    clock.advance_ms(MIN);
    e.evaluate(&Indicators::new().with(&canary, "p99_ms", 50.0));
    assert_eq!(
        e.alerts()[0].alert.annotations["summary"],
        "p99 is 50 ms on flights"
    );
}

#[test]
fn firing_again_after_resolution_is_a_new_alert_and_old_ones_are_forgotten() {
    let clock = ManualClock::new(T0);
    let mut e = engine(vec![latency_rule(0)], &clock);
    let l = flights();
    e.evaluate(&p99(&l, 30.0));
    clock.advance_ms(MIN);
    e.evaluate(&p99(&l, 10.0));
    clock.advance_ms(MIN);
    let t = e.evaluate(&p99(&l, 30.0));
    assert_eq!(
        states(&t),
        vec![(Some(AlertState::Resolved), Some(AlertState::Firing))]
    );
    let a = &e.alerts()[0].alert;
    assert_eq!(a.starts_at_ms, Some(T0 + 2 * MIN));
    assert_eq!(a.ends_at_ms, None);

    // Resolved alerts stay listed for the retention (15 min), then go.
    clock.advance_ms(MIN);
    e.evaluate(&p99(&l, 10.0));
    clock.advance_ms(15 * MIN - 1);
    assert!(e.evaluate(&p99(&l, 10.0)).is_empty());
    assert_eq!(e.alerts().len(), 1);
    clock.advance_ms(1);
    let t = e.evaluate(&p99(&l, 10.0));
    assert_eq!(states(&t), vec![(Some(AlertState::Resolved), None)]);
    assert!(e.alerts().is_empty());
}

#[test]
fn state_survives_a_restart_through_serde() {
    let clock = ManualClock::new(T0);
    let mut e = engine(vec![latency_rule(5 * MIN)], &clock);
    let l = flights();
    e.evaluate(&p99(&l, 30.0));
    clock.advance_ms(3 * MIN);
    e.evaluate(&p99(&l, 30.0));

    let json = serde_json::to_string(&e.state()).unwrap();
    let state: EngineState = serde_json::from_str(&json).unwrap();
    assert_eq!(state, e.state());

    let mut e2 = engine(vec![latency_rule(5 * MIN)], &clock);
    e2.restore(state);
    // The pending time carries over: two more minutes and it fires.
    clock.advance_ms(2 * MIN);
    let t = e2.evaluate(&p99(&l, 30.0));
    assert_eq!(
        states(&t),
        vec![(Some(AlertState::Pending), Some(AlertState::Firing))]
    );
    assert_eq!(e2.alerts()[0].alert.active_at_ms, T0);
}

#[test]
fn rules_with_the_same_identity_are_rejected() {
    let a = RuleSpec::new("HighLatency", "p99_ms > 20");
    let b = RuleSpec::new("HighLatency", "p99_ms > 50");
    assert!(matches!(
        Evaluator::new(&[a.clone(), b.clone()]),
        Err(RuleError::Duplicate { .. })
    ));
    // Told apart by severity, they are fine.
    let b = RuleSpec {
        severity: Severity::Page,
        ..b
    };
    assert!(Evaluator::new(&[a, b]).is_ok());
}

/// With no receiver configured, alerts go to the record-only receiver: they fire and are
/// listed, and nothing is sent (no delivery attempted, none left due).
#[tokio::test]
async fn the_record_only_receiver_sends_nothing() {
    let clock = ManualClock::new(T0);
    let cfg = AlertingConfig::new(vec![latency_rule(0)], ReceiverConfig::record_only());
    let mut e = AlertEngine::new(&cfg, Arc::new(clock.clone())).unwrap();
    let l = flights();
    let r = e.tick(&p99(&l, 30.0)).await;
    assert_eq!(states(&r.transitions).len(), 1);
    clock.advance_ms(MIN);
    let r = e.tick(&p99(&l, 30.0)).await;
    assert!(r.deliveries.is_empty(), "{:?}", r.deliveries.len());
    assert_eq!(e.alerts()[0].alert.state, AlertState::Firing);
    assert!(e.send_due().await.is_empty());
    // A real receiver in the same place would be attempted (and fail: nothing listens).
    let mut real = engine(vec![latency_rule(0)], &clock);
    real.tick(&p99(&l, 30.0)).await;
    clock.advance_ms(MIN);
    let r = real.tick(&p99(&l, 30.0)).await;
    let attempted = r.deliveries.len() + real.send_due().await.len();
    assert!(attempted > 0, "the control case sends");
}
