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

#[tokio::test]
async fn an_append_entries_payload_is_bounded_in_bytes_not_only_in_entries() {
    use openraft::{CommittedLeaderId, EntryPayload, LogId, RaftLogReader};

    use crate::raft::log_store::MAX_APPEND_BYTES;
    use crate::state::{Command, CommandBody};

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut log = LogStore::new(store.clone());
    // Entries that each carry a batch of about 65 KiB of commands.
    let batch = |i: u64| Command {
        proposed_at_ms: i as i64,
        body: CommandBody::Batch(
            (0..5000).map(|_| Command { proposed_at_ms: 0, body: CommandBody::Noop, actor: None }).collect(),
        ),
        actor: None,
    };
    let entries: Vec<crate::raft::Entry> = (1..=20)
        .map(|i| crate::raft::Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), i),
            payload: EntryPayload::Normal(batch(i)),
        })
        .collect();
    let size = crate::store::encode(&entries[0]).unwrap().len();
    assert!(size > 32 * 1024 && size < MAX_APPEND_BYTES, "an entry is {size} bytes");
    // As `append` writes them (log keys are big-endian indexes).
    let mut b = crate::store::Batch::default();
    for e in &entries {
        b.put_value(crate::store::Table::Log, e.log_id.index.to_be_bytes().to_vec(), e).unwrap();
    }
    store.write(b, true).unwrap();

    let sent = log.limited_get_log_entries(1, 21).await.unwrap();
    let per_payload = MAX_APPEND_BYTES.div_ceil(size);
    assert_eq!(sent.len(), per_payload, "entries of {size} bytes up to {MAX_APPEND_BYTES} bytes");
    assert_eq!(sent.first().map(|e| e.log_id.index), Some(1));
    // Reads for other purposes are not cut short, and a payload is never empty.
    assert_eq!(log.try_get_log_entries(1..21).await.unwrap().len(), 20);
    assert_eq!(log.limited_get_log_entries(20, 21).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_node_with_a_vote_or_a_log_entry_has_raft_state() {
    use openraft::storage::RaftLogStorage;
    use openraft::Vote;

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert!(!crate::raft::log_store::has_state(&store).unwrap(), "a pristine store");
    let mut log = LogStore::new(store.clone());
    log.save_vote(&Vote::new(1, 2)).await.unwrap();
    assert!(crate::raft::log_store::has_state(&store).unwrap(), "a vote");
    let other = tempfile::tempdir().unwrap();
    let seeded = Store::open(other.path()).unwrap();
    let last = openraft::LogId::new(openraft::CommittedLeaderId::new(3, 1), 40);
    crate::raft::log_store::seed(&seeded, last, 1).unwrap();
    assert!(crate::raft::log_store::has_state(&seeded).unwrap(), "seeded from a snapshot");
}

#[tokio::test]
async fn a_node_that_led_starts_again_with_its_vote_but_not_its_leadership() {
    use openraft::storage::RaftLogStorage;
    use openraft::Vote;

    use crate::raft::log_store::resign_on_start;

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut log = LogStore::new(store.clone());
    assert!(!resign_on_start(&store, 1).unwrap(), "no vote yet");
    log.save_vote(&Vote::new_committed(7, 2)).await.unwrap();
    assert!(!resign_on_start(&store, 1).unwrap(), "another node's leadership stays");
    assert_eq!(log.read_vote().await.unwrap(), Some(Vote::new_committed(7, 2)));
    log.save_vote(&Vote::new(8, 1)).await.unwrap();
    assert!(!resign_on_start(&store, 1).unwrap(), "a candidacy stays");
    assert_eq!(log.read_vote().await.unwrap(), Some(Vote::new(8, 1)));

    log.save_vote(&Vote::new_committed(8, 1)).await.unwrap();
    assert!(resign_on_start(&store, 1).unwrap(), "its own leadership goes");
    let vote = log.read_vote().await.unwrap().unwrap();
    assert_eq!(vote, Vote::new(8, 1), "the same term and candidate, uncommitted");
    // Against any other node's vote it compares as before (by term, then candidate).
    for other in [Vote::new(8, 2), Vote::new_committed(8, 2), Vote::new(7, 3), Vote::new_committed(9, 3)] {
        assert_eq!(vote.partial_cmp(&other), Vote::new_committed(8, 1).partial_cmp(&other), "against {other}");
    }
}
