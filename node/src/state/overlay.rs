//! Read-your-writes for a batch of commands: the view one command of a batch sees, with the
//! effects of the commands before it in the same batch laid over the applied state.
//!
//! Pure and deterministic: it keeps the earlier commands' writes in memory and reads the rest
//! from the state below. It writes nothing; the caller collects every command's effects into
//! the one [`Batch`] that the Raft adapter writes with the entry's log id, so a batch of
//! commands is applied all or nothing, like one command.

use std::collections::BTreeMap;

use crate::state::{StateError, StateRead};
use crate::store::{Batch, BatchOp, Pair, Table};

/// The state below, with writes laid over it.
pub struct Overlay<'a> {
    base: &'a dyn StateRead,
    /// The latest write of each key: `Some` put, `None` deleted.
    writes: BTreeMap<(u8, Vec<u8>), Option<Vec<u8>>>,
    /// Ranges deleted (table tag, from, to exclusive); a later write in `writes` wins.
    ranges: Vec<(u8, Vec<u8>, Vec<u8>)>,
}

impl<'a> Overlay<'a> {
    pub fn new(base: &'a dyn StateRead) -> Overlay<'a> {
        Overlay { base, writes: BTreeMap::new(), ranges: Vec::new() }
    }

    /// Lays `batch`'s writes over what is there, in order.
    pub fn record(&mut self, batch: &Batch) {
        for op in batch.ops() {
            match op {
                BatchOp::Put(t, k, v) => {
                    self.writes.insert((t.tag(), k.clone()), Some(v.clone()));
                }
                BatchOp::Delete(t, k) => {
                    self.writes.insert((t.tag(), k.clone()), None);
                }
                BatchOp::DeleteRange(t, from, to) => {
                    let tag = t.tag();
                    self.writes.retain(|(wt, k), _| !(*wt == tag && k >= from && k < to));
                    self.ranges.push((tag, from.clone(), to.clone()));
                }
            }
        }
    }

    fn deleted_by_range(&self, tag: u8, key: &[u8]) -> bool {
        self.ranges.iter().any(|(t, from, to)| *t == tag && key >= from.as_slice() && key < to.as_slice())
    }
}

impl StateRead for Overlay<'_> {
    fn get(&self, t: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        let tag = t.tag();
        if let Some(w) = self.writes.get(&(tag, key.to_vec())) {
            return Ok(w.clone());
        }
        if self.deleted_by_range(tag, key) {
            return Ok(None);
        }
        self.base.get(t, key)
    }

    fn scan_prefix(&self, t: Table, prefix: &[u8], limit: usize) -> Result<Vec<Pair>, StateError> {
        let tag = t.tag();
        let mine: Vec<_> = self
            .writes
            .range((tag, prefix.to_vec())..)
            .take_while(|((wt, k), _)| *wt == tag && k.starts_with(prefix))
            .collect();
        // Each write of ours hides at most one row below, so `limit + mine` rows below are
        // enough; a deleted range may hide any number, so then everything is read.
        let below =
            if self.ranges.iter().any(|(rt, _, _)| *rt == tag) { usize::MAX } else { limit.saturating_add(mine.len()) };
        let mut merged: BTreeMap<Vec<u8>, Vec<u8>> = self
            .base
            .scan_prefix(t, prefix, below)?
            .into_iter()
            .filter(|(k, _)| !self.deleted_by_range(tag, k))
            .collect();
        for ((_, k), w) in mine {
            match w {
                Some(v) => merged.insert(k.clone(), v.clone()),
                None => merged.remove(k),
            };
        }
        Ok(merged.into_iter().take(limit).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::tests::MemState;

    fn mem(rows: &[(&[u8], &[u8])]) -> MemState {
        let mut b = Batch::default();
        for (k, v) in rows {
            b.put(Table::Jobs, k.to_vec(), v.to_vec());
        }
        let mut s = MemState::default();
        s.write(b);
        s
    }

    #[test]
    fn reads_see_earlier_writes_over_the_state() {
        let base = mem(&[(b"a1", b"x"), (b"a2", b"y"), (b"b1", b"z")]);
        let mut o = Overlay::new(&base);
        let mut b = Batch::default();
        b.put(Table::Jobs, b"a2".to_vec(), b"Y".to_vec());
        b.delete(Table::Jobs, b"a1".to_vec());
        b.put(Table::Jobs, b"a3".to_vec(), b"w".to_vec());
        b.put(Table::Runs, b"a4".to_vec(), b"other table".to_vec());
        o.record(&b);
        assert_eq!(o.get(Table::Jobs, b"a1").unwrap(), None);
        assert_eq!(o.get(Table::Jobs, b"a2").unwrap(), Some(b"Y".to_vec()));
        assert_eq!(o.get(Table::Jobs, b"b1").unwrap(), Some(b"z".to_vec()));
        assert_eq!(o.get(Table::Jobs, b"a4").unwrap(), None);
        let keys = |rows: Vec<Pair>| rows.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
        assert_eq!(keys(o.scan_prefix(Table::Jobs, b"a", usize::MAX).unwrap()), vec![b"a2".to_vec(), b"a3".to_vec()]);
        // The deleted first row must not cost the limit a row.
        assert_eq!(keys(o.scan_prefix(Table::Jobs, b"a", 1).unwrap()), vec![b"a2".to_vec()]);
        assert_eq!(keys(o.scan_prefix(Table::Jobs, b"", 2).unwrap()), vec![b"a2".to_vec(), b"a3".to_vec()]);
    }

    #[test]
    fn a_deleted_range_hides_rows_below_until_written_again() {
        let base = mem(&[(b"j1r1", b"1"), (b"j1r2", b"2"), (b"j1r3", b"3"), (b"j2r1", b"4")]);
        let mut o = Overlay::new(&base);
        let mut b = Batch::default();
        b.put(Table::Jobs, b"j1r9".to_vec(), b"before".to_vec());
        b.delete_range(Table::Jobs, b"j1".to_vec(), b"j2".to_vec());
        b.put(Table::Jobs, b"j1r2".to_vec(), b"again".to_vec());
        o.record(&b);
        assert_eq!(o.get(Table::Jobs, b"j1r1").unwrap(), None);
        assert_eq!(o.get(Table::Jobs, b"j1r9").unwrap(), None);
        assert_eq!(o.get(Table::Jobs, b"j1r2").unwrap(), Some(b"again".to_vec()));
        let rows = o.scan_prefix(Table::Jobs, b"j", 2).unwrap();
        assert_eq!(rows, vec![(b"j1r2".to_vec(), b"again".to_vec()), (b"j2r1".to_vec(), b"4".to_vec())]);
    }

    #[test]
    fn the_overlay_matches_the_state_with_the_writes_applied() {
        // Random writes over a random state: every read through the overlay equals the read
        // of a state that took the writes for real.
        let mut rng: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        for _ in 0..200 {
            let key = |i: u64| format!("k{:02}", i).into_bytes();
            let mut seed = Batch::default();
            for _ in 0..next(20) {
                seed.put(Table::Jobs, key(next(30)), vec![next(256) as u8]);
            }
            let mut base = MemState::default();
            base.write(seed);
            let mut real = base.clone();
            let mut o = Overlay::new(&base);
            for _ in 0..1 + next(4) {
                let mut b = Batch::default();
                for _ in 0..next(8) {
                    match next(6) {
                        0 => b.delete(Table::Jobs, key(next(30))),
                        1 => {
                            let from = next(30);
                            b.delete_range(Table::Jobs, key(from), key(from + next(6)));
                        }
                        _ => b.put(Table::Jobs, key(next(30)), vec![next(256) as u8]),
                    }
                }
                o.record(&b);
                real.write(b);
            }
            for i in 0..30 {
                assert_eq!(o.get(Table::Jobs, &key(i)).unwrap(), real.get(Table::Jobs, &key(i)).unwrap());
            }
            for limit in [0, 1, 3, 10, usize::MAX] {
                for prefix in [&b""[..], b"k", b"k1", b"k2"] {
                    assert_eq!(
                        o.scan_prefix(Table::Jobs, prefix, limit).unwrap(),
                        real.scan_prefix(Table::Jobs, prefix, limit).unwrap()
                    );
                }
            }
        }
    }
}
