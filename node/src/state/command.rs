//! The commands proposed through Raft and what applying them answers.

use serde::{Deserialize, Serialize};

use uuid::Uuid;

use crate::ids::{JobId, KeyId, NodeId, TenantId};
use crate::model::apikey::{ApiKeyRecord, KeyHash, KeyKind, KeyPatch};
use crate::model::assignment::ShardMove;
use crate::model::audit::Actor;
use crate::model::job::{JobPatch, JobRecord, JobSpec};
use crate::model::schedule::has_offset_token;
use crate::model::tenant::{TenantPatch, TenantRecord};
use crate::state::firing::{Alert, ClaimItem, ClaimVerdict, Released, RunOutcome};

/// A log entry's payload. `proposed_at_ms` is the leader's wall clock when it accepted the
/// command: apply uses it as "now", so every replica computes the same state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    pub proposed_at_ms: i64,
    pub body: CommandBody,
    /// Who asked, for the audit trail (`None`: the cluster itself).
    pub actor: Option<Actor>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandBody {
    /// Creates a job; rejected if the id exists.
    CreateJob {
        id: JobId,
        tenant: TenantId,
        spec: JobSpec,
    },
    /// Applies a validated partial update; rejected if the job does not exist.
    UpdateJob {
        id: JobId,
        tenant: TenantId,
        patch: JobPatch,
    },
    /// Deletes a job; rejected if it does not exist.
    DeleteJob {
        id: JobId,
        tenant: TenantId,
    },
    /// Installs the first admin key; a no-op once any admin key was bootstrapped.
    BootstrapAdminKey {
        id: KeyId,
        hash: KeyHash,
        prefix: String,
        name: String,
        kind: KeyKind,
    },
    /// Fixes the shard count and the run history kept per job, once, at formation. Written by
    /// clusters formed before the firing lease became a formation setting (they keep the
    /// default lease); new clusters write [`CommandBody::Form`].
    InitShards {
        shard_count: u32,
        runs_kept: u32,
    },
    /// Moves shards between nodes; all-or-nothing against the current assignment.
    AssignShards {
        moves: Vec<ShardMove>,
    },
    /// Claims slots (or records them missed, or takes over in-flight ones) for `node`.
    Claim {
        node: NodeId,
        incarnation: Uuid,
        items: Vec<ClaimItem>,
    },
    /// Records finished runs.
    RecordRuns {
        outcomes: Vec<RunOutcome>,
    },
    /// Runs a job now, outside its schedule, with a fire id of its own.
    Trigger {
        id: JobId,
        tenant: TenantId,
        trigger: Uuid,
    },
    /// Marks slots that `node` claimed and let go unsent.
    ReleaseSlots {
        node: NodeId,
        items: Vec<Released>,
    },
    /// Adds a key (stored as its hash) to an existing tenant.
    CreateKey {
        hash: KeyHash,
        record: Box<ApiKeyRecord>,
    },
    /// Changes a key of `tenant`.
    UpdateKey {
        id: KeyId,
        tenant: TenantId,
        patch: KeyPatch,
    },
    /// Deletes a key of `tenant`: every node refuses it once applied.
    RevokeKey {
        id: KeyId,
        tenant: TenantId,
    },
    /// When keys were last used, batched by each node.
    TouchKeys {
        used: Vec<(KeyId, i64)>,
    },
    CreateTenant {
        record: TenantRecord,
    },
    UpdateTenant {
        id: TenantId,
        patch: TenantPatch,
    },
    /// Deletes a tenant without jobs, and its keys.
    DeleteTenant {
        id: TenantId,
    },
    /// Replaces a job's sealed secrets with the same values sealed under the current master key,
    /// if the job did not change since they were read (`updated_at_ms`). Changes nothing else.
    ResealJob {
        id: JobId,
        tenant: TenantId,
        expect_updated_at_ms: i64,
        headers: Vec<(String, crate::model::secret::Secret)>,
        body: Option<crate::model::secret::Secret>,
    },
    /// Does nothing; used to commit an entry of the current term.
    Noop,
    /// Several commands proposed together, applied in order as one entry: each sees the
    /// effects of those before it, and the entry takes effect all or nothing. Each answers for
    /// itself (a rejected one does not stop the rest). See `raft::proposals`.
    Batch(Vec<Command>),
    /// Fixes the formation settings once: the shard count, the run history kept per job, and
    /// the firing lease in milliseconds (docs/design/firing.md, Leases). All three at once, so
    /// that no lease is ever granted under another length than the one the leader waits out.
    Form {
        shard_count: u32,
        runs_kept: u32,
        lease_ms: u32,
    },
    /// Raises the cluster's release level to `level` (`crate::level`); never lowers it. Proposed
    /// by the leader once every member told it that it runs a release of that level, so that
    /// data of that level no longer waits for every member to answer (a stopped member does not
    /// hold it back), and so that a node of an older release refuses to start on this state.
    RaiseLevel {
        level: u32,
    },
}

impl CommandBody {
    /// The release level a node needs to apply this command as every other node does
    /// (`crate::level`): 2 for a schedule with a millisecond offset, the level raised to for
    /// [`CommandBody::RaiseLevel`], 1 otherwise.
    pub fn level(&self) -> u32 {
        let schedule = |expr: &str| if has_offset_token(expr) { 2 } else { crate::level::UNLABELLED };
        match self {
            CommandBody::CreateJob { spec, .. } => schedule(&spec.cron_expression),
            CommandBody::UpdateJob { patch, .. } => {
                patch.cron_expression.as_deref().map_or(crate::level::UNLABELLED, schedule)
            }
            CommandBody::Batch(commands) => {
                commands.iter().map(|c| c.body.level()).max().unwrap_or(crate::level::UNLABELLED)
            }
            // A release older than the level it raises to cannot read the command itself.
            CommandBody::RaiseLevel { level } => (*level).max(crate::level::UNLABELLED),
            _ => crate::level::UNLABELLED,
        }
    }
}

/// Why a well-formed command changed nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Rejection {
    /// The record changed since it was read; nothing was written.
    Outdated,
    JobNotFound {
        id: JobId,
    },
    JobExists {
        id: JobId,
    },
    KeyNotFound {
        id: KeyId,
    },
    KeyExists,
    TenantNotFound {
        id: TenantId,
    },
    TenantExists {
        id: TenantId,
    },
    TenantNotEmpty {
        id: TenantId,
        jobs: u64,
    },
    DefaultTenant,
    /// The tenant has `max` jobs already.
    PlanLimitReached {
        max: u32,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandResult {
    Job(Box<JobRecord>),
    JobDeleted {
        id: JobId,
    },
    AdminKeyBootstrapped {
        created: bool,
    },
    ShardCount(u32),
    Assigned {
        moves: u32,
    },
    AssignRejected(String),
    /// One verdict per claim item, in order.
    Claims(Vec<ClaimVerdict>),
    Recorded {
        runs: u32,
        /// Health changes for the webhooks, sent by the node that recorded the runs.
        alerts: Vec<Alert>,
    },
    Released {
        slots: u32,
    },
    /// A manual trigger is in flight: the job's owner sends it.
    Triggered {
        fire_id: crate::model::slot::FireId,
        at_ms: i64,
    },
    Key(Box<ApiKeyRecord>),
    KeyRevoked {
        id: KeyId,
    },
    Touched {
        keys: u32,
    },
    Tenant(Box<TenantRecord>),
    TenantDeleted {
        id: TenantId,
    },
    Rejected(Rejection),
    Done,
    /// The answers of a [`CommandBody::Batch`], in order.
    Batch(Vec<CommandResult>),
}
