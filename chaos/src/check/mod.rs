//! The checkers: pure functions from the recorded [`Evidence`] to a [`CheckResult`], one file
//! each. They never talk to the cluster; everything they judge was recorded during the run or
//! read at the end ([`crate::collect`]).
//!
//! A check fails on any violation it can name; it is "not run" when its evidence does not
//! exist (for instance the key routes are missing), which the verdict treats as invalid when the
//! check was asked for.

pub mod canary;
pub mod claims;
pub mod crashes;
pub mod duplicates;
pub mod early;
pub mod lateness;
pub mod lost_writes;
pub mod minority;
pub mod missed;
pub mod revocation;

use std::collections::BTreeMap;

use raftcron_client::Run;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::collect::FinalState;
use crate::config::Config;
use crate::history::Snapshot;
use crate::sink::Hit;
use crate::workload::firing::FiringJob;
use crate::workload::keys::KeyState;

/// Violations listed in full per check; the rest are counted.
pub const MAX_LISTED: usize = 40;

/// The slots the checkers judge: after setup, and early enough that every slot had time to be
/// sent and recorded before the firing jobs were paused.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Window {
    pub from_ms: i64,
    pub to_ms: i64,
}

/// Everything the checkers may look at.
pub struct Evidence<'a> {
    pub config: &'a Config,
    pub history: &'a Snapshot,
    pub hits: &'a [Hit],
    pub firing: &'a [FiringJob],
    pub final_state: Option<&'a FinalState>,
    pub window: Window,
    pub keys: &'a KeyState,
    pub canary: &'a canary::Scan,
    pub shard_count: u32,
    /// Nodes that exited by themselves, and panics in the logs.
    pub crashes: &'a [String],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pass,
    Fail,
    NotRun,
}

/// One checker's verdict.
#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    pub name: &'static str,
    pub status: Status,
    /// One line for the table.
    pub summary: String,
    /// The first [`MAX_LISTED`] violations, each explained.
    pub violations: Vec<String>,
    pub violation_count: usize,
    /// Things that looked like violations and were allowed, each with its reason.
    pub excused: Vec<String>,
    pub excused_count: usize,
    /// Figures for the report.
    pub figures: serde_json::Value,
}

impl CheckResult {
    pub fn new(name: &'static str) -> CheckResult {
        CheckResult {
            name,
            status: Status::Pass,
            summary: String::new(),
            violations: Vec::new(),
            violation_count: 0,
            excused: Vec::new(),
            excused_count: 0,
            figures: serde_json::Value::Null,
        }
    }

    pub fn not_run(name: &'static str, why: impl Into<String>) -> CheckResult {
        CheckResult { status: Status::NotRun, summary: why.into(), ..CheckResult::new(name) }
    }

    pub fn violation(&mut self, v: impl Into<String>) {
        self.violation_count += 1;
        self.status = Status::Fail;
        if self.violations.len() < MAX_LISTED {
            self.violations.push(v.into());
        }
    }

    pub fn excuse(&mut self, v: impl Into<String>) {
        self.excused_count += 1;
        if self.excused.len() < MAX_LISTED {
            self.excused.push(v.into());
        }
    }
}

/// One checker: what the evidence shows about one property.
type Checker = fn(&Evidence<'_>) -> CheckResult;

/// Runs every checker. A checker that panics fails as itself, with the panic as its violation,
/// and the others still judge the run: a bug in one check must not lose a soak's report.
pub fn run_all(e: &Evidence<'_>) -> Vec<CheckResult> {
    let checks: [(&'static str, Checker); 10] = [
        ("no lost write", lost_writes::check),
        ("one claim per slot", claims::check),
        ("no duplicate delivery", duplicates::check),
        ("no silent miss", missed::check),
        ("no early fire", early::check),
        ("minority is inert", minority::check),
        ("lateness and recovery", lateness::check),
        ("revocation bound", revocation::check),
        ("no plaintext secret at rest", canary::check),
        ("no crash", crashes::check),
    ];
    checks.iter().map(|(name, check)| guarded(name, || check(e))).collect()
}

/// `check()`, or a failed result named `name` that carries its panic.
fn guarded(name: &'static str, check: impl FnOnce() -> CheckResult) -> CheckResult {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(check)).unwrap_or_else(|p| {
        let msg = p
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".into());
        let mut r = CheckResult::new(name);
        r.violation(format!("the checker panicked (a bug in the suite, not a verdict on the run): {msg}"));
        r.summary = "the checker panicked".into();
        r
    })
}

#[cfg(test)]
mod guard_tests {
    use super::{guarded, CheckResult, Status};

    #[test]
    fn a_panicking_checker_fails_as_itself_and_says_why() {
        let r = guarded("minority is inert", || panic!("range start is greater than range end"));
        assert_eq!(r.status, Status::Fail);
        assert_eq!(r.name, "minority is inert");
        assert!(r.violations[0].contains("range start is greater than range end"), "{:?}", r.violations);
        let ok = guarded("fine", || CheckResult::new("fine"));
        assert_eq!(ok.status, Status::Pass);
    }
}

/// The shard of a job, as the node computes it: the first 8 bytes of SHA-256 of the uuid bytes.
pub fn shard_of(job: &str, shard_count: u32) -> Option<u32> {
    let id = uuid::Uuid::parse_str(job).ok()?;
    let digest = Sha256::digest(id.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    Some((u64::from_be_bytes(first) % u64::from(shard_count.max(1))) as u32)
}

/// Scheduled runs (not manual triggers) of one node's view: job -> scheduled ms -> runs.
pub fn scheduled_runs<'a>(
    per_job: &'a BTreeMap<String, Vec<Run>>,
    firing: &[FiringJob],
) -> BTreeMap<&'a str, BTreeMap<i64, Vec<&'a Run>>> {
    let offsets: BTreeMap<&str, i64> = firing.iter().map(|j| (j.id.as_str(), i64::from(j.offset_ms))).collect();
    let mut out: BTreeMap<&str, BTreeMap<i64, Vec<&Run>>> = BTreeMap::new();
    for (job, runs) in per_job {
        let offset = offsets.get(job.as_str()).copied().unwrap_or(0);
        let m = out.entry(job.as_str()).or_default();
        for r in runs {
            let at = r.scheduled_at.timestamp_millis();
            // Manual triggers never fall on a slot's instant (a whole second plus the offset).
            if at.rem_euclid(1000) == offset {
                m.entry(at).or_default().push(r);
            }
        }
    }
    out
}

/// Hits by (job, scheduled ms).
pub fn hits_by_slot(hits: &[Hit]) -> BTreeMap<(&str, i64), Vec<&Hit>> {
    let mut out: BTreeMap<(&str, i64), Vec<&Hit>> = BTreeMap::new();
    for h in hits {
        out.entry((h.job.as_str(), h.scheduled_ms)).or_default().push(h);
    }
    out
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let v = vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
        assert_eq!(percentile(&v, 0.5), 6);
        assert_eq!(percentile(&v, 1.0), 10);
        assert_eq!(percentile(&[], 0.5), 0);
    }

    #[test]
    fn shard_is_stable() {
        let s = shard_of("8c0f5a3e-8a7b-4e0c-9c57-5b3f7a0d1e21", 256).unwrap();
        assert_eq!(s, shard_of("8c0f5a3e-8a7b-4e0c-9c57-5b3f7a0d1e21", 256).unwrap());
        assert!(s < 256);
        assert!(shard_of("not-a-uuid", 256).is_none());
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod checker_tests;
