//! The compliance report of one tenant over a period (`GET /api/v1/reports/compliance`), and
//! the daily history snapshot. Definitions of every figure: `patchwarden_app::reports`.

use serde::{Deserialize, Serialize};

#[cfg(feature = "openapi")]
use utoipa::ToSchema;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Coverage {
    /// `now` (live figures) or the day of the snapshot used.
    pub as_of: String,
    pub devices: i64,
    pub fully_patched: i64,
    pub security_pending: i64,
    pub reboot_pending: i64,
    /// Fully patched / devices, in percent (one decimal); absent without devices.
    pub percent: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct SlaCompliance {
    /// Exposures whose deadline fell in the period.
    pub due: i64,
    /// Of those, closed on or before the deadline.
    pub met: i64,
    /// Of those, closed late or still open.
    pub missed: i64,
    pub percent: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Remediation {
    /// Exposures closed in the period.
    pub closed: i64,
    pub mean_hours: Option<f64>,
    pub mean_days: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct TrendPoint {
    pub day: String,
    pub devices: i64,
    pub coverage_percent: Option<f64>,
    pub open: i64,
    pub critical: i64,
    pub high: i64,
    pub medium: i64,
    pub low: i64,
    pub other: i64,
    pub kev: i64,
    pub sla_breaches: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ClassCount {
    pub class: String,
    pub count: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct DeviceOutOfCompliance {
    pub device: String,
    pub hostname: String,
    /// Open exposures past their deadline at the end of the period.
    pub breached: i64,
    /// The earliest missed deadline (`YYYY-MM-DD`).
    pub oldest_due: String,
    /// CVEs breached, highest priority first.
    pub cves: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ComplianceReport {
    pub tenant: String,
    pub from: String,
    pub to: String,
    pub generated_at: String,
    pub coverage: Option<Coverage>,
    pub sla: SlaCompliance,
    pub remediation: Remediation,
    pub exposure_trend: Vec<TrendPoint>,
    pub failures_by_class: Vec<ClassCount>,
    pub devices_out_of_compliance: Vec<DeviceOutOfCompliance>,
}

/// `GET /api/v1/reports/compliance` query.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
pub struct ReportQuery {
    /// Tenant name or id; optional for a token scoped to one tenant.
    #[serde(default)]
    pub tenant: Option<String>,
    /// First day (`YYYY-MM-DD`, UTC); default: 29 days before `to`.
    #[serde(default)]
    pub from: Option<String>,
    /// Last day, inclusive (`YYYY-MM-DD`, UTC); default: today.
    #[serde(default)]
    pub to: Option<String>,
    /// `json` (default), `csv`, `pdf` or `html`.
    #[serde(default)]
    pub format: Option<String>,
}

/// `POST /api/v1/history/snapshot`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct SnapshotTaken {
    /// The UTC day of the snapshot.
    pub day: String,
    /// Tenants whose snapshot was stored now (0 when today's were already there).
    pub stored: u64,
}
