//! The node-to-node network as the nemesis sees it: cut directed links, shape every link (delay,
//! loss), heal. Two backends stand behind it: the proxy ([`crate::proxy`], the default: link
//! modes on 127.0.0.1) and, with `--netns`, nftables cuts in the run's namespaces
//! ([`crate::netns::links`]), where delay and loss still go through the proxy (this machine's
//! kernel has no `netem`; see docs/chaos.md, "Network namespaces").
//!
//! It only routes each request to the backend that owns it; it keeps no state of its own and
//! knows nothing about Raft.

use anyhow::{anyhow, bail, Result};

use crate::netns::links::NetnsLinks;
use crate::netns::rules::Cut;
use crate::proxy::{LinkMode, Proxy};

/// Which backend makes the cuts, for the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Proxy,
    Netns,
}

/// The run's links.
#[derive(Clone, Copy, Default)]
pub struct Network<'a> {
    /// The proxy, when it is in the node-to-node path.
    pub proxy: Option<&'a Proxy>,
    /// The nftables cuts, in a `--netns` run.
    pub netns: Option<&'a NetnsLinks>,
}

/// Both directions between every node of `a` and every node of `b`.
pub fn pairs_between(a: &[u64], b: &[u64]) -> Vec<(u64, u64)> {
    a.iter().flat_map(|&x| b.iter().flat_map(move |&y| [(x, y), (y, x)])).collect()
}

impl Network<'_> {
    pub fn backend(&self) -> Backend {
        if self.netns.is_some() {
            Backend::Netns
        } else {
            Backend::Proxy
        }
    }

    fn proxy(&self) -> Result<&Proxy> {
        self.proxy.ok_or_else(|| anyhow!("the node binary has no --peer-override: no proxy on the links"))
    }

    /// Cuts the directed `links`: `Blackhole` (silent) or `Refuse` (reset).
    pub async fn cut(&self, links: &[(u64, u64)], mode: LinkMode) -> Result<()> {
        let cut = match mode {
            LinkMode::Blackhole => Cut::Drop,
            LinkMode::Refuse => Cut::Reject,
            other => bail!("{other:?} is not a cut"),
        };
        match self.netns {
            Some(n) => n.set(links, Some(cut)).await,
            None => {
                let p = self.proxy()?;
                for &(f, t) in links {
                    p.set(f, t, mode);
                }
                Ok(())
            }
        }
    }

    /// Delays or degrades every link (always the proxy).
    pub fn shape_all(&self, mode: LinkMode) -> Result<()> {
        self.proxy()?.set_all(mode);
        Ok(())
    }

    /// Lets every link pass again, in every backend.
    pub async fn heal(&self) -> Result<()> {
        if let Some(p) = self.proxy {
            p.heal();
        }
        if let Some(n) = self.netns {
            n.heal().await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_go_both_ways() {
        assert_eq!(pairs_between(&[1], &[2, 3]), vec![(1, 2), (2, 1), (1, 3), (3, 1)]);
        assert!(pairs_between(&[], &[2]).is_empty());
    }

    #[tokio::test]
    async fn without_a_backend_cuts_fail_and_heals_pass() {
        let n = Network::default();
        assert_eq!(n.backend(), Backend::Proxy);
        assert!(n.cut(&[(1, 2)], LinkMode::Blackhole).await.is_err());
        assert!(n.cut(&[(1, 2)], LinkMode::Pass).await.is_err());
        assert!(n.heal().await.is_ok());
    }
}
