//! The Raft layer: the only module that imports openraft.
//!
//! It declares the type configuration, stores the log and vote in RocksDB ([`log_store`], with
//! the newest entries also in memory for the reads right after their append, [`log_cache`]),
//! applies committed entries through `state::apply` ([`state_machine`]), builds and installs
//! snapshots as streamed files ([`snapshot`]), and carries Raft RPCs between nodes
//! ([`network`] on the sending side, [`rpc`] on the receiving side); the leader sends a lone
//! entry while its own sync runs ([`eager`]); concurrent proposals share log entries
//! ([`proposals`]); a follower campaigns early when its leader's process is
//! gone ([`leader_watch`]). It knows nothing of HTTP routes other than its own
//! internal ones and nothing of jobs beyond the `Command` type.

// openraft's `StorageError` is large and not ours to shrink; its trait methods return it anyway.
#![allow(clippy::result_large_err)]

pub mod eager;
pub mod handle;
pub mod leader_watch;
pub mod log_cache;
pub mod log_store;
pub mod network;
pub mod proposals;
pub mod rpc;
pub mod snapshot;
pub mod state_machine;

use std::sync::Arc;
use std::time::Duration;

pub use openraft::{BasicNode, ServerState};

use crate::ids::NodeId;
use crate::state::{Command, CommandResult};
use crate::store::Store;

openraft::declare_raft_types!(
    /// raftcron's Raft type configuration.
    pub TypeConfig:
        D = Command,
        R = CommandResult,
        NodeId = NodeId,
        Node = BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = tokio::fs::File,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type StoredMembership = openraft::StoredMembership<NodeId, BasicNode>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, BasicNode>;
pub type StorageError = openraft::StorageError<NodeId>;
pub type RaftMetrics = openraft::RaftMetrics<NodeId, BasicNode>;
pub type ClientWriteError = openraft::error::ClientWriteError<NodeId, BasicNode>;
pub type RaftError<E = openraft::error::Infallible> = openraft::error::RaftError<NodeId, E>;
pub type AppendEntriesRequest = openraft::raft::AppendEntriesRequest<TypeConfig>;
pub type AppendEntriesResponse = openraft::raft::AppendEntriesResponse<NodeId>;
pub type VoteRequest = openraft::raft::VoteRequest<NodeId>;
pub type VoteResponse = openraft::raft::VoteResponse<NodeId>;
pub type InstallSnapshotRequest = openraft::raft::InstallSnapshotRequest<TypeConfig>;
pub type InstallSnapshotResponse = openraft::raft::InstallSnapshotResponse<NodeId>;
pub type InstallSnapshotError = openraft::error::InstallSnapshotError;
pub use openraft::error::{ChangeMembershipError, CheckIsLeaderError, ForwardToLeader, InitializeError};
pub use openraft::ChangeMembers;

/// Timing knobs of the Raft group.
#[derive(Debug, Clone)]
pub struct RaftTuning {
    pub heartbeat: Duration,
    pub election_timeout: Duration,
    /// Send a new entry (at most 64 KiB) to idle followers while the leader's own sync runs ([`eager`]).
    pub eager_replication: bool,
    /// Build a snapshot after this many commands (or log entries) since the last one.
    pub snapshot_every: u64,
    /// Entries kept behind a snapshot, so a briefly lagging follower needs no snapshot.
    pub keep_after_snapshot: u64,
}

impl Default for RaftTuning {
    fn default() -> RaftTuning {
        RaftTuning {
            // openraft 0.9 lets a follower campaign only after the leader's lease (the maximum
            // election timeout) plus a drawn election timeout: 150 ms gives 0.45-0.6 s from the
            // leader's last heartbeat to a campaign on a LAN (a kill -9 of the leader to the first
            // acknowledged write: median 0.67 s, against 1.04 s with 250 ms; no election in any
            // benchmark up to 256 writers or 5,000 fires a second on 2 cores, docs/benchmarks.md).
            heartbeat: Duration::from_millis(50),
            election_timeout: Duration::from_millis(150),
            eager_replication: true,
            snapshot_every: 100_000,
            keep_after_snapshot: 2_000,
        }
    }
}

/// Starts the Raft node on `store`, talking to peers through `network`.
pub async fn start(
    node_id: NodeId,
    store: Store,
    network: network::PeerNetwork,
    tuning: &RaftTuning,
    metrics: crate::metrics::Metrics,
) -> Result<Raft, anyhow::Error> {
    let election_min = tuning.election_timeout.as_millis() as u64;
    let config = openraft::Config {
        cluster_name: "raftcron".to_string(),
        heartbeat_interval: tuning.heartbeat.as_millis() as u64,
        election_timeout_min: election_min,
        election_timeout_max: election_min * 2,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(tuning.snapshot_every),
        max_in_snapshot_log_to_keep: tuning.keep_after_snapshot,
        // Purge in batches no larger than what is kept, so short intervals purge too.
        purge_batch_size: tuning.keep_after_snapshot.clamp(1, 1024),
        snapshot_max_chunk_size: 1024 * 1024,
        // At most 64 entries, and at most `log_store::MAX_APPEND_BYTES` of them (an entry may
        // hold a batch of commands), in one AppendEntries.
        max_payload_entries: 64,
        install_snapshot_timeout: 10_000,
        ..Default::default()
    };
    let config = Arc::new(config.validate()?);
    if log_store::resign_on_start(&store, node_id)? {
        tracing::info!("this node led before it stopped: it leads again only through a new election");
    }
    let log_store = log_store::LogStore::new(store.clone()).timed(metrics.raft.log_sync_duration.clone());
    let eager_appends = metrics.raft.eager_appends.clone();
    let network = network.timed(metrics.raft.append_round_trip.clone());
    let sm = state_machine::StateMachine::open(store, metrics).await?;
    let commands = sm.commands_since_snapshot();
    let raft = Raft::new(node_id, config, network.clone(), log_store.clone(), sm).await?;
    if tuning.eager_replication {
        log_store.send_eagerly(eager::Eager::new(node_id, network, raft.metrics(), eager_appends));
    }
    tokio::spawn(snapshot_by_commands(raft.clone(), commands, tuning.snapshot_every));
    Ok(raft)
}

/// Asks for a snapshot once `every` commands were applied since the last one (openraft counts
/// only entries, and an entry may hold a batch of commands). Ends when Raft stops.
async fn snapshot_by_commands(raft: Raft, commands: Arc<std::sync::atomic::AtomicU64>, every: u64) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        if raft.metrics().borrow().running_state.is_err() {
            return;
        }
        if commands.load(std::sync::atomic::Ordering::Relaxed) >= every && raft.trigger().snapshot().await.is_err() {
            return;
        }
    }
}
