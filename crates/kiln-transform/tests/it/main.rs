//! The transform crate's integration tests: parsing, typing, evaluation, specs.

mod eval;
mod parse;
mod props;
mod spec;
mod types;

use kiln_transform::time::{MICROS_PER_DAY, MICROS_PER_HOUR};
use kiln_transform::{DType, Expr, Value};

/// The test row: one column of each type, plus nulls and a NaN.
pub fn row_value(name: &str) -> Option<Value> {
    Some(match name {
        "i" => Value::Int(7),
        "j" => Value::Int(-3),
        "big" => Value::Int(i64::MAX),
        "f" => Value::Float(2.5),
        "g" => Value::Float(-0.5),
        "zero" => Value::Float(0.0),
        "nan" => Value::Float(f64::NAN),
        "s" => Value::Str("JFK".into()),
        "c" => Value::Str("LGA".into()),
        "b" => Value::Bool(true),
        "nb" => Value::Bool(false),
        // 2013-01-01 (a Tuesday)
        "d" => Value::Date(15706),
        // 2013-06-02 05:47:12 (a Sunday)
        "t" => Value::Timestamp(
            15858 * MICROS_PER_DAY + 5 * MICROS_PER_HOUR + 47 * 60_000_000 + 12_000_000,
        ),
        "null_i" | "null_f" | "null_s" | "null_b" | "null_d" | "null_t" => Value::Null,
        _ => return None,
    })
}

pub fn row_type(name: &str) -> Option<DType> {
    Some(match name {
        "i" | "j" | "big" | "null_i" => DType::Int,
        "f" | "g" | "zero" | "nan" | "null_f" => DType::Float,
        "s" | "null_s" => DType::String,
        "c" => DType::Categorical,
        "b" | "nb" | "null_b" => DType::Bool,
        "d" | "null_d" => DType::Date,
        "t" | "null_t" => DType::Timestamp,
        _ => return None,
    })
}

/// Parses, resolves against the test row's types and evaluates; also checks that the
/// unresolved expression evaluates to the same value.
pub fn ev(text: &str) -> Value {
    let e = Expr::parse(text).unwrap_or_else(|err| panic!("{text}: {err}"));
    let resolved = e
        .resolve(&row_type)
        .unwrap_or_else(|err| panic!("{text}: {err}"));
    let v = resolved
        .expr
        .eval(&row_value)
        .unwrap_or_else(|err| panic!("{text}: {err}"));
    if let (Some(t), Some(vt)) = (resolved.dtype, v.dtype()) {
        let t = if t == DType::Categorical {
            DType::String
        } else {
            t
        };
        assert_eq!(t, vt, "{text}: declared {t}, evaluated {v:?}");
    }
    v
}

pub fn float(text: &str) -> f64 {
    match ev(text) {
        Value::Float(x) => x,
        other => panic!("{text}: expected a float, got {other:?}"),
    }
}
