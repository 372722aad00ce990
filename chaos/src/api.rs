//! A thin HTTP client bound to one node, with the classification the history needs: a request
//! that never left is *failed*, a request whose answer was lost (timeout, cut connection, 5xx)
//! is *unknown*, and only a 2xx is *ok*.
//!
//! It talks to 127.0.0.1 only (with `--netns`, to the nodes' addresses in the run's own
//! namespaces), opens a fresh connection per request (no stale pooled socket to
//! a killed node, so "refused" reliably means "not sent"), and never retries a write: retries
//! would blur the outcome the checkers judge. Wire shapes come from `raftcron_client`.

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use raftcron_client::{ClusterEnvelope, ClusterStatus, ErrorBody, Job, JobList, Run, RunList, ShardList};
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::history::Outcome;

/// The header that carries the cluster secret on internal routes.
pub const CLUSTER_TOKEN_HEADER: &str = "X-Raftcron-Cluster-Token";

/// A node's answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub text: String,
    /// The members a key write names as not having applied it in time
    /// (`Raftcron-Unconfirmed-Nodes`); empty when the header is absent.
    pub unconfirmed: Vec<u64>,
}

impl Answer {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The error body, when there is one.
    pub fn error(&self) -> Option<ErrorBody> {
        serde_json::from_str(&self.text).ok()
    }

    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_str(&self.text)
            .with_context(|| format!("unexpected answer ({}): {}", self.status, truncate(&self.text, 300)))
    }

    /// What this answer means for a write: 2xx ok, 4xx failed, anything else unknown.
    pub fn outcome(&self) -> Outcome {
        match self.status {
            200..=299 => Outcome::Ok,
            400..=499 => Outcome::Failed(format!("{} {}", self.status, truncate(&self.text, 160))),
            _ => Outcome::Unknown(format!("{} {}", self.status, truncate(&self.text, 160))),
        }
    }

    /// The 404 the router gives for a route this node does not have.
    pub fn is_missing_route(&self) -> bool {
        self.status == 404 && self.error().is_some_and(|e| e.message == "no such route")
    }
}

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The connection could not be opened: nothing was sent.
    #[error("not sent: {0}")]
    NotSent(String),
    /// Sent (or possibly sent), and no complete answer came back.
    #[error("no answer: {0}")]
    Lost(String),
}

impl SendError {
    pub fn outcome(&self) -> Outcome {
        match self {
            SendError::NotSent(e) => Outcome::Failed(format!("not sent: {}", truncate(e, 160))),
            SendError::Lost(e) => Outcome::Unknown(format!("no answer: {}", truncate(e, 160))),
        }
    }
}

/// The outcome of a write attempt.
pub fn outcome_of(r: &Result<Answer, SendError>) -> Outcome {
    match r {
        Ok(a) => a.outcome(),
        Err(e) => e.outcome(),
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
    format!("{}...", &s[..end])
}

/// A client of one node with one key.
#[derive(Debug, Clone)]
pub struct NodeApi {
    pub id: u64,
    pub base: String,
    key: String,
    http: reqwest::Client,
}

/// The shared HTTP client: no proxy, a fresh connection per request.
pub fn http_client() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(1))
        .pool_max_idle_per_host(0)
        .build()
        .context("building the HTTP client")
}

impl NodeApi {
    pub fn new(id: u64, addr: std::net::SocketAddr, key: &str, http: reqwest::Client) -> NodeApi {
        NodeApi { id, base: format!("http://{addr}"), key: key.to_string(), http }
    }

    /// The same node with another API key.
    pub fn with_key(&self, key: &str) -> NodeApi {
        NodeApi { key: key.to_string(), ..self.clone() }
    }

    /// One request; `token` sends the cluster secret instead of the API key.
    pub async fn request<B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        timeout: Duration,
        token: Option<&str>,
    ) -> Result<Answer, SendError> {
        let mut req = self.http.request(method, format!("{}{}", self.base, path)).timeout(timeout);
        req = match token {
            Some(t) => req.header(CLUSTER_TOKEN_HEADER, t),
            None => req.bearer_auth(&self.key),
        };
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| {
            if e.is_connect() {
                SendError::NotSent(e.to_string())
            } else {
                SendError::Lost(e.to_string())
            }
        })?;
        let status = resp.status().as_u16();
        let unconfirmed = raftcron_client::unconfirmed_nodes(resp.headers());
        let text = resp.text().await.map_err(|e| SendError::Lost(e.to_string()))?;
        Ok(Answer { status, text, unconfirmed })
    }

    pub async fn get(&self, path: &str, timeout: Duration) -> Result<Answer, SendError> {
        self.request::<()>(Method::GET, path, None, timeout, None).await
    }

    /// A GET that must answer 2xx with `T`.
    pub async fn get_json<T: DeserializeOwned>(&self, path: &str, timeout: Duration) -> Result<T> {
        let a = self.get(path, timeout).await.map_err(|e| anyhow!("node {} GET {path}: {e}", self.id))?;
        if !a.is_success() {
            bail!("node {} GET {path}: {} {}", self.id, a.status, truncate(&a.text, 300));
        }
        a.json().with_context(|| format!("node {} GET {path}", self.id))
    }

    pub async fn cluster(&self, timeout: Duration) -> Result<ClusterStatus> {
        Ok(self.get_json::<ClusterEnvelope>("/api/v1/cluster", timeout).await?.cluster)
    }

    pub async fn shards(&self, timeout: Duration) -> Result<ShardList> {
        self.get_json("/api/v1/cluster/shards", timeout).await
    }

    pub async fn ready(&self, timeout: Duration) -> bool {
        matches!(self.get("/readyz", timeout).await, Ok(a) if a.status == 200)
    }

    /// Every job (pages of 500), stale (this node's state) or linearizable.
    pub async fn all_jobs(&self, stale: bool, timeout: Duration) -> Result<Vec<Job>> {
        let c = if stale { "&consistency=stale" } else { "" };
        let mut out: Vec<Job> = Vec::new();
        for page in 1..=1000u32 {
            let l: JobList = self.get_json(&format!("/api/v1/jobs?page={page}&page_size=500{c}"), timeout).await?;
            let n = l.jobs.len();
            out.extend(l.jobs);
            if n == 0 || out.len() as u64 >= l.total_count {
                return Ok(out);
            }
        }
        bail!("node {}: more than 1000 pages of jobs", self.id)
    }

    /// Every run of `job` this node keeps (pages of 500), read from its own state.
    pub async fn all_runs(&self, job: &str, timeout: Duration) -> Result<Vec<Run>> {
        let mut out: Vec<Run> = Vec::new();
        for page in 1..=100u32 {
            let path = format!("/api/v1/jobs/{job}/runs?page={page}&page_size=500&consistency=stale");
            let l: RunList = self.get_json(&path, timeout).await?;
            let n = l.runs.len();
            out.extend(l.runs);
            if n == 0 || out.len() as u64 >= l.total_count {
                return Ok(out);
            }
        }
        bail!("node {}: more than 100 pages of runs of job {job}", self.id)
    }

    /// `PUT /internal/drill/clock`: shifts this node's wall clock by `offset_ms`.
    pub async fn clock_drill(&self, secret: &str, offset_ms: i64) -> Result<()> {
        let body = serde_json::json!({ "offset_ms": offset_ms });
        let a = self
            .request::<Value>(Method::PUT, "/internal/drill/clock", Some(&body), Duration::from_secs(5), Some(secret))
            .await
            .map_err(|e| anyhow!("node {} clock drill: {e}", self.id))?;
        if !a.is_success() {
            bail!("node {} clock drill: {} {}", self.id, a.status, truncate(&a.text, 300));
        }
        Ok(())
    }
}
