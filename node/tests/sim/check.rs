//! The recorded history and the invariants checked against it.
//!
//! Hooks in the stores record every vote, append, truncation and applied entry as it happens;
//! [`step_checks`] runs after every step of the driver and [`final_checks`] once the cluster
//! has healed. Every broken invariant becomes a line in `History::violations`.

use std::collections::BTreeMap;

use openraft::{EntryPayload, ServerState};
use raftcron_node::ids::{JobId, NodeId};
use raftcron_node::model::assignment::Assignment;
use raftcron_node::model::job::Delivery;
use raftcron_node::model::slot::FireId;
use raftcron_node::raft::{Entry, LogId};
use raftcron_node::state::firing::{self, ClaimKind, ClaimVerdict};
use raftcron_node::state::{CommandBody, CommandResult};
use uuid::Uuid;

use crate::store::{digest, SmData};
use crate::world::{NodeHandle, World};

/// What the first node to apply an index saw.
#[derive(Debug, Clone)]
pub struct Committed {
    pub log_id: LogId,
    pub payload: u64,
    pub result: u64,
    pub state: u64,
    /// No term up to this one had started when the entry was first applied, so every leader of
    /// a later term must hold it (leader completeness).
    pub term_bound: u64,
}

/// An accepted claim item.
#[derive(Debug, Clone)]
pub struct ClaimFact {
    pub node: NodeId,
    pub incarnation: Uuid,
    pub kind: ClaimKind,
}

/// One request that left a node for a job's target.
#[derive(Debug, Clone)]
pub struct SendRec {
    pub node: NodeId,
    pub inc: u64,
    pub uuid: Uuid,
    pub at_s: f64,
}

#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub steps: u64,
    pub sends: u64,
    pub resends_after_crash: u64,
    pub resends_cut_off: u64,
    pub crashes: u64,
    pub partitions: u64,
    pub terms_with_two_leaders: u64,
    pub client_writes: u64,
    pub acked: u64,
    pub claims_accepted: u64,
    pub applied_max: u64,
}

#[derive(Debug, Default)]
pub struct History {
    pub violations: Vec<String>,
    pub committed: BTreeMap<u64, Committed>,
    pub leaders: BTreeMap<u64, std::collections::BTreeSet<NodeId>>,
    pub max_term: u64,
    /// Accepted `Slot` and `Missed` claims: one per (job, instant), ever.
    pub slots: BTreeMap<(JobId, i64), u64>,
    pub claims: BTreeMap<(JobId, i64), Vec<ClaimFact>>,
    pub sends: BTreeMap<FireId, Vec<SendRec>>,
    /// Slots whose run (sent or not: unknown, skipped) was recorded.
    pub recorded: std::collections::BTreeSet<FireId>,
    /// Processes started so far (numbers incarnations).
    pub incarnations: u64,
    /// Incarnation number -> when it died.
    pub crashed: BTreeMap<u64, f64>,
    /// Writes a leader acknowledged: log id and the digest of the command body.
    pub acked: Vec<(LogId, u64)>,
    pub delivery: BTreeMap<JobId, Delivery>,
    pub stats: Stats,
    /// Committed firing commands, printed when `RAFTCRON_SIM_TRACE` is set.
    pub trace_lines: Vec<String>,
    /// A digest of everything that happened, in order: equal for two runs of one seed.
    pub trace: u64,
}

impl History {
    fn note(&mut self, event: u64) {
        self.trace = digest(&(self.trace, event));
    }
}

/// What a check needs from the state before an entry is applied.
pub struct PreApply(Option<Assignment>);

impl PreApply {
    pub fn of(sm: &SmData, entry: &Entry) -> PreApply {
        let wanted = matches!(
            &entry.payload,
            EntryPayload::Normal(c) if matches!(c.body, CommandBody::Claim { .. } | CommandBody::AssignShards { .. })
        );
        PreApply(if wanted { firing::assignment(sm).ok() } else { None })
    }
}

fn body_of(entry: &Entry) -> Option<&CommandBody> {
    match &entry.payload {
        EntryPayload::Normal(c) => Some(&c.body),
        _ => None,
    }
}

impl World {
    /// openraft 0.9 (without `single-term-leader`) orders leaders by (term, node id): several
    /// nodes may lead in one term number, one after the other, each under its own leader id,
    /// which is what Raft's "term" is there. So the invariant is one leader per leader id, and
    /// a node leading twice under one id (or a leader id reused by another node) is a violation;
    /// how often a term number had several leaders is counted.
    pub fn leader_seen(&self, term: u64, node: NodeId, how: &str) {
        let mut h = self.hist.lock().unwrap();
        h.max_term = h.max_term.max(term);
        let leaders = h.leaders.entry(term).or_default();
        if leaders.insert(node) {
            if leaders.len() > 1 {
                h.stats.terms_with_two_leaders += 1;
            }
            h.note(digest(&("leader", term, node)));
            drop(h);
            self.trace(|| format!("n{node} leads term {term} (seen in {how})"));
        }
    }

    pub fn is_committed(&self, log_id: &LogId) -> bool {
        self.hist.lock().unwrap().committed.get(&log_id.index).is_some_and(|c| c.log_id == *log_id)
    }

    /// Called by a state machine after it applied `entry`.
    pub fn applied(&self, node: NodeId, entry: &Entry, result: &CommandResult, sm: &SmData, pre: PreApply) {
        let index = entry.log_id.index;
        let (payload, result_digest) = (digest(&entry.payload), digest(result));
        let mut problems = Vec::new();
        {
            let mut h = self.hist.lock().unwrap();
            h.stats.applied_max = h.stats.applied_max.max(index);
            if let Some(c) = h.committed.get(&index) {
                if c.log_id != entry.log_id || c.payload != payload {
                    problems.push(format!(
                        "node {node} applied {} at index {index}, first applied as {}",
                        entry.log_id, c.log_id
                    ));
                } else if c.result != result_digest {
                    problems.push(format!("node {node} got another result for index {index}: {result:?}"));
                } else if c.state != sm.digest {
                    problems.push(format!("node {node} holds other state bytes after applying index {index}"));
                }
            } else {
                let term_bound = h.max_term;
                h.committed.insert(
                    index,
                    Committed { log_id: entry.log_id, payload, result: result_digest, state: sm.digest, term_bound },
                );
                h.note(digest(&(index, entry.log_id, payload, result_digest)));
                first_apply(&mut h, &mut problems, entry, result, sm, pre);
            }
        }
        for p in problems {
            self.violation(p);
        }
    }
}

/// The firing rules, judged on the first application of each index (replicas must agree).
fn first_apply(
    h: &mut History,
    problems: &mut Vec<String>,
    entry: &Entry,
    result: &CommandResult,
    sm: &SmData,
    pre: PreApply,
) {
    let index = entry.log_id.index;
    if let (Some(before), Ok(after)) = (&pre.0, firing::assignment(sm)) {
        for (shard, (a, b)) in before.owners.iter().zip(&after.owners).enumerate() {
            if b.epoch < a.epoch {
                problems
                    .push(format!("index {index}: shard {shard}'s epoch went from {} back to {}", a.epoch, b.epoch));
            }
        }
    }
    if let Some(body) = body_of(entry) {
        if !matches!(body, CommandBody::CreateJob { .. } | CommandBody::UpdateJob { .. }) {
            h.trace_lines.push(format!("index {index} {}: {body:?} -> {result:?}", entry.log_id));
        }
    }
    match (body_of(entry), result) {
        (Some(CommandBody::CreateJob { id, spec, .. }), CommandResult::Job(_)) => {
            h.delivery.insert(*id, spec.delivery);
        }
        (Some(CommandBody::Claim { node, incarnation, items }), CommandResult::Claims(verdicts)) => {
            for (item, verdict) in items.iter().zip(verdicts) {
                if *verdict != ClaimVerdict::Accepted {
                    continue;
                }
                h.stats.claims_accepted += 1;
                let owner = pre.0.as_ref().and_then(|a| a.owner(item.shard));
                if owner.is_none_or(|o| o.node != Some(*node) || o.epoch != item.epoch) {
                    problems.push(format!(
                        "index {index}: accepted a claim by node {node} at epoch {} of shard {}, owned by {owner:?}",
                        item.epoch, item.shard
                    ));
                }
                let key = (item.job, item.at_ms);
                if item.kind != ClaimKind::Reclaim {
                    if let Some(first) = h.slots.insert(key, index) {
                        problems.push(format!(
                            "slot {} of job {} accepted twice: at index {first} and {index}",
                            item.at_ms, item.job
                        ));
                    }
                }
                h.claims.entry(key).or_default().push(ClaimFact {
                    node: *node,
                    incarnation: *incarnation,
                    kind: item.kind,
                });
            }
        }
        (Some(CommandBody::RecordRuns { outcomes }), _) => {
            h.recorded.extend(outcomes.iter().map(|o| o.run.fire_id));
        }
        (Some(CommandBody::ReleaseSlots { node, items }), _) => {
            released_after_send(h, problems, index, *node, items, sm);
        }
        _ => {}
    }
}

/// A release says its holder never sent the slot: the state must never say so of a slot that
/// the holding process did send (a copy of a release landing after the slot was claimed back
/// and sent, simulation finding 11). A process lets go only slots it has not sent, and never
/// lets go one it sent, so any send of the slot by the process the state now names as the
/// releasing holder is a violation.
fn released_after_send(
    h: &History,
    problems: &mut Vec<String>,
    index: u64,
    node: NodeId,
    items: &[raftcron_node::state::firing::Released],
    sm: &SmData,
) {
    use raftcron_node::model::run::FireState;
    use raftcron_node::state::{keys, StateRead};
    use raftcron_node::store::{decode, Table};
    for r in items {
        let key = keys::job(&r.tenant, r.job);
        let fs: FireState =
            sm.get(Table::FireState, &key).ok().flatten().and_then(|b| decode(&b).ok()).unwrap_or_default();
        let Some(f) = fs.in_flight.iter().find(|f| f.fire_id == r.fire_id && f.node == node && f.released) else {
            continue;
        };
        let sent = h.sends.get(&r.fire_id).is_some_and(|s| s.iter().any(|s| s.node == node && s.uuid == f.incarnation));
        if sent {
            problems.push(format!(
                "index {index}: node {node}'s release marks slot {} of job {} never sent, but that process sent it",
                f.at_ms, r.job
            ));
        }
    }
}

/// Which shards `h` believes it owns now: its lease is valid and its applied state names it.
pub fn beliefs(h: &NodeHandle) -> Vec<u32> {
    if !h.sched.lock().unwrap().lease_valid(h.mono_us()) {
        return Vec::new();
    }
    let disk = h.disk.lock().unwrap();
    firing::assignment(&disk.sm).map(|a| a.owned_by(h.id)).unwrap_or_default()
}

/// Called by a node immediately before it sends a slot (after its own fencing check).
pub fn on_send(world: &World, me: &NodeHandle, job: JobId, at_ms: i64, shard: u32) {
    let fire_id = FireId::scheduled(job, at_ms);
    let now = world.now_s();
    let mut problems = Vec::new();
    for other in world.handles() {
        if other.id != me.id && beliefs(&other).contains(&shard) {
            problems.push(format!(
                "node {} sends slot {at_ms} of shard {shard} while node {} also believes it owns the shard",
                me.id, other.id
            ));
        }
    }
    {
        let mut h = world.hist.lock().unwrap();
        h.stats.sends += 1;
        h.note(digest(&("send", me.id, fire_id, at_ms)));
        let facts = h.claims.get(&(job, at_ms)).cloned().unwrap_or_default();
        let mine = |k: ClaimKind| facts.iter().any(|f| f.kind == k && f.node == me.id && f.incarnation == me.uuid);
        if !mine(ClaimKind::Slot) && !mine(ClaimKind::Reclaim) {
            problems
                .push(format!("node {} sends slot {at_ms} of job {job} without a committed claim of its own", me.id));
        }
        let earlier = h.sends.get(&fire_id).cloned().unwrap_or_default();
        if earlier.iter().any(|s| s.node == me.id && s.uuid == me.uuid) {
            problems.push(format!("node {} (one process) sends slot {at_ms} of job {job} twice", me.id));
        }
        if let Some(last) = earlier.last() {
            if h.delivery.get(&job) == Some(&Delivery::AtMostOnce) {
                problems.push(format!("slot {at_ms} of at-most-once job {job} sent again by node {}", me.id));
            } else if !mine(ClaimKind::Reclaim) {
                problems.push(format!("slot {at_ms} of job {job} sent again by node {} without a reclaim", me.id));
            }
            // The crash window (docs/design/firing.md): its sender died before recording the
            // result. Otherwise the sender was alive but could not commit the result in time.
            if h.crashed.get(&last.inc).is_some_and(|t| *t >= last.at_s) {
                h.stats.resends_after_crash += 1;
            } else {
                h.stats.resends_cut_off += 1;
            }
        }
        h.sends.entry(fire_id).or_default().push(SendRec { node: me.id, inc: me.inc, uuid: me.uuid, at_s: now });
    }
    for p in problems {
        world.violation(p);
    }
}

/// The invariants that hold at every instant, checked between steps.
pub fn step_checks(world: &World) {
    let handles = world.handles();
    let mut problems = Vec::new();
    // Leadership as the nodes report it, and leader completeness for each leader.
    for h in &handles {
        let m = h.raft.metrics().borrow().clone();
        if m.state != ServerState::Leader {
            continue;
        }
        world.leader_seen(m.current_term, h.id, "the metrics");
        let disk = h.disk.lock().unwrap();
        let hist = world.hist.lock().unwrap();
        for (index, c) in hist.committed.range(1..) {
            if c.term_bound < m.current_term && disk.log.get(index).map(|e| e.log_id) != Some(c.log_id) {
                problems.push(format!(
                    "node {} leads term {} without the committed entry {} (committed by term {})",
                    h.id, m.current_term, c.log_id, c.term_bound
                ));
                break;
            }
        }
    }
    // Two nodes never both believe they own one shard.
    let mut owners: BTreeMap<u32, NodeId> = BTreeMap::new();
    for h in &handles {
        for shard in beliefs(h) {
            if let Some(other) = owners.insert(shard, h.id) {
                problems.push(format!("nodes {other} and {} both believe they own shard {shard}", h.id));
            }
        }
    }
    for p in problems {
        world.violation(p);
    }
}

/// How long before the scheduler stopped a slot must be settled (sent or recorded), and how far
/// behind that instant an active job's next unclaimed slot may be: a lease, the safety margin
/// and the nodes' clock drift over a run (their rates differ from true time by up to 4.5 %).
const SETTLE_MS: i64 = 8_000;

/// No slot silently missed, judged once the scheduler ran `RECOVERY` on a healed cluster and
/// stopped at `stopped_ms` (true time): every job that exists and is active at the end
/// - has claimed (as sent or as missed) every slot up to `SETTLE_MS` before the stop: claims
///   are for the next slot after the watermark only, so the watermark is where a skip would show;
/// - and every slot it claimed to send, up to then, was sent or has a recorded run.
fn silent_misses(hist: &History, sm: &SmData, stopped_ms: i64, problems: &mut Vec<String>) {
    use raftcron_node::model::job::JobRecord;
    use raftcron_node::model::run::FireState;
    use raftcron_node::state::StateRead;
    use raftcron_node::store::{decode, Table};
    let settled = stopped_ms - SETTLE_MS;
    let Ok(jobs) = sm.scan_prefix(Table::Jobs, &[], usize::MAX) else {
        problems.push("the final state's jobs could not be read".into());
        return;
    };
    for (key, bytes) in jobs {
        let Ok(job) = decode::<JobRecord>(&bytes) else { continue };
        if !job.spec.is_active {
            continue;
        }
        let Some(schedule) = job.spec.schedule() else { continue };
        let fs: FireState =
            sm.get(Table::FireState, &key).ok().flatten().and_then(|b| decode(&b).ok()).unwrap_or_default();
        let next = schedule.next_after(raftcron_node::clock::ms_to_utc(fs.watermark_ms)).map(|t| t.timestamp_millis());
        if next.is_some_and(|n| n < settled) {
            let shard = raftcron_node::model::assignment::shard_of(job.id, firing::shard_count(sm).unwrap_or(0));
            let owner = firing::assignment(sm).ok().and_then(|a| a.owner(shard).cloned());
            problems.push(format!(
                "job {} (shard {shard}, owner {owner:?}, watermark {}, {} in flight): its next unclaimed slot {next:?} is {} ms before the scheduler stopped",
                job.id,
                fs.watermark_ms,
                fs.in_flight.len(),
                stopped_ms - next.unwrap_or_default()
            ));
        }
        for (&(j, at_ms), facts) in hist.claims.range((job.id, i64::MIN)..=(job.id, i64::MAX)) {
            let fire_id = FireId::scheduled(j, at_ms);
            let claimed_to_send = facts.iter().any(|f| f.kind == ClaimKind::Slot);
            if claimed_to_send
                && at_ms < settled
                && !hist.sends.contains_key(&fire_id)
                && !hist.recorded.contains(&fire_id)
            {
                problems.push(format!(
                    "slot {at_ms} of job {j} was claimed but neither sent nor recorded ({} ms before the stop)",
                    stopped_ms - at_ms
                ));
            }
        }
    }
}

/// After healing: every node holds the same log up to the same applied index, the same state
/// bytes, and every acknowledged write; and no slot was silently missed ([`silent_misses`]).
pub fn final_checks(world: &World, stopped_ms: i64) {
    let handles = world.handles();
    let mut problems = Vec::new();
    let hist = world.hist.lock().unwrap();
    let mut reference: Option<(NodeId, SmData)> = None;
    for h in &handles {
        let disk = h.disk.lock().unwrap();
        let applied = disk.sm.last_applied.map_or(0, |l| l.index);
        for (index, c) in hist.committed.range(..=applied) {
            if disk.log.get(index).map(|e| e.log_id) != Some(c.log_id) {
                problems.push(format!("node {} lacks the committed entry {} after healing", h.id, c.log_id));
                break;
            }
        }
        for (log_id, body) in &hist.acked {
            let held = disk.log.get(&log_id.index).filter(|e| e.log_id == *log_id);
            if log_id.index > applied || held.and_then(body_of).map(digest) != Some(*body) {
                problems.push(format!("node {} lacks the acknowledged write {log_id} after healing", h.id));
                break;
            }
        }
        match &reference {
            None => reference = Some((h.id, disk.sm.clone())),
            Some((id, sm)) => {
                if sm.last_applied != disk.sm.last_applied {
                    problems.push(format!(
                        "after healing node {id} applied {:?} but node {} applied {:?}",
                        sm.last_applied, h.id, disk.sm.last_applied
                    ));
                } else if sm.kv != disk.sm.kv {
                    problems.push(format!("after healing nodes {id} and {} hold different state bytes", h.id));
                }
            }
        }
    }
    if let Some((_, sm)) = &reference {
        silent_misses(&hist, sm, stopped_ms, &mut problems);
    }
    drop(hist);
    for p in problems {
        world.violation(p);
    }
}
