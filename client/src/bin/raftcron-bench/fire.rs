//! The fire scenario: jobs aimed at the sink so the cluster fires F times a second; lateness
//! (received minus `X-Raftcron-Scheduled-At`), duplicates and misses over a window of whole
//! seconds; CPU and RSS of every node. And two references in the same run, so the ratio is
//! honest: the unreplicated baseline (an in-process tokio + reqwest loop sending the same slots
//! to the same sink) and the burst floor (prebuilt requests on connections opened ahead, see
//! [`floor`]).
//!
//! Patterns: "aligned" is F every-second jobs, one burst of F fires at each whole second.
//! "spread" is F x P jobs, each every P seconds at its own second field and its own millisecond
//! offset (`+<n>ms`), so the F fires of a second are spread evenly over it. "seconds" is the
//! same jobs without the offsets: F fires a second from different second fields, still a burst
//! at each whole second.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use raftcron_client::CreateJob;

use crate::args::Pattern;
use crate::hist::Latency;
use crate::nodes::Nodes;
use crate::procfs::{rss_kib, CpuMeter};
use crate::progress::{self, Counters};
use crate::report::Row;
use crate::sink::{now_us, Sink};
use crate::slots::{tally, Every, Expected, Record};
use crate::{load, CREATE_CONCURRENCY};

/// Seconds between the last job created and the first slot counted (claims run 2 s ahead).
const WARM_UP_S: i64 = 3;
/// Longest wait for late fires after the window.
const MAX_GRACE: Duration = Duration::from_secs(30);

/// One fire case.
#[derive(Debug, Clone, Copy)]
pub struct Case {
    pub rate: u32,
    pub pattern: Pattern,
    pub period: u32,
    pub window_s: u64,
}

impl Case {
    fn name(&self) -> String {
        match self.pattern {
            Pattern::Aligned => format!("aligned {}/s", self.rate),
            Pattern::Spread => format!("spread/{}s {}/s", self.period, self.rate),
            Pattern::Seconds => format!("seconds/{}s {}/s", self.period, self.rate),
        }
    }

    /// The schedule of job `i`. Spread: the jobs of one second are `i % P` alike, and the
    /// `i / P`-th of them fires `(i / P) x 1000 / F` ms into it.
    fn every(&self, i: u64) -> Every {
        let period = u64::from(self.period_of());
        let offset = (i % period) as u32;
        match self.pattern {
            Pattern::Aligned => Every { period: 1, offset: 0, ms: 0 },
            Pattern::Seconds => Every { period: self.period_of(), offset, ms: 0 },
            Pattern::Spread => {
                let ms = ((i / period) * 1000 / u64::from(self.rate.max(1))).min(999) as u32;
                Every { period: self.period_of(), offset, ms }
            }
        }
    }

    /// Seconds between two slots of one job.
    fn period_of(&self) -> u32 {
        match self.pattern {
            Pattern::Aligned => 1,
            Pattern::Spread | Pattern::Seconds => self.period.max(1),
        }
    }

    fn jobs(&self) -> u64 {
        u64::from(self.rate) * u64::from(self.period_of())
    }
}

/// Runs one case against the cluster; `cleanup` deletes its jobs afterwards.
pub async fn cluster_case(nodes: &Nodes, sink: &Sink, case: Case, cleanup: bool) -> Result<Row> {
    sink.clear();
    let term = nodes.term().await;
    let clients = nodes.clients()?;
    let created: Arc<Mutex<HashMap<String, Every>>> = Arc::default();
    let url = sink.url("fire");
    let (c2, made) = (clients.clone(), created.clone());
    let label = format!("fire {}: creating {} jobs", case.name(), case.jobs());
    let out = load::run(&label, CREATE_CONCURRENCY, Duration::from_secs(1800), case.jobs(), move |w, n| {
        let client = c2[w % c2.len()].clone();
        let every = case.every(n);
        let job = CreateJob {
            name: format!("bench-fire-{n}"),
            url: url.clone(),
            method: "POST".into(),
            cron_expression: every.cron(),
            timeout_seconds: Some(5),
            max_retries: Some(0),
            ..CreateJob::default()
        };
        let made = made.clone();
        async move {
            let job = client.create_job(&job).await.map_err(|e| e.to_string())?;
            if let Ok(mut m) = made.lock() {
                m.insert(job.id.to_string(), every);
            }
            Ok(())
        }
    })
    .await;
    let jobs: HashMap<String, Every> = created.lock().map(|m| m.clone()).unwrap_or_default();
    let from_s = now_us().div_euclid(1_000_000) + 1 + WARM_UP_S;
    let expected = Expected { jobs, from_s, to_s: from_s + case.window_s as i64 };
    let (records, cpu, rss) = watch_window(nodes, sink, &expected, &case.name()).await;
    let mut row = row_of(&case.name(), &expected, &records, case.window_s);
    row.extra.insert("create_errors".into(), out.errors.into());
    row.extra.insert("sink_malformed".into(), sink.malformed().into());
    row.extra.insert("sink_dropped".into(), sink.dropped().into());
    for (i, (c, r)) in cpu.iter().zip(&rss).enumerate() {
        if let Some(c) = c {
            row.extra.insert(format!("cpu_pct_n{}", i + 1), (*c).into());
        }
        if let Some(r) = r {
            row.extra.insert(format!("rss_mib_n{}", i + 1), (*r / 1024).into());
        }
    }
    let row = nodes.with_elections(row, term).await;
    if cleanup {
        delete_all(nodes, expected.jobs.keys().cloned().collect()).await;
    }
    Ok(row)
}

/// Waits out the window (and late fires), sampling CPU and the largest RSS of every node.
async fn watch_window(
    nodes: &Nodes,
    sink: &Sink,
    expected: &Expected,
    name: &str,
) -> (Vec<Record>, Vec<Option<f64>>, Vec<Option<u64>>) {
    let counters = Arc::new(Counters::default());
    let window = Duration::from_secs((expected.to_s - expected.from_s).max(0) as u64);
    let _p = progress::show(format!("fire {name}: receiving"), counters.clone(), window + MAX_GRACE * 2);
    sleep_until_us(expected.from_s * 1_000_000).await;
    let cpu = CpuMeter::start(&nodes.pids);
    let mut rss: Vec<Option<u64>> = vec![None; nodes.pids.len()];
    let secs = expected.to_s - expected.from_s;
    for _ in 0..secs.max(0) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        counters.ops.store(sink.len() as u64, std::sync::atomic::Ordering::Relaxed);
        for (max, pid) in rss.iter_mut().zip(&nodes.pids) {
            if let Some(k) = pid.and_then(rss_kib) {
                *max = Some(max.unwrap_or(0).max(k));
            }
        }
    }
    sleep_until_us(expected.to_s * 1_000_000).await;
    let cpu = cpu.percent();
    // Late fires: poll until none is missing, nothing new came for 3 s, or the grace ends.
    let mut last_len = usize::MAX;
    let mut quiet = 0;
    for _ in 0..MAX_GRACE.as_secs() {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let records = sink.records();
        let (t, _) = tally(expected, &records);
        if t.misses == 0 && t.expected > 0 {
            break;
        }
        quiet = if records.len() == last_len { quiet + 1 } else { 0 };
        last_len = records.len();
        if quiet >= 3 {
            break;
        }
    }
    (sink.records(), cpu, rss)
}

async fn sleep_until_us(at_us: i64) {
    let wait = at_us - now_us();
    if wait > 0 {
        tokio::time::sleep(Duration::from_micros(wait as u64)).await;
    }
}

/// The report row of a window's records.
fn row_of(name: &str, expected: &Expected, records: &[Record], window_s: u64) -> Row {
    let (t, lateness) = tally(expected, records);
    let mut hist = Latency::new();
    for us in &lateness {
        hist.record_micros(*us);
    }
    let mut row = Row::new("fire", name);
    row.ops = lateness.len() as u64;
    row.errors = t.duplicates + t.misses + t.unexpected;
    row.seconds = window_s as f64;
    row.rate = row.ops as f64 / row.seconds.max(1e-9);
    row.latency = hist.summary();
    row.with("jobs", expected.jobs.len() as u64)
        .with("expected", t.expected)
        .with("received", t.received)
        .with("duplicates", t.duplicates)
        .with("misses", t.misses)
        .with("unexpected", t.unexpected)
        .with("early", t.early)
        .with("max_early_ms", t.max_early_us as f64 / 1000.0)
}

/// The unreplicated baseline of `case`: the same slots, sent by a plain tokio + reqwest loop
/// (the node's executor settings: no proxy, a pool, 10 s connect timeout) to the same sink.
pub async fn baseline(sink: &Sink, case: Case) -> Result<Row> {
    sink.clear();
    let jobs: HashMap<String, Every> = (0..case.jobs()).map(|i| (format!("baseline-{i}"), case.every(i))).collect();
    let from_s = now_us().div_euclid(1_000_000) + 2;
    let expected = Expected { jobs, from_s, to_s: from_s + case.window_s as i64 };
    let http = reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(10))
        .pool_idle_timeout(Duration::from_secs(30))
        .timeout(Duration::from_secs(5))
        .build()?;
    let url = sink.url("baseline");
    let counters = Arc::new(Counters::default());
    let window = Duration::from_secs(case.window_s);
    let name = format!("baseline {}", case.name());
    let progress = progress::show(name.clone(), counters.clone(), window + MAX_GRACE);
    for s in expected.from_s..expected.to_s {
        // The second's slots in order of their instants; one wake-up per instant.
        let mut due: Vec<(i64, &String)> = expected.due_at(s).map(|(job, every)| (every.at_us(s), job)).collect();
        due.sort_unstable();
        let mut woke_for = i64::MIN;
        for (at_us, job) in due {
            if at_us != woke_for {
                sleep_until_us(at_us).await;
                woke_for = at_us;
            }
            let stamp = stamp_of(at_us);
            let req = http
                .post(&url)
                .header("Idempotency-Key", format!("{job}-{s}"))
                .header("X-Raftcron-Job-Id", job.as_str())
                .header("X-Raftcron-Scheduled-At", stamp.as_str())
                .header("X-Raftcron-Attempt", "1");
            let counters = counters.clone();
            tokio::spawn(async move {
                let ok = req.send().await.is_ok_and(|r| r.status().is_success());
                let c = if ok { &counters.ops } else { &counters.errors };
                c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            });
        }
    }
    // The last second's requests are bounded by their 5 s timeout.
    for _ in 0..60 {
        let (t, _) = tally(&expected, &sink.records());
        if t.misses == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(progress);
    Ok(row_of(&name, &expected, &sink.records(), case.window_s))
}

/// Longest wait for the sink's answer to one request of the floor.
const FLOOR_ANSWER: Duration = Duration::from_secs(5);

/// The burst floor of `case`: the same slots, written to the same sink as prebuilt HTTP/1.1
/// requests on connections opened ahead of time, one task per connection woken by a tokio timer
/// at the slot's instant. At the instant nothing happens but that wake-up, one `write` and the
/// sink's own work: no client library, no connection set-up, no request building. Whatever
/// lateness it shows, no sender on this machine can beat with the same sink.
///
/// Connection `c` carries the jobs `c * period .. (c + 1) * period`, of which exactly one is due
/// each second, so a burst of F fires uses F connections.
pub async fn floor(sink: &Sink, case: Case) -> Result<Row> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    sink.clear();
    let period = u64::from(case.period_of());
    let jobs: HashMap<String, Every> = (0..case.jobs()).map(|i| (format!("floor-{i}"), case.every(i))).collect();
    let from_s = now_us().div_euclid(1_000_000) + 3;
    let expected = Expected { jobs, from_s, to_s: from_s + case.window_s as i64 };
    let addr = sink.addr;
    let counters = Arc::new(Counters::default());
    let name = format!("floor {}", case.name());
    let progress = progress::show(name.clone(), counters.clone(), Duration::from_secs(case.window_s) + MAX_GRACE);
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..case.jobs() / period {
        let lane: Vec<(String, Every)> =
            (c * period..(c + 1) * period).map(|i| (format!("floor-{i}"), case.every(i))).collect();
        let (counters, to_s) = (counters.clone(), expected.to_s);
        tasks.spawn(async move {
            let mut stream = tokio::net::TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            let mut answer = vec![0u8; 4096];
            for s in from_s..to_s {
                let Some((job, every)) = lane.iter().find(|(_, e)| e.due(s)) else { continue };
                let at_us = every.at_us(s);
                let stamp = stamp_of(at_us);
                let request = format!(
                    "POST /floor HTTP/1.1\r\nHost: {addr}\r\nIdempotency-Key: {job}-{s}\r\n\
                     X-Raftcron-Job-Id: {job}\r\nX-Raftcron-Scheduled-At: {stamp}\r\n\
                     X-Raftcron-Attempt: 1\r\nContent-Length: 0\r\n\r\n"
                );
                sleep_until_us(at_us).await;
                stream.write_all(request.as_bytes()).await?;
                // The sink answers 200 with an empty body: read up to the end of the head.
                let mut got = 0;
                let read = async {
                    for _ in 0..64 {
                        let n = stream.read(&mut answer[got..]).await?;
                        got += n;
                        if n == 0 || answer[..got].windows(4).any(|w| w == b"\r\n\r\n") || got == answer.len() {
                            break;
                        }
                    }
                    anyhow::Ok(())
                };
                tokio::time::timeout(FLOOR_ANSWER, read).await??;
                counters.ops.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            anyhow::Ok(())
        });
    }
    let mut failed = 0u64;
    while let Some(r) = tasks.join_next().await {
        if !matches!(r, Ok(Ok(()))) {
            failed += 1;
        }
    }
    drop(progress);
    let mut row = row_of(&name, &expected, &sink.records(), case.window_s);
    row.extra.insert("failed_connections".into(), failed.into());
    Ok(row)
}

/// `X-Raftcron-Scheduled-At` of the instant `at_us` (microseconds since the epoch).
fn stamp_of(at_us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(at_us)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Deletes `ids` (64 at a time), for attached clusters.
pub async fn delete_all(nodes: &Nodes, ids: Vec<String>) {
    let Ok(clients) = nodes.clients() else { return };
    let ids = Arc::new(ids);
    let total = ids.len() as u64;
    let ids2 = ids.clone();
    let out = load::run("deleting the jobs", CREATE_CONCURRENCY, Duration::from_secs(1800), total, move |w, n| {
        let client = clients[w % clients.len()].clone();
        let id = ids2.get(n as usize).and_then(|s| s.parse::<uuid::Uuid>().ok());
        async move {
            match id {
                Some(id) => client.delete_job(id).await.map_err(|e| e.to_string()),
                None => Ok(()),
            }
        }
    })
    .await;
    if out.errors > 0 {
        progress::note(&format!("{} of {total} deletes failed: {:?}", out.errors, out.first_error));
    }
}
