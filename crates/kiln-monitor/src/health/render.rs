//! The health report as text (`kiln monitor report`).

use std::collections::BTreeMap;

use super::HealthReport;

/// The report as text.
pub fn render_text(name: &str, r: &HealthReport) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let time = |ms: i64| {
        chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms).map_or(ms.to_string(), |t| {
            t.format("%Y-%m-%d %H:%M:%S").to_string()
        })
    };
    let _ = writeln!(
        s,
        "deployment {name}: {} requests, {} rows logged from {} to {} UTC",
        r.requests,
        r.rows,
        time(r.from_ms),
        time(r.to_ms)
    );
    let _ = writeln!(s, "\nversions:");
    for v in &r.versions {
        let ms = |x: Option<f64>| x.map_or("-".to_string(), |x| format!("{x:.2} ms"));
        let _ = write!(
            s,
            "  v{}: {} requests, {} rows, p50 {}, p99 {}",
            v.version,
            v.requests,
            v.rows,
            ms(v.p50_ms),
            ms(v.p99_ms)
        );
        match &v.realised {
            Some(re) => {
                let _ = writeln!(
                    s,
                    "; realised over {} labelled rows: {}",
                    re.labelled,
                    metrics_text(&re.metrics)
                );
            }
            None => {
                let _ = writeln!(s, "; no labels yet");
            }
        }
    }
    let _ = writeln!(
        s,
        "feedback: {} labels received, {} logged rows labelled, {} unusable",
        r.feedback.received, r.feedback.matched_rows, r.feedback.unusable
    );
    for p in &r.feedback.problems {
        let _ = writeln!(s, "  {p}");
    }
    let _ = writeln!(s, "\ndrift against the training profile:");
    match (&r.drift, &r.drift_unavailable) {
        (_, Some(why)) => {
            let _ = writeln!(s, "  not computed: {why}");
        }
        (None, None) => {
            let _ = writeln!(s, "  not computed: too few rows");
        }
        (Some(d), None) => {
            let _ = writeln!(
                s,
                "  whole range: {} of {} columns drifted ({:.0}%; dataset drift at {:.0}%): {}",
                d.drifted_columns,
                d.columns.len(),
                d.share_drifted * 100.0,
                d.drift_share * 100.0,
                if d.dataset_drift { "DRIFT" } else { "no drift" }
            );
            for c in &d.columns {
                let _ = writeln!(
                    s,
                    "    {:<24} {:<14} {:>9.4} (threshold {}){}",
                    c.column,
                    c.method.name(),
                    c.statistic,
                    c.threshold,
                    if c.drifted { "  DRIFTED" } else { "" }
                );
            }
        }
    }
    if r.windows.len() > 1 || r.windows.iter().any(|w| !w.realised.is_empty()) {
        let _ = writeln!(s, "\nwindows:");
        for w in &r.windows {
            let drift = match &w.drift {
                Some(d) => format!(
                    "{:.0}% drifted{}",
                    d.share_drifted * 100.0,
                    if d.drifted().is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", d.drifted().join(", "))
                    }
                ),
                None => "drift not compared".into(),
            };
            let pred = match &w.prediction_drift {
                Some(p) if p.columns.iter().any(|c| c.drifted) => {
                    ", predictions drifted".to_string()
                }
                Some(_) => ", predictions steady".into(),
                None => String::new(),
            };
            let onset = if r.drift_onset == Some(w.index) {
                "  ← drift starts"
            } else {
                ""
            };
            let _ = writeln!(
                s,
                "  [{}] {} → {}: {} rows, {drift}{pred}{onset}",
                w.index,
                time(w.start_ms),
                time(w.end_ms),
                w.rows
            );
            for (v, re) in &w.realised {
                let _ = writeln!(
                    s,
                    "      v{v}: {} labelled: {}",
                    re.labelled,
                    metrics_text(&re.metrics)
                );
            }
        }
    }
    s
}

fn metrics_text(m: &BTreeMap<String, f64>) -> String {
    let order = [
        "auc",
        "accuracy",
        "log_loss",
        "f1",
        "precision",
        "recall",
        "rmse",
        "mae",
        "r2",
    ];
    let parts: Vec<String> = order
        .iter()
        .filter_map(|k| m.get(*k).map(|v| format!("{k} {v:.4}")))
        .collect();
    if parts.is_empty() {
        "no metric defined".into()
    } else {
        parts.join(", ")
    }
}
