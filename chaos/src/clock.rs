//! The suite's one wall clock: Unix milliseconds of this process (never a node's, whose clock a
//! drill may shift). Every recorded instant of the history uses it.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in Unix milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Sleeps until `frac_ms` past the next whole second.
pub async fn sleep_to_fraction(frac_ms: i64) {
    let now = now_ms();
    let mut target = (now / 1000) * 1000 + frac_ms.clamp(0, 999);
    if target <= now {
        target += 1000;
    }
    tokio::time::sleep(std::time::Duration::from_millis((target - now).max(0) as u64)).await;
}
