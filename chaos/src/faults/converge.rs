//! "The cluster is whole again": every expected node answers, is ready, names the same leader
//! (one of them), and the leader's shard table gives shards to every one of them.
//!
//! Read-only probes with a deadline; used after every heal (to measure time to converge) and
//! before the final reads.

use std::time::Duration;

use anyhow::{bail, ensure, Result};

use crate::api::NodeApi;

const PROBE: Duration = Duration::from_secs(2);
const POLL: Duration = Duration::from_millis(250);

/// One probe: `Ok(leader)` when whole.
pub async fn probe(apis: &[NodeApi]) -> Result<u64> {
    ensure!(!apis.is_empty(), "no node to probe");
    let mut leaders = Vec::new();
    for api in apis {
        ensure!(api.ready(PROBE).await, "node {} is not ready", api.id);
        let s = api.cluster(PROBE).await?;
        leaders.push((api.id, s.leader_id));
    }
    let leader = leaders[0].1;
    let Some(l) = leader else { bail!("node {} knows no leader", leaders[0].0) };
    ensure!(leaders.iter().all(|(_, x)| *x == leader), "nodes disagree on the leader: {leaders:?}");
    let Some(lapi) = apis.iter().find(|a| a.id == l) else { bail!("the leader {l} is not an expected node") };
    let shards = lapi.shards(PROBE).await?;
    for api in apis {
        let n = shards.per_node.get(&api.id).copied().unwrap_or(0);
        ensure!(n > 0, "node {} owns no shard yet ({:?})", api.id, shards.per_node);
    }
    Ok(l)
}

/// Polls [`probe`] until it passes or `timeout`; the leader, or the last reason.
pub async fn wait(apis: &[NodeApi], timeout: Duration) -> Result<u64> {
    let deadline = tokio::time::Instant::now() + timeout;
    let max = (timeout.as_millis() / POLL.as_millis()) as usize + 2;
    let mut last = String::from("not probed");
    for _ in 0..max {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            break;
        }
        match tokio::time::timeout(left, probe(apis)).await {
            Ok(Ok(l)) => return Ok(l),
            Ok(Err(e)) => last = format!("{e:#}"),
            Err(_) => last = "the probe did not finish in time".into(),
        }
        tokio::time::sleep(POLL).await;
    }
    bail!("not converged after {timeout:?}: {last}")
}

/// The leader most nodes name (ties: the highest term), without requiring agreement.
pub async fn current_leader(apis: &[NodeApi]) -> Option<u64> {
    let mut best: Option<(u64, u64)> = None;
    for api in apis {
        if let Ok(s) = api.cluster(PROBE).await {
            if let Some(l) = s.leader_id {
                if best.is_none_or(|(t, _)| s.term > t) {
                    best = Some((s.term, l));
                }
            }
        }
    }
    best.map(|(_, l)| l)
}
