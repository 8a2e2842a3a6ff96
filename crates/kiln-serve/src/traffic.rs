//! Several versions behind one served model name: a weighted split of live traffic (a
//! canary), shadow versions that get a copy of every request (their answers are compared
//! with the live one and never returned), and pinning a version by header or path.
//!
//! An [`Endpoint`] is immutable: changing the split or swapping a version builds a new one
//! and replaces it under the server's lock, so a request routes on one consistent snapshot.
//! Versions sit in *slots*, one per `--model NAME=…` given for the name, so a reload (Triton's
//! repository `load`) can put the slot's next version in place and keep its share.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::model::ModelVersion;

/// One loaded version and its part in the traffic.
#[derive(Clone)]
pub struct Slot {
    pub model: Arc<ModelVersion>,
    /// Relative share of unpinned requests (0: only reachable by pinning).
    pub weight: u32,
    /// Gets a copy of every unpinned request; its answers are compared, never returned.
    pub shadow: bool,
}

/// The versions served under one name.
pub struct Endpoint {
    pub name: String,
    pub slots: Vec<Slot>,
    /// Shared across snapshots so the split stays exact through traffic changes.
    counter: Arc<AtomicU64>,
}

/// The traffic of one name, by version label (the body of the traffic API).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrafficSpec {
    /// version → weight; versions left out get 0. Empty: the weights stay as they are.
    #[serde(default)]
    pub weights: BTreeMap<String, u32>,
    /// Versions that shadow the live traffic.
    #[serde(default)]
    pub shadow: Vec<String>,
}

/// Why a request could not be routed.
#[derive(Debug, Clone, PartialEq)]
pub enum RouteError {
    /// The pinned version is not loaded.
    NoSuchVersion {
        version: String,
        loaded: Vec<String>,
    },
    /// Every weight is 0.
    NoTraffic,
}

impl std::fmt::Display for RouteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RouteError::NoSuchVersion { version, loaded } => write!(
                f,
                "no loaded version `{version}` (loaded: {})",
                loaded.join(", ")
            ),
            RouteError::NoTraffic => write!(
                f,
                "no version of this model receives traffic (every weight is 0); pin one with \
                 the X-Kiln-Version header"
            ),
        }
    }
}

/// SplitMix64: spreads a counter over u64 so consecutive requests land independently while
/// the shares over any long run match the weights.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Endpoint {
    /// A name with one version taking all traffic.
    pub fn single(model: ModelVersion) -> Endpoint {
        Endpoint {
            name: model.name.clone(),
            slots: vec![Slot {
                model: Arc::new(model),
                weight: 100,
                shadow: false,
            }],
            counter: Arc::new(AtomicU64::new(0)),
        }
    }

    /// This endpoint with one more version, which gets no traffic until the split says so.
    pub fn with_version(&self, model: ModelVersion) -> Endpoint {
        let mut slots = self.slots.clone();
        slots.push(Slot {
            model: Arc::new(model),
            weight: 0,
            shadow: false,
        });
        Endpoint {
            name: self.name.clone(),
            slots,
            counter: self.counter.clone(),
        }
    }

    /// A canary: this endpoint's primary version kept at `100 - percent` of the traffic and
    /// `model` beside it at `percent` (`percent` from 1 to 99); other versions are dropped.
    pub fn canary(&self, model: ModelVersion, percent: u32) -> Endpoint {
        let percent = percent.clamp(1, 99);
        Endpoint {
            name: self.name.clone(),
            slots: vec![
                Slot {
                    model: self.primary().clone(),
                    weight: 100 - percent,
                    shadow: false,
                },
                Slot {
                    model: Arc::new(model),
                    weight: percent,
                    shadow: false,
                },
            ],
            counter: self.counter.clone(),
        }
    }

    /// This endpoint's name with exactly `models` (the first taking all traffic): what a
    /// reload becomes when the slots changed since the name was loaded (after a canary).
    pub fn replaced(&self, models: Vec<ModelVersion>) -> Option<Endpoint> {
        let mut it = models.into_iter();
        let mut e = Endpoint::single(it.next()?);
        e.counter = self.counter.clone();
        for m in it {
            e = e.with_version(m);
        }
        Some(e)
    }

    /// This endpoint with each slot's version replaced by the next one (`models` in slot
    /// order), keeping every slot's weight and shadow flag.
    pub fn reloaded(&self, models: Vec<ModelVersion>) -> Result<Endpoint, String> {
        if models.len() != self.slots.len() {
            return Err(format!(
                "the reload gave {} versions for {} slots",
                models.len(),
                self.slots.len()
            ));
        }
        let slots = self
            .slots
            .iter()
            .zip(models)
            .map(|(s, m)| Slot {
                model: Arc::new(m),
                weight: s.weight,
                shadow: s.shadow,
            })
            .collect();
        Ok(Endpoint {
            name: self.name.clone(),
            slots,
            counter: self.counter.clone(),
        })
    }

    /// This endpoint with the split and shadows of `spec`; every version it names must be
    /// loaded, and some version must get traffic.
    pub fn with_traffic(&self, spec: &TrafficSpec) -> Result<Endpoint, String> {
        let labels = self.versions();
        for v in spec.weights.keys().chain(&spec.shadow) {
            if !labels.contains(v) {
                return Err(format!(
                    "model `{}` has no loaded version `{v}` (loaded: {})",
                    self.name,
                    labels.join(", ")
                ));
            }
        }
        if !spec.weights.is_empty() && spec.weights.values().all(|w| *w == 0) {
            return Err(format!(
                "the weights of `{}` must give some version traffic",
                self.name
            ));
        }
        let slots = self
            .slots
            .iter()
            .map(|s| Slot {
                model: s.model.clone(),
                weight: if spec.weights.is_empty() {
                    s.weight
                } else {
                    spec.weights.get(&s.model.version).copied().unwrap_or(0)
                },
                shadow: spec.shadow.contains(&s.model.version),
            })
            .collect();
        Ok(Endpoint {
            name: self.name.clone(),
            slots,
            counter: self.counter.clone(),
        })
    }

    /// The current split, by version label.
    pub fn traffic(&self) -> TrafficSpec {
        TrafficSpec {
            weights: self
                .slots
                .iter()
                .map(|s| (s.model.version.clone(), s.weight))
                .collect(),
            shadow: self
                .slots
                .iter()
                .filter(|s| s.shadow)
                .map(|s| s.model.version.clone())
                .collect(),
        }
    }

    /// Loaded version labels, in slot order.
    pub fn versions(&self) -> Vec<String> {
        self.slots.iter().map(|s| s.model.version.clone()).collect()
    }

    /// The version with the largest share (the first on a tie): what metadata describes.
    pub fn primary(&self) -> &Arc<ModelVersion> {
        let mut best = &self.slots[0];
        for s in &self.slots[1..] {
            if s.weight > best.weight {
                best = s;
            }
        }
        &best.model
    }

    /// A loaded version by label.
    pub fn version(&self, label: &str) -> Option<&Arc<ModelVersion>> {
        self.slots
            .iter()
            .find(|s| s.model.version == label)
            .map(|s| &s.model)
    }

    /// The version that answers a request: the pinned one, or one drawn by weight.
    pub fn route(&self, pin: Option<&str>) -> Result<Arc<ModelVersion>, RouteError> {
        if let Some(v) = pin {
            return self
                .version(v)
                .cloned()
                .ok_or_else(|| RouteError::NoSuchVersion {
                    version: v.to_string(),
                    loaded: self.versions(),
                });
        }
        let total: u64 = self.slots.iter().map(|s| u64::from(s.weight)).sum();
        if total == 0 {
            return Err(RouteError::NoTraffic);
        }
        let mut r = mix(self.counter.fetch_add(1, Ordering::Relaxed)) % total;
        for s in &self.slots {
            let w = u64::from(s.weight);
            if r < w {
                return Ok(s.model.clone());
            }
            r -= w;
        }
        unreachable!("r < total")
    }

    /// The shadows of a request answered by `live`.
    pub fn shadows_of(&self, live: &ModelVersion) -> Vec<Arc<ModelVersion>> {
        self.slots
            .iter()
            .filter(|s| s.shadow && s.model.version != live.version)
            .map(|s| s.model.clone())
            .collect()
    }
}

/// How far a shadow's outputs are from the live ones, per request.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Divergence {
    pub rows: usize,
    /// Rows where some output differs (integers: at all; floats: by more than 1e-6).
    pub diverged_rows: usize,
    /// The largest absolute difference over the float outputs (0 when none differ).
    pub max_abs_diff: f64,
}

/// Compares the outputs the live version returned with the shadow's, tensor by tensor
/// (matched by name). A tensor missing on one side or of another shape makes every row
/// diverge.
pub fn compare(live: &[kiln_ml::Tensor], shadow: &[kiln_ml::Tensor]) -> Divergence {
    use kiln_ml::TensorData as D;
    let rows = live
        .first()
        .and_then(|t| t.shape.first().copied())
        .unwrap_or(0);
    let mut row_diverged = vec![false; rows];
    let mut max_abs: f64 = 0.0;
    for a in live {
        let Some(b) = shadow.iter().find(|t| t.name == a.name) else {
            row_diverged.iter_mut().for_each(|d| *d = true);
            continue;
        };
        if a.shape != b.shape {
            row_diverged.iter_mut().for_each(|d| *d = true);
            continue;
        }
        let n = a.data.len();
        let width = if rows == 0 { 0 } else { n / rows.max(1) };
        let mut mark = |i: usize| {
            if width > 0
                && let Some(d) = row_diverged.get_mut(i / width)
            {
                *d = true;
            }
        };
        let float = |x: f64, y: f64, i: usize, max_abs: &mut f64, mark: &mut dyn FnMut(usize)| {
            let d = if x.is_nan() && y.is_nan() {
                0.0
            } else {
                (x - y).abs()
            };
            let d = if d.is_nan() { f64::INFINITY } else { d };
            if d > *max_abs {
                *max_abs = d;
            }
            if d > 1e-6 {
                mark(i);
            }
        };
        match (&a.data, &b.data) {
            (D::Fp32(x), D::Fp32(y)) => {
                for (i, (p, q)) in x.iter().zip(y).enumerate() {
                    float(f64::from(*p), f64::from(*q), i, &mut max_abs, &mut mark);
                }
            }
            (D::Fp64(x), D::Fp64(y)) => {
                for (i, (p, q)) in x.iter().zip(y).enumerate() {
                    float(*p, *q, i, &mut max_abs, &mut mark);
                }
            }
            (D::Int64(x), D::Int64(y)) => {
                for (i, (p, q)) in x.iter().zip(y).enumerate() {
                    if p != q {
                        mark(i);
                    }
                }
            }
            (D::Int32(x), D::Int32(y)) => {
                for (i, (p, q)) in x.iter().zip(y).enumerate() {
                    if p != q {
                        mark(i);
                    }
                }
            }
            (D::Bool(x), D::Bool(y)) => {
                for (i, (p, q)) in x.iter().zip(y).enumerate() {
                    if p != q {
                        mark(i);
                    }
                }
            }
            (D::Bytes(x), D::Bytes(y)) => {
                for (i, (p, q)) in x.iter().zip(y).enumerate() {
                    if p != q {
                        mark(i);
                    }
                }
            }
            _ => row_diverged.iter_mut().for_each(|d| *d = true),
        }
    }
    Divergence {
        rows,
        diverged_rows: row_diverged.iter().filter(|d| **d).count(),
        max_abs_diff: max_abs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_ml::{Tensor, TensorData};

    fn t(name: &str, shape: Vec<usize>, data: TensorData) -> Tensor {
        Tensor::new(name, shape, data).unwrap()
    }

    #[test]
    fn mix_spreads_consecutive_counters() {
        let mut hits = [0u32; 10];
        for i in 0..10_000u64 {
            hits[(mix(i) % 10) as usize] += 1;
        }
        for h in hits {
            assert!((900..1100).contains(&h), "{hits:?}");
        }
    }

    #[test]
    fn compare_counts_rows_and_largest_difference() {
        let live = vec![
            t("label", vec![3], TensorData::Int64(vec![0, 1, 1])),
            t(
                "p",
                vec![3, 2],
                TensorData::Fp32(vec![0.1, 0.9, 0.4, 0.6, 0.3, 0.7]),
            ),
        ];
        let same = compare(&live, &live);
        assert_eq!(same.diverged_rows, 0);
        assert_eq!(same.rows, 3);
        assert_eq!(same.max_abs_diff, 0.0);
        let shadow = vec![
            t("label", vec![3], TensorData::Int64(vec![0, 1, 0])),
            t(
                "p",
                vec![3, 2],
                TensorData::Fp32(vec![0.1, 0.9, 0.25, 0.75, 0.3, 0.7]),
            ),
        ];
        let d = compare(&live, &shadow);
        assert_eq!(d.diverged_rows, 2, "{d:?}");
        assert!((d.max_abs_diff - 0.15).abs() < 1e-6, "{d:?}");
        let missing = compare(&live, &shadow[..1]);
        assert_eq!(missing.diverged_rows, 3);
    }
}
