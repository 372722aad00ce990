//! Slot accounting of the fire scenario: which (job, second) slots were expected in a window
//! (a slot is a whole second, or a whole second plus the job's millisecond offset),
//! which arrived, which arrived twice (the same `Idempotency-Key` again) and which never came.
//!
//! Pure functions over the sink's records; the scenario decides the window and waits for late
//! arrivals before calling [`tally`].

use std::collections::{HashMap, HashSet};

use serde::Serialize;

/// One request the sink received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// `Idempotency-Key`.
    pub key: String,
    /// `X-Raftcron-Job-Id`.
    pub job: String,
    /// `X-Raftcron-Scheduled-At`, in microseconds since the epoch.
    pub scheduled_us: i64,
    /// When the sink read the request, in microseconds since the epoch.
    pub received_us: i64,
}

/// A schedule that fires at every whole second `s` with `s % period == offset`, `ms`
/// milliseconds after that second (the cron offset `+<ms>ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Every {
    pub period: u32,
    pub offset: u32,
    pub ms: u32,
}

impl Every {
    /// The instant of the slot at Unix second `s`, in microseconds since the epoch.
    pub fn at_us(self, s: i64) -> i64 {
        s * 1_000_000 + i64::from(self.ms) * 1000
    }

    /// Whether the slot at Unix second `s` is due.
    pub fn due(self, s: i64) -> bool {
        let p = i64::from(self.period.max(1));
        s.rem_euclid(p) == i64::from(self.offset) % p
    }

    /// The cron expression (seconds field first) of this schedule; `period` divides 60.
    pub fn cron(self) -> String {
        let fields = if self.period <= 1 {
            "* * * * * *".to_string()
        } else {
            let seconds: Vec<String> =
                (0..60).filter(|s| s % self.period == self.offset % self.period).map(|s| s.to_string()).collect();
            format!("{} * * * * *", seconds.join(","))
        };
        if self.ms == 0 {
            fields
        } else {
            format!("{fields} +{}ms", self.ms)
        }
    }
}

/// Jobs and the window of Unix seconds `[from_s, to_s)` whose slots are counted.
#[derive(Debug, Clone, Default)]
pub struct Expected {
    pub jobs: HashMap<String, Every>,
    pub from_s: i64,
    pub to_s: i64,
}

impl Expected {
    /// How many slots the window holds.
    pub fn slots(&self) -> u64 {
        let mut n = 0u64;
        for every in self.jobs.values() {
            n += (self.from_s..self.to_s).filter(|s| every.due(*s)).count() as u64;
        }
        n
    }

    /// The jobs due at second `s`, with their schedules.
    pub fn due_at(&self, s: i64) -> impl Iterator<Item = (&String, Every)> {
        self.jobs.iter().filter(move |(_, e)| e.due(s)).map(|(j, e)| (j, *e))
    }
}

/// The outcome of a window.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    /// Slots the window holds.
    pub expected: u64,
    /// Requests received for slots in the window (duplicates included).
    pub received: u64,
    /// Requests whose `Idempotency-Key` had been received before.
    pub duplicates: u64,
    /// Expected slots never received.
    pub misses: u64,
    /// Requests in the window for a slot that is not expected (unknown job or wrong second).
    pub unexpected: u64,
    /// Requests received before their scheduled instant.
    pub early: u64,
    /// How far before its instant the earliest of them came, in microseconds.
    pub max_early_us: u64,
}

/// Counts `records` against `expected`; returns the tally and the lateness (received minus
/// scheduled, in microseconds, 0 for early ones) of every first receipt of an expected slot.
pub fn tally(expected: &Expected, records: &[Record]) -> (Tally, Vec<u64>) {
    let mut t = Tally { expected: expected.slots(), ..Tally::default() };
    let mut keys: HashSet<&str> = HashSet::new();
    let mut seen: HashSet<(&str, i64)> = HashSet::new();
    let mut lateness = Vec::new();
    for r in records {
        let second = r.scheduled_us.div_euclid(1_000_000);
        if second < expected.from_s || second >= expected.to_s {
            continue;
        }
        t.received += 1;
        if !keys.insert(r.key.as_str()) {
            t.duplicates += 1;
            continue;
        }
        let due = expected.jobs.get(&r.job).is_some_and(|e| e.due(second) && e.at_us(second) == r.scheduled_us);
        if !due || !seen.insert((r.job.as_str(), second)) {
            t.unexpected += 1;
            continue;
        }
        let late = r.received_us - r.scheduled_us;
        if late < 0 {
            t.early += 1;
            t.max_early_us = t.max_early_us.max(late.unsigned_abs());
        }
        lateness.push(u64::try_from(late).unwrap_or(0));
    }
    t.misses = t.expected.saturating_sub(seen.len() as u64);
    (t, lateness)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(key: &str, job: &str, s: i64, late_ms: i64) -> Record {
        Record {
            key: key.into(),
            job: job.into(),
            scheduled_us: s * 1_000_000,
            received_us: s * 1_000_000 + late_ms * 1000,
        }
    }

    fn window(jobs: &[(&str, Every)], from_s: i64, to_s: i64) -> Expected {
        Expected { jobs: jobs.iter().map(|(j, e)| (j.to_string(), *e)).collect(), from_s, to_s }
    }

    const EVERY_SECOND: Every = Every { period: 1, offset: 0, ms: 0 };

    #[test]
    fn all_slots_once_is_clean() {
        let exp = window(&[("a", EVERY_SECOND), ("b", EVERY_SECOND)], 100, 103);
        let recs: Vec<Record> =
            (100..103).flat_map(|s| [rec(&format!("a{s}"), "a", s, 5), rec(&format!("b{s}"), "b", s, 7)]).collect();
        let (t, late) = tally(&exp, &recs);
        assert_eq!(t, Tally { expected: 6, received: 6, ..Tally::default() });
        assert_eq!(late.len(), 6);
        assert!(late.iter().all(|l| *l == 5000 || *l == 7000));
    }

    #[test]
    fn duplicates_misses_and_strays_are_counted() {
        let exp = window(&[("a", EVERY_SECOND)], 100, 104);
        let recs = vec![
            rec("k100", "a", 100, 1),
            rec("k100", "a", 100, 900), // the same key again: a duplicate
            rec("k101", "a", 101, 1),
            rec("x", "z", 101, 1), // an unknown job
            rec("k99", "a", 99, 1), // outside the window: ignored
                                   // 102 and 103 never arrive
        ];
        let (t, late) = tally(&exp, &recs);
        assert_eq!(t.expected, 4);
        assert_eq!(t.received, 4);
        assert_eq!(t.duplicates, 1);
        assert_eq!(t.unexpected, 1);
        assert_eq!(t.misses, 2);
        assert_eq!(late, vec![1000, 1000]);
    }

    #[test]
    fn a_second_key_for_the_same_slot_is_not_a_receipt_of_a_new_slot() {
        let exp = window(&[("a", EVERY_SECOND)], 100, 101);
        let recs = vec![rec("k1", "a", 100, 1), rec("k2", "a", 100, 2)];
        let (t, _) = tally(&exp, &recs);
        assert_eq!((t.unexpected, t.misses, t.duplicates), (1, 0, 0));
    }

    #[test]
    fn spread_schedules_count_only_their_seconds() {
        let p = Every { period: 5, offset: 2, ms: 0 };
        assert!(p.due(102) && p.due(107) && !p.due(103));
        assert_eq!(p.cron(), "2,7,12,17,22,27,32,37,42,47,52,57 * * * * *");
        assert_eq!(EVERY_SECOND.cron(), "* * * * * *");
        let exp = window(&[("a", p)], 100, 110);
        assert_eq!(exp.slots(), 2);
        let (t, _) = tally(&exp, &[rec("k", "a", 103, 1)]);
        assert_eq!((t.unexpected, t.misses), (1, 2));
        assert_eq!(exp.due_at(107).count(), 1);
        assert_eq!(exp.due_at(108).count(), 0);
    }

    #[test]
    fn early_receipts_are_counted_and_their_lateness_is_zero() {
        let exp = window(&[("a", EVERY_SECOND)], 100, 101);
        let (t, late) = tally(&exp, &[rec("k", "a", 100, -3)]);
        assert_eq!(t.early, 1);
        assert_eq!(t.max_early_us, 3000);
        assert_eq!(late, vec![0]);
    }

    #[test]
    fn a_millisecond_offset_moves_the_slot_inside_its_second() {
        let e = Every { period: 5, offset: 2, ms: 250 };
        assert_eq!(e.cron(), "2,7,12,17,22,27,32,37,42,47,52,57 * * * * * +250ms");
        assert_eq!(Every { ms: 7, ..EVERY_SECOND }.cron(), "* * * * * * +7ms");
        let exp = window(&[("a", e)], 100, 110);
        let at = |s: i64, late_ms: i64| Record {
            key: format!("k{s}"),
            job: "a".into(),
            scheduled_us: e.at_us(s),
            received_us: e.at_us(s) + late_ms * 1000,
        };
        let (t, late) = tally(&exp, &[at(102, 3), at(107, 4)]);
        assert_eq!((t.received, t.misses, t.unexpected), (2, 0, 0));
        assert_eq!(late, vec![3000, 4000]);
        // The whole second is not the slot.
        let (t, _) = tally(&exp, &[rec("k102", "a", 102, 1)]);
        assert_eq!((t.unexpected, t.misses), (1, 2));
    }
}
