//! The node side of leases: ask the leader, know on the monotonic clock until when the answer
//! lets this node fire, and feed the leader's time from each grant into the
//! [`ClusterClock`] that the scheduler fires by.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::clock::ClusterClock;
use crate::cluster::{Cluster, MAX_CLOCK_SKEW_MS};
use crate::scheduler::SchedulerConfig;

/// Until when this node may fire (monotonic). Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Lease(Arc<Mutex<Option<Instant>>>);

impl Lease {
    /// Whether the lease is valid now. Checked immediately before every send.
    pub fn valid(&self) -> bool {
        self.0.lock().ok().and_then(|g| *g).is_some_and(|until| Instant::now() < until)
    }

    /// How long ago the lease ran out; `None` while it is valid, or before the first grant.
    fn lapsed_for(&self) -> Option<Duration> {
        let until = self.0.lock().ok().and_then(|g| *g)?;
        Instant::now().checked_duration_since(until)
    }

    fn extend(&self, until: Instant) {
        if let Ok(mut g) = self.0.lock() {
            if g.is_none_or(|cur| until > cur) {
                *g = Some(until);
            }
        }
    }
}

pub async fn run(
    cluster: Cluster,
    lease: Lease,
    clock: ClusterClock,
    cfg: SchedulerConfig,
    metrics: crate::metrics::Metrics,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut skewed = false;
    let mut first = true;
    loop {
        // At once, then every quarter of the cluster's lease as fixed at formation (a tenth
        // of a second until the cluster formed, when there is no lease to ask for yet).
        let formed = cfg.as_formed(&cluster.store);
        let every = match (&formed, std::mem::take(&mut first)) {
            (_, true) => Duration::ZERO,
            (Some(c), false) => c.lease / 4,
            (None, false) => Duration::from_millis(100),
        };
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
        let Some(cfg) = formed else { continue };
        // Noted before asking: the leader records its grant after this instant, so this node's
        // lease ends before the leader's wait for it does.
        let asked = Instant::now();
        // A grant that takes longer than half a lease (a forward to a leader that is losing or
        // regaining its term can hang for seconds) is asked again rather than waited for: a
        // live node must not miss every renewal behind one stuck request and be taken for dead.
        let answer = tokio::time::timeout(cfg.lease / 2, cluster.lease_grant()).await;
        match answer
            .unwrap_or_else(|_| Err(crate::cluster::ClusterError::Failed("no grant within half a lease".into())))
        {
            Ok(leader_ms) => {
                // The leader read the cluster's time somewhere between asking and now.
                clock.observe(leader_ms, asked, Instant::now());
                // A lapse: the node sent nothing for that long (its slots wait, late, for it).
                if let Some(lapse) = lease.lapsed_for() {
                    metrics.scheduler.lease_lapses.inc();
                    tracing::info!(lapse_ms = lapse.as_millis() as u64, "firing lease renewed after it ran out");
                }
                lease.extend(asked + cfg.lease.saturating_sub(cfg.drift_margin));
                metrics.scheduler.lease_renewals.inc();
                let skew = clock.own_skew_ms();
                // Said once per spell, not once a second.
                if skew.abs() > MAX_CLOCK_SKEW_MS && !skewed {
                    tracing::warn!(
                        skew_ms = skew,
                        "this node's wall clock differs from the cluster's time; firing on the cluster's time"
                    );
                } else if skew.abs() <= MAX_CLOCK_SKEW_MS && skewed {
                    tracing::info!(skew_ms = skew, "this node's wall clock agrees with the cluster's time again");
                }
                skewed = skew.abs() > MAX_CLOCK_SKEW_MS;
            }
            Err(e) => tracing::debug!(error = %e, "no lease grant"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::Lease;

    #[test]
    fn a_lease_is_valid_until_it_runs_out_and_never_shrinks() {
        let lease = Lease::default();
        assert!(!lease.valid(), "no grant yet");
        // Generous margins: only "still valid" depends on the machine being reasonably prompt.
        let until = Instant::now() + Duration::from_millis(2000);
        lease.extend(until);
        assert!(lease.valid());
        lease.extend(Instant::now() + Duration::from_millis(10));
        std::thread::sleep(Duration::from_millis(20));
        assert!(lease.valid(), "an older grant does not shorten the lease");
        std::thread::sleep(until.saturating_duration_since(Instant::now()) + Duration::from_millis(10));
        assert!(!lease.valid(), "it ran out by itself");
    }
}
