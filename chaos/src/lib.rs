//! raftcron-chaos: process-level fault injection for raftcron, with checkers over the recorded
//! history.
//!
//! A run starts N real `raftcron` processes (their own ports and data dirs on 127.0.0.1), a
//! recording HTTP sink, a fault-injecting TCP proxy on every directed node-to-node link, and a
//! workload (firing jobs plus concurrent API clients on every node); a nemesis injects faults
//! drawn from the seed; then checkers judge what was recorded. With `--netns` (root), the nodes
//! run in network namespaces the run creates, the controller in their hub, and partitions are
//! nftables rules ([`netns`]).
//!
//! Map (arrows: "uses"):
//!
//! ```text
//! main -> netns::supervise (--netns: namespaces, re-exec in the hub) -> main (inside the hub)
//! main -> runner -> procs (processes, signals)      proxy (links)      sink (deliveries)
//!                -> faults::{plan, nemesis, converge} -> procs, network, api
//!                   network -> proxy, netns::links (nftables cuts)
//!                -> workload::{firing, writers, keys} -> api, history
//!                -> observe (leaders, shard epochs)   -> api, history
//!                -> collect (final reads)             -> api
//!                -> check::* (pure)                   -> history, sink::Hit, collect
//!                -> judge (facts, verdict, files) -> check, report, svg (pure)
//!                -> progress (the line on the terminal)
//! ```
//!
//! Rules kept everywhere: traffic only to 127.0.0.1, or with `--netns` only inside the run's own
//! namespaces (10.213.0.0/24, never the root namespace); every loop bounded in time and count;
//! every process killed when the run ends, also on error or Ctrl-C; all randomness from the
//! seed ([`rng`]). This crate talks to the node only through its HTTP API and command line, and
//! must never depend on the node crate.

pub mod api;
pub mod check;
pub mod clock;
pub mod collect;
pub mod config;
pub mod faults;
pub mod history;
pub mod judge;
pub mod netns;
pub mod network;
pub mod observe;
pub mod procs;
pub mod progress;
pub mod proxy;
pub mod report;
pub mod rng;
pub mod runner;
pub mod sink;
pub mod svg;
pub mod workload;

pub use config::{Config, FaultKind, NetworkBackend, Profile, Timing};
pub use report::{Report, Verdict};
pub use runner::run;

/// Where the `raftcron` binary is when `--bin` is not given: `RAFTCRON_BIN`, else the debug or
/// release build under `CARGO_TARGET_DIR` or `./target`, else `~/.cache/raftcron-target`.
pub fn default_binary() -> Option<std::path::PathBuf> {
    if let Some(p) = std::env::var_os("RAFTCRON_BIN") {
        return Some(p.into());
    }
    let name = format!("raftcron{}", std::env::consts::EXE_SUFFIX);
    let mut roots: Vec<std::path::PathBuf> = Vec::new();
    if let Some(d) = std::env::var_os("CARGO_TARGET_DIR") {
        roots.push(d.into());
    }
    roots.push("target".into());
    if let Some(home) = std::env::var_os("HOME") {
        roots.push(std::path::PathBuf::from(home).join(".cache").join("raftcron-target"));
    }
    roots.iter().flat_map(|r| [r.join("debug").join(&name), r.join("release").join(&name)]).find(|p| p.is_file())
}
