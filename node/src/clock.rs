//! The only place that reads the wall clock.
//!
//! Everything that needs "now" takes a [`Clock`], so tests can drive time by hand and the chaos
//! suite can skew one node. Timers and timeouts use tokio's monotonic time, never this.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};

/// A source of wall-clock time in milliseconds since the Unix epoch.
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    fn now_ms(&self) -> i64;

    fn now(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.now_ms()).unwrap_or_default()
    }
}

/// The system clock, optionally shifted by an offset: `--clock-offset-ms` at start, and
/// `PUT /internal/drill/clock` while running when `--clock-drills` is on (the chaos suite's
/// wall-clock jumps). Clones share the offset.
#[derive(Debug, Clone, Default)]
pub struct SystemClock {
    offset_ms: Arc<AtomicI64>,
}

impl SystemClock {
    pub fn with_offset_ms(offset_ms: i64) -> SystemClock {
        SystemClock { offset_ms: Arc::new(AtomicI64::new(offset_ms)) }
    }

    /// Jumps this clock: from now on it reads the system time plus `offset_ms`.
    pub fn set_offset_ms(&self, offset_ms: i64) {
        self.offset_ms.store(offset_ms, Ordering::SeqCst);
    }

    pub fn offset_ms(&self) -> i64 {
        self.offset_ms.load(Ordering::SeqCst)
    }
}

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        Utc::now().timestamp_millis() + self.offset_ms()
    }
}

/// A clock that moves only when told to.
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    now: Arc<AtomicI64>,
}

impl ManualClock {
    pub fn new(start_ms: i64) -> ManualClock {
        ManualClock { now: Arc::new(AtomicI64::new(start_ms)) }
    }

    pub fn set_ms(&self, ms: i64) {
        self.now.store(ms, Ordering::SeqCst);
    }

    pub fn advance_ms(&self, ms: i64) {
        self.now.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.now.load(Ordering::SeqCst)
    }
}

/// Converts epoch milliseconds to a UTC instant (saturating at the epoch on nonsense input).
pub fn ms_to_utc(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}
