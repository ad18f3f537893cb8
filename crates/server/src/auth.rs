//! Credentials: random bearer tokens, stored only as SHA-256 hashes (they carry 256 bits of
//! entropy, so a fast hash is right; passwords, when they come, get argon2).

use crate::audit::AuditSlot;
use crate::error::{ApiError, ApiResult};
use crate::web::authz::{Access, Permission};
use crate::AppState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use base64::Engine;
use patchwarden_store::{ApiToken, Device};
use rand::RngCore;
use sha2::{Digest, Sha256};

pub const ADMIN_TOKEN_PREFIX: &str = "pwa_";
pub const ENROLL_TOKEN_PREFIX: &str = "pwe_";
pub const DEVICE_SECRET_PREFIX: &str = "pwd_";

/// A new random token with a recognisable prefix (so a leaked one is easy to spot in scans).
pub fn new_token(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

pub fn new_id(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::new_v4().simple())
}

fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    let value = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or_else(|| {
            ApiError::unauthorized("missing Authorization header (expected `Bearer <token>`)")
        })?;
    let value = value
        .to_str()
        .map_err(|_| ApiError::unauthorized("Authorization header is not text"))?;
    value
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::unauthorized("Authorization header must be `Bearer <token>`"))
}

/// An authenticated operator: an API token (its role, in its tenant or provider-wide), or a
/// dashboard user acting through the same handlers (their roles, see `web::pages`).
///
/// Every operator handler calls one of [`Operator::require`] (an object of a known tenant),
/// [`Operator::require_scoped`] (a list or creation within the caller's scope) or
/// [`Operator::require_provider`] (shared, provider-level things); the decision comes from
/// the one roles table, `web::authz::Role::allows`.
#[derive(Clone)]
pub struct Operator(pub ApiToken, Access, AuditSlot);

impl Operator {
    /// An API token: one role, in its tenant or provider-wide.
    pub fn for_token(token: ApiToken, audit: AuditSlot) -> Self {
        let access = Access::of_token(token.tenant_id.as_deref(), &token.role);
        audit.actor("token", &token.name, &token.id);
        audit.tenant(token.tenant_id.as_deref());
        Operator(token, access, audit)
    }

    /// A dashboard user: `token` stands for them (name, tenant scope), `access` holds their
    /// roles.
    pub fn for_person(token: ApiToken, access: Access, audit: AuditSlot) -> Self {
        audit.actor("user", &token.name, &token.id);
        audit.tenant(token.tenant_id.as_deref());
        Operator(token, access, audit)
    }

    /// The tenants this operator may act on: `None` = all (provider level).
    pub fn tenant_scope(&self) -> Option<&str> {
        self.0.tenant_id.as_deref()
    }
    pub fn can_access(&self, tenant_id: &str) -> bool {
        self.tenant_scope().is_none_or(|t| t == tenant_id)
    }
    /// Whether this operator's roles allow `p` in this tenant (no audit note; for views that
    /// show or hide things).
    pub fn can(&self, p: Permission, tenant_id: &str) -> bool {
        self.can_access(tenant_id) && self.1.can(tenant_id, p)
    }
    /// The audit note of this request (handlers may add the object or a detail).
    pub fn audit(&self) -> &AuditSlot {
        &self.2
    }

    fn refuse(&self, p: Permission, place: &str) -> ApiError {
        ApiError::forbidden(format!(
            "{} (role {}) may not {} {place}: that needs the role {}",
            self.0.name,
            self.0.role,
            p.describe(),
            p.roles()
        ))
    }

    /// Allows `p` on data of `tenant_id`, or answers 403 (recorded in the audit log).
    pub fn require(&self, p: Permission, tenant_id: &str) -> ApiResult<()> {
        self.2.checked();
        self.2.tenant(Some(tenant_id));
        if !self.can_access(tenant_id) {
            return Err(ApiError::forbidden(format!(
                "{} may not act on tenant {tenant_id}",
                self.0.name
            )));
        }
        if !self.1.can(tenant_id, p) {
            return Err(self.refuse(p, "in this tenant"));
        }
        Ok(())
    }

    /// Allows `p` across the caller's own scope (its tenant, or every tenant for the
    /// provider): lists, and reads that are filtered to the scope.
    pub fn require_scoped(&self, p: Permission) -> ApiResult<()> {
        match self.tenant_scope() {
            Some(t) => {
                let t = t.to_owned();
                self.require(p, &t)
            }
            None => self.require_provider(p),
        }
    }

    /// Allows `p` on provider-level things (shared by every tenant): needs a provider-wide
    /// role that allows it.
    pub fn require_provider(&self, p: Permission) -> ApiResult<()> {
        self.2.checked();
        if self.tenant_scope().is_some() || !self.1.can_provider(p) {
            return Err(self.refuse(p, "at provider level (for every tenant)"));
        }
        Ok(())
    }
}

impl FromRequestParts<AppState> for Operator {
    type Rejection = ApiError;
    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let audit = parts
            .extensions
            .get::<AuditSlot>()
            .cloned()
            .unwrap_or_default();
        let token = bearer(parts)?;
        match state.store.api_token_by_hash(&hash_token(token)).await? {
            Some(t) if t.revoked_at.is_none() => Ok(Operator::for_token(t, audit)),
            Some(t) => {
                audit.actor("token", &t.name, &t.id);
                Err(ApiError::unauthorized("this API token has been revoked"))
            }
            None => Err(ApiError::unauthorized("unknown API token")),
        }
    }
}

/// An authenticated device (its own secret). The device is derived from the credential,
/// never from the request, so a device can only reach its own work.
pub struct DeviceAuth(pub Device);

impl FromRequestParts<AppState> for DeviceAuth {
    type Rejection = ApiError;
    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer(parts)?;
        match state
            .store
            .device_by_secret_hash(&hash_token(token))
            .await?
        {
            Some(d) => Ok(DeviceAuth(d)),
            None => Err(ApiError::new(
                axum::http::StatusCode::UNAUTHORIZED,
                "invalid_device_credential",
                "unknown device credential; enroll this device again",
            )),
        }
    }
}
