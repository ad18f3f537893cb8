//! The web dashboard: server-rendered pages (askama templates compiled into the binary), a
//! small stylesheet and a few lines of script, behind password login and sessions.
//!
//! Every page calls the application's use cases on behalf of the logged-in person (an
//! `Actor` with their roles), the same ones the API calls; never an API handler.

mod admin;
mod chart;
mod deploy_form;
mod insight;
mod pages;
mod policy_pages;
pub mod session;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use patchwarden_app::authz::Permission;
use patchwarden_app::sessions::{hash_password, random_password, LoginLimiter};
use patchwarden_app::{App, AppError};
use std::sync::Arc;

pub use insight::{report_document, report_response};

/// Name of the file, in the data directory, holding the first administrator's password.
pub const ADMIN_PASSWORD_FILE: &str = "admin-password";

/// What the web handlers share.
#[derive(Clone)]
pub struct WebState {
    pub app: App,
    pub limiter: Arc<LoginLimiter>,
    /// Mark cookies `Secure` even without `X-Forwarded-Proto: https`.
    pub secure_cookies: bool,
    /// Verified against when a login does not exist, so that timing does not tell.
    pub dummy_hash: String,
}

/// A page that could not be shown, or a redirect to the login page.
#[derive(Debug)]
pub enum WebError {
    Login(String),
    Page(StatusCode, String),
}

pub fn page_error(status: StatusCode, message: &str) -> WebError {
    WebError::Page(status, message.to_owned())
}

/// An application error as a page: the same status the API would answer, with the message.
impl From<AppError> for WebError {
    fn from(e: AppError) -> Self {
        let api = crate::error::ApiError::from(e);
        WebError::Page(api.status, api.message)
    }
}

#[derive(askama::Template)]
#[template(path = "error.html")]
struct ErrorPage {
    status: u16,
    reason: String,
    message: String,
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        match self {
            WebError::Login(next) => {
                Redirect::to(&format!("/login?next={}", pages::url_encode(&next))).into_response()
            }
            WebError::Page(status, message) => {
                let page = ErrorPage {
                    status: status.as_u16(),
                    reason: status.canonical_reason().unwrap_or("Error").to_owned(),
                    message,
                };
                (status, render(&page)).into_response()
            }
        }
    }
}

pub fn render(t: &impl askama::Template) -> Response {
    match t.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "template rendering failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "rendering failed").into_response()
        }
    }
}

/// The header of every page: who is logged in, their roles, the CSRF token for the logout
/// form, and which menu entry is current.
pub struct Nav {
    pub login: String,
    pub roles: String,
    pub csrf: String,
    pub current: &'static str,
    /// Show the People entry (an admin somewhere).
    pub people: bool,
    /// Show the Audit entry (an admin or approver somewhere).
    pub audit: bool,
}

impl Nav {
    pub fn new(user: &session::WebUser, current: &'static str) -> Self {
        Nav {
            login: user.user.login.clone(),
            roles: user.access.describe(&user.tenant_names),
            csrf: user.session.csrf_token.clone(),
            current,
            people: user.access.can_somewhere(Permission::Administer),
            audit: user.access.can_somewhere(Permission::ReadAudit),
        }
    }
    /// `aria-current` for a menu entry.
    pub fn cur(&self, entry: &str) -> &'static str {
        if self.current == entry {
            "page"
        } else {
            "false"
        }
    }
}

const CSS: &str = include_str!("static/app.css");
const JS: &str = include_str!("static/app.js");

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

/// Headers for every dashboard response: no framing, no sniffing, only our own scripts.
async fn security_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

/// The dashboard's routes. `PATCHWARDEN_SECURE_COOKIES=1` marks cookies `Secure` always
/// (behind a TLS-terminating proxy that does not send `X-Forwarded-Proto`).
pub fn router(app: App) -> Router {
    let secure_cookies = std::env::var("PATCHWARDEN_SECURE_COOKIES").is_ok_and(|v| v == "1");
    let dummy_hash = hash_password(&random_password()).unwrap_or_default();
    let state = WebState {
        app,
        limiter: Arc::default(),
        secure_cookies,
        dummy_hash,
    };
    Router::new()
        .route("/", get(pages::overview))
        .route(
            "/login",
            get(session::login_form).post(session::login_submit),
        )
        .route(
            "/logout",
            get(session::logout_form).post(session::logout_submit),
        )
        .route("/devices", get(pages::devices))
        .route("/devices/{id}", get(pages::device))
        .route("/deployments", get(pages::deployments))
        .route("/deployments/new", post(deploy_form::new_deployment))
        .route("/deployments/{id}", get(pages::deployment))
        .route("/deployments/{id}/live", get(pages::deployment_live))
        .route("/deployments/{id}/{action}", post(pages::deployment_action))
        .route("/failures", get(pages::failures))
        .route("/failures/{action}", post(pages::failure_action))
        .route("/people", get(admin::people))
        .route("/audit", get(admin::audit))
        .route("/people/users/{login}/disable", post(admin::disable_user))
        .route("/people/tokens/{id}/revoke", post(admin::revoke_token))
        .route("/policies", get(policy_pages::policies))
        .route("/vulns", get(insight::vulns_page))
        .route("/vulns/{cve}", get(insight::vuln_page))
        .route("/reports", get(insight::reports_page))
        .route(
            "/static/app.css",
            get(|| async { asset("text/css; charset=utf-8", CSS) }),
        )
        .route(
            "/static/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", JS) }),
        )
        // Keep this after every route: it records the dashboard's actions (audit.rs).
        .route_layer(axum::middleware::from_fn_with_state(
            crate::audit::AuditLayer::new(state.app.clone(), "web"),
            crate::audit::record,
        ))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
}
