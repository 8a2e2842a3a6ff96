//! Derived-column expressions: SQL expression text parsed into Kiln's own small AST, type
//! checked against the columns that exist, and evaluated on one row at a time (serving) or
//! compiled to Polars (training, in `kiln-data`).
//!
//! Semantics are SQL's three-valued logic with the numeric rules listed in [`crate::ops`];
//! [`Expr::resolve`] makes every implicit conversion explicit (int operands of float
//! arithmetic, the branches of a `CASE`, string literals compared with dates), so a resolved
//! expression means the same thing to the row evaluator and to the Polars compiler.

mod eval;
mod parse;
mod resolve;

use std::collections::BTreeSet;
use std::fmt;

use crate::dtype::DType;
use crate::error::Result;
use crate::time;
use crate::value::Value;

pub use resolve::Resolved;

/// One expression node.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Column(String),
    Literal(Value),
    Unary {
        op: UnaryOp,
        expr: Box<Expr>,
    },
    Binary {
        op: BinaryOp,
        left: Box<Expr>,
        right: Box<Expr>,
    },
    /// `CASE WHEN c1 THEN r1 … [ELSE e] END`; the simple form `CASE x WHEN v …` is read as
    /// `WHEN x = v`. A null condition counts as false; without `ELSE` the result is null.
    Case {
        branches: Vec<(Expr, Expr)>,
        otherwise: Option<Box<Expr>>,
    },
    /// A non-strict cast: a value that does not convert becomes null.
    Cast {
        expr: Box<Expr>,
        to: DType,
    },
    Func {
        name: Function,
        args: Vec<Expr>,
    },
    IsNull(Box<Expr>),
    IsNotNull(Box<Expr>),
    /// `x [NOT] IN (a, b, …)`: true when x equals an item; otherwise null when x or an item
    /// is null; otherwise false.
    InList {
        expr: Box<Expr>,
        list: Vec<Expr>,
        negated: bool,
    },
    /// `x [NOT] BETWEEN low AND high`, that is `x >= low AND x <= high`.
    Between {
        expr: Box<Expr>,
        low: Box<Expr>,
        high: Box<Expr>,
        negated: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UnaryOp {
    Neg,
    Not,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    /// Always float division.
    Div,
    /// Floored modulo.
    Mod,
    /// String concatenation `||`.
    Concat,
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
    And,
    Or,
}

impl BinaryOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinaryOp::Add => "+",
            BinaryOp::Sub => "-",
            BinaryOp::Mul => "*",
            BinaryOp::Div => "/",
            BinaryOp::Mod => "%",
            BinaryOp::Concat => "||",
            BinaryOp::Eq => "=",
            BinaryOp::NotEq => "<>",
            BinaryOp::Lt => "<",
            BinaryOp::LtEq => "<=",
            BinaryOp::Gt => ">",
            BinaryOp::GtEq => ">=",
            BinaryOp::And => "AND",
            BinaryOp::Or => "OR",
        }
    }

    pub fn is_comparison(self) -> bool {
        matches!(
            self,
            BinaryOp::Eq
                | BinaryOp::NotEq
                | BinaryOp::Lt
                | BinaryOp::LtEq
                | BinaryOp::Gt
                | BinaryOp::GtEq
        )
    }

    pub fn is_arithmetic(self) -> bool {
        matches!(
            self,
            BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Div | BinaryOp::Mod
        )
    }
}

/// The functions of the language. Names are case-insensitive; aliases are listed in
/// [`Function::from_name`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Function {
    Abs,
    /// Natural logarithm (`ln`, `log`): NaN for negative numbers, -inf at 0.
    Ln,
    Log10,
    Log1p,
    Exp,
    Sqrt,
    /// `round(x[, digits])`, half away from zero; digits an integer literal 0..=15.
    Round,
    Floor,
    Ceil,
    /// Smallest non-null argument (null only when all are null).
    Least,
    /// Largest non-null argument (null only when all are null).
    Greatest,
    Coalesce,
    Lower,
    Upper,
    /// Length in characters (Unicode scalar values).
    Length,
    Year,
    Quarter,
    Month,
    Day,
    Hour,
    Minute,
    Second,
    /// ISO day of the week: Monday = 1 … Sunday = 7 (Polars `dt.weekday()`).
    DayOfWeek,
    /// 1..=366.
    DayOfYear,
}

impl Function {
    pub const ALL: [Function; 24] = [
        Function::Abs,
        Function::Ln,
        Function::Log10,
        Function::Log1p,
        Function::Exp,
        Function::Sqrt,
        Function::Round,
        Function::Floor,
        Function::Ceil,
        Function::Least,
        Function::Greatest,
        Function::Coalesce,
        Function::Lower,
        Function::Upper,
        Function::Length,
        Function::Year,
        Function::Quarter,
        Function::Month,
        Function::Day,
        Function::Hour,
        Function::Minute,
        Function::Second,
        Function::DayOfWeek,
        Function::DayOfYear,
    ];

    /// The canonical (printed) name.
    pub fn name(self) -> &'static str {
        match self {
            Function::Abs => "abs",
            Function::Ln => "ln",
            Function::Log10 => "log10",
            Function::Log1p => "log1p",
            Function::Exp => "exp",
            Function::Sqrt => "sqrt",
            Function::Round => "round",
            Function::Floor => "floor",
            Function::Ceil => "ceil",
            Function::Least => "least",
            Function::Greatest => "greatest",
            Function::Coalesce => "coalesce",
            Function::Lower => "lower",
            Function::Upper => "upper",
            Function::Length => "length",
            Function::Year => "year",
            Function::Quarter => "quarter",
            Function::Month => "month",
            Function::Day => "day",
            Function::Hour => "hour",
            Function::Minute => "minute",
            Function::Second => "second",
            Function::DayOfWeek => "day_of_week",
            Function::DayOfYear => "day_of_year",
        }
    }

    /// Looks a function up by name, case-insensitively, with the usual aliases.
    pub fn from_name(name: &str) -> Option<Function> {
        let lower = name.to_ascii_lowercase();
        if let Some(f) = Function::ALL.into_iter().find(|f| f.name() == lower) {
            return Some(f);
        }
        Some(match lower.as_str() {
            "log" => Function::Ln,
            "ceiling" => Function::Ceil,
            "min_of" => Function::Least,
            "max_of" => Function::Greatest,
            "ifnull" | "nvl" => Function::Coalesce,
            "lcase" => Function::Lower,
            "ucase" => Function::Upper,
            "len" | "char_length" | "character_length" => Function::Length,
            "dayofmonth" | "day_of_month" => Function::Day,
            "dow" | "isodow" | "dayofweek" | "weekday" => Function::DayOfWeek,
            "doy" | "dayofyear" | "ordinal_day" => Function::DayOfYear,
            _ => return None,
        })
    }

    /// How many arguments it takes: (at least, at most).
    pub fn arity(self) -> (usize, Option<usize>) {
        match self {
            Function::Round => (1, Some(2)),
            Function::Least | Function::Greatest | Function::Coalesce => (1, None),
            _ => (1, Some(1)),
        }
    }

    /// The result type given the types of the (already coerced) arguments; `None` in an
    /// argument is a null literal. The error says what the function needs.
    pub fn result_type(self, args: &[Option<DType>]) -> std::result::Result<Option<DType>, String> {
        use DType as T;
        let first = args.first().copied().flatten();
        let needs = |what: &str| {
            Err(format!(
                "{}() needs {what}, found {}",
                self.name(),
                first.map_or("null", DType::as_str)
            ))
        };
        match self {
            Function::Abs | Function::Round | Function::Floor | Function::Ceil => match first {
                None => Ok(None),
                Some(t) if t.is_numeric() => Ok(Some(t)),
                Some(_) => needs("a number"),
            },
            Function::Ln | Function::Log10 | Function::Log1p | Function::Exp | Function::Sqrt => {
                match first {
                    None | Some(T::Int | T::Float) => Ok(Some(T::Float)),
                    Some(_) => needs("a number"),
                }
            }
            Function::Least | Function::Greatest | Function::Coalesce => {
                let mut out = None;
                for t in args.iter().flatten() {
                    out = match resolve::common_type(out, Some(*t)) {
                        Some(t) => t,
                        None => {
                            return Err(format!(
                                "{}() mixes {} and {}",
                                self.name(),
                                out.map_or("null", DType::as_str),
                                t
                            ));
                        }
                    };
                }
                Ok(out)
            }
            Function::Lower | Function::Upper => match first {
                None | Some(T::String | T::Categorical) => Ok(Some(T::String)),
                Some(_) => needs("a string"),
            },
            Function::Length => match first {
                None | Some(T::String | T::Categorical) => Ok(Some(T::Int)),
                Some(_) => needs("a string"),
            },
            Function::Year
            | Function::Quarter
            | Function::Month
            | Function::Day
            | Function::DayOfWeek
            | Function::DayOfYear => match first {
                None | Some(T::Date | T::Timestamp) => Ok(Some(T::Int)),
                Some(_) => needs("a date or a timestamp"),
            },
            Function::Hour | Function::Minute | Function::Second => match first {
                None | Some(T::Timestamp) => Ok(Some(T::Int)),
                Some(_) => needs("a timestamp"),
            },
        }
    }
}

impl fmt::Display for Function {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Expr {
    /// Parses SQL expression text (sqlparser's generic dialect) into Kiln's AST. Constructs
    /// the language lacks are an [`crate::TransformError::Unsupported`] naming them.
    pub fn parse(text: &str) -> Result<Expr> {
        parse::parse(text)
    }

    pub fn column(name: impl Into<String>) -> Expr {
        Expr::Column(name.into())
    }

    /// The columns the expression reads.
    pub fn columns(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        self.visit(&mut |e| {
            if let Expr::Column(c) = e {
                out.insert(c.clone());
            }
        });
        out
    }

    /// Calls `f` on every node, parents before children.
    pub fn visit(&self, f: &mut dyn FnMut(&Expr)) {
        f(self);
        match self {
            Expr::Column(_) | Expr::Literal(_) => {}
            Expr::Unary { expr, .. }
            | Expr::Cast { expr, .. }
            | Expr::IsNull(expr)
            | Expr::IsNotNull(expr) => expr.visit(f),
            Expr::Binary { left, right, .. } => {
                left.visit(f);
                right.visit(f);
            }
            Expr::Case {
                branches,
                otherwise,
            } => {
                for (c, r) in branches {
                    c.visit(f);
                    r.visit(f);
                }
                if let Some(e) = otherwise {
                    e.visit(f);
                }
            }
            Expr::Func { args, .. } => args.iter().for_each(|a| a.visit(f)),
            Expr::InList { expr, list, .. } => {
                expr.visit(f);
                list.iter().for_each(|a| a.visit(f));
            }
            Expr::Between {
                expr, low, high, ..
            } => {
                expr.visit(f);
                low.visit(f);
                high.visit(f);
            }
        }
    }

    /// Type checks the expression against the column types (`None` from `types`: no such
    /// column) and makes every implicit conversion an explicit `Cast` (folded into literals).
    /// The resolved expression evaluates identically in the row evaluator and in Polars.
    pub fn resolve(&self, types: &dyn Fn(&str) -> Option<DType>) -> Result<Resolved> {
        resolve::resolve(self, types)
    }

    /// The type of the expression's values (text types are `String`). An unknown column, an
    /// operation on the wrong types, or an expression that is always null is an error.
    pub fn output_type(&self, types: &dyn Fn(&str) -> Option<DType>) -> Result<DType> {
        let resolved = self.resolve(types)?;
        resolved.dtype.ok_or_else(|| {
            crate::TransformError::type_error(
                self,
                "the expression is always null; give it a type with CAST(... AS DOUBLE)",
            )
        })
    }

    /// Evaluates the expression on one row; `row` returns `None` for a column that does not
    /// exist (an error naming it) and `Some(Value::Null)` for a missing value. Evaluate a
    /// [resolved](Expr::resolve) expression to get exactly the Polars semantics.
    pub fn eval(&self, row: &dyn Fn(&str) -> Option<Value>) -> Result<Value> {
        eval::eval(self, row)
    }

    fn is_atomic(&self) -> bool {
        match self {
            Expr::Literal(Value::Int(i)) => *i >= 0,
            Expr::Literal(Value::Float(x)) => x.is_sign_positive() || !x.is_finite(),
            Expr::Column(_)
            | Expr::Literal(_)
            | Expr::Func { .. }
            | Expr::Cast { .. }
            | Expr::Case { .. } => true,
            _ => false,
        }
    }
}

/// Writes a child, in parentheses unless it is atomic.
struct Child<'a>(&'a Expr);

impl fmt::Display for Child<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_atomic() {
            write!(f, "{}", self.0)
        } else {
            write!(f, "({})", self.0)
        }
    }
}

/// Writes a column name, double-quoted unless it is a plain identifier and not a keyword.
pub(crate) fn quote_ident(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && sqlparser::keywords::ALL_KEYWORDS
            .binary_search(&name.to_ascii_uppercase().as_str())
            .is_err();
    if plain {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

fn sql_type(t: DType) -> &'static str {
    match t {
        DType::Int => "BIGINT",
        DType::Float => "DOUBLE",
        DType::Bool => "BOOLEAN",
        DType::String | DType::Categorical => "VARCHAR",
        DType::Date => "DATE",
        DType::Timestamp => "TIMESTAMP",
    }
}

fn write_literal(f: &mut fmt::Formatter<'_>, v: &Value) -> fmt::Result {
    match v {
        Value::Null => f.write_str("NULL"),
        Value::Bool(true) => f.write_str("TRUE"),
        Value::Bool(false) => f.write_str("FALSE"),
        Value::Int(i) => write!(f, "{i}"),
        Value::Float(x) if x.is_finite() => write!(f, "{x:?}"),
        Value::Float(x) => write!(f, "CAST('{x}' AS DOUBLE)"),
        Value::Str(s) => write!(f, "'{}'", s.replace('\'', "''")),
        Value::Date(d) => write!(f, "DATE '{}'", time::format_date(*d)),
        Value::Timestamp(t) => write!(f, "TIMESTAMP '{}'", time::format_timestamp(*t)),
    }
}

/// Prints the expression as SQL that parses back to an equivalent expression.
impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Column(name) => f.write_str(&quote_ident(name)),
            Expr::Literal(v) => write_literal(f, v),
            Expr::Unary {
                op: UnaryOp::Neg,
                expr,
            } => write!(f, "-({expr})"),
            Expr::Unary {
                op: UnaryOp::Not,
                expr,
            } => write!(f, "NOT ({expr})"),
            Expr::Binary { op, left, right } => {
                write!(f, "{} {} {}", Child(left), op.symbol(), Child(right))
            }
            Expr::Case {
                branches,
                otherwise,
            } => {
                f.write_str("CASE")?;
                for (c, r) in branches {
                    write!(f, " WHEN {c} THEN {r}")?;
                }
                if let Some(e) = otherwise {
                    write!(f, " ELSE {e}")?;
                }
                f.write_str(" END")
            }
            Expr::Cast { expr, to } => write!(f, "CAST({expr} AS {})", sql_type(*to)),
            Expr::Func { name, args } => {
                write!(f, "{name}(")?;
                for (i, a) in args.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{a}")?;
                }
                f.write_str(")")
            }
            Expr::IsNull(e) => write!(f, "{} IS NULL", Child(e)),
            Expr::IsNotNull(e) => write!(f, "{} IS NOT NULL", Child(e)),
            Expr::InList {
                expr,
                list,
                negated,
            } => {
                write!(
                    f,
                    "{} {}IN (",
                    Child(expr),
                    if *negated { "NOT " } else { "" }
                )?;
                for (i, a) in list.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{a}")?;
                }
                f.write_str(")")
            }
            Expr::Between {
                expr,
                low,
                high,
                negated,
            } => write!(
                f,
                "{} {}BETWEEN {} AND {}",
                Child(expr),
                if *negated { "NOT " } else { "" },
                Child(low),
                Child(high)
            ),
        }
    }
}
