//! Policy arithmetic: which cycle a schedule is in and when its deployment is due, package
//! exclusion patterns, retries with exponential backoff, approval by severity. Pure.

use crate::schedule::{current_or_next_window, Window, WindowSpec};
use crate::FailureClass;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

/// A package name pattern (`*`, `?`, `[abc]`) as used in exclusions.
#[derive(Debug, Clone)]
pub struct NamePattern(glob::Pattern);

impl NamePattern {
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.trim().is_empty() {
            return Err("an exclusion pattern is empty".into());
        }
        glob::Pattern::new(s.trim())
            .map(NamePattern)
            .map_err(|e| format!("invalid exclusion pattern {s:?}: {e}"))
    }

    pub fn matches(&self, name: &str) -> bool {
        self.0.matches(name)
    }
}

/// True when any pattern matches the package name.
pub fn excluded(patterns: &[NamePattern], name: &str) -> bool {
    patterns.iter().any(|p| p.matches(name))
}

/// One cycle of a scheduled policy: its key and the earliest window (across the zones of the
/// devices it targets).
#[derive(Debug, Clone, PartialEq)]
pub struct Cycle {
    /// The window's local date where it opens first (`2026-12-08`): the same in every zone for
    /// the monthly and weekly forms, so one deployment serves the whole cycle.
    pub key: String,
    pub window: Window,
}

/// The cycle whose window is open now or opens next in any of `zones`, and whether its
/// deployment is due: `lead` before its earliest window opens (pre-flight time).
pub fn current_cycle(
    spec: &WindowSpec,
    zones: &[TimeZone],
    now: Timestamp,
    lead: SignedDuration,
) -> Option<(Cycle, bool)> {
    let utc = [TimeZone::UTC];
    let zones = if zones.is_empty() { &utc[..] } else { zones };
    let (tz, window) = zones
        .iter()
        .filter_map(|tz| current_or_next_window(spec, tz, now).map(|w| (tz, w)))
        .min_by_key(|(_, w)| w.start)?;
    let key = window.start.to_zoned(tz.clone()).date().to_string();
    let due = window
        .start
        .checked_sub(lead)
        .map(|t| now >= t)
        .unwrap_or(true);
    Some((Cycle { key, window }, due))
}

/// Retries: how many attempts in all, the first delay, and which classes are worth one.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub backoff: SignedDuration,
    pub classes: Vec<FailureClass>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            backoff: SignedDuration::from_secs(60),
            classes: vec![
                FailureClass::LockHeld,
                FailureClass::RepoUnreachable,
                FailureClass::Timeout,
            ],
        }
    }
}

/// The longest wait between two attempts.
pub const MAX_BACKOFF: SignedDuration = SignedDuration::from_hours(6);

/// After attempt `attempt` (1 = the first) failed with these classes: the delay before the
/// next attempt, or `None` when no retry is due (attempts used up, or no failure worth one).
pub fn retry_after(
    policy: &RetryPolicy,
    attempt: u32,
    failed: &[FailureClass],
) -> Option<SignedDuration> {
    if attempt >= policy.max_attempts || !failed.iter().any(|c| policy.classes.contains(c)) {
        return None;
    }
    let factor = 1i64 << attempt.saturating_sub(1).min(20);
    Some(
        policy
            .backoff
            .checked_mul(factor as i32)
            .unwrap_or(MAX_BACKOFF)
            .min(MAX_BACKOFF),
    )
}

/// Severity words in increasing order (as the vulnerability data rates them).
pub const SEVERITIES: [&str; 6] = ["unknown", "none", "low", "medium", "high", "critical"];

/// The rank of a severity word (`None` when it is not one).
pub fn severity_rank(word: &str) -> Option<usize> {
    SEVERITIES
        .iter()
        .position(|s| s.eq_ignore_ascii_case(word.trim()))
}

/// True when `rating` is at or above `min`.
pub fn at_least(rating: &str, min: &str) -> bool {
    match (severity_rank(rating), severity_rank(min)) {
        (Some(r), Some(m)) => r >= m,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::zone;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    fn spec(rec: &str, hours: i64) -> WindowSpec {
        WindowSpec {
            recurrence: rec.parse().expect("recurrence"),
            duration: SignedDuration::from_hours(hours),
        }
    }

    #[test]
    fn exclusion_patterns() {
        let pats: Vec<NamePattern> = ["linux-image-*", "postgresql-1?", "docker-ce"]
            .iter()
            .map(|p| NamePattern::parse(p).expect("pattern"))
            .collect();
        for (name, want) in [
            ("linux-image-6.1.0-28-amd64", true),
            ("linux-headers-6.1.0-28", false),
            ("postgresql-15", true),
            ("postgresql-9", false),
            ("docker-ce", true),
            ("docker-ce-cli", false),
            ("curl", false),
        ] {
            assert_eq!(excluded(&pats, name), want, "{name}");
        }
        assert!(NamePattern::parse("").is_err());
        assert!(NamePattern::parse("[abc").is_err());
    }

    #[test]
    fn cycles_of_the_monthly_form() {
        // Patch Tuesday + 2 days, 22:00 local: December 2026's second Tuesday is the 8th.
        let s = spec("monthly second tuesday +2d 22:00", 4);
        let zones = [
            zone("Europe/Paris").expect("present"),
            zone("America/New_York").expect("present"),
        ];
        let day = SignedDuration::from_hours(24);
        // (now, key, due with a 24 h lead)
        let cases = [
            ("2026-12-01T00:00:00Z", "2026-12-10", false),
            // Paris opens first: 2026-12-10T21:00Z; due from 2026-12-09T21:00Z.
            ("2026-12-09T20:59:59Z", "2026-12-10", false),
            ("2026-12-09T21:00:00Z", "2026-12-10", true),
            // Inside Paris's window, before New York's: still that cycle.
            ("2026-12-10T22:00:00Z", "2026-12-10", true),
            // After Paris's window, New York's is open (03:00Z to 07:00Z on the 11th).
            ("2026-12-11T04:00:00Z", "2026-12-10", true),
            // After both: January's cycle (second Tuesday 2027-01-12 + 2 = the 14th).
            ("2026-12-11T08:00:00Z", "2027-01-14", false),
        ];
        for (now, key, due) in cases {
            let (c, d) = current_cycle(&s, &zones, ts(now), day).expect("a cycle");
            assert_eq!((c.key.as_str(), d), (key, due), "at {now}");
        }
    }

    #[test]
    fn cycles_across_dst() {
        // Every Saturday 02:00: on 2026-03-28/29 Europe/Paris springs forward (Sunday), and on
        // 2026-10-25 falls back (Sunday) — Saturday windows keep one occurrence per week.
        let s = spec("weekly saturday 02:00", 2);
        let zones = [zone("Europe/Paris").expect("present")];
        let keys: Vec<String> = [
            "2026-03-27T12:00:00Z",
            "2026-03-29T12:00:00Z",
            "2026-10-23T12:00:00Z",
            "2026-10-25T12:00:00Z",
        ]
        .iter()
        .map(|t| {
            current_cycle(&s, &zones, ts(t), SignedDuration::ZERO)
                .expect("present")
                .0
                .key
        })
        .collect();
        assert_eq!(
            keys,
            ["2026-03-28", "2026-04-04", "2026-10-24", "2026-10-31"]
        );
    }

    #[test]
    fn retries_back_off_exponentially() {
        let p = RetryPolicy {
            max_attempts: 4,
            backoff: SignedDuration::from_secs(60),
            classes: vec![FailureClass::LockHeld, FailureClass::RepoUnreachable],
        };
        use FailureClass::*;
        let cases: [(u32, &[FailureClass], Option<i64>); 7] = [
            (1, &[LockHeld], Some(60)),
            (2, &[RepoUnreachable], Some(120)),
            (3, &[LockHeld], Some(240)),
            (4, &[LockHeld], None), // used up
            (1, &[DependencyConflict], None),
            (1, &[DependencyConflict, LockHeld], Some(60)),
            (1, &[], None),
        ];
        for (attempt, failed, want) in cases {
            assert_eq!(
                retry_after(&p, attempt, failed).map(|d| d.as_secs()),
                want,
                "attempt {attempt} {failed:?}"
            );
        }
        let long = RetryPolicy {
            max_attempts: 40,
            backoff: SignedDuration::from_hours(1),
            classes: vec![LockHeld],
        };
        assert_eq!(retry_after(&long, 30, &[LockHeld]), Some(MAX_BACKOFF));
    }

    #[test]
    fn severities() {
        assert!(at_least("critical", "high"));
        assert!(at_least("HIGH", "high"));
        assert!(!at_least("medium", "high"));
        assert!(!at_least("bogus", "low"));
        assert_eq!(severity_rank("nope"), None);
    }
}
