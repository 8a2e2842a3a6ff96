//! MLflow's search grammar: `filter` strings and `order_by` clauses for runs, experiments,
//! registered models and model versions (the semantics of `mlflow/utils/search_utils.py`).
//!
//! A filter is a conjunction of comparisons, `<identifier> <comparator> <value>`, joined by
//! `AND` (any case). MLflow has no `OR`, no parentheses and no negation beyond `!=` / `NOT IN`,
//! so a hand-written scanner is simpler and gives better error messages than a general SQL
//! tokenizer. Parsing and validation happen in one pass so that every error can name the
//! identifier it concerns.
//!
//! Identifiers are `prefix.key` (prefix synonyms such as `metric`/`metrics`, case-insensitive;
//! the key is everything after the *first* dot, so `metrics.val.loss` has key `val.loss`) or a
//! bare name, which is an attribute of the searched entity. Keys that contain characters other
//! than `[A-Za-z0-9_.-/]` are written in backticks or double quotes: ``metrics.`my key` ``.
//!
//! Quoted text (keys and string values) uses the same escapes: a backslash before the delimiter
//! or before another backslash escapes it, a doubled delimiter stands for one (SQL style), and
//! any other backslash is kept literally so LIKE patterns such as `'50\%'` reach the store as
//! written.

use std::fmt;

/// What a comparison or ordering key refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntityType {
    Metric,
    Param,
    Tag,
    Attribute,
    Dataset,
}

impl EntityType {
    /// Canonical prefix, used when echoing identifiers back in error messages.
    fn prefix(self) -> &'static str {
        match self {
            EntityType::Metric => "metrics",
            EntityType::Param => "params",
            EntityType::Tag => "tags",
            EntityType::Attribute => "attributes",
            EntityType::Dataset => "datasets",
        }
    }

    /// Maps a written prefix (any case, any MLflow synonym) to its entity.
    fn from_prefix(prefix: &str) -> Option<Self> {
        Some(match prefix.to_ascii_lowercase().as_str() {
            "metric" | "metrics" => EntityType::Metric,
            "param" | "params" | "parameter" | "parameters" => EntityType::Param,
            "tag" | "tags" => EntityType::Tag,
            "attribute" | "attributes" | "attr" | "run" => EntityType::Attribute,
            "dataset" | "datasets" => EntityType::Dataset,
            _ => return None,
        })
    }
}

/// A comparator. `In` / `NotIn` take a [`Value::List`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Like,
    ILike,
    In,
    NotIn,
    /// `IS NULL`: the run has no such param or tag. Takes [`Value::Null`].
    IsNull,
    /// `IS NOT NULL`: the run has the param or tag, whatever its value.
    IsNotNull,
}

impl CompOp {
    /// The comparator as MLflow spells it (`=`, `LIKE`, `NOT IN`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            CompOp::Eq => "=",
            CompOp::Ne => "!=",
            CompOp::Lt => "<",
            CompOp::Le => "<=",
            CompOp::Gt => ">",
            CompOp::Ge => ">=",
            CompOp::Like => "LIKE",
            CompOp::ILike => "ILIKE",
            CompOp::In => "IN",
            CompOp::NotIn => "NOT IN",
            CompOp::IsNull => "IS NULL",
            CompOp::IsNotNull => "IS NOT NULL",
        }
    }
}

impl fmt::Display for CompOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The right-hand side of a comparison.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Number(f64),
    String(String),
    List(Vec<String>),
    /// The operand of `IS NULL` / `IS NOT NULL`.
    Null,
}

/// One `<identifier> <comparator> <value>` term of a filter. Attribute keys are normalised
/// (`created` becomes `start_time`), other keys are exactly as written, without the prefix.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub entity: EntityType,
    pub key: String,
    pub op: CompOp,
    pub value: Value,
}

/// One `order_by` clause, `<identifier> [ASC|DESC]`.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderBy {
    pub entity: EntityType,
    pub key: String,
    pub ascending: bool,
}

/// A filter or order_by clause that does not parse; the message is meant for the API client.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct SearchError {
    pub message: String,
}

fn err<T>(message: impl Into<String>) -> Result<T, SearchError> {
    Err(SearchError {
        message: message.into(),
    })
}

/// Parses a `search_runs` filter.
pub fn parse_run_filter(filter: &str) -> Result<Vec<Comparison>, SearchError> {
    parse_filter(filter, &RUN_FILTER)
}

/// Parses one `search_runs` order_by clause.
pub fn parse_run_order_by(clause: &str) -> Result<OrderBy, SearchError> {
    parse_order_by(clause, &RUN_ORDER)
}

/// Parses a `search_experiments` filter.
pub fn parse_experiment_filter(filter: &str) -> Result<Vec<Comparison>, SearchError> {
    parse_filter(filter, &EXPERIMENT_FILTER)
}

/// Parses one `search_experiments` order_by clause.
pub fn parse_experiment_order_by(clause: &str) -> Result<OrderBy, SearchError> {
    parse_order_by(clause, &EXPERIMENT_ORDER)
}

/// Parses a `search_registered_models` filter.
pub fn parse_registered_model_filter(filter: &str) -> Result<Vec<Comparison>, SearchError> {
    parse_filter(filter, &REGISTERED_MODEL_FILTER)
}

/// Parses a `search_model_versions` filter.
pub fn parse_model_version_filter(filter: &str) -> Result<Vec<Comparison>, SearchError> {
    parse_filter(filter, &MODEL_VERSION_FILTER)
}

/// Parses one order_by clause of `search_registered_models` (`versions = false`) or
/// `search_model_versions` (`versions = true`).
pub fn parse_registry_order_by(clause: &str, versions: bool) -> Result<OrderBy, SearchError> {
    let context = if versions {
        &MODEL_VERSION_ORDER
    } else {
        &REGISTERED_MODEL_ORDER
    };
    parse_order_by(clause, context)
}

// ---------------------------------------------------------------------------------------------
// Per-context rules. Kept as data so that each context's grammar is readable in one place.

mod contexts;

use contexts::*;

fn resolve_alias<'k>(aliases: &[(&str, &'k str)], key: &'k str) -> &'k str {
    aliases
        .iter()
        .find(|(alias, _)| *alias == key)
        .map_or(key, |(_, target)| target)
}

/// Renders a list of names the way MLflow's messages do: `'['a', 'b']'`.
fn name_list<'n>(names: impl IntoIterator<Item = &'n str>) -> String {
    let quoted: Vec<String> = names.into_iter().map(|n| format!("'{n}'")).collect();
    format!("'[{}]'", quoted.join(", "))
}

fn op_list(ops: &[CompOp]) -> String {
    name_list(ops.iter().map(|op| op.as_str()))
}

/// An identifier as it should be shown in messages: canonical prefix, key quoted if needed.
fn display_ident(entity: EntityType, key: &str) -> String {
    if !key.is_empty() && key.chars().all(is_bare_key_char) {
        format!("{}.{key}", entity.prefix())
    } else {
        format!("{}.`{key}`", entity.prefix())
    }
}

/// An identifier as written, before it is checked against a context.
struct Ident<'a> {
    entity: EntityType,
    /// The prefix as written, for "invalid entity" messages; `None` for bare attributes.
    prefix: Option<&'a str>,
    key: String,
}

impl FilterContext {
    /// Checks an identifier against this context and returns its normalised key, value kind
    /// and allowed comparators.
    fn resolve(&self, ident: Ident<'_>) -> Result<(String, Kind, &'static [CompOp]), SearchError> {
        let fixed = |fields: &'static [Field], key: &str, what: &str| match fields
            .iter()
            .find(|f| f.name == key)
        {
            Some(f) => Ok((f.name.to_string(), f.kind, f.ops)),
            None => err(format!(
                "Invalid {what} key '{key}' specified. Valid keys are {}",
                name_list(fields.iter().map(|f| f.name))
            )),
        };
        match ident.entity {
            EntityType::Attribute => fixed(
                self.attributes,
                resolve_alias(self.aliases, &ident.key),
                "attribute",
            ),
            EntityType::Dataset if !self.datasets.is_empty() => {
                fixed(self.datasets, &ident.key, "dataset")
            }
            entity => match self.free.iter().find(|(e, _, _)| *e == entity) {
                Some(&(_, kind, ops)) => Ok((ident.key, kind, ops)),
                None => {
                    let mut valid: Vec<&str> =
                        self.free.iter().map(|(e, _, _)| e.prefix()).collect();
                    valid.push("attributes");
                    if !self.datasets.is_empty() {
                        valid.push("datasets");
                    }
                    invalid_entity(ident.prefix.unwrap_or(""), self.subject, "filter", valid)
                }
            },
        }
    }
}

impl OrderContext {
    fn resolve(&self, ident: Ident<'_>) -> Result<(EntityType, String), SearchError> {
        match ident.entity {
            EntityType::Attribute => {
                let key = resolve_alias(self.aliases, &ident.key);
                if self.attributes.contains(&key) {
                    Ok((EntityType::Attribute, key.to_string()))
                } else {
                    err(format!(
                        "Invalid order_by key '{}' for {} search. Valid attribute keys are {}",
                        ident.key,
                        self.subject,
                        name_list(self.attributes.iter().copied())
                    ))
                }
            }
            entity if self.free.contains(&entity) => Ok((entity, ident.key)),
            _ => {
                let mut valid: Vec<&str> = self.free.iter().map(|e| e.prefix()).collect();
                valid.push("attributes");
                invalid_entity(ident.prefix.unwrap_or(""), self.subject, "order_by", valid)
            }
        }
    }
}

fn invalid_entity<T>(
    prefix: &str,
    subject: &str,
    clause: &str,
    valid: Vec<&str>,
) -> Result<T, SearchError> {
    err(format!(
        "Invalid entity type '{prefix}' in {subject} {clause}. Valid prefixes are {}",
        name_list(valid)
    ))
}

// ---------------------------------------------------------------------------------------------
// Scanner.

/// Characters allowed in an unquoted key. Non-ASCII letters are allowed too, since tag keys
/// are often written in other scripts and nothing in the grammar conflicts with them.
fn is_bare_key_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '.' | '-' | '/')
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// A value token before it is checked against the field's kind.
enum RawValue<'a> {
    Text(String),
    Number(f64, &'a str),
    /// Anything else, kept verbatim for the error message.
    Other(&'a str),
    End,
}

struct Parser<'a> {
    src: &'a str,
    /// Byte offset into `src`, always on a char boundary.
    pos: usize,
}

impl<'a> Parser<'a> {
    fn new(src: &'a str) -> Self {
        Parser { src, pos: 0 }
    }

    fn rest(&self) -> &'a str {
        &self.src[self.pos..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn at_end(&self) -> bool {
        self.pos == self.src.len()
    }

    fn take_while(&mut self, pred: impl Fn(char) -> bool) -> &'a str {
        let rest = self.rest();
        let len = rest.find(|c| !pred(c)).unwrap_or(rest.len());
        self.pos += len;
        &rest[..len]
    }

    fn skip_ws(&mut self) {
        self.take_while(char::is_whitespace);
    }

    fn word(&mut self) -> &'a str {
        self.take_while(is_word_char)
    }

    /// The next whitespace-delimited chunk, to show what was found instead of what was expected.
    fn snippet(&self) -> &'a str {
        self.rest().split_whitespace().next().unwrap_or("")
    }

    /// Reads text delimited by `quote` (the cursor is on the opening delimiter).
    fn quoted(&mut self, what: &str) -> Result<String, SearchError> {
        let start = self.pos;
        let mut chars = self.rest().char_indices();
        let quote = chars
            .next()
            .map(|(_, c)| c)
            .expect("caller checked the delimiter");
        let mut out = String::new();
        while let Some((i, c)) = chars.next() {
            if c == '\\' {
                match chars.clone().next() {
                    Some((_, n)) if n == quote || n == '\\' => {
                        out.push(n);
                        chars.next();
                    }
                    _ => out.push('\\'),
                }
            } else if c == quote {
                // A doubled delimiter is an escaped delimiter, SQL style.
                if matches!(chars.clone().next(), Some((_, n)) if n == quote) {
                    out.push(quote);
                    chars.next();
                } else {
                    self.pos += i + c.len_utf8();
                    return Ok(out);
                }
            } else {
                out.push(c);
            }
        }
        err(format!(
            "Unterminated {what} starting at position {start}: {}",
            &self.src[start..]
        ))
    }

    /// Reads `prefix.key`, `prefix.<quoted key>` or a bare attribute name.
    fn identifier(&mut self) -> Result<Ident<'a>, SearchError> {
        let run = self.take_while(is_bare_key_char);
        if run.is_empty() {
            return match self.peek() {
                None => err("Expected an identifier but reached the end of the input"),
                Some(_) => err(format!(
                    "Expected an identifier but found '{}'",
                    self.snippet()
                )),
            };
        }
        let Some((prefix, rest)) = run.split_once('.') else {
            return Ok(Ident {
                entity: EntityType::Attribute,
                prefix: None,
                key: run.to_string(),
            });
        };
        let Some(entity) = EntityType::from_prefix(prefix) else {
            return err(format!(
                "Invalid entity type '{prefix}' in identifier '{run}'. Valid prefixes are {}",
                name_list(["metrics", "params", "tags", "attributes", "datasets"])
            ));
        };
        let key = if !rest.is_empty() {
            rest.to_string()
        } else if matches!(self.peek(), Some('`' | '"')) {
            let key = self.quoted("quoted key")?;
            if key.is_empty() {
                return err(format!("Empty key in identifier '{run}' is not allowed"));
            }
            key
        } else {
            return err(format!(
                "Expected a key after '{run}' but found '{}'",
                self.snippet()
            ));
        };
        Ok(Ident {
            entity,
            prefix: Some(prefix),
            key,
        })
    }

    fn comparator(&mut self, ident: &str) -> Result<CompOp, SearchError> {
        self.skip_ws();
        let symbol = self.take_while(|c| matches!(c, '=' | '!' | '<' | '>'));
        if !symbol.is_empty() {
            return Ok(match symbol {
                "=" => CompOp::Eq,
                "!=" => CompOp::Ne,
                "<" => CompOp::Lt,
                "<=" => CompOp::Le,
                ">" => CompOp::Gt,
                ">=" => CompOp::Ge,
                other => return err(format!("Invalid comparator '{other}' after {ident}")),
            });
        }
        let word = self.word();
        Ok(match word.to_ascii_uppercase().as_str() {
            "LIKE" => CompOp::Like,
            "ILIKE" => CompOp::ILike,
            "IN" => CompOp::In,
            "IS" => {
                self.skip_ws();
                let mut next = self.word();
                let negated = next.eq_ignore_ascii_case("NOT");
                if negated {
                    self.skip_ws();
                    next = self.word();
                }
                if !next.eq_ignore_ascii_case("NULL") {
                    return err(format!(
                        "Expected 'NULL' after 'IS{}' in the comparison on {ident} but found '{}'",
                        if negated { " NOT" } else { "" },
                        if next.is_empty() {
                            self.snippet()
                        } else {
                            next
                        }
                    ));
                }
                if negated {
                    CompOp::IsNotNull
                } else {
                    CompOp::IsNull
                }
            }
            "NOT" => {
                self.skip_ws();
                let next = self.word();
                if !next.eq_ignore_ascii_case("IN") {
                    return err(format!(
                        "Expected 'IN' after 'NOT' in the comparison on {ident} but found '{}'",
                        if next.is_empty() {
                            self.snippet()
                        } else {
                            next
                        }
                    ));
                }
                CompOp::NotIn
            }
            "" if self.at_end() => {
                return err(format!(
                    "Expected a comparator after {ident} but reached the end of the filter"
                ));
            }
            "" => {
                return err(format!(
                    "Invalid comparator '{}' after {ident}",
                    self.snippet()
                ));
            }
            _ => return err(format!("Invalid comparator '{word}' after {ident}")),
        })
    }

    /// Reads a quoted string, a numeric literal or (for the error message) anything else.
    fn raw_value(&mut self) -> Result<RawValue<'a>, SearchError> {
        self.skip_ws();
        match self.peek() {
            None => return Ok(RawValue::End),
            Some('\'' | '"') => return Ok(RawValue::Text(self.quoted("string")?)),
            Some(_) => {}
        }
        let start = self.pos;
        if let Some(number) = self.number() {
            return Ok(RawValue::Number(number, &self.src[start..self.pos]));
        }
        self.pos = start;
        // Not a value: take the offending chunk (at least one char) so the caller can show it.
        let first = self.peek().map_or(0, char::len_utf8);
        self.pos += first;
        self.take_while(|c| !c.is_whitespace() && !matches!(c, ',' | ')'));
        Ok(RawValue::Other(&self.src[start..self.pos]))
    }

    /// Scans `[+-] (digits [. digits?] | . digits) [(e|E) [+-] digits]`, followed by neither a
    /// key character nor a quote. Only such literals are numbers: Rust's `f64::from_str` would
    /// also take `inf` and `nan`, which MLflow does not.
    fn number(&mut self) -> Option<f64> {
        let start = self.pos;
        if matches!(self.peek(), Some('+' | '-')) {
            self.pos += 1;
        }
        let int_digits = self.take_while(|c| c.is_ascii_digit()).len();
        let mut frac_digits = 0;
        if self.peek() == Some('.') {
            self.pos += 1;
            frac_digits = self.take_while(|c| c.is_ascii_digit()).len();
        }
        if int_digits + frac_digits == 0 {
            return None;
        }
        if matches!(self.peek(), Some('e' | 'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some('+' | '-')) {
                self.pos += 1;
            }
            if self.take_while(|c| c.is_ascii_digit()).is_empty() {
                return None;
            }
        }
        if self
            .peek()
            .is_some_and(|c| is_bare_key_char(c) || matches!(c, '\'' | '"' | '`'))
        {
            return None;
        }
        self.src[start..self.pos].parse().ok()
    }

    /// Reads `( 'a', "b", ... )` after IN / NOT IN.
    fn string_list(&mut self, ident: &str, op: CompOp) -> Result<Vec<String>, SearchError> {
        self.skip_ws();
        if self.peek() != Some('(') {
            return err(format!(
                "Expected '(' to start the value list of {ident} {op} but found '{}'",
                self.snippet()
            ));
        }
        self.pos += 1;
        self.skip_ws();
        if self.peek() == Some(')') {
            return err(format!(
                "The value list of {ident} {op} must contain at least one value"
            ));
        }
        let mut values = Vec::new();
        loop {
            match self.raw_value()? {
                RawValue::Text(text) => values.push(text),
                RawValue::Number(_, raw) | RawValue::Other(raw) => {
                    return err(format!(
                        "Expected a quoted string in the value list of {ident} but got {raw}"
                    ));
                }
                RawValue::End => break,
            }
            self.skip_ws();
            match self.peek() {
                Some(',') => self.pos += 1,
                Some(')') => {
                    self.pos += 1;
                    return Ok(values);
                }
                None => break,
                Some(_) => {
                    return err(format!(
                        "Expected ',' or ')' in the value list of {ident} but found '{}'",
                        self.snippet()
                    ));
                }
            }
        }
        err(format!(
            "Unterminated value list of {ident} {op}: expected ')' before the end of the filter"
        ))
    }

    fn comparison(&mut self, context: &FilterContext) -> Result<Comparison, SearchError> {
        let ident = self.identifier()?;
        let entity = ident.entity;
        let (key, kind, ops) = context.resolve(ident)?;
        let shown = display_ident(entity, &key);
        let op = self.comparator(&shown)?;
        if !ops.contains(&op) {
            return err(format!(
                "Invalid comparator '{op}' for {shown}. Valid comparators are {}",
                op_list(ops)
            ));
        }
        let value = if matches!(op, CompOp::IsNull | CompOp::IsNotNull) {
            Value::Null
        } else if matches!(op, CompOp::In | CompOp::NotIn) {
            Value::List(self.string_list(&shown, op)?)
        } else {
            match (kind, self.raw_value()?) {
                (_, RawValue::End) => {
                    return err(format!(
                        "Expected a value for {shown} after '{op}' but reached the end of the filter"
                    ));
                }
                (Kind::Number, RawValue::Number(n, _)) => Value::Number(n),
                (Kind::Number, RawValue::Text(text)) => {
                    return err(format!(
                        "Expected a numeric value for {shown} but got '{text}'"
                    ));
                }
                (Kind::Number, RawValue::Other(raw)) => {
                    return err(format!(
                        "Expected a numeric value for {shown} but got {raw}"
                    ));
                }
                (Kind::Text, RawValue::Text(text)) => Value::String(text),
                (Kind::Text, RawValue::Number(_, raw) | RawValue::Other(raw)) => {
                    return err(format!(
                        "Expected a quoted string value for {shown} but got {raw}"
                    ));
                }
            }
        };
        Ok(Comparison {
            entity,
            key,
            op,
            value,
        })
    }
}

fn parse_filter(filter: &str, context: &FilterContext) -> Result<Vec<Comparison>, SearchError> {
    let mut parser = Parser::new(filter);
    let mut comparisons = Vec::new();
    parser.skip_ws();
    if parser.at_end() {
        return Ok(comparisons);
    }
    loop {
        comparisons.push(parser.comparison(context)?);
        parser.skip_ws();
        if parser.at_end() {
            return Ok(comparisons);
        }
        // Remember where the connective starts so a bad one can be quoted whole.
        let found = parser.snippet();
        let word = parser.word();
        if word.eq_ignore_ascii_case("AND") {
            parser.skip_ws();
            if parser.at_end() {
                return err("Expected a comparison after 'AND' but reached the end of the filter");
            }
        } else if word.eq_ignore_ascii_case("OR") {
            return err(format!(
                "Invalid clause '{word}' in filter: 'OR' is not supported, only 'AND' can join comparisons"
            ));
        } else {
            return err(format!(
                "Expected 'AND' between comparisons but found '{found}'"
            ));
        }
    }
}

fn parse_order_by(clause: &str, context: &OrderContext) -> Result<OrderBy, SearchError> {
    let mut parser = Parser::new(clause);
    parser.skip_ws();
    if parser.at_end() {
        return err(format!(
            "Invalid order_by clause '{clause}': expected an identifier"
        ));
    }
    let (entity, key) = context.resolve(parser.identifier()?)?;
    parser.skip_ws();
    let direction = parser.word();
    let ascending = match direction.to_ascii_uppercase().as_str() {
        "" | "ASC" => true,
        "DESC" => false,
        _ => {
            return err(format!(
                "Invalid ordering '{direction}' in order_by clause '{clause}'. Expected ASC or DESC"
            ));
        }
    };
    parser.skip_ws();
    if !parser.at_end() {
        return err(format!(
            "Invalid order_by clause '{clause}': unexpected trailing text '{}'",
            parser.rest()
        ));
    }
    Ok(OrderBy {
        entity,
        key,
        ascending,
    })
}
