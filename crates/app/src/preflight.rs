//! Pre-flight checks: `POST /api/v1/deployments/{id}/preflight` queues, for every device of a
//! deployment, an `Operation::Preflight` of exactly its planned packages. These jobs are
//! offered at once, whatever the rollout state (rings, windows, pending approval), and their
//! answers are stored as predictions, never as results: nothing installs. The deployment view
//! shows the predictions, each result row's prediction, and, after the run, how many real
//! outcomes matched (same state and class).

use crate::actor::Actor;
use crate::authz::Permission;
use crate::error::{AppError, AppResult};
use crate::{rfc3339, App};
use patchwarden_core::{FailureClass, PackageState};
use patchwarden_store::{Device, Job, JobStatus, Prediction, PreflightJob, ResultStored};
use patchwarden_wire::agent::{JobResult, Operation, WorkEnvelope};
use patchwarden_wire::api::{PredictionAccuracy, PredictionRow, PreflightStarted, ResultRow};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Pre-flight job ids start with this (`wire::WorkId`), so the agent routes can tell them
/// from install jobs.
pub use patchwarden_wire::work_id::PREFLIGHT_PREFIX as JOB_PREFIX;
/// A started pre-flight check whose agent went silent is offered again after this.
const LEASE_MS: i64 = 15 * 60 * 1000;

pub fn is_preflight_job(work_id: &str) -> bool {
    patchwarden_wire::WorkId::parse(work_id)
        .is_ok_and(|w| w.kind() == patchwarden_wire::work_id::WorkKind::Preflight)
}

/// Queues a pre-flight check of every device of deployment `id` (those already checked are
/// left alone).
pub async fn start(state: &App, op: &Actor, id: &str) -> AppResult<PreflightStarted> {
    let d = crate::scope::visible_deployment(state, op, id).await?;
    op.require(Permission::Deploy, &d.tenant_id)?;
    if d.status.is_final() {
        return Err(AppError::invalid_state(format!(
            "cannot pre-flight deployment {} while it is {}",
            d.id, d.status
        )));
    }
    let (queued, total) = queue(state, state.store.jobs_of_deployment(&d.id).await?).await?;
    tracing::info!(deployment = %d.id, queued, total, by = %op.name(), "pre-flight requested");
    Ok(PreflightStarted {
        deployment: d.id,
        queued,
        total,
    })
}

/// Queues a pre-flight of exactly these install jobs' planned packages (a job already
/// pre-flighted is left alone). Returns (newly queued, asked).
pub async fn queue(state: &App, install_jobs: Vec<Job>) -> AppResult<(u32, u32)> {
    let now = state.clock.now_ms();
    let mut jobs = Vec::new();
    for j in install_jobs {
        let Ok(Operation::Install {
            deployment_id,
            packages,
            respect_holds,
            ..
        }) = serde_json::from_str::<Operation>(&j.payload)
        else {
            continue;
        };
        let payload = crate::to_json(&Operation::Preflight {
            deployment_id,
            packages,
            respect_holds,
        })?;
        jobs.push(PreflightJob {
            id: format!("{JOB_PREFIX}{}", j.id),
            tenant_id: j.tenant_id,
            deployment_id: j.deployment_id,
            device_id: j.device_id,
            payload,
            status: JobStatus::Queued,
            created_at: now,
            started_at: None,
            finished_at: None,
        });
    }
    let queued = state.store.queue_preflight_jobs(&jobs).await?;
    for j in &jobs {
        state.notifier.wake(&j.device_id);
    }
    Ok((queued, jobs.len() as u32))
}

/// The device's pre-flight work, as work items.
pub async fn offerable(state: &App, device_id: &str) -> AppResult<Vec<WorkEnvelope>> {
    Ok(state
        .store
        .offerable_preflight_jobs(device_id, state.clock.now_ms(), LEASE_MS)
        .await?
        .into_iter()
        .map(|j| WorkEnvelope {
            job_id: j.id,
            payload: j.payload,
            signature: None,
            key_id: None,
        })
        .collect())
}

pub async fn started(state: &App, device: &Device, job_id: &str) -> AppResult<()> {
    if state
        .store
        .mark_preflight_started(job_id, &device.id, state.clock.now_ms())
        .await?
    {
        Ok(())
    } else {
        Err(AppError::not_found(format!(
            "no job {job_id} for this device"
        )))
    }
}

/// Stores a pre-flight answer as predictions; `Ok(true)` when stored, `Ok(false)` for a
/// re-delivery.
pub async fn store_result(
    state: &App,
    device: &Device,
    job_id: &str,
    result: &JobResult,
) -> AppResult<bool> {
    let raw = crate::to_json(result)?;
    let now = state.clock.now_ms();
    let mut predictions: Vec<Prediction> = result
        .packages
        .iter()
        .map(|p| Prediction {
            deployment_id: String::new(),
            device_id: device.id.clone(),
            package: p.package.clone(),
            tenant_id: device.tenant_id.clone(),
            job_id: job_id.to_owned(),
            state: p.state,
            class: p.class,
            evidence: p
                .evidence
                .iter()
                .take(patchwarden_wire::MAX_EVIDENCE_LINES)
                .cloned()
                .collect(),
            at: now,
        })
        .collect();
    if let Some(e) = &result.error {
        // The check itself could not run: say so for every package it did not answer for.
        if predictions.is_empty() {
            predictions.push(Prediction {
                deployment_id: String::new(),
                device_id: device.id.clone(),
                package: String::new(),
                tenant_id: device.tenant_id.clone(),
                job_id: job_id.to_owned(),
                state: PackageState::Failed,
                class: Some(FailureClass::AgentError),
                evidence: vec![format!(
                    "prediction: the pre-flight check could not run: {e}"
                )],
                at: now,
            });
        }
    }
    match state
        .store
        .store_preflight_result(job_id, &device.id, now, &raw, &predictions)
        .await?
    {
        ResultStored::Stored => {
            tracing::info!(device = %device.id, job = %job_id, packages = predictions.len(), "pre-flight result stored");
            Ok(true)
        }
        ResultStored::Duplicate => Ok(false),
        ResultStored::UnknownJob => Err(AppError::not_found(format!(
            "no job {job_id} for this device"
        ))),
    }
}

/// Whether a real outcome matches its prediction: the same state and class. A predicted
/// `verified` is also met by `pending_reboot` (installed; the reboot is policy, not failure).
pub fn matches(
    predicted: (PackageState, Option<FailureClass>),
    real: (PackageState, Option<FailureClass>),
) -> bool {
    let norm = |s: PackageState| {
        if s == PackageState::PendingReboot {
            PackageState::Verified
        } else {
            s
        }
    };
    norm(predicted.0) == norm(real.0)
        && (predicted.1 == real.1 || norm(real.0) == PackageState::Verified)
}

/// Real outcomes that no pre-flight check can foresee, left out of the accuracy.
fn comparable(real: PackageState, class: Option<FailureClass>) -> bool {
    real.is_final()
        && real != PackageState::DeviceOffline
        && !matches!(
            class,
            Some(FailureClass::WindowMissed | FailureClass::DeviceOffline)
        )
}

/// The predictions of a deployment as view rows, each result row annotated with its
/// prediction, the accuracy over the rows that have both, and how many checks are pending.
pub async fn annotate(
    state: &App,
    deployment_id: &str,
    hostnames: &HashMap<String, String>,
    results: &mut [ResultRow],
) -> AppResult<(Vec<PredictionRow>, Option<PredictionAccuracy>, u32)> {
    let pending = state
        .store
        .preflight_jobs_of_deployment(deployment_id)
        .await?
        .iter()
        .filter(|j| j.status != JobStatus::Done)
        .count() as u32;
    let stored = state.store.predictions_of_deployment(deployment_id).await?;
    if stored.is_empty() {
        return Ok((vec![], None, pending));
    }
    let rows: Vec<PredictionRow> = stored
        .into_iter()
        .map(|p| PredictionRow {
            hostname: hostnames.get(&p.device_id).cloned().unwrap_or_default(),
            device: p.device_id,
            package: p.package,
            state: p.state,
            class: p.class,
            evidence: p.evidence,
            at: rfc3339(p.at),
        })
        .collect();
    let by_key: HashMap<(&str, &str), &PredictionRow> = rows
        .iter()
        .map(|p| ((p.device.as_str(), p.package.as_str()), p))
        .collect();
    let mut acc = PredictionAccuracy::default();
    let mut devices: BTreeMap<String, bool> = BTreeMap::new();
    for r in results.iter_mut() {
        let Some(p) = by_key.get(&(r.device.as_str(), r.package.as_str())) else {
            continue;
        };
        r.predicted_state = Some(p.state);
        r.predicted_class = p.class;
        if !comparable(r.state, r.class) {
            continue;
        }
        let ok = matches((p.state, p.class), (r.state, r.class));
        acc.packages_compared += 1;
        acc.packages_matched += u32::from(ok);
        let d = devices.entry(r.device.clone()).or_insert(true);
        *d &= ok;
    }
    let compared: BTreeSet<&String> = devices.keys().collect();
    acc.devices_compared = compared.len() as u32;
    acc.devices_matched = devices.values().filter(|ok| **ok).count() as u32;
    acc.percent = if acc.packages_compared == 0 {
        0.0
    } else {
        f64::from(acc.packages_matched) * 100.0 / f64::from(acc.packages_compared)
    };
    let accuracy = (acc.packages_compared > 0).then_some(acc);
    Ok((rows, accuracy, pending))
}

#[cfg(test)]
mod tests {
    use super::*;
    use FailureClass::{
        DependencyConflict, DiskFull, HeldBack, RebootPending, RepoUnreachable, WindowMissed,
    };
    use PackageState::{Failed, Pending, PendingReboot, Skipped, Verified};

    #[test]
    fn a_match_is_the_same_state_and_class() {
        assert!(matches((Failed, Some(DiskFull)), (Failed, Some(DiskFull))));
        assert!(!matches(
            (Failed, Some(DiskFull)),
            (Failed, Some(RepoUnreachable))
        ));
        assert!(!matches(
            (Verified, None),
            (Failed, Some(DependencyConflict))
        ));
        assert!(matches(
            (Verified, None),
            (PendingReboot, Some(RebootPending))
        ));
        assert!(matches(
            (Skipped, Some(HeldBack)),
            (Skipped, Some(HeldBack))
        ));
        assert!(!comparable(
            PackageState::DeviceOffline,
            Some(FailureClass::DeviceOffline)
        ));
        assert!(!comparable(Failed, Some(WindowMissed)));
        assert!(!comparable(Pending, None));
    }
}
