//! Tenants: which one a request means, and their names for views.

use crate::actor::Actor;
use crate::error::{AppError, AppResult};
use crate::App;
use patchwarden_store::Tenant;
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

/// Every tenant, for views (id, name).
pub async fn list(state: &App) -> AppResult<Vec<Tenant>> {
    Ok(state.store.list_tenants().await?)
}
