//! The cuts of a `--netns` run while it runs: which directed links are cut, applied as the
//! nftables rule set of each sender's namespace ([`super::rules`]), with the packets each cut
//! swallowed counted for the report.
//!
//! Used by the controller inside the hub namespace (through `ip netns exec <node-ns> nft`). It
//! changes only the `raftcron_chaos` table of the run's node namespaces, never creates or
//! deletes a namespace ([`super::topology`] does), and knows nothing about Raft. Unlike the
//! proxy, a change does not close open connections: they stall while cut and resume after the
//! heal if TCP has not given up, as on a real network.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use anyhow::{Context, Result};
use serde::Serialize;
use tokio::sync::Mutex;

use super::layout::Layout;
use super::rules::{self, Cut};
use super::{run, COMMAND_TIMEOUT};

/// What the cuts of one link did, for the report.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct CutStats {
    /// Times the link was cut.
    pub cuts: u64,
    /// Packets and bytes its rule dropped or rejected.
    pub packets: u64,
    pub bytes: u64,
}

/// Stands for the rule set of a namespace whose last change failed.
const UNKNOWN: &str = "# unknown\n";

#[derive(Debug, Default)]
struct State {
    cuts: BTreeMap<(u64, u64), Cut>,
    /// The rule set last applied per node (none: only the empty chain from setup; [`UNKNOWN`]
    /// after a failed change).
    applied: BTreeMap<u64, String>,
    stats: BTreeMap<(u64, u64), CutStats>,
}

/// The cuts of one run.
#[derive(Debug)]
pub struct NetnsLinks {
    layout: Layout,
    /// Where `from` connects to reach `to`, per link.
    endpoints: BTreeMap<(u64, u64), SocketAddr>,
    state: Mutex<State>,
}

impl NetnsLinks {
    pub fn new(layout: Layout, endpoints: BTreeMap<(u64, u64), SocketAddr>) -> NetnsLinks {
        NetnsLinks { layout, endpoints, state: Mutex::default() }
    }

    /// Cuts `links` (`Some`) or lets them pass again (`None`), then brings every namespace whose
    /// rule set changed up to date, one `nft` transaction each.
    pub async fn set(&self, links: &[(u64, u64)], cut: Option<Cut>) -> Result<()> {
        let mut st = self.state.lock().await;
        for &link in links {
            match cut {
                Some(c) => {
                    if st.cuts.insert(link, c).is_none() {
                        st.stats.entry(link).or_default().cuts += 1;
                    }
                }
                None => {
                    st.cuts.remove(&link);
                }
            }
        }
        self.sync(&mut st).await
    }

    /// Lets every link pass.
    pub async fn heal(&self) -> Result<()> {
        let mut st = self.state.lock().await;
        st.cuts.clear();
        self.sync(&mut st).await
    }

    /// Links cut now.
    pub async fn faulty_links(&self) -> Vec<(u64, u64)> {
        self.state.lock().await.cuts.keys().copied().collect()
    }

    /// Per link `from->to`: how often it was cut and what its rules swallowed.
    pub async fn stats(&self) -> BTreeMap<String, CutStats> {
        self.state.lock().await.stats.iter().map(|((f, t), s)| (format!("{f}->{t}"), *s)).collect()
    }

    async fn sync(&self, st: &mut State) -> Result<()> {
        let mut first_error = None;
        for from in self.layout.ids() {
            let script = rules::script_for(from, &st.cuts, &self.endpoints)?;
            let had_rules = st.applied.get(&from).is_some_and(|s| s.contains("add rule"));
            if st.applied.get(&from).map_or(!script.contains("add rule"), |s| *s == script) {
                continue;
            }
            let ns = self.layout.node_ns(from);
            if had_rules {
                // Count what the rules being replaced swallowed (a few ms of packets between this
                // read and the replacement may be missed: the figures are a lower bound).
                let args = ["netns", "exec", &ns, "nft", "-j", "list", "chain", "inet", rules::TABLE, rules::CHAIN];
                if let Ok(json) = run("ip", &args, None, COMMAND_TIMEOUT).await {
                    for (link, c) in rules::parse_counters(&json).unwrap_or_default() {
                        let s = st.stats.entry(link).or_default();
                        s.packets += c.packets;
                        s.bytes += c.bytes;
                    }
                }
            }
            match run("ip", &["netns", "exec", &ns, "nft", "-f", "-"], Some(&script), COMMAND_TIMEOUT)
                .await
                .with_context(|| format!("applying the cuts of node {from} in {ns}"))
            {
                Ok(_) => {
                    st.applied.insert(from, script);
                }
                Err(e) => {
                    // Unknown now: the next change rewrites it, whatever it is.
                    st.applied.insert(from, UNKNOWN.to_string());
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}
