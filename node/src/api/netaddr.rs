//! Who the client is, and whether an API key may be used from there.
//!
//! This module owns:
//! - [`TrustedProxies`]: the reverse proxies whose `X-Forwarded-For` entries
//!   are believed.
//! - [`client_ip`]: the client address derived from the TCP peer and
//!   `X-Forwarded-For`, trusting only what trusted proxies wrote.
//! - [`Allowlist`]: the networks an API key may be used from.
//!
//! Rules shared by everything here:
//! - IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) are normalized to IPv4,
//!   both in addresses and in configured networks (`::ffff:10.0.0.0/104` is
//!   `10.0.0.0/8`). IPv6 networks that do not lie inside `::ffff:0:0/96`
//!   never match IPv4 clients: `::/0` is "every IPv6 client", not everyone.
//! - Entries are CIDR networks (`203.0.113.0/24`, `2001:db8::/32`) or bare
//!   addresses (meaning /32 or /128). A network with host bits set
//!   (`10.1.2.3/8`) is rejected rather than truncated: a typo in a prefix
//!   length must not silently widen access. The error names the entry and
//!   suggests the network address.
//!
//! This module must not: read headers or sockets itself (the caller passes
//! the peer address and the raw header values), log, or decide what a
//! refused request gets (that is the caller's policy).

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use ipnet::{IpNet, Ipv4Net};

/// Most entries an [`Allowlist`] may hold.
pub const MAX_ALLOWLIST_ENTRIES: usize = 100;

/// Why a network list could not be parsed. Every variant names the entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetError {
    /// An empty entry.
    #[error("entry {index} is empty; expected an IP address or CIDR network")]
    Empty { index: usize },
    /// Not an address or network.
    #[error("{entry:?} is not an IP address or CIDR network (examples: 203.0.113.0/24, 2001:db8::/32, 198.51.100.7)")]
    Invalid { entry: String },
    /// A network whose address has bits set beyond the prefix.
    #[error("{entry:?} has host bits set beyond /{prefix}; write the network as {network} (or {host} for the single address)")]
    HostBits { entry: String, prefix: u8, network: String, host: String },
    /// Too many entries.
    #[error("{count} allowlist entries given; at most {MAX_ALLOWLIST_ENTRIES} are allowed")]
    TooMany { count: usize },
}

/// Folds an IPv4-mapped IPv6 address to IPv4; other addresses are unchanged.
pub fn normalize_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => ip,
        },
        IpAddr::V4(_) => ip,
    }
}

/// Folds a network inside `::ffff:0:0/96` to the IPv4 network it covers.
fn normalize_net(net: IpNet) -> IpNet {
    if let IpNet::V6(v6) = net {
        if v6.prefix_len() >= 96 {
            if let Some(v4) = v6.addr().to_ipv4_mapped() {
                if let Ok(n) = Ipv4Net::new(v4, v6.prefix_len() - 96) {
                    return IpNet::V4(n);
                }
            }
        }
    }
    net
}

fn parse_entry(index: usize, raw: &str) -> Result<IpNet, NetError> {
    let entry = raw.trim();
    if entry.is_empty() {
        return Err(NetError::Empty { index });
    }
    let net = if entry.contains('/') {
        let net = IpNet::from_str(entry).map_err(|_| NetError::Invalid { entry: entry.to_owned() })?;
        if net.trunc() != net {
            let host = IpNet::from(net.addr());
            return Err(NetError::HostBits {
                entry: entry.to_owned(),
                prefix: net.prefix_len(),
                network: net.trunc().to_string(),
                host: host.to_string(),
            });
        }
        net
    } else {
        IpNet::from(IpAddr::from_str(entry).map_err(|_| NetError::Invalid { entry: entry.to_owned() })?)
    };
    Ok(normalize_net(net))
}

fn parse_list<I, S>(entries: I) -> Result<Vec<IpNet>, NetError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    entries.into_iter().enumerate().map(|(i, e)| parse_entry(i, e.as_ref())).collect()
}

fn any_contains(nets: &[IpNet], ip: IpAddr) -> bool {
    let ip = normalize_ip(ip);
    nets.iter().any(|n| n.contains(&ip))
}

/// Reverse proxies whose `X-Forwarded-For` entries are believed.
///
/// Empty means no proxy is trusted and the TCP peer is always the client.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Parses CIDR networks or bare addresses.
    pub fn parse<I, S>(entries: I) -> Result<Self, NetError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        parse_list(entries).map(Self)
    }

    /// True when `ip` (normalized) is a trusted proxy.
    pub fn contains(&self, ip: IpAddr) -> bool {
        any_contains(&self.0, ip)
    }

    /// The parsed, normalized networks.
    pub fn networks(&self) -> &[IpNet] {
        &self.0
    }

    /// True when no proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for TrustedProxies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.iter().map(|n| n.to_string())).finish()
    }
}

/// Parses one `X-Forwarded-For` element: an address, optionally with a port
/// (`198.51.100.7:5000`, `[2001:db8::1]:443`) or in brackets (`[2001:db8::1]`).
fn parse_forwarded(raw: &str) -> Option<IpAddr> {
    let s = raw.trim();
    if let Ok(ip) = IpAddr::from_str(s) {
        return Some(ip);
    }
    if let Ok(sa) = SocketAddr::from_str(s) {
        return Some(sa.ip());
    }
    let inner = s.strip_prefix('[')?.strip_suffix(']')?;
    inner.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6)
}

/// The client address of a request.
///
/// `peer` is the TCP peer; `x_forwarded_for` holds every `X-Forwarded-For`
/// header value in the order received (each may list several addresses,
/// comma-separated). The rule:
///
/// 1. If the peer is not a trusted proxy, the peer is the client and the
///    header is ignored: anyone can send an `X-Forwarded-For`.
/// 2. Otherwise walk the list from the right (the entry the peer appended)
///    to the left. An entry that is a trusted proxy hands trust on to the
///    entry before it; the first entry that is not a trusted proxy is the
///    client. The leftmost value is never believed unless every hop to its
///    right is trusted.
/// 3. A malformed entry (empty, `unknown`, a host name, ...) stops the walk:
///    the trusted hop that wrote it cannot be vouched beyond, so the result
///    is that hop's own address (the last trusted hop). Such a request
///    appears to come from the proxy, so never put proxy addresses in an
///    API key's [`Allowlist`].
/// 4. If every entry is a trusted proxy, the leftmost one is the result.
///
/// Addresses may carry a port (`1.2.3.4:80`, `[::1]:80`); IPv4-mapped IPv6
/// addresses are returned as IPv4.
pub fn client_ip(peer: IpAddr, x_forwarded_for: &[&str], trusted: &TrustedProxies) -> IpAddr {
    let mut hop = normalize_ip(peer);
    if !trusted.contains(hop) {
        return hop;
    }
    for raw in x_forwarded_for.iter().rev().flat_map(|value| value.rsplit(',')) {
        let Some(ip) = parse_forwarded(raw) else {
            return hop;
        };
        let ip = normalize_ip(ip);
        if !trusted.contains(ip) {
            return ip;
        }
        hop = ip;
    }
    hop
}

/// The networks an API key may be used from. Empty permits every address.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Allowlist(Vec<IpNet>);

impl Allowlist {
    /// Parses at most [`MAX_ALLOWLIST_ENTRIES`] CIDR networks or bare
    /// addresses (IPv4 and IPv6). Duplicates are kept as given.
    pub fn parse<I, S>(entries: I) -> Result<Self, NetError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let nets = parse_list(entries)?;
        if nets.len() > MAX_ALLOWLIST_ENTRIES {
            return Err(NetError::TooMany { count: nets.len() });
        }
        Ok(Self(nets))
    }

    /// True when the list is empty or a network contains `ip` (normalized).
    pub fn permits(&self, ip: IpAddr) -> bool {
        self.0.is_empty() || any_contains(&self.0, ip)
    }

    /// The parsed, normalized networks.
    pub fn networks(&self) -> &[IpNet] {
        &self.0
    }

    /// The canonical text of each entry (`10.0.0.0/8`, `198.51.100.7/32`),
    /// which parses back to the same list. Store this form.
    pub fn to_strings(&self) -> Vec<String> {
        self.0.iter().map(|n| n.to_string()).collect()
    }

    /// True when the list is empty (and so permits everything).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Allowlist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.iter().map(|n| n.to_string())).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn proxies(list: &[&str]) -> TrustedProxies {
        TrustedProxies::parse(list).unwrap()
    }

    #[test]
    fn client_ip_table() {
        let lb = proxies(&["10.0.0.0/8", "2001:db8:ffff::/48", "192.0.2.1"]);
        let none = TrustedProxies::default();
        // (peer, XFF header values, trusted, expected client)
        let cases: Vec<(&str, Vec<&str>, &TrustedProxies, &str)> = vec![
            // 1. No header, untrusted peer.
            ("203.0.113.5", vec![], &lb, "203.0.113.5"),
            // 2. Spoofed XFF from an untrusted peer is ignored.
            ("203.0.113.5", vec!["1.1.1.1"], &lb, "203.0.113.5"),
            // 3. Spoofed XFF when no proxy is trusted at all.
            ("10.0.0.1", vec!["1.1.1.1"], &none, "10.0.0.1"),
            // 4. Single trusted proxy.
            ("10.0.0.1", vec!["198.51.100.7"], &lb, "198.51.100.7"),
            // 5. Client-supplied spoof to the left of the real address is ignored.
            ("10.0.0.1", vec!["6.6.6.6, 198.51.100.7"], &lb, "198.51.100.7"),
            // 6. Chain of trusted proxies.
            ("10.0.0.1", vec!["198.51.100.7, 10.2.3.4, 192.0.2.1"], &lb, "198.51.100.7"),
            // 7. Chain split across several header values, in order.
            ("10.0.0.1", vec!["6.6.6.6, 198.51.100.7", "10.2.3.4", "192.0.2.1"], &lb, "198.51.100.7"),
            // 8. Trusted peer, no header: the peer.
            ("10.0.0.1", vec![], &lb, "10.0.0.1"),
            // 9. Every hop trusted: the leftmost.
            ("10.0.0.1", vec!["10.9.9.9, 192.0.2.1"], &lb, "10.9.9.9"),
            // 10. Malformed rightmost entry: the peer (last trusted hop).
            ("10.0.0.1", vec!["198.51.100.7, unknown"], &lb, "10.0.0.1"),
            // 11. Malformed entry behind a trusted hop: that hop.
            ("10.0.0.1", vec!["garbage, 10.2.3.4"], &lb, "10.2.3.4"),
            // 12. Malformed entry to the left of the client is never reached.
            ("10.0.0.1", vec!["garbage, 198.51.100.7"], &lb, "198.51.100.7"),
            // 13. Empty element (trailing comma) is malformed.
            ("10.0.0.1", vec!["198.51.100.7,"], &lb, "10.0.0.1"),
            // 14. Empty header value is malformed.
            ("10.0.0.1", vec![""], &lb, "10.0.0.1"),
            // 15. Host names are malformed.
            ("10.0.0.1", vec!["client.example.com"], &lb, "10.0.0.1"),
            // 16. IPv4 with a port.
            ("10.0.0.1", vec!["198.51.100.7:51234"], &lb, "198.51.100.7"),
            // 17. IPv6 client behind an IPv6 proxy.
            ("2001:db8:ffff::1", vec!["2001:db8:1::42"], &lb, "2001:db8:1::42"),
            // 18. Bracketed IPv6 with a port, and without.
            ("10.0.0.1", vec!["[2001:db8:1::42]:443"], &lb, "2001:db8:1::42"),
            ("10.0.0.1", vec!["[2001:db8:1::42]"], &lb, "2001:db8:1::42"),
            // 19. IPv4-mapped peer on a dual-stack socket is a trusted IPv4 proxy.
            ("::ffff:10.0.0.1", vec!["198.51.100.7"], &lb, "198.51.100.7"),
            // 20. IPv4-mapped client in the header is returned as IPv4.
            ("10.0.0.1", vec!["::ffff:198.51.100.7"], &lb, "198.51.100.7"),
            // 21. IPv4-mapped untrusted peer is returned as IPv4.
            ("::ffff:203.0.113.5", vec!["1.1.1.1"], &lb, "203.0.113.5"),
            // 22. Mapped trusted hop inside the chain.
            ("10.0.0.1", vec!["198.51.100.7, ::ffff:10.2.3.4"], &lb, "198.51.100.7"),
            // 23. Whitespace around entries is fine.
            ("10.0.0.1", vec!["  198.51.100.7  ,   10.2.3.4 "], &lb, "198.51.100.7"),
            // 24. An IPv6 peer outside the trusted /48 is not trusted.
            ("2001:db8:fffe::1", vec!["198.51.100.7"], &lb, "2001:db8:fffe::1"),
            // 25. A bare trusted IP trusts only itself.
            ("192.0.2.2", vec!["198.51.100.7"], &lb, "192.0.2.2"),
            // 26. Attacker behind a trusted proxy prepends a fake trusted hop: still the attacker.
            ("10.0.0.1", vec!["10.1.1.1, 203.0.113.66"], &lb, "203.0.113.66"),
        ];
        for (i, (peer, xff, trusted, want)) in cases.iter().enumerate() {
            assert_eq!(client_ip(ip(peer), xff, trusted), ip(want), "case {} ({peer}, {xff:?})", i + 1);
        }
    }

    #[test]
    fn allowlist_table() {
        let list = Allowlist::parse([
            "203.0.113.0/24",
            "198.51.100.7",
            "2001:db8:1::/48",
            "2001:db8:2::5",
            "::ffff:192.0.2.0/120",
        ])
        .unwrap();
        let cases = [
            ("203.0.113.0", true),
            ("203.0.113.255", true),
            ("203.0.114.0", false),
            ("198.51.100.7", true),
            ("198.51.100.8", false),
            ("::ffff:203.0.113.9", true),
            ("::ffff:198.51.100.7", true),
            ("::ffff:198.51.100.8", false),
            ("2001:db8:1:ffff::1", true),
            ("2001:db8:2::5", true),
            ("2001:db8:2::6", false),
            ("192.0.2.77", true),
            ("::ffff:192.0.2.77", true),
            ("192.0.3.1", false),
            ("::1", false),
            ("127.0.0.1", false),
            // IPv4-compatible (deprecated) form is not mapped and does not match.
            ("::203.0.113.9", false),
        ];
        for (addr, want) in cases {
            assert_eq!(list.permits(ip(addr)), want, "{addr}");
        }
    }

    #[test]
    fn empty_allowlist_permits_all() {
        let list = Allowlist::parse(Vec::<String>::new()).unwrap();
        assert!(list.is_empty());
        assert!(list.permits(ip("203.0.113.1")));
        assert!(list.permits(ip("2001:db8::1")));
    }

    #[test]
    fn ipv6_any_does_not_match_ipv4() {
        let list = Allowlist::parse(["::/0"]).unwrap();
        assert!(list.permits(ip("2001:db8::1")));
        assert!(!list.permits(ip("203.0.113.1")));
        assert!(!list.permits(ip("::ffff:203.0.113.1")));
        let all = Allowlist::parse(["::/0", "0.0.0.0/0"]).unwrap();
        assert!(all.permits(ip("::ffff:203.0.113.1")));
    }

    #[test]
    fn parse_errors_name_the_entry() {
        let err = Allowlist::parse(["10.0.0.0/8", "10.0.0.300"]).unwrap_err();
        assert_eq!(err, NetError::Invalid { entry: "10.0.0.300".into() });
        assert!(err.to_string().starts_with("\"10.0.0.300\" is not an IP address or CIDR network"));

        for bad in
            ["banana", "10.0.0.0/33", "2001:db8::/129", "10.0.0.0/", "/8", "10.0.0.0/8/8", "fe80::1%eth0", "010.0.0.1"]
        {
            assert!(matches!(Allowlist::parse([bad]), Err(NetError::Invalid { .. })), "{bad}");
            assert!(matches!(TrustedProxies::parse([bad]), Err(NetError::Invalid { .. })), "{bad}");
        }

        let err = Allowlist::parse(["10.1.2.3/8"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "\"10.1.2.3/8\" has host bits set beyond /8; write the network as 10.0.0.0/8 \
             (or 10.1.2.3/32 for the single address)"
        );
        assert!(matches!(Allowlist::parse(["2001:db8::1/32"]), Err(NetError::HostBits { .. })));

        assert_eq!(Allowlist::parse(["10.0.0.0/8", "  "]).unwrap_err(), NetError::Empty { index: 1 });

        let many: Vec<String> = (0..101).map(|i| format!("10.0.{i}.0/24")).collect();
        assert_eq!(Allowlist::parse(&many).unwrap_err(), NetError::TooMany { count: 101 });
        assert!(Allowlist::parse(&many[..100]).is_ok());
        // Trusted proxies have no entry cap.
        assert!(TrustedProxies::parse(&many).is_ok());
    }

    #[test]
    fn canonical_form_round_trips() {
        let list = Allowlist::parse([" 198.51.100.7 ", "::ffff:10.0.0.0/104", "2001:DB8::/32", "0.0.0.0/0"]).unwrap();
        assert_eq!(list.to_strings(), ["198.51.100.7/32", "10.0.0.0/8", "2001:db8::/32", "0.0.0.0/0"]);
        assert_eq!(Allowlist::parse(list.to_strings()).unwrap(), list);
        assert_eq!(format!("{list:?}"), "[\"198.51.100.7/32\", \"10.0.0.0/8\", \"2001:db8::/32\", \"0.0.0.0/0\"]");
    }

    #[test]
    fn normalization() {
        assert_eq!(normalize_ip(ip("::ffff:1.2.3.4")), ip("1.2.3.4"));
        assert_eq!(normalize_ip(ip("::1.2.3.4")), ip("::1.2.3.4"));
        assert_eq!(normalize_ip(ip("2001:db8::1")), ip("2001:db8::1"));
        let tp = proxies(&["::ffff:10.0.0.1"]);
        assert_eq!(tp.networks()[0].to_string(), "10.0.0.1/32");
        assert!(tp.contains(ip("10.0.0.1")));
        assert!(tp.contains(ip("::ffff:10.0.0.1")));
        assert!(!tp.is_empty());
        let lo = ip("127.0.0.1");
        assert_eq!(client_ip(lo, &["1.1.1.1"], &tp), lo);
    }
}
