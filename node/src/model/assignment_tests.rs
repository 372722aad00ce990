#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use uuid::Uuid;

use super::*;

fn live(nodes: &[NodeId]) -> BTreeSet<NodeId> {
    nodes.iter().copied().collect()
}

/// What the module documentation promises the number of moves is: the shards that must move.
fn minimal_moves(a: &Assignment, live: &BTreeSet<NodeId>) -> usize {
    let (s, n) = (a.owners.len(), live.len());
    if n == 0 || s == 0 {
        return 0;
    }
    let (base, with_extra) = (s / n, s % n);
    let orphans = a.owners.iter().filter(|o| !o.node.is_some_and(|node| live.contains(&node))).count();
    let counts = a.counts();
    let over: Vec<usize> =
        live.iter().map(|node| counts.get(node).copied().unwrap_or(0)).filter(|&c| c > base).collect();
    let surplus: usize = over.iter().map(|c| c - base - 1).sum::<usize>() + over.len().saturating_sub(with_extra);
    orphans + surplus
}

/// Rebalances `a` over `live`, checks every promise of `rebalance` about the result, applies the
/// moves and returns them.
fn step(a: &mut Assignment, live: &BTreeSet<NodeId>) -> Vec<ShardMove> {
    let before = a.clone();
    let moves = rebalance(&before, live);

    // Deterministic, and minimal per the formula.
    assert_eq!(rebalance(&before.clone(), &live.clone()), moves);
    assert_eq!(moves.len(), minimal_moves(&before, live), "moves: {moves:?}");

    // Each move is consistent with `before`, in shard order, to a live node; no live node both
    // gives and receives.
    assert_eq!(check_moves(&before, &moves), Ok(()));
    assert!(moves.windows(2).all(|w| w[0].shard < w[1].shard));
    let givers: BTreeSet<NodeId> = moves.iter().filter_map(|m| m.from).filter(|n| live.contains(n)).collect();
    let takers: BTreeSet<NodeId> = moves.iter().filter_map(|m| m.to).collect();
    assert!(takers.is_subset(live));
    assert!(givers.is_disjoint(&takers), "givers {givers:?} takers {takers:?}");

    apply_moves(a, &moves);

    let moved: BTreeMap<ShardId, &ShardMove> = moves.iter().map(|m| (m.shard, m)).collect();
    if live.is_empty() {
        assert!(moves.is_empty());
        assert_eq!(*a, before);
        return moves;
    }
    // Every shard is owned by a live node; epochs grow by one exactly on moved shards.
    for (shard, (old, new)) in (0..).zip(before.owners.iter().zip(&a.owners)) {
        assert!(new.node.is_some_and(|n| live.contains(&n)), "shard {shard} owned by {:?}", new.node);
        match moved.get(&shard) {
            Some(m) => {
                assert_eq!(new.epoch, old.epoch + 1);
                assert_eq!(m.from, old.node);
                assert_ne!(new.node, old.node);
            }
            None => assert_eq!(new, old),
        }
    }
    // Balanced.
    let (s, n) = (a.owners.len(), live.len());
    let counts = a.counts();
    assert!(counts.keys().all(|node| live.contains(node)));
    for node in live {
        let c = counts.get(node).copied().unwrap_or(0);
        assert!(c == s / n || c == s.div_ceil(n), "node {node} owns {c} of {s} shards over {n} nodes");
    }
    // Idempotent: a balanced assignment needs no moves.
    assert_eq!(rebalance(a, live), Vec::new());
    moves
}

fn sorted_counts(a: &Assignment) -> Vec<usize> {
    let mut counts: Vec<usize> = a.counts().into_values().collect();
    counts.sort_unstable();
    counts
}

#[test]
fn a_new_assignment_is_unowned_at_epoch_0() {
    let a = Assignment::new(4);
    assert_eq!(a.shard_count(), 4);
    assert!(a.owners.iter().all(|o| *o == ShardOwner { node: None, epoch: 0 }));
    assert!(a.counts().is_empty());
    assert!(a.owned_by(1).is_empty());
    assert_eq!(a.owner(3), Some(&ShardOwner { node: None, epoch: 0 }));
    assert_eq!(a.owner(4), None);
}

#[test]
fn from_empty_to_three_nodes_every_shard_is_owned_85_85_86_at_epoch_1() {
    let mut a = Assignment::new(256);
    let moves = step(&mut a, &live(&[1, 2, 3]));
    assert_eq!(moves.len(), 256);
    assert!(moves.iter().all(|m| m.from.is_none() && m.new_epoch == 1));
    assert_eq!(sorted_counts(&a), vec![85, 85, 86]);
    assert!(a.owners.iter().all(|o| o.node.is_some() && o.epoch == 1));
    let owned: usize = [1, 2, 3].iter().map(|&n| a.owned_by(n).len()).sum();
    assert_eq!(owned, 256);
}

#[test]
fn shards_are_dealt_round_robin_from_empty() {
    let mut a = Assignment::new(6);
    let moves = step(&mut a, &live(&[2, 5]));
    let owners: Vec<Option<NodeId>> = moves.iter().map(|m| m.to).collect();
    assert_eq!(owners, [2, 5, 2, 5, 2, 5].map(Some));
    assert_eq!(a.owned_by(2), vec![0, 2, 4]);
    assert_eq!(a.owned_by(5), vec![1, 3, 5]);
}

#[test]
fn when_a_node_dies_only_its_shards_move() {
    let mut a = Assignment::new(256);
    step(&mut a, &live(&[1, 2, 3]));
    for dead in [1, 2, 3] {
        let mut b = a.clone();
        let lost = b.owned_by(dead);
        let survivors: Vec<NodeId> = [1, 2, 3].into_iter().filter(|&n| n != dead).collect();
        let moves = step(&mut b, &live(&survivors));
        assert_eq!(moves.len(), lost.len());
        assert_eq!(moves.iter().map(|m| m.shard).collect::<Vec<_>>(), lost);
        assert!(moves.iter().all(|m| m.from == Some(dead) && m.new_epoch == 2));
        assert_eq!(sorted_counts(&b), vec![128, 128]);
        for shard in lost {
            assert_eq!(b.owner(shard).unwrap().epoch, 2);
        }
        for (old, new) in a.owners.iter().zip(&b.owners) {
            if old.node != Some(dead) {
                assert_eq!(old, new);
            }
        }
    }
}

#[test]
fn when_a_node_joins_it_takes_exactly_the_surplus_of_the_others() {
    let mut a = Assignment::new(256);
    step(&mut a, &live(&[1, 2, 3]));
    let before = a.counts();
    let moves = step(&mut a, &live(&[1, 2, 3, 4]));
    // 85 + 85 + 86 -> 64 each: 21 + 21 + 22 move, all to the new node.
    assert_eq!(moves.len(), 64);
    assert!(moves.iter().all(|m| m.to == Some(4)));
    for (node, count) in before {
        let gave = moves.iter().filter(|m| m.from == Some(node)).count();
        assert_eq!(gave, count - 64, "node {node}");
    }
    assert_eq!(a.counts(), BTreeMap::from([(1, 64), (2, 64), (3, 64), (4, 64)]));
}

#[test]
fn a_balanced_assignment_needs_no_moves() {
    let mut a = Assignment::new(256);
    let nodes = live(&[1, 2, 3]);
    step(&mut a, &nodes);
    let moves = rebalance(&a, &nodes);
    assert!(moves.is_empty());
    apply_moves(&mut a, &moves);
    assert!(rebalance(&a, &nodes).is_empty());
}

#[test]
fn with_no_live_node_nothing_moves() {
    assert!(rebalance(&Assignment::new(256), &BTreeSet::new()).is_empty());
    let mut a = Assignment::new(16);
    step(&mut a, &live(&[1, 2]));
    assert!(rebalance(&a, &BTreeSet::new()).is_empty());
    assert!(rebalance(&Assignment::new(0), &live(&[1])).is_empty());
}

#[test]
fn dead_and_unowned_shards_go_to_the_least_loaded_nodes_first() {
    // 12 shards: node 1 holds 0..6, node 2 holds 6..8, node 9 (dead) holds 8..10, 10..12 unowned.
    let mut a = Assignment::new(12);
    for (i, o) in a.owners.iter_mut().enumerate() {
        o.node = match i {
            0..6 => Some(1),
            6..8 => Some(2),
            8..10 => Some(9),
            _ => None,
        };
        o.epoch = 7;
    }
    let moves = step(&mut a, &live(&[1, 2, 3]));
    // Targets 4/4/4: node 1 gives its highest shards 4 and 5; node 3 (0 shards) takes first.
    let expected = [(4, 1, 3), (5, 1, 3), (8, 9, 2), (9, 9, 3), (10, 0, 2), (11, 0, 3)];
    let got: Vec<(ShardId, NodeId, NodeId)> =
        moves.iter().map(|m| (m.shard, m.from.unwrap_or(0), m.to.unwrap_or(0))).collect();
    assert_eq!(got, expected);
    assert!(moves.iter().all(|m| m.new_epoch == 8));
}

#[test]
fn the_nodes_holding_the_most_keep_the_extra_shard() {
    // 10 shards over 3 nodes: 4/3/3. Node 3 holds 5, so it is the one that keeps 4.
    let mut a = Assignment::new(10);
    let holders = [3, 3, 3, 3, 3, 1, 1, 1, 2, 2];
    for (o, h) in a.owners.iter_mut().zip(holders) {
        o.node = Some(h);
    }
    let moves = step(&mut a, &live(&[1, 2, 3]));
    assert_eq!(moves, vec![ShardMove { shard: 4, from: Some(3), to: Some(2), new_epoch: 1 }]);
}

#[test]
fn check_moves_rejects_moves_computed_against_another_assignment() {
    let mut a = Assignment::new(8);
    let moves = rebalance(&a, &live(&[1, 2]));
    assert_eq!(check_moves(&a, &moves), Ok(()));
    apply_moves(&mut a, &moves);
    // Applying the same list twice: each move now names a stale owner.
    assert_eq!(check_moves(&a, &moves), Err(MoveError::OwnerMismatch { shard: 0, current: Some(1), from: None }));
    let skip = ShardMove { shard: 0, from: Some(1), to: Some(2), new_epoch: 3 };
    assert_eq!(check_moves(&a, &[skip]), Err(MoveError::EpochNotNext { shard: 0, current: 1, new_epoch: 3 }));
    let back = ShardMove { shard: 0, from: Some(1), to: Some(2), new_epoch: 1 };
    assert_eq!(check_moves(&a, &[back]), Err(MoveError::EpochNotNext { shard: 0, current: 1, new_epoch: 1 }));
    let unknown = ShardMove { shard: 8, from: None, to: Some(2), new_epoch: 1 };
    assert_eq!(check_moves(&a, &[unknown]), Err(MoveError::UnknownShard { shard: 8, shard_count: 8 }));
    // A list is checked in order: a second move of the same shard starts where the first ended.
    let first = ShardMove { shard: 0, from: Some(1), to: Some(2), new_epoch: 2 };
    let second = ShardMove { shard: 0, from: Some(2), to: Some(1), new_epoch: 3 };
    assert_eq!(check_moves(&a, &[first, second]), Ok(()));
    assert!(check_moves(&a, &[first, first]).is_err());
}

#[test]
fn apply_moves_skips_shards_that_do_not_exist() {
    let mut a = Assignment::new(2);
    apply_moves(&mut a, &[ShardMove { shard: 2, from: None, to: Some(1), new_epoch: 1 }]);
    assert_eq!(a, Assignment::new(2));
}

#[test]
fn assignments_survive_serde() {
    let mut a = Assignment::new(5);
    step(&mut a, &live(&[4, 7]));
    let json = serde_json::to_string(&a).unwrap();
    assert_eq!(serde_json::from_str::<Assignment>(&json).unwrap(), a);
    let bytes = bincode::serialize(&a).unwrap();
    assert_eq!(bincode::deserialize::<Assignment>(&bytes).unwrap(), a);
}

fn job(s: &str) -> JobId {
    JobId(Uuid::parse_str(s).unwrap())
}

#[test]
fn shard_of_is_a_fixed_function_of_the_job_id() {
    // Regression values, computed once (and checked with Python's hashlib). They must never
    // change: every existing job would move to another shard.
    let cases = [
        ("00000000-0000-0000-0000-000000000000", 213, 2, 3541),
        ("0f8e6a0c-2b1d-4c3e-9a7f-5d4c3b2a1908", 99, 1, 2147),
        ("6b1e3c2a-8d4f-4e5a-b6c7-d8e9f0a1b2c3", 32, 1, 1824),
        ("ffffffff-ffff-ffff-ffff-ffffffffffff", 9, 2, 9),
        ("3f2504e0-4f89-41d3-9a0c-0305e82c3301", 0, 2, 512),
    ];
    for (id, of_256, of_7, of_4096) in cases {
        assert_eq!(shard_of(job(id), 256), of_256, "{id}");
        assert_eq!(shard_of(job(id), 7), of_7, "{id}");
        assert_eq!(shard_of(job(id), 4096), of_4096, "{id}");
        assert_eq!(shard_of(job(id), 1), 0);
        assert_eq!(shard_of(job(id), 0), 0);
    }
}

/// splitmix64: a fixed stream of pseudo-random numbers, so that the test never flakes.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[test]
fn shard_of_spreads_random_job_ids_evenly() {
    let mut state = 42;
    let mut per_shard = [0usize; 256];
    for _ in 0..10_000 {
        let bytes = (u128::from(splitmix64(&mut state)) << 64 | u128::from(splitmix64(&mut state))).to_be_bytes();
        let id = JobId(uuid::Builder::from_random_bytes(bytes).into_uuid());
        per_shard[shard_of(id, 256) as usize] += 1;
    }
    // The mean is 39; 15 and 70 are about 4 and 5 standard deviations away.
    for (shard, &n) in per_shard.iter().enumerate() {
        assert!((15..=70).contains(&n), "shard {shard} got {n} jobs");
    }
}

fn arb_assignment() -> impl Strategy<Value = Assignment> {
    (1usize..=512).prop_flat_map(|s| {
        prop::collection::vec((prop::option::of(1u64..=9), 0u64..1_000), s).prop_map(|owners| Assignment {
            owners: owners.into_iter().map(|(node, epoch)| ShardOwner { node, epoch }).collect(),
        })
    })
}

proptest! {
    #[test]
    fn every_history_of_live_sets_stays_owned_balanced_and_minimal(
        shards in 1u32..=512,
        history in prop::collection::vec(prop::collection::btree_set(1u64..=9, 1..=7), 1..=12),
    ) {
        let mut a = Assignment::new(shards);
        for live in &history {
            // `step` checks ownership, balance, epochs, minimality, determinism and idempotence.
            step(&mut a, live);
        }
    }

    #[test]
    fn any_assignment_is_rebalanced_minimally(
        a in arb_assignment(),
        live in prop::collection::btree_set(1u64..=9, 0..=7),
    ) {
        // Owners include dead nodes and `None`, epochs are arbitrary, and `live` may be empty.
        let mut a = a;
        step(&mut a, &live);
    }
}
