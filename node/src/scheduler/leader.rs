//! The leader's duties: fix the formation settings (shard count, run history, lease), and move
//! shards so that every shard has exactly one live owner, balanced, without ever letting two
//! nodes fire for one shard.
//!
//! Safety needs one wait: a shard leaves a node only once that node can no longer hold a valid
//! lease, `lease + safety_margin` after its last grant (or after this leader's election, whichever
//! is later: a new leader does not know its predecessor's grants). On top of that the leader is
//! patient with a node that goes silent: it takes it for dead only after `dead_after` (5 s by
//! default), so that a stall or a network blip costs late slots, sent by the node itself once it
//! renews, rather than a move and the next owner's re-send of its unrecorded requests. The leader
//! of the previous term gets no patience: a quorum has already given up on it (that is how this
//! leader was elected), so its shards move as soon as safety allows, and a dead leader's slots
//! fire again about `lease + safety_margin` after the election. From a live node (rebalancing) a
//! shard moves in two steps: revoke now, give it to another node once the safety wait has passed
//! since the revoke.
//!
//! It must not move a shard before the safety wait, whatever the settings: `dead_after` only
//! ever adds to it.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use crate::cluster::Cluster;
use crate::ids::NodeId;
use crate::model::assignment::{self, Assignment, ShardMove};
use crate::scheduler::SchedulerConfig;
use crate::state::{firing, CommandBody, CommandResult};

/// What one assignment round looks at. `T` is a monotonic instant: `Instant` in the node, the
/// simulated clock in the deterministic simulation, which runs this same decision.
pub struct Round<'a, T> {
    /// The shard owners as committed.
    pub current: &'a Assignment,
    /// The voters of the current membership.
    pub voters: &'a [NodeId],
    /// When this leader last granted each node its lease.
    pub last_grant: &'a dyn Fn(NodeId) -> Option<T>,
    /// When this leader's term began (its grants before that do not exist).
    pub since: T,
    /// The leader of the previous term, as this node last saw it before its election.
    pub previous_leader: Option<NodeId>,
    pub now: T,
    /// How long ago an instant was, as of `now`.
    pub age: &'a dyn Fn(T) -> Duration,
}

/// The moves one round makes, and the nodes it judged live; `None` while the term is younger
/// than half a lease (every node gets a chance to ask for a lease first). Pure: it records the
/// revokes it makes in `revoked_at` and nothing else.
pub fn plan<T: Copy + Ord>(
    r: &Round<'_, T>,
    cfg: &SchedulerConfig,
    revoked_at: &mut HashMap<u32, T>,
) -> Option<(BTreeSet<NodeId>, Vec<ShardMove>)> {
    if (r.age)(r.since) < cfg.lease / 2 {
        return None;
    }
    let safe = cfg.lease_wait();
    // How long each node may go without a grant: the patience, except for a previous leader
    // that has not renewed in this term.
    let wait = |n: NodeId| {
        let unheard = (r.last_grant)(n).is_none_or(|g| g < r.since);
        if r.previous_leader == Some(n) && unheard {
            safe
        } else {
            cfg.dead_wait()
        }
    };
    let live: BTreeSet<NodeId> =
        r.voters.iter().copied().filter(|n| (r.last_grant)(*n).is_some_and(|t| (r.age)(t) < wait(*n))).collect();
    let mut moves = Vec::new();
    for m in assignment::rebalance(r.current, &live) {
        match m.from {
            Some(from) if live.contains(&from) => {
                // Revoke first; hand over after the old owner's lease has surely run out.
                moves.push(ShardMove { to: None, ..m });
                revoked_at.insert(m.shard, r.now);
            }
            Some(from) => {
                let last = (r.last_grant)(from).map_or(r.since, |g| g.max(r.since));
                if (r.age)(last) > wait(from) {
                    moves.push(m);
                }
            }
            None => {
                let epoch = r.current.owner(m.shard).map_or(0, |o| o.epoch);
                let since_revoke = revoked_at.get(&m.shard).copied().unwrap_or(r.since);
                if epoch == 0 || (r.age)(since_revoke) > safe {
                    moves.push(m);
                    revoked_at.remove(&m.shard);
                }
            }
        }
    }
    Some((live, moves))
}

/// Which leader this node's term replaced: the last leader it knew before it, kept from look to
/// look (a node that never saw one knows none, which costs only the patience).
#[derive(Debug, Default)]
pub struct Predecessor(Option<(u64, NodeId)>);

impl Predecessor {
    /// Notes the leader this node sees at `term` (itself while it leads), and answers the
    /// leader of an earlier term that `leader` replaced, if another node; `None` once it has
    /// been noted at this term.
    pub fn note(&mut self, term: u64, leader: Option<NodeId>) -> Option<NodeId> {
        let leader = leader?;
        let before = self.0.replace((term, leader));
        before.filter(|(t, id)| *t < term && *id != leader).map(|(_, id)| id)
    }
}

pub async fn run(cluster: Cluster, cfg: SchedulerConfig, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut term_since: Option<(u64, Instant)> = None;
    // In this node's term, the leader before it: the one the quorum gave up on.
    let mut predecessor = Predecessor::default();
    let mut previous_leader: Option<NodeId> = None;
    let mut quorum_lost_at: Option<Instant> = None;
    let mut revoked_at: HashMap<u32, Instant> = HashMap::new();
    // How often the leader looks: a fifth of a lease, and at least every other owner tick
    // (before formation, every tick); every `SOON` while a move may fall due any moment (see
    // `move_may_be_due`), so that a dead node's shards move within 50 ms of the end of its wait
    // rather than within 400 ms. A node that is not the leader looks every `SOON`, so that a
    // new term's waits count from within 50 ms of its start.
    let mut regular = cfg.tick;
    let mut soon = true;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(if soon { SOON } else { regular }) => {}
            _ = stop.changed() => return,
        }
        let view = cluster.raft.view();
        let replaced = predecessor.note(view.term, view.leader_id);
        if !view.is_leader {
            term_since = None;
            revoked_at.clear();
            soon = true;
            continue;
        }
        let term_start = match term_since {
            Some((term, t)) if term == view.term => t,
            _ => {
                let now = Instant::now();
                term_since = Some((view.term, now));
                previous_leader = replaced;
                quorum_lost_at = None;
                revoked_at.clear();
                now
            }
        };
        // The lease as fixed at formation; before that, only the formation itself is due.
        let Some(timing) = cfg.as_formed(&cluster.store) else {
            (regular, soon) = (cfg.tick, false);
            if let Err(e) = form(&cluster, &cfg).await {
                tracing::warn!(error = %e, "fixing the formation settings failed");
            }
            continue;
        };
        regular = (timing.lease / 5).min(cfg.tick * 2);
        // While this leader reaches no majority it grants nothing, so the missing grants of
        // that spell say nothing about the nodes: it starts judging them afresh after it, as
        // after an election (otherwise, healed, it would take every node it could not hear for
        // dead and move all their shards at once, re-sending what they could not record).
        if !has_quorum_contact(&view.members, timing.lease / 4) {
            quorum_lost_at = Some(Instant::now());
        }
        let since = quorum_lost_at.map_or(term_start, |t| t.max(term_start));
        soon = match step(&cluster, &timing, since, previous_leader, &mut revoked_at, &view).await {
            Ok(soon) => soon,
            Err(e) => {
                tracing::warn!(error = %e, "shard assignment round failed");
                true
            }
        };
    }
}

/// How often the leader looks while a move may fall due any moment.
const SOON: Duration = Duration::from_millis(50);

/// What [`move_may_be_due`] looks at.
struct Due<'a, T> {
    voters: &'a [NodeId],
    owns_shards: &'a dyn Fn(NodeId) -> bool,
    last_grant: &'a dyn Fn(NodeId) -> Option<T>,
    /// The start of the term, or of the spell since a lost majority.
    since: T,
    /// A revoked shard waits for its new owner.
    revoked: bool,
    age: &'a dyn Fn(T) -> Duration,
}

/// Whether a move may fall due before the next regular look: the term (or the spell since a
/// lost majority) is younger than the wait, a revoked shard waits for its new owner, or a voter
/// that owns shards renews late (more than half a lease since its last grant). Otherwise every
/// owner renewed lately, and none can be judged dead within a fifth of a lease.
fn move_may_be_due<T: Copy>(d: &Due<'_, T>, cfg: &SchedulerConfig) -> bool {
    (d.age)(d.since) <= cfg.dead_wait()
        || d.revoked
        || d.voters.iter().any(|n| (d.owns_shards)(*n) && (d.last_grant)(*n).is_none_or(|t| (d.age)(t) > cfg.lease / 2))
}

/// Fixes the formation settings (shard count, run history, lease) if no node did yet.
async fn form(cluster: &Cluster, cfg: &SchedulerConfig) -> Result<(), String> {
    let lease_ms = u32::try_from(cfg.lease.as_millis()).unwrap_or(u32::MAX);
    let body = CommandBody::Form { shard_count: cfg.shard_count, runs_kept: cfg.runs_kept, lease_ms };
    cluster.write(body).await.map(|_| ()).map_err(|e| e.to_string())
}

/// Whether this leader heard from a majority of the voters (itself included) within `within`.
pub fn has_quorum_contact(members: &[crate::raft::handle::MemberView], within: Duration) -> bool {
    let voters: Vec<_> = members.iter().filter(|m| m.voter).collect();
    let within_ms = within.as_millis() as u64;
    let reached = voters.iter().filter(|m| m.last_contact_ms.is_some_and(|ms| ms <= within_ms)).count();
    reached * 2 > voters.len()
}

async fn step(
    cluster: &Cluster,
    cfg: &SchedulerConfig,
    since: Instant,
    previous_leader: Option<NodeId>,
    revoked_at: &mut HashMap<u32, Instant>,
    view: &crate::raft::handle::RaftView,
) -> Result<bool, String> {
    // No grant between reading the grants and the moves' commit (see `LeaseGrants`).
    let moving = cluster.grants.exclusive().await;
    let current = firing::assignment(&cluster.store).map_err(|e| e.to_string())?;
    let voters: Vec<u64> = view.members.iter().filter(|m| m.voter).map(|m| m.node_id).collect();
    let now = Instant::now();
    let planned = plan(
        &Round {
            current: &current,
            voters: &voters,
            last_grant: &|n| cluster.grants.last(n),
            since,
            previous_leader,
            now,
            age: &|t: Instant| now.saturating_duration_since(t),
        },
        cfg,
        revoked_at,
    );
    let owned = current.counts();
    let soon = move_may_be_due(
        &Due {
            voters: &voters,
            owns_shards: &|n| owned.get(&n).is_some_and(|c| *c > 0),
            last_grant: &|n| cluster.grants.last(n),
            since,
            revoked: !revoked_at.is_empty(),
            age: &|t: Instant| now.saturating_duration_since(t),
        },
        cfg,
    );
    let Some((live, moves)) = planned else { return Ok(soon) };
    if moves.is_empty() {
        return Ok(soon);
    }
    if !moves.iter().any(|m| m.from.is_some() && m.to.is_some()) {
        // Revokes and hand-overs of unowned shards: no owner loses a shard it may fire for.
        drop(moving);
    }
    let n = moves.len();
    // Only as the leader that judged the leases: a successor must judge them itself.
    match cluster.write_as_leader(CommandBody::AssignShards { moves }).await.map_err(|e| e.to_string())? {
        CommandResult::Assigned { .. } => tracing::info!(moves = n, live = ?live, "shards reassigned"),
        other => tracing::warn!(result = ?other, "shard assignment refused"),
    }
    // The assignment changed: judge again at the next look.
    Ok(true)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use super::{plan, Round};
    use crate::model::assignment::{Assignment, ShardOwner};
    use crate::scheduler::SchedulerConfig;

    /// Milliseconds on a hand-driven monotonic clock.
    type Ms = u64;
    /// (shard, from, to) of each move.
    type Moves = Vec<(u32, Option<u64>, Option<u64>)>;

    fn cfg() -> SchedulerConfig {
        SchedulerConfig {
            lease: Duration::from_millis(4000),
            safety_margin: Duration::from_millis(600),
            dead_after: Duration::from_millis(8000),
            ..SchedulerConfig::default()
        }
    }

    fn owned(owners: &[Option<u64>]) -> Assignment {
        let mut a = Assignment::new(owners.len() as u32);
        for (o, node) in a.owners.iter_mut().zip(owners) {
            *o = ShardOwner { node: *node, epoch: u64::from(node.is_some()) };
        }
        a
    }

    fn run(
        current: &Assignment,
        grants: &HashMap<u64, Ms>,
        since: Ms,
        now: Ms,
        revoked: &mut HashMap<u32, Ms>,
    ) -> Option<(Vec<u64>, Moves)> {
        run_after(current, grants, (since, None), now, revoked)
    }

    /// [`run`] in a term that began at `since.0` and followed `since.1`'s.
    fn run_after(
        current: &Assignment,
        grants: &HashMap<u64, Ms>,
        (since, previous_leader): (Ms, Option<u64>),
        now: Ms,
        revoked: &mut HashMap<u32, Ms>,
    ) -> Option<(Vec<u64>, Moves)> {
        let round = Round {
            current,
            voters: &[1, 2, 3],
            last_grant: &|n| grants.get(&n).copied(),
            since,
            previous_leader,
            now,
            age: &|t: Ms| Duration::from_millis(now.saturating_sub(t)),
        };
        plan(&round, &cfg(), revoked)
            .map(|(live, moves)| (live.into_iter().collect(), moves.iter().map(|m| (m.shard, m.from, m.to)).collect()))
    }

    #[test]
    fn the_leader_looks_often_only_while_a_move_may_fall_due() {
        let cfg = cfg();
        let now: Ms = 100_000;
        let due = |grants: &[(u64, Ms)], owners: &[u64], since: Ms, revoked: bool| {
            let grants: HashMap<u64, Ms> = grants.iter().copied().collect();
            super::move_may_be_due(
                &super::Due {
                    voters: &[1, 2, 3],
                    owns_shards: &|n| owners.contains(&n),
                    last_grant: &|n| grants.get(&n).copied(),
                    since,
                    revoked,
                    age: &|t: Ms| Duration::from_millis(now.saturating_sub(t)),
                },
                &cfg,
            )
        };
        let renewing = [(1, now - 100), (2, now - 900), (3, now - 1500)];
        assert!(!due(&renewing, &[1, 2, 3], 0, false), "every owner renewed within half a lease");
        assert!(due(&renewing, &[1, 2, 3], now - 1000, false), "a young term waits for its first moves");
        assert!(due(&renewing, &[1, 2, 3], 0, true), "a revoked shard waits for its new owner");
        let late = [(1, now - 100), (2, now - 2100), (3, now - 900)];
        assert!(due(&late, &[1, 2, 3], 0, false), "node 2 renews late and owns shards");
        assert!(!due(&late, &[1, 3], 0, false), "node 2 renews late but has nothing left to move");
        assert!(due(&[(1, now), (3, now)], &[1, 2, 3], 0, false), "node 2 was never granted a lease");
    }

    #[test]
    fn a_quorum_is_a_majority_of_voters_heard_from_lately() {
        use crate::raft::handle::MemberView;
        let m = |node_id, voter, last_contact_ms| MemberView {
            node_id,
            addr: String::new(),
            voter,
            matched_index: None,
            last_contact_ms,
        };
        let within = Duration::from_millis(1000);
        let healthy = [m(1, true, Some(0)), m(2, true, Some(40)), m(3, true, Some(3000))];
        assert!(super::has_quorum_contact(&healthy, within));
        let cut_off = [m(1, true, Some(0)), m(2, true, Some(2500)), m(3, true, None)];
        assert!(!super::has_quorum_contact(&cut_off, within));
        // Learners do not count.
        let learners = [m(1, true, Some(0)), m(2, true, Some(5000)), m(3, false, Some(0)), m(4, false, Some(0))];
        assert!(!super::has_quorum_contact(&learners, within));
    }

    #[test]
    fn a_young_term_waits_half_a_lease_before_moving_anything() {
        let a = owned(&[None, None, None]);
        let grants = HashMap::from([(1, 1000), (2, 1000), (3, 1000)]);
        assert!(run(&a, &grants, 0, 1999, &mut HashMap::new()).is_none());
        let (live, moves) = run(&a, &grants, 0, 2000, &mut HashMap::new()).expect("a round");
        assert_eq!(live, vec![1, 2, 3]);
        assert_eq!(moves.len(), 3, "unowned shards are given at once: {moves:?}");
    }

    #[test]
    fn a_silent_nodes_shards_move_only_after_the_leaders_patience() {
        let a = owned(&[Some(1), Some(2), Some(3)]);
        // Node 3's last grant was at 10 000; its lease plus margin ended at 14 600, and the
        // leader's patience (`dead_after`) at 18 000.
        let grants = HashMap::from([(1, 17_000), (2, 17_000), (3, 10_000)]);
        let (live, moves) = run(&a, &grants, 0, 14_601, &mut HashMap::new()).expect("a round");
        assert_eq!(live, vec![1, 2, 3], "node 3 may only be stalled: it is still counted live");
        assert!(moves.is_empty(), "{moves:?}");
        let (live, moves) = run(&a, &grants, 0, 18_000, &mut HashMap::new()).expect("a round");
        assert_eq!(live, vec![1, 2], "node 3 is no longer live");
        assert!(moves.is_empty(), "not yet past the patience: {moves:?}");
        let (_, moves) = run(&a, &grants, 0, 18_001, &mut HashMap::new()).expect("a round");
        assert_eq!(moves.len(), 1, "{moves:?}");
        assert_eq!((moves[0].0, moves[0].1), (2, Some(3)));
    }

    #[test]
    fn the_patience_never_shortens_the_wait_that_safety_needs() {
        let a = owned(&[Some(1), Some(2), Some(3)]);
        let grants = HashMap::from([(1, 14_000), (2, 14_000), (3, 10_000)]);
        let impatient = SchedulerConfig { dead_after: Duration::ZERO, ..cfg() };
        let round = |now: Ms| {
            let r = Round {
                current: &a,
                voters: &[1, 2, 3],
                last_grant: &|n| grants.get(&n).copied(),
                since: 0,
                previous_leader: Some(3),
                now,
                age: &|t: Ms| Duration::from_millis(now.saturating_sub(t)),
            };
            plan(&r, &impatient, &mut HashMap::new()).expect("a round").1
        };
        assert!(round(14_600).is_empty(), "node 3 may still hold its lease");
        assert_eq!(round(14_601).len(), 1);
    }

    #[test]
    fn a_new_leader_counts_from_its_election_not_from_grants_it_never_saw() {
        let a = owned(&[Some(1), Some(2), Some(3)]);
        // This leader never granted node 3 anything; it was elected at 20 000.
        let grants = HashMap::from([(1, 22_000), (2, 22_000)]);
        let (_, moves) = run(&a, &grants, 20_000, 28_000, &mut HashMap::new()).expect("a round");
        assert!(moves.is_empty(), "{moves:?}");
        let (_, moves) = run(&a, &grants, 20_000, 28_001, &mut HashMap::new()).expect("a round");
        assert_eq!(moves.len(), 1, "{moves:?}");
    }

    #[test]
    fn a_new_term_knows_the_leader_it_replaced_once() {
        let mut p = super::Predecessor::default();
        assert_eq!(p.note(1, None), None, "no leader seen yet");
        assert_eq!(p.note(1, Some(3)), None, "following node 3: it replaced nobody known");
        assert_eq!(p.note(2, None), None, "a candidate sees no leader");
        assert_eq!(p.note(2, Some(1)), Some(3), "this node (1) leads term 2, after node 3");
        assert_eq!(p.note(2, Some(1)), None, "said once per term");
        assert_eq!(p.note(4, Some(1)), None, "re-elected after its own term: no other node replaced");
    }

    #[test]
    fn the_previous_leaders_shards_move_once_its_lease_surely_ended() {
        let a = owned(&[Some(1), Some(2), Some(3)]);
        // Elected at 20 000 after node 3's term; node 3 has not asked this leader for a lease.
        let grants = HashMap::from([(1, 22_000), (2, 22_000)]);
        let after_3 = (20_000, Some(3));
        let (live, moves) = run_after(&a, &grants, after_3, 24_600, &mut HashMap::new()).expect("a round");
        assert_eq!(live, vec![1, 2]);
        assert!(moves.is_empty(), "node 3 may still hold a lease from its own term: {moves:?}");
        let (_, moves) = run_after(&a, &grants, after_3, 24_601, &mut HashMap::new()).expect("a round");
        assert_eq!(moves.len(), 1, "{moves:?}");
        assert_eq!((moves[0].0, moves[0].1), (2, Some(3)));

        // Node 3 asked this leader for a lease: it is a live node like any other again, and
        // gets the leader's patience when it falls silent.
        let renewed = HashMap::from([(1, 26_000), (2, 26_000), (3, 21_000)]);
        let (live, moves) = run_after(&a, &renewed, after_3, 25_601, &mut HashMap::new()).expect("a round");
        assert_eq!(live, vec![1, 2, 3]);
        assert!(moves.is_empty(), "{moves:?}");
        let (_, moves) = run_after(&a, &renewed, after_3, 29_001, &mut HashMap::new()).expect("a round");
        assert_eq!(moves.len(), 1, "{moves:?}");
    }

    #[test]
    fn a_live_owner_is_revoked_first_and_its_shard_given_away_after_the_wait() {
        // Node 3 joined: node 1 owns everything and must give some away.
        let a = owned(&[Some(1), Some(1), Some(1)]);
        let grants = HashMap::from([(1, 9_000), (2, 9_000), (3, 9_000)]);
        let mut revoked = HashMap::new();
        let (_, moves) = run(&a, &grants, 0, 10_000, &mut revoked).expect("a round");
        assert!(!moves.is_empty() && moves.iter().all(|(_, from, to)| *from == Some(1) && to.is_none()), "{moves:?}");
        // Committed: the revoked shards have no owner, at a higher epoch.
        let mut after = a.clone();
        for (shard, _, _) in &moves {
            after.owners[*shard as usize] = ShardOwner { node: None, epoch: 2 };
        }
        let grants = HashMap::from([(1, 14_000), (2, 14_000), (3, 14_000)]);
        let (_, early) = run(&after, &grants, 0, 14_600, &mut revoked).expect("a round");
        assert!(
            early.iter().all(|(s, _, _)| !moves.iter().any(|(m, _, _)| m == s)),
            "given before the wait: {early:?}"
        );
        let (_, late) = run(&after, &grants, 0, 14_601, &mut revoked).expect("a round");
        assert_eq!(late.len(), moves.len(), "{late:?}");
        assert!(late.iter().all(|(_, from, to)| from.is_none() && to.is_some_and(|n| n != 1)), "{late:?}");
    }
}
