//! Kiln's `when` expressions (`p99_ms > 20 and error_rate > 0.01`) translated into PromQL over
//! the series `kiln serve` exports on `/metrics`.
//!
//! Semantics kept:
//! - Kiln evaluates a rule once per series `{deployment, version}` (plus `slo` for burn
//!   rates); the PromQL aggregates `by (namespace, version)` over the model's replicas, and
//!   the whole expression is labelled `deployment="NAME"`.
//! - "No data" never fires, in Kiln or in Prometheus: a missing series drops out of a
//!   comparison, `and` and `or` follow Kleene logic on what is left, and `not` is pushed down
//!   to the comparisons (`not (a > 1)` is `a <= 1`), which keeps "no data" as no data.
//! - `{{ $value }}` is the left-hand side of the comparison that held, as in Kiln.

use std::fmt::Write as _;

use super::when::{Cond, MatchOp, Matcher, Num, parse, push_not};

/// How Kiln's indicators map to the data plane's Prometheus series for one deployment.
#[derive(Debug, Clone)]
pub struct Context<'a> {
    /// The served name (`kiln serve --model NAME=…`), the `model` label on `/metrics`.
    pub deployment: &'a str,
    /// The window of latency, error and rate indicators (`[monitor.NAME].window`).
    pub window_ms: i64,
    /// The deployment's SLOs, for `burn_rate_<window>{slo="…"}`.
    pub slos: &'a [super::Slo],
    /// Upper bounds of `kiln_inference_request_duration_seconds`, in seconds.
    pub buckets_s: &'a [f64],
}

/// Why a rule has no PromQL equivalent.
#[derive(Debug, Clone, PartialEq)]
pub struct Untranslatable(pub String);

pub const REQUESTS: &str = "kiln_inference_requests_total";
pub const SERVER_ERRORS: &str = "kiln_inference_server_errors_total";
pub const DURATION: &str = "kiln_inference_request_duration_seconds";
/// Every indicator is aggregated over the replicas of one deployment, per version.
const BY: &str = "namespace, version";

/// The PromQL of a `when` expression, labelled with the deployment.
pub fn translate(when: &str, cx: &Context<'_>) -> Result<String, Untranslatable> {
    let cond = parse(when).map_err(Untranslatable)?;
    let cond = push_not(cond, false);
    let body = cond_promql(&cond, cx)?;
    Ok(format!(
        "label_replace(\n  {},\n  \"deployment\", {}, \"\", \"\"\n)",
        body.replace('\n', "\n  "),
        quote(cx.deployment)
    ))
}

// ---------------------------------------------------------------------------------------------
// Translation

fn cond_promql(c: &Cond, cx: &Context<'_>) -> Result<String, Untranslatable> {
    Ok(match c {
        Cond::Cmp(op, a, b) => {
            if a.is_constant() && b.is_constant() {
                return Err(Untranslatable(
                    "the comparison has no indicator in it: it is always true or always false"
                        .into(),
                ));
            }
            format!(
                "{} {} {}",
                num_promql(a, cx)?,
                op.as_str(),
                num_promql(b, cx)?
            )
        }
        // One operand a line: the rule reads as the condition was written.
        Cond::And(a, b) => format!("({})\nand\n({})", cond_promql(a, cx)?, cond_promql(b, cx)?),
        Cond::Or(a, b) => format!("({})\nor\n({})", cond_promql(a, cx)?, cond_promql(b, cx)?),
        Cond::Not(_) => unreachable!("negations are pushed down to comparisons first"),
    })
}

fn num_promql(n: &Num, cx: &Context<'_>) -> Result<String, Untranslatable> {
    Ok(match n {
        Num::Lit(v) => number(*v),
        Num::Neg(a) => format!("-({})", num_promql(a, cx)?),
        Num::Arith(op, a, b) => {
            format!("({} {op} {})", num_promql(a, cx)?, num_promql(b, cx)?)
        }
        Num::Ind(name, matchers) => indicator(name, matchers, cx)?,
    })
}

/// The PromQL of one indicator on the deployment's series.
fn indicator(name: &str, matchers: &[Matcher], cx: &Context<'_>) -> Result<String, Untranslatable> {
    if let Some(window) = name.strip_prefix("burn_rate_") {
        let ms = parse_duration(window).ok_or_else(|| {
            Untranslatable(format!(
                "`{name}`: `{window}` is not a duration like 5m or 1h"
            ))
        })?;
        return burn_rate(name, ms, matchers, cx);
    }
    let window = duration(cx.window_ms);
    let sel = selector(cx.deployment, matchers, name)?;
    let sum_rate = |metric: &str| format!("sum by ({BY}) (rate({metric}{sel}[{window}]))");
    let quantile = |q: &str| {
        format!(
            "(1000 * histogram_quantile({q}, sum by ({BY}, le) (rate({DURATION}_bucket{sel}[{window}]))))"
        )
    };
    Ok(match name {
        "request_rate" => sum_rate(REQUESTS),
        "requests" => format!("sum by ({BY}) (increase({REQUESTS}{sel}[{window}]))"),
        "error_rate" => format!("({} / {})", sum_rate(SERVER_ERRORS), sum_rate(REQUESTS)),
        "p50_ms" => quantile("0.5"),
        "p90_ms" => quantile("0.9"),
        "p95_ms" => quantile("0.95"),
        "p99_ms" => quantile("0.99"),
        "drift_share" => return Err(not_exported(name, "drift")),
        _ if name.starts_with("drift.") => return Err(not_exported(name, "drift")),
        "auc" | "accuracy" | "rmse" | "labelled" => {
            return Err(not_exported(name, "realised performance from feedback"));
        }
        "error_budget_remaining" => {
            return Err(Untranslatable(format!(
                "`{name}` is counted by `kiln serve --monitor` over the whole SLO period and \
                 is not exported on /metrics"
            )));
        }
        _ => {
            return Err(Untranslatable(format!(
                "`{name}` is not an indicator with a series on /metrics (those are \
                 request_rate, requests, error_rate, p50_ms, p90_ms, p95_ms, p99_ms and \
                 burn_rate_<window>)"
            )));
        }
    })
}

fn not_exported(name: &str, what: &str) -> Untranslatable {
    Untranslatable(format!(
        "`{name}` ({what}) is computed by `kiln serve --monitor` from the prediction log and \
         is not exported on /metrics"
    ))
}

/// `burn_rate_<window>`: the bad share of requests over the window divided by the error
/// budget, per SLO of the deployment the `slo` matchers keep, each labelled `slo="…"`.
fn burn_rate(
    name: &str,
    window_ms: i64,
    matchers: &[Matcher],
    cx: &Context<'_>,
) -> Result<String, Untranslatable> {
    let (slo_m, rest): (Vec<&Matcher>, Vec<&Matcher>) =
        matchers.iter().partition(|m| m.label == "slo");
    let rest: Vec<Matcher> = rest.into_iter().cloned().collect();
    let mut parts = vec![];
    for slo in cx.slos {
        let mut keep = true;
        for m in &slo_m {
            keep &= match m.op {
                MatchOp::Eq => slo.name == m.value,
                MatchOp::Ne => slo.name != m.value,
                MatchOp::Re | MatchOp::NotRe => {
                    return Err(Untranslatable(format!(
                        "`{name}`: a regular expression on the `slo` label is not translated; \
                         name the SLO with `slo=\"…\"`"
                    )));
                }
            };
        }
        if !keep {
            continue;
        }
        let sel = selector(cx.deployment, &rest, name)?;
        let w = duration(window_ms);
        let sum_rate =
            |metric: &str, sel: &str| format!("sum by ({BY}) (rate({metric}{sel}[{w}]))");
        let (bad, budget) = match slo.objective {
            super::Objective::Availability { percent } => (
                format!(
                    "({} / {})",
                    sum_rate(SERVER_ERRORS, &sel),
                    sum_rate(REQUESTS, &sel)
                ),
                (100.0 - percent) / 100.0,
            ),
            super::Objective::Latency {
                percentile,
                threshold_ms,
            } => {
                // Kiln counts a request slow when it is above the largest bucket bound at or
                // below the threshold (whole buckets, never interpolated).
                let Some(bound) = cx
                    .buckets_s
                    .iter()
                    .copied()
                    .filter(|b| *b * 1e3 <= threshold_ms)
                    .reduce(f64::max)
                else {
                    return Err(Untranslatable(format!(
                        "SLO {}: {} ms is below the smallest latency bucket, so every request \
                         would count as slow",
                        slo.name,
                        number(threshold_ms)
                    )));
                };
                let le_sel = selector_with(cx.deployment, &rest, name, Some(bound))?;
                (
                    format!(
                        "(1 - {} / {})",
                        sum_rate(&format!("{DURATION}_bucket"), &le_sel),
                        sum_rate(&format!("{DURATION}_count"), &sel)
                    ),
                    (100.0 - percentile) / 100.0,
                )
            }
        };
        parts.push(format!(
            "label_replace({bad} / {}, \"slo\", {}, \"\", \"\")",
            number(budget),
            quote(&slo.name)
        ));
    }
    match parts.len() {
        0 => Err(Untranslatable(format!(
            "`{name}`: no SLO of [deploy.{}] matches its `slo` selector",
            cx.deployment
        ))),
        1 => Ok(parts.remove(0)),
        _ => Ok(format!("({})", parts.join(" or "))),
    }
}

fn selector(deployment: &str, matchers: &[Matcher], name: &str) -> Result<String, Untranslatable> {
    selector_with(deployment, matchers, name, None)
}

/// `{model="NAME", …}` from an indicator's matchers: `deployment` is the `model` label on
/// /metrics, `version` is `version`; `le` is added for a latency bucket.
fn selector_with(
    deployment: &str,
    matchers: &[Matcher],
    name: &str,
    le: Option<f64>,
) -> Result<String, Untranslatable> {
    let mut out = format!("{{model={}", quote(deployment));
    for m in matchers {
        let label = match m.label.as_str() {
            "deployment" => "model",
            "version" => "version",
            other => {
                return Err(Untranslatable(format!(
                    "`{name}`: the label `{other}` has no equivalent on /metrics (only \
                     `deployment` and `version`{} do)",
                    if name.starts_with("burn_rate_") {
                        ", and `slo` on burn rates"
                    } else {
                        ""
                    }
                )));
            }
        };
        let _ = write!(out, ", {label}{}{}", m.op.as_str(), quote(&m.value));
    }
    if let Some(bound) = le {
        // Prometheus 3 normalises `le="1"` to `le="1.0"`; accept both spellings.
        let text = number(bound);
        if bound.fract() == 0.0 {
            let _ = write!(out, ", le=~{}", quote(&format!("{text}(\\.0)?")));
        } else {
            let _ = write!(out, ", le={}", quote(&text));
        }
    }
    out.push('}');
    Ok(out)
}

/// A PromQL string literal.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A number as short as it reads: 12 significant digits, so `(100 - 99.9) / 100` is `0.001`.
pub fn number(v: f64) -> String {
    let rounded: f64 = format!("{v:.11e}").parse().unwrap_or(v);
    let s = format!("{rounded}");
    if s.contains('e') || s.len() <= 16 {
        s
    } else {
        format!("{rounded:e}")
    }
}

/// A Prometheus duration (`5m`, `1h30m`, `3d`, `250ms`) of a positive number of milliseconds.
pub fn duration(ms: i64) -> String {
    if ms <= 0 {
        return "0s".into();
    }
    let mut rest = ms;
    let mut out = String::new();
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ] {
        if rest >= size {
            let _ = write!(out, "{}{unit}", rest / size);
            rest %= size;
        }
    }
    out
}

/// `5m`, `1h`, `3d`, `1h30m`, `250ms`: the form Kiln writes burn-rate windows in.
pub fn parse_duration(s: &str) -> Option<i64> {
    let mut total: i64 = 0;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        if digits == 0 {
            return None;
        }
        let n: i64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (size, len) = if rest.starts_with("ms") {
            (1, 2)
        } else {
            match rest.chars().next()? {
                's' => (1_000, 1),
                'm' => (60_000, 1),
                'h' => (3_600_000, 1),
                'd' => (86_400_000, 1),
                'w' => (7 * 86_400_000, 1),
                _ => return None,
            }
        };
        total = total.checked_add(n.checked_mul(size)?)?;
        rest = &rest[len..];
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::super::{Objective, Slo};
    use super::*;

    const BUCKETS: [f64; 14] = [
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    ];

    fn cx(slos: &[Slo]) -> Context<'_> {
        Context {
            deployment: "delay",
            window_ms: 60_000,
            slos,
            buckets_s: &BUCKETS,
        }
    }

    fn slos() -> Vec<Slo> {
        vec![
            Slo {
                name: "delay-latency-p99".into(),
                objective: Objective::Latency {
                    percentile: 99.0,
                    threshold_ms: 20.0,
                },
            },
            Slo {
                name: "delay-availability".into(),
                objective: Objective::Availability { percent: 99.9 },
            },
        ]
    }

    #[test]
    fn k8s_latency_quantile_is_histogram_quantile_in_milliseconds() {
        let q = translate("p99_ms > 20", &cx(&[])).unwrap();
        assert_eq!(
            q,
            "label_replace(\n  (1000 * histogram_quantile(0.99, sum by (namespace, version, le) \
             (rate(kiln_inference_request_duration_seconds_bucket{model=\"delay\"}[1m])))) > 20,\n  \
             \"deployment\", \"delay\", \"\", \"\"\n)"
        );
    }

    #[test]
    fn k8s_error_rate_and_request_rate_with_selectors_and_logic() {
        let q = translate(
            "error_rate{version=\"4\"} > 0.01 and request_rate > 1",
            &cx(&[]),
        )
        .unwrap();
        assert!(q.contains(
            "(sum by (namespace, version) (rate(kiln_inference_server_errors_total{model=\"delay\", version=\"4\"}[1m])) / sum by (namespace, version) (rate(kiln_inference_requests_total{model=\"delay\", version=\"4\"}[1m]))) > 0.01"
        ), "{q}");
        assert!(q.contains(")\n  and\n  (sum by (namespace, version) (rate(kiln_inference_requests_total{model=\"delay\"}[1m])) > 1)"), "{q}");
    }

    #[test]
    fn k8s_not_is_pushed_onto_the_comparisons() {
        let q = translate("not (p50_ms > 5 or error_rate >= 0.1)", &cx(&[])).unwrap();
        assert!(q.contains(" <= 5)\n  and\n  ("), "{q}");
        assert!(q.contains(" < 0.1)"), "{q}");
        assert!(!q.contains("not"), "{q}");
    }

    #[test]
    fn k8s_deployment_label_maps_to_model_and_others_are_refused() {
        let q = translate("p90_ms{deployment=~\"del.*\"} > 1", &cx(&[])).unwrap();
        assert!(q.contains("{model=\"delay\", model=~\"del.*\"}"), "{q}");
        let e = translate("p90_ms{column=\"x\"} > 1", &cx(&[])).unwrap_err();
        assert!(e.0.contains("`column`"), "{e:?}");
    }

    #[test]
    fn k8s_indicators_without_series_are_refused_with_the_reason() {
        for (when, word) in [
            ("drift_share > 0.5", "prediction log"),
            ("drift.temp > 0.1", "prediction log"),
            ("auc < 0.7", "feedback"),
            ("error_budget_remaining < 0", "SLO period"),
            ("f1 < 0.7", "not an indicator"),
            ("1 > 0", "no indicator"),
        ] {
            let e = translate(when, &cx(&[])).unwrap_err();
            assert!(e.0.contains(word), "{when}: {e:?}");
        }
    }

    #[test]
    fn k8s_burn_rates_follow_the_slo_definition() {
        let s = slos();
        let q = translate(
            "burn_rate_1h{slo=\"delay-availability\"} > 14.4 and burn_rate_5m{slo=\"delay-availability\"} > 14.4",
            &cx(&s),
        )
        .unwrap();
        assert!(
            q.contains("rate(kiln_inference_server_errors_total{model=\"delay\"}[1h])"),
            "{q}"
        );
        assert!(q.contains("[5m]"), "{q}");
        assert!(
            q.contains(" / 0.001, \"slo\", \"delay-availability\""),
            "{q}"
        );
        assert!(!q.contains("latency"), "{q}");
        let q = translate("burn_rate_6h{slo=\"delay-latency-p99\"} > 6", &cx(&s)).unwrap();
        // 20 ms: the largest bound at or below it is 10 ms, as Kiln counts.
        assert!(
            q.contains("_bucket{model=\"delay\", le=\"0.01\"}[6h]"),
            "{q}"
        );
        assert!(q.contains("_count{model=\"delay\"}[6h]"), "{q}");
        assert!(q.contains(" / 0.01, \"slo\""), "{q}");
        // Without a selector: every SLO of the deployment, each with its label.
        let q = translate("burn_rate_3d > 1", &cx(&s)).unwrap();
        assert_eq!(q.matches("label_replace(").count(), 3, "{q}");
        assert!(translate("burn_rate_1h{slo=\"nope\"} > 1", &cx(&s)).is_err());
    }

    #[test]
    fn k8s_integral_bucket_bounds_match_both_spellings() {
        let s = vec![Slo {
            name: "slow".into(),
            objective: Objective::Latency {
                percentile: 99.0,
                threshold_ms: 1500.0,
            },
        }];
        let q = translate("burn_rate_1h > 1", &cx(&s)).unwrap();
        assert!(q.contains("le=~\"1(\\\\.0)?\""), "{q}");
    }

    #[test]
    fn k8s_durations_and_numbers() {
        assert_eq!(duration(300_000), "5m");
        assert_eq!(duration(90_000), "1m30s");
        assert_eq!(duration(3 * 86_400_000), "3d");
        assert_eq!(duration(1_500), "1s500ms");
        assert_eq!(parse_duration("1h30m"), Some(5_400_000));
        assert_eq!(parse_duration("250ms"), Some(250));
        assert_eq!(parse_duration("5x"), None);
        assert_eq!(number((100.0 - 99.9) / 100.0), "0.001");
        assert_eq!(number(14.4), "14.4");
        assert_eq!(number(20.0), "20");
        assert_eq!(number(1e-9), "0.000000001");
    }

    #[test]
    fn k8s_backquoted_names_and_arithmetic() {
        let e = translate("drift.`dep delay` > 0.1", &cx(&[])).unwrap_err();
        assert!(e.0.contains("`drift.dep delay`"), "{e:?}");
        let q = translate("p99_ms - p50_ms * 2 > -1", &cx(&[])).unwrap();
        assert!(q.contains(" - ((1000 * histogram_quantile(0.5"), "{q}");
        assert!(q.contains(" * 2)) > -(1)"), "{q}");
    }
}
