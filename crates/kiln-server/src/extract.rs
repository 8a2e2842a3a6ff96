//! Reading MLflow request messages the way MLflow's server does: GET requests carry the
//! message in the query string (repeated keys are lists, bools in any case), every other
//! method carries a JSON body — DELETE included. Errors name the field.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::Method;
use kiln_core::ErrorCode;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

use crate::error::ApiError;

/// Largest JSON request body accepted on API routes (artifact uploads stream and are not
/// bound by this).
pub const MAX_JSON_BODY: usize = 16 * 1024 * 1024;

/// A decoded request message plus the size of the body it came from.
pub struct Msg<T> {
    pub body: T,
    pub len: usize,
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Msg<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if req.method() == Method::GET || req.method() == Method::HEAD {
            let query = req.uri().query().unwrap_or("");
            let value = query_to_json(query);
            return decode(value).map(|body| Msg {
                body,
                len: query.len(),
            });
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            ApiError::new(
                ErrorCode::BadRequest,
                format!("Could not read the request body: {e}"),
            )
        })?;
        let len = bytes.len();
        decode_body(&bytes).map(|body| Msg { body, len })
    }
}

/// Decodes a JSON body straight into the message type (no intermediate `Value` tree: a
/// thousand-metric batch is parsed once). Empty and double-encoded bodies take the slower
/// path through [`parse_body`].
pub fn decode_body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => {}
        _ => return decode(parse_body(bytes)?),
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let result: Result<T, _> = serde_path_to_error::deserialize(&mut de);
    match result {
        Ok(v) => {
            de.end().map_err(|e| malformed(&e))?;
            Ok(v)
        }
        Err(e) if e.inner().is_data() => Err(field_error(
            e.path().to_string(),
            e.into_inner().to_string(),
        )),
        Err(e) => Err(malformed(e.inner())),
    }
}

fn malformed(e: &serde_json::Error) -> ApiError {
    ApiError::new(
        ErrorCode::MalformedRequest,
        format!(
            "Malformed JSON in request body at line {}, column {}: {e}",
            e.line(),
            e.column()
        ),
    )
}

/// Parses a JSON body. An empty body is an empty message; a body that is a JSON string
/// holding JSON (what some older clients send) is decoded twice, as MLflow does.
pub fn parse_body(bytes: &[u8]) -> Result<Value, ApiError> {
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(Value::Object(Map::new()));
    }
    let value: Value = serde_json::from_slice(bytes).map_err(|e| malformed(&e))?;
    match value {
        Value::String(inner) => serde_json::from_str(&inner).map_err(|e| {
            ApiError::new(
                ErrorCode::MalformedRequest,
                format!("Malformed JSON in double-encoded request body: {e}"),
            )
        }),
        Value::Object(_) => Ok(value),
        _ => Err(ApiError::new(
            ErrorCode::MalformedRequest,
            "The request body must be a JSON object",
        )),
    }
}

/// Fields that are lists in MLflow's messages; a repeated key of any other field keeps its
/// first value, as MLflow's Flask handlers do.
const LIST_FIELDS: &[&str] = &["experiment_ids", "order_by", "run_ids", "stages"];

fn query_to_json(query: &str) -> Value {
    let mut map = Map::new();
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        let v = Value::String(v.into_owned());
        match map.get_mut(k.as_ref()) {
            None => {
                map.insert(k.into_owned(), v);
            }
            Some(Value::Array(items)) => items.push(v),
            Some(existing) if LIST_FIELDS.contains(&k.as_ref()) => {
                let first = existing.take();
                *existing = Value::Array(vec![first, v]);
            }
            Some(_) => {}
        }
    }
    Value::Object(map)
}

/// Deserialises a message, turning serde's errors into MLflow's wording with the field path.
pub fn decode<T: DeserializeOwned>(value: Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value)
        .map_err(|e| field_error(e.path().to_string(), e.into_inner().to_string()))
}

/// MLflow's wording for a message that is valid JSON but not a valid message.
fn field_error(path: String, inner: String) -> ApiError {
    if let Some(rest) = inner.strip_prefix("missing field `") {
        let field = rest.split('`').next().unwrap_or(rest);
        let full = if path == "." || path.is_empty() {
            field.to_string()
        } else {
            format!("{path}.{field}")
        };
        ApiError::missing(&full)
    } else {
        ApiError::invalid(format!(
            "Invalid value for parameter '{path}' supplied: {inner}"
        ))
    }
}

/// A list field that a GET query string may carry once (a plain string) or many times.
pub fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
        Null(()),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
        OneOrMany::Null(()) => Vec::new(),
    })
}

/// A bool sent as JSON `true`/`false` or, in query strings, as `True`/`true`/`1`.
pub fn de_bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum BoolOrStr {
        B(bool),
        S(String),
    }
    match BoolOrStr::deserialize(d)? {
        BoolOrStr::B(b) => Ok(b),
        BoolOrStr::S(s) => match s.to_ascii_lowercase().as_str() {
            "true" | "1" => Ok(true),
            "false" | "0" | "" => Ok(false),
            _ => Err(serde::de::Error::custom(format!(
                "expected true or false, got {s:?}"
            ))),
        },
    }
}

/// A string field that must be present and non-empty.
pub fn required<'a>(value: &'a Option<String>, field: &str) -> Result<&'a str, ApiError> {
    match value.as_deref() {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(ApiError::missing(field)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize, Debug)]
    struct Q {
        #[serde(default, deserialize_with = "one_or_many")]
        ids: Vec<String>,
        #[serde(default, deserialize_with = "kiln_core::entities::de_opt_i64")]
        max_results: Option<i64>,
    }

    #[test]
    fn query_strings_become_messages() {
        let q: Q = decode(query_to_json("ids=1&ids=2&max_results=5")).unwrap();
        // `ids` is not a list field of MLflow's: the first value wins.
        assert_eq!(q.ids, vec!["1"]);
        let v = query_to_json("experiment_ids=1&experiment_ids=2&run_id=a&run_id=b");
        assert_eq!(v["experiment_ids"], serde_json::json!(["1", "2"]));
        assert_eq!(v["run_id"], "a");
        assert_eq!(q.max_results, Some(5));
        let q: Q = decode(query_to_json("ids=7")).unwrap();
        assert_eq!(q.ids, vec!["7"]);
    }

    #[test]
    fn errors_name_the_field() {
        #[derive(Deserialize, Debug)]
        struct R {
            run_id: String,
        }
        let e = decode::<R>(serde_json::json!({})).unwrap_err();
        assert!(e.message.contains("'run_id'"), "{}", e.message);
        let e = parse_body(b"{\"a\": ").unwrap_err();
        assert_eq!(e.code, ErrorCode::MalformedRequest);
        assert!(e.message.contains("line 1"), "{}", e.message);
        assert!(parse_body(b"").unwrap().is_object());
        assert!(parse_body(b"\"{\\\"a\\\":1}\"").unwrap().is_object());
        let e = decode_body::<R>(b"{\"run_id\": 5}").unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidParameterValue);
        assert!(e.message.contains("run_id"), "{}", e.message);
        let e = decode_body::<R>(b"{\"run_id\": \"x\"} trailing").unwrap_err();
        assert_eq!(e.code, ErrorCode::MalformedRequest);
        assert_eq!(
            decode_body::<R>(b" {\"run_id\": \"x\"} ").unwrap().run_id,
            "x"
        );
    }
}
