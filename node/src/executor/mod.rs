//! The executor: sends a job's HTTP request safely. A leaf: it knows jobs and URLs, never Raft.
//!
//! For now it holds the SSRF guard, which job validation also uses.

pub mod ssrf;
