//! Tests of [`super::assess`] and [`super::render_text`].

use super::*;

/// (request id, row, time ms, version, x, P(1)).
type Row<'a> = (&'a str, i64, i64, &'a str, f64, f64);

fn table(rows: &[Row<'_>]) -> PlainTable {
    // (request id, row, time ms, version, x, p1)
    let s = |f: &dyn Fn(&Row<'_>) -> String| {
        PlainColumn::Str(rows.iter().map(|r| Some(f(r))).collect())
    };
    PlainTable {
        columns: vec![
            ("request_id".into(), s(&|r| r.0.to_string())),
            (
                "row".into(),
                PlainColumn::I64(rows.iter().map(|r| Some(r.1)).collect()),
            ),
            (
                "time".into(),
                PlainColumn::Timestamp(rows.iter().map(|r| Some(r.2 * 1_000)).collect()),
            ),
            ("model".into(), s(&|_| "m".to_string())),
            ("version".into(), s(&|r| r.3.to_string())),
            (
                "latency_us".into(),
                PlainColumn::I64(rows.iter().map(|r| Some(100 + r.2)).collect()),
            ),
            (
                "x".into(),
                PlainColumn::F64(rows.iter().map(|r| Some(r.4)).collect()),
            ),
            (
                "label".into(),
                PlainColumn::I64(rows.iter().map(|r| Some(i64::from(r.5 > 0.5))).collect()),
            ),
            (
                "probabilities_0".into(),
                PlainColumn::F64(rows.iter().map(|r| Some(1.0 - r.5)).collect()),
            ),
            (
                "probabilities_1".into(),
                PlainColumn::F64(rows.iter().map(|r| Some(r.5)).collect()),
            ),
        ],
    }
}

#[test]
fn labels_join_by_request_and_give_metrics_per_version_and_window() {
    // v1 ranks perfectly; v2 backwards.
    let t = table(&[
        ("a", 0, 1_000, "1", 0.0, 0.9),
        ("b", 0, 1_500, "1", 0.0, 0.2),
        ("c", 0, 2_500, "2", 0.0, 0.8),
        ("d", 0, 2_600, "2", 0.0, 0.1),
        ("e", 0, 2_700, "1", 0.0, 0.7),
        ("f", 0, 2_800, "1", 0.0, 0.4),
        ("g", 0, 2_900, "1", 0.0, 0.3),
        ("g", 1, 2_900, "1", 0.0, 0.6),
    ]);
    let feedback: HashMap<String, Value> = [
        ("a", Value::from(1)),
        ("b", Value::from(false)),
        ("c", Value::from("0")),
        ("d", Value::from(1.0)),
        ("e", Value::from("yes")),
        ("f", Value::from(0)),
        ("g", serde_json::json!([0, 1])),
        ("zz", Value::from(1)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let opts = HealthOptions {
        windows: Windows::Time(2_000),
        ..HealthOptions::default()
    };
    let r = assess(&t, &feedback, None, &opts, 0, 4_000).unwrap();
    assert_eq!(r.task, Some(TaskKind::Binary));
    assert_eq!((r.rows, r.requests), (8, 7));
    // "yes" is no label: counted, with the reason.
    assert_eq!(r.feedback.unusable, 1);
    assert!(
        r.feedback.problems[0].contains("\"yes\""),
        "{:?}",
        r.feedback.problems
    );
    assert_eq!(r.feedback.matched_rows, 7);
    let v1 = &r.versions[0];
    assert_eq!((v1.version.as_str(), v1.requests, v1.rows), ("1", 5, 6));
    let re1 = v1.realised.as_ref().unwrap();
    assert_eq!(re1.labelled, 5);
    assert_eq!(re1.metrics["auc"], 1.0);
    assert_eq!(re1.metrics["accuracy"], 1.0);
    let re2 = r.versions[1].realised.as_ref().unwrap();
    assert_eq!(re2.metrics["auc"], 0.0);
    assert_eq!(re2.metrics["accuracy"], 0.0);
    // Two windows: [0, 2 s) holds a and b; [2 s, 4 s) the rest.
    assert_eq!(r.windows.len(), 2);
    assert_eq!(r.windows[0].realised["1"].labelled, 2);
    assert_eq!(r.windows[1].realised["1"].labelled, 3);
    assert_eq!(r.windows[1].realised["2"].labelled, 2);
    // No reference: drift says why.
    assert!(r.drift.is_none() && r.drift_unavailable.is_some());
    let text = render_text("m", &r);
    assert!(
        text.contains("auc 1.0000") && text.contains("unusable"),
        "{text}"
    );
}

#[test]
fn one_label_for_a_request_of_several_rows_is_refused_not_guessed() {
    let t = table(&[
        ("g", 0, 1_000, "1", 0.0, 0.3),
        ("g", 1, 1_000, "1", 0.0, 0.6),
    ]);
    let feedback: HashMap<String, Value> = [("g".to_string(), Value::from(1))].into();
    let r = assess(&t, &feedback, None, &HealthOptions::default(), 0, 2_000).unwrap();
    assert_eq!((r.feedback.matched_rows, r.feedback.unusable), (0, 1));
    assert!(r.feedback.problems[0].contains("2 rows"));
    assert!(r.versions[0].realised.is_none());
    let feedback: HashMap<String, Value> = [("g".to_string(), serde_json::json!([1]))].into();
    let r = assess(&t, &feedback, None, &HealthOptions::default(), 0, 2_000).unwrap();
    assert!(r.feedback.problems[0].contains("1 labels for a request of 2 rows"));
}

#[test]
fn drift_against_a_reference_finds_the_onset_window() {
    // Reference: x uniform on [0, 1). Windows of 200 rows: two like it, then shifted.
    let reference_rows: Vec<f64> = (0..2_000).map(|i| (i as f64 * 0.618_034) % 1.0).collect();
    let rdf = kiln_data::plain::to_frame(&PlainTable {
        columns: vec![(
            "x".into(),
            PlainColumn::F64(reference_rows.iter().map(|&x| Some(x)).collect()),
        )],
    })
    .unwrap();
    let reference = kiln_data::profile::profile(&rdf).unwrap();
    let rows: Vec<(String, i64, f64, f64)> = (0..600)
        .map(|i| {
            let base = (i as f64 * 0.414_213) % 1.0;
            let x = if i >= 400 { base + 0.8 } else { base };
            (
                format!("r{i}"),
                i as i64 * 10,
                x,
                0.5 + (base - 0.5) * if i >= 400 { 0.1 } else { 0.9 },
            )
        })
        .collect();
    let refs: Vec<Row<'_>> = rows
        .iter()
        .map(|(id, t, x, p)| (id.as_str(), 0, *t, "1", *x, *p))
        .collect();
    let t = table(&refs);
    let opts = HealthOptions {
        windows: Windows::Rows(200),
        ..HealthOptions::default()
    };
    let r = assess(&t, &HashMap::new(), Some(&reference), &opts, 0, 6_000).unwrap();
    assert_eq!(r.compared_columns, ["x"]);
    assert_eq!(r.windows.len(), 3);
    let drifted: Vec<bool> = r
        .windows
        .iter()
        .map(|w| w.drift.as_ref().unwrap().dataset_drift)
        .collect();
    assert_eq!(drifted, [false, false, true]);
    assert_eq!(r.drift_onset, Some(2));
    // Predictions: the first window is the baseline; the third's spread collapsed.
    assert!(r.windows[0].prediction_drift.is_none());
    let p1 = r.windows[1].prediction_drift.as_ref().unwrap();
    let p2 = r.windows[2].prediction_drift.as_ref().unwrap();
    assert!(
        !p1.columns
            .iter()
            .any(|c| c.column == "probabilities_1" && c.drifted)
    );
    assert!(
        p2.columns
            .iter()
            .any(|c| c.column == "probabilities_1" && c.drifted),
        "{p2:?}"
    );
    // Columns the reference does not know are named in the reason.
    let other = kiln_data::profile::profile(
        &kiln_data::plain::to_frame(&PlainTable {
            columns: vec![("temp".into(), PlainColumn::F64(vec![Some(1.0); 10]))],
        })
        .unwrap(),
    )
    .unwrap();
    let r = assess(&t, &HashMap::new(), Some(&other), &opts, 0, 6_000).unwrap();
    let why = r.drift_unavailable.unwrap();
    assert!(why.contains("temp") && why.contains("x"), "{why}");
}
