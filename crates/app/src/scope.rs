//! The caller's scope: which tenant a request means, the tenants' names for views, and which
//! devices and deployments the caller may see (another tenant's are not found, as if they did
//! not exist). How a request names a device: its id, else a hostname only one device carries.

use crate::actor::Actor;
use crate::error::{AppError, AppResult};
use crate::App;
use patchwarden_store::{Deployment, Device, Tenant};
use std::collections::HashMap;

/// The tenant a provider-level request means when it names none.
pub const DEFAULT_TENANT: &str = "default";

/// Refuses a tenant name that is not `[A-Za-z0-9._-]{1,64}`.
pub fn check_tenant_name(name: &str) -> AppResult<()> {
    if valid_tenant_name(name) {
        Ok(())
    } else {
        Err(AppError::invalid(
            "tenant",
            format!(
                "invalid tenant name {name:?}: use letters, digits, '-', '_' or '.' (at most 64)"
            ),
        ))
    }
}

fn valid_tenant_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

/// The tenant a request names (or the caller's own, or `default` for the provider). A
/// tenant's token means its own tenant when it names none, and never creates one; the
/// provider creates a tenant by naming it.
pub async fn resolve_tenant(state: &App, op: &Actor, name: Option<&str>) -> AppResult<Tenant> {
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
            _ => Err(AppError::forbidden(format!(
                "this token may not act on tenant {:?}",
                name.unwrap_or(own)
            ))),
        };
    }
    let name = name.unwrap_or(DEFAULT_TENANT);
    check_tenant_name(name)?;
    let tenant = state
        .store
        .ensure_tenant(name, state.clock.now_ms())
        .await?;
    if !op.can_access(&tenant.id) {
        return Err(AppError::forbidden(format!(
            "this token may not act on tenant {name:?}"
        )));
    }
    Ok(tenant)
}

/// Tenant id → name.
pub async fn tenant_names(state: &App) -> AppResult<HashMap<String, String>> {
    Ok(state
        .store
        .list_tenants()
        .await?
        .into_iter()
        .map(|t| (t.id, t.name))
        .collect())
}

/// The name of one tenant (empty when it does not exist).
pub async fn tenant_name(state: &App, id: &str) -> AppResult<String> {
    Ok(state
        .store
        .tenant_by_id(id)
        .await?
        .map(|t| t.name)
        .unwrap_or_default())
}

/// The tenant a list is narrowed to: the one named (checked), else the caller's scope.
pub async fn list_scope(
    state: &App,
    op: &Actor,
    tenant: Option<&str>,
) -> AppResult<Option<String>> {
    Ok(match tenant {
        Some(name) => Some(resolve_tenant(state, op, Some(name)).await?.id),
        None => op.tenant_scope().map(str::to_owned),
    })
}

/// The device `name` means among `devices`: the one with that id, else the one with that
/// hostname. A hostname that several devices carry is refused with their ids, so that a
/// device that renamed itself can never take another device's work.
pub fn pick_device<'a>(devices: &'a [Device], name: &str) -> AppResult<&'a Device> {
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

/// A device the caller may see (another tenant's is not found, as if it did not exist).
pub async fn visible_device(state: &App, op: &Actor, id: &str) -> AppResult<Device> {
    match state.store.device(id).await? {
        Some(d) if op.can_access(&d.tenant_id) => Ok(d),
        _ => Err(AppError::not_found(format!("no device {id}"))),
    }
}

/// One deployment the caller may see (another tenant's is not found).
pub async fn visible_deployment(state: &App, op: &Actor, id: &str) -> AppResult<Deployment> {
    match state.store.deployment(id).await? {
        Some(d) if op.can_access(&d.tenant_id) => Ok(d),
        _ => Err(AppError::not_found(format!("no deployment {id}"))),
    }
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
            let got = pick_device(&devices, name)
                .map(|d| d.id.as_str())
                .map_err(|e| e.to_string());
            assert_eq!(got, want.map_err(str::to_owned), "{name}");
        }
    }
}
