//! Job writers and readers, bound to one node each, faulted or not.
//!
//! A writer creates jobs (never firing: a yearly schedule), renames them and deletes them, one
//! operation at a time, each with a value used nowhere else (`w-<seed>-<client>-<n>`), and
//! records every outcome. A writer owns its jobs: no other client touches them, so the order of
//! its operations is the real-time order the lost-write checker reasons about. A job is never
//! used again after a delete was attempted on it. Readers read jobs (linearizable and stale) and
//! count answers. Both stop on the [`Stop`] signal or at their deadline, whichever comes first.

use std::time::Duration;

use raftcron_client::{CreateJob, JobEnvelope, UpdateJob};
use rand::rngs::StdRng;
use rand::Rng;
use reqwest::Method;

use crate::api::{outcome_of, NodeApi};
use crate::clock::now_ms;
use crate::history::{History, LinearRead, Outcome, WriteOp, WriteRecord};
use crate::workload::Stop;

/// Upper bound of one write: above the node's own 10 s commit wait.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(12);
/// Upper bound of one read.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Jobs one writer keeps at most.
const MAX_OWNED: usize = 4;

/// The name prefix of every job a writer creates in run `seed`.
pub fn writer_prefix(seed: u64) -> String {
    format!("w-{seed}-")
}

/// One writer's loop.
#[allow(clippy::too_many_arguments)]
pub async fn writer(
    client: String,
    api: NodeApi,
    seed: u64,
    mut rng: StdRng,
    history: History,
    mut stop: Stop,
    deadline: tokio::time::Instant,
    pause_ms: u64,
    canary: String,
) {
    let mut owned: Vec<String> = Vec::new();
    let mut seq: u64 = 0;
    let max_ops = 1_000_000u64;
    for _ in 0..max_ops {
        if stop.is_set() || tokio::time::Instant::now() >= deadline {
            return;
        }
        seq += 1;
        let value = format!("{}{client}-{seq}", writer_prefix(seed));
        let roll: f64 = rng.gen();
        if owned.is_empty() || (owned.len() < MAX_OWNED && roll < 0.3) {
            if let Some(id) = create(&client, &api, &value, &history, &canary).await {
                owned.push(id);
            }
        } else if roll < 0.85 {
            let job = owned[rng.gen_range(0..owned.len())].clone();
            update(&client, &api, &job, &value, &history).await;
        } else {
            let job = owned.swap_remove(rng.gen_range(0..owned.len()));
            delete(&client, &api, &job, &history).await;
        }
        let pause = Duration::from_millis(rng.gen_range(pause_ms / 2..=pause_ms.max(1) * 2));
        if stop.sleep(pause).await {
            return;
        }
    }
}

async fn create(client: &str, api: &NodeApi, name: &str, history: &History, canary: &str) -> Option<String> {
    let mut headers = std::collections::BTreeMap::new();
    headers.insert("Authorization".to_string(), format!("Bearer {canary}{name}"));
    let body = CreateJob {
        name: name.to_string(),
        url: "http://127.0.0.1:9/never".into(),
        method: "POST".into(),
        cron_expression: "0 0 1 1 *".into(),
        headers: Some(headers),
        ..CreateJob::default()
    };
    let invoked_ms = now_ms();
    let r = api.request(Method::POST, "/api/v1/jobs", Some(&body), WRITE_TIMEOUT, None).await;
    let completed_ms = now_ms();
    let mut outcome = outcome_of(&r);
    let mut id = None;
    if let (Ok(a), Outcome::Ok) = (&r, &outcome) {
        match a.json::<JobEnvelope>() {
            Ok(env) => id = Some(env.job.id.to_string()),
            Err(e) => outcome = Outcome::Unknown(format!("acknowledged with an unreadable body: {e}")),
        }
    }
    history.write(WriteRecord {
        client: client.to_string(),
        node: api.id,
        op: WriteOp::CreateJob { name: name.to_string(), job: id.clone() },
        invoked_ms,
        completed_ms,
        outcome,
    });
    id
}

async fn update(client: &str, api: &NodeApi, job: &str, name: &str, history: &History) {
    let patch = UpdateJob { name: Some(name.to_string()), ..UpdateJob::default() };
    let invoked_ms = now_ms();
    let r = api.request(Method::PATCH, &format!("/api/v1/jobs/{job}"), Some(&patch), WRITE_TIMEOUT, None).await;
    history.write(WriteRecord {
        client: client.to_string(),
        node: api.id,
        op: WriteOp::UpdateJob { job: job.to_string(), name: name.to_string() },
        invoked_ms,
        completed_ms: now_ms(),
        outcome: outcome_of(&r),
    });
}

async fn delete(client: &str, api: &NodeApi, job: &str, history: &History) {
    let invoked_ms = now_ms();
    let r = api.request::<()>(Method::DELETE, &format!("/api/v1/jobs/{job}"), None, WRITE_TIMEOUT, None).await;
    history.write(WriteRecord {
        client: client.to_string(),
        node: api.id,
        op: WriteOp::DeleteJob { job: job.to_string() },
        invoked_ms,
        completed_ms: now_ms(),
        outcome: outcome_of(&r),
    });
}

/// One reader's loop: alternates a linearizable list, a stale list and a read of one firing job.
pub async fn reader(
    api: NodeApi,
    firing: Vec<String>,
    mut rng: StdRng,
    history: History,
    mut stop: Stop,
    deadline: tokio::time::Instant,
) {
    for i in 0..1_000_000u64 {
        if stop.is_set() || tokio::time::Instant::now() >= deadline {
            return;
        }
        let path = match i % 3 {
            0 => "/api/v1/jobs?page_size=20".to_string(),
            1 => "/api/v1/jobs?page_size=20&consistency=stale".to_string(),
            _ if !firing.is_empty() => format!("/api/v1/jobs/{}", firing[rng.gen_range(0..firing.len())]),
            _ => "/api/v1/cluster".to_string(),
        };
        let invoked_ms = now_ms();
        let ok = matches!(api.get(&path, READ_TIMEOUT).await, Ok(a) if a.is_success());
        history.read(api.id, ok);
        if !path.contains("consistency=stale") && path.starts_with("/api/v1/jobs") {
            history.linear_read(LinearRead { node: api.id, path, invoked_ms, completed_ms: now_ms(), ok });
        }
        if stop.sleep(Duration::from_millis(rng.gen_range(100..400))).await {
            return;
        }
    }
}
