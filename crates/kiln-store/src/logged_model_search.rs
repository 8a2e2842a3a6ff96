//! Logged-model search: its small filter grammar and the SQL it compiles to. (The shared
//! `kiln_core::search` contexts do not know the logged-model attributes.) See the grammar
//! in the `logged_models` module documentation.

use kiln_core::search::{CompOp, Value};

use crate::error::{Result, StoreError};
use crate::logged_models::LoggedModelDataset;
use crate::search_sql::Sql;

/// Whether a field compares against numbers or strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Number,
    Text,
}

#[derive(Debug, Clone, PartialEq)]
enum Field {
    /// A column of `logged_models` (aliased `lm`) and what it holds.
    Attribute {
        name: &'static str,
        column: &'static str,
        kind: Kind,
    },
    Metric(String),
    Param(String),
    Tag(String),
}

impl Field {
    fn kind(&self) -> Kind {
        match self {
            Field::Attribute { kind, .. } => *kind,
            Field::Metric(_) => Kind::Number,
            Field::Param(_) | Field::Tag(_) => Kind::Text,
        }
    }

    fn display(&self) -> String {
        match self {
            Field::Attribute { name, .. } => (*name).to_string(),
            Field::Metric(k) => format!("metrics.{k}"),
            Field::Param(k) => format!("params.{k}"),
            Field::Tag(k) => format!("tags.{k}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Condition {
    field: Field,
    op: CompOp,
    value: Value,
}

const ATTRIBUTES: &[(&str, &str, Kind)] = &[
    ("name", "lm.name", Kind::Text),
    ("model_id", "lm.model_id", Kind::Text),
    ("model_type", "lm.model_type", Kind::Text),
    ("status", "lm.status", Kind::Text),
    ("source_run_id", "lm.source_run_id", Kind::Text),
    ("creation_timestamp", "lm.creation_time", Kind::Number),
    ("creation_time", "lm.creation_time", Kind::Number),
    ("creation_timestamp_ms", "lm.creation_time", Kind::Number),
    (
        "last_updated_timestamp",
        "lm.last_update_time",
        Kind::Number,
    ),
    ("last_update_time", "lm.last_update_time", Kind::Number),
    (
        "last_updated_timestamp_ms",
        "lm.last_update_time",
        Kind::Number,
    ),
];

fn attribute(name: &str) -> Result<Field> {
    ATTRIBUTES
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|&(name, column, kind)| Field::Attribute { name, column, kind })
        .ok_or_else(|| {
            StoreError::invalid(format!(
                "Invalid attribute key '{name}' in logged model search. Valid keys are 'name', \
                 'model_id', 'model_type', 'status', 'source_run_id', 'creation_timestamp', \
                 'last_updated_timestamp', or 'metrics.<key>', 'params.<key>', 'tags.<key>'"
            ))
        })
}

pub(crate) enum OrderField {
    Column(&'static str),
    Metric(String),
}

pub(crate) fn order_field(field_name: &str) -> Result<OrderField> {
    let f = field_name.trim();
    if f.is_empty() {
        return Err(StoreError::invalid(
            "Invalid order_by: 'field_name' is required",
        ));
    }
    let mut lexer = Lexer::new(f);
    let field = lexer.identifier()?;
    if !lexer.at_end() {
        return Err(StoreError::invalid(format!(
            "Invalid order_by field_name '{field_name}': expected an attribute or 'metrics.<key>'"
        )));
    }
    match field {
        Field::Attribute { column, .. } => Ok(OrderField::Column(column)),
        Field::Metric(key) => Ok(OrderField::Metric(key)),
        other => Err(StoreError::invalid(format!(
            "Invalid order_by field_name '{}': only attributes and metrics can order logged models",
            other.display()
        ))),
    }
}

/// A cursor over a filter string.
struct Lexer<'a> {
    s: &'a str,
    pos: usize,
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn is_bare_key_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '.' | '-' | '/' | ':')
}

impl<'a> Lexer<'a> {
    fn new(s: &'a str) -> Self {
        Lexer { s, pos: 0 }
    }

    fn rest(&self) -> &'a str {
        &self.s[self.pos..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn skip_ws(&mut self) {
        let rest = self.rest();
        self.pos += rest.len() - rest.trim_start().len();
    }

    fn at_end(&mut self) -> bool {
        self.skip_ws();
        self.pos >= self.s.len()
    }

    /// Takes the longest prefix whose chars satisfy `f`.
    fn take_while(&mut self, f: impl Fn(char) -> bool) -> &'a str {
        let rest = self.rest();
        let n = rest.find(|c: char| !f(c)).unwrap_or(rest.len());
        self.pos += n;
        &rest[..n]
    }

    /// Reads text quoted with the delimiter at the cursor. A doubled delimiter or a
    /// backslash before the delimiter (or before a backslash) stands for it; any other
    /// backslash is kept, so LIKE escapes reach the database as written.
    fn quoted(&mut self) -> Result<String> {
        let delim = self.peek().expect("the caller saw a quote");
        self.pos += delim.len_utf8();
        let mut out = String::new();
        let mut chars = self.rest().char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            if c == '\\' {
                if let Some(&(_, next)) = chars.peek()
                    && (next == delim || next == '\\')
                {
                    out.push(next);
                    chars.next();
                    continue;
                }
                out.push(c);
            } else if c == delim {
                if let Some(&(_, next)) = chars.peek()
                    && next == delim
                {
                    out.push(delim);
                    chars.next();
                    continue;
                }
                self.pos += i + c.len_utf8();
                return Ok(out);
            } else {
                out.push(c);
            }
        }
        Err(StoreError::invalid(format!(
            "Invalid filter: unterminated quoted text starting at '{delim}{}'",
            out.chars().take(32).collect::<String>()
        )))
    }

    /// Reads `attribute`, `prefix.key` or ``prefix.`key` ``.
    fn identifier(&mut self) -> Result<Field> {
        self.skip_ws();
        match self.peek() {
            Some('`') | Some('"') => {
                let name = self.quoted()?;
                return attribute(&name);
            }
            Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
            _ => {
                return Err(StoreError::invalid(format!(
                    "Invalid filter: expected an identifier at '{}'",
                    self.rest().chars().take(32).collect::<String>()
                )));
            }
        }
        let word = self.take_while(is_word_char);
        if self.peek() != Some('.') {
            return attribute(word);
        }
        self.pos += 1;
        let key = match self.peek() {
            Some('`') | Some('"') => self.quoted()?,
            _ => self.take_while(is_bare_key_char).to_string(),
        };
        if key.is_empty() {
            return Err(StoreError::invalid(format!(
                "Invalid filter: '{word}.' is missing its key"
            )));
        }
        Ok(match word.to_ascii_lowercase().as_str() {
            "metric" | "metrics" => Field::Metric(key),
            "param" | "params" | "parameter" | "parameters" => Field::Param(key),
            "tag" | "tags" => Field::Tag(key),
            "attribute" | "attributes" | "attr" => attribute(&key)?,
            other => {
                return Err(StoreError::invalid(format!(
                    "Invalid entity type '{other}' in logged model search. Valid types are \
                     'metrics', 'params', 'tags' and 'attributes'"
                )));
            }
        })
    }

    fn comparator(&mut self) -> Result<CompOp> {
        self.skip_ws();
        for (text, op) in [
            ("!=", CompOp::Ne),
            ("<>", CompOp::Ne),
            ("<=", CompOp::Le),
            (">=", CompOp::Ge),
            ("==", CompOp::Eq),
            ("=", CompOp::Eq),
            ("<", CompOp::Lt),
            (">", CompOp::Gt),
        ] {
            if self.rest().starts_with(text) {
                self.pos += text.len();
                return Ok(op);
            }
        }
        let start = self.pos;
        let word = self.take_while(is_word_char).to_ascii_uppercase();
        Ok(match word.as_str() {
            "LIKE" => CompOp::Like,
            "ILIKE" => CompOp::ILike,
            "IN" => CompOp::In,
            "NOT" => {
                self.skip_ws();
                if self.take_while(is_word_char).eq_ignore_ascii_case("IN") {
                    CompOp::NotIn
                } else {
                    self.pos = start;
                    return self.bad_comparator();
                }
            }
            _ => {
                self.pos = start;
                return self.bad_comparator();
            }
        })
    }

    fn bad_comparator<T>(&self) -> Result<T> {
        Err(StoreError::invalid(format!(
            "Invalid filter: expected a comparator (=, !=, <, <=, >, >=, LIKE, ILIKE, IN, NOT IN) at '{}'",
            self.rest().chars().take(32).collect::<String>()
        )))
    }

    fn value(&mut self) -> Result<Value> {
        self.skip_ws();
        match self.peek() {
            Some('\'') | Some('"') => Ok(Value::String(self.quoted()?)),
            Some('(') => {
                self.pos += 1;
                let mut items = Vec::new();
                loop {
                    self.skip_ws();
                    match self.peek() {
                        Some(')') if items.is_empty() => {
                            self.pos += 1;
                            break;
                        }
                        Some('\'') | Some('"') => items.push(self.quoted()?),
                        _ => {
                            return Err(StoreError::invalid(
                                "Invalid filter: a list holds quoted strings, as in ('a', 'b')",
                            ));
                        }
                    }
                    self.skip_ws();
                    match self.peek() {
                        Some(',') => self.pos += 1,
                        Some(')') => {
                            self.pos += 1;
                            break;
                        }
                        _ => {
                            return Err(StoreError::invalid(
                                "Invalid filter: unterminated list; expected ',' or ')'",
                            ));
                        }
                    }
                }
                Ok(Value::List(items))
            }
            _ => {
                let text = self
                    .take_while(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E'));
                match text.parse::<f64>() {
                    Ok(n) if !text.is_empty() && n.is_finite() => Ok(Value::Number(n)),
                    _ => Err(StoreError::invalid(format!(
                        "Invalid filter: expected a number or a quoted string at '{}'",
                        self.s[self.pos - text.len()..]
                            .chars()
                            .take(32)
                            .collect::<String>()
                    ))),
                }
            }
        }
    }
}

const NUMERIC_OPS: &[CompOp] = &[
    CompOp::Eq,
    CompOp::Ne,
    CompOp::Lt,
    CompOp::Le,
    CompOp::Gt,
    CompOp::Ge,
];
const STRING_OPS: &[CompOp] = &[
    CompOp::Eq,
    CompOp::Ne,
    CompOp::Like,
    CompOp::ILike,
    CompOp::In,
    CompOp::NotIn,
];

/// Parses a logged-model search filter (see the module docs) into its conjunction.
pub(crate) fn parse_filter(filter: &str) -> Result<Vec<Condition>> {
    let mut lexer = Lexer::new(filter);
    let mut out = Vec::new();
    if lexer.at_end() {
        return Ok(out);
    }
    loop {
        let field = lexer.identifier()?;
        let op = lexer.comparator()?;
        let value = lexer.value()?;
        let kind = field.kind();
        let ops = match kind {
            Kind::Number => NUMERIC_OPS,
            Kind::Text => STRING_OPS,
        };
        if !ops.contains(&op) {
            return Err(StoreError::invalid(format!(
                "Invalid comparator '{op}' for {}: expected one of {}",
                field.display(),
                ops.iter()
                    .map(|o| o.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let value_ok = match (&value, kind, op) {
            (Value::Number(_), Kind::Number, _) => true,
            (Value::List(_), Kind::Text, CompOp::In | CompOp::NotIn) => true,
            (Value::String(_), Kind::Text, op) => !matches!(op, CompOp::In | CompOp::NotIn),
            _ => false,
        };
        if !value_ok {
            let expected = match (kind, op) {
                (Kind::Number, _) => "a number",
                (Kind::Text, CompOp::In | CompOp::NotIn) => "a list of quoted strings",
                (Kind::Text, _) => "a quoted string",
            };
            return Err(StoreError::invalid(format!(
                "Invalid value for {} {op}: expected {expected}",
                field.display()
            )));
        }
        let value = match (&field, value) {
            (Field::Attribute { name: "status", .. }, v)
                if op != CompOp::Like && op != CompOp::ILike =>
            {
                normalize_status(v)
            }
            (_, v) => v,
        };
        out.push(Condition { field, op, value });
        if lexer.at_end() {
            return Ok(out);
        }
        let and = lexer.take_while(is_word_char);
        if !and.eq_ignore_ascii_case("AND") {
            return Err(StoreError::invalid(format!(
                "Invalid filter: expected AND between comparisons, found '{}'",
                if and.is_empty() {
                    lexer.rest().chars().take(32).collect::<String>()
                } else {
                    and.to_string()
                }
            )));
        }
    }
}

/// Lets `status = 'READY'` mean `LOGGED_MODEL_READY`, as stored.
fn normalize_status(v: Value) -> Value {
    let full = |s: String| {
        let upper = s.to_ascii_uppercase();
        match upper.as_str() {
            "PENDING" | "READY" | "UPLOAD_FAILED" => format!("LOGGED_MODEL_{upper}"),
            _ => s,
        }
    };
    match v {
        Value::String(s) => Value::String(full(s)),
        Value::List(items) => Value::List(items.into_iter().map(full).collect()),
        other => other,
    }
}

pub(crate) fn push_condition(
    sql: &mut Sql,
    c: &Condition,
    datasets: &[LoggedModelDataset],
) -> Result<()> {
    match &c.field {
        Field::Attribute { column, .. } => sql.compare(column, c.op, &c.value)?,
        Field::Param(key) | Field::Tag(key) => {
            let table = if matches!(c.field, Field::Param(_)) {
                "logged_model_params"
            } else {
                "logged_model_tags"
            };
            sql.push(&format!(
                "EXISTS (SELECT 1 FROM {table} p WHERE p.model_id = lm.model_id AND p.key = "
            ));
            sql.bind_str(key);
            sql.push(" AND ");
            sql.compare("p.value", c.op, &c.value)?;
            sql.push(")");
        }
        Field::Metric(key) => {
            // Some dataset's latest point of the metric (latest by timestamp, then step)
            // satisfies the comparison; NaN satisfies none.
            sql.push(
                "EXISTS (SELECT 1 FROM logged_model_metrics m WHERE m.model_id = lm.model_id AND m.key = ",
            );
            sql.bind_str(key);
            if !datasets.is_empty() {
                sql.push(" AND (");
                for (i, d) in datasets.iter().enumerate() {
                    if i > 0 {
                        sql.push(" OR ");
                    }
                    sql.push("(m.dataset_name = ");
                    sql.bind_str(&d.dataset_name);
                    if let Some(digest) = d.dataset_digest.as_deref().filter(|d| !d.is_empty()) {
                        sql.push(" AND m.dataset_digest = ");
                        sql.bind_str(digest);
                    }
                    sql.push(")");
                }
                sql.push(")");
            }
            sql.push(
                " AND NOT EXISTS (SELECT 1 FROM logged_model_metrics n WHERE n.model_id = m.model_id \
                 AND n.key = m.key AND n.dataset_name = m.dataset_name \
                 AND n.dataset_digest = m.dataset_digest AND (n.timestamp > m.timestamp \
                 OR (n.timestamp = m.timestamp AND n.step > m.step))) AND m.is_nan = 0 AND ",
            );
            sql.compare("m.value", c.op, &c.value)?;
            sql.push(")");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logged_models::{STATUS_READY, STATUS_UPLOAD_FAILED, parse_finalize_status};

    fn attr(name: &'static str) -> Field {
        attribute(name).unwrap()
    }

    #[test]
    fn filters_parse() {
        let got = parse_filter(
            "name = 'a''b' AND metrics.`val loss` <= 0.5 and params.lr != \"0.1\" \
             AND tags.x LIKE 'y%' AND creation_timestamp > 17 AND status IN ('READY', 'x')",
        )
        .unwrap();
        assert_eq!(got.len(), 6);
        assert_eq!(got[0].field, attr("name"));
        assert_eq!(got[0].value, Value::String("a'b".into()));
        assert_eq!(got[1].field, Field::Metric("val loss".into()));
        assert_eq!(
            (got[1].op, &got[1].value),
            (CompOp::Le, &Value::Number(0.5))
        );
        assert_eq!(got[2].field, Field::Param("lr".into()));
        assert_eq!(got[2].op, CompOp::Ne);
        assert_eq!(got[3].op, CompOp::Like);
        assert_eq!(got[4].field, attr("creation_timestamp"));
        assert_eq!(
            got[5].value,
            Value::List(vec!["LOGGED_MODEL_READY".into(), "x".into()])
        );
        assert!(parse_filter("").unwrap().is_empty());
        assert!(parse_filter("   ").unwrap().is_empty());
        let keyed = parse_filter("metrics.val.loss>-1e3").unwrap();
        assert_eq!(keyed[0].field, Field::Metric("val.loss".into()));
        assert_eq!(keyed[0].value, Value::Number(-1000.0));
        let ns = parse_filter("tags.`a b` NOT IN ('x')").unwrap();
        assert_eq!(ns[0].op, CompOp::NotIn);
    }

    #[test]
    fn bad_filters_are_refused_with_a_reason() {
        for (filter, needle) in [
            ("bogus = 'x'", "bogus"),
            ("metrics.loss LIKE 'x'", "LIKE"),
            ("metrics.loss < 'x'", "number"),
            ("params.lr = 0.1", "quoted string"),
            ("name = 'x' OR name = 'y'", "AND"),
            ("name = 'x", "unterminated"),
            ("name ~ 'x'", "comparator"),
            ("creation_timestamp > 'x'", "number"),
            ("foo.bar = 'x'", "entity"),
            ("name IN 'x'", "list"),
        ] {
            let e = parse_filter(filter).unwrap_err().to_string();
            assert!(e.contains(needle), "{filter}: {e}");
        }
    }

    #[test]
    fn finalize_statuses() {
        assert_eq!(
            parse_finalize_status("LOGGED_MODEL_READY").unwrap(),
            STATUS_READY
        );
        assert_eq!(parse_finalize_status("2").unwrap(), STATUS_READY);
        assert_eq!(parse_finalize_status("3").unwrap(), STATUS_UPLOAD_FAILED);
        assert_eq!(
            parse_finalize_status("upload_failed").unwrap(),
            STATUS_UPLOAD_FAILED
        );
        let e = parse_finalize_status("LOGGED_MODEL_PENDING")
            .unwrap_err()
            .to_string();
        assert!(e.contains("'status'"), "{e}");
        assert!(parse_finalize_status("bogus").is_err());
    }

    #[test]
    fn order_fields() {
        assert!(matches!(
            order_field("name").unwrap(),
            OrderField::Column("lm.name")
        ));
        assert!(matches!(
            order_field("creation_timestamp").unwrap(),
            OrderField::Column("lm.creation_time")
        ));
        assert!(
            matches!(order_field("metrics.`a b`").unwrap(), OrderField::Metric(k) if k == "a b")
        );
        assert!(order_field("params.x").is_err());
        assert!(order_field("nope").is_err());
        assert!(order_field("name DESC").is_err());
    }
}
