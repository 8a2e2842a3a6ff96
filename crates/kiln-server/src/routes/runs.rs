//! `/runs/*` and `/metrics/*` routes.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use kiln_core::entities::{
    DatasetInput, KeyValue, Metric, ModelInput, ModelOutput, Run, de_f64, de_opt_i64,
};
use kiln_store::validation::MAX_BATCH_REQUEST_BYTES;
use kiln_store::{BatchInput, MetricInput, ModelMetricInput, RunCreate, RunSearch, RunUpdate};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Msg, one_or_many, required};
use crate::routes::experiments::view_type;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/runs/create", post(create))
        .route("/runs/get", get(get_one))
        .route("/runs/update", post(update))
        .route("/runs/delete", post(delete))
        .route("/runs/restore", post(restore))
        .route("/runs/search", get(search).post(search))
        .route("/runs/log-metric", post(log_metric))
        .route("/runs/log-parameter", post(log_param))
        .route("/runs/set-tag", post(set_tag))
        .route("/runs/delete-tag", post(delete_tag))
        .route("/runs/log-batch", post(log_batch))
        .route("/runs/log-inputs", post(log_inputs))
        .route("/runs/outputs", post(log_outputs))
        .route("/metrics/get-history", get(history))
        .route("/metrics/get-history-bulk-interval", get(history_bulk))
}

// Large responses are serialised straight from typed structs: building a `json!` tree of
// a thousand runs or ten thousand metric points first would double the work.
#[derive(Serialize)]
struct RunResponse {
    run: Run,
}

#[derive(Serialize)]
struct RunsPage {
    runs: Vec<Run>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_page_token: Option<String>,
}

#[derive(Serialize)]
struct MetricsPage {
    metrics: Vec<Metric>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_page_token: Option<String>,
}

/// Both `run_id` and the legacy `run_uuid` name the run; the client sends both. (Messages
/// repeat the two fields rather than `#[serde(flatten)]` a shared struct: flattening makes
/// serde buffer the whole message, which costs a thousand-metric batch dearly.)
fn run_of<'a>(run_id: &'a Option<String>, run_uuid: &'a Option<String>) -> ApiResult<&'a str> {
    match (run_id.as_deref(), run_uuid.as_deref()) {
        (Some(id), _) if !id.is_empty() => Ok(id),
        (_, Some(id)) if !id.is_empty() => Ok(id),
        _ => Err(ApiError::missing("run_id")),
    }
}

#[derive(Deserialize)]
struct RunRef {
    run_id: Option<String>,
    run_uuid: Option<String>,
}

#[derive(Deserialize)]
struct Create {
    experiment_id: Option<String>,
    #[serde(default)]
    user_id: String,
    run_name: Option<String>,
    #[serde(default, deserialize_with = "de_opt_i64")]
    start_time: Option<i64>,
    #[serde(default)]
    tags: Vec<KeyValue>,
}

async fn create(
    State(s): State<Arc<AppState>>,
    Msg { body, .. }: Msg<Create>,
) -> ApiResult<Json<RunResponse>> {
    let run = s
        .store
        .create_run(RunCreate {
            experiment_id: body.experiment_id.unwrap_or_else(|| "0".into()),
            user_id: body.user_id,
            run_name: body.run_name,
            start_time: body.start_time,
            tags: body.tags,
        })
        .await?;
    Ok(Json(RunResponse { run }))
}

async fn get_one(
    State(s): State<Arc<AppState>>,
    Msg { body, .. }: Msg<RunRef>,
) -> ApiResult<Json<RunResponse>> {
    let run = s
        .store
        .get_run(run_of(&body.run_id, &body.run_uuid)?)
        .await?;
    Ok(Json(RunResponse { run }))
}

#[derive(Deserialize)]
struct Update {
    run_id: Option<String>,
    run_uuid: Option<String>,
    status: Option<String>,
    #[serde(default, deserialize_with = "de_opt_i64")]
    end_time: Option<i64>,
    run_name: Option<String>,
}

async fn update(
    State(s): State<Arc<AppState>>,
    Msg { body, .. }: Msg<Update>,
) -> ApiResult<Json<Value>> {
    let info = s
        .store
        .update_run(
            run_of(&body.run_id, &body.run_uuid)?,
            RunUpdate {
                status: body.status,
                end_time: body.end_time,
                run_name: body.run_name,
            },
        )
        .await?;
    Ok(Json(json!({ "run_info": info })))
}

async fn delete(
    State(s): State<Arc<AppState>>,
    Msg { body, .. }: Msg<RunRef>,
) -> ApiResult<Json<Value>> {
    s.store
        .set_run_lifecycle(run_of(&body.run_id, &body.run_uuid)?, true)
        .await?;
    Ok(Json(json!({})))
}

async fn restore(
    State(s): State<Arc<AppState>>,
    Msg { body, .. }: Msg<RunRef>,
) -> ApiResult<Json<Value>> {
    s.store
        .set_run_lifecycle(run_of(&body.run_id, &body.run_uuid)?, false)
        .await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
struct Search {
    #[serde(default, deserialize_with = "one_or_many")]
    experiment_ids: Vec<String>,
    filter: Option<String>,
    run_view_type: Option<Value>,
    #[serde(default, deserialize_with = "de_opt_i64")]
    max_results: Option<i64>,
    #[serde(default, deserialize_with = "one_or_many")]
    order_by: Vec<String>,
    page_token: Option<String>,
}

async fn search(
    State(s): State<Arc<AppState>>,
    Msg { body, .. }: Msg<Search>,
) -> ApiResult<Json<RunsPage>> {
    let (runs, next) = s
        .store
        .search_runs(RunSearch {
            experiment_ids: body.experiment_ids,
            filter: body.filter,
            view: view_type(&body.run_view_type)?,
            max_results: body.max_results,
            order_by: body.order_by,
            page_token: body.page_token,
        })
        .await?;
    Ok(Json(RunsPage {
        runs,
        next_page_token: next,
    }))
}

/// A metric as sent by the client: value may be a number or "NaN"/"Infinity".
#[derive(Deserialize)]
struct MetricMsg {
    /// Set on `runs/log-metric`; ignored inside a batch.
    run_id: Option<String>,
    run_uuid: Option<String>,
    key: Option<String>,
    #[serde(default, deserialize_with = "de_opt_f64")]
    value: Option<f64>,
    #[serde(default, deserialize_with = "de_opt_i64")]
    timestamp: Option<i64>,
    #[serde(default, deserialize_with = "de_opt_i64")]
    step: Option<i64>,
    /// MLflow 3: the logged model this metric evaluates, and on which dataset.
    model_id: Option<String>,
    dataset_name: Option<String>,
    dataset_digest: Option<String>,
}

fn de_opt_f64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    #[derive(Deserialize)]
    struct W(#[serde(deserialize_with = "de_f64")] f64);
    Option::<W>::deserialize(d).map(|o| o.map(|w| w.0))
}

impl MetricMsg {
    /// The point for the run, plus the same point for its logged model if it names one.
    fn split(self, at: &str) -> ApiResult<(MetricInput, Option<(String, ModelMetricInput)>)> {
        let model_id = self.model_id.clone().filter(|m| !m.is_empty());
        let (dataset_name, dataset_digest) =
            (self.dataset_name.clone(), self.dataset_digest.clone());
        let m = self.into_input(at)?;
        let model = model_id.map(|id| {
            (
                id,
                ModelMetricInput {
                    key: m.key.clone(),
                    value: m.value,
                    timestamp: m.timestamp,
                    step: m.step,
                    dataset_name,
                    dataset_digest,
                },
            )
        });
        Ok((m, model))
    }

    fn into_input(self, at: &str) -> ApiResult<MetricInput> {
        let key = self
            .key
            .filter(|k| !k.is_empty())
            .ok_or_else(|| ApiError::missing(&format!("{at}key")))?;
        Ok(MetricInput {
            value: self
                .value
                .ok_or_else(|| ApiError::missing(&format!("{at}value")))?,
            timestamp: self
                .timestamp
                .ok_or_else(|| ApiError::missing(&format!("{at}timestamp")))?,
            step: self.step.unwrap_or(0),
            key,
        })
    }
}

async fn log_metric(
    State(s): State<Arc<AppState>>,
    Msg { body, .. }: Msg<MetricMsg>,
) -> ApiResult<Json<Value>> {
    let id = run_of(&body.run_id, &body.run_uuid)?.to_string();
    let (metric, model) = body.split("")?;
    s.store
        .log_batch(
            &id,
            BatchInput {
                metrics: vec![metric],
                model_metrics: model.into_iter().collect(),
                ..Default::default()
            },
        )
        .await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
struct KeyValueMsg {
    run_id: Option<String>,
    run_uuid: Option<String>,
    key: Option<String>,
    value: Option<String>,
}

async fn log_param(
    State(s): State<Arc<AppState>>,
    Msg { body, .. }: Msg<KeyValueMsg>,
) -> ApiResult<Json<Value>> {
    let key = required(&body.key, "key")?.to_string();
    let value = body
        .value
        .clone()
        .ok_or_else(|| ApiError::missing("value"))?;
    s.store
        .log_param(
            run_of(&body.run_id, &body.run_uuid)?,
            KeyValue { key, value },
        )
        .await?;
    Ok(Json(json!({})))
}

async fn set_tag(
    State(s): State<Arc<AppState>>,
    Msg { body, .. }: Msg<KeyValueMsg>,
) -> ApiResult<Json<Value>> {
    let key = required(&body.key, "key")?.to_string();
    let value = body
        .value
        .clone()
        .ok_or_else(|| ApiError::missing("value"))?;
    s.store
        .set_tag(
            run_of(&body.run_id, &body.run_uuid)?,
            KeyValue { key, value },
        )
        .await?;
    Ok(Json(json!({})))
}

async fn delete_tag(
    State(s): State<Arc<AppState>>,
    Msg { body, .. }: Msg<KeyValueMsg>,
) -> ApiResult<Json<Value>> {
    let key = required(&body.key, "key")?.to_string();
    s.store
        .delete_tag(run_of(&body.run_id, &body.run_uuid)?, key)
        .await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
struct LogBatch {
    run_id: Option<String>,
    run_uuid: Option<String>,
    #[serde(default)]
    metrics: Vec<MetricMsg>,
    #[serde(default)]
    params: Vec<KeyValue>,
    #[serde(default)]
    tags: Vec<KeyValue>,
}

async fn log_batch(
    State(s): State<Arc<AppState>>,
    Msg { body, len }: Msg<LogBatch>,
) -> ApiResult<Json<Value>> {
    if len > MAX_BATCH_REQUEST_BYTES {
        return Err(ApiError::invalid(format!(
            "Batched logging API requests must be at most {MAX_BATCH_REQUEST_BYTES} bytes, got a \
             request of {len} bytes"
        )));
    }
    let id = run_of(&body.run_id, &body.run_uuid)?.to_string();
    let mut metrics = Vec::with_capacity(body.metrics.len());
    let mut model_metrics = Vec::new();
    for (i, m) in body.metrics.into_iter().enumerate() {
        let (metric, model) = m.split(&format!("metrics[{i}]."))?;
        metrics.push(metric);
        model_metrics.extend(model);
    }
    s.store
        .log_batch(
            &id,
            BatchInput {
                metrics,
                params: body.params,
                tags: body.tags,
                model_metrics,
            },
        )
        .await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
struct LogInputs {
    run_id: Option<String>,
    run_uuid: Option<String>,
    #[serde(default)]
    datasets: Vec<DatasetInput>,
    #[serde(default)]
    models: Vec<ModelInput>,
}

async fn log_inputs(
    State(s): State<Arc<AppState>>,
    Msg { body, .. }: Msg<LogInputs>,
) -> ApiResult<Json<Value>> {
    s.store
        .log_inputs(
            run_of(&body.run_id, &body.run_uuid)?,
            body.datasets,
            body.models,
        )
        .await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
struct LogOutputs {
    run_id: Option<String>,
    run_uuid: Option<String>,
    #[serde(default)]
    models: Vec<ModelOutput>,
}

async fn log_outputs(
    State(s): State<Arc<AppState>>,
    Msg { body, .. }: Msg<LogOutputs>,
) -> ApiResult<Json<Value>> {
    s.store
        .log_outputs(run_of(&body.run_id, &body.run_uuid)?, body.models)
        .await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
struct History {
    run_id: Option<String>,
    run_uuid: Option<String>,
    metric_key: Option<String>,
    #[serde(default, deserialize_with = "de_opt_i64")]
    max_results: Option<i64>,
    page_token: Option<String>,
}

async fn history(
    State(s): State<Arc<AppState>>,
    Msg { body, .. }: Msg<History>,
) -> ApiResult<Json<MetricsPage>> {
    let key = required(&body.metric_key, "metric_key")?;
    let (metrics, next) = s
        .store
        .get_metric_history(
            run_of(&body.run_id, &body.run_uuid)?,
            key,
            body.max_results,
            body.page_token.as_deref(),
        )
        .await?;
    Ok(Json(MetricsPage {
        metrics,
        next_page_token: next,
    }))
}

#[derive(Deserialize)]
struct HistoryBulk {
    #[serde(default, deserialize_with = "one_or_many")]
    run_ids: Vec<String>,
    metric_key: Option<String>,
    #[serde(default, deserialize_with = "de_opt_i64")]
    start_step: Option<i64>,
    #[serde(default, deserialize_with = "de_opt_i64")]
    end_step: Option<i64>,
    #[serde(default, deserialize_with = "de_opt_i64")]
    max_results: Option<i64>,
}

/// Sampled histories of one metric for many runs (what MLflow's UI plots).
async fn history_bulk(
    State(s): State<Arc<AppState>>,
    Msg { body, .. }: Msg<HistoryBulk>,
) -> ApiResult<Json<MetricsPage>> {
    let key = required(&body.metric_key, "metric_key")?;
    let metrics = s
        .store
        .get_metric_history_bulk_interval(
            &body.run_ids,
            key,
            body.start_step,
            body.end_step,
            body.max_results,
        )
        .await?;
    Ok(Json(MetricsPage {
        metrics,
        next_page_token: None,
    }))
}
