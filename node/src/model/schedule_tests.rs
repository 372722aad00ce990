//! Tests for `schedule`: a table of known next-fire instants (expected values
//! worked out by hand from the zone rules, see the comments), error cases, and
//! property checks over whole years in several zones.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use chrono::{DateTime, LocalResult, NaiveDateTime, Offset, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;

use super::*;

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap_or_else(|e| panic!("bad test instant {text}: {e}")).with_timezone(&Utc)
}

fn schedule(expr: &str, tz: &str) -> Schedule {
    Schedule::parse(expr, tz).unwrap_or_else(|e| panic!("{expr:?} in {tz}: {e}"))
}

/// (expression, zone, after, expected next fire). Instants are RFC 3339; the
/// expected ones are written with the local offset in force at that instant.
///
/// 2026 transitions used below (all verified against the tz rules):
/// * Europe/Berlin: Sun 29 Mar 02:00 CET -> 03:00 CEST (01:00 UTC);
///   Sun 25 Oct 03:00 CEST -> 02:00 CET (01:00 UTC), 02:00-03:00 repeats.
/// * America/New_York: Sun 8 Mar 02:00 EST -> 03:00 EDT (07:00 UTC);
///   Sun 1 Nov 02:00 EDT -> 01:00 EST (06:00 UTC), 01:00-02:00 repeats.
/// * Australia/Sydney: Sun 5 Apr 03:00 AEDT -> 02:00 AEST (4 Apr 16:00 UTC),
///   02:00-03:00 repeats; Sun 4 Oct 02:00 AEST -> 03:00 AEDT (3 Oct 16:00 UTC).
/// * Pacific/Chatham (+12:45/+13:45): Sun 5 Apr 03:45 -> 02:45 (4 Apr 14:00
///   UTC), 02:45-03:45 repeats; Sun 27 Sep 02:45 -> 03:45 (26 Sep 14:00 UTC).
/// * Australia/Lord_Howe (+10:30/+11, a 30-minute shift): Sun 5 Apr 02:00 ->
///   01:30 (4 Apr 15:00 UTC), 01:30-02:00 repeats; Sun 4 Oct 02:00 -> 02:30
///   (3 Oct 15:30 UTC).
#[rustfmt::skip]
const NEXT_FIRE_CASES: &[(&str, &str, &str, &str)] = &[
    // --- UTC: basics, strictness, month ends, leap years, rollover.
    ("* * * * *", "UTC", "2026-01-01T00:00:00Z", "2026-01-01T00:01:00Z"),
    ("* * * * *", "UTC", "2026-01-01T00:00:30.5Z", "2026-01-01T00:01:00Z"),
    ("0 0 * * *", "UTC", "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"),
    ("0 0 * * *", "UTC", "2025-12-31T23:59:59.999Z", "2026-01-01T00:00:00Z"),
    ("0 0 1 * *", "UTC", "2026-12-15T00:00:00Z", "2027-01-01T00:00:00Z"),
    ("0 0 31 * *", "UTC", "2026-04-01T00:00:00Z", "2026-05-31T00:00:00Z"),
    ("59 23 31 12 *", "UTC", "2026-06-01T00:00:00Z", "2026-12-31T23:59:00Z"),
    ("0 0 29 2 *", "UTC", "2026-01-01T00:00:00Z", "2028-02-29T00:00:00Z"),
    ("0 0 29 2 *", "UTC", "2028-02-29T00:00:00Z", "2032-02-29T00:00:00Z"),
    // 2100 is not a leap year.
    ("0 0 29 2 *", "UTC", "2096-03-01T00:00:00Z", "2104-02-29T00:00:00Z"),
    ("0 0 28-31 2 *", "UTC", "2026-02-28T00:00:00Z", "2027-02-28T00:00:00Z"),
    // Ranges, steps, lists, a/n.
    ("5/20 * * * *", "UTC", "2026-01-01T10:05:00Z", "2026-01-01T10:25:00Z"),
    ("10-50/20 * * * *", "UTC", "2026-01-01T10:30:00Z", "2026-01-01T10:50:00Z"),
    ("10-50/20 * * * *", "UTC", "2026-01-01T10:50:00Z", "2026-01-01T11:10:00Z"),
    ("0,30 9-17/4 * * *", "UTC", "2026-01-01T13:30:00Z", "2026-01-01T17:00:00Z"),
    ("0 */6 * * *", "UTC", "2026-01-01T18:00:00Z", "2026-01-02T00:00:00Z"),
    // 1 Jan 2026 is a Thursday. Vixie OR: both day fields restricted.
    ("0 12 1 * MON", "UTC", "2026-06-02T00:00:00Z", "2026-06-08T12:00:00Z"),
    ("0 12 13 * FRI", "UTC", "2026-02-01T00:00:00Z", "2026-02-06T12:00:00Z"),
    ("0 12 13 * FRI", "UTC", "2026-02-06T12:00:00Z", "2026-02-13T12:00:00Z"),
    // Vixie: `*/2` starts with `*`, so AND: an odd day that is a Monday.
    // Mondays after 1 Jun 2026: 8 (even), 15 (odd).
    ("0 0 */2 * MON", "UTC", "2026-06-01T00:00:00Z", "2026-06-15T00:00:00Z"),
    // Day-of-month `*`: plain weekday schedule.
    ("0 0 * * 0", "UTC", "2026-01-01T00:00:00Z", "2026-01-04T00:00:00Z"),
    ("0 0 * * 7", "UTC", "2026-01-01T00:00:00Z", "2026-01-04T00:00:00Z"),
    ("0 0 * * sun", "UTC", "2026-01-01T00:00:00Z", "2026-01-04T00:00:00Z"),
    ("0 9 * * MON-FRI", "UTC", "2026-01-02T09:00:00Z", "2026-01-05T09:00:00Z"),
    ("0 0 * * FRI-SUN", "UTC", "2026-01-03T00:00:00Z", "2026-01-04T00:00:00Z"),
    ("0 0 * * 5-7", "UTC", "2026-01-04T00:00:00Z", "2026-01-09T00:00:00Z"),
    ("0 0 1 jan,Jul *", "UTC", "2026-02-01T00:00:00Z", "2026-07-01T00:00:00Z"),
    ("0 0 1 JUN-AUG/2 *", "UTC", "2026-06-01T00:00:00Z", "2026-08-01T00:00:00Z"),
    ("0 0 ? * MON", "UTC", "2026-01-01T00:00:00Z", "2026-01-05T00:00:00Z"),
    // Macros.
    ("@yearly", "UTC", "2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z"),
    ("@ANNUALLY", "UTC", "2026-03-01T00:00:00Z", "2027-01-01T00:00:00Z"),
    ("@monthly", "UTC", "2026-01-31T12:00:00Z", "2026-02-01T00:00:00Z"),
    ("@weekly", "UTC", "2026-01-01T00:00:00Z", "2026-01-04T00:00:00Z"),
    ("@daily", "UTC", "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"),
    ("@midnight", "UTC", "2026-01-01T23:59:59Z", "2026-01-02T00:00:00Z"),
    ("@hourly", "UTC", "2026-01-01T10:30:00Z", "2026-01-01T11:00:00Z"),
    // Six fields: second minute hour day-of-month month day-of-week.
    ("*/15 * * * * *", "UTC", "2026-01-01T00:00:50Z", "2026-01-01T00:01:00Z"),
    ("30 */10 * * * *", "UTC", "2026-01-01T00:00:30Z", "2026-01-01T00:10:30Z"),
    ("0 0 0 1 1 *", "UTC", "2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z"),
    ("59 59 23 31 12 *", "UTC", "2026-01-01T00:00:00Z", "2026-12-31T23:59:59Z"),
    ("* * * * * *", "UTC", "2026-01-01T00:00:00.25Z", "2026-01-01T00:00:01Z"),
    // --- Europe/Berlin, spring forward (02:00-03:00 does not exist).
    ("30 2 * * *", "Europe/Berlin", "2026-03-28T12:00:00Z", "2026-03-29T03:00:00+02:00"),
    ("30 2 * * *", "Europe/Berlin", "2026-03-29T01:00:00Z", "2026-03-30T02:30:00+02:00"),
    ("0 30 2 * * *", "Europe/Berlin", "2026-03-28T12:00:00Z", "2026-03-29T03:00:00+02:00"),
    ("15 2 29 3 *", "Europe/Berlin", "2026-01-01T00:00:00Z", "2026-03-29T03:00:00+02:00"),
    ("*/15 * * * *", "Europe/Berlin", "2026-03-29T01:45:00+01:00", "2026-03-29T03:00:00+02:00"),
    ("*/15 * * * *", "Europe/Berlin", "2026-03-29T03:00:00+02:00", "2026-03-29T03:15:00+02:00"),
    ("0 * * * *", "Europe/Berlin", "2026-03-29T01:00:00+01:00", "2026-03-29T03:00:00+02:00"),
    ("0 * * * *", "Europe/Berlin", "2026-03-29T03:00:00+02:00", "2026-03-29T04:00:00+02:00"),
    // Europe/Berlin, fall back (02:00-03:00 happens twice; first pass fires).
    ("30 2 * * *", "Europe/Berlin", "2026-10-24T12:00:00Z", "2026-10-25T02:30:00+02:00"),
    ("30 2 * * *", "Europe/Berlin", "2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"),
    ("*/15 * * * *", "Europe/Berlin", "2026-10-25T01:50:00+02:00", "2026-10-25T02:00:00+02:00"),
    ("*/15 * * * *", "Europe/Berlin", "2026-10-25T02:45:00+02:00", "2026-10-25T03:00:00+01:00"),
    // `after` inside the second pass: the repeated quarter hours do not fire.
    ("*/15 * * * *", "Europe/Berlin", "2026-10-25T02:10:00+01:00", "2026-10-25T03:00:00+01:00"),
    ("0 * * * *", "Europe/Berlin", "2026-10-25T02:00:00+02:00", "2026-10-25T03:00:00+01:00"),
    ("0 0 * * *", "Europe/Berlin", "2026-06-30T22:00:00Z", "2026-07-02T00:00:00+02:00"),
    ("0 9 * * MON-FRI", "Europe/Berlin", "2026-01-05T07:00:00Z", "2026-01-05T09:00:00+01:00"),
    // --- America/New_York, spring forward (02:00-03:00 does not exist).
    ("30 2 * * *", "America/New_York", "2026-03-07T12:00:00Z", "2026-03-08T03:00:00-04:00"),
    ("30 2 * * *", "America/New_York", "2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"),
    ("*/30 * * * *", "America/New_York", "2026-03-08T01:30:00-05:00", "2026-03-08T03:00:00-04:00"),
    ("*/30 * * * *", "America/New_York", "2026-03-08T03:00:00-04:00", "2026-03-08T03:30:00-04:00"),
    // America/New_York, fall back (01:00-02:00 happens twice).
    ("30 1 * * *", "America/New_York", "2026-10-31T12:00:00Z", "2026-11-01T01:30:00-04:00"),
    ("30 1 * * *", "America/New_York", "2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"),
    ("30 2 * * *", "America/New_York", "2026-10-31T12:00:00Z", "2026-11-01T02:30:00-05:00"),
    ("0 * * * *", "America/New_York", "2026-11-01T01:00:00-04:00", "2026-11-01T02:00:00-05:00"),
    ("0 0 * * *", "America/New_York", "2026-01-01T00:00:00Z", "2026-01-01T00:00:00-05:00"),
    // --- Australia/Sydney: DST ends in April (02:00-03:00 twice).
    ("30 2 * * *", "Australia/Sydney", "2026-04-04T12:00:00Z", "2026-04-05T02:30:00+11:00"),
    ("30 2 * * *", "Australia/Sydney", "2026-04-05T02:30:00+11:00", "2026-04-06T02:30:00+10:00"),
    ("0 * * * *", "Australia/Sydney", "2026-04-05T02:00:00+11:00", "2026-04-05T03:00:00+10:00"),
    // DST starts in October (02:00-03:00 does not exist).
    ("30 2 * * *", "Australia/Sydney", "2026-10-03T12:00:00Z", "2026-10-04T03:00:00+11:00"),
    ("30 2 * * *", "Australia/Sydney", "2026-10-04T03:00:00+11:00", "2026-10-05T02:30:00+11:00"),
    ("*/20 * * * *", "Australia/Sydney", "2026-10-04T01:40:00+10:00", "2026-10-04T03:00:00+11:00"),
    ("*/20 * * * *", "Australia/Sydney", "2026-10-04T03:00:00+11:00", "2026-10-04T03:20:00+11:00"),
    ("0 9 * * *", "Australia/Sydney", "2026-01-01T00:00:00Z", "2026-01-02T09:00:00+11:00"),
    // --- Asia/Kolkata (+05:30, no DST).
    ("30 9 * * *", "Asia/Kolkata", "2026-01-01T00:00:00Z", "2026-01-01T09:30:00+05:30"),
    ("0 0 1 * *", "Asia/Kolkata", "2026-02-01T00:00:00+05:30", "2026-03-01T00:00:00+05:30"),
    ("0 0 * * *", "Asia/Kolkata", "2026-01-01T18:29:59Z", "2026-01-02T00:00:00+05:30"),
    // --- Pacific/Chatham (+12:45 standard, +13:45 daylight).
    ("0 12 * * *", "Pacific/Chatham", "2026-01-01T00:00:00Z", "2026-01-02T12:00:00+13:45"),
    ("0 3 * * *", "Pacific/Chatham", "2026-09-26T12:00:00Z", "2026-09-27T03:45:00+13:45"),
    ("0 3 * * *", "Pacific/Chatham", "2026-09-27T03:45:00+13:45", "2026-09-28T03:00:00+13:45"),
    ("0 3 * * *", "Pacific/Chatham", "2026-04-04T12:00:00Z", "2026-04-05T03:00:00+13:45"),
    ("0 3 * * *", "Pacific/Chatham", "2026-04-05T03:00:00+13:45", "2026-04-06T03:00:00+12:45"),
    // --- Australia/Lord_Howe (30-minute DST shift).
    ("15 2 * * *", "Australia/Lord_Howe", "2026-10-03T12:00:00Z", "2026-10-04T02:30:00+11:00"),
    ("45 1 * * *", "Australia/Lord_Howe", "2026-04-04T12:00:00Z", "2026-04-05T01:45:00+11:00"),
    ("45 1 * * *", "Australia/Lord_Howe", "2026-04-05T01:45:00+11:00", "2026-04-06T01:45:00+10:30"),
];

#[test]
fn next_fire_table() {
    assert!(NEXT_FIRE_CASES.len() >= 40);
    let mut failures = Vec::new();
    for &(expr, tz, after, expected) in NEXT_FIRE_CASES {
        let got = schedule(expr, tz).next_after(at(after));
        if got != Some(at(expected)) {
            failures.push(format!("{expr:?} in {tz} after {after}: expected {expected}, got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn zero_and_seven_are_both_sunday() {
    let zero = schedule("0 0 * * 0", "UTC");
    let seven = schedule("0 0 * * 7", "UTC");
    let both = schedule("0 0 * * 0,7", "UTC");
    let from = at("2026-01-01T00:00:00Z");
    let to = at("2026-02-28T00:00:00Z");
    let expected = zero.between(from, to, 100);
    assert_eq!(expected.len(), 8); // Sundays in Jan and Feb 2026: 4 + 4.
    assert_eq!(seven.between(from, to, 100), expected);
    assert_eq!(both.between(from, to, 100), expected);
}

#[test]
fn gap_times_collapse_into_one_instant() {
    // 02:00, 02:15, 02:30, 02:45 and the real 03:00 all map to 01:00 UTC.
    let s = schedule("0,15,30,45 2,3 29 3 *", "Europe/Berlin");
    let fires = s.between(at("2026-03-28T00:00:00Z"), at("2026-03-30T00:00:00Z"), 100);
    let expected: Vec<_> = [
        "2026-03-29T03:00:00+02:00",
        "2026-03-29T03:15:00+02:00",
        "2026-03-29T03:30:00+02:00",
        "2026-03-29T03:45:00+02:00",
    ]
    .iter()
    .map(|t| at(t))
    .collect();
    assert_eq!(fires, expected);
}

#[test]
fn repeated_hour_fires_once_per_local_time() {
    let s = schedule("*/30 * * * *", "Europe/Berlin");
    let fires = s.between(at("2026-10-24T23:00:00Z"), at("2026-10-25T03:00:00Z"), 100);
    let expected: Vec<_> = [
        "2026-10-25T01:30:00+02:00",
        "2026-10-25T02:00:00+02:00",
        "2026-10-25T02:30:00+02:00",
        // The second pass (02:00+01:00, 02:30+01:00) does not fire.
        "2026-10-25T03:00:00+01:00",
        "2026-10-25T03:30:00+01:00",
        "2026-10-25T04:00:00+01:00",
    ]
    .iter()
    .map(|t| at(t))
    .collect();
    assert_eq!(fires, expected);
}

#[test]
fn hourly_job_over_a_berlin_year_counts_dst_days_correctly() {
    let s = schedule("0 * * * *", "Europe/Berlin");
    let fires = s.between(at("2025-12-31T23:00:00Z"), at("2026-12-31T23:00:00Z"), 100_000);
    // 365 local days of 24 hours; on 29 March 02:00 and 03:00 are one instant.
    assert_eq!(fires.len(), 365 * 24 - 1);
}

#[test]
fn daily_job_fires_once_per_local_day_in_every_zone() {
    for tz in ZONES {
        let s = schedule("30 2 * * *", tz);
        let zone: Tz = tz.parse().unwrap();
        let start = zone.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).single().unwrap().with_timezone(&Utc);
        let end = zone.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).single().unwrap().with_timezone(&Utc);
        assert_eq!(s.between(start, end, 1000).len(), 365, "{tz}");
    }
}

#[test]
fn between_limits_and_bounds() {
    let s = schedule("0 * * * *", "UTC");
    let from = at("2026-01-01T00:00:00Z");
    let to = at("2026-01-01T05:00:00Z");
    assert_eq!(s.between(from, to, 100).len(), 5); // 01..05, `from` excluded.
    assert_eq!(s.between(from, to, 3).len(), 3);
    assert!(s.between(from, to, 0).is_empty());
    assert!(s.between(to, from, 10).is_empty());
    assert_eq!(s.between(from, to, 100).last(), Some(&to));
}

#[test]
fn accessors() {
    let s = schedule("*/5 * * * * *", "Europe/Berlin");
    assert!(s.has_seconds());
    assert_eq!(s.expression(), "*/5 * * * * *");
    assert_eq!(s.timezone(), chrono_tz::Europe::Berlin);
    let s = schedule("@daily", "UTC");
    assert!(!s.has_seconds());
    assert_eq!(s.expression(), "@daily");
    assert_eq!(s.timezone(), chrono_tz::UTC);
    // Zone names are matched ignoring ASCII case, tabs separate fields too.
    let s = schedule("0\t0 * * *", "america/new_york");
    assert_eq!(s.timezone(), chrono_tz::America::New_York);
    assert!(Schedule::parse("0 0 29 2 *", "UTC").is_ok());
    assert!(Schedule::parse("0 0 ? * ?", "UTC").is_ok());
}

#[test]
fn matches_local_checks_every_field() {
    let s = schedule("0 30 9 * * MON-FRI", "UTC");
    let monday = NaiveDateTime::parse_from_str("2026-01-05 09:30:00", "%Y-%m-%d %H:%M:%S").unwrap();
    let sunday = NaiveDateTime::parse_from_str("2026-01-04 09:30:00", "%Y-%m-%d %H:%M:%S").unwrap();
    assert!(s.matches_local(monday));
    assert!(!s.matches_local(sunday));
    assert!(!s.matches_local(monday + TimeDelta::seconds(1)));
}

// ---------------------------------------------------------------- errors

fn invalid_field(field: &'static str, value: &'static str) -> impl Fn(&ScheduleError) -> bool {
    move |e| matches!(e, ScheduleError::InvalidField { field: f, value: v, .. } if *f == field && v == value)
}

#[test]
fn invalid_expressions_are_rejected_with_typed_errors() {
    let long = "1,".repeat(200) + "1 * * * *";
    type Check = Box<dyn Fn(&ScheduleError) -> bool>;
    let cases: Vec<(&str, Check)> = vec![
        ("", Box::new(|e| *e == ScheduleError::Empty)),
        ("  \t ", Box::new(|e| *e == ScheduleError::Empty)),
        ("* * * *", Box::new(|e| *e == ScheduleError::FieldCount { found: 4 })),
        ("* * * * * * *", Box::new(|e| *e == ScheduleError::FieldCount { found: 7 })),
        ("60 * * * *", Box::new(invalid_field("minute", "60"))),
        ("* 25 * * *", Box::new(invalid_field("hour", "25"))),
        ("* 1-24 * * *", Box::new(invalid_field("hour", "24"))),
        ("* * 0 * *", Box::new(invalid_field("day-of-month", "0"))),
        ("* * 32 * *", Box::new(invalid_field("day-of-month", "32"))),
        ("* * * 0 *", Box::new(invalid_field("month", "0"))),
        ("* * * 13 *", Box::new(invalid_field("month", "13"))),
        ("* * * * 8", Box::new(invalid_field("day-of-week", "8"))),
        ("60 * * * * *", Box::new(invalid_field("second", "60"))),
        ("5-1 * * * *", Box::new(invalid_field("minute", "5-1"))),
        ("* * * * SAT-MON", Box::new(invalid_field("day-of-week", "SAT-MON"))),
        ("*/0 * * * *", Box::new(invalid_field("minute", "*/0"))),
        ("*/60 * * * *", Box::new(invalid_field("minute", "*/60"))),
        ("*/5/2 * * * *", Box::new(invalid_field("minute", "*/5/2"))),
        ("1,,2 * * * *", Box::new(invalid_field("minute", "1,,2"))),
        ("1, * * * *", Box::new(invalid_field("minute", "1,"))),
        ("abc * * * *", Box::new(invalid_field("minute", "abc"))),
        ("-1 * * * *", Box::new(invalid_field("minute", "-1"))),
        ("+1 * * * *", Box::new(invalid_field("minute", "+1"))),
        ("99999999999 * * * *", Box::new(invalid_field("minute", "99999999999"))),
        ("1-2-3 * * * *", Box::new(invalid_field("minute", "1-2-3"))),
        ("? * * * *", Box::new(invalid_field("minute", "?"))),
        ("* * * FOO *", Box::new(invalid_field("month", "FOO"))),
        ("* * * * JAN", Box::new(invalid_field("day-of-week", "JAN"))),
        ("* * * MON *", Box::new(invalid_field("month", "MON"))),
        ("* * * * MONDAY", Box::new(invalid_field("day-of-week", "MONDAY"))),
        ("* * * * MON-", Box::new(invalid_field("day-of-week", "MON-"))),
        ("0 0 L * *", Box::new(invalid_field("day-of-month", "L"))),
        ("0 0 1W * *", Box::new(invalid_field("day-of-month", "1W"))),
        ("0 0 * * 1#2", Box::new(invalid_field("day-of-week", "1#2"))),
        ("0 0 ?/2 * *", Box::new(invalid_field("day-of-month", "?"))),
        ("@reboot", Box::new(|e| *e == ScheduleError::RebootUnsupported)),
        ("@fortnightly", Box::new(|e| matches!(e, ScheduleError::UnknownMacro { name } if name == "@fortnightly"))),
        ("@daily 0", Box::new(|e| matches!(e, ScheduleError::MacroWithFields { name } if name == "@daily"))),
        (long.as_str(), Box::new(|e| matches!(e, ScheduleError::TooLong { max: 256, .. }))),
        ("0 0 30 2 *", Box::new(|e| matches!(e, ScheduleError::NeverFires { .. }))),
        ("0 0 31 4 *", Box::new(|e| matches!(e, ScheduleError::NeverFires { .. }))),
        ("0 0 31 2,4,6,9,11 *", Box::new(|e| matches!(e, ScheduleError::NeverFires { .. }))),
        ("0 0 0 30,31 FEB *", Box::new(|e| matches!(e, ScheduleError::NeverFires { .. }))),
    ];
    assert!(cases.len() >= 20);
    for (expr, check) in &cases {
        match Schedule::parse(expr, "UTC") {
            Ok(_) => panic!("{expr:?} was accepted"),
            Err(e) => assert!(check(&e), "{expr:?} gave unexpected error {e:?}"),
        }
    }
}

#[test]
fn invalid_time_zones_are_rejected() {
    for tz in ["Mars/Base", "", "Europe/Berlin ", "GMT+25", "Europe//Berlin", "Berlin"] {
        assert_eq!(
            Schedule::parse("* * * * *", tz),
            Err(ScheduleError::UnknownTimeZone { name: tz.to_owned() }),
            "{tz:?}"
        );
    }
    let long = "X".repeat(1000);
    match Schedule::parse("* * * * *", &long) {
        Err(ScheduleError::UnknownTimeZone { name }) => assert!(name.len() < 100),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn error_messages_name_the_field_and_the_problem() {
    let message = |expr: &str, tz: &str| match Schedule::parse(expr, tz) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("{expr:?} accepted"),
    };
    assert_eq!(message("* 25 * * *", "UTC"), "cron_expression: field \"hour\" value \"25\" is out of range 0-23");
    assert_eq!(message("* * * * *", "Mars/Base"), "timezone: \"Mars/Base\" is not an IANA time zone name");
    assert_eq!(message("0 0 30 2 *", "UTC"), "cron_expression: \"0 0 30 2 *\" never fires");
    assert_eq!(
        message("5-1 * * * *", "UTC"),
        "cron_expression: field \"minute\" value \"5-1\" is a reversed range; \
         the start must not be greater than the end"
    );
    assert_eq!(
        message("*/0 * * * *", "UTC"),
        "cron_expression: field \"minute\" value \"*/0\" has an invalid step; \
         the step must be between 1 and 59"
    );
    assert_eq!(
        message("* * * FOO *", "UTC"),
        "cron_expression: field \"month\" value \"FOO\" is not a number or month name (JAN-DEC)"
    );
    assert!(message("* * * *", "UTC").contains("found 4"));
    assert!(message("@reboot", "UTC").contains("@reboot is not supported"));
    let zone_error = ScheduleError::UnknownTimeZone { name: "X".into() };
    assert_eq!(zone_error.request_field(), "timezone");
    assert_eq!(ScheduleError::Empty.request_field(), "cron_expression");
}

// ------------------------------------------------------- properties

const ZONES: [&str; 7] = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Australia/Sydney",
    "Asia/Kolkata",
    "Pacific/Chatham",
    "Australia/Lord_Howe",
];

const PROPERTY_EXPRESSIONS: [&str; 7] =
    ["*/15 * * * *", "0 * * * *", "30 2 * * *", "0,30 1-3 * * *", "*/10 2 * * SUN", "45 1,2,3 * * *", "0 0 1,15 * MON"];

/// Offset (seconds east of UTC) in force at `instant`.
fn offset_at(tz: Tz, instant: DateTime<Utc>) -> i32 {
    tz.offset_from_utc_datetime(&instant.naive_utc()).fix().local_minus_utc()
}

/// Whether `instant` is the end of a spring-forward gap that contains a
/// matching local time (checked minute by minute).
fn is_end_of_gap_with_match(s: &Schedule, instant: DateTime<Utc>) -> bool {
    let tz = s.timezone();
    let before = offset_at(tz, instant - TimeDelta::seconds(1));
    let after = offset_at(tz, instant);
    if after <= before {
        return false;
    }
    let gap_start = instant.naive_utc() + TimeDelta::seconds(i64::from(before));
    let gap_end = instant.naive_utc() + TimeDelta::seconds(i64::from(after));
    let mut t = gap_start;
    while t <= gap_end {
        if s.matches_local(t) {
            return true;
        }
        t += TimeDelta::minutes(1);
    }
    false
}

/// Independent brute force: every matching local minute in `[from, to)`
/// (local), mapped by the contract (gap -> first valid local time after it,
/// repeated -> earlier instant), deduplicated and sorted.
fn brute_force(s: &Schedule, from: NaiveDateTime, to: NaiveDateTime) -> Vec<DateTime<Utc>> {
    let tz = s.timezone();
    let mut out = std::collections::BTreeSet::new();
    let mut t = from;
    while t < to {
        if s.matches_local(t) {
            let mut probe = t;
            let instant = loop {
                match tz.from_local_datetime(&probe) {
                    LocalResult::Single(x) => break x,
                    LocalResult::Ambiguous(a, b) => break a.min(b),
                    LocalResult::None => probe += TimeDelta::minutes(1),
                }
            };
            out.insert(instant.with_timezone(&Utc));
        }
        t += TimeDelta::minutes(1);
    }
    out.into_iter().collect()
}

#[test]
fn a_year_of_fires_is_increasing_and_matches_in_every_zone() {
    let from = at("2026-01-01T00:00:00Z");
    let to = at("2027-01-01T00:00:00Z");
    for tz in ZONES {
        for expr in PROPERTY_EXPRESSIONS {
            let s = schedule(expr, tz);
            let zone = s.timezone();
            let fires = s.between(from, to, 100_000);
            assert!(!fires.is_empty(), "{expr:?} in {tz}");
            for (earlier, later) in fires.iter().zip(fires.iter().skip(1)) {
                assert!(earlier < later, "{expr:?} in {tz}: {earlier} then {later}");
            }
            for fire in &fires {
                let local = fire.with_timezone(&zone).naive_local();
                assert!(
                    s.matches_local(local) || is_end_of_gap_with_match(&s, *fire),
                    "{expr:?} in {tz}: {fire} (local {local}) is neither a match nor a gap end"
                );
                // Never fire in the second pass of a repeated period.
                if let LocalResult::Ambiguous(a, b) = zone.from_local_datetime(&local) {
                    assert_eq!(*fire, a.min(b).with_timezone(&Utc), "{expr:?} in {tz}");
                }
            }
        }
    }
}

#[test]
fn fires_around_every_transition_match_a_brute_force() {
    for tz in ZONES {
        let zone: Tz = tz.parse().unwrap();
        // Days (local) on which the UTC offset changes during 2026.
        let mut day = at("2026-01-01T00:00:00Z");
        let end = at("2027-01-01T00:00:00Z");
        let mut transitions = Vec::new();
        while day < end {
            let next = day + TimeDelta::hours(6);
            if offset_at(zone, day) != offset_at(zone, next) {
                transitions.push(day);
            }
            day = next;
        }
        let expected_transitions = if tz == "UTC" || tz == "Asia/Kolkata" { 0 } else { 2 };
        assert_eq!(transitions.len(), expected_transitions, "{tz}");
        for transition in transitions {
            let local = transition.with_timezone(&zone).naive_local();
            let window_from = local - TimeDelta::days(1);
            let window_to = local + TimeDelta::days(2);
            for expr in PROPERTY_EXPRESSIONS.iter().chain(["* * * * *"].iter()) {
                let s = schedule(expr, tz);
                let expected = brute_force(&s, window_from, window_to);
                let (Some(first), Some(last)) = (expected.first(), expected.last()) else {
                    continue;
                };
                let got = s.between(*first - TimeDelta::seconds(1), *last, 100_000);
                assert_eq!(got, expected, "{expr:?} in {tz} around {transition}");
            }
        }
    }
}

#[test]
fn no_duplicates_when_walking_with_next_after() {
    // Walking one fire at a time from inside the repeated period and from
    // just before the gap never returns an instant twice.
    let s = schedule("* * * * *", "Europe/Berlin");
    let mut cursor = at("2026-10-25T02:30:00+01:00");
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..200 {
        let next = s.next_after(cursor).unwrap();
        assert!(next > cursor);
        assert!(seen.insert(next));
        cursor = next;
    }
    assert_eq!(s.next_after(at("2026-10-25T02:30:00+01:00")), Some(at("2026-10-25T03:00:00+01:00")));
    let mut cursor = at("2026-03-29T01:58:00+01:00");
    let mut fires = Vec::new();
    for _ in 0..3 {
        cursor = s.next_after(cursor).unwrap();
        fires.push(cursor);
    }
    assert_eq!(
        fires,
        vec![at("2026-03-29T01:59:00+01:00"), at("2026-03-29T03:00:00+02:00"), at("2026-03-29T03:01:00+02:00"),]
    );
}

#[test]
fn every_second_job_crosses_transitions_without_stalling() {
    let s = schedule("* * * * * *", "Europe/Berlin");
    assert_eq!(s.next_after(at("2026-10-25T02:00:00+01:00")), Some(at("2026-10-25T03:00:00+01:00")));
    assert_eq!(s.next_after(at("2026-03-29T01:59:59+01:00")), Some(at("2026-03-29T03:00:00+02:00")));
    assert_eq!(s.next_after(at("2026-03-29T03:00:00+02:00")), Some(at("2026-03-29T03:00:01+02:00")));
}

// ------------------------------------------------- horizon and speed

#[test]
fn rarest_pattern_fits_in_the_horizon() {
    // 29 February on a Sunday (day-of-week starts with `*`, so AND):
    // 2088, then 2128 because 2100 is not a leap year.
    let s = schedule("0 0 29 2 */7", "UTC");
    assert_eq!(s.next_after(at("2088-03-01T00:00:00Z")), Some(at("2128-02-29T00:00:00Z")));
    const { assert!(HORIZON_YEARS > 40) };
}

#[test]
fn next_after_skips_quickly() {
    let cases = [
        ("0 0 29 2 *", "2029-03-01T00:00:00Z"),
        ("0 0 29 2 */7", "2088-03-01T00:00:00Z"),
        ("59 59 23 31 12 *", "2026-01-01T00:00:00Z"),
        ("0 0 29 2 *", "2096-03-01T00:00:00Z"),
    ];
    for (expr, after) in cases {
        let s = schedule(expr, "Europe/Berlin");
        let started = Instant::now();
        for _ in 0..10 {
            assert!(s.next_after(at(after)).is_some());
        }
        let elapsed = started.elapsed();
        // Generous for unoptimised builds on a loaded machine.
        assert!(elapsed < Duration::from_millis(500), "{expr}: {elapsed:?}");
    }
}

#[test]
fn next_after_near_the_end_of_time_is_none_not_a_panic() {
    let s = schedule("0 0 * * *", "Pacific/Chatham");
    assert_eq!(s.next_after(DateTime::<Utc>::MAX_UTC), None);
    let s = schedule("* * * * * *", "UTC");
    assert!(s.next_after(DateTime::<Utc>::MIN_UTC).is_some());
}

// ------------------------------------------------ min interval estimate

#[test]
fn min_interval_estimates() {
    let from = at("2026-01-01T00:00:00Z");
    let cases = [
        ("* * * * * *", "UTC", 1),
        ("*/5 * * * *", "UTC", 300),
        ("0 0,23 * * *", "UTC", 3600),
        ("0 0 * * *", "Asia/Kolkata", 86_400),
        // 1 Feb -> 1 Mar 2026.
        ("0 0 1 * *", "UTC", 28 * 86_400),
        ("@yearly", "UTC", 365 * 86_400),
        // 2028-02-29 -> 2032-02-29.
        ("0 0 29 2 *", "UTC", 1461 * 86_400),
        // Berlin spring forward: 01:00 CET (00:00Z) -> 03:00 CEST (01:00Z).
        ("0 1,3 * * *", "Europe/Berlin", 3600),
    ];
    for (expr, tz, seconds) in cases {
        let got = schedule(expr, tz).min_interval_estimate(from);
        assert_eq!(got, Some(Duration::from_secs(seconds)), "{expr:?} in {tz}");
    }
}

#[test]
fn min_interval_sees_dst_shortening_beyond_the_main_scan() {
    // Fires at 01:00, 01:59, 03:00, 03:59, ... (gaps of 59 and 61 minutes),
    // 24 a day, so the first 4096 fires from April end in September. On
    // 2027-03-28 01:59 CET (00:59Z) is followed by 03:00 CEST (01:00Z).
    let s = schedule("0,59 1-23/2 * * *", "Europe/Berlin");
    assert_eq!(s.min_interval_estimate(at("2026-04-01T00:00:00Z")), Some(Duration::from_secs(60)));
    // Fewer than two fires in the horizon: no estimate.
    assert_eq!(schedule("0 0 * * *", "UTC").min_interval_estimate(DateTime::<Utc>::MAX_UTC), None);
}

#[test]
fn min_interval_over_the_next_fires() {
    let from = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap().with_timezone(&Utc);
    let every = |expr: &str| Schedule::parse(expr, "UTC").unwrap().min_interval_seconds(from, 100);
    assert_eq!(every("* * * * * *"), Some(1));
    assert_eq!(every("*/5 * * * *"), Some(300));
    assert_eq!(every("0,1 * * * *"), Some(60), "the shortest gap, not the average");
    assert_eq!(every("0 0 1 1 *"), Some(365 * 86_400));
}

#[test]
fn an_offset_token_shifts_every_fire_inside_its_second() {
    let s = schedule("*/10 * * * * * +250ms", "UTC");
    assert_eq!(s.offset_ms(), 250);
    assert_eq!(s.expression(), "*/10 * * * * * +250ms");
    // Just before, at, and just after a shifted instant.
    assert_eq!(s.next_after(at("2026-05-01T12:00:00Z")), Some(at("2026-05-01T12:00:00.250Z")));
    assert_eq!(s.next_after(at("2026-05-01T12:00:00.249Z")), Some(at("2026-05-01T12:00:00.250Z")));
    assert_eq!(s.next_after(at("2026-05-01T12:00:00.250Z")), Some(at("2026-05-01T12:00:10.250Z")));
    assert_eq!(s.next_after(at("2026-05-01T11:59:59.999Z")), Some(at("2026-05-01T12:00:00.250Z")));
    assert_eq!(
        s.between(at("2026-05-01T12:00:00Z"), at("2026-05-01T12:00:30Z"), 10),
        vec![at("2026-05-01T12:00:00.250Z"), at("2026-05-01T12:00:10.250Z"), at("2026-05-01T12:00:20.250Z")]
    );
    // The gaps between fires do not change.
    assert_eq!(s.min_interval_estimate(at("2026-05-01T12:00:00Z")), Some(Duration::from_secs(10)));
    // Without the token, and with +0ms, fires stay on whole seconds.
    assert_eq!(schedule("*/10 * * * * *", "UTC").offset_ms(), 0);
    let zero = schedule("*/10 * * * * * +0ms", "UTC");
    assert_eq!(zero.next_after(at("2026-05-01T12:00:00Z")), Some(at("2026-05-01T12:00:10Z")));
}

#[test]
fn an_offset_follows_macros_five_fields_and_zone_rules() {
    let hourly = schedule("@hourly +999ms", "UTC");
    assert_eq!(hourly.next_after(at("2026-05-01T12:00:00.999Z")), Some(at("2026-05-01T13:00:00.999Z")));
    let five = schedule("30 2 * * * +5ms", "Europe/Berlin");
    // 02:30 local does not exist on 29 March 2026 (spring forward): 03:00 local, plus the offset.
    assert_eq!(five.next_after(at("2026-03-28T23:00:00Z")), Some(at("2026-03-29T01:00:00.005Z")));
    // Strictly increasing over a repeated hour (fall back).
    let every_15 = schedule("0 */15 * * * * +100ms", "Europe/Berlin");
    let fires = every_15.between(at("2026-10-24T23:00:00Z"), at("2026-10-25T03:00:00Z"), 100);
    assert!(fires.windows(2).all(|w| w[0] < w[1]));
    assert!(fires.iter().all(|f| f.timestamp_subsec_millis() == 100));
}

#[test]
fn a_malformed_offset_is_refused_with_the_token() {
    for bad in [
        "* * * * * +1000ms",
        "* * * * * +250",
        "* * * * * +ms",
        "* * * * * +-5ms",
        "* * * * * +2.5ms",
        "* * * * * +0250ms",
        "* * * * * +250s",
    ] {
        let err = Schedule::parse(bad, "UTC").expect_err(bad);
        assert!(matches!(err, ScheduleError::InvalidOffset { .. }), "{bad}: {err:?}");
        let text = err.to_string();
        assert!(text.starts_with("cron_expression: offset \"+"), "{text}");
        assert_eq!(err.request_field(), "cron_expression");
    }
    // Only the last token may be an offset.
    assert!(matches!(
        Schedule::parse("+250ms * * * * *", "UTC"),
        Err(ScheduleError::InvalidField { .. } | ScheduleError::FieldCount { .. })
    ));
    assert_eq!(Schedule::parse("+250ms", "UTC"), Err(ScheduleError::Empty));
}
