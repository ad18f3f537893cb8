//! Operator API types for people and credentials: users, API tokens, the audit log.

use patchwarden_core::{AuditOutcome, Role};
use serde::{Deserialize, Serialize};

#[cfg(feature = "openapi")]
use utoipa::ToSchema;

/// A role held in one tenant, or in every tenant (`tenant: None`, the provider).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct RoleGrant {
    /// Tenant name; absent: every tenant.
    #[serde(default)]
    pub tenant: Option<String>,
    /// `admin`, `operator`, `approver` or `viewer`.
    pub role: Role,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct UserView {
    pub id: String,
    pub login: String,
    pub created_at: String,
    pub disabled: bool,
    pub roles: Vec<RoleGrant>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct CreateUserRequest {
    pub login: String,
    /// `admin`, `operator`, `approver` or `viewer`.
    /// `admin`, `operator`, `approver` or `viewer`.
    pub role: String,
    /// Tenant name. Absent: the caller's own tenant, or every tenant for a provider admin.
    #[serde(default)]
    pub tenant: Option<String>,
    /// The password (at least 12 characters); absent: the server generates one and answers
    /// it once.
    #[serde(default)]
    pub password: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct UserCreated {
    pub id: String,
    pub login: String,
    pub roles: Vec<RoleGrant>,
    /// The generated password, shown this once (absent when the request gave one).
    #[serde(default)]
    pub password: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct TokenView {
    pub id: String,
    pub name: String,
    pub role: Role,
    /// Tenant name; absent: every tenant (provider level).
    #[serde(default)]
    pub tenant: Option<String>,
    pub created_at: String,
    #[serde(default)]
    pub revoked_at: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct CreateTokenRequest {
    pub name: String,
    /// `admin`, `operator`, `approver` or `viewer`.
    pub role: String,
    /// Tenant name. Absent: the caller's own tenant, or every tenant for a provider admin.
    #[serde(default)]
    pub tenant: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct TokenCreated {
    #[serde(flatten)]
    pub info: TokenView,
    /// The token itself, shown this once; only its hash is stored.
    pub token: String,
}

/// One audit entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct AuditEntryView {
    pub id: i64,
    /// RFC 3339, UTC.
    pub at: String,
    /// Tenant name; empty for provider-level entries.
    pub tenant: String,
    /// `user`, `token` or `anonymous`.
    pub actor_kind: String,
    pub actor: String,
    /// `api` (the API and the CLI) or `web` (the dashboard).
    pub via: String,
    /// Method and route, e.g. `POST /api/v1/deployments/{id}/approve`.
    pub action: String,
    #[serde(default)]
    pub object: Option<String>,
    #[serde(default)]
    pub detail: Option<String>,
    /// `ok`, `denied` or `failed`.
    pub outcome: AuditOutcome,
    pub status: u16,
    #[serde(default)]
    pub address: Option<String>,
}

/// `GET /api/v1/audit` query.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
pub struct AuditQuery {
    /// Only this tenant (name).
    #[serde(default)]
    pub tenant: Option<String>,
    /// From this time (RFC 3339, inclusive).
    #[serde(default)]
    pub from: Option<String>,
    /// Up to this time (RFC 3339, exclusive).
    #[serde(default)]
    pub to: Option<String>,
    /// `json` (default) or `csv`.
    #[serde(default)]
    pub format: Option<String>,
    /// At most this many entries, newest first (default 10000).
    #[serde(default)]
    pub limit: Option<u32>,
}
