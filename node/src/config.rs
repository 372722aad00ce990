//! Typed configuration: command line, environment and TOML file, merged and validated.
//!
//! Precedence: a flag wins over its environment variable (`RAFTCRON_<FLAG>`), which wins over
//! the `--config` file's key of the same name, which wins over the default. [`ServeArgs::resolve`]
//! reports every problem at once. This module must not start anything.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Deserialize;

use crate::ids::NodeId;
use crate::model::apikey::MIN_ADMIN_KEY_CHARS;
use crate::raft::RaftTuning;

pub const MIN_CLUSTER_SECRET_CHARS: usize = 16;
/// Most `--worker-threads`.
pub const MAX_WORKER_THREADS: usize = 1024;

#[derive(Debug, Parser)]
#[command(name = "raftcron", version, about = "A highly available HTTP cron service replicated with Raft")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one node of a cluster.
    Serve(Box<ServeArgs>),
    /// Run a local cluster of N nodes in this process, for trying raftcron out.
    Dev(DevArgs),
    /// Print a new random master key (32 bytes, base64) for RAFTCRON_MASTER_KEY or a key file.
    Keygen,
    /// Seed the data directory of a new one-node cluster from a backup file, or from the data
    /// directory of a stopped survivor after the quorum was lost (docs/operations.md).
    Restore(RestoreArgs),
}

/// `raftcron restore` flags.
#[derive(Debug, Clone, Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["from", "from_data_dir"])))]
pub struct RestoreArgs {
    /// A snapshot file saved from `GET /api/v1/cluster/snapshot`.
    #[arg(long)]
    pub from: Option<PathBuf>,
    /// The data directory of a stopped node whose state becomes the new cluster's.
    #[arg(long)]
    pub from_data_dir: Option<PathBuf>,
    /// The new node's data directory (must be empty or missing).
    #[arg(long)]
    pub data_dir: PathBuf,
    /// The new node's id; start it with the same `--node-id`.
    #[arg(long)]
    pub node_id: NodeId,
    /// The address other nodes will reach it at, HOST:PORT (its `--advertise`, or `--listen`).
    #[arg(long)]
    pub advertise: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// `raftcron serve` flags. Every one is optional here so the file and defaults can fill in.
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeArgs {
    /// This node's id (1 or more), unique in the cluster.
    #[arg(long, env = "RAFTCRON_NODE_ID")]
    pub node_id: Option<NodeId>,
    /// Address to listen on for the API and node-to-node traffic, HOST:PORT.
    #[arg(long, env = "RAFTCRON_LISTEN")]
    pub listen: Option<String>,
    /// Address other nodes reach this one at (defaults to --listen).
    #[arg(long, env = "RAFTCRON_ADVERTISE")]
    pub advertise: Option<String>,
    /// Directory for the Raft log, state and snapshots.
    #[arg(long, env = "RAFTCRON_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// The first members, `1=HOST:PORT,2=HOST:PORT,...`; the cluster forms once a majority is up.
    #[arg(long, env = "RAFTCRON_INITIAL_CLUSTER")]
    pub initial_cluster: Option<String>,
    /// Shared secret that authenticates node-to-node calls (16 characters or more).
    #[arg(long, env = "RAFTCRON_CLUSTER_SECRET", hide_env_values = true)]
    pub cluster_secret: Option<String>,
    /// The master key that seals job secrets: 32 random bytes, base64 (`raftcron keygen`).
    /// Prefer the environment or --master-key-file to the command line.
    #[arg(long, env = "RAFTCRON_MASTER_KEY", hide_env_values = true)]
    pub master_key: Option<String>,
    /// A file holding the master key in base64 (mode 0600 or stricter).
    #[arg(long, env = "RAFTCRON_MASTER_KEY_FILE")]
    pub master_key_file: Option<PathBuf>,
    /// Older master keys, still able to open what they sealed, during a rotation (repeatable;
    /// comma-separated base64 in RAFTCRON_PREVIOUS_MASTER_KEYS).
    #[arg(
        long = "previous-master-key",
        env = "RAFTCRON_PREVIOUS_MASTER_KEYS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    #[serde(default)]
    pub previous_master_key: Vec<String>,
    /// Files holding older master keys (repeatable).
    #[arg(long = "previous-master-key-file", env = "RAFTCRON_PREVIOUS_MASTER_KEY_FILES", value_delimiter = ',')]
    #[serde(default)]
    pub previous_master_key_file: Vec<PathBuf>,
    /// Allow jobs to target loopback and private addresses (labs and tests only).
    #[arg(long, env = "RAFTCRON_ALLOW_PRIVATE_TARGETS", num_args = 0..=1, default_missing_value = "true")]
    pub allow_private_targets: Option<bool>,
    /// Log format.
    #[arg(long, env = "RAFTCRON_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Raft heartbeat interval in milliseconds (default 50).
    #[arg(long, env = "RAFTCRON_HEARTBEAT_MS")]
    pub heartbeat_ms: Option<u64>,
    /// Minimum Raft election timeout in milliseconds; the maximum is twice it (default 150).
    #[arg(long, env = "RAFTCRON_ELECTION_TIMEOUT_MS")]
    pub election_timeout_ms: Option<u64>,
    /// As the leader, send each new entry (at most 64 KiB) to idle followers while this node's
    /// own log sync runs, so the two syncs overlap (default true; false waits for the local sync
    /// first).
    #[arg(long, env = "RAFTCRON_EAGER_REPLICATION", num_args = 0..=1, default_missing_value = "true")]
    pub eager_replication: Option<bool>,
    /// Commands applied between snapshots (default 100000).
    #[arg(long, env = "RAFTCRON_SNAPSHOT_EVERY")]
    pub snapshot_every: Option<u64>,
    /// Shards of a new cluster; fixed once the cluster formed (default 256).
    #[arg(long, env = "RAFTCRON_SHARDS")]
    pub shards: Option<u32>,
    /// Runs kept per job in a new cluster; fixed once the cluster formed (default 100).
    #[arg(long, env = "RAFTCRON_RUN_HISTORY")]
    pub run_history: Option<u32>,
    /// Firing lease of a new cluster in milliseconds; fixed once the cluster formed (default
    /// 700, or twice the election timeout if that is more). A node sends nothing once it went a
    /// lease without a renewal; a new leader moves the shards of the leader before it 1.25
    /// leases after its election.
    #[arg(long, env = "RAFTCRON_LEASE_MS")]
    pub lease_ms: Option<u32>,
    /// How long a node may go without renewing its lease before this node, as the leader,
    /// takes it for dead and moves its shards, in milliseconds (default 5000, at most 600000;
    /// never less than 1.25 leases). Patience with stalls and network blips: until then a
    /// silent node's slots wait for it rather than being re-sent by another node.
    #[arg(long, env = "RAFTCRON_DEAD_AFTER_MS")]
    pub dead_after_ms: Option<u64>,
    /// A webhook URL that hears about failing and recovered jobs (repeatable; comma-separated in
    /// the environment).
    #[arg(long = "notify-webhook", env = "RAFTCRON_NOTIFY_WEBHOOK", value_delimiter = ',')]
    #[serde(default)]
    pub notify_webhook: Vec<String>,
    /// Serve the API (and node-to-node traffic) over HTTPS with this PEM certificate chain;
    /// plain HTTP is then refused. Needs --tls-key and --peer-ca.
    #[arg(long, env = "RAFTCRON_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, env = "RAFTCRON_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// The CA (PEM) that signed every node's certificate: nodes verify each other with it.
    #[arg(long, env = "RAFTCRON_PEER_CA")]
    pub peer_ca: Option<PathBuf>,
    /// This node's client certificate (PEM, signed by --peer-ca) for mutual TLS between nodes;
    /// with it, `/internal` routes refuse callers without a certificate from --peer-ca.
    #[arg(long, env = "RAFTCRON_PEER_CERT")]
    pub peer_cert: Option<PathBuf>,
    /// The PEM private key of --peer-cert.
    #[arg(long, env = "RAFTCRON_PEER_KEY")]
    pub peer_key: Option<PathBuf>,
    /// A proxy (IP or CIDR) whose `X-Forwarded-For` is believed (repeatable; comma-separated in
    /// the environment). Other peers' forwarded headers are ignored.
    #[arg(long = "trusted-proxy", env = "RAFTCRON_TRUSTED_PROXY", value_delimiter = ',')]
    #[serde(default)]
    pub trusted_proxy: Vec<String>,
    /// Requests a minute per API key on this node, unless the key's tenant sets its own
    /// (default 1000).
    #[arg(long, env = "RAFTCRON_RATE_LIMIT_PER_MINUTE")]
    pub rate_limit_per_minute: Option<u32>,
    /// Failed authentications a minute from one client address before it gets 429s (default 30).
    #[arg(long, env = "RAFTCRON_AUTH_FAILURES_PER_MINUTE")]
    pub auth_failures_per_minute: Option<u32>,
    /// Where this node connects to reach some peers instead of their replicated addresses,
    /// `2=HOST:PORT,3=HOST:PORT` (a fault-injecting proxy in chaos runs). Local to this node.
    #[arg(long, env = "RAFTCRON_PEER_OVERRIDE")]
    pub peer_override: Option<String>,
    /// Shift this node's wall clock by this many milliseconds (drills only; default 0).
    #[arg(long, env = "RAFTCRON_CLOCK_OFFSET_MS", allow_negative_numbers = true)]
    pub clock_offset_ms: Option<i64>,
    /// Serve `PUT /internal/drill/clock` (cluster secret required) to jump this node's wall
    /// clock while it runs (chaos drills only).
    #[arg(long, env = "RAFTCRON_CLOCK_DRILLS", num_args = 0..=1, default_missing_value = "true")]
    pub clock_drills: Option<bool>,
    /// Threads that run this node's requests, Raft and firing (default: one per core). Lower
    /// it when several nodes share one machine's cores, as in a local test cluster: threads of
    /// several nodes competing for the same cores cost more wake-ups than they gain
    /// (docs/benchmarks.md, run 19). RocksDB and log syncs have threads of their own.
    #[arg(long, env = "RAFTCRON_WORKER_THREADS")]
    pub worker_threads: Option<usize>,
    /// A TOML file with any of the keys above (snake_case).
    #[arg(long, env = "RAFTCRON_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
}

/// `raftcron dev` flags.
#[derive(Debug, Clone, Args)]
pub struct DevArgs {
    /// Number of nodes.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=9))]
    pub nodes: u64,
    /// Directory holding each node's data, the dev admin key and cluster secret.
    #[arg(long, default_value = "./raftcron-data")]
    pub data_dir: PathBuf,
    /// Port of node 1; node N listens on port + N - 1.
    #[arg(long, default_value_t = 7001)]
    pub port: u16,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// A fully resolved, valid node configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub node_id: NodeId,
    pub listen: SocketAddr,
    pub advertise: String,
    pub data_dir: PathBuf,
    pub initial_cluster: BTreeMap<NodeId, String>,
    pub cluster_secret: String,
    pub admin_key: Option<String>,
    pub allow_private_targets: bool,
    pub log_format: LogFormat,
    pub tuning: RaftTuning,
    pub notify_webhooks: Vec<String>,
    pub shards: u32,
    pub run_history: u32,
    pub lease_ms: u32,
    /// The leader's patience with a silent node (`--dead-after-ms`).
    pub dead_after: Duration,
    pub peer_overrides: BTreeMap<NodeId, String>,
    /// Seals and opens job secrets.
    pub keyring: std::sync::Arc<crate::crypto::Keyring>,
    /// HTTPS, and mutual TLS between nodes.
    pub tls: Option<TlsSettings>,
    pub trusted_proxies: crate::api::netaddr::TrustedProxies,
    pub rate_limit_per_minute: u32,
    pub auth_failures_per_minute: u32,
    pub clock_offset_ms: i64,
    pub clock_drills: bool,
    /// The async runtime's worker threads; `None`: one per core.
    pub worker_threads: Option<usize>,
}

/// Where the TLS material is.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub peer_ca: PathBuf,
    /// This node's client certificate and key (mutual TLS between nodes).
    pub peer_identity: Option<(PathBuf, PathBuf)>,
}

/// Every problem found, one per line.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n  {}", .0.join("\n  "))]
pub struct ConfigError(pub Vec<String>);

impl ServeArgs {
    /// Fills unset values from `file` (lower precedence).
    fn or_file(self, file: ServeArgs) -> ServeArgs {
        ServeArgs {
            node_id: self.node_id.or(file.node_id),
            listen: self.listen.or(file.listen),
            advertise: self.advertise.or(file.advertise),
            data_dir: self.data_dir.or(file.data_dir),
            initial_cluster: self.initial_cluster.or(file.initial_cluster),
            cluster_secret: self.cluster_secret.or(file.cluster_secret),
            master_key: self.master_key.or(file.master_key),
            master_key_file: self.master_key_file.or(file.master_key_file),
            previous_master_key: if self.previous_master_key.is_empty() {
                file.previous_master_key
            } else {
                self.previous_master_key
            },
            previous_master_key_file: if self.previous_master_key_file.is_empty() {
                file.previous_master_key_file
            } else {
                self.previous_master_key_file
            },
            allow_private_targets: self.allow_private_targets.or(file.allow_private_targets),
            log_format: self.log_format.or(file.log_format),
            heartbeat_ms: self.heartbeat_ms.or(file.heartbeat_ms),
            election_timeout_ms: self.election_timeout_ms.or(file.election_timeout_ms),
            eager_replication: self.eager_replication.or(file.eager_replication),
            snapshot_every: self.snapshot_every.or(file.snapshot_every),
            shards: self.shards.or(file.shards),
            run_history: self.run_history.or(file.run_history),
            lease_ms: self.lease_ms.or(file.lease_ms),
            dead_after_ms: self.dead_after_ms.or(file.dead_after_ms),
            notify_webhook: if self.notify_webhook.is_empty() { file.notify_webhook } else { self.notify_webhook },
            tls_cert: self.tls_cert.or(file.tls_cert),
            tls_key: self.tls_key.or(file.tls_key),
            peer_ca: self.peer_ca.or(file.peer_ca),
            peer_cert: self.peer_cert.or(file.peer_cert),
            peer_key: self.peer_key.or(file.peer_key),
            trusted_proxy: if self.trusted_proxy.is_empty() { file.trusted_proxy } else { self.trusted_proxy },
            rate_limit_per_minute: self.rate_limit_per_minute.or(file.rate_limit_per_minute),
            auth_failures_per_minute: self.auth_failures_per_minute.or(file.auth_failures_per_minute),
            peer_override: self.peer_override.or(file.peer_override),
            clock_offset_ms: self.clock_offset_ms.or(file.clock_offset_ms),
            clock_drills: self.clock_drills.or(file.clock_drills),
            worker_threads: self.worker_threads.or(file.worker_threads),
            config: self.config,
        }
    }

    /// Merges the config file (if any), applies defaults and validates everything.
    /// `admin_key` is `RAFTCRON_ADMIN_KEY`, read by the caller.
    pub fn resolve(self, admin_key: Option<String>) -> Result<Config, ConfigError> {
        let mut problems = Vec::new();
        let args = match &self.config {
            Some(path) => match std::fs::read_to_string(path) {
                Ok(text) => match toml::from_str::<ServeArgs>(&text) {
                    Ok(file) => self.or_file(file),
                    Err(e) => return Err(ConfigError(vec![format!("--config {}: {e}", path.display())])),
                },
                Err(e) => return Err(ConfigError(vec![format!("--config {}: {e}", path.display())])),
            },
            None => self,
        };
        let node_id = match args.node_id {
            Some(0) | None => {
                problems.push("--node-id: required, 1 or more".to_string());
                0
            }
            Some(n) => n,
        };
        let listen = match args.listen.as_deref().map(str::parse::<SocketAddr>) {
            Some(Ok(a)) => Some(a),
            Some(Err(e)) => {
                problems.push(format!("--listen: expected IP:PORT ({e})"));
                None
            }
            None => {
                problems.push("--listen: required, IP:PORT".to_string());
                None
            }
        };
        let data_dir = args.data_dir.clone().unwrap_or_else(|| {
            problems.push("--data-dir: required".to_string());
            PathBuf::new()
        });
        let initial_cluster = match args.initial_cluster.as_deref() {
            None | Some("") => BTreeMap::new(),
            Some(s) => parse_initial_cluster(s).unwrap_or_else(|e| {
                problems.push(format!("--initial-cluster: {e}"));
                BTreeMap::new()
            }),
        };
        if !initial_cluster.is_empty() && node_id != 0 && !initial_cluster.contains_key(&node_id) {
            problems.push(format!("--initial-cluster: does not list this node's id {node_id}"));
        }
        let cluster_secret = args.cluster_secret.clone().unwrap_or_default();
        if cluster_secret.chars().count() < MIN_CLUSTER_SECRET_CHARS {
            problems.push(format!(
                "--cluster-secret (RAFTCRON_CLUSTER_SECRET): required, {MIN_CLUSTER_SECRET_CHARS} characters or more"
            ));
        }
        if let Some(k) = &admin_key {
            if k.chars().count() < MIN_ADMIN_KEY_CHARS || crate::model::apikey::check_shape(k).is_err() {
                problems.push(format!(
                    "RAFTCRON_ADMIN_KEY: must be {MIN_ADMIN_KEY_CHARS} or more printable characters without spaces"
                ));
            }
        }
        let defaults = RaftTuning::default();
        let heartbeat = args.heartbeat_ms.map(Duration::from_millis).unwrap_or(defaults.heartbeat);
        let election = args.election_timeout_ms.map(Duration::from_millis).unwrap_or(defaults.election_timeout);
        if election <= heartbeat * 2 {
            problems.push("--election-timeout-ms: must be more than twice --heartbeat-ms".to_string());
        }
        if heartbeat.is_zero() {
            problems.push("--heartbeat-ms: must be 1 or more".to_string());
        }
        let snapshot_every = args.snapshot_every.unwrap_or(defaults.snapshot_every);
        if snapshot_every < 10 {
            problems.push("--snapshot-every: must be 10 or more".to_string());
        }
        let shards = args.shards.unwrap_or(crate::state::firing::DEFAULT_SHARDS);
        if !(1..=65_536).contains(&shards) {
            problems.push("--shards: must be between 1 and 65536".to_string());
        }
        let run_history = args.run_history.unwrap_or(crate::model::run::RUNS_KEPT);
        if !(10..=10_000).contains(&run_history) {
            problems.push("--run-history: must be between 10 and 10000".to_string());
        }
        use crate::state::firing::{DEFAULT_LEASE_MS, MAX_LEASE_MS, MIN_LEASE_MS};
        // Without `--lease-ms`, a lease that the election timeout allows (see below).
        let twice_election = u32::try_from(election.as_millis() * 2).unwrap_or(u32::MAX);
        let lease_ms = args.lease_ms.unwrap_or(DEFAULT_LEASE_MS.max(twice_election).min(MAX_LEASE_MS));
        if !(MIN_LEASE_MS..=MAX_LEASE_MS).contains(&lease_ms) {
            problems.push(format!("--lease-ms: must be between {MIN_LEASE_MS} and {MAX_LEASE_MS}"));
        } else if lease_ms < twice_election {
            // Each renewal is a quorum round: a lease shorter than two election timeouts would
            // run out in every election.
            problems.push("--lease-ms: must be at least twice --election-timeout-ms".to_string());
        }
        let dead_after_ms = args.dead_after_ms.unwrap_or(crate::scheduler::DEFAULT_DEAD_AFTER_MS);
        if dead_after_ms > 600_000 {
            problems.push("--dead-after-ms: must be at most 600000".to_string());
        }
        for hook in &args.notify_webhook {
            match url::Url::parse(hook) {
                Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {}
                _ => problems.push(format!("--notify-webhook: {hook:?} is not an http(s) URL")),
            }
        }
        let peer_overrides = match args.peer_override.as_deref() {
            None | Some("") => BTreeMap::new(),
            Some(s) => parse_initial_cluster(s).unwrap_or_else(|e| {
                problems.push(format!("--peer-override: {e}"));
                BTreeMap::new()
            }),
        };
        let trusted_proxies =
            crate::api::netaddr::TrustedProxies::parse(args.trusted_proxy.iter()).unwrap_or_else(|e| {
                problems.push(format!("--trusted-proxy: {e}"));
                crate::api::netaddr::TrustedProxies::default()
            });
        let rate_limit_per_minute = args.rate_limit_per_minute.unwrap_or(crate::api::guard::DEFAULT_RATE_PER_MINUTE);
        if !(1..=1_000_000).contains(&rate_limit_per_minute) {
            problems.push("--rate-limit-per-minute: must be between 1 and 1000000".to_string());
        }
        let auth_failures_per_minute =
            args.auth_failures_per_minute.unwrap_or(crate::api::guard::DEFAULT_AUTH_FAILURES_PER_MINUTE);
        if !(1..=1_000_000).contains(&auth_failures_per_minute) {
            problems.push("--auth-failures-per-minute: must be between 1 and 1000000".to_string());
        }
        let clock_offset_ms = args.clock_offset_ms.unwrap_or(0);
        if clock_offset_ms.unsigned_abs() > 86_400_000 {
            problems.push("--clock-offset-ms: at most one day either way".to_string());
        }
        if let Some(n) = args.worker_threads {
            if !(1..=MAX_WORKER_THREADS).contains(&n) {
                problems.push(format!("--worker-threads: must be between 1 and {MAX_WORKER_THREADS}"));
            }
        }
        let keyring = master_keys(&args, &mut problems);
        let tls = tls_settings(&args, &mut problems);
        let (Some(listen), Some(keyring), true) = (listen, keyring, problems.is_empty()) else {
            return Err(ConfigError(problems));
        };
        let advertise = args.advertise.clone().unwrap_or_else(|| listen.to_string());
        Ok(Config {
            node_id,
            listen,
            advertise,
            data_dir,
            initial_cluster,
            cluster_secret,
            admin_key,
            allow_private_targets: args.allow_private_targets.unwrap_or(false),
            log_format: args.log_format.unwrap_or_default(),
            notify_webhooks: args.notify_webhook.clone(),
            shards,
            run_history,
            lease_ms,
            dead_after: Duration::from_millis(dead_after_ms),
            peer_overrides,
            keyring: std::sync::Arc::new(keyring),
            tls,
            trusted_proxies,
            rate_limit_per_minute,
            auth_failures_per_minute,
            clock_offset_ms,
            clock_drills: args.clock_drills.unwrap_or(false),
            worker_threads: args.worker_threads,
            tuning: RaftTuning {
                heartbeat,
                election_timeout: election,
                eager_replication: args.eager_replication.unwrap_or(defaults.eager_replication),
                snapshot_every,
                // Keep a tenth of a snapshot interval of log behind each snapshot (at most the default).
                keep_after_snapshot: (snapshot_every / 10).clamp(1, defaults.keep_after_snapshot),
            },
        })
    }
}

/// The TLS settings, checked for completeness (the files are read at start).
fn tls_settings(args: &ServeArgs, problems: &mut Vec<String>) -> Option<TlsSettings> {
    let (cert, key) = match (&args.tls_cert, &args.tls_key) {
        (Some(c), Some(k)) => (c.clone(), k.clone()),
        (None, None) => {
            if args.peer_ca.is_some() || args.peer_cert.is_some() || args.peer_key.is_some() {
                problems.push("--peer-ca, --peer-cert, --peer-key: need --tls-cert and --tls-key".to_string());
            }
            return None;
        }
        _ => {
            problems.push("--tls-cert and --tls-key: give both or neither".to_string());
            return None;
        }
    };
    let Some(peer_ca) = args.peer_ca.clone() else {
        problems
            .push("--peer-ca: required with --tls-cert: nodes call each other over HTTPS and verify with it".into());
        return None;
    };
    let peer_identity = match (&args.peer_cert, &args.peer_key) {
        (Some(c), Some(k)) => Some((c.clone(), k.clone())),
        (None, None) => None,
        _ => {
            problems.push("--peer-cert and --peer-key: give both or neither".to_string());
            return None;
        }
    };
    Some(TlsSettings { cert, key, peer_ca, peer_identity })
}

/// The keyring from the master key settings; every problem goes to `problems`.
fn master_keys(args: &ServeArgs, problems: &mut Vec<String>) -> Option<crate::crypto::Keyring> {
    use crate::crypto::MasterKey;
    let current = match (&args.master_key, &args.master_key_file) {
        (Some(_), Some(_)) => {
            problems.push("--master-key and --master-key-file: give one, not both".to_string());
            None
        }
        (Some(text), None) => {
            MasterKey::from_base64_named("RAFTCRON_MASTER_KEY", text).map_err(|e| problems.push(e.to_string())).ok()
        }
        (None, Some(path)) => {
            MasterKey::from_file(path).map_err(|e| problems.push(format!("--master-key-file: {e}"))).ok()
        }
        (None, None) => {
            problems.push(
                "RAFTCRON_MASTER_KEY (or --master-key-file): required; it seals job secrets at rest. \
                 Make one with `raftcron keygen` and give every node the same"
                    .to_string(),
            );
            None
        }
    };
    let mut previous = Vec::new();
    for text in &args.previous_master_key {
        match MasterKey::from_base64_named("RAFTCRON_PREVIOUS_MASTER_KEYS", text) {
            Ok(k) => previous.push(k),
            Err(e) => problems.push(e.to_string()),
        }
    }
    for path in &args.previous_master_key_file {
        match MasterKey::from_file(path) {
            Ok(k) => previous.push(k),
            Err(e) => problems.push(format!("--previous-master-key-file: {e}")),
        }
    }
    current.map(|c| crate::crypto::Keyring::new(c, previous))
}

/// Parses `1=HOST:PORT,2=HOST:PORT`.
pub fn parse_initial_cluster(s: &str) -> Result<BTreeMap<NodeId, String>, String> {
    let mut out = BTreeMap::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addr) = part.split_once('=').ok_or_else(|| format!("{part:?} is not ID=HOST:PORT"))?;
        let id: NodeId = id.trim().parse().map_err(|_| format!("{id:?} is not a node id"))?;
        if id == 0 {
            return Err("node ids start at 1".into());
        }
        let addr = addr.trim();
        match addr.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {}
            _ => return Err(format!("{addr:?} is not HOST:PORT")),
        }
        if out.insert(id, addr.to_string()).is_some() {
            return Err(format!("node {id} is listed twice"));
        }
    }
    if out.is_empty() {
        return Err("no members".into());
    }
    Ok(out)
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
