//! The owner's round, decided: from this node's applied state and what this process holds in
//! memory, which slots to claim, which to claim back, which to send at once and which to record
//! `unknown`. Pure: it reads the state, calls the callback it is given and updates the two
//! memories it is handed (`IdleJobs`, `LetGo`), nothing else; it must not send, write or wait.
//! `scheduler::owner` acts on the plan; the deterministic simulation runs the same function
//! against its own state and clocks.

use std::collections::HashMap;

use uuid::Uuid;

use crate::clock::ms_to_utc;
use crate::ids::{JobId, NodeId};
use crate::model::job::{Delivery, JobRecord};
use crate::model::run::{FireState, InFlight, RunRecord, RunStatus};
use crate::model::slot::FireId;
use crate::state::firing::{self, ClaimItem, ClaimKind, ClaimVerdict};
use crate::state::StateRead;
use crate::store::{decode, Table};

/// Most slots one job may claim in one round (bounds catch-up work per tick).
pub const MAX_SLOTS_PER_JOB: usize = 64;
/// Most items in one claim command.
pub const MAX_CLAIM_ITEMS: usize = 4096;

/// How long until the next round, which runs half a tick past each whole multiple of the tick
/// on the cluster's time (with the default 200 ms tick: at .100, .300, ..., .900 of each
/// second). Cron slots crowd onto whole seconds, where every owner sends at once; a round there
/// (its state reads and its claim, applied on every node) would compete with those sends for
/// the cores. Always more than zero and at most one tick.
pub fn until_next_round(now_ms: i64, tick_ms: i64) -> std::time::Duration {
    let tick_ms = tick_ms.max(1);
    let into = (now_ms - tick_ms / 2).rem_euclid(tick_ms);
    std::time::Duration::from_millis((tick_ms - into) as u64)
}

/// A slot to send once its claim is known (or at once, see [`RoundPlan::send_now`]).
#[derive(Debug, Clone)]
pub struct Pending {
    pub job: JobRecord,
    pub fire_id: FireId,
    pub at_ms: i64,
    pub shard: u32,
    pub epoch: u64,
}

/// What one round decided.
#[derive(Debug, Default)]
pub struct RoundPlan {
    /// Shards this node owns.
    pub owned: usize,
    /// The claim command's items, and for each the slot to send if it is accepted (`None` for
    /// a slot claimed as missed).
    pub items: Vec<ClaimItem>,
    pub pending: Vec<Option<Pending>>,
    /// Slots this process claimed and never dispatched: the claim committed but its answer was
    /// lost (the leader died right after the commit). Nobody else sends them.
    pub send_now: Vec<Pending>,
    /// At-most-once slots another sender (or an earlier incarnation) may have sent: record them
    /// `unknown`, never send them.
    pub unknown: Vec<Pending>,
    /// Some owned shards were left unscanned (the round's scan budget was spent, see
    /// [`IdleJobs::with_scan_budget`]): the caller runs the next round at once.
    pub more: bool,
}

/// What this process knows of the jobs of the shards it owns, so that a round reads only the
/// jobs that may have work instead of every job: with many jobs, reading (or even listing)
/// each one every tick is most of a node's work.
///
/// After one full scan of a shard, every job of it is either *busy* (read every round: a slot
/// in flight that this process is not sending, one due within the horizon, or unknown) or
/// *idle until* an instant (nothing in flight but slots this process is sending, the next slot
/// beyond the horizon, or paused), kept in time order so a round finds
/// the ones whose instant came within the horizon without looking at the rest. Knowledge is
/// valid only while neither the job, nor its firing state, nor the shard owners changed: the
/// caller hands over the store's change feed (`Store::take_changes`) *before* each round, and a
/// changed job is read again (busy) at the next round; a shard whose owner or epoch changed is
/// scanned in full again, and a new shard count forgets everything.
#[derive(Debug, Default)]
pub struct IdleJobs {
    /// Shards scanned in full since the last `forget(true, ..)`, and what is known of their jobs.
    shards: HashMap<u32, ShardJobs>,
    /// Jobs written since the last round, not yet put back into their shard's busy set.
    changed: Vec<Vec<u8>>,
    /// The shard count the knowledge was gathered under.
    shard_count: u32,
    /// Most jobs one round reads in full scans of shards not scanned yet (0: no limit).
    scan_budget: usize,
    /// The shard the next round starts from: the first one the last round left unscanned, so
    /// that every shard is reached even if the knowledge is forgotten after every round.
    scan_from: u32,
}

#[derive(Debug, Default)]
struct ShardJobs {
    busy: std::collections::BTreeSet<Vec<u8>>,
    idle: HashMap<Vec<u8>, i64>,
    /// `(until, job key)` of every idle job.
    wake: std::collections::BTreeSet<(i64, Vec<u8>)>,
}

impl ShardJobs {
    /// The jobs a round must read: the busy ones and those idle until within the horizon, in
    /// key order.
    fn to_read(&self, horizon_ms: i64) -> Vec<Vec<u8>> {
        let due = self.wake.range(..(horizon_ms.saturating_add(1), Vec::new())).map(|(_, k)| k);
        let keys: std::collections::BTreeSet<&Vec<u8>> = self.busy.iter().chain(due).collect();
        keys.into_iter().cloned().collect()
    }

    fn unidle(&mut self, job_key: &[u8]) {
        if let Some(until) = self.idle.remove(job_key) {
            self.wake.remove(&(until, job_key.to_vec()));
        }
    }

    fn note(&mut self, job_key: &[u8], seen: Seen) {
        self.unidle(job_key);
        match seen {
            Seen::Gone => {
                self.busy.remove(job_key);
            }
            Seen::Busy => {
                self.busy.insert(job_key.to_vec());
            }
            Seen::IdleUntil(until) => {
                self.busy.remove(job_key);
                self.idle.insert(job_key.to_vec(), until);
                self.wake.insert((until, job_key.to_vec()));
            }
        }
    }
}

/// What one read of a job found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    /// The job no longer exists.
    Gone,
    /// It may have work next round.
    Busy,
    /// Nothing to do before this instant.
    IdleUntil(i64),
}

impl IdleJobs {
    /// Knowledge that a round gathers at most `jobs` job reads at a time: once a round's full
    /// scans of shards not scanned yet have read that many jobs, it leaves the remaining unscanned
    /// shards to the next round (and says so, [`RoundPlan::more`]). After a start or a move of
    /// many shards the first claims then go out after one slice of the scan, not after all of
    /// it (with a million jobs, seconds of reads), and the known shards' due slots never wait for
    /// a long scan.
    pub fn with_scan_budget(jobs: usize) -> IdleJobs {
        IdleJobs { scan_budget: jobs, ..IdleJobs::default() }
    }

    /// Forgets the jobs whose record or firing state was written (both are keyed by the job
    /// key), or every job when `all` (the shard owners changed, or anything may have).
    pub fn forget(&mut self, all: bool, job_keys: impl IntoIterator<Item = Vec<u8>>) {
        if all {
            self.shards.clear();
            self.changed.clear();
        } else {
            self.changed.extend(job_keys);
        }
    }

    /// Forgets what the writes since the last round may have changed: the shards whose owner
    /// or epoch was written (scanned in full again), the jobs whose record or firing state was
    /// written (read again), or everything when `all`.
    pub fn forget_written(&mut self, all: bool, written: impl IntoIterator<Item = (Table, Vec<u8>)>) {
        let mut jobs = Vec::new();
        for (t, key) in written {
            if t == Table::Shards {
                match <[u8; 4]>::try_from(key.as_slice()) {
                    Ok(b) => {
                        self.shards.remove(&u32::from_be_bytes(b));
                    }
                    Err(_) => self.shards.clear(),
                }
            } else {
                jobs.push(key);
            }
        }
        self.forget(all, jobs);
    }

    /// Jobs known idle.
    pub fn len(&self) -> usize {
        self.shards.values().map(|s| s.idle.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Puts the changed jobs back into their shards' busy sets, under `shard_count` shards.
    fn settle(&mut self, shard_count: u32) {
        if shard_count != self.shard_count {
            self.shards.clear();
            self.changed.clear();
            self.shard_count = shard_count;
        }
        for key in std::mem::take(&mut self.changed) {
            // A job key ends with the job id (`state::keys::job`).
            let Some(id) = key.len().checked_sub(16).and_then(|at| uuid::Uuid::from_slice(&key[at..]).ok()) else {
                continue;
            };
            let shard = crate::model::assignment::shard_of(JobId(id), shard_count);
            if let Some(s) = self.shards.get_mut(&shard) {
                s.note(&key, Seen::Busy);
            }
        }
    }
}

/// The slots this process let go unsent (its lease lapsed, or the shard was revoked, at their
/// instant), from the drop until they are claimed back or sent, each with whether this process
/// has seen its release in its own state yet, and whether a write of its release may still be
/// on its way.
///
/// A let-go slot is sent only through a reclaim, and the reclaim only once the release shows:
/// sent earlier, a release that commits later would mark a sent slot "never sent". So a round
/// tells apart a let-go slot that shows "not released" because its release is still on its way
/// (wait) from one whose release was seen and that shows "not released" again because this
/// process's reclaim committed while its answer was lost (send it now). For the same reason a
/// let-go slot is not claimed back while the recorder may still write its release: a write whose
/// answer was lost commits and shows, and the recorder's retry of it would otherwise commit
/// after the reclaim and mark the slot, sent by then, "never sent" again (simulation seed 20481,
/// `docs/design/simulation.md`, finding 11). The caller forgets a slot once its reclaim was
/// judged (a reclaim lost on its way is planned again) or it is sent.
#[derive(Debug, Default)]
pub struct LetGo {
    slots: HashMap<FireId, LetGoSlot>,
    /// The cluster's time at this process's first round (`plan_round` notes it). An earlier process of this node may
    /// have let slots go whose release writes are still on their way (held in the network, or
    /// resent by its kernel after it died); it fenced them at most `RELEASE_FENCE_MS` ahead.
    /// Until those fences have passed, this process claims nothing back, so that no such
    /// release can mark a slot it claimed back and sent "never sent" (`LetGo::quiet`).
    first_round_ms: Option<i64>,
    /// The latest fence of any release write an earlier process of this node may have sent,
    /// as those processes kept it on this node's disk before each write
    /// ([`EarlierReleases`]); `None` when the disk keeps none (a node's first process, or one
    /// whose predecessors never kept one), and then the bound is this process's first round
    /// plus `RELEASE_FENCE_MS`.
    earlier_fences_until: Option<i64>,
}

/// What this node's disk says about the release writes of its earlier processes: the latest
/// fence any of them may still have on its way. Every process keeps it there, durably, before
/// it sends a release write (`owner::record_results`), and after its first round keeps the
/// bound it assumed for its predecessors when the disk had none. So a restarted process waits
/// only for the fences that were really sent, usually long past, instead of a whole fence after
/// its first round: a node restarted in the middle of other restarts (a rolling restart, a
/// crash loop, leaders killed one after another) claims back at once what the others let go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EarlierReleases {
    /// The latest fence, on the cluster's timeline; `None`: the disk keeps none.
    pub fences_until_ms: Option<i64>,
}

/// How far ahead of the cluster's time a release write is fenced (`Cluster::write_fenced`): a
/// leader that gets it later refuses it.
pub const RELEASE_FENCE_MS: i64 = 2_000;

/// What a process knows about one slot it let go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LetGoSlot {
    /// Its release showed in this process's state.
    seen: bool,
    /// A write of its release has not been answered "committed" yet.
    writing: bool,
}

impl LetGo {
    /// The memory of a process that starts on a disk that says `earlier` about its
    /// predecessors' release writes.
    pub fn resume(earlier: EarlierReleases) -> LetGo {
        LetGo { earlier_fences_until: earlier.fences_until_ms, ..LetGo::default() }
    }

    /// What the disk must keep after this process's first round when it kept nothing before:
    /// the bound this process assumed for its predecessors' fences (its first round plus
    /// `RELEASE_FENCE_MS`); `None` when the disk kept one, or before the first round.
    pub fn bound_to_keep(&self) -> Option<i64> {
        match (self.earlier_fences_until, self.first_round_ms) {
            (None, Some(first)) => Some(first.saturating_add(RELEASE_FENCE_MS)),
            _ => None,
        }
    }

    /// Dispatch reached the slot's instant and did not send it; its release goes to the
    /// recorder.
    pub fn dropped(&mut self, id: FireId) {
        self.slots.insert(id, LetGoSlot { seen: false, writing: true });
    }

    /// The recorder's write of its release was answered "committed": no later write of it
    /// can come.
    pub fn release_written(&mut self, id: &FireId) {
        if let Some(slot) = self.slots.get_mut(id) {
            slot.writing = false;
        }
    }

    /// Its reclaim was judged (accepted, or no longer this process's to claim back), or it
    /// was sent.
    pub fn forget(&mut self, id: &FireId) {
        self.slots.remove(id);
    }

    /// Its release shows in this process's state (or it is being claimed back at a new epoch):
    /// from now on "not released" means this process's reclaim committed.
    fn saw_release(&mut self, id: &FireId) {
        if let Some(slot) = self.slots.get_mut(id) {
            slot.seen = true;
        }
    }

    /// Whether this process must not claim anything back yet, at the cluster's time `now_ms`:
    /// until every release an earlier process of this node may have fenced has surely passed
    /// its fence, plus the fence's margin for the leader's step to Raft and for the readings'
    /// uncertainty. The fences lie at most `RELEASE_FENCE_MS` after this process's first round
    /// (every earlier process died before it started), and no later than the latest fence the
    /// disk keeps: the earlier of the two bounds. So a fence kept far ahead (a wrong reading, a
    /// damaged value) never makes the wait longer than without it.
    fn quiet(&self, now_ms: i64) -> bool {
        let Some(first) = self.first_round_ms else { return true };
        let bound = first.saturating_add(RELEASE_FENCE_MS);
        let until = self.earlier_fences_until.map_or(bound, |kept| kept.min(bound));
        now_ms < until.saturating_add(crate::cluster::FENCE_MARGIN_MS)
    }

    /// Whether this process must not claim back yet another holder's slot due at `at_ms`: while
    /// it is [`LetGo::quiet`], and only if the slot is due before its first round (plus
    /// [`crate::cluster::FENCE_MARGIN_MS`] for the readings' uncertainty). An earlier process of
    /// this node let a slot go only once its instant had passed (`owner::dispatch` waits for
    /// it), and it was gone before this process's first round; so no release it may still have
    /// on its way names a later slot. Such slots, the ones a node that died holding them had
    /// claimed ahead, are claimed back at once: a node restarted just before another one died
    /// (a rolling restart, or a crash loop) does not hold up the dead one's next slots for the
    /// whole quiet period.
    fn quiet_for(&self, now_ms: i64, at_ms: i64) -> bool {
        self.quiet(now_ms)
            && self.first_round_ms.is_none_or(|first| at_ms <= first.saturating_add(crate::cluster::FENCE_MARGIN_MS))
    }

    /// Whether a write of its release may still commit.
    fn writing(&self, id: &FireId) -> bool {
        self.slots.get(id).is_some_and(|slot| slot.writing)
    }

    /// Whether the round must leave the slot alone for now: its release may still be written,
    /// or, not released in this state, its release has not shown yet.
    fn must_wait(&self, id: &FireId, released: bool) -> bool {
        self.slots.get(id).is_some_and(|slot| slot.writing || (!released && !slot.seen))
    }
}

/// This process, as the round sees it.
pub struct Process<'a> {
    pub node: NodeId,
    pub incarnation: Uuid,
    /// The cluster's time now, and how far ahead slots are claimed.
    pub now_ms: i64,
    pub horizon_ms: i64,
    /// Whether this process dispatched a slot whose result is not applied here yet.
    pub active: &'a dyn Fn(&FireId) -> bool,
    /// The slots this process let go unsent and has not claimed back yet.
    pub let_go: &'a mut LetGo,
    /// Per job, the last slot this process claimed (its state may lag its own claims).
    pub claimed_to: &'a HashMap<JobId, i64>,
    /// Jobs known idle, kept from round to round (`None`: read every job).
    pub idle: Option<&'a mut IdleJobs>,
    /// Whether the process that holds an unreleased in-flight slot, on another node, is still
    /// sending it (it said so when asked, `scheduler::holding`), or that is not known yet: such
    /// a slot is left to its holder (until [`holder_done_by`] at the latest).
    pub held_elsewhere: &'a dyn Fn(&InFlight) -> bool,
}

/// Time a live holder gets to record a slot's result after its last attempt ended.
pub const RECORD_MARGIN_MS: i64 = 10_000;

/// The latest the holder of `f` can still be sending it, plus [`RECORD_MARGIN_MS`] to record
/// the result: every attempt at its full timeout with every retry delay between them, and no
/// later than the job's next slot (where the executor stops retrying) plus one timeout. A slot
/// moved off a live node by rebalancing stays with that node until then, so a slow target's
/// request is not re-sent by the next owner while the first is still running; a holder that
/// dies or is cut off is no longer live, and its slots are claimed back at once.
pub fn holder_done_by(job: &JobRecord, f: &InFlight) -> i64 {
    let spec = &job.spec;
    let timeout_ms = i64::from(spec.timeout_seconds) * 1000;
    let attempts = i64::from(spec.max_retries) + 1;
    let start = f.at_ms.max(f.claimed_at_ms);
    let mut end = start
        .saturating_add(timeout_ms.saturating_mul(attempts))
        .saturating_add(i64::from(spec.retry_delay_seconds).saturating_mul(1000).saturating_mul(attempts - 1));
    if let Some(next) = spec.schedule().and_then(|s| s.next_after(ms_to_utc(f.at_ms))) {
        end = end.min(next.timestamp_millis().max(start).saturating_add(timeout_ms));
    }
    end.saturating_add(RECORD_MARGIN_MS)
}

fn value<T: serde::de::DeserializeOwned>(view: &impl StateRead, t: Table, key: &[u8]) -> Result<Option<T>, String> {
    match view.get(t, key).map_err(|e| e.to_string())? {
        Some(bytes) => decode(&bytes).map(Some).map_err(|e| e.to_string()),
        None => Ok(None),
    }
}

/// Decides one round. Reads `active` before the state a second time for a slot of its own, so
/// a result applied between the two reads cannot pass for a lost claim answer.
pub fn plan_round(view: &impl StateRead, me: &mut Process<'_>) -> Result<RoundPlan, String> {
    me.let_go.first_round_ms.get_or_insert(me.now_ms);
    let assignment = firing::assignment(view).map_err(|e| e.to_string())?;
    let mut plan = RoundPlan { owned: assignment.owned_by(me.node).len(), ..RoundPlan::default() };
    if let Some(idle) = me.idle.as_deref_mut() {
        idle.settle(assignment.shard_count());
    }
    let budget = me.idle.as_deref().map_or(0, |idle| idle.scan_budget);
    let mut scanned = 0usize;
    let mut owned = assignment.owned_by(me.node);
    let start = me.idle.as_deref().map_or(0, |idle| idle.scan_from);
    let first = owned.iter().position(|s| *s >= start).unwrap_or(0);
    owned.rotate_left(first);
    let mut left_from = None;
    for shard in owned {
        let epoch = assignment.owner(shard).map_or(0, |o| o.epoch);
        let known = me.idle.as_deref().and_then(|idle| idle.shards.get(&shard)).map(|s| s.to_read(me.horizon_ms));
        if known.is_none() && budget > 0 && scanned >= budget {
            // Left to the next round, which comes at once; the known shards still go on.
            plan.more = true;
            left_from.get_or_insert(shard);
            continue;
        }
        // A shard not scanned yet is read in full, and what is learnt is kept only if the
        // scan finishes (a round cut short by the claim limit scans it again).
        let mut fresh = (known.is_none() && me.idle.is_some()).then(ShardJobs::default);
        let keys = match known {
            Some(keys) => keys,
            None => view
                .scan_prefix(Table::ShardJobs, &shard.to_be_bytes(), usize::MAX)
                .map_err(|e| e.to_string())?
                .into_iter()
                .map(|(k, _)| k.get(4..).unwrap_or_default().to_vec())
                .collect(),
        };
        if fresh.is_some() {
            scanned += keys.len();
        }
        for job_key in keys {
            let seen = read_job(view, me, &mut plan, shard, epoch, &job_key)?;
            match (fresh.as_mut(), me.idle.as_deref_mut().and_then(|idle| idle.shards.get_mut(&shard))) {
                (Some(f), _) => f.note(&job_key, seen),
                (None, Some(s)) => s.note(&job_key, seen),
                (None, None) => {}
            }
            if plan.items.len() >= MAX_CLAIM_ITEMS {
                return Ok(plan);
            }
        }
        if let (Some(f), Some(idle)) = (fresh, me.idle.as_deref_mut()) {
            idle.shards.insert(shard, f);
        }
    }
    if let Some(idle) = me.idle.as_deref_mut() {
        idle.scan_from = left_from.unwrap_or(0);
    }
    Ok(plan)
}

/// Reads one job of an owned shard into the plan; what it found.
fn read_job(
    view: &impl StateRead,
    me: &mut Process<'_>,
    plan: &mut RoundPlan,
    shard: u32,
    epoch: u64,
    job_key: &[u8],
) -> Result<Seen, String> {
    let Some(job) = value::<JobRecord>(view, Table::Jobs, job_key)? else { return Ok(Seen::Gone) };
    if !job.spec.is_active {
        return Ok(Seen::IdleUntil(i64::MAX));
    }
    let fs: FireState = value(view, Table::FireState, job_key)?.unwrap_or_default();
    let items_before = plan.items.len();
    // Whether every slot in flight is one this process is sending (see below).
    let mut all_sending = true;
    // Just started, a process claims nothing back: a release of an earlier process of this node
    // may still be on its way (see `LetGo::quiet`).
    let quiet = me.let_go.quiet(me.now_ms);
    for f in &fs.in_flight {
        if (me.active)(&f.fire_id) {
            continue;
        }
        all_sending = false;
        let p = Pending { job: job.clone(), fire_id: f.fire_id, at_ms: f.at_ms, shard, epoch };
        let this_process = f.node == me.node && f.incarnation == me.incarnation;
        if f.node != me.node && !f.released && me.now_ms < holder_done_by(&job, f) && (me.held_elsewhere)(f) {
            // Another node's process is still sending it (a shard moved by rebalancing while
            // the target is slow): it records the result; claiming it back would send it twice.
            continue;
        }
        if me.let_go.writing(&f.fire_id) {
            // This process let it go and its release may still be written, whoever holds the
            // slot now: were this process to claim it back and send it first, that release
            // would mark it "never sent" (simulation finding 11, seed 30573).
            continue;
        }
        if !this_process {
            // Another holder has it now: no longer this process's to claim back.
            me.let_go.forget(&f.fire_id);
        } else if me.let_go.must_wait(&f.fire_id, f.released) {
            // Let go, and its release has not shown yet or may still be written: wait for it
            // (see `LetGo`), whatever the shard's epoch is now.
            continue;
        }
        if this_process && f.epoch == epoch {
            if f.released {
                if quiet {
                    continue;
                }
                // This process let it go unsent (the release is committed): it claims it
                // back before sending, so the state never says "released" about a slot
                // that is being sent.
                me.let_go.saw_release(&f.fire_id);
                plan.items.push(claim_item(&job, shard, epoch, f.at_ms, ClaimKind::Reclaim));
                plan.pending.push(Some(p));
            } else if never_dispatched(view, me, job_key, f.fire_id)? {
                // A claim, or a reclaim of a let-go slot, that committed while its answer
                // was lost.
                plan.send_now.push(p);
            }
        } else if job.spec.delivery == Delivery::AtMostOnce && !f.released {
            // Its sender may or may not have sent it: never send it twice.
            plan.unknown.push(p);
        } else if !me.let_go.quiet_for(me.now_ms, f.at_ms) {
            me.let_go.saw_release(&f.fire_id);
            plan.items.push(claim_item(&job, shard, epoch, f.at_ms, ClaimKind::Reclaim));
            plan.pending.push(Some(p));
        }
    }
    // Nothing claimed now, and nothing in flight but slots this process is sending: idle
    // until its next slot (see below). Such a slot leaves `active` once its result is written
    // to the firing state, or, unsent, just before its release is (a stopping process aside),
    // and that write makes the job busy again at the next round. Until the write no round
    // would do anything with the job (a let-go slot waits for its release), so reading it
    // every round only cost: at a whole second every slot of the node is in flight and active
    // for the length of its request.
    let idle_candidate = all_sending;
    let Some(schedule) = job.spec.schedule() else {
        return Ok(if idle_candidate { Seen::IdleUntil(i64::MAX) } else { Seen::Busy });
    };
    let mut mark = me.claimed_to.get(&job.id).copied().unwrap_or(i64::MIN).max(fs.watermark_ms);
    for _ in 0..MAX_SLOTS_PER_JOB {
        let Some(next) = schedule.next_after(ms_to_utc(mark)).map(|t| t.timestamp_millis()) else {
            let idle = idle_candidate && plan.items.len() == items_before;
            return Ok(if idle { Seen::IdleUntil(i64::MAX) } else { Seen::Busy });
        };
        if next > me.horizon_ms {
            let idle = idle_candidate && plan.items.len() == items_before;
            return Ok(if idle { Seen::IdleUntil(next) } else { Seen::Busy });
        }
        let missed = next + job.spec.deadline_ms() < me.now_ms;
        let kind = if missed { ClaimKind::Missed } else { ClaimKind::Slot };
        plan.items.push(claim_item(&job, shard, epoch, next, kind));
        let fire_id = FireId::scheduled(job.id, next);
        plan.pending.push((!missed).then(|| Pending { job: job.clone(), fire_id, at_ms: next, shard, epoch }));
        mark = next;
    }
    Ok(Seen::Busy)
}

/// Whether a slot this process claimed (not released) was never dispatched: `active` holds
/// every dispatched slot until its result is applied here, so a slot that is not active and
/// still in flight *after* that check was never sent.
fn never_dispatched(view: &impl StateRead, me: &Process<'_>, job_key: &[u8], fire_id: FireId) -> Result<bool, String> {
    if (me.active)(&fire_id) {
        return Ok(false);
    }
    let fs: FireState = value(view, Table::FireState, job_key)?.unwrap_or_default();
    Ok(fs.in_flight.iter().any(|f| f.fire_id == fire_id && !f.released))
}

/// What a claim's verdict tells this process about how far it has claimed a job (its
/// `claimed_to`, which runs ahead of its applied state while its own claims are on the way).
///
/// Only an accepted slot moves it forward. A slot refused as not the job's next one means the
/// state's watermark knows better: the slot was claimed already (this node's state lags), or a
/// pause or a new schedule moved the watermark while the claim was on its way. Either way the
/// process forgets its own mark and plans from the state's watermark again: keeping a mark past
/// a slot of the new schedule would have it claim later and later slots, each refused, and the
/// job would never fire again.
pub fn note_verdict(claimed_to: &mut HashMap<JobId, i64>, item: &ClaimItem, verdict: ClaimVerdict) {
    if item.kind == ClaimKind::Reclaim {
        return;
    }
    match verdict {
        ClaimVerdict::Accepted => {
            let e = claimed_to.entry(item.job).or_insert(i64::MIN);
            *e = (*e).max(item.at_ms);
        }
        ClaimVerdict::NotNextSlot => {
            claimed_to.remove(&item.job);
        }
        _ => {}
    }
}

/// A run that was not sent (skipped, unknown), with why.
pub fn unsent_run(fire_id: FireId, at_ms: i64, node: u64, status: RunStatus, why: &str) -> RunRecord {
    RunRecord {
        fire_id,
        scheduled_at_ms: at_ms,
        started_at_ms: None,
        finished_at_ms: None,
        attempts: 0,
        node: Some(node),
        status,
        http_status: None,
        error: Some(why.to_string()),
        body_prefix: None,
    }
}

pub fn claim_item(job: &JobRecord, shard: u32, epoch: u64, at_ms: i64, kind: ClaimKind) -> ClaimItem {
    ClaimItem { shard, epoch, tenant: job.tenant.clone(), job: job.id, at_ms, kind }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use uuid::Uuid;

    use super::{holder_done_by, note_verdict, plan_round, IdleJobs, LetGo, Process, RoundPlan, RECORD_MARGIN_MS};
    use crate::ids::{JobId, TenantId};
    use crate::model::assignment::{self, ShardMove};
    use crate::model::job::{Delivery, JobPatch, JobRecord, JobSpec};
    use crate::model::run::{FireState, InFlight, RUNS_KEPT};
    use crate::model::slot::FireId;
    use crate::state::firing::{ClaimItem, ClaimKind, ClaimVerdict, Released};
    use crate::state::tests::{cmd, MemState};
    use crate::state::{CommandBody, CommandResult, StateError, StateRead};
    use crate::store::{decode, Pair, Table};

    const T0: i64 = 1_800_000_000_000; // a whole second
    const ME: u64 = 1;

    /// One every-second job on 4 shards, all owned by node 1 at epoch 1; the job's slot at
    /// T0 + 1 s claimed by node `claimant` (incarnation `inc`).
    fn claimed(delivery: Delivery, claimant: u64, inc: Uuid) -> (MemState, JobId, FireId) {
        let mut s = MemState::default();
        s.apply(&cmd(T0, CommandBody::InitShards { shard_count: 4, runs_kept: RUNS_KEPT }));
        let moves = (0..4).map(|shard| ShardMove { shard, from: None, to: Some(claimant), new_epoch: 1 }).collect();
        s.apply(&cmd(T0, CommandBody::AssignShards { moves }));
        let (tenant, job) = (TenantId::default_tenant(), JobId::generate());
        let spec = JobSpec { name: "tick".into(), delivery, ..JobSpec::example("https://example.com/tick") };
        s.apply(&cmd(T0, CommandBody::CreateJob { id: job, tenant: tenant.clone(), spec }));
        let item = ClaimItem {
            shard: assignment::shard_of(job, 4),
            epoch: 1,
            tenant,
            job,
            at_ms: T0 + 1000,
            kind: ClaimKind::Slot,
        };
        s.apply(&cmd(T0, CommandBody::Claim { node: claimant, incarnation: inc, items: vec![item] }));
        if claimant != ME {
            // The shard came to this node (epoch 2) with the slot still in flight.
            let moves =
                (0..4).map(|shard| ShardMove { shard, from: Some(claimant), to: Some(ME), new_epoch: 2 }).collect();
            s.apply(&cmd(T0, CommandBody::AssignShards { moves }));
        }
        (s, job, FireId::scheduled(job, T0 + 1000))
    }

    /// The memory of a process past its first rounds' quiet period (`LetGo::quiet`).
    fn settled() -> LetGo {
        LetGo { first_round_ms: Some(0), ..LetGo::default() }
    }

    fn plan(s: &MemState, inc: Uuid, active: &HashSet<FireId>, let_go: &mut LetGo) -> RoundPlan {
        // Nothing new to claim: only what is in flight is judged.
        plan_with(s, inc, T0 + 999, active, let_go, None)
    }

    /// One round of this process at T0 + 500 ms with these slots active.
    fn plan_with(
        view: &impl StateRead,
        inc: Uuid,
        horizon_ms: i64,
        active: &HashSet<FireId>,
        let_go: &mut LetGo,
        idle: Option<&mut IdleJobs>,
    ) -> RoundPlan {
        let is_active = |id: &FireId| active.contains(id);
        let claimed_to = HashMap::new();
        let mut me = Process {
            node: ME,
            incarnation: inc,
            now_ms: T0 + 500,
            horizon_ms,
            active: &is_active,
            let_go,
            claimed_to: &claimed_to,
            held_elsewhere: &|_| false,
            idle,
        };
        plan_round(view, &mut me).expect("a plan")
    }

    /// Like [`plan`], at `now_ms`.
    fn plan_now(s: &MemState, inc: Uuid, now_ms: i64, let_go: &mut LetGo) -> RoundPlan {
        let none = |_: &FireId| false;
        let claimed_to = HashMap::new();
        let mut me = Process {
            node: ME,
            incarnation: inc,
            now_ms,
            horizon_ms: T0 + 999,
            active: &none,
            let_go,
            claimed_to: &claimed_to,
            idle: None,
            held_elsewhere: &|_| false,
        };
        plan_round(s, &mut me).expect("a plan")
    }

    /// Like [`plan`], at `now_ms`, with node 2's process still sending its slots or not.
    fn plan_at(s: &MemState, now_ms: i64, node_2_sending: bool) -> RoundPlan {
        let none = |_: &FireId| false;
        let claimed_to = HashMap::new();
        let sending = move |f: &InFlight| f.node == 2 && node_2_sending;
        let mut let_go = settled();
        let mut me = Process {
            node: ME,
            incarnation: Uuid::new_v4(),
            now_ms,
            horizon_ms: T0 + 999,
            active: &none,
            let_go: &mut let_go,
            claimed_to: &claimed_to,
            idle: None,
            held_elsewhere: &sending,
        };
        plan_round(s, &mut me).expect("a plan")
    }

    #[test]
    fn a_slot_its_holder_is_still_sending_is_left_to_it_until_it_cannot_be() {
        for delivery in [Delivery::AtLeastOnce, Delivery::AtMostOnce] {
            let (s, job, _) = claimed(delivery, 2, Uuid::new_v4());
            let record: JobRecord = decode(&s.get(Table::Jobs, &job_key(job)).unwrap().unwrap()).unwrap();
            let fs: FireState = decode(&s.get(Table::FireState, &job_key(job)).unwrap().unwrap()).unwrap();
            let done_by = holder_done_by(&record, &fs.in_flight[0]);
            // No retries: one attempt at its full timeout from the slot, plus the margin.
            assert_eq!(done_by, T0 + 1000 + i64::from(record.spec.timeout_seconds) * 1000 + RECORD_MARGIN_MS);
            let p = plan_at(&s, T0 + 1500, true);
            assert!(p.items.is_empty() && p.unknown.is_empty() && p.send_now.is_empty(), "{delivery:?}: {p:?}");
            let p = plan_at(&s, done_by, true);
            assert_eq!(p.items.len() + p.unknown.len(), 1, "{delivery:?}: past its bound, whatever it says");
            let p = plan_at(&s, T0 + 1500, false);
            assert_eq!(
                p.items.len() + p.unknown.len(),
                1,
                "{delivery:?}: a slot its holder is not sending is taken at once"
            );
        }
        // A slow target's retries: five attempts of 30 s with 60 s between them, every hour.
        let spec = JobSpec {
            name: "slow".into(),
            cron_expression: "0 0 * * * *".into(),
            timeout_seconds: 30,
            max_retries: 4,
            retry_delay_seconds: 60,
            ..JobSpec::example("https://example.com/slow")
        };
        let record = JobRecord {
            id: JobId::generate(),
            tenant: TenantId::default_tenant(),
            spec,
            created_at_ms: T0,
            updated_at_ms: T0,
        };
        let f = InFlight {
            at_ms: T0,
            fire_id: FireId::scheduled(record.id, T0),
            node: 2,
            incarnation: Uuid::nil(),
            epoch: 1,
            claimed_at_ms: T0 - 2000,
            released: false,
        };
        assert_eq!(holder_done_by(&record, &f), T0 + 5 * 30_000 + 4 * 60_000 + RECORD_MARGIN_MS);
        // Every minute instead: retries stop at the next slot, whose attempt may take a timeout.
        let record = JobRecord { spec: JobSpec { cron_expression: "0 * * * * *".into(), ..record.spec }, ..record };
        assert_eq!(holder_done_by(&record, &f), T0 + 60_000 + 30_000 + RECORD_MARGIN_MS);
    }

    fn job_key(job: JobId) -> Vec<u8> {
        crate::state::keys::job(&TenantId::default_tenant(), job)
    }

    fn kinds(p: &RoundPlan) -> Vec<ClaimKind> {
        p.items.iter().map(|i| i.kind).collect()
    }

    #[test]
    fn an_own_claim_whose_answer_was_lost_is_sent_at_once_unless_it_is_already_dispatched() {
        let inc = Uuid::new_v4();
        let (s, _, fire) = claimed(Delivery::AtLeastOnce, ME, inc);
        let p = plan(&s, inc, &HashSet::new(), &mut settled());
        assert_eq!(p.send_now.iter().map(|p| p.fire_id).collect::<Vec<_>>(), vec![fire]);
        assert!(p.items.is_empty() && p.unknown.is_empty());
        let p = plan(&s, inc, &HashSet::from([fire]), &mut settled());
        assert!(p.send_now.is_empty() && p.items.is_empty(), "dispatched already: its result is on its way");
    }

    #[test]
    fn a_released_own_slot_is_claimed_back_before_it_is_sent_until_the_reclaim_is_judged() {
        let inc = Uuid::new_v4();
        let (mut s, job, fire) = claimed(Delivery::AtMostOnce, ME, inc);
        let before_release = s.clone();
        let tenant = TenantId::default_tenant();
        s.apply(&cmd(T0, CommandBody::ReleaseSlots { node: ME, items: vec![Released { tenant, job, fire_id: fire }] }));
        let mut let_go = settled();
        let_go.dropped(fire);
        // Before the release shows in this node's state, a let-go slot is neither sent nor
        // claimed back.
        let p = plan(&before_release, inc, &HashSet::new(), &mut let_go);
        assert!(p.items.is_empty() && p.send_now.is_empty(), "{p:?}");
        // The release shows, but its write has not been answered: the recorder may still write
        // it again, and that copy must not come after a reclaim (finding 11). No reclaim yet.
        let p = plan(&s, inc, &HashSet::new(), &mut let_go);
        assert!(p.items.is_empty() && p.send_now.is_empty(), "{p:?}");
        let_go.release_written(&fire);
        let p = plan(&s, inc, &HashSet::new(), &mut let_go);
        assert_eq!(kinds(&p), vec![ClaimKind::Reclaim]);
        assert!(p.send_now.is_empty(), "never sent without the reclaim");
        // The claim carrying the reclaim was lost on its way: the next round plans it again.
        let p = plan(&s, inc, &HashSet::new(), &mut let_go);
        assert_eq!(kinds(&p), vec![ClaimKind::Reclaim], "a lost reclaim is retried");
        // It committed, but its answer was lost: the slot shows "not released" again after its
        // release was seen, so it is this process's reclaim, and the slot is sent at once.
        let reclaim = CommandBody::Claim { node: ME, incarnation: inc, items: p.items.clone() };
        assert_eq!(s.apply(&cmd(T0, reclaim.clone())), CommandResult::Claims(vec![ClaimVerdict::Accepted]));
        let p = plan(&s, inc, &HashSet::new(), &mut let_go);
        assert_eq!(p.send_now.iter().map(|p| p.fire_id).collect::<Vec<_>>(), vec![fire]);
        assert!(p.items.is_empty());
        // Dispatched (active) and forgotten: nothing more.
        let_go.forget(&fire);
        let p = plan(&s, inc, &HashSet::from([fire]), &mut let_go);
        assert!(p.items.is_empty() && p.send_now.is_empty(), "claimed back once only");
        // A second copy of the reclaim (planned while this node's state lagged) changes nothing.
        assert_eq!(s.apply(&cmd(T0, reclaim)), CommandResult::Claims(vec![ClaimVerdict::NotInFlight]));
    }

    #[test]
    fn a_let_go_slot_is_claimed_back_at_a_new_epoch_once_released_and_sent_if_that_answer_is_lost() {
        let inc = Uuid::new_v4();
        let (mut s, job, fire) = claimed(Delivery::AtMostOnce, ME, inc);
        // The shard is revoked and comes back (epoch 3) while the slot is let go.
        let back = |s: &mut MemState| {
            for (to, new_epoch) in [(None, 2), (Some(ME), 3)] {
                let from = if to.is_none() { Some(ME) } else { None };
                let moves = (0..4).map(|shard| ShardMove { shard, from, to, new_epoch }).collect();
                s.apply(&cmd(T0, CommandBody::AssignShards { moves }));
            }
        };
        let mut before_release = s.clone();
        back(&mut before_release);
        let tenant = TenantId::default_tenant();
        s.apply(&cmd(T0, CommandBody::ReleaseSlots { node: ME, items: vec![Released { tenant, job, fire_id: fire }] }));
        back(&mut s);
        let mut let_go = settled();
        let_go.dropped(fire);
        let_go.release_written(&fire);
        // Its release has not shown: neither recorded unknown, nor claimed back, nor sent.
        let p = plan(&before_release, inc, &HashSet::new(), &mut let_go);
        assert!(p.items.is_empty() && p.send_now.is_empty() && p.unknown.is_empty(), "{p:?}");
        // Released: claimed back at epoch 3, although at-most-once (its holder never sent it).
        let p = plan(&s, inc, &HashSet::new(), &mut let_go);
        assert_eq!(kinds(&p), vec![ClaimKind::Reclaim]);
        assert_eq!(p.items[0].epoch, 3);
        let reclaim = CommandBody::Claim { node: ME, incarnation: inc, items: p.items.clone() };
        assert_eq!(s.apply(&cmd(T0, reclaim)), CommandResult::Claims(vec![ClaimVerdict::Accepted]));
        // That answer was lost: the slot now shows this process's reclaim, and is sent.
        let p = plan(&s, inc, &HashSet::new(), &mut let_go);
        assert_eq!(p.send_now.iter().map(|p| p.fire_id).collect::<Vec<_>>(), vec![fire]);
    }

    #[test]
    fn a_let_go_slot_taken_by_another_holder_is_not_claimed_back_while_its_release_may_be_written() {
        let inc = Uuid::new_v4();
        // This process let the slot go; another node's process claimed it back meanwhile.
        let (s, _, fire) = claimed(Delivery::AtLeastOnce, 2, Uuid::new_v4());
        let mut let_go = settled();
        let_go.dropped(fire);
        // Its release is still on its way: taking the slot back now and sending it would let
        // that release, committed later, mark it "never sent".
        let p = plan(&s, inc, &HashSet::new(), &mut let_go);
        assert!(p.items.is_empty() && p.send_now.is_empty() && p.unknown.is_empty(), "{p:?}");
        // Once its write was answered "committed", no copy can follow: an ordinary reclaim.
        let_go.release_written(&fire);
        let p = plan(&s, inc, &HashSet::new(), &mut let_go);
        assert_eq!(kinds(&p), vec![ClaimKind::Reclaim]);
    }

    #[test]
    fn a_process_claims_nothing_back_until_the_fences_of_an_earlier_ones_releases_passed() {
        // A slot of an earlier process of this node, which may have let it go and fenced its
        // release up to `RELEASE_FENCE_MS` ahead: no reclaim in the first rounds.
        let (s, _, fire) = claimed(Delivery::AtLeastOnce, ME, Uuid::new_v4());
        let inc = Uuid::new_v4();
        let mut fresh = LetGo::default();
        let p = plan(&s, inc, &HashSet::new(), &mut fresh);
        assert!(p.items.is_empty() && p.send_now.is_empty(), "first round: {p:?}");
        assert_eq!(fresh.first_round_ms, Some(T0 + 500));
        // The slot (T0 + 1 s) is due within the margin of that first round: it may be one the
        // earlier process let go. The quiet period ends exactly `quiet_for` after it.
        let quiet_for = super::RELEASE_FENCE_MS + crate::cluster::FENCE_MARGIN_MS;
        let p = plan_now(&s, inc, T0 + 500 + quiet_for - 1, &mut fresh);
        assert!(p.items.is_empty() && p.send_now.is_empty(), "1 ms before the end: {p:?}");
        let p = plan_now(&s, inc, T0 + 500 + quiet_for, &mut fresh);
        assert_eq!(kinds(&p), vec![ClaimKind::Reclaim]);
        assert_eq!(p.pending[0].as_ref().map(|p| p.fire_id), Some(fire));
        // The disk kept nothing: it must keep the bound this process assumed.
        assert_eq!(fresh.bound_to_keep(), Some(T0 + 500 + super::RELEASE_FENCE_MS));
    }

    #[test]
    fn a_restarted_process_waits_only_for_the_release_fences_its_disk_kept() {
        // The same slot, due within the margin of the first round; the earlier processes of
        // this node kept their latest release fence on disk.
        let (s, _, fire) = claimed(Delivery::AtLeastOnce, ME, Uuid::new_v4());
        let margin = crate::cluster::FENCE_MARGIN_MS;
        // A fence long past (the last release was minutes ago): claimed back in the first round.
        let mut resumed = LetGo::resume(super::EarlierReleases { fences_until_ms: Some(T0 - 60_000) });
        let p = plan(&s, Uuid::new_v4(), &HashSet::new(), &mut resumed);
        assert_eq!(kinds(&p), vec![ClaimKind::Reclaim]);
        assert_eq!(p.pending[0].as_ref().map(|p| p.fire_id), Some(fire));
        assert_eq!(resumed.bound_to_keep(), None, "the disk keeps one already");
        // A fence still ahead (a release sent just before the process died): quiet until that
        // fence plus its margin, not a whole fence after the first round.
        let fence = T0 + 700;
        let mut resumed = LetGo::resume(super::EarlierReleases { fences_until_ms: Some(fence) });
        let inc = Uuid::new_v4();
        let p = plan(&s, inc, &HashSet::new(), &mut resumed);
        assert!(p.items.is_empty() && p.send_now.is_empty(), "before the fence: {p:?}");
        let p = plan_now(&s, inc, fence + margin - 1, &mut resumed);
        assert!(p.items.is_empty() && p.send_now.is_empty(), "1 ms before its margin ends: {p:?}");
        let p = plan_now(&s, inc, fence + margin, &mut resumed);
        assert_eq!(kinds(&p), vec![ClaimKind::Reclaim]);
        assert!(fence + margin < T0 + 500 + super::RELEASE_FENCE_MS + margin, "earlier than the bound");
        // A fence kept far ahead (a wrong reading, a damaged value): never a longer wait than
        // the bound from the first round.
        let mut resumed = LetGo::resume(super::EarlierReleases { fences_until_ms: Some(T0 + 3_600_000) });
        let end = T0 + 500 + super::RELEASE_FENCE_MS + margin;
        let p = plan(&s, inc, &HashSet::new(), &mut resumed);
        assert!(p.items.is_empty() && p.send_now.is_empty(), "first round: {p:?}");
        let p = plan_now(&s, inc, end - 1, &mut resumed);
        assert!(p.items.is_empty() && p.send_now.is_empty(), "1 ms before the bound: {p:?}");
        let p = plan_now(&s, inc, end, &mut resumed);
        assert_eq!(kinds(&p), vec![ClaimKind::Reclaim]);
    }

    #[test]
    fn a_just_started_process_claims_back_at_once_a_slot_due_after_its_first_round() {
        // The slot is due at T0 + 1 s and the rounds run at T0 + 500 ms; another node's process
        // held it (say, it died), or an earlier process of this node did.
        for claimant in [2, ME] {
            let (s, _, fire) = claimed(Delivery::AtLeastOnce, claimant, Uuid::new_v4());
            let margin = crate::cluster::FENCE_MARGIN_MS;
            // First round long enough before the slot: no earlier process of this node can have
            // let it go, so it is claimed back although the process is quiet.
            let mut fresh = LetGo { first_round_ms: Some(T0 + 1000 - margin - 1), ..LetGo::default() };
            assert!(fresh.quiet(T0 + 500));
            let p = plan(&s, Uuid::new_v4(), &HashSet::new(), &mut fresh);
            assert_eq!(kinds(&p), vec![ClaimKind::Reclaim], "holder {claimant}");
            assert_eq!(p.pending[0].as_ref().map(|p| p.fire_id), Some(fire));
            // Within the margin of the first round, it waits for the quiet period's end.
            let mut fresh = LetGo { first_round_ms: Some(T0 + 1000 - margin), ..LetGo::default() };
            let p = plan(&s, Uuid::new_v4(), &HashSet::new(), &mut fresh);
            assert!(p.items.is_empty() && p.send_now.is_empty(), "holder {claimant}: {p:?}");
        }
    }

    #[test]
    fn another_senders_slot_is_reclaimed_or_recorded_unknown_by_its_delivery() {
        let (s, _, fire) = claimed(Delivery::AtLeastOnce, 2, Uuid::new_v4());
        let p = plan(&s, Uuid::new_v4(), &HashSet::new(), &mut settled());
        assert_eq!(kinds(&p), vec![ClaimKind::Reclaim]);
        assert_eq!(p.pending[0].as_ref().map(|p| p.fire_id), Some(fire));
        let (s, _, fire) = claimed(Delivery::AtMostOnce, 2, Uuid::new_v4());
        let p = plan(&s, Uuid::new_v4(), &HashSet::new(), &mut settled());
        assert!(p.items.is_empty() && p.send_now.is_empty());
        assert_eq!(p.unknown.iter().map(|p| p.fire_id).collect::<Vec<_>>(), vec![fire]);
    }

    #[test]
    fn an_earlier_incarnations_claim_is_not_taken_for_this_processs_own() {
        let (s, _, _) = claimed(Delivery::AtLeastOnce, ME, Uuid::new_v4());
        let p = plan(&s, Uuid::new_v4(), &HashSet::new(), &mut settled());
        assert_eq!(kinds(&p), vec![ClaimKind::Reclaim], "a restart re-sends through a reclaim, never directly");
        assert!(p.send_now.is_empty());
    }

    /// One every-second job on 4 shards owned by this node, nothing claimed yet.
    fn fresh() -> (MemState, JobId, Vec<u8>) {
        let mut s = MemState::default();
        s.apply(&cmd(T0, CommandBody::InitShards { shard_count: 4, runs_kept: RUNS_KEPT }));
        let moves = (0..4).map(|shard| ShardMove { shard, from: None, to: Some(ME), new_epoch: 1 }).collect();
        s.apply(&cmd(T0, CommandBody::AssignShards { moves }));
        let (tenant, job) = (TenantId::default_tenant(), JobId::generate());
        let spec = JobSpec { name: "tick".into(), ..JobSpec::example("https://example.com/tick") };
        s.apply(&cmd(T0, CommandBody::CreateJob { id: job, tenant: tenant.clone(), spec }));
        (s, job, crate::state::keys::job(&tenant, job))
    }

    #[test]
    fn a_scan_budget_slices_the_first_scan_and_every_shard_is_reached_even_if_forgotten() {
        // 4 shards, 40 every-second jobs spread over them, a budget of 5 job reads a round.
        let (mut s, _, _) = fresh();
        for i in 0..39 {
            let spec = JobSpec { name: format!("job-{i}"), ..JobSpec::example("https://example.com/tick") };
            s.apply(&cmd(
                T0,
                CommandBody::CreateJob { id: JobId::generate(), tenant: TenantId::default_tenant(), spec },
            ));
        }
        let inc = Uuid::new_v4();
        let horizon = T0 + 2_000;
        let jobs_of = |p: &RoundPlan| p.items.iter().map(|i| i.job).collect::<HashSet<_>>();
        // Unlimited: one round claims for every job.
        let all = jobs_of(&plan_idle(&s, inc, horizon, &mut IdleJobs::default()));
        assert_eq!(all.len(), 40);
        // Sliced: each round leaves shards for the next and says so; the rounds together reach
        // every job, and the last one has nothing left.
        let mut idle = IdleJobs::with_scan_budget(5);
        let (mut seen, mut rounds) = (HashSet::new(), 0);
        loop {
            let p = plan_idle(&s, inc, horizon, &mut idle);
            rounds += 1;
            seen.extend(jobs_of(&p));
            if !p.more {
                break;
            }
            assert!(rounds < 10, "the slices never end");
        }
        assert!(rounds > 1, "a budget of 5 reads cannot scan 40 jobs in one round");
        assert_eq!(seen, all);
        // Forgotten after every round, the slices still move on and reach every shard.
        let mut idle = IdleJobs::with_scan_budget(5);
        let mut seen = HashSet::new();
        for _ in 0..8 {
            seen.extend(jobs_of(&plan_idle(&s, inc, horizon, &mut idle)));
            idle.forget(true, Vec::new());
        }
        assert_eq!(seen, all);
    }

    fn plan_idle(s: &impl StateRead, inc: Uuid, horizon_ms: i64, idle: &mut IdleJobs) -> RoundPlan {
        let is_active = |_: &FireId| false;
        let mut let_go = settled();
        let claimed_to = HashMap::new();
        let mut me = Process {
            node: ME,
            incarnation: inc,
            now_ms: horizon_ms - 2000,
            horizon_ms,
            active: &is_active,
            let_go: &mut let_go,
            claimed_to: &claimed_to,
            held_elsewhere: &|_| false,
            idle: Some(idle),
        };
        plan_round(s, &mut me).expect("a plan")
    }

    #[test]
    fn an_idle_job_is_skipped_until_its_next_slot_nears_or_it_changes() {
        let inc = Uuid::new_v4();
        let (mut s, job, key) = fresh();
        let mut idle = IdleJobs::default();
        // Its first slot (T0 + 1 s) is beyond the horizon: nothing to do, noted idle until then.
        assert!(plan_idle(&s, inc, T0 + 999, &mut idle).items.is_empty());
        assert_eq!(idle.len(), 1);
        // A manual trigger puts a slot in flight; a round that was not told is blind to it...
        let trigger = CommandBody::Trigger { id: job, tenant: TenantId::default_tenant(), trigger: Uuid::new_v4() };
        s.apply(&cmd(T0, trigger));
        assert!(plan_idle(&s, inc, T0 + 999, &mut idle).items.is_empty(), "skipped without reading");
        // ...which is why the owner forgets the keys the store says were written, first.
        idle.forget(false, [key]);
        assert_eq!(kinds(&plan_idle(&s, inc, T0 + 999, &mut idle)), vec![ClaimKind::Reclaim]);
        assert!(idle.is_empty(), "a job with a slot in flight is never idle");
    }

    /// Plans, claims and notes verdicts as the owner does, for `rounds` rounds of 200 ms from
    /// `now_ms`; the slots accepted.
    fn own_rounds(s: &mut MemState, claimed_to: &mut HashMap<JobId, i64>, now_ms: i64, rounds: i64) -> Vec<i64> {
        let inc = Uuid::new_v4();
        let mut accepted = Vec::new();
        for r in 0..rounds {
            let now_ms = now_ms + r * 200;
            let is_active = |_: &FireId| true;
            let mut let_go = settled();
            let snapshot = claimed_to.clone();
            let mut me = Process {
                node: ME,
                incarnation: inc,
                now_ms,
                horizon_ms: now_ms + 2000,
                active: &is_active,
                let_go: &mut let_go,
                claimed_to: &snapshot,
                held_elsewhere: &|_| false,
                idle: None,
            };
            let p = plan_round(s, &mut me).expect("a plan");
            if p.items.is_empty() {
                continue;
            }
            let res = s.apply(&cmd(now_ms, CommandBody::Claim { node: ME, incarnation: inc, items: p.items.clone() }));
            let CommandResult::Claims(verdicts) = res else { panic!("{res:?}") };
            for (item, v) in p.items.iter().zip(verdicts) {
                note_verdict(claimed_to, item, v);
                if v == ClaimVerdict::Accepted {
                    accepted.push(item.at_ms);
                }
            }
        }
        accepted
    }

    #[test]
    fn a_new_schedule_applied_while_a_claim_is_on_its_way_does_not_stop_the_job() {
        let (mut s, job, _) = fresh();
        let tenant = TenantId::default_tenant();
        let reschedule = |cron: &str| CommandBody::UpdateJob {
            id: job,
            tenant: tenant.clone(),
            patch: JobPatch { cron_expression: Some(cron.into()), ..JobPatch::default() },
        };
        s.apply(&cmd(T0, reschedule("*/3 * * * * *")));
        let mut claimed_to = HashMap::new();
        // Every 3 s: the round at T0 + 1 s claims T0 + 3 s...
        assert_eq!(own_rounds(&mut s, &mut claimed_to, T0 + 1000, 1), vec![T0 + 3000]);
        // ...and the one at T0 + 3.1 s plans T0 + 6 s, but the job becomes an every-second job
        // before that claim arrives: the claim is refused, the next slot is T0 + 4 s.
        let inc = Uuid::new_v4();
        let snapshot = claimed_to.clone();
        let is_active = |_: &FireId| true;
        let mut let_go = settled();
        let mut me = Process {
            node: ME,
            incarnation: inc,
            now_ms: T0 + 4100,
            horizon_ms: T0 + 6100,
            active: &is_active,
            let_go: &mut let_go,
            claimed_to: &snapshot,
            held_elsewhere: &|_| false,
            idle: None,
        };
        let p = plan_round(&s, &mut me).expect("a plan");
        assert_eq!(p.items.iter().map(|i| i.at_ms).collect::<Vec<_>>(), vec![T0 + 6000]);
        s.apply(&cmd(T0 + 4100, reschedule("* * * * * *")));
        let res = s.apply(&cmd(T0 + 4100, CommandBody::Claim { node: ME, incarnation: inc, items: p.items.clone() }));
        let CommandResult::Claims(verdicts) = res else { panic!("{res:?}") };
        assert_eq!(verdicts, vec![ClaimVerdict::NotNextSlot]);
        note_verdict(&mut claimed_to, &p.items[0], verdicts[0]);
        // The next rounds claim the new schedule's slots from the watermark (T0 + 4.1 s) on.
        let accepted = own_rounds(&mut s, &mut claimed_to, T0 + 4300, 3);
        assert_eq!(accepted.first(), Some(&(T0 + 5000)), "{accepted:?}");
    }

    #[test]
    fn an_idle_job_is_read_again_once_its_next_slot_is_within_the_horizon() {
        let inc = Uuid::new_v4();
        let (s, _, _) = fresh();
        let mut idle = IdleJobs::default();
        assert!(plan_idle(&s, inc, T0 + 999, &mut idle).items.is_empty());
        let p = plan_idle(&s, inc, T0 + 2000, &mut idle);
        assert_eq!(p.items.iter().map(|i| i.at_ms).collect::<Vec<_>>(), vec![T0 + 1000, T0 + 2000]);
        // New shard owners: everything is forgotten.
        idle.forget(true, []);
        assert!(idle.is_empty());
    }

    /// Counts the job reads and shard scans a round makes.
    struct Counting<'a> {
        state: &'a MemState,
        job_reads: std::cell::Cell<usize>,
        scans: std::cell::Cell<usize>,
    }

    impl StateRead for Counting<'_> {
        fn get(&self, t: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
            if t == Table::Jobs {
                self.job_reads.set(self.job_reads.get() + 1);
            }
            self.state.get(t, key)
        }

        fn scan_prefix(&self, t: Table, prefix: &[u8], limit: usize) -> Result<Vec<Pair>, StateError> {
            if t == Table::ShardJobs {
                self.scans.set(self.scans.get() + 1);
            }
            self.state.scan_prefix(t, prefix, limit)
        }
    }

    /// One round with the idle memory and these slots active; the plan and how many jobs it read.
    fn plan_counting(s: &MemState, inc: Uuid, active: &HashSet<FireId>, idle: &mut IdleJobs) -> (RoundPlan, usize) {
        let c = Counting { state: s, job_reads: 0.into(), scans: 0.into() };
        // The slot after the one in flight (T0 + 2 s) is beyond the horizon.
        let plan = plan_with(&c, inc, T0 + 1999, active, &mut settled(), Some(idle));
        (plan, c.job_reads.get())
    }

    #[test]
    fn a_job_whose_slot_in_flight_this_process_is_sending_is_not_read_until_it_is_written() {
        let inc = Uuid::new_v4();
        let (s, job, fire_id) = claimed(Delivery::AtLeastOnce, ME, inc);
        let key = crate::state::keys::job(&TenantId::default_tenant(), job);
        let sending: HashSet<FireId> = [fire_id].into();
        let mut idle = IdleJobs::default();
        // This process is sending the slot in flight, the next one is beyond the horizon:
        // nothing to do, and the job is idle until that next slot...
        let (p, reads) = plan_counting(&s, inc, &sending, &mut idle);
        assert!(p.items.is_empty() && p.send_now.is_empty() && p.unknown.is_empty());
        assert_eq!((reads, idle.len()), (1, 1));
        let (_, reads) = plan_counting(&s, inc, &sending, &mut idle);
        assert_eq!(reads, 0, "not read again while its slot is being sent");
        // ...until the store says its firing state was written. Then it is read again, and a
        // slot of this process still in flight but no longer active (here: its claim's answer
        // was lost, so it was never sent) is sent now, and the job stays busy.
        idle.forget(false, [key]);
        let (p, reads) = plan_counting(&s, inc, &HashSet::new(), &mut idle);
        assert_eq!(reads, 1);
        assert_eq!(p.send_now.iter().map(|p| p.fire_id).collect::<Vec<_>>(), vec![fire_id]);
        assert!(idle.is_empty(), "a slot in flight that this process is not sending keeps its job busy");
    }

    #[test]
    fn after_one_full_scan_a_round_reads_only_busy_due_and_changed_jobs() {
        let inc = Uuid::new_v4();
        let (mut s, busy, _) = fresh();
        let tenant = TenantId::default_tenant();
        let yearly = |name: &str| JobSpec {
            name: name.into(),
            cron_expression: "0 0 1 1 *".into(),
            ..JobSpec::example("https://example.com/yearly")
        };
        let quiet: Vec<JobId> = (0..40).map(|_| JobId::generate()).collect();
        for (i, id) in quiet.iter().enumerate() {
            s.apply(&cmd(
                T0,
                CommandBody::CreateJob { id: *id, tenant: tenant.clone(), spec: yearly(&format!("q{i}")) },
            ));
        }
        let mut idle = IdleJobs::default();
        let round = |s: &MemState, idle: &mut IdleJobs, horizon: i64| {
            let c = Counting { state: s, job_reads: 0.into(), scans: 0.into() };
            let p = plan_idle(&c, inc, horizon, idle);
            (p, c.job_reads.get(), c.scans.get())
        };
        // The first round scans the 4 shards and reads all 41 jobs; the every-second job has
        // its first slot (T0 + 1 s) within the horizon.
        let (p, reads, scans) = round(&s, &mut idle, T0 + 1500);
        assert_eq!((p.items.len(), reads, scans), (1, 41, 4));
        assert_eq!(idle.len(), 40);
        // The next one reads only the busy job: no scan, no quiet job.
        let (_, reads, scans) = round(&s, &mut idle, T0 + 1700);
        assert_eq!((reads, scans), (1, 0));
        // A job written since (a new one, and a quiet one paused) is read once more...
        let new = JobId::generate();
        s.apply(&cmd(T0, CommandBody::CreateJob { id: new, tenant: tenant.clone(), spec: yearly("new") }));
        let pause = JobPatch { is_active: Some(false), ..JobPatch::default() };
        s.apply(&cmd(T0, CommandBody::UpdateJob { id: quiet[0], tenant: tenant.clone(), patch: pause }));
        let keys = [new, quiet[0]].map(|id| crate::state::keys::job(&tenant, id));
        idle.forget(false, keys);
        let (_, reads, scans) = round(&s, &mut idle, T0 + 1900);
        assert_eq!((reads, scans), (3, 0));
        assert_eq!(idle.len(), 41);
        // ...a deleted one is read once and then never again...
        s.apply(&cmd(T0, CommandBody::DeleteJob { id: busy, tenant: tenant.clone() }));
        idle.forget(false, [crate::state::keys::job(&tenant, busy)]);
        let (_, reads, _) = round(&s, &mut idle, T0 + 1900);
        assert_eq!(reads, 1);
        let (_, reads, _) = round(&s, &mut idle, T0 + 1900);
        assert_eq!(reads, 0);
        // ...a shard whose owner or epoch was written is scanned again, and only that one...
        let in_shard_2 = quiet.iter().chain([&new]).filter(|id| assignment::shard_of(**id, 4) == 2).count();
        idle.forget_written(false, [(Table::Shards, 2u32.to_be_bytes().to_vec())]);
        let (_, reads, scans) = round(&s, &mut idle, T0 + 1900);
        assert_eq!((reads, scans), (in_shard_2, 1));
        // ...and forgetting everything means a full scan again.
        idle.forget(true, []);
        let (_, reads, scans) = round(&s, &mut idle, T0 + 1900);
        assert_eq!((reads, scans), (41, 4));
    }
}

#[cfg(test)]
mod round_timing_tests {
    use std::time::Duration;

    use super::until_next_round;

    #[test]
    fn rounds_run_half_a_tick_away_from_whole_seconds() {
        let second = 1_800_000_000_000;
        assert_eq!(until_next_round(second, 200), Duration::from_millis(100), "from a whole second to .100");
        assert_eq!(until_next_round(second + 100, 200), Duration::from_millis(200), "at a round: the next one");
        assert_eq!(until_next_round(second + 101, 200), Duration::from_millis(199));
        assert_eq!(until_next_round(second + 999, 200), Duration::from_millis(101), "to .100 of the next second");
        assert_eq!(until_next_round(-1, 200), Duration::from_millis(101), "before the epoch too");
        for now in second..second + 2_000 {
            let wait = until_next_round(now, 200).as_millis() as i64;
            assert!((1..=200).contains(&wait), "{now}: {wait}");
            assert_eq!((now + wait) % 200, 100, "{now}");
        }
        assert_eq!(until_next_round(second, 0), Duration::from_millis(1), "a zero tick is one millisecond");
    }
}
