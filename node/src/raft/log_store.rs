//! The Raft log and vote on RocksDB.
//!
//! Durability: an append is acknowledged (`log_io_completed`) only after the WAL holding it is
//! synced, so an entry a follower acknowledged survives a power cut. Vote writes are synced
//! too. Purge writes the new `last_purged` and deletes the entries in one atomic batch.
//! Ordering: all writes go through one RocksDB WAL, so a purge that survives a crash implies
//! that every state-machine write before it survived as well.
//!
//! Group commit: `append` writes its entries unsynced (readable at once, as openraft requires)
//! and queues its callback; one blocking task syncs the WAL for every callback queued so far and
//! completes them in order, so appends that arrive while a sync runs share the next one. The sync
//! covers every earlier write because the WAL is a single ordered file. openraft 0.9's core
//! awaits each append's flush before its next command, so in practice one sync serves one
//! entry; batching many client writes into that entry is `raft::proposals`' work. A leader's
//! own new entry also goes to idle followers once written, before the sync
//! ([`crate::raft::eager`]), so their syncs overlap with this node's. The sync runs
//! off the runtime's workers: syncing in the core's own thread (`block_in_place`) measured
//! slower for a lone writer (`docs/benchmarks.md`, run 11). This module must not acknowledge an
//! entry before a sync that started after the entry was written.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, Mutex, OnceLock};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, OptionalSend, RaftLogReader, StorageIOError};

use crate::raft::eager::{self, Eager};
use crate::raft::log_cache::LogCache;
use crate::raft::{Entry, LogId, StorageError, TypeConfig, Vote};
use crate::store::{decode, encode, Batch, Store, Table};

const VOTE: &[u8] = b"vote";
const COMMITTED: &[u8] = b"committed";
const LAST_PURGED: &[u8] = b"last_purged";

/// The log store. Cloning shares the same database, the same sync queue and the same eager
/// sender.
#[derive(Debug, Clone)]
pub struct LogStore {
    store: Store,
    syncs: Arc<Mutex<SyncQueue>>,
    eager: Arc<OnceLock<Eager>>,
    /// What an eager AppendEntries carries besides the entries: the vote and commit index last
    /// saved, and the id of the last entry appended (unknown after a start or a truncation
    /// until the next append).
    seen: Arc<Mutex<Seen>>,
    /// The newest entries, for the reads right after their append ([`crate::raft::log_cache`]).
    recent: Arc<Mutex<LogCache>>,
    /// Times each WAL sync, when set.
    sync_timer: Option<prometheus::Histogram>,
}

#[derive(Debug, Default)]
struct Seen {
    vote: Option<Vote>,
    committed: Option<LogId>,
    last: Option<Option<LogId>>,
}

/// Appends written but not yet synced, and whether a sync task is running.
#[derive(Default)]
struct SyncQueue {
    waiting: Vec<LogFlushed<TypeConfig>>,
    running: bool,
}

impl Debug for SyncQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncQueue").field("waiting", &self.waiting.len()).field("running", &self.running).finish()
    }
}

/// Syncs the WAL until no append waits: each round takes every callback queued so far (all of
/// their entries are already written), syncs once and completes them in order.
fn sync_until_idle(store: Store, syncs: Arc<Mutex<SyncQueue>>, timer: Option<prometheus::Histogram>) {
    loop {
        let round = {
            let mut q = syncs.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if q.waiting.is_empty() {
                q.running = false;
                return;
            }
            std::mem::take(&mut q.waiting)
        };
        let started = std::time::Instant::now();
        let res = store.sync().map_err(|e| e.to_string());
        if let Some(t) = &timer {
            t.observe(started.elapsed().as_secs_f64());
        }
        for callback in round {
            callback.log_io_completed(res.clone().map_err(std::io::Error::other));
        }
    }
}

fn io_err(subject: ErrorSubject<u64>, verb: ErrorVerb, e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::new(subject, verb, openraft::AnyError::new(&e)).into()
}

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

/// The last commit index this node saved (a hint for status pages, not a durability point).
pub fn committed_index(store: &Store) -> Option<u64> {
    store.get_value::<Option<LogId>>(Table::RaftMeta, COMMITTED).ok().flatten().flatten().map(|l| l.index)
}

/// Whether this node holds Raft state already (a vote, a log entry or a purge mark): it was
/// formed, or joined a cluster, before. Read from the store, so it holds before the Raft core
/// has reported anything.
pub fn has_state(store: &Store) -> Result<bool, crate::store::StoreError> {
    Ok(store.get(Table::RaftMeta, VOTE)?.is_some()
        || store.get(Table::RaftMeta, LAST_PURGED)?.is_some()
        || !store.scan(Table::Log, &[], &[], 1)?.is_empty())
}

/// Takes back this node's own leadership from the vote it saved, keeping the vote itself: a
/// vote committed for `node` becomes the same vote uncommitted. openraft 0.9 restarts a node
/// whose saved vote is its own committed one as the leader of that same term; but a leader sends
/// entries before its own sync ([`crate::raft::eager`]), so after a power cut its log may lack
/// an entry a follower holds, and leading on in the same term would give another entry the same
/// log id. Against any other node's vote the uncommitted vote compares as the committed one did
/// (openraft orders votes by term, then candidate), so the node grants nothing it would not have
/// granted; it leads again only through an election, in a new term. Returns whether the vote
/// changed.
pub fn resign_on_start(store: &Store, node: crate::ids::NodeId) -> Result<bool, crate::store::StoreError> {
    let Some(resigned) = store.get_value::<Vote>(Table::RaftMeta, VOTE)?.and_then(|v| resigned(&v, node)) else {
        return Ok(false);
    };
    let mut b = Batch::default();
    b.put_value(Table::RaftMeta, VOTE.to_vec(), &resigned)?;
    store.write(b, true)?;
    Ok(true)
}

/// The vote [`resign_on_start`] saves instead of `vote`, if `vote` is committed for `node`.
pub fn resigned(vote: &Vote, node: crate::ids::NodeId) -> Option<Vote> {
    (vote.is_committed() && vote.leader_id().voted_for() == Some(node)).then(|| Vote::new(vote.leader_id().term, node))
}

/// Prepares an empty log for a node seeded from a snapshot ending at `last` (restore, recovery):
/// everything up to `last` counts as committed and purged, and the vote is at `last`'s term by
/// `node`, so this node's first election uses a later term than any entry it holds.
pub fn seed(store: &Store, last: LogId, node: crate::ids::NodeId) -> Result<(), crate::store::StoreError> {
    let vote = Vote::new(last.leader_id.term, node);
    let mut b = Batch::default();
    b.put_value(Table::RaftMeta, VOTE.to_vec(), &vote)?;
    b.put_value(Table::RaftMeta, COMMITTED.to_vec(), &Some(last))?;
    b.put_value(Table::RaftMeta, LAST_PURGED.to_vec(), &last)?;
    store.write(b, true)
}

impl LogStore {
    pub fn new(store: Store) -> LogStore {
        LogStore {
            store,
            syncs: Arc::default(),
            eager: Arc::default(),
            seen: Arc::default(),
            recent: Arc::default(),
            sync_timer: None,
        }
    }

    /// Observes the time of each WAL sync in `timer`.
    pub fn timed(mut self, timer: prometheus::Histogram) -> LogStore {
        self.sync_timer = Some(timer);
        self
    }

    /// From now on, send this leader's new entries to idle followers as they are written
    /// ([`crate::raft::eager`]). Set once, after the Raft node started.
    pub fn send_eagerly(&self, eager: Eager) {
        let _ = self.eager.set(eager);
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn recent(&self) -> std::sync::MutexGuard<'_, LogCache> {
        self.recent.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// What an eager AppendEntries for `entries` (written as `batch`) carries besides them: the
    /// vote, the predecessor and the commit index, if they are this node's own entries as the
    /// leader and small enough; `None` otherwise. Followers stop at the vote check.
    fn eager_request(&self, entries: &[Entry], batch: &Batch) -> Option<(Vote, Option<LogId>, Option<LogId>)> {
        let me = self.eager.get()?.me();
        let seen = self.seen();
        let (vote, prev) = (seen.vote?, seen.last?);
        (eager::is_leaders_own(me, &vote, prev, entries) && batch.bytes() <= eager::MAX_EAGER_BYTES).then_some((
            vote,
            prev,
            seen.committed,
        ))
    }

    /// Queues `callback` for the next WAL sync, starting the sync task when none runs.
    fn complete_after_sync(&self, callback: LogFlushed<TypeConfig>) {
        let start = {
            let mut q = self.syncs.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            q.waiting.push(callback);
            !std::mem::replace(&mut q.running, true)
        };
        if start {
            let (store, syncs, timer) = (self.store.clone(), self.syncs.clone(), self.sync_timer.clone());
            tokio::task::spawn_blocking(move || sync_until_idle(store, syncs, timer));
        }
    }

    fn meta<T: serde::de::DeserializeOwned>(
        &self,
        key: &[u8],
        subject: ErrorSubject<u64>,
    ) -> Result<Option<T>, StorageError> {
        self.store.get_value(Table::RaftMeta, key).map_err(|e| io_err(subject, ErrorVerb::Read, e))
    }

    fn put_meta<T: serde::Serialize>(&self, key: &[u8], v: &T, subject: ErrorSubject<u64>) -> Result<(), StorageError> {
        let mut b = Batch::default();
        b.put_value(Table::RaftMeta, key.to_vec(), v).map_err(|e| io_err(subject.clone(), ErrorVerb::Write, e))?;
        self.store.write(b, true).map_err(|e| io_err(subject, ErrorVerb::Write, e))
    }

    fn last_entry_id(&self) -> Result<Option<LogId>, StorageError> {
        match self.store.last(Table::Log).map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Read, e))? {
            None => Ok(None),
            Some((_, v)) => {
                let e: Entry = decode(&v).map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Read, e))?;
                Ok(Some(e.log_id))
            }
        }
    }
}

/// Most encoded bytes of entries in one AppendEntries (at least one entry goes, whatever its
/// size). openraft 0.9 gives an AppendEntries one heartbeat interval to be answered; a follower
/// catching up on entries that each hold a batch of commands must get them in pieces it can
/// take in that time, or it never catches up and misses the heartbeats too.
pub const MAX_APPEND_BYTES: usize = 256 * 1024;

impl LogStore {
    /// The entries with indexes in `range`, in order, stopping after `max_bytes` of encoded
    /// entries (never before the first).
    fn read_entries<RB: RangeBounds<u64>>(&self, range: RB, max_bytes: usize) -> Result<Vec<Entry>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(x) => *x,
            Bound::Excluded(x) => x.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let limit = match range.end_bound() {
            Bound::Included(x) => x.saturating_sub(start).saturating_add(1),
            Bound::Excluded(x) => x.saturating_sub(start),
            Bound::Unbounded => u64::MAX,
        };
        if limit == 0 {
            return Ok(Vec::new());
        }
        if let Some(entries) = self.recent().get(start, start.saturating_add(limit), max_bytes) {
            return Ok(entries);
        }
        let rows = self
            .store
            .scan_until(Table::Log, &index_key(start), usize::try_from(limit).unwrap_or(usize::MAX), max_bytes)
            .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Read, e))?;
        let mut out = Vec::with_capacity(rows.len());
        for (k, v) in rows {
            let entry: Entry = decode(&v).map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Read, e))?;
            let index = k.as_slice().try_into().map(u64::from_be_bytes).unwrap_or(u64::MAX);
            if !range.contains(&index) {
                break;
            }
            out.push(entry);
        }
        Ok(out)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        self.read_entries(range, usize::MAX)
    }

    async fn limited_get_log_entries(&mut self, start: u64, end: u64) -> Result<Vec<Entry>, StorageError> {
        self.read_entries(start..end, MAX_APPEND_BYTES)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged: Option<LogId> = self.meta(LAST_PURGED, ErrorSubject::Store)?;
        let last = self.last_entry_id()?.or(last_purged);
        self.seen().last = Some(last);
        Ok(LogState { last_purged_log_id: last_purged, last_log_id: last })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.put_meta(VOTE, vote, ErrorSubject::Vote)?;
        self.seen().vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        let vote: Option<Vote> = self.meta(VOTE, ErrorSubject::Vote)?;
        self.seen().vote = vote;
        Ok(vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Not synced: losing it only means re-applying entries that are still in the log.
        let mut b = Batch::default();
        b.put_value(Table::RaftMeta, COMMITTED.to_vec(), &committed)
            .map_err(|e| io_err(ErrorSubject::Store, ErrorVerb::Write, e))?;
        self.store.write(b, false).map_err(|e| io_err(ErrorSubject::Store, ErrorVerb::Write, e))?;
        self.seen().committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.meta::<Option<LogId>>(COMMITTED, ErrorSubject::Store)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let mut b = Batch::default();
        let mut sizes = Vec::with_capacity(entries.len());
        for entry in &entries {
            let value = encode(entry).map_err(|e| io_err(ErrorSubject::Log(entry.log_id), ErrorVerb::Write, e))?;
            sizes.push(value.len());
            b.put(Table::Log, index_key(entry.log_id.index).to_vec(), value);
        }
        let Some(last) = entries.last().map(|e| e.log_id) else {
            callback.log_io_completed(Ok(()));
            return Ok(());
        };
        let eager = self.eager_request(&entries, &b);
        crate::crash_point!("log-append-before-sync");
        // Readable now; durable (and acknowledged to Raft) after the next group sync.
        if let Err(e) = self.store.write(b, false) {
            self.seen().last = None;
            callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
            return Err(io_err(ErrorSubject::Logs, ErrorVerb::Write, e));
        }
        self.seen().last = Some(Some(last));
        self.recent().appended(&entries, &sizes);
        #[cfg(feature = "failpoints")]
        let (first, normal) = (
            entries.first().map_or(last.index, |e| e.log_id.index),
            entries.iter().any(|e| matches!(e.payload, openraft::EntryPayload::Normal(_))),
        );
        // Written, so the leader's log holds them: followers may sync while this node does.
        let sent_eagerly = match (eager, self.eager.get()) {
            (Some((vote, prev, committed)), Some(sender)) => sender.send(vote, prev, entries, committed),
            _ => 0,
        };
        #[cfg(feature = "failpoints")]
        fail::fail_point!("log-append-sent-then-lost", normal && sent_eagerly > 0, |_| {
            // A power cut before the sync: the followers may hold what this log never will.
            let mut lost = Batch::default();
            lost.delete_range(Table::Log, index_key(first).to_vec(), index_key(last.index + 1).to_vec());
            let _ = self.store.write(lost, true);
            std::thread::sleep(std::time::Duration::from_millis(50));
            crate::failpoint::crash("log-append-sent-then-lost")
        });
        let _ = sent_eagerly;
        self.complete_after_sync(callback);
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.recent().truncate_from(log_id.index);
        let mut b = Batch::default();
        b.delete_range(Table::Log, index_key(log_id.index).to_vec(), index_key(u64::MAX).to_vec());
        b.delete(Table::Log, index_key(u64::MAX).to_vec());
        self.seen().last = None;
        self.store.write(b, true).map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Delete, e))
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.recent().purge_to(log_id.index);
        let mut b = Batch::default();
        b.put_value(Table::RaftMeta, LAST_PURGED.to_vec(), &log_id)
            .map_err(|e| io_err(ErrorSubject::Store, ErrorVerb::Write, e))?;
        b.delete_range(Table::Log, index_key(0).to_vec(), index_key(log_id.index.saturating_add(1)).to_vec());
        self.store.write(b, false).map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Delete, e))
    }
}
