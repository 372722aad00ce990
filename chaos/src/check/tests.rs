//! The checkers on small, hand-made histories: each must fail on the violation it is about and
//! excuse exactly what its rule allows.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use raftcron_client::{Job, Run};

use super::*;
use crate::collect::FinalState;
use crate::config::{Config, FaultKind, NetworkBackend, Profile, Timing};
use crate::history::{FaultRecord, Outcome, ShardChange, Snapshot, StopEvent, WriteOp, WriteRecord};
use crate::sink::Hit;
use crate::workload::firing::FiringJob;
use crate::workload::keys::KeyState;

const JOB: &str = "8c0f5a3e-8a7b-4e0c-9c57-5b3f7a0d1e21";

fn config() -> Config {
    Config {
        seed: 1,
        duration: Duration::from_secs(60),
        nodes: 3,
        faults: vec![],
        out: PathBuf::from("/nonexistent"),
        bin: PathBuf::from("/nonexistent"),
        keys_workload: false,
        keep_data: false,
        excuse_partition_resends: false,
        profile: Profile::default(),
        timing: Timing::default(),
        progress: false,
        network: NetworkBackend::Proxy,
    }
}

fn hit(key: &str, scheduled_ms: i64, received_ms: i64) -> Hit {
    Hit { key: key.into(), job: JOB.into(), scheduled_ms, received_ms, attempt: 1, canary: true }
}

fn run(at_ms: i64, status: &str, error: Option<&str>) -> Run {
    Run {
        id: format!("fire-{at_ms}"),
        scheduled_at: Utc.timestamp_millis_opt(at_ms).unwrap(),
        started_at: None,
        finished_at: None,
        lateness_ms: None,
        attempts: 1,
        node_id: Some(1),
        status: status.into(),
        http_status: None,
        duration_ms: None,
        error: error.map(str::to_string),
        response_body: None,
    }
}

fn job(id: &str, name: &str) -> Job {
    let t = Utc.timestamp_millis_opt(0).unwrap();
    Job {
        id: uuid::Uuid::parse_str(id).unwrap(),
        name: name.into(),
        url: "http://127.0.0.1:9/".into(),
        method: "POST".into(),
        cron_expression: "0 0 1 1 *".into(),
        timezone: "UTC".into(),
        headers: BTreeMap::new(),
        body: None,
        timeout_seconds: 30,
        max_retries: 0,
        retry_delay_seconds: 1,
        is_active: true,
        notify_on_failure: false,
        notify_after_failures: 1,
        next_run_at: None,
        last_run_at: None,
        last_status: None,
        consecutive_failures: 0,
        starting_deadline_seconds: 300,
        concurrency_policy: "allow".into(),
        delivery: "at_least_once".into(),
        follow_redirects: 0,
        created_at: t,
        updated_at: t,
    }
}

/// Runs `f` on evidence built from the given parts (one firing job, every second).
fn judge<T>(history: &Snapshot, hits: &[Hit], fs: Option<&FinalState>, f: impl Fn(&Evidence<'_>) -> T) -> T {
    let cfg = config();
    let firing = vec![FiringJob { id: JOB.into(), period_s: 1, offset_ms: 0, created_ms: 0 }];
    let keys = KeyState::default();
    let scan = canary::Scan::default();
    let e = Evidence {
        config: &cfg,
        history,
        hits,
        firing: &firing,
        final_state: fs,
        window: Window { from_ms: 10_000, to_ms: 12_000 },
        keys: &keys,
        canary: &scan,
        shard_count: 256,
        crashes: &[],
    };
    f(&e)
}

fn owner_history(owner: u64) -> Vec<ShardChange> {
    let shard = shard_of(JOB, 256).unwrap();
    vec![ShardChange { at_ms: 0, seen_by: owner, shard, owner: Some(owner), epoch: 1 }]
}

#[test]
fn a_duplicate_is_excused_only_by_a_stop_of_the_owner_in_its_send_window() {
    let hits = vec![hit("k", 10_000, 10_005), hit("k", 10_000, 15_000)];
    let mut h = Snapshot { shard_changes: owner_history(2), ..Snapshot::default() };
    let r = judge(&h, &hits, None, duplicates::check);
    assert_eq!((r.status, r.violation_count), (Status::Fail, 1), "{r:?}");

    h.stops.push(StopEvent { node: 2, at_ms: 10_050, kind: FaultKind::KillLeader });
    let r = judge(&h, &hits, None, duplicates::check);
    assert_eq!((r.status, r.excused_count), (Status::Pass, 1), "{r:?}");

    // A stop of another node, or one long after the delivery, excuses nothing.
    h.stops = vec![StopEvent { node: 3, at_ms: 10_050, kind: FaultKind::KillFollower }];
    assert_eq!(judge(&h, &hits, None, duplicates::check).status, Status::Fail);
    h.stops = vec![StopEvent { node: 2, at_ms: 14_000, kind: FaultKind::PauseFollower }];
    assert_eq!(judge(&h, &hits, None, duplicates::check).status, Status::Fail);
}

#[test]
fn a_slot_is_delivered_or_recorded_with_a_reason() {
    let hits = vec![hit("a", 10_000, 10_005)];
    let mut fs = FinalState::default();
    fs.runs
        .insert(1, BTreeMap::from([(JOB.to_string(), vec![run(11_000, "missed", Some("older than the deadline"))])]));
    let r = judge(&Snapshot::default(), &hits, Some(&fs), missed::check);
    // 12 000 has neither a delivery nor a run.
    assert_eq!((r.violation_count, r.excused_count), (1, 1), "{r:?}");
    assert!(r.violations[0].contains("slot 12000"), "{:?}", r.violations);
}

#[test]
fn an_arrival_long_before_its_slot_is_an_early_fire() {
    let hits = vec![hit("a", 10_000, 9_700), hit("b", 11_000, 10_000)];
    let r = judge(&Snapshot::default(), &hits, None, early::check);
    assert_eq!(r.violation_count, 1, "{r:?}");
    assert!(r.violations[0].contains("slot 11000"));
}

#[test]
fn a_clock_jump_widens_the_early_bound_by_its_slew_only() {
    // A jump held 20 s may move the cluster's timeline 200 ms: the bound is 700 ms.
    let jump = FaultRecord {
        kind: FaultKind::ClockJump,
        targets: vec![1],
        minority: vec![],
        cut_off: vec![],
        affected: vec![1],
        detail: "+50 s".into(),
        start_ms: 1_000,
        in_effect_ms: 1_000,
        heal_ms: 21_000,
        end_ms: 21_000,
        converged_ms: Some(21_500),
        error: None,
    };
    let h = Snapshot { faults: vec![jump], ..Snapshot::default() };
    let hits = vec![hit("a", 10_000, 9_350), hit("b", 11_000, 10_250)];
    let r = judge(&h, &hits, None, early::check);
    assert_eq!(r.violation_count, 1, "{r:?}");
    assert!(r.violations[0].contains("slot 11000"), "{:?}", r.violations);
}

fn write(op: WriteOp, outcome: Outcome, at: i64) -> WriteRecord {
    WriteRecord { client: "c".into(), node: 1, op, invoked_ms: at, completed_ms: at + 1, outcome }
}

#[test]
fn lost_and_phantom_writes_are_found() {
    let a = "00000000-0000-4000-8000-00000000000a";
    let b = "00000000-0000-4000-8000-00000000000b";
    let h = Snapshot {
        writes: vec![
            write(WriteOp::CreateJob { name: "w-1-c-1".into(), job: Some(a.into()) }, Outcome::Ok, 1),
            write(WriteOp::CreateJob { name: "w-1-c-2".into(), job: Some(b.into()) }, Outcome::Ok, 2),
            write(WriteOp::UpdateJob { job: b.into(), name: "w-1-c-3".into() }, Outcome::Failed("400".into()), 3),
        ],
        ..Snapshot::default()
    };
    // Job a is gone; job b shows the refused value.
    let mut fs = FinalState::default();
    fs.jobs.insert(1, vec![job(b, "w-1-c-3")]);
    fs.jobs_linearizable = vec![job(b, "w-1-c-3")];
    let r = judge(&h, &[], Some(&fs), lost_writes::check);
    assert_eq!(r.violation_count, 4, "{r:#?}");
    // Both right: pass.
    let good = vec![job(a, "w-1-c-1"), job(b, "w-1-c-2")];
    fs.jobs.insert(1, good.clone());
    fs.jobs_linearizable = good;
    assert_eq!(judge(&h, &[], Some(&fs), lost_writes::check).status, Status::Pass);
}

#[test]
fn a_minority_that_acknowledges_a_write_fails() {
    let fault = FaultRecord {
        kind: FaultKind::IsolateFollower,
        targets: vec![3],
        minority: vec![3],
        cut_off: vec![3],
        affected: vec![3],
        detail: String::new(),
        start_ms: 1_000,
        in_effect_ms: 1_020,
        heal_ms: 8_900,
        end_ms: 9_000,
        converged_ms: Some(9_500),
        error: None,
    };
    let mut w = write(WriteOp::DeleteJob { job: JOB.into() }, Outcome::Ok, 2_000);
    w.node = 3;
    let h = Snapshot { faults: vec![fault], writes: vec![w], ..Snapshot::default() };
    let r = judge(&h, &[], None, minority::check);
    assert_eq!(r.violation_count, 1, "{r:?}");
}

#[test]
fn a_member_that_confirmed_a_revoke_must_refuse_the_key_at_once() {
    use crate::history::Revocation;
    let rev = |unconfirmed: Vec<u64>, excused: Vec<u64>, first: [Option<u16>; 3]| Revocation {
        key_id: "k".into(),
        acked_ms: 1_000,
        // Every node refused within the bound: only the first-request rule can fail.
        refused_after_ms: (1..=3).map(|n| (n, Some(40))).collect(),
        excused,
        unconfirmed,
        first_probe: (1..=3).zip(first).collect(),
    };
    let mut cfg = config();
    cfg.keys_workload = true;
    let check_one = |r: Revocation| {
        let h = Snapshot { revocations: vec![r], ..Snapshot::default() };
        let (firing, keys, scan) = (Vec::new(), KeyState::default(), canary::Scan::default());
        let e = Evidence {
            config: &cfg,
            history: &h,
            hits: &[],
            firing: &firing,
            final_state: None,
            window: Window { from_ms: 0, to_ms: 2_000 },
            keys: &keys,
            canary: &scan,
            shard_count: 256,
            crashes: &[],
        };
        revocation::check(&e)
    };
    // All confirmed, all refused at once: passes.
    let ok = check_one(rev(vec![], vec![], [Some(401), Some(401), Some(401)]));
    assert_eq!((ok.status, ok.violation_count), (Status::Pass, 0), "{ok:?}");
    // Node 2 confirmed, yet let the key through once: a violation, although it refused it 40 ms later.
    let late = check_one(rev(vec![], vec![], [Some(401), Some(200), Some(401)]));
    assert_eq!(late.violation_count, 1, "{late:?}");
    // Named as unconfirmed, or touched by a fault: left to the bound.
    let named = check_one(rev(vec![2], vec![], [Some(401), Some(200), Some(401)]));
    assert_eq!(named.violation_count, 0, "{named:?}");
    let touched = check_one(rev(vec![], vec![2], [Some(401), Some(200), Some(401)]));
    assert_eq!(touched.violation_count, 0, "{touched:?}");
    // A busy answer says nothing about the key.
    let busy = check_one(rev(vec![], vec![], [Some(429), Some(503), None]));
    assert_eq!(busy.violation_count, 0, "{busy:?}");
}
