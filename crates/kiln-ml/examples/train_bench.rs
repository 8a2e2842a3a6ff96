//! Kiln's side of `bench/train.sh`: trains gradient-boosted trees on arrays written by
//! `bench/train/export.py` and prints one JSON line with the fit time, the predict time and
//! the test AUC, so that the script can set them beside LightGBM's and scikit-learn's.
//!
//! Usage: `train_bench DIR PARAMS_JSON [REPEATS]` where DIR holds `meta.json`
//! (`{"cols": N, "train_rows": …, "test_rows": …}`), `train_x.f32`, `train_y.f32`,
//! `test_x.f32`, `test_y.f32` (little-endian, row-major) and PARAMS_JSON is a
//! `[train.x.params]` table as JSON. The fit is timed REPEATS times (default 1); the
//! fastest is reported and every model must be identical.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, bail};
use kiln_ml::boost::{GbdtParams, train};
use kiln_ml::{Matrix, Task};

fn read_f32(path: &Path) -> anyhow::Result<Vec<f32>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    if bytes.len() % 4 != 0 {
        bail!(
            "{}: length {} is not a multiple of 4",
            path.display(),
            bytes.len()
        );
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

fn load(dir: &Path, split: &str, cols: usize) -> anyhow::Result<(Matrix, Vec<f64>)> {
    let x = read_f32(&dir.join(format!("{split}_x.f32")))?;
    let y: Vec<f64> = read_f32(&dir.join(format!("{split}_y.f32")))?
        .into_iter()
        .map(f64::from)
        .collect();
    if x.len() != y.len() * cols {
        bail!(
            "{split}: {} values for {} rows × {cols} columns",
            x.len(),
            y.len()
        );
    }
    Ok((Matrix::new(y.len(), cols, x)?, y))
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        bail!("usage: train_bench DIR PARAMS_JSON [REPEATS]");
    }
    let dir = Path::new(&args[1]);
    let params: BTreeMap<String, serde_json::Value> =
        serde_json::from_str(&args[2]).context("PARAMS_JSON")?;
    let repeats: usize = args.get(3).map_or(Ok(1), |r| r.parse())?;
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("meta.json")).context("meta.json")?)?;
    let cols = meta["cols"].as_u64().context("meta.json: cols")? as usize;
    let (tx, ty) = load(dir, "train", cols)?;
    let (sx, sy) = load(dir, "test", cols)?;
    let p = GbdtParams::from_map(&params)?;

    let mut fit_seconds = f64::INFINITY;
    let mut model = None;
    let mut train_loss = f64::NAN;
    for _ in 0..repeats.max(1) {
        let t = Instant::now();
        let out = train(&tx, &ty, None, Task::Binary, &p, &mut |it| {
            train_loss = it.train_loss
        })?;
        fit_seconds = fit_seconds.min(t.elapsed().as_secs_f64());
        if let Some(m) = &model
            && *m != out.model
        {
            bail!("two fits of the same data, parameters and seed gave different models");
        }
        model = Some(out.model);
    }
    let model = model.expect("at least one fit");
    let t = Instant::now();
    let pred = model.predict(&sx)?;
    let predict_seconds = t.elapsed().as_secs_f64();
    let positive: Vec<bool> = sy.iter().map(|v| *v > 0.5).collect();
    let auc = kiln_ml::metrics::auc(&positive, &pred.value).context("AUC undefined")?;
    let trees = match &model.scorer {
        kiln_ml::Scorer::Trees(t) => t.trees.len(),
        kiln_ml::Scorer::Linear(_) => 0,
    };
    println!(
        "{}",
        serde_json::json!({
            "fit_seconds": fit_seconds,
            "predict_seconds": predict_seconds,
            "test_auc": auc,
            "train_log_loss": train_loss,
            "trees": trees,
            "train_rows": ty.len(),
            "test_rows": sy.len(),
        })
    );
    Ok(())
}
