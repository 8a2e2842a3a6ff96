//! The data plane's hook for the prediction log: which requests are logged (sampling), the
//! request id each answer carries, and the record handed to a [`PredictionSink`]. The sink
//! (the Parquet writer lives in `kiln-monitor`; the `kiln` binary plugs it in) must take a
//! record without blocking; nothing here does I/O.
//!
//! Costs on the request path: with no log configured, none. With a log, every answer carries
//! an `X-Request-Id` (the client's, or one generated here), and whether a request is logged is
//! decided by one random draw before anything is copied. A sampled request hands the sink a
//! record that borrows its inputs and outputs; the sink copies what it keeps.

use std::cell::Cell;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use kiln_ml::Tensor;
use kiln_transform::{Column, Value};

/// The header that carries a request's id, in (optional) and out (always, with a log).
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Longest client-supplied request id kept; a longer one is replaced by a generated id
/// (returned in `X-Request-Id`).
pub const MAX_REQUEST_ID_BYTES: usize = 256;

/// One answered prediction request, borrowed from the handler that answered it.
#[derive(Debug, Clone, Copy)]
pub struct PredictionRecord<'a> {
    /// The served name (the deployment).
    pub model: &'a str,
    pub version: &'a str,
    /// OIP's `id`, else the `X-Request-Id` header, else generated (UUID v4 form).
    pub request_id: &'a str,
    /// When the request reached the handler: microseconds since the Unix epoch (UTC).
    pub time_us: i64,
    /// From the request reaching the handler to its outputs being ready (decoding, queue and
    /// compute), in microseconds.
    pub latency_us: u64,
    pub inputs: LoggedInputs<'a>,
    /// The model's outputs for the request, as computed (every output, whatever the request
    /// asked to have returned).
    pub outputs: &'a [Tensor],
}

/// A request's inputs as the log keeps them.
#[derive(Debug, Clone, Copy)]
pub enum LoggedInputs<'a> {
    /// The tensors the model took (OIP, and `/invocations` for models without a transform).
    Tensors(&'a [Tensor]),
    /// Raw rows before a package's feature transform (`/invocations` on a Kiln package):
    /// the transform's input columns and each row's values in that order.
    Rows {
        columns: &'a [Column],
        rows: &'a [Vec<Value>],
    },
}

/// What a sink has done so far (for `/metrics`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SinkStats {
    /// Records accepted into the buffer.
    pub records: u64,
    /// Records that will never reach a file: refused because the buffer was full (or the
    /// log closed), or still unwritten when the log closed with the store failing.
    pub dropped: u64,
    /// Files written.
    pub flushes: u64,
    /// Flush attempts that failed (the records stay buffered and are retried).
    pub flush_errors: u64,
    /// Records written to files.
    pub written: u64,
    /// Records accepted and not yet written.
    pub buffered: u64,
}

/// Where sampled records go.
pub trait PredictionSink: Send + Sync {
    /// Takes one record (copying what it keeps). Must return at once: queue it, or drop it
    /// and count the drop; never wait for I/O or a lock another thread may hold long.
    fn record(&self, rec: &PredictionRecord<'_>);
    fn stats(&self) -> SinkStats;
}

/// The prediction log as the server sees it: a sink and the fraction of requests sent to it.
pub struct PredictionLog {
    pub sink: Arc<dyn PredictionSink>,
    rate: f64,
    /// A draw below this (out of 2^64) is logged; `None` logs every request.
    threshold: Option<u64>,
}

impl PredictionLog {
    /// `rate` is clamped to [0, 1]; 1 logs every request, 0 none (answers still carry ids).
    pub fn new(sink: Arc<dyn PredictionSink>, rate: f64) -> PredictionLog {
        let rate = if rate.is_nan() {
            0.0
        } else {
            rate.clamp(0.0, 1.0)
        };
        let threshold = if rate >= 1.0 {
            None
        } else {
            // 2^64 × rate, exact enough: rates are given with a few digits.
            Some((rate * 18_446_744_073_709_551_616.0) as u64)
        };
        PredictionLog {
            sink,
            rate,
            threshold,
        }
    }

    pub fn rate(&self) -> f64 {
        self.rate
    }

    fn sampled(&self) -> bool {
        match self.threshold {
            None => true,
            Some(0) => false,
            Some(t) => next_random() < t,
        }
    }

    /// Starts a request's entry: its id (`body_id` — OIP's `id` —, else `header_id`, else a
    /// new one) and whether it is logged.
    pub fn begin(&self, body_id: Option<&str>, header_id: Option<&str>) -> Logged<'_> {
        let given = body_id
            .or(header_id)
            .map(str::trim)
            .filter(|id| !id.is_empty() && id.len() <= MAX_REQUEST_ID_BYTES);
        Logged {
            log: self,
            id: given.map_or_else(new_request_id, str::to_string),
            sampled: self.sampled(),
        }
    }
}

/// One request's place in the log, decided when it arrives.
pub struct Logged<'a> {
    log: &'a PredictionLog,
    /// The id the answer carries in `X-Request-Id`.
    pub id: String,
    sampled: bool,
}

impl Logged<'_> {
    /// Whether this request is logged (its inputs and outputs will be copied).
    pub fn sampled(&self) -> bool {
        self.sampled
    }

    /// Hands the request to the sink if it is sampled.
    pub fn record(
        &self,
        model: &str,
        version: &str,
        started: Instant,
        inputs: LoggedInputs<'_>,
        outputs: &[Tensor],
    ) {
        if !self.sampled {
            return;
        }
        let took = started.elapsed();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let time_us = now.saturating_sub(took).as_micros() as i64;
        self.log.sink.record(&PredictionRecord {
            model,
            version,
            request_id: &self.id,
            time_us,
            latency_us: took.as_micros() as u64,
            inputs,
            outputs,
        });
    }
}

thread_local! {
    static RNG: Cell<u64> = Cell::new(seed());
}

/// A per-thread seed from the standard library's randomly keyed hasher (seeded from the OS
/// once per process), mixed with the thread and the time.
fn seed() -> u64 {
    use std::hash::BuildHasher;
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    std::collections::hash_map::RandomState::new().hash_one((std::thread::current().id(), nanos))
}

/// splitmix64: fast, and good enough for sampling and request ids (not for secrets).
fn next_random() -> u64 {
    RNG.with(|s| {
        let x = s.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
        s.set(x);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    })
}

/// Two lower-case hex digits for each byte.
const HEX_PAIRS: [[u8; 2]; 256] = {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut t = [[0u8; 2]; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = [HEX[i >> 4], HEX[i & 0x0f]];
        i += 1;
    }
    t
};

/// Where each byte's two digits go in `8-4-4-4-12`.
const UUID_DIGITS_AT: [usize; 16] = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];

/// A random id in the form of a UUID v4 (`8-4-4-4-12` lower-case hex digits).
pub fn new_request_id() -> String {
    let hi = next_random();
    let lo = next_random();
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&hi.to_be_bytes());
    b[8..].copy_from_slice(&lo.to_be_bytes());
    b[6] = (b[6] & 0x0f) | 0x40; // version 4
    b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
    uuid_text(b)
}

/// 16 bytes as `8-4-4-4-12` lower-case hex digits.
fn uuid_text(b: [u8; 16]) -> String {
    // Written into a fixed array a byte's two digits at a time, then copied into a string at
    // once (pushing 36 chars one at a time checked the capacity and encoded UTF-8 for each).
    let mut out = [b'-'; 36];
    for (byte, at) in b.into_iter().zip(UUID_DIGITS_AT) {
        out[at..at + 2].copy_from_slice(&HEX_PAIRS[usize::from(byte)]);
    }
    // Hex digits and dashes: always UTF-8.
    String::from_utf8(out.to_vec()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// What a record held: (model, version, request id, time, inputs, outputs).
    type Kept = (String, String, String, i64, Vec<Tensor>, Vec<Tensor>);

    #[derive(Default)]
    struct Collect(Mutex<Vec<Kept>>, AtomicU64);

    impl PredictionSink for Collect {
        fn record(&self, rec: &PredictionRecord<'_>) {
            self.1.fetch_add(1, Ordering::Relaxed);
            let LoggedInputs::Tensors(inputs) = rec.inputs else {
                panic!("tensors expected")
            };
            self.0.lock().unwrap().push((
                rec.model.to_string(),
                rec.version.to_string(),
                rec.request_id.to_string(),
                rec.time_us,
                inputs.to_vec(),
                rec.outputs.to_vec(),
            ));
        }
        fn stats(&self) -> SinkStats {
            SinkStats {
                records: self.1.load(Ordering::Relaxed),
                ..SinkStats::default()
            }
        }
    }

    fn tensor() -> Tensor {
        Tensor::new("X", vec![1, 2], kiln_ml::TensorData::Fp32(vec![1.0, 2.0])).unwrap()
    }

    #[test]
    fn uuid_text_is_each_byte_in_two_lower_case_digits_grouped_8_4_4_4_12() {
        let bytes: [u8; 16] = std::array::from_fn(|i| (i as u8) * 17);
        assert_eq!(uuid_text(bytes), "00112233-4455-6677-8899-aabbccddeeff");
        let bytes: [u8; 16] = std::array::from_fn(|i| 0xf0 | i as u8);
        assert_eq!(uuid_text(bytes), "f0f1f2f3-f4f5-f6f7-f8f9-fafbfcfdfeff");
    }

    #[test]
    fn ids_look_like_uuid_v4_and_differ() {
        let a = new_request_id();
        let b = new_request_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        let parts: Vec<&str> = a.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('4'), "{a}");
        assert!(matches!(&parts[3][..1], "8" | "9" | "a" | "b"), "{a}");
        assert!(a.bytes().all(|c| c == b'-' || c.is_ascii_hexdigit()));
    }

    #[test]
    fn the_body_id_wins_then_the_header_then_a_new_one() {
        let sink = Arc::new(Collect::default());
        let log = PredictionLog::new(sink.clone(), 1.0);
        assert_eq!(log.begin(Some("b"), Some("h")).id, "b");
        assert_eq!(log.begin(None, Some(" h ")).id, "h");
        assert_eq!(log.begin(None, None).id.len(), 36);
        let long = "x".repeat(MAX_REQUEST_ID_BYTES + 1);
        assert_eq!(log.begin(Some(&long), None).id.len(), 36);
        assert_eq!(log.begin(Some(""), Some("h")).id.len(), 36);
    }

    #[test]
    fn rates_one_and_zero_are_exact_and_a_half_is_about_half() {
        let sink = Arc::new(Collect::default());
        let all = PredictionLog::new(sink.clone(), 1.0);
        let none = PredictionLog::new(sink.clone(), 0.0);
        let half = PredictionLog::new(sink.clone(), 0.5);
        assert!((0..10_000).all(|_| all.begin(None, None).sampled()));
        assert!((0..10_000).all(|_| !none.begin(None, None).sampled()));
        let n = (0..100_000)
            .filter(|_| half.begin(None, None).sampled())
            .count();
        // Binomial(100000, 0.5): sd 158; 6 sd either way.
        assert!((49_000..=51_000).contains(&n), "{n}");
        assert_eq!(PredictionLog::new(sink, f64::NAN).rate(), 0.0);
    }

    #[test]
    fn only_sampled_requests_reach_the_sink() {
        let sink = Arc::new(Collect::default());
        let on = PredictionLog::new(sink.clone(), 1.0);
        let off = PredictionLog::new(sink.clone(), 0.0);
        let started = Instant::now();
        let inputs = vec![tensor()];
        let out = vec![tensor()];
        off.begin(Some("r0"), None).record(
            "gb",
            "1",
            started,
            LoggedInputs::Tensors(&inputs),
            &out,
        );
        assert_eq!(sink.stats().records, 0);
        on.begin(Some("r1"), None)
            .record("gb", "1", started, LoggedInputs::Tensors(&inputs), &out);
        let got = sink.0.lock().unwrap();
        assert_eq!(got.len(), 1);
        let (model, version, id, time_us, i, o) = &got[0];
        assert_eq!((model.as_str(), version.as_str()), ("gb", "1"));
        assert_eq!(id, "r1");
        assert_eq!(i, &inputs);
        assert_eq!(o, &out);
        let now_us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_micros() as i64;
        assert!(*time_us <= now_us && *time_us > now_us - 60_000_000);
    }
}
