//! The simulated world: the nodes (their disks, clocks and current incarnation), the network's
//! state, the seeded random source and the recorded history.
//!
//! Everything runs on one tokio thread with the clock paused, so an instant is "simulated time
//! since the start of the run" and every lock here is held only between two awaits.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use raftcron_node::ids::NodeId;
use raftcron_node::raft::Raft;
use raftcron_node::scheduler::SchedulerConfig;
use tokio::task::JoinSet;
use tokio::time::Instant;
use uuid::Uuid;

use crate::check::History;
use crate::rng::Rng;
use crate::sched::Sched;
use crate::store::Disk;

/// Every node's wall clock starts near 2026-01-01T00:00:00Z.
pub const WALL0_MS: i64 = 1_767_225_600_000;

/// One node's clocks: a monotonic clock running at `rate` (within the drift bound), and a wall
/// clock off by `wall_offset_ms`.
#[derive(Debug, Clone, Copy)]
pub struct NodeClock {
    pub rate: f64,
    pub mono0_us: i64,
    pub wall_offset_ms: i64,
}

/// Who can talk to whom, and how badly.
#[derive(Debug, Clone)]
pub struct NetState {
    /// Nodes talk only within their group (a partition).
    pub group: BTreeMap<NodeId, u32>,
    /// Directed links that drop everything.
    pub blocked: BTreeSet<(NodeId, NodeId)>,
    /// Probability that one message (a request or an answer) is lost.
    pub loss: f64,
    /// One-way delay of a message, uniform in this range (milliseconds).
    pub delay_ms: (u64, u64),
}

/// What survives a node's crash.
pub struct Slot {
    pub disk: Arc<Mutex<Disk>>,
    pub clock: NodeClock,
    pub handle: Option<Arc<NodeHandle>>,
}

/// One incarnation (process lifetime) of a node.
pub struct NodeHandle {
    pub id: NodeId,
    pub raft: Raft,
    /// Numbered across the run, for the history.
    pub inc: u64,
    /// The owner loop's incarnation id, as the node's `owner::run` draws one per process.
    pub uuid: Uuid,
    pub clock: NodeClock,
    pub start: Instant,
    pub disk: Arc<Mutex<Disk>>,
    pub sched: Mutex<Sched>,
    /// The scheduler model's tasks: dropped (aborted) when the process dies.
    pub tasks: Mutex<Option<JoinSet<()>>>,
    /// As `cluster::LeaseGrants::exclusive`: no lease grant between a shard move's judgement
    /// and its commit.
    pub moving: Arc<tokio::sync::Mutex<()>>,
}

impl NodeHandle {
    fn elapsed_us(&self) -> i64 {
        Instant::now().duration_since(self.start).as_micros() as i64
    }

    /// This node's monotonic clock, in microseconds.
    pub fn mono_us(&self) -> i64 {
        self.clock.mono0_us + (self.elapsed_us() as f64 * self.clock.rate) as i64
    }

    /// The monotonic instant `mono_us` (this node's monotonic clock) maps to, for the node's own
    /// types that take `std::time::Instant`.
    pub fn instant_of(&self, mono_us: i64) -> std::time::Instant {
        static ANCHOR: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        *ANCHOR.get_or_init(std::time::Instant::now) + Duration::from_micros(mono_us.max(0) as u64)
    }

    /// This node's monotonic clock now, as an `Instant`.
    pub fn instant(&self) -> std::time::Instant {
        self.instant_of(self.mono_us())
    }

    /// This node's wall clock, in milliseconds since the Unix epoch.
    pub fn wall_ms(&self) -> i64 {
        WALL0_MS + self.clock.wall_offset_ms + (self.elapsed_us() as f64 * self.clock.rate / 1000.0) as i64
    }

    /// Sleeps for `d` as measured by this node's own clock.
    pub async fn sleep_own(&self, d: Duration) {
        tokio::time::sleep(Duration::from_secs_f64(d.as_secs_f64() / self.clock.rate)).await;
    }

    /// Runs `fut` as part of this process: it dies with it.
    pub fn spawn(&self, fut: impl std::future::Future<Output = ()> + Send + 'static) {
        if let Some(set) = self.tasks.lock().unwrap().as_mut() {
            while set.try_join_next().is_some() {}
            set.spawn(fut);
        }
    }
}

/// Which ways of the node a run models, besides its defaults.
#[derive(Debug, Clone, Copy, Default)]
pub struct Model {
    /// See [`World::forward_moves`].
    pub forward_moves: bool,
    /// See [`World::eager`].
    pub eager: bool,
    /// See [`World::late_writes`].
    pub late_writes: bool,
    /// See [`World::unfenced_releases`].
    pub unfenced_releases: bool,
    /// See [`World::whole_seconds`].
    pub whole_seconds: bool,
}

impl Model {
    /// `RAFTCRON_SIM_FORWARD_MOVES=1`, `RAFTCRON_SIM_EAGER=1`, `RAFTCRON_SIM_LATE_WRITES=1`
    /// `RAFTCRON_SIM_UNFENCED_RELEASES=1` and `RAFTCRON_SIM_WHOLE_SECONDS=1`.
    pub fn from_env() -> Model {
        Model {
            forward_moves: std::env::var_os("RAFTCRON_SIM_FORWARD_MOVES").is_some(),
            eager: std::env::var_os("RAFTCRON_SIM_EAGER").is_some(),
            late_writes: std::env::var_os("RAFTCRON_SIM_LATE_WRITES").is_some(),
            unfenced_releases: std::env::var_os("RAFTCRON_SIM_UNFENCED_RELEASES").is_some(),
            whole_seconds: std::env::var_os("RAFTCRON_SIM_WHOLE_SECONDS").is_some(),
        }
    }
}

/// The whole simulated cluster of one run.
pub struct World {
    pub ids: Vec<NodeId>,
    pub start: Instant,
    pub rng: Mutex<Rng>,
    pub net: Mutex<NetState>,
    pub slots: Mutex<BTreeMap<NodeId, Slot>>,
    pub hist: Mutex<History>,
    pub cfg: SchedulerConfig,
    pub verbose: bool,
    /// Model `scheduler::leader` as it is: shard moves written through `Cluster::write`,
    /// which forwards them to the current leader (`RAFTCRON_SIM_FORWARD_MOVES=1`).
    pub forward_moves: bool,
    /// Model `raft::eager`: a leader sends a new entry to its peers before its own sync, and a
    /// crash before that sync loses the entry from its log, as a power cut would.
    pub eager: bool,
    /// Now and then (5 % of forwarded writes) hold a forwarded write in the network for
    /// 0.5-12 s, past its sender's timeout: it runs on the leader after its sender gave up on
    /// it and perhaps sent it again (`RAFTCRON_SIM_LATE_WRITES=1`).
    pub late_writes: bool,
    /// Model the recorder as it was before its releases were fenced (simulation finding 11):
    /// a release whose outcome is unknown goes again at once, with no fence
    /// (`RAFTCRON_SIM_UNFENCED_RELEASES=1`).
    pub unfenced_releases: bool,
    /// Jobs fire on whole seconds only, as before schedules had millisecond offsets; otherwise
    /// every other job has one (`RAFTCRON_SIM_WHOLE_SECONDS=1`).
    pub whole_seconds: bool,
    /// The faults are over: no write is held any more (see `late_writes`).
    pub healed: std::sync::atomic::AtomicBool,
}

impl World {
    pub fn new(seed: u64, ids: Vec<NodeId>, cfg: SchedulerConfig, model: Model) -> World {
        World {
            ids,
            start: Instant::now(),
            rng: Mutex::new(Rng::new(seed)),
            net: Mutex::new(NetState {
                group: BTreeMap::new(),
                blocked: BTreeSet::new(),
                loss: 0.0,
                delay_ms: (1, 10),
            }),
            slots: Mutex::new(BTreeMap::new()),
            hist: Mutex::new(History::default()),
            cfg,
            verbose: std::env::var_os("RAFTCRON_SIM_TRACE").is_some(),
            forward_moves: model.forward_moves,
            eager: model.eager,
            late_writes: model.late_writes,
            unfenced_releases: model.unfenced_releases,
            whole_seconds: model.whole_seconds,
            healed: Default::default(),
        }
    }

    /// Simulated seconds since the start of the run.
    pub fn now_s(&self) -> f64 {
        Instant::now().duration_since(self.start).as_secs_f64()
    }

    pub fn rand<T>(&self, f: impl FnOnce(&mut Rng) -> T) -> T {
        f(&mut self.rng.lock().unwrap())
    }

    pub fn handle(&self, id: NodeId) -> Option<Arc<NodeHandle>> {
        self.slots.lock().unwrap().get(&id).and_then(|s| s.handle.clone())
    }

    pub fn handles(&self) -> Vec<Arc<NodeHandle>> {
        self.slots.lock().unwrap().values().filter_map(|s| s.handle.clone()).collect()
    }

    pub fn is_up(&self, id: NodeId) -> bool {
        self.handle(id).is_some()
    }

    /// Whether a message from `a` reaches `b` now.
    pub fn link_up(&self, a: NodeId, b: NodeId) -> bool {
        if !self.is_up(a) || !self.is_up(b) {
            return false;
        }
        let net = self.net.lock().unwrap();
        net.group.get(&a) == net.group.get(&b) && !net.blocked.contains(&(a, b))
    }

    /// Prints an event when `RAFTCRON_SIM_TRACE` is set (to follow a replayed seed).
    pub fn trace(&self, what: impl FnOnce() -> String) {
        if self.verbose {
            println!("{:9.3}s {}", self.now_s(), what());
        }
    }

    /// Records a broken invariant; the driver fails the run after the current step.
    pub fn violation(&self, msg: String) {
        let at = self.now_s();
        self.hist.lock().unwrap().violations.push(format!("t={at:.3}s: {msg}"));
    }
}
