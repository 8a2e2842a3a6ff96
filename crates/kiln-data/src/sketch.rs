//! Mergeable sketches kept in dataset profiles: a t-digest for quantiles and a HyperLogLog for
//! distinct counts. Both merge without the data (two profiles of two windows merge into the
//! profile of their union, within the sketches' error) and both serialize to small, stable
//! JSON.
//!
//! The t-digest is built and merged by the `tdigest` crate; quantiles and the CDF are read from
//! its centroids here, with one interpolation rule for both, so that `cdf(quantile(q)) ≈ q`.
//! The HyperLogLog hashes with xxh3 (seedless, the same on every machine and in every process),
//! so registers of profiles computed anywhere merge by taking the maximum.

use std::io::{Read, Write};

use base64::Engine;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tdigest::{Centroid, TDigest};

/// The t-digest compression: at most about this many centroids. 200 keeps quantile rank errors
/// well under 0.5 % and a serialized sketch under ~6 KB.
pub const TDIGEST_SIZE: usize = 200;

/// The HyperLogLog precision: 2^14 registers, a standard error of 1.04 / √16384 ≈ 0.8 %.
pub const HLL_PRECISION: u8 = 14;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SketchError {
    #[error("cannot merge HyperLogLogs of precision {0} and {1}")]
    PrecisionMismatch(u8, u8),
    #[error("invalid HyperLogLog: {0}")]
    InvalidHll(String),
    #[error("invalid t-digest: {0}")]
    InvalidDigest(String),
}

// ---------------------------------------------------------------------------------------------
// Quantiles

/// A t-digest over the finite values of a column: quantiles and CDF within a fraction of a
/// percent of rank, mergeable.
///
/// JSON: `{"max_size": 200, "count": n, "min": x, "max": y, "centroids": [[mean, weight], …]}`
/// with centroids in increasing mean; `min`/`max` are absent when the sketch is empty.
#[derive(Debug, Clone)]
pub struct QuantileSketch {
    max_size: usize,
    count: u64,
    min: f64,
    max: f64,
    /// (mean, weight), sorted by mean.
    centroids: Vec<(f64, u64)>,
}

// By hand: an empty sketch's min and max are NaN, and two empty sketches are equal.
impl PartialEq for QuantileSketch {
    fn eq(&self, other: &Self) -> bool {
        self.max_size == other.max_size
            && self.count == other.count
            && self.min() == other.min()
            && self.max() == other.max()
            && self.centroids == other.centroids
    }
}

impl Default for QuantileSketch {
    fn default() -> Self {
        QuantileSketch::new()
    }
}

impl QuantileSketch {
    /// An empty sketch.
    pub fn new() -> Self {
        QuantileSketch {
            max_size: TDIGEST_SIZE,
            count: 0,
            min: f64::NAN,
            max: f64::NAN,
            centroids: Vec::new(),
        }
    }

    /// Builds the sketch from values sorted in increasing order, without NaN (one linear pass,
    /// no per-value inserts).
    pub fn from_sorted(values: Vec<f64>) -> Self {
        debug_assert!(
            values.windows(2).all(|w| w[0] <= w[1]),
            "values must be sorted"
        );
        if values.is_empty() {
            return QuantileSketch::new();
        }
        let d = TDigest::new_with_size(TDIGEST_SIZE).merge_sorted(values);
        QuantileSketch::from_digest(&d, TDIGEST_SIZE)
    }

    /// Builds the sketch from values in any order; NaN values are skipped.
    pub fn from_values(mut values: Vec<f64>) -> Self {
        values.retain(|v| !v.is_nan());
        values.sort_unstable_by(f64::total_cmp);
        QuantileSketch::from_sorted(values)
    }

    /// The sketch of the union of both sketches' values.
    pub fn merge(&self, other: &QuantileSketch) -> QuantileSketch {
        if other.count == 0 {
            return self.clone();
        }
        if self.count == 0 {
            return other.clone();
        }
        let max_size = self.max_size.max(other.max_size);
        let merged = TDigest::merge_digests(vec![self.to_digest(), other.to_digest()]);
        QuantileSketch::from_digest(&merged, max_size)
    }

    /// How many values the sketch summarizes.
    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The smallest value seen (exact).
    pub fn min(&self) -> Option<f64> {
        (self.count > 0).then_some(self.min)
    }

    /// The largest value seen (exact).
    pub fn max(&self) -> Option<f64> {
        (self.count > 0).then_some(self.max)
    }

    /// The centroids as (mean, weight), in increasing mean.
    pub fn centroids(&self) -> &[(f64, u64)] {
        &self.centroids
    }

    /// The estimated value below which a fraction `q` (0 ≤ q ≤ 1) of the values lie; `None`
    /// when the sketch is empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 || q.is_nan() {
            return None;
        }
        if q <= 0.0 {
            return Some(self.min);
        }
        if q >= 1.0 {
            return Some(self.max);
        }
        let points = self.points();
        let target = q * self.count as f64;
        let k = points.partition_point(|&(_, cum)| cum < target);
        if k == 0 {
            return Some(self.min);
        }
        if k >= points.len() {
            return Some(self.max);
        }
        let (x0, c0) = points[k - 1];
        let (x1, c1) = points[k];
        if c1 <= c0 {
            return Some(x1);
        }
        Some(x0 + (target - c0) / (c1 - c0) * (x1 - x0))
    }

    /// The estimated fraction of values ≤ `x`; `None` when the sketch is empty.
    pub fn cdf(&self, x: f64) -> Option<f64> {
        if self.count == 0 || x.is_nan() {
            return None;
        }
        if x < self.min {
            return Some(0.0);
        }
        if x >= self.max {
            return Some(1.0);
        }
        let points = self.points();
        // The last point at or below x; the one after it lies strictly above x.
        let k = points.partition_point(|&(px, _)| px <= x) - 1;
        let (x0, c0) = points[k];
        let (x1, c1) = points[k + 1];
        let cum = c0 + (x - x0) / (x1 - x0) * (c1 - c0);
        Some((cum / self.count as f64).clamp(0.0, 1.0))
    }

    /// The piecewise-linear CDF the estimates interpolate: (value, cumulative weight) at the
    /// minimum, at each centroid's mean (half of its weight counted), and at the maximum.
    fn points(&self) -> Vec<(f64, f64)> {
        let mut points = Vec::with_capacity(self.centroids.len() + 2);
        points.push((self.min, 0.0));
        let mut before = 0.0;
        let mut last_x = self.min;
        for &(mean, weight) in &self.centroids {
            let w = weight as f64;
            // Rounding may put a centroid's mean an ulp outside [min, max] or before its
            // neighbour; keep the curve monotone.
            let x = mean.clamp(last_x, self.max);
            points.push((x, before + w / 2.0));
            before += w;
            last_x = x;
        }
        points.push((self.max, self.count as f64));
        points
    }

    fn to_digest(&self) -> TDigest {
        let sum = self.centroids.iter().map(|&(m, w)| m * w as f64).sum();
        let centroids = self
            .centroids
            .iter()
            .map(|&(m, w)| Centroid::new(m, w as f64))
            .collect::<Vec<_>>();
        // `TDigest::new` recompresses (to a different size) when handed more centroids than
        // `max_size`; never ask it to.
        let max_size = self.max_size.max(centroids.len());
        TDigest::new(
            centroids,
            sum,
            self.count as f64,
            self.max,
            self.min,
            max_size,
        )
    }

    fn from_digest(d: &TDigest, max_size: usize) -> QuantileSketch {
        // The crate exposes centroids only through serde.
        #[derive(Deserialize)]
        struct RawCentroid {
            mean: f64,
            weight: f64,
        }
        #[derive(Deserialize)]
        struct RawDigest {
            centroids: Vec<RawCentroid>,
        }
        let raw: RawDigest = serde_json::to_value(d)
            .and_then(serde_json::from_value)
            .expect("a t-digest's centroids are finite numbers");
        let mut centroids: Vec<(f64, u64)> = raw
            .centroids
            .into_iter()
            .map(|c| (c.mean, c.weight.round() as u64))
            .filter(|&(_, w)| w > 0)
            .collect();
        centroids.sort_by(|a, b| a.0.total_cmp(&b.0));
        let count = centroids.iter().map(|c| c.1).sum();
        QuantileSketch {
            max_size,
            count,
            min: d.min(),
            max: d.max(),
            centroids,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct SketchRepr {
    max_size: usize,
    count: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max: Option<f64>,
    centroids: Vec<(f64, u64)>,
}

impl Serialize for QuantileSketch {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        SketchRepr {
            max_size: self.max_size,
            count: self.count,
            min: self.min(),
            max: self.max(),
            centroids: self.centroids.clone(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for QuantileSketch {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let r = SketchRepr::deserialize(d)?;
        let weight: u64 = r.centroids.iter().map(|c| c.1).sum();
        let invalid = |m: String| D::Error::custom(SketchError::InvalidDigest(m));
        if weight != r.count {
            return Err(invalid(format!(
                "centroid weights sum to {weight}, count is {}",
                r.count
            )));
        }
        if r.max_size == 0 {
            return Err(invalid("max_size must be positive".into()));
        }
        if !r.centroids.windows(2).all(|w| w[0].0 <= w[1].0) {
            return Err(invalid("centroids must be in increasing mean".into()));
        }
        let (min, max) = match (r.min, r.max, r.count) {
            (_, _, 0) => (f64::NAN, f64::NAN),
            (Some(a), Some(b), _) if a <= b => (a, b),
            _ => return Err(invalid("a non-empty sketch needs min ≤ max".into())),
        };
        Ok(QuantileSketch {
            max_size: r.max_size,
            count: r.count,
            min,
            max,
            centroids: r.centroids,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Distinct counts

/// A HyperLogLog distinct-count sketch over xxh3 hashes.
///
/// JSON: `{"p": 14, "registers": "<base64 of the deflated register bytes>"}`; one byte per
/// register before compression, so sparse sketches of small columns stay small.
#[derive(Clone, PartialEq, Eq)]
pub struct Hll {
    p: u8,
    registers: Vec<u8>,
}

impl std::fmt::Debug for Hll {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // 16 Ki registers are noise in a debug print; their summary is not.
        f.debug_struct("Hll")
            .field("p", &self.p)
            .field(
                "nonzero_registers",
                &self.registers.iter().filter(|&&r| r > 0).count(),
            )
            .field("estimate", &self.estimate())
            .finish()
    }
}

impl Default for Hll {
    fn default() -> Self {
        Hll::new()
    }
}

impl Hll {
    /// An empty sketch of precision [`HLL_PRECISION`].
    pub fn new() -> Self {
        Hll::with_precision(HLL_PRECISION)
    }

    /// An empty sketch with 2^p registers, 4 ≤ p ≤ 18.
    pub fn with_precision(p: u8) -> Self {
        let p = p.clamp(4, 18);
        Hll {
            p,
            registers: vec![0; 1 << p],
        }
    }

    pub fn precision(&self) -> u8 {
        self.p
    }

    /// Adds a value by its 64-bit hash.
    #[inline]
    pub fn insert_hash(&mut self, h: u64) {
        let p = u32::from(self.p);
        let idx = (h >> (64 - p)) as usize;
        // The guard bit bounds the rank at 64 - p + 1.
        let w = (h << p) | (1 << (p - 1));
        let rank = w.leading_zeros() as u8 + 1;
        if rank > self.registers[idx] {
            self.registers[idx] = rank;
        }
    }

    #[inline]
    pub fn insert_bytes(&mut self, bytes: &[u8]) {
        self.insert_hash(xxhash_rust::xxh3::xxh3_64(bytes));
    }

    #[inline]
    pub fn insert_str(&mut self, s: &str) {
        self.insert_bytes(s.as_bytes());
    }

    #[inline]
    pub fn insert_i64(&mut self, v: i64) {
        self.insert_bytes(&v.to_le_bytes());
    }

    /// Adds a float; -0.0 counts as 0.0 and NaN is ignored.
    #[inline]
    pub fn insert_f64(&mut self, v: f64) {
        if v.is_nan() {
            return;
        }
        let v = if v == 0.0 { 0.0 } else { v };
        self.insert_bytes(&v.to_bits().to_le_bytes());
    }

    #[inline]
    pub fn insert_bool(&mut self, v: bool) {
        self.insert_bytes(&[u8::from(v)]);
    }

    /// Folds `other` in: afterwards `self` estimates the distinct count of the union.
    pub fn merge(&mut self, other: &Hll) -> Result<(), SketchError> {
        if self.p != other.p {
            return Err(SketchError::PrecisionMismatch(self.p, other.p));
        }
        for (a, b) in self.registers.iter_mut().zip(&other.registers) {
            *a = (*a).max(*b);
        }
        Ok(())
    }

    /// The estimated number of distinct values.
    ///
    /// Ertl's improved estimator ("New cardinality estimation algorithms for HyperLogLog
    /// sketches", 2017): it needs no empirical bias tables and is unbiased over the whole
    /// range; its σ term is the small-range (linear counting) correction, so small sets come
    /// out within a value or two.
    pub fn estimate(&self) -> u64 {
        let m = self.registers.len() as f64;
        let q = 64 - usize::from(self.p);
        let mut c = vec![0u64; q + 2];
        for &r in &self.registers {
            c[usize::from(r).min(q + 1)] += 1;
        }
        if c[0] == self.registers.len() as u64 {
            return 0;
        }
        let mut z = m * tau(1.0 - c[q + 1] as f64 / m);
        for k in (1..=q).rev() {
            z = 0.5 * (z + c[k] as f64);
        }
        z += m * sigma(c[0] as f64 / m);
        let alpha_inf = 1.0 / (2.0 * std::f64::consts::LN_2);
        (alpha_inf * m * m / z).round() as u64
    }
}

fn sigma(mut x: f64) -> f64 {
    if x == 1.0 {
        return f64::INFINITY;
    }
    let mut y = 1.0;
    let mut z = x;
    loop {
        x *= x;
        let prev = z;
        z += x * y;
        y += y;
        if z == prev {
            return z;
        }
    }
}

fn tau(mut x: f64) -> f64 {
    if x == 0.0 || x == 1.0 {
        return 0.0;
    }
    let mut y = 1.0;
    let mut z = 1.0 - x;
    loop {
        x = x.sqrt();
        let prev = z;
        y *= 0.5;
        z -= (1.0 - x).powi(2) * y;
        if z == prev {
            return z / 3.0;
        }
    }
}

#[derive(Serialize, Deserialize)]
struct HllRepr {
    p: u8,
    registers: String,
}

impl Serialize for Hll {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error;
        let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(&self.registers).map_err(S::Error::custom)?;
        let bytes = enc.finish().map_err(S::Error::custom)?;
        HllRepr {
            p: self.p,
            registers: base64::engine::general_purpose::STANDARD.encode(bytes),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Hll {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let r = HllRepr::deserialize(d)?;
        let invalid = |m: String| D::Error::custom(SketchError::InvalidHll(m));
        if !(4..=18).contains(&r.p) {
            return Err(invalid(format!("precision {} is outside 4..=18", r.p)));
        }
        let packed = base64::engine::general_purpose::STANDARD
            .decode(r.registers.as_bytes())
            .map_err(|e| invalid(format!("registers are not base64: {e}")))?;
        let m = 1usize << r.p;
        let mut registers = Vec::with_capacity(m);
        flate2::read::DeflateDecoder::new(&packed[..])
            .take(m as u64 + 1)
            .read_to_end(&mut registers)
            .map_err(|e| invalid(format!("registers are not deflated bytes: {e}")))?;
        if registers.len() != m {
            return Err(invalid(format!(
                "expected {m} registers for precision {}, found {}",
                r.p,
                registers.len()
            )));
        }
        let max_rank = 64 - r.p + 1;
        if let Some(bad) = registers.iter().find(|&&v| v > max_rank) {
            return Err(invalid(format!("register value {bad} exceeds {max_rank}")));
        }
        Ok(Hll { p: r.p, registers })
    }
}
