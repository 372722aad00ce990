//! The receiving side of node-to-node RPC: `/internal/raft/*` routes (openraft's three, and
//! the last log index that `raft::leader_watch` asks for), and the cluster-secret gate that
//! every `/internal` route sits behind.
//!
//! Every answer carries this build's release level (`crate::level`).
//! Bodies are bincode; answers are bincode of `Result<Response, RaftError>`, or of
//! `Option<u64>` for the last log index. An unauthenticated call gets 401 before its body is
//! read. This module must not serve anything public.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde::de::DeserializeOwned;
use serde::Serialize;
use subtle::ConstantTimeEq;

use std::sync::atomic::{AtomicI64, Ordering};

use crate::crypto::{KeyringIds, KEYRING_HEADER};
use crate::raft::network::CLUSTER_TOKEN_HEADER;
use crate::raft::{AppendEntriesRequest, InstallSnapshotRequest, Raft, VoteRequest};
use crate::tls::PeerCertificate;

/// Largest internal request body (an append batch or a snapshot chunk).
pub const MAX_INTERNAL_BODY: usize = 64 * 1024 * 1024;

/// What a caller of `/internal` must show: the cluster secret (compared in constant time), a
/// keyring this node can share data with, and, with mutual TLS on, a certificate from the peer CA.
#[derive(Clone)]
pub struct PeerGate {
    secret: Arc<Vec<u8>>,
    keyring: Arc<KeyringIds>,
    require_certificate: bool,
    /// When a refusal was last logged (Unix seconds), so a refused peer cannot flood the log.
    last_logged: Arc<AtomicI64>,
    /// This build's release level, put on every answer (`crate::level`).
    level: axum::http::HeaderValue,
}

impl std::fmt::Debug for PeerGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerGate").field("require_certificate", &self.require_certificate).finish_non_exhaustive()
    }
}

impl PeerGate {
    pub fn new(secret: &str, keyring: KeyringIds, require_certificate: bool) -> PeerGate {
        PeerGate {
            secret: Arc::new(secret.as_bytes().to_vec()),
            keyring: Arc::new(keyring),
            require_certificate,
            last_logged: Arc::default(),
            level: axum::http::HeaderValue::from(crate::level::own()),
        }
    }

    pub fn matches(&self, headers: &HeaderMap) -> bool {
        match headers.get(CLUSTER_TOKEN_HEADER) {
            Some(v) => bool::from(v.as_bytes().ct_eq(self.secret.as_slice())),
            None => false,
        }
    }

    /// Whether the caller's keyring and ours can read each other's data.
    fn compatible(&self, headers: &HeaderMap) -> Result<(), String> {
        let theirs = headers
            .get(KEYRING_HEADER)
            .and_then(|v| v.to_str().ok())
            .ok_or("the caller sent no keyring ids (an older or misconfigured node)")?;
        let theirs = KeyringIds::from_header_value(theirs).map_err(|e| e.to_string())?;
        crate::crypto::compatible(&self.keyring, &theirs)
    }

    fn refuse_unauthenticated(&self, req: &Request) -> Option<Response> {
        if !self.matches(req.headers()) {
            return Some((StatusCode::UNAUTHORIZED, "cluster secret required").into_response());
        }
        let certified = req.extensions().get::<PeerCertificate>().is_some_and(|c| c.0);
        if self.require_certificate && !certified {
            self.log_refusal("no client certificate from the peer CA");
            return Some(
                (StatusCode::UNAUTHORIZED, "a client certificate from the peer CA is required").into_response(),
            );
        }
        None
    }

    /// Adds this build's release level to an answer.
    fn with_level(&self, mut answer: Response) -> Response {
        answer.headers_mut().insert(crate::level::HEADER, self.level.clone());
        answer
    }

    fn log_refusal(&self, why: &str) {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        if now - self.last_logged.swap(now, Ordering::Relaxed) >= 10 {
            tracing::error!(reason = why, "refusing a node-to-node call");
        }
    }
}

/// Middleware for operator routes (drills): 401 without the cluster secret, or without the
/// peer certificate that mutual TLS asks for.
pub async fn require_secret(State(gate): State<PeerGate>, req: Request, next: Next) -> Response {
    let answer = match gate.refuse_unauthenticated(&req) {
        Some(refusal) => refusal,
        None => next.run(req).await,
    };
    gate.with_level(answer)
}

/// Middleware for node-to-node routes: [`require_secret`], and 409 from a node whose master
/// keys cannot read ours (or ours theirs).
pub async fn require_peer(State(gate): State<PeerGate>, req: Request, next: Next) -> Response {
    if let Some(refusal) = gate.refuse_unauthenticated(&req) {
        return gate.with_level(refusal);
    }
    if let Err(why) = gate.compatible(req.headers()) {
        gate.log_refusal(&why);
        return gate.with_level((StatusCode::CONFLICT, why).into_response());
    }
    gate.with_level(next.run(req).await)
}

/// Encodes an answer as bincode.
pub fn bincode_answer<T: Serialize>(value: &T) -> Response {
    match bincode::serialize(value) {
        Ok(bytes) => (StatusCode::OK, bytes).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "encoding an internal answer");
            (StatusCode::INTERNAL_SERVER_ERROR, "encoding failed").into_response()
        }
    }
}

/// Decodes a bincode body, or answers 400.
pub fn decode_body<T: DeserializeOwned>(body: &Bytes) -> Result<T, Box<Response>> {
    bincode::deserialize(body)
        .map_err(|e| Box::new((StatusCode::BAD_REQUEST, format!("bad body: {e}")).into_response()))
}

/// The Raft routes (without the secret gate, which the caller layers over all of `/internal`).
pub fn routes(raft: Raft) -> Router {
    Router::new()
        .route("/internal/raft/append", post(append))
        .route("/internal/raft/vote", post(vote))
        .route("/internal/raft/snapshot", post(snapshot))
        .route(crate::raft::leader_watch::LAST_LOG_PATH, post(last_log))
        .with_state(raft)
}

/// This node's last log index, for a follower choosing whose turn it is to campaign
/// (`raft::leader_watch`).
async fn last_log(State(raft): State<Raft>) -> Response {
    bincode_answer(&crate::raft::leader_watch::last_log_index(&raft))
}

async fn append(State(raft): State<Raft>, body: Bytes) -> Response {
    let req: AppendEntriesRequest = match decode_body(&body) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    bincode_answer(&raft.append_entries(req).await)
}

async fn vote(State(raft): State<Raft>, body: Bytes) -> Response {
    let req: VoteRequest = match decode_body(&body) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    bincode_answer(&raft.vote(req).await)
}

async fn snapshot(State(raft): State<Raft>, body: Bytes) -> Response {
    let req: InstallSnapshotRequest = match decode_body(&body) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    bincode_answer(&raft.install_snapshot(req).await)
}
