//! The id of the API request a task is serving, carried across the hop to the leader.
//!
//! `api::observe` sets it for the whole handling of a request; `raft::network` sends it with
//! every call made while it is set (`x-request-id`); `/internal/forward` logs the leader's work
//! for a forwarded request under the same id. It must not be used for anything but logs: it is
//! chosen by the client.

use std::future::Future;

use axum::http::HeaderValue;

/// The longest request id taken from a client.
pub const MAX_LEN: usize = 128;

/// The header that carries it.
pub const HEADER: &str = "x-request-id";

tokio::task_local! {
    static CURRENT: String;
}

/// Runs `fut` with `id` as the current request id.
pub async fn scope<F: Future>(id: String, fut: F) -> F::Output {
    CURRENT.scope(id, fut).await
}

/// The current request id, if this task serves an API request.
pub fn current() -> Option<String> {
    CURRENT.try_with(Clone::clone).ok()
}

/// The client's request id, if it is one we may echo and log.
pub fn sane(v: &HeaderValue) -> Option<&str> {
    v.to_str().ok().filter(|s| is_sane(s))
}

/// Whether `s` is a request id we may echo and log.
pub fn is_sane(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_LEN
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}
