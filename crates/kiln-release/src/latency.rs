//! The latency gate's micro-benchmark: `rows`-row batches of zeros in every input's type,
//! a warm-up, then `iterations` timed calls; percentiles by nearest rank.

use std::time::Instant;

use kiln_ml::{ElemType, Predictor, Tensor, TensorData, TensorSpec};
use serde::Serialize;

/// Calls made before timing starts.
pub const WARM_UP: usize = 20;

/// What a benchmark measured, in milliseconds per call.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Latency {
    pub rows: usize,
    pub iterations: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// A batch of `rows` rows of zeros for `specs`: the first dimension is the batch, other free
/// dimensions are 1. A spec without dimensions gets `[rows]`.
pub fn zero_inputs(specs: &[TensorSpec], rows: usize) -> Result<Vec<Tensor>, kiln_ml::MlError> {
    specs
        .iter()
        .map(|s| {
            let shape: Vec<usize> = if s.shape.is_empty() {
                vec![rows]
            } else {
                s.shape
                    .iter()
                    .enumerate()
                    .map(|(i, &d)| if i == 0 { rows } else { d.max(1) as usize })
                    .collect()
            };
            let n: usize = shape.iter().product();
            let data = match s.datatype {
                ElemType::Bool => TensorData::Bool(vec![false; n]),
                ElemType::Int32 => TensorData::Int32(vec![0; n]),
                ElemType::Int64 => TensorData::Int64(vec![0; n]),
                ElemType::Fp32 => TensorData::Fp32(vec![0.0; n]),
                ElemType::Fp64 => TensorData::Fp64(vec![0.0; n]),
                ElemType::Bytes => TensorData::Bytes(vec![Vec::new(); n]),
            };
            Tensor::new(s.name.clone(), shape, data)
        })
        .collect()
}

/// The nearest-rank percentile `p` (0–100) of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Times `predictor` on `rows`-row batches (blocking; run it on a blocking thread).
/// `iterations` is at least 1.
pub fn measure(
    predictor: &dyn Predictor,
    rows: usize,
    iterations: usize,
) -> Result<Latency, kiln_ml::MlError> {
    let rows = rows.max(1);
    let iterations = iterations.max(1);
    let inputs = zero_inputs(predictor.inputs(), rows)?;
    for _ in 0..WARM_UP {
        predictor.predict(&inputs)?;
    }
    let mut times = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let t = Instant::now();
        let out = predictor.predict(&inputs)?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
        drop(out);
    }
    times.sort_by(f64::total_cmp);
    Ok(Latency {
        rows,
        iterations,
        p50_ms: percentile(&times, 50.0),
        p99_ms: percentile(&times, 99.0),
        max_ms: times[times.len() - 1],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&[3.0], 99.0), 3.0);
        let v: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(percentile(&v, 99.0), 10.0);
    }

    #[test]
    fn zeros_have_the_batch_dimension() {
        let specs = vec![TensorSpec {
            name: "x".into(),
            datatype: ElemType::Int64,
            shape: vec![-1, 3],
        }];
        let t = zero_inputs(&specs, 4).unwrap();
        assert_eq!(t[0].shape, vec![4, 3]);
        assert_eq!(t[0].data, TensorData::Int64(vec![0; 12]));
    }
}
