//! Pure data and pure functions of the domain: jobs and their validation, cron schedules, API
//! keys. No I/O, no clock reads, no Raft: callers pass in "now" and get values back.

pub mod apikey;
pub mod job;
pub mod schedule;
