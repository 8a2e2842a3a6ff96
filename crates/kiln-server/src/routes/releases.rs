//! Kiln's release API under `/api/kiln`: gated releases, rollback, status (aliases, their
//! history and the stored gate evaluations), and release policies.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Json, Router};
use kiln_core::ErrorCode;
use kiln_core::release::ReleasePolicy;
use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Msg, required};
use crate::release::{self, Actor, MoveRequest};
use crate::routes::registry::de_version;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/releases", post(release_version))
        .route("/releases/rollback", post(rollback))
        .route("/releases/status", get(status))
        .route(
            "/release-policies",
            get(get_policies).put(put_policy).post(put_policy),
        )
}

/// `Some(None)` for an explicit `null`, `None` when absent.
fn de_present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Ok(Some(match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(other) => {
            return Err(serde::de::Error::custom(format!(
                "expected a version number or null, got {other}"
            )));
        }
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReleaseBody {
    name: Option<String>,
    #[serde(default, deserialize_with = "de_version")]
    version: Option<String>,
    alias: Option<String>,
    override_reason: Option<String>,
    /// The holder the caller saw; the move fails with a conflict if the alias moved since.
    #[serde(default, deserialize_with = "de_present")]
    expected_holder: Option<Option<String>>,
}

async fn release_version(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Msg { body, .. }: Msg<ReleaseBody>,
) -> ApiResult<Json<Value>> {
    let actor = Actor::from_headers(&headers, &s.releases);
    let result = release::move_alias(
        &s,
        &actor,
        MoveRequest {
            name: required(&body.name, "name")?.to_string(),
            alias: required(&body.alias, "alias")?.to_string(),
            version: required(&body.version, "version")?.to_string(),
            override_reason: body.override_reason,
            expect: body.expected_holder,
        },
    )
    .await?;
    Ok(Json(json!(result)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RollbackBody {
    name: Option<String>,
    alias: Option<String>,
    reason: Option<String>,
}

async fn rollback(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Msg { body, .. }: Msg<RollbackBody>,
) -> ApiResult<Json<Value>> {
    let actor = Actor::from_headers(&headers, &s.releases);
    let name = required(&body.name, "name")?;
    let alias = body.alias.as_deref().unwrap_or("champion");
    let event = release::rollback(&s, &actor, name, alias, body.reason).await?;
    Ok(Json(json!({ "event": event })))
}

#[derive(Deserialize)]
struct StatusQuery {
    name: Option<String>,
    alias: Option<String>,
    max_results: Option<String>,
}

/// Aliases (current holder, protected or not), their history, the stored evaluations and
/// the policy of one model.
async fn status(
    State(s): State<Arc<AppState>>,
    Msg { body, .. }: Msg<StatusQuery>,
) -> ApiResult<Json<Value>> {
    let name = required(&body.name, "name")?;
    let limit = match body.max_results.as_deref() {
        None => 50,
        Some(v) => v.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
            ApiError::invalid(format!("max_results {v:?} is not a positive integer"))
        })?,
    };
    let model = s.store.get_registered_model(name).await?;
    let policy = s.store.get_release_policy(name).await?;
    let alias = body.alias.as_deref();
    let history = s.store.alias_history(name, alias).await?;
    let evaluations = s.store.release_evaluations(name, alias, limit).await?;
    let protected = |a: &str| policy.as_ref().is_some_and(|p| p.policy.gates(a).is_some());
    let mut aliases: Vec<Value> = model
        .aliases
        .iter()
        .filter(|a| alias.is_none_or(|x| x == a.alias))
        .map(|a| json!({"alias": a.alias, "version": a.version, "protected": protected(&a.alias)}))
        .collect();
    // Protected aliases nobody holds yet are part of the picture too.
    if let Some(p) = &policy {
        for a in p.policy.aliases.keys() {
            if alias.is_none_or(|x| x == a) && !model.aliases.iter().any(|m| &m.alias == a) {
                aliases.push(json!({"alias": a, "version": null, "protected": true}));
            }
        }
    }
    Ok(Json(json!({
        "model": name,
        "aliases": aliases,
        "policy": policy,
        "history": history,
        "evaluations": evaluations,
    })))
}

#[derive(Deserialize)]
struct PolicyQuery {
    name: Option<String>,
}

async fn get_policies(
    State(s): State<Arc<AppState>>,
    Msg { body, .. }: Msg<PolicyQuery>,
) -> ApiResult<Json<Value>> {
    let policies = match body.name.as_deref().filter(|n| !n.is_empty()) {
        Some(name) => match s.store.get_release_policy(name).await? {
            Some(p) => vec![p],
            None => {
                return Err(ApiError::new(
                    ErrorCode::ResourceDoesNotExist,
                    format!("registered model '{name}' has no release policy"),
                ));
            }
        },
        None => s.store.list_release_policies().await?,
    };
    Ok(Json(json!({ "policies": policies })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyBody {
    policy: Option<ReleasePolicy>,
}

/// Creates or replaces a model's policy; with an admin token configured, admins only.
async fn put_policy(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Msg { body, .. }: Msg<PolicyBody>,
) -> ApiResult<Json<Value>> {
    let actor = Actor::from_headers(&headers, &s.releases);
    if s.releases.admin_token.is_some() && !actor.admin {
        return Err(ApiError::new(
            ErrorCode::PermissionDenied,
            "changing a release policy needs the server's admin token",
        ));
    }
    let policy = body.policy.ok_or_else(|| ApiError::missing("policy"))?;
    for (i, key) in policy.trusted_keys.iter().enumerate() {
        let parsed: Option<Value> = serde_json::from_str(key).ok();
        let looks_right = parsed.as_ref().is_some_and(|k| {
            k.get("key_id").is_some_and(Value::is_string)
                && k.get("public_key").is_some_and(Value::is_string)
        });
        if !looks_right {
            return Err(ApiError::invalid(format!(
                "policy.trusted_keys[{i}] is not a public key file's text (JSON with key_id \
                 and public_key, as `kiln keys new` writes)"
            )));
        }
    }
    for (alias, g) in &policy.aliases {
        if let Some(l) = &g.latency
            && !(l.p99_ms.is_finite() && l.p99_ms > 0.0 && l.rows > 0 && l.iterations > 0)
        {
            return Err(ApiError::invalid(format!(
                "policy.aliases.{alias}.latency: p99_ms, rows and iterations must be positive"
            )));
        }
        if g.signed && policy.trusted_keys.is_empty() {
            return Err(ApiError::invalid(format!(
                "policy.aliases.{alias}.signed needs at least one key in policy.trusted_keys"
            )));
        }
    }
    let name = policy.model.clone();
    s.store.put_release_policy(policy, actor.name).await?;
    let stored = s.store.get_release_policy(&name).await?;
    Ok(Json(json!({ "policy": stored })))
}
