//! Failpoints: named places where a test or the chaos suite can make this process die, to prove
//! that a crash exactly there loses or duplicates nothing it must not.
//!
//! Compiled in only with the `failpoints` feature (`make test` builds with it); otherwise every
//! `crash_point!` is nothing. They are armed through the `FAILPOINTS` environment variable in
//! the `fail` crate's syntax, for example `FAILPOINTS=fire-after-send=1*return`: the first time
//! the point is reached the process exits at once with status [`EXIT_CODE`], as close to a
//! `kill -9` there as safe code gets. Points:
//! - `claim-committed-before-send`: a claim batch committed, its slots not yet sent;
//! - `fire-after-send`: a slot sent (the target answered), its result not yet recorded;
//! - `log-append-before-sync`: Raft entries about to be written and synced;
//! - `log-append-sent-then-lost`: the leader sent a command's entry eagerly
//!   ([`crate::raft::eager`]) before its own sync; the point deletes the entry from this
//!   node's log, as a power cut before the sync would, then exits;
//! - `snapshot-install-midway`: a snapshot install has replaced part of the state.
//!
//! One point does not end the process: `claim-answer-lost` (in `scheduler::owner`) makes a
//! committed claim batch look like a write whose outcome is unknown, as when the leader dies
//! right after committing it.

/// The exit status of a process stopped by a failpoint.
pub const EXIT_CODE: i32 = 111;

/// Sets up the failpoints named in `FAILPOINTS` (a no-op without the feature). Keep the guard
/// for the life of the process.
#[cfg(feature = "failpoints")]
pub fn setup() -> Option<fail::FailScenario<'static>> {
    std::env::var_os("FAILPOINTS").map(|_| fail::FailScenario::setup())
}

#[cfg(not(feature = "failpoints"))]
pub fn setup() -> Option<()> {
    if std::env::var_os("FAILPOINTS").is_some() {
        eprintln!("raftcron: FAILPOINTS is set but this build has no failpoints (build with --features failpoints)");
    }
    None
}

/// Ends the process at failpoint `name`.
pub fn crash(name: &str) -> ! {
    eprintln!("raftcron: failpoint {name} reached: exiting with status {EXIT_CODE}");
    std::process::exit(EXIT_CODE)
}

/// Marks a failpoint: with the `failpoints` feature and `FAILPOINTS=<name>=return`, the process
/// exits here.
#[macro_export]
macro_rules! crash_point {
    ($name:literal) => {
        #[cfg(feature = "failpoints")]
        fail::fail_point!($name, |_| { $crate::failpoint::crash($name) });
    };
}
