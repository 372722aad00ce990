//! One run from start to verdict: lay out and start the nodes (behind the proxy when the binary
//! supports it), form the cluster, create the firing jobs, start the observer and the clients,
//! let the nemesis carry out the plan, heal, let the cluster settle, stop the clients, pause
//! the firing jobs, read the final state, stop every node, scan the data dirs, judge, and write
//! the report and the picture.
//!
//! Owns the ordering of those phases and the window of judged slots; the judging itself is in
//! [`crate::check`]. Every wait has a deadline, and every process and task started here ends
//! with the run (processes are killed when [`Processes`] drops, even on error or Ctrl-C).

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use rand::Rng;

use crate::api::{http_client, NodeApi};
use crate::check::{self, canary, Evidence, Window};
use crate::clock::now_ms;
use crate::collect::{self, FinalState};
use crate::config::Config;
use crate::faults::converge;
use crate::faults::nemesis::Nemesis;
use crate::faults::plan;
use crate::history::{History, Outcome};
use crate::observe;
use crate::procs::{BinaryFeatures, Processes};
use crate::proxy::Proxy;
use crate::report::{self, Facts, Report};
use crate::rng;
use crate::sink::Sink;
use crate::svg;
use crate::workload::keys::{self, KeyState, SharedKeys};
use crate::workload::{firing, writers, Health, Stop};

/// How long a fresh cluster may take to form.
const FORM_TIMEOUT: Duration = Duration::from_secs(90);
/// Normal operation after the last heal, before the clients stop.
const TAIL: Duration = Duration::from_secs(8);
/// Slots due later than this before the firing jobs are paused are not judged.
const WINDOW_END_MARGIN_MS: i64 = 4000;

/// Runs the suite once and returns its report (also written to `cfg.out`).
pub async fn run(cfg: Config) -> Result<Report> {
    cfg.validate()?;
    let started = now_ms();
    std::fs::create_dir_all(&cfg.out).with_context(|| format!("creating {}", cfg.out.display()))?;
    let nodes_root = cfg.out.join("nodes");
    if nodes_root.exists() {
        std::fs::remove_dir_all(&nodes_root).with_context(|| format!("clearing {}", nodes_root.display()))?;
    }
    let features = BinaryFeatures::probe(&cfg.bin).await?;
    let mut secrets = rng::stream(cfg.seed, "secrets");
    let admin_key = format!("chaos-admin-{:032x}", secrets.gen::<u128>());
    let cluster_secret = format!("chaos-cluster-{:032x}", secrets.gen::<u128>());
    let master_key = features.master_key.then(|| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(secrets.gen::<[u8; 32]>())
    });
    let canary_prefix = firing::canary_prefix(cfg.seed);
    let sink = Sink::start(&canary_prefix).await?;
    let run_history = (cfg.duration.as_secs() + 300).clamp(100, 10_000) as u32;
    let mut procs = Processes::new(
        &nodes_root,
        cfg.nodes,
        &cfg.bin,
        &admin_key,
        &cluster_secret,
        &cfg.timing,
        run_history,
        features,
        master_key,
    )?;
    let wants_proxy = cfg.faults.iter().any(|k| k.needs_proxy());
    let proxy =
        if features.peer_override && wants_proxy { Some(Proxy::start(&procs.addrs(), cfg.seed).await?) } else { None };
    if let Some(p) = &proxy {
        for id in procs.ids() {
            procs.set_peer_override(id, p.override_arg(id));
        }
    }
    let http = http_client()?;
    let apis: BTreeMap<u64, NodeApi> =
        procs.addrs().into_iter().map(|(id, addr)| (id, NodeApi::new(id, addr, &admin_key, http.clone()))).collect();
    let api_list: Vec<NodeApi> = apis.values().cloned().collect();
    let history = History::default();
    let mut facts = Facts {
        features,
        planned_fires_per_s: 0.0,
        writers: (cfg.nodes as usize) * cfg.profile.writers_per_node as usize,
        ..Facts::default()
    };
    let plan = plan::plan(cfg.seed, &runnable(&cfg, features), cfg.duration.as_millis() as u64, &cfg.timing);
    facts.faults_planned = plan.len();

    // Formation and the firing jobs.
    for id in procs.ids() {
        procs.start(id)?;
    }
    let formed = wait_formed(&mut procs, &api_list).await;
    let setup = async {
        formed?;
        let jobs = firing::create(&api_list, &cfg.profile, cfg.seed, &sink.url()).await?;
        let shards = api_list[0].shards(Duration::from_secs(5)).await?;
        anyhow::Ok((jobs, shards.shard_count))
    };
    let (jobs, shard_count) = match setup.await {
        Ok(v) => v,
        Err(e) => {
            facts.setup_error = Some(format!("{e:#}"));
            procs.kill_all().await;
            return finish(
                &cfg,
                facts,
                &history,
                &sink,
                &[],
                None,
                Window { from_ms: 0, to_ms: 0 },
                &KeyState::default(),
                canary::Scan::default(),
                1,
                vec![],
                plan,
                started,
            );
        }
    };
    facts.planned_fires_per_s = firing::planned_rate(&jobs);
    let created_max = jobs.iter().map(|j| j.created_ms).max().unwrap_or(started);
    let window_from = (created_max / 1000 + 2) * 1000;

    // Clients, observer, progress.
    let (stop_tx, stop) = Stop::new();
    let health = Health::default();
    let wiped: observe::Wiped = Arc::default();
    let keys_state: SharedKeys = Arc::new(Mutex::new(KeyState::default()));
    let status = Arc::new(Mutex::new(String::from("starting")));
    let client_deadline = tokio::time::Instant::now() + cfg.duration + Duration::from_secs(300);
    let mut tasks = Vec::new();
    let max_rounds = (cfg.duration.as_secs() + 900) * 2;
    let observer =
        tokio::spawn(observe::run(api_list.clone(), history.clone(), wiped.clone(), stop.clone(), max_rounds));
    for api in &api_list {
        for w in 0..cfg.profile.writers_per_node {
            let client = format!("n{}w{w}", api.id);
            let r = rng::stream(cfg.seed, &format!("writer-{client}"));
            tasks.push(tokio::spawn(writers::writer(
                client,
                api.clone(),
                cfg.seed,
                r,
                history.clone(),
                stop.clone(),
                client_deadline,
                cfg.profile.write_pause_ms,
                canary_prefix.clone(),
            )));
        }
        for rd in 0..cfg.profile.readers_per_node {
            let r = rng::stream(cfg.seed, &format!("reader-{}-{rd}", api.id));
            let ids = jobs.iter().map(|j| j.id.clone()).collect();
            tasks.push(tokio::spawn(writers::reader(
                api.clone(),
                ids,
                r,
                history.clone(),
                stop.clone(),
                client_deadline,
            )));
        }
        if cfg.keys_workload {
            let r = rng::stream(cfg.seed, &format!("keys-{}", api.id));
            tasks.push(tokio::spawn(keys::key_client(
                format!("n{}k", api.id),
                api.clone(),
                api_list.clone(),
                r,
                history.clone(),
                health.clone(),
                keys_state.clone(),
                stop.clone(),
                client_deadline,
                cfg.seed,
            )));
        }
    }
    let progress = cfg.progress.then(|| {
        let (h, s, st, stop) = (history.clone(), sink.hits_handle(), status.clone(), stop.clone());
        tokio::spawn(progress_line(h, s, st, stop, started))
    });

    // Faults.
    let fault_deadline = tokio::time::Instant::now() + cfg.duration;
    {
        let mut nemesis = Nemesis {
            procs: &mut procs,
            proxy: proxy.as_ref(),
            apis: apis.clone(),
            history: history.clone(),
            health: health.clone(),
            wiped: wiped.clone(),
            timing: cfg.timing.clone(),
            status: status.clone(),
        };
        nemesis.run(&plan, fault_deadline).await;
        tokio::time::sleep_until(fault_deadline).await;
        nemesis.heal_everything().await;
    }
    set(&status, "settling");
    let _ = converge::wait(&api_list, Duration::from_secs(60)).await;
    tokio::time::sleep(TAIL).await;

    // Stop the clients, pause the firing jobs, read the final state.
    set(&status, "stopping clients");
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(30), t).await;
    }
    let window = Window { from_ms: window_from, to_ms: (now_ms() - WINDOW_END_MARGIN_MS) / 1000 * 1000 };
    set(&status, "reading the final state");
    let keys_final = keys_state.lock().map(|g| g.clone()).unwrap_or_default();
    let collected = async {
        firing::pause_all(&api_list, &jobs).await?;
        tokio::time::sleep(Duration::from_secs(3)).await;
        collect::read_final(&api_list, &jobs, &keys_final).await
    };
    let final_state = match collected.await {
        Ok(s) => Some(s),
        Err(e) => {
            facts.collect_error = Some(format!("{e:#}"));
            None
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), observer).await;
    if let Some(p) = progress {
        let _ = tokio::time::timeout(Duration::from_secs(2), p).await;
    }

    // Stop every node, then look at what they left on disk.
    let mut crashes: Vec<String> =
        history.snapshot().notes.iter().filter(|n| n.starts_with("crash:")).cloned().collect();
    for (id, st) in procs.exited() {
        crashes.push(format!("crash: node {id} exited by itself ({st})"));
    }
    crashes.extend(procs.panics_in_logs());
    procs.kill_all().await;
    if let Some(p) = &proxy {
        facts.proxy = p.stats();
    }
    let scan = canary::scan(&procs.data_dirs(), &canary_prefix);
    if !cfg.keep_data {
        for d in procs.data_dirs() {
            let _ = std::fs::remove_dir_all(&d);
        }
    }
    finish(
        &cfg,
        facts,
        &history,
        &sink,
        &jobs,
        final_state.as_ref(),
        window,
        &keys_final,
        scan,
        shard_count,
        crashes,
        plan,
        started,
    )
}

/// Waits until the new cluster is whole; fails at once when a node exits (with its log tail).
async fn wait_formed(procs: &mut Processes, apis: &[NodeApi]) -> Result<()> {
    let deadline = tokio::time::Instant::now() + FORM_TIMEOUT;
    let mut last = String::from("not probed");
    for _ in 0..(FORM_TIMEOUT.as_secs() * 4) {
        if let Some((id, status)) = procs.exited().into_iter().next() {
            anyhow::bail!("node {id} exited during formation ({status}):\n{}", procs.log_tail(id, 8));
        }
        if tokio::time::Instant::now() >= deadline {
            break;
        }
        match converge::probe(apis).await {
            Ok(_) => return Ok(()),
            Err(e) => last = format!("{e:#}"),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    anyhow::bail!("the cluster did not form in {FORM_TIMEOUT:?}: {last}")
}

/// The fault kinds this binary can run (the others make the run invalid).
fn runnable(cfg: &Config, f: BinaryFeatures) -> Vec<crate::config::FaultKind> {
    cfg.faults
        .iter()
        .copied()
        .filter(|k| !k.needs_proxy() || f.peer_override)
        .filter(|k| *k != crate::config::FaultKind::ClockJump || f.clock_drills)
        .collect()
}

fn set(status: &Arc<Mutex<String>>, s: &str) {
    if let Ok(mut g) = status.lock() {
        *g = s.to_string();
    }
}

/// Judges, writes the report and the picture, prints the table.
#[allow(clippy::too_many_arguments)]
fn finish(
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
    let firing_ids: std::collections::BTreeSet<&str> = jobs.iter().map(|j| j.id.as_str()).collect();
    facts.window_ms = window.to_ms - window.from_ms;
    facts.expected_slots =
        jobs.iter().map(|j| j.slots(window.from_ms.max(j.created_ms + 1000), window.to_ms).len()).sum();
    let in_window: std::collections::BTreeSet<(&str, i64)> = hits
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
        &serde_json::json!({ "writes": snap.writes, "faults": snap.faults, "stops": snap.stops, "leaders": snap.leaders, "revocations": snap.revocations }),
    )?;
    std::fs::write(out.join("history.json"), history).context("writing history.json")?;
    let title = format!("raftcron-chaos seed {} — {:?}", report.config.seed, report.verdict);
    let end = hits.iter().map(|h| h.received_ms).max().unwrap_or(started).max(now_ms().min(started + 10 * 3600 * 1000));
    let picture = svg::render(&title, started, end, &snap.faults, hits, &snap.leaders);
    std::fs::write(out.join("timeline.svg"), picture).context("writing timeline.svg")?;
    Ok(())
}

/// Prints one progress line every few seconds until the stop.
async fn progress_line(
    history: History,
    hits: Arc<Mutex<Vec<crate::sink::Hit>>>,
    status: Arc<Mutex<String>>,
    mut stop: Stop,
    started: i64,
) {
    let tty = std::io::stderr().is_terminal();
    let mut last_count = 0usize;
    let mut last_at = now_ms();
    for _ in 0..1_000_000 {
        if stop.sleep(Duration::from_secs(if tty { 1 } else { 10 })).await {
            break;
        }
        let count = hits.lock().map(|h| h.len()).unwrap_or(0);
        let now = now_ms();
        let rate = (count - last_count.min(count)) as f64 * 1000.0 / (now - last_at).max(1) as f64;
        (last_count, last_at) = (count, now);
        let (w, ok) = history.write_counts();
        let st = status.lock().map(|s| s.clone()).unwrap_or_default();
        let line = format!(
            "[{:>5}s] {:>5.1} fires/s | {} fires | writes {ok} ok / {w} | faults {} | {st}",
            (now - started) / 1000,
            rate,
            count,
            history.faults_so_far()
        );
        if tty {
            eprint!("\r\x1b[2K{}", crate::api::truncate(&line, 160));
        } else {
            eprintln!("{line}");
        }
    }
    if tty {
        eprintln!();
    }
}
