//! The receiving side of node-to-node RPC: `/internal/raft/*` routes, and the cluster-secret
//! gate that every `/internal` route sits behind.
//!
//! Bodies are bincode; answers are bincode of `Result<Response, RaftError>`. An unauthenticated
//! call gets 401 before its body is read. This module must not serve anything public.

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

use crate::raft::network::CLUSTER_TOKEN_HEADER;
use crate::raft::{AppendEntriesRequest, InstallSnapshotRequest, Raft, VoteRequest};

/// Largest internal request body (an append batch or a snapshot chunk).
pub const MAX_INTERNAL_BODY: usize = 64 * 1024 * 1024;

/// The cluster secret, compared in constant time.
#[derive(Clone)]
pub struct ClusterSecret(Arc<Vec<u8>>);

impl std::fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterSecret(..)")
    }
}

impl ClusterSecret {
    pub fn new(secret: &str) -> ClusterSecret {
        ClusterSecret(Arc::new(secret.as_bytes().to_vec()))
    }

    pub fn matches(&self, headers: &HeaderMap) -> bool {
        match headers.get(CLUSTER_TOKEN_HEADER) {
            Some(v) => bool::from(v.as_bytes().ct_eq(self.0.as_slice())),
            None => false,
        }
    }
}

/// Middleware: 401 unless the request carries the cluster secret.
pub async fn require_cluster_secret(State(secret): State<ClusterSecret>, req: Request, next: Next) -> Response {
    if secret.matches(req.headers()) {
        next.run(req).await
    } else {
        (StatusCode::UNAUTHORIZED, "cluster secret required").into_response()
    }
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
        .with_state(raft)
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
