//! The Polars compilation of transform expressions and specs computes, row by row, exactly
//! what the row evaluator (serving) computes.

use kiln_data::transform::{
    apply_steps, column_types, compile, fit_categories, polars_dtype, value_of,
};
use kiln_transform::time::{MICROS_PER_DAY, MICROS_PER_HOUR};
use kiln_transform::{Column as SpecColumn, DType, Expr, Step, TransformSpec, Value};
use polars::prelude::*;
use proptest::prelude::*;

/// Floats equal bit for bit, or both NaN; other values equal.
fn identical(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Float(x), Value::Float(y)) => {
            (x.is_nan() && y.is_nan()) || x.to_bits() == y.to_bits()
        }
        _ => a == b,
    }
}

const TS: i64 = 15_858 * MICROS_PER_DAY + 5 * MICROS_PER_HOUR + 47 * 60_000_000 + 12_000_000;

fn frame() -> DataFrame {
    let t = |v: Option<i64>| v;
    let mut df = df!(
        "i" => [Some(7i64), Some(-3), None, Some(i64::MAX), Some(i64::MIN), Some(0), Some(15), Some(1000), Some(-1), Some(2), Some(4_294_967_296)],
        "j" => [Some(2i64), Some(0), Some(5), Some(1), Some(-1), None, Some(-7), Some(3), Some(i64::MIN), Some(i64::MAX), Some(4_294_967_296)],
        "f" => [Some(2.5f64), Some(-0.5), None, Some(f64::NAN), Some(f64::INFINITY), Some(f64::NEG_INFINITY), Some(0.0), Some(-0.0), Some(1e300), Some(15.000001), Some(0.1)],
        "g" => [Some(3.0f64), Some(0.0), Some(1.5), Some(f64::NAN), Some(-2.0), None, Some(-0.0), Some(7.0), Some(1e-300), Some(0.3), Some(3.0)],
        "s" => [Some("JFK"), Some("LGA"), None, Some(""), Some("ewr"), Some("Straße ΣΑΣ"), Some("12"), Some(" 3.5 "), Some("2013-01-01"), Some("true"), Some("2013-01-01T05:00:00Z")],
        "c" => [Some("JFK"), Some("LGA"), Some("EWR"), None, Some("JFK"), Some("LGA"), Some("JFK"), Some("EWR"), None, Some("LGA"), Some("JFK")],
        "b" => [Some(true), Some(false), None, Some(true), Some(false), Some(true), None, Some(false), Some(true), Some(true), Some(false)],
        "d" => [Some(15706i32), Some(-1), None, Some(0), Some(11016), Some(-719_529), Some(15858), Some(20000), Some(-25_000), Some(15707), Some(2_932_896)],
        "t" => [t(Some(TS)), t(Some(-1)), None, Some(0), Some(TS + 3_600_000_123), Some(-86_400_000_000 * 400), Some(15706 * MICROS_PER_DAY), Some(i64::MAX / 2), Some(TS - 500), Some(1), Some(-MICROS_PER_HOUR)],
        "i32" => [Some(1i32), Some(-2), None, Some(i32::MAX), Some(i32::MIN), Some(5), Some(6), Some(7), Some(8), Some(9), Some(10)],
        "f32" => [Some(0.1f32), Some(-2.5), None, Some(f32::NAN), Some(1e30), Some(3.0), Some(0.0), Some(-0.0), Some(5.5), Some(6.25), Some(7.0)],
        "n" => [None::<f64>, None, None, None, None, None, None, None, None, None, None],
    )
    .unwrap();
    let casts = [
        col("c").cast(DataType::from_categories(Categories::global())),
        col("d").cast(DataType::Date),
        col("t").cast(DataType::Datetime(TimeUnit::Microseconds, None)),
        (col("t").cast(DataType::Int64) * lit(1000i64))
            .cast(DataType::Datetime(TimeUnit::Nanoseconds, None))
            .alias("tns"),
    ];
    df = df.lazy().with_columns(casts).collect().unwrap();
    df
}

/// The frame's columns read as Kiln values (normalised by compiling a bare column reference).
fn rows(df: &DataFrame) -> Vec<Vec<(String, Value)>> {
    let schema = df.schema().clone();
    let names: Vec<String> = schema.iter_names().map(|n| n.to_string()).collect();
    let exprs = names
        .iter()
        .map(|n| {
            compile(&Expr::column(n.as_str()), &schema)
                .unwrap()
                .alias(n.as_str())
        })
        .collect::<Vec<_>>();
    let norm = df.clone().lazy().select(exprs).collect().unwrap();
    (0..df.height())
        .map(|r| {
            names
                .iter()
                .map(|n| {
                    let v = value_of(&norm.column(n).unwrap().get(r).unwrap());
                    (n.clone(), v)
                })
                .collect()
        })
        .collect()
}

/// Evaluates `text` with Polars and with the row evaluator; panics on the first difference.
fn check(df: &DataFrame, text: &str) {
    let schema = df.schema().clone();
    let e = Expr::parse(text).unwrap_or_else(|err| panic!("{text}: {err}"));
    let compiled = compile(&e, &schema).unwrap_or_else(|err| panic!("{text}: {err}"));
    let out = df
        .clone()
        .lazy()
        .with_column(compiled.alias("__out"))
        .collect()
        .unwrap_or_else(|err| panic!("{text}: {err}"));
    let got = out
        .column("__out")
        .unwrap()
        .as_materialized_series()
        .clone();
    let resolved = e.resolve(&column_types(&schema)).unwrap();
    if let Some(t) = resolved.dtype {
        assert_eq!(got.dtype(), &polars_dtype(t), "{text}: type");
    }
    for (r, row) in rows(df).iter().enumerate() {
        let lookup = |name: &str| row.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
        let want = resolved
            .expr
            .eval(&lookup)
            .unwrap_or_else(|err| panic!("{text}: row {r}: {err}"));
        let have = value_of(&got.get(r).unwrap());
        assert!(
            identical(&have, &want),
            "{text}\n  resolved: {}\n  row {r}: polars {have:?}, row evaluator {want:?}\n  row: {row:?}",
            resolved.expr
        );
    }
}

const EXPRESSIONS: &[&str] = &[
    // columns and literals, normalised
    "i",
    "f",
    "s",
    "c",
    "b",
    "d",
    "t",
    "i32",
    "f32",
    "tns",
    "n",
    "1",
    "1.5",
    "'x'",
    "TRUE",
    "DATE '2013-01-01'",
    "TIMESTAMP '2013-01-01 05:00:00'",
    "CAST(NULL AS BIGINT)",
    "CAST(NULL AS DATE)",
    // arithmetic
    "i + j",
    "i - j",
    "i * j",
    "i % j",
    "i / j",
    "-i",
    "-f",
    "-(i32)",
    "i + 1",
    "i - 1",
    "1 - i",
    "i * 2",
    "2 * i",
    "i * -1",
    "i % 7",
    "i % -7",
    "i % 0",
    "7 % j",
    "i / 0",
    "i / 3",
    "f / 3",
    "3 / f",
    "f / g",
    "f / 0.0",
    "f % g",
    "f % 2",
    "2.5 % g",
    "f + g",
    "f - g",
    "f * g",
    "f + i",
    "i * f32",
    "f32 / 3",
    "i32 + i",
    "n + 1",
    "n * f",
    "i + NULL",
    "ln(2)",
    "7 / 2",
    "-(9223372036854775807) - 2",
    "abs(-9223372036854775807 - 1)",
    "NULL + NULL",
    "f + 0.1 - 0.1",
    // comparisons
    "i > j",
    "i = j",
    "i <> 0",
    "i <= 7",
    "f > g",
    "f = g",
    "f <> g",
    "f >= 0",
    "f < 1e300",
    "i > f",
    "i = f",
    "f = f",
    "f <> f",
    "n = n",
    "s < 'M'",
    "s = c",
    "c >= 'JFK'",
    "b > FALSE",
    "b = b",
    "d < t",
    "d = '2013-01-01'",
    "t >= '2013-06-02 05:47:12'",
    "tns = t",
    "d BETWEEN '1969-01-01' AND '2014-01-01'",
    "i BETWEEN j AND 10",
    "f NOT BETWEEN 0 AND 10",
    "i IN (7, 15, NULL)",
    "i NOT IN (7, 15)",
    "s IN ('JFK', 'LGA')",
    "c NOT IN ('JFK', NULL)",
    "f IN (2.5, 0.0)",
    "i IN (2.5, 7)",
    "d IN ('2013-01-01', '1969-12-31')",
    // logic
    "b AND i > 0",
    "b OR f > 1",
    "NOT b",
    "NOT (b AND f > 0)",
    "b AND NULL",
    "b OR NULL",
    "(i > 0) = b",
    "i IS NULL",
    "f IS NOT NULL",
    "n IS NULL",
    "s IS NULL OR c IS NULL",
    // case
    "CASE WHEN f > 1 THEN 'big' WHEN f > 0 THEN 'small' ELSE 'none' END",
    "CASE WHEN b THEN i END",
    "CASE WHEN b THEN i ELSE f END",
    "CASE WHEN i > 0 THEN d ELSE t END",
    "CASE c WHEN 'JFK' THEN 1 WHEN 'LGA' THEN 2 ELSE 0 END",
    "CASE WHEN NULL THEN 1 ELSE 2 END",
    "CASE WHEN b THEN NULL ELSE f END",
    // casts
    "CAST(i AS DOUBLE)",
    "CAST(f AS BIGINT)",
    "CAST(f32 AS INT)",
    "CAST(s AS INT)",
    "CAST(s AS DOUBLE)",
    "CAST(s AS BOOLEAN)",
    "CAST(s AS DATE)",
    "CAST(s AS TIMESTAMP)",
    "CAST(i AS VARCHAR)",
    "CAST(f AS VARCHAR)",
    "CAST(b AS VARCHAR)",
    "CAST(d AS VARCHAR)",
    "CAST(t AS VARCHAR)",
    "CAST(c AS VARCHAR)",
    "CAST(b AS INT)",
    "CAST(b AS DOUBLE)",
    "CAST(i AS BOOLEAN)",
    "CAST(f AS BOOLEAN)",
    "CAST(d AS INT)",
    "CAST(d AS DOUBLE)",
    "CAST(t AS BIGINT)",
    "CAST(t AS DOUBLE)",
    "CAST(d AS TIMESTAMP)",
    "CAST(t AS DATE)",
    "CAST(tns AS DATE)",
    "CAST(i AS DATE)",
    "CAST(i AS TIMESTAMP)",
    "CAST(n AS VARCHAR)",
    "CAST('3' AS INT) + i",
    // functions
    "abs(i)",
    "abs(f)",
    "abs(j)",
    "ln(f)",
    "ln(i)",
    "log10(f)",
    "log10(i)",
    "log1p(f)",
    "exp(g)",
    "exp(i)",
    "sqrt(f)",
    "sqrt(i)",
    "round(f)",
    "round(f, 2)",
    "round(g, 1)",
    "round(i, 3)",
    "floor(f)",
    "floor(i)",
    "ceil(g)",
    "ceil(f32)",
    "least(i, j)",
    "greatest(i, j, 0)",
    "least(f, g)",
    "greatest(f, g)",
    "least(i, f)",
    "greatest(s, c)",
    "least(d, t)",
    "greatest(b, NULL)",
    "coalesce(i, j)",
    "coalesce(f, g, 0)",
    "coalesce(n, f)",
    "coalesce(s, c, 'none')",
    "coalesce(i, f)",
    "lower(s)",
    "upper(s)",
    "lower(c)",
    "length(s)",
    "length(c)",
    "s || c",
    "s || '!'",
    "'<' || lower(s) || '>'",
    "year(d)",
    "month(d)",
    "day(d)",
    "quarter(d)",
    "day_of_week(d)",
    "day_of_year(d)",
    "year(t)",
    "month(t)",
    "day(t)",
    "hour(t)",
    "minute(t)",
    "second(t)",
    "day_of_week(t)",
    "day_of_year(t)",
    "quarter(t)",
    "hour(tns)",
    "EXTRACT(DOW FROM t)",
    "EXTRACT(YEAR FROM d)",
    // the brief's examples
    "f > 15",
    "CASE WHEN i > 1000 THEN 'long' ELSE 'short' END",
    "EXTRACT(HOUR FROM t)",
    "ln(i + 1)",
    "coalesce(f, 0)",
    "CAST(i32 AS DOUBLE)",
    "c IN ('JFK','LGA')",
    "f BETWEEN 0 AND 100",
    "g IS NULL",
    "NOT (b AND b)",
    "-i",
    "i % 7",
];

#[test]
fn polars_matches_the_row_evaluator() {
    let df = frame();
    for text in EXPRESSIONS {
        check(&df, text);
    }
}

#[test]
fn long_expressions_compile_to_linear_plans() {
    let df = frame();
    let sum = (0..60)
        .map(|k| if k % 2 == 0 { "i" } else { "j" })
        .collect::<Vec<_>>()
        .join(" + ");
    check(&df, &sum);
    let nested = (0..12).fold("f".to_string(), |acc, _| format!("abs(-({acc}) / 2 * g)"));
    check(&df, &nested);
}

#[test]
fn compile_errors_name_the_expression() {
    let df = frame();
    let schema = df.schema().clone();
    let err = compile(&Expr::parse("s + 1").unwrap(), &schema).unwrap_err();
    assert_eq!(
        err.to_string(),
        "expression `s + 1`: operator + needs numbers, found string and int"
    );
    let err = compile(&Expr::parse("nope > 1").unwrap(), &schema).unwrap_err();
    assert_eq!(
        err.to_string(),
        "expression `nope > 1`: unknown column `nope`"
    );
    let with_list = df
        .clone()
        .lazy()
        .with_column(concat_list([col("i")]).unwrap().alias("l"))
        .collect()
        .unwrap();
    let err = compile(&Expr::parse("l").unwrap(), &with_list.schema().clone()).unwrap_err();
    assert!(
        err.to_string()
            .contains("column `l` has type list[i64], which expressions cannot read"),
        "{err}"
    );
}

fn spec() -> TransformSpec {
    TransformSpec {
        inputs: vec![
            SpecColumn::new("f", DType::Float),
            SpecColumn::new("i", DType::Int),
            SpecColumn::new("c", DType::Categorical),
            SpecColumn::new("s", DType::String),
            SpecColumn::new("b", DType::Bool),
            SpecColumn::new("t", DType::Timestamp),
            // Int32 in the frame, declared float: read with CAST semantics.
            SpecColumn::new("i32", DType::Float),
        ],
        steps: vec![
            Step::Derive {
                name: "late".into(),
                expr: "f > 15".into(),
                dtype: DType::Bool,
            },
            Step::Derive {
                name: "log_i".into(),
                expr: "ln(i + 1)".into(),
                dtype: DType::Float,
            },
            Step::Derive {
                name: "hour".into(),
                expr: "EXTRACT(HOUR FROM t)".into(),
                dtype: DType::Int,
            },
            Step::Derive {
                name: "haul".into(),
                expr: "CASE WHEN i > 1000 THEN 'long' ELSE 'short' END".into(),
                dtype: DType::String,
            },
            Step::Derive {
                name: "ratio".into(),
                expr: "i / i32".into(),
                dtype: DType::Float,
            },
            Step::OneHot {
                column: "c".into(),
                categories: vec!["JFK".into(), "LGA".into()],
            },
            Step::OneHot {
                column: "b".into(),
                categories: vec!["true".into(), "false".into()],
            },
            Step::OneHot {
                column: "hour".into(),
                categories: vec!["5".into(), "0".into()],
            },
            Step::Ordinal {
                column: "s".into(),
                categories: vec!["LGA".into(), "JFK".into(), "".into()],
            },
            Step::Ordinal {
                column: "haul".into(),
                categories: vec!["short".into()],
            },
            Step::Ordinal {
                column: "i".into(),
                categories: vec!["7".into(), "0".into()],
            },
        ],
        outputs: [
            "late", "log_i", "hour", "ratio", "c=JFK", "c=LGA", "b=true", "b=false", "hour=5",
            "hour=0", "s", "haul", "i", "f", "b", "i32",
        ]
        .map(String::from)
        .to_vec(),
    }
}

#[test]
fn apply_steps_matches_apply_row() {
    let df = frame();
    let spec = spec();
    let out = apply_steps(df.clone().lazy(), &spec)
        .unwrap()
        .collect()
        .unwrap();
    assert_eq!(
        out.get_column_names()
            .iter()
            .map(|n| n.as_str())
            .collect::<Vec<_>>(),
        spec.outputs.iter().map(String::as_str).collect::<Vec<_>>()
    );
    for c in out.columns() {
        assert_eq!(c.dtype(), &DataType::Float64, "{}", c.name());
    }
    let compiled = spec.compile().unwrap();
    let raw = rows(&df);
    for (r, row) in raw.iter().enumerate() {
        let lookup = |name: &str| {
            let v = row
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())?;
            // Serving receives the declared type: i32 is declared float.
            Some(match (name, v) {
                ("i32", Value::Int(i)) => Value::Float(i as f64),
                (_, v) => v,
            })
        };
        let want = compiled.apply_row(&lookup).unwrap();
        for (k, name) in spec.outputs.iter().enumerate() {
            let have = out.column(name).unwrap().f64().unwrap().get(r).unwrap();
            let w = want[k];
            assert!(
                (have.is_nan() && w.is_nan()) || have.to_bits() == w.to_bits(),
                "row {r} output {name}: polars {have}, apply_row {w}"
            );
        }
    }
    // Spot checks: row 0 is f = 2.5, i = 7, c = JFK, s = JFK, b = true, t at 05:47.
    let row0 = |name: &str| out.column(name).unwrap().f64().unwrap().get(0).unwrap();
    assert_eq!(row0("late"), 0.0);
    assert_eq!(row0("log_i"), 8f64.ln());
    assert_eq!(row0("hour"), 5.0);
    assert_eq!(row0("c=JFK"), 1.0);
    assert_eq!(row0("b=true"), 1.0);
    assert_eq!(row0("hour=5"), 1.0);
    assert_eq!(row0("s"), 1.0);
    assert_eq!(row0("i"), 0.0);
    // Row 2 has nulls: ordinal gives NaN, one-hot zeros.
    let row2 = |name: &str| out.column(name).unwrap().f64().unwrap().get(2).unwrap();
    assert!(row2("s").is_nan());
    assert!(row2("f").is_nan());
    assert_eq!(row2("b=true") + row2("b=false"), 0.0);
}

#[test]
fn apply_steps_errors() {
    let df = frame();
    let mut spec = spec();
    spec.inputs.push(SpecColumn::new("absent", DType::Int));
    let Err(err) = apply_steps(df.clone().lazy(), &spec) else {
        panic!("an absent input must be an error")
    };
    assert_eq!(err.to_string(), "missing input column `absent`");
    let mut spec = self::spec();
    spec.outputs.push("s_raw".into());
    assert!(apply_steps(df.lazy(), &spec).is_err());
}

#[test]
fn fit_then_encode() {
    let df = frame();
    let cats = fit_categories(&df, "c", 10, 1).unwrap();
    assert_eq!(cats, ["JFK", "LGA", "EWR"]);
    let cats = fit_categories(&df, "s", 3, 1).unwrap();
    assert_eq!(cats, ["", " 3.5 ", "12"]);
    assert!(fit_categories(&df, "f", 3, 1).is_err());
}

// Property test: random small frames and random well-typed expressions.

fn num_leaf() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec!["i", "j", "f", "g", "NULL", "i32", "f32", "n"])
            .prop_map(String::from),
        (-20i64..20).prop_map(|v| v.to_string()),
        prop::sample::select(vec![
            "0.5",
            "-1.5",
            "3.0",
            "1e300",
            "9223372036854775807",
            "0"
        ])
        .prop_map(String::from),
        prop::sample::select(vec![
            "year(d)",
            "hour(t)",
            "length(s)",
            "day_of_week(t)",
            "CAST(s AS DOUBLE)",
            "CAST(s AS INT)"
        ])
        .prop_map(String::from),
    ]
}

fn num_expr() -> impl Strategy<Value = String> {
    num_leaf().prop_recursive(3, 16, 3, |inner| {
        let op = prop::sample::select(vec!["+", "-", "*", "/", "%"]);
        let func = prop::sample::select(vec![
            "abs", "ln", "log10", "log1p", "exp", "sqrt", "round", "floor", "ceil",
        ]);
        prop_oneof![
            (inner.clone(), op, inner.clone()).prop_map(|(a, op, b)| format!("({a} {op} {b})")),
            inner.clone().prop_map(|a| format!("-({a})")),
            (func, inner.clone()).prop_map(|(f, a)| format!("{f}({a})")),
            (inner.clone(), 0u32..4).prop_map(|(a, d)| format!("round({a}, {d})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("coalesce({a}, {b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("greatest({a}, {b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("least({a}, {b})")),
            (inner.clone(), inner.clone(), inner.clone())
                .prop_map(|(a, b, c)| format!("CASE WHEN {a} > {b} THEN {c} END")),
            inner.clone().prop_map(|a| format!("CAST({a} AS BIGINT)")),
        ]
    })
}

fn bool_expr() -> impl Strategy<Value = String> {
    let cmp = prop::sample::select(vec!["=", "<>", "<", "<=", ">", ">="]);
    let leaf = prop_oneof![
        (num_expr(), cmp, num_expr()).prop_map(|(a, op, b)| format!("{a} {op} {b}")),
        prop::sample::select(vec![
            "b",
            "NULL",
            "s = c",
            "d < t",
            "c IN ('JFK', NULL)",
            "s IS NULL"
        ])
        .prop_map(String::from),
        (num_expr(), num_expr(), num_expr())
            .prop_map(|(a, b, c)| format!("{a} BETWEEN {b} AND {c}")),
    ];
    leaf.prop_recursive(2, 8, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) AND ({b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) OR ({b})")),
            inner.clone().prop_map(|a| format!("NOT ({a})")),
        ]
    })
}

fn any_expr() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => num_expr(),
        2 => bool_expr(),
        1 => (bool_expr(), num_expr(), num_expr())
            .prop_map(|(c, a, b)| format!("CASE WHEN {c} THEN {a} ELSE {b} END")),
    ]
}

fn int_cell() -> impl Strategy<Value = Option<i64>> {
    prop_oneof![
        1 => Just(None),
        1 => prop::sample::select(vec![i64::MIN, i64::MAX, 0, -1, 1 << 40]).prop_map(Some),
        4 => (-50i64..50).prop_map(Some),
    ]
}

fn float_cell() -> impl Strategy<Value = Option<f64>> {
    prop_oneof![
        1 => Just(None),
        1 => prop::sample::select(vec![f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 0.0, -0.0, 1e300, 5e-324])
            .prop_map(Some),
        4 => (-100.0f64..100.0).prop_map(Some),
    ]
}

fn string_cell() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        1 => Just(None),
        4 => prop::sample::select(vec!["JFK", "LGA", "", "7", " -3 ", "2.5e1", "nan", "x", "ÄΣ"])
            .prop_map(|s| Some(s.to_string())),
    ]
}

#[derive(Debug, Clone)]
struct Row {
    i: Option<i64>,
    j: Option<i64>,
    f: Option<f64>,
    g: Option<f64>,
    s: Option<String>,
    c: Option<String>,
    b: Option<bool>,
    d: Option<i32>,
    t: Option<i64>,
}

fn row() -> impl Strategy<Value = Row> {
    (
        int_cell(),
        int_cell(),
        float_cell(),
        float_cell(),
        string_cell(),
        string_cell(),
        prop::option::of(any::<bool>()),
        prop::option::of(-100_000i32..100_000),
        prop::option::of(-4_000_000_000_000_000i64..4_000_000_000_000_000),
    )
        .prop_map(|(i, j, f, g, s, c, b, d, t)| Row {
            i,
            j,
            f,
            g,
            s,
            c,
            b,
            d,
            t,
        })
}

fn random_frame(rows: &[Row]) -> DataFrame {
    let pick = |f: &dyn Fn(&Row) -> Option<i64>| rows.iter().map(f).collect::<Vec<_>>();
    let pickf = |f: &dyn Fn(&Row) -> Option<f64>| rows.iter().map(f).collect::<Vec<_>>();
    let picks = |f: &dyn Fn(&Row) -> Option<String>| rows.iter().map(f).collect::<Vec<_>>();
    let df = df!(
        "i" => pick(&|r| r.i),
        "j" => pick(&|r| r.j),
        "f" => pickf(&|r| r.f),
        "g" => pickf(&|r| r.g),
        "s" => picks(&|r| r.s.clone()),
        "c" => picks(&|r| r.c.clone()),
        "b" => rows.iter().map(|r| r.b).collect::<Vec<_>>(),
        "d" => rows.iter().map(|r| r.d).collect::<Vec<_>>(),
        "t" => pick(&|r| r.t),
        "i32" => rows.iter().map(|r| r.i.and_then(|i| i32::try_from(i).ok())).collect::<Vec<_>>(),
        "f32" => rows.iter().map(|r| r.g.map(|g| g as f32)).collect::<Vec<_>>(),
        "n" => rows.iter().map(|_| None::<f64>).collect::<Vec<_>>(),
    )
    .unwrap();
    df.lazy()
        .with_columns([
            col("c").cast(DataType::from_categories(Categories::global())),
            col("d").cast(DataType::Date),
            col("t").cast(DataType::Datetime(TimeUnit::Microseconds, None)),
        ])
        .collect()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_frames_and_expressions(
        rows in prop::collection::vec(row(), 1..6),
        text in any_expr(),
    ) {
        check(&random_frame(&rows), &text);
    }
}
