//! A job's secret values (header values and the body): plaintext only between the request and
//! the seal, ciphertext everywhere else (Raft log, RocksDB, snapshots, peer traffic).
//!
//! A value is sealed with the cluster's current master key and bound to its tenant, job and
//! field (`header:<lowercase name>` or `body`), so a ciphertext cannot be replayed into another
//! job or field. This module must not log values; `Debug` shows only the form and the length.

use std::fmt;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::crypto::{aad, CryptoError, Keyring, Sealed};
use crate::ids::{JobId, TenantId};

/// A header value or a body.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Secret {
    /// As validated from a request, before it is sealed (and in tests).
    Plain(String),
    Sealed(Sealed),
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::Plain(s) => write!(f, "Plain({} bytes)", s.len()),
            Secret::Sealed(s) => write!(f, "{s:?}"),
        }
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Secret {
        Secret::Plain(s.to_string())
    }
}

/// Where a secret sits in its job: the associated data it is sealed with.
pub fn field_aad(tenant: &TenantId, job: JobId, field: &str) -> Vec<u8> {
    aad(&tenant.0, &job.to_string(), field)
}

/// The field name of a header value.
pub fn header_field(name: &str) -> String {
    format!("header:{}", name.to_ascii_lowercase())
}

impl Secret {
    /// Seals a plaintext value; a sealed one is kept as is.
    pub fn sealed(self, keyring: &Keyring, aad: &[u8]) -> Result<Secret, CryptoError> {
        match self {
            Secret::Plain(p) => {
                let p = Zeroizing::new(p);
                keyring.seal(p.as_bytes(), aad).map(Secret::Sealed)
            }
            s @ Secret::Sealed(_) => Ok(s),
        }
    }

    /// The plaintext. `keyring` is needed only for sealed values.
    pub fn open(&self, keyring: Option<&Keyring>, aad: &[u8]) -> Result<Zeroizing<String>, String> {
        match self {
            Secret::Plain(p) => Ok(Zeroizing::new(p.clone())),
            Secret::Sealed(s) => {
                let keyring = keyring.ok_or("this node has no master key to open a sealed value")?;
                let bytes = keyring.open(s, aad).map_err(|e| e.to_string())?;
                String::from_utf8(bytes.to_vec()).map(Zeroizing::new).map_err(|_| "a sealed value is not UTF-8".into())
            }
        }
    }

    /// Whether this value needs sealing again under `keyring`'s current key.
    pub fn stale(&self, keyring: &Keyring) -> bool {
        match self {
            Secret::Plain(_) => true,
            Secret::Sealed(s) => !keyring.is_current(s),
        }
    }

    /// Re-seals under the current key (opening with whichever key sealed it).
    pub fn resealed(&self, keyring: &Keyring, aad: &[u8]) -> Result<Secret, CryptoError> {
        match self {
            Secret::Plain(_) => self.clone().sealed(keyring, aad),
            Secret::Sealed(s) => keyring.reseal(s, aad).map(Secret::Sealed),
        }
    }

    /// The length of the plaintext (or ciphertext) in bytes, for limits.
    pub fn len(&self) -> usize {
        match self {
            Secret::Plain(p) => p.len(),
            Secret::Sealed(s) => s.ciphertext.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::MasterKey;

    #[test]
    fn sealed_values_open_only_in_their_place() {
        let ring = Keyring::new(MasterKey::generate(), vec![]);
        let t = TenantId::default_tenant();
        let (a, b) = (JobId::generate(), JobId::generate());
        let here = field_aad(&t, a, &header_field("Authorization"));
        let s = Secret::from("Bearer canary").sealed(&ring, &here).unwrap();
        assert!(matches!(s, Secret::Sealed(_)));
        assert!(!format!("{s:?}").contains("canary"));
        assert_eq!(s.open(Some(&ring), &here).unwrap().as_str(), "Bearer canary");
        assert!(s.open(Some(&ring), &field_aad(&t, b, &header_field("Authorization"))).is_err(), "another job");
        assert!(s.open(Some(&ring), &field_aad(&t, a, "body")).is_err(), "another field");
        assert!(s.open(None, &here).is_err());
        assert!(!s.stale(&ring));
        let rotated = Keyring::new(MasterKey::generate(), vec![ring.current().clone()]);
        assert!(s.stale(&rotated));
        let again = s.resealed(&rotated, &here).unwrap();
        assert!(!again.stale(&rotated));
        assert_eq!(again.open(Some(&rotated), &here).unwrap().as_str(), "Bearer canary");
    }
}
