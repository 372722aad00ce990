//! Offline seeding of a new cluster: from a backup file (`GET /api/v1/cluster/snapshot`), or from
//! the data directory of a survivor after the quorum was lost for good.
//!
//! From a survivor, every entry of its log is applied, committed or not (as etcd's forced new
//! cluster does): a write the survivor had accepted may have been acknowledged to a client.
//!
//! The result is the data directory of a one-member cluster `{node_id: advertise}` holding the
//! backed-up state (jobs, keys, tenants, run history, firing state). Started with
//! `raftcron serve` (same `--node-id`, no `--initial-cluster`), the node elects itself and the
//! cluster grows again with `POST /api/v1/cluster/nodes`. Shards owned by the old members move to
//! the new node once their leases ran out. This module never runs while a node uses the
//! directories it reads or writes (RocksDB's lock refuses that).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use crate::ids::NodeId;
use crate::raft::{log_store, snapshot, state_machine};
use crate::store::{decode, Store, Table};

/// What a restore wrote.
#[derive(Debug)]
pub struct Restored {
    pub last_index: u64,
    pub jobs: u64,
    pub keys: u64,
    pub tenants: u64,
}

/// Where the state comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A snapshot file from `GET /api/v1/cluster/snapshot`.
    File(PathBuf),
    /// The data directory of a stopped node (quorum-loss recovery); read, never changed.
    DataDir(PathBuf),
}

/// Seeds `data_dir` (which must be empty or missing) as node `node_id` at `advertise`.
pub fn restore(source: &Source, data_dir: &Path, node_id: NodeId, advertise: &str) -> anyhow::Result<Restored> {
    if node_id == 0 {
        bail!("--node-id: 1 or more");
    }
    if data_dir.exists() && std::fs::read_dir(data_dir)?.next().is_some() {
        bail!("{} is not empty: restore only into a new data directory", data_dir.display());
    }
    let scratch = tempfile::Builder::new().prefix("raftcron-restore-").tempdir()?;
    let (file, survivor) = match source {
        Source::File(f) => (f.clone(), None),
        Source::DataDir(dir) => {
            let survivor = Store::open(dir)
                .with_context(|| format!("opening {} (is its node stopped? it must be)", dir.display()))?;
            let path = scratch.path().join("survivor.snap");
            state_machine::write_consistent(&survivor, &path, None)
                .with_context(|| format!("reading the state of {}", dir.display()))?;
            (path, Some(survivor))
        }
    };
    snapshot::verify(&file).with_context(|| format!("checking {}", file.display()))?;
    std::fs::create_dir_all(data_dir)?;
    let store = Store::open(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    let meta =
        state_machine::seed(&store, &file, node_id, advertise, survivor.as_ref()).context("loading the state")?;
    let last = meta.last_log_id.context("the snapshot holds no applied entry")?;
    log_store::seed(&store, last, node_id)?;
    let count = |t: Table, prefix: &[u8]| store.scan(t, prefix, prefix, usize::MAX).map(|r| r.len() as u64);
    let keys = store
        .scan(Table::Keys, crate::state::keys::KEY_RECORDS, crate::state::keys::KEY_RECORDS, usize::MAX)?
        .into_iter()
        .filter(|(_, v)| decode::<crate::model::apikey::ApiKeyRecord>(v).is_ok())
        .count() as u64;
    Ok(Restored { last_index: last.index, jobs: count(Table::Jobs, &[])?, keys, tenants: count(Table::Tenants, &[])? })
}
