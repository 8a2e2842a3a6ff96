//! Model registry routes: `/registered-models/*` and `/model-versions/*`, aliases included.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::{delete, get, patch, post};
use axum::{Json, Router};
use kiln_core::entities::{KeyValue, de_opt_i64};
use kiln_store::{CreateModelVersion, RegistrySearch};
use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};

use crate::AppState;
use crate::error::ApiResult;
use crate::extract::{Msg, de_bool, one_or_many, required};
use crate::release::{self, Actor, MoveRequest};

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/registered-models/create", post(create_model))
        .route("/registered-models/get", get(get_model))
        .route("/registered-models/update", patch(update_model))
        .route("/registered-models/rename", post(rename_model))
        .route("/registered-models/delete", delete(delete_model))
        .route(
            "/registered-models/search",
            get(search_models).post(search_models),
        )
        .route("/registered-models/set-tag", post(set_model_tag))
        .route("/registered-models/delete-tag", delete(delete_model_tag))
        .route(
            "/registered-models/get-latest-versions",
            post(latest_versions).get(latest_versions),
        )
        .route(
            "/registered-models/alias",
            post(set_alias).delete(delete_alias).get(get_by_alias),
        )
        .route("/model-versions/create", post(create_version))
        .route("/model-versions/get", get(get_version))
        .route("/model-versions/update", patch(update_version))
        .route("/model-versions/delete", delete(delete_version))
        .route("/model-versions/transition-stage", post(transition_stage))
        .route(
            "/model-versions/search",
            get(search_versions).post(search_versions),
        )
        .route("/model-versions/get-download-uri", get(download_uri))
        .route("/model-versions/set-tag", post(set_version_tag))
        .route("/model-versions/delete-tag", delete(delete_version_tag))
}

/// A version number sent as a string (the client's way) or as a JSON number.
pub(crate) fn de_version<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(other) => {
            return Err(serde::de::Error::custom(format!(
                "expected a version number, got {other}"
            )));
        }
    })
}

fn version(v: &Option<String>) -> ApiResult<&str> {
    required(v, "version")
}

// -- Registered models ----------------------------------------------------------------

#[derive(Deserialize)]
struct CreateModel {
    name: Option<String>,
    #[serde(default)]
    tags: Vec<KeyValue>,
    description: Option<String>,
}

async fn create_model(
    State(s): State<Arc<AppState>>,
    Msg { body, .. }: Msg<CreateModel>,
) -> ApiResult<Json<Value>> {
    let name = required(&body.name, "name")?.to_string();
    let model = s
        .store
        .create_registered_model(name, body.tags, body.description)
        .await?;
    Ok(Json(json!({ "registered_model": model })))
}

#[derive(Deserialize)]
struct ByName {
    name: Option<String>,
}

async fn get_model(
    State(s): State<Arc<AppState>>,
    Msg { body, .. }: Msg<ByName>,
) -> ApiResult<Json<Value>> {
    let model = s
        .store
        .get_registered_model(required(&body.name, "name")?)
        .await?;
    Ok(Json(json!({ "registered_model": model })))
}

#[derive(Deserialize)]
struct Update {
    name: Option<String>,
    description: Option<String>,
}

async fn update_model(
    State(s): State<Arc<AppState>>,
    Msg { body, .. }: Msg<Update>,
) -> ApiResult<Json<Value>> {
    let name = required(&body.name, "name")?.to_string();
    let model = s
        .store
        .update_registered_model(name, body.description)
        .await?;
    Ok(Json(json!({ "registered_model": model })))
}

#[derive(Deserialize)]
struct Rename {
    name: Option<String>,
    new_name: Option<String>,
}

async fn rename_model(
    State(s): State<Arc<AppState>>,
    Msg { body, .. }: Msg<Rename>,
) -> ApiResult<Json<Value>> {
    let name = required(&body.name, "name")?.to_string();
    let new_name = required(&body.new_name, "new_name")?.to_string();
    let model = s.store.rename_registered_model(name, new_name).await?;
    Ok(Json(json!({ "registered_model": model })))
}

async fn delete_model(
    State(s): State<Arc<AppState>>,
    Msg { body, .. }: Msg<ByName>,
) -> ApiResult<Json<Value>> {
    let name = required(&body.name, "name")?.to_string();
    s.store.delete_registered_model(name).await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
struct ModelTag {
    name: Option<String>,
    key: Option<String>,
    #[serde(default)]
    value: String,
}

async fn set_model_tag(
    State(s): State<Arc<AppState>>,
    Msg { body, .. }: Msg<ModelTag>,
) -> ApiResult<Json<Value>> {
    let name = required(&body.name, "name")?.to_string();
    let key = required(&body.key, "key")?.to_string();
    s.store
        .set_registered_model_tag(name, key, body.value)
        .await?;
    Ok(Json(json!({})))
}

async fn delete_model_tag(
    State(s): State<Arc<AppState>>,
    Msg { body, .. }: Msg<ModelTag>,
) -> ApiResult<Json<Value>> {
    let name = required(&body.name, "name")?.to_string();
    let key = required(&body.key, "key")?.to_string();
    s.store.delete_registered_model_tag(name, key).await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
struct Search {
    filter: Option<String>,
    #[serde(default, deserialize_with = "de_opt_i64")]
    max_results: Option<i64>,
    #[serde(default, deserialize_with = "one_or_many")]
    order_by: Vec<String>,
    page_token: Option<String>,
}

impl From<Search> for RegistrySearch {
    fn from(s: Search) -> RegistrySearch {
        RegistrySearch {
            filter: s.filter,
            max_results: s.max_results,
            order_by: s.order_by,
            page_token: s.page_token,
        }
    }
}

async fn search_models(
    State(s): State<Arc<AppState>>,
    Msg { body, .. }: Msg<Search>,
) -> ApiResult<Json<Value>> {
    let (models, next) = s.store.search_registered_models(body.into()).await?;
    let mut out = json!({ "registered_models": models });
    if let Some(token) = next {
        out["next_page_token"] = json!(token);
    }
    Ok(Json(out))
}

#[derive(Deserialize)]
struct Latest {
    name: Option<String>,
    #[serde(default, deserialize_with = "one_or_many")]
    stages: Vec<String>,
}

async fn latest_versions(
    State(s): State<Arc<AppState>>,
    Msg { body, .. }: Msg<Latest>,
) -> ApiResult<Json<Value>> {
    let name = required(&body.name, "name")?;
    let versions = s.store.get_latest_versions(name, &body.stages).await?;
    Ok(Json(json!({ "model_versions": versions })))
}

// -- Aliases ----------------------------------------------------------------------------

#[derive(Deserialize)]
struct Alias {
    name: Option<String>,
    alias: Option<String>,
    #[serde(default, deserialize_with = "de_version")]
    version: Option<String>,
}

/// An alias that is absent or empty is refused by the store's own rule, so that the
/// message is MLflow's.
fn alias_of(body: &Alias) -> String {
    body.alias.clone().unwrap_or_default()
}

/// MLflow's set-alias: gated like `kiln release` when the model's policy protects the alias.
async fn set_alias(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Msg { body, .. }: Msg<Alias>,
) -> ApiResult<Json<Value>> {
    let name = required(&body.name, "name")?.to_string();
    let v = version(&body.version)?.to_string();
    let actor = Actor::from_headers(&headers, &s.releases);
    release::move_alias(
        &s,
        &actor,
        MoveRequest {
            name,
            alias: alias_of(&body),
            version: v,
            override_reason: None,
            expect: None,
        },
    )
    .await?;
    Ok(Json(json!({})))
}

async fn delete_alias(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Msg { body, .. }: Msg<Alias>,
) -> ApiResult<Json<Value>> {
    let name = required(&body.name, "name")?.to_string();
    let actor = Actor::from_headers(&headers, &s.releases);
    release::remove_alias(&s, &actor, &name, &alias_of(&body)).await?;
    Ok(Json(json!({})))
}

async fn get_by_alias(
    State(s): State<Arc<AppState>>,
    Msg { body, .. }: Msg<Alias>,
) -> ApiResult<Json<Value>> {
    let name = required(&body.name, "name")?;
    let mv = s
        .store
        .get_model_version_by_alias(name, &alias_of(&body))
        .await?;
    Ok(Json(json!({ "model_version": mv })))
}

// -- Model versions ---------------------------------------------------------------------

#[derive(Deserialize)]
struct CreateVersion {
    name: Option<String>,
    source: Option<String>,
    run_id: Option<String>,
    #[serde(default)]
    tags: Vec<KeyValue>,
    run_link: Option<String>,
    description: Option<String>,
    model_id: Option<String>,
}

async fn create_version(
    State(s): State<Arc<AppState>>,
    Msg { body, .. }: Msg<CreateVersion>,
) -> ApiResult<Json<Value>> {
    let name = required(&body.name, "name")?.to_string();
    let source = required(&body.source, "source")?.to_string();
    let mv = s
        .store
        .create_model_version(CreateModelVersion {
            name,
            source,
            run_id: body.run_id,
            tags: body.tags,
            run_link: body.run_link,
            description: body.description,
            model_id: body.model_id,
        })
        .await?;
    Ok(Json(json!({ "model_version": mv })))
}

#[derive(Deserialize)]
struct VersionRef {
    name: Option<String>,
    #[serde(default, deserialize_with = "de_version")]
    version: Option<String>,
    description: Option<String>,
}

async fn get_version(
    State(s): State<Arc<AppState>>,
    Msg { body, .. }: Msg<VersionRef>,
) -> ApiResult<Json<Value>> {
    let name = required(&body.name, "name")?;
    let mv = s
        .store
        .get_model_version(name, version(&body.version)?)
        .await?;
    Ok(Json(json!({ "model_version": mv })))
}

async fn update_version(
    State(s): State<Arc<AppState>>,
    Msg { body, .. }: Msg<VersionRef>,
) -> ApiResult<Json<Value>> {
    let name = required(&body.name, "name")?.to_string();
    let v = version(&body.version)?;
    let mv = s
        .store
        .update_model_version(name, v, body.description.clone())
        .await?;
    Ok(Json(json!({ "model_version": mv })))
}

async fn delete_version(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Msg { body, .. }: Msg<VersionRef>,
) -> ApiResult<Json<Value>> {
    let name = required(&body.name, "name")?.to_string();
    let actor = Actor::from_headers(&headers, &s.releases);
    release::check_version_deletable(&s, &actor, &name, version(&body.version)?).await?;
    s.store
        .delete_model_version(name, version(&body.version)?)
        .await?;
    Ok(Json(json!({})))
}

async fn download_uri(
    State(s): State<Arc<AppState>>,
    Msg { body, .. }: Msg<VersionRef>,
) -> ApiResult<Json<Value>> {
    let name = required(&body.name, "name")?;
    let uri = s
        .store
        .get_model_version_download_uri(name, version(&body.version)?)
        .await?;
    Ok(Json(json!({ "artifact_uri": uri })))
}

#[derive(Deserialize)]
struct Transition {
    name: Option<String>,
    #[serde(default, deserialize_with = "de_version")]
    version: Option<String>,
    stage: Option<String>,
    #[serde(default, deserialize_with = "de_bool")]
    archive_existing_versions: bool,
}

async fn transition_stage(
    State(s): State<Arc<AppState>>,
    Msg { body, .. }: Msg<Transition>,
) -> ApiResult<Json<Value>> {
    let name = required(&body.name, "name")?.to_string();
    let v = version(&body.version)?;
    let stage = required(&body.stage, "stage")?;
    let mv = s
        .store
        .transition_model_version_stage(name, v, stage, body.archive_existing_versions)
        .await?;
    Ok(Json(json!({ "model_version": mv })))
}

async fn search_versions(
    State(s): State<Arc<AppState>>,
    Msg { body, .. }: Msg<Search>,
) -> ApiResult<Json<Value>> {
    let (versions, next) = s.store.search_model_versions(body.into()).await?;
    let mut out = json!({ "model_versions": versions });
    if let Some(token) = next {
        out["next_page_token"] = json!(token);
    }
    Ok(Json(out))
}

#[derive(Deserialize)]
struct VersionTag {
    name: Option<String>,
    #[serde(default, deserialize_with = "de_version")]
    version: Option<String>,
    key: Option<String>,
    #[serde(default)]
    value: String,
}

async fn set_version_tag(
    State(s): State<Arc<AppState>>,
    Msg { body, .. }: Msg<VersionTag>,
) -> ApiResult<Json<Value>> {
    let name = required(&body.name, "name")?.to_string();
    let v = version(&body.version)?;
    let key = required(&body.key, "key")?.to_string();
    s.store
        .set_model_version_tag(name, v, key, body.value)
        .await?;
    Ok(Json(json!({})))
}

async fn delete_version_tag(
    State(s): State<Arc<AppState>>,
    Msg { body, .. }: Msg<VersionTag>,
) -> ApiResult<Json<Value>> {
    let name = required(&body.name, "name")?.to_string();
    let v = version(&body.version)?;
    let key = required(&body.key, "key")?.to_string();
    s.store.delete_model_version_tag(name, v, key).await?;
    Ok(Json(json!({})))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::decode;

    #[test]
    fn versions_arrive_as_strings_or_numbers() {
        let v: VersionRef = decode(json!({"name": "m", "version": "3"})).unwrap();
        assert_eq!(v.version.as_deref(), Some("3"));
        let v: VersionRef = decode(json!({"name": "m", "version": 4})).unwrap();
        assert_eq!(v.version.as_deref(), Some("4"));
        let v: VersionRef = decode(json!({"name": "m"})).unwrap();
        assert!(version(&v.version).is_err());
        assert!(decode::<VersionRef>(json!({"version": [1]})).is_err());
    }

    #[test]
    fn stages_accept_one_or_many_and_archive_flags_any_case() {
        let l: Latest = decode(json!({"name": "m", "stages": "Production"})).unwrap();
        assert_eq!(l.stages, vec!["Production"]);
        let l: Latest = decode(json!({"name": "m"})).unwrap();
        assert!(l.stages.is_empty());
        let t: Transition = decode(
            json!({"name": "m", "version": "1", "stage": "x", "archive_existing_versions": "True"}),
        )
        .unwrap();
        assert!(t.archive_existing_versions);
    }
}
