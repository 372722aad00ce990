//! The scheduler: shard leases, assignment, claims and dispatch, as docs/design/firing.md
//! describes. It decides *what* to send and *when*; the executor sends; the state machine
//! (`state::firing`) is the judge of every claim.
//!
//! Tasks (all stop when `stop` fires):
//! - [`lease`]: asks the leader for this node's lease every `lease / 4`.
//! - [`leader`]: on the leader, moves shards of dead nodes and rebalances, waiting out leases.
//! - [`owner`]: claims the slots of this node's shards ahead of time and dispatches them;
//!   its dispatched slots wake at their instant through [`wake`]'s one thread.
//!
//! It must not send a slot without a committed claim, nor while its lease is not valid.

pub mod holding;
pub mod leader;
pub mod lease;
pub mod owner;
pub mod round;
pub mod wake;

use std::time::Duration;

/// Timing of the firing protocol.
///
/// The lease is a cluster-wide setting fixed at formation (`--lease-ms`, stored in the
/// replicated state): the leader's wait before moving a shard must cover every node's lease.
/// A running node therefore takes its lease from the state ([`SchedulerConfig::with_lease`]);
/// `lease` here is only what a new cluster is formed with.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// How long a grant lets a node fire.
    pub lease: Duration,
    /// What a node takes off its lease for clock-rate differences (a tenth of the lease).
    pub drift_margin: Duration,
    /// What the leader adds to a lease before moving a shard away (a quarter of the lease).
    pub safety_margin: Duration,
    /// How long a node may go without a grant before the leader takes it for dead and moves its
    /// shards (`--dead-after-ms`), never less than `lease + safety_margin`: safety needs only
    /// that wait; the rest is patience with a live node's stall or network blip, which would
    /// otherwise have its shards moved and its unrecorded requests re-sent by the next owner.
    /// The leader of the previous term gets no such patience (see `scheduler::leader`). A
    /// setting of each node's leader duty, not of the cluster: no other node relies on it.
    pub dead_after: Duration,
    /// How far ahead of their time slots are claimed.
    pub claim_ahead: Duration,
    /// How often owners look for slots to claim.
    pub tick: Duration,
    /// Shards of a new cluster (`--shards`).
    pub shard_count: u32,
    /// Runs kept per job in a new cluster (`--run-history`).
    pub runs_kept: u32,
}

impl Default for SchedulerConfig {
    fn default() -> SchedulerConfig {
        let lease = Duration::from_millis(u64::from(crate::state::firing::DEFAULT_LEASE_MS));
        SchedulerConfig {
            lease,
            drift_margin: lease / 10,
            safety_margin: lease / 4,
            dead_after: Duration::from_millis(DEFAULT_DEAD_AFTER_MS),
            claim_ahead: Duration::from_millis(2000),
            tick: Duration::from_millis(200),
            shard_count: crate::state::firing::DEFAULT_SHARDS,
            runs_kept: crate::model::run::RUNS_KEPT,
        }
    }
}

/// How long a silent node keeps its shards by default (`--dead-after-ms`): what the leader
/// waited before the lease and this patience were two settings (a 4 s lease and its margin).
pub const DEFAULT_DEAD_AFTER_MS: u64 = 5_000;

impl SchedulerConfig {
    /// The wait that safety needs before a shard leaves a node that may hold a lease: the
    /// lease plus the margin.
    pub fn lease_wait(&self) -> Duration {
        self.lease + self.safety_margin
    }

    /// How long a node may go without a grant before its shards move: `dead_after`, and never
    /// less than [`SchedulerConfig::lease_wait`].
    pub fn dead_wait(&self) -> Duration {
        self.dead_after.max(self.lease_wait())
    }

    /// These timings for a cluster whose lease is `lease`: the margins scale with it.
    pub fn with_lease(&self, lease: Duration) -> SchedulerConfig {
        SchedulerConfig { lease, drift_margin: lease / 10, safety_margin: lease / 4, ..self.clone() }
    }

    /// These timings with the lease the replicated state fixed; `None` until the cluster formed.
    pub fn as_formed(&self, store: &crate::store::Store) -> Option<SchedulerConfig> {
        match crate::state::firing::lease(store) {
            Ok(Some(lease)) => Some(self.with_lease(lease)),
            Ok(None) => None,
            Err(e) => {
                tracing::error!(error = %e, "reading the firing lease");
                None
            }
        }
    }
}

/// Starts the scheduler's tasks.
pub fn spawn(
    cluster: crate::cluster::Cluster,
    executor: crate::executor::http::Executor,
    notifier: crate::executor::notify::Notifier,
    cfg: SchedulerConfig,
    metrics: crate::metrics::Metrics,
    holding: holding::Holding,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let lease = lease::Lease::default();
    let clock = cluster.clock().clone();
    vec![
        tokio::spawn(lease::run(
            cluster.clone(),
            lease.clone(),
            clock.clone(),
            cfg.clone(),
            metrics.clone(),
            stop.clone(),
        )),
        tokio::spawn(leader::run(cluster.clone(), cfg.clone(), stop.clone())),
        tokio::spawn(owner::run(cluster, executor, notifier, lease, clock, cfg, metrics, holding, stop)),
    ]
}
