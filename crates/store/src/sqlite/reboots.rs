//! SQLite implementation of [`crate::RebootStore`].

use super::*;
use crate::reboots::*;

const REBOOT_COLUMNS: &str = "job_id, tenant_id, deployment_id, device_id, mode, withheld, \
     status, packages_json, boot_id_before, requested_at, deadline, came_back_at, \
     boot_id_after, updated_at";

fn reboot_from_row(r: &SqliteRow) -> Result<RebootRecord> {
    let job_id: String = r.try_get("job_id")?;
    Ok(RebootRecord {
        mode: named(r, "reboots", &job_id, "mode")?,
        status: named(r, "reboots", &job_id, "status")?,
        job_id,
        tenant_id: r.try_get("tenant_id")?,
        deployment_id: r.try_get("deployment_id")?,
        device_id: r.try_get("device_id")?,
        withheld: r.try_get("withheld")?,
        packages: strings_from_json(r.try_get("packages_json")?)?,
        boot_id_before: r.try_get("boot_id_before")?,
        requested_at: r.try_get("requested_at")?,
        deadline: r.try_get("deadline")?,
        came_back_at: r.try_get("came_back_at")?,
        boot_id_after: r.try_get("boot_id_after")?,
        updated_at: r.try_get("updated_at")?,
    })
}

#[async_trait]
impl RebootStore for SqliteStore {
    async fn put_reboot_offer(&self, r: &RebootRecord) -> Result<()> {
        sqlx::query(&format!(
            "INSERT INTO reboots ({REBOOT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (job_id) DO UPDATE SET mode = excluded.mode, withheld = excluded.withheld, \
             boot_id_before = excluded.boot_id_before, updated_at = excluded.updated_at \
             WHERE reboots.status = 'offered'"
        ))
        .bind(&r.job_id)
        .bind(&r.tenant_id)
        .bind(&r.deployment_id)
        .bind(&r.device_id)
        .bind(r.mode.as_str())
        .bind(&r.withheld)
        .bind(r.status.as_str())
        .bind(strings_to_json(&r.packages))
        .bind(&r.boot_id_before)
        .bind(r.requested_at)
        .bind(r.deadline)
        .bind(r.came_back_at)
        .bind(&r.boot_id_after)
        .bind(r.updated_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn reboot_of_job(&self, job_id: &str) -> Result<Option<RebootRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {REBOOT_COLUMNS} FROM reboots WHERE job_id = ?"
        ))
        .bind(job_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(reboot_from_row).transpose()
    }

    async fn update_reboot(&self, r: &RebootRecord) -> Result<()> {
        sqlx::query(
            "UPDATE reboots SET mode = ?, withheld = ?, status = ?, packages_json = ?, \
             boot_id_before = ?, requested_at = ?, deadline = ?, came_back_at = ?, \
             boot_id_after = ?, updated_at = ? WHERE job_id = ?",
        )
        .bind(r.mode.as_str())
        .bind(&r.withheld)
        .bind(r.status.as_str())
        .bind(strings_to_json(&r.packages))
        .bind(&r.boot_id_before)
        .bind(r.requested_at)
        .bind(r.deadline)
        .bind(r.came_back_at)
        .bind(&r.boot_id_after)
        .bind(r.updated_at)
        .bind(&r.job_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn reboots_of_device(&self, device_id: &str) -> Result<Vec<RebootRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {REBOOT_COLUMNS} FROM reboots WHERE device_id = ? \
             ORDER BY COALESCE(requested_at, updated_at) DESC, updated_at DESC, job_id"
        ))
        .bind(device_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(reboot_from_row).collect()
    }

    async fn reset_reboot_loops(&self, device_id: &str, now: i64) -> Result<u64> {
        let n = sqlx::query(
            "UPDATE reboots SET status = 'loop_reset', updated_at = ? \
             WHERE device_id = ? AND status = 'loop'",
        )
        .bind(now)
        .bind(device_id)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n)
    }

    async fn overdue_reboots(&self, now: i64) -> Result<Vec<RebootRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {REBOOT_COLUMNS} FROM reboots WHERE status = 'rebooting' AND deadline <= ? \
             ORDER BY deadline, job_id"
        ))
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(reboot_from_row).collect()
    }
}
