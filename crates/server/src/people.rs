//! Users and API tokens over the API (`patchwarden user …`, `patchwarden token …`). Only
//! admins manage them, and a tenant admin only inside their tenant: they can neither create
//! provider-level users or tokens nor touch anyone who holds a role elsewhere.

use crate::auth::{hash_token, new_id, new_token, Operator, ADMIN_TOKEN_PREFIX};
use crate::error::{ApiError, ApiResult, Body};
use crate::web::authz::{Permission, Role};
use crate::{rfc3339, AppState};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use patchwarden_store::{ApiToken, Membership, StoreError, Tenant};
use patchwarden_wire::access::*;
use std::collections::HashMap;

const MIN_PASSWORD_CHARS: usize = 12;

fn parse_role(role: &str) -> ApiResult<Role> {
    Role::parse(role).ok_or_else(|| {
        ApiError::bad_request(format!(
            "unknown role {role:?}: use admin, operator, approver or viewer"
        ))
    })
}

/// The tenant a new user or token gets: the named one (which a tenant admin may only name
/// if it is their own), else the caller's own tenant, else (provider admin) none = every
/// tenant. Checks that the caller is an admin there.
async fn target_tenant(
    state: &AppState,
    op: &Operator,
    name: Option<&str>,
) -> ApiResult<Option<Tenant>> {
    match (name, op.tenant_scope()) {
        (None, None) => {
            op.require_provider(Permission::Administer)?;
            Ok(None)
        }
        (None, Some(own)) => {
            let own = own.to_owned();
            op.require(Permission::Administer, &own)?;
            Ok(state.store.tenant_by_id(&own).await?)
        }
        (Some(name), scope) => {
            let existing = state
                .store
                .list_tenants()
                .await?
                .into_iter()
                .find(|t| t.name == name);
            let tenant = match (existing, scope) {
                (Some(t), _) => t,
                (None, None) => {
                    // A provider admin may name a new tenant (as with deployments).
                    op.require_provider(Permission::Administer)?;
                    crate::operator_api::check_tenant_name(name)?;
                    state
                        .store
                        .ensure_tenant(name, state.clock.now_ms())
                        .await?
                }
                (None, Some(_)) => {
                    return Err(ApiError::forbidden(format!(
                        "{} may not act on tenant {name:?}",
                        op.0.name
                    )))
                }
            };
            op.require(Permission::Administer, &tenant.id)?;
            Ok(Some(tenant))
        }
    }
}

async fn names(state: &AppState) -> ApiResult<HashMap<String, String>> {
    Ok(state
        .store
        .list_tenants()
        .await?
        .into_iter()
        .map(|t| (t.id, t.name))
        .collect())
}

fn grant(m: &Membership, names: &HashMap<String, String>) -> RoleGrant {
    RoleGrant {
        tenant: m
            .tenant_id
            .as_ref()
            .map(|t| names.get(t).cloned().unwrap_or_else(|| t.clone())),
        role: m.role.clone(),
    }
}

#[utoipa::path(get, path = "/api/v1/users", responses((status = 200, body = [UserView]),
    (status = 403, body = patchwarden_wire::ErrorBody)), security(("operator" = [])), tag = "people")]
pub async fn list_users(
    State(state): State<AppState>,
    op: Operator,
) -> ApiResult<Json<Vec<UserView>>> {
    op.require_scoped(Permission::Administer)?;
    let names = names(&state).await?;
    let mut by_user: HashMap<String, Vec<Membership>> = HashMap::new();
    for m in state.store.all_memberships().await? {
        by_user.entry(m.user_id.clone()).or_default().push(m);
    }
    let scope = op.tenant_scope();
    let mut out = Vec::new();
    for u in state.store.list_users().await? {
        let ms = by_user.remove(&u.id).unwrap_or_default();
        // A tenant admin sees the people with a role in their tenant, and only those roles.
        let shown: Vec<RoleGrant> = ms
            .iter()
            .filter(|m| scope.is_none() || m.tenant_id.as_deref() == scope)
            .map(|m| grant(m, &names))
            .collect();
        if scope.is_some() && shown.is_empty() {
            continue;
        }
        out.push(UserView {
            id: u.id,
            login: u.login,
            created_at: rfc3339(u.created_at),
            disabled: u.disabled,
            roles: shown,
        });
    }
    Ok(Json(out))
}

#[utoipa::path(post, path = "/api/v1/users", request_body = CreateUserRequest,
    responses((status = 201, body = UserCreated), (status = 400, body = patchwarden_wire::ErrorBody),
        (status = 403, body = patchwarden_wire::ErrorBody), (status = 409, body = patchwarden_wire::ErrorBody)),
    security(("operator" = [])), tag = "people")]
pub async fn create_user(
    State(state): State<AppState>,
    op: Operator,
    Body(req): Body<CreateUserRequest>,
) -> ApiResult<(StatusCode, Json<UserCreated>)> {
    let tenant = target_tenant(&state, &op, req.tenant.as_deref()).await?;
    let role = parse_role(&req.role)?;
    let login = req.login.trim();
    if login.is_empty()
        || login.len() > 254
        || login.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(ApiError::bad_request(format!(
            "invalid login {login:?}: 1 to 254 characters, no spaces"
        )));
    }
    let (password, generated) = match req.password {
        Some(p) if p.chars().count() < MIN_PASSWORD_CHARS => {
            return Err(ApiError::bad_request(format!(
                "the password is too short: at least {MIN_PASSWORD_CHARS} characters"
            )))
        }
        Some(p) => (p, false),
        None => (crate::web::session::random_password(), true),
    };
    let tenant_id = tenant.as_ref().map(|t| t.id.clone());
    let user = match crate::web::create_user(
        state.store.as_ref(),
        login,
        &password,
        &[(tenant_id.clone(), role)],
    )
    .await
    {
        Ok(u) => u,
        Err(e) => {
            return Err(match e.downcast_ref::<StoreError>() {
                Some(StoreError::Conflict(m)) => {
                    ApiError::new(StatusCode::CONFLICT, "conflict", m.clone())
                }
                _ => {
                    tracing::error!(error = %e, "creating a user failed");
                    ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "storage_error",
                        "the user could not be created; retry later",
                    )
                }
            })
        }
    };
    op.audit().object(&user.id);
    op.audit().detail(&format!(
        "user {login} with role {} in {}",
        role.as_str(),
        tenant.as_ref().map_or("every tenant", |t| t.name.as_str())
    ));
    tracing::info!(user = %login, role = role.as_str(), by = %op.0.name, "user created");
    Ok((
        StatusCode::CREATED,
        Json(UserCreated {
            id: user.id,
            login: user.login,
            roles: vec![RoleGrant {
                tenant: tenant.map(|t| t.name),
                role: role.as_str().to_owned(),
            }],
            password: generated.then_some(password),
        }),
    ))
}

#[utoipa::path(post, path = "/api/v1/users/{login}/disable", params(("login" = String, Path)),
    responses((status = 204), (status = 403, body = patchwarden_wire::ErrorBody),
        (status = 404, body = patchwarden_wire::ErrorBody)),
    security(("operator" = [])), tag = "people")]
pub async fn disable_user(
    State(state): State<AppState>,
    op: Operator,
    Path(login): Path<String>,
) -> ApiResult<StatusCode> {
    let not_found = || ApiError::not_found(format!("no user {login:?}"));
    let user = state
        .store
        .user_by_login(&login)
        .await?
        .ok_or_else(not_found)?;
    let ms = state.store.memberships_of(&user.id).await?;
    if let Some(own) = op.tenant_scope() {
        // Someone without a role in this tenant does not exist for its admins.
        if !ms.iter().any(|m| m.tenant_id.as_deref() == Some(own)) {
            return Err(not_found());
        }
    }
    op.require_scoped(Permission::Administer)?;
    if let Some(own) = op.tenant_scope() {
        if ms.iter().any(|m| m.tenant_id.as_deref() != Some(own)) {
            return Err(ApiError::forbidden(format!(
                "{login} also holds roles outside this tenant: only a provider admin may disable them"
            )));
        }
    }
    // The entry belongs to the person's tenant when they have only one.
    let tenants: std::collections::BTreeSet<Option<&str>> =
        ms.iter().map(|m| m.tenant_id.as_deref()).collect();
    if let [Some(t)] = tenants.iter().copied().collect::<Vec<_>>()[..] {
        op.audit().tenant(Some(t));
    }
    state.store.set_user_disabled(&user.id, true).await?;
    op.audit().detail(&format!("user {login} disabled"));
    tracing::info!(user = %login, by = %op.0.name, "user disabled");
    Ok(StatusCode::NO_CONTENT)
}

fn token_view(t: &ApiToken, names: &HashMap<String, String>) -> TokenView {
    TokenView {
        id: t.id.clone(),
        name: t.name.clone(),
        role: t.role.clone(),
        tenant: t
            .tenant_id
            .as_ref()
            .map(|id| names.get(id).cloned().unwrap_or_else(|| id.clone())),
        created_at: rfc3339(t.created_at),
        revoked_at: t.revoked_at.map(rfc3339),
    }
}

#[utoipa::path(get, path = "/api/v1/tokens", responses((status = 200, body = [TokenView]),
    (status = 403, body = patchwarden_wire::ErrorBody)), security(("operator" = [])), tag = "people")]
pub async fn list_tokens(
    State(state): State<AppState>,
    op: Operator,
) -> ApiResult<Json<Vec<TokenView>>> {
    op.require_scoped(Permission::Administer)?;
    let names = names(&state).await?;
    let tokens = state.store.list_api_tokens(op.tenant_scope()).await?;
    Ok(Json(tokens.iter().map(|t| token_view(t, &names)).collect()))
}

#[utoipa::path(post, path = "/api/v1/tokens", request_body = CreateTokenRequest,
    responses((status = 201, body = TokenCreated), (status = 400, body = patchwarden_wire::ErrorBody),
        (status = 403, body = patchwarden_wire::ErrorBody)),
    security(("operator" = [])), tag = "people")]
pub async fn create_token(
    State(state): State<AppState>,
    op: Operator,
    Body(req): Body<CreateTokenRequest>,
) -> ApiResult<(StatusCode, Json<TokenCreated>)> {
    let tenant = target_tenant(&state, &op, req.tenant.as_deref()).await?;
    let role = parse_role(&req.role)?;
    let name = req.name.trim();
    if name.is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!(
            "invalid token name {name:?}: 1 to 128 characters"
        )));
    }
    let secret = new_token(ADMIN_TOKEN_PREFIX);
    let record = ApiToken {
        id: new_id("tok_"),
        tenant_id: tenant.as_ref().map(|t| t.id.clone()),
        name: name.to_owned(),
        role: role.as_str().to_owned(),
        token_hash: hash_token(&secret),
        created_at: state.clock.now_ms(),
        revoked_at: None,
    };
    state.store.insert_api_token(&record).await?;
    op.audit().detail(&format!(
        "token {name:?} with role {} in {}",
        role.as_str(),
        tenant.as_ref().map_or("every tenant", |t| t.name.as_str())
    ));
    tracing::info!(token_id = %record.id, name = %name, role = role.as_str(), by = %op.0.name, "API token created");
    let names = names(&state).await?;
    Ok((
        StatusCode::CREATED,
        Json(TokenCreated {
            info: token_view(&record, &names),
            token: secret,
        }),
    ))
}

#[utoipa::path(delete, path = "/api/v1/tokens/{id}", params(("id" = String, Path)),
    responses((status = 204), (status = 403, body = patchwarden_wire::ErrorBody),
        (status = 404, body = patchwarden_wire::ErrorBody)),
    security(("operator" = [])), tag = "people")]
pub async fn revoke_token(
    State(state): State<AppState>,
    op: Operator,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let not_found = || ApiError::not_found(format!("no API token {id}"));
    let token = state.store.api_token(&id).await?.ok_or_else(not_found)?;
    match &token.tenant_id {
        Some(t) if op.can_access(t) => op.require(Permission::Administer, t)?,
        Some(_) => return Err(not_found()),
        None if op.tenant_scope().is_some() => return Err(not_found()),
        None => op.require_provider(Permission::Administer)?,
    }
    if !state
        .store
        .revoke_api_token(&id, state.clock.now_ms())
        .await?
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "invalid_state",
            format!("API token {id} is already revoked"),
        ));
    }
    op.audit()
        .detail(&format!("token {:?} revoked", token.name));
    tracing::info!(token_id = %id, by = %op.0.name, "API token revoked");
    Ok(StatusCode::NO_CONTENT)
}
