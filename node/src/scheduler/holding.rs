//! Which slots this process is sending right now, as the other nodes may ask:
//! `POST /internal/holding`. A node that gained a shard asks the previous holder of each sent,
//! unrecorded slot whether it is still sending it before it claims the slot back and re-sends
//! it (docs/design/firing.md, "Moving shards between live nodes"): a live owner that lost a
//! shard to rebalancing records its slots itself, and a slow target is not called twice.
//!
//! This module answers and asks; `scheduler::round` decides. It must not write to the cluster.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::cluster::Cluster;
use crate::ids::NodeId;
use crate::model::slot::FireId;
use crate::raft::rpc::{bincode_answer, decode_body};

pub const PATH: &str = "/internal/holding";
/// Most fire ids in one question.
pub const MAX_ASKED: usize = 4096;

/// The slots of this process that are dispatched and whose result is not applied here yet.
pub type Active = Arc<Mutex<HashSet<FireId>>>;

/// A question: which of these slots are you sending?
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ask {
    pub fire_ids: Vec<FireId>,
}

/// The answer: the process that answers, and which of the asked slots it is sending.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Answer {
    pub incarnation: Uuid,
    pub holding: Vec<FireId>,
}

/// This process's slots in hand. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Holding {
    /// Drawn once per process: the claims of this process name it.
    pub incarnation: Uuid,
    pub active: Active,
}

impl Default for Holding {
    fn default() -> Self {
        Holding { incarnation: Uuid::new_v4(), active: Arc::default() }
    }
}

impl Holding {
    fn answer(&self, ask: &Ask) -> Answer {
        let holding = match self.active.lock() {
            Ok(a) => ask.fire_ids.iter().filter(|id| a.contains(id)).copied().collect(),
            Err(_) => Vec::new(),
        };
        Answer { incarnation: self.incarnation, holding }
    }
}

pub fn routes(holding: Holding) -> Router {
    Router::new().route(PATH, post(handle)).with_state(holding)
}

async fn handle(State(holding): State<Holding>, body: Bytes) -> Response {
    let ask: Ask = match decode_body(&body) {
        Ok(a) => a,
        Err(resp) => return *resp,
    };
    bincode_answer(&holding.answer(&ask))
}

/// One holder's last answer.
#[derive(Debug)]
struct Told {
    at: Instant,
    incarnation: Uuid,
    asked: HashSet<FireId>,
    holding: HashSet<FireId>,
}

/// What the other nodes said about the slots they hold, kept for a short while; questions go
/// in tasks of their own, so an owner's round never waits for them. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Holders {
    told: Arc<Mutex<HashMap<NodeId, Told>>>,
    asking: Arc<Mutex<HashSet<NodeId>>>,
}

impl Holders {
    /// Whether process (`node`, `incarnation`) said within `fresh` that it is sending `fire_id`;
    /// `None` when no answer that recent covers the slot.
    pub fn holds(&self, node: NodeId, incarnation: Uuid, fire_id: &FireId, fresh: Duration) -> Option<bool> {
        let told = self.told.lock().ok()?;
        let t = told.get(&node)?;
        if t.at.elapsed() > fresh || !t.asked.contains(fire_id) {
            return None;
        }
        Some(t.incarnation == incarnation && t.holding.contains(fire_id))
    }

    /// Asks `node` about `fire_ids` (bounded by `timeout`) in a task of its own, unless a
    /// question to it is on its way; the task, to wait for its answer if the caller wants. A node
    /// that cannot be reached, or does not know the question, holds nothing.
    pub fn ask(
        &self,
        cluster: &Cluster,
        node: NodeId,
        mut fire_ids: Vec<FireId>,
        timeout: Duration,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let Ok(mut asking) = self.asking.lock() else { return None };
        if !asking.insert(node) {
            return None;
        }
        drop(asking);
        fire_ids.truncate(MAX_ASKED);
        let (me, cluster) = (self.clone(), cluster.clone());
        Some(tokio::spawn(async move {
            let ask = Ask { fire_ids };
            let answer = match cluster.ask_peer::<_, Answer>(node, PATH, &ask, timeout).await {
                Ok(a) => a,
                Err(e) => {
                    tracing::debug!(node, error = %e, "no answer about the slots it holds; taken as none");
                    Answer { incarnation: Uuid::nil(), holding: Vec::new() }
                }
            };
            // Fresh from the answer on: a holder's "not sending" after a long timeout must not be
            // stale on arrival, or its slots would be asked about for ever and never claimed back.
            let told = Told {
                at: Instant::now(),
                incarnation: answer.incarnation,
                asked: ask.fire_ids.into_iter().collect(),
                holding: answer.holding.into_iter().collect(),
            };
            if let Ok(mut t) = me.told.lock() {
                t.insert(node, told);
            }
            if let Ok(mut a) = me.asking.lock() {
                a.remove(&node);
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_says_which_asked_slots_it_is_sending() {
        let h = Holding::default();
        let (a, b) = (
            FireId::scheduled(crate::ids::JobId::generate(), 1000),
            FireId::scheduled(crate::ids::JobId::generate(), 2000),
        );
        h.active.lock().unwrap().insert(a);
        let answer = h.answer(&Ask { fire_ids: vec![a, b] });
        assert_eq!(answer.incarnation, h.incarnation);
        assert_eq!(answer.holding, vec![a]);
    }

    #[test]
    fn an_answer_counts_only_for_its_process_its_slots_and_a_short_while() {
        let holders = Holders::default();
        let (inc, a, b) = (
            Uuid::new_v4(),
            FireId::scheduled(crate::ids::JobId::generate(), 1000),
            FireId::scheduled(crate::ids::JobId::generate(), 2000),
        );
        let fresh = Duration::from_secs(60);
        assert_eq!(holders.holds(2, inc, &a, fresh), None, "never asked");
        holders.told.lock().unwrap().insert(
            2,
            Told { at: Instant::now(), incarnation: inc, asked: HashSet::from([a, b]), holding: HashSet::from([a]) },
        );
        assert_eq!(holders.holds(2, inc, &a, fresh), Some(true));
        assert_eq!(holders.holds(2, inc, &b, fresh), Some(false), "asked, not held");
        assert_eq!(holders.holds(2, Uuid::new_v4(), &a, fresh), Some(false), "another incarnation: restarted");
        assert_eq!(holders.holds(3, inc, &a, fresh), None, "another node");
        let c = FireId::scheduled(crate::ids::JobId::generate(), 3000);
        assert_eq!(holders.holds(2, inc, &c, fresh), None, "not asked about");
        assert_eq!(holders.holds(2, inc, &a, Duration::ZERO), None, "too old");
    }
}
