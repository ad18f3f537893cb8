//! What a device's last inventory tells the rest of the application: the inventory itself,
//! the summary figures kept in columns for cheap lists, and the device's time zone (a
//! `timezone` label overrides what the agent reports).

use crate::error::AppResult;
use crate::App;
use patchwarden_store::DeviceInventorySummary;
use patchwarden_wire::agent::Inventory;

/// The label that overrides a device's reported time zone (set per device, or per group
/// through its enrollment token's labels).
pub const TIMEZONE_LABEL: &str = "timezone";

/// The device's last inventory (`None` before the first, or when it cannot be read: logged).
pub async fn inventory_of(state: &App, id: &str) -> AppResult<Option<Inventory>> {
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

/// The figures a device list shows, derived once when the inventory arrives.
pub fn summarise(inv: &Inventory) -> DeviceInventorySummary {
    let os = if inv.os.pretty_name.is_empty() {
        format!("{} {}", inv.os.id, inv.os.version)
            .trim()
            .to_owned()
    } else {
        inv.os.pretty_name.clone()
    };
    DeviceInventorySummary {
        os,
        kernel: inv.kernel.clone(),
        pending_updates: inv.upgradable.len() as i64,
        security_updates: inv.upgradable.iter().filter(|u| u.security).count() as i64,
        reboot_required: inv.reboot_required,
    }
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
