//! SQLite implementation of [`crate::HistoryStore`]. The SLA deadline of an exposure is
//! computed in SQL with the policy's days bound as parameters (see [`DEADLINE_SQL`]).

use super::*;
use crate::history::*;
use crate::TenantScope;

fn scope_json(scope: &TenantScope) -> Option<String> {
    scope.as_ref().map(|ids| strings_to_json(ids))
}

/// The rating's deadline (ms), `NULL` when the rating has none. Binds: critical, high,
/// medium, low, none, unknown (days, or NULL).
const RATING_DEADLINE: &str = "(first_seen + 86400000 * (CASE rating WHEN 'critical' THEN ? \
     WHEN 'high' THEN ? WHEN 'medium' THEN ? WHEN 'low' THEN ? WHEN 'none' THEN ? ELSE ? END))";

/// The KEV deadline (ms), `NULL` when not in KEV. Binds: honor (0/1), kev days. CISA's due
/// date counts to the end of that day, and only when it is not before first seen.
const KEV_DEADLINE: &str = "(CASE WHEN kev = 0 THEN NULL \
     WHEN ? <> 0 AND kev_due IS NOT NULL \
          AND (CAST(strftime('%s', kev_due) AS INTEGER) + 86400) * 1000 >= first_seen \
     THEN (CAST(strftime('%s', kev_due) AS INTEGER) + 86400) * 1000 \
     ELSE first_seen + 86400000 * ? END)";

fn deadline_sql() -> String {
    // min(a, b) where either may be NULL.
    format!(
        "MIN(COALESCE({RATING_DEADLINE}, {KEV_DEADLINE}), COALESCE({KEV_DEADLINE}, {RATING_DEADLINE}))"
    )
}

fn snapshot_from_row(r: &SqliteRow) -> Result<Snapshot> {
    let failures: String = r.try_get("failures_json")?;
    Ok(Snapshot {
        tenant_id: r.try_get("tenant_id")?,
        day: r.try_get("day")?,
        taken_at: r.try_get("taken_at")?,
        devices: r.try_get("devices")?,
        fully_patched: r.try_get("fully_patched")?,
        security_pending: r.try_get("security_pending")?,
        reboot_pending: r.try_get("reboot_pending")?,
        stale: r.try_get("stale")?,
        exposures_open: r.try_get("exposures_open")?,
        critical: r.try_get("critical")?,
        high: r.try_get("high")?,
        medium: r.try_get("medium")?,
        low: r.try_get("low")?,
        other: r.try_get("other")?,
        kev_open: r.try_get("kev_open")?,
        sla_breaches: r.try_get("sla_breaches")?,
        failures: serde_json::from_str(&failures)
            .map_err(|e| StoreError::Corrupt(format!("failures {failures:?}: {e}")))?,
    })
}

#[async_trait]
impl HistoryStore for SqliteStore {
    async fn put_snapshot(&self, s: &Snapshot) -> Result<bool> {
        let failures = serde_json::to_string(&s.failures).unwrap_or_else(|_| "{}".to_owned());
        let done = sqlx::query(
            "INSERT INTO history_snapshots (tenant_id, day, taken_at, devices, fully_patched, \
             security_pending, reboot_pending, stale, exposures_open, critical, high, medium, low, \
             other, kev_open, sla_breaches, failures_json) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (tenant_id, day) DO NOTHING",
        )
        .bind(&s.tenant_id)
        .bind(&s.day)
        .bind(s.taken_at)
        .bind(s.devices)
        .bind(s.fully_patched)
        .bind(s.security_pending)
        .bind(s.reboot_pending)
        .bind(s.stale)
        .bind(s.exposures_open)
        .bind(s.critical)
        .bind(s.high)
        .bind(s.medium)
        .bind(s.low)
        .bind(s.other)
        .bind(s.kev_open)
        .bind(s.sla_breaches)
        .bind(failures)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn snapshot_tenants(&self, day: &str) -> Result<Vec<String>> {
        let rows =
            sqlx::query("SELECT tenant_id FROM history_snapshots WHERE day = ? ORDER BY tenant_id")
                .bind(day)
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(|r| Ok(r.try_get("tenant_id")?)).collect()
    }

    async fn snapshots(&self, scope: &TenantScope, from: &str, to: &str) -> Result<Vec<Snapshot>> {
        let scope = scope_json(scope);
        let rows = sqlx::query(
            "SELECT * FROM history_snapshots WHERE day >= ? AND day <= ? \
             AND (? IS NULL OR tenant_id IN (SELECT value FROM json_each(?))) \
             ORDER BY day, tenant_id",
        )
        .bind(from)
        .bind(to)
        .bind(&scope)
        .bind(&scope)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(snapshot_from_row).collect()
    }

    async fn exposure_stats(
        &self,
        scope: &TenantScope,
        now: i64,
        sla: &SlaDays,
    ) -> Result<Vec<ExposureStats>> {
        let scope = scope_json(scope);
        let sql = format!(
            "SELECT tenant_id, COUNT(*) AS open, \
             SUM(rating = 'critical') AS critical, SUM(rating = 'high') AS high, \
             SUM(rating = 'medium') AS medium, SUM(rating = 'low') AS low, \
             SUM(rating NOT IN ('critical', 'high', 'medium', 'low')) AS other, \
             SUM(kev <> 0) AS kev, \
             SUM(COALESCE(deadline < ?, 0)) AS breaches, \
             COUNT(DISTINCT CASE WHEN deadline < ? THEN device_id END) AS devices_breaching \
             FROM (SELECT tenant_id, device_id, rating, kev, {} AS deadline FROM exposures \
                   WHERE closed_at IS NULL \
                   AND (? IS NULL OR tenant_id IN (SELECT value FROM json_each(?)))) \
             GROUP BY tenant_id ORDER BY tenant_id",
            deadline_sql()
        );
        let mut q = sqlx::query(&sql).bind(now).bind(now);
        // The deadline expression's binds, in order: rating, KEV, KEV, rating.
        for part in [0, 1, 1, 0] {
            if part == 0 {
                q = q
                    .bind(sla.critical)
                    .bind(sla.high)
                    .bind(sla.medium)
                    .bind(sla.low)
                    .bind(sla.none)
                    .bind(sla.unknown);
            } else {
                q = q.bind(i64::from(sla.honor_kev_due_date)).bind(sla.kev);
            }
        }
        let rows = q.bind(&scope).bind(&scope).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok(ExposureStats {
                    tenant_id: r.try_get("tenant_id")?,
                    open: r.try_get("open")?,
                    critical: r.try_get("critical")?,
                    high: r.try_get("high")?,
                    medium: r.try_get("medium")?,
                    low: r.try_get("low")?,
                    other: r.try_get("other")?,
                    kev: r.try_get("kev")?,
                    sla_breaches: r.try_get("breaches")?,
                    devices_breaching: r.try_get("devices_breaching")?,
                })
            })
            .collect()
    }

    async fn failed_attempts_by_class(
        &self,
        tenant_id: &str,
        from: i64,
        to: i64,
    ) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query(
            "SELECT COALESCE(class, 'unknown') AS class, COUNT(*) AS n FROM attempts \
             WHERE tenant_id = ? AND state = 'failed' AND at >= ? AND at < ? \
             GROUP BY COALESCE(class, 'unknown') ORDER BY n DESC, class",
        )
        .bind(tenant_id)
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("class")?, r.try_get("n")?)))
            .collect()
    }
}
