//! The storage engine: the only module that imports `rocksdb`.
//!
//! It owns the data directory (and its format marker), the column families, write batches and
//! the versioned value codec. It knows nothing of Raft or jobs: callers name a [`Table`] and pass
//! bytes. Invariant: every value written through [`encode`] starts with [`VALUE_FORMAT`], and a
//! data directory carries [`DATA_DIR_FORMAT`] in its `FORMAT` file; a mismatch is refused at open
//! rather than misread.

mod codec;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rocksdb::{ColumnFamilyDescriptor, Direction, IteratorMode, Options, WriteBatch, WriteOptions, DB};

pub use codec::{decode, encode, CodecError, VALUE_FORMAT};

/// The format of the data directory as a whole. Bump it with a migration step when the layout
/// of tables or keys changes.
pub const DATA_DIR_FORMAT: u32 = 1;

const FORMAT_FILE: &str = "FORMAT";
const FORMAT_MAGIC: &str = "raftcron-data-dir";

/// A column family. Raft tables hold the log and its metadata; state tables hold the replicated
/// state machine and are what a snapshot carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Table {
    /// Raft log entries, keyed by big-endian index.
    Log,
    /// Vote, committed log id, last purged log id; and the latest release fence the scheduler
    /// kept (`scheduler::owner`). Local to this node, never replicated.
    RaftMeta,
    /// State machine metadata: last applied log id, membership, counters.
    SmMeta,
    /// Jobs, keyed by tenant and job id.
    Jobs,
    /// API keys, keyed by the SHA-256 of the key.
    Keys,
    /// Shard owners, keyed by big-endian shard id.
    Shards,
    /// The index of jobs by shard: `shard job-key`, empty values.
    ShardJobs,
    /// Per-job firing state (watermark, claims in flight), keyed like `Jobs`.
    FireState,
    /// Run history: `job-key inverted-time fire-id`, newest first.
    Runs,
    /// Tenants, keyed by id.
    Tenants,
    /// The audit trail, keyed by big-endian sequence number.
    Audit,
}

impl Table {
    pub const ALL: [Table; 11] = [
        Table::Log,
        Table::RaftMeta,
        Table::SmMeta,
        Table::Jobs,
        Table::Keys,
        Table::Shards,
        Table::ShardJobs,
        Table::FireState,
        Table::Runs,
        Table::Tenants,
        Table::Audit,
    ];
    /// The tables of the replicated state machine, in the order a snapshot carries them.
    pub const STATE: [Table; 9] = [
        Table::SmMeta,
        Table::Jobs,
        Table::Keys,
        Table::Shards,
        Table::ShardJobs,
        Table::FireState,
        Table::Runs,
        Table::Tenants,
        Table::Audit,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Table::Log => "log",
            Table::RaftMeta => "raft_meta",
            Table::SmMeta => "sm_meta",
            Table::Jobs => "jobs",
            Table::Keys => "keys",
            Table::Shards => "shards",
            Table::ShardJobs => "shard_jobs",
            Table::FireState => "fire_state",
            Table::Runs => "runs",
            Table::Tenants => "tenants",
            Table::Audit => "audit",
        }
    }

    /// A stable one-byte tag used in snapshot files.
    pub fn tag(self) -> u8 {
        match self {
            Table::Log => 1,
            Table::RaftMeta => 2,
            Table::SmMeta => 3,
            Table::Jobs => 4,
            Table::Keys => 5,
            Table::Shards => 6,
            Table::ShardJobs => 7,
            Table::FireState => 8,
            Table::Runs => 9,
            Table::Tenants => 10,
            Table::Audit => 11,
        }
    }

    pub fn from_tag(tag: u8) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.tag() == tag)
    }
}

/// Storage failures. These are I/O failures, never business rejections.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    #[error("data directory {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("data directory {path} has format {found:?}, this build reads format {DATA_DIR_FORMAT}")]
    Format { path: PathBuf, found: String },
    #[error("column family {0} is missing")]
    MissingTable(&'static str),
    #[error(transparent)]
    Codec(#[from] CodecError),
}

/// A key and its value.
pub type Pair = (Vec<u8>, Vec<u8>);

/// A handle on the node's RocksDB. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: Arc<DB>,
    dir: PathBuf,
    watch: Arc<std::sync::Mutex<Option<Changes>>>,
    /// Woken after a write that touched the shard assignment (see [`Store::shards_written`]).
    shards_written: Arc<tokio::sync::Notify>,
}

/// Keys a watcher may have pending before they collapse into "everything changed".
const MAX_WATCHED_KEYS: usize = 100_000;

/// What was written to the watched tables since the last [`Store::take_changes`]: how a reader
/// that keeps derived data in memory (the scheduler) learns what to read again instead of
/// reading everything. Recorded after each write succeeds, so a reader that takes the changes
/// *before* it reads never misses one: a later write is in the next take.
#[derive(Debug, Clone, Default)]
pub struct Changes {
    tables: Vec<Table>,
    /// Keys written (put or deleted), per table.
    pub keys: std::collections::HashSet<(Table, Vec<u8>)>,
    /// Everything may have changed: the first take, a range delete, a cleared table.
    pub all: bool,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("dir", &self.dir).finish()
    }
}

/// The WAL kept before the tables holding its oldest writes are flushed.
const MAX_TOTAL_WAL_BYTES: u64 = 64 << 20;
/// The block cache shared by every table (RocksDB's default is 8 MiB per table).
const BLOCK_CACHE_BYTES: usize = 32 << 20;

impl Store {
    /// Opens (or creates) the store under `dir/db`, checking the data directory format.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let io = |source| StoreError::Io { path: dir.to_path_buf(), source };
        std::fs::create_dir_all(dir).map_err(io)?;
        check_format(dir)?;
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
        opts.set_max_background_jobs(2);
        opts.set_keep_log_file_num(4);
        // Bound the WAL a restart replays: a table written rarely would otherwise keep every WAL
        // file since its last flush alive (350 MB at 1,000,000 jobs, 7 s to open).
        opts.set_max_total_wal_size(MAX_TOTAL_WAL_BYTES);
        // One block cache for every table, and a Bloom filter per table file: the owner's first
        // round after a start reads each job of its shards by key (a third of 1,000,000 jobs),
        // and a job that never fired has no firing state, a lookup that without a filter
        // searches every level.
        let cache = rocksdb::Cache::new_lru_cache(BLOCK_CACHE_BYTES);
        let mut table = rocksdb::BlockBasedOptions::default();
        table.set_block_cache(&cache);
        table.set_bloom_filter(10.0, false);
        let cfs = Table::ALL.iter().map(|t| {
            let mut cf = Options::default();
            cf.set_block_based_table_factory(&table);
            // A Bloom filter over the memtable's whole keys: a lookup of a key that is not
            // there (every create checks that its id is free) skips the skip-list search.
            cf.set_memtable_prefix_bloom_ratio(0.02);
            cf.set_memtable_whole_key_filtering(true);
            ColumnFamilyDescriptor::new(t.name(), cf)
        });
        let db = DB::open_cf_descriptors(&opts, dir.join("db"), cfs)?;
        Ok(Store { db: Arc::new(db), dir: dir.to_path_buf(), watch: Arc::default(), shards_written: Arc::default() })
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes of the files under the data directory (RocksDB, its WAL and logs, snapshots).
    /// Files that vanish during the walk (compaction) are skipped. Blocking: call it off the
    /// async threads.
    pub fn disk_usage_bytes(&self) -> u64 {
        fn walk(dir: &Path, depth: u32) -> u64 {
            // The layout is two levels deep; the bound only guards against a symlink loop.
            if depth > 8 {
                return 0;
            }
            let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
            entries
                .filter_map(Result::ok)
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => walk(&e.path(), depth + 1),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        }
        walk(&self.dir, 0)
    }

    fn cf(&self, t: Table) -> Result<&rocksdb::ColumnFamily, StoreError> {
        self.db.cf_handle(t.name()).ok_or(StoreError::MissingTable(t.name()))
    }

    pub fn get(&self, t: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get_cf(self.cf(t)?, key)?)
    }

    /// Reads and decodes a versioned value.
    pub fn get_value<T: serde::de::DeserializeOwned>(&self, t: Table, key: &[u8]) -> Result<Option<T>, StoreError> {
        match self.get(t, key)? {
            Some(bytes) => Ok(Some(decode(&bytes)?)),
            None => Ok(None),
        }
    }

    /// Applies a batch atomically. `sync` makes it durable (fsync of the WAL) before returning.
    pub fn write(&self, batch: Batch, sync: bool) -> Result<(), StoreError> {
        let mut wb = WriteBatch::default();
        let watching = self.watch.lock().unwrap_or_else(std::sync::PoisonError::into_inner).is_some();
        // (table, key) per op; `None`: a range.
        let mut touched: Vec<(Table, Option<Vec<u8>>)> = Vec::new();
        let mut touched_shards = false;
        for op in batch.ops {
            touched_shards |= op.table() == Table::Shards;
            match op {
                BatchOp::Put(t, k, v) => {
                    wb.put_cf(self.cf(t)?, &k, v);
                    if watching {
                        touched.push((t, Some(k)));
                    }
                }
                BatchOp::Delete(t, k) => {
                    wb.delete_cf(self.cf(t)?, &k);
                    if watching {
                        touched.push((t, Some(k)));
                    }
                }
                BatchOp::DeleteRange(t, from, to) => {
                    wb.delete_range_cf(self.cf(t)?, from, to);
                    touched.push((t, None));
                }
            }
        }
        let mut wo = WriteOptions::default();
        wo.set_sync(sync);
        self.db.write_opt(wb, &wo)?;
        if touched_shards {
            self.shards_written.notify_one();
        }
        if let Some(w) = self.watch.lock().unwrap_or_else(std::sync::PoisonError::into_inner).as_mut() {
            for (t, key) in touched {
                match key {
                    Some(k) if w.tables.contains(&t) => {
                        w.keys.insert((t, k));
                    }
                    None if w.tables.contains(&t) => w.all = true,
                    _ => {}
                }
            }
            // A watcher that stopped taking (its loop is waiting) costs bounded memory.
            if w.keys.len() > MAX_WATCHED_KEYS {
                w.keys.clear();
                w.all = true;
            }
        }
        Ok(())
    }

    /// Starts recording the keys written to `tables` (see [`Changes`]); the first take says
    /// everything changed.
    pub fn watch(&self, tables: &[Table]) {
        let mut w = self.watch.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *w = Some(Changes { tables: tables.to_vec(), keys: Default::default(), all: true });
    }

    /// Resolves after the next write that touches the shard assignment (or at once, if one
    /// came since the last call): the scheduler's owner loop claims for a shard it gained
    /// without waiting for its next tick.
    pub async fn shards_written(&self) {
        self.shards_written.notified().await;
    }

    /// The changes since the last take (everything, when nothing is watched).
    pub fn take_changes(&self) -> Changes {
        let mut w = self.watch.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match w.as_mut() {
            Some(c) => {
                Changes { tables: c.tables.clone(), keys: std::mem::take(&mut c.keys), all: std::mem::take(&mut c.all) }
            }
            None => Changes { all: true, ..Changes::default() },
        }
    }

    /// Writes every table's memtable to disk, so that the next open replays no WAL. Called at a
    /// clean shutdown; durability never depends on it. Blocking.
    pub fn flush_memtables(&self) -> Result<(), StoreError> {
        let mut fo = rocksdb::FlushOptions::default();
        fo.set_wait(true);
        for t in Table::ALL {
            self.db.flush_cf_opt(self.cf(t)?, &fo)?;
        }
        Ok(())
    }

    /// Makes every earlier write durable.
    pub fn sync(&self) -> Result<(), StoreError> {
        self.db.flush_wal(true)?;
        Ok(())
    }

    /// Up to `limit` pairs with keys `>= from` that start with `prefix`, in key order.
    pub fn scan(&self, t: Table, prefix: &[u8], from: &[u8], limit: usize) -> Result<Vec<Pair>, StoreError> {
        self.scan_bounded(t, prefix, from, limit, usize::MAX)
    }

    /// Up to `limit` pairs with keys `>= from`, in key order, stopping once their values add up
    /// to `max_bytes` or more (the pair that crosses it included, so never empty while a pair
    /// is there).
    pub fn scan_until(&self, t: Table, from: &[u8], limit: usize, max_bytes: usize) -> Result<Vec<Pair>, StoreError> {
        self.scan_bounded(t, &[], from, limit, max_bytes)
    }

    /// Pairs with keys `>= from` that start with `prefix`, in key order, until `limit` pairs or
    /// `max_bytes` of values (the pair that crosses it included).
    fn scan_bounded(
        &self,
        t: Table,
        prefix: &[u8],
        from: &[u8],
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<Pair>, StoreError> {
        let start = if from < prefix { prefix } else { from };
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for item in self.db.iterator_cf(self.cf(t)?, IteratorMode::From(start, Direction::Forward)) {
            if out.len() >= limit || bytes >= max_bytes {
                break;
            }
            let (k, v) = item?;
            if !k.starts_with(prefix) {
                break;
            }
            bytes = bytes.saturating_add(v.len());
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    /// The last pair of a table, if any.
    pub fn last(&self, t: Table) -> Result<Option<Pair>, StoreError> {
        match self.db.iterator_cf(self.cf(t)?, IteratorMode::End).next() {
            Some(item) => {
                let (k, v) = item?;
                Ok(Some((k.to_vec(), v.to_vec())))
            }
            None => Ok(None),
        }
    }

    /// Runs `f` over one consistent point-in-time view of every table.
    pub fn read_consistent<R>(
        &self,
        f: impl FnOnce(&StoreSnapshot<'_>) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let view = StoreSnapshot { store: self, snap: self.db.snapshot() };
        f(&view)
    }

    /// Deletes every pair of a table (used when a snapshot replaces the state).
    pub fn clear(&self, t: Table) -> Result<(), StoreError> {
        if let Some(w) = self.watch.lock().unwrap_or_else(std::sync::PoisonError::into_inner).as_mut() {
            w.all |= w.tables.contains(&t);
        }
        let cf = self.cf(t)?;
        let mut wb = WriteBatch::default();
        let mut n = 0usize;
        for item in self.db.iterator_cf(cf, IteratorMode::Start) {
            let (k, _) = item?;
            wb.delete_cf(cf, k);
            n += 1;
            if n.is_multiple_of(10_000) {
                self.db.write(std::mem::take(&mut wb))?;
            }
        }
        self.db.write(wb)?;
        // Again once done: a reader that took the changes midway has seen a half-cleared table.
        if let Some(w) = self.watch.lock().unwrap_or_else(std::sync::PoisonError::into_inner).as_mut() {
            w.all |= w.tables.contains(&t);
        }
        Ok(())
    }

    /// Approximate bytes on disk of all tables.
    pub fn size_bytes(&self) -> u64 {
        let mut total = 0;
        for t in Table::ALL {
            if let Ok(cf) = self.cf(t) {
                if let Ok(Some(v)) = self.db.property_int_value_cf(cf, "rocksdb.total-sst-files-size") {
                    total += v;
                }
            }
        }
        total
    }
}

/// A consistent point-in-time view of the store.
pub struct StoreSnapshot<'a> {
    store: &'a Store,
    snap: rocksdb::SnapshotWithThreadMode<'a, DB>,
}

impl StoreSnapshot<'_> {
    pub fn get(&self, t: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.snap.get_cf(self.store.cf(t)?, key)?)
    }

    pub fn get_value<T: serde::de::DeserializeOwned>(&self, t: Table, key: &[u8]) -> Result<Option<T>, StoreError> {
        match self.get(t, key)? {
            Some(bytes) => Ok(Some(decode(&bytes)?)),
            None => Ok(None),
        }
    }

    /// Visits every pair of a table in key order.
    pub fn for_each(
        &self,
        t: Table,
        mut visit: impl FnMut(&[u8], &[u8]) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        for item in self.snap.iterator_cf(self.store.cf(t)?, IteratorMode::Start) {
            let (k, v) = item?;
            visit(&k, &v)?;
        }
        Ok(())
    }
}

/// An atomic group of writes.
#[derive(Debug, Default)]
pub struct Batch {
    ops: Vec<BatchOp>,
}

/// One write of a [`Batch`].
#[derive(Debug)]
pub enum BatchOp {
    Put(Table, Vec<u8>, Vec<u8>),
    Delete(Table, Vec<u8>),
    DeleteRange(Table, Vec<u8>, Vec<u8>),
}

impl BatchOp {
    pub fn table(&self) -> Table {
        match self {
            BatchOp::Put(t, ..) | BatchOp::Delete(t, ..) | BatchOp::DeleteRange(t, ..) => *t,
        }
    }
}

impl Batch {
    pub fn put(&mut self, t: Table, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.push(BatchOp::Put(t, key.into(), value.into()));
    }

    /// Encodes `value` with the versioned codec and puts it.
    pub fn put_value<T: serde::Serialize>(
        &mut self,
        t: Table,
        key: impl Into<Vec<u8>>,
        value: &T,
    ) -> Result<(), CodecError> {
        self.ops.push(BatchOp::Put(t, key.into(), encode(value)?));
        Ok(())
    }

    pub fn delete(&mut self, t: Table, key: impl Into<Vec<u8>>) {
        self.ops.push(BatchOp::Delete(t, key.into()));
    }

    /// Deletes keys in `[from, to)`.
    pub fn delete_range(&mut self, t: Table, from: impl Into<Vec<u8>>, to: impl Into<Vec<u8>>) {
        self.ops.push(BatchOp::DeleteRange(t, from.into(), to.into()));
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The bytes of keys and values put so far.
    pub fn bytes(&self) -> usize {
        self.ops.iter().map(|op| if let BatchOp::Put(_, k, v) = op { k.len() + v.len() } else { 0 }).sum()
    }

    /// The writes so far, in order.
    pub fn ops(&self) -> &[BatchOp] {
        &self.ops
    }

    /// Adds `other`'s writes after this batch's.
    pub fn append(&mut self, other: Batch) {
        self.ops.extend(other.ops);
    }

    /// Drops every point write (put or delete) that a later point write of the same key in this
    /// batch overrides. Range deletes, and the order of what is left, stay: the batch leaves the
    /// same state with fewer writes. A batch of commands updates the same counters (job count,
    /// audit sequence) once per command; without this, each update is one more memtable entry.
    pub fn keep_last_writes(&mut self) {
        let keep: Vec<bool> = {
            let mut seen = std::collections::HashSet::new();
            let mut keep = vec![true; self.ops.len()];
            for (i, op) in self.ops.iter().enumerate().rev() {
                if let BatchOp::Put(t, k, _) | BatchOp::Delete(t, k) = op {
                    keep[i] = seen.insert((t.tag(), k.as_slice()));
                }
            }
            keep
        };
        let mut i = 0;
        self.ops.retain(|_| {
            i += 1;
            keep[i - 1]
        });
    }

    /// The writes, in order (for stores other than RocksDB, such as test doubles).
    pub fn into_ops(self) -> Vec<BatchOp> {
        self.ops
    }
}

fn check_format(dir: &Path) -> Result<(), StoreError> {
    let path = dir.join(FORMAT_FILE);
    let expected = format!("{FORMAT_MAGIC} {DATA_DIR_FORMAT}\n");
    match std::fs::read_to_string(&path) {
        Ok(found) if found == expected => Ok(()),
        Ok(found) => Err(StoreError::Format { path, found: found.trim().to_string() }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if dir.join("db").exists() {
                return Err(StoreError::Format { path, found: "missing".into() });
            }
            std::fs::write(&path, expected).map_err(|source| StoreError::Io { path, source })
        }
        Err(source) => Err(StoreError::Io { path, source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A state: (table tag, key) to value.
    type Model = std::collections::BTreeMap<(u8, Vec<u8>), Vec<u8>>;

    /// The state `ops` leave on `start`.
    fn replay(start: &Model, ops: &[BatchOp]) -> Model {
        let mut m = start.clone();
        for op in ops {
            match op {
                BatchOp::Put(t, k, v) => {
                    m.insert((t.tag(), k.clone()), v.clone());
                }
                BatchOp::Delete(t, k) => {
                    m.remove(&(t.tag(), k.clone()));
                }
                BatchOp::DeleteRange(t, from, to) => {
                    m.retain(|(tag, k), _| !(*tag == t.tag() && k >= from && k < to));
                }
            }
        }
        m
    }

    proptest::proptest! {
        #[test]
        fn keeping_the_last_write_of_each_key_leaves_the_same_state(
            ops in proptest::collection::vec((0u8..4, 0u8..2, 0u8..6, 0u8..6, 0u8..255), 0..40),
        ) {
            let tables = [Table::Jobs, Table::SmMeta];
            let mut b = Batch::default();
            for (kind, t, k, k2, v) in &ops {
                let t = tables[usize::from(*t)];
                match kind {
                    0 | 1 => b.put(t, vec![*k], vec![*v]),
                    2 => b.delete(t, vec![*k]),
                    _ => b.delete_range(t, vec![*k.min(k2)], vec![*k.max(k2)]),
                }
            }
            let start: Model =
                (0u8..6).map(|k| ((Table::Jobs.tag(), vec![k]), vec![100 + k])).collect();
            let before = replay(&start, b.ops());
            let len = b.ops().len();
            b.keep_last_writes();
            proptest::prop_assert_eq!(replay(&start, b.ops()), before);
            proptest::prop_assert!(b.ops().len() <= len);
            let mut points = std::collections::HashSet::new();
            for op in b.ops() {
                if let BatchOp::Put(t, k, _) | BatchOp::Delete(t, k) = op {
                    proptest::prop_assert!(points.insert((t.tag(), k.clone())), "one point write per key");
                }
            }
        }
    }

    #[tokio::test]
    async fn a_write_to_the_shard_assignment_wakes_its_waiter_and_other_writes_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let wait = std::time::Duration::from_millis(100);
        let mut b = Batch::default();
        b.put(Table::Jobs, b"j".to_vec(), b"v".to_vec());
        store.write(b, false).unwrap();
        assert!(tokio::time::timeout(wait, store.shards_written()).await.is_err(), "a job write is not a move");
        let mut b = Batch::default();
        b.put(Table::Shards, b"s".to_vec(), b"v".to_vec());
        store.write(b, false).unwrap();
        // Written before the wait began: the wake is kept for it.
        assert!(tokio::time::timeout(wait, store.shards_written()).await.is_ok());
        let waiter = {
            let store = store.clone();
            tokio::spawn(async move { store.shards_written().await })
        };
        tokio::task::yield_now().await;
        let mut b = Batch::default();
        b.delete(Table::Shards, b"s".to_vec());
        store.write(b, false).unwrap();
        assert!(tokio::time::timeout(std::time::Duration::from_secs(5), waiter).await.is_ok());
    }

    #[test]
    fn a_watcher_hears_of_every_write_to_its_tables_and_only_those() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.write(Batch::default(), false).unwrap();
        assert!(store.take_changes().all, "nothing watched: everything may have changed");
        store.watch(&[Table::Jobs, Table::Shards]);
        assert!(store.take_changes().all, "the first take after watching");
        let mut b = Batch::default();
        b.put(Table::Jobs, b"j1".to_vec(), b"v".to_vec());
        b.delete(Table::Jobs, b"j2".to_vec());
        b.put(Table::Runs, b"r".to_vec(), b"v".to_vec());
        store.write(b, false).unwrap();
        let c = store.take_changes();
        assert!(!c.all);
        let want: std::collections::HashSet<_> =
            [(Table::Jobs, b"j1".to_vec()), (Table::Jobs, b"j2".to_vec())].into_iter().collect();
        assert_eq!(c.keys, want);
        assert!(store.take_changes().keys.is_empty(), "taken once");
        let mut b = Batch::default();
        b.delete_range(Table::Shards, vec![0], vec![9]);
        store.write(b, false).unwrap();
        assert!(store.take_changes().all, "a range delete");
        store.clear(Table::Jobs).unwrap();
        assert!(store.take_changes().all, "a cleared table");
        store.clear(Table::Runs).unwrap();
        assert!(!store.take_changes().all, "an unwatched table");
    }

    #[test]
    fn refuses_a_data_dir_of_another_format() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path()).unwrap());
        std::fs::write(dir.path().join(FORMAT_FILE), "raftcron-data-dir 99\n").unwrap();
        let err = Store::open(dir.path()).unwrap_err();
        assert!(matches!(err, StoreError::Format { .. }), "{err}");
    }

    #[test]
    fn batches_scans_and_clear() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut b = Batch::default();
        for i in 0u8..10 {
            b.put(Table::Jobs, vec![b'a', i], vec![i]);
        }
        b.put(Table::Jobs, b"b1".to_vec(), b"x".to_vec());
        store.write(b, true).unwrap();
        let got = store.scan(Table::Jobs, b"a", b"", 100).unwrap();
        assert_eq!(got.len(), 10);
        let got = store.scan(Table::Jobs, b"a", &[b'a', 5], 3).unwrap();
        assert_eq!(got.iter().map(|(_, v)| v[0]).collect::<Vec<_>>(), vec![5, 6, 7]);
        store.clear(Table::Jobs).unwrap();
        assert!(store.scan(Table::Jobs, b"", b"", 100).unwrap().is_empty());
    }

    #[test]
    fn after_a_memtable_flush_a_reopen_replays_no_wal_and_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut b = Batch::default();
        for i in 0u8..100 {
            b.put(Table::Jobs, vec![b'j', i], vec![i; 1000]);
            b.put(Table::Log, vec![b'l', i], vec![i; 100]);
        }
        store.write(b, false).unwrap();
        store.flush_memtables().unwrap();
        drop(store);
        let wal_bytes: u64 = std::fs::read_dir(dir.path().join("db"))
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
            .map(|e| e.metadata().map_or(0, |m| m.len()))
            .sum();
        assert!(wal_bytes < 1000, "the writes are in tables, not only in the WAL: {wal_bytes} bytes of WAL");
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.scan(Table::Jobs, b"j", b"", 1000).unwrap().len(), 100);
        assert_eq!(store.scan(Table::Log, b"l", b"", 1000).unwrap().len(), 100);
    }
}
