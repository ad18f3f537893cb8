//! The embedded SQLite backend: one file, WAL journal, `synchronous=FULL` so that a
//! committed change survives a crash before it is acknowledged.

use crate::names::{decode, decode_opt, StoredName};
use crate::*;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Row, SqlitePool};
use std::fmt::Display;
use std::str::FromStr;
use std::time::Duration;

mod audit;
mod dashboard;
mod history;
mod policies;
mod preflight;
mod reboots;
mod sla;
mod triage;
mod users;

pub struct SqliteStore {
    pool: SqlitePool,
    /// When devices count as stale or offline (see [`crate::StatusRule`]).
    status_rule: std::sync::RwLock<crate::StatusRule>,
}

fn labels_to_json(labels: &BTreeMap<String, String>) -> String {
    serde_json::to_string(labels).unwrap_or_else(|_| "{}".to_owned())
}

fn labels_from_json(s: &str) -> Result<BTreeMap<String, String>> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("labels {s:?}: {e}")))
}

fn strings_from_json(s: Option<String>) -> Result<Vec<String>> {
    match s {
        None => Ok(Vec::new()),
        Some(s) => {
            serde_json::from_str(&s).map_err(|e| StoreError::Corrupt(format!("list {s:?}: {e}")))
        }
    }
}

fn strings_to_json(v: &[String]) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".to_owned())
}

/// A name of core's vocabulary stored in `column` of the row `key` of `table`.
fn named<T: StoredName>(r: &SqliteRow, table: &str, key: impl Display, column: &str) -> Result<T> {
    decode(table, key, column, &r.try_get::<String, _>(column)?)
}

/// [`named`] of a nullable column.
fn named_opt<T: StoredName>(
    r: &SqliteRow,
    table: &str,
    key: impl Display,
    column: &str,
) -> Result<Option<T>> {
    decode_opt(
        table,
        key,
        column,
        r.try_get::<Option<String>, _>(column)?.as_deref(),
    )
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `url` (`sqlite://PATH` or a plain path)
    /// and applies pending migrations.
    pub async fn open(url: &str) -> Result<Self> {
        let url = if url.starts_with("sqlite:") {
            url.to_owned()
        } else {
            format!("sqlite://{url}")
        };
        let options = SqliteConnectOptions::from_str(&url)
            .map_err(|e| StoreError::InvalidUrl {
                url: url.clone(),
                reason: e.to_string(),
            })?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        Ok(Self {
            pool,
            status_rule: Default::default(),
        })
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

fn tenant_from_row(r: &SqliteRow) -> Result<Tenant> {
    Ok(Tenant {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        created_at: r.try_get("created_at")?,
    })
}

fn api_token_from_row(r: &SqliteRow) -> Result<ApiToken> {
    let id: String = r.try_get("id")?;
    Ok(ApiToken {
        role: named(r, "api_tokens", &id, "role")?,
        id,
        tenant_id: r.try_get("tenant_id")?,
        name: r.try_get("name")?,
        token_hash: r.try_get("token_hash")?,
        created_at: r.try_get("created_at")?,
        revoked_at: r.try_get("revoked_at")?,
    })
}

fn enroll_token_from_row(r: &SqliteRow) -> Result<EnrollToken> {
    Ok(EnrollToken {
        id: r.try_get("id")?,
        tenant_id: r.try_get("tenant_id")?,
        token_hash: r.try_get("token_hash")?,
        labels: labels_from_json(&r.try_get::<String, _>("labels_json")?)?,
        created_at: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
        revoked_at: r.try_get("revoked_at")?,
        uses: r.try_get("uses")?,
        max_uses: r.try_get("max_uses")?,
    })
}

const DEVICE_COLUMNS: &str =
    "id, tenant_id, hostname, machine_id, labels_json, secret_hash, enroll_token_id, \
     enrolled_at, last_seen, agent_version, checkin_interval_secs, inventory_hash, inventory_at, \
     os, kernel, pending_updates, security_updates, reboot_required";

fn device_from_row(r: &SqliteRow) -> Result<Device> {
    Ok(Device {
        id: r.try_get("id")?,
        tenant_id: r.try_get("tenant_id")?,
        hostname: r.try_get("hostname")?,
        machine_id: r.try_get("machine_id")?,
        labels: labels_from_json(&r.try_get::<String, _>("labels_json")?)?,
        secret_hash: r.try_get("secret_hash")?,
        enroll_token_id: r.try_get("enroll_token_id")?,
        enrolled_at: r.try_get("enrolled_at")?,
        last_seen: r.try_get("last_seen")?,
        agent_version: r.try_get("agent_version")?,
        checkin_interval_secs: r.try_get("checkin_interval_secs")?,
        inventory_hash: r.try_get("inventory_hash")?,
        inventory_at: r.try_get("inventory_at")?,
        summary: DeviceInventorySummary {
            os: r.try_get("os")?,
            kernel: r.try_get("kernel")?,
            pending_updates: r.try_get("pending_updates")?,
            security_updates: r.try_get("security_updates")?,
            reboot_required: r.try_get::<i64, _>("reboot_required")? != 0,
        },
    })
}

fn deployment_from_row(r: &SqliteRow) -> Result<Deployment> {
    let id: String = r.try_get("id")?;
    Ok(Deployment {
        status: named(r, "deployments", &id, "status")?,
        id,
        tenant_id: r.try_get("tenant_id")?,
        created_at: r.try_get("created_at")?,
        created_by: r.try_get("created_by")?,
        selection_json: r.try_get("selection_json")?,
        timeout_secs: r.try_get("timeout_secs")?,
        status_reason: r.try_get("status_reason")?,
        plan_json: r.try_get("plan_json")?,
        current_ring: r.try_get("current_ring")?,
        approved_by: r.try_get("approved_by")?,
        approved_at: r.try_get("approved_at")?,
        updated_at: r.try_get("updated_at")?,
        resumed_at: r.try_get("resumed_at")?,
    })
}

const JOB_COLUMNS: &str = "id, tenant_id, deployment_id, device_id, payload, status, created_at, \
     started_at, finished_at, exit_code, commands_json, duration_ms, output, error, ring, released_at, window_end, attempt, not_before";

fn job_from_row(r: &SqliteRow) -> Result<Job> {
    let id: String = r.try_get("id")?;
    Ok(Job {
        status: named(r, "jobs", &id, "status")?,
        id,
        tenant_id: r.try_get("tenant_id")?,
        deployment_id: r.try_get("deployment_id")?,
        device_id: r.try_get("device_id")?,
        payload: r.try_get("payload")?,
        created_at: r.try_get("created_at")?,
        started_at: r.try_get("started_at")?,
        finished_at: r.try_get("finished_at")?,
        exit_code: r.try_get("exit_code")?,
        commands: strings_from_json(r.try_get("commands_json")?)?,
        duration_ms: r.try_get("duration_ms")?,
        output: r.try_get("output")?,
        error: r.try_get("error")?,
        ring: r.try_get("ring")?,
        released_at: r.try_get("released_at")?,
        window_end: r.try_get("window_end")?,
        attempt: r.try_get("attempt")?,
        not_before: r.try_get("not_before")?,
    })
}

fn job_package_from_row(r: &SqliteRow) -> Result<JobPackage> {
    let job_id: String = r.try_get("job_id")?;
    let package: String = r.try_get("package")?;
    let key = format!("({job_id}, {package})");
    Ok(JobPackage {
        state: named(r, "job_packages", &key, "state")?,
        class: named_opt(r, "job_packages", &key, "class")?,
        job_id,
        package,
        tenant_id: r.try_get("tenant_id")?,
        deployment_id: r.try_get("deployment_id")?,
        device_id: r.try_get("device_id")?,
        from_version: r.try_get("from_version")?,
        to_version: r.try_get("to_version")?,
        installed_version: r.try_get("installed_version")?,
        evidence: strings_from_json(r.try_get("evidence_json")?)?,
    })
}

#[async_trait]
impl Store for SqliteStore {
    async fn ensure_tenant(&self, name: &str, now: i64) -> Result<Tenant> {
        let id = format!("t_{name}");
        sqlx::query("INSERT INTO tenants (id, name, created_at) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING")
            .bind(&id)
            .bind(name)
            .bind(now)
            .execute(&self.pool)
            .await?;
        let row = sqlx::query("SELECT id, name, created_at FROM tenants WHERE name = ?")
            .bind(name)
            .fetch_one(&self.pool)
            .await?;
        tenant_from_row(&row)
    }

    async fn tenant_by_id(&self, id: &str) -> Result<Option<Tenant>> {
        let row = sqlx::query("SELECT id, name, created_at FROM tenants WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(tenant_from_row).transpose()
    }

    async fn list_tenants(&self) -> Result<Vec<Tenant>> {
        let rows = sqlx::query("SELECT id, name, created_at FROM tenants ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(tenant_from_row).collect()
    }

    async fn insert_api_token(&self, t: &ApiToken) -> Result<()> {
        sqlx::query(
            "INSERT INTO api_tokens (id, tenant_id, name, role, token_hash, created_at, revoked_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&t.id)
        .bind(&t.tenant_id)
        .bind(&t.name)
        .bind(t.role.as_str())
        .bind(&t.token_hash)
        .bind(t.created_at)
        .bind(t.revoked_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn api_token_by_hash(&self, hash: &str) -> Result<Option<ApiToken>> {
        let row = sqlx::query("SELECT * FROM api_tokens WHERE token_hash = ?")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(api_token_from_row).transpose()
    }

    async fn count_api_tokens(&self) -> Result<i64> {
        Ok(sqlx::query("SELECT COUNT(*) AS n FROM api_tokens")
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?)
    }

    async fn insert_enroll_token(&self, t: &EnrollToken) -> Result<()> {
        sqlx::query(
            "INSERT INTO enroll_tokens (id, tenant_id, token_hash, labels_json, created_at, expires_at, \
             revoked_at, uses, max_uses) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&t.id)
        .bind(&t.tenant_id)
        .bind(&t.token_hash)
        .bind(labels_to_json(&t.labels))
        .bind(t.created_at)
        .bind(t.expires_at)
        .bind(t.revoked_at)
        .bind(t.uses)
        .bind(t.max_uses)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn list_enroll_tokens(&self, tenant_id: Option<&str>) -> Result<Vec<EnrollToken>> {
        let rows = sqlx::query(
            "SELECT * FROM enroll_tokens WHERE (? IS NULL OR tenant_id = ?) ORDER BY created_at",
        )
        .bind(tenant_id)
        .bind(tenant_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(enroll_token_from_row).collect()
    }

    async fn revoke_enroll_token(&self, id: &str, now: i64) -> Result<bool> {
        let found = sqlx::query(
            "UPDATE enroll_tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?",
        )
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(found > 0)
    }

    async fn enroll_device(
        &self,
        token_hash: &str,
        now: i64,
        mut device: Device,
    ) -> Result<std::result::Result<Device, EnrollRefusal>> {
        let mut tx = self.pool.begin().await?;
        // Count the use first: the UPDATE takes SQLite's write lock, so two enrollments with
        // a single-use token cannot both pass the check below.
        let used = sqlx::query(
            "UPDATE enroll_tokens SET uses = uses + 1 WHERE token_hash = ? AND revoked_at IS NULL \
             AND expires_at > ? AND (max_uses IS NULL OR uses < max_uses)",
        )
        .bind(token_hash)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let row = sqlx::query("SELECT * FROM enroll_tokens WHERE token_hash = ?")
            .bind(token_hash)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            return Ok(Err(EnrollRefusal::UnknownToken));
        };
        let token = enroll_token_from_row(&row)?;
        if used == 0 {
            let refusal = if token.revoked_at.is_some() {
                EnrollRefusal::Revoked
            } else if token.expires_at <= now {
                EnrollRefusal::Expired
            } else {
                EnrollRefusal::Exhausted
            };
            return Ok(Err(refusal));
        }
        device.tenant_id = token.tenant_id.clone();
        device.labels = token.labels.clone();
        device.enroll_token_id = Some(token.id.clone());
        sqlx::query(
            "INSERT INTO devices (id, tenant_id, hostname, machine_id, labels_json, secret_hash, \
             enroll_token_id, enrolled_at, last_seen, agent_version, checkin_interval_secs) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&device.id)
        .bind(&device.tenant_id)
        .bind(&device.hostname)
        .bind(&device.machine_id)
        .bind(labels_to_json(&device.labels))
        .bind(&device.secret_hash)
        .bind(&device.enroll_token_id)
        .bind(device.enrolled_at)
        .bind(device.last_seen)
        .bind(&device.agent_version)
        .bind(device.checkin_interval_secs)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Ok(device))
    }

    async fn device_by_secret_hash(&self, hash: &str) -> Result<Option<Device>> {
        let row = sqlx::query(&format!(
            "SELECT {DEVICE_COLUMNS} FROM devices WHERE secret_hash = ?"
        ))
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(device_from_row).transpose()
    }

    async fn device(&self, id: &str) -> Result<Option<Device>> {
        let row = sqlx::query(&format!(
            "SELECT {DEVICE_COLUMNS} FROM devices WHERE id = ?"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(device_from_row).transpose()
    }

    async fn list_devices(&self, tenant_id: Option<&str>) -> Result<Vec<Device>> {
        let rows = sqlx::query(&format!(
            "SELECT {DEVICE_COLUMNS} FROM devices WHERE (? IS NULL OR tenant_id = ?) ORDER BY hostname, id"
        ))
        .bind(tenant_id)
        .bind(tenant_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(device_from_row).collect()
    }

    async fn device_inventory_json(&self, id: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT json FROM device_inventories WHERE device_id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(r) => Some(r.try_get("json")?),
            None => None,
        })
    }

    async fn record_checkin(
        &self,
        device_id: &str,
        now: i64,
        agent_version: &str,
        inventory: Option<&InventoryUpdate>,
    ) -> Result<()> {
        match inventory {
            None => {
                sqlx::query("UPDATE devices SET last_seen = ?, agent_version = ? WHERE id = ?")
                    .bind(now)
                    .bind(agent_version)
                    .bind(device_id)
                    .execute(&self.pool)
                    .await?;
            }
            Some(inv) => {
                // The inventory apart from the device row (migration 0016), in one transaction.
                let mut tx = self.pool.begin().await?;
                sqlx::query(
                    "UPDATE devices SET last_seen = ?, agent_version = ?, inventory_hash = ?, \
                     inventory_at = ?, hostname = ?, os = ?, kernel = ?, \
                     pending_updates = ?, security_updates = ?, reboot_required = ? WHERE id = ?",
                )
                .bind(now)
                .bind(agent_version)
                .bind(&inv.hash)
                .bind(now)
                .bind(&inv.hostname)
                .bind(&inv.summary.os)
                .bind(&inv.summary.kernel)
                .bind(inv.summary.pending_updates)
                .bind(inv.summary.security_updates)
                .bind(i64::from(inv.summary.reboot_required))
                .bind(device_id)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO device_inventories (device_id, json) \
                     SELECT id, ? FROM devices WHERE id = ? \
                     ON CONFLICT (device_id) DO UPDATE SET json = excluded.json",
                )
                .bind(&inv.json)
                .bind(device_id)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
            }
        }
        Ok(())
    }

    async fn create_deployment(
        &self,
        d: &Deployment,
        jobs: &[Job],
        packages: &[JobPackage],
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        insert_deployment(&mut tx, d, jobs, packages).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn deployment(&self, id: &str) -> Result<Option<Deployment>> {
        let row = sqlx::query("SELECT * FROM deployments WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(deployment_from_row).transpose()
    }

    async fn list_deployments(&self, tenant_id: Option<&str>) -> Result<Vec<Deployment>> {
        let rows = sqlx::query(
            "SELECT * FROM deployments WHERE (? IS NULL OR tenant_id = ?) ORDER BY created_at DESC, id",
        )
        .bind(tenant_id)
        .bind(tenant_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(deployment_from_row).collect()
    }

    async fn jobs_of_deployment(&self, deployment_id: &str) -> Result<Vec<Job>> {
        let rows = sqlx::query(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE deployment_id = ? ORDER BY id"
        ))
        .bind(deployment_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(job_from_row).collect()
    }

    async fn job(&self, id: &str) -> Result<Option<Job>> {
        let row = sqlx::query(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(job_from_row).transpose()
    }

    async fn packages_of_deployment(&self, deployment_id: &str) -> Result<Vec<JobPackage>> {
        let rows = sqlx::query(
            "SELECT * FROM job_packages WHERE deployment_id = ? ORDER BY device_id, package",
        )
        .bind(deployment_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(job_package_from_row).collect()
    }

    async fn active_deployments(&self) -> Result<Vec<Deployment>> {
        let rows = sqlx::query(
            "SELECT * FROM deployments WHERE status IN ('pending_approval', 'running') ORDER BY created_at, id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(deployment_from_row).collect()
    }

    async fn transition_deployment(
        &self,
        d: &Deployment,
        expected: &[DeploymentStatus],
        ring: Option<i64>,
        skip_evidence: Option<&str>,
    ) -> Result<bool> {
        let expected: Vec<&str> = expected.iter().map(|s| s.as_str()).collect();
        // An empty list matches no status: nothing is written.
        let expected = serde_json::to_string(&expected).unwrap_or_else(|_| "[]".to_owned());
        let mut tx = self.pool.begin().await?;
        let moved = sqlx::query(
            "UPDATE deployments SET status = ?, status_reason = ?, current_ring = ?, approved_by = ?, \
             approved_at = ?, updated_at = ?, resumed_at = ? \
             WHERE id = ? AND status IN (SELECT value FROM json_each(?)) AND (? IS NULL OR current_ring = ?)",
        )
        .bind(d.status.as_str())
        .bind(&d.status_reason)
        .bind(d.current_ring)
        .bind(&d.approved_by)
        .bind(d.approved_at)
        .bind(d.updated_at)
        .bind(d.resumed_at)
        .bind(&d.id)
        .bind(&expected)
        .bind(ring)
        .bind(ring)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if moved == 0 {
            return Ok(false);
        }
        if d.status == DeploymentStatus::Cancelled {
            let evidence = skip_evidence.unwrap_or(NOT_STARTED_CANCELLED);
            close_unstarted_jobs(&mut tx, &d.id, d.updated_at, evidence).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn release_jobs(&self, job_ids: &[String], now: i64) -> Result<u64> {
        let released = sqlx::query(&format!(
            "UPDATE jobs SET released_at = ? WHERE id IN (SELECT value FROM json_each(?)) \
             AND status = 'queued' AND released_at IS NULL AND {DEPLOYMENT_RUNNING}"
        ))
        .bind(now)
        .bind(strings_to_json(job_ids))
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(released)
    }

    async fn release_job_in_window(
        &self,
        job_id: &str,
        now: i64,
        payload: &str,
        window_end: i64,
    ) -> Result<bool> {
        let released = sqlx::query(&format!(
            "UPDATE jobs SET released_at = ?, payload = ?, window_end = ? \
             WHERE id = ? AND status = 'queued' AND {DEPLOYMENT_RUNNING}"
        ))
        .bind(now)
        .bind(payload)
        .bind(window_end)
        .bind(job_id)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(released > 0)
    }

    async fn unrelease_job(
        &self,
        job_id: &str,
        now: i64,
        state: PackageState,
        class: FailureClass,
        evidence: &str,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let taken = sqlx::query(
            "UPDATE jobs SET released_at = NULL, window_end = NULL WHERE id = ? AND status = 'queued'",
        )
        .bind(job_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if taken == 0 {
            return Ok(());
        }
        let ev = strings_to_json(&[evidence.to_owned()]);
        sqlx::query(
            "UPDATE job_packages SET state = ?, class = ?, evidence_json = ? WHERE job_id = ?",
        )
        .bind(state.as_str())
        .bind(class.as_str())
        .bind(&ev)
        .bind(job_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO attempts (tenant_id, device_id, deployment_id, job_id, package, at, state, class, \
             installed_version, evidence_json, action, exit_code) \
             SELECT tenant_id, device_id, deployment_id, job_id, package, ?, ?, ?, from_version, ?, 'none: window closed', NULL \
             FROM job_packages WHERE job_id = ?",
        )
        .bind(now)
        .bind(state.as_str())
        .bind(class.as_str())
        .bind(&ev)
        .bind(job_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn jobs_past_window(&self, deployment_id: &str, now: i64) -> Result<Vec<Job>> {
        let rows = sqlx::query(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE deployment_id = ? AND status = 'queued' \
             AND released_at IS NOT NULL AND window_end IS NOT NULL AND window_end <= ? ORDER BY id"
        ))
        .bind(deployment_id)
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(job_from_row).collect()
    }

    async fn offerable_jobs(&self, device_id: &str, now: i64, grace_ms: i64) -> Result<Vec<Job>> {
        let rows = sqlx::query(
            "SELECT j.* FROM jobs j JOIN deployments d ON d.id = j.deployment_id \
             WHERE j.device_id = ? AND d.status = 'running' AND j.released_at IS NOT NULL AND \
             (j.window_end IS NULL OR j.status <> 'queued' OR j.window_end > ?) AND \
             (j.not_before IS NULL OR j.status <> 'queued' OR j.not_before <= ?) AND \
             (j.status = 'queued' OR (j.status = 'running' AND j.started_at + d.timeout_secs * 1000 + ? < ?)) \
             ORDER BY j.created_at, j.id",
        )
        .bind(device_id)
        .bind(now)
        .bind(now)
        .bind(grace_ms)
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(job_from_row).collect()
    }

    async fn mark_job_started(
        &self,
        job_id: &str,
        device_id: &str,
        now: i64,
    ) -> Result<StartOutcome> {
        let mut tx = self.pool.begin().await?;
        // The offer's conditions (see `offerable_jobs`) and the start in one statement: a halt
        // committed before it is seen, one committed after it finds the job running.
        let started = sqlx::query(&format!(
            "UPDATE jobs SET status = 'running', started_at = ? WHERE id = ? AND device_id = ? AND \
             (status = 'running' OR (status = 'queued' AND released_at IS NOT NULL \
              AND (window_end IS NULL OR window_end > ?) AND (not_before IS NULL OR not_before <= ?) \
              AND {DEPLOYMENT_RUNNING}))"
        ))
        .bind(now)
        .bind(job_id)
        .bind(device_id)
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let outcome = if started > 0 {
            StartOutcome::Started
        } else if sqlx::query("SELECT 1 AS one FROM jobs WHERE id = ? AND device_id = ?")
            .bind(job_id)
            .bind(device_id)
            .fetch_optional(&mut *tx)
            .await?
            .is_some()
        {
            StartOutcome::NotOnOffer
        } else {
            StartOutcome::UnknownJob
        };
        tx.commit().await?;
        Ok(outcome)
    }

    async fn store_job_result(
        &self,
        job_id: &str,
        device_id: &str,
        o: &JobOutcome,
    ) -> Result<ResultStored> {
        let mut tx = self.pool.begin().await?;
        // Write first: a transaction that reads and then writes cannot wait for SQLite's
        // write lock (SQLITE_BUSY at once under concurrent writers); one that writes first can.
        let updated = sqlx::query(
            "UPDATE jobs SET status = 'done', started_at = COALESCE(started_at, ?), finished_at = ?, \
             exit_code = ?, commands_json = ?, duration_ms = ?, output = ?, error = ?, result_json = ?, \
             boot_id = ? WHERE id = ? AND device_id = ? AND status <> 'done' AND (? IS NULL OR attempt = ?)",
        )
        .bind(o.started_at)
        .bind(o.finished_at)
        .bind(o.exit_code)
        .bind(strings_to_json(&o.commands))
        .bind(o.duration_ms)
        .bind(&o.output)
        .bind(&o.error)
        .bind(&o.result_json)
        .bind(&o.boot_id)
        .bind(job_id)
        .bind(device_id)
        .bind(o.attempt)
        .bind(o.attempt)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated == 0 {
            let exists = sqlx::query("SELECT 1 AS one FROM jobs WHERE id = ? AND device_id = ?")
                .bind(job_id)
                .bind(device_id)
                .fetch_optional(&mut *tx)
                .await?
                .is_some();
            return Ok(if exists {
                ResultStored::Duplicate
            } else {
                ResultStored::UnknownJob
            });
        }
        for p in &o.packages {
            // Keep the planned from/to versions when the agent did not report them.
            sqlx::query(
                "INSERT INTO job_packages (job_id, package, tenant_id, deployment_id, device_id, state, class, \
                 from_version, to_version, installed_version, evidence_json) \
                 SELECT id, ?, tenant_id, deployment_id, device_id, ?, ?, ?, ?, ?, ? FROM jobs WHERE id = ? \
                 ON CONFLICT (job_id, package) DO UPDATE SET state = excluded.state, class = excluded.class, \
                 from_version = COALESCE(excluded.from_version, job_packages.from_version), \
                 to_version = COALESCE(excluded.to_version, job_packages.to_version), \
                 installed_version = excluded.installed_version, evidence_json = excluded.evidence_json",
            )
            .bind(&p.package)
            .bind(p.state.as_str())
            .bind(p.class.map(FailureClass::as_str))
            .bind(&p.from_version)
            .bind(&p.to_version)
            .bind(&p.installed_version)
            .bind(strings_to_json(&p.evidence))
            .bind(job_id)
            .execute(&mut *tx)
            .await?;
        }
        let action = o
            .commands
            .last()
            .cloned()
            .unwrap_or_else(|| "none".to_owned());
        for p in &o.packages {
            sqlx::query(
                "INSERT INTO attempts (tenant_id, device_id, deployment_id, job_id, package, at, state, class, \
                 installed_version, evidence_json, action, exit_code) \
                 SELECT tenant_id, device_id, deployment_id, id, ?, ?, ?, ?, ?, ?, ?, ? FROM jobs WHERE id = ?",
            )
            .bind(&p.package)
            .bind(o.finished_at)
            .bind(p.state.as_str())
            .bind(p.class.map(FailureClass::as_str))
            .bind(&p.installed_version)
            .bind(strings_to_json(&p.evidence))
            .bind(&action)
            .bind(o.exit_code)
            .bind(job_id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(ResultStored::Stored)
    }

    async fn put_feed(&self, f: &FeedRecord, content: &[u8]) -> Result<()> {
        sqlx::query(
            "INSERT INTO feeds (source, kind, url, content, sha256, records, imported_at, last_attempt_at, last_error, \
             refresh_secs) VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, ?) ON CONFLICT (source) DO UPDATE SET kind = excluded.kind, \
             url = excluded.url, content = excluded.content, sha256 = excluded.sha256, records = excluded.records, \
             imported_at = excluded.imported_at, last_attempt_at = excluded.last_attempt_at, last_error = NULL, \
             refresh_secs = excluded.refresh_secs",
        )
        .bind(&f.source)
        .bind(&f.kind)
        .bind(&f.url)
        .bind(content)
        .bind(&f.sha256)
        .bind(f.records)
        .bind(f.imported_at)
        .bind(f.last_attempt_at)
        .bind(f.refresh_secs)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn feed_failed(
        &self,
        source: &str,
        kind: &str,
        url: Option<&str>,
        at: i64,
        error: &str,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO feeds (source, kind, url, last_attempt_at, last_error) VALUES (?, ?, ?, ?, ?) \
             ON CONFLICT (source) DO UPDATE SET last_attempt_at = excluded.last_attempt_at, last_error = excluded.last_error",
        )
        .bind(source)
        .bind(kind)
        .bind(url)
        .bind(at)
        .bind(error)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn list_feeds(&self) -> Result<Vec<FeedRecord>> {
        let rows = sqlx::query(
            "SELECT source, kind, url, sha256, records, imported_at, last_attempt_at, last_error, refresh_secs \
             FROM feeds ORDER BY source",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(FeedRecord {
                    source: r.try_get("source")?,
                    kind: r.try_get("kind")?,
                    url: r.try_get("url")?,
                    sha256: r.try_get("sha256")?,
                    records: r.try_get("records")?,
                    imported_at: r.try_get("imported_at")?,
                    last_attempt_at: r.try_get("last_attempt_at")?,
                    last_error: r.try_get("last_error")?,
                    refresh_secs: r.try_get("refresh_secs")?,
                })
            })
            .collect()
    }

    async fn feed_contents(&self) -> Result<Vec<(String, Vec<u8>)>> {
        let rows = sqlx::query(
            "SELECT kind, content FROM feeds WHERE content IS NOT NULL ORDER BY source",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("kind")?, r.try_get("content")?)))
            .collect()
    }

    async fn sync_device_exposures(
        &self,
        device_id: &str,
        now: i64,
        open: &[ExposureRecord],
    ) -> Result<(u64, u64)> {
        let mut tx = self.pool.begin().await?;
        // Write first (see store_job_result): touch the device's rows before reading them.
        sqlx::query("UPDATE exposures SET updated_at = updated_at WHERE device_id = ?")
            .bind(device_id)
            .execute(&mut *tx)
            .await?;
        let existing =
            sqlx::query("SELECT cve, package, closed_at FROM exposures WHERE device_id = ?")
                .bind(device_id)
                .fetch_all(&mut *tx)
                .await?;
        let mut was_open = std::collections::HashSet::new();
        let mut known = std::collections::HashSet::new();
        for r in &existing {
            let key: (String, String) = (r.try_get("cve")?, r.try_get("package")?);
            if r.try_get::<Option<i64>, _>("closed_at")?.is_none() {
                was_open.insert(key.clone());
            }
            known.insert(key);
        }
        let mut opened = 0;
        let mut now_open = std::collections::HashSet::new();
        for e in open {
            let key = (e.cve.clone(), e.package.clone());
            if !was_open.contains(&key) {
                opened += 1;
            }
            now_open.insert(key);
            sqlx::query(
                "INSERT INTO exposures (device_id, cve, package, tenant_id, binaries_json, installed_version, fix_state, \
                 fixed_version, fixed_by_update, rating, cvss, kev, kev_due, ransomware, epss, epss_percentile, priority, \
                 summary, first_seen, closed_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?) \
                 ON CONFLICT (device_id, cve, package) DO UPDATE SET binaries_json = excluded.binaries_json, \
                 installed_version = excluded.installed_version, fix_state = excluded.fix_state, \
                 fixed_version = excluded.fixed_version, fixed_by_update = excluded.fixed_by_update, rating = excluded.rating, \
                 cvss = excluded.cvss, kev = excluded.kev, kev_due = excluded.kev_due, ransomware = excluded.ransomware, \
                 epss = excluded.epss, epss_percentile = excluded.epss_percentile, priority = excluded.priority, \
                 summary = excluded.summary, updated_at = excluded.updated_at, \
                 first_seen = CASE WHEN exposures.closed_at IS NULL THEN exposures.first_seen ELSE excluded.first_seen END, \
                 closed_at = NULL",
            )
            .bind(device_id)
            .bind(&e.cve)
            .bind(&e.package)
            .bind(&e.tenant_id)
            .bind(strings_to_json(&e.binaries))
            .bind(&e.installed_version)
            .bind(&e.fix_state)
            .bind(&e.fixed_version)
            .bind(&e.fixed_by_update)
            .bind(&e.rating)
            .bind(e.cvss)
            .bind(i64::from(e.kev))
            .bind(&e.kev_due)
            .bind(i64::from(e.ransomware))
            .bind(e.epss)
            .bind(e.epss_percentile)
            .bind(e.priority)
            .bind(&e.summary)
            .bind(now)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        let mut closed = 0;
        for (cve, package) in was_open.difference(&now_open) {
            closed += sqlx::query(
                "UPDATE exposures SET closed_at = ?, updated_at = ? WHERE device_id = ? AND cve = ? AND package = ? AND closed_at IS NULL",
            )
            .bind(now)
            .bind(now)
            .bind(device_id)
            .bind(cve)
            .bind(package)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        tx.commit().await?;
        Ok((opened, closed))
    }

    async fn list_exposures(&self, f: &ExposureFilter) -> Result<Vec<ExposureRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM exposures WHERE (? IS NULL OR tenant_id = ?) AND (? IS NULL OR device_id = ?) \
             AND (? IS NULL OR cve = ?) AND (? OR closed_at IS NULL) AND (? = 0 OR kev <> 0) \
             AND (? IS NULL OR rating IN (SELECT value FROM json_each(?))) \
             ORDER BY priority DESC, cve, device_id, package",
        )
        .bind(&f.tenant_id)
        .bind(&f.tenant_id)
        .bind(&f.device_id)
        .bind(&f.device_id)
        .bind(&f.cve)
        .bind(&f.cve)
        .bind(f.include_closed)
        .bind(f.kev_only)
        .bind(f.ratings.as_deref().map(strings_to_json))
        .bind(f.ratings.as_deref().map(strings_to_json))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ExposureRecord {
                    device_id: r.try_get("device_id")?,
                    tenant_id: r.try_get("tenant_id")?,
                    cve: r.try_get("cve")?,
                    package: r.try_get("package")?,
                    binaries: strings_from_json(r.try_get("binaries_json")?)?,
                    installed_version: r.try_get("installed_version")?,
                    fix_state: r.try_get("fix_state")?,
                    fixed_version: r.try_get("fixed_version")?,
                    fixed_by_update: r.try_get("fixed_by_update")?,
                    rating: r.try_get("rating")?,
                    cvss: r.try_get("cvss")?,
                    kev: r.try_get::<i64, _>("kev")? != 0,
                    kev_due: r.try_get("kev_due")?,
                    ransomware: r.try_get::<i64, _>("ransomware")? != 0,
                    epss: r.try_get("epss")?,
                    epss_percentile: r.try_get("epss_percentile")?,
                    priority: r.try_get("priority")?,
                    summary: r.try_get("summary")?,
                    first_seen: r.try_get("first_seen")?,
                    closed_at: r.try_get("closed_at")?,
                    updated_at: r.try_get("updated_at")?,
                })
            })
            .collect()
    }

    async fn pending_reboots(&self, device_id: &str) -> Result<Vec<PendingReboot>> {
        let rows = sqlx::query(
            "SELECT p.*, j.boot_id AS job_boot_id FROM job_packages p JOIN jobs j ON j.id = p.job_id \
             WHERE p.device_id = ? AND p.state = 'pending_reboot' ORDER BY p.job_id, p.package",
        )
        .bind(device_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(PendingReboot {
                    package: job_package_from_row(r)?,
                    boot_id: r.try_get("job_boot_id")?,
                })
            })
            .collect()
    }

    async fn update_package_outcome(&self, row: &JobPackage, a: &Attempt) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE job_packages SET state = ?, class = ?, installed_version = ?, evidence_json = ? \
             WHERE job_id = ? AND package = ?",
        )
        .bind(row.state.as_str())
        .bind(row.class.map(FailureClass::as_str))
        .bind(&row.installed_version)
        .bind(strings_to_json(&row.evidence))
        .bind(&row.job_id)
        .bind(&row.package)
        .execute(&mut *tx)
        .await?;
        insert_attempt(&mut tx, a).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn attempts_of_device(&self, device_id: &str, limit: i64) -> Result<Vec<Attempt>> {
        let rows = sqlx::query(
            "SELECT * FROM attempts WHERE device_id = ? ORDER BY at DESC, id DESC LIMIT ?",
        )
        .bind(device_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(attempt_from_row).collect()
    }

    async fn reset_failures(&self, device_id: &str, now: i64, action: &str) -> Result<u64> {
        let current = self
            .current_failures(&FailureFilter {
                device_id: Some(device_id.to_owned()),
                ..Default::default()
            })
            .await?;
        let mut tx = self.pool.begin().await?;
        for a in &current {
            insert_attempt(
                &mut tx,
                &Attempt {
                    id: 0,
                    at: now.max(a.at),
                    // Not pursued any more by decision: `skipped`, with the reason as evidence.
                    state: PackageState::Skipped,
                    class: None,
                    evidence: vec![format!(
                        "failure state reset (was {})",
                        a.class.map_or("failed", FailureClass::as_str)
                    )],
                    action: action.to_owned(),
                    exit_code: None,
                    ..a.clone()
                },
            )
            .await?;
        }
        tx.commit().await?;
        Ok(current.len() as u64)
    }

    async fn current_failures(&self, f: &FailureFilter) -> Result<Vec<Attempt>> {
        let rows = sqlx::query(
            "SELECT a.* FROM attempts a WHERE (a.state = 'failed' OR a.class = 'reboot_loop') \
             AND (? IS NULL OR a.tenant_id = ?) AND (? IS NULL OR a.device_id = ?) AND (? IS NULL OR a.class = ?) \
             AND NOT EXISTS (SELECT 1 FROM attempts b WHERE b.device_id = a.device_id AND b.package = a.package \
                             AND (b.at > a.at OR (b.at = a.at AND b.id > a.id))) \
             ORDER BY a.at DESC, a.id DESC",
        )
        .bind(&f.tenant_id)
        .bind(&f.tenant_id)
        .bind(&f.device_id)
        .bind(&f.device_id)
        .bind(f.class.map(FailureClass::as_str))
        .bind(f.class.map(FailureClass::as_str))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(attempt_from_row).collect()
    }
}

fn attempt_from_row(r: &SqliteRow) -> Result<Attempt> {
    let id: i64 = r.try_get("id")?;
    Ok(Attempt {
        id,
        tenant_id: r.try_get("tenant_id")?,
        device_id: r.try_get("device_id")?,
        deployment_id: r.try_get("deployment_id")?,
        job_id: r.try_get("job_id")?,
        package: r.try_get("package")?,
        at: r.try_get("at")?,
        state: named(r, "attempts", id, "state")?,
        class: named_opt(r, "attempts", id, "class")?,
        installed_version: r.try_get("installed_version")?,
        evidence: strings_from_json(r.try_get("evidence_json")?)?,
        action: r.try_get("action")?,
        exit_code: r.try_get("exit_code")?,
    })
}

async fn insert_attempt(tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>, a: &Attempt) -> Result<()> {
    sqlx::query(
        "INSERT INTO attempts (tenant_id, device_id, deployment_id, job_id, package, at, state, class, \
         installed_version, evidence_json, action, exit_code) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&a.tenant_id)
    .bind(&a.device_id)
    .bind(&a.deployment_id)
    .bind(&a.job_id)
    .bind(&a.package)
    .bind(a.at)
    .bind(a.state.as_str())
    .bind(a.class.map(FailureClass::as_str))
    .bind(&a.installed_version)
    .bind(strings_to_json(&a.evidence))
    .bind(&a.action)
    .bind(a.exit_code)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A condition on a `jobs` row: its deployment is `running` at the moment of the statement.
const DEPLOYMENT_RUNNING: &str = "EXISTS (SELECT 1 FROM deployments d \
     WHERE d.id = jobs.deployment_id AND d.status = 'running')";

/// The evidence of a package whose job a cancellation closed, when none is given.
const NOT_STARTED_CANCELLED: &str = "not started: the deployment was cancelled";

/// Closes every job of the deployment that has not started (finished at `at`): its pending
/// packages become `skipped` with this evidence.
async fn close_unstarted_jobs(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    deployment_id: &str,
    at: Option<i64>,
    evidence: &str,
) -> Result<()> {
    let evidence = strings_to_json(&[evidence.to_owned()]);
    sqlx::query(
        "UPDATE job_packages SET state = 'skipped', evidence_json = ? WHERE deployment_id = ? AND state = 'pending' \
         AND job_id IN (SELECT id FROM jobs WHERE deployment_id = ? AND status = 'queued')",
    )
    .bind(&evidence)
    .bind(deployment_id)
    .bind(deployment_id)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "UPDATE jobs SET status = 'done', finished_at = ?, error = ? WHERE deployment_id = ? AND status = 'queued'",
    )
    .bind(at)
    .bind(NOT_STARTED_CANCELLED)
    .bind(deployment_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Inserts a deployment with its jobs and their package rows inside the caller's transaction.
pub(crate) async fn insert_deployment(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    d: &Deployment,
    jobs: &[Job],
    packages: &[JobPackage],
) -> Result<()> {
    sqlx::query(
            "INSERT INTO deployments (id, tenant_id, created_at, created_by, selection_json, timeout_secs, \
             status, status_reason, plan_json, current_ring, approved_by, approved_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&d.id)
        .bind(&d.tenant_id)
        .bind(d.created_at)
        .bind(&d.created_by)
        .bind(&d.selection_json)
        .bind(d.timeout_secs)
        .bind(d.status.as_str())
        .bind(&d.status_reason)
        .bind(&d.plan_json)
        .bind(d.current_ring)
        .bind(&d.approved_by)
        .bind(d.approved_at)
        .bind(d.updated_at)
        .execute(&mut **tx)
        .await?;
    for j in jobs {
        sqlx::query(
                "INSERT INTO jobs (id, tenant_id, deployment_id, device_id, payload, status, created_at, ring, released_at, attempt, not_before) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(&j.id)
            .bind(&j.tenant_id)
            .bind(&j.deployment_id)
            .bind(&j.device_id)
            .bind(&j.payload)
            .bind(j.status.as_str())
            .bind(j.created_at)
            .bind(j.ring)
            .bind(j.released_at)
            .bind(j.attempt.max(1))
            .bind(j.not_before)
            .execute(&mut **tx)
            .await?;
    }
    for p in packages {
        insert_job_package(tx, p).await?;
    }
    Ok(())
}

async fn insert_job_package(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    p: &JobPackage,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO job_packages (job_id, package, tenant_id, deployment_id, device_id, state, class, \
         from_version, to_version, installed_version, evidence_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&p.job_id)
    .bind(&p.package)
    .bind(&p.tenant_id)
    .bind(&p.deployment_id)
    .bind(&p.device_id)
    .bind(p.state.as_str())
    .bind(p.class.map(FailureClass::as_str))
    .bind(&p.from_version)
    .bind(&p.to_version)
    .bind(&p.installed_version)
    .bind(strings_to_json(&p.evidence))
    .execute(&mut **tx)
    .await?;
    Ok(())
}
