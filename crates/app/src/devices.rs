//! Devices: the list and one device (summary, inventory, attempt history, current failures),
//! how a request names a device (id first, then an unambiguous hostname), and labels.

use crate::actor::Actor;
use crate::authz::Permission;
use crate::error::{AppError, AppResult};
use crate::tenants::tenant_names;
use crate::{rfc3339, App};
use patchwarden_core::DeviceStatus;
use patchwarden_store::{Device, StatusRule};
use patchwarden_wire::agent::Inventory;
use patchwarden_wire::api::{DeviceDetail, DeviceLabels, DeviceSummary};

/// The label that overrides a device's reported time zone (set per device, or per group
/// through its enrollment token's labels).
pub const TIMEZONE_LABEL: &str = "timezone";

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

/// The device `name` means among `devices`: the one with that id, else the one with that
/// hostname. A hostname that several devices carry is refused with their ids, so that a
/// device that renamed itself can never take another device's work.
pub fn pick<'a>(devices: &'a [Device], name: &str) -> AppResult<&'a Device> {
    if let Some(d) = devices.iter().find(|d| d.id == name) {
        return Ok(d);
    }
    let named: Vec<&Device> = devices.iter().filter(|d| d.hostname == name).collect();
    match named[..] {
        [] => Err(AppError::not_found(format!("no device {name}"))),
        [d] => Ok(d),
        _ => Err(AppError::invalid(
            "device",
            format!(
                "{} devices are named {name:?} ({}): name the device by its id",
                named.len(),
                named
                    .iter()
                    .map(|d| d.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
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

/// A device the caller may see (another tenant's is not found, as if it did not exist).
pub async fn visible(state: &App, op: &Actor, id: &str) -> AppResult<Device> {
    match state.store.device(id).await? {
        Some(d) if op.can_access(&d.tenant_id) => Ok(d),
        _ => Err(AppError::not_found(format!("no device {id}"))),
    }
}

/// The device's last inventory (`None` before the first, or when it cannot be read: logged).
pub(crate) async fn inventory_of(state: &App, id: &str) -> AppResult<Option<Inventory>> {
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

pub async fn get(state: &App, op: &Actor, id: &str) -> AppResult<DeviceDetail> {
    let device = visible(state, op, id).await?;
    op.require(Permission::View, &device.tenant_id)?;
    let tenant = crate::tenants::tenant_name(state, &device.tenant_id).await?;
    let inventory = inventory_of(state, id).await?;
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
    let device = visible(state, op, id).await?;
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

/// The device's time zone: a `timezone` label (per device, or its group's) overrides what
/// the agent reports in its inventory; UTC when unknown or not a zone name.
pub(crate) async fn zone(state: &App, device_id: &str) -> jiff::tz::TimeZone {
    let zone = async {
        if let Some(tz) = state
            .store
            .device(device_id)
            .await
            .ok()
            .flatten()
            .and_then(|d| d.labels.get(TIMEZONE_LABEL).cloned())
            .and_then(|z| patchwarden_core::schedule::zone(&z).ok())
        {
            return Some(tz);
        }
        let json = state.store.device_inventory_json(device_id).await.ok()??;
        let inv: Inventory = serde_json::from_str(&json).ok()?;
        patchwarden_core::schedule::zone(inv.timezone.as_deref()?).ok()
    };
    zone.await.unwrap_or(jiff::tz::TimeZone::UTC)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(id: &str, hostname: &str) -> Device {
        Device {
            id: id.into(),
            tenant_id: "t".into(),
            hostname: hostname.into(),
            machine_id: String::new(),
            labels: Default::default(),
            secret_hash: String::new(),
            enroll_token_id: None,
            enrolled_at: 0,
            last_seen: None,
            agent_version: String::new(),
            checkin_interval_secs: 60,
            inventory_hash: None,
            inventory_at: None,
            summary: Default::default(),
        }
    }

    #[test]
    fn ids_first_then_one_hostname() {
        // dev_b renamed itself to dev_a's id-looking hostname: the id still wins.
        let devices = vec![
            device("dev_a", "web1"),
            device("dev_b", "dev_a"),
            device("dev_c", "db"),
            device("dev_d", "db"),
        ];
        let cases: &[(&str, Result<&str, &str>)] = &[
            ("dev_a", Ok("dev_a")),
            ("web1", Ok("dev_a")),
            ("dev_c", Ok("dev_c")),
            ("nope", Err("no device nope")),
            (
                "db",
                Err("2 devices are named \"db\" (dev_c, dev_d): name the device by its id"),
            ),
        ];
        for (name, want) in cases {
            let got = pick(&devices, name)
                .map(|d| d.id.as_str())
                .map_err(|e| e.to_string());
            assert_eq!(got, want.map_err(str::to_owned), "{name}");
        }
    }
}
