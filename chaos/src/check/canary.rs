//! No canary secret in plain text at rest: every firing and writer job carries an
//! `Authorization` header whose value starts with `canary-<seed>-`; once every node stopped,
//! every file of every data dir is scanned bytewise for that prefix.
//!
//! [`scan`] reads files (bounded: regular files only, no symlinks followed, at most
//! [`MAX_FILES`]); [`check`] judges the scan.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{CheckResult, Evidence};

pub const MAX_FILES: usize = 100_000;
const CHUNK: usize = 1 << 20;

/// What the scan found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Scan {
    pub done: bool,
    pub files: usize,
    pub bytes: u64,
    /// (file, occurrences)
    pub found: Vec<(PathBuf, usize)>,
    pub errors: Vec<String>,
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>, errors: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        errors.push(format!("cannot list {}", dir.display()));
        return;
    };
    for entry in entries.flatten() {
        if out.len() >= MAX_FILES {
            return;
        }
        let Ok(ft) = entry.file_type() else { continue };
        if ft.is_dir() {
            walk(&entry.path(), out, errors);
        } else if ft.is_file() {
            out.push(entry.path());
        }
    }
}

/// Occurrences of `needle` in the file (chunked, overlapping by the needle's length).
fn count_in_file(path: &Path, needle: &[u8]) -> std::io::Result<(usize, u64)> {
    let mut f = std::fs::File::open(path)?;
    let finder = memchr::memmem::Finder::new(needle);
    let mut buf = vec![0u8; CHUNK + needle.len()];
    let mut carry = 0usize;
    let mut count = 0usize;
    let mut bytes = 0u64;
    loop {
        let n = f.read(&mut buf[carry..])?;
        if n == 0 {
            break;
        }
        bytes += n as u64;
        let filled = carry + n;
        count += finder.find_iter(&buf[..filled]).count();
        // Keep the tail shorter than the needle, so a match is never counted twice.
        let keep = needle.len().saturating_sub(1).min(filled);
        buf.copy_within(filled - keep..filled, 0);
        carry = keep;
    }
    Ok((count, bytes))
}

/// Scans every file under `dirs` for `needle`.
pub fn scan(dirs: &[PathBuf], needle: &str) -> Scan {
    let mut files = Vec::new();
    let mut s = Scan::default();
    for d in dirs {
        walk(d, &mut files, &mut s.errors);
    }
    for path in files {
        match count_in_file(&path, needle.as_bytes()) {
            Ok((n, bytes)) => {
                s.files += 1;
                s.bytes += bytes;
                if n > 0 {
                    s.found.push((path, n));
                }
            }
            Err(err) => s.errors.push(format!("{}: {err}", path.display())),
        }
    }
    s.done = true;
    s
}

pub fn check(e: &Evidence<'_>) -> CheckResult {
    let name = "no plaintext secret at rest";
    if !e.canary.done {
        return CheckResult::not_run(name, "the data dirs were not scanned");
    }
    let mut r = CheckResult::new(name);
    for (path, n) in &e.canary.found {
        r.violation(format!("{}: the canary appears {n} times in plain text", path.display()));
    }
    r.summary = format!(
        "{} files ({} MiB) scanned, {} with the canary",
        e.canary.files,
        e.canary.bytes / (1 << 20),
        e.canary.found.len()
    );
    r.figures = serde_json::json!({ "files": e.canary.files, "bytes": e.canary.bytes, "errors": e.canary.errors });
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_canary_across_chunk_edges_and_only_there() {
        let dir = tempfile::tempdir().unwrap();
        let needle = "canary-7-";
        let mut big = vec![b'x'; CHUNK - 3];
        big.extend_from_slice(needle.as_bytes());
        big.extend_from_slice(b"tail canary-7-again");
        std::fs::create_dir_all(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub").join("a.sst"), &big).unwrap();
        std::fs::write(dir.path().join("b.log"), b"nothing here canary-8-").unwrap();
        let s = scan(&[dir.path().to_path_buf()], needle);
        assert!(s.done);
        assert_eq!(s.files, 2);
        assert_eq!(s.found.len(), 1);
        assert_eq!(s.found[0].1, 2);
    }
}
