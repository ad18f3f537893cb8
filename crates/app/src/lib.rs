//! Patchwarden's application layer: every use case of the server, between the HTTP front
//! ends (`patchwarden-server`: the API and the dashboard) and storage. Nothing here knows it
//! is behind HTTP: functions take an [`App`], an [`Actor`](actor::Actor) when a person or
//! token acts, and typed inputs, and answer typed results or an [`AppError`].
//!
//! Where is …
//! - a deployment planned? [`deployments::create`] (the pure part: [`engine`], the stored
//!   rollout options: [`plan`]).
//! - a halt, an approval, a cancel? [`deployments::actions`], the deployment state machine.
//! - a role checked? [`actor::Actor::require`], backed by the roles table in [`authz`].
//! - the rollout moved forward? [`orchestrator::tick`].

pub mod actor;
pub mod agent;
pub mod audit;
pub mod authz;
pub mod dashboard;
pub mod deployments;
pub mod devices;
pub mod engine;
pub mod enrollment;
pub mod error;
pub mod history;
pub mod inventory;
pub mod notify;
pub mod orchestrator;
pub mod people;
pub mod plan;
pub mod policies;
pub mod preflight;
pub mod reboots;
pub mod reports;
pub mod scope;
pub mod sessions;
pub mod sla;
pub mod snapshots;
pub mod triage;
pub mod vulns;

pub use actor::Actor;
pub use error::{AppError, AppResult};

/// Storage records that use cases hand to the front ends as they are (read models of the
/// dashboard, a device, a deployment), and the vocabulary of the product.
pub mod records {
    pub use patchwarden_core::{
        AuditOutcome, DeploymentStatus, DeviceStatus, FailureClass, JobPhase, PackageState,
        RebootMode, RingState, Role, TriageStatus,
    };
    pub use patchwarden_store::{
        Deployment, Device, DevicePageQuery, DeviceSort, ExposureStats, FailureCount, FleetStats,
        PatchFilter, Session, Snapshot, StatusRule, Tenant, TenantScope, User,
    };
}

use patchwarden_store::{SqliteStore, Store, StoreError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

/// What the use cases need to know about the deployment they run in.
#[derive(Debug, Clone)]
pub struct AppConfig {
    /// How often agents are told to check in.
    pub checkin_interval_secs: u64,
    /// When a device counts as stale or offline.
    pub status_rule: patchwarden_store::StatusRule,
}

impl Default for AppConfig {
    fn default() -> Self {
        Self {
            checkin_interval_secs: 60,
            status_rule: Default::default(),
        }
    }
}

/// Where the application reads the time: injectable, so tests never sleep through real
/// windows.
pub trait Clock: Send + Sync {
    fn now_ms(&self) -> i64;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        now_ms()
    }
}

/// A clock that moves only when told to (tests).
pub struct ManualClock(pub std::sync::atomic::AtomicI64);

impl ManualClock {
    pub fn at(ms: i64) -> Arc<Self> {
        Arc::new(Self(std::sync::atomic::AtomicI64::new(ms)))
    }
    pub fn set(&self, ms: i64) {
        self.0.store(ms, std::sync::atomic::Ordering::SeqCst);
    }
    pub fn advance(&self, by: std::time::Duration) {
        self.0
            .fetch_add(by.as_millis() as i64, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// The application: storage, time, and the few things kept in memory. Cheap to clone.
#[derive(Clone)]
pub struct App {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) notifier: Arc<notify::WorkNotifier>,
    pub config: Arc<AppConfig>,
    pub clock: Arc<dyn Clock>,
    /// Serialises orchestrator ticks within one process. Transitions are conditional updates
    /// in the store as well, so that an operator's action is never overwritten by a tick.
    pub(crate) orchestrator_lock: Arc<tokio::sync::Mutex<()>>,
    /// The advisory index built from the stored feeds (swapped whole on import).
    pub(crate) vulns: Arc<RwLock<Arc<patchwarden_vuln::AdvisoryIndex>>>,
    /// When the scheduler last looked at a policy cycle that had nothing to install.
    pub(crate) policy_checks: Arc<Mutex<HashMap<String, i64>>>,
}

impl App {
    pub fn new(store: Arc<dyn Store>, config: AppConfig, clock: Arc<dyn Clock>) -> Self {
        store.set_status_rule(config.status_rule);
        Self {
            store,
            notifier: Arc::default(),
            config: Arc::new(config),
            clock,
            orchestrator_lock: Arc::default(),
            vulns: Arc::default(),
            policy_checks: Arc::default(),
        }
    }

    /// Opens the database a URL names (`sqlite://PATH`) and the application on it.
    pub async fn open(
        database_url: &str,
        config: AppConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StoreError> {
        if database_url.starts_with("sqlite:") {
            let store = SqliteStore::open(database_url).await?;
            Ok(Self::new(Arc::new(store), config, clock))
        } else {
            Err(StoreError::InvalidUrl {
                url: database_url.to_owned(),
                reason: "this build supports sqlite://PATH".to_owned(),
            })
        }
    }

    /// The storage underneath, for tests that seed or inspect it directly.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }
}

pub fn now_ms() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
}

/// RFC 3339 in UTC with millisecond precision.
pub fn rfc3339(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    t.format(&format).unwrap_or_default()
}

/// Unix milliseconds of an RFC 3339 time, or `None` when it is not one.
pub fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

/// JSON of a value the application made itself (these types always serialise).
pub(crate) fn to_json(v: &impl serde::Serialize) -> AppResult<String> {
    serde_json::to_string(v).map_err(|e| AppError::internal(format!("serialising: {e}")))
}

/// A timestamp of unix milliseconds.
pub(crate) fn ts(ms: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_millisecond(ms).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}
