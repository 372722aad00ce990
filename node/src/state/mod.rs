//! The replicated state machine's logic: `Command -> apply -> CommandResult`.
//!
//! [`apply`] is deterministic: it reads only the command (whose time the leader stamped) and
//! the current state through [`StateRead`], and returns its effects as a [`Batch`](crate::store::Batch). It never
//! reads a clock, never does network I/O and never imports openraft: the Raft adapter in
//! `raft/` writes the batch together with the applied log id. Business rejections (a job that
//! does not exist) are results, not errors: an error from apply stops the Raft node.

pub mod access;
mod apply;
mod command;
pub mod firing;
pub mod keys;
mod overlay;
pub mod read;

pub use apply::{apply, cluster_level, StateRead};
pub use command::{Command, CommandBody, CommandResult, Rejection};

use crate::store::{CodecError, StoreError};

/// A failure to read or encode state during apply or a read. Fatal for apply.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Codec(#[from] CodecError),
}

#[cfg(test)]
mod access_tests;
#[cfg(test)]
mod firing_tests;
#[cfg(test)]
pub(crate) mod tests;
