//! Release levels: which replicated data a node's build can read, told to every peer.
//!
//! A level grows when a release adds something to the replicated state that an older release
//! cannot read. Level 1 is every release before levels existed; level 2 reads schedules with a
//! millisecond offset (`model::schedule`, `+<n>ms`). A write that needs level 2 is harmless to
//! a node of level 1 only as long as it never reaches it: that node would judge the job's
//! claims otherwise than the others, and its state would part from theirs.
//!
//! So every node-to-node call carries [`HEADER`] with this build's level, and every answer to
//! one carries it back (`raft::network`, `raft::rpc`). The leader remembers what each peer last
//! answered ([`PeerLevels`]) and proposes a write that needs more than level 1 only once every
//! member has answered with at least that much (`cluster::Cluster::admit_level`); a node joins
//! only if it runs at least the leader's level (`raft::handle::RaftHandle::add_voter`). Once
//! every member has answered with a level, the leader raises the cluster's replicated level
//! (`state::CommandBody::RaiseLevel`, `cluster::level_raise`): data of that level no longer
//! waits for the answers, so a member stopped later holds nothing back, and a node whose build
//! is below the cluster's level refuses to start on its state (`server::run`). Going back to an
//! older release after that is not supported.
//!
//! This module keeps levels and compares them; it sends nothing and decides nothing about what
//! a write needs (`state::CommandBody::level`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::ids::NodeId;

/// The header that carries a node's level on node-to-node calls and their answers.
pub const HEADER: &str = "x-raftcron-level";

/// The level of this build.
pub const LEVEL: u32 = 2;

/// The level of a peer that sends no [`HEADER`]: a release from before levels existed.
pub const UNLABELLED: u32 = 1;

/// The level this node tells its peers: [`LEVEL`], or, in a build with failpoints, what the
/// `advertise-level` failpoint returns (`FAILPOINTS=advertise-level=return(1)`), so tests can
/// stand a node of an older release in a cluster.
pub fn own() -> u32 {
    fail::fail_point!("advertise-level", |v| v.and_then(|v| v.parse().ok()).unwrap_or(LEVEL));
    LEVEL
}

/// A peer's level from the text of its [`HEADER`] (absent: [`UNLABELLED`]; unreadable: the same,
/// the most careful reading).
pub fn parse(header: Option<&str>) -> u32 {
    header.and_then(|v| v.trim().parse().ok()).filter(|l| *l >= UNLABELLED).unwrap_or(UNLABELLED)
}

/// The level each peer last answered with, as this node saw it. Kept in memory: a new leader
/// learns its followers' levels from their first answers, within a heartbeat.
#[derive(Debug, Clone, Default)]
pub struct PeerLevels(Arc<Mutex<HashMap<NodeId, u32>>>);

/// Why a write that needs a level cannot be proposed yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Short {
    /// The member has not answered this node since this node started.
    Unknown(NodeId),
    /// The member answered with a lower level.
    Below { node: NodeId, level: u32 },
}

impl std::fmt::Display for Short {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Short::Unknown(node) => {
                write!(
                    f,
                    "node {node} has not answered the leader yet, so its release is not known; retry once it is up"
                )
            }
            Short::Below { node, level } => write!(
                f,
                "node {node} runs an older release (level {level}) that cannot read it; upgrade every node first"
            ),
        }
    }
}

impl PeerLevels {
    /// Notes what `node` answered with.
    pub fn record(&self, node: NodeId, level: u32) {
        if let Ok(mut m) = self.0.lock() {
            m.insert(node, level);
        }
    }

    /// What `node` last answered with, if it ever did.
    pub fn of(&self, node: NodeId) -> Option<u32> {
        self.0.lock().ok()?.get(&node).copied()
    }

    /// The first of `members` not known to read data of level `needed`: this node `me` by its
    /// own level ([`own`]), the others by their last answers.
    pub fn short_of(&self, members: impl IntoIterator<Item = NodeId>, me: NodeId, needed: u32) -> Option<Short> {
        if needed <= UNLABELLED {
            return None;
        }
        if own() < needed {
            return Some(Short::Below { node: me, level: own() });
        }
        members.into_iter().filter(|m| *m != me).find_map(|node| match self.of(node) {
            None => Some(Short::Unknown(node)),
            Some(level) if level < needed => Some(Short::Below { node, level }),
            Some(_) => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_without_the_header_or_with_nonsense_is_the_oldest_level() {
        assert_eq!(parse(None), UNLABELLED);
        assert_eq!(parse(Some("x")), UNLABELLED);
        assert_eq!(parse(Some("0")), UNLABELLED);
        assert_eq!(parse(Some(" 2 ")), 2);
        assert_eq!(parse(Some("7")), 7);
    }

    #[test]
    fn a_write_of_a_higher_level_waits_for_every_member() {
        let levels = PeerLevels::default();
        // Level 1 needs nobody's answer.
        assert_eq!(levels.short_of([1, 2, 3], 1, 1), None);
        assert_eq!(levels.short_of([1, 2, 3], 1, 2), Some(Short::Unknown(2)));
        levels.record(2, 2);
        levels.record(3, 1);
        assert_eq!(levels.short_of([1, 2, 3], 1, 2), Some(Short::Below { node: 3, level: 1 }));
        let text = Short::Below { node: 3, level: 1 }.to_string();
        assert!(text.contains("node 3") && text.contains("upgrade"), "{text}");
        // An upgraded node says so in its next answer.
        levels.record(3, 2);
        assert_eq!(levels.short_of([1, 2, 3], 1, 2), None);
        // A newer member reads it too; the leader goes by its own build.
        levels.record(4, 3);
        assert_eq!(levels.short_of([1, 2, 3, 4], 1, 2), None);
        assert_eq!(levels.short_of([1, 2, 3, 4], 1, LEVEL + 1), Some(Short::Below { node: 1, level: LEVEL }));
    }
}
