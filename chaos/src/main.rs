//! The `raftcron-chaos` command: parses flags into a [`Config`], runs the suite (Ctrl-C stops
//! it and kills every node), prints the summary table and exits 0 (pass), 1 (fail), 2
//! (invalid) or 3 (could not run).
//!
//! With `--netns` it first checks that it can (root, `ip`, `nft`; else exit 3 with one line),
//! then hands over to [`raftcron_chaos::netns::supervise`], which creates the namespaces and
//! runs this same command again inside the hub namespace with the hidden `--netns-inner`.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use raftcron_chaos::netns::Layout;
use raftcron_chaos::{Config, FaultKind, NetworkBackend, Profile, Timing};

/// Seeded fault injection on real raftcron processes.
#[derive(Debug, Parser)]
#[command(name = "raftcron-chaos", version)]
struct Args {
    /// Seed of every random choice (fault plan, targets, workload); default: from the clock.
    #[arg(long)]
    seed: Option<u64>,
    /// Seconds of fault injection (setup, settling and the checks come on top).
    #[arg(long, default_value_t = 120)]
    duration: u64,
    /// Cluster size, 3 to 5.
    #[arg(long, default_value_t = 3)]
    nodes: u64,
    /// Faults: groups kill, pause, partition, net, membership, clock, all, none, or kinds such as
    /// kill-leader, isolate-follower, bridge, one-way, delay, loss, clock-jump.
    #[arg(long, default_value = "kill,pause,partition,net,membership,clock")]
    faults: String,
    /// Directory for the report, the picture, node logs and data dirs.
    #[arg(long)]
    out: Option<PathBuf>,
    /// The raftcron binary (default: RAFTCRON_BIN, then the usual target dirs).
    #[arg(long)]
    bin: Option<PathBuf>,
    /// Workloads besides firing and job writes: `keys` (API keys: create, use, revoke).
    #[arg(long, value_delimiter = ',', default_value = "keys")]
    workload: Vec<String>,
    /// Shorthand for leaving `keys` out of --workload.
    #[arg(long)]
    no_keys: bool,
    /// Jobs firing every second.
    #[arg(long, default_value_t = Profile::default().every_second_jobs)]
    every_second_jobs: u32,
    /// Jobs firing every 2-10 seconds.
    #[arg(long, default_value_t = Profile::default().periodic_jobs)]
    periodic_jobs: u32,
    /// Concurrent job writers per node.
    #[arg(long, default_value_t = Profile::default().writers_per_node)]
    writers_per_node: u32,
    /// List, instead of failing on, duplicates whose claimant was cut off (a partition, or loss
    /// on every link) while its lease was still valid: the re-send across a cut that
    /// docs/design/firing.md names; a strict run without it fails on them.
    #[arg(long)]
    excuse_partition_resends: bool,
    /// Form the cluster with this firing lease (`raftcron serve --lease-ms`); at least twice
    /// the election timeout.
    #[arg(long, default_value_t = Timing::default().lease_ms)]
    lease_ms: i64,
    /// The nodes' minimum election timeout; their heartbeat is a fifth of it.
    #[arg(long, default_value_t = Timing::default().election_timeout_ms)]
    election_timeout_ms: u64,
    /// Keep the node data dirs after the run.
    #[arg(long)]
    keep_data: bool,
    /// No progress line.
    #[arg(long)]
    quiet: bool,
    /// Run the nodes in network namespaces created for the run and make partitions with
    /// nftables (needs root and the ip and nft commands); delay and loss stay on the proxy.
    #[arg(long)]
    netns: bool,
    /// Internal: this process is the controller inside the hub namespace of the `--netns` run
    /// whose namespaces start with this prefix.
    #[arg(long, hide = true, requires = "netns")]
    netns_inner: Option<String>,
}

fn config(a: Args) -> Result<Config, String> {
    let faults = FaultKind::parse_list(&a.faults).map_err(|e| e.to_string())?;
    let seed = a.seed.unwrap_or_else(|| raftcron_chaos::clock::now_ms() as u64 % 1_000_000);
    let bin = match a.bin.or_else(raftcron_chaos::default_binary) {
        Some(b) if b.is_file() => b,
        Some(b) => return Err(format!("the raftcron binary {} does not exist", b.display())),
        None => {
            return Err("no raftcron binary found: pass --bin, set RAFTCRON_BIN, or build it with \
                        `cargo build -p raftcron-node --bin raftcron`"
                .into())
        }
    };
    let keys = !a.no_keys && a.workload.iter().any(|w| w == "keys");
    if let Some(w) = a.workload.iter().find(|w| !matches!(w.as_str(), "keys" | "jobs" | "")) {
        return Err(format!("unknown workload {w:?}: use keys"));
    }
    let network = match &a.netns_inner {
        Some(prefix) => {
            Layout::from_prefix(prefix, a.nodes)
                .ok_or_else(|| format!("--netns-inner {prefix:?}: not a run prefix"))?;
            NetworkBackend::Netns { prefix: prefix.clone() }
        }
        None => NetworkBackend::Proxy,
    };
    let cfg = Config {
        seed,
        duration: Duration::from_secs(a.duration),
        nodes: a.nodes,
        faults,
        out: a.out.unwrap_or_else(|| PathBuf::from(format!("target/chaos/seed-{seed}"))),
        bin,
        keys_workload: keys,
        keep_data: a.keep_data,
        excuse_partition_resends: a.excuse_partition_resends,
        profile: Profile {
            every_second_jobs: a.every_second_jobs,
            periodic_jobs: a.periodic_jobs,
            writers_per_node: a.writers_per_node,
            ..Profile::default()
        },
        timing: Timing::with(a.lease_ms, a.election_timeout_ms),
        progress: !a.quiet,
        network,
    };
    cfg.validate().map_err(|e| e.to_string())?;
    Ok(cfg)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let supervise = args.netns && args.netns_inner.is_none();
    if supervise {
        if let Err(needs) = raftcron_chaos::netns::preflight() {
            eprintln!("raftcron-chaos: {needs}");
            return ExitCode::from(3);
        }
    }
    let seed_given = args.seed.is_some();
    let cfg = match config(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("raftcron-chaos: {e}");
            return ExitCode::from(3);
        }
    };
    if supervise {
        // The same arguments inside the hub, with the seed fixed (the default comes from the clock).
        let mut inner: Vec<OsString> = std::env::args_os().skip(1).collect();
        if !seed_given {
            inner.extend([OsString::from("--seed"), OsString::from(cfg.seed.to_string())]);
        }
        eprintln!("raftcron-chaos: seed {} -> {} (network namespaces)", cfg.seed, cfg.out.display());
        return raftcron_chaos::netns::supervise::supervise(inner, cfg.nodes, cfg.duration);
    }
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("raftcron-chaos: cannot start the runtime: {e}");
            return ExitCode::from(3);
        }
    };
    eprintln!("raftcron-chaos: seed {} -> {}", cfg.seed, cfg.out.display());
    let repro = cfg.repro_command();
    let out = cfg.out.clone();
    let result = rt.block_on(async move {
        // SIGTERM (a supervisor, `kill`) stops the run like Ctrl-C: the nodes must not outlive it.
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            r = raftcron_chaos::run(cfg) => Some(r),
            _ = tokio::signal::ctrl_c() => None,
            () = terminate => None,
        }
    });
    // Dropping the run future above killed every node; end the runtime's leftover tasks.
    rt.shutdown_timeout(Duration::from_secs(2));
    match result {
        Some(Ok(report)) => {
            println!("{}", raftcron_chaos::report::table(&report));
            println!("report: {}  picture: {}", out.join("report.json").display(), out.join("timeline.svg").display());
            ExitCode::from(report.verdict.exit_code() as u8)
        }
        Some(Err(e)) => {
            eprintln!("raftcron-chaos: the run could not complete: {e:#}\nreproduce with:\n  {repro}");
            ExitCode::from(3)
        }
        None => {
            eprintln!("raftcron-chaos: interrupted (SIGINT or SIGTERM); every node was killed (INVALID run)");
            ExitCode::from(2)
        }
    }
}
