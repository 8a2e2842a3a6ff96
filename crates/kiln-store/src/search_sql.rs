//! Turns parsed MLflow search comparisons into SQL with bound parameters. Values are never
//! spliced into SQL text; only column names chosen from fixed lists are.

use kiln_core::search::{CompOp, Value};
use sqlx::Any;
use sqlx::AssertSqlSafe;
use sqlx::any::AnyArguments;
use sqlx::query::Query;

use crate::db::Backend;
use crate::error::{Result, StoreError};

#[derive(Debug, Clone)]
enum Bind {
    I64(i64),
    F64(f64),
    Str(String),
}

/// A SQL statement under construction with `$N` placeholders, which both SQLite and
/// PostgreSQL accept.
pub(crate) struct Sql {
    backend: Backend,
    text: String,
    binds: Vec<Bind>,
}

impl Sql {
    pub(crate) fn new(backend: Backend) -> Sql {
        Sql {
            backend,
            text: String::with_capacity(256),
            binds: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, s: &str) -> &mut Self {
        self.text.push_str(s);
        self
    }

    fn placeholder(&mut self, b: Bind) {
        self.binds.push(b);
        self.text.push('$');
        self.text.push_str(&self.binds.len().to_string());
    }

    pub(crate) fn bind_str(&mut self, s: &str) -> &mut Self {
        self.placeholder(Bind::Str(s.to_string()));
        self
    }

    pub(crate) fn bind_i64(&mut self, v: i64) -> &mut Self {
        self.placeholder(Bind::I64(v));
        self
    }

    pub(crate) fn bind_f64(&mut self, v: f64) -> &mut Self {
        self.placeholder(Bind::F64(v));
        self
    }

    /// Appends `column <op> value` for a string or numeric comparison.
    pub(crate) fn compare(&mut self, column: &str, op: CompOp, value: &Value) -> Result<()> {
        match (op, value) {
            (CompOp::In | CompOp::NotIn, Value::List(items)) => {
                if items.is_empty() {
                    // `x IN ()` is not valid SQL; an empty list matches nothing.
                    self.push(if op == CompOp::In { "1 = 0" } else { "1 = 1" });
                    return Ok(());
                }
                self.push(column);
                self.push(if op == CompOp::In {
                    " IN ("
                } else {
                    " NOT IN ("
                });
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        self.push(", ");
                    }
                    self.bind_str(item);
                }
                self.push(")");
            }
            (CompOp::Like, Value::String(p)) => match self.backend {
                // SQLite's LIKE ignores ASCII case; MLflow's LIKE does not. GLOB is
                // case-sensitive, so translate the pattern.
                Backend::Sqlite => {
                    self.push(column).push(" GLOB ");
                    self.bind_str(&like_to_glob(p));
                }
                Backend::Postgres => {
                    self.push(column).push(" LIKE ");
                    self.bind_str(p);
                }
            },
            (CompOp::ILike, Value::String(p)) => {
                self.push("LOWER(").push(column).push(") LIKE LOWER(");
                self.bind_str(p);
                self.push(")");
            }
            (op, Value::String(s)) => {
                self.push(column).push(op_sql(op)?);
                self.bind_str(s);
            }
            (op, Value::Number(n)) => {
                self.push(column).push(op_sql(op)?);
                if n.fract() == 0.0 && n.abs() < 9.0e15 {
                    self.bind_i64(*n as i64);
                } else {
                    self.bind_f64(*n);
                }
            }
            (op, v) => {
                return Err(StoreError::invalid(format!(
                    "Invalid comparison {op:?} with value {v:?}"
                )));
            }
        }
        Ok(())
    }

    /// The statement with its parameters bound, ready to run.
    pub(crate) fn query(&self) -> Query<'_, Any, AnyArguments> {
        let mut q = sqlx::query(AssertSqlSafe(self.text.as_str()));
        for b in &self.binds {
            q = match b {
                Bind::I64(v) => q.bind(*v),
                Bind::F64(v) => q.bind(*v),
                Bind::Str(v) => q.bind(v.clone()),
            };
        }
        q
    }

    #[cfg(test)]
    pub(crate) fn text(&self) -> &str {
        &self.text
    }
}

fn op_sql(op: CompOp) -> Result<&'static str> {
    Ok(match op {
        CompOp::Eq => " = ",
        CompOp::Ne => " <> ",
        CompOp::Lt => " < ",
        CompOp::Le => " <= ",
        CompOp::Gt => " > ",
        CompOp::Ge => " >= ",
        other => {
            return Err(StoreError::invalid(format!(
                "operator {other:?} needs a different value type"
            )));
        }
    })
}

/// Translates a SQL LIKE pattern (`%`, `_`) into a GLOB pattern, escaping GLOB's own
/// metacharacters so they match literally.
pub(crate) fn like_to_glob(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + 4);
    for c in pattern.chars() {
        match c {
            '%' => out.push('*'),
            '_' => out.push('?'),
            '*' => out.push_str("[*]"),
            '?' => out.push_str("[?]"),
            '[' => out.push_str("[[]"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_become_globs() {
        assert_eq!(like_to_glob("a%b_c"), "a*b?c");
        assert_eq!(like_to_glob("x*?[y"), "x[*][?][[]y");
    }

    #[test]
    fn values_are_bound_never_spliced() {
        let mut sql = Sql::new(Backend::Postgres);
        sql.push("SELECT 1 WHERE ");
        sql.compare(
            "name",
            CompOp::Eq,
            &Value::String("'; DROP TABLE runs; --".into()),
        )
        .unwrap();
        assert_eq!(sql.text(), "SELECT 1 WHERE name = $1");
        let mut sql = Sql::new(Backend::Sqlite);
        sql.compare("k", CompOp::In, &Value::List(vec!["a".into(), "b".into()]))
            .unwrap();
        assert_eq!(sql.text(), "k IN ($1, $2)");
    }
}
