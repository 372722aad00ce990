//! Re-sealing job secrets under the current master key, after a rotation.
//!
//! On the leader only, and only while this node's keyring holds a previous key (a rotation is
//! under way: without one, nothing sealed under another key can be opened, so there is nothing
//! to re-seal): every [`PERIOD`] it walks the jobs, a page of 1,000 at a time off the async
//! runtime, and for each whose header values or body are sealed under an older key it proposes
//! `ResealJob` with the same values sealed under the current key (guarded by the job's
//! `updated_at`, so a concurrent edit wins). Once a walk finds nothing left, the old key may be
//! removed from every node. Progress is shown in `GET /api/v1/cluster` (`secrets_to_reseal`).
//!
//! It must not hold the whole jobs table in memory, nor occupy a runtime worker while it reads
//! (a million jobs is seconds of decoding); it never logs a secret.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::cluster::Cluster;
use crate::crypto::Keyring;
use crate::model::job::JobRecord;
use crate::state::CommandBody;
use crate::store::{decode, Store, Table};

/// Time between two walks.
pub const PERIOD: Duration = Duration::from_secs(15);
/// Most jobs re-sealed in one walk (bounds the write burst).
const MAX_PER_WALK: usize = 500;
/// Jobs read (and decoded) per step of a walk.
const PAGE: usize = 1_000;
/// A pause between two pages, so that a walk over many jobs leaves the leader's cores to its
/// writes (a million jobs: 1,000 pages, about 5 s of pauses).
const PAGE_PAUSE: Duration = Duration::from_millis(5);

/// Jobs with stale secrets found by the last walk on this node (`u64::MAX`: no walk yet, not
/// the leader, or no previous key held).
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
        if !cluster.raft.is_leader() || !keyring.holds_previous() {
            progress.0.store(u64::MAX, Ordering::Relaxed);
            continue;
        }
        let walked = tokio::select! {
            w = walk(&cluster, &keyring) => w,
            _ = stop.changed() => return,
        };
        match walked {
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

/// One page of a walk.
#[derive(Debug, Default)]
struct Page {
    /// The jobs of the page whose secrets are not all sealed under the current key.
    stale: Vec<JobRecord>,
    /// Where the next page starts; `None` when this page ended the table.
    next: Option<Vec<u8>>,
}

/// Reads up to `limit` jobs from `from` on, keeping those with stale secrets.
fn stale_page(store: &Store, keyring: &Keyring, from: &[u8], limit: usize) -> Result<Page, String> {
    let rows = store.scan(Table::Jobs, &[], from, limit).map_err(|e| e.to_string())?;
    let next = match rows.last() {
        Some((k, _)) if rows.len() >= limit => {
            let mut next = k.clone();
            next.push(0);
            Some(next)
        }
        _ => None,
    };
    let mut stale = Vec::new();
    for (_, v) in rows {
        let job: JobRecord = decode(&v).map_err(|e| e.to_string())?;
        if job.spec.has_stale_secrets(keyring) {
            stale.push(job);
        }
    }
    Ok(Page { stale, next })
}

/// One walk: (jobs found stale, jobs re-sealed). Ends: every page starts after the previous
/// page's last key, so it reaches the end of the table.
async fn walk(cluster: &Cluster, keyring: &Arc<Keyring>) -> Result<(u64, u64), String> {
    let (mut stale, mut done) = (0u64, 0u64);
    let mut from = Vec::new();
    loop {
        let (store, ring) = (cluster.store.clone(), keyring.clone());
        let page = tokio::task::spawn_blocking(move || stale_page(&store, &ring, &from, PAGE))
            .await
            .map_err(|e| format!("reading jobs: {e}"))??;
        for job in page.stale {
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
        match page.next {
            Some(next) => from = next,
            None => return Ok((stale, done)),
        }
        tokio::time::sleep(PAGE_PAUSE).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::MasterKey;
    use crate::ids::{JobId, TenantId};
    use crate::state::keys;
    use crate::store::Batch;

    fn job(keyring: &Keyring, with_secret: bool) -> JobRecord {
        let (tenant, id) = (TenantId::default_tenant(), JobId::generate());
        let mut spec = crate::state::tests::spec("reseal");
        if !with_secret {
            spec.headers.clear();
            spec.body = None;
        }
        spec.seal(keyring, &tenant, id).unwrap();
        JobRecord { id, tenant, spec, created_at_ms: 1, updated_at_ms: 1 }
    }

    #[test]
    fn a_walk_in_pages_finds_every_job_sealed_under_an_older_key_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let old = Keyring::new(MasterKey::generate(), vec![]);
        let new = Keyring::new(MasterKey::generate(), vec![old.current().clone()]);
        let mut stale_ids = Vec::new();
        let mut b = Batch::default();
        for i in 0..25 {
            // Every third job sealed under the old key; some jobs have no secret at all.
            let j = match i % 3 {
                0 => job(&old, true),
                1 => job(&new, true),
                _ => job(&old, false),
            };
            if i % 3 == 0 {
                stale_ids.push(j.id);
            }
            b.put_value(Table::Jobs, keys::job(&j.tenant, j.id), &j).unwrap();
        }
        store.write(b, false).unwrap();
        for limit in [1, 4, 9, 25, 100] {
            let (mut found, mut from, mut pages) = (Vec::new(), Vec::new(), 0);
            loop {
                pages += 1;
                assert!(pages <= 26, "a page of {limit} never ends the walk");
                let page = stale_page(&store, &new, &from, limit).unwrap();
                found.extend(page.stale.iter().map(|j| j.id));
                match page.next {
                    Some(n) => from = n,
                    None => break,
                }
            }
            found.sort();
            let mut want = stale_ids.clone();
            want.sort();
            assert_eq!(found, want, "pages of {limit}");
            // Full pages, then the one that ends the table (empty when the last full page ended it).
            assert_eq!(pages, 25 / limit + 1, "pages of {limit}");
        }
        // Under the old key as current, the jobs sealed under the new one are the stale ones.
        let back = Keyring::new(old.current().clone(), vec![new.current().clone()]);
        assert_eq!(stale_page(&store, &back, &[], 100).unwrap().stale.len(), 8);
        assert!(!old.holds_previous() && new.holds_previous());
    }
}
