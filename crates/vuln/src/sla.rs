//! SLA clocks: a remediation deadline per exposure from a per-tenant policy, counted from
//! the exposure's first sighting; breach state and time left, given `now`.
//!
//! The deadline is the EARLIEST of the clocks that apply:
//! - severity: `first_seen + days(rating)` — defaults critical 15, high 30, medium 90,
//!   low 180, unknown (not yet rated) 90 like medium, none/negligible: no deadline;
//! - known exploited (CISA KEV): CISA's `dueDate` (end of that day, UTC) when it is still
//!   ahead at `first_seen`, else `first_seen + 14 days` (a device found exposed after the
//!   federal deadline passed gets a fair clock rather than being born in breach).

use crate::feeds::KevEntry;
use crate::matching::Exposure;
use crate::model::Rating;
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

/// A tenant's SLA policy; `None` = no deadline for that rating.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SlaPolicy {
    pub kev_days: u32,
    /// Use CISA's due date for KEV entries when it is still ahead.
    pub honor_kev_due_date: bool,
    pub critical_days: Option<u32>,
    pub high_days: Option<u32>,
    pub medium_days: Option<u32>,
    pub low_days: Option<u32>,
    pub none_days: Option<u32>,
    pub unknown_days: Option<u32>,
}

impl Default for SlaPolicy {
    fn default() -> Self {
        SlaPolicy {
            kev_days: 14,
            honor_kev_due_date: true,
            critical_days: Some(15),
            high_days: Some(30),
            medium_days: Some(90),
            low_days: Some(180),
            none_days: None,
            unknown_days: Some(90),
        }
    }
}

impl SlaPolicy {
    pub fn days_for(&self, r: Rating) -> Option<u32> {
        match r {
            Rating::Critical => self.critical_days,
            Rating::High => self.high_days,
            Rating::Medium => self.medium_days,
            Rating::Low => self.low_days,
            Rating::None => self.none_days,
            Rating::Unknown => self.unknown_days,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlaState {
    /// No clock applies (negligible severity under the default policy).
    NoDeadline,
    /// Open and within the deadline.
    OnTrack { remaining: Duration },
    /// Open past the deadline.
    Breached { overdue: Duration },
    /// Closed on or before the deadline (or closed with no deadline).
    Met,
    /// Closed after the deadline.
    ClosedLate { late_by: Duration },
}

impl SlaState {
    pub fn is_breached(&self) -> bool {
        matches!(
            self,
            SlaState::Breached { .. } | SlaState::ClosedLate { .. }
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlaClock {
    pub due: Option<OffsetDateTime>,
    /// Which clock set the deadline, for people: "CISA KEV due date 2022-04-27".
    pub basis: String,
    pub state: SlaState,
}

/// The SLA clock of one exposure.
pub fn sla_clock(
    policy: &SlaPolicy,
    rating: Rating,
    kev: Option<&KevEntry>,
    first_seen: OffsetDateTime,
    closed_at: Option<OffsetDateTime>,
    now: OffsetDateTime,
) -> SlaClock {
    let mut clocks: Vec<(OffsetDateTime, String)> = Vec::new();
    if let Some(days) = policy.days_for(rating) {
        clocks.push((
            first_seen + Duration::days(days.into()),
            format!("{rating} severity: {days} days from first seen"),
        ));
    }
    if let Some(k) = kev {
        let cisa = k
            .due_date
            .filter(|_| policy.honor_kev_due_date)
            .map(|d| (d.midnight().assume_utc() + Duration::days(1), d))
            .filter(|(end, _)| *end >= first_seen);
        match cisa {
            Some((end, d)) => clocks.push((end, format!("CISA KEV due date {d}"))),
            None => clocks.push((
                first_seen + Duration::days(policy.kev_days.into()),
                format!("known exploited: {} days from first seen", policy.kev_days),
            )),
        }
    }
    let Some((due, basis)) = clocks.into_iter().min_by_key(|(d, _)| *d) else {
        return SlaClock {
            due: None,
            basis: format!("no deadline for {rating} severity"),
            state: match closed_at {
                Some(_) => SlaState::Met,
                None => SlaState::NoDeadline,
            },
        };
    };
    let state = match closed_at {
        Some(c) if c <= due => SlaState::Met,
        Some(c) => SlaState::ClosedLate { late_by: c - due },
        None if now <= due => SlaState::OnTrack {
            remaining: due - now,
        },
        None => SlaState::Breached { overdue: now - due },
    };
    SlaClock {
        due: Some(due),
        basis,
        state,
    }
}

/// [`sla_clock`] for an exposure.
pub fn exposure_sla(
    policy: &SlaPolicy,
    e: &Exposure,
    first_seen: OffsetDateTime,
    closed_at: Option<OffsetDateTime>,
    now: OffsetDateTime,
) -> SlaClock {
    sla_clock(
        policy,
        e.severity.rating,
        e.kev.as_ref(),
        first_seen,
        closed_at,
        now,
    )
}
