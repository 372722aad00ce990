//! The harness of the multi-node tests: real `raftcron serve` processes on 127.0.0.1, each with
//! its own data directory and log file in a temp dir, and a small HTTP client per node.
//!
//! Rules it keeps: ports come from the OS (bind :0, release), every wait polls a condition under
//! a deadline, and every process it starts is SIGKILLed when the [`TestCluster`] drops, panic or
//! not. Unless the test called [`TestCluster::stop`], dropping it prints the tail of every node's
//! log (so a failing test shows what the nodes said).
//!
//! Knobs (environment): `RAFTCRON_BIN` (the binary), `RAFTCRON_TEST_LOG` (passed to the nodes as
//! `RAFTCRON_LOG`), `RAFTCRON_TEST_KEEP=1` (keep the temp dirs and print where they are).

#![allow(dead_code)]

use std::collections::hash_map::RandomState;
use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use base64::Engine;
use serde_json::{json, Value};

/// Raft timing for the tests: the CI machine is slow and runs debug builds.
pub const ELECTION_TIMEOUT_MS: u64 = 1000;
pub const HEARTBEAT_MS: u64 = 200;

/// How long a fresh (or fully restarted) cluster may take to elect a leader and install the key.
pub const FORM_TIMEOUT: Duration = Duration::from_secs(60);
/// Default deadline of the waits in the tests.
pub const WAIT: Duration = Duration::from_secs(30);
/// Pause between two polls.
pub const POLL: Duration = Duration::from_millis(100);
/// Upper bound of a single HTTP request (a write waits at most ~10 s for commit on the node).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// Upper bound of one probe inside a wait loop.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Lines of each node's log printed when a test fails.
const LOG_TAIL_LINES: usize = 60;

/// A random master key: 32 bytes from the OS, in base64.
pub fn random_master_key() -> String {
    let bytes: Vec<u8> = (0..4).flat_map(|_| RandomState::new().build_hasher().finish().to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A random hex string (std only: `RandomState` is seeded from the OS).
fn random_hex(words: usize) -> String {
    (0..words).map(|_| format!("{:016x}", RandomState::new().build_hasher().finish())).collect()
}

/// The `raftcron` binary: `RAFTCRON_BIN`, else `$CARGO_TARGET_DIR/debug/raftcron`, else next to
/// the test executable (`target/debug/deps/<test>` -> `target/debug/raftcron`).
pub fn binary() -> PathBuf {
    workspace_binary("raftcron", "RAFTCRON_BIN", "cargo build -p raftcron-node --bin raftcron")
}

/// A binary of the workspace: `$env_var`, else `$CARGO_TARGET_DIR/debug/<name>`, else next to the
/// test executable. `build` is the command that makes it, for the message when it is missing.
#[allow(clippy::panic)] // A missing binary is a setup error: stop with the command that fixes it.
pub fn workspace_binary(name: &str, env_var: &str, build: &str) -> PathBuf {
    let name = format!("{name}{}", std::env::consts::EXE_SUFFIX);
    if let Some(p) = std::env::var_os(env_var) {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "{env_var}={} is not a file", p.display());
        return p;
    }
    let mut candidates = Vec::new();
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        candidates.push(PathBuf::from(dir).join("debug").join(&name));
    }
    if let Ok(exe) = std::env::current_exe() {
        if let Some(debug) = exe.parent().and_then(|deps| deps.parent()) {
            candidates.push(debug.join(&name));
        }
    }
    match candidates.iter().find(|p| p.is_file()) {
        Some(p) => p.clone(),
        None => panic!(
            "the {name} binary was not found (looked at {candidates:?}); build it first with `{build}` \
             (with the same CARGO_TARGET_DIR), or set {env_var}"
        ),
    }
}

/// Serves `app` on an ephemeral loopback port (a sink or webhook of a test); abort the handle
/// when done.
pub async fn serve_local(app: axum::Router) -> Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((addr, task))
}

/// `n` distinct free loopback ports (all bound at once so they differ, then released).
fn free_ports(n: usize) -> Result<Vec<u16>> {
    let listeners = (0..n).map(|_| TcpListener::bind("127.0.0.1:0")).collect::<std::io::Result<Vec<_>>>()?;
    listeners.iter().map(|l| Ok(l.local_addr()?.port())).collect()
}

/// A valid job create body (a yearly schedule, so nothing fires during a test).
pub fn job(name: &str) -> Value {
    json!({
        "name": name,
        "url": "https://example.com/hooks/raftcron-test",
        "method": "POST",
        "cron_expression": "0 0 1 1 *",
    })
}

/// Polls `probe` until it returns `Ok`, at most `timeout` in all (each probe is bounded too).
/// `Err` means "not yet"; the last one is reported on timeout.
pub async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let start = Instant::now();
    let deadline = start + timeout;
    let max_attempts = (timeout.as_millis() / POLL.as_millis()).max(1) + 10;
    let mut last = anyhow!("no attempt made");
    for _ in 0..max_attempts {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match tokio::time::timeout(left, probe()).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => last = e,
            Err(_) => last = anyhow!("the probe did not finish in time"),
        }
        let left = deadline.saturating_duration_since(Instant::now());
        tokio::time::sleep(POLL.min(left)).await;
    }
    bail!("timed out after {:.1?} waiting for {what}; last attempt: {last:#}", start.elapsed())
}

// ---------------------------------------------------------------------------------------------
// HTTP client
// ---------------------------------------------------------------------------------------------

/// A node's answer: status, body text and (when it parses) JSON.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub content_type: Option<String>,
    pub text: String,
    /// `Value::Null` when the body is not JSON.
    pub json: Value,
    /// `METHOD path` of the request, for messages.
    pub request: String,
    pub headers: reqwest::header::HeaderMap,
}

impl Resp {
    /// Fails (with the whole answer) unless the status is `status`.
    pub fn expect(self, status: u16) -> Result<Resp> {
        ensure!(
            self.status == status,
            "{}: expected status {status}, got {} with body {}",
            self.request,
            self.status,
            truncate(&self.text, 600)
        );
        Ok(self)
    }

    /// The `error` code of an error body.
    pub fn error_code(&self) -> Option<&str> {
        self.json.get("error").and_then(Value::as_str)
    }

    pub fn message(&self) -> &str {
        self.json.get("message").and_then(Value::as_str).unwrap_or("")
    }

    /// Fails unless this is the JSON error `{"error": code, "message": "..."}` with `status`.
    pub fn expect_error(self, status: u16, code: &str) -> Result<Resp> {
        let r = self.expect(status)?;
        ensure!(
            r.error_code() == Some(code),
            "{}: expected error code {code}, got body {}",
            r.request,
            truncate(&r.text, 600)
        );
        ensure!(
            r.json.get("message").is_some_and(Value::is_string),
            "{}: the error body has no string message: {}",
            r.request,
            truncate(&r.text, 600)
        );
        ensure!(
            r.content_type.as_deref().is_some_and(|c| c.starts_with("application/json")),
            "{}: error answered with content type {:?}",
            r.request,
            r.content_type
        );
        Ok(r)
    }

    /// The value under `key` of the JSON body.
    pub fn field(&self, key: &str) -> Result<Value> {
        self.json
            .get(key)
            .cloned()
            .ok_or_else(|| anyhow!("{}: no {key:?} in {}", self.request, truncate(&self.text, 600)))
    }
}

pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...({} bytes)", &s[..end], s.len())
}

/// How a request authenticates.
#[derive(Debug, Clone)]
pub enum Auth {
    None,
    Bearer(String),
    XApiKey(String),
    ApiKey(String),
    Basic(String),
}

/// A small client for one node.
#[derive(Clone)]
pub struct Api {
    pub node_id: u64,
    pub base: String,
    auth: Auth,
    http: reqwest::Client,
    timeout: Duration,
}

/// A raw request: method, path (with query), extra headers, body bytes.
#[derive(Debug, Clone, Default)]
pub struct RawRequest {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
}

impl Api {
    /// The same node with another way of authenticating.
    pub fn with_auth(&self, auth: Auth) -> Api {
        Api { auth, ..self.clone() }
    }

    /// The same node without any key.
    pub fn anonymous(&self) -> Api {
        self.with_auth(Auth::None)
    }

    /// The same node with another per-request timeout.
    pub fn with_timeout(&self, timeout: Duration) -> Api {
        Api { timeout, ..self.clone() }
    }

    pub async fn raw(&self, req: RawRequest) -> Result<Resp> {
        let label = format!("{} node {}{}", req.method, self.node_id, req.path);
        let method = reqwest::Method::from_bytes(req.method.as_bytes()).context("method")?;
        let mut b = self.http.request(method, format!("{}{}", self.base, req.path)).timeout(self.timeout);
        b = match &self.auth {
            Auth::None => b,
            Auth::Bearer(k) => b.header("Authorization", format!("Bearer {k}")),
            Auth::ApiKey(k) => b.header("Authorization", format!("ApiKey {k}")),
            Auth::XApiKey(k) => b.header("X-Api-Key", k),
            Auth::Basic(k) => b.header(
                "Authorization",
                format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{k}:"))),
            ),
        };
        for (k, v) in &req.headers {
            b = b.header(k, v);
        }
        if let Some(body) = req.body {
            b = b.body(body);
        }
        let r = b.send().await.with_context(|| format!("{label}: request failed"))?;
        let status = r.status().as_u16();
        let content_type = r.headers().get("content-type").and_then(|v| v.to_str().ok()).map(str::to_string);
        let headers = r.headers().clone();
        let text = r.text().await.with_context(|| format!("{label}: reading the answer"))?;
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok(Resp { status, content_type, text, json, request: label, headers })
    }

    pub async fn send(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Resp> {
        let mut req = RawRequest { method: method.into(), path: path.into(), ..RawRequest::default() };
        if let Some(v) = body {
            req.headers.push(("Content-Type".into(), "application/json".into()));
            req.body = Some(serde_json::to_vec(v)?);
        }
        self.raw(req).await
    }

    pub async fn get(&self, path: &str) -> Result<Resp> {
        self.send("GET", path, None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Resp> {
        self.send("POST", path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: &Value) -> Result<Resp> {
        self.send("PATCH", path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Result<Resp> {
        self.send("DELETE", path, None).await
    }

    /// `GET /api/v1/cluster` -> the `cluster` object.
    pub async fn cluster_status(&self) -> Result<Value> {
        self.get("/api/v1/cluster").await?.expect(200)?.field("cluster")
    }

    /// `POST /api/v1/jobs`, expecting 201 -> the job.
    pub async fn create_job(&self, body: &Value) -> Result<Value> {
        self.post("/api/v1/jobs", body).await?.expect(201)?.field("job")
    }

    /// `GET /api/v1/jobs/{id}` (linearizable, or `stale`).
    pub async fn get_job(&self, id: &str, stale: bool) -> Result<Resp> {
        let q = if stale { "?consistency=stale" } else { "" };
        self.get(&format!("/api/v1/jobs/{id}{q}")).await
    }

    /// Every job, paging through the list (linearizable, or `stale`), sorted by id.
    pub async fn all_jobs(&self, stale: bool) -> Result<Vec<Value>> {
        let c = if stale { "&consistency=stale" } else { "" };
        let mut out = Vec::new();
        for page in 1..=100 {
            let r = self.get(&format!("/api/v1/jobs?page={page}&page_size=500{c}")).await?.expect(200)?;
            let jobs = r.field("jobs")?;
            let jobs = jobs.as_array().ok_or_else(|| anyhow!("jobs is not an array"))?;
            let total = r.field("total_count")?.as_u64().ok_or_else(|| anyhow!("total_count is not a number"))?;
            out.extend(jobs.iter().cloned());
            if jobs.is_empty() || out.len() as u64 >= total {
                out.sort_by_key(job_id);
                return Ok(out);
            }
        }
        bail!("more than 100 pages of jobs")
    }
}

/// A job's `id`.
pub fn job_id(job: &Value) -> String {
    job.get("id").and_then(Value::as_str).unwrap_or_default().to_string()
}

/// The member ids of a `cluster` object.
pub fn member_ids(cluster: &Value) -> Vec<u64> {
    let mut ids: Vec<u64> = cluster
        .get("members")
        .and_then(Value::as_array)
        .map(|ms| ms.iter().filter_map(|m| m.get("node_id").and_then(Value::as_u64)).collect())
        .unwrap_or_default();
    ids.sort_unstable();
    ids
}

/// The member `id` of a `cluster` object.
pub fn member(cluster: &Value, id: u64) -> Option<Value> {
    cluster
        .get("members")
        .and_then(Value::as_array)
        .and_then(|ms| ms.iter().find(|m| m.get("node_id").and_then(Value::as_u64) == Some(id)).cloned())
}

pub fn leader_of(cluster: &Value) -> Option<u64> {
    cluster.get("leader_id").and_then(Value::as_u64)
}

/// Folds log lines that repeat one of the last few lines (ignoring digits: timestamps, ids)
/// into one "[... N repeated lines ...]" marker.
fn fold_repeats<'a>(lines: impl Iterator<Item = &'a str>) -> Vec<String> {
    const WINDOW: usize = 8;
    let mut out = Vec::new();
    let mut recent: std::collections::VecDeque<String> = std::collections::VecDeque::new();
    let mut folded = 0usize;
    for line in lines {
        let shape: String = line.chars().filter(|c| !c.is_ascii_digit()).collect();
        if recent.contains(&shape) {
            folded += 1;
            continue;
        }
        if folded > 0 {
            out.push(format!("    [... {folded} similar lines folded ...]"));
            folded = 0;
        }
        out.push(line.to_string());
        recent.push_back(shape);
        if recent.len() > WINDOW {
            recent.pop_front();
        }
    }
    if folded > 0 {
        out.push(format!("    [... {folded} similar lines folded ...]"));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------------

/// One node: its address, files and (when running) process.
pub struct Node {
    pub id: u64,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    pub log_path: PathBuf,
    /// `--initial-cluster`, or `None` for a node that waits to be added.
    initial_cluster: Option<String>,
    child: Option<Child>,
    starts: u32,
}

/// A set of `raftcron` processes forming (or joining) one cluster.
pub struct TestCluster {
    root: Option<tempfile::TempDir>,
    nodes: BTreeMap<u64, Node>,
    pub admin_key: String,
    pub cluster_secret: String,
    /// The master key every node gets in RAFTCRON_MASTER_KEY (base64 of 32 random bytes)...
    pub master_key: String,
    /// Extra environment of one node, applied last (for example its own RAFTCRON_MASTER_KEY).
    pub node_env: BTreeMap<u64, Vec<(String, String)>>,
    /// `http`, or `https` for a cluster started with [`TestCluster::start_tls`].
    scheme: &'static str,
    http: reqwest::Client,
    bin: PathBuf,
    passed: bool,
    /// Flags added to every node's command line.
    extra_args: Vec<String>,
}

impl TestCluster {
    /// Starts `n` nodes (ids 1..=n) with one `--initial-cluster`, and waits until every node is
    /// ready, accepts the admin key and agrees on the leader.
    pub async fn start(n: u64) -> Result<TestCluster> {
        TestCluster::start_with(n, &[]).await
    }

    /// Like [`TestCluster::start`], with `extra` flags on every node's command line.
    pub async fn start_with(n: u64, extra: &[&str]) -> Result<TestCluster> {
        TestCluster::new()?.start_prepared(n, extra).await
    }

    /// Like [`TestCluster::start_with`], talking HTTPS to the nodes and trusting only `ca_pem`
    /// (`extra` carries the nodes' TLS flags).
    /// Like [`TestCluster::start_with`], with `env` set on every node from its first start.
    pub async fn start_with_env(n: u64, extra: &[&str], env: &[(&str, &str)]) -> Result<TestCluster> {
        let mut c = TestCluster::new()?;
        for id in 1..=n {
            c.node_env.insert(id, env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
        }
        c.start_prepared(n, extra).await
    }

    /// Like [`TestCluster::start_with`], with `env` set on the nodes `on` from their first start.
    pub async fn start_with_env_on(n: u64, extra: &[&str], on: &[u64], env: &[(&str, &str)]) -> Result<TestCluster> {
        let mut c = TestCluster::new()?;
        for id in on {
            c.node_env.insert(*id, env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
        }
        c.start_prepared(n, extra).await
    }

    pub async fn start_tls(n: u64, extra: &[&str], ca_pem: &[u8]) -> Result<TestCluster> {
        let mut c = TestCluster::new()?;
        c.http = reqwest::Client::builder()
            .no_proxy()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(ca_pem)?)
            .connect_timeout(Duration::from_secs(2))
            .timeout(REQUEST_TIMEOUT)
            .pool_max_idle_per_host(0)
            .build()?;
        c.scheme = "https";
        c.start_prepared(n, extra).await
    }

    async fn start_prepared(mut self, n: u64, extra: &[&str]) -> Result<TestCluster> {
        let mut c = {
            self.extra_args = extra.iter().map(|s| s.to_string()).collect();
            self
        };
        let ports = free_ports(n as usize)?;
        let initial =
            (1..=n).zip(&ports).map(|(id, port)| format!("{id}=127.0.0.1:{port}")).collect::<Vec<_>>().join(",");
        for (id, port) in (1..=n).zip(ports) {
            c.add_node_files(id, port, Some(initial.clone()))?;
        }
        for id in 1..=n {
            c.spawn(id)?;
        }
        let started = Instant::now();
        let leader = c.wait_ready(FORM_TIMEOUT).await.context("the cluster did not form")?;
        eprintln!("[harness] {n}-node cluster formed in {:.1?}, leader is node {leader}", started.elapsed());
        Ok(c)
    }

    fn new() -> Result<TestCluster> {
        let root = tempfile::Builder::new().prefix("raftcron-it-").tempdir()?;
        let http = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_secs(2))
            .timeout(REQUEST_TIMEOUT)
            // A fresh connection per request: no stale pooled socket to a killed node.
            .pool_max_idle_per_host(0)
            .build()?;
        Ok(TestCluster {
            root: Some(root),
            nodes: BTreeMap::new(),
            // 40 printable characters, no spaces (not in the rcn_ format, so no checksum).
            admin_key: format!("itk-{}", &random_hex(3)[..36]),
            cluster_secret: format!("its-{}", random_hex(2)),
            master_key: random_master_key(),
            node_env: BTreeMap::new(),
            scheme: "http",
            http,
            bin: binary(),
            passed: false,
            extra_args: Vec::new(),
        })
    }

    fn add_node_files(&mut self, id: u64, port: u16, initial_cluster: Option<String>) -> Result<()> {
        let root = self.root.as_ref().ok_or_else(|| anyhow!("no temp dir"))?.path();
        let dir = root.join(format!("node-{id}"));
        let data_dir = dir.join("data");
        std::fs::create_dir_all(&data_dir)?;
        let node = Node {
            id,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            data_dir,
            log_path: dir.join("node.log"),
            initial_cluster,
            child: None,
            starts: 0,
        };
        ensure!(self.nodes.insert(id, node).is_none(), "node {id} exists already");
        Ok(())
    }

    /// Starts the process of node `id` (same command and data dir every time).
    fn spawn(&mut self, id: u64) -> Result<()> {
        let bin = self.bin.clone();
        let extra = self.extra_args.clone();
        let (key, secret) = (self.admin_key.clone(), self.cluster_secret.clone());
        let master = self.master_key.clone();
        let node_env = self.node_env.get(&id).cloned().unwrap_or_default();
        let node = self.nodes.get_mut(&id).ok_or_else(|| anyhow!("no node {id}"))?;
        ensure!(node.child.is_none(), "node {id} is already running");
        node.starts += 1;
        let mut log = OpenOptions::new().create(true).append(true).open(&node.log_path)?;
        writeln!(log, "==== [harness] start #{} of node {id} on {} ====", node.starts, node.addr)?;
        let mut cmd = Command::new(&bin);
        cmd.arg("serve")
            .args(["--node-id", &id.to_string()])
            .args(["--listen", &node.addr.to_string()])
            .arg("--data-dir")
            .arg(&node.data_dir)
            .args(["--cluster-secret", &secret])
            .args(["--election-timeout-ms", &ELECTION_TIMEOUT_MS.to_string()])
            .args(["--heartbeat-ms", &HEARTBEAT_MS.to_string()])
            .args(&extra);
        if let Some(initial) = &node.initial_cluster {
            cmd.args(["--initial-cluster", initial]);
        }
        // Nothing from the test's own environment configures the node.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("RAFTCRON_") {
                cmd.env_remove(k);
            }
        }
        if let Ok(filter) = std::env::var("RAFTCRON_TEST_LOG") {
            cmd.env("RAFTCRON_LOG", filter);
        }
        // The harness polls every node with the admin key while the cluster forms, before the
        // key's bootstrap reached that node: each poll is a failed authentication from
        // 127.0.0.1, and a slow formation would exhaust the default budget (30 a minute) that a
        // test's own 401 checks share. A test of the limit passes `--auth-failures-per-minute`,
        // which wins over this.
        cmd.env("RAFTCRON_ADMIN_KEY", key)
            .env("RAFTCRON_MASTER_KEY", master)
            .env("RAFTCRON_AUTH_FAILURES_PER_MINUTE", "100000")
            .envs(node_env)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log));
        let child = cmd.spawn().with_context(|| format!("starting {}", bin.display()))?;
        node.child = Some(child);
        Ok(())
    }

    /// A cluster with no node yet (add them with [`TestCluster::add_idle`]).
    pub fn empty() -> Result<TestCluster> {
        TestCluster::new()
    }

    /// Reserves node `id` (a port, an empty data dir, no `--initial-cluster`) without starting
    /// it, so the test can fill its data dir first; returns its address and data dir.
    pub fn add_idle(&mut self, id: u64) -> Result<(SocketAddr, PathBuf)> {
        let port = free_ports(1)?[0];
        self.add_node_files(id, port, None)?;
        let node = self.nodes.get(&id).ok_or_else(|| anyhow!("no node {id}"))?;
        Ok((node.addr, node.data_dir.clone()))
    }

    /// Starts node `id` reserved with [`TestCluster::add_idle`]; returns once it serves `/healthz`.
    pub async fn launch(&mut self, id: u64) -> Result<()> {
        self.spawn(id)?;
        let api = self.client(id);
        wait_until(&format!("node {id} to serve /healthz"), WAIT, || {
            let api = api.clone();
            async move { api.anonymous().get("/healthz").await?.expect(200).map(|_| ()) }
        })
        .await
    }

    /// Starts a new node `id` with an empty data dir and no `--initial-cluster`: it waits to be
    /// added. Returns once it serves `/healthz`.
    pub async fn start_idle(&mut self, id: u64) -> Result<()> {
        let port = free_ports(1)?[0];
        self.add_node_files(id, port, None)?;
        self.spawn(id)?;
        let api = self.client(id);
        wait_until(&format!("node {id} to serve /healthz"), WAIT, || {
            let api = api.clone();
            async move { api.anonymous().get("/healthz").await?.expect(200).map(|_| ()) }
        })
        .await
    }

    /// SIGKILLs node `id` and reaps it.
    pub fn kill(&mut self, id: u64) -> Result<()> {
        let node = self.nodes.get_mut(&id).ok_or_else(|| anyhow!("no node {id}"))?;
        let mut child = node.child.take().ok_or_else(|| anyhow!("node {id} is not running"))?;
        child.kill()?;
        child.wait()?;
        let mut log = OpenOptions::new().append(true).open(&node.log_path)?;
        writeln!(log, "==== [harness] node {id} killed (SIGKILL) ====")?;
        Ok(())
    }

    /// The data directory of node `id`.
    pub fn data_dir(&self, id: u64) -> Option<PathBuf> {
        self.nodes.get(&id).map(|n| n.data_dir.clone())
    }

    /// The log of node `id` so far.
    pub fn log_text(&self, id: u64) -> String {
        self.nodes.get(&id).and_then(|n| std::fs::read_to_string(&n.log_path).ok()).unwrap_or_default()
    }

    /// Freezes node `id` (SIGSTOP): it keeps its sockets but runs nothing.
    pub fn pause(&mut self, id: u64) -> Result<()> {
        self.signal(id, "STOP")
    }

    /// Thaws node `id` (SIGCONT).
    pub fn resume(&mut self, id: u64) -> Result<()> {
        self.signal(id, "CONT")
    }

    fn signal(&mut self, id: u64, sig: &str) -> Result<()> {
        let node = self.nodes.get(&id).ok_or_else(|| anyhow!("no node {id}"))?;
        let pid = node.child.as_ref().ok_or_else(|| anyhow!("node {id} is not running"))?.id();
        let status = Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status()?;
        ensure!(status.success(), "kill -{sig} {pid} failed");
        let mut log = OpenOptions::new().append(true).open(&node.log_path)?;
        writeln!(log, "==== [harness] node {id} got SIG{sig} ====")?;
        Ok(())
    }

    /// Stops node `id` cleanly (SIGTERM) and waits (at most 30 s) until it exited.
    pub async fn terminate(&mut self, id: u64) -> Result<()> {
        self.signal(id, "TERM")?;
        self.wait_exit(id, Duration::from_secs(30)).await.map(|_| ())
    }

    /// Sends node `id` SIGTERM without waiting (see [`TestCluster::wait_exit`]).
    pub fn signal_term(&mut self, id: u64) -> Result<()> {
        self.signal(id, "TERM")
    }

    /// Restarts node `id` with the same command and data dir.
    pub fn restart(&mut self, id: u64) -> Result<()> {
        self.spawn(id)
    }

    /// Waits (at most `timeout`) for node `id` to exit by itself, reaps it and returns its exit
    /// code (`-1` for a signal).
    pub async fn wait_exit(&mut self, id: u64, timeout: Duration) -> Result<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            let node = self.nodes.get_mut(&id).ok_or_else(|| anyhow!("no node {id}"))?;
            let child = node.child.as_mut().ok_or_else(|| anyhow!("node {id} is not running"))?;
            if let Some(status) = child.try_wait()? {
                node.child = None;
                return Ok(status.code().unwrap_or(-1));
            }
            ensure!(Instant::now() < deadline, "node {id} still runs after {timeout:?}");
            tokio::time::sleep(POLL).await;
        }
    }

    /// Fails if a node that should run has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        for node in self.nodes.values_mut() {
            if let Some(child) = node.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    node.child = None;
                    bail!("node {} exited unexpectedly ({status}); see its log {}", node.id, node.log_path.display());
                }
            }
        }
        Ok(())
    }

    /// Ids of the nodes whose process runs.
    pub fn running(&self) -> Vec<u64> {
        self.nodes.values().filter(|n| n.child.is_some()).map(|n| n.id).collect()
    }

    pub fn addr(&self, id: u64) -> SocketAddr {
        self.nodes.get(&id).map(|n| n.addr).unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 1)))
    }

    /// A client of node `id` with the admin key (as a Bearer token).
    pub fn client(&self, id: u64) -> Api {
        Api {
            node_id: id,
            base: format!("{}://{}", self.scheme, self.addr(id)),
            auth: Auth::Bearer(self.admin_key.clone()),
            http: self.http.clone(),
            timeout: REQUEST_TIMEOUT,
        }
    }

    /// Clients of every running node.
    pub fn clients(&self) -> Vec<Api> {
        self.running().into_iter().map(|id| self.client(id)).collect()
    }

    /// Waits until every running node is ready (`/readyz` 200), accepts the admin key and names
    /// the same leader, itself running. Returns the leader.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<u64> {
        let deadline = Instant::now() + timeout;
        let mut last = anyhow!("not polled yet");
        let max_rounds = timeout.as_millis() / POLL.as_millis() + 10;
        for _ in 0..max_rounds {
            self.check_alive()?;
            if Instant::now() >= deadline {
                break;
            }
            match self.probe_ready().await {
                Ok(leader) => return Ok(leader),
                Err(e) => last = e,
            }
            tokio::time::sleep(POLL).await;
        }
        bail!("timed out after {timeout:?} waiting for nodes {:?} to be ready; last: {last:#}", self.running())
    }

    async fn probe_ready(&self) -> Result<u64> {
        let running = self.running();
        ensure!(!running.is_empty(), "no node is running");
        let mut leaders = BTreeMap::new();
        for id in &running {
            let api = self.client(*id).with_timeout(PROBE_TIMEOUT);
            let r = api.anonymous().get("/readyz").await?;
            ensure!(r.status == 200, "node {id} /readyz: {} {}", r.status, r.text);
            let status = api.cluster_status().await?;
            leaders.insert(*id, leader_of(&status));
        }
        let first = leaders.values().next().copied().flatten();
        match first {
            Some(l) if leaders.values().all(|v| *v == Some(l)) && running.contains(&l) => Ok(l),
            _ => bail!("nodes do not agree on a running leader: {leaders:?}"),
        }
    }

    /// The leader the running nodes agree on (waits for one).
    pub async fn leader(&self) -> Result<u64> {
        let (apis, running) = (self.clients(), self.running());
        wait_until("the running nodes to agree on a running leader", WAIT, || {
            let (apis, running) = (apis.clone(), running.clone());
            async move {
                let mut leaders = BTreeMap::new();
                for api in &apis {
                    let status = api.with_timeout(PROBE_TIMEOUT).cluster_status().await?;
                    leaders.insert(api.node_id, leader_of(&status));
                }
                match leaders.values().next().copied().flatten() {
                    Some(l) if leaders.values().all(|v| *v == Some(l)) && running.contains(&l) => Ok(l),
                    _ => bail!("no agreed running leader: {leaders:?}"),
                }
            }
        })
        .await
    }

    /// The running nodes other than the leader.
    pub async fn followers(&self) -> Result<Vec<u64>> {
        let leader = self.leader().await?;
        Ok(self.running().into_iter().filter(|id| *id != leader).collect())
    }

    /// A running node other than the leader.
    pub async fn follower(&self) -> Result<u64> {
        self.followers().await?.first().copied().ok_or_else(|| anyhow!("no follower is running"))
    }

    /// Prints the tail of every node's log to stderr (repeated lines folded).
    pub fn dump_logs(&self) {
        for node in self.nodes.values() {
            let text = std::fs::read_to_string(&node.log_path).unwrap_or_else(|e| format!("(cannot read: {e})"));
            let lines = fold_repeats(text.lines());
            let from = lines.len().saturating_sub(LOG_TAIL_LINES);
            eprintln!(
                "----- node {} ({}): last {} of {} (folded) log lines of {} -----",
                node.id,
                node.addr,
                lines.len() - from,
                lines.len(),
                node.log_path.display()
            );
            for line in &lines[from..] {
                eprintln!("{line}");
            }
        }
        eprintln!("----- end of node logs -----");
    }

    /// Lines of the node logs that report a panic.
    pub fn panics_in_logs(&self) -> Vec<String> {
        let mut out = Vec::new();
        for node in self.nodes.values() {
            let text = std::fs::read_to_string(&node.log_path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            for (i, line) in lines.iter().enumerate() {
                if line.contains("panicked at") {
                    let next = lines.get(i + 1).copied().unwrap_or_default();
                    out.push(format!("node {}: {line} {}", node.id, truncate(next, 400)));
                }
            }
        }
        out
    }

    /// Ends a passing test: checks that no node crashed, then kills every node (without dumping
    /// the logs).
    pub fn stop(mut self) -> Result<()> {
        self.check_alive()?;
        let panics = self.panics_in_logs();
        ensure!(panics.is_empty(), "a node panicked during the test:\n  {}", panics.join("\n  "));
        self.passed = true;
        Ok(())
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for node in self.nodes.values_mut() {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if !self.passed || std::thread::panicking() {
            self.dump_logs();
        }
        if std::env::var_os("RAFTCRON_TEST_KEEP").is_some() {
            if let Some(root) = self.root.take() {
                eprintln!("[harness] kept the node dirs in {}", root.keep().display());
            }
        }
    }
}
