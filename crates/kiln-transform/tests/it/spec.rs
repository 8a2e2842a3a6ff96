use kiln_transform::{Column, DType, Step, TransformError, TransformSpec, Value};
use serde_json::json;

fn flights() -> TransformSpec {
    TransformSpec {
        inputs: vec![
            Column::new("dep_delay", DType::Float),
            Column::new("distance", DType::Int),
            Column::new("origin", DType::Categorical),
            Column::new("carrier", DType::String),
            Column::new("time_hour", DType::Timestamp),
            Column::new("month", DType::Int),
        ],
        steps: vec![
            Step::Derive {
                name: "late".into(),
                expr: "dep_delay > 15".into(),
                dtype: DType::Bool,
            },
            Step::Derive {
                name: "log_distance".into(),
                expr: "ln(distance + 1)".into(),
                dtype: DType::Float,
            },
            Step::Derive {
                name: "hour".into(),
                expr: "EXTRACT(HOUR FROM time_hour)".into(),
                dtype: DType::Int,
            },
            Step::Derive {
                name: "haul".into(),
                expr: "CASE WHEN distance > 1000 THEN 'long' ELSE 'short' END".into(),
                dtype: DType::String,
            },
            Step::OneHot {
                column: "origin".into(),
                categories: vec!["JFK".into(), "LGA".into(), "EWR".into()],
            },
            Step::OneHot {
                column: "month".into(),
                categories: vec!["1".into(), "12".into()],
            },
            Step::Ordinal {
                column: "carrier".into(),
                categories: vec!["UA".into(), "AA".into()],
            },
            Step::Ordinal {
                column: "haul".into(),
                categories: vec!["short".into(), "long".into()],
            },
        ],
        outputs: [
            "late",
            "log_distance",
            "hour",
            "origin=JFK",
            "origin=LGA",
            "origin=EWR",
            "month=1",
            "month=12",
            "carrier",
            "haul",
            "dep_delay",
        ]
        .map(String::from)
        .to_vec(),
    }
}

fn same(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| (x.is_nan() && y.is_nan()) || x == y)
}

#[test]
fn applies_to_a_json_row() {
    let spec = flights().compile().unwrap();
    let row = json!({
        "dep_delay": 20.0,
        "distance": 1400,
        "origin": "LGA",
        "carrier": "AA",
        "time_hour": "2013-01-01 05:00:00",
        "month": 12,
        "ignored": [1, 2]
    });
    let out = spec.apply_json_row(row.as_object().unwrap()).unwrap();
    let want = [
        1.0,
        1401f64.ln(),
        5.0,
        0.0,
        1.0,
        0.0,
        0.0,
        1.0,
        1.0,
        1.0,
        20.0,
    ];
    assert!(same(&out, &want), "{out:?}");
}

#[test]
fn nulls_and_unseen_categories() {
    let spec = flights().compile().unwrap();
    let row = json!({
        "dep_delay": null,
        "distance": null,
        "origin": "XYZ",
        "carrier": null,
        "time_hour": null,
        "month": 5,
    });
    let out = spec.apply_json_row(row.as_object().unwrap()).unwrap();
    let nan = f64::NAN;
    // haul: CASE with a null condition gives 'short'.
    let want = [nan, nan, nan, 0.0, 0.0, 0.0, 0.0, 0.0, nan, 0.0, nan];
    assert!(same(&out, &want), "{out:?}");
}

#[test]
fn apply_row_checks_inputs() {
    let spec = flights().compile().unwrap();
    let full = |name: &str| -> Option<Value> {
        Some(match name {
            "dep_delay" => Value::Int(3), // ints widen to floats
            "distance" => Value::Int(100),
            "origin" | "carrier" => Value::Str("JFK".into()),
            "time_hour" => Value::Timestamp(0),
            "month" => Value::Int(1),
            _ => return None,
        })
    };
    let out = spec.apply_row(&full).unwrap();
    assert_eq!(out[0], 0.0);
    assert_eq!(out[10], 3.0);
    let missing = |name: &str| if name == "month" { None } else { full(name) };
    assert_eq!(
        spec.apply_row(&missing).unwrap_err(),
        TransformError::MissingInput {
            column: "month".into()
        }
    );
    let wrong = |name: &str| {
        if name == "distance" {
            Some(Value::Str("far".into()))
        } else {
            full(name)
        }
    };
    assert_eq!(
        spec.apply_row(&wrong).unwrap_err().to_string(),
        "column `distance`: expected int, found string far"
    );
}

#[test]
fn json_row_errors_name_the_column() {
    let spec = flights().compile().unwrap();
    let mut row = json!({
        "dep_delay": 1.0, "distance": 1, "origin": "JFK", "carrier": "UA",
        "time_hour": "2013-01-01T05:00:00Z", "month": 1
    });
    let obj = row.as_object_mut().unwrap();
    obj.remove("carrier");
    assert_eq!(
        spec.apply_json_row(obj).unwrap_err().to_string(),
        "missing input column `carrier`"
    );
    obj.insert("carrier".into(), json!("UA"));
    obj.insert("time_hour".into(), json!("yesterday"));
    let err = spec.apply_json_row(obj).unwrap_err().to_string();
    assert!(
        err.starts_with("column `time_hour`: expected an ISO 8601 timestamp"),
        "{err}"
    );
}

#[test]
fn json_round_trip_is_stable() {
    let spec = flights();
    let text = serde_json::to_string(&spec).unwrap();
    let back: TransformSpec = serde_json::from_str(&text).unwrap();
    assert_eq!(back, spec);
    assert_eq!(serde_json::to_string(&back).unwrap(), text);
    let small = TransformSpec {
        inputs: vec![Column::new("x", DType::Float)],
        steps: vec![
            Step::Derive {
                name: "y".into(),
                expr: "x * 2".into(),
                dtype: DType::Float,
            },
            Step::OneHot {
                column: "c".into(),
                categories: vec!["a".into()],
            },
        ],
        outputs: vec!["y".into()],
    };
    assert_eq!(
        serde_json::to_string(&small).unwrap(),
        r#"{"inputs":[{"name":"x","dtype":"float"}],"steps":[{"kind":"derive","name":"y","expr":"x * 2","dtype":"float"},{"kind":"one_hot","column":"c","categories":["a"]}],"outputs":["y"]}"#
    );
}

fn invalid(spec: TransformSpec) -> String {
    spec.validate().unwrap_err().to_string()
}

#[test]
fn validation_errors() {
    let base = || TransformSpec {
        inputs: vec![
            Column::new("x", DType::Float),
            Column::new("s", DType::String),
        ],
        steps: vec![],
        outputs: vec!["x".into()],
    };
    base().validate().unwrap();

    let mut spec = base();
    spec.steps.push(Step::Derive {
        name: "y".into(),
        expr: "x + z".into(),
        dtype: DType::Float,
    });
    assert_eq!(invalid(spec), "expression `x + z`: unknown column `z`");

    let mut spec = base();
    spec.steps.push(Step::Derive {
        name: "y".into(),
        expr: "x +".into(),
        dtype: DType::Float,
    });
    assert!(invalid(spec).starts_with("cannot parse expression `x +`"));

    let mut spec = base();
    spec.steps.push(Step::Derive {
        name: "y".into(),
        expr: "x > 1".into(),
        dtype: DType::Float,
    });
    assert_eq!(
        invalid(spec),
        "transform spec: derived column `y` is declared float, but `x > 1` gives bool"
    );

    let mut spec = base();
    spec.steps.push(Step::Derive {
        name: "x".into(),
        expr: "x * 2".into(),
        dtype: DType::Float,
    });
    assert_eq!(invalid(spec), "transform spec: column `x` is defined twice");

    let mut spec = base();
    spec.outputs = vec!["s".into()];
    assert_eq!(
        invalid(spec),
        "transform spec: output `s` is string; outputs must be int, float or bool (encode text with one_hot or ordinal)"
    );

    let mut spec = base();
    spec.outputs = vec!["x".into(), "x".into()];
    assert_eq!(invalid(spec), "transform spec: output `x` is listed twice");

    let mut spec = base();
    spec.outputs = vec!["nope".into()];
    assert_eq!(
        invalid(spec),
        "transform spec: output `nope` is not a column (columns: x, s)"
    );

    let mut spec = base();
    spec.steps.push(Step::OneHot {
        column: "x".into(),
        categories: vec!["1".into()],
    });
    assert_eq!(
        invalid(spec),
        "transform spec: one_hot step: column `x` is float; only string, categorical, int and bool columns can be encoded"
    );

    let mut spec = base();
    spec.steps.push(Step::Ordinal {
        column: "t".into(),
        categories: vec![],
    });
    assert_eq!(
        invalid(spec),
        "transform spec: ordinal step: unknown column `t`"
    );

    let mut spec = base();
    spec.steps.push(Step::OneHot {
        column: "s".into(),
        categories: vec!["a".into(), "a".into()],
    });
    assert_eq!(
        invalid(spec),
        "transform spec: column `s`: category \"a\" is listed twice"
    );

    let mut spec = base();
    spec.inputs.push(Column::new("s=a", DType::Float));
    spec.steps.push(Step::OneHot {
        column: "s".into(),
        categories: vec!["a".into()],
    });
    assert_eq!(
        invalid(spec),
        "transform spec: column `s=a` is defined twice"
    );

    // A column is visible only after the step that makes it.
    let mut spec = base();
    spec.steps.push(Step::Derive {
        name: "y".into(),
        expr: "w * 2".into(),
        dtype: DType::Float,
    });
    spec.steps.push(Step::Derive {
        name: "w".into(),
        expr: "x".into(),
        dtype: DType::Float,
    });
    assert_eq!(invalid(spec), "expression `w * 2`: unknown column `w`");

    // After ordinal encoding, a string column is a float and may be an output.
    let mut spec = base();
    spec.steps.push(Step::Ordinal {
        column: "s".into(),
        categories: vec!["a".into()],
    });
    spec.outputs.push("s".into());
    spec.validate().unwrap();
}
