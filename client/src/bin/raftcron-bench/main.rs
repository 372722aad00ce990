//! `raftcron-bench`: the load generator and measurement tool of raftcron (docs/benchmarks.md).
//!
//! It talks to a cluster over the public API only, through the library's typed [`Client`]
//! (one per node, so load can be aimed), and either attaches to a running cluster or starts a
//! local one of real `raftcron serve` processes (`local`), which it always stops.
//!
//! Module map: `args` (clap), `nodes` (the cluster under measurement), `local` (starting and
//! killing node processes), `load` (the closed-loop driver), `hist` (HDR histograms), `sink`
//! (the HTTP server fires land on), `slots` (duplicates and misses), `procfs` (CPU, RSS, sizes),
//! `report` (table, JSON, markdown), `progress`, and one module per scenario group (`api`,
//! `fire`, `failover`, `scale`). Timings are printed and written, never asserted.
//!
//! [`Client`]: raftcron_client::Client

mod api;
mod args;
mod failover;
mod fire;
mod hist;
mod load;
mod local;
mod nodes;
mod procfs;
mod progress;
mod report;
mod scale;
mod sink;
mod slots;

use std::io::BufRead;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;

use args::{Aim, Cli, Command, CreateArgs, FailoverArgs, FireArgs, Pattern, ReadArgs, Scenario};
use local::LocalCluster;
use nodes::Nodes;
use progress::note;
use report::{Report, Row};

/// Concurrency of the tool's own bulk creates (seeding, fire jobs).
pub const CREATE_CONCURRENCY: usize = 64;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            note(&format!("error: starting the runtime: {e}"));
            return ExitCode::from(1);
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            note(&format!("error: {e:#}"));
            ExitCode::from(1)
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    let mut report = Report {
        tool: format!("raftcron-bench {}", env!("CARGO_PKG_VERSION")),
        started_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        machine: report::Machine::probe(),
        cluster: if cli.target.bin.is_some() { "local" } else { "attached" }.into(),
        binary: cli.target.bin.as_ref().map(|b| b.display().to_string()),
        nodes: if cli.target.bin.is_some() { cli.target.nodes } else { cli.target.urls.len() as u64 },
        command: std::env::args().skip(1).collect::<Vec<_>>().join(" "),
        rows: Vec::new(),
    };
    let result = tokio::select! {
        r = scenarios(&cli, &mut report.rows) => r,
        r = interrupted() => r.and(Err(anyhow!("interrupted: every process the tool started was stopped"))),
    };
    if !report.rows.is_empty() {
        println!("{}", report::table(&report.rows));
    }
    if let Some(path) = &cli.output.json {
        write(path, &serde_json::to_string_pretty(&report)?)?;
    }
    if let Some(path) = &cli.output.markdown {
        write(path, &report::markdown(&report))?;
    }
    result
}

fn write(path: &std::path::Path, text: &str) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    note(&format!("wrote {}", path.display()));
    Ok(())
}

/// SIGINT or SIGTERM.
async fn interrupted() -> Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    Ok(())
}

/// Prints the last row as it is measured (the whole table comes at the end).
pub fn print_last(rows: &[Row]) {
    if let Some(last) = rows.last() {
        let t = report::table(std::slice::from_ref(last));
        for line in t.lines().skip(1) {
            note(&format!("  = {line}"));
        }
    }
}

/// The cluster to measure: a fresh local one (with --bin) or the attached one.
async fn open(cli: &Cli) -> Result<(Nodes, Option<LocalCluster>)> {
    let t = &cli.target;
    if let Some(bin) = &t.bin {
        let c = LocalCluster::start(bin, t.nodes, &t.node_args, t.node_log.as_deref()).await?;
        return Ok((Nodes::of_local(&c), Some(c)));
    }
    if t.urls.is_empty() {
        bail!("give --bin PATH (a local cluster) or --url URL and --api-key KEY (a running one)");
    }
    let key = match (&t.api_key, &t.api_key_file) {
        (Some(k), _) => k.trim().to_string(),
        (None, Some(path)) => {
            let f = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
            let mut line = String::new();
            std::io::BufReader::new(std::io::Read::take(f, 4096)).read_line(&mut line)?;
            line.trim().to_string()
        }
        (None, None) => bail!("an attached cluster needs --api-key or --api-key-file"),
    };
    let urls = t.urls.iter().map(|u| if u.contains("://") { u.clone() } else { format!("http://{u}") }).collect();
    let pids = (0..t.urls.len()).map(|i| t.pids.get(i).copied()).collect();
    Ok((Nodes { urls, key, pids }, None))
}

fn close(local: Option<LocalCluster>, keep: bool) {
    if let Some(c) = local {
        c.stop(keep);
    }
}

fn local_only(cli: &Cli, what: &str) -> Result<std::path::PathBuf> {
    cli.target
        .bin
        .clone()
        .ok_or_else(|| anyhow!("{what} kills and restarts nodes: it needs --bin PATH (a local cluster)"))
}

async fn scenarios(cli: &Cli, rows: &mut Vec<Row>) -> Result<()> {
    let d = Duration::from_secs(cli.output.duration);
    match &cli.command {
        Command::Create(a) => create(cli, a, d, rows).await,
        Command::Get(a) => reads(cli, api::Read::Get, a, d, rows).await,
        Command::List(a) => reads(cli, api::Read::List, a, d, rows).await,
        Command::Fire(a) => fire(cli, a, rows).await,
        Command::Failover(a) => failover(cli, a, rows).await,
        Command::Scale(a) => {
            for &jobs in &a.jobs {
                scale(cli, jobs, a.concurrency, rows).await?;
            }
            Ok(())
        }
        Command::All(a) => {
            let run = |s: Scenario| !a.skip.contains(&s);
            let local = cli.target.bin.is_some();
            if run(Scenario::Create) {
                let a = CreateArgs { concurrency: vec![1, 16, 64, 256], aim: Aim::Both };
                create(cli, &a, d, rows).await?;
            }
            let r = ReadArgs { concurrency: vec![64], jobs: 1000 };
            if run(Scenario::Get) {
                reads(cli, api::Read::Get, &r, d, rows).await?;
            }
            if run(Scenario::List) {
                reads(cli, api::Read::List, &r, d, rows).await?;
            }
            if run(Scenario::Fire) {
                let f = FireArgs {
                    rate: vec![1000, 5000],
                    pattern: vec![Pattern::Aligned, Pattern::Spread],
                    spread_period: 5,
                    window: 20,
                    no_baseline: false,
                };
                fire(cli, &f, rows).await?;
            }
            if run(Scenario::Failover) && local {
                let f = FailoverArgs { rounds: a.failover_rounds, fire_jobs: 256, writers: 4, settle: 5 };
                failover(cli, &f, rows).await?;
            }
            if run(Scenario::Scale) && local {
                for &jobs in &a.scale_jobs {
                    scale(cli, jobs, 64, rows).await?;
                }
            }
            if !local {
                note("failover and scale need a local cluster (--bin); they were left out");
            }
            Ok(())
        }
        Command::Serve(a) => serve(cli, a).await,
    }
}

async fn create(cli: &Cli, a: &CreateArgs, d: Duration, rows: &mut Vec<Row>) -> Result<()> {
    let (nodes, local) = open(cli).await?;
    let r = api::create(&nodes, a, d, rows).await;
    close(local, cli.target.keep);
    r
}

async fn reads(cli: &Cli, what: api::Read, a: &ReadArgs, d: Duration, rows: &mut Vec<Row>) -> Result<()> {
    let (nodes, local) = open(cli).await?;
    let r = api::reads(&nodes, what, a, d, rows).await;
    close(local, cli.target.keep);
    r
}

/// Each case on a fresh local cluster (or the attached one, cleaned up after), each next to its
/// baseline.
async fn fire(cli: &Cli, a: &FireArgs, rows: &mut Vec<Row>) -> Result<()> {
    if a.spread_period == 0 || 60 % a.spread_period != 0 {
        bail!("--spread-period must divide 60 (got {})", a.spread_period);
    }
    let sink = sink::Sink::start().await?;
    for &rate in &a.rate {
        for &pattern in &a.pattern {
            let case = fire::Case { rate, pattern, period: a.spread_period, window_s: a.window };
            if !a.no_baseline {
                rows.push(fire::baseline(&sink, case).await?);
                print_last(rows);
                rows.push(fire::floor(&sink, case).await?);
                print_last(rows);
            }
            let (nodes, local) = open(cli).await?;
            let r = fire::cluster_case(&nodes, &sink, case, local.is_none()).await;
            close(local, cli.target.keep);
            rows.push(r?);
            print_last(rows);
        }
    }
    Ok(())
}

async fn failover(cli: &Cli, a: &FailoverArgs, rows: &mut Vec<Row>) -> Result<()> {
    let bin = local_only(cli, "failover")?;
    let sink = sink::Sink::start().await?;
    let mut c =
        LocalCluster::start(&bin, cli.target.nodes, &cli.target.node_args, cli.target.node_log.as_deref()).await?;
    let r = failover::run(&mut c, &sink, a, rows).await;
    c.stop(cli.target.keep);
    r
}

async fn scale(cli: &Cli, jobs: u64, concurrency: usize, rows: &mut Vec<Row>) -> Result<()> {
    let bin = local_only(cli, "scale")?;
    let sink = sink::Sink::start().await?;
    let mut c =
        LocalCluster::start(&bin, cli.target.nodes, &cli.target.node_args, cli.target.node_log.as_deref()).await?;
    let r = scale::run(&mut c, &sink, jobs, concurrency, rows).await;
    c.stop(cli.target.keep);
    r
}

async fn serve(cli: &Cli, a: &args::ServeArgs) -> Result<()> {
    let bin = local_only(cli, "serve")?;
    let c = LocalCluster::start(&bin, cli.target.nodes, &cli.target.node_args, cli.target.node_log.as_deref()).await?;
    let nodes = Nodes::of_local(&c);
    let pids: Vec<String> = nodes.pids.iter().map(|p| p.map(|p| p.to_string()).unwrap_or_default()).collect();
    let env = format!(
        "RAFTCRON_URL={}\nRAFTCRON_API_KEY={}\nRAFTCRON_PIDS={}\n",
        nodes.urls.join(","),
        nodes.key,
        pids.join(",")
    );
    match &a.env_file {
        Some(path) => write(path, &env)?,
        None => print!("{env}"),
    }
    note(&format!("serving {} until SIGINT/SIGTERM or {} s", nodes.urls.join(" "), a.for_secs));
    let _ = tokio::time::timeout(Duration::from_secs(a.for_secs), interrupted()).await;
    c.stop(cli.target.keep);
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults_follow_the_issue() {
        let cli = Cli::try_parse_from(["raftcron-bench", "--bin", "/x", "create"]).unwrap();
        match cli.command {
            Command::Create(a) => {
                assert_eq!(a.concurrency, vec![1, 16, 64, 256]);
                assert_eq!(a.aim, Aim::Both);
            }
            other => panic!("{other:?}"),
        }
        let cli = Cli::try_parse_from(["raftcron-bench", "fire", "--url", "http://127.0.0.1:1"]).unwrap();
        match cli.command {
            Command::Fire(a) => {
                assert_eq!(a.rate, vec![1000, 5000]);
                assert_eq!(a.pattern, vec![Pattern::Aligned, Pattern::Spread]);
            }
            other => panic!("{other:?}"),
        }
        assert!(Cli::try_parse_from(["raftcron-bench", "--bin", "/x", "--url", "http://a", "get"]).is_err());
    }
}
