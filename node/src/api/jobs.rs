//! `/api/v1/jobs`: list, create, get, update and delete jobs.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use raftcron_client::{
    Consistency, CreateJob, ErrorBody, Job, JobEnvelope, JobList, ListQuery, OkResponse, Run, RunEnvelope, RunList,
    UpdateJob,
};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::api::auth::Caller;
use crate::api::error::{ApiError, ApiResult};
use crate::api::{check_page, ApiJson, AppState};
use crate::clock::ms_to_utc;
use crate::clock::Clock;
use crate::crypto::Keyring;
use crate::executor::ssrf;
use crate::ids::JobId;
use crate::model::apikey::Scope;
use crate::model::job::{JobPatch, JobRecord, JobSpec};
use crate::model::run::{FireState, RunRecord};
use crate::state::{read, CommandBody, CommandResult, Rejection};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get_one, update, delete))
        .routes(routes!(runs))
        .routes(routes!(trigger))
}

/// `?consistency=` on single-resource reads.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ReadQuery {
    #[serde(default)]
    pub consistency: Option<Consistency>,
}

fn parse_id(raw: &str) -> ApiResult<JobId> {
    Uuid::parse_str(raw).map(JobId).map_err(|_| ApiError::not_found(format!("job {raw:?} not found")))
}

/// The wire view of a stored job; `now_ms` decides `next_run_at`. Header values are masked;
/// the body is opened.
pub fn job_view(r: &JobRecord, fs: Option<&FireState>, now_ms: i64, keyring: &Keyring) -> Job {
    let body = match r.spec.open_body(Some(keyring), &r.tenant, r.id) {
        Ok(b) => b.map(|b| b.as_str().to_owned()),
        Err(e) => {
            tracing::warn!(job = %r.id, error = %e, "cannot open a job's body for an answer");
            None
        }
    };
    let next_run_at =
        if r.spec.is_active { r.spec.schedule().and_then(|s| s.next_after(ms_to_utc(now_ms))) } else { None };
    Job {
        id: r.id.0,
        name: r.spec.name.clone(),
        url: r.spec.url.clone(),
        method: r.spec.method.as_str().to_string(),
        cron_expression: r.spec.cron_expression.clone(),
        timezone: r.spec.timezone.clone(),
        headers: r.spec.masked_headers(),
        body,
        timeout_seconds: r.spec.timeout_seconds,
        max_retries: r.spec.max_retries,
        retry_delay_seconds: r.spec.retry_delay_seconds,
        is_active: r.spec.is_active,
        notify_on_failure: r.spec.notify_on_failure,
        notify_after_failures: r.spec.notify_after_failures,
        next_run_at,
        last_run_at: fs.and_then(|f| f.last_run_at_ms).map(ms_to_utc),
        last_status: fs.and_then(|f| f.last_status).map(|s| s.as_str().to_string()),
        consecutive_failures: fs.map_or(0, |f| f.consecutive_failures),
        starting_deadline_seconds: r.spec.starting_deadline_seconds,
        concurrency_policy: r.spec.concurrency_policy.as_str().to_string(),
        delivery: r.spec.delivery.as_str().to_string(),
        follow_redirects: r.spec.follow_redirects,
        created_at: ms_to_utc(r.created_at_ms),
        updated_at: ms_to_utc(r.updated_at_ms),
    }
}

/// Seals the header values and body a patch brings.
fn seal_patch(state: &AppState, patch: &mut JobPatch, job: &JobRecord) -> ApiResult<()> {
    let had_headers = patch.headers.is_some();
    let mut probe = JobSpec { headers: patch.headers.take().unwrap_or_default(), body: None, ..job.spec.clone() };
    probe.body = patch.body.clone().flatten();
    probe.seal(&state.keyring, &job.tenant, job.id).map_err(|e| ApiError::internal(format!("sealing secrets: {e}")))?;
    if had_headers {
        patch.headers = Some(probe.headers);
    }
    if let Some(b) = &mut patch.body {
        *b = probe.body;
    }
    Ok(())
}

/// The tenant's `min_interval_seconds` quota, judged over the schedule's next fires.
fn check_interval(state: &AppState, caller: &Caller, spec: &JobSpec) -> ApiResult<()> {
    let Some(min) = read::tenant(&state.cluster.store, &caller.key.tenant)?.and_then(|t| t.min_interval_seconds) else {
        return Ok(());
    };
    let Some(schedule) = spec.schedule() else { return Ok(()) };
    let now = ms_to_utc(state.cluster.clock().now_ms());
    match schedule.min_interval_seconds(now, 400) {
        Some(gap) if gap < i64::from(min) => Err(ApiError::new(
            raftcron_client::ErrorCode::IntervalTooShort,
            format!("this schedule fires {gap} s apart; this tenant allows at least {min} s between fires"),
        )),
        _ => Ok(()),
    }
}

/// The SSRF guard at create and update time (it runs again at fire time).
fn check_target(state: &AppState, url: &str) -> ApiResult<()> {
    ssrf::check_url(url, state.allow_private_targets).map(|_| ()).map_err(|e| {
        state.metrics.executor.ssrf_refusals.inc();
        ApiError::validation(format!("url: {e} (a job may only call public addresses)"))
    })
}

fn job_result(state: &AppState, result: CommandResult) -> ApiResult<Job> {
    match result {
        CommandResult::Job(r) => {
            let fs = read::fire_state(&state.cluster.store, &r.tenant, r.id)?;
            Ok(job_view(&r, fs.as_ref(), state.cluster.clock().now_ms(), &state.keyring))
        }
        CommandResult::Rejected(Rejection::JobNotFound { id }) => {
            Err(ApiError::not_found(format!("job {id} not found")))
        }
        CommandResult::Rejected(Rejection::JobExists { id }) => {
            Err(ApiError::new(raftcron_client::ErrorCode::Conflict, format!("job {id} already exists")))
        }
        CommandResult::Rejected(Rejection::PlanLimitReached { max }) => Err(ApiError::new(
            raftcron_client::ErrorCode::PlanLimitReached,
            format!("this tenant may have at most {max} jobs; delete one or ask for a higher max_jobs"),
        )),
        other => Err(ApiError::internal(format!("unexpected apply result {other:?}"))),
    }
}

/// Lists the jobs of the key's tenant, oldest first (`jobs:read`).
#[utoipa::path(get, path = "/api/v1/jobs", operation_id = "list_jobs", tag = "jobs", params(ListQuery), responses(
    (status = 200, description = "A page of jobs", body = JobList),
    (status = 400, description = "VALIDATION_ERROR (page, page_size) or BAD_REQUEST (query)", body = ErrorBody),
))]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<JobList>> {
    caller.require(Scope::JobsRead)?;
    let Query(q) = query?;
    let (page, page_size) = check_page(q.page, q.page_size)?;
    state.cluster.read_barrier(q.consistency.unwrap_or_default()).await?;
    let (records, total_count) = read::jobs_page(&state.cluster.store, &caller.key.tenant, page, page_size)?;
    let now = state.cluster.clock().now_ms();
    let mut jobs = Vec::with_capacity(records.len());
    for r in &records {
        let fs = read::fire_state(&state.cluster.store, &r.tenant, r.id)?;
        jobs.push(job_view(r, fs.as_ref(), now, &state.keyring));
    }
    Ok(Json(JobList { jobs, page, page_size, total_count }))
}

/// Creates a job in the key's tenant (`jobs:write`).
#[utoipa::path(post, path = "/api/v1/jobs", operation_id = "create_job",
    tag = "jobs", request_body = CreateJob, responses(
    (status = 201, description = "The job", body = JobEnvelope),
    (status = 400, description = "VALIDATION_ERROR or INVALID_JSON", body = ErrorBody),
    (status = 403, description = "PLAN_LIMIT_REACHED, INTERVAL_TOO_SHORT or ACCESS_DENIED", body = ErrorBody),
    (status = 413, description = "PAYLOAD_TOO_LARGE", body = ErrorBody),
    (status = 415, description = "UNSUPPORTED_MEDIA_TYPE", body = ErrorBody),
    (status = 504, description = "OUTCOME_UNKNOWN: read before retrying", body = ErrorBody),
))]
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<CreateJob>,
) -> ApiResult<impl IntoResponse> {
    caller.require(Scope::JobsWrite)?;
    let mut spec = JobSpec::from_create(req).map_err(|e| ApiError::validation(e.to_string()))?;
    check_target(&state, &spec.url)?;
    check_interval(&state, &caller, &spec)?;
    let (id, tenant) = (JobId::generate(), caller.key.tenant.clone());
    // Secrets leave this node (to the leader, the log, the peers) sealed only.
    spec.seal(&state.keyring, &tenant, id).map_err(|e| ApiError::internal(format!("sealing secrets: {e}")))?;
    let body = CommandBody::CreateJob { id, tenant, spec };
    let job = job_result(&state, state.cluster.write_as(body, Some(caller.actor())).await?)?;
    Ok((StatusCode::CREATED, Json(JobEnvelope { job })))
}

/// One job (`jobs:read`).
#[utoipa::path(get, path = "/api/v1/jobs/{id}", operation_id = "get_job", tag = "jobs",
    params(("id" = String, Path, description = "The job's id (a UUID)"), ReadQuery), responses(
    (status = 200, description = "The job", body = JobEnvelope),
    (status = 404, description = "NOT_FOUND", body = ErrorBody),
))]
async fn get_one(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
    query: Result<Query<ReadQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<JobEnvelope>> {
    caller.require(Scope::JobsRead)?;
    let Query(q) = query?;
    let id = parse_id(&raw)?;
    state.cluster.read_barrier(q.consistency.unwrap_or_default()).await?;
    let record = read::job(&state.cluster.store, &caller.key.tenant, id)?
        .ok_or_else(|| ApiError::not_found(format!("job {id} not found")))?;
    let fs = read::fire_state(&state.cluster.store, &caller.key.tenant, id)?;
    Ok(Json(JobEnvelope { job: job_view(&record, fs.as_ref(), state.cluster.clock().now_ms(), &state.keyring) }))
}

/// Changes a job: absent fields keep their value (`jobs:write`).
#[utoipa::path(patch, path = "/api/v1/jobs/{id}", operation_id = "update_job", tag = "jobs",
    params(("id" = String, Path, description = "The job's id (a UUID)")), request_body = UpdateJob, responses(
    (status = 200, description = "The job as changed", body = JobEnvelope),
    (status = 400, description = "VALIDATION_ERROR or INVALID_JSON", body = ErrorBody),
    (status = 403, description = "INTERVAL_TOO_SHORT or ACCESS_DENIED", body = ErrorBody),
    (status = 404, description = "NOT_FOUND", body = ErrorBody),
    (status = 504, description = "OUTCOME_UNKNOWN: read before retrying", body = ErrorBody),
))]
async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
    ApiJson(req): ApiJson<UpdateJob>,
) -> ApiResult<Json<JobEnvelope>> {
    caller.require(Scope::JobsWrite)?;
    let id = parse_id(&raw)?;
    // Validate against the latest committed version, so the merged job is checked as a whole.
    state.cluster.read_barrier(Consistency::Linearizable).await?;
    let current = read::job(&state.cluster.store, &caller.key.tenant, id)?
        .ok_or_else(|| ApiError::not_found(format!("job {id} not found")))?;
    let mut patch = current.spec.validate_update(req).map_err(|e| ApiError::validation(e.to_string()))?;
    seal_patch(&state, &mut patch, &current)?;
    if let Some(url) = &patch.url {
        check_target(&state, url)?;
    }
    if patch.cron_expression.is_some() || patch.timezone.is_some() {
        let mut merged = current.spec.clone();
        merged.apply(patch.clone());
        check_interval(&state, &caller, &merged)?;
    }
    let body = CommandBody::UpdateJob { id, tenant: caller.key.tenant.clone(), patch };
    let job = job_result(&state, state.cluster.write_as(body, Some(caller.actor())).await?)?;
    Ok(Json(JobEnvelope { job }))
}

/// Deletes a job and its runs (`jobs:write`).
#[utoipa::path(delete, path = "/api/v1/jobs/{id}", operation_id = "delete_job", tag = "jobs",
    params(("id" = String, Path, description = "The job's id (a UUID)")), responses(
    (status = 200, description = "Deleted", body = OkResponse),
    (status = 404, description = "NOT_FOUND", body = ErrorBody),
    (status = 504, description = "OUTCOME_UNKNOWN: read before retrying", body = ErrorBody),
))]
async fn delete(State(state): State<AppState>, caller: Caller, Path(raw): Path<String>) -> ApiResult<Json<OkResponse>> {
    caller.require(Scope::JobsWrite)?;
    let id = parse_id(&raw)?;
    let body = CommandBody::DeleteJob { id, tenant: caller.key.tenant.clone() };
    match state.cluster.write_as(body, Some(caller.actor())).await? {
        CommandResult::JobDeleted { .. } => Ok(Json(OkResponse { ok: true })),
        CommandResult::Rejected(Rejection::JobNotFound { id }) => {
            Err(ApiError::not_found(format!("job {id} not found")))
        }
        other => Err(ApiError::internal(format!("unexpected apply result {other:?}"))),
    }
}

fn run_view(r: &RunRecord) -> Run {
    Run {
        id: r.fire_id.to_string(),
        scheduled_at: ms_to_utc(r.scheduled_at_ms),
        started_at: r.started_at_ms.map(ms_to_utc),
        finished_at: r.finished_at_ms.map(ms_to_utc),
        lateness_ms: r.started_at_ms.map(|s| s - r.scheduled_at_ms),
        attempts: r.attempts,
        node_id: r.node,
        status: r.status.as_str().to_string(),
        http_status: r.http_status,
        duration_ms: r.started_at_ms.zip(r.finished_at_ms).map(|(s, f)| f - s),
        error: r.error.clone(),
        response_body: r.body_prefix.clone(),
    }
}

/// A job's recorded runs, newest first (`runs:read`).
#[utoipa::path(get, path = "/api/v1/jobs/{id}/runs", operation_id = "list_runs", tag = "runs",
    params(("id" = String, Path, description = "The job's id (a UUID)"), ListQuery), responses(
    (status = 200, description = "A page of runs", body = RunList),
    (status = 400, description = "VALIDATION_ERROR (page, page_size) or BAD_REQUEST (query)", body = ErrorBody),
    (status = 404, description = "NOT_FOUND", body = ErrorBody),
))]
async fn runs(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<RunList>> {
    caller.require(Scope::RunsRead)?;
    let Query(q) = query?;
    let (page, page_size) = check_page(q.page, q.page_size)?;
    let id = parse_id(&raw)?;
    state.cluster.read_barrier(q.consistency.unwrap_or_default()).await?;
    if read::job(&state.cluster.store, &caller.key.tenant, id)?.is_none() {
        return Err(ApiError::not_found(format!("job {id} not found")));
    }
    let (records, total_count) = read::runs_page(&state.cluster.store, &caller.key.tenant, id, page, page_size)?;
    Ok(Json(RunList { runs: records.iter().map(run_view).collect(), page, page_size, total_count }))
}

/// Runs a job now (202): its shard's owner sends it once, with a fire id of its own
/// (`jobs:trigger`).
#[utoipa::path(post, path = "/api/v1/jobs/{id}/trigger", operation_id = "trigger_job", tag = "jobs",
    params(("id" = String, Path, description = "The job's id (a UUID)")), responses(
    (status = 202, description = "The run, as it starts", body = RunEnvelope),
    (status = 404, description = "NOT_FOUND", body = ErrorBody),
    (status = 504, description = "OUTCOME_UNKNOWN: read before retrying", body = ErrorBody),
))]
async fn trigger(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
) -> ApiResult<impl IntoResponse> {
    caller.require(Scope::JobsTrigger)?;
    let id = parse_id(&raw)?;
    let body = CommandBody::Trigger { id, tenant: caller.key.tenant.clone(), trigger: Uuid::new_v4() };
    match state.cluster.write_as(body, Some(caller.actor())).await? {
        CommandResult::Triggered { fire_id, at_ms } => {
            let run = RunRecord {
                fire_id,
                scheduled_at_ms: at_ms,
                started_at_ms: None,
                finished_at_ms: None,
                attempts: 0,
                node: None,
                status: crate::model::run::RunStatus::Running,
                http_status: None,
                error: None,
                body_prefix: None,
            };
            Ok((StatusCode::ACCEPTED, Json(RunEnvelope { run: run_view(&run) })))
        }
        CommandResult::Rejected(Rejection::JobNotFound { id }) => {
            Err(ApiError::not_found(format!("job {id} not found")))
        }
        other => Err(ApiError::internal(format!("unexpected apply result {other:?}"))),
    }
}
