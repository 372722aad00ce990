//! One run from start to verdict: lay out and start the nodes (behind the proxy when the binary
//! supports it; with `--netns`, each in its network namespace, the cuts made with nftables),
//! form the cluster, create the firing jobs, start the observer and the clients,
//! let the nemesis carry out the plan, heal, let the cluster settle, stop the clients, pause
//! the firing jobs, read the final state, stop every node, scan the data dirs, judge, and write
//! the report and the picture.
//!
//! Owns the ordering of those phases and the window of judged slots; the judging itself is in
//! [`crate::check`]. Every wait has a deadline, and every process and task started here ends
//! with the run (processes are killed when [`Processes`] drops, even on error or Ctrl-C).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use rand::Rng;

use crate::api::{http_client, NodeApi};
use crate::check::{canary, Window};
use crate::clock::now_ms;
use crate::collect;
use crate::config::{Config, NetworkBackend};
use crate::faults::converge;
use crate::faults::nemesis::Nemesis;
use crate::faults::plan;
use crate::history::History;
use crate::netns::links::NetnsLinks;
use crate::netns::Layout;
use crate::network::Network;
use crate::observe;
use crate::procs::{BinaryFeatures, Processes};
use crate::proxy::Proxy;
use crate::report::{Facts, Report};
use crate::rng;
use crate::sink::Sink;
use crate::workload::keys::{self, KeyState, SharedKeys};
use crate::workload::{firing, writers, Health, Stop};
use crate::{judge, progress};

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
    let layout = match &cfg.network {
        NetworkBackend::Proxy => None,
        NetworkBackend::Netns { prefix } => {
            let l = Layout::from_prefix(prefix, cfg.nodes).ok_or_else(|| anyhow!("{prefix:?} names no --netns run"))?;
            crate::netns::ensure_inside(&l.hub())?;
            Some(l)
        }
    };
    let local_ip = layout.as_ref().map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), Layout::hub_ip);
    let features = BinaryFeatures::probe(&cfg.bin).await?;
    let mut secrets = rng::stream(cfg.seed, "secrets");
    let admin_key = format!("chaos-admin-{:032x}", secrets.gen::<u128>());
    let cluster_secret = format!("chaos-cluster-{:032x}", secrets.gen::<u128>());
    let master_key = features.master_key.then(|| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(secrets.gen::<[u8; 32]>())
    });
    let canary_prefix = firing::canary_prefix(cfg.seed);
    let sink = Sink::start(&canary_prefix, local_ip).await?;
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
        layout.as_ref(),
    )?;
    let wants_proxy = cfg.faults.iter().any(|k| k.needs_proxy(layout.is_some()));
    let proxy = if features.peer_override && wants_proxy {
        Some(Proxy::start_on(&procs.addrs(), cfg.seed, local_ip).await?)
    } else {
        None
    };
    if let Some(p) = &proxy {
        for id in procs.ids() {
            procs.set_peer_override(id, p.override_arg(id));
        }
    }
    // With --netns, a cut drops what `from` sends to the address it uses for `to`: the node, or
    // the proxy listener of the link when the proxy is in the path (for delay and loss).
    let netns_links = layout.as_ref().map(|l| {
        let addrs = procs.addrs();
        let mut endpoints = BTreeMap::new();
        for &f in addrs.keys() {
            for (&t, &addr) in addrs.iter().filter(|(t, _)| **t != f) {
                endpoints.insert((f, t), proxy.as_ref().and_then(|p| p.endpoint(f, t)).unwrap_or(addr));
            }
        }
        NetnsLinks::new(l.clone(), endpoints)
    });
    let net = Network { proxy: proxy.as_ref(), netns: netns_links.as_ref() };
    let http = http_client()?;
    let apis: BTreeMap<u64, NodeApi> =
        procs.addrs().into_iter().map(|(id, addr)| (id, NodeApi::new(id, addr, &admin_key, http.clone()))).collect();
    let api_list: Vec<NodeApi> = apis.values().cloned().collect();
    let history = History::default();
    let mut facts = Facts {
        features,
        network: describe_network(&cfg, layout.as_ref(), proxy.is_some()),
        planned_fires_per_s: 0.0,
        writers: (cfg.nodes as usize) * cfg.profile.writers_per_node as usize,
        ..Facts::default()
    };
    let plan =
        plan::plan(cfg.seed, &runnable(&cfg, features, layout.is_some()), cfg.duration.as_millis() as u64, &cfg.timing);
    facts.faults_planned = plan.len();

    // Formation and the firing jobs.
    for id in procs.ids() {
        procs.start(id)?;
    }
    let formed = wait_formed(&mut procs, &api_list).await;
    let setup = async {
        formed?;
        let jobs = firing::create(&api_list, &cfg.profile, cfg.seed, &sink.url()).await?;
        let shards = api_list.first().context("no node")?.shards(Duration::from_secs(5)).await?;
        anyhow::Ok((jobs, shards.shard_count))
    };
    let (jobs, shard_count) = match setup.await {
        Ok(v) => v,
        Err(e) => {
            facts.setup_error = Some(format!("{e:#}"));
            procs.kill_all().await;
            return judge::finish(
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
        tokio::spawn(progress::line(h, s, st, stop, started))
    });

    // Faults.
    let fault_deadline = tokio::time::Instant::now() + cfg.duration;
    {
        let mut nemesis = Nemesis {
            procs: &mut procs,
            net,
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
    if let Some(n) = &netns_links {
        facts.netns_cuts = n.stats().await;
    }
    let scan = canary::scan(&procs.data_dirs(), &canary_prefix);
    if !cfg.keep_data {
        for d in procs.data_dirs() {
            let _ = std::fs::remove_dir_all(&d);
        }
    }
    judge::finish(
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
fn runnable(cfg: &Config, f: BinaryFeatures, netns: bool) -> Vec<crate::config::FaultKind> {
    cfg.faults
        .iter()
        .copied()
        .filter(|k| !k.needs_proxy(netns) || f.peer_override)
        .filter(|k| *k != crate::config::FaultKind::ClockJump || f.clock_drills)
        .collect()
}

/// Which network ran, for the report.
fn describe_network(cfg: &Config, layout: Option<&Layout>, proxy: bool) -> String {
    match layout {
        None if proxy => "proxy: nodes on 127.0.0.1, every node-to-node link through the fault-injecting proxy".into(),
        None => "proxy (not started: no fault needs it, or the binary has no --peer-override)".into(),
        Some(l) => format!(
            "netns: nodes in the namespaces {}-n1..n{}, controller in {} ({}/24); cuts by nftables in the \
             senders' namespaces; {}",
            l.prefix,
            cfg.nodes,
            l.hub(),
            l.node_ip(0),
            if proxy { "delay and loss by the proxy on the hub" } else { "no proxy (no delay or loss asked for)" }
        ),
    }
}

fn set(status: &Arc<Mutex<String>>, s: &str) {
    if let Ok(mut g) = status.lock() {
        *g = s.to_string();
    }
}
