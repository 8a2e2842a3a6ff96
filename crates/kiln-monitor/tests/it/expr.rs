//! The `when` language: evaluation per series, no-data semantics, selectors, errors.

use std::collections::BTreeMap;

use kiln_monitor::expr::{Expr, Truth};
use kiln_monitor::indicator::Labels;

fn values(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

fn truth(src: &str, labels: &Labels, vals: &BTreeMap<String, f64>) -> Truth {
    Expr::parse(src)
        .unwrap_or_else(|e| panic!("{src}: {e}"))
        .eval(labels, vals)
        .truth
}

#[test]
fn comparisons_arithmetic_and_logic() {
    let l = Labels::new();
    let v = values(&[
        ("p99_ms", 25.0),
        ("p50_ms", 4.0),
        ("error_rate", 0.02),
        ("request_rate", 150.0),
        ("drift.temp", 0.31),
        ("auc", 0.68),
    ]);
    let cases = [
        ("p99_ms > 20", Truth::True),
        ("p99_ms >= 25", Truth::True),
        ("p99_ms < 25", Truth::False),
        ("p99_ms <= 25", Truth::True),
        ("p99_ms == 25", Truth::True),
        ("p99_ms != 25", Truth::False),
        ("p99_ms > 5 * p50_ms", Truth::True),        // 25 > 20
        ("p99_ms > 5 * p50_ms + 6", Truth::False),   // precedence: 25 > 26
        ("p99_ms > 5 * (p50_ms + 6)", Truth::False), // 25 > 50
        ("p99_ms / p50_ms - 6 > 0", Truth::True),    // 6.25 - 6
        ("-p99_ms < -20", Truth::True),
        ("p99_ms - -5 == 30", Truth::True),
        ("error_rate > 0.01 and request_rate > 100", Truth::True),
        ("error_rate > 0.05 or drift.temp >= 0.3", Truth::True),
        ("not auc >= 0.7", Truth::True),
        ("not (error_rate > 0.01 and auc < 0.7)", Truth::False),
        (
            "error_rate > 0.05 or auc < 0.7 and p99_ms > 100",
            Truth::False,
        ), // and binds tighter
        (
            "(error_rate > 0.05 or auc < 0.7) and p99_ms > 20",
            Truth::True,
        ),
        ("error_rate * 100 > 1.5e0", Truth::True),
    ];
    for (src, want) in cases {
        assert_eq!(truth(src, &l, &v), want, "{src}");
    }
}

#[test]
fn missing_values_are_no_data_and_never_true() {
    let l = Labels::new();
    let v = values(&[("p99_ms", 25.0), ("error_rate", 0.0)]);
    let cases = [
        ("auc < 0.7", Truth::NoData),
        ("not auc < 0.7", Truth::NoData),
        ("auc + 1 > 0", Truth::NoData),
        // Kleene logic: a known false `and` anything is false, a known true `or` anything true.
        ("p99_ms > 100 and auc < 0.7", Truth::False),
        ("auc < 0.7 and p99_ms > 100", Truth::False),
        ("p99_ms > 20 and auc < 0.7", Truth::NoData),
        ("p99_ms > 20 or auc < 0.7", Truth::True),
        ("auc < 0.7 or p99_ms > 20", Truth::True),
        ("auc < 0.7 or p99_ms > 100", Truth::NoData),
        // Division by zero is no data, not infinity.
        ("p99_ms / error_rate > 1", Truth::NoData),
    ];
    for (src, want) in cases {
        assert_eq!(truth(src, &l, &v), want, "{src}");
    }
    // NaN in the snapshot is absent too.
    let nan = values(&[("auc", f64::NAN)]);
    assert_eq!(truth("auc < 0.7", &l, &nan), Truth::NoData);
}

#[test]
fn the_observed_value_is_the_left_side_of_the_deciding_comparison() {
    let l = Labels::new();
    let v = values(&[("p99_ms", 25.0), ("error_rate", 0.02)]);
    let e = Expr::parse("error_rate > 0.5 or p99_ms * 2 > 20").unwrap();
    let out = e.eval(&l, &v);
    assert_eq!(out.truth, Truth::True);
    assert_eq!(out.value, Some(50.0));
    let e = Expr::parse("p99_ms > 20 and error_rate > 0.01").unwrap();
    assert_eq!(e.eval(&l, &v).value, Some(25.0));
    let e = Expr::parse("p99_ms > 200").unwrap();
    assert_eq!(e.eval(&l, &v).value, Some(25.0));
    assert_eq!(e.eval(&l, &v).truth, Truth::False);
}

#[test]
fn selectors_restrict_an_indicator_to_matching_series() {
    let canary = Labels::from_pairs([("deployment", "flights"), ("version", "4")]);
    let stable = Labels::from_pairs([("deployment", "flights"), ("version", "3")]);
    let other = Labels::from_pairs([("deployment", "churn-eu"), ("version", "4")]);
    let v = values(&[("p99_ms", 25.0)]);
    let e = r#"p99_ms{version="4"} > 20"#;
    assert_eq!(truth(e, &canary, &v), Truth::True);
    assert_eq!(truth(e, &stable, &v), Truth::NoData);
    let e = r#"p99_ms{deployment=~"flight.*", version!="3",} > 20"#;
    assert_eq!(truth(e, &canary, &v), Truth::True);
    assert_eq!(truth(e, &stable, &v), Truth::NoData);
    assert_eq!(truth(e, &other, &v), Truth::NoData);
    let e = r#"p99_ms{deployment!~'churn-.*'} > 20"#;
    assert_eq!(truth(e, &other, &v), Truth::NoData);
    assert_eq!(truth(e, &stable, &v), Truth::True);
    // Missing labels match as the empty string.
    assert_eq!(truth(r#"p99_ms{team=""} > 20"#, &canary, &v), Truth::True);
}

#[test]
fn parse_errors_name_the_column_and_what_was_expected() {
    let cases: &[(&str, usize, &str, &str)] = &[
        (
            "p99_ms >",
            9,
            "an indicator, a number or `(`",
            "end of input",
        ),
        (
            "p99_ms > 20 and",
            16,
            "an indicator, a number or `(`",
            "end of input",
        ),
        ("p99_ms", 7, "a comparison operator", "end of input"),
        ("p99_ms 20", 8, "a comparison operator", "the number 20"),
        ("p99_ms > 20 > 30", 13, "`and`, `or` or end of input", "`>`"),
        ("p99_ms = 20", 8, "`==` to compare", "`=`"),
        ("(p99_ms > 20", 13, "`)`, `and` or `or`", "end of input"),
        ("(p99_ms + 1", 12, "`)` or an operator", "end of input"),
        (
            "p99_ms > 20ms",
            12,
            "an operator after the number",
            "`20ms`",
        ),
        ("p99_ms > 20 && auc < 1", 13, "`and`", "`&`"),
        ("p99_ms ! 20", 8, "`!=` or `!~`", "`!`"),
        (
            "p99_ms > $x",
            10,
            "an indicator, a number, an operator",
            "`$`",
        ),
        ("not p99_ms", 5, "a condition", "the indicator `p99_ms`"),
        (
            "p99_ms and auc > 1",
            1,
            "a condition",
            "the indicator `p99_ms`",
        ),
        (
            "(auc > 1) + 2 > 3",
            2,
            "a number or an indicator",
            "a comparison",
        ),
        (
            "p99_ms{version=4} > 1",
            16,
            "a quoted label value",
            "the number 4",
        ),
        (
            "p99_ms{version==\"4\"} > 1",
            15,
            "`=`, `!=`, `=~` or `!~`",
            "`==`",
        ),
        (
            "p99_ms{version=\"4\" team=\"a\"} > 1",
            20,
            "`,` or `}`",
            "`team`",
        ),
        (
            "p99_ms{version=~\"(\"} > 1",
            17,
            "a valid regular expression",
            "invalid regular expression",
        ),
        (
            "p99_ms{\"a\"=\"x\"} > 1",
            8,
            "a label name or `}`",
            "the string \"a\"",
        ),
        ("drift. > 1", 7, "a name after `.`", "` `"),
        (
            "p99_ms{version=\"4} > 1",
            23,
            "a closing \"",
            "end of input",
        ),
        ("", 1, "an indicator, a number or `(`", "end of input"),
    ];
    for (src, column, expected, found) in cases {
        let e = Expr::parse(src).expect_err(src);
        assert_eq!(e.column, *column, "{src}: {e}");
        assert!(e.expected.contains(expected), "{src}: {e}");
        assert!(e.found.contains(found), "{src}: {e}");
        let text = e.to_string();
        assert!(
            text.starts_with(&format!("column {column}: expected ")),
            "{text}"
        );
    }
}

#[test]
fn expressions_serialise_as_their_source_and_list_their_indicators() {
    let e: Expr =
        serde_json::from_str(r#""p99_ms{version=\"4\"} > 20 and drift.temp > 0.1""#).unwrap();
    assert_eq!(e.indicators(), vec!["p99_ms", "drift.temp"]);
    assert_eq!(
        serde_json::to_string(&e).unwrap(),
        r#""p99_ms{version=\"4\"} > 20 and drift.temp > 0.1""#
    );
    let err = serde_json::from_str::<Expr>(r#""p99_ms >""#).unwrap_err();
    assert!(err.to_string().contains("column 9"), "{err}");
    assert_eq!(
        "auc<0.7".parse::<Expr>().unwrap(),
        Expr::parse(" auc < 0.7 ").unwrap()
    );
}
