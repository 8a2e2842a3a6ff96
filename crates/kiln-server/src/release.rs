//! Release control on the server: every move of an alias — through MLflow's alias endpoint
//! or Kiln's release API — comes here. A move of a protected alias (one the model's stored
//! release policy names) runs the policy's gates through the [`GateRunner`] the binary
//! installs, stores the evaluation, and moves the alias only if every gate passed or an
//! admin overrode the failures with a reason.
//!
//! Two moves of one alias never interleave: a move in progress holds the alias (a second
//! one gets `RESOURCE_CONFLICT` at once), and the store applies the move only if the alias
//! still points where it pointed when the gates ran, so across servers sharing a database
//! exactly one of two racing moves wins as well.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use axum::http::HeaderMap;
use kiln_core::ErrorCode;
use kiln_core::entities::ModelVersion;
use kiln_core::release::{AliasEvent, GateResult, Outcome, ReleaseEvaluation, ReleasePolicy};
use kiln_store::{AliasMove, Expect, NewEvaluation};
use serde::Serialize;

use crate::AppState;
use crate::error::{ApiError, ApiResult};

/// The gates' verdicts for one candidate.
pub type GateFuture = Pin<Box<dyn Future<Output = Vec<GateResult>> + Send>>;

/// Evaluates a policy's gates for a candidate version against the alias's holder. Supplied
/// by the binary (the evaluation loads models, which this crate knows nothing of).
pub trait GateRunner: Send + Sync {
    fn run(
        &self,
        policy: ReleasePolicy,
        alias: String,
        candidate: ModelVersion,
        holder: Option<ModelVersion>,
    ) -> GateFuture;
}

/// Release settings of a server.
#[derive(Default)]
pub struct Releases {
    /// Runs gates; without one, a move of a protected alias is refused.
    pub gates: Option<Arc<dyn GateRunner>>,
    /// The bearer token that makes a caller an admin (overrides, policy changes, removing a
    /// protected alias). Without one, nobody can override a gate.
    pub admin_token: Option<String>,
    /// (model, alias) pairs with a move in progress.
    in_flight: Mutex<HashSet<(String, String)>>,
}

impl Releases {
    pub fn new(gates: Option<Arc<dyn GateRunner>>, admin_token: Option<String>) -> Releases {
        Releases {
            gates,
            admin_token: admin_token.filter(|t| !t.is_empty()),
            in_flight: Mutex::new(HashSet::new()),
        }
    }

    /// Holds (model, alias) until the guard drops, or says who holds it.
    fn hold(&self, name: &str, alias: &str) -> ApiResult<InFlight<'_>> {
        let key = (name.to_string(), alias.to_string());
        let mut set = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        if !set.insert(key.clone()) {
            return Err(ApiError::new(
                ErrorCode::ResourceConflict,
                format!(
                    "another move of alias '{alias}' of '{name}' is in progress; nothing was \
                     changed (retry once it has finished)"
                ),
            ));
        }
        Ok(InFlight {
            releases: self,
            key,
        })
    }
}

struct InFlight<'a> {
    releases: &'a Releases,
    key: (String, String),
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut set = self
            .releases
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        set.remove(&self.key);
    }
}

/// Who is asking: the user named by basic auth or `X-Kiln-User`, and whether the request
/// carries the admin token.
#[derive(Debug, Clone)]
pub struct Actor {
    pub name: String,
    pub admin: bool,
}

impl Actor {
    pub fn from_headers(headers: &HeaderMap, releases: &Releases) -> Actor {
        let auth = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let mut name = headers
            .get("x-kiln-user")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut admin = false;
        if let Some(token) = auth.strip_prefix("Bearer ") {
            admin = releases
                .admin_token
                .as_deref()
                .is_some_and(|t| constant_time_eq(t.as_bytes(), token.trim().as_bytes()));
        } else if let Some(b64) = auth.strip_prefix("Basic ") {
            use base64::Engine as _;
            if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(b64.trim())
                && let Ok(text) = String::from_utf8(bytes)
            {
                let (user, password) = text.split_once(':').unwrap_or((&text, ""));
                if !user.is_empty() {
                    name = Some(user.to_string());
                }
                admin = releases
                    .admin_token
                    .as_deref()
                    .is_some_and(|t| constant_time_eq(t.as_bytes(), password.as_bytes()));
            }
        }
        let name = name
            .filter(|n| !n.is_empty())
            .map(|n| n.chars().take(256).collect())
            .unwrap_or_else(|| if admin { "admin" } else { "anonymous" }.to_string());
        Actor { name, admin }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// One requested move.
#[derive(Debug, Clone)]
pub struct MoveRequest {
    pub name: String,
    pub alias: String,
    pub version: String,
    /// Needed to move despite failed gates (admins only).
    pub override_reason: Option<String>,
    /// Move only if the alias points at this version (`Some(None)`: does not exist).
    pub expect: Option<Option<String>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MoveResult {
    pub event: AliasEvent,
    pub evaluation: Option<ReleaseEvaluation>,
}

fn expect_of(e: &Option<Option<String>>) -> ApiResult<Expect> {
    Ok(match e {
        None => Expect::Any,
        Some(None) => Expect::Holder(None),
        Some(Some(v)) => Expect::Holder(Some(v.parse().map_err(|_| {
            ApiError::invalid(format!("expected holder {v:?} is not a version number"))
        })?)),
    })
}

/// The policy of `name`, if any.
async fn policy(state: &AppState, name: &str) -> ApiResult<Option<ReleasePolicy>> {
    Ok(state
        .store
        .get_release_policy(name)
        .await?
        .map(|p| p.policy))
}

/// Whether `alias` of `name` is protected by its policy.
pub async fn is_protected(state: &AppState, name: &str, alias: &str) -> ApiResult<bool> {
    Ok(policy(state, name)
        .await?
        .is_some_and(|p| p.gates(alias).is_some()))
}

fn summary(gates: &[GateResult]) -> String {
    gates
        .iter()
        .filter(|g| !g.passed)
        .map(|g| {
            if g.subject.is_empty() {
                format!("[{}] {}", g.gate, g.message)
            } else {
                format!("[{} {}] {}", g.gate, g.subject, g.message)
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Moves an alias, gated when the model's policy protects it.
pub async fn move_alias(
    state: &AppState,
    actor: &Actor,
    req: MoveRequest,
) -> ApiResult<MoveResult> {
    let expect = expect_of(&req.expect)?;
    let policy = policy(state, &req.name).await?;
    let Some(policy) = policy.filter(|p| p.gates(&req.alias).is_some()) else {
        let (event, evaluation) = state
            .store
            .move_alias(AliasMove {
                name: req.name,
                alias: req.alias,
                version: req.version,
                expect,
                action: "set".into(),
                actor: actor.name.clone(),
                reason: req.override_reason,
                refuse_archived: false,
                evaluation: None,
            })
            .await?;
        return Ok(MoveResult { event, evaluation });
    };
    if let Some(r) = &req.override_reason
        && r.trim().is_empty()
    {
        return Err(ApiError::invalid("an override needs a non-empty reason"));
    }
    let candidate = state
        .store
        .get_model_version(&req.name, &req.version)
        .await?;
    if candidate.current_stage == "Archived" {
        return Err(ApiError::invalid(format!(
            "Model Version (name={}, version={}) is archived and cannot take the protected \
             alias '{}'",
            req.name, req.version, req.alias
        )));
    }
    let _held = state.releases.hold(&req.name, &req.alias)?;
    let holder_v = state.store.alias_holder(&req.name, &req.alias).await?;
    if let Expect::Holder(expected) = expect
        && expected != holder_v
    {
        return Err(ApiError::new(
            ErrorCode::ResourceConflict,
            format!(
                "alias '{}' of '{}' points at {} but the release expected {}; nothing was changed",
                req.alias,
                req.name,
                holder_v.map_or("no version".into(), |v| format!("version {v}")),
                match expected {
                    Some(v) => format!("version {v}"),
                    None => "no version".into(),
                }
            ),
        ));
    }
    let holder = match holder_v {
        Some(h) => Some(
            state
                .store
                .get_model_version(&req.name, &h.to_string())
                .await?,
        ),
        None => None,
    };
    let gates = match &state.releases.gates {
        Some(runner) => {
            runner
                .run(
                    policy.clone(),
                    req.alias.clone(),
                    candidate.clone(),
                    holder.clone(),
                )
                .await
        }
        None => vec![GateResult {
            gate: "server".into(),
            subject: String::new(),
            passed: false,
            value: None,
            threshold: None,
            inputs: serde_json::Value::Null,
            message: "this server has no gate runner, so protected aliases cannot move".into(),
        }],
    };
    let passed = gates.iter().all(|g| g.passed);
    let outcome = match (passed, &req.override_reason) {
        (true, _) => Outcome::Moved,
        (false, Some(_)) if actor.admin => Outcome::Overridden,
        (false, Some(_)) => {
            // The gates ran: their verdict is kept, as a refused override.
            let failed = summary(&gates);
            let stored = state
                .store
                .record_release_evaluation(
                    req.name.clone(),
                    NewEvaluation {
                        alias: req.alias.clone(),
                        version: req.version.clone(),
                        holder: holder_v.map(|h| h.to_string()),
                        actor: actor.name.clone(),
                        outcome: Outcome::Blocked,
                        override_reason: req.override_reason.clone(),
                        gates,
                    },
                )
                .await?;
            return Err(ApiError::new(
                ErrorCode::PermissionDenied,
                format!(
                    "only an admin may override failed release gates (send the server's admin \
                     token); evaluation {} failed: {failed}",
                    stored.id
                ),
            ));
        }
        (false, None) => Outcome::Blocked,
    };
    let evaluation = NewEvaluation {
        alias: req.alias.clone(),
        version: req.version.clone(),
        holder: holder_v.map(|h| h.to_string()),
        actor: actor.name.clone(),
        outcome,
        override_reason: req.override_reason.clone().filter(|_| !passed),
        gates,
    };
    if outcome == Outcome::Blocked {
        let failed = summary(&evaluation.gates);
        let stored = state
            .store
            .record_release_evaluation(req.name.clone(), evaluation)
            .await?;
        return Err(ApiError::new(
            ErrorCode::PermissionDenied,
            format!(
                "release of '{}' version {} to '{}' blocked by its gates (evaluation {}): {}",
                req.name, req.version, req.alias, stored.id, failed
            ),
        ));
    }
    let (event, evaluation) = state
        .store
        .move_alias(AliasMove {
            name: req.name,
            alias: req.alias,
            version: req.version,
            expect: Expect::Holder(holder_v),
            action: if outcome == Outcome::Overridden {
                "override".into()
            } else {
                "release".into()
            },
            actor: actor.name.clone(),
            reason: req.override_reason,
            refuse_archived: true,
            evaluation: Some(evaluation),
        })
        .await?;
    Ok(MoveResult { event, evaluation })
}

/// Moves an alias back to the version that held it before its current holder, ungated
/// (the previous holder passed when it took the alias): the one-step undo.
pub async fn rollback(
    state: &AppState,
    actor: &Actor,
    name: &str,
    alias: &str,
    reason: Option<String>,
) -> ApiResult<AliasEvent> {
    let _held = state.releases.hold(name, alias)?;
    let (current, previous) = state.store.rollback_target(name, alias).await?;
    let (event, _) = state
        .store
        .move_alias(AliasMove {
            name: name.to_string(),
            alias: alias.to_string(),
            version: previous.to_string(),
            expect: Expect::Holder(Some(current)),
            action: "rollback".into(),
            actor: actor.name.clone(),
            reason,
            refuse_archived: false,
            evaluation: None,
        })
        .await?;
    Ok(event)
}

/// Removes an alias; a protected one only by an admin.
pub async fn remove_alias(
    state: &AppState,
    actor: &Actor,
    name: &str,
    alias: &str,
) -> ApiResult<()> {
    if is_protected(state, name, alias).await? && !actor.admin {
        return Err(ApiError::new(
            ErrorCode::PermissionDenied,
            format!(
                "alias '{alias}' of '{name}' is protected by its release policy; only an admin \
                 may remove it"
            ),
        ));
    }
    state
        .store
        .remove_alias(name.to_string(), alias.to_string(), actor.name.clone())
        .await?;
    Ok(())
}

/// Refuses to delete a version that holds a protected alias (move the alias first).
pub async fn check_version_deletable(
    state: &AppState,
    actor: &Actor,
    name: &str,
    version: &str,
) -> ApiResult<()> {
    if actor.admin {
        return Ok(());
    }
    let Some(policy) = policy(state, name).await? else {
        return Ok(());
    };
    for alias in policy.aliases.keys() {
        if let Some(v) = state.store.alias_holder(name, alias).await?
            && v.to_string() == version
        {
            return Err(ApiError::new(
                ErrorCode::PermissionDenied,
                format!(
                    "version {version} of '{name}' holds the protected alias '{alias}'; release \
                     another version to '{alias}' (or roll back) before deleting it"
                ),
            ));
        }
    }
    Ok(())
}
