//! Shards and their assignment to nodes (`docs/design/firing.md`, "Shards and assignment").
//!
//! Jobs map to a fixed number `S` of shards with [`shard_of`]. Each shard has at most one owner
//! and an epoch; the owner fires the shard's jobs, and every claim it commits carries the epoch,
//! so a claim made under an old owner is rejected once the shard has moved.
//!
//! The leader computes changes with [`rebalance`], a pure function of (current assignment, live
//! nodes), and commits them as one command; every replica applies them with [`apply_moves`]
//! (after [`check_moves`], so that moves computed against an older assignment change nothing).
//!
//! # Invariants of [`rebalance`]
//!
//! With `n = live.len() > 0`, after applying the moves it returns:
//!
//! 1. every shard is owned by exactly one node, and that node is in `live`;
//! 2. every live node owns `floor(S/n)` or `ceil(S/n)` shards;
//! 3. movement is minimal: only shards of nodes not in `live`, unowned shards, and the surplus
//!    that must leave overloaded live nodes move; nothing else. The number of moves is therefore
//!    `dead + unowned + sum over live nodes with c > floor(S/n) of (c - floor(S/n) - 1)
//!    + max(0, k - S mod n)`, where `c` is a node's current count and `k` the number of live
//!    nodes with `c > floor(S/n)` (at most `S mod n` of them may keep `ceil(S/n)`);
//! 4. moved shards go to the least-loaded nodes below their target, and no live node both gives
//!    and receives shards;
//! 5. every moved shard's epoch grows by exactly one; other shards keep theirs. Epochs only grow;
//! 6. the result is deterministic: it depends only on the arguments (ordered collections only;
//!    ties are broken by node id, then shard id), so every replica and every retry computes the
//!    same moves.
//!
//! With no live node it returns no moves: an empty cluster view never unassigns anything.
//!
//! # What this module does not know
//!
//! It reads no clock and knows nothing about leases or their timing. Deciding which nodes are
//! live (a node counts as dead only after the leader waited `lease + safety_margin` on its own
//! monotonic clock since the last renewal it committed for it) is the caller's job; moving a
//! shard away from a node whose lease may still run would let two nodes fire the same shard.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ids::{JobId, NodeId};

/// A shard number, `0..S`.
pub type ShardId = u32;

/// A shard's ownership generation: grows by one on every change of owner, never decreases.
pub type Epoch = u64;

/// Who owns one shard, and since which generation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardOwner {
    /// `None` until the shard is first assigned.
    pub node: Option<NodeId>,
    pub epoch: Epoch,
}

/// The owner of every shard; the index in `owners` is the shard id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    pub owners: Vec<ShardOwner>,
}

impl Assignment {
    /// `shard_count` unowned shards, all at epoch 0.
    pub fn new(shard_count: u32) -> Assignment {
        let len = usize::try_from(shard_count).unwrap_or(usize::MAX);
        Assignment { owners: vec![ShardOwner { node: None, epoch: 0 }; len] }
    }

    /// The number of shards, `S`.
    pub fn shard_count(&self) -> u32 {
        u32::try_from(self.owners.len()).unwrap_or(u32::MAX)
    }

    /// The owner and epoch of one shard; `None` if `shard` is out of range.
    pub fn owner(&self, shard: ShardId) -> Option<&ShardOwner> {
        self.owners.get(usize::try_from(shard).ok()?)
    }

    /// The shards `node` owns, ascending.
    pub fn owned_by(&self, node: NodeId) -> Vec<ShardId> {
        self.shards().filter(|(_, o)| o.node == Some(node)).map(|(shard, _)| shard).collect()
    }

    /// How many shards each node owns. Nodes owning no shard do not appear.
    pub fn counts(&self) -> BTreeMap<NodeId, usize> {
        let mut counts = BTreeMap::new();
        for node in self.owners.iter().filter_map(|o| o.node) {
            *counts.entry(node).or_insert(0) += 1;
        }
        counts
    }

    /// `(shard id, owner)` for every shard, ascending.
    fn shards(&self) -> impl Iterator<Item = (ShardId, &ShardOwner)> {
        (0..=ShardId::MAX).zip(self.owners.iter())
    }
}

/// One change of a shard's owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardMove {
    pub shard: ShardId,
    /// The owner before the move (`None`: the shard was unowned).
    pub from: Option<NodeId>,
    /// The owner after the move. [`rebalance`] always sets it.
    pub to: Option<NodeId>,
    /// The shard's epoch after the move: the epoch before it plus one.
    pub new_epoch: Epoch,
}

/// Why a list of moves does not fit an assignment (see [`check_moves`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum MoveError {
    #[error("shard {shard} does not exist (there are {shard_count} shards)")]
    UnknownShard { shard: ShardId, shard_count: u32 },
    #[error("shard {shard} is owned by {current:?}, not {from:?}")]
    OwnerMismatch { shard: ShardId, current: Option<NodeId>, from: Option<NodeId> },
    #[error("shard {shard} is at epoch {current}; a move must bring it to the next one, not {new_epoch}")]
    EpochNotNext { shard: ShardId, current: Epoch, new_epoch: Epoch },
}

/// The shard of a job: `u64::from_be_bytes(sha256(job uuid bytes)[..8]) % shard_count`.
///
/// This must never change: the shard of every existing job is derived from it on every node, so
/// a different function would move every job to another shard (and owner) at once, in the middle
/// of claims made under the old mapping. `shard_count` is fixed at cluster formation for the same
/// reason. A `shard_count` of 0 (not a valid cluster) yields shard 0.
pub fn shard_of(job: JobId, shard_count: u32) -> ShardId {
    let digest = Sha256::digest(job.0.as_bytes());
    let mut prefix = [0u8; 8];
    for (dst, src) in prefix.iter_mut().zip(digest.iter()) {
        *dst = *src;
    }
    let shard = u64::from_be_bytes(prefix).checked_rem(u64::from(shard_count)).unwrap_or(0);
    // The remainder is below `shard_count`, so it fits.
    ShardId::try_from(shard).unwrap_or(0)
}

/// The minimal moves that make `current` balanced over `live` (see the module documentation for
/// the invariants). Moves are ordered by shard id; each shard appears at most once.
///
/// How: nodes are ranked by current count (descending, then node id); the first `S mod n` may
/// keep `ceil(S/n)` shards, the others `floor(S/n)`. A node above its target gives up its
/// highest-numbered shards. Those, and the shards of nodes not in `live` and unowned ones, are
/// handed out in shard id order, each to the node with the fewest shards (then lowest id) that is
/// still below its target.
pub fn rebalance(current: &Assignment, live: &BTreeSet<NodeId>) -> Vec<ShardMove> {
    let node_count = live.len();
    let shard_count = current.owners.len();
    if node_count == 0 || shard_count == 0 {
        return Vec::new();
    }
    let base = shard_count / node_count;
    let with_extra = shard_count % node_count;

    // Shards of each live node (ascending), and those that must move in any case.
    let mut held: BTreeMap<NodeId, Vec<ShardId>> = live.iter().map(|&node| (node, Vec::new())).collect();
    let mut pool: Vec<(ShardId, &ShardOwner)> = Vec::new();
    for (shard, owner) in current.shards() {
        match owner.node.and_then(|node| held.get_mut(&node)) {
            Some(shards) => shards.push(shard),
            None => pool.push((shard, owner)),
        }
    }

    // The nodes that already hold the most keep `base + 1`: that keeps the most shards in place.
    let mut ranked: Vec<(NodeId, usize)> = held.iter().map(|(&node, shards)| (node, shards.len())).collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let targets: BTreeMap<NodeId, usize> = ranked
        .iter()
        .enumerate()
        .map(|(rank, &(node, _))| (node, if rank < with_extra { base + 1 } else { base }))
        .collect();

    // Surplus leaves overloaded nodes; underloaded nodes queue up as receivers by (count, id).
    let mut receivers: BTreeSet<(usize, NodeId)> = BTreeSet::new();
    for (node, shards) in &mut held {
        let target = targets.get(node).copied().unwrap_or(base);
        if shards.len() > target {
            for shard in shards.split_off(target) {
                if let Some(owner) = current.owner(shard) {
                    pool.push((shard, owner));
                }
            }
        } else if shards.len() < target {
            receivers.insert((shards.len(), *node));
        }
    }
    pool.sort_by_key(|&(shard, _)| shard);

    let mut moves = Vec::with_capacity(pool.len());
    for (shard, owner) in pool {
        let Some((count, node)) = receivers.pop_first() else {
            // Unreachable: the targets add up to S, so the deficits add up to the pool's size.
            break;
        };
        moves.push(ShardMove { shard, from: owner.node, to: Some(node), new_epoch: owner.epoch.saturating_add(1) });
        let count = count + 1;
        if count < targets.get(&node).copied().unwrap_or(base) {
            receivers.insert((count, node));
        }
    }
    moves
}

/// Checks that `moves`, applied in order, fit `a`: each names an existing shard, its current
/// owner as `from`, and the epoch after the current one as `new_epoch`. A replica applying a
/// committed list of moves calls this first, so that moves computed against an assignment that
/// has changed since (e.g. by a command of an earlier leader committed after a newer one)
/// change nothing.
pub fn check_moves(a: &Assignment, moves: &[ShardMove]) -> Result<(), MoveError> {
    // What earlier moves in the list did, so that the list is checked as it will be applied.
    let mut moved: BTreeMap<ShardId, ShardOwner> = BTreeMap::new();
    for m in moves {
        let current = match moved.get(&m.shard) {
            Some(owner) => owner,
            None => a.owner(m.shard).ok_or(MoveError::UnknownShard { shard: m.shard, shard_count: a.shard_count() })?,
        };
        if current.node != m.from {
            return Err(MoveError::OwnerMismatch { shard: m.shard, current: current.node, from: m.from });
        }
        if Some(m.new_epoch) != current.epoch.checked_add(1) {
            return Err(MoveError::EpochNotNext { shard: m.shard, current: current.epoch, new_epoch: m.new_epoch });
        }
        moved.insert(m.shard, ShardOwner { node: m.to, epoch: m.new_epoch });
    }
    Ok(())
}

/// Applies `moves` in order: each sets its shard's owner to `to` and epoch to `new_epoch`.
/// It does not validate them (see [`check_moves`]); moves naming a shard that does not exist are
/// skipped.
pub fn apply_moves(a: &mut Assignment, moves: &[ShardMove]) {
    for m in moves {
        let Some(owner) = usize::try_from(m.shard).ok().and_then(|i| a.owners.get_mut(i)) else {
            continue;
        };
        owner.node = m.to;
        owner.epoch = m.new_epoch;
    }
}

#[cfg(test)]
#[path = "assignment_tests.rs"]
mod tests;
