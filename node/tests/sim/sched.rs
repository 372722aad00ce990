//! A model of the node's scheduler (`scheduler::{lease, leader, owner}`), step for step, on
//! simulated clocks.
//!
//! The node's tasks take a `Cluster` (HTTP peers, RocksDB), so they cannot run here; this
//! module runs their loops over the simulated network and each node's own clock (its rate
//! within the drift bound) and calls the node's own code for the decisions: the leader's shard
//! moves (`scheduler::leader::plan`, which runs `model::assignment::rebalance`), the cluster's
//! time (`clock::ClusterClock`), the state machine that judges every claim (`state::apply`
//! through Raft) and the schedules (`model::schedule`). The owner's round (which slots to claim,
//! reclaim or record `unknown`) is still repeated here. "Sending" a slot records it in the
//! history ([`crate::check::on_send`]) instead of calling the executor.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use openraft::ServerState;
use raftcron_node::clock::ClusterClock;
use raftcron_node::ids::{JobId, NodeId};
use raftcron_node::model::run::{RunRecord, RunStatus};
use raftcron_node::model::slot::FireId;
use raftcron_node::scheduler::leader;
use raftcron_node::scheduler::round::{self, Pending, RELEASE_FENCE_MS};
use raftcron_node::state::firing::{self, ClaimKind, ClaimVerdict, Released, RunOutcome};
use raftcron_node::state::{keys, CommandBody, CommandResult, StateRead};
use raftcron_node::store::Table;

use crate::net::{on_leader, Fwd, FwdResult};
use crate::world::{NodeHandle, World};

/// A process's volatile scheduler state: all of it is lost in a crash.
#[derive(Debug, Default)]
pub struct Sched {
    /// Until when (own monotonic clock, µs) this node may fire.
    pub lease_until: Option<i64>,
    /// The cluster's time as this node knows it: the node's real `ClusterClock`, driven by this
    /// node's simulated clocks.
    pub timeline: ClusterClock,
    /// As leader: when each node was last granted its lease (own monotonic, µs).
    pub grants: BTreeMap<NodeId, i64>,
    pub active: BTreeSet<FireId>,
    pub dropped: round::LetGo,
    pub claimed_to: HashMap<JobId, i64>,
    /// Jobs known idle (`scheduler::round::IdleJobs`), as the node keeps them.
    pub idle: round::IdleJobs,
    pub runs: Vec<RunOutcome>,
    pub releases: Vec<Released>,
}

impl Sched {
    pub fn lease_valid(&self, mono_us: i64) -> bool {
        self.lease_until.is_some_and(|until| mono_us < until)
    }
}

fn us(d: Duration) -> i64 {
    d.as_micros() as i64
}

impl NodeHandle {
    /// The cluster's time on this node (`clock::ClusterClock`), or its own wall clock before it
    /// heard a leader.
    pub fn firing_now_ms(&self) -> i64 {
        let at = self.instant();
        self.sched.lock().unwrap().timeline.reading_at(at).unwrap_or_else(|| self.wall_ms())
    }

    /// Whether no leader can still propose a write fenced at `by` (`Cluster::fence_passed`).
    fn fence_passed(&self, by: i64) -> bool {
        let at = self.instant();
        let earliest = self.sched.lock().unwrap().timeline.earliest_at(at).unwrap_or(self.wall_ms() as f64);
        raftcron_node::cluster::fence_is_past(earliest, by)
    }

    /// As leader: the cluster's time, slewed toward this node's wall clock (`ClusterClock::lead_at`).
    pub fn lead_ms(&self) -> i64 {
        let (at, own) = (self.instant(), self.wall_ms());
        self.sched.lock().unwrap().timeline.lead_at(at, own)
    }

    fn lease_valid(&self) -> bool {
        let now = self.mono_us();
        self.sched.lock().unwrap().lease_valid(now)
    }

    async fn wait_applied(&self, index: u64, own: Duration) -> bool {
        let deadline = self.mono_us() + us(own);
        while self.mono_us() < deadline {
            if self.raft.metrics().borrow().last_applied.map_or(0, |l| l.index) >= index {
                return true;
            }
            self.sleep_own(Duration::from_millis(10)).await;
        }
        false
    }
}

/// Starts the scheduler model's tasks on a new process.
pub fn spawn(world: &Arc<World>, h: &Arc<NodeHandle>) {
    h.spawn(lease_loop(world.clone(), h.clone()));
    h.spawn(leader_loop(world.clone(), h.clone()));
    h.spawn(owner_loop(world.clone(), h.clone()));
    h.spawn(recorder_loop(world.clone(), h.clone()));
}

async fn lease_loop(world: Arc<World>, h: Arc<NodeHandle>) {
    let cfg = world.cfg.clone();
    loop {
        h.sleep_own(cfg.lease / 4).await;
        // Noted before asking: the leader records its grant after this instant.
        let asked = h.mono_us();
        let Some(FwdResult::Lease { index, leader_wall_ms }) = on_leader(&world, &h, Fwd::LeaseGrant(h.id)).await
        else {
            continue;
        };
        if !h.wait_applied(index, Duration::from_secs(2)).await {
            continue;
        }
        let answered = h.mono_us();
        let mut s = h.sched.lock().unwrap();
        s.timeline.observe(leader_wall_ms, h.instant_of(asked), h.instant_of(answered));
        let until = asked + us(cfg.lease.saturating_sub(cfg.drift_margin));
        s.lease_until = Some(s.lease_until.map_or(until, |cur| cur.max(until)));
    }
}

async fn leader_loop(world: Arc<World>, h: Arc<NodeHandle>) {
    let cfg = world.cfg.clone();
    let mut term_since: Option<(u64, i64)> = None;
    // As the node: the leader before this node's term.
    let mut predecessor = leader::Predecessor::default();
    let mut previous_leader: Option<NodeId> = None;
    let mut revoked_at: HashMap<u32, i64> = HashMap::new();
    loop {
        h.sleep_own(cfg.tick * 2).await;
        let (state, term, leader, voters) = {
            let m = h.raft.metrics();
            let m = m.borrow();
            (
                m.state,
                m.current_term,
                m.current_leader,
                m.membership_config.membership().voter_ids().collect::<Vec<_>>(),
            )
        };
        let replaced = predecessor.note(term, leader);
        if state != ServerState::Leader {
            term_since = None;
            revoked_at.clear();
            continue;
        }
        let since = match term_since {
            Some((t, since)) if t == term => since,
            _ => {
                let now = h.mono_us();
                term_since = Some((term, now));
                previous_leader = replaced;
                revoked_at.clear();
                now
            }
        };
        leader_step(&world, &h, (since, previous_leader), &mut revoked_at, &voters).await;
    }
}

/// One round of `scheduler::leader::step`.
async fn leader_step(
    world: &Arc<World>,
    h: &Arc<NodeHandle>,
    (since, previous_leader): (i64, Option<NodeId>),
    revoked_at: &mut HashMap<u32, i64>,
    voters: &[NodeId],
) {
    let cfg = &world.cfg;
    let initialized = h.disk.lock().unwrap().sm.get(Table::SmMeta, keys::SHARD_COUNT).ok().flatten().is_some();
    if !initialized {
        let lease_ms = cfg.lease.as_millis() as u32;
        let body = CommandBody::Form { shard_count: cfg.shard_count, runs_kept: cfg.runs_kept, lease_ms };
        if on_leader(world, h, Fwd::Write(Box::new(body))).await.is_none() {
            return;
        }
    }
    // No grant between reading the grants and the moves' commit (as the node).
    let moving = h.moving.clone().lock_owned().await;
    // The node's own decision (`scheduler::leader::plan`), on this node's simulated clock.
    let now = h.mono_us();
    let grants = h.sched.lock().unwrap().grants.clone();
    let Ok(current) = firing::assignment(&h.disk.lock().unwrap().sm) else { return };
    let planned = leader::plan(
        &leader::Round {
            current: &current,
            voters,
            last_grant: &|n| grants.get(&n).copied(),
            since,
            previous_leader,
            now,
            age: &|t: i64| Duration::from_micros((now - t).max(0) as u64),
        },
        cfg,
        revoked_at,
    );
    let Some((_live, moves)) = planned else { return };
    if moves.is_empty() {
        return;
    }
    if !moves.iter().any(|m| m.from.is_some() && m.to.is_some()) {
        drop(moving);
    }
    world.trace(|| format!("n{} proposes {} shard moves", h.id, moves.len()));
    let write = Fwd::Write(Box::new(CommandBody::AssignShards { moves }));
    if world.forward_moves {
        // As `scheduler::leader` does today: `cluster.write`, which forwards to whichever node
        // leads by then (see docs/design/simulation.md, "Findings").
        on_leader(world, h, write).await;
    } else if h.raft.metrics().borrow().state == ServerState::Leader {
        // Only under the leadership whose grants the moves were judged by.
        crate::net::run_local(world, h, write).await;
    }
}

async fn owner_loop(world: Arc<World>, h: Arc<NodeHandle>) {
    loop {
        h.sleep_own(world.cfg.tick).await;
        if h.lease_valid() {
            owner_round(&world, &h).await;
        }
    }
}

/// What each running process is sending now (`scheduler::holding`): its incarnation and its
/// dispatched, unrecorded slots, as a node that asks it would hear (here without the round
/// trip; a process that is down answers nothing).
fn sending_now(world: &World) -> HashMap<NodeId, (uuid::Uuid, BTreeSet<FireId>)> {
    world
        .handles()
        .into_iter()
        .filter(|h| world.is_up(h.id))
        .map(|h| (h.id, (h.uuid, h.sched.lock().unwrap().active.clone())))
        .collect()
}

/// One round of `scheduler::owner::round`: the node's own decision (`scheduler::round`), then
/// the same actions.
async fn owner_round(world: &Arc<World>, h: &Arc<NodeHandle>) {
    let now = h.firing_now_ms();
    let sending = sending_now(world);
    let plan = {
        let mut disk = h.disk.lock().unwrap();
        let mut guard = h.sched.lock().unwrap();
        let s = &mut *guard;
        // As `scheduler::owner`: forget what changed before reading the state.
        let changed = std::mem::take(&mut disk.sm.changed);
        s.idle.forget_written(false, changed);
        let active = s.active.clone();
        let is_active = |id: &FireId| active.contains(id);
        let plan = round::plan_round(
            &disk.sm,
            &mut round::Process {
                node: h.id,
                incarnation: h.uuid,
                now_ms: now,
                horizon_ms: now + world.cfg.claim_ahead.as_millis() as i64,
                active: &is_active,
                let_go: &mut s.dropped,
                claimed_to: &s.claimed_to,
                idle: Some(&mut s.idle),
                held_elsewhere: &|f| {
                    sending
                        .get(&f.node)
                        .is_some_and(|(uuid, active)| *uuid == f.incarnation && active.contains(&f.fire_id))
                },
            },
        );
        let Ok(plan) = plan else { return };
        // As the node after a round: keep the bound assumed for the predecessors when the disk
        // kept none (the node syncs it; a crash keeps it).
        if let Some(bound) = s.dropped.bound_to_keep() {
            disk.keep_release_fence(bound);
        }
        for p in &plan.unknown {
            if s.active.insert(p.fire_id) {
                let run = round::unsent_run(p.fire_id, p.at_ms, h.id, RunStatus::Unknown, "not sent");
                s.runs.push(RunOutcome { tenant: p.job.tenant.clone(), job: p.job.id, run });
            }
        }
        plan
    };
    for p in plan.send_now {
        dispatch(world, h, p);
    }
    let (items, pending) = (plan.items, plan.pending);
    if items.is_empty() {
        return;
    }
    let body = CommandBody::Claim { node: h.id, incarnation: h.uuid, items: items.clone() };
    let Some(FwdResult::Written(_, CommandResult::Claims(verdicts))) =
        on_leader(world, h, Fwd::Write(Box::new(body))).await
    else {
        return;
    };
    for ((item, verdict), p) in items.iter().zip(verdicts).zip(pending) {
        {
            let mut s = h.sched.lock().unwrap();
            round::note_verdict(&mut s.claimed_to, item, verdict);
            if let (ClaimKind::Reclaim, Some(p)) = (item.kind, p.as_ref()) {
                s.dropped.forget(&p.fire_id);
            }
        }
        if verdict == ClaimVerdict::Accepted {
            if let Some(p) = p {
                dispatch(world, h, p);
            }
        }
    }
}

/// `owner::dispatch`: wait for the slot's instant, check the fence, "send", report.
fn dispatch(world: &Arc<World>, h: &Arc<NodeHandle>, p: Pending) {
    let fire_id = p.fire_id;
    if !h.sched.lock().unwrap().active.insert(fire_id) {
        return;
    }
    let (world, me) = (world.clone(), h.clone());
    h.spawn(async move {
        let wait = p.at_ms - me.firing_now_ms();
        if wait > 0 {
            me.sleep_own(Duration::from_millis(wait as u64)).await;
        }
        // The fencing check, immediately before sending.
        let owner = firing::owner(&me.disk.lock().unwrap().sm, p.shard).ok();
        let still_mine = owner.is_some_and(|o| o.node == Some(me.id) && o.epoch == p.epoch);
        if !me.lease_valid() || !still_mine {
            let mut s = me.sched.lock().unwrap();
            s.dropped.dropped(fire_id);
            s.active.remove(&fire_id);
            s.releases.push(Released { tenant: p.job.tenant.clone(), job: p.job.id, fire_id });
            drop(s);
            world.trace(|| format!("n{} drop job {} slot {} (lease or ownership lost)", me.id, p.job.id, p.at_ms));
            return;
        }
        me.sched.lock().unwrap().dropped.forget(&fire_id);
        world
            .trace(|| format!("n{} SEND job {} slot {} shard {} epoch {}", me.id, p.job.id, p.at_ms, p.shard, p.epoch));
        crate::check::on_send(&world, &me, p.job.id, p.at_ms, p.shard);
        // The request takes a while: a crash now is the documented crash window.
        let took = world.rand(|r| r.range(5, 400));
        tokio::time::sleep(Duration::from_millis(took)).await;
        let started = me.firing_now_ms();
        let run = RunRecord {
            fire_id,
            scheduled_at_ms: p.at_ms,
            started_at_ms: Some(started),
            finished_at_ms: Some(started + took as i64),
            attempts: 1,
            node: Some(me.id),
            status: RunStatus::Succeeded,
            http_status: Some(200),
            error: None,
            body_prefix: None,
        };
        me.sched.lock().unwrap().runs.push(RunOutcome { tenant: p.job.tenant.clone(), job: p.job.id, run });
    });
}

/// `owner::record_results`: group commit of results and releases, then a read barrier before
/// a fire id leaves `active`.
async fn recorder_loop(world: Arc<World>, h: Arc<NodeHandle>) {
    let mut awaiting: Vec<FireId> = Vec::new();
    // The fence of the last release write whose outcome is unknown.
    let mut release_fence: Option<i64> = None;
    loop {
        h.sleep_own(Duration::from_millis(50)).await;
        let (runs, releases) = {
            let s = h.sched.lock().unwrap();
            (s.runs.clone(), s.releases.clone())
        };
        // As the node: a release goes again only once no copy of the last one can still be
        // proposed (`Cluster::fence_passed`).
        if !releases.is_empty() && release_fence.is_none_or(|by| h.fence_passed(by)) {
            let body = Box::new(CommandBody::ReleaseSlots { node: h.id, items: releases.clone() });
            let by = h.firing_now_ms() + RELEASE_FENCE_MS;
            // As the node: the fence is on disk (synced) before the write leaves.
            h.disk.lock().unwrap().keep_release_fence(by);
            let op = if world.unfenced_releases { Fwd::Write(body) } else { Fwd::WriteBy(body, by) };
            let answer = on_leader(&world, &h, op).await;
            if !world.unfenced_releases && !matches!(answer, Some(FwdResult::Written(..))) {
                release_fence = Some(by);
            }
            if let Some(FwdResult::Written(..)) = answer {
                release_fence = None;
                // Exactly those written (the first ones): a release of the same slot queued
                // while this write was on its way is a new one (the node's recorder moves
                // reports out of its channel only between writes).
                let mut s = h.sched.lock().unwrap();
                s.releases.drain(..releases.len());
                for r in &releases {
                    s.dropped.release_written(&r.fire_id);
                }
            }
        }
        if !runs.is_empty() {
            let body = CommandBody::RecordRuns { outcomes: runs.clone() };
            if let Some(FwdResult::Written(..)) = on_leader(&world, &h, Fwd::Write(Box::new(body))).await {
                let done: Vec<FireId> = runs.iter().map(|o| o.run.fire_id).collect();
                h.sched.lock().unwrap().runs.drain(..runs.len());
                awaiting.extend(done);
            }
        }
        if awaiting.is_empty() {
            continue;
        }
        if let Some(FwdResult::ReadIndex(index)) = on_leader(&world, &h, Fwd::ReadIndex).await {
            if h.wait_applied(index, crate::net::WRITE_TIMEOUT).await {
                let mut s = h.sched.lock().unwrap();
                for id in awaiting.drain(..) {
                    s.active.remove(&id);
                }
            }
        }
    }
}
