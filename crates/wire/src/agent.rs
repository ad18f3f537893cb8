//! Agent ↔ server messages. Every agent call after enrollment carries the device credential as
//! `Authorization: Bearer <device secret>`; the server derives the device from it, never from
//! the request body, so a device can only ever read and write its own work.

use patchwarden_core::{FailureClass, PackageState};
use serde::{Deserialize, Serialize};

#[cfg(feature = "openapi")]
use utoipa::ToSchema;

/// `POST /api/v1/agent/enroll`: exchanges a one-time enrollment token for a device identity.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct EnrollRequest {
    pub token: String,
    pub hostname: String,
    /// /etc/machine-id; cloned images share it, so it is informative, not an identity.
    #[serde(default)]
    pub machine_id: String,
    pub agent_version: String,
    pub protocol_version: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct EnrollResponse {
    pub device_id: String,
    /// The device's own credential. Shown once; the server keeps only its hash.
    pub device_secret: String,
    pub tenant: String,
    pub checkin_interval_secs: u64,
    /// SHA-256 of the server's TLS certificate (DER, hex) to pin, when the server serves TLS.
    #[serde(default)]
    pub server_cert_sha256: Option<String>,
    /// Public key (base64) that work items are signed with, when the server signs work.
    #[serde(default)]
    pub work_signing_key: Option<String>,
}

/// `POST /api/v1/agent/checkin`: a heartbeat, with the whole inventory only when it changed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct CheckinRequest {
    pub agent_version: String,
    pub protocol_version: u32,
    /// SHA-256 (hex) of the canonical JSON of the current inventory.
    pub inventory_hash: String,
    /// Present when the hash differs from what the server last acknowledged, or on request.
    #[serde(default)]
    pub inventory: Option<Inventory>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct CheckinResponse {
    /// The server does not hold the inventory with this hash: send it whole next time.
    pub inventory_wanted: bool,
    pub checkin_interval_secs: u64,
    /// Work is queued for this device.
    pub work_pending: bool,
}

/// What a device reports about itself.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Inventory {
    pub hostname: String,
    pub os: OsInfo,
    pub kernel: String,
    pub boot_id: String,
    /// `apt` or `dnf`.
    pub package_manager: String,
    pub packages: Vec<InstalledPackage>,
    pub upgradable: Vec<UpgradablePackage>,
    pub held: Vec<String>,
    pub reboot_required: bool,
    #[serde(default)]
    pub reboot_required_packages: Vec<String>,
    pub health: PackageManagerHealth,
    pub disk: DiskSpace,
    /// IANA zone name when known (e.g. `Europe/Paris`).
    #[serde(default)]
    pub timezone: Option<String>,
    /// Problems met while collecting (a command that failed), so partial data is explained.
    #[serde(default)]
    pub collection_errors: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct OsInfo {
    /// os-release ID, e.g. `debian`, `ubuntu`.
    pub id: String,
    /// os-release VERSION_ID, e.g. `12`.
    pub version: String,
    /// os-release VERSION_CODENAME, e.g. `bookworm`.
    pub codename: String,
    pub pretty_name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct InstalledPackage {
    pub name: String,
    pub source: String,
    pub version: String,
    pub source_version: String,
    pub arch: String,
    /// dpkg's three-letter status abbreviation (e.g. `ii`, `iF`, `hi`), trimmed.
    pub status: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct UpgradablePackage {
    pub name: String,
    pub installed_version: String,
    pub candidate_version: String,
    pub arch: String,
    /// The candidate comes from a security origin (e.g. `Debian-Security`, `*-security`).
    pub security: bool,
    /// Origins as the package manager names them.
    #[serde(default)]
    pub origins: Vec<String>,
    /// Held by local policy (`apt-mark hold`).
    #[serde(default)]
    pub held: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct PackageManagerHealth {
    /// dpkg was interrupted (`dpkg --configure -a` needed).
    pub interrupted: bool,
    /// Packages not in a clean installed state (half-configured, half-installed, unpacked...).
    pub broken_packages: Vec<String>,
    /// Lines that show the problem.
    #[serde(default)]
    pub evidence: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct DiskSpace {
    pub root_free_bytes: u64,
    pub cache_free_bytes: u64,
}

/// `GET /api/v1/agent/work?wait=SECONDS`: the device's queued work. Held open up to `wait`
/// seconds (at most 60) until work exists: agents pick up new work without polling fast.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct WorkResponse {
    pub items: Vec<WorkEnvelope>,
}

/// One work item. `payload` is the JSON text of an [`Operation`], carried as a string so that
/// a signature can cover its exact bytes; `signature` (base64, over `payload`) and `key_id`
/// are set when the server signs work.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct WorkEnvelope {
    pub job_id: String,
    pub payload: String,
    #[serde(default)]
    pub signature: Option<String>,
    #[serde(default)]
    pub key_id: Option<String>,
}

fn yes() -> bool {
    true
}

pub use patchwarden_core::RebootMode;

/// The typed operations an agent runs. There is no arbitrary shell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Operation {
    /// Upgrade these installed packages to these versions (or to the candidate when `version`
    /// is absent). Never installs a package that is not installed; never removes one.
    Install {
        deployment_id: String,
        packages: Vec<PackageTarget>,
        /// Time budget for the whole install.
        timeout_secs: u64,
        /// No install may start after this instant (RFC 3339): the end of the device's
        /// maintenance window. The agent reports `window_missed` instead.
        #[serde(default)]
        not_after: Option<String>,
        /// Whether the agent reboots the device after the install (the server has already
        /// applied the reboot loop guard when it sends anything but `never`).
        #[serde(default)]
        reboot: RebootMode,
        /// Respect package holds (`apt-mark hold`, dnf versionlock); `false` overrides them.
        #[serde(default = "yes")]
        respect_holds: bool,
    },
    /// Predict what `Install` of these packages would do, changing nothing on the device
    /// (simulation, repository and signature check into a temporary lists directory, free
    /// space, holds, package-manager health). The answer is a normal [`JobResult`] whose
    /// package states are predictions: `verified` means "would succeed".
    Preflight {
        #[serde(default)]
        deployment_id: String,
        #[serde(default)]
        packages: Vec<PackageTarget>,
        /// Predict with holds respected (default) or overridden, as the install will run.
        #[serde(default = "yes")]
        respect_holds: bool,
    },
    /// An operation this agent does not know (sent by a newer server).
    #[serde(other)]
    Unsupported,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct PackageTarget {
    pub name: String,
    #[serde(default)]
    pub version: Option<String>,
}

/// `POST /api/v1/agent/jobs/{job_id}/start`: the agent took the job (idempotent).
/// `POST /api/v1/agent/jobs/{job_id}/result`: the outcome (idempotent: the first result
/// stored wins and a re-sent one is acknowledged without being stored twice).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct JobResult {
    pub started_at: String,
    pub finished_at: String,
    /// The commands run, in order, as argument lists joined by spaces.
    pub commands: Vec<String>,
    /// Exit code of the install command; absent when it did not run or was killed.
    #[serde(default)]
    pub exit_code: Option<i32>,
    pub duration_ms: u64,
    /// Combined output, bounded to [`crate::MAX_OUTPUT_BYTES`].
    pub output: String,
    pub packages: Vec<PackageResult>,
    /// Set when the agent could not run the job at all.
    #[serde(default)]
    pub error: Option<String>,
    /// The boot id when the job finished: a `pending_reboot` package becomes `verified` once
    /// the device reports another boot id (and, for a kernel, runs the installed one).
    #[serde(default)]
    pub boot_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct PackageResult {
    pub package: String,
    pub state: PackageState,
    #[serde(default)]
    pub class: Option<FailureClass>,
    /// Installed version before the run (absent: not installed).
    #[serde(default)]
    pub from_version: Option<String>,
    /// The version the job intended to install.
    #[serde(default)]
    pub to_version: Option<String>,
    /// Installed version after the run, read from the package database.
    #[serde(default)]
    pub installed_version: Option<String>,
    /// The lines that decided `state` and `class` (bounded).
    #[serde(default)]
    pub evidence: Vec<String>,
}

/// The answer to `POST /api/v1/agent/jobs/{id}/result`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ResultAck {
    /// False when this was a re-delivery of a result already stored.
    pub stored: bool,
}
