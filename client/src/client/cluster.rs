//! The cluster: status, membership, shards, per-node probes and snapshot downloads.
//!
//! A snapshot download fails over like any read until the answer starts; once bytes have been
//! handed to the caller, a broken stream is an error (the caller decides whether to start over).
//! [`Client::save_snapshot`] writes to `FILE.partial` and renames it only when the whole
//! snapshot arrived, so a failed download never leaves a truncated `FILE`.

use std::io::Write;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use reqwest::{Method, StatusCode};
use serde::de::IgnoredAny;

use super::{error_chain, error_from, Client, ClientError};
use crate::types::*;

/// Upper bound of a snapshot's size (and so of the chunks read): a guard, not a real limit.
pub const MAX_SNAPSHOT_BYTES: u64 = 1 << 40;

/// The largest number of chunks one download reads (each chunk is at least one byte).
const MAX_CHUNKS: u64 = MAX_SNAPSHOT_BYTES;

/// A snapshot being downloaded: read it with [`SnapshotDownload::chunk`].
#[derive(Debug)]
pub struct SnapshotDownload {
    resp: reqwest::Response,
    node: String,
    /// Taken when the answer starts (reqwest's own figure shrinks as the body is read).
    length: Option<u64>,
    received: u64,
}

impl SnapshotDownload {
    /// The base URL of the node that serves the snapshot.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The size announced by the node, when it announced one.
    pub fn content_length(&self) -> Option<u64> {
        self.length
    }

    /// Bytes received so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// The next piece of the snapshot, or `None` at its end.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, ClientError> {
        match self.resp.chunk().await {
            Ok(Some(c)) => {
                self.received += c.len() as u64;
                if self.received > MAX_SNAPSHOT_BYTES {
                    return Err(ClientError::Decode(format!("snapshot larger than {MAX_SNAPSHOT_BYTES} bytes")));
                }
                Ok(Some(c))
            }
            Ok(None) => match self.length {
                Some(len) if len != self.received => Err(ClientError::Unreachable(format!(
                    "{}: the snapshot stream ended after {} of {len} bytes",
                    self.node, self.received
                ))),
                _ => Ok(None),
            },
            Err(e) => Err(ClientError::Unreachable(format!(
                "{}: the snapshot stream broke after {} bytes: {}",
                self.node,
                self.received,
                error_chain(&e)
            ))),
        }
    }

    /// Copies the rest of the snapshot into `out`; returns the bytes written.
    pub async fn copy_to<W: Write>(&mut self, out: &mut W) -> Result<u64, ClientError> {
        let mut written = 0u64;
        for _ in 0..MAX_CHUNKS {
            let Some(chunk) = self.chunk().await? else {
                out.flush().map_err(|e| ClientError::Io(format!("writing the snapshot: {e}")))?;
                return Ok(written);
            };
            out.write_all(&chunk).map_err(|e| ClientError::Io(format!("writing the snapshot: {e}")))?;
            written += chunk.len() as u64;
        }
        Err(ClientError::Decode("the snapshot stream did not end".into()))
    }
}

impl Client {
    /// `GET /api/v1/cluster`: the answering node's view of the cluster.
    pub async fn cluster(&self) -> Result<ClusterStatus, ClientError> {
        let env: ClusterEnvelope = self.get("/api/v1/cluster").await?;
        Ok(env.cluster)
    }

    /// `POST /api/v1/cluster/nodes`: adds a node that waits to be added (a learner first, then
    /// a voter once it has caught up).
    pub async fn add_node(&self, node_id: u64, addr: &str) -> Result<ClusterStatus, ClientError> {
        let req = AddNode { node_id, addr: addr.to_string() };
        let env: ClusterEnvelope = self.call(Method::POST, "/api/v1/cluster/nodes", Some(&req)).await?;
        Ok(env.cluster)
    }

    /// `DELETE /api/v1/cluster/nodes/{id}`.
    pub async fn remove_node(&self, node_id: u64) -> Result<(), ClientError> {
        let _: IgnoredAny =
            self.call::<(), _>(Method::DELETE, &format!("/api/v1/cluster/nodes/{node_id}"), None).await?;
        Ok(())
    }

    /// `GET /api/v1/cluster/shards`: each shard's owner and the count per node.
    pub async fn shards(&self) -> Result<ShardList, ClientError> {
        self.get("/api/v1/cluster/shards").await
    }

    /// `GET /healthz` of the node at `url` (one of [`Client::urls`]), without failover.
    pub async fn healthz(&self, url: &str) -> Result<HealthStatus, ClientError> {
        self.probe(url, "/healthz").await
    }

    /// `GET /readyz` of the node at `url`, without failover. A node that is not ready answers
    /// 503 with a reason; that is returned as `Ok` with `status: "not_ready"`.
    pub async fn readyz(&self, url: &str) -> Result<HealthStatus, ClientError> {
        self.probe(url, "/readyz").await
    }

    async fn probe(&self, base: &str, path: &str) -> Result<HealthStatus, ClientError> {
        let url = format!("{}{path}", base.trim_end_matches('/'));
        let resp = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| ClientError::Unreachable(format!("{url}: {}", error_chain(&e))))?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| ClientError::Unreachable(format!("{url}: {}", error_chain(&e))))?;
        if status.is_success() || status == StatusCode::SERVICE_UNAVAILABLE {
            if let Ok(h) = serde_json::from_slice::<HealthStatus>(&bytes) {
                return Ok(h);
            }
        }
        error_from(status, &bytes)
    }

    /// `GET /api/v1/cluster/snapshot`: starts downloading the answering node's latest snapshot.
    pub async fn snapshot(&self) -> Result<SnapshotDownload, ClientError> {
        let resp = self.send(&Method::GET, "/api/v1/cluster/snapshot", None, Some(self.snapshot_timeout)).await?;
        let status = resp.status();
        let node = resp.url().origin().ascii_serialization();
        if !status.is_success() {
            let bytes = resp.bytes().await.map_err(|e| ClientError::Unreachable(error_chain(&e)))?;
            return error_from(status, &bytes);
        }
        let length = resp.content_length();
        Ok(SnapshotDownload { resp, node, length, received: 0 })
    }

    /// Downloads the latest snapshot into `out`; returns the bytes written.
    pub async fn snapshot_to_writer<W: Write>(&self, out: &mut W) -> Result<u64, ClientError> {
        self.snapshot().await?.copy_to(out).await
    }

    /// Downloads the latest snapshot to `path` (through `path.partial`, renamed at the end, so
    /// `path` is either the whole snapshot or untouched). Returns the size.
    ///
    /// The file is written with blocking calls from the calling task.
    pub async fn save_snapshot(&self, path: &Path) -> Result<u64, ClientError> {
        let partial = partial_path(path);
        let io = |what: &str, p: &Path, e: std::io::Error| ClientError::Io(format!("{what} {}: {e}", p.display()));
        let mut download = self.snapshot().await?;
        let mut file = std::fs::File::create(&partial).map_err(|e| io("creating", &partial, e))?;
        let result = download.copy_to(&mut file).await;
        let result = result.and_then(|n| file.sync_all().map(|()| n).map_err(|e| io("syncing", &partial, e)));
        drop(file);
        match result {
            Ok(n) => {
                std::fs::rename(&partial, path).map_err(|e| io("renaming to", path, e))?;
                Ok(n)
            }
            Err(e) => {
                let _ = std::fs::remove_file(&partial);
                Err(e)
            }
        }
    }
}

/// `FILE.partial` beside `FILE`.
fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_else(|| "snapshot".into());
    name.push(".partial");
    path.with_file_name(name)
}
