//! The agent protocol: enroll, check in, long-poll for work, report results.

use crate::auth::{hash_token, new_id, new_token, DeviceAuth, DEVICE_SECRET_PREFIX};
use crate::error::{ApiError, ApiResult, Body};
use crate::AppState;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use patchwarden_store::{
    Device, DeviceInventorySummary, EnrollRefusal, InventoryUpdate, JobOutcome, JobPackage,
    ResultStored,
};
use patchwarden_wire::agent::*;
use patchwarden_wire::PROTOCOL_VERSION;
use serde::Deserialize;
use std::time::Duration;

/// Longest a work request is held open.
pub const MAX_WAIT_SECS: u64 = 60;
/// A running job whose agent went silent is offered again this long after its time budget.
const JOB_LEASE_GRACE_MS: i64 = 5 * 60 * 1000;

fn check_protocol(version: u32) -> ApiResult<()> {
    if version > PROTOCOL_VERSION || version == 0 {
        return Err(ApiError::bad_request(format!(
            "protocol version {version} is not supported; this server speaks 1..={PROTOCOL_VERSION}"
        )));
    }
    Ok(())
}

#[utoipa::path(post, path = "/api/v1/agent/enroll", request_body = EnrollRequest,
    responses((status = 200, body = EnrollResponse), (status = 401, body = patchwarden_wire::ErrorBody)), tag = "agent")]
pub async fn enroll(
    State(state): State<AppState>,
    Body(req): Body<EnrollRequest>,
) -> ApiResult<Json<EnrollResponse>> {
    check_protocol(req.protocol_version)?;
    let hostname = req.hostname.trim();
    if hostname.is_empty() || hostname.len() > 253 {
        return Err(ApiError::bad_request(
            "hostname must be 1 to 253 characters",
        ));
    }
    let now = state.clock.now_ms();
    let secret = new_token(DEVICE_SECRET_PREFIX);
    let device = Device {
        id: new_id("dev_"),
        tenant_id: String::new(),
        hostname: hostname.to_owned(),
        machine_id: req.machine_id.chars().take(64).collect(),
        labels: Default::default(),
        secret_hash: hash_token(&secret),
        enroll_token_id: None,
        enrolled_at: now,
        last_seen: Some(now),
        agent_version: req.agent_version.chars().take(64).collect(),
        checkin_interval_secs: state.config.checkin_interval_secs as i64,
        inventory_hash: None,
        inventory_at: None,
        summary: DeviceInventorySummary::default(),
    };
    let device = match state
        .store
        .enroll_device(&hash_token(req.token.trim()), now, device)
        .await?
    {
        Ok(d) => d,
        Err(refusal) => {
            let message = match refusal {
                EnrollRefusal::UnknownToken => "unknown enrollment token",
                EnrollRefusal::Expired => "this enrollment token has expired; create a new one",
                EnrollRefusal::Revoked => "this enrollment token has been revoked",
                EnrollRefusal::Exhausted => {
                    "this enrollment token has been used as many times as it allows"
                }
            };
            tracing::warn!(hostname, ?refusal, "enrollment refused");
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_enroll_token",
                message,
            ));
        }
    };
    let tenant = state
        .store
        .tenant_by_id(&device.tenant_id)
        .await?
        .map(|t| t.name)
        .unwrap_or_default();
    tracing::info!(device = %device.id, hostname = %device.hostname, tenant = %tenant, "device enrolled");
    Ok(Json(EnrollResponse {
        device_id: device.id,
        device_secret: secret,
        tenant,
        checkin_interval_secs: state.config.checkin_interval_secs,
        server_cert_sha256: None,
        work_signing_key: None,
    }))
}

/// The figures a device list shows, derived once when the inventory arrives.
pub fn summarise(inv: &Inventory) -> DeviceInventorySummary {
    let os = if inv.os.pretty_name.is_empty() {
        format!("{} {}", inv.os.id, inv.os.version)
            .trim()
            .to_owned()
    } else {
        inv.os.pretty_name.clone()
    };
    DeviceInventorySummary {
        os,
        kernel: inv.kernel.clone(),
        pending_updates: inv.upgradable.len() as i64,
        security_updates: inv.upgradable.iter().filter(|u| u.security).count() as i64,
        reboot_required: inv.reboot_required,
    }
}

#[utoipa::path(post, path = "/api/v1/agent/checkin", request_body = CheckinRequest,
    responses((status = 200, body = CheckinResponse)), security(("device" = [])), tag = "agent")]
pub async fn checkin(
    State(state): State<AppState>,
    DeviceAuth(device): DeviceAuth,
    Body(req): Body<CheckinRequest>,
) -> ApiResult<Json<CheckinResponse>> {
    check_protocol(req.protocol_version)?;
    let now = state.clock.now_ms();
    let update = match &req.inventory {
        Some(inv) => {
            let json = serde_json::to_string(inv)
                .map_err(|e| ApiError::bad_request(format!("inventory: {e}")))?;
            // The hash is the agent's (over its canonical serialisation); we keep it as the
            // key of "what the server holds" and do not recompute it.
            Some(InventoryUpdate {
                hash: req.inventory_hash.clone(),
                json,
                summary: summarise(inv),
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
        crate::reboots::on_inventory(&state, &device, inv).await?;
        crate::history::confirm_reboots(&state, &device, inv).await?;
        // A new inventory rematches this device only.
        if let Err(e) = crate::vulns::rematch_device(&state, &device, inv).await {
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
        || !crate::preflight::offerable(&state, &device.id)
            .await?
            .is_empty();
    tracing::debug!(device = %device.id, with_inventory = update.is_some(), "check-in");
    Ok(Json(CheckinResponse {
        inventory_wanted,
        checkin_interval_secs: state.config.checkin_interval_secs,
        work_pending,
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct WorkQuery {
    /// Seconds to hold the request open waiting for work (0 to 60).
    #[serde(default)]
    pub wait: u64,
}

#[utoipa::path(get, path = "/api/v1/agent/work", params(WorkQuery),
    responses((status = 200, body = WorkResponse)), security(("device" = [])), tag = "agent")]
pub async fn work(
    State(state): State<AppState>,
    DeviceAuth(device): DeviceAuth,
    Query(q): Query<WorkQuery>,
) -> ApiResult<Json<WorkResponse>> {
    let wait = Duration::from_secs(q.wait.min(MAX_WAIT_SECS));
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
        // Pre-flight checks first: they are quick and change nothing.
        let preflight = crate::preflight::offerable(&state, &device.id).await?;
        if !jobs.is_empty() || !preflight.is_empty() || tokio::time::Instant::now() >= deadline {
            let mut offered = Vec::with_capacity(jobs.len());
            for j in jobs {
                // The deployment's reboot policy, after the loop guard.
                let payload = crate::reboots::payload_for_offer(&state, &device, &j).await?;
                let payload = crate::orchestrator::payload_for_window(&payload, j.window_end);
                offered.push(WorkEnvelope {
                    job_id: work_id(&j.id, j.attempt),
                    payload,
                    signature: None,
                    key_id: None,
                });
            }
            let items = preflight.into_iter().chain(offered).collect();
            return Ok(Json(WorkResponse { items }));
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            return Ok(Json(WorkResponse { items: vec![] }));
        }
    }
}

/// The id a device sees for a job: a retry carries its attempt (`job_…~2`), so that the agent,
/// which never runs one id twice, runs it again, and a late result of an earlier attempt is
/// told apart from the current one.
fn work_id(job_id: &str, attempt: i64) -> String {
    if attempt > 1 {
        format!("{job_id}~{attempt}")
    } else {
        job_id.to_owned()
    }
}

/// (job id, attempt) from a work id.
fn split_work_id(work_id: &str) -> (String, i64) {
    match work_id.split_once('~') {
        Some((id, n)) => (id.to_owned(), n.parse().unwrap_or(0)),
        None => (work_id.to_owned(), 1),
    }
}

#[utoipa::path(post, path = "/api/v1/agent/jobs/{job_id}/start", params(("job_id" = String, Path)),
    responses((status = 204), (status = 404, body = patchwarden_wire::ErrorBody), (status = 409, body = patchwarden_wire::ErrorBody)), security(("device" = [])), tag = "agent")]
pub async fn job_started(
    State(state): State<AppState>,
    DeviceAuth(device): DeviceAuth,
    Path(job_id): Path<String>,
) -> ApiResult<StatusCode> {
    if crate::preflight::is_preflight_job(&job_id) {
        return crate::preflight::started(&state, &device, &job_id).await;
    }
    let (job_id, _) = split_work_id(&job_id);
    let now = state.clock.now_ms();
    // Only work on offer now may start, whatever the device's clock says: not a job taken
    // back when its window closed, not one of a halted or cancelled deployment. An offer can
    // reach a device late (a response held up while its network was down).
    if let Some(job) = state.store.job(&job_id).await? {
        if job.device_id == device.id && job.status == patchwarden_store::JobStatus::Queued {
            let offered = state
                .store
                .offerable_jobs(&device.id, now, JOB_LEASE_GRACE_MS)
                .await?;
            if !offered.iter().any(|j| j.id == job_id) {
                tracing::warn!(device = %device.id, job = %job_id, "start refused: the job is no longer on offer");
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "not_on_offer",
                    format!("job {job_id} is no longer on offer (its maintenance window closed, or its deployment is not running); do not start it"),
                ));
            }
        }
    }
    if state
        .store
        .mark_job_started(&job_id, &device.id, now)
        .await?
    {
        tracing::info!(device = %device.id, job = %job_id, "job started");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!(
            "no job {job_id} for this device"
        )))
    }
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ResultAck {
    /// False when this was a re-delivery of a result already stored.
    pub stored: bool,
}

fn parse_time_ms(s: &str) -> Option<i64> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

#[utoipa::path(post, path = "/api/v1/agent/jobs/{job_id}/result", params(("job_id" = String, Path)), request_body = JobResult,
    responses((status = 200, body = ResultAck), (status = 404, body = patchwarden_wire::ErrorBody)), security(("device" = [])), tag = "agent")]
pub async fn job_result(
    State(state): State<AppState>,
    DeviceAuth(device): DeviceAuth,
    Path(job_id): Path<String>,
    Body(result): Body<JobResult>,
) -> ApiResult<Json<ResultAck>> {
    if crate::preflight::is_preflight_job(&job_id) {
        let stored = crate::preflight::store_result(&state, &device, &job_id, &result).await?;
        return Ok(Json(ResultAck { stored }));
    }
    let (job_id, attempt) = split_work_id(&job_id);
    let raw = serde_json::to_string(&result).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let now = state.clock.now_ms();
    let jobs_deployment = |job: &str| {
        // Deployment id and tenant are filled in by the store from the job row.
        JobPackage {
            job_id: job.to_owned(),
            package: String::new(),
            tenant_id: device.tenant_id.clone(),
            deployment_id: String::new(),
            device_id: device.id.clone(),
            state: String::new(),
            class: None,
            from_version: None,
            to_version: None,
            installed_version: None,
            evidence: vec![],
        }
    };
    let packages = result
        .packages
        .iter()
        .map(|p| JobPackage {
            package: p.package.clone(),
            state: p.state.as_str().to_owned(),
            class: p.class.map(|c| c.as_str().to_owned()),
            from_version: p.from_version.clone(),
            to_version: p.to_version.clone(),
            installed_version: p.installed_version.clone(),
            evidence: p
                .evidence
                .iter()
                .take(patchwarden_wire::MAX_EVIDENCE_LINES)
                .cloned()
                .collect(),
            ..jobs_deployment(&job_id)
        })
        .collect();
    let outcome = JobOutcome {
        finished_at: parse_time_ms(&result.finished_at).unwrap_or(now),
        started_at: parse_time_ms(&result.started_at),
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
            crate::reboots::after_result(&state, &job_id, &result).await?;
            if let Err(e) = crate::orchestrator::requeue_window_refusal(&state, &job_id).await {
                tracing::error!(job = %job_id, error = %e, "cannot requeue for the next window");
            }
            if let Err(e) = crate::orchestrator::retry_if_due(&state, &job_id).await {
                tracing::error!(job = %job_id, error = %e, "cannot schedule a retry");
            }
            if let Some(job) = state.store.job(&job_id).await? {
                crate::orchestrator::tick(&state, &job.deployment_id).await?;
            }
            tracing::info!(device = %device.id, job = %job_id, packages = result.packages.len(), "job result stored");
            Ok(Json(ResultAck { stored: true }))
        }
        ResultStored::Duplicate => {
            tracing::info!(device = %device.id, job = %job_id, "job result re-delivered; already stored");
            Ok(Json(ResultAck { stored: false }))
        }
        ResultStored::UnknownJob => Err(ApiError::not_found(format!(
            "no job {job_id} for this device"
        ))),
    }
}
