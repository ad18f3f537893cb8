//! Who acts, and the one authorisation check. Credentials are random bearer tokens stored
//! only as SHA-256 hashes (they carry 256 bits of entropy, so a fast hash is right; passwords
//! get argon2, see `sessions`).

use crate::authz::{Access, Permission, Role};
use crate::error::{AppError, AppResult, Credential};
use crate::App;
use base64::Engine;
use patchwarden_store::{ApiToken, Device};
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::sync::{Arc, Mutex};

pub const ADMIN_TOKEN_PREFIX: &str = "pwa_";
pub const ENROLL_TOKEN_PREFIX: &str = "pwe_";
pub const DEVICE_SECRET_PREFIX: &str = "pwd_";

/// A new random token with a recognisable prefix (so a leaked one is easy to spot in scans).
pub fn new_token(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

pub fn new_id(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::new_v4().simple())
}

/// Whether an API token or a person acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActorKind {
    Token,
    User,
}

impl ActorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActorKind::Token => "token",
            ActorKind::User => "user",
        }
    }
}

/// An authenticated operator: an API token (its role, in its tenant or provider-wide), or a
/// person of the dashboard acting in one tenant (or, provider-wide, in all).
///
/// Every operator use case calls one of [`Actor::require`] (an object of a known tenant),
/// [`Actor::require_scoped`] (a list or creation within the caller's scope) or
/// [`Actor::require_provider`] (shared, provider-level things); the decision comes from the
/// one roles table, [`crate::authz::allows`].
#[derive(Clone)]
pub struct Actor {
    kind: ActorKind,
    id: String,
    name: String,
    /// The tenant acted in; `None`: every tenant (provider level).
    scope: Option<String>,
    /// For messages: the token's role, or the person's strongest role in the scope.
    role: Option<Role>,
    access: Access,
    audit: AuditSlot,
}

impl Actor {
    /// An API token: one role, in its tenant or provider-wide.
    pub fn for_token(token: &ApiToken, audit: AuditSlot) -> Self {
        let role = Some(token.role);
        let access = Access::of_token(token.tenant_id.as_deref(), token.role);
        audit.actor(ActorKind::Token.as_str(), &token.name, &token.id);
        audit.tenant(token.tenant_id.as_deref());
        Actor {
            kind: ActorKind::Token,
            id: token.id.clone(),
            name: token.name.clone(),
            scope: token.tenant_id.clone(),
            role,
            access,
            audit,
        }
    }

    /// A person acting in one tenant (`Some`), or across every tenant they may see (`None`,
    /// for a provider-wide person). Their roles are `access`.
    pub fn for_person(
        user_id: &str,
        login: &str,
        access: Access,
        tenant_id: Option<&str>,
        audit: AuditSlot,
    ) -> Self {
        audit.actor(ActorKind::User.as_str(), login, user_id);
        audit.tenant(tenant_id);
        let role = match tenant_id {
            Some(t) => access.role_in(t),
            None => access.strongest_provider_role(),
        };
        Actor {
            kind: ActorKind::User,
            id: user_id.to_owned(),
            name: login.to_owned(),
            scope: tenant_id.map(str::to_owned),
            role,
            access,
            audit,
        }
    }

    pub fn kind(&self) -> ActorKind {
        self.kind
    }
    pub fn id(&self) -> &str {
        &self.id
    }
    /// The token's name or the person's login (recorded as who did things).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The tenants this actor may act on: `None` = all (provider level).
    pub fn tenant_scope(&self) -> Option<&str> {
        self.scope.as_deref()
    }
    /// Whether this actor may see data of `tenant_id` at all (another tenant's objects are
    /// not found, as if they did not exist).
    pub fn can_access(&self, tenant_id: &str) -> bool {
        self.tenant_scope().is_none_or(|t| t == tenant_id) && self.access.can_see(tenant_id)
    }
    /// Whether this actor's roles allow `p` in this tenant (no audit note; for views that
    /// show or hide things).
    pub fn can(&self, p: Permission, tenant_id: &str) -> bool {
        self.can_access(tenant_id) && self.access.can(tenant_id, p)
    }
    /// The audit note of this request (use cases add the object or a detail).
    pub fn audit(&self) -> &AuditSlot {
        &self.audit
    }

    fn refuse(&self, p: Permission, place: &str) -> AppError {
        let role = self.role.map_or("none", Role::as_str);
        AppError::Forbidden {
            message: format!(
                "{} (role {role}) may not {} {place}: that needs the role {}",
                self.name,
                p.describe(),
                p.roles()
            ),
            needs: Some(p.roles()),
        }
    }

    /// Allows `p` on data of `tenant_id`, or refuses (recorded in the audit log).
    pub fn require(&self, p: Permission, tenant_id: &str) -> AppResult<()> {
        self.audit.checked();
        self.audit.tenant(Some(tenant_id));
        if !self.can_access(tenant_id) {
            return Err(AppError::forbidden(format!(
                "{} may not act on tenant {tenant_id}",
                self.name
            )));
        }
        if !self.access.can(tenant_id, p) {
            return Err(self.refuse(p, "in this tenant"));
        }
        Ok(())
    }

    /// Allows `p` across the caller's own scope (its tenant, or every tenant for the
    /// provider): lists, and reads that are filtered to the scope.
    pub fn require_scoped(&self, p: Permission) -> AppResult<()> {
        match self.scope.clone() {
            Some(t) => self.require(p, &t),
            None => self.require_provider(p),
        }
    }

    /// Allows `p` on provider-level things (shared by every tenant): needs a provider-wide
    /// role that allows it.
    pub fn require_provider(&self, p: Permission) -> AppResult<()> {
        self.audit.checked();
        if self.tenant_scope().is_some() || !self.access.can_provider(p) {
            return Err(self.refuse(p, "at provider level (for every tenant)"));
        }
        Ok(())
    }
}

/// The operator a bearer token stands for (`None`: no token was sent).
pub async fn authenticate_operator(
    app: &App,
    bearer: Option<&str>,
    audit: AuditSlot,
) -> AppResult<Actor> {
    let Some(token) = bearer else {
        return Err(AppError::unauthenticated(
            Credential::Operator,
            "missing Authorization header (expected `Bearer <token>`)",
        ));
    };
    match app.store.api_token_by_hash(&hash_token(token)).await? {
        Some(t) if t.revoked_at.is_none() => Ok(Actor::for_token(&t, audit)),
        Some(t) => {
            audit.actor(ActorKind::Token.as_str(), &t.name, &t.id);
            Err(AppError::unauthenticated(
                Credential::Operator,
                "this API token has been revoked",
            ))
        }
        None => Err(AppError::unauthenticated(
            Credential::Operator,
            "unknown API token",
        )),
    }
}

/// The device a device secret belongs to. The device is derived from the credential, never
/// from the request, so a device can only reach its own work.
pub async fn authenticate_device(app: &App, bearer: &str) -> AppResult<Device> {
    match app.store.device_by_secret_hash(&hash_token(bearer)).await? {
        Some(d) => Ok(d),
        None => Err(AppError::unauthenticated(
            Credential::Device,
            "unknown device credential; enroll this device again",
        )),
    }
}

/// What the handling of one request learnt about it, for its audit entry.
#[derive(Debug, Default, Clone)]
pub struct AuditNote {
    /// `user` or `token` (None: nobody authenticated).
    pub actor_kind: Option<&'static str>,
    pub actor: Option<String>,
    pub actor_id: Option<String>,
    pub tenant_id: Option<String>,
    pub object: Option<String>,
    pub detail: Option<String>,
    /// Whether a permission check ran (a mutating request without one is a bug: logged).
    pub checked: bool,
}

/// Shared between the middleware and the extractors/handlers of one request.
#[derive(Debug, Clone, Default)]
pub struct AuditSlot(Arc<Mutex<AuditNote>>);

impl AuditSlot {
    fn with<T>(&self, f: impl FnOnce(&mut AuditNote) -> T) -> T {
        let mut n = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut n)
    }
    pub fn note(&self) -> AuditNote {
        self.with(|n| n.clone())
    }
    /// Who acts: `kind` is `user` or `token`.
    pub fn actor(&self, kind: &'static str, name: &str, id: &str) {
        self.with(|n| {
            n.actor_kind = Some(kind);
            n.actor = Some(name.to_owned());
            n.actor_id = (!id.is_empty()).then(|| id.to_owned());
        });
    }
    /// The tenant the action concerns (the last one named wins).
    pub fn tenant(&self, tenant_id: Option<&str>) {
        self.with(|n| n.tenant_id = tenant_id.map(str::to_owned));
    }
    /// The object acted on (else the first path parameter, else the `id` a creation answers).
    pub fn object(&self, object: &str) {
        self.with(|n| n.object = Some(object.to_owned()));
    }
    /// A short detail (a reason given; bounded to 500 characters).
    pub fn detail(&self, detail: &str) {
        let d: String = detail.trim().chars().take(500).collect();
        self.with(|n| n.detail = (!d.is_empty()).then_some(d));
    }
    pub fn checked(&self) {
        self.with(|n| n.checked = true);
    }
}
