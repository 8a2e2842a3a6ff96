use kiln_transform::{DType, Expr, TransformError};

use crate::row_type;

fn ty(text: &str) -> DType {
    Expr::parse(text)
        .unwrap()
        .output_type(&row_type)
        .unwrap_or_else(|err| panic!("{text}: {err}"))
}

fn type_error(text: &str) -> String {
    match Expr::parse(text).unwrap().output_type(&row_type) {
        Err(TransformError::Type { expr, message }) => {
            assert_eq!(expr, Expr::parse(text).unwrap().to_string());
            message
        }
        other => panic!("{text}: {other:?}"),
    }
}

#[test]
fn output_types() {
    assert_eq!(ty("i + j"), DType::Int);
    assert_eq!(ty("i + f"), DType::Float);
    assert_eq!(ty("i / j"), DType::Float);
    assert_eq!(ty("i % 2"), DType::Int);
    assert_eq!(ty("f > 1"), DType::Bool);
    assert_eq!(ty("c"), DType::String);
    assert_eq!(ty("lower(c)"), DType::String);
    assert_eq!(ty("CASE WHEN b THEN i ELSE f END"), DType::Float);
    assert_eq!(ty("CASE WHEN b THEN d ELSE t END"), DType::Timestamp);
    assert_eq!(ty("CASE WHEN b THEN NULL ELSE 'x' END"), DType::String);
    assert_eq!(ty("coalesce(null_i, 0)"), DType::Int);
    assert_eq!(ty("coalesce(null_i, 0.0)"), DType::Float);
    assert_eq!(ty("hour(t)"), DType::Int);
    assert_eq!(ty("ln(i)"), DType::Float);
    assert_eq!(ty("round(i)"), DType::Int);
    assert_eq!(ty("round(f, 1)"), DType::Float);
    assert_eq!(ty("abs(NULL)"), DType::Int);
    assert_eq!(ty("NULL + 1.5"), DType::Float);
    assert_eq!(ty("CAST(NULL AS DATE)"), DType::Date);
    assert_eq!(ty("s IN ('a', 'b')"), DType::Bool);
    assert_eq!(ty("length(s)"), DType::Int);
}

#[test]
fn type_errors_say_what_met() {
    assert_eq!(
        type_error("s + i"),
        "operator + needs numbers, found string and int"
    );
    assert_eq!(
        type_error("b * 2"),
        "operator * needs numbers, found bool and int"
    );
    assert_eq!(type_error("NOT i"), "NOT needs a boolean, found int");
    assert_eq!(type_error("-s"), "unary minus needs a number, found string");
    assert_eq!(
        type_error("i AND b"),
        "AND needs booleans, found int and bool"
    );
    assert_eq!(type_error("s = 1"), "= cannot compare string with int `1`");
    assert_eq!(type_error("d = 1"), "= cannot compare date with int `1`");
    assert_eq!(type_error("d = s"), "= cannot compare date with string `s`");
    assert_eq!(
        type_error("d > '2013-13-01'"),
        "'2013-13-01' is not a date (YYYY-MM-DD)"
    );
    assert_eq!(
        type_error("CASE WHEN b THEN 1 ELSE 'x' END"),
        "CASE mixes int and string"
    );
    assert_eq!(
        type_error("CASE WHEN i THEN 1 END"),
        "a CASE condition must be a boolean, found int in `i`"
    );
    assert_eq!(
        type_error("coalesce(i, s)"),
        "coalesce() mixes int and string"
    );
    assert_eq!(
        type_error("hour(d)"),
        "hour() needs a timestamp, found date"
    );
    assert_eq!(
        type_error("year(i)"),
        "year() needs a date or a timestamp, found int"
    );
    assert_eq!(type_error("ln(s)"), "ln() needs a number, found string");
    assert_eq!(type_error("lower(i)"), "lower() needs a string, found int");
    assert_eq!(type_error("CAST(f AS DATE)"), "cannot cast float to date");
    assert_eq!(
        type_error("s || 1"),
        "operator || needs strings, found string and int (CAST numbers to VARCHAR first)"
    );
    assert_eq!(
        type_error("s IN ('a', 1)"),
        "IN cannot compare string with int `1`"
    );
    assert_eq!(
        type_error("NULL"),
        "the expression is always null; give it a type with CAST(... AS DOUBLE)"
    );
}

#[test]
fn unknown_columns_are_named() {
    let err = Expr::parse("dep_delay + arr_delay")
        .unwrap()
        .output_type(&|c| (c == "dep_delay").then_some(DType::Float))
        .unwrap_err();
    assert_eq!(
        err,
        TransformError::UnknownColumn {
            expr: "dep_delay + arr_delay".into(),
            column: "arr_delay".into()
        }
    );
    assert_eq!(
        err.to_string(),
        "expression `dep_delay + arr_delay`: unknown column `arr_delay`"
    );
}

#[test]
fn resolve_makes_conversions_explicit() {
    let r = Expr::parse("i + f > 3")
        .unwrap()
        .resolve(&row_type)
        .unwrap();
    assert_eq!(r.expr.to_string(), "(CAST(i AS DOUBLE) + f) > 3.0");
    let r = Expr::parse("d = '2013-01-01'")
        .unwrap()
        .resolve(&row_type)
        .unwrap();
    assert_eq!(r.expr.to_string(), "d = DATE '2013-01-01'");
    let r = Expr::parse("CASE WHEN b THEN i ELSE 0.5 END")
        .unwrap()
        .resolve(&row_type)
        .unwrap();
    assert_eq!(
        r.expr.to_string(),
        "CASE WHEN b THEN CAST(i AS DOUBLE) ELSE 0.5 END"
    );
    // Resolving twice changes nothing.
    let again = r.expr.resolve(&row_type).unwrap();
    assert_eq!(again.expr, r.expr);
}
