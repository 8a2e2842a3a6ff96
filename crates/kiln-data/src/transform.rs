//! Kiln's feature-transform language on Polars: derived-column expressions compiled to Polars
//! expressions, and transform specs (derive, one-hot, ordinal) applied to lazy frames.
//!
//! The semantics are the row evaluator's (`kiln_transform::Expr::eval`), bit for bit:
//! expressions are first resolved (`Expr::resolve`), which makes every implicit conversion
//! explicit, and each resolved node is then compiled to native Polars where Polars' kernel
//! computes exactly what `kiln_transform::ops` computes (float `+ - *`, comparisons in
//! Polars' total order, Kleene `AND`/`OR`, `CASE`, integer `%`, date parts,
//! `lower`/`upper`), and to an element-wise kernel that calls `kiln_transform::ops` where
//! Polars would differ: integer `+ - *`, unary minus and `abs` (Polars wraps on overflow,
//! Kiln gives null), float `/` (Polars multiplies by the reciprocal of a scalar divisor),
//! float `%`, `ln`, `log10`, `log1p`, `exp`, `sqrt`, `round`, `least`/`greatest`, and casts
//! from strings and floats.
//!
//! Column types are normalised on read: every integer type is Int64, Float32 is Float64,
//! Categorical and Enum are String, Datetime of any unit or zone is Datetime(us) (UTC, naive).

use std::collections::HashMap;
use std::sync::Arc;

use kiln_transform::ops;
use kiln_transform::time::{self, MICROS_PER_DAY};
use kiln_transform::{
    BinaryOp, DType, Expr, Function, Step, TransformError, TransformSpec, UnaryOp, Value,
};
use polars::prelude::{
    AnyValue, BooleanChunked, Column as PlColumn, DataFrame, DataType, Expr as PlExpr, Field,
    Float64Chunked, Int32Chunked, Int64Chunked, IntoColumn, IntoSeries, LazyFrame, NULL, NamedFrom,
    PlSmallStr, PolarsResult, Schema, Series, StringChunked, TimeUnit, col, concat_str, lit,
    polars_bail, when,
};

type Result<T, E = TransformError> = std::result::Result<T, E>;
type Ty = Option<DType>;

/// The Polars type of a Kiln type (as columns hold it after normalisation).
pub fn polars_dtype(t: DType) -> DataType {
    match t {
        DType::Int => DataType::Int64,
        DType::Float => DataType::Float64,
        DType::Bool => DataType::Boolean,
        DType::String | DType::Categorical => DataType::String,
        DType::Date => DataType::Date,
        DType::Timestamp => DataType::Datetime(TimeUnit::Microseconds, None),
    }
}

/// The Kiln type of a Polars column type; `None` for types expressions cannot read (lists,
/// structs, binary, durations, times, …). A column of nulls only reads as float.
pub fn kiln_dtype(t: &DataType) -> Option<DType> {
    Some(match t {
        t if t.is_integer() => DType::Int,
        t if t.is_float() || t.is_decimal() => DType::Float,
        DataType::Null => DType::Float,
        DataType::Boolean => DType::Bool,
        DataType::String => DType::String,
        DataType::Categorical(..) | DataType::Enum(..) => DType::Categorical,
        DataType::Date => DType::Date,
        DataType::Datetime(..) => DType::Timestamp,
        _ => return None,
    })
}

fn engine(e: polars::error::PolarsError) -> TransformError {
    TransformError::Engine(e.to_string())
}

fn unreadable(name: &str, t: &DataType, expr: String) -> TransformError {
    TransformError::Type {
        expr,
        message: format!("column `{name}` has type {t}, which expressions cannot read"),
    }
}

/// Reads a column of the given Polars type as Kiln's normalised type.
fn read_column(name: &str, dtype: &DataType, expr_text: &dyn Fn() -> String) -> Result<PlExpr> {
    let c = col(name);
    Ok(match dtype {
        DataType::Int64
        | DataType::Float64
        | DataType::Boolean
        | DataType::String
        | DataType::Date => c,
        DataType::Datetime(TimeUnit::Microseconds, None) => c,
        DataType::Datetime(unit, _) => {
            // The physical value is the UTC instant in the column's unit.
            let physical = c.to_physical();
            let micros = match unit {
                TimeUnit::Nanoseconds => physical.floor_div(lit(1_000i64)),
                TimeUnit::Microseconds => physical,
                TimeUnit::Milliseconds => physical * lit(1_000i64),
            };
            micros.cast(polars_dtype(DType::Timestamp))
        }
        t => match kiln_dtype(t) {
            Some(k) => c.cast(polars_dtype(k)),
            None => return Err(unreadable(name, t, expr_text())),
        },
    })
}

/// Compiles a Kiln expression to a Polars expression over a frame with this schema. The result
/// has the Polars type of the expression's Kiln type (see [`polars_dtype`]); it is unnamed
/// (alias it). Errors are the type checker's, or a column of a type expressions cannot read.
pub fn compile(expr: &Expr, schema: &Schema) -> Result<PlExpr> {
    let text = || expr.to_string();
    for column in expr.columns() {
        if let Some(t) = schema.get(&column)
            && kiln_dtype(t).is_none()
        {
            return Err(unreadable(&column, t, text()));
        }
    }
    let types = |name: &str| schema.get(name).and_then(kiln_dtype);
    let resolved = expr.resolve(&types)?;
    let (out, _) = Compiler {
        schema,
        text: &text,
    }
    .node(&resolved.expr)?;
    Ok(out)
}

struct Compiler<'a> {
    schema: &'a Schema,
    text: &'a dyn Fn() -> String,
}

fn typed_null(t: Ty) -> PlExpr {
    match t {
        Some(t) => lit(NULL).cast(polars_dtype(t)),
        None => lit(NULL),
    }
}

fn literal(v: &Value) -> PlExpr {
    match v {
        Value::Null => lit(NULL),
        Value::Bool(b) => lit(*b),
        // Number literals are "dynamic" in Polars (they take the type of what they meet);
        // Kiln's are Int64 and Float64.
        Value::Int(i) => lit(*i).cast(DataType::Int64),
        Value::Float(x) => lit(*x).cast(DataType::Float64),
        Value::Str(s) => lit(s.as_str()),
        Value::Date(d) => lit(*d).cast(DataType::Date),
        Value::Timestamp(t) => lit(*t).cast(polars_dtype(DType::Timestamp)),
    }
}

/// Kleene OR over many expressions, as a balanced tree.
fn or_all(mut items: Vec<PlExpr>) -> PlExpr {
    match items.len() {
        0 => lit(false),
        1 => items.pop().unwrap_or_else(|| lit(false)),
        n => {
            let right = items.split_off(n / 2);
            or_all(items).or(or_all(right))
        }
    }
}

impl Compiler<'_> {
    fn node(&self, e: &Expr) -> Result<(PlExpr, Ty)> {
        Ok(match e {
            Expr::Column(name) => {
                let dtype = self
                    .schema
                    .get(name)
                    .ok_or_else(|| TransformError::UnknownColumn {
                        expr: (self.text)(),
                        column: name.clone(),
                    })?;
                let t = kiln_dtype(dtype).map(|t| {
                    if t == DType::Categorical {
                        DType::String
                    } else {
                        t
                    }
                });
                (read_column(name, dtype, self.text)?, t)
            }
            Expr::Literal(v) => (literal(v), v.dtype()),
            Expr::Unary { op, expr } => {
                let (x, t) = self.node(expr)?;
                match (op, t) {
                    (UnaryOp::Not, _) => (x.not(), Some(DType::Bool)),
                    (UnaryOp::Neg, Some(DType::Int)) => (unary_i64(x, ops::int_neg), t),
                    (UnaryOp::Neg, _) => (-x, t),
                }
            }
            Expr::Binary { op, left, right } => {
                let (l, lt) = self.node(left)?;
                let (r, rt) = self.node(right)?;
                let t = lt.or(rt);
                match op {
                    // Checked integer arithmetic: Polars wraps on overflow, Kiln gives null.
                    BinaryOp::Add if t == Some(DType::Int) => (binary_i64(l, r, ops::int_add), t),
                    BinaryOp::Sub if t == Some(DType::Int) => (binary_i64(l, r, ops::int_sub), t),
                    BinaryOp::Mul if t == Some(DType::Int) => (binary_i64(l, r, ops::int_mul), t),
                    BinaryOp::Add => (l + r, t),
                    BinaryOp::Sub => (l - r, t),
                    BinaryOp::Mul => (l * r, t),
                    BinaryOp::Mod if t == Some(DType::Int) => (l % r, t),
                    BinaryOp::Mod => (binary_f64(l, r, ops::float_mod), Some(DType::Float)),
                    BinaryOp::Div => (binary_f64(l, r, ops::float_div), Some(DType::Float)),
                    BinaryOp::Concat => (concat_str([l, r], "", false), Some(DType::String)),
                    BinaryOp::Eq => (l.eq(r), Some(DType::Bool)),
                    BinaryOp::NotEq => (l.neq(r), Some(DType::Bool)),
                    BinaryOp::Lt => (l.lt(r), Some(DType::Bool)),
                    BinaryOp::LtEq => (l.lt_eq(r), Some(DType::Bool)),
                    BinaryOp::Gt => (l.gt(r), Some(DType::Bool)),
                    BinaryOp::GtEq => (l.gt_eq(r), Some(DType::Bool)),
                    BinaryOp::And => (l.and(r), Some(DType::Bool)),
                    BinaryOp::Or => (l.or(r), Some(DType::Bool)),
                }
            }
            Expr::Case {
                branches,
                otherwise,
            } => {
                let mut compiled = Vec::with_capacity(branches.len());
                let mut t: Ty = None;
                for (c, r) in branches {
                    let (c, _) = self.node(c)?;
                    let (r, rt) = self.node(r)?;
                    t = t.or(rt);
                    compiled.push((c, r));
                }
                let mut out = match otherwise {
                    Some(e) => {
                        let (e, et) = self.node(e)?;
                        t = t.or(et);
                        e
                    }
                    None => typed_null(t),
                };
                // A null condition is not true, so it falls through, as Polars' `when` does.
                for (c, r) in compiled.into_iter().rev() {
                    out = when(c).then(r).otherwise(out);
                }
                (out, t)
            }
            Expr::Cast { expr, to } => {
                let (x, from) = self.node(expr)?;
                (cast(x, from, *to), Some(*to))
            }
            Expr::Func { name, args } => self.function(*name, args)?,
            Expr::IsNull(inner) => (self.node(inner)?.0.is_null(), Some(DType::Bool)),
            Expr::IsNotNull(inner) => (self.node(inner)?.0.is_not_null(), Some(DType::Bool)),
            Expr::InList {
                expr,
                list,
                negated,
            } => {
                let (x, _) = self.node(expr)?;
                let items = list
                    .iter()
                    .map(|item| Ok(x.clone().eq(self.node(item)?.0)))
                    .collect::<Result<Vec<_>>>()?;
                let out = or_all(items);
                (if *negated { out.not() } else { out }, Some(DType::Bool))
            }
            Expr::Between {
                expr,
                low,
                high,
                negated,
            } => {
                let (x, _) = self.node(expr)?;
                let (low, _) = self.node(low)?;
                let (high, _) = self.node(high)?;
                let out = x.clone().gt_eq(low).and(x.lt_eq(high));
                (if *negated { out.not() } else { out }, Some(DType::Bool))
            }
        })
    }

    fn function(&self, f: Function, args: &[Expr]) -> Result<(PlExpr, Ty)> {
        let compiled = args
            .iter()
            .map(|a| self.node(a))
            .collect::<Result<Vec<_>>>()?;
        let types: Vec<Ty> = compiled.iter().map(|(_, t)| *t).collect();
        let out_t = f
            .result_type(&types)
            .map_err(|message| TransformError::Type {
                expr: (self.text)(),
                message,
            })?;
        let mut exprs: Vec<PlExpr> = compiled.into_iter().map(|(e, _)| e).collect();
        let t = types.first().copied().flatten();
        let x = exprs[0].clone();
        let int = |e: PlExpr| e.cast(DataType::Int64);
        Ok(match f {
            Function::Abs if t == Some(DType::Int) => (unary_i64(x, ops::int_abs), t),
            Function::Abs => (x.abs(), t),
            Function::Floor | Function::Ceil | Function::Round if t == Some(DType::Int) => (x, t),
            Function::Floor => (x.floor(), t),
            Function::Ceil => (x.ceil(), t),
            Function::Round => {
                let digits = match args.get(1) {
                    Some(Expr::Literal(Value::Int(d))) => *d as u32,
                    _ => 0,
                };
                (
                    unary_f64(x, move |v| ops::round(v, digits)),
                    Some(DType::Float),
                )
            }
            Function::Ln => (unary_f64(x, ops::ln), out_t),
            Function::Log10 => (unary_f64(x, ops::log10), out_t),
            Function::Log1p => (unary_f64(x, ops::log1p), out_t),
            Function::Exp => (unary_f64(x, ops::exp), out_t),
            Function::Sqrt => (unary_f64(x, ops::sqrt), out_t),
            Function::Coalesce => {
                let mut out = exprs.pop().unwrap_or_else(|| typed_null(out_t));
                for e in exprs.into_iter().rev() {
                    out = when(e.clone().is_not_null()).then(e).otherwise(out);
                }
                (out, out_t)
            }
            Function::Least | Function::Greatest => {
                let least = f == Function::Least;
                let pick: ValueFn = Arc::new(move |v: &[Value]| {
                    // Resolved arguments share one type, so comparing cannot fail.
                    ops::least_or_greatest(v, least).unwrap_or(Value::Null)
                });
                (map_values(exprs, out_t, pick), out_t)
            }
            Function::Lower => (x.str().to_lowercase(), out_t),
            Function::Upper => (x.str().to_uppercase(), out_t),
            Function::Length => (int(x.str().len_chars()), out_t),
            Function::Year => (int(x.dt().year()), out_t),
            Function::Quarter => (int(x.dt().quarter()), out_t),
            Function::Month => (int(x.dt().month()), out_t),
            Function::Day => (int(x.dt().day()), out_t),
            Function::DayOfWeek => (int(x.dt().weekday()), out_t),
            Function::DayOfYear => (int(x.dt().ordinal_day()), out_t),
            Function::Hour => (int(x.dt().hour()), out_t),
            Function::Minute => (int(x.dt().minute()), out_t),
            Function::Second => (int(x.dt().second()), out_t),
        })
    }
}

/// An Int64 → Int64 element-wise kernel whose `None` is null (nulls stay null).
fn unary_i64(x: PlExpr, f: fn(i64) -> Option<i64>) -> PlExpr {
    x.map(
        move |c: PlColumn| {
            let s = c.as_materialized_series().cast(&DataType::Int64)?;
            let out: Int64Chunked = s.i64()?.iter().map(|v| v.and_then(f)).collect();
            Ok(out.with_name(s.name().clone()).into_column())
        },
        |_, field| Ok(Field::new(field.name().clone(), DataType::Int64)),
    )
}

/// An (Int64, Int64) → Int64 element-wise kernel: null when either is null or `f` gives
/// `None` (an overflow).
fn binary_i64(a: PlExpr, b: PlExpr, f: fn(i64, i64) -> Option<i64>) -> PlExpr {
    a.map_many(
        move |cols: &mut [PlColumn]| {
            let x = cols[0].as_materialized_series().cast(&DataType::Int64)?;
            let y = cols[1].as_materialized_series().cast(&DataType::Int64)?;
            let n = broadcast_len(&[x.len(), y.len()])?;
            let (xa, ya) = (x.i64()?, y.i64()?);
            let at = |ca: &Int64Chunked, i: usize| ca.get(if ca.len() == 1 { 0 } else { i });
            let out: Int64Chunked = (0..n)
                .map(|i| match (at(xa, i), at(ya, i)) {
                    (Some(p), Some(q)) => f(p, q),
                    _ => None,
                })
                .collect();
            Ok(out.with_name(x.name().clone()).into_column())
        },
        &[b],
        |_, fields| Ok(Field::new(fields[0].name().clone(), DataType::Int64)),
    )
}

/// A Float64 → Float64 element-wise kernel (nulls stay null).
fn unary_f64(x: PlExpr, f: impl Fn(f64) -> f64 + Send + Sync + 'static) -> PlExpr {
    x.map(
        move |c: PlColumn| {
            let s = c.as_materialized_series().cast(&DataType::Float64)?;
            let out: Float64Chunked = s.f64()?.iter().map(|v| v.map(&f)).collect();
            Ok(out.with_name(s.name().clone()).into_column())
        },
        |_, field| Ok(Field::new(field.name().clone(), DataType::Float64)),
    )
}

/// The length of the output of a kernel over inputs that may be broadcast scalars.
fn broadcast_len(lens: &[usize]) -> PolarsResult<usize> {
    let n = lens.iter().copied().filter(|&l| l != 1).max().unwrap_or(1);
    if lens.iter().any(|&l| l != 1 && l != n) {
        polars_bail!(ShapeMismatch: "kernel inputs of lengths {lens:?}");
    }
    Ok(n)
}

/// A (Float64, Float64) → Float64 element-wise kernel, null when either is null.
fn binary_f64(a: PlExpr, b: PlExpr, f: fn(f64, f64) -> f64) -> PlExpr {
    a.map_many(
        move |cols: &mut [PlColumn]| {
            let x = cols[0].as_materialized_series().cast(&DataType::Float64)?;
            let y = cols[1].as_materialized_series().cast(&DataType::Float64)?;
            let n = broadcast_len(&[x.len(), y.len()])?;
            let (xa, ya) = (x.f64()?, y.f64()?);
            let at = |ca: &Float64Chunked, i: usize| ca.get(if ca.len() == 1 { 0 } else { i });
            let out: Float64Chunked = (0..n)
                .map(|i| match (at(xa, i), at(ya, i)) {
                    (Some(p), Some(q)) => Some(f(p, q)),
                    _ => None,
                })
                .collect();
            Ok(out.with_name(x.name().clone()).into_column())
        },
        &[b],
        |_, fields| Ok(Field::new(fields[0].name().clone(), DataType::Float64)),
    )
}

/// Reads one cell of a normalised column as a Kiln value.
pub fn value_of(v: &AnyValue<'_>) -> Value {
    match v {
        AnyValue::Null => Value::Null,
        AnyValue::Boolean(b) => Value::Bool(*b),
        AnyValue::String(s) => Value::Str((*s).to_string()),
        AnyValue::StringOwned(s) => Value::Str(s.to_string()),
        AnyValue::Int8(i) => Value::Int(i64::from(*i)),
        AnyValue::Int16(i) => Value::Int(i64::from(*i)),
        AnyValue::Int32(i) => Value::Int(i64::from(*i)),
        AnyValue::Int64(i) => Value::Int(*i),
        AnyValue::UInt8(i) => Value::Int(i64::from(*i)),
        AnyValue::UInt16(i) => Value::Int(i64::from(*i)),
        AnyValue::UInt32(i) => Value::Int(i64::from(*i)),
        AnyValue::UInt64(i) => i64::try_from(*i).map_or(Value::Null, Value::Int),
        AnyValue::Float32(x) => Value::Float(f64::from(*x)),
        AnyValue::Float64(x) => Value::Float(*x),
        AnyValue::Date(d) => Value::Date(*d),
        AnyValue::Datetime(t, unit, _) | AnyValue::DatetimeOwned(t, unit, _) => {
            Value::Timestamp(match unit {
                TimeUnit::Nanoseconds => t.div_euclid(1_000),
                TimeUnit::Microseconds => *t,
                TimeUnit::Milliseconds => t.saturating_mul(1_000),
            })
        }
        other => match other.get_str() {
            Some(s) => Value::Str(s.to_string()),
            None => Value::Null,
        },
    }
}

/// Builds a column of Kiln type `t` from values (which must be of that type or null).
fn series_of(name: PlSmallStr, t: Ty, values: Vec<Value>) -> PolarsResult<Series> {
    Ok(match t {
        None => Series::full_null(name, values.len(), &DataType::Null),
        Some(DType::Int) => values
            .into_iter()
            .map(|v| match v {
                Value::Int(i) => Some(i),
                _ => None,
            })
            .collect::<Int64Chunked>()
            .with_name(name)
            .into_series(),
        Some(DType::Float) => values
            .into_iter()
            .map(|v| match v {
                Value::Float(x) => Some(x),
                _ => None,
            })
            .collect::<Float64Chunked>()
            .with_name(name)
            .into_series(),
        Some(DType::Bool) => values
            .into_iter()
            .map(|v| match v {
                Value::Bool(b) => Some(b),
                _ => None,
            })
            .collect::<BooleanChunked>()
            .with_name(name)
            .into_series(),
        Some(DType::String | DType::Categorical) => values
            .into_iter()
            .map(|v| match v {
                Value::Str(s) => Some(s),
                _ => None,
            })
            .collect::<StringChunked>()
            .with_name(name)
            .into_series(),
        Some(DType::Date) => values
            .into_iter()
            .map(|v| match v {
                Value::Date(d) => Some(d),
                _ => None,
            })
            .collect::<Int32Chunked>()
            .with_name(name)
            .into_series()
            .cast(&DataType::Date)?,
        Some(DType::Timestamp) => values
            .into_iter()
            .map(|v| match v {
                Value::Timestamp(t) => Some(t),
                _ => None,
            })
            .collect::<Int64Chunked>()
            .with_name(name)
            .into_series()
            .cast(&polars_dtype(DType::Timestamp))?,
    })
}

type ValueFn = Arc<dyn Fn(&[Value]) -> Value + Send + Sync>;

/// A generic element-wise kernel over Kiln values: slow-ish (one `Value` per cell), used for
/// the rare operations whose exact semantics only `kiln_transform::ops` has.
fn map_values(mut inputs: Vec<PlExpr>, out: Ty, f: ValueFn) -> PlExpr {
    let first = inputs.remove(0);
    let out_dtype = out.map_or(DataType::Null, polars_dtype);
    first.map_many(
        move |cols: &mut [PlColumn]| {
            let series: Vec<&Series> = cols.iter().map(|c| c.as_materialized_series()).collect();
            let lens: Vec<usize> = series.iter().map(|s| s.len()).collect();
            let n = broadcast_len(&lens)?;
            let mut args = Vec::with_capacity(series.len());
            let mut values = Vec::with_capacity(n);
            for i in 0..n {
                args.clear();
                for s in &series {
                    let av = s.get(if s.len() == 1 { 0 } else { i })?;
                    args.push(value_of(&av));
                }
                values.push(f(&args));
            }
            Ok(series_of(series[0].name().clone(), out, values)?.into_column())
        },
        &inputs,
        move |_, fields| Ok(Field::new(fields[0].name().clone(), out_dtype.clone())),
    )
}

/// A String → `to` element-wise kernel.
fn from_str(x: PlExpr, to: DType, f: fn(&str) -> Value) -> PlExpr {
    let out_dtype = polars_dtype(to);
    x.map(
        move |c: PlColumn| {
            let s = c.as_materialized_series().cast(&DataType::String)?;
            let values: Vec<Value> = s.str()?.iter().map(|v| v.map_or(Value::Null, f)).collect();
            Ok(series_of(s.name().clone(), Some(to), values)?.into_column())
        },
        move |_, field| Ok(Field::new(field.name().clone(), out_dtype.clone())),
    )
}

/// The non-strict cast of `ops::cast`, in Polars.
fn cast(x: PlExpr, from: Ty, to: DType) -> PlExpr {
    let to = if to == DType::Categorical {
        DType::String
    } else {
        to
    };
    let Some(from) = from else {
        return x.cast(polars_dtype(to));
    };
    let from = if from == DType::Categorical {
        DType::String
    } else {
        from
    };
    use DType as T;
    let via_values = |x: PlExpr| {
        map_values(
            vec![x],
            Some(to),
            Arc::new(move |v: &[Value]| ops::cast(&v[0], to).unwrap_or(Value::Null)),
        )
    };
    match (from, to) {
        (a, b) if a == b => x,
        (T::Int | T::Bool, T::Float) | (T::Bool, T::Int) => x.cast(polars_dtype(to)),
        (T::Int, T::Bool) => x.neq(lit(0i64)),
        (T::Int, T::String) => x.cast(DataType::String),
        (T::Int, T::Date) => x.cast(DataType::Int32).cast(DataType::Date),
        (T::Int, T::Timestamp) => x.cast(polars_dtype(T::Timestamp)),
        (T::Date | T::Timestamp, T::Int) => x.to_physical().cast(DataType::Int64),
        (T::Date | T::Timestamp, T::Float) => x.to_physical().cast(DataType::Float64),
        (T::Date, T::Timestamp) => {
            let days = x.to_physical().cast(DataType::Int64);
            let limit = i64::MAX / MICROS_PER_DAY;
            when(days.clone().abs().gt(lit(limit)))
                .then(lit(NULL).cast(DataType::Int64))
                .otherwise(days * lit(MICROS_PER_DAY))
                .cast(polars_dtype(T::Timestamp))
        }
        (T::Timestamp, T::Date) => x
            .to_physical()
            .floor_div(lit(MICROS_PER_DAY))
            .cast(DataType::Int32)
            .cast(DataType::Date),
        (T::String, T::Int) => {
            from_str(x, to, |s| ops::parse_int(s).map_or(Value::Null, Value::Int))
        }
        (T::String, T::Float) => from_str(x, to, |s| {
            ops::parse_float(s).map_or(Value::Null, Value::Float)
        }),
        (T::String, T::Bool) => from_str(x, to, |s| {
            ops::parse_bool(s).map_or(Value::Null, Value::Bool)
        }),
        (T::String, T::Date) => from_str(x, to, |s| {
            time::parse_date(s).map_or(Value::Null, Value::Date)
        }),
        (T::String, T::Timestamp) => from_str(x, to, |s| {
            time::parse_timestamp(s).map_or(Value::Null, Value::Timestamp)
        }),
        // Floats to ints, bools and strings; bools, dates and timestamps to strings.
        _ => via_values(x),
    }
}

/// The text form of a column for one-hot and ordinal encoding (see
/// `kiln_transform::spec::category_key`): strings as they are, ints in decimal, bools as
/// `true`/`false`.
fn category_text(name: &str, t: DType) -> PlExpr {
    match t {
        DType::Bool => when(col(name)).then(lit("true")).otherwise(
            when(col(name).not())
                .then(lit("false"))
                .otherwise(lit(NULL).cast(DataType::String)),
        ),
        DType::Int => col(name).cast(DataType::String),
        _ => col(name),
    }
}

/// Applies a spec's steps to a frame holding its raw inputs: reads each input as its
/// declared type (a frame column of another type is cast with `CAST` semantics), adds the
/// derived and encoded columns, and selects `spec.outputs` in order as Float64 (bools 1/0,
/// nulls NaN).
pub fn apply_steps(mut lf: LazyFrame, spec: &TransformSpec) -> Result<LazyFrame> {
    spec.validate()?;
    let schema = lf.collect_schema().map_err(engine)?;
    let mut inputs = Vec::with_capacity(spec.inputs.len());
    let mut current = Schema::with_capacity(spec.inputs.len() + spec.steps.len());
    for c in &spec.inputs {
        if !schema.contains(&c.name) {
            return Err(TransformError::MissingInput {
                column: c.name.clone(),
            });
        }
        let read = Expr::Cast {
            expr: Box::new(Expr::column(c.name.clone())),
            to: c.dtype,
        };
        inputs.push(compile(&read, &schema)?.alias(c.name.as_str()));
        current.with_column(c.name.as_str().into(), polars_dtype(c.dtype));
    }
    lf = lf.with_columns(inputs);
    let mut kinds: HashMap<String, DType> = spec
        .inputs
        .iter()
        .map(|c| (c.name.clone(), c.dtype))
        .collect();
    for step in &spec.steps {
        match step {
            Step::Derive { name, expr, dtype } => {
                let parsed = Expr::parse(expr)?;
                let compiled = compile(&parsed, &current)?;
                lf = lf.with_column(compiled.alias(name.as_str()));
                current.with_column(name.as_str().into(), polars_dtype(*dtype));
                kinds.insert(name.clone(), *dtype);
            }
            Step::OneHot { column, categories } => {
                let t = kinds[column];
                let columns = categories
                    .iter()
                    .map(|category| {
                        let name = Step::one_hot_name(column, category);
                        when(category_text(column, t).eq(lit(category.as_str())))
                            .then(lit(1.0))
                            .otherwise(lit(0.0))
                            .alias(name.as_str())
                    })
                    .collect::<Vec<_>>();
                lf = lf.with_columns(columns);
                for category in categories {
                    let name = Step::one_hot_name(column, category);
                    current.with_column(name.as_str().into(), DataType::Float64);
                    kinds.insert(name, DType::Float);
                }
            }
            Step::Ordinal { column, categories } => {
                let t = kinds[column];
                let code = if categories.is_empty() {
                    lit(f64::NAN)
                } else {
                    let old = Series::new("old".into(), categories.as_slice());
                    let new = Series::new(
                        "new".into(),
                        (0..categories.len()).map(|i| i as f64).collect::<Vec<_>>(),
                    );
                    category_text(column, t)
                        .replace_strict(
                            lit(old),
                            lit(new),
                            Some(lit(f64::NAN)),
                            Some(DataType::Float64),
                        )
                        .fill_null(lit(f64::NAN))
                };
                lf = lf.with_column(code.alias(column.as_str()));
                current.with_column(column.as_str().into(), DataType::Float64);
                kinds.insert(column.clone(), DType::Float);
            }
        }
    }
    let outputs = spec
        .outputs
        .iter()
        .map(|name| {
            col(name.as_str())
                .cast(DataType::Float64)
                .fill_null(lit(f64::NAN))
                .alias(name.as_str())
        })
        .collect::<Vec<_>>();
    Ok(lf.select(outputs))
}

/// The categories of a column for one-hot or ordinal encoding, learned on a (training)
/// frame: the values seen at least `min_count` times, most frequent first, ties in byte
/// order of the value, at most `max_categories`. Nulls are not a category. Ints are written
/// in decimal and bools as `true`/`false`, as the encoders compare them.
pub fn fit_categories(
    df: &DataFrame,
    column: &str,
    max_categories: usize,
    min_count: u64,
) -> PolarsResult<Vec<String>> {
    let s = df.column(column)?.as_materialized_series();
    let text = match s.dtype() {
        DataType::String => s.clone(),
        DataType::Categorical(..) | DataType::Enum(..) => s.cast(&DataType::String)?,
        DataType::Boolean => s
            .bool()?
            .iter()
            .map(|b| b.map(|b| if b { "true" } else { "false" }))
            .collect::<StringChunked>()
            .into_series(),
        t if t.is_integer() => s.cast(&DataType::Int64)?.cast(&DataType::String)?,
        t => {
            polars_bail!(InvalidOperation: "column `{column}` is {t}; only string, categorical, int and bool columns can be encoded")
        }
    };
    let mut counts: HashMap<&str, u64> = HashMap::new();
    for v in text.str()?.iter().flatten() {
        *counts.entry(v).or_default() += 1;
    }
    let mut ranked: Vec<(&str, u64)> = counts
        .into_iter()
        .filter(|&(_, n)| n >= min_count)
        .collect();
    ranked.sort_by(|a, b| {
        b.1.cmp(&a.1)
            .then_with(|| a.0.as_bytes().cmp(b.0.as_bytes()))
    });
    Ok(ranked
        .into_iter()
        .take(max_categories)
        .map(|(v, _)| v.to_string())
        .collect())
}

/// Reads a frame's column types as Kiln types, for type checking expressions against it.
pub fn column_types(schema: &Schema) -> impl Fn(&str) -> Option<DType> + '_ {
    |name| schema.get(name).and_then(kiln_dtype)
}

#[cfg(test)]
mod tests {
    use polars::prelude::*;

    use super::*;

    #[test]
    fn fits_categories_by_frequency_then_value() {
        let df = df!(
            "origin" => [Some("LGA"), Some("JFK"), Some("EWR"), Some("JFK"), None, Some("LGA"), Some("ABC")],
            "n" => [3i64, 1, 3, 2, 2, 2, 3],
            "b" => [true, false, true, true, true, false, false],
        )
        .unwrap();
        assert_eq!(
            fit_categories(&df, "origin", 10, 1).unwrap(),
            ["JFK", "LGA", "ABC", "EWR"]
        );
        assert_eq!(fit_categories(&df, "origin", 2, 1).unwrap(), ["JFK", "LGA"]);
        assert_eq!(
            fit_categories(&df, "origin", 10, 2).unwrap(),
            ["JFK", "LGA"]
        );
        assert_eq!(fit_categories(&df, "n", 10, 1).unwrap(), ["2", "3", "1"]);
        assert_eq!(fit_categories(&df, "b", 10, 1).unwrap(), ["true", "false"]);
        let cat = df
            .clone()
            .lazy()
            .select([col("origin").cast(DataType::from_categories(Categories::global()))])
            .collect()
            .unwrap();
        assert_eq!(
            fit_categories(&cat, "origin", 10, 1).unwrap(),
            ["JFK", "LGA", "ABC", "EWR"]
        );
    }
}
