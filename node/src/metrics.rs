//! The node's Prometheus metrics: one registry per node and typed handles on every series.
//!
//! This module owns the metric names, types, labels and buckets (docs/observability.md lists
//! them; deploy/prometheus and deploy/grafana query them). Call sites record with one line
//! (`metrics.executor.retries.inc()`, `metrics.scheduler.fire(FireOutcome::Missed)`); labels
//! come from the small enums below or from route templates, never from a job, key or raw path.
//!
//! It must not read the cluster itself: gauges of Raft state and disk use are pushed in
//! ([`RaftGauges`], [`Metrics::set_storage_size`]) by whoever owns those facts, when
//! `GET /metrics` is scraped. A leaf: it imports nothing of the node.
//!
//! One registry per node (not the process-wide default) so that `raftcron dev`, which runs
//! several nodes in one process, reports each node on its own `/metrics`.

use std::sync::Arc;

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// Why building or encoding the metrics failed (a programming error: names and labels are
/// constants).
#[derive(Debug, thiserror::Error)]
#[error("metrics: {0}")]
pub struct MetricsError(#[from] prometheus::Error);

/// How a scheduled or triggered occurrence ended, as `raftcron_scheduler_fires_total{outcome}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FireOutcome {
    Succeeded,
    Failed,
    Missed,
    Skipped,
    Unknown,
}

impl FireOutcome {
    pub const ALL: [FireOutcome; 5] =
        [FireOutcome::Succeeded, FireOutcome::Failed, FireOutcome::Missed, FireOutcome::Skipped, FireOutcome::Unknown];

    pub fn as_str(self) -> &'static str {
        match self {
            FireOutcome::Succeeded => "succeeded",
            FireOutcome::Failed => "failed",
            FireOutcome::Missed => "missed",
            FireOutcome::Skipped => "skipped",
            FireOutcome::Unknown => "unknown",
        }
    }
}

/// Why a request failed authentication, as `raftcron_api_auth_failures_total{reason}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// No `Authorization` or `X-Api-Key` header.
    Missing,
    /// A header that is not one of the accepted shapes, or a key in the query string.
    Malformed,
    /// A well-formed key that is unknown or revoked.
    Invalid,
    /// A known key past its `expires_at`.
    Expired,
    /// A valid key used from an address outside its `allowed_cidrs`.
    IpNotAllowed,
}

impl AuthFailure {
    pub const ALL: [AuthFailure; 5] = [
        AuthFailure::Missing,
        AuthFailure::Malformed,
        AuthFailure::Invalid,
        AuthFailure::Expired,
        AuthFailure::IpNotAllowed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AuthFailure::Missing => "missing",
            AuthFailure::Malformed => "malformed",
            AuthFailure::Invalid => "invalid",
            AuthFailure::Expired => "expired",
            AuthFailure::IpNotAllowed => "ip_not_allowed",
        }
    }
}

/// What became of one failure or recovery notice to one webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyOutcome {
    /// A webhook answered 2xx.
    Delivered,
    /// Every attempt failed; the notice was dropped.
    Dropped,
}

impl NotifyOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyOutcome::Delivered => "delivered",
            NotifyOutcome::Dropped => "dropped",
        }
    }
}

/// Which snapshot event `raftcron_raft_snapshots_total{kind}` counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotKind {
    /// This node built a snapshot of its state.
    Built,
    /// This node installed a snapshot streamed from the leader.
    Installed,
}

impl SnapshotKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SnapshotKind::Built => "built",
            SnapshotKind::Installed => "installed",
        }
    }
}

/// This node's Raft state at one instant, as the gauges show it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RaftGauges {
    pub has_leader: bool,
    pub is_leader: bool,
    pub term: u64,
    pub commit_index: u64,
    pub applied_index: u64,
    pub voters: u64,
    /// On the leader: voters (itself included) heard from within the lease; 0 elsewhere.
    pub reachable_voters: u64,
    /// On the leader: entries each peer lags behind the leader's log, by peer node id.
    pub replication_lag: Vec<(u64, u64)>,
}

#[derive(Debug)]
pub struct RaftMetrics {
    pub has_leader: IntGauge,
    pub is_leader: IntGauge,
    pub term: IntGauge,
    pub commit_index: IntGauge,
    pub applied_index: IntGauge,
    pub replication_lag_entries: IntGaugeVec,
    pub voters: IntGauge,
    pub reachable_voters: IntGauge,
    pub proposals: IntCounter,
    pub proposal_batch_size: Histogram,
    pub proposal_wait: Histogram,
    pub write_duration: Histogram,
    pub log_sync_duration: Histogram,
    pub apply_duration: Histogram,
    pub append_round_trip: HistogramVec,
    pub early_campaigns: IntCounter,
    pub eager_appends: IntCounter,
    snapshots: IntCounterVec,
    pub snapshot_duration: Histogram,
    pub storage_size_bytes: IntGauge,
}

impl RaftMetrics {
    /// Counts a snapshot built or installed.
    pub fn snapshot(&self, kind: SnapshotKind) {
        self.snapshots.with_label_values(&[kind.as_str()]).inc();
    }
}

#[derive(Debug)]
pub struct SchedulerMetrics {
    pub shards_owned: IntGauge,
    pub lease_renewals: IntCounter,
    pub lease_lapses: IntCounter,
    pub claims: IntCounter,
    fires: IntCounterVec,
    pub fire_lateness: Histogram,
}

impl SchedulerMetrics {
    /// Counts one occurrence that ended as `outcome`.
    pub fn fire(&self, outcome: FireOutcome) {
        self.fires.with_label_values(&[outcome.as_str()]).inc();
    }
}

#[derive(Debug)]
pub struct ExecutorMetrics {
    pub request_duration: Histogram,
    pub retries: IntCounter,
    pub ssrf_refusals: IntCounter,
}

#[derive(Debug)]
pub struct NotifyMetrics {
    alerts: IntCounterVec,
}

impl NotifyMetrics {
    pub fn alert(&self, outcome: NotifyOutcome) {
        self.alerts.with_label_values(&[outcome.as_str()]).inc();
    }
}

#[derive(Debug)]
pub struct ApiMetrics {
    requests: IntCounterVec,
    request_duration: HistogramVec,
    auth_failures: IntCounterVec,
    pub rate_limited: IntCounter,
}

impl ApiMetrics {
    /// Records one answered request. `route` is a route template (or a fixed placeholder for
    /// unmatched paths), `method` one of a fixed set.
    pub fn request(&self, route: &str, method: &str, status: u16, seconds: f64) {
        self.requests.with_label_values(&[route, method, &status.to_string()]).inc();
        self.request_duration.with_label_values(&[route]).observe(seconds);
    }

    pub fn auth_failure(&self, reason: AuthFailure) {
        self.auth_failures.with_label_values(&[reason.as_str()]).inc();
    }
}

#[derive(Debug)]
pub struct Inner {
    registry: Registry,
    pub raft: RaftMetrics,
    pub scheduler: SchedulerMetrics,
    pub executor: ExecutorMetrics,
    pub notify: NotifyMetrics,
    pub api: ApiMetrics,
}

/// A node's metrics. Cheap to clone; every clone records into the same registry.
#[derive(Debug, Clone)]
pub struct Metrics(Arc<Inner>);

impl std::ops::Deref for Metrics {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// Buckets of the fire lateness, in seconds: from on time to minutes late (a shard move after a
/// node failure makes fires about 5 s late).
const LATENESS_BUCKETS: [f64; 14] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];
/// Buckets of outbound requests, in seconds (a job's timeout is at most minutes).
const REQUEST_BUCKETS: [f64; 13] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];
/// Buckets of API requests, in seconds (a write waits at most ~10 s for its commit).
const API_BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];
/// Buckets of snapshot builds, in seconds.
const SNAPSHOT_BUCKETS: [f64; 10] = [0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0];
/// From a tenth of a millisecond (a log sync on a fast disk, a loopback round trip) to a second.
const DISK_BUCKETS: [f64; 14] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0];
const BATCH_BUCKETS: [f64; 9] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

struct Builder(Registry);

impl Builder {
    fn reg<C: prometheus::core::Collector + Clone + 'static>(&self, c: C) -> Result<C, MetricsError> {
        self.0.register(Box::new(c.clone()))?;
        Ok(c)
    }

    fn gauge(&self, name: &str, help: &str) -> Result<IntGauge, MetricsError> {
        self.reg(IntGauge::new(name, help)?)
    }

    fn gauges(&self, name: &str, help: &str, labels: &[&str]) -> Result<IntGaugeVec, MetricsError> {
        self.reg(IntGaugeVec::new(Opts::new(name, help), labels)?)
    }

    fn counter(&self, name: &str, help: &str) -> Result<IntCounter, MetricsError> {
        self.reg(IntCounter::new(name, help)?)
    }

    fn counters(&self, name: &str, help: &str, labels: &[&str]) -> Result<IntCounterVec, MetricsError> {
        self.reg(IntCounterVec::new(Opts::new(name, help), labels)?)
    }

    fn histogram(&self, name: &str, help: &str, buckets: &[f64]) -> Result<Histogram, MetricsError> {
        self.reg(Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))?)
    }

    fn histograms(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
        buckets: &[f64],
    ) -> Result<HistogramVec, MetricsError> {
        self.reg(HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets.to_vec()), labels)?)
    }
}

impl Metrics {
    /// A fresh registry with every series of the node.
    pub fn new() -> Result<Metrics, MetricsError> {
        let b = Builder(Registry::new());
        let raft = RaftMetrics {
            has_leader: b.gauge("raftcron_raft_has_leader", "1 if this node knows a leader, else 0")?,
            is_leader: b.gauge("raftcron_raft_is_leader", "1 if this node is the leader, else 0")?,
            term: b.gauge("raftcron_raft_term", "The current Raft term as this node knows it")?,
            commit_index: b.gauge("raftcron_raft_commit_index", "The highest log index known committed")?,
            applied_index: b.gauge("raftcron_raft_applied_index", "The highest log index applied to the state")?,
            replication_lag_entries: b.gauges(
                "raftcron_raft_replication_lag_entries",
                "On the leader: log entries a peer lags behind the leader's log",
                &["peer"],
            )?,
            voters: b.gauge("raftcron_raft_voters", "Voting members in this node's membership config")?,
            reachable_voters: b.gauge(
                "raftcron_raft_reachable_voters",
                "On the leader: voters (itself included) heard from within the firing lease; 0 elsewhere",
            )?,
            proposals: b.counter("raftcron_raft_proposals_total", "Commands proposed to Raft on this node")?,
            early_campaigns: b.counter(
                "raftcron_raft_early_campaigns_total",
                "Elections this node started early because its leader's address refused connections",
            )?,
            eager_appends: b.counter(
                "raftcron_raft_eager_appends_total",
                "AppendEntries this node, as leader, sent to an idle follower while its own log sync ran",
            )?,
            proposal_batch_size: b.histogram(
                "raftcron_raft_proposal_batch_size",
                "Commands in each log entry this node, as leader, proposed",
                &BATCH_BUCKETS,
            )?,
            proposal_wait: b.histogram(
                "raftcron_raft_proposal_wait_seconds",
                "On the leader: how long a command waited for a place in a log entry (two entries are on their way at once)",
                &DISK_BUCKETS,
            )?,
            write_duration: b.histogram(
                "raftcron_raft_write_duration_seconds",
                "On the leader: one log entry from its proposal to its answer (append, replication, commit, apply)",
                &DISK_BUCKETS,
            )?,
            log_sync_duration: b.histogram(
                "raftcron_raft_log_sync_duration_seconds",
                "One sync of the Raft log's write-ahead log (every append waits for one)",
                &DISK_BUCKETS,
            )?,
            apply_duration: b.histogram(
                "raftcron_raft_apply_duration_seconds",
                "Applying one committed log entry to this node's state (its effects written in one batch)",
                &DISK_BUCKETS,
            )?,
            append_round_trip: b.histograms(
                "raftcron_raft_append_round_trip_seconds",
                "On the leader: one AppendEntries that carried entries, to its answer (the peer's log sync included)",
                &["peer"],
                &DISK_BUCKETS,
            )?,
            snapshots: b.counters(
                "raftcron_raft_snapshots_total",
                "Snapshots built by this node or installed from the leader",
                &["kind"],
            )?,
            snapshot_duration: b.histogram(
                "raftcron_raft_snapshot_duration_seconds",
                "Time to build a snapshot",
                &SNAPSHOT_BUCKETS,
            )?,
            storage_size_bytes: b.gauge("raftcron_storage_size_bytes", "Bytes on disk in the data directory")?,
        };
        let scheduler = SchedulerMetrics {
            shards_owned: b.gauge(
                "raftcron_scheduler_shards_owned",
                "Shards this node owns and may fire for now (0 while its lease is not valid)",
            )?,
            lease_renewals: b
                .counter("raftcron_scheduler_lease_renewals_total", "Firing leases granted to this node")?,
            lease_lapses: b.counter(
                "raftcron_scheduler_lease_lapses_total",
                "Times this node's firing lease ran out before its renewal (it sent nothing meanwhile)",
            )?,
            claims: b.counter("raftcron_scheduler_claims_total", "Slots this node claimed through Raft (accepted)")?,
            fires: b.counters(
                "raftcron_scheduler_fires_total",
                "Occurrences this node ended, by outcome",
                &["outcome"],
            )?,
            fire_lateness: b.histogram(
                "raftcron_scheduler_fire_lateness_seconds",
                "How late the first attempt of an occurrence started, after its scheduled instant",
                &LATENESS_BUCKETS,
            )?,
        };
        let executor = ExecutorMetrics {
            request_duration: b.histogram(
                "raftcron_executor_request_duration_seconds",
                "Duration of one attempt of a job's HTTP request, redirects included",
                &REQUEST_BUCKETS,
            )?,
            retries: b.counter("raftcron_executor_retries_total", "Retries of jobs' HTTP requests")?,
            ssrf_refusals: b.counter(
                "raftcron_executor_ssrf_refusals_total",
                "Job targets refused by the SSRF guard (at create, update, fire and redirect)",
            )?,
        };
        let notify = NotifyMetrics {
            alerts: b.counters(
                "raftcron_notify_alerts_total",
                "Failure and recovery notices to webhooks, by outcome",
                &["outcome"],
            )?,
        };
        let api = ApiMetrics {
            requests: b.counters(
                "raftcron_api_requests_total",
                "API requests answered, by route template, method and status",
                &["route", "method", "status"],
            )?,
            request_duration: b.histograms(
                "raftcron_api_request_duration_seconds",
                "Time to answer an API request, by route template",
                &["route"],
                &API_BUCKETS,
            )?,
            auth_failures: b.counters(
                "raftcron_api_auth_failures_total",
                "Requests refused for their credentials, by reason",
                &["reason"],
            )?,
            rate_limited: b.counter("raftcron_api_rate_limited_total", "Requests refused with 429")?,
        };
        // Series of fixed label sets exist from the start, so rates and alerts see zeros.
        for o in FireOutcome::ALL {
            scheduler.fires.with_label_values(&[o.as_str()]);
        }
        for r in AuthFailure::ALL {
            api.auth_failures.with_label_values(&[r.as_str()]);
        }
        for o in [NotifyOutcome::Delivered, NotifyOutcome::Dropped] {
            notify.alerts.with_label_values(&[o.as_str()]);
        }
        for k in [SnapshotKind::Built, SnapshotKind::Installed] {
            raft.snapshots.with_label_values(&[k.as_str()]);
        }
        Ok(Metrics(Arc::new(Inner { registry: b.0, raft, scheduler, executor, notify, api })))
    }

    /// Sets the Raft gauges; the replication lag series are replaced as a whole.
    pub fn set_raft(&self, g: &RaftGauges) {
        let r = &self.raft;
        r.has_leader.set(i64::from(g.has_leader));
        r.is_leader.set(i64::from(g.is_leader));
        r.term.set(clamp(g.term));
        r.commit_index.set(clamp(g.commit_index));
        r.applied_index.set(clamp(g.applied_index));
        r.voters.set(clamp(g.voters));
        r.reachable_voters.set(clamp(g.reachable_voters));
        r.replication_lag_entries.reset();
        for (peer, lag) in &g.replication_lag {
            r.replication_lag_entries.with_label_values(&[&peer.to_string()]).set(clamp(*lag));
        }
    }

    pub fn set_storage_size(&self, bytes: u64) {
        self.raft.storage_size_bytes.set(clamp(bytes));
    }

    /// Every series in the Prometheus text format.
    pub fn encode(&self) -> Result<String, MetricsError> {
        Ok(TextEncoder::new().encode_to_string(&self.registry.gather())?)
    }
}

fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_series_is_exported_with_its_name_and_type() {
        let m = Metrics::new().unwrap();
        m.set_raft(&RaftGauges {
            has_leader: true,
            is_leader: true,
            term: 3,
            commit_index: 10,
            applied_index: 9,
            voters: 3,
            reachable_voters: 2,
            replication_lag: vec![(2, 5)],
        });
        m.executor.request_duration.observe(0.2);
        m.raft.append_round_trip.with_label_values(&["2"]).observe(0.001);
        m.api.request("/api/v1/jobs/{id}", "GET", 200, 0.01);
        m.scheduler.fire(FireOutcome::Missed);
        let text = m.encode().unwrap();
        for (name, kind) in [
            ("raftcron_raft_has_leader", "gauge"),
            ("raftcron_raft_term", "gauge"),
            ("raftcron_raft_replication_lag_entries", "gauge"),
            ("raftcron_raft_proposals_total", "counter"),
            ("raftcron_raft_early_campaigns_total", "counter"),
            ("raftcron_raft_eager_appends_total", "counter"),
            ("raftcron_raft_proposal_batch_size", "histogram"),
            ("raftcron_raft_proposal_wait_seconds", "histogram"),
            ("raftcron_raft_write_duration_seconds", "histogram"),
            ("raftcron_raft_log_sync_duration_seconds", "histogram"),
            ("raftcron_raft_apply_duration_seconds", "histogram"),
            ("raftcron_raft_append_round_trip_seconds", "histogram"),
            ("raftcron_raft_snapshot_duration_seconds", "histogram"),
            ("raftcron_scheduler_fires_total", "counter"),
            ("raftcron_scheduler_fire_lateness_seconds", "histogram"),
            ("raftcron_executor_request_duration_seconds", "histogram"),
            ("raftcron_api_requests_total", "counter"),
            ("raftcron_api_request_duration_seconds", "histogram"),
            ("raftcron_api_auth_failures_total", "counter"),
        ] {
            assert!(text.contains(&format!("# TYPE {name} {kind}\n")), "{name} {kind} missing:\n{text}");
        }
        assert!(text.contains("raftcron_raft_replication_lag_entries{peer=\"2\"} 5\n"), "{text}");
        assert!(text.contains("raftcron_scheduler_fires_total{outcome=\"missed\"} 1\n"), "{text}");
        assert!(text.contains("raftcron_scheduler_fires_total{outcome=\"succeeded\"} 0\n"), "{text}");
        assert!(text.contains(r#"raftcron_api_requests_total{method="GET",route="/api/v1/jobs/{id}",status="200"} 1"#));
        // A follower drops the leader-only series.
        m.set_raft(&RaftGauges { has_leader: true, ..RaftGauges::default() });
        assert!(!m.encode().unwrap().contains("raftcron_raft_replication_lag_entries{"));
    }

    #[test]
    fn two_nodes_in_one_process_keep_separate_registries() {
        let (a, b) = (Metrics::new().unwrap(), Metrics::new().unwrap());
        a.raft.proposals.inc();
        assert!(a.encode().unwrap().contains("raftcron_raft_proposals_total 1\n"));
        assert!(b.encode().unwrap().contains("raftcron_raft_proposals_total 0\n"));
    }
}
