//! Policies (a tenant's standing patch process), the deployments they created per cycle, and
//! rejected updates. Part of the [`crate::Store`] interface (a supertrait).

use crate::{Deployment, Job, JobPackage, Result};
use async_trait::async_trait;

#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub id: String,
    pub tenant_id: String,
    /// Unique within the tenant: what `apply` matches on.
    pub name: String,
    /// The validated specification, as JSON the server owns.
    pub spec_json: String,
    pub enabled: bool,
    /// Counts edits (1 when created); an apply that changes nothing keeps it.
    pub revision: i64,
    pub created_at: i64,
    pub created_by: String,
    pub updated_at: i64,
    /// Why the scheduler could not run it at its last attempt (`None` when it could).
    pub problem: Option<PolicyProblem>,
}

/// What stopped the scheduler from running a policy, and since when.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyProblem {
    pub at: i64,
    pub message: String,
}

/// A deployment a policy created for one cycle.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyRun {
    pub policy_id: String,
    /// The cycle: a window's local date (`2026-12-08`) or an expedite key.
    pub cycle: String,
    pub deployment_id: String,
    pub created_at: i64,
}

/// An update someone rejected: never installed again until un-rejected.
#[derive(Debug, Clone, PartialEq)]
pub struct RejectedUpdate {
    pub tenant_id: String,
    pub package: String,
    pub version: String,
    pub deployment_id: Option<String>,
    pub rejected_by: String,
    pub reason: Option<String>,
    pub rejected_at: i64,
}

#[async_trait]
pub trait PolicyStore: Send + Sync {
    /// A taken name in the tenant is a [`crate::StoreError::Conflict`].
    async fn create_policy(&self, policy: &Policy) -> Result<()>;
    /// Replaces name, spec, enabled, revision and updated_at. False when there is no such policy.
    async fn update_policy(&self, policy: &Policy) -> Result<bool>;
    /// Records (or, with `None`, clears) why the scheduler cannot run the policy. False when
    /// there is no such policy.
    async fn set_policy_problem(&self, id: &str, problem: Option<&PolicyProblem>) -> Result<bool>;
    async fn delete_policy(&self, id: &str) -> Result<bool>;
    async fn policy(&self, id: &str) -> Result<Option<Policy>>;
    async fn policy_by_name(&self, tenant_id: &str, name: &str) -> Result<Option<Policy>>;
    async fn list_policies(&self, tenant_id: Option<&str>) -> Result<Vec<Policy>>;

    /// Creates a policy's deployment for one cycle, all or nothing. Returns false (and
    /// creates nothing) when the policy already has a deployment for that cycle.
    async fn create_policy_deployment(
        &self,
        run: &PolicyRun,
        deployment: &Deployment,
        jobs: &[Job],
        packages: &[JobPackage],
    ) -> Result<bool>;
    async fn policy_run(&self, policy_id: &str, cycle: &str) -> Result<Option<PolicyRun>>;
    async fn policy_runs(&self, policy_id: &str) -> Result<Vec<PolicyRun>>;

    /// Records rejections (an existing one for the same package and version is kept).
    async fn reject_updates(&self, rejected: &[RejectedUpdate]) -> Result<()>;
    /// Lifts rejections of this package (one version, or every version when `None`);
    /// returns how many.
    async fn unreject_update(
        &self,
        tenant_id: &str,
        package: &str,
        version: Option<&str>,
    ) -> Result<u64>;
    async fn rejected_updates(&self, tenant_id: Option<&str>) -> Result<Vec<RejectedUpdate>>;

    /// Hands a failed job back to its device for another attempt, not before `not_before`.
    /// Only when the job is done and on `attempt`; returns false otherwise (already requeued).
    async fn requeue_job(&self, job_id: &str, attempt: i64, not_before: i64) -> Result<bool>;
    /// Closes a job that has not started without running it: its pending packages become
    /// `skipped` with this evidence, each with an attempt saying so (`action`). False when
    /// the job has started or is done.
    async fn skip_job(&self, job_id: &str, now: i64, evidence: &str, action: &str) -> Result<bool>;
    /// Replaces a device's labels (e.g. a `timezone` override). False when there is no such device.
    async fn set_device_labels(
        &self,
        device_id: &str,
        labels: &std::collections::BTreeMap<String, String>,
    ) -> Result<bool>;
}
