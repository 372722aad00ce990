//! A closed-loop load driver: `concurrency` workers each run one operation after another until
//! the time or the operation budget is spent, timing every call into a histogram.
//!
//! Failed calls count as errors and are not timed. Every loop is bounded by both a deadline
//! and a count.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::hist::Latency;
use crate::progress::{self, Counters};
use crate::report::Row;

/// What a run of the driver measured.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub ops: u64,
    pub errors: u64,
    pub elapsed: Duration,
    pub latency: Latency,
    pub first_error: Option<String>,
}

impl Outcome {
    /// A report row of this outcome.
    pub fn row(&self, scenario: &str, case: impl Into<String>) -> Row {
        let mut r = Row::new(scenario, case);
        r.ops = self.ops;
        r.errors = self.errors;
        r.seconds = self.elapsed.as_secs_f64();
        r.rate = self.ops as f64 / r.seconds.max(1e-9);
        r.latency = self.latency.summary();
        if let Some(e) = &self.first_error {
            r.extra.insert("first_error".into(), e.chars().take(200).collect::<String>().into());
        }
        r
    }
}

/// Runs `op(worker, n)` from `concurrency` workers for `duration` or `max_ops` calls in all,
/// whichever comes first, showing progress under `label`.
pub async fn run<F, Fut>(label: &str, concurrency: usize, duration: Duration, max_ops: u64, op: F) -> Outcome
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send,
{
    let counters = Arc::new(Counters::default());
    let _progress = progress::show(label.to_string(), counters.clone(), duration + Duration::from_secs(30));
    let op = Arc::new(op);
    let start = Instant::now();
    let deadline = start + duration;
    let issued = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut workers = Vec::with_capacity(concurrency);
    for w in 0..concurrency.max(1) {
        let (op, counters, issued) = (op.clone(), counters.clone(), issued.clone());
        workers.push(tokio::spawn(async move {
            let mut latency = Latency::new();
            let mut first_error = None;
            loop {
                let n = issued.fetch_add(1, Ordering::Relaxed);
                if n >= max_ops || Instant::now() >= deadline {
                    break;
                }
                let t = Instant::now();
                match op(w, n).await {
                    Ok(()) => {
                        latency.record(t.elapsed());
                        counters.ops.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        counters.errors.fetch_add(1, Ordering::Relaxed);
                        first_error.get_or_insert(e);
                    }
                }
            }
            (latency, first_error)
        }));
    }
    let mut out = Outcome::default();
    for w in workers {
        if let Ok((latency, first_error)) = w.await {
            out.latency.merge(&latency);
            if out.first_error.is_none() {
                out.first_error = first_error;
            }
        }
    }
    out.elapsed = start.elapsed();
    out.ops = counters.ops.load(Ordering::Relaxed);
    out.errors = counters.errors.load(Ordering::Relaxed);
    out
}
