//! openraft's storage conformance suite run against the RocksDB log store and state machine.

use openraft::testing::{StoreBuilder, Suite};

use crate::raft::log_store::LogStore;
use crate::raft::state_machine::StateMachine;
use crate::raft::{StorageError, TypeConfig};
use crate::store::Store;

struct RocksBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for RocksBuilder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError> {
        let dir = tempfile::tempdir().map_err(|e| {
            openraft::StorageIOError::new(
                openraft::ErrorSubject::Store,
                openraft::ErrorVerb::Write,
                openraft::AnyError::new(&e),
            )
        })?;
        let store = Store::open(dir.path()).map_err(|e| {
            openraft::StorageIOError::new(
                openraft::ErrorSubject::Store,
                openraft::ErrorVerb::Write,
                openraft::AnyError::new(&e),
            )
        })?;
        let sm = StateMachine::open(store.clone()).await?;
        Ok((dir, LogStore::new(store), sm))
    }
}

#[test]
fn openraft_storage_suite_passes_on_rocksdb() -> Result<(), StorageError> {
    Suite::test_all(RocksBuilder)?;
    Ok(())
}
