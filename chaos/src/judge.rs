//! The end of a run: turns what was recorded into facts and checks, decides the verdict, and
//! writes `report.json`, `history.json` and `timeline.svg` into the output directory.
//!
//! Reads only the recorded history, the sink's deliveries and the final state; it must not talk
//! to the cluster (the nodes are stopped by then).

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{Context, Result};

use crate::check::{self, canary, Evidence, Window};
use crate::clock::now_ms;
use crate::collect::FinalState;
use crate::config::Config;
use crate::faults::plan;
use crate::history::{History, Outcome};
use crate::report::{self, Facts, Report};
use crate::sink::Sink;
use crate::svg;
use crate::workload::firing;
use crate::workload::keys::KeyState;

/// Judges, writes the report and the picture, prints the table.
#[allow(clippy::too_many_arguments)]
pub fn finish(
    cfg: &Config,
    mut facts: Facts,
    history: &History,
    sink: &Sink,
    jobs: &[firing::FiringJob],
    final_state: Option<&FinalState>,
    window: Window,
    keys_final: &KeyState,
    scan: canary::Scan,
    shard_count: u32,
    crashes: Vec<String>,
    plan: Vec<plan::PlannedFault>,
    started: i64,
) -> Result<Report> {
    let snap = history.snapshot();
    let hits = sink.hits();
    let firing_ids: BTreeSet<&str> = jobs.iter().map(|j| j.id.as_str()).collect();
    facts.window_ms = window.to_ms - window.from_ms;
    facts.shard_count = shard_count;
    facts.firing_shards =
        jobs.iter().filter_map(|j| check::shard_of(&j.id, shard_count)).collect::<BTreeSet<u32>>().len();
    facts.expected_slots =
        jobs.iter().map(|j| j.slots(window.from_ms.max(j.created_ms + 1000), window.to_ms).len()).sum();
    let in_window: BTreeSet<(&str, i64)> = hits
        .iter()
        .filter(|h| {
            firing_ids.contains(h.job.as_str()) && h.scheduled_ms >= window.from_ms && h.scheduled_ms <= window.to_ms
        })
        .map(|h| (h.job.as_str(), h.scheduled_ms))
        .collect();
    facts.delivered_in_window = in_window.len();
    facts.fires_per_s =
        if facts.window_ms > 0 { in_window.len() as f64 * 1000.0 / facts.window_ms as f64 } else { 0.0 };
    facts.canary_headers_ok = hits.iter().all(|h| h.canary);
    facts.writes = snap.writes.len();
    facts.writes_ok = snap.writes.iter().filter(|w| w.outcome.is_ok()).count();
    facts.writes_failed = snap.writes.iter().filter(|w| matches!(w.outcome, Outcome::Failed(_))).count();
    facts.writes_unknown = snap.writes.iter().filter(|w| matches!(w.outcome, Outcome::Unknown(_))).count();
    for w in snap.writes.iter().filter(|w| w.outcome.is_ok()) {
        *facts.writes_ok_per_node.entry(w.node).or_default() += 1;
    }
    facts.reads_ok = snap.reads.values().map(|r| r.ok).sum();
    facts.reads_failed = snap.reads.values().map(|r| r.failed).sum();
    facts.keys_unsupported = keys_final.unsupported;
    facts.keys_created = keys_final.created;
    facts.keys_revoked = keys_final.revoked_count;
    facts.observer_rounds = snap.observer_rounds;
    facts.elapsed_s = (now_ms() - started) as f64 / 1000.0;
    let evidence = Evidence {
        config: cfg,
        history: &snap,
        hits: &hits,
        firing: jobs,
        final_state,
        window,
        keys: keys_final,
        canary: &scan,
        shard_count,
        crashes: &crashes,
    };
    let checks = if facts.setup_error.is_some() { Vec::new() } else { check::run_all(&evidence) };
    let invalid = report::invalid_reasons(cfg, &facts, &snap.faults, &checks);
    let verdict = report::verdict(&invalid, &checks);
    let report = Report {
        verdict,
        invalid_reasons: invalid,
        repro: cfg.repro_command(),
        config: cfg.clone(),
        facts,
        checks,
        faults: snap.faults.clone(),
        plan,
        notes: snap.notes.clone(),
    };
    write_outputs(&cfg.out, &report, &snap, &hits, started)?;
    Ok(report)
}

fn write_outputs(
    out: &Path,
    report: &Report,
    snap: &crate::history::Snapshot,
    hits: &[crate::sink::Hit],
    started: i64,
) -> Result<()> {
    let json = serde_json::to_vec_pretty(report)?;
    std::fs::write(out.join("report.json"), json).context("writing report.json")?;
    let history = serde_json::to_vec(
        &serde_json::json!({ "writes": snap.writes, "faults": snap.faults, "stops": snap.stops, "leaders": snap.leaders, "revocations": snap.revocations, "shard_changes": snap.shard_changes }),
    )?;
    std::fs::write(out.join("history.json"), history).context("writing history.json")?;
    let mut lines = Vec::with_capacity(hits.len() * 120);
    for h in hits {
        serde_json::to_writer(&mut lines, h)?;
        lines.push(b'\n');
    }
    std::fs::write(out.join("deliveries.jsonl"), lines).context("writing deliveries.jsonl")?;
    let title = format!("raftcron-chaos seed {} — {:?}", report.config.seed, report.verdict);
    let end = hits.iter().map(|h| h.received_ms).max().unwrap_or(started).max(now_ms().min(started + 10 * 3600 * 1000));
    let picture = svg::render(&title, started, end, &snap.faults, hits, &snap.leaders);
    std::fs::write(out.join("timeline.svg"), picture).context("writing timeline.svg")?;
    Ok(())
}
