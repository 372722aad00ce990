//! [`RaftHandle`]: the narrow face of openraft that the rest of the node uses.
//!
//! It turns openraft's results into plain outcomes (`ForwardTo`, `NoLeader`, ...) so that no
//! other module needs openraft's types. It does not route or retry: `cluster/` does.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use openraft::ServerState;

use crate::ids::NodeId;
use crate::level::PeerLevels;
use crate::metrics::{Metrics, RaftGauges};
use crate::raft::network::LastContact;
use crate::raft::proposals::Proposals;
use crate::raft::{log_store, BasicNode, Raft, RaftMetrics};
use crate::state::{Command, CommandResult};
use crate::store::Store;

/// Why a proposal or leader-only call did not run here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    /// Another node leads; send it there.
    #[error("node {leader_id} at {addr} is the leader")]
    ForwardTo { leader_id: NodeId, addr: String },
    /// No leader is known right now.
    #[error("no leader")]
    NoLeader,
    /// A membership change was refused (for example, a change already in progress).
    #[error("{0}")]
    Refused(String),
    /// Raft stopped (shutdown or a storage failure).
    #[error("raft stopped: {0}")]
    Fatal(String),
}

/// A member as openraft sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberView {
    pub node_id: NodeId,
    pub addr: String,
    pub voter: bool,
    pub matched_index: Option<u64>,
    pub last_contact_ms: Option<u64>,
}

/// A summary of this node's Raft state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftView {
    pub node_id: NodeId,
    pub leader_id: Option<NodeId>,
    pub is_leader: bool,
    pub term: u64,
    pub last_log_index: Option<u64>,
    pub applied_index: Option<u64>,
    pub committed_index: Option<u64>,
    pub snapshot_index: Option<u64>,
    pub purged_index: Option<u64>,
    pub members: Vec<MemberView>,
}

/// Whether `leader` at `term` is a different leadership from `old` at `old_term`: another node,
/// or the same node elected again in a later term.
pub fn is_new_leader(leader: Option<NodeId>, term: u64, old: NodeId, old_term: u64) -> bool {
    leader.is_some_and(|l| l != old || term > old_term)
}

impl RaftView {
    /// The Raft gauges of `/metrics`. On the leader, a voter is reachable when it answered
    /// within `lease` (the leader counts itself); lag is what each peer misses of the leader's log.
    pub fn gauges(&self, lease: Duration) -> RaftGauges {
        let lease_ms = u64::try_from(lease.as_millis()).unwrap_or(u64::MAX);
        let last = self.last_log_index.unwrap_or(0);
        let voters = self.members.iter().filter(|m| m.voter);
        RaftGauges {
            has_leader: self.leader_id.is_some(),
            is_leader: self.is_leader,
            term: self.term,
            commit_index: self.committed_index.unwrap_or(0),
            applied_index: self.applied_index.unwrap_or(0),
            voters: voters.clone().count() as u64,
            reachable_voters: if self.is_leader {
                voters.filter(|m| m.last_contact_ms.is_some_and(|ms| ms < lease_ms)).count() as u64
            } else {
                0
            },
            replication_lag: if self.is_leader {
                self.members
                    .iter()
                    .filter(|m| m.node_id != self.node_id)
                    .map(|m| (m.node_id, last.saturating_sub(m.matched_index.unwrap_or(0))))
                    .collect()
            } else {
                Vec::new()
            },
        }
    }
}

/// A cheap, cloneable handle on the Raft node.
#[derive(Clone)]
pub struct RaftHandle {
    raft: Raft,
    proposals: Proposals,
    node_id: NodeId,
    store: Store,
    contact: LastContact,
}

impl std::fmt::Debug for RaftHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftHandle").field("node_id", &self.node_id).finish()
    }
}

pub(crate) fn from_write_error(e: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>) -> ProposeError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => match (f.leader_id, f.leader_node) {
            (Some(leader_id), Some(node)) => ProposeError::ForwardTo { leader_id, addr: node.addr },
            _ => ProposeError::NoLeader,
        },
        RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => ProposeError::Refused(c.to_string()),
        RaftError::Fatal(f) => ProposeError::Fatal(f.to_string()),
    }
}

impl RaftHandle {
    pub fn new(raft: Raft, node_id: NodeId, store: Store, contact: LastContact, metrics: Metrics) -> RaftHandle {
        let proposals = Proposals::new(raft.clone(), metrics);
        RaftHandle { raft, proposals, node_id, store, contact }
    }

    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// Proposes a command. Only the leader accepts; others answer `ForwardTo`. Concurrent
    /// proposals share log entries (see [`Proposals`]).
    pub async fn propose(&self, cmd: Command) -> Result<CommandResult, ProposeError> {
        self.proposals.propose(cmd).await
    }

    /// Sends a heartbeat to every follower now, so they learn the latest commit index (and
    /// apply it) without waiting for the next regular one. Best effort.
    pub async fn heartbeat_now(&self) {
        let _ = self.raft.trigger().heartbeat().await;
    }

    /// Confirms leadership with a quorum and returns the index a linearizable read must see.
    pub async fn read_index(&self) -> Result<u64, ProposeError> {
        match self.raft.get_read_log_id().await {
            Ok((read, _)) => Ok(read.map(|l| l.index).unwrap_or(0)),
            Err(RaftError::APIError(openraft::error::CheckIsLeaderError::ForwardToLeader(f))) => {
                match (f.leader_id, f.leader_node) {
                    (Some(leader_id), Some(node)) => Err(ProposeError::ForwardTo { leader_id, addr: node.addr }),
                    _ => Err(ProposeError::NoLeader),
                }
            }
            Err(RaftError::APIError(openraft::error::CheckIsLeaderError::QuorumNotEnough(_))) => {
                Err(ProposeError::NoLeader)
            }
            Err(RaftError::Fatal(f)) => Err(ProposeError::Fatal(f.to_string())),
        }
    }

    /// Waits until this node applied `index`, up to `timeout`. False on timeout.
    pub async fn wait_applied(&self, index: u64, timeout: Duration) -> bool {
        if self.raft.metrics().borrow().last_applied.map(|l| l.index).unwrap_or(0) >= index {
            return true;
        }
        self.raft.wait(Some(timeout)).applied_index_at_least(Some(index), "read barrier").await.is_ok()
    }

    /// Resolves once this node follows a leader other than `old` (at once if it already does).
    /// Callers bound it by racing it against their own work.
    pub async fn leader_moved_from(&self, old: NodeId) {
        let mut rx = self.raft.metrics();
        loop {
            if rx.borrow().current_leader.is_some_and(|l| l != old) {
                return;
            }
            if rx.changed().await.is_err() {
                // The Raft task ended: no leader will be seen again.
                std::future::pending::<()>().await;
            }
        }
    }

    /// The leader this node follows (if it knows one) and this node's term, as of now. Cheap:
    /// no copy of the membership.
    pub fn leader_and_term(&self) -> (Option<NodeId>, u64) {
        let rx = self.raft.metrics();
        let m = rx.borrow();
        (m.current_leader, m.current_term)
    }

    /// Waits until this node follows a leader that is not `old` as of `term`: another node, or
    /// `old` itself elected again in a later term (a leader that lost its term to a campaigning
    /// follower and won it back answers again). Up to `timeout`; false on timeout.
    pub async fn wait_for_new_leader(&self, old: NodeId, term: u64, timeout: Duration) -> bool {
        self.wait_for_metrics(timeout, |m| is_new_leader(m.current_leader, m.current_term, old, term).then_some(()))
            .await
            .is_some()
    }

    /// Waits until some leader is known, up to `timeout`.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Option<NodeId> {
        self.wait_for_metrics(timeout, |m| m.current_leader).await
    }

    /// Waits until `seen` finds what it looks for in this node's Raft metrics, checked at once
    /// and on every change, up to `timeout`.
    async fn wait_for_metrics<T>(&self, timeout: Duration, seen: impl Fn(&RaftMetrics) -> Option<T>) -> Option<T> {
        let mut rx = self.raft.metrics();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(found) = seen(&rx.borrow()) {
                return Some(found);
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => continue,
                _ => return None,
            }
        }
    }

    /// Forms the cluster from `members` if this node's log is pristine. Safe to call on every
    /// initial member with the same set: the first entries they write are identical.
    pub async fn initialize(&self, members: BTreeMap<NodeId, BasicNode>) -> Result<bool, ProposeError> {
        // A node with a log or a vote is formed already. openraft would refuse, and log the
        // refusal as an error on every restart. (Its metrics may not show the loaded state yet.)
        if crate::raft::log_store::has_state(&self.store).map_err(|e| ProposeError::Fatal(e.to_string()))? {
            return Ok(false);
        }
        match self.raft.initialize(members).await {
            Ok(()) => Ok(true),
            Err(RaftError::APIError(openraft::error::InitializeError::NotAllowed(_))) => Ok(false),
            Err(RaftError::APIError(e)) => Err(ProposeError::Refused(e.to_string())),
            Err(RaftError::Fatal(f)) => Err(ProposeError::Fatal(f.to_string())),
        }
    }

    /// Adds a learner and waits until it caught up, then makes it a voter.
    ///
    /// The new node must run at least this node's release level (`crate::level`, learnt from
    /// its answers while it catches up): a node of an older release could not read what this
    /// one may already have written.
    pub async fn add_voter(&self, node_id: NodeId, addr: &str, levels: &PeerLevels) -> Result<(), ProposeError> {
        self.raft.add_learner(node_id, BasicNode::new(addr), true).await.map_err(from_write_error)?;
        // A learner that refuses the leader's calls (another master key, cluster secret or CA)
        // never catches up: do not make it a voter, or it would weaken every quorum.
        let target = self.raft.metrics().borrow().last_log_index.unwrap_or(0);
        let caught_up = |m: &RaftMetrics| {
            m.replication
                .as_ref()
                .and_then(|r| r.get(&node_id))
                .and_then(|l| l.as_ref())
                .is_some_and(|l| l.index >= target)
        };
        let mut changes = self.raft.metrics();
        let waited = tokio::time::timeout(Duration::from_secs(10), async {
            // Bounded by the timeout around it.
            while !caught_up(&changes.borrow()) {
                if changes.changed().await.is_err() {
                    break;
                }
            }
        })
        .await;
        if waited.is_err() || !caught_up(&self.raft.metrics().borrow()) {
            let remove: BTreeSet<NodeId> = [node_id].into();
            let _ = self.raft.change_membership(openraft::ChangeMembers::RemoveNodes(remove), false).await;
            return Err(ProposeError::Refused(format!(
                "node {node_id} did not catch up with the log; it is not receiving it (check its log: \
                 cluster secret, master key, TLS certificates) and was not added"
            )));
        }
        let level = levels.of(node_id).unwrap_or(crate::level::UNLABELLED);
        if level < crate::level::own() {
            let remove: BTreeSet<NodeId> = [node_id].into();
            let _ = self.raft.change_membership(openraft::ChangeMembers::RemoveNodes(remove), false).await;
            return Err(ProposeError::Refused(format!(
                "node {node_id} runs an older release (level {level}) than the leader (level {}); \
                 upgrade it and add it again",
                crate::level::own()
            )));
        }
        let mut voters: BTreeSet<NodeId> = self.raft.metrics().borrow().membership_config.voter_ids().collect();
        voters.insert(node_id);
        self.raft.change_membership(voters, false).await.map_err(from_write_error)?;
        Ok(())
    }

    /// Removes a member (voter or learner) from the cluster.
    pub async fn remove_member(&self, node_id: NodeId) -> Result<(), ProposeError> {
        let membership = self.raft.metrics().borrow().membership_config.clone();
        let is_voter = membership.voter_ids().any(|v| v == node_id);
        if is_voter {
            let voters: BTreeSet<NodeId> = membership.voter_ids().filter(|v| *v != node_id).collect();
            if voters.is_empty() {
                return Err(ProposeError::Refused("cannot remove the last voter".into()));
            }
            self.raft.change_membership(voters, false).await.map_err(from_write_error)?;
        } else if membership.membership().get_node(&node_id).is_some() {
            let remove: BTreeSet<NodeId> = [node_id].into();
            self.raft
                .change_membership(openraft::ChangeMembers::RemoveNodes(remove), false)
                .await
                .map_err(from_write_error)?;
        } else {
            return Err(ProposeError::Refused(format!("node {node_id} is not a member")));
        }
        Ok(())
    }

    /// Every member (voters and learners), from the membership config.
    pub fn member_ids(&self) -> Vec<NodeId> {
        self.raft.metrics().borrow().membership_config.membership().nodes().map(|(id, _)| *id).collect()
    }

    /// The address of a member, from the membership config.
    pub fn member_addr(&self, node_id: NodeId) -> Option<String> {
        self.raft.metrics().borrow().membership_config.membership().get_node(&node_id).map(|n| n.addr.clone())
    }

    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().state == ServerState::Leader
    }

    /// A snapshot of this node's view of the cluster.
    pub fn view(&self) -> RaftView {
        let m: RaftMetrics = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let replication = m.replication.clone().unwrap_or_default();
        let members = membership
            .nodes()
            .map(|(id, node)| MemberView {
                node_id: *id,
                addr: node.addr.clone(),
                voter: voters.contains(id),
                matched_index: replication.get(id).and_then(|l| l.map(|l| l.index)),
                last_contact_ms: if m.state != ServerState::Leader {
                    None
                } else if *id == m.id {
                    Some(0)
                } else {
                    self.contact.millis_since(*id)
                },
            })
            .collect();
        RaftView {
            node_id: m.id,
            leader_id: m.current_leader,
            is_leader: m.state == ServerState::Leader,
            term: m.current_term,
            last_log_index: m.last_log_index,
            applied_index: m.last_applied.map(|l| l.index),
            committed_index: log_store::committed_index(&self.store),
            snapshot_index: m.snapshot.map(|l| l.index),
            purged_index: m.purged.map(|l| l.index),
            members,
        }
    }

    /// Subscribes to changes of leadership and application progress.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<RaftMetrics> {
        self.raft.metrics()
    }

    /// Stops the Raft node.
    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_new_leader;

    #[test]
    fn a_leader_reelected_in_a_later_term_counts_as_new() {
        // Forwarded to node 3 at term 116, which answered "not the leader".
        assert!(!is_new_leader(None, 117, 3, 116), "no leader known yet");
        assert!(!is_new_leader(Some(3), 116, 3, 116), "the same leadership that said no");
        assert!(is_new_leader(Some(3), 118, 3, 116), "node 3 lost its term and won it back");
        assert!(is_new_leader(Some(1), 116, 3, 116), "another node leads");
        assert!(is_new_leader(Some(1), 118, 3, 116));
    }
}
