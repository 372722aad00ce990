//! The names and addresses of one `--netns` run: which namespaces, interfaces and addresses it
//! owns, derived from a per-run prefix (`rcchaos<pid>`) and the node count.
//!
//! Pure data: it must not run a command. Everything it names lives inside the run's own
//! namespaces, so interface names can be short and fixed (`br0`, `vn<i>`, `eth0`; at most 15
//! characters) and the subnet can be fixed too: two runs never share a namespace, and no route
//! leaves the run's namespaces, so their addresses never meet.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// The start of every namespace name a `--netns` run creates.
pub const NAME_PREFIX: &str = "rcchaos";
/// The bridge in the hub namespace.
pub const BRIDGE: &str = "br0";
/// The node's end of its veth pair, inside the node's namespace.
pub const NODE_IF: &str = "eth0";
/// The port every node listens on (each node has its own namespace, so they can share it; it is
/// below the ephemeral range, so no outgoing connection ever uses it as its source port).
pub const NODE_PORT: u16 = 7000;
/// The subnet's first three octets: 10.213.0.0/24.
const NET: [u8; 3] = [10, 213, 0];
/// The hub's (controller's) host number in the subnet.
const HUB_HOST: u8 = 254;

/// The namespaces and addresses of one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// `rcchaos<pid>`: the pid of the process that created (and will delete) the namespaces.
    pub prefix: String,
    pub nodes: u64,
}

/// What a namespace name of the scheme says: the owner's pid and the namespace's role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedName {
    pub owner_pid: u32,
    /// `None` for the hub, `Some(i)` for node `i`.
    pub node: Option<u64>,
}

impl Layout {
    /// The layout of a run supervised by process `pid`.
    pub fn for_pid(pid: u32, nodes: u64) -> Layout {
        Layout { prefix: format!("{NAME_PREFIX}{pid}"), nodes }
    }

    /// The layout named by `prefix` (as passed to the re-executed controller); `None` unless it
    /// follows the scheme, so a stray value never names a namespace the run does not own.
    pub fn from_prefix(prefix: &str, nodes: u64) -> Option<Layout> {
        let pid = prefix.strip_prefix(NAME_PREFIX)?;
        (!pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()) && pid.parse::<u32>().is_ok())
            .then(|| Layout { prefix: prefix.to_string(), nodes })
    }

    pub fn ids(&self) -> impl Iterator<Item = u64> {
        1..=self.nodes
    }

    /// The hub namespace: the bridge, and the controller (sink, clients, observer, proxy).
    pub fn hub(&self) -> String {
        format!("{}-hub", self.prefix)
    }

    /// Node `id`'s namespace.
    pub fn node_ns(&self, id: u64) -> String {
        format!("{}-n{id}", self.prefix)
    }

    /// Every namespace of the run, nodes first and the hub last (the order of deletion).
    pub fn namespaces(&self) -> Vec<String> {
        self.ids().map(|i| self.node_ns(i)).chain([self.hub()]).collect()
    }

    /// The hub's end of node `id`'s veth pair, on the bridge.
    pub fn hub_if(id: u64) -> String {
        format!("vn{id}")
    }

    pub fn hub_ip(&self) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(NET[0], NET[1], NET[2], HUB_HOST))
    }

    pub fn node_ip(&self, id: u64) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(NET[0], NET[1], NET[2], id as u8))
    }

    /// Where node `id` listens (API and node-to-node traffic).
    pub fn node_addr(&self, id: u64) -> SocketAddr {
        SocketAddr::new(self.node_ip(id), NODE_PORT)
    }

    /// The prefix length of the run's subnet.
    pub fn prefix_len(&self) -> u8 {
        24
    }

    /// Reads a namespace name of the scheme (`rcchaos<pid>-hub`, `rcchaos<pid>-n<i>`).
    pub fn parse_name(name: &str) -> Option<ParsedName> {
        let rest = name.strip_prefix(NAME_PREFIX)?;
        let (pid, role) = rest.split_once('-')?;
        if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let owner_pid = pid.parse().ok()?;
        let node = match role {
            "hub" => None,
            r => {
                let i = r.strip_prefix('n')?;
                if i.is_empty() || !i.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                Some(i.parse().ok()?)
            }
        };
        Some(ParsedName { owner_pid, node })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_addresses() {
        let l = Layout::for_pid(4242, 3);
        assert_eq!(l.hub(), "rcchaos4242-hub");
        assert_eq!(l.namespaces(), vec!["rcchaos4242-n1", "rcchaos4242-n2", "rcchaos4242-n3", "rcchaos4242-hub"]);
        assert_eq!(l.node_addr(2).to_string(), "10.213.0.2:7000");
        assert_eq!(l.hub_ip().to_string(), "10.213.0.254");
        for name in [BRIDGE, NODE_IF, &Layout::hub_if(5)] {
            assert!(name.len() <= 15, "{name} is longer than IFNAMSIZ - 1");
        }
    }

    #[test]
    fn names_parse_back_and_strays_do_not() {
        let l = Layout::for_pid(77, 5);
        for (i, ns) in l.namespaces().iter().enumerate() {
            let p = Layout::parse_name(ns).unwrap();
            assert_eq!(p.owner_pid, 77);
            assert_eq!(p.node, (i < 5).then_some(i as u64 + 1));
        }
        for stray in
            ["rcchaos-hub", "rcchaosx1-hub", "rcchaos1-n", "rcchaos1-nx", "rcchaos1-other", "foo1-hub", "rcchaos1"]
        {
            assert_eq!(Layout::parse_name(stray), None, "{stray}");
        }
        assert_eq!(Layout::from_prefix("rcchaos12", 3), Some(Layout { prefix: "rcchaos12".into(), nodes: 3 }));
        assert_eq!(Layout::from_prefix("rcchaos", 3), None);
        assert_eq!(Layout::from_prefix("eth0", 3), None);
        assert_eq!(Layout::from_prefix("rcchaos1;rm", 3), None);
    }
}
