//! The claim rules, tested on the in-memory state without sockets.

use uuid::Uuid;

use crate::ids::{JobId, TenantId};
use crate::model::assignment::{self, ShardMove};
use crate::model::job::JobSpec;
use crate::model::run::{FireState, RunRecord, RunStatus, RUNS_KEPT};
use crate::model::slot::FireId;
use crate::state::firing::{ClaimItem, ClaimKind, ClaimVerdict, RunOutcome};
use crate::state::tests::MemState;
use crate::state::{keys, Command, CommandBody, CommandResult, StateRead};
use crate::store::{decode, Table};

const T0: i64 = 1_800_000_000_000; // a whole second

fn every_second() -> JobSpec {
    JobSpec { name: "tick".into(), ..JobSpec::example("https://example.com/tick") }
}

struct World {
    s: MemState,
    tenant: TenantId,
    job: JobId,
    shard: u32,
}

fn at(ms: i64, body: CommandBody) -> Command {
    Command { proposed_at_ms: ms, body, actor: None }
}

impl World {
    /// 4 shards, all on node 1 at epoch 1, one every-second job created at T0.
    fn new() -> World {
        let mut s = MemState::default();
        assert_eq!(
            s.apply(&at(T0, CommandBody::InitShards { shard_count: 4, runs_kept: RUNS_KEPT })),
            CommandResult::ShardCount(4)
        );
        let moves: Vec<ShardMove> =
            (0..4).map(|shard| ShardMove { shard, from: None, to: Some(1), new_epoch: 1 }).collect();
        assert_eq!(s.apply(&at(T0, CommandBody::AssignShards { moves })), CommandResult::Assigned { moves: 4 });
        let tenant = TenantId::default_tenant();
        let job = JobId::generate();
        s.apply(&at(T0, CommandBody::CreateJob { id: job, tenant: tenant.clone(), spec: every_second() }));
        World { s, tenant, job, shard: assignment::shard_of(job, 4) }
    }

    fn claim(&mut self, now: i64, node: u64, inc: Uuid, epoch: u64, at_ms: i64, kind: ClaimKind) -> ClaimVerdict {
        let item = ClaimItem { shard: self.shard, epoch, tenant: self.tenant.clone(), job: self.job, at_ms, kind };
        match self.s.apply(&at(now, CommandBody::Claim { node, incarnation: inc, items: vec![item] })) {
            CommandResult::Claims(v) => v[0],
            other => panic!("{other:?}"),
        }
    }

    /// Triggers a manual run of the job at `now`; its fire id and instant.
    fn trigger(&mut self, now: i64, trigger: Uuid) -> (FireId, i64) {
        let r = self.s.apply(&at(now, CommandBody::Trigger { id: self.job, tenant: self.tenant.clone(), trigger }));
        let CommandResult::Triggered { fire_id, at_ms } = r else { panic!("{r:?}") };
        (fire_id, at_ms)
    }

    fn fire_state(&self) -> FireState {
        decode(&self.s.get(Table::FireState, &keys::job(&self.tenant, self.job)).unwrap().unwrap()).unwrap()
    }
}

#[test]
fn a_slot_is_claimed_once_in_order_by_its_owner_only() {
    let mut w = World::new();
    let inc = Uuid::new_v4();
    assert_eq!(w.claim(T0, 1, inc, 1, T0 + 1000, ClaimKind::Slot), ClaimVerdict::Accepted);
    assert_eq!(w.claim(T0, 1, inc, 1, T0 + 1000, ClaimKind::Slot), ClaimVerdict::NotNextSlot, "twice");
    assert_eq!(w.claim(T0, 1, inc, 1, T0 + 3000, ClaimKind::Slot), ClaimVerdict::NotNextSlot, "skipping a slot");
    assert_eq!(w.claim(T0, 2, inc, 1, T0 + 2000, ClaimKind::Slot), ClaimVerdict::NotOwner);
    assert_eq!(w.claim(T0, 1, inc, 0, T0 + 2000, ClaimKind::Slot), ClaimVerdict::StaleEpoch);
    assert_eq!(w.claim(T0 - 4000, 1, inc, 1, T0 + 2000, ClaimKind::Slot), ClaimVerdict::TooFarAhead);
    assert_eq!(w.claim(T0, 1, inc, 1, T0 + 2000, ClaimKind::Slot), ClaimVerdict::Accepted);
    let fs = w.fire_state();
    assert_eq!(fs.watermark_ms, T0 + 2000);
    assert_eq!(fs.in_flight.iter().map(|f| f.at_ms).collect::<Vec<_>>(), vec![T0 + 1000, T0 + 2000]);
    assert_eq!(fs.in_flight[0].fire_id, FireId::scheduled(w.job, T0 + 1000));
}

#[test]
fn a_claim_on_the_wrong_shard_or_a_deleted_job_is_refused() {
    let mut w = World::new();
    let inc = Uuid::new_v4();
    w.shard = (w.shard + 1) % 4;
    assert_eq!(w.claim(T0, 1, inc, 1, T0 + 1000, ClaimKind::Slot), ClaimVerdict::WrongShard);
    w.shard = assignment::shard_of(w.job, 4);
    w.s.apply(&at(T0, CommandBody::DeleteJob { id: w.job, tenant: w.tenant.clone() }));
    assert_eq!(w.claim(T0, 1, inc, 1, T0 + 1000, ClaimKind::Slot), ClaimVerdict::JobGone);
    assert!(w.s.get(Table::FireState, &keys::job(&w.tenant, w.job)).unwrap().is_none());
}

#[test]
fn missed_slots_are_recorded_only_past_the_deadline_and_in_order() {
    let mut w = World::new();
    let inc = Uuid::new_v4();
    let late = T0 + 400_000;
    assert_eq!(w.claim(T0 + 2000, 1, inc, 1, T0 + 1000, ClaimKind::Missed), ClaimVerdict::NotYetMissed);
    assert_eq!(w.claim(late, 1, inc, 1, T0 + 1000, ClaimKind::Missed), ClaimVerdict::Accepted);
    assert_eq!(w.claim(late, 1, inc, 1, T0 + 3000, ClaimKind::Missed), ClaimVerdict::NotNextSlot);
    assert_eq!(w.fire_state().watermark_ms, T0 + 1000);
    assert_eq!(w.fire_state().runs_kept, 1);
}

#[test]
fn after_a_move_the_old_owner_is_fenced_and_the_new_one_reclaims_once() {
    let mut w = World::new();
    let (old, new) = (Uuid::new_v4(), Uuid::new_v4());
    assert_eq!(w.claim(T0, 1, old, 1, T0 + 1000, ClaimKind::Slot), ClaimVerdict::Accepted);
    let mv = ShardMove { shard: w.shard, from: Some(1), to: Some(2), new_epoch: 2 };
    assert_eq!(
        w.s.apply(&at(T0 + 500, CommandBody::AssignShards { moves: vec![mv] })),
        CommandResult::Assigned { moves: 1 }
    );
    // The same move list committed twice (two leaders) is refused the second time.
    assert!(matches!(
        w.s.apply(&at(T0 + 501, CommandBody::AssignShards { moves: vec![mv] })),
        CommandResult::AssignRejected(_)
    ));
    assert_eq!(w.claim(T0 + 600, 1, old, 1, T0 + 2000, ClaimKind::Slot), ClaimVerdict::NotOwner);
    assert_eq!(w.claim(T0 + 600, 2, new, 2, T0 + 1000, ClaimKind::Reclaim), ClaimVerdict::Accepted);
    assert_eq!(w.claim(T0 + 600, 2, new, 2, T0 + 1000, ClaimKind::Reclaim), ClaimVerdict::NotInFlight, "once");
    assert_eq!(w.claim(T0 + 600, 2, new, 2, T0 + 2000, ClaimKind::Slot), ClaimVerdict::Accepted);
    let fs = w.fire_state();
    assert!(fs.in_flight.iter().all(|f| f.node == 2 && f.epoch == 2 && f.incarnation == new));
    // A restarted incarnation of the same node may reclaim again.
    assert_eq!(w.claim(T0 + 700, 2, Uuid::new_v4(), 2, T0 + 1000, ClaimKind::Reclaim), ClaimVerdict::Accepted);
}

fn outcome(w: &World, at_ms: i64, status: RunStatus) -> RunOutcome {
    RunOutcome {
        tenant: w.tenant.clone(),
        job: w.job,
        run: RunRecord {
            fire_id: FireId::scheduled(w.job, at_ms),
            scheduled_at_ms: at_ms,
            started_at_ms: Some(at_ms + 3),
            finished_at_ms: Some(at_ms + 20),
            attempts: 1,
            node: Some(1),
            status,
            http_status: Some(if status == RunStatus::Succeeded { 200 } else { 500 }),
            error: None,
            body_prefix: None,
        },
    }
}

#[test]
fn results_clear_in_flight_track_failures_and_history_stays_bounded() {
    let mut w = World::new();
    let inc = Uuid::new_v4();
    let n = i64::from(RUNS_KEPT) + 20;
    for i in 1..=n {
        let now = T0 + i * 1000 - 500;
        assert_eq!(w.claim(now, 1, inc, 1, T0 + i * 1000, ClaimKind::Slot), ClaimVerdict::Accepted);
        let status = if i % 10 == 0 { RunStatus::Succeeded } else { RunStatus::Failed };
        let o = outcome(&w, T0 + i * 1000, status);
        w.s.apply(&at(now + 600, CommandBody::RecordRuns { outcomes: vec![o] }));
    }
    let fs = w.fire_state();
    assert!(fs.in_flight.is_empty());
    assert_eq!(fs.runs_kept, RUNS_KEPT);
    assert_eq!(fs.last_status, Some(RunStatus::Succeeded));
    assert_eq!(fs.consecutive_failures, 0);
    let rows = w.s.scan_prefix(Table::Runs, &keys::job(&w.tenant, w.job), 1000).unwrap();
    assert_eq!(rows.len(), RUNS_KEPT as usize);
    let newest: RunRecord = decode(&rows[0].1).unwrap();
    assert_eq!(newest.scheduled_at_ms, T0 + n * 1000, "newest first");
}

#[test]
fn resuming_a_paused_job_restarts_its_watermark() {
    let mut w = World::new();
    let pause = crate::model::job::JobPatch { is_active: Some(false), ..Default::default() };
    w.s.apply(&at(T0 + 10, CommandBody::UpdateJob { id: w.job, tenant: w.tenant.clone(), patch: pause }));
    let resume = crate::model::job::JobPatch { is_active: Some(true), ..Default::default() };
    w.s.apply(&at(T0 + 60_000, CommandBody::UpdateJob { id: w.job, tenant: w.tenant.clone(), patch: resume }));
    assert_eq!(w.fire_state().watermark_ms, T0 + 60_000);
    let inc = Uuid::new_v4();
    assert_eq!(w.claim(T0 + 60_500, 1, inc, 1, T0 + 61_000, ClaimKind::Slot), ClaimVerdict::Accepted);
}

#[test]
fn only_the_claimant_can_release_a_slot_and_a_reclaim_clears_it() {
    use crate::state::firing::Released;
    let mut w = World::new();
    let (inc1, inc2) = (Uuid::new_v4(), Uuid::new_v4());
    assert_eq!(w.claim(T0, 1, inc1, 1, T0 + 1000, ClaimKind::Slot), ClaimVerdict::Accepted);
    let item = Released { tenant: w.tenant.clone(), job: w.job, fire_id: FireId::scheduled(w.job, T0 + 1000) };
    let by = |node| CommandBody::ReleaseSlots { node, items: vec![item.clone()] };
    assert_eq!(w.s.apply(&at(T0 + 10, by(2))), CommandResult::Released { slots: 0 }, "not its claim");
    assert!(!w.fire_state().in_flight[0].released);
    assert_eq!(w.s.apply(&at(T0 + 20, by(1))), CommandResult::Released { slots: 1 });
    assert!(w.fire_state().in_flight[0].released);
    let mv = ShardMove { shard: w.shard, from: Some(1), to: Some(2), new_epoch: 2 };
    w.s.apply(&at(T0 + 30, CommandBody::AssignShards { moves: vec![mv] }));
    assert_eq!(w.claim(T0 + 40, 2, inc2, 2, T0 + 1000, ClaimKind::Reclaim), ClaimVerdict::Accepted);
    let f = &w.fire_state().in_flight[0];
    assert!(!f.released && f.node == 2);
}

#[test]
fn a_trigger_is_in_flight_released_off_the_whole_second_and_distinct() {
    let mut w = World::new();
    let trigger = Uuid::new_v4();
    let (fire_id, at_ms) = w.trigger(T0 + 5000, trigger);
    assert_eq!(fire_id, FireId::manual(w.job, trigger));
    assert_ne!(at_ms % 1000, 0, "never a scheduled instant");
    let f = &w.fire_state().in_flight[0];
    assert!(f.released && f.fire_id == fire_id);
    // The owner takes it over like any released slot.
    assert_eq!(w.claim(T0 + 5100, 1, Uuid::new_v4(), 1, at_ms, ClaimKind::Reclaim), ClaimVerdict::Accepted);
    let missing = w.s.apply(&at(T0, CommandBody::Trigger { id: JobId::generate(), tenant: w.tenant.clone(), trigger }));
    assert!(matches!(missing, CommandResult::Rejected(_)));
}

#[test]
fn a_slots_second_result_is_the_same_run_counted_once() {
    use crate::state::firing::AlertKind;
    let mut w = World::new();
    let patch = crate::model::job::JobPatch {
        notify_on_failure: Some(true),
        notify_after_failures: Some(1),
        ..Default::default()
    };
    w.s.apply(&at(T0 + 1, CommandBody::UpdateJob { id: w.job, tenant: w.tenant.clone(), patch }));
    let t = T0 + 1000;
    assert_eq!(w.claim(t - 500, 1, Uuid::new_v4(), 1, t, ClaimKind::Slot), ClaimVerdict::Accepted);
    let record = |w: &mut World, now: i64, outcomes: Vec<RunOutcome>| match w
        .s
        .apply(&at(now, CommandBody::RecordRuns { outcomes }))
    {
        CommandResult::Recorded { runs, alerts } => (runs, alerts.into_iter().map(|a| a.kind).collect::<Vec<_>>()),
        other => panic!("{other:?}"),
    };
    let first = outcome(&w, t, RunStatus::Failed);
    // Twice in one command (a write retried into the same batch): once.
    let (runs, alerts) = record(&mut w, t + 100, vec![first.clone(), first.clone()]);
    assert_eq!(runs, 1);
    assert!(matches!(alerts.as_slice(), [AlertKind::Failing { consecutive: 1, .. }]), "{alerts:?}");
    // Again later, from the owner that re-sent it: nothing changes.
    let mut again = outcome(&w, t, RunStatus::Succeeded);
    again.run.node = Some(2);
    let (runs, alerts) = record(&mut w, t + 900, vec![again]);
    assert_eq!((runs, alerts.len()), (0, 0));
    let fs = w.fire_state();
    assert_eq!((fs.runs_kept, fs.consecutive_failures, fs.last_status), (1, 1, Some(RunStatus::Failed)));
    let rows = w.s.scan_prefix(Table::Runs, &keys::job(&w.tenant, w.job), 10).unwrap();
    assert_eq!(rows.len(), 1);
    let run: RunRecord = decode(&rows[0].1).unwrap();
    assert_eq!((run.status, run.node), (RunStatus::Failed, Some(1)), "the first result stands");
}

#[test]
fn alerts_fire_when_failures_reach_the_threshold_and_on_recovery_once_each() {
    use crate::state::firing::AlertKind;
    let mut w = World::new();
    let patch = crate::model::job::JobPatch {
        notify_on_failure: Some(true),
        notify_after_failures: Some(2),
        ..Default::default()
    };
    w.s.apply(&at(T0 + 1, CommandBody::UpdateJob { id: w.job, tenant: w.tenant.clone(), patch }));
    let inc = Uuid::new_v4();
    let mut kinds = Vec::new();
    for (i, status) in
        [RunStatus::Failed, RunStatus::Failed, RunStatus::Failed, RunStatus::Succeeded, RunStatus::Succeeded]
            .into_iter()
            .enumerate()
    {
        let t = T0 + (i as i64 + 1) * 1000;
        assert_eq!(w.claim(t - 500, 1, inc, 1, t, ClaimKind::Slot), ClaimVerdict::Accepted);
        match w.s.apply(&at(t + 100, CommandBody::RecordRuns { outcomes: vec![outcome(&w, t, status)] })) {
            CommandResult::Recorded { alerts, .. } => {
                kinds.push(alerts.into_iter().map(|a| a.kind).collect::<Vec<_>>())
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(kinds[0].is_empty());
    assert!(matches!(kinds[1].as_slice(), [AlertKind::Failing { consecutive: 2, .. }]), "{kinds:?}");
    assert!(kinds[2].is_empty(), "only once per failing streak");
    assert_eq!(kinds[3], vec![AlertKind::Recovered { after_failures: 3 }]);
    assert!(kinds[4].is_empty());
}

/// Regression (found by the simulation, docs/design/simulation.md): a holder that released a
/// slot takes it back with a reclaim before sending it, so the state never says "released"
/// about a slot being sent; without a release, its own reclaim changes nothing.
#[test]
fn a_holder_reclaims_its_own_released_slot_once_before_sending_it() {
    use crate::state::firing::Released;
    let mut w = World::new();
    let inc = Uuid::new_v4();
    assert_eq!(w.claim(T0, 1, inc, 1, T0 + 1000, ClaimKind::Slot), ClaimVerdict::Accepted);
    assert_eq!(w.claim(T0 + 5, 1, inc, 1, T0 + 1000, ClaimKind::Reclaim), ClaimVerdict::NotInFlight, "not released");
    let item = Released { tenant: w.tenant.clone(), job: w.job, fire_id: FireId::scheduled(w.job, T0 + 1000) };
    let release = CommandBody::ReleaseSlots { node: 1, items: vec![item] };
    assert_eq!(w.s.apply(&at(T0 + 10, release)), CommandResult::Released { slots: 1 });
    assert_eq!(w.claim(T0 + 20, 1, inc, 1, T0 + 1000, ClaimKind::Reclaim), ClaimVerdict::Accepted);
    let f = &w.fire_state().in_flight[0];
    assert!(!f.released && f.node == 1, "the mark is cleared: a crash now means possibly sent");
    assert_eq!(w.claim(T0 + 30, 1, inc, 1, T0 + 1000, ClaimKind::Reclaim), ClaimVerdict::NotInFlight, "once");
}

#[test]
fn a_job_created_before_the_shard_count_was_fixed_is_indexed_under_its_real_shard() {
    let mut s = MemState::default();
    let tenant = TenantId::default_tenant();
    // Enough jobs that some fall in another shard under 4 shards than under the default count.
    let jobs: Vec<JobId> = (0..16).map(|_| JobId::generate()).collect();
    for &job in &jobs {
        s.apply(&at(T0, CommandBody::CreateJob { id: job, tenant: tenant.clone(), spec: every_second() }));
    }
    assert_eq!(
        s.apply(&at(T0, CommandBody::InitShards { shard_count: 4, runs_kept: RUNS_KEPT })),
        CommandResult::ShardCount(4)
    );
    for &job in &jobs {
        let shard = assignment::shard_of(job, 4);
        let listed = s.scan_prefix(Table::ShardJobs, &shard.to_be_bytes(), usize::MAX).unwrap();
        assert!(listed.iter().any(|(k, _)| *k == keys::shard_job(shard, &tenant, job)), "job {job} in shard {shard}");
    }
    assert_eq!(s.scan_prefix(Table::ShardJobs, &[], usize::MAX).unwrap().len(), jobs.len(), "no stale entries");
}

#[test]
fn the_lease_is_fixed_once_at_formation_and_older_clusters_keep_the_default() {
    use std::time::Duration;

    use crate::state::firing::{lease, LEGACY_LEASE_MS};
    let mut s = MemState::default();
    assert_eq!(lease(&s).unwrap(), None, "no lease before formation: nothing may be granted");
    let form = |lease_ms| CommandBody::Form { shard_count: 4, runs_kept: RUNS_KEPT, lease_ms };
    assert_eq!(s.apply(&at(T0, form(1_000))), CommandResult::ShardCount(4));
    assert_eq!(lease(&s).unwrap(), Some(Duration::from_secs(1)));
    // A second formation (another node's, or a restart's) changes nothing.
    assert_eq!(s.apply(&at(T0, form(9_000))), CommandResult::ShardCount(4));
    assert_eq!(
        s.apply(&at(T0, CommandBody::InitShards { shard_count: 8, runs_kept: RUNS_KEPT })),
        CommandResult::ShardCount(4)
    );
    assert_eq!(lease(&s).unwrap(), Some(Duration::from_secs(1)));

    // A cluster formed before the lease was a setting keeps the lease its nodes were built with.
    let mut old = MemState::default();
    old.apply(&at(T0, CommandBody::InitShards { shard_count: 4, runs_kept: RUNS_KEPT }));
    assert_eq!(lease(&old).unwrap(), Some(Duration::from_millis(u64::from(LEGACY_LEASE_MS))));

    // Out-of-range values are clamped by the state machine, whatever a client sent.
    let mut tiny = MemState::default();
    tiny.apply(&at(T0, form(1)));
    assert_eq!(lease(&tiny).unwrap(), Some(Duration::from_millis(500)));
}

fn reschedule(w: &mut World, now: i64, cron: &str) {
    let patch = crate::model::job::JobPatch { cron_expression: Some(cron.into()), ..Default::default() };
    let r = w.s.apply(&at(now, CommandBody::UpdateJob { id: w.job, tenant: w.tenant.clone(), patch }));
    assert!(matches!(r, CommandResult::Job(_)), "{r:?}");
}

#[test]
fn a_schedule_with_an_offset_is_claimed_at_its_shifted_instants_and_triggers_keep_clear() {
    let mut w = World::new();
    reschedule(&mut w, T0 + 10, "* * * * * * +250ms");
    let inc = Uuid::new_v4();
    assert_eq!(w.claim(T0 + 20, 1, inc, 1, T0 + 1000, ClaimKind::Slot), ClaimVerdict::NotNextSlot, "whole second");
    assert_eq!(w.claim(T0 + 20, 1, inc, 1, T0 + 250, ClaimKind::Slot), ClaimVerdict::Accepted);
    assert_eq!(w.claim(T0 + 20, 1, inc, 1, T0 + 1250, ClaimKind::Slot), ClaimVerdict::Accepted);
    assert_eq!(w.fire_state().watermark_ms, T0 + 1250);
    // A manual run triggered right at a slot's instant moves off it.
    let (_, at_ms) = w.trigger(T0 + 3250, Uuid::new_v4());
    assert_eq!(at_ms, T0 + 3251);
}

#[test]
fn a_slot_that_lands_on_a_manual_run_in_flight_waits_until_the_run_left_flight() {
    let mut w = World::new();
    let (fire_id, at_ms) = w.trigger(T0 + 5000, Uuid::new_v4());
    assert_eq!(at_ms, T0 + 5001);
    // The offset changes to exactly that instant while the run is in flight.
    reschedule(&mut w, T0 + 5000, "* * * * * * +1ms");
    let inc = Uuid::new_v4();
    assert_eq!(w.claim(T0 + 5000, 1, inc, 1, T0 + 5001, ClaimKind::Slot), ClaimVerdict::NotNextSlot);
    assert_eq!(w.fire_state().in_flight.len(), 1, "instants in flight stay unique");
    // Once the manual run's result is written, the slot is claimed.
    let mut outcome = outcome(&w, at_ms, RunStatus::Succeeded);
    outcome.run.fire_id = fire_id;
    w.s.apply(&at(T0 + 5002, CommandBody::RecordRuns { outcomes: vec![outcome] }));
    assert!(w.fire_state().in_flight.is_empty());
    assert_eq!(w.claim(T0 + 5003, 1, inc, 1, T0 + 5001, ClaimKind::Slot), ClaimVerdict::Accepted);
}
