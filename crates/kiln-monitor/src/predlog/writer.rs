//! The prediction log's writer thread: takes the lanes' columns every tick, appends them to
//! its own per file to be (deployment, hour, schema), and writes the files when due (see the
//! module above for when, and what is kept when a write fails).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError};
use std::time::Duration;

use kiln_store::ArtifactStore;

use super::{
    Body, CloseReport, Group, GroupKey, MAX_SPARE_BYTES, Msg, PredLogError, PredictionLogConfig,
    Shared, layout, parquet, table, wire,
};
use crate::clock::Clock;

pub(super) struct Writer {
    rx: Receiver<Msg>,
    store: ArtifactStore,
    config: PredictionLogConfig,
    clock: Arc<dyn Clock>,
    shared: Arc<Shared>,
    rt: tokio::runtime::Runtime,
    /// Encodes files (its compression context is reused from file to file).
    encoder: parquet::Encoder,
    /// Records taken from the lanes and not yet written, by the file they go to.
    groups: Vec<Group>,
    index: HashMap<GroupKey, usize>,
    held_records: usize,
    held_bytes: usize,
    held_rows: usize,
    /// When the oldest held record was taken (clock ms).
    oldest_ms: i64,
    /// No automatic write before this (after a failure).
    next_attempt_ms: i64,
}

enum Control {
    Flush(SyncSender<Result<(), String>>),
    Close(Option<SyncSender<CloseReport>>),
}

impl Writer {
    pub(super) fn new(
        rx: Receiver<Msg>,
        store: ArtifactStore,
        config: PredictionLogConfig,
        clock: Arc<dyn Clock>,
        shared: Arc<Shared>,
    ) -> Result<Writer, PredLogError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(Writer {
            rx,
            store,
            encoder: parquet::Encoder::new(config.compression)?,
            config,
            clock,
            shared,
            rt,
            groups: Vec::new(),
            index: HashMap::new(),
            held_records: 0,
            held_bytes: 0,
            held_rows: 0,
            oldest_ms: 0,
            next_attempt_ms: i64::MIN,
        })
    }

    pub(super) fn run(&mut self) {
        loop {
            let control = match self.rx.try_recv() {
                Ok(Msg::Flush(ack)) => Some(Control::Flush(ack)),
                Ok(Msg::Close(ack)) => Some(Control::Close(Some(ack))),
                Err(TryRecvError::Empty) => None,
                // Every handle is gone: write what is left and stop.
                Err(TryRecvError::Disconnected) => Some(Control::Close(None)),
            };
            match control {
                Some(Control::Flush(ack)) => {
                    self.take(false);
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
            self.take(false);
            let now = self.clock.now_ms();
            let due = self.held_rows >= self.config.flush_rows.max(1)
                || now.saturating_sub(self.oldest_ms)
                    >= self.config.flush_interval.as_millis() as i64;
            if self.held_records > 0 && due && now >= self.next_attempt_ms {
                if let Err(e) = self.write_all() {
                    tracing::warn!(error = %e, buffered = self.held_records, "prediction log: write failed; retrying later");
                    self.next_attempt_ms =
                        now.saturating_add(self.config.retry_after.as_millis() as i64);
                } else {
                    self.next_attempt_ms = i64::MIN;
                }
            }
            std::thread::park_timeout(self.config.tick);
        }
    }

    /// Takes every lane's records: hands it the groups it took from it last time (emptied,
    /// with their room) in exchange for the ones it filled since, and appends those to its
    /// own; forgets lanes whose threads have ended. With `close`, the lanes refuse records
    /// from now on.
    fn take(&mut self, close: bool) {
        let shared = self.shared.clone();
        let mut lanes = shared.lanes.lock().unwrap_or_else(|p| p.into_inner());
        lanes.closed |= close;
        let mut gone = Vec::new();
        for (i, lane) in lanes.all.iter().enumerate() {
            let mut taken = {
                let mut st = lane.state.lock().unwrap_or_else(|p| p.into_inner());
                st.closed |= close;
                // Only the list holds it: its thread has ended.
                if Arc::strong_count(lane) == 1 {
                    gone.push((i, st.records, st.dropped));
                }
                if st.pending == 0 {
                    continue;
                }
                let st = &mut *st;
                std::mem::swap(&mut st.groups, &mut st.spare);
                st.last = 0;
                if self.held_records == 0 {
                    self.oldest_ms = self.clock.now_ms();
                }
                self.held_records += st.pending;
                self.held_bytes += st.pending_bytes;
                self.held_rows += st.spare.iter().map(|g| g.rows).sum::<usize>();
                st.pending = 0;
                st.pending_bytes = 0;
                // Published before the lane is unlocked: its thread never counts these
                // records twice (in its lane and as held) or not at all.
                self.publish();
                std::mem::take(&mut st.spare)
            };
            for g in &mut taken {
                if g.records == 0 {
                    g.idle = g.idle.saturating_add(1);
                    continue;
                }
                g.idle = 0;
                let w = self.group_for(g);
                if !self.groups[w].append(g) {
                    // Never made by this server (see `Group::append`); not worth keeping.
                    tracing::error!(
                        records = g.records,
                        "prediction log: records of an unexpected shape dropped"
                    );
                    self.forget(g.records, g.rows, g.bytes);
                }
                g.clear();
            }
            // Groups idle for several takes (an hour that has passed, a version no longer
            // served) and groups grown too large are not handed back.
            taken.retain(|g| g.idle < 8 && g.room() <= MAX_SPARE_BYTES);
            lane.state.lock().unwrap_or_else(|p| p.into_inner()).spare = taken;
        }
        for &(i, records, dropped) in gone.iter().rev() {
            lanes.all.swap_remove(i);
            lanes.records += records;
            lanes.dropped += dropped;
        }
        shared.lane_count.store(lanes.all.len(), Ordering::Relaxed);
    }

    /// The writer's group for the records of `g`'s file, made if need be.
    fn group_for(&mut self, g: &Group) -> usize {
        if let Some(&w) = self.index.get(&g.key) {
            return w;
        }
        let w = self.groups.len();
        self.groups.push(g.empty_like());
        self.index.insert(g.key.clone(), w);
        w
    }

    /// Records held and counted that will never be written: dropped.
    fn forget(&mut self, records: usize, rows: usize, bytes: usize) {
        self.held_records -= records;
        self.held_rows -= rows;
        self.held_bytes -= bytes;
        self.publish();
        self.shared
            .dropped
            .fetch_add(records as u64, Ordering::Relaxed);
    }

    /// The held totals from the groups, published.
    fn recount(&mut self) {
        self.held_records = self.groups.iter().map(|g| g.records).sum();
        self.held_bytes = self.groups.iter().map(|g| g.bytes).sum();
        self.held_rows = self.groups.iter().map(|g| g.rows).sum();
        self.publish();
    }

    fn publish(&self) {
        let s = &*self.shared;
        s.held_records.store(self.held_records, Ordering::Relaxed);
        s.held_bytes.store(self.held_bytes, Ordering::Relaxed);
    }

    /// The final writes: everything the lanes hold (they refuse records from now on), a few
    /// attempts, then the rest is discarded.
    fn finish(&mut self) -> CloseReport {
        self.take(true);
        while let Ok(m) = self.rx.try_recv() {
            match m {
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
            if self.held_records == 0 {
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
        let discarded = self.held_records as u64;
        if discarded > 0 {
            tracing::error!(
                records = discarded,
                "prediction log: records could not be written and are lost"
            );
            self.groups.clear();
            self.index.clear();
            self.recount();
            self.shared.dropped.fetch_add(discarded, Ordering::Relaxed);
        }
        CloseReport {
            written: self.shared.written.load(Ordering::Relaxed) - before,
            discarded,
        }
    }

    /// Writes every group that holds records, one file each (in key order). A group whose
    /// write failed keeps its records, as old as they were: due again once
    /// `next_attempt_ms` passes. Groups idle since the last write are forgotten.
    fn write_all(&mut self) -> Result<(), String> {
        let now = self.clock.now_ms();
        let mut order: Vec<usize> = (0..self.groups.len())
            .filter(|&g| self.groups[g].records > 0)
            .collect();
        order.sort_by(|&a, &b| self.groups[a].key.cmp(&self.groups[b].key));
        let mut first_error = None;
        for g in order {
            match self.write_file(g, now) {
                Ok(written) => {
                    let group = &mut self.groups[g];
                    if written > 0 {
                        self.shared.flushes.fetch_add(1, Ordering::Relaxed);
                    }
                    self.shared
                        .written
                        .fetch_add(written as u64, Ordering::Relaxed);
                    let unreadable = group.records.saturating_sub(written);
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
                    group.clear();
                }
                Err(e) => {
                    self.shared.flush_errors.fetch_add(1, Ordering::Relaxed);
                    first_error.get_or_insert_with(|| e.to_string());
                }
            }
        }
        let before = self.groups.len();
        self.groups.retain_mut(|g| {
            if g.records > 0 {
                return true;
            }
            g.idle = g.idle.saturating_add(1);
            g.idle < 2
        });
        if self.groups.len() != before {
            self.index = self
                .groups
                .iter()
                .enumerate()
                .map(|(i, g)| (g.key.clone(), i))
                .collect();
        }
        self.recount();
        first_error.map_or(Ok(()), Err)
    }

    /// Writes group `g`'s file; returns the records written (a packed record that cannot be
    /// read back is left out).
    fn write_file(&mut self, g: usize, now_ms: i64) -> Result<usize, PredLogError> {
        let group = &mut self.groups[g];
        let mut records = group.records;
        let (bytes, rows) = match &mut group.body {
            Body::Columns(b) => {
                let rows = b.rows();
                let bytes = self
                    .encoder
                    .file_adapting(b.columns(), rows, &mut group.raw)?;
                (bytes, rows)
            }
            Body::Packed(chunk) => {
                // List columns: through a table and Polars (on this thread only: the
                // serving threads keep the other cores).
                let views: Vec<wire::View<'_>> = chunk.records().filter_map(wire::view).collect();
                records = views.len();
                if views.is_empty() {
                    return Ok(0);
                }
                let refs: Vec<&wire::View<'_>> = views.iter().collect();
                let table = table::to_table(&refs);
                let options = kiln_data::plain::WriteOptions {
                    parallel: false,
                    ..Default::default()
                };
                let bytes = kiln_data::plain::to_parquet_bytes_with(&table, &options)?;
                (bytes, table.height())
            }
        };
        let (deployment, hour, _) = &group.key;
        let path = layout::part_path(deployment, *hour, now_ms);
        let body =
            futures::stream::once(
                async move { Ok::<_, std::io::Error>(bytes::Bytes::from(bytes)) },
            );
        self.rt.block_on(self.store.put_stream(&path, body))?;
        tracing::debug!(%path, rows, "prediction log: file written");
        Ok(records)
    }
}
