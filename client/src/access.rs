//! The JSON shapes of access control: API keys, tenants and the audit trail.
//!
//! Like [`crate::types`], requests reject unknown fields and the node validates values.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};

/// Every scope a key can hold. `admin` keys hold all of them.
pub const SCOPES: [&str; 8] = [
    "jobs:read",
    "jobs:write",
    "jobs:trigger",
    "runs:read",
    "keys:read",
    "keys:write",
    "cluster:read",
    "cluster:admin",
];

/// The fixed scopes of a `telemetry` key.
pub const TELEMETRY_SCOPES: [&str; 2] = ["cluster:read", "runs:read"];

/// `POST /api/v1/keys`. `kind` defaults to `custom`; `scopes` is required for `custom` keys and
/// fixed for the others. `tenant` may name another tenant only for a `cluster:admin` caller.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
    /// CIDRs (IPv4 or IPv6) the key may be used from; empty or absent: anywhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_cidrs: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
}

/// `PATCH /api/v1/keys/{id}`: absent fields keep their value; `"expires_at": null` clears it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UpdateKey {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_cidrs: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Option<DateTime<Utc>>>,
}

/// Maps a present field (even `null`) to `Some(..)`, so `null` and absent differ.
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// An API key as the API shows it: everything but the key itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    /// The non-secret start of the key, to recognise it in lists.
    pub prefix: String,
    /// `admin`, `custom` or `telemetry`.
    pub kind: String,
    pub scopes: Vec<String>,
    pub allowed_cidrs: Vec<String>,
    /// Whether scopes and allowlist are fixed (telemetry keys).
    pub immutable: bool,
    pub tenant: String,
    pub expires_at: Option<DateTime<Utc>>,
    /// When the key was last used; at most a minute stale.
    pub last_used_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The answer to `POST /api/v1/keys`: the only time the full key is shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreatedKey {
    /// The full key. Store it now: it cannot be shown again.
    pub key: String,
    #[serde(flatten)]
    pub api_key: ApiKey,
}

/// `{"api_key": {...}}`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KeyEnvelope {
    pub api_key: ApiKey,
}

/// `{"api_key": {..., "key": "rcn_..."}}`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreatedKeyEnvelope {
    pub api_key: CreatedKey,
}

/// `{"api_keys": [...], "page": 1, "page_size": 50, "total_count": N}`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KeyList {
    pub api_keys: Vec<ApiKey>,
    pub page: u32,
    pub page_size: u32,
    pub total_count: u64,
}

/// `POST /api/v1/tenants`. Quotas absent: no limit (rate limit: the node default).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    /// `[a-z0-9-]`, 1 to 63 characters.
    pub id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_jobs: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_interval_seconds: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit_per_minute: Option<u32>,
}

/// `PATCH /api/v1/tenants/{id}`: absent fields keep their value; `null` removes a quota.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UpdateTenant {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub max_jobs: Option<Option<u32>>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub min_interval_seconds: Option<Option<u32>>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub rate_limit_per_minute: Option<Option<u32>>,
}

/// A tenant: a namespace of keys and jobs with its quotas.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Tenant {
    pub id: String,
    pub name: String,
    pub max_jobs: Option<u32>,
    pub min_interval_seconds: Option<u32>,
    pub rate_limit_per_minute: Option<u32>,
    pub job_count: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// `{"tenant": {...}}`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TenantEnvelope {
    pub tenant: Tenant,
}

/// `{"tenants": [...], "page": 1, "page_size": 50, "total_count": N}`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TenantList {
    pub tenants: Vec<Tenant>,
    pub page: u32,
    pub page_size: u32,
    pub total_count: u64,
}

/// One change to a key, tenant or job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEntry {
    /// The Raft log index of the change: unique and increasing.
    pub seq: u64,
    pub at: DateTime<Utc>,
    /// The id of the key that made the change (`bootstrap` for the first admin key).
    pub actor_key_id: String,
    pub actor_prefix: String,
    pub tenant: String,
    /// The client's address as the node saw it (after trusted proxies).
    pub client_ip: Option<String>,
    /// For example `job.create`, `key.revoke`, `tenant.update`.
    pub action: String,
    pub target_id: String,
    /// What changed (field names; never a secret value).
    pub detail: String,
}

/// `{"entries": [...], "page": 1, "page_size": 50, "total_count": N}`, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditList {
    pub entries: Vec<AuditEntry>,
    pub page: u32,
    pub page_size: u32,
    pub total_count: u64,
}

/// `429` bodies carry how long to wait, as seed 001 shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RateLimited {
    pub error: String,
    pub message: String,
    pub retry_after: u64,
}
