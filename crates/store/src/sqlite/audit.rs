//! SQLite implementation of [`crate::AuditStore`].

use super::*;
use crate::audit::*;

fn entry_from_row(r: &SqliteRow) -> Result<AuditEntry> {
    let id: i64 = r.try_get("id")?;
    Ok(AuditEntry {
        id,
        at: r.try_get("at")?,
        tenant_id: r.try_get("tenant_id")?,
        actor_kind: r.try_get("actor_kind")?,
        actor: r.try_get("actor")?,
        actor_id: r.try_get("actor_id")?,
        via: r.try_get("via")?,
        action: r.try_get("action")?,
        object: r.try_get("object")?,
        detail: r.try_get("detail")?,
        outcome: named(r, "audit_log", id, "outcome")?,
        status: r.try_get("status")?,
        address: r.try_get("address")?,
    })
}

#[async_trait]
impl AuditStore for SqliteStore {
    async fn append_audit(&self, e: &AuditEntry) -> Result<i64> {
        let id = sqlx::query(
            "INSERT INTO audit_log (at, tenant_id, actor_kind, actor, actor_id, via, action, \
             object, detail, outcome, status, address) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(e.at)
        .bind(&e.tenant_id)
        .bind(&e.actor_kind)
        .bind(&e.actor)
        .bind(&e.actor_id)
        .bind(&e.via)
        .bind(&e.action)
        .bind(&e.object)
        .bind(&e.detail)
        .bind(e.outcome.as_str())
        .bind(e.status)
        .bind(&e.address)
        .execute(&self.pool)
        .await?
        .last_insert_rowid();
        Ok(id)
    }

    async fn list_audit(&self, f: &AuditFilter) -> Result<Vec<AuditEntry>> {
        let mut sql = String::from("SELECT * FROM audit_log WHERE at >= ? AND at < ?");
        if let Some(ts) = &f.tenants {
            if ts.is_empty() {
                return Ok(Vec::new());
            }
            sql.push_str(" AND tenant_id IN (");
            sql.push_str(&vec!["?"; ts.len()].join(", "));
            sql.push(')');
        }
        sql.push_str(" ORDER BY at DESC, id DESC LIMIT ?");
        let mut q = sqlx::query(&sql)
            .bind(f.from.unwrap_or(i64::MIN))
            .bind(f.to.unwrap_or(i64::MAX));
        for t in f.tenants.iter().flatten() {
            q = q.bind(t);
        }
        let rows = q.bind(f.limit.unwrap_or(-1)).fetch_all(&self.pool).await?;
        rows.iter().map(entry_from_row).collect()
    }
}
