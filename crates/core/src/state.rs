//! The explicit end state of one targeted package on one device.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PackageState {
    /// Not reported yet (the job is queued or running).
    Pending,
    /// Installed at the intended version, confirmed from the package database.
    Verified,
    /// Installed, effective after a reboot.
    PendingReboot,
    /// Not installed at the intended version; the class says why.
    Failed,
    /// Not installed on the device, or already at or above the target.
    NotApplicable,
    /// Deliberately not touched (held, excluded, report-only agent).
    Skipped,
    /// The device did not check in while the work was due.
    DeviceOffline,
}

impl PackageState {
    pub const ALL: [PackageState; 7] = [
        Self::Pending,
        Self::Verified,
        Self::PendingReboot,
        Self::Failed,
        Self::NotApplicable,
        Self::Skipped,
        Self::DeviceOffline,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Verified => "verified",
            Self::PendingReboot => "pending_reboot",
            Self::Failed => "failed",
            Self::NotApplicable => "not_applicable",
            Self::Skipped => "skipped",
            Self::DeviceOffline => "device_offline",
        }
    }

    /// Whether this is an outcome (as opposed to "still waiting").
    pub fn is_final(self) -> bool {
        self != Self::Pending
    }
}

impl fmt::Display for PackageState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown package state {0:?}")]
pub struct UnknownState(pub String);

impl FromStr for PackageState {
    type Err = UnknownState;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| UnknownState(s.to_owned()))
    }
}
