//! The prediction log's writer thread: takes the lanes' records every tick, folds them into
//! typed columns per file to be (deployment, hour, schema), and writes the files when due
//! (see the module above for when, and what is kept when a write fails).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError};
use std::time::Duration;

use kiln_store::ArtifactStore;

use super::{
    Chunk, CloseReport, MAX_SPARE_BYTES, Msg, PredLogError, PredictionLogConfig, Shared, columns,
    layout, parquet, table, wire,
};
use crate::clock::Clock;

/// The records of one file to be: one deployment, hour and schema.
struct Group {
    key: GroupKey,
    body: Body,
    records: usize,
    rows: usize,
    /// Packed bytes of its records (what the buffer's byte bound counts).
    bytes: usize,
    /// Writes since it last had a record (an idle group is forgotten at the next).
    idle: u8,
}

/// (deployment, hour, schema key).
type GroupKey = (String, i64, String);

enum Body {
    /// Records folded into typed columns as they are taken.
    Columns(columns::Builder),
    /// A schema with list columns: the packed records, written through a table and Polars.
    Packed(Chunk),
}

impl Group {
    fn clear(&mut self) {
        match &mut self.body {
            Body::Columns(b) => b.clear(),
            Body::Packed(c) => c.clear(),
        }
        self.records = 0;
        self.rows = 0;
        self.bytes = 0;
        self.idle = 0;
    }
}

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
    /// Empty chunks to hand the lanes in exchange for theirs.
    spares: Vec<Chunk>,
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
            spares: Vec::new(),
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

    /// Takes every lane's records (handing it an empty chunk) and folds them into their
    /// groups at once, while they are in cache; forgets lanes whose threads have ended. With
    /// `close`, the lanes refuse records from now on.
    fn take(&mut self, close: bool) {
        let shared = self.shared.clone();
        let mut lanes = shared.lanes.lock().unwrap_or_else(|p| p.into_inner());
        lanes.closed |= close;
        let mut gone = Vec::new();
        for (i, lane) in lanes.all.iter().enumerate() {
            let mut chunk = {
                let mut st = lane.state.lock().unwrap_or_else(|p| p.into_inner());
                st.closed |= close;
                // Only the list holds it: its thread has ended.
                if Arc::strong_count(lane) == 1 {
                    gone.push((i, st.records, st.dropped));
                }
                if st.chunk.is_empty() {
                    continue;
                }
                let mut chunk = self.spares.pop().unwrap_or_default();
                std::mem::swap(&mut chunk, &mut st.chunk);
                if self.held_records == 0 {
                    self.oldest_ms = self.clock.now_ms();
                }
                self.held_records += chunk.len();
                self.held_bytes += chunk.bytes();
                self.held_rows += chunk.rows;
                // Published before the lane is unlocked: its thread never counts these
                // records twice (in its lane and as held) or not at all.
                self.publish();
                chunk
            };
            self.fold(&chunk);
            chunk.clear();
            if chunk.data.capacity() <= MAX_SPARE_BYTES && self.spares.len() < 64 {
                self.spares.push(chunk);
            }
        }
        for &(i, records, dropped) in gone.iter().rev() {
            lanes.all.swap_remove(i);
            lanes.records += records;
            lanes.dropped += dropped;
        }
        shared.lane_count.store(lanes.all.len(), Ordering::Relaxed);
    }

    /// Adds a chunk's records to their groups. A record shaped like the one before it joins
    /// its group without making a key.
    fn fold(&mut self, chunk: &Chunk) {
        let mut last: Option<(wire::View<'_>, usize)> = None;
        let mut unreadable = 0;
        for (packed, rows) in chunk.records() {
            let Some(v) = wire::view(packed) else {
                unreadable += 1;
                continue;
            };
            let hour = layout::hour_of_ms(v.time_us.div_euclid(1_000));
            let g = match &last {
                Some((u, g))
                    if u.deployment == v.deployment
                        && self.groups[*g].key.1 == hour
                        && table::same_schema(u, &v) =>
                {
                    *g
                }
                _ => self.group_for(&v, hour),
            };
            let group = &mut self.groups[g];
            match &mut group.body {
                Body::Columns(b) => b.push(&v),
                Body::Packed(c) => c.push(packed, rows),
            }
            group.records += 1;
            group.rows += rows;
            group.bytes += packed.len();
            last = Some((v, g));
        }
        if unreadable > 0 {
            // Never made by this process; not worth keeping.
            tracing::error!(
                records = unreadable,
                "prediction log: unreadable records dropped"
            );
            self.shared
                .dropped
                .fetch_add(unreadable as u64, Ordering::Relaxed);
            self.recount();
        }
    }

    /// The group of records shaped like `v` in `hour`, made if need be.
    fn group_for(&mut self, v: &wire::View<'_>, hour: i64) -> usize {
        let key = (v.deployment.to_string(), hour, table::schema_key(v));
        if let Some(&g) = self.index.get(&key) {
            return g;
        }
        let capacity = self.config.flush_rows.clamp(1, 4_096);
        let body = match columns::Builder::new(v, capacity) {
            Some(b) => Body::Columns(b),
            None => Body::Packed(Chunk::default()),
        };
        let g = self.groups.len();
        self.groups.push(Group {
            key: key.clone(),
            body,
            records: 0,
            rows: 0,
            bytes: 0,
            idle: 0,
        });
        self.index.insert(key, g);
        g
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
                Ok(()) => {
                    let group = &mut self.groups[g];
                    self.shared.flushes.fetch_add(1, Ordering::Relaxed);
                    self.shared
                        .written
                        .fetch_add(group.records as u64, Ordering::Relaxed);
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

    fn write_file(&mut self, g: usize, now_ms: i64) -> Result<(), PredLogError> {
        let group = &self.groups[g];
        let (bytes, rows) = match &group.body {
            Body::Columns(b) => (self.encoder.file(b.columns(), b.rows())?, b.rows()),
            Body::Packed(chunk) => {
                // List columns: through a table and Polars (on this thread only: the
                // serving threads keep the other cores).
                let views: Vec<wire::View<'_>> =
                    chunk.records().filter_map(|(b, _)| wire::view(b)).collect();
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
        Ok(())
    }
}
