//! CPU time and resident memory of node processes from /proc, and the size of directories.
//!
//! Linux only; where /proc is missing the figures are simply absent from the report.

use std::path::Path;
use std::time::Instant;

/// `VALUE` of a `Key:   VALUE kB` line of /proc/meminfo or /proc/PID/status.
pub fn kib_field(text: &str, key: &str) -> Option<u64> {
    text.lines().find(|l| l.starts_with(key))?.split_whitespace().nth(1)?.parse().ok()
}

/// Resident set size of `pid` in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    kib_field(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?, "VmRSS:")
}

/// user + system CPU time of `pid` in clock ticks (fields 14 and 15 of /proc/PID/stat).
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    parse_stat_ticks(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

fn parse_stat_ticks(stat: &str) -> Option<u64> {
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Clock ticks a second (`getconf CLK_TCK`, 100 on every common Linux).
pub fn clk_tck() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .filter(|t| *t > 0)
        .unwrap_or(100)
}

/// Total size of the regular files under `dir` (at most 1,000,000 entries are visited).
pub fn dir_size(dir: &Path) -> u64 {
    let mut total = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    let mut budget = 1_000_000u32;
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            budget = budget.saturating_sub(1);
            if budget == 0 {
                return total;
            }
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

/// CPU use of some processes between two instants.
#[derive(Debug, Clone)]
pub struct CpuMeter {
    start: Instant,
    ticks: Vec<Option<u64>>,
    pids: Vec<Option<u32>>,
    tck: u64,
}

impl CpuMeter {
    pub fn start(pids: &[Option<u32>]) -> CpuMeter {
        CpuMeter {
            start: Instant::now(),
            ticks: pids.iter().map(|p| p.and_then(cpu_ticks)).collect(),
            pids: pids.to_vec(),
            tck: clk_tck(),
        }
    }

    /// Percent of one core each process used since [`CpuMeter::start`] (`None` when unknown).
    pub fn percent(&self) -> Vec<Option<f64>> {
        let secs = self.start.elapsed().as_secs_f64().max(1e-3);
        self.pids
            .iter()
            .zip(&self.ticks)
            .map(|(pid, t0)| {
                let t1 = pid.and_then(cpu_ticks)?;
                let d = t1.checked_sub((*t0)?)?;
                Some(d as f64 / self.tck as f64 / secs * 100.0)
            })
            .collect()
    }
}

/// `row` with the CPU use of every node since `cpu` started (`cpu_pct_n1`, ...).
pub fn with_cpu(mut row: crate::report::Row, cpu: &CpuMeter) -> crate::report::Row {
    for (i, c) in cpu.percent().iter().enumerate() {
        if let Some(c) = c {
            row.extra.insert(format!("cpu_pct_n{}", i + 1), (*c).into());
        }
    }
    row
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_ticks_survive_odd_command_names() {
        let stat = "1234 (a) b (c)) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 8 0 100 1000 200";
        assert_eq!(parse_stat_ticks(stat), Some(300));
        assert_eq!(parse_stat_ticks("garbage"), None);
    }

    #[test]
    fn kib_fields_and_this_process() {
        assert_eq!(kib_field("MemTotal:       24000 kB\nVmRSS:\t  512 kB\n", "VmRSS:"), Some(512));
        assert_eq!(kib_field("", "VmRSS:"), None);
        if Path::new("/proc/self/stat").exists() {
            assert!(rss_kib(std::process::id()).is_some_and(|k| k > 0));
            assert!(cpu_ticks(std::process::id()).is_some());
        }
    }

    #[test]
    fn dir_size_adds_nested_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("a"), [0u8; 10]).unwrap();
        std::fs::write(dir.path().join("sub").join("b"), [0u8; 5]).unwrap();
        assert_eq!(dir_size(dir.path()), 15);
    }
}
