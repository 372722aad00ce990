//! Cluster formation and the first admin key.
//!
//! Formation: every node started with `--initial-cluster` and a pristine log initializes Raft
//! with the same member set; openraft makes that safe, and the cluster elects a leader as soon
//! as a majority is up. No separate init call exists.
//!
//! Formation settings (shard count, run history) are committed first, then the first admin key:
//! whichever node becomes leader while no admin key was ever installed
//! proposes one: the hash of `RAFTCRON_ADMIN_KEY`, or of a freshly generated key that it prints
//! once, only after the state machine confirmed it was the one installed.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::cluster::Cluster;
use crate::ids::{KeyId, NodeId};
use crate::model::apikey::{self, KeyKind};
use crate::raft::BasicNode;
use crate::state::{read, CommandBody, CommandResult};

/// Initializes Raft with the initial members if this node was never part of a cluster.
pub async fn form(cluster: &Cluster, initial: &BTreeMap<NodeId, String>) -> Result<(), String> {
    if initial.is_empty() {
        tracing::info!("no initial cluster given: waiting to be added to a cluster");
        return Ok(());
    }
    let members = initial.iter().map(|(id, addr)| (*id, BasicNode::new(addr))).collect();
    match cluster.raft.initialize(members).await {
        Ok(true) => tracing::info!(members = initial.len(), "initialized the cluster's first membership"),
        Ok(false) => tracing::info!("already part of a cluster: rejoining"),
        Err(e) => return Err(e.to_string()),
    }
    Ok(())
}

/// Cluster-wide settings fixed when the cluster forms.
#[derive(Debug, Clone, Copy)]
pub struct Formation {
    pub shard_count: u32,
    pub runs_kept: u32,
    pub lease_ms: u32,
}

/// Runs until the cluster's formation settings and first admin key are in the replicated state
/// (or `stop` fires). The settings come first: no job can exist before its shard count is fixed.
pub async fn ensure_admin_key(
    cluster: Cluster,
    admin_key: Option<String>,
    formation: Formation,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        match read::admin_bootstrapped(&cluster.store) {
            Ok(true) => return,
            Ok(false) => {}
            Err(e) => {
                tracing::error!(error = %e, "reading the admin key state");
                continue;
            }
        }
        if !cluster.raft.is_leader() {
            continue;
        }
        let init = CommandBody::Form {
            shard_count: formation.shard_count,
            runs_kept: formation.runs_kept,
            lease_ms: formation.lease_ms,
        };
        if let Err(e) = cluster.write(init).await {
            tracing::warn!(error = %e, "fixing the shard count; will retry");
            continue;
        }
        let (key, generated) = match &admin_key {
            Some(k) => (k.clone(), false),
            None => (apikey::generate(), true),
        };
        let body = CommandBody::BootstrapAdminKey {
            id: KeyId(uuid::Uuid::new_v4()),
            hash: apikey::hash(&key),
            prefix: apikey::display_prefix(&key),
            name: "bootstrap admin".to_string(),
            kind: KeyKind::Admin,
        };
        match cluster.write(body).await {
            Ok(CommandResult::AdminKeyBootstrapped { created: true }) => {
                if generated {
                    // Printed once, to the terminal, never to the log stream.
                    println!("raftcron: generated the first admin API key (shown once, store it now):\n  {key}");
                } else {
                    tracing::info!("installed RAFTCRON_ADMIN_KEY as the first admin key");
                }
                return;
            }
            Ok(_) => return,
            Err(e) => tracing::warn!(error = %e, "installing the first admin key; will retry"),
        }
    }
}
