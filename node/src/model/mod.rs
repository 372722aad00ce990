//! Pure data and pure functions of the domain: jobs and their validation, cron schedules, API
//! keys, shard assignment and fire ids. No I/O, no clock reads, no Raft: callers pass in "now" and get values back.

pub mod apikey;
pub mod assignment;
pub mod audit;
pub mod job;
pub mod run;
pub mod schedule;
pub mod secret;
pub mod slot;
pub mod tenant;
