//! The executor: sends a job's HTTP request safely. A leaf: it knows jobs and URLs, never Raft.
//!
//! [`http`] sends one occurrence with its retries; [`ssrf`] decides which targets are allowed.

pub mod http;
pub mod notify;
pub mod ssrf;
