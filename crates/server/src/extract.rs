//! Who is calling: the operator a bearer token stands for, or the device a device secret
//! belongs to. The decisions are the application's (`patchwarden_app::actor`); this module
//! only reads the header and the request's audit slot.

use crate::error::ApiError;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use patchwarden_app::audit::AuditSlot;
use patchwarden_app::error::Credential;
use patchwarden_app::records::Device;
use patchwarden_app::{Actor, App, AppError};

/// The bearer token of a request: `None` without an Authorization header.
fn bearer(parts: &Parts) -> Result<Option<&str>, ApiError> {
    let Some(value) = parts.headers.get(axum::http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    let invalid = |m: &str| ApiError::from(AppError::unauthenticated(Credential::Operator, m));
    let value = value
        .to_str()
        .map_err(|_| invalid("Authorization header is not text"))?;
    value
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(Some)
        .ok_or_else(|| invalid("Authorization header must be `Bearer <token>`"))
}

/// The request's audit slot (put there by the audit middleware).
pub fn audit_slot(parts: &Parts) -> AuditSlot {
    parts
        .extensions
        .get::<AuditSlot>()
        .cloned()
        .unwrap_or_default()
}

/// An authenticated operator (an API token).
pub struct Operator(pub Actor);

impl FromRequestParts<App> for Operator {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Self::Rejection> {
        let token = bearer(parts)?;
        let actor =
            patchwarden_app::actor::authenticate_operator(app, token, audit_slot(parts)).await?;
        Ok(Operator(actor))
    }
}

/// An authenticated device (its own secret). The device is derived from the credential,
/// never from the request, so a device can only reach its own work.
pub struct DeviceAuth(pub Device);

impl FromRequestParts<App> for DeviceAuth {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Self::Rejection> {
        let Some(token) = bearer(parts)? else {
            return Err(AppError::unauthenticated(
                Credential::Operator,
                "missing Authorization header (expected `Bearer <token>`)",
            )
            .into());
        };
        Ok(DeviceAuth(
            patchwarden_app::actor::authenticate_device(app, token).await?,
        ))
    }
}
