//! The operator API: enrollment tokens, devices, deployments. Every handler checks the
//! caller's tenant scope against the tenant of the data it touches.

use crate::auth::{hash_token, new_id, new_token, Operator, ENROLL_TOKEN_PREFIX};
use crate::engine::{plan_device, validate_packages};
use crate::error::{ApiError, ApiResult, Body};
use crate::{now_ms, rfc3339, AppState};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use patchwarden_core::{FailureClass, PackageState};
use patchwarden_store::{Deployment, Device, EnrollToken, Job, JobPackage, JobStatus};
use patchwarden_wire::agent::{Inventory, Operation};
use patchwarden_wire::api::*;
use std::collections::HashMap;

const DEFAULT_TENANT: &str = "default";
const DEFAULT_ENROLL_TTL_SECS: u64 = 24 * 3600;
const MAX_ENROLL_TTL_SECS: u64 = 365 * 24 * 3600;
const DEFAULT_JOB_TIMEOUT_SECS: u64 = 1800;

fn valid_tenant_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

async fn resolve_tenant(
    state: &AppState,
    op: &Operator,
    name: Option<&str>,
) -> ApiResult<patchwarden_store::Tenant> {
    let name = name.unwrap_or(DEFAULT_TENANT);
    if !valid_tenant_name(name) {
        return Err(ApiError::bad_request(format!(
            "invalid tenant name {name:?}: use letters, digits, '-', '_' or '.' (at most 64)"
        )));
    }
    let tenant = state.store.ensure_tenant(name, now_ms()).await?;
    if !op.can_access(&tenant.id) {
        return Err(ApiError::forbidden(format!(
            "this token may not act on tenant {name:?}"
        )));
    }
    Ok(tenant)
}

async fn tenant_names(state: &AppState) -> ApiResult<HashMap<String, String>> {
    Ok(state
        .store
        .list_tenants()
        .await?
        .into_iter()
        .map(|t| (t.id, t.name))
        .collect())
}

#[utoipa::path(post, path = "/api/v1/enroll-tokens", request_body = CreateEnrollTokenRequest,
    responses((status = 201, body = EnrollTokenCreated), (status = 400, body = patchwarden_wire::ErrorBody)),
    security(("operator" = [])), tag = "enrollment")]
pub async fn create_enroll_token(
    State(state): State<AppState>,
    op: Operator,
    Body(req): Body<CreateEnrollTokenRequest>,
) -> ApiResult<(StatusCode, Json<EnrollTokenCreated>)> {
    let tenant = resolve_tenant(&state, &op, req.tenant.as_deref()).await?;
    let ttl = req.ttl_secs.unwrap_or(DEFAULT_ENROLL_TTL_SECS);
    if ttl == 0 || ttl > MAX_ENROLL_TTL_SECS {
        return Err(ApiError::bad_request(format!(
            "ttl must be between 1 second and 365 days, got {ttl} s"
        )));
    }
    for (k, v) in &req.labels {
        if k.is_empty()
            || k.len() > 64
            || v.len() > 256
            || !k
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
        {
            return Err(ApiError::bad_request(format!("invalid label {k:?}={v:?}")));
        }
    }
    let now = now_ms();
    let token = new_token(ENROLL_TOKEN_PREFIX);
    let record = EnrollToken {
        id: new_id("enr_"),
        tenant_id: tenant.id.clone(),
        token_hash: hash_token(&token),
        labels: req.labels.clone(),
        created_at: now,
        expires_at: now + (ttl as i64) * 1000,
        revoked_at: None,
        uses: 0,
        max_uses: req.max_uses.map(i64::from),
    };
    state.store.insert_enroll_token(&record).await?;
    tracing::info!(token_id = %record.id, tenant = %tenant.name, "enrollment token created");
    Ok((
        StatusCode::CREATED,
        Json(EnrollTokenCreated {
            id: record.id,
            token,
            tenant: tenant.name,
            expires_at: rfc3339(record.expires_at),
        }),
    ))
}

#[utoipa::path(get, path = "/api/v1/enroll-tokens", responses((status = 200, body = [EnrollTokenInfo])),
    security(("operator" = [])), tag = "enrollment")]
pub async fn list_enroll_tokens(
    State(state): State<AppState>,
    op: Operator,
) -> ApiResult<Json<Vec<EnrollTokenInfo>>> {
    let names = tenant_names(&state).await?;
    let tokens = state.store.list_enroll_tokens(op.tenant_scope()).await?;
    Ok(Json(
        tokens
            .into_iter()
            .map(|t| EnrollTokenInfo {
                tenant: names.get(&t.tenant_id).cloned().unwrap_or_default(),
                id: t.id,
                labels: t.labels,
                created_at: rfc3339(t.created_at),
                expires_at: rfc3339(t.expires_at),
                revoked_at: t.revoked_at.map(rfc3339),
                uses: t.uses as u32,
                max_uses: t.max_uses.map(|m| m as u32),
            })
            .collect(),
    ))
}

#[utoipa::path(delete, path = "/api/v1/enroll-tokens/{id}", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = patchwarden_wire::ErrorBody)), security(("operator" = [])), tag = "enrollment")]
pub async fn revoke_enroll_token(
    State(state): State<AppState>,
    op: Operator,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let visible = state
        .store
        .list_enroll_tokens(op.tenant_scope())
        .await?
        .iter()
        .any(|t| t.id == id);
    if !visible || !state.store.revoke_enroll_token(&id, now_ms()).await? {
        return Err(ApiError::not_found(format!("no enrollment token {id}")));
    }
    tracing::info!(token_id = %id, "enrollment token revoked");
    Ok(StatusCode::NO_CONTENT)
}

/// `online`: seen within three check-in intervals; `stale`: within a day; else `offline`.
pub fn device_status(d: &Device, now: i64) -> &'static str {
    match d.last_seen {
        None => "new",
        Some(seen) => {
            let age = now - seen;
            if age <= 3 * d.checkin_interval_secs * 1000 + 30_000 {
                "online"
            } else if age <= 24 * 3600 * 1000 {
                "stale"
            } else {
                "offline"
            }
        }
    }
}

fn summary(d: Device, tenant: String, now: i64) -> DeviceSummary {
    DeviceSummary {
        status: device_status(&d, now).to_owned(),
        id: d.id,
        tenant,
        hostname: d.hostname,
        labels: d.labels,
        os: d.summary.os,
        kernel: d.summary.kernel,
        enrolled_at: rfc3339(d.enrolled_at),
        last_seen: d.last_seen.map(rfc3339),
        pending_updates: d.summary.pending_updates as u32,
        security_updates: d.summary.security_updates as u32,
        reboot_required: d.summary.reboot_required,
        agent_version: d.agent_version,
    }
}

#[utoipa::path(get, path = "/api/v1/devices", responses((status = 200, body = [DeviceSummary])),
    security(("operator" = [])), tag = "devices")]
pub async fn list_devices(
    State(state): State<AppState>,
    op: Operator,
) -> ApiResult<Json<Vec<DeviceSummary>>> {
    let names = tenant_names(&state).await?;
    let now = now_ms();
    let devices = state.store.list_devices(op.tenant_scope()).await?;
    Ok(Json(
        devices
            .into_iter()
            .map(|d| {
                let tenant = names.get(&d.tenant_id).cloned().unwrap_or_default();
                summary(d, tenant, now)
            })
            .collect(),
    ))
}

async fn visible_device(state: &AppState, op: &Operator, id: &str) -> ApiResult<Device> {
    match state.store.device(id).await? {
        Some(d) if op.can_access(&d.tenant_id) => Ok(d),
        _ => Err(ApiError::not_found(format!("no device {id}"))),
    }
}

async fn inventory_of(state: &AppState, id: &str) -> ApiResult<Option<Inventory>> {
    match state.store.device_inventory_json(id).await? {
        None => Ok(None),
        Some(json) => match serde_json::from_str(&json) {
            Ok(inv) => Ok(Some(inv)),
            Err(e) => {
                tracing::error!(device = %id, error = %e, "stored inventory does not parse");
                Ok(None)
            }
        },
    }
}

#[utoipa::path(get, path = "/api/v1/devices/{id}", params(("id" = String, Path)),
    responses((status = 200, body = DeviceDetail), (status = 404, body = patchwarden_wire::ErrorBody)),
    security(("operator" = [])), tag = "devices")]
pub async fn get_device(
    State(state): State<AppState>,
    op: Operator,
    Path(id): Path<String>,
) -> ApiResult<Json<DeviceDetail>> {
    let device = visible_device(&state, &op, &id).await?;
    let tenant = state
        .store
        .tenant_by_id(&device.tenant_id)
        .await?
        .map(|t| t.name)
        .unwrap_or_default();
    let inventory = inventory_of(&state, &id).await?;
    let history = state
        .store
        .attempts_of_device(&id, 200)
        .await?
        .into_iter()
        .map(crate::history::attempt_view)
        .collect();
    let filter = patchwarden_store::FailureFilter {
        device_id: Some(id.clone()),
        ..Default::default()
    };
    let failures = state
        .store
        .current_failures(&filter)
        .await?
        .into_iter()
        .map(|a| crate::history::failure_row(a, device.hostname.clone()))
        .collect();
    Ok(Json(DeviceDetail {
        summary: summary(device, tenant, now_ms()),
        inventory,
        history,
        failures,
    }))
}

#[utoipa::path(post, path = "/api/v1/deployments", request_body = CreateDeploymentRequest,
    responses((status = 201, body = DeploymentCreated), (status = 400, body = patchwarden_wire::ErrorBody)),
    security(("operator" = [])), tag = "deployments")]
pub async fn create_deployment(
    State(state): State<AppState>,
    op: Operator,
    Body(req): Body<CreateDeploymentRequest>,
) -> ApiResult<(StatusCode, Json<DeploymentCreated>)> {
    let forms = [
        !req.target.devices.is_empty(),
        !req.target.labels.is_empty(),
        req.target.all,
    ];
    if forms.iter().filter(|f| **f).count() != 1 {
        return Err(ApiError::bad_request(
            "target exactly one of: devices (--device), labels (--label), or all (--all)",
        ));
    }
    if let Selection::Packages { packages } = &req.selection {
        validate_packages(packages).map_err(ApiError::bad_request)?;
    }
    let timeout_secs = req.timeout_secs.unwrap_or(DEFAULT_JOB_TIMEOUT_SECS);
    if timeout_secs == 0 || timeout_secs > 24 * 3600 {
        return Err(ApiError::bad_request(
            "timeout must be between 1 second and 24 hours",
        ));
    }
    let tenant = resolve_tenant(&state, &op, req.tenant.as_deref()).await?;
    let all = state.store.list_devices(Some(&tenant.id)).await?;
    let targets: Vec<Device> = if !req.target.devices.is_empty() {
        let mut chosen = Vec::new();
        for id in &req.target.devices {
            match all.iter().find(|d| &d.id == id || &d.hostname == id) {
                Some(d) => chosen.push(d.clone()),
                None => {
                    return Err(ApiError::bad_request(format!(
                        "no device {id:?} in tenant {:?}",
                        tenant.name
                    )))
                }
            }
        }
        chosen
    } else if !req.target.labels.is_empty() {
        all.into_iter()
            .filter(|d| {
                req.target
                    .labels
                    .iter()
                    .all(|(k, v)| d.labels.get(k) == Some(v))
            })
            .collect()
    } else {
        all
    };
    if targets.is_empty() {
        return Err(ApiError::bad_request(format!(
            "no device in tenant {:?} matches the target",
            tenant.name
        )));
    }

    let now = now_ms();
    let deployment = Deployment {
        id: new_id("dep_"),
        tenant_id: tenant.id.clone(),
        created_at: now,
        created_by: op.0.name.clone(),
        selection_json: serde_json::to_string(&req.selection)
            .map_err(|e| ApiError::bad_request(e.to_string()))?,
        timeout_secs: timeout_secs as i64,
    };
    let mut jobs = Vec::new();
    let mut rows = Vec::new();
    let mut without_work = 0u32;
    for device in &targets {
        let inventory = inventory_of(&state, &device.id).await?;
        let planned = plan_device(&req.selection, inventory.as_ref());
        if planned.is_empty() {
            without_work += 1;
            continue;
        }
        let job_id = new_id("job_");
        let op_payload = Operation::Install {
            deployment_id: deployment.id.clone(),
            packages: planned.iter().map(|p| p.target.clone()).collect(),
            timeout_secs,
        };
        for p in &planned {
            rows.push(JobPackage {
                job_id: job_id.clone(),
                package: p.target.name.clone(),
                tenant_id: tenant.id.clone(),
                deployment_id: deployment.id.clone(),
                device_id: device.id.clone(),
                state: PackageState::Pending.as_str().to_owned(),
                class: None,
                from_version: p.from_version.clone(),
                to_version: p.target.version.clone(),
                installed_version: None,
                evidence: vec![],
            });
        }
        jobs.push(Job {
            id: job_id,
            tenant_id: tenant.id.clone(),
            deployment_id: deployment.id.clone(),
            device_id: device.id.clone(),
            payload: serde_json::to_string(&op_payload)
                .map_err(|e| ApiError::bad_request(e.to_string()))?,
            status: JobStatus::Queued,
            created_at: now,
            started_at: None,
            finished_at: None,
            exit_code: None,
            commands: vec![],
            duration_ms: None,
            output: None,
            error: None,
        });
    }
    if jobs.is_empty() {
        return Err(ApiError::bad_request(format!(
            "none of the {} targeted device(s) has anything to install for this selection",
            targets.len()
        )));
    }
    state
        .store
        .create_deployment(&deployment, &jobs, &rows)
        .await?;
    for job in &jobs {
        state.notifier.wake(&job.device_id);
    }
    tracing::info!(deployment = %deployment.id, tenant = %tenant.name, devices = jobs.len(), "deployment created");
    Ok((
        StatusCode::CREATED,
        Json(DeploymentCreated {
            id: deployment.id,
            devices: jobs.len() as u32,
            devices_without_work: without_work,
        }),
    ))
}

fn parse_selection(json: &str) -> Selection {
    serde_json::from_str(json).unwrap_or(Selection::Packages { packages: vec![] })
}

async fn deployment_view(
    state: &AppState,
    d: Deployment,
    tenant: String,
) -> ApiResult<DeploymentView> {
    let jobs = state.store.jobs_of_deployment(&d.id).await?;
    let packages = state.store.packages_of_deployment(&d.id).await?;
    let hostnames: HashMap<String, String> = state
        .store
        .list_devices(Some(&d.tenant_id))
        .await?
        .into_iter()
        .map(|dev| (dev.id, dev.hostname))
        .collect();
    let jobs_by_id: HashMap<&str, &Job> = jobs.iter().map(|j| (j.id.as_str(), j)).collect();
    let mut counts = OutcomeCounts::default();
    let results = packages
        .iter()
        .map(|p| {
            let state = p
                .state
                .parse::<PackageState>()
                .unwrap_or(PackageState::Pending);
            counts.add(state);
            let job = jobs_by_id.get(p.job_id.as_str());
            ResultRow {
                device: p.device_id.clone(),
                hostname: hostnames.get(&p.device_id).cloned().unwrap_or_default(),
                package: p.package.clone(),
                state,
                class: p
                    .class
                    .as_deref()
                    .map(|c| c.parse().unwrap_or(FailureClass::Unknown)),
                from_version: p.from_version.clone(),
                to_version: p.to_version.clone(),
                installed_version: p.installed_version.clone(),
                evidence: p.evidence.clone(),
                exit_code: job.and_then(|j| j.exit_code).map(|c| c as i32),
                command: job.and_then(|j| j.commands.last().cloned()),
                duration_ms: job.and_then(|j| j.duration_ms).map(|d| d as u64),
            }
        })
        .collect();
    let devices_done = jobs.iter().filter(|j| j.status == JobStatus::Done).count() as u32;
    let devices_total = jobs.len() as u32;
    let job_views = jobs
        .into_iter()
        .map(|j| JobView {
            hostname: hostnames.get(&j.device_id).cloned().unwrap_or_default(),
            id: j.id,
            device: j.device_id,
            status: j.status.as_str().to_owned(),
            started_at: j.started_at.map(rfc3339),
            finished_at: j.finished_at.map(rfc3339),
            exit_code: j.exit_code.map(|c| c as i32),
            commands: j.commands,
            duration_ms: j.duration_ms.map(|d| d as u64),
            output: j.output,
            error: j.error,
        })
        .collect();
    Ok(DeploymentView {
        selection: parse_selection(&d.selection_json),
        id: d.id,
        tenant,
        created_at: rfc3339(d.created_at),
        status: if devices_done == devices_total {
            "completed"
        } else {
            "running"
        }
        .to_owned(),
        devices_total,
        devices_done,
        counts,
        jobs: job_views,
        results,
    })
}

#[utoipa::path(get, path = "/api/v1/deployments/{id}", params(("id" = String, Path)),
    responses((status = 200, body = DeploymentView), (status = 404, body = patchwarden_wire::ErrorBody)),
    security(("operator" = [])), tag = "deployments")]
pub async fn get_deployment(
    State(state): State<AppState>,
    op: Operator,
    Path(id): Path<String>,
) -> ApiResult<Json<DeploymentView>> {
    let d = match state.store.deployment(&id).await? {
        Some(d) if op.can_access(&d.tenant_id) => d,
        _ => return Err(ApiError::not_found(format!("no deployment {id}"))),
    };
    let tenant = state
        .store
        .tenant_by_id(&d.tenant_id)
        .await?
        .map(|t| t.name)
        .unwrap_or_default();
    Ok(Json(deployment_view(&state, d, tenant).await?))
}

#[utoipa::path(get, path = "/api/v1/deployments", responses((status = 200, body = [DeploymentSummary])),
    security(("operator" = [])), tag = "deployments")]
pub async fn list_deployments(
    State(state): State<AppState>,
    op: Operator,
) -> ApiResult<Json<Vec<DeploymentSummary>>> {
    let names = tenant_names(&state).await?;
    let mut out = Vec::new();
    for d in state.store.list_deployments(op.tenant_scope()).await? {
        let tenant = names.get(&d.tenant_id).cloned().unwrap_or_default();
        let v = deployment_view(&state, d, tenant).await?;
        out.push(DeploymentSummary {
            id: v.id,
            tenant: v.tenant,
            created_at: v.created_at,
            selection: v.selection,
            status: v.status,
            devices_total: v.devices_total,
            devices_done: v.devices_done,
            counts: v.counts,
        });
    }
    Ok(Json(out))
}
