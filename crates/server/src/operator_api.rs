//! The operator API: enrollment tokens, devices, deployments. Every handler checks the
//! caller's tenant scope against the tenant of the data it touches.

use crate::auth::{hash_token, new_id, new_token, Operator, ENROLL_TOKEN_PREFIX};
use crate::engine::{plan_device, validate_packages};
use crate::error::{ApiError, ApiResult, Body};
use crate::web::authz::Permission;
use crate::{rfc3339, AppState};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use patchwarden_core::rings::{RingMembers, RingSpec};
use patchwarden_core::{FailureClass, PackageState};
use patchwarden_store::{Deployment, Device, EnrollToken, Job, JobPackage, JobStatus, Tenant};
use patchwarden_wire::agent::{Inventory, Operation};
use patchwarden_wire::api::*;
use std::collections::HashMap;

const DEFAULT_TENANT: &str = "default";
const DEFAULT_ENROLL_TTL_SECS: u64 = 24 * 3600;
const MAX_ENROLL_TTL_SECS: u64 = 365 * 24 * 3600;
const DEFAULT_JOB_TIMEOUT_SECS: u64 = 1800;

/// Refuses a tenant name that is not `[A-Za-z0-9._-]{1,64}`.
pub fn check_tenant_name(name: &str) -> ApiResult<()> {
    if valid_tenant_name(name) {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "invalid tenant name {name:?}: use letters, digits, '-', '_' or '.' (at most 64)"
        )))
    }
}

fn valid_tenant_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

pub(crate) async fn resolve_tenant(
    state: &AppState,
    op: &Operator,
    name: Option<&str>,
) -> ApiResult<patchwarden_store::Tenant> {
    // A tenant's token means its own tenant when it names none, and never creates one.
    if let Some(own) = op.tenant_scope() {
        let tenant = match name {
            None => state.store.tenant_by_id(own).await?,
            Some(n) => state
                .store
                .list_tenants()
                .await?
                .into_iter()
                .find(|t| t.name == n),
        };
        return match tenant {
            Some(t) if t.id == own => Ok(t),
            _ => Err(ApiError::forbidden(format!(
                "this token may not act on tenant {:?}",
                name.unwrap_or(own)
            ))),
        };
    }
    let name = name.unwrap_or(DEFAULT_TENANT);
    if !valid_tenant_name(name) {
        return Err(ApiError::bad_request(format!(
            "invalid tenant name {name:?}: use letters, digits, '-', '_' or '.' (at most 64)"
        )));
    }
    let tenant = state
        .store
        .ensure_tenant(name, state.clock.now_ms())
        .await?;
    if !op.can_access(&tenant.id) {
        return Err(ApiError::forbidden(format!(
            "this token may not act on tenant {name:?}"
        )));
    }
    Ok(tenant)
}

pub(crate) async fn tenant_names(state: &AppState) -> ApiResult<HashMap<String, String>> {
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
    op.require(Permission::Enroll, &tenant.id)?;
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
    let now = state.clock.now_ms();
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
    op.require_scoped(Permission::Enroll)?;
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
        .into_iter()
        .find(|t| t.id == id);
    if let Some(t) = &visible {
        op.require(Permission::Enroll, &t.tenant_id)?;
    }
    if visible.is_none()
        || !state
            .store
            .revoke_enroll_token(&id, state.clock.now_ms())
            .await?
    {
        return Err(ApiError::not_found(format!("no enrollment token {id}")));
    }
    tracing::info!(token_id = %id, "enrollment token revoked");
    Ok(StatusCode::NO_CONTENT)
}

/// `online`: seen within three check-in intervals; `stale`: within a day; else `offline`.
/// The device's status under the server's rule (online, stale after `--stale-after`, offline
/// after `--offline-after`, new).
pub fn device_status(rule: &patchwarden_store::StatusRule, d: &Device, now: i64) -> &'static str {
    rule.status(d.last_seen, d.checkin_interval_secs, now)
}

fn summary(
    d: Device,
    tenant: String,
    now: i64,
    rule: &patchwarden_store::StatusRule,
) -> DeviceSummary {
    DeviceSummary {
        status: device_status(rule, &d, now).to_owned(),
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
    op.require_scoped(Permission::View)?;
    let names = tenant_names(&state).await?;
    let now = state.clock.now_ms();
    let devices = state.store.list_devices(op.tenant_scope()).await?;
    let rule = state.store.status_rule();
    Ok(Json(
        devices
            .into_iter()
            .map(|d| {
                let tenant = names.get(&d.tenant_id).cloned().unwrap_or_default();
                summary(d, tenant, now, &rule)
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
    op.require(Permission::View, &device.tenant_id)?;
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
        tenant_id: Some(device.tenant_id.clone()),
        device_id: Some(id.clone()),
        ..Default::default()
    };
    // Every current failure (resolved and accepted ones too), with its triage, age and deadline.
    let current = state.store.current_failures(&filter).await?;
    let hostnames = std::collections::HashMap::from([(id.as_str(), device.hostname.as_str())]);
    let failures = crate::triage::annotate(&state, &filter, current, &hostnames, true).await?;
    Ok(Json(DeviceDetail {
        summary: summary(
            device,
            tenant,
            state.clock.now_ms(),
            &state.store.status_rule(),
        ),
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
    let tenant = resolve_tenant(&state, &op, req.tenant.as_deref()).await?;
    op.require(Permission::Deploy, &tenant.id)?;
    let created = create_planned(&state, &tenant, &op.0.name, &req, None)
        .await?
        .ok_or_else(|| ApiError::bad_request("this policy cycle already has its deployment"))?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// The devices a target means in a tenant.
pub(crate) async fn target_devices(
    state: &AppState,
    tenant: &Tenant,
    target: &TargetSpec,
) -> ApiResult<Vec<Device>> {
    let forms = [
        !target.devices.is_empty(),
        !target.labels.is_empty(),
        target.all,
    ];
    if forms.iter().filter(|f| **f).count() != 1 {
        return Err(ApiError::bad_request(
            "target exactly one of: devices (--device), labels (--label), or all (--all)",
        ));
    }
    let all = state.store.list_devices(Some(&tenant.id)).await?;
    Ok(if !target.devices.is_empty() {
        let mut chosen = Vec::new();
        for id in &target.devices {
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
    } else if !target.labels.is_empty() {
        all.into_iter()
            .filter(|d| {
                target
                    .labels
                    .iter()
                    .all(|(k, v)| d.labels.get(k) == Some(v))
            })
            .collect()
    } else {
        all
    })
}

/// Plans and creates a deployment: each targeted device's packages (less exclusions and
/// rejected updates), its ring, and the plan. With `run` (a policy's cycle) it is created
/// only if that cycle has none yet (`Ok(None)` otherwise).
pub(crate) async fn create_planned(
    state: &AppState,
    tenant: &Tenant,
    created_by: &str,
    req: &CreateDeploymentRequest,
    run: Option<(String, String)>,
) -> ApiResult<Option<DeploymentCreated>> {
    if let Selection::Packages { packages } = &req.selection {
        validate_packages(packages).map_err(ApiError::bad_request)?;
    }
    if let Selection::Vulnerabilities { min_severity, .. } = &req.selection {
        validate_severity(min_severity.as_deref())?;
    }
    let timeout_secs = req.timeout_secs.unwrap_or(DEFAULT_JOB_TIMEOUT_SECS);
    if timeout_secs == 0 || timeout_secs > 24 * 3600 {
        return Err(ApiError::bad_request(
            "timeout must be between 1 second and 24 hours",
        ));
    }
    let exclude = req
        .exclude
        .iter()
        .map(|p| patchwarden_core::policy::NamePattern::parse(p))
        .collect::<Result<Vec<_>, _>>()
        .map_err(ApiError::bad_request)?;
    let targets = target_devices(state, tenant, &req.target).await?;
    if targets.is_empty() {
        return Err(ApiError::bad_request(format!(
            "no device in tenant {:?} matches the target",
            tenant.name
        )));
    }

    let plan = validate_plan(req)?;
    let rejected: std::collections::HashSet<(String, String)> = state
        .store
        .rejected_updates(Some(&tenant.id))
        .await?
        .into_iter()
        .map(|r| (r.package, r.version))
        .collect();
    let now = state.clock.now_ms();
    let deployment = Deployment {
        id: new_id("dep_"),
        tenant_id: tenant.id.clone(),
        created_at: now,
        created_by: created_by.to_owned(),
        selection_json: serde_json::to_string(&req.selection)
            .map_err(|e| ApiError::bad_request(e.to_string()))?,
        timeout_secs: timeout_secs as i64,
        status: if req.require_approval {
            "pending_approval"
        } else {
            "running"
        }
        .to_owned(),
        status_reason: req
            .require_approval
            .then(|| "waiting for an approver".to_owned()),
        plan_json: serde_json::to_string(&plan.0)
            .map_err(|e| ApiError::bad_request(e.to_string()))?,
        current_ring: 0,
        approved_by: None,
        approved_at: None,
        updated_at: Some(now),
        resumed_at: None,
    };
    let needs_exposures = matches!(req.selection, Selection::Vulnerabilities { .. });
    let mut jobs = Vec::new();
    let mut rows = Vec::new();
    let mut without_work = 0u32;
    let mut blocked = Vec::new();
    for device in &targets {
        let inventory = inventory_of(state, &device.id).await?;
        let exposures = if needs_exposures {
            state
                .store
                .list_exposures(&patchwarden_store::ExposureFilter {
                    device_id: Some(device.id.clone()),
                    ..Default::default()
                })
                .await?
        } else {
            vec![]
        };
        let mut planned = plan_device(&req.selection, inventory.as_ref(), &exposures);
        planned.retain(|p| !patchwarden_core::policy::excluded(&exclude, &p.target.name));
        planned.retain(|p| {
            let hit = p
                .target
                .version
                .as_ref()
                .is_some_and(|v| rejected.contains(&(p.target.name.clone(), v.clone())));
            if hit {
                blocked.push(format!(
                    "{}={}",
                    p.target.name,
                    p.target.version.clone().unwrap_or_default()
                ));
            }
            !hit
        });
        if planned.is_empty() {
            without_work += 1;
            continue;
        }
        let job_id = new_id("job_");
        let op_payload = Operation::Install {
            deployment_id: deployment.id.clone(),
            packages: planned.iter().map(|p| p.target.clone()).collect(),
            timeout_secs,
            not_after: None,
            reboot: Default::default(),
            respect_holds: req.respect_holds.unwrap_or(true),
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
            ring: 0,
            released_at: None,
            window_end: None,
            attempt: 1,
            not_before: None,
        });
    }
    if jobs.is_empty() {
        blocked.sort();
        blocked.dedup();
        let why = if blocked.is_empty() {
            String::new()
        } else {
            format!(
                " (rejected updates are never installed until un-rejected: {})",
                blocked.join(", ")
            )
        };
        return Err(ApiError::bad_request(format!(
            "none of the {} targeted device(s) has anything to install for this selection{why}",
            targets.len()
        )));
    }
    // Rings: each device with work lands in exactly one.
    let device_ids: Vec<String> = jobs.iter().map(|j| j.device_id.clone()).collect();
    let partition = patchwarden_core::rings::partition(&plan.1, &device_ids);
    for job in &mut jobs {
        match partition
            .iter()
            .position(|ring| ring.contains(&job.device_id))
        {
            Some(i) => job.ring = i as i64,
            None => {
                return Err(ApiError::bad_request(format!(
                    "device {} is in no ring: end the rings with one that takes the rest",
                    job.device_id
                )))
            }
        }
    }
    match run {
        None => {
            state
                .store
                .create_deployment(&deployment, &jobs, &rows)
                .await?
        }
        Some((policy_id, cycle)) => {
            let run = patchwarden_store::PolicyRun {
                policy_id,
                cycle,
                deployment_id: deployment.id.clone(),
                created_at: now,
            };
            if !state
                .store
                .create_policy_deployment(&run, &deployment, &jobs, &rows)
                .await?
            {
                return Ok(None);
            }
        }
    }
    crate::orchestrator::tick(state, &deployment.id).await?;
    tracing::info!(deployment = %deployment.id, tenant = %tenant.name, devices = jobs.len(), by = %created_by, "deployment created");
    Ok(Some(DeploymentCreated {
        id: deployment.id,
        devices: jobs.len() as u32,
        devices_without_work: without_work,
    }))
}

/// `low`, `medium`, `high` or `critical` (or absent).
pub(crate) fn validate_severity(s: Option<&str>) -> ApiResult<()> {
    match s {
        None => Ok(()),
        Some(v) if patchwarden_core::policy::severity_rank(v).is_some_and(|r| r >= 2) => Ok(()),
        Some(v) => Err(ApiError::bad_request(format!(
            "invalid severity {v:?}: use low, medium, high or critical"
        ))),
    }
}

/// Checks the rollout options and turns them into the stored plan and core's ring specs.
pub(crate) fn validate_plan(
    req: &CreateDeploymentRequest,
) -> ApiResult<(crate::orchestrator::Plan, Vec<RingSpec>)> {
    let mut specs = Vec::new();
    for (i, r) in req.rings.iter().enumerate() {
        if r.name.is_empty() || req.rings[..i].iter().any(|x| x.name == r.name) {
            return Err(ApiError::bad_request(format!(
                "ring names must be unique and not empty: {:?}",
                r.name
            )));
        }
        let forms = [!r.devices.is_empty(), r.percent.is_some(), r.rest];
        if forms.iter().filter(|f| **f).count() != 1 {
            return Err(ApiError::bad_request(format!(
                "ring {:?}: give exactly one of devices, percent or rest",
                r.name
            )));
        }
        let members = if r.rest {
            RingMembers::Rest
        } else if let Some(p) = r.percent {
            if p > 100 {
                return Err(ApiError::bad_request(format!(
                    "ring {:?}: percent must be 0 to 100",
                    r.name
                )));
            }
            RingMembers::Percent(p)
        } else {
            RingMembers::Devices(r.devices.clone())
        };
        specs.push(RingSpec {
            name: r.name.clone(),
            members,
        });
    }
    if specs.is_empty() {
        specs.push(RingSpec {
            name: "all".into(),
            members: RingMembers::Rest,
        });
    }
    if let Some(g) = &req.gate {
        if !(0.0..=1.0).contains(&g.min_success_rate) {
            return Err(ApiError::bad_request(
                "gate min_success_rate must be between 0 and 1",
            ));
        }
    }
    if let Some(rate) = req.halt_failure_rate {
        if !(rate > 0.0 && rate <= 1.0) {
            return Err(ApiError::bad_request(
                "halt_failure_rate must be above 0 and at most 1",
            ));
        }
    }
    if let Some(c) = &req.concurrency {
        crate::orchestrator::parse_concurrency(c).map_err(ApiError::bad_request)?;
    }
    if let Some(w) = &req.window {
        w.parse::<patchwarden_core::schedule::Recurrence>()
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
    }
    if let Some(d) = req.window_duration_secs {
        if d == 0 || d > 7 * 24 * 3600 {
            return Err(ApiError::bad_request(
                "window duration must be between 1 second and 7 days",
            ));
        }
    }
    if let Some(r) = &req.reboot {
        crate::reboots::validate(r).map_err(ApiError::bad_request)?;
    }
    match req.offline.as_deref() {
        None | Some("next_window") | Some("immediately") => {}
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "invalid offline policy {other:?}: use next_window or immediately"
            )))
        }
    }
    if let Some(r) = &req.retry {
        crate::orchestrator::retry_policy(r).map_err(ApiError::bad_request)?;
    }
    if let Some(p) = &req.preflight {
        if p.lead_secs.is_some_and(|l| l > 30 * 24 * 3600) {
            return Err(ApiError::bad_request(
                "pre-flight lead time must be at most 30 days",
            ));
        }
    }
    let plan = crate::orchestrator::Plan {
        reboot: req.reboot.clone(),
        window: req.window.clone(),
        window_duration_secs: req.window_duration_secs,
        rings: req.rings.iter().map(|r| r.name.clone()).collect(),
        gate: req.gate.clone(),
        halt_failure_rate: req.halt_failure_rate,
        halt_min_finished: req.halt_min_finished,
        concurrency: req.concurrency.clone(),
        expedite: req.expedite,
        offline: req.offline.clone(),
        retry: req.retry.clone(),
        preflight: req.preflight.clone(),
        spread: req.spread,
        policy: req.policy.clone(),
    };
    Ok((plan, specs))
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
    let reboot = crate::reboots::describe(crate::orchestrator::plan_of(&d).reboot.as_ref());
    let hostnames: HashMap<String, String> = state
        .store
        .list_devices(Some(&d.tenant_id))
        .await?
        .into_iter()
        .map(|dev| (dev.id, dev.hostname))
        .collect();
    let jobs_by_id: HashMap<&str, &Job> = jobs.iter().map(|j| (j.id.as_str(), j)).collect();
    let mut counts = OutcomeCounts::default();
    let mut results = packages
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
                predicted_state: None,
                predicted_class: None,
            }
        })
        .collect::<Vec<ResultRow>>();
    let (predictions, prediction_accuracy, preflight_pending) =
        crate::preflight::annotate(state, &d.id, &hostnames, &mut results).await?;
    let devices_done = jobs.iter().filter(|j| j.status == JobStatus::Done).count() as u32;
    let devices_total = jobs.len() as u32;
    let job_views = jobs
        .into_iter()
        .map(|j| JobView {
            hostname: hostnames.get(&j.device_id).cloned().unwrap_or_default(),
            id: j.id,
            device: j.device_id,
            status: if j.released_at.is_none() && j.status == JobStatus::Queued {
                "waiting".to_owned()
            } else {
                j.status.as_str().to_owned()
            },
            started_at: j.started_at.map(rfc3339),
            finished_at: j.finished_at.map(rfc3339),
            exit_code: j.exit_code.map(|c| c as i32),
            commands: j.commands,
            duration_ms: j.duration_ms.map(|d| d as u64),
            output: j.output,
            error: j.error,
        })
        .collect();
    let (rings, _, _) = crate::orchestrator::ring_views(state, &d).await?;
    Ok(DeploymentView {
        selection: parse_selection(&d.selection_json),
        id: d.id,
        tenant,
        created_at: rfc3339(d.created_at),
        status: d.status,
        status_reason: d.status_reason,
        rings,
        current_ring: d.current_ring as u32,
        approved_by: d.approved_by,
        devices_total,
        devices_done,
        counts,
        jobs: job_views,
        results,
        predictions,
        prediction_accuracy,
        preflight_pending,
        reboot,
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
    op.require(Permission::View, &d.tenant_id)?;
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
    op.require_scoped(Permission::View)?;
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
            status_reason: v.status_reason,
            devices_total: v.devices_total,
            devices_done: v.devices_done,
            counts: v.counts,
        });
    }
    Ok(Json(out))
}

/// What an operator can do to a deployment.
#[derive(Debug, Clone, Copy)]
pub enum Action {
    Approve,
    Reject,
    Halt,
    Resume,
    Cancel,
}

async fn act(
    state: &AppState,
    op: &Operator,
    id: &str,
    action: Action,
    reason: Option<String>,
) -> ApiResult<Json<DeploymentView>> {
    let mut d = match state.store.deployment(id).await? {
        Some(d) if op.can_access(&d.tenant_id) => d,
        _ => return Err(ApiError::not_found(format!("no deployment {id}"))),
    };
    op.require(crate::web::authz::permission_for(action), &d.tenant_id)?;
    if let Some(r) = &reason {
        op.audit().detail(r);
    }
    let now = state.clock.now_ms();
    let who = op.0.name.clone();
    let because = |what: &str| match &reason {
        Some(r) if !r.trim().is_empty() => format!("{what} by {who}: {}", r.trim()),
        _ => format!("{what} by {who}"),
    };
    let conflict = |d: &Deployment, verb: &str| {
        ApiError::new(
            StatusCode::CONFLICT,
            "invalid_state",
            format!("cannot {verb} deployment {} while it is {}", d.id, d.status),
        )
    };
    match action {
        Action::Approve => {
            if d.status != "pending_approval" {
                return Err(conflict(&d, "approve"));
            }
            d.status = "running".into();
            d.status_reason = None;
            d.approved_by = Some(who.clone());
            d.approved_at = Some(now);
        }
        Action::Reject => {
            if d.status != "pending_approval" {
                return Err(conflict(&d, "reject"));
            }
            d.status = "cancelled".into();
            d.status_reason = Some(because("rejected"));
        }
        Action::Halt => {
            if d.status != "running" {
                return Err(conflict(&d, "halt"));
            }
            d.status = "halted".into();
            d.status_reason = Some(because("halted"));
        }
        Action::Resume => {
            if d.status != "halted" {
                return Err(conflict(&d, "resume"));
            }
            d.status = "running".into();
            d.status_reason = None;
            d.resumed_at = Some(now);
        }
        Action::Cancel => {
            if !matches!(d.status.as_str(), "running" | "halted" | "pending_approval") {
                return Err(conflict(&d, "cancel"));
            }
            d.status = "cancelled".into();
            d.status_reason = Some(because("cancelled"));
        }
    }
    d.updated_at = Some(now);
    state.store.update_deployment(&d).await?;
    if d.status == "cancelled" {
        let evidence = d.status_reason.clone().unwrap_or_default();
        state
            .store
            .skip_unstarted_jobs(&d.id, now, &format!("not started: {evidence}"))
            .await?;
    }
    if matches!(action, Action::Reject) {
        crate::policies::record_rejection(state, &d.id, &who, reason.as_deref()).await?;
    }
    tracing::info!(deployment = %d.id, action = ?action, by = %who, "deployment action");
    crate::orchestrator::tick(state, &d.id).await?;
    let d = state
        .store
        .deployment(&d.id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no deployment {id}")))?;
    let tenant = state
        .store
        .tenant_by_id(&d.tenant_id)
        .await?
        .map(|t| t.name)
        .unwrap_or_default();
    Ok(Json(deployment_view(state, d, tenant).await?))
}

macro_rules! action_handler {
    ($name:ident, $action:expr, $path:literal) => {
        #[utoipa::path(post, path = $path, params(("id" = String, Path)), request_body = DeploymentAction,
            responses((status = 200, body = DeploymentView), (status = 404, body = patchwarden_wire::ErrorBody),
                (status = 409, body = patchwarden_wire::ErrorBody)),
            security(("operator" = [])), tag = "deployments")]
        pub async fn $name(
            State(state): State<AppState>,
            op: Operator,
            Path(id): Path<String>,
            body: axum::body::Bytes,
        ) -> ApiResult<Json<DeploymentView>> {
            // The body is optional: an empty one means no reason given.
            let reason = if body.iter().all(u8::is_ascii_whitespace) {
                None
            } else {
                serde_json::from_slice::<DeploymentAction>(&body)
                    .map_err(|e| ApiError::bad_request(format!("invalid request body: {e}")))?
                    .reason
            };
            act(&state, &op, &id, $action, reason).await
        }
    };
}

action_handler!(
    approve_deployment,
    Action::Approve,
    "/api/v1/deployments/{id}/approve"
);
action_handler!(
    reject_deployment,
    Action::Reject,
    "/api/v1/deployments/{id}/reject"
);
action_handler!(
    halt_deployment,
    Action::Halt,
    "/api/v1/deployments/{id}/halt"
);
action_handler!(
    resume_deployment,
    Action::Resume,
    "/api/v1/deployments/{id}/resume"
);
action_handler!(
    cancel_deployment,
    Action::Cancel,
    "/api/v1/deployments/{id}/cancel"
);
