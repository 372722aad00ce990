//! The outcome of a run: the verdict (pass, fail, invalid), why a run is invalid, the checks,
//! the figures, and their two renderings: the JSON report and the terminal table.
//!
//! Invalid means "this run proves nothing": the workload or the faults did not happen as
//! planned. It is decided here, from plain facts gathered by the runner ([`Facts`]); it must not
//! look at the cluster.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::Serialize;

use crate::check::{CheckResult, Status};
use crate::config::{Config, FaultKind};
use crate::faults::plan::PlannedFault;
use crate::history::FaultRecord;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Verdict {
    Pass,
    Fail,
    Invalid,
}

impl Verdict {
    /// The process exit code: 0 pass, 1 fail, 2 invalid.
    pub fn exit_code(self) -> i32 {
        match self {
            Verdict::Pass => 0,
            Verdict::Fail => 1,
            Verdict::Invalid => 2,
        }
    }
}

/// What the runner measured, for the validity rules and the report.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Facts {
    pub features: crate::procs::BinaryFeatures,
    pub setup_error: Option<String>,
    pub collect_error: Option<String>,
    pub window_ms: i64,
    pub planned_fires_per_s: f64,
    /// Distinct shards the firing jobs fall in (of `shard_count`).
    pub firing_shards: usize,
    pub shard_count: u32,
    pub expected_slots: usize,
    pub delivered_in_window: usize,
    pub fires_per_s: f64,
    pub canary_headers_ok: bool,
    pub writers: usize,
    pub writes: usize,
    pub writes_ok: usize,
    pub writes_failed: usize,
    pub writes_unknown: usize,
    pub writes_ok_per_node: BTreeMap<u64, usize>,
    pub reads_ok: u64,
    pub reads_failed: u64,
    pub keys_unsupported: bool,
    pub keys_created: u64,
    pub keys_revoked: u64,
    pub faults_planned: usize,
    pub observer_rounds: u64,
    pub elapsed_s: f64,
    pub proxy: BTreeMap<String, crate::proxy::LinkStats>,
    /// Which network backend ran: `proxy: ...` or `netns: ...`.
    pub network: String,
    /// With `--netns`: per link, how often it was cut and the packets its nftables rule swallowed.
    pub netns_cuts: BTreeMap<String, crate::netns::links::CutStats>,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub verdict: Verdict,
    pub invalid_reasons: Vec<String>,
    pub repro: String,
    pub config: Config,
    pub facts: Facts,
    pub checks: Vec<CheckResult>,
    pub faults: Vec<FaultRecord>,
    pub plan: Vec<PlannedFault>,
    pub notes: Vec<String>,
}

/// Why the run is invalid (empty: valid).
pub fn invalid_reasons(cfg: &Config, f: &Facts, faults: &[FaultRecord], checks: &[CheckResult]) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(e) = &f.setup_error {
        out.push(format!("setup failed: {e}"));
        return out;
    }
    if let Some(e) = &f.collect_error {
        out.push(format!("the final state could not be read: {e}"));
    }
    let ran: BTreeSet<FaultKind> = faults.iter().filter(|r| r.error.is_none()).map(|r| r.kind).collect();
    for k in &cfg.faults {
        if k.needs_proxy(cfg.network.is_netns()) && !f.features.peer_override {
            out.push(format!("fault {k} not run: the node binary has no --peer-override"));
        } else if *k == FaultKind::ClockJump && !f.features.clock_drills {
            out.push(format!("fault {k} not run: the node binary has no --clock-drills"));
        } else if !ran.contains(k) {
            out.push(format!("fault {k} was asked for and never completed (time ran out or it failed)"));
        }
    }
    for r in faults.iter().filter(|r| r.error.is_some()) {
        out.push(format!(
            "fault {} {:?} did not go as planned: {}",
            r.kind,
            r.targets,
            r.error.as_deref().unwrap_or("")
        ));
    }
    if f.window_ms < 10_000 {
        out.push(format!("the judged window is only {} ms", f.window_ms));
    }
    if f.expected_slots > 0 && (f.delivered_in_window as f64) < 0.5 * f.expected_slots as f64 {
        out.push(format!(
            "the firing load did not happen: {} of {} expected slots reached the sink",
            f.delivered_in_window, f.expected_slots
        ));
    }
    if f.delivered_in_window > 0 && !f.canary_headers_ok {
        out.push("the sink saw deliveries without the canary header: the canary check would prove nothing".into());
    }
    let min_writes = f.writers * (f.window_ms.max(0) as usize / 10_000).max(1);
    if f.writes < min_writes {
        out.push(format!(
            "the write load did not happen: {} writes by {} writers (at least {min_writes})",
            f.writes, f.writers
        ));
    }
    for node in 1..=cfg.nodes {
        if f.writers > 0 && f.writes_ok_per_node.get(&node).copied().unwrap_or(0) == 0 {
            out.push(format!("no write sent to node {node} was acknowledged during the whole run"));
        }
    }
    if cfg.keys_workload && f.keys_unsupported {
        out.push("the key workload was asked for but not run: POST /api/v1/keys answered 404 no such route".into());
    } else if cfg.keys_workload && f.keys_revoked == 0 {
        out.push("the key workload was asked for but no revoke was acknowledged".into());
    }
    for c in checks {
        if c.status == Status::NotRun && c.name == "no plaintext secret at rest" {
            out.push(format!("check {:?} not run: {}", c.name, c.summary));
        }
    }
    out
}

pub fn verdict(invalid: &[String], checks: &[CheckResult]) -> Verdict {
    if checks.iter().any(|c| c.status == Status::Fail) {
        // A failure found is real even in a run that is otherwise incomplete.
        Verdict::Fail
    } else if !invalid.is_empty() {
        Verdict::Invalid
    } else {
        Verdict::Pass
    }
}

/// The terminal summary.
pub fn table(r: &Report) -> String {
    let mut s = String::new();
    let f = &r.facts;
    let _ = writeln!(
        s,
        "\nraftcron-chaos seed {} | {} nodes | {:.0} s | faults {}",
        r.config.seed,
        r.config.nodes,
        f.elapsed_s,
        r.config.faults.iter().map(|k| k.name()).collect::<Vec<_>>().join(",")
    );
    let _ = writeln!(s, "network: {}", f.network);
    if !f.netns_cuts.is_empty() {
        let cuts: Vec<String> =
            f.netns_cuts.iter().map(|(l, c)| format!("{l} cut {}x, {} packets dropped", c.cuts, c.packets)).collect();
        let _ = writeln!(s, "nftables cuts: {}", cuts.join("; "));
    }
    let _ = writeln!(
        s,
        "load: {:.1} fires/s (planned {:.1}) from {} jobs in {} of {} shards, {} of {} slots delivered in a {:.0} s window; writes {} (ok {}, failed {}, unknown {}); reads ok {} failed {}; keys created {} revoked {}",
        f.fires_per_s,
        f.planned_fires_per_s,
        r.config.profile.every_second_jobs + r.config.profile.periodic_jobs,
        f.firing_shards,
        f.shard_count,
        f.delivered_in_window,
        f.expected_slots,
        f.window_ms as f64 / 1000.0,
        f.writes,
        f.writes_ok,
        f.writes_failed,
        f.writes_unknown,
        f.reads_ok,
        f.reads_failed,
        f.keys_created,
        f.keys_revoked
    );
    let _ = writeln!(s, "\n{:<4} {:<17} {:<12} {:>8}  detail", "#", "fault", "targets", "converge");
    for (i, x) in r.faults.iter().enumerate() {
        let conv = x
            .converged_ms
            .map(|c| format!("{:.1} s", (c - x.end_ms) as f64 / 1000.0))
            .unwrap_or_else(|| "never".into());
        let detail = match &x.error {
            Some(e) => format!("ERROR {e}"),
            None => x.detail.clone(),
        };
        let _ = writeln!(
            s,
            "{:<4} {:<17} {:<12} {:>8}  {}",
            i + 1,
            x.kind.name(),
            format!("{:?}", x.targets),
            conv,
            detail
        );
    }
    let _ = writeln!(s, "\n{:<28} {:<8} {:>6} {:>7}  summary", "check", "result", "viol.", "excused");
    for c in &r.checks {
        let st = match c.status {
            Status::Pass => "pass",
            Status::Fail => "FAIL",
            Status::NotRun => "not run",
        };
        let _ = writeln!(s, "{:<28} {:<8} {:>6} {:>7}  {}", c.name, st, c.violation_count, c.excused_count, c.summary);
    }
    for c in r.checks.iter().filter(|c| c.status == Status::Fail) {
        let _ = writeln!(s, "\n{} — first violations:", c.name);
        for v in c.violations.iter().take(8) {
            let _ = writeln!(s, "  - {v}");
        }
    }
    if !r.invalid_reasons.is_empty() {
        let _ = writeln!(s, "\ninvalid because:");
        for v in &r.invalid_reasons {
            let _ = writeln!(s, "  - {v}");
        }
    }
    let _ = writeln!(s, "\nverdict: {:?}", r.verdict);
    if r.verdict != Verdict::Pass {
        let _ = writeln!(s, "reproduce with:\n  {}", r.repro);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_beats_invalid_and_invalid_beats_pass() {
        let mut fail = CheckResult::new("x");
        fail.violation("bad");
        let pass = CheckResult::new("y");
        assert_eq!(verdict(&["why".into()], &[fail.clone(), pass.clone()]), Verdict::Fail);
        assert_eq!(verdict(&["why".into()], std::slice::from_ref(&pass)), Verdict::Invalid);
        assert_eq!(verdict(&[], &[pass]), Verdict::Pass);
        assert_eq!(Verdict::Invalid.exit_code(), 2);
    }
}
