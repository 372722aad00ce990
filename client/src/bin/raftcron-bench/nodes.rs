//! The cluster under measurement as the scenarios see it: node URLs, the API key and, when
//! known, each node's process id.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Result};
use raftcron_client::{Client, MemberRole};

use crate::local::LocalCluster;
use crate::report::Row;

/// Bound of one request of the load (a write waits up to ~10 s for its commit on the node).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct Nodes {
    pub urls: Vec<String>,
    pub key: String,
    /// Per URL; `None` when not known (an attached cluster without --pid).
    pub pids: Vec<Option<u32>>,
}

impl Nodes {
    pub fn of_local(c: &LocalCluster) -> Nodes {
        let ids = c.running();
        Nodes {
            urls: ids.iter().map(|id| c.url(*id)).collect(),
            key: c.admin_key.clone(),
            pids: ids.iter().map(|id| c.pid(*id)).collect(),
        }
    }

    /// One client per node, each bound to its node only (no failover: the load is aimed).
    pub fn clients(&self) -> Result<Arc<Vec<Arc<Client>>>> {
        let mut out = Vec::with_capacity(self.urls.len());
        for u in &self.urls {
            out.push(Arc::new(Client::builder(vec![u.clone()], self.key.clone()).timeout(REQUEST_TIMEOUT).build()?));
        }
        Ok(Arc::new(out))
    }

    /// A client that fails over between every node.
    pub fn any(&self) -> Result<Client> {
        Ok(Client::builder(self.urls.clone(), self.key.clone()).timeout(REQUEST_TIMEOUT).build()?)
    }

    /// The index (in `urls`) of the leader, matched by the member's address.
    pub async fn leader_index(&self) -> Result<usize> {
        let status = self.any()?.cluster().await?;
        let leader = status
            .members
            .iter()
            .find(|m| m.role == MemberRole::Leader || Some(m.node_id) == status.leader_id)
            .ok_or_else(|| anyhow!("the cluster has no leader now"))?;
        self.urls
            .iter()
            .position(|u| u.trim_end_matches('/').ends_with(&format!("//{}", leader.addr)))
            .ok_or_else(|| anyhow!("the leader's address {} is not among the URLs {:?}", leader.addr, self.urls))
    }

    /// The highest Raft term any node reports now (every election raises it).
    pub async fn term(&self) -> Option<u64> {
        let clients = self.clients().ok()?;
        let mut highest = None;
        for c in clients.iter() {
            if let Ok(s) = c.cluster().await {
                highest = highest.max(Some(s.term));
            }
        }
        highest
    }

    /// `row` with `elections`: how many terms began since `before` (0: the leader held).
    pub async fn with_elections(&self, row: Row, before: Option<u64>) -> Row {
        match (before, self.term().await) {
            (Some(b), Some(a)) => row.with("elections", a.saturating_sub(b)),
            _ => row,
        }
    }
}
