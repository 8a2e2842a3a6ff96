//! Silences: matching, time ranges, expiry, validation, serialisation, and their effect on
//! notifications.

use kiln_monitor::alert::{AlertState, SilenceError, SilenceSpec, SilenceState, Silences};
use kiln_monitor::clock::ManualClock;
use kiln_monitor::indicator::{Indicators, Labels, Matcher};
use kiln_monitor::notify::NotificationStatus;

use crate::alerts::{MIN, SEC, T0, engine, latency_rule};

fn m(s: &str) -> Matcher {
    Matcher::parse(s).unwrap()
}

fn spec(matchers: &[&str], start: Option<i64>, end: i64) -> SilenceSpec {
    SilenceSpec {
        matchers: matchers.iter().map(|s| m(s)).collect(),
        starts_at_ms: start,
        ends_at_ms: end,
        created_by: "ana".into(),
        comment: "deploying a fix".into(),
    }
}

#[test]
fn a_silenced_alert_keeps_its_state_but_is_not_notified_until_the_silence_ends() {
    let clock = ManualClock::new(T0);
    let mut e = engine(vec![latency_rule(0)], &clock);
    let flights = Labels::from_pairs([("deployment", "flights")]);
    let churn = Labels::from_pairs([("deployment", "churn")]);
    let snap = Indicators::new()
        .with(&flights, "p99_ms", 30.0)
        .with(&churn, "p99_ms", 30.0);

    let id = e
        .add_silence(SilenceSpec::for_duration(
            vec![m("alertname=HighLatency"), m(r#"deployment=~"fli.*""#)],
            T0,
            10 * MIN,
            "ana",
            "known: cache warming",
        ))
        .unwrap();
    e.evaluate(&snap);
    let alerts = e.alerts();
    assert_eq!(alerts.len(), 2);
    for a in &alerts {
        assert_eq!(
            a.alert.state,
            AlertState::Firing,
            "silenced alerts still fire"
        );
        let silenced = a.alert.labels.get("deployment") == Some("flights");
        assert_eq!(
            a.silenced_by,
            if silenced { vec![id.clone()] } else { vec![] }
        );
    }

    clock.advance_ms(30 * SEC);
    e.evaluate(&snap);
    let sent = e.due_notifications();
    assert_eq!(sent.len(), 1);
    let deployments: Vec<&str> = sent[0]
        .payload
        .alerts
        .iter()
        .map(|a| a.labels.get("deployment").unwrap())
        .collect();
    assert_eq!(deployments, vec!["churn"]);
    e.delivered(&sent[0]);

    // The silence expires by itself at 10 minutes; the next flush (T0 + 10m30s) sends flights.
    clock.set_ms(T0 + 5 * MIN + 30 * SEC);
    e.evaluate(&snap);
    assert!(e.due_notifications().is_empty());
    clock.set_ms(T0 + 10 * MIN + 30 * SEC);
    e.evaluate(&snap);
    assert!(e.alerts().iter().all(|a| a.silenced_by.is_empty()));
    let sent = e.due_notifications();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].payload.alerts.len(), 2);
    assert_eq!(
        e.silences().get(&id).unwrap().state(clock_now(&clock)),
        SilenceState::Expired
    );
}

fn clock_now(c: &ManualClock) -> i64 {
    crate::alerts::clock_now(c)
}

#[test]
fn expiring_a_silence_by_hand_lets_a_resolution_through() {
    let clock = ManualClock::new(T0);
    let mut e = engine(vec![latency_rule(0)], &clock);
    let l = Labels::from_pairs([("deployment", "flights")]);
    e.evaluate(&Indicators::new().with(&l, "p99_ms", 30.0));
    clock.advance_ms(30 * SEC);
    let sent = e.due_notifications();
    e.delivered(&sent[0]);

    let id = e
        .add_silence(SilenceSpec::for_duration(
            vec![m("deployment=flights")],
            T0,
            4 * 60 * MIN,
            "ana",
            "rollback",
        ))
        .unwrap();
    clock.advance_ms(MIN);
    e.evaluate(&Indicators::new().with(&l, "p99_ms", 5.0));
    // Resolved while silenced: nothing is sent; the resolved alert leaves its group unsent.
    clock.advance_ms(5 * MIN);
    assert!(e.due_notifications().is_empty());
    assert_eq!(e.groups().count(), 0);
    e.expire_silence(&id).unwrap();
    assert_eq!(
        e.expire_silence(&id),
        Err(SilenceError::AlreadyExpired(id.clone()))
    );
    assert_eq!(
        e.expire_silence("nope"),
        Err(SilenceError::NotFound("nope".into()))
    );

    // Fires again after the silence: a new alert, notified after group_wait.
    e.evaluate(&Indicators::new().with(&l, "p99_ms", 30.0));
    clock.advance_ms(30 * SEC);
    let sent = e.due_notifications();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].payload.status, NotificationStatus::Firing);
}

#[test]
fn silences_are_pending_active_then_expired() {
    let mut s = Silences::new();
    let l = Labels::from_pairs([("alertname", "Drift"), ("deployment", "flights")]);
    let id = s
        .add(spec(&["alertname=Drift"], Some(T0 + MIN), T0 + 3 * MIN), T0)
        .unwrap();
    let sil = s.get(&id).unwrap().clone();
    assert_eq!(sil.state(T0), SilenceState::Pending);
    assert!(!s.is_silenced(&l, T0));
    assert_eq!(sil.state(T0 + MIN), SilenceState::Active);
    assert!(s.is_silenced(&l, T0 + MIN));
    assert!(!s.is_silenced(
        &Labels::from_pairs([("alertname", "HighLatency")]),
        T0 + MIN
    ));
    assert_eq!(sil.state(T0 + 3 * MIN), SilenceState::Expired);
    assert!(!s.is_silenced(&l, T0 + 3 * MIN));

    // Expiring a pending silence means it never starts.
    let id2 = s
        .add(
            spec(
                &["alertname=Drift", "deployment!=churn"],
                Some(T0 + 10 * MIN),
                T0 + 20 * MIN,
            ),
            T0,
        )
        .unwrap();
    s.expire(&id2, T0 + MIN).unwrap();
    let sil2 = s.get(&id2).unwrap();
    assert_eq!((sil2.starts_at_ms, sil2.ends_at_ms), (T0 + MIN, T0 + MIN));
    assert!(!s.is_silenced(&l, T0 + 15 * MIN));

    // A start in the past is moved to now, as Alertmanager does.
    let id3 = s
        .add(spec(&["deployment=flights"], Some(T0 - MIN), T0 + MIN), T0)
        .unwrap();
    assert_eq!(s.get(&id3).unwrap().starts_at_ms, T0);

    // Garbage collection drops long-expired silences only.
    assert_eq!(s.len(), 3);
    assert_eq!(s.gc(T0 + 12 * MIN, 10 * MIN), 2);
    assert_eq!(
        s.list().map(|x| x.id.clone()).collect::<Vec<_>>(),
        vec![id.clone()]
    );
}

#[test]
fn silences_are_validated() {
    let mut s = Silences::new();
    let cases = [
        (spec(&[], None, T0 + MIN), SilenceError::NoMatchers),
        (
            spec(&["team=~.*", "env!=prod"], None, T0 + MIN),
            SilenceError::MatchesEverything,
        ),
        (spec(&["team=a"], None, T0), SilenceError::EndInPast),
        (
            spec(&["team=a"], Some(T0 + 2 * MIN), T0 + MIN),
            SilenceError::EndBeforeStart,
        ),
        (
            SilenceSpec {
                created_by: " ".into(),
                ..spec(&["team=a"], None, T0 + MIN)
            },
            SilenceError::MissingCreatedBy,
        ),
        (
            SilenceSpec {
                comment: String::new(),
                ..spec(&["team=a"], None, T0 + MIN)
            },
            SilenceError::MissingComment,
        ),
    ];
    for (sp, want) in cases {
        assert_eq!(s.add(sp, T0), Err(want));
    }
    assert!(s.is_empty());
}

#[test]
fn silences_serialise_in_alertmanagers_api_shape() {
    let mut s = Silences::new();
    let id = s
        .add(
            spec(
                &["alertname=HighLatency", r#"deployment=~"flights-.*""#],
                None,
                T0 + 2 * 60 * MIN,
            ),
            T0,
        )
        .unwrap();
    assert_eq!(id.len(), 36, "a UUID");
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(
        json,
        serde_json::json!([{
            "id": id,
            "matchers": [
                {"name": "alertname", "value": "HighLatency", "isRegex": false, "isEqual": true},
                {"name": "deployment", "value": "flights-.*", "isRegex": true, "isEqual": true}
            ],
            "startsAt": "2024-05-01T10:00:00Z",
            "endsAt": "2024-05-01T12:00:00Z",
            "updatedAt": "2024-05-01T10:00:00Z",
            "createdBy": "ana",
            "comment": "deploying a fix"
        }])
    );
    let back: Silences = serde_json::from_value(json).unwrap();
    assert_eq!(back, s);
    assert!(back.is_silenced(
        &Labels::from_pairs([("alertname", "HighLatency"), ("deployment", "flights-eu")]),
        T0 + MIN
    ));
    // A new silence as an API client posts it.
    let posted: SilenceSpec = serde_json::from_value(serde_json::json!({
        "matchers": [{"name": "severity", "value": "ticket", "isRegex": false, "isEqual": false}],
        "startsAt": "2024-05-01T10:00:00Z", "endsAt": "2024-05-01T11:00:00+00:00",
        "createdBy": "bot", "comment": "maintenance"
    }))
    .unwrap();
    assert_eq!(posted.ends_at_ms, T0 + 60 * MIN);
    assert!(!posted.matchers[0].matches(&Labels::from_pairs([("severity", "ticket")])));
}
