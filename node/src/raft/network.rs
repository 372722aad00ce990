//! The sending side of node-to-node RPC: Raft messages, forwarded writes and read-index calls.
//!
//! Every call is an HTTP/1.1 POST to the peer's `/internal/...` route with a bincode body and
//! the cluster secret in `X-Raftcron-Cluster-Token`, and carries this build's release level
//! (`crate::level`); the level each peer answers with is kept in [`PeerClient::levels`]. One pooled `reqwest::Client` per node keeps
//! connections alive; every call has a bounded timeout. This module never decides what to send:
//! openraft and `cluster/` do.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::error::{NetworkError, RPCError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::config::TlsSettings;
use crate::crypto::{KeyringIds, KEYRING_HEADER};
use crate::ids::NodeId;
use crate::level::PeerLevels;
use crate::raft::{
    AppendEntriesRequest, AppendEntriesResponse, BasicNode, InstallSnapshotError, InstallSnapshotRequest,
    InstallSnapshotResponse, RaftError, TypeConfig, VoteRequest, VoteResponse,
};

/// The header that carries the cluster secret on internal routes.
pub const CLUSTER_TOKEN_HEADER: &str = "x-raftcron-cluster-token";

/// How a peer call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PeerError {
    /// Nothing was sent (connection refused, unresolvable): safe to retry elsewhere.
    #[error("peer {addr} unreachable: {reason}")]
    Unreachable { addr: String, reason: String },
    /// Sent, but no answer came in time: the outcome is unknown.
    #[error("peer {addr} did not answer: {reason}")]
    NoAnswer { addr: String, reason: String },
    /// The peer refused the cluster secret (or this node's certificate).
    #[error("peer {addr} refused the cluster secret or this node's certificate")]
    Unauthorized { addr: String },
    /// The peer cannot read what this node seals, or the other way round.
    #[error("peer {addr} refuses this node: {reason}")]
    Incompatible { addr: String, reason: String },
    /// The peer answered with something this build cannot read.
    #[error("peer {addr} answered {status}: {reason}")]
    BadAnswer { addr: String, status: u16, reason: String },
}

/// A pooled HTTP client for peer calls.
#[derive(Clone)]
pub struct PeerClient {
    http: reqwest::Client,
    secret: String,
    /// `http` or `https`.
    scheme: &'static str,
    /// This node's keyring ids, sent on every call (see [`crate::crypto::compatible`]).
    keyring: String,
    /// `--peer-override`: where this node really connects to reach a peer (a fault-injecting
    /// proxy in the chaos suite). Local to this node, never replicated.
    overrides: Arc<BTreeMap<NodeId, String>>,
    /// This node's release level, as sent, and what each peer answered with.
    level: String,
    levels: PeerLevels,
}

impl std::fmt::Debug for PeerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerClient").finish_non_exhaustive()
    }
}

impl PeerClient {
    pub fn new(
        secret: String,
        overrides: BTreeMap<NodeId, String>,
        keyring: &KeyringIds,
        tls: Option<&TlsSettings>,
    ) -> Result<PeerClient, String> {
        let mut b = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(500))
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(8)
            .tcp_nodelay(true)
            .no_proxy();
        let scheme = match tls {
            None => "http",
            Some(t) => {
                b = match &t.peer_identity {
                    Some((cert, key)) => {
                        crate::tls::PeerClientTls::load(&t.peer_ca, cert, key).map_err(|e| e.to_string())?.apply(b)
                    }
                    None => {
                        let pem = std::fs::read(&t.peer_ca).map_err(|e| format!("{}: {e}", t.peer_ca.display()))?;
                        let ca = reqwest::Certificate::from_pem(&pem)
                            .map_err(|e| format!("{}: {e}", t.peer_ca.display()))?;
                        b.use_rustls_tls().tls_built_in_root_certs(false).add_root_certificate(ca).https_only(true)
                    }
                };
                "https"
            }
        };
        let http = b.build().map_err(|e| e.to_string())?;
        Ok(PeerClient {
            http,
            secret,
            scheme,
            keyring: keyring.to_header_value(),
            overrides: Arc::new(overrides),
            level: crate::level::own().to_string(),
            levels: PeerLevels::default(),
        })
    }

    /// The release level each peer last answered this node with.
    pub fn levels(&self) -> &PeerLevels {
        &self.levels
    }

    /// Where this node connects to reach `node`, whose advertised address is `addr`: its
    /// `--peer-override`, or `addr`.
    pub fn address_of<'a>(&'a self, node: NodeId, addr: &'a str) -> &'a str {
        self.overrides.get(&node).map(String::as_str).unwrap_or(addr)
    }

    /// POSTs `req` to node `node` at `http://{addr}{path}` (or at its override) and decodes
    /// the answer.
    pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        node: NodeId,
        addr: &str,
        path: &str,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, PeerError> {
        self.call_with(node, addr, path, req, timeout, &[]).await
    }

    /// [`PeerClient::call`] with extra request headers.
    pub async fn call_with<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        node: NodeId,
        addr: &str,
        path: &str,
        req: &Req,
        timeout: Duration,
        headers: &[(&'static str, String)],
    ) -> Result<Resp, PeerError> {
        let addr = self.address_of(node, addr);
        let body = bincode::serialize(req).map_err(|e| PeerError::BadAnswer {
            addr: addr.into(),
            status: 0,
            reason: e.to_string(),
        })?;
        let mut request = self
            .http
            .post(format!("{}://{addr}{path}", self.scheme))
            .header(CLUSTER_TOKEN_HEADER, &self.secret)
            .header(KEYRING_HEADER, &self.keyring)
            .header(crate::level::HEADER, &self.level)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream");
        if let Some(id) = crate::request_id::current() {
            request = request.header(crate::request_id::HEADER, id);
        }
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let resp = request.timeout(timeout).body(body).send().await.map_err(|e| classify(addr, &e))?;
        let status = resp.status();
        let level = resp.headers().get(crate::level::HEADER).and_then(|v| v.to_str().ok());
        self.levels.record(node, crate::level::parse(level));
        if status == reqwest::StatusCode::UNAUTHORIZED {
            return Err(PeerError::Unauthorized { addr: addr.into() });
        }
        let bytes = resp.bytes().await.map_err(|e| PeerError::NoAnswer { addr: addr.into(), reason: e.to_string() })?;
        if status == reqwest::StatusCode::CONFLICT {
            let reason = String::from_utf8_lossy(&bytes).chars().take(400).collect();
            return Err(PeerError::Incompatible { addr: addr.into(), reason });
        }
        if !status.is_success() {
            return Err(PeerError::BadAnswer {
                addr: addr.into(),
                status: status.as_u16(),
                reason: String::from_utf8_lossy(&bytes).chars().take(200).collect(),
            });
        }
        bincode::deserialize(&bytes).map_err(|e| PeerError::BadAnswer {
            addr: addr.into(),
            status: status.as_u16(),
            reason: e.to_string(),
        })
    }
}

fn classify(addr: &str, e: &reqwest::Error) -> PeerError {
    let reason = e.to_string();
    if e.is_connect() {
        PeerError::Unreachable { addr: addr.into(), reason }
    } else {
        PeerError::NoAnswer { addr: addr.into(), reason }
    }
}

/// When each peer last answered a Raft RPC from this node (the leader's "last contact").
#[derive(Debug, Clone, Default)]
pub struct LastContact(Arc<Mutex<HashMap<NodeId, Instant>>>);

impl LastContact {
    fn touch(&self, node: NodeId) {
        if let Ok(mut m) = self.0.lock() {
            m.insert(node, Instant::now());
        }
    }

    /// Milliseconds since `node` last answered, if it ever did.
    pub fn millis_since(&self, node: NodeId) -> Option<u64> {
        let m = self.0.lock().ok()?;
        m.get(&node).map(|t| t.elapsed().as_millis() as u64)
    }
}

/// openraft's network factory: one [`PeerConnection`] per target.
#[derive(Debug, Clone)]
pub struct PeerNetwork {
    pub client: PeerClient,
    pub contact: LastContact,
    /// AppendEntries in flight per peer (see [`crate::raft::eager`]).
    pub inflight: crate::raft::eager::InFlight,
    /// Times each AppendEntries that carries entries, per peer, when set.
    pub round_trip: Option<prometheus::HistogramVec>,
}

impl PeerNetwork {
    pub fn new(client: PeerClient, contact: LastContact) -> PeerNetwork {
        PeerNetwork { client, contact, inflight: Default::default(), round_trip: None }
    }

    /// Observes each AppendEntries round trip that carried entries in `round_trip` (`peer` label).
    pub fn timed(mut self, round_trip: prometheus::HistogramVec) -> PeerNetwork {
        self.round_trip = Some(round_trip);
        self
    }
}

/// A connection to one peer. Connections are pooled inside the shared client.
#[derive(Debug)]
pub struct PeerConnection {
    client: PeerClient,
    contact: LastContact,
    inflight: crate::raft::eager::InFlight,
    /// This peer's series of [`PeerNetwork::round_trip`].
    round_trip: Option<prometheus::Histogram>,
    target: NodeId,
    addr: String,
}

impl RaftNetworkFactory<TypeConfig> for PeerNetwork {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerConnection {
        PeerConnection {
            client: self.client.clone(),
            contact: self.contact.clone(),
            inflight: self.inflight.clone(),
            round_trip: self.round_trip.as_ref().map(|h| h.with_label_values(&[&target.to_string()])),
            target,
            addr: node.addr.clone(),
        }
    }
}

type RpcResult<T, E> = Result<T, RPCError<NodeId, BasicNode, RaftError<E>>>;

impl PeerConnection {
    async fn rpc<Req: Serialize, Resp: DeserializeOwned, E>(
        &self,
        path: &str,
        req: &Req,
        timeout: Duration,
    ) -> RpcResult<Resp, E>
    where
        E: std::error::Error + DeserializeOwned,
    {
        let answer: Result<Resp, RaftError<E>> =
            self.client.call(self.target, &self.addr, path, req, timeout).await.map_err(|e| match e {
                PeerError::Unreachable { .. } => RPCError::Unreachable(Unreachable::new(&e)),
                other => RPCError::Network(NetworkError::new(&other)),
            })?;
        self.contact.touch(self.target);
        answer
            .map_err(|e| RPCError::RemoteError(RemoteError::new_with_node(self.target, BasicNode::new(&self.addr), e)))
    }
}

impl RaftNetwork<TypeConfig> for PeerConnection {
    async fn append_entries(
        &mut self,
        req: AppendEntriesRequest,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse, openraft::error::Infallible> {
        let _counted = self.inflight.count(self.target);
        let timer = self.round_trip.as_ref().filter(|_| !req.entries.is_empty()).map(|h| (h, Instant::now()));
        let answer = self.rpc("/internal/raft/append", &req, option.hard_ttl()).await;
        if let (Some((h, sent)), Ok(_)) = (timer, &answer) {
            h.observe(sent.elapsed().as_secs_f64());
        }
        answer
    }

    async fn install_snapshot(
        &mut self,
        req: InstallSnapshotRequest,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse, InstallSnapshotError> {
        self.rpc("/internal/raft/snapshot", &req, option.hard_ttl()).await
    }

    async fn vote(
        &mut self,
        req: VoteRequest,
        option: RPCOption,
    ) -> RpcResult<VoteResponse, openraft::error::Infallible> {
        self.rpc("/internal/raft/vote", &req, option.hard_ttl()).await
    }

    /// How long the leader waits before trying an unreachable peer again. openraft's 500 ms
    /// exceeds a campaign's delay (0.45-0.6 s with the default election timeout): a restarted
    /// follower would campaign before the leader's next try reached it, and its higher term
    /// would depose a healthy leader when the leader's next AppendEntries meets it (seen in
    /// the 1,000,000-job benchmark: 46 terms after one follower restart).
    fn backoff(&self) -> openraft::network::Backoff {
        openraft::network::Backoff::new(std::iter::repeat(Duration::from_millis(RETRY_UNREACHABLE_MS)))
    }
}

/// The leader's pause before calling an unreachable peer again: well under a campaign's delay.
pub const RETRY_UNREACHABLE_MS: u64 = 50;
