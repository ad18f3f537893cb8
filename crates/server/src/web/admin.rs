//! The dashboard's people pages: `/people` (users and API tokens, for admins) and `/audit`
//! (the audit log, for admins and approvers, with a CSV download). Both read through the
//! same handlers and checks as the API, once per tenant the person holds the right role in.

use super::session::WebUser;
use super::{page_error, render, Nav, WebError, WebState};
use axum::extract::Path;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use patchwarden_app::authz::Permission;
use patchwarden_app::{audit, people, Actor, AppError, AppResult};
use patchwarden_wire::access::{AuditEntryView, AuditQuery, TokenView, UserView};
use serde::Deserialize;
use std::collections::BTreeMap;

/// The actors standing for this person, one per tenant scope where `p` is allowed:
/// provider-wide (one, all tenants) or per tenant.
pub(super) fn actors(user: &WebUser, p: Permission) -> Vec<Actor> {
    if user.access.can_provider(p) {
        vec![user.actor(None)]
    } else {
        user.tenant_names
            .keys()
            .filter(|t| user.access.can(t, p))
            .map(|t| user.actor(Some(t)))
            .collect()
    }
}

fn refuse(what: &str) -> WebError {
    page_error(
        StatusCode::FORBIDDEN,
        &format!("Your roles do not allow {what}."),
    )
}

#[derive(askama::Template)]
#[template(path = "people.html")]
struct PeoplePage {
    nav: Nav,
    users: Vec<UserView>,
    tokens: Vec<TokenView>,
}

pub async fn people(State(state): State<WebState>, user: WebUser) -> Result<Response, WebError> {
    let ops = actors(&user, Permission::Administer);
    if ops.is_empty() {
        return Err(refuse("managing users and API tokens (admins only)"));
    }
    let mut users: BTreeMap<String, UserView> = BTreeMap::new();
    let mut tokens = Vec::new();
    for op in ops {
        let us = people::list_users(&state.app, &op).await?;
        for u in us {
            users
                .entry(u.login.clone())
                .and_modify(|x| x.roles.extend(u.roles.clone()))
                .or_insert(u);
        }
        let ts = people::list_tokens(&state.app, &op).await?;
        tokens.extend(ts);
    }
    Ok(render(&PeoplePage {
        nav: Nav::new(&user, "people"),
        users: users.into_values().collect(),
        tokens,
    }))
}

#[derive(Debug, Deserialize, Default)]
pub struct AuditPageQuery {
    /// Days back (default 7).
    pub days: Option<u32>,
    /// `csv` to download.
    pub format: Option<String>,
}

#[derive(askama::Template)]
#[template(path = "audit.html")]
struct AuditPage {
    nav: Nav,
    days: u32,
    rows: Vec<AuditEntryView>,
}

pub async fn audit(
    State(state): State<WebState>,
    user: WebUser,
    Query(q): Query<AuditPageQuery>,
) -> Result<Response, WebError> {
    let ops = actors(&user, Permission::ReadAudit);
    if ops.is_empty() {
        return Err(refuse("reading the audit log (admins and approvers)"));
    }
    let days = q.days.unwrap_or(7).clamp(1, 3650);
    let from = patchwarden_app::rfc3339(state.app.now_ms() - i64::from(days) * 86_400_000);
    let mut rows = Vec::new();
    for op in ops {
        let query = AuditQuery {
            tenant: None,
            from: Some(from.clone()),
            to: None,
            format: None,
            limit: Some(2000),
        };
        rows.extend(audit::read(&state.app, &op, &query).await?);
    }
    rows.sort_by_key(|r| std::cmp::Reverse(r.id));
    rows.dedup_by_key(|r| r.id);
    if q.format.as_deref() == Some("csv") {
        return Ok((
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"patchwarden-audit.csv\"",
                ),
            ],
            audit::to_csv(&rows),
        )
            .into_response());
    }
    rows.truncate(500);
    Ok(render(&AuditPage {
        nav: Nav::new(&user, "audit"),
        days,
        rows,
    }))
}

/// Runs `act` with each of the person's admin scopes until one finds the object (a tenant
/// admin of several tenants acts in the tenant the object belongs to).
async fn as_admin<F, Fut>(user: &WebUser, act: F) -> Result<Response, WebError>
where
    F: Fn(Actor) -> Fut,
    Fut: std::future::Future<Output = AppResult<()>>,
{
    let ops = actors(user, Permission::Administer);
    if ops.is_empty() {
        return Err(refuse("managing users and API tokens (admins only)"));
    }
    let mut last = None;
    for op in ops {
        match act(op).await {
            Ok(()) => return Ok(Redirect::to("/people").into_response()),
            Err(e @ AppError::NotFound(_)) => last = Some(e),
            Err(e) => return Err(e.into()),
        }
    }
    Err(last.map_or_else(|| refuse("this"), WebError::from))
}

/// `POST /people/users/{login}/disable`
pub async fn disable_user(
    State(state): State<WebState>,
    user: WebUser,
    Path(login): Path<String>,
    Form(form): Form<super::session::CsrfForm>,
) -> Result<Response, WebError> {
    user.check_csrf(&form.csrf)?;
    if login == user.user.login {
        return Err(page_error(
            StatusCode::CONFLICT,
            "You cannot disable yourself.",
        ));
    }
    as_admin(&user, |op| {
        let (app, login) = (state.app.clone(), login.clone());
        async move { people::disable_user(&app, &op, &login).await }
    })
    .await
}

/// `POST /people/tokens/{id}/revoke`
pub async fn revoke_token(
    State(state): State<WebState>,
    user: WebUser,
    Path(id): Path<String>,
    Form(form): Form<super::session::CsrfForm>,
) -> Result<Response, WebError> {
    user.check_csrf(&form.csrf)?;
    as_admin(&user, |op| {
        let (app, id) = (state.app.clone(), id.clone());
        async move { people::revoke_token(&app, &op, &id).await }
    })
    .await
}
