//! The shape both write batchings share (`raft::proposals`, `cluster::batch`): items wait in a
//! queue while at most N senders are busy; a sender takes what waits, sends it as one batch,
//! and goes on until nothing waits. A lone item goes at once (a sender's place is free), so
//! batching never delays a single writer; under load, batches grow by themselves.
//!
//! A leaf: it knows nothing of what is sent. It must not send, wait or spawn.

use std::collections::VecDeque;
use std::sync::Mutex;

use tokio::sync::oneshot;

/// A queue drained by at most `max_senders` senders at once.
#[derive(Debug)]
pub struct Pipeline<T> {
    inner: Mutex<Inner<T>>,
    max_senders: usize,
}

#[derive(Debug)]
struct Inner<T> {
    waiting: VecDeque<T>,
    senders: usize,
}

impl<T> Pipeline<T> {
    pub fn new(max_senders: usize) -> Pipeline<T> {
        Pipeline { inner: Mutex::new(Inner { waiting: VecDeque::new(), senders: 0 }), max_senders: max_senders.max(1) }
    }

    /// Queues `item`. True when the caller must start a sender (it holds the place it took).
    pub fn push(&self, item: T) -> bool {
        let mut q = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        q.waiting.push_back(item);
        let start = q.senders < self.max_senders;
        if start {
            q.senders += 1;
        }
        start
    }

    /// A sender's next batch, chosen by `take` from what waits (oldest first); `None` when
    /// nothing waits, and then the sender has given up its place and must stop.
    pub fn next(&self, take: impl FnOnce(&mut VecDeque<T>) -> Vec<T>) -> Option<Vec<T>> {
        let mut q = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let batch = if q.waiting.is_empty() { Vec::new() } else { take(&mut q.waiting) };
        if batch.is_empty() {
            q.senders -= 1;
            return None;
        }
        Some(batch)
    }
}

/// Answers every waiter of a batch: in order from `answers` when it has one per waiter,
/// otherwise `one` (the batch's own outcome, the same for all) to each.
pub fn answer_each<A: Clone>(waiters: Vec<oneshot::Sender<A>>, answers: Option<Vec<A>>, one: impl FnOnce() -> A) {
    match answers {
        Some(answers) if answers.len() == waiters.len() => {
            for (tx, a) in waiters.into_iter().zip(answers) {
                let _ = tx.send(a);
            }
        }
        _ => {
            let a = one();
            for tx in waiters {
                let _ = tx.send(a.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_place_is_taken_per_sender_and_given_back_when_nothing_waits() {
        let p = Pipeline::new(2);
        assert!(p.push(1), "the first item starts a sender");
        assert!(p.push(2), "so does the second");
        assert!(!p.push(3), "the third waits for a busy sender");
        let all = |q: &mut VecDeque<i32>| q.drain(..).collect();
        // Sender A takes all three and stops; sender B has not looked yet.
        assert_eq!(p.next(all), Some(vec![1, 2, 3]));
        assert_eq!(p.next(all), None, "nothing waits: A stops and frees its place");
        assert!(p.push(4), "A's place is free: a new sender C starts");
        assert!(!p.push(5), "B and C hold both places");
        assert_eq!(p.next(|q| q.pop_front().into_iter().collect()), Some(vec![4]));
        assert_eq!(p.next(all), Some(vec![5]));
        assert_eq!(p.next(all), None, "C stops");
        assert_eq!(p.next(all), None, "B stops");
        assert!(p.push(6), "both places are free again");
        assert!(p.push(7));
    }

    #[tokio::test]
    async fn each_waiter_gets_its_own_answer_or_the_batch_outcome() {
        let (txs, rxs): (Vec<_>, Vec<_>) = (0..3).map(|_| oneshot::channel::<i32>()).unzip();
        answer_each(txs, Some(vec![10, 11, 12]), || -1);
        let mut got = Vec::new();
        for rx in rxs {
            got.push(rx.await.unwrap());
        }
        assert_eq!(got, vec![10, 11, 12]);
        let (txs, rxs): (Vec<_>, Vec<_>) = (0..2).map(|_| oneshot::channel::<i32>()).unzip();
        answer_each(txs, Some(vec![1]), || -1);
        for rx in rxs {
            assert_eq!(rx.await.unwrap(), -1, "a count mismatch answers the outcome to all");
        }
    }
}
