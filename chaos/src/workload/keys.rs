//! The key workload: each node's key client creates a read-only key, waits until it works,
//! revokes it, and then probes every node with it until each refuses it (401), recording how
//! long each took. Keys it created and never revoked are kept for the final check (they must
//! still work everywhere).
//!
//! If the keys route is missing on the node (`404 NOT_FOUND "no such route"`), it reports the
//! workload as unsupported and stops: the run then cannot count the key checks as done.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use raftcron_client::{CreateKey, CreatedKeyEnvelope};
use rand::rngs::StdRng;
use rand::Rng;
use reqwest::Method;
use serde::Serialize;

use crate::api::{outcome_of, NodeApi};
use crate::clock::now_ms;
use crate::history::{History, Outcome, Revocation, WriteOp, WriteRecord};
use crate::workload::writers::WRITE_TIMEOUT;
use crate::workload::{Health, Stop};

/// How soon after an acknowledged revoke every healthy node must refuse the key.
pub const REVOCATION_BOUND_MS: i64 = 1000;
/// How long a revoked key is probed for (past the bound, to measure how late it was).
const PROBE_FOR_MS: i64 = 5000;
/// Pause between two probes of one node.
const PROBE_EVERY: Duration = Duration::from_millis(50);
/// The read a probe makes: local state only, so it measures this node's view of the key.
pub const PROBE_PATH: &str = "/api/v1/jobs?page_size=1&consistency=stale";

/// What the key clients found out, shared by all of them.
#[derive(Debug, Clone, Default, Serialize)]
pub struct KeyState {
    /// The keys route answered "no such route".
    pub unsupported: bool,
    /// Created (acknowledged), never revoked: id -> key.
    #[serde(skip)]
    pub live: BTreeMap<String, String>,
    /// Revoke acknowledged: id -> key.
    #[serde(skip)]
    pub revoked: BTreeMap<String, String>,
    pub created: u64,
    pub revoked_count: u64,
}

pub type SharedKeys = Arc<Mutex<KeyState>>;

fn lock(s: &SharedKeys) -> std::sync::MutexGuard<'_, KeyState> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

/// One node's key client.
#[allow(clippy::too_many_arguments)]
pub async fn key_client(
    client: String,
    api: NodeApi,
    all: Vec<NodeApi>,
    mut rng: StdRng,
    history: History,
    health: Health,
    keys: SharedKeys,
    mut stop: Stop,
    deadline: tokio::time::Instant,
    seed: u64,
) {
    for n in 0..100_000u64 {
        if stop.is_set() || tokio::time::Instant::now() >= deadline || lock(&keys).unsupported {
            return;
        }
        let name = format!("k-{seed}-{client}-{n}");
        let body = CreateKey {
            name: name.clone(),
            kind: Some("custom".into()),
            scopes: Some(vec!["jobs:read".into()]),
            ..CreateKey::default()
        };
        let invoked_ms = now_ms();
        let r = api.request(Method::POST, "/api/v1/keys", Some(&body), WRITE_TIMEOUT, None).await;
        if matches!(&r, Ok(a) if a.is_missing_route()) {
            lock(&keys).unsupported = true;
            history.note(format!("node {}: POST /api/v1/keys answered 404 no such route", api.id));
            return;
        }
        let mut outcome = outcome_of(&r);
        let mut created = None;
        if let (Ok(a), Outcome::Ok) = (&r, &outcome) {
            match a.json::<CreatedKeyEnvelope>() {
                Ok(env) => created = Some((env.api_key.api_key.id.clone(), env.api_key.key.clone())),
                Err(e) => outcome = Outcome::Unknown(format!("acknowledged with an unreadable body: {e}")),
            }
        }
        history.write(WriteRecord {
            client: client.clone(),
            node: api.id,
            op: WriteOp::CreateKey { name, key_id: created.as_ref().map(|(id, _)| id.clone()) },
            invoked_ms,
            completed_ms: now_ms(),
            outcome,
        });
        if let Some((id, key)) = created {
            {
                let mut g = lock(&keys);
                g.created += 1;
                g.live.insert(id.clone(), key.clone());
            }
            // Use it a little, then revoke most keys (some stay live for the final check).
            if stop.sleep(Duration::from_millis(rng.gen_range(300..1500))).await {
                return;
            }
            if rng.gen_bool(0.8) {
                revoke(&client, &api, &all, &id, &key, &history, &health, &keys).await;
            }
        }
        if stop.sleep(Duration::from_millis(rng.gen_range(500..2000))).await {
            return;
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn revoke(
    client: &str,
    api: &NodeApi,
    all: &[NodeApi],
    id: &str,
    key: &str,
    history: &History,
    health: &Health,
    keys: &SharedKeys,
) {
    let invoked_ms = now_ms();
    let r = api.request::<()>(Method::DELETE, &format!("/api/v1/keys/{id}"), None, WRITE_TIMEOUT, None).await;
    let acked_ms = now_ms();
    let unconfirmed = r.as_ref().map(|a| a.unconfirmed.clone()).unwrap_or_default();
    let outcome = outcome_of(&r);
    history.write(WriteRecord {
        client: client.to_string(),
        node: api.id,
        op: WriteOp::RevokeKey { key_id: id.to_string() },
        invoked_ms,
        completed_ms: acked_ms,
        outcome: outcome.clone(),
    });
    {
        let mut g = lock(keys);
        g.live.remove(id);
        if outcome.is_ok() {
            g.revoked.insert(id.to_string(), key.to_string());
            g.revoked_count += 1;
        }
    }
    if !outcome.is_ok() {
        return;
    }
    let mut excused: Vec<u64> = health.affected().into_iter().collect();
    let handles: Vec<_> = all.iter().map(|n| tokio::spawn(probe_until_refused(n.with_key(key), acked_ms))).collect();
    let mut results = Vec::with_capacity(handles.len());
    let mut first = Vec::with_capacity(handles.len());
    for h in handles {
        let (after, first_status) = h.await.unwrap_or((None, None));
        results.push(after);
        first.push(first_status);
    }
    for n in health.affected() {
        if !excused.contains(&n) {
            excused.push(n);
        }
    }
    excused.sort_unstable();
    let refused_after_ms: BTreeMap<u64, Option<i64>> = all.iter().map(|n| n.id).zip(results).collect();
    let first_probe: BTreeMap<u64, Option<u16>> = all.iter().map(|n| n.id).zip(first).collect();
    history.revocation(Revocation {
        key_id: id.to_string(),
        acked_ms,
        refused_after_ms,
        excused,
        unconfirmed,
        first_probe,
    });
}

/// Probes `api` (bound to the revoked key) until it answers 401: ms after `acked_ms` (or
/// `None`), and the status of the first probe (`None` when it got no answer).
async fn probe_until_refused(api: NodeApi, acked_ms: i64) -> (Option<i64>, Option<u16>) {
    let max_probes = (PROBE_FOR_MS / PROBE_EVERY.as_millis() as i64) as usize + 5;
    let mut first = None;
    for i in 0..max_probes {
        if now_ms() - acked_ms > PROBE_FOR_MS {
            return (None, first);
        }
        if let Ok(a) = api.get(PROBE_PATH, Duration::from_millis(800)).await {
            if i == 0 {
                first = Some(a.status);
            }
            if a.status == 401 {
                return (Some(now_ms() - acked_ms), first);
            }
        }
        tokio::time::sleep(PROBE_EVERY).await;
    }
    (None, first)
}
