//! The scalar semantics of the expression language, one function per operation. The row
//! evaluator calls these, and the Polars compiler (`kiln-data`) calls the same functions in
//! its element-wise kernels wherever Polars' own kernel would differ, so that training and
//! serving compute bit-identical features.
//!
//! Decisions, in one place:
//! - Integer `+ - *`, unary minus and `abs` are checked: an overflow gives null (never a
//!   wrapped value, never an error).
//! - `/` is always float division, IEEE: `x / 0.0` is ±inf, `0 / 0` is NaN.
//! - `%` is the floored modulo (the result has the sign of the divisor, as in Python and
//!   Polars): `-7 % 3 = 2`, `7 % -3 = -2`. Integer `x % 0` is null; float `x % 0.0` is NaN.
//! - Floats compare in Polars' total order: NaN equals NaN and is greater than every other
//!   number (including +inf); `-0.0` equals `0.0`. An int compared with a float is converted
//!   to float first.
//! - Casts never fail: a value that cannot be converted becomes null (Polars `strict=false`).

use std::cmp::Ordering;

use crate::dtype::DType;
use crate::time;
use crate::value::Value;

pub fn int_add(a: i64, b: i64) -> Option<i64> {
    a.checked_add(b)
}

pub fn int_sub(a: i64, b: i64) -> Option<i64> {
    a.checked_sub(b)
}

pub fn int_mul(a: i64, b: i64) -> Option<i64> {
    a.checked_mul(b)
}

pub fn int_neg(a: i64) -> Option<i64> {
    a.checked_neg()
}

pub fn int_abs(a: i64) -> Option<i64> {
    a.checked_abs()
}

/// Floored modulo; null when `b` is 0.
pub fn int_mod(a: i64, b: i64) -> Option<i64> {
    if b == 0 {
        return None;
    }
    let r = a.wrapping_rem(b);
    Some(if r != 0 && (r < 0) != (b < 0) {
        r + b
    } else {
        r
    })
}

pub fn float_div(a: f64, b: f64) -> f64 {
    a / b
}

/// Floored modulo on floats: `a - b * floor(a / b)` computed exactly (from the IEEE
/// remainder), NaN when `b` is 0 or `a` infinite.
pub fn float_mod(a: f64, b: f64) -> f64 {
    let r = a % b;
    if r != 0.0 && (r < 0.0) != (b < 0.0) {
        r + b
    } else {
        r
    }
}

/// Polars' total order on floats.
pub fn float_cmp(a: f64, b: f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        (false, false) => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
    }
}

/// Compares two values of comparable types; `Ok(None)` when either is null. Ints and floats
/// compare as floats, dates as midnight timestamps against timestamps. Other pairs of types
/// are an error (the message says which types met).
pub fn compare(a: &Value, b: &Value) -> Result<Option<Ordering>, String> {
    use Value as V;
    Ok(Some(match (a, b) {
        (V::Null, _) | (_, V::Null) => return Ok(None),
        (V::Int(x), V::Int(y)) => x.cmp(y),
        (V::Int(x), V::Float(y)) => float_cmp(*x as f64, *y),
        (V::Float(x), V::Int(y)) => float_cmp(*x, *y as f64),
        (V::Float(x), V::Float(y)) => float_cmp(*x, *y),
        (V::Bool(x), V::Bool(y)) => x.cmp(y),
        (V::Str(x), V::Str(y)) => x.as_bytes().cmp(y.as_bytes()),
        (V::Date(x), V::Date(y)) => x.cmp(y),
        (V::Timestamp(x), V::Timestamp(y)) => x.cmp(y),
        (V::Date(x), V::Timestamp(y)) => match date_to_timestamp(*x) {
            Some(x) => x.cmp(y),
            None => return Ok(None),
        },
        (V::Timestamp(x), V::Date(y)) => match date_to_timestamp(*y) {
            Some(y) => x.cmp(&y),
            None => return Ok(None),
        },
        (V::Date(_) | V::Timestamp(_), V::Str(s)) | (V::Str(s), V::Date(_) | V::Timestamp(_)) => {
            let other = if matches!(a, V::Str(_)) { b } else { a };
            let parsed = match other {
                V::Date(_) => time::parse_date(s).map(V::Date),
                _ => time::parse_timestamp(s).map(V::Timestamp),
            };
            let Some(parsed) = parsed else {
                return Err(format!(
                    "cannot compare {other} with {s:?}, which is not a date"
                ));
            };
            return if matches!(a, V::Str(_)) {
                compare(&parsed, b)
            } else {
                compare(a, &parsed)
            };
        }
        _ => {
            return Err(format!(
                "cannot compare {} with {}",
                type_name(a),
                type_name(b)
            ));
        }
    }))
}

pub(crate) fn type_name(v: &Value) -> &'static str {
    v.dtype().map_or("null", DType::as_str)
}

/// Microseconds of a date's midnight; `None` beyond the range of an i64 timestamp.
pub fn date_to_timestamp(days: i32) -> Option<i64> {
    i64::from(days).checked_mul(time::MICROS_PER_DAY)
}

/// The date of a timestamp (floored: 1969-12-31 23:00 is 1969-12-31).
pub fn timestamp_to_date(micros: i64) -> i32 {
    // |i64::MAX / MICROS_PER_DAY| < i32::MAX, so this always fits.
    micros.div_euclid(time::MICROS_PER_DAY) as i32
}

pub fn ln(x: f64) -> f64 {
    x.ln()
}

pub fn log10(x: f64) -> f64 {
    x.log10()
}

pub fn log1p(x: f64) -> f64 {
    x.ln_1p()
}

pub fn exp(x: f64) -> f64 {
    x.exp()
}

pub fn sqrt(x: f64) -> f64 {
    x.sqrt()
}

/// Rounds half away from zero to `digits` decimals (0..=15): `(x * 10^d).round() / 10^d`.
/// When `x * 10^d` is not finite the value is returned unchanged.
pub fn round(x: f64, digits: u32) -> f64 {
    if digits == 0 {
        return x.round();
    }
    let m = 10f64.powi(digits as i32);
    let scaled = x * m;
    if scaled.is_finite() {
        scaled.round() / m
    } else {
        x
    }
}

/// The text of a float as Kiln writes it: Rust's shortest round-trip form with a `.0` for
/// whole numbers (`1.0`, `0.1`, `1e20`, `NaN`, `inf`).
pub fn format_float(x: f64) -> String {
    format!("{x:?}")
}

/// Non-strict string to integer: optional sign and decimal digits, surrounding whitespace
/// ignored; anything else (including `1.5`, `1e3`) or an out-of-range number is null.
pub fn parse_int(s: &str) -> Option<i64> {
    s.trim().parse::<i64>().ok()
}

/// Non-strict string to float: Rust's float syntax (`1`, `-1.5`, `.5`, `1e3`, `inf`, `NaN`,
/// case-insensitive words), surrounding whitespace ignored; otherwise null.
pub fn parse_float(s: &str) -> Option<f64> {
    s.trim().parse::<f64>().ok()
}

/// Non-strict string to bool: `true t yes y 1` / `false f no n 0`, case-insensitive, after
/// trimming; otherwise null.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "t" | "yes" | "y" | "1" => Some(true),
        "false" | "f" | "no" | "n" | "0" => Some(false),
        _ => None,
    }
}

/// Float to integer: truncated toward zero; NaN, infinities and values outside the i64 range
/// are null.
pub fn float_to_int(x: f64) -> Option<i64> {
    if x.is_finite() && (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&x) {
        Some(x as i64)
    } else {
        None
    }
}

/// Whether a cast from `from` to `to` exists. Categorical counts as string. Every type casts
/// to and from string; numbers and bools cast among themselves; dates and timestamps cast to
/// each other and to ints (days / microseconds since the epoch), and back from ints.
pub fn can_cast(from: DType, to: DType) -> bool {
    use DType as T;
    let norm = |t: DType| if t == T::Categorical { T::String } else { t };
    match (norm(from), norm(to)) {
        (a, b) if a == b => true,
        (T::String, _) | (_, T::String) => true,
        (T::Int | T::Float | T::Bool, T::Int | T::Float | T::Bool) => true,
        (T::Date | T::Timestamp, T::Date | T::Timestamp | T::Int | T::Float) => true,
        (T::Int, T::Date | T::Timestamp) => true,
        _ => false,
    }
}

/// Converts a value; null when it cannot be (never an error for a cast [`can_cast`] allows).
/// Casting to `Categorical` is casting to string.
pub fn cast(value: &Value, to: DType) -> Result<Value, String> {
    use DType as T;
    use Value as V;
    Ok(match (value, to) {
        (V::Null, _) => V::Null,
        (V::Bool(_), T::Bool)
        | (V::Int(_), T::Int)
        | (V::Float(_), T::Float)
        | (V::Str(_), T::String | T::Categorical)
        | (V::Date(_), T::Date)
        | (V::Timestamp(_), T::Timestamp) => value.clone(),

        (V::Bool(b), T::Int) => V::Int(i64::from(*b)),
        (V::Bool(b), T::Float) => V::Float(if *b { 1.0 } else { 0.0 }),
        (V::Bool(b), T::String | T::Categorical) => V::Str(b.to_string()),

        (V::Int(i), T::Float) => V::Float(*i as f64),
        (V::Int(i), T::Bool) => V::Bool(*i != 0),
        (V::Int(i), T::String | T::Categorical) => V::Str(i.to_string()),
        (V::Int(i), T::Date) => i32::try_from(*i).map_or(V::Null, V::Date),
        (V::Int(i), T::Timestamp) => V::Timestamp(*i),

        (V::Float(x), T::Int) => float_to_int(*x).map_or(V::Null, V::Int),
        (V::Float(x), T::Bool) if x.is_nan() => V::Null,
        (V::Float(x), T::Bool) => V::Bool(*x != 0.0),
        (V::Float(x), T::String | T::Categorical) => V::Str(format_float(*x)),

        (V::Str(s), T::Int) => parse_int(s).map_or(V::Null, V::Int),
        (V::Str(s), T::Float) => parse_float(s).map_or(V::Null, V::Float),
        (V::Str(s), T::Bool) => parse_bool(s).map_or(V::Null, V::Bool),
        (V::Str(s), T::Date) => time::parse_date(s).map_or(V::Null, V::Date),
        (V::Str(s), T::Timestamp) => time::parse_timestamp(s).map_or(V::Null, V::Timestamp),

        (V::Date(d), T::Timestamp) => date_to_timestamp(*d).map_or(V::Null, V::Timestamp),
        (V::Date(d), T::Int) => V::Int(i64::from(*d)),
        (V::Date(d), T::Float) => V::Float(f64::from(*d)),
        (V::Date(d), T::String | T::Categorical) => V::Str(time::format_date(*d)),

        (V::Timestamp(t), T::Date) => V::Date(timestamp_to_date(*t)),
        (V::Timestamp(t), T::Int) => V::Int(*t),
        (V::Timestamp(t), T::Float) => V::Float(*t as f64),
        (V::Timestamp(t), T::String | T::Categorical) => V::Str(time::format_timestamp(*t)),

        (v, to) => return Err(format!("cannot cast {} to {to}", type_name(v))),
    })
}

/// `least` (`least = true`) or `greatest` of values, ignoring nulls (null only when all are).
/// On ties the earlier value wins. An int meeting a float is compared, and returned, as a
/// float; a date meeting a timestamp as a timestamp.
pub fn least_or_greatest(values: &[Value], least: bool) -> Result<Value, String> {
    let mut acc = Value::Null;
    for v in values {
        if v.is_null() {
            continue;
        }
        if acc.is_null() {
            acc = v.clone();
            continue;
        }
        let ord = compare(&acc, v)?.unwrap_or(Ordering::Equal);
        let keep = if least {
            ord != Ordering::Greater
        } else {
            ord != Ordering::Less
        };
        acc = if keep {
            promote(acc, v)
        } else {
            promote(v.clone(), &acc)
        };
    }
    Ok(acc)
}

fn promote(v: Value, other: &Value) -> Value {
    match (&v, other) {
        (Value::Int(i), Value::Float(_)) => Value::Float(*i as f64),
        (Value::Date(d), Value::Timestamp(_)) => {
            date_to_timestamp(*d).map_or(Value::Null, Value::Timestamp)
        }
        _ => v,
    }
}

/// The date part of a date or timestamp value.
pub(crate) fn day_of(value: &Value) -> Option<i64> {
    match value {
        Value::Date(d) => Some(i64::from(*d)),
        Value::Timestamp(t) => Some(time::split_timestamp(*t).0),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modulo_is_floored() {
        assert_eq!(int_mod(7, 3), Some(1));
        assert_eq!(int_mod(-7, 3), Some(2));
        assert_eq!(int_mod(7, -3), Some(-2));
        assert_eq!(int_mod(-7, -3), Some(-1));
        assert_eq!(int_mod(7, 0), None);
        assert_eq!(int_mod(i64::MIN, -1), Some(0));
        assert_eq!(float_mod(7.5, 2.0), 1.5);
        assert_eq!(float_mod(-7.5, 2.0), 0.5);
        assert_eq!(float_mod(7.5, -2.0), -0.5);
        assert!(float_mod(1.0, 0.0).is_nan());
        assert!(float_mod(f64::INFINITY, 2.0).is_nan());
        assert_eq!(float_mod(-1.0, f64::INFINITY), f64::INFINITY);
    }

    #[test]
    fn overflow_is_null() {
        assert_eq!(int_add(i64::MAX, 1), None);
        assert_eq!(int_sub(i64::MIN, 1), None);
        assert_eq!(int_mul(i64::MAX, 2), None);
        assert_eq!(int_neg(i64::MIN), None);
        assert_eq!(int_abs(i64::MIN), None);
        assert_eq!(int_add(2, 3), Some(5));
    }

    #[test]
    fn total_order() {
        assert_eq!(float_cmp(f64::NAN, f64::NAN), Ordering::Equal);
        assert_eq!(float_cmp(f64::NAN, f64::INFINITY), Ordering::Greater);
        assert_eq!(float_cmp(-0.0, 0.0), Ordering::Equal);
        assert_eq!(
            compare(&Value::Int(2), &Value::Float(2.5)).unwrap(),
            Some(Ordering::Less)
        );
        assert_eq!(compare(&Value::Null, &Value::Int(1)).unwrap(), None);
        assert_eq!(
            compare(&Value::Date(1), &Value::Str("1970-01-02".into())).unwrap(),
            Some(Ordering::Equal)
        );
        assert!(compare(&Value::Int(1), &Value::Str("1".into())).is_err());
    }

    #[test]
    fn casts() {
        let s = |x: &str| Value::Str(x.into());
        assert_eq!(cast(&s(" 12 "), DType::Int).unwrap(), Value::Int(12));
        assert_eq!(cast(&s("1.5"), DType::Int).unwrap(), Value::Null);
        assert_eq!(cast(&s("1e3"), DType::Float).unwrap(), Value::Float(1000.0));
        assert_eq!(cast(&s("x"), DType::Float).unwrap(), Value::Null);
        assert_eq!(cast(&s("Yes"), DType::Bool).unwrap(), Value::Bool(true));
        assert_eq!(
            cast(&s("2013-01-01"), DType::Date).unwrap(),
            Value::Date(15706)
        );
        assert_eq!(
            cast(&Value::Float(-2.7), DType::Int).unwrap(),
            Value::Int(-2)
        );
        assert_eq!(
            cast(&Value::Float(f64::NAN), DType::Int).unwrap(),
            Value::Null
        );
        assert_eq!(cast(&Value::Float(1e19), DType::Int).unwrap(), Value::Null);
        assert_eq!(cast(&Value::Float(1.0), DType::String).unwrap(), s("1.0"));
        assert_eq!(
            cast(&Value::Bool(true), DType::Float).unwrap(),
            Value::Float(1.0)
        );
        assert_eq!(
            cast(&Value::Timestamp(-1), DType::Date).unwrap(),
            Value::Date(-1)
        );
        assert_eq!(
            cast(&Value::Date(1), DType::Timestamp).unwrap(),
            Value::Timestamp(time::MICROS_PER_DAY)
        );
        assert_eq!(
            cast(&Value::Int(1 << 40), DType::Date).unwrap(),
            Value::Null
        );
        assert!(cast(&Value::Float(1.0), DType::Date).is_err());
        assert!(!can_cast(DType::Float, DType::Date));
        assert!(can_cast(DType::Categorical, DType::Int));
    }

    #[test]
    fn rounding() {
        assert_eq!(round(2.5, 0), 3.0);
        assert_eq!(round(-2.5, 0), -3.0);
        assert_eq!(round(1.2345, 2), 1.23);
        assert_eq!(round(1e300, 10), 1e300);
    }
}
