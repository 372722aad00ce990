//! Cluster-level routing: writes and read barriers from any node, membership changes, and the
//! cluster's formation and first admin key.
//!
//! A follower forwards a write to the leader itself (the client never sees a redirect), and the
//! *leader* stamps the time into the command, so apply stays deterministic. Routing outcomes
//! (forward, no leader) never surface as 500s: they end as a result, `NoLeader` or
//! `OutcomeUnknown`. This module must not touch HTTP routes other than `/internal/forward`.

pub mod batch;
pub mod bootstrap;
pub mod drill;
pub mod forward;
pub mod level_raise;
pub mod spread;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use raftcron_client::{ClusterStatus, Consistency, Member, MemberRole};

use crate::clock::{Clock, ClusterClock};
use crate::ids::NodeId;
use crate::model::audit::Actor;
use crate::raft::handle::{ProposeError, RaftHandle};
use crate::raft::network::{PeerClient, PeerError};
use crate::state::{Command, CommandBody, CommandResult};
use crate::store::Store;
use forward::{ForwardOp, ForwardResult};

/// How long a write may wait for a leader to appear before answering `NoLeader`.
const LEADER_WAIT: Duration = Duration::from_secs(3);
/// How long a committed-or-not write may take before its outcome is reported unknown.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long past a write's fence [`Cluster::fence_passed`] waits: the time a leader may take
/// from its check of the fence to handing the command to its Raft core, with room to spare (no
/// wait lies in between; this covers a thread put aside by the OS).
pub const FENCE_MARGIN_MS: i64 = 1_000;
/// Forwarding hops before giving up (leadership moving while we route).
const MAX_HOPS: usize = 4;
/// A node whose own wall clock differs from the leader's by more than this says so in its log
/// (it fires on the cluster's time either way; see `clock::ClusterClock`).
pub const MAX_CLOCK_SKEW_MS: i64 = 1000;

/// Whether a write fenced at `propose_by` can no longer be proposed, when the cluster's time is
/// at least `earliest_ms`: past the fence by [`FENCE_MARGIN_MS`] (see [`Cluster::fence_passed`]).
pub fn fence_is_past(earliest_ms: f64, propose_by: i64) -> bool {
    earliest_ms >= propose_by.saturating_add(FENCE_MARGIN_MS) as f64
}

/// A write's answer, or why there is none.
fn written(answer: ForwardResult) -> Result<CommandResult, ClusterError> {
    match answer {
        ForwardResult::Written(r) => Ok(r),
        ForwardResult::Unknown(m) => Err(ClusterError::OutcomeUnknown(m)),
        other => Err(ClusterError::Failed(format!("unexpected answer {other:?}"))),
    }
}

/// Why a write or read barrier did not complete.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterError {
    #[error("the cluster has no leader right now")]
    NoLeader,
    #[error("the write's outcome is unknown: {0}")]
    OutcomeUnknown(String),
    #[error("{0}")]
    Refused(String),
    #[error("cluster failure: {0}")]
    Failed(String),
}

/// The node's handle on the cluster. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Cluster {
    pub raft: RaftHandle,
    pub store: Store,
    /// Calls to the leader; forwarded writes batched per leader.
    forwards: batch::ForwardBatches,
    clock: ClusterClock,
    /// Lease grants this node made while leader (monotonic).
    pub grants: LeaseGrants,
    reads: ReadBatches,
}

/// Linearizable reads waiting for a read index. Concurrent reads share one round (one
/// forward to the leader, one quorum confirmation there) instead of one each: a read joins the
/// next round to *start* after it arrived, never one already under way, so the index it gets
/// is at least the leader's commit index at its arrival (linearizable).
#[derive(Debug, Clone, Default)]
struct ReadBatches(Arc<std::sync::Mutex<ReadQueue>>);

type ReadWaiter = tokio::sync::oneshot::Sender<Result<u64, ClusterError>>;

#[derive(Debug, Default)]
struct ReadQueue {
    waiting: Vec<ReadWaiter>,
    running: bool,
}

/// When the leader last granted each node its firing lease; and the exclusion between granting
/// a lease and moving shards.
///
/// The leader moves a shard off a node it judged dead (no grant for `lease + safety_margin`)
/// in one step. A grant to that node made after the judgement and before the move commits would
/// come with a read index short of the move: the node would apply up to it, see itself still
/// owning the shard and fire with a fresh lease while the new owner fires too. So a move holds
/// [`LeaseGrants::exclusive`] from reading the grants until it committed, and a grant takes it
/// before its read index: a grant is either seen by the judgement or carries the move.
#[derive(Debug, Clone, Default)]
pub struct LeaseGrants {
    last: Arc<std::sync::Mutex<std::collections::HashMap<NodeId, std::time::Instant>>>,
    moving: Arc<tokio::sync::Mutex<()>>,
}

impl LeaseGrants {
    /// Held by a shard move from judging the grants until its commit, and by a grant.
    pub async fn exclusive(&self) -> tokio::sync::OwnedMutexGuard<()> {
        self.moving.clone().lock_owned().await
    }

    fn record(&self, node: NodeId) {
        if let Ok(mut m) = self.last.lock() {
            m.insert(node, std::time::Instant::now());
        }
    }

    /// Milliseconds since each node's last grant by this node.
    fn ages_ms(&self) -> Vec<(NodeId, u64)> {
        let Ok(m) = self.last.lock() else { return Vec::new() };
        m.iter().map(|(n, t)| (*n, t.elapsed().as_millis() as u64)).collect()
    }

    /// The last grant to `node` made by this node.
    pub fn last(&self, node: NodeId) -> Option<std::time::Instant> {
        self.last.lock().ok().and_then(|m| m.get(&node).copied())
    }
}

impl Cluster {
    pub fn new(raft: RaftHandle, store: Store, peers: PeerClient, own_clock: Arc<dyn Clock>) -> Cluster {
        Cluster {
            raft,
            store,
            forwards: batch::ForwardBatches::new(peers),
            clock: ClusterClock::new(own_clock),
            grants: LeaseGrants::default(),
            reads: ReadBatches::default(),
        }
    }

    pub fn node_id(&self) -> NodeId {
        self.raft.node_id()
    }

    pub fn clock(&self) -> &ClusterClock {
        &self.clock
    }

    /// Runs `op` on the leader, wherever it is; a write fenced by `propose_by` (see
    /// [`Cluster::write_fenced`]) only if the leader can still propose it by then.
    async fn on_leader(&self, op: ForwardOp, propose_by: Option<i64>) -> Result<ForwardResult, ClusterError> {
        let deadline = tokio::time::Instant::now() + WRITE_TIMEOUT;
        let mut hops = 0;
        let mut last = ClusterError::NoLeader;
        while tokio::time::Instant::now() < deadline && hops < MAX_HOPS {
            match self.run_local(op.clone(), propose_by).await {
                Ok(ForwardResult::Failed(m)) => return Err(ClusterError::Failed(m)),
                Ok(r) => return Ok(r),
                Err(ProposeError::NoLeader) => {
                    if self.raft.wait_for_leader(LEADER_WAIT).await.is_none() {
                        return Err(ClusterError::NoLeader);
                    }
                }
                Err(ProposeError::ForwardTo { leader_id, addr }) => {
                    // The term under which this node believes `leader_id` leads: a "not the
                    // leader" answer is stale once a later term has a leader, even the same node.
                    let (_, term) = self.raft.leader_and_term();
                    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                    // A leader cut off from the rest keeps an open connection silent until the
                    // timeout; once this node follows another leader, waiting on it is pointless.
                    let answer = tokio::select! {
                        r = self.forwards.call(leader_id, &addr, &op, left, propose_by) => r,
                        () = self.raft.leader_moved_from(leader_id) => {
                            if op.is_write() {
                                return Err(ClusterError::OutcomeUnknown(format!(
                                    "the leader changed from node {leader_id} while the write was forwarded to it"
                                )));
                            }
                            hops += 1;
                            continue;
                        }
                    };
                    match answer {
                        Ok(ForwardResult::NotLeader) => {
                            hops += 1;
                            tracing::debug!(leader_id, "forward target is no longer the leader");
                            self.wait_for_new_leader(leader_id, term).await;
                        }
                        Ok(ForwardResult::Refused(m)) => return Err(ClusterError::Refused(m)),
                        Ok(ForwardResult::Failed(m)) => return Err(ClusterError::Failed(m)),
                        Ok(r) => return Ok(r),
                        Err(PeerError::Unreachable { .. }) => {
                            // Nothing was sent. The leader we know is probably gone: wait for
                            // the election (bounded by LEADER_WAIT) and route again.
                            if !self.wait_for_new_leader(leader_id, term).await {
                                return Err(ClusterError::NoLeader);
                            }
                        }
                        Err(e @ PeerError::NoAnswer { .. }) if op.is_write() => {
                            return Err(ClusterError::OutcomeUnknown(e.to_string()));
                        }
                        Err(e) => {
                            hops += 1;
                            last = ClusterError::Failed(e.to_string());
                        }
                    }
                }
                Err(ProposeError::Refused(m)) => return Err(ClusterError::Refused(m)),
                Err(ProposeError::Fatal(m)) => return Err(ClusterError::Failed(m)),
            }
        }
        Err(last)
    }

    /// Waits (up to `LEADER_WAIT`) until this node follows a leader other than `old` at `term`:
    /// another node, or `old` re-elected in a later term. Waiting only for another node would
    /// hold every write for the whole wait when a returning follower's campaign costs the
    /// leader its term and the leader wins it back (the owners' results among them).
    async fn wait_for_new_leader(&self, old: NodeId, term: u64) -> bool {
        self.raft.wait_for_new_leader(old, term, LEADER_WAIT).await
    }

    /// Runs `op` here if this node leads. Used by both local callers and `/internal/forward`.
    /// A write is not proposed once the cluster's time is past `propose_by`.
    pub(crate) async fn run_local(
        &self,
        op: ForwardOp,
        propose_by: Option<i64>,
    ) -> Result<ForwardResult, ProposeError> {
        match op {
            ForwardOp::Write(body, actor) => {
                // Taking access away must reach every node at once, not at the next heartbeat.
                let revokes = matches!(
                    *body,
                    CommandBody::RevokeKey { .. } | CommandBody::UpdateKey { .. } | CommandBody::DeleteTenant { .. }
                );
                // The cluster's time, stamped once by the leader: every replica applies the same
                // instant. Only a leader moves the timeline (`lead_ms`); on a follower, whose
                // proposal Raft refuses, the stamp is its reading, which keeps its uncertainty.
                let stamp = if self.raft.is_leader() { self.clock.lead_ms() } else { self.clock.now_ms() };
                let cmd = Command { proposed_at_ms: stamp, body: *body, actor };
                if let Some(by) = propose_by.filter(|by| cmd.proposed_at_ms > *by) {
                    // Its sender may already be sending it again (see `write_fenced`).
                    return Ok(ForwardResult::Failed(format!(
                        "fenced write not proposed: the cluster's time {} is past its fence {by}",
                        cmd.proposed_at_ms
                    )));
                }
                // Data that a member's release could not read waits until every member can. Only
                // the leader judges: a follower's proposal goes to it (Raft refuses it here).
                let needed = cmd.body.level();
                if needed > crate::level::UNLABELLED && self.raft.is_leader() {
                    self.admit_level(needed, &cmd.body).await?;
                }
                let written = match tokio::time::timeout(WRITE_TIMEOUT, self.raft.propose(cmd)).await {
                    Ok(r) => r.map(ForwardResult::Written),
                    Err(_) => Ok(ForwardResult::Unknown("timed out waiting for commit".into())),
                };
                if revokes {
                    self.raft.heartbeat_now().await;
                }
                written
            }
            ForwardOp::ReadIndex => self.raft.read_index().await.map(ForwardResult::ReadIndex),
            ForwardOp::AddVoter { node_id, addr } => {
                self.raft.add_voter(node_id, &addr, self.forwards.peers().levels()).await.map(|()| ForwardResult::Done)
            }
            ForwardOp::RemoveMember { node_id } => self.raft.remove_member(node_id).await.map(|()| ForwardResult::Done),
            ForwardOp::LeaseGrant { node_id } => {
                // Only under the lease fixed at formation, the one this leader waits out.
                if crate::state::firing::lease(&self.store).ok().flatten().is_none() {
                    return Ok(ForwardResult::Failed("the cluster has not fixed its lease yet".into()));
                }
                // Never between a move's judgement and its commit (see `LeaseGrants`).
                let _moving = self.grants.exclusive().await;
                // Leadership is confirmed with a quorum first; only then is the grant recorded.
                let index = self.raft.read_index().await?;
                self.grants.record(node_id);
                Ok(ForwardResult::Lease { index, leader_wall_ms: self.clock.lead_ms() })
            }
            ForwardOp::Leases => {
                // Only the leader's grants count, and only a confirmed leader's.
                self.raft.read_index().await?;
                Ok(ForwardResult::Leases(self.grants.ages_ms()))
            }
            // Only `/internal/forward` serves a batch, one op at a time.
            ForwardOp::Batch(_) => Ok(ForwardResult::Failed("a batch is served by /internal/forward only".into())),
        }
    }

    /// Commits a command through the leader and returns what applying it answered.
    pub async fn write(&self, body: CommandBody) -> Result<CommandResult, ClusterError> {
        self.write_as(body, None).await
    }

    /// Commits a command only if this node is the leader now; never forwards. For decisions
    /// that are only valid on the leader that made them (shard moves judged from its own lease
    /// grants): forwarded to a successor, they would be committed on another leader's behalf.
    pub async fn write_as_leader(&self, body: CommandBody) -> Result<CommandResult, ClusterError> {
        match self.run_local(ForwardOp::Write(Box::new(body), None), None).await {
            Ok(ForwardResult::Written(r)) => Ok(r),
            Ok(ForwardResult::Unknown(m)) => Err(ClusterError::OutcomeUnknown(m)),
            Ok(other) => Err(ClusterError::Failed(format!("unexpected answer {other:?}"))),
            Err(ProposeError::ForwardTo { .. }) | Err(ProposeError::NoLeader) => Err(ClusterError::NoLeader),
            Err(ProposeError::Refused(m)) => Err(ClusterError::Refused(m)),
            Err(ProposeError::Fatal(m)) => Err(ClusterError::Failed(m)),
        }
    }

    /// Like [`Cluster::write`], naming who asked (the audit trail records it).
    pub async fn write_as(&self, body: CommandBody, actor: Option<Actor>) -> Result<CommandResult, ClusterError> {
        written(self.on_leader(ForwardOp::Write(Box::new(body), actor), None).await?)
    }

    /// Like [`Cluster::write`], with a fence: no leader proposes this write once the cluster's
    /// time is past `propose_by` (the leader checks when it stamps the command, just before it
    /// hands it to Raft). So once [`Cluster::fence_passed`] says so, no copy of a write sent
    /// with that fence can still be proposed: a write whose outcome was unknown that is sent
    /// again only then, and answered "committed", has every copy of it applied before anything
    /// the caller proposes next. A leader that does not know fences (an older release, during a
    /// rolling upgrade) proposes it anyway; the guarantee holds once every node runs this one.
    pub async fn write_fenced(&self, body: CommandBody, propose_by: i64) -> Result<CommandResult, ClusterError> {
        written(self.on_leader(ForwardOp::Write(Box::new(body), None), Some(propose_by)).await?)
    }

    /// Whether no leader can still propose a write fenced at `propose_by`: the cluster's time is
    /// surely past it (this node's reading minus its uncertainty), by [`FENCE_MARGIN_MS`] more for
    /// the step from a leader's check to its Raft core's queue.
    pub fn fence_passed(&self, propose_by: i64) -> bool {
        let earliest = self.clock.earliest_at(std::time::Instant::now()).unwrap_or_else(|| self.clock.now_ms() as f64);
        fence_is_past(earliest, propose_by)
    }

    /// Makes a following local read see every write acknowledged before this call.
    pub async fn read_barrier(&self, consistency: Consistency) -> Result<(), ClusterError> {
        if consistency == Consistency::Stale {
            return Ok(());
        }
        let index = self.batched_read_index().await?;
        if self.raft.wait_applied(index, WRITE_TIMEOUT).await {
            Ok(())
        } else {
            Err(ClusterError::NoLeader)
        }
    }

    /// The leader's read index, from the next round that starts after this call (see
    /// [`ReadBatches`]).
    async fn batched_read_index(&self) -> Result<u64, ClusterError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let start = {
            let mut q = self.reads.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            q.waiting.push(tx);
            !std::mem::replace(&mut q.running, true)
        };
        if start {
            let me = self.clone();
            tokio::spawn(async move { me.read_rounds().await });
        }
        rx.await.unwrap_or_else(|_| Err(ClusterError::Failed("the read round ended without an answer".into())))
    }

    /// Runs read-index rounds until no read waits; each round answers the reads that arrived
    /// before it started.
    async fn read_rounds(&self) {
        loop {
            let round = {
                let mut q = self.reads.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                if q.waiting.is_empty() {
                    q.running = false;
                    return;
                }
                std::mem::take(&mut q.waiting)
            };
            let answer = match self.on_leader(ForwardOp::ReadIndex, None).await {
                Ok(ForwardResult::ReadIndex(i)) => Ok(i),
                Ok(other) => Err(ClusterError::Failed(format!("unexpected answer {other:?}"))),
                Err(e) => Err(e),
            };
            for waiter in round {
                let _ = waiter.send(answer.clone());
            }
        }
    }

    /// Asks the leader for this node's firing lease; returns the leader's wall clock at the
    /// grant once the state as of the grant is applied here. The caller notes the time *before*
    /// calling (see docs/design/firing.md).
    pub async fn lease_grant(&self) -> Result<i64, ClusterError> {
        let node_id = self.node_id();
        let (index, leader_wall_ms) = match self.on_leader(ForwardOp::LeaseGrant { node_id }, None).await? {
            ForwardResult::Lease { index, leader_wall_ms } => (index, leader_wall_ms),
            other => return Err(ClusterError::Failed(format!("unexpected answer {other:?}"))),
        };
        if self.raft.wait_applied(index, Duration::from_secs(2)).await {
            Ok(leader_wall_ms)
        } else {
            Err(ClusterError::NoLeader)
        }
    }

    /// Writes this node's applied state, as of one moment, to a snapshot file at `path` (a
    /// backup); returns the last log index it covers. Blocking: call from a blocking task.
    pub fn write_backup(&self, path: &std::path::Path) -> Result<u64, String> {
        crate::raft::state_machine::write_consistent(&self.store, path, None)
            .map(|(meta, _)| meta.last_log_id.map_or(0, |l| l.index))
            .map_err(|e| e.to_string())
    }

    /// Calls `path` on member `node` (any node, not only the leader) within `timeout`.
    pub async fn ask_peer<Req: serde::Serialize, Resp: serde::de::DeserializeOwned>(
        &self,
        node: NodeId,
        path: &str,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, PeerError> {
        let addr = self.raft.view().members.into_iter().find(|m| m.node_id == node).map(|m| m.addr);
        let Some(addr) = addr else {
            return Err(PeerError::Unreachable { addr: format!("node {node}"), reason: "not a member".into() });
        };
        self.forwards.peers().call(node, &addr, path, req, timeout).await
    }

    /// Milliseconds since the leader last granted each node its firing lease, per node.
    pub async fn lease_ages(&self) -> Result<BTreeMap<NodeId, u64>, ClusterError> {
        match self.on_leader(ForwardOp::Leases, None).await? {
            ForwardResult::Leases(v) => Ok(v.into_iter().collect()),
            other => Err(ClusterError::Failed(format!("unexpected answer {other:?}"))),
        }
    }

    pub async fn add_node(&self, node_id: NodeId, addr: String) -> Result<(), ClusterError> {
        self.on_leader(ForwardOp::AddVoter { node_id, addr }, None).await.map(|_| ())
    }

    pub async fn remove_node(&self, node_id: NodeId) -> Result<(), ClusterError> {
        self.on_leader(ForwardOp::RemoveMember { node_id }, None).await.map(|_| ())
    }

    /// Whether this leader may propose data of release level `needed` (`crate::level`): once the
    /// cluster's replicated level is there, always; before, only if every member answered this
    /// leader with at least that level, and then the cluster's level is raised first, so that the
    /// raise precedes the first data that needs it in the log and no later write waits for a
    /// member's answer (a stopped member no longer holds it back).
    async fn admit_level(&self, needed: u32, body: &CommandBody) -> Result<(), ProposeError> {
        let level = || crate::state::cluster_level(&self.store).map_err(|e| ProposeError::Fatal(e.to_string()));
        if level()? >= needed {
            return Ok(());
        }
        // A leader elected a moment ago may not have applied a raise its predecessor committed:
        // it reads the level again once it applied everything committed before its term, so a
        // stopped member cannot refuse what the replicated level already allows.
        let index = self.raft.read_index().await?;
        if self.raft.wait_applied(index, WRITE_TIMEOUT).await && level()? >= needed {
            return Ok(());
        }
        let levels = self.forwards.peers().levels();
        if let Some(short) = levels.short_of(self.raft.member_ids(), self.raft.node_id(), needed) {
            return Err(ProposeError::Refused(format!(
                "this change needs every node to run a release of level {needed} or later: {short}"
            )));
        }
        if !matches!(body, CommandBody::RaiseLevel { .. }) {
            let raise = Command {
                proposed_at_ms: self.clock.lead_ms(),
                body: CommandBody::RaiseLevel { level: needed },
                actor: None,
            };
            // The write is safe without it (every member reads it now); a raise that fails is
            // tried again by the next such write or by `level_raise`.
            match tokio::time::timeout(WRITE_TIMEOUT, self.raft.propose(raise)).await {
                Ok(Ok(_)) => tracing::info!(level = needed, "raised the cluster's release level"),
                Ok(Err(e)) => tracing::warn!(level = needed, error = %e, "raising the cluster's release level"),
                Err(_) => tracing::warn!(level = needed, "raising the cluster's release level timed out"),
            }
        }
        Ok(())
    }

    /// This node's view of the cluster.
    pub fn status(&self) -> ClusterStatus {
        let v = self.raft.view();
        let shards = crate::state::firing::assignment(&self.store).map(|a| a.counts()).unwrap_or_default();
        // Only a leader hears every member; elsewhere a peer's level is unknown.
        let (leading, levels) = (v.leader_id == Some(v.node_id), self.forwards.peers().levels());
        let members = v
            .members
            .iter()
            .map(|m| Member {
                node_id: m.node_id,
                addr: m.addr.clone(),
                role: if Some(m.node_id) == v.leader_id {
                    MemberRole::Leader
                } else if m.voter {
                    MemberRole::Follower
                } else {
                    MemberRole::Learner
                },
                voter: m.voter,
                last_contact_ms: m.last_contact_ms,
                matched_index: m.matched_index,
                shards: shards.get(&m.node_id).map_or(0, |c| *c as u32),
                level: if m.node_id == v.node_id {
                    Some(crate::level::own())
                } else {
                    levels.of(m.node_id).filter(|_| leading)
                },
            })
            .collect();
        ClusterStatus {
            node_id: v.node_id,
            leader_id: v.leader_id,
            term: v.term,
            members,
            committed_index: v.committed_index,
            applied_index: v.applied_index,
            last_log_index: v.last_log_index,
            snapshot_index: v.snapshot_index,
            purged_index: v.purged_index,
            master_key_id: None,
            secrets_to_reseal: None,
            release_level: crate::level::own(),
            cluster_level: crate::state::cluster_level(&self.store).unwrap_or(crate::level::UNLABELLED),
        }
    }

    /// Ready: a member of a cluster with a known leader, applied up to what it has in its log.
    pub fn readiness(&self) -> Result<(), String> {
        let v = self.raft.view();
        if !v.members.iter().any(|m| m.node_id == v.node_id) {
            return Err("not a member of a cluster yet".into());
        }
        if v.leader_id.is_none() {
            return Err("no known leader".into());
        }
        let applied = v.applied_index.unwrap_or(0);
        let committed = v.committed_index.unwrap_or(0);
        if applied < committed {
            return Err(format!("applying the log: {applied} of {committed} committed entries"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::network::{LastContact, PeerNetwork};
    use crate::raft::{BasicNode, RaftTuning};

    /// A one-node cluster on a fresh store, leading.
    async fn lone_leader(dir: &std::path::Path) -> Cluster {
        let metrics = crate::metrics::Metrics::new().unwrap();
        let store = Store::open(dir).unwrap();
        let ids = crate::crypto::KeyringIds { current: "k1".into(), all: vec!["k1".into()] };
        let peers = PeerClient::new("secret".into(), BTreeMap::new(), &ids, None).unwrap();
        let contact = LastContact::default();
        let network = PeerNetwork::new(peers.clone(), contact.clone());
        let raft =
            crate::raft::start(1, store.clone(), network, &RaftTuning::default(), metrics.clone()).await.unwrap();
        let handle = RaftHandle::new(raft, 1, store.clone(), contact, metrics);
        let members = BTreeMap::from([(1, BasicNode { addr: "127.0.0.1:9".into() })]);
        assert!(handle.initialize(members).await.unwrap());
        let cluster = Cluster::new(handle, store, peers, Arc::new(crate::clock::SystemClock::default()));
        assert!(cluster.raft.wait_for_leader(Duration::from_secs(10)).await.is_some());
        cluster
    }

    #[tokio::test]
    async fn a_fenced_write_is_proposed_only_until_its_fence() {
        let dir = tempfile::tempdir().unwrap();
        let c = lone_leader(dir.path()).await;
        let now = c.clock().now_ms();
        let applied = || c.raft.view().applied_index.unwrap_or(0);
        let before = applied();
        match c.write_fenced(CommandBody::Noop, now - 1).await {
            Err(ClusterError::Failed(m)) => assert!(m.contains("past its fence"), "{m}"),
            other => panic!("a write past its fence was not refused: {other:?}"),
        }
        assert_eq!(applied(), before, "a refused fenced write reached the log");
        assert!(c.write_fenced(CommandBody::Noop, now + 60_000).await.is_ok());
        assert!(applied() > before);
        // Passed only once the cluster's time is surely beyond the fence and its margin.
        assert!(c.fence_passed(now - FENCE_MARGIN_MS - 1_000));
        assert!(!c.fence_passed(c.clock().now_ms()));
        assert!(!c.fence_passed(now + 60_000));
        c.raft.shutdown().await;
    }
}
