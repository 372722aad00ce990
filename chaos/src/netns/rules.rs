//! The nftables text of a `--netns` run: the table every node namespace gets at setup, and,
//! given which directed links are cut, the rule set of one node's namespace; plus reading the
//! per-link packet counters back from `nft -j`.
//!
//! Pure functions: they must not run a command (the caller pipes their output into
//! `ip netns exec <ns> nft -f -`), so they are tested without root.
//!
//! A cut link `from -> to` is a rule in `from`'s namespace, in an `output` chain: packets `from`
//! sends to `to`'s endpoint (address and listening port) are dropped, or answered with a TCP
//! reset. Matching the destination port gives the proxy's directed semantics: connections `to`
//! opens to `from` still work both ways (their packets from `from` go to an ephemeral port).
//! Each script starts with a flush of the chain, and `nft -f` applies a file as one
//! transaction, so a namespace never shows half a rule set.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;

use anyhow::{anyhow, Result};
use serde::Serialize;

/// The table every node namespace gets (family `inet`); it dies with its namespace.
pub const TABLE: &str = "raftcron_chaos";
/// Its output chain, which holds the cuts.
pub const CHAIN: &str = "links";

/// What a cut link does with the packets its sender sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cut {
    /// Dropped: the sender hears nothing and times out (the proxy's `Blackhole`).
    Drop,
    /// Answered with a TCP reset: the sender sees the connection refused (the proxy's `Refuse`).
    Reject,
}

/// Creates the table and its empty output chain (run once per node namespace).
pub fn setup_script() -> String {
    format!(
        "add table inet {TABLE}\nadd chain inet {TABLE} {CHAIN} {{ type filter hook output priority 0 ; policy accept ; }}\n"
    )
}

/// The comment that names a rule's link, so counters can be read back per link.
fn comment(from: u64, to: u64) -> String {
    format!("link {from}->{to}")
}

/// The rule set of node `from`'s namespace: a flush, then one rule per cut link from `from`.
/// `endpoints` gives, for every link, the address and port `from` connects to (the node, or the
/// proxy listener of that link when the proxy is in the path).
pub fn script_for(
    from: u64,
    cuts: &BTreeMap<(u64, u64), Cut>,
    endpoints: &BTreeMap<(u64, u64), SocketAddr>,
) -> Result<String> {
    let mut s = format!("flush chain inet {TABLE} {CHAIN}\n");
    for (&(f, to), cut) in cuts.range((from, 0)..=(from, u64::MAX)) {
        debug_assert_eq!(f, from);
        let ep = endpoints.get(&(f, to)).ok_or_else(|| anyhow!("no endpoint for link {f}->{to}"))?;
        let family = if ep.is_ipv4() { "ip" } else { "ip6" };
        let verdict = match cut {
            Cut::Drop => "drop",
            Cut::Reject => "reject with tcp reset",
        };
        let _ = writeln!(
            s,
            "add rule inet {TABLE} {CHAIN} {family} daddr {} tcp dport {} counter {verdict} comment \"{}\"",
            ep.ip(),
            ep.port(),
            comment(f, to)
        );
    }
    Ok(s)
}

/// Packets and bytes a link's rule matched.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counted {
    pub packets: u64,
    pub bytes: u64,
}

/// Reads the counters of `nft -j list chain inet raftcron_chaos links` per link (rules without
/// a link comment or a counter are skipped).
pub fn parse_counters(json: &str) -> Result<BTreeMap<(u64, u64), Counted>> {
    let v: serde_json::Value = serde_json::from_str(json).map_err(|e| anyhow!("nft -j output: {e}"))?;
    let mut out = BTreeMap::new();
    let items = v.get("nftables").and_then(|x| x.as_array()).ok_or_else(|| anyhow!("nft -j: no nftables array"))?;
    for rule in items.iter().filter_map(|i| i.get("rule")) {
        let Some(link) = rule.get("comment").and_then(|c| c.as_str()).and_then(parse_comment) else { continue };
        let exprs = rule.get("expr").and_then(|e| e.as_array()).map(Vec::as_slice).unwrap_or_default();
        for c in exprs.iter().filter_map(|e| e.get("counter")) {
            let n = |k: &str| c.get(k).and_then(|x| x.as_u64()).unwrap_or(0);
            let e: &mut Counted = out.entry(link).or_default();
            e.packets += n("packets");
            e.bytes += n("bytes");
        }
    }
    Ok(out)
}

fn parse_comment(c: &str) -> Option<(u64, u64)> {
    let (f, t) = c.strip_prefix("link ")?.split_once("->")?;
    Some((f.parse().ok()?, t.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoints(nodes: u64) -> BTreeMap<(u64, u64), SocketAddr> {
        let mut m = BTreeMap::new();
        for f in 1..=nodes {
            for t in (1..=nodes).filter(|t| *t != f) {
                m.insert((f, t), SocketAddr::from(([10, 213, 0, t as u8], 7000)));
            }
        }
        m
    }

    #[test]
    fn setup_creates_one_output_chain() {
        assert_eq!(
            setup_script(),
            "add table inet raftcron_chaos\n\
             add chain inet raftcron_chaos links { type filter hook output priority 0 ; policy accept ; }\n"
        );
    }

    #[test]
    fn no_cut_is_a_flush_only() {
        let s = script_for(1, &BTreeMap::new(), &endpoints(3)).unwrap();
        assert_eq!(s, "flush chain inet raftcron_chaos links\n");
    }

    #[test]
    fn isolating_a_node_puts_rules_on_both_sides_and_only_for_the_sender() {
        // isolate node 1 of 3: 1->2, 1->3, 2->1, 3->1.
        let cuts: BTreeMap<_, _> = [(1, 2), (1, 3), (2, 1), (3, 1)].into_iter().map(|l| (l, Cut::Drop)).collect();
        let eps = endpoints(3);
        assert_eq!(
            script_for(1, &cuts, &eps).unwrap(),
            "flush chain inet raftcron_chaos links\n\
             add rule inet raftcron_chaos links ip daddr 10.213.0.2 tcp dport 7000 counter drop comment \"link 1->2\"\n\
             add rule inet raftcron_chaos links ip daddr 10.213.0.3 tcp dport 7000 counter drop comment \"link 1->3\"\n"
        );
        assert_eq!(
            script_for(2, &cuts, &eps).unwrap(),
            "flush chain inet raftcron_chaos links\n\
             add rule inet raftcron_chaos links ip daddr 10.213.0.1 tcp dport 7000 counter drop comment \"link 2->1\"\n"
        );
        // 2 <-> 3 untouched: node 2's rules never name node 3.
        assert!(!script_for(2, &cuts, &eps).unwrap().contains("10.213.0.3"));
    }

    #[test]
    fn one_way_leaves_the_other_direction_alone() {
        // one-way from 3: only 3's namespace gets rules.
        let cuts: BTreeMap<_, _> = [(3, 1), (3, 2)].into_iter().map(|l| (l, Cut::Drop)).collect();
        let eps = endpoints(3);
        assert_eq!(script_for(1, &cuts, &eps).unwrap(), "flush chain inet raftcron_chaos links\n");
        assert_eq!(script_for(3, &cuts, &eps).unwrap().lines().filter(|l| l.starts_with("add rule")).count(), 2);
    }

    #[test]
    fn refuse_resets_and_proxy_endpoints_are_used_when_given() {
        let mut eps = endpoints(3);
        eps.insert((1, 2), SocketAddr::from(([10, 213, 0, 254], 41_000)));
        let cuts = BTreeMap::from([((1, 2), Cut::Reject)]);
        assert_eq!(
            script_for(1, &cuts, &eps).unwrap(),
            "flush chain inet raftcron_chaos links\n\
             add rule inet raftcron_chaos links ip daddr 10.213.0.254 tcp dport 41000 counter reject with tcp reset comment \"link 1->2\"\n"
        );
        assert!(script_for(1, &BTreeMap::from([((1, 9), Cut::Drop)]), &eps).is_err());
    }

    #[test]
    fn counters_are_read_per_link() {
        let json = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}},
            {"chain": {"family": "inet", "table": "raftcron_chaos", "name": "links", "handle": 1}},
            {"rule": {"family": "inet", "chain": "links", "handle": 2, "comment": "link 1->2", "expr": [
                {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": "10.213.0.2"}},
                {"counter": {"packets": 6, "bytes": 360}}, {"drop": null}]}},
            {"rule": {"family": "inet", "chain": "links", "handle": 3, "comment": "link 1->3", "expr": [
                {"counter": {"packets": 0, "bytes": 0}}, {"drop": null}]}},
            {"rule": {"family": "inet", "chain": "links", "handle": 4, "expr": [{"counter": {"packets": 9, "bytes": 9}}]}}]}"#;
        let c = parse_counters(json).unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c[&(1, 2)], Counted { packets: 6, bytes: 360 });
        assert_eq!(c[&(1, 3)], Counted::default());
        assert!(parse_counters("not json").is_err());
    }
}
