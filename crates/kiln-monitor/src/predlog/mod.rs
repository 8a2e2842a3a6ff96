//! The sampled prediction log: answered requests, buffered in bounded memory and written as
//! Parquet files to the artifact store, partitioned by deployment, date and hour (see
//! [`layout`] for the paths and [`table`] for the columns).
//!
//! [`PredictionLog::record`] never blocks and never does I/O: it folds the record, straight
//! from the request's tensors, into typed columns (`columns`) per file to be (deployment,
//! hour, schema) in the calling thread's own lane, a buffer only that thread and the writer
//! touch, after checking the bounds (records and bytes) against the room the writer's
//! records leave, split between the lanes; a record that does not fit is dropped and
//! counted. Nothing on that path is shared between serving threads: no queue, no counter
//! written per record, no allocation once the lanes' columns have grown. The writer thread
//! (`kiln-predlog`) wakes every [`PredictionLogConfig::tick`], swaps each lane's columns for
//! the ones it emptied at the previous take and appends them to its own; it writes when it holds
//! [`PredictionLogConfig::flush_rows`] rows or its oldest record has waited
//! [`PredictionLogConfig::flush_interval`] (by the injected [`Clock`]), on
//! [`PredictionLog::flush`], and on [`PredictionLog::close`]. It writes the Parquet itself
//! ([`parquet`]: LZ4 pages, a dictionary only for repeated strings), so that logging every
//! request costs a few thousand instructions a record; records with list columns are kept
//! packed (see [`wire`]) and go through [`table`] and Polars.
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
mod encoding;
pub mod layout;
pub mod parquet;
pub mod read;
mod schema;
pub mod table;
mod thrift;
pub mod wire;
mod writer;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::SyncSender;
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

/// Records packed back to back (see [`wire`]), with where each ends: the records of a
/// schema with list columns, which go through [`table`] and Polars.
#[derive(Default)]
struct Chunk {
    data: Vec<u8>,
    /// Each record's end in `data`.
    ends: Vec<usize>,
}

impl Chunk {
    /// Packs `p` at the end.
    fn push(&mut self, p: &PredictionRef<'_>) {
        wire::pack_into(p, &mut self.data);
        self.ends.push(self.data.len());
    }

    fn append(&mut self, other: &Chunk) {
        let base = self.data.len();
        self.data.extend_from_slice(&other.data);
        self.ends.extend(other.ends.iter().map(|end| base + end));
    }

    /// Each record's packed bytes, oldest first.
    fn records(&self) -> impl Iterator<Item = &[u8]> + '_ {
        let mut start = 0;
        self.ends.iter().map(move |&end| {
            let r = &self.data[start..end];
            start = end;
            r
        })
    }

    fn clear(&mut self) {
        self.data.clear();
        self.ends.clear();
    }
}

/// (deployment, hour, schema): the file a record goes to.
type GroupKey = (String, i64, schema::Schema);

/// The records of one file to be, in a lane or in the writer.
struct Group {
    key: GroupKey,
    body: Body,
    records: usize,
    rows: usize,
    /// The records' packed size (what the buffer's byte bound counts).
    bytes: usize,
    /// Takes (in a lane) or writes (in the writer) since it last had a record: an idle group
    /// is forgotten.
    idle: u8,
    /// Which of the file's columns compression does not pay for (the writer's groups).
    raw: parquet::RawColumns,
}

enum Body {
    /// Records folded into typed columns as they are answered.
    Columns(columns::Builder),
    /// A schema with list columns: the packed records.
    Packed(Chunk),
}

impl Group {
    /// A group for records shaped like `p` in `hour`, with room for `capacity` rows.
    fn new(p: &PredictionRef<'_>, hour: i64, capacity: usize) -> Group {
        let body = match columns::Builder::new(p, capacity) {
            Some(b) => Body::Columns(b),
            None => Body::Packed(Chunk::default()),
        };
        Group {
            key: (p.deployment.to_string(), hour, schema::Schema::of(p)),
            body,
            records: 0,
            rows: 0,
            bytes: 0,
            idle: 0,
            raw: parquet::RawColumns::default(),
        }
    }

    /// The same file to be, with no records.
    fn empty_like(&self) -> Group {
        Group {
            key: self.key.clone(),
            body: match &self.body {
                Body::Columns(b) => Body::Columns(b.empty_like()),
                Body::Packed(_) => Body::Packed(Chunk::default()),
            },
            records: 0,
            rows: 0,
            bytes: 0,
            idle: 0,
            raw: parquet::RawColumns::default(),
        }
    }

    fn matches(&self, p: &PredictionRef<'_>, hour: i64) -> bool {
        self.key.1 == hour && self.key.0 == p.deployment && self.key.2.matches(p)
    }

    fn push(&mut self, p: &PredictionRef<'_>, bytes: usize) {
        match &mut self.body {
            Body::Columns(b) => b.push(p),
            Body::Packed(c) => c.push(p),
        }
        self.records += 1;
        self.rows += p.rows();
        self.bytes += bytes;
    }

    /// Adds `other`'s records (a group with the same key); false, adding nothing, if its
    /// body is of the other kind (equal keys make the same body for every tensor the server
    /// builds: a packed schema is one with list columns).
    #[must_use]
    fn append(&mut self, other: &Group) -> bool {
        match (&mut self.body, &other.body) {
            (Body::Columns(a), Body::Columns(b)) => a.append(b),
            (Body::Packed(a), Body::Packed(b)) => a.append(b),
            _ => return false,
        }
        self.records += other.records;
        self.rows += other.rows;
        self.bytes += other.bytes;
        self.idle = 0;
        true
    }

    /// Room it keeps for records, in bytes (roughly).
    fn room(&self) -> usize {
        match &self.body {
            Body::Columns(b) => b.room(),
            Body::Packed(c) => c.data.capacity(),
        }
    }

    fn clear(&mut self) {
        match &mut self.body {
            Body::Columns(b) => b.clear(),
            Body::Packed(c) => c.clear(),
        }
        self.records = 0;
        self.rows = 0;
        self.bytes = 0;
    }
}

/// One serving thread's part of the buffer. The thread folds its records into its own lane
/// (a lock nobody else takes but the writer, twice a tick), so logging a record touches no
/// memory another thread writes: no shared queue, counter or allocation per record.
#[derive(Default)]
struct Lane {
    state: Mutex<LaneState>,
}

#[derive(Default)]
struct LaneState {
    /// Records accepted and not yet taken by the writer, by file.
    groups: Vec<Group>,
    /// The group the last record went to (the next one nearly always goes there too).
    last: usize,
    /// The groups the writer took last, emptied and handed back: the lane takes them up at
    /// the next take, so that both sets keep their room.
    spare: Vec<Group>,
    /// Records and packed bytes in `groups`.
    pending: usize,
    pending_bytes: usize,
    /// Records this lane accepted, and refused, since it was made.
    records: u64,
    dropped: u64,
    /// The log is closed: refuse everything.
    closed: bool,
}

/// Rows a lane's new group has room for (it grows as records come).
const LANE_ROWS: usize = 64;

impl LaneState {
    /// The group for `p` (made if need be).
    fn group_for(&mut self, p: &PredictionRef<'_>, hour: i64) -> &mut Group {
        let g = match self.groups.get(self.last) {
            Some(g) if g.matches(p, hour) => self.last,
            _ => match self.groups.iter().position(|g| g.matches(p, hour)) {
                Some(g) => g,
                None => {
                    self.groups.push(Group::new(p, hour, LANE_ROWS));
                    self.groups.len() - 1
                }
            },
        };
        self.last = g;
        &mut self.groups[g]
    }
}

/// Lanes of the log's serving threads.
#[derive(Default)]
struct Lanes {
    all: Vec<Arc<Lane>>,
    /// Set when the log closes: lanes made later start closed.
    closed: bool,
    /// Counts of lanes whose threads ended (their counters are added here when the writer
    /// forgets them).
    records: u64,
    dropped: u64,
}

#[derive(Default)]
struct Shared {
    lanes: Mutex<Lanes>,
    /// Lanes in `lanes` (read on every record, to split the room between them).
    lane_count: AtomicUsize,
    /// Records and bytes the writer holds (taken from the lanes, not yet written): written
    /// by the writer thread only.
    held_records: AtomicUsize,
    held_bytes: AtomicUsize,
    /// Records the writer dropped (unreadable or of an unexpected shape, or lost at close).
    dropped: AtomicU64,
    flushes: AtomicU64,
    flush_errors: AtomicU64,
    written: AtomicU64,
}

/// A lane's groups with more room than this are not kept for reuse.
const MAX_SPARE_BYTES: usize = 8 << 20;

static NEXT_LOG_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// This thread's lane in each log it has recorded into: (log id, lane).
    static MY_LANES: std::cell::RefCell<Vec<(u64, Arc<Lane>)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

enum Msg {
    Flush(SyncSender<Result<(), String>>),
    Close(SyncSender<CloseReport>),
}

/// The writer behind the data plane's prediction sink.
pub struct PredictionLog {
    id: u64,
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
        let (tx, rx) = std::sync::mpsc::sync_channel(8);
        let shared = Arc::new(Shared::default());
        let mut writer = writer::Writer::new(rx, store, config.clone(), clock, shared.clone())?;
        let thread = std::thread::Builder::new()
            .name("kiln-predlog".into())
            .spawn(move || writer.run())?;
        let waker = thread.thread().clone();
        Ok(PredictionLog {
            id: NEXT_LOG_ID.fetch_add(1, Ordering::Relaxed),
            tx,
            shared,
            max_records,
            max_bytes: config.max_buffered_bytes.max(1),
            thread: Mutex::new(Some(thread)),
            waker,
        })
    }

    /// This thread's lane, made on its first record.
    fn with_lane<R>(&self, f: impl FnOnce(&Lane) -> R) -> R {
        MY_LANES.with(|mine| {
            let mut mine = mine.borrow_mut();
            if let Some((_, lane)) = mine.iter().find(|(id, _)| *id == self.id) {
                return f(lane);
            }
            // Forget lanes of logs that are gone (only this thread and nobody else holds them).
            mine.retain(|(_, lane)| Arc::strong_count(lane) > 1);
            let lane = Arc::new(Lane::default());
            {
                let mut lanes = self.shared.lanes.lock().unwrap_or_else(|p| p.into_inner());
                lane.state.lock().unwrap_or_else(|p| p.into_inner()).closed = lanes.closed;
                lanes.all.push(lane.clone());
                self.shared
                    .lane_count
                    .store(lanes.all.len(), Ordering::Relaxed);
            }
            mine.push((self.id, lane.clone()));
            f(&lane)
        })
    }

    /// Takes a record without blocking: folds it into this thread's lane (the columns of its
    /// file to be, made on its first record; packed if its schema has list columns). Returns
    /// whether it was accepted (else it was dropped and counted: the buffer is full or the
    /// log closed).
    ///
    /// The bounds: the room the writer's records leave is shared evenly between the lanes
    /// (so all lanes together stay within the bounds, give or take a record a lane). Bytes
    /// are counted as the record packed ([`wire::packed_len`]). A record larger than the
    /// byte bound still goes in when nothing else is buffered.
    pub fn record(&self, p: &PredictionRef<'_>) -> bool {
        let s = &*self.shared;
        self.with_lane(|lane| {
            let mut st = lane.state.lock().unwrap_or_else(|p| p.into_inner());
            let lanes = s.lane_count.load(Ordering::Relaxed).max(1);
            let held_records = s.held_records.load(Ordering::Relaxed);
            let held_bytes = s.held_bytes.load(Ordering::Relaxed);
            let room_records = self
                .max_records
                .saturating_sub(held_records)
                .div_ceil(lanes);
            if st.closed || st.pending >= room_records {
                st.dropped += 1;
                return false;
            }
            let bytes = wire::packed_len(p);
            let room_bytes = self.max_bytes.saturating_sub(held_bytes).div_ceil(lanes);
            let alone = st.pending_bytes == 0 && held_bytes == 0;
            if st.pending_bytes + bytes > room_bytes && !alone {
                st.dropped += 1;
                return false;
            }
            let hour = layout::hour_of_ms(p.time_us.div_euclid(1_000));
            st.group_for(p, hour).push(p, bytes);
            st.pending += 1;
            st.pending_bytes += bytes;
            st.records += 1;
            true
        })
    }

    pub fn stats(&self) -> LogStats {
        let s = &*self.shared;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let (mut records, mut dropped, mut in_lanes) = (0, 0, 0);
        {
            let lanes = s.lanes.lock().unwrap_or_else(|p| p.into_inner());
            records += lanes.records;
            dropped += lanes.dropped;
            for lane in &lanes.all {
                let st = lane.state.lock().unwrap_or_else(|p| p.into_inner());
                records += st.records;
                dropped += st.dropped;
                in_lanes += st.pending as u64;
            }
        }
        LogStats {
            records,
            dropped: dropped + get(&s.dropped),
            flushes: get(&s.flushes),
            flush_errors: get(&s.flush_errors),
            written: get(&s.written),
            buffered: s.held_records.load(Ordering::Relaxed) as u64 + in_lanes,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use kiln_ml::{Tensor, TensorData};

    fn prediction(id: String) -> Prediction {
        Prediction {
            deployment: "gb".into(),
            version: "1".into(),
            request_id: id,
            time_us: 0,
            latency_us: 1,
            inputs: Inputs::Tensors(vec![
                Tensor::new("X", vec![1, 2], TensorData::Fp32(vec![1.0, 2.0])).unwrap(),
            ]),
            outputs: vec![],
        }
    }

    fn start(dir: &std::path::Path) -> PredictionLog {
        let store = ArtifactStore::open(dir.to_str().unwrap()).unwrap();
        let config = PredictionLogConfig {
            flush_interval: Duration::from_secs(3_600),
            tick: Duration::from_millis(5),
            ..PredictionLogConfig::default()
        };
        PredictionLog::start(store, config, Arc::new(ManualClock::new(0))).unwrap()
    }

    #[test]
    fn each_thread_records_into_its_own_lane_and_every_record_is_written_once() {
        let dir = tempfile::tempdir().unwrap();
        let log = start(dir.path());
        std::thread::scope(|scope| {
            for t in 0..4 {
                let log = &log;
                scope.spawn(move || {
                    for i in 0..250 {
                        assert!(log.record(&prediction(format!("t{t}-{i}")).borrowed()));
                    }
                });
            }
        });
        let s = log.stats();
        assert_eq!((s.records, s.dropped, s.buffered), (1_000, 0, 1_000));
        log.flush().unwrap();
        // The threads have ended: their lanes are forgotten, their counts kept.
        assert_eq!(log.shared.lane_count.load(Ordering::Relaxed), 0);
        let s = log.stats();
        assert_eq!((s.records, s.written, s.buffered), (1_000, 1_000, 0));
        log.close();
        let rt = tokio::runtime::Runtime::new().unwrap();
        let store = ArtifactStore::open(dir.path().to_str().unwrap()).unwrap();
        let t = rt
            .block_on(read_predictions(&store, "gb", 0, 3_600_000))
            .unwrap();
        let mut ids: Vec<String> = match t.column("request_id").unwrap() {
            kiln_data::plain::PlainColumn::Str(v) => v.iter().flatten().cloned().collect(),
            other => panic!("{other:?}"),
        };
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 1_000);
    }

    #[test]
    fn records_the_server_never_makes_are_dropped_and_counted_never_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let log = start(dir.path());
        // Shaped [1, 2] with one element: it cannot be read back once packed, so its lane
        // keeps it packed; another lane folds a sound record of the same schema into columns.
        let mut bad = prediction("bad".into());
        if let Inputs::Tensors(ts) = &mut bad.inputs {
            ts[0].data = TensorData::Fp32(vec![1.0]);
        }
        assert!(log.record(&bad.borrowed()));
        std::thread::scope(|scope| {
            scope.spawn(|| assert!(log.record(&prediction("good".into()).borrowed())));
        });
        log.flush().unwrap();
        let s = log.stats();
        assert_eq!((s.records, s.written, s.dropped, s.buffered), (2, 0, 2, 0));
        log.close();
    }

    #[test]
    fn a_lane_gets_its_used_columns_back_and_a_closed_log_refuses_in_every_lane() {
        let dir = tempfile::tempdir().unwrap();
        let log = start(dir.path());
        let lane_capacity = || {
            MY_LANES.with(|m| {
                let m = m.borrow();
                let (_, lane) = m.iter().find(|(id, _)| *id == log.id).unwrap();
                let st = lane.state.lock().unwrap();
                st.groups.iter().map(Group::room).sum::<usize>()
            })
        };
        for i in 0..100 {
            assert!(log.record(&prediction(format!("a{i}")).borrowed()));
        }
        let used = lane_capacity();
        log.flush().unwrap();
        assert!(log.record(&prediction("b".into()).borrowed()));
        log.flush().unwrap();
        // The second take handed the lane the columns the first one took: room for 100.
        assert!(lane_capacity() >= used, "{} < {used}", lane_capacity());
        log.close();
        assert!(!log.record(&prediction("late".into()).borrowed()));
        std::thread::scope(|scope| {
            scope.spawn(|| assert!(!log.record(&prediction("new lane".into()).borrowed())));
        });
        let s = log.stats();
        assert_eq!((s.records, s.written, s.dropped), (101, 101, 2));
    }
}
