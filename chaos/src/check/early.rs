//! No early fire: no slot reaches the sink long before its scheduled instant.
//!
//! Owners send a slot when the cluster's time reaches it. That timeline follows the leader's
//! wall clock at most [`SLEW_MS_PER_S`] fast (`clock::ClusterClock` in the node), so a clock
//! jump held for H seconds can move it at most `H x 10 ms` ahead, whichever node it hit. A slot
//! that arrives more than that (for the longest jump of the run) plus [`SLACK_MS`] before its
//! instant is a violation, listed with the clock jumps before it.

use std::collections::BTreeMap;

use super::{CheckResult, Evidence};

/// Slack on top of the slew (the reading error of a lease round trip, scheduling).
pub const SLACK_MS: i64 = 500;

/// How fast the cluster's timeline may move toward the leader's wall clock.
pub const SLEW_MS_PER_S: i64 = 10;

pub fn check(e: &Evidence<'_>) -> CheckResult {
    let mut r = CheckResult::new("no early fire");
    let longest_jump_ms = e
        .history
        .faults
        .iter()
        .filter(|f| f.kind == crate::config::FaultKind::ClockJump)
        .map(|f| f.end_ms.saturating_sub(f.start_ms).max(0))
        .max()
        .unwrap_or(0);
    let bound = SLACK_MS + SLEW_MS_PER_S * ((longest_jump_ms + 999) / 1000);
    let mut earliest = 0i64;
    let mut per_group: BTreeMap<String, usize> = BTreeMap::new();
    for h in e.hits.iter().filter(|h| h.scheduled_ms >= e.window.from_ms && h.scheduled_ms <= e.window.to_ms) {
        let early = h.scheduled_ms - h.received_ms;
        earliest = earliest.max(early);
        if early > bound {
            let group = super::lateness::group_of(e, h.scheduled_ms);
            let recent_jumps: Vec<String> = e
                .history
                .faults
                .iter()
                .filter(|f| f.kind == crate::config::FaultKind::ClockJump && f.start_ms <= h.received_ms)
                .map(|f| format!("{:?} {} at {:+} s", f.targets, f.detail, (f.start_ms - h.received_ms) / 1000))
                .collect();
            *per_group.entry(group.clone()).or_default() += 1;
            r.violation(format!(
                "job {} slot {} arrived {early} ms early (bound {bound} ms) during {group}; clock jumps before it: {recent_jumps:?}",
                h.job, h.scheduled_ms
            ));
        }
    }
    r.summary =
        format!("earliest arrival {earliest} ms before its slot (bound {bound} ms); early per fault: {per_group:?}");
    r.figures = serde_json::json!({ "earliest_ms": earliest, "bound_ms": bound, "early_per_fault": per_group });
    r
}
