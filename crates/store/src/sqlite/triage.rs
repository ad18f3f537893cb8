//! SQLite implementation of [`crate::TriageStore`].

use super::*;
use crate::triage::*;

fn triage_from_row(r: &SqliteRow) -> Result<Triage> {
    let device_id: String = r.try_get("device_id")?;
    let package: String = r.try_get("package")?;
    Ok(Triage {
        status: named(
            r,
            "failure_triage",
            format!("({device_id}, {package})"),
            "status",
        )?,
        tenant_id: r.try_get("tenant_id")?,
        device_id,
        package,
        assignee: r.try_get("assignee")?,
        assigned_by: r.try_get("assigned_by")?,
        assigned_at: r.try_get("assigned_at")?,
        reason: r.try_get("reason")?,
        accepted_until: r.try_get("accepted_until")?,
        failure_attempt_id: r.try_get("failure_attempt_id")?,
        decided_by: r.try_get("decided_by")?,
        decided_at: r.try_get("decided_at")?,
    })
}

async fn fetch(pool: &SqlitePool, device_id: &str, package: &str) -> Result<Triage> {
    let row = sqlx::query("SELECT * FROM failure_triage WHERE device_id = ? AND package = ?")
        .bind(device_id)
        .bind(package)
        .fetch_one(pool)
        .await?;
    triage_from_row(&row)
}

#[async_trait]
impl TriageStore for SqliteStore {
    async fn triage(&self, device_id: &str, package: &str) -> Result<Option<Triage>> {
        let row = sqlx::query("SELECT * FROM failure_triage WHERE device_id = ? AND package = ?")
            .bind(device_id)
            .bind(package)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(triage_from_row).transpose()
    }

    async fn list_triage(&self, tenant_id: Option<&str>) -> Result<Vec<Triage>> {
        let rows = sqlx::query(
            "SELECT * FROM failure_triage WHERE (? IS NULL OR tenant_id = ?) \
             ORDER BY device_id, package",
        )
        .bind(tenant_id)
        .bind(tenant_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(triage_from_row).collect()
    }

    async fn assign_failure(
        &self,
        tenant_id: &str,
        device_id: &str,
        package: &str,
        assignee: Option<&str>,
        by: &str,
        at: i64,
    ) -> Result<Triage> {
        sqlx::query(
            "INSERT INTO failure_triage (tenant_id, device_id, package, assignee, assigned_by, assigned_at, status) \
             VALUES (?, ?, ?, ?, ?, ?, 'open') \
             ON CONFLICT (device_id, package) DO UPDATE SET assignee = excluded.assignee, \
             assigned_by = excluded.assigned_by, assigned_at = excluded.assigned_at",
        )
        .bind(tenant_id)
        .bind(device_id)
        .bind(package)
        .bind(assignee)
        .bind(by)
        .bind(at)
        .execute(&self.pool)
        .await?;
        fetch(&self.pool, device_id, package).await
    }

    async fn decide_failure(&self, d: &TriageDecision) -> Result<Triage> {
        sqlx::query(
            "INSERT INTO failure_triage (tenant_id, device_id, package, status, reason, accepted_until, \
             failure_attempt_id, decided_by, decided_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (device_id, package) DO UPDATE SET status = excluded.status, \
             reason = excluded.reason, accepted_until = excluded.accepted_until, \
             failure_attempt_id = excluded.failure_attempt_id, decided_by = excluded.decided_by, \
             decided_at = excluded.decided_at",
        )
        .bind(&d.tenant_id)
        .bind(&d.device_id)
        .bind(&d.package)
        .bind(d.status.as_str())
        .bind(&d.reason)
        .bind(d.accepted_until)
        .bind(d.failure_attempt_id)
        .bind(&d.by)
        .bind(d.at)
        .execute(&self.pool)
        .await?;
        fetch(&self.pool, &d.device_id, &d.package).await
    }

    async fn failure_streaks(&self, f: &FailureFilter) -> Result<Vec<FailureStreak>> {
        // A failed attempt belongs to the current streak when no attempt after it (same device
        // and package) succeeded or was skipped: the same notion of "failed" as
        // `current_failures`.
        let rows = sqlx::query(
            "SELECT a.device_id, a.package, MIN(a.at) AS first_at, COUNT(*) AS attempts FROM attempts a \
             WHERE (a.state = 'failed' OR COALESCE(a.class, '') = 'reboot_loop') \
             AND (? IS NULL OR a.tenant_id = ?) AND (? IS NULL OR a.device_id = ?) \
             AND NOT EXISTS (SELECT 1 FROM attempts b WHERE b.device_id = a.device_id AND b.package = a.package \
                             AND (b.at > a.at OR (b.at = a.at AND b.id > a.id)) \
                             AND NOT (b.state = 'failed' OR COALESCE(b.class, '') = 'reboot_loop')) \
             GROUP BY a.device_id, a.package ORDER BY a.device_id, a.package",
        )
        .bind(&f.tenant_id)
        .bind(&f.tenant_id)
        .bind(&f.device_id)
        .bind(&f.device_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(FailureStreak {
                    device_id: r.try_get("device_id")?,
                    package: r.try_get("package")?,
                    first_at: r.try_get("first_at")?,
                    attempts: r.try_get("attempts")?,
                })
            })
            .collect()
    }
}
