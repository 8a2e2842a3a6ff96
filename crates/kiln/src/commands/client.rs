//! A small client of Kiln's own server API for commands that must go through the server
//! (releases are gated there): `--server`, the caller's name and the admin token.

use anyhow::Context;
use clap::Args;
use reqwest::Method;
use serde_json::Value;

#[derive(Args, Debug, Clone)]
pub struct ServerConn {
    /// The Kiln server (control plane) to talk to.
    #[arg(
        long = "server",
        env = "KILN_SERVER",
        default_value = "http://127.0.0.1:5000",
        global = true
    )]
    pub server: String,
    /// Who you are, recorded with every change (default: $USER).
    #[arg(long, env = "KILN_USER", global = true)]
    pub user: Option<String>,
    /// The server's admin token (needed to override a gate or change a policy).
    #[arg(long, env = "KILN_ADMIN_TOKEN", global = true, hide_env_values = true)]
    pub admin_token: Option<String>,
}

/// An error the server answered with: its MLflow error code and message.
#[derive(Debug)]
pub struct ApiFailure {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl std::fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.status, self.message)
    }
}

impl std::error::Error for ApiFailure {}

pub struct Client {
    pub rt: tokio::runtime::Runtime,
    http: reqwest::Client,
    base: String,
    user: String,
    token: Option<String>,
}

impl Client {
    pub fn new(conn: &ServerConn) -> anyhow::Result<Client> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        let user = conn
            .user
            .clone()
            .or_else(|| std::env::var("USER").ok())
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| "anonymous".into());
        Ok(Client {
            rt,
            http: reqwest::Client::new(),
            base: conn.server.trim_end_matches('/').to_string(),
            user,
            token: conn.admin_token.clone().filter(|t| !t.is_empty()),
        })
    }

    /// Calls `/api/kiln/{path}`; a non-2xx answer becomes an [`ApiFailure`].
    pub fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let url = format!("{}/api/kiln/{path}", self.base);
        let mut req = self
            .http
            .request(method, &url)
            .query(query)
            .header("x-kiln-user", &self.user);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        self.rt.block_on(async {
            let resp = req
                .send()
                .await
                .with_context(|| format!("cannot reach the Kiln server at {}", self.base))?;
            let status = resp.status().as_u16();
            let text = resp
                .text()
                .await
                .context("the server's answer was cut off")?;
            let json: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            if (200..300).contains(&status) {
                return Ok(json);
            }
            Err(ApiFailure {
                status,
                code: json["error_code"]
                    .as_str()
                    .unwrap_or("HTTP_ERROR")
                    .to_string(),
                message: json["message"]
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| text.chars().take(500).collect()),
            }
            .into())
        })
    }
}

/// `2026-11-29T06:00:01Z` from milliseconds since the epoch.
pub fn time(ms: i64) -> String {
    kiln_ml::package::rfc3339(ms.div_euclid(1000))
}
