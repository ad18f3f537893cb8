//! Patchwarden's server: the HTTP front ends of the application (`patchwarden-app`): the
//! agent protocol and the operator API (`api/`), and the web dashboard (`web/`). Handlers
//! extract, call one use case, and map its typed error to HTTP (`error.rs`). `main` in the
//! `patchwarden` binary only parses flags and calls [`run`].

pub mod api;
pub mod audit;
pub mod error;
pub mod extract;
pub mod openapi;
pub mod web;

use anyhow::Context;
use axum::routing::{delete, get, post};
use axum::Router;
pub use patchwarden_app::{now_ms, App, AppConfig, Clock, ManualClock, SystemClock};
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
    pub fn status_rule(&self) -> patchwarden_app::records::StatusRule {
        let default = patchwarden_app::records::StatusRule::default();
        patchwarden_app::records::StatusRule {
            stale_after_ms: self.stale_after_secs.map(|s| s as i64 * 1000),
            offline_after_ms: self
                .offline_after_secs
                .map(|s| s as i64 * 1000)
                .unwrap_or(default.offline_after_ms),
        }
    }
}

impl ServerConfig {
    /// What the application needs of this configuration.
    pub fn app_config(&self) -> AppConfig {
        AppConfig {
            checkin_interval_secs: self.checkin_interval_secs,
            status_rule: self.status_rule(),
        }
    }

    /// The database URL: the configured one, or `patchwarden.db` in the data directory.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!(
                "sqlite://{}",
                self.data_dir.join("patchwarden.db").display()
            ),
        }
    }
}

pub fn router(state: App) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/api/v1/openapi.json", get(openapi::serve))
        .route("/api/v1/agent/enroll", post(api::agent::enroll))
        .route("/api/v1/agent/checkin", post(api::agent::checkin))
        .route("/api/v1/agent/work", get(api::agent::work))
        .route(
            "/api/v1/agent/jobs/{job_id}/start",
            post(api::agent::job_started),
        )
        .route(
            "/api/v1/agent/jobs/{job_id}/result",
            post(api::agent::job_result),
        )
        .route(
            "/api/v1/enroll-tokens",
            post(api::enrollment::create_enroll_token).get(api::enrollment::list_enroll_tokens),
        )
        .route(
            "/api/v1/enroll-tokens/{id}",
            delete(api::enrollment::revoke_enroll_token),
        )
        .route("/api/v1/audit", get(api::audit::list_audit))
        .route(
            "/api/v1/users",
            get(api::people::list_users).post(api::people::create_user),
        )
        .route(
            "/api/v1/users/{login}/disable",
            post(api::people::disable_user),
        )
        .route(
            "/api/v1/tokens",
            get(api::people::list_tokens).post(api::people::create_token),
        )
        .route("/api/v1/tokens/{id}", delete(api::people::revoke_token))
        .route(
            "/api/v1/policies",
            post(api::policies::create_policy).get(api::policies::list_policies),
        )
        .route(
            "/api/v1/policies/{id}",
            get(api::policies::get_policy)
                .put(api::policies::update_policy)
                .delete(api::policies::delete_policy),
        )
        .route("/api/v1/apply", post(api::policies::apply))
        .route(
            "/api/v1/devices/{id}/labels",
            axum::routing::put(api::devices::set_device_labels),
        )
        .route(
            "/api/v1/rejected-updates",
            get(api::deployments::list_rejected),
        )
        .route(
            "/api/v1/rejected-updates/unreject",
            post(api::deployments::unreject),
        )
        .route("/api/v1/devices", get(api::devices::list_devices))
        .route("/api/v1/devices/{id}", get(api::devices::get_device))
        .route(
            "/api/v1/deployments",
            post(api::deployments::create_deployment).get(api::deployments::list_deployments),
        )
        .route(
            "/api/v1/deployments/{id}",
            get(api::deployments::get_deployment),
        )
        .route("/api/v1/failures", get(api::failures::list_failures))
        .route("/api/v1/failures/assign", post(api::failures::assign))
        .route("/api/v1/failures/resolve", post(api::failures::resolve))
        .route(
            "/api/v1/failures/accept-risk",
            post(api::failures::accept_risk),
        )
        .route("/api/v1/failures/retry", post(api::failures::retry))
        .route(
            "/api/v1/devices/{id}/reset-failures",
            post(api::devices::reset_failures),
        )
        .route(
            "/api/v1/feeds",
            get(api::vulns::list_feeds).post(api::vulns::import_feed),
        )
        .route("/api/v1/vulns", get(api::vulns::list_vulns))
        .route("/api/v1/vulns/{cve}", get(api::vulns::show_vuln))
        .route(
            "/api/v1/sla-policy",
            get(api::vulns::get_sla_policy).put(api::vulns::put_sla_policy),
        )
        .route(
            "/api/v1/reports/compliance",
            get(api::reports::compliance_report),
        )
        .route(
            "/api/v1/history/snapshot",
            post(api::reports::take_snapshot),
        )
        .route(
            "/api/v1/deployments/{id}/approve",
            post(api::deployments::approve_deployment),
        )
        .route(
            "/api/v1/deployments/{id}/reject",
            post(api::deployments::reject_deployment),
        )
        .route(
            "/api/v1/deployments/{id}/halt",
            post(api::deployments::halt_deployment),
        )
        .route(
            "/api/v1/deployments/{id}/resume",
            post(api::deployments::resume_deployment),
        )
        .route(
            "/api/v1/deployments/{id}/cancel",
            post(api::deployments::cancel_deployment),
        )
        .route(
            "/api/v1/deployments/{id}/preflight",
            post(api::deployments::start_preflight),
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
    let url = config.database_url();
    let app = App::open(&url, config.app_config(), clock)
        .await
        .with_context(|| format!("opening database {url}"))?;
    bootstrap(&app, &config.data_dir).await?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let url = format!("http://{addr}");
    write_private_file(&config.data_dir.join(SERVER_URL_FILE), &format!("{url}\n"))?;
    tracing::info!(%url, data_dir = %config.data_dir.display(), "patchwarden server listening");
    patchwarden_app::vulns::load(&app).await;
    spawn_timers(&app);
    // The client address feeds login rate limiting.
    axum::serve(
        listener,
        router(app).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await?;
    Ok(())
}

/// On first start, the administrator token and the dashboard user `admin`, each written to
/// a file of the data directory (mode 0600) before it is stored; the log names the files,
/// never the secrets.
async fn bootstrap(app: &App, data_dir: &Path) -> anyhow::Result<()> {
    let token_file = data_dir.join(ADMIN_TOKEN_FILE);
    let keep = |path: &Path, secret: &str| {
        write_private_file(path, &format!("{secret}\n")).map_err(std::io::Error::other)
    };
    if patchwarden_app::people::bootstrap_admin_token(app, |t| keep(&token_file, t)).await? {
        tracing::info!(path = %token_file.display(), "created the administrator token; it is in this file (mode 0600)");
    }
    let password_file = data_dir.join(web::ADMIN_PASSWORD_FILE);
    if patchwarden_app::people::bootstrap_admin_user(app, |p| keep(&password_file, p)).await? {
        tracing::info!(login = patchwarden_app::people::ADMIN_LOGIN, path = %password_file.display(),
            "created the dashboard administrator; the password is in this file (mode 0600)");
    }
    Ok(())
}

/// What moves without any request: feed refreshes, the daily history, soak timers, leases,
/// policy cycles and reboot come-back budgets.
fn spawn_timers(app: &App) {
    let refresher = app.clone();
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(std::time::Duration::from_secs(60));
        loop {
            interval.tick().await;
            patchwarden_app::vulns::refresh_due(&refresher).await;
        }
    });
    tokio::spawn(patchwarden_app::snapshots::run_timer(
        app.clone(),
        std::time::Duration::from_secs(300),
    ));
    let ticker = app.clone();
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(std::time::Duration::from_secs(2));
        loop {
            interval.tick().await;
            patchwarden_app::orchestrator::tick_all(&ticker).await;
            patchwarden_app::policies::run_due(&ticker).await;
            patchwarden_app::reboots::tick(&ticker).await;
        }
    });
}
