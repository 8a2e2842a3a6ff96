//! Dynamic batching: one queue per model version, drained by dedicated inference threads.
//!
//! A request's tensors (rows along the first dimension) go into the queue with a reply
//! channel. An inference thread takes the oldest request and, without waiting when nothing
//! else is queued, adds every queued request with the same input layout until the batch
//! would exceed `max_batch_rows`; with `max_delay` > 0 it holds a partial batch until the
//! oldest request has waited that long (Triton's `max_queue_delay_microseconds`). It runs
//! the predictor once, splits the outputs back per request, and answers each. A request
//! whose deadline passed while queued is answered with [`BatchError::Expired`] and not
//! computed. The queue is bounded: when it is full, [`Batcher::submit`] fails at once with
//! [`BatchError::Full`] (the server's 429).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use kiln_ml::{Predictor, Tensor, TensorData};
use thiserror::Error;
use tokio::sync::oneshot;

/// How a version's queue batches.
#[derive(Debug, Clone, Copy)]
pub struct BatchConfig {
    /// At most this many rows per predictor call (a larger request runs alone).
    pub max_batch_rows: usize,
    /// How long a partial batch may wait for more requests (0: never wait).
    pub max_delay: Duration,
    /// Requests that may wait in the queue.
    pub queue_capacity: usize,
    /// Inference threads for this version.
    pub threads: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_batch_rows: 256,
            max_delay: Duration::ZERO,
            queue_capacity: 1024,
            threads: 1,
        }
    }
}

#[derive(Debug, Error)]
pub enum BatchError {
    #[error("the model's queue is full ({0} requests waiting); retry shortly")]
    Full(usize),
    #[error("the request waited {waited_ms} ms in the queue, past its deadline")]
    Expired { waited_ms: u64 },
    #[error("the model is shutting down")]
    Closed,
    /// The predictor refused the batch; the message names the input.
    #[error("{0}")]
    Predict(String),
}

/// Time spent, for metrics and response headers.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timing {
    pub queue: Duration,
    pub compute: Duration,
    /// Rows in the predictor call this request was part of.
    pub batch_rows: usize,
}

struct Job {
    inputs: Vec<Tensor>,
    rows: usize,
    enqueued: Instant,
    deadline: Option<Instant>,
    reply: oneshot::Sender<Result<Answer, BatchError>>,
}

/// A request's outputs, with its inputs handed back (the prediction log records them, so
/// the request path need not copy them before queueing).
#[derive(Debug)]
pub struct Answer {
    pub outputs: Vec<Tensor>,
    pub timing: Timing,
    pub inputs: Vec<Tensor>,
}

/// Counters of one queue.
#[derive(Debug, Default)]
pub struct BatchStats {
    /// Predictor calls.
    pub executions: AtomicU64,
    /// Requests answered by a predictor call.
    pub requests: AtomicU64,
    /// Rows predicted.
    pub rows: AtomicU64,
}

/// The queue itself: jobs in arrival order, and whether it still takes new ones.
struct Queue {
    jobs: VecDeque<Job>,
    closed: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    /// Signalled when a job arrives or the queue closes.
    ready: Condvar,
    /// Fault injection: extra time each predictor call takes, in microseconds (0: none).
    fault_delay_us: AtomicU64,
}

/// The queue of one model version. Dropping it stops the threads once the queue drains.
pub struct Batcher {
    shared: Arc<Shared>,
    capacity: usize,
    pub stats: Arc<BatchStats>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl Batcher {
    pub fn start(name: &str, predictor: Arc<dyn Predictor>, config: BatchConfig) -> Batcher {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                jobs: VecDeque::new(),
                closed: false,
            }),
            ready: Condvar::new(),
            fault_delay_us: AtomicU64::new(0),
        });
        let stats = Arc::new(BatchStats::default());
        let mut threads = vec![];
        for i in 0..config.threads.max(1) {
            let shared = shared.clone();
            let predictor = predictor.clone();
            let stats = stats.clone();
            let handle = std::thread::Builder::new()
                .name(format!("kiln-infer-{name}-{i}"))
                .spawn(move || run(&shared, predictor.as_ref(), config, &stats))
                .expect("the OS can start an inference thread");
            threads.push(handle);
        }
        Batcher {
            shared,
            capacity: config.queue_capacity.max(1),
            stats,
            threads: Mutex::new(threads),
        }
    }

    /// Queues a request (its tensors share the first dimension, `rows`) and waits for its
    /// outputs; the inputs come back with them.
    pub async fn submit(
        &self,
        inputs: Vec<Tensor>,
        rows: usize,
        deadline: Option<Instant>,
    ) -> Result<Answer, BatchError> {
        let (reply, rx) = oneshot::channel();
        let job = Job {
            inputs,
            rows,
            enqueued: Instant::now(),
            deadline,
            reply,
        };
        {
            let mut q = lock(&self.shared.queue);
            if q.closed {
                return Err(BatchError::Closed);
            }
            if q.jobs.len() >= self.capacity {
                return Err(BatchError::Full(self.capacity));
            }
            q.jobs.push_back(job);
        }
        self.shared.ready.notify_one();
        rx.await.map_err(|_| BatchError::Closed)?
    }

    /// Fault injection (for drills and the demo): every predictor call takes `delay` longer,
    /// on the inference thread, as a slow model would. Zero turns it off.
    pub fn inject_latency(&self, delay: Duration) {
        self.shared
            .fault_delay_us
            .store(delay.as_micros() as u64, Ordering::Relaxed);
    }

    /// The injected delay, if any.
    pub fn injected_latency(&self) -> Duration {
        Duration::from_micros(self.shared.fault_delay_us.load(Ordering::Relaxed))
    }

    /// Stops taking requests; queued ones are still answered. Waits for the threads.
    pub fn close(&self) {
        lock(&self.shared.queue).closed = true;
        self.shared.ready.notify_all();
        let threads = std::mem::take(&mut *lock(&self.threads));
        for t in threads {
            let _ = t.join();
        }
    }
}

impl Drop for Batcher {
    fn drop(&mut self) {
        lock(&self.shared.queue).closed = true;
        self.shared.ready.notify_all();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The input layout a job can be batched with: names, types and non-batch dimensions.
fn layout(inputs: &[Tensor]) -> Vec<(&str, std::mem::Discriminant<TensorData>, &[usize])> {
    inputs
        .iter()
        .map(|t| {
            (
                t.name.as_str(),
                std::mem::discriminant(&t.data),
                t.shape.get(1..).unwrap_or(&[]),
            )
        })
        .collect()
}

/// Moves queued jobs that fit (same layout, within the row budget) into `batch`, in order;
/// a job that does not fit stays at the head of the queue for the next batch.
fn gather(q: &mut Queue, batch: &mut Vec<Job>, rows: &mut usize, max_rows: usize) {
    while let Some(next) = q.jobs.front() {
        if *rows + next.rows > max_rows || layout(&next.inputs) != layout(&batch[0].inputs) {
            break;
        }
        let j = q.jobs.pop_front().expect("front exists");
        *rows += j.rows;
        batch.push(j);
    }
}

fn run(shared: &Shared, predictor: &dyn Predictor, config: BatchConfig, stats: &BatchStats) {
    loop {
        let batch = {
            let mut q = lock(&shared.queue);
            // Wait for a job; the lock is released while waiting.
            let first = loop {
                if let Some(j) = q.jobs.pop_front() {
                    break j;
                }
                if q.closed {
                    return;
                }
                q = shared.ready.wait(q).unwrap_or_else(|p| p.into_inner());
            };
            let hold_until = first.enqueued + config.max_delay;
            let mut rows = first.rows;
            let mut batch = vec![first];
            gather(&mut q, &mut batch, &mut rows, config.max_batch_rows);
            // With a queue delay, a partial batch waits (without the lock) for company.
            while rows < config.max_batch_rows && !q.closed {
                let now = Instant::now();
                if now >= hold_until {
                    break;
                }
                let (guard, _) = shared
                    .ready
                    .wait_timeout(q, hold_until - now)
                    .unwrap_or_else(|p| p.into_inner());
                q = guard;
                let before = batch.len();
                gather(&mut q, &mut batch, &mut rows, config.max_batch_rows);
                if batch.len() == before && q.jobs.front().is_some() {
                    // The head does not fit this batch: ship what we have.
                    break;
                }
            }
            // Another thread may take what is left.
            if !q.jobs.is_empty() {
                shared.ready.notify_one();
            }
            batch
        };
        let fault = shared.fault_delay_us.load(Ordering::Relaxed);
        execute(batch, predictor, stats, Duration::from_micros(fault));
    }
}

fn execute(batch: Vec<Job>, predictor: &dyn Predictor, stats: &BatchStats, fault: Duration) {
    let start = Instant::now();
    // Expired requests are answered without computing.
    let (live, expired): (Vec<Job>, Vec<Job>) = batch
        .into_iter()
        .partition(|j| j.deadline.is_none_or(|d| d > start));
    for j in expired {
        let waited_ms = start.duration_since(j.enqueued).as_millis() as u64;
        let _ = j.reply.send(Err(BatchError::Expired { waited_ms }));
    }
    if live.is_empty() {
        return;
    }
    let rows: usize = live.iter().map(|j| j.rows).sum();
    if !fault.is_zero() {
        std::thread::sleep(fault);
    }
    let result = if live.len() == 1 {
        predictor.predict(&live[0].inputs)
    } else {
        match concat(&live) {
            Ok(inputs) => predictor.predict(&inputs),
            Err(e) => Err(e),
        }
    };
    let compute = start.elapsed();
    stats.executions.fetch_add(1, Ordering::Relaxed);
    stats
        .requests
        .fetch_add(live.len() as u64, Ordering::Relaxed);
    stats.rows.fetch_add(rows as u64, Ordering::Relaxed);
    match result {
        Err(e) => {
            let msg = e.to_string();
            for j in live {
                let _ = j.reply.send(Err(BatchError::Predict(msg.clone())));
            }
        }
        Ok(outputs) => {
            let timing = |j: &Job| Timing {
                queue: start.duration_since(j.enqueued),
                compute,
                batch_rows: rows,
            };
            if live.len() == 1 {
                // The whole output is this request's: moved, not copied.
                let j = live.into_iter().next().expect("one job");
                let timing = timing(&j);
                let _ = j.reply.send(Ok(Answer {
                    outputs,
                    timing,
                    inputs: j.inputs,
                }));
                return;
            }
            let mut offset = 0;
            for j in live {
                let timing = timing(&j);
                let part = split(&outputs, offset, j.rows, rows);
                offset += j.rows;
                let _ = j.reply.send(part.map(|outputs| Answer {
                    outputs,
                    timing,
                    inputs: j.inputs,
                }));
            }
        }
    }
}

/// The jobs' inputs joined along the first dimension.
fn concat(jobs: &[Job]) -> Result<Vec<Tensor>, kiln_ml::MlError> {
    let first = &jobs[0].inputs;
    let mut out = Vec::with_capacity(first.len());
    for (i, t) in first.iter().enumerate() {
        let mut shape = t.shape.clone();
        let rows: usize = jobs
            .iter()
            .map(|j| j.inputs[i].shape.first().copied().unwrap_or(0))
            .sum();
        if let Some(d) = shape.first_mut() {
            *d = rows;
        }
        macro_rules! join {
            ($variant:ident) => {{
                let mut v = Vec::new();
                for j in jobs {
                    if let TensorData::$variant(x) = &j.inputs[i].data {
                        v.extend_from_slice(x);
                    }
                }
                TensorData::$variant(v)
            }};
        }
        let data = match &t.data {
            TensorData::Bool(_) => join!(Bool),
            TensorData::Int32(_) => join!(Int32),
            TensorData::Int64(_) => join!(Int64),
            TensorData::Fp32(_) => join!(Fp32),
            TensorData::Fp64(_) => join!(Fp64),
            TensorData::Bytes(_) => join!(Bytes),
        };
        out.push(Tensor::new(t.name.clone(), shape, data)?);
    }
    Ok(out)
}

/// Rows `offset..offset + n` of each output (outputs whose first dimension is the batch).
fn split(
    outputs: &[Tensor],
    offset: usize,
    n: usize,
    total: usize,
) -> Result<Vec<Tensor>, BatchError> {
    outputs
        .iter()
        .map(|t| {
            if t.shape.first() != Some(&total) {
                return Err(BatchError::Predict(format!(
                    "output `{}` has shape {:?}, which does not follow the batch of {total} rows",
                    t.name, t.shape
                )));
            }
            let per_row: usize = t.shape[1..].iter().product();
            let (a, b) = (offset * per_row, (offset + n) * per_row);
            macro_rules! cut {
                ($variant:ident, $x:expr) => {
                    TensorData::$variant($x[a..b].to_vec())
                };
            }
            let data = match &t.data {
                TensorData::Bool(x) => cut!(Bool, x),
                TensorData::Int32(x) => cut!(Int32, x),
                TensorData::Int64(x) => cut!(Int64, x),
                TensorData::Fp32(x) => cut!(Fp32, x),
                TensorData::Fp64(x) => cut!(Fp64, x),
                TensorData::Bytes(x) => cut!(Bytes, x),
            };
            let mut shape = t.shape.clone();
            shape[0] = n;
            Tensor::new(t.name.clone(), shape, data).map_err(|e| BatchError::Predict(e.to_string()))
        })
        .collect()
}
