//! Snapshot files: the replicated state streamed to and from disk, never held whole in memory.
//!
//! Layout (all integers big-endian):
//! ```text
//! magic "RCSNAP" 0x00 FORMAT(1 byte)
//! u32 meta length, meta (versioned bincode of SnapshotMeta)
//! records: u8 table tag (non-zero), u32 key length, key, u32 value length, value
//! trailer: u8 0, u64 record count, 32-byte SHA-256 of every byte before the trailer
//! ```
//! A file is verified (trailer and hash) before any of it is loaded, so a torn or corrupt
//! transfer never half-replaces the state. This module must not decide *when* to snapshot:
//! openraft does that; it only writes and reads files.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::raft::SnapshotMeta;
use crate::store::{decode, encode, Batch, Store, StoreError, StoreSnapshot, Table};

const MAGIC: &[u8; 7] = b"RCSNAP\0";
/// The snapshot file format written by this build.
pub const SNAPSHOT_FORMAT: u8 = 1;
const MAX_FIELD: u32 = 256 * 1024 * 1024;
const LOAD_BATCH_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("not a raftcron snapshot (bad magic)")]
    Magic,
    #[error("snapshot format {0} is not readable by this build (reads {SNAPSHOT_FORMAT})")]
    Format(u8),
    #[error("corrupt snapshot: {0}")]
    Corrupt(String),
}

/// A writer that hashes everything it writes.
struct HashingWriter<W: Write> {
    inner: W,
    hash: Sha256,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn write_field(w: &mut impl Write, bytes: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(bytes.len()).map_err(|_| std::io::Error::other("field over 4 GiB"))?;
    w.write_all(&len.to_be_bytes())?;
    w.write_all(bytes)
}

/// Writes the state tables as seen by `view`, with `meta`, to `path`, and fsyncs it.
/// Returns the number of records.
pub fn write_file(view: &StoreSnapshot<'_>, meta: &SnapshotMeta, path: &Path) -> Result<u64, SnapshotError> {
    let file = File::create(path)?;
    let mut w = HashingWriter { inner: BufWriter::with_capacity(1 << 20, file), hash: Sha256::new() };
    w.write_all(MAGIC)?;
    w.write_all(&[SNAPSHOT_FORMAT])?;
    write_field(&mut w, &encode(meta).map_err(StoreError::from)?)?;
    let mut count = 0u64;
    for t in Table::STATE {
        view.for_each(t, |k, v| {
            let io = |e: std::io::Error| StoreError::Io { path: path.to_path_buf(), source: e };
            w.write_all(&[t.tag()]).map_err(io)?;
            write_field(&mut w, k).map_err(io)?;
            write_field(&mut w, v).map_err(io)?;
            count += 1;
            Ok(())
        })?;
    }
    let digest = w.hash.finalize_reset();
    let mut inner = w.inner;
    inner.write_all(&[0])?;
    inner.write_all(&count.to_be_bytes())?;
    inner.write_all(&digest)?;
    let file = inner.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    Ok(count)
}

/// One record of a snapshot: table, key, value.
type Record = (Table, Vec<u8>, Vec<u8>);

/// A streaming reader of a snapshot file.
struct Reader {
    r: BufReader<File>,
    hash: Sha256,
}

impl Reader {
    fn open(path: &Path) -> Result<(Reader, SnapshotMeta), SnapshotError> {
        let mut reader = Reader { r: BufReader::with_capacity(1 << 20, File::open(path)?), hash: Sha256::new() };
        let mut magic = [0u8; 7];
        reader.read_exact(&mut magic)?;
        if &magic != MAGIC {
            return Err(SnapshotError::Magic);
        }
        let mut fmt = [0u8; 1];
        reader.read_exact(&mut fmt)?;
        if fmt[0] != SNAPSHOT_FORMAT {
            return Err(SnapshotError::Format(fmt[0]));
        }
        let meta_bytes = reader.field()?;
        let meta = decode(&meta_bytes).map_err(|e| SnapshotError::Corrupt(format!("meta: {e}")))?;
        Ok((reader, meta))
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), SnapshotError> {
        self.r.read_exact(buf)?;
        self.hash.update(&*buf);
        Ok(())
    }

    fn field(&mut self) -> Result<Vec<u8>, SnapshotError> {
        let mut len = [0u8; 4];
        self.read_exact(&mut len)?;
        let len = u32::from_be_bytes(len);
        if len > MAX_FIELD {
            return Err(SnapshotError::Corrupt(format!("field of {len} bytes")));
        }
        let mut buf = vec![0u8; len as usize];
        self.read_exact(&mut buf)?;
        Ok(buf)
    }

    /// The next record, or `None` at the trailer (which is then checked).
    fn next(&mut self, seen: u64) -> Result<Option<Record>, SnapshotError> {
        let mut tag = [0u8; 1];
        self.r.read_exact(&mut tag)?;
        if tag[0] == 0 {
            let digest = std::mem::take(&mut self.hash).finalize();
            let mut count = [0u8; 8];
            self.r.read_exact(&mut count)?;
            let mut sum = [0u8; 32];
            self.r.read_exact(&mut sum)?;
            if u64::from_be_bytes(count) != seen {
                return Err(SnapshotError::Corrupt(format!(
                    "trailer counts {} records, file has {seen}",
                    u64::from_be_bytes(count)
                )));
            }
            if digest.as_slice() != sum {
                return Err(SnapshotError::Corrupt("checksum mismatch".into()));
            }
            return Ok(None);
        }
        self.hash.update(tag);
        let table = Table::from_tag(tag[0])
            .filter(|t| Table::STATE.contains(t))
            .ok_or_else(|| SnapshotError::Corrupt(format!("unknown table tag {}", tag[0])))?;
        let k = self.field()?;
        let v = self.field()?;
        Ok(Some((table, k, v)))
    }
}

/// Reads the meta of a snapshot file without reading the rest.
pub fn read_meta(path: &Path) -> Result<SnapshotMeta, SnapshotError> {
    Ok(Reader::open(path)?.1)
}

/// Checks a whole file (magic, format, every record, count and checksum) without loading it.
pub fn verify(path: &Path) -> Result<SnapshotMeta, SnapshotError> {
    let (mut r, meta) = Reader::open(path)?;
    let mut n = 0;
    while r.next(n)?.is_some() {
        n += 1;
    }
    Ok(meta)
}

/// Replaces the state tables with the records of a verified file, in bounded batches.
/// The caller makes this crash-safe (see `state_machine`): a half-loaded state is marked.
pub fn load(store: &Store, path: &Path) -> Result<SnapshotMeta, SnapshotError> {
    let meta = verify(path)?;
    for t in Table::STATE {
        store.clear(t)?;
    }
    let (mut r, _) = Reader::open(path)?;
    let (mut batch, mut bytes, mut n) = (Batch::default(), 0usize, 0u64);
    while let Some((t, k, v)) = r.next(n)? {
        bytes += k.len() + v.len();
        batch.put(t, k, v);
        n += 1;
        if bytes >= LOAD_BATCH_BYTES || n == 1 {
            store.write(std::mem::take(&mut batch), false)?;
            bytes = 0;
            crate::crash_point!("snapshot-install-midway");
        }
    }
    store.write(batch, false)?;
    Ok(meta)
}
