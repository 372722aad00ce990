//! The leader's duties: fix the shard count, and move shards so that every shard has exactly
//! one live owner, balanced, without ever letting two nodes fire for one shard.
//!
//! A node is live while its last grant is younger than `lease + safety_margin`. A shard leaves a
//! node only when that node can no longer hold a valid lease: from a dead node once its last
//! grant (or this leader's election, whichever is later) is older than `lease + safety_margin`;
//! from a live node (rebalancing) in two steps: revoke now, give it to another node once the
//! same wait has passed since the revoke.

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use crate::cluster::Cluster;
use crate::model::assignment::{self, ShardMove};
use crate::scheduler::SchedulerConfig;
use crate::state::{firing, CommandBody, CommandResult};

pub async fn run(cluster: Cluster, cfg: SchedulerConfig, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(cfg.tick * 2);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut term_since: Option<(u64, Instant)> = None;
    let mut revoked_at: HashMap<u32, Instant> = HashMap::new();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let view = cluster.raft.view();
        if !view.is_leader {
            term_since = None;
            revoked_at.clear();
            continue;
        }
        let since = match term_since {
            Some((term, t)) if term == view.term => t,
            _ => {
                let now = Instant::now();
                term_since = Some((view.term, now));
                revoked_at.clear();
                now
            }
        };
        if let Err(e) = step(&cluster, &cfg, since, &mut revoked_at, &view).await {
            tracing::warn!(error = %e, "shard assignment round failed");
        }
    }
}

async fn step(
    cluster: &Cluster,
    cfg: &SchedulerConfig,
    since: Instant,
    revoked_at: &mut HashMap<u32, Instant>,
    view: &crate::raft::handle::RaftView,
) -> Result<(), String> {
    if crate::store::Store::get(&cluster.store, crate::store::Table::SmMeta, crate::state::keys::SHARD_COUNT)
        .map_err(|e| e.to_string())?
        .is_none()
    {
        cluster
            .write(CommandBody::InitShards { shard_count: cfg.shard_count, runs_kept: cfg.runs_kept })
            .await
            .map_err(|e| e.to_string())?;
    }
    // Give every node a chance to ask for a lease before the first assignment.
    if since.elapsed() < cfg.lease / 2 {
        return Ok(());
    }
    let wait = cfg.lease + cfg.safety_margin;
    let voters: Vec<u64> = view.members.iter().filter(|m| m.voter).map(|m| m.node_id).collect();
    let live: BTreeSet<u64> =
        voters.iter().copied().filter(|n| cluster.grants.last(*n).is_some_and(|t| t.elapsed() < wait)).collect();
    let current = firing::assignment(&cluster.store).map_err(|e| e.to_string())?;
    let mut moves = Vec::new();
    for m in assignment::rebalance(&current, &live) {
        match m.from {
            Some(from) if live.contains(&from) => {
                // Revoke first; hand over after the old owner's lease has surely run out.
                moves.push(ShardMove { to: None, ..m });
                revoked_at.insert(m.shard, Instant::now());
            }
            Some(from) => {
                let last = cluster.grants.last(from).map_or(since, |g| g.max(since));
                if last.elapsed() > wait {
                    moves.push(m);
                }
            }
            None => {
                let epoch = current.owner(m.shard).map_or(0, |o| o.epoch);
                let since_revoke = revoked_at.get(&m.shard).copied().unwrap_or(since);
                if epoch == 0 || since_revoke.elapsed() > wait {
                    moves.push(m);
                    revoked_at.remove(&m.shard);
                }
            }
        }
    }
    if moves.is_empty() {
        return Ok(());
    }
    let n = moves.len();
    // Only as the leader that judged the leases: a successor must judge them itself.
    match cluster.write_as_leader(CommandBody::AssignShards { moves }).await.map_err(|e| e.to_string())? {
        CommandResult::Assigned { .. } => tracing::info!(moves = n, live = ?live, "shards reassigned"),
        other => tracing::warn!(result = ?other, "shard assignment refused"),
    }
    Ok(())
}
