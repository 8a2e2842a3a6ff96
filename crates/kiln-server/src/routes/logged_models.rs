//! `/logged-models*` routes (MLflow 3.x logged models).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::routing::{delete, get, patch, post};
use axum::{Json, Router};
use kiln_core::entities::{KeyValue, de_opt_i64};
use kiln_store::{LoggedModelCreate, LoggedModelDataset, LoggedModelOrder, LoggedModelSearch};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Msg, one_or_many, required};

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/logged-models", post(create))
        .route("/logged-models/search", post(search))
        .route(
            "/logged-models/{model_id}",
            get(get_one).patch(finalize).delete(delete_one),
        )
        .route("/logged-models/{model_id}/tags", patch(set_tags))
        .route(
            "/logged-models/{model_id}/tags/{*tag_key}",
            delete(delete_tag),
        )
        .route("/logged-models/{model_id}/params", post(log_params))
        .route(
            "/logged-models/{model_id}/artifacts/directories",
            get(list_artifacts),
        )
}

#[derive(Deserialize)]
struct Create {
    experiment_id: Option<String>,
    name: Option<String>,
    model_type: Option<String>,
    source_run_id: Option<String>,
    #[serde(default)]
    params: Vec<KeyValue>,
    #[serde(default)]
    tags: Vec<KeyValue>,
}

async fn create(
    State(s): State<Arc<AppState>>,
    Msg { body, .. }: Msg<Create>,
) -> ApiResult<Json<Value>> {
    let experiment_id = required(&body.experiment_id, "experiment_id")?.to_string();
    let model = s
        .store
        .create_logged_model(LoggedModelCreate {
            experiment_id,
            name: body.name,
            model_type: body.model_type,
            source_run_id: body.source_run_id,
            params: body.params,
            tags: body.tags,
        })
        .await?;
    Ok(Json(json!({ "model": model })))
}

async fn get_one(
    State(s): State<Arc<AppState>>,
    Path(model_id): Path<String>,
) -> ApiResult<Json<Value>> {
    let model = s.store.get_logged_model(&model_id).await?;
    Ok(Json(json!({ "model": model })))
}

#[derive(Deserialize)]
struct Finalize {
    /// A string (`"LOGGED_MODEL_READY"`) or the enum's number.
    status: Option<Value>,
}

async fn finalize(
    State(s): State<Arc<AppState>>,
    Path(model_id): Path<String>,
    Msg { body, .. }: Msg<Finalize>,
) -> ApiResult<Json<Value>> {
    let status = match body.status {
        None | Some(Value::Null) => return Err(ApiError::missing("status")),
        Some(Value::String(s)) if s.is_empty() => return Err(ApiError::missing("status")),
        Some(Value::String(s)) => s,
        Some(other) => other.to_string(),
    };
    let model = s.store.finalize_logged_model(&model_id, &status).await?;
    Ok(Json(json!({ "model": model })))
}

async fn delete_one(
    State(s): State<Arc<AppState>>,
    Path(model_id): Path<String>,
) -> ApiResult<Json<Value>> {
    s.store.delete_logged_model(&model_id).await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
struct Tags {
    #[serde(default)]
    tags: Vec<KeyValue>,
}

async fn set_tags(
    State(s): State<Arc<AppState>>,
    Path(model_id): Path<String>,
    Msg { body, .. }: Msg<Tags>,
) -> ApiResult<Json<Value>> {
    s.store.set_logged_model_tags(&model_id, body.tags).await?;
    Ok(Json(json!({})))
}

async fn delete_tag(
    State(s): State<Arc<AppState>>,
    Path((model_id, tag_key)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    s.store.delete_logged_model_tag(&model_id, tag_key).await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
struct Params {
    #[serde(default)]
    params: Vec<KeyValue>,
}

async fn log_params(
    State(s): State<Arc<AppState>>,
    Path(model_id): Path<String>,
    Msg { body, .. }: Msg<Params>,
) -> ApiResult<Json<Value>> {
    s.store
        .log_logged_model_params(&model_id, body.params)
        .await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
struct DatasetMsg {
    dataset_name: Option<String>,
    dataset_digest: Option<String>,
}

#[derive(Deserialize)]
struct OrderMsg {
    field_name: Option<String>,
    ascending: Option<bool>,
    dataset_name: Option<String>,
    dataset_digest: Option<String>,
}

#[derive(Deserialize)]
struct Search {
    #[serde(default, deserialize_with = "one_or_many")]
    experiment_ids: Vec<String>,
    filter: Option<String>,
    #[serde(default)]
    datasets: Vec<DatasetMsg>,
    #[serde(default, deserialize_with = "de_opt_i64")]
    max_results: Option<i64>,
    #[serde(default)]
    order_by: Vec<OrderMsg>,
    page_token: Option<String>,
}

async fn search(
    State(s): State<Arc<AppState>>,
    Msg { body, .. }: Msg<Search>,
) -> ApiResult<Json<Value>> {
    let datasets = body
        .datasets
        .into_iter()
        .enumerate()
        .map(|(i, d)| {
            Ok(LoggedModelDataset {
                dataset_name: d
                    .dataset_name
                    .filter(|n| !n.is_empty())
                    .ok_or_else(|| ApiError::missing(&format!("datasets[{i}].dataset_name")))?,
                dataset_digest: d.dataset_digest,
            })
        })
        .collect::<ApiResult<Vec<_>>>()?;
    let order_by = body
        .order_by
        .into_iter()
        .enumerate()
        .map(|(i, o)| {
            Ok(LoggedModelOrder {
                field_name: o
                    .field_name
                    .filter(|n| !n.is_empty())
                    .ok_or_else(|| ApiError::missing(&format!("order_by[{i}].field_name")))?,
                // The proto's default is ascending.
                ascending: o.ascending.unwrap_or(true),
                dataset_name: o.dataset_name,
                dataset_digest: o.dataset_digest,
            })
        })
        .collect::<ApiResult<Vec<_>>>()?;
    let (models, next) = s
        .store
        .search_logged_models(LoggedModelSearch {
            experiment_ids: body.experiment_ids,
            filter: body.filter,
            datasets,
            max_results: body.max_results,
            order_by,
            page_token: body.page_token,
        })
        .await?;
    let mut out = json!({ "models": models });
    if let Some(token) = next {
        out["next_page_token"] = json!(token);
    }
    Ok(Json(out))
}

#[derive(Deserialize)]
struct ListQuery {
    artifact_directory_path: Option<String>,
}

/// Lists a directory of the model's artifacts, paths relative to the model's artifact root.
async fn list_artifacts(
    State(s): State<Arc<AppState>>,
    Path(model_id): Path<String>,
    Msg { body, .. }: Msg<ListQuery>,
) -> ApiResult<Json<Value>> {
    let model = s.store.get_logged_model(&model_id).await?;
    crate::routes::artifacts::list_under_root(
        &s,
        model.info.artifact_uri,
        body.artifact_directory_path.as_deref(),
    )
    .await
}
