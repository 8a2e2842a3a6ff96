//! Prometheus metrics of the data plane, labelled by model and version only (the set of
//! loaded versions bounds the label cardinality): requests and failures, request, queue and
//! compute time histograms, batch sizes, and the in-flight gauge. Rendered in the
//! Prometheus text format by [`Metrics::render`].

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Seconds.
const TIME_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];
/// Largest absolute difference between a shadow's float outputs and the live ones.
const DIFF_BUCKETS: [f64; 8] = [1e-6, 1e-5, 1e-4, 1e-3, 0.01, 0.05, 0.1, 0.5];
const BATCH_BUCKETS: [f64; 11] = [
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    /// Sum in micro-units (µs for times, rows for batches) to stay in integers.
    sum: AtomicU64,
    count: AtomicU64,
}

/// A histogram read at one instant: per-bucket counts (not cumulative; values above the last
/// bound count only in `count`), the total count and the sum in the histogram's micro-units.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HistogramSnapshot {
    pub bounds: &'static [f64],
    pub counts: Vec<u64>,
    pub count: u64,
    pub sum_units: u64,
}

impl HistogramSnapshot {
    /// What was observed between `earlier` and this snapshot.
    pub fn since(&self, earlier: &HistogramSnapshot) -> HistogramSnapshot {
        HistogramSnapshot {
            bounds: self.bounds,
            counts: self
                .counts
                .iter()
                .enumerate()
                .map(|(i, c)| c.saturating_sub(earlier.counts.get(i).copied().unwrap_or(0)))
                .collect(),
            count: self.count.saturating_sub(earlier.count),
            sum_units: self.sum_units.saturating_sub(earlier.sum_units),
        }
    }

    /// The `q` quantile (0–1) as the upper bound of the bucket it falls in (Prometheus'
    /// `histogram_quantile` without interpolation, so never an underestimate); `+Inf` above
    /// the last bound; `None` with no observations.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * self.count as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            seen += c;
            if seen >= rank {
                return Some(*b);
            }
        }
        Some(f64::INFINITY)
    }

    /// Observations above `bound` (counted by whole buckets: those whose upper bound is above
    /// it).
    pub fn above(&self, bound: f64) -> u64 {
        let at_or_below: u64 = self
            .bounds
            .iter()
            .zip(&self.counts)
            .filter(|(b, _)| **b <= bound)
            .map(|(_, c)| c)
            .sum();
        self.count.saturating_sub(at_or_below)
    }
}

impl Histogram {
    fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            bounds: self.bounds,
            counts: self
                .counts
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .collect(),
            count: self.count.load(Ordering::Relaxed),
            sum_units: self.sum.load(Ordering::Relaxed),
        }
    }

    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    fn observe(&self, value: f64, sum_units: u64) {
        if let Some(i) = self.bounds.iter().position(|b| value <= *b) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        self.sum.fetch_add(sum_units, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str, sum_scale: f64) {
        let mut cumulative = 0;
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            cumulative += c.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{b}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
        let sum = self.sum.load(Ordering::Relaxed) as f64 * sum_scale;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
    }
}

/// The series of one model version.
pub struct VersionMetrics {
    pub requests: AtomicU64,
    /// Every failed request, client mistakes included (as Triton counts them).
    pub failures: AtomicU64,
    /// Failures that are the server's: 5xx, 429 and timeouts (what availability counts).
    pub server_errors: AtomicU64,
    /// Nanosecond totals for Triton's statistics extension.
    pub success_ns: AtomicU64,
    pub failure_ns: AtomicU64,
    pub queue_ns: AtomicU64,
    pub compute_ns: AtomicU64,
    /// Requests that reached the predictor.
    pub inferences: AtomicU64,
    /// Milliseconds since the epoch of the last successful request.
    pub last_inference_ms: AtomicU64,
    request_seconds: Histogram,
    queue_seconds: Histogram,
    compute_seconds: Histogram,
    batch_rows: Histogram,
}

impl VersionMetrics {
    fn new() -> VersionMetrics {
        VersionMetrics {
            requests: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            server_errors: AtomicU64::new(0),
            success_ns: AtomicU64::new(0),
            failure_ns: AtomicU64::new(0),
            queue_ns: AtomicU64::new(0),
            compute_ns: AtomicU64::new(0),
            inferences: AtomicU64::new(0),
            last_inference_ms: AtomicU64::new(0),
            request_seconds: Histogram::new(&TIME_BUCKETS),
            queue_seconds: Histogram::new(&TIME_BUCKETS),
            compute_seconds: Histogram::new(&TIME_BUCKETS),
            batch_rows: Histogram::new(&BATCH_BUCKETS),
        }
    }

    /// One finished request (success or not) and how long it took end to end.
    pub fn request(&self, took: Duration, ok: bool) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let ns = took.as_nanos() as u64;
        if ok {
            self.success_ns.fetch_add(ns, Ordering::Relaxed);
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            self.last_inference_ms.store(now, Ordering::Relaxed);
        } else {
            self.failures.fetch_add(1, Ordering::Relaxed);
            self.failure_ns.fetch_add(ns, Ordering::Relaxed);
        }
        self.request_seconds
            .observe(took.as_secs_f64(), took.as_micros() as u64);
    }

    /// A failed request (already counted by [`request`](Self::request)) that was the server's
    /// fault or its refusal under load.
    pub fn server_error(&self) {
        self.server_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// The request-time histogram as it stands (seconds), for windows computed by difference.
    pub fn latency_snapshot(&self) -> HistogramSnapshot {
        self.request_seconds.snapshot()
    }

    /// The queue and compute time of a request that reached the predictor.
    pub fn inference(&self, queue: Duration, compute: Duration, batch_rows: usize) {
        self.inferences.fetch_add(1, Ordering::Relaxed);
        self.queue_ns
            .fetch_add(queue.as_nanos() as u64, Ordering::Relaxed);
        self.compute_ns
            .fetch_add(compute.as_nanos() as u64, Ordering::Relaxed);
        self.queue_seconds
            .observe(queue.as_secs_f64(), queue.as_micros() as u64);
        self.compute_seconds
            .observe(compute.as_secs_f64(), compute.as_micros() as u64);
        self.batch_rows
            .observe(batch_rows as f64, batch_rows as u64);
    }
}

/// What the shadow traffic of one version showed: its answers against the live ones.
pub struct ShadowMetrics {
    /// Requests mirrored to the shadow (including those it failed).
    pub requests: AtomicU64,
    /// Mirrored requests the shadow could not answer (a full queue, a decode or predict
    /// error); they never affect the live answer.
    pub errors: AtomicU64,
    pub rows: AtomicU64,
    /// Rows where some output differs from the live version's.
    pub diverged_rows: AtomicU64,
    /// The largest absolute float difference seen.
    max_abs_diff_bits: AtomicU64,
    abs_diff: Histogram,
}

impl ShadowMetrics {
    fn new() -> ShadowMetrics {
        ShadowMetrics {
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            rows: AtomicU64::new(0),
            diverged_rows: AtomicU64::new(0),
            max_abs_diff_bits: AtomicU64::new(0f64.to_bits()),
            abs_diff: Histogram::new(&DIFF_BUCKETS),
        }
    }

    pub fn compared(&self, d: &crate::traffic::Divergence) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.rows.fetch_add(d.rows as u64, Ordering::Relaxed);
        self.diverged_rows
            .fetch_add(d.diverged_rows as u64, Ordering::Relaxed);
        // Non-negative floats order like their bit patterns.
        self.max_abs_diff_bits
            .fetch_max(d.max_abs_diff.to_bits(), Ordering::Relaxed);
        self.abs_diff
            .observe(d.max_abs_diff, (d.max_abs_diff * 1e6).min(1e12) as u64);
    }

    pub fn failed(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    pub fn max_abs_diff(&self) -> f64 {
        f64::from_bits(self.max_abs_diff_bits.load(Ordering::Relaxed))
    }

    /// The figures as JSON (for the traffic API).
    pub fn to_json(&self) -> serde_json::Value {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        serde_json::json!({
            "requests": get(&self.requests),
            "errors": get(&self.errors),
            "rows": get(&self.rows),
            "diverged_rows": get(&self.diverged_rows),
            "max_abs_diff": self.max_abs_diff(),
        })
    }
}

/// All series of a server.
#[derive(Default)]
pub struct Metrics {
    versions: RwLock<BTreeMap<(String, String), Arc<VersionMetrics>>>,
    shadows: RwLock<BTreeMap<(String, String), Arc<ShadowMetrics>>>,
    pub in_flight: AtomicI64,
    /// Requests refused by admission control (429).
    pub rejected: AtomicU64,
}

impl Metrics {
    /// The series of a version, created on first use.
    pub fn version(&self, model: &str, version: &str) -> Arc<VersionMetrics> {
        let key = (model.to_string(), version.to_string());
        if let Some(m) = self
            .versions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return m.clone();
        }
        self.versions
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key)
            .or_insert_with(|| Arc::new(VersionMetrics::new()))
            .clone()
    }

    /// The shadow series of a version, created on first use.
    pub fn shadow(&self, model: &str, version: &str) -> Arc<ShadowMetrics> {
        let key = (model.to_string(), version.to_string());
        if let Some(m) = self
            .shadows
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return m.clone();
        }
        self.shadows
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key)
            .or_insert_with(|| Arc::new(ShadowMetrics::new()))
            .clone()
    }

    /// The shadow series of a version, if it ever shadowed.
    pub fn shadow_if_any(&self, model: &str, version: &str) -> Option<Arc<ShadowMetrics>> {
        self.shadows
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(model.to_string(), version.to_string()))
            .cloned()
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let versions = self.versions.read().unwrap_or_else(|p| p.into_inner());
        let series = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        let labels =
            |m: &str, v: &str| format!("model=\"{}\",version=\"{}\"", escape(m), escape(v));
        series(
            &mut out,
            "kiln_inference_requests_total",
            "counter",
            "Inference requests answered.",
        );
        for ((m, v), s) in versions.iter() {
            let _ = writeln!(
                out,
                "kiln_inference_requests_total{{{}}} {}",
                labels(m, v),
                s.requests.load(Ordering::Relaxed)
            );
        }
        series(
            &mut out,
            "kiln_inference_failures_total",
            "counter",
            "Inference requests that failed.",
        );
        for ((m, v), s) in versions.iter() {
            let _ = writeln!(
                out,
                "kiln_inference_failures_total{{{}}} {}",
                labels(m, v),
                s.failures.load(Ordering::Relaxed)
            );
        }
        series(
            &mut out,
            "kiln_inference_server_errors_total",
            "counter",
            "Failed requests that were the server's: 5xx, 429 and timeouts.",
        );
        for ((m, v), s) in versions.iter() {
            let _ = writeln!(
                out,
                "kiln_inference_server_errors_total{{{}}} {}",
                labels(m, v),
                s.server_errors.load(Ordering::Relaxed)
            );
        }
        for (name, help, pick, scale) in [
            (
                "kiln_inference_request_duration_seconds",
                "Request time, received to answered.",
                0,
                1e-6,
            ),
            (
                "kiln_inference_queue_duration_seconds",
                "Time waiting for a batch.",
                1,
                1e-6,
            ),
            (
                "kiln_inference_compute_duration_seconds",
                "Predictor time of the batch a request was in.",
                2,
                1e-6,
            ),
            (
                "kiln_inference_batch_rows",
                "Rows in the predictor call a request was part of.",
                3,
                1.0,
            ),
        ] {
            series(&mut out, name, "histogram", help);
            for ((m, v), s) in versions.iter() {
                let h = match pick {
                    0 => &s.request_seconds,
                    1 => &s.queue_seconds,
                    2 => &s.compute_seconds,
                    _ => &s.batch_rows,
                };
                h.render(&mut out, name, &labels(m, v), scale);
            }
        }
        let shadows = self.shadows.read().unwrap_or_else(|p| p.into_inner());
        for (name, help, pick) in [
            (
                "kiln_shadow_requests_total",
                "Requests mirrored to a shadow version.",
                0,
            ),
            (
                "kiln_shadow_errors_total",
                "Mirrored requests the shadow version failed.",
                1,
            ),
            ("kiln_shadow_rows_total", "Rows compared.", 2),
            (
                "kiln_shadow_diverged_rows_total",
                "Rows whose shadow output differs from the live one.",
                3,
            ),
        ] {
            series(&mut out, name, "counter", help);
            for ((m, v), s) in shadows.iter() {
                let a = match pick {
                    0 => &s.requests,
                    1 => &s.errors,
                    2 => &s.rows,
                    _ => &s.diverged_rows,
                };
                let _ = writeln!(
                    out,
                    "{name}{{{}}} {}",
                    labels(m, v),
                    a.load(Ordering::Relaxed)
                );
            }
        }
        series(
            &mut out,
            "kiln_shadow_max_abs_diff",
            "histogram",
            "Largest absolute difference of a shadow's float outputs from the live ones, per request.",
        );
        for ((m, v), s) in shadows.iter() {
            s.abs_diff
                .render(&mut out, "kiln_shadow_max_abs_diff", &labels(m, v), 1e-6);
        }
        drop(shadows);
        series(
            &mut out,
            "kiln_inference_in_flight",
            "gauge",
            "Inference requests being handled.",
        );
        let _ = writeln!(
            out,
            "kiln_inference_in_flight {}",
            self.in_flight.load(Ordering::Relaxed)
        );
        series(
            &mut out,
            "kiln_inference_rejected_total",
            "counter",
            "Requests refused with 429 (over the in-flight bound or a full queue).",
        );
        let _ = writeln!(
            out,
            "kiln_inference_rejected_total {}",
            self.rejected.load(Ordering::Relaxed)
        );
        out
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The prediction log's counters (`kiln_predlog_*`), appended to the exposition when a log
/// is configured.
pub fn render_prediction_log(out: &mut String, s: &crate::predlog::SinkStats) {
    for (name, kind, help, value) in [
        (
            "kiln_predlog_records_total",
            "counter",
            "Sampled predictions accepted into the prediction log's buffer.",
            s.records,
        ),
        (
            "kiln_predlog_dropped_total",
            "counter",
            "Sampled predictions that will never be written: the buffer was full, or the store still failed at shutdown.",
            s.dropped,
        ),
        (
            "kiln_predlog_flushes_total",
            "counter",
            "Parquet files written by the prediction log.",
            s.flushes,
        ),
        (
            "kiln_predlog_flush_errors_total",
            "counter",
            "Prediction log writes that failed (the records stay buffered and are retried).",
            s.flush_errors,
        ),
        (
            "kiln_predlog_written_total",
            "counter",
            "Predictions written to Parquet files.",
            s.written,
        ),
        (
            "kiln_predlog_buffered",
            "gauge",
            "Predictions accepted and not yet written.",
            s.buffered,
        ),
    ] {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_give_window_quantiles_and_tail_counts() {
        let h = Histogram::new(&TIME_BUCKETS);
        for _ in 0..90 {
            h.observe(0.0003, 300); // ≤ 0.0005
        }
        let before = h.snapshot();
        for _ in 0..98 {
            h.observe(0.0008, 800); // ≤ 0.001
        }
        h.observe(0.02, 20_000); // ≤ 0.025
        h.observe(9.0, 9_000_000); // above every bound
        let w = h.snapshot().since(&before);
        assert_eq!(w.count, 100);
        assert_eq!(w.quantile(0.5), Some(0.001));
        assert_eq!(w.quantile(0.99), Some(0.025));
        assert_eq!(w.quantile(1.0), Some(f64::INFINITY));
        assert_eq!(w.above(0.001), 2);
        assert_eq!(w.above(0.025), 1);
        assert_eq!(w.sum_units, 98 * 800 + 20_000 + 9_000_000);
        assert_eq!(before.quantile(0.99), Some(0.0005));
        assert_eq!(HistogramSnapshot::default().quantile(0.5), None);
    }
}
