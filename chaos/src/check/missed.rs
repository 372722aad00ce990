//! No slot silently missed: every expected slot of every firing job in the judged window
//! reached the sink, or the job's runs record it as `missed`, `unknown` or `skipped` with a
//! reason. A slot recorded `failed` without reaching the sink, still `running` at the end, or
//! not recorded at all, is a violation.
//!
//! The run lists of the first node are used (the claims check already compares the nodes).

use std::collections::BTreeMap;

use super::{hits_by_slot, scheduled_runs, CheckResult, Evidence};

pub fn check(e: &Evidence<'_>) -> CheckResult {
    let name = "no silent miss";
    let Some(fs) = e.final_state else {
        return CheckResult::not_run(name, "the final run lists could not be read");
    };
    let Some((node, per_job)) = fs.runs.iter().next() else {
        return CheckResult::not_run(name, "no node's run list was read");
    };
    let mut r = CheckResult::new(name);
    let hits = hits_by_slot(e.hits);
    let runs = scheduled_runs(per_job, e.firing);
    let mut expected = 0usize;
    let mut delivered = 0usize;
    let mut recorded: BTreeMap<String, usize> = BTreeMap::new();
    for job in e.firing {
        // The first slot strictly after the job existed.
        let from = e.window.from_ms.max(job.created_ms + 1000);
        let job_runs = runs.get(job.id.as_str());
        for at in job.slots(from, e.window.to_ms) {
            expected += 1;
            if hits.get(&(job.id.as_str(), at)).is_some_and(|h| !h.is_empty()) {
                delivered += 1;
                continue;
            }
            let rs = job_runs.and_then(|m| m.get(&at));
            match rs.and_then(|v| v.first()) {
                Some(run) if matches!(run.status.as_str(), "missed" | "unknown" | "skipped") => {
                    let reason = run.error.clone().unwrap_or_default();
                    if reason.is_empty() {
                        r.violation(format!("job {} slot {at}: recorded {} without a reason", job.id, run.status));
                    } else {
                        *recorded.entry(run.status.clone()).or_default() += 1;
                        r.excuse(format!("job {} slot {at}: {} ({reason})", job.id, run.status));
                    }
                }
                Some(run) => r.violation(format!(
                    "job {} slot {at}: never reached the sink, recorded {} by node {:?} ({:?})",
                    job.id, run.status, run.node_id, run.error
                )),
                None => r.violation(format!(
                    "job {} slot {at}: never reached the sink and has no run on node {node}",
                    job.id
                )),
            }
        }
    }
    r.summary = format!(
        "{expected} slots expected in [{}, {}], {delivered} delivered, recorded not sent: {recorded:?}",
        e.window.from_ms, e.window.to_ms
    );
    r.figures = serde_json::json!({ "expected": expected, "delivered": delivered, "recorded": recorded });
    r
}
