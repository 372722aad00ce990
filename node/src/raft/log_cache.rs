//! The newest entries of the Raft log, kept in memory as they are appended.
//!
//! An entry is read back right after it is written: by each replication stream of a leader (to
//! send it) and by the state machine (to apply it), on every node. Read from RocksDB, each read
//! is a lookup and a decode of the whole entry, a batch of commands. This keeps a clone of what
//! `LogStore::append` wrote, a contiguous run of the newest indexes bounded by [`MAX_ENTRIES`]
//! and [`MAX_BYTES`], and answers a read only when the whole range is here; any other read goes
//! to the store.
//!
//! Invariant: every entry here is the one the store holds at its index. `LogStore` keeps it by
//! calling [`LogCache::truncate_from`] and [`LogCache::purge_to`] before it deletes from the
//! store, and [`LogCache::appended`] after it writes. It must not hold anything the store does
//! not, and it decides nothing.

use std::collections::VecDeque;

use crate::raft::Entry;

/// Most entries kept.
pub const MAX_ENTRIES: usize = 4096;
/// Most encoded bytes of entries kept (an entry counts the bytes the store holds for it).
pub const MAX_BYTES: usize = 32 * 1024 * 1024;

/// See the module's comment.
#[derive(Debug, Default)]
pub struct LogCache {
    /// Entries with consecutive indexes, each with its encoded size.
    entries: VecDeque<(Entry, usize)>,
    bytes: usize,
}

impl LogCache {
    fn first_index(&self) -> Option<u64> {
        self.entries.front().map(|(e, _)| e.log_id.index)
    }

    fn last_index(&self) -> Option<u64> {
        self.entries.back().map(|(e, _)| e.log_id.index)
    }

    /// `entries` (consecutive, each with its encoded size) were written to the store. Entries
    /// kept at or after the first of them were overwritten and go; a gap before them empties the
    /// cache, which then starts again from them.
    pub fn appended(&mut self, entries: &[Entry], sizes: &[usize]) {
        let Some(first) = entries.first().map(|e| e.log_id.index) else { return };
        self.truncate_from(first);
        if self.last_index().is_some_and(|last| last.checked_add(1) != Some(first)) {
            self.clear();
        }
        for (entry, size) in entries.iter().zip(sizes) {
            self.entries.push_back((entry.clone(), *size));
            self.bytes = self.bytes.saturating_add(*size);
        }
        while self.entries.len() > MAX_ENTRIES || (self.bytes > MAX_BYTES && !self.entries.is_empty()) {
            self.pop_front();
        }
    }

    /// The entries from `index` on are being deleted.
    pub fn truncate_from(&mut self, index: u64) {
        while self.last_index().is_some_and(|last| last >= index) {
            if let Some((_, size)) = self.entries.pop_back() {
                self.bytes = self.bytes.saturating_sub(size);
            }
        }
    }

    /// The entries up to `index`, included, are being deleted.
    pub fn purge_to(&mut self, index: u64) {
        while self.first_index().is_some_and(|first| first <= index) {
            self.pop_front();
        }
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }

    fn pop_front(&mut self) {
        if let Some((_, size)) = self.entries.pop_front() {
            self.bytes = self.bytes.saturating_sub(size);
        }
    }

    /// The entries with indexes `start..end`, stopping once `max_bytes` are taken (the entry that
    /// crosses it included, as the store's scan does), if all of them are here; `None`
    /// otherwise.
    pub fn get(&self, start: u64, end: u64, max_bytes: usize) -> Option<Vec<Entry>> {
        let (first, last) = (self.first_index()?, self.last_index()?);
        if start < first || end == 0 || end - 1 > last || start >= end {
            return None;
        }
        let from = usize::try_from(start - first).ok()?;
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for (entry, size) in self.entries.iter().skip(from) {
            if entry.log_id.index >= end || bytes >= max_bytes {
                break;
            }
            bytes = bytes.saturating_add(*size);
            out.push(entry.clone());
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, EntryPayload, LogId};

    use super::*;

    fn entry(term: u64, index: u64) -> Entry {
        Entry { log_id: LogId::new(CommittedLeaderId::new(term, 1), index), payload: EntryPayload::Blank }
    }

    fn indexes(got: Option<Vec<Entry>>) -> Option<Vec<(u64, u64)>> {
        got.map(|v| v.iter().map(|e| (e.log_id.leader_id.term, e.log_id.index)).collect())
    }

    #[test]
    fn only_ranges_wholly_here_are_answered() {
        let mut c = LogCache::default();
        assert_eq!(c.get(1, 2, usize::MAX).map(|v| v.len()), None, "empty");
        c.appended(&[entry(1, 5), entry(1, 6), entry(1, 7)], &[10, 10, 10]);
        assert_eq!(indexes(c.get(5, 8, usize::MAX)), Some(vec![(1, 5), (1, 6), (1, 7)]));
        assert_eq!(indexes(c.get(6, 7, usize::MAX)), Some(vec![(1, 6)]));
        assert_eq!(c.get(4, 6, usize::MAX).map(|v| v.len()), None, "starts before the first");
        assert_eq!(c.get(6, 9, usize::MAX).map(|v| v.len()), None, "ends after the last");
        assert_eq!(c.get(6, u64::MAX, usize::MAX).map(|v| v.len()), None, "an open end goes to the store");
        assert_eq!(c.get(6, 6, usize::MAX).map(|v| v.len()), None, "an empty range goes to the store");
        assert_eq!(indexes(c.get(5, 8, 15)), Some(vec![(1, 5), (1, 6)]), "the entry crossing the limit is in");
        assert_eq!(indexes(c.get(5, 8, 0)), Some(vec![]), "as the store's scan: a limit of 0 takes none");
    }

    #[test]
    fn truncation_overwrites_gaps_and_purges_keep_it_equal_to_the_log() {
        let mut c = LogCache::default();
        c.appended(&[entry(1, 1), entry(1, 2), entry(1, 3), entry(1, 4)], &[1; 4]);
        c.truncate_from(3);
        assert_eq!(c.get(3, 4, usize::MAX).map(|v| v.len()), None, "truncated");
        c.appended(&[entry(2, 3)], &[1]);
        assert_eq!(indexes(c.get(1, 4, usize::MAX)), Some(vec![(1, 1), (1, 2), (2, 3)]));
        // Written over without a truncation first: the old entries from there on go.
        c.appended(&[entry(3, 2)], &[1]);
        assert_eq!(indexes(c.get(1, 3, usize::MAX)), Some(vec![(1, 1), (3, 2)]));
        assert_eq!(c.get(3, 4, usize::MAX).map(|v| v.len()), None);
        // A gap: only the new run is kept.
        c.appended(&[entry(3, 9)], &[1]);
        assert_eq!(c.get(2, 3, usize::MAX).map(|v| v.len()), None);
        assert_eq!(indexes(c.get(9, 10, usize::MAX)), Some(vec![(3, 9)]));
        c.appended(&[entry(3, 10), entry(3, 11)], &[1, 1]);
        c.purge_to(10);
        assert_eq!(c.get(10, 12, usize::MAX).map(|v| v.len()), None, "purged");
        assert_eq!(indexes(c.get(11, 12, usize::MAX)), Some(vec![(3, 11)]));
        c.purge_to(20);
        assert_eq!(c.get(11, 12, usize::MAX).map(|v| v.len()), None, "all purged");
    }

    #[test]
    fn it_is_bounded_by_count_and_bytes() {
        let mut c = LogCache::default();
        for i in 1..=(MAX_ENTRIES as u64 + 10) {
            c.appended(&[entry(1, i)], &[1]);
        }
        assert_eq!(c.entries.len(), MAX_ENTRIES);
        assert_eq!(c.first_index(), Some(11));
        c.appended(&[entry(1, MAX_ENTRIES as u64 + 11)], &[MAX_BYTES]);
        assert_eq!(c.entries.len(), 1, "one huge entry pushes the rest out");
        c.appended(&[entry(1, MAX_ENTRIES as u64 + 12)], &[1]);
        assert_eq!(c.entries.len(), 1, "and then itself");
        assert_eq!(c.first_index(), Some(MAX_ENTRIES as u64 + 12));
        assert!(c.bytes <= MAX_BYTES);
    }
}
