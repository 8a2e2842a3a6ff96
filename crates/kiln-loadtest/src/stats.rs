//! Outcomes and latencies: a [`Recorder`] counts every request by outcome and keeps the
//! latencies of the successful ones in an HDR histogram (microseconds, three significant
//! digits, up to an hour); [`Recorder::summary`] turns it into the figures reported.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// How one request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A 2xx answer, read to its end.
    Ok,
    /// Any other HTTP status (429 included).
    Status(u16),
    /// No answer: the connection failed, the request timed out, the body broke off.
    Transport(TransportError),
    /// Never sent: the open loop had `max_outstanding` requests in flight already.
    Dropped,
}

/// Why a request got no HTTP answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TransportError {
    Timeout,
    Connect,
    /// The connection broke while sending or reading.
    Io,
}

impl TransportError {
    pub fn name(self) -> &'static str {
        match self {
            TransportError::Timeout => "timeout",
            TransportError::Connect => "connect",
            TransportError::Io => "io",
        }
    }

    pub fn of(e: &reqwest::Error) -> TransportError {
        if e.is_timeout() {
            TransportError::Timeout
        } else if e.is_connect() {
            TransportError::Connect
        } else {
            TransportError::Io
        }
    }
}

/// Highest latency recorded exactly (one hour, in µs); longer ones are recorded as this.
const MAX_MICROS: u64 = 3_600_000_000;

fn histogram() -> Histogram<u64> {
    // Bounds and precision are constants that hdrhistogram accepts.
    Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("valid histogram bounds")
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

/// Counts and latencies of a set of requests (a run, a window).
#[derive(Debug, Clone)]
pub struct Recorder {
    latency: Histogram<u64>,
    /// How late requests were sent after their scheduled time (open loop only).
    lag: Histogram<u64>,
    ok: u64,
    by_status: BTreeMap<u16, u64>,
    transport: BTreeMap<TransportError, u64>,
    dropped: u64,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}

impl Recorder {
    pub fn new() -> Recorder {
        Recorder {
            latency: histogram(),
            lag: histogram(),
            ok: 0,
            by_status: BTreeMap::new(),
            transport: BTreeMap::new(),
            dropped: 0,
        }
    }

    /// Records one request. `latency` counts only for [`Outcome::Ok`]: an error's time says
    /// little (a 429 is fast, a timeout is the timeout).
    pub fn record(&mut self, outcome: Outcome, latency: Duration) {
        match outcome {
            Outcome::Ok => {
                self.ok += 1;
                self.latency.saturating_record(micros(latency));
            }
            Outcome::Status(s) => *self.by_status.entry(s).or_default() += 1,
            Outcome::Transport(t) => *self.transport.entry(t).or_default() += 1,
            Outcome::Dropped => self.dropped += 1,
        }
    }

    /// Records how late a request was sent after its scheduled time.
    pub fn record_lag(&mut self, lag: Duration) {
        self.lag.saturating_record(micros(lag));
    }

    pub fn merge(&mut self, other: &Recorder) {
        // Both histograms have the same bounds, so adding cannot fail.
        let _ = self.latency.add(&other.latency);
        let _ = self.lag.add(&other.lag);
        self.ok += other.ok;
        for (s, n) in &other.by_status {
            *self.by_status.entry(*s).or_default() += n;
        }
        for (t, n) in &other.transport {
            *self.transport.entry(*t).or_default() += n;
        }
        self.dropped += other.dropped;
    }

    pub fn ok(&self) -> u64 {
        self.ok
    }

    pub fn errors(&self) -> u64 {
        self.by_status.values().sum::<u64>() + self.transport.values().sum::<u64>() + self.dropped
    }

    pub fn requests(&self) -> u64 {
        self.ok + self.errors()
    }

    /// The latency at quantile `q` (0–1) of the successful requests, in milliseconds; 0 when
    /// there were none.
    pub fn latency_ms(&self, q: f64) -> f64 {
        if self.latency.is_empty() {
            return 0.0;
        }
        self.latency.value_at_quantile(q) as f64 / 1000.0
    }

    /// The figures of these requests measured over `elapsed`, each carrying `rows` rows.
    pub fn summary(&self, elapsed: Duration, rows: usize) -> Summary {
        let requests = self.requests();
        let errors = self.errors();
        let secs = elapsed.as_secs_f64();
        let throughput = if secs > 0.0 {
            self.ok as f64 / secs
        } else {
            0.0
        };
        let lag = if self.lag.is_empty() {
            None
        } else {
            Some(Lag {
                p50_ms: self.lag.value_at_quantile(0.5) as f64 / 1000.0,
                p99_ms: self.lag.value_at_quantile(0.99) as f64 / 1000.0,
                max_ms: self.lag.max() as f64 / 1000.0,
            })
        };
        Summary {
            requests,
            ok: self.ok,
            errors,
            errors_by_status: self.by_status.clone(),
            rejected_429: self.by_status.get(&429).copied().unwrap_or(0),
            transport_errors: self
                .transport
                .iter()
                .map(|(t, n)| (t.name().to_string(), *n))
                .collect(),
            dropped: self.dropped,
            error_rate: if requests > 0 {
                errors as f64 / requests as f64
            } else {
                0.0
            },
            elapsed_s: secs,
            throughput_rps: throughput,
            rows_per_s: throughput * rows as f64,
            latency_ms: Latencies {
                p50: self.latency_ms(0.5),
                p90: self.latency_ms(0.9),
                p99: self.latency_ms(0.99),
                p999: self.latency_ms(0.999),
                max: if self.latency.is_empty() {
                    0.0
                } else {
                    self.latency.max() as f64 / 1000.0
                },
                mean: if self.latency.is_empty() {
                    0.0
                } else {
                    self.latency.mean() / 1000.0
                },
            },
            schedule_lag_ms: lag,
        }
    }
}

/// The figures of a run or a concurrency level.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// Requests due in the measured period: answered, failed or dropped.
    pub requests: u64,
    /// Answered with a 2xx status.
    pub ok: u64,
    /// `requests - ok`: non-2xx answers, transport errors and dropped requests.
    pub errors: u64,
    /// Non-2xx answers by status.
    pub errors_by_status: BTreeMap<u16, u64>,
    /// Of those, 429 (the server's admission control said no).
    pub rejected_429: u64,
    /// Requests without an HTTP answer: `timeout`, `connect`, `io`.
    pub transport_errors: BTreeMap<String, u64>,
    /// Requests the open loop did not send because `max_outstanding` were in flight.
    pub dropped: u64,
    /// `errors / requests`.
    pub error_rate: f64,
    /// The measured period, in seconds.
    pub elapsed_s: f64,
    /// Successful requests per second.
    pub throughput_rps: f64,
    /// Rows of successful requests per second.
    pub rows_per_s: f64,
    /// Latency of the successful requests.
    pub latency_ms: Latencies,
    /// Open loop only: how late the generator sent requests after their scheduled time
    /// (already included in the latencies).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule_lag_ms: Option<Lag>,
}

/// Latency percentiles, in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Latencies {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

/// Send lag of the open loop, in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Lag {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_outcomes_and_percentiles() {
        let mut r = Recorder::new();
        for ms in 1..=1000u64 {
            r.record(Outcome::Ok, Duration::from_millis(ms));
        }
        r.record(Outcome::Status(429), Duration::from_millis(1));
        r.record(Outcome::Status(429), Duration::from_millis(1));
        r.record(Outcome::Status(500), Duration::from_secs(100));
        r.record(
            Outcome::Transport(TransportError::Timeout),
            Duration::from_secs(30),
        );
        r.record(Outcome::Dropped, Duration::ZERO);
        let s = r.summary(Duration::from_secs(2), 3);
        assert_eq!((s.requests, s.ok, s.errors), (1005, 1000, 5));
        assert_eq!(s.errors_by_status, BTreeMap::from([(429, 2), (500, 1)]));
        assert_eq!(s.rejected_429, 2);
        assert_eq!(s.transport_errors["timeout"], 1);
        assert_eq!(s.dropped, 1);
        assert!((s.error_rate - 5.0 / 1005.0).abs() < 1e-12);
        assert_eq!(s.throughput_rps, 500.0);
        assert_eq!(s.rows_per_s, 1500.0);
        // Errors' times are not latencies: the 100 s 500 is not the max.
        let l = &s.latency_ms;
        let near = |got: f64, want: f64| (got - want).abs() <= want * 0.002;
        assert!(near(l.p50, 500.0), "{l:?}");
        assert!(near(l.p90, 900.0), "{l:?}");
        assert!(near(l.p99, 990.0), "{l:?}");
        assert!(near(l.p999, 999.0), "{l:?}");
        assert!(near(l.max, 1000.0), "{l:?}");
        assert!(near(l.mean, 500.5), "{l:?}");
        assert_eq!(s.schedule_lag_ms, None);
    }

    #[test]
    fn merges_and_handles_empty() {
        let empty = Recorder::new().summary(Duration::ZERO, 1);
        assert_eq!((empty.requests, empty.throughput_rps), (0, 0.0));
        assert_eq!(empty.latency_ms.p99, 0.0);
        let mut a = Recorder::new();
        a.record(Outcome::Ok, Duration::from_millis(1));
        a.record(Outcome::Status(503), Duration::ZERO);
        a.record_lag(Duration::from_micros(100));
        let mut b = Recorder::new();
        b.record(Outcome::Ok, Duration::from_millis(9));
        b.record(Outcome::Status(503), Duration::ZERO);
        a.merge(&b);
        let s = a.summary(Duration::from_secs(1), 1);
        assert_eq!((s.ok, s.errors, s.errors_by_status[&503]), (2, 2, 2));
        assert!((s.latency_ms.max - 9.0).abs() < 0.01);
        assert!((s.schedule_lag_ms.unwrap().max_ms - 0.1).abs() < 0.001);
        // Sub-microsecond latencies count as 1 µs rather than vanish.
        let mut c = Recorder::new();
        c.record(Outcome::Ok, Duration::from_nanos(10));
        assert_eq!(c.latency_ms(0.5), 0.001);
    }
}
