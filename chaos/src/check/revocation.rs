//! A revoked key is refused by every healthy node within its bound.
//!
//! After each acknowledged revoke, every node was probed with the key until it answered 401.
//! A node that no fault touched from the acknowledgement until the bound must refuse it within
//! [`REVOCATION_BOUND_MS`]. A node is touched when it was a fault's target, or when the fault
//! took the leader away (the followers then learn the revoke's commit only from the next
//! leader), from the injection until the cluster converged; such nodes are listed as excused.
//! At the end, every key whose revoke was acknowledged must be refused by every node.
//!
//! Stronger, for the nodes no fault touched: a revoke answers once every member applied it,
//! naming those that did not confirm in time (`Raftcron-Unconfirmed-Nodes`). The first request
//! to any other node, sent as the answer arrived, must be refused.

use super::{CheckResult, Evidence};
use crate::workload::keys::REVOCATION_BOUND_MS;

pub fn check(e: &Evidence<'_>) -> CheckResult {
    let name = "revocation bound";
    if !e.config.keys_workload {
        return CheckResult::not_run(name, "the key workload was not asked for");
    }
    if e.keys.unsupported {
        return CheckResult::not_run(name, "the keys route is missing on the nodes (404 no such route)");
    }
    if e.history.revocations.is_empty() {
        return CheckResult::not_run(name, "no revoke was acknowledged");
    }
    let mut r = CheckResult::new(name);
    let mut judged = 0usize;
    let mut slowest = 0i64;
    let mut confirmed_judged = 0usize;
    for rev in &e.history.revocations {
        // Every member the answer did not name had applied the revoke: its first probe, sent as
        // the answer arrived, must be refused. Nodes a fault touched are left to the bound below
        // (a node removed from the membership is not asked, and not named).
        for (node, first) in &rev.first_probe {
            if rev.unconfirmed.contains(node) || rev.excused.contains(node) {
                continue;
            }
            match first {
                Some(401) => confirmed_judged += 1,
                Some(200) => {
                    confirmed_judged += 1;
                    r.violation(format!(
                        "key {} accepted by node {node} in the first request after a revoke whose answer said \
                         every node but {:?} had applied it",
                        rev.key_id, rev.unconfirmed
                    ));
                }
                // No answer, or a 429/5xx: says nothing about the key.
                _ => {}
            }
        }
        for (node, after) in &rev.refused_after_ms {
            if rev.excused.contains(node) {
                r.excuse(format!(
                    "key {} on node {node}: a fault touched the node during the probe ({after:?} ms)",
                    rev.key_id
                ));
                continue;
            }
            judged += 1;
            match after {
                Some(ms) if *ms <= REVOCATION_BOUND_MS => slowest = slowest.max(*ms),
                Some(ms) => {
                    slowest = slowest.max(*ms);
                    r.violation(format!(
                        "key {} still accepted by healthy node {node} for {ms} ms after the revoke",
                        rev.key_id
                    ));
                }
                None => {
                    r.violation(format!("key {} never refused by healthy node {node} during the probe", rev.key_id))
                }
            }
        }
    }
    if let Some(fs) = e.final_state {
        for (id, node, status) in &fs.keys.revoked_accepted {
            r.violation(format!("key {id} (revoke acknowledged) answered {status} on node {node} at the end"));
        }
        for (id, node, status) in &fs.keys.inconclusive {
            r.excuse(format!(
                "key {id} on node {node}: neither accepted nor refused at the end ({status}), not judged"
            ));
        }
    }
    r.summary = format!(
        "{} revokes, {judged} node probes judged, slowest refusal {slowest} ms (bound {REVOCATION_BOUND_MS} ms); \
         {confirmed_judged} first requests to members that had confirmed the revoke",
        e.history.revocations.len()
    );
    r.figures = serde_json::json!({
        "revocations": e.history.revocations.len(),
        "judged": judged,
        "slowest_ms": slowest,
        "confirmed_first_probes": confirmed_judged,
    });
    r
}
