//! Hyper-parameter search: grid, random, and budgeted successive halving over declared
//! ranges. This module only proposes parameter sets and decides which survive; running the
//! trials (each a child run of one parent run) is the caller's.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{MlError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    Grid,
    Random,
    /// Successive halving: many trials on a small budget, the best `1/eta` go on with `eta`
    /// times the budget, until one rung reaches `max_budget`.
    Halving,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Maximize,
    Minimize,
}

impl Direction {
    /// The usual direction of a metric name (`auc`, `accuracy`, `f1`, `r2`… up; losses and
    /// errors down), looked at after the last `_` prefix such as `valid_`.
    pub fn for_metric(metric: &str) -> Direction {
        let base = metric.rsplit('.').next().unwrap_or(metric);
        let base = base
            .strip_prefix("valid_")
            .or_else(|| base.strip_prefix("test_"))
            .or_else(|| base.strip_prefix("train_"))
            .unwrap_or(base);
        match base {
            "auc" | "accuracy" | "precision" | "recall" | "f1" | "r2" => Direction::Maximize,
            _ => Direction::Minimize,
        }
    }

    /// Whether `a` is better than `b`; NaN is never better.
    pub fn better(self, a: f64, b: f64) -> bool {
        if a.is_nan() {
            return false;
        }
        if b.is_nan() {
            return true;
        }
        match self {
            Direction::Maximize => a > b,
            Direction::Minimize => a < b,
        }
    }
}

/// One parameter's range: a list of choices, or a numeric interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Space {
    Choice(Vec<Value>),
    Range(Range),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Range {
    pub min: f64,
    pub max: f64,
    /// Sample on a log scale (both bounds must be > 0).
    #[serde(default)]
    pub log: bool,
    /// Whole numbers only.
    #[serde(default)]
    pub int: bool,
    /// For grid search: how many evenly spaced values (on the log scale if `log`).
    #[serde(default)]
    pub steps: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchConfig {
    pub method: Method,
    /// Trials for random search and the first rung of halving (grid: the whole grid).
    #[serde(default)]
    pub trials: Option<usize>,
    /// The metric that ranks trials, e.g. `valid_auc` (default set by the caller).
    #[serde(default)]
    pub metric: Option<String>,
    /// Default: from the metric's name (see [`Direction::for_metric`]).
    #[serde(default)]
    pub direction: Option<Direction>,
    #[serde(default)]
    pub seed: u64,
    /// Halving: the parameter that is the budget (e.g. `num_rounds`).
    #[serde(default)]
    pub budget_param: Option<String>,
    #[serde(default)]
    pub min_budget: Option<u64>,
    #[serde(default)]
    pub max_budget: Option<u64>,
    /// Halving: keep the best 1/eta of each rung (default 3).
    #[serde(default)]
    pub eta: Option<u64>,
    pub space: BTreeMap<String, Space>,
}

pub type Params = BTreeMap<String, Value>;

impl SearchConfig {
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(MlError::Training(format!("search: {m}")));
        if self.space.is_empty() {
            return bad("`space` declares no parameters".into());
        }
        for (name, s) in &self.space {
            match s {
                Space::Choice(v) if v.is_empty() => {
                    return bad(format!("space.{name}: an empty list of choices"));
                }
                Space::Range(r) => {
                    if !(r.min.is_finite() && r.max.is_finite()) || r.min > r.max {
                        return bad(format!(
                            "space.{name}: min {} must be ≤ max {} (both finite)",
                            r.min, r.max
                        ));
                    }
                    if r.log && r.min <= 0.0 {
                        return bad(format!("space.{name}: a log range needs min > 0"));
                    }
                    if self.method == Method::Grid && r.steps.unwrap_or(0) < 1 {
                        return bad(format!(
                            "space.{name}: grid search over a range needs `steps` (≥ 1)"
                        ));
                    }
                }
                Space::Choice(_) => {}
            }
        }
        match self.method {
            Method::Grid => {}
            Method::Random => {
                if self.trials.unwrap_or(0) == 0 {
                    return bad("random search needs `trials` ≥ 1".into());
                }
            }
            Method::Halving => {
                let Some(p) = &self.budget_param else {
                    return bad("halving needs `budget_param` (e.g. \"num_rounds\")".into());
                };
                if self.space.contains_key(p) {
                    return bad(format!(
                        "`{p}` is the halving budget and cannot also be searched"
                    ));
                }
                let (lo, hi) = (self.min_budget.unwrap_or(0), self.max_budget.unwrap_or(0));
                if lo == 0 || hi < lo {
                    return bad(format!(
                        "halving needs 1 ≤ min_budget ≤ max_budget (got {lo} and {hi})"
                    ));
                }
                if self.eta.is_some_and(|e| e < 2) {
                    return bad("eta must be ≥ 2".into());
                }
                if self.trials.unwrap_or(0) == 0 {
                    return bad("halving needs `trials` ≥ 1 (the first rung's size)".into());
                }
            }
        }
        Ok(())
    }

    /// The parameter sets to try (for halving: the first rung, without the budget).
    pub fn candidates(&self) -> Result<Vec<Params>> {
        self.validate()?;
        match self.method {
            Method::Grid => Ok(self.grid()),
            Method::Random | Method::Halving => {
                let mut rng = StdRng::seed_from_u64(self.seed);
                Ok((0..self.trials.unwrap_or(1))
                    .map(|_| {
                        self.space
                            .iter()
                            .map(|(k, s)| (k.clone(), sample(s, &mut rng)))
                            .collect()
                    })
                    .collect())
            }
        }
    }

    fn grid(&self) -> Vec<Params> {
        let mut out: Vec<Params> = vec![Params::new()];
        for (k, s) in &self.space {
            let values = match s {
                Space::Choice(v) => v.clone(),
                Space::Range(r) => grid_values(r),
            };
            out = out
                .into_iter()
                .flat_map(|p| {
                    values.iter().map(move |v| {
                        let mut q = p.clone();
                        q.insert(k.clone(), v.clone());
                        q
                    })
                })
                .collect();
        }
        out
    }

    /// Halving rungs: (number of trials, budget) from the first rung to the last.
    pub fn rungs(&self) -> Vec<(usize, u64)> {
        let eta = self.eta.unwrap_or(3).max(2);
        let (mut n, mut budget) = (
            self.trials.unwrap_or(1).max(1),
            self.min_budget.unwrap_or(1),
        );
        let max = self.max_budget.unwrap_or(budget).max(budget);
        let mut out = vec![];
        loop {
            out.push((n, budget.min(max)));
            if budget >= max || n == 1 {
                break;
            }
            n = n.div_ceil(eta as usize).max(1);
            budget = budget.saturating_mul(eta);
        }
        out
    }
}

fn number(x: f64, int: bool) -> Value {
    if int {
        Value::from(x.round() as i64)
    } else {
        serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)
    }
}

fn grid_values(r: &Range) -> Vec<Value> {
    let n = r.steps.unwrap_or(1).max(1);
    let mut vals: Vec<Value> = (0..n)
        .map(|i| {
            let t = if n == 1 {
                0.0
            } else {
                i as f64 / (n - 1) as f64
            };
            let x = if r.log {
                (r.min.ln() + t * (r.max.ln() - r.min.ln())).exp()
            } else {
                r.min + t * (r.max - r.min)
            };
            number(x, r.int)
        })
        .collect();
    vals.dedup();
    vals
}

fn sample(s: &Space, rng: &mut StdRng) -> Value {
    match s {
        Space::Choice(v) => v[rng.random_range(0..v.len())].clone(),
        Space::Range(r) => {
            let x = if r.min == r.max {
                r.min
            } else if r.log {
                rng.random_range(r.min.ln()..=r.max.ln()).exp()
            } else if r.int {
                rng.random_range(r.min.round() as i64..=r.max.round() as i64) as f64
            } else {
                rng.random_range(r.min..=r.max)
            };
            number(x, r.int)
        }
    }
}

/// Indexes of the trials that go on to the next rung: the best `keep` by `scores`
/// (ties keep the earlier trial, so the choice is deterministic).
pub fn survivors(scores: &[f64], keep: usize, direction: Direction) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| {
        let (x, y) = (scores[a], scores[b]);
        if direction.better(x, y) {
            std::cmp::Ordering::Less
        } else if direction.better(y, x) {
            std::cmp::Ordering::Greater
        } else {
            a.cmp(&b)
        }
    });
    idx.truncate(keep);
    idx
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> SearchConfig {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn grid_is_the_cartesian_product() {
        let c = cfg(
            r#"{"method":"grid","space":{"a":[1,2,3],"b":{"min":0.01,"max":1,"log":true,"steps":3}}}"#,
        );
        let g = c.candidates().unwrap();
        assert_eq!(g.len(), 9);
        let bs: Vec<f64> = g.iter().take(3).map(|p| p["b"].as_f64().unwrap()).collect();
        assert!((bs[0] - 0.01).abs() < 1e-12 && (bs[1] - 0.1).abs() < 1e-12 && bs[2] == 1.0);
    }

    #[test]
    fn random_search_is_seeded_and_in_range() {
        let text = r#"{"method":"random","trials":20,"seed":7,"space":{"lr":{"min":0.01,"max":0.3,"log":true},"leaves":{"min":8,"max":64,"int":true},"m":["a","b"]}}"#;
        let a = cfg(text).candidates().unwrap();
        assert_eq!(a, cfg(text).candidates().unwrap());
        assert_eq!(a.len(), 20);
        for p in &a {
            let lr = p["lr"].as_f64().unwrap();
            assert!((0.01..=0.3).contains(&lr));
            let l = p["leaves"].as_i64().unwrap();
            assert!((8..=64).contains(&l));
        }
        let other = cfg(&text.replace("\"seed\":7", "\"seed\":8"))
            .candidates()
            .unwrap();
        assert_ne!(a, other);
    }

    #[test]
    fn halving_rungs_shrink_by_eta() {
        let c = cfg(
            r#"{"method":"halving","trials":9,"budget_param":"num_rounds","min_budget":10,"max_budget":90,"space":{"lr":[0.1,0.2]}}"#,
        );
        c.validate().unwrap();
        assert_eq!(c.rungs(), vec![(9, 10), (3, 30), (1, 90)]);
    }

    #[test]
    fn survivors_keep_the_best_in_either_direction() {
        let s = [0.5, 0.9, f64::NAN, 0.7];
        assert_eq!(survivors(&s, 2, Direction::Maximize), vec![1, 3]);
        assert_eq!(survivors(&s, 2, Direction::Minimize), vec![0, 3]);
    }

    #[test]
    fn bad_configs_are_named() {
        for (text, want) in [
            (r#"{"method":"random","space":{"a":[1]}}"#, "trials"),
            (
                r#"{"method":"grid","space":{"a":{"min":1,"max":2}}}"#,
                "steps",
            ),
            (
                r#"{"method":"random","trials":2,"space":{"a":{"min":2,"max":1}}}"#,
                "space.a",
            ),
            (
                r#"{"method":"random","trials":2,"space":{"a":[]}}"#,
                "space.a",
            ),
            (
                r#"{"method":"halving","trials":3,"budget_param":"n","min_budget":5,"max_budget":2,"space":{"a":[1]}}"#,
                "min_budget",
            ),
        ] {
            let e = cfg(text).validate().unwrap_err().to_string();
            assert!(e.contains(want), "{e} should mention {want}");
        }
        assert!(
            serde_json::from_str::<SearchConfig>(r#"{"method":"sideways","space":{}}"#).is_err()
        );
    }

    #[test]
    fn directions_follow_metric_names() {
        assert_eq!(Direction::for_metric("valid_auc"), Direction::Maximize);
        assert_eq!(Direction::for_metric("valid_log_loss"), Direction::Minimize);
        assert_eq!(Direction::for_metric("test_rmse"), Direction::Minimize);
    }
}
