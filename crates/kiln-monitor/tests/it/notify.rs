//! Webhook delivery against a real HTTP receiver (axum on 127.0.0.1:0) that fails on demand.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::routing::post;
use kiln_monitor::alert::{AlertEngine, AlertingConfig, RouteConfig};
use kiln_monitor::clock::ManualClock;
use kiln_monitor::indicator::{Indicators, Labels};
use kiln_monitor::notify::{
    AlertmanagerConfig, NotificationStatus, Notifier, NotifyError, ReceiverConfig, RetryPolicy,
    WebhookAlert, WebhookPayload,
};
use serde_json::{Value, json};

use crate::alerts::{MIN, SEC, T0, latency_rule};

#[derive(Clone)]
struct Hit {
    at: Instant,
    path: String,
    content_type: String,
    body: Value,
}

#[derive(Clone)]
struct Receiver {
    hits: Arc<Mutex<Vec<Hit>>>,
    /// Answers `status` to the first `fail_first` requests, then 200.
    fail_first: usize,
    status: StatusCode,
    body: &'static str,
}

async fn hook(
    State(r): State<Receiver>,
    uri: Uri,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, &'static str) {
    let mut hits = r.hits.lock().unwrap();
    hits.push(Hit {
        at: Instant::now(),
        path: uri.path().to_string(),
        content_type: headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string(),
        body: serde_json::from_str(&body).unwrap_or(Value::Null),
    });
    if hits.len() <= r.fail_first {
        (r.status, r.body)
    } else {
        (StatusCode::OK, "")
    }
}

/// Starts a receiver; returns its webhook URL and the requests it got.
async fn receiver(
    fail_first: usize,
    status: StatusCode,
    body: &'static str,
) -> (String, Arc<Mutex<Vec<Hit>>>) {
    let (base, hits) = server(fail_first, status, body).await;
    (format!("{base}/hook"), hits)
}

/// Starts a server answering `/hook` and Alertmanager's `/api/v2/alerts`; returns its base URL
/// and the requests it got (on both paths, in order).
async fn server(
    fail_first: usize,
    status: StatusCode,
    body: &'static str,
) -> (String, Arc<Mutex<Vec<Hit>>>) {
    let hits = Arc::new(Mutex::new(Vec::new()));
    let state = Receiver {
        hits: hits.clone(),
        fail_first,
        status,
        body,
    };
    let app = Router::new()
        .route("/hook", post(hook))
        .route("/api/v2/alerts", post(hook))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (format!("http://{addr}"), hits)
}

fn hits(h: &Arc<Mutex<Vec<Hit>>>) -> Vec<Hit> {
    h.lock().unwrap().clone()
}

#[tokio::test]
async fn the_engine_delivers_alertmanager_v4_payloads_retrying_failed_attempts() {
    let (url, got) = receiver(2, StatusCode::SERVICE_UNAVAILABLE, "busy").await;
    let clock = ManualClock::new(T0);
    let cfg = AlertingConfig {
        route: RouteConfig {
            group_by: Some(vec!["alertname".into()]),
            ..RouteConfig::to_receiver("oncall")
        },
        retry: RetryPolicy {
            max_attempts: 5,
            initial_backoff_ms: 100,
            max_backoff_ms: 150,
        },
        external_url: "http://kiln.example:5000".into(),
        generator_url: "http://kiln.example:5000/alerts?rule={rule}".into(),
        ..AlertingConfig::new(
            vec![latency_rule(0)],
            ReceiverConfig::webhook("oncall", url),
        )
    };
    let mut e = AlertEngine::new(&cfg, Arc::new(clock.clone())).unwrap();
    let l = Labels::from_pairs([("deployment", "flights"), ("version", "3")]);

    let r = e.tick(&Indicators::new().with(&l, "p99_ms", 32.0)).await;
    assert_eq!(r.transitions.len(), 1);
    assert!(r.deliveries.is_empty(), "group_wait");
    assert!(hits(&got).is_empty());

    clock.advance_ms(30 * SEC);
    let r = e.tick(&Indicators::new().with(&l, "p99_ms", 32.0)).await;
    assert_eq!(r.deliveries.len(), 1);
    let d = r.deliveries[0].1.as_ref().unwrap();
    assert_eq!((d.attempts, d.status), (3, 200));

    let h = hits(&got);
    assert_eq!(h.len(), 3);
    assert!(
        h[1].at - h[0].at >= Duration::from_millis(100),
        "first backoff"
    );
    assert!(
        h[2].at - h[1].at >= Duration::from_millis(150),
        "second backoff, capped"
    );
    assert!(h[2].at - h[1].at < Duration::from_millis(1_000));
    let labels = json!({
        "alertname": "HighLatency", "deployment": "flights", "severity": "page",
        "team": "serving", "version": "3"
    });
    let annotations = json!({
        "summary": "p99 is 32 ms on flights", "runbook_url": "runbooks/latency.md"
    });
    let fingerprint = Labels::from_pairs([
        ("alertname", "HighLatency"),
        ("deployment", "flights"),
        ("severity", "page"),
        ("team", "serving"),
        ("version", "3"),
    ])
    .fingerprint_hex();
    let want = json!({
        "version": "4",
        "groupKey": "{}:{alertname=\"HighLatency\"}",
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "oncall",
        "groupLabels": {"alertname": "HighLatency"},
        "commonLabels": labels,
        "commonAnnotations": annotations,
        "externalURL": "http://kiln.example:5000",
        "alerts": [{
            "status": "firing",
            "labels": labels,
            "annotations": annotations,
            "startsAt": "2024-05-01T10:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://kiln.example:5000/alerts?rule=HighLatency",
            "fingerprint": fingerprint,
        }]
    });
    for hit in &h {
        assert_eq!(hit.body, want);
        assert_eq!(hit.content_type, "application/json");
    }

    // Resolution: sent once, at the group's next interval.
    clock.advance_ms(MIN);
    let r = e.tick(&Indicators::new().with(&l, "p99_ms", 8.0)).await;
    assert!(r.deliveries.is_empty());
    clock.set_ms(T0 + 30 * SEC + 5 * MIN);
    let r = e.tick(&Indicators::new().with(&l, "p99_ms", 8.0)).await;
    assert_eq!(r.deliveries.len(), 1);
    let h = hits(&got);
    assert_eq!(h.len(), 4);
    let body = &h[3].body;
    assert_eq!(body["status"], "resolved");
    assert_eq!(body["alerts"][0]["status"], "resolved");
    assert_eq!(body["alerts"][0]["startsAt"], "2024-05-01T10:00:00Z");
    assert_eq!(body["alerts"][0]["endsAt"], "2024-05-01T10:01:30Z");
    assert_eq!(body["alerts"][0]["fingerprint"], fingerprint);
    clock.advance_ms(5 * MIN);
    let r = e.tick(&Indicators::new().with(&l, "p99_ms", 8.0)).await;
    assert!(r.deliveries.is_empty());
    assert_eq!(hits(&got).len(), 4);
}

fn payload(n: usize) -> WebhookPayload {
    let alerts = (0..n)
        .map(|i| WebhookAlert {
            status: NotificationStatus::Firing,
            labels: Labels::from_pairs([
                ("alertname", "Drift".to_string()),
                ("column", format!("c{i}")),
            ]),
            annotations: Default::default(),
            starts_at: "2024-05-01T10:00:00Z".into(),
            ends_at: "0001-01-01T00:00:00Z".into(),
            generator_url: String::new(),
            fingerprint: format!("{i:016x}"),
        })
        .collect();
    WebhookPayload::new(
        "ignored",
        "{}:{}",
        Labels::new(),
        "http://kiln.example:5000",
        alerts,
    )
}

fn quick_retries(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        initial_backoff_ms: 20,
        max_backoff_ms: 40,
    }
}

#[tokio::test]
async fn the_notifier_gives_up_after_its_attempts_and_the_group_is_retried_later() {
    let (url, got) = receiver(usize::MAX, StatusCode::INTERNAL_SERVER_ERROR, "boom").await;
    let n = Notifier::new(&[ReceiverConfig::webhook("r", &url)], quick_retries(3)).unwrap();
    let t = Instant::now();
    match n.send("r", &payload(1)).await {
        Err(NotifyError::GaveUp {
            attempts,
            last_error,
            ..
        }) => {
            assert_eq!(attempts, 3);
            assert!(
                last_error.contains("500") && last_error.contains("boom"),
                "{last_error}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(hits(&got).len(), 3);
    assert!(
        t.elapsed() >= Duration::from_millis(60),
        "20 + 40 ms of backoff"
    );

    // Nobody listening: transport errors are retried too.
    let free = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = format!("http://{}/hook", free.local_addr().unwrap());
    drop(free);
    let n = Notifier::new(&[ReceiverConfig::webhook("dead", dead)], quick_retries(2)).unwrap();
    assert!(matches!(
        n.send("dead", &payload(1)).await,
        Err(NotifyError::GaveUp { attempts: 2, .. })
    ));
    assert!(matches!(
        n.send("nobody", &payload(1)).await,
        Err(NotifyError::UnknownReceiver(_))
    ));

    // Through the engine: a failed delivery is sent again at the group's next interval.
    let (url, got) = receiver(3, StatusCode::BAD_GATEWAY, "").await;
    let clock = ManualClock::new(T0);
    let cfg = AlertingConfig {
        retry: quick_retries(3),
        ..AlertingConfig::new(
            vec![latency_rule(0)],
            ReceiverConfig::webhook("oncall", url),
        )
    };
    let mut e = AlertEngine::new(&cfg, Arc::new(clock.clone())).unwrap();
    let l = Labels::from_pairs([("deployment", "flights")]);
    let snap = Indicators::new().with(&l, "p99_ms", 32.0);
    e.tick(&snap).await;
    clock.advance_ms(30 * SEC);
    let r = e.tick(&snap).await;
    assert!(r.deliveries[0].1.is_err());
    assert_eq!(hits(&got).len(), 3);
    clock.advance_ms(5 * MIN);
    let r = e.tick(&snap).await;
    assert_eq!(r.deliveries[0].1.as_ref().unwrap().attempts, 1);
    assert_eq!(hits(&got)[3].body, hits(&got)[0].body);
    clock.advance_ms(5 * MIN);
    assert!(
        e.tick(&snap).await.deliveries.is_empty(),
        "delivered now: nothing changed"
    );
}

#[tokio::test]
async fn client_errors_are_not_retried_and_max_alerts_truncates() {
    let (url, got) = receiver(1, StatusCode::BAD_REQUEST, "bad payload").await;
    let rx = ReceiverConfig {
        max_alerts: 2,
        ..ReceiverConfig::webhook("chat", &url)
    };
    let n = Notifier::new(&[rx], quick_retries(5)).unwrap();
    match n.send("chat", &payload(5)).await {
        Err(NotifyError::Rejected { status, body, .. }) => {
            assert_eq!(status, 400);
            assert_eq!(body, "bad payload");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(hits(&got).len(), 1);

    let d = n.send("chat", &payload(5)).await.unwrap();
    assert_eq!(d.attempts, 1);
    let body = &hits(&got)[1].body;
    assert_eq!(body["alerts"].as_array().unwrap().len(), 2);
    assert_eq!(body["truncatedAlerts"], 3);
    assert_eq!(body["receiver"], "chat");
    assert_eq!(body["alerts"][1]["labels"]["column"], "c1");
}

#[tokio::test]
async fn alerts_are_posted_to_a_real_alertmanager_on_change_and_every_resend_delay() {
    let (base, got) = server(1, StatusCode::SERVICE_UNAVAILABLE, "starting").await;
    let clock = ManualClock::new(T0);
    let cfg = AlertingConfig {
        alertmanagers: vec![AlertmanagerConfig::new(format!("{base}/"))],
        resend_delay_ms: MIN,
        retry: quick_retries(3),
        generator_url: "http://kiln.example:5000/alerts?rule={rule}".into(),
        ..AlertingConfig::new(
            vec![latency_rule(0)],
            ReceiverConfig::webhook("oncall", format!("{base}/hook")),
        )
    };
    let mut e = AlertEngine::new(&cfg, Arc::new(clock.clone())).unwrap();
    let l = Labels::from_pairs([("deployment", "flights")]);
    let hot = Indicators::new().with(&l, "p99_ms", 30.0);
    let am_posts = |got: &Arc<Mutex<Vec<Hit>>>| -> Vec<Value> {
        hits(got)
            .into_iter()
            .filter(|h| h.path == "/api/v2/alerts")
            .map(|h| h.body)
            .collect()
    };

    // Fires: posted at once (the first attempt gets a 503 and is retried).
    let r = e.tick(&hot).await;
    assert_eq!(r.alertmanager_posts.len(), 1);
    assert_eq!(r.alertmanager_posts[0].1.as_ref().unwrap().attempts, 2);
    let posts = am_posts(&got);
    assert_eq!(posts.len(), 2);
    assert_eq!(
        posts[1],
        json!([{
            "labels": {"alertname": "HighLatency", "deployment": "flights", "severity": "page", "team": "serving"},
            "annotations": {"summary": "p99 is 30 ms on flights", "runbook_url": "runbooks/latency.md"},
            "startsAt": "2024-05-01T10:00:00Z",
            "endsAt": "2024-05-01T10:04:00Z",
            "generatorURL": "http://kiln.example:5000/alerts?rule=HighLatency"
        }])
    );

    // Unchanged: not re-posted before the resend delay, then re-posted with a later endsAt.
    clock.advance_ms(30 * SEC);
    let r = e.tick(&hot).await;
    assert!(r.alertmanager_posts.is_empty());
    assert_eq!(
        r.deliveries.len(),
        1,
        "the webhook receiver still gets its notification"
    );
    clock.advance_ms(30 * SEC);
    assert_eq!(e.tick(&hot).await.alertmanager_posts.len(), 1);
    let posts = am_posts(&got);
    assert_eq!(posts.len(), 3);
    assert_eq!(posts[2][0]["endsAt"], "2024-05-01T10:05:00Z");

    // Resolved: posted at once with the time it resolved.
    clock.advance_ms(30 * SEC);
    let r = e.tick(&Indicators::new().with(&l, "p99_ms", 5.0)).await;
    assert_eq!(r.alertmanager_posts.len(), 1);
    let posts = am_posts(&got);
    assert_eq!(posts[3][0]["endsAt"], "2024-05-01T10:01:30Z");
    assert_eq!(posts[3][0]["startsAt"], "2024-05-01T10:00:00Z");
}
