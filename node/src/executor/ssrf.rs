//! The SSRF guard: which targets a job may call.
//!
//! A job URL must be http or https, carry no user info, and name a host whose every address we
//! connect to is public. IP literals are checked when a job is created or updated and again at
//! fire time; host names are checked by [`GuardedResolver`], the resolver the executor's HTTP
//! client connects through: it drops every non-public address and fails when none is left, so
//! there is no second lookup and no DNS-rebinding window between check and connect.
//! `--allow-private-targets` lifts the address checks (never the scheme and user-info checks).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Why a target is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SsrfError {
    #[error("scheme must be http or https")]
    Scheme,
    #[error("URLs with user info (user:password@) are not allowed")]
    UserInfo,
    #[error("URL has no host")]
    NoHost,
    #[error("{0} is not a public address")]
    PrivateAddress(IpAddr),
    #[error("host {0:?} is a local name")]
    LocalName(String),
    #[error("host {0:?} resolves to no public address")]
    NoPublicAddress(String),
    #[error("invalid URL: {0}")]
    Invalid(String),
}

fn v4_in(ip: Ipv4Addr, net: [u8; 4], bits: u32) -> bool {
    let mask = if bits == 0 { 0 } else { u32::MAX << (32 - bits) };
    (u32::from(ip) & mask) == (u32::from(Ipv4Addr::from(net)) & mask)
}

fn v6_in(ip: Ipv6Addr, net: [u16; 8], bits: u32) -> bool {
    let mask = if bits == 0 { 0 } else { u128::MAX << (128 - bits) };
    (u128::from(ip) & mask) == (u128::from(Ipv6Addr::from(net)) & mask)
}

/// Non-public IPv4 ranges: this network, private, CGNAT, loopback, link-local (cloud metadata
/// at 169.254.169.254), IETF protocol assignments, documentation, 6to4 relay, benchmarking,
/// multicast, reserved and broadcast.
const V4_BLOCKED: [([u8; 4], u32); 15] = [
    ([0, 0, 0, 0], 8),
    ([10, 0, 0, 0], 8),
    ([100, 64, 0, 0], 10),
    ([127, 0, 0, 0], 8),
    ([169, 254, 0, 0], 16),
    ([172, 16, 0, 0], 12),
    ([192, 0, 0, 0], 24),
    ([192, 0, 2, 0], 24),
    ([192, 88, 99, 0], 24),
    ([192, 168, 0, 0], 16),
    ([198, 18, 0, 0], 15),
    ([198, 51, 100, 0], 24),
    ([203, 0, 113, 0], 24),
    ([224, 0, 0, 0], 4),
    ([240, 0, 0, 0], 4),
];

/// Whether an address is a public unicast address a job may reach.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !V4_BLOCKED.iter().any(|(net, bits)| v4_in(v4, *net, *bits)),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    // Forms that embed an IPv4 address are judged by that address.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public(IpAddr::V4(v4));
    }
    let s = ip.segments();
    if v6_in(ip, [0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96) {
        // NAT64: the last 32 bits are the IPv4 destination.
        return is_public(IpAddr::V4(Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8)));
    }
    if v6_in(ip, [0x2002, 0, 0, 0, 0, 0, 0, 0], 16) {
        // 6to4: bits 16..48 are the IPv4 address.
        return is_public(IpAddr::V4(Ipv4Addr::new((s[1] >> 8) as u8, s[1] as u8, (s[2] >> 8) as u8, s[2] as u8)));
    }
    let blocked: [([u16; 8], u32); 10] = [
        ([0, 0, 0, 0, 0, 0, 0, 0], 96),          // unspecified, loopback, IPv4-compatible
        ([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48),  // local-use NAT64
        ([0x100, 0, 0, 0, 0, 0, 0, 0], 64),      // discard
        ([0x2001, 0, 0, 0, 0, 0, 0, 0], 23),     // IETF protocol assignments, Teredo
        ([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32), // documentation
        ([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20),     // documentation (2024)
        ([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7),      // unique local
        ([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10),     // link-local
        ([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10),     // site-local (deprecated)
        ([0xff00, 0, 0, 0, 0, 0, 0, 0], 8),      // multicast
    ];
    !blocked.iter().any(|(net, bits)| v6_in(ip, *net, *bits))
}

/// Checks a URL's shape and, for IP-literal hosts, its address. Host names are left to the
/// resolver at fire time, except names that are local by definition.
pub fn check_url(raw: &str, allow_private: bool) -> Result<url::Url, SsrfError> {
    let url = url::Url::parse(raw).map_err(|e| SsrfError::Invalid(e.to_string()))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(SsrfError::Scheme);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(SsrfError::UserInfo);
    }
    let host = url.host().ok_or(SsrfError::NoHost)?;
    if allow_private {
        return Ok(url);
    }
    match host {
        url::Host::Ipv4(v4) if !is_public(IpAddr::V4(v4)) => Err(SsrfError::PrivateAddress(IpAddr::V4(v4))),
        url::Host::Ipv6(v6) if !is_public(IpAddr::V6(v6)) => Err(SsrfError::PrivateAddress(IpAddr::V6(v6))),
        url::Host::Domain(name) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if name == "localhost" || name.ends_with(".localhost") || name.ends_with(".local") || !name.contains('.') {
                Err(SsrfError::LocalName(name))
            } else {
                Ok(url)
            }
        }
        _ => Ok(url),
    }
}

/// Keeps only the addresses a job may connect to.
pub fn filter_addrs(host: &str, addrs: impl IntoIterator<Item = SocketAddr>) -> Result<Vec<SocketAddr>, SsrfError> {
    let kept: Vec<SocketAddr> = addrs.into_iter().filter(|a| is_public(a.ip())).collect();
    if kept.is_empty() {
        Err(SsrfError::NoPublicAddress(host.to_string()))
    } else {
        Ok(kept)
    }
}

/// The resolver the executor's HTTP client connects through (see the module docs).
#[derive(Debug, Clone, Copy, Default)]
pub struct GuardedResolver;

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let kept = filter_addrs(&host, addrs)?;
            let iter: reqwest::dns::Addrs = Box::new(kept.into_iter());
            Ok(iter)
        })
    }
}

#[cfg(test)]
#[path = "ssrf_tests.rs"]
mod tests;
