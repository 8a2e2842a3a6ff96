//! Type checking, and making every implicit conversion explicit.
//!
//! After resolution:
//! - column types are normalised (categorical is `String`);
//! - the operands of `+ - * %` have the same type, `Int` or `Float`; `/` has `Float` operands;
//!   `||` has `String` operands; `AND`, `OR`, `NOT` and CASE conditions are `Bool`;
//! - the operands of a comparison, `IN` and `BETWEEN` have one type (ints meeting floats
//!   become floats, dates meeting timestamps become timestamps, string literals meeting
//!   dates or timestamps are parsed);
//! - the results of `CASE`, `coalesce`, `least`, `greatest` have one type;
//! - the float functions (`ln`, `exp`, …) take `Float`;
//! - an untyped `NULL` that meets an operator becomes a typed null (`Int` when nothing else
//!   decides), so only a whole null-typed expression, or one under `CAST`/`IS NULL`, stays
//!   untyped.

use super::{BinaryOp, Expr, Function, UnaryOp};
use crate::dtype::DType;
use crate::error::{Result, TransformError};
use crate::ops;
use crate::time;
use crate::value::Value;

/// A resolved expression and its type (`None`: always null, untyped).
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub expr: Expr,
    pub dtype: Option<DType>,
}

type Ty = Option<DType>;

pub(super) fn resolve(root: &Expr, types: &dyn Fn(&str) -> Option<DType>) -> Result<Resolved> {
    let (expr, dtype) = Cx { root, types }.go(root)?;
    Ok(Resolved { expr, dtype })
}

fn norm(t: DType) -> DType {
    if t == DType::Categorical {
        DType::String
    } else {
        t
    }
}

fn name(t: Ty) -> &'static str {
    t.map_or("null", DType::as_str)
}

/// The type two values unify to in CASE results and coalesce/least/greatest arguments:
/// `None` (outer) when they do not.
pub(crate) fn common_type(a: Ty, b: Ty) -> Option<Ty> {
    match (a.map(norm), b.map(norm)) {
        (None, x) | (x, None) => Some(x),
        (Some(a), Some(b)) if a == b => Some(Some(a)),
        (Some(DType::Int | DType::Float), Some(DType::Int | DType::Float)) => {
            Some(Some(DType::Float))
        }
        (Some(DType::Date | DType::Timestamp), Some(DType::Date | DType::Timestamp)) => {
            Some(Some(DType::Timestamp))
        }
        _ => None,
    }
}

/// Converts `e` (of type `from`) to `to`: nothing when it already is, a folded literal for a
/// literal, a `Cast` node otherwise.
fn coerce(e: Expr, from: Ty, to: DType) -> Expr {
    if from.map(norm) == Some(to) {
        return e;
    }
    if let Expr::Literal(v) = &e {
        if let Ok(cast) = ops::cast(v, to)
            && !cast.is_null()
        {
            return Expr::Literal(cast);
        }
        return Expr::Cast {
            expr: Box::new(Expr::Literal(Value::Null)),
            to,
        };
    }
    Expr::Cast {
        expr: Box::new(e),
        to,
    }
}

struct Cx<'a> {
    root: &'a Expr,
    types: &'a dyn Fn(&str) -> Option<DType>,
}

impl Cx<'_> {
    fn err(&self, message: impl Into<String>) -> TransformError {
        TransformError::type_error(self.root, message)
    }

    fn go(&self, e: &Expr) -> Result<(Expr, Ty)> {
        Ok(match e {
            Expr::Column(column) => match (self.types)(column) {
                Some(t) => (e.clone(), Some(norm(t))),
                None => {
                    return Err(TransformError::UnknownColumn {
                        expr: self.root.to_string(),
                        column: column.clone(),
                    });
                }
            },
            Expr::Literal(v) => (e.clone(), v.dtype()),
            Expr::Unary { op, expr } => {
                let (c, t) = self.go(expr)?;
                match (op, t) {
                    (UnaryOp::Neg, None) => (neg(coerce(c, t, DType::Int)), Some(DType::Int)),
                    (UnaryOp::Neg, Some(t)) if t.is_numeric() => (neg(c), Some(t)),
                    (UnaryOp::Neg, Some(t)) => {
                        return Err(self.err(format!("unary minus needs a number, found {t}")));
                    }
                    (UnaryOp::Not, None | Some(DType::Bool)) => (
                        Expr::Unary {
                            op: UnaryOp::Not,
                            expr: Box::new(coerce(c, t, DType::Bool)),
                        },
                        Some(DType::Bool),
                    ),
                    (UnaryOp::Not, Some(t)) => {
                        return Err(self.err(format!("NOT needs a boolean, found {t}")));
                    }
                }
            }
            Expr::Binary { op, left, right } => self.binary(*op, left, right)?,
            Expr::Case {
                branches,
                otherwise,
            } => {
                let mut conditions = Vec::with_capacity(branches.len());
                let mut results = Vec::with_capacity(branches.len() + 1);
                for (c, r) in branches {
                    let (c, ct) = self.go(c)?;
                    if !matches!(ct, None | Some(DType::Bool)) {
                        return Err(self.err(format!(
                            "a CASE condition must be a boolean, found {} in `{c}`",
                            name(ct)
                        )));
                    }
                    conditions.push(coerce(c, ct, DType::Bool));
                    results.push(self.go(r)?);
                }
                let otherwise = otherwise.as_deref().map(|e| self.go(e)).transpose()?;
                let target = self.unify(
                    results.iter().chain(otherwise.as_ref()).map(|(_, t)| *t),
                    "CASE",
                )?;
                let fix = |(e, t): (Expr, Ty)| match target {
                    Some(to) => coerce(e, t, to),
                    None => e,
                };
                (
                    Expr::Case {
                        branches: conditions
                            .into_iter()
                            .zip(results.into_iter().map(fix))
                            .collect(),
                        otherwise: otherwise.map(|o| Box::new(fix(o))),
                    },
                    target,
                )
            }
            Expr::Cast { expr, to } => {
                let to = norm(*to);
                let (c, t) = self.go(expr)?;
                match t {
                    None => (
                        Expr::Cast {
                            expr: Box::new(c),
                            to,
                        },
                        Some(to),
                    ),
                    Some(from) if ops::can_cast(from, to) => (coerce(c, t, to), Some(to)),
                    Some(from) => {
                        return Err(self.err(format!("cannot cast {from} to {to}")));
                    }
                }
            }
            Expr::Func { name, args } => self.function(*name, args)?,
            Expr::IsNull(inner) => (Expr::IsNull(Box::new(self.go(inner)?.0)), Some(DType::Bool)),
            Expr::IsNotNull(inner) => (
                Expr::IsNotNull(Box::new(self.go(inner)?.0)),
                Some(DType::Bool),
            ),
            Expr::InList {
                expr,
                list,
                negated,
            } => {
                let mut all = vec![self.go(expr)?];
                for item in list {
                    all.push(self.go(item)?);
                }
                let mut all = self.compare_operands(all, "IN")?.into_iter();
                let expr = Box::new(all.next().unwrap_or(Expr::Literal(Value::Null)));
                (
                    Expr::InList {
                        expr,
                        list: all.collect(),
                        negated: *negated,
                    },
                    Some(DType::Bool),
                )
            }
            Expr::Between {
                expr,
                low,
                high,
                negated,
            } => {
                let all = vec![self.go(expr)?, self.go(low)?, self.go(high)?];
                let mut all = self.compare_operands(all, "BETWEEN")?.into_iter();
                let mut next = || Box::new(all.next().unwrap_or(Expr::Literal(Value::Null)));
                (
                    Expr::Between {
                        expr: next(),
                        low: next(),
                        high: next(),
                        negated: *negated,
                    },
                    Some(DType::Bool),
                )
            }
        })
    }

    fn binary(&self, op: BinaryOp, left: &Expr, right: &Expr) -> Result<(Expr, Ty)> {
        let (l, lt) = self.go(left)?;
        let (r, rt) = self.go(right)?;
        let make = |l: Expr, r: Expr| Expr::Binary {
            op,
            left: Box::new(l),
            right: Box::new(r),
        };
        let numeric = |t: Ty| matches!(t, None | Some(DType::Int | DType::Float));
        Ok(match op {
            BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Mod | BinaryOp::Div => {
                if !numeric(lt) || !numeric(rt) {
                    return Err(self.err(format!(
                        "operator {} needs numbers, found {} and {}",
                        op.symbol(),
                        name(lt),
                        name(rt)
                    )));
                }
                let target = if op == BinaryOp::Div
                    || lt == Some(DType::Float)
                    || rt == Some(DType::Float)
                {
                    DType::Float
                } else {
                    DType::Int
                };
                (
                    make(coerce(l, lt, target), coerce(r, rt, target)),
                    Some(target),
                )
            }
            BinaryOp::Concat => {
                let text = |t: Ty| matches!(t, None | Some(DType::String));
                if !text(lt) || !text(rt) {
                    return Err(self.err(format!(
                        "operator || needs strings, found {} and {} (CAST numbers to VARCHAR first)",
                        name(lt),
                        name(rt)
                    )));
                }
                (
                    make(coerce(l, lt, DType::String), coerce(r, rt, DType::String)),
                    Some(DType::String),
                )
            }
            BinaryOp::And | BinaryOp::Or => {
                let boolean = |t: Ty| matches!(t, None | Some(DType::Bool));
                if !boolean(lt) || !boolean(rt) {
                    return Err(self.err(format!(
                        "{} needs booleans, found {} and {}",
                        op.symbol(),
                        name(lt),
                        name(rt)
                    )));
                }
                (
                    make(coerce(l, lt, DType::Bool), coerce(r, rt, DType::Bool)),
                    Some(DType::Bool),
                )
            }
            BinaryOp::Eq
            | BinaryOp::NotEq
            | BinaryOp::Lt
            | BinaryOp::LtEq
            | BinaryOp::Gt
            | BinaryOp::GtEq => {
                let mut both = self
                    .compare_operands(vec![(l, lt), (r, rt)], op.symbol())?
                    .into_iter();
                let (Some(l), Some(r)) = (both.next(), both.next()) else {
                    unreachable!("two operands in, two out")
                };
                (make(l, r), Some(DType::Bool))
            }
        })
    }

    /// The common type of CASE results or coalesce/least/greatest arguments.
    fn unify(&self, types: impl Iterator<Item = Ty>, what: &str) -> Result<Ty> {
        let mut out: Ty = None;
        for t in types {
            out = common_type(out, t)
                .ok_or_else(|| self.err(format!("{what} mixes {} and {}", name(out), name(t))))?;
        }
        Ok(out)
    }

    /// Brings the operands of a comparison (or IN, BETWEEN) to one type.
    fn compare_operands(&self, operands: Vec<(Expr, Ty)>, what: &str) -> Result<Vec<Expr>> {
        let temporal = |t: Ty| matches!(t, Some(DType::Date | DType::Timestamp));
        let target: Ty = if operands.iter().any(|(_, t)| temporal(*t)) {
            let target = if operands.iter().any(|(_, t)| *t == Some(DType::Timestamp)) {
                DType::Timestamp
            } else {
                DType::Date
            };
            for (e, t) in &operands {
                let string_literal = matches!(e, Expr::Literal(Value::Str(_)));
                if !(t.is_none() || temporal(*t) || string_literal) {
                    return Err(self.err(format!(
                        "{what} cannot compare {target} with {} `{e}`",
                        name(*t)
                    )));
                }
            }
            Some(target)
        } else {
            let mut out: Ty = None;
            for (e, t) in &operands {
                out = common_type(out, *t).ok_or_else(|| {
                    self.err(format!(
                        "{what} cannot compare {} with {} `{e}`",
                        name(out),
                        name(*t)
                    ))
                })?;
            }
            // Two untyped nulls compare as ints (the result is null either way).
            Some(out.unwrap_or(DType::Int))
        };
        let Some(target) = target else {
            return Ok(operands.into_iter().map(|(e, _)| e).collect());
        };
        operands
            .into_iter()
            .map(|(e, t)| match (&e, target) {
                (Expr::Literal(Value::Str(s)), DType::Date) => time::parse_date(s)
                    .map(|d| Expr::Literal(Value::Date(d)))
                    .ok_or_else(|| self.err(format!("'{s}' is not a date (YYYY-MM-DD)"))),
                (Expr::Literal(Value::Str(s)), DType::Timestamp) => time::parse_timestamp(s)
                    .map(|d| Expr::Literal(Value::Timestamp(d)))
                    .ok_or_else(|| {
                        self.err(format!("'{s}' is not a timestamp (YYYY-MM-DD HH:MM:SS)"))
                    }),
                _ => Ok(coerce(e, t, target)),
            })
            .collect()
    }

    fn function(&self, f: Function, args: &[Expr]) -> Result<(Expr, Ty)> {
        let (min, max) = f.arity();
        if args.len() < min || max.is_some_and(|max| args.len() > max) {
            return Err(self.err(format!(
                "{f}() does not take {} argument{}",
                args.len(),
                if args.len() == 1 { "" } else { "s" }
            )));
        }
        if f == Function::Round {
            super::parse::check_round_digits(args).map_err(|m| self.err(m))?;
        }
        let resolved: Vec<(Expr, Ty)> = args.iter().map(|a| self.go(a)).collect::<Result<_>>()?;
        let types: Vec<Ty> = resolved.iter().map(|(_, t)| *t).collect();
        let out = f.result_type(&types).map_err(|m| self.err(m))?;
        let arg_target: Option<DType> = match f {
            Function::Ln | Function::Log10 | Function::Log1p | Function::Exp | Function::Sqrt => {
                Some(DType::Float)
            }
            Function::Least | Function::Greatest | Function::Coalesce => out,
            Function::Lower | Function::Upper | Function::Length => Some(DType::String),
            Function::Hour | Function::Minute | Function::Second => Some(DType::Timestamp),
            Function::Year
            | Function::Quarter
            | Function::Month
            | Function::Day
            | Function::DayOfWeek
            | Function::DayOfYear => Some(types[0].unwrap_or(DType::Date)),
            // abs/round/floor/ceil of an untyped null: an int null.
            Function::Abs | Function::Round | Function::Floor | Function::Ceil => {
                Some(types[0].unwrap_or(DType::Int))
            }
        };
        let out = match f {
            Function::Abs | Function::Round | Function::Floor | Function::Ceil => arg_target,
            _ => out,
        };
        let args = resolved
            .into_iter()
            .enumerate()
            .map(|(i, (e, t))| match arg_target {
                // round's digits stay an int literal.
                Some(to) if !(f == Function::Round && i == 1) => coerce(e, t, to),
                _ => e,
            })
            .collect();
        Ok((Expr::Func { name: f, args }, out))
    }
}

fn neg(e: Expr) -> Expr {
    Expr::Unary {
        op: UnaryOp::Neg,
        expr: Box::new(e),
    }
}
