//! Eager replication: the leader sends a new entry to an idle follower while its own log sync
//! runs, so the two syncs overlap instead of following each other.
//!
//! openraft 0.9's core awaits the leader's own log flush before it hands an entry to its
//! replication streams, so a lone write pays the leader's sync, then the follower's. Raft allows
//! the leader to write its log in parallel with replicating (Raft thesis, section 10.2.1): an
//! entry counts toward the commit only through acknowledged, synced copies, and the leader's own
//! copy still counts only after its sync. This module sends, from `LogStore::append`, the
//! AppendEntries the leader's replication stream will send a moment later: the leader's
//! committed vote, the entry's true predecessor, the entries just written (unsynced) and the
//! commit index last saved. A follower handles it as any AppendEntries (in any order with the
//! stream's own: Raft's followers accept reordered and repeated messages), so when the stream's
//! copy arrives the entry is already there and synced, and the answer is immediate.
//!
//! It sends only to followers whose replication stream has no AppendEntries in flight and to
//! which no eager send is in flight: under load the streams are busy and batch on their own, so
//! the extra message would only cost CPU. Answers are dropped; progress is the stream's.
//!
//! It must not send anything but the leader's own entries under the leader's committed vote,
//! nor entries not yet written to this node's log, nor decide anything from an answer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};

use crate::ids::NodeId;
use crate::raft::network::PeerNetwork;
use crate::raft::{AppendEntriesRequest, BasicNode, Entry, LogId, RaftMetrics, Vote};

/// The largest encoded size of entries sent eagerly: a lone write's entry is small; a large
/// batch goes only through the stream.
pub const MAX_EAGER_BYTES: usize = 64 * 1024;

/// How long an eager send may take before it is dropped (the stream sends the entry anyway).
const EAGER_TIMEOUT: Duration = Duration::from_millis(500);

/// AppendEntries in flight per target, counted by the replication streams' connections and by
/// this module's sends.
#[derive(Debug, Clone, Default)]
pub struct InFlight(Arc<Mutex<HashMap<NodeId, (u32, bool)>>>);

impl InFlight {
    /// Counts one AppendEntries to `node` (a stream's or an eager one) until the guard drops.
    pub fn count(&self, node: NodeId) -> CountGuard {
        if let Ok(mut m) = self.0.lock() {
            m.entry(node).or_default().0 += 1;
        }
        CountGuard { inflight: self.clone(), node, eager: false }
    }

    /// Marks an eager send to `node` in flight, if `node` is idle: no AppendEntries and no
    /// eager send in flight. The guard clears the mark.
    fn try_eager(&self, node: NodeId) -> Option<CountGuard> {
        let mut m = self.0.lock().ok()?;
        let slot = m.entry(node).or_default();
        if slot.0 > 0 || slot.1 {
            return None;
        }
        slot.1 = true;
        Some(CountGuard { inflight: self.clone(), node, eager: true })
    }
}

/// One AppendEntries in flight to `node`, counted until the guard drops: a stream's (or any)
/// from [`InFlight::count`], or the mark of an eager send.
pub struct CountGuard {
    inflight: InFlight,
    node: NodeId,
    eager: bool,
}

impl Drop for CountGuard {
    fn drop(&mut self) {
        if let Ok(mut m) = self.inflight.0.lock() {
            if let Some(slot) = m.get_mut(&self.node) {
                if self.eager {
                    slot.1 = false;
                } else {
                    slot.0 = slot.0.saturating_sub(1);
                }
            }
        }
    }
}

/// What eager sending needs from the running node: who it is, its peers and how to reach them.
pub struct Eager {
    me: NodeId,
    network: PeerNetwork,
    metrics: tokio::sync::watch::Receiver<RaftMetrics>,
    /// `raftcron_raft_eager_appends_total`.
    sent: prometheus::IntCounter,
}

impl std::fmt::Debug for Eager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Eager").field("me", &self.me).finish_non_exhaustive()
    }
}

/// Whether `entries`, about to be appended after `prev`, are this node's own entries as the
/// leader of `vote`'s term: the vote is committed and names this node, and every entry was
/// proposed under it, right after `prev`.
pub fn is_leaders_own(me: NodeId, vote: &Vote, prev: Option<LogId>, entries: &[Entry]) -> bool {
    let Some(first) = entries.first() else { return false };
    vote.is_committed()
        && vote.leader_id().voted_for() == Some(me)
        && entries.iter().all(|e| e.log_id.leader_id == *vote.leader_id())
        && prev.map_or(0, |p| p.index + 1) == first.log_id.index
}

impl Eager {
    pub fn new(
        me: NodeId,
        network: PeerNetwork,
        metrics: tokio::sync::watch::Receiver<RaftMetrics>,
        sent: prometheus::IntCounter,
    ) -> Eager {
        Eager { me, network, metrics, sent }
    }

    pub fn me(&self) -> NodeId {
        self.me
    }

    /// Sends `entries` (written, not yet synced) to every idle peer of the membership, in the
    /// background, and says to how many. The caller checked [`is_leaders_own`].
    pub fn send(&self, vote: Vote, prev: Option<LogId>, entries: Vec<Entry>, committed: Option<LogId>) -> usize {
        let peers: Vec<(NodeId, BasicNode)> = {
            let m = self.metrics.borrow();
            m.membership_config
                .membership()
                .nodes()
                .filter(|(id, _)| **id != self.me)
                .map(|(id, n)| (*id, n.clone()))
                .collect()
        };
        let req = AppendEntriesRequest { vote, prev_log_id: prev, leader_commit: committed, entries };
        let mut sent = 0;
        for (id, node) in peers {
            let Some(guard) = self.network.inflight.try_eager(id) else { continue };
            self.sent.inc();
            sent += 1;
            let mut factory = self.network.clone();
            let req = req.clone();
            tokio::spawn(async move {
                let mut conn = factory.new_client(id, &node).await;
                // The answer is the stream's business: it sends the same entry and reads its own.
                let _ = conn.append_entries(req, RPCOption::new(EAGER_TIMEOUT)).await;
                drop(guard);
            });
        }
        sent
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, EntryPayload};

    use super::*;

    fn entry(term: u64, leader: NodeId, index: u64) -> Entry {
        Entry { log_id: LogId::new(CommittedLeaderId::new(term, leader), index), payload: EntryPayload::Blank }
    }

    fn id(term: u64, leader: NodeId, index: u64) -> Option<LogId> {
        Some(LogId::new(CommittedLeaderId::new(term, leader), index))
    }

    #[test]
    fn only_the_leaders_own_entries_right_after_its_last_go_eagerly() {
        let leading = Vote::new_committed(5, 1);
        let own = [entry(5, 1, 11), entry(5, 1, 12)];
        assert!(is_leaders_own(1, &leading, id(4, 2, 10), &own), "a leader's new entries after an older term's");
        assert!(is_leaders_own(1, &leading, None, &[entry(5, 1, 0)]), "the first entry of an empty log");

        assert!(!is_leaders_own(2, &leading, id(4, 2, 10), &own), "a vote for another node");
        assert!(!is_leaders_own(1, &Vote::new(5, 1), id(4, 2, 10), &own), "a candidate's vote is not committed");
        assert!(!is_leaders_own(1, &leading, id(4, 2, 10), &[entry(4, 2, 11)]), "a former leader's entry");
        assert!(
            !is_leaders_own(1, &leading, id(4, 2, 10), &[entry(5, 1, 11), entry(4, 2, 12)]),
            "a batch holding an entry of another term"
        );
        assert!(!is_leaders_own(1, &leading, id(4, 2, 9), &own), "a gap after the last entry");
        assert!(!is_leaders_own(1, &leading, id(5, 1, 11), &own), "an overlap with the last entry");
        assert!(!is_leaders_own(1, &leading, id(4, 2, 10), &[]), "nothing to send");
    }

    #[test]
    fn an_eager_send_goes_only_to_a_peer_with_nothing_in_flight() {
        let inflight = InFlight::default();
        let first = inflight.try_eager(2).expect("an idle peer");
        assert!(inflight.try_eager(2).is_none(), "one eager send at a time");
        assert!(inflight.try_eager(3).is_some(), "another peer is idle");
        drop(first);
        let stream = inflight.count(2);
        assert!(inflight.try_eager(2).is_none(), "the stream's AppendEntries is in flight");
        let second = inflight.count(2);
        drop(stream);
        assert!(inflight.try_eager(2).is_none(), "one stream AppendEntries still in flight");
        drop(second);
        assert!(inflight.try_eager(2).is_some(), "idle again");
    }
}
