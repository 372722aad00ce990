//! `/api/v1/cluster`, membership changes, and the health probes.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use raftcron_client::{AddNode, ClusterEnvelope, ErrorBody, HealthStatus, OkResponse, ShardInfo, ShardList};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::auth::Caller;
use crate::api::error::{ApiError, ApiResult};
use crate::api::{ApiJson, AppState};
use crate::clock::Clock;
use crate::model::apikey::Scope;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(status))
        .routes(routes!(add_node))
        .routes(routes!(shards))
        .routes(routes!(remove_node))
        .routes(routes!(healthz))
        .routes(routes!(readyz))
}

/// This node's view of the cluster (`cluster:read`).
#[utoipa::path(get, path = "/api/v1/cluster", operation_id = "get_cluster", tag = "cluster", responses(
    (status = 200, description = "The answering node's view", body = ClusterEnvelope),
))]
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

/// Adds a node as a voter once it caught up with the log (`cluster:admin`).
#[utoipa::path(post, path = "/api/v1/cluster/nodes", operation_id = "add_node",
    tag = "cluster", request_body = AddNode, responses(
    (status = 200, description = "The cluster with the new member", body = ClusterEnvelope),
    (status = 400, description = "VALIDATION_ERROR or INVALID_JSON", body = ErrorBody),
    (status = 409, description = "CONFLICT: refused (a change in progress, or the node did not catch up)",
        body = ErrorBody),
    (status = 504, description = "OUTCOME_UNKNOWN: read before retrying", body = ErrorBody),
))]
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

/// Removes a member (`cluster:admin`).
#[utoipa::path(delete, path = "/api/v1/cluster/nodes/{id}", operation_id = "remove_node", tag = "cluster",
    params(("id" = u64, Path, description = "The node's id")), responses(
    (status = 200, description = "Removed", body = OkResponse),
    (status = 404, description = "NOT_FOUND", body = ErrorBody),
    (status = 409, description = "CONFLICT: not a member, or the last voter", body = ErrorBody),
    (status = 504, description = "OUTCOME_UNKNOWN: read before retrying", body = ErrorBody),
))]
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

/// The process is alive and serving HTTP (no key needed).
#[utoipa::path(get, path = "/healthz", operation_id = "healthz", tag = "probes", responses(
    (status = 200, description = "Alive", body = HealthStatus),
))]
pub async fn healthz() -> Json<HealthStatus> {
    Json(HealthStatus { status: "ok".into(), reason: None })
}

/// Member of a cluster with a known leader, caught up with its log (no key needed).
#[utoipa::path(get, path = "/readyz", operation_id = "readyz", tag = "probes", responses(
    (status = 200, description = "Ready", body = HealthStatus),
    (status = 503, description = "Not ready, and why", body = HealthStatus),
))]
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    match state.cluster.readiness() {
        Ok(()) => (StatusCode::OK, Json(HealthStatus { status: "ready".into(), reason: None })),
        Err(reason) => {
            (StatusCode::SERVICE_UNAVAILABLE, Json(HealthStatus { status: "not_ready".into(), reason: Some(reason) }))
        }
    }
}

/// Every shard's owner and lease (`cluster:read`).
#[utoipa::path(get, path = "/api/v1/cluster/shards", operation_id = "list_shards", tag = "cluster", responses(
    (status = 200, description = "The shard assignment", body = ShardList),
))]
async fn shards(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<ShardList>> {
    caller.require(Scope::ClusterRead)?;
    let a = crate::state::firing::assignment(&state.cluster.store)?;
    // Best effort: without a leader the assignment is still worth showing.
    let ages = state.cluster.lease_ages().await.unwrap_or_default();
    let lease_ms = crate::state::firing::lease(&state.cluster.store)?.map_or(0, |l| l.as_millis() as i64);
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
    Ok(Json(ShardList { shard_count: a.shard_count(), lease_ms: lease_ms as u64, shards, per_node }))
}
