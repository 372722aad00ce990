//! What one run is asked to do: seed, length, cluster size, faults, workload profile and where
//! the node binary and the output live.
//!
//! Owns the fault names accepted on the command line (`--faults kill,pause,partition`) and their
//! expansion into concrete [`FaultKind`]s. It must not start anything: it is plain data plus
//! validation, shared by the binary and the smoke test.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;

/// Every fault the suite can inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// `kill -9` of the leader, restarted on the same data dir after the hold.
    KillLeader,
    /// `kill -9` of a follower, restarted after the hold.
    KillFollower,
    /// `kill -9` of every node at once, all restarted after the hold.
    KillAll,
    /// SIGSTOP of the leader for longer than the election timeout and the shard lease.
    PauseLeader,
    /// SIGSTOP of a follower for longer than the shard lease.
    PauseFollower,
    /// Every link to and from the leader cut.
    IsolateLeader,
    /// Every link to and from one follower cut.
    IsolateFollower,
    /// A majority and a minority that cannot reach each other.
    Split,
    /// Two sides that cannot reach each other and one node that reaches both.
    Bridge,
    /// One node's outgoing links cut; it still hears the others.
    OneWay,
    /// Every node-to-node link delayed.
    Delay,
    /// Every node-to-node link stalls chunks and resets connections at random.
    Loss,
    /// A follower removed from the cluster, wiped, and added back (a snapshot install).
    Membership,
    /// One node's wall clock jumped forward or back, then reset.
    ClockJump,
}

impl FaultKind {
    pub const ALL: [FaultKind; 14] = [
        FaultKind::KillLeader,
        FaultKind::KillFollower,
        FaultKind::KillAll,
        FaultKind::PauseLeader,
        FaultKind::PauseFollower,
        FaultKind::IsolateLeader,
        FaultKind::IsolateFollower,
        FaultKind::Split,
        FaultKind::Bridge,
        FaultKind::OneWay,
        FaultKind::Delay,
        FaultKind::Loss,
        FaultKind::Membership,
        FaultKind::ClockJump,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FaultKind::KillLeader => "kill-leader",
            FaultKind::KillFollower => "kill-follower",
            FaultKind::KillAll => "kill-all",
            FaultKind::PauseLeader => "pause-leader",
            FaultKind::PauseFollower => "pause-follower",
            FaultKind::IsolateLeader => "isolate-leader",
            FaultKind::IsolateFollower => "isolate-follower",
            FaultKind::Split => "split",
            FaultKind::Bridge => "bridge",
            FaultKind::OneWay => "one-way",
            FaultKind::Delay => "delay",
            FaultKind::Loss => "loss",
            FaultKind::Membership => "membership",
            FaultKind::ClockJump => "clock-jump",
        }
    }

    /// Whether the fault cuts node-to-node links (the partition group).
    pub fn is_cut(self) -> bool {
        matches!(
            self,
            FaultKind::IsolateLeader
                | FaultKind::IsolateFollower
                | FaultKind::Split
                | FaultKind::Bridge
                | FaultKind::OneWay
        )
    }

    /// Whether the fault goes through the per-link proxies (needs `--peer-override`): delay and
    /// loss always, cuts unless the run cuts links with nftables (`--netns`).
    pub fn needs_proxy(self, netns: bool) -> bool {
        matches!(self, FaultKind::Delay | FaultKind::Loss) || (self.is_cut() && !netns)
    }

    /// Whether the fault kills or freezes a process (the only faults that excuse a re-send).
    pub fn stops_a_process(self) -> bool {
        matches!(
            self,
            FaultKind::KillLeader
                | FaultKind::KillFollower
                | FaultKind::KillAll
                | FaultKind::PauseLeader
                | FaultKind::PauseFollower
                | FaultKind::Membership
        )
    }

    /// Expands one `--faults` word: a group (`kill`, `pause`, `partition`, `net`, `all`) or one
    /// kind by name.
    pub fn expand(word: &str) -> Result<Vec<FaultKind>, ConfigError> {
        use FaultKind::*;
        let kinds = match word {
            "all" => FaultKind::ALL.to_vec(),
            "kill" => vec![KillLeader, KillFollower, KillAll],
            "pause" => vec![PauseLeader, PauseFollower],
            "partition" => vec![IsolateLeader, IsolateFollower, Split, Bridge, OneWay],
            "net" => vec![Delay, Loss],
            "clock" => vec![ClockJump],
            "none" => vec![],
            other => match FaultKind::ALL.iter().find(|k| k.name() == other) {
                Some(k) => vec![*k],
                None => return Err(ConfigError::UnknownFault(other.to_string())),
            },
        };
        Ok(kinds)
    }

    /// Parses a comma-separated `--faults` list into distinct kinds, in the order of [`Self::ALL`].
    pub fn parse_list(list: &str) -> Result<Vec<FaultKind>, ConfigError> {
        let mut out = Vec::new();
        for word in list.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            out.extend(FaultKind::expand(word)?);
        }
        out.sort();
        out.dedup();
        Ok(out)
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for FaultKind {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FaultKind::ALL.iter().find(|k| k.name() == s).copied().ok_or_else(|| ConfigError::UnknownFault(s.into()))
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error(
        "unknown fault {0:?}: use kill, pause, partition, net, membership, clock, all, none or one of \
         kill-leader, kill-follower, kill-all, pause-leader, pause-follower, isolate-leader, \
         isolate-follower, split, bridge, one-way, delay, loss, clock-jump"
    )]
    UnknownFault(String),
    #[error("--nodes must be between 3 and 5, got {0}")]
    Nodes(u64),
    #[error("--duration must be at least {min} s for the faults asked for, got {got} s")]
    Duration { min: u64, got: u64 },
    #[error("the workload profile is empty: at least one firing job is needed")]
    NoJobs,
    #[error("--lease-ms ({lease_ms}) must be at least twice --election-timeout-ms ({election_ms})")]
    Lease { lease_ms: i64, election_ms: u64 },
}

/// How much load the workload puts on the cluster.
#[derive(Debug, Clone, Serialize)]
pub struct Profile {
    /// Jobs firing every second.
    pub every_second_jobs: u32,
    /// Jobs firing every 2, 3, 4, 5, 6 or 10 seconds (the period drawn from the seed).
    pub periodic_jobs: u32,
    /// Concurrent writers (create/update/delete jobs) per node.
    pub writers_per_node: u32,
    /// Concurrent readers per node.
    pub readers_per_node: u32,
    /// Pause between two operations of one writer, in ms (drawn up to twice this).
    pub write_pause_ms: u64,
}

impl Default for Profile {
    fn default() -> Self {
        Profile {
            every_second_jobs: 45,
            periodic_jobs: 36,
            writers_per_node: 2,
            readers_per_node: 1,
            write_pause_ms: 250,
        }
    }
}

/// Node timings, as in the integration tests (a slow machine, debug builds).
#[derive(Debug, Clone, Serialize)]
pub struct Timing {
    pub election_timeout_ms: u64,
    pub heartbeat_ms: u64,
    /// The cluster's firing lease (`--lease-ms` at formation; 4 s by default).
    pub lease_ms: i64,
    /// The leader's safety margin before moving a shard (a quarter of the lease in the node).
    pub lease_margin_ms: i64,
    /// How long the leader lets a silent node keep its shards (the node's `--dead-after-ms`
    /// default, which the suite does not change).
    pub dead_after_ms: i64,
    /// How far ahead slots are claimed (fixed in the node: 2 s).
    pub claim_ahead_ms: i64,
    /// Log entries between snapshots: small, so the log is purged and a re-added node needs one.
    pub snapshot_every: u64,
}

impl Timing {
    /// How long a silent follower keeps its shards: the leader's patience, and never less than
    /// the lease and the margin.
    pub fn move_wait_ms(&self) -> i64 {
        self.dead_after_ms.max(self.lease_ms + self.lease_margin_ms)
    }

    /// The default timings with another lease and election timeout (heartbeat a fifth of it).
    pub fn with(lease_ms: i64, election_timeout_ms: u64) -> Timing {
        Timing {
            election_timeout_ms,
            heartbeat_ms: (election_timeout_ms / 5).max(1),
            lease_ms,
            lease_margin_ms: lease_ms / 4,
            ..Timing::default()
        }
    }
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            election_timeout_ms: 1000,
            heartbeat_ms: 200,
            lease_ms: 4000,
            lease_margin_ms: 1000,
            dead_after_ms: 5000,
            claim_ahead_ms: 2000,
            snapshot_every: 2000,
        }
    }
}

/// How the run's node-to-node network is built and faulted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(tag = "backend", rename_all = "snake_case")]
pub enum NetworkBackend {
    /// Every node on 127.0.0.1, every directed link through the fault-injecting proxy (no root).
    #[default]
    Proxy,
    /// `--netns`: every node in its own network namespace, cuts made with nftables inside them,
    /// delay and loss still through the proxy; the controller runs in the hub namespace named by
    /// `prefix` (`rcchaos<pid>`). Needs root.
    Netns { prefix: String },
}

impl NetworkBackend {
    pub fn is_netns(&self) -> bool {
        matches!(self, NetworkBackend::Netns { .. })
    }

    pub fn name(&self) -> &'static str {
        match self {
            NetworkBackend::Proxy => "proxy",
            NetworkBackend::Netns { .. } => "netns",
        }
    }
}

/// One run of the suite.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    pub seed: u64,
    /// How long faults are injected (setup, the quiet tail and the checks come on top).
    pub duration: Duration,
    pub nodes: u64,
    pub faults: Vec<FaultKind>,
    /// Reports, picture, node logs and data dirs go here.
    pub out: PathBuf,
    /// The `raftcron` binary.
    pub bin: PathBuf,
    /// The API key workload (create, use and revoke keys).
    pub keys_workload: bool,
    /// Keep the node data dirs after the run (they are removed otherwise, after the canary scan).
    pub keep_data: bool,
    /// Excuse (list, not fail) a duplicate whose claimant was cut off by a partition with its
    /// lease still valid. Off by default: the documented guarantee names kills and pauses only.
    pub excuse_partition_resends: bool,
    pub profile: Profile,
    pub timing: Timing,
    /// Print the progress line while running.
    pub progress: bool,
    /// The node-to-node network: the proxy on 127.0.0.1, or network namespaces (`--netns`).
    pub network: NetworkBackend,
}

impl Config {
    /// Checks the values that can be checked before anything starts.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(3..=5).contains(&self.nodes) {
            return Err(ConfigError::Nodes(self.nodes));
        }
        if self.profile.every_second_jobs + self.profile.periodic_jobs == 0 {
            return Err(ConfigError::NoJobs);
        }
        if self.timing.lease_ms < 2 * self.timing.election_timeout_ms as i64 {
            return Err(ConfigError::Lease {
                lease_ms: self.timing.lease_ms,
                election_ms: self.timing.election_timeout_ms,
            });
        }
        let min = if self.faults.is_empty() { 10 } else { 30 };
        if self.duration.as_secs() < min {
            return Err(ConfigError::Duration { min, got: self.duration.as_secs() });
        }
        Ok(())
    }

    /// The command line that repeats this run.
    pub fn repro_command(&self) -> String {
        let faults = if self.faults.is_empty() {
            "none".to_string()
        } else {
            self.faults.iter().map(|k| k.name()).collect::<Vec<_>>().join(",")
        };
        let mut cmd = format!(
            "cargo run -p raftcron-chaos -- --seed {} --duration {} --nodes {} --faults {} --bin {} --out {}",
            self.seed,
            self.duration.as_secs(),
            self.nodes,
            faults,
            self.bin.display(),
            self.out.display()
        );
        let p = &self.profile;
        let d = Profile::default();
        if p.every_second_jobs != d.every_second_jobs {
            cmd.push_str(&format!(" --every-second-jobs {}", p.every_second_jobs));
        }
        if p.periodic_jobs != d.periodic_jobs {
            cmd.push_str(&format!(" --periodic-jobs {}", p.periodic_jobs));
        }
        if p.writers_per_node != d.writers_per_node {
            cmd.push_str(&format!(" --writers-per-node {}", p.writers_per_node));
        }
        if !self.keys_workload {
            cmd.push_str(" --no-keys");
        }
        if self.excuse_partition_resends {
            cmd.push_str(" --excuse-partition-resends");
        }
        if self.network.is_netns() {
            cmd.push_str(" --netns");
        }
        let t = Timing::default();
        if self.timing.lease_ms != t.lease_ms {
            cmd.push_str(&format!(" --lease-ms {}", self.timing.lease_ms));
        }
        if self.timing.election_timeout_ms != t.election_timeout_ms {
            cmd.push_str(&format!(" --election-timeout-ms {}", self.timing.election_timeout_ms));
        }
        cmd
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_expand_and_dedup() {
        let k = FaultKind::parse_list("kill,kill-leader, pause").unwrap();
        assert_eq!(
            k,
            vec![
                FaultKind::KillLeader,
                FaultKind::KillFollower,
                FaultKind::KillAll,
                FaultKind::PauseLeader,
                FaultKind::PauseFollower
            ]
        );
        assert_eq!(FaultKind::parse_list("all").unwrap().len(), FaultKind::ALL.len());
        assert!(FaultKind::parse_list("none").unwrap().is_empty());
        assert!(matches!(FaultKind::parse_list("kil"), Err(ConfigError::UnknownFault(_))));
    }

    #[test]
    fn netns_runs_cuts_without_the_proxy_but_not_delay_or_loss() {
        for k in FaultKind::ALL {
            let shaping = matches!(k, FaultKind::Delay | FaultKind::Loss);
            assert_eq!(k.needs_proxy(false), k.is_cut() || shaping, "{k}");
            assert_eq!(k.needs_proxy(true), shaping, "{k}");
        }
        assert_eq!(FaultKind::parse_list("partition").unwrap().iter().filter(|k| k.is_cut()).count(), 5);
    }

    #[test]
    fn names_round_trip() {
        for k in FaultKind::ALL {
            assert_eq!(k.name().parse::<FaultKind>().unwrap(), k);
        }
    }
}
