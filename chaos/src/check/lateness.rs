//! Lateness and recovery: the lateness (arrival at the sink minus scheduled instant) of each
//! slot's first delivery, as percentiles and maximum per fault kind active at the scheduled
//! instant (from injection until the cluster converged; `none` outside faults), and each
//! fault's time to converge after its heal.
//!
//! It fails only when a fault's cluster never converged within the bound; the figures are for
//! reading, never a pass/fail threshold.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{percentile, CheckResult, Evidence};

/// Lateness figures of one group.
#[derive(Debug, Clone, Serialize)]
pub struct Lateness {
    pub count: usize,
    pub p50_ms: i64,
    pub p90_ms: i64,
    pub p99_ms: i64,
    pub max_ms: i64,
    pub min_ms: i64,
}

/// The fault group a scheduled instant falls into.
pub fn group_of(e: &Evidence<'_>, at_ms: i64) -> String {
    e.history
        .faults
        .iter()
        .find(|f| at_ms >= f.start_ms && at_ms <= f.converged_ms.unwrap_or(f.end_ms))
        .map(|f| f.kind.name().to_string())
        .unwrap_or_else(|| "none".to_string())
}

/// Lateness per group over the first delivery of each slot in the window.
pub fn by_group(e: &Evidence<'_>) -> BTreeMap<String, Lateness> {
    let mut first: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
    for h in e.hits {
        if h.scheduled_ms < e.window.from_ms || h.scheduled_ms > e.window.to_ms {
            continue;
        }
        let late = h.received_ms - h.scheduled_ms;
        first.entry(h.key.as_str()).and_modify(|v| v.1 = v.1.min(late)).or_insert((h.scheduled_ms, late));
    }
    let mut groups: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for (at, late) in first.values() {
        groups.entry(group_of(e, *at)).or_default().push(*late);
        groups.entry("all".to_string()).or_default().push(*late);
    }
    groups
        .into_iter()
        .map(|(g, mut v)| {
            v.sort_unstable();
            let l = Lateness {
                count: v.len(),
                p50_ms: percentile(&v, 0.5),
                p90_ms: percentile(&v, 0.9),
                p99_ms: percentile(&v, 0.99),
                max_ms: v.last().copied().unwrap_or(0),
                min_ms: v.first().copied().unwrap_or(0),
            };
            (g, l)
        })
        .collect()
}

pub fn check(e: &Evidence<'_>) -> CheckResult {
    let mut r = CheckResult::new("lateness and recovery");
    let groups = by_group(e);
    let mut converge: Vec<serde_json::Value> = Vec::new();
    for f in &e.history.faults {
        match f.converged_ms {
            Some(c) => {
                converge.push(serde_json::json!({ "kind": f.kind, "targets": f.targets, "converge_ms": c - f.end_ms }))
            }
            None => {
                converge.push(serde_json::json!({ "kind": f.kind, "targets": f.targets, "converge_ms": null }));
                r.violation(format!(
                    "{} {:?}: the cluster was not whole again within the bound after the heal",
                    f.kind, f.targets
                ));
            }
        }
    }
    let all = groups.get("all");
    let times: Vec<i64> = e.history.faults.iter().filter_map(|f| f.converged_ms.map(|c| c - f.end_ms)).collect();
    r.summary = format!(
        "lateness p50 {} ms, p99 {} ms, max {} ms; converge after heal max {} ms",
        all.map_or(0, |l| l.p50_ms),
        all.map_or(0, |l| l.p99_ms),
        all.map_or(0, |l| l.max_ms),
        times.iter().max().copied().unwrap_or(0)
    );
    r.figures = serde_json::json!({ "lateness": groups, "converge": converge });
    r
}
