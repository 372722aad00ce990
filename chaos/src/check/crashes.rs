//! No node crashed by itself: every process exit was one the suite caused, and no node log
//! reports a panic.

use super::{CheckResult, Evidence};

pub fn check(e: &Evidence<'_>) -> CheckResult {
    let mut r = CheckResult::new("no crash");
    for c in e.crashes {
        r.violation(c.clone());
    }
    r.summary = if e.crashes.is_empty() {
        "no unexpected exit, no panic".into()
    } else {
        format!("{} crashes", e.crashes.len())
    };
    r
}
