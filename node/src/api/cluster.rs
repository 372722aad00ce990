//! `/api/v1/cluster`, membership changes, and the health probes.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use raftcron_client::{AddNode, ClusterEnvelope, HealthStatus, OkResponse, ShardInfo, ShardList};

use crate::api::auth::Caller;
use crate::api::error::{ApiError, ApiResult};
use crate::api::{ApiJson, AppState};
use crate::model::apikey::Scope;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/cluster", get(status))
        .route("/api/v1/cluster/nodes", post(add_node))
        .route("/api/v1/cluster/shards", get(shards))
        .route("/api/v1/cluster/nodes/{id}", delete(remove_node))
}

async fn status(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<ClusterEnvelope>> {
    caller.require(Scope::ClusterRead)?;
    let mut cluster = state.cluster.status();
    cluster.master_key_id = Some(state.keyring.current_id().to_string());
    cluster.secrets_to_reseal = state.reseal.stale_jobs();
    Ok(Json(ClusterEnvelope { cluster }))
}

fn check_addr(addr: &str) -> ApiResult<()> {
    addr.parse::<std::net::SocketAddr>()
        .map(|_| ())
        .or_else(|_| {
            let (host, port) = addr.rsplit_once(':').ok_or(())?;
            if host.is_empty() || port.parse::<u16>().is_err() {
                return Err(());
            }
            Ok(())
        })
        .map_err(|()| ApiError::validation(format!("addr: expected HOST:PORT, got {addr:?}")))
}

async fn add_node(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<AddNode>,
) -> ApiResult<Json<ClusterEnvelope>> {
    caller.require(Scope::ClusterAdmin)?;
    if req.node_id == 0 {
        return Err(ApiError::validation("node_id: must be 1 or more"));
    }
    check_addr(&req.addr)?;
    state.cluster.add_node(req.node_id, req.addr).await?;
    Ok(Json(ClusterEnvelope { cluster: state.cluster.status() }))
}

async fn remove_node(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
) -> ApiResult<Json<OkResponse>> {
    caller.require(Scope::ClusterAdmin)?;
    let id: u64 = raw.parse().map_err(|_| ApiError::not_found(format!("node {raw:?} not found")))?;
    state.cluster.remove_node(id).await?;
    Ok(Json(OkResponse { ok: true }))
}

/// The process is alive and serving HTTP.
pub async fn healthz() -> Json<HealthStatus> {
    Json(HealthStatus { status: "ok".into(), reason: None })
}

/// Member of a cluster with a known leader, caught up with its log.
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    match state.cluster.readiness() {
        Ok(()) => (StatusCode::OK, Json(HealthStatus { status: "ready".into(), reason: None })),
        Err(reason) => {
            (StatusCode::SERVICE_UNAVAILABLE, Json(HealthStatus { status: "not_ready".into(), reason: Some(reason) }))
        }
    }
}

async fn shards(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<ShardList>> {
    caller.require(Scope::ClusterRead)?;
    let a = crate::state::firing::assignment(&state.cluster.store)?;
    // Best effort: without a leader the assignment is still worth showing.
    let ages = state.cluster.lease_ages().await.unwrap_or_default();
    let lease_ms = crate::scheduler::SchedulerConfig::default().lease.as_millis() as i64;
    let now = state.cluster.clock().now_ms();
    let expiry = |node: Option<u64>| {
        let age = *ages.get(&node?)? as i64;
        (age < lease_ms).then(|| crate::clock::ms_to_utc(now - age + lease_ms))
    };
    let shards: Vec<ShardInfo> = a
        .owners
        .iter()
        .enumerate()
        .map(|(i, o)| ShardInfo { shard: i as u32, node_id: o.node, epoch: o.epoch, lease_expires_at: expiry(o.node) })
        .collect();
    let per_node = a.counts().into_iter().map(|(n, c)| (n, c as u32)).collect();
    Ok(Json(ShardList { shard_count: a.shard_count(), shards, per_node }))
}
