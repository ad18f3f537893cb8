//! Attempt history, current failures, and the confirmation of pending reboots.

use crate::auth::Operator;
use crate::error::{ApiError, ApiResult};
use crate::{rfc3339, AppState};
use axum::extract::{Query, State};
use axum::Json;
use patchwarden_core::reboot::{confirm_after_reboot, DeviceNow};
use patchwarden_core::{FailureClass, PackageState};
use patchwarden_store::{Attempt, Device, FailureFilter};
use patchwarden_wire::agent::Inventory;
use patchwarden_wire::api::{AttemptView, FailureGroup, FailureRow, FailuresView};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};

pub fn attempt_view(a: Attempt) -> AttemptView {
    AttemptView {
        deployment: a.deployment_id,
        job: a.job_id,
        package: a.package,
        at: rfc3339(a.at),
        state: a.state.parse().unwrap_or(PackageState::Pending),
        class: a
            .class
            .as_deref()
            .map(|c| c.parse().unwrap_or(FailureClass::Unknown)),
        installed_version: a.installed_version,
        evidence: a.evidence,
        action: a.action,
        exit_code: a.exit_code.map(|c| c as i32),
    }
}

pub fn failure_row(a: Attempt, hostname: String) -> FailureRow {
    FailureRow {
        device: a.device_id,
        hostname,
        package: a.package,
        deployment: a.deployment_id,
        class: a.class.as_deref().map_or(FailureClass::Unknown, |c| {
            c.parse().unwrap_or(FailureClass::Unknown)
        }),
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

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ResetFailures {
    /// How many current failures were reset.
    pub reset: u64,
}

#[utoipa::path(post, path = "/api/v1/devices/{id}/reset-failures", params(("id" = String, Path)),
    responses((status = 200, body = ResetFailures), (status = 404, body = patchwarden_wire::ErrorBody)),
    security(("operator" = [])), tag = "failures")]
pub async fn reset_failures(
    State(state): State<AppState>,
    op: Operator,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> ApiResult<Json<ResetFailures>> {
    let device = match state.store.device(&id).await? {
        Some(d) if op.can_access(&d.tenant_id) => d,
        _ => return Err(ApiError::not_found(format!("no device {id}"))),
    };
    op.require(crate::web::authz::Permission::Remediate, &device.tenant_id)?;
    let action = format!("failures reset by {}", op.0.name);
    let reset = state
        .store
        .reset_failures(&device.id, state.clock.now_ms(), &action)
        .await?;
    // A reboot loop's flag is a failure too: the loop guard forgets it with the reset.
    let loops = state
        .store
        .reset_reboot_loops(&device.id, state.clock.now_ms())
        .await?;
    if loops > 0 {
        tracing::info!(device = %device.id, loops, "reboot loop guard reset");
    }
    tracing::info!(device = %device.id, reset, by = %op.0.name, "failure state reset");
    Ok(Json(ResetFailures { reset }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct FailuresQuery {
    /// Only this class (a taxonomy name, e.g. `lock_held`).
    pub class: Option<String>,
    /// Only this device (id or hostname).
    pub device: Option<String>,
    /// Also the resolved failures and accepted risks (default: the queue, open ones only).
    #[serde(default)]
    pub all: bool,
}

#[utoipa::path(get, path = "/api/v1/failures", params(FailuresQuery),
    responses((status = 200, body = FailuresView), (status = 400, body = patchwarden_wire::ErrorBody)),
    security(("operator" = [])), tag = "failures")]
pub async fn list_failures(
    State(state): State<AppState>,
    op: Operator,
    Query(q): Query<FailuresQuery>,
) -> ApiResult<Json<FailuresView>> {
    op.require_scoped(crate::web::authz::Permission::View)?;
    if let Some(c) = &q.class {
        c.parse::<FailureClass>()
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
    }
    let devices = state.store.list_devices(op.tenant_scope()).await?;
    let device_id = match &q.device {
        None => None,
        Some(d) => Some(
            devices
                .iter()
                .find(|x| &x.id == d || &x.hostname == d)
                .map(|x| x.id.clone())
                .ok_or_else(|| ApiError::not_found(format!("no device {d}")))?,
        ),
    };
    let filter = FailureFilter {
        tenant_id: op.tenant_scope().map(str::to_owned),
        device_id,
        class: q.class.clone(),
    };
    let hostnames: HashMap<&str, &str> = devices
        .iter()
        .map(|d| (d.id.as_str(), d.hostname.as_str()))
        .collect();
    let mut groups: BTreeMap<FailureClass, Vec<FailureRow>> = BTreeMap::new();
    let current = state.store.current_failures(&filter).await?;
    for row in crate::triage::annotate(&state, &filter, current, &hostnames, q.all).await? {
        groups.entry(row.class).or_default().push(row);
    }
    let mut groups: Vec<FailureGroup> = groups
        .into_iter()
        .map(|(class, failures)| FailureGroup {
            class,
            count: failures.len() as u32,
            failures,
        })
        .collect();
    groups.sort_by(|a, b| b.count.cmp(&a.count).then(a.class.cmp(&b.class)));
    Ok(Json(FailuresView {
        total: groups.iter().map(|g| g.count).sum(),
        groups,
    }))
}

/// After an inventory arrives: packages left `pending_reboot` on this device are confirmed
/// (or not) against the new boot id, installed versions and running kernel.
pub async fn confirm_reboots(state: &AppState, device: &Device, inv: &Inventory) -> ApiResult<()> {
    let pending = state.store.pending_reboots(&device.id).await?;
    if pending.is_empty() {
        return Ok(());
    }
    let now = state.clock.now_ms();
    for p in pending {
        let row = &p.package;
        let intended = row
            .installed_version
            .clone()
            .or_else(|| row.to_version.clone())
            .unwrap_or_default();
        let installed = inv
            .packages
            .iter()
            .find(|x| x.name == row.package)
            .map(|x| x.version.as_str());
        let Some(c) = confirm_after_reboot(
            &row.package,
            &intended,
            p.boot_id.as_deref(),
            DeviceNow {
                boot_id: &inv.boot_id,
                running_kernel: &inv.kernel,
                installed_version: installed,
                still_requires_reboot: !patchwarden_core::reboot::still_requiring(
                    inv.reboot_required,
                    &inv.reboot_required_packages,
                    std::slice::from_ref(&row.package),
                )
                .is_empty(),
            },
        ) else {
            continue;
        };
        if c.state == PackageState::PendingReboot && row.evidence == c.evidence {
            continue;
        }
        let mut updated = row.clone();
        updated.state = c.state.as_str().to_owned();
        updated.class = c.class.map(|x| x.as_str().to_owned());
        updated.installed_version = installed.map(str::to_owned);
        updated.evidence = c.evidence.clone();
        let attempt = Attempt {
            id: 0,
            tenant_id: row.tenant_id.clone(),
            device_id: device.id.clone(),
            deployment_id: row.deployment_id.clone(),
            job_id: row.job_id.clone(),
            package: row.package.clone(),
            at: now,
            state: updated.state.clone(),
            class: updated.class.clone(),
            installed_version: updated.installed_version.clone(),
            evidence: c.evidence,
            action: "confirmed after reboot".to_owned(),
            exit_code: None,
        };
        state
            .store
            .update_package_outcome(&updated, &attempt)
            .await?;
        tracing::info!(device = %device.id, package = %row.package, state = %updated.state, "pending reboot resolved");
    }
    Ok(())
}
