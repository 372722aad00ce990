//! Typed identifiers. Nothing else in the node passes bare `u64`s or `String`s for these.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A Raft member id. openraft wants a plain integer, so this one is an alias.
pub type NodeId = u64;

/// A job's id: a UUIDv7 chosen by the node that takes the create request (48 bits of
/// milliseconds, then 74 random bits). Time-ordered ids keep a tenant's jobs in creation order,
/// so a list page does not shift when jobs are created meanwhile, and new jobs' rows go to the
/// end of each table's key range (cheaper inserts than at random places). The shard of a job is
/// a hash of its id (`assignment::shard_of`), so ids made in the same millisecond still spread.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct JobId(pub Uuid);

impl JobId {
    pub fn generate() -> JobId {
        JobId(Uuid::now_v7())
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A tenant: every job and key belongs to exactly one.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TenantId(pub String);

impl TenantId {
    /// The tenant of the bootstrap admin key and of everything created before tenants exist.
    pub fn default_tenant() -> TenantId {
        TenantId("default".to_string())
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An API key's public id (not the key itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct KeyId(pub Uuid);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}
