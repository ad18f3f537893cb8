//! Operator API types (CLI, scripts, later the web UI). Authenticated with an operator token.

use crate::agent::PackageTarget;
use patchwarden_core::{
    DeploymentStatus, DeviceStatus, FailureClass, JobPhase, PackageState, RingState,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[cfg(feature = "openapi")]
use utoipa::ToSchema;

/// `POST /api/v1/enroll-tokens`
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct CreateEnrollTokenRequest {
    /// Tenant name; `default` when absent. Created on first use.
    #[serde(default)]
    pub tenant: Option<String>,
    /// Labels given to every device enrolled with this token.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Lifetime in seconds (default 24 h).
    #[serde(default)]
    pub ttl_secs: Option<u64>,
    /// How many devices may enroll with it (default: unlimited until it expires).
    #[serde(default)]
    pub max_uses: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct EnrollTokenCreated {
    pub id: String,
    /// The token itself: shown once, stored only as a hash.
    pub token: String,
    pub tenant: String,
    pub expires_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct EnrollTokenInfo {
    pub id: String,
    pub tenant: String,
    pub labels: BTreeMap<String, String>,
    pub created_at: String,
    pub expires_at: String,
    #[serde(default)]
    pub revoked_at: Option<String>,
    pub uses: u32,
    #[serde(default)]
    pub max_uses: Option<u32>,
}

/// One row of `GET /api/v1/devices`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct DeviceSummary {
    pub id: String,
    pub tenant: String,
    pub hostname: String,
    pub labels: BTreeMap<String, String>,
    pub os: String,
    pub kernel: String,
    pub enrolled_at: String,
    #[serde(default)]
    pub last_seen: Option<String>,
    pub pending_updates: u32,
    pub security_updates: u32,
    pub reboot_required: bool,
    /// `online`, `stale` (missed a few check-ins) or `offline` (missed many), or `new`.
    pub status: DeviceStatus,
    pub agent_version: String,
}

/// `GET /api/v1/devices/{id}`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct DeviceDetail {
    pub summary: DeviceSummary,
    #[serde(default)]
    pub inventory: Option<crate::agent::Inventory>,
    /// The device's latest attempts (at most 200), newest first.
    #[serde(default)]
    pub history: Vec<AttemptView>,
    /// Its current failures.
    #[serde(default)]
    pub failures: Vec<FailureRow>,
}

/// Which devices a deployment targets. Exactly one of the three forms.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct TargetSpec {
    #[serde(default)]
    pub devices: Vec<String>,
    /// `key=value` labels; a device must carry all of them.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub all: bool,
}

/// What a deployment installs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Selection {
    /// Every pending update that comes from a security origin, at its candidate version.
    Security,
    /// Every pending update, at its candidate version.
    AllUpdates,
    /// Named packages, at a version or at the candidate.
    Packages { packages: Vec<PackageTarget> },
    /// On each device, the updates that fix its open vulnerabilities at or above a severity
    /// (and/or known exploited, or these CVEs), at their candidate versions.
    Vulnerabilities {
        /// `low`, `medium`, `high` or `critical`.
        #[serde(default)]
        min_severity: Option<String>,
        /// Also every vulnerability listed as known exploited (CISA KEV).
        #[serde(default)]
        kev: bool,
        /// Only these CVEs (empty: any that meets the thresholds).
        #[serde(default)]
        cves: Vec<String>,
    },
}

/// `POST /api/v1/deployments`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct CreateDeploymentRequest {
    /// Tenant whose devices are targeted; `default` when absent.
    #[serde(default)]
    pub tenant: Option<String>,
    pub target: TargetSpec,
    pub selection: Selection,
    /// Time budget for each device's install (default 1800 s).
    #[serde(default)]
    pub timeout_secs: Option<u64>,
    /// Rings, in order (default: one ring with every device).
    #[serde(default)]
    pub rings: Vec<RingRequest>,
    /// When a ring is done, what the next one waits for (default with rings: 95 % success,
    /// at least one success, no soak).
    #[serde(default)]
    pub gate: Option<GateRequest>,
    /// Halt by itself when this share (0.0 to 1.0) of finished devices failed for reasons
    /// that implicate the patch (default: no automatic halt).
    #[serde(default)]
    pub halt_failure_rate: Option<f64>,
    /// ...once at least this many devices have finished (default 1).
    #[serde(default)]
    pub halt_min_finished: Option<u32>,
    /// At most this many devices at once within a ring: `5` or `10%` (default: no limit).
    #[serde(default)]
    pub concurrency: Option<String>,
    /// Nothing installs until an approver approves.
    #[serde(default)]
    pub require_approval: bool,
    /// Install only inside this recurring maintenance window, in each device's own time zone:
    /// `daily 02:00`, `weekly saturday 02:00`, `monthly second tuesday +2d 22:00`, `cron M H D M W`.
    #[serde(default)]
    pub window: Option<String>,
    /// Length of the window (default 4 h).
    #[serde(default)]
    pub window_duration_secs: Option<u64>,
    /// Package name patterns (`*` and `?` globs) never installed by this deployment.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Respect package holds (default true); `false` upgrades held packages too.
    #[serde(default)]
    pub respect_holds: Option<bool>,
    /// Expedited: does not wait for a maintenance window (rings and approval still apply).
    #[serde(default)]
    pub expedite: bool,
    /// Reboot policy (default: never reboot).
    #[serde(default)]
    pub reboot: Option<RebootRequest>,
    /// Retries with exponential backoff for transient failure classes (default: none).
    #[serde(default)]
    pub retry: Option<RetryRequest>,
    /// A device that missed its window: `next_window` (default) or `immediately` at its next check-in.
    #[serde(default)]
    pub offline: Option<String>,
    /// Pre-flight before the window opens (and what to do with devices predicted to fail).
    #[serde(default)]
    pub preflight: Option<PreflightPolicy>,
    /// The policy that created this deployment, if any (set by the server's scheduler).
    #[serde(default)]
    pub policy: Option<String>,
    /// Spread device start times across the window by a hash of the device id (so a window
    /// does not hammer the mirror); default false for one-off deployments.
    #[serde(default)]
    pub spread: bool,
}

impl CreateDeploymentRequest {
    /// A deployment of `selection` to `target` with every option at its default.
    pub fn new(tenant: Option<String>, target: TargetSpec, selection: Selection) -> Self {
        Self {
            tenant,
            target,
            selection,
            timeout_secs: None,
            rings: vec![],
            gate: None,
            halt_failure_rate: None,
            halt_min_finished: None,
            concurrency: None,
            require_approval: false,
            window: None,
            window_duration_secs: None,
            exclude: vec![],
            respect_holds: None,
            expedite: false,
            reboot: None,
            retry: None,
            offline: None,
            preflight: None,
            policy: None,
            spread: false,
        }
    }
}

/// Reboots after installs, with a loop guard.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct RebootRequest {
    pub mode: crate::agent::RebootMode,
    /// Loop guard: at most this many reboots of one device in 24 hours (default 2).
    #[serde(default)]
    pub max_per_day: Option<u32>,
    /// How long a rebooted device has to come back before it is flagged (default 900 s).
    #[serde(default)]
    pub come_back_secs: Option<u64>,
}

/// Retries of failed installs, with exponential backoff.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct RetryRequest {
    /// Attempts in all, the first included (default 3).
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// Delay before the first retry; doubled for each next one (default 60 s).
    #[serde(default)]
    pub backoff_secs: Option<u64>,
    /// Failure classes worth a retry (default `lock_held`, `repo_unreachable`, `timeout`).
    #[serde(default)]
    pub classes: Vec<String>,
}

/// Pre-flight ahead of a deployment's window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct PreflightPolicy {
    /// Run the pre-flight this long before each device's window opens (default 24 h).
    #[serde(default)]
    pub lead_secs: Option<u64>,
    /// Leave out devices whose pre-flight predicts a failure (they are `skipped` with the
    /// prediction as evidence).
    #[serde(default)]
    pub exclude_failing: bool,
}

/// A ring: named devices, a percentage of the remaining ones, or the rest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct RingRequest {
    pub name: String,
    #[serde(default)]
    pub devices: Vec<String>,
    #[serde(default)]
    pub percent: Option<u8>,
    /// Every device not taken by an earlier ring.
    #[serde(default)]
    pub rest: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct GateRequest {
    pub min_success_rate: f64,
    pub min_successes: u32,
    #[serde(default)]
    pub soak_secs: u64,
}

/// `POST /api/v1/deployments/{id}/{approve|reject|halt|resume|cancel}`
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct DeploymentAction {
    #[serde(default)]
    pub reason: Option<String>,
}

/// Progress of one ring.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct RingView {
    pub name: String,
    pub devices: u32,
    pub released: u32,
    pub done: u32,
    pub succeeded: u32,
    pub failed_patch: u32,
    pub failed_other: u32,
    /// `waiting`, `running`, `done`.
    pub state: RingState,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct DeploymentCreated {
    pub id: String,
    /// Devices that received work.
    pub devices: u32,
    /// Devices targeted that had nothing to install.
    pub devices_without_work: u32,
}

/// Counts of package outcomes, by state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct OutcomeCounts {
    pub pending: u32,
    pub verified: u32,
    pub pending_reboot: u32,
    pub failed: u32,
    pub not_applicable: u32,
    pub skipped: u32,
    pub device_offline: u32,
}

impl OutcomeCounts {
    pub fn add(&mut self, state: PackageState) {
        match state {
            PackageState::Pending => self.pending += 1,
            PackageState::Verified => self.verified += 1,
            PackageState::PendingReboot => self.pending_reboot += 1,
            PackageState::Failed => self.failed += 1,
            PackageState::NotApplicable => self.not_applicable += 1,
            PackageState::Skipped => self.skipped += 1,
            PackageState::DeviceOffline => self.device_offline += 1,
        }
    }
    pub fn total(&self) -> u32 {
        self.pending
            + self.verified
            + self.pending_reboot
            + self.failed
            + self.not_applicable
            + self.skipped
            + self.device_offline
    }
}

/// `GET /api/v1/deployments/{id}`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct DeploymentView {
    pub id: String,
    pub tenant: String,
    pub created_at: String,
    pub selection: Selection,
    /// `pending_approval`, `running`, `halted`, `cancelled` or `completed`.
    pub status: DeploymentStatus,
    /// Why it is halted, cancelled, or waiting.
    #[serde(default)]
    pub status_reason: Option<String>,
    #[serde(default)]
    pub rings: Vec<RingView>,
    #[serde(default)]
    pub current_ring: u32,
    #[serde(default)]
    pub approved_by: Option<String>,
    pub devices_total: u32,
    pub devices_done: u32,
    pub counts: OutcomeCounts,
    pub jobs: Vec<JobView>,
    /// One row per (device, package).
    pub results: Vec<ResultRow>,
    /// Pre-flight predictions, one row per (device, package): what the run is expected to do.
    #[serde(default)]
    pub predictions: Vec<PredictionRow>,
    /// How the real outcomes compared with the predictions, once both exist.
    #[serde(default)]
    pub prediction_accuracy: Option<PredictionAccuracy>,
    /// Pre-flight checks requested and not answered yet.
    #[serde(default)]
    pub preflight_pending: u32,
    /// The reboot policy, e.g. `when_required (at most 2 a day, back within 900 s)`; absent:
    /// never. Why a device was or was not rebooted is in its packages' evidence.
    #[serde(default)]
    pub reboot: Option<String>,
}

/// One predicted outcome of a pre-flight check (nothing was installed).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct PredictionRow {
    pub device: String,
    #[serde(default)]
    pub hostname: String,
    pub package: String,
    /// The predicted state: `verified` means "would succeed".
    pub state: PackageState,
    #[serde(default)]
    pub class: Option<FailureClass>,
    #[serde(default)]
    pub evidence: Vec<String>,
    /// When the prediction was made (RFC 3339).
    pub at: String,
}

/// Predictions compared with real outcomes: a match is the same state and the same class.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct PredictionAccuracy {
    /// (device, package) pairs with both a prediction and a final real outcome.
    pub packages_compared: u32,
    pub packages_matched: u32,
    /// Devices with at least one compared package; a device matches when all its packages do.
    pub devices_compared: u32,
    pub devices_matched: u32,
    /// `packages_matched / packages_compared` in percent (0 when nothing was compared).
    pub percent: f64,
}

/// `POST /api/v1/deployments/{id}/preflight`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct PreflightStarted {
    pub deployment: String,
    /// Pre-flight jobs queued by this call (0: all were already queued or running).
    pub queued: u32,
    /// Pre-flight jobs of this deployment in total.
    pub total: u32,
}

/// One device's job within a deployment.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct JobView {
    pub id: String,
    pub device: String,
    pub hostname: String,
    /// `waiting` (not released yet), `queued`, `running`, `done`.
    pub status: JobPhase,
    #[serde(default)]
    pub started_at: Option<String>,
    #[serde(default)]
    pub finished_at: Option<String>,
    #[serde(default)]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub commands: Vec<String>,
    #[serde(default)]
    pub duration_ms: Option<u64>,
    #[serde(default)]
    pub output: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
}

/// The per-(device, package) table; these field names are a stable interface.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ResultRow {
    pub device: String,
    pub hostname: String,
    pub package: String,
    pub state: PackageState,
    #[serde(default)]
    pub class: Option<FailureClass>,
    #[serde(default)]
    pub from_version: Option<String>,
    #[serde(default)]
    pub to_version: Option<String>,
    #[serde(default)]
    pub installed_version: Option<String>,
    #[serde(default)]
    pub evidence: Vec<String>,
    #[serde(default)]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub command: Option<String>,
    #[serde(default)]
    pub duration_ms: Option<u64>,
    /// The pre-flight prediction for this (device, package), when one was made.
    #[serde(default)]
    pub predicted_state: Option<PackageState>,
    #[serde(default)]
    pub predicted_class: Option<FailureClass>,
}

/// `GET /api/v1/deployments`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct DeploymentSummary {
    pub id: String,
    pub tenant: String,
    pub created_at: String,
    pub selection: Selection,
    pub status: DeploymentStatus,
    #[serde(default)]
    pub status_reason: Option<String>,
    pub devices_total: u32,
    pub devices_done: u32,
    pub counts: OutcomeCounts,
}

/// One attempt at one package on one device.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct AttemptView {
    pub deployment: String,
    pub job: String,
    pub package: String,
    pub at: String,
    pub state: PackageState,
    #[serde(default)]
    pub class: Option<FailureClass>,
    #[serde(default)]
    pub installed_version: Option<String>,
    #[serde(default)]
    pub evidence: Vec<String>,
    /// What was done: the command, or e.g. `confirmed after reboot`.
    pub action: String,
    #[serde(default)]
    pub exit_code: Option<i32>,
}

/// A (device, package) whose latest attempt failed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct FailureRow {
    pub device: String,
    pub hostname: String,
    pub package: String,
    pub deployment: String,
    pub class: FailureClass,
    pub at: String,
    #[serde(default)]
    pub installed_version: Option<String>,
    #[serde(default)]
    pub evidence: Vec<String>,
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// Who is on it (a user login), if anyone.
    #[serde(default)]
    pub assignee: Option<String>,
    /// The triage status in force now.
    #[serde(default)]
    pub status: TriageStatus,
    /// Why it was resolved or its risk accepted.
    #[serde(default)]
    pub reason: Option<String>,
    /// An accepted risk holds until then (RFC 3339).
    #[serde(default)]
    pub accepted_until: Option<String>,
    /// The first failed attempt of the current streak (failures since the last attempt that
    /// did not fail), RFC 3339; the failure's age counts from it.
    #[serde(default)]
    pub first_failed_at: Option<String>,
    /// Seconds since `first_failed_at`.
    #[serde(default)]
    pub age_secs: i64,
    /// Failed attempts in the current streak.
    #[serde(default)]
    pub attempts: u32,
    /// When it must be fixed (RFC 3339): the earliest SLA deadline of the device's open
    /// vulnerabilities that this package's update fixes, else 14 days after the first failure.
    #[serde(default)]
    pub deadline: Option<String>,
    /// Where the deadline comes from, for people (`CVE-2024-6387 SLA`, `14 days after the
    /// first failure`).
    #[serde(default)]
    pub deadline_basis: Option<String>,
    /// The deadline has passed.
    #[serde(default)]
    pub breached: bool,
}

pub use patchwarden_core::TriageStatus;

/// `POST /api/v1/failures/{assign,resolve,accept-risk,retry}`: which failure, and the action's
/// details.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct FailureActionRequest {
    /// Device id or hostname.
    pub device: String,
    /// The failed package.
    pub package: String,
    /// `assign`: the user login to assign (empty or absent: unassign).
    #[serde(default)]
    pub assignee: Option<String>,
    /// `resolve` (optional) and `accept-risk` (required): why.
    #[serde(default)]
    pub reason: Option<String>,
    /// `accept-risk`: until when, `YYYY-MM-DD` (end of that day, UTC) or RFC 3339; in the future
    /// and at most one year ahead.
    #[serde(default)]
    pub until: Option<String>,
}

/// The answer to a failure action: the failure's triage now (and the retry's deployment).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct FailureActionResult {
    pub device: String,
    pub hostname: String,
    pub package: String,
    pub status: TriageStatus,
    #[serde(default)]
    pub assignee: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub accepted_until: Option<String>,
    /// `retry`: the deployment created.
    #[serde(default)]
    pub deployment: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct FailureGroup {
    pub class: FailureClass,
    pub count: u32,
    pub failures: Vec<FailureRow>,
}

/// `GET /api/v1/failures`: current failures grouped by class, largest group first.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct FailuresView {
    pub total: u32,
    pub groups: Vec<FailureGroup>,
}

/// `POST /api/v1/feeds`: import an advisory feed, from its content or a URL the server fetches.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct FeedImportRequest {
    /// `osv`, `osv-zip`, `debian-tracker`, `cisa-kev`, `epss`, `alpine-secdb`.
    pub kind: String,
    /// Name of the source (one stored feed per source); default: the kind.
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub content_base64: Option<String>,
    /// With `url`: refetch it this often (seconds, at least 60); absent: on demand only.
    #[serde(default)]
    pub refresh_secs: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct FeedStatus {
    pub source: String,
    pub kind: String,
    #[serde(default)]
    pub url: Option<String>,
    pub records: u64,
    #[serde(default)]
    pub last_success: Option<String>,
    #[serde(default)]
    pub last_attempt: Option<String>,
    #[serde(default)]
    pub last_error: Option<String>,
    #[serde(default)]
    pub refresh_secs: Option<u64>,
}

/// One exposure: a device exposed to a CVE through a package.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct VulnRow {
    pub cve: String,
    pub device: String,
    pub hostname: String,
    /// The package the advisory names (the source package for Debian and Ubuntu).
    pub package: String,
    /// Installed binary packages through which the device is exposed.
    pub binaries: Vec<String>,
    pub installed_version: String,
    /// `fixed`, `no_fix_yet`, `will_not_fix`, `undetermined`.
    pub fix: String,
    #[serde(default)]
    pub fixed_version: Option<String>,
    /// An available update on the device that closes it.
    #[serde(default)]
    pub fixed_by_update: Option<String>,
    pub severity: String,
    #[serde(default)]
    pub cvss: Option<f64>,
    pub kev: bool,
    #[serde(default)]
    pub kev_due: Option<String>,
    pub ransomware: bool,
    #[serde(default)]
    pub epss: Option<f64>,
    #[serde(default)]
    pub epss_percentile: Option<f64>,
    /// Known exploited first, then severity and EPSS (see crates/vuln/README.md).
    pub priority: f64,
    pub first_seen: String,
    #[serde(default)]
    pub closed_at: Option<String>,
    #[serde(default)]
    pub sla_due: Option<String>,
    /// `no_deadline`, `on_track`, `breached` (open past the deadline), `met` (closed in
    /// time) or `closed_late`.
    pub sla_state: String,
    /// Time left before the deadline (negative: overdue by that much); `None` when there is no
    /// deadline or the exposure is closed.
    #[serde(default)]
    pub sla_seconds_left: Option<i64>,
    /// Which clock set the deadline, e.g. `critical severity: 15 days from first seen`.
    pub sla_basis: String,
    #[serde(default)]
    pub summary: Option<String>,
}

/// A policy: a tenant's standing patch process. Written as JSON over the API, or as a TOML or
/// YAML file applied with `patchwarden apply FILE` (matched by tenant and name: idempotent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PolicySpec {
    /// Unique within the tenant.
    pub name: String,
    /// Tenant (default `default`).
    #[serde(default)]
    pub tenant: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// A disabled policy creates nothing (default true).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Which devices: named devices, labels (a device must carry all), or all.
    pub target: TargetSpec,
    /// What to install: `{kind = "all_updates"}`, `{kind = "security"}`,
    /// `{kind = "vulnerabilities", min_severity = "high"}` or `{kind = "packages", packages = [...]}`.
    pub what: Selection,
    /// Package name patterns never installed (`linux-image-*`).
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Respect package holds (default true).
    #[serde(default = "default_true")]
    pub respect_holds: bool,
    /// When: `monthly second tuesday +2d 22:00`, `weekly saturday 02:00`, `daily 03:00`,
    /// `cron M H D M W`, in each device's own time zone. Absent: nothing scheduled (expedite only).
    #[serde(default)]
    pub schedule: Option<String>,
    /// Length of each window, in seconds (default 4 h).
    #[serde(default)]
    pub window_duration_secs: Option<u64>,
    /// Create each cycle's deployment this long before its first window opens (default 24 h),
    /// so that pre-flight and approval happen before the window.
    #[serde(default)]
    pub lead_secs: Option<u64>,
    #[serde(default)]
    pub rings: Vec<RingRequest>,
    #[serde(default)]
    pub gate: Option<GateRequest>,
    #[serde(default)]
    pub halt_failure_rate: Option<f64>,
    #[serde(default)]
    pub halt_min_finished: Option<u32>,
    #[serde(default)]
    pub concurrency: Option<String>,
    /// Spread start times across the window by device (default true).
    #[serde(default = "default_true")]
    pub spread: bool,
    /// `automatic` (default), `manual`, or `severity` (automatic when the update fixes a
    /// vulnerability at or above `approval_min_severity`, else manual).
    #[serde(default)]
    pub approval: Option<String>,
    #[serde(default)]
    pub approval_min_severity: Option<String>,
    #[serde(default)]
    pub reboot: Option<RebootRequest>,
    #[serde(default)]
    pub retry: Option<RetryRequest>,
    /// A device offline during its window: `next_window` (default) or `immediately`.
    #[serde(default)]
    pub offline: Option<String>,
    #[serde(default)]
    pub preflight: Option<PreflightPolicy>,
    /// Expedite: when a vulnerability at or above this severity, or known exploited, has a fix
    /// on a targeted device, create an expedited deployment at once (rings and approval apply).
    #[serde(default)]
    pub expedite: Option<ExpeditePolicy>,
    #[serde(default)]
    pub timeout_secs: Option<u64>,
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ExpeditePolicy {
    /// `high` or `critical` (absent: KEV only).
    #[serde(default)]
    pub min_severity: Option<String>,
    /// Known exploited vulnerabilities trigger it whatever their severity.
    #[serde(default)]
    pub kev: bool,
}

/// A stored policy.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct PolicyView {
    pub id: String,
    pub tenant: String,
    pub revision: i64,
    pub created_at: String,
    pub created_by: String,
    pub updated_at: String,
    pub spec: PolicySpec,
    /// The next cycle (its window's local date) and when its earliest window opens.
    #[serde(default)]
    pub next_cycle: Option<String>,
    #[serde(default)]
    pub next_window_start: Option<String>,
    /// Deployments it created, newest first: (cycle, deployment id).
    #[serde(default)]
    pub runs: Vec<PolicyRunView>,
    /// Why the scheduler could not run it at its last attempt (absent when it could): a
    /// policy broken by something other than having nothing to install.
    #[serde(default)]
    pub problem: Option<PolicyProblemView>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct PolicyProblemView {
    /// When it was first seen (RFC 3339).
    pub at: String,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct PolicyRunView {
    pub cycle: String,
    pub deployment: String,
    pub created_at: String,
}

/// `POST /api/v1/apply`: create or update policies by name; unchanged ones are left alone.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ApplyRequest {
    pub policies: Vec<PolicySpec>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ApplyOutcome {
    pub name: String,
    pub tenant: String,
    pub id: String,
    /// `created`, `updated` or `unchanged`.
    pub action: String,
}

/// An update someone rejected: never installed again until un-rejected.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct RejectedUpdateView {
    pub tenant: String,
    pub package: String,
    pub version: String,
    pub deployment: Option<String>,
    pub rejected_by: String,
    pub reason: Option<String>,
    pub rejected_at: String,
}

/// A tenant's SLA policy: remediation deadlines in days from an exposure's first sighting
/// (`null` = no deadline for that rating). For a known-exploited CVE the deadline is CISA's
/// due date (when `honor_kev_due_date` and still ahead at first sight) or `kev_days`, or the
/// rating's deadline when that is earlier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct SlaPolicyView {
    /// Tenant name.
    pub tenant: String,
    /// True when the tenant has no policy of its own: the product defaults apply.
    pub default: bool,
    pub kev_days: u32,
    pub honor_kev_due_date: bool,
    pub critical_days: Option<u32>,
    pub high_days: Option<u32>,
    pub medium_days: Option<u32>,
    pub low_days: Option<u32>,
    /// Negligible severity.
    pub none_days: Option<u32>,
    /// Not yet rated.
    pub unknown_days: Option<u32>,
    #[serde(default)]
    pub updated_at: Option<String>,
    #[serde(default)]
    pub updated_by: Option<String>,
}

/// `PUT /api/v1/sla-policy`: sets the given deadlines (days, 1 to 3650) of a tenant's policy;
/// the others keep their current value (the defaults when the tenant has none yet). Unknown
/// fields are refused.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SlaPolicyUpdate {
    /// Tenant name; default: the token's tenant (provider-level tokens: `default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kev_days: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub honor_kev_due_date: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub critical_days: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high_days: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub medium_days: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub low_days: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub none_days: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unknown_days: Option<i64>,
    /// Start from the product defaults instead of the tenant's current policy.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reset: bool,
}

/// `PUT /api/v1/devices/{id}/labels`: the device's labels, replaced whole. The label
/// `timezone` (an IANA name) overrides the zone the agent reports for maintenance windows.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct DeviceLabels {
    pub labels: BTreeMap<String, String>,
}

/// `GET /api/v1/failures` query.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
pub struct FailuresQuery {
    /// Only this class (a taxonomy name, e.g. `lock_held`).
    #[serde(default)]
    pub class: Option<String>,
    /// Only this device (id or hostname).
    #[serde(default)]
    pub device: Option<String>,
    /// Also the resolved failures and accepted risks (default: the queue, open ones only).
    #[serde(default)]
    pub all: bool,
}

/// `POST /api/v1/devices/{id}/reset-failures`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ResetFailures {
    /// How many current failures were reset.
    pub reset: u64,
}

/// A query naming a tenant (for provider-level tokens; default `default`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
pub struct TenantQuery {
    /// Tenant name (for provider-level tokens; default `default`).
    #[serde(default)]
    pub tenant: Option<String>,
}

/// `POST /api/v1/rejected-updates/unreject`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct UnrejectRequest {
    #[serde(default)]
    pub tenant: Option<String>,
    pub package: String,
    /// One version (default: every rejected version of the package).
    #[serde(default)]
    pub version: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct UnrejectOutcome {
    pub lifted: u64,
}

/// `GET /api/v1/vulns` query.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
pub struct VulnQuery {
    /// Only CVEs in CISA's Known Exploited Vulnerabilities catalog.
    #[serde(default)]
    pub kev: bool,
    /// Only at or above this rating: low, medium, high, critical.
    #[serde(default)]
    pub severity: Option<String>,
    /// Only this device (id or hostname).
    #[serde(default)]
    pub device: Option<String>,
    /// Include closed exposures (with their close time).
    #[serde(default)]
    pub closed: bool,
}
