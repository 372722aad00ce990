//! `--netns`: the nodes run in network namespaces the run creates, and node-to-node cuts are
//! nftables rules inside them instead of proxy link modes.
//!
//! Pieces: [`layout`] (names and addresses, pure), [`rules`] (the nftables text, pure),
//! [`topology`] (creating and deleting the namespaces, and removing leftovers of crashed runs),
//! [`links`] (the cuts the nemesis makes during a run), [`supervise`] (the outer process: it
//! owns the namespaces and re-executes the controller inside the hub namespace). This module
//! also holds the preflight (root, `ip`, `nft`) and the bounded command runners.
//!
//! Rules: it creates, changes and deletes only namespaces named by [`layout`] for this run, and
//! never touches the root namespace's interfaces, routes or rules (veth pairs are created
//! directly inside the run's namespaces); it kills only processes inside the run's own
//! namespaces; every command it runs is bounded in time.

pub mod layout;
pub mod links;
pub mod rules;
pub mod supervise;
pub mod topology;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use tokio::io::AsyncWriteExt;

pub use layout::Layout;

/// The one line `--netns` prints when it cannot run here.
pub const NEEDS: &str = "--netns needs root and the ip and nft commands (apt-get install -y iproute2 nftables)";

/// Upper bound of one `ip`/`nft`/`kill` command.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// Fails with [`NEEDS`] unless this process runs as root and `ip` and `nft` are on `PATH`.
pub fn preflight() -> Result<(), &'static str> {
    if effective_uid() != Some(0) || !on_path("ip") || !on_path("nft") {
        return Err(NEEDS);
    }
    Ok(())
}

/// The effective uid, from `/proc/self/status` (this crate has no libc binding).
fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// Whether an executable file called `name` is in a directory of `PATH`.
fn on_path(name: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let Some(path) = std::env::var_os("PATH") else { return false };
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .any(|p| std::fs::metadata(&p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

/// Fails unless this process runs inside the namespace `ns` (compares the namespace files):
/// the controller must never make its changes from the root namespace.
pub fn ensure_inside(ns: &str) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let own = std::fs::metadata("/proc/self/ns/net").context("reading /proc/self/ns/net")?;
    let theirs = std::fs::metadata(Path::new("/run/netns").join(ns))
        .with_context(|| format!("the network namespace {ns} does not exist"))?;
    if (own.dev(), own.ino()) != (theirs.dev(), theirs.ino()) {
        bail!(
            "this process is not inside the network namespace {ns}: --netns-inner is started by raftcron-chaos --netns"
        );
    }
    Ok(())
}

fn describe(program: &str, args: &[&str]) -> String {
    format!("{program} {}", args.join(" "))
}

/// Runs a command (with `input` on its stdin) and returns its stdout; fails on a non-zero exit
/// (with its stderr) or after `timeout` (the command is killed).
pub async fn run(program: &str, args: &[&str], input: Option<&str>, timeout: Duration) -> Result<String> {
    let what = describe(program, args);
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {what}"))?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        tokio::time::timeout(timeout, stdin.write_all(text.as_bytes()))
            .await
            .map_err(|_| anyhow!("{what}: writing its input timed out"))?
            .with_context(|| format!("{what}: writing its input"))?;
    }
    let out = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .map_err(|_| anyhow!("{what}: no answer in {timeout:?}"))?
        .with_context(|| format!("waiting for {what}"))?;
    if !out.status.success() {
        bail!("{what}: {} {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// [`run`] without a runtime (for setup, cleanup and `Drop`): polls the child until `timeout`,
/// then kills it. Meant for commands with small outputs (a pipe buffer's worth).
pub fn run_blocking(program: &str, args: &[&str], input: Option<&str>, timeout: Duration) -> Result<String> {
    use std::io::{Read, Write};
    let what = describe(program, args);
    let mut child = std::process::Command::new(program)
        .args(args)
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {what}"))?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        // Small scripts: they fit the pipe, so this does not block on a stuck reader.
        stdin.write_all(text.as_bytes()).with_context(|| format!("{what}: writing its input"))?;
    }
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(st) = child.try_wait().with_context(|| format!("waiting for {what}"))? {
            break st;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{what}: no answer in {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let (mut out, mut err) = (String::new(), String::new());
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_string(&mut out);
    }
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    if !status.success() {
        bail!("{what}: {status} {}", err.trim());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_lookup_finds_sh_and_not_nonsense() {
        assert!(on_path("sh"));
        assert!(!on_path("no-such-command-raftcron-chaos"));
    }

    #[test]
    fn blocking_runner_reports_output_failure_and_timeout() {
        assert_eq!(run_blocking("cat", &[], Some("hi"), Duration::from_secs(5)).unwrap(), "hi");
        assert!(run_blocking("false", &[], None, Duration::from_secs(5)).is_err());
        let e = run_blocking("sleep", &["5"], None, Duration::from_millis(100)).unwrap_err();
        assert!(format!("{e}").contains("no answer"), "{e}");
    }

    #[tokio::test]
    async fn async_runner_reports_output_failure_and_timeout() {
        assert_eq!(run("cat", &[], Some("hi"), Duration::from_secs(5)).await.unwrap(), "hi");
        assert!(run("false", &[], None, Duration::from_secs(5)).await.is_err());
        assert!(run("sleep", &["5"], None, Duration::from_millis(100)).await.is_err());
    }
}
