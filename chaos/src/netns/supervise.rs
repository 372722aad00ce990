//! The outer process of a `--netns` run: removes leftovers of crashed runs, creates this run's
//! namespaces, re-executes the same command inside the hub namespace
//! (`ip netns exec <hub> raftcron-chaos <args> --netns-inner <prefix>`), waits for it, and
//! deletes the namespaces whatever happened (normal end, error, Ctrl-C, SIGTERM).
//!
//! Running the whole controller (sink, clients, observer, nemesis) inside the hub keeps every
//! packet of the run inside namespaces the run created: nothing is routed to or from the root
//! namespace. This module owns that process boundary only; the run itself is the inner
//! process's business. Every wait is bounded: the inner run by its duration plus a generous
//! margin, its shutdown after a signal by `SHUTDOWN`.

use std::ffi::OsString;
use std::process::ExitCode;
use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};

use super::layout::Layout;
use super::topology::{clean_stale, Topology};
use super::{run, COMMAND_TIMEOUT};

/// How long the inner run gets to stop its nodes after SIGINT.
const SHUTDOWN: Duration = Duration::from_secs(60);
/// Beyond the fault duration: setup, settling, checks (a run normally needs 2-3 minutes more).
const MARGIN: Duration = Duration::from_secs(1800);

/// Runs `inner_args` (the original arguments, with the seed made explicit) as the controller
/// inside a fresh hub namespace; returns its exit code, or 3 when the namespaces could not be
/// created or deleted, 2 when interrupted.
pub fn supervise(inner_args: Vec<OsString>, nodes: u64, duration: Duration) -> ExitCode {
    for line in clean_stale() {
        eprintln!("raftcron-chaos: {line}");
    }
    let layout = Layout::for_pid(std::process::id(), nodes);
    let mut topo = match Topology::create(&layout) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("raftcron-chaos: could not set up the network namespaces: {e:#}");
            return ExitCode::from(3);
        }
    };
    eprintln!(
        "raftcron-chaos: network namespaces {} ({}/24, nodes at .1-.{nodes}, controller at .254 in {})",
        topo.namespaces().join(", "),
        layout.node_ip(0),
        layout.hub()
    );
    let code = match run_inner(&layout, inner_args, duration + MARGIN) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("raftcron-chaos: {e:#}");
            3
        }
    };
    match topo.destroy() {
        Ok(gone) => {
            eprintln!("raftcron-chaos: removed the network namespaces {}", gone.join(", "));
            ExitCode::from(code)
        }
        Err(e) => {
            eprintln!("raftcron-chaos: {e:#}");
            ExitCode::from(3)
        }
    }
}

/// Starts the controller in the hub and waits for it; on SIGINT or SIGTERM (or after `bound`)
/// passes SIGINT on, so it stops its nodes, and kills it if it does not end in [`SHUTDOWN`].
fn run_inner(layout: &Layout, mut args: Vec<OsString>, bound: Duration) -> anyhow::Result<u8> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let exe = std::env::current_exe()?;
    args.extend([OsString::from("--netns-inner"), OsString::from(&layout.prefix)]);
    rt.block_on(async move {
        // Registered before the child exists, so no signal falls between the two.
        let mut int = signal(SignalKind::interrupt())?;
        let mut term = signal(SignalKind::terminate())?;
        let mut child = tokio::process::Command::new("ip")
            .args(["netns", "exec", &layout.hub()])
            .arg(&exe)
            .args(&args)
            .kill_on_drop(true)
            .spawn()?;
        let why = tokio::select! {
            st = child.wait() => return Ok(st.map(|s| s.code().map_or(2, |c| c.clamp(0, 255) as u8))?),
            _ = int.recv() => "interrupted",
            _ = term.recv() => "terminated",
            _ = tokio::time::sleep(bound) => "out of time",
        };
        eprintln!("raftcron-chaos: {why}; stopping the run inside {}", layout.hub());
        if let Some(pid) = child.id() {
            let _ = run("kill", &["-INT", &pid.to_string()], None, COMMAND_TIMEOUT).await;
        }
        if tokio::time::timeout(SHUTDOWN, child.wait()).await.is_err() {
            let _ = child.start_kill();
            let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
        }
        Ok(2)
    })
}
