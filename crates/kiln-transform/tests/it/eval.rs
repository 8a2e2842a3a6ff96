use kiln_transform::time::{MICROS_PER_DAY, MICROS_PER_HOUR};
use kiln_transform::{Expr, TransformError, Value};

use crate::{ev, float, row_value};

const T: Value = Value::Bool(true);
const F: Value = Value::Bool(false);
const N: Value = Value::Null;

#[test]
fn three_valued_logic() {
    let cases = [
        ("TRUE AND TRUE", T),
        ("TRUE AND FALSE", F),
        ("TRUE AND NULL", N),
        ("FALSE AND NULL", F),
        ("NULL AND FALSE", F),
        ("NULL AND NULL", N),
        ("TRUE OR NULL", T),
        ("NULL OR TRUE", T),
        ("FALSE OR NULL", N),
        ("FALSE OR FALSE", F),
        ("NULL OR NULL", N),
        ("NOT NULL", N),
        ("NOT TRUE", F),
        ("b AND null_b", N),
        ("nb AND null_b", F),
        ("b OR null_b", T),
        ("NOT (b AND null_b)", N),
        ("null_i > 1", N),
        ("null_i = null_i", N),
        ("null_i IS NULL", T),
        ("null_i IS NOT NULL", F),
        ("i IS NULL", F),
        ("nan IS NULL", F),
        ("null_i + 1 IS NULL", T),
        ("null_s IN ('a', 'b')", N),
        ("s IN ('a', NULL)", N),
        ("s IN ('JFK', NULL)", T),
        ("s NOT IN ('a', NULL)", N),
        ("s NOT IN ('a', 'b')", T),
        ("c IN ('JFK', 'LGA')", T),
        ("i BETWEEN NULL AND 5", F),
        ("i BETWEEN NULL AND 10", N),
        ("i NOT BETWEEN 8 AND NULL", T),
        ("null_f BETWEEN 0 AND 1", N),
    ];
    for (text, want) in cases {
        assert_eq!(ev(text), want, "{text}");
    }
}

#[test]
fn case_expressions() {
    assert_eq!(
        ev("CASE WHEN f > 1 THEN 'big' ELSE 'small' END"),
        Value::Str("big".into())
    );
    // A null condition is not true; no ELSE gives null.
    assert_eq!(ev("CASE WHEN null_b THEN 1 END"), N);
    assert_eq!(ev("CASE WHEN null_b THEN 1 ELSE 2 END"), Value::Int(2));
    assert_eq!(
        ev("CASE WHEN nb THEN 1 WHEN b THEN 2 ELSE 3 END"),
        Value::Int(2)
    );
    // Branches unify: an int branch becomes a float when another is a float.
    assert_eq!(ev("CASE WHEN b THEN i ELSE 0.5 END"), Value::Float(7.0));
    assert_eq!(
        ev("CASE s WHEN 'JFK' THEN 1 WHEN 'LGA' THEN 2 END"),
        Value::Int(1)
    );
    assert_eq!(ev("CASE WHEN b THEN NULL ELSE 1 END"), N);
}

#[test]
fn arithmetic() {
    assert_eq!(ev("i + 1"), Value::Int(8));
    assert_eq!(ev("i - j"), Value::Int(10));
    assert_eq!(ev("i * j"), Value::Int(-21));
    assert_eq!(ev("i + f"), Value::Float(9.5));
    assert_eq!(ev("-i"), Value::Int(-7));
    assert_eq!(ev("-f"), Value::Float(-2.5));
    // `/` is float division, even between ints.
    assert_eq!(ev("i / 2"), Value::Float(3.5));
    assert_eq!(ev("7 / 7"), Value::Float(1.0));
    assert_eq!(float("i / 0"), f64::INFINITY);
    assert_eq!(float("-i / 0"), f64::NEG_INFINITY);
    assert!(float("zero / 0").is_nan());
    assert_eq!(float("f / zero"), f64::INFINITY);
    // Floored modulo.
    assert_eq!(ev("i % 3"), Value::Int(1));
    assert_eq!(ev("j % 2"), Value::Int(1));
    assert_eq!(ev("i % -2"), Value::Int(-1));
    assert_eq!(ev("i % 0"), N);
    assert_eq!(ev("f % 2"), Value::Float(0.5));
    assert_eq!(ev("g % 2"), Value::Float(1.5));
    assert!(float("f % 0").is_nan());
    // Overflow is null.
    assert_eq!(ev("big + 1"), N);
    assert_eq!(ev("big * 2"), N);
    assert_eq!(ev("-big - 2"), N);
    assert_eq!(ev("-big - 1"), Value::Int(i64::MIN));
    assert_eq!(ev("big + 1.0"), Value::Float(i64::MAX as f64 + 1.0));
    // Null propagates; NaN is a value.
    assert_eq!(ev("null_i * 0"), N);
    assert!(float("nan + 1").is_nan());
    assert_eq!(ev("'a' || s || 'b'"), Value::Str("aJFKb".into()));
    assert_eq!(ev("s || null_s"), N);
}

#[test]
fn comparisons() {
    assert_eq!(ev("i > 6.5"), T);
    assert_eq!(ev("i = 7.0"), T);
    assert_eq!(ev("i <> 7"), F);
    assert_eq!(ev("s < 'KAA'"), T);
    assert_eq!(ev("s >= c"), F);
    assert_eq!(ev("'a' < 'B'"), F); // bytewise: lower case sorts after upper case
    assert_eq!(ev("nb < b"), T);
    // NaN equals NaN and is above everything, as in Polars.
    assert_eq!(ev("nan = nan"), T);
    assert_eq!(ev("nan > CAST('inf' AS DOUBLE)"), T);
    assert_eq!(ev("nan <> 1"), T);
    assert_eq!(ev("-0.0 = 0.0"), T);
    // Dates and timestamps, with string literals read as dates.
    assert_eq!(ev("d = '2013-01-01'"), T);
    assert_eq!(ev("d < t"), T);
    assert_eq!(ev("t > '2013-06-02'"), T);
    assert_eq!(ev("t < '2013-06-02 05:47:13'"), T);
    assert_eq!(ev("d BETWEEN '2012-12-31' AND '2013-01-01'"), T);
    assert_eq!(ev("d IN ('2013-01-01', '2014-01-01')"), T);
    assert_eq!(ev("d = DATE '2013-01-01'"), T);
}

#[test]
fn casts() {
    assert_eq!(ev("CAST(i AS DOUBLE)"), Value::Float(7.0));
    assert_eq!(ev("CAST(f AS INT)"), Value::Int(2));
    assert_eq!(ev("CAST(g AS BIGINT)"), Value::Int(0));
    assert_eq!(ev("CAST(nan AS INT)"), N);
    assert_eq!(ev("CAST('12' AS INT)"), Value::Int(12));
    assert_eq!(ev("CAST('x12' AS INT)"), N);
    assert_eq!(ev("CAST(s AS DOUBLE)"), N);
    assert_eq!(ev("CAST('2.5' AS DOUBLE)"), Value::Float(2.5));
    assert_eq!(ev("CAST(i AS VARCHAR)"), Value::Str("7".into()));
    assert_eq!(ev("CAST(f AS VARCHAR)"), Value::Str("2.5".into()));
    assert_eq!(ev("CAST(b AS INT)"), Value::Int(1));
    assert_eq!(ev("CAST(b AS VARCHAR)"), Value::Str("true".into()));
    assert_eq!(ev("CAST(i AS BOOLEAN)"), T);
    assert_eq!(ev("CAST('no' AS BOOLEAN)"), F);
    assert_eq!(ev("CAST(d AS VARCHAR)"), Value::Str("2013-01-01".into()));
    assert_eq!(ev("CAST(d AS INT)"), Value::Int(15706));
    assert_eq!(
        ev("CAST(d AS TIMESTAMP)"),
        Value::Timestamp(15706 * MICROS_PER_DAY)
    );
    assert_eq!(ev("CAST(t AS DATE)"), Value::Date(15858));
    assert_eq!(ev("CAST('2013-01-01' AS DATE)"), Value::Date(15706));
    assert_eq!(
        ev("CAST('2013-01-01 01:00' AS TIMESTAMP)"),
        Value::Timestamp(15706 * MICROS_PER_DAY + MICROS_PER_HOUR)
    );
    assert_eq!(ev("CAST('soon' AS DATE)"), N);
    assert_eq!(ev("CAST(null_s AS DATE)"), N);
    assert_eq!(ev("CAST(NULL AS DOUBLE)"), N);
    assert_eq!(ev("CAST(c AS VARCHAR)"), Value::Str("LGA".into()));
}

#[test]
fn numeric_functions() {
    assert_eq!(ev("abs(j)"), Value::Int(3));
    assert_eq!(ev("abs(g)"), Value::Float(0.5));
    assert_eq!(ev("abs(-big - 1)"), N);
    assert_eq!(float("ln(f)"), 2.5f64.ln());
    assert_eq!(float("log(i)"), 7f64.ln());
    assert!(float("ln(g)").is_nan());
    assert_eq!(float("ln(zero)"), f64::NEG_INFINITY);
    assert_eq!(float("log10(1000)"), 3.0);
    assert_eq!(float("log1p(zero)"), 0.0);
    assert_eq!(float("exp(0)"), 1.0);
    assert_eq!(float("sqrt(16)"), 4.0);
    assert!(float("sqrt(g)").is_nan());
    assert_eq!(ev("round(f)"), Value::Float(3.0));
    assert_eq!(ev("round(g)"), Value::Float(-1.0));
    assert_eq!(ev("round(2.345, 2)"), Value::Float(2.35));
    assert_eq!(ev("round(i, 2)"), Value::Int(7));
    assert_eq!(ev("floor(g)"), Value::Float(-1.0));
    assert_eq!(ev("ceil(g)"), Value::Float(-0.0));
    assert_eq!(ev("floor(i)"), Value::Int(7));
    assert_eq!(ev("ceil(f)"), Value::Float(3.0));
    assert_eq!(ev("least(i, f, null_f)"), Value::Float(2.5));
    assert_eq!(ev("greatest(i, f, null_f)"), Value::Float(7.0));
    assert_eq!(ev("greatest(null_i, null_i)"), N);
    assert_eq!(ev("least(s, c)"), Value::Str("JFK".into()));
    assert_eq!(
        ev("greatest(nan, 1.0)").dtype(),
        Some(kiln_transform::DType::Float)
    );
    assert!(float("greatest(nan, 1.0)").is_nan());
    assert_eq!(ev("coalesce(null_i, j, i)"), Value::Int(-3));
    assert_eq!(ev("coalesce(null_f, i)"), Value::Float(7.0));
    assert_eq!(ev("coalesce(null_i, null_i)"), N);
    assert_eq!(ev("ifnull(null_s, 'x')"), Value::Str("x".into()));
    assert_eq!(ev("ln(null_f)"), N);
    assert_eq!(ev("abs(NULL)"), N);
}

#[test]
fn text_functions() {
    assert_eq!(ev("lower(s)"), Value::Str("jfk".into()));
    assert_eq!(ev("upper('straße')"), Value::Str("STRASSE".into()));
    assert_eq!(ev("lower('ΣΑΣ')"), Value::Str("σας".into()));
    assert_eq!(ev("length('héllo')"), Value::Int(5));
    assert_eq!(ev("length(c)"), Value::Int(3));
    assert_eq!(ev("length(null_s)"), N);
}

#[test]
fn date_functions() {
    assert_eq!(ev("year(d)"), Value::Int(2013));
    assert_eq!(ev("month(d)"), Value::Int(1));
    assert_eq!(ev("day(d)"), Value::Int(1));
    assert_eq!(ev("quarter(t)"), Value::Int(2));
    assert_eq!(ev("day_of_week(d)"), Value::Int(2)); // Tuesday
    assert_eq!(ev("day_of_week(t)"), Value::Int(7)); // Sunday
    assert_eq!(ev("EXTRACT(DOW FROM t)"), Value::Int(7));
    assert_eq!(ev("day_of_year(d)"), Value::Int(1));
    assert_eq!(ev("day_of_year(t)"), Value::Int(153));
    assert_eq!(ev("year(t)"), Value::Int(2013));
    assert_eq!(ev("month(t)"), Value::Int(6));
    assert_eq!(ev("day(t)"), Value::Int(2));
    assert_eq!(ev("hour(t)"), Value::Int(5));
    assert_eq!(ev("EXTRACT(HOUR FROM t)"), Value::Int(5));
    assert_eq!(ev("minute(t)"), Value::Int(47));
    assert_eq!(ev("second(t)"), Value::Int(12));
    assert_eq!(
        ev("EXTRACT(YEAR FROM d) * 100 + EXTRACT(MONTH FROM d)"),
        Value::Int(201301)
    );
    assert_eq!(ev("hour(null_t)"), N);
    assert_eq!(ev("year(null_d)"), N);
    // Before the epoch, the day is floored.
    assert_eq!(ev("hour(TIMESTAMP '1969-12-31 23:00:00')"), Value::Int(23));
    assert_eq!(ev("day(TIMESTAMP '1969-12-31 23:00:00')"), Value::Int(31));
    assert_eq!(ev("day_of_week(DATE '1969-12-28')"), Value::Int(7));
}

#[test]
fn unknown_columns_at_run_time() {
    let e = Expr::parse("nope + 1").unwrap();
    assert_eq!(
        e.eval(&row_value).unwrap_err(),
        TransformError::UnknownColumn {
            expr: "nope".into(),
            column: "nope".into()
        }
    );
}

#[test]
fn unresolved_evaluation_types_at_run_time() {
    // Without resolve, run-time types decide, with the same rules.
    let e = Expr::parse("i + f").unwrap();
    assert_eq!(e.eval(&row_value).unwrap(), Value::Float(9.5));
    let e = Expr::parse("s + 1").unwrap();
    let err = e.eval(&row_value).unwrap_err();
    assert_eq!(
        err.to_string(),
        "expression `s + 1`: operator + needs numbers, found string and int"
    );
    let e = Expr::parse("greatest(i, f)").unwrap();
    assert_eq!(e.eval(&row_value).unwrap(), Value::Float(7.0));
}
