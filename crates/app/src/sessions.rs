//! People logging in: argon2id password hashes, server-side sessions whose random id is
//! stored only as a SHA-256 hash, and login rate limiting (in memory, per login and per
//! client address). The cookie and the pages are the dashboard's (`patchwarden-server`).

use crate::actor::{hash_token, new_id, new_token};
use crate::authz::{Access, Role};
use crate::error::{AppError, AppResult, Credential};
use crate::App;
use argon2::password_hash::SaltString;
use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};
use patchwarden_store::{Membership, Session, User};
use rand::RngCore;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;

/// A session ends 12 hours after login, or after 2 hours without a request.
pub const SESSION_LIFETIME_MS: i64 = 12 * 3600 * 1000;
pub const SESSION_IDLE_MS: i64 = 2 * 3600 * 1000;
/// `last_seen` is written at most once a minute per session.
const TOUCH_EVERY_MS: i64 = 60_000;
/// Failed logins allowed per window, per login name and per client address.
pub const MAX_FAILURES_PER_LOGIN: usize = 5;
pub const MAX_FAILURES_PER_ADDRESS: usize = 20;
pub const FAILURE_WINDOW_MS: i64 = 15 * 60 * 1000;
/// Longest login or password a login form may send (argon2 hashes whatever it is given).
const MAX_CREDENTIAL_BYTES: usize = 1024;

/// An argon2id hash (PHC string) of a password, with a random salt.
pub fn hash_password(password: &str) -> AppResult<String> {
    let mut salt = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut salt);
    let salt =
        SaltString::encode_b64(&salt).map_err(|e| AppError::internal(format!("salt: {e}")))?;
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| AppError::internal(format!("hashing a password: {e}")))?
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

/// Creates a user with provider-wide or tenant roles (the first start, the people API, tests).
/// A taken login is a conflict.
pub async fn create_user(
    state: &App,
    login: &str,
    password: &str,
    memberships: &[(Option<String>, Role)],
) -> AppResult<User> {
    let password = password.to_owned();
    let phc = tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| AppError::internal(format!("hashing a password: {e}")))??;
    let user = User {
        id: new_id("usr_"),
        login: login.to_owned(),
        password_hash: phc,
        created_at: state.clock.now_ms(),
        disabled: false,
    };
    let ms: Vec<_> = memberships
        .iter()
        .map(|(t, r)| Membership {
            user_id: user.id.clone(),
            tenant_id: t.clone(),
            role: *r,
        })
        .collect();
    state
        .store
        .create_user(&user, &ms)
        .await
        .map_err(AppError::from_store_conflict)?;
    Ok(user)
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

/// What the login form sends, with the client address it came from.
pub struct LoginAttempt<'a> {
    pub login: &'a str,
    pub password: String,
    pub address: &'a str,
}

/// A new session: the raw id goes into the cookie, once; only its hash is stored.
pub struct NewSession {
    pub raw_id: String,
    pub session: Session,
    pub user: User,
}

/// Checks a login and opens a session. Too many failures for the login or from the address
/// are refused without looking ([`AppError::TooManyAttempts`]); a wrong login, password or a
/// disabled user all get the same answer, after the same work (a dummy hash is verified for
/// an unknown login, so timing does not tell which logins exist).
pub async fn login(
    state: &App,
    limiter: &LoginLimiter,
    dummy_hash: &str,
    attempt: LoginAttempt<'_>,
) -> AppResult<NewSession> {
    let now = state.clock.now_ms();
    let login = attempt.login.trim();
    let keys = [
        (
            format!("login:{}", login.to_lowercase()),
            MAX_FAILURES_PER_LOGIN,
        ),
        (
            format!("addr:{}", attempt.address),
            MAX_FAILURES_PER_ADDRESS,
        ),
    ];
    if let Some(wait_ms) = limiter.blocked_for(&keys, now) {
        tracing::warn!(login = %login, address = %attempt.address, "login refused: too many failures");
        let minutes = (wait_ms + 59_999) / 60_000;
        return Err(AppError::TooManyAttempts {
            message: format!(
                "Too many failed logins for this account or from this address. Try again in {minutes} minute(s)."
            ),
            retry_after_ms: wait_ms,
        });
    }
    let wrong = || AppError::unauthenticated(Credential::Operator, "Wrong login or password.");
    if login.len() > MAX_CREDENTIAL_BYTES || attempt.password.len() > MAX_CREDENTIAL_BYTES {
        limiter.record_failure(&keys, now);
        return Err(wrong());
    }
    let user = state.store.user_by_login(login).await?;
    let phc = user
        .as_ref()
        .map_or_else(|| dummy_hash.to_owned(), |u| u.password_hash.clone());
    let password = attempt.password;
    let ok = tokio::task::spawn_blocking(move || verify_password(&password, &phc))
        .await
        .unwrap_or(false);
    let user = match user {
        Some(u) if ok && !u.disabled => u,
        _ => {
            limiter.record_failure(&keys, now);
            tracing::info!(login = %login, address = %attempt.address, "failed login");
            return Err(wrong());
        }
    };
    limiter.forget(&keys[0].0);
    let raw_id = new_token("pws_");
    let session = Session {
        id_hash: hash_token(&raw_id),
        user_id: user.id.clone(),
        created_at: now,
        expires_at: now + SESSION_LIFETIME_MS,
        last_seen: now,
        csrf_token: new_token(""),
    };
    state.store.insert_session(&session).await?;
    tracing::info!(user = %user.login, address = %attempt.address, "logged in");
    Ok(NewSession {
        raw_id,
        session,
        user,
    })
}

/// A logged-in person: their user, session, roles and the tenants' names (for display).
pub struct Person {
    pub user: User,
    pub session: Session,
    pub access: Access,
    /// Tenant id → name.
    pub tenant_names: BTreeMap<String, String>,
}

/// The person a session cookie stands for, if the session is live (not expired, not idle
/// too long, its user not disabled); an ended session is deleted.
pub async fn person(state: &App, raw_id: &str) -> AppResult<Option<Person>> {
    let store = &state.store;
    let now = state.clock.now_ms();
    let id_hash = hash_token(raw_id);
    let Some(session) = store.live_session(&id_hash, now).await? else {
        return Ok(None);
    };
    if now - session.last_seen > SESSION_IDLE_MS {
        store.delete_session(&id_hash).await?;
        return Ok(None);
    }
    let user = match store.user(&session.user_id).await? {
        Some(u) if !u.disabled => u,
        _ => {
            store.delete_session(&id_hash).await?;
            return Ok(None);
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
    Ok(Some(Person {
        user,
        session,
        access,
        tenant_names,
    }))
}

/// Ends a session (logout).
pub async fn logout(state: &App, session: &Session) -> AppResult<()> {
    state.store.delete_session(&session.id_hash).await?;
    Ok(())
}

/// Constant-time comparison of two secrets.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}
