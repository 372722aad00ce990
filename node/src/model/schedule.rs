//! Cron schedules: parsing cron expressions and computing fire instants.
//!
//! # What this module owns
//!
//! [`Schedule`] is the parsed, validated form of a job's `cron_expression`
//! together with its IANA `timezone`. It answers "when does this job fire
//! next?" ([`Schedule::next_after`]), "which fires fall in this window?"
//! ([`Schedule::between`]) and "how often can it fire at most?"
//! ([`Schedule::min_interval_estimate`]). [`ScheduleError`] carries the
//! user-facing validation messages shown in `400` responses.
//!
//! # What it must not do
//!
//! The module is deterministic and pure: it never reads a clock, never does
//! I/O, never spawns tasks and never logs. Callers pass every instant in, so
//! every node of the Raft group computes the same fire instants from the same
//! inputs. Time zone rules come from the tz database compiled into `chrono-tz`
//! (whose tables carry DST transitions only up to a year late this century;
//! later instants use the zone's last standard offset).
//!
//! # Syntax (Vixie cron)
//!
//! * Five fields `minute hour day-of-month month day-of-week`, or six fields
//!   with a leading `second` field (0-59) as an extension. Five-field
//!   expressions fire at second 0.
//! * Each field is a comma-separated list of items; an item is `*`, a number
//!   `a`, a range `a-b`, or any of those followed by a step `/n`
//!   (`*/n`, `a-b/n`, and `a/n`, which means `a` through the field maximum
//!   every `n`). Steps must lie between 1 and the field's maximum. Reversed
//!   ranges (`5-1`), empty list items, out-of-range values and anything else
//!   are rejected.
//! * Month names `JAN`-`DEC` and day names `SUN`-`SAT` are accepted in their
//!   fields, case-insensitively, also inside ranges (`MON-FRI`). As a
//!   convenience `SUN` at the end of a range means 7, so `FRI-SUN` is valid.
//! * Day-of-week accepts 0-7; both 0 and 7 mean Sunday. Its maximum is 7, so
//!   `1/2` (and `MON/2`) means 1,3,5,7: Monday, Wednesday, Friday, Sunday.
//! * `?` on its own is accepted as a synonym for `*` in day-of-month and
//!   day-of-week (and counts as `*` for the rule below).
//! * Macros (case-insensitive, must be the whole expression): `@yearly` and
//!   `@annually` (`0 0 1 1 *`), `@monthly` (`0 0 1 * *`), `@weekly`
//!   (`0 0 * * 0`), `@daily` and `@midnight` (`0 0 * * *`), `@hourly`
//!   (`0 * * * *`). `@reboot` is rejected: a schedule is purely time-based.
//! * An extension, for spreading jobs inside a second: the expression may end with a
//!   millisecond offset token `+<n>ms` (n from 0 to [`MAX_OFFSET_MS`]), after the fields or a
//!   macro. Every fire instant is then n milliseconds after the whole second the fields name
//!   (`*/10 * * * * * +250ms` fires at :00.250, :10.250, ...). The offset shifts the UTC instant
//!   computed by the rules below; it never moves a fire into another second. A cluster accepts
//!   it only once every member runs a release that reads it (`crate::level`).
//! * Expressions are limited to [`MAX_EXPRESSION_LEN`] bytes.
//! * The zone is an IANA name from the tz database (`UTC` included), matched
//!   exactly or, failing that, ignoring ASCII case.
//!
//! ## Day-of-month versus day-of-week (the Vixie rule)
//!
//! Exactly as Vixie cron does it: a day field counts as *unrestricted* when
//! its text starts with `*` (or is `?`). If both day-of-month and day-of-week
//! are restricted, a day matches when **either** matches
//! (`0 0 1 * MON` fires on the 1st and on every Monday). Otherwise a day must
//! match **both** (the unrestricted one matches every day). Note the Vixie
//! quirk this implies: `*/2` starts with `*`, so `0 0 */2 * MON` fires only on
//! Mondays that fall on an odd day of the month.
//!
//! # Time zones and daylight saving time (the contract)
//!
//! * Fire times are wall-clock times in the schedule's zone; each is converted
//!   to the UTC instant at which that wall-clock time occurs.
//! * A local time that does not exist (it falls in a spring-forward gap) fires
//!   once, at the first instant after the gap. In Europe/Berlin on 2026-03-29
//!   the clock jumps from 02:00 to 03:00, so `30 2 * * *` fires at 03:00 local
//!   (01:00 UTC). If several fire times fall in the same gap (02:00, 02:15,
//!   02:30, ...) and/or a fire time is exactly the end of the gap (03:00), they
//!   all map to that one instant, which is returned once.
//! * A local time that occurs twice (it falls in a fall-back repeated period)
//!   fires once, at its first occurrence (the earlier UTC instant, still on
//!   daylight saving time). The second pass over the repeated period fires
//!   nothing, so an hourly job pauses for one hour of UTC time that night.
//! * Consequently the instants returned by [`Schedule::next_after`] and
//!   [`Schedule::between`] are strictly increasing and never duplicated.
//!
//! # Search horizon
//!
//! [`Schedule::next_after`] searches at most [`HORIZON_YEARS`] years of local
//! calendar time ahead. [`Schedule::parse`] rejects with
//! [`ScheduleError::NeverFires`] every expression that matches no calendar date
//! at all (`0 0 30 2 *`, `0 0 31 4 *`). Every other expression matches some
//! date at least once in any window of [`HORIZON_YEARS`] years (the rarest
//! pattern, 29 February on a given weekday, recurs within 40 years), so
//! `next_after` returns `None` only near the end of the representable time
//! range.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, LocalResult, NaiveDate, NaiveDateTime, Offset, TimeDelta, TimeZone, Timelike, Utc};
use chrono_tz::{Tz, TZ_VARIANTS};

/// Longest accepted cron expression, in bytes.
pub const MAX_EXPRESSION_LEN: usize = 256;

/// Largest millisecond offset (`+<n>ms`, see the module docs): an offset stays inside the
/// second its slot names.
pub const MAX_OFFSET_MS: u32 = 999;

/// How many years of local calendar time [`Schedule::next_after`] searches.
pub const HORIZON_YEARS: i32 = 50;

/// Longest time zone name echoed back in an error message.
const MAX_ECHOED_ZONE_LEN: usize = 64;

/// Fires examined by the main scan of [`Schedule::min_interval_estimate`].
const MIN_INTERVAL_SCAN_FIRES: usize = 4096;

/// Fires examined around each UTC offset change by
/// [`Schedule::min_interval_estimate`].
const MIN_INTERVAL_WINDOW_FIRES: usize = 512;

/// Longest local-time stretch (in minutes) scanned to find the end of a DST
/// gap or repeated period. Real transitions are at most one day long.
const MAX_TRANSITION_SCAN_MINUTES: u32 = 2 * 24 * 60;

const ONE_SECOND: TimeDelta = delta_seconds(1);
const ONE_MINUTE: TimeDelta = delta_seconds(60);
const ONE_DAY: TimeDelta = delta_seconds(24 * 60 * 60);
const THREE_DAYS: TimeDelta = delta_seconds(3 * 24 * 60 * 60);
const SIX_HOURS: TimeDelta = delta_seconds(6 * 60 * 60);
const ONE_YEAR: TimeDelta = delta_seconds(366 * 24 * 60 * 60);

/// A `TimeDelta` of `secs` seconds, usable in constants (zero on overflow,
/// which cannot happen for the small constants above).
const fn delta_seconds(secs: i64) -> TimeDelta {
    match TimeDelta::try_seconds(secs) {
        Some(delta) => delta,
        None => TimeDelta::zero(),
    }
}

/// Why an expression or time zone was rejected. The `Display` text is meant
/// for API users and names the offending request field and cron field.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ScheduleError {
    /// The expression is empty or only whitespace.
    #[error("cron_expression: must not be empty")]
    Empty,
    /// The expression is longer than [`MAX_EXPRESSION_LEN`] bytes.
    #[error("cron_expression: is {len} bytes long, the maximum is {max}")]
    TooLong {
        /// Length of the rejected expression in bytes.
        len: usize,
        /// The maximum, [`MAX_EXPRESSION_LEN`].
        max: usize,
    },
    /// Neither 5 nor 6 whitespace-separated fields.
    #[error(
        "cron_expression: expected 5 fields (minute hour day-of-month month day-of-week) \
         or 6 with a leading second field, found {found}"
    )]
    FieldCount {
        /// Number of fields found.
        found: usize,
    },
    /// One field is malformed or out of range.
    #[error("cron_expression: field \"{field}\" value \"{value}\" {reason}")]
    InvalidField {
        /// The cron field: `second`, `minute`, `hour`, `day-of-month`,
        /// `month` or `day-of-week`.
        field: &'static str,
        /// The offending text (a number, a list item or the whole field).
        value: String,
        /// What is wrong, phrased to follow the value (e.g. `is out of range 0-23`).
        reason: String,
    },
    /// An `@` macro that does not exist.
    #[error(
        "cron_expression: unknown macro \"{name}\" (expected @yearly, @annually, @monthly, \
         @weekly, @daily, @midnight or @hourly)"
    )]
    UnknownMacro {
        /// The macro as written.
        name: String,
    },
    /// A macro followed by more text.
    #[error("cron_expression: macro \"{name}\" must be the whole expression")]
    MacroWithFields {
        /// The macro as written.
        name: String,
    },
    /// `@reboot`, which has no meaning for a replicated, time-based service.
    #[error(
        "cron_expression: @reboot is not supported; schedules are time-based and a node \
         restart is not an event jobs can fire on"
    )]
    RebootUnsupported,
    /// The time zone is not an IANA time zone name.
    #[error("timezone: \"{name}\" is not an IANA time zone name")]
    UnknownTimeZone {
        /// The name as given (truncated if very long).
        name: String,
    },
    /// The millisecond offset token is malformed or out of range.
    #[error(
        "cron_expression: offset \"{value}\" must be \"+<n>ms\" with n from 0 to {max}, \
         the last token of the expression (e.g. \"*/10 * * * * * +250ms\")"
    )]
    InvalidOffset {
        /// The token as written (truncated if very long).
        value: String,
        /// The largest offset, [`MAX_OFFSET_MS`].
        max: u32,
    },
    /// The expression matches no calendar date (e.g. `0 0 30 2 *`).
    #[error("cron_expression: \"{expression}\" never fires")]
    NeverFires {
        /// The expression as given.
        expression: String,
    },
}

impl ScheduleError {
    /// The API request field the error is about: `"timezone"` for
    /// [`ScheduleError::UnknownTimeZone`], `"cron_expression"` otherwise.
    pub fn request_field(&self) -> &'static str {
        match self {
            ScheduleError::UnknownTimeZone { .. } => "timezone",
            _ => "cron_expression",
        }
    }
}

/// A set of small integers (0..=63) stored as bits.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
struct BitSet(u64);

impl BitSet {
    fn contains(self, value: u32) -> bool {
        value < 64 && self.0 & (1u64 << value) != 0
    }

    fn insert(&mut self, value: u32) {
        if value < 64 {
            self.0 |= 1u64 << value;
        }
    }

    fn remove(&mut self, value: u32) {
        if value < 64 {
            self.0 &= !(1u64 << value);
        }
    }

    /// The smallest member that is `>= from`.
    fn next_from(self, from: u32) -> Option<u32> {
        let masked = self.0 & u64::MAX.checked_shl(from).unwrap_or(0);
        (masked != 0).then(|| masked.trailing_zeros())
    }
}

impl fmt::Debug for BitSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries((0..64).filter(|v| self.contains(*v))).finish()
    }
}

/// Static description of one cron field.
struct FieldSpec {
    name: &'static str,
    min: u32,
    max: u32,
    /// Three-letter names; the name at index `i` stands for `name_base + i`.
    names: &'static [&'static str],
    name_base: u32,
    /// Whether the first name (`SUN`) may stand for 7 at the end of a range.
    first_name_is_also_seven: bool,
    name_kind: &'static str,
    /// Whether a bare `?` is accepted as `*`.
    allows_question_mark: bool,
}

/// A purely numeric field.
const fn numeric(name: &'static str, min: u32, max: u32) -> FieldSpec {
    FieldSpec {
        name,
        min,
        max,
        names: &[],
        name_base: 0,
        first_name_is_also_seven: false,
        name_kind: "",
        allows_question_mark: false,
    }
}

const SECOND: FieldSpec = numeric("second", 0, 59);
const MINUTE: FieldSpec = numeric("minute", 0, 59);
const HOUR: FieldSpec = numeric("hour", 0, 23);
const DAY_OF_MONTH: FieldSpec = FieldSpec { allows_question_mark: true, ..numeric("day-of-month", 1, 31) };
const MONTH: FieldSpec = FieldSpec {
    names: &["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"],
    name_base: 1,
    name_kind: "month name (JAN-DEC)",
    ..numeric("month", 1, 12)
};
const DAY_OF_WEEK: FieldSpec = FieldSpec {
    names: &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"],
    first_name_is_also_seven: true,
    name_kind: "day name (SUN-SAT)",
    allows_question_mark: true,
    ..numeric("day-of-week", 0, 7)
};

impl FieldSpec {
    fn error(&self, value: &str, reason: impl Into<String>) -> ScheduleError {
        ScheduleError::InvalidField { field: self.name, value: value.to_owned(), reason: reason.into() }
    }

    /// Parses a whole field; returns its members and whether it is
    /// "unrestricted" in the Vixie sense (text starts with `*`, or is `?`).
    fn parse(&self, text: &str) -> Result<(BitSet, bool), ScheduleError> {
        let text = if self.allows_question_mark && text == "?" { "*" } else { text };
        let mut bits = BitSet::default();
        for item in text.split(',') {
            if item.is_empty() {
                return Err(self.error(text, "has an empty list item"));
            }
            self.parse_item(item, &mut bits)?;
        }
        Ok((bits, text.starts_with('*')))
    }

    /// Parses one list item (`*`, `a`, `a-b`, each optionally with `/n`).
    fn parse_item(&self, item: &str, bits: &mut BitSet) -> Result<(), ScheduleError> {
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => (range, Some(self.parse_step(item, step)?)),
            None => (item, None),
        };
        let (low, high) = if range == "*" {
            (self.min, self.max)
        } else if let Some((start, end)) = range.split_once('-') {
            if start.is_empty() || end.is_empty() || end.contains('-') {
                return Err(self.error(item, "is not a valid range (expected start-end)"));
            }
            let low = self.parse_value(start, false)?;
            let high = self.parse_value(end, low > 0)?;
            if low > high {
                return Err(self.error(item, "is a reversed range; the start must not be greater than the end"));
            }
            (low, high)
        } else {
            let value = self.parse_value(range, false)?;
            match step {
                Some(_) => (value, self.max),
                None => (value, value),
            }
        };
        let step = step.unwrap_or(1);
        let mut value = low;
        while value <= high {
            bits.insert(value);
            value = value.saturating_add(step);
        }
        Ok(())
    }

    fn parse_step(&self, item: &str, text: &str) -> Result<u32, ScheduleError> {
        match parse_number(text) {
            Some(step) if (1..=self.max).contains(&step) => Ok(step),
            _ => Err(self.error(item, format!("has an invalid step; the step must be between 1 and {}", self.max))),
        }
    }

    /// Parses a number or name. `range_end` allows the name `SUN` to mean 7
    /// (the end of a day-of-week range such as `FRI-SUN`).
    fn parse_value(&self, text: &str, range_end: bool) -> Result<u32, ScheduleError> {
        if is_digits(text) {
            return match parse_number(text) {
                Some(value) if (self.min..=self.max).contains(&value) => Ok(value),
                _ => Err(self.error(text, format!("is out of range {}-{}", self.min, self.max))),
            };
        }
        let position = self.names.iter().position(|name| name.eq_ignore_ascii_case(text));
        match position.and_then(|index| u32::try_from(index).ok()) {
            Some(0) if range_end && self.first_name_is_also_seven => Ok(7),
            Some(index) => Ok(self.name_base + index),
            None if self.names.is_empty() => Err(self.error(text, "is not a number")),
            None => Err(self.error(text, format!("is not a number or {}", self.name_kind))),
        }
    }
}

fn is_digits(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
}

/// Parses a string of ASCII digits; `None` for anything else or on overflow.
fn parse_number(text: &str) -> Option<u32> {
    if is_digits(text) {
        text.parse().ok()
    } else {
        None
    }
}

/// Expands an `@` macro into its five-field form.
fn expand_macro(name: &str) -> Result<&'static str, ScheduleError> {
    match name.to_ascii_lowercase().as_str() {
        "@yearly" | "@annually" => Ok("0 0 1 1 *"),
        "@monthly" => Ok("0 0 1 * *"),
        "@weekly" => Ok("0 0 * * 0"),
        "@daily" | "@midnight" => Ok("0 0 * * *"),
        "@hourly" => Ok("0 * * * *"),
        "@reboot" => Err(ScheduleError::RebootUnsupported),
        _ => Err(ScheduleError::UnknownMacro { name: name.to_owned() }),
    }
}

/// Whether `expr` ends with a millisecond offset token (`+...`), well-formed or not: a cheap
/// test that needs no parse (`state::CommandBody::level`).
pub fn has_offset_token(expr: &str) -> bool {
    expr.split_whitespace().next_back().is_some_and(|t| t.starts_with('+'))
}

/// Parses the offset token `+<n>ms` (n from 0 to [`MAX_OFFSET_MS`], digits only).
fn parse_offset(token: &str) -> Result<u32, ScheduleError> {
    let invalid = || ScheduleError::InvalidOffset { value: token.chars().take(32).collect(), max: MAX_OFFSET_MS };
    let digits = token.strip_prefix('+').and_then(|t| t.strip_suffix("ms")).ok_or_else(invalid)?;
    if digits.is_empty() || digits.len() > 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    let n: u32 = digits.parse().map_err(|_| invalid())?;
    if n > MAX_OFFSET_MS {
        return Err(invalid());
    }
    Ok(n)
}

/// Parses an IANA zone name; an exact match first, then ignoring ASCII case
/// (`europe/berlin` is Europe/Berlin).
fn parse_zone(name: &str) -> Result<Tz, ScheduleError> {
    Tz::from_str(name)
        .ok()
        .or_else(|| TZ_VARIANTS.iter().copied().find(|tz| tz.name().eq_ignore_ascii_case(name)))
        .ok_or_else(|| ScheduleError::UnknownTimeZone { name: truncate_for_echo(name) })
}

fn truncate_for_echo(text: &str) -> String {
    if text.len() <= MAX_ECHOED_ZONE_LEN {
        return text.to_owned();
    }
    let mut truncated: String = text.chars().take(MAX_ECHOED_ZONE_LEN).collect();
    truncated.push_str("...");
    truncated
}

/// Longest possible day-of-month of `month` in any year.
fn max_days_in_month(month: u32) -> u32 {
    match month {
        2 => 29,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// How a local wall-clock time maps to an instant.
enum Resolved {
    /// The local time exists (once, or twice and this is the first pass).
    Instant {
        at: DateTime<Utc>,
        /// Whether the local time occurs twice.
        repeated: bool,
    },
    /// The local time is in a gap; it fires at `at`, the first instant after
    /// the gap, whose local time is `gap_end`.
    Gap { at: DateTime<Utc>, gap_end: NaiveDateTime },
}

/// A parsed cron expression bound to a time zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    seconds: BitSet,
    minutes: BitSet,
    hours: BitSet,
    days_of_month: BitSet,
    months: BitSet,
    /// Sunday is 0; a 7 in the expression is stored as 0.
    days_of_week: BitSet,
    /// Day-of-month text starts with `*` (Vixie `DOM_STAR`).
    dom_unrestricted: bool,
    /// Day-of-week text starts with `*` (Vixie `DOW_STAR`).
    dow_unrestricted: bool,
    has_seconds: bool,
    /// Milliseconds added to every fire instant (`+<n>ms`), 0 to [`MAX_OFFSET_MS`].
    offset_ms: u32,
    tz: Tz,
    expression: String,
}

impl Schedule {
    /// Parses `expr` in zone `tz` (IANA name, e.g. "Europe/Berlin"; "UTC" allowed).
    ///
    /// Checks, in order: length, macros, field count, each field, the zone,
    /// and finally that some calendar date matches ([`ScheduleError::NeverFires`]).
    pub fn parse(expr: &str, tz: &str) -> Result<Schedule, ScheduleError> {
        if expr.len() > MAX_EXPRESSION_LEN {
            return Err(ScheduleError::TooLong { len: expr.len(), max: MAX_EXPRESSION_LEN });
        }
        let mut tokens: Vec<&str> = expr.split_whitespace().collect();
        let offset_ms = match tokens.last() {
            Some(last) if last.starts_with('+') => {
                let offset = parse_offset(last)?;
                tokens.pop();
                offset
            }
            _ => 0,
        };
        let mut schedule = match tokens.as_slice() {
            [] => return Err(ScheduleError::Empty),
            [first, rest @ ..] if first.starts_with('@') => {
                let expanded = expand_macro(first)?;
                if !rest.is_empty() {
                    return Err(ScheduleError::MacroWithFields { name: (*first).to_owned() });
                }
                let fields: Vec<&str> = expanded.split_whitespace().collect();
                Self::from_fields(&fields, expr, tz)?
            }
            fields => Self::from_fields(fields, expr, tz)?,
        };
        schedule.offset_ms = offset_ms;
        if !schedule.matches_some_date() {
            return Err(ScheduleError::NeverFires { expression: expr.trim().to_owned() });
        }
        Ok(schedule)
    }

    fn from_fields(fields: &[&str], expr: &str, tz: &str) -> Result<Schedule, ScheduleError> {
        let (second, minute, hour, dom, month, dow) = match *fields {
            [second, minute, hour, dom, month, dow] => (Some(second), minute, hour, dom, month, dow),
            [minute, hour, dom, month, dow] => (None, minute, hour, dom, month, dow),
            _ => return Err(ScheduleError::FieldCount { found: fields.len() }),
        };
        let seconds = match second {
            Some(text) => SECOND.parse(text)?.0,
            None => BitSet(1),
        };
        let (minutes, _) = MINUTE.parse(minute)?;
        let (hours, _) = HOUR.parse(hour)?;
        let (days_of_month, dom_unrestricted) = DAY_OF_MONTH.parse(dom)?;
        let (months, _) = MONTH.parse(month)?;
        let (mut days_of_week, dow_unrestricted) = DAY_OF_WEEK.parse(dow)?;
        if days_of_week.contains(7) {
            days_of_week.remove(7);
            days_of_week.insert(0);
        }
        Ok(Schedule {
            seconds,
            minutes,
            hours,
            days_of_month,
            months,
            days_of_week,
            dom_unrestricted,
            dow_unrestricted,
            has_seconds: second.is_some(),
            offset_ms: 0,
            tz: parse_zone(tz)?,
            expression: expr.to_owned(),
        })
    }

    /// The expression exactly as passed to [`Schedule::parse`].
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The schedule's time zone.
    pub fn timezone(&self) -> Tz {
        self.tz
    }

    /// True when the expression has the optional leading seconds field.
    pub fn has_seconds(&self) -> bool {
        self.has_seconds
    }

    /// Milliseconds after each whole second the fields name that the job fires (`+<n>ms`;
    /// 0 without an offset token).
    pub fn offset_ms(&self) -> u32 {
        self.offset_ms
    }

    /// Whether the local wall-clock time `local` (in the schedule's zone)
    /// matches every field, ignoring sub-second precision and the offset.
    pub fn matches_local(&self, local: NaiveDateTime) -> bool {
        self.seconds.contains(local.second())
            && self.minutes.contains(local.minute())
            && self.hours.contains(local.hour())
            && self.months.contains(local.month())
            && self.day_matches(local.date())
    }

    /// The shortest gap, in seconds, between two consecutive fires among the next `samples`
    /// fires after `from` (`None` if it fires fewer than twice). Used for tenant quotas.
    pub fn min_interval_seconds(&self, from: DateTime<Utc>, samples: usize) -> Option<i64> {
        let mut prev = self.next_after(from)?;
        let mut min: Option<i64> = None;
        for _ in 0..samples {
            let Some(next) = self.next_after(prev) else { break };
            let gap = (next - prev).num_seconds();
            min = Some(min.map_or(gap, |m| m.min(gap)));
            prev = next;
        }
        min
    }

    /// The first fire instant strictly after `after`, or `None` if there is
    /// none within [`HORIZON_YEARS`] years. With an offset, the instant the fields name plus
    /// the offset: the first whole-second match after `after - offset`, shifted.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if self.offset_ms == 0 {
            return self.next_whole_after(after);
        }
        let shift = TimeDelta::try_milliseconds(i64::from(self.offset_ms))?;
        self.next_whole_after(after.checked_sub_signed(shift)?)?.checked_add_signed(shift)
    }

    /// [`Schedule::next_after`] without the offset: the next whole second the fields name.
    fn next_whole_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let offset = self.tz.offset_from_utc_datetime(&after.naive_utc()).fix();
        let local_after = after.naive_utc().checked_add_offset(offset)?;
        let max_year = local_after.year().checked_add(HORIZON_YEARS)?;
        let mut start = local_after.with_nanosecond(0)?.checked_add_signed(ONE_SECOND)?;
        loop {
            let candidate = self.next_local_match(start, max_year)?;
            start = match self.resolve(candidate)? {
                Resolved::Instant { at, .. } if at > after => return Some(at),
                Resolved::Gap { at, .. } if at > after => return Some(at),
                // Gap times map to an instant already passed: skip the gap.
                Resolved::Gap { gap_end, .. } => gap_end,
                // A repeated time whose first pass has already passed: `after`
                // lies in the second pass, so skip the whole repeated period.
                Resolved::Instant { repeated: true, .. } => {
                    self.first_unrepeated_local(candidate).or_else(|| candidate.checked_add_signed(ONE_SECOND))?
                }
                Resolved::Instant { .. } => candidate.checked_add_signed(ONE_SECOND)?,
            };
        }
    }

    /// All fire instants in `(from, to]`, in order, at most `limit` of them.
    pub fn between(&self, from: DateTime<Utc>, to: DateTime<Utc>, limit: usize) -> Vec<DateTime<Utc>> {
        let mut fires = Vec::new();
        let mut cursor = from;
        while fires.len() < limit {
            match self.next_after(cursor) {
                Some(next) if next <= to => {
                    fires.push(next);
                    cursor = next;
                }
                _ => break,
            }
        }
        fires
    }

    /// Smallest gap between two consecutive fires after `from`, estimated from
    /// the fires of the next year (at least two fires are examined), with the
    /// work capped: the first 4096 fires, plus up to 512 fires
    /// around every UTC offset change in that year (where DST can shorten a
    /// gap). `None` when fewer than two fires exist within the horizon.
    pub fn min_interval_estimate(&self, from: DateTime<Utc>) -> Option<std::time::Duration> {
        let floor = if self.has_seconds { ONE_SECOND } else { ONE_MINUTE };
        let year_end = from.checked_add_signed(ONE_YEAR)?;
        let mut best = None;
        self.scan_gaps(from, year_end, MIN_INTERVAL_SCAN_FIRES, floor, &mut best);
        let windows =
            if best.is_some_and(|gap| gap <= floor) { Vec::new() } else { self.offset_change_windows(from, year_end) };
        for window_start in windows {
            if best.is_some_and(|gap| gap <= floor) {
                break;
            }
            let window_end = window_start.checked_add_signed(THREE_DAYS).unwrap_or(year_end);
            self.scan_gaps(window_start, window_end, MIN_INTERVAL_WINDOW_FIRES, floor, &mut best);
        }
        best.and_then(|gap: TimeDelta| gap.to_std().ok())
    }

    /// Updates `best` with the gaps between consecutive fires after `from`,
    /// stopping after the first fire past `until`, after `max_fires` fires, or
    /// once `floor` is reached.
    fn scan_gaps(
        &self,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
        max_fires: usize,
        floor: TimeDelta,
        best: &mut Option<TimeDelta>,
    ) {
        let Some(mut previous) = self.next_after(from) else {
            return;
        };
        for _ in 0..max_fires {
            let Some(next) = self.next_after(previous) else {
                return;
            };
            let gap = next - previous;
            if best.is_none_or(|current| gap < current) {
                *best = Some(gap);
            }
            if next > until || gap <= floor {
                return;
            }
            previous = next;
        }
    }

    /// Start instants (one day early) of windows around each change of the
    /// zone's UTC offset in `(from, until]`, found by sampling every 6 hours.
    fn offset_change_windows(&self, from: DateTime<Utc>, until: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        let offset_at = |at: DateTime<Utc>| self.tz.offset_from_utc_datetime(&at.naive_utc()).fix().local_minus_utc();
        let mut windows = Vec::new();
        let mut sample = from;
        let mut offset = offset_at(sample);
        while sample < until {
            let Some(next) = sample.checked_add_signed(SIX_HOURS) else {
                break;
            };
            let next_offset = offset_at(next);
            if next_offset != offset {
                windows.push(sample.checked_sub_signed(ONE_DAY).unwrap_or(sample));
            }
            sample = next;
            offset = next_offset;
        }
        windows
    }

    /// Vixie's day rule: OR when both day fields are restricted, else AND.
    fn day_matches(&self, date: NaiveDate) -> bool {
        self.day_parts_match(date.day(), date.weekday().num_days_from_sunday())
    }

    fn day_parts_match(&self, day_of_month: u32, weekday_from_sunday: u32) -> bool {
        let dom = self.days_of_month.contains(day_of_month);
        let dow = self.days_of_week.contains(weekday_from_sunday);
        if self.dom_unrestricted || self.dow_unrestricted {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// Whether some Gregorian date matches the month and day fields. Every
    /// valid (month, day) pair falls on every weekday within 400 years, so
    /// weekdays can be combined freely.
    fn matches_some_date(&self) -> bool {
        (1..=12).filter(|m| self.months.contains(*m)).any(|month| {
            (1..=max_days_in_month(month)).any(|day| (0..7).any(|weekday| self.day_parts_match(day, weekday)))
        })
    }

    /// The first local time `>= start` matching every field, in years up to
    /// `max_year`. Skips whole months, days and hours that cannot match.
    fn next_local_match(&self, start: NaiveDateTime, max_year: i32) -> Option<NaiveDateTime> {
        let mut date = start.date();
        let mut from = (start.hour(), start.minute(), start.second());
        loop {
            if date.year() > max_year {
                return None;
            }
            if !self.months.contains(date.month()) {
                date = self.first_day_of_next_month(date)?;
                from = (0, 0, 0);
                continue;
            }
            if self.day_matches(date) {
                if let Some((hour, minute, second)) = self.next_time_in_day(from) {
                    return date.and_hms_opt(hour, minute, second);
                }
            }
            date = date.succ_opt()?;
            from = (0, 0, 0);
        }
    }

    /// The first day of the next month (after `date`'s) in the month field.
    fn first_day_of_next_month(&self, date: NaiveDate) -> Option<NaiveDate> {
        match self.months.next_from(date.month() + 1) {
            Some(month) => NaiveDate::from_ymd_opt(date.year(), month, 1),
            None => NaiveDate::from_ymd_opt(date.year().checked_add(1)?, self.months.next_from(1)?, 1),
        }
    }

    /// The first matching time of day `>= (hour, minute, second)`.
    fn next_time_in_day(&self, (hour, minute, second): (u32, u32, u32)) -> Option<(u32, u32, u32)> {
        let mut candidate_hour = self.hours.next_from(hour)?;
        let mut from = if candidate_hour == hour { (minute, second) } else { (0, 0) };
        loop {
            if let Some((m, s)) = self.next_time_in_hour(from) {
                return Some((candidate_hour, m, s));
            }
            candidate_hour = self.hours.next_from(candidate_hour + 1)?;
            from = (0, 0);
        }
    }

    /// The first matching `(minute, second)` `>= (minute, second)`.
    fn next_time_in_hour(&self, (minute, second): (u32, u32)) -> Option<(u32, u32)> {
        let candidate = self.minutes.next_from(minute)?;
        let from_second = if candidate == minute { second } else { 0 };
        if let Some(s) = self.seconds.next_from(from_second) {
            return Some((candidate, s));
        }
        let candidate = self.minutes.next_from(candidate + 1)?;
        Some((candidate, self.seconds.next_from(0)?))
    }

    /// Maps a local wall-clock time to its fire instant (see the module docs).
    fn resolve(&self, local: NaiveDateTime) -> Option<Resolved> {
        match self.tz.from_local_datetime(&local) {
            LocalResult::Single(at) => Some(Resolved::Instant { at: at.with_timezone(&Utc), repeated: false }),
            LocalResult::Ambiguous(first, second) => {
                Some(Resolved::Instant { at: first.min(second).with_timezone(&Utc), repeated: true })
            }
            LocalResult::None => {
                let gap_end = self.scan_local_forward(local, |result| !matches!(result, LocalResult::None))?;
                let at = match self.tz.from_local_datetime(&gap_end) {
                    LocalResult::Single(at) => at,
                    LocalResult::Ambiguous(first, second) => first.min(second),
                    LocalResult::None => return None,
                };
                Some(Resolved::Gap { at: at.with_timezone(&Utc), gap_end })
            }
        }
    }

    /// The first local time after `local` that occurs only once (the end of
    /// the repeated period `local` is in).
    fn first_unrepeated_local(&self, local: NaiveDateTime) -> Option<NaiveDateTime> {
        self.scan_local_forward(local, |result| !matches!(result, LocalResult::Ambiguous(..)))
    }

    /// The first local time after `local` (to the second) whose mapping
    /// satisfies `accept`, assuming it stays accepted once it is (true within
    /// one DST transition). Steps by minutes, then bisects to the second.
    fn scan_local_forward(
        &self,
        local: NaiveDateTime,
        accept: impl Fn(&LocalResult<DateTime<Tz>>) -> bool,
    ) -> Option<NaiveDateTime> {
        let accepted = |at: NaiveDateTime| accept(&self.tz.from_local_datetime(&at));
        let mut rejected = local;
        for _ in 0..MAX_TRANSITION_SCAN_MINUTES {
            let probe = rejected.checked_add_signed(ONE_MINUTE)?;
            if accepted(probe) {
                return Some(bisect_seconds(rejected, probe, accepted));
            }
            rejected = probe;
        }
        None
    }
}

/// The first second in `(rejected, accepted]` for which `is_accepted` holds,
/// given that it fails at `rejected`, holds at `accepted`, and flips once.
fn bisect_seconds(
    mut rejected: NaiveDateTime,
    mut accepted: NaiveDateTime,
    is_accepted: impl Fn(NaiveDateTime) -> bool,
) -> NaiveDateTime {
    while (accepted - rejected) > ONE_SECOND {
        let half = (accepted - rejected).num_seconds() / 2;
        let Some(middle) = rejected.checked_add_signed(delta_seconds(half)) else {
            break;
        };
        if is_accepted(middle) {
            accepted = middle;
        } else {
            rejected = middle;
        }
    }
    accepted
}

#[cfg(test)]
#[path = "schedule_tests.rs"]
mod tests;
