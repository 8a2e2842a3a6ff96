//! SQL text to Kiln's AST, through sqlparser's generic dialect.

use sqlparser::ast::{
    self, BinaryOperator, CeilFloorKind, DataType, DateTimeField, FunctionArg, FunctionArgExpr,
    FunctionArguments, TimezoneInfo, UnaryOperator,
};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::Token;

use super::{BinaryOp, Expr, Function, UnaryOp};
use crate::dtype::DType;
use crate::error::{Result, TransformError};
use crate::time;
use crate::value::Value;

pub(super) fn parse(text: &str) -> Result<Expr> {
    let parse_error = |message: String| TransformError::Parse {
        expr: text.to_string(),
        message,
    };
    if text.trim().is_empty() {
        return Err(parse_error("the expression is empty".into()));
    }
    let dialect = GenericDialect {};
    let mut parser = Parser::new(&dialect)
        .try_with_sql(text)
        .map_err(|e| parse_error(strip_prefix(e.to_string())))?;
    let sql = parser
        .parse_expr()
        .map_err(|e| parse_error(strip_prefix(e.to_string())))?;
    let next = parser.peek_token();
    if next.token != Token::EOF {
        return Err(parse_error(format!(
            "unexpected `{}` after the expression at {}",
            next.token, next.span.start
        )));
    }
    Converter { text }.expr(&sql)
}

/// sqlparser's messages start with "sql parser error: ".
fn strip_prefix(message: String) -> String {
    match message.strip_prefix("sql parser error: ") {
        Some(rest) => rest.to_string(),
        None => message,
    }
}

struct Converter<'a> {
    text: &'a str,
}

impl Converter<'_> {
    fn unsupported(&self, construct: impl Into<String>) -> TransformError {
        TransformError::Unsupported {
            expr: self.text.to_string(),
            construct: construct.into(),
        }
    }

    fn invalid(&self, message: impl Into<String>) -> TransformError {
        TransformError::Parse {
            expr: self.text.to_string(),
            message: message.into(),
        }
    }

    fn boxed(&self, e: &ast::Expr) -> Result<Box<Expr>> {
        Ok(Box::new(self.expr(e)?))
    }

    fn expr(&self, e: &ast::Expr) -> Result<Expr> {
        use ast::Expr as S;
        Ok(match e {
            S::Identifier(ident) => Expr::Column(ident.value.clone()),
            S::CompoundIdentifier(parts) => {
                let name: Vec<&str> = parts.iter().map(|p| p.value.as_str()).collect();
                return Err(self.unsupported(format!(
                    "the qualified name `{}` (write the column name alone, in double quotes if it contains a dot)",
                    name.join(".")
                )));
            }
            S::Nested(inner) => self.expr(inner)?,
            S::Value(v) => Expr::Literal(self.value(&v.value)?),
            S::TypedString(ts) => self.typed_string(&ts.data_type, &ts.value.value)?,
            S::UnaryOp { op, expr } => match op {
                UnaryOperator::Not => Expr::Unary {
                    op: UnaryOp::Not,
                    expr: self.boxed(expr)?,
                },
                UnaryOperator::Plus => self.expr(expr)?,
                UnaryOperator::Minus => match self.expr(expr)? {
                    // Fold `-<number>` into the literal, so that `-5` is a literal as users
                    // expect (and so that printing and parsing again is stable).
                    Expr::Literal(Value::Int(i)) if i != i64::MIN => Expr::Literal(Value::Int(-i)),
                    Expr::Literal(Value::Float(x)) => Expr::Literal(Value::Float(-x)),
                    inner => Expr::Unary {
                        op: UnaryOp::Neg,
                        expr: Box::new(inner),
                    },
                },
                other => return Err(self.unsupported(format!("the unary operator `{other}`"))),
            },
            S::BinaryOp { left, op, right } => {
                let op = match op {
                    BinaryOperator::Plus => BinaryOp::Add,
                    BinaryOperator::Minus => BinaryOp::Sub,
                    BinaryOperator::Multiply => BinaryOp::Mul,
                    BinaryOperator::Divide => BinaryOp::Div,
                    BinaryOperator::Modulo => BinaryOp::Mod,
                    BinaryOperator::StringConcat => BinaryOp::Concat,
                    BinaryOperator::Eq => BinaryOp::Eq,
                    BinaryOperator::NotEq => BinaryOp::NotEq,
                    BinaryOperator::Lt => BinaryOp::Lt,
                    BinaryOperator::LtEq => BinaryOp::LtEq,
                    BinaryOperator::Gt => BinaryOp::Gt,
                    BinaryOperator::GtEq => BinaryOp::GtEq,
                    BinaryOperator::And => BinaryOp::And,
                    BinaryOperator::Or => BinaryOp::Or,
                    other => {
                        return Err(self.unsupported(format!("the operator `{other}`")));
                    }
                };
                Expr::Binary {
                    op,
                    left: self.boxed(left)?,
                    right: self.boxed(right)?,
                }
            }
            S::IsNull(e) => Expr::IsNull(self.boxed(e)?),
            S::IsNotNull(e) => Expr::IsNotNull(self.boxed(e)?),
            S::InList {
                expr,
                list,
                negated,
            } => Expr::InList {
                expr: self.boxed(expr)?,
                list: list.iter().map(|e| self.expr(e)).collect::<Result<_>>()?,
                negated: *negated,
            },
            S::Between {
                expr,
                negated,
                low,
                high,
            } => Expr::Between {
                expr: self.boxed(expr)?,
                low: self.boxed(low)?,
                high: self.boxed(high)?,
                negated: *negated,
            },
            S::Case {
                operand,
                conditions,
                else_result,
                ..
            } => {
                let operand = operand.as_deref().map(|o| self.expr(o)).transpose()?;
                let mut branches = Vec::with_capacity(conditions.len());
                for when in conditions {
                    let mut condition = self.expr(&when.condition)?;
                    if let Some(operand) = &operand {
                        condition = Expr::Binary {
                            op: BinaryOp::Eq,
                            left: Box::new(operand.clone()),
                            right: Box::new(condition),
                        };
                    }
                    branches.push((condition, self.expr(&when.result)?));
                }
                Expr::Case {
                    branches,
                    otherwise: else_result.as_deref().map(|e| self.boxed(e)).transpose()?,
                }
            }
            // CAST, TRY_CAST, SAFE_CAST and `::` are all the same non-strict cast.
            S::Cast {
                kind: _,
                expr,
                data_type,
                array,
                format,
            } => {
                if *array || format.is_some() {
                    return Err(self.unsupported("CAST with ARRAY or FORMAT"));
                }
                Expr::Cast {
                    expr: self.boxed(expr)?,
                    to: self.data_type(data_type)?,
                }
            }
            S::Extract { field, expr, .. } => {
                let name = match field {
                    DateTimeField::Year | DateTimeField::Years => Function::Year,
                    DateTimeField::Quarter => Function::Quarter,
                    DateTimeField::Month | DateTimeField::Months => Function::Month,
                    DateTimeField::Day | DateTimeField::Days => Function::Day,
                    DateTimeField::Hour | DateTimeField::Hours => Function::Hour,
                    DateTimeField::Minute | DateTimeField::Minutes => Function::Minute,
                    DateTimeField::Second | DateTimeField::Seconds => Function::Second,
                    // Kiln has one day-of-week numbering, ISO's (Monday = 1 … Sunday = 7),
                    // for DOW as well as ISODOW (PostgreSQL's DOW counts Sunday as 0).
                    DateTimeField::Dow | DateTimeField::Isodow | DateTimeField::DayOfWeek => {
                        Function::DayOfWeek
                    }
                    DateTimeField::Doy | DateTimeField::DayOfYear => Function::DayOfYear,
                    DateTimeField::Custom(ident) => {
                        match Function::from_name(&ident.value).filter(|f| {
                            matches!(
                                f,
                                Function::Year
                                    | Function::Quarter
                                    | Function::Month
                                    | Function::Day
                                    | Function::Hour
                                    | Function::Minute
                                    | Function::Second
                                    | Function::DayOfWeek
                                    | Function::DayOfYear
                            )
                        }) {
                            Some(f) => f,
                            None => return Err(self.unsupported(format!("EXTRACT({ident} …)"))),
                        }
                    }
                    other => return Err(self.unsupported(format!("EXTRACT({other} …)"))),
                };
                Expr::Func {
                    name,
                    args: vec![self.expr(expr)?],
                }
            }
            S::Floor { expr, field } | S::Ceil { expr, field } => {
                let name = if matches!(e, S::Floor { .. }) {
                    Function::Floor
                } else {
                    Function::Ceil
                };
                match field {
                    CeilFloorKind::DateTimeField(DateTimeField::NoDateTime) => {}
                    _ => {
                        return Err(self.unsupported(format!("{} with a scale or TO", name.name())));
                    }
                }
                Expr::Func {
                    name,
                    args: vec![self.expr(expr)?],
                }
            }
            S::Function(func) => self.function(func)?,
            S::Like { .. } | S::ILike { .. } | S::SimilarTo { .. } | S::RLike { .. } => {
                return Err(self.unsupported("LIKE and pattern matching"));
            }
            S::InSubquery { .. } | S::Subquery(_) | S::Exists { .. } => {
                return Err(self.unsupported("a sub-query"));
            }
            S::IsTrue(_)
            | S::IsFalse(_)
            | S::IsNotTrue(_)
            | S::IsNotFalse(_)
            | S::IsUnknown(_)
            | S::IsNotUnknown(_) => {
                return Err(
                    self.unsupported("IS [NOT] TRUE/FALSE/UNKNOWN (compare with = instead)")
                );
            }
            S::IsDistinctFrom(..) | S::IsNotDistinctFrom(..) => {
                return Err(self.unsupported("IS [NOT] DISTINCT FROM"));
            }
            S::Interval(_) => return Err(self.unsupported("INTERVAL")),
            S::Substring { .. } => return Err(self.unsupported("SUBSTRING")),
            S::Trim { .. } => return Err(self.unsupported("TRIM")),
            S::Position { .. } => return Err(self.unsupported("POSITION")),
            S::AtTimeZone { .. } => return Err(self.unsupported("AT TIME ZONE")),
            S::Wildcard(_) | S::QualifiedWildcard(..) => return Err(self.unsupported("`*`")),
            S::Tuple(_) => return Err(self.unsupported("a tuple")),
            S::Array(_) => return Err(self.unsupported("an array")),
            other => {
                let text = other.to_string();
                return Err(self.unsupported(format!("`{text}`")));
            }
        })
    }

    fn function(&self, func: &ast::Function) -> Result<Expr> {
        let raw_name = func.name.to_string();
        if func.over.is_some() {
            return Err(self.unsupported(format!("the window function `{raw_name}`")));
        }
        if func.filter.is_some() || !func.within_group.is_empty() || func.null_treatment.is_some() {
            return Err(self.unsupported(format!("aggregate clauses on `{raw_name}`")));
        }
        if !matches!(func.parameters, FunctionArguments::None) {
            return Err(self.unsupported(format!("parametric function `{raw_name}`")));
        }
        let Some(name) = Function::from_name(&raw_name) else {
            return Err(self.unsupported(format!("the function `{raw_name}`")));
        };
        let list = match &func.args {
            FunctionArguments::List(list) => list,
            FunctionArguments::None => {
                return Err(self.invalid(format!("{name} needs parentheses and arguments")));
            }
            FunctionArguments::Subquery(_) => return Err(self.unsupported("a sub-query")),
        };
        if list.duplicate_treatment.is_some() || !list.clauses.is_empty() {
            return Err(self.unsupported(format!("DISTINCT or clauses in `{raw_name}(…)`")));
        }
        let mut args = Vec::with_capacity(list.args.len());
        for arg in &list.args {
            match arg {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => args.push(self.expr(e)?),
                FunctionArg::Unnamed(_) => {
                    return Err(self.unsupported(format!("`*` as an argument of `{raw_name}`")));
                }
                FunctionArg::Named { .. } | FunctionArg::ExprNamed { .. } => {
                    return Err(self.unsupported(format!("named arguments of `{raw_name}`")));
                }
            }
        }
        let (min, max) = name.arity();
        if args.len() < min || max.is_some_and(|max| args.len() > max) {
            let expected = match max {
                Some(max) if max == min => format!("{min}"),
                Some(max) => format!("{min} to {max}"),
                None => format!("at least {min}"),
            };
            return Err(self.invalid(format!(
                "{name}() takes {expected} argument{}, found {}",
                if expected == "1" { "" } else { "s" },
                args.len()
            )));
        }
        if name == Function::Round {
            check_round_digits(&args).map_err(|m| self.invalid(m))?;
        }
        Ok(Expr::Func { name, args })
    }

    fn value(&self, v: &ast::Value) -> Result<Value> {
        use ast::Value as V;
        Ok(match v {
            V::Null => Value::Null,
            V::Boolean(b) => Value::Bool(*b),
            V::Number(text, _) => {
                if text.bytes().all(|b| b.is_ascii_digit()) {
                    match text.parse::<i64>() {
                        Ok(i) => Value::Int(i),
                        // Integers beyond i64 are read as floats.
                        Err(_) => Value::Float(
                            text.parse::<f64>()
                                .map_err(|_| self.invalid(format!("bad number {text}")))?,
                        ),
                    }
                } else {
                    Value::Float(
                        text.parse::<f64>()
                            .map_err(|_| self.invalid(format!("bad number {text}")))?,
                    )
                }
            }
            V::SingleQuotedString(s)
            | V::EscapedStringLiteral(s)
            | V::UnicodeStringLiteral(s)
            | V::NationalStringLiteral(s)
            | V::TripleSingleQuotedString(s) => Value::Str(s.clone()),
            V::DoubleQuotedString(s) => {
                return Err(self.unsupported(format!(
                    "the double-quoted string \"{s}\" (strings take single quotes; double quotes name columns)"
                )));
            }
            other => return Err(self.unsupported(format!("the literal {other}"))),
        })
    }

    fn typed_string(&self, data_type: &DataType, value: &ast::Value) -> Result<Expr> {
        let text = match value {
            ast::Value::SingleQuotedString(s) | ast::Value::DoubleQuotedString(s) => s,
            other => return Err(self.unsupported(format!("the literal {data_type} {other}"))),
        };
        let to = self.data_type(data_type)?;
        Ok(Expr::Literal(match to {
            DType::Date => Value::Date(
                time::parse_date(text)
                    .ok_or_else(|| self.invalid(format!("'{text}' is not a date (YYYY-MM-DD)")))?,
            ),
            DType::Timestamp => Value::Timestamp(time::parse_timestamp(text).ok_or_else(|| {
                self.invalid(format!("'{text}' is not a timestamp (YYYY-MM-DD HH:MM:SS)"))
            })?),
            other => {
                return Ok(Expr::Cast {
                    expr: Box::new(Expr::Literal(Value::Str(text.clone()))),
                    to: other,
                });
            }
        }))
    }

    fn data_type(&self, t: &DataType) -> Result<DType> {
        use DataType as D;
        Ok(match t {
            D::TinyInt(_)
            | D::SmallInt(_)
            | D::MediumInt(_)
            | D::Int(_)
            | D::Int2(_)
            | D::Int4(_)
            | D::Int8(_)
            | D::Int16
            | D::Int32
            | D::Int64
            | D::Integer(_)
            | D::BigInt(_)
            | D::Signed
            | D::SignedInteger => DType::Int,
            D::Float(_)
            | D::Float4
            | D::Float8
            | D::Float32
            | D::Float64
            | D::Real
            | D::Double(_)
            | D::DoublePrecision
            | D::Numeric(_)
            | D::Decimal(_)
            | D::Dec(_) => DType::Float,
            D::Bool | D::Boolean => DType::Bool,
            D::Character(_)
            | D::Char(_)
            | D::CharacterVarying(_)
            | D::CharVarying(_)
            | D::Varchar(_)
            | D::Nvarchar(_)
            | D::Text
            | D::String(_) => DType::String,
            D::Date => DType::Date,
            D::Timestamp(_, TimezoneInfo::None | TimezoneInfo::WithoutTimeZone)
            | D::TimestampNtz(_)
            | D::Datetime(_) => DType::Timestamp,
            D::Custom(name, modifiers) if modifiers.is_empty() => {
                match name.to_string().parse::<DType>() {
                    Ok(DType::Categorical) => DType::String,
                    Ok(t) => t,
                    Err(_) => return Err(self.unsupported(format!("the type {t}"))),
                }
            }
            other => return Err(self.unsupported(format!("the type {other}"))),
        })
    }
}

/// `round`'s digits must be an integer literal in 0..=15.
pub(super) fn check_round_digits(args: &[Expr]) -> std::result::Result<(), String> {
    match args.get(1) {
        None => Ok(()),
        Some(Expr::Literal(Value::Int(d))) if (0..=15).contains(d) => Ok(()),
        Some(other) => Err(format!(
            "round() takes its digits as an integer literal from 0 to 15, found {other}"
        )),
    }
}
