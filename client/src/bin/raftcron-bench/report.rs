//! The report: one row per measured case, printed as an aligned table and written as JSON and
//! markdown. Rows carry figures only; what a target is and whether it was met is for the reader
//! (docs/benchmarks.md), never an assertion here.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::hist::Summary;

/// The machine the figures come from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    pub cpus: u64,
    pub mem_total_mib: u64,
    pub kernel: String,
    /// The 1-minute load average when the run started (other work on the machine shows here).
    pub load_avg_1m: f64,
}

impl Machine {
    /// Reads /proc (Linux); unknown values stay empty.
    pub fn probe() -> Machine {
        let cpus = std::thread::available_parallelism().map(|n| n.get() as u64).unwrap_or(0);
        let mem_total_mib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| crate::procfs::kib_field(&m, "MemTotal:"))
            .map(|k| k / 1024)
            .unwrap_or(0);
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string();
        let load_avg_1m = std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|l| l.split_whitespace().next().and_then(|v| v.parse().ok()))
            .unwrap_or(0.0);
        Machine { cpus, mem_total_mib, kernel, load_avg_1m }
    }
}

/// One measured case.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub scenario: String,
    pub case: String,
    /// Operations completed (requests answered with success, fires received, rounds).
    pub ops: u64,
    pub errors: u64,
    pub seconds: f64,
    /// `ops / seconds`.
    pub rate: f64,
    /// Request latency, fire lateness or failover time, depending on the scenario.
    pub latency: Option<Summary>,
    /// Scenario-specific figures (duplicates, misses, RSS, sizes...).
    pub extra: BTreeMap<String, Value>,
}

impl Row {
    pub fn new(scenario: &str, case: impl Into<String>) -> Row {
        Row { scenario: scenario.into(), case: case.into(), ..Row::default() }
    }

    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Row {
        self.extra.insert(key.into(), value.into());
        self
    }
}

/// A whole run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub tool: String,
    pub started_at: String,
    pub machine: Machine,
    /// `local` (started by the tool from `binary`) or `attached`.
    pub cluster: String,
    pub binary: Option<String>,
    pub nodes: u64,
    pub command: String,
    pub rows: Vec<Row>,
}

const HEADERS: [&str; 10] =
    ["SCENARIO", "CASE", "OPS", "ERR", "SECONDS", "RATE/S", "P50 MS", "P99 MS", "P99.9 MS", "MAX MS"];

fn fixed(v: f64, digits: usize) -> String {
    format!("{v:.digits$}")
}

fn cells(r: &Row) -> Vec<String> {
    let lat = |f: fn(&Summary) -> f64| r.latency.as_ref().map(|s| fixed(f(s), 2)).unwrap_or_else(|| "-".into());
    vec![
        r.scenario.clone(),
        r.case.clone(),
        r.ops.to_string(),
        r.errors.to_string(),
        fixed(r.seconds, 1),
        fixed(r.rate, 0),
        lat(|s| s.p50_ms),
        lat(|s| s.p99_ms),
        lat(|s| s.p999_ms),
        lat(|s| s.max_ms),
    ]
}

fn extras(r: &Row) -> String {
    r.extra
        .iter()
        .map(|(k, v)| match v {
            Value::Number(n) => match n.as_f64() {
                Some(f) if n.is_f64() => format!("{k}={f:.2}"),
                _ => format!("{k}={n}"),
            },
            Value::String(s) => format!("{k}={s}"),
            // Lists (late slots) are for the JSON report; the table only counts them.
            Value::Array(items) => format!("{k}=[{} in the JSON]", items.len()),
            other => format!("{k}={other}"),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// An aligned table: headers, two spaces between columns, numbers right-aligned, and each row's
/// extra figures on the line after it.
pub fn table(rows: &[Row]) -> String {
    let body: Vec<Vec<String>> = rows.iter().map(cells).collect();
    let mut widths: Vec<usize> = HEADERS.iter().map(|h| h.len()).collect();
    for row in &body {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |row: &[String]| -> String {
        let parts: Vec<String> = row
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (c, w))| if i < 2 { format!("{c:<w$}") } else { format!("{c:>w$}") })
            .collect();
        parts.join("  ").trim_end().to_string()
    };
    let mut out = vec![line(&HEADERS.map(String::from))];
    for (row, r) in body.iter().zip(rows) {
        out.push(line(row));
        let e = extras(r);
        if !e.is_empty() {
            out.push(format!("    {e}"));
        }
    }
    out.join("\n")
}

/// The same rows as a markdown table, with the extra figures in the last column.
pub fn markdown(report: &Report) -> String {
    let mut out = vec![
        format!("# raftcron-bench {}", report.started_at),
        String::new(),
        format!(
            "Machine: {} CPUs, {} MiB RAM, Linux {}, load average {:.2} at the start. Cluster: {} ({} nodes){}. Command: `{}`.",
            report.machine.cpus,
            report.machine.mem_total_mib,
            report.machine.kernel,
            report.machine.load_avg_1m,
            report.cluster,
            report.nodes,
            report.binary.as_ref().map(|b| format!(", binary {b}")).unwrap_or_default(),
            report.command
        ),
        String::new(),
        format!("| {} | EXTRA |", HEADERS.join(" | ")),
        format!("|{}", "---|".repeat(HEADERS.len() + 1)),
    ];
    for r in &report.rows {
        out.push(format!("| {} | {} |", cells(r).join(" | "), extras(r).replace('|', "/")));
    }
    out.push(String::new());
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Row> {
        let mut a = Row::new("create", "spread c=64");
        a.ops = 12345;
        a.seconds = 10.0;
        a.rate = 1234.6;
        a.latency = Some(Summary { count: 12345, p50_ms: 1.5, p99_ms: 12.25, p999_ms: 30.0, max_ms: 101.0 });
        let b = Row::new("fire", "aligned 1000/s").with("duplicates", 0u64).with("cpu_pct_n1", 12.345);
        vec![a, b]
    }

    #[test]
    fn table_aligns_columns_and_lists_extras() {
        let t = table(&sample());
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4, "{t}");
        assert!(lines[0].starts_with("SCENARIO  CASE"));
        // Right-aligned numbers end in the same column as their header.
        let end = lines[0].find("RATE/S").unwrap() + "RATE/S".len();
        assert_eq!(&lines[1][end - 4..end], "1235", "{t}");
        assert!(lines[2].contains("  -"), "no latency prints a dash: {t}");
        assert_eq!(lines[3], "    cpu_pct_n1=12.35 duplicates=0");
    }

    #[test]
    fn json_round_trips_and_markdown_has_a_row_per_case() {
        let report =
            Report { tool: "t".into(), nodes: 3, cluster: "local".into(), rows: sample(), ..Report::default() };
        let json = serde_json::to_string(&report).unwrap();
        let back: Report = serde_json::from_str(&json).unwrap();
        assert_eq!(back, report);
        let v: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["rows"][0]["latency"]["p99_ms"], 12.25);
        assert_eq!(v["rows"][1]["extra"]["duplicates"], 0);
        let md = markdown(&report);
        let table_rows = md.lines().filter(|l| l.starts_with("| ")).count();
        assert_eq!(table_rows, 3, "{md}");
        assert!(md.contains("| create | spread c=64 | 12345 | 0 | 10.0 | 1235 | 1.50 | 12.25 | 30.00 | 101.00 |  |"));
    }
}
