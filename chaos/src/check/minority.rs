//! A minority never acknowledges a write, never serves a linearizable read, and never fires.
//!
//! For every partition that left nodes unable to reach a majority (isolate, split):
//! - no write sent to a minority node after the cut and answered before the heal was
//!   acknowledged (it cannot have been committed);
//! - no linearizable read sent to a minority node later than two maximum election timeouts
//!   after the cut (past any leader lease) and answered before the heal succeeded;
//! - no slot scheduled later than `claim_ahead + 1 s` after the cut (the furthest a claim made
//!   before the cut can reach ahead) was sent by a minority node before the heal, per the
//!   node id the run lists record for each slot.
//!
//! "While cut off" is from the moment every rule of the cut was in place (`in_effect_ms`) to the
//! moment the heal began (`heal_ms`): a write acknowledged while the rules were still being
//! applied, or while the heal was lifting them, was not made by a minority.

use super::{scheduled_runs, CheckResult, Evidence};

/// Slack for the node's and the suite's clocks and the cut taking effect.
const SLACK_MS: i64 = 500;

pub fn check(e: &Evidence<'_>) -> CheckResult {
    let name = "minority is inert";
    let parts: Vec<_> = e.history.faults.iter().filter(|f| !f.minority.is_empty() && f.error.is_none()).collect();
    if parts.is_empty() {
        return CheckResult::not_run(name, "no partition left a minority in this run");
    }
    let mut r = CheckResult::new(name);
    let mut writes_judged = 0usize;
    let mut slots_judged = 0usize;
    let mut reads_judged = 0usize;
    for f in &parts {
        let (cut_ms, heal_ms) = (f.in_effect_ms, f.heal_ms);
        for w in e.history.writes.iter().filter(|w| f.minority.contains(&w.node)) {
            if w.invoked_ms >= cut_ms && w.completed_ms <= heal_ms {
                writes_judged += 1;
                if w.outcome.is_ok() {
                    r.violation(format!(
                        "{} {:?}: node {} acknowledged {:?} at +{} ms while cut off from the majority",
                        f.kind,
                        f.minority,
                        w.node,
                        w.op,
                        w.completed_ms - cut_ms
                    ));
                }
            }
        }
        let lease_end = cut_ms + 4 * e.config.timing.election_timeout_ms as i64;
        for rd in e.history.linear_reads.iter().filter(|r| f.minority.contains(&r.node)) {
            if rd.invoked_ms >= lease_end && rd.completed_ms <= heal_ms {
                reads_judged += 1;
                if rd.ok {
                    r.violation(format!(
                        "{} {:?}: node {} served the linearizable read {} at +{} ms while cut off from the majority",
                        f.kind,
                        f.minority,
                        rd.node,
                        rd.path,
                        rd.completed_ms - cut_ms
                    ));
                }
            }
        }
        let Some(fs) = e.final_state else { continue };
        let Some(per_job) = fs.runs.values().next() else { continue };
        let earliest = cut_ms + e.config.timing.claim_ahead_ms + 1000 + SLACK_MS;
        if earliest > heal_ms {
            // Healed before any slot it could not have claimed came due: nothing to judge.
            continue;
        }
        for (job, slots) in scheduled_runs(per_job, e.firing) {
            for (at, runs) in slots.range(earliest..=heal_ms) {
                for run in runs {
                    slots_judged += 1;
                    let sent = matches!(run.status.as_str(), "succeeded" | "failed");
                    let by_minority = run.node_id.is_some_and(|n| f.minority.contains(&n));
                    let sent_during = run.started_at.is_some_and(|s| s.timestamp_millis() <= heal_ms);
                    if sent && by_minority && sent_during {
                        r.violation(format!(
                            "{} {:?}: node {:?} sent job {job} slot {at} ({} ms after the cut)",
                            f.kind,
                            f.minority,
                            run.node_id,
                            at - cut_ms
                        ));
                    }
                }
            }
        }
    }
    r.summary = format!(
        "{} partitions: {writes_judged} writes and {reads_judged} linearizable reads to the minority, {slots_judged} slots judged",
        parts.len()
    );
    r.figures = serde_json::json!({ "partitions": parts.len(), "writes": writes_judged, "reads": reads_judged, "slots": slots_judged });
    r
}
