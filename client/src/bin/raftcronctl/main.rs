//! `raftcronctl`: the command-line client of a raftcron cluster.
//!
//! Module map: `args` (the clap definitions), `exit` (failures, exit codes and hints), `spec`
//! (job requests from flags and files), `render` and `views` (tables, JSON and YAML), and one
//! module per command group (`jobs`, `access`, `cluster`). Every request goes through the
//! library's failover [`Client`]; this binary adds no retries of its own, so a write whose
//! outcome is unknown is reported (exit 4), never repeated.

mod access;
mod args;
mod cluster;
mod exit;
mod jobs;
mod render;
mod spec;
mod views;

use std::io::BufRead;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser};
use raftcron_client::Client;

use args::{Cli, ClusterCommand, Command, Global};
use exit::{CliError, Exit};
use render::{note, Printer};

/// What every command needs.
pub struct Ctx {
    pub client: Client,
    pub out: Printer,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // --help and --version are not errors.
            return ExitCode::from(if e.use_stderr() { Exit::Usage.code() } else { Exit::Ok.code() });
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            note(&format!("error: {e}"));
            if let Some(hint) = e.hint() {
                note(&format!("hint: {hint}"));
            }
            ExitCode::from(e.exit().code())
        }
    }
}

fn run(cli: Cli) -> Result<(), CliError> {
    let out = Printer { format: cli.global.output };
    if let Command::Completions { shell } = cli.command {
        let mut cmd = Cli::command();
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut cmd, "raftcronctl", &mut buf);
        return render::stdout(String::from_utf8_lossy(&buf).trim_end());
    }
    // The probes of `cluster health` are unauthenticated: they need no key.
    let needs_key = !matches!(cli.command, Command::Cluster(ClusterCommand::Health));
    let client = connect(&cli.global, needs_key)?;
    let ctx = Ctx { client, out };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Local(format!("starting the runtime: {e}")))?;
    rt.block_on(dispatch(&ctx, cli.command))
}

async fn dispatch(ctx: &Ctx, command: Command) -> Result<(), CliError> {
    match command {
        Command::Jobs(c) => jobs::run(ctx, c).await,
        Command::Keys(c) => access::keys(ctx, c).await,
        Command::Tenants(c) => access::tenants(ctx, c).await,
        Command::Audit(paging) => access::audit(ctx, paging).await,
        Command::Cluster(c) => cluster::run(ctx, c).await,
        Command::Snapshot(c) => cluster::snapshot(ctx, c).await,
        Command::Completions { .. } => Ok(()),
    }
}

/// The node URLs: `--url` flags or `RAFTCRON_URL`, `HOST:PORT` taken as `http://HOST:PORT`.
pub fn node_urls(raw: &[String]) -> Result<Vec<String>, CliError> {
    let urls: Vec<String> = raw
        .iter()
        .map(|u| u.trim())
        .filter(|u| !u.is_empty())
        .map(|u| if u.contains("://") { u.to_string() } else { format!("http://{u}") })
        .collect();
    if urls.is_empty() {
        return Err(CliError::usage_hint(
            "no node URL given",
            "pass --url http://HOST:PORT (repeat it for failover) or set RAFTCRON_URL=http://HOST:PORT,http://HOST2:PORT",
        ));
    }
    Ok(urls)
}

/// The API key: `--api-key`, `RAFTCRON_API_KEY`, or the first line of `--api-key-file`.
fn api_key(g: &Global) -> Result<Option<String>, CliError> {
    if let Some(k) = &g.api_key {
        return Ok(Some(k.trim().to_string()).filter(|k| !k.is_empty()));
    }
    let Some(path) = &g.api_key_file else { return Ok(None) };
    let file = std::fs::File::open(path)
        .map_err(|e| CliError::usage(format!("reading the API key file {}: {e}", path.display())))?;
    let mut line = String::new();
    std::io::BufReader::new(file)
        .take_line(&mut line)
        .map_err(|e| CliError::usage(format!("reading the API key file {}: {e}", path.display())))?;
    Ok(Some(line.trim().to_string()).filter(|k| !k.is_empty()))
}

/// Reads one line of at most 4 KiB.
trait TakeLine {
    fn take_line(self, out: &mut String) -> std::io::Result<usize>;
}

impl<R: BufRead> TakeLine for R {
    fn take_line(self, out: &mut String) -> std::io::Result<usize> {
        std::io::Read::take(self, 4096).read_line(out)
    }
}

fn connect(g: &Global, needs_key: bool) -> Result<Client, CliError> {
    let urls = node_urls(&g.urls)?;
    let key = match api_key(g)? {
        Some(k) => k,
        None if !needs_key => "unused".to_string(),
        None => {
            return Err(CliError::usage_hint(
                "no API key given",
                "set RAFTCRON_API_KEY, or pass --api-key-file FILE (or --api-key KEY)",
            ))
        }
    };
    Client::builder(urls, key)
        .timeout(Duration::from_secs(g.timeout))
        .build()
        .map_err(|e| CliError::Client { what: "configuring the client".into(), source: e })
}

#[cfg(test)]
mod tests;
