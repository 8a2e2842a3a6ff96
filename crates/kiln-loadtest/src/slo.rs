//! Service-level objectives: `--slo p99=5ms,error_rate=0.1%,throughput>=500` parsed into
//! [`Objective`]s and checked against a run's [`Summary`].
//!
//! | objective | means |
//! |---|---|
//! | `p50`, `p90`, `p99`, `p999` (or `p99.9`), `max`, `mean` `=` or `<=` a duration | that latency of the successful requests is at most it (a unit is required: `us`, `ms`, `s`) |
//! | `error_rate` `=` or `<=` `0.1%` (or a fraction, `0.001`) | errors (non-2xx, transport, dropped) over requests |
//! | `throughput` `>=` (or `=`) N | successful requests per second at least N |
//! | `rows` `>=` (or `=`) N | rows of successful requests per second at least N |
//!
//! In a sweep every level is checked; the verdict passes only if every level does.

use serde::Serialize;

use crate::parse::parse_duration_strict;
use crate::report::Runs;
use crate::stats::{Latencies, Summary};
use crate::{LoadtestError, Result};

/// What an objective measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// A latency of the successful requests, in milliseconds.
    Latency(Latency),
    ErrorRate,
    Throughput,
    Rows,
}

/// The latencies a summary has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Latency {
    P50,
    P90,
    P99,
    P999,
    Max,
    Mean,
}

impl Latency {
    fn of(self, l: &Latencies) -> f64 {
        match self {
            Latency::P50 => l.p50,
            Latency::P90 => l.p90,
            Latency::P99 => l.p99,
            Latency::P999 => l.p999,
            Latency::Max => l.max,
            Latency::Mean => l.mean,
        }
    }
}

/// One objective: a metric and its bound.
#[derive(Debug, Clone, PartialEq)]
pub struct Objective {
    /// As written, e.g. `p99<=5ms`.
    pub text: String,
    pub metric: Metric,
    /// Milliseconds for latencies, a fraction for the error rate, per second for rates.
    pub target: f64,
}

/// A parsed `--slo`.
#[derive(Debug, Clone, PartialEq)]
pub struct Slo {
    pub objectives: Vec<Objective>,
}

const EXPECTED: &str = "objectives like p99=5ms,error_rate=0.1%,throughput>=100 \
     (latencies p50 p90 p99 p999 max mean, error_rate, throughput, rows)";

impl Slo {
    pub fn parse(s: &str) -> Result<Slo> {
        let err = |found: &str| LoadtestError::Parse {
            what: "--slo",
            expected: EXPECTED,
            found: found.to_string(),
        };
        let mut objectives = vec![];
        for item in s.split(',').map(str::trim) {
            let (key, op, value) = ["<=", ">=", "="]
                .iter()
                .find_map(|op| item.split_once(op).map(|(k, v)| (k.trim(), *op, v.trim())))
                .ok_or_else(|| err(item))?;
            let latency = |q: Latency| -> Result<(Metric, f64)> {
                if op == ">=" {
                    return Err(err(item));
                }
                let d = parse_duration_strict(value, "a latency with a unit, like 5ms or 250us")?;
                Ok((Metric::Latency(q), d.as_secs_f64() * 1000.0))
            };
            let rate = |metric: Metric| -> Result<(Metric, f64)> {
                if op == "<=" {
                    return Err(err(item));
                }
                let v = value
                    .trim_end_matches("/s")
                    .trim_end_matches("rps")
                    .trim()
                    .parse::<f64>()
                    .map_err(|_| err(item))?;
                Ok((metric, v))
            };
            let (metric, target) = match key {
                "p50" => latency(Latency::P50)?,
                "p90" => latency(Latency::P90)?,
                "p99" => latency(Latency::P99)?,
                "p999" | "p99.9" => latency(Latency::P999)?,
                "max" => latency(Latency::Max)?,
                "mean" => latency(Latency::Mean)?,
                "error_rate" | "errors" => {
                    if op == ">=" {
                        return Err(err(item));
                    }
                    let v = match value.strip_suffix('%') {
                        Some(p) => p.trim().parse::<f64>().map(|p| p / 100.0),
                        None => value.parse::<f64>(),
                    }
                    .map_err(|_| err(item))?;
                    (Metric::ErrorRate, v)
                }
                "throughput" => rate(Metric::Throughput)?,
                "rows" => rate(Metric::Rows)?,
                _ => return Err(err(item)),
            };
            if !(target.is_finite() && target >= 0.0) {
                return Err(err(item));
            }
            let canonical_op = match metric {
                Metric::Throughput | Metric::Rows => ">=",
                _ => "<=",
            };
            objectives.push(Objective {
                text: format!("{key}{canonical_op}{value}"),
                metric,
                target,
            });
        }
        Ok(Slo { objectives })
    }

    /// Checks every objective against one run.
    pub fn check(&self, run: &str, s: &Summary) -> Vec<Check> {
        self.objectives
            .iter()
            .map(|o| {
                let (measured, pass, unit) = match o.metric {
                    Metric::Latency(which) => {
                        let v = which.of(&s.latency_ms);
                        // Without a successful request there is no latency to meet.
                        (v, s.ok > 0 && v <= o.target, "ms")
                    }
                    Metric::ErrorRate => (s.error_rate, s.error_rate <= o.target, "fraction"),
                    Metric::Throughput => (s.throughput_rps, s.throughput_rps >= o.target, "req/s"),
                    Metric::Rows => (s.rows_per_s, s.rows_per_s >= o.target, "rows/s"),
                };
                Check {
                    run: run.to_string(),
                    objective: o.text.clone(),
                    target: o.target,
                    measured,
                    unit,
                    pass,
                }
            })
            .collect()
    }

    /// Checks every run of a report: the open loop, or each level of a sweep.
    pub fn check_runs(&self, runs: &Runs) -> SloReport {
        let mut checks = vec![];
        let mut best_level = None;
        match runs {
            Runs::OpenLoop(r) => checks.extend(self.check("open loop", &r.summary)),
            Runs::Sweep { levels } => {
                for l in levels {
                    let c = self.check(&format!("concurrency {}", l.concurrency), &l.summary);
                    if c.iter().all(|c| c.pass) {
                        let better = best_level.is_none_or(|(_, tp)| l.summary.throughput_rps > tp);
                        if better {
                            best_level = Some((l.concurrency, l.summary.throughput_rps));
                        }
                    }
                    checks.extend(c);
                }
            }
        }
        SloReport {
            pass: checks.iter().all(|c| c.pass),
            best_level: best_level.map(|(c, _)| c),
            checks,
        }
    }
}

/// One objective checked against one run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    /// `open loop` or `concurrency N`.
    pub run: String,
    pub objective: String,
    pub target: f64,
    pub measured: f64,
    /// `ms`, `fraction`, `req/s` or `rows/s`.
    pub unit: &'static str,
    pub pass: bool,
}

/// The verdict of an SLO over a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SloReport {
    /// Every objective met in every run.
    pub pass: bool,
    /// In a sweep: the level with the highest throughput among those meeting every
    /// objective.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub best_level: Option<usize>,
    pub checks: Vec<Check>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{Outcome, Recorder};
    use std::time::Duration;

    #[test]
    fn parses_objectives() {
        let slo =
            Slo::parse("p99=5ms, error_rate=0.1%,throughput>=200,p999<=250us,max=1s,rows=10/s")
                .unwrap();
        let o = &slo.objectives;
        assert_eq!(o.len(), 6);
        assert_eq!(
            (o[0].metric, o[0].target),
            (Metric::Latency(Latency::P99), 5.0)
        );
        assert_eq!(o[0].text, "p99<=5ms");
        assert_eq!(o[1].metric, Metric::ErrorRate);
        assert!((o[1].target - 0.001).abs() < 1e-15);
        assert_eq!((o[2].metric, o[2].target), (Metric::Throughput, 200.0));
        assert_eq!(o[2].text, "throughput>=200");
        assert_eq!(
            (o[3].metric, o[3].target),
            (Metric::Latency(Latency::P999), 0.25)
        );
        assert_eq!(
            (o[4].metric, o[4].target),
            (Metric::Latency(Latency::Max), 1000.0)
        );
        assert_eq!((o[5].metric, o[5].target), (Metric::Rows, 10.0));
        assert_eq!(
            Slo::parse("p99.9=1ms,error_rate=0.01,mean<=2ms")
                .unwrap()
                .objectives[1]
                .target,
            0.01
        );
        assert_eq!(
            Slo::parse("p99=0.001ms").unwrap().objectives[0].target,
            0.001
        );
    }

    #[test]
    fn refuses_bad_objectives_naming_them() {
        for bad in [
            "",
            "p99",
            "p99=5",
            "p99>=5ms",
            "p42=5ms",
            "error_rate=lots",
            "error_rate>=1%",
            "throughput<=5",
            "throughput=fast",
            "p99=5ms,,",
            "p99=-5ms",
        ] {
            let e = Slo::parse(bad).unwrap_err().to_string();
            assert!(e.contains("--slo") || e.contains("duration"), "{bad}: {e}");
        }
    }

    fn summary(latencies_ms: &[u64], errors: u64, secs: u64) -> Summary {
        let mut r = Recorder::new();
        for &ms in latencies_ms {
            r.record(Outcome::Ok, Duration::from_millis(ms));
        }
        for _ in 0..errors {
            r.record(Outcome::Status(500), Duration::ZERO);
        }
        r.summary(Duration::from_secs(secs), 1)
    }

    #[test]
    fn checks_each_objective_with_the_measured_value() {
        let s = summary(&[1; 999], 1, 10); // 999 ok in 10 s, 1 error
        let slo =
            Slo::parse("p99=2ms,p50=0.5ms,error_rate=0.1%,throughput>=100,rows>=99.9").unwrap();
        let c = slo.check("open loop", &s);
        let verdicts: Vec<(&str, bool)> =
            c.iter().map(|c| (c.objective.as_str(), c.pass)).collect();
        assert_eq!(
            verdicts,
            vec![
                ("p99<=2ms", true),
                ("p50<=0.5ms", false),
                ("error_rate<=0.1%", true),
                ("throughput>=100", false),
                ("rows>=99.9", true),
            ]
        );
        assert!((c[0].measured - 1.0).abs() < 0.01);
        assert_eq!(c[2].measured, 0.001);
        assert_eq!(c[3].unit, "req/s");
        // No successful request: no latency objective can pass.
        let none = summary(&[], 5, 1);
        assert!(!Slo::parse("p99=1s").unwrap().check("x", &none)[0].pass);
    }

    #[test]
    fn a_sweep_passes_only_if_every_level_does_and_names_the_best() {
        use crate::sweep::LevelReport;
        let level = |c: usize, ms: u64, n: usize| LevelReport {
            concurrency: c,
            stable: true,
            windows_measured: 3,
            windows: vec![],
            summary: summary(&vec![ms; n], 0, 1),
        };
        let runs = Runs::Sweep {
            levels: vec![level(1, 2, 100), level(2, 3, 180), level(4, 9, 250)],
        };
        let r = Slo::parse("p99=5ms").unwrap().check_runs(&runs);
        assert!(!r.pass);
        assert_eq!(r.best_level, Some(2));
        assert_eq!(r.checks.len(), 3);
        assert_eq!(r.checks[2].run, "concurrency 4");
        let r = Slo::parse("p99=10ms").unwrap().check_runs(&runs);
        assert!(r.pass);
        assert_eq!(r.best_level, Some(4));
    }
}
