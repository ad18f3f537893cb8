//! Policies: a tenant's standing patch process. CRUD and `apply` over the API; the scheduler
//! that creates each cycle's deployment ahead of its window (once: the store keys runs by
//! cycle, so restarts and concurrent ticks cannot create a second); the expedite trigger that
//! turns a critical or known-exploited vulnerability with a fix into an expedited deployment;
//! and rejected updates, which no deployment installs until they are un-rejected.

use crate::auth::{new_id, Operator};
use crate::error::{ApiError, ApiResult, Body};
use crate::operator_api::{create_planned, resolve_tenant, target_devices, validate_severity};
use crate::orchestrator::ts;
use crate::{rfc3339, AppState};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use jiff::SignedDuration;
use patchwarden_core::schedule::{Recurrence, WindowSpec};
use patchwarden_store::{ExposureFilter, Policy, RejectedUpdate, StoreError, Tenant};
use patchwarden_wire::api::*;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashMap};

/// How long before its first window a cycle's deployment is created, by default.
const DEFAULT_LEAD_SECS: u64 = 24 * 3600;

/// Checks a policy: every field a person can get wrong gets an error naming it.
pub fn validate_spec(spec: &PolicySpec) -> ApiResult<()> {
    let bad = |m: String| {
        Err(ApiError::bad_request(format!(
            "policy {:?}: {m}",
            spec.name
        )))
    };
    if spec.name.trim().is_empty()
        || spec.name.len() > 100
        || !spec
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_. ".contains(c))
    {
        return Err(ApiError::bad_request(format!(
            "invalid policy name {:?}: use letters, digits, spaces, '-', '_' or '.' (at most 100)",
            spec.name
        )));
    }
    if let Some(s) = &spec.schedule {
        if let Err(e) = s.parse::<Recurrence>() {
            return bad(format!("schedule: {e}"));
        }
    }
    match spec.approval.as_deref() {
        None | Some("automatic") | Some("manual") => {}
        Some("severity") => {
            if spec.approval_min_severity.is_none() {
                return bad("approval = \"severity\" needs approval_min_severity".into());
            }
        }
        Some(other) => {
            return bad(format!(
                "approval {other:?}: use automatic, manual or severity"
            ))
        }
    }
    validate_severity(spec.approval_min_severity.as_deref())?;
    if let Some(e) = &spec.expedite {
        validate_severity(e.min_severity.as_deref())?;
        if e.min_severity.is_none() && !e.kev {
            return bad("expedite needs min_severity, kev = true, or both".into());
        }
    }
    if spec.lead_secs.is_some_and(|l| l > 30 * 24 * 3600) {
        return bad("lead_secs must be at most 30 days".into());
    }
    if spec.schedule.is_none() && spec.expedite.is_none() {
        return bad("give a schedule, an expedite rule, or both".into());
    }
    let forms = [
        !spec.target.devices.is_empty(),
        !spec.target.labels.is_empty(),
        spec.target.all,
    ];
    if forms.iter().filter(|f| **f).count() != 1 {
        return bad("target exactly one of: devices, labels, or all".into());
    }
    if let Selection::Packages { packages } = &spec.what {
        crate::engine::validate_packages(packages).map_err(ApiError::bad_request)?;
    }
    for p in &spec.exclude {
        patchwarden_core::policy::NamePattern::parse(p).map_err(ApiError::bad_request)?;
    }
    crate::operator_api::validate_plan(&request(spec, false, None, false))?;
    Ok(())
}

/// The deployment a policy asks for (scheduled, or expedited for these CVEs).
fn request(
    spec: &PolicySpec,
    require_approval: bool,
    expedite_cves: Option<Vec<String>>,
    expedite: bool,
) -> CreateDeploymentRequest {
    let selection = match &expedite_cves {
        Some(cves) => Selection::Vulnerabilities {
            min_severity: None,
            kev: false,
            cves: cves.clone(),
        },
        None => spec.what.clone(),
    };
    CreateDeploymentRequest {
        tenant: spec.tenant.clone(),
        target: spec.target.clone(),
        selection,
        timeout_secs: spec.timeout_secs,
        rings: spec.rings.clone(),
        gate: spec.gate.clone(),
        halt_failure_rate: spec.halt_failure_rate,
        halt_min_finished: spec.halt_min_finished,
        concurrency: spec.concurrency.clone(),
        require_approval,
        window: spec.schedule.clone(),
        window_duration_secs: spec.window_duration_secs,
        exclude: spec.exclude.clone(),
        respect_holds: Some(spec.respect_holds),
        expedite,
        reboot: spec.reboot.clone(),
        retry: spec.retry.clone(),
        offline: spec.offline.clone(),
        preflight: spec.preflight.clone(),
        policy: Some(spec.name.clone()),
        spread: spec.spread,
    }
}

fn spec_of(p: &Policy) -> Option<PolicySpec> {
    serde_json::from_str(&p.spec_json).ok()
}

fn window_spec(spec: &PolicySpec) -> Option<WindowSpec> {
    crate::orchestrator::window_spec(spec.schedule.as_deref(), spec.window_duration_secs)
}

/// The zones of the devices a policy targets (UTC for a device without one).
async fn zones_of(
    state: &AppState,
    tenant: &Tenant,
    spec: &PolicySpec,
) -> ApiResult<Vec<jiff::tz::TimeZone>> {
    let mut names = BTreeSet::new();
    for d in target_devices(state, tenant, &spec.target).await? {
        let zone = crate::orchestrator::device_zone(state, &d.id).await;
        names.insert(zone.iana_name().unwrap_or("UTC").to_owned());
    }
    Ok(names
        .iter()
        .filter_map(|n| patchwarden_core::schedule::zone(n).ok())
        .collect())
}

async fn view(state: &AppState, p: Policy, tenant: String) -> ApiResult<PolicyView> {
    let spec = spec_of(&p).ok_or_else(|| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "corrupt",
            format!("stored policy {} cannot be read", p.id),
        )
    })?;
    let mut next_cycle = None;
    let mut next_window_start = None;
    if let (Some(ws), Some(t)) = (
        window_spec(&spec),
        state.store.tenant_by_id(&p.tenant_id).await?,
    ) {
        let zones = zones_of(state, &t, &spec).await.unwrap_or_default();
        let lead = SignedDuration::from_secs(spec.lead_secs.unwrap_or(DEFAULT_LEAD_SECS) as i64);
        if let Some((c, _)) =
            patchwarden_core::policy::current_cycle(&ws, &zones, ts(state.clock.now_ms()), lead)
        {
            next_window_start = Some(rfc3339(c.window.start.as_millisecond()));
            next_cycle = Some(c.key);
        }
    }
    let runs = state
        .store
        .policy_runs(&p.id)
        .await?
        .into_iter()
        .map(|r| PolicyRunView {
            cycle: r.cycle,
            deployment: r.deployment_id,
            created_at: rfc3339(r.created_at),
        })
        .collect();
    Ok(PolicyView {
        id: p.id,
        tenant,
        revision: p.revision,
        created_at: rfc3339(p.created_at),
        created_by: p.created_by,
        updated_at: rfc3339(p.updated_at),
        spec,
        next_cycle,
        next_window_start,
        runs,
    })
}

/// Creates, updates or leaves alone one policy, matched by tenant and name.
async fn upsert(
    state: &AppState,
    op: &Operator,
    mut spec: PolicySpec,
    id: Option<&str>,
) -> ApiResult<ApplyOutcome> {
    validate_spec(&spec)?;
    let tenant = resolve_tenant(state, op, spec.tenant.as_deref()).await?;
    op.require(crate::web::authz::Permission::ManagePolicies, &tenant.id)?;
    spec.tenant = Some(tenant.name.clone());
    let json = serde_json::to_string(&spec).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let now = state.clock.now_ms();
    let existing = match id {
        Some(id) => Some(
            state
                .store
                .policy(id)
                .await?
                .filter(|p| p.tenant_id == tenant.id)
                .ok_or_else(|| ApiError::not_found(format!("no policy {id}")))?,
        ),
        None => state.store.policy_by_name(&tenant.id, &spec.name).await?,
    };
    let (id, action) = match existing {
        Some(p) if p.spec_json == json && p.name == spec.name => (p.id, "unchanged"),
        Some(mut p) => {
            p.name = spec.name.clone();
            p.spec_json = json;
            p.enabled = spec.enabled;
            p.revision += 1;
            p.updated_at = now;
            state.store.update_policy(&p).await.map_err(conflict)?;
            (p.id, "updated")
        }
        None => {
            let p = Policy {
                id: new_id("pol_"),
                tenant_id: tenant.id.clone(),
                name: spec.name.clone(),
                spec_json: json,
                enabled: spec.enabled,
                revision: 1,
                created_at: now,
                created_by: op.0.name.clone(),
                updated_at: now,
            };
            state.store.create_policy(&p).await.map_err(conflict)?;
            (p.id, "created")
        }
    };
    tracing::info!(policy = %id, name = %spec.name, tenant = %tenant.name, action, by = %op.0.name, "policy saved");
    Ok(ApplyOutcome {
        name: spec.name,
        tenant: tenant.name,
        id,
        action: action.to_owned(),
    })
}

fn conflict(e: StoreError) -> ApiError {
    match e {
        StoreError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
        other => other.into(),
    }
}

/// A policy by id, or by name in the caller's tenant (`?tenant=` for provider tokens).
async fn find(
    state: &AppState,
    op: &Operator,
    key: &str,
    tenant: Option<&str>,
) -> ApiResult<Policy> {
    if let Some(p) = state.store.policy(key).await? {
        if op.can_access(&p.tenant_id) {
            return Ok(p);
        }
    }
    let tenant = resolve_tenant(state, op, tenant).await?;
    state
        .store
        .policy_by_name(&tenant.id, key)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no policy {key:?}")))
}

/// The tenant a list is narrowed to: the one named (checked), else the caller's scope.
async fn list_scope(
    state: &AppState,
    op: &Operator,
    tenant: Option<&str>,
) -> ApiResult<Option<String>> {
    Ok(match tenant {
        Some(name) => Some(resolve_tenant(state, op, Some(name)).await?.id),
        None => op.tenant_scope().map(str::to_owned),
    })
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct TenantQuery {
    /// Tenant name (for provider-level tokens; default `default`).
    #[serde(default)]
    pub tenant: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/policies", request_body = PolicySpec,
    responses((status = 201, body = ApplyOutcome), (status = 400, body = patchwarden_wire::ErrorBody),
        (status = 409, body = patchwarden_wire::ErrorBody)),
    security(("operator" = [])), tag = "policies")]
pub async fn create_policy(
    State(state): State<AppState>,
    op: Operator,
    Body(spec): Body<PolicySpec>,
) -> ApiResult<(StatusCode, Json<ApplyOutcome>)> {
    let tenant = resolve_tenant(&state, &op, spec.tenant.as_deref()).await?;
    op.require(crate::web::authz::Permission::ManagePolicies, &tenant.id)?;
    if state
        .store
        .policy_by_name(&tenant.id, &spec.name)
        .await?
        .is_some()
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!(
                "a policy named {:?} already exists in tenant {:?} (edit it, or use apply)",
                spec.name, tenant.name
            ),
        ));
    }
    let out = upsert(&state, &op, spec, None).await?;
    Ok((StatusCode::CREATED, Json(out)))
}

#[utoipa::path(get, path = "/api/v1/policies", params(TenantQuery),
    responses((status = 200, body = Vec<PolicyView>)), security(("operator" = [])), tag = "policies")]
pub async fn list_policies(
    State(state): State<AppState>,
    op: Operator,
    Query(q): Query<TenantQuery>,
) -> ApiResult<Json<Vec<PolicyView>>> {
    op.require_scoped(crate::web::authz::Permission::View)?;
    let scope = list_scope(&state, &op, q.tenant.as_deref()).await?;
    let names = crate::operator_api::tenant_names(&state).await?;
    let mut out = Vec::new();
    for p in state.store.list_policies(scope.as_deref()).await? {
        let t = names.get(&p.tenant_id).cloned().unwrap_or_default();
        out.push(view(&state, p, t).await?);
    }
    Ok(Json(out))
}

#[utoipa::path(get, path = "/api/v1/policies/{id}", params(("id" = String, Path), TenantQuery),
    responses((status = 200, body = PolicyView), (status = 404, body = patchwarden_wire::ErrorBody)),
    security(("operator" = [])), tag = "policies")]
pub async fn get_policy(
    State(state): State<AppState>,
    op: Operator,
    Path(id): Path<String>,
    Query(q): Query<TenantQuery>,
) -> ApiResult<Json<PolicyView>> {
    let p = find(&state, &op, &id, q.tenant.as_deref()).await?;
    op.require(crate::web::authz::Permission::View, &p.tenant_id)?;
    let t = state
        .store
        .tenant_by_id(&p.tenant_id)
        .await?
        .map(|t| t.name)
        .unwrap_or_default();
    Ok(Json(view(&state, p, t).await?))
}

#[utoipa::path(put, path = "/api/v1/policies/{id}", params(("id" = String, Path), TenantQuery), request_body = PolicySpec,
    responses((status = 200, body = ApplyOutcome), (status = 400, body = patchwarden_wire::ErrorBody),
        (status = 404, body = patchwarden_wire::ErrorBody)),
    security(("operator" = [])), tag = "policies")]
pub async fn update_policy(
    State(state): State<AppState>,
    op: Operator,
    Path(id): Path<String>,
    Query(q): Query<TenantQuery>,
    Body(mut spec): Body<PolicySpec>,
) -> ApiResult<Json<ApplyOutcome>> {
    let p = find(&state, &op, &id, q.tenant.as_deref()).await?;
    op.require(crate::web::authz::Permission::ManagePolicies, &p.tenant_id)?;
    let tenant = state
        .store
        .tenant_by_id(&p.tenant_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no policy {id}")))?;
    match &spec.tenant {
        Some(t) if t != &tenant.name => {
            return Err(ApiError::bad_request(format!(
                "a policy cannot move between tenants ({:?} → {t:?})",
                tenant.name
            )))
        }
        _ => spec.tenant = Some(tenant.name),
    }
    Ok(Json(upsert(&state, &op, spec, Some(&p.id)).await?))
}

#[utoipa::path(delete, path = "/api/v1/policies/{id}", params(("id" = String, Path), TenantQuery),
    responses((status = 204), (status = 404, body = patchwarden_wire::ErrorBody)),
    security(("operator" = [])), tag = "policies")]
pub async fn delete_policy(
    State(state): State<AppState>,
    op: Operator,
    Path(id): Path<String>,
    Query(q): Query<TenantQuery>,
) -> ApiResult<StatusCode> {
    let p = find(&state, &op, &id, q.tenant.as_deref()).await?;
    op.require(crate::web::authz::Permission::ManagePolicies, &p.tenant_id)?;
    state.store.delete_policy(&p.id).await?;
    tracing::info!(policy = %p.id, name = %p.name, by = %op.0.name, "policy deleted");
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/apply", request_body = ApplyRequest,
    responses((status = 200, body = Vec<ApplyOutcome>), (status = 400, body = patchwarden_wire::ErrorBody)),
    security(("operator" = [])), tag = "policies")]
pub async fn apply(
    State(state): State<AppState>,
    op: Operator,
    Body(req): Body<ApplyRequest>,
) -> ApiResult<Json<Vec<ApplyOutcome>>> {
    // All or nothing as far as validation goes: check every policy before saving any.
    let mut seen = BTreeSet::new();
    for spec in &req.policies {
        validate_spec(spec)?;
        let key = (
            spec.tenant.clone().unwrap_or_else(|| "default".into()),
            spec.name.clone(),
        );
        if !seen.insert(key) {
            return Err(ApiError::bad_request(format!(
                "policy {:?} appears twice in the file",
                spec.name
            )));
        }
        let tenant = resolve_tenant(&state, &op, spec.tenant.as_deref()).await?;
        op.require(crate::web::authz::Permission::ManagePolicies, &tenant.id)?;
    }
    let mut out = Vec::new();
    for spec in req.policies {
        out.push(upsert(&state, &op, spec, None).await?);
    }
    Ok(Json(out))
}

#[utoipa::path(get, path = "/api/v1/rejected-updates", params(TenantQuery),
    responses((status = 200, body = Vec<RejectedUpdateView>)), security(("operator" = [])), tag = "deployments")]
pub async fn list_rejected(
    State(state): State<AppState>,
    op: Operator,
    Query(q): Query<TenantQuery>,
) -> ApiResult<Json<Vec<RejectedUpdateView>>> {
    op.require_scoped(crate::web::authz::Permission::View)?;
    let scope = list_scope(&state, &op, q.tenant.as_deref()).await?;
    let names = crate::operator_api::tenant_names(&state).await?;
    Ok(Json(
        state
            .store
            .rejected_updates(scope.as_deref())
            .await?
            .into_iter()
            .map(|r| RejectedUpdateView {
                tenant: names.get(&r.tenant_id).cloned().unwrap_or_default(),
                package: r.package,
                version: r.version,
                deployment: r.deployment_id,
                rejected_by: r.rejected_by,
                reason: r.reason,
                rejected_at: rfc3339(r.rejected_at),
            })
            .collect(),
    ))
}

/// `POST /api/v1/rejected-updates/unreject`
#[derive(Debug, Clone, serde::Serialize, Deserialize, utoipa::ToSchema)]
pub struct UnrejectRequest {
    #[serde(default)]
    pub tenant: Option<String>,
    pub package: String,
    /// One version (default: every rejected version of the package).
    #[serde(default)]
    pub version: Option<String>,
}

#[derive(Debug, Clone, serde::Serialize, Deserialize, utoipa::ToSchema)]
pub struct UnrejectOutcome {
    pub lifted: u64,
}

#[utoipa::path(post, path = "/api/v1/rejected-updates/unreject", request_body = UnrejectRequest,
    responses((status = 200, body = UnrejectOutcome), (status = 404, body = patchwarden_wire::ErrorBody)),
    security(("operator" = [])), tag = "deployments")]
pub async fn unreject(
    State(state): State<AppState>,
    op: Operator,
    Body(req): Body<UnrejectRequest>,
) -> ApiResult<Json<UnrejectOutcome>> {
    let tenant = resolve_tenant(&state, &op, req.tenant.as_deref()).await?;
    // Lifting a rejection is the approvers' decision, as the rejection was.
    op.require(crate::web::authz::Permission::Approve, &tenant.id)?;
    let lifted = state
        .store
        .unreject_update(&tenant.id, &req.package, req.version.as_deref())
        .await?;
    if lifted == 0 {
        return Err(ApiError::not_found(format!(
            "no rejected update {}{} in tenant {:?}",
            req.package,
            req.version
                .as_deref()
                .map(|v| format!("={v}"))
                .unwrap_or_default(),
            tenant.name
        )));
    }
    tracing::info!(package = %req.package, lifted, by = %op.0.name, "update un-rejected");
    Ok(Json(UnrejectOutcome { lifted }))
}

/// Records the updates of a rejected deployment: no deployment installs them until
/// un-rejected.
pub async fn record_rejection(
    state: &AppState,
    deployment_id: &str,
    by: &str,
    reason: Option<&str>,
) -> Result<(), StoreError> {
    let Some(d) = state.store.deployment(deployment_id).await? else {
        return Ok(());
    };
    let now = state.clock.now_ms();
    let mut seen = BTreeSet::new();
    let mut rows = Vec::new();
    for p in state.store.packages_of_deployment(deployment_id).await? {
        let Some(version) = p.to_version else {
            continue;
        };
        if seen.insert((p.package.clone(), version.clone())) {
            rows.push(RejectedUpdate {
                tenant_id: d.tenant_id.clone(),
                package: p.package,
                version,
                deployment_id: Some(deployment_id.to_owned()),
                rejected_by: by.to_owned(),
                reason: reason.map(str::to_owned),
                rejected_at: now,
            });
        }
    }
    state.store.reject_updates(&rows).await
}

/// The open exposures of the policy's devices that an available update fixes.
async fn fixable_exposures(
    state: &AppState,
    tenant: &Tenant,
    spec: &PolicySpec,
) -> ApiResult<Vec<patchwarden_store::ExposureRecord>> {
    let devices: BTreeSet<String> = target_devices(state, tenant, &spec.target)
        .await?
        .into_iter()
        .map(|d| d.id)
        .collect();
    let mut open = state
        .store
        .list_exposures(&ExposureFilter {
            tenant_id: Some(tenant.id.clone()),
            ..Default::default()
        })
        .await?;
    open.retain(|e| {
        devices.contains(&e.device_id) && e.closed_at.is_none() && e.fixed_by_update.is_some()
    });
    Ok(open)
}

/// Whether a policy's deployment needs an approver: `manual` always, `severity` unless the
/// targeted devices have a fixable vulnerability at or above the threshold.
async fn needs_approval(state: &AppState, tenant: &Tenant, spec: &PolicySpec) -> ApiResult<bool> {
    match spec.approval.as_deref() {
        Some("manual") => Ok(true),
        Some("severity") => {
            let min = spec.approval_min_severity.as_deref().unwrap_or("critical");
            let urgent = fixable_exposures(state, tenant, spec)
                .await?
                .iter()
                .any(|e| patchwarden_core::policy::at_least(&e.rating, min));
            Ok(!urgent)
        }
        _ => Ok(false),
    }
}

/// What one scheduler pass did for one policy (for tests and logs).
#[derive(Debug, Clone, PartialEq)]
pub enum RunOutcome {
    Created { cycle: String, deployment: String },
    NothingToInstall { cycle: String },
}

/// One scheduler pass over every enabled policy: creates each due cycle's deployment and each
/// expedited one. Safe to run any number of times, from any number of tasks.
pub async fn run_due(state: &AppState) -> Vec<RunOutcome> {
    let policies = match state.store.list_policies(None).await {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "cannot list policies");
            return vec![];
        }
    };
    let mut out = Vec::new();
    for p in policies.into_iter().filter(|p| p.enabled) {
        match run_policy(state, &p).await {
            Ok(mut o) => out.append(&mut o),
            Err(e) => {
                tracing::warn!(policy = %p.name, error = %e.message, "policy run failed")
            }
        }
    }
    out
}

async fn run_policy(state: &AppState, p: &Policy) -> ApiResult<Vec<RunOutcome>> {
    let Some(spec) = spec_of(p) else {
        return Ok(vec![]);
    };
    let Some(tenant) = state.store.tenant_by_id(&p.tenant_id).await? else {
        return Ok(vec![]);
    };
    let who = format!("policy:{}", spec.name);
    let mut out = Vec::new();
    let now = state.clock.now_ms();
    if let Some(ws) = window_spec(&spec) {
        let zones = zones_of(state, &tenant, &spec).await?;
        let lead = SignedDuration::from_secs(spec.lead_secs.unwrap_or(DEFAULT_LEAD_SECS) as i64);
        if let Some((cycle, true)) =
            patchwarden_core::policy::current_cycle(&ws, &zones, ts(now), lead)
        {
            if state.store.policy_run(&p.id, &cycle.key).await?.is_none()
                && recheck_due(state, &p.id, &cycle.key, now)
            {
                let approval = needs_approval(state, &tenant, &spec).await?;
                let req = request(&spec, approval, None, false);
                out.push(create(state, &tenant, &who, &req, &p.id, cycle.key).await?);
            }
        }
    }
    if let Some(rule) = &spec.expedite {
        if let Some((key, cves)) = expedite_due(state, &tenant, &spec, rule).await? {
            if state.store.policy_run(&p.id, &key).await?.is_none()
                && recheck_due(state, &p.id, &key, now)
            {
                let approval = spec.approval.as_deref() == Some("manual");
                let req = request(&spec, approval, Some(cves), true);
                out.push(create(state, &tenant, &who, &req, &p.id, key).await?);
            }
        }
    }
    Ok(out)
}

async fn create(
    state: &AppState,
    tenant: &Tenant,
    who: &str,
    req: &CreateDeploymentRequest,
    policy_id: &str,
    cycle: String,
) -> ApiResult<RunOutcome> {
    match create_planned(
        state,
        tenant,
        who,
        req,
        Some((policy_id.to_owned(), cycle.clone())),
    )
    .await
    {
        Ok(Some(c)) => {
            tracing::info!(policy = %policy_id, cycle = %cycle, deployment = %c.id, devices = c.devices, "policy deployment created");
            Ok(RunOutcome::Created {
                cycle,
                deployment: c.id,
            })
        }
        Ok(None) => Ok(RunOutcome::NothingToInstall { cycle }),
        Err(e) if e.status == StatusCode::BAD_REQUEST => {
            tracing::info!(policy = %policy_id, cycle = %cycle, why = %e.message, "nothing to deploy this time");
            Ok(RunOutcome::NothingToInstall { cycle })
        }
        Err(e) => Err(e),
    }
}

/// A cycle with nothing to install is looked at again at most every 10 minutes (new updates
/// may arrive before its window), not on every tick.
fn recheck_due(state: &AppState, policy_id: &str, cycle: &str, now: i64) -> bool {
    let mut seen = state
        .policy_checks
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let key = format!("{policy_id}/{cycle}");
    match seen.get(&key) {
        Some(at) if now - at < 10 * 60 * 1000 && now >= *at => false,
        _ => {
            seen.insert(key, now);
            true
        }
    }
}

/// The expedite rule's open, fixable vulnerabilities on the policy's devices: a key naming
/// exactly this set (so it is deployed once) and the CVEs.
async fn expedite_due(
    state: &AppState,
    tenant: &Tenant,
    spec: &PolicySpec,
    rule: &ExpeditePolicy,
) -> ApiResult<Option<(String, Vec<String>)>> {
    let mut hits: BTreeSet<(String, String)> = BTreeSet::new();
    for e in fixable_exposures(state, tenant, spec).await? {
        let severe = rule
            .min_severity
            .as_deref()
            .is_some_and(|m| patchwarden_core::policy::at_least(&e.rating, m));
        if severe || (rule.kev && e.kev) {
            hits.insert((e.cve, e.device_id));
        }
    }
    if hits.is_empty() {
        return Ok(None);
    }
    let mut h = Sha256::new();
    for (cve, device) in &hits {
        h.update(cve.as_bytes());
        h.update(b"\0");
        h.update(device.as_bytes());
        h.update(b"\n");
    }
    let key = format!("expedite:{}", &hex::encode(h.finalize())[..16]);
    let cves: BTreeSet<String> = hits.into_iter().map(|(c, _)| c).collect();
    Ok(Some((key, cves.into_iter().collect())))
}

/// Policies shown by name → id, for pages.
pub async fn names(state: &AppState) -> HashMap<String, String> {
    state
        .store
        .list_policies(None)
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|p| (p.id, p.name))
        .collect()
}

/// The label that overrides a device's reported time zone (set per device, or per group
/// through its enrollment token's labels).
pub const TIMEZONE_LABEL: &str = "timezone";

#[utoipa::path(put, path = "/api/v1/devices/{id}/labels", params(("id" = String, Path)), request_body = DeviceLabels,
    responses((status = 200, body = DeviceLabels), (status = 400, body = patchwarden_wire::ErrorBody),
        (status = 404, body = patchwarden_wire::ErrorBody)),
    security(("operator" = [])), tag = "devices")]
pub async fn set_device_labels(
    State(state): State<AppState>,
    op: Operator,
    Path(id): Path<String>,
    Body(req): Body<DeviceLabels>,
) -> ApiResult<Json<DeviceLabels>> {
    let device = match state.store.device(&id).await? {
        Some(d) if op.can_access(&d.tenant_id) => d,
        _ => return Err(ApiError::not_found(format!("no device {id}"))),
    };
    // Labels decide which policies reach a device.
    op.require(
        crate::web::authz::Permission::ManagePolicies,
        &device.tenant_id,
    )?;
    for (k, v) in &req.labels {
        let ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 128
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./+:".contains(c))
        };
        if !ok(k) || !ok(v) {
            return Err(ApiError::bad_request(format!(
                "invalid label {k:?}={v:?}: use letters, digits and - _ . / + : (at most 128)"
            )));
        }
    }
    if let Some(zone) = req.labels.get(TIMEZONE_LABEL) {
        patchwarden_core::schedule::zone(zone)
            .map_err(|e| ApiError::bad_request(format!("label {TIMEZONE_LABEL}: {e}")))?;
    }
    state
        .store
        .set_device_labels(&device.id, &req.labels)
        .await?;
    tracing::info!(device = %device.id, by = %op.0.name, "device labels set");
    Ok(Json(req))
}
