//! Read models of the web dashboard: fleet figures and the device list, computed in SQL so
//! that they stay fast for tens of thousands of devices. Part of [`crate::Store`].

use crate::{Device, Result};
use async_trait::async_trait;
use patchwarden_core::{DeviceStatus, FailureClass};

/// Which tenants a query may see: `None` = every tenant (provider level).
pub type TenantScope = Option<Vec<String>>;

/// Device status rule shared with the API: `online` = seen within three check-in intervals
/// (+30 s), `stale` = within a day, `offline` = longer ago, `new` = never checked in.
pub const STALE_AFTER_MS: i64 = 24 * 3600 * 1000;

/// Fleet figures of one tenant.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FleetStats {
    pub tenant_id: String,
    pub devices: i64,
    /// No pending update at all.
    pub fully_patched: i64,
    pub security_pending: i64,
    pub reboot_pending: i64,
    pub online: i64,
    pub stale: i64,
    pub offline: i64,
    pub never_seen: i64,
}

/// Current failures of one tenant and class.
#[derive(Debug, Clone, PartialEq)]
pub struct FailureCount {
    pub tenant_id: String,
    pub class: FailureClass,
    pub count: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceSort {
    #[default]
    Hostname,
    LastSeen,
    PendingUpdates,
    SecurityUpdates,
}

/// Devices by what is pending on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchFilter {
    /// Security updates pending.
    Security,
    /// Any update pending.
    Updates,
    /// Nothing pending.
    Patched,
    /// A reboot is required.
    Reboot,
}

/// One page of the device list.
#[derive(Debug, Clone, Default)]
pub struct DevicePageQuery {
    pub scope: TenantScope,
    /// Only this tenant (already checked against `scope` by the caller; applied on top).
    pub tenant_id: Option<String>,
    pub status: Option<DeviceStatus>,
    pub patch: Option<PatchFilter>,
    /// Case-insensitive substring of the hostname.
    pub search: Option<String>,
    pub sort: DeviceSort,
    pub descending: bool,
    pub limit: i64,
    pub offset: i64,
    /// The time the status rule is evaluated at.
    pub now: i64,
}

/// When a device counts as stale, and when as offline (the server's configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusRule {
    /// Not seen for longer than this: stale (default: 3 check-in intervals + 30 s).
    pub stale_after_ms: Option<i64>,
    /// Not seen for longer than this: offline (default 24 h).
    pub offline_after_ms: i64,
}

impl Default for StatusRule {
    fn default() -> Self {
        StatusRule {
            stale_after_ms: None,
            offline_after_ms: 24 * 3600 * 1000,
        }
    }
}

impl StatusRule {
    /// The status of a device last seen at `last_seen`.
    pub fn status(
        &self,
        last_seen: Option<i64>,
        checkin_interval_secs: i64,
        now: i64,
    ) -> DeviceStatus {
        let Some(seen) = last_seen else {
            return DeviceStatus::New;
        };
        let age = now - seen;
        let stale_after = self
            .stale_after_ms
            .unwrap_or(3 * checkin_interval_secs * 1000 + 30_000);
        if age <= stale_after {
            DeviceStatus::Online
        } else if age <= self.offline_after_ms {
            DeviceStatus::Stale
        } else {
            DeviceStatus::Offline
        }
    }
}

#[async_trait]
pub trait DashboardStore: Send + Sync {
    /// The status rule the figures and the device list use (set once at start).
    fn set_status_rule(&self, rule: StatusRule);
    fn status_rule(&self) -> StatusRule;
    /// Figures per tenant in scope (tenants without devices are absent).
    async fn fleet_stats(&self, scope: &TenantScope, now: i64) -> Result<Vec<FleetStats>>;
    /// Current failures (latest attempt of a device and package failed), counted per tenant
    /// and class.
    async fn failure_counts(&self, scope: &TenantScope) -> Result<Vec<FailureCount>>;
    /// One page of devices and the number of devices matching the filters.
    async fn device_page(&self, q: &DevicePageQuery) -> Result<(Vec<Device>, i64)>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use DeviceStatus::*;

    #[test]
    fn status_rule() {
        let min = 60_000;
        let default = StatusRule::default();
        let custom = StatusRule {
            stale_after_ms: Some(10 * min),
            offline_after_ms: 2 * 3600 * 1000,
        };
        // (rule, last seen minutes ago, check-in interval s, status)
        let cases = [
            (default, None, 60, New),
            (default, Some(3), 60, Online),
            (default, Some(4), 60, Stale), // 3 × 60 s + 30 s
            (default, Some(23 * 60), 60, Stale),
            (default, Some(25 * 60), 60, Offline),
            (custom, Some(9), 60, Online),
            (custom, Some(11), 60, Stale),
            (custom, Some(121), 60, Offline),
            (custom, Some(9), 3600, Online),
        ];
        let now = 1_000_000_000_000;
        for (rule, ago, interval, want) in cases {
            let seen = ago.map(|m: i64| now - m * min);
            assert_eq!(rule.status(seen, interval, now), want, "{rule:?} {ago:?}");
        }
    }
}
