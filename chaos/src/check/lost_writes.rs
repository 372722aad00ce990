//! No acknowledged write is lost, and no refused write appears.
//!
//! Every writer owns its jobs and issues their operations one after another. For each job, in
//! every node's final state (stale read after convergence) and in one linearizable read:
//! - created (ok) and never deleted (nor a delete attempted with an unknown outcome): present;
//! - deleted (ok): absent;
//! - its name is the value of the last acknowledged write to it, or of any write whose outcome
//!   is unknown (such a write may be applied at any time, even after a later one); never the
//!   value of a refused write, nor an older acknowledged value;
//! - a create with an unknown outcome may or may not exist; a refused create must not.
//!
//! Keys: a key whose creation was acknowledged and that was never revoked works on every node.

use std::collections::{BTreeMap, BTreeSet};

use raftcron_client::Job;

use super::{CheckResult, Evidence};
use crate::history::{Outcome, WriteOp, WriteRecord};
use crate::workload::writers::writer_prefix;

/// What the writes say about one job.
#[derive(Default)]
struct Expect<'a> {
    created_name: String,
    /// (invoked, name) of acknowledged updates.
    ok_updates: Vec<(i64, &'a str)>,
    unknown_names: BTreeSet<&'a str>,
    failed_names: BTreeSet<&'a str>,
    delete_ok: bool,
    delete_unknown: bool,
}

pub fn check(e: &Evidence<'_>) -> CheckResult {
    let mut r = CheckResult::new("no lost write");
    let Some(fs) = e.final_state else {
        return CheckResult::not_run("no lost write", "the final state could not be read");
    };
    let prefix = writer_prefix(e.config.seed);
    let writes: Vec<&WriteRecord> = e.history.writes.iter().collect();
    let mut jobs: BTreeMap<&str, Expect<'_>> = BTreeMap::new();
    let mut unknown_creates: BTreeSet<&str> = BTreeSet::new();
    let mut failed_creates: BTreeSet<&str> = BTreeSet::new();
    let mut all_values: BTreeSet<&str> = BTreeSet::new();
    for w in &writes {
        match &w.op {
            WriteOp::CreateJob { name, job } => {
                all_values.insert(name);
                match (&w.outcome, job) {
                    (Outcome::Ok, Some(id)) => {
                        jobs.entry(id).or_default().created_name = name.clone();
                    }
                    (Outcome::Unknown(_), _) | (Outcome::Ok, None) => {
                        unknown_creates.insert(name);
                    }
                    (Outcome::Failed(_), _) => {
                        failed_creates.insert(name);
                    }
                }
            }
            WriteOp::UpdateJob { job, name } => {
                all_values.insert(name);
                let x = jobs.entry(job).or_default();
                match w.outcome {
                    Outcome::Ok => x.ok_updates.push((w.invoked_ms, name)),
                    Outcome::Unknown(_) => {
                        x.unknown_names.insert(name);
                    }
                    Outcome::Failed(_) => {
                        x.failed_names.insert(name);
                    }
                }
            }
            WriteOp::DeleteJob { job } => {
                let x = jobs.entry(job).or_default();
                match w.outcome {
                    Outcome::Ok => x.delete_ok = true,
                    Outcome::Unknown(_) => x.delete_unknown = true,
                    Outcome::Failed(_) => {}
                }
            }
            _ => {}
        }
    }
    let acked = writes
        .iter()
        .filter(|w| {
            w.outcome.is_ok()
                && matches!(w.op, WriteOp::CreateJob { .. } | WriteOp::UpdateJob { .. } | WriteOp::DeleteJob { .. })
        })
        .count();
    let mut views: Vec<(String, &Vec<Job>)> = fs.jobs.iter().map(|(n, js)| (format!("node {n} (stale)"), js)).collect();
    views.push(("linearizable read".to_string(), &fs.jobs_linearizable));
    let mut resolved_unknown = 0usize;
    for (view, list) in &views {
        let by_id: BTreeMap<String, &Job> = list.iter().map(|j| (j.id.to_string(), j)).collect();
        for (id, x) in &jobs {
            if x.created_name.is_empty() {
                continue; // updates to a job whose create we did not see acknowledged: none by design
            }
            let present = by_id.get(*id);
            match present {
                Some(_) if x.delete_ok => {
                    r.violation(format!("{view}: job {id} is present after an acknowledged delete"))
                }
                None if !x.delete_ok && !x.delete_unknown => {
                    r.violation(format!("{view}: job {id} ({}) was created (acknowledged) and is gone", x.created_name))
                }
                Some(j) => {
                    let last_ok =
                        x.ok_updates.iter().max_by_key(|(t, _)| *t).map(|(_, n)| *n).unwrap_or(&x.created_name);
                    let name = j.name.as_str();
                    if name != last_ok && !x.unknown_names.contains(name) {
                        if x.failed_names.contains(name) {
                            r.violation(format!("{view}: job {id} shows {name:?}, the value of a refused write"));
                        } else {
                            r.violation(format!(
                                "{view}: job {id} shows {name:?}; the last acknowledged value is {last_ok:?}"
                            ));
                        }
                    }
                }
                None => {}
            }
        }
        for j in list.iter().filter(|j| j.name.starts_with(&prefix)) {
            let name = j.name.as_str();
            let id = j.id.to_string();
            if jobs.contains_key(id.as_str()) {
                continue;
            }
            if unknown_creates.contains(name) {
                resolved_unknown += 1;
            } else if failed_creates.contains(name) {
                r.violation(format!("{view}: job {id} {name:?} exists, but its create was refused"));
            } else if !all_values.contains(name) {
                r.violation(format!("{view}: job {id} {name:?} was never written"));
            }
        }
    }
    // Every view the same.
    let shape = |l: &Vec<Job>| {
        let mut v: Vec<(String, String)> = l.iter().map(|j| (j.id.to_string(), j.name.clone())).collect();
        v.sort();
        v
    };
    if let Some((first_view, first)) = views.first() {
        let base = shape(first);
        for (view, l) in views.iter().skip(1) {
            let other = shape(l);
            if other != base {
                let a: BTreeSet<_> = base.iter().collect();
                let b: BTreeSet<_> = other.iter().collect();
                let diff: Vec<_> = a.symmetric_difference(&b).take(4).collect();
                r.violation(format!("{view} differs from {first_view} after convergence: {diff:?}"));
            }
        }
    }
    for (id, node, status) in &fs.keys.live_refused {
        r.violation(format!("key {id} (created, acknowledged, never revoked) is refused by node {node} ({status})"));
    }
    r.summary = format!(
        "{} writes acknowledged, {} jobs tracked in {} views; {} unknown creates found applied; {} live keys checked",
        acked,
        jobs.len(),
        views.len(),
        resolved_unknown,
        fs.keys.live_checked
    );
    r.figures = serde_json::json!({ "acknowledged": acked, "jobs": jobs.len(), "views": views.len() });
    r
}
