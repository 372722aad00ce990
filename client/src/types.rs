//! The JSON shapes of the public API: requests, resources and their envelopes.
//!
//! Requests reject unknown fields so that a typo is a 400, not a silently ignored setting.
//! Validation of values (ranges, formats) is the node's job, not this module's.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// `POST /api/v1/jobs`. Optional fields take the defaults of the jobs API reference.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateJob {
    pub name: String,
    pub url: String,
    pub method: String,
    /// Vixie cron: 5 fields, or 6 with a leading second field, or a macro (`@hourly`...); may end
    /// with a millisecond offset `+<n>ms` (0-999) that every fire instant is shifted by.
    pub cron_expression: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_delay_seconds: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_active: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_on_failure: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_after_failures: Option<u32>,
    /// Slots older than this when an owner gets to them are recorded as missed (10-86400, default 300).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starting_deadline_seconds: Option<u32>,
    /// `allow` (default) or `forbid`: whether a slot may start while the previous run is running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency_policy: Option<String>,
    /// `at_least_once` (default) or `at_most_once`: what happens to a slot whose sender died mid-request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<String>,
    /// How many redirects (3xx with `Location`) one attempt follows (0-5, default 0: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follow_redirects: Option<u32>,
}

/// `PATCH /api/v1/jobs/{id}`: a partial update; absent fields keep their value.
/// `headers`, when present, replaces the whole header map; `body: ""` clears the body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UpdateJob {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Vixie cron: 5 fields, or 6 with a leading second field, or a macro (`@hourly`...); may end
    /// with a millisecond offset `+<n>ms` (0-999) that every fire instant is shifted by.
    pub cron_expression: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_delay_seconds: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_active: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_on_failure: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_after_failures: Option<u32>,
    /// Slots older than this when an owner gets to them are recorded as missed (10-86400, default 300).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starting_deadline_seconds: Option<u32>,
    /// `allow` (default) or `forbid`: whether a slot may start while the previous run is running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency_policy: Option<String>,
    /// `at_least_once` (default) or `at_most_once`: what happens to a slot whose sender died mid-request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<String>,
    /// How many redirects (3xx with `Location`) one attempt follows (0-5, default 0: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follow_redirects: Option<u32>,
}

/// A job as the API returns it. Header values are masked: only names are shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Job {
    pub id: Uuid,
    pub name: String,
    pub url: String,
    pub method: String,
    pub cron_expression: String,
    pub timezone: String,
    pub headers: BTreeMap<String, String>,
    pub body: Option<String>,
    pub timeout_seconds: u32,
    pub max_retries: u32,
    pub retry_delay_seconds: u32,
    pub is_active: bool,
    pub notify_on_failure: bool,
    pub notify_after_failures: u32,
    /// The next scheduled instant in UTC, computed in the job's zone; null when paused.
    pub next_run_at: Option<DateTime<Utc>>,
    pub last_run_at: Option<DateTime<Utc>>,
    pub last_status: Option<String>,
    pub consecutive_failures: u32,
    pub starting_deadline_seconds: u32,
    pub concurrency_policy: String,
    pub delivery: String,
    /// How many redirects one attempt follows; 0: a 3xx answer is a failure.
    pub follow_redirects: u32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The value shown instead of a header's value.
pub const MASKED_VALUE: &str = "********";

/// `{"job": {...}}`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobEnvelope {
    pub job: Job,
}

/// `{"jobs": [...], "page": 1, "page_size": 50, "total_count": N}`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobList {
    pub jobs: Vec<Job>,
    pub page: u32,
    pub page_size: u32,
    pub total_count: u64,
}

/// `{"ok": true}`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OkResponse {
    pub ok: bool,
}

/// Query parameters of list routes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema, utoipa::IntoParams), into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_size: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistency: Option<Consistency>,
}

/// `?consistency=` of single-resource reads (`GET /api/v1/jobs/{id}`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema, utoipa::IntoParams), into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct ReadQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistency: Option<Consistency>,
}

/// How fresh a read must be.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Consistency {
    /// The read reflects every write acknowledged before it started (a leader round trip).
    #[default]
    Linearizable,
    /// The read serves this node's applied state, which may lag the leader.
    Stale,
}

impl Consistency {
    /// The value as it appears in `?consistency=`.
    pub fn as_str(self) -> &'static str {
        match self {
            Consistency::Linearizable => "linearizable",
            Consistency::Stale => "stale",
        }
    }
}

/// The role of a member in the Raft group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum MemberRole {
    Leader,
    Follower,
    Learner,
}

/// A member of the cluster as seen from the answering node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Member {
    pub node_id: u64,
    pub addr: String,
    pub role: MemberRole,
    pub voter: bool,
    /// Milliseconds since the leader last heard from this member (known on the leader only).
    pub last_contact_ms: Option<u64>,
    /// The highest log index known to be replicated to this member (leader only).
    pub matched_index: Option<u64>,
    /// How many shards this member owns (fires for).
    pub shards: u32,
    /// The release level this member runs (`X-Raftcron-Level`): known on the leader, from the
    /// member's last answer to it, and on every node for itself.
    #[serde(default)]
    pub level: Option<u32>,
}

/// `GET /api/v1/cluster`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClusterStatus {
    pub node_id: u64,
    pub leader_id: Option<u64>,
    pub term: u64,
    pub members: Vec<Member>,
    pub committed_index: Option<u64>,
    pub applied_index: Option<u64>,
    pub last_log_index: Option<u64>,
    /// The last log index covered by this node's snapshot.
    pub snapshot_index: Option<u64>,
    /// The log is purged up to this index on this node.
    pub purged_index: Option<u64>,
    /// The id of the master key this node seals with (public; compare it across nodes).
    #[serde(default)]
    pub master_key_id: Option<String>,
    /// On the leader: jobs whose secrets are still sealed under an older master key (0 once a
    /// rotation is complete and the old key can be removed).
    #[serde(default)]
    pub secrets_to_reseal: Option<u64>,
    /// The release level of the node that answered: which replicated data its build reads.
    #[serde(default)]
    pub release_level: u32,
    /// The cluster's release level, replicated: raised once every member ran a release of that
    /// level, never lowered. Data of a higher level waits until every member answered the leader
    /// with it; a node of a lower release refuses to start on this state.
    #[serde(default)]
    pub cluster_level: u32,
}

/// `{"cluster": {...}}`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClusterEnvelope {
    pub cluster: ClusterStatus,
}

/// `POST /api/v1/cluster/nodes`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AddNode {
    pub node_id: u64,
    pub addr: String,
}

/// `GET /healthz` and `GET /readyz`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HealthStatus {
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One occurrence of a job and what happened to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Run {
    /// The fire id, sent as `Idempotency-Key`.
    pub id: String,
    pub scheduled_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub lateness_ms: Option<i64>,
    pub attempts: u32,
    pub node_id: Option<u64>,
    /// `succeeded`, `failed`, `missed`, `skipped`, `unknown` or `running`.
    pub status: String,
    pub http_status: Option<u16>,
    pub duration_ms: Option<i64>,
    pub error: Option<String>,
    pub response_body: Option<String>,
}

/// `{"run": {...}}`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunEnvelope {
    pub run: Run,
}

/// `{"runs": [...], "page": 1, "page_size": 50, "total_count": N}`, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunList {
    pub runs: Vec<Run>,
    pub page: u32,
    pub page_size: u32,
    pub total_count: u64,
}

/// One shard's owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ShardInfo {
    pub shard: u32,
    pub node_id: Option<u64>,
    pub epoch: u64,
    /// When the owner's firing lease runs out unless renewed, by the leader's clock (null when
    /// the owner holds no lease or the leader cannot be asked).
    pub lease_expires_at: Option<DateTime<Utc>>,
}

/// `GET /api/v1/cluster/shards`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ShardList {
    pub shard_count: u32,
    /// The firing lease the cluster was formed with (`--lease-ms`), in milliseconds; 0 before
    /// the cluster formed.
    #[serde(default)]
    pub lease_ms: u64,
    pub shards: Vec<ShardInfo>,
    /// Shards per node id.
    #[cfg_attr(feature = "openapi", schema(value_type = BTreeMap<String, u32>))]
    pub per_node: std::collections::BTreeMap<u64, u32>,
}
