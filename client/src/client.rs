//! A typed async client for the public API that fails over between node URLs.
//!
//! Any node serves every route, so the client tries its URLs in turn, starting from the last
//! one that answered, and moves on only on a connection error or a 503 (no leader, not ready).
//! A write whose request was sent but whose answer was lost is reported as
//! [`ClientError::Unknown`], never retried blindly: it may have been applied.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use uuid::Uuid;

use crate::error::{ErrorBody, ErrorCode};
use crate::types::*;

/// What a call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{status} {}: {}", .body.error.as_str(), .body.message)]
    Api { status: u16, body: ErrorBody },
    #[error("no node could be reached: {0}")]
    Unreachable(String),
    #[error("the request was sent but its outcome is unknown: {0}")]
    Unknown(String),
    #[error("invalid client configuration: {0}")]
    Config(String),
    #[error("unexpected answer: {0}")]
    Decode(String),
}

impl ClientError {
    /// The API error code, when the server answered with one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Api { body, .. } => Some(body.error),
            _ => None,
        }
    }
}

/// A client bound to one API key and a list of node base URLs (`http://host:port`).
#[derive(Debug)]
pub struct Client {
    urls: Vec<String>,
    api_key: String,
    http: reqwest::Client,
    preferred: AtomicUsize,
}

impl Client {
    /// Builds a client. `urls` are base URLs such as `http://127.0.0.1:7001`.
    pub fn new(urls: Vec<String>, api_key: impl Into<String>) -> Result<Client, ClientError> {
        if urls.is_empty() {
            return Err(ClientError::Config("at least one URL is needed".into()));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(15))
            .no_proxy()
            .build()
            .map_err(|e| ClientError::Config(e.to_string()))?;
        Ok(Client {
            urls: urls.into_iter().map(|u| u.trim_end_matches('/').to_string()).collect(),
            api_key: api_key.into(),
            http,
            preferred: AtomicUsize::new(0),
        })
    }

    async fn call<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let start = self.preferred.load(Ordering::Relaxed);
        let mut last_err = String::new();
        for i in 0..self.urls.len() {
            let idx = (start + i) % self.urls.len();
            let url = format!("{}{}", self.urls[idx], path);
            let mut req = self.http.request(method.clone(), &url).bearer_auth(&self.api_key);
            if let Some(b) = body {
                req = req.json(b);
            }
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) if e.is_connect() => {
                    last_err = format!("{url}: {e}");
                    continue;
                }
                Err(e) => return Err(ClientError::Unknown(format!("{url}: {e}"))),
            };
            let status = resp.status();
            if status == StatusCode::SERVICE_UNAVAILABLE {
                last_err = format!("{url}: 503");
                continue;
            }
            self.preferred.store(idx, Ordering::Relaxed);
            let bytes = resp.bytes().await.map_err(|e| ClientError::Unknown(e.to_string()))?;
            if status.is_success() {
                let bytes = if bytes.is_empty() { &b"null"[..] } else { &bytes[..] };
                return serde_json::from_slice(bytes).map_err(|e| ClientError::Decode(e.to_string()));
            }
            let body: ErrorBody = serde_json::from_slice(&bytes)
                .map_err(|e| ClientError::Decode(format!("{status}: {e}: {}", String::from_utf8_lossy(&bytes))))?;
            return Err(ClientError::Api { status: status.as_u16(), body });
        }
        Err(ClientError::Unreachable(last_err))
    }

    pub async fn list_jobs(&self, query: &ListQuery) -> Result<JobList, ClientError> {
        let qs = serde_urlencoded(query);
        self.call::<(), _>(Method::GET, &format!("/api/v1/jobs{qs}"), None).await
    }

    pub async fn get_job(&self, id: Uuid) -> Result<Job, ClientError> {
        let env: JobEnvelope = self.call::<(), _>(Method::GET, &format!("/api/v1/jobs/{id}"), None).await?;
        Ok(env.job)
    }

    pub async fn create_job(&self, job: &CreateJob) -> Result<Job, ClientError> {
        let env: JobEnvelope = self.call(Method::POST, "/api/v1/jobs", Some(job)).await?;
        Ok(env.job)
    }

    pub async fn update_job(&self, id: Uuid, patch: &UpdateJob) -> Result<Job, ClientError> {
        let env: JobEnvelope = self.call(Method::PATCH, &format!("/api/v1/jobs/{id}"), Some(patch)).await?;
        Ok(env.job)
    }

    pub async fn delete_job(&self, id: Uuid) -> Result<(), ClientError> {
        let _: OkResponse = self.call::<(), _>(Method::DELETE, &format!("/api/v1/jobs/{id}"), None).await?;
        Ok(())
    }

    pub async fn cluster(&self) -> Result<ClusterStatus, ClientError> {
        let env: ClusterEnvelope = self.call::<(), _>(Method::GET, "/api/v1/cluster", None).await?;
        Ok(env.cluster)
    }

    pub async fn add_node(&self, node_id: u64, addr: &str) -> Result<ClusterStatus, ClientError> {
        let req = AddNode { node_id, addr: addr.to_string() };
        let env: ClusterEnvelope = self.call(Method::POST, "/api/v1/cluster/nodes", Some(&req)).await?;
        Ok(env.cluster)
    }

    pub async fn remove_node(&self, node_id: u64) -> Result<(), ClientError> {
        let _: OkResponse =
            self.call::<(), _>(Method::DELETE, &format!("/api/v1/cluster/nodes/{node_id}"), None).await?;
        Ok(())
    }
}

fn serde_urlencoded(q: &ListQuery) -> String {
    let mut parts = Vec::new();
    if let Some(p) = q.page {
        parts.push(format!("page={p}"));
    }
    if let Some(s) = q.page_size {
        parts.push(format!("page_size={s}"));
    }
    if let Some(c) = q.consistency {
        parts.push(format!(
            "consistency={}",
            match c {
                Consistency::Linearizable => "linearizable",
                Consistency::Stale => "stale",
            }
        ));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}
