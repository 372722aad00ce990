//! API keys: their format, hashing, scopes and the stored record.
//!
//! Format: `rcn_` + 32 base62 characters of randomness (190 bits) + 6 base62 characters of
//! checksum (from SHA-256 of the rest). The prefix lets secret scanners find leaked keys; the
//! checksum lets a node refuse a mistyped key without a lookup. Only the SHA-256 of a key is
//! ever stored; the key itself lives in the one answer that creates it.

use std::collections::BTreeSet;

use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ids::{KeyId, TenantId};

pub const KEY_PREFIX: &str = "rcn_";
const RANDOM_CHARS: usize = 32;
const CHECKSUM_CHARS: usize = 6;
/// How many characters of a key are shown in lists (the prefix plus a few random ones).
pub const DISPLAY_PREFIX_CHARS: usize = 10;
/// The shortest key accepted from `RAFTCRON_ADMIN_KEY`.
pub const MIN_ADMIN_KEY_CHARS: usize = 32;
/// Longer tokens are refused before hashing.
pub const MAX_KEY_CHARS: usize = 256;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The SHA-256 of a key: what the store keeps and looks up.
pub type KeyHash = [u8; 32];

/// What a key may do. Every route names the one scope it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Scope {
    JobsRead,
    JobsWrite,
    JobsTrigger,
    RunsRead,
    KeysRead,
    KeysWrite,
    ClusterRead,
    ClusterAdmin,
}

impl Scope {
    pub const ALL: [Scope; 8] = [
        Scope::JobsRead,
        Scope::JobsWrite,
        Scope::JobsTrigger,
        Scope::RunsRead,
        Scope::KeysRead,
        Scope::KeysWrite,
        Scope::ClusterRead,
        Scope::ClusterAdmin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::JobsRead => "jobs:read",
            Scope::JobsWrite => "jobs:write",
            Scope::JobsTrigger => "jobs:trigger",
            Scope::RunsRead => "runs:read",
            Scope::KeysRead => "keys:read",
            Scope::KeysWrite => "keys:write",
            Scope::ClusterRead => "cluster:read",
            Scope::ClusterAdmin => "cluster:admin",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

/// A set of scopes, in a stable order.
pub type Scopes = BTreeSet<Scope>;

/// Every scope.
pub fn all_scopes() -> Scopes {
    Scope::ALL.into_iter().collect()
}

/// A key's kind, as in the scoped-key model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyKind {
    /// Every scope, now and in future versions.
    Admin,
    /// The scopes it was given.
    Custom,
    /// Fixed read-only monitoring scopes (`cluster:read`, `runs:read`); immutable.
    Telemetry,
}

impl KeyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::Admin => "admin",
            KeyKind::Custom => "custom",
            KeyKind::Telemetry => "telemetry",
        }
    }

    pub fn parse(s: &str) -> Option<KeyKind> {
        [KeyKind::Admin, KeyKind::Custom, KeyKind::Telemetry].into_iter().find(|k| k.as_str() == s)
    }

    /// The scopes a kind fixes, or `None` when the key's own list decides (`custom`).
    pub fn fixed_scopes(self) -> Option<Scopes> {
        match self {
            KeyKind::Admin => Some(all_scopes()),
            KeyKind::Telemetry => Some([Scope::ClusterRead, Scope::RunsRead].into_iter().collect()),
            KeyKind::Custom => None,
        }
    }
}

/// A stored key: everything but the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    pub id: KeyId,
    pub tenant: TenantId,
    pub name: String,
    pub prefix: String,
    pub kind: KeyKind,
    pub scopes: Scopes,
    /// Normalized CIDRs the key may be used from; empty: anywhere.
    pub allowed_cidrs: Vec<String>,
    pub expires_at_ms: Option<i64>,
    /// Kept by batched `TouchKeys` commands: at most a minute stale.
    pub last_used_at_ms: Option<i64>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

impl ApiKeyRecord {
    /// Telemetry keys cannot change scopes or allowlist.
    pub fn immutable(&self) -> bool {
        self.kind == KeyKind::Telemetry
    }

    pub fn has(&self, scope: Scope) -> bool {
        self.kind == KeyKind::Admin || self.scopes.contains(&scope)
    }

    /// Whether every scope in `scopes` is one this key holds (a key never grants more).
    pub fn covers(&self, scopes: &Scopes) -> bool {
        scopes.iter().all(|s| self.has(*s))
    }

    pub fn expired(&self, now_ms: i64) -> bool {
        self.expires_at_ms.is_some_and(|e| e <= now_ms)
    }
}

/// A validated change to a key; absent fields keep their value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyPatch {
    pub name: Option<String>,
    pub scopes: Option<Scopes>,
    pub allowed_cidrs: Option<Vec<String>>,
    pub expires_at_ms: Option<Option<i64>>,
}

impl KeyPatch {
    pub fn apply_to(&self, r: &mut ApiKeyRecord) {
        if let Some(n) = &self.name {
            r.name = n.clone();
        }
        if let Some(s) = &self.scopes {
            r.scopes = s.clone();
        }
        if let Some(c) = &self.allowed_cidrs {
            r.allowed_cidrs = c.clone();
        }
        if let Some(e) = self.expires_at_ms {
            r.expires_at_ms = e;
        }
    }

    /// The names of the fields it changes (for the audit trail).
    pub fn fields(&self) -> Vec<&'static str> {
        let mut f = Vec::new();
        if self.name.is_some() {
            f.push("name");
        }
        if self.scopes.is_some() {
            f.push("scopes");
        }
        if self.allowed_cidrs.is_some() {
            f.push("allowed_cidrs");
        }
        if self.expires_at_ms.is_some() {
            f.push("expires_at");
        }
        f
    }
}

/// Generates a new key in the raftcron format.
pub fn generate() -> String {
    let mut rng = rand::rngs::OsRng;
    let random: String = (0..RANDOM_CHARS).map(|_| char::from(BASE62[rng.gen_range(0..BASE62.len())])).collect();
    let body = format!("{KEY_PREFIX}{random}");
    let sum = checksum(&body);
    format!("{body}{sum}")
}

fn checksum(body: &str) -> String {
    let digest = Sha256::digest(body.as_bytes());
    let mut n =
        u64::from_be_bytes([digest[0], digest[1], digest[2], digest[3], digest[4], digest[5], digest[6], digest[7]]);
    let mut out = [b'0'; CHECKSUM_CHARS];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    out.iter().map(|&b| char::from(b)).collect()
}

/// Why a presented token cannot be a key, decided without any lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    Empty,
    TooLong,
    BadCharacters,
    BadChecksum,
}

/// Checks a presented token's shape. Tokens in the raftcron format must carry a valid checksum;
/// other tokens (an operator-chosen `RAFTCRON_ADMIN_KEY`) are accepted as opaque printable text.
pub fn check_shape(token: &str) -> Result<(), Malformed> {
    if token.is_empty() {
        return Err(Malformed::Empty);
    }
    if token.len() > MAX_KEY_CHARS {
        return Err(Malformed::TooLong);
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Malformed::BadCharacters);
    }
    if token.starts_with(KEY_PREFIX) && token.len() == KEY_PREFIX.len() + RANDOM_CHARS + CHECKSUM_CHARS {
        let (body, sum) = token.split_at(KEY_PREFIX.len() + RANDOM_CHARS);
        // Not secret-dependent in a useful way: the checksum is public given the body.
        if checksum(body) != sum {
            return Err(Malformed::BadChecksum);
        }
    }
    Ok(())
}

/// The SHA-256 of a key.
pub fn hash(key: &str) -> KeyHash {
    Sha256::digest(key.as_bytes()).into()
}

/// The non-secret start of a key, shown in lists.
pub fn display_prefix(key: &str) -> String {
    key.chars().take(DISPLAY_PREFIX_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_have_the_format_and_a_valid_checksum() {
        let a = generate();
        let b = generate();
        assert_ne!(a, b);
        assert!(a.starts_with(KEY_PREFIX));
        assert_eq!(a.len(), 4 + 32 + 6);
        assert_eq!(check_shape(&a), Ok(()));
    }

    #[test]
    fn a_mistyped_key_fails_the_checksum() {
        let key = generate();
        let mut chars: Vec<char> = key.chars().collect();
        chars[10] = if chars[10] == 'a' { 'b' } else { 'a' };
        let typo: String = chars.into_iter().collect();
        assert_eq!(check_shape(&typo), Err(Malformed::BadChecksum));
    }

    #[test]
    fn shapes_refused_without_lookup() {
        assert_eq!(check_shape(""), Err(Malformed::Empty));
        assert_eq!(check_shape("has space"), Err(Malformed::BadCharacters));
        assert_eq!(check_shape("nul\0"), Err(Malformed::BadCharacters));
        assert_eq!(check_shape(&"x".repeat(300)), Err(Malformed::TooLong));
        assert_eq!(check_shape("an-operator-chosen-admin-key-of-40-chars!"), Ok(()));
    }

    #[test]
    fn scopes_round_trip_and_kinds_fix_theirs() {
        for s in Scope::ALL {
            assert_eq!(Scope::parse(s.as_str()), Some(s));
        }
        assert_eq!(Scope::parse("jobs:delete"), None);
        assert_eq!(KeyKind::Admin.fixed_scopes(), Some(all_scopes()));
        assert_eq!(KeyKind::Telemetry.fixed_scopes().map(|s| s.len()), Some(2));
        assert_eq!(KeyKind::Custom.fixed_scopes(), None);
        assert_eq!(KeyKind::parse("sdk_integration"), None);
    }

    #[test]
    fn hash_is_sha256() {
        let h = hash("abc");
        assert_eq!(h[0], 0xba);
        assert_eq!(h[31], 0xad);
    }
}
