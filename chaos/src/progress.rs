//! The progress line: every second on a terminal (rewritten in place), every ten seconds
//! otherwise, the fire rate at the sink, writes acknowledged, faults done and what the nemesis
//! is doing. Read-only; it ends with the run's stop signal.

use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::clock::now_ms;
use crate::history::History;
use crate::workload::Stop;

/// Prints one progress line every few seconds until the stop.
pub async fn line(
    history: History,
    hits: Arc<Mutex<Vec<crate::sink::Hit>>>,
    status: Arc<Mutex<String>>,
    mut stop: Stop,
    started: i64,
) {
    let tty = std::io::stderr().is_terminal();
    let mut last_count = 0usize;
    let mut last_at = now_ms();
    for _ in 0..1_000_000 {
        if stop.sleep(Duration::from_secs(if tty { 1 } else { 10 })).await {
            break;
        }
        let count = hits.lock().map(|h| h.len()).unwrap_or(0);
        let now = now_ms();
        let rate = (count - last_count.min(count)) as f64 * 1000.0 / (now - last_at).max(1) as f64;
        (last_count, last_at) = (count, now);
        let (w, ok) = history.write_counts();
        let st = status.lock().map(|s| s.clone()).unwrap_or_default();
        let line = format!(
            "[{:>5}s] {:>5.1} fires/s | {} fires | writes {ok} ok / {w} | faults {} | {st}",
            (now - started) / 1000,
            rate,
            count,
            history.faults_so_far()
        );
        if tty {
            eprint!("\r\x1b[2K{}", crate::api::truncate(&line, 160));
        } else {
            eprintln!("{line}");
        }
    }
    if tty {
        eprintln!();
    }
}
