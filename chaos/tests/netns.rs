//! The `--netns` network on the real kernel, without a cluster: three node namespaces joined by
//! the hub's bridge, a listener in each, and the cuts the nemesis makes. It checks that a cut
//! `from -> to` stops exactly the connections `from` opens to `to` (the reverse direction, the
//! other nodes and the hub still get through), that a refusing cut resets at once, that a heal
//! restores the link, that the counters saw the dropped packets, and that destroying the run
//! leaves no namespace behind and the root namespace's interfaces as they were.
//!
//! Needs root, `ip`, `nft`, `bash` (its `/dev/tcp` is the client) and `perl` (the listener), so
//! it is ignored by default:
//! `cargo test -p raftcron-chaos --test netns -- --ignored`.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use raftcron_chaos::netns::links::NetnsLinks;
use raftcron_chaos::netns::rules::Cut;
use raftcron_chaos::netns::topology::{clean_stale, list_namespaces, Topology};
use raftcron_chaos::netns::{preflight, Layout};

#[derive(Debug, PartialEq, Eq)]
enum Reach {
    Connected,
    Refused,
    TimedOut,
}

/// Opens a TCP connection from inside `ns` to `to` (bash's `/dev/tcp`), for at most 1 s.
#[allow(clippy::expect_used)] // A test helper: a command that cannot run fails the test.
fn reach(ns: &str, to: std::net::SocketAddr) -> Reach {
    let script = format!("exec 3<>/dev/tcp/{}/{}", to.ip(), to.port());
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "timeout", "1", "bash", "-c", &script])
        .stdin(Stdio::null())
        .output()
        .expect("running ip netns exec");
    match out.status.code() {
        Some(0) => Reach::Connected,
        Some(124) => Reach::TimedOut,
        _ => Reach::Refused,
    }
}

/// A listener that accepts and closes, inside node `id`'s namespace.
#[allow(clippy::expect_used)] // A test helper: a command that cannot run fails the test.
fn listener(layout: &Layout, id: u64) -> Child {
    let code = format!(
        "use IO::Socket::INET; my $s = IO::Socket::INET->new(LocalAddr => '{}', Listen => 64, ReuseAddr => 1) \
         or die $!; while (my $c = $s->accept) {{ close $c }}",
        layout.node_addr(id)
    );
    Command::new("ip")
        .args(["netns", "exec", &layout.node_ns(id), "perl", "-e", &code])
        .stdin(Stdio::null())
        .spawn()
        .expect("starting perl")
}

#[allow(clippy::expect_used)] // A test helper: a command that cannot run fails the test.
fn root_links() -> Vec<String> {
    let out = Command::new("ip").args(["-o", "link", "show"]).output().expect("ip link");
    let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(':').nth(1).map(|n| n.trim().to_string()))
        .collect();
    names.sort();
    names
}

#[tokio::test]
#[ignore = "needs root, ip, nft, bash and perl: cargo test -p raftcron-chaos --test netns -- --ignored"]
async fn cuts_are_directed_heal_and_leave_nothing_behind() {
    preflight().expect("root, ip and nft");
    let before = root_links();
    let layout = Layout::for_pid(std::process::id(), 3);
    let mut topo = Topology::create(&layout).expect("creating the namespaces");
    let mut servers: Vec<Child> = layout.ids().map(|id| listener(&layout, id)).collect();
    let (n1, n2, n3, hub) = (layout.node_ns(1), layout.node_ns(2), layout.node_ns(3), layout.hub());
    let a1 = layout.node_addr(1);
    let a2 = layout.node_addr(2);
    let deadline = Instant::now() + Duration::from_secs(10);
    while reach(&n1, a2) != Reach::Connected || reach(&n2, a1) != Reach::Connected {
        assert!(Instant::now() < deadline, "the listeners did not come up");
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut endpoints = BTreeMap::new();
    for f in layout.ids() {
        for t in layout.ids().filter(|t| *t != f) {
            endpoints.insert((f, t), layout.node_addr(t));
        }
    }
    let links = NetnsLinks::new(layout.clone(), endpoints);

    links.set(&[(1, 2)], Some(Cut::Drop)).await.expect("cutting 1->2");
    assert_eq!(reach(&n1, a2), Reach::TimedOut, "1->2 is cut");
    assert_eq!(reach(&n2, a1), Reach::Connected, "2->1 is not");
    assert_eq!(reach(&n3, a2), Reach::Connected, "3->2 is not");
    assert_eq!(reach(&hub, a2), Reach::Connected, "the controller still reaches 2");
    assert_eq!(links.faulty_links().await, vec![(1, 2)]);

    links.set(&[(1, 2)], Some(Cut::Reject)).await.expect("refusing 1->2");
    let t = Instant::now();
    assert_eq!(reach(&n1, a2), Reach::Refused);
    assert!(t.elapsed() < Duration::from_millis(900), "a refused link answers at once");

    links.heal().await.expect("healing");
    assert_eq!(reach(&n1, a2), Reach::Connected, "healed");
    assert!(links.faulty_links().await.is_empty());
    let stats = links.stats().await;
    assert_eq!(stats["1->2"].cuts, 1, "{stats:?}");
    assert!(stats["1->2"].packets >= 2, "the dropped SYNs were counted: {stats:?}");

    for s in &mut servers {
        let _ = s.kill();
        let _ = s.wait();
    }
    let gone = topo.destroy().expect("deleting the namespaces");
    assert_eq!(gone.len(), 4);
    let left = list_namespaces().unwrap();
    assert!(layout.namespaces().iter().all(|n| !left.contains(n)), "left: {left:?}");
    assert_eq!(root_links(), before, "the root namespace's interfaces changed");
}

#[test]
#[ignore = "needs root, ip and nft: cargo test -p raftcron-chaos --test netns -- --ignored"]
fn leftovers_of_a_dead_owner_are_removed() {
    preflight().expect("root, ip and nft");
    // A pid above pid_max never belongs to a live process.
    let pid_max: u32 = std::fs::read_to_string("/proc/sys/kernel/pid_max").unwrap().trim().parse().unwrap();
    let stale = Layout::for_pid(pid_max + 1, 1);
    for ns in stale.namespaces() {
        assert!(Command::new("ip").args(["netns", "add", &ns]).status().unwrap().success());
    }
    let lines = clean_stale();
    let left = list_namespaces().unwrap();
    assert!(stale.namespaces().iter().all(|n| !left.contains(n)), "left: {left:?}; {lines:?}");
    assert!(lines.iter().any(|l| l.contains(&stale.hub())), "{lines:?}");
}
