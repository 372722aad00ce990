//! One committed claim per slot; shard epochs only grow.
//!
//! - From the observer: no node ever showed a shard's epoch going back, and no (shard, epoch)
//!   was ever shown with two different owners (by any nodes, at any time).
//! - From the run lists: on every node at most one run per (job, scheduled instant), run ids
//!   (fire ids) unique, and every node lists the same runs with the same status for the judged
//!   window (they all applied the same committed claims and results).

use std::collections::{BTreeMap, BTreeSet};

use super::{scheduled_runs, CheckResult, Evidence};

/// node -> (job, slot) -> sorted (run id, status).
type SlotViews = BTreeMap<u64, BTreeMap<(String, i64), Vec<(String, String)>>>;

pub fn check(e: &Evidence<'_>) -> CheckResult {
    let mut r = CheckResult::new("one claim per slot");
    for v in &e.history.observed_violations {
        r.violation(format!("observed on node {} at {}: {}", v.node, v.at_ms, v.what));
    }
    let Some(fs) = e.final_state else {
        r.summary = "the final run lists could not be read; only the observer's shard tables were judged".into();
        return r;
    };
    let (from, to) = (e.window.from_ms, e.window.to_ms);
    let mut slots_judged = 0usize;
    let mut views: SlotViews = BTreeMap::new();
    for (node, per_job) in &fs.runs {
        let mut ids: BTreeSet<&str> = BTreeSet::new();
        for runs in per_job.values() {
            for run in runs {
                if !ids.insert(run.id.as_str()) {
                    r.violation(format!("node {node}: run id {} appears twice", run.id));
                }
            }
        }
        let sched = scheduled_runs(per_job, e.firing);
        let view = views.entry(*node).or_default();
        for (job, slots) in sched {
            for (at, runs) in slots {
                if at < from || at > to {
                    continue;
                }
                slots_judged += 1;
                if runs.len() > 1 {
                    let desc: Vec<String> = runs.iter().map(|x| format!("{} by {:?}", x.status, x.node_id)).collect();
                    r.violation(format!("node {node}: job {job} slot {at} has {} runs: {desc:?}", runs.len()));
                }
                let mut v: Vec<(String, String)> = runs.iter().map(|x| (x.id.clone(), x.status.clone())).collect();
                v.sort();
                view.insert((job.to_string(), at), v);
            }
        }
    }
    if let Some((first_node, first)) = views.iter().next() {
        for (node, view) in views.iter().skip(1) {
            let keys: BTreeSet<&(String, i64)> = first.keys().chain(view.keys()).collect();
            for k in keys {
                let a = first.get(k);
                let b = view.get(k);
                if a != b {
                    r.violation(format!(
                        "job {} slot {}: node {first_node} has {a:?}, node {node} has {b:?}",
                        k.0, k.1
                    ));
                }
            }
        }
    }
    let changes = e.history.shard_changes.len();
    r.summary = format!(
        "{} slot records compared over {} nodes; {} shard changes observed in {} rounds",
        slots_judged,
        views.len(),
        changes,
        e.history.observer_rounds
    );
    r.figures = serde_json::json!({ "slot_records": slots_judged, "shard_changes": changes, "observer_rounds": e.history.observer_rounds });
    r
}
