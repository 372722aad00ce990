//! Printing results: aligned tables for people, JSON or YAML for scripts.
//!
//! Results go to standard output; notes (paging, warnings, "deleted") go to standard error, so
//! a pipe gets only the data. A closed pipe (`| head`) ends output quietly. Table cells never
//! carry control characters (a name cannot move the cursor or recolour the terminal).

use std::io::Write;

use chrono::{DateTime, SecondsFormat, Utc};
use comfy_table::{ContentArrangement, Table};
use serde::Serialize;

use crate::args::Format;
use crate::exit::CliError;

/// Where results go, in which format.
#[derive(Debug, Clone, Copy)]
pub struct Printer {
    pub format: Format,
}

impl Printer {
    /// Prints `value` as JSON or YAML, or the table `table` builds.
    pub fn emit<T: Serialize>(&self, value: &T, table: impl FnOnce() -> String) -> Result<(), CliError> {
        let text = match self.format {
            Format::Table => table(),
            Format::Json => serde_json::to_string_pretty(value).map_err(|e| CliError::Local(e.to_string()))?,
            Format::Yaml => {
                let y = serde_norway::to_string(value).map_err(|e| CliError::Local(e.to_string()))?;
                y.trim_end().to_string()
            }
        };
        stdout(&text)
    }

    /// Whether the output is for people.
    pub fn is_table(&self) -> bool {
        self.format == Format::Table
    }
}

/// Writes `text` and a newline to standard output; a closed pipe is not an error.
pub fn stdout(text: &str) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    let r = if text.is_empty() { Ok(()) } else { writeln!(out, "{text}") };
    match r.and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(CliError::Local(format!("writing to standard output: {e}"))),
    }
}

/// A note for people on standard error.
pub fn note(text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

/// An aligned table: upper-case headers, two spaces between columns, no borders. No rows: an
/// empty string (the list's note says it is empty).
pub fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    if rows.is_empty() {
        return String::new();
    }
    let mut t = Table::new();
    t.load_style(comfy_table::presets::NOTHING);
    t.set_content_arrangement(ContentArrangement::Disabled);
    if !headers.is_empty() {
        t.set_header(headers.to_vec());
    }
    for row in rows {
        t.add_row(row.iter().map(|c| cell(c)).collect::<Vec<_>>());
    }
    for c in t.column_iter_mut() {
        c.set_padding((0, 2));
    }
    t.lines().map(|l| l.trim_end().to_string()).collect::<Vec<_>>().join("\n")
}

/// A two-column `field: value` table for one resource.
pub fn details(rows: Vec<(&str, String)>) -> String {
    table(&[], rows.into_iter().map(|(k, v)| vec![format!("{k}:"), v]).collect())
}

/// One line of a cell: control characters (and line breaks) become spaces or `?`.
pub fn cell(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c == '\n' || c == '\t' {
                ' '
            } else if c.is_control() {
                '?'
            } else {
                c
            }
        })
        .collect()
}

/// A timestamp in UTC to the second, or `-`.
pub fn time(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true)).unwrap_or_else(|| "-".into())
}

/// `Some(v)` as text, `None` as `-`.
pub fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

/// At most `max` characters, with `...` when cut.
pub fn short(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(3)).collect();
    out.push_str("...");
    out
}

/// The paging note of a list: said only when there is more than this page.
pub fn paging_note(what: &str, page: u32, page_size: u32, shown: usize, total: u64) {
    let pages = total.div_ceil(u64::from(page_size.max(1)));
    if total > shown as u64 {
        note(&format!("page {page} of {pages} ({total} {what} in all); see --page, --page-size or --all"));
    } else if total == 0 {
        note(&format!("no {what}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns_without_borders_or_trailing_spaces() {
        let t = table(
            &["ID", "NAME", "ACTIVE"],
            vec![vec!["1".into(), "a long name".into(), "yes".into()], vec!["22".into(), "b".into(), "".into()]],
        );
        assert_eq!(t, "ID  NAME         ACTIVE\n1   a long name  yes\n22  b");
        assert_eq!(table(&["ID"], vec![]), "");
    }

    #[test]
    fn cells_carry_no_control_characters() {
        assert_eq!(cell("a\u{1b}[31mred\nb"), "a?[31mred b");
        let t = details(vec![("name", "x\ty".into()), ("url", "https://e.com".into())]);
        assert_eq!(t, "name:  x y\nurl:   https://e.com");
    }

    #[test]
    fn times_and_cuts() {
        let t = DateTime::parse_from_rfc3339("2026-04-27T10:05:00.123Z").unwrap().with_timezone(&Utc);
        assert_eq!(time(Some(t)), "2026-04-27T10:05:00Z");
        assert_eq!(time(None), "-");
        assert_eq!(short("abcdefgh", 6), "abc...");
        assert_eq!(short("abc", 6), "abc");
    }
}
