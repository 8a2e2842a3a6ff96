//! Kiln's `when` expressions, parsed: the grammar `kiln-monitor` evaluates (comparisons,
//! `and` / `or` / `not`, arithmetic, dotted or back-quoted indicator names, label selectors).
//! The binary checks every rule with `kiln-monitor`'s own parser first, so this one only needs
//! to read valid rules; it is repeated here because `kiln-monitor` pulls in Polars.

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
    pub(super) fn as_str(self) -> &'static str {
        match self {
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
        }
    }

    fn negated(self) -> CmpOp {
        match self {
            CmpOp::Lt => CmpOp::Ge,
            CmpOp::Le => CmpOp::Gt,
            CmpOp::Gt => CmpOp::Le,
            CmpOp::Ge => CmpOp::Lt,
            CmpOp::Eq => CmpOp::Ne,
            CmpOp::Ne => CmpOp::Eq,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    Eq,
    Ne,
    Re,
    NotRe,
}

impl MatchOp {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            MatchOp::Eq => "=",
            MatchOp::Ne => "!=",
            MatchOp::Re => "=~",
            MatchOp::NotRe => "!~",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Matcher {
    pub label: String,
    pub op: MatchOp,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Num {
    Lit(f64),
    Ind(String, Vec<Matcher>),
    Neg(Box<Num>),
    Arith(char, Box<Num>, Box<Num>),
}

impl Num {
    pub(super) fn is_constant(&self) -> bool {
        match self {
            Num::Lit(_) => true,
            Num::Ind(..) => false,
            Num::Neg(a) => a.is_constant(),
            Num::Arith(_, a, b) => a.is_constant() && b.is_constant(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Cond {
    Cmp(CmpOp, Num, Num),
    And(Box<Cond>, Box<Cond>),
    Or(Box<Cond>, Box<Cond>),
    Not(Box<Cond>),
}

/// Moves every `not` onto the comparisons (De Morgan; `not (a > b)` is `a <= b`).
pub(super) fn push_not(c: Cond, negate: bool) -> Cond {
    match (c, negate) {
        (Cond::Cmp(op, a, b), false) => Cond::Cmp(op, a, b),
        (Cond::Cmp(op, a, b), true) => Cond::Cmp(op.negated(), a, b),
        (Cond::Not(a), n) => push_not(*a, !n),
        (Cond::And(a, b), false) => {
            Cond::And(Box::new(push_not(*a, false)), Box::new(push_not(*b, false)))
        }
        (Cond::And(a, b), true) => {
            Cond::Or(Box::new(push_not(*a, true)), Box::new(push_not(*b, true)))
        }
        (Cond::Or(a, b), false) => {
            Cond::Or(Box::new(push_not(*a, false)), Box::new(push_not(*b, false)))
        }
        (Cond::Or(a, b), true) => {
            Cond::And(Box::new(push_not(*a, true)), Box::new(push_not(*b, true)))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Lexer and parser (the grammar of `kiln_monitor::expr`)

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(f64),
    Ident(String),
    Str(String),
    Punct(&'static str),
    And,
    Or,
    Not,
}

fn lex(src: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = vec![];
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
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
            out.push(Tok::Num(
                text.parse()
                    .map_err(|_| format!("`{text}` is not a number"))?,
            ));
        } else if c.is_ascii_alphabetic() || c == '_' || c == '`' {
            let mut segments: Vec<String> = vec![];
            let mut quoted = false;
            loop {
                if chars.get(i) == Some(&'`') {
                    quoted = true;
                    let end = chars[i + 1..]
                        .iter()
                        .position(|c| *c == '`')
                        .ok_or("a back-quoted name is not closed")?;
                    segments.push(chars[i + 1..i + 1 + end].iter().collect());
                    i += end + 2;
                } else {
                    let start = i;
                    while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                        i += 1;
                    }
                    if start == i {
                        return Err("a name is missing after `.`".into());
                    }
                    segments.push(chars[start..i].iter().collect());
                }
                if chars.get(i) == Some(&'.') {
                    i += 1;
                } else {
                    break;
                }
            }
            let name = segments.join(".");
            out.push(match name.to_ascii_lowercase().as_str() {
                "and" if !quoted && segments.len() == 1 => Tok::And,
                "or" if !quoted && segments.len() == 1 => Tok::Or,
                "not" if !quoted && segments.len() == 1 => Tok::Not,
                _ => Tok::Ident(name),
            });
        } else if c == '"' || c == '\'' {
            let mut s = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err("a string is not closed".into()),
                    Some('\\') => {
                        s.push(match chars.get(i + 1) {
                            Some('n') => '\n',
                            Some('t') => '\t',
                            Some(e) => *e,
                            None => return Err("a string is not closed".into()),
                        });
                        i += 2;
                    }
                    Some(&q) if q == c => {
                        i += 1;
                        break;
                    }
                    Some(&ch) => {
                        s.push(ch);
                        i += 1;
                    }
                }
            }
            out.push(Tok::Str(s));
        } else {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            let p = [">=", "<=", "==", "!=", "=~", "!~"]
                .into_iter()
                .find(|p| two == *p)
                .or_else(|| {
                    ["(", ")", "{", "}", ",", "+", "-", "*", "/", ">", "<", "="]
                        .into_iter()
                        .find(|p| p.starts_with(c))
                })
                .ok_or_else(|| format!("unexpected `{c}`"))?;
            i += p.chars().count();
            out.push(Tok::Punct(p));
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

/// A parsed node: a condition or a number.
enum Node {
    Cond(Cond),
    Num(Num),
}

pub(super) fn parse(src: &str) -> Result<Cond, String> {
    let mut p = Parser {
        toks: lex(src)?,
        pos: 0,
    };
    let node = p.or()?;
    if p.pos != p.toks.len() {
        return Err(format!("unexpected {:?}", p.toks[p.pos]));
    }
    match node {
        Node::Cond(c) => Ok(c),
        Node::Num(_) => Err("the expression is a number, not a condition".into()),
    }
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn eat(&mut self, t: &Tok) -> bool {
        if self.peek() == Some(t) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn cond(node: Node) -> Result<Cond, String> {
        match node {
            Node::Cond(c) => Ok(c),
            Node::Num(_) => Err("expected a condition, found a number".into()),
        }
    }

    fn num(node: Node) -> Result<Num, String> {
        match node {
            Node::Num(n) => Ok(n),
            Node::Cond(_) => Err("expected a number, found a condition".into()),
        }
    }

    fn or(&mut self) -> Result<Node, String> {
        let mut left = self.and()?;
        while self.eat(&Tok::Or) {
            let right = self.and()?;
            left = Node::Cond(Cond::Or(
                Box::new(Self::cond(left)?),
                Box::new(Self::cond(right)?),
            ));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Node, String> {
        let mut left = self.not()?;
        while self.eat(&Tok::And) {
            let right = self.not()?;
            left = Node::Cond(Cond::And(
                Box::new(Self::cond(left)?),
                Box::new(Self::cond(right)?),
            ));
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Node, String> {
        if self.eat(&Tok::Not) {
            let inner = self.not()?;
            return Ok(Node::Cond(Cond::Not(Box::new(Self::cond(inner)?))));
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Node, String> {
        let left = self.sum()?;
        let op = match self.peek() {
            Some(Tok::Punct(">")) => CmpOp::Gt,
            Some(Tok::Punct(">=")) => CmpOp::Ge,
            Some(Tok::Punct("<")) => CmpOp::Lt,
            Some(Tok::Punct("<=")) => CmpOp::Le,
            Some(Tok::Punct("==")) => CmpOp::Eq,
            Some(Tok::Punct("!=")) => CmpOp::Ne,
            _ => return Ok(left),
        };
        self.pos += 1;
        let right = self.sum()?;
        Ok(Node::Cond(Cond::Cmp(
            op,
            Self::num(left)?,
            Self::num(right)?,
        )))
    }

    fn sum(&mut self) -> Result<Node, String> {
        let mut left = self.product()?;
        loop {
            let op = match self.peek() {
                Some(Tok::Punct("+")) => '+',
                Some(Tok::Punct("-")) => '-',
                _ => return Ok(left),
            };
            self.pos += 1;
            let right = self.product()?;
            left = Node::Num(Num::Arith(
                op,
                Box::new(Self::num(left)?),
                Box::new(Self::num(right)?),
            ));
        }
    }

    fn product(&mut self) -> Result<Node, String> {
        let mut left = self.unary()?;
        loop {
            let op = match self.peek() {
                Some(Tok::Punct("*")) => '*',
                Some(Tok::Punct("/")) => '/',
                _ => return Ok(left),
            };
            self.pos += 1;
            let right = self.unary()?;
            left = Node::Num(Num::Arith(
                op,
                Box::new(Self::num(left)?),
                Box::new(Self::num(right)?),
            ));
        }
    }

    fn unary(&mut self) -> Result<Node, String> {
        if self.eat(&Tok::Punct("-")) {
            let inner = self.unary()?;
            return Ok(Node::Num(Num::Neg(Box::new(Self::num(inner)?))));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Node, String> {
        match self.toks.get(self.pos).cloned() {
            Some(Tok::Num(v)) => {
                self.pos += 1;
                Ok(Node::Num(Num::Lit(v)))
            }
            Some(Tok::Ident(name)) => {
                self.pos += 1;
                let matchers = if self.eat(&Tok::Punct("{")) {
                    self.matchers()?
                } else {
                    vec![]
                };
                Ok(Node::Num(Num::Ind(name, matchers)))
            }
            Some(Tok::Punct("(")) => {
                self.pos += 1;
                let inner = self.or()?;
                if !self.eat(&Tok::Punct(")")) {
                    return Err("a parenthesis is not closed".into());
                }
                Ok(inner)
            }
            other => Err(format!("unexpected {other:?}")),
        }
    }

    fn matchers(&mut self) -> Result<Vec<Matcher>, String> {
        let mut out = vec![];
        loop {
            if self.eat(&Tok::Punct("}")) {
                return Ok(out);
            }
            let Some(Tok::Ident(label)) = self.toks.get(self.pos).cloned() else {
                return Err("expected a label name in a selector".into());
            };
            self.pos += 1;
            let op = match self.toks.get(self.pos) {
                Some(Tok::Punct("=")) => MatchOp::Eq,
                Some(Tok::Punct("!=")) => MatchOp::Ne,
                Some(Tok::Punct("=~")) => MatchOp::Re,
                Some(Tok::Punct("!~")) => MatchOp::NotRe,
                _ => return Err("expected `=`, `!=`, `=~` or `!~` in a selector".into()),
            };
            self.pos += 1;
            let Some(Tok::Str(value)) = self.toks.get(self.pos).cloned() else {
                return Err("expected a quoted label value in a selector".into());
            };
            self.pos += 1;
            out.push(Matcher { label, op, value });
            if !self.eat(&Tok::Punct(",")) {
                if self.eat(&Tok::Punct("}")) {
                    return Ok(out);
                }
                return Err("expected `,` or `}` in a selector".into());
            }
        }
    }
}
