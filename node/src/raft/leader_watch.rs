//! Early campaigns when the leader's process is gone.
//!
//! openraft 0.9 lets a follower campaign only after the leader's lease (the maximum election
//! timeout) and then its own drawn election timeout, both counted from the leader's last
//! message, checked on a 75 ms tick: 0.45-0.68 s with the defaults. The drawn part is there so
//! that two followers do not campaign together and split the vote. When the leader's *process*
//! is gone (a crash, kill -9, an OOM kill, a stop), its address refuses connections at once.
//! This task sees that case: a follower that has not heard from its leader for two heartbeats
//! tries a TCP connection to the leader's address (or its `--peer-override`), and if it is
//! refused, the follower campaigns as soon as the leader's lease has run out, plus a margin for
//! another follower's later last contact. The followers take turns so that they do not split
//! the vote: the longest log first (a voter refuses a candidate with a shorter log than its
//! own), then the lowest id; each asks the others how long their logs are
//! (`/internal/raft/last-log`), and one that does not answer goes by its id.
//!
//! Liveness only. An election is always safe in Raft, and this one starts at most one drawn
//! election timeout before the follower's own timer would start it; a message from the leader
//! in between calls it off. A paused leader (its kernel does not refuse connections) or one cut
//! off by the network (no answer, or a refusal from a firewall) is left to the normal timers,
//! which start the same election a little later. It must not touch leases, shards or the log,
//! and never campaigns before the leader's lease ran out on this node.

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::ids::NodeId;
use crate::raft::network::PeerClient;
use crate::raft::{Raft, RaftTuning, ServerState};

/// The timing of early campaigns, from the Raft tuning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// How often the follower looks.
    pub tick: Duration,
    /// Silence from the leader before its address is tried.
    pub quiet: Duration,
    /// openraft's leader lease: a voter refuses to vote for anyone else for this long after
    /// the leader's last message (the maximum election timeout).
    pub lease: Duration,
    /// After the lease: room for another follower that heard from the leader a little later.
    pub margin: Duration,
    /// Between one follower's campaign and the next one's.
    pub stagger: Duration,
    /// How long a connection attempt may take before it says nothing.
    pub connect_timeout: Duration,
}

impl Timing {
    pub fn new(tuning: &RaftTuning) -> Timing {
        let heartbeat = tuning.heartbeat.max(Duration::from_millis(1));
        Timing {
            tick: heartbeat / 2,
            quiet: heartbeat * 2,
            // `raft::start` sets the maximum election timeout to twice the minimum.
            lease: tuning.election_timeout * 2,
            // A leader's messages to its followers are at most a heartbeat apart.
            margin: heartbeat,
            stagger: tuning.election_timeout / 2,
            connect_timeout: (heartbeat * 2).min(Duration::from_millis(200)),
        }
    }

    /// When the follower whose turn is `turn` campaigns, its leader last heard from at
    /// `last_contact`.
    pub fn campaign_at(&self, last_contact: Instant, turn: usize) -> Instant {
        last_contact + self.lease + self.margin + self.stagger * turn.min(16) as u32
    }

    /// Past this much silence the follower's own timer has started the election anyway.
    fn gives_up_after(&self) -> Duration {
        self.lease * 2 + self.stagger
    }
}

/// The voters that may replace `leader` besides `me` (every voter but the two), or `None`
/// when `me` is not one of the voters that may.
pub fn rivals(me: NodeId, voters: &BTreeSet<NodeId>, leader: NodeId) -> Option<Vec<NodeId>> {
    if me == leader || !voters.contains(&me) {
        return None;
    }
    Some(voters.iter().copied().filter(|v| *v != leader && *v != me).collect())
}

/// Where `me` comes in the order of campaigns: after every rival with a longer log (a voter
/// refuses a candidate whose log is shorter than its own), and among equal logs after the lower
/// ids. A rival that did not say how long its log is (`None`) goes by id alone. Once the leader
/// is gone the logs stop growing, so every survivor computes the same order.
pub fn turn(me: NodeId, my_log: Option<u64>, rivals: &[(NodeId, Option<Option<u64>>)]) -> usize {
    rivals
        .iter()
        .filter(|(id, log)| match log {
            Some(theirs) => (*theirs, std::cmp::Reverse(*id)) > (my_log, std::cmp::Reverse(me)),
            None => *id < me,
        })
        .count()
}

/// What a connection attempt to the leader's address said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// Refused at once: no process listens there.
    Refused,
    /// Accepted, failed otherwise, or no answer in time: says nothing about the process.
    Inconclusive,
}

async fn probe(addr: &str, timeout: Duration) -> Probe {
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => Probe::Refused,
        _ => Probe::Inconclusive,
    }
}

/// What this node knows of its leader at one look.
struct Follower {
    leader: NodeId,
    term: u64,
    addr: String,
    /// The other voters that may replace the leader, with their addresses.
    rivals: Vec<(NodeId, String)>,
}

fn follower_view(raft: &Raft, me: NodeId) -> Option<Follower> {
    let m = raft.metrics().borrow().clone();
    if m.state != ServerState::Follower {
        return None;
    }
    let leader = m.current_leader?;
    let membership = m.membership_config.membership();
    let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    let rivals = rivals(me, &voters, leader)?
        .into_iter()
        .filter_map(|id| membership.get_node(&id).map(|n| (id, n.addr.clone())))
        .collect();
    let addr = membership.get_node(&leader)?.addr.clone();
    Some(Follower { leader, term: m.current_term, addr, rivals })
}

/// This node's turn, from the rivals' log lengths (asked all at once, each within `timeout`).
async fn my_turn(raft: &Raft, me: NodeId, peers: &PeerClient, rivals: &[(NodeId, String)], timeout: Duration) -> usize {
    let asked = rivals.iter().map(|(id, addr)| async move {
        let log: Option<Option<u64>> = peers.call(*id, addr, LAST_LOG_PATH, &(), timeout).await.ok();
        (*id, log)
    });
    let logs = futures::future::join_all(asked).await;
    turn(me, last_log_index(raft), &logs)
}

/// This node's last log index: what it tells a rival that asks (`LAST_LOG_PATH`), and what it
/// compares with the rivals' answers.
pub fn last_log_index(raft: &Raft) -> Option<u64> {
    raft.metrics().borrow().last_log_index
}

/// The route that answers a rival's question: this node's last log index (bincode
/// `Option<u64>`).
pub const LAST_LOG_PATH: &str = "/internal/raft/last-log";

/// The leader's vote as this node holds it, and when a leader's message last renewed it.
async fn vote_and_contact(raft: &Raft) -> Option<(crate::raft::Vote, Instant)> {
    raft.with_raft_state(|st| st.vote_last_modified().map(|t| (*st.vote_ref(), t))).await.ok().flatten()
}

/// Watches the leader from this follower until `stop` is set (see the module comment).
pub async fn run(
    raft: Raft,
    me: NodeId,
    peers: PeerClient,
    timing: Timing,
    campaigns: prometheus::IntCounter,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(timing.tick);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        let Some(f) = follower_view(&raft, me) else { continue };
        let Some((vote, contact)) = vote_and_contact(&raft).await else { continue };
        if !vote.is_committed() {
            continue;
        }
        let silent = contact.elapsed();
        if silent < timing.quiet || silent > timing.gives_up_after() {
            continue;
        }
        let addr = peers.address_of(f.leader, &f.addr).to_string();
        if probe(&addr, timing.connect_timeout).await != Probe::Refused {
            continue;
        }
        let turn = my_turn(&raft, me, &peers, &f.rivals, timing.connect_timeout).await;
        let at = timing.campaign_at(contact, turn);
        tokio::select! {
            _ = tokio::time::sleep_until(at) => {}
            _ = stop.changed() => return,
        }
        // Called off by any message from a leader since, or by an election already under way.
        match vote_and_contact(&raft).await {
            Some((v, c)) if v == vote && c == contact => {}
            _ => continue,
        }
        tracing::info!(
            leader = f.leader,
            term = f.term,
            turn,
            silent_ms = contact.elapsed().as_millis() as u64,
            addr = %addr,
            "the leader's address refuses connections and its lease ran out: campaigning early"
        );
        campaigns.inc();
        if let Err(e) = raft.trigger().elect().await {
            tracing::warn!(error = %e, "asking Raft for an election");
            return;
        }
        // Give the election its time before looking again.
        tokio::select! {
            _ = tokio::time::sleep(timing.lease) => {}
            _ = stop.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[NodeId]) -> BTreeSet<NodeId> {
        ids.iter().copied().collect()
    }

    #[test]
    fn the_rivals_are_the_other_voters_and_the_leader_has_none() {
        let voters = set(&[1, 2, 3, 5]);
        assert_eq!(rivals(2, &voters, 1), Some(vec![3, 5]));
        assert_eq!(rivals(5, &voters, 3), Some(vec![1, 2]));
        assert_eq!(rivals(3, &voters, 3), None, "the leader does not replace itself");
        assert_eq!(rivals(4, &voters, 1), None, "a learner does not campaign");
    }

    #[test]
    fn the_longest_log_goes_first_then_the_lowest_id_and_a_silent_rival_by_id() {
        // Equal logs: by id.
        assert_eq!(turn(2, Some(10), &[(3, Some(Some(10)))]), 0);
        assert_eq!(turn(3, Some(10), &[(2, Some(Some(10)))]), 1);
        // A longer log goes first whatever the ids (the other voter would refuse a shorter one).
        assert_eq!(turn(2, Some(9), &[(3, Some(Some(10)))]), 1);
        assert_eq!(turn(3, Some(10), &[(2, Some(Some(9)))]), 0);
        assert_eq!(turn(3, Some(0), &[(2, Some(None))]), 0, "an empty log is the shortest");
        // Both sides of a pair agree, and so do three rivals.
        let logs = [(1, Some(7)), (2, Some(9)), (4, Some(9)), (5, Some(8))];
        let mut turns: Vec<usize> = logs
            .iter()
            .map(|(me, mine)| {
                let others: Vec<_> = logs.iter().filter(|(id, _)| id != me).map(|(id, l)| (*id, Some(*l))).collect();
                turn(*me, *mine, &others)
            })
            .collect();
        assert_eq!(turns, vec![3, 0, 1, 2]);
        turns.sort();
        assert_eq!(turns, vec![0, 1, 2, 3], "one turn each");
        // A rival that did not answer goes by id.
        assert_eq!(turn(3, Some(1), &[(2, None)]), 1);
        assert_eq!(turn(2, Some(1), &[(3, None)]), 0);
    }

    #[test]
    fn the_first_campaign_waits_out_the_leaders_lease_and_the_next_one_a_stagger_more() {
        let t = Timing::new(&RaftTuning::default());
        assert_eq!(t.lease, Duration::from_millis(300));
        assert_eq!(t.quiet, Duration::from_millis(100));
        let contact = Instant::now();
        let first = t.campaign_at(contact, 0);
        assert!(first > contact + t.lease, "never inside the lease another voter enforces");
        assert_eq!(t.campaign_at(contact, 1) - first, t.stagger);
        // Earlier than the normal timer: lease + a drawn timeout of at least the minimum.
        assert!(first < contact + t.lease + RaftTuning::default().election_timeout);
        assert!(t.gives_up_after() > t.campaign_at(contact, 2) - contact);
    }

    #[tokio::test]
    async fn a_closed_port_is_refused_and_a_listening_one_says_nothing() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open = listener.local_addr().unwrap().to_string();
        assert_eq!(probe(&open, Duration::from_secs(2)).await, Probe::Inconclusive);
        drop(listener);
        assert_eq!(probe(&open, Duration::from_secs(2)).await, Probe::Refused);
    }
}
