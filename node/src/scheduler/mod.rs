//! The scheduler: shard ownership, leases, claims and dispatch of scheduled occurrences (see
//! `docs/design/firing.md`).
//!
//! For now it holds only the pure pieces, which read no clock and do no I/O:
//!
//! - [`assignment`]: which node owns which shard at which epoch, and the deterministic
//!   rebalancing the leader commits when the set of live nodes changes;
//! - [`slot`]: the fire id of an occurrence, sent as `Idempotency-Key`.

pub mod assignment;
pub mod slot;
