//! The closed-loop sweep against a server with a fixed service time.

use std::time::Duration;

use kiln_loadtest::report::Runs;
use kiln_loadtest::{LevelReport, Levels, Mode, Options, SweepConfig};

use crate::open_loop::spec;
use crate::server::{Behavior, start};

async fn sweep(url: &str, config: SweepConfig, timeout: Duration) -> Vec<LevelReport> {
    let r = kiln_loadtest::run(&Options {
        target: spec(url),
        mode: Mode::Sweep(config),
        timeout,
        slo: None,
    })
    .await
    .unwrap();
    match r.runs {
        Runs::Sweep { levels } => levels,
        Runs::OpenLoop(_) => panic!("not a sweep"),
    }
}

/// With a 10 ms service time, N workers make about N × 100 requests per second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throughput_grows_with_concurrency_against_a_fixed_service_time() {
    let server = start(Behavior {
        delay: Duration::from_millis(10),
        ..Behavior::default()
    })
    .await;
    let levels = sweep(
        &server.url,
        SweepConfig {
            levels: Levels(vec![1, 4]),
            window: Duration::from_millis(300),
            stability_pct: 50.0,
            max_windows: 8,
            warmup: Duration::from_millis(100),
        },
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(levels.len(), 2);
    for l in &levels {
        assert_eq!(l.summary.errors, 0, "{l:?}");
        assert!(l.windows_measured >= 3 && l.windows_measured <= 8, "{l:?}");
        assert_eq!(l.windows.len(), l.windows_measured);
        let lat = &l.summary.latency_ms;
        assert!(
            lat.p50 >= 10.0 && lat.p50 <= lat.p90 && lat.p90 <= lat.p99,
            "{lat:?}"
        );
        assert!(lat.p99 <= lat.p999 && lat.p999 <= lat.max, "{lat:?}");
        // The figures are those of the last three windows.
        let secs: f64 = l.summary.elapsed_s;
        assert!(secs > 0.8 && secs < 1.5, "{secs}");
    }
    let (one, four) = (&levels[0].summary, &levels[1].summary);
    assert!(
        one.throughput_rps > 30.0 && one.throughput_rps <= 100.0,
        "{one:?}"
    );
    assert!(
        four.throughput_rps > 2.0 * one.throughput_rps,
        "{one:?} {four:?}"
    );
}

/// A server that answers nothing never looks stable: the level is reported unstable after
/// `max_windows`, with no successful request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_server_is_reported_unstable() {
    let server = start(Behavior {
        // The probe (the first request) is answered; nothing after it is.
        hang_from: Some(1),
        ..Behavior::default()
    })
    .await;
    let levels = sweep(
        &server.url,
        SweepConfig {
            levels: Levels(vec![2]),
            window: Duration::from_millis(100),
            stability_pct: 10.0,
            max_windows: 3,
            warmup: Duration::ZERO,
        },
        Duration::from_secs(5),
    )
    .await;
    let l = &levels[0];
    assert!(!l.stable, "{l:?}");
    assert_eq!(l.windows_measured, 3);
    assert_eq!(l.summary.ok, 0, "{l:?}");
}
