//! Forwarded writes batched: the writes a follower's clients make concurrently go to the leader
//! in one `/internal/forward` call instead of one call each.
//!
//! A forwarded write waits in a queue while [`MAX_IN_FLIGHT`] calls of this node are on their
//! way; as soon as one is answered, the writes queued for the same leader (up to
//! [`MAX_WRITES`]) go in the next call as a [`ForwardOp::Batch`], and the leader runs them
//! concurrently (its own proposals then share log entries, `raft::proposals`). A lone write
//! goes at once, alone, as before. Each write gets its own answer; a failed call fails every
//! write in it with the same error, as if each had been sent alone. Only writes are batched:
//! read-index and lease calls are not delayed behind them, and a fenced write goes alone. This
//! module decides nothing about routing (`Cluster::on_leader` does) and must not retry.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::batching::{answer_each, Pipeline};
use crate::cluster::forward::{self, ForwardOp, ForwardResult};
use crate::ids::NodeId;
use crate::raft::network::{PeerClient, PeerError};

/// Forward calls of this node on their way at once: two, like the leader's entries in flight
/// (`raft::proposals::MAX_IN_FLIGHT`), so that a busy follower's calls carry more writes each.
pub const MAX_IN_FLIGHT: usize = 2;
/// Most writes in one call.
pub const MAX_WRITES: usize = 256;

type Answer = Result<ForwardResult, PeerError>;

struct Waiting {
    leader: NodeId,
    addr: String,
    op: ForwardOp,
    deadline: Instant,
    request_id: Option<String>,
    tx: oneshot::Sender<Answer>,
}

/// The next call's writes: the oldest one and the others queued for the same leader.
fn take(waiting: &mut VecDeque<Waiting>) -> Vec<Waiting> {
    let Some(first) = waiting.pop_front() else { return Vec::new() };
    let mut out = vec![first];
    let mut rest = VecDeque::with_capacity(waiting.len());
    while let Some(w) = waiting.pop_front() {
        if out.len() < MAX_WRITES && w.leader == out[0].leader && w.addr == out[0].addr {
            out.push(w);
        } else {
            rest.push_back(w);
        }
    }
    *waiting = rest;
    out
}

/// The batching front of forwarded writes. Cloning shares the queue.
#[derive(Clone)]
pub struct ForwardBatches {
    peers: PeerClient,
    queue: Arc<Pipeline<Waiting>>,
}

impl std::fmt::Debug for ForwardBatches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForwardBatches").finish_non_exhaustive()
    }
}

impl ForwardBatches {
    pub fn new(peers: PeerClient) -> ForwardBatches {
        ForwardBatches { peers, queue: Arc::new(Pipeline::new(MAX_IN_FLIGHT)) }
    }

    /// The client for calls to other nodes.
    pub fn peers(&self) -> &PeerClient {
        &self.peers
    }

    /// Sends `op` to `leader` within `timeout`: a write through the queue, anything else at once.
    /// A write fenced with `propose_by` (`Cluster::write_fenced`) goes at once and alone: the
    /// fence is the call's, and must not refuse the writes of others.
    pub async fn call(
        &self,
        leader: NodeId,
        addr: &str,
        op: &ForwardOp,
        timeout: Duration,
        propose_by: Option<i64>,
    ) -> Answer {
        if let Some(by) = propose_by {
            let fence = [(forward::PROPOSE_BY_HEADER, by.to_string())];
            return self.peers.call_with(leader, addr, forward::PATH, op, timeout, &fence).await;
        }
        if !matches!(op, ForwardOp::Write(..)) {
            return self.peers.call(leader, addr, forward::PATH, op, timeout).await;
        }
        let (tx, rx) = oneshot::channel();
        let waiting = Waiting {
            leader,
            addr: addr.to_string(),
            op: op.clone(),
            deadline: Instant::now() + timeout,
            request_id: crate::request_id::current(),
            tx,
        };
        if self.queue.push(waiting) {
            tokio::spawn(self.clone().run());
        }
        rx.await.unwrap_or_else(|_| {
            Err(PeerError::NoAnswer { addr: addr.to_string(), reason: "the forwarded write was dropped".into() })
        })
    }

    /// Sends calls until nothing waits.
    async fn run(self) {
        while let Some(batch) = self.queue.next(take) {
            self.send(batch).await;
        }
    }

    async fn send(&self, mut batch: Vec<Waiting>) {
        let (leader, addr) = (batch[0].leader, batch[0].addr.clone());
        let left = batch.iter().map(|w| w.deadline).min().unwrap_or_else(Instant::now) - Instant::now();
        if batch.len() == 1 {
            let w = batch.remove(0);
            let call = self.peers.call(leader, &addr, forward::PATH, &w.op, left);
            let answer = match w.request_id {
                Some(id) => crate::request_id::scope(id, call).await,
                None => call.await,
            };
            let _ = w.tx.send(answer);
            return;
        }
        let n = batch.len();
        let mut ops = Vec::with_capacity(n);
        let mut txs = Vec::with_capacity(n);
        for w in batch {
            ops.push((w.request_id, w.op));
            txs.push(w.tx);
        }
        let answer =
            self.peers.call::<_, ForwardResult>(leader, &addr, forward::PATH, &ForwardOp::Batch(ops), left).await;
        match answer {
            Ok(ForwardResult::Batch(results)) => {
                let reason = format!("{} answers to {n} writes", results.len());
                let answers = results.into_iter().map(Ok).collect();
                answer_each(txs, Some(answers), || Err(PeerError::BadAnswer { addr, status: 200, reason }));
            }
            // One answer for all: "not the leader" and the like apply to every write.
            other => answer_each(txs, None, || other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::CommandBody;

    fn waiting(leader: NodeId) -> Waiting {
        let (tx, _rx) = oneshot::channel();
        Waiting {
            leader,
            addr: format!("127.0.0.1:{leader}"),
            op: ForwardOp::Write(Box::new(CommandBody::Noop), None),
            deadline: Instant::now(),
            request_id: None,
            tx,
        }
    }

    #[tokio::test]
    async fn a_call_takes_the_writes_for_the_first_ones_leader_oldest_first() {
        let mut q = VecDeque::new();
        for leader in [1, 2, 1, 1, 2] {
            q.push_back(waiting(leader));
        }
        assert_eq!(take(&mut q).iter().map(|w| w.leader).collect::<Vec<_>>(), vec![1, 1, 1]);
        assert_eq!(take(&mut q).iter().map(|w| w.leader).collect::<Vec<_>>(), vec![2, 2]);
        assert!(take(&mut q).is_empty());
        for _ in 0..MAX_WRITES + 1 {
            q.push_back(waiting(3));
        }
        assert_eq!(take(&mut q).len(), MAX_WRITES);
        assert_eq!(take(&mut q).len(), 1);
    }
}
