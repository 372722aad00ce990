//! The nemesis: carries out the fault plan, one fault at a time, on the processes (kill,
//! SIGSTOP/SIGCONT, wipe), the network (partitions through the proxy or, with `--netns`,
//! nftables; delay and loss through the proxy: [`crate::network`]), the membership API and the
//! clock drill; heals each fault and measures the time until the cluster is whole again.
//!
//! Faults never overlap: the next starts only after the previous one converged (or gave up). A
//! fault that cannot be injected or healed as planned is recorded with its error, which makes
//! the run invalid; the nemesis then heals everything it can and goes on. It stops starting new
//! faults when the next one would not finish before the deadline.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use raftcron_client::AddNode;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use reqwest::Method;

use crate::api::NodeApi;
use crate::clock::{now_ms, sleep_to_fraction};
use crate::config::{FaultKind, Timing};
use crate::faults::converge;
use crate::faults::plan::PlannedFault;
use crate::history::{FaultRecord, History, StopEvent};
use crate::network::{pairs_between, Network};
use crate::observe::Wiped;
use crate::procs::Processes;
use crate::proxy::LinkMode;
use crate::workload::Health;

/// How long the cluster may take to be whole again after a heal.
pub const CONVERGE_TIMEOUT: Duration = Duration::from_secs(60);
/// Membership changes wait for a snapshot install: longer.
const MEMBERSHIP_TIMEOUT: Duration = Duration::from_secs(120);

/// What the nemesis acts on.
pub struct Nemesis<'a> {
    pub procs: &'a mut Processes,
    pub net: Network<'a>,
    /// Admin clients of every node.
    pub apis: BTreeMap<u64, NodeApi>,
    pub history: History,
    pub health: Health,
    pub wiped: Wiped,
    pub timing: Timing,
    /// What is going on, for the progress line.
    pub status: Arc<Mutex<String>>,
}

/// What one injected fault left to heal.
struct Injected {
    targets: Vec<u64>,
    minority: Vec<u64>,
    cut_off: Vec<u64>,
    affected: Vec<u64>,
    detail: String,
    heal: Heal,
}

enum Heal {
    Restart(Vec<u64>),
    Resume(Vec<u64>),
    Links,
    Clock(u64),
    /// Re-add the removed (and wiped) node.
    Readd(u64),
}

impl Nemesis<'_> {
    fn set_status(&self, s: String) {
        if let Ok(mut g) = self.status.lock() {
            *g = s;
        }
    }

    fn all_apis(&self) -> Vec<NodeApi> {
        self.apis.values().cloned().collect()
    }

    fn api(&self, id: u64) -> Result<&NodeApi> {
        self.apis.get(&id).ok_or_else(|| anyhow!("no node {id}"))
    }

    /// Runs the plan until `deadline`; returns how many faults were carried out.
    pub async fn run(&mut self, plan: &[PlannedFault], deadline: tokio::time::Instant) -> usize {
        let mut done = 0;
        for f in plan {
            let need = Duration::from_millis(f.gap_ms + f.hold_ms + 1_000);
            if tokio::time::Instant::now() + need > deadline {
                break;
            }
            self.set_status(format!("quiet before {}", f.kind));
            tokio::time::sleep(Duration::from_millis(f.gap_ms)).await;
            self.one(f).await;
            done += 1;
        }
        self.set_status("faults done".into());
        done
    }

    async fn one(&mut self, f: &PlannedFault) {
        let apis = self.all_apis();
        let leader = match converge::wait(&apis, Duration::from_secs(30)).await {
            Ok(l) => Some(l),
            Err(_) => converge::current_leader(&apis).await,
        };
        sleep_to_fraction(f.start_frac_ms).await;
        let start_ms = now_ms();
        let injected = self.inject(f, leader).await;
        let mut record = FaultRecord {
            kind: f.kind,
            targets: vec![],
            minority: vec![],
            cut_off: vec![],
            affected: vec![],
            detail: String::new(),
            start_ms,
            in_effect_ms: now_ms(),
            heal_ms: start_ms,
            end_ms: start_ms,
            converged_ms: None,
            error: None,
        };
        let heal = match injected {
            Ok(inj) => {
                record.targets = inj.targets.clone();
                record.minority = inj.minority.clone();
                record.cut_off = inj.cut_off.clone();
                record.affected = inj.affected.clone();
                record.detail = inj.detail.clone();
                self.health.set_affected(&inj.affected);
                self.set_status(format!("{} on {:?} ({})", f.kind, inj.targets, inj.detail));
                tokio::time::sleep(Duration::from_millis(f.hold_ms)).await;
                Some(inj.heal)
            }
            Err(e) => {
                record.error = Some(format!("inject: {e:#}"));
                None
            }
        };
        if let Some(h) = heal {
            self.set_status(format!("healing {}", f.kind));
            record.heal_ms = now_ms();
            let healed = self.heal(h).await;
            record.end_ms = now_ms();
            match healed {
                Ok(Some(note)) => record.detail = format!("{}; {note}", record.detail),
                Ok(None) => {}
                Err(e) => record.error = Some(format!("heal: {e:#}")),
            }
        }
        for (id, st) in self.procs.exited() {
            self.history.note(format!("crash: node {id} exited by itself ({st}) around {}", f.kind));
        }
        self.heal_everything().await;
        let timeout = if f.kind == FaultKind::Membership { MEMBERSHIP_TIMEOUT } else { CONVERGE_TIMEOUT };
        self.set_status(format!("converging after {}", f.kind));
        if converge::wait(&self.all_apis(), timeout).await.is_ok() {
            record.converged_ms = Some(now_ms());
        }
        self.health.clear();
        self.history.fault(record);
    }

    fn stopped(&self, node: u64, kind: FaultKind) {
        self.history.stop_event(StopEvent { node, at_ms: now_ms(), kind });
    }

    async fn inject(&mut self, f: &PlannedFault, leader: Option<u64>) -> Result<Injected> {
        let ids = self.procs.ids();
        let mut rng = StdRng::seed_from_u64(f.pick);
        let leader_id = || leader.ok_or_else(|| anyhow!("no leader to target"));
        let follower = |rng: &mut StdRng| -> Result<u64> {
            let l = leader.ok_or_else(|| anyhow!("no leader, so no follower"))?;
            ids.iter().copied().filter(|i| *i != l).collect::<Vec<_>>().choose(rng).copied().context("no follower")
        };
        let others = |t: u64| ids.iter().copied().filter(|i| *i != t).collect::<Vec<_>>();
        let blackhole = LinkMode::Blackhole;
        let inj = match f.kind {
            FaultKind::KillLeader | FaultKind::KillFollower => {
                let t = if f.kind == FaultKind::KillLeader { leader_id()? } else { follower(&mut rng)? };
                self.stopped(t, f.kind);
                self.procs.kill(t).await?;
                Injected {
                    targets: vec![t],
                    minority: vec![],
                    cut_off: vec![],
                    affected: if Some(t) == leader { ids.clone() } else { vec![t] },
                    detail: "kill -9".into(),
                    heal: Heal::Restart(vec![t]),
                }
            }
            FaultKind::KillAll => {
                for &t in &ids {
                    self.stopped(t, f.kind);
                }
                for &t in &ids {
                    self.procs.kill(t).await?;
                }
                Injected {
                    targets: ids.clone(),
                    minority: vec![],
                    cut_off: vec![],
                    affected: ids.clone(),
                    detail: "kill -9 all".into(),
                    heal: Heal::Restart(ids.clone()),
                }
            }
            FaultKind::PauseLeader | FaultKind::PauseFollower => {
                let t = if f.kind == FaultKind::PauseLeader { leader_id()? } else { follower(&mut rng)? };
                self.stopped(t, f.kind);
                self.procs.pause(t)?;
                Injected {
                    targets: vec![t],
                    minority: vec![],
                    cut_off: vec![],
                    affected: if Some(t) == leader { ids.clone() } else { vec![t] },
                    detail: format!("SIGSTOP {} ms", f.hold_ms),
                    heal: Heal::Resume(vec![t]),
                }
            }
            FaultKind::IsolateLeader | FaultKind::IsolateFollower => {
                let t = if f.kind == FaultKind::IsolateLeader { leader_id()? } else { follower(&mut rng)? };
                self.net.cut(&pairs_between(&[t], &others(t)), blackhole).await?;
                Injected {
                    targets: vec![t],
                    minority: vec![t],
                    cut_off: vec![t],
                    affected: if Some(t) == leader { ids.clone() } else { vec![t] },
                    detail: format!("{t} <-/-> all"),
                    heal: Heal::Links,
                }
            }
            FaultKind::Split => {
                let mut order = ids.clone();
                order.shuffle(&mut rng);
                let k = (ids.len() - 1) / 2;
                let (minority, majority) = order.split_at(k);
                self.net.cut(&pairs_between(minority, majority), blackhole).await?;
                Injected {
                    targets: minority.to_vec(),
                    minority: minority.to_vec(),
                    cut_off: minority.to_vec(),
                    affected: ids.clone(),
                    detail: format!("{minority:?} | {majority:?}"),
                    heal: Heal::Links,
                }
            }
            FaultKind::Bridge => {
                let mut order = ids.clone();
                order.shuffle(&mut rng);
                let bridge = order[0];
                let rest = &order[1..];
                let (a, b) = rest.split_at(rest.len() / 2);
                self.net.cut(&pairs_between(a, b), blackhole).await?;
                Injected {
                    targets: vec![bridge],
                    minority: vec![],
                    cut_off: a.iter().chain(b).copied().collect(),
                    affected: ids.clone(),
                    detail: format!("{a:?} | {b:?}, bridge {bridge}"),
                    heal: Heal::Links,
                }
            }
            FaultKind::OneWay => {
                let t = if rng.gen_bool(0.5) { leader_id()? } else { follower(&mut rng)? };
                let links: Vec<(u64, u64)> = others(t).into_iter().map(|o| (t, o)).collect();
                self.net.cut(&links, blackhole).await?;
                Injected {
                    targets: vec![t],
                    minority: vec![],
                    cut_off: vec![t],
                    affected: ids.clone(),
                    detail: format!("{t} -/-> all"),
                    heal: Heal::Links,
                }
            }
            FaultKind::Delay => {
                let ms = f.param.max(1) as u64;
                self.net.shape_all(LinkMode::Delay { ms })?;
                Injected {
                    targets: ids.clone(),
                    minority: vec![],
                    cut_off: vec![],
                    affected: ids.clone(),
                    detail: format!("+{ms} ms on every link"),
                    heal: Heal::Links,
                }
            }
            FaultKind::Loss => {
                let stall = f.param as f64 / 1000.0;
                let mode = LinkMode::Lossy { stall, stall_ms: 400, reset: stall / 10.0 };
                self.net.shape_all(mode)?;
                Injected {
                    targets: ids.clone(),
                    minority: vec![],
                    // Stalls and resets on every link cut each node off from the leader for a
                    // while, like a short partition: an owner may send and fail to record.
                    cut_off: ids.clone(),
                    affected: ids.clone(),
                    detail: format!("stall {:.0}% of chunks 400 ms, reset {:.1}%", stall * 100.0, stall * 10.0),
                    heal: Heal::Links,
                }
            }
            FaultKind::Membership => {
                let l = leader_id()?;
                let t = follower(&mut rng)?;
                let path = format!("/api/v1/cluster/nodes/{t}");
                let a = self
                    .api(l)?
                    .request::<()>(Method::DELETE, &path, None, Duration::from_secs(60), None)
                    .await
                    .map_err(|e| anyhow!("removing node {t}: {e}"))?;
                if !a.is_success() {
                    bail!("removing node {t}: {} {}", a.status, a.text);
                }
                self.stopped(t, f.kind);
                self.procs.kill(t).await?;
                self.procs.wipe(t)?;
                Injected {
                    targets: vec![t],
                    minority: vec![],
                    cut_off: vec![],
                    affected: ids.clone(),
                    detail: format!("removed {t}, wiped"),
                    heal: Heal::Readd(t),
                }
            }
            FaultKind::ClockJump => {
                let t = *ids.choose(&mut rng).context("no node")?;
                let secret = self.procs.cluster_secret.clone();
                self.api(t)?.clock_drill(&secret, f.param).await?;
                Injected {
                    targets: vec![t],
                    minority: vec![],
                    cut_off: vec![],
                    affected: vec![t],
                    detail: format!("clock {:+} ms", f.param),
                    heal: Heal::Clock(t),
                }
            }
        };
        Ok(inj)
    }

    /// Heals; may return a note for the fault's detail.
    async fn heal(&mut self, h: Heal) -> Result<Option<String>> {
        match h {
            Heal::Restart(ids) => {
                for id in ids {
                    self.procs.start(id)?;
                }
            }
            Heal::Resume(ids) => {
                for id in ids {
                    self.procs.resume(id)?;
                }
            }
            Heal::Links => self.net.heal().await?,
            Heal::Clock(t) => {
                let secret = self.procs.cluster_secret.clone();
                self.api(t)?.clock_drill(&secret, 0).await?;
            }
            Heal::Readd(t) => {
                if let Ok(mut w) = self.wiped.lock() {
                    w.insert(t);
                }
                self.procs.start(t)?;
                let api = self.api(t)?.clone();
                let mut up = false;
                for _ in 0..100 {
                    if matches!(api.get("/healthz", Duration::from_secs(1)).await, Ok(a) if a.is_success()) {
                        up = true;
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                if !up {
                    bail!("node {t} did not come up after the wipe");
                }
                let addr = self.procs.node(t).map(|n| n.addr.to_string()).context("no node")?;
                let body = AddNode { node_id: t, addr };
                let apis = self.all_apis();
                let via = converge::current_leader(&apis).await.and_then(|l| self.apis.get(&l)).context("no leader")?;
                let purged = via.cluster(Duration::from_secs(5)).await.ok().and_then(|s| s.purged_index).unwrap_or(0);
                let a = via
                    .request(Method::POST, "/api/v1/cluster/nodes", Some(&body), Duration::from_secs(90), None)
                    .await
                    .map_err(|e| anyhow!("adding node {t} back: {e}"))?;
                if !a.is_success() {
                    bail!("adding node {t} back: {} {}", a.status, a.text);
                }
                return Ok(Some(if purged > 0 {
                    format!("re-added; the leader's log was purged to {purged}, so it caught up from a snapshot")
                } else {
                    "re-added; the leader's log was not purged (caught up by replay, no snapshot)".to_string()
                }));
            }
        }
        Ok(None)
    }

    /// Makes sure nothing stays faulted: links pass, every node runs and is thawed.
    pub async fn heal_everything(&mut self) {
        if let Err(e) = self.net.heal().await {
            self.history.note(format!("could not heal the links: {e:#}"));
        }
        for id in self.procs.ids() {
            if self.procs.is_paused(id) {
                let _ = self.procs.resume(id);
            }
            if !self.procs.is_running(id) {
                if let Err(e) = self.procs.start(id) {
                    self.history.note(format!("could not restart node {id}: {e:#}"));
                }
            }
        }
    }
}
