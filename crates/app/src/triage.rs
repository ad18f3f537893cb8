//! The failure queue's triage: assign, resolve, accept a risk, retry; and the queue's
//! annotations (assignee, status in force, age of the streak, deadline).
//!
//! Who may: assigning and resolving are remediation (`operator`, `admin`), a retry is a
//! deployment (`operator`, `admin`), accepting a risk is the customer's oversight (`approver`,
//! `admin`). The decision is stored per (device, package) in the `TriageStore`; what is in
//! force is `Triage::effective_status` (a newer failure reopens a resolved one; an accepted
//! risk holds until it expires).
//!
//! A failure's deadline: the earliest SLA deadline (the tenant's SLA policy) among the device's
//! open vulnerabilities that this package's update fixes; without one, 14 days after the first
//! failure of the current streak ([`DEFAULT_FIX_DAYS`]).

use crate::actor::Actor;
use crate::authz::Permission;
use crate::error::{AppError, AppResult};
use crate::{rfc3339, App};
use patchwarden_core::FailureClass;
use patchwarden_store::{Attempt, Device, ExposureFilter, FailureFilter, Triage, TriageDecision};
use patchwarden_wire::agent::PackageTarget;
use patchwarden_wire::api::{
    CreateDeploymentRequest, FailureActionRequest, FailureActionResult, FailureRow, Selection,
    TargetSpec, TriageStatus,
};
use std::collections::HashMap;

/// Days to fix a failure that no vulnerability deadline covers, from its first failure.
pub const DEFAULT_FIX_DAYS: i64 = 14;
/// The longest a risk can be accepted for.
pub const MAX_ACCEPT_DAYS: i64 = 366;
const DAY_MS: i64 = 24 * 3600 * 1000;

/// Turns current failures into the queue's rows: triage status, assignee, age, attempts and
/// deadline. Without `all`, resolved failures and accepted risks are left out.
pub async fn annotate(
    state: &App,
    filter: &FailureFilter,
    current: Vec<Attempt>,
    hostnames: &HashMap<&str, &str>,
    all: bool,
) -> AppResult<Vec<FailureRow>> {
    if current.is_empty() {
        return Ok(vec![]);
    }
    let now = state.clock.now_ms();
    let triage: HashMap<(String, String), Triage> = state
        .store
        .list_triage(filter.tenant_id.as_deref())
        .await?
        .into_iter()
        .map(|t| ((t.device_id.clone(), t.package.clone()), t))
        .collect();
    let streaks: HashMap<(String, String), (i64, i64)> = state
        .store
        .failure_streaks(filter)
        .await?
        .into_iter()
        .map(|s| ((s.device_id, s.package), (s.first_at, s.attempts)))
        .collect();
    // Open exposures of the devices that have failures, fixed by an update (SLA deadlines).
    let mut exposures: HashMap<String, Vec<patchwarden_store::ExposureRecord>> = HashMap::new();
    for a in &current {
        if !exposures.contains_key(&a.device_id) {
            let list = state
                .store
                .list_exposures(&ExposureFilter {
                    device_id: Some(a.device_id.clone()),
                    ..Default::default()
                })
                .await?;
            exposures.insert(a.device_id.clone(), list);
        }
    }
    let policies = crate::sla::Policies::load(state).await?;
    let now_t = time::OffsetDateTime::from_unix_timestamp(now / 1000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);

    let mut rows = Vec::with_capacity(current.len());
    for a in current {
        let key = (a.device_id.clone(), a.package.clone());
        let t = triage.get(&key);
        let status = t.map_or(TriageStatus::Open, |t| t.effective_status(a.id, now));
        if !all && status != TriageStatus::Open {
            continue;
        }
        let (first_at, attempts) = streaks.get(&key).copied().unwrap_or((a.at, 1));
        let policy = policies.of(&a.tenant_id);
        let sla_due = exposures
            .get(&a.device_id)
            .into_iter()
            .flatten()
            .filter(|e| {
                e.closed_at.is_none()
                    && e.fixed_by_update.is_some()
                    && e.binaries.iter().any(|b| b == &a.package)
            })
            .filter_map(|e| {
                let due = crate::sla::sla_of(policy, e, now_t).due?;
                Some(((due.unix_timestamp() * 1000), e.cve.clone()))
            })
            .min();
        let (deadline, basis) = match sla_due {
            Some((due, cve)) => (due, format!("SLA of {cve}")),
            None => (
                first_at + DEFAULT_FIX_DAYS * DAY_MS,
                format!("{DEFAULT_FIX_DAYS} days after the first failure"),
            ),
        };
        let hostname = hostnames
            .get(a.device_id.as_str())
            .map(|h| (*h).to_owned())
            .unwrap_or_default();
        let mut row = failure_row(a, hostname);
        row.assignee = t.and_then(|t| t.assignee.clone());
        row.status = status;
        if status != TriageStatus::Open {
            row.reason = t.and_then(|t| t.reason.clone());
            row.accepted_until = t.and_then(|t| t.accepted_until).map(rfc3339);
        }
        row.first_failed_at = Some(rfc3339(first_at));
        row.age_secs = ((now - first_at) / 1000).max(0);
        row.attempts = u32::try_from(attempts).unwrap_or(u32::MAX);
        row.deadline = Some(rfc3339(deadline));
        row.deadline_basis = Some(basis);
        row.breached = now >= deadline;
        rows.push(row);
    }
    Ok(rows)
}

/// A current failure as a queue row (triage, age and deadline filled in by [`annotate`]).
pub fn failure_row(a: Attempt, hostname: String) -> FailureRow {
    FailureRow {
        device: a.device_id,
        hostname,
        package: a.package,
        deployment: a.deployment_id,
        // A current failure without a class is one the agent could not explain.
        class: a.class.unwrap_or(FailureClass::Unknown),
        at: rfc3339(a.at),
        installed_version: a.installed_version,
        evidence: a.evidence,
        exit_code: a.exit_code.map(|c| c as i32),
        // Triage, age and deadline: filled in by `crate::triage::annotate`.
        assignee: None,
        status: Default::default(),
        reason: None,
        accepted_until: None,
        first_failed_at: None,
        age_secs: 0,
        attempts: 0,
        deadline: None,
        deadline_basis: None,
        breached: false,
    }
}

/// The device a request names (id or hostname) among those the caller may see: 404 otherwise
/// (another tenant's device is not found either).
async fn find_device(state: &App, op: &Actor, name: &str) -> AppResult<Device> {
    let name = name.trim();
    if name.is_empty() {
        return Err(AppError::invalid(
            "device",
            "device is required (a device id or hostname)",
        ));
    }
    let visible = state.store.list_devices(op.tenant_scope()).await?;
    crate::scope::pick_device(&visible, name).cloned()
}

/// The current failure of this package on this device.
async fn current_failure(state: &App, device: &Device, package: &str) -> AppResult<Attempt> {
    let package = package.trim();
    if package.is_empty() {
        return Err(AppError::invalid("package", "package is required"));
    }
    state
        .store
        .current_failures(&FailureFilter {
            device_id: Some(device.id.clone()),
            ..Default::default()
        })
        .await?
        .into_iter()
        .find(|a| a.package == package)
        .ok_or_else(|| {
            AppError::not_found(format!(
                "{package} has no current failure on {}",
                device.hostname
            ))
        })
}

/// Finds the device and its failure, after checking the caller may do `p` in its tenant.
async fn target(
    state: &App,
    op: &Actor,
    req: &FailureActionRequest,
    p: Permission,
    action: &str,
) -> AppResult<(Device, Attempt)> {
    let device = find_device(state, op, &req.device).await?;
    op.require(p, &device.tenant_id)?;
    op.audit()
        .object(&format!("failure/{}/{}", device.id, req.package.trim()));
    op.audit().detail(action);
    let failure = current_failure(state, &device, &req.package).await?;
    Ok((device, failure))
}

fn result(device: &Device, t: &Triage, failure_id: i64, now: i64) -> FailureActionResult {
    FailureActionResult {
        device: device.id.clone(),
        hostname: device.hostname.clone(),
        package: t.package.clone(),
        status: t.effective_status(failure_id, now),
        assignee: t.assignee.clone(),
        reason: t.reason.clone(),
        accepted_until: t.accepted_until.map(rfc3339),
        deployment: None,
    }
}

fn reason_of(req: &FailureActionRequest) -> AppResult<Option<String>> {
    let r = req
        .reason
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty());
    if let Some(r) = r {
        if r.chars().count() > 2000 {
            return Err(AppError::invalid(
                "reason",
                "reason is too long (at most 2000 characters)",
            ));
        }
    }
    Ok(r.map(str::to_owned))
}

/// `until` of an accepted risk: `YYYY-MM-DD` (the end of that day, UTC) or RFC 3339.
pub fn parse_until(s: &str) -> AppResult<i64> {
    let s = s.trim();
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    if let Ok(d) = time::Date::parse(s, &fmt) {
        let end = d
            .with_hms(23, 59, 59)
            .map_err(|e| AppError::invalid("until", e.to_string()))?
            .assume_utc();
        return Ok(end.unix_timestamp() * 1000 + 999);
    }
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|_| {
            AppError::invalid(
                "until",
                format!("until must be a date like 2027-01-31 or an RFC 3339 time, got {s:?}"),
            )
        })?;
    Ok((t.unix_timestamp_nanos() / 1_000_000) as i64)
}

pub async fn assign(
    state: &App,
    op: &Actor,
    req: &FailureActionRequest,
) -> AppResult<FailureActionResult> {
    let (device, failure) = target(state, op, req, Permission::Remediate, "assign").await?;
    let assignee = req
        .assignee
        .as_deref()
        .map(str::trim)
        .filter(|a| !a.is_empty());
    if let Some(login) = assignee {
        // A person who can see this tenant's failures.
        let user = state
            .store
            .user_by_login(login)
            .await?
            .filter(|u| !u.disabled)
            .ok_or_else(|| {
                AppError::invalid("assignee", format!("no active user with login {login:?}"))
            })?;
        let access =
            crate::authz::Access::from_memberships(&state.store.memberships_of(&user.id).await?);
        if !access.can(&device.tenant_id, Permission::View) {
            return Err(AppError::invalid(
                "assignee",
                format!("user {login:?} has no role in this device's tenant"),
            ));
        }
    }
    let now = state.clock.now_ms();
    let t = state
        .store
        .assign_failure(
            &device.tenant_id,
            &device.id,
            &failure.package,
            assignee,
            op.name(),
            now,
        )
        .await?;
    op.audit().detail(&match assignee {
        Some(a) => format!("assigned to {a}"),
        None => "unassigned".to_owned(),
    });
    tracing::info!(device = %device.id, package = %failure.package, assignee = ?assignee, by = %op.name(), "failure assigned");
    Ok(result(&device, &t, failure.id, now))
}

/// What someone decided about a failure.
struct Decision {
    status: TriageStatus,
    reason: Option<String>,
    until: Option<i64>,
    now: i64,
}

/// Records a decision about the current failure of a device's package.
async fn decide(
    state: &App,
    op: &Actor,
    device: &Device,
    failure: &Attempt,
    d: Decision,
) -> AppResult<Triage> {
    Ok(state
        .store
        .decide_failure(&TriageDecision {
            tenant_id: device.tenant_id.clone(),
            device_id: device.id.clone(),
            package: failure.package.clone(),
            status: d.status,
            reason: d.reason,
            accepted_until: d.until,
            failure_attempt_id: Some(failure.id),
            by: op.name().to_owned(),
            at: d.now,
        })
        .await?)
}

pub async fn resolve(
    state: &App,
    op: &Actor,
    req: &FailureActionRequest,
) -> AppResult<FailureActionResult> {
    let (device, failure) = target(state, op, req, Permission::Remediate, "resolve").await?;
    let reason = reason_of(req)?;
    let now = state.clock.now_ms();
    let decision = Decision {
        status: TriageStatus::Resolved,
        reason: reason.clone(),
        until: None,
        now,
    };
    let t = decide(state, op, &device, &failure, decision).await?;
    op.audit().detail(&format!(
        "resolved{}",
        reason.map(|r| format!(": {r}")).unwrap_or_default()
    ));
    tracing::info!(device = %device.id, package = %failure.package, by = %op.name(), "failure resolved");
    Ok(result(&device, &t, failure.id, now))
}

pub async fn accept_risk(
    state: &App,
    op: &Actor,
    req: &FailureActionRequest,
) -> AppResult<FailureActionResult> {
    let (device, failure) = target(state, op, req, Permission::Approve, "accept risk").await?;
    let reason = reason_of(req)?
        .ok_or_else(|| AppError::invalid("reason", "accepting a risk needs a reason"))?;
    let until = req
        .until
        .as_deref()
        .ok_or_else(|| {
            AppError::invalid(
                "until",
                "accepting a risk needs until (a date, at most one year ahead)",
            )
        })
        .and_then(parse_until)?;
    let now = state.clock.now_ms();
    if until <= now {
        return Err(AppError::invalid(
            "until",
            format!("until {} is not in the future", rfc3339(until)),
        ));
    }
    if until > now + MAX_ACCEPT_DAYS * DAY_MS {
        return Err(AppError::invalid(
            "until",
            format!(
                "until {} is more than one year ahead: a risk is accepted for at most a year",
                rfc3339(until)
            ),
        ));
    }
    let decision = Decision {
        status: TriageStatus::AcceptedRisk,
        reason: Some(reason.clone()),
        until: Some(until),
        now,
    };
    let t = decide(state, op, &device, &failure, decision).await?;
    op.audit()
        .detail(&format!("risk accepted until {}: {reason}", rfc3339(until)));
    tracing::info!(device = %device.id, package = %failure.package, until = %rfc3339(until), by = %op.name(), "failure risk accepted");
    Ok(result(&device, &t, failure.id, now))
}

pub async fn retry(
    state: &App,
    op: &Actor,
    req: &FailureActionRequest,
) -> AppResult<FailureActionResult> {
    let (device, failure) = target(state, op, req, Permission::Deploy, "retry").await?;
    let tenant = state
        .store
        .tenant_by_id(&device.tenant_id)
        .await?
        .ok_or_else(|| AppError::not_found(format!("no tenant {}", device.tenant_id)))?;
    // A one-device deployment of the package at its candidate version (rejected updates are
    // refused by the planner like in any deployment).
    let deployment = CreateDeploymentRequest::new(
        Some(tenant.name.clone()),
        TargetSpec {
            devices: vec![device.id.clone()],
            ..Default::default()
        },
        Selection::Packages {
            packages: vec![PackageTarget {
                name: failure.package.clone(),
                version: None,
            }],
        },
    );
    let created = crate::deployments::create_planned(state, &tenant, op.name(), &deployment, None)
        .await?
        .ok_or_else(|| AppError::internal("the retry's deployment was not created"))?;
    op.audit()
        .detail(&format!("retry: deployment {}", created.id));
    tracing::info!(device = %device.id, package = %failure.package, deployment = %created.id, by = %op.name(), "failure retried");
    let now = state.clock.now_ms();
    let t = state
        .store
        .triage(&device.id, &failure.package)
        .await?
        .unwrap_or_else(|| Triage {
            tenant_id: device.tenant_id.clone(),
            device_id: device.id.clone(),
            package: failure.package.clone(),
            status: TriageStatus::Open,
            ..Default::default()
        });
    let mut r = result(&device, &t, failure.id, now);
    r.deployment = Some(created.id);
    Ok(r)
}
