//! raftcron-node: one node of a raftcron cluster.
//!
//! Architecture, from the outside in (arrows are the only allowed imports):
//!
//! ```text
//! main/dev -> server (composition root)
//! api      -> cluster, state::read, model          public REST API, auth, error mapping
//! scheduler -> cluster, executor, state, model    leases, shard moves, claims, dispatch
//! cluster  -> raft::handle, state, model           routing to the leader, read barriers, formation
//! executor -> model                               outbound HTTP: the SSRF guard
//! raft     -> state, store                         openraft: log store, state machine, snapshots, peer RPC
//! state    -> store (through StateRead), model     deterministic apply: Command -> CommandResult
//! store                                            RocksDB: tables, batches, versioned codec
//! reseal   -> cluster, state, model, crypto       re-sealing secrets after a master-key rotation
//! model    -> crypto                              jobs, cron schedules, API keys, tenants: pure
//! clock, ids, config, crypto, tls                  leaves (crypto: sealing; tls: rustls setup)
//! metrics                                          leaf: the Prometheus registry; any layer records into it
//! batching                                         leaf: the queue both write batchings drain
//! level                                            leaf: release levels nodes tell each other
//! ```
//!
//! The design notes live in `docs/design/`.

pub mod api;
pub mod batching;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod crypto;
pub mod dev;
pub mod executor;
pub mod failpoint;
pub mod ids;
pub mod level;
pub mod metrics;
pub mod model;
pub mod raft;
pub mod request_id;
pub mod reseal;
pub mod restore;
pub mod scheduler;
pub mod server;
pub mod state;
pub mod store;
pub mod tls;
