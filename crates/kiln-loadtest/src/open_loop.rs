//! Open-loop load at a constant rate, without coordinated omission.
//!
//! Request *i* is due at `t0 + i / rate` ([`Schedule`]). A dedicated scheduler thread
//! sleeps until each due time (an OS sleep, precise to tens of microseconds where the async
//! runtime's timer ticks in milliseconds) and hands the request to the runtime, whether or
//! not earlier requests have been answered. A request's latency is measured from its due
//! time, not from when it was sent: if the server (or the generator) falls behind, every
//! request that should have gone out meanwhile carries the delay, as its user would have
//! seen it. A closed loop would instead send fewer requests during a stall and hide it.
//!
//! `max_outstanding` bounds the requests in flight; a request due while the bound is
//! reached is not sent and is counted as `dropped`, an error, never skipped silently.
//! Requests due during `warmup` are sent but not counted.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::stats::{Outcome, Recorder, Summary};
use crate::target::Target;
use crate::{LoadtestError, Result};

/// How the open loop loads the server.
#[derive(Debug, Clone)]
pub struct OpenLoopConfig {
    /// Requests per second.
    pub rate: f64,
    /// The measured period.
    pub duration: Duration,
    /// A period before it whose requests are sent but not counted.
    pub warmup: Duration,
    /// Requests in flight at most; more are dropped (and counted).
    pub max_outstanding: usize,
}

/// When each request is due, relative to the start: pure arithmetic, so it can be tested.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    rate: f64,
    warmup: Duration,
    duration: Duration,
}

/// Tolerance for `seconds × rate` landing a hair off an integer in floating point.
const EPS: f64 = 1e-9;

impl Schedule {
    pub fn new(config: &OpenLoopConfig) -> Result<Schedule> {
        if !(config.rate.is_finite() && config.rate > 0.0) {
            return Err(LoadtestError::Invalid(format!(
                "--rate must be a positive number of requests per second, not {}",
                config.rate
            )));
        }
        if config.duration.is_zero() {
            return Err(LoadtestError::Invalid(
                "--duration must be more than 0".into(),
            ));
        }
        if config.max_outstanding == 0 {
            return Err(LoadtestError::Invalid(
                "--max-outstanding must be at least 1".into(),
            ));
        }
        let s = Schedule {
            rate: config.rate,
            warmup: config.warmup,
            duration: config.duration,
        };
        if s.total() > 100_000_000 {
            return Err(LoadtestError::Invalid(format!(
                "{} requests at {} req/s is more than 100,000,000",
                s.total(),
                s.rate
            )));
        }
        Ok(s)
    }

    /// When request `i` is due: `i / rate` after the start.
    pub fn due(&self, i: u64) -> Duration {
        Duration::from_secs_f64(i as f64 / self.rate)
    }

    /// Requests due before `t`: those with `i / rate < t`.
    fn due_before(&self, t: Duration) -> u64 {
        (t.as_secs_f64() * self.rate - EPS).ceil().max(0.0) as u64
    }

    /// Every request: those due in the warmup and in the measured period.
    pub fn total(&self) -> u64 {
        self.due_before(self.warmup + self.duration)
    }

    /// The first measured request (the first due at or after the warmup).
    pub fn first_measured(&self) -> u64 {
        self.due_before(self.warmup)
    }

    /// Requests in the measured period: `duration × rate`, rounded up.
    pub fn measured(&self) -> u64 {
        self.total() - self.first_measured()
    }
}

/// The result of an open-loop run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OpenLoopReport {
    /// The offered rate, requests per second.
    pub rate: f64,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub max_outstanding: usize,
    /// The requests of the measured period, measured from the start of that period to the
    /// end of the period or the last answer, whichever is later.
    #[serde(flatten)]
    pub summary: Summary,
}

/// What the request tasks share: the recorder of the measured requests and when the last
/// of them was answered.
struct Shared {
    recorder: Recorder,
    last_answer: Option<Instant>,
}

/// Runs the open loop; returns when every request has been answered or has failed.
pub async fn run(
    http: &reqwest::Client,
    target: Arc<Target>,
    config: &OpenLoopConfig,
) -> Result<OpenLoopReport> {
    let schedule = Schedule::new(config)?;
    let shared = Arc::new(Mutex::new(Shared {
        recorder: Recorder::new(),
        last_answer: None,
    }));
    let outstanding = Arc::new(AtomicUsize::new(0));
    // Every request task holds a clone of `done_tx`; `done_rx` yields `None` once the
    // scheduler has finished and every task has dropped its clone.
    let (done_tx, mut done_rx) = tokio::sync::mpsc::channel::<()>(1);
    let runtime = tokio::runtime::Handle::current();
    let http = http.clone();
    let max_outstanding = config.max_outstanding;
    // Start a little ahead so the first requests are not late by the thread's start-up.
    let t0 = Instant::now() + Duration::from_millis(5);
    let measured_from = t0 + config.warmup;
    let first_measured = schedule.first_measured();
    let rows = target.rows;
    tracing::info!(
        rate = config.rate,
        requests = schedule.measured(),
        "open loop: {} requests at {} req/s",
        schedule.measured(),
        config.rate
    );
    let scheduler = {
        let shared = shared.clone();
        std::thread::Builder::new()
            .name("kiln-loadtest-schedule".into())
            .spawn(move || {
                for i in 0..schedule.total() {
                    let due = t0 + schedule.due(i);
                    let now = Instant::now();
                    if due > now {
                        std::thread::sleep(due - now);
                    }
                    let counted = i >= first_measured;
                    if outstanding.load(Ordering::Acquire) >= max_outstanding {
                        if counted {
                            let mut s = shared.lock().unwrap_or_else(|e| e.into_inner());
                            s.recorder.record(Outcome::Dropped, Duration::ZERO);
                        }
                        continue;
                    }
                    outstanding.fetch_add(1, Ordering::AcqRel);
                    let (target, http, shared, outstanding, done) = (
                        target.clone(),
                        http.clone(),
                        shared.clone(),
                        outstanding.clone(),
                        done_tx.clone(),
                    );
                    runtime.spawn(async move {
                        let lag = due.elapsed();
                        let outcome = target.send(&http, i).await;
                        let answered = Instant::now();
                        outstanding.fetch_sub(1, Ordering::AcqRel);
                        if counted {
                            let mut s = shared.lock().unwrap_or_else(|e| e.into_inner());
                            // From the due time: the lag and any stall are the user's wait.
                            s.recorder
                                .record(outcome, answered.saturating_duration_since(due));
                            s.recorder.record_lag(lag);
                            s.last_answer =
                                Some(s.last_answer.map_or(answered, |l| l.max(answered)));
                        }
                        drop(done);
                    });
                }
                drop(done_tx);
            })
            .map_err(|e| LoadtestError::Internal(format!("cannot start the scheduler: {e}")))?
    };
    // Every task has finished once the channel closes (each request is bounded by the
    // client's timeout).
    let _ = done_rx.recv().await;
    scheduler
        .join()
        .map_err(|_| LoadtestError::Internal("the scheduler thread panicked".into()))?;
    let s = shared.lock().unwrap_or_else(|e| e.into_inner());
    let end = (measured_from + config.duration).max(s.last_answer.unwrap_or(measured_from));
    let summary = s.recorder.summary(end - measured_from, rows);
    Ok(OpenLoopReport {
        rate: config.rate,
        duration_s: config.duration.as_secs_f64(),
        warmup_s: config.warmup.as_secs_f64(),
        max_outstanding: config.max_outstanding,
        summary,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(rate: f64, warmup_ms: u64, duration_ms: u64) -> Schedule {
        Schedule::new(&OpenLoopConfig {
            rate,
            duration: Duration::from_millis(duration_ms),
            warmup: Duration::from_millis(warmup_ms),
            max_outstanding: 10,
        })
        .unwrap()
    }

    #[test]
    fn due_times_are_i_over_rate() {
        let s = schedule(200.0, 0, 2000);
        assert_eq!(s.due(0), Duration::ZERO);
        assert_eq!(s.due(1), Duration::from_millis(5));
        assert_eq!(s.due(399), Duration::from_millis(1995));
        assert_eq!((s.total(), s.first_measured(), s.measured()), (400, 0, 400));
        // Not an integer number of requests: the last one due before the end is sent.
        let s = schedule(3.0, 0, 1000);
        assert_eq!(s.total(), 3);
        let s = schedule(2.5, 0, 1000);
        assert_eq!(s.total(), 3); // at 0, 0.4 s and 0.8 s
        let s = schedule(0.1, 0, 1000);
        assert_eq!(s.total(), 1);
        // 0.1 × 30 is 3.0000000000000004 in floating point; still 3 requests.
        let s = schedule(30.0, 0, 100);
        assert_eq!(s.total(), 3);
    }

    #[test]
    fn warmup_requests_come_first_and_are_not_measured() {
        let s = schedule(100.0, 500, 1000);
        assert_eq!(s.total(), 150);
        assert_eq!(s.first_measured(), 50);
        assert_eq!(s.due(50), Duration::from_millis(500));
        assert_eq!(s.measured(), 100);
        let s = schedule(3.0, 500, 1000); // due at 0, 1/3, 2/3, 1, 4/3 s
        assert_eq!((s.total(), s.first_measured(), s.measured()), (5, 2, 3));
    }

    proptest::proptest! {
        /// Every request due before the end is sent, none after it, and the measured ones
        /// are exactly those due at or after the warmup.
        #[test]
        fn the_schedule_covers_the_period_exactly(
            rate in 0.5f64..20_000.0,
            warmup_ms in 0u64..3_000,
            duration_ms in 1u64..5_000,
        ) {
            let s = schedule(rate, warmup_ms, duration_ms);
            let warmup = Duration::from_millis(warmup_ms);
            let end = warmup + Duration::from_millis(duration_ms);
            // Due times are compared with a microsecond of slack for floating point.
            let ns = Duration::from_micros(1);
            proptest::prop_assert!(s.total() >= 1);
            proptest::prop_assert!(s.due(s.total() - 1) < end + ns);
            proptest::prop_assert!(s.due(s.total()) + ns >= end);
            if s.first_measured() > 0 {
                proptest::prop_assert!(s.due(s.first_measured() - 1) < warmup + ns);
            }
            proptest::prop_assert!(s.due(s.first_measured()) + ns >= warmup);
            let expected = Duration::from_millis(duration_ms).as_secs_f64() * rate;
            proptest::prop_assert!((s.measured() as f64 - expected).abs() <= 1.0 + 1e-6);
        }
    }

    #[test]
    fn refuses_impossible_configs() {
        let c = |rate: f64, ms: u64, out: usize| OpenLoopConfig {
            rate,
            duration: Duration::from_millis(ms),
            warmup: Duration::ZERO,
            max_outstanding: out,
        };
        for bad in [
            c(0.0, 1000, 1),
            c(-1.0, 1000, 1),
            c(f64::NAN, 1000, 1),
            c(10.0, 0, 1),
            c(10.0, 1000, 0),
            c(1e9, 1_000_000, 1),
        ] {
            assert!(Schedule::new(&bad).is_err(), "{bad:?}");
        }
    }
}
