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
        let sm = StateMachine::open(store.clone(), crate::metrics::Metrics::new().unwrap()).await?;
        Ok((dir, LogStore::new(store), sm))
    }
}

#[test]
fn openraft_storage_suite_passes_on_rocksdb() -> Result<(), StorageError> {
    Suite::test_all(RocksBuilder)?;
    Ok(())
}

#[tokio::test]
async fn the_state_machine_reopens_with_its_applied_state() {
    use openraft::storage::RaftStateMachine;
    use openraft::{CommittedLeaderId, EntryPayload, LogId};

    use crate::state::{Command, CommandBody};

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut sm = StateMachine::open(store.clone(), crate::metrics::Metrics::new().unwrap()).await.unwrap();
    let entries: Vec<crate::raft::Entry> = (1..=5)
        .map(|i| crate::raft::Entry {
            log_id: LogId::new(CommittedLeaderId::new(2, 1), i),
            payload: EntryPayload::Normal(Command { proposed_at_ms: i as i64, body: CommandBody::Noop, actor: None }),
        })
        .collect();
    sm.apply(entries).await.unwrap();
    let before = sm.applied_state().await.unwrap();
    drop(sm);
    let mut reopened = StateMachine::open(store, crate::metrics::Metrics::new().unwrap()).await.unwrap();
    assert_eq!(reopened.applied_state().await.unwrap(), before);
    assert_eq!(before.0.map(|l| l.index), Some(5));
}
