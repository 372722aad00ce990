//! The observer: twice a second it asks every node for its cluster status and its shard table
//! (both from the node's own state) and records leader changes and shard owner/epoch changes.
//!
//! It checks two things on the spot, because keeping every table would cost memory in a long
//! soak: a node's epoch of a shard never goes back (unless the node was wiped), and one
//! (shard, epoch) never names two different owners, across all nodes and all time. It must not
//! change anything in the cluster.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::api::NodeApi;
use crate::clock::now_ms;
use crate::history::{History, LeaderMark, ObservedViolation, ShardChange};
use crate::workload::Stop;

/// Time between two rounds.
const ROUND: Duration = Duration::from_millis(500);
/// Upper bound of one probe.
const PROBE_TIMEOUT: Duration = Duration::from_millis(1500);

/// Nodes whose data dir was wiped since the last round: their epochs start over.
pub type Wiped = Arc<Mutex<BTreeSet<u64>>>;

#[derive(Default)]
struct Seen {
    /// node -> shard -> (owner, epoch)
    per_node: BTreeMap<u64, Vec<(Option<u64>, u64)>>,
    /// (shard, epoch) -> owner, over all nodes.
    owners: BTreeMap<(u32, u64), Option<u64>>,
    last_mark: Option<(u64, Option<u64>)>,
    violations: usize,
}

/// Runs until `stop` (at most `max_rounds` rounds).
pub async fn run(apis: Vec<NodeApi>, history: History, wiped: Wiped, mut stop: Stop, max_rounds: u64) {
    let mut seen = Seen::default();
    for _ in 0..max_rounds {
        if stop.is_set() {
            return;
        }
        round(&apis, &history, &wiped, &mut seen).await;
        history.observer_round();
        if stop.sleep(ROUND).await {
            return;
        }
    }
}

async fn round(apis: &[NodeApi], history: &History, wiped: &Wiped, seen: &mut Seen) {
    let tasks: Vec<_> = apis
        .iter()
        .map(|api| {
            let api = api.clone();
            tokio::spawn(async move {
                let status = api.cluster(PROBE_TIMEOUT).await.ok();
                let shards = api.shards(PROBE_TIMEOUT).await.ok();
                (api.id, status, shards, now_ms())
            })
        })
        .collect();
    let mut terms: Vec<(u64, Option<u64>)> = Vec::new();
    for t in tasks {
        let Ok((node, status, shards, at_ms)) = t.await else { continue };
        if let Some(s) = status {
            terms.push((s.term, s.leader_id));
        }
        let Some(list) = shards else { continue };
        if wiped.lock().map(|mut w| w.remove(&node)).unwrap_or(false) {
            seen.per_node.remove(&node);
        }
        let prev = seen.per_node.entry(node).or_default();
        if prev.len() != list.shards.len() {
            prev.clear();
            prev.resize(list.shards.len(), (None, 0));
        }
        for info in &list.shards {
            let i = info.shard as usize;
            let Some(slot) = prev.get_mut(i) else { continue };
            if info.epoch < slot.1 {
                seen.violations += 1;
                history.violation(ObservedViolation {
                    at_ms,
                    node,
                    what: format!("shard {} epoch went back from {} to {}", info.shard, slot.1, info.epoch),
                });
            }
            if (info.node_id, info.epoch) != *slot {
                history.shard_change(ShardChange {
                    at_ms,
                    seen_by: node,
                    shard: info.shard,
                    owner: info.node_id,
                    epoch: info.epoch,
                });
                *slot = (info.node_id, info.epoch);
            }
            match seen.owners.get(&(info.shard, info.epoch)) {
                Some(owner) if *owner != info.node_id => {
                    seen.violations += 1;
                    history.violation(ObservedViolation {
                        at_ms,
                        node,
                        what: format!(
                            "shard {} epoch {} has owner {:?} here but {:?} elsewhere",
                            info.shard, info.epoch, info.node_id, owner
                        ),
                    });
                }
                Some(_) => {}
                None => {
                    seen.owners.insert((info.shard, info.epoch), info.node_id);
                }
            }
        }
    }
    // The leader of the highest term any node reports.
    if let Some(&(term, _)) = terms.iter().max_by_key(|(t, _)| *t) {
        let leader = terms.iter().filter(|(t, l)| *t == term && l.is_some()).find_map(|(_, l)| *l);
        if seen.last_mark != Some((term, leader)) {
            seen.last_mark = Some((term, leader));
            history.leader(LeaderMark { at_ms: now_ms(), leader, term });
        }
    }
}
