//! Faults: the seeded plan ([`plan`]) and the nemesis that carries it out on the processes and
//! the network (the proxy, or nftables with `--netns`: [`crate::network`]) ([`nemesis`]), plus the convergence probe both the nemesis and the runner use
//! ([`converge`]).

pub mod converge;
pub mod nemesis;
pub mod plan;
