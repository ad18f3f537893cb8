//! Credentials: random bearer tokens, stored only as SHA-256 hashes (they carry 256 bits of
//! entropy, so a fast hash is right; passwords, when they come, get argon2).

use crate::error::ApiError;
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

/// An authenticated operator (API token).
pub struct Operator(pub ApiToken);

impl Operator {
    /// The tenants this operator may act on: `None` = all (provider level).
    pub fn tenant_scope(&self) -> Option<&str> {
        self.0.tenant_id.as_deref()
    }
    pub fn can_access(&self, tenant_id: &str) -> bool {
        self.tenant_scope().is_none_or(|t| t == tenant_id)
    }
}

impl FromRequestParts<AppState> for Operator {
    type Rejection = ApiError;
    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer(parts)?;
        match state.store.api_token_by_hash(&hash_token(token)).await? {
            Some(t) if t.revoked_at.is_none() => Ok(Operator(t)),
            Some(_) => Err(ApiError::unauthorized("this API token has been revoked")),
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
