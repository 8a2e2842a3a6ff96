//! The `mlflow-artifacts` proxy (streaming upload, download, listing, delete) and the
//! run-scoped `artifacts/list`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures::TryStreamExt;
use kiln_store::FileInfo;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::Msg;

/// Routes under `/api/2.0/mlflow-artifacts`.
pub fn proxy() -> Router<Arc<AppState>> {
    Router::new().route("/artifacts", get(list)).route(
        "/artifacts/{*path}",
        get(download).put(upload).delete(delete),
    )
}

/// `GET /api/2.0/mlflow/artifacts/list?run_id&path`.
pub fn run_listing() -> Router<Arc<AppState>> {
    Router::new().route("/artifacts/list", get(list_run))
}

async fn upload(
    State(s): State<Arc<AppState>>,
    Path(path): Path<String>,
    req: Request,
) -> ApiResult<Json<Value>> {
    let body = req.into_body().into_data_stream();
    s.artifacts.put_stream(&path, body).await?;
    Ok(Json(json!({})))
}

async fn download(State(s): State<Arc<AppState>>, Path(path): Path<String>) -> ApiResult<Response> {
    let (size, stream) = s.artifacts.get_stream(&path).await?;
    let body = Body::from_stream(stream.map_err(std::io::Error::other));
    let name = path
        .rsplit('/')
        .next()
        .unwrap_or("artifact")
        .replace('"', "");
    Ok((
        [
            (header::CONTENT_TYPE, content_type(&path).to_string()),
            (header::CONTENT_LENGTH, size.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        body,
    )
        .into_response())
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "txt" | "log" | "md" | "yaml" | "yml" | "MLmodel" => "text/plain",
        "json" => "application/json",
        "html" => "text/html",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "svg" => "image/svg+xml",
        _ => "application/octet-stream",
    }
}

async fn delete(
    State(s): State<Arc<AppState>>,
    Path(path): Path<String>,
) -> ApiResult<Json<Value>> {
    s.artifacts.delete(&path).await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
struct ListQuery {
    path: Option<String>,
}

/// Lists a directory with base names, as MLflow's proxy does; the client joins them to
/// the directory it asked for.
async fn list(
    State(s): State<Arc<AppState>>,
    Msg { body, .. }: Msg<ListQuery>,
) -> ApiResult<Json<Value>> {
    let dir = body.path.unwrap_or_default();
    if !dir.trim_matches('/').is_empty() {
        kiln_store::artifacts::artifact_path(&dir)?;
        if s.artifacts.is_file(&dir).await? {
            // Listing a file lists nothing, as in MLflow's local repository.
            return Ok(Json(json!({ "files": [] })));
        }
    }
    let files: Vec<FileInfo> = s
        .artifacts
        .list(&dir)
        .await?
        .into_iter()
        .map(|f| FileInfo {
            path: f.path.rsplit('/').next().unwrap_or(&f.path).to_string(),
            ..f
        })
        .collect();
    Ok(Json(json!({ "files": files })))
}

#[derive(Deserialize)]
struct RunListQuery {
    run_id: Option<String>,
    run_uuid: Option<String>,
    path: Option<String>,
}

/// Lists a run's artifacts with paths relative to the run's artifact root.
async fn list_run(
    State(s): State<Arc<AppState>>,
    Msg { body, .. }: Msg<RunListQuery>,
) -> ApiResult<Json<Value>> {
    let run_id = body
        .run_id
        .or(body.run_uuid)
        .filter(|r| !r.is_empty())
        .ok_or_else(|| ApiError::missing("run_id"))?;
    let run = s.store.get_run(&run_id).await?;
    list_under_root(&s, run.info.artifact_uri, body.path.as_deref()).await
}

/// Lists directory `sub` under an artifact root URI (a run's or a logged model's), with
/// paths relative to that root, as `{"root_uri", "files"}`.
pub(crate) async fn list_under_root(
    s: &AppState,
    root_uri: String,
    sub: Option<&str>,
) -> ApiResult<Json<Value>> {
    let Some(root) = root_uri.strip_prefix("mlflow-artifacts:") else {
        // Artifacts the client wrote directly (e.g. to s3://) are not visible to the server.
        return Ok(Json(json!({ "root_uri": root_uri, "files": [] })));
    };
    let root = root.trim_matches('/').to_string();
    let sub = sub.unwrap_or("").trim_matches('/');
    let dir = if sub.is_empty() {
        root.clone()
    } else {
        format!("{root}/{sub}")
    };
    kiln_store::artifacts::artifact_path(&dir)?;
    let prefix = format!("{root}/");
    let files: Vec<FileInfo> = s
        .artifacts
        .list(&dir)
        .await?
        .into_iter()
        .map(|f| FileInfo {
            path: f.path.strip_prefix(&prefix).unwrap_or(&f.path).to_string(),
            ..f
        })
        .collect();
    Ok(Json(json!({ "root_uri": root_uri, "files": files })))
}
