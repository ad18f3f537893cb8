//! The audit log: an append-only record of every operator action (who, when, what, which
//! tenant, from where, and whether it was allowed). Part of the [`crate::Store`] interface.
//!
//! There is deliberately no method to change or remove an entry; the SQLite schema refuses
//! `UPDATE` and `DELETE` on the table as well.

use crate::Result;
use async_trait::async_trait;
use patchwarden_core::AuditOutcome;

/// One recorded action.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    /// Assigned by the store (increasing); ignored on append.
    pub id: i64,
    pub at: i64,
    /// The tenant the action concerned; `None`: provider level (or not known, e.g. an
    /// unauthenticated request).
    pub tenant_id: Option<String>,
    /// `user`, `token` or `anonymous`.
    pub actor_kind: String,
    /// The user's login or the token's name.
    pub actor: String,
    /// The user or token id.
    pub actor_id: Option<String>,
    /// `api` or `web`.
    pub via: String,
    /// What was done, e.g. `POST /api/v1/deployments/{id}/approve`.
    pub action: String,
    /// The object acted on (a deployment, device, user or token id), when there is one.
    pub object: Option<String>,
    /// A short detail: the reason given, or why it was refused.
    pub detail: Option<String>,
    /// `denied`: authentication or authorisation refused; `failed`: any other error.
    pub outcome: AuditOutcome,
    /// The HTTP status answered.
    pub status: i64,
    /// The client address (the TCP peer, or the forwarded address behind a trusted proxy).
    pub address: Option<String>,
}

/// Which entries to read. `tenants`: `None` = every entry (provider level, including entries
/// without a tenant); `Some(ids)` = only entries of these tenants.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub tenants: Option<Vec<String>>,
    /// From this time, inclusive (unix ms).
    pub from: Option<i64>,
    /// Up to this time, exclusive (unix ms).
    pub to: Option<i64>,
    /// At most this many entries, newest first (`None`: all).
    pub limit: Option<i64>,
}

#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Appends an entry; returns its id. Durable when it returns.
    async fn append_audit(&self, entry: &AuditEntry) -> Result<i64>;
    /// Entries matching the filter, newest first.
    async fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>>;
}
