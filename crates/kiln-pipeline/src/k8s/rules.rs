//! The PrometheusRule: `[monitor.NAME].alerts` and `[deploy.NAME].slo` burn-rate alerts in
//! PromQL, one group of each per deployment.

use serde_json::{Map, Value, json};

use super::promql::{self as expr, Context};
use super::{AlertRule, Alerting, Document, Options, Project};

pub fn prometheus_rule(
    project: &Project,
    opts: &Options,
    warnings: &mut Vec<String>,
) -> Option<Document> {
    let mut groups = vec![];
    let mut left_out = vec![];
    for a in &project.alerting {
        let cx = Context {
            deployment: &a.deployment,
            window_ms: a.window_ms,
            slos: &a.slos,
            buckets_s: &opts.latency_buckets_s,
        };
        for (suffix, rules, section, interval) in [
            ("alerts", &a.rules, "monitor", a.interval_ms),
            ("slo", &a.slo_rules, "deploy", None),
        ] {
            let mut out = vec![];
            for r in rules {
                match rule(r, &cx, opts) {
                    Ok(v) => out.push(v),
                    Err(expr::Untranslatable(why)) => {
                        let what = if section == "deploy" {
                            format!("[deploy.{}].slo rule {} ({})", a.deployment, r.name, r.when)
                        } else {
                            format!("[monitor.{}] alert {} ({})", a.deployment, r.name, r.when)
                        };
                        warnings.push(format!(
                            "{what} is left out of the PrometheusRule: {why}; it still runs in \
                             `kiln serve --monitor`"
                        ));
                        left_out.push(format!("{what}: {why}"));
                    }
                }
            }
            if out.is_empty() {
                continue;
            }
            let mut g = json!({ "name": group_name(a, suffix), "rules": out });
            if let Some(ms) = interval {
                g["interval"] = json!(expr::duration(ms));
            }
            groups.push(g);
        }
    }
    if groups.is_empty() && left_out.is_empty() {
        return None;
    }
    let mut comments = vec![
        "Kiln's alert rules and SLO burn-rate alerts over the data plane's /metrics. \
         Latency quantiles are interpolated within buckets here; `kiln serve --monitor` takes \
         the bucket's upper bound."
            .to_string(),
    ];
    if !left_out.is_empty() {
        comments.push("Left out (no Prometheus series):".into());
        comments.extend(left_out.iter().map(|l| format!("- {l}")));
    }
    let mut labels = Map::new();
    labels.insert("app.kubernetes.io/name".into(), json!("kiln"));
    labels.insert("app.kubernetes.io/instance".into(), json!(opts.prefix));
    labels.insert("app.kubernetes.io/component".into(), json!("alerts"));
    labels.insert("app.kubernetes.io/managed-by".into(), json!("kiln"));
    for (k, v) in &opts.selector_labels {
        labels.insert(k.clone(), json!(v));
    }
    let mut meta = json!({ "name": format!("{}-rules", opts.prefix), "labels": labels });
    if let Some(ns) = &opts.namespace {
        meta["namespace"] = json!(ns);
    }
    if groups.is_empty() {
        // Every rule was left out: the comment says which and why, with no object to apply.
        warnings.push("no alert rule could be translated: no PrometheusRule is rendered".into());
        return Some(Document {
            file: "monitoring.yaml".into(),
            comments,
            value: Value::Null,
        });
    }
    Some(Document {
        file: "monitoring.yaml".into(),
        comments,
        value: json!({
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "PrometheusRule",
            "metadata": meta,
            "spec": { "groups": groups },
        }),
    })
}

fn group_name(a: &Alerting, suffix: &str) -> String {
    format!("kiln.{}.{suffix}", a.deployment)
}

fn rule(r: &AlertRule, cx: &Context<'_>, opts: &Options) -> Result<Value, expr::Untranslatable> {
    let promql = expr::translate(&r.when, cx)?;
    let mut labels = Map::new();
    for (k, v) in &r.labels {
        labels.insert(k.clone(), json!(v));
    }
    labels.insert("severity".into(), json!(r.severity));
    let mut annotations = Map::new();
    for (k, v) in &r.annotations {
        annotations.insert(k.clone(), json!(v));
    }
    if let Some(s) = &r.summary {
        annotations.insert("summary".into(), json!(s));
    }
    if let Some(d) = &r.description {
        annotations.insert("description".into(), json!(d));
    }
    if let Some(rb) = &r.runbook {
        annotations.insert("runbook_url".into(), json!(runbook_url(rb, opts)));
    }
    annotations.insert("kiln_when".into(), json!(r.when));
    let mut v = json!({
        "alert": r.name,
        "expr": promql,
        "labels": labels,
        "annotations": annotations,
    });
    if r.for_ms > 0 {
        v["for"] = json!(expr::duration(r.for_ms));
    }
    Ok(v)
}

/// A runbook path joined to `--runbook-base-url`; URLs and paths without a base stay as
/// written.
fn runbook_url(runbook: &str, opts: &Options) -> String {
    let is_url = runbook.contains("://");
    match &opts.runbook_base_url {
        Some(base) if !is_url => format!(
            "{}/{}",
            base.trim_end_matches('/'),
            runbook.trim_start_matches("./").trim_start_matches('/')
        ),
        _ => runbook.to_string(),
    }
}
