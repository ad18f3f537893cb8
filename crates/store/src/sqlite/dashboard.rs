//! SQLite implementation of [`crate::DashboardStore`]: aggregates and the paged device list
//! in SQL (a tenant scope is bound as a JSON array and read with `json_each`).

use super::*;
use crate::dashboard::*;
use patchwarden_core::DeviceStatus;

fn scope_json(scope: &TenantScope) -> Option<String> {
    scope.as_ref().map(|ids| strings_to_json(ids))
}

/// The status of a device at the time bound twice into it (see [`STALE_AFTER_MS`]).
/// Binds: now, stale-after (NULL: 3 check-ins + 30 s), now, offline-after ([`StatusRule`]).
const STATUS_SQL: &str = "CASE WHEN last_seen IS NULL THEN 'new' \
     WHEN ? - last_seen <= COALESCE(?, 3 * checkin_interval_secs * 1000 + 30000) THEN 'online' \
     WHEN ? - last_seen <= ? THEN 'stale' ELSE 'offline' END";

#[async_trait]
impl DashboardStore for SqliteStore {
    fn set_status_rule(&self, rule: StatusRule) {
        *self.status_rule.write().unwrap_or_else(|e| e.into_inner()) = rule;
    }

    fn status_rule(&self) -> StatusRule {
        *self.status_rule.read().unwrap_or_else(|e| e.into_inner())
    }

    async fn fleet_stats(&self, scope: &TenantScope, now: i64) -> Result<Vec<FleetStats>> {
        let scope = scope_json(scope);
        let rule = self.status_rule();
        let rows = sqlx::query(&format!(
            "SELECT tenant_id, COUNT(*) AS devices, \
             SUM(pending_updates = 0) AS fully_patched, \
             SUM(security_updates > 0) AS security_pending, \
             SUM(reboot_required <> 0) AS reboot_pending, \
             SUM(status = 'online') AS online, SUM(status = 'stale') AS stale, \
             SUM(status = 'offline') AS offline, SUM(status = 'new') AS never_seen \
             FROM (SELECT tenant_id, pending_updates, security_updates, reboot_required, \
                   {STATUS_SQL} AS status FROM devices \
                   WHERE (? IS NULL OR tenant_id IN (SELECT value FROM json_each(?)))) \
             GROUP BY tenant_id ORDER BY tenant_id"
        ))
        .bind(now)
        .bind(rule.stale_after_ms)
        .bind(now)
        .bind(rule.offline_after_ms)
        .bind(&scope)
        .bind(&scope)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(FleetStats {
                    tenant_id: r.try_get("tenant_id")?,
                    devices: r.try_get("devices")?,
                    fully_patched: r.try_get("fully_patched")?,
                    security_pending: r.try_get("security_pending")?,
                    reboot_pending: r.try_get("reboot_pending")?,
                    online: r.try_get("online")?,
                    stale: r.try_get("stale")?,
                    offline: r.try_get("offline")?,
                    never_seen: r.try_get("never_seen")?,
                })
            })
            .collect()
    }

    async fn failure_counts(&self, scope: &TenantScope) -> Result<Vec<FailureCount>> {
        let scope = scope_json(scope);
        let rows = sqlx::query(
            "SELECT a.tenant_id, COALESCE(a.class, 'unknown') AS class, COUNT(*) AS n, \
             MIN(a.id) AS first_id FROM attempts a \
             WHERE a.state = 'failed' \
             AND (? IS NULL OR a.tenant_id IN (SELECT value FROM json_each(?))) \
             AND NOT EXISTS (SELECT 1 FROM attempts b WHERE b.device_id = a.device_id AND b.package = a.package \
                             AND (b.at > a.at OR (b.at = a.at AND b.id > a.id))) \
             GROUP BY a.tenant_id, COALESCE(a.class, 'unknown') ORDER BY n DESC, class",
        )
        .bind(&scope)
        .bind(&scope)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                // An unknown class names the first attempt row that carries it.
                let first: i64 = r.try_get("first_id")?;
                Ok(FailureCount {
                    tenant_id: r.try_get("tenant_id")?,
                    class: named(r, "attempts", first, "class")?,
                    count: r.try_get("n")?,
                })
            })
            .collect()
    }

    async fn device_page(&self, q: &DevicePageQuery) -> Result<(Vec<Device>, i64)> {
        let scope = scope_json(&q.scope);
        let rule = self.status_rule();
        let patch = match q.patch {
            None => "1",
            Some(PatchFilter::Security) => "security_updates > 0",
            Some(PatchFilter::Updates) => "pending_updates > 0",
            Some(PatchFilter::Patched) => "pending_updates = 0",
            Some(PatchFilter::Reboot) => "reboot_required <> 0",
        };
        let where_sql = format!(
            "(? IS NULL OR tenant_id IN (SELECT value FROM json_each(?))) \
             AND (? IS NULL OR tenant_id = ?) \
             AND (? IS NULL OR ({STATUS_SQL}) = ?) \
             AND (? IS NULL OR instr(lower(hostname), lower(?)) > 0) \
             AND {patch}"
        );
        let order = match q.sort {
            DeviceSort::Hostname => "hostname",
            DeviceSort::LastSeen => "COALESCE(last_seen, 0)",
            DeviceSort::PendingUpdates => "pending_updates",
            DeviceSort::SecurityUpdates => "security_updates",
        };
        let dir = if q.descending { "DESC" } else { "ASC" };
        let search = q.search.as_deref().filter(|s| !s.is_empty());
        let status = q.status.map(DeviceStatus::as_str);
        macro_rules! bind_filters {
            ($query:expr) => {
                $query
                    .bind(&scope)
                    .bind(&scope)
                    .bind(&q.tenant_id)
                    .bind(&q.tenant_id)
                    .bind(status)
                    .bind(q.now)
                    .bind(rule.stale_after_ms)
                    .bind(q.now)
                    .bind(rule.offline_after_ms)
                    .bind(status)
                    .bind(search)
                    .bind(search)
            };
        }
        let total: i64 = bind_filters!(sqlx::query(&format!(
            "SELECT COUNT(*) AS n FROM devices WHERE {where_sql}"
        )))
        .fetch_one(&self.pool)
        .await?
        .try_get("n")?;
        let rows = bind_filters!(sqlx::query(&format!(
            "SELECT {DEVICE_COLUMNS} FROM devices WHERE {where_sql} \
             ORDER BY {order} {dir}, hostname, id LIMIT ? OFFSET ?"
        )))
        .bind(q.limit)
        .bind(q.offset)
        .fetch_all(&self.pool)
        .await?;
        let devices = rows.iter().map(device_from_row).collect::<Result<_>>()?;
        Ok((devices, total))
    }
}
