//! The workload: firing jobs created once at the start (the slots the checkers judge), and the
//! concurrent API clients that write and read on every node while faults happen.
//!
//! Submodules: [`firing`] creates the firing jobs, [`writers`] runs the job writers and readers,
//! [`keys`] creates, uses and revokes API keys and probes revocation. Nothing here injects
//! faults or judges the history; clients only record what they saw.

pub mod firing;
pub mod keys;
pub mod writers;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

/// Which nodes a fault currently touches (or touched until the cluster converged again): the
/// key workload does not judge revocation on them.
#[derive(Debug, Clone, Default)]
pub struct Health {
    affected: Arc<Mutex<BTreeSet<u64>>>,
    /// Bumped on every change, so a probe can tell whether anything changed while it ran.
    generation: Arc<Mutex<u64>>,
}

impl Health {
    pub fn set_affected(&self, nodes: &[u64]) {
        let mut g = self.affected.lock().unwrap_or_else(|e| e.into_inner());
        g.clear();
        g.extend(nodes.iter().copied());
        *self.generation.lock().unwrap_or_else(|e| e.into_inner()) += 1;
    }

    pub fn clear(&self) {
        self.set_affected(&[]);
    }

    pub fn affected(&self) -> BTreeSet<u64> {
        self.affected.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// A stop signal for the client tasks.
#[derive(Debug, Clone)]
pub struct Stop {
    rx: watch::Receiver<bool>,
}

impl Stop {
    pub fn new() -> (watch::Sender<bool>, Stop) {
        let (tx, rx) = watch::channel(false);
        (tx, Stop { rx })
    }

    pub fn is_set(&self) -> bool {
        *self.rx.borrow()
    }

    /// Sleeps `d`, or less when the stop is given; returns whether to stop.
    pub async fn sleep(&mut self, d: std::time::Duration) -> bool {
        if self.is_set() {
            return true;
        }
        let _ = tokio::time::timeout(d, self.rx.changed()).await;
        self.is_set()
    }
}
