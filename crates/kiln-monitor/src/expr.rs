//! `when` expressions: the conditions of alert rules.
//!
//! ```text
//! condition  := or
//! or         := and ("or" and)*
//! and        := not ("and" not)*
//! not        := "not" not | comparison
//! comparison := sum (("<" | "<=" | ">" | ">=" | "==" | "!=") sum)?
//! sum        := product (("+" | "-") product)*
//! product    := unary (("*" | "/") unary)*
//! unary      := "-" unary | primary
//! primary    := number | indicator selector? | "(" condition ")"
//! indicator  := segment ("." segment)*        e.g. p99_ms, error_rate, drift.temp, drift.`dep delay`
//! selector   := "{" label ("=" | "!=" | "=~" | "!~") string ("," …)* ","? "}"
//! ```
//!
//! `and`, `or` and `not` are keywords in any case. Numbers are decimal with an optional
//! exponent (`0.5`, `1e-3`). Strings in selectors are double- or single-quoted with `\"`, `\\`,
//! `\n` escapes. The whole expression must be a condition: `p99_ms > 20` or
//! `error_rate > 0.01 and request_rate > 1`, not a bare number. Comparisons do not chain.
//!
//! **Selectors** narrow an indicator to the series whose labels match:
//! `p99_ms{version="4"} > 20` holds only on series labelled `version="4"`; on any other series the
//! indicator is *no data*. Regex matchers are anchored at both ends, as in Prometheus.
//!
//! **No data.** An indicator absent from the evaluated series (or `NaN`), a division by zero and a
//! selector that does not match all evaluate to *no data*, which propagates through arithmetic
//! and comparisons. `and`/`or`/`not` use three-valued (Kleene) logic: `false and <no data>` is
//! false, `true or <no data>` is true, anything else involving no data is no data. A rule fires
//! only when its condition is **true**; no data counts as "not true", so a pending alert is
//! dropped and a firing one resolves when its data disappears (as in Prometheus, where an alert
//! resolves when its series vanishes from the query result).
//!
//! Parse errors name the 1-based column (in characters) and what was expected there.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::indicator::{Labels, MatchOp, Matcher, matches_all};

/// A parse error: the 1-based column (in characters), what was expected there, and what was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("column {column}: expected {expected}, found {found}")]
pub struct ParseError {
    pub column: usize,
    pub expected: String,
    pub found: String,
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

impl CmpOp {
    fn apply(self, a: f64, b: f64) -> bool {
        match self {
            CmpOp::Lt => a < b,
            CmpOp::Le => a <= b,
            CmpOp::Gt => a > b,
            CmpOp::Ge => a >= b,
            CmpOp::Eq => a == b,
            CmpOp::Ne => a != b,
        }
    }
}

/// An arithmetic operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
}

/// A reference to an indicator, optionally restricted by label matchers.
#[derive(Debug, Clone, PartialEq)]
pub struct IndicatorRef {
    pub name: String,
    pub matchers: Vec<Matcher>,
}

/// Three-valued truth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Truth {
    True,
    False,
    NoData,
}

impl Truth {
    fn from_bool(b: bool) -> Self {
        if b { Truth::True } else { Truth::False }
    }
}

/// The result of evaluating a condition on one series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outcome {
    pub truth: Truth,
    /// The left-hand side of the comparison that made the condition true (for `and`, the
    /// leftmost one; for `or`, the first true branch), shown as `{{ $value }}` in annotations.
    pub value: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
enum Num {
    Lit(f64),
    Ind(IndicatorRef),
    Neg(Box<Num>),
    Arith(ArithOp, Box<Num>, Box<Num>),
}

#[derive(Debug, Clone, PartialEq)]
enum Cond {
    Cmp(CmpOp, Num, Num),
    And(Box<Cond>, Box<Cond>),
    Or(Box<Cond>, Box<Cond>),
    Not(Box<Cond>),
}

/// A parsed `when` expression. Serialised as its source text.
#[derive(Debug, Clone)]
pub struct Expr {
    source: String,
    root: Cond,
}

impl PartialEq for Expr {
    fn eq(&self, other: &Self) -> bool {
        self.root == other.root
    }
}

impl Expr {
    pub fn parse(source: &str) -> Result<Expr, ParseError> {
        let tokens = lex(source)?;
        let mut p = Parser { tokens, pos: 0 };
        let node = p.parse_or()?;
        let next = p.peek();
        if node.is_number() {
            return Err(p.error_here(
                "a comparison operator (`>`, `>=`, `<`, `<=`, `==`, `!=`)",
                next,
            ));
        }
        if next.tok != Tok::Eof {
            return Err(p.error_here("`and`, `or` or end of input", next));
        }
        Ok(Expr {
            source: source.trim().to_string(),
            root: node.into_cond()?,
        })
    }

    /// The expression as written (trimmed).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The distinct indicator names the expression reads, in order of first use.
    pub fn indicators(&self) -> Vec<&str> {
        fn num<'a>(n: &'a Num, out: &mut Vec<&'a str>) {
            match n {
                Num::Lit(_) => {}
                Num::Ind(r) => {
                    if !out.contains(&r.name.as_str()) {
                        out.push(&r.name);
                    }
                }
                Num::Neg(a) => num(a, out),
                Num::Arith(_, a, b) => {
                    num(a, out);
                    num(b, out);
                }
            }
        }
        fn cond<'a>(c: &'a Cond, out: &mut Vec<&'a str>) {
            match c {
                Cond::Cmp(_, a, b) => {
                    num(a, out);
                    num(b, out);
                }
                Cond::And(a, b) | Cond::Or(a, b) => {
                    cond(a, out);
                    cond(b, out);
                }
                Cond::Not(a) => cond(a, out),
            }
        }
        let mut out = Vec::new();
        cond(&self.root, &mut out);
        out
    }

    /// Evaluates the condition on one series: its labels (for selectors) and its values.
    pub fn eval(&self, labels: &Labels, values: &BTreeMap<String, f64>) -> Outcome {
        eval_cond(&self.root, labels, values)
    }
}

fn eval_num(n: &Num, labels: &Labels, values: &BTreeMap<String, f64>) -> Option<f64> {
    let v = match n {
        Num::Lit(v) => *v,
        Num::Ind(r) => {
            if !matches_all(&r.matchers, labels) {
                return None;
            }
            *values.get(&r.name)?
        }
        Num::Neg(a) => -eval_num(a, labels, values)?,
        Num::Arith(op, a, b) => {
            let a = eval_num(a, labels, values)?;
            let b = eval_num(b, labels, values)?;
            match op {
                ArithOp::Add => a + b,
                ArithOp::Sub => a - b,
                ArithOp::Mul => a * b,
                ArithOp::Div => {
                    if b == 0.0 {
                        return None;
                    }
                    a / b
                }
            }
        }
    };
    (!v.is_nan()).then_some(v)
}

fn eval_cond(c: &Cond, labels: &Labels, values: &BTreeMap<String, f64>) -> Outcome {
    match c {
        Cond::Cmp(op, a, b) => {
            let lhs = eval_num(a, labels, values);
            match (lhs, eval_num(b, labels, values)) {
                (Some(x), Some(y)) => Outcome {
                    truth: Truth::from_bool(op.apply(x, y)),
                    value: Some(x),
                },
                _ => Outcome {
                    truth: Truth::NoData,
                    value: None,
                },
            }
        }
        Cond::And(a, b) => {
            let l = eval_cond(a, labels, values);
            if l.truth == Truth::False {
                return Outcome {
                    truth: Truth::False,
                    value: None,
                };
            }
            let r = eval_cond(b, labels, values);
            let truth = match (l.truth, r.truth) {
                (_, Truth::False) => Truth::False,
                (Truth::True, Truth::True) => Truth::True,
                _ => Truth::NoData,
            };
            Outcome {
                truth,
                value: if truth == Truth::True {
                    l.value.or(r.value)
                } else {
                    None
                },
            }
        }
        Cond::Or(a, b) => {
            let l = eval_cond(a, labels, values);
            if l.truth == Truth::True {
                return l;
            }
            let r = eval_cond(b, labels, values);
            match (l.truth, r.truth) {
                (_, Truth::True) => r,
                (Truth::False, Truth::False) => Outcome {
                    truth: Truth::False,
                    value: None,
                },
                _ => Outcome {
                    truth: Truth::NoData,
                    value: None,
                },
            }
        }
        Cond::Not(a) => {
            let truth = match eval_cond(a, labels, values).truth {
                Truth::True => Truth::False,
                Truth::False => Truth::True,
                Truth::NoData => Truth::NoData,
            };
            Outcome { truth, value: None }
        }
    }
}

impl FromStr for Expr {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Expr::parse(s)
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl Serialize for Expr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

impl<'de> Deserialize<'de> for Expr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Expr::parse(&s).map_err(serde::de::Error::custom)
    }
}

// ---------------------------------------------------------------------------------------------
// Lexer

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(f64),
    Ident(String),
    Str(String),
    LParen,
    RParen,
    LBrace,
    RBrace,
    Comma,
    Plus,
    Minus,
    Star,
    Slash,
    Cmp(CmpOp),
    /// A single `=`: only valid inside selectors.
    Assign,
    ReMatch,
    ReNotMatch,
    And,
    Or,
    Not,
    Eof,
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    /// 1-based column of the token's first character.
    col: usize,
    /// The text as written, for error messages.
    text: String,
}

impl Token {
    fn found(&self) -> String {
        match &self.tok {
            Tok::Eof => "end of input".to_string(),
            Tok::Num(_) => format!("the number {}", self.text),
            Tok::Ident(_) => format!("`{}`", self.text),
            Tok::Str(_) => format!("the string {}", self.text),
            _ => format!("`{}`", self.text),
        }
    }
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn lex(src: &str) -> Result<Vec<Token>, ParseError> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let err = |col: usize, expected: &str, found: String| ParseError {
        column: col,
        expected: expected.to_string(),
        found,
    };
    let describe = |i: usize| -> String {
        chars
            .get(i)
            .map(|c| format!("`{c}`"))
            .unwrap_or_else(|| "end of input".to_string())
    };
    while i < chars.len() {
        let c = chars[i];
        let col = i + 1;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        let tok = if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            if i < chars.len() && chars[i] == '.' {
                i += 1;
                while i < chars.len() && chars[i].is_ascii_digit() {
                    i += 1;
                }
            }
            if i < chars.len() && matches!(chars[i], 'e' | 'E') {
                let mut j = i + 1;
                if j < chars.len() && matches!(chars[j], '+' | '-') {
                    j += 1;
                }
                if j < chars.len() && chars[j].is_ascii_digit() {
                    i = j;
                    while i < chars.len() && chars[i].is_ascii_digit() {
                        i += 1;
                    }
                }
            }
            let text: String = chars[start..i].iter().collect();
            if i < chars.len() && (is_ident_char(chars[i]) || chars[i] == '.') {
                let mut j = i;
                while j < chars.len() && (is_ident_char(chars[j]) || chars[j] == '.') {
                    j += 1;
                }
                let whole: String = chars[start..j].iter().collect();
                return Err(err(
                    i + 1,
                    "an operator after the number (units belong to indicator names, as in `p99_ms`)",
                    format!("`{whole}`"),
                ));
            }
            let v: f64 = text
                .parse()
                .map_err(|_| err(col, "a number", format!("`{text}`")))?;
            Tok::Num(v)
        } else if is_ident_start(c) || c == '`' {
            let mut segments: Vec<String> = Vec::new();
            let mut quoted = false;
            loop {
                if i < chars.len() && chars[i] == '`' {
                    quoted = true;
                    let seg_start = i + 1;
                    let mut j = seg_start;
                    while j < chars.len() && chars[j] != '`' {
                        j += 1;
                    }
                    if j >= chars.len() {
                        return Err(err(j + 1, "a closing backtick", "end of input".into()));
                    }
                    if j == seg_start {
                        return Err(err(j + 1, "a name between the backticks", "``".into()));
                    }
                    segments.push(chars[seg_start..j].iter().collect());
                    i = j + 1;
                } else {
                    let seg_start = i;
                    while i < chars.len() && is_ident_char(chars[i]) {
                        i += 1;
                    }
                    if i == seg_start {
                        return Err(err(i + 1, "a name after `.`", describe(i)));
                    }
                    segments.push(chars[seg_start..i].iter().collect());
                }
                if i < chars.len() && chars[i] == '.' {
                    i += 1;
                } else {
                    break;
                }
            }
            let name = segments.join(".");
            if !quoted && segments.len() == 1 {
                match name.to_ascii_lowercase().as_str() {
                    "and" => Tok::And,
                    "or" => Tok::Or,
                    "not" => Tok::Not,
                    _ => Tok::Ident(name),
                }
            } else {
                Tok::Ident(name)
            }
        } else if c == '"' || c == '\'' {
            let quote = c;
            i += 1;
            let mut s = String::new();
            loop {
                match chars.get(i) {
                    None => {
                        return Err(err(
                            i + 1,
                            &format!("a closing {quote}"),
                            "end of input".into(),
                        ));
                    }
                    Some('\\') => {
                        match chars.get(i + 1) {
                            Some('n') => s.push('\n'),
                            Some('t') => s.push('\t'),
                            Some(e @ ('"' | '\'' | '\\')) => s.push(*e),
                            _ => {
                                return Err(err(
                                    i + 1,
                                    "an escape (`\\\"`, `\\'`, `\\\\`, `\\n`, `\\t`)",
                                    describe(i + 1),
                                ));
                            }
                        }
                        i += 2;
                    }
                    Some(&ch) if ch == quote => {
                        i += 1;
                        break;
                    }
                    Some(&ch) => {
                        s.push(ch);
                        i += 1;
                    }
                }
            }
            Tok::Str(s)
        } else {
            let next = chars.get(i + 1).copied();
            let (tok, len) = match (c, next) {
                ('(', _) => (Tok::LParen, 1),
                (')', _) => (Tok::RParen, 1),
                ('{', _) => (Tok::LBrace, 1),
                ('}', _) => (Tok::RBrace, 1),
                (',', _) => (Tok::Comma, 1),
                ('+', _) => (Tok::Plus, 1),
                ('-', _) => (Tok::Minus, 1),
                ('*', _) => (Tok::Star, 1),
                ('/', _) => (Tok::Slash, 1),
                ('>', Some('=')) => (Tok::Cmp(CmpOp::Ge), 2),
                ('>', _) => (Tok::Cmp(CmpOp::Gt), 1),
                ('<', Some('=')) => (Tok::Cmp(CmpOp::Le), 2),
                ('<', _) => (Tok::Cmp(CmpOp::Lt), 1),
                ('=', Some('=')) => (Tok::Cmp(CmpOp::Eq), 2),
                ('=', Some('~')) => (Tok::ReMatch, 2),
                ('=', _) => (Tok::Assign, 1),
                ('!', Some('=')) => (Tok::Cmp(CmpOp::Ne), 2),
                ('!', Some('~')) => (Tok::ReNotMatch, 2),
                ('!', _) => return Err(err(col, "`!=` or `!~` (negation is `not`)", describe(i))),
                ('&', _) => return Err(err(col, "`and` (not `&&`)", describe(i))),
                ('|', _) => return Err(err(col, "`or` (not `||`)", describe(i))),
                _ => {
                    return Err(err(
                        col,
                        "an indicator, a number, an operator or a parenthesis",
                        describe(i),
                    ));
                }
            };
            i += len;
            tok
        };
        out.push(Token {
            tok,
            col,
            text: chars[start..i].iter().collect(),
        });
    }
    out.push(Token {
        tok: Tok::Eof,
        col: chars.len() + 1,
        text: String::new(),
    });
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Parser: an untyped tree with columns, then typed into `Cond` / `Num`.

#[derive(Debug)]
enum NodeKind {
    Num(f64),
    Ind(IndicatorRef),
    Neg(Box<Node>),
    Arith(ArithOp, Box<Node>, Box<Node>),
    Cmp(CmpOp, Box<Node>, Box<Node>),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Not(Box<Node>),
}

#[derive(Debug)]
struct Node {
    kind: NodeKind,
    col: usize,
}

const CONDITION: &str = "a condition such as `p99_ms > 20`";

impl Node {
    fn is_number(&self) -> bool {
        matches!(
            self.kind,
            NodeKind::Num(_) | NodeKind::Ind(_) | NodeKind::Neg(_) | NodeKind::Arith(..)
        )
    }

    fn describe(&self) -> String {
        match &self.kind {
            NodeKind::Num(v) => format!("the number {v}"),
            NodeKind::Ind(r) => format!("the indicator `{}`", r.name),
            NodeKind::Neg(_) | NodeKind::Arith(..) => "an arithmetic expression".to_string(),
            NodeKind::Cmp(..) => "a comparison".to_string(),
            NodeKind::And(..) | NodeKind::Or(..) | NodeKind::Not(_) => "a condition".to_string(),
        }
    }

    fn type_error(&self, expected: &str) -> ParseError {
        ParseError {
            column: self.col,
            expected: expected.to_string(),
            found: self.describe(),
        }
    }

    fn into_cond(self) -> Result<Cond, ParseError> {
        let col = self.col;
        Ok(match self.kind {
            NodeKind::Cmp(op, a, b) => Cond::Cmp(op, a.into_num()?, b.into_num()?),
            NodeKind::And(a, b) => Cond::And(Box::new(a.into_cond()?), Box::new(b.into_cond()?)),
            NodeKind::Or(a, b) => Cond::Or(Box::new(a.into_cond()?), Box::new(b.into_cond()?)),
            NodeKind::Not(a) => Cond::Not(Box::new(a.into_cond()?)),
            kind @ (NodeKind::Num(_)
            | NodeKind::Ind(_)
            | NodeKind::Neg(_)
            | NodeKind::Arith(..)) => {
                return Err(Node { kind, col }.type_error(CONDITION));
            }
        })
    }

    fn into_num(self) -> Result<Num, ParseError> {
        let col = self.col;
        Ok(match self.kind {
            NodeKind::Num(v) => Num::Lit(v),
            NodeKind::Ind(r) => Num::Ind(r),
            NodeKind::Neg(a) => Num::Neg(Box::new(a.into_num()?)),
            NodeKind::Arith(op, a, b) => {
                Num::Arith(op, Box::new(a.into_num()?), Box::new(b.into_num()?))
            }
            kind
            @ (NodeKind::Cmp(..) | NodeKind::And(..) | NodeKind::Or(..) | NodeKind::Not(_)) => {
                return Err(Node { kind, col }.type_error("a number or an indicator"));
            }
        })
    }
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Token {
        self.tokens[self.pos.min(self.tokens.len() - 1)].clone()
    }

    fn advance(&mut self) -> Token {
        let t = self.peek();
        if self.pos < self.tokens.len() - 1 {
            self.pos += 1;
        }
        t
    }

    fn error_here(&self, expected: &str, at: Token) -> ParseError {
        ParseError {
            column: at.col,
            expected: expected.to_string(),
            found: at.found(),
        }
    }

    fn parse_or(&mut self) -> Result<Node, ParseError> {
        let mut left = self.parse_and()?;
        while self.peek().tok == Tok::Or {
            self.advance();
            let right = self.parse_and()?;
            let col = left.col;
            left = Node {
                kind: NodeKind::Or(Box::new(left), Box::new(right)),
                col,
            };
        }
        Ok(left)
    }

    fn parse_and(&mut self) -> Result<Node, ParseError> {
        let mut left = self.parse_not()?;
        while self.peek().tok == Tok::And {
            self.advance();
            let right = self.parse_not()?;
            let col = left.col;
            left = Node {
                kind: NodeKind::And(Box::new(left), Box::new(right)),
                col,
            };
        }
        Ok(left)
    }

    fn parse_not(&mut self) -> Result<Node, ParseError> {
        if self.peek().tok == Tok::Not {
            let op = self.advance();
            let inner = self.parse_not()?;
            return Ok(Node {
                kind: NodeKind::Not(Box::new(inner)),
                col: op.col,
            });
        }
        self.parse_cmp()
    }

    fn parse_cmp(&mut self) -> Result<Node, ParseError> {
        let left = self.parse_sum()?;
        let next = self.peek();
        match next.tok {
            Tok::Cmp(op) => {
                self.advance();
                let right = self.parse_sum()?;
                let col = left.col;
                Ok(Node {
                    kind: NodeKind::Cmp(op, Box::new(left), Box::new(right)),
                    col,
                })
            }
            Tok::Assign => Err(self.error_here("`==` to compare for equality", next)),
            _ => Ok(left),
        }
    }

    fn parse_sum(&mut self) -> Result<Node, ParseError> {
        let mut left = self.parse_product()?;
        loop {
            let op = match self.peek().tok {
                Tok::Plus => ArithOp::Add,
                Tok::Minus => ArithOp::Sub,
                _ => return Ok(left),
            };
            self.advance();
            let right = self.parse_product()?;
            let col = left.col;
            left = Node {
                kind: NodeKind::Arith(op, Box::new(left), Box::new(right)),
                col,
            };
        }
    }

    fn parse_product(&mut self) -> Result<Node, ParseError> {
        let mut left = self.parse_unary()?;
        loop {
            let op = match self.peek().tok {
                Tok::Star => ArithOp::Mul,
                Tok::Slash => ArithOp::Div,
                _ => return Ok(left),
            };
            self.advance();
            let right = self.parse_unary()?;
            let col = left.col;
            left = Node {
                kind: NodeKind::Arith(op, Box::new(left), Box::new(right)),
                col,
            };
        }
    }

    fn parse_unary(&mut self) -> Result<Node, ParseError> {
        if self.peek().tok == Tok::Minus {
            let t = self.advance();
            let inner = self.parse_unary()?;
            return Ok(Node {
                kind: NodeKind::Neg(Box::new(inner)),
                col: t.col,
            });
        }
        self.parse_primary()
    }

    fn parse_primary(&mut self) -> Result<Node, ParseError> {
        let t = self.peek();
        match t.tok {
            Tok::Num(v) => {
                self.advance();
                Ok(Node {
                    kind: NodeKind::Num(v),
                    col: t.col,
                })
            }
            Tok::Ident(ref name) => {
                self.advance();
                let matchers = if self.peek().tok == Tok::LBrace {
                    self.advance();
                    self.parse_selector()?
                } else {
                    Vec::new()
                };
                Ok(Node {
                    kind: NodeKind::Ind(IndicatorRef {
                        name: name.clone(),
                        matchers,
                    }),
                    col: t.col,
                })
            }
            Tok::LParen => {
                self.advance();
                let inner = self.parse_or()?;
                let close = self.peek();
                if close.tok != Tok::RParen {
                    let expected = if inner.is_number() {
                        "`)` or an operator"
                    } else {
                        "`)`, `and` or `or`"
                    };
                    return Err(self.error_here(expected, close));
                }
                self.advance();
                Ok(inner)
            }
            _ => Err(self.error_here("an indicator, a number or `(`", t)),
        }
    }

    /// After `{`: matchers up to and including `}`.
    fn parse_selector(&mut self) -> Result<Vec<Matcher>, ParseError> {
        let mut out = Vec::new();
        loop {
            let t = self.advance();
            let name = match t.tok {
                Tok::RBrace => return Ok(out),
                Tok::Ident(ref n) if crate::indicator::is_valid_label_name(n) => n.clone(),
                _ => return Err(self.error_here("a label name or `}`", t)),
            };
            let op_tok = self.advance();
            let op = match op_tok.tok {
                Tok::Assign => MatchOp::Eq,
                Tok::Cmp(CmpOp::Ne) => MatchOp::Ne,
                Tok::ReMatch => MatchOp::Re,
                Tok::ReNotMatch => MatchOp::NotRe,
                _ => return Err(self.error_here("`=`, `!=`, `=~` or `!~`", op_tok)),
            };
            let v = self.advance();
            let Tok::Str(value) = v.tok.clone() else {
                return Err(self.error_here("a quoted label value", v));
            };
            let m = Matcher::new(name, op, value).map_err(|e| ParseError {
                column: v.col,
                expected: "a valid regular expression".into(),
                found: e.to_string(),
            })?;
            out.push(m);
            let sep = self.advance();
            match sep.tok {
                Tok::Comma => {}
                Tok::RBrace => return Ok(out),
                _ => return Err(self.error_here("`,` or `}`", sep)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexes_dotted_and_quoted_names_and_keywords_in_any_case() {
        let e =
            Expr::parse("drift.`dep delay` > 0.1 AND drift.temp >= 1e-1 Or NOT auc < .7").unwrap();
        assert_eq!(e.indicators(), vec!["drift.dep delay", "drift.temp", "auc"]);
    }
}
