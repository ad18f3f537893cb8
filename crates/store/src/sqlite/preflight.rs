//! SQLite implementation of [`crate::PreflightStore`].

use super::*;
use crate::preflight::*;

fn preflight_job_from_row(r: &SqliteRow) -> Result<PreflightJob> {
    let id: String = r.try_get("id")?;
    Ok(PreflightJob {
        status: named(r, "preflight_jobs", &id, "status")?,
        id,
        tenant_id: r.try_get("tenant_id")?,
        deployment_id: r.try_get("deployment_id")?,
        device_id: r.try_get("device_id")?,
        payload: r.try_get("payload")?,
        created_at: r.try_get("created_at")?,
        started_at: r.try_get("started_at")?,
        finished_at: r.try_get("finished_at")?,
    })
}

fn prediction_from_row(r: &SqliteRow) -> Result<Prediction> {
    let deployment_id: String = r.try_get("deployment_id")?;
    let device_id: String = r.try_get("device_id")?;
    let package: String = r.try_get("package")?;
    let key = format!("({deployment_id}, {device_id}, {package})");
    Ok(Prediction {
        state: named(r, "predictions", &key, "state")?,
        class: named_opt(r, "predictions", &key, "class")?,
        deployment_id,
        device_id,
        package,
        tenant_id: r.try_get("tenant_id")?,
        job_id: r.try_get("job_id")?,
        evidence: strings_from_json(r.try_get("evidence_json")?)?,
        at: r.try_get("at")?,
    })
}

const PREFLIGHT_COLUMNS: &str = "id, tenant_id, deployment_id, device_id, payload, status, \
     created_at, started_at, finished_at";

#[async_trait]
impl PreflightStore for SqliteStore {
    async fn queue_preflight_jobs(&self, jobs: &[PreflightJob]) -> Result<u32> {
        let mut tx = self.pool.begin().await?;
        let mut queued = 0u32;
        for j in jobs {
            let n = sqlx::query(
                "INSERT INTO preflight_jobs (id, tenant_id, deployment_id, device_id, payload, status, created_at) \
                 VALUES (?, ?, ?, ?, ?, 'queued', ?) \
                 ON CONFLICT (deployment_id, device_id) DO UPDATE SET payload = excluded.payload, \
                 status = 'queued', created_at = excluded.created_at, started_at = NULL, \
                 finished_at = NULL, result_json = NULL WHERE preflight_jobs.status = 'done'",
            )
            .bind(&j.id)
            .bind(&j.tenant_id)
            .bind(&j.deployment_id)
            .bind(&j.device_id)
            .bind(&j.payload)
            .bind(j.created_at)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            queued += n as u32;
        }
        tx.commit().await?;
        Ok(queued)
    }

    async fn preflight_jobs_of_deployment(&self, deployment_id: &str) -> Result<Vec<PreflightJob>> {
        let rows = sqlx::query(&format!(
            "SELECT {PREFLIGHT_COLUMNS} FROM preflight_jobs WHERE deployment_id = ? ORDER BY device_id"
        ))
        .bind(deployment_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(preflight_job_from_row).collect()
    }

    async fn offerable_preflight_jobs(
        &self,
        device_id: &str,
        now: i64,
        lease_ms: i64,
    ) -> Result<Vec<PreflightJob>> {
        let rows = sqlx::query(
            "SELECT p.id, p.tenant_id, p.deployment_id, p.device_id, p.payload, p.status, \
             p.created_at, p.started_at, p.finished_at \
             FROM preflight_jobs p JOIN deployments d ON d.id = p.deployment_id \
             WHERE p.device_id = ? AND d.status <> 'cancelled' AND \
             (p.status = 'queued' OR (p.status = 'running' AND p.started_at + ? < ?)) \
             ORDER BY p.created_at, p.id",
        )
        .bind(device_id)
        .bind(lease_ms)
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(preflight_job_from_row).collect()
    }

    async fn mark_preflight_started(&self, id: &str, device_id: &str, now: i64) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE preflight_jobs SET status = 'running', started_at = ? \
             WHERE id = ? AND device_id = ? AND status <> 'done'",
        )
        .bind(now)
        .bind(id)
        .bind(device_id)
        .execute(&mut *tx)
        .await?;
        let exists =
            sqlx::query("SELECT 1 AS one FROM preflight_jobs WHERE id = ? AND device_id = ?")
                .bind(id)
                .bind(device_id)
                .fetch_optional(&mut *tx)
                .await?
                .is_some();
        tx.commit().await?;
        Ok(exists)
    }

    async fn store_preflight_result(
        &self,
        id: &str,
        device_id: &str,
        finished_at: i64,
        result_json: &str,
        predictions: &[Prediction],
    ) -> Result<ResultStored> {
        let mut tx = self.pool.begin().await?;
        let updated = sqlx::query(
            "UPDATE preflight_jobs SET status = 'done', started_at = COALESCE(started_at, ?), \
             finished_at = ?, result_json = ? WHERE id = ? AND device_id = ? AND status <> 'done'",
        )
        .bind(finished_at)
        .bind(finished_at)
        .bind(result_json)
        .bind(id)
        .bind(device_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated == 0 {
            let exists =
                sqlx::query("SELECT 1 AS one FROM preflight_jobs WHERE id = ? AND device_id = ?")
                    .bind(id)
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
        let row = sqlx::query("SELECT deployment_id FROM preflight_jobs WHERE id = ?")
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        let deployment_id: String = row.try_get("deployment_id")?;
        sqlx::query("DELETE FROM predictions WHERE deployment_id = ? AND device_id = ?")
            .bind(&deployment_id)
            .bind(device_id)
            .execute(&mut *tx)
            .await?;
        for p in predictions {
            sqlx::query(
                "INSERT INTO predictions (deployment_id, device_id, package, tenant_id, job_id, \
                 state, class, evidence_json, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (deployment_id, device_id, package) DO UPDATE SET \
                 state = excluded.state, class = excluded.class, \
                 evidence_json = excluded.evidence_json, at = excluded.at, job_id = excluded.job_id",
            )
            .bind(&deployment_id)
            .bind(device_id)
            .bind(&p.package)
            .bind(&p.tenant_id)
            .bind(id)
            .bind(p.state.as_str())
            .bind(p.class.map(FailureClass::as_str))
            .bind(strings_to_json(&p.evidence))
            .bind(p.at)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(ResultStored::Stored)
    }

    async fn predictions_of_deployment(&self, deployment_id: &str) -> Result<Vec<Prediction>> {
        let rows = sqlx::query(
            "SELECT * FROM predictions WHERE deployment_id = ? ORDER BY device_id, package",
        )
        .bind(deployment_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(prediction_from_row).collect()
    }
}
