//! The dashboard's `/policies` page: every policy the person may see, with its schedule,
//! approval, next cycle, the deployments it created and why it cannot run (if so), and the
//! rejected updates. Read through the same use cases and checks as the API, once per tenant
//! scope.

use super::admin::actors;
use super::session::WebUser;
use super::{render, Nav, WebError, WebState};
use axum::extract::State;
use axum::response::Response;
use patchwarden_app::authz::Permission;
use patchwarden_app::policies;
use patchwarden_wire::api::{PolicyView, RejectedUpdateView};

pub struct PolicyRow {
    pub name: String,
    pub tenant: String,
    pub enabled: bool,
    pub what: String,
    pub schedule: String,
    pub approval: String,
    pub expedite: String,
    pub next_cycle: String,
    pub next_window_start: String,
    pub runs: Vec<(String, String)>,
    /// Why the scheduler cannot run it (empty when it can), and since when.
    pub problem: String,
    pub problem_since: String,
}

#[derive(askama::Template)]
#[template(path = "policies.html")]
struct PoliciesPage {
    nav: Nav,
    rows: Vec<PolicyRow>,
    rejected: Vec<RejectedUpdateView>,
}

fn row(p: PolicyView) -> PolicyRow {
    let s = p.spec;
    let what = super::pages::selection_text(&s.what);
    let expedite = match &s.expedite {
        None => "-".to_owned(),
        Some(e) => [
            e.min_severity.as_ref().map(|m| format!("{m} or worse")),
            e.kev.then(|| "known exploited".to_owned()),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(", "),
    };
    PolicyRow {
        name: s.name,
        tenant: p.tenant,
        enabled: s.enabled,
        what,
        schedule: s.schedule.unwrap_or_else(|| "-".into()),
        approval: s.approval.unwrap_or_else(|| "automatic".into()),
        expedite,
        next_cycle: p.next_cycle.unwrap_or_else(|| "-".into()),
        next_window_start: p.next_window_start.unwrap_or_default(),
        problem: p
            .problem
            .as_ref()
            .map(|x| x.message.clone())
            .unwrap_or_default(),
        problem_since: p
            .problem
            .as_ref()
            .map(|x| super::pages::short_time(&x.at))
            .unwrap_or_default(),
        runs: p
            .runs
            .into_iter()
            .take(5)
            .map(|r| (r.cycle, r.deployment))
            .collect(),
    }
}

pub async fn policies(State(state): State<WebState>, user: WebUser) -> Result<Response, WebError> {
    let mut rows = Vec::new();
    let mut rejected = Vec::new();
    for op in actors(&user, Permission::View) {
        let list = policies::list(&state.app, &op, None).await?;
        rows.extend(list.into_iter().map(row));
        rejected.extend(policies::list_rejected(&state.app, &op, None).await?);
    }
    rows.sort_by(|a, b| (&a.tenant, &a.name).cmp(&(&b.tenant, &b.name)));
    rows.dedup_by(|a, b| a.tenant == b.tenant && a.name == b.name);
    Ok(render(&PoliciesPage {
        nav: Nav::new(&user, "policies"),
        rows,
        rejected,
    }))
}
