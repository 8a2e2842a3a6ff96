//! The `metric` gates (absolute `min` / `max` bounds on the candidate's metrics) and the
//! `metric_relative` gates (`max_drop` / `max_rise` from the alias's holder, only between
//! evaluations on the same dataset digest).

use std::collections::BTreeMap;

use kiln_core::release::{GateResult, MetricGate};
use serde_json::json;

use super::{Facts, decimals, fail};
use crate::short;

/// "candidate has no metric X; it has: a, b".
fn missing(who: &str, metric: &str, metrics: &BTreeMap<String, f64>) -> String {
    let have: Vec<&str> = metrics.keys().map(String::as_str).collect();
    format!(
        "{who} has no metric {metric}; it has: {}",
        if have.is_empty() {
            "none".to_string()
        } else {
            have.join(", ")
        }
    )
}

pub(super) fn absolute(g: &MetricGate, cand: &Facts<'_>) -> Vec<GateResult> {
    let m = &g.metric;
    let mut out = vec![];
    for (bound, is_min) in [(g.min, true), (g.max, false)] {
        let Some(b) = bound else { continue };
        let kind = if is_min { "minimum" } else { "maximum" };
        let inputs = json!({"bound": kind, "dataset": cand.evaluation.as_ref().map(|e| &e.dataset),
            "digest": cand.evaluation.as_ref().map(|e| &e.digest)});
        let r = match &cand.metrics {
            Err(e) => fail("metric", m, inputs, format!("cannot check {m}: {e}")),
            Ok(ms) => match ms.get(m) {
                None => fail("metric", m, inputs, missing("candidate", m, ms)),
                Some(&v) => {
                    let passed = if is_min { v >= b } else { v <= b };
                    let d = decimals(&[v, b, v - b]);
                    let gap = (v - b).abs();
                    let message = match (passed, is_min) {
                        _ if !v.is_finite() => format!("{m} is {v}, not a finite number"),
                        (false, true) => {
                            format!("{m} {v:.d$} is below the minimum {b:.d$} by {gap:.d$}")
                        }
                        (false, false) => {
                            format!("{m} {v:.d$} is above the maximum {b:.d$} by {gap:.d$}")
                        }
                        (true, true) => {
                            format!("{m} {v:.d$} meets the minimum {b:.d$} (by {gap:.d$})")
                        }
                        (true, false) => {
                            format!("{m} {v:.d$} is within the maximum {b:.d$} (by {gap:.d$})")
                        }
                    };
                    GateResult {
                        gate: "metric".into(),
                        subject: m.clone(),
                        passed: passed && v.is_finite(),
                        value: Some(v),
                        threshold: Some(b),
                        inputs,
                        message,
                    }
                }
            },
        };
        out.push(r);
    }
    out
}

pub(super) fn relative(
    g: &MetricGate,
    alias: &str,
    cand: &Facts<'_>,
    holder: Option<&Facts<'_>>,
) -> Vec<GateResult> {
    let m = &g.metric;
    let mut out = vec![];
    for (allowed, is_drop) in [(g.max_drop, true), (g.max_rise, false)] {
        let Some(allowed) = allowed else { continue };
        let key = if is_drop { "max_drop" } else { "max_rise" };
        let Some(h) = holder else {
            out.push(GateResult {
                gate: "metric_relative".into(),
                subject: m.clone(),
                passed: true,
                value: None,
                threshold: None,
                inputs: json!({ key: allowed, "holder": null }),
                message: format!("no current holder of `{alias}`; nothing to compare {m} with"),
            });
            continue;
        };
        out.push(relative_one(m, key, allowed, is_drop, cand, h));
    }
    out
}

fn relative_one(
    m: &str,
    key: &str,
    allowed: f64,
    is_drop: bool,
    cand: &Facts<'_>,
    h: &Facts<'_>,
) -> GateResult {
    let hv = &h.mv.version;
    let mut inputs = json!({ key: allowed, "holder_version": hv });
    let nc = |why: String| format!("{m} is not comparable with the holder (version {hv}): {why}");
    let (ce, he) = match (&cand.metrics, &h.metrics, &cand.evaluation, &h.evaluation) {
        (Err(e), ..) => {
            return fail(
                "metric_relative",
                m,
                inputs,
                format!("cannot check {m}: {e}"),
            );
        }
        (_, Err(e), ..) => return fail("metric_relative", m, inputs, nc(e.clone())),
        (_, _, None, _) => {
            let why = format!(
                "the candidate ({}) records no evaluation dataset",
                cand.who()
            );
            return fail("metric_relative", m, inputs, nc(why));
        }
        (_, _, _, None) => {
            let why = "the holder records no evaluation dataset".to_string();
            return fail("metric_relative", m, inputs, nc(why));
        }
        (_, _, Some(c), Some(h)) => (c, h),
    };
    inputs["candidate_dataset"] = json!(format!("{}@{}", ce.dataset, ce.digest));
    inputs["holder_dataset"] = json!(format!("{}@{}", he.dataset, he.digest));
    if ce.digest != he.digest {
        let why = format!(
            "the candidate was evaluated on {}@{} and the holder on {}@{}",
            ce.dataset,
            short(&ce.digest),
            he.dataset,
            short(&he.digest)
        );
        return fail("metric_relative", m, inputs, nc(why));
    }
    let Some(&c) = ce.metrics.get(m) else {
        return fail(
            "metric_relative",
            m,
            inputs,
            missing("candidate", m, &ce.metrics),
        );
    };
    let Some(&hval) = he.metrics.get(m) else {
        let who = format!("the holder (version {hv})");
        return fail("metric_relative", m, inputs, missing(&who, m, &he.metrics));
    };
    inputs["candidate_value"] = json!(c);
    inputs["holder_value"] = json!(hval);
    let eps = 1e-12 * hval.abs().max(1.0);
    let (threshold, change, passed) = if is_drop {
        (hval - allowed, hval - c, c >= hval - allowed - eps)
    } else {
        (hval + allowed, c - hval, c <= hval + allowed + eps)
    };
    let passed = passed && c.is_finite() && hval.is_finite();
    let d = decimals(&[c, hval, allowed, change, change - allowed]);
    let (dir, word) = if is_drop {
        ("below", "drop")
    } else {
        ("above", "rise")
    };
    let message = if passed {
        format!(
            "{m} {c:.d$} against the holder's {hval:.d$} (version {hv}) is a change of {:+.d$}, within the allowed {word} {allowed:.d$}",
            c - hval
        )
    } else {
        format!(
            "{m} {c:.d$} is {change:.d$} {dir} the holder's {hval:.d$} (version {hv}), more than the allowed {word} {allowed:.d$} by {:.d$}",
            change - allowed
        )
    };
    GateResult {
        gate: "metric_relative".into(),
        subject: m.to_string(),
        passed,
        value: Some(c),
        threshold: Some(threshold),
        inputs,
        message,
    }
}
