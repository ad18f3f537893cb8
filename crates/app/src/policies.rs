//! Policies: a tenant's standing patch process. CRUD and `apply` over the API; the scheduler
//! that creates each cycle's deployment ahead of its window (once: the store keys runs by
//! cycle, so restarts and concurrent ticks cannot create a second); the expedite trigger that
//! turns a critical or known-exploited vulnerability with a fix into an expedited deployment;
//! and rejected updates, which no deployment installs until they are un-rejected.

use crate::actor::{new_id, Actor};
use crate::authz::Permission;
use crate::deployments::{create_planned, target_devices};
use crate::error::{AppError, AppResult};
use crate::plan::{validate_plan, validate_severity};
use crate::scope::{list_scope, resolve_tenant, tenant_names};
use crate::ts;
use crate::{rfc3339, App};
use jiff::SignedDuration;
use patchwarden_core::schedule::{Recurrence, WindowSpec};
use patchwarden_store::{ExposureFilter, Policy, PolicyProblem, StoreError, Tenant};
use patchwarden_wire::api::*;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;

/// How long before its first window a cycle's deployment is created, by default.
const DEFAULT_LEAD_SECS: u64 = 24 * 3600;

/// Checks a policy: every field a person can get wrong gets an error naming it.
pub fn validate_spec(spec: &PolicySpec) -> AppResult<()> {
    let bad = |field: &'static str, m: String| {
        Err(AppError::invalid(
            field,
            format!("policy {:?}: {m}", spec.name),
        ))
    };
    if spec.name.trim().is_empty()
        || spec.name.len() > 100
        || !spec
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_. ".contains(c))
    {
        return Err(AppError::invalid(
            "name",
            format!(
                "invalid policy name {:?}: use letters, digits, spaces, '-', '_' or '.' (at most 100)",
                spec.name
            ),
        ));
    }
    if let Some(s) = &spec.schedule {
        if let Err(e) = s.parse::<Recurrence>() {
            return bad("schedule", format!("schedule: {e}"));
        }
    }
    match spec.approval.as_deref() {
        None | Some("automatic") | Some("manual") => {}
        Some("severity") => {
            if spec.approval_min_severity.is_none() {
                return bad(
                    "approval_min_severity",
                    "approval = \"severity\" needs approval_min_severity".into(),
                );
            }
        }
        Some(other) => {
            return bad(
                "approval",
                format!("approval {other:?}: use automatic, manual or severity"),
            )
        }
    }
    validate_severity(
        "approval_min_severity",
        spec.approval_min_severity.as_deref(),
    )?;
    if let Some(e) = &spec.expedite {
        validate_severity("expedite", e.min_severity.as_deref())?;
        if e.min_severity.is_none() && !e.kev {
            return bad(
                "expedite",
                "expedite needs min_severity, kev = true, or both".into(),
            );
        }
    }
    if spec.lead_secs.is_some_and(|l| l > 30 * 24 * 3600) {
        return bad("lead_secs", "lead_secs must be at most 30 days".into());
    }
    if spec.schedule.is_none() && spec.expedite.is_none() {
        return bad(
            "schedule",
            "give a schedule, an expedite rule, or both".into(),
        );
    }
    let forms = [
        !spec.target.devices.is_empty(),
        !spec.target.labels.is_empty(),
        spec.target.all,
    ];
    if forms.iter().filter(|f| **f).count() != 1 {
        return bad(
            "target",
            "target exactly one of: devices, labels, or all".into(),
        );
    }
    if let Selection::Packages { packages } = &spec.what {
        crate::engine::validate_packages(packages).map_err(|e| AppError::invalid("what", e))?;
    }
    for p in &spec.exclude {
        patchwarden_core::policy::NamePattern::parse(p)
            .map_err(|e| AppError::invalid("exclude", e))?;
    }
    validate_plan(&request(spec, false, None, false))?;
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

/// The spec stored with a policy; one that does not decode is an error naming the policy.
fn spec_of(p: &Policy) -> Result<PolicySpec, StoreError> {
    serde_json::from_str(&p.spec_json).map_err(|e| {
        StoreError::Corrupt(format!(
            "policy {} ({}): its stored spec does not decode: {e}",
            p.id, p.name
        ))
    })
}

fn window_spec(spec: &PolicySpec) -> Option<WindowSpec> {
    crate::plan::window_spec(spec.schedule.as_deref(), spec.window_duration_secs)
}

/// The zones of the devices a policy targets (UTC for a device without one).
async fn zones_of(
    state: &App,
    tenant: &Tenant,
    spec: &PolicySpec,
) -> AppResult<Vec<jiff::tz::TimeZone>> {
    let mut names = BTreeSet::new();
    for d in target_devices(state, tenant, &spec.target).await? {
        let zone = crate::inventory::zone(state, &d.id).await;
        names.insert(zone.iana_name().unwrap_or("UTC").to_owned());
    }
    Ok(names
        .iter()
        .filter_map(|n| patchwarden_core::schedule::zone(n).ok())
        .collect())
}

async fn view(state: &App, p: Policy, tenant: String) -> AppResult<PolicyView> {
    let spec = spec_of(&p)?;
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
        problem: p.problem.map(|x| PolicyProblemView {
            at: rfc3339(x.at),
            message: x.message,
        }),
    })
}

/// Creates, updates or leaves alone one policy, matched by tenant and name.
async fn upsert(
    state: &App,
    op: &Actor,
    mut spec: PolicySpec,
    id: Option<&str>,
) -> AppResult<ApplyOutcome> {
    validate_spec(&spec)?;
    let tenant = resolve_tenant(state, op, spec.tenant.as_deref()).await?;
    op.require(Permission::ManagePolicies, &tenant.id)?;
    spec.tenant = Some(tenant.name.clone());
    let json = crate::to_json(&spec)?;
    let now = state.clock.now_ms();
    let existing = match id {
        Some(id) => Some(
            state
                .store
                .policy(id)
                .await?
                .filter(|p| p.tenant_id == tenant.id)
                .ok_or_else(|| AppError::not_found(format!("no policy {id}")))?,
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
            state
                .store
                .update_policy(&p)
                .await
                .map_err(AppError::from_store_conflict)?;
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
                created_by: op.name().to_owned(),
                updated_at: now,
                problem: None,
            };
            state
                .store
                .create_policy(&p)
                .await
                .map_err(AppError::from_store_conflict)?;
            (p.id, "created")
        }
    };
    tracing::info!(policy = %id, name = %spec.name, tenant = %tenant.name, action, by = %op.name(), "policy saved");
    Ok(ApplyOutcome {
        name: spec.name,
        tenant: tenant.name,
        id,
        action: action.to_owned(),
    })
}

/// A policy by id, or by name in the caller's tenant (`?tenant=` for provider tokens).
async fn find(state: &App, op: &Actor, key: &str, tenant: Option<&str>) -> AppResult<Policy> {
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
        .ok_or_else(|| AppError::not_found(format!("no policy {key:?}")))
}

/// Creates a policy; a policy of that name in the tenant is a conflict (edit it, or apply).
pub async fn create(state: &App, op: &Actor, spec: PolicySpec) -> AppResult<ApplyOutcome> {
    let tenant = resolve_tenant(state, op, spec.tenant.as_deref()).await?;
    op.require(Permission::ManagePolicies, &tenant.id)?;
    if state
        .store
        .policy_by_name(&tenant.id, &spec.name)
        .await?
        .is_some()
    {
        return Err(AppError::conflict(format!(
            "a policy named {:?} already exists in tenant {:?} (edit it, or use apply)",
            spec.name, tenant.name
        )));
    }
    upsert(state, op, spec, None).await
}

pub async fn list(state: &App, op: &Actor, tenant: Option<&str>) -> AppResult<Vec<PolicyView>> {
    op.require_scoped(Permission::View)?;
    let scope = list_scope(state, op, tenant).await?;
    let names = tenant_names(state).await?;
    let mut out = Vec::new();
    for p in state.store.list_policies(scope.as_deref()).await? {
        let t = names.get(&p.tenant_id).cloned().unwrap_or_default();
        out.push(view(state, p, t).await?);
    }
    Ok(out)
}

/// A policy by id, or by name in the caller's tenant (`tenant` for provider tokens).
pub async fn get(
    state: &App,
    op: &Actor,
    key: &str,
    tenant: Option<&str>,
) -> AppResult<PolicyView> {
    let p = find(state, op, key, tenant).await?;
    op.require(Permission::View, &p.tenant_id)?;
    let t = crate::scope::tenant_name(state, &p.tenant_id).await?;
    view(state, p, t).await
}

/// Replaces a policy's spec (a policy never moves between tenants).
pub async fn update(
    state: &App,
    op: &Actor,
    key: &str,
    tenant: Option<&str>,
    mut spec: PolicySpec,
) -> AppResult<ApplyOutcome> {
    let p = find(state, op, key, tenant).await?;
    op.require(Permission::ManagePolicies, &p.tenant_id)?;
    let tenant = state
        .store
        .tenant_by_id(&p.tenant_id)
        .await?
        .ok_or_else(|| AppError::not_found(format!("no policy {key}")))?;
    match &spec.tenant {
        Some(t) if t != &tenant.name => {
            return Err(AppError::invalid(
                "tenant",
                format!(
                    "a policy cannot move between tenants ({:?} → {t:?})",
                    tenant.name
                ),
            ))
        }
        _ => spec.tenant = Some(tenant.name),
    }
    upsert(state, op, spec, Some(&p.id)).await
}

pub async fn delete(state: &App, op: &Actor, key: &str, tenant: Option<&str>) -> AppResult<()> {
    let p = find(state, op, key, tenant).await?;
    op.require(Permission::ManagePolicies, &p.tenant_id)?;
    state.store.delete_policy(&p.id).await?;
    tracing::info!(policy = %p.id, name = %p.name, by = %op.name(), "policy deleted");
    Ok(())
}

/// Creates, updates or leaves alone each policy of a file, matched by tenant and name. All or
/// nothing as far as validation goes: every policy is checked before any is saved.
pub async fn apply(state: &App, op: &Actor, req: ApplyRequest) -> AppResult<Vec<ApplyOutcome>> {
    let mut seen = BTreeSet::new();
    for spec in &req.policies {
        validate_spec(spec)?;
        let key = (
            spec.tenant.clone().unwrap_or_else(|| "default".into()),
            spec.name.clone(),
        );
        if !seen.insert(key) {
            return Err(AppError::invalid(
                "policies",
                format!("policy {:?} appears twice in the file", spec.name),
            ));
        }
        let tenant = resolve_tenant(state, op, spec.tenant.as_deref()).await?;
        op.require(Permission::ManagePolicies, &tenant.id)?;
    }
    let mut out = Vec::new();
    for spec in req.policies {
        out.push(upsert(state, op, spec, None).await?);
    }
    Ok(out)
}

pub async fn list_rejected(
    state: &App,
    op: &Actor,
    tenant: Option<&str>,
) -> AppResult<Vec<RejectedUpdateView>> {
    op.require_scoped(Permission::View)?;
    let scope = list_scope(state, op, tenant).await?;
    let names = tenant_names(state).await?;
    Ok(state
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
        .collect())
}

/// Lifts a rejection: the update may be deployed again. The approvers' decision, as the
/// rejection was.
pub async fn unreject(
    state: &App,
    op: &Actor,
    req: &UnrejectRequest,
) -> AppResult<UnrejectOutcome> {
    let tenant = resolve_tenant(state, op, req.tenant.as_deref()).await?;
    op.require(Permission::Approve, &tenant.id)?;
    let lifted = state
        .store
        .unreject_update(&tenant.id, &req.package, req.version.as_deref())
        .await?;
    if lifted == 0 {
        return Err(AppError::not_found(format!(
            "no rejected update {}{} in tenant {:?}",
            req.package,
            req.version
                .as_deref()
                .map(|v| format!("={v}"))
                .unwrap_or_default(),
            tenant.name
        )));
    }
    tracing::info!(package = %req.package, lifted, by = %op.name(), "update un-rejected");
    Ok(UnrejectOutcome { lifted })
}

/// The open exposures of the policy's devices that an available update fixes.
async fn fixable_exposures(
    state: &App,
    tenant: &Tenant,
    spec: &PolicySpec,
) -> AppResult<Vec<patchwarden_store::ExposureRecord>> {
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
async fn needs_approval(state: &App, tenant: &Tenant, spec: &PolicySpec) -> AppResult<bool> {
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
    Created {
        cycle: String,
        deployment: String,
    },
    /// Nothing to install this time (looked at again later).
    NothingToInstall {
        cycle: String,
        reason: String,
    },
    /// Another pass (or replica) created this cycle's deployment first.
    AlreadyCreated {
        cycle: String,
    },
    /// The policy is broken for another reason: recorded on the policy (its view and the
    /// dashboard show it) until a later pass succeeds.
    Failed {
        policy: String,
        error: String,
    },
}

/// One scheduler pass over every enabled policy: creates each due cycle's deployment and each
/// expedited one. Safe to run any number of times, from any number of tasks.
pub async fn run_due(state: &App) -> Vec<RunOutcome> {
    let policies = match state.store.list_policies(None).await {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "cannot list policies");
            return vec![];
        }
    };
    let mut out = Vec::new();
    for p in policies.into_iter().filter(|p| p.enabled) {
        let problem = match run_policy(state, &p).await {
            // Nothing was tried this pass (not due, or looked at recently): what was recorded
            // stays.
            Ok(o) if o.is_empty() => continue,
            Ok(mut o) => {
                out.append(&mut o);
                None
            }
            Err(e) => {
                out.push(RunOutcome::Failed {
                    policy: p.id.clone(),
                    error: e.to_string(),
                });
                Some(PolicyProblem {
                    at: state.clock.now_ms(),
                    message: e.to_string(),
                })
            }
        };
        if p.problem.as_ref().map(|x| &x.message) != problem.as_ref().map(|x| &x.message) {
            match &problem {
                Some(x) => {
                    tracing::warn!(policy = %p.name, tenant = %p.tenant_id, error = %x.message, "policy cannot run; recorded on the policy")
                }
                None => tracing::info!(policy = %p.name, "policy runs again"),
            }
            if let Err(e) = state
                .store
                .set_policy_problem(&p.id, problem.as_ref())
                .await
            {
                tracing::error!(policy = %p.name, error = %e, "cannot record the policy's problem");
            }
        }
    }
    out
}

async fn run_policy(state: &App, p: &Policy) -> AppResult<Vec<RunOutcome>> {
    let spec = spec_of(p)?;
    let Some(tenant) = state.store.tenant_by_id(&p.tenant_id).await? else {
        return Err(AppError::not_found(format!(
            "the policy's tenant {} does not exist",
            p.tenant_id
        )));
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
                && recheck_due(state, p, &cycle.key, now)
            {
                let approval = needs_approval(state, &tenant, &spec).await?;
                let req = request(&spec, approval, None, false);
                out.push(create_run(state, &tenant, &who, &req, &p.id, cycle.key).await?);
            }
        }
    }
    if let Some(rule) = &spec.expedite {
        if let Some((key, cves)) = expedite_due(state, &tenant, &spec, rule).await? {
            if state.store.policy_run(&p.id, &key).await?.is_none()
                && recheck_due(state, p, &key, now)
            {
                let approval = spec.approval.as_deref() == Some("manual");
                let req = request(&spec, approval, Some(cves), true);
                out.push(create_run(state, &tenant, &who, &req, &p.id, key).await?);
            }
        }
    }
    Ok(out)
}

/// Creates one cycle's deployment. Nothing to install is an outcome, not an error; any
/// other refusal (an invalid spec, a storage error) is the policy's problem.
async fn create_run(
    state: &App,
    tenant: &Tenant,
    who: &str,
    req: &CreateDeploymentRequest,
    policy_id: &str,
    cycle: String,
) -> AppResult<RunOutcome> {
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
        Ok(None) => Ok(RunOutcome::AlreadyCreated { cycle }),
        Err(AppError::NothingToInstall { reason }) => {
            tracing::info!(policy = %policy_id, cycle = %cycle, why = %reason, "nothing to deploy this time");
            Ok(RunOutcome::NothingToInstall { cycle, reason })
        }
        Err(e) => Err(e),
    }
}

/// A cycle with nothing to install (or whose policy cannot run) is looked at again at most
/// every 10 minutes (new updates may arrive before its window), not on every tick; an edit
/// of the policy is looked at on the next tick.
fn recheck_due(state: &App, p: &Policy, cycle: &str, now: i64) -> bool {
    let mut seen = state
        .policy_checks
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    // An edit of the policy (a new revision) is looked at at once.
    let key = format!("{}@{}/{cycle}", p.id, p.revision);
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
    state: &App,
    tenant: &Tenant,
    spec: &PolicySpec,
    rule: &ExpeditePolicy,
) -> AppResult<Option<(String, Vec<String>)>> {
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
