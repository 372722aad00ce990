//! No duplicate delivery at the sink, by `Idempotency-Key`, except listed crash re-sends.
//!
//! A slot delivered more than once is excused only when all of these hold, and each excuse is
//! listed with its reason:
//! - a kill -9 or SIGSTOP of node N happened in the slot's send window: no earlier than
//!   [`BEFORE_MS`] before the first delivery (the request had left) and no later than
//!   [`RESULT_BOUND_MS`] after it (its result could not have been committed yet);
//! - N owned the job's shard around the first delivery (per the observer's shard tables);
//! - every later delivery arrived after that stop (it is the new owner's re-send);
//! - there are no more extra deliveries than such stops.
//!
//! Anything else is a violation. Duplicates whose claimant was cut off (or, when the cut took the
//! leader away, could commit nothing for want of a leader) by a partition (that
//! began no longer than a lease before the first delivery, and at most [`RESULT_BOUND_MS`]
//! after it) or by packet loss on every link (that held at some moment of that window) are
//! named as such: the cut-off owner still had a valid lease, sent, could not
//! record the result, and the next owner re-sent. The documented guarantee does not name this
//! case, so it fails the check unless the run was asked to excuse it
//! (`--excuse-partition-resends`), in which case each is listed. A slot delivered under two
//! different keys is always a violation.

use std::collections::{BTreeMap, BTreeSet};

use super::{hits_by_slot, shard_of, CheckResult, Evidence};
use crate::history::{ShardChange, StopEvent};
use crate::sink::Hit;

/// How long before the first delivery a stop may have happened and still be "in mid-request"
/// (the sink records arrival a little after the node sent).
pub const BEFORE_MS: i64 = 300;
/// How long after the first delivery the result may still have been uncommitted.
pub const RESULT_BOUND_MS: i64 = 3000;

/// Owners of `shard` that any node showed between `from` and `to` (including what each node
/// showed just before `from`).
pub fn owners_between(changes: &[ShardChange], shard: u32, from: i64, to: i64) -> BTreeSet<u64> {
    let mut last_before: BTreeMap<u64, Option<u64>> = BTreeMap::new();
    let mut out = BTreeSet::new();
    for c in changes.iter().filter(|c| c.shard == shard) {
        if c.at_ms <= from {
            last_before.insert(c.seen_by, c.owner);
        } else if c.at_ms <= to {
            if let Some(o) = c.owner {
                out.insert(o);
            }
        }
    }
    out.extend(last_before.into_values().flatten());
    out
}

fn excusing_stops<'a>(
    stops: &'a [StopEvent],
    changes: &[ShardChange],
    shard: Option<u32>,
    first: &Hit,
) -> Vec<&'a StopEvent> {
    let owners = shard.map(|s| owners_between(changes, s, first.received_ms - 6000, first.received_ms + 500));
    stops
        .iter()
        .filter(|s| s.at_ms >= first.received_ms - BEFORE_MS && s.at_ms <= first.received_ms + RESULT_BOUND_MS)
        .filter(|s| owners.as_ref().is_some_and(|o| o.contains(&s.node)))
        .collect()
}

/// Partitions (and loss, which cuts every node off now and then) that cut off an owner of the
/// slot's shard within its send window.
fn cutting_faults<'a>(
    e: &'a Evidence<'_>,
    shard: Option<u32>,
    first: &Hit,
) -> Vec<(&'a crate::history::FaultRecord, u64)> {
    let Some(s) = shard else { return vec![] };
    let owners = owners_between(&e.history.shard_changes, s, first.received_ms - 6000, first.received_ms + 500);
    let lease = e.config.timing.lease_ms;
    e.history
        .faults
        .iter()
        .filter(|f| cut_off_in_send_window(f, first.received_ms, lease))
        .filter_map(|f| kept_from_committing(f).into_iter().find(|n| owners.contains(n)).map(|n| (f, n)))
        .collect()
}

/// The nodes a cut kept from committing a result: the nodes cut off, and every node when the
/// cut took the leader away (`affected`: the others commit nothing until a new leader is elected,
/// and may be judged dead by the old one when it comes back).
fn kept_from_committing(f: &crate::history::FaultRecord) -> Vec<u64> {
    if f.cut_off.is_empty() {
        return Vec::new();
    }
    let mut nodes: Vec<u64> = f.cut_off.iter().chain(&f.affected).copied().collect();
    nodes.sort_unstable();
    nodes.dedup();
    nodes
}

/// Whether fault `f` may have cut its `cut_off` nodes off between sending a slot (first
/// delivery at `first_ms`) and recording its result. A partition cuts for good: it must have
/// begun at most a lease before the send (an owner cut off longer has no lease left to send
/// with). Loss cuts now and then, for as long as it holds: it must hold at some moment of the
/// send window.
fn cut_off_in_send_window(f: &crate::history::FaultRecord, first_ms: i64, lease_ms: i64) -> bool {
    let window_end = first_ms + RESULT_BOUND_MS;
    if f.kind == crate::config::FaultKind::Loss {
        f.start_ms <= window_end && f.end_ms >= first_ms
    } else {
        f.start_ms >= first_ms - lease_ms && f.start_ms <= window_end
    }
}

pub fn check(e: &Evidence<'_>) -> CheckResult {
    let mut r = CheckResult::new("no duplicate delivery");
    let firing: BTreeSet<&str> = e.firing.iter().map(|j| j.id.as_str()).collect();
    let mut by_key: BTreeMap<&str, Vec<&Hit>> = BTreeMap::new();
    for h in e.hits.iter().filter(|h| firing.contains(h.job.as_str())) {
        by_key.entry(h.key.as_str()).or_default().push(h);
    }
    let mut keys_seen = 0usize;
    for (key, hits) in &mut by_key {
        keys_seen += 1;
        if hits.len() < 2 {
            continue;
        }
        hits.sort_by_key(|h| h.received_ms);
        let first = hits[0];
        let shard = shard_of(&first.job, e.shard_count);
        let stops = excusing_stops(&e.history.stops, &e.history.shard_changes, shard, first);
        let extra = hits.len() - 1;
        let later_after_stop = stops.first().is_some_and(|s| hits[1..].iter().all(|h| h.received_ms > s.at_ms));
        let arrivals: Vec<i64> = hits.iter().map(|h| h.received_ms - first.scheduled_ms).collect();
        if !stops.is_empty() && later_after_stop && extra <= stops.len() {
            let s = stops[0];
            r.excuse(format!(
                "job {} slot {} key {key}: {} deliveries (+ms {:?}); its owner node {} got {} at {} ms after the first delivery, before its result could commit",
                first.job,
                first.scheduled_ms,
                hits.len(),
                arrivals,
                s.node,
                s.kind,
                s.at_ms - first.received_ms
            ));
        } else if let Some((f, node)) = cutting_faults(e, shard, first).first().filter(|_| extra == 1) {
            let what = format!(
                "job {} slot {} key {key}: {} deliveries (+ms {:?}); its owner node {node} was cut off by {} {:?} {} ms before the first delivery, with a lease still valid: it sent, could not record the result, and the next owner re-sent",
                first.job,
                first.scheduled_ms,
                hits.len(),
                arrivals,
                f.kind,
                f.targets,
                first.received_ms - f.start_ms
            );
            if e.config.excuse_partition_resends {
                r.excuse(what);
            } else {
                r.violation(what);
            }
        } else {
            let near: Vec<String> = e
                .history
                .stops
                .iter()
                .filter(|s| (s.at_ms - first.received_ms).abs() < 10_000)
                .map(|s| format!("{} of node {} at {:+} ms", s.kind, s.node, s.at_ms - first.received_ms))
                .collect();
            let faults: Vec<String> = e
                .history
                .faults
                .iter()
                .filter(|f| {
                    f.start_ms <= first.received_ms + 1000
                        && f.converged_ms.unwrap_or(f.end_ms) >= first.received_ms - 1000
                })
                .map(|f| format!("{} {:?}", f.kind, f.targets))
                .collect();
            let last_ms = hits.last().map_or(first.received_ms, |h| h.received_ms);
            let moves: Vec<String> = shard
                .map(|s| {
                    e.history
                        .shard_changes
                        .iter()
                        .filter(|c| c.shard == s && c.at_ms >= first.received_ms - 6000 && c.at_ms <= last_ms + 1000)
                        .map(|c| {
                            format!("{:+}ms n{} saw {:?}@e{}", c.at_ms - first.received_ms, c.seen_by, c.owner, c.epoch)
                        })
                        .collect()
                })
                .unwrap_or_default();
            r.violation(format!(
                "job {} slot {} key {key}: delivered {} times (+ms {:?}); shard {:?}, owner/epoch changes seen around it: {moves:?}; stops near it: {near:?}; faults active: {faults:?}",
                first.job, first.scheduled_ms, hits.len(), arrivals, shard,
            ));
        }
    }
    for ((job, at), hits) in hits_by_slot(e.hits) {
        if !firing.contains(job) {
            continue;
        }
        let keys: BTreeSet<&str> = hits.iter().map(|h| h.key.as_str()).collect();
        if keys.len() > 1 {
            r.violation(format!("job {job} slot {at} arrived under {} different keys", keys.len()));
        }
    }
    r.summary =
        format!("{} deliveries, {} distinct keys; {} excused crash re-sends", e.hits.len(), keys_seen, r.excused_count);
    r.figures = serde_json::json!({ "deliveries": e.hits.len(), "keys": keys_seen, "excused": r.excused_count });
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_include_the_view_just_before() {
        let c = |at_ms, seen_by, owner| ShardChange { at_ms, seen_by, shard: 3, owner: Some(owner), epoch: 1 };
        let changes = vec![c(100, 1, 1), c(100, 2, 1), c(5000, 1, 2), c(9000, 2, 3)];
        assert_eq!(owners_between(&changes, 3, 1000, 6000), BTreeSet::from([1, 2]));
        assert_eq!(owners_between(&changes, 3, 6000, 8000), BTreeSet::from([1, 2]));
        assert_eq!(owners_between(&changes, 4, 0, 10_000), BTreeSet::new());
    }

    fn fault(kind: crate::config::FaultKind, start_ms: i64, end_ms: i64) -> crate::history::FaultRecord {
        crate::history::FaultRecord {
            kind,
            targets: vec![1, 2, 3],
            minority: vec![],
            cut_off: vec![1, 2, 3],
            affected: vec![1, 2, 3],
            detail: String::new(),
            start_ms,
            in_effect_ms: start_ms,
            heal_ms: end_ms,
            end_ms,
            converged_ms: None,
            error: None,
        }
    }

    #[test]
    fn a_cut_that_took_the_leader_away_kept_every_node_from_committing() {
        use crate::config::FaultKind::{IsolateFollower, OneWay};
        // One-way cut of the leader (node 1): every node is affected.
        let mut f = fault(OneWay, 0, 7_000);
        f.cut_off = vec![1];
        assert_eq!(kept_from_committing(&f), vec![1, 2, 3]);
        // A follower cut off alone: only it.
        let mut f = fault(IsolateFollower, 0, 7_000);
        (f.cut_off, f.affected) = (vec![3], vec![3]);
        assert_eq!(kept_from_committing(&f), vec![3]);
        // Not a cut (a pause, a kill): nobody here (the stop rule covers those).
        let mut f = fault(crate::config::FaultKind::PauseLeader, 0, 7_000);
        f.cut_off.clear();
        assert!(kept_from_committing(&f).is_empty());
    }

    #[test]
    fn loss_cuts_for_as_long_as_it_holds_and_a_partition_from_its_start() {
        use crate::config::FaultKind::{IsolateLeader, Loss};
        // Loss from 0 to 14 s: a send at 10 s whose result could not be recorded is cut off.
        assert!(cut_off_in_send_window(&fault(Loss, 0, 14_000), 10_000, 4_000));
        // ... and one 2 s before the loss began too (its result was still pending).
        assert!(cut_off_in_send_window(&fault(Loss, 12_000, 20_000), 10_000, 4_000));
        // Not a send after the loss ended, nor one long before it.
        assert!(!cut_off_in_send_window(&fault(Loss, 0, 9_000), 10_000, 4_000));
        assert!(!cut_off_in_send_window(&fault(Loss, 14_000, 20_000), 10_000, 4_000));
        // A partition that began 9.5 s before the send left no lease to send with.
        assert!(!cut_off_in_send_window(&fault(IsolateLeader, 500, 14_000), 10_000, 4_000));
        assert!(cut_off_in_send_window(&fault(IsolateLeader, 7_000, 14_000), 10_000, 4_000));
    }
}
