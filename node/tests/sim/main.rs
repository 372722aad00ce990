//! A seeded, deterministic simulation of the Raft layer and the firing protocol
//! (docs/design/simulation.md).
//!
//! Real `openraft::Raft<TypeConfig>` nodes (3 or 5) run in one process on tokio's paused clock,
//! over an in-memory network and in-memory stores whose apply is the node's `state::apply`.
//! A seeded workload (job writes, the scheduler model's shard moves, claims and results) runs
//! against seeded faults (crashes and restarts keeping the disk, partitions, an isolated leader,
//! lost and delayed messages), and the invariants are checked after every step.
//!
//! - `cargo test --workspace --test sim`: seeds 0..200.
//! - `RAFTCRON_SIM_SEEDS=5000` runs more; `RAFTCRON_SIM_FIRST=10000` starts elsewhere.
//! - `RAFTCRON_SIM_SEED=1234` replays one seed and prints what it did.
//! - `RAFTCRON_SIM_STEPS=400` makes every run longer; `RAFTCRON_SIM_TRACE=1` prints every event.
//! - `RAFTCRON_SIM_FORWARD_MOVES=1` models the node's leader as it is today (finding 1 of the
//!   design note).
//! - `RAFTCRON_SIM_EAGER=1` models eager replication with power cuts (the
//!   `eager_replication_keeps_every_invariant` test does, on seeds 100000..100100).
//! - `RAFTCRON_SIM_LATE_WRITES=1` holds some forwarded writes past their sender's timeout (the
//!   `late_writes_keep_every_invariant` test does, on seeds 300000..300100);
//!   `RAFTCRON_SIM_UNFENCED_RELEASES=1` sends releases as before finding 11's residual was closed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod check;
mod net;
mod rng;
mod run;
mod sched;
mod store;
mod world;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use run::{run_seed, run_seed_with, Model, Outcome};

const DEFAULT_SEEDS: u64 = 200;
const DEFAULT_STEPS: u64 = 100;
/// Real time after which one seed counts as hung.
const WATCHDOG: std::time::Duration = std::time::Duration::from_secs(300);

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(v.trim().parse().unwrap_or_else(|_| panic!("{name}={v} is not a number")))
}

fn replay_command(seed: u64, steps: u64) -> String {
    let steps = if steps == DEFAULT_STEPS { String::new() } else { format!("RAFTCRON_SIM_STEPS={steps} ") };
    format!("RAFTCRON_SIM_SEED={seed} {steps}cargo test --workspace --test sim -- --nocapture")
}

/// Runs `seeds` on every core, each on its own single-threaded runtime.
fn run_many(seeds: Vec<u64>, steps: u64, model: Model) -> Vec<Outcome> {
    let next = AtomicU64::new(0);
    let outcomes = Mutex::new(Vec::new());
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).min(seeds.len().max(1));
    // What each worker runs, and since when: a seed that never yields (a busy loop keeps the
    // paused clock from moving) would otherwise hang the test without naming itself.
    let running: Mutex<Vec<Option<(u64, Instant)>>> = Mutex::new(vec![None; threads]);
    let finished = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !finished.load(Ordering::SeqCst) {
                std::thread::sleep(std::time::Duration::from_millis(200));
                for (seed, since) in running.lock().unwrap().iter().flatten() {
                    if since.elapsed() > WATCHDOG {
                        eprintln!(
                            "seed {seed} has run for {WATCHDOG:?} of real time: a loop in it never yields.\n\
                             replay it with:\n  {}",
                            replay_command(*seed, steps)
                        );
                        std::process::exit(101);
                    }
                }
            }
        });
        let workers: Vec<_> = (0..threads)
            .map(|worker| {
                let (next, seeds, outcomes, running) = (&next, &seeds, &outcomes, &running);
                s.spawn(move || loop {
                    let i = next.fetch_add(1, Ordering::SeqCst) as usize;
                    let Some(&seed) = seeds.get(i) else { break };
                    running.lock().unwrap()[worker] = Some((seed, Instant::now()));
                    let outcome = std::panic::catch_unwind(|| run_seed_with(seed, steps, model)).unwrap_or_else(|p| {
                        let msg = p
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_default();
                        Outcome {
                            seed,
                            failure: Some(format!("seed {seed}: the simulation panicked: {msg}")),
                            stats: Default::default(),
                            trace: 0,
                            sim_seconds: 0.0,
                        }
                    });
                    running.lock().unwrap()[worker] = None;
                    outcomes.lock().unwrap().push(outcome);
                })
            })
            .collect();
        for w in workers {
            let _ = w.join();
        }
        finished.store(true, Ordering::SeqCst);
    });
    let mut outcomes = outcomes.into_inner().unwrap();
    outcomes.sort_by_key(|o| o.seed);
    outcomes
}

#[test]
fn seeded_simulation_keeps_every_invariant() {
    let steps = env_u64("RAFTCRON_SIM_STEPS").unwrap_or(DEFAULT_STEPS);
    let seeds: Vec<u64> = match env_u64("RAFTCRON_SIM_SEED") {
        Some(seed) => vec![seed],
        None => {
            let first = env_u64("RAFTCRON_SIM_FIRST").unwrap_or(0);
            (first..first + env_u64("RAFTCRON_SIM_SEEDS").unwrap_or(DEFAULT_SEEDS)).collect()
        }
    };
    check_seeds(seeds, steps, Model::from_env());
}

/// Eager replication (`raft::eager`, on by default in the node): a leader sends its new
/// entries before its own sync, and a crash before the sync loses them from its log, as a
/// power cut would. Seeds 100000.. by default (`RAFTCRON_SIM_EAGER_FIRST`,
/// `RAFTCRON_SIM_EAGER_SEEDS`); replay one with `RAFTCRON_SIM_EAGER=1 RAFTCRON_SIM_SEED=N`.
#[test]
fn eager_replication_keeps_every_invariant() {
    check_model_seeds("EAGER", 100_000, Model { eager: true, ..Model::from_env() });
}

/// Seeds a model's own test runs by default (half the main test's: it adds to the suite's time).
const MODEL_SEEDS: u64 = 100;

/// Runs a model's own test: seeds from `default_first` (`RAFTCRON_SIM_{name}_FIRST`), as many
/// as `RAFTCRON_SIM_{name}_SEEDS` (default [`MODEL_SEEDS`]).
fn check_model_seeds(name: &str, default_first: u64, model: Model) {
    let steps = env_u64("RAFTCRON_SIM_STEPS").unwrap_or(DEFAULT_STEPS);
    let first = env_u64(&format!("RAFTCRON_SIM_{name}_FIRST")).unwrap_or(default_first);
    let count = env_u64(&format!("RAFTCRON_SIM_{name}_SEEDS")).unwrap_or(MODEL_SEEDS);
    check_seeds((first..first + count).collect(), steps, model);
}

/// Forwarded writes held in the network past their sender's timeout, release writes above all
/// (finding 11). Seeds 300000.. by default (`RAFTCRON_SIM_LATE_FIRST`, `RAFTCRON_SIM_LATE_SEEDS`);
/// replay one with `RAFTCRON_SIM_LATE_WRITES=1 RAFTCRON_SIM_SEED=N`.
#[test]
fn late_writes_keep_every_invariant() {
    check_model_seeds("LATE", 300_000, Model { late_writes: true, ..Model::from_env() });
}

/// Pins the residual of finding 11: a late copy of a release, held in the network past its
/// sender's timeout, committed after the slot was claimed back and sent, and marked it "never
/// sent". With release writes fenced (`Cluster::write_fenced`) the same seed keeps every
/// invariant; the switch keeps proving that the checker would catch the old way.
#[test]
fn a_late_copy_of_a_release_cannot_follow_the_reclaim() {
    // The seed found it with whole-second jobs only, before schedules had offsets.
    let late = Model { late_writes: true, whole_seconds: true, ..Model::default() };
    let fenced = run_seed_with(30853, 100, late);
    assert!(fenced.failure.is_none(), "{:?}", fenced.failure);
    let unfenced = run_seed_with(30853, 100, Model { unfenced_releases: true, ..late });
    let failure = unfenced.failure.unwrap_or_default();
    assert!(
        failure.contains("never sent, but that process sent it"),
        "seed 30853 no longer shows the issue: {failure}"
    );
}

/// Runs `seeds` and fails with the first broken invariants and how to replay them.
fn check_seeds(seeds: Vec<u64>, steps: u64, model: Model) {
    let started = Instant::now();
    let outcomes = run_many(seeds.clone(), steps, model);
    let mut total = check::Stats::default();
    let mut sim_seconds = 0.0;
    for o in &outcomes {
        let s = &o.stats;
        total.steps += s.steps;
        total.sends += s.sends;
        total.resends_after_crash += s.resends_after_crash;
        total.resends_cut_off += s.resends_cut_off;
        total.crashes += s.crashes;
        total.partitions += s.partitions;
        total.terms_with_two_leaders += s.terms_with_two_leaders;
        total.client_writes += s.client_writes;
        total.acked += s.acked;
        total.claims_accepted += s.claims_accepted;
        total.applied_max = total.applied_max.max(s.applied_max);
        sim_seconds += o.sim_seconds;
        if seeds.len() == 1 {
            println!("seed {}: {:.1} simulated s, trace {:016x}, {s:?}", o.seed, o.sim_seconds, o.trace);
        }
    }
    println!(
        "{} seeds x {steps} steps ({model:?}): {:.0} simulated s in {:.1} s; {total:?}",
        outcomes.len(),
        sim_seconds,
        started.elapsed().as_secs_f64()
    );
    let replay = |seed| {
        let eager = if model.eager { "RAFTCRON_SIM_EAGER=1 " } else { "" };
        let late = if model.late_writes { "RAFTCRON_SIM_LATE_WRITES=1 " } else { "" };
        let unfenced = if model.unfenced_releases { "RAFTCRON_SIM_UNFENCED_RELEASES=1 " } else { "" };
        format!("{eager}{late}{unfenced}{}", replay_command(seed, steps))
    };
    let failures: Vec<&Outcome> = outcomes.iter().filter(|o| o.failure.is_some()).collect();
    if let Some(first) = failures.first() {
        let mut report = String::new();
        for o in failures.iter().take(5) {
            report.push_str(o.failure.as_deref().unwrap_or_default());
            report.push_str(&format!("\n  replay: {}\n", replay(o.seed)));
        }
        panic!(
            "{} of {} seeds broke an invariant:\n{report}\nreplay the first with:\n  {}",
            failures.len(),
            outcomes.len(),
            replay(first.seed)
        );
    }
    assert!(total.sends > 0 && total.acked > 0, "the workload did nothing: {total:?}");
}

/// A seed is a replay: two runs of one seed do the same thing, to the last message.
#[test]
fn a_seed_replays_identically() {
    for seed in [3, 11] {
        let a = run_seed(seed, 60);
        let b = run_seed(seed, 60);
        assert_eq!(a.trace, b.trace, "seed {seed} ran differently twice: {:?} vs {:?}", a.stats, b.stats);
    }
}

/// Finding 2 of docs/design/simulation.md, fixed: seed 143 (120 steps) showed a released slot
/// that its holder sent itself sent again after the holder died, even at-most-once. The node
/// now claims such a slot back before sending it, the simulation runs the node's own round
/// (`scheduler::round::plan_round`), and any re-send of an at-most-once slot is a violation.
#[test]
fn a_released_slot_is_claimed_back_before_its_holder_sends_it() {
    let o = run_seed(143, 120);
    assert!(o.failure.is_none(), "{:?}", o.failure);
}

/// Finding 7 of docs/design/simulation.md, fixed: seed 842 showed a slot its holder let go
/// (lease lapsed at the instant) sent by the same process as a "lost claim answer" before its
/// release showed; the release then marked the sent slot "never sent", and after the holder's
/// restart another node sent the at-most-once slot again.
#[test]
fn a_let_go_slot_waits_for_its_release_before_it_is_sent() {
    let o = run_seed(842, 100);
    assert!(o.failure.is_none(), "{:?}", o.failure);
}

/// Findings 8 and 9 of docs/design/simulation.md, fixed: at 200 steps, seed 1577 showed two
/// nodes owning one shard (a lease granted between the leader's judgement "node 5 is dead" and
/// the commit of the move), and seed 1564 a let-go slot that its shard's return at a new epoch
/// left unsent.
#[test]
fn a_grant_never_races_a_move_and_a_let_go_slot_survives_an_epoch_change() {
    for seed in [1577, 1564] {
        let o = run_seed(seed, 200);
        assert!(o.failure.is_none(), "{:?}", o.failure);
    }
}

/// Finding 11 of docs/design/simulation.md, fixed: seed 20481 showed a slot let go (lease
/// lapsed) whose release write was answered late: the release committed and showed, the process
/// claimed the slot back and sent it, and only then did the recorder's retry of the release
/// commit and mark the sent slot "never sent"; after the holder's crash the next owner sent the
/// at-most-once slot again. A let-go slot is now claimed back only once its release write was
/// answered.
#[test]
fn a_let_go_slot_is_claimed_back_only_once_its_release_write_was_answered() {
    let o = run_seed(20481, 100);
    assert!(o.failure.is_none(), "{:?}", o.failure);
}

/// Pins finding 1 of docs/design/simulation.md: with shard moves written through
/// `Cluster::write` (forwarded to whoever leads by then), as `scheduler::leader` does today, a
/// deposed leader's moves are committed by its successor while the moved node holds the
/// successor's lease, and two nodes believe they own one shard. With moves proposed only by the
/// leader that judged them (the node's way since the fix), the same seed keeps every
/// invariant. The switch stays so that the checker keeps proving it would catch the old way;
/// the seed moves when trajectories change (seed 447 at 150 steps since the grant/move
/// exclusion; seeds 447 and 597 of 0..600 show it).
#[test]
fn known_issue_forwarded_shard_moves_give_a_shard_two_owners() {
    assert!(run_seed(447, 150).failure.is_none());
    let as_is = run_seed_with(447, 150, run::Model { forward_moves: true, ..run::Model::default() });
    let failure = as_is.failure.unwrap_or_default();
    assert!(failure.contains("both believe they own shard"), "seed 447 no longer shows the issue: {failure}");
}
