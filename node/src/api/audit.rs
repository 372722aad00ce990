//! `GET /api/v1/audit` (`cluster:admin`): the trail of changes to keys, tenants and jobs.

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use raftcron_client::{AuditEntry, AuditList, Consistency};
use serde::Deserialize;

use crate::api::auth::Caller;
use crate::api::error::ApiResult;
use crate::api::{check_page, AppState};
use crate::clock::ms_to_utc;
use crate::ids::TenantId;
use crate::model::apikey::Scope;
use crate::model::audit::AuditRecord;
use crate::state::read;

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/audit", get(list))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    page: Option<u32>,
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
