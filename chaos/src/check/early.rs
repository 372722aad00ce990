//! No early fire: no slot reaches the sink long before its scheduled instant.
//!
//! An owner sends a slot when its own wall clock reaches it, and the leader accepts no claim
//! more than `claim_ahead + 1 s` ahead of the leader's clock, so a slot may arrive at most that
//! much early (a node whose clock jumped forward, within the leader's bound). Anything earlier
//! (plus [`SLACK_MS`]) is a violation, listed with the fault active at the scheduled instant.

use std::collections::BTreeMap;

use super::{CheckResult, Evidence};

/// Slack on top of the claim bound (clock reading, scheduling).
pub const SLACK_MS: i64 = 500;

pub fn check(e: &Evidence<'_>) -> CheckResult {
    let mut r = CheckResult::new("no early fire");
    let bound = e.config.timing.claim_ahead_ms + 1000 + SLACK_MS;
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
