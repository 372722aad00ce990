//! The only place that reads the wall clock.
//!
//! Everything that needs "now" takes a [`Clock`], so tests can drive time by hand and the chaos
//! suite can skew one node. Timers and timeouts use tokio's monotonic time, never this.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

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

/// How fast the cluster's timeline may move toward the leader's wall clock: 10 ms per second
/// (1 %). A step of a leader's clock (an NTP step, a bad RTC, a drill) reaches the timeline only
/// at this rate, so it can neither fire a slot early nor skip a run of slots.
pub const MAX_SLEW_MS_PER_S: f64 = 10.0;

/// How fast the uncertainty of a reading grows with its age: 200 ppm, four times a common
/// crystal's tolerance.
const DRIFT_PER_MS: f64 = 200e-6;

/// One reading of the cluster's time: `ms` at the monotonic instant `at`, known to `err_ms`.
#[derive(Debug, Clone, Copy)]
struct Reading {
    ms: f64,
    at: Instant,
    err_ms: f64,
}

impl Reading {
    /// Milliseconds from `at` to `t`, negative when `t` is earlier.
    fn age_ms(&self, t: Instant) -> f64 {
        match t.checked_duration_since(self.at) {
            Some(d) => d.as_secs_f64() * 1000.0,
            None => -(self.at.duration_since(t).as_secs_f64() * 1000.0),
        }
    }

    fn estimate(&self, t: Instant) -> f64 {
        self.ms + self.age_ms(t)
    }

    fn err_at(&self, t: Instant) -> f64 {
        self.err_ms + self.age_ms(t).abs() * DRIFT_PER_MS
    }
}

/// The cluster's time: one timeline for the whole cluster that the scheduler fires by, the
/// leader stamps on log entries and lease grants, and the API reads "now" from.
///
/// The leader keeps the timeline: it carries the time it learnt as a follower forward on the
/// monotonic clock and moves it toward its own wall clock by at most [`MAX_SLEW_MS_PER_S`]
/// ([`ClusterClock::lead_ms`]); a node that never heard a leader starts from its own wall clock.
/// Followers learn it from lease grants ([`ClusterClock::observe`]), keep the reading with the
/// smallest uncertainty (half the round trip, growing with age), and take a new one only when it
/// is more certain or disagrees beyond both uncertainties (the leader's timeline moved). So a
/// step of any one node's wall clock, leader or not, and a slow grant round trip change nothing,
/// and a leader change continues the timeline instead of restarting it.
///
/// It must not read the wall clock anywhere but through `own`. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ClusterClock {
    own: Arc<dyn Clock>,
    reading: Arc<Mutex<Option<Reading>>>,
}

impl ClusterClock {
    pub fn new(own: Arc<dyn Clock>) -> ClusterClock {
        ClusterClock { own, reading: Arc::default() }
    }

    /// The leader's reading: the timeline now, first moved toward this node's own wall clock by
    /// at most the slew allowed since the last reading. Only the leader calls it.
    pub fn lead_ms(&self) -> i64 {
        self.lead_at(Instant::now(), self.own.now_ms())
    }

    /// [`ClusterClock::lead_ms`] at the monotonic instant `now` with this node's wall clock
    /// reading `own_ms` (the deterministic simulation drives it with its own clocks).
    pub fn lead_at(&self, now: Instant, own_ms: i64) -> i64 {
        let mut g = self.reading.lock().unwrap_or_else(PoisonError::into_inner);
        let ms = match *g {
            None => own_ms as f64,
            Some(r) => {
                let est = r.estimate(now);
                let room = MAX_SLEW_MS_PER_S * r.age_ms(now).max(0.0) / 1000.0;
                est + (own_ms as f64 - est).clamp(-room, room)
            }
        };
        // The leader's timeline is the cluster's by definition: no uncertainty of its own.
        *g = Some(Reading { ms, at: now, err_ms: 0.0 });
        ms.round() as i64
    }

    /// A lease grant said the leader's timeline read `leader_ms` somewhere between `asked` and
    /// `answered` (monotonic). Returns whether this node's reading changed.
    pub fn observe(&self, leader_ms: i64, asked: Instant, answered: Instant) -> bool {
        let half = answered.saturating_duration_since(asked) / 2;
        let sample = Reading { ms: leader_ms as f64, at: asked + half, err_ms: half.as_secs_f64() * 1000.0 + 0.5 };
        let mut g = self.reading.lock().unwrap_or_else(PoisonError::into_inner);
        let take = match *g {
            None => true,
            Some(r) => {
                let (est, err) = (r.estimate(sample.at), r.err_at(sample.at));
                sample.err_ms < err || (sample.ms - est).abs() > sample.err_ms + err
            }
        };
        if take {
            *g = Some(sample);
        }
        take
    }

    /// This node's own wall clock minus the cluster's time, in milliseconds.
    pub fn own_skew_ms(&self) -> i64 {
        self.own.now_ms() - self.now_ms()
    }
}

impl ClusterClock {
    /// How long until the cluster's time is surely at or past `at_ms`: until the earliest it
    /// can be (the reading minus its uncertainty) reaches it. Zero once it has. A slot waits
    /// for this, so that no node fires it before its instant, even on an uncertain reading.
    pub fn until(&self, at_ms: i64) -> Duration {
        let earliest = self.earliest_at(Instant::now()).unwrap_or_else(|| self.own.now_ms() as f64);
        let ms = at_ms as f64 - earliest;
        if ms > 0.0 {
            Duration::from_secs_f64(ms / 1000.0)
        } else {
            Duration::ZERO
        }
    }

    /// The earliest the timeline can be at the monotonic instant `t` (the reading minus its
    /// uncertainty); `None` before this node heard a leader or led.
    pub fn earliest_at(&self, t: Instant) -> Option<f64> {
        let reading = *self.reading.lock().unwrap_or_else(PoisonError::into_inner);
        reading.map(|r| r.estimate(t) - r.err_at(t))
    }

    /// The timeline at the monotonic instant `t`; `None` before this node heard a leader or led.
    pub fn reading_at(&self, t: Instant) -> Option<i64> {
        let reading = *self.reading.lock().unwrap_or_else(PoisonError::into_inner);
        reading.map(|r| r.estimate(t).round() as i64)
    }
}

impl Default for ClusterClock {
    /// On the system clock.
    fn default() -> ClusterClock {
        ClusterClock::new(Arc::new(SystemClock::default()))
    }
}

impl Clock for ClusterClock {
    fn now_ms(&self) -> i64 {
        self.reading_at(Instant::now()).unwrap_or_else(|| self.own.now_ms())
    }
}

/// Converts epoch milliseconds to a UTC instant (saturating at the epoch on nonsense input).
pub fn ms_to_utc(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use super::{Clock, ClusterClock, ManualClock, MAX_SLEW_MS_PER_S};

    const T0: i64 = 1_800_000_000_000;

    fn ms(d: u64) -> Duration {
        Duration::from_millis(d)
    }

    #[test]
    fn a_slot_waits_out_the_uncertainty_of_the_reading() {
        let own = ManualClock::new(T0);
        let clock = ClusterClock::new(Arc::new(own.clone()));
        assert_eq!(clock.until(T0 - 5), Duration::ZERO, "no reading: the own clock, past");
        // A grant whose round trip took 40 ms: the leader read T0 somewhere within it.
        let asked = Instant::now() - ms(40);
        clock.observe(T0, asked, asked + ms(40));
        // The reading says about T0 + 20 now, give or take 20.5 ms: a slot at T0 + 20 is not
        // surely due yet.
        let wait = clock.until(T0 + 20);
        assert!(wait >= ms(19) && wait <= ms(22), "{wait:?}");
        assert_eq!(clock.until(T0 - 10), Duration::ZERO);
    }

    #[test]
    fn a_leader_starts_from_its_own_clock_and_slews_toward_it_after_a_step() {
        let own = ManualClock::new(T0);
        let clock = ClusterClock::new(Arc::new(own.clone()));
        let t = Instant::now();
        assert_eq!(clock.lead_at(t, own.now_ms()), T0);
        // The wall clock steps 50 s forward while one second passes.
        own.advance_ms(51_000);
        let after = clock.lead_at(t + ms(1000), own.now_ms());
        assert_eq!(after, T0 + 1000 + MAX_SLEW_MS_PER_S as i64, "one second plus one second's slew, not 50 s");
        // Reading often does not slew faster than reading once.
        let mut last = after;
        for i in 1..=100u64 {
            last = clock.lead_at(t + ms(1000 + i * 10), own.now_ms() + (i * 10) as i64);
        }
        assert_eq!(last, T0 + 2000 + 2 * MAX_SLEW_MS_PER_S as i64);
        // A step back is followed as slowly, and the timeline never goes back.
        own.advance_ms(-100_000);
        let back = clock.lead_at(t + ms(3000), own.now_ms());
        assert_eq!(back, last + 1000 - MAX_SLEW_MS_PER_S as i64);
        assert!(back > last);
    }

    #[test]
    fn a_follower_keeps_its_most_certain_reading() {
        let clock = ClusterClock::new(Arc::new(ManualClock::new(T0 + 60_000)));
        let t = Instant::now();
        assert!(clock.observe(T0, t, t + ms(2)), "the first grant is taken");
        // A slow round trip that says the leader's time is 300 ms ahead of the estimate is less
        // certain than the reading held: ignored.
        assert!(!clock.observe(T0 + 1000 + 300, t + ms(600), t + ms(1400)));
        // A quick one that agrees is more certain once the held reading aged: taken.
        assert!(clock.observe(T0 + 20_001, t + ms(20_000), t + ms(20_001)));
        // A grant that disagrees beyond both uncertainties means the timeline moved: taken.
        assert!(clock.observe(T0 + 30_000 + 5_000, t + ms(30_000), t + ms(30_010)));
    }

    #[test]
    fn a_new_leader_continues_the_timeline_it_learnt() {
        // This node's wall clock is 30 s ahead; the old leader's timeline is T0.
        let own = ManualClock::new(T0 + 30_000);
        let clock = ClusterClock::new(Arc::new(own.clone()));
        let t = Instant::now();
        clock.observe(T0, t, t + ms(2));
        own.advance_ms(1000);
        let led = clock.lead_at(t + ms(1001), own.now_ms());
        let slew = MAX_SLEW_MS_PER_S as i64;
        assert!((T0 + 1000..=T0 + 1001 + slew).contains(&led), "continues from T0: {}", led - T0);
    }
}
