//! History for the dashboard's charts and the compliance report: one snapshot per tenant and
//! UTC day ([`Snapshot`]), open-exposure figures computed in SQL (severity, KEV, SLA breaches)
//! and failed attempts in a period. Part of [`crate::Store`].

use crate::{Result, TenantScope};
use async_trait::async_trait;
use std::collections::BTreeMap;

/// The figures of one tenant on one UTC day.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub tenant_id: String,
    /// `YYYY-MM-DD` (UTC).
    pub day: String,
    pub taken_at: i64,
    pub devices: i64,
    pub fully_patched: i64,
    pub security_pending: i64,
    pub reboot_pending: i64,
    pub stale: i64,
    pub exposures_open: i64,
    pub critical: i64,
    pub high: i64,
    pub medium: i64,
    pub low: i64,
    /// Open exposures rated none or unknown.
    pub other: i64,
    pub kev_open: i64,
    pub sla_breaches: i64,
    /// Current failures by class.
    pub failures: BTreeMap<String, i64>,
}

/// SLA deadlines in days per rating (`None`: no deadline), as in `patchwarden_vuln::SlaPolicy`:
/// a KEV entry's deadline is the earlier of the rating's and CISA's due date (end of that
/// day, when it is not before first seen) or `kev_days` from first seen.
#[derive(Debug, Clone, PartialEq)]
pub struct SlaDays {
    pub critical: Option<i64>,
    pub high: Option<i64>,
    pub medium: Option<i64>,
    pub low: Option<i64>,
    pub none: Option<i64>,
    pub unknown: Option<i64>,
    pub kev: i64,
    pub honor_kev_due_date: bool,
}

/// Open exposures of one tenant at a time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExposureStats {
    pub tenant_id: String,
    pub open: i64,
    pub critical: i64,
    pub high: i64,
    pub medium: i64,
    pub low: i64,
    pub other: i64,
    pub kev: i64,
    /// Open past their SLA deadline.
    pub sla_breaches: i64,
    /// Devices with at least one breach.
    pub devices_breaching: i64,
}

#[async_trait]
pub trait HistoryStore: Send + Sync {
    /// Stores a snapshot unless the tenant already has one for that day; true when stored.
    async fn put_snapshot(&self, s: &Snapshot) -> Result<bool>;
    /// Tenants that have a snapshot for `day`.
    async fn snapshot_tenants(&self, day: &str) -> Result<Vec<String>>;
    /// Snapshots of the tenants in scope with `from <= day <= to`, by day then tenant.
    async fn snapshots(&self, scope: &TenantScope, from: &str, to: &str) -> Result<Vec<Snapshot>>;
    /// Open exposures per tenant in scope at `now` (tenants without any are absent).
    async fn exposure_stats(
        &self,
        scope: &TenantScope,
        now: i64,
        sla: &SlaDays,
    ) -> Result<Vec<ExposureStats>>;
    /// Failed attempts of a tenant with `from <= at < to`, counted by class, largest first.
    async fn failed_attempts_by_class(
        &self,
        tenant_id: &str,
        from: i64,
        to: i64,
    ) -> Result<Vec<(String, i64)>>;
}
