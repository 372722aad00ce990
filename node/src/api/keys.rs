//! `/api/v1/keys`: list, create (the only answer that shows a key), get, update and revoke.
//!
//! Rules: a key sees its own tenant's keys (`cluster:admin` may name another with `?tenant=`
//! or `"tenant"`); it never creates or widens a key beyond its own scopes, and never changes or
//! revokes a key that holds a scope it lacks. Telemetry keys keep their scopes and allowlist.

use axum::extract::{Path, Query, State};
use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use raftcron_client::{
    ApiKey, Consistency, CreateKey, CreatedKey, CreatedKeyEnvelope, ErrorBody, KeyEnvelope, KeyList, UpdateKey,
};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::api::auth::Caller;
use crate::api::error::{ApiError, ApiResult};
use crate::api::guard::Allowlist;
use crate::api::{check_page, ApiJson, AppState};
use crate::clock::ms_to_utc;
use crate::clock::Clock;
use crate::ids::{KeyId, TenantId};
use crate::model::apikey::{self, ApiKeyRecord, KeyKind, KeyPatch, Scope, Scopes};
use crate::state::{read, CommandBody, CommandResult, Rejection};

/// Names the members that did not confirm a key write in time.
const UNCONFIRMED_NODES: HeaderName = HeaderName::from_static(raftcron_client::UNCONFIRMED_NODES);

/// Longest key name.
const MAX_KEY_NAME_CHARS: usize = 200;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list, create)).routes(routes!(get_one, update, revoke))
}

/// `GET /api/v1/keys` query.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct KeysQuery {
    /// 1 or more (default 1).
    page: Option<u32>,
    /// 1 to 500 (default 50).
    page_size: Option<u32>,
    consistency: Option<Consistency>,
    /// Another tenant's keys (`cluster:admin` only).
    tenant: Option<String>,
}

pub fn key_view(r: &ApiKeyRecord) -> ApiKey {
    ApiKey {
        id: r.id.to_string(),
        name: r.name.clone(),
        prefix: r.prefix.clone(),
        kind: r.kind.as_str().to_string(),
        scopes: r.scopes.iter().map(|s| s.as_str().to_string()).collect(),
        allowed_cidrs: r.allowed_cidrs.clone(),
        immutable: r.immutable(),
        tenant: r.tenant.0.clone(),
        expires_at: r.expires_at_ms.map(ms_to_utc),
        last_used_at: r.last_used_at_ms.map(ms_to_utc),
        created_at: ms_to_utc(r.created_at_ms),
        updated_at: ms_to_utc(r.updated_at_ms),
    }
}

fn parse_id(raw: &str) -> ApiResult<KeyId> {
    Uuid::parse_str(raw).map(KeyId).map_err(|_| ApiError::not_found(format!("API key {raw:?} not found")))
}

fn check_name(name: &str) -> ApiResult<String> {
    let n = name.trim();
    if n.is_empty() || n.chars().count() > MAX_KEY_NAME_CHARS || n.chars().any(char::is_control) {
        return Err(ApiError::validation(format!("name: 1 to {MAX_KEY_NAME_CHARS} printable characters")));
    }
    Ok(n.to_string())
}

fn parse_scopes(raw: &[String]) -> ApiResult<Scopes> {
    let mut out = Scopes::new();
    for s in raw {
        let scope = Scope::parse(s).ok_or_else(|| {
            ApiError::validation(format!(
                "scopes: unknown scope {s:?}; known: {}",
                Scope::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
            ))
        })?;
        out.insert(scope);
    }
    Ok(out)
}

fn check_cidrs(raw: &[String]) -> ApiResult<Vec<String>> {
    Allowlist::parse(raw.iter())
        .map(|a| a.to_strings())
        .map_err(|e| ApiError::validation(format!("allowed_cidrs: {e}")))
}

fn check_expiry(at: Option<chrono::DateTime<chrono::Utc>>, now_ms: i64) -> ApiResult<Option<i64>> {
    match at.map(|t| t.timestamp_millis()) {
        Some(ms) if ms <= now_ms => Err(ApiError::validation("expires_at: must be in the future")),
        other => Ok(other),
    }
}

/// A caller may not grant what it does not hold.
fn check_grant(caller: &Caller, scopes: &Scopes) -> ApiResult<()> {
    let missing: Vec<&str> = scopes.iter().filter(|s| !caller.key.has(**s)).map(|s| s.as_str()).collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!("a key cannot grant scopes it does not hold: {}", missing.join(", "))))
    }
}

/// The key `id` as `caller` may see it (another tenant's key is a 404, as if it did not exist).
fn visible_key(state: &AppState, caller: &Caller, id: KeyId) -> ApiResult<ApiKeyRecord> {
    read::key_by_id(&state.cluster.store, id)?
        .filter(|k| k.tenant == caller.key.tenant || caller.key.has(Scope::ClusterAdmin))
        .ok_or_else(|| ApiError::not_found(format!("API key {id} not found")))
}

fn key_result(result: CommandResult) -> ApiResult<ApiKeyRecord> {
    match result {
        CommandResult::Key(r) => Ok(*r),
        CommandResult::Rejected(Rejection::KeyNotFound { id }) => {
            Err(ApiError::not_found(format!("API key {id} not found")))
        }
        CommandResult::Rejected(Rejection::TenantNotFound { id }) => {
            Err(ApiError::not_found(format!("tenant {id} not found")))
        }
        CommandResult::Rejected(Rejection::KeyExists) => {
            Err(ApiError::conflict("a key with this id or value exists; retry"))
        }
        other => Err(ApiError::internal(format!("unexpected apply result {other:?}"))),
    }
}

/// Lists the keys of the caller's tenant, or of `?tenant=` (`keys:read`).
#[utoipa::path(get, path = "/api/v1/keys", operation_id = "list_keys", tag = "keys", params(KeysQuery), responses(
    (status = 200, description = "A page of keys (never the keys themselves)", body = KeyList),
    (status = 400, description = "VALIDATION_ERROR or BAD_REQUEST", body = ErrorBody),
))]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<KeysQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<KeyList>> {
    caller.require(Scope::KeysRead)?;
    let Query(q) = query?;
    let (page, page_size) = check_page(q.page, q.page_size)?;
    let tenant = caller.tenant_for(q.tenant.as_deref())?;
    state.cluster.read_barrier(q.consistency.unwrap_or_default()).await?;
    let all = read::keys_of(&state.cluster.store, Some(&tenant))?;
    let total_count = all.len() as u64;
    let skip = (page as usize - 1).saturating_mul(page_size as usize);
    let api_keys = all.iter().skip(skip).take(page_size as usize).map(key_view).collect();
    Ok(Json(KeyList { api_keys, page, page_size, total_count }))
}

/// Creates a key: the only answer that shows it (`keys:write`; never beyond the caller's scopes).
#[utoipa::path(post, path = "/api/v1/keys", operation_id = "create_key",
    tag = "keys", request_body = CreateKey, responses(
    (status = 201, description = "The key, shown once; it works on every node", body = CreatedKeyEnvelope, headers(
        ("Raftcron-Unconfirmed-Nodes" = String, description = "Nodes that had not applied the write within 2 s, comma-separated; absent when all had")
    )),
    (status = 400, description = "VALIDATION_ERROR or INVALID_JSON", body = ErrorBody),
    (status = 404, description = "NOT_FOUND: no such tenant", body = ErrorBody),
    (status = 409, description = "CONFLICT", body = ErrorBody),
    (status = 504, description = "OUTCOME_UNKNOWN: read before retrying", body = ErrorBody),
))]
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<CreateKey>,
) -> ApiResult<impl IntoResponse> {
    caller.require(Scope::KeysWrite)?;
    let name = check_name(&req.name)?;
    let kind = match req.kind.as_deref() {
        None => KeyKind::Custom,
        Some(k) => KeyKind::parse(k)
            .ok_or_else(|| ApiError::validation(format!("kind: expected admin, custom or telemetry, got {k:?}")))?,
    };
    let scopes = match (kind.fixed_scopes(), &req.scopes) {
        (Some(_), Some(_)) => {
            return Err(ApiError::validation(format!("scopes: fixed for {} keys; leave it out", kind.as_str())))
        }
        (Some(fixed), None) => fixed,
        (None, None) => return Err(ApiError::validation("scopes: required for custom keys")),
        (None, Some(raw)) if raw.is_empty() => return Err(ApiError::validation("scopes: at least one")),
        (None, Some(raw)) => parse_scopes(raw)?,
    };
    if kind == KeyKind::Admin && caller.key.kind != KeyKind::Admin {
        return Err(ApiError::forbidden("only an admin key can create an admin key"));
    }
    check_grant(&caller, &scopes)?;
    let allowed_cidrs = check_cidrs(req.allowed_cidrs.as_deref().unwrap_or_default())?;
    if kind == KeyKind::Telemetry && !allowed_cidrs.is_empty() {
        // Telemetry keys are immutable; an allowlist that could never be changed is a trap.
        return Err(ApiError::validation("allowed_cidrs: telemetry keys take no allowlist"));
    }
    let now = state.cluster.clock().now_ms();
    let expires_at_ms = check_expiry(req.expires_at, now)?;
    let tenant: TenantId = caller.tenant_for(req.tenant.as_deref())?;

    let key = apikey::generate();
    let record = ApiKeyRecord {
        id: KeyId(Uuid::new_v4()),
        tenant,
        name,
        prefix: apikey::display_prefix(&key),
        kind,
        scopes,
        allowed_cidrs,
        expires_at_ms,
        last_used_at_ms: None,
        created_at_ms: now,
        updated_at_ms: now,
    };
    let body = CommandBody::CreateKey { hash: apikey::hash(&key), record: Box::new(record) };
    let stored = key_result(state.cluster.write_as(body, Some(caller.actor())).await?)?;
    let created = CreatedKey { key, api_key: key_view(&stored) };
    // The new key works on every node once this answers (as a revocation stops working).
    Ok((StatusCode::CREATED, spread(&state).await, Json(CreatedKeyEnvelope { api_key: created })))
}

/// One key (`keys:read`).
#[utoipa::path(get, path = "/api/v1/keys/{id}", operation_id = "get_key", tag = "keys",
    params(("id" = String, Path, description = "The key's id (a UUID)")), responses(
    (status = 200, description = "The key", body = KeyEnvelope),
    (status = 404, description = "NOT_FOUND", body = ErrorBody),
))]
async fn get_one(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
) -> ApiResult<Json<KeyEnvelope>> {
    caller.require(Scope::KeysRead)?;
    let id = parse_id(&raw)?;
    state.cluster.read_barrier(Consistency::Linearizable).await?;
    Ok(Json(KeyEnvelope { api_key: key_view(&visible_key(&state, &caller, id)?) }))
}

/// Changes a key's name, scopes, allowlist or expiry (`keys:write`).
#[utoipa::path(patch, path = "/api/v1/keys/{id}", operation_id = "update_key", tag = "keys",
    params(("id" = String, Path, description = "The key's id (a UUID)")), request_body = UpdateKey, responses(
    (status = 200, description = "The key as changed, on every node", body = KeyEnvelope, headers(
        ("Raftcron-Unconfirmed-Nodes" = String, description = "Nodes that had not applied the write within 2 s, comma-separated; absent when all had")
    )),
    (status = 400, description = "VALIDATION_ERROR or INVALID_JSON", body = ErrorBody),
    (status = 404, description = "NOT_FOUND", body = ErrorBody),
    (status = 409, description = "CONFLICT: fixed scopes or an immutable key", body = ErrorBody),
    (status = 504, description = "OUTCOME_UNKNOWN: read before retrying", body = ErrorBody),
))]
async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
    ApiJson(req): ApiJson<UpdateKey>,
) -> ApiResult<(HeaderMap, Json<KeyEnvelope>)> {
    caller.require(Scope::KeysWrite)?;
    let id = parse_id(&raw)?;
    state.cluster.read_barrier(Consistency::Linearizable).await?;
    let target = visible_key(&state, &caller, id)?;
    if !caller.key.covers(&target.scopes) {
        return Err(ApiError::forbidden("this key cannot change a key that holds scopes it does not hold"));
    }
    let mut patch = KeyPatch::default();
    if let Some(n) = &req.name {
        patch.name = Some(check_name(n)?);
    }
    if let Some(raw) = &req.scopes {
        if target.kind != KeyKind::Custom {
            return Err(ApiError::conflict(format!("{} keys have fixed scopes", target.kind.as_str())));
        }
        if raw.is_empty() {
            return Err(ApiError::validation("scopes: at least one"));
        }
        let scopes = parse_scopes(raw)?;
        check_grant(&caller, &scopes)?;
        patch.scopes = Some(scopes);
    }
    if let Some(raw) = &req.allowed_cidrs {
        if target.immutable() {
            return Err(ApiError::conflict("telemetry keys are immutable: their allowlist is fixed"));
        }
        patch.allowed_cidrs = Some(check_cidrs(raw)?);
    }
    if let Some(at) = req.expires_at {
        patch.expires_at_ms = Some(check_expiry(at, state.cluster.clock().now_ms())?);
    }
    let body = CommandBody::UpdateKey { id, tenant: target.tenant.clone(), patch };
    let stored = key_result(state.cluster.write_as(body, Some(caller.actor())).await?)?;
    Ok((spread(&state).await, Json(KeyEnvelope { api_key: key_view(&stored) })))
}

/// `DELETE`: 204 once every node refuses the key (see [`spread`]).
#[utoipa::path(delete, path = "/api/v1/keys/{id}", operation_id = "revoke_key", tag = "keys",
    params(("id" = String, Path, description = "The key's id (a UUID)")), responses(
    (status = 204, description = "Revoked: every node refuses the key", headers(
        ("Raftcron-Unconfirmed-Nodes" = String, description = "Nodes that had not applied the revocation within 2 s, comma-separated; absent when all had")
    )),
    (status = 404, description = "NOT_FOUND", body = ErrorBody),
    (status = 504, description = "OUTCOME_UNKNOWN: read before retrying", body = ErrorBody),
))]
async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
) -> ApiResult<(HeaderMap, StatusCode)> {
    caller.require(Scope::KeysWrite)?;
    let id = parse_id(&raw)?;
    state.cluster.read_barrier(Consistency::Linearizable).await?;
    let target = visible_key(&state, &caller, id)?;
    if !caller.key.covers(&target.scopes) {
        return Err(ApiError::forbidden("this key cannot revoke a key that holds scopes it does not hold"));
    }
    let body = CommandBody::RevokeKey { id, tenant: target.tenant.clone() };
    let result = state.cluster.write_as(body, Some(caller.actor())).await?;
    if !matches!(result, CommandResult::KeyRevoked { .. }) {
        key_result(result)?;
    }
    Ok((spread(&state).await, StatusCode::NO_CONTENT))
}

/// How long a key write waits for every member to apply it before it answers.
const SPREAD_TIMEOUT: Duration = Duration::from_secs(2);

/// Waits until every member applied the key write just made (bounded); the answer's headers:
/// `Raftcron-Unconfirmed-Nodes: 2,3` when some member did not confirm it in time, for it still
/// knows the keys as they were until it hears from the leader (docs/security.md).
pub(crate) async fn spread(state: &AppState) -> HeaderMap {
    let spread = state.cluster.spread(SPREAD_TIMEOUT).await;
    let mut headers = HeaderMap::new();
    if let Some(v) = spread.header_value().and_then(|v| HeaderValue::from_str(&v).ok()) {
        headers.insert(UNCONFIRMED_NODES, v);
    }
    headers
}
