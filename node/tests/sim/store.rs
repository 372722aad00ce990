//! One node's "disk" in memory, behind openraft's storage-v2 traits.
//!
//! The log and the vote are durable the moment they are written (the RocksDB store syncs them),
//! except a leader's eagerly sent entries under `World::eager`: they sync 0-60 ms later, and a
//! crash before that takes them away, as a power cut would.
//! The state machine and the commit index are not: a crash keeps them as of the last synced
//! write or any later point, as a WAL-ordered store would ([`Disk::crash`]). Apply goes through
//! the node's real `state::apply`, over a `BTreeMap` that implements `StateRead`.
//!
//! Snapshots are not simulated: the log is never purged, so no peer ever needs one, and asking
//! for one is recorded as a violation (see docs/design/simulation.md).

// openraft's `StorageError` is large and not ours to shrink; its trait methods return it anyway.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::hash::{Hash, Hasher};
use std::ops::RangeBounds;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::storage::{LogFlushed, LogState, RaftLogStorage, RaftStateMachine, Snapshot};
use openraft::BasicNode;
use openraft::{EntryPayload, ErrorSubject, ErrorVerb, OptionalSend, RaftLogReader, RaftSnapshotBuilder};
use raftcron_node::ids::NodeId;
use raftcron_node::raft::{
    eager, AppendEntriesRequest, Entry, LogId, SnapshotMeta, StorageError, StoredMembership, TypeConfig, Vote,
};
use raftcron_node::state::{self, CommandResult, StateError, StateRead};
use raftcron_node::store::{Batch, BatchOp, Pair, Table};

use crate::net::SimNetwork;
use crate::world::World;

/// A 64-bit digest of anything serializable, through its bincode bytes (the wire format).
pub fn digest<T: serde::Serialize>(value: &T) -> u64 {
    let bytes = bincode::serialize(value).unwrap_or_default();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

fn pair_hash(tag: u8, key: &[u8], value: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (tag, key, value).hash(&mut h);
    h.finish()
}

/// The applied state: the state tables as one ordered map, like `MemState` in the node's tests.
#[derive(Debug, Clone, Default)]
pub struct SmData {
    pub kv: BTreeMap<(u8, Vec<u8>), Vec<u8>>,
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership,
    /// Order-independent digest of `kv` (the wrapping sum of one hash per pair), kept up to
    /// date on every write, so that comparing replicas after every entry costs nothing.
    pub digest: u64,
    /// Keys written to the tables the scheduler watches (`Store::watch` in the node), drained
    /// by the owner's round.
    pub changed: Vec<(Table, Vec<u8>)>,
}

/// The tables whose writes the owner's round must hear of (as `scheduler::owner` watches them).
const WATCHED: [Table; 3] = [Table::Jobs, Table::FireState, Table::Shards];

impl StateRead for SmData {
    fn get(&self, t: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        Ok(self.kv.get(&(t.tag(), key.to_vec())).cloned())
    }

    fn scan_prefix(&self, t: Table, prefix: &[u8], limit: usize) -> Result<Vec<Pair>, StateError> {
        Ok(self
            .kv
            .range((t.tag(), prefix.to_vec())..)
            .take_while(|((tag, k), _)| *tag == t.tag() && k.starts_with(prefix))
            .take(limit)
            .map(|((_, k), v)| (k.clone(), v.clone()))
            .collect())
    }
}

impl SmData {
    fn note(&mut self, tag: u8, key: &[u8]) {
        if let Some(t) = WATCHED.iter().find(|t| t.tag() == tag) {
            self.changed.push((*t, key.to_vec()));
        }
    }

    fn put(&mut self, tag: u8, key: Vec<u8>, value: Vec<u8>) {
        self.note(tag, &key);
        self.digest = self.digest.wrapping_add(pair_hash(tag, &key, &value));
        if let Some(old) = self.kv.insert((tag, key.clone()), value) {
            self.digest = self.digest.wrapping_sub(pair_hash(tag, &key, &old));
        }
    }

    fn delete(&mut self, tag: u8, key: Vec<u8>) {
        self.note(tag, &key);
        if let Some(old) = self.kv.remove(&(tag, key.clone())) {
            self.digest = self.digest.wrapping_sub(pair_hash(tag, &key, &old));
        }
    }

    /// Applies one entry as the node's adapter does (`raft/state_machine.rs`).
    pub fn apply_entry(&mut self, entry: &Entry) -> Result<CommandResult, StateError> {
        let result = match &entry.payload {
            EntryPayload::Blank => CommandResult::Done,
            EntryPayload::Normal(cmd) => {
                let mut batch = Batch::default();
                let result = state::apply(&*self, cmd, &mut batch)?;
                for op in batch.into_ops() {
                    match op {
                        BatchOp::Put(t, k, v) => self.put(t.tag(), k, v),
                        BatchOp::Delete(t, k) => self.delete(t.tag(), k),
                        BatchOp::DeleteRange(t, from, to) => {
                            let doomed: Vec<Vec<u8>> =
                                self.kv.range((t.tag(), from)..(t.tag(), to)).map(|((_, k), _)| k.clone()).collect();
                            for k in doomed {
                                self.delete(t.tag(), k);
                            }
                        }
                    }
                }
                result
            }
            EntryPayload::Membership(m) => {
                self.membership = StoredMembership::new(Some(entry.log_id), m.clone());
                CommandResult::Done
            }
        };
        self.last_applied = Some(entry.log_id);
        Ok(result)
    }
}

/// Everything a node keeps across a crash, and what a crash may take away.
#[derive(Debug, Default)]
pub struct Disk {
    pub log: BTreeMap<u64, Entry>,
    pub vote: Option<Vote>,
    pub committed: Option<LogId>,
    pub last_purged: Option<LogId>,
    pub sm: SmData,
    /// The applied index and commit index as of the last synced write: a crash keeps at least
    /// these (a synced write flushes every earlier write of the same WAL).
    pub synced_applied: Option<u64>,
    pub synced_committed: Option<LogId>,
    /// The process that may use this disk: a store of a dead process must not touch it.
    pub generation: u64,
    /// Indexes of log entries written but not yet synced (a leader's eager appends, see
    /// `World::eager`): a crash takes them away.
    pub unsynced: std::collections::BTreeSet<u64>,
    /// The latest release fence any process of this node kept (`scheduler::owner`'s
    /// `KeptFences`): written synced, so a crash keeps it.
    pub release_fences_until: Option<i64>,
}

impl Disk {
    /// As the node's `KeptFences::keep`: the kept fence only grows.
    pub fn keep_release_fence(&mut self, fence: i64) {
        self.release_fences_until = Some(self.release_fences_until.map_or(fence, |k| k.max(fence)));
    }

    fn synced(&mut self) {
        self.synced_applied = self.sm.last_applied.map(|l| l.index);
        self.synced_committed = self.committed;
    }

    /// A crash: the state machine keeps a prefix of what it applied, at least up to the last
    /// synced write (`keep` picks how much, from the range of indexes allowed), rebuilt by
    /// applying the durable log again. Returns the index kept.
    pub fn crash(&mut self, keep: impl FnOnce(u64, u64) -> u64) -> Result<Option<u64>, String> {
        self.generation += 1;
        for i in std::mem::take(&mut self.unsynced) {
            self.log.remove(&i);
        }
        let Some(last) = self.sm.last_applied.map(|l| l.index) else { return Ok(None) };
        // `lo` counts "nothing applied" as 0 and an applied index i as i + 1.
        let lo = self.synced_applied.map_or(0, |i| i + 1);
        let kept = keep(lo, last + 1);
        let mut sm = SmData::default();
        for (i, entry) in self.log.range(..kept) {
            sm.apply_entry(entry).map_err(|e| format!("re-applying index {i} after a crash: {e}"))?;
        }
        if sm.last_applied.map_or(0, |l| l.index + 1) != kept {
            return Err(format!("the log lacks applied entries below {kept}"));
        }
        // Written before the entries it covers were applied: kept whenever they are.
        self.committed = self.synced_committed.max(sm.last_applied);
        self.sm = sm;
        Ok(kept.checked_sub(1))
    }
}

fn storage_err(subject: ErrorSubject<NodeId>, verb: ErrorVerb, msg: String) -> StorageError {
    openraft::StorageIOError::new(subject, verb, openraft::AnyError::error(msg)).into()
}

/// Locks `disk` for the process of `generation`; fails once that process is dead.
fn lock(disk: &Mutex<Disk>, generation: u64) -> Result<std::sync::MutexGuard<'_, Disk>, StorageError> {
    let guard = disk.lock().unwrap();
    if guard.generation != generation {
        return Err(storage_err(ErrorSubject::Store, ErrorVerb::Write, "the process is dead".into()));
    }
    Ok(guard)
}

/// The log store of one node.
#[derive(Clone)]
pub struct LogStore {
    pub id: NodeId,
    pub disk: Arc<Mutex<Disk>>,
    pub world: Arc<World>,
    pub generation: u64,
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let disk = lock(&self.disk, self.generation)?;
        Ok(disk.log.range(range).map(|(_, e)| e.clone()).collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let disk = lock(&self.disk, self.generation)?;
        let last = disk.log.values().next_back().map(|e| e.log_id).or(disk.last_purged);
        Ok(LogState { last_purged_log_id: disk.last_purged, last_log_id: last })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let mut disk = lock(&self.disk, self.generation)?;
        if let Some(old) = disk.vote {
            if !matches!(vote.partial_cmp(&old), Some(std::cmp::Ordering::Greater | std::cmp::Ordering::Equal)) {
                self.world.violation(format!("node {} replaced its vote {old} with the lower {vote}", self.id));
            }
        }
        self.world.trace(|| format!("n{} vote {vote}", self.id));
        if vote.is_committed() {
            self.world.leader_seen(vote.leader_id().term, vote.leader_id().node_id, "a committed vote");
        }
        disk.vote = Some(*vote);
        disk.synced();
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(lock(&self.disk, self.generation)?.vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        lock(&self.disk, self.generation)?.committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(lock(&self.disk, self.generation)?.committed)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let mut disk = lock(&self.disk, self.generation)?;
        // As `raft::log_store` does: the leader's own new entries go to the peers before its
        // sync, with what the stream's AppendEntries would carry.
        let prev = disk.log.values().next_back().map(|e| e.log_id).or(disk.last_purged);
        let eager = match disk.vote {
            Some(vote) if self.world.eager && eager::is_leaders_own(self.id, &vote, prev, &entries) => {
                Some(AppendEntriesRequest {
                    vote,
                    prev_log_id: prev,
                    leader_commit: disk.committed,
                    entries: entries.clone(),
                })
            }
            _ => None,
        };
        {
            for entry in entries {
                // A stale leader may append its own entries where others committed different
                // ones (it will be truncated); what must never happen is replacing a committed
                // entry this log holds.
                if let Some(old) = disk.log.get(&entry.log_id.index) {
                    if old.log_id != entry.log_id && self.world.is_committed(&old.log_id) {
                        self.world.violation(format!(
                            "node {} wrote {} over the committed entry {}",
                            self.id, entry.log_id, old.log_id
                        ));
                    }
                }
                self.world.trace(|| format!("n{} append {}", self.id, entry.log_id));
                if eager.is_some() {
                    disk.unsynced.insert(entry.log_id.index);
                }
                disk.log.insert(entry.log_id.index, entry);
            }
        }
        let Some(req) = eager else {
            disk.synced();
            drop(disk);
            callback.log_io_completed(Ok(()));
            return Ok(());
        };
        drop(disk);
        self.world.trace(|| {
            format!("n{} eager send of {:?} after {:?}", self.id, req.entries.last().map(|e| e.log_id), req.prev_log_id)
        });
        for &to in self.world.ids.iter().filter(|&&to| to != self.id) {
            let (req, world, from) = (req.clone(), self.world.clone(), self.id);
            // A message in flight outlives its sender's crash, as on a real network.
            tokio::spawn(async move {
                let mut conn = SimNetwork { world, from }.new_client(to, &BasicNode::default()).await;
                let _ = conn.append_entries(req, RPCOption::new(Duration::from_secs(1))).await;
            });
        }
        // The sync ends a little later; a crash before it loses the entries (`Disk::crash`).
        let delay = self.world.rand(|r| r.range(0, 60));
        let (disk, generation) = (self.disk.clone(), self.generation);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(delay)).await;
            let Ok(mut d) = lock(&disk, generation) else { return };
            d.unsynced.clear();
            d.synced();
            drop(d);
            callback.log_io_completed(Ok(()));
        });
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut disk = lock(&self.disk, self.generation)?;
        let doomed: Vec<LogId> = disk.log.range(log_id.index..).map(|(_, e)| e.log_id).collect();
        self.world.trace(|| format!("n{} truncate from {log_id}: {doomed:?}", self.id));
        for id in doomed {
            if self.world.is_committed(&id) {
                self.world.violation(format!("node {} truncated the committed entry {id}", self.id));
            }
            disk.log.remove(&id.index);
        }
        disk.synced();
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut disk = lock(&self.disk, self.generation)?;
        let keep = disk.log.split_off(&(log_id.index + 1));
        disk.log = keep;
        disk.last_purged = Some(log_id);
        Ok(())
    }
}

/// The state machine of one node.
pub struct StateMachine {
    pub id: NodeId,
    pub disk: Arc<Mutex<Disk>>,
    pub world: Arc<World>,
    pub generation: u64,
}

/// Never used: snapshots are not simulated.
pub struct NoSnapshots {
    world: Arc<World>,
    id: NodeId,
}

fn no_snapshots(world: &World, id: NodeId, what: &str) -> StorageError {
    world.violation(format!("node {id}: {what}, but snapshots are not simulated (the log is never purged)"));
    storage_err(ErrorSubject::Snapshot(None), ErrorVerb::Read, format!("{what}: not simulated"))
}

impl RaftSnapshotBuilder<TypeConfig> for NoSnapshots {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        Err(no_snapshots(&self.world, self.id, "a snapshot was built"))
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = NoSnapshots;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let disk = lock(&self.disk, self.generation)?;
        Ok((disk.sm.last_applied, disk.sm.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResult>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut results = Vec::new();
        let mut disk = lock(&self.disk, self.generation)?;
        for entry in entries {
            let before = crate::check::PreApply::of(&disk.sm, &entry);
            let result = disk
                .sm
                .apply_entry(&entry)
                .map_err(|e| storage_err(ErrorSubject::Apply(entry.log_id), ErrorVerb::Write, e.to_string()))?;
            self.world.trace(|| format!("n{} apply {}", self.id, entry.log_id));
            self.world.applied(self.id, &entry, &result, &disk.sm, before);
            if self.world.verbose {
                for line in self.world.hist.lock().unwrap().trace_lines.drain(..) {
                    println!("{:9.3}s   {line}", self.world.now_s());
                }
            }
            results.push(result);
        }
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        NoSnapshots { world: self.world.clone(), id: self.id }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<tokio::fs::File>, StorageError> {
        Err(no_snapshots(&self.world, self.id, "a snapshot was offered"))
    }

    async fn install_snapshot(
        &mut self,
        _meta: &SnapshotMeta,
        _snapshot: Box<tokio::fs::File>,
    ) -> Result<(), StorageError> {
        Err(no_snapshots(&self.world, self.id, "a snapshot was installed"))
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        Ok(None)
    }
}
