//! A typed async client for the public API that fails over between node URLs.
//!
//! Any node serves every route, so the client tries its URLs in turn, starting from the last
//! one that answered, and moves on only when a node cannot serve the request: a connection
//! error or a 503 (no leader, not ready). A read (`GET`) also moves on when its answer is lost
//! (a timeout, a reset), because reading twice is harmless. A write whose request was sent but
//! whose answer was lost, or that the node answered with `504 OUTCOME_UNKNOWN`, is reported as
//! [`ClientError::Unknown`] and never retried: it may have been applied.
//!
//! The route methods live in the submodules, one per part of the API; this module owns the
//! transport, the failover order and the error type. It never logs: the key and header values
//! it carries must not reach a log.

mod access;
mod cluster;
mod jobs;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{ErrorBody, ErrorCode};

pub use access::{unconfirmed_nodes, Revoked, UNCONFIRMED_NODES};
pub use cluster::SnapshotDownload;

/// Default bound of connecting to one node.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Default bound of one request to one node (a write waits up to ~10 s for its commit).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);
/// Default bound of a whole snapshot download.
pub const DEFAULT_SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(3600);

/// What a call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The node answered with the API's error body (4xx, or a 5xx other than 503 and 504).
    #[error("{status} {}: {}", .body.error.as_str(), .body.message)]
    Api { status: u16, body: ErrorBody },
    /// The node answered an error status without the API's error body (a proxy in between?).
    #[error("HTTP {status}: {text}")]
    Status { status: u16, text: String },
    /// No node could be connected to (or, for a read, answered in time).
    #[error("no node could be reached: {0}")]
    Unreachable(String),
    /// Every node that answered said it cannot serve now (503: no leader, not ready).
    #[error("the cluster cannot serve the request now: {0}")]
    Unavailable(String),
    /// A write was sent but its outcome is unknown: it may or may not have been applied.
    #[error("the request was sent but its outcome is unknown: {0}")]
    Unknown(String),
    /// The client was built with unusable settings.
    #[error("invalid client configuration: {0}")]
    Config(String),
    /// A success answer that does not have the expected shape.
    #[error("unexpected answer: {0}")]
    Decode(String),
    /// A local read or write failed (for example the file a snapshot is saved to).
    #[error("{0}")]
    Io(String),
}

impl ClientError {
    /// The API error code, when the server answered with one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Api { body, .. } => Some(body.error),
            _ => None,
        }
    }

    /// The HTTP status of an error answer, when there was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } | ClientError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Settings of a [`Client`]; start from [`Client::builder`].
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    urls: Vec<String>,
    api_key: String,
    connect_timeout: Duration,
    timeout: Duration,
    snapshot_timeout: Duration,
}

impl ClientBuilder {
    /// Bound of connecting to one node (default 2 s).
    pub fn connect_timeout(mut self, d: Duration) -> ClientBuilder {
        self.connect_timeout = d;
        self
    }

    /// Bound of one request to one node, answer included (default 15 s).
    pub fn timeout(mut self, d: Duration) -> ClientBuilder {
        self.timeout = d;
        self
    }

    /// Bound of a whole snapshot download (default 1 h).
    pub fn snapshot_timeout(mut self, d: Duration) -> ClientBuilder {
        self.snapshot_timeout = d;
        self
    }

    pub fn build(self) -> Result<Client, ClientError> {
        if self.urls.is_empty() {
            return Err(ClientError::Config("at least one URL is needed".into()));
        }
        let mut urls = Vec::with_capacity(self.urls.len());
        for raw in &self.urls {
            let u = raw.trim().trim_end_matches('/');
            let parsed = reqwest::Url::parse(u).map_err(|e| ClientError::Config(format!("URL {raw:?}: {e}")))?;
            if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
                return Err(ClientError::Config(format!(
                    "URL {raw:?}: expected http://HOST:PORT or https://HOST:PORT"
                )));
            }
            urls.push(u.to_string());
        }
        if self.api_key.trim().is_empty() {
            return Err(ClientError::Config("the API key is empty".into()));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(self.connect_timeout)
            .timeout(self.timeout)
            .user_agent(concat!("raftcron-client/", env!("CARGO_PKG_VERSION")))
            .no_proxy()
            .build()
            .map_err(|e| ClientError::Config(e.to_string()))?;
        Ok(Client {
            urls,
            api_key: self.api_key,
            http,
            snapshot_timeout: self.snapshot_timeout,
            preferred: AtomicUsize::new(0),
        })
    }
}

/// A client bound to one API key and a list of node base URLs (`http://host:port`).
pub struct Client {
    urls: Vec<String>,
    api_key: String,
    http: reqwest::Client,
    snapshot_timeout: Duration,
    preferred: AtomicUsize,
}

impl std::fmt::Debug for Client {
    /// Never shows the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("urls", &self.urls).field("api_key", &"<hidden>").finish()
    }
}

/// How one attempt on one node ended.
enum Attempt {
    /// The node answered (success or an error other than 503).
    Answer(reqwest::Response),
    /// The request certainly did not take effect here: move on.
    NotServed(String),
    /// The request may have reached the node but its answer was lost.
    Lost(String),
}

impl Client {
    /// Builds a client with the default timeouts. `urls` are base URLs such as
    /// `http://127.0.0.1:7001`.
    pub fn new(urls: Vec<String>, api_key: impl Into<String>) -> Result<Client, ClientError> {
        Client::builder(urls, api_key).build()
    }

    /// Settings for a client of `urls` with `api_key`.
    pub fn builder(urls: Vec<String>, api_key: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            urls,
            api_key: api_key.into(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            timeout: DEFAULT_TIMEOUT,
            snapshot_timeout: DEFAULT_SNAPSHOT_TIMEOUT,
        }
    }

    /// The base URLs, in the order given.
    pub fn urls(&self) -> &[String] {
        &self.urls
    }

    /// Sends a request to the first node that serves it and returns that node's answer (any
    /// status but 503). Reads move on from a lost answer; writes report it as unknown.
    async fn send(
        &self,
        method: &Method,
        path: &str,
        body: Option<&Bytes>,
        timeout: Option<Duration>,
    ) -> Result<reqwest::Response, ClientError> {
        let n = self.urls.len();
        let start = self.preferred.load(Ordering::Relaxed) % n;
        let may_repeat = *method == Method::GET || *method == Method::HEAD;
        let mut failures = Vec::with_capacity(n);
        let mut saw_503 = false;
        for i in 0..n {
            let idx = (start + i) % n;
            let url = format!("{}{}", self.urls[idx], path);
            match self.attempt(method, &url, body, timeout).await {
                Attempt::Answer(resp) => {
                    self.preferred.store(idx, Ordering::Relaxed);
                    return Ok(resp);
                }
                Attempt::NotServed(why) => {
                    saw_503 |= why.contains(" 503");
                    failures.push(why);
                }
                Attempt::Lost(why) if may_repeat => failures.push(why),
                Attempt::Lost(why) => return Err(ClientError::Unknown(why)),
            }
        }
        let all = failures.join("; ");
        Err(if saw_503 { ClientError::Unavailable(all) } else { ClientError::Unreachable(all) })
    }

    async fn attempt(&self, method: &Method, url: &str, body: Option<&Bytes>, timeout: Option<Duration>) -> Attempt {
        let mut req = self.http.request(method.clone(), url).bearer_auth(&self.api_key);
        if let Some(b) = body {
            req = req.header(reqwest::header::CONTENT_TYPE, "application/json").body(b.clone());
        }
        if let Some(t) = timeout {
            req = req.timeout(t);
        }
        match req.send().await {
            Ok(resp) if resp.status() == StatusCode::SERVICE_UNAVAILABLE => {
                let text = resp.text().await.unwrap_or_default();
                let why = match serde_json::from_str::<ErrorBody>(&text) {
                    Ok(b) => format!("{url}: 503 {}: {}", b.error.as_str(), b.message),
                    Err(_) => format!("{url}: 503"),
                };
                Attempt::NotServed(why)
            }
            Ok(resp) => Attempt::Answer(resp),
            // Connecting failed: nothing was sent, so any request may go to the next node.
            Err(e) if e.is_connect() => Attempt::NotServed(format!("{url}: {}", error_chain(&e))),
            Err(e) => Attempt::Lost(format!("{url}: {}", error_chain(&e))),
        }
    }

    /// One JSON call: the request body (if any) serialized, the success answer decoded into `T`
    /// (an empty body, as in a 204, decodes as `null`).
    async fn call<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let body = match body {
            Some(b) => Some(Bytes::from(serde_json::to_vec(b).map_err(|e| ClientError::Config(e.to_string()))?)),
            None => None,
        };
        let may_repeat = method == Method::GET;
        // A read whose answer is cut off mid-body is asked once more.
        let rounds = if may_repeat { 2 } else { 1 };
        let mut last = None;
        for _ in 0..rounds {
            let resp = self.send(&method, path, body.as_ref(), None).await?;
            let status = resp.status();
            match resp.bytes().await {
                Ok(bytes) => return decode(status, &bytes),
                Err(e) if may_repeat => last = Some(ClientError::Unreachable(error_chain(&e))),
                Err(e) => return Err(ClientError::Unknown(error_chain(&e))),
            }
        }
        Err(last.unwrap_or_else(|| ClientError::Unreachable("no answer".into())))
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.call::<(), T>(Method::GET, path, None).await
    }
}

/// Maps an answer to its decoded body or its error.
fn decode<T: DeserializeOwned>(status: StatusCode, bytes: &[u8]) -> Result<T, ClientError> {
    if status.is_success() {
        let bytes = if bytes.is_empty() { &b"null"[..] } else { bytes };
        return serde_json::from_slice(bytes).map_err(|e| ClientError::Decode(format!("{status}: {e}")));
    }
    error_from(status, bytes)
}

/// The error of a non-success answer.
fn error_from<T>(status: StatusCode, bytes: &[u8]) -> Result<T, ClientError> {
    match serde_json::from_slice::<ErrorBody>(bytes) {
        Ok(body) if body.error == ErrorCode::OutcomeUnknown => Err(ClientError::Unknown(body.message)),
        Ok(body) => Err(ClientError::Api { status: status.as_u16(), body }),
        Err(_) => {
            let text = String::from_utf8_lossy(bytes);
            let text: String = text.chars().take(300).collect();
            Err(ClientError::Status { status: status.as_u16(), text })
        }
    }
}

/// The error and its causes on one line, without reqwest's generic "error sending request for
/// url (...)" (the caller names the URL).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    // Error chains are short; the bound only guards against a cyclic chain.
    for _ in 0..8 {
        let Some(err) = next else { break };
        let text = err.to_string();
        if !text.starts_with("error sending request") && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = err.source();
    }
    if parts.is_empty() {
        e.to_string()
    } else {
        parts.join(": ")
    }
}

/// Percent-encodes one path segment (everything but RFC 3986 unreserved characters).
pub(crate) fn segment(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for b in raw.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `?a=1&b=2` from the pairs that are set, or an empty string.
pub(crate) fn query_string(pairs: &[(&str, Option<String>)]) -> String {
    let parts: Vec<String> =
        pairs.iter().filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", segment(v)))).collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

#[cfg(test)]
mod tests;
