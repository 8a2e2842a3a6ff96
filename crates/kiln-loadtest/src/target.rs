//! What the requests go to and carry: [`TargetSpec`] is what the user said, [`Target`] the
//! endpoint and the ready bodies, [`Target::send`] one request and its [`Outcome`].

use std::str::FromStr;

use bytes::Bytes;
use rand::SeedableRng;
use rand::rngs::StdRng;
use reqwest::header::{CONTENT_TYPE, HeaderValue};
use serde::Serialize;
use url::Url;

use crate::body::{self, Encoding, ModelMetadata};
use crate::stats::{Outcome, TransportError};
use crate::{LoadtestError, Result};

/// Distinct random bodies generated and sent in turn, so that no server-side cache sees the
/// same request every time.
const VARIANTS: usize = 8;

/// The inference protocol spoken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// Open Inference Protocol v2: `POST /v2/models/NAME/infer`.
    Oip,
    /// MLflow scoring: `POST /invocations[?model=NAME]`.
    Invocations,
}

impl FromStr for Protocol {
    type Err = LoadtestError;

    fn from_str(s: &str) -> Result<Protocol> {
        match s {
            "oip" | "v2" => Ok(Protocol::Oip),
            "invocations" | "mlflow" => Ok(Protocol::Invocations),
            _ => Err(LoadtestError::Parse {
                what: "protocol",
                expected: "oip or invocations",
                found: s.to_string(),
            }),
        }
    }
}

/// The target as the user describes it.
#[derive(Debug, Clone)]
pub struct TargetSpec {
    /// The server's base URL, e.g. `http://127.0.0.1:8000`.
    pub url: String,
    pub protocol: Protocol,
    /// The model: required for OIP and for generated bodies.
    pub model: Option<String>,
    /// A body sent as is (with `content_type`), instead of generated ones.
    pub body: Option<Vec<u8>>,
    pub content_type: String,
    /// Rows per generated request; for a given body, the rows it holds when that cannot be
    /// read from it.
    pub rows: Option<usize>,
    /// Generate OIP binary tensor bodies.
    pub binary: bool,
    /// Seed of the generated values.
    pub seed: u64,
}

/// A prepared target: the endpoint and the bodies to send.
#[derive(Debug)]
pub struct Target {
    pub endpoint: Url,
    pub protocol: Protocol,
    pub model: Option<String>,
    bodies: Vec<Bytes>,
    content_type: HeaderValue,
    header_length: Option<HeaderValue>,
    /// Rows each request carries.
    pub rows: usize,
    /// How the body was made, for the report: `file`, `oip-json`, `oip-binary`,
    /// `invocations-json`.
    pub body_kind: &'static str,
}

/// The target as reported.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TargetInfo {
    pub endpoint: String,
    pub protocol: Protocol,
    pub model: Option<String>,
    pub body: &'static str,
    pub body_bytes: usize,
    pub rows_per_request: usize,
}

fn base_url(url: &str) -> Result<Url> {
    let parsed = Url::parse(url).map_err(|e| LoadtestError::Parse {
        what: "--url",
        expected: "an http:// URL",
        found: format!("{url} ({e})"),
    })?;
    if parsed.scheme() != "http" {
        return Err(LoadtestError::Parse {
            what: "--url",
            expected: "an http:// URL (TLS is not supported)",
            found: url.to_string(),
        });
    }
    Ok(parsed)
}

/// `base` + path segments, keeping any path prefix of the base.
fn join(base: &Url, segments: &[&str]) -> Url {
    let mut u = base.clone();
    if let Ok(mut p) = u.path_segments_mut() {
        p.pop_if_empty().extend(segments);
    }
    u
}

/// Reads a body from an HTTP answer for an error message: at most 300 characters.
async fn short_body(r: reqwest::Response) -> String {
    let text = r.text().await.unwrap_or_default();
    let text = text.trim();
    match text.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

impl Target {
    /// The endpoint for `spec`, and its bodies: the given one, or ones generated from the
    /// model's OIP metadata (read from the same server).
    pub async fn prepare(http: &reqwest::Client, spec: &TargetSpec) -> Result<Target> {
        let base = base_url(&spec.url)?;
        let endpoint = match (spec.protocol, &spec.model) {
            (Protocol::Oip, Some(m)) => join(&base, &["v2", "models", m, "infer"]),
            (Protocol::Oip, None) => {
                return Err(LoadtestError::Invalid(
                    "--model is required with --protocol oip".into(),
                ));
            }
            (Protocol::Invocations, m) => {
                let mut u = join(&base, &["invocations"]);
                if let Some(m) = m {
                    u.query_pairs_mut().append_pair("model", m);
                }
                u
            }
        };
        if spec.rows == Some(0) {
            return Err(LoadtestError::Invalid("--rows must be at least 1".into()));
        }
        let content_type = |s: &str| {
            HeaderValue::from_str(s).map_err(|_| LoadtestError::Parse {
                what: "--content-type",
                expected: "a header value",
                found: s.to_string(),
            })
        };
        if let Some(body) = &spec.body {
            if spec.binary {
                return Err(LoadtestError::Invalid(
                    "--binary generates the body; it cannot be combined with --body".into(),
                ));
            }
            let rows = spec.rows.or_else(|| body::rows_in_body(body)).unwrap_or(1);
            return Ok(Target {
                endpoint,
                protocol: spec.protocol,
                model: spec.model.clone(),
                bodies: vec![Bytes::from(body.clone())],
                content_type: content_type(&spec.content_type)?,
                header_length: None,
                rows,
                body_kind: "file",
            });
        }
        let Some(model) = &spec.model else {
            return Err(LoadtestError::Invalid(
                "give --model (to generate bodies from its metadata) or --body FILE".into(),
            ));
        };
        let encoding = match (spec.protocol, spec.binary) {
            (Protocol::Oip, false) => Encoding::OipJson,
            (Protocol::Oip, true) => Encoding::OipBinary,
            (Protocol::Invocations, false) => Encoding::Invocations,
            (Protocol::Invocations, true) => {
                return Err(LoadtestError::Invalid(
                    "--binary is OIP's binary tensor extension; /invocations takes JSON".into(),
                ));
            }
        };
        let meta = metadata(http, &base, model, spec.protocol).await?;
        let mut rng = StdRng::seed_from_u64(spec.seed);
        let rows = spec.rows.unwrap_or(1);
        let mut bodies = Vec::with_capacity(VARIANTS);
        let mut first = None;
        for _ in 0..VARIANTS {
            let g = body::generate(&meta, rows, encoding, &mut rng)?;
            bodies.push(Bytes::from(g.bytes.clone()));
            first.get_or_insert(g);
        }
        let g = first.expect("VARIANTS > 0");
        Ok(Target {
            endpoint,
            protocol: spec.protocol,
            model: spec.model.clone(),
            bodies,
            content_type: HeaderValue::from_static(g.content_type),
            header_length: g
                .header_length
                .map(|n| HeaderValue::from_str(&n.to_string()).expect("digits")),
            rows: g.rows,
            body_kind: match encoding {
                Encoding::OipJson => "oip-json",
                Encoding::OipBinary => "oip-binary",
                Encoding::Invocations => "invocations-json",
            },
        })
    }

    /// Sends the first body once before the run, so that a request the server refuses
    /// (a wrong model, shape or body) stops the run with the server's message instead of
    /// becoming thousands of errors. A busy server (429, 5xx) does not stop it.
    pub async fn probe(&self, http: &reqwest::Client) -> Result<()> {
        let r = self
            .request(http, 0)
            .send()
            .await
            .map_err(|source| LoadtestError::Http {
                url: self.endpoint.to_string(),
                source,
            })?;
        let status = r.status();
        if status.is_client_error() && status.as_u16() != 429 && status.as_u16() != 408 {
            let mut body = short_body(r).await;
            if self.body_kind == "invocations-json" {
                body.push_str(
                    " (the body was generated from the model's OIP metadata; \
                     a model that takes raw columns needs --body FILE)",
                );
            }
            return Err(LoadtestError::Refused {
                what: "the probe request to",
                url: self.endpoint.to_string(),
                status: status.as_u16(),
                body,
            });
        }
        let _ = r.bytes().await;
        Ok(())
    }

    fn request(&self, http: &reqwest::Client, i: u64) -> reqwest::RequestBuilder {
        let body = self.bodies[(i % self.bodies.len() as u64) as usize].clone();
        let mut req = http
            .post(self.endpoint.clone())
            .header(CONTENT_TYPE, self.content_type.clone())
            .body(body);
        if let Some(n) = &self.header_length {
            req = req.header("inference-header-content-length", n.clone());
        }
        req
    }

    /// Sends request `i` (which picks the body) and reads the answer to its end.
    pub async fn send(&self, http: &reqwest::Client, i: u64) -> Outcome {
        match self.request(http, i).send().await {
            Ok(r) => {
                let status = r.status();
                // Read to the end: the latency is to the last byte, and the connection can
                // then be reused.
                match r.bytes().await {
                    Ok(_) if status.is_success() => Outcome::Ok,
                    Ok(_) => Outcome::Status(status.as_u16()),
                    Err(e) => Outcome::Transport(TransportError::of(&e)),
                }
            }
            Err(e) => Outcome::Transport(TransportError::of(&e)),
        }
    }

    pub fn describe(&self) -> TargetInfo {
        TargetInfo {
            endpoint: self.endpoint.to_string(),
            protocol: self.protocol,
            model: self.model.clone(),
            body: self.body_kind,
            body_bytes: self.bodies[0].len(),
            rows_per_request: self.rows,
        }
    }
}

/// `GET /v2/models/NAME`: the model's inputs.
async fn metadata(
    http: &reqwest::Client,
    base: &Url,
    model: &str,
    protocol: Protocol,
) -> Result<ModelMetadata> {
    let url = join(base, &["v2", "models", model]);
    let r = http
        .get(url.clone())
        .send()
        .await
        .map_err(|source| LoadtestError::Http {
            url: url.to_string(),
            source,
        })?;
    let status = r.status();
    if !status.is_success() {
        let mut body = short_body(r).await;
        if protocol == Protocol::Invocations {
            body.push_str(" (without OIP metadata, give the /invocations body with --body FILE)");
        }
        return Err(LoadtestError::Refused {
            what: "the model metadata at",
            url: url.to_string(),
            status: status.as_u16(),
            body,
        });
    }
    let bytes = r.bytes().await.map_err(|source| LoadtestError::Http {
        url: url.to_string(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|e| LoadtestError::Metadata {
        url: url.to_string(),
        detail: format!("expected {{\"inputs\": [{{\"name\", \"datatype\", \"shape\"}}]}}: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_keep_a_path_prefix_and_escape_names() {
        let base = base_url("http://h:1/prefix/").unwrap();
        assert_eq!(
            join(&base, &["v2", "models", "a b", "infer"]).as_str(),
            "http://h:1/prefix/v2/models/a%20b/infer"
        );
        let base = base_url("http://h:1").unwrap();
        assert_eq!(
            join(&base, &["invocations"]).as_str(),
            "http://h:1/invocations"
        );
        assert!(base_url("https://h").is_err());
        assert!(base_url("h:1").is_err());
    }

    #[test]
    fn protocols() {
        assert_eq!("oip".parse::<Protocol>().unwrap(), Protocol::Oip);
        assert_eq!(
            "invocations".parse::<Protocol>().unwrap(),
            Protocol::Invocations
        );
        assert!("grpc".parse::<Protocol>().is_err());
    }
}
