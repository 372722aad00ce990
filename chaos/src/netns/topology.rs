//! The namespaces of one `--netns` run: creating them (hub with a bridge, one namespace per
//! node joined to it by a veth pair, the nftables table in each node), deleting them, and
//! removing what crashed earlier runs left behind.
//!
//! Owns the namespaces' lifetime and nothing else: it does not start nodes or make cuts. Every
//! veth is created inside the hub namespace with its peer placed straight into the node's, so the
//! root namespace never holds an interface of the run, not even for a moment; deleting a
//! namespace deletes its interfaces and nftables tables with it. A [`Topology`] deletes what it
//! created when it drops (error, panic), after killing the processes still inside those
//! namespaces (they can only be the run's own). Every command is bounded by
//! [`super::COMMAND_TIMEOUT`], every wait by a deadline.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::layout::{Layout, BRIDGE, NODE_IF};
use super::{rules, run_blocking, COMMAND_TIMEOUT};

/// How long processes left inside the namespaces get to die after SIGKILL.
const DRAIN: Duration = Duration::from_secs(5);

/// The namespaces one run created; deleted on [`Topology::destroy`] or drop.
#[derive(Debug)]
pub struct Topology {
    pub layout: Layout,
    /// Namespaces created so far, in creation order.
    created: Vec<String>,
}

fn ip(args: &[&str]) -> Result<String> {
    run_blocking("ip", args, None, COMMAND_TIMEOUT)
}

/// Names in `ip netns list` (its first column).
pub fn list_namespaces() -> Result<Vec<String>> {
    Ok(ip(&["netns", "list"])?.lines().filter_map(|l| l.split_whitespace().next()).map(str::to_string).collect())
}

/// Pids of the processes inside namespace `ns`.
fn pids_in(ns: &str) -> Result<Vec<u32>> {
    Ok(ip(&["netns", "pids", ns])?.split_whitespace().filter_map(|p| p.parse().ok()).collect())
}

impl Topology {
    /// Creates every namespace, interface, address and nftables table of `layout`. On error,
    /// what was already created is deleted before returning.
    pub fn create(layout: &Layout) -> Result<Topology> {
        let mut t = Topology { layout: layout.clone(), created: Vec::new() };
        let hub = layout.hub();
        for ns in std::iter::once(hub.clone()).chain(layout.ids().map(|i| layout.node_ns(i))) {
            ip(&["netns", "add", &ns]).with_context(|| format!("creating the network namespace {ns}"))?;
            t.created.push(ns);
        }
        let hub_cidr = format!("{}/{}", layout.hub_ip(), layout.prefix_len());
        ip(&["-n", &hub, "link", "set", "lo", "up"])?;
        ip(&["-n", &hub, "link", "add", BRIDGE, "type", "bridge"])?;
        ip(&["-n", &hub, "addr", "add", &hub_cidr, "dev", BRIDGE])?;
        ip(&["-n", &hub, "link", "set", BRIDGE, "up"])?;
        for id in layout.ids() {
            let ns = layout.node_ns(id);
            let hub_if = Layout::hub_if(id);
            let cidr = format!("{}/{}", layout.node_ip(id), layout.prefix_len());
            ip(&["-n", &hub, "link", "add", &hub_if, "type", "veth", "peer", "name", NODE_IF, "netns", &ns])
                .with_context(|| format!("joining {ns} to the bridge"))?;
            ip(&["-n", &hub, "link", "set", &hub_if, "master", BRIDGE])?;
            ip(&["-n", &hub, "link", "set", &hub_if, "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            ip(&["-n", &ns, "addr", "add", &cidr, "dev", NODE_IF])?;
            ip(&["-n", &ns, "link", "set", NODE_IF, "up"])?;
            run_blocking(
                "ip",
                &["netns", "exec", &ns, "nft", "-f", "-"],
                Some(&rules::setup_script()),
                COMMAND_TIMEOUT,
            )
            .with_context(|| format!("creating the nftables table in {ns}"))?;
        }
        Ok(t)
    }

    /// The namespaces this run created.
    pub fn namespaces(&self) -> &[String] {
        &self.created
    }

    /// Kills what still runs inside the run's namespaces, deletes them (nodes first, the hub
    /// last) and checks that `ip netns list` no longer shows them. Returns the deleted names.
    pub fn destroy(&mut self) -> Result<Vec<String>> {
        let names: Vec<String> = self.created.iter().rev().cloned().collect();
        let killed = kill_inside(&names);
        let mut errors = Vec::new();
        let mut deleted = Vec::new();
        for ns in &names {
            match ip(&["netns", "del", ns]) {
                Ok(_) => deleted.push(ns.clone()),
                Err(e) => errors.push(format!("{e:#}")),
            }
        }
        self.created.retain(|n| !deleted.contains(n));
        let left: Vec<String> = list_namespaces()?.into_iter().filter(|n| names.contains(n)).collect();
        if let Err(e) = killed {
            errors.push(format!("{e:#}"));
        }
        if !left.is_empty() || !errors.is_empty() {
            bail!("network namespaces left: {left:?} ({}); remove them with `ip netns del NAME`", errors.join("; "));
        }
        Ok(deleted)
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        if !self.created.is_empty() {
            if let Err(e) = self.destroy() {
                eprintln!("raftcron-chaos: {e:#}");
            }
        }
    }
}

/// SIGKILLs every process inside `names` and waits (bounded) until none is left.
fn kill_inside(names: &[String]) -> Result<()> {
    let deadline = Instant::now() + DRAIN;
    loop {
        let mut pids = Vec::new();
        for ns in names {
            pids.extend(pids_in(ns).unwrap_or_default());
        }
        if pids.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("processes {pids:?} still run inside the run's namespaces after SIGKILL");
        }
        for pid in &pids {
            let _ = run_blocking("kill", &["-KILL", &pid.to_string()], None, COMMAND_TIMEOUT);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Deletes the namespaces of earlier runs whose supervising process is gone (no `/proc/<pid>`)
/// and inside which nothing runs any more. Leftovers that still hold processes are reported, not
/// touched: a controller whose supervisor was killed may still be running its run. Returns one
/// line per earlier run found.
pub fn clean_stale() -> Vec<String> {
    let names = match list_namespaces() {
        Ok(n) => n,
        Err(e) => return vec![format!("could not list network namespaces: {e:#}")],
    };
    let mut by_owner: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for n in names {
        if let Some(p) = Layout::parse_name(&n) {
            by_owner.entry(p.owner_pid).or_default().push(n);
        }
    }
    let mut out = Vec::new();
    for (pid, names) in by_owner {
        if std::path::Path::new(&format!("/proc/{pid}")).exists() {
            continue; // alive (another run), or the pid was reused: leave it
        }
        let inside: Vec<u32> = names.iter().flat_map(|n| pids_in(n).unwrap_or_default()).collect();
        if !inside.is_empty() {
            out.push(format!(
                "left the namespaces {names:?} of an earlier run alone: processes {inside:?} still run inside them"
            ));
            continue;
        }
        let failed: Vec<String> = names.iter().filter(|n| ip(&["netns", "del", n]).is_err()).cloned().collect();
        if failed.is_empty() {
            out.push(format!("removed the namespaces {names:?} left by an earlier run (pid {pid} is gone)"));
        } else {
            out.push(format!("could not remove the leftover namespaces {failed:?}"));
        }
    }
    out
}
