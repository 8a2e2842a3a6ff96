//! Property tests: random well-typed expressions parse, resolve and evaluate without errors,
//! and print back to text that means the same thing.

use kiln_transform::time::{format_timestamp, parse_timestamp};
use kiln_transform::{DType, Expr, Value};
use proptest::prelude::*;

use crate::{row_type, row_value};

fn num_leaf() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "i", "j", "big", "f", "g", "zero", "nan", "null_i", "null_f", "NULL"
        ])
        .prop_map(String::from),
        any::<i32>().prop_map(|v| v.to_string()),
        (-1e6f64..1e6).prop_map(|v| format!("{v:?}")),
        prop::sample::select(vec!["year(d)", "hour(t)", "length(s)", "day_of_week(t)"])
            .prop_map(String::from),
    ]
}

fn num_expr() -> impl Strategy<Value = String> {
    num_leaf().prop_recursive(4, 24, 3, |inner| {
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
            (inner.clone(), inner.clone(), inner.clone())
                .prop_map(|(a, b, c)| format!("greatest({a}, {b}, {c})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("least({a}, {b})")),
            (inner.clone(), inner.clone(), inner.clone())
                .prop_map(|(a, b, c)| format!("CASE WHEN {a} > {b} THEN {c} END")),
            (inner.clone(), inner.clone(), inner.clone(), inner.clone())
                .prop_map(|(a, b, c, d)| format!("CASE WHEN {a} <= {b} THEN {c} ELSE {d} END")),
            inner.clone().prop_map(|a| format!("CAST({a} AS BIGINT)")),
            inner.clone().prop_map(|a| format!("CAST({a} AS DOUBLE)")),
        ]
    })
}

fn bool_expr() -> impl Strategy<Value = String> {
    let cmp = prop::sample::select(vec!["=", "<>", "<", "<=", ">", ">="]);
    let leaf = prop_oneof![
        (num_expr(), cmp, num_expr()).prop_map(|(a, op, b)| format!("{a} {op} {b}")),
        prop::sample::select(vec!["b", "nb", "null_b", "TRUE", "FALSE", "s = c", "d < t"])
            .prop_map(String::from),
        num_expr().prop_map(|a| format!("{a} IS NULL")),
        (num_expr(), num_expr(), num_expr())
            .prop_map(|(a, b, c)| format!("{a} BETWEEN {b} AND {c}")),
        (num_expr(), num_expr(), num_expr()).prop_map(|(a, b, c)| format!("{a} NOT IN ({b}, {c})")),
    ];
    leaf.prop_recursive(3, 12, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) AND ({b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) OR ({b})")),
            inner.clone().prop_map(|a| format!("NOT ({a})")),
        ]
    })
}

fn any_expr() -> impl Strategy<Value = String> {
    prop_oneof![
        num_expr(),
        bool_expr(),
        (bool_expr(), num_expr(), num_expr())
            .prop_map(|(c, a, b)| format!("CASE WHEN {c} THEN {a} ELSE {b} END")),
    ]
}

fn eval_text(text: &str) -> (Value, Option<DType>) {
    let e = Expr::parse(text).unwrap_or_else(|err| panic!("{text}: {err}"));
    let r = e
        .resolve(&row_type)
        .unwrap_or_else(|err| panic!("{text}: {err}"));
    let v = r
        .expr
        .eval(&row_value)
        .unwrap_or_else(|err| panic!("{text}: {err}"));
    (v, r.dtype)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_expressions_evaluate(text in any_expr()) {
        let (v, t) = eval_text(&text);
        if let Some(vt) = v.dtype() {
            prop_assert_eq!(Some(vt), t, "{}", text);
        }
    }

    #[test]
    fn printing_round_trips(text in any_expr()) {
        let e = Expr::parse(&text).unwrap();
        let printed = e.to_string();
        let back = Expr::parse(&printed).unwrap_or_else(|err| panic!("{text} -> {printed}: {err}"));
        prop_assert_eq!(&back, &e, "{} -> {}", text, printed);
        let (a, _) = eval_text(&text);
        let (b, _) = eval_text(&printed);
        prop_assert!(a.same_as(&b), "{} = {:?} but {} = {:?}", text, a, printed, b);
        // The resolved form prints and parses back too.
        let resolved = e.resolve(&row_type).unwrap().expr;
        let (c, _) = eval_text(&resolved.to_string());
        prop_assert!(a.same_as(&c), "{} = {:?} but resolved {} = {:?}", text, a, resolved, c);
    }

    #[test]
    fn int_arithmetic_is_checked(a in any::<i64>(), b in any::<i64>()) {
        let row = |name: &str| match name {
            "a" => Some(Value::Int(a)),
            "b" => Some(Value::Int(b)),
            _ => None,
        };
        let ev = |text: &str| Expr::parse(text).unwrap().eval(&row).unwrap();
        let int = |v: Option<i64>| v.map_or(Value::Null, Value::Int);
        prop_assert_eq!(ev("a + b"), int(a.checked_add(b)));
        prop_assert_eq!(ev("a - b"), int(a.checked_sub(b)));
        prop_assert_eq!(ev("a * b"), int(a.checked_mul(b)));
        let m = ev("a % b");
        if b == 0 {
            prop_assert_eq!(m, Value::Null);
        } else {
            let Value::Int(m) = m else { panic!() };
            prop_assert!(m == 0 || (m < 0) == (b < 0));
            prop_assert!(m.unsigned_abs() < b.unsigned_abs());
            prop_assert_eq!((i128::from(a) - i128::from(m)) % i128::from(b), 0);
        }
    }

    #[test]
    fn timestamps_round_trip(t in -30_000_000_000_000_000i64..30_000_000_000_000_000) {
        prop_assert_eq!(parse_timestamp(&format_timestamp(t)), Some(t));
    }

    #[test]
    fn values_round_trip_through_json(v in prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::Int),
        any::<f64>().prop_map(Value::Float),
        ".*".prop_map(Value::Str),
        (-1_000_000i32..1_000_000).prop_map(Value::Date),
        (-30_000_000_000_000_000i64..30_000_000_000_000_000).prop_map(Value::Timestamp),
    ]) {
        let text = serde_json::to_string(&v).unwrap();
        let back: Value = serde_json::from_str(&text).unwrap();
        prop_assert!(back.same_as(&v), "{}", text);
    }
}
