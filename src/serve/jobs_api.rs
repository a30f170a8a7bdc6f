//! The handlers of `/v1/jobs*`: submit, list, read, rejected documents,
//! cancel and resume. Each checks its caller first (role, clusters, owner)
//! and maps every failure to an [`ApiError`].

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::{Action, Caller};
use super::db::{JobRecord, NewJob};
use super::error::ApiError;
use super::options::{self, archive_location, check_archive_name, Context};
use super::status::{Kind, Status};
use super::AppState;

/// Largest request body of the job routes.
pub const MAX_BODY: usize = 1 << 20;

/// `POST /v1/jobs`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Submit {
    kind: String,
    cluster: String,
    target_cluster: Option<String>,
    archive: Option<String>,
    #[serde(default)]
    options: Value,
}

/// The answer naming a job: `status` with the job and its `Location`.
fn job_answer(status: StatusCode, job: &JobRecord) -> Response {
    let mut response = (status, Json(job.to_json())).into_response();
    if let Ok(location) = format!("/v1/jobs/{}", job.id).parse() {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

pub async fn submit(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    // Too large a body (over MAX_BODY) is 413, said as JSON.
    let body = body.map_err(|e| ApiError::new(e.status(), e.body_text()))?;
    let request: Submit = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid job request: {e}")))?;
    let kind = Kind::parse(&request.kind).ok_or_else(|| {
        ApiError::bad_request(format!(
            "unknown kind {:?}: export, import, verify or copy",
            request.kind
        ))
    })?;
    let action = match kind {
        Kind::Export => Action::SubmitExport,
        Kind::Import => Action::SubmitImport,
        Kind::Verify => Action::SubmitVerify,
        Kind::Copy => Action::SubmitCopy,
    };
    let mut clusters = vec![request.cluster.as_str()];
    clusters.extend(request.target_cluster.as_deref());
    caller.check(action, &clusters)?;
    let key = match headers.get("idempotency-key") {
        Some(v) => Some(
            v.to_str()
                .ok()
                .filter(|k| !k.is_empty() && k.len() <= 200)
                .ok_or_else(|| {
                    ApiError::bad_request("Idempotency-Key: 1 to 200 visible characters")
                })?
                .to_string(),
        ),
        None => None,
    };
    // A retried request answers with the job it created, whatever has
    // happened since (its archive may exist by now).
    let db = state.db.clone();
    if let Some(found) = db
        .by_key(&caller.name, key.as_deref())
        .map_err(ApiError::internal)?
    {
        return Ok(job_answer(StatusCode::ACCEPTED, &found));
    }
    let cluster_of = |name: &str| {
        state
            .config
            .clusters
            .get(name)
            .ok_or_else(|| ApiError::bad_request(format!("unknown cluster {name:?}")))
    };
    let cluster = cluster_of(&request.cluster)?;
    let target = match (kind, request.target_cluster.as_deref()) {
        (Kind::Copy, Some(name)) => Some(cluster_of(name)?),
        (Kind::Copy, None) => return Err(ApiError::bad_request("a copy job needs target_cluster")),
        (_, Some(_)) => {
            return Err(ApiError::bad_request(format!(
                "target_cluster is for copy jobs, not {}",
                kind.as_str()
            )))
        }
        (_, None) => None,
    };
    let archive = match (kind, request.archive.as_deref()) {
        (Kind::Copy, Some(_)) => return Err(ApiError::bad_request("a copy job has no archive")),
        (Kind::Copy, None) => None,
        (_, None) => {
            return Err(ApiError::bad_request(format!(
                "an {} job needs an archive name",
                kind.as_str()
            )))
        }
        (_, Some(name)) => {
            check_archive_name(name).map_err(|e| ApiError::bad_request(e.to_string()))?;
            Some(archive_location(&state.config.archives, name))
        }
    };
    // Checked now, resolved again when it runs (against the config of
    // that moment).
    let scratch = options::job_dir(&state.config.state, "new");
    options::prepare(
        kind,
        &request.options,
        &Context {
            cluster,
            target_cluster: target,
            archive: archive.clone(),
            job_dir: &scratch,
        },
    )
    .map_err(|e| ApiError::bad_request(e.to_string()))?;
    if kind == Kind::Export {
        if let Some(name) = request.archive.as_deref() {
            if super::archives::taken(&state.config.archives, name).await? {
                return Err(ApiError::conflict(format!(
                    "archive {name:?} exists: export to a new name"
                )));
            }
        }
    }
    let (job, created) = db
        .insert(NewJob {
            kind,
            cluster: request.cluster,
            target_cluster: request.target_cluster,
            archive: request.archive,
            options: if request.options.is_null() {
                json!({})
            } else {
                request.options
            },
            created_by: caller.name.clone(),
            idempotency_key: key,
        })
        .map_err(ApiError::internal)?;
    if created {
        state.runner.enqueue(job.id.clone());
    }
    Ok(job_answer(StatusCode::ACCEPTED, &job))
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    status: Option<String>,
    kind: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    caller.check(Action::ReadJobs, &[])?;
    let status = query
        .status
        .as_deref()
        .map(|s| {
            Status::parse(s).ok_or_else(|| ApiError::bad_request(format!("unknown status {s:?}")))
        })
        .transpose()?;
    let kind = query
        .kind
        .as_deref()
        .map(|k| Kind::parse(k).ok_or_else(|| ApiError::bad_request(format!("unknown kind {k:?}"))))
        .transpose()?;
    let jobs = state.db.list(status, kind).map_err(ApiError::internal)?;
    let jobs: Vec<Value> = jobs
        .into_iter()
        .map(|j| fresh(&state, j).to_json())
        .collect();
    Ok(Json(json!({ "jobs": jobs })))
}

/// A job with the in-memory progress when it runs.
fn fresh(state: &AppState, mut job: JobRecord) -> JobRecord {
    if !job.status.is_final() {
        if let Some(progress) = state.runner.progress(&job.id) {
            job.progress = progress;
        }
    }
    job
}

fn find(state: &AppState, id: &str) -> Result<JobRecord, ApiError> {
    state
        .db
        .get(id)
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found(format!("no job {id:?}")))
}

pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.check(Action::ReadJobs, &[])?;
    let job = find(&state, &id)?;
    Ok(Json(fresh(&state, job).to_json()))
}

pub async fn errors(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    caller.check(Action::ReadJobs, &[])?;
    let job = find(&state, &id)?;
    let file = options::job_dir(&state.config.state, &job.id).join("errors.ndjson");
    let body = match tokio::fs::read(&file).await {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            return Err(ApiError::internal(format!(
                "reading the rejected documents: {e}"
            )))
        }
    };
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response())
}

pub async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let job = find(&state, &id)?;
    caller.check_control(&job.created_by)?;
    if job.status != Status::Cancelling && !state.runner.cancel(&id).map_err(ApiError::internal)? {
        let now = find(&state, &id)?;
        if now.status != Status::Cancelling {
            return Err(ApiError::conflict(format!(
                "job {id} is {}: only queued or running jobs can be cancelled",
                now.status.as_str()
            )));
        }
    }
    Ok(job_answer(StatusCode::ACCEPTED, &find(&state, &id)?))
}

pub async fn resume(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let job = find(&state, &id)?;
    caller.check_control(&job.created_by)?;
    if !job.kind.resumable() {
        return Err(ApiError::conflict(format!(
            "{} jobs do not resume: submit a new one",
            job.kind.as_str()
        )));
    }
    let resumable = matches!(
        job.status,
        Status::Interrupted | Status::Failed | Status::Cancelled
    );
    if !resumable
        || !state
            .db
            .transition(&id, Status::Queued)
            .map_err(ApiError::internal)?
    {
        return Err(ApiError::conflict(format!(
            "job {id} is {}: only interrupted, failed or cancelled jobs resume",
            find(&state, &id)?.status.as_str()
        )));
    }
    state.runner.enqueue(id.clone());
    Ok(job_answer(StatusCode::ACCEPTED, &find(&state, &id)?))
}
