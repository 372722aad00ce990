//! The progress line on standard error while a case runs, and notes for people.
//!
//! On a terminal the line is redrawn in place once a second; otherwise (a log file, `make`)
//! a line is printed every 5 s so long runs show they are alive without flooding the log.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Counters a running case updates and the progress line reads.
#[derive(Debug, Default)]
pub struct Counters {
    pub ops: AtomicU64,
    pub errors: AtomicU64,
    done: AtomicBool,
}

/// A note for people on standard error (ends a progress line first).
pub fn note(text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

/// Prints the progress of `label` until the returned guard is dropped (at most `limit`).
pub fn show(label: String, counters: Arc<Counters>, limit: Duration) -> Guard {
    let c = counters.clone();
    let tty = std::io::stderr().is_terminal();
    let every = if tty { Duration::from_secs(1) } else { Duration::from_secs(5) };
    let task = tokio::spawn(async move {
        let start = Instant::now();
        let rounds = limit.as_secs() / every.as_secs().max(1) + 2;
        for _ in 0..rounds {
            tokio::time::sleep(every).await;
            if c.done.load(Ordering::Relaxed) {
                break;
            }
            let secs = start.elapsed().as_secs_f64();
            let ops = c.ops.load(Ordering::Relaxed);
            let line = format!(
                "  {label}: {secs:5.0} s  {ops} ops  {:.0}/s  {} errors",
                ops as f64 / secs.max(1e-3),
                c.errors.load(Ordering::Relaxed)
            );
            let mut err = std::io::stderr().lock();
            let _ = if tty { write!(err, "\r\x1b[K{line}") } else { writeln!(err, "{line}") };
            let _ = err.flush();
        }
    });
    Guard { counters, task, tty }
}

/// Stops the progress line when dropped.
pub struct Guard {
    counters: Arc<Counters>,
    task: tokio::task::JoinHandle<()>,
    tty: bool,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.counters.done.store(true, Ordering::Relaxed);
        self.task.abort();
        if self.tty {
            let _ = write!(std::io::stderr().lock(), "\r\x1b[K");
        }
    }
}
