//! The open loop: schedule-based latency, drops, statuses, warmup, binary bodies.

use std::time::Duration;

use kiln_loadtest::report::Runs;
use kiln_loadtest::{Mode, OpenLoopConfig, Options, Protocol, Report, TargetSpec};

use crate::server::{Behavior, start, start_detached};

pub fn spec(url: &str) -> TargetSpec {
    TargetSpec {
        url: url.to_string(),
        protocol: Protocol::Oip,
        model: Some("m".into()),
        body: None,
        content_type: "application/json".into(),
        rows: None,
        binary: false,
        seed: 1,
    }
}

pub fn open_loop(rate: f64, duration_ms: u64) -> OpenLoopConfig {
    OpenLoopConfig {
        rate,
        duration: Duration::from_millis(duration_ms),
        warmup: Duration::ZERO,
        max_outstanding: 1000,
    }
}

async fn run(target: TargetSpec, config: OpenLoopConfig, slo: Option<&str>) -> Report {
    kiln_loadtest::run(&Options {
        target,
        mode: Mode::OpenLoop(config),
        timeout: Duration::from_secs(10),
        slo: slo.map(|s| kiln_loadtest::Slo::parse(s).unwrap()),
    })
    .await
    .unwrap()
}

fn summary(r: &Report) -> &kiln_loadtest::Summary {
    match &r.runs {
        Runs::OpenLoop(o) => &o.summary,
        Runs::Sweep { .. } => panic!("not an open loop"),
    }
}

/// The server pauses for 500 ms, 300 ms into the run. A closed loop would wait with it and
/// record one slow request per connection; the open loop keeps sending on schedule, and
/// each request due during the pause is answered only at its end, so its latency, counted
/// from when it was due, is the rest of the pause: 500, 490, … 10 ms for the 50 requests
/// due in it at 100 req/s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stall_shows_in_every_request_scheduled_during_it() {
    let server = start(Behavior {
        stall: Some((Duration::from_millis(300), Duration::from_millis(500))),
        ..Behavior::default()
    })
    .await;
    let r = run(spec(&server.url), open_loop(100.0, 1500), None).await;
    let s = summary(&r);
    assert_eq!((s.requests, s.ok, s.errors), (150, 150, 0), "{s:?}");
    let l = &s.latency_ms;
    // One in three requests waited out part of the pause: more than the top 10 %.
    assert!(l.p90 >= 250.0, "p90 {l:?}");
    assert!(l.p99 >= 400.0, "p99 {l:?}");
    assert!(l.max >= 450.0 && l.max < 1000.0, "max {l:?}");
    // Requests outside the pause were fast.
    assert!(l.p50 < 100.0, "p50 {l:?}");
    // The generator itself kept to the schedule.
    let lag = s.schedule_lag_ms.as_ref().unwrap();
    assert!(lag.p50_ms < 20.0, "{lag:?}");
    assert_eq!(server.requests(), 151); // and the probe
}

/// The generator itself falls behind: its only runtime worker is blocked for 300 ms (as
/// by a pause in the client), so requests due meanwhile are sent late, when it resumes, and
/// answered at once by a server that never paused. Counted from the scheduled time, their
/// latencies still include the wait — as their users' would — and the send lag shows whose
/// fault it was; counted from the send they would all look fast.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn latency_counts_from_the_scheduled_time_when_the_generator_is_late() {
    let url = start_detached(Behavior::default());
    tokio::spawn(async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        std::thread::sleep(Duration::from_millis(300));
    });
    let r = run(spec(&url), open_loop(100.0, 1000), None).await;
    let s = summary(&r);
    assert_eq!((s.requests, s.ok), (100, 100), "{s:?}");
    let l = &s.latency_ms;
    assert!(l.p90 >= 100.0, "{l:?}");
    assert!(l.max >= 200.0, "{l:?}");
    assert!(l.p50 < 100.0, "{l:?}");
    let lag = s.schedule_lag_ms.as_ref().unwrap();
    assert!(lag.max_ms >= 200.0, "{lag:?}");
}

/// With `max_outstanding` requests in flight, a request that falls due is not sent: it is
/// counted as dropped, an error, and the run still accounts for every scheduled request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_over_max_outstanding_are_dropped_and_counted() {
    let server = start(Behavior {
        delay: Duration::from_millis(300),
        ..Behavior::default()
    })
    .await;
    let mut config = open_loop(100.0, 500);
    config.max_outstanding = 5;
    let r = run(spec(&server.url), config, Some("error_rate=1%")).await;
    let s = summary(&r);
    assert_eq!(s.requests, 50, "{s:?}");
    assert!(s.dropped >= 20, "{s:?}");
    assert_eq!(s.ok + s.dropped, 50, "{s:?}");
    assert_eq!(s.errors, s.dropped, "{s:?}");
    assert!(s.error_rate > 0.3, "{s:?}");
    let slo = r.slo.as_ref().unwrap();
    assert!(!slo.pass);
    assert!(r.table().contains("dropped×"), "{}", r.table());
}

/// Non-2xx answers are errors, counted by status; 429 also on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_are_counted_by_code() {
    let server = start(Behavior {
        // The probe is request 0 and gets a 429, which does not stop the run.
        statuses: vec![(4, 429, 0), (10, 500, 5)],
        ..Behavior::default()
    })
    .await;
    let r = run(spec(&server.url), open_loop(200.0, 500), None).await;
    let s = summary(&r);
    // Requests 1..=100: 25 multiples of 4, and 5, 15, … 95 (odd, so never a multiple of 4).
    assert_eq!(s.requests, 100, "{s:?}");
    assert_eq!(s.rejected_429, 25, "{s:?}");
    assert_eq!(s.errors_by_status.get(&500), Some(&10), "{s:?}");
    assert_eq!((s.ok, s.errors), (65, 35), "{s:?}");
    assert!((s.error_rate - 0.35).abs() < 1e-9);
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["errors_by_status"]["429"], 25, "{json}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warmup_requests_are_sent_but_not_counted() {
    let server = start(Behavior::default()).await;
    let mut config = open_loop(100.0, 500);
    config.warmup = Duration::from_millis(300);
    let r = run(spec(&server.url), config, None).await;
    let s = summary(&r);
    assert_eq!((s.requests, s.ok), (50, 50), "{s:?}");
    assert_eq!(server.requests(), 1 + 30 + 50);
    // Throughput over the measured half second only.
    assert!(s.elapsed_s >= 0.5 && s.elapsed_s < 0.7, "{s:?}");
    assert!(
        s.throughput_rps > 70.0 && s.throughput_rps <= 100.0,
        "{s:?}"
    );
}

/// Generated bodies with several rows, JSON and binary, are what the server expects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_json_and_binary_bodies_are_accepted() {
    let server = start(Behavior::default()).await;
    for binary in [false, true] {
        let mut target = spec(&server.url);
        target.rows = Some(3);
        target.binary = binary;
        let r = run(target, open_loop(100.0, 300), Some("p99=1s,throughput>=1")).await;
        let s = summary(&r);
        assert_eq!((s.requests, s.ok), (30, 30), "binary {binary}: {s:?}");
        assert!((s.rows_per_s - 3.0 * s.throughput_rps).abs() < 1e-6);
        assert_eq!(r.target.rows_per_request, 3);
        assert_eq!(
            r.target.body,
            if binary { "oip-binary" } else { "oip-json" }
        );
        assert!(r.slo.as_ref().unwrap().pass, "{}", r.table());
    }
}
