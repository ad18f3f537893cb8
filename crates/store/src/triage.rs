//! Triage of current failures: who is on it (assignee) and what was decided (resolved, risk
//! accepted until a date), per (device, package). Part of the [`crate::Store`] interface (a
//! supertrait), kept apart for readability.
//!
//! The failures themselves are the attempts (`current_failures`); a triage row only annotates
//! them. What a row means at a given moment is [`Triage::effective_status`]: a resolved failure
//! reopens when a newer failed attempt arrives; an accepted risk holds until it expires.

use crate::{FailureFilter, Result};
use async_trait::async_trait;
use patchwarden_core::TriageStatus;

/// The triage state of one (device, package) failure.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Triage {
    pub tenant_id: String,
    pub device_id: String,
    pub package: String,
    /// A user login (or token name) working on it.
    pub assignee: Option<String>,
    pub assigned_by: Option<String>,
    pub assigned_at: Option<i64>,
    /// As last decided.
    pub status: TriageStatus,
    /// Why it was resolved or the risk accepted.
    pub reason: Option<String>,
    /// An accepted risk holds until then (unix ms).
    pub accepted_until: Option<i64>,
    /// The failed attempt the decision was about; a newer failed attempt reopens a resolved
    /// failure.
    pub failure_attempt_id: Option<i64>,
    /// Who decided the status, and when.
    pub decided_by: Option<String>,
    pub decided_at: Option<i64>,
}

impl Triage {
    /// The status in force for the failure whose latest failed attempt is `latest_attempt_id`,
    /// at `now`: `resolved` only while no newer failure came; `accepted_risk` only until it
    /// expires (newer failures of an accepted risk stay accepted); `open` otherwise.
    pub fn effective_status(&self, latest_attempt_id: i64, now: i64) -> TriageStatus {
        match self.status {
            TriageStatus::Resolved
                if self
                    .failure_attempt_id
                    .is_some_and(|id| id >= latest_attempt_id) =>
            {
                TriageStatus::Resolved
            }
            TriageStatus::AcceptedRisk if self.accepted_until.is_some_and(|u| now < u) => {
                TriageStatus::AcceptedRisk
            }
            _ => TriageStatus::Open,
        }
    }
}

/// A decision on a failure's status.
#[derive(Debug, Clone, PartialEq)]
pub struct TriageDecision {
    pub tenant_id: String,
    pub device_id: String,
    pub package: String,
    pub status: TriageStatus,
    pub reason: Option<String>,
    pub accepted_until: Option<i64>,
    pub failure_attempt_id: Option<i64>,
    pub by: String,
    pub at: i64,
}

/// The current streak of failures of one (device, package): failed attempts since its last
/// attempt that did not fail.
#[derive(Debug, Clone, PartialEq)]
pub struct FailureStreak {
    pub device_id: String,
    pub package: String,
    /// The first failed attempt of the streak.
    pub first_at: i64,
    /// How many failed attempts the streak holds.
    pub attempts: i64,
}

#[async_trait]
pub trait TriageStore: Send + Sync {
    /// The triage row of one (device, package), if any.
    async fn triage(&self, device_id: &str, package: &str) -> Result<Option<Triage>>;
    /// Triage rows of one tenant (`Some`) or of all (`None`).
    async fn list_triage(&self, tenant_id: Option<&str>) -> Result<Vec<Triage>>;
    /// Sets (or clears, `None`) the assignee; the status is left as it is.
    async fn assign_failure(
        &self,
        tenant_id: &str,
        device_id: &str,
        package: &str,
        assignee: Option<&str>,
        by: &str,
        at: i64,
    ) -> Result<Triage>;
    /// Records a status decision; the assignee is left as it is.
    async fn decide_failure(&self, d: &TriageDecision) -> Result<Triage>;
    /// The current failure streaks (pairs whose latest attempt failed) matching the filter
    /// (its `class` is ignored).
    async fn failure_streaks(&self, filter: &FailureFilter) -> Result<Vec<FailureStreak>>;
}
