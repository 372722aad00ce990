//! The command line of `raftcron-bench` (clap): the target, the report files and one
//! subcommand per scenario. This module only describes arguments; it does no I/O.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Load generator and measurements for a raftcron cluster.
///
/// Either attach to a running cluster (--url, --api-key) or let the tool start a local cluster
/// of real `raftcron serve` processes on 127.0.0.1 (--bin); whatever it starts, it stops.
#[derive(Debug, Parser)]
#[command(name = "raftcron-bench", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub target: Target,
    #[command(flatten)]
    pub output: Output,
    #[command(subcommand)]
    pub command: Command,
}

/// Which cluster to measure.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Target")]
pub struct Target {
    /// Base URL of a node of a running cluster (repeat, or comma-separated in the environment).
    #[arg(long = "url", env = "RAFTCRON_URL", value_delimiter = ',', global = true, value_name = "URL")]
    pub urls: Vec<String>,
    /// API key of the running cluster (it needs jobs:write; raise its rate limit first).
    #[arg(long, env = "RAFTCRON_API_KEY", hide_env_values = true, global = true, value_name = "KEY")]
    pub api_key: Option<String>,
    /// File holding the API key (its first line).
    #[arg(long, env = "RAFTCRON_API_KEY_FILE", global = true, value_name = "FILE")]
    pub api_key_file: Option<PathBuf>,
    /// Process ids of the attached nodes, in --url order, for CPU and RSS figures.
    #[arg(long = "pid", value_delimiter = ',', global = true, value_name = "PID")]
    pub pids: Vec<u32>,
    /// Start a local cluster from this `raftcron` binary instead of attaching (a fresh one for
    /// each scenario of `all`).
    #[arg(long, global = true, value_name = "PATH", conflicts_with = "urls")]
    pub bin: Option<PathBuf>,
    /// One more argument for every `raftcron serve` of the local cluster (repeat; write it as
    /// `--node-arg=--election-timeout-ms=150`), to measure a setting other than the default.
    #[arg(long = "node-arg", global = true, allow_hyphen_values = true, value_name = "ARG", requires = "bin")]
    pub node_args: Vec<String>,
    /// The log filter of every node of the local cluster (its `RAFTCRON_LOG`, for example
    /// `info,raftcron_node::scheduler=debug`); with --keep, to read what the nodes did.
    #[arg(long = "node-log", global = true, value_name = "FILTER", requires = "bin")]
    pub node_log: Option<String>,
    /// Nodes of the local cluster.
    #[arg(long, default_value_t = 3, global = true, value_parser = clap::value_parser!(u64).range(1..=7))]
    pub nodes: u64,
    /// Keep the local cluster's temp dir (data and node logs) and print where it is.
    #[arg(long, global = true)]
    pub keep: bool,
}

/// Where the report goes and how long each measured case lasts.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Report")]
pub struct Output {
    /// Also write the report as JSON to this file.
    #[arg(long, global = true, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Also write the report as a markdown table to this file.
    #[arg(long, global = true, value_name = "FILE")]
    pub markdown: Option<PathBuf>,
    /// Seconds each throughput case runs.
    #[arg(long, default_value_t = 10, global = true, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub duration: u64,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Job creates per second at each concurrency, spread over all nodes and aimed at the leader.
    Create(CreateArgs),
    /// `GET /api/v1/jobs/{id}` per second, linearizable and stale, per node and for the cluster.
    Get(ReadArgs),
    /// `GET /api/v1/jobs` (one page of 50) per second, linearizable and stale, per node and cluster.
    List(ReadArgs),
    /// Fire lateness, duplicates and misses at given rates, next to an unreplicated baseline.
    Fire(FireArgs),
    /// Kill -9 the leader under write and fire load; time to the first write and fire (needs --bin).
    Failover(FailoverArgs),
    /// Load many jobs; load rate, RSS, data and snapshot size, restart and catch-up (needs --bin).
    Scale(ScaleArgs),
    /// Every scenario with its defaults, each on a fresh local cluster when --bin is given.
    All(AllArgs),
    /// Start a local cluster, print its URLs and key, and keep it up until SIGINT/SIGTERM or --for.
    Serve(ServeArgs),
}

/// Which node(s) writes are sent to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Aim {
    /// Round robin over every node (followers forward to the leader).
    Spread,
    /// The leader only.
    Leader,
    /// Both, one after the other.
    Both,
}

#[derive(Debug, Clone, Args)]
pub struct CreateArgs {
    /// Concurrent clients (each case runs --duration seconds).
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 16, 64, 256])]
    pub concurrency: Vec<usize>,
    #[arg(long, value_enum, default_value_t = Aim::Both)]
    pub aim: Aim,
}

#[derive(Debug, Clone, Args)]
pub struct ReadArgs {
    /// Concurrent clients.
    #[arg(long, value_delimiter = ',', default_values_t = [64usize])]
    pub concurrency: Vec<usize>,
    /// Jobs created before reading.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub jobs: u64,
}

/// How the fire scenario's schedules fall.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Pattern {
    /// Every job every second (`* * * * * *`): one burst of F fires at each whole second.
    Aligned,
    /// F x P jobs, each every P seconds at its own second, and at its own millisecond offset
    /// inside that second (`+<n>ms`): F fires a second spread evenly over the second.
    Spread,
    /// F x P jobs, each every P seconds at its own second, on the whole second: F fires each
    /// second from different second fields, still one burst at each whole second.
    Seconds,
}

#[derive(Debug, Clone, Args)]
pub struct FireArgs {
    /// Fires per second the cluster is asked to send.
    #[arg(long, value_delimiter = ',', default_values_t = [1000u32, 5000])]
    pub rate: Vec<u32>,
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Pattern::Aligned, Pattern::Spread])]
    pub pattern: Vec<Pattern>,
    /// Period in seconds of the spread pattern's jobs (a divisor of 60).
    #[arg(long, default_value_t = 5)]
    pub spread_period: u32,
    /// Seconds of slots counted (after a warm-up of 3 s).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub window: u64,
    /// Skip the references: the unreplicated baseline and the burst floor.
    #[arg(long)]
    pub no_baseline: bool,
}

#[derive(Debug, Clone, Args)]
pub struct FailoverArgs {
    /// Leader kills (the median is reported).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub rounds: u32,
    /// Every-second jobs firing at the sink during the rounds.
    #[arg(long, default_value_t = 256)]
    pub fire_jobs: u32,
    /// Concurrent writers creating jobs during the rounds.
    #[arg(long, default_value_t = 4)]
    pub writers: usize,
    /// Seconds the cluster runs undisturbed before each kill, once its shards are spread over
    /// every node: the previous round's moves and late slots are over, and the restarted node
    /// is past its first seconds. 0 kills as soon as the shards are spread.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(0..=600))]
    pub settle: u64,
}

#[derive(Debug, Clone, Args)]
pub struct ScaleArgs {
    /// Jobs to load (each size is a separate run).
    #[arg(long, value_delimiter = ',', default_values_t = [100_000u64])]
    pub jobs: Vec<u64>,
    /// Concurrent loaders.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
}

#[derive(Debug, Clone, Args)]
pub struct AllArgs {
    /// Scenarios to leave out.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub skip: Vec<Scenario>,
    /// Jobs of the scale scenario.
    #[arg(long, value_delimiter = ',', default_values_t = [100_000u64])]
    pub scale_jobs: Vec<u64>,
    /// Rounds of the failover scenario.
    #[arg(long, default_value_t = 10)]
    pub failover_rounds: u32,
}

/// A scenario of `all`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    Create,
    Get,
    List,
    Fire,
    Failover,
    Scale,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Stop after this many seconds.
    #[arg(long = "for", default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub for_secs: u64,
    /// Write `RAFTCRON_URL=...` and `RAFTCRON_API_KEY=...` lines (and the pids) to this file.
    #[arg(long, value_name = "FILE")]
    pub env_file: Option<PathBuf>,
}
