//! The fault-injecting TCP proxy: one listener per directed node-to-node link `from -> to`.
//! Node `from` runs with `--peer-override to=<listener>`, so every Raft and forwarding
//! connection it opens to `to` goes through that link, and the link decides what gets through.
//!
//! Owns the link modes (pass, blackhole, refuse, delay, lossy) and the connections it relays.
//! It must not know about Raft or HTTP: it moves bytes. Invariants: a change of a link's mode
//! closes every connection open on that link (a stream that lost bytes cannot be resumed, and a
//! healed link must not carry a stream that was cut); every task ends when the [`Proxy`] drops.
//! Needs no root: it is plain sockets on 127.0.0.1 (in a `--netns` run, on the hub's address,
//! where it carries delay and loss only).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::rng;

/// What a link does with the bytes it is given.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum LinkMode {
    /// Relays everything.
    Pass,
    /// Accepts connections and swallows every byte, forwarding nothing (a silent partition:
    /// senders time out).
    Blackhole,
    /// Closes every new connection at once (a cut the sender notices).
    Refuse,
    /// Relays every chunk `ms` late.
    Delay { ms: u64 },
    /// Relays, but stalls a chunk for `stall_ms` with probability `stall` and resets the
    /// connection with probability `reset` per chunk (lost and retransmitted packets).
    Lossy { stall: f64, stall_ms: u64, reset: f64 },
}

/// A link's mode and a generation that grows on every change.
#[derive(Debug, Clone, Copy)]
struct LinkState {
    mode: LinkMode,
    generation: u64,
}

struct Link {
    listen: SocketAddr,
    state: watch::Sender<LinkState>,
}

/// Counters of one link, for the report.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LinkStats {
    pub connections: u64,
    pub bytes: u64,
    pub refused: u64,
    pub swallowed: u64,
    pub resets: u64,
}

/// All links of a cluster.
pub struct Proxy {
    links: BTreeMap<(u64, u64), Link>,
    stats: Arc<Mutex<BTreeMap<(u64, u64), LinkStats>>>,
    tasks: JoinSet<()>,
}

/// Largest chunk relayed at once.
const CHUNK: usize = 16 * 1024;
/// Upper bound of connecting to the real node.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

impl Proxy {
    /// Starts a listener on 127.0.0.1 for every ordered pair of distinct `nodes` (id -> real
    /// address).
    pub async fn start(nodes: &BTreeMap<u64, SocketAddr>, seed: u64) -> Result<Proxy> {
        Proxy::start_on(nodes, seed, IpAddr::V4(Ipv4Addr::LOCALHOST)).await
    }

    /// [`Proxy::start`] with the listeners on `bind`.
    pub async fn start_on(nodes: &BTreeMap<u64, SocketAddr>, seed: u64, bind: IpAddr) -> Result<Proxy> {
        let mut p = Proxy { links: BTreeMap::new(), stats: Arc::default(), tasks: JoinSet::new() };
        for (&from, _) in nodes.iter() {
            for (&to, &target) in nodes.iter() {
                if from != to {
                    p.add_link(from, to, target, seed, bind).await?;
                }
            }
        }
        Ok(p)
    }

    async fn add_link(&mut self, from: u64, to: u64, target: SocketAddr, seed: u64, bind: IpAddr) -> Result<()> {
        let listener = TcpListener::bind(SocketAddr::new(bind, 0)).await.context("binding a proxy listener")?;
        let listen = listener.local_addr()?;
        let (tx, rx) = watch::channel(LinkState { mode: LinkMode::Pass, generation: 0 });
        let stats = self.stats.clone();
        let rng = rng::stream(seed, &format!("link-{from}-{to}"));
        self.tasks.spawn(accept_loop(listener, target, rx, stats, (from, to), rng));
        self.links.insert((from, to), Link { listen, state: tx });
        Ok(())
    }

    /// `--peer-override` for node `from`: `to=listener,...`.
    pub fn override_arg(&self, from: u64) -> String {
        self.links
            .iter()
            .filter(|((f, _), _)| *f == from)
            .map(|((_, t), l)| format!("{t}={}", l.listen))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Where node `from` connects to reach `to`: the listener of link `from -> to`.
    pub fn endpoint(&self, from: u64, to: u64) -> Option<SocketAddr> {
        self.links.get(&(from, to)).map(|l| l.listen)
    }

    /// Sets the mode of link `from -> to` (no-op for an unknown link); closes its connections.
    pub fn set(&self, from: u64, to: u64, mode: LinkMode) {
        if let Some(l) = self.links.get(&(from, to)) {
            l.state.send_modify(|s| {
                s.mode = mode;
                s.generation += 1;
            });
        }
    }

    /// Sets every link to `mode`.
    pub fn set_all(&self, mode: LinkMode) {
        for &(f, t) in self.links.keys() {
            self.set(f, t, mode);
        }
    }

    /// Restores every link that is not passing.
    pub fn heal(&self) {
        for l in self.links.values() {
            if l.state.borrow().mode != LinkMode::Pass {
                l.state.send_modify(|s| {
                    s.mode = LinkMode::Pass;
                    s.generation += 1;
                });
            }
        }
    }

    /// Links currently not passing, as `from->to`.
    pub fn faulty_links(&self) -> Vec<(u64, u64)> {
        self.links.iter().filter(|(_, l)| l.state.borrow().mode != LinkMode::Pass).map(|(k, _)| *k).collect()
    }

    pub fn stats(&self) -> BTreeMap<String, LinkStats> {
        let g = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        g.iter().map(|((f, t), s)| (format!("{f}->{t}"), s.clone())).collect()
    }
}

fn bump(stats: &Mutex<BTreeMap<(u64, u64), LinkStats>>, link: (u64, u64), f: impl FnOnce(&mut LinkStats)) {
    let mut g = stats.lock().unwrap_or_else(|e| e.into_inner());
    f(g.entry(link).or_default());
}

async fn accept_loop(
    listener: TcpListener,
    target: SocketAddr,
    state: watch::Receiver<LinkState>,
    stats: Arc<Mutex<BTreeMap<(u64, u64), LinkStats>>>,
    link: (u64, u64),
    mut rng: StdRng,
) {
    let mut conns = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            // Reap finished connections so the set stays small.
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
        };
        let Ok((client, _)) = accepted else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let st = *state.borrow();
        bump(&stats, link, |s| s.connections += 1);
        match st.mode {
            LinkMode::Refuse => {
                bump(&stats, link, |s| s.refused += 1);
                let _ = client.set_zero_linger();
                drop(client);
            }
            LinkMode::Blackhole => {
                conns.spawn(swallow(client, state.clone(), st.generation, stats.clone(), link));
            }
            _ => {
                let conn_rng = StdRng::seed_from_u64(rng.gen());
                conns.spawn(relay(client, target, state.clone(), st, stats.clone(), link, conn_rng));
            }
        }
    }
}

/// Reads and drops everything until the link changes.
async fn swallow(
    mut client: TcpStream,
    mut state: watch::Receiver<LinkState>,
    generation: u64,
    stats: Arc<Mutex<BTreeMap<(u64, u64), LinkStats>>>,
    link: (u64, u64),
) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        tokio::select! {
            r = client.read(&mut buf) => match r {
                Ok(0) | Err(_) => return,
                Ok(n) => bump(&stats, link, |s| s.swallowed += n as u64),
            },
            changed = state.changed() => {
                if changed.is_err() || state.borrow().generation != generation {
                    let _ = client.set_zero_linger();
                    return;
                }
            }
        }
    }
}

/// Relays both directions under the link's mode until either side closes or the mode changes.
async fn relay(
    client: TcpStream,
    target: SocketAddr,
    mut state: watch::Receiver<LinkState>,
    st: LinkState,
    stats: Arc<Mutex<BTreeMap<(u64, u64), LinkStats>>>,
    link: (u64, u64),
    mut rng: StdRng,
) {
    let server = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target)).await {
        Ok(Ok(s)) => s,
        _ => {
            let _ = client.set_zero_linger();
            return;
        }
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let rng2 = StdRng::seed_from_u64(rng.gen());
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let up = pump(cr, sw, st.mode, stats.clone(), link, rng);
    let down = pump(sr, cw, st.mode, stats.clone(), link, rng2);
    let changed = async {
        loop {
            if state.changed().await.is_err() || state.borrow().generation != st.generation {
                return;
            }
        }
    };
    tokio::select! {
        _ = async { tokio::join!(up, down) } => {}
        _ = changed => {}
    }
}

/// Copies one direction, applying the link mode to each chunk.
async fn pump(
    from: tokio::net::tcp::OwnedReadHalf,
    to: tokio::net::tcp::OwnedWriteHalf,
    mode: LinkMode,
    stats: Arc<Mutex<BTreeMap<(u64, u64), LinkStats>>>,
    link: (u64, u64),
    rng: StdRng,
) {
    match mode {
        LinkMode::Delay { ms } => pump_delayed(from, to, Duration::from_millis(ms), stats, link).await,
        _ => pump_inline(from, to, mode, stats, link, rng).await,
    }
}

/// Every byte arrives `delay` late, as on a long wire: chunks are read as they come and written
/// when their time is due, so the delay does not add up over the chunks of one message.
async fn pump_delayed(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
    stats: Arc<Mutex<BTreeMap<(u64, u64), LinkStats>>>,
    link: (u64, u64),
) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(tokio::time::Instant, Vec<u8>)>(1024);
    let reader = async move {
        let mut buf = vec![0u8; CHUNK];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.send((tokio::time::Instant::now() + delay, buf[..n].to_vec())).await.is_err() {
                        break;
                    }
                }
            }
        }
    };
    let writer = async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&chunk).await.is_err() {
                break;
            }
            bump(&stats, link, |s| s.bytes += chunk.len() as u64);
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}

/// Relays chunk by chunk; a lossy link stalls (head-of-line, like a retransmission) or resets.
async fn pump_inline(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mode: LinkMode,
    stats: Arc<Mutex<BTreeMap<(u64, u64), LinkStats>>>,
    link: (u64, u64),
    mut rng: StdRng,
) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let LinkMode::Lossy { stall, stall_ms, reset } = mode {
            if rng.gen_bool(reset.clamp(0.0, 1.0)) {
                bump(&stats, link, |s| s.resets += 1);
                return;
            }
            if rng.gen_bool(stall.clamp(0.0, 1.0)) {
                tokio::time::sleep(Duration::from_millis(stall_ms)).await;
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
        bump(&stats, link, |s| s.bytes += n as u64);
    }
    let _ = to.shutdown().await;
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    /// An echo server on an ephemeral port.
    async fn echo() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    }

    fn listen_of(p: &Proxy, from: u64, to: u64) -> SocketAddr {
        p.links[&(from, to)].listen
    }

    async fn round_trip(addr: SocketAddr, timeout: Duration) -> Result<Vec<u8>> {
        let mut s = tokio::time::timeout(timeout, TcpStream::connect(addr)).await??;
        s.write_all(b"ping").await?;
        let mut buf = [0u8; 4];
        tokio::time::timeout(timeout, s.read_exact(&mut buf)).await??;
        Ok(buf.to_vec())
    }

    async fn two_node_proxy() -> Proxy {
        let a = echo().await;
        let b = echo().await;
        let nodes = BTreeMap::from([(1, a), (2, b)]);
        Proxy::start(&nodes, 1).await.unwrap()
    }

    #[tokio::test]
    async fn passes_then_cuts_then_heals() {
        let p = two_node_proxy().await;
        assert_eq!(p.override_arg(1), format!("2={}", listen_of(&p, 1, 2)));
        let l12 = listen_of(&p, 1, 2);
        assert_eq!(round_trip(l12, Duration::from_secs(2)).await.unwrap(), b"ping");

        p.set(1, 2, LinkMode::Blackhole);
        assert!(round_trip(l12, Duration::from_millis(300)).await.is_err(), "blackholed link answered");
        // The other direction still passes.
        assert!(round_trip(listen_of(&p, 2, 1), Duration::from_secs(2)).await.is_ok());

        p.set(1, 2, LinkMode::Refuse);
        assert!(round_trip(l12, Duration::from_millis(500)).await.is_err(), "refusing link answered");
        assert_eq!(p.faulty_links(), vec![(1, 2)]);

        p.heal();
        assert!(p.faulty_links().is_empty());
        assert_eq!(round_trip(l12, Duration::from_secs(2)).await.unwrap(), b"ping");
    }

    #[tokio::test]
    async fn a_mode_change_closes_open_connections() {
        let p = two_node_proxy().await;
        let mut s = TcpStream::connect(listen_of(&p, 1, 2)).await.unwrap();
        s.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).await.unwrap();
        p.set(1, 2, LinkMode::Delay { ms: 10 });
        let mut rest = Vec::new();
        let r = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut rest)).await;
        assert!(matches!(r, Ok(Ok(0)) | Ok(Err(_))), "the connection stayed open: {r:?}");
    }

    #[tokio::test]
    async fn delay_delays() {
        let p = two_node_proxy().await;
        p.set(1, 2, LinkMode::Delay { ms: 150 });
        let start = Instant::now();
        round_trip(listen_of(&p, 1, 2), Duration::from_secs(3)).await.unwrap();
        // Both directions are delayed.
        assert!(start.elapsed() >= Duration::from_millis(300), "{:?}", start.elapsed());
    }

    #[tokio::test]
    async fn delay_does_not_add_up_over_chunks() {
        let p = two_node_proxy().await;
        p.set(1, 2, LinkMode::Delay { ms: 200 });
        let mut s = TcpStream::connect(listen_of(&p, 1, 2)).await.unwrap();
        let start = Instant::now();
        for _ in 0..10 {
            s.write_all(b"ping").await.unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut buf = [0u8; 40];
        tokio::time::timeout(Duration::from_secs(3), s.read_exact(&mut buf)).await.unwrap().unwrap();
        // Ten pipelined chunks, 200 ms each way: about 450 ms, far from 10 x 400 ms.
        assert!(start.elapsed() < Duration::from_millis(1500), "{:?}", start.elapsed());
        assert!(start.elapsed() >= Duration::from_millis(400), "{:?}", start.elapsed());
    }

    #[tokio::test]
    async fn lossy_resets_some_connections() {
        let p = two_node_proxy().await;
        p.set(1, 2, LinkMode::Lossy { stall: 0.0, stall_ms: 0, reset: 1.0 });
        assert!(round_trip(listen_of(&p, 1, 2), Duration::from_secs(1)).await.is_err());
        assert!(p.stats().get("1->2").is_some_and(|s| s.resets >= 1));
    }
}
