//! The openraft state machine adapter: applies committed entries through `state::apply` and
//! manages snapshot files.
//!
//! Invariants:
//! - The effects of an entry and its log id (`sm_last_applied`) are written in one batch, so the
//!   applied state never runs ahead of or behind what it claims.
//! - Installing a snapshot first marks `sm_installing`, then replaces the state tables, then
//!   clears the mark with the new applied id in one synced batch; a node that crashes midway
//!   finishes the install from the snapshot file when it opens.
//! - Snapshot files live in `<data-dir>/snapshots`; `current.snap` is replaced by rename only.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{EntryPayload, ErrorSubject, ErrorVerb, RaftSnapshotBuilder, StorageIOError};
use tokio::sync::Mutex;

use crate::metrics::{Metrics, SnapshotKind};
use crate::raft::snapshot::{self, SnapshotError};
use crate::raft::{Entry, LogId, SnapshotMeta, StorageError, StoredMembership, TypeConfig};
use crate::state::{self, CommandResult};
use crate::store::{Batch, Store, Table};

const SM_APPLIED: &[u8] = b"sm_last_applied";
const SM_MEMBERSHIP: &[u8] = b"sm_membership";
const SM_INSTALLING: &[u8] = b"sm_installing";
const SNAPSHOT_META: &[u8] = b"snapshot_meta";
const CURRENT: &str = "current.snap";
const INCOMING: &str = "incoming.snap";

fn sm_err(verb: ErrorVerb, e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::new(ErrorSubject::StateMachine, verb, openraft::AnyError::new(&e)).into()
}

fn snap_err(verb: ErrorVerb, e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::new(ErrorSubject::Snapshot(None), verb, openraft::AnyError::new(&e)).into()
}

/// Writes the applied state, as of one consistent moment, to a snapshot file at `path` (a
/// snapshot for a peer, or a backup). With `membership`, the file claims that membership instead
/// of the applied one (seeding a new cluster).
pub fn write_consistent(
    store: &Store,
    path: &Path,
    membership: Option<&StoredMembership>,
) -> Result<(SnapshotMeta, u64), SnapshotError> {
    let (meta, records) = store.read_consistent(|view| {
        let last_log_id: Option<LogId> = view.get_value(Table::RaftMeta, SM_APPLIED)?.flatten();
        let last_membership: StoredMembership = match membership {
            Some(m) => m.clone(),
            None => view.get_value(Table::RaftMeta, SM_MEMBERSHIP)?.unwrap_or_default(),
        };
        let snapshot_id = match last_log_id {
            Some(l) => format!("{}-{}-{}", l.leader_id, l.index, uuid::Uuid::new_v4().simple()),
            None => format!("empty-{}", uuid::Uuid::new_v4().simple()),
        };
        let meta = SnapshotMeta { last_log_id, last_membership, snapshot_id };
        let n = snapshot::write_file(view, &meta, path).map_err(|e| crate::store::StoreError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::other(e.to_string()),
        })?;
        Ok((meta, n))
    })?;
    Ok((meta, records))
}

/// Seeds an empty store from the snapshot file `from` as the state of a new one-member cluster
/// `{node: addr}`: loads the records, then (recovery) applies every entry of `replay`'s log
/// beyond the snapshot, committed or not, as a new cluster forced from one survivor must; records
/// the result as applied with the new membership and writes a matching `current.snap`. The
/// caller seeds the log ([`crate::raft::log_store::seed`]). Returns the new meta.
pub fn seed(
    store: &Store,
    from: &Path,
    node: crate::ids::NodeId,
    addr: &str,
    replay: Option<&Store>,
) -> Result<SnapshotMeta, SnapshotError> {
    let loaded = snapshot::load(store, from)?;
    let mut last =
        loaded.last_log_id.ok_or_else(|| SnapshotError::Corrupt("the snapshot holds no applied entry".into()))?;
    if let Some(survivor) = replay {
        let rows = survivor.scan(Table::Log, &[], &(last.index + 1).to_be_bytes(), usize::MAX)?;
        for (_, v) in rows {
            let entry: Entry = crate::store::decode(&v).map_err(crate::store::StoreError::from)?;
            let mut batch = Batch::default();
            if let EntryPayload::Normal(cmd) = &entry.payload {
                state::apply(store, cmd, &mut batch).map_err(|e| SnapshotError::Corrupt(e.to_string()))?;
            }
            batch
                .put_value(Table::RaftMeta, SM_APPLIED.to_vec(), &Some(entry.log_id))
                .map_err(crate::store::StoreError::from)?;
            store.write(batch, false)?;
            last = entry.log_id;
        }
    }
    let nodes: std::collections::BTreeMap<_, _> = [(node, crate::raft::BasicNode::new(addr))].into();
    let members = openraft::Membership::new(vec![[node].into()], nodes);
    let membership = StoredMembership::new(Some(last), members);
    let mut b = Batch::default();
    b.put_value(Table::RaftMeta, SM_APPLIED.to_vec(), &Some(last)).map_err(crate::store::StoreError::from)?;
    b.put_value(Table::RaftMeta, SM_MEMBERSHIP.to_vec(), &membership).map_err(crate::store::StoreError::from)?;
    store.write(b, true)?;
    let dir = store.dir().join("snapshots");
    std::fs::create_dir_all(&dir)?;
    let (meta, _) = write_consistent(store, &dir.join(CURRENT), Some(&membership))?;
    let mut b = Batch::default();
    b.put_value(Table::RaftMeta, SNAPSHOT_META.to_vec(), &meta).map_err(crate::store::StoreError::from)?;
    store.write(b, true)?;
    Ok(meta)
}

/// The state machine. `files` serializes every change to the snapshot directory.
#[derive(Debug)]
pub struct StateMachine {
    store: Store,
    dir: PathBuf,
    files: Arc<Mutex<()>>,
    /// Commands applied since the last snapshot was built or installed (see `raft::start`).
    commands: Arc<AtomicU64>,
    last_applied: Option<LogId>,
    membership: StoredMembership,
    metrics: Metrics,
}

/// Builds snapshots from a consistent view of the store, concurrently with apply.
#[derive(Debug)]
pub struct SnapshotBuilder {
    store: Store,
    dir: PathBuf,
    files: Arc<Mutex<()>>,
    commands: Arc<AtomicU64>,
    metrics: Metrics,
}

impl StateMachine {
    /// Opens the state machine, finishing an interrupted snapshot install if there is one.
    pub async fn open(store: Store, metrics: Metrics) -> Result<StateMachine, StorageError> {
        let dir = store.dir().join("snapshots");
        std::fs::create_dir_all(&dir).map_err(|e| snap_err(ErrorVerb::Write, e))?;
        let mut sm = StateMachine {
            store,
            dir,
            files: Arc::new(Mutex::new(())),
            commands: Arc::default(),
            last_applied: None,
            membership: StoredMembership::default(),
            metrics,
        };
        let installing: Option<SnapshotMeta> =
            sm.store.get_value(Table::RaftMeta, SM_INSTALLING).map_err(|e| sm_err(ErrorVerb::Read, e))?;
        if let Some(meta) = installing {
            tracing::warn!(snapshot = %meta.snapshot_id, "finishing an interrupted snapshot install");
            let path = sm.dir.join(CURRENT);
            sm.load(&path, &meta).await?;
        }
        // Stored as Option<LogId> (see `apply`): decode it as such.
        sm.last_applied = sm
            .store
            .get_value::<Option<LogId>>(Table::RaftMeta, SM_APPLIED)
            .map_err(|e| sm_err(ErrorVerb::Read, e))?
            .flatten();
        sm.membership = sm
            .store
            .get_value(Table::RaftMeta, SM_MEMBERSHIP)
            .map_err(|e| sm_err(ErrorVerb::Read, e))?
            .unwrap_or_default();
        Ok(sm)
    }

    /// Commands applied since the last snapshot was built or installed: an entry may hold a
    /// batch of many, so openraft's count of entries alone would let the log grow by up to
    /// `proposals::MAX_COMMANDS` times more between snapshots.
    pub fn commands_since_snapshot(&self) -> Arc<AtomicU64> {
        self.commands.clone()
    }

    /// Loads a verified snapshot file at `path` (already in place as `current.snap`).
    async fn load(&mut self, path: &Path, meta: &SnapshotMeta) -> Result<(), StorageError> {
        let store = self.store.clone();
        let p = path.to_path_buf();
        let loaded = tokio::task::spawn_blocking(move || snapshot::load(&store, &p))
            .await
            .map_err(|e| snap_err(ErrorVerb::Read, e))?
            .map_err(|e| snap_err(ErrorVerb::Read, e))?;
        if loaded.snapshot_id != meta.snapshot_id {
            return Err(snap_err(
                ErrorVerb::Read,
                SnapshotError::Corrupt(format!("file holds {}, expected {}", loaded.snapshot_id, meta.snapshot_id)),
            ));
        }
        let mut b = Batch::default();
        b.put_value(Table::RaftMeta, SM_APPLIED.to_vec(), &meta.last_log_id)
            .map_err(|e| sm_err(ErrorVerb::Write, e))?;
        b.put_value(Table::RaftMeta, SM_MEMBERSHIP.to_vec(), &meta.last_membership)
            .map_err(|e| sm_err(ErrorVerb::Write, e))?;
        b.delete(Table::RaftMeta, SM_INSTALLING.to_vec());
        self.store.write(b, true).map_err(|e| sm_err(ErrorVerb::Write, e))?;
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        Ok(())
    }
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let _guard = self.files.lock().await;
        // What is applied from now on counts towards the next one.
        self.commands.store(0, Ordering::Relaxed);
        let store = self.store.clone();
        let dir = self.dir.clone();
        let started = std::time::Instant::now();
        let (meta, records) = tokio::task::spawn_blocking(move || -> Result<(SnapshotMeta, u64), SnapshotError> {
            let tmp = dir.join(format!("building-{}.snap", uuid::Uuid::new_v4()));
            let (meta, records) = write_consistent(&store, &tmp, None)?;
            std::fs::rename(&tmp, dir.join(CURRENT))?;
            std::fs::File::open(&dir)?.sync_all()?;
            let mut b = Batch::default();
            b.put_value(Table::RaftMeta, SNAPSHOT_META.to_vec(), &meta).map_err(crate::store::StoreError::from)?;
            store.write(b, true)?;
            Ok((meta, records))
        })
        .await
        .map_err(|e| snap_err(ErrorVerb::Write, e))?
        .map_err(|e| snap_err(ErrorVerb::Write, e))?;
        tracing::info!(snapshot = %meta.snapshot_id, records, elapsed_ms = started.elapsed().as_millis() as u64, "snapshot built");
        self.metrics.raft.snapshot(SnapshotKind::Built);
        self.metrics.raft.snapshot_duration.observe(started.elapsed().as_secs_f64());
        let file = tokio::fs::File::open(self.dir.join(CURRENT)).await.map_err(|e| snap_err(ErrorVerb::Read, e))?;
        Ok(Snapshot { meta, snapshot: Box::new(file) })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResult>, StorageError>
    where
        I: IntoIterator<Item = Entry> + openraft::OptionalSend,
        I::IntoIter: openraft::OptionalSend,
    {
        let mut results = Vec::new();
        for entry in entries {
            let log_id = entry.log_id;
            let apply_err = |e: &dyn std::error::Error| -> StorageError {
                StorageIOError::new(
                    ErrorSubject::Apply(log_id),
                    ErrorVerb::Write,
                    openraft::AnyError::error(e.to_string()),
                )
                .into()
            };
            let started = std::time::Instant::now();
            let mut batch = Batch::default();
            if let EntryPayload::Normal(cmd) = &entry.payload {
                let n = match &cmd.body {
                    crate::state::CommandBody::Batch(cmds) => cmds.len() as u64,
                    _ => 1,
                };
                self.commands.fetch_add(n, Ordering::Relaxed);
            }
            let result = match entry.payload {
                EntryPayload::Blank => CommandResult::Done,
                EntryPayload::Normal(cmd) => state::apply(&self.store, &cmd, &mut batch).map_err(|e| apply_err(&e))?,
                EntryPayload::Membership(m) => {
                    self.membership = StoredMembership::new(Some(log_id), m);
                    batch
                        .put_value(Table::RaftMeta, SM_MEMBERSHIP.to_vec(), &self.membership)
                        .map_err(|e| apply_err(&e))?;
                    CommandResult::Done
                }
            };
            // The applied id travels in the same batch as the effects (see module docs).
            batch.put_value(Table::RaftMeta, SM_APPLIED.to_vec(), &Some(log_id)).map_err(|e| apply_err(&e))?;
            self.store.write(batch, false).map_err(|e| apply_err(&e))?;
            self.metrics.raft.apply_duration.observe(started.elapsed().as_secs_f64());
            self.last_applied = Some(log_id);
            results.push(result);
        }
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            store: self.store.clone(),
            dir: self.dir.clone(),
            files: self.files.clone(),
            commands: self.commands.clone(),
            metrics: self.metrics.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<tokio::fs::File>, StorageError> {
        let file = tokio::fs::File::create(self.dir.join(INCOMING)).await.map_err(|e| snap_err(ErrorVerb::Write, e))?;
        Ok(Box::new(file))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<tokio::fs::File>,
    ) -> Result<(), StorageError> {
        let files = self.files.clone();
        let _guard = files.lock().await;
        let incoming = self.dir.join(INCOMING);
        let mut snapshot = snapshot;
        if !is_file_at(&snapshot, &incoming).await {
            // The data came in another file (a local copy, or a test): stream it into ours.
            use tokio::io::AsyncSeekExt;
            snapshot.seek(std::io::SeekFrom::Start(0)).await.map_err(|e| snap_err(ErrorVerb::Read, e))?;
            let mut out = tokio::fs::File::create(&incoming).await.map_err(|e| snap_err(ErrorVerb::Write, e))?;
            tokio::io::copy(&mut *snapshot, &mut out).await.map_err(|e| snap_err(ErrorVerb::Write, e))?;
            out.sync_all().await.map_err(|e| snap_err(ErrorVerb::Write, e))?;
        } else {
            snapshot.sync_all().await.map_err(|e| snap_err(ErrorVerb::Write, e))?;
        }
        drop(snapshot);
        let checked = {
            let p = incoming.clone();
            tokio::task::spawn_blocking(move || snapshot::verify(&p))
                .await
                .map_err(|e| snap_err(ErrorVerb::Read, e))?
                .map_err(|e| snap_err(ErrorVerb::Read, e))?
        };
        if checked.snapshot_id != meta.snapshot_id {
            return Err(snap_err(
                ErrorVerb::Read,
                SnapshotError::Corrupt(format!("received {}, expected {}", checked.snapshot_id, meta.snapshot_id)),
            ));
        }
        let current = self.dir.join(CURRENT);
        std::fs::rename(&incoming, &current).map_err(|e| snap_err(ErrorVerb::Write, e))?;
        let mut b = Batch::default();
        b.put_value(Table::RaftMeta, SNAPSHOT_META.to_vec(), meta).map_err(|e| snap_err(ErrorVerb::Write, e))?;
        b.put_value(Table::RaftMeta, SM_INSTALLING.to_vec(), meta).map_err(|e| snap_err(ErrorVerb::Write, e))?;
        self.store.write(b, true).map_err(|e| snap_err(ErrorVerb::Write, e))?;
        self.load(&current, meta).await?;
        self.commands.store(0, Ordering::Relaxed);
        tracing::info!(snapshot = %meta.snapshot_id, "snapshot installed");
        self.metrics.raft.snapshot(SnapshotKind::Installed);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let meta: Option<SnapshotMeta> =
            self.store.get_value(Table::RaftMeta, SNAPSHOT_META).map_err(|e| snap_err(ErrorVerb::Read, e))?;
        let Some(meta) = meta else { return Ok(None) };
        let file = tokio::fs::File::open(self.dir.join(CURRENT)).await.map_err(|e| snap_err(ErrorVerb::Read, e))?;
        Ok(Some(Snapshot { meta, snapshot: Box::new(file) }))
    }
}

/// Whether `file` is the file at `path` (same device and inode).
async fn is_file_at(file: &tokio::fs::File, path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (file.metadata().await, tokio::fs::metadata(path).await) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (file, path);
        false
    }
}

#[cfg(test)]
#[path = "storage_suite.rs"]
mod storage_suite;
