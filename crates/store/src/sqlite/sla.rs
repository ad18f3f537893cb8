//! SQLite implementation of [`crate::SlaStore`].

use super::*;
use crate::sla::*;

const SLA_COLUMNS: &str = "tenant_id, kev_days, honor_kev_due_date, critical_days, high_days, \
     medium_days, low_days, none_days, unknown_days, updated_at, updated_by";

fn sla_from_row(r: &SqliteRow) -> Result<SlaPolicyRecord> {
    Ok(SlaPolicyRecord {
        tenant_id: r.try_get("tenant_id")?,
        kev_days: r.try_get("kev_days")?,
        honor_kev_due_date: r.try_get::<i64, _>("honor_kev_due_date")? != 0,
        critical_days: r.try_get("critical_days")?,
        high_days: r.try_get("high_days")?,
        medium_days: r.try_get("medium_days")?,
        low_days: r.try_get("low_days")?,
        none_days: r.try_get("none_days")?,
        unknown_days: r.try_get("unknown_days")?,
        updated_at: r.try_get("updated_at")?,
        updated_by: r.try_get("updated_by")?,
    })
}

#[async_trait]
impl SlaStore for SqliteStore {
    async fn sla_policy(&self, tenant_id: &str) -> Result<Option<SlaPolicyRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {SLA_COLUMNS} FROM sla_policies WHERE tenant_id = ?"
        ))
        .bind(tenant_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(sla_from_row).transpose()
    }

    async fn list_sla_policies(&self) -> Result<Vec<SlaPolicyRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {SLA_COLUMNS} FROM sla_policies ORDER BY tenant_id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(sla_from_row).collect()
    }

    async fn put_sla_policy(&self, p: &SlaPolicyRecord) -> Result<()> {
        sqlx::query(&format!(
            "INSERT INTO sla_policies ({SLA_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (tenant_id) DO UPDATE SET kev_days = excluded.kev_days, \
             honor_kev_due_date = excluded.honor_kev_due_date, \
             critical_days = excluded.critical_days, high_days = excluded.high_days, \
             medium_days = excluded.medium_days, low_days = excluded.low_days, \
             none_days = excluded.none_days, unknown_days = excluded.unknown_days, \
             updated_at = excluded.updated_at, updated_by = excluded.updated_by"
        ))
        .bind(&p.tenant_id)
        .bind(p.kev_days)
        .bind(i64::from(p.honor_kev_due_date))
        .bind(p.critical_days)
        .bind(p.high_days)
        .bind(p.medium_days)
        .bind(p.low_days)
        .bind(p.none_days)
        .bind(p.unknown_days)
        .bind(p.updated_at)
        .bind(&p.updated_by)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn delete_sla_policy(&self, tenant_id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM sla_policies WHERE tenant_id = ?")
            .bind(tenant_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
