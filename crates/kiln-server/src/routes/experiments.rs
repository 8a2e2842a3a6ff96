//! `/experiments/*` routes.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use kiln_core::entities::{KeyValue, de_opt_i64};
use kiln_store::ViewType;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::error::ApiResult;
use crate::extract::{Msg, one_or_many, required};

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/experiments/create", post(create))
        .route("/experiments/get", get(get_one))
        .route("/experiments/get-by-name", get(get_by_name))
        .route("/experiments/search", get(search).post(search))
        .route("/experiments/list", get(search))
        .route("/experiments/update", post(update))
        .route("/experiments/delete", post(delete))
        .route("/experiments/restore", post(restore))
        .route("/experiments/set-experiment-tag", post(set_tag))
        .route("/experiments/delete-experiment-tag", post(delete_tag))
}

#[derive(Deserialize)]
struct Create {
    name: Option<String>,
    artifact_location: Option<String>,
    #[serde(default)]
    tags: Vec<KeyValue>,
}

async fn create(
    State(s): State<Arc<AppState>>,
    Msg { body, .. }: Msg<Create>,
) -> ApiResult<Json<Value>> {
    let name = required(&body.name, "name")?.to_string();
    let id = s
        .store
        .create_experiment(name, body.artifact_location, body.tags)
        .await?;
    Ok(Json(json!({ "experiment_id": id })))
}

#[derive(Deserialize)]
struct ById {
    experiment_id: Option<String>,
}

async fn get_one(
    State(s): State<Arc<AppState>>,
    Msg { body, .. }: Msg<ById>,
) -> ApiResult<Json<Value>> {
    let id = required(&body.experiment_id, "experiment_id")?;
    let exp = s.store.get_experiment(id).await?;
    Ok(Json(json!({ "experiment": exp })))
}

#[derive(Deserialize)]
struct ByName {
    experiment_name: Option<String>,
}

async fn get_by_name(
    State(s): State<Arc<AppState>>,
    Msg { body, .. }: Msg<ByName>,
) -> ApiResult<Json<Value>> {
    let name = required(&body.experiment_name, "experiment_name")?;
    let exp = s.store.get_experiment_by_name(name).await?;
    Ok(Json(json!({ "experiment": exp })))
}

#[derive(Deserialize)]
struct Search {
    #[serde(default, deserialize_with = "de_opt_i64")]
    max_results: Option<i64>,
    page_token: Option<String>,
    filter: Option<String>,
    #[serde(default, deserialize_with = "one_or_many")]
    order_by: Vec<String>,
    view_type: Option<Value>,
}

pub(crate) fn view_type(v: &Option<Value>) -> ApiResult<ViewType> {
    Ok(match v {
        None | Some(Value::Null) => ViewType::ActiveOnly,
        Some(Value::String(s)) => ViewType::parse(s)?,
        Some(Value::Number(n)) => ViewType::parse(&n.to_string())?,
        Some(other) => ViewType::parse(&other.to_string())?,
    })
}

async fn search(
    State(s): State<Arc<AppState>>,
    Msg { body, .. }: Msg<Search>,
) -> ApiResult<Json<Value>> {
    let view = view_type(&body.view_type)?;
    let (exps, next) = s
        .store
        .search_experiments(
            view,
            body.filter.as_deref(),
            &body.order_by,
            body.max_results,
            body.page_token.as_deref(),
        )
        .await?;
    let mut out = json!({ "experiments": exps });
    if let Some(token) = next {
        out["next_page_token"] = json!(token);
    }
    Ok(Json(out))
}

#[derive(Deserialize)]
struct Update {
    experiment_id: Option<String>,
    new_name: Option<String>,
}

async fn update(
    State(s): State<Arc<AppState>>,
    Msg { body, .. }: Msg<Update>,
) -> ApiResult<Json<Value>> {
    let id = required(&body.experiment_id, "experiment_id")?;
    let name = required(&body.new_name, "new_name")?.to_string();
    s.store.rename_experiment(id, name).await?;
    Ok(Json(json!({})))
}

async fn delete(
    State(s): State<Arc<AppState>>,
    Msg { body, .. }: Msg<ById>,
) -> ApiResult<Json<Value>> {
    let id = required(&body.experiment_id, "experiment_id")?;
    s.store.set_experiment_lifecycle(id, true).await?;
    Ok(Json(json!({})))
}

async fn restore(
    State(s): State<Arc<AppState>>,
    Msg { body, .. }: Msg<ById>,
) -> ApiResult<Json<Value>> {
    let id = required(&body.experiment_id, "experiment_id")?;
    s.store.set_experiment_lifecycle(id, false).await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
struct Tag {
    experiment_id: Option<String>,
    key: Option<String>,
    #[serde(default)]
    value: String,
}

async fn set_tag(
    State(s): State<Arc<AppState>>,
    Msg { body, .. }: Msg<Tag>,
) -> ApiResult<Json<Value>> {
    let id = required(&body.experiment_id, "experiment_id")?;
    let key = required(&body.key, "key")?.to_string();
    s.store.set_experiment_tag(id, key, body.value).await?;
    Ok(Json(json!({})))
}

async fn delete_tag(
    State(s): State<Arc<AppState>>,
    Msg { body, .. }: Msg<Tag>,
) -> ApiResult<Json<Value>> {
    let id = required(&body.experiment_id, "experiment_id")?;
    let key = required(&body.key, "key")?.to_string();
    s.store.delete_experiment_tag(id, key).await?;
    Ok(Json(json!({})))
}
