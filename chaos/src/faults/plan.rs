//! The fault plan: an ordered list of faults with their parameters, drawn from the seed before
//! the run starts, so the same seed gives the same plan.
//!
//! Every requested kind appears once per round, in a shuffled order, and rounds repeat until the
//! plan is longer than the run can use (the nemesis stops when time runs out). Which node a
//! fault hits ("the leader", "a follower") is resolved when it is injected, with the planned
//! `pick` choosing among candidates. Pure: no I/O.

use rand::seq::SliceRandom;
use rand::Rng;
use serde::Serialize;

use crate::config::{FaultKind, Timing};
use crate::rng;

/// One planned fault.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedFault {
    pub kind: FaultKind,
    /// Quiet time before it.
    pub gap_ms: u64,
    /// Where in the second it starts (kills and pauses close to a whole second catch requests
    /// in flight; network faults start mid-second, when none should be).
    pub start_frac_ms: i64,
    /// How long it holds before the heal.
    pub hold_ms: u64,
    /// Chooses the target among the candidates.
    pub pick: u64,
    /// Kind-specific: delay ms, stall per mille, clock offset ms.
    pub param: i64,
}

impl PlannedFault {
    /// A rough length, to size the plan.
    fn estimate_ms(&self) -> u64 {
        self.gap_ms + self.hold_ms + 8_000
    }
}

/// Draws the plan for `kinds` over `duration_ms`.
pub fn plan(seed: u64, kinds: &[FaultKind], duration_ms: u64, timing: &Timing) -> Vec<PlannedFault> {
    let mut out = Vec::new();
    if kinds.is_empty() {
        return out;
    }
    let mut rng = rng::stream(seed, "fault-plan");
    // Longer than the leader's wait for a silent node, so that shards really move.
    let stop_min = timing.move_wait_ms() as u64 + 1_000;
    let mut total = 0u64;
    for _round in 0..1000 {
        let mut order = kinds.to_vec();
        order.shuffle(&mut rng);
        for kind in order {
            let (hold_lo, hold_hi) = match kind {
                FaultKind::KillLeader | FaultKind::KillFollower => (3_000, 8_000),
                FaultKind::KillAll => (2_000, 5_000),
                FaultKind::PauseLeader | FaultKind::PauseFollower => (stop_min, stop_min + 3_000),
                FaultKind::IsolateLeader
                | FaultKind::IsolateFollower
                | FaultKind::Split
                | FaultKind::Bridge
                | FaultKind::OneWay => (stop_min, stop_min + 6_000),
                FaultKind::Delay | FaultKind::Loss => (8_000, 15_000),
                FaultKind::Membership => (2_000, 5_000),
                FaultKind::ClockJump => (6_000, 12_000),
            };
            let start_frac_ms = if kind.stops_a_process() && kind != FaultKind::Membership {
                // Half of them right after a whole second, when requests are in flight.
                if rng.gen_bool(0.5) {
                    rng.gen_range(0..150)
                } else {
                    rng.gen_range(0..1000)
                }
            } else {
                rng.gen_range(400..600)
            };
            let param = match kind {
                FaultKind::Delay => rng.gen_range(50..=400),
                FaultKind::Loss => rng.gen_range(50..=250),
                FaultKind::ClockJump => {
                    let ms = rng.gen_range(2_000..=60_000);
                    if rng.gen_bool(0.5) {
                        ms
                    } else {
                        -ms
                    }
                }
                _ => 0,
            };
            let f = PlannedFault {
                kind,
                gap_ms: rng.gen_range(2_000..=5_000),
                start_frac_ms,
                hold_ms: rng.gen_range(hold_lo..=hold_hi),
                pick: rng.gen(),
                param,
            };
            total += f.estimate_ms();
            out.push(f);
        }
        if total > duration_ms.saturating_mul(2) + 60_000 {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_plan_and_every_kind_early() {
        let kinds = [FaultKind::KillLeader, FaultKind::PauseFollower, FaultKind::Split];
        let t = Timing::default();
        let a = plan(42, &kinds, 120_000, &t);
        let b = plan(42, &kinds, 120_000, &t);
        assert_eq!(serde_json::to_string(&a).unwrap(), serde_json::to_string(&b).unwrap());
        let first: std::collections::BTreeSet<_> = a.iter().take(3).map(|f| f.kind).collect();
        assert_eq!(first.len(), 3, "each kind once in the first round");
        for f in &a {
            if matches!(f.kind, FaultKind::PauseFollower) {
                assert!(f.hold_ms as i64 > t.move_wait_ms());
            }
        }
        assert!(plan(42, &[], 120_000, &t).is_empty());
        assert_ne!(serde_json::to_string(&plan(43, &kinds, 120_000, &t)).unwrap(), serde_json::to_string(&a).unwrap());
    }
}
