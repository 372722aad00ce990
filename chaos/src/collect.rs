//! The final reads, once faults and writers stopped and the firing jobs were paused: every
//! node's jobs and runs from its own state (`consistency=stale`) after all nodes applied the
//! leader's last committed entry, one linearizable job list, and every key of the key workload
//! tried on every node.
//!
//! Read-only. When the nodes' views still differ after converging, it reads again (a few times)
//! before handing the views to the checkers, which then report what differs.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use raftcron_client::{Job, Run};
use serde::Serialize;

use crate::api::NodeApi;
use crate::faults::converge;
use crate::workload::firing::FiringJob;
use crate::workload::keys::{KeyState, PROBE_PATH};

const READ_TIMEOUT: Duration = Duration::from_secs(20);

/// Everything read at the end.
#[derive(Debug, Clone, Default)]
pub struct FinalState {
    /// node -> its jobs (stale read).
    pub jobs: BTreeMap<u64, Vec<Job>>,
    /// One linearizable list, from the leader.
    pub jobs_linearizable: Vec<Job>,
    /// node -> firing job id -> its runs (stale read).
    pub runs: BTreeMap<u64, BTreeMap<String, Vec<Run>>>,
    pub keys: KeyFinal,
    /// How many read rounds it took for the nodes to agree.
    pub rounds: u32,
}

/// What the keys did on each node at the end.
#[derive(Debug, Clone, Default, Serialize)]
pub struct KeyFinal {
    pub live_checked: usize,
    pub revoked_checked: usize,
    /// (key id, node, status): an acknowledged, unrevoked key that a node refused.
    pub live_refused: Vec<(String, u64, u16)>,
    /// (key id, node, status): a key whose revoke was acknowledged that a node accepted.
    pub revoked_accepted: Vec<(String, u64, u16)>,
    /// (key id, node, status): neither accepted nor refused after a few tries (429, 5xx, no
    /// answer): not judged.
    pub inconclusive: Vec<(String, u64, u16)>,
}

/// The status a key gets on a node: 200 or 401, retried a few times past anything else.
async fn key_status(api: &NodeApi, key: &str) -> u16 {
    let mut status = 0;
    for _ in 0..5 {
        status = api.with_key(key).get(PROBE_PATH, READ_TIMEOUT).await.map(|a| a.status).unwrap_or(0);
        if status == 200 || status == 401 {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    status
}

/// Waits until every node applied what the leader had committed.
async fn wait_applied(apis: &[NodeApi], leader: &NodeApi) -> Result<()> {
    let target = leader.cluster(READ_TIMEOUT).await?.committed_index.unwrap_or(0);
    for _ in 0..120 {
        let mut behind = Vec::new();
        for api in apis {
            let applied = api.cluster(READ_TIMEOUT).await?.applied_index.unwrap_or(0);
            if applied < target {
                behind.push((api.id, applied));
            }
        }
        if behind.is_empty() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    bail!("nodes did not apply up to {target} in 30 s")
}

fn job_views(jobs: &BTreeMap<u64, Vec<Job>>) -> Vec<Vec<(String, String, bool)>> {
    jobs.values()
        .map(|js| {
            let mut v: Vec<_> = js.iter().map(|j| (j.id.to_string(), j.name.clone(), j.is_active)).collect();
            v.sort();
            v
        })
        .collect()
}

fn run_views(runs: &BTreeMap<u64, BTreeMap<String, Vec<Run>>>) -> Vec<Vec<(String, String, String)>> {
    runs.values()
        .map(|per_job| {
            let mut v: Vec<_> = per_job
                .iter()
                .flat_map(|(job, rs)| rs.iter().map(move |r| (job.clone(), r.id.clone(), r.status.clone())))
                .collect();
            v.sort();
            v
        })
        .collect()
}

/// Reads the final state (up to 3 rounds until the nodes agree).
pub async fn read_final(apis: &[NodeApi], firing: &[FiringJob], keys: &KeyState) -> Result<FinalState> {
    let mut state = FinalState::default();
    for round in 1..=3u32 {
        let leader_id = converge::wait(apis, Duration::from_secs(60)).await.context("the cluster did not converge")?;
        let leader = apis.iter().find(|a| a.id == leader_id).context("leader not among the nodes")?;
        wait_applied(apis, leader).await?;
        state = FinalState { rounds: round, ..FinalState::default() };
        for api in apis {
            state.jobs.insert(api.id, api.all_jobs(true, READ_TIMEOUT).await?);
            let mut per_job = BTreeMap::new();
            for job in firing {
                per_job.insert(job.id.clone(), api.all_runs(&job.id, READ_TIMEOUT).await?);
            }
            state.runs.insert(api.id, per_job);
        }
        state.jobs_linearizable = leader.all_jobs(false, READ_TIMEOUT).await?;
        let jv = job_views(&state.jobs);
        let rv = run_views(&state.runs);
        if jv.windows(2).all(|w| w[0] == w[1]) && rv.windows(2).all(|w| w[0] == w[1]) {
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    state.keys = check_keys(apis, keys).await;
    Ok(state)
}

/// Tries every key on every node (at most 50 of each kind).
async fn check_keys(apis: &[NodeApi], keys: &KeyState) -> KeyFinal {
    let mut out = KeyFinal::default();
    for (id, key) in keys.live.iter().take(50) {
        out.live_checked += 1;
        for api in apis {
            match key_status(api, key).await {
                200 => {}
                401 => out.live_refused.push((id.clone(), api.id, 401)),
                other => out.inconclusive.push((id.clone(), api.id, other)),
            }
        }
    }
    for (id, key) in keys.revoked.iter().take(50) {
        out.revoked_checked += 1;
        for api in apis {
            match key_status(api, key).await {
                401 => {}
                200 => out.revoked_accepted.push((id.clone(), api.id, 200)),
                other => out.inconclusive.push((id.clone(), api.id, other)),
            }
        }
    }
    out
}
