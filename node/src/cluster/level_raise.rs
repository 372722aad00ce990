//! Raising the cluster's release level (`crate::level`) as soon as every member runs it.
//!
//! On the leader only: every [`PERIOD`], while the replicated level is below this build's, it
//! asks for `CommandBody::RaiseLevel`, which the write gate proposes once every member answered
//! this leader with at least this build's level. After a rolling upgrade the cluster's level
//! follows within a few heartbeats, before any data needs it, so that later such data never
//! waits for a member that is stopped at that moment. The judgement itself is
//! `Cluster::admit_level`'s, the one every write goes through; this task only asks for it.
//!
//! It never lowers the level and never proposes on a follower.

use std::time::Duration;

use crate::cluster::Cluster;
use crate::state::CommandBody;

/// Time between two looks.
pub const PERIOD: Duration = Duration::from_secs(1);

pub async fn run(cluster: Cluster, mut stop: tokio::sync::watch::Receiver<bool>) {
    let own = crate::level::own();
    let mut tick = tokio::time::interval(PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        if !cluster.raft.is_leader() || crate::state::cluster_level(&cluster.store).map_or(true, |l| l >= own) {
            continue;
        }
        // Refused (and nothing proposed) while a member has not answered with `own`.
        let raised = tokio::select! {
            r = cluster.write_as_leader(CommandBody::RaiseLevel { level: own }) => r,
            _ = stop.changed() => return,
        };
        match raised {
            Ok(_) => tracing::info!(level = own, "raised the cluster's release level: every member runs it"),
            Err(e) => tracing::debug!(level = own, error = %e, "raising the cluster's release level"),
        }
    }
}
