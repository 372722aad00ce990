//! `/api/v1/tenants` (`cluster:admin`): the namespaces of keys and jobs, and their quotas.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use raftcron_client::{
    Consistency, CreateTenant, ErrorBody, ListQuery, Tenant, TenantEnvelope, TenantList, UpdateTenant,
};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::auth::Caller;
use crate::api::error::{ApiError, ApiResult};
use crate::api::{check_page, ApiJson, AppState};
use crate::clock::ms_to_utc;
use crate::ids::TenantId;
use crate::model::apikey::Scope;
use crate::model::tenant::{self, TenantPatch, TenantRecord};
use crate::state::{read, CommandBody, CommandResult, Rejection};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list, create)).routes(routes!(get_one, update, delete))
}

fn view(state: &AppState, t: &TenantRecord) -> ApiResult<Tenant> {
    Ok(Tenant {
        id: t.id.0.clone(),
        name: t.name.clone(),
        max_jobs: t.max_jobs,
        min_interval_seconds: t.min_interval_seconds,
        rate_limit_per_minute: t.rate_limit_per_minute,
        job_count: read::job_count(&state.cluster.store, &t.id)?,
        created_at: ms_to_utc(t.created_at_ms),
        updated_at: ms_to_utc(t.updated_at_ms),
    })
}

fn parse_id(raw: &str) -> ApiResult<TenantId> {
    tenant::check_id(raw).map_err(|_| ApiError::not_found(format!("tenant {raw:?} not found")))?;
    Ok(TenantId(raw.to_string()))
}

fn quotas(max_jobs: Option<u32>, min_interval: Option<u32>, rate: Option<u32>) -> ApiResult<()> {
    tenant::check_quota("max_jobs", max_jobs).map_err(ApiError::validation)?;
    tenant::check_quota("min_interval_seconds", min_interval).map_err(ApiError::validation)?;
    tenant::check_quota("rate_limit_per_minute", rate).map_err(ApiError::validation)?;
    Ok(())
}

fn tenant_result(state: &AppState, result: CommandResult) -> ApiResult<Tenant> {
    match result {
        CommandResult::Tenant(t) => view(state, &t),
        CommandResult::Rejected(Rejection::TenantNotFound { id }) => {
            Err(ApiError::not_found(format!("tenant {id} not found")))
        }
        CommandResult::Rejected(Rejection::TenantExists { id }) => {
            Err(ApiError::conflict(format!("tenant {id} already exists")))
        }
        other => Err(ApiError::internal(format!("unexpected apply result {other:?}"))),
    }
}

/// Lists the tenants (`cluster:admin`).
#[utoipa::path(get, path = "/api/v1/tenants", operation_id = "list_tenants",
    tag = "tenants", params(ListQuery), responses(
    (status = 200, description = "A page of tenants", body = TenantList),
    (status = 400, description = "VALIDATION_ERROR or BAD_REQUEST", body = ErrorBody),
))]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<TenantList>> {
    caller.require(Scope::ClusterAdmin)?;
    let Query(q) = query?;
    let (page, page_size) = check_page(q.page, q.page_size)?;
    state.cluster.read_barrier(q.consistency.unwrap_or_default()).await?;
    let all = read::tenants(&state.cluster.store)?;
    let skip = (page as usize - 1).saturating_mul(page_size as usize);
    let tenants = all.iter().skip(skip).take(page_size as usize).map(|t| view(&state, t)).collect::<ApiResult<_>>()?;
    Ok(Json(TenantList { tenants, page, page_size, total_count: all.len() as u64 }))
}

/// Creates a tenant (`cluster:admin`).
#[utoipa::path(post, path = "/api/v1/tenants", operation_id = "create_tenant",
    tag = "tenants", request_body = CreateTenant, responses(
    (status = 201, description = "The tenant", body = TenantEnvelope),
    (status = 400, description = "VALIDATION_ERROR or INVALID_JSON", body = ErrorBody),
    (status = 409, description = "CONFLICT: the tenant exists", body = ErrorBody),
    (status = 504, description = "OUTCOME_UNKNOWN: read before retrying", body = ErrorBody),
))]
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<CreateTenant>,
) -> ApiResult<impl IntoResponse> {
    caller.require(Scope::ClusterAdmin)?;
    tenant::check_id(&req.id).map_err(ApiError::validation)?;
    tenant::check_name(&req.name).map_err(ApiError::validation)?;
    quotas(req.max_jobs, req.min_interval_seconds, req.rate_limit_per_minute)?;
    let record = TenantRecord {
        id: TenantId(req.id),
        name: req.name.trim().to_string(),
        max_jobs: req.max_jobs,
        min_interval_seconds: req.min_interval_seconds,
        rate_limit_per_minute: req.rate_limit_per_minute,
        created_at_ms: 0,
        updated_at_ms: 0,
    };
    let result = state.cluster.write_as(CommandBody::CreateTenant { record }, Some(caller.actor())).await?;
    Ok((StatusCode::CREATED, Json(TenantEnvelope { tenant: tenant_result(&state, result)? })))
}

/// One tenant (`cluster:admin`).
#[utoipa::path(get, path = "/api/v1/tenants/{id}", operation_id = "get_tenant", tag = "tenants",
    params(("id" = String, Path, description = "The tenant's id")), responses(
    (status = 200, description = "The tenant", body = TenantEnvelope),
    (status = 404, description = "NOT_FOUND", body = ErrorBody),
))]
async fn get_one(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
) -> ApiResult<Json<TenantEnvelope>> {
    caller.require(Scope::ClusterAdmin)?;
    let id = parse_id(&raw)?;
    state.cluster.read_barrier(Consistency::Linearizable).await?;
    let t = read::tenant(&state.cluster.store, &id)?
        .ok_or_else(|| ApiError::not_found(format!("tenant {id} not found")))?;
    Ok(Json(TenantEnvelope { tenant: view(&state, &t)? }))
}

/// Changes a tenant's name or quotas; `null` removes a quota (`cluster:admin`).
#[utoipa::path(patch, path = "/api/v1/tenants/{id}", operation_id = "update_tenant", tag = "tenants",
    params(("id" = String, Path, description = "The tenant's id")), request_body = UpdateTenant, responses(
    (status = 200, description = "The tenant as changed", body = TenantEnvelope),
    (status = 400, description = "VALIDATION_ERROR or INVALID_JSON", body = ErrorBody),
    (status = 404, description = "NOT_FOUND", body = ErrorBody),
    (status = 504, description = "OUTCOME_UNKNOWN: read before retrying", body = ErrorBody),
))]
async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
    ApiJson(req): ApiJson<UpdateTenant>,
) -> ApiResult<Json<TenantEnvelope>> {
    caller.require(Scope::ClusterAdmin)?;
    let id = parse_id(&raw)?;
    if let Some(n) = &req.name {
        tenant::check_name(n).map_err(ApiError::validation)?;
    }
    quotas(req.max_jobs.flatten(), req.min_interval_seconds.flatten(), req.rate_limit_per_minute.flatten())?;
    let patch = TenantPatch {
        name: req.name.map(|n| n.trim().to_string()),
        max_jobs: req.max_jobs,
        min_interval_seconds: req.min_interval_seconds,
        rate_limit_per_minute: req.rate_limit_per_minute,
    };
    let result = state.cluster.write_as(CommandBody::UpdateTenant { id, patch }, Some(caller.actor())).await?;
    Ok(Json(TenantEnvelope { tenant: tenant_result(&state, result)? }))
}

/// `DELETE`: 204; only an empty tenant (its keys go with it); never the default tenant.
#[utoipa::path(delete, path = "/api/v1/tenants/{id}", operation_id = "delete_tenant", tag = "tenants",
    params(("id" = String, Path, description = "The tenant's id")), responses(
    (status = 204, description = "Deleted; every node refuses its keys", headers(
        ("Raftcron-Unconfirmed-Nodes" = String, description = "Nodes that had not applied the deletion within 2 s, comma-separated; absent when all had")
    )),
    (status = 404, description = "NOT_FOUND", body = ErrorBody),
    (status = 409, description = "CONFLICT: the tenant has jobs, or is the default tenant", body = ErrorBody),
    (status = 504, description = "OUTCOME_UNKNOWN: read before retrying", body = ErrorBody),
))]
async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
) -> ApiResult<(HeaderMap, StatusCode)> {
    caller.require(Scope::ClusterAdmin)?;
    let id = parse_id(&raw)?;
    match state.cluster.write_as(CommandBody::DeleteTenant { id }, Some(caller.actor())).await? {
        // Its keys went with it: answer once every node refuses them.
        CommandResult::TenantDeleted { .. } => Ok((crate::api::keys::spread(&state).await, StatusCode::NO_CONTENT)),
        CommandResult::Rejected(Rejection::TenantNotEmpty { id, jobs }) => {
            Err(ApiError::conflict(format!("tenant {id} still has {jobs} jobs; delete them first")))
        }
        CommandResult::Rejected(Rejection::DefaultTenant) => {
            Err(ApiError::conflict("the default tenant cannot be deleted"))
        }
        other => tenant_result(&state, other).map(|_| (HeaderMap::new(), StatusCode::NO_CONTENT)),
    }
}
