//! The built-in sink: an HTTP server on 127.0.0.1 that records every request the cluster (or
//! the baseline) sends it: `Idempotency-Key`, `X-Raftcron-Job-Id`, `X-Raftcron-Scheduled-At`
//! and the time it arrived. It answers 200 with an empty body at once.
//!
//! Records are kept in memory, bounded by [`MAX_RECORDS`] (beyond it, requests are counted as
//! dropped, never stored).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Result;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::any;
use axum::Router;
use chrono::{DateTime, Utc};

use crate::slots::Record;

/// The most records kept (about 200 bytes each).
pub const MAX_RECORDS: usize = 5_000_000;

#[derive(Debug, Default)]
struct Inner {
    records: Mutex<Vec<Record>>,
    dropped: AtomicU64,
    malformed: AtomicU64,
}

/// A running sink; it stops when dropped.
pub struct Sink {
    pub addr: SocketAddr,
    inner: Arc<Inner>,
    task: tokio::task::JoinHandle<()>,
}

impl Sink {
    pub async fn start() -> Result<Sink> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let inner = Arc::new(Inner::default());
        let state = inner.clone();
        let app = Router::new().route("/{*path}", any(move |headers: HeaderMap| receive(state.clone(), headers)));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Sink { addr, inner, task })
    }

    /// The URL jobs fire at (`kind` names the run, for people reading logs).
    pub fn url(&self, kind: &str) -> String {
        format!("http://{}/{kind}", self.addr)
    }

    /// A copy of the records so far.
    pub fn records(&self) -> Vec<Record> {
        self.inner.records.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// When the first request received at or after `since_us` for a job `filter` accepts came.
    pub fn first_after(&self, since_us: i64, filter: impl Fn(&str) -> bool) -> Option<i64> {
        let records = self.inner.records.lock().ok()?;
        records.iter().filter(|r| r.received_us >= since_us && filter(&r.job)).map(|r| r.received_us).min()
    }

    pub fn len(&self) -> usize {
        self.inner.records.lock().map(|r| r.len()).unwrap_or(0)
    }

    pub fn clear(&self) {
        if let Ok(mut r) = self.inner.records.lock() {
            r.clear();
        }
    }

    /// Requests without the headers of a fire.
    pub fn malformed(&self) -> u64 {
        self.inner.malformed.load(Ordering::Relaxed)
    }

    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Microseconds since the epoch, now.
pub fn now_us() -> i64 {
    Utc::now().timestamp_micros()
}

async fn receive(inner: Arc<Inner>, headers: HeaderMap) -> StatusCode {
    let received_us = now_us();
    let h = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let scheduled = h("x-raftcron-scheduled-at").and_then(|s| DateTime::parse_from_rfc3339(&s).ok());
    match (h("idempotency-key"), h("x-raftcron-job-id"), scheduled) {
        (Some(key), Some(job), Some(at)) => {
            let record = Record { key, job, scheduled_us: at.timestamp_micros(), received_us };
            if let Ok(mut records) = inner.records.lock() {
                if records.len() < MAX_RECORDS {
                    records.push(record);
                } else {
                    inner.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        _ => {
            inner.malformed.fetch_add(1, Ordering::Relaxed);
        }
    }
    StatusCode::OK
}
