//! The prediction log: bounded buffering, drops, flushes by size, time and on demand,
//! partitions by deployment and hour (with a manual clock), Parquet round trips, restarts and
//! a failing store.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kiln_data::plain::{PlainColumn, PlainTable};
use kiln_ml::{Tensor, TensorData};
use kiln_monitor::clock::ManualClock;
use kiln_monitor::predlog::layout::days_from_civil;
use kiln_monitor::predlog::{
    Inputs, Prediction, PredictionLog, PredictionLogConfig, read_predictions,
};
use kiln_store::ArtifactStore;
use kiln_transform::{Column, DType, Value};

const HOUR_MS: i64 = 3_600_000;

/// 2026-11-29 at `h:m:s.ms` UTC, in ms.
fn at(h: i64, m: i64, s: i64, ms: i64) -> i64 {
    days_from_civil(2026, 11, 29) * 86_400_000 + h * HOUR_MS + m * 60_000 + s * 1_000 + ms
}

fn config() -> PredictionLogConfig {
    PredictionLogConfig {
        flush_rows: 1_000_000,
        flush_interval: Duration::from_secs(3_600),
        tick: Duration::from_millis(5),
        retry_after: Duration::from_millis(0),
        close_attempts: 1,
        ..PredictionLogConfig::default()
    }
}

/// A request of `rows` rows to the 30-input classifier: inputs derived from `seed`.
fn pred(deployment: &str, id: &str, time_ms: i64, rows: usize, seed: f32) -> Prediction {
    let x: Vec<f32> = (0..rows * 30).map(|i| seed + i as f32 * 0.5).collect();
    let label: Vec<i64> = (0..rows).map(|r| (r % 2) as i64).collect();
    let probs: Vec<f32> = (0..rows)
        .flat_map(|r| {
            let p = 0.125 * (r % 8) as f32;
            [1.0 - p, p]
        })
        .collect();
    Prediction {
        deployment: deployment.into(),
        version: "1".into(),
        request_id: id.into(),
        time_us: time_ms * 1_000,
        latency_us: 1_234,
        inputs: Inputs::Tensors(vec![
            Tensor::new("X", vec![rows, 30], TensorData::Fp32(x)).unwrap(),
        ]),
        outputs: vec![
            Tensor::new("label", vec![rows], TensorData::Int64(label)).unwrap(),
            Tensor::new("probabilities", vec![rows, 2], TensorData::Fp32(probs)).unwrap(),
        ],
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Every `.parquet` file under `dir`, relative, sorted.
fn parquet_files(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                out.push(p.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut out = vec![];
    walk(dir, dir, &mut out);
    out.sort();
    out
}

fn open(dir: &Path) -> ArtifactStore {
    ArtifactStore::open(dir.to_str().unwrap()).unwrap()
}

fn strs(t: &PlainTable, name: &str) -> Vec<String> {
    match t.column(name) {
        Some(PlainColumn::Str(v)) => v.iter().map(|x| x.clone().unwrap_or_default()).collect(),
        other => panic!("column {name}: {other:?}"),
    }
}

fn i64s(t: &PlainTable, name: &str) -> Vec<Option<i64>> {
    match t.column(name) {
        Some(PlainColumn::I64(v)) => v.clone(),
        other => panic!("column {name}: {other:?}"),
    }
}

fn f64s(t: &PlainTable, name: &str) -> Vec<Option<f64>> {
    match t.column(name) {
        Some(PlainColumn::F64(v)) => v.clone(),
        other => panic!("column {name}: {other:?}"),
    }
}

/// Checks that `t` holds exactly the rows of `preds` (in this order), value by value.
fn assert_rows(t: &PlainTable, preds: &[&Prediction]) {
    let expected_rows: usize = preds.iter().map(|p| p.rows()).sum();
    assert_eq!(t.height(), expected_rows);
    let ids = strs(t, "request_id");
    let rows = i64s(t, "row");
    let times = match t.column("time") {
        Some(PlainColumn::Timestamp(v)) => v.clone(),
        other => panic!("time: {other:?}"),
    };
    let labels = i64s(t, "label");
    let p1 = f64s(t, "probabilities_1");
    let latency = i64s(t, "latency_us");
    let mut at = 0;
    for p in preds {
        let Inputs::Tensors(inputs) = &p.inputs else {
            panic!("tensor inputs expected")
        };
        let TensorData::Fp32(x) = &inputs[0].data else {
            panic!()
        };
        let TensorData::Int64(label) = &p.outputs[0].data else {
            panic!()
        };
        let TensorData::Fp32(probs) = &p.outputs[1].data else {
            panic!()
        };
        for r in 0..p.rows() {
            assert_eq!(ids[at], p.request_id);
            assert_eq!(rows[at], Some(r as i64));
            assert_eq!(times[at], Some(p.time_us));
            assert_eq!(latency[at], Some(p.latency_us as i64));
            assert_eq!(labels[at], Some(label[r]));
            assert_eq!(p1[at], Some(f64::from(probs[r * 2 + 1])));
            for j in [0, 7, 29] {
                assert_eq!(
                    f64s(t, &format!("X_{j}"))[at],
                    Some(f64::from(x[r * 30 + j])),
                    "{} row {r} X_{j}",
                    p.request_id
                );
            }
            at += 1;
        }
    }
    assert_eq!(strs(t, "model")[0], preds[0].deployment);
    assert_eq!(strs(t, "version")[0], "1");
}

#[test]
fn buffers_until_the_row_count_then_writes_one_file_that_reads_back_value_for_value() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(at(10, 15, 0, 0));
    let cfg = PredictionLogConfig {
        flush_rows: 10,
        ..config()
    };
    let log = PredictionLog::start(open(dir.path()), cfg, Arc::new(clock.clone())).unwrap();
    let preds: Vec<Prediction> = (0..4)
        .map(|i| pred("gb", &format!("r{i}"), at(10, 15, 0, i), 3, i as f32))
        .collect();
    for p in &preds[..3] {
        assert!(log.record(&p.borrowed()));
    }
    // Nine rows: under the bound, nothing is written however long we wait.
    std::thread::sleep(Duration::from_millis(100));
    let s = log.stats();
    assert_eq!((s.records, s.buffered, s.written, s.flushes), (3, 3, 0, 0));
    assert!(parquet_files(dir.path()).is_empty());
    assert!(log.record(&preds[3].borrowed()));
    wait_until("the size-triggered write", || log.stats().written == 4);
    let files = parquet_files(dir.path());
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(
        files[0].starts_with(
            "predictions/deployment=gb/date=2026-11-29/hour=10/part-20261129T101500000Z-"
        ),
        "{files:?}"
    );
    let s = log.stats();
    assert_eq!(
        (s.flushes, s.buffered, s.dropped, s.flush_errors),
        (1, 0, 0, 0)
    );
    let t = rt()
        .block_on(read_predictions(
            &open(dir.path()),
            "gb",
            at(10, 0, 0, 0),
            at(11, 0, 0, 0),
        ))
        .unwrap();
    assert_eq!(
        &t.names()[..7],
        [
            "request_id",
            "row",
            "time",
            "model",
            "version",
            "latency_us",
            "X_0"
        ]
    );
    assert_eq!(
        &t.names()[35..],
        ["X_29", "label", "probabilities_0", "probabilities_1"]
    );
    assert_rows(&t, &preds.iter().collect::<Vec<_>>());
    assert_eq!(log.close().written, 0);
}

#[test]
fn a_full_buffer_drops_the_newest_and_counts_it_by_records_and_by_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(at(9, 0, 0, 0)));
    let cfg = PredictionLogConfig {
        max_buffered_records: 5,
        ..config()
    };
    let log = PredictionLog::start(open(dir.path()), cfg, clock.clone()).unwrap();
    let accepted: Vec<bool> = (0..8)
        .map(|i| log.record(&pred("gb", &format!("r{i}"), at(9, 0, 0, i), 1, 0.0).borrowed()))
        .collect();
    assert_eq!(
        accepted,
        [true, true, true, true, true, false, false, false]
    );
    let s = log.stats();
    assert_eq!((s.records, s.dropped, s.buffered), (5, 3, 5));
    log.flush().unwrap();
    let s = log.stats();
    assert_eq!((s.written, s.buffered, s.flushes), (5, 0, 1));
    // Room again once written.
    assert!(log.record(&pred("gb", "r8", at(9, 0, 1, 0), 1, 0.0).borrowed()));
    log.close();
    let t = rt()
        .block_on(read_predictions(
            &open(dir.path()),
            "gb",
            at(9, 0, 0, 0),
            at(10, 0, 0, 0),
        ))
        .unwrap();
    assert_eq!(strs(&t, "request_id"), ["r0", "r1", "r2", "r3", "r4", "r8"]);

    // The byte bound: room for three records of this size.
    let dir = tempfile::tempdir().unwrap();
    let one = pred("gb", "b", at(9, 0, 0, 0), 4, 0.0);
    let cfg = PredictionLogConfig {
        max_buffered_bytes: 3 * one.buffer_bytes(),
        ..config()
    };
    let log = PredictionLog::start(open(dir.path()), cfg, clock).unwrap();
    let accepted: Vec<bool> = (0..5).map(|_| log.record(&one.borrowed())).collect();
    assert_eq!(accepted, [true, true, true, false, false]);
    assert_eq!(log.stats().dropped, 2);
    assert_eq!(log.close().written, 3);
    // Closed: later records are dropped, not blocked on.
    assert!(!log.record(&one.borrowed()));
    assert_eq!(log.stats().dropped, 3);
}

#[test]
fn partitions_by_deployment_date_and_hour_and_flushes_when_the_clock_says() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(at(23, 59, 0, 0));
    let cfg = PredictionLogConfig {
        flush_interval: Duration::from_secs(60),
        ..config()
    };
    let log = PredictionLog::start(open(dir.path()), cfg, Arc::new(clock.clone())).unwrap();
    let late = pred("gb", "late", at(23, 59, 59, 999), 2, 1.0);
    let next_day = pred("gb", "next", at(24, 0, 0, 0), 1, 2.0);
    let other = pred("a/b", "other", at(23, 30, 0, 0), 1, 3.0);
    for p in [&late, &next_day, &other] {
        assert!(log.record(&p.borrowed()));
    }
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(log.stats().written, 0, "written before the interval passed");
    clock.advance_ms(59_999);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(log.stats().written, 0, "written before the interval passed");
    clock.advance_ms(1);
    wait_until("the interval-triggered write", || log.stats().written == 3);
    let files = parquet_files(dir.path());
    let dirs: Vec<String> = files
        .iter()
        .map(|f| f.rsplit_once('/').unwrap().0.to_string())
        .collect();
    assert_eq!(
        dirs,
        [
            "predictions/deployment=a%2Fb/date=2026-11-29/hour=23",
            "predictions/deployment=gb/date=2026-11-29/hour=23",
            "predictions/deployment=gb/date=2026-11-30/hour=00",
        ]
    );
    // Part names carry the writer's clock.
    assert!(
        files
            .iter()
            .all(|f| f.contains("/part-20261130T000000000Z-")),
        "{files:?}"
    );
    log.close();
    let store = open(dir.path());
    let rt = rt();
    let read =
        |d: &str, from: i64, to: i64| rt.block_on(read_predictions(&store, d, from, to)).unwrap();
    let both = read("gb", at(23, 0, 0, 0), at(25, 0, 0, 0));
    assert_rows(&both, &[&late, &next_day]);
    // Ranges are half-open and cut inside an hour.
    let t = read("gb", at(23, 59, 59, 999), at(24, 0, 0, 0));
    assert_eq!(strs(&t, "request_id"), ["late", "late"]);
    let t = read("gb", at(24, 0, 0, 0), at(24, 0, 0, 1));
    assert_eq!(strs(&t, "request_id"), ["next"]);
    assert_eq!(read("gb", at(12, 0, 0, 0), at(23, 0, 0, 0)).height(), 0);
    assert_rows(&read("a/b", at(0, 0, 0, 0), at(48, 0, 0, 0)), &[&other]);
    assert_eq!(read("nobody", at(0, 0, 0, 0), at(48, 0, 0, 0)).height(), 0);
}

#[test]
fn a_restarted_log_adds_files_beside_the_old_ones_and_never_replaces_them() {
    let dir = tempfile::tempdir().unwrap();
    // Same clock reading in both runs: the part names differ by their UUIDs alone.
    let clock = Arc::new(ManualClock::new(at(8, 0, 0, 0)));
    let first: Vec<Prediction> = (0..3)
        .map(|i| pred("gb", &format!("a{i}"), at(8, 0, 0, i), 2, i as f32))
        .collect();
    let log = PredictionLog::start(open(dir.path()), config(), clock.clone()).unwrap();
    for p in &first {
        assert!(log.record(&p.borrowed()));
    }
    let report = log.close();
    assert_eq!((report.written, report.discarded), (3, 0));
    let files = parquet_files(dir.path());
    assert_eq!(files.len(), 1);
    let before = std::fs::read(dir.path().join(&files[0])).unwrap();

    let second: Vec<Prediction> = (0..2)
        .map(|i| pred("gb", &format!("b{i}"), at(8, 0, 1, i), 1, 10.0 + i as f32))
        .collect();
    let log = PredictionLog::start(open(dir.path()), config(), clock).unwrap();
    for p in &second {
        assert!(log.record(&p.borrowed()));
    }
    assert_eq!(log.close().written, 2);
    let after = parquet_files(dir.path());
    assert_eq!(after.len(), 2, "{after:?}");
    assert!(after.contains(&files[0]));
    assert_eq!(std::fs::read(dir.path().join(&files[0])).unwrap(), before);
    let t = rt()
        .block_on(read_predictions(
            &open(dir.path()),
            "gb",
            at(8, 0, 0, 0),
            at(9, 0, 0, 0),
        ))
        .unwrap();
    let all: Vec<&Prediction> = first.iter().chain(&second).collect();
    assert_rows(&t, &all);
}

/// Makes the store at `dir` unwritable (its directory moved aside, a file in its place) or
/// writable again (the directory, with what it held, moved back).
fn break_store(dir: &Path, broken: bool) {
    let aside = dir.with_extension("aside");
    if broken {
        std::fs::rename(dir, &aside).unwrap();
        std::fs::write(dir, b"not a directory").unwrap();
    } else {
        std::fs::remove_file(dir).unwrap();
        std::fs::rename(&aside, dir).unwrap();
    }
}

#[test]
fn a_failing_store_keeps_the_records_retries_and_counts_what_close_loses() {
    let tmp = tempfile::tempdir().unwrap();
    let dir: PathBuf = tmp.path().join("store");
    let store = open(&dir);
    let clock = Arc::new(ManualClock::new(at(7, 0, 0, 0)));
    let log = PredictionLog::start(store, config(), clock).unwrap();
    break_store(&dir, true);
    let preds: Vec<Prediction> = (0..4)
        .map(|i| pred("gb", &format!("f{i}"), at(7, 0, 0, i), 1, i as f32))
        .collect();
    for p in &preds {
        assert!(log.record(&p.borrowed()));
    }
    assert!(log.flush().is_err());
    let s = log.stats();
    assert!(s.flush_errors >= 1, "{s:?}");
    assert_eq!((s.written, s.buffered, s.dropped), (0, 4, 0));
    break_store(&dir, false);
    log.flush().unwrap();
    let s = log.stats();
    assert_eq!((s.written, s.buffered, s.flushes), (4, 0, 1));
    // Broken again at shutdown: what is left is counted as lost.
    break_store(&dir, true);
    assert!(log.record(&pred("gb", "lost", at(7, 0, 1, 0), 1, 0.0).borrowed()));
    let report = log.close();
    assert_eq!((report.written, report.discarded), (0, 1));
    let s = log.stats();
    assert_eq!((s.dropped, s.buffered), (1, 0));
    break_store(&dir, false);
    let t = rt()
        .block_on(read_predictions(
            &open(&dir),
            "gb",
            at(7, 0, 0, 0),
            at(8, 0, 0, 0),
        ))
        .unwrap();
    assert_rows(&t, &preds.iter().collect::<Vec<_>>());
}

#[test]
fn raw_rows_tensors_and_wide_inputs_of_one_deployment_read_back_as_one_table() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(at(6, 0, 0, 0)));
    let log = PredictionLog::start(open(dir.path()), config(), clock).unwrap();
    let raw = Prediction {
        deployment: "delay".into(),
        version: "3".into(),
        request_id: "raw".into(),
        time_us: at(6, 0, 0, 0) * 1_000,
        latency_us: 90,
        inputs: Inputs::Rows {
            columns: vec![
                Column::new("carrier", DType::Categorical),
                Column::new("distance", DType::Int),
                Column::new("temp", DType::Float),
                Column::new("time_hour", DType::Timestamp),
            ],
            rows: vec![
                vec![
                    Value::Str("UA".into()),
                    Value::Int(719),
                    Value::Float(39.02),
                    Value::Timestamp(1_356_998_400_000_000),
                ],
                vec![
                    Value::Str("AA".into()),
                    Value::Int(1_089),
                    Value::Null,
                    Value::Null,
                ],
            ],
        },
        outputs: vec![Tensor::new("label", vec![2], TensorData::Int64(vec![1, 0])).unwrap()],
    };
    let wide = 300;
    let tensor = Prediction {
        deployment: "delay".into(),
        version: "4".into(),
        request_id: "wide".into(),
        time_us: at(6, 0, 0, 1) * 1_000,
        latency_us: 80,
        inputs: Inputs::Tensors(vec![
            Tensor::new(
                "emb",
                vec![1, wide],
                TensorData::Fp64((0..wide).map(|i| i as f64).collect()),
            )
            .unwrap(),
        ]),
        outputs: vec![Tensor::new("label", vec![1], TensorData::Int64(vec![1])).unwrap()],
    };
    assert!(log.record(&raw.borrowed()));
    assert!(log.record(&tensor.borrowed()));
    log.flush().unwrap();
    // Two schemas: two files in the hour.
    assert_eq!(log.stats().flushes, 2);
    log.close();
    let t = rt()
        .block_on(read_predictions(
            &open(dir.path()),
            "delay",
            at(6, 0, 0, 0),
            at(7, 0, 0, 0),
        ))
        .unwrap();
    assert_eq!(t.height(), 3);
    assert_eq!(strs(&t, "request_id"), ["raw", "raw", "wide"]);
    assert_eq!(strs(&t, "version"), ["3", "3", "4"]);
    assert_eq!(
        t.column("carrier"),
        Some(&PlainColumn::Str(vec![
            Some("UA".into()),
            Some("AA".into()),
            None
        ]))
    );
    assert_eq!(i64s(&t, "distance"), [Some(719), Some(1_089), None]);
    assert_eq!(f64s(&t, "temp"), [Some(39.02), None, None]);
    assert_eq!(
        t.column("time_hour"),
        Some(&PlainColumn::Timestamp(vec![
            Some(1_356_998_400_000_000),
            None,
            None
        ]))
    );
    assert_eq!(i64s(&t, "label"), [Some(1), Some(0), Some(1)]);
    let Some(PlainColumn::List(emb)) = t.column("emb") else {
        panic!("emb: {:?}", t.column("emb"))
    };
    assert_eq!(&emb[..2], [None, None]);
    assert_eq!(
        emb[2],
        Some(PlainColumn::F64(
            (0..wide).map(|i| Some(i as f64)).collect()
        ))
    );
}
