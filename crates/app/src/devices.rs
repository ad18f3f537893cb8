//! Devices: the list and one device (summary, inventory, attempt history, current failures
//! with their triage), and labels.

use crate::actor::Actor;
use crate::authz::Permission;
use crate::error::{AppError, AppResult};
use crate::inventory::TIMEZONE_LABEL;
use crate::scope::tenant_names;
use crate::{rfc3339, App};
use patchwarden_core::DeviceStatus;
use patchwarden_store::{Device, StatusRule};
use patchwarden_wire::api::{DeviceDetail, DeviceLabels, DeviceSummary};

/// The device's status under the server's rule (online, stale after `--stale-after`, offline
/// after `--offline-after`, new).
pub fn device_status(rule: &StatusRule, d: &Device, now: i64) -> DeviceStatus {
    rule.status(d.last_seen, d.checkin_interval_secs, now)
}

fn summary(d: Device, tenant: String, now: i64, rule: &StatusRule) -> DeviceSummary {
    DeviceSummary {
        status: device_status(rule, &d, now),
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

pub async fn list(state: &App, op: &Actor) -> AppResult<Vec<DeviceSummary>> {
    op.require_scoped(Permission::View)?;
    let names = tenant_names(state).await?;
    let now = state.clock.now_ms();
    let devices = state.store.list_devices(op.tenant_scope()).await?;
    let rule = state.store.status_rule();
    Ok(devices
        .into_iter()
        .map(|d| {
            let tenant = names.get(&d.tenant_id).cloned().unwrap_or_default();
            summary(d, tenant, now, &rule)
        })
        .collect())
}

pub async fn get(state: &App, op: &Actor, id: &str) -> AppResult<DeviceDetail> {
    let device = crate::scope::visible_device(state, op, id).await?;
    op.require(Permission::View, &device.tenant_id)?;
    let tenant = crate::scope::tenant_name(state, &device.tenant_id).await?;
    let inventory = crate::inventory::inventory_of(state, id).await?;
    let history = state
        .store
        .attempts_of_device(id, 200)
        .await?
        .into_iter()
        .map(crate::history::attempt_view)
        .collect();
    let filter = patchwarden_store::FailureFilter {
        tenant_id: Some(device.tenant_id.clone()),
        device_id: Some(id.to_owned()),
        ..Default::default()
    };
    // Every current failure (resolved and accepted ones too), with its triage, age and deadline.
    let current = state.store.current_failures(&filter).await?;
    let hostnames = std::collections::HashMap::from([(id, device.hostname.as_str())]);
    let failures = crate::triage::annotate(state, &filter, current, &hostnames, true).await?;
    Ok(DeviceDetail {
        summary: summary(
            device,
            tenant,
            state.clock.now_ms(),
            &state.store.status_rule(),
        ),
        inventory,
        history,
        failures,
    })
}

/// Replaces a device's labels (they decide which policies reach it).
pub async fn set_labels(
    state: &App,
    op: &Actor,
    id: &str,
    req: DeviceLabels,
) -> AppResult<DeviceLabels> {
    let device = crate::scope::visible_device(state, op, id).await?;
    op.require(Permission::ManagePolicies, &device.tenant_id)?;
    for (k, v) in &req.labels {
        let ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 128
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./+:".contains(c))
        };
        if !ok(k) || !ok(v) {
            return Err(AppError::invalid(
                "labels",
                format!(
                    "invalid label {k:?}={v:?}: use letters, digits and - _ . / + : (at most 128)"
                ),
            ));
        }
    }
    if let Some(zone) = req.labels.get(TIMEZONE_LABEL) {
        patchwarden_core::schedule::zone(zone)
            .map_err(|e| AppError::invalid("labels", format!("label {TIMEZONE_LABEL}: {e}")))?;
    }
    state
        .store
        .set_device_labels(&device.id, &req.labels)
        .await?;
    tracing::info!(device = %device.id, by = %op.name(), "device labels set");
    Ok(req)
}
