//! Waiting until every member applied a write: `POST /internal/applied`, and
//! [`Cluster::spread`], which asks each member over it.
//!
//! Each node authenticates API keys from its own applied state. A commit answers once the
//! leader applied it; a follower applies it a replication round later. In that window a
//! follower would accept a key the API had just said was revoked, or refuse one it had just
//! created. The key handlers call [`Cluster::spread`] before they answer: the answer then means
//! every member that could be reached knows the key as written.
//!
//! This module waits and answers; it must not write to the cluster.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use serde::{Deserialize, Serialize};

use crate::cluster::Cluster;
use crate::ids::NodeId;
use crate::raft::rpc::{bincode_answer, decode_body};

pub const PATH: &str = "/internal/applied";
/// The longest a member waits for one question.
const MAX_WAIT: Duration = Duration::from_secs(5);

/// A question: tell me once you applied `index`; wait at most `wait_ms`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ask {
    pub index: u64,
    pub wait_ms: u64,
}

/// The answer: whether the member applied `index` within the wait.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Answer {
    pub applied: bool,
}

/// How far a write reached: the members that did not confirm it in time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Spread {
    pub unconfirmed: Vec<NodeId>,
}

impl Spread {
    /// Every member applied the write.
    pub fn complete(&self) -> bool {
        self.unconfirmed.is_empty()
    }

    /// The value of the `Raftcron-Unconfirmed-Nodes` header, when some member did not confirm.
    pub fn header_value(&self) -> Option<String> {
        (!self.complete()).then(|| self.unconfirmed.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(","))
    }
}

pub fn routes(cluster: Cluster) -> Router {
    Router::new().route(PATH, post(handle)).with_state(cluster)
}

async fn handle(State(cluster): State<Cluster>, body: Bytes) -> Response {
    let ask: Ask = match decode_body(&body) {
        Ok(a) => a,
        Err(resp) => return *resp,
    };
    let wait = Duration::from_millis(ask.wait_ms).min(MAX_WAIT);
    bincode_answer(&Answer { applied: cluster.raft.wait_applied(ask.index, wait).await })
}

impl Cluster {
    /// Waits, up to `timeout`, until every member (voters and learners) applied every write
    /// acknowledged before this call. Call it after a write whose effect must hold on every node
    /// before the client hears of it. Names the members that did not confirm in time (down,
    /// partitioned or slow): they apply the write as soon as they hear from the leader again.
    /// Without a leader to give the index, every member counts as unconfirmed.
    pub async fn spread(&self, timeout: Duration) -> Spread {
        let members: Vec<NodeId> = self.raft.view().members.into_iter().map(|m| m.node_id).collect();
        let index = match tokio::time::timeout(timeout, self.batched_read_index()).await {
            Ok(Ok(i)) => i,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "no read index: cannot confirm that members applied a write");
                return Spread { unconfirmed: members };
            }
            Err(_) => {
                tracing::warn!("no read index in time: cannot confirm that members applied a write");
                return Spread { unconfirmed: members };
            }
        };
        let me = self.node_id();
        let ask = Ask { index, wait_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX) };
        let questions = members.into_iter().map(|node| {
            let (cluster, ask) = (self.clone(), ask.clone());
            async move {
                let applied = if node == me {
                    cluster.raft.wait_applied(ask.index, timeout).await
                } else {
                    // The peer waits up to `timeout`; the call allows for the round trip.
                    match cluster.ask_peer::<_, Answer>(node, PATH, &ask, timeout + Duration::from_millis(500)).await {
                        Ok(a) => a.applied,
                        Err(e) => {
                            tracing::debug!(node, error = %e, "no confirmation that the member applied the write");
                            false
                        }
                    }
                };
                (node, applied)
            }
        });
        let answers = futures::future::join_all(questions).await;
        let unconfirmed: Vec<NodeId> = answers.into_iter().filter(|(_, ok)| !ok).map(|(n, _)| n).collect();
        if !unconfirmed.is_empty() {
            tracing::warn!(index, ?unconfirmed, "members did not confirm a key write");
        }
        Spread { unconfirmed }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_names_the_members_that_did_not_confirm() {
        assert_eq!(Spread::default().header_value(), None);
        assert!(Spread::default().complete());
        let s = Spread { unconfirmed: vec![2, 3] };
        assert!(!s.complete());
        assert_eq!(s.header_value().as_deref(), Some("2,3"));
    }
}
