//! Login, logout and the session cookie: the `pw_session` cookie carries a random session id
//! (the application stores only its hash, `patchwarden_app::sessions`), forms carry CSRF
//! tokens, and the login form is protected by a double-submit cookie.

use super::{page_error, WebError, WebState};
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use patchwarden_app::actor::new_token;
use patchwarden_app::audit::AuditSlot;
use patchwarden_app::authz::Access;
use patchwarden_app::records::{Session, User};
use patchwarden_app::sessions::{self, same_secret, LoginAttempt, SESSION_LIFETIME_MS};
use patchwarden_app::{Actor, AppError};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;

pub const SESSION_COOKIE: &str = "pw_session";
/// The double-submit cookie that protects the login form (there is no session yet).
pub const LOGIN_CSRF_COOKIE: &str = "pw_login_csrf";

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// `Secure` when the request came over TLS (as a reverse proxy says with
/// `X-Forwarded-Proto: https`) or when `PATCHWARDEN_SECURE_COOKIES=1` says so.
fn secure(state: &WebState, headers: &HeaderMap) -> bool {
    state.secure_cookies
        || headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

fn set_cookie(name: &str, value: &str, max_age_secs: i64, secure: bool) -> HeaderValue {
    let s = format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_secs}{}",
        if secure { "; Secure" } else { "" }
    );
    HeaderValue::from_str(&s).unwrap_or_else(|_| HeaderValue::from_static("invalid=1"))
}

/// A logged-in person, from the session cookie. Pages that take it redirect to `/login`
/// without a live session.
pub struct WebUser {
    pub user: User,
    pub session: Session,
    pub access: Access,
    /// Tenant id → name, for display.
    pub tenant_names: BTreeMap<String, String>,
    /// This request's audit note (who acts is already in it).
    pub audit: AuditSlot,
}

impl WebUser {
    /// Refuses a form whose CSRF token is not this session's.
    pub fn check_csrf(&self, token: &str) -> Result<(), WebError> {
        if same_secret(token, &self.session.csrf_token) {
            Ok(())
        } else {
            Err(page_error(
                StatusCode::FORBIDDEN,
                "This form has expired or did not come from this site (CSRF check failed). Reload the page and try again.",
            ))
        }
    }

    pub fn tenant_name(&self, id: &str) -> String {
        self.tenant_names.get(id).cloned().unwrap_or_default()
    }

    /// This person acting in one tenant (`Some`), or across every tenant (`None`, for a
    /// provider-wide person): what the application's use cases are called with.
    pub fn actor(&self, tenant_id: Option<&str>) -> Actor {
        Actor::for_person(
            &self.user.id,
            &self.user.login,
            self.access.clone(),
            tenant_id,
            self.audit.clone(),
        )
    }

    /// The actors for a list over everything this person may see: one provider-wide actor,
    /// or one per tenant they hold a role in.
    pub fn scoped_actors(&self) -> Vec<Actor> {
        match self.access.scope() {
            None => vec![self.actor(None)],
            Some(ids) => ids.iter().map(|t| self.actor(Some(t))).collect(),
        }
    }
}

impl FromRequestParts<WebState> for WebUser {
    type Rejection = WebError;
    async fn from_request_parts(parts: &mut Parts, state: &WebState) -> Result<Self, WebError> {
        let next = parts
            .uri
            .path_and_query()
            .map_or("/".to_owned(), |p| p.as_str().to_owned());
        let Some(raw) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Err(WebError::Login(next));
        };
        let Some(person) = sessions::person(&state.app, raw).await? else {
            return Err(WebError::Login(next));
        };
        let audit = crate::extract::audit_slot(parts);
        audit.actor("user", &person.user.login, &person.user.id);
        Ok(WebUser {
            user: person.user,
            session: person.session,
            access: person.access,
            tenant_names: person.tenant_names,
            audit,
        })
    }
}

#[derive(Debug, Deserialize, Default)]
pub struct LoginQuery {
    #[serde(default)]
    pub next: Option<String>,
}

/// Only a path on this site (no `//host` or scheme) is followed after login.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.to_owned(),
        _ => "/".to_owned(),
    }
}

#[derive(askama::Template)]
#[template(path = "login.html")]
struct LoginPage {
    csrf: String,
    next: String,
    login: String,
    error: Option<String>,
}

fn login_page(
    state: &WebState,
    headers: &HeaderMap,
    status: StatusCode,
    next: String,
    login: String,
    error: Option<String>,
) -> Response {
    let csrf = new_token("");
    let page = LoginPage {
        csrf: csrf.clone(),
        next,
        login,
        error,
    };
    let mut resp = (status, super::render(&page)).into_response();
    resp.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(LOGIN_CSRF_COOKIE, &csrf, 3600, secure(state, headers)),
    );
    resp
}

pub async fn login_form(
    State(state): State<WebState>,
    headers: HeaderMap,
    Query(q): Query<LoginQuery>,
) -> Response {
    login_page(
        &state,
        &headers,
        StatusCode::OK,
        safe_next(q.next.as_deref()),
        String::new(),
        None,
    )
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    pub login: String,
    pub password: String,
    #[serde(default)]
    pub csrf: String,
    #[serde(default)]
    pub next: Option<String>,
}

fn client_address(parts_ext: &axum::http::Extensions) -> String {
    parts_ext
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| "unknown".to_owned(), |c| c.0.ip().to_string())
}

pub async fn login_submit(
    State(state): State<WebState>,
    request: axum::extract::Request,
) -> Result<Response, WebError> {
    let (parts, body) = request.into_parts();
    let headers = parts.headers.clone();
    let address = client_address(&parts.extensions);
    let audit = crate::extract::audit_slot(&parts);
    let request = axum::extract::Request::from_parts(parts, body);
    let Form(form) = Form::<LoginForm>::from_request(request, &())
        .await
        .map_err(|e| page_error(StatusCode::BAD_REQUEST, &format!("Invalid login form: {e}")))?;
    let next = safe_next(form.next.as_deref());
    let login = form.login.trim().to_owned();
    audit.actor("user", &login, "");
    let expected = cookie(&headers, LOGIN_CSRF_COOKIE).unwrap_or_default();
    if expected.is_empty() || !same_secret(&form.csrf, expected) {
        return Ok(login_page(
            &state,
            &headers,
            StatusCode::FORBIDDEN,
            next,
            login,
            Some("The login form expired (CSRF check failed); please try again.".into()),
        ));
    }
    let attempt = LoginAttempt {
        login: &login,
        password: form.password,
        address: &address,
    };
    let opened = match sessions::login(&state.app, &state.limiter, &state.dummy_hash, attempt).await
    {
        Ok(s) => s,
        Err(e @ (AppError::TooManyAttempts { .. } | AppError::Unauthenticated { .. })) => {
            let status = match e {
                AppError::TooManyAttempts { .. } => StatusCode::TOO_MANY_REQUESTS,
                _ => StatusCode::UNAUTHORIZED,
            };
            return Ok(login_page(
                &state,
                &headers,
                status,
                next,
                login,
                Some(e.to_string()),
            ));
        }
        Err(e) => return Err(e.into()),
    };
    let secure = secure(&state, &headers);
    let mut resp = Redirect::to(&next).into_response();
    resp.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(
            SESSION_COOKIE,
            &opened.raw_id,
            SESSION_LIFETIME_MS / 1000,
            secure,
        ),
    );
    resp.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(LOGIN_CSRF_COOKIE, "", 0, secure),
    );
    Ok(resp)
}

#[derive(askama::Template)]
#[template(path = "logout.html")]
struct LogoutPage {
    nav: super::Nav,
}

pub async fn logout_form(user: WebUser) -> Result<Response, WebError> {
    Ok(super::render(&LogoutPage {
        nav: super::Nav::new(&user, "logout"),
    })
    .into_response())
}

#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    pub csrf: String,
}

pub async fn logout_submit(
    State(state): State<WebState>,
    headers: HeaderMap,
    user: WebUser,
    Form(form): Form<CsrfForm>,
) -> Result<Response, WebError> {
    user.check_csrf(&form.csrf)?;
    sessions::logout(&state.app, &user.session).await?;
    tracing::info!(user = %user.user.login, "logged out");
    let mut resp = Redirect::to("/login").into_response();
    resp.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, "", 0, secure(&state, &headers)),
    );
    Ok(resp)
}
