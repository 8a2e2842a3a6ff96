//! Kiln's side of bench/predict.sh: loads an `.onnx` file through `kiln_onnx::load` and times
//! `predict` on the rows of a fixture data file, batch after batch, on one thread.
//!
//!     predict_bench --model tests/fixtures/onnx/gb_classifier.onnx \
//!         --data tests/fixtures/onnx/data/breast_cancer.json [--batches 1,1024] \
//!         [--repeats 5] [--min-seconds 0.5] [--rows N]
//!
//! The rows are the data file's first `clean_rows` (no missing values), or `--rows`; a batch of
//! B takes B rows cycling through them (batch 1 walks them one at a time). Each repeat runs whole
//! batches for at least `--min-seconds`; one JSON line per batch size goes to stdout with the
//! rows/s of every repeat and the best, by the wall clock and per second of CPU time. bench/predict/ort_bench.py measures onnxruntime the
//! same way.

use std::time::{Duration, Instant};

/// This process's user + system CPU time in seconds (Linux `/proc/self/stat`, 10 ms ticks), to
/// report rows per CPU-second too: on a busy machine wall-clock rates swing with the load.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

use kiln_ml::{Tensor, TensorData};

struct Args {
    model: String,
    data: String,
    batches: Vec<usize>,
    repeats: usize,
    min_seconds: f64,
    rows: Option<usize>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        model: String::new(),
        data: String::new(),
        batches: vec![1, 1024],
        repeats: 5,
        min_seconds: 0.5,
        rows: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--model" => a.model = val()?,
            "--data" => a.data = val()?,
            "--batches" => {
                a.batches = val()?
                    .split(',')
                    .map(|s| s.trim().parse().map_err(|e| format!("--batches: {e}")))
                    .collect::<Result<_, _>>()?
            }
            "--repeats" => a.repeats = val()?.parse().map_err(|e| format!("--repeats: {e}"))?,
            "--min-seconds" => {
                a.min_seconds = val()?.parse().map_err(|e| format!("--min-seconds: {e}"))?
            }
            "--rows" => a.rows = Some(val()?.parse().map_err(|e| format!("--rows: {e}"))?),
            "-h" | "--help" => {
                return Err(
                    "usage: predict_bench --model M.onnx --data D.json [--batches 1,1024] \
                            [--repeats 5] [--min-seconds 0.5] [--rows N]"
                        .into(),
                );
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if a.model.is_empty() || a.data.is_empty() {
        return Err("--model and --data are required".into());
    }
    if a.batches.contains(&0) || a.repeats == 0 {
        return Err("batches and repeats must be positive".into());
    }
    Ok(a)
}

/// The data file's first input, as `rows` rows of `cols` f32 values (or f64).
fn load_rows(path: &str, rows: Option<usize>) -> Result<(String, Vec<usize>, TensorData), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("{path}: {e}"))?;
    let t = &v["tensors"][0];
    let name = t["name"].as_str().ok_or("tensor name")?.to_string();
    let shape: Vec<usize> = t["shape"]
        .as_array()
        .ok_or("tensor shape")?
        .iter()
        .map(|d| d.as_u64().map(|d| d as usize).ok_or("dimension"))
        .collect::<Result<_, _>>()?;
    let n = rows
        .or(v["clean_rows"].as_u64().map(|r| r as usize))
        .unwrap_or(shape[0])
        .min(shape[0]);
    let per_row: usize = shape[1..].iter().product();
    let nums = t["data"].as_array().ok_or("tensor data")?;
    let num = |x: &serde_json::Value| x.as_f64().unwrap_or(f64::NAN);
    let data = match t["datatype"].as_str() {
        Some("FP32") => {
            TensorData::Fp32(nums[..n * per_row].iter().map(|x| num(x) as f32).collect())
        }
        Some("FP64") => TensorData::Fp64(nums[..n * per_row].iter().map(num).collect()),
        other => return Err(format!("datatype {other:?} is not benchmarked")),
    };
    let mut row_shape = shape;
    row_shape[0] = n;
    Ok((name, row_shape, data))
}

/// `batch` rows cycling through the data from row `start`.
fn batch_of(name: &str, shape: &[usize], data: &TensorData, start: usize, batch: usize) -> Tensor {
    let n = shape[0];
    let per: usize = shape[1..].iter().product();
    let pick = |i: usize| ((start + i) % n) * per;
    let data = match data {
        TensorData::Fp32(v) => TensorData::Fp32(
            (0..batch)
                .flat_map(|i| v[pick(i)..pick(i) + per].iter().copied())
                .collect(),
        ),
        TensorData::Fp64(v) => TensorData::Fp64(
            (0..batch)
                .flat_map(|i| v[pick(i)..pick(i) + per].iter().copied())
                .collect(),
        ),
        _ => unreachable!("checked when loading"),
    };
    let mut s = shape.to_vec();
    s[0] = batch;
    Tensor::new(name, s, data).expect("consistent batch")
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let bytes = std::fs::read(&args.model).unwrap_or_else(|e| panic!("{}: {e}", args.model));
    let t0 = Instant::now();
    let model = kiln_onnx::load(&bytes).unwrap_or_else(|e| panic!("{}: {e}", args.model));
    let load_ms = t0.elapsed().as_secs_f64() * 1e3;
    let backend = kiln_onnx::OnnxModel::from_bytes(&bytes)
        .map(|m| format!("{:?}", m.backend()))
        .unwrap_or_default();
    let (name, shape, data) = load_rows(&args.data, args.rows).unwrap_or_else(|e| panic!("{e}"));
    let n = shape[0];
    for &batch in &args.batches {
        // Pre-built batches: the timed loop only calls predict. Batch 1 walks the rows.
        let count = if batch == 1 { n } else { 1 };
        let batches: Vec<[Tensor; 1]> = (0..count)
            .map(|i| [batch_of(&name, &shape, &data, i, batch)])
            .collect();
        let run = |min: Duration| -> (f64, Option<f64>) {
            let start = Instant::now();
            let cpu0 = cpu_seconds();
            let mut rows = 0usize;
            let mut i = 0usize;
            loop {
                let out = model.predict(&batches[i % batches.len()]).expect("predict");
                std::hint::black_box(&out);
                rows += batch;
                i += 1;
                let el = start.elapsed();
                if el >= min {
                    let cpu = cpu_seconds()
                        .zip(cpu0)
                        .map(|(b, a)| b - a)
                        .filter(|c| *c > 0.0);
                    return (rows as f64 / el.as_secs_f64(), cpu.map(|c| rows as f64 / c));
                }
            }
        };
        run(Duration::from_secs_f64(args.min_seconds / 5.0)); // warm-up
        let runs: Vec<(f64, Option<f64>)> = (0..args.repeats)
            .map(|_| run(Duration::from_secs_f64(args.min_seconds)))
            .collect();
        let rates: Vec<f64> = runs.iter().map(|r| r.0).collect();
        let cpu_rates: Vec<f64> = runs.iter().filter_map(|r| r.1).collect();
        let best = rates.iter().copied().fold(0.0, f64::max);
        let best_cpu = cpu_rates.iter().copied().fold(0.0, f64::max);
        println!(
            "{}",
            serde_json::json!({
                "tool": "kiln",
                "model": args.model,
                "backend": backend,
                "load_ms": load_ms,
                "batch": batch,
                "rows": n,
                "rows_per_s": rates,
                "best_rows_per_s": best,
                "rows_per_cpu_s": cpu_rates,
                "best_rows_per_cpu_s": best_cpu,
            })
        );
    }
}
