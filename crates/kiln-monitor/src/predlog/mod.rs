//! The sampled prediction log: answered requests, buffered in bounded memory and written as
//! Parquet files to the artifact store, partitioned by deployment, date and hour (see
//! [`layout`] for the paths and [`table`] for the columns).
//!
//! [`PredictionLog::record`] never blocks and never does I/O: it checks the buffer's bounds
//! (records and bytes) with two atomic counters and hands the record to the writer thread
//! through a bounded channel; a record that does not fit is dropped and counted. The writer
//! thread (`kiln-predlog`) wakes every [`PredictionLogConfig::tick`], takes what is queued,
//! and writes when it holds [`PredictionLogConfig::flush_rows`] rows or its oldest record has
//! waited [`PredictionLogConfig::flush_interval`] (by the injected [`Clock`]), on
//! [`PredictionLog::flush`], and on [`PredictionLog::close`]. It turns the packed records
//! straight into columns (`columns`) and writes the Parquet itself ([`parquet`]: LZ4 pages,
//! a dictionary only for repeated strings), so that logging every request costs a few
//! thousand instructions a record; records with list columns go through [`table`] and Polars.
//!
//! Durability: each file is one whole-object put (a local directory gets a staging file
//! renamed into place; S3 a completed upload), so a reader never sees a partial file, and part
//! names are unique (time and a random UUID), so a restarted writer never replaces a file. A
//! failed write keeps its records buffered and is retried after
//! [`PredictionLogConfig::retry_after`]; while the store fails, the buffer fills and new
//! records are dropped. What is lost: records still buffered when the process is killed
//! (at most one flush interval's worth), and records still unwritten when `close` gives up on
//! a failing store (counted in `dropped`).

mod columns;
pub mod layout;
pub mod parquet;
pub mod read;
pub mod table;
pub mod wire;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use kiln_store::ArtifactStore;

use crate::clock::Clock;

pub use read::read_predictions;
pub use table::{Inputs, InputsRef, Prediction, PredictionRef};

#[derive(Debug, thiserror::Error)]
pub enum PredLogError {
    #[error("prediction log: {0}")]
    Data(#[from] kiln_data::DataError),
    #[error("prediction log store: {0}")]
    Store(#[from] kiln_store::StoreError),
    #[error("prediction log: {0}")]
    Io(#[from] std::io::Error),
    #[error("the prediction log is closed")]
    Closed,
    #[error("prediction log: {0}")]
    Write(String),
}

/// How the log buffers and when it writes.
#[derive(Debug, Clone)]
pub struct PredictionLogConfig {
    /// Write once this many rows are buffered.
    pub flush_rows: usize,
    /// Write once the oldest buffered record has waited this long.
    pub flush_interval: Duration,
    /// Records accepted and not yet written, at most; more are dropped.
    pub max_buffered_records: usize,
    /// Bytes of records accepted and not yet written (packed), at most; more are dropped.
    pub max_buffered_bytes: usize,
    /// How often the writer thread takes what is queued.
    pub tick: Duration,
    /// After a failed write, how long before the next attempt.
    pub retry_after: Duration,
    /// Attempts to write what is left when the log closes.
    pub close_attempts: u32,
    /// How the files' pages are compressed. LZ4 by default: on the bench's records it costs
    /// ~600 instructions a record against ~2,400 for zstd level 1, for files twice as large
    /// (bench/RESULTS.md).
    pub compression: parquet::Codec,
}

impl Default for PredictionLogConfig {
    fn default() -> Self {
        PredictionLogConfig {
            flush_rows: 10_000,
            flush_interval: Duration::from_secs(60),
            max_buffered_records: 100_000,
            max_buffered_bytes: 64 << 20,
            tick: Duration::from_millis(50),
            retry_after: Duration::from_secs(5),
            close_attempts: 3,
            compression: parquet::Codec::Lz4Raw,
        }
    }
}

/// The log's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Records accepted into the buffer.
    pub records: u64,
    /// Records that will never be written: refused (buffer full, log closed) or discarded at
    /// close because the store kept failing.
    pub dropped: u64,
    /// Files written.
    pub flushes: u64,
    /// Failed file writes (their records stay buffered).
    pub flush_errors: u64,
    /// Records written to files.
    pub written: u64,
    /// Records accepted and not yet written.
    pub buffered: u64,
}

/// What [`PredictionLog::close`] left behind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CloseReport {
    /// Records written by the final flush.
    pub written: u64,
    /// Records that could not be written (the store kept failing).
    pub discarded: u64,
}

#[derive(Default)]
struct Shared {
    records: AtomicU64,
    dropped: AtomicU64,
    flushes: AtomicU64,
    flush_errors: AtomicU64,
    written: AtomicU64,
    pending_records: AtomicUsize,
    pending_bytes: AtomicUsize,
    /// Buffers of written records, for the next records to be packed into: in steady state
    /// logging allocates nothing, and no memory is freed on another thread than the one
    /// that allocated it.
    pool: Mutex<Vec<Vec<u8>>>,
}

/// Buffers larger than this are not kept for reuse.
const MAX_POOLED_BYTES: usize = 64 << 10;

/// A record in the writer's buffer: packed (see [`wire`]), with its row count.
type Buffered = (Vec<u8>, usize);

enum Msg {
    Record(Vec<u8>, usize),
    Flush(SyncSender<Result<(), String>>),
    Close(SyncSender<CloseReport>),
}

/// The writer behind the data plane's prediction sink.
pub struct PredictionLog {
    tx: SyncSender<Msg>,
    shared: Arc<Shared>,
    max_records: usize,
    max_bytes: usize,
    thread: Mutex<Option<JoinHandle<()>>>,
    waker: std::thread::Thread,
}

impl std::fmt::Debug for PredictionLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PredictionLog")
            .field("stats", &self.stats())
            .finish()
    }
}

impl PredictionLog {
    /// Starts the writer thread, writing into `store` under [`layout::ROOT`].
    pub fn start(
        store: ArtifactStore,
        config: PredictionLogConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<PredictionLog, PredLogError> {
        let max_records = config.max_buffered_records.max(1);
        // Control messages need room beside a full buffer.
        let (tx, rx) = std::sync::mpsc::sync_channel(max_records + 8);
        let shared = Arc::new(Shared::default());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let mut writer = Writer {
            rx,
            store,
            config: config.clone(),
            clock,
            shared: shared.clone(),
            pool_cap: max_records.min(4 * config.flush_rows.max(1)),
            rt,
            encoder: parquet::Encoder::new(config.compression)?,
            buf: Vec::new(),
            buf_rows: 0,
            oldest_ms: 0,
            next_attempt_ms: i64::MIN,
        };
        let thread = std::thread::Builder::new()
            .name("kiln-predlog".into())
            .spawn(move || writer.run())?;
        let waker = thread.thread().clone();
        Ok(PredictionLog {
            tx,
            shared,
            max_records,
            max_bytes: config.max_buffered_bytes.max(1),
            thread: Mutex::new(Some(thread)),
            waker,
        })
    }

    /// Takes a record without blocking: packs it into a buffer (recycled when one is free)
    /// and queues it for the writer thread. Returns whether it was accepted (else it was
    /// dropped and counted: the buffer is full or the log closed).
    pub fn record(&self, p: &PredictionRef<'_>) -> bool {
        let s = &*self.shared;
        let bytes = p.buffer_bytes();
        let refuse = || {
            s.dropped.fetch_add(1, Ordering::Relaxed);
            false
        };
        // Reserve room in the buffer first (undone if it is not there).
        if s.pending_records.fetch_add(1, Ordering::AcqRel) >= self.max_records {
            s.pending_records.fetch_sub(1, Ordering::AcqRel);
            return refuse();
        }
        let before = s.pending_bytes.fetch_add(bytes, Ordering::AcqRel);
        let release = || {
            s.pending_bytes.fetch_sub(bytes, Ordering::AcqRel);
            s.pending_records.fetch_sub(1, Ordering::AcqRel);
        };
        // A single record larger than the bound still goes in when nothing else is waiting.
        if before > 0 && before + bytes > self.max_bytes {
            release();
            return refuse();
        }
        // Never waits for the pool: when the writer holds it, a new buffer is allocated.
        let mut buf = s
            .pool
            .try_lock()
            .ok()
            .and_then(|mut pool| pool.pop())
            .unwrap_or_default();
        buf.clear();
        wire::pack_into(p, &mut buf);
        match self.tx.try_send(Msg::Record(buf, p.rows())) {
            Ok(()) => {
                s.records.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                release();
                refuse()
            }
        }
    }

    pub fn stats(&self) -> LogStats {
        let s = &*self.shared;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        LogStats {
            records: get(&s.records),
            dropped: get(&s.dropped),
            flushes: get(&s.flushes),
            flush_errors: get(&s.flush_errors),
            written: get(&s.written),
            buffered: s.pending_records.load(Ordering::Relaxed) as u64,
        }
    }

    /// Writes everything accepted so far and waits for it (blocking: call it off the async
    /// workers). An error names the first write that failed; those records stay buffered.
    pub fn flush(&self) -> Result<(), PredLogError> {
        let (ack, done) = std::sync::mpsc::sync_channel(1);
        self.tx
            .send(Msg::Flush(ack))
            .map_err(|_| PredLogError::Closed)?;
        self.waker.unpark();
        done.recv()
            .map_err(|_| PredLogError::Closed)?
            .map_err(PredLogError::Write)
    }

    /// Writes what is buffered (retrying a failing store a few times), stops the writer thread
    /// and waits for it (blocking). Later records are dropped. Closing twice is harmless.
    pub fn close(&self) -> CloseReport {
        let handle = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some(handle) = handle else {
            return CloseReport::default();
        };
        let (ack, done) = std::sync::mpsc::sync_channel(1);
        let report = if self.tx.send(Msg::Close(ack)).is_ok() {
            self.waker.unpark();
            done.recv().unwrap_or_default()
        } else {
            CloseReport::default()
        };
        let _ = handle.join();
        report
    }
}

impl Drop for PredictionLog {
    /// Asks the writer to write what it holds and stop, without waiting for it; call
    /// [`close`](Self::close) to be sure everything is written.
    fn drop(&mut self) {
        let handle = self
            .thread
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if handle.is_some() {
            let (ack, _done) = std::sync::mpsc::sync_channel(1);
            let _ = self.tx.try_send(Msg::Close(ack));
            self.waker.unpark();
        }
    }
}

struct Writer {
    rx: Receiver<Msg>,
    store: ArtifactStore,
    config: PredictionLogConfig,
    clock: Arc<dyn Clock>,
    shared: Arc<Shared>,
    /// Buffers kept for reuse, at most.
    pool_cap: usize,
    rt: tokio::runtime::Runtime,
    /// Encodes files (its compression context is reused from file to file).
    encoder: parquet::Encoder,
    /// Accepted records with their byte estimates, oldest first.
    buf: Vec<Buffered>,
    buf_rows: usize,
    /// When the oldest buffered record arrived (clock ms).
    oldest_ms: i64,
    /// No automatic write before this (after a failure).
    next_attempt_ms: i64,
}

enum Control {
    Flush(SyncSender<Result<(), String>>),
    Close(Option<SyncSender<CloseReport>>),
}

impl Writer {
    fn run(&mut self) {
        loop {
            let control = self.drain();
            match control {
                Some(Control::Flush(ack)) => {
                    let r = self.write_all();
                    let _ = ack.send(r);
                    continue;
                }
                Some(Control::Close(ack)) => {
                    let report = self.finish();
                    if let Some(ack) = ack {
                        let _ = ack.send(report);
                    }
                    return;
                }
                None => {}
            }
            let now = self.clock.now_ms();
            let due = self.buf_rows >= self.config.flush_rows.max(1)
                || now.saturating_sub(self.oldest_ms)
                    >= self.config.flush_interval.as_millis() as i64;
            if !self.buf.is_empty() && due && now >= self.next_attempt_ms {
                if let Err(e) = self.write_all() {
                    tracing::warn!(error = %e, buffered = self.buf.len(), "prediction log: write failed; retrying later");
                    self.next_attempt_ms =
                        now.saturating_add(self.config.retry_after.as_millis() as i64);
                } else {
                    self.next_attempt_ms = i64::MIN;
                }
            }
            std::thread::park_timeout(self.config.tick);
        }
    }

    /// Moves what is queued into the buffer, up to the first control message.
    fn drain(&mut self) -> Option<Control> {
        loop {
            match self.rx.try_recv() {
                Ok(Msg::Record(packed, rows)) => {
                    if self.buf.is_empty() {
                        self.oldest_ms = self.clock.now_ms();
                    }
                    self.buf_rows += rows;
                    self.buf.push((packed, rows));
                }
                Ok(Msg::Flush(ack)) => return Some(Control::Flush(ack)),
                Ok(Msg::Close(ack)) => return Some(Control::Close(Some(ack))),
                Err(TryRecvError::Empty) => return None,
                // Every handle is gone: write what is left and stop.
                Err(TryRecvError::Disconnected) => return Some(Control::Close(None)),
            }
        }
    }

    /// The final writes: whatever is queued, a few attempts, then the rest is discarded.
    fn finish(&mut self) -> CloseReport {
        while let Ok(m) = self.rx.try_recv() {
            match m {
                Msg::Record(packed, rows) => {
                    self.buf_rows += rows;
                    self.buf.push((packed, rows));
                }
                Msg::Flush(ack) => {
                    let _ = ack.send(Err("the prediction log is closing".into()));
                }
                Msg::Close(ack) => {
                    let _ = ack.send(CloseReport::default());
                }
            }
        }
        let before = self.shared.written.load(Ordering::Relaxed);
        let attempts = self.config.close_attempts.max(1);
        for attempt in 1..=attempts {
            if self.buf.is_empty() {
                break;
            }
            match self.write_all() {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(error = %e, attempt, "prediction log: write at close failed");
                    if attempt < attempts {
                        std::thread::sleep(Duration::from_millis(200 * u64::from(attempt)));
                    }
                }
            }
        }
        let discarded = self.buf.len() as u64;
        if discarded > 0 {
            tracing::error!(
                records = discarded,
                "prediction log: records could not be written and are lost"
            );
            let lost = std::mem::take(&mut self.buf);
            self.release(lost);
            self.shared.dropped.fetch_add(discarded, Ordering::Relaxed);
            self.buf_rows = 0;
        }
        CloseReport {
            written: self.shared.written.load(Ordering::Relaxed) - before,
            discarded,
        }
    }

    /// Gives back the buffer room of records that left it, and their buffers to the pool.
    fn release(&self, records: Vec<Buffered>) {
        let bytes: usize = records.iter().map(|(b, _)| b.len()).sum();
        let n = records.len();
        {
            let mut pool = self.shared.pool.lock().unwrap_or_else(|p| p.into_inner());
            let room = self.pool_cap.saturating_sub(pool.len());
            pool.extend(
                records
                    .into_iter()
                    .take(room)
                    .map(|(b, _)| b)
                    .filter(|b| b.capacity() <= MAX_POOLED_BYTES),
            );
        }
        self.shared.pending_records.fetch_sub(n, Ordering::AcqRel);
        self.shared.pending_bytes.fetch_sub(bytes, Ordering::AcqRel);
    }

    /// Writes the buffer: one file per deployment, hour and schema. Records of files that
    /// failed stay buffered.
    fn write_all(&mut self) -> Result<(), String> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let now = self.clock.now_ms();
        let packed = std::mem::take(&mut self.buf);
        let views: Vec<Option<wire::View<'_>>> =
            packed.iter().map(|(b, _)| wire::view(b)).collect();
        let unreadable = views.iter().filter(|v| v.is_none()).count();
        if unreadable > 0 {
            // Never made by this process; not worth keeping.
            tracing::error!(
                records = unreadable,
                "prediction log: unreadable records dropped"
            );
            self.shared
                .dropped
                .fetch_add(unreadable as u64, Ordering::Relaxed);
        }
        // One file per (deployment, hour) and schema: (deployment, hour, schema key) → group.
        // A record shaped like the one before it joins its group without making a key.
        let mut index: BTreeMap<((&str, i64), String), usize> = BTreeMap::new();
        let mut groups: Vec<Vec<usize>> = Vec::new();
        let mut last: Option<(&wire::View<'_>, (&str, i64), usize)> = None;
        for (i, v) in views.iter().enumerate() {
            let Some(v) = v else { continue };
            let part = (
                v.deployment,
                layout::hour_of_ms(v.time_us.div_euclid(1_000)),
            );
            let g = match last {
                Some((u, p, g)) if p == part && table::same_schema(u, v) => g,
                _ => {
                    let next = groups.len();
                    let g = *index.entry((part, table::schema_key(v))).or_insert(next);
                    if g == next {
                        groups.push(Vec::new());
                    }
                    g
                }
            };
            groups[g].push(i);
            last = Some((v, part, g));
        }
        let mut outcome: Vec<Option<bool>> = vec![None; packed.len()];
        let mut first_error = None;
        for (((deployment, hour), _), &g) in &index {
            let group = &groups[g];
            let refs: Vec<&wire::View<'_>> =
                group.iter().filter_map(|&i| views[i].as_ref()).collect();
            let ok = match self.write_file(deployment, *hour, now, &refs) {
                Ok(()) => {
                    self.shared.flushes.fetch_add(1, Ordering::Relaxed);
                    self.shared
                        .written
                        .fetch_add(group.len() as u64, Ordering::Relaxed);
                    true
                }
                Err(e) => {
                    self.shared.flush_errors.fetch_add(1, Ordering::Relaxed);
                    first_error.get_or_insert_with(|| e.to_string());
                    false
                }
            };
            for &i in group {
                outcome[i] = Some(ok);
            }
        }
        drop(index);
        drop(views);
        // Written (or unreadable) records leave the buffer; failed ones stay, as old as they
        // were: due again once `next_attempt_ms` passes.
        let mut done = Vec::with_capacity(packed.len());
        for (record, ok) in packed.into_iter().zip(outcome) {
            if ok == Some(false) {
                self.buf.push(record);
            } else {
                done.push(record);
            }
        }
        self.release(done);
        self.buf_rows = self.buf.iter().map(|(_, rows)| rows).sum();
        first_error.map_or(Ok(()), Err)
    }

    fn write_file(
        &mut self,
        deployment: &str,
        hour: i64,
        now_ms: i64,
        group: &[&wire::View<'_>],
    ) -> Result<(), PredLogError> {
        let (bytes, rows) = match columns::build(group) {
            Some((columns, rows)) => (self.encoder.file(&columns, rows)?, rows),
            None => {
                // List columns: through a table and Polars (on this thread only: the
                // serving threads keep the other cores).
                let table = table::to_table(group);
                let options = kiln_data::plain::WriteOptions {
                    parallel: false,
                    ..Default::default()
                };
                let bytes = kiln_data::plain::to_parquet_bytes_with(&table, &options)?;
                (bytes, table.height())
            }
        };
        let path = layout::part_path(deployment, hour, now_ms);
        let body =
            futures::stream::once(
                async move { Ok::<_, std::io::Error>(bytes::Bytes::from(bytes)) },
            );
        self.rt.block_on(self.store.put_stream(&path, body))?;
        tracing::debug!(%path, rows, "prediction log: file written");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use kiln_ml::{Tensor, TensorData};

    #[test]
    fn written_records_give_their_buffers_back_for_the_next_ones() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(dir.path().to_str().unwrap()).unwrap();
        let config = PredictionLogConfig {
            flush_interval: Duration::from_secs(3_600),
            tick: Duration::from_millis(5),
            ..PredictionLogConfig::default()
        };
        let log = PredictionLog::start(store, config, Arc::new(ManualClock::new(0))).unwrap();
        let p = Prediction {
            deployment: "gb".into(),
            version: "1".into(),
            request_id: "r".into(),
            time_us: 0,
            latency_us: 1,
            inputs: Inputs::Tensors(vec![
                Tensor::new("X", vec![1, 2], TensorData::Fp32(vec![1.0, 2.0])).unwrap(),
            ]),
            outputs: vec![],
        };
        let pooled = || log.shared.pool.lock().unwrap().len();
        for _ in 0..3 {
            assert!(log.record(&p.borrowed()));
        }
        assert_eq!(pooled(), 0);
        log.flush().unwrap();
        assert_eq!(pooled(), 3);
        // The next record takes a pooled buffer; written, it comes back.
        assert!(log.record(&p.borrowed()));
        assert_eq!(pooled(), 2);
        log.flush().unwrap();
        assert_eq!(pooled(), 3);
        assert_eq!(log.stats().written, 4);
        log.close();
    }
}
