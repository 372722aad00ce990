//! The `raftcron serve` processes of a run: their ports, data dirs, logs and signals (SIGKILL,
//! SIGSTOP, SIGCONT), restarts and wipes. With `--netns`, each node is started inside its own
//! network namespace (`ip netns exec <ns> raftcron serve ...`: `ip` execs the node, so the child's
//! pid is the node's and signals reach it) and listens on its namespace's address.
//!
//! Owns the child processes and nothing else: it does not talk HTTP and makes no decision about
//! when to fault. Invariant: every process it starts is killed when [`Processes`] drops (panic,
//! error or Ctrl-C alike: `kill_on_drop`, and an explicit SIGKILL of stopped ones), so a run
//! never leaves a node behind.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{anyhow, bail, ensure, Context, Result};
use tokio::process::{Child, Command};

use crate::config::Timing;
use crate::netns::Layout;

/// One node's files and process.
#[derive(Debug)]
pub struct NodeProc {
    pub id: u64,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    pub log_path: PathBuf,
    /// `--initial-cluster`, or `None` for a node that waits to be added.
    initial_cluster: Option<String>,
    /// `--peer-override`, when the proxy is in use.
    peer_override: Option<String>,
    /// The network namespace the node runs in (`--netns`).
    netns: Option<String>,
    child: Option<Child>,
    paused: bool,
    pub starts: u32,
}

/// What the node binary supports (read from `serve --help`).
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct BinaryFeatures {
    pub peer_override: bool,
    pub clock_drills: bool,
    pub clock_offset: bool,
    /// `--rate-limit-per-minute` and `--auth-failures-per-minute`: raised for the run, whose
    /// clients all come from 127.0.0.1 and whose key probes fail authentication on purpose.
    pub rate_limits: bool,
    /// `--master-key`: the node seals job secrets at rest and needs `RAFTCRON_MASTER_KEY`.
    pub master_key: bool,
}

impl BinaryFeatures {
    /// Asks the binary which flags it has.
    pub async fn probe(bin: &Path) -> Result<BinaryFeatures> {
        let out = Command::new(bin)
            .args(["serve", "--help"])
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .with_context(|| format!("running {} serve --help", bin.display()))?;
        ensure!(out.status.success(), "{} serve --help failed: {}", bin.display(), out.status);
        let help = String::from_utf8_lossy(&out.stdout);
        Ok(BinaryFeatures {
            peer_override: help.contains("--peer-override"),
            clock_drills: help.contains("--clock-drills"),
            clock_offset: help.contains("--clock-offset-ms"),
            rate_limits: help.contains("--rate-limit-per-minute") && help.contains("--auth-failures-per-minute"),
            master_key: help.contains("--master-key"),
        })
    }
}

/// Every node process of a run.
#[derive(Debug)]
pub struct Processes {
    nodes: BTreeMap<u64, NodeProc>,
    bin: PathBuf,
    admin_key: String,
    pub cluster_secret: String,
    /// `RAFTCRON_MASTER_KEY` for every node, when the binary seals secrets at rest.
    master_key: Option<String>,
    /// Flags on every node's command line.
    common_args: Vec<String>,
}

/// `n` distinct free loopback ports (bound together so they differ, then released).
pub fn free_ports(n: usize) -> Result<Vec<u16>> {
    let listeners = (0..n).map(|_| TcpListener::bind("127.0.0.1:0")).collect::<std::io::Result<Vec<_>>>()?;
    listeners.iter().map(|l| Ok(l.local_addr()?.port())).collect()
}

impl Processes {
    /// Lays out `n` nodes (ids 1..=n) under `root` with one `--initial-cluster`; starts nothing.
    /// Without `netns` they listen on free loopback ports; with it, each in its namespace.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        root: &Path,
        n: u64,
        bin: &Path,
        admin_key: &str,
        cluster_secret: &str,
        timing: &Timing,
        run_history: u32,
        features: BinaryFeatures,
        master_key: Option<String>,
        netns: Option<&Layout>,
    ) -> Result<Processes> {
        let addrs: Vec<SocketAddr> = match netns {
            Some(l) => (1..=n).map(|id| l.node_addr(id)).collect(),
            None => free_ports(n as usize)?.into_iter().map(|p| SocketAddr::from(([127, 0, 0, 1], p))).collect(),
        };
        let initial = (1..=n).zip(&addrs).map(|(id, addr)| format!("{id}={addr}")).collect::<Vec<_>>().join(",");
        let mut common_args: Vec<String> = vec![
            "--allow-private-targets".into(),
            "--election-timeout-ms".into(),
            timing.election_timeout_ms.to_string(),
            "--heartbeat-ms".into(),
            timing.heartbeat_ms.to_string(),
            "--snapshot-every".into(),
            timing.snapshot_every.to_string(),
            "--run-history".into(),
            run_history.to_string(),
            "--lease-ms".into(),
            timing.lease_ms.to_string(),
        ];
        if features.clock_drills {
            common_args.push("--clock-drills".into());
        }
        if features.rate_limits {
            // Not what this suite tests: every client shares one address and one admin key.
            for flag in ["--rate-limit-per-minute", "--auth-failures-per-minute"] {
                common_args.extend([flag.to_string(), "100000".to_string()]);
            }
        }
        let mut nodes = BTreeMap::new();
        for (id, addr) in (1..=n).zip(addrs) {
            let dir = root.join(format!("node-{id}"));
            let data_dir = dir.join("data");
            std::fs::create_dir_all(&data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
            nodes.insert(
                id,
                NodeProc {
                    id,
                    addr,
                    data_dir,
                    log_path: dir.join("node.log"),
                    initial_cluster: Some(initial.clone()),
                    peer_override: None,
                    netns: netns.map(|l| l.node_ns(id)),
                    child: None,
                    paused: false,
                    starts: 0,
                },
            );
        }
        Ok(Processes {
            nodes,
            bin: bin.to_path_buf(),
            admin_key: admin_key.to_string(),
            cluster_secret: cluster_secret.to_string(),
            master_key,
            common_args,
        })
    }

    pub fn ids(&self) -> Vec<u64> {
        self.nodes.keys().copied().collect()
    }

    pub fn addrs(&self) -> BTreeMap<u64, SocketAddr> {
        self.nodes.iter().map(|(id, n)| (*id, n.addr)).collect()
    }

    pub fn node(&self, id: u64) -> Option<&NodeProc> {
        self.nodes.get(&id)
    }

    pub fn data_dirs(&self) -> Vec<PathBuf> {
        self.nodes.values().map(|n| n.data_dir.clone()).collect()
    }

    /// Routes node `id`'s outgoing peer connections through the proxy from its next start on.
    pub fn set_peer_override(&mut self, id: u64, value: String) {
        if let Some(n) = self.nodes.get_mut(&id) {
            n.peer_override = Some(value);
        }
    }

    fn get_mut(&mut self, id: u64) -> Result<&mut NodeProc> {
        self.nodes.get_mut(&id).ok_or_else(|| anyhow!("no node {id}"))
    }

    fn log_line(path: &Path, line: &str) {
        if let Ok(mut f) = OpenOptions::new().create(true).append(true).open(path) {
            let _ = writeln!(f, "==== [chaos {}] {line} ====", crate::clock::now_ms());
        }
    }

    /// Starts node `id` (same command and data dir every time).
    pub fn start(&mut self, id: u64) -> Result<()> {
        let bin = self.bin.clone();
        let common = self.common_args.clone();
        let (key, secret) = (self.admin_key.clone(), self.cluster_secret.clone());
        let master = self.master_key.clone();
        let node = self.get_mut(id)?;
        ensure!(node.child.is_none(), "node {id} is already running");
        node.starts += 1;
        let inside = node.netns.as_ref().map(|ns| format!(" in the network namespace {ns}")).unwrap_or_default();
        Self::log_line(&node.log_path, &format!("start #{} of node {id} on {}{inside}", node.starts, node.addr));
        let log = OpenOptions::new().create(true).append(true).open(&node.log_path)?;
        let mut cmd = match &node.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&bin);
                c
            }
            None => Command::new(&bin),
        };
        cmd.arg("serve")
            .args(["--node-id", &id.to_string()])
            .args(["--listen", &node.addr.to_string()])
            .arg("--data-dir")
            .arg(&node.data_dir)
            .args(&common);
        if let Some(initial) = &node.initial_cluster {
            cmd.args(["--initial-cluster", initial]);
        }
        if let Some(o) = &node.peer_override {
            cmd.args(["--peer-override", o]);
        }
        // Nothing from this process's environment configures the node.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("RAFTCRON_") {
                cmd.env_remove(k);
            }
        }
        if let Ok(filter) = std::env::var("RAFTCRON_CHAOS_NODE_LOG") {
            cmd.env("RAFTCRON_LOG", filter);
        }
        if let Some(m) = master {
            cmd.env("RAFTCRON_MASTER_KEY", m);
        }
        cmd.env("RAFTCRON_ADMIN_KEY", key)
            .env("RAFTCRON_CLUSTER_SECRET", secret)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .kill_on_drop(true);
        let child = cmd.spawn().with_context(|| format!("starting {}", bin.display()))?;
        node.child = Some(child);
        node.paused = false;
        Ok(())
    }

    fn pid(&self, id: u64) -> Result<u32> {
        let node = self.nodes.get(&id).ok_or_else(|| anyhow!("no node {id}"))?;
        let child = node.child.as_ref().ok_or_else(|| anyhow!("node {id} is not running"))?;
        child.id().ok_or_else(|| anyhow!("node {id} has exited"))
    }

    /// Sends `signal` (`STOP`, `CONT`) to node `id` with the system's `kill`, which keeps this
    /// crate free of unsafe code and of a libc binding that would change the node's build.
    fn signal(&self, id: u64, signal: &str) -> Result<()> {
        let pid = self.pid(id)?;
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .with_context(|| format!("running kill -{signal} {pid}"))?;
        anyhow::ensure!(status.success(), "kill -{signal} {pid} failed");
        Ok(())
    }

    /// SIGKILLs node `id` and reaps it.
    pub async fn kill(&mut self, id: u64) -> Result<()> {
        let node = self.get_mut(id)?;
        let mut child = node.child.take().ok_or_else(|| anyhow!("node {id} is not running"))?;
        node.paused = false;
        child.start_kill().with_context(|| format!("killing node {id}"))?;
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), child.wait()).await;
        Self::log_line(&node.log_path, &format!("node {id} killed (SIGKILL)"));
        Ok(())
    }

    /// Freezes node `id` (SIGSTOP).
    pub fn pause(&mut self, id: u64) -> Result<()> {
        self.signal(id, "STOP").with_context(|| format!("SIGSTOP node {id}"))?;
        let node = self.get_mut(id)?;
        node.paused = true;
        Self::log_line(&node.log_path, &format!("node {id} got SIGSTOP"));
        Ok(())
    }

    /// Thaws node `id` (SIGCONT).
    pub fn resume(&mut self, id: u64) -> Result<()> {
        self.signal(id, "CONT").with_context(|| format!("SIGCONT node {id}"))?;
        let node = self.get_mut(id)?;
        node.paused = false;
        Self::log_line(&node.log_path, &format!("node {id} got SIGCONT"));
        Ok(())
    }

    /// Empties node `id`'s data dir and makes its next start wait to be added (no
    /// `--initial-cluster`). The node must not run.
    pub fn wipe(&mut self, id: u64) -> Result<()> {
        let node = self.get_mut(id)?;
        ensure!(node.child.is_none(), "node {id} is running: kill it before wiping");
        std::fs::remove_dir_all(&node.data_dir).with_context(|| format!("wiping {}", node.data_dir.display()))?;
        std::fs::create_dir_all(&node.data_dir)?;
        node.initial_cluster = None;
        Self::log_line(&node.log_path, &format!("node {id} data dir wiped"));
        Ok(())
    }

    pub fn is_running(&self, id: u64) -> bool {
        self.nodes.get(&id).is_some_and(|n| n.child.is_some())
    }

    pub fn is_paused(&self, id: u64) -> bool {
        self.nodes.get(&id).is_some_and(|n| n.paused)
    }

    /// Nodes whose process runs and is not frozen.
    pub fn live(&self) -> Vec<u64> {
        self.nodes.values().filter(|n| n.child.is_some() && !n.paused).map(|n| n.id).collect()
    }

    /// Nodes whose process exited on its own (not killed by the suite): reaped and reported.
    pub fn exited(&mut self) -> Vec<(u64, String)> {
        let mut out = Vec::new();
        for node in self.nodes.values_mut() {
            if let Some(child) = node.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    node.child = None;
                    out.push((node.id, status.to_string()));
                }
            }
        }
        out
    }

    /// Thaws and kills every node.
    pub async fn kill_all(&mut self) {
        for id in self.ids() {
            if self.is_paused(id) {
                let _ = self.resume(id);
            }
            if self.is_running(id) {
                let _ = self.kill(id).await;
            }
        }
    }

    /// The last `n` lines of node `id`'s log.
    pub fn log_tail(&self, id: u64, n: usize) -> String {
        let text = self.nodes.get(&id).and_then(|x| std::fs::read_to_string(&x.log_path).ok()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Lines of the node logs that report a panic.
    pub fn panics_in_logs(&self) -> Vec<String> {
        let mut out = Vec::new();
        for node in self.nodes.values() {
            let text = std::fs::read_to_string(&node.log_path).unwrap_or_default();
            for line in text.lines().filter(|l| l.contains("panicked at")) {
                out.push(format!("node {}: {}", node.id, crate::api::truncate(line, 300)));
            }
        }
        out
    }

    /// Fails unless node `id` exists.
    pub fn check_id(&self, id: u64) -> Result<()> {
        if !self.nodes.contains_key(&id) {
            bail!("no node {id}");
        }
        Ok(())
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        for node in self.nodes.values_mut() {
            if let Some(mut child) = node.child.take() {
                // SIGKILL ends a stopped process too; kill_on_drop would do the same.
                let _ = child.start_kill();
            }
        }
    }
}
