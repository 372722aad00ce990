//! Smoke run of the chaos suite: one fixed seed, three real nodes, the default firing load
//! (~54 fires/s), writers and readers on every node, and a kill -9 of the leader, a SIGSTOP of
//! a follower longer than its lease and an isolated leader (about 2.5 minutes on two cores with
//! debug builds).
//!
//! It asserts every checker passes, with two declared exceptions that follow the state of the
//! node, not of the suite:
//! - "no plaintext secret at rest" must *fail* while the node binary has no encryption at rest
//!   (its `serve --help` has no `--master-key`): the canary header is then in the RocksDB files,
//!   and a pass would mean the scan is broken. Once the binary seals secrets, the check must pass.
//! - the key workload may be reported as not run (the run is then invalid for that reason
//!   alone) while the node has no `/api/v1/keys` route.
//!
//! Duplicates caused by the isolated owner (it still held a valid lease, sent claimed slots and
//! could not record them, so the next owner re-sent them once) are excused here and listed
//! (`excuse_partition_resends`); `raftcron-chaos` fails on them by default, as the documented
//! guarantee names only kills and pauses. See docs/chaos.md, "Known findings".

use std::path::PathBuf;
use std::time::Duration;

use raftcron_chaos::check::Status;
use raftcron_chaos::{Config, FaultKind, NetworkBackend, Profile, Timing, Verdict};

const CANARY_CHECK: &str = "no plaintext secret at rest";

#[allow(clippy::panic)] // A missing binary is a setup error: stop with the command that fixes it.
fn node_binary() -> PathBuf {
    match raftcron_chaos::default_binary() {
        Some(p) if p.is_file() => p,
        _ => panic!(
            "the raftcron binary was not found; build it with `cargo build -p raftcron-node --bin raftcron` \
             (same CARGO_TARGET_DIR) or set RAFTCRON_BIN"
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_pause_and_partition_pass_every_check() {
    let bin = node_binary();
    let features = raftcron_chaos::procs::BinaryFeatures::probe(&bin).await.expect("serve --help");
    let encryption = features.master_key;
    let out = tempfile::Builder::new().prefix("raftcron-chaos-smoke-").tempdir().unwrap();
    let keep = std::env::var_os("RAFTCRON_CHAOS_KEEP").is_some();
    let cfg = Config {
        seed: 20_251_122,
        duration: Duration::from_secs(90),
        nodes: 3,
        faults: vec![FaultKind::KillLeader, FaultKind::PauseFollower, FaultKind::IsolateLeader],
        out: out.path().to_path_buf(),
        bin,
        keys_workload: true,
        keep_data: false,
        excuse_partition_resends: true,
        profile: Profile::default(),
        timing: Timing::default(),
        progress: false,
        network: NetworkBackend::Proxy,
    };
    let started = std::time::Instant::now();
    let report = raftcron_chaos::run(cfg).await.expect("the run completes");
    eprintln!("{}", raftcron_chaos::report::table(&report));
    eprintln!("[smoke] {:.0?} in all", started.elapsed());

    let mut unexpected = Vec::new();
    for c in &report.checks {
        if c.name == CANARY_CHECK && !encryption {
            if c.status != Status::Fail {
                unexpected.push(format!(
                    "{CANARY_CHECK}: expected to find the canary without encryption at rest, got {:?}",
                    c.status
                ));
            }
            continue;
        }
        if c.status == Status::Fail {
            unexpected.push(format!("{} failed: {:?}", c.name, &c.violations[..c.violations.len().min(5)]));
        }
    }
    unexpected.extend(
        report
            .invalid_reasons
            .iter()
            .filter(|r| !r.contains("POST /api/v1/keys answered 404"))
            .map(|r| format!("invalid: {r}")),
    );
    if keep || !unexpected.is_empty() {
        // Keep the node logs, the report and the picture of a failing run.
        eprintln!("[smoke] kept {}", out.keep().display());
    }
    assert!(unexpected.is_empty(), "unexpected results: {unexpected:#?}");
    for kind in [FaultKind::KillLeader, FaultKind::PauseFollower, FaultKind::IsolateLeader] {
        assert!(
            report.faults.iter().any(|f| f.kind == kind && f.error.is_none() && f.converged_ms.is_some()),
            "{kind} did not run and converge"
        );
    }
    assert!(report.facts.fires_per_s >= 45.0, "load too low: {:.1} fires/s", report.facts.fires_per_s);
    assert!(report.facts.writes_ok > 100, "too few acknowledged writes: {}", report.facts.writes_ok);
    if encryption && report.invalid_reasons.is_empty() {
        assert_eq!(report.verdict, Verdict::Pass);
    }
}
