//! Secrets at rest: the master key, the keyring that seals and opens job
//! secrets with XChaCha20-Poly1305, and the keyring compatibility rule that
//! nodes check when they handshake.
//!
//! This module owns:
//! - [`MasterKey`]: 32 secret bytes, zeroized on drop, parsed from base64 text
//!   or a key file, or generated from the operating system's random source.
//!   Its [`MasterKey::id`] is public and safe to log.
//! - [`Keyring`]: one current key that seals, plus previous keys that still
//!   open data sealed before a rotation.
//! - [`Sealed`]: the stored form of a secret (key id, nonce, ciphertext). It is
//!   serde-serializable and goes into the Raft log and RocksDB as is.
//! - [`aad`]: the associated data that binds a sealed value to its tenant, job
//!   and field, so a ciphertext cannot be moved to another job or field.
//! - [`KeyringIds`] and [`compatible`]: what a node tells its peers about its
//!   keyring, and whether two nodes can read each other's data.
//!
//! This module must not: log, print or `Debug`-format key bytes or plaintext
//! (every `Debug` here is written by hand and shows only ids and lengths);
//! decide policy for insecure key files (it reports them with
//! [`KeyError::InsecurePermissions`] and the caller chooses to refuse or to
//! warn and carry on); touch storage, networking or the process environment.
//!
//! Formats that must never change once data is stored: the key id derivation
//! (`SHA-256("raftcron-master-key-id-v1" || key)`, first 8 bytes as hex), the
//! [`aad`] encoding, and the field layout of [`Sealed`].

use std::fmt;
use std::path::{Path, PathBuf};

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use rand::rngs::OsRng;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// Length of a master key in bytes.
pub const KEY_LEN: usize = 32;
/// Length of an XChaCha20-Poly1305 nonce in bytes.
pub const NONCE_LEN: usize = 24;
/// Length of a key id in hex characters.
pub const KEY_ID_LEN: usize = 16;
/// The HTTP header that carries [`KeyringIds`] in the cluster handshake.
pub const KEYRING_HEADER: &str = "x-raftcron-keyring";

const KEY_ID_DOMAIN: &[u8] = b"raftcron-master-key-id-v1";
const AAD_DOMAIN: &[u8] = b"raftcron-aad-v1";
/// A key file larger than this is certainly not a base64 key; refuse it early.
const MAX_KEY_FILE_LEN: u64 = 4096;

const STANDARD_ANY_PAD: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);
const URL_SAFE_ANY_PAD: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why a master key could not be loaded. No variant carries key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The text was empty (after trimming whitespace).
    #[error("{origin}: expected 32 bytes of base64, got an empty value")]
    Empty { origin: String },
    /// The text is not base64 in the standard or the URL-safe alphabet.
    #[error(
        "{origin}: expected 32 bytes of base64, but the value is not valid base64 (standard or URL-safe alphabet)"
    )]
    NotBase64 { origin: String },
    /// The text decoded to the wrong number of bytes.
    #[error("{origin}: expected 32 bytes of base64, got {got} bytes")]
    WrongLength { origin: String, got: usize },
    /// The key file could not be read.
    #[error("{}: cannot read master key file: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The key file is implausibly large.
    #[error("{}: master key file is {len} bytes, expected a short base64 line", path.display())]
    FileTooLarge { path: PathBuf, len: u64 },
    /// The key file can be read or written by group or others (unix only).
    ///
    /// [`MasterKey::from_file`] returns this so that the caller decides: refuse
    /// to start, or log it at warn level and load the key with
    /// [`MasterKey::from_file_ignoring_permissions`] (for example where the
    /// platform mounts secrets with mode 0644).
    #[error(
        "{}: master key file has mode {mode:04o}, which lets any user of the machine read or change it; run `chmod 600 {}` (or 0440 with a dedicated group)",
        path.display(),
        path.display()
    )]
    InsecurePermissions { path: PathBuf, mode: u32 },
}

/// Why sealing or opening failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// The ciphertext names a key this keyring does not hold.
    #[error("sealed with master key {id}, which this node does not hold (add it as a previous key)")]
    UnknownKey { id: String },
    /// Authentication failed: wrong associated data, or the data was altered.
    #[error("sealed data failed authentication: it was altered or belongs to another tenant, job or field")]
    Tampered,
    /// The plaintext is beyond what the cipher can seal in one message.
    #[error("plaintext too large to seal")]
    TooLarge,
}

/// Why a [`KeyringIds`] header value could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {KEYRING_HEADER} header: {reason}")]
pub struct HeaderError {
    reason: String,
}

impl HeaderError {
    fn new(reason: impl Into<String>) -> Self {
        Self { reason: reason.into() }
    }
}

/// A 32-byte master key. The bytes are zeroized when the key is dropped and
/// are never shown by `Debug`.
#[derive(Clone)]
pub struct MasterKey {
    bytes: Zeroizing<[u8; KEY_LEN]>,
    id: String,
}

impl MasterKey {
    /// Builds a key from raw bytes.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        let bytes = Zeroizing::new(bytes);
        let id = key_id(&bytes);
        Self { bytes, id }
    }

    /// Generates a new key from the operating system's random source.
    pub fn generate() -> Self {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        OsRng.fill_bytes(bytes.as_mut_slice());
        let id = key_id(&bytes);
        Self { bytes, id }
    }

    /// Parses base64 text (standard or URL-safe alphabet, padded or not,
    /// surrounding whitespace ignored). Errors name the key as "master key".
    pub fn from_base64(text: &str) -> Result<Self, KeyError> {
        Self::from_base64_named("master key", text)
    }

    /// Like [`MasterKey::from_base64`], with `origin` (for example
    /// `"RAFTCRON_MASTER_KEY"`) at the start of any error message:
    /// `RAFTCRON_MASTER_KEY: expected 32 bytes of base64, got 17 bytes`.
    pub fn from_base64_named(origin: &str, text: &str) -> Result<Self, KeyError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(KeyError::Empty { origin: origin.to_owned() });
        }
        let decoded: Zeroizing<Vec<u8>> = match STANDARD_ANY_PAD.decode(text) {
            Ok(v) => Zeroizing::new(v),
            Err(_) => match URL_SAFE_ANY_PAD.decode(text) {
                Ok(v) => Zeroizing::new(v),
                Err(_) => return Err(KeyError::NotBase64 { origin: origin.to_owned() }),
            },
        };
        if decoded.len() != KEY_LEN {
            return Err(KeyError::WrongLength { origin: origin.to_owned(), got: decoded.len() });
        }
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        bytes.copy_from_slice(&decoded);
        let id = key_id(&bytes);
        Ok(Self { bytes, id })
    }

    /// Reads a key file holding the base64 key (a trailing newline is fine).
    ///
    /// On unix, a file whose mode grants any access to others, or write access
    /// to its group (`mode & 0o027 != 0`, symlinks followed), is refused with
    /// [`KeyError::InsecurePermissions`]. The caller may log that error and
    /// retry with [`MasterKey::from_file_ignoring_permissions`].
    pub fn from_file(path: &Path) -> Result<Self, KeyError> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let meta = std::fs::metadata(path).map_err(|source| KeyError::Read { path: path.to_owned(), source })?;
            let mode = meta.permissions().mode() & 0o7777;
            // Group read stays allowed: Kubernetes mounts secrets for a pod's fsGroup (0440).
            if mode & 0o027 != 0 {
                return Err(KeyError::InsecurePermissions { path: path.to_owned(), mode });
            }
        }
        Self::from_file_ignoring_permissions(path)
    }

    /// Reads a key file without checking its permissions.
    pub fn from_file_ignoring_permissions(path: &Path) -> Result<Self, KeyError> {
        use std::io::Read as _;
        let read_err = |source| KeyError::Read { path: path.to_owned(), source };
        let file = std::fs::File::open(path).map_err(read_err)?;
        let len = file.metadata().map_err(read_err)?.len();
        if len > MAX_KEY_FILE_LEN {
            return Err(KeyError::FileTooLarge { path: path.to_owned(), len });
        }
        let mut text = Zeroizing::new(String::with_capacity(128));
        file.take(MAX_KEY_FILE_LEN + 1).read_to_string(&mut text).map_err(|e| {
            if e.kind() == std::io::ErrorKind::InvalidData {
                KeyError::NotBase64 { origin: path.display().to_string() }
            } else {
                read_err(e)
            }
        })?;
        Self::from_base64_named(&path.display().to_string(), &text)
    }

    /// The key in standard padded base64, for a key generation command.
    /// The returned string is zeroized on drop.
    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(self.bytes.as_slice()))
    }

    /// The public key id: 16 hex characters of
    /// `SHA-256("raftcron-master-key-id-v1" || key)`. Safe to log.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(Key::from_slice(self.bytes.as_slice()))
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKey").field("id", &self.id).finish_non_exhaustive()
    }
}

fn key_id(bytes: &[u8; KEY_LEN]) -> String {
    let mut h = Sha256::new();
    h.update(KEY_ID_DOMAIN);
    h.update(bytes);
    let digest = h.finalize();
    let mut out = String::with_capacity(KEY_ID_LEN);
    for b in &digest[..KEY_ID_LEN / 2] {
        out.push(hex_digit(b >> 4));
        out.push(hex_digit(b & 0x0f));
    }
    out
}

fn hex_digit(n: u8) -> char {
    match n {
        0..=9 => char::from(b'0' + n),
        _ => char::from(b'a' + (n - 10)),
    }
}

fn is_key_id(s: &str) -> bool {
    s.len() == KEY_ID_LEN && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A sealed secret as stored in the Raft log and RocksDB.
///
/// `Debug` shows only the key id and the ciphertext length.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sealed {
    /// Id of the master key that sealed it ([`MasterKey::id`]).
    pub key_id: String,
    /// Random XChaCha20-Poly1305 nonce.
    pub nonce: [u8; NONCE_LEN],
    /// Ciphertext followed by the 16-byte Poly1305 tag.
    pub ciphertext: Vec<u8>,
}

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealed").field("key_id", &self.key_id).field("len", &self.ciphertext.len()).finish()
    }
}

/// Associated data binding a sealed value to its tenant, job and field.
///
/// Layout: `"raftcron-aad-v1"`, then for each of tenant, job id and field a
/// 4-byte big-endian length followed by the UTF-8 bytes. The length prefixes
/// make it unambiguous: `("a", "bc", ..)` and `("ab", "c", ..)` differ.
pub fn aad(tenant: &str, job_id: &str, field: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(AAD_DOMAIN.len() + 12 + tenant.len() + job_id.len() + field.len());
    out.extend_from_slice(AAD_DOMAIN);
    for part in [tenant, job_id, field] {
        // Names longer than 4 GiB cannot occur in practice; saturate rather than wrap.
        let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(part.as_bytes());
    }
    out
}

/// The current master key plus previous keys kept for opening older data.
///
/// Rotation: add the new key as a previous key on every node, then make it
/// current on each node, [`Keyring::reseal`] what is not [`Keyring::is_current`],
/// and only then drop the old key.
#[derive(Clone)]
pub struct Keyring {
    current: MasterKey,
    previous: Vec<MasterKey>,
}

impl Keyring {
    /// Builds a keyring. Previous keys equal to the current key, or repeated,
    /// are dropped.
    pub fn new(current: MasterKey, previous: Vec<MasterKey>) -> Self {
        let mut kept: Vec<MasterKey> = Vec::with_capacity(previous.len());
        for k in previous {
            if k.id() != current.id() && kept.iter().all(|p| p.id() != k.id()) {
                kept.push(k);
            }
        }
        Self { current, previous: kept }
    }

    /// The key that seals.
    pub fn current(&self) -> &MasterKey {
        &self.current
    }

    /// The id of the key that seals.
    pub fn current_id(&self) -> &str {
        self.current.id()
    }

    /// True when the keyring holds keys besides the current one (a rotation is under way).
    pub fn holds_previous(&self) -> bool {
        !self.previous.is_empty()
    }

    /// The ids of every key held, current first.
    pub fn ids(&self) -> KeyringIds {
        let mut all = Vec::with_capacity(1 + self.previous.len());
        all.push(self.current.id().to_owned());
        all.extend(self.previous.iter().map(|k| k.id().to_owned()));
        KeyringIds { current: self.current.id().to_owned(), all }
    }

    /// True when `sealed` was sealed under the current key.
    pub fn is_current(&self, sealed: &Sealed) -> bool {
        sealed.key_id == self.current.id()
    }

    /// Seals `plaintext` under the current key with a fresh random nonce.
    ///
    /// Fails only for plaintexts beyond the cipher's limit (about 256 GiB).
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Sealed, CryptoError> {
        let mut nonce = [0u8; NONCE_LEN];
        OsRng.fill_bytes(&mut nonce);
        let ciphertext = self
            .current
            .cipher()
            .encrypt(&XNonce::from(nonce), Payload { msg: plaintext, aad })
            .map_err(|_| CryptoError::TooLarge)?;
        Ok(Sealed { key_id: self.current.id().to_owned(), nonce, ciphertext })
    }

    /// Opens `sealed` with the key it names. The plaintext is zeroized on drop.
    pub fn open(&self, sealed: &Sealed, aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let key = self.key(&sealed.key_id).ok_or_else(|| CryptoError::UnknownKey { id: sealed.key_id.clone() })?;
        key.cipher()
            .decrypt(&XNonce::from(sealed.nonce), Payload { msg: &sealed.ciphertext, aad })
            .map(Zeroizing::new)
            .map_err(|_| CryptoError::Tampered)
    }

    /// Opens `sealed` and seals the plaintext again under the current key.
    pub fn reseal(&self, sealed: &Sealed, aad: &[u8]) -> Result<Sealed, CryptoError> {
        let plain = self.open(sealed, aad)?;
        self.seal(&plain, aad)
    }

    fn key(&self, id: &str) -> Option<&MasterKey> {
        std::iter::once(&self.current).chain(self.previous.iter()).find(|k| k.id() == id)
    }
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("current", &self.current.id())
            .field("previous", &self.previous.iter().map(MasterKey::id).collect::<Vec<_>>())
            .finish()
    }
}

/// The public description of a keyring exchanged between nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyringIds {
    /// Id of the key this node seals with.
    pub current: String,
    /// Ids of every key this node can open with, current included.
    pub all: Vec<String>,
}

impl KeyringIds {
    /// Encodes as an HTTP header value: `cur=<id>;all=<id>,<id>`.
    pub fn to_header_value(&self) -> String {
        format!("cur={};all={}", self.current, self.all.join(","))
    }

    /// Decodes a header value written by [`KeyringIds::to_header_value`].
    ///
    /// Whitespace around items is ignored, unknown `name=value` items are
    /// skipped (for later versions), every id must be 16 lowercase hex
    /// characters and `cur` must be among `all`.
    pub fn from_header_value(value: &str) -> Result<Self, HeaderError> {
        let mut current: Option<String> = None;
        let mut all: Option<Vec<String>> = None;
        for item in value.split(';') {
            let item = item.trim();
            if item.is_empty() {
                continue;
            }
            let (name, val) =
                item.split_once('=').ok_or_else(|| HeaderError::new(format!("item {item:?} is not name=value")))?;
            match name.trim() {
                "cur" => {
                    if current.is_some() {
                        return Err(HeaderError::new("cur given twice"));
                    }
                    let id = val.trim();
                    if !is_key_id(id) {
                        return Err(HeaderError::new(format!("cur {id:?} is not a 16-hex-digit key id")));
                    }
                    current = Some(id.to_owned());
                }
                "all" => {
                    if all.is_some() {
                        return Err(HeaderError::new("all given twice"));
                    }
                    let mut ids = Vec::new();
                    for id in val.split(',') {
                        let id = id.trim();
                        if !is_key_id(id) {
                            return Err(HeaderError::new(format!("all: {id:?} is not a 16-hex-digit key id")));
                        }
                        if !ids.iter().any(|x| x == id) {
                            ids.push(id.to_owned());
                        }
                    }
                    all = Some(ids);
                }
                _ => {}
            }
        }
        let current = current.ok_or_else(|| HeaderError::new("missing cur"))?;
        let all = all.ok_or_else(|| HeaderError::new("missing all"))?;
        if !all.contains(&current) {
            return Err(HeaderError::new(format!("cur {current} is not listed in all")));
        }
        Ok(Self { current, all })
    }
}

/// Whether two nodes can share data: each side's current key must be one the
/// other side holds. The error explains which side lacks which key and what
/// the operator should do.
pub fn compatible(my: &KeyringIds, theirs: &KeyringIds) -> Result<(), String> {
    let they_can_read_mine = theirs.all.contains(&my.current);
    let i_can_read_theirs = my.all.contains(&theirs.current);
    if they_can_read_mine && i_can_read_theirs {
        return Ok(());
    }
    let mut problems = Vec::new();
    if !they_can_read_mine {
        problems.push(format!("the peer does not hold this node's current key {}", my.current));
    }
    if !i_can_read_theirs {
        problems.push(format!("this node does not hold the peer's current key {}", theirs.current));
    }
    Err(format!(
        "master key mismatch: this node seals with {} and holds [{}]; the peer seals with {} and holds [{}]; {}; \
         every node must hold the same master key; during rotation add the new key as a previous key on every \
         node first, then make it current node by node",
        my.current,
        my.all.join(", "),
        theirs.current,
        theirs.all.join(", "),
        problems.join(" and "),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> MasterKey {
        MasterKey::from_bytes([n; KEY_LEN])
    }

    fn ids(current: &str, all: &[&str]) -> KeyringIds {
        KeyringIds { current: current.to_owned(), all: all.iter().map(|s| (*s).to_owned()).collect() }
    }

    #[test]
    fn round_trip() {
        let ring = Keyring::new(MasterKey::generate(), vec![]);
        let a = aad("acme", "job-1", "header:Authorization");
        let sealed = ring.seal(b"Bearer s3cret", &a).unwrap();
        assert_eq!(sealed.key_id, ring.current_id());
        assert_eq!(sealed.ciphertext.len(), b"Bearer s3cret".len() + 16);
        assert_eq!(ring.open(&sealed, &a).unwrap().as_slice(), b"Bearer s3cret");
        // Empty plaintext works too.
        let empty = ring.seal(b"", &a).unwrap();
        assert!(ring.open(&empty, &a).unwrap().is_empty());
    }

    #[test]
    fn nonces_are_fresh() {
        let ring = Keyring::new(key(1), vec![]);
        let a = ring.seal(b"x", b"").unwrap();
        let b = ring.seal(b"x", b"").unwrap();
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(a.ciphertext, b.ciphertext);
    }

    #[test]
    fn wrong_aad_fails() {
        let ring = Keyring::new(key(1), vec![]);
        let sealed = ring.seal(b"secret", &aad("t1", "j1", "f")).unwrap();
        for other in [aad("t2", "j1", "f"), aad("t1", "j2", "f"), aad("t1", "j1", "g"), Vec::new()] {
            assert_eq!(ring.open(&sealed, &other), Err(CryptoError::Tampered));
        }
    }

    #[test]
    fn aad_is_unambiguous() {
        assert_ne!(aad("a", "bc", "d"), aad("ab", "c", "d"));
        assert_ne!(aad("a", "b", "cd"), aad("a", "bc", "d"));
        assert_ne!(aad("", "", "x"), aad("", "x", ""));
        assert_eq!(aad("a", "b", "c"), aad("a", "b", "c"));
        let expected: Vec<u8> =
            [b"raftcron-aad-v1".as_slice(), &[0, 0, 0, 1], b"t", &[0, 0, 0, 2], b"j1", &[0, 0, 0, 0]].concat();
        assert_eq!(aad("t", "j1", ""), expected);
    }

    #[test]
    fn tampered_ciphertext_fails() {
        let ring = Keyring::new(key(1), vec![]);
        let a = aad("t", "j", "f");
        let sealed = ring.seal(b"secret value", &a).unwrap();
        for i in 0..sealed.ciphertext.len() {
            let mut bad = sealed.clone();
            bad.ciphertext[i] ^= 0x01;
            assert_eq!(ring.open(&bad, &a), Err(CryptoError::Tampered), "byte {i}");
        }
        let mut bad = sealed.clone();
        bad.nonce[0] ^= 0x80;
        assert_eq!(ring.open(&bad, &a), Err(CryptoError::Tampered));
        let mut bad = sealed.clone();
        bad.ciphertext.truncate(10);
        assert_eq!(ring.open(&bad, &a), Err(CryptoError::Tampered));
        let mut bad = sealed;
        bad.ciphertext.clear();
        assert_eq!(ring.open(&bad, &a), Err(CryptoError::Tampered));
    }

    #[test]
    fn old_key_opens_after_rotation_and_reseal_moves_to_current() {
        let old = key(1);
        let new = key(2);
        let a = aad("t", "j", "f");
        let before = Keyring::new(old.clone(), vec![]).seal(b"v", &a).unwrap();

        let rotated = Keyring::new(new.clone(), vec![old.clone()]);
        assert!(!rotated.is_current(&before));
        assert_eq!(rotated.open(&before, &a).unwrap().as_slice(), b"v");

        let after = rotated.reseal(&before, &a).unwrap();
        assert!(rotated.is_current(&after));
        assert_eq!(after.key_id, new.id());
        assert_eq!(Keyring::new(new, vec![]).open(&after, &a).unwrap().as_slice(), b"v");
        // Reseal keeps the binding: the wrong aad still fails.
        assert_eq!(rotated.reseal(&before, &aad("t", "j", "g")), Err(CryptoError::Tampered));
    }

    #[test]
    fn unknown_key_id() {
        let a = aad("t", "j", "f");
        let sealed = Keyring::new(key(1), vec![]).seal(b"v", &a).unwrap();
        let other = Keyring::new(key(2), vec![key(3)]);
        let err = other.open(&sealed, &a).unwrap_err();
        assert_eq!(err, CryptoError::UnknownKey { id: key(1).id().to_owned() });
        assert!(err.to_string().contains(key(1).id()));
        // A forged key id that names a held key fails authentication instead.
        let mut forged = sealed;
        forged.key_id = key(2).id().to_owned();
        assert_eq!(other.open(&forged, &a), Err(CryptoError::Tampered));
    }

    #[test]
    fn ids_are_stable() {
        // Pinned: changing the derivation would orphan every stored ciphertext.
        assert_eq!(key(0).id(), "973556ff010ae3f7");
        assert_eq!(key(0).id(), key(0).id());
        assert_ne!(key(0).id(), key(1).id());
        let k = MasterKey::generate();
        assert_eq!(k.id().len(), KEY_ID_LEN);
        assert!(is_key_id(k.id()));
        let parsed = MasterKey::from_base64(&k.to_base64()).unwrap();
        assert_eq!(parsed.id(), k.id());
    }

    #[test]
    fn keyring_ids_and_dedup() {
        let ring = Keyring::new(key(2), vec![key(1), key(2), key(1), key(3)]);
        let ids = ring.ids();
        assert_eq!(ids.current, key(2).id());
        assert_eq!(ids.all, vec![key(2).id(), key(1).id(), key(3).id()]);
        assert_eq!(ring.current_id(), key(2).id());
    }

    #[test]
    fn parses_all_base64_flavours() {
        let raw: [u8; 32] = core::array::from_fn(|i| (i as u8).wrapping_mul(37).wrapping_add(250));
        let expected = MasterKey::from_bytes(raw);
        let std_pad = base64::engine::general_purpose::STANDARD.encode(raw);
        let url_nopad = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
        assert!(std_pad.contains('+') || std_pad.contains('/'), "test vector must exercise the alphabets");
        for text in [
            std_pad.clone(),
            std_pad.trim_end_matches('=').to_owned(),
            url_nopad.clone(),
            format!("{url_nopad}="),
            format!("  \n{std_pad}\n\t"),
        ] {
            assert_eq!(MasterKey::from_base64(&text).unwrap().id(), expected.id(), "{text:?}");
        }
    }

    #[test]
    fn parsing_errors_are_clear() {
        let short = base64::engine::general_purpose::STANDARD.encode([7u8; 17]);
        let err = MasterKey::from_base64_named("RAFTCRON_MASTER_KEY", &short).unwrap_err();
        assert_eq!(err.to_string(), "RAFTCRON_MASTER_KEY: expected 32 bytes of base64, got 17 bytes");
        let long = base64::engine::general_purpose::STANDARD.encode([7u8; 33]);
        assert!(matches!(MasterKey::from_base64(&long), Err(KeyError::WrongLength { got: 33, .. })));
        assert!(matches!(MasterKey::from_base64("   "), Err(KeyError::Empty { .. })));
        let err = MasterKey::from_base64_named("RAFTCRON_MASTER_KEY", "not*base64!").unwrap_err();
        assert!(matches!(err, KeyError::NotBase64 { .. }));
        assert!(err.to_string().starts_with("RAFTCRON_MASTER_KEY: expected 32 bytes of base64"));
        assert!(!err.to_string().contains("not*base64"), "must not echo the value");
        // Mixed alphabets are not base64 in either alphabet.
        let mixed = "+".repeat(20) + &"-".repeat(23);
        assert!(matches!(MasterKey::from_base64(&mixed), Err(KeyError::NotBase64 { .. })));
    }

    #[test]
    fn debug_never_shows_secrets() {
        let k = key(0xAB);
        let ring = Keyring::new(k.clone(), vec![key(0xCD)]);
        let sealed = ring.seal(b"topsecret", b"").unwrap();
        let text = format!("{k:?} {ring:?} {sealed:?} {:?}", ring.current());
        assert!(text.contains(k.id()));
        assert!(!text.contains("171"), "{text}"); // 0xAB as a decimal array element
        assert!(!text.to_lowercase().contains("abab"), "{text}");
        assert!(!text.contains("nonce"), "{text}");
        assert_eq!(format!("{sealed:?}"), format!("Sealed {{ key_id: {:?}, len: 25 }}", k.id()));
    }

    #[test]
    fn sealed_serde_round_trip() {
        let ring = Keyring::new(key(1), vec![]);
        let a = aad("t", "j", "f");
        let sealed = ring.seal(b"payload", &a).unwrap();
        let bin = bincode::serialize(&sealed).unwrap();
        let back: Sealed = bincode::deserialize(&bin).unwrap();
        assert_eq!(back, sealed);
        let json = serde_json::to_string(&sealed).unwrap();
        let back: Sealed = serde_json::from_str(&json).unwrap();
        assert_eq!(ring.open(&back, &a).unwrap().as_slice(), b"payload");
    }

    #[test]
    fn key_file_loading() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let k = MasterKey::generate();
        std::fs::write(&path, format!("{}\n", k.to_base64().as_str())).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            assert_eq!(MasterKey::from_file(&path).unwrap().id(), k.id());
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let err = MasterKey::from_file(&path).unwrap_err();
            assert!(matches!(err, KeyError::InsecurePermissions { mode: 0o644, .. }), "{err:?}");
            assert!(err.to_string().contains("chmod 600"), "{err}");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o440)).unwrap();
            assert!(MasterKey::from_file(&path).is_ok(), "group read (a Kubernetes fsGroup mount) is allowed");
        }
        assert_eq!(MasterKey::from_file_ignoring_permissions(&path).unwrap().id(), k.id());

        let short = dir.path().join("short.key");
        std::fs::write(&short, base64::engine::general_purpose::STANDARD.encode([1u8; 17])).unwrap();
        let err = MasterKey::from_file_ignoring_permissions(&short).unwrap_err();
        assert_eq!(err.to_string(), format!("{}: expected 32 bytes of base64, got 17 bytes", short.display()));

        let big = dir.path().join("big.key");
        std::fs::write(&big, vec![b'A'; 5000]).unwrap();
        assert!(matches!(MasterKey::from_file_ignoring_permissions(&big), Err(KeyError::FileTooLarge { .. })));

        let missing = dir.path().join("missing.key");
        assert!(matches!(MasterKey::from_file(&missing), Err(KeyError::Read { .. })));
    }

    #[test]
    fn compatibility_table() {
        let a = "aaaaaaaaaaaaaaaa";
        let b = "bbbbbbbbbbbbbbbb";
        let c = "cccccccccccccccc";
        let cases: &[(KeyringIds, KeyringIds, bool)] = &[
            // Same single key.
            (ids(a, &[a]), ids(a, &[a]), true),
            // Rotation step 1: new key b added as previous on one node.
            (ids(a, &[a, b]), ids(a, &[a]), true),
            // Rotation step 2: one node switched to b, the other holds b as previous.
            (ids(b, &[b, a]), ids(a, &[a, b]), true),
            // One node switched to b before the other holds it.
            (ids(b, &[b, a]), ids(a, &[a]), false),
            // Completely different keys.
            (ids(a, &[a]), ids(c, &[c]), false),
            // Both hold both, different current.
            (ids(a, &[a, b]), ids(b, &[a, b]), true),
            // Peer holds mine only as a previous key but I cannot read theirs.
            (ids(a, &[a]), ids(c, &[c, a]), false),
        ];
        for (i, (mine, theirs, ok)) in cases.iter().enumerate() {
            assert_eq!(compatible(mine, theirs).is_ok(), *ok, "case {i}");
            assert_eq!(compatible(theirs, mine).is_ok(), *ok, "case {i} reversed");
        }
        let err = compatible(&ids(b, &[b, a]), &ids(a, &[a])).unwrap_err();
        assert!(err.contains(a) && err.contains(b), "{err}");
        assert!(err.contains("the peer does not hold this node's current key bbbbbbbbbbbbbbbb"), "{err}");
        assert!(err.contains("every node must hold the same master key"), "{err}");
        assert!(err.contains("during rotation add the new key as a previous key on every node first"), "{err}");
    }

    #[test]
    fn header_round_trip_and_errors() {
        let ring = Keyring::new(key(2), vec![key(1)]);
        let v = ring.ids().to_header_value();
        assert_eq!(v, format!("cur={};all={},{}", key(2).id(), key(2).id(), key(1).id()));
        assert_eq!(KeyringIds::from_header_value(&v).unwrap(), ring.ids());

        let a = "0123456789abcdef";
        let b = "fedcba9876543210";
        assert_eq!(
            KeyringIds::from_header_value(&format!(" all = {a} , {b} ; cur = {b} ; future=1 ")).unwrap(),
            ids(b, &[a, b])
        );
        for bad in [
            String::new(),
            format!("cur={a}"),
            format!("all={a}"),
            format!("cur={b};all={a}"),
            format!("cur={a};all={a},"),
            format!("cur={a};cur={a};all={a}"),
            format!("cur={};all={}", a.to_uppercase(), a.to_uppercase()),
            format!("cur={a}x;all={a}x"),
            format!("cur={a};all={a};garbage"),
            "cur=../../etc;all=../../etc".to_owned(),
        ] {
            assert!(KeyringIds::from_header_value(&bad).is_err(), "{bad:?}");
        }
    }
}
