//! The row evaluator: one row at a time, values typed at run time. On a resolved expression
//! it computes exactly what the Polars compilation computes; on an unresolved one it applies
//! the same rules dynamically (an int meeting a float becomes a float, and so on).

use std::cmp::Ordering;

use super::{BinaryOp, Expr, Function, UnaryOp};
use crate::error::{Result, TransformError};
use crate::ops::{self, type_name};
use crate::time;
use crate::value::Value;

type Row<'a> = &'a dyn Fn(&str) -> Option<Value>;

pub(super) fn eval(e: &Expr, row: Row<'_>) -> Result<Value> {
    let err = |message: String| TransformError::type_error(e, message);
    Ok(match e {
        Expr::Column(name) => row(name).ok_or_else(|| TransformError::UnknownColumn {
            expr: e.to_string(),
            column: name.clone(),
        })?,
        Expr::Literal(v) => v.clone(),
        Expr::Unary { op, expr } => match (op, eval(expr, row)?) {
            (_, Value::Null) => Value::Null,
            (UnaryOp::Neg, Value::Int(i)) => ops::int_neg(i).map_or(Value::Null, Value::Int),
            (UnaryOp::Neg, Value::Float(x)) => Value::Float(-x),
            (UnaryOp::Not, Value::Bool(b)) => Value::Bool(!b),
            (UnaryOp::Neg, v) => {
                return Err(err(format!(
                    "unary minus needs a number, found {}",
                    type_name(&v)
                )));
            }
            (UnaryOp::Not, v) => {
                return Err(err(format!("NOT needs a boolean, found {}", type_name(&v))));
            }
        },
        Expr::Binary { op, left, right } => {
            let l = eval(left, row)?;
            let r = eval(right, row)?;
            binary(*op, l, r).map_err(err)?
        }
        Expr::Case {
            branches,
            otherwise,
        } => {
            for (condition, result) in branches {
                match eval(condition, row)? {
                    Value::Bool(true) => return eval(result, row),
                    Value::Bool(false) | Value::Null => {}
                    other => {
                        return Err(err(format!(
                            "a CASE condition must be a boolean, found {}",
                            type_name(&other)
                        )));
                    }
                }
            }
            match otherwise {
                Some(e) => eval(e, row)?,
                None => Value::Null,
            }
        }
        Expr::Cast { expr, to } => ops::cast(&eval(expr, row)?, *to).map_err(err)?,
        Expr::Func { name, args } => {
            let args = args
                .iter()
                .map(|a| eval(a, row))
                .collect::<Result<Vec<_>>>()?;
            function(*name, args).map_err(err)?
        }
        Expr::IsNull(inner) => Value::Bool(eval(inner, row)?.is_null()),
        Expr::IsNotNull(inner) => Value::Bool(!eval(inner, row)?.is_null()),
        Expr::InList {
            expr,
            list,
            negated,
        } => {
            let x = eval(expr, row)?;
            // Kleene OR of `x = item` over the items.
            let mut out = Value::Bool(false);
            for item in list {
                let eq = equals(&x, &eval(item, row)?).map_err(err)?;
                out = or(&out, &eq);
            }
            if *negated { not(&out) } else { out }
        }
        Expr::Between {
            expr,
            low,
            high,
            negated,
        } => {
            let x = eval(expr, row)?;
            let low = eval(low, row)?;
            let high = eval(high, row)?;
            let ge = comparison(BinaryOp::GtEq, &x, &low).map_err(err)?;
            let le = comparison(BinaryOp::LtEq, &x, &high).map_err(err)?;
            let out = and(&ge, &le);
            if *negated { not(&out) } else { out }
        }
    })
}

fn not(v: &Value) -> Value {
    match v {
        Value::Bool(b) => Value::Bool(!b),
        _ => Value::Null,
    }
}

/// Kleene AND: false wins over null.
fn and(a: &Value, b: &Value) -> Value {
    match (a, b) {
        (Value::Bool(false), _) | (_, Value::Bool(false)) => Value::Bool(false),
        (Value::Bool(true), Value::Bool(true)) => Value::Bool(true),
        _ => Value::Null,
    }
}

/// Kleene OR: true wins over null.
fn or(a: &Value, b: &Value) -> Value {
    match (a, b) {
        (Value::Bool(true), _) | (_, Value::Bool(true)) => Value::Bool(true),
        (Value::Bool(false), Value::Bool(false)) => Value::Bool(false),
        _ => Value::Null,
    }
}

fn equals(a: &Value, b: &Value) -> Result<Value, String> {
    comparison(BinaryOp::Eq, a, b)
}

fn comparison(op: BinaryOp, a: &Value, b: &Value) -> Result<Value, String> {
    let Some(ord) = ops::compare(a, b)? else {
        return Ok(Value::Null);
    };
    Ok(Value::Bool(match op {
        BinaryOp::Eq => ord == Ordering::Equal,
        BinaryOp::NotEq => ord != Ordering::Equal,
        BinaryOp::Lt => ord == Ordering::Less,
        BinaryOp::LtEq => ord != Ordering::Greater,
        BinaryOp::Gt => ord == Ordering::Greater,
        BinaryOp::GtEq => ord != Ordering::Less,
        _ => unreachable!("not a comparison"),
    }))
}

fn check_bool(op: BinaryOp, v: &Value) -> Result<(), String> {
    match v {
        Value::Bool(_) | Value::Null => Ok(()),
        other => Err(format!(
            "{} needs booleans, found {}",
            op.symbol(),
            type_name(other)
        )),
    }
}

fn binary(op: BinaryOp, l: Value, r: Value) -> Result<Value, String> {
    use Value as V;
    match op {
        BinaryOp::And | BinaryOp::Or => {
            check_bool(op, &l)?;
            check_bool(op, &r)?;
            return Ok(if op == BinaryOp::And {
                and(&l, &r)
            } else {
                or(&l, &r)
            });
        }
        op if op.is_comparison() => return comparison(op, &l, &r),
        _ => {}
    }
    let mismatch = |l: &Value, r: &Value| {
        let wants = if op == BinaryOp::Concat {
            "strings"
        } else {
            "numbers"
        };
        Err(format!(
            "operator {} needs {wants}, found {} and {}",
            op.symbol(),
            type_name(l),
            type_name(r)
        ))
    };
    if op == BinaryOp::Concat {
        return match (&l, &r) {
            (V::Str(a), V::Str(b)) => Ok(V::Str(format!("{a}{b}"))),
            (V::Null | V::Str(_), V::Null | V::Str(_)) => Ok(V::Null),
            _ => mismatch(&l, &r),
        };
    }
    let numeric = |v: &Value| matches!(v, V::Null | V::Int(_) | V::Float(_));
    if !numeric(&l) || !numeric(&r) {
        return mismatch(&l, &r);
    }
    Ok(match (l, r) {
        (V::Null, _) | (_, V::Null) => V::Null,
        (V::Int(a), V::Int(b)) if op != BinaryOp::Div => {
            let out = match op {
                BinaryOp::Add => ops::int_add(a, b),
                BinaryOp::Sub => ops::int_sub(a, b),
                BinaryOp::Mul => ops::int_mul(a, b),
                BinaryOp::Mod => ops::int_mod(a, b),
                _ => unreachable!("arithmetic"),
            };
            out.map_or(V::Null, V::Int)
        }
        (a, b) => {
            let (Some(a), Some(b)) = (a.to_f64(), b.to_f64()) else {
                unreachable!("numbers")
            };
            V::Float(match op {
                BinaryOp::Add => a + b,
                BinaryOp::Sub => a - b,
                BinaryOp::Mul => a * b,
                BinaryOp::Div => ops::float_div(a, b),
                BinaryOp::Mod => ops::float_mod(a, b),
                _ => unreachable!("arithmetic"),
            })
        }
    })
}

fn function(f: Function, args: Vec<Value>) -> Result<Value, String> {
    use Value as V;
    let needs = |what: &str, v: &Value| Err(format!("{f}() needs {what}, found {}", type_name(v)));
    let first = args.first().cloned().unwrap_or(V::Null);
    Ok(match f {
        Function::Coalesce => args.into_iter().find(|v| !v.is_null()).unwrap_or(V::Null),
        Function::Least | Function::Greatest => {
            ops::least_or_greatest(&args, f == Function::Least)?
        }
        _ if first.is_null() => V::Null,
        Function::Abs => match first {
            V::Int(i) => ops::int_abs(i).map_or(V::Null, V::Int),
            V::Float(x) => V::Float(x.abs()),
            v => return needs("a number", &v),
        },
        Function::Floor | Function::Ceil => match first {
            V::Int(i) => V::Int(i),
            V::Float(x) => V::Float(if f == Function::Floor {
                x.floor()
            } else {
                x.ceil()
            }),
            v => return needs("a number", &v),
        },
        Function::Round => {
            let digits = match args.get(1) {
                None => 0,
                Some(V::Int(d)) if (0..=15).contains(d) => *d as u32,
                Some(other) => {
                    return Err(format!(
                        "round() takes its digits as an integer from 0 to 15, found {other}"
                    ));
                }
            };
            match first {
                V::Int(i) => V::Int(i),
                V::Float(x) => V::Float(ops::round(x, digits)),
                v => return needs("a number", &v),
            }
        }
        Function::Ln | Function::Log10 | Function::Log1p | Function::Exp | Function::Sqrt => {
            let x = match first {
                V::Int(i) => i as f64,
                V::Float(x) => x,
                v => return needs("a number", &v),
            };
            V::Float(match f {
                Function::Ln => ops::ln(x),
                Function::Log10 => ops::log10(x),
                Function::Log1p => ops::log1p(x),
                Function::Exp => ops::exp(x),
                _ => ops::sqrt(x),
            })
        }
        Function::Lower | Function::Upper | Function::Length => match first {
            V::Str(s) => match f {
                Function::Lower => V::Str(s.to_lowercase()),
                Function::Upper => V::Str(s.to_uppercase()),
                _ => V::Int(s.chars().count() as i64),
            },
            v => return needs("a string", &v),
        },
        Function::Year
        | Function::Quarter
        | Function::Month
        | Function::Day
        | Function::DayOfWeek
        | Function::DayOfYear => {
            let Some(days) = ops::day_of(&first) else {
                return needs("a date or a timestamp", &first);
            };
            let (y, m, d) = time::civil_from_days(days);
            V::Int(match f {
                Function::Year => y,
                Function::Quarter => i64::from((m - 1) / 3 + 1),
                Function::Month => i64::from(m),
                Function::Day => i64::from(d),
                Function::DayOfWeek => i64::from(time::weekday(days)),
                _ => i64::from(time::ordinal(days)),
            })
        }
        Function::Hour | Function::Minute | Function::Second => {
            let V::Timestamp(t) = first else {
                return needs("a timestamp", &first);
            };
            let (_, tod) = time::split_timestamp(t);
            V::Int(match f {
                Function::Hour => tod / time::MICROS_PER_HOUR,
                Function::Minute => tod % time::MICROS_PER_HOUR / time::MICROS_PER_MINUTE,
                _ => tod % time::MICROS_PER_MINUTE / time::MICROS_PER_SECOND,
            })
        }
    })
}
