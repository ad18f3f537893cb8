//! The audit log's HTTP side: a middleware that records every operator action of the API
//! and the dashboard (allowed, refused or failed). What it records, and reading the log
//! back, are the application's (`patchwarden_app::audit`).
//!
//! A request gets an [`AuditSlot`] in its extensions; authentication writes who is acting,
//! `Actor::require` which tenant and whether it was allowed, use cases may add the object
//! and a detail. After the response the middleware appends one entry: for every request that
//! changes something, and for every refusal (401/403), reads included. Reads that succeed are
//! not recorded.

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use patchwarden_app::audit::AuditEntry;
use patchwarden_app::audit::AuditSlot;
use patchwarden_app::records::AuditOutcome;
use patchwarden_app::App;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

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
    pub app: App,
    pub trusted: Arc<TrustedProxies>,
    /// `api` or `web`.
    pub via: &'static str,
}

impl AuditLayer {
    pub fn new(app: App, via: &'static str) -> Self {
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
        AuditOutcome::Denied
    } else if status.is_success() || status.is_redirection() {
        AuditOutcome::Ok
    } else {
        AuditOutcome::Failed
    };
    let mut detail = note.detail.clone();
    if outcome != AuditOutcome::Ok {
        detail = body_message.or(detail);
    }
    if outcome == AuditOutcome::Ok && mutating && !note.checked && layer.via == "api" {
        tracing::warn!(%method, path = %template, "operator action without a permission check");
        detail = Some(format!(
            "{} (no permission check ran)",
            detail.unwrap_or_default()
        ));
    }
    let entry = AuditEntry {
        id: 0,
        at: layer.app.now_ms(),
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
        outcome,
        status: i64::from(status.as_u16()),
        address,
    };
    if let Err(e) = patchwarden_app::audit::append(&layer.app, &entry).await {
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
    fn path_objects() {
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
    }
}
