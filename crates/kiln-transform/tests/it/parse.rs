use kiln_transform::{BinaryOp, DType, Expr, Function, TransformError, UnaryOp, Value};

fn col(name: &str) -> Box<Expr> {
    Box::new(Expr::column(name))
}

fn lit(v: Value) -> Box<Expr> {
    Box::new(Expr::Literal(v))
}

#[test]
fn parses_the_examples() {
    assert_eq!(
        Expr::parse("dep_delay > 15").unwrap(),
        Expr::Binary {
            op: BinaryOp::Gt,
            left: col("dep_delay"),
            right: lit(Value::Int(15)),
        }
    );
    assert_eq!(
        Expr::parse("CASE WHEN distance > 1000 THEN 'long' ELSE 'short' END").unwrap(),
        Expr::Case {
            branches: vec![(
                Expr::Binary {
                    op: BinaryOp::Gt,
                    left: col("distance"),
                    right: lit(Value::Int(1000)),
                },
                Expr::Literal(Value::Str("long".into()))
            )],
            otherwise: Some(lit(Value::Str("short".into()))),
        }
    );
    let hour = Expr::Func {
        name: Function::Hour,
        args: vec![Expr::column("time_hour")],
    };
    assert_eq!(Expr::parse("EXTRACT(HOUR FROM time_hour)").unwrap(), hour);
    assert_eq!(Expr::parse("hour(time_hour)").unwrap(), hour);
    assert_eq!(Expr::parse("HOUR(time_hour)").unwrap(), hour);
    assert_eq!(
        Expr::parse("ln(distance + 1)").unwrap(),
        Expr::Func {
            name: Function::Ln,
            args: vec![Expr::Binary {
                op: BinaryOp::Add,
                left: col("distance"),
                right: lit(Value::Int(1)),
            }],
        }
    );
    assert_eq!(
        Expr::parse("coalesce(dep_delay, 0)").unwrap(),
        Expr::Func {
            name: Function::Coalesce,
            args: vec![Expr::column("dep_delay"), Expr::Literal(Value::Int(0))],
        }
    );
    assert_eq!(
        Expr::parse("CAST(year AS DOUBLE)").unwrap(),
        Expr::Cast {
            expr: col("year"),
            to: DType::Float,
        }
    );
    assert_eq!(
        Expr::parse("origin IN ('JFK','LGA')").unwrap(),
        Expr::InList {
            expr: col("origin"),
            list: vec![
                Expr::Literal(Value::Str("JFK".into())),
                Expr::Literal(Value::Str("LGA".into()))
            ],
            negated: false,
        }
    );
    assert_eq!(
        Expr::parse("temp NOT BETWEEN 0 AND 100").unwrap(),
        Expr::Between {
            expr: col("temp"),
            low: lit(Value::Int(0)),
            high: lit(Value::Int(100)),
            negated: true,
        }
    );
    assert_eq!(
        Expr::parse("wind_speed IS NULL").unwrap(),
        Expr::IsNull(col("wind_speed"))
    );
    assert_eq!(
        Expr::parse("NOT (a AND b)").unwrap(),
        Expr::Unary {
            op: UnaryOp::Not,
            expr: Box::new(Expr::Binary {
                op: BinaryOp::And,
                left: col("a"),
                right: col("b"),
            }),
        }
    );
    assert_eq!(
        Expr::parse("-x").unwrap(),
        Expr::Unary {
            op: UnaryOp::Neg,
            expr: col("x"),
        }
    );
    assert_eq!(
        Expr::parse("x % 7").unwrap(),
        Expr::Binary {
            op: BinaryOp::Mod,
            left: col("x"),
            right: lit(Value::Int(7)),
        }
    );
}

#[test]
fn literals() {
    let one = |text: &str| match Expr::parse(text).unwrap() {
        Expr::Literal(v) => v,
        other => panic!("{text}: {other:?}"),
    };
    assert_eq!(one("-5"), Value::Int(-5));
    assert_eq!(one("1.5"), Value::Float(1.5));
    assert_eq!(one("1e3"), Value::Float(1000.0));
    assert_eq!(one("-2.5"), Value::Float(-2.5));
    assert_eq!(one("99999999999999999999"), Value::Float(1e20));
    assert_eq!(one("'it''s'"), Value::Str("it's".into()));
    assert_eq!(one("TRUE"), Value::Bool(true));
    assert_eq!(one("false"), Value::Bool(false));
    assert_eq!(one("NULL"), Value::Null);
    assert_eq!(one("DATE '2013-01-01'"), Value::Date(15706));
    assert_eq!(
        one("TIMESTAMP '1970-01-01 00:00:01'"),
        Value::Timestamp(1_000_000)
    );
}

#[test]
fn precedence_and_forms() {
    // * binds tighter than +, AND tighter than OR.
    let e = Expr::parse("a + b * c").unwrap();
    assert!(matches!(
        e,
        Expr::Binary {
            op: BinaryOp::Add,
            ..
        }
    ));
    let e = Expr::parse("a OR b AND c").unwrap();
    assert!(matches!(
        e,
        Expr::Binary {
            op: BinaryOp::Or,
            ..
        }
    ));
    // The simple CASE compares the operand.
    let e = Expr::parse("CASE origin WHEN 'JFK' THEN 1 ELSE 0 END").unwrap();
    let Expr::Case { branches, .. } = e else {
        panic!()
    };
    assert!(matches!(
        branches[0].0,
        Expr::Binary {
            op: BinaryOp::Eq,
            ..
        }
    ));
    // Quoted identifiers keep their case and may hold anything.
    assert_eq!(
        Expr::parse("\"Dep Delay\" + 1").unwrap().columns(),
        ["Dep Delay".to_string()].into()
    );
    // Keywords are usable as column names.
    assert_eq!(
        Expr::parse("year * 12 + month").unwrap().columns(),
        ["month".to_string(), "year".to_string()].into()
    );
    // Aliases, casts.
    assert_eq!(
        Expr::parse("LOG(x)").unwrap(),
        Expr::parse("ln(x)").unwrap()
    );
    assert_eq!(
        Expr::parse("x::int").unwrap(),
        Expr::parse("CAST(x AS BIGINT)").unwrap()
    );
    assert_eq!(
        Expr::parse("TRY_CAST(x AS VARCHAR)").unwrap(),
        Expr::parse("CAST(x AS TEXT)").unwrap()
    );
    assert_eq!(
        Expr::parse("EXTRACT(DOW FROM t)").unwrap(),
        Expr::parse("day_of_week(t)").unwrap()
    );
    assert_eq!(
        Expr::parse("EXTRACT(ISODOW FROM t)").unwrap(),
        Expr::parse("dayofweek(t)").unwrap()
    );
    assert_eq!(
        Expr::parse("EXTRACT(DOY FROM t)").unwrap(),
        Expr::parse("day_of_year(t)").unwrap()
    );
    assert_eq!(
        Expr::parse("floor(x) + CEIL(x) + ceiling(x)")
            .unwrap()
            .columns(),
        ["x".to_string()].into()
    );
}

#[test]
fn columns_are_collected() {
    let e = Expr::parse(
        "CASE WHEN a > 1 THEN coalesce(b, c) WHEN d IS NULL THEN e ELSE f END + g IN (h, 1)",
    );
    // `+` then IN: parses, whatever it means.
    let cols = e.unwrap().columns();
    assert_eq!(
        cols.into_iter().collect::<Vec<_>>(),
        ["a", "b", "c", "d", "e", "f", "g", "h"]
    );
}

fn unsupported(text: &str) -> String {
    match Expr::parse(text) {
        Err(TransformError::Unsupported { expr, construct }) => {
            assert_eq!(expr, text);
            construct
        }
        other => panic!("{text}: {other:?}"),
    }
}

#[test]
fn unsupported_constructs_are_named() {
    assert_eq!(unsupported("name LIKE 'a%'"), "LIKE and pattern matching");
    assert_eq!(unsupported("x IN (SELECT 1)"), "a sub-query");
    assert_eq!(unsupported("foo(x)"), "the function `foo`");
    assert_eq!(unsupported("sum(x) OVER ()"), "the window function `sum`");
    assert_eq!(unsupported("x & 1"), "the operator `&`");
    assert_eq!(
        unsupported("t.x + 1"),
        "the qualified name `t.x` (write the column name alone, in double quotes if it contains a dot)"
    );
    assert_eq!(unsupported("EXTRACT(EPOCH FROM t)"), "EXTRACT(EPOCH …)");
    assert_eq!(unsupported("CAST(x AS BLOB)"), "the type BLOB");
    assert_eq!(
        unsupported("x IS TRUE"),
        "IS [NOT] TRUE/FALSE/UNKNOWN (compare with = instead)"
    );
    let err = Expr::parse("name LIKE 'a%'").unwrap_err();
    assert_eq!(
        err.to_string(),
        "expression `name LIKE 'a%'`: LIKE and pattern matching is not supported"
    );
}

#[test]
fn syntax_errors_name_the_expression() {
    for text in [
        "a +",
        "(a",
        "a b",
        "1 2",
        "",
        "   ",
        "CASE WHEN a THEN 1",
        "a = = b",
    ] {
        match Expr::parse(text) {
            Err(TransformError::Parse { expr, message }) => {
                assert_eq!(expr, text);
                assert!(!message.is_empty());
            }
            other => panic!("{text:?}: {other:?}"),
        }
    }
    let err = Expr::parse("a b").unwrap_err().to_string();
    assert!(
        err.starts_with("cannot parse expression `a b`: unexpected `b`"),
        "{err}"
    );
    let err = Expr::parse("round(x, y)").unwrap_err().to_string();
    assert!(err.contains("integer literal"), "{err}");
    let err = Expr::parse("abs(x, y)").unwrap_err().to_string();
    assert_eq!(
        err,
        "cannot parse expression `abs(x, y)`: abs() takes 1 argument, found 2"
    );
    let err = Expr::parse("\"a\" = \"b\"").unwrap().columns();
    assert_eq!(err.len(), 2);
    let err = Expr::parse("DATE '2013-02-30'").unwrap_err().to_string();
    assert!(err.contains("'2013-02-30' is not a date"), "{err}");
}

#[test]
fn display_parses_back() {
    for text in [
        "dep_delay > 15",
        "CASE WHEN distance > 1000 THEN 'long' ELSE 'short' END",
        "EXTRACT(HOUR FROM time_hour)",
        "ln(distance + 1)",
        "coalesce(dep_delay, 0)",
        "CAST(year AS DOUBLE)",
        "origin IN ('JFK','LGA')",
        "temp BETWEEN 0 AND 100",
        "temp NOT BETWEEN -1 AND 1.5",
        "wind_speed IS NULL",
        "NOT (a AND b)",
        "-x",
        "- -x",
        "x - -5",
        "x % 7",
        "a - (b - c)",
        "(a - b) - c",
        "a / (b * c)",
        "\"Dep Delay\" + \"year\"",
        "\"a\"\"b\" || 'it''s'",
        "round(x, 2) + floor(y) - ceil(z)",
        "DATE '2013-01-01' < d",
        "t >= TIMESTAMP '2013-01-01 05:00:00.5'",
        "x IS NOT NULL AND NOT y",
        "CASE WHEN a THEN NULL END",
        "greatest(a, b, 1) - least(c, 2.5)",
    ] {
        let e = Expr::parse(text).unwrap();
        let printed = e.to_string();
        let back = Expr::parse(&printed).unwrap_or_else(|err| panic!("{text} -> {printed}: {err}"));
        assert_eq!(back, e, "{text} -> {printed}");
    }
    assert_eq!(Expr::parse("a+b*c").unwrap().to_string(), "a + (b * c)");
    assert_eq!(
        Expr::parse("\"year\" > 1").unwrap().to_string(),
        "\"year\" > 1"
    );
}
