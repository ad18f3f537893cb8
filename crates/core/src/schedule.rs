//! Maintenance windows: recurrences ("second Tuesday of the month + 2 days at 22:00",
//! "every Saturday 02:00", a cron expression) evaluated in each device's own time zone.
//!
//! DST rule: every civil date that the recurrence selects yields exactly one window. A start
//! time that does not exist that day (spring forward) moves forward by the gap; one that
//! exists twice (fall back) takes its first occurrence. Durations are elapsed time. So a
//! transition neither skips nor doubles a window.

use jiff::civil::{Date, Time, Weekday};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, ToSpan};
use std::str::FromStr;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ScheduleError {
    #[error("invalid schedule {input:?}: {reason}")]
    Invalid { input: String, reason: String },
    #[error("unknown time zone {0:?}: use an IANA name such as Europe/Paris")]
    UnknownZone(String),
}

fn invalid(input: &str, reason: impl Into<String>) -> ScheduleError {
    ScheduleError::Invalid {
        input: input.to_owned(),
        reason: reason.into(),
    }
}

/// Which days, at which local times, a window starts.
#[derive(Debug, Clone, PartialEq)]
pub enum Recurrence {
    /// The `nth` (1..=4, or -1 for the last) `weekday` of each month, shifted by
    /// `offset_days` (Patch Tuesday + N), at `at`.
    Monthly {
        nth: i8,
        weekday: Weekday,
        offset_days: i32,
        at: Time,
    },
    Weekly {
        weekday: Weekday,
        at: Time,
    },
    Daily {
        at: Time,
    },
    Cron(Cron),
}

/// A five-field cron expression (minute hour day-of-month month day-of-week), with `*`,
/// lists, ranges, steps, and names for months and days. As in cron, when both day fields
/// are restricted a day matching either is selected.
#[derive(Debug, Clone, PartialEq)]
pub struct Cron {
    minutes: Vec<u8>,
    hours: Vec<u8>,
    days: Vec<u8>,
    months: Vec<u8>,
    weekdays: Vec<u8>,
    days_restricted: bool,
    weekdays_restricted: bool,
}

const WEEKDAYS: [(&str, Weekday); 7] = [
    ("monday", Weekday::Monday),
    ("tuesday", Weekday::Tuesday),
    ("wednesday", Weekday::Wednesday),
    ("thursday", Weekday::Thursday),
    ("friday", Weekday::Friday),
    ("saturday", Weekday::Saturday),
    ("sunday", Weekday::Sunday),
];

fn weekday(s: &str) -> Option<Weekday> {
    let s = s.to_ascii_lowercase();
    WEEKDAYS
        .iter()
        .find(|(name, _)| s.len() >= 3 && name.starts_with(&s))
        .map(|(_, w)| *w)
}

fn time_of_day(input: &str, s: &str) -> Result<Time, ScheduleError> {
    let (h, m) = s
        .split_once(':')
        .ok_or_else(|| invalid(input, format!("expected HH:MM, got {s:?}")))?;
    let h: i8 = h
        .parse()
        .map_err(|_| invalid(input, format!("bad hour in {s:?}")))?;
    let m: i8 = m
        .parse()
        .map_err(|_| invalid(input, format!("bad minute in {s:?}")))?;
    Time::new(h, m, 0, 0).map_err(|_| invalid(input, format!("no such time of day {s:?}")))
}

fn cron_field(
    input: &str,
    field: &str,
    min: u8,
    max: u8,
    names: &[&str],
) -> Result<(Vec<u8>, bool), ScheduleError> {
    let value = |s: &str| -> Result<u8, ScheduleError> {
        let lower = s.to_ascii_lowercase();
        if let Some(i) = names.iter().position(|n| *n == lower) {
            return Ok(min + i as u8);
        }
        s.parse::<u8>()
            .map_err(|_| invalid(input, format!("bad value {s:?} in cron field {field:?}")))
    };
    let mut out = Vec::new();
    for part in field.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (
                r,
                s.parse::<u8>()
                    .map_err(|_| invalid(input, format!("bad step in {part:?}")))?,
            ),
            None => (part, 1),
        };
        if step == 0 {
            return Err(invalid(input, format!("zero step in {part:?}")));
        }
        let (lo, hi) = if range == "*" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a)?, value(b)?)
        } else {
            let v = value(range)?;
            (v, if part.contains('/') { max } else { v })
        };
        if lo < min || hi > max || lo > hi {
            return Err(invalid(input, format!("{part:?} is outside {min}-{max}")));
        }
        out.extend((lo..=hi).step_by(step as usize));
    }
    out.sort_unstable();
    out.dedup();
    Ok((out, field != "*"))
}

impl FromStr for Cron {
    type Err = ScheduleError;
    fn from_str(input: &str) -> Result<Self, ScheduleError> {
        let fields: Vec<&str> = input.split_whitespace().collect();
        let [min, hour, dom, month, dow] = fields[..] else {
            return Err(invalid(
                input,
                "a cron expression has five fields: minute hour day month weekday",
            ));
        };
        const MONTHS: [&str; 12] = [
            "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
        ];
        const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
        let (minutes, _) = cron_field(input, min, 0, 59, &[])?;
        let (hours, _) = cron_field(input, hour, 0, 23, &[])?;
        let (days, days_restricted) = cron_field(input, dom, 1, 31, &[])?;
        let (months, _) = cron_field(input, month, 1, 12, &MONTHS)?;
        let (mut weekdays, weekdays_restricted) = cron_field(input, dow, 0, 7, &DAYS)?;
        // 7 is Sunday too.
        for d in &mut weekdays {
            if *d == 7 {
                *d = 0;
            }
        }
        weekdays.sort_unstable();
        weekdays.dedup();
        Ok(Cron {
            minutes,
            hours,
            days,
            months,
            weekdays,
            days_restricted,
            weekdays_restricted,
        })
    }
}

impl Cron {
    fn selects(&self, date: Date) -> bool {
        if !self.months.contains(&(date.month() as u8)) {
            return false;
        }
        let dom = self.days.contains(&(date.day() as u8));
        let dow = self
            .weekdays
            .contains(&(date.weekday().to_sunday_zero_offset() as u8));
        match (self.days_restricted, self.weekdays_restricted) {
            (true, true) => dom || dow,
            (true, false) => dom,
            (false, true) => dow,
            (false, false) => true,
        }
    }

    fn times(&self) -> Vec<Time> {
        let mut out = Vec::new();
        for h in &self.hours {
            for m in &self.minutes {
                if let Ok(t) = Time::new(*h as i8, *m as i8, 0, 0) {
                    out.push(t);
                }
            }
        }
        out
    }
}

impl Recurrence {
    /// The local start times this recurrence selects on `date`.
    pub fn starts_on(&self, date: Date) -> Vec<Time> {
        match self {
            Recurrence::Daily { at } => vec![*at],
            Recurrence::Weekly { weekday, at } => {
                if date.weekday() == *weekday {
                    vec![*at]
                } else {
                    vec![]
                }
            }
            Recurrence::Monthly {
                nth,
                weekday,
                offset_days,
                at,
            } => {
                // The anchor is in this month or, with an offset, in the previous or next one.
                let shifted = date.checked_sub(i64::from(*offset_days).days());
                let Ok(anchor_day) = shifted else {
                    return vec![];
                };
                match anchor_day.nth_weekday_of_month(*nth, *weekday) {
                    Ok(anchor) if anchor == anchor_day => vec![*at],
                    _ => vec![],
                }
            }
            Recurrence::Cron(c) => {
                if c.selects(date) {
                    c.times()
                } else {
                    vec![]
                }
            }
        }
    }
}

impl FromStr for Recurrence {
    type Err = ScheduleError;
    /// Forms: `daily 03:00`; `weekly saturday 02:00`; `monthly second tuesday 22:00`;
    /// `monthly second tuesday +2d 22:00`; `monthly last friday 20:00`; `cron 0 2 * * sat`.
    fn from_str(input: &str) -> Result<Self, ScheduleError> {
        let words: Vec<&str> = input.split_whitespace().collect();
        match words.first().map(|w| w.to_ascii_lowercase()).as_deref() {
            Some("daily") => match words[1..] {
                [at] => Ok(Recurrence::Daily {
                    at: time_of_day(input, at)?,
                }),
                _ => Err(invalid(input, "expected `daily HH:MM`")),
            },
            Some("weekly") => match words[1..] {
                [day, at] => Ok(Recurrence::Weekly {
                    weekday: weekday(day)
                        .ok_or_else(|| invalid(input, format!("unknown weekday {day:?}")))?,
                    at: time_of_day(input, at)?,
                }),
                _ => Err(invalid(input, "expected `weekly WEEKDAY HH:MM`")),
            },
            Some("monthly") => {
                let (nth, day, rest) = match words[1..] {
                    [nth, day, ref rest @ ..] => (nth, day, rest),
                    _ => return Err(invalid(input, "expected `monthly NTH WEEKDAY [+Nd] HH:MM`")),
                };
                let nth = match nth.to_ascii_lowercase().as_str() {
                    "first" | "1st" => 1,
                    "second" | "2nd" => 2,
                    "third" | "3rd" => 3,
                    "fourth" | "4th" => 4,
                    "last" => -1,
                    other => {
                        return Err(invalid(
                            input,
                            format!(
                                "unknown position {other:?}: first, second, third, fourth or last"
                            ),
                        ))
                    }
                };
                let weekday = weekday(day)
                    .ok_or_else(|| invalid(input, format!("unknown weekday {day:?}")))?;
                let (offset_days, at) = match rest {
                    [at] => (0, *at),
                    [offset, at] => {
                        let n = offset
                            .strip_prefix('+')
                            .and_then(|o| o.strip_suffix('d'))
                            .and_then(|o| o.parse::<i32>().ok())
                            .filter(|n| (0..=27).contains(n))
                            .ok_or_else(|| {
                                invalid(
                                    input,
                                    format!("offset {offset:?}: expected +Nd with N from 0 to 27"),
                                )
                            })?;
                        (n, *at)
                    }
                    _ => return Err(invalid(input, "expected `monthly NTH WEEKDAY [+Nd] HH:MM`")),
                };
                Ok(Recurrence::Monthly {
                    nth,
                    weekday,
                    offset_days,
                    at: time_of_day(input, at)?,
                })
            }
            Some("cron") => Ok(Recurrence::Cron(words[1..].join(" ").parse()?)),
            _ => Err(invalid(input, "start with daily, weekly, monthly or cron")),
        }
    }
}

/// A recurring maintenance window: when it opens, and for how long.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowSpec {
    pub recurrence: Recurrence,
    pub duration: SignedDuration,
}

/// One concrete window, as instants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Window {
    pub start: Timestamp,
    pub end: Timestamp,
}

impl Window {
    pub fn contains(&self, t: Timestamp) -> bool {
        self.start <= t && t < self.end
    }
}

pub fn zone(name: &str) -> Result<TimeZone, ScheduleError> {
    TimeZone::get(name).map_err(|_| ScheduleError::UnknownZone(name.to_owned()))
}

/// How far ahead to look: a monthly form always recurs within this, a cron expression such
/// as `0 2 29 2 *` within a leap cycle.
const SEARCH_DAYS: i64 = 366 * 8 + 2;

/// Windows in `tz` that are still open at `after` or open later, in order, at most `limit`.
pub fn upcoming_windows(
    spec: &WindowSpec,
    tz: &TimeZone,
    after: Timestamp,
    limit: usize,
) -> Vec<Window> {
    let mut out = Vec::new();
    // Start early enough to catch a window opened before `after` that is still open.
    let back = after.checked_sub(spec.duration).unwrap_or(after);
    let Ok(start_day) = back.to_zoned(tz.clone()).date().checked_sub(1.day()) else {
        return out;
    };
    let mut day = start_day;
    for _ in 0..SEARCH_DAYS {
        for at in spec.recurrence.starts_on(day) {
            // `to_zoned` resolves a gap forward and a fold to its first occurrence.
            let Ok(start) = day.to_datetime(at).to_zoned(tz.clone()) else {
                continue;
            };
            let start = start.timestamp();
            let Ok(end) = start.checked_add(spec.duration) else {
                continue;
            };
            if end > after {
                out.push(Window { start, end });
                if out.len() >= limit {
                    return out;
                }
            }
        }
        match day.tomorrow() {
            Ok(d) => day = d,
            Err(_) => break,
        }
    }
    out
}

/// The window open at `now`, or the next one.
pub fn current_or_next_window(spec: &WindowSpec, tz: &TimeZone, now: Timestamp) -> Option<Window> {
    upcoming_windows(spec, tz, now, 1).into_iter().next()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    fn spec(rec: &str, hours: i64) -> WindowSpec {
        WindowSpec {
            recurrence: rec.parse().expect("recurrence"),
            duration: SignedDuration::from_hours(hours),
        }
    }

    /// (recurrence, zone, after, expected window starts as UTC instants)
    fn check(rec: &str, zone_name: &str, after: &str, hours: i64, want: &[&str]) {
        let tz = zone(zone_name).expect("zone");
        let got: Vec<String> = upcoming_windows(&spec(rec, hours), &tz, ts(after), want.len())
            .iter()
            .map(|w| w.start.to_string())
            .collect();
        assert_eq!(got, want, "{rec} in {zone_name} after {after}");
    }

    #[test]
    fn monthly_forms() {
        // Patch Tuesday 2026: Jan 13, Feb 10, Mar 10. UTC zone for plain arithmetic.
        check(
            "monthly second tuesday 22:00",
            "UTC",
            "2026-01-01T00:00:00Z",
            2,
            &[
                "2026-01-13T22:00:00Z",
                "2026-02-10T22:00:00Z",
                "2026-03-10T22:00:00Z",
            ],
        );
        // + 3 days: Friday after Patch Tuesday; crossing a month end (Mar 31 2026 is a Tue).
        check(
            "monthly second tuesday +3d 20:00",
            "UTC",
            "2026-01-14T00:00:00Z",
            2,
            &["2026-01-16T20:00:00Z", "2026-02-13T20:00:00Z"],
        );
        check(
            "monthly last tuesday +2d 01:00",
            "UTC",
            "2026-03-01T00:00:00Z",
            1,
            &["2026-04-02T01:00:00Z", "2026-04-30T01:00:00Z"],
        );
        check(
            "monthly first monday 03:30",
            "UTC",
            "2026-06-01T05:00:00Z",
            1,
            &["2026-07-06T03:30:00Z"],
        );
        // A window still open is returned first.
        check(
            "weekly saturday 02:00",
            "UTC",
            "2026-11-28T03:00:00Z",
            4,
            &["2026-11-28T02:00:00Z", "2026-12-05T02:00:00Z"],
        );
        check(
            "daily 03:00",
            "UTC",
            "2026-11-25T12:00:00Z",
            1,
            &["2026-11-26T03:00:00Z"],
        );
        check(
            "cron 30 1 * * sat,sun",
            "UTC",
            "2026-11-25T00:00:00Z",
            1,
            &["2026-11-28T01:30:00Z", "2026-11-29T01:30:00Z"],
        );
        check(
            "cron 0 2 29 2 *",
            "UTC",
            "2026-01-01T00:00:00Z",
            1,
            &["2028-02-29T02:00:00Z"],
        );
        // Both day fields restricted: either matches (1st of month, or any Monday).
        check(
            "cron 0 0 1 * mon",
            "UTC",
            "2026-05-30T00:00:00Z",
            1,
            &["2026-06-01T00:00:00Z", "2026-06-08T00:00:00Z"],
        );
    }

    #[test]
    fn windows_follow_the_device_zone() {
        // Saturday 02:00 in Paris (UTC+1 in winter) and New York (UTC-5 in winter).
        check(
            "weekly saturday 02:00",
            "Europe/Paris",
            "2026-11-25T00:00:00Z",
            1,
            &["2026-11-28T01:00:00Z"],
        );
        check(
            "weekly saturday 02:00",
            "America/New_York",
            "2026-11-25T00:00:00Z",
            1,
            &["2026-11-28T07:00:00Z"],
        );
        check(
            "weekly saturday 02:00",
            "Asia/Kolkata",
            "2026-11-25T00:00:00Z",
            1,
            &["2026-11-27T20:30:00Z"],
        );
    }

    #[test]
    fn dst_neither_skips_nor_doubles_a_window() {
        // Spring forward: Paris 2026-03-29 02:00 → 03:00; New York 2026-03-08 02:00 → 03:00.
        // A 02:30 start does not exist: it opens at 03:30 local, once.
        check(
            "daily 02:30",
            "Europe/Paris",
            "2026-03-28T12:00:00Z",
            1,
            &["2026-03-29T01:30:00Z", "2026-03-30T00:30:00Z"],
        );
        check(
            "daily 02:30",
            "America/New_York",
            "2026-03-07T12:00:00Z",
            1,
            &["2026-03-08T07:30:00Z", "2026-03-09T06:30:00Z"],
        );
        // Fall back: Paris 2026-10-25 03:00 → 02:00; New York 2026-11-01 02:00 → 01:00.
        // A 02:30 (Paris) / 01:30 (New York) start happens twice: the window opens once, at
        // the first occurrence.
        check(
            "daily 02:30",
            "Europe/Paris",
            "2026-10-24T12:00:00Z",
            1,
            &["2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"],
        );
        check(
            "daily 01:30",
            "America/New_York",
            "2026-10-31T12:00:00Z",
            1,
            &["2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"],
        );
        // Lord Howe shifts by 30 minutes (2026-10-04 02:00 → 02:30).
        check(
            "daily 02:15",
            "Australia/Lord_Howe",
            "2026-10-03T00:00:00Z",
            1,
            &["2026-10-03T15:45:00Z"],
        );
    }

    #[test]
    fn every_day_of_a_dst_year_has_exactly_one_window() {
        for name in ["Europe/Paris", "America/New_York", "Australia/Sydney"] {
            let tz = zone(name).expect("zone");
            for at in ["00:30", "01:30", "02:30", "03:30"] {
                let windows = upcoming_windows(
                    &spec(&format!("daily {at}"), 1),
                    &tz,
                    ts("2026-01-01T12:00:00Z"),
                    365,
                );
                let days: std::collections::BTreeSet<_> = windows
                    .iter()
                    .map(|w| w.start.to_zoned(tz.clone()).date())
                    .collect();
                assert_eq!(windows.len(), 365, "{name} {at}");
                // One window per local date; windows never overlap.
                assert!(
                    days.len() >= 364,
                    "{name} {at}: {} distinct dates",
                    days.len()
                );
                assert!(
                    windows.windows(2).all(|w| w[0].end <= w[1].start),
                    "{name} {at}"
                );
            }
        }
    }

    #[test]
    fn bad_schedules_are_named() {
        for (input, want) in [
            ("monthly fifth tuesday 22:00", "unknown position"),
            ("monthly second tuesday +40d 22:00", "offset"),
            ("weekly funday 02:00", "unknown weekday"),
            ("daily 25:00", "no such time"),
            ("cron 0 2 * *", "five fields"),
            ("cron 61 2 * * *", "outside 0-59"),
            ("hourly", "start with"),
        ] {
            let err = input.parse::<Recurrence>().expect_err(input).to_string();
            assert!(err.contains(want), "{input}: {err}");
        }
        assert!(matches!(
            zone("Mars/Olympus"),
            Err(ScheduleError::UnknownZone(_))
        ));
    }
}
