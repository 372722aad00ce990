//! raftcron-client: the wire types of raftcron's public REST API, shared with the node so the
//! two cannot drift, and a typed async HTTP client that fails over between node URLs.
//!
//! The `raftcronctl` binary (feature `cli`, on by default) lives in `src/bin/raftcronctl/`;
//! the library itself never depends on the command-line crates.
//!
//! This crate must not depend on the node: it is serde types, the stable [`ErrorCode`]s and an
//! HTTP client only.

pub mod access;
pub mod client;
pub mod error;
pub mod types;

pub use access::*;
pub use client::{unconfirmed_nodes, Client, ClientBuilder, ClientError, Revoked, SnapshotDownload, UNCONFIRMED_NODES};
pub use error::{ErrorBody, ErrorCode};
pub use types::*;
