//! The audit trail: who changed which key, tenant or job, from where, and when.
//!
//! Entries are written by the state machine in the same batch as the change they describe, so
//! the trail and the state never disagree. An entry names fields, never values: no secret can
//! reach the trail.

use serde::{Deserialize, Serialize};

use crate::ids::{KeyId, TenantId};

/// Entries kept; older ones are dropped as new ones arrive.
pub const AUDIT_KEPT: u64 = 10_000;

/// Who asked for a change, as the API node saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// `None` for the node itself (the first admin key, re-encryption).
    pub key_id: Option<KeyId>,
    pub prefix: String,
    pub tenant: TenantId,
    pub client_ip: Option<String>,
}

impl Actor {
    /// A change the cluster makes by itself.
    pub fn system() -> Actor {
        Actor { key_id: None, prefix: String::new(), tenant: TenantId::default_tenant(), client_ip: None }
    }
}

/// One stored entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub seq: u64,
    pub at_ms: i64,
    pub actor: Actor,
    /// The tenant the change is in.
    pub tenant: TenantId,
    pub action: String,
    pub target_id: String,
    pub detail: String,
}
