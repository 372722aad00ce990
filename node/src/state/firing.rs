//! Applying the firing commands: shard assignment, claims and run results.
//!
//! The rules that make a slot fire once live here (see docs/design/firing.md):
//! - a claim is accepted only from the shard's current owner at the current epoch;
//! - a slot claim must be for the job's *next* slot after its watermark, so slots are claimed in
//!   order, once, and none can be skipped silently; a slot can instead be recorded as missed,
//!   under the same rule, only once it is past the job's starting deadline;
//! - no claim is accepted for a slot more than [`MAX_CLAIM_AHEAD_MS`] ahead of the leader's clock;
//! - a reclaim moves an in-flight slot (claimed, no result) to the new owner, once per owner.
//!
//! Deterministic like all of `state`: "now" is the command's leader-stamped time.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ids::{JobId, NodeId, TenantId};
use crate::model::assignment::{self, Assignment, Epoch, ShardId, ShardMove, ShardOwner};
use crate::model::job::JobRecord;
use crate::model::run::{FireState, InFlight, RunRecord, RunStatus, RUNS_KEPT};
use crate::model::slot::FireId;
use crate::state::apply::{get_value, StateRead};
use crate::state::command::CommandResult;
use crate::state::{keys, StateError};
use crate::store::{Batch, Table};

/// The farthest ahead of the leader's clock a slot may be claimed.
pub const MAX_CLAIM_AHEAD_MS: i64 = 5_000;
/// The shard count used when none was set at formation.
pub const DEFAULT_SHARDS: u32 = 256;
/// The firing lease of a cluster formed without `--lease-ms`: short, so that the shards of a
/// dead leader fire again about a second after the election (`scheduler::leader`); how long a
/// silent node keeps its shards is the leader's patience (`--dead-after-ms`), not the lease.
pub const DEFAULT_LEASE_MS: u32 = 700;
/// The firing lease of clusters formed before the lease was a setting (their log holds
/// `InitShards`): what their nodes were built with.
pub const LEGACY_LEASE_MS: u32 = 4_000;
/// The shortest and longest firing lease a cluster may be formed with.
pub const MIN_LEASE_MS: u32 = 500;
pub const MAX_LEASE_MS: u32 = 60_000;

/// What a claim item asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClaimKind {
    /// Claim the job's next slot, to send it.
    Slot,
    /// Record the job's next slot as missed (past its starting deadline).
    Missed,
    /// Take over an in-flight slot of a previous owner or incarnation, to re-send it.
    Reclaim,
}

/// One slot in a claim batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimItem {
    pub shard: ShardId,
    pub epoch: Epoch,
    pub tenant: TenantId,
    pub job: JobId,
    pub at_ms: i64,
    pub kind: ClaimKind,
}

/// The state machine's answer for one claim item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClaimVerdict {
    Accepted,
    NotOwner,
    StaleEpoch,
    WrongShard,
    JobGone,
    NotNextSlot,
    TooFarAhead,
    NotYetMissed,
    NotInFlight,
}

/// A finished run to record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunOutcome {
    pub tenant: TenantId,
    pub job: JobId,
    pub run: RunRecord,
}

pub fn shard_count(view: &impl StateRead) -> Result<u32, StateError> {
    Ok(get_value(view, Table::SmMeta, keys::SHARD_COUNT)?.unwrap_or(DEFAULT_SHARDS))
}

/// The current assignment, read from the shards table.
pub fn assignment(view: &impl StateRead) -> Result<Assignment, StateError> {
    let count = shard_count(view)?;
    let mut a = Assignment::new(count);
    for (k, v) in view.scan_prefix(Table::Shards, &[], count as usize)? {
        let Ok(bytes) = <[u8; 4]>::try_from(k.as_slice()) else { continue };
        let shard = u32::from_be_bytes(bytes) as usize;
        if let Some(slot) = a.owners.get_mut(shard) {
            *slot = crate::store::decode(&v)?;
        }
    }
    Ok(a)
}

/// The current owner of one shard (unowned at epoch 0 when never assigned).
pub fn owner(view: &impl StateRead, shard: ShardId) -> Result<ShardOwner, StateError> {
    Ok(get_value(view, Table::Shards, &shard.to_be_bytes())?.unwrap_or(ShardOwner { node: None, epoch: 0 }))
}

/// Groups items by their job's key, so that several items of one job in one command see each
/// other's effects (apply reads the state as of the start of the command).
fn group_by_job<'a, T>(
    items: &'a [T],
    job_of: impl Fn(&T) -> (&TenantId, JobId),
) -> BTreeMap<Vec<u8>, Vec<(usize, &'a T)>> {
    let mut by_job: BTreeMap<Vec<u8>, Vec<(usize, &'a T)>> = BTreeMap::new();
    for (i, item) in items.iter().enumerate() {
        let (tenant, job) = job_of(item);
        by_job.entry(keys::job(tenant, job)).or_default().push((i, item));
    }
    by_job
}

pub fn apply_init_shards(
    view: &impl StateRead,
    batch: &mut Batch,
    count: u32,
    runs_kept: u32,
    lease_ms: Option<u32>,
) -> Result<CommandResult, StateError> {
    let current: Option<u32> = get_value(view, Table::SmMeta, keys::SHARD_COUNT)?;
    match current {
        Some(c) => Ok(CommandResult::ShardCount(c)),
        None => {
            let count = count.clamp(1, 65_536);
            // Jobs created before the count was fixed were indexed under the default count:
            // move them to their shard under the real one, or no owner would ever scan them.
            for (_, bytes) in view.scan_prefix(Table::Jobs, &[], usize::MAX)? {
                let job: JobRecord = crate::store::decode(&bytes)?;
                let (before, after) =
                    (assignment::shard_of(job.id, DEFAULT_SHARDS), assignment::shard_of(job.id, count));
                if before != after {
                    batch.delete(Table::ShardJobs, keys::shard_job(before, &job.tenant, job.id));
                    batch.put(Table::ShardJobs, keys::shard_job(after, &job.tenant, job.id), Vec::new());
                }
            }
            batch.put_value(Table::SmMeta, keys::SHARD_COUNT.to_vec(), &count)?;
            batch.put_value(Table::SmMeta, keys::RUNS_KEPT.to_vec(), &runs_kept.clamp(1, 10_000))?;
            if let Some(ms) = lease_ms {
                batch.put_value(Table::SmMeta, keys::LEASE_MS.to_vec(), &ms.clamp(MIN_LEASE_MS, MAX_LEASE_MS))?;
            }
            Ok(CommandResult::ShardCount(count))
        }
    }
}

/// The firing lease: fixed at formation ([`LEGACY_LEASE_MS`] in clusters formed before it was
/// a setting). `None` until the cluster formed: no lease may be granted before it is known.
pub fn lease(view: &impl StateRead) -> Result<Option<std::time::Duration>, StateError> {
    if get_value::<u32>(view, Table::SmMeta, keys::SHARD_COUNT)?.is_none() {
        return Ok(None);
    }
    let ms: u32 = get_value(view, Table::SmMeta, keys::LEASE_MS)?.unwrap_or(LEGACY_LEASE_MS);
    Ok(Some(std::time::Duration::from_millis(u64::from(ms))))
}

/// Runs kept per job: fixed at formation, [`RUNS_KEPT`] by default.
pub fn runs_kept(view: &impl StateRead) -> Result<u32, StateError> {
    Ok(get_value(view, Table::SmMeta, keys::RUNS_KEPT)?.unwrap_or(RUNS_KEPT))
}

pub fn apply_assign(
    view: &impl StateRead,
    batch: &mut Batch,
    moves: &[ShardMove],
) -> Result<CommandResult, StateError> {
    let current = assignment(view)?;
    // A move list computed by an earlier leader may commit after a newer one: check it against
    // the state it is applied to, and apply all of it or nothing.
    if let Err(e) = assignment::check_moves(&current, moves) {
        return Ok(CommandResult::AssignRejected(e.to_string()));
    }
    for m in moves {
        batch.put_value(
            Table::Shards,
            m.shard.to_be_bytes().to_vec(),
            &ShardOwner { node: m.to, epoch: m.new_epoch },
        )?;
    }
    Ok(CommandResult::Assigned { moves: moves.len() as u32 })
}

/// Records a job's place in the shard index and its initial firing state (on create).
pub fn on_job_created(view: &impl StateRead, batch: &mut Batch, job: &JobRecord, now: i64) -> Result<(), StateError> {
    let shard = assignment::shard_of(job.id, shard_count(view)?);
    batch.put(Table::ShardJobs, keys::shard_job(shard, &job.tenant, job.id), Vec::new());
    let fs = FireState { watermark_ms: now, ..FireState::default() };
    batch.put_value(Table::FireState, keys::job(&job.tenant, job.id), &fs)?;
    Ok(())
}

/// Restarts the watermark when a job is resumed or its schedule changes, so the slots of a
/// pause or of the old schedule are neither fired nor reported as missed.
pub fn on_job_updated(
    view: &impl StateRead,
    batch: &mut Batch,
    before: &JobRecord,
    after: &JobRecord,
    now: i64,
) -> Result<(), StateError> {
    let resumed = !before.spec.is_active && after.spec.is_active;
    let rescheduled =
        before.spec.cron_expression != after.spec.cron_expression || before.spec.timezone != after.spec.timezone;
    if resumed || rescheduled {
        let key = keys::job(&after.tenant, after.id);
        let mut fs: FireState = get_value(view, Table::FireState, &key)?.unwrap_or_default();
        fs.watermark_ms = fs.watermark_ms.max(now);
        batch.put_value(Table::FireState, key, &fs)?;
    }
    Ok(())
}

/// Removes a job's index entry, firing state and history (on delete).
pub fn on_job_deleted(
    view: &impl StateRead,
    batch: &mut Batch,
    tenant: &TenantId,
    id: JobId,
) -> Result<(), StateError> {
    let shard = assignment::shard_of(id, shard_count(view)?);
    batch.delete(Table::ShardJobs, keys::shard_job(shard, tenant, id));
    let key = keys::job(tenant, id);
    batch.delete(Table::FireState, key.clone());
    let mut end = key.clone();
    end.push(0xff);
    batch.delete_range(Table::Runs, key, end);
    Ok(())
}

pub fn apply_claims(
    view: &impl StateRead,
    batch: &mut Batch,
    now: i64,
    node: NodeId,
    incarnation: Uuid,
    items: &[ClaimItem],
) -> Result<CommandResult, StateError> {
    let count = shard_count(view)?;
    let mut verdicts = vec![ClaimVerdict::Accepted; items.len()];
    for (key, idxs) in group_by_job(items, |c| (&c.tenant, c.job)) {
        let job: Option<JobRecord> = get_value(view, Table::Jobs, &key)?;
        let mut fs: FireState = get_value(view, Table::FireState, &key)?.unwrap_or_default();
        let mut changed = false;
        let mut runs = Vec::new();
        for (i, item) in idxs {
            let verdict = judge(view, count, now, (node, incarnation), item, job.as_ref(), &fs)?;
            if let Some(v) = verdicts.get_mut(i) {
                *v = verdict;
            }
            if verdict != ClaimVerdict::Accepted {
                continue;
            }
            changed = true;
            let fire_id = FireId::scheduled(item.job, item.at_ms);
            match item.kind {
                ClaimKind::Slot => {
                    fs.watermark_ms = item.at_ms;
                    fs.in_flight.push(InFlight {
                        at_ms: item.at_ms,
                        fire_id,
                        node,
                        incarnation,
                        epoch: item.epoch,
                        claimed_at_ms: now,
                        released: false,
                    });
                }
                ClaimKind::Missed => {
                    fs.watermark_ms = item.at_ms;
                    runs.push(RunRecord {
                        fire_id,
                        scheduled_at_ms: item.at_ms,
                        started_at_ms: None,
                        finished_at_ms: None,
                        attempts: 0,
                        node: Some(node),
                        status: RunStatus::Missed,
                        http_status: None,
                        error: Some("no owner could send it before its starting deadline".into()),
                        body_prefix: None,
                    });
                }
                ClaimKind::Reclaim => {
                    if let Some(f) = fs.in_flight.iter_mut().find(|f| f.at_ms == item.at_ms) {
                        f.node = node;
                        f.incarnation = incarnation;
                        f.epoch = item.epoch;
                        f.claimed_at_ms = now;
                        f.released = false;
                    }
                }
            }
        }
        for run in runs {
            push_run(view, batch, &key, &mut fs, run)?;
        }
        if changed {
            batch.put_value(Table::FireState, key, &fs)?;
        }
    }
    Ok(CommandResult::Claims(verdicts))
}

fn judge(
    view: &impl StateRead,
    shard_count: u32,
    now: i64,
    (node, incarnation): (NodeId, Uuid),
    item: &ClaimItem,
    job: Option<&JobRecord>,
    fs: &FireState,
) -> Result<ClaimVerdict, StateError> {
    let Some(job) = job else { return Ok(ClaimVerdict::JobGone) };
    if assignment::shard_of(item.job, shard_count) != item.shard {
        return Ok(ClaimVerdict::WrongShard);
    }
    let owner = owner(view, item.shard)?;
    if owner.node != Some(node) {
        return Ok(ClaimVerdict::NotOwner);
    }
    if owner.epoch != item.epoch {
        return Ok(ClaimVerdict::StaleEpoch);
    }
    Ok(match item.kind {
        ClaimKind::Slot | ClaimKind::Missed => {
            if !job.spec.is_active {
                return Ok(ClaimVerdict::JobGone);
            }
            let next = job
                .spec
                .schedule()
                .and_then(|s| s.next_after(crate::clock::ms_to_utc(fs.watermark_ms)))
                .map(|t| t.timestamp_millis());
            if next != Some(item.at_ms) {
                ClaimVerdict::NotNextSlot
            } else if item.kind == ClaimKind::Slot && fs.in_flight.iter().any(|f| f.at_ms == item.at_ms) {
                // A manual run is in flight at this very instant: possible only when the
                // schedule's offset changed after the run was triggered. Instants in flight stay
                // unique; the owner claims the slot again once the run has left flight.
                ClaimVerdict::NotNextSlot
            } else if item.kind == ClaimKind::Slot && item.at_ms > now + MAX_CLAIM_AHEAD_MS {
                ClaimVerdict::TooFarAhead
            } else if item.kind == ClaimKind::Missed && item.at_ms + job.spec.deadline_ms() >= now {
                ClaimVerdict::NotYetMissed
            } else {
                ClaimVerdict::Accepted
            }
        }
        ClaimKind::Reclaim => match fs.in_flight.iter().find(|f| f.at_ms == item.at_ms) {
            // Once per owner incarnation: a second reclaim by the same holder changes nothing,
            // unless the holder released the slot (said it never sent it): then it may take it
            // back, which clears the release, before it sends it.
            Some(f) if (f.node, f.incarnation, f.epoch) != (node, incarnation, item.epoch) || f.released => {
                ClaimVerdict::Accepted
            }
            _ => ClaimVerdict::NotInFlight,
        },
    })
}

fn push_run(
    view: &impl StateRead,
    batch: &mut Batch,
    job_key: &[u8],
    fs: &mut FireState,
    run: RunRecord,
) -> Result<(), StateError> {
    batch.put_value(Table::Runs, keys::run(job_key, run.scheduled_at_ms, &run.fire_id), &run)?;
    fs.runs_kept = fs.runs_kept.saturating_add(1);
    let limit = runs_kept(view)?;
    if fs.runs_kept > limit {
        // Keys sort newest first: the oldest kept run is the last one of the job's range.
        let rows = view.scan_prefix(Table::Runs, job_key, limit as usize + 1)?;
        if let Some((oldest, _)) = rows.last() {
            batch.delete(Table::Runs, oldest.clone());
            fs.runs_kept = fs.runs_kept.saturating_sub(1);
        }
    }
    Ok(())
}

/// Puts a manual run of a job in flight, released, so its shard's owner sends it. Its instant
/// never falls where the job's scheduled slots fall (a whole second plus the schedule's offset,
/// `+<n>ms`), so it cannot be mistaken for a scheduled slot of the same job.
pub fn apply_trigger(
    view: &impl StateRead,
    batch: &mut Batch,
    now: i64,
    tenant: &TenantId,
    id: JobId,
    trigger: Uuid,
) -> Result<CommandResult, StateError> {
    let key = keys::job(tenant, id);
    let Some(job) = get_value::<JobRecord>(view, Table::Jobs, &key)? else {
        return Ok(CommandResult::Rejected(crate::state::Rejection::JobNotFound { id }));
    };
    let slot_ms = job.spec.schedule().map_or(0, |s| i64::from(s.offset_ms()));
    let mut fs: FireState = get_value(view, Table::FireState, &key)?.unwrap_or_default();
    let mut at_ms = now;
    while at_ms.rem_euclid(1000) == slot_ms || fs.in_flight.iter().any(|f| f.at_ms == at_ms) {
        at_ms += 1;
    }
    let fire_id = FireId::manual(id, trigger);
    fs.in_flight.push(InFlight {
        at_ms,
        fire_id,
        node: 0,
        incarnation: Uuid::nil(),
        epoch: 0,
        claimed_at_ms: now,
        released: true,
    });
    batch.put_value(Table::FireState, key, &fs)?;
    Ok(CommandResult::Triggered { fire_id, at_ms })
}

/// A change of a job's health that the cluster's webhooks hear about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    pub tenant: TenantId,
    pub job: JobId,
    pub job_name: String,
    pub fire_id: FireId,
    pub kind: AlertKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AlertKind {
    /// The job just reached its `notify_after_failures` consecutive failures.
    Failing { consecutive: u32, error: Option<String>, http_status: Option<u16> },
    /// The job succeeded after having alerted.
    Recovered { after_failures: u32 },
}

/// A slot its claimant let go unsent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Released {
    pub tenant: TenantId,
    pub job: JobId,
    pub fire_id: FireId,
}

/// Marks in-flight slots as released by `node` (only those `node` still holds).
pub fn apply_release(
    view: &impl StateRead,
    batch: &mut Batch,
    node: NodeId,
    items: &[Released],
) -> Result<CommandResult, StateError> {
    let mut released = 0u32;
    for (key, rs) in group_by_job(items, |r| (&r.tenant, r.job)) {
        let Some(mut fs) = get_value::<FireState>(view, Table::FireState, &key)? else { continue };
        for (_, r) in rs {
            if let Some(f) = fs.in_flight.iter_mut().find(|f| f.fire_id == r.fire_id && f.node == node) {
                f.released = true;
                released += 1;
            }
        }
        batch.put_value(Table::FireState, key, &fs)?;
    }
    Ok(CommandResult::Released { slots: released })
}

pub fn apply_results(
    view: &impl StateRead,
    batch: &mut Batch,
    outcomes: &[RunOutcome],
) -> Result<CommandResult, StateError> {
    let mut recorded = 0u32;
    let mut alerts = Vec::new();
    for (key, outs) in group_by_job(outcomes, |o| (&o.tenant, o.job)) {
        let Some(mut fs) = get_value::<FireState>(view, Table::FireState, &key)? else { continue };
        let job: Option<JobRecord> = get_value(view, Table::Jobs, &key)?;
        let mut seen = std::collections::HashSet::new();
        for (_, o) in outs {
            // One run per slot, counted once. A second result for a slot no longer in flight
            // that already has a run (its next owner re-sent it, or a write whose outcome was
            // unknown went again) is the same run: the first result stands, and the failure
            // streak, the history's size and the alerts do not count it again.
            let held = fs.in_flight.iter().any(|f| f.fire_id == o.run.fire_id);
            let recorded_before = || -> Result<bool, StateError> {
                Ok(view.get(Table::Runs, &keys::run(&key, o.run.scheduled_at_ms, &o.run.fire_id))?.is_some())
            };
            if !seen.insert(o.run.fire_id) || (!held && recorded_before()?) {
                continue;
            }
            fs.in_flight.retain(|f| f.fire_id != o.run.fire_id);
            let before = fs.consecutive_failures;
            match o.run.status {
                RunStatus::Succeeded => fs.consecutive_failures = 0,
                RunStatus::Failed | RunStatus::Unknown => {
                    fs.consecutive_failures = fs.consecutive_failures.saturating_add(1)
                }
                _ => {}
            }
            if let Some(job) = job.as_ref().filter(|j| j.spec.notify_on_failure) {
                let threshold = job.spec.notify_after_failures;
                let kind = if fs.consecutive_failures == threshold && before < threshold {
                    Some(AlertKind::Failing {
                        consecutive: fs.consecutive_failures,
                        error: o.run.error.clone(),
                        http_status: o.run.http_status,
                    })
                } else if o.run.status == RunStatus::Succeeded && before >= threshold {
                    Some(AlertKind::Recovered { after_failures: before })
                } else {
                    None
                };
                if let Some(kind) = kind {
                    alerts.push(Alert {
                        tenant: o.tenant.clone(),
                        job: o.job,
                        job_name: job.spec.name.clone(),
                        fire_id: o.run.fire_id,
                        kind,
                    });
                }
            }
            fs.last_run_at_ms = Some(o.run.started_at_ms.unwrap_or(o.run.scheduled_at_ms));
            fs.last_status = Some(o.run.status);
            push_run(view, batch, &key, &mut fs, o.run.clone())?;
            recorded += 1;
        }
        batch.put_value(Table::FireState, key, &fs)?;
    }
    Ok(CommandResult::Recorded { runs: recorded, alerts })
}
