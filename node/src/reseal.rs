//! Re-sealing job secrets under the current master key, after a rotation.
//!
//! On the leader only: every [`PERIOD`] it walks the jobs, and for each whose header values or
//! body are sealed under an older key it proposes `ResealJob` with the same values sealed under
//! the current key (guarded by the job's `updated_at`, so a concurrent edit wins). Once a walk
//! finds nothing left, the old key may be removed from every node. Progress is shown in
//! `GET /api/v1/cluster` (`secrets_to_reseal`). This module never logs a secret.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::cluster::Cluster;
use crate::crypto::Keyring;
use crate::model::job::JobRecord;
use crate::state::CommandBody;
use crate::store::{decode, Table};

/// Time between two walks.
pub const PERIOD: Duration = Duration::from_secs(15);
/// Most jobs re-sealed in one walk (bounds the write burst).
const MAX_PER_WALK: usize = 500;

/// Jobs with stale secrets found by the last walk on this node (`u64::MAX`: no walk yet, or
/// not the leader).
#[derive(Debug, Clone)]
pub struct Progress(Arc<AtomicU64>);

impl Default for Progress {
    fn default() -> Progress {
        Progress(Arc::new(AtomicU64::new(u64::MAX)))
    }
}

impl Progress {
    pub fn stale_jobs(&self) -> Option<u64> {
        Some(self.0.load(Ordering::Relaxed)).filter(|n| *n != u64::MAX)
    }
}

pub async fn run(
    cluster: Cluster,
    keyring: Arc<Keyring>,
    progress: Progress,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        if !cluster.raft.is_leader() {
            progress.0.store(u64::MAX, Ordering::Relaxed);
            continue;
        }
        match walk(&cluster, &keyring).await {
            Ok((stale, done)) => {
                if done > 0 {
                    tracing::info!(
                        resealed = done,
                        left = stale - done,
                        key = keyring.current_id(),
                        "re-sealed job secrets"
                    );
                }
                progress.0.store(stale - done, Ordering::Relaxed);
            }
            Err(e) => tracing::warn!(error = %e, "re-sealing job secrets"),
        }
    }
}

/// One walk: (jobs found stale, jobs re-sealed).
async fn walk(cluster: &Cluster, keyring: &Keyring) -> Result<(u64, u64), String> {
    let rows = cluster.store.scan(Table::Jobs, &[], &[], usize::MAX).map_err(|e| e.to_string())?;
    let (mut stale, mut done) = (0u64, 0u64);
    for (_, v) in rows {
        let job: JobRecord = decode(&v).map_err(|e| e.to_string())?;
        if !job.spec.has_stale_secrets(keyring) {
            continue;
        }
        stale += 1;
        if done as usize >= MAX_PER_WALK {
            continue;
        }
        let (headers, body) = match job.spec.resealed_secrets(keyring, &job.tenant, job.id) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(job = %job.id, error = %e, "a job's secrets cannot be opened with any key this node holds");
                continue;
            }
        };
        let body = CommandBody::ResealJob {
            id: job.id,
            tenant: job.tenant.clone(),
            expect_updated_at_ms: job.updated_at_ms,
            headers,
            body,
        };
        if cluster.write(body).await.is_ok() {
            done += 1;
        }
    }
    Ok((stale, done))
}
