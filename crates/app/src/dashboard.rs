//! The dashboard's read models: fleet figures per tenant, current failures by class, open
//! exposure with SLA breaches, the daily history, and the paged device list, each computed in
//! SQL by the store. Every read checks that the caller may view each tenant in the scope.

use crate::actor::Actor;
use crate::authz::Permission;
use crate::error::AppResult;
use crate::App;
use patchwarden_store::{
    Device, DevicePageQuery, ExposureStats, FailureCount, FleetStats, Snapshot, StatusRule,
    TenantScope,
};

/// Allows a read over `scope`: each tenant named must be viewable; `None` (every tenant)
/// needs a provider-wide role.
pub fn require_view(op: &Actor, scope: &TenantScope) -> AppResult<()> {
    match scope {
        None => op.require_scoped(Permission::View),
        Some(ids) => ids.iter().try_for_each(|t| op.require(Permission::View, t)),
    }
}

pub async fn fleet_stats(
    state: &App,
    op: &Actor,
    scope: &TenantScope,
) -> AppResult<Vec<FleetStats>> {
    require_view(op, scope)?;
    Ok(state.store.fleet_stats(scope, state.clock.now_ms()).await?)
}

pub async fn failure_counts(
    state: &App,
    op: &Actor,
    scope: &TenantScope,
) -> AppResult<Vec<FailureCount>> {
    require_view(op, scope)?;
    Ok(state.store.failure_counts(scope).await?)
}

/// Open exposure figures, each tenant's SLA breaches by its own SLA policy.
pub async fn exposure_stats(
    state: &App,
    op: &Actor,
    scope: &TenantScope,
) -> AppResult<Vec<ExposureStats>> {
    require_view(op, scope)?;
    Ok(crate::sla::exposure_stats(state, scope, state.clock.now_ms()).await?)
}

/// The daily snapshots of the tenants in scope, from day `from` to day `to` (inclusive).
pub async fn snapshots(
    state: &App,
    op: &Actor,
    scope: &TenantScope,
    from: &str,
    to: &str,
) -> AppResult<Vec<Snapshot>> {
    require_view(op, scope)?;
    Ok(state.store.snapshots(scope, from, to).await?)
}

/// One page of devices and how many match the filters.
pub async fn device_page(
    state: &App,
    op: &Actor,
    q: &DevicePageQuery,
) -> AppResult<(Vec<Device>, i64)> {
    require_view(op, &q.scope)?;
    Ok(state.store.device_page(q).await?)
}

/// When devices count as stale or offline.
pub fn status_rule(state: &App) -> StatusRule {
    state.store.status_rule()
}
