//! Bringing devices in: enrollment tokens (created, listed and revoked by operators) and a
//! device's enrollment with one (the device gets its own secret, its tenant and labels come
//! from the token).

use crate::actor::{
    hash_token, new_id, new_token, Actor, DEVICE_SECRET_PREFIX, ENROLL_TOKEN_PREFIX,
};
use crate::authz::Permission;
use crate::error::{AppError, AppResult, Credential};
use crate::scope::{resolve_tenant, tenant_names};
use crate::{rfc3339, App};
use patchwarden_store::{Device, DeviceInventorySummary, EnrollRefusal, EnrollToken};
use patchwarden_wire::agent::{EnrollRequest, EnrollResponse};
use patchwarden_wire::api::{CreateEnrollTokenRequest, EnrollTokenCreated, EnrollTokenInfo};

const DEFAULT_ENROLL_TTL_SECS: u64 = 24 * 3600;
const MAX_ENROLL_TTL_SECS: u64 = 365 * 24 * 3600;

/// Creates an enrollment token; the token itself is in the answer, once (only its hash is
/// stored).
pub async fn create_token(
    state: &App,
    op: &Actor,
    req: &CreateEnrollTokenRequest,
) -> AppResult<EnrollTokenCreated> {
    let tenant = resolve_tenant(state, op, req.tenant.as_deref()).await?;
    op.require(Permission::Enroll, &tenant.id)?;
    let ttl = req.ttl_secs.unwrap_or(DEFAULT_ENROLL_TTL_SECS);
    if ttl == 0 || ttl > MAX_ENROLL_TTL_SECS {
        return Err(AppError::invalid(
            "ttl_secs",
            format!("ttl must be between 1 second and 365 days, got {ttl} s"),
        ));
    }
    for (k, v) in &req.labels {
        if k.is_empty()
            || k.len() > 64
            || v.len() > 256
            || !k
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
        {
            return Err(AppError::invalid(
                "labels",
                format!("invalid label {k:?}={v:?}"),
            ));
        }
    }
    let now = state.clock.now_ms();
    let token = new_token(ENROLL_TOKEN_PREFIX);
    let record = EnrollToken {
        id: new_id("enr_"),
        tenant_id: tenant.id.clone(),
        token_hash: hash_token(&token),
        labels: req.labels.clone(),
        created_at: now,
        expires_at: now + (ttl as i64) * 1000,
        revoked_at: None,
        uses: 0,
        max_uses: req.max_uses.map(i64::from),
    };
    state.store.insert_enroll_token(&record).await?;
    tracing::info!(token_id = %record.id, tenant = %tenant.name, "enrollment token created");
    Ok(EnrollTokenCreated {
        id: record.id,
        token,
        tenant: tenant.name,
        expires_at: rfc3339(record.expires_at),
    })
}

pub async fn list_tokens(state: &App, op: &Actor) -> AppResult<Vec<EnrollTokenInfo>> {
    op.require_scoped(Permission::Enroll)?;
    let names = tenant_names(state).await?;
    let tokens = state.store.list_enroll_tokens(op.tenant_scope()).await?;
    Ok(tokens
        .into_iter()
        .map(|t| EnrollTokenInfo {
            tenant: names.get(&t.tenant_id).cloned().unwrap_or_default(),
            id: t.id,
            labels: t.labels,
            created_at: rfc3339(t.created_at),
            expires_at: rfc3339(t.expires_at),
            revoked_at: t.revoked_at.map(rfc3339),
            uses: t.uses as u32,
            max_uses: t.max_uses.map(|m| m as u32),
        })
        .collect())
}

pub async fn revoke_token(state: &App, op: &Actor, id: &str) -> AppResult<()> {
    let visible = state
        .store
        .list_enroll_tokens(op.tenant_scope())
        .await?
        .into_iter()
        .find(|t| t.id == id);
    if let Some(t) = &visible {
        op.require(Permission::Enroll, &t.tenant_id)?;
    }
    if visible.is_none()
        || !state
            .store
            .revoke_enroll_token(id, state.clock.now_ms())
            .await?
    {
        return Err(AppError::not_found(format!("no enrollment token {id}")));
    }
    tracing::info!(token_id = %id, "enrollment token revoked");
    Ok(())
}

/// A device enrolls with a token: it gets an id and its own secret (in the answer, once).
pub async fn enroll(state: &App, req: &EnrollRequest) -> AppResult<EnrollResponse> {
    crate::agent::check_protocol(req.protocol_version)?;
    let hostname = req.hostname.trim();
    if hostname.is_empty() || hostname.len() > 253 {
        return Err(AppError::invalid(
            "hostname",
            "hostname must be 1 to 253 characters",
        ));
    }
    let now = state.clock.now_ms();
    let secret = new_token(DEVICE_SECRET_PREFIX);
    let device = Device {
        id: new_id("dev_"),
        tenant_id: String::new(),
        hostname: hostname.to_owned(),
        machine_id: req.machine_id.chars().take(64).collect(),
        labels: Default::default(),
        secret_hash: hash_token(&secret),
        enroll_token_id: None,
        enrolled_at: now,
        last_seen: Some(now),
        agent_version: req.agent_version.chars().take(64).collect(),
        checkin_interval_secs: state.config.checkin_interval_secs as i64,
        inventory_hash: None,
        inventory_at: None,
        summary: DeviceInventorySummary::default(),
    };
    let device = match state
        .store
        .enroll_device(&hash_token(req.token.trim()), now, device)
        .await?
    {
        Ok(d) => d,
        Err(refusal) => {
            let message = match refusal {
                EnrollRefusal::UnknownToken => "unknown enrollment token",
                EnrollRefusal::Expired => "this enrollment token has expired; create a new one",
                EnrollRefusal::Revoked => "this enrollment token has been revoked",
                EnrollRefusal::Exhausted => {
                    "this enrollment token has been used as many times as it allows"
                }
            };
            tracing::warn!(hostname, ?refusal, "enrollment refused");
            return Err(AppError::unauthenticated(Credential::EnrollToken, message));
        }
    };
    let tenant = crate::scope::tenant_name(state, &device.tenant_id).await?;
    tracing::info!(device = %device.id, hostname = %device.hostname, tenant = %tenant, "device enrolled");
    Ok(EnrollResponse {
        device_id: device.id,
        device_secret: secret,
        tenant,
        checkin_interval_secs: state.config.checkin_interval_secs,
        server_cert_sha256: None,
        work_signing_key: None,
    })
}
