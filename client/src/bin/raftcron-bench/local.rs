//! A local cluster of real `raftcron serve` processes on 127.0.0.1: ports from the OS, a temp
//! dir for data and logs, a random master key, cluster secret and admin key.
//!
//! Every process it starts is stopped when the [`LocalCluster`] is dropped (SIGKILL) or
//! [`LocalCluster::stop`]ped (SIGTERM, then SIGKILL after 10 s). Nodes run with
//! `--allow-private-targets` (the sink is on 127.0.0.1) and a per-key rate limit of 1,000,000 a
//! minute (the default 1,000 would measure the limiter), and with the machine's cores shared
//! out between them: `--worker-threads` of cores / nodes, at least 1 ([`worker_threads`]).
//! Every other setting is the default unless `--node-arg` says otherwise.

use std::collections::BTreeMap;
use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine;
use raftcron_client::{Client, MemberRole};

/// How long forming (or re-forming) may take.
pub const FORM_TIMEOUT: Duration = Duration::from_secs(60);
/// Pause between two polls.
pub const POLL: Duration = Duration::from_millis(20);

struct Node {
    addr: SocketAddr,
    data_dir: PathBuf,
    log: PathBuf,
    initial_cluster: Option<String>,
    child: Option<Child>,
}

pub struct LocalCluster {
    root: Option<tempfile::TempDir>,
    bin: PathBuf,
    /// `--node-arg`s, passed to every node.
    node_args: Vec<String>,
    /// `--node-log`: every node's `RAFTCRON_LOG`.
    node_log: Option<String>,
    nodes: BTreeMap<u64, Node>,
    pub admin_key: String,
    secret: String,
    master_key: String,
}

fn random_bytes(n: usize) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; n];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(buf)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Worker threads for each of `nodes` nodes sharing this machine's cores: an equal share, at
/// least one. Every node's runtime would otherwise start a thread per core, and on a small
/// machine the nodes' threads then wake and steal from each other more than they work
/// (docs/benchmarks.md, run 19).
pub fn worker_threads(nodes: usize) -> usize {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    (cores / nodes.max(1)).max(1)
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl LocalCluster {
    /// Starts `n` nodes and waits until they agree on a leader and serve `/readyz`.
    pub async fn start(bin: &Path, n: u64, node_args: &[String], node_log: Option<&str>) -> Result<LocalCluster> {
        if !bin.is_file() {
            bail!("{} is not a file (build it: cargo build --release -p raftcron-node --bin raftcron)", bin.display());
        }
        let root = tempfile::Builder::new().prefix("raftcron-bench-").tempdir()?;
        let mut c = LocalCluster {
            root: Some(root),
            bin: bin.to_path_buf(),
            node_args: node_args.to_vec(),
            node_log: node_log.map(str::to_string),
            nodes: BTreeMap::new(),
            admin_key: format!("bench-{}", hex(&random_bytes(20)?)),
            secret: hex(&random_bytes(16)?),
            master_key: base64::engine::general_purpose::STANDARD.encode(random_bytes(32)?),
        };
        // Bound together so the ports differ, then released for the nodes.
        let listeners = (0..n).map(|_| TcpListener::bind("127.0.0.1:0")).collect::<std::io::Result<Vec<_>>>()?;
        let ports = listeners.iter().map(|l| l.local_addr().map(|a| a.port())).collect::<std::io::Result<Vec<_>>>()?;
        drop(listeners);
        let initial = (1..=n).zip(&ports).map(|(id, p)| format!("{id}=127.0.0.1:{p}")).collect::<Vec<_>>().join(",");
        // Every node is known before the first starts, so each gets its share of the cores.
        for (id, port) in (1..=n).zip(ports) {
            c.add(id, port, Some(initial.clone()))?;
        }
        for id in 1..=n {
            c.spawn(id)?;
        }
        let started = Instant::now();
        let leader = c.wait_ready(FORM_TIMEOUT).await.context("the local cluster did not form")?;
        crate::progress::note(&format!(
            "local cluster of {n} nodes formed in {:.1?}, leader is node {leader} ({})",
            started.elapsed(),
            c.root_path().display()
        ));
        Ok(c)
    }

    fn root_path(&self) -> PathBuf {
        self.root.as_ref().map(|r| r.path().to_path_buf()).unwrap_or_default()
    }

    fn add(&mut self, id: u64, port: u16, initial_cluster: Option<String>) -> Result<()> {
        let dir = self.root_path().join(format!("node-{id}"));
        let data_dir = dir.join("data");
        std::fs::create_dir_all(&data_dir)?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let node = Node { addr, data_dir, log: dir.join("node.log"), initial_cluster, child: None };
        self.nodes.insert(id, node);
        Ok(())
    }

    /// Starts node `id` (again), with its data dir.
    pub fn spawn(&mut self, id: u64) -> Result<()> {
        let bin = self.bin.clone();
        let (key, secret, master) = (self.admin_key.clone(), self.secret.clone(), self.master_key.clone());
        let workers = worker_threads(self.nodes.len());
        let node = self.nodes.get_mut(&id).ok_or_else(|| anyhow!("no node {id}"))?;
        if node.child.is_some() {
            bail!("node {id} is running");
        }
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&node.log)?;
        let mut cmd = Command::new(&bin);
        cmd.arg("serve")
            .args(["--node-id", &id.to_string(), "--listen", &node.addr.to_string()])
            .arg("--data-dir")
            .arg(&node.data_dir)
            .args(["--cluster-secret", &secret, "--allow-private-targets", "--rate-limit-per-minute", "1000000"]);
        if let Some(initial) = &node.initial_cluster {
            cmd.args(["--initial-cluster", initial]);
        }
        if !self.node_args.iter().any(|a| a.starts_with("--worker-threads")) {
            cmd.args(["--worker-threads", &workers.to_string()]);
        }
        cmd.args(&self.node_args);
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("RAFTCRON_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("RAFTCRON_ADMIN_KEY", key)
            .env("RAFTCRON_MASTER_KEY", master)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log));
        if let Some(filter) = &self.node_log {
            cmd.env("RAFTCRON_LOG", filter);
        }
        node.child = Some(cmd.spawn().with_context(|| format!("starting {}", bin.display()))?);
        Ok(())
    }

    /// Adds node `id` with an empty data dir and no `--initial-cluster` (it waits to be added);
    /// returns its address.
    pub fn spawn_idle(&mut self, id: u64) -> Result<SocketAddr> {
        self.add(id, free_port()?, None)?;
        self.spawn(id)?;
        self.nodes.get(&id).map(|n| n.addr).ok_or_else(|| anyhow!("no node {id}"))
    }

    /// SIGKILLs node `id` and reaps it.
    pub fn kill(&mut self, id: u64) -> Result<()> {
        let node = self.nodes.get_mut(&id).ok_or_else(|| anyhow!("no node {id}"))?;
        let mut child = node.child.take().ok_or_else(|| anyhow!("node {id} is not running"))?;
        child.kill()?;
        child.wait()?;
        Ok(())
    }

    /// SIGTERMs node `id` and waits for it to exit (SIGKILL after 10 s).
    pub fn terminate(&mut self, id: u64) -> Result<()> {
        let node = self.nodes.get_mut(&id).ok_or_else(|| anyhow!("no node {id}"))?;
        let Some(mut child) = node.child.take() else { return Ok(()) };
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.kill()?;
        child.wait()?;
        Ok(())
    }

    /// Stops every node (SIGTERM to all, then SIGKILL to those still up after 10 s) and removes
    /// the temp dir unless `keep`.
    pub fn stop(mut self, keep: bool) {
        for node in self.nodes.values() {
            if let Some(child) = &node.child {
                let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for node in self.nodes.values_mut() {
            let Some(mut child) = node.child.take() else { continue };
            while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        if keep {
            if let Some(root) = self.root.take() {
                crate::progress::note(&format!("kept the local cluster's files in {}", root.keep().display()));
            }
        }
    }

    pub fn running(&self) -> Vec<u64> {
        self.nodes.iter().filter(|(_, n)| n.child.is_some()).map(|(id, _)| *id).collect()
    }

    pub fn url(&self, id: u64) -> String {
        self.nodes.get(&id).map(|n| format!("http://{}", n.addr)).unwrap_or_default()
    }

    pub fn pid(&self, id: u64) -> Option<u32> {
        self.nodes.get(&id)?.child.as_ref().map(Child::id)
    }

    pub fn data_dir(&self, id: u64) -> Option<PathBuf> {
        self.nodes.get(&id).map(|n| n.data_dir.clone())
    }

    /// A client of node `id` only (no failover), with the admin key.
    pub fn client(&self, id: u64) -> Result<Client> {
        Ok(Client::builder(vec![self.url(id)], self.admin_key.clone()).timeout(Duration::from_secs(10)).build()?)
    }

    /// Waits until every running node serves `/readyz` and they agree on a running leader.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<u64> {
        let deadline = Instant::now() + timeout;
        let mut last = anyhow!("not polled yet");
        let rounds = timeout.as_millis() / POLL.as_millis() + 1;
        for _ in 0..rounds {
            if Instant::now() >= deadline {
                break;
            }
            self.check_alive()?;
            match self.probe_ready().await {
                Ok(leader) => return Ok(leader),
                Err(e) => last = e,
            }
            tokio::time::sleep(POLL).await;
        }
        bail!("nodes {:?} not ready after {timeout:?}: {last:#}", self.running())
    }

    async fn probe_ready(&self) -> Result<u64> {
        let mut leaders = Vec::new();
        for id in self.running() {
            let c = Client::builder(vec![self.url(id)], self.admin_key.clone())
                .timeout(Duration::from_secs(2))
                .connect_timeout(Duration::from_millis(500))
                .build()?;
            let ready = c.readyz(&self.url(id)).await?;
            if ready.status != "ok" && ready.status != "ready" {
                bail!("node {id}: {} {:?}", ready.status, ready.reason);
            }
            let status = c.cluster().await?;
            let leader = status.members.iter().find(|m| m.role == MemberRole::Leader).map(|m| m.node_id);
            leaders.push(leader.or(status.leader_id));
        }
        match leaders.first().copied().flatten() {
            Some(l) if leaders.iter().all(|x| *x == Some(l)) && self.running().contains(&l) => Ok(l),
            _ => bail!("no agreed leader yet: {leaders:?}"),
        }
    }

    fn check_alive(&mut self) -> Result<()> {
        for (id, node) in &mut self.nodes {
            if let Some(child) = node.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    node.child = None;
                    bail!("node {id} exited ({status}); see {}", node.log.display());
                }
            }
        }
        Ok(())
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for node in self.nodes.values_mut() {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}
