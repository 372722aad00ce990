//! Proposals batched into log entries: concurrent writes share one entry.
//!
//! openraft 0.9 appends, syncs and replicates each `client_write` as an entry of its own, so
//! under many concurrent writers the leader's Raft core, its log sync and every replication
//! round work once per command. Here a proposal waits in a queue while [`MAX_IN_FLIGHT`]
//! entries of this node are on their way; as soon as one is answered, everything queued (up to
//! [`MAX_COMMANDS`] commands and [`MAX_BYTES`] bytes) goes as the next entry, a
//! [`CommandBody::Batch`]. A lone proposal goes at once and alone, so a single writer's latency
//! does not change; under load one append, one sync and one round serve many commands.
//!
//! Each command keeps its own answer (`state::apply` applies a batch in order, each command
//! seeing the ones before it, all or nothing). A failed entry fails every command in it with the
//! same error, exactly as if each had been proposed alone at that moment. This module must not
//! reorder what one caller proposes in sequence (it does not: a caller's next proposal starts
//! after the previous one was answered) and must not answer a command before its entry is applied.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::oneshot;

use crate::batching::{answer_each, Pipeline};
use crate::metrics::Metrics;
use crate::raft::handle::{from_write_error, ProposeError};
use crate::raft::Raft;
use crate::state::{Command, CommandBody, CommandResult};

/// Entries of this node on their way through Raft at once. Two rather than more: under load
/// the queue then fills larger entries, and fewer, larger entries cost the three nodes less CPU
/// per command (64 writers at the leader: about 10 % more creates a second than with 4, and 1
/// was slower than both; `docs/benchmarks.md`, run 15). A lone proposal still goes at once.
pub const MAX_IN_FLIGHT: usize = 2;
/// Most commands in one entry.
pub const MAX_COMMANDS: usize = 256;
/// Most encoded bytes of commands in one entry (a single larger command goes alone): one
/// entry fits in one AppendEntries (`log_store::MAX_APPEND_BYTES`).
pub const MAX_BYTES: usize = 256 * 1024;

type Answer = Result<CommandResult, ProposeError>;

struct Waiting {
    cmd: Command,
    bytes: usize,
    tx: oneshot::Sender<Answer>,
    /// When it joined the queue.
    queued: Instant,
}

/// The next entry's commands, oldest first, within the limits.
fn take(waiting: &mut VecDeque<Waiting>) -> Vec<Waiting> {
    let mut out: Vec<Waiting> = Vec::new();
    let mut bytes = 0;
    while let Some(next) = waiting.front() {
        if out.len() >= MAX_COMMANDS || (!out.is_empty() && bytes + next.bytes > MAX_BYTES) {
            break;
        }
        bytes += next.bytes;
        out.extend(waiting.pop_front());
    }
    out
}

/// The batching front of `Raft::client_write`. Cloning shares the queue.
#[derive(Clone)]
pub struct Proposals {
    raft: Raft,
    queue: Arc<Pipeline<Waiting>>,
    metrics: Metrics,
}

impl Proposals {
    pub fn new(raft: Raft, metrics: Metrics) -> Proposals {
        Proposals { raft, queue: Arc::new(Pipeline::new(MAX_IN_FLIGHT)), metrics }
    }

    /// Proposes `cmd` and waits for its own answer.
    pub async fn propose(&self, cmd: Command) -> Answer {
        let bytes = bincode::serialized_size(&cmd).map_or(0, |n| usize::try_from(n).unwrap_or(usize::MAX));
        let (tx, rx) = oneshot::channel();
        if self.queue.push(Waiting { cmd, bytes, tx, queued: Instant::now() }) {
            // A task of its own, so a caller that gives up (a client that hangs up) cannot
            // drop the other commands of its entry.
            tokio::spawn(self.clone().run());
        }
        rx.await.unwrap_or_else(|_| Err(ProposeError::Fatal("the proposal was dropped".into())))
    }

    /// Sends entries until nothing waits.
    async fn run(self) {
        while let Some(batch) = self.queue.next(take) {
            self.send(batch).await;
        }
    }

    async fn send(&self, batch: Vec<Waiting>) {
        let n = batch.len();
        let started = Instant::now();
        for w in &batch {
            self.metrics.raft.proposal_wait.observe(started.saturating_duration_since(w.queued).as_secs_f64());
        }
        let (mut cmds, txs): (Vec<Command>, Vec<oneshot::Sender<Answer>>) =
            batch.into_iter().map(|w| (w.cmd, w.tx)).unzip();
        let entry = match cmds.pop() {
            Some(only) if cmds.is_empty() => only,
            Some(last) => {
                let proposed_at_ms = last.proposed_at_ms;
                cmds.push(last);
                Command { proposed_at_ms, body: CommandBody::Batch(cmds), actor: None }
            }
            None => return,
        };
        let result = self.raft.client_write(entry).await.map(|r| r.data).map_err(from_write_error);
        if !matches!(result, Err(ProposeError::ForwardTo { .. } | ProposeError::NoLeader)) {
            self.metrics.raft.proposals.inc_by(n as u64);
            self.metrics.raft.proposal_batch_size.observe(n as f64);
            self.metrics.raft.write_duration.observe(started.elapsed().as_secs_f64());
        }
        match result {
            Ok(CommandResult::Batch(results)) if n > 1 => {
                let answers = results.into_iter().map(Ok).collect();
                answer_each(txs, Some(answers), || Err(ProposeError::Fatal("a batch got too few answers".into())));
            }
            Ok(r) if n == 1 => answer_each(txs, None, || Ok(r)),
            Ok(other) => {
                tracing::error!(commands = n, answer = ?other, "a batch of proposals got an answer of another shape");
                answer_each(txs, None, || Err(ProposeError::Fatal("a batch got an answer of another shape".into())));
            }
            Err(e) => answer_each(txs, None, || Err(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiting(bytes: usize) -> Waiting {
        let (tx, _rx) = oneshot::channel();
        Waiting {
            cmd: Command { proposed_at_ms: 0, body: CommandBody::Noop, actor: None },
            bytes,
            tx,
            queued: Instant::now(),
        }
    }

    #[test]
    fn an_entry_takes_what_waits_within_the_limits_oldest_first() {
        let mut q = VecDeque::new();
        for _ in 0..MAX_COMMANDS + 3 {
            q.push_back(waiting(10));
        }
        assert_eq!(take(&mut q).len(), MAX_COMMANDS);
        assert_eq!(take(&mut q).len(), 3);
        assert!(take(&mut q).is_empty());

        q.push_back(waiting(MAX_BYTES / 2));
        q.push_back(waiting(MAX_BYTES / 2));
        q.push_back(waiting(1));
        assert_eq!(take(&mut q).len(), 2, "up to the byte limit");
        assert_eq!(take(&mut q).len(), 1);

        q.push_back(waiting(MAX_BYTES * 3));
        q.push_back(waiting(1));
        assert_eq!(take(&mut q).len(), 1, "an oversized command goes alone");
        assert_eq!(take(&mut q).len(), 1);
    }
}
