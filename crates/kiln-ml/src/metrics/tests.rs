use proptest::prelude::*;

use super::*;
use crate::native::finish;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

/// AUC by its definition over all (positive, negative) pairs.
fn pairwise_auc(positive: &[bool], s: &[f64]) -> Option<f64> {
    let (mut wins, mut pairs) = (0.0, 0.0);
    for i in 0..s.len() {
        for j in 0..s.len() {
            if positive[i] && !positive[j] {
                pairs += 1.0;
                if s[i] > s[j] {
                    wins += 1.0;
                } else if s[i] == s[j] {
                    wins += 0.5;
                }
            }
        }
    }
    (pairs > 0.0).then(|| wins / pairs)
}

fn binary_preds(p: &[f64]) -> Predictions {
    Predictions {
        task: Task::Binary,
        value: p.to_vec(),
        probabilities: p.iter().flat_map(|p| [1.0 - p, *p]).collect(),
        label: p.iter().map(|p| i64::from(*p > 0.5)).collect(),
    }
}

#[test]
fn auc_with_ties_matches_the_pair_count() {
    // positives: 0.8, 0.4, 0.4 ; negatives: 0.4, 0.1, 0.8
    let pos = [true, true, true, false, false, false];
    let s = [0.8, 0.4, 0.4, 0.4, 0.1, 0.8];
    // Pairs (9): 0.8 vs {0.4 win, 0.1 win, 0.8 tie} = 2.5; each 0.4 vs {0.4 tie, 0.1
    // win, 0.8 loss} = 1.5 → 2.5 + 1.5 + 1.5 = 5.5 / 9.
    assert!(close(auc(&pos, &s).unwrap(), 5.5 / 9.0));
    assert!(close(pairwise_auc(&pos, &s).unwrap(), 5.5 / 9.0));
}

#[test]
fn auc_is_none_with_one_class_and_one_when_perfect() {
    assert_eq!(auc(&[true, true], &[0.1, 0.9]), None);
    assert_eq!(auc(&[false, true], &[0.1, f64::NAN]), None);
    assert_eq!(
        auc(&[false, false, true, true], &[0.1, 0.2, 0.3, 0.9]),
        Some(1.0)
    );
    assert_eq!(
        auc(&[true, true, false, false], &[0.1, 0.2, 0.3, 0.9]),
        Some(0.0)
    );
    assert_eq!(auc(&[true, false], &[0.5, 0.5]), Some(0.5));
}

proptest! {
    #[test]
    fn auc_equals_the_pairwise_definition(
        rows in proptest::collection::vec((any::<bool>(), 0u8..6), 1..60)
    ) {
        let positive: Vec<bool> = rows.iter().map(|r| r.0).collect();
        // Few distinct scores so that ties are common.
        let scores: Vec<f64> = rows.iter().map(|r| f64::from(r.1) / 5.0).collect();
        let a = auc(&positive, &scores);
        let b = pairwise_auc(&positive, &scores);
        match (a, b) {
            (Some(a), Some(b)) => prop_assert!((a - b).abs() < 1e-12, "{a} vs {b}"),
            (None, None) => {}
            other => prop_assert!(false, "{other:?}"),
        }
    }
}

#[test]
fn binary_metrics_by_hand() {
    let y = [1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0];
    let p = [0.9, 0.7, 0.3, 0.6, 0.2, 0.1, 0.4, 0.8];
    let e = evaluate(Task::Binary, &y, &binary_preds(&p)).unwrap();
    // Predicted positive: 0.9 0.7 0.6 0.8 → TP 3 (0.9, 0.7, 0.8), FP 1 (0.6);
    // FN 1 (0.3); TN 3.
    let c = e.confusion.unwrap();
    assert_eq!(c.counts, vec![vec![3, 1], vec![1, 3]]);
    let m = &e.metrics;
    assert!(close(m["accuracy"], 6.0 / 8.0));
    assert!(close(m["precision"], 0.75));
    assert!(close(m["recall"], 0.75));
    assert!(close(m["f1"], 0.75));
    // AUC: positives 0.9 0.7 0.3 0.8, negatives 0.6 0.2 0.1 0.4: only 0.3 loses to 0.6
    // and 0.4 → 14 of 16.
    assert!(close(m["auc"], 14.0 / 16.0));
    let ll = -(0.9f64.ln()
        + 0.7f64.ln()
        + 0.3f64.ln()
        + 0.4f64.ln()
        + 0.8f64.ln()
        + 0.9f64.ln()
        + 0.6f64.ln()
        + 0.8f64.ln())
        / 8.0;
    assert!(close(m["log_loss"], ll));
    // Bins: [0.1]:0.1 y0 → |0-0.1|; [0.2]:0.2 y0 → 0.2; [0.3]:0.3 y1 → 0.7;
    // [0.4]:0.4 y0 → 0.4; [0.6]:0.6 y0 → 0.6; [0.7]:0.7 y1 → 0.3; [0.8]:0.8 y1 → 0.2;
    // [0.9]:0.9 y1 → 0.1. Each bin has one row: mean = 2.6 / 8.
    assert!(close(m["calibration_error"], 2.6 / 8.0));
    for k in m.keys() {
        assert!(is_valid_metric_key(k), "{k}");
    }
}

#[test]
fn log_loss_is_clipped() {
    let e = evaluate(Task::Binary, &[1.0, 0.0], &binary_preds(&[0.0, 1.0])).unwrap();
    // Both rows are clipped to ~1e-15 (1 − (1 − 1e-15) is not exactly 1e-15 in f64).
    let ll = e.metrics["log_loss"];
    assert!(
        ll.is_finite() && (ll - -(LOG_LOSS_EPS.ln())).abs() < 0.2,
        "{ll}"
    );
}

#[test]
fn threshold_moves_the_confusion() {
    let y = [1.0, 0.0, 1.0];
    let p = [0.4, 0.2, 0.9];
    let e = evaluate_with(
        Task::Binary,
        &y,
        &binary_preds(&p),
        &EvalOptions { threshold: 0.3 },
    )
    .unwrap();
    assert_eq!(e.metrics["recall"], 1.0);
    assert_eq!(e.metrics["accuracy"], 1.0);
}

#[test]
fn undefined_precision_is_left_out() {
    let e = evaluate(Task::Binary, &[0.0, 1.0], &binary_preds(&[0.1, 0.2])).unwrap();
    assert!(!e.metrics.contains_key("precision"));
    assert_eq!(e.metrics["recall"], 0.0);
    assert_eq!(e.metrics["f1"], 0.0);
}

#[test]
fn multiclass_by_hand() {
    let task = Task::Multiclass { classes: 3 };
    let raw = vec![
        // row scores (log-probabilities are fine: softmax of ln p gives p)
        0.7, 0.2, 0.1, // y 0 → 0
        0.1, 0.8, 0.1, // y 1 → 1
        0.2, 0.5, 0.3, // y 2 → 1
        0.3, 0.3, 0.4, // y 2 → 2
    ];
    let logp: Vec<f64> = raw.iter().map(|p: &f64| p.ln()).collect();
    let preds = finish(task, logp, 4);
    let y = [0.0, 1.0, 2.0, 2.0];
    let e = evaluate(task, &y, &preds).unwrap();
    let c = e.confusion.unwrap();
    assert_eq!(c.counts, vec![vec![1, 0, 0], vec![0, 1, 0], vec![0, 1, 1]]);
    let m = &e.metrics;
    assert!(close(m["accuracy"], 0.75));
    // precision: 1, 1/2, 1 → 5/6; recall: 1, 1, 1/2 → 5/6; f1: 1, 2/3, 2/3 → 7/9.
    assert!(close(m["precision"], 5.0 / 6.0));
    assert!(close(m["recall"], 5.0 / 6.0));
    assert!(close(m["f1"], 7.0 / 9.0));
    let ll = -(0.7f64.ln() + 0.8f64.ln() + 0.3f64.ln() + 0.4f64.ln()) / 4.0;
    assert!((m["log_loss"] - ll).abs() < 1e-9);
    // OvR AUCs: class 0: pos 0.7 vs 0.1 0.2 0.3 → 1; class 1: pos 0.8 vs 0.2 0.5 0.3 → 1;
    // class 2: pos 0.3 0.4 vs neg 0.1 0.1 → 1. Macro 1.
    assert!(close(m["auc"], 1.0));
}

#[test]
fn regression_by_hand() {
    let y = [1.0, 2.0, 3.0, 4.0];
    let p = [1.5, 2.0, 2.0, 5.0];
    let preds = finish(Task::Regression, p.to_vec(), 4);
    let e = evaluate(Task::Regression, &y, &preds).unwrap();
    // residuals -0.5 0 1 -1: SS 2.25, abs 2.5; SS_tot = 5.
    assert!(close(e.metrics["rmse"], (2.25f64 / 4.0).sqrt()));
    assert!(close(e.metrics["mae"], 2.5 / 4.0));
    assert!(close(e.metrics["r2"], 1.0 - 2.25 / 5.0));
    assert!(e.confusion.is_none());
}

#[test]
fn segments_report_what_they_can() {
    let y = [1.0, 0.0, 1.0, 1.0, 0.0];
    let p = [0.9, 0.2, 0.8, 0.3, 0.6];
    let seg = ["a", "a", "b", "b", "c"];
    let out = evaluate_segments(
        Task::Binary,
        &y,
        &binary_preds(&p),
        &seg,
        &EvalOptions::default(),
        2,
    )
    .unwrap();
    assert_eq!(out.len(), 3);
    assert_eq!((out[0].segment.as_str(), out[0].rows), ("a", 2));
    assert_eq!(out[0].metrics["auc"], 1.0);
    // b: one class → no AUC, still accuracy.
    assert!(!out[1].metrics.contains_key("auc"));
    assert_eq!(out[1].metrics["accuracy"], 0.5);
    // c: too few rows.
    assert_eq!(out[2].rows, 1);
    assert!(out[2].metrics.is_empty() && out[2].skipped.is_some());
}

#[test]
fn bad_inputs_are_errors() {
    let p = binary_preds(&[0.1, 0.2]);
    assert!(evaluate(Task::Binary, &[0.0], &p).is_err());
    let e = evaluate(Task::Binary, &[0.0, 2.0], &p)
        .unwrap_err()
        .to_string();
    assert!(e.contains("row 1"), "{e}");
    let nan = binary_preds(&[0.1, f64::NAN]);
    assert!(evaluate(Task::Binary, &[0.0, 1.0], &nan).is_err());
    assert!(evaluate(Task::Regression, &[0.0, 1.0], &p).is_err());
}

#[test]
fn metric_key_parts_are_valid() {
    for s in ["carrier=AA", "", "..", "a/b", "ünï cödé", "x..y"] {
        let k = format!("valid.segment.{}.auc", metric_key_part(s));
        assert!(is_valid_metric_key(&k), "{k}");
    }
    assert_eq!(metric_key_part("AA"), "AA");
}
