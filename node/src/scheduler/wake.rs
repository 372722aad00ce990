//! Wake-ups at a slot's instant, to a fraction of a millisecond.
//!
//! tokio's timer counts whole milliseconds and rounds a deadline up to the next one, so a task
//! asleep until a slot wakes on average half a millisecond after it, and up to a whole one. A
//! slot's send should not start later than the machine allows: [`Wake::sleep`] sleeps on
//! tokio's timer until [`COARSE_LEAD`] before the deadline, then hands the deadline to one
//! thread of the node's that waits on the operating system's timer (microseconds) and wakes
//! every task whose deadline passed.
//!
//! It never wakes a task before its deadline. If the thread is gone, a sleep falls back to
//! tokio's timer. It must not do anything but wake: what is sent and whether is the caller's.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// How long before a deadline a sleep leaves tokio's timer for the thread's: more than tokio's
/// rounding (1 ms) and its wake-up's usual delay, so the hand-over happens before the instant.
pub const COARSE_LEAD: Duration = Duration::from_millis(2);

/// One task waiting for its deadline.
struct Waiting {
    at: Instant,
    seq: u64,
    tx: oneshot::Sender<()>,
}

impl PartialEq for Waiting {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Waiting {}

impl PartialOrd for Waiting {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Waiting {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// The handle of the waking thread; clones share it. The thread ends once every clone is gone
/// (it wakes nobody after that: a task still waiting falls back to tokio's timer).
#[derive(Debug, Clone)]
pub struct Wake {
    tx: Option<mpsc::Sender<(Instant, oneshot::Sender<()>)>>,
}

impl Wake {
    /// Starts the thread. If the thread cannot start, every sleep uses tokio's timer alone.
    pub fn start() -> Wake {
        let (tx, rx) = mpsc::channel();
        let started = std::thread::Builder::new().name("raftcron-wake".into()).spawn(move || run(rx));
        match started {
            Ok(_) => Wake { tx: Some(tx) },
            Err(e) => {
                tracing::warn!(error = %e, "no waking thread; slots wake on tokio's timer alone");
                Wake { tx: None }
            }
        }
    }

    /// Sleeps for `d`: returns at or after `now + d`, as soon after as the thread is woken.
    pub async fn sleep(&self, d: Duration) {
        let deadline = Instant::now() + d;
        if let Some(coarse) = d.checked_sub(COARSE_LEAD) {
            tokio::time::sleep(coarse).await;
        }
        let (tx, rx) = oneshot::channel();
        let handed = self.tx.as_ref().is_some_and(|t| t.send((deadline, tx)).is_ok());
        if !handed || rx.await.is_err() {
            tokio::time::sleep_until(deadline.into()).await;
        }
    }
}

/// The thread: wakes each task at its deadline, in deadline order. Ends when every handle is
/// gone and nothing waits.
fn run(rx: mpsc::Receiver<(Instant, oneshot::Sender<()>)>) {
    let mut waiting: BinaryHeap<Reverse<Waiting>> = BinaryHeap::new();
    let mut seq = 0u64;
    loop {
        let now = Instant::now();
        while waiting.peek().is_some_and(|Reverse(w)| w.at <= now) {
            if let Some(Reverse(w)) = waiting.pop() {
                // A task that stopped waiting dropped its receiver: nothing to do.
                let _ = w.tx.send(());
            }
        }
        let next = match waiting.peek() {
            Some(Reverse(w)) => rx.recv_timeout(w.at.saturating_duration_since(now)),
            None => rx.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected),
        };
        match next {
            Ok((at, tx)) => {
                seq += 1;
                waiting.push(Reverse(Waiting { at, seq, tx }));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            // No handle left: the waiting tasks (if any) fall back to tokio's timer.
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::Wake;

    #[tokio::test]
    async fn a_sleep_never_ends_before_its_deadline() {
        let wake = Wake::start();
        for ms in [0u64, 1, 3, 7, 25] {
            let asked = Instant::now();
            wake.sleep(Duration::from_millis(ms)).await;
            assert!(asked.elapsed() >= Duration::from_millis(ms), "{ms} ms");
        }
    }

    #[tokio::test]
    async fn many_sleepers_all_wake_none_before_its_deadline() {
        let wake = Wake::start();
        let start = Instant::now();
        let tasks: Vec<_> = (0..200u64)
            .rev()
            .map(|i| {
                let wake = wake.clone();
                tokio::spawn(async move {
                    let d = Duration::from_micros(3_000 + i * 50);
                    wake.sleep(d).await;
                    assert!(start.elapsed() >= d, "woken early: {i}");
                    Instant::now()
                })
            })
            .collect();
        let mut woke = Vec::new();
        for t in tasks {
            woke.push(t.await.expect("a sleeper"));
        }
        assert_eq!(woke.len(), 200);
    }

    #[tokio::test]
    async fn without_the_thread_a_sleep_still_ends() {
        let wake = Wake { tx: None };
        let asked = Instant::now();
        wake.sleep(Duration::from_millis(5)).await;
        assert!(asked.elapsed() >= Duration::from_millis(5));
    }
}
