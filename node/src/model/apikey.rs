//! API keys: their format, hashing and the stored record.
//!
//! Format: `rcn_` + 32 base62 characters of randomness (190 bits) + 6 base62 characters of
//! checksum (from SHA-256 of the rest). The prefix lets secret scanners find leaked keys; the
//! checksum lets a node refuse a mistyped key without a lookup. Only the SHA-256 of a key is
//! ever stored; the key itself lives in the one answer that creates it.

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

/// A key's kind, as in the scoped-key model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyKind {
    Admin,
    Custom,
    Telemetry,
}

/// A stored key: everything but the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    pub id: KeyId,
    pub tenant: TenantId,
    pub name: String,
    pub prefix: String,
    pub kind: KeyKind,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
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
    fn hash_is_sha256() {
        let h = hash("abc");
        assert_eq!(h[0], 0xba);
        assert_eq!(h[31], 0xad);
    }
}
