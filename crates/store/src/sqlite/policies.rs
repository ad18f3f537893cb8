//! SQLite implementation of [`crate::PolicyStore`].

use super::*;
use crate::policies::*;

fn policy_from_row(r: &SqliteRow) -> Result<Policy> {
    Ok(Policy {
        id: r.try_get("id")?,
        tenant_id: r.try_get("tenant_id")?,
        name: r.try_get("name")?,
        spec_json: r.try_get("spec_json")?,
        enabled: r.try_get::<i64, _>("enabled")? != 0,
        revision: r.try_get("revision")?,
        created_at: r.try_get("created_at")?,
        created_by: r.try_get("created_by")?,
        updated_at: r.try_get("updated_at")?,
        problem: match (
            r.try_get::<Option<String>, _>("problem")?,
            r.try_get::<Option<i64>, _>("problem_at")?,
        ) {
            (Some(message), Some(at)) => Some(PolicyProblem { at, message }),
            _ => None,
        },
    })
}

fn run_from_row(r: &SqliteRow) -> Result<PolicyRun> {
    Ok(PolicyRun {
        policy_id: r.try_get("policy_id")?,
        cycle: r.try_get("cycle")?,
        deployment_id: r.try_get("deployment_id")?,
        created_at: r.try_get("created_at")?,
    })
}

fn rejected_from_row(r: &SqliteRow) -> Result<RejectedUpdate> {
    Ok(RejectedUpdate {
        tenant_id: r.try_get("tenant_id")?,
        package: r.try_get("package")?,
        version: r.try_get("version")?,
        deployment_id: r.try_get("deployment_id")?,
        rejected_by: r.try_get("rejected_by")?,
        reason: r.try_get("reason")?,
        rejected_at: r.try_get("rejected_at")?,
    })
}

#[async_trait]
impl PolicyStore for SqliteStore {
    async fn create_policy(&self, p: &Policy) -> Result<()> {
        let inserted = sqlx::query(
            "INSERT INTO policies (id, tenant_id, name, spec_json, enabled, revision, created_at, created_by, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (tenant_id, name) DO NOTHING",
        )
        .bind(&p.id)
        .bind(&p.tenant_id)
        .bind(&p.name)
        .bind(&p.spec_json)
        .bind(i64::from(p.enabled))
        .bind(p.revision)
        .bind(p.created_at)
        .bind(&p.created_by)
        .bind(p.updated_at)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if inserted == 0 {
            return Err(StoreError::Conflict(format!(
                "a policy named {:?} already exists in this tenant",
                p.name
            )));
        }
        Ok(())
    }

    async fn update_policy(&self, p: &Policy) -> Result<bool> {
        let updated = sqlx::query(
            "UPDATE policies SET name = ?, spec_json = ?, enabled = ?, revision = ?, updated_at = ? WHERE id = ?",
        )
        .bind(&p.name)
        .bind(&p.spec_json)
        .bind(i64::from(p.enabled))
        .bind(p.revision)
        .bind(p.updated_at)
        .bind(&p.id)
        .execute(&self.pool)
        .await;
        match updated {
            Ok(r) => Ok(r.rows_affected() > 0),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(StoreError::Conflict(
                format!("a policy named {:?} already exists in this tenant", p.name),
            )),
            Err(e) => Err(e.into()),
        }
    }

    async fn set_policy_problem(&self, id: &str, problem: Option<&PolicyProblem>) -> Result<bool> {
        let changed = sqlx::query("UPDATE policies SET problem = ?, problem_at = ? WHERE id = ?")
            .bind(problem.map(|p| p.message.as_str()))
            .bind(problem.map(|p| p.at))
            .bind(id)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(changed > 0)
    }

    async fn delete_policy(&self, id: &str) -> Result<bool> {
        let deleted = sqlx::query("DELETE FROM policies WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(deleted > 0)
    }

    async fn policy(&self, id: &str) -> Result<Option<Policy>> {
        let row = sqlx::query("SELECT * FROM policies WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(policy_from_row).transpose()
    }

    async fn policy_by_name(&self, tenant_id: &str, name: &str) -> Result<Option<Policy>> {
        let row = sqlx::query("SELECT * FROM policies WHERE tenant_id = ? AND name = ?")
            .bind(tenant_id)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(policy_from_row).transpose()
    }

    async fn list_policies(&self, tenant_id: Option<&str>) -> Result<Vec<Policy>> {
        let rows = sqlx::query(
            "SELECT * FROM policies WHERE (? IS NULL OR tenant_id = ?) ORDER BY tenant_id, name",
        )
        .bind(tenant_id)
        .bind(tenant_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(policy_from_row).collect()
    }

    async fn create_policy_deployment(
        &self,
        run: &PolicyRun,
        deployment: &Deployment,
        jobs: &[Job],
        packages: &[JobPackage],
    ) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let claimed = sqlx::query(
            "INSERT INTO policy_runs (policy_id, cycle, deployment_id, created_at) VALUES (?, ?, ?, ?) \
             ON CONFLICT (policy_id, cycle) DO NOTHING",
        )
        .bind(&run.policy_id)
        .bind(&run.cycle)
        .bind(&run.deployment_id)
        .bind(run.created_at)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if claimed == 0 {
            return Ok(false);
        }
        super::insert_deployment(&mut tx, deployment, jobs, packages).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn policy_run(&self, policy_id: &str, cycle: &str) -> Result<Option<PolicyRun>> {
        let row = sqlx::query("SELECT * FROM policy_runs WHERE policy_id = ? AND cycle = ?")
            .bind(policy_id)
            .bind(cycle)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(run_from_row).transpose()
    }

    async fn policy_runs(&self, policy_id: &str) -> Result<Vec<PolicyRun>> {
        let rows = sqlx::query(
            "SELECT * FROM policy_runs WHERE policy_id = ? ORDER BY created_at DESC, cycle",
        )
        .bind(policy_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(run_from_row).collect()
    }

    async fn reject_updates(&self, rejected: &[RejectedUpdate]) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for r in rejected {
            sqlx::query(
                "INSERT INTO rejected_updates (tenant_id, package, version, deployment_id, rejected_by, reason, rejected_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (tenant_id, package, version) DO NOTHING",
            )
            .bind(&r.tenant_id)
            .bind(&r.package)
            .bind(&r.version)
            .bind(&r.deployment_id)
            .bind(&r.rejected_by)
            .bind(&r.reason)
            .bind(r.rejected_at)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn unreject_update(
        &self,
        tenant_id: &str,
        package: &str,
        version: Option<&str>,
    ) -> Result<u64> {
        let deleted = sqlx::query(
            "DELETE FROM rejected_updates WHERE tenant_id = ? AND package = ? AND (? IS NULL OR version = ?)",
        )
        .bind(tenant_id)
        .bind(package)
        .bind(version)
        .bind(version)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(deleted)
    }

    async fn rejected_updates(&self, tenant_id: Option<&str>) -> Result<Vec<RejectedUpdate>> {
        let rows = sqlx::query(
            "SELECT * FROM rejected_updates WHERE (? IS NULL OR tenant_id = ?) ORDER BY package, version",
        )
        .bind(tenant_id)
        .bind(tenant_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(rejected_from_row).collect()
    }

    async fn requeue_job(&self, job_id: &str, attempt: i64, not_before: i64) -> Result<bool> {
        let updated = sqlx::query(
            "UPDATE jobs SET status = 'queued', attempt = attempt + 1, not_before = ?, started_at = NULL, \
             finished_at = NULL WHERE id = ? AND status = 'done' AND attempt = ?",
        )
        .bind(not_before)
        .bind(job_id)
        .bind(attempt)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(updated > 0)
    }

    async fn skip_job(&self, job_id: &str, now: i64, evidence: &str, action: &str) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let closed = sqlx::query(
            "UPDATE jobs SET status = 'done', finished_at = ?, error = ? WHERE id = ? AND status = 'queued' \
             AND started_at IS NULL",
        )
        .bind(now)
        .bind(format!("not started: {evidence}"))
        .bind(job_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if closed == 0 {
            return Ok(false);
        }
        let rows = sqlx::query("SELECT * FROM job_packages WHERE job_id = ? AND state = 'pending'")
            .bind(job_id)
            .fetch_all(&mut *tx)
            .await?;
        let ev = vec![evidence.to_owned()];
        sqlx::query(
            "UPDATE job_packages SET state = 'skipped', evidence_json = ? WHERE job_id = ? AND state = 'pending'",
        )
        .bind(strings_to_json(&ev))
        .bind(job_id)
        .execute(&mut *tx)
        .await?;
        for r in &rows {
            let p = job_package_from_row(r)?;
            let a = Attempt {
                id: 0,
                tenant_id: p.tenant_id,
                device_id: p.device_id,
                deployment_id: p.deployment_id,
                job_id: p.job_id,
                package: p.package,
                at: now,
                state: PackageState::Skipped,
                class: None,
                installed_version: None,
                evidence: ev.clone(),
                action: action.to_owned(),
                exit_code: None,
            };
            insert_attempt(&mut tx, &a).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn set_device_labels(
        &self,
        device_id: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<bool> {
        let updated = sqlx::query("UPDATE devices SET labels_json = ? WHERE id = ?")
            .bind(labels_to_json(labels))
            .bind(device_id)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(updated > 0)
    }
}
