//! The recorded history of a run: every client operation with its outcome, every fault window,
//! what the observer saw of leaders and shards, and the key revocation probes.
//!
//! Everything here is appended while the run goes and read by the checkers afterwards. It owns
//! no I/O and makes no judgement: an operation whose answer was lost is recorded as
//! [`Outcome::Unknown`], never as failed, and the checkers decide what that allows.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;

use crate::config::FaultKind;

/// What became of one operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", content = "detail", rename_all = "snake_case")]
pub enum Outcome {
    /// A 2xx answer.
    Ok,
    /// Certainly not applied: a 4xx answer, or the request never left (connection refused).
    Failed(String),
    /// Maybe applied: a timeout, a cut connection or a 5xx after the request was sent.
    Unknown(String),
}

impl Outcome {
    pub fn is_ok(&self) -> bool {
        matches!(self, Outcome::Ok)
    }
}

/// A write of the workload; each carries a value used nowhere else.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum WriteOp {
    /// `POST /api/v1/jobs` with `name` = the unique value; `job` is the id when answered.
    CreateJob { name: String, job: Option<String> },
    /// `PATCH /api/v1/jobs/{job}` setting `name` to the unique value.
    UpdateJob { job: String, name: String },
    /// `DELETE /api/v1/jobs/{job}`.
    DeleteJob { job: String },
    /// `POST /api/v1/keys` with `name` = the unique value; `key_id` when answered.
    CreateKey { name: String, key_id: Option<String> },
    /// `DELETE /api/v1/keys/{key_id}`.
    RevokeKey { key_id: String },
}

/// One write, as the client saw it.
#[derive(Debug, Clone, Serialize)]
pub struct WriteRecord {
    /// Which writer (writers run their operations one after another).
    pub client: String,
    /// The node the request was sent to.
    pub node: u64,
    pub op: WriteOp,
    pub invoked_ms: i64,
    pub completed_ms: i64,
    pub outcome: Outcome,
}

/// A linearizable read, as the client saw it.
#[derive(Debug, Clone, Serialize)]
pub struct LinearRead {
    pub node: u64,
    pub path: String,
    pub invoked_ms: i64,
    pub completed_ms: i64,
    pub ok: bool,
}

/// Counts of reads per node.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReadCounts {
    pub ok: u64,
    pub failed: u64,
}

/// One injected fault and its aftermath.
#[derive(Debug, Clone, Serialize)]
pub struct FaultRecord {
    pub kind: FaultKind,
    /// The nodes the fault acted on (killed, paused, isolated, removed, clock-shifted).
    pub targets: Vec<u64>,
    /// Nodes that could not reach a majority while the fault held (partitions only).
    pub minority: Vec<u64>,
    /// Nodes whose links to (part of) the cluster were cut: an owner among them may have sent
    /// slots it could no longer record (partitions and one-way cuts only).
    pub cut_off: Vec<u64>,
    /// Nodes whose service the fault degraded: its targets, or every node when it took the
    /// leader away (the others then learn commits only from the next leader).
    pub affected: Vec<u64>,
    /// Human-readable parameters (links cut, delay, offset).
    pub detail: String,
    /// When the nemesis began injecting it (before the first kill, signal or rule).
    pub start_ms: i64,
    /// When the injection had fully taken effect (every rule applied, every signal sent).
    pub in_effect_ms: i64,
    /// When the nemesis began healing it.
    pub heal_ms: i64,
    /// When the fault was healed (restart, SIGCONT, links restored, clock reset).
    pub end_ms: i64,
    /// When the cluster was whole again after the heal; `None`: it did not converge in time.
    pub converged_ms: Option<i64>,
    /// Set when the fault could not be injected or healed as planned.
    pub error: Option<String>,
}

/// A process-level event that may excuse a re-send: a kill or a freeze.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct StopEvent {
    pub node: u64,
    pub at_ms: i64,
    pub kind: FaultKind,
}

/// A change of a shard's owner or epoch as seen by one node.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ShardChange {
    pub at_ms: i64,
    pub seen_by: u64,
    pub shard: u32,
    pub owner: Option<u64>,
    pub epoch: u64,
}

/// A leader as agreed by the nodes that answered.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct LeaderMark {
    pub at_ms: i64,
    pub leader: Option<u64>,
    pub term: u64,
}

/// One revoked key and when each node started refusing it.
#[derive(Debug, Clone, Serialize)]
pub struct Revocation {
    pub key_id: String,
    /// When the revoke was acknowledged.
    pub acked_ms: i64,
    /// Per node: ms after the ack when the key was first refused (401); `None`: never within
    /// the probe time.
    pub refused_after_ms: BTreeMap<u64, Option<i64>>,
    /// Nodes that were not healthy during the probe (stopped, cut off): not judged.
    pub excused: Vec<u64>,
    /// Nodes the revoke's answer named as not having applied it (`Raftcron-Unconfirmed-Nodes`).
    pub unconfirmed: Vec<u64>,
    /// Per node: the status of the first probe, sent as the answer arrived. A node the answer
    /// did not name had applied the revoke, so its first probe must be refused.
    pub first_probe: BTreeMap<u64, Option<u16>>,
}

/// Violations the observer found on the spot (epochs that went back, two owners of an epoch).
#[derive(Debug, Clone, Serialize)]
pub struct ObservedViolation {
    pub at_ms: i64,
    pub node: u64,
    pub what: String,
}

#[derive(Debug, Default)]
struct Inner {
    writes: Vec<WriteRecord>,
    reads: BTreeMap<u64, ReadCounts>,
    linear_reads: Vec<LinearRead>,
    faults: Vec<FaultRecord>,
    stops: Vec<StopEvent>,
    shard_changes: Vec<ShardChange>,
    leaders: Vec<LeaderMark>,
    revocations: Vec<Revocation>,
    violations: Vec<ObservedViolation>,
    observer_rounds: u64,
    notes: Vec<String>,
}

/// The shared, append-only history of a run.
#[derive(Debug, Clone, Default)]
pub struct History {
    inner: Arc<Mutex<Inner>>,
}

/// A copy of the history taken once the run is over.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Snapshot {
    pub writes: Vec<WriteRecord>,
    pub reads: BTreeMap<u64, ReadCounts>,
    pub linear_reads: Vec<LinearRead>,
    pub faults: Vec<FaultRecord>,
    pub stops: Vec<StopEvent>,
    pub shard_changes: Vec<ShardChange>,
    pub leaders: Vec<LeaderMark>,
    pub revocations: Vec<Revocation>,
    pub observed_violations: Vec<ObservedViolation>,
    pub observer_rounds: u64,
    pub notes: Vec<String>,
}

impl History {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panicking writer cannot leave the vectors half-updated: take the data anyway.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn write(&self, r: WriteRecord) {
        self.lock().writes.push(r);
    }

    pub fn read(&self, node: u64, ok: bool) {
        let mut g = self.lock();
        let c = g.reads.entry(node).or_default();
        if ok {
            c.ok += 1;
        } else {
            c.failed += 1;
        }
    }

    pub fn linear_read(&self, r: LinearRead) {
        self.lock().linear_reads.push(r);
    }

    pub fn fault(&self, r: FaultRecord) {
        self.lock().faults.push(r);
    }

    pub fn stop_event(&self, e: StopEvent) {
        self.lock().stops.push(e);
    }

    pub fn shard_change(&self, c: ShardChange) {
        self.lock().shard_changes.push(c);
    }

    pub fn leader(&self, m: LeaderMark) {
        self.lock().leaders.push(m);
    }

    pub fn revocation(&self, r: Revocation) {
        self.lock().revocations.push(r);
    }

    pub fn violation(&self, v: ObservedViolation) {
        self.lock().violations.push(v);
    }

    pub fn observer_round(&self) {
        self.lock().observer_rounds += 1;
    }

    pub fn note(&self, n: impl Into<String>) {
        self.lock().notes.push(n.into());
    }

    /// Writes so far: (attempted, ok).
    pub fn write_counts(&self) -> (usize, usize) {
        let g = self.lock();
        (g.writes.len(), g.writes.iter().filter(|w| w.outcome.is_ok()).count())
    }

    pub fn faults_so_far(&self) -> usize {
        self.lock().faults.len()
    }

    pub fn last_leader(&self) -> Option<LeaderMark> {
        self.lock().leaders.last().copied()
    }

    pub fn snapshot(&self) -> Snapshot {
        let g = self.lock();
        Snapshot {
            writes: g.writes.clone(),
            reads: g.reads.clone(),
            linear_reads: g.linear_reads.clone(),
            faults: g.faults.clone(),
            stops: g.stops.clone(),
            shard_changes: g.shard_changes.clone(),
            leaders: g.leaders.clone(),
            revocations: g.revocations.clone(),
            observed_violations: g.violations.clone(),
            observer_rounds: g.observer_rounds,
            notes: g.notes.clone(),
        }
    }
}
