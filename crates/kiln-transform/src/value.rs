//! One cell value as the row evaluator and serving see it.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::dtype::DType;
use crate::error::{Result, TransformError};
use crate::time;

/// A cell. Dates are days since 1970-01-01; timestamps are microseconds since
/// 1970-01-01 00:00:00, naive (read as UTC), like Polars' `Date` and `Datetime(us)`.
/// Categorical values are `Str`.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Date(i32),
    Timestamp(i64),
}

impl Value {
    /// The type of a non-null value (strings are `String`); `None` for `Null`.
    pub fn dtype(&self) -> Option<DType> {
        Some(match self {
            Value::Null => return None,
            Value::Bool(_) => DType::Bool,
            Value::Int(_) => DType::Int,
            Value::Float(_) => DType::Float,
            Value::Str(_) => DType::String,
            Value::Date(_) => DType::Date,
            Value::Timestamp(_) => DType::Timestamp,
        })
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The value as a number: ints and floats as themselves, booleans as 1/0, dates as days
    /// and timestamps as microseconds since the epoch; `None` for null and strings.
    pub fn to_f64(&self) -> Option<f64> {
        match self {
            Value::Null | Value::Str(_) => None,
            Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            Value::Date(d) => Some(f64::from(*d)),
            Value::Timestamp(t) => Some(*t as f64),
        }
    }

    /// The value as a model feature: like [`Value::to_f64`], but null is NaN (missing).
    /// `None` for strings, which must be encoded first.
    pub fn to_feature(&self) -> Option<f64> {
        match self {
            Value::Null => Some(f64::NAN),
            other => other.to_f64(),
        }
    }

    /// True when both are the same value, with NaN equal to NaN (and -0.0 equal to 0.0).
    /// Tests compare evaluators with this.
    pub fn same_as(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Float(a), Value::Float(b)) => (a.is_nan() && b.is_nan()) || a == b,
            (a, b) => a == b,
        }
    }

    /// Reads a JSON value (a request's field) as a value of the column's declared type.
    /// `null` is `Null` for every type; ints take JSON integers (and floats with no fraction),
    /// floats any JSON number, bools `true`/`false`, strings and categoricals JSON strings,
    /// dates `"YYYY-MM-DD"`, timestamps ISO 8601 strings (`"2013-01-01 05:00:00"`,
    /// `"2013-01-01T05:00:00Z"`, with an offset, or a bare date). Errors name the column.
    pub fn from_json(column: &str, dtype: DType, json: &serde_json::Value) -> Result<Value> {
        use serde_json::Value as J;
        let wrong = |expected: &str| {
            TransformError::value(
                column,
                format!("expected {expected}, found {}", describe(json)),
            )
        };
        Ok(match (dtype, json) {
            (_, J::Null) => Value::Null,
            (DType::Int, J::Number(n)) => {
                if let Some(i) = n.as_i64() {
                    Value::Int(i)
                } else {
                    match n.as_f64() {
                        Some(f) if f.fract() == 0.0 => crate::ops::float_to_int(f)
                            .map(Value::Int)
                            .ok_or_else(|| wrong("an integer"))?,
                        _ => return Err(wrong("an integer")),
                    }
                }
            }
            (DType::Int, _) => return Err(wrong("an integer")),
            (DType::Float, J::Number(n)) => match n.as_f64() {
                Some(f) => Value::Float(f),
                None => return Err(wrong("a number")),
            },
            (DType::Float, _) => return Err(wrong("a number")),
            (DType::Bool, J::Bool(b)) => Value::Bool(*b),
            (DType::Bool, _) => return Err(wrong("true or false")),
            (DType::String | DType::Categorical, J::String(s)) => Value::Str(s.clone()),
            (DType::String | DType::Categorical, _) => return Err(wrong("a string")),
            (DType::Date, J::String(s)) => match time::parse_date(s) {
                Some(d) => Value::Date(d),
                None => return Err(wrong("a date \"YYYY-MM-DD\"")),
            },
            (DType::Date, _) => return Err(wrong("a date string \"YYYY-MM-DD\"")),
            (DType::Timestamp, J::String(s)) => match time::parse_timestamp(s) {
                Some(t) => Value::Timestamp(t),
                None => return Err(wrong("an ISO 8601 timestamp \"YYYY-MM-DD HH:MM:SS\"")),
            },
            (DType::Timestamp, _) => {
                return Err(wrong(
                    "an ISO 8601 timestamp string \"YYYY-MM-DD HH:MM:SS\"",
                ));
            }
        })
    }

    /// Plain JSON for responses: numbers, strings, booleans; dates and timestamps as ISO
    /// strings; NaN and infinities (which JSON lacks) as `null`.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Value::Str(s) => J::String(s.clone()),
            Value::Date(d) => J::String(time::format_date(*d)),
            Value::Timestamp(t) => J::String(time::format_timestamp(*t)),
        }
    }
}

fn describe(json: &serde_json::Value) -> String {
    use serde_json::Value as J;
    match json {
        J::Null => "null".into(),
        J::Bool(b) => format!("{b}"),
        J::Number(n) => format!("the number {n}"),
        J::String(s) if s.chars().count() > 40 => {
            format!("the string {:?}…", s.chars().take(40).collect::<String>())
        }
        J::String(s) => format!("the string {s:?}"),
        J::Array(_) => "an array".into(),
        J::Object(_) => "an object".into(),
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("null"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x:?}"),
            Value::Str(s) => f.write_str(s),
            Value::Date(d) => f.write_str(&time::format_date(*d)),
            Value::Timestamp(t) => f.write_str(&time::format_timestamp(*t)),
        }
    }
}

/// The serialised form: `{"type": "int", "value": 3}`; floats that JSON cannot hold are the
/// strings `"NaN"`, `"inf"`, `"-inf"`; dates and timestamps are ISO strings.
#[derive(Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
enum Repr {
    Null,
    Bool(bool),
    Int(i64),
    Float(FloatRepr),
    Str(String),
    Date(String),
    Timestamp(String),
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum FloatRepr {
    Number(f64),
    Text(String),
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let repr = match self {
            Value::Null => Repr::Null,
            Value::Bool(b) => Repr::Bool(*b),
            Value::Int(i) => Repr::Int(*i),
            Value::Float(x) if x.is_finite() => Repr::Float(FloatRepr::Number(*x)),
            Value::Float(x) => Repr::Float(FloatRepr::Text(format!("{x}"))),
            Value::Str(s) => Repr::Str(s.clone()),
            Value::Date(d) => Repr::Date(time::format_date(*d)),
            Value::Timestamp(t) => Repr::Timestamp(time::format_timestamp(*t)),
        };
        repr.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Value, D::Error> {
        use serde::de::Error;
        Ok(match Repr::deserialize(deserializer)? {
            Repr::Null => Value::Null,
            Repr::Bool(b) => Value::Bool(b),
            Repr::Int(i) => Value::Int(i),
            Repr::Float(FloatRepr::Number(x)) => Value::Float(x),
            Repr::Float(FloatRepr::Text(t)) => match t.as_str() {
                "NaN" => Value::Float(f64::NAN),
                "inf" => Value::Float(f64::INFINITY),
                "-inf" => Value::Float(f64::NEG_INFINITY),
                other => return Err(D::Error::custom(format!("not a float: {other:?}"))),
            },
            Repr::Str(s) => Value::Str(s),
            Repr::Date(s) => Value::Date(
                time::parse_date(&s)
                    .ok_or_else(|| D::Error::custom(format!("not a date: {s:?}")))?,
            ),
            Repr::Timestamp(s) => Value::Timestamp(
                time::parse_timestamp(&s)
                    .ok_or_else(|| D::Error::custom(format!("not a timestamp: {s:?}")))?,
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn reads_json_by_dtype() {
        assert_eq!(
            Value::from_json("x", DType::Int, &json!(3)).unwrap(),
            Value::Int(3)
        );
        assert_eq!(
            Value::from_json("x", DType::Int, &json!(3.0)).unwrap(),
            Value::Int(3)
        );
        assert_eq!(
            Value::from_json("x", DType::Float, &json!(3)).unwrap(),
            Value::Float(3.0)
        );
        assert_eq!(
            Value::from_json("x", DType::Bool, &json!(true)).unwrap(),
            Value::Bool(true)
        );
        assert_eq!(
            Value::from_json("x", DType::Categorical, &json!("JFK")).unwrap(),
            Value::Str("JFK".into())
        );
        assert_eq!(
            Value::from_json("x", DType::Date, &json!("2013-01-01")).unwrap(),
            Value::Date(15706)
        );
        let t = Value::Timestamp(15706 * time::MICROS_PER_DAY + 5 * time::MICROS_PER_HOUR);
        for text in [
            "2013-01-01 05:00:00",
            "2013-01-01T05:00:00",
            "2013-01-01T05:00:00Z",
        ] {
            assert_eq!(
                Value::from_json("t", DType::Timestamp, &json!(text)).unwrap(),
                t
            );
        }
        for dtype in DType::ALL {
            assert_eq!(
                Value::from_json("x", dtype, &json!(null)).unwrap(),
                Value::Null
            );
        }
    }

    #[test]
    fn json_errors_name_the_column() {
        let err = Value::from_json("dep_delay", DType::Float, &json!("late")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "column `dep_delay`: expected a number, found the string \"late\""
        );
        let err = Value::from_json("n", DType::Int, &json!(1.5)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "column `n`: expected an integer, found the number 1.5"
        );
        let err = Value::from_json("d", DType::Date, &json!("2013-02-30")).unwrap_err();
        assert!(
            err.to_string().starts_with("column `d`: expected a date"),
            "{err}"
        );
        let err = Value::from_json("b", DType::Bool, &json!(1)).unwrap_err();
        assert!(err.to_string().contains("`b`"), "{err}");
    }

    #[test]
    fn serde_round_trip() {
        let values = [
            Value::Null,
            Value::Bool(false),
            Value::Int(-7),
            Value::Float(1.5),
            Value::Float(f64::NAN),
            Value::Float(f64::NEG_INFINITY),
            Value::Str("a\"b".into()),
            Value::Date(-3),
            Value::Timestamp(1_234_567),
        ];
        for v in values {
            let text = serde_json::to_string(&v).unwrap();
            let back: Value = serde_json::from_str(&text).unwrap();
            assert!(back.same_as(&v), "{text}");
        }
        assert_eq!(
            serde_json::to_string(&Value::Int(3)).unwrap(),
            r#"{"type":"int","value":3}"#
        );
        assert_eq!(
            serde_json::to_string(&Value::Date(15706)).unwrap(),
            r#"{"type":"date","value":"2013-01-01"}"#
        );
    }

    #[test]
    fn numbers() {
        assert_eq!(Value::Bool(true).to_f64(), Some(1.0));
        assert_eq!(Value::Int(2).to_f64(), Some(2.0));
        assert_eq!(Value::Str("a".into()).to_f64(), None);
        assert!(Value::Null.to_feature().unwrap().is_nan());
        assert_eq!(Value::Null.to_f64(), None);
        assert_eq!(Value::Float(f64::NAN).to_json(), json!(null));
        assert_eq!(Value::Date(0).to_json(), json!("1970-01-01"));
    }
}
