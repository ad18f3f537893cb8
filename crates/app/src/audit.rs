//! The audit log: what one request's handling learnt about who did what ([`AuditSlot`],
//! filled in by authentication, [`crate::actor::Actor::require`] and the use cases), appending
//! entries, and reading them back (JSON rows or CSV) for those allowed to.
//!
//! The HTTP front end (`patchwarden-server`'s audit middleware) gives each request a slot
//! and appends one entry after the response: for every request that changes something, and
//! for every refusal (401/403), reads included. Reads that succeed are not recorded.

use crate::actor::Actor;
pub use crate::actor::{AuditNote, AuditSlot};
use crate::authz::Permission;
use crate::error::{AppError, AppResult};
use crate::{rfc3339, App};
pub use patchwarden_store::AuditEntry;
use patchwarden_store::AuditFilter;
use patchwarden_wire::access::{AuditEntryView, AuditQuery};
use std::collections::HashMap;

pub fn parse_time(what: &'static str, s: &str) -> AppResult<i64> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| {
            AppError::invalid(
                what,
                format!(
                    "{what} must be an RFC 3339 time like 2026-11-25T10:00:00Z, got {s:?}: {e}"
                ),
            )
        })?;
    Ok((t.unix_timestamp_nanos() / 1_000_000) as i64)
}

/// The entries this caller may read, with tenant names, newest first.
pub async fn read(state: &App, op: &Actor, q: &AuditQuery) -> AppResult<Vec<AuditEntryView>> {
    let tenants = state.store.list_tenants().await?;
    let scope: Option<Vec<String>> = match (&q.tenant, op.tenant_scope()) {
        (Some(name), _) => {
            let t = tenants
                .iter()
                .find(|t| &t.name == name && op.can_access(&t.id))
                .ok_or_else(|| AppError::not_found(format!("no tenant {name:?}")))?;
            op.require(Permission::ReadAudit, &t.id)?;
            Some(vec![t.id.clone()])
        }
        (None, Some(own)) => {
            op.require(Permission::ReadAudit, own)?;
            Some(vec![own.to_owned()])
        }
        (None, None) => {
            op.require_scoped(Permission::ReadAudit)?;
            None
        }
    };
    let filter = AuditFilter {
        tenants: scope,
        from: q
            .from
            .as_deref()
            .map(|s| parse_time("from", s))
            .transpose()?,
        to: q.to.as_deref().map(|s| parse_time("to", s)).transpose()?,
        limit: Some(i64::from(q.limit.unwrap_or(10_000).min(100_000))),
    };
    let names: HashMap<String, String> = tenants.into_iter().map(|t| (t.id, t.name)).collect();
    Ok(state
        .store
        .list_audit(&filter)
        .await?
        .into_iter()
        .map(|e| AuditEntryView {
            id: e.id,
            at: rfc3339(e.at),
            tenant: e
                .tenant_id
                .as_ref()
                .and_then(|t| names.get(t).cloned())
                .unwrap_or_default(),
            actor_kind: e.actor_kind,
            actor: e.actor,
            via: e.via,
            action: e.action,
            object: e.object,
            detail: e.detail,
            outcome: e.outcome,
            status: u16::try_from(e.status).unwrap_or(0),
            address: e.address,
        })
        .collect())
}

/// A CSV field: quoted when it holds a separator, quote or line break; a leading `=`, `+`,
/// `-` or `@` is prefixed with `'` so spreadsheets do not run it as a formula.
fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

pub fn to_csv(rows: &[AuditEntryView]) -> String {
    let mut out = String::from(
        "id,at,tenant,actor_kind,actor,via,action,object,detail,outcome,status,address\n",
    );
    for r in rows {
        let fields = [
            r.id.to_string(),
            r.at.clone(),
            r.tenant.clone(),
            r.actor_kind.clone(),
            r.actor.clone(),
            r.via.clone(),
            r.action.clone(),
            r.object.clone().unwrap_or_default(),
            r.detail.clone().unwrap_or_default(),
            r.outcome.as_str().to_owned(),
            r.status.to_string(),
            r.address.clone().unwrap_or_default(),
        ];
        let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        out.push_str(&line.join(","));
        out.push('\n');
    }
    out
}

/// Appends one entry (the audit table refuses updates and deletes).
pub async fn append(app: &App, entry: &AuditEntry) -> AppResult<()> {
    app.store.append_audit(entry).await?;
    Ok(())
}

/// The formats the audit log is read in.
pub fn check_format(format: Option<&str>) -> AppResult<bool> {
    match format.unwrap_or("json") {
        "json" => Ok(false),
        "csv" => Ok(true),
        other => Err(AppError::invalid(
            "format",
            format!("format must be json or csv, got {other:?}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quoting() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=cmd()"), "'=cmd()");
    }
}
