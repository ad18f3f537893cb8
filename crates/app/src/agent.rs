//! The agent's side of the protocol: check in (with the inventory when it changed), wait for
//! work, start a job (only if it is still on offer), report its result. The device is always
//! the one its credential belongs to (`crate::actor::authenticate_device`), never one the
//! request names.

use crate::error::{AppError, AppResult, ConflictKind};
use crate::App;
use patchwarden_store::{
    Device, InventoryUpdate, JobOutcome, JobPackage, ResultStored, StartOutcome,
};
use patchwarden_wire::agent::*;
use patchwarden_wire::work_id::{WorkId, WorkKind};
use patchwarden_wire::PROTOCOL_VERSION;
use std::time::Duration;

/// Longest a work request is held open.
pub const MAX_WAIT_SECS: u64 = 60;
/// A running job whose agent went silent is offered again this long after its time budget.
const JOB_LEASE_GRACE_MS: i64 = 5 * 60 * 1000;

/// Refuses a protocol version this server does not speak.
pub fn check_protocol(version: u32) -> AppResult<()> {
    if version > PROTOCOL_VERSION || version == 0 {
        return Err(AppError::invalid(
            "protocol_version",
            format!(
                "protocol version {version} is not supported; this server speaks 1..={PROTOCOL_VERSION}"
            ),
        ));
    }
    Ok(())
}

/// A check-in: a sign of life, and the inventory when it changed. The answer says whether the
/// server wants the inventory and whether work is waiting.
pub async fn checkin(
    state: &App,
    device: &Device,
    req: &CheckinRequest,
) -> AppResult<CheckinResponse> {
    check_protocol(req.protocol_version)?;
    let now = state.clock.now_ms();
    let update = match &req.inventory {
        Some(inv) => {
            let json = crate::to_json(inv)?;
            // The hash is the agent's (over its canonical serialisation); we keep it as the
            // key of "what the server holds" and do not recompute it.
            Some(InventoryUpdate {
                hash: req.inventory_hash.clone(),
                json,
                summary: crate::inventory::summarise(inv),
                hostname: if inv.hostname.is_empty() {
                    device.hostname.clone()
                } else {
                    inv.hostname.clone()
                },
            })
        }
        None => None,
    };
    state
        .store
        .record_checkin(&device.id, now, &req.agent_version, update.as_ref())
        .await?;
    if let Some(inv) = &req.inventory {
        crate::reboots::on_inventory(state, device, inv).await?;
        crate::history::confirm_reboots(state, device, inv).await?;
        // A new inventory rematches this device only.
        if let Err(e) = crate::vulns::rematch_device(state, device, inv).await {
            tracing::error!(device = %device.id, error = %e, "vulnerability rematch failed");
        }
    }
    let held = update
        .as_ref()
        .map(|u| &u.hash)
        .or(device.inventory_hash.as_ref());
    let inventory_wanted = held != Some(&req.inventory_hash);
    let work_pending = !state
        .store
        .offerable_jobs(&device.id, now, JOB_LEASE_GRACE_MS)
        .await?
        .is_empty()
        || !crate::preflight::offerable(state, &device.id)
            .await?
            .is_empty();
    tracing::debug!(device = %device.id, with_inventory = update.is_some(), "check-in");
    Ok(CheckinResponse {
        inventory_wanted,
        checkin_interval_secs: state.config.checkin_interval_secs,
        work_pending,
    })
}

/// The device's work, waiting up to `wait` (at most [`MAX_WAIT_SECS`]) for some to be
/// queued: pre-flight checks first (quick, change nothing), then released install jobs.
pub async fn work(state: &App, device: &Device, wait: Duration) -> AppResult<WorkResponse> {
    let wait = wait.min(Duration::from_secs(MAX_WAIT_SECS));
    let deadline = tokio::time::Instant::now() + wait;
    let notify = state.notifier.handle(&device.id);
    // A held request is also a sign of life.
    state
        .store
        .record_checkin(
            &device.id,
            state.clock.now_ms(),
            &device.agent_version,
            None,
        )
        .await?;
    loop {
        // Register interest before looking, so a wake between the look and the wait counts.
        let notified = notify.notified();
        let jobs = state
            .store
            .offerable_jobs(&device.id, state.clock.now_ms(), JOB_LEASE_GRACE_MS)
            .await?;
        let preflight = crate::preflight::offerable(state, &device.id).await?;
        if !jobs.is_empty() || !preflight.is_empty() || tokio::time::Instant::now() >= deadline {
            let mut offered = Vec::with_capacity(jobs.len());
            for j in jobs {
                // The deployment's reboot policy, after the loop guard.
                let payload = crate::reboots::payload_for_offer(state, device, &j).await?;
                let payload = crate::orchestrator::payload_for_window(&payload, j.window_end);
                offered.push(WorkEnvelope {
                    job_id: work_id(&j.id, j.attempt),
                    payload,
                    signature: None,
                    key_id: None,
                });
            }
            let items = preflight.into_iter().chain(offered).collect();
            return Ok(WorkResponse { items });
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            return Ok(WorkResponse { items: vec![] });
        }
    }
}

/// The id a device sees for a job: a retry carries its attempt (`job_…~2`, the one format in
/// `wire::WorkId`), so that the agent, which never runs one id twice, runs it again, and a
/// late result of an earlier attempt is told apart from the current one.
fn work_id(job_id: &str, attempt: i64) -> String {
    let attempt = u32::try_from(attempt.max(1)).unwrap_or(u32::MAX);
    match WorkId::install(job_id, attempt) {
        Ok(w) => w.to_string(),
        Err(e) => {
            tracing::error!(job = %job_id, error = %e, "a job id the agent cannot take");
            job_id.to_owned()
        }
    }
}

/// (job id, attempt) of an install job's work id; `None` when it is not one this server
/// hands out.
fn split_work_id(work_id: &str) -> Option<(String, i64)> {
    let w = WorkId::parse(work_id).ok()?;
    (w.kind() == WorkKind::Install).then(|| (w.job_id().to_owned(), i64::from(w.attempt())))
}

fn no_job(work_id: &str) -> AppError {
    AppError::not_found(format!("no job {work_id} for this device"))
}

/// The device starts a job. Only work on offer now may start, whatever the device's clock
/// says: not a job taken back when its window closed, not one of a halted or cancelled
/// deployment (an offer can reach a device late, e.g. held up while its network was down).
/// The check and the start are one conditional write in the store.
pub async fn start(state: &App, device: &Device, work_id: &str) -> AppResult<()> {
    if crate::preflight::is_preflight_job(work_id) {
        return crate::preflight::started(state, device, work_id).await;
    }
    let (job_id, _) = split_work_id(work_id).ok_or_else(|| no_job(work_id))?;
    let now = state.clock.now_ms();
    match state
        .store
        .mark_job_started(&job_id, &device.id, now)
        .await?
    {
        StartOutcome::Started => {
            tracing::info!(device = %device.id, job = %job_id, "job started");
            Ok(())
        }
        StartOutcome::NotOnOffer => {
            tracing::warn!(device = %device.id, job = %job_id, "start refused: the job is no longer on offer");
            Err(AppError::Conflict {
                kind: ConflictKind::NotOnOffer,
                message: format!("job {job_id} is no longer on offer (its maintenance window closed, or its deployment is not running); do not start it"),
            })
        }
        StartOutcome::UnknownJob => Err(no_job(&job_id)),
    }
}

/// The device reports a job's result; `Ok(false)` for a re-delivery of a result already
/// stored (acknowledged, nothing changed).
pub async fn result(
    state: &App,
    device: &Device,
    work_id: &str,
    result: &JobResult,
) -> AppResult<bool> {
    if crate::preflight::is_preflight_job(work_id) {
        return crate::preflight::store_result(state, device, work_id, result).await;
    }
    let (job_id, attempt) = split_work_id(work_id).ok_or_else(|| no_job(work_id))?;
    let raw = crate::to_json(result)?;
    let now = state.clock.now_ms();
    let packages = result
        .packages
        .iter()
        .map(|p| JobPackage {
            job_id: job_id.clone(),
            package: p.package.clone(),
            // Deployment id and tenant are filled in by the store from the job row.
            tenant_id: device.tenant_id.clone(),
            deployment_id: String::new(),
            device_id: device.id.clone(),
            state: p.state,
            class: p.class,
            from_version: p.from_version.clone(),
            to_version: p.to_version.clone(),
            installed_version: p.installed_version.clone(),
            evidence: p
                .evidence
                .iter()
                .take(patchwarden_wire::MAX_EVIDENCE_LINES)
                .cloned()
                .collect(),
        })
        .collect();
    let outcome = JobOutcome {
        finished_at: crate::parse_rfc3339_ms(&result.finished_at).unwrap_or(now),
        started_at: crate::parse_rfc3339_ms(&result.started_at),
        exit_code: result.exit_code.map(i64::from),
        commands: result.commands.clone(),
        duration_ms: result.duration_ms as i64,
        output: patchwarden_wire::bound_output(&result.output, patchwarden_wire::MAX_OUTPUT_BYTES),
        error: result.error.clone(),
        result_json: raw,
        packages,
        boot_id: result.boot_id.clone(),
        attempt: Some(attempt),
    };
    match state
        .store
        .store_job_result(&job_id, &device.id, &outcome)
        .await?
    {
        ResultStored::Stored => {
            crate::reboots::after_result(state, &job_id, result).await?;
            if let Err(e) = crate::orchestrator::requeue_window_refusal(state, &job_id).await {
                tracing::error!(job = %job_id, error = %e, "cannot requeue for the next window");
            }
            if let Err(e) = crate::orchestrator::retry_if_due(state, &job_id).await {
                tracing::error!(job = %job_id, error = %e, "cannot schedule a retry");
            }
            if let Some(job) = state.store.job(&job_id).await? {
                crate::orchestrator::tick(state, &job.deployment_id).await?;
            }
            tracing::info!(device = %device.id, job = %job_id, packages = result.packages.len(), "job result stored");
            Ok(true)
        }
        ResultStored::Duplicate => {
            tracing::info!(device = %device.id, job = %job_id, "job result re-delivered; already stored");
            Ok(false)
        }
        ResultStored::UnknownJob => Err(no_job(&job_id)),
    }
}
