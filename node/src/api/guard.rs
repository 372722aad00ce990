//! The request guard: who the client is (through trusted proxies), whether a key may be used
//! from there, per-key and per-IP rate limits, and when each key was last used.
//!
//! Limits are per node: a cluster of N nodes behind a load balancer admits up to N times a
//! key's rate in the worst case (docs/security.md). Key use is kept in memory and committed in
//! one `TouchKeys` command every [`KEY_USE_FLUSH`], so `last_used_at` costs no Raft write per
//! request and is at most that stale. This module never sees a key itself, only its record.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::HeaderMap;
use raftcron_client::ErrorCode;

use crate::api::auth::Caller;
use crate::api::error::ApiError;
use crate::api::netaddr;
pub use crate::api::netaddr::{Allowlist, TrustedProxies};
use crate::api::ratelimit::{FailureLimiter, FailurePolicy, KeyLimiter, LimiterConfig};
use crate::clock::Clock;
use crate::cluster::Cluster;
use crate::ids::KeyId;
use crate::state::{read, CommandBody};
use governor::clock::DefaultClock;

/// How often key use is committed.
pub const KEY_USE_FLUSH: Duration = Duration::from_secs(10);
/// The default per-key rate when neither the tenant nor `--rate-limit-per-minute` says.
pub const DEFAULT_RATE_PER_MINUTE: u32 = 1000;
/// The default budget of failed authentications per client address and minute.
pub const DEFAULT_AUTH_FAILURES_PER_MINUTE: u32 = 30;

#[derive(Debug)]
struct Inner {
    trusted: TrustedProxies,
    default_per_minute: NonZeroU32,
    keys: KeyLimiter<KeyId>,
    failures: FailureLimiter,
    used: Mutex<HashMap<KeyId, i64>>,
}

/// Shared by every request of a node. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Guard(Arc<Inner>);

impl Guard {
    pub fn new(trusted: TrustedProxies, default_per_minute: u32, auth_failures_per_minute: u32) -> Guard {
        let default_per_minute = NonZeroU32::new(default_per_minute).unwrap_or(NonZeroU32::MIN);
        let failures_per_minute = NonZeroU32::new(auth_failures_per_minute).unwrap_or(NonZeroU32::MIN);
        let policy =
            FailurePolicy { per_minute: failures_per_minute, burst: failures_per_minute, ..FailurePolicy::default() };
        Guard(Arc::new(Inner {
            trusted,
            default_per_minute,
            keys: KeyLimiter::new(),
            failures: FailureLimiter::with_clock(policy, LimiterConfig::default(), DefaultClock::default()),
            used: Mutex::default(),
        }))
    }

    /// The client's address: the peer's, or the first untrusted hop of `X-Forwarded-For` when
    /// the peer is a trusted proxy.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let forwarded: Vec<&str> = headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).collect();
        netaddr::client_ip(peer, &forwarded, &self.0.trusted)
    }

    /// Whether the key's allowlist admits `ip` (an empty list admits every address).
    pub fn allowed_from(&self, key: &crate::model::apikey::ApiKeyRecord, ip: IpAddr) -> bool {
        // Stored lists were validated on the way in; an unreadable one admits nobody.
        Allowlist::parse(key.allowed_cidrs.iter()).is_ok_and(|a| a.permits(ip))
    }

    /// Charges the request to its key's rate (the tenant's, else the node default) and notes
    /// the key's use.
    pub fn admit(&self, caller: &Caller, cluster: &Cluster) -> Result<(), ApiError> {
        let per_minute = read::tenant(&cluster.store, &caller.key.tenant)
            .ok()
            .flatten()
            .and_then(|t| t.rate_limit_per_minute)
            .and_then(NonZeroU32::new)
            .unwrap_or(self.0.default_per_minute);
        if let Err(wait) = self.0.keys.check(&caller.key.id, per_minute) {
            return Err(ApiError::rate_limited(
                format!("API rate limit exceeded ({per_minute} requests a minute for this key)"),
                wait.secs(),
            ));
        }
        if let Ok(mut used) = self.0.used.lock() {
            used.insert(caller.key.id, cluster.clock().now_ms());
        }
        Ok(())
    }

    /// Counts a failed authentication from `ip`; past the limit the answer becomes a 429.
    pub fn failed(&self, ip: IpAddr, err: ApiError) -> ApiError {
        debug_assert_eq!(err.code, ErrorCode::AuthenticationRequired);
        match self.0.failures.record_failure(ip) {
            Ok(()) => err,
            Err(wait) => ApiError::rate_limited("too many failed authentications from this address", wait.secs()),
        }
    }

    fn take_used(&self) -> Vec<(KeyId, i64)> {
        self.0.used.lock().map(|mut u| u.drain().collect()).unwrap_or_default()
    }
}

/// Commits key use every [`KEY_USE_FLUSH`] (and once more at shutdown).
pub async fn flush_key_use(guard: Guard, cluster: Cluster, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(KEY_USE_FLUSH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        let stopping = tokio::select! {
            _ = tick.tick() => false,
            _ = stop.changed() => true,
        };
        let used = guard.take_used();
        if !used.is_empty() {
            if let Err(e) = cluster.write(CommandBody::TouchKeys { used }).await {
                tracing::debug!(error = %e, "recording key use; it will be recorded with the next use");
            }
        }
        if stopping {
            return;
        }
    }
}
