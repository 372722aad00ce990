//! Request rate limits per API key and failed-authentication limits per
//! client IP, built on governor's GCRA limiters.
//!
//! This module owns:
//! - [`KeyLimiter`]: one limiter per key (an API key id, a tenant, ...), each
//!   with its own requests-per-minute quota passed on every call, so tenant
//!   overrides take effect at once. When the quota passed for a key changes,
//!   that key's limiter is replaced by a fresh one at the new quota.
//! - [`FailureLimiter`]: counts failed authentications per client IP and
//!   refuses further attempts once the budget is spent.
//! - [`RetryAfter`]: the whole number of seconds (at least 1) a caller must
//!   wait, ready for a `Retry-After` header.
//!
//! Memory is bounded: an entry idle for longer than [`LimiterConfig::idle_ttl`]
//! (default 10 minutes, and never before its bucket has refilled, so pruning
//! loses no state) is removed on an amortized sweep every
//! [`LimiterConfig::prune_every`] calls; and the table never holds more than
//! [`LimiterConfig::max_entries`]: when it is full, idle entries go first,
//! then the least recently seen sixteenth of the table (those keys start
//! again with a full budget).
//!
//! This module must not: decide who the client is (the caller passes the
//! address it trusts), authenticate anything, log, or sleep. All time comes
//! from a governor [`Clock`], so tests use `governor::clock::FakeRelativeClock`.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock, Reference};
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

/// A refusal: wait this many whole seconds (at least 1) before retrying.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("rate limited; retry after {secs} s")]
pub struct RetryAfter {
    secs: u64,
}

impl RetryAfter {
    /// Rounds `wait` up to whole seconds, with a minimum of 1.
    pub fn from_wait(wait: Duration) -> Self {
        let mut secs = wait.as_secs();
        if wait.subsec_nanos() > 0 {
            secs = secs.saturating_add(1);
        }
        Self { secs: secs.max(1) }
    }

    /// Seconds to wait, at least 1: the value for a `Retry-After` header.
    pub fn secs(self) -> u64 {
        self.secs
    }
}

/// Bounds on a limiter's table.
#[derive(Debug, Clone)]
pub struct LimiterConfig {
    /// An entry unused for this long (and whose bucket has refilled) is pruned.
    pub idle_ttl: Duration,
    /// Most entries held at once (at least 1).
    pub max_entries: usize,
    /// A pruning sweep runs every this many calls (at least 1).
    pub prune_every: u64,
}

impl Default for LimiterConfig {
    fn default() -> Self {
        Self { idle_ttl: Duration::from_secs(600), max_entries: 100_000, prune_every: 1024 }
    }
}

type Direct<C> = RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<<C as Clock>::Instant>>;

struct Entry<C: Clock> {
    quota: Quota,
    limiter: Direct<C>,
    last_seen: C::Instant,
    /// Set when a check was refused: the instant the refusal's wait ends.
    blocked_until: Option<C::Instant>,
}

impl<C: Clock + Clone> Entry<C> {
    fn new(quota: Quota, clock: &C, now: C::Instant) -> Self {
        Self {
            quota,
            limiter: RateLimiter::direct_with_clock(quota, clock.clone()),
            last_seen: now,
            blocked_until: None,
        }
    }

    /// Nothing is lost by dropping this entry: idle long enough and refilled.
    fn prunable(&self, now: C::Instant, idle_ttl: Duration) -> bool {
        let keep_for = idle_ttl.max(self.quota.burst_size_replenished_in());
        Duration::from(now.duration_since(self.last_seen)) >= keep_for
    }
}

struct Table<K, C: Clock> {
    map: HashMap<K, Entry<C>>,
    calls: u64,
}

impl<K: Hash + Eq + Clone, C: Clock + Clone> Table<K, C> {
    fn new() -> Self {
        Self { map: HashMap::new(), calls: 0 }
    }

    fn prune(&mut self, now: C::Instant, config: &LimiterConfig) {
        self.map.retain(|_, e| !e.prunable(now, config.idle_ttl));
    }

    /// Frees room for one more entry.
    fn make_room(&mut self, now: C::Instant, config: &LimiterConfig) {
        let max = config.max_entries.max(1);
        if self.map.len() < max {
            return;
        }
        self.prune(now, config);
        if self.map.len() < max {
            return;
        }
        // Evict the least recently seen sixteenth (at least one entry), so that
        // the O(n) cost here is paid at most once per n/16 insertions.
        let count = (self.map.len() / 16).max(1);
        let mut seen: Vec<C::Instant> = self.map.values().map(|e| e.last_seen).collect();
        let (_, cutoff, _) = seen.select_nth_unstable(count - 1);
        let cutoff = *cutoff;
        self.map.retain(|_, e| e.last_seen > cutoff);
    }

    /// Runs `f` on the entry for `key` at `quota`, creating or replacing it.
    fn with_entry<R>(
        &mut self,
        key: &K,
        quota: Quota,
        clock: &C,
        config: &LimiterConfig,
        f: impl FnOnce(&mut Entry<C>) -> R,
    ) -> R {
        let now = clock.now();
        self.calls = self.calls.wrapping_add(1);
        if self.calls.is_multiple_of(config.prune_every.max(1)) {
            self.prune(now, config);
        }
        if let Some(entry) = self.map.get_mut(key) {
            if entry.quota != quota {
                *entry = Entry::new(quota, clock, now);
            }
            entry.last_seen = now;
            return f(entry);
        }
        self.make_room(now, config);
        f(self.map.entry(key.clone()).or_insert_with(|| Entry::new(quota, clock, now)))
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The table stays consistent even if a holder panicked (no invariant
    // spans more than one statement), so a poisoned lock is still usable.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn check_entry<C: Clock>(entry: &mut Entry<C>, now: C::Instant) -> Result<(), RetryAfter> {
    match entry.limiter.check() {
        Ok(()) => Ok(()),
        Err(not_until) => {
            let wait = not_until.wait_time_from(now);
            entry.blocked_until = Some(now + governor::nanos::Nanos::from(wait));
            Err(RetryAfter::from_wait(wait))
        }
    }
}

/// Per-key request limits; each key has its own requests-per-minute quota.
///
/// The quota allows a burst of `per_minute` requests, refilled evenly over
/// the minute (one request every `60 / per_minute` seconds).
pub struct KeyLimiter<K, C: Clock = DefaultClock> {
    table: Mutex<Table<K, C>>,
    clock: C,
    config: LimiterConfig,
}

impl<K: Hash + Eq + Clone> KeyLimiter<K, DefaultClock> {
    /// A limiter with the default bounds and the real clock.
    pub fn new() -> Self {
        Self::with_clock(LimiterConfig::default(), DefaultClock::default())
    }
}

impl<K: Hash + Eq + Clone> Default for KeyLimiter<K, DefaultClock> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Hash + Eq + Clone, C: Clock + Clone> KeyLimiter<K, C> {
    /// A limiter with the given bounds and clock.
    pub fn with_clock(config: LimiterConfig, clock: C) -> Self {
        Self { table: Mutex::new(Table::new()), clock, config }
    }

    /// Counts one request for `key` under a quota of `per_minute`.
    ///
    /// If `per_minute` differs from the quota last used for `key`, the key's
    /// limiter is replaced by a fresh one (full burst) at the new quota.
    pub fn check(&self, key: &K, per_minute: NonZeroU32) -> Result<(), RetryAfter> {
        let quota = Quota::per_minute(per_minute);
        let now = self.clock.now();
        lock(&self.table).with_entry(key, quota, &self.clock, &self.config, |e| check_entry(e, now))
    }

    /// Forgets `key` (for example when its API key is deleted).
    pub fn remove(&self, key: &K) {
        lock(&self.table).map.remove(key);
    }

    /// Removes every idle entry now.
    pub fn prune(&self) {
        lock(&self.table).prune(self.clock.now(), &self.config);
    }

    /// Number of keys tracked.
    pub fn len(&self) -> usize {
        lock(&self.table).map.len()
    }

    /// True when no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<K, C: Clock> fmt::Debug for KeyLimiter<K, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyLimiter").field("config", &self.config).finish_non_exhaustive()
    }
}

const DEFAULT_FAILURES: NonZeroU32 = match NonZeroU32::new(30) {
    Some(n) => n,
    None => NonZeroU32::MIN,
};

/// Budget for failed authentications from one client.
#[derive(Debug, Clone)]
pub struct FailurePolicy {
    /// Failures refilled per minute.
    pub per_minute: NonZeroU32,
    /// Failures allowed back to back.
    pub burst: NonZeroU32,
    /// IPv6 clients are grouped by this prefix length (0..=128), since one
    /// host usually owns a whole /64. IPv4 addresses (and IPv4-mapped IPv6
    /// addresses, which are folded to IPv4) always count one by one.
    pub ipv6_prefix_len: u8,
}

impl Default for FailurePolicy {
    fn default() -> Self {
        Self { per_minute: DEFAULT_FAILURES, burst: DEFAULT_FAILURES, ipv6_prefix_len: 64 }
    }
}

/// Failed-authentication limits per client IP.
///
/// Use: before verifying credentials, refuse early if [`FailureLimiter::blocked`]
/// returns a wait; after a failed verification call
/// [`FailureLimiter::record_failure`] and answer 429 if it refuses.
pub struct FailureLimiter<C: Clock = DefaultClock> {
    table: Mutex<Table<IpAddr, C>>,
    clock: C,
    quota: Quota,
    ipv6_prefix_len: u8,
    config: LimiterConfig,
}

impl FailureLimiter<DefaultClock> {
    /// 30 failures a minute, burst 30, IPv6 grouped by /64, default bounds.
    pub fn new() -> Self {
        Self::with_clock(FailurePolicy::default(), LimiterConfig::default(), DefaultClock::default())
    }
}

impl Default for FailureLimiter<DefaultClock> {
    fn default() -> Self {
        Self::new()
    }
}

impl<C: Clock + Clone> FailureLimiter<C> {
    /// A limiter with the given policy, bounds and clock.
    pub fn with_clock(policy: FailurePolicy, config: LimiterConfig, clock: C) -> Self {
        let quota = Quota::per_minute(policy.per_minute).allow_burst(policy.burst);
        Self { table: Mutex::new(Table::new()), clock, quota, ipv6_prefix_len: policy.ipv6_prefix_len.min(128), config }
    }

    /// Counts one failed authentication from `ip`. Refuses once the budget
    /// is spent; a refused failure is not counted.
    pub fn record_failure(&self, ip: IpAddr) -> Result<(), RetryAfter> {
        let key = self.key(ip);
        let now = self.clock.now();
        lock(&self.table).with_entry(&key, self.quota, &self.clock, &self.config, |e| check_entry(e, now))
    }

    /// Whether `ip` is currently refused, without counting anything.
    ///
    /// An address becomes blocked when a failure is refused by
    /// [`FailureLimiter::record_failure`] and stays blocked until that
    /// refusal's wait has passed. (The failure that spends the last unit of
    /// budget is accepted, so the first refusal happens one failure later.)
    pub fn blocked(&self, ip: IpAddr) -> Option<RetryAfter> {
        let key = self.key(ip);
        let now = self.clock.now();
        let table = lock(&self.table);
        let until = table.map.get(&key)?.blocked_until?;
        if until > now {
            Some(RetryAfter::from_wait(until.duration_since(now).into()))
        } else {
            None
        }
    }

    /// Removes every idle entry now.
    pub fn prune(&self) {
        lock(&self.table).prune(self.clock.now(), &self.config);
    }

    /// Number of clients tracked.
    pub fn len(&self) -> usize {
        lock(&self.table).map.len()
    }

    /// True when no client is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn key(&self, ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(_) => ip,
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => {
                    let bits = u128::from(v6);
                    let mask = u128::MAX.checked_shl(128 - u32::from(self.ipv6_prefix_len)).unwrap_or(0);
                    IpAddr::V6(Ipv6Addr::from(bits & mask))
                }
            },
        }
    }
}

impl<C: Clock> fmt::Debug for FailureLimiter<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FailureLimiter")
            .field("quota", &self.quota)
            .field("ipv6_prefix_len", &self.ipv6_prefix_len)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    fn nz(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n).unwrap()
    }

    fn key_limiter(config: LimiterConfig) -> (KeyLimiter<String, FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        (KeyLimiter::with_clock(config, clock.clone()), clock)
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn retry_after_rounds_up_to_at_least_one() {
        assert_eq!(RetryAfter::from_wait(Duration::ZERO).secs(), 1);
        assert_eq!(RetryAfter::from_wait(Duration::from_millis(1)).secs(), 1);
        assert_eq!(RetryAfter::from_wait(secs(1)).secs(), 1);
        assert_eq!(RetryAfter::from_wait(Duration::from_millis(1001)).secs(), 2);
        assert_eq!(RetryAfter::from_wait(secs(30)).secs(), 30);
        assert_eq!(RetryAfter::from_wait(secs(30)).to_string(), "rate limited; retry after 30 s");
    }

    #[test]
    fn burst_then_refill() {
        let (lim, clock) = key_limiter(LimiterConfig::default());
        let k = "key-a".to_owned();
        for i in 0..6 {
            assert_eq!(lim.check(&k, nz(6)), Ok(()), "request {i}");
        }
        // One request every 10 s refills.
        assert_eq!(lim.check(&k, nz(6)).unwrap_err().secs(), 10);
        clock.advance(secs(4));
        assert_eq!(lim.check(&k, nz(6)).unwrap_err().secs(), 6);
        clock.advance(Duration::from_millis(5500));
        assert_eq!(lim.check(&k, nz(6)).unwrap_err().secs(), 1, "0.5 s rounds up to 1");
        clock.advance(Duration::from_millis(500));
        assert_eq!(lim.check(&k, nz(6)), Ok(()));
        assert!(lim.check(&k, nz(6)).is_err());
        // A full minute restores the whole burst.
        clock.advance(secs(60));
        for _ in 0..6 {
            assert_eq!(lim.check(&k, nz(6)), Ok(()));
        }
        assert!(lim.check(&k, nz(6)).is_err());
    }

    #[test]
    fn high_quota_waits_at_least_one_second() {
        let (lim, _clock) = key_limiter(LimiterConfig::default());
        let k = "k".to_owned();
        for _ in 0..600 {
            lim.check(&k, nz(600)).unwrap();
        }
        // The next slot is 0.1 s away; Retry-After is still 1.
        assert_eq!(lim.check(&k, nz(600)).unwrap_err().secs(), 1);
    }

    #[test]
    fn keys_are_independent() {
        let (lim, _clock) = key_limiter(LimiterConfig::default());
        let (a, b) = ("a".to_owned(), "b".to_owned());
        lim.check(&a, nz(1)).unwrap();
        assert_eq!(lim.check(&a, nz(1)).unwrap_err().secs(), 60);
        lim.check(&b, nz(1)).unwrap();
        assert!(lim.check(&b, nz(1)).is_err());
        assert_eq!(lim.len(), 2);
    }

    #[test]
    fn quota_change_replaces_the_limiter() {
        let (lim, _clock) = key_limiter(LimiterConfig::default());
        let k = "tenant-key".to_owned();
        lim.check(&k, nz(2)).unwrap();
        lim.check(&k, nz(2)).unwrap();
        assert_eq!(lim.check(&k, nz(2)).unwrap_err().secs(), 30);
        // Tenant override raised to 5/min: fresh limiter, full burst of 5.
        for _ in 0..5 {
            lim.check(&k, nz(5)).unwrap();
        }
        assert_eq!(lim.check(&k, nz(5)).unwrap_err().secs(), 12);
        // Lowered again: fresh limiter at the new quota.
        lim.check(&k, nz(1)).unwrap();
        assert_eq!(lim.check(&k, nz(1)).unwrap_err().secs(), 60);
        assert_eq!(lim.len(), 1);
    }

    #[test]
    fn idle_entries_are_pruned_amortized() {
        let config = LimiterConfig { prune_every: 4, ..LimiterConfig::default() };
        let (lim, clock) = key_limiter(config);
        for i in 0..3 {
            lim.check(&format!("old-{i}"), nz(10)).unwrap();
        }
        assert_eq!(lim.len(), 3);
        clock.advance(secs(599));
        // Call 4 sweeps, but nothing has been idle for 10 minutes yet.
        lim.check(&"fresh".to_owned(), nz(10)).unwrap();
        assert_eq!(lim.len(), 4);
        clock.advance(secs(2));
        for _ in 0..4 {
            lim.check(&"fresh".to_owned(), nz(10)).unwrap();
        }
        // Call 8 swept the three idle keys.
        assert_eq!(lim.len(), 1);
        clock.advance(secs(601));
        lim.prune();
        assert!(lim.is_empty());
    }

    #[test]
    fn pruning_waits_for_the_bucket_to_refill() {
        let clock = FakeRelativeClock::default();
        // 1 failure a minute with a burst of 30 takes 30 minutes to refill.
        let policy = FailurePolicy { per_minute: nz(1), burst: nz(30), ipv6_prefix_len: 64 };
        let lim = FailureLimiter::with_clock(policy, LimiterConfig::default(), clock.clone());
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..30 {
            lim.record_failure(ip).unwrap();
        }
        assert!(lim.record_failure(ip).is_err());
        clock.advance(secs(11 * 60));
        lim.prune();
        assert_eq!(lim.len(), 1, "not yet refilled, must be kept");
        clock.advance(secs(20 * 60));
        lim.prune();
        assert!(lim.is_empty());
    }

    #[test]
    fn table_is_capped_and_evicts_least_recent() {
        let config = LimiterConfig { max_entries: 32, ..LimiterConfig::default() };
        let (lim, clock) = key_limiter(config);
        let hot = "hot".to_owned();
        lim.check(&hot, nz(1)).unwrap();
        for i in 0..200 {
            clock.advance(Duration::from_millis(10));
            lim.check(&format!("k{i}"), nz(1)).unwrap();
            if i % 10 == 0 {
                // Refused, but seen: keeps it among the most recent.
                assert!(lim.check(&hot, nz(1)).is_err());
            }
            assert!(lim.len() <= 32, "len {} at {i}", lim.len());
        }
        // Still refused: the hot key's limiter was never evicted.
        assert!(lim.check(&hot, nz(1)).is_err());
        // The newest key is still tracked (refused), the oldest was evicted (fresh budget).
        assert!(lim.check(&"k199".to_owned(), nz(1)).is_err());
        assert_eq!(lim.check(&"k0".to_owned(), nz(1)), Ok(()));
        assert!(lim.len() <= 32);
    }

    #[test]
    fn remove_forgets_a_key() {
        let (lim, _clock) = key_limiter(LimiterConfig::default());
        let k = "k".to_owned();
        lim.check(&k, nz(1)).unwrap();
        assert!(lim.check(&k, nz(1)).is_err());
        lim.remove(&k);
        assert_eq!(lim.check(&k, nz(1)), Ok(()));
    }

    #[test]
    fn generic_keys() {
        let lim: KeyLimiter<(u32, &'static str), FakeRelativeClock> =
            KeyLimiter::with_clock(LimiterConfig::default(), FakeRelativeClock::default());
        lim.check(&(1, "x"), nz(1)).unwrap();
        assert!(lim.check(&(1, "x"), nz(1)).is_err());
        lim.check(&(2, "x"), nz(1)).unwrap();
    }

    fn failure_limiter() -> (FailureLimiter<FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        (FailureLimiter::with_clock(FailurePolicy::default(), LimiterConfig::default(), clock.clone()), clock)
    }

    #[test]
    fn failures_are_limited_per_ip() {
        let (lim, clock) = failure_limiter();
        let ip: IpAddr = "203.0.113.9".parse().unwrap();
        let other: IpAddr = "203.0.113.10".parse().unwrap();
        for i in 0..30 {
            assert_eq!(lim.blocked(ip), None, "failure {i}");
            assert_eq!(lim.record_failure(ip), Ok(()), "failure {i}");
        }
        assert_eq!(lim.blocked(ip), None, "spending the budget does not block by itself");
        assert_eq!(lim.record_failure(ip).unwrap_err().secs(), 2);
        assert_eq!(lim.blocked(ip).map(RetryAfter::secs), Some(2));
        // blocked() does not count: asking again changes nothing.
        assert_eq!(lim.blocked(ip).map(RetryAfter::secs), Some(2));
        assert_eq!(lim.blocked(other), None);
        lim.record_failure(other).unwrap();

        clock.advance(Duration::from_millis(1500));
        assert_eq!(lim.blocked(ip).map(RetryAfter::secs), Some(1));
        clock.advance(Duration::from_millis(500));
        assert_eq!(lim.blocked(ip), None);
        assert_eq!(lim.record_failure(ip), Ok(()));
        assert!(lim.record_failure(ip).is_err());
    }

    #[test]
    fn ipv4_mapped_and_ipv6_prefix_grouping() {
        let (lim, _clock) = failure_limiter();
        let v4: IpAddr = "198.51.100.7".parse().unwrap();
        let mapped: IpAddr = "::ffff:198.51.100.7".parse().unwrap();
        for _ in 0..15 {
            lim.record_failure(v4).unwrap();
            lim.record_failure(mapped).unwrap();
        }
        assert!(lim.record_failure(v4).is_err(), "mapped and plain IPv4 share a budget");
        assert!(lim.blocked(mapped).is_some());

        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        for i in 0..30u16 {
            let ip = if i % 2 == 0 { a } else { b };
            lim.record_failure(ip).unwrap();
        }
        assert!(lim.record_failure(b).is_err(), "same /64");
        assert!(lim.blocked(a).is_some());
        assert_eq!(lim.blocked(c), None, "other /64");
        lim.record_failure(c).unwrap();
    }

    #[test]
    fn ipv6_prefix_128_counts_each_address() {
        let clock = FakeRelativeClock::default();
        let policy = FailurePolicy { per_minute: nz(1), burst: nz(1), ipv6_prefix_len: 128 };
        let lim = FailureLimiter::with_clock(policy, LimiterConfig::default(), clock);
        lim.record_failure("2001:db8::1".parse().unwrap()).unwrap();
        lim.record_failure("2001:db8::2".parse().unwrap()).unwrap();
        assert_eq!(lim.record_failure("2001:db8::1".parse().unwrap()).unwrap_err().secs(), 60);
    }

    #[test]
    fn limiters_are_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<KeyLimiter<String>>();
        assert_send_sync::<FailureLimiter>();
        assert_send_sync::<KeyLimiter<String, FakeRelativeClock>>();
    }

    #[test]
    fn real_clock_smoke() {
        let lim: KeyLimiter<String> = KeyLimiter::new();
        let k = "k".to_owned();
        lim.check(&k, nz(1)).unwrap();
        let wait = lim.check(&k, nz(1)).unwrap_err().secs();
        assert!((59..=60).contains(&wait), "{wait}");
        let f = FailureLimiter::new();
        assert_eq!(f.blocked("127.0.0.1".parse().unwrap()), None);
    }
}
