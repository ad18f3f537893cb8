//! Pre-flight checks: jobs that predict a deployment's outcome without changing anything, and
//! the predictions they produce. Part of the [`crate::Store`] interface (a supertrait).

use crate::{Result, ResultStored};
use async_trait::async_trait;
use patchwarden_core::{FailureClass, JobStatus, PackageState};

/// One device's pre-flight job for one deployment.
#[derive(Debug, Clone, PartialEq)]
pub struct PreflightJob {
    pub id: String,
    pub tenant_id: String,
    pub deployment_id: String,
    pub device_id: String,
    /// JSON text of an `Operation::Preflight`.
    pub payload: String,
    pub status: JobStatus,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
}

/// A predicted outcome of one package on one device.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    pub deployment_id: String,
    pub device_id: String,
    pub package: String,
    pub tenant_id: String,
    pub job_id: String,
    pub state: PackageState,
    pub class: Option<FailureClass>,
    pub evidence: Vec<String>,
    pub at: i64,
}

#[async_trait]
pub trait PreflightStore: Send + Sync {
    /// Queues these jobs: a new (deployment, device) is inserted, a `done` one is queued again
    /// with the new payload (a new check), a queued or running one is left alone (idempotent).
    /// Returns how many were queued by this call.
    async fn queue_preflight_jobs(&self, jobs: &[PreflightJob]) -> Result<u32>;
    async fn preflight_jobs_of_deployment(&self, deployment_id: &str) -> Result<Vec<PreflightJob>>;
    /// Queued jobs of the device, and running ones whose lease (`lease_ms` after the start)
    /// ran out; never those of a cancelled deployment.
    async fn offerable_preflight_jobs(
        &self,
        device_id: &str,
        now: i64,
        lease_ms: i64,
    ) -> Result<Vec<PreflightJob>>;
    /// False when the device has no such job.
    async fn mark_preflight_started(&self, id: &str, device_id: &str, now: i64) -> Result<bool>;
    /// Marks the job done and replaces the device's predictions for the deployment, once.
    async fn store_preflight_result(
        &self,
        id: &str,
        device_id: &str,
        finished_at: i64,
        result_json: &str,
        predictions: &[Prediction],
    ) -> Result<ResultStored>;
    async fn predictions_of_deployment(&self, deployment_id: &str) -> Result<Vec<Prediction>>;
}
