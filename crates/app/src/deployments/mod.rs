//! Deployments: planning one (which packages each targeted device gets, its ring, the
//! stored plan), and reading one back with its rings, jobs, per-package results and
//! predictions. The state machine (approve, reject, halt, resume, cancel) is [`actions`];
//! moving a rollout forward is `crate::orchestrator`.

pub mod actions;

use crate::actor::{new_id, Actor};
use crate::authz::Permission;
use crate::engine::{plan_device, validate_packages};
use crate::error::{AppError, AppResult};
pub use crate::plan::Plan;
use crate::plan::{selection_of, validate_plan, validate_severity};
use crate::scope::{resolve_tenant, tenant_names};
use crate::{rfc3339, App};
use patchwarden_core::{DeploymentStatus, JobPhase, PackageState};
use patchwarden_store::{Deployment, Device, Job, JobPackage, JobStatus, Tenant};
use patchwarden_wire::agent::Operation;
use patchwarden_wire::api::*;
use std::collections::HashMap;

const DEFAULT_JOB_TIMEOUT_SECS: u64 = 1800;

/// Creates a deployment on an operator's request (see [`create_planned`]).
pub async fn create(
    state: &App,
    op: &Actor,
    req: &CreateDeploymentRequest,
) -> AppResult<DeploymentCreated> {
    let tenant = resolve_tenant(state, op, req.tenant.as_deref()).await?;
    op.require(Permission::Deploy, &tenant.id)?;
    create_planned(state, &tenant, op.name(), req, None)
        .await?
        .ok_or_else(|| AppError::conflict("this policy cycle already has its deployment"))
}

/// The devices a target means in a tenant.
pub(crate) async fn target_devices(
    state: &App,
    tenant: &Tenant,
    target: &TargetSpec,
) -> AppResult<Vec<Device>> {
    let forms = [
        !target.devices.is_empty(),
        !target.labels.is_empty(),
        target.all,
    ];
    if forms.iter().filter(|f| **f).count() != 1 {
        return Err(AppError::invalid(
            "target",
            "target exactly one of: devices (--device), labels (--label), or all (--all)",
        ));
    }
    let all = state.store.list_devices(Some(&tenant.id)).await?;
    Ok(if !target.devices.is_empty() {
        let mut chosen: Vec<Device> = Vec::new();
        for name in &target.devices {
            // Ids first; a hostname only when exactly one device carries it.
            let d = crate::scope::pick_device(&all, name).map_err(|e| match e {
                AppError::NotFound(_) => AppError::invalid(
                    "target",
                    format!("no device {name:?} in tenant {:?}", tenant.name),
                ),
                AppError::Invalid { message, .. } => AppError::invalid("target", message),
                other => other,
            })?;
            if !chosen.iter().any(|c| c.id == d.id) {
                chosen.push(d.clone());
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
    state: &App,
    tenant: &Tenant,
    created_by: &str,
    req: &CreateDeploymentRequest,
    run: Option<(String, String)>,
) -> AppResult<Option<DeploymentCreated>> {
    if let Selection::Packages { packages } = &req.selection {
        validate_packages(packages).map_err(|e| AppError::invalid("packages", e))?;
    }
    if let Selection::Vulnerabilities { min_severity, .. } = &req.selection {
        validate_severity("min_severity", min_severity.as_deref())?;
    }
    let timeout_secs = req.timeout_secs.unwrap_or(DEFAULT_JOB_TIMEOUT_SECS);
    if timeout_secs == 0 || timeout_secs > 24 * 3600 {
        return Err(AppError::invalid(
            "timeout_secs",
            "timeout must be between 1 second and 24 hours",
        ));
    }
    let exclude = req
        .exclude
        .iter()
        .map(|p| patchwarden_core::policy::NamePattern::parse(p))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| AppError::invalid("exclude", e))?;
    let plan = validate_plan(req)?;
    let targets = target_devices(state, tenant, &req.target).await?;
    if targets.is_empty() {
        return Err(AppError::NothingToInstall {
            reason: format!("no device in tenant {:?} matches the target", tenant.name),
        });
    }

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
        selection_json: crate::to_json(&req.selection)?,
        timeout_secs: timeout_secs as i64,
        status: if req.require_approval {
            DeploymentStatus::PendingApproval
        } else {
            DeploymentStatus::Running
        },
        status_reason: req
            .require_approval
            .then(|| "waiting for an approver".to_owned()),
        plan_json: crate::to_json(&plan.0)?,
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
        let inventory = crate::inventory::inventory_of(state, &device.id).await?;
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
                state: PackageState::Pending,
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
            payload: crate::to_json(&op_payload)?,
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
        return Err(AppError::NothingToInstall {
            reason: format!(
                "none of the {} targeted device(s) has anything to install for this selection{why}",
                targets.len()
            ),
        });
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
                return Err(AppError::invalid(
                    "rings",
                    format!(
                        "device {} is in no ring: end the rings with one that takes the rest",
                        job.device_id
                    ),
                ))
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

pub(crate) async fn view(state: &App, d: Deployment, tenant: String) -> AppResult<DeploymentView> {
    let jobs = state.store.jobs_of_deployment(&d.id).await?;
    let packages = state.store.packages_of_deployment(&d.id).await?;
    let reboot = crate::reboots::describe(Plan::of(&d)?.reboot.as_ref());
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
            let state = p.state;
            counts.add(state);
            let job = jobs_by_id.get(p.job_id.as_str());
            ResultRow {
                device: p.device_id.clone(),
                hostname: hostnames.get(&p.device_id).cloned().unwrap_or_default(),
                package: p.package.clone(),
                state,
                class: p.class,
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
            status: match j.status {
                JobStatus::Queued if j.released_at.is_none() => JobPhase::Waiting,
                JobStatus::Queued => JobPhase::Queued,
                JobStatus::Running => JobPhase::Running,
                JobStatus::Done => JobPhase::Done,
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
        selection: selection_of(&d)?,
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

pub async fn get(state: &App, op: &Actor, id: &str) -> AppResult<DeploymentView> {
    let d = crate::scope::visible_deployment(state, op, id).await?;
    op.require(Permission::View, &d.tenant_id)?;
    let tenant = crate::scope::tenant_name(state, &d.tenant_id).await?;
    view(state, d, tenant).await
}

pub async fn list(state: &App, op: &Actor) -> AppResult<Vec<DeploymentSummary>> {
    op.require_scoped(Permission::View)?;
    let names = tenant_names(state).await?;
    let mut out = Vec::new();
    for d in state.store.list_deployments(op.tenant_scope()).await? {
        let tenant = names.get(&d.tenant_id).cloned().unwrap_or_default();
        let v = view(state, d, tenant).await?;
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
    Ok(out)
}
