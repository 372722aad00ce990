//! The composition root: opens the store, starts Raft, the cluster layer and the HTTP server,
//! forms the cluster, and shuts everything down in order.
//!
//! Every background task is named here, owned here and stopped here. Order at shutdown: stop
//! the background tasks while the HTTP server still runs (the owner records its last results
//! through Raft, and Raft's peers reach this node through that server: closed first, the node
//! would lose its leader and the results, and the stop would wait out the write timeout; they
//! get at most 3 s, as a node without a majority cannot commit them at all), then
//! stop accepting requests, then stop Raft (which flushes nothing it has not already synced:
//! durability never depends on a clean shutdown), then write the memtables to disk so that the
//! next start replays no WAL.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::DefaultBodyLimit;
use axum::middleware::from_fn_with_state;
use tokio::net::TcpListener;

use crate::api::{self, AppState};
use crate::clock::SystemClock;
use crate::cluster::{bootstrap, drill, forward, Cluster};
use crate::config::Config;
use crate::executor::http::Executor;
use crate::executor::notify::Notifier;
use crate::metrics::Metrics;
use crate::raft::handle::RaftHandle;
use crate::raft::network::{LastContact, PeerClient, PeerNetwork};
use crate::raft::rpc::{self, PeerGate};
use crate::scheduler::{self, SchedulerConfig};
use crate::store::Store;

/// Runs a node until `shutdown` resolves. Returns the bound address through `bound` as soon as
/// the listener is up (tests and `dev` use it).
pub async fn run(
    cfg: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
    bound: Option<tokio::sync::oneshot::Sender<std::net::SocketAddr>>,
) -> anyhow::Result<()> {
    let metrics = Metrics::new()?;
    let store = Store::open(&cfg.data_dir).with_context(|| format!("opening {}", cfg.data_dir.display()))?;
    // A release older than the cluster's level cannot read all of this state (`crate::level`).
    let cluster_level = crate::state::cluster_level(&store).context("reading the cluster's release level")?;
    if crate::level::own() < cluster_level {
        anyhow::bail!(
            "this release is of level {} but the cluster's data is of level {cluster_level}: run a release of level \
             {cluster_level} or later on this node (going back to an older release is not supported)",
            crate::level::own()
        );
    }
    let keyring_ids = cfg.keyring.ids();
    tracing::info!(master_key_id = %keyring_ids.current, readable = ?keyring_ids.all, "keyring loaded");
    let tls_server = match &cfg.tls {
        Some(t) => {
            let mutual = t.peer_identity.as_ref().map(|_| t.peer_ca.as_path());
            Some(crate::tls::server_config(&t.cert, &t.key, mutual).context("loading the TLS certificate")?)
        }
        None => None,
    };
    let peers = PeerClient::new(cfg.cluster_secret.clone(), cfg.peer_overrides.clone(), &keyring_ids, cfg.tls.as_ref())
        .map_err(|e| anyhow::anyhow!("building the peer client: {e}"))?;
    let contact = LastContact::default();
    let network = PeerNetwork::new(peers.clone(), contact.clone());
    let raft = crate::raft::start(cfg.node_id, store.clone(), network, &cfg.tuning, metrics.clone())
        .await
        .context("starting raft")?;
    let handle = RaftHandle::new(raft.clone(), cfg.node_id, store.clone(), contact, metrics.clone());
    let clock = SystemClock::with_offset_ms(cfg.clock_offset_ms);
    // For `raft::leader_watch`, spawned with the other background tasks below (`cluster` takes
    // these).
    let (watch_raft, watch_peers) = (raft.clone(), peers.clone());
    let cluster = Cluster::new(handle, store, peers, Arc::new(clock.clone()));
    if cfg.allow_private_targets {
        tracing::warn!("--allow-private-targets is on: jobs may call loopback and private addresses");
    }

    if cfg.clock_offset_ms != 0 || cfg.clock_drills {
        tracing::warn!(offset_ms = cfg.clock_offset_ms, drills = cfg.clock_drills, "wall-clock drills are on");
    }
    if !cfg.peer_overrides.is_empty() {
        tracing::warn!(overrides = ?cfg.peer_overrides, "peer addresses overridden on this node");
    }

    let mutual_tls = cfg.tls.as_ref().is_some_and(|t| t.peer_identity.is_some());
    let gate = PeerGate::new(&cfg.cluster_secret, keyring_ids, mutual_tls);
    // The slots this process sends, as other nodes may ask (`scheduler::holding`).
    let holding = crate::scheduler::holding::Holding::default();
    let mut internal = rpc::routes(raft)
        .merge(forward::routes(cluster.clone()))
        .merge(crate::scheduler::holding::routes(holding.clone()))
        .merge(crate::cluster::spread::routes(cluster.clone()))
        .layer(from_fn_with_state(gate.clone(), rpc::require_peer))
        .layer(DefaultBodyLimit::max(rpc::MAX_INTERNAL_BODY));
    if cfg.clock_drills {
        internal = internal.merge(drill::routes(clock).layer(from_fn_with_state(gate, rpc::require_secret)));
    }
    let reseal = crate::reseal::Progress::default();
    let guard =
        api::guard::Guard::new(cfg.trusted_proxies.clone(), cfg.rate_limit_per_minute, cfg.auth_failures_per_minute);
    let app = api::routes(AppState {
        cluster: cluster.clone(),
        allow_private_targets: cfg.allow_private_targets,
        guard: guard.clone(),
        keyring: cfg.keyring.clone(),
        reseal: reseal.clone(),
        metrics: metrics.clone(),
    })
    .merge(internal);

    let listener = TcpListener::bind(cfg.listen).await.with_context(|| format!("binding {}", cfg.listen))?;
    let local = listener.local_addr()?;
    let scheme = if tls_server.is_some() { "https" } else { "http" };
    tracing::info!(node_id = cfg.node_id, addr = %local, advertise = %cfg.advertise, scheme, mutual_tls, "listening");
    if let Some(tx) = bound {
        let _ = tx.send(local);
    }

    // Formed before the server accepts a connection: a peer's vote or append reaching a pristine
    // node between its "no state yet" check and its initialize would make openraft refuse the
    // initialize (and log it as an error). Peers' requests wait in the listen backlog meanwhile.
    if let Err(e) = bootstrap::form(&cluster, &cfg.initial_cluster).await {
        tracing::error!(error = %e, "forming the cluster");
    }

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (http_stop_tx, mut http_stop) = tokio::sync::watch::channel(false);
    let http = tokio::spawn(async move {
        let stopped = async move {
            let _ = http_stop.changed().await;
        };
        match tls_server {
            // With TLS on, a plain-HTTP client fails the handshake and is disconnected.
            Some(tls) => crate::tls::serve_tls(listener, tls, app, stopped).await,
            None => {
                // Answers leave at once (Raft replies are small; Nagle would hold them back).
                let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
                    let _ = tcp.set_nodelay(true);
                });
                let served = axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>())
                    .with_graceful_shutdown(stopped)
                    .await;
                if let Err(e) = served {
                    tracing::error!(error = %e, "http server failed");
                }
            }
        }
    });

    let formation =
        bootstrap::Formation { shard_count: cfg.shards, runs_kept: cfg.run_history, lease_ms: cfg.lease_ms };
    let admin =
        tokio::spawn(bootstrap::ensure_admin_key(cluster.clone(), cfg.admin_key.clone(), formation, stop_rx.clone()));
    let executor = Executor::new(cfg.allow_private_targets, metrics.clone())
        .context("building the HTTP executor")?
        .with_keyring(cfg.keyring.clone());
    let notifier = Notifier::new(cfg.notify_webhooks.clone(), metrics.clone()).context("building the notifier")?;
    let sched_cfg = SchedulerConfig {
        shard_count: cfg.shards,
        runs_kept: cfg.run_history,
        dead_after: cfg.dead_after,
        ..SchedulerConfig::default()
    }
    .with_lease(Duration::from_millis(u64::from(cfg.lease_ms)));
    let leader_watch = tokio::spawn(crate::raft::leader_watch::run(
        watch_raft,
        cfg.node_id,
        watch_peers,
        crate::raft::leader_watch::Timing::new(&cfg.tuning),
        metrics.raft.early_campaigns.clone(),
        stop_rx.clone(),
    ));
    let scheduler = scheduler::spawn(cluster.clone(), executor, notifier, sched_cfg, metrics, holding, stop_rx.clone());
    let key_use = tokio::spawn(api::guard::flush_key_use(guard, cluster.clone(), stop_rx.clone()));
    let resealer = tokio::spawn(crate::reseal::run(cluster.clone(), cfg.keyring.clone(), reseal, stop_rx.clone()));
    let level_raise = tokio::spawn(crate::cluster::level_raise::run(cluster.clone(), stop_rx.clone()));

    shutdown.await;
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    let background = async {
        let _ = admin.await;
        let _ = key_use.await;
        let _ = resealer.await;
        let _ = level_raise.await;
        let _ = leader_watch.await;
        for task in scheduler {
            let _ = task.await;
        }
    };
    // Their last writes cannot commit without a majority (the last node of a cluster that is
    // stopping): the stop goes on without them. What they did not record, the next owner
    // settles (docs/design/firing.md).
    if tokio::time::timeout(BACKGROUND_GRACE, background).await.is_err() {
        tracing::warn!(
            grace_s = BACKGROUND_GRACE.as_secs(),
            "background tasks did not finish their last writes in time (no majority?): stopping without them"
        );
    }
    let _ = http_stop_tx.send(true);
    cluster.raft.shutdown().await;
    let _ = http.await;
    // A restart then opens at once instead of replaying the WAL into memtables.
    let store = cluster.store.clone();
    let started = std::time::Instant::now();
    match tokio::task::spawn_blocking(move || store.flush_memtables()).await {
        Ok(Ok(())) => tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "memtables flushed"),
        Ok(Err(e)) => tracing::warn!(error = %e, "flushing the memtables at shutdown"),
        Err(e) => tracing::warn!(error = %e, "flushing the memtables at shutdown"),
    }
    tracing::info!("stopped");
    Ok(())
}

/// How long a shutdown waits for the background tasks' last writes.
const BACKGROUND_GRACE: Duration = Duration::from_secs(3);

/// Resolves on SIGINT or SIGTERM.
pub async fn signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
