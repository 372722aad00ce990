//! The recording HTTP sink every firing job targets: it answers 200 at once and records each
//! request's `Idempotency-Key`, job, scheduled instant, attempt and arrival time, and whether it
//! carried the job's canary `Authorization` header.
//!
//! It must not judge anything (the checkers do) and never logs header values.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use anyhow::Result;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::any;
use axum::Router;
use chrono::DateTime;
use serde::Serialize;

use crate::clock::now_ms;

/// One request the sink received.
#[derive(Debug, Clone, Serialize)]
pub struct Hit {
    pub key: String,
    pub job: String,
    pub scheduled_ms: i64,
    pub received_ms: i64,
    pub attempt: u32,
    /// The `Authorization` header started with the run's canary prefix.
    pub canary: bool,
}

#[derive(Clone)]
struct SinkState {
    hits: Arc<Mutex<Vec<Hit>>>,
    canary_prefix: String,
}

/// A running sink; the server task ends when this drops.
pub struct Sink {
    pub addr: SocketAddr,
    hits: Arc<Mutex<Vec<Hit>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn record(State(s): State<SinkState>, headers: HeaderMap) -> &'static str {
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let scheduled_ms =
        DateTime::parse_from_rfc3339(h("x-raftcron-scheduled-at")).map(|t| t.timestamp_millis()).unwrap_or(0);
    let hit = Hit {
        key: h("idempotency-key").to_string(),
        job: h("x-raftcron-job-id").to_string(),
        scheduled_ms,
        received_ms: now_ms(),
        attempt: h("x-raftcron-attempt").parse().unwrap_or(0),
        canary: h("authorization").starts_with(&format!("Bearer {}", s.canary_prefix)),
    };
    s.hits.lock().unwrap_or_else(|e| e.into_inner()).push(hit);
    "ok"
}

impl Sink {
    /// Starts the sink on an ephemeral port of `ip` (127.0.0.1, or the hub's address with
    /// `--netns`).
    pub async fn start(canary_prefix: &str, ip: IpAddr) -> Result<Sink> {
        let hits: Arc<Mutex<Vec<Hit>>> = Arc::default();
        let state = SinkState { hits: hits.clone(), canary_prefix: canary_prefix.to_string() };
        let app = Router::new().route("/hit", any(record)).with_state(state);
        let listener = tokio::net::TcpListener::bind(SocketAddr::new(ip, 0)).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Sink { addr, hits, task })
    }

    pub fn url(&self) -> String {
        format!("http://{}/hit", self.addr)
    }

    pub fn count(&self) -> usize {
        self.hits.lock().map(|h| h.len()).unwrap_or(0)
    }

    /// Hits received at or after `since_ms`.
    pub fn count_since(&self, since_ms: i64) -> usize {
        self.hits.lock().map(|h| h.iter().rev().take_while(|x| x.received_ms >= since_ms).count()).unwrap_or(0)
    }

    /// The shared list, for the progress line.
    pub fn hits_handle(&self) -> Arc<Mutex<Vec<Hit>>> {
        self.hits.clone()
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.hits.lock().map(|h| h.clone()).unwrap_or_default()
    }
}
