//! Fire ids: the identity of one occurrence (`docs/design/firing.md`, "Identifiers").
//!
//! A fire id depends on the slot alone (the job and its scheduled instant, or the job and a
//! manual trigger's id): not on the node, the attempt, the owner's epoch or the clock. So it is
//! the same on every node, on every retry and on the re-send after an owner change, and it is
//! sent as the `Idempotency-Key` header, which lets a target drop a duplicate delivery. Changing
//! the derivation would give in-flight slots new keys; a new derivation needs a new domain tag.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::ids::JobId;

/// Domain tag of scheduled slots.
const SCHEDULED_TAG: &[u8] = b"raftcron-fire-v1";
/// Domain tag of manual triggers: no manual fire id equals a scheduled one.
const MANUAL_TAG: &[u8] = b"raftcron-trigger-v1";

/// The first 16 bytes of a SHA-256. Displayed, and serialized, as 32 lowercase hex characters.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FireId(pub [u8; 16]);

impl FireId {
    /// The fire id of the scheduled slot (job, instant): the first 16 bytes of
    /// SHA-256("raftcron-fire-v1" || job uuid bytes || `at_ms` as big-endian i64), where `at_ms`
    /// is the scheduled instant in milliseconds since the Unix epoch, UTC.
    pub fn scheduled(job: JobId, at_ms: i64) -> FireId {
        FireId::digest(&[SCHEDULED_TAG, job.0.as_bytes(), &at_ms.to_be_bytes()])
    }

    /// The fire id of a manual trigger: the first 16 bytes of
    /// SHA-256("raftcron-trigger-v1" || job uuid bytes || trigger uuid bytes).
    pub fn manual(job: JobId, trigger: Uuid) -> FireId {
        FireId::digest(&[MANUAL_TAG, job.0.as_bytes(), trigger.as_bytes()])
    }

    fn digest(parts: &[&[u8]]) -> FireId {
        let mut hasher = Sha256::new();
        for part in parts {
            hasher.update(part);
        }
        let digest = hasher.finalize();
        let mut bytes = [0u8; 16];
        for (dst, src) in bytes.iter_mut().zip(digest.iter()) {
            *dst = *src;
        }
        FireId(bytes)
    }
}

impl fmt::Display for FireId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for FireId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FireId({self})")
    }
}

/// A string that is not 32 hex characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a fire id is 32 hex characters")]
pub struct ParseFireIdError;

impl FromStr for FireId {
    type Err = ParseFireIdError;

    /// Parses 32 hex characters (either case; [`Display`](fmt::Display) writes lowercase).
    fn from_str(s: &str) -> Result<FireId, ParseFireIdError> {
        let hex = s.as_bytes();
        if hex.len() != 32 {
            return Err(ParseFireIdError);
        }
        let mut bytes = [0u8; 16];
        for (byte, pair) in bytes.iter_mut().zip(hex.chunks_exact(2)) {
            let mut value = 0u8;
            for &c in pair {
                let digit = char::from(c).to_digit(16).ok_or(ParseFireIdError)?;
                // `digit` < 16, so it fits in a u8 and `value` stays below 256.
                value = (value << 4) | u8::try_from(digit).map_err(|_| ParseFireIdError)?;
            }
            *byte = value;
        }
        Ok(FireId(bytes))
    }
}

impl Serialize for FireId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for FireId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<FireId, D::Error> {
        struct HexVisitor;

        impl serde::de::Visitor<'_> for HexVisitor {
            type Value = FireId;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a fire id (32 hex characters)")
            }

            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<FireId, E> {
                s.parse().map_err(|_| E::invalid_value(serde::de::Unexpected::Str(s), &self))
            }
        }

        deserializer.deserialize_str(HexVisitor)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn job() -> JobId {
        JobId(Uuid::parse_str("0f8e6a0c-2b1d-4c3e-9a7f-5d4c3b2a1908").unwrap())
    }

    /// 2026-03-29T01:30:00Z in milliseconds.
    const AT_MS: i64 = 1_774_747_800_000;

    #[test]
    fn a_scheduled_fire_id_is_a_fixed_function_of_the_slot() {
        // Regression value, checked once against Python's hashlib and `sha256sum` of the
        // concatenated bytes. It must never change: re-sends of in-flight slots would carry new
        // idempotency keys.
        assert_eq!(FireId::scheduled(job(), AT_MS).to_string(), "860140b07f1f09e3dc782636a04ac2b7");
        assert_eq!(FireId::scheduled(job(), AT_MS), FireId::scheduled(job(), AT_MS));
    }

    #[test]
    fn a_manual_fire_id_is_a_fixed_function_of_the_trigger() {
        // Regression value, checked once against Python's hashlib.
        let trigger = Uuid::parse_str("6b1e3c2a-8d4f-4e5a-b6c7-d8e9f0a1b2c3").unwrap();
        assert_eq!(FireId::manual(job(), trigger).to_string(), "736f989db13d3926694c9ed7371cdf11");
    }

    #[test]
    fn different_instants_and_jobs_give_different_fire_ids() {
        let a = FireId::scheduled(job(), AT_MS);
        assert_ne!(a, FireId::scheduled(job(), AT_MS + 1));
        assert_ne!(a, FireId::scheduled(job(), AT_MS + 60_000));
        assert_ne!(a, FireId::scheduled(job(), -AT_MS));
        assert_ne!(a, FireId::scheduled(JobId(Uuid::nil()), AT_MS));
    }

    #[test]
    fn manual_fire_ids_differ_from_scheduled_ones() {
        let trigger = Uuid::parse_str("6b1e3c2a-8d4f-4e5a-b6c7-d8e9f0a1b2c3").unwrap();
        let manual = FireId::manual(job(), trigger);
        assert_ne!(manual, FireId::scheduled(job(), AT_MS));
        assert_ne!(manual, FireId::manual(job(), Uuid::nil()));
        // Same bytes after the tag would be hashed, were it not for the distinct domain tags:
        // a trigger uuid whose first 8 bytes spell an instant still gives another id.
        let mut tail = [0u8; 16];
        tail[..8].copy_from_slice(&AT_MS.to_be_bytes());
        assert_ne!(FireId::manual(job(), Uuid::from_bytes(tail)), FireId::scheduled(job(), AT_MS));
    }

    #[test]
    fn display_is_32_lowercase_hex_characters_and_parses_back() {
        let id = FireId::scheduled(job(), AT_MS);
        let text = id.to_string();
        assert_eq!(text.len(), 32);
        assert!(text.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)));
        assert_eq!(text.parse::<FireId>(), Ok(id));
        assert_eq!(text.to_uppercase().parse::<FireId>(), Ok(id));
        assert_eq!(format!("{id:?}"), format!("FireId({text})"));
        assert_eq!(FireId([0xab; 16]).to_string(), "ab".repeat(16));
        assert_eq!(FireId([0x00; 16]).to_string(), "0".repeat(32));
    }

    #[test]
    fn malformed_strings_do_not_parse() {
        for bad in ["", "00", &"0".repeat(31), &"0".repeat(33), &format!("{}g", "0".repeat(31)), &"é".repeat(16)] {
            assert_eq!(bad.parse::<FireId>(), Err(ParseFireIdError), "{bad:?}");
        }
    }

    #[test]
    fn serde_uses_the_hex_string() {
        let id = FireId::scheduled(job(), AT_MS);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
        assert_eq!(serde_json::from_str::<FireId>(&json).unwrap(), id);
        assert!(serde_json::from_str::<FireId>("\"not hex\"").is_err());
        assert!(serde_json::from_str::<FireId>("[1,2,3]").is_err());

        let bytes = bincode::serialize(&id).unwrap();
        assert_eq!(bincode::deserialize::<FireId>(&bytes).unwrap(), id);
    }
}
