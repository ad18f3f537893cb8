//! Attempt history, current failures, and the confirmation of pending reboots.

use crate::actor::Actor;
use crate::authz::Permission;
use crate::error::{AppError, AppResult};
use crate::{rfc3339, App};
use patchwarden_core::reboot::{confirm_after_reboot, DeviceNow};
use patchwarden_core::{FailureClass, PackageState};
use patchwarden_store::{Attempt, Device, FailureFilter};
use patchwarden_wire::agent::Inventory;
use patchwarden_wire::api::{
    AttemptView, FailureGroup, FailureRow, FailuresQuery, FailuresView, ResetFailures,
};
use std::collections::{BTreeMap, HashMap};

pub fn attempt_view(a: Attempt) -> AttemptView {
    AttemptView {
        deployment: a.deployment_id,
        job: a.job_id,
        package: a.package,
        at: rfc3339(a.at),
        state: a.state,
        class: a.class,
        installed_version: a.installed_version,
        evidence: a.evidence,
        action: a.action,
        exit_code: a.exit_code.map(|c| c as i32),
    }
}

/// Clears a device's current failures (kept in the history, with who did it), and its
/// reboot loop flags.
pub async fn reset_failures(state: &App, op: &Actor, id: &str) -> AppResult<ResetFailures> {
    let device = crate::scope::visible_device(state, op, id).await?;
    op.require(Permission::Remediate, &device.tenant_id)?;
    let action = format!("failures reset by {}", op.name());
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
    tracing::info!(device = %device.id, reset, by = %op.name(), "failure state reset");
    Ok(ResetFailures { reset })
}

/// The failure queue: current failures grouped by class, largest group first, each with its
/// triage, age and deadline.
pub async fn failures(state: &App, op: &Actor, q: &FailuresQuery) -> AppResult<FailuresView> {
    op.require_scoped(Permission::View)?;
    let class = q
        .class
        .as_deref()
        .map(|c| c.parse::<FailureClass>())
        .transpose()
        .map_err(|e| AppError::invalid("class", e.to_string()))?;
    let devices = state.store.list_devices(op.tenant_scope()).await?;
    let device_id = match &q.device {
        None => None,
        Some(d) => Some(crate::scope::pick_device(&devices, d)?.id.clone()),
    };
    let filter = FailureFilter {
        tenant_id: op.tenant_scope().map(str::to_owned),
        device_id,
        class,
    };
    let hostnames: HashMap<&str, &str> = devices
        .iter()
        .map(|d| (d.id.as_str(), d.hostname.as_str()))
        .collect();
    let mut groups: BTreeMap<FailureClass, Vec<FailureRow>> = BTreeMap::new();
    let current = state.store.current_failures(&filter).await?;
    for row in crate::triage::annotate(state, &filter, current, &hostnames, q.all).await? {
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
    Ok(FailuresView {
        total: groups.iter().map(|g| g.count).sum(),
        groups,
    })
}

/// After an inventory arrives: packages left `pending_reboot` on this device are confirmed
/// (or not) against the new boot id, installed versions and running kernel.
pub async fn confirm_reboots(state: &App, device: &Device, inv: &Inventory) -> AppResult<()> {
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
        updated.state = c.state;
        updated.class = c.class;
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
            state: updated.state,
            class: updated.class,
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
