//! SLO burn rates: the SRE table, the per-minute ring, and the alerts they drive through the
//! alert engine while a manual clock steps through an error burst and its recovery.

use std::collections::BTreeSet;
use std::sync::Arc;

use kiln_monitor::alert::{AlertEngine, AlertState, AlertingConfig, Severity};
use kiln_monitor::clock::{Clock, ManualClock};
use kiln_monitor::expr::Expr;
use kiln_monitor::indicator::Labels;
use kiln_monitor::notify::ReceiverConfig;
use kiln_monitor::slo::{Objective, SloError, SloSpec, SloTracker, SloTrackerState, burn_windows};

use crate::alerts::{MIN, T0};

const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;

fn flights() -> Labels {
    Labels::from_pairs([("deployment", "flights")])
}

/// One minute of traffic: `total` requests of which `bad` failed.
fn minute(t: &mut SloTracker, l: &Labels, total: u64, bad: u64) {
    t.record("flights-availability", l, total - bad, bad)
        .unwrap();
}

fn firing(e: &AlertEngine) -> BTreeSet<String> {
    e.alerts()
        .iter()
        .filter(|a| a.alert.state == AlertState::Firing)
        .map(|a| {
            format!(
                "{} {}/{}",
                a.alert.labels.get("severity").unwrap(),
                a.alert.labels.get("long_window").unwrap(),
                a.alert.labels.get("short_window").unwrap()
            )
        })
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn thirty_day_slos_get_the_sre_workbook_windows() {
    let w = burn_windows(30 * DAY);
    let rows: Vec<(Severity, i64, i64, f64)> = w
        .iter()
        .map(|w| (w.severity, w.long_ms, w.short_ms, w.burn_rate))
        .collect();
    assert_eq!(
        rows,
        vec![
            (Severity::Page, HOUR, 5 * MIN, 14.4),
            (Severity::Page, 6 * HOUR, 30 * MIN, 6.0),
            (Severity::Ticket, 3 * DAY, 6 * HOUR, 1.0),
        ]
    );
    // Other periods scale the thresholds (same budget shares).
    let w = burn_windows(90 * DAY);
    assert!((w[0].burn_rate - 43.2).abs() < 1e-9);

    let slo = SloSpec::availability("flights-availability", 99.9);
    let rules = slo.alert_rules();
    assert_eq!(rules.len(), 3);
    assert_eq!(
        rules[0].when,
        r#"burn_rate_1h{slo="flights-availability"} > 14.4 and burn_rate_5m{slo="flights-availability"} > 14.4"#
    );
    assert_eq!(
        rules[2].when,
        r#"burn_rate_3d{slo="flights-availability"} > 1 and burn_rate_6h{slo="flights-availability"} > 1"#
    );
    for r in &rules {
        Expr::parse(&r.when).unwrap();
        assert_eq!(r.name, "ErrorBudgetBurn");
        assert_eq!(r.for_ms, 0);
    }
    assert_eq!(rules[1].labels["long_window"], "6h");
    assert_eq!(rules[1].labels["short_window"], "30m");
    let d = rules[0].description.as_deref().unwrap();
    assert!(d.contains("availability ≥ 99.9 % over 30d"), "{d}");
}

#[test]
fn an_error_burst_pages_on_the_fast_window_and_recovery_resets_it_within_the_short_window() {
    let clock = ManualClock::new(T0);
    let slo = SloSpec::availability("flights-availability", 99.9);
    let mut tracker = SloTracker::new(vec![slo.clone()], Arc::new(clock.clone())).unwrap();
    let cfg = AlertingConfig::new(
        slo.alert_rules(),
        ReceiverConfig::webhook("oncall", "http://127.0.0.1:9/x"),
    );
    let mut engine = AlertEngine::new(&cfg, Arc::new(clock.clone())).unwrap();
    let l = flights();

    // Three quiet days at 100 requests a minute.
    for _ in 0..3 * 24 * 60 {
        minute(&mut tracker, &l, 100, 0);
        clock.advance_ms(MIN);
    }
    engine.evaluate(&tracker.indicators());
    assert!(firing(&engine).is_empty());
    let budget = tracker
        .budget_remaining("flights-availability", &l)
        .unwrap()
        .unwrap();
    assert_eq!(budget, 1.0);

    // Ten minutes with 20 % errors (burn rate 200).
    let mut fired_at = None;
    for k in 1..=10 {
        minute(&mut tracker, &l, 100, 20);
        let ts = engine.evaluate(&tracker.indicators());
        let burn_5m = tracker
            .burn_rate("flights-availability", &l, 5 * MIN)
            .unwrap()
            .unwrap();
        // The 5-minute window holds min(k, 5) bad minutes of 20 errors among 500 requests.
        let want_5m = 20.0 * k.min(5) as f64 / 500.0 / 0.001;
        assert!((burn_5m - want_5m).abs() < 1e-6, "{burn_5m} vs {want_5m}");
        if fired_at.is_none() && !ts.is_empty() {
            fired_at = Some(k);
        }
        // Only the fast page: 6h burn stays under 6, 3d under 1.
        let want = if k >= 5 {
            set(&["page 1h/5m"])
        } else {
            set(&[])
        };
        assert_eq!(firing(&engine), want, "minute {k} of the burst");
        clock.advance_ms(MIN);
    }
    // The 1h window needs 5 bad minutes: 5 × 20 / 6000 = 1.67 % > 14.4 × 0.1 %.
    assert_eq!(fired_at, Some(5));
    let status = tracker.status();
    let w = &status[0].windows;
    assert!(w[0].burning && !w[1].burning && !w[2].burning, "{w:?}");
    assert!(w[1].long_burn_rate.unwrap() < 6.0 && w[1].short_burn_rate.unwrap() > 6.0);

    // Recovery: the 1h burn rate stays above 14.4 for most of an hour, but the alert resolves
    // as soon as the 5-minute window is clean.
    let mut resolved_after = None;
    for j in 1..=10 {
        minute(&mut tracker, &l, 100, 0);
        let ts = engine.evaluate(&tracker.indicators());
        if ts.iter().any(|t| t.to == Some(AlertState::Resolved)) {
            resolved_after = Some(j);
            let burn_1h = tracker
                .burn_rate("flights-availability", &l, HOUR)
                .unwrap()
                .unwrap();
            assert!(
                burn_1h > 14.4,
                "the long window alone would still page: {burn_1h}"
            );
        }
        clock.advance_ms(MIN);
    }
    assert_eq!(resolved_after, Some(5));
    assert!(firing(&engine).is_empty());
    let budget = tracker
        .budget_remaining("flights-availability", &l)
        .unwrap()
        .unwrap();
    // 200 bad of 434,000 requests against a budget of 0.1 %.
    assert!(
        (budget - (1.0 - 200.0 / 434_000.0 / 0.001)).abs() < 1e-9,
        "{budget}"
    );
}

#[test]
fn a_slow_burn_opens_a_ticket_without_paging() {
    let clock = ManualClock::new(T0);
    let slo = SloSpec::availability("flights-availability", 99.9);
    let mut tracker = SloTracker::new(vec![slo.clone()], Arc::new(clock.clone())).unwrap();
    let cfg = AlertingConfig::new(
        slo.alert_rules(),
        ReceiverConfig::webhook("oncall", "http://127.0.0.1:9/x"),
    );
    let mut engine = AlertEngine::new(&cfg, Arc::new(clock.clone())).unwrap();
    let l = flights();
    // 0.3 % errors: burn rate 3, above the ticket's 1, below the pages' 6 and 14.4.
    for m in 0..120 {
        minute(&mut tracker, &l, 1_000, 3);
        engine.evaluate(&tracker.indicators());
        assert_eq!(firing(&engine), set(&["ticket 3d/6h"]), "minute {m}");
        clock.advance_ms(MIN);
    }
    let a = engine
        .alerts()
        .into_iter()
        .find(|a| a.alert.state == AlertState::Firing)
        .unwrap()
        .alert;
    assert_eq!(a.labels.get("slo"), Some("flights-availability"));
    assert_eq!(a.labels.get("deployment"), Some("flights"));
    assert_eq!(a.labels.get("alertname"), Some("ErrorBudgetBurn"));
    assert_eq!(
        a.annotations["summary"],
        "SLO flights-availability: error budget burning at 3× over 3d (and 6h); threshold 1×"
    );
}

#[test]
fn latency_slos_count_slow_successful_requests_only() {
    let clock = ManualClock::new(T0);
    let slos = vec![
        SloSpec::from_shorthand("flights", "p99_ms", 20.0).unwrap(),
        SloSpec::from_shorthand("flights", "availability", 99.9).unwrap(),
    ];
    assert_eq!(slos[0].name, "flights-latency-p99");
    assert_eq!(
        slos[0].objective,
        Objective::Latency {
            percentile: 99.0,
            threshold_ms: 20.0
        }
    );
    let mut t = SloTracker::new(slos, Arc::new(clock.clone())).unwrap();
    let l = flights();
    for i in 0..100 {
        // 96 fast, 2 slow (25 ms, 20.5 ms), 2 failed (one of them slow).
        let (latency, ok) = match i {
            0 => (25.0, true),
            1 => (20.5, true),
            2 => (3.0, false),
            3 => (90.0, false),
            _ => (20.0, true),
        };
        t.record_request(&l, latency, ok).unwrap();
    }
    assert_eq!(t.counts("flights-latency-p99", &l, MIN).unwrap(), (96, 2));
    assert_eq!(t.counts("flights-availability", &l, MIN).unwrap(), (98, 2));
    // 2 / 98 slow against a 1 % budget.
    let burn = t
        .burn_rate("flights-latency-p99", &l, 5 * MIN)
        .unwrap()
        .unwrap();
    assert!((burn - 2.0 / 98.0 / 0.01).abs() < 1e-9);

    let snap = t.indicators();
    let lat = Labels::from_pairs([("deployment", "flights"), ("slo", "flights-latency-p99")]);
    assert!((snap.get(&lat, "burn_rate_5m").unwrap() - burn).abs() < 1e-12);
    for w in [
        "burn_rate_5m",
        "burn_rate_30m",
        "burn_rate_1h",
        "burn_rate_6h",
        "burn_rate_3d",
    ] {
        assert!(snap.get(&lat, w).is_some(), "{w}");
    }
    assert!(
        snap.get(&lat, "error_budget_remaining").unwrap() < 0.0,
        "2 % slow spends 2× the budget"
    );
    assert_eq!(snap.len(), 2);

    // No traffic for a while: windows without requests are no data, not zero.
    clock.advance_ms(10 * MIN);
    let snap = t.indicators();
    assert_eq!(snap.get(&lat, "burn_rate_5m"), None);
    assert!(snap.get(&lat, "burn_rate_1h").is_some());
}

#[test]
fn memory_is_bounded_old_minutes_fall_out_and_series_are_capped() {
    let clock = ManualClock::new(T0);
    let slo = SloSpec::availability("flights-availability", 99.9);
    let mut t = SloTracker::new(vec![slo], Arc::new(clock.clone()))
        .unwrap()
        .with_max_series(2);
    let l = flights();
    // Day 1: all bad; days 2–4: all good.
    for m in 0..4 * 24 * 60 {
        let bad = if m < 24 * 60 { 10 } else { 0 };
        minute(&mut t, &l, 10, bad);
        clock.advance_ms(MIN);
    }
    clock.advance_ms(-MIN);
    // The ring holds exactly the last 3 days: day 1's errors are gone from every window.
    assert_eq!(
        t.counts("flights-availability", &l, 3 * DAY).unwrap(),
        (3 * 24 * 60 * 10, 0)
    );
    assert_eq!(
        t.counts("flights-availability", &l, 30 * DAY).unwrap(),
        (3 * 24 * 60 * 10, 0)
    );
    // The period's hourly buckets still remember them.
    let budget = t
        .budget_remaining("flights-availability", &l)
        .unwrap()
        .unwrap();
    assert!((budget - (1.0 - 0.25 / 0.001)).abs() < 1e-9, "{budget}");
    assert_eq!(clock.now_ms(), T0 + 4 * DAY - MIN);

    t.record(
        "flights-availability",
        &Labels::from_pairs([("deployment", "b")]),
        1,
        0,
    )
    .unwrap();
    assert_eq!(
        t.record(
            "flights-availability",
            &Labels::from_pairs([("deployment", "c")]),
            1,
            0
        ),
        Err(SloError::TooManySeries(2))
    );
    t.forget(&Labels::from_pairs([("deployment", "b")]));
    t.record(
        "flights-availability",
        &Labels::from_pairs([("deployment", "c")]),
        1,
        0,
    )
    .unwrap();
    assert_eq!(
        t.record("nope", &l, 1, 0),
        Err(SloError::Unknown("nope".into()))
    );
}

#[test]
fn slo_specs_are_validated_and_read_from_configuration() {
    let spec: SloSpec = serde_json::from_value(serde_json::json!({
        "name": "flights-latency", "kind": "latency", "percentile": 99, "threshold_ms": 20,
        "runbook": "runbooks/latency.md"
    }))
    .unwrap();
    assert_eq!(spec.period_ms, 30 * DAY);
    assert_eq!(spec.objective.target(), 0.99);
    assert_eq!(
        spec.alert_rules()[0].runbook.as_deref(),
        Some("runbooks/latency.md")
    );
    let spec: SloSpec = serde_json::from_value(serde_json::json!({
        "name": "a", "kind": "availability", "percent": 99.5, "period": "28d"
    }))
    .unwrap();
    assert_eq!(spec.period_ms, 28 * DAY);

    let bad = [
        SloSpec::availability("x\"y", 99.9),
        SloSpec::availability("a", 100.0),
        SloSpec::availability("a", 0.0),
        SloSpec::latency("a", 99.0, 0.0),
        SloSpec {
            period_ms: DAY,
            ..SloSpec::availability("a", 99.9)
        },
    ];
    for s in bad {
        assert!(s.validate().is_err(), "{s:?}");
    }
    assert!(matches!(
        SloSpec::from_shorthand("f", "p99", 20.0),
        Err(SloError::Shorthand(_))
    ));
    assert!(matches!(
        SloTracker::new(
            vec![
                SloSpec::availability("a", 99.9),
                SloSpec::availability("a", 99.0)
            ],
            Arc::new(ManualClock::new(0))
        ),
        Err(SloError::Duplicate(_))
    ));
}

#[test]
fn counts_survive_a_restart() {
    let clock = ManualClock::new(T0);
    let slo = SloSpec::availability("flights-availability", 99.9);
    let mut t = SloTracker::new(vec![slo.clone()], Arc::new(clock.clone())).unwrap();
    let l = flights();
    for m in 0..90 {
        minute(&mut t, &l, 100, if m >= 80 { 30 } else { 0 });
        clock.advance_ms(MIN);
    }
    let state = t.state();
    assert_eq!(state.series.len(), 1);
    assert_eq!(
        state.series[0].minutes.len(),
        90,
        "one bucket per minute with traffic"
    );
    assert_eq!(state.series[0].hours.len(), 2);
    let json = serde_json::to_string(&state).unwrap();
    let back: SloTrackerState = serde_json::from_str(&json).unwrap();
    assert_eq!(back, state);

    let other = SloSpec::availability("gone", 99.0);
    let mut t2 = SloTracker::new(vec![slo], Arc::new(clock.clone())).unwrap();
    let mut with_unknown = back.clone();
    with_unknown.series.push(kiln_monitor::slo::SeriesState {
        slo: other.name.clone(),
        ..back.series[0].clone()
    });
    assert_eq!(t2.restore(with_unknown), 1);
    assert_eq!(t2.indicators(), t.indicators());
    assert!(
        t2.burn_rate("flights-availability", &l, 5 * MIN)
            .unwrap()
            .unwrap()
            > 14.4
    );
    assert_eq!(t2.state(), state);
}
