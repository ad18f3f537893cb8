//! People: users, their roles per tenant (memberships), and server-side login sessions.
//! Part of the [`crate::Store`] interface (a supertrait), kept apart for readability.

use crate::{ApiToken, Result};
use async_trait::async_trait;
use patchwarden_core::Role;

#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub id: String,
    /// What the person types to log in: an email address, or `admin`.
    pub login: String,
    /// argon2id PHC string.
    pub password_hash: String,
    pub created_at: i64,
    pub disabled: bool,
}

/// A role held by a user in one tenant, or in every tenant (`tenant_id: None`, the provider).
#[derive(Debug, Clone, PartialEq)]
pub struct Membership {
    pub user_id: String,
    pub tenant_id: Option<String>,
    pub role: Role,
}

/// A login session; `id_hash` is the SHA-256 of the random id the cookie carries.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    pub id_hash: String,
    pub user_id: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub last_seen: i64,
    pub csrf_token: String,
}

#[async_trait]
pub trait UserStore: Send + Sync {
    /// Creates a user with their memberships, all or nothing. A taken login is a
    /// [`crate::StoreError::Conflict`].
    async fn create_user(&self, user: &User, memberships: &[Membership]) -> Result<()>;
    async fn user_by_login(&self, login: &str) -> Result<Option<User>>;
    async fn user(&self, id: &str) -> Result<Option<User>>;
    async fn count_users(&self) -> Result<i64>;
    async fn set_user_disabled(&self, id: &str, disabled: bool) -> Result<bool>;
    async fn memberships_of(&self, user_id: &str) -> Result<Vec<Membership>>;
    /// Every user, by login.
    async fn list_users(&self) -> Result<Vec<User>>;
    /// Every membership of every user.
    async fn all_memberships(&self) -> Result<Vec<Membership>>;

    /// API tokens, oldest first: of one tenant (`Some`), or all of them, provider-level
    /// ones included (`None`). Hashes are part of the record; never show them.
    async fn list_api_tokens(&self, tenant_id: Option<&str>) -> Result<Vec<ApiToken>>;
    async fn api_token(&self, id: &str) -> Result<Option<ApiToken>>;
    /// Marks a token revoked at `now` (it stops working at once). False when there is no
    /// such token or it was already revoked.
    async fn revoke_api_token(&self, id: &str, now: i64) -> Result<bool>;

    async fn insert_session(&self, session: &Session) -> Result<()>;
    /// The session with this id hash, if it has not expired at `now`.
    async fn live_session(&self, id_hash: &str, now: i64) -> Result<Option<Session>>;
    async fn touch_session(&self, id_hash: &str, now: i64) -> Result<()>;
    async fn delete_session(&self, id_hash: &str) -> Result<()>;
    /// Removes sessions expired at `now`; returns how many.
    async fn delete_expired_sessions(&self, now: i64) -> Result<u64>;
}
