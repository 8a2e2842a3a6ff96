//! What the prediction log spends per logged row, on records like the serving benchmark's
//! (one fixture row of 30 floats in, a label and two probabilities out): packing on the
//! request thread, then on the writer thread reading in place, the conversion to columns, and the
//! Parquet encoding with each compression. A tool to run by
//! hand (release build), not a test:
//!
//! ```text
//! cargo run --release -p kiln-monitor --example predlog_encode [ROWS]
//! ```

use std::time::Instant;

use kiln_data::plain::{Compression, WriteOptions, to_parquet_bytes_with};
use kiln_ml::{Tensor, TensorData};
use kiln_monitor::predlog::{Inputs, Prediction, table, wire};

fn main() {
    let rows: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000);
    // The serving benchmark's inputs: the fixture's rows, in turn.
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/onnx/data/breast_cancer.json");
    let data: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture).expect("the fixture")).expect("JSON");
    let flat: Vec<f32> = data["tensors"][0]["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|v| v.as_f64().map_or(f32::NAN, |f| f as f32))
        .collect();
    let clean = data["clean_rows"].as_u64().unwrap_or(1) as usize;
    let preds: Vec<Prediction> = (0..rows)
        .map(|i| {
            let r = i % clean;
            let x = flat[r * 30..(r + 1) * 30].to_vec();
            let p = (x[0] / 30.0).clamp(0.0, 1.0);
            Prediction {
                deployment: "gb".into(),
                version: "1".into(),
                request_id: format!("{i:08x}-3f2a-4c1d-9e8b-{:012x}", i * 7919),
                time_us: 1_764_400_000_000_000 + i as i64 * 31,
                latency_us: 120 + (i % 50) as u64,
                inputs: Inputs::Tensors(vec![
                    Tensor::new("X", vec![1, 30], TensorData::Fp32(x)).expect("tensor"),
                ]),
                outputs: vec![
                    Tensor::new(
                        "label",
                        vec![1],
                        TensorData::Int64(vec![i64::from(p > 0.5)]),
                    )
                    .expect("tensor"),
                    Tensor::new(
                        "probabilities",
                        vec![1, 2],
                        TensorData::Fp32(vec![1.0 - p, p]),
                    )
                    .expect("tensor"),
                ],
            }
        })
        .collect();
    let per_row = |t: Instant| t.elapsed().as_secs_f64() * 1e6 / rows as f64;
    println!("rows per file: {rows}");
    let t = Instant::now();
    let packed: Vec<Vec<u8>> = preds.iter().map(|p| wire::pack(&p.borrowed())).collect();
    println!("pack (request thread): {:.2} µs/row", per_row(t));
    let t = Instant::now();
    let views: Vec<wire::View<'_>> = packed.iter().filter_map(|b| wire::view(b)).collect();
    println!("read in place: {:.2} µs/row", per_row(t));
    let refs: Vec<&wire::View<'_>> = views.iter().collect();
    let t = Instant::now();
    let tables = table::views_to_tables(&refs);
    println!("to columns: {:.2} µs/row", per_row(t));
    for (name, compression) in [
        ("zstd", Compression::Zstd),
        ("lz4", Compression::Lz4),
        ("snappy", Compression::Snappy),
        ("none", Compression::None),
    ] {
        for (statistics, parallel) in [(true, true), (true, false), (false, false)] {
            let options = WriteOptions {
                compression,
                statistics,
                parallel,
            };
            let _ = to_parquet_bytes_with(&tables[0], &options).expect("parquet");
            let cpu = cpu_seconds();
            let t = Instant::now();
            let mut size = 0;
            for _ in 0..5 {
                size = to_parquet_bytes_with(&tables[0], &options)
                    .expect("parquet")
                    .len();
            }
            println!(
                "parquet {name:6} statistics {statistics:5} parallel {parallel:5}: {:.2} µs/row wall, {:.2} µs/row CPU, {:.0} bytes/row",
                per_row(t) / 5.0,
                (cpu_seconds() - cpu) * 1e6 / rows as f64 / 5.0,
                size as f64 / rows as f64
            );
        }
    }
}

/// CPU time of the whole process so far (user + system), from /proc.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields 14 and 15 (utime, stime) are at 11 and 12 after the command name; 100 ticks/s.
    (ticks(11) + ticks(12)) / 100.0
}
