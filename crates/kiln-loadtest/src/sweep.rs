//! A closed-loop concurrency sweep with stability windows, as Triton's perf_analyzer
//! measures: for each level N, N workers each send a request as soon as their previous one
//! is answered; throughput and p99 latency are measured in consecutive windows, and the
//! level is *stable* once the last three windows each lie within ±`stability_pct` of their
//! mean in both ([`is_stable`]). Those three windows, merged, are the level's figures. A
//! level that does not settle within `max_windows` is reported as unstable with its last
//! three windows.
//!
//! The decision is a small state machine ([`Level`]) fed one window at a time, so the rule
//! is tested without a clock or a server.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::parse::Levels;
use crate::stats::{Outcome, Recorder, Summary};
use crate::target::Target;
use crate::{LoadtestError, Result};

/// Windows that must agree for a level to be stable.
pub const STABLE_WINDOWS: usize = 3;

/// How the sweep loads the server.
#[derive(Debug, Clone)]
pub struct SweepConfig {
    pub levels: Levels,
    /// One measurement window.
    pub window: Duration,
    /// Tolerance of the stability rule, in percent of the mean.
    pub stability_pct: f64,
    /// Windows per level at most.
    pub max_windows: usize,
    /// Time at each level before the first window (not measured).
    pub warmup: Duration,
}

impl SweepConfig {
    fn validate(&self) -> Result<()> {
        if self.levels.0.is_empty() {
            return Err(LoadtestError::Invalid("no concurrency levels given".into()));
        }
        if self.window.is_zero() {
            return Err(LoadtestError::Invalid(
                "--window must be more than 0".into(),
            ));
        }
        if !(self.stability_pct.is_finite() && self.stability_pct > 0.0) {
            return Err(LoadtestError::Invalid(format!(
                "--stability must be a positive percentage, not {}",
                self.stability_pct
            )));
        }
        if self.max_windows < STABLE_WINDOWS {
            return Err(LoadtestError::Invalid(format!(
                "--max-windows must be at least {STABLE_WINDOWS} (stability compares the last {STABLE_WINDOWS} windows), not {}",
                self.max_windows
            )));
        }
        Ok(())
    }
}

/// One window's figures, as the stability rule sees them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct WindowStat {
    /// Successful requests per second.
    pub throughput_rps: f64,
    pub p99_ms: f64,
    pub ok: u64,
    pub errors: u64,
}

/// Whether every value is within ±`pct` % of their mean.
fn within(values: &[f64], pct: f64) -> bool {
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    values
        .iter()
        .all(|v| (v - mean).abs() <= mean.abs() * pct / 100.0)
}

/// perf_analyzer's rule: the last [`STABLE_WINDOWS`] windows' throughputs are each within
/// ±`pct` % of their mean, and so are their p99 latencies. A window without a successful
/// request is never stable (a stalled or failing server must not read as settled).
pub fn is_stable(windows: &[WindowStat], pct: f64) -> bool {
    let Some(last) = windows
        .len()
        .checked_sub(STABLE_WINDOWS)
        .map(|i| &windows[i..])
    else {
        return false;
    };
    if last.iter().any(|w| w.ok == 0) {
        return false;
    }
    let tp: Vec<f64> = last.iter().map(|w| w.throughput_rps).collect();
    let p99: Vec<f64> = last.iter().map(|w| w.p99_ms).collect();
    within(&tp, pct) && within(&p99, pct)
}

/// Where a level's measurement stands after a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    Measuring,
    Stable,
    /// `max_windows` measured without settling.
    Unstable,
}

/// The windows of one level so far.
#[derive(Debug)]
pub struct Level {
    pct: f64,
    max_windows: usize,
    windows: Vec<(WindowStat, Recorder, Duration)>,
}

impl Level {
    pub fn new(pct: f64, max_windows: usize) -> Level {
        Level {
            pct,
            max_windows,
            windows: vec![],
        }
    }

    /// Adds a window's requests, measured over `elapsed`, and says whether to go on.
    pub fn push(&mut self, recorder: Recorder, elapsed: Duration) -> Progress {
        let secs = elapsed.as_secs_f64().max(1e-9);
        let stat = WindowStat {
            throughput_rps: recorder.ok() as f64 / secs,
            p99_ms: recorder.latency_ms(0.99),
            ok: recorder.ok(),
            errors: recorder.errors(),
        };
        self.windows.push((stat, recorder, elapsed));
        let stats: Vec<WindowStat> = self.windows.iter().map(|w| w.0).collect();
        if is_stable(&stats, self.pct) {
            Progress::Stable
        } else if self.windows.len() >= self.max_windows {
            Progress::Unstable
        } else {
            Progress::Measuring
        }
    }

    /// The level's report: the last [`STABLE_WINDOWS`] windows merged (all of them when
    /// there are fewer).
    pub fn report(&self, concurrency: usize, rows: usize) -> LevelReport {
        let stats: Vec<WindowStat> = self.windows.iter().map(|w| w.0).collect();
        let from = self.windows.len().saturating_sub(STABLE_WINDOWS);
        let mut merged = Recorder::new();
        let mut elapsed = Duration::ZERO;
        for (_, r, e) in &self.windows[from..] {
            merged.merge(r);
            elapsed += *e;
        }
        LevelReport {
            concurrency,
            stable: is_stable(&stats, self.pct),
            windows_measured: self.windows.len(),
            windows: stats,
            summary: merged.summary(elapsed, rows),
        }
    }
}

/// The result of one concurrency level.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LevelReport {
    pub concurrency: usize,
    /// Whether the last three windows met the stability rule.
    pub stable: bool,
    pub windows_measured: usize,
    /// Every window's throughput and p99, in order.
    pub windows: Vec<WindowStat>,
    /// The last three windows merged.
    #[serde(flatten)]
    pub summary: Summary,
}

/// Runs every level in turn.
pub async fn run(
    http: &reqwest::Client,
    target: Arc<Target>,
    config: &SweepConfig,
) -> Result<Vec<LevelReport>> {
    config.validate()?;
    let mut out = vec![];
    for &concurrency in &config.levels.0 {
        let report = level(http, &target, config, concurrency).await;
        tracing::info!(
            concurrency,
            stable = report.stable,
            windows = report.windows_measured,
            "concurrency {concurrency}: {:.1} req/s, p99 {:.3} ms, {}",
            report.summary.throughput_rps,
            report.summary.latency_ms.p99,
            if report.stable {
                format!("stable after {} windows", report.windows_measured)
            } else {
                format!("not stable in {} windows", report.windows_measured)
            }
        );
        out.push(report);
    }
    Ok(out)
}

fn take(current: &Mutex<Recorder>) -> Recorder {
    std::mem::take(&mut *current.lock().unwrap_or_else(|e| e.into_inner()))
}

async fn level(
    http: &reqwest::Client,
    target: &Arc<Target>,
    config: &SweepConfig,
    concurrency: usize,
) -> LevelReport {
    // Requests are recorded into the window they are answered in.
    let current = Arc::new(Mutex::new(Recorder::new()));
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..concurrency {
        let (http, target, current) = (http.clone(), target.clone(), current.clone());
        workers.spawn(async move {
            let mut i = w as u64;
            loop {
                let start = Instant::now();
                let outcome = target.send(&http, i).await;
                let latency = start.elapsed();
                current
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .record(outcome, latency);
                if matches!(outcome, Outcome::Transport(_)) {
                    // A refused connection fails at once; without a pause the worker would
                    // spin and starve the others.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                i += concurrency as u64;
            }
        });
    }
    if !config.warmup.is_zero() {
        tokio::time::sleep(config.warmup).await;
    }
    let mut state = Level::new(config.stability_pct, config.max_windows);
    let mut start = Instant::now();
    take(&current);
    loop {
        tokio::time::sleep_until((start + config.window).into()).await;
        let recorder = take(&current);
        let now = Instant::now();
        let progress = state.push(recorder, now - start);
        start = now;
        if progress != Progress::Measuring {
            break;
        }
    }
    // Requests in flight are abandoned with their workers; the next level starts clean.
    workers.shutdown().await;
    state.report(concurrency, target.rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(tp: f64, p99: f64) -> WindowStat {
        WindowStat {
            throughput_rps: tp,
            p99_ms: p99,
            ok: 1,
            errors: 0,
        }
    }

    #[test]
    fn stability_needs_three_windows_within_the_tolerance() {
        let w = window;
        assert!(!is_stable(&[], 10.0));
        assert!(!is_stable(&[w(100.0, 5.0), w(100.0, 5.0)], 10.0));
        assert!(is_stable(
            &[w(100.0, 5.0), w(100.0, 5.0), w(100.0, 5.0)],
            10.0
        ));
        // Mean 100: 91 and 109 are within ±10 %, 89 is not.
        assert!(is_stable(
            &[w(91.0, 5.0), w(100.0, 5.0), w(109.0, 5.0)],
            10.0
        ));
        assert!(!is_stable(
            &[w(89.0, 5.0), w(102.0, 5.0), w(109.0, 5.0)],
            10.0
        ));
        // Throughput steady but p99 not.
        assert!(!is_stable(
            &[w(100.0, 5.0), w(100.0, 5.0), w(100.0, 8.0)],
            10.0
        ));
        // Only the last three count: an early outlier does not matter.
        assert!(is_stable(
            &[w(10.0, 50.0), w(100.0, 5.0), w(101.0, 5.1), w(99.0, 4.9)],
            10.0
        ));
        // A wider tolerance accepts more.
        assert!(is_stable(
            &[w(80.0, 5.0), w(100.0, 5.0), w(120.0, 5.0)],
            25.0
        ));
        // Windows without a successful request never count as settled.
        let idle = WindowStat {
            throughput_rps: 0.0,
            p99_ms: 0.0,
            ok: 0,
            errors: 7,
        };
        assert!(!is_stable(&[idle, idle, idle], 10.0));
    }

    fn recorder(ok: u64, latency_ms: u64) -> Recorder {
        let mut r = Recorder::new();
        for _ in 0..ok {
            r.record(Outcome::Ok, Duration::from_millis(latency_ms));
        }
        r
    }

    #[test]
    fn a_level_stops_when_stable_and_reports_the_last_three_windows() {
        let second = Duration::from_secs(1);
        let mut level = Level::new(10.0, 10);
        assert_eq!(level.push(recorder(10, 50), second), Progress::Measuring);
        assert_eq!(level.push(recorder(100, 5), second), Progress::Measuring);
        assert_eq!(level.push(recorder(104, 5), second), Progress::Measuring);
        assert_eq!(level.push(recorder(98, 5), second), Progress::Stable);
        let r = level.report(4, 2);
        assert!(r.stable);
        assert_eq!(
            (r.concurrency, r.windows_measured, r.windows.len()),
            (4, 4, 4)
        );
        assert_eq!(r.summary.ok, 302);
        assert!((r.summary.elapsed_s - 3.0).abs() < 1e-9);
        assert!((r.summary.throughput_rps - 302.0 / 3.0).abs() < 1e-9);
        assert!((r.summary.rows_per_s - 2.0 * 302.0 / 3.0).abs() < 1e-9);
        // The slow first window is not in the figures.
        assert!(r.summary.latency_ms.max < 6.0, "{:?}", r.summary.latency_ms);
    }

    #[test]
    fn a_level_that_never_settles_is_unstable_after_max_windows() {
        let second = Duration::from_secs(1);
        let mut level = Level::new(10.0, 4);
        let mut last = Progress::Measuring;
        for (i, ok) in [100, 200, 100, 200].into_iter().enumerate() {
            last = level.push(recorder(ok, 5), second);
            if i < 3 {
                assert_eq!(last, Progress::Measuring, "window {i}");
            }
        }
        assert_eq!(last, Progress::Unstable);
        let r = level.report(1, 1);
        assert!(!r.stable);
        assert_eq!(r.windows_measured, 4);
        assert_eq!(r.summary.ok, 500);
    }

    #[test]
    fn validates_the_config() {
        let ok = SweepConfig {
            levels: Levels(vec![1, 2]),
            window: Duration::from_secs(1),
            stability_pct: 10.0,
            max_windows: 10,
            warmup: Duration::ZERO,
        };
        assert!(ok.validate().is_ok());
        for bad in [
            SweepConfig {
                levels: Levels(vec![]),
                ..ok.clone()
            },
            SweepConfig {
                window: Duration::ZERO,
                ..ok.clone()
            },
            SweepConfig {
                stability_pct: 0.0,
                ..ok.clone()
            },
            SweepConfig {
                max_windows: 2,
                ..ok.clone()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
