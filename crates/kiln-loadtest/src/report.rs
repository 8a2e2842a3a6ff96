//! What a run reports: [`Report`] serialises as the `--json` output, and
//! [`Report::table`] renders it for people.

use std::fmt::Write;

use serde::Serialize;

use crate::open_loop::OpenLoopReport;
use crate::slo::SloReport;
use crate::stats::Summary;
use crate::sweep::LevelReport;
use crate::target::{Protocol, TargetInfo};

/// The runs of one invocation: an open loop, or the levels of a sweep.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Runs {
    OpenLoop(Box<OpenLoopReport>),
    Sweep { levels: Vec<LevelReport> },
}

/// Everything `kiln loadtest` prints.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub target: TargetInfo,
    #[serde(flatten)]
    pub runs: Runs,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slo: Option<SloReport>,
}

/// A number with a precision that suits its size: 0.412, 12.3, 1234.
fn num(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() < 10.0 {
        format!("{v:.3}")
    } else if v.abs() < 1000.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

/// `429×3 500×1 timeout×2 dropped×4`, or empty.
fn error_detail(s: &Summary) -> String {
    let mut parts: Vec<String> = s
        .errors_by_status
        .iter()
        .map(|(status, n)| format!("{status}×{n}"))
        .collect();
    parts.extend(s.transport_errors.iter().map(|(k, n)| format!("{k}×{n}")));
    if s.dropped > 0 {
        parts.push(format!("dropped×{}", s.dropped));
    }
    parts.join(" ")
}

const HEADERS: [&str; 10] = [
    "requests", "errors", "req/s", "rows/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms", "",
];

fn row(label: String, s: &Summary, note: String) -> Vec<String> {
    let l = &s.latency_ms;
    vec![
        label,
        s.requests.to_string(),
        s.errors.to_string(),
        num(s.throughput_rps),
        num(s.rows_per_s),
        num(l.p50),
        num(l.p90),
        num(l.p99),
        num(l.p999),
        num(l.max),
        note,
    ]
}

/// Columns padded to their widest cell; the first left-aligned, numbers right-aligned, the
/// last (notes) left-aligned and unpadded.
fn render(first: &str, rows: &[Vec<String>]) -> String {
    let mut header = vec![first.to_string()];
    header.extend(HEADERS.iter().map(|h| h.to_string()));
    let all: Vec<&Vec<String>> = std::iter::once(&header).chain(rows).collect();
    let cols = header.len();
    let width: Vec<usize> = (0..cols)
        .map(|c| all.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in all {
        let mut line = String::new();
        for c in 0..cols {
            let cell = &r[c];
            let pad = width[c] - cell.chars().count();
            if c == 0 {
                let _ = write!(line, "{cell}{}", " ".repeat(pad));
            } else if c == cols - 1 {
                if !cell.is_empty() {
                    let _ = write!(line, "  {cell}");
                }
            } else {
                let _ = write!(line, "  {}{cell}", " ".repeat(pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

impl Report {
    /// The human-readable report: the target, a table, errors by kind, the SLO verdict.
    pub fn table(&self) -> String {
        let t = &self.target;
        let mut out = String::new();
        let protocol = match t.protocol {
            Protocol::Oip => "OIP v2",
            Protocol::Invocations => "MLflow /invocations",
        };
        let _ = writeln!(
            out,
            "target  {} ({protocol}, {} body of {} bytes, {} row{} per request)",
            t.endpoint,
            t.body,
            t.body_bytes,
            t.rows_per_request,
            if t.rows_per_request == 1 { "" } else { "s" }
        );
        let mut errors = vec![];
        match &self.runs {
            Runs::OpenLoop(r) => {
                let s = &r.summary;
                let _ = writeln!(
                    out,
                    "open loop at {} req/s for {}s{}; latency from each request's scheduled time\n",
                    r.rate,
                    r.duration_s,
                    if r.warmup_s > 0.0 {
                        format!(" after a {}s warmup", r.warmup_s)
                    } else {
                        String::new()
                    }
                );
                let note = s
                    .schedule_lag_ms
                    .as_ref()
                    .map(|l| format!("send lag p99 {} ms", num(l.p99_ms)))
                    .unwrap_or_default();
                out.push_str(&render("run", &[row("open loop".into(), s, note)]));
                let detail = error_detail(s);
                if !detail.is_empty() {
                    errors.push(format!("open loop: {detail}"));
                }
            }
            Runs::Sweep { levels } => {
                let _ = writeln!(
                    out,
                    "closed-loop concurrency sweep; each level's figures are its last 3 windows\n"
                );
                let rows: Vec<Vec<String>> = levels
                    .iter()
                    .map(|l| {
                        let note = if l.stable {
                            format!("stable after {} windows", l.windows_measured)
                        } else {
                            format!("UNSTABLE after {} windows", l.windows_measured)
                        };
                        row(l.concurrency.to_string(), &l.summary, note)
                    })
                    .collect();
                out.push_str(&render("concurrency", &rows));
                for l in levels {
                    let detail = error_detail(&l.summary);
                    if !detail.is_empty() {
                        errors.push(format!("concurrency {}: {detail}", l.concurrency));
                    }
                }
            }
        }
        if !errors.is_empty() {
            out.push_str("\nerrors\n");
            for e in errors {
                let _ = writeln!(out, "  {e}");
            }
        }
        if let Some(slo) = &self.slo {
            let _ = writeln!(out, "\nSLO {}", if slo.pass { "PASS" } else { "FAIL" });
            let run_width = slo.checks.iter().map(|c| c.run.len()).max().unwrap_or(0);
            for c in &slo.checks {
                let measured = match c.unit {
                    "fraction" => format!("{}%", num(c.measured * 100.0)),
                    unit => format!("{} {unit}", num(c.measured)),
                };
                let _ = writeln!(
                    out,
                    "  {}  {:<run_width$}  {:<22} measured {measured}",
                    if c.pass { "PASS" } else { "FAIL" },
                    c.run,
                    c.objective,
                );
            }
            if let Some(best) = slo.best_level {
                let _ = writeln!(
                    out,
                    "  highest throughput meeting the SLO: concurrency {best}"
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slo::Slo;
    use crate::stats::{Outcome, Recorder};
    use std::time::Duration;

    fn report(slo: Option<&str>) -> Report {
        let mut r = Recorder::new();
        for ms in 1..=100 {
            r.record(Outcome::Ok, Duration::from_millis(ms));
        }
        r.record(Outcome::Status(429), Duration::ZERO);
        r.record(Outcome::Dropped, Duration::ZERO);
        r.record_lag(Duration::from_micros(80));
        let runs = Runs::OpenLoop(Box::new(OpenLoopReport {
            rate: 51.0,
            duration_s: 2.0,
            warmup_s: 0.0,
            max_outstanding: 1000,
            summary: r.summary(Duration::from_secs(2), 1),
        }));
        let slo = slo.map(|s| Slo::parse(s).unwrap().check_runs(&runs));
        Report {
            target: TargetInfo {
                endpoint: "http://127.0.0.1:8000/v2/models/gb/infer".into(),
                protocol: Protocol::Oip,
                model: Some("gb".into()),
                body: "oip-json",
                body_bytes: 300,
                rows_per_request: 1,
            },
            runs,
            slo,
        }
    }

    #[test]
    fn table_shows_figures_errors_and_verdicts() {
        let t = report(Some("p99=5ms,error_rate=5%")).table();
        assert!(
            t.contains("open loop at 51 req/s for 2s; latency from"),
            "{t}"
        );
        assert!(t.contains("p99.9 ms"), "{t}");
        let line = t
            .lines()
            .find(|l| l.starts_with("open loop ") && l.contains("send lag"))
            .unwrap();
        let cells: Vec<&str> = line.split_whitespace().collect();
        // open loop | requests errors req/s rows/s p50 p90 p99 p99.9 max | note
        assert_eq!(&cells[2..5], &["102", "2", "50.0"], "{t}");
        assert_eq!(cells[7], "90.0", "{t}");
        assert!(t.contains("open loop: 429×1 dropped×1"), "{t}");
        assert!(t.contains("SLO FAIL"), "{t}");
        assert!(t.contains("FAIL  open loop  p99<=5ms "), "{t}");
        assert!(t.contains("PASS  open loop  error_rate<=5% "), "{t}");
        assert!(t.contains("measured 1.961%"), "{t}");
    }

    #[test]
    fn json_has_mode_and_flattened_figures() {
        let v = serde_json::to_value(report(None)).unwrap();
        assert_eq!(v["mode"], "open_loop");
        assert_eq!(v["requests"], 102);
        assert_eq!(v["errors_by_status"]["429"], 1);
        assert_eq!(v["target"]["protocol"], "oip");
        assert!(v["latency_ms"]["p99"].as_f64().unwrap() > 98.0);
        assert!(v.get("slo").is_none());
    }
}
