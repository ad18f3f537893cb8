//! The failure taxonomy (PRODUCT.md): stable names used by the API, CLI, UI and reports.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Why a targeted package did not end up `verified`. The serialised names are a stable interface.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureClass {
    DeviceOffline,
    WindowMissed,
    LockHeld,
    InterruptedState,
    RepoUnreachable,
    RepoInvalid,
    PackageNotFound,
    DependencyConflict,
    HeldBack,
    DiskFull,
    InstallScriptFailed,
    Timeout,
    VerificationFailed,
    RebootPending,
    /// A reboot did not clear the device's reboot requirement for the package: flagged, and
    /// the device is not rebooted again for it (the reboot loop guard).
    RebootLoop,
    AgentError,
    /// Not recognised: the evidence is kept so that a rule can be added. Also what an older
    /// reader maps a class it does not know to.
    #[serde(other)]
    Unknown,
}

impl FailureClass {
    pub const ALL: [FailureClass; 17] = [
        Self::DeviceOffline,
        Self::WindowMissed,
        Self::LockHeld,
        Self::InterruptedState,
        Self::RepoUnreachable,
        Self::RepoInvalid,
        Self::PackageNotFound,
        Self::DependencyConflict,
        Self::HeldBack,
        Self::DiskFull,
        Self::InstallScriptFailed,
        Self::Timeout,
        Self::VerificationFailed,
        Self::RebootPending,
        Self::RebootLoop,
        Self::AgentError,
        Self::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::DeviceOffline => "device_offline",
            Self::WindowMissed => "window_missed",
            Self::LockHeld => "lock_held",
            Self::InterruptedState => "interrupted_state",
            Self::RepoUnreachable => "repo_unreachable",
            Self::RepoInvalid => "repo_invalid",
            Self::PackageNotFound => "package_not_found",
            Self::DependencyConflict => "dependency_conflict",
            Self::HeldBack => "held_back",
            Self::DiskFull => "disk_full",
            Self::InstallScriptFailed => "install_script_failed",
            Self::Timeout => "timeout",
            Self::VerificationFailed => "verification_failed",
            Self::RebootPending => "reboot_pending",
            Self::RebootLoop => "reboot_loop",
            Self::AgentError => "agent_error",
            Self::Unknown => "unknown",
        }
    }
}

impl fmt::Display for FailureClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown failure class {0:?}; expected one of the taxonomy names, e.g. lock_held")]
pub struct UnknownClass(pub String);

impl FromStr for FailureClass {
    type Err = UnknownClass;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| UnknownClass(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_serde_and_from_str() {
        for class in FailureClass::ALL {
            let json = serde_json::to_string(&class).expect("serialise");
            assert_eq!(json, format!("\"{}\"", class.as_str()));
            assert_eq!(class.as_str().parse::<FailureClass>().ok(), Some(class));
        }
    }

    #[test]
    fn a_class_from_a_newer_peer_reads_as_unknown() {
        let c: FailureClass = serde_json::from_str("\"cosmic_ray\"").expect("parse");
        assert_eq!(c, FailureClass::Unknown);
        assert!("cosmic_ray".parse::<FailureClass>().is_err());
    }
}
