//! The audit log, server side: a middleware that records every operator action of the API
//! and the dashboard (allowed, refused or failed), and `GET /api/v1/audit` (JSON or CSV).
//!
//! A request gets an [`AuditSlot`] in its extensions; the `Operator` and `WebUser`
//! extractors write who is acting, `Operator::require` which tenant and whether it was
//! allowed, handlers may add the object and a detail. After the response the middleware
//! appends one entry: for every request that changes something, and for every refusal
//! (401/403), reads included. Reads that succeed are not recorded.

use crate::auth::Operator;
use crate::error::{ApiError, ApiResult};
use crate::web::authz::Permission;
use crate::{rfc3339, AppState};
use axum::extract::{ConnectInfo, MatchedPath, Query, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use patchwarden_store::{AuditEntry, AuditFilter};
use patchwarden_wire::access::AuditEntryView;
use serde::Deserialize;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

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

/// Which proxies may tell the client address in `X-Forwarded-For`:
/// `PATCHWARDEN_TRUSTED_PROXIES=127.0.0.1,10.0.0.2` (addresses, comma-separated). Without
/// it, the TCP peer is the address recorded.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(pub Vec<IpAddr>);

impl TrustedProxies {
    pub fn from_env() -> Self {
        let list = std::env::var("PATCHWARDEN_TRUSTED_PROXIES").unwrap_or_default();
        let mut out = Vec::new();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match item.parse() {
                Ok(ip) => out.push(ip),
                Err(_) => tracing::warn!(
                    value = %item,
                    "PATCHWARDEN_TRUSTED_PROXIES: not an IP address; ignored"
                ),
            }
        }
        TrustedProxies(out)
    }

    /// The client address: the peer, or, when the peer is a trusted proxy, the last address
    /// of `X-Forwarded-For` that is not itself a trusted proxy.
    pub fn client(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<String> {
        let peer = peer?;
        if !self.0.contains(&peer) {
            return Some(peer.to_string());
        }
        let forwarded: Vec<IpAddr> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|s| s.trim().parse().ok())
            .collect();
        let client = forwarded
            .iter()
            .rev()
            .find(|ip| !self.0.contains(ip))
            .or(forwarded.first())
            .copied()
            .unwrap_or(peer);
        Some(client.to_string())
    }
}

/// What the middleware needs.
#[derive(Clone)]
pub struct AuditLayer {
    pub app: AppState,
    pub trusted: Arc<TrustedProxies>,
    /// `api` or `web`.
    pub via: &'static str,
}

impl AuditLayer {
    pub fn new(app: AppState, via: &'static str) -> Self {
        AuditLayer {
            app,
            trusted: Arc::new(TrustedProxies::from_env()),
            via,
        }
    }
}

fn is_operator_api(path: &str) -> bool {
    path.starts_with("/api/v1/")
        && !path.starts_with("/api/v1/agent/")
        && path != "/api/v1/openapi.json"
}

/// The first path parameter's value: the template `/deployments/{id}/halt` against
/// `/deployments/dep_1/halt` gives `dep_1`.
fn path_object(template: &str, path: &str) -> Option<String> {
    template
        .split('/')
        .zip(path.split('/'))
        .find(|(t, _)| t.starts_with('{'))
        .map(|(_, v)| v.to_owned())
}

/// The middleware (see the module documentation).
pub async fn record(State(layer): State<AuditLayer>, mut req: Request, next: Next) -> Response {
    let slot = AuditSlot::default();
    req.extensions_mut().insert(slot.clone());
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let template = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| path.clone(), |m| m.as_str().to_owned());
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let address = layer.trusted.client(peer, req.headers());
    let resp = next.run(req).await;

    let status = resp.status();
    let mutating = !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS);
    let refused = matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN);
    let relevant = match layer.via {
        "api" => is_operator_api(&path),
        _ => !path.starts_with("/static/"),
    };
    if !relevant || !(mutating || refused) {
        return resp;
    }
    let note = slot.note();
    let (resp, body_id, body_message) = inspect(resp, status).await;
    let outcome = if refused {
        "denied"
    } else if status.is_success() || status.is_redirection() {
        "ok"
    } else {
        "failed"
    };
    let mut detail = note.detail.clone();
    if outcome != "ok" {
        detail = body_message.or(detail);
    }
    if outcome == "ok" && mutating && !note.checked && layer.via == "api" {
        tracing::warn!(%method, path = %template, "operator action without a permission check");
        detail = Some(format!(
            "{} (no permission check ran)",
            detail.unwrap_or_default()
        ));
    }
    let entry = AuditEntry {
        id: 0,
        at: layer.app.clock.now_ms(),
        tenant_id: note.tenant_id.clone(),
        actor_kind: note.actor_kind.unwrap_or("anonymous").to_owned(),
        actor: note.actor.clone().unwrap_or_default(),
        actor_id: note.actor_id.clone(),
        via: layer.via.to_owned(),
        action: format!("{method} {template}"),
        object: note
            .object
            .clone()
            .or_else(|| path_object(&template, &path))
            .or(body_id),
        detail,
        outcome: outcome.to_owned(),
        status: i64::from(status.as_u16()),
        address,
    };
    if let Err(e) = layer.app.store.append_audit(&entry).await {
        tracing::error!(error = %e, action = %entry.action, "could not append to the audit log");
    }
    resp
}

/// For a creation, the new object's `id`; for an error, its message (bodies are small).
async fn inspect(resp: Response, status: StatusCode) -> (Response, Option<String>, Option<String>) {
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !is_json || !(status == StatusCode::CREATED || status.is_client_error()) {
        return (resp, None, None);
    }
    let (parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 1 << 20).await else {
        return (
            (StatusCode::INTERNAL_SERVER_ERROR, "response too large").into_response(),
            None,
            None,
        );
    };
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    let id = v.get("id").and_then(|x| x.as_str()).map(str::to_owned);
    let message = v.get("message").and_then(|x| x.as_str()).map(str::to_owned);
    (
        Response::from_parts(parts, axum::body::Body::from(bytes)),
        id,
        message,
    )
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct AuditQuery {
    /// Only this tenant (name).
    pub tenant: Option<String>,
    /// From this time (RFC 3339, inclusive).
    pub from: Option<String>,
    /// Up to this time (RFC 3339, exclusive).
    pub to: Option<String>,
    /// `json` (default) or `csv`.
    pub format: Option<String>,
    /// At most this many entries, newest first (default 10000).
    pub limit: Option<u32>,
}

pub fn parse_time(what: &str, s: &str) -> ApiResult<i64> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| {
            ApiError::bad_request(format!(
                "{what} must be an RFC 3339 time like 2026-11-25T10:00:00Z, got {s:?}: {e}"
            ))
        })?;
    Ok((t.unix_timestamp_nanos() / 1_000_000) as i64)
}

/// The entries this caller may read, with tenant names, newest first.
pub async fn read(
    state: &AppState,
    op: &Operator,
    q: &AuditQuery,
) -> ApiResult<Vec<AuditEntryView>> {
    let tenants = state.store.list_tenants().await?;
    let scope: Option<Vec<String>> = match (&q.tenant, op.tenant_scope()) {
        (Some(name), _) => {
            let t = tenants
                .iter()
                .find(|t| &t.name == name && op.can_access(&t.id))
                .ok_or_else(|| ApiError::not_found(format!("no tenant {name:?}")))?;
            op.require(Permission::ReadAudit, &t.id)?;
            Some(vec![t.id.clone()])
        }
        (None, Some(own)) => {
            op.require(Permission::ReadAudit, own)?;
            Some(vec![own.to_owned()])
        }
        (None, None) => {
            op.require_scoped(Permission::ReadAudit)?;
            None
        }
    };
    let filter = AuditFilter {
        tenants: scope,
        from: q
            .from
            .as_deref()
            .map(|s| parse_time("from", s))
            .transpose()?,
        to: q.to.as_deref().map(|s| parse_time("to", s)).transpose()?,
        limit: Some(i64::from(q.limit.unwrap_or(10_000).min(100_000))),
    };
    let names: HashMap<String, String> = tenants.into_iter().map(|t| (t.id, t.name)).collect();
    Ok(state
        .store
        .list_audit(&filter)
        .await?
        .into_iter()
        .map(|e| AuditEntryView {
            id: e.id,
            at: rfc3339(e.at),
            tenant: e
                .tenant_id
                .as_ref()
                .and_then(|t| names.get(t).cloned())
                .unwrap_or_default(),
            actor_kind: e.actor_kind,
            actor: e.actor,
            via: e.via,
            action: e.action,
            object: e.object,
            detail: e.detail,
            outcome: e.outcome,
            status: u16::try_from(e.status).unwrap_or(0),
            address: e.address,
        })
        .collect())
}

/// A CSV field: quoted when it holds a separator, quote or line break; a leading `=`, `+`,
/// `-` or `@` is prefixed with `'` so spreadsheets do not run it as a formula.
fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

pub fn to_csv(rows: &[AuditEntryView]) -> String {
    let mut out = String::from(
        "id,at,tenant,actor_kind,actor,via,action,object,detail,outcome,status,address\n",
    );
    for r in rows {
        let fields = [
            r.id.to_string(),
            r.at.clone(),
            r.tenant.clone(),
            r.actor_kind.clone(),
            r.actor.clone(),
            r.via.clone(),
            r.action.clone(),
            r.object.clone().unwrap_or_default(),
            r.detail.clone().unwrap_or_default(),
            r.outcome.clone(),
            r.status.to_string(),
            r.address.clone().unwrap_or_default(),
        ];
        let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        out.push_str(&line.join(","));
        out.push('\n');
    }
    out
}

#[utoipa::path(get, path = "/api/v1/audit", params(AuditQuery),
    responses((status = 200, body = [AuditEntryView], description = "newest first; text/csv with format=csv"),
        (status = 403, body = patchwarden_wire::ErrorBody)),
    security(("operator" = [])), tag = "audit")]
pub async fn list_audit(
    State(state): State<AppState>,
    op: Operator,
    Query(q): Query<AuditQuery>,
) -> ApiResult<Response> {
    let format = q.format.as_deref().unwrap_or("json");
    if !matches!(format, "json" | "csv") {
        return Err(ApiError::bad_request(format!(
            "format must be json or csv, got {format:?}"
        )));
    }
    let rows = read(&state, &op, &q).await?;
    Ok(if format == "csv" {
        (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"patchwarden-audit.csv\"",
                ),
            ],
            to_csv(&rows),
        )
            .into_response()
    } else {
        Json(rows).into_response()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_address_only_from_a_trusted_proxy() {
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            "203.0.113.9, 10.0.0.2".parse().expect("hv"),
        );
        let none = TrustedProxies::default();
        let peer: IpAddr = "10.0.0.2".parse().expect("ip");
        assert_eq!(none.client(Some(peer), &h).as_deref(), Some("10.0.0.2"));
        let trusted = TrustedProxies(vec![peer]);
        assert_eq!(
            trusted.client(Some(peer), &h).as_deref(),
            Some("203.0.113.9")
        );
        let other: IpAddr = "192.0.2.1".parse().expect("ip");
        assert_eq!(
            trusted.client(Some(other), &h).as_deref(),
            Some("192.0.2.1")
        );
        assert_eq!(
            trusted.client(Some(peer), &HeaderMap::new()).as_deref(),
            Some("10.0.0.2")
        );
    }

    #[test]
    fn path_objects_and_csv_quoting() {
        assert_eq!(
            path_object(
                "/api/v1/deployments/{id}/halt",
                "/api/v1/deployments/dep_1/halt"
            )
            .as_deref(),
            Some("dep_1")
        );
        assert_eq!(
            path_object("/api/v1/deployments", "/api/v1/deployments"),
            None
        );
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=cmd()"), "'=cmd()");
    }
}
