use std::net::{IpAddr, SocketAddr};

use super::*;

#[test]
fn url_table() {
    // (url, allowed without --allow-private-targets)
    let table: &[(&str, bool)] = &[
        ("https://example.com/hook", true),
        ("http://example.com:8080/x?y=1", true),
        ("https://93.184.216.34/", true),
        ("https://[2606:2800:220:1:248:1893:25c8:1946]/", true),
        ("https://1.1.1.1", true),
        ("https://sub.domain.example.org/path", true),
        ("https://8.8.8.8:443/", true),
        ("http://[2a00:1450:4001:80b::200e]/", true),
        ("http://[::ffff:8.8.8.8]/", true),
        ("http://[64:ff9b::808:808]/", true),
        ("http://[2002:808:808::1]/", true),
        ("ftp://example.com/", false),
        ("file:///etc/passwd", false),
        ("gopher://example.com/", false),
        ("javascript:alert(1)", false),
        ("https://user:pass@example.com/", false),
        ("https://user@example.com/", false),
        ("http://localhost/", false),
        ("http://LOCALHOST./", false),
        ("http://api.localhost/", false),
        ("http://printer.local/", false),
        ("http://intranet/", false),
        ("http://127.0.0.1/", false),
        ("http://127.1/", false),
        ("http://2130706433/", false),
        ("http://0x7f000001/", false),
        ("http://0177.0.0.1/", false),
        ("http://0.0.0.0/", false),
        ("http://10.0.0.1/", false),
        ("http://172.16.5.4/", false),
        ("http://172.31.255.255/", false),
        ("http://192.168.1.1/", false),
        ("http://169.254.169.254/latest/meta-data/", false),
        ("http://100.64.0.1/", false),
        ("http://100.127.255.254/", false),
        ("http://192.0.2.10/", false),
        ("http://198.51.100.7/", false),
        ("http://203.0.113.9/", false),
        ("http://198.18.0.1/", false),
        ("http://224.0.0.1/", false),
        ("http://239.255.255.250/", false),
        ("http://240.0.0.1/", false),
        ("http://255.255.255.255/", false),
        ("http://[::1]/", false),
        ("http://[::]/", false),
        ("http://[::ffff:127.0.0.1]/", false),
        ("http://[::ffff:169.254.169.254]/", false),
        ("http://[::127.0.0.1]/", false),
        ("http://[64:ff9b::7f00:1]/", false),
        ("http://[2002:7f00:1::1]/", false),
        ("http://[fc00::1]/", false),
        ("http://[fd12:3456::1]/", false),
        ("http://[fe80::1]/", false),
        ("http://[ff02::1]/", false),
        ("http://[2001:db8::1]/", false),
        ("http://[2001::1]/", false),
        ("http://[100::1]/", false),
        ("not a url", false),
        ("http://", false),
    ];
    assert!(table.len() >= 40);
    for (url, allowed) in table {
        let got = check_url(url, false);
        assert_eq!(got.is_ok(), *allowed, "{url}: {got:?}");
    }
}

#[test]
fn allow_private_lifts_address_checks_only() {
    assert!(check_url("http://127.0.0.1:8080/", true).is_ok());
    assert!(check_url("http://localhost/", true).is_ok());
    assert!(check_url("http://[::1]/", true).is_ok());
    assert_eq!(check_url("ftp://127.0.0.1/", true).unwrap_err(), SsrfError::Scheme);
    assert_eq!(check_url("http://a:b@127.0.0.1/", true).unwrap_err(), SsrfError::UserInfo);
}

#[test]
fn resolver_filter_drops_private_answers_and_fails_when_none_is_left() {
    let sa = |s: &str| SocketAddr::new(s.parse::<IpAddr>().unwrap(), 0);
    let kept = filter_addrs("rebind.example", [sa("127.0.0.1"), sa("93.184.216.34"), sa("::1")]).unwrap();
    assert_eq!(kept, vec![sa("93.184.216.34")]);
    assert_eq!(
        filter_addrs("rebind.example", [sa("10.0.0.1"), sa("169.254.169.254")]).unwrap_err(),
        SsrfError::NoPublicAddress("rebind.example".into())
    );
}
