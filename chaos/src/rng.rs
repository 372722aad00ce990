//! Seeded randomness: every random choice of a run comes from one `--seed`, through a separate
//! stream per purpose (the fault plan, each writer, each proxy link), so adding a draw to one
//! purpose does not shift the others.
//!
//! Must not read any other source of randomness.

use rand::rngs::StdRng;
use rand::SeedableRng;
use sha2::{Digest, Sha256};

/// The random stream named `label` of the run seeded with `seed`.
pub fn stream(seed: u64, label: &str) -> StdRng {
    let mut h = Sha256::new();
    h.update(b"raftcron-chaos-v1");
    h.update(seed.to_be_bytes());
    h.update(label.as_bytes());
    StdRng::from_seed(h.finalize().into())
}

#[cfg(test)]
mod tests {
    use rand::Rng;

    use super::*;

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let a: u64 = stream(7, "plan").gen();
        let b: u64 = stream(7, "plan").gen();
        let c: u64 = stream(7, "writer-1").gen();
        let d: u64 = stream(8, "plan").gen();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, d);
    }
}
