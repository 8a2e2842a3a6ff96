//! Kiln's monitoring API under `/api/kiln`: feedback labels for earlier predictions, joined
//! to the prediction log by request id for realised performance.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Msg, required};

pub fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/feedback", post(feedback).get(list_feedback))
}

/// One label, or a batch of them, for one deployment:
/// `{"deployment": "delay", "request_id": "r1", "label": 1}` or
/// `{"deployment": "delay", "labels": [{"request_id": "r1", "label": 1}, …]}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FeedbackBody {
    deployment: Option<String>,
    request_id: Option<String>,
    label: Option<Value>,
    labels: Option<Vec<Label>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Label {
    request_id: String,
    label: Value,
}

/// Most labels in one request.
const MAX_LABELS: usize = 100_000;

async fn feedback(
    State(s): State<Arc<AppState>>,
    Msg { body, .. }: Msg<FeedbackBody>,
) -> ApiResult<Json<Value>> {
    let deployment = required(&body.deployment, "deployment")?;
    let labels: Vec<(String, Value)> = match (body.request_id, body.label, body.labels) {
        (Some(id), Some(label), None) => vec![(id, label)],
        (None, None, Some(batch)) => {
            if batch.len() > MAX_LABELS {
                return Err(ApiError::invalid(format!(
                    "`labels` has {} items; send at most {MAX_LABELS} per request",
                    batch.len()
                )));
            }
            batch.into_iter().map(|l| (l.request_id, l.label)).collect()
        }
        (None, None, None) => {
            return Err(ApiError::invalid(
                "send `request_id` and `label`, or `labels`: [{request_id, label}, …]",
            ));
        }
        (Some(_), None, _) => return Err(ApiError::missing("label")),
        (None, Some(_), _) => return Err(ApiError::missing("request_id")),
        _ => {
            return Err(ApiError::invalid(
                "send either `request_id` and `label` or `labels`, not both",
            ));
        }
    };
    let stored = s.store.put_feedback(deployment, labels).await?;
    Ok(Json(json!({ "stored": stored })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    deployment: Option<String>,
}

/// `GET /api/kiln/feedback?deployment=NAME`: the labels received for a deployment.
async fn list_feedback(
    State(s): State<Arc<AppState>>,
    Msg { body, .. }: Msg<ListQuery>,
) -> ApiResult<Json<Value>> {
    let deployment = required(&body.deployment, "deployment")?;
    let labels = s.store.feedback(deployment).await?;
    Ok(Json(json!({ "labels": labels })))
}
