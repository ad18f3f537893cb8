//! Patchwarden's server: the agent protocol and the operator API over HTTP, on top of the
//! storage interface. `main` in the `patchwarden` binary only parses flags and calls [`run`].

pub mod agent_api;
pub mod audit;
pub mod auth;
pub mod engine;
pub mod error;
pub mod history;
pub mod notify;
pub mod openapi;
pub mod operator_api;
pub mod orchestrator;
pub mod people;
pub mod policies;
pub mod preflight;
pub mod reboots;
pub mod reports;
pub mod sla;
pub mod snapshots;
pub mod triage;
pub mod vulns;
pub mod web;

use anyhow::Context;
use axum::routing::{delete, get, post};
use axum::Router;
use patchwarden_store::{ApiToken, SqliteStore, Store};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Name of the file, in the data directory, holding the first administrator token.
pub const ADMIN_TOKEN_FILE: &str = "admin-token";
/// Name of the file, in the data directory, holding the URL the server listens on.
pub const SERVER_URL_FILE: &str = "server-url";

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// `sqlite://...`; default: `patchwarden.db` in the data directory.
    pub database_url: Option<String>,
    pub checkin_interval_secs: u64,
    /// A device not seen for longer is `stale` (default: 3 check-in intervals + 30 s).
    pub stale_after_secs: Option<u64>,
    /// A device not seen for longer is `offline` (default 24 h).
    pub offline_after_secs: Option<u64>,
}

impl ServerConfig {
    /// The status rule this configuration asks for.
    pub fn status_rule(&self) -> patchwarden_store::StatusRule {
        let default = patchwarden_store::StatusRule::default();
        patchwarden_store::StatusRule {
            stale_after_ms: self.stale_after_secs.map(|s| s as i64 * 1000),
            offline_after_ms: self
                .offline_after_secs
                .map(|s| s as i64 * 1000)
                .unwrap_or(default.offline_after_ms),
        }
    }
}

/// Where the server reads the time: injectable, so tests never sleep through real windows.
pub trait Clock: Send + Sync {
    fn now_ms(&self) -> i64;
}

pub struct SystemClock;

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

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        now_ms()
    }
}

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub notifier: Arc<notify::WorkNotifier>,
    pub config: Arc<ServerConfig>,
    pub clock: Arc<dyn Clock>,
    /// Serialises orchestrator ticks (one server process; replicas will use a database lock).
    pub orchestrator_lock: Arc<tokio::sync::Mutex<()>>,
    /// The advisory index built from the stored feeds (swapped whole on import).
    pub vulns: Arc<std::sync::RwLock<Arc<patchwarden_vuln::AdvisoryIndex>>>,
    /// When the scheduler last looked at a policy cycle that had nothing to install.
    pub policy_checks: Arc<std::sync::Mutex<std::collections::HashMap<String, i64>>>,
}

impl AppState {
    pub fn new(store: Arc<dyn Store>, config: ServerConfig, clock: Arc<dyn Clock>) -> Self {
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

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/api/v1/openapi.json", get(openapi::serve))
        .route("/api/v1/agent/enroll", post(agent_api::enroll))
        .route("/api/v1/agent/checkin", post(agent_api::checkin))
        .route("/api/v1/agent/work", get(agent_api::work))
        .route(
            "/api/v1/agent/jobs/{job_id}/start",
            post(agent_api::job_started),
        )
        .route(
            "/api/v1/agent/jobs/{job_id}/result",
            post(agent_api::job_result),
        )
        .route(
            "/api/v1/enroll-tokens",
            post(operator_api::create_enroll_token).get(operator_api::list_enroll_tokens),
        )
        .route(
            "/api/v1/enroll-tokens/{id}",
            delete(operator_api::revoke_enroll_token),
        )
        .route("/api/v1/audit", get(audit::list_audit))
        .route(
            "/api/v1/users",
            get(people::list_users).post(people::create_user),
        )
        .route("/api/v1/users/{login}/disable", post(people::disable_user))
        .route(
            "/api/v1/tokens",
            get(people::list_tokens).post(people::create_token),
        )
        .route("/api/v1/tokens/{id}", delete(people::revoke_token))
        .route(
            "/api/v1/policies",
            post(policies::create_policy).get(policies::list_policies),
        )
        .route(
            "/api/v1/policies/{id}",
            get(policies::get_policy)
                .put(policies::update_policy)
                .delete(policies::delete_policy),
        )
        .route("/api/v1/apply", post(policies::apply))
        .route(
            "/api/v1/devices/{id}/labels",
            axum::routing::put(policies::set_device_labels),
        )
        .route("/api/v1/rejected-updates", get(policies::list_rejected))
        .route(
            "/api/v1/rejected-updates/unreject",
            post(policies::unreject),
        )
        .route("/api/v1/devices", get(operator_api::list_devices))
        .route("/api/v1/devices/{id}", get(operator_api::get_device))
        .route(
            "/api/v1/deployments",
            post(operator_api::create_deployment).get(operator_api::list_deployments),
        )
        .route(
            "/api/v1/deployments/{id}",
            get(operator_api::get_deployment),
        )
        .route("/api/v1/failures", get(history::list_failures))
        .route("/api/v1/failures/assign", post(triage::assign))
        .route("/api/v1/failures/resolve", post(triage::resolve))
        .route("/api/v1/failures/accept-risk", post(triage::accept_risk))
        .route("/api/v1/failures/retry", post(triage::retry))
        .route(
            "/api/v1/devices/{id}/reset-failures",
            post(history::reset_failures),
        )
        .route(
            "/api/v1/feeds",
            get(vulns::list_feeds).post(vulns::import_feed),
        )
        .route("/api/v1/vulns", get(vulns::list_vulns))
        .route("/api/v1/vulns/{cve}", get(vulns::show_vuln))
        .route(
            "/api/v1/sla-policy",
            get(sla::get_sla_policy).put(sla::put_sla_policy),
        )
        .route(
            "/api/v1/reports/compliance",
            get(reports::compliance_report),
        )
        .route("/api/v1/history/snapshot", post(reports::take_snapshot))
        .route(
            "/api/v1/deployments/{id}/approve",
            post(operator_api::approve_deployment),
        )
        .route(
            "/api/v1/deployments/{id}/reject",
            post(operator_api::reject_deployment),
        )
        .route(
            "/api/v1/deployments/{id}/halt",
            post(operator_api::halt_deployment),
        )
        .route(
            "/api/v1/deployments/{id}/resume",
            post(operator_api::resume_deployment),
        )
        .route(
            "/api/v1/deployments/{id}/cancel",
            post(operator_api::cancel_deployment),
        )
        .route(
            "/api/v1/deployments/{id}/preflight",
            post(preflight::start_preflight),
        )
        .layer(axum::extract::DefaultBodyLimit::max(32 * 1024 * 1024))
        // Keep this after every route: it records the operator actions (audit.rs).
        .route_layer(axum::middleware::from_fn_with_state(
            audit::AuditLayer::new(state.clone(), "api"),
            audit::record,
        ))
        .with_state(state.clone())
        .merge(web::router(state))
}

/// Creates the data directory, readable only by its owner.
fn prepare_data_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating data directory {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("restricting data directory {}", dir.display()))?;
    Ok(())
}

/// Writes `contents` to `path` with mode 0600, atomically.
pub fn write_private_file(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

/// On first start (no API token at all), creates the administrator token and writes it to
/// the data directory. Only its hash is stored in the database.
async fn bootstrap_admin(store: &dyn Store, data_dir: &Path) -> anyhow::Result<()> {
    if store.count_api_tokens().await? > 0 {
        return Ok(());
    }
    let token = auth::new_token(auth::ADMIN_TOKEN_PREFIX);
    let path = data_dir.join(ADMIN_TOKEN_FILE);
    write_private_file(&path, &format!("{token}\n"))?;
    store
        .insert_api_token(&ApiToken {
            id: auth::new_id("tok_"),
            tenant_id: None,
            name: "admin".into(),
            role: "admin".into(),
            token_hash: auth::hash_token(&token),
            created_at: now_ms(),
            revoked_at: None,
        })
        .await?;
    store.ensure_tenant("default", now_ms()).await?;
    tracing::info!(path = %path.display(), "created the administrator token; it is in this file (mode 0600)");
    Ok(())
}

/// Opens the store named by the configuration.
pub async fn open_store(config: &ServerConfig) -> anyhow::Result<Arc<dyn Store>> {
    let url = match &config.database_url {
        Some(url) => url.clone(),
        None => format!(
            "sqlite://{}",
            config.data_dir.join("patchwarden.db").display()
        ),
    };
    if url.starts_with("sqlite:") {
        let store = SqliteStore::open(&url)
            .await
            .with_context(|| format!("opening database {url}"))?;
        Ok(Arc::new(store))
    } else {
        anyhow::bail!("unsupported database URL {url:?}: this build supports sqlite://PATH")
    }
}

/// Binds, bootstraps, and serves until `shutdown` resolves.
pub async fn run(
    config: ServerConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    run_with_clock(config, Arc::new(SystemClock), shutdown).await
}

/// [`run`] with the time taken from `clock` (tests move it by hand).
pub async fn run_with_clock(
    config: ServerConfig,
    clock: Arc<dyn Clock>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    prepare_data_dir(&config.data_dir)?;
    let store = open_store(&config).await?;
    store.set_status_rule(config.status_rule());
    bootstrap_admin(store.as_ref(), &config.data_dir).await?;
    web::bootstrap_admin_user(store.as_ref(), &config.data_dir).await?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let url = format!("http://{addr}");
    write_private_file(&config.data_dir.join(SERVER_URL_FILE), &format!("{url}\n"))?;
    tracing::info!(%url, data_dir = %config.data_dir.display(), "patchwarden server listening");
    let state = AppState::new(store, config, clock);
    vulns::load(&state).await;
    // Feeds fetched from URLs on a schedule.
    let refresher = state.clone();
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(std::time::Duration::from_secs(60));
        loop {
            interval.tick().await;
            vulns::refresh_due(&refresher).await;
        }
    });
    // The daily history (charts, reports): checked every 5 minutes, taken once a day.
    tokio::spawn(snapshots::run_timer(
        state.clone(),
        std::time::Duration::from_secs(300),
    ));
    // Soak timers and leases move without any request: tick active deployments regularly.
    let ticker = state.clone();
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(std::time::Duration::from_secs(2));
        loop {
            interval.tick().await;
            orchestrator::tick_all(&ticker).await;
            policies::run_due(&ticker).await;
            reboots::tick(&ticker).await;
        }
    });
    // The client address feeds login rate limiting.
    axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await?;
    Ok(())
}
