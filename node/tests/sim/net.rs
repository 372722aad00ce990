//! The simulated network: every message between nodes goes through [`rpc`], which delays,
//! loses or blocks it from the seed and the current partition, and carries it in bincode (the
//! node's wire format) so that what crosses a real wire crosses this one.
//!
//! On top of it: openraft's `RaftNetwork` for the Raft RPCs, and a model of the node's
//! `/internal/forward` routing (`cluster::Cluster::on_leader`) for writes, read barriers and
//! lease grants.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{NetworkError, RPCError};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::ServerState;
use raftcron_node::ids::NodeId;
use raftcron_node::raft::{
    AppendEntriesRequest, AppendEntriesResponse, BasicNode, InstallSnapshotError, InstallSnapshotRequest,
    InstallSnapshotResponse, LogId, RaftError, TypeConfig, VoteRequest, VoteResponse,
};
use raftcron_node::state::{Command, CommandBody, CommandResult};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::store::digest;
use crate::world::{NodeHandle, World};

/// How long a write may take (the node's `WRITE_TIMEOUT`).
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for a leader to appear (the node's `LEADER_WAIT`).
const LEADER_WAIT: Duration = Duration::from_secs(3);
const MAX_HOPS: u32 = 4;

/// Encodes and decodes `v` as the real network would.
pub fn wire<T: Serialize + DeserializeOwned>(world: &World, v: T) -> T {
    match bincode::serialize(&v)
        .map_err(|e| e.to_string())
        .and_then(|b| bincode::deserialize(&b).map_err(|e| e.to_string()))
    {
        Ok(back) => back,
        Err(e) => {
            world.violation(format!("a message does not survive bincode: {e}"));
            v
        }
    }
}

/// Sends a request from `from` to `to`, runs `handle` on `to`'s current process when (and if)
/// it arrives, and waits up to `ttl` for the answer. `None`: no answer (lost, blocked, down or
/// too late); the request may still have run.
pub async fn rpc<T, F, Fut>(world: &Arc<World>, from: NodeId, to: NodeId, ttl: Duration, handle: F) -> Option<T>
where
    T: Send + 'static,
    F: FnOnce(Arc<NodeHandle>) -> Fut + Send + 'static,
    Fut: Future<Output = Option<T>> + Send,
{
    rpc_held(world, from, to, ttl, Duration::ZERO, handle).await
}

/// [`rpc`], with the request held `held` longer on its way (a forward stuck in the network
/// past its sender's timeout, with `World::late_writes`).
async fn rpc_held<T, F, Fut>(
    world: &Arc<World>,
    from: NodeId,
    to: NodeId,
    ttl: Duration,
    held: Duration,
    handle: F,
) -> Option<T>
where
    T: Send + 'static,
    F: FnOnce(Arc<NodeHandle>) -> Fut + Send + 'static,
    Fut: Future<Output = Option<T>> + Send,
{
    let (req_delay, req_lost, resp_delay, resp_lost) = {
        let (loss, (lo, hi)) = {
            let net = world.net.lock().unwrap();
            (net.loss, net.delay_ms)
        };
        world.rand(|r| {
            (
                Duration::from_millis(r.range(lo, hi + 1)),
                r.chance(loss),
                Duration::from_millis(r.range(lo, hi + 1)),
                r.chance(loss),
            )
        })
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    let w = world.clone();
    tokio::spawn(async move {
        tokio::time::sleep(req_delay + held).await;
        if req_lost || !w.link_up(from, to) {
            return;
        }
        let Some(target) = w.handle(to) else { return };
        let Some(answer) = handle(target).await else { return };
        tokio::time::sleep(resp_delay).await;
        if resp_lost || !w.link_up(to, from) {
            return;
        }
        let _ = tx.send(answer);
    });
    tokio::time::timeout(ttl, rx).await.ok().and_then(Result::ok)
}

/// openraft's network factory for one node.
pub struct SimNetwork {
    pub world: Arc<World>,
    pub from: NodeId,
}

pub struct SimConn {
    world: Arc<World>,
    from: NodeId,
    to: NodeId,
}

impl RaftNetworkFactory<TypeConfig> for SimNetwork {
    type Network = SimConn;

    async fn new_client(&mut self, target: NodeId, _node: &BasicNode) -> SimConn {
        SimConn { world: self.world.clone(), from: self.from, to: target }
    }
}

type RpcResult<T, E> = Result<T, RPCError<NodeId, BasicNode, RaftError<E>>>;

fn lost<E: std::error::Error>() -> RPCError<NodeId, BasicNode, RaftError<E>> {
    RPCError::Network(NetworkError::new(&std::io::Error::other("no answer from the simulated network")))
}

impl RaftNetwork<TypeConfig> for SimConn {
    async fn append_entries(
        &mut self,
        req: AppendEntriesRequest,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse, openraft::error::Infallible> {
        let req = wire(&self.world, req);
        let w = self.world.clone();
        rpc(&self.world, self.from, self.to, option.hard_ttl(), move |h| async move {
            h.raft.append_entries(req).await.ok().map(|r| wire(&w, r))
        })
        .await
        .ok_or_else(lost)
    }

    async fn install_snapshot(
        &mut self,
        _req: InstallSnapshotRequest,
        _option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse, InstallSnapshotError> {
        self.world.violation(format!("node {} sent a snapshot to {}; snapshots are not simulated", self.from, self.to));
        Err(lost())
    }

    async fn vote(
        &mut self,
        req: VoteRequest,
        option: RPCOption,
    ) -> RpcResult<VoteResponse, openraft::error::Infallible> {
        let req = wire(&self.world, req);
        let w = self.world.clone();
        rpc(&self.world, self.from, self.to, option.hard_ttl(), move |h| async move {
            h.raft.vote(req).await.ok().map(|r| wire(&w, r))
        })
        .await
        .ok_or_else(lost)
    }
}

/// What a node asks of the leader (the node's `ForwardOp`, reduced to what the model uses).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Fwd {
    Write(Box<CommandBody>),
    /// A write fenced at the cluster's time `.1` (the node's `Cluster::write_fenced`).
    WriteBy(Box<CommandBody>, i64),
    ReadIndex,
    LeaseGrant(NodeId),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum FwdResult {
    Written(LogId, CommandResult),
    /// Sent, but no answer came: the write may have been applied.
    Unknown,
    /// A fenced write that reached the leader past its fence: not proposed.
    Expired,
    NotLeader,
    ReadIndex(u64),
    Lease {
        index: u64,
        leader_wall_ms: i64,
    },
}

/// Commits `body` if `h` leads and, for a fenced write, its stamp is not past `propose_by`.
async fn write(world: &Arc<World>, h: &Arc<NodeHandle>, body: Box<CommandBody>, propose_by: Option<i64>) -> FwdResult {
    let body_digest = digest(&body);
    // The leader stamps the cluster's time: every replica applies the same instant.
    let cmd = Command { proposed_at_ms: h.lead_ms(), body: *body, actor: None };
    if propose_by.is_some_and(|by| cmd.proposed_at_ms > by) {
        return FwdResult::Expired;
    }
    match tokio::time::timeout(WRITE_TIMEOUT, h.raft.client_write(cmd)).await {
        Ok(Ok(resp)) => {
            let mut hist = world.hist.lock().unwrap();
            hist.acked.push((resp.log_id, body_digest));
            hist.stats.acked += 1;
            FwdResult::Written(resp.log_id, resp.data)
        }
        Ok(Err(_)) => FwdResult::NotLeader,
        Err(_) => FwdResult::Unknown,
    }
}

/// Runs `op` on `h` if it leads (the node's `Cluster::run_local`).
pub async fn run_local(world: &Arc<World>, h: &Arc<NodeHandle>, op: Fwd) -> FwdResult {
    match op {
        Fwd::Write(body) => write(world, h, body, None).await,
        Fwd::WriteBy(body, by) => write(world, h, body, Some(by)).await,
        Fwd::ReadIndex => match h.raft.get_read_log_id().await {
            Ok((read, _)) => FwdResult::ReadIndex(read.map_or(0, |l| l.index)),
            Err(_) => FwdResult::NotLeader,
        },
        Fwd::LeaseGrant(node) => {
            // Never between a shard move's judgement and its commit (`cluster::LeaseGrants`).
            let _moving = h.moving.clone().lock_owned().await;
            match h.raft.get_read_log_id().await {
                // Leadership is confirmed with a quorum first; only then is the grant recorded.
                Ok((read, _)) => {
                    let now = h.mono_us();
                    h.sched.lock().unwrap().grants.insert(node, now);
                    FwdResult::Lease { index: read.map_or(0, |l| l.index), leader_wall_ms: h.lead_ms() }
                }
                Err(_) => FwdResult::NotLeader,
            }
        }
    }
}

fn leader_view(h: &NodeHandle) -> (bool, Option<NodeId>) {
    let m = h.raft.metrics();
    let m = m.borrow();
    (m.state == ServerState::Leader, m.current_leader)
}

/// Waits (polling like the node) until `h` knows a leader other than `old`.
async fn wait_for_leader(h: &NodeHandle, old: Option<NodeId>) -> bool {
    let deadline = Instant::now() + LEADER_WAIT;
    while Instant::now() < deadline {
        match leader_view(h).1 {
            Some(l) if Some(l) != old => return true,
            _ => tokio::time::sleep(Duration::from_millis(25)).await,
        }
    }
    false
}

/// Runs `op` on the leader, wherever it is (the node's `Cluster::on_leader`). `None`: no
/// leader could be reached.
pub async fn on_leader(world: &Arc<World>, me: &Arc<NodeHandle>, op: Fwd) -> Option<FwdResult> {
    let deadline = Instant::now() + WRITE_TIMEOUT;
    let mut hops = 0;
    while Instant::now() < deadline && hops < MAX_HOPS {
        let (leading, leader) = leader_view(me);
        if leading {
            match run_local(world, me, op.clone()).await {
                FwdResult::NotLeader => hops += 1,
                r => return Some(r),
            }
            continue;
        }
        let leader = match leader {
            Some(l) if l != me.id => l,
            // It names itself but no longer leads: wait for the next election.
            Some(_) => {
                hops += 1;
                tokio::time::sleep(Duration::from_millis(25)).await;
                continue;
            }
            None => {
                if !wait_for_leader(me, None).await {
                    return None;
                }
                continue;
            }
        };
        let left = deadline.saturating_duration_since(Instant::now());
        let w = world.clone();
        let sent = wire(world, op.clone());
        let is_write = matches!(op, Fwd::Write(_) | Fwd::WriteBy(..));
        // Now and then a write is held in the network past its sender's timeout, and runs on
        // the leader after its sender gave up on it (and may have sent it again).
        let faulty = world.late_writes && !world.healed.load(std::sync::atomic::Ordering::SeqCst);
        // Releases more often: a late one is what simulation finding 11 is about.
        let release =
            matches!(&op, Fwd::Write(b) | Fwd::WriteBy(b, _) if matches!(**b, CommandBody::ReleaseSlots { .. }));
        let chance = if release { 0.5 } else { 0.05 };
        let held = if is_write && faulty && world.rand(|r| r.chance(chance)) {
            Duration::from_millis(world.rand(|r| r.range(500, 12_000)))
        } else {
            Duration::ZERO
        };
        let answer = rpc_held(world, me.id, leader, left, held, move |h| async move {
            let r = run_local(&w, &h, sent).await;
            Some(wire(&w, r))
        })
        .await;
        match answer {
            Some(FwdResult::NotLeader) => {
                hops += 1;
                wait_for_leader(me, Some(leader)).await;
            }
            Some(r) => return Some(r),
            None if is_write => return Some(FwdResult::Unknown),
            None => hops += 1,
        }
    }
    None
}
