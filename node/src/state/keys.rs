//! Key layout of the state tables. Every state key is built here and nowhere else.

use crate::ids::{JobId, KeyId, TenantId};
use crate::model::apikey::KeyHash;

/// `tenant 0x00 job-uuid`: a tenant's jobs are one contiguous range, in id order.
pub fn job(tenant: &TenantId, id: JobId) -> Vec<u8> {
    let mut k = tenant_prefix(tenant);
    k.extend_from_slice(id.0.as_bytes());
    k
}

/// The prefix of all of a tenant's jobs.
pub fn tenant_prefix(tenant: &TenantId) -> Vec<u8> {
    let mut k = Vec::with_capacity(tenant.0.len() + 17);
    k.extend_from_slice(tenant.0.as_bytes());
    k.push(0);
    k
}

/// The job counter of a tenant in the meta table.
pub fn job_count(tenant: &TenantId) -> Vec<u8> {
    let mut k = b"job_count/".to_vec();
    k.extend_from_slice(tenant.0.as_bytes());
    k
}

/// Set once the first admin key was installed.
pub const ADMIN_BOOTSTRAPPED: &[u8] = b"admin_bootstrapped";

/// The shard count chosen at formation, in the meta table.
pub const SHARD_COUNT: &[u8] = b"shard_count";

/// `shard job-key`: the jobs of a shard are one contiguous range.
pub fn shard_job(shard: u32, tenant: &TenantId, id: JobId) -> Vec<u8> {
    let mut k = shard.to_be_bytes().to_vec();
    k.extend_from_slice(&job(tenant, id));
    k
}

/// `job-key inverted-time fire-id`: a job's runs, newest first.
pub fn run(job_key: &[u8], scheduled_at_ms: i64, fire_id: &crate::model::slot::FireId) -> Vec<u8> {
    let mut k = job_key.to_vec();
    let ordered = (scheduled_at_ms as u64) ^ (1 << 63);
    k.extend_from_slice(&(u64::MAX - ordered).to_be_bytes());
    k.extend_from_slice(&fire_id.0);
    k
}

/// Runs kept per job, chosen at formation, in the meta table.
pub const RUNS_KEPT: &[u8] = b"runs_kept";

/// The firing lease in milliseconds, chosen at formation, in the meta table (absent in clusters
/// formed before it was a setting: they use the default).
pub const LEASE_MS: &[u8] = b"lease_ms";

/// The cluster's release level (`crate::level`), in the meta table: raised once every member
/// ran it, never lowered (absent: level 1).
pub const CLUSTER_LEVEL: &[u8] = b"cluster_level";

/// `h hash`: a key's record, found by the SHA-256 of the key.
pub fn key_by_hash(hash: &KeyHash) -> Vec<u8> {
    let mut k = Vec::with_capacity(33);
    k.push(b'h');
    k.extend_from_slice(hash);
    k
}

/// The prefix of every key record.
pub const KEY_RECORDS: &[u8] = b"h";

/// `i key-uuid`: a key's hash, found by its public id.
pub fn key_by_id(id: KeyId) -> Vec<u8> {
    let mut k = Vec::with_capacity(17);
    k.push(b'i');
    k.extend_from_slice(id.0.as_bytes());
    k
}

/// A tenant's record.
pub fn tenant(id: &TenantId) -> Vec<u8> {
    id.0.as_bytes().to_vec()
}

/// An audit entry, in sequence order.
pub fn audit(seq: u64) -> Vec<u8> {
    seq.to_be_bytes().to_vec()
}

/// The last audit sequence number, in the meta table.
pub const AUDIT_SEQ: &[u8] = b"audit_seq";
