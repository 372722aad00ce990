//! `/internal/forward`: a follower hands the leader a write, a read-index request or a
//! membership change. The leader runs it as if it had been called locally.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use crate::cluster::Cluster;
use crate::ids::NodeId;
use crate::model::audit::Actor;
use crate::raft::handle::ProposeError;
use crate::raft::rpc::{bincode_answer, decode_body};
use crate::state::{CommandBody, CommandResult};

pub const PATH: &str = "/internal/forward";

/// A write's fence (`Cluster::write_fenced`): the cluster's time, in ms, after which the leader
/// must not propose it. A leader that does not know the header ignores it.
pub const PROPOSE_BY_HEADER: &str = "x-raftcron-propose-by";

/// What a node asks the leader to do.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ForwardOp {
    /// A command to commit, and who asked (for the audit trail).
    Write(Box<CommandBody>, Option<Actor>),
    ReadIndex,
    AddVoter {
        node_id: NodeId,
        addr: String,
    },
    RemoveMember {
        node_id: NodeId,
    },
    /// A node asks for its firing lease (see docs/design/firing.md); answered with a read index.
    LeaseGrant {
        node_id: NodeId,
    },
    /// How long ago the leader granted each node its lease (for `GET /api/v1/cluster/shards`).
    Leases,
    /// Writes sent together (`cluster::batch`), each with the request id of the API request it
    /// serves: the leader runs them concurrently and answers each in order with a
    /// [`ForwardResult::Batch`]. Never nested.
    Batch(Vec<(Option<String>, ForwardOp)>),
}

impl ForwardOp {
    /// A name for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            ForwardOp::Write(..) => "write",
            ForwardOp::ReadIndex => "read_index",
            ForwardOp::AddVoter { .. } => "add_voter",
            ForwardOp::RemoveMember { .. } => "remove_member",
            ForwardOp::LeaseGrant { .. } => "lease_grant",
            ForwardOp::Leases => "leases",
            ForwardOp::Batch(_) => "batch",
        }
    }

    /// Whether losing the answer leaves an unknown outcome.
    pub fn is_write(&self) -> bool {
        !matches!(self, ForwardOp::ReadIndex | ForwardOp::Leases)
    }
}

/// The leader's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ForwardResult {
    Written(CommandResult),
    ReadIndex(u64),
    /// A lease grant: the read index, and the leader's wall clock when it granted.
    Lease {
        index: u64,
        leader_wall_ms: i64,
    },
    /// Milliseconds since the leader last granted each node its lease.
    Leases(Vec<(NodeId, u64)>),
    Done,
    /// The receiver is not (or no longer) the leader.
    NotLeader,
    /// Proposed, but not known to be committed in time.
    Unknown(String),
    Refused(String),
    Failed(String),
    /// The answers to a [`ForwardOp::Batch`], in order.
    Batch(Vec<ForwardResult>),
}

impl ForwardResult {
    /// A name for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            ForwardResult::Written(_) => "written",
            ForwardResult::ReadIndex(_) => "read_index",
            ForwardResult::Lease { .. } => "lease",
            ForwardResult::Leases(_) => "leases",
            ForwardResult::Done => "done",
            ForwardResult::NotLeader => "not_leader",
            ForwardResult::Unknown(_) => "unknown",
            ForwardResult::Refused(_) => "refused",
            ForwardResult::Failed(_) => "failed",
            ForwardResult::Batch(_) => "batch",
        }
    }
}

pub fn routes(cluster: Cluster) -> Router {
    Router::new().route(PATH, post(handle)).with_state(cluster)
}

async fn handle(State(cluster): State<Cluster>, headers: HeaderMap, body: Bytes) -> Response {
    let op: ForwardOp = match decode_body(&body) {
        Ok(op) => op,
        Err(resp) => return *resp,
    };
    // The leader's lines for a forwarded API request carry the id the client sees.
    let request_id = headers.get(crate::request_id::HEADER).and_then(crate::request_id::sane);
    let propose_by = match headers.get(PROPOSE_BY_HEADER).map(|v| v.to_str().ok().and_then(|v| v.parse::<i64>().ok())) {
        None => None,
        Some(Some(by)) => Some(by),
        // Never ignore a fence it cannot read: refusing is safe, proposing might not be.
        Some(None) => return bincode_answer(&ForwardResult::Failed(format!("unreadable {PROPOSE_BY_HEADER}"))),
    };
    let span = match request_id {
        Some(id) => tracing::error_span!("forwarded", request_id = %id),
        None => tracing::Span::none(),
    };
    let kind = op.kind();
    let result = match op {
        ForwardOp::Batch(ops) => {
            let runs = ops.into_iter().map(|(request_id, op)| {
                let cluster = cluster.clone();
                let span = match request_id.as_deref().filter(|id| crate::request_id::is_sane(id)) {
                    Some(id) => tracing::error_span!("forwarded", request_id = %id),
                    None => tracing::Span::none(),
                };
                async move {
                    let kind = op.kind();
                    let result = match op {
                        ForwardOp::Batch(_) => ForwardResult::Failed("a batch inside a batch".into()),
                        op => answer(cluster.run_local(op, propose_by).instrument(span.clone()).await),
                    };
                    span.in_scope(|| tracing::debug!(op = kind, answer = result.kind(), "forwarded request served"));
                    result
                }
            });
            ForwardResult::Batch(futures::future::join_all(runs).await)
        }
        op => answer(cluster.run_local(op, propose_by).instrument(span.clone()).await),
    };
    span.in_scope(|| tracing::debug!(op = kind, answer = result.kind(), "forwarded request served"));
    bincode_answer(&result)
}

/// The answer to send back. One hop only: a receiver that is not the leader says so instead of
/// forwarding again.
fn answer(r: Result<ForwardResult, ProposeError>) -> ForwardResult {
    match r {
        Ok(r) => r,
        Err(ProposeError::ForwardTo { .. } | ProposeError::NoLeader) => ForwardResult::NotLeader,
        Err(ProposeError::Refused(m)) => ForwardResult::Refused(m),
        Err(ProposeError::Fatal(m)) => ForwardResult::Failed(m),
    }
}
