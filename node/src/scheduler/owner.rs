//! The owner's loop: claim the slots of this node's shards ahead of time, dispatch each at its
//! instant, and record the results in batches.
//!
//! Invariants (docs/design/firing.md): a slot is sent only after its claim committed, only
//! while this node's lease is valid, and only while the local state (as of the last grant)
//! still shows this node owning the shard at the claim's epoch. A fire id stays in `active`
//! from dispatch until its result is committed, so nothing this process sent is sent again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use raftcron_client::Consistency;
use uuid::Uuid;

use crate::clock::ms_to_utc;
use crate::clock::Clock;
use crate::clock::ClusterClock;
use crate::cluster::Cluster;
use crate::executor::http::{Executor, Fire};
use crate::executor::notify::Notifier;
use crate::ids::JobId;
use crate::metrics::{FireOutcome, Metrics};
use crate::model::job::ConcurrencyPolicy;
use crate::model::run::RunStatus;
use crate::model::slot::FireId;
use crate::scheduler::lease::Lease;
use crate::scheduler::round::{self, unsent_run, Pending};
use crate::scheduler::wake::Wake;
use crate::scheduler::SchedulerConfig;
use crate::state::firing::{self, ClaimKind, ClaimVerdict, Released, RunOutcome};
use crate::state::{CommandBody, CommandResult};
use crate::store::Table;

use crate::scheduler::holding::{Active, Holders, Holding};

/// What dispatch reports to the recorder.
#[derive(Debug)]
enum Report {
    /// A finished (or skipped, or unknown) run.
    Run(RunOutcome),
    /// A claimed slot let go unsent.
    Release(Released),
}
/// Slots this process claimed and then let go unsent (see `round::LetGo`).
type Dropped = Arc<Mutex<round::LetGo>>;
/// Runs executing now, per job (for `concurrency_policy: forbid`).
type Running = Arc<Mutex<HashMap<JobId, u32>>>;

fn active_insert(active: &Active, id: FireId) -> bool {
    active.lock().map(|mut a| a.insert(id)).unwrap_or(false)
}

fn active_remove(active: &Active, id: &FireId) {
    if let Ok(mut a) = active.lock() {
        a.remove(id);
    }
}

// Each is a separate handle the loop owns; bundling them would only rename the list.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    cluster: Cluster,
    executor: Executor,
    notifier: Notifier,
    lease: Lease,
    clock: ClusterClock,
    cfg: SchedulerConfig,
    metrics: Metrics,
    holding: Holding,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let Holding { incarnation, active } = holding;
    let running: Running = Arc::default();
    let fences = KeptFences::open(cluster.store.clone());
    let dropped: Dropped = Arc::new(Mutex::new(round::LetGo::resume(fences.earlier())));
    let (results_tx, results_rx) = tokio::sync::mpsc::channel::<Report>(65_536);
    let recorder = tokio::spawn(record_results(
        cluster.clone(),
        clock.clone(),
        notifier,
        active.clone(),
        dropped.clone(),
        fences.clone(),
        results_rx,
        stop.clone(),
    ));
    let mut claimed_to: HashMap<JobId, i64> = HashMap::new();
    // Jobs with nothing to do soon are skipped until their record, their firing state or the
    // shard owners change (see `round::IdleJobs`).
    cluster.store.watch(&[Table::Jobs, Table::FireState, Table::Shards]);
    let mut idle = round::IdleJobs::with_scan_budget(SCAN_BUDGET);
    let holders = Holders::default();
    let wake = Wake::start();
    let tick_ms = i64::try_from(cfg.tick.as_millis()).unwrap_or(i64::MAX);
    // A round that left shards unscanned is followed by the next at once.
    let mut more = false;
    loop {
        if more {
            tokio::task::yield_now().await;
            if *stop.borrow() {
                break;
            }
        } else {
            tokio::select! {
                // Half a tick away from the whole seconds, where most slots are sent.
                _ = tokio::time::sleep(round::until_next_round(clock.now_ms(), tick_ms)) => {}
                // A shard gained (or lost) is claimed for at once, not at the next tick.
                _ = cluster.store.shards_written() => {}
                _ = stop.changed() => break,
            }
        }
        more = false;
        if !lease.valid() {
            metrics.scheduler.shards_owned.set(0);
            continue;
        }
        let ctx = Ctx {
            cluster: &cluster,
            executor: &executor,
            lease: &lease,
            clock: &clock,
            active: &active,
            running: &running,
            dropped: &dropped,
            results: &results_tx,
            metrics: &metrics,
            wake: &wake,
        };
        match round(&ctx, incarnation, &cfg, &mut claimed_to, &mut idle, &holders).await {
            Ok(left) => more = left,
            Err(e) => tracing::warn!(error = %e, "claim round failed"),
        }
        // After the first round, when the disk kept no fence: the bound this process assumed
        // for its predecessors, so that the next process assumes it too (`round::LetGo`).
        // (`keep` writes only a fence later than the one kept.)
        if let Some(bound) = dropped.lock().ok().and_then(|d| d.bound_to_keep()) {
            if let Err(e) = fences.keep(bound) {
                tracing::warn!(error = %e, "keeping the earlier processes' release fence; the next process waits it out");
            }
        }
    }
    drop(results_tx);
    let _ = recorder.await;
}

struct Ctx<'a> {
    cluster: &'a Cluster,
    executor: &'a Executor,
    lease: &'a Lease,
    /// The cluster's time: what slots are due by (see [`ClusterClock`]).
    clock: &'a ClusterClock,
    active: &'a Active,
    running: &'a Running,
    dropped: &'a Dropped,
    results: &'a tokio::sync::mpsc::Sender<Report>,
    metrics: &'a Metrics,
    /// Wakes dispatched slots at their instant (see `scheduler::wake`).
    wake: &'a Wake,
}

/// Runs `f` (synchronous work that may take long) so that the other tasks of this worker thread
/// move to another one meanwhile; inline on a single-threaded runtime.
fn off_the_runtime<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

async fn round(
    ctx: &Ctx<'_>,
    incarnation: Uuid,
    cfg: &SchedulerConfig,
    claimed_to: &mut HashMap<JobId, i64>,
    idle: &mut round::IdleJobs,
    holders: &Holders,
) -> Result<bool, String> {
    let me = ctx.cluster.node_id();
    // Taken before reading the state: a write after this is in the next round's take.
    let changes = ctx.cluster.store.take_changes();
    idle.forget_written(changes.all, changes.keys);
    let now_ms = ctx.clock.now_ms();
    let is_active = |id: &FireId| ctx.active.lock().map(|a| a.contains(id)).unwrap_or(true);
    // Another node's sent, unrecorded slot is left to it while its process says it is still
    // sending it (`scheduler::holding`); not knowing counts as "still sending". Unknown holders
    // are asked, and the round is planned again if they answer within `HOLDER_WAIT` (a dead
    // node refuses at once, so its slots go out in this round, not the next).
    let fresh = cfg.tick * 5;
    let mut plan_once = || {
        // Reading the state is synchronous and, after a shard move with many jobs, takes
        // seconds: the other tasks of this worker thread (Raft among them) must not wait for it.
        off_the_runtime(|| {
            let to_ask = std::cell::RefCell::new(HashMap::<crate::ids::NodeId, Vec<FireId>>::new());
            let held_elsewhere =
                |f: &crate::model::run::InFlight| match holders.holds(f.node, f.incarnation, &f.fire_id, fresh) {
                    Some(held) => held,
                    None => {
                        to_ask.borrow_mut().entry(f.node).or_default().push(f.fire_id);
                        true
                    }
                };
            let Ok(mut let_go) = ctx.dropped.lock() else {
                return (Err("the let-go slots are unreadable".into()), HashMap::new());
            };
            let plan = round::plan_round(
                &ctx.cluster.store,
                &mut round::Process {
                    node: me,
                    incarnation,
                    now_ms,
                    horizon_ms: now_ms + cfg.claim_ahead.as_millis() as i64,
                    active: &is_active,
                    let_go: &mut let_go,
                    claimed_to,
                    idle: Some(&mut *idle),
                    held_elsewhere: &held_elsewhere,
                },
            );
            (plan, to_ask.into_inner())
        })
    };
    let (mut plan, to_ask) = plan_once();
    if !to_ask.is_empty() {
        let lease = cfg.as_formed(&ctx.cluster.store).map_or(cfg.lease, |c| c.lease);
        let asks: Vec<_> = to_ask
            .into_iter()
            .filter_map(|(node, fire_ids)| holders.ask(ctx.cluster, node, fire_ids, lease / 4))
            .collect();
        if !asks.is_empty() && tokio::time::timeout(HOLDER_WAIT, futures::future::join_all(asks)).await.is_ok() {
            plan = plan_once().0;
        }
    }
    let plan = plan?;
    let more = plan.more;
    ctx.metrics.scheduler.shards_owned.set(plan.owned as i64);
    for p in plan.unknown {
        if active_insert(ctx.active, p.fire_id) {
            ctx.metrics.scheduler.fire(FireOutcome::Unknown);
            let run = unsent_run(p.fire_id, p.at_ms, me, RunStatus::Unknown, UNKNOWN_REASON);
            let _ =
                ctx.results.send(Report::Run(RunOutcome { tenant: p.job.tenant.clone(), job: p.job.id, run })).await;
        }
    }
    if !plan.send_now.is_empty() {
        let first = &plan.send_now[0];
        tracing::info!(
            slots = plan.send_now.len(),
            job = %first.job.id,
            at_ms = first.at_ms,
            "sending slots this process claimed whose claim answer was lost"
        );
    }
    for p in plan.send_now {
        dispatch(ctx, p);
    }
    let reclaims = plan.items.iter().filter(|i| i.kind == ClaimKind::Reclaim).count();
    if reclaims > 0 {
        tracing::info!(slots = reclaims, "claiming back in-flight slots (released, or held by an earlier owner)");
    }
    let (items, pending) = (plan.items, plan.pending);
    if items.is_empty() {
        return Ok(more);
    }
    let body = CommandBody::Claim { node: me, incarnation, items: items.clone() };
    let verdicts = match ctx.cluster.write(body).await.map_err(|e| e.to_string())? {
        CommandResult::Claims(v) => v,
        other => return Err(format!("unexpected claim answer {other:?}")),
    };
    // The claim committed, but its answer is lost on the way back (as when the leader dies
    // right after the commit).
    #[cfg(feature = "failpoints")]
    fail::fail_point!("claim-answer-lost", |_| Err(
        "the write's outcome is unknown (failpoint claim-answer-lost)".into()
    ));
    crate::crash_point!("claim-committed-before-send");
    for ((item, verdict), p) in items.iter().zip(verdicts).zip(pending) {
        round::note_verdict(claimed_to, item, verdict);
        if let (ClaimKind::Reclaim, Some(p)) = (item.kind, p.as_ref()) {
            // Judged: claimed back now, or no longer this process's to claim back.
            if let Ok(mut d) = ctx.dropped.lock() {
                d.forget(&p.fire_id);
            }
        }
        if verdict == ClaimVerdict::Accepted {
            ctx.metrics.scheduler.claims.inc();
            if item.kind == ClaimKind::Missed {
                ctx.metrics.scheduler.fire(FireOutcome::Missed);
            }
            if let Some(p) = p {
                dispatch(ctx, p);
            }
        }
    }
    Ok(more)
}

/// How long a round waits for the holders it asked before it goes on without their answers
/// (they still arrive, for the next round).
const HOLDER_WAIT: Duration = Duration::from_millis(100);

/// Least time between the starts of two result writes of one node. A lone result is written at
/// once; while results keep coming (jobs spread over the second by their offsets), the next write
/// gathers what arrives in this time instead of following the last one's commit with a write
/// of one or two results each, a Raft entry, three syncs and a read barrier apiece.
const RECORD_SPACING: Duration = Duration::from_millis(20);
/// Most jobs one round reads in full scans of shards it has not scanned yet (`round::IdleJobs`):
/// at about 10 µs a read (a million jobs on 3 nodes of a 2-core machine), slices of about 50 ms.
const SCAN_BUDGET: usize = 5_000;

const UNKNOWN_REASON: &str = "its sender stopped before recording a result; not re-sent (delivery: at_most_once)";
const SKIPPED_REASON: &str = "the previous run was still in flight (concurrency_policy: forbid)";

fn running_add(running: &Running, job: JobId, delta: i32) -> u32 {
    let Ok(mut m) = running.lock() else { return 0 };
    let n = m.entry(job).or_insert(0);
    *n = n.saturating_add_signed(delta);
    let now = *n;
    if now == 0 {
        m.remove(&job);
    }
    now
}

/// Sends a claimed slot at its instant, if this node may still fire for its shard then.
fn dispatch(ctx: &Ctx<'_>, p: Pending) {
    let fire_id = p.fire_id;
    if !active_insert(ctx.active, fire_id) {
        return;
    }
    let cluster = ctx.cluster.clone();
    let executor = ctx.executor.clone();
    let lease = ctx.lease.clone();
    let clock = ctx.clock.clone();
    let active = ctx.active.clone();
    let running = ctx.running.clone();
    let dropped = ctx.dropped.clone();
    let results = ctx.results.clone();
    let metrics = ctx.metrics.clone();
    let wake = ctx.wake.clone();
    tokio::spawn(async move {
        // Everything that does not depend on the instant is done before the wait: at a whole
        // second, every job of the node's shards is sent at once, and work done then is lateness.
        let retry_until_ms =
            p.job.spec.schedule().and_then(|s| s.next_after(ms_to_utc(p.at_ms))).map(|t| t.timestamp_millis());
        let fire = Fire { job: p.job.clone(), fire_id, scheduled_at_ms: p.at_ms, retry_until_ms };
        let prepared = executor.prepare(&fire);
        // Until the cluster's time is surely at the slot; again if a new reading moved it
        // (bounded: each wait is at most the slot's distance, and readings settle).
        for _ in 0..8 {
            let wait = clock.until(p.at_ms);
            if wait.is_zero() {
                break;
            }
            wake.sleep(wait).await;
        }
        // The fencing check, immediately before sending.
        // One shard's owner, not the whole assignment: this runs for every slot.
        let owner_now = firing::owner(&cluster.store, p.shard).ok();
        let still_mine = owner_now.is_some_and(|o| o.node == Some(cluster.node_id()) && o.epoch == p.epoch);
        if !lease.valid() || !still_mine {
            tracing::debug!(job = %p.job.id, at_ms = p.at_ms, "not sending: lease or ownership lost");
            if let Ok(mut d) = dropped.lock() {
                d.dropped(fire_id);
            }
            active_remove(&active, &fire_id);
            // Say so, so that the next owner sends it even for an at-most-once job.
            let _ =
                results.send(Report::Release(Released { tenant: p.job.tenant.clone(), job: p.job.id, fire_id })).await;
            return;
        }
        // Sent (or skipped) now: no longer a let-go slot.
        if let Ok(mut d) = dropped.lock() {
            d.forget(&fire_id);
        }
        if p.job.spec.concurrency_policy == ConcurrencyPolicy::Forbid && running_add(&running, p.job.id, 0) > 0 {
            metrics.scheduler.fire(FireOutcome::Skipped);
            let run = unsent_run(fire_id, p.at_ms, cluster.node_id(), RunStatus::Skipped, SKIPPED_REASON);
            let report = Report::Run(RunOutcome { tenant: p.job.tenant.clone(), job: p.job.id, run });
            if results.send(report).await.is_err() {
                active_remove(&active, &fire_id);
            }
            return;
        }
        running_add(&running, p.job.id, 1);
        metrics.scheduler.fire_lateness.observe((clock.now_ms() - p.at_ms).max(0) as f64 / 1000.0);
        let still_live = move || lease.valid();
        let run = executor.fire_while(&fire, &prepared, &clock, cluster.node_id(), &still_live).await;
        crate::crash_point!("fire-after-send");
        metrics.scheduler.fire(if run.status == RunStatus::Succeeded {
            FireOutcome::Succeeded
        } else {
            FireOutcome::Failed
        });
        running_add(&running, p.job.id, -1);
        let outcome = RunOutcome { tenant: p.job.tenant.clone(), job: p.job.id, run };
        if results.send(Report::Run(outcome)).await.is_err() {
            active_remove(&active, &fire_id);
        }
    });
}

/// Where this node's disk keeps the latest fence of a release write any of its processes sent
/// (`round::EarlierReleases`): local to the node, next to Raft's own vote, never replicated.
const RELEASE_FENCES_KEY: &[u8] = b"scheduler_release_fences_until";

/// The latest release fence kept on this node's disk. Clones share it; keeping is serialized,
/// so the kept value only grows.
#[derive(Clone)]
struct KeptFences {
    store: crate::store::Store,
    kept: Arc<Mutex<Option<i64>>>,
}

impl KeptFences {
    /// Reads what the disk keeps (an unreadable value counts as none: the longest wait).
    fn open(store: crate::store::Store) -> KeptFences {
        let kept = store.get_value::<i64>(Table::RaftMeta, RELEASE_FENCES_KEY).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "reading the earlier processes' release fence; waiting the longest");
            None
        });
        KeptFences { store, kept: Arc::new(Mutex::new(kept)) }
    }

    /// What the disk kept when this process started, for `LetGo::resume`.
    fn earlier(&self) -> round::EarlierReleases {
        round::EarlierReleases { fences_until_ms: self.kept() }
    }

    fn kept(&self) -> Option<i64> {
        self.kept.lock().ok().and_then(|k| *k)
    }

    /// Makes the disk keep at least `fence`, synced, before the caller goes on.
    fn keep(&self, fence: i64) -> Result<(), crate::store::StoreError> {
        let mut kept = self.kept.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if kept.is_some_and(|k| k >= fence) {
            return Ok(());
        }
        let mut b = crate::store::Batch::default();
        b.put_value(Table::RaftMeta, RELEASE_FENCES_KEY.to_vec(), &fence)?;
        self.store.write(b, true)?;
        *kept = Some(fence);
        Ok(())
    }
}

/// Records results in batches; a fire id leaves `active` once its result is committed. A
/// let-go slot may be claimed back once its release write was answered "committed"
/// (`round::LetGo`).
// Each is a separate handle the recorder owns, as in `run`.
#[allow(clippy::too_many_arguments)]
async fn record_results(
    cluster: Cluster,
    clock: ClusterClock,
    notifier: Notifier,
    active: Active,
    dropped: Dropped,
    fences: KeptFences,
    mut rx: tokio::sync::mpsc::Receiver<Report>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut batch: Vec<RunOutcome> = Vec::new();
    let mut releases: Vec<Released> = Vec::new();
    let mut awaiting: Vec<FireId> = Vec::new();
    // The fence of the last release write whose outcome is unknown.
    let mut release_fence: Option<i64> = None;
    let mut retry = tokio::time::interval(Duration::from_millis(250));
    let mut stopping = false;
    let mut last_write: Option<tokio::time::Instant> = None;
    loop {
        // Group commit: write whatever has arrived as soon as something has, and at most one
        // write per [`RECORD_SPACING`], so a result is committed within a Raft round trip and
        // that spacing of the response (this is the window in which a crash leads to a re-send).
        tokio::select! {
            got = rx.recv() => match got {
                Some(Report::Run(o)) => batch.push(o),
                Some(Report::Release(r)) => releases.push(r),
                None => if batch.is_empty() && releases.is_empty() { return },
            },
            _ = retry.tick(), if !batch.is_empty() || !awaiting.is_empty() || !releases.is_empty() => {}
            _ = stop.changed() => stopping = true,
        }
        while batch.len() + releases.len() < 1000 {
            match rx.try_recv() {
                Ok(Report::Run(o)) => batch.push(o),
                Ok(Report::Release(r)) => releases.push(r),
                Err(_) => break,
            }
        }
        // A release goes again only once no copy of the last one (whose outcome is unknown)
        // can still be proposed: answered "committed", it then has every copy applied before the
        // round claims the slot back (simulation finding 11).
        if !releases.is_empty() && release_fence.is_none_or(|by| cluster.fence_passed(by)) {
            let node = cluster.node_id();
            // A retry waits for this fence (plus its margin) after an attempt whose outcome is
            // unknown, so a slot whose release failed fires again up to that much later.
            let by = clock.now_ms() + round::RELEASE_FENCE_MS;
            // On this node's disk before the write leaves: a later process of this node waits
            // out this fence before it claims anything back (`round::EarlierReleases`).
            // Nothing leaves this node when it cannot be kept: no fence to wait out, the next
            // pass tries again.
            if let Err(e) = fences.keep(by) {
                tracing::warn!(error = %e, pending = releases.len(), "keeping a release's fence on disk failed; releasing later");
            } else {
                match cluster.write_fenced(CommandBody::ReleaseSlots { node, items: releases.clone() }, by).await {
                    Ok(_) => {
                        if let Ok(mut d) = dropped.lock() {
                            for r in &releases {
                                d.release_written(&r.fire_id);
                            }
                        }
                        releases.clear();
                        release_fence = None;
                    }
                    Err(e) => {
                        release_fence = Some(by);
                        tracing::warn!(error = %e, pending = releases.len(), "releasing unsent slots; will retry");
                    }
                }
            }
        }
        if batch.is_empty() {
            if stopping {
                return;
            }
            if !awaiting.is_empty() && cluster.read_barrier(Consistency::Linearizable).await.is_ok() {
                for id in awaiting.drain(..) {
                    active_remove(&active, &id);
                }
            }
            continue;
        }
        if let Some(until) = last_write.map(|at| at + RECORD_SPACING).filter(|_| !stopping) {
            // Bounded by the deadline; a closed channel or a stop ends it at once.
            while batch.len() < 1000 {
                tokio::select! {
                    _ = tokio::time::sleep_until(until) => break,
                    got = rx.recv() => match got {
                        Some(Report::Run(o)) => batch.push(o),
                        Some(Report::Release(r)) => releases.push(r),
                        None => break,
                    },
                    _ = stop.changed() => {
                        stopping = true;
                        break;
                    }
                }
            }
        }
        last_write = Some(tokio::time::Instant::now());
        match cluster.write(CommandBody::RecordRuns { outcomes: batch.clone() }).await {
            Ok(result) => {
                awaiting.extend(batch.drain(..).map(|o| o.run.fire_id));
                if let CommandResult::Recorded { alerts, .. } = result {
                    notifier.notify(alerts, clock.now_ms());
                }
            }
            Err(e) => tracing::warn!(error = %e, pending = batch.len(), "recording run results; will retry"),
        }
        // A fire id leaves `active` only once this node's own state shows its result: before
        // that, the owner loop would still see the slot in flight.
        if !awaiting.is_empty() && cluster.read_barrier(Consistency::Linearizable).await.is_ok() {
            for id in awaiting.drain(..) {
                active_remove(&active, &id);
            }
        }
        if stopping {
            // One last attempt at shutdown; what is left stays in flight and is re-sent by the
            // next owner (the crash window).
            return;
        }
    }
}
