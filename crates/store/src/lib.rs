//! Storage behind one interface ([`Store`]). Backends: [`sqlite`] (the embedded default);
//! PostgreSQL follows with the same interface and the same conformance suite.
//!
//! Records here are storage types: deliberate, flat, and separate from the wire types.
//! Times are unix milliseconds (UTC). Every record carries its tenant.

pub mod audit;
pub mod dashboard;
pub mod history;
mod names;
pub mod policies;
pub mod preflight;
pub mod reboots;
pub mod sla;
pub mod sqlite;
pub mod triage;
pub mod users;

use async_trait::async_trait;
use patchwarden_core::{DeploymentStatus, FailureClass, PackageState, Role};
use std::collections::BTreeMap;

pub use patchwarden_core::JobStatus;

pub use audit::*;
pub use dashboard::*;
pub use history::*;
pub use policies::*;
pub use preflight::*;
pub use reboots::*;
pub use sla::*;
pub use sqlite::SqliteStore;
pub use triage::*;
pub use users::*;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("{0}")]
    Conflict(String),
    #[error("invalid database URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Debug, Clone, PartialEq)]
pub struct Tenant {
    pub id: String,
    pub name: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ApiToken {
    pub id: String,
    /// `None`: provider level, all tenants.
    pub tenant_id: Option<String>,
    pub name: String,
    pub role: Role,
    pub token_hash: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EnrollToken {
    pub id: String,
    pub tenant_id: String,
    pub token_hash: String,
    pub labels: BTreeMap<String, String>,
    pub created_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
    pub uses: i64,
    pub max_uses: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Device {
    pub id: String,
    pub tenant_id: String,
    pub hostname: String,
    pub machine_id: String,
    pub labels: BTreeMap<String, String>,
    pub secret_hash: String,
    pub enroll_token_id: Option<String>,
    pub enrolled_at: i64,
    pub last_seen: Option<i64>,
    pub agent_version: String,
    pub checkin_interval_secs: i64,
    pub inventory_hash: Option<String>,
    pub inventory_at: Option<i64>,
    pub summary: DeviceInventorySummary,
}

/// Figures derived from the last inventory, kept in columns so that listing is cheap.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeviceInventorySummary {
    pub os: String,
    pub kernel: String,
    pub pending_updates: i64,
    pub security_updates: i64,
    pub reboot_required: bool,
}

/// Why an enrollment was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnrollRefusal {
    UnknownToken,
    Expired,
    Revoked,
    Exhausted,
}

/// A new inventory that came with a check-in.
#[derive(Debug, Clone)]
pub struct InventoryUpdate {
    pub hash: String,
    pub json: String,
    pub summary: DeviceInventorySummary,
    pub hostname: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Deployment {
    pub id: String,
    pub tenant_id: String,
    pub created_at: i64,
    pub created_by: String,
    pub selection_json: String,
    pub timeout_secs: i64,
    pub status: DeploymentStatus,
    /// Why it is halted, cancelled or waiting (for people).
    pub status_reason: Option<String>,
    /// Rings, gate, breaker, concurrency: JSON owned by the server.
    pub plan_json: String,
    /// Index of the ring in progress.
    pub current_ring: i64,
    pub approved_by: Option<String>,
    pub approved_at: Option<i64>,
    pub updated_at: Option<i64>,
    /// When an operator last resumed it after a halt.
    pub resumed_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: String,
    pub tenant_id: String,
    pub deployment_id: String,
    pub device_id: String,
    pub payload: String,
    pub status: JobStatus,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub exit_code: Option<i64>,
    pub commands: Vec<String>,
    pub duration_ms: Option<i64>,
    pub output: Option<String>,
    pub error: Option<String>,
    /// Ring index within its deployment.
    pub ring: i64,
    /// When the job was handed to its device (None: held back by the rollout).
    pub released_at: Option<i64>,
    /// End of the maintenance window it was released for.
    pub window_end: Option<i64>,
    /// Which attempt this is (1 first; retries count up).
    pub attempt: i64,
    /// A retry waits until then.
    pub not_before: Option<i64>,
}

/// One targeted package of one job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobPackage {
    pub job_id: String,
    pub package: String,
    pub tenant_id: String,
    pub deployment_id: String,
    pub device_id: String,
    pub state: PackageState,
    pub class: Option<FailureClass>,
    pub from_version: Option<String>,
    pub to_version: Option<String>,
    pub installed_version: Option<String>,
    pub evidence: Vec<String>,
}

/// A job's outcome as the agent reported it.
#[derive(Debug, Clone)]
pub struct JobOutcome {
    pub finished_at: i64,
    pub started_at: Option<i64>,
    pub exit_code: Option<i64>,
    pub commands: Vec<String>,
    pub duration_ms: i64,
    pub output: String,
    pub error: Option<String>,
    /// The result exactly as received, kept for audit.
    pub result_json: String,
    pub packages: Vec<JobPackage>,
    /// The device's boot id when the job finished.
    pub boot_id: Option<String>,
    /// The attempt the result is for; a result for an earlier attempt is a re-delivery.
    pub attempt: Option<i64>,
}

/// One attempt at one package on one device (the history behind a state).
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    pub id: i64,
    pub tenant_id: String,
    pub device_id: String,
    pub deployment_id: String,
    pub job_id: String,
    pub package: String,
    pub at: i64,
    pub state: PackageState,
    pub class: Option<FailureClass>,
    pub installed_version: Option<String>,
    pub evidence: Vec<String>,
    /// What was done: the command, or e.g. "confirmed after reboot".
    pub action: String,
    pub exit_code: Option<i64>,
}

/// A package left `pending_reboot`, with the boot id its job finished under.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingReboot {
    pub package: JobPackage,
    pub boot_id: Option<String>,
}

/// One imported advisory feed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FeedRecord {
    /// A name for the source (e.g. `debian-tracker`); one row per source.
    pub source: String,
    /// Feed format: `osv`, `debian-tracker`, `cisa-kev`, `epss`, `alpine-secdb`.
    pub kind: String,
    pub url: Option<String>,
    pub sha256: Option<String>,
    pub records: i64,
    /// Last successful import.
    pub imported_at: Option<i64>,
    pub last_attempt_at: Option<i64>,
    /// Error of the last attempt, when it failed (the previous content stays in force).
    pub last_error: Option<String>,
    /// Refetch the URL this often (seconds); `None`: on demand only.
    pub refresh_secs: Option<i64>,
}

/// One exposure of a device to a CVE through a package.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ExposureRecord {
    pub device_id: String,
    pub tenant_id: String,
    pub cve: String,
    pub package: String,
    pub binaries: Vec<String>,
    pub installed_version: String,
    /// `fixed`, `no_fix_yet`, `will_not_fix`, `undetermined`.
    pub fix_state: String,
    pub fixed_version: Option<String>,
    pub fixed_by_update: Option<String>,
    pub rating: String,
    pub cvss: Option<f64>,
    pub kev: bool,
    pub kev_due: Option<String>,
    pub ransomware: bool,
    pub epss: Option<f64>,
    pub epss_percentile: Option<f64>,
    pub priority: f64,
    pub summary: Option<String>,
    pub first_seen: i64,
    pub closed_at: Option<i64>,
    pub updated_at: i64,
}

#[derive(Debug, Clone, Default)]
pub struct ExposureFilter {
    pub tenant_id: Option<String>,
    pub device_id: Option<String>,
    pub cve: Option<String>,
    pub include_closed: bool,
    /// Only known exploited (KEV).
    pub kev_only: bool,
    /// Only these ratings (`None`: any).
    pub ratings: Option<Vec<String>>,
}

/// Which current failures to list.
#[derive(Debug, Clone, Default)]
pub struct FailureFilter {
    pub tenant_id: Option<String>,
    pub device_id: Option<String>,
    pub class: Option<FailureClass>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultStored {
    /// First delivery: stored.
    Stored,
    /// A re-delivery of a result already stored: acknowledged, nothing changed.
    Duplicate,
    /// No such job for this device.
    UnknownJob,
}

/// What came of a device's request to start a job ([`Store::mark_job_started`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartOutcome {
    /// It runs now: it was on offer, or it was already running (a re-delivered start).
    Started,
    /// This device's job, but not on offer: not released, its deployment not running, its
    /// window closed, its retry not due yet, or done. The device must not run it.
    NotOnOffer,
    /// No such job for this device.
    UnknownJob,
}

/// The storage interface. Every method is one transaction; a method returns only once its
/// change is durable, so the caller can acknowledge it.
#[async_trait]
pub trait Store:
    UserStore
    + DashboardStore
    + PreflightStore
    + PolicyStore
    + HistoryStore
    + AuditStore
    + RebootStore
    + SlaStore
    + TriageStore
    + Send
    + Sync
    + 'static
{
    /// The tenant with this name, created if missing.
    async fn ensure_tenant(&self, name: &str, now: i64) -> Result<Tenant>;
    async fn tenant_by_id(&self, id: &str) -> Result<Option<Tenant>>;
    async fn list_tenants(&self) -> Result<Vec<Tenant>>;

    async fn insert_api_token(&self, token: &ApiToken) -> Result<()>;
    async fn api_token_by_hash(&self, hash: &str) -> Result<Option<ApiToken>>;
    async fn count_api_tokens(&self) -> Result<i64>;

    async fn insert_enroll_token(&self, token: &EnrollToken) -> Result<()>;
    async fn list_enroll_tokens(&self, tenant_id: Option<&str>) -> Result<Vec<EnrollToken>>;
    /// Returns false when no such token exists.
    async fn revoke_enroll_token(&self, id: &str, now: i64) -> Result<bool>;

    /// Atomically checks the enrollment token, counts the use, and creates the device (its
    /// tenant and labels come from the token).
    async fn enroll_device(
        &self,
        token_hash: &str,
        now: i64,
        device: Device,
    ) -> Result<std::result::Result<Device, EnrollRefusal>>;
    async fn device_by_secret_hash(&self, hash: &str) -> Result<Option<Device>>;
    async fn device(&self, id: &str) -> Result<Option<Device>>;
    async fn list_devices(&self, tenant_id: Option<&str>) -> Result<Vec<Device>>;
    async fn device_inventory_json(&self, id: &str) -> Result<Option<String>>;
    /// Records a check-in, and the inventory when one came with it.
    async fn record_checkin(
        &self,
        device_id: &str,
        now: i64,
        agent_version: &str,
        inventory: Option<&InventoryUpdate>,
    ) -> Result<()>;

    /// Creates a deployment with its jobs and their package rows, all or nothing.
    async fn create_deployment(
        &self,
        deployment: &Deployment,
        jobs: &[Job],
        packages: &[JobPackage],
    ) -> Result<()>;
    async fn deployment(&self, id: &str) -> Result<Option<Deployment>>;
    async fn list_deployments(&self, tenant_id: Option<&str>) -> Result<Vec<Deployment>>;
    async fn jobs_of_deployment(&self, deployment_id: &str) -> Result<Vec<Job>>;
    async fn job(&self, id: &str) -> Result<Option<Job>>;
    async fn packages_of_deployment(&self, deployment_id: &str) -> Result<Vec<JobPackage>>;

    /// Deployments the orchestrator must look at (`pending_approval`, `running`).
    async fn active_deployments(&self) -> Result<Vec<Deployment>>;
    /// Writes a deployment's mutable fields (status, status_reason, current_ring, approved_by,
    /// approved_at, updated_at, resumed_at) only if, at the moment of writing, its status is one
    /// of `expected` and (with `ring: Some(r)`) its current_ring is still `r`: one conditional
    /// statement (`UPDATE … WHERE id = ? AND status IN (…) [AND current_ring = ?]`), so two writers
    /// never overwrite each other. When the new status is `cancelled`, the deployment's jobs that
    /// have not started are closed in the same transaction (finished at `d.updated_at`), their
    /// pending packages `skipped` with `skip_evidence` as the packages' evidence (none given:
    /// "not started: the deployment was cancelled"). Returns false, writing nothing, when the
    /// deployment was moved on meanwhile (or does not exist).
    ///
    /// Every mutable field is written, `current_ring` too: a writer that read the deployment
    /// passes the ring it read (`Some(read.current_ring)`), or a concurrent promotion could be
    /// rewound by its stale copy.
    async fn transition_deployment(
        &self,
        d: &Deployment,
        expected: &[DeploymentStatus],
        ring: Option<i64>,
        skip_evidence: Option<&str>,
    ) -> Result<bool>;
    /// Hands these jobs to their devices: only jobs still `queued` and unreleased, of a
    /// deployment that is `running` at that moment (checked in the same statement, so a halt
    /// is never followed by a release). Returns how many were released.
    async fn release_jobs(&self, job_ids: &[String], now: i64) -> Result<u64>;
    /// Hands a job to its device for one maintenance window, with the payload that carries the
    /// window's end: only a job still `queued` of a deployment that is `running` at that
    /// moment. False when it was not released.
    async fn release_job_in_window(
        &self,
        job_id: &str,
        now: i64,
        payload: &str,
        window_end: i64,
    ) -> Result<bool>;
    /// Takes back a job that did not start in its window (it waits for the next one), and
    /// records why on its packages (state, class, evidence) and in their attempt history.
    async fn unrelease_job(
        &self,
        job_id: &str,
        now: i64,
        state: PackageState,
        class: FailureClass,
        evidence: &str,
    ) -> Result<()>;
    /// Released jobs, not started, whose window has ended by `now`.
    async fn jobs_past_window(&self, deployment_id: &str, now: i64) -> Result<Vec<Job>>;

    /// Work to offer a device (released, of a running deployment): queued jobs, and running jobs whose lease (start + timeout +
    /// grace) has expired because the agent died while running them.
    async fn offerable_jobs(&self, device_id: &str, now: i64, grace_ms: i64) -> Result<Vec<Job>>;
    /// Marks a job running, in one conditional statement, so that the check and the start
    /// cannot race with a halt: `Started` when it is `queued`, released, of a `running`
    /// deployment, its window (`window_end`) not passed at `now` and its `not_before` reached,
    /// or when it is already `running` (a re-delivered start, or a restart after its lease ran
    /// out: `started_at` becomes `now`). `NotOnOffer` for this device's job otherwise (done
    /// jobs too), `UnknownJob` when the job is not this device's.
    async fn mark_job_started(
        &self,
        job_id: &str,
        device_id: &str,
        now: i64,
    ) -> Result<StartOutcome>;
    /// Packages of this device still `pending_reboot`.
    async fn pending_reboots(&self, device_id: &str) -> Result<Vec<PendingReboot>>;
    /// Records a later outcome of one package (e.g. confirmed after a reboot) and its attempt.
    async fn update_package_outcome(&self, row: &JobPackage, attempt: &Attempt) -> Result<()>;
    /// A device's attempts, newest first (at most `limit`).
    async fn attempts_of_device(&self, device_id: &str, limit: i64) -> Result<Vec<Attempt>>;
    /// Current failures: (device, package) pairs whose latest attempt failed, newest first.
    async fn current_failures(&self, filter: &FailureFilter) -> Result<Vec<Attempt>>;
    /// Clears a device's current failures: each gets a later `skipped` attempt (kept in the
    /// history, with who did it). Returns how many were reset.
    async fn reset_failures(&self, device_id: &str, now: i64, action: &str) -> Result<u64>;

    /// Records a successful feed import: its content replaces the source's previous one.
    async fn put_feed(&self, feed: &FeedRecord, content: &[u8]) -> Result<()>;
    /// Records a failed import attempt; the previous content stays in force.
    async fn feed_failed(
        &self,
        source: &str,
        kind: &str,
        url: Option<&str>,
        at: i64,
        error: &str,
    ) -> Result<()>;
    async fn list_feeds(&self) -> Result<Vec<FeedRecord>>;
    /// (kind, content) of every feed that has content.
    async fn feed_contents(&self) -> Result<Vec<(String, Vec<u8>)>>;
    /// Makes `open` the device's open exposures: new ones open (first seen now), existing ones
    /// are refreshed (first seen kept; a closed one reopens), missing ones close at `now`.
    /// Returns (opened, closed).
    async fn sync_device_exposures(
        &self,
        device_id: &str,
        now: i64,
        open: &[ExposureRecord],
    ) -> Result<(u64, u64)>;
    async fn list_exposures(&self, filter: &ExposureFilter) -> Result<Vec<ExposureRecord>>;

    /// Stores a job's outcome once (with one attempt per package); re-deliveries are
    /// recognised and change nothing.
    async fn store_job_result(
        &self,
        job_id: &str,
        device_id: &str,
        outcome: &JobOutcome,
    ) -> Result<ResultStored>;
}
