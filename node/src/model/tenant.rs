//! Tenants: the namespaces that own keys and jobs, and their quotas.
//!
//! A tenant's id is part of every job's and key's storage key, so a key can only ever reach its
//! own tenant's records. This module validates and holds values; it enforces nothing itself.

use serde::{Deserialize, Serialize};

use crate::ids::TenantId;

/// Longest tenant id.
pub const MAX_TENANT_ID_CHARS: usize = 63;
/// Longest tenant name.
pub const MAX_TENANT_NAME_CHARS: usize = 200;

/// A stored tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantRecord {
    pub id: TenantId,
    pub name: String,
    /// Most jobs the tenant may have; `None`: no limit.
    pub max_jobs: Option<u32>,
    /// Shortest interval between two fires of one of its jobs, in seconds; `None`: no limit.
    pub min_interval_seconds: Option<u32>,
    /// Requests a minute per key; `None`: the node's `--rate-limit-per-minute`.
    pub rate_limit_per_minute: Option<u32>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

impl TenantRecord {
    /// The tenant every node knows, created with the first admin key.
    pub fn default_record(now_ms: i64) -> TenantRecord {
        TenantRecord {
            id: TenantId::default_tenant(),
            name: "Default".into(),
            max_jobs: None,
            min_interval_seconds: None,
            rate_limit_per_minute: None,
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
        }
    }
}

/// A validated change; `Some(None)` removes a quota.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantPatch {
    pub name: Option<String>,
    pub max_jobs: Option<Option<u32>>,
    pub min_interval_seconds: Option<Option<u32>>,
    pub rate_limit_per_minute: Option<Option<u32>>,
}

impl TenantPatch {
    pub fn apply_to(&self, t: &mut TenantRecord) {
        if let Some(n) = &self.name {
            t.name = n.clone();
        }
        if let Some(v) = self.max_jobs {
            t.max_jobs = v;
        }
        if let Some(v) = self.min_interval_seconds {
            t.min_interval_seconds = v;
        }
        if let Some(v) = self.rate_limit_per_minute {
            t.rate_limit_per_minute = v;
        }
    }

    pub fn fields(&self) -> Vec<&'static str> {
        let mut f = Vec::new();
        if self.name.is_some() {
            f.push("name");
        }
        if self.max_jobs.is_some() {
            f.push("max_jobs");
        }
        if self.min_interval_seconds.is_some() {
            f.push("min_interval_seconds");
        }
        if self.rate_limit_per_minute.is_some() {
            f.push("rate_limit_per_minute");
        }
        f
    }
}

/// Checks a tenant id: 1-63 of `[a-z0-9-]`, not starting or ending with `-`.
pub fn check_id(id: &str) -> Result<(), String> {
    let ok_chars = id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if id.is_empty() || id.len() > MAX_TENANT_ID_CHARS || !ok_chars || id.starts_with('-') || id.ends_with('-') {
        return Err(format!(
            "id: 1 to {MAX_TENANT_ID_CHARS} lowercase letters, digits and inner dashes, got {:?}",
            id.chars().take(80).collect::<String>()
        ));
    }
    Ok(())
}

/// Checks a tenant name.
pub fn check_name(name: &str) -> Result<(), String> {
    let n = name.trim();
    if n.is_empty() || n.chars().count() > MAX_TENANT_NAME_CHARS || n.chars().any(char::is_control) {
        return Err(format!("name: 1 to {MAX_TENANT_NAME_CHARS} printable characters"));
    }
    Ok(())
}

/// Checks quota values (all must be 1 or more when set).
pub fn check_quota(field: &str, v: Option<u32>) -> Result<(), String> {
    match v {
        Some(0) => Err(format!("{field}: must be 1 or more (or null for no limit)")),
        Some(n) if field == "min_interval_seconds" && n > 31 * 86_400 => {
            Err(format!("{field}: at most {} (31 days)", 31 * 86_400))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        for ok in ["a", "team-1", "default", &"x".repeat(63)] {
            assert!(check_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "a-", "A", "a_b", "a b", "ä", &"x".repeat(64), "a/b", "a\0"] {
            assert!(check_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn quotas_and_patches() {
        assert!(check_quota("max_jobs", Some(0)).is_err());
        assert!(check_quota("max_jobs", None).is_ok());
        assert!(check_quota("min_interval_seconds", Some(31 * 86_400 + 1)).is_err());
        let mut t = TenantRecord::default_record(1);
        let p = TenantPatch { max_jobs: Some(Some(5)), rate_limit_per_minute: Some(None), ..TenantPatch::default() };
        p.apply_to(&mut t);
        assert_eq!(t.max_jobs, Some(5));
        assert_eq!(p.fields(), vec!["max_jobs", "rate_limit_per_minute"]);
    }
}
