//! A JSON tree that keeps the order of object keys (pandas orders a dataframe's columns by
//! first appearance, and tensors take columns by position), parsed by serde_json with its
//! recursion limit.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use super::{Result, ScoringError};

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum J {
    Null,
    Bool(bool),
    Int(i64),
    /// An integer above `i64::MAX`.
    UInt(u64),
    Float(f64),
    Str(String),
    Arr(Vec<J>),
    /// Keys in the order written; a repeated key appears twice.
    Obj(Vec<(String, J)>),
}

pub(crate) fn parse(text: &str) -> Result<J> {
    serde_json::from_str(text).map_err(|e| ScoringError::InvalidJson {
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    })
}

impl J {
    /// A short description for error messages: `the string "abc"`, `an array`, …
    pub(crate) fn describe(&self) -> String {
        match self {
            J::Null => "null".into(),
            J::Bool(b) => format!("{b}"),
            J::Int(i) => format!("the number {i}"),
            J::UInt(u) => format!("the number {u}"),
            J::Float(x) => format!("the number {x}"),
            J::Str(s) => format!("the string {}", quote(s)),
            J::Arr(_) => "an array".into(),
            J::Obj(_) => "an object".into(),
        }
    }

    /// The value as a number, if it is one.
    pub(crate) fn as_f64(&self) -> Option<f64> {
        match self {
            J::Int(i) => Some(*i as f64),
            J::UInt(u) => Some(*u as f64),
            J::Float(x) => Some(*x),
            _ => None,
        }
    }
}

/// A string quoted for a message, cut after 40 characters.
pub(crate) fn quote(s: &str) -> String {
    match s.char_indices().nth(40) {
        Some((cut, _)) => format!("{:?}…", &s[..cut]),
        None => format!("{s:?}"),
    }
}

/// Finds `name` in an object's fields. `hint` is where the previous row had it (rows usually
/// list their keys in the same order); on a miss, `index` is built once for this object so
/// that a row costs time linear in its width whatever the key order.
pub(crate) fn field<'a>(
    fields: &'a [(String, J)],
    name: &str,
    hint: &mut usize,
    index: &mut Option<std::collections::HashMap<&'a str, usize>>,
) -> Option<&'a J> {
    if let Some((key, value)) = fields.get(*hint)
        && key == name
    {
        return Some(value);
    }
    let index = index.get_or_insert_with(|| {
        let mut map = std::collections::HashMap::with_capacity(fields.len());
        for (i, (key, _)) in fields.iter().enumerate() {
            map.insert(key.as_str(), i); // the last of repeated keys wins
        }
        map
    });
    let &pos = index.get(name)?;
    *hint = pos;
    Some(&fields[pos].1)
}

impl<'de> Deserialize<'de> for J {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<J, D::Error> {
        deserializer.deserialize_any(JVisitor)
    }
}

struct JVisitor;

impl<'de> Visitor<'de> for JVisitor {
    type Value = J;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<J, E> {
        Ok(J::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<J, E> {
        Ok(J::Null)
    }

    fn visit_bool<E: de::Error>(self, b: bool) -> Result<J, E> {
        Ok(J::Bool(b))
    }

    fn visit_i64<E: de::Error>(self, i: i64) -> Result<J, E> {
        Ok(J::Int(i))
    }

    fn visit_u64<E: de::Error>(self, u: u64) -> Result<J, E> {
        Ok(i64::try_from(u).map_or(J::UInt(u), J::Int))
    }

    fn visit_f64<E: de::Error>(self, x: f64) -> Result<J, E> {
        Ok(J::Float(x))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<J, E> {
        Ok(J::Str(s.to_owned()))
    }

    fn visit_string<E: de::Error>(self, s: String) -> Result<J, E> {
        Ok(J::Str(s))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<J, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(J::Arr(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<J, A::Error> {
        let mut fields = Vec::new();
        while let Some((key, value)) = map.next_entry::<String, J>()? {
            fields.push((key, value));
        }
        Ok(J::Obj(fields))
    }
}
