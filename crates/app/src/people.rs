//! Users and API tokens (`patchwarden user …`, `patchwarden token …`, `/people`). Only
//! admins manage them, and a tenant admin only inside their tenant: they can neither create
//! provider-level users or tokens nor touch anyone who holds a role elsewhere.

use crate::actor::{hash_token, new_id, new_token, Actor, ADMIN_TOKEN_PREFIX};
use crate::authz::{Permission, Role};
use crate::error::{AppError, AppResult};
use crate::{rfc3339, App};
use patchwarden_store::{ApiToken, Membership, Tenant};
use patchwarden_wire::access::*;
use std::collections::HashMap;

const MIN_PASSWORD_CHARS: usize = 12;
/// argon2 hashes whatever it is given: bound what a request may make it hash.
const MAX_PASSWORD_BYTES: usize = 1024;

/// A role named in a request.
fn parse_role(role: &str) -> AppResult<Role> {
    role.parse::<Role>()
        .map_err(|e| AppError::invalid("role", e.to_string()))
}

/// The tenant a new user or token gets: the named one (which a tenant admin may only name
/// if it is their own), else the caller's own tenant, else (provider admin) none = every
/// tenant. Checks that the caller is an admin there.
async fn target_tenant(state: &App, op: &Actor, name: Option<&str>) -> AppResult<Option<Tenant>> {
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
                    crate::scope::check_tenant_name(name)?;
                    state
                        .store
                        .ensure_tenant(name, state.clock.now_ms())
                        .await?
                }
                (None, Some(_)) => {
                    return Err(AppError::forbidden(format!(
                        "{} may not act on tenant {name:?}",
                        op.name()
                    )))
                }
            };
            op.require(Permission::Administer, &tenant.id)?;
            Ok(Some(tenant))
        }
    }
}

fn grant(m: &Membership, names: &HashMap<String, String>) -> RoleGrant {
    RoleGrant {
        tenant: m
            .tenant_id
            .as_ref()
            .map(|t| names.get(t).cloned().unwrap_or_else(|| t.clone())),
        role: m.role,
    }
}

/// The people an admin may see: every user for a provider admin; for a tenant admin, those
/// with a role in their tenant (and only those roles).
pub async fn list_users(state: &App, op: &Actor) -> AppResult<Vec<UserView>> {
    op.require_scoped(Permission::Administer)?;
    let names = crate::scope::tenant_names(state).await?;
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
    Ok(out)
}

/// Creates a user with one role (in a tenant, or provider-wide); without a password given, a
/// generated one is in the answer, once.
pub async fn create_user(
    state: &App,
    op: &Actor,
    req: &CreateUserRequest,
) -> AppResult<UserCreated> {
    let tenant = target_tenant(state, op, req.tenant.as_deref()).await?;
    let role = parse_role(&req.role)?;
    let login = req.login.trim();
    if login.is_empty()
        || login.len() > 254
        || login.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(AppError::invalid(
            "login",
            format!("invalid login {login:?}: 1 to 254 characters, no spaces"),
        ));
    }
    let (password, generated) = match &req.password {
        Some(p) if p.chars().count() < MIN_PASSWORD_CHARS => {
            return Err(AppError::invalid(
                "password",
                format!("the password is too short: at least {MIN_PASSWORD_CHARS} characters"),
            ))
        }
        Some(p) if p.len() > MAX_PASSWORD_BYTES => {
            return Err(AppError::invalid(
                "password",
                format!("the password is too long: at most {MAX_PASSWORD_BYTES} bytes"),
            ))
        }
        Some(p) => (p.clone(), false),
        None => (crate::sessions::random_password(), true),
    };
    let tenant_id = tenant.as_ref().map(|t| t.id.clone());
    let user =
        crate::sessions::create_user(state, login, &password, &[(tenant_id.clone(), role)]).await?;
    op.audit().object(&user.id);
    op.audit().detail(&format!(
        "user {login} with role {} in {}",
        role.as_str(),
        tenant.as_ref().map_or("every tenant", |t| t.name.as_str())
    ));
    tracing::info!(user = %login, role = role.as_str(), by = %op.name(), "user created");
    Ok(UserCreated {
        id: user.id,
        login: user.login,
        roles: vec![RoleGrant {
            tenant: tenant.map(|t| t.name),
            role,
        }],
        password: generated.then_some(password),
    })
}

/// Disables a user: their sessions end at once. A tenant admin may only disable people whose
/// roles are all in their tenant.
pub async fn disable_user(state: &App, op: &Actor, login: &str) -> AppResult<()> {
    let not_found = || AppError::not_found(format!("no user {login:?}"));
    let user = state
        .store
        .user_by_login(login)
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
            return Err(AppError::forbidden(format!(
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
    tracing::info!(user = %login, by = %op.name(), "user disabled");
    Ok(())
}

fn token_view(t: &ApiToken, names: &HashMap<String, String>) -> TokenView {
    TokenView {
        id: t.id.clone(),
        name: t.name.clone(),
        role: t.role,
        tenant: t
            .tenant_id
            .as_ref()
            .map(|id| names.get(id).cloned().unwrap_or_else(|| id.clone())),
        created_at: rfc3339(t.created_at),
        revoked_at: t.revoked_at.map(rfc3339),
    }
}

pub async fn list_tokens(state: &App, op: &Actor) -> AppResult<Vec<TokenView>> {
    op.require_scoped(Permission::Administer)?;
    let names = crate::scope::tenant_names(state).await?;
    let tokens = state.store.list_api_tokens(op.tenant_scope()).await?;
    Ok(tokens.iter().map(|t| token_view(t, &names)).collect())
}

/// Creates an API token with one role; the token itself is in the answer, once (only its
/// hash is stored).
pub async fn create_token(
    state: &App,
    op: &Actor,
    req: &CreateTokenRequest,
) -> AppResult<TokenCreated> {
    let tenant = target_tenant(state, op, req.tenant.as_deref()).await?;
    let role = parse_role(&req.role)?;
    let name = req.name.trim();
    if name.is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
        return Err(AppError::invalid(
            "name",
            format!("invalid token name {name:?}: 1 to 128 characters"),
        ));
    }
    let secret = new_token(ADMIN_TOKEN_PREFIX);
    let record = ApiToken {
        id: new_id("tok_"),
        tenant_id: tenant.as_ref().map(|t| t.id.clone()),
        name: name.to_owned(),
        role,
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
    tracing::info!(token_id = %record.id, name = %name, role = role.as_str(), by = %op.name(), "API token created");
    let names = crate::scope::tenant_names(state).await?;
    Ok(TokenCreated {
        info: token_view(&record, &names),
        token: secret,
    })
}

/// Revokes an API token: it stops working at once.
pub async fn revoke_token(state: &App, op: &Actor, id: &str) -> AppResult<()> {
    let not_found = || AppError::not_found(format!("no API token {id}"));
    let token = state.store.api_token(id).await?.ok_or_else(not_found)?;
    match &token.tenant_id {
        Some(t) if op.can_access(t) => op.require(Permission::Administer, t)?,
        Some(_) => return Err(not_found()),
        None if op.tenant_scope().is_some() => return Err(not_found()),
        None => op.require_provider(Permission::Administer)?,
    }
    if !state
        .store
        .revoke_api_token(id, state.clock.now_ms())
        .await?
    {
        return Err(AppError::invalid_state(format!(
            "API token {id} is already revoked"
        )));
    }
    op.audit()
        .detail(&format!("token {:?} revoked", token.name));
    tracing::info!(token_id = %id, by = %op.name(), "API token revoked");
    Ok(())
}

/// Login of the first administrator.
pub const ADMIN_LOGIN: &str = "admin";

/// On first start (no API token at all), creates the administrator token. `persist` keeps
/// the token where the administrator finds it (a file of mode 0600) before its hash is
/// stored, so that a crash in between never leaves a token nobody has. Returns whether it
/// created one.
pub async fn bootstrap_admin_token(
    state: &App,
    persist: impl FnOnce(&str) -> std::io::Result<()>,
) -> AppResult<bool> {
    if state.store.count_api_tokens().await? > 0 {
        return Ok(false);
    }
    let token = new_token(ADMIN_TOKEN_PREFIX);
    persist(&token).map_err(|e| AppError::internal(format!("keeping the admin token: {e}")))?;
    let now = state.clock.now_ms();
    state
        .store
        .insert_api_token(&ApiToken {
            id: new_id("tok_"),
            tenant_id: None,
            name: "admin".into(),
            role: Role::Admin,
            token_hash: hash_token(&token),
            created_at: now,
            revoked_at: None,
        })
        .await?;
    state
        .store
        .ensure_tenant(crate::scope::DEFAULT_TENANT, now)
        .await?;
    Ok(true)
}

/// On first start (no user at all), creates the user `admin` (administrator of every tenant)
/// with a random password, which `persist` keeps first. Returns whether it created one.
pub async fn bootstrap_admin_user(
    state: &App,
    persist: impl FnOnce(&str) -> std::io::Result<()>,
) -> AppResult<bool> {
    if state.store.count_users().await? > 0 {
        return Ok(false);
    }
    let password = crate::sessions::random_password();
    persist(&password)
        .map_err(|e| AppError::internal(format!("keeping the admin password: {e}")))?;
    crate::sessions::create_user(state, ADMIN_LOGIN, &password, &[(None, Role::Admin)]).await?;
    Ok(true)
}
