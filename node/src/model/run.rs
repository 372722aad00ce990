//! Runs: what happened to each occurrence of a job, and the per-job firing state the state
//! machine keeps to accept each slot's claim once.
//!
//! Bounded by design: per job, one watermark, the claims still in flight, and the last runs
//! (capped by the caller). Nothing here grows per slot forever.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ids::NodeId;
use crate::model::assignment::Epoch;
use crate::model::slot::FireId;

/// How a run ended (or that it has not yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunStatus {
    Succeeded,
    Failed,
    /// Not sent: older than the job's starting deadline when an owner got to it.
    Missed,
    /// Not sent: the previous run was still in flight and the job forbids overlap.
    Skipped,
    /// Claimed by an owner that died before recording a result, on an at-most-once job.
    Unknown,
    Running,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Missed => "missed",
            RunStatus::Skipped => "skipped",
            RunStatus::Unknown => "unknown",
            RunStatus::Running => "running",
        }
    }
}

/// A slot that was claimed and has no recorded result yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InFlight {
    pub at_ms: i64,
    pub fire_id: FireId,
    pub node: NodeId,
    /// The claimant's process incarnation: a restarted node re-sends its old in-flight slots.
    pub incarnation: Uuid,
    pub epoch: Epoch,
    pub claimed_at_ms: i64,
    /// Its claimant let it go unsent (its shard was revoked before the slot's instant): the next
    /// owner sends it, whatever the job's delivery mode.
    pub released: bool,
}

/// The state machine's firing state of one job.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FireState {
    /// Every slot at or before this instant is claimed or recorded as missed.
    pub watermark_ms: i64,
    pub in_flight: Vec<InFlight>,
    pub last_run_at_ms: Option<i64>,
    pub last_status: Option<RunStatus>,
    pub consecutive_failures: u32,
    /// Runs kept in the history table for this job.
    pub runs_kept: u32,
}

/// One recorded run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    pub fire_id: FireId,
    pub scheduled_at_ms: i64,
    pub started_at_ms: Option<i64>,
    pub finished_at_ms: Option<i64>,
    pub attempts: u32,
    pub node: Option<NodeId>,
    pub status: RunStatus,
    pub http_status: Option<u16>,
    pub error: Option<String>,
    /// The first 4 KiB of the response body.
    pub body_prefix: Option<String>,
}

/// Largest response body prefix kept in a run.
pub const BODY_PREFIX_BYTES: usize = 4096;
/// Runs kept per job.
pub const RUNS_KEPT: u32 = 100;
