//! Windowed indicators from cumulative counters: the data plane's counters (requests, server
//! errors, the request-time histogram) are sampled every tick; the indicators of a window
//! are the difference between the newest sample and the last one at or before the window's
//! start — the same arithmetic as Prometheus' `rate()` and `histogram_quantile()` over
//! `increase()`.

use std::collections::VecDeque;

use serde::Serialize;

/// The cumulative counters of one series (a model version) at one instant.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CounterSample {
    pub at_ms: i64,
    /// Requests answered, successes and failures.
    pub requests: u64,
    /// Failures that were the server's (5xx, 429, timeouts).
    pub server_errors: u64,
    /// Upper bounds of the latency buckets, in seconds, ascending.
    pub bounds_s: Vec<f64>,
    /// Requests per bucket (not cumulative); those above the last bound count only in
    /// `latency_count`.
    pub buckets: Vec<u64>,
    pub latency_count: u64,
}

/// Indicators over one window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WindowIndicators {
    /// The window actually covered (shorter than asked while history is short).
    pub window_ms: i64,
    pub requests: u64,
    pub server_errors: u64,
    /// Requests per second.
    pub request_rate: f64,
    /// Server errors / requests; `None` with no requests.
    pub error_rate: Option<f64>,
    /// Latency quantiles in milliseconds, each the upper bound of the bucket the quantile
    /// falls in (never an underestimate; infinite above the last bound).
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// Requests slower than `slow_ms` (by whole buckets), when asked.
    pub slow: Option<u64>,
}

/// Samples of one series, oldest first, kept for `keep_ms`.
#[derive(Debug, Clone)]
pub struct SeriesWindow {
    samples: VecDeque<CounterSample>,
    keep_ms: i64,
}

impl SeriesWindow {
    pub fn new(keep_ms: i64) -> SeriesWindow {
        SeriesWindow {
            samples: VecDeque::new(),
            keep_ms: keep_ms.max(1),
        }
    }

    /// Adds a sample. A counter that went down (the series was recreated, e.g. the version
    /// was unloaded and loaded again) starts the history afresh.
    pub fn push(&mut self, s: CounterSample) {
        if let Some(last) = self.samples.back()
            && (s.requests < last.requests
                || s.latency_count < last.latency_count
                || s.at_ms < last.at_ms)
        {
            self.samples.clear();
        }
        let horizon = s.at_ms - self.keep_ms;
        self.samples.push_back(s);
        // Keep one sample at or before the horizon so a full window can be computed.
        while self.samples.len() > 2 && self.samples[1].at_ms <= horizon {
            self.samples.pop_front();
        }
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The indicators over the last `window_ms`, or `None` before two samples exist.
    pub fn indicators(&self, window_ms: i64, slow_ms: Option<f64>) -> Option<WindowIndicators> {
        let newest = self.samples.back()?;
        let start = newest.at_ms - window_ms;
        // The latest sample at or before the start, else the oldest.
        let base = self
            .samples
            .iter()
            .rev()
            .find(|s| s.at_ms <= start)
            .or_else(|| self.samples.front())?;
        if std::ptr::eq(base, newest) {
            return None;
        }
        let covered = newest.at_ms - base.at_ms;
        let requests = newest.requests - base.requests;
        let server_errors = newest.server_errors.saturating_sub(base.server_errors);
        let buckets: Vec<u64> = newest
            .buckets
            .iter()
            .enumerate()
            .map(|(i, c)| c.saturating_sub(base.buckets.get(i).copied().unwrap_or(0)))
            .collect();
        let count = newest.latency_count - base.latency_count;
        let q = |q: f64| quantile(&newest.bounds_s, &buckets, count, q).map(|s| s * 1e3);
        let slow = slow_ms.map(|ms| {
            let at_or_below: u64 = newest
                .bounds_s
                .iter()
                .zip(&buckets)
                .filter(|(b, _)| **b * 1e3 <= ms)
                .map(|(_, c)| c)
                .sum();
            count.saturating_sub(at_or_below)
        });
        Some(WindowIndicators {
            window_ms: covered,
            requests,
            server_errors,
            request_rate: if covered > 0 {
                requests as f64 / (covered as f64 / 1e3)
            } else {
                0.0
            },
            error_rate: (requests > 0).then(|| server_errors as f64 / requests as f64),
            p50_ms: q(0.5),
            p90_ms: q(0.9),
            p99_ms: q(0.99),
            slow,
        })
    }
}

/// The `q` quantile as the upper bound of its bucket; `+Inf` above the last bound.
fn quantile(bounds: &[f64], buckets: &[u64], count: u64, q: f64) -> Option<f64> {
    if count == 0 {
        return None;
    }
    let rank = (q.clamp(0.0, 1.0) * count as f64).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (b, c) in bounds.iter().zip(buckets) {
        seen += c;
        if seen >= rank {
            return Some(*b);
        }
    }
    Some(f64::INFINITY)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNDS: [f64; 4] = [0.001, 0.005, 0.02, 0.1];

    fn sample(
        at_ms: i64,
        requests: u64,
        errors: u64,
        buckets: [u64; 4],
        over: u64,
    ) -> CounterSample {
        CounterSample {
            at_ms,
            requests,
            server_errors: errors,
            bounds_s: BOUNDS.to_vec(),
            buckets: buckets.to_vec(),
            latency_count: buckets.iter().sum::<u64>() + over,
        }
    }

    #[test]
    fn windows_are_differences_of_cumulative_counters() {
        let mut w = SeriesWindow::new(60_000);
        assert!(w.indicators(10_000, None).is_none());
        w.push(sample(0, 0, 0, [0, 0, 0, 0], 0));
        assert!(w.indicators(10_000, None).is_none());
        w.push(sample(10_000, 1000, 0, [1000, 0, 0, 0], 0));
        // A slow, failing stretch.
        w.push(sample(20_000, 1100, 20, [1000, 0, 50, 50], 0));
        let i = w.indicators(10_000, Some(20.0)).unwrap();
        assert_eq!(i.window_ms, 10_000);
        assert_eq!((i.requests, i.server_errors), (100, 20));
        assert_eq!(i.request_rate, 10.0);
        assert_eq!(i.error_rate, Some(0.2));
        assert_eq!(i.p50_ms, Some(20.0));
        assert_eq!(i.p99_ms, Some(100.0));
        assert_eq!(i.slow, Some(50));
        // The whole history: 1100 requests, mostly fast.
        let all = w.indicators(60_000, None).unwrap();
        assert_eq!(all.window_ms, 20_000);
        assert_eq!(all.p50_ms, Some(1.0));
        assert!((all.error_rate.unwrap() - 20.0 / 1100.0).abs() < 1e-12);
        // Requests above every bound make the quantile infinite.
        w.push(sample(30_000, 1110, 20, [1000, 0, 50, 50], 10));
        assert_eq!(
            w.indicators(10_000, None).unwrap().p99_ms,
            Some(f64::INFINITY)
        );
        // No requests in the window: rates of zero, no error rate, no quantiles.
        w.push(sample(40_000, 1110, 20, [1000, 0, 50, 50], 10));
        let quiet = w.indicators(10_000, None).unwrap();
        assert_eq!(
            (quiet.requests, quiet.error_rate, quiet.p99_ms),
            (0, None, None)
        );
    }

    #[test]
    fn old_samples_go_and_a_reset_series_starts_afresh() {
        let mut w = SeriesWindow::new(20_000);
        for t in 0..10 {
            w.push(sample(
                t * 5_000,
                (t * 10) as u64,
                0,
                [(t * 10) as u64, 0, 0, 0],
                0,
            ));
        }
        assert!(w.samples.len() <= 6, "{}", w.samples.len());
        assert_eq!(w.indicators(20_000, None).unwrap().window_ms, 20_000);
        w.push(sample(50_000, 3, 0, [3, 0, 0, 0], 0));
        assert_eq!(w.samples.len(), 1);
        assert!(w.indicators(10_000, None).is_none());
    }
}
