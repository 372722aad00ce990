//! The failover scenario (local clusters only): under a steady write load and every-second
//! jobs firing at the sink, kill -9 the leader and time (a) the first write acknowledged among
//! those sent after the kill and (b) the first fire received for a job whose shard the dead
//! leader owned. The node is restarted and the cluster rebalanced before the next round, and
//! left to settle for `--settle` seconds (0: the next kill as soon as the shards are spread).
//! Afterwards every slot of the fire jobs over all the rounds is accounted for: each must have
//! arrived, once, except that a slot the dead leader was sending when it died may arrive again
//! with the same `Idempotency-Key` (the crash window of docs/design/firing.md). And every slot
//! of the dead leader's jobs from [`AROUND_KILL_BEFORE_S`] before each kill to
//! [`AROUND_KILL_AFTER_S`] after it is timed, not only the first: how late each arrived.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use raftcron_client::CreateJob;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::api::idle_job;
use crate::args::FailoverArgs;
use crate::hist::{median, Latency};
use crate::local::{LocalCluster, FORM_TIMEOUT};
use crate::nodes::Nodes;
use crate::progress::note;
use crate::report::Row;
use crate::sink::{now_us, Sink};
use crate::slots::{tally, Every, Expected, Record};
use crate::{load, CREATE_CONCURRENCY};

/// Longest wait for the first write and fire after a kill.
const ROUND_LIMIT: Duration = Duration::from_secs(30);
/// Longest wait for the shards to be spread over every node again.
const REBALANCE_LIMIT: Duration = Duration::from_secs(40);
/// The slots of a dead leader's jobs whose lateness is reported: due from this many seconds
/// before its kill...
pub const AROUND_KILL_BEFORE_S: i64 = 2;
/// ...to this many after it.
pub const AROUND_KILL_AFTER_S: i64 = 5;
/// A slot of a dead leader's job later than this is counted apart (the target for the first
/// fire of its shards).
const LATE_US: i64 = 1_500_000;

/// The shard of a job, as the node computes it (docs/design/firing.md).
pub fn shard_of(job: &Uuid, shards: u32) -> u32 {
    let digest = Sha256::digest(job.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(first) % u64::from(shards.max(1))) as u32
}

/// When writes sent after the kill are first acknowledged.
#[derive(Debug, Default)]
struct Watch {
    kill_at: Option<Instant>,
    first_ack: Option<Instant>,
}

pub async fn run(c: &mut LocalCluster, sink: &Sink, a: &FailoverArgs, rows: &mut Vec<Row>) -> Result<()> {
    let nodes = Nodes::of_local(c);
    let clients = nodes.clients()?;
    let jobs = create_fire_jobs(&nodes, sink, a.fire_jobs).await?;
    let shard_count = nodes.any()?.shards().await?.shard_count;

    let stop = Arc::new(AtomicBool::new(false));
    let watch: Arc<Mutex<Watch>> = Arc::default();
    let mut writers = Vec::new();
    for w in 0..a.writers.max(1) {
        let (stop, watch, clients) = (stop.clone(), watch.clone(), clients.clone());
        writers.push(tokio::spawn(async move {
            // Bounded by the stop flag and, as a guard, by a count.
            for n in 0..100_000_000u64 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let client = clients[(w + n as usize) % clients.len()].clone();
                let sent = Instant::now();
                let r = tokio::time::timeout(Duration::from_secs(2), client.create_job(&idle_job(n))).await;
                if matches!(r, Ok(Ok(_))) {
                    if let Ok(mut wt) = watch.lock() {
                        if wt.kill_at.is_some_and(|k| sent >= k) && wt.first_ack.is_none() {
                            wt.first_ack = Some(Instant::now());
                        }
                    }
                } else {
                    // A dead node refuses at once; do not spin on it.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }));
    }

    let (mut write_s, mut fire_s) = (Vec::new(), Vec::new());
    let (mut write_h, mut fire_h) = (Latency::new(), Latency::new());
    let mut kills: Vec<Kill> = Vec::new();
    let from_s = now_us().div_euclid(1_000_000) + 2;
    for round in 1..=a.rounds {
        let leader = c.wait_ready(FORM_TIMEOUT).await?;
        wait_balanced(&nodes, c.running().len()).await;
        tokio::time::sleep(Duration::from_secs(a.settle)).await;
        let shards = nodes.any()?.shards().await?;
        let owned: HashSet<u32> = shards.shards.iter().filter(|s| s.node_id == Some(leader)).map(|s| s.shard).collect();
        let dead: HashSet<String> =
            jobs.iter().filter(|j| owned.contains(&shard_of(j, shard_count))).map(|j| j.to_string()).collect();
        if let Ok(mut wt) = watch.lock() {
            *wt = Watch { kill_at: Some(Instant::now()), first_ack: None };
        }
        let kill_us = now_us();
        let t0 = Instant::now();
        c.kill(leader)?;
        let mut first_fire_us = None;
        let mut first_ack = None;
        for _ in 0..(ROUND_LIMIT.as_millis() / 10) {
            if first_fire_us.is_none() {
                // A request already in the kernel when the process died may land a moment later.
                first_fire_us = sink.first_after(kill_us + 1000, |j| dead.contains(j));
            }
            first_ack = watch.lock().ok().and_then(|w| w.first_ack);
            if first_ack.is_some() && first_fire_us.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        kills.push(Kill { at_us: kill_us, jobs: dead.clone() });
        let w = first_ack.map(|f| f.duration_since(t0));
        let f = first_fire_us.map(|us| Duration::from_micros((us - kill_us).max(0) as u64));
        note(&format!(
            "  failover round {round}/{}: killed leader node {leader} ({} shards, {} jobs): first write after {}, first fire of its shards after {}",
            a.rounds,
            owned.len(),
            dead.len(),
            w.map(|d| format!("{:.3} s", d.as_secs_f64())).unwrap_or_else(|| "none in 30 s".into()),
            f.map(|d| format!("{:.3} s", d.as_secs_f64())).unwrap_or_else(|| "none in 30 s".into()),
        ));
        if let Some(d) = w {
            write_s.push(d.as_secs_f64());
            write_h.record(d);
        }
        if let Some(d) = f {
            fire_s.push(d.as_secs_f64());
            fire_h.record(d);
        }
        c.spawn(leader)?;
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        let _ = w.await;
    }
    // Late slots of the last round arrive within a lease or two; wait for them, then judge every
    // slot from the first round to a few seconds ago.
    let to_s = now_us().div_euclid(1_000_000) - 1;
    c.wait_ready(FORM_TIMEOUT).await?;
    tokio::time::sleep(SETTLE).await;
    let expected = Expected {
        jobs: jobs.iter().map(|j| (j.to_string(), Every { period: 1, offset: 0, ms: 0 })).collect(),
        from_s,
        to_s,
    };
    let records = sink.records();
    let (t, _) = tally(&expected, &records);
    let crash_window = crash_window_resends(&records, &kills, from_s, to_s);
    note(&format!(
        "  slots over the {} kills: {} expected, {} misses, {} duplicates ({} of them crash-window re-sends)",
        a.rounds, t.expected, t.misses, t.duplicates, crash_window
    ));
    let mut row = Row::new("failover", "slots through the kills");
    row.ops = t.expected;
    rows.push(
        row.with("misses", t.misses)
            .with("duplicates", t.duplicates)
            .with("crash_window_resends", crash_window)
            .with("other_duplicates", t.duplicates.saturating_sub(crash_window))
            .with("early", t.early)
            .with("max_early_ms", t.max_early_us as f64 / 1000.0),
    );
    let (late_h, late) = around_kills(&records, &kills);
    let mut row = Row::new("failover", "dead leader's slots, kill -2 s to +5 s");
    row.latency = late_h.summary();
    row.ops = row.latency.as_ref().map_or(0, |s| s.count);
    note(&format!(
        "  the dead leaders' slots from {AROUND_KILL_BEFORE_S} s before each kill to {AROUND_KILL_AFTER_S} s after: {} arrived, {} of them over {:.1} s late",
        row.ops,
        late.len(),
        LATE_US as f64 / 1e6
    ));
    for s in late.iter().take(5) {
        note(&format!(
            "    {:.3} s late: job {} at {} (kill {})",
            s.late_us as f64 / 1e6,
            s.job,
            s.scheduled_at(),
            s.kill
        ));
    }
    let listed: Vec<serde_json::Value> = late.iter().take(LATE_SLOTS_LISTED).map(LateSlot::json).collect();
    rows.push(row.with("late_over_1_5_s", late.len() as u64).with("late_slots", listed));
    let rounds = u64::from(a.rounds);
    for (case, samples, h) in
        [("first write", &write_s, &write_h), ("first fire of dead leader's shard", &fire_s, &fire_h)]
    {
        let mut row = Row::new("failover", case);
        row.ops = samples.len() as u64;
        row.errors = rounds - samples.len() as u64;
        row.latency = h.summary();
        if let Some(m) = median(samples) {
            row.extra.insert("median_s".into(), m.into());
        }
        rows.push(row.with("rounds", rounds));
        crate::print_last(rows);
    }
    Ok(())
}

/// How long after the last round late slots may still arrive.
const SETTLE: Duration = Duration::from_secs(8);

/// One leader kill: when, and the jobs whose shards the dead leader owned.
struct Kill {
    at_us: i64,
    jobs: HashSet<String>,
}

/// Repeated receipts (same `Idempotency-Key`) of slots of a killed leader's jobs that first
/// arrived before its kill and again after it: the dead leader sent them and died before their
/// result was recorded, so the next owner sent them again (at-least-once delivery, the crash
/// window). Any other repeat is a duplicate. (Until run 20 a repeat counted here only if its
/// slot was due in the 1.5 s before the kill; a leader whose result writes were still being
/// retried after the previous failover held results longer than that.)
fn crash_window_resends(records: &[Record], kills: &[Kill], from_s: i64, to_s: i64) -> u64 {
    let mut first: HashMap<&str, i64> = HashMap::new();
    let mut n = 0;
    for r in records {
        let second = r.scheduled_us.div_euclid(1_000_000);
        if second < from_s || second >= to_s {
            continue;
        }
        let Some(&before) = first.get(r.key.as_str()) else {
            first.insert(r.key.as_str(), r.received_us);
            continue;
        };
        let across = |k: &Kill| k.jobs.contains(&r.job) && before < k.at_us && r.received_us >= k.at_us;
        if kills.iter().any(across) {
            n += 1;
        }
    }
    n
}

/// How late the first receipt of each slot of a killed leader's jobs was (slots due from
/// [`AROUND_KILL_BEFORE_S`] before the kill to [`AROUND_KILL_AFTER_S`] after it), and how many
/// were later than [`LATE_US`]. A slot that never arrived is a miss, counted by the tally.
fn around_kills(records: &[Record], kills: &[Kill]) -> (Latency, Vec<LateSlot>) {
    let mut first: HashMap<(&str, i64), i64> = HashMap::new();
    for r in records {
        let e = first.entry((r.job.as_str(), r.scheduled_us)).or_insert(r.received_us);
        *e = (*e).min(r.received_us);
    }
    let (mut h, mut over) = (Latency::new(), Vec::new());
    for ((job, scheduled_us), received_us) in first {
        let near = kills.iter().position(|k| {
            k.jobs.contains(job)
                && scheduled_us >= k.at_us - AROUND_KILL_BEFORE_S * 1_000_000
                && scheduled_us <= k.at_us + AROUND_KILL_AFTER_S * 1_000_000
        });
        if let Some(kill) = near {
            let late = (received_us - scheduled_us).max(0);
            h.record_micros(late as u64);
            if late > LATE_US {
                over.push(LateSlot { job: job.to_string(), scheduled_us, late_us: late, kill: kill + 1 });
            }
        }
    }
    over.sort_by(|a, b| b.late_us.cmp(&a.late_us).then(a.scheduled_us.cmp(&b.scheduled_us)));
    (h, over)
}

/// A slot of a dead leader's job that arrived more than [`LATE_US`] late.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LateSlot {
    job: String,
    scheduled_us: i64,
    late_us: i64,
    /// Which kill (1, 2, ...) it was near.
    kill: usize,
}

impl LateSlot {
    /// Its instant, RFC 3339 in UTC.
    fn scheduled_at(&self) -> String {
        let at = chrono::DateTime::from_timestamp_micros(self.scheduled_us).unwrap_or_default();
        at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "job": self.job,
            "scheduled_at": self.scheduled_at(),
            "late_s": self.late_us as f64 / 1e6,
            "kill": self.kill,
        })
    }
}

/// How many late slots the report lists (the latest first).
const LATE_SLOTS_LISTED: usize = 50;

/// Every-second jobs firing at the sink; returns their ids.
async fn create_fire_jobs(nodes: &Nodes, sink: &Sink, n: u32) -> Result<Vec<Uuid>> {
    let clients = nodes.clients()?;
    let ids: Arc<Mutex<Vec<Uuid>>> = Arc::default();
    let (ids2, url) = (ids.clone(), sink.url("failover"));
    load::run(
        "failover: creating fire jobs",
        CREATE_CONCURRENCY,
        Duration::from_secs(600),
        u64::from(n),
        move |w, n| {
            let client = clients[w % clients.len()].clone();
            let job = CreateJob {
                name: format!("bench-failover-{n}"),
                url: url.clone(),
                method: "POST".into(),
                cron_expression: "* * * * * *".into(),
                timeout_seconds: Some(5),
                max_retries: Some(0),
                ..CreateJob::default()
            };
            let ids = ids2.clone();
            async move {
                let job = client.create_job(&job).await.map_err(|e| e.to_string())?;
                if let Ok(mut v) = ids.lock() {
                    v.push(job.id);
                }
                Ok(())
            }
        },
    )
    .await;
    Ok(ids.lock().map(|v| v.clone()).unwrap_or_default())
}

/// Waits (bounded) until every running node owns shards and fires are being received.
async fn wait_balanced(nodes: &Nodes, running: usize) {
    let deadline = Instant::now() + REBALANCE_LIMIT;
    for _ in 0..(REBALANCE_LIMIT.as_millis() / 200) {
        if Instant::now() >= deadline {
            break;
        }
        if let Ok(s) = async { nodes.any()?.shards().await.map_err(anyhow::Error::from) }.await {
            let owners = s.per_node.values().filter(|n| **n > 0).count();
            let unowned = s.shards.iter().any(|x| x.node_id.is_none());
            if owners >= running && !unowned {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    note("  (the shards were not spread over every node within 40 s; going on)");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_dead_leaders_slots_sent_before_its_kill_and_again_after_count_as_crash_window_resends() {
        let rec = |key: &str, job: &str, s: i64, received_ms: i64| Record {
            key: key.into(),
            job: job.into(),
            scheduled_us: s * 1_000_000,
            received_us: s * 1_000_000 + received_ms * 1000,
        };
        let kill = Kill { at_us: 100 * 1_000_000 + 300_000, jobs: HashSet::from(["a".to_string()]) };
        let records = [
            rec("a-100", "a", 100, 5),
            rec("a-100", "a", 100, 1_400), // re-sent by the next owner: the crash window
            rec("a-97", "a", 97, 5),
            rec("a-97", "a", 97, 4_500), // held longer before the kill, still the crash window
            rec("b-100", "b", 100, 5),
            rec("b-100", "b", 100, 1_400), // not the dead leader's job: a duplicate
            rec("a-98", "a", 98, 5),
            rec("a-98", "a", 98, 10), // both before the kill: a duplicate
            rec("a-101", "a", 101, 5),
            rec("a-101", "a", 101, 9), // both after: a duplicate
            rec("a-102", "a", 102, 5),
        ];
        assert_eq!(crash_window_resends(&records, &[kill], 90, 110), 2);
    }

    #[test]
    fn every_slot_of_a_dead_leaders_jobs_near_its_kill_is_timed_by_its_first_receipt() {
        let rec = |job: &str, s: i64, late_ms: i64| Record {
            key: format!("{job}-{s}"),
            job: job.into(),
            scheduled_us: s * 1_000_000,
            received_us: s * 1_000_000 + late_ms * 1000,
        };
        let kill = Kill { at_us: 100 * 1_000_000 + 300_000, jobs: HashSet::from(["a".to_string()]) };
        let records = [
            rec("a", 97, 4),      // more than 2 s before the kill: not counted
            rec("a", 99, 3),      // sent by the leader before it died
            rec("a", 101, 1_200), // fired late by the next owner
            rec("a", 101, 1_900), // a second receipt: the first one counts
            rec("a", 102, 2_500), // later than 1.5 s
            rec("a", 106, 5),     // more than 5 s after: not counted
            rec("b", 101, 9_000), // not the dead leader's job
        ];
        let (h, late) = around_kills(&records, &[kill]);
        let s = h.summary().expect("three slots");
        assert_eq!(s.count, 3);
        assert_eq!(late, vec![LateSlot { job: "a".into(), scheduled_us: 102_000_000, late_us: 2_500_000, kill: 1 }]);
        assert_eq!(late[0].json()["scheduled_at"], "1970-01-01T00:01:42.000Z");
        assert!((s.max_ms - 2_500.0).abs() < 5.0, "{}", s.max_ms);
    }

    #[test]
    fn shard_is_stable_and_in_range() {
        let id = Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
        let s = shard_of(&id, 256);
        assert!(s < 256);
        assert_eq!(s, shard_of(&id, 256));
        // The first 8 bytes of SHA-256 of the id, big-endian, modulo the shard count.
        let d = Sha256::digest(id.as_bytes());
        let v = u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]]);
        assert_eq!(u64::from(s), v % 256);
        assert_eq!(shard_of(&id, 1), 0);
    }

    #[test]
    fn shard_matches_the_nodes_regression_values() {
        // node/src/model/assignment_tests.rs: these must never change.
        for (id, of_256, of_7) in [
            ("00000000-0000-0000-0000-000000000000", 213, 2),
            ("0f8e6a0c-2b1d-4c3e-9a7f-5d4c3b2a1908", 99, 1),
            ("6b1e3c2a-8d4f-4e5a-b6c7-d8e9f0a1b2c3", 32, 1),
            ("ffffffff-ffff-ffff-ffff-ffffffffffff", 9, 2),
        ] {
            let id: Uuid = id.parse().unwrap();
            assert_eq!((shard_of(&id, 256), shard_of(&id, 7)), (of_256, of_7), "{id}");
        }
    }
}
