//! `GET /api/v1/audit` (`cluster:admin`): the trail of changes to keys, tenants and jobs.

use axum::extract::{Query, State};
use axum::Json;
use raftcron_client::{AuditEntry, AuditList, Consistency, ErrorBody};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::auth::Caller;
use crate::api::error::ApiResult;
use crate::api::{check_page, AppState};
use crate::clock::ms_to_utc;
use crate::ids::TenantId;
use crate::model::apikey::Scope;
use crate::model::audit::AuditRecord;
use crate::state::read;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    /// 1 or more (default 1).
    page: Option<u32>,
    /// 1 to 500 (default 50).
    page_size: Option<u32>,
    consistency: Option<Consistency>,
    /// Only this tenant's entries.
    tenant: Option<String>,
}

fn view(e: &AuditRecord) -> AuditEntry {
    AuditEntry {
        seq: e.seq,
        at: ms_to_utc(e.at_ms),
        actor_key_id: e.actor.key_id.map_or_else(|| "system".to_string(), |k| k.to_string()),
        actor_prefix: e.actor.prefix.clone(),
        tenant: e.tenant.0.clone(),
        client_ip: e.actor.client_ip.clone(),
        action: e.action.clone(),
        target_id: e.target_id.clone(),
        detail: e.detail.clone(),
    }
}

/// The audit trail, newest first (`cluster:admin`).
#[utoipa::path(get, path = "/api/v1/audit", operation_id = "list_audit", tag = "audit", params(AuditQuery), responses(
    (status = 200, description = "A page of entries", body = AuditList),
    (status = 400, description = "VALIDATION_ERROR or BAD_REQUEST", body = ErrorBody),
))]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<AuditList>> {
    caller.require(Scope::ClusterAdmin)?;
    let Query(q) = query?;
    let (page, page_size) = check_page(q.page, q.page_size)?;
    state.cluster.read_barrier(q.consistency.unwrap_or_default()).await?;
    let tenant = q.tenant.map(TenantId);
    let (entries, total_count) = read::audit_page(&state.cluster.store, tenant.as_ref(), page, page_size)?;
    Ok(Json(AuditList { entries: entries.iter().map(view).collect(), page, page_size, total_count }))
}
