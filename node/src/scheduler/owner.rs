//! The owner's loop: claim the slots of this node's shards ahead of time, dispatch each at its
//! instant, and record the results in batches.
//!
//! Invariants (docs/design/firing.md): a slot is sent only after its claim committed, only
//! while this node's lease is valid, and only while the local state (as of the last grant)
//! still shows this node owning the shard at the claim's epoch. A fire id stays in `active`
//! from dispatch until its result is committed, so nothing this process sent is sent again.

use std::collections::{HashMap, HashSet};
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
use crate::model::job::JobRecord;
use crate::model::job::{ConcurrencyPolicy, Delivery};
use crate::model::run::{FireState, RunRecord, RunStatus};
use crate::model::slot::FireId;
use crate::scheduler::lease::Lease;
use crate::scheduler::SchedulerConfig;
use crate::state::firing::{self, ClaimItem, ClaimKind, ClaimVerdict, Released, RunOutcome};
use crate::state::{CommandBody, CommandResult};
use crate::store::Table;

/// Most slots one job may claim in one round (bounds catch-up work per tick).
const MAX_SLOTS_PER_JOB: usize = 64;
/// Most items in one claim command.
const MAX_CLAIM_ITEMS: usize = 4096;

type Active = Arc<Mutex<HashSet<FireId>>>;

/// What dispatch reports to the recorder.
#[derive(Debug)]
enum Report {
    /// A finished (or skipped, or unknown) run.
    Run(RunOutcome),
    /// A claimed slot let go unsent.
    Release(Released),
}
/// Slots this process claimed and then dropped unsent (its lease lapsed at their instant).
type Dropped = Arc<Mutex<HashSet<FireId>>>;
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
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let incarnation = Uuid::new_v4();
    let active: Active = Arc::default();
    let running: Running = Arc::default();
    let dropped: Dropped = Arc::default();
    let (results_tx, results_rx) = tokio::sync::mpsc::channel::<Report>(65_536);
    let recorder = tokio::spawn(record_results(
        cluster.clone(),
        clock.clone(),
        notifier,
        active.clone(),
        results_rx,
        stop.clone(),
    ));
    let mut claimed_to: HashMap<JobId, i64> = HashMap::new();
    let mut tick = tokio::time::interval(cfg.tick);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
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
        };
        if let Err(e) = round(&ctx, incarnation, &cfg, &mut claimed_to).await {
            tracing::warn!(error = %e, "claim round failed");
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
}

/// A slot to send once its claim is known.
struct Pending {
    job: JobRecord,
    fire_id: FireId,
    at_ms: i64,
    shard: u32,
    epoch: u64,
}

async fn round(
    ctx: &Ctx<'_>,
    incarnation: Uuid,
    cfg: &SchedulerConfig,
    claimed_to: &mut HashMap<JobId, i64>,
) -> Result<(), String> {
    let me = ctx.cluster.node_id();
    let store = &ctx.cluster.store;
    let now = ctx.clock.now_ms();
    let horizon = now + cfg.claim_ahead.as_millis() as i64;
    let assignment = firing::assignment(store).map_err(|e| e.to_string())?;
    ctx.metrics.scheduler.shards_owned.set(assignment.owned_by(me).len() as i64);
    let mut items: Vec<ClaimItem> = Vec::new();
    let mut pending: Vec<Option<Pending>> = Vec::new();
    for shard in assignment.owned_by(me) {
        let epoch = assignment.owner(shard).map_or(0, |o| o.epoch);
        let rows = store
            .scan(Table::ShardJobs, &shard.to_be_bytes(), &shard.to_be_bytes(), usize::MAX)
            .map_err(|e| e.to_string())?;
        for (k, _) in rows {
            let job_key = k.get(4..).unwrap_or_default();
            let Some(job) = store.get_value::<JobRecord>(Table::Jobs, job_key).map_err(|e| e.to_string())? else {
                continue;
            };
            if !job.spec.is_active {
                continue;
            }
            let fs: FireState =
                store.get_value(Table::FireState, job_key).map_err(|e| e.to_string())?.unwrap_or_default();
            for f in &fs.in_flight {
                if ctx.active.lock().map(|a| a.contains(&f.fire_id)).unwrap_or(true) {
                    continue;
                }
                let p = Pending { job: job.clone(), fire_id: f.fire_id, at_ms: f.at_ms, shard, epoch };
                if f.node == me && f.incarnation == incarnation && f.epoch == epoch {
                    // This process claimed it. If it let it go unsent (the release is committed),
                    // it claims it back before sending, so the state never says "released" about
                    // a slot that is being sent.
                    if f.released {
                        if ctx.dropped.lock().map(|mut d| d.remove(&f.fire_id)).unwrap_or(false) {
                            items.push(claim_item(&job, shard, epoch, f.at_ms, ClaimKind::Reclaim));
                            pending.push(Some(p));
                        }
                    } else if claimed_but_never_dispatched(ctx, job_key, f.fire_id)? {
                        // The claim committed but its answer was lost (the leader died or a
                        // link broke after the commit): nobody else will send it.
                        dispatch(ctx, p);
                    }
                } else if job.spec.delivery == Delivery::AtMostOnce && !f.released {
                    // Its sender may or may not have sent it: never send it twice.
                    if active_insert(ctx.active, f.fire_id) {
                        ctx.metrics.scheduler.fire(FireOutcome::Unknown);
                        let run = unsent_run(f.fire_id, f.at_ms, me, RunStatus::Unknown, UNKNOWN_REASON);
                        let _ = ctx
                            .results
                            .send(Report::Run(RunOutcome { tenant: job.tenant.clone(), job: job.id, run }))
                            .await;
                    }
                } else {
                    items.push(claim_item(&job, shard, epoch, f.at_ms, ClaimKind::Reclaim));
                    pending.push(Some(p));
                }
            }
            let Some(schedule) = job.spec.schedule() else { continue };
            let mut mark = claimed_to.get(&job.id).copied().unwrap_or(i64::MIN).max(fs.watermark_ms);
            for _ in 0..MAX_SLOTS_PER_JOB {
                let Some(next) = schedule.next_after(ms_to_utc(mark)).map(|t| t.timestamp_millis()) else { break };
                if next > horizon {
                    break;
                }
                let missed = next + job.spec.deadline_ms() < now;
                let kind = if missed { ClaimKind::Missed } else { ClaimKind::Slot };
                items.push(claim_item(&job, shard, epoch, next, kind));
                let fire_id = FireId::scheduled(job.id, next);
                pending.push((!missed).then(|| Pending { job: job.clone(), fire_id, at_ms: next, shard, epoch }));
                mark = next;
            }
            if items.len() >= MAX_CLAIM_ITEMS {
                break;
            }
        }
    }
    if items.is_empty() {
        return Ok(());
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
        if item.kind != ClaimKind::Reclaim && matches!(verdict, ClaimVerdict::Accepted | ClaimVerdict::NotNextSlot) {
            // NotNextSlot: already claimed (our local state lagged); either way we are past it.
            let e = claimed_to.entry(item.job).or_insert(i64::MIN);
            *e = (*e).max(item.at_ms);
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
    Ok(())
}

/// Whether a slot this process claimed (same incarnation and epoch, not released) was never
/// handed to [`dispatch`]: `active` holds every dispatched slot until its result is applied
/// here, so a slot that is not active and still in flight *after* that check was never sent.
/// (Read in this order, a result applied between the two reads cannot pass for a lost claim.)
fn claimed_but_never_dispatched(ctx: &Ctx<'_>, job_key: &[u8], fire_id: FireId) -> Result<bool, String> {
    if ctx.active.lock().map(|a| a.contains(&fire_id)).unwrap_or(true) {
        return Ok(false);
    }
    let fs: FireState =
        ctx.cluster.store.get_value(Table::FireState, job_key).map_err(|e| e.to_string())?.unwrap_or_default();
    Ok(fs.in_flight.iter().any(|f| f.fire_id == fire_id && !f.released))
}

fn claim_item(job: &JobRecord, shard: u32, epoch: u64, at_ms: i64, kind: ClaimKind) -> ClaimItem {
    ClaimItem { shard, epoch, tenant: job.tenant.clone(), job: job.id, at_ms, kind }
}

const UNKNOWN_REASON: &str = "its sender stopped before recording a result; not re-sent (delivery: at_most_once)";
const SKIPPED_REASON: &str = "the previous run was still in flight (concurrency_policy: forbid)";

/// A run that was not sent.
fn unsent_run(fire_id: FireId, at_ms: i64, node: u64, status: RunStatus, why: &str) -> RunRecord {
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
    tokio::spawn(async move {
        let wait = p.at_ms - clock.now_ms();
        if wait > 0 {
            tokio::time::sleep(Duration::from_millis(wait as u64)).await;
        }
        // The fencing check, immediately before sending.
        // One shard's owner, not the whole assignment: this runs for every slot.
        let owner_now = firing::owner(&cluster.store, p.shard).ok();
        let still_mine = owner_now.is_some_and(|o| o.node == Some(cluster.node_id()) && o.epoch == p.epoch);
        if !lease.valid() || !still_mine {
            tracing::debug!(job = %p.job.id, at_ms = p.at_ms, "not sending: lease or ownership lost");
            if let Ok(mut d) = dropped.lock() {
                d.insert(fire_id);
            }
            active_remove(&active, &fire_id);
            // Say so, so that the next owner sends it even for an at-most-once job.
            let _ =
                results.send(Report::Release(Released { tenant: p.job.tenant.clone(), job: p.job.id, fire_id })).await;
            return;
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
        let retry_until_ms =
            p.job.spec.schedule().and_then(|s| s.next_after(ms_to_utc(p.at_ms))).map(|t| t.timestamp_millis());
        let fire = Fire { job: p.job.clone(), fire_id, scheduled_at_ms: p.at_ms, retry_until_ms };
        metrics.scheduler.fire_lateness.observe((clock.now_ms() - p.at_ms).max(0) as f64 / 1000.0);
        let run = executor.fire(&fire, &clock, cluster.node_id()).await;
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

/// Records results in batches; a fire id leaves `active` once its result is committed.
async fn record_results(
    cluster: Cluster,
    clock: ClusterClock,
    notifier: Notifier,
    active: Active,
    mut rx: tokio::sync::mpsc::Receiver<Report>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut batch: Vec<RunOutcome> = Vec::new();
    let mut releases: Vec<Released> = Vec::new();
    let mut awaiting: Vec<FireId> = Vec::new();
    let mut retry = tokio::time::interval(Duration::from_millis(250));
    let mut stopping = false;
    loop {
        // Group commit: write whatever has arrived as soon as something has, so a result is
        // committed within a Raft round trip of the response (this is the window in which a
        // crash leads to a re-send).
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
        if !releases.is_empty() {
            let node = cluster.node_id();
            match cluster.write(CommandBody::ReleaseSlots { node, items: releases.clone() }).await {
                Ok(_) => releases.clear(),
                Err(e) => tracing::warn!(error = %e, pending = releases.len(), "releasing unsent slots; will retry"),
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
