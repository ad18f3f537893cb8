//! Login, logout and sessions: argon2id password hashes, server-side sessions whose random id
//! is stored only as a SHA-256 hash, the `pw_session` cookie, CSRF tokens, and login rate
//! limiting (in memory, per login and per client address).

use super::authz::Access;
use super::{page_error, WebError, WebState};
use crate::auth::{hash_token, new_id, new_token};
use argon2::password_hash::SaltString;
use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use patchwarden_store::{Session, User};
use rand::RngCore;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Mutex;

pub const SESSION_COOKIE: &str = "pw_session";
/// The double-submit cookie that protects the login form (there is no session yet).
pub const LOGIN_CSRF_COOKIE: &str = "pw_login_csrf";
/// A session ends 12 hours after login, or after 2 hours without a request.
pub const SESSION_LIFETIME_MS: i64 = 12 * 3600 * 1000;
pub const SESSION_IDLE_MS: i64 = 2 * 3600 * 1000;
/// `last_seen` is written at most once a minute per session.
const TOUCH_EVERY_MS: i64 = 60_000;
/// Failed logins allowed per window, per login name and per client address.
pub const MAX_FAILURES_PER_LOGIN: usize = 5;
pub const MAX_FAILURES_PER_ADDRESS: usize = 20;
pub const FAILURE_WINDOW_MS: i64 = 15 * 60 * 1000;

/// An argon2id hash (PHC string) of a password, with a random salt.
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let mut salt = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("hashing a password: {e}"))?
        .to_string())
}

pub fn verify_password(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(h) => Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok(),
        Err(_) => false,
    }
}

/// A random password for people to copy: 24 characters of base64url (144 bits).
pub fn random_password() -> String {
    new_token("").chars().take(24).collect()
}

/// Recent failed logins, per key (`login:NAME`, `addr:IP`). In memory: a restart forgets
/// them, and each server replica counts on its own.
#[derive(Default)]
pub struct LoginLimiter {
    failures: Mutex<HashMap<String, VecDeque<i64>>>,
}

impl LoginLimiter {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, VecDeque<i64>>) -> T) -> T {
        let mut map = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut map)
    }

    /// How long until a login with these keys may be tried again (None: now).
    pub fn blocked_for(&self, keys: &[(String, usize)], now: i64) -> Option<i64> {
        self.with(|map| {
            keys.iter()
                .filter_map(|(key, max)| {
                    let q = map.get_mut(key)?;
                    while q.front().is_some_and(|t| *t <= now - FAILURE_WINDOW_MS) {
                        q.pop_front();
                    }
                    (q.len() >= *max).then(|| q.front().map_or(0, |t| t + FAILURE_WINDOW_MS - now))
                })
                .max()
        })
    }

    pub fn record_failure(&self, keys: &[(String, usize)], now: i64) {
        self.with(|map| {
            // Bound the memory an attacker can make us use with many names.
            if map.len() > 100_000 {
                map.retain(|_, q| q.back().is_some_and(|t| *t > now - FAILURE_WINDOW_MS));
            }
            for (key, _) in keys {
                map.entry(key.clone()).or_default().push_back(now);
            }
        });
    }

    pub fn forget(&self, key: &str) {
        self.with(|map| map.remove(key));
    }
}

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

/// Constant-time comparison of two secrets.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
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
    pub audit: crate::audit::AuditSlot,
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
}

impl FromRequestParts<WebState> for WebUser {
    type Rejection = WebError;
    async fn from_request_parts(parts: &mut Parts, state: &WebState) -> Result<Self, WebError> {
        let next = parts
            .uri
            .path_and_query()
            .map_or("/".to_owned(), |p| p.as_str().to_owned());
        let to_login = || WebError::Login(next.clone());
        let Some(raw) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Err(to_login());
        };
        let store = &state.app.store;
        let now = crate::now_ms();
        let id_hash = hash_token(raw);
        let Some(session) = store.live_session(&id_hash, now).await? else {
            return Err(to_login());
        };
        if now - session.last_seen > SESSION_IDLE_MS {
            store.delete_session(&id_hash).await?;
            return Err(to_login());
        }
        let user = match store.user(&session.user_id).await? {
            Some(u) if !u.disabled => u,
            _ => {
                store.delete_session(&id_hash).await?;
                return Err(to_login());
            }
        };
        if now - session.last_seen > TOUCH_EVERY_MS {
            store.touch_session(&id_hash, now).await?;
        }
        let access = Access::from_memberships(&store.memberships_of(&user.id).await?);
        let tenant_names = store
            .list_tenants()
            .await?
            .into_iter()
            .map(|t| (t.id, t.name))
            .collect();
        let audit = parts
            .extensions
            .get::<crate::audit::AuditSlot>()
            .cloned()
            .unwrap_or_default();
        audit.actor("user", &user.login, &user.id);
        Ok(WebUser {
            user,
            session,
            access,
            tenant_names,
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
    let audit = parts
        .extensions
        .get::<crate::audit::AuditSlot>()
        .cloned()
        .unwrap_or_default();
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
    let now = crate::now_ms();
    let keys = [
        (
            format!("login:{}", login.to_lowercase()),
            MAX_FAILURES_PER_LOGIN,
        ),
        (format!("addr:{address}"), MAX_FAILURES_PER_ADDRESS),
    ];
    if let Some(wait_ms) = state.limiter.blocked_for(&keys, now) {
        tracing::warn!(login = %login, %address, "login refused: too many failures");
        let minutes = (wait_ms + 59_999) / 60_000;
        return Ok(login_page(
            &state,
            &headers,
            StatusCode::TOO_MANY_REQUESTS,
            next,
            login,
            Some(format!(
                "Too many failed logins for this account or from this address. Try again in {minutes} minute(s)."
            )),
        ));
    }
    let user = state.app.store.user_by_login(&login).await?;
    let password = form.password;
    // Verify against a dummy hash for unknown logins, so timing does not tell which exist.
    let phc = user
        .as_ref()
        .map_or_else(|| state.dummy_hash.clone(), |u| u.password_hash.clone());
    let ok = tokio::task::spawn_blocking(move || verify_password(&password, &phc))
        .await
        .unwrap_or(false);
    let user = match user {
        Some(u) if ok && !u.disabled => u,
        _ => {
            state.limiter.record_failure(&keys, now);
            tracing::info!(login = %login, %address, "failed login");
            return Ok(login_page(
                &state,
                &headers,
                StatusCode::UNAUTHORIZED,
                next,
                login,
                Some("Wrong login or password.".into()),
            ));
        }
    };
    state.limiter.forget(&keys[0].0);
    let raw = new_token("pws_");
    let session = Session {
        id_hash: hash_token(&raw),
        user_id: user.id.clone(),
        created_at: now,
        expires_at: now + SESSION_LIFETIME_MS,
        last_seen: now,
        csrf_token: new_token(""),
    };
    state.app.store.insert_session(&session).await?;
    tracing::info!(user = %user.login, %address, "logged in");
    let secure = secure(&state, &headers);
    let mut resp = Redirect::to(&next).into_response();
    resp.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, &raw, SESSION_LIFETIME_MS / 1000, secure),
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
    state
        .app
        .store
        .delete_session(&user.session.id_hash)
        .await?;
    tracing::info!(user = %user.user.login, "logged out");
    let mut resp = Redirect::to("/login").into_response();
    resp.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, "", 0, secure(&state, &headers)),
    );
    Ok(resp)
}

/// Creates a user with a provider-wide or tenant role (used by the first start and tests).
pub async fn create_user(
    store: &dyn patchwarden_store::Store,
    login: &str,
    password: &str,
    memberships: &[(Option<String>, super::authz::Role)],
) -> anyhow::Result<User> {
    let password = password.to_owned();
    let phc = tokio::task::spawn_blocking(move || hash_password(&password)).await??;
    let user = User {
        id: new_id("usr_"),
        login: login.to_owned(),
        password_hash: phc,
        created_at: crate::now_ms(),
        disabled: false,
    };
    let ms: Vec<_> = memberships
        .iter()
        .map(|(t, r)| patchwarden_store::Membership {
            user_id: user.id.clone(),
            tenant_id: t.clone(),
            role: r.as_str().to_owned(),
        })
        .collect();
    store.create_user(&user, &ms).await?;
    Ok(user)
}
