//! The dashboard's pages. Each one reads only tenants the person may see; a device or
//! deployment of another tenant answers 404, an action the role does not allow 403.

use super::chart::{bar_chart, BarChart};
use super::session::WebUser;
use super::{page_error, render, Nav, WebError, WebState};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use patchwarden_app::authz::Permission;
use patchwarden_app::deployments::actions::{self, Action};
use patchwarden_app::devices::device_status;
use patchwarden_app::records::{
    DevicePageQuery, DeviceSort, DeviceStatus, FailureClass, PatchFilter, TenantScope,
};
use patchwarden_app::{dashboard, deployments, devices, history, rfc3339, triage, AppError};
use patchwarden_wire::api::{
    DeploymentSummary, DeploymentView, DeviceDetail, FailureRow, FailuresQuery, Selection,
};
use serde::Deserialize;
use std::collections::BTreeMap;

pub const PAGE_SIZE: i64 = 50;

/// Percent-encoding for query strings.
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `2026-11-25T10:00:05.000Z` → `2026-11-25 10:00 UTC`.
pub fn short_time(s: &str) -> String {
    match s.get(..16) {
        Some(p) if s.len() > 16 => format!("{} UTC", p.replace('T', " ")),
        _ => s.to_owned(),
    }
}

fn bytes(n: u64) -> String {
    const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
    let n = n as f64;
    if n >= GIB {
        format!("{:.1} GiB", n / GIB)
    } else {
        format!("{:.0} MiB", n / (1024.0 * 1024.0))
    }
}

pub(super) fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// The tenant ids in view: the person's scope, narrowed to one tenant by name when asked
/// (a tenant they cannot see is refused with 404, as if it did not exist).
pub(super) fn scope_for(
    user: &WebUser,
    tenant_name: Option<&str>,
) -> Result<TenantScope, WebError> {
    match tenant_name {
        None => Ok(user.access.scope()),
        Some(name) => user
            .tenant_names
            .iter()
            .find(|(id, n)| n.as_str() == name && user.access.can_see(id))
            .map(|(id, _)| Some(vec![id.clone()]))
            .ok_or_else(|| page_error(StatusCode::NOT_FOUND, &format!("No tenant {name:?}."))),
    }
}

/// (id, name) of the tenants this person may see.
pub(super) fn visible_tenants(user: &WebUser) -> Vec<(String, String)> {
    user.tenant_names
        .iter()
        .filter(|(id, _)| user.access.can_see(id))
        .map(|(id, n)| (id.clone(), n.clone()))
        .collect()
}

pub(super) fn selection_text(s: &Selection) -> String {
    match s {
        Selection::Security => "security updates".to_owned(),
        Selection::AllUpdates => "all updates".to_owned(),
        Selection::Packages { packages } => packages
            .iter()
            .map(|p| match &p.version {
                Some(v) => format!("{}={v}", p.name),
                None => p.name.clone(),
            })
            .collect::<Vec<_>>()
            .join(", "),
        Selection::Vulnerabilities {
            min_severity,
            kev,
            cves,
        } => {
            let mut parts = Vec::new();
            if let Some(m) = min_severity {
                parts.push(format!("{m} or worse"));
            }
            if *kev {
                parts.push("known exploited".to_owned());
            }
            if !cves.is_empty() {
                parts.push(cves.join(", "));
            }
            format!("fixes for vulnerabilities: {}", parts.join("; "))
        }
    }
}

/// What each class means, for people (PRODUCT.md's taxonomy).
pub fn class_meaning(c: FailureClass) -> &'static str {
    use FailureClass::*;
    match c {
        DeviceOffline => "did not check in during the window; not a patch failure",
        WindowMissed => "the maintenance window closed before the work could start or finish",
        LockHeld => "package manager locked by another process",
        InterruptedState => "package database left half-done by an earlier run",
        RepoUnreachable => "connection refused, DNS failure, timeout, no route",
        RepoInvalid => "404, hash mismatch, unsigned, expired or unverifiable signature",
        PackageNotFound => "package or version not in the configured repositories",
        DependencyConflict => "unmet dependencies, conflicts, broken held packages, file clashes",
        HeldBack => "pinned or held by local policy",
        DiskFull => "no space in the download cache or the target filesystem",
        InstallScriptFailed => "a maintainer script or scriptlet failed",
        Timeout => "the operation exceeded its time budget",
        VerificationFailed => "reported success, but the installed version is not the intended one",
        RebootPending => "installed, not effective until reboot",
        RebootLoop => "still requires a reboot after one; not rebooted again (loop guard)",
        AgentError => "the agent itself failed",
        Unknown => "not recognised: evidence kept, so that a rule can be added",
    }
}

// ---------------------------------------------------------------------------------------
// Overview

#[derive(Debug, Deserialize, Default)]
pub struct OverviewQuery {
    pub tenant: Option<String>,
}

pub struct TenantRow {
    pub name: String,
    pub devices: i64,
    pub fully_patched: i64,
    pub coverage: String,
    pub security_pending: i64,
    pub reboot_pending: i64,
    pub stale: i64,
    pub offline: i64,
    pub never_seen: i64,
    pub failures: i64,
}

fn percent(part: i64, whole: i64) -> String {
    if whole == 0 {
        "–".to_owned()
    } else {
        format!("{} %", part * 100 / whole)
    }
}

#[derive(askama::Template)]
#[template(path = "overview.html")]
struct OverviewPage {
    nav: Nav,
    tenants: Vec<(String, String)>,
    selected: String,
    rows: Vec<TenantRow>,
    total: TenantRow,
    classes: Vec<(String, i64)>,
    chart: BarChart,
    x: super::insight::OverviewExtras,
}

pub async fn overview(
    State(state): State<WebState>,
    user: WebUser,
    Query(q): Query<OverviewQuery>,
) -> Result<Response, WebError> {
    let selected = non_empty(&q.tenant).map(str::to_owned);
    let scope = scope_for(&user, selected.as_deref())?;
    let op = user.actor(None);
    let stats = dashboard::fleet_stats(&state.app, &op, &scope).await?;
    let failures = dashboard::failure_counts(&state.app, &op, &scope).await?;
    let mut by_class: BTreeMap<String, i64> = BTreeMap::new();
    let mut by_tenant: BTreeMap<&str, i64> = BTreeMap::new();
    for f in &failures {
        *by_class.entry(f.class.as_str().to_owned()).or_default() += f.count;
        *by_tenant.entry(f.tenant_id.as_str()).or_default() += f.count;
    }
    let mut total = TenantRow {
        name: "All tenants".into(),
        devices: 0,
        fully_patched: 0,
        coverage: String::new(),
        security_pending: 0,
        reboot_pending: 0,
        stale: 0,
        offline: 0,
        never_seen: 0,
        failures: by_class.values().sum(),
    };
    let mut rows = Vec::new();
    for s in &stats {
        total.devices += s.devices;
        total.fully_patched += s.fully_patched;
        total.security_pending += s.security_pending;
        total.reboot_pending += s.reboot_pending;
        total.stale += s.stale;
        total.offline += s.offline;
        total.never_seen += s.never_seen;
        rows.push(TenantRow {
            name: user.tenant_name(&s.tenant_id),
            devices: s.devices,
            fully_patched: s.fully_patched,
            coverage: percent(s.fully_patched, s.devices),
            security_pending: s.security_pending,
            reboot_pending: s.reboot_pending,
            stale: s.stale,
            offline: s.offline,
            never_seen: s.never_seen,
            failures: by_tenant.get(s.tenant_id.as_str()).copied().unwrap_or(0),
        });
    }
    total.coverage = percent(total.fully_patched, total.devices);
    let mut classes: Vec<(String, i64)> = by_class.into_iter().collect();
    classes.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let chart = bar_chart(&classes);
    let x = super::insight::overview_extras(&state, &user, &scope).await?;
    Ok(render(&OverviewPage {
        nav: Nav::new(&user, "overview"),
        tenants: visible_tenants(&user),
        selected: selected.unwrap_or_default(),
        rows,
        total,
        classes,
        chart,
        x,
    }))
}

// ---------------------------------------------------------------------------------------
// Devices

#[derive(Debug, Deserialize, Default)]
pub struct DevicesQuery {
    pub tenant: Option<String>,
    pub status: Option<String>,
    pub patch: Option<String>,
    pub q: Option<String>,
    pub sort: Option<String>,
    pub dir: Option<String>,
    pub page: Option<String>,
}

pub struct DeviceRow {
    pub id: String,
    pub hostname: String,
    pub tenant: String,
    pub status: String,
    pub os: String,
    pub last_seen: String,
    pub pending: i64,
    pub security: i64,
    pub reboot: bool,
}

#[derive(askama::Template)]
#[template(path = "devices.html")]
struct DevicesPage {
    nav: Nav,
    tenants: Vec<(String, String)>,
    tenant: String,
    status: String,
    patch: String,
    q: String,
    sort: String,
    dir: String,
    rows: Vec<DeviceRow>,
    total: i64,
    first: i64,
    last: i64,
    page: i64,
    pages: i64,
    prev_url: Option<String>,
    next_url: Option<String>,
}

pub async fn devices(
    State(state): State<WebState>,
    user: WebUser,
    Query(q): Query<DevicesQuery>,
) -> Result<Response, WebError> {
    let bad = |what: &str| page_error(StatusCode::BAD_REQUEST, what);
    let tenant = non_empty(&q.tenant).map(str::to_owned);
    let scope = scope_for(&user, tenant.as_deref())?;
    let status = non_empty(&q.status).map(str::to_owned);
    let status_filter = match &status {
        None => None,
        Some(s) => Some(
            s.parse::<DeviceStatus>()
                .map_err(|_| bad("Unknown status filter: use online, stale, offline or new."))?,
        ),
    };
    let patch = match non_empty(&q.patch) {
        None => None,
        Some("security") => Some(PatchFilter::Security),
        Some("updates") => Some(PatchFilter::Updates),
        Some("patched") => Some(PatchFilter::Patched),
        Some("reboot") => Some(PatchFilter::Reboot),
        Some(_) => {
            return Err(bad(
                "Unknown patch filter: use security, updates, patched or reboot.",
            ))
        }
    };
    let sort_name = non_empty(&q.sort).unwrap_or("hostname");
    let sort = match sort_name {
        "hostname" => DeviceSort::Hostname,
        "last_seen" => DeviceSort::LastSeen,
        "pending" => DeviceSort::PendingUpdates,
        "security" => DeviceSort::SecurityUpdates,
        _ => {
            return Err(bad(
                "Unknown sort: use hostname, last_seen, pending or security.",
            ))
        }
    };
    let descending = non_empty(&q.dir) == Some("desc");
    let page: i64 = match non_empty(&q.page) {
        None => 1,
        Some(p) => p
            .parse::<i64>()
            .ok()
            .filter(|p| *p >= 1 && *p <= 1_000_000)
            .ok_or_else(|| bad("The page must be a positive number."))?,
    };
    let search = non_empty(&q.q).map(str::to_owned);
    let now = state.app.now_ms();
    let (devices, total) = dashboard::device_page(
        &state.app,
        &user.actor(None),
        &DevicePageQuery {
            scope,
            tenant_id: None,
            status: status_filter,
            patch,
            search: search.clone(),
            sort,
            descending,
            limit: PAGE_SIZE,
            offset: (page - 1) * PAGE_SIZE,
            now,
        },
    )
    .await?;
    let rule = dashboard::status_rule(&state.app);
    let rows = devices
        .into_iter()
        .map(|d| DeviceRow {
            status: device_status(&rule, &d, now).as_str().to_owned(),
            tenant: user.tenant_name(&d.tenant_id),
            last_seen: d
                .last_seen
                .map(|t| short_time(&rfc3339(t)))
                .unwrap_or_else(|| "never".into()),
            id: d.id,
            hostname: d.hostname,
            os: d.summary.os,
            pending: d.summary.pending_updates,
            security: d.summary.security_updates,
            reboot: d.summary.reboot_required,
        })
        .collect::<Vec<_>>();
    let pages = ((total + PAGE_SIZE - 1) / PAGE_SIZE).max(1);
    let link = |p: i64| {
        let mut params = vec![];
        for (k, v) in [
            ("tenant", tenant.as_deref()),
            ("status", status.as_deref()),
            ("patch", non_empty(&q.patch)),
            ("q", search.as_deref()),
            ("sort", non_empty(&q.sort)),
            ("dir", non_empty(&q.dir)),
        ] {
            if let Some(v) = v {
                params.push(format!("{k}={}", url_encode(v)));
            }
        }
        params.push(format!("page={p}"));
        format!("/devices?{}", params.join("&"))
    };
    let first = if total == 0 {
        0
    } else {
        (page - 1) * PAGE_SIZE + 1
    };
    Ok(render(&DevicesPage {
        nav: Nav::new(&user, "devices"),
        tenants: visible_tenants(&user),
        tenant: tenant.clone().unwrap_or_default(),
        status: status.clone().unwrap_or_default(),
        patch: non_empty(&q.patch).unwrap_or_default().to_owned(),
        q: search.clone().unwrap_or_default(),
        sort: sort_name.to_owned(),
        dir: if descending { "desc" } else { "asc" }.to_owned(),
        first,
        last: (first + rows.len() as i64 - 1).max(0),
        rows,
        total,
        page,
        pages,
        prev_url: (page > 1).then(|| link(page - 1)),
        next_url: (page < pages).then(|| link(page + 1)),
    }))
}

#[derive(askama::Template)]
#[template(path = "device.html")]
struct DevicePage {
    nav: Nav,
    d: DeviceDetail,
    root_free: String,
    cache_free: String,
    last_seen: String,
    packages: usize,
    v: super::insight::DeviceVulns,
}

pub async fn device(
    State(state): State<WebState>,
    user: WebUser,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    let device = visible_device(&state, &user, &id).await?;
    let v = super::insight::device_vulns(&state, &user, &device.id, &device.tenant_id).await?;
    let d = devices::get(&state.app, &user.actor(Some(&device.tenant_id)), &id).await?;
    let (root_free, cache_free, packages) = match &d.inventory {
        Some(inv) => (
            bytes(inv.disk.root_free_bytes),
            bytes(inv.disk.cache_free_bytes),
            inv.packages.len(),
        ),
        None => (String::new(), String::new(), 0),
    };
    Ok(render(&DevicePage {
        nav: Nav::new(&user, "devices"),
        last_seen: d
            .summary
            .last_seen
            .as_deref()
            .map_or("never".into(), short_time),
        d,
        root_free,
        cache_free,
        packages,
        v,
    }))
}

// ---------------------------------------------------------------------------------------
// Deployments

pub struct DeploymentRow {
    pub s: DeploymentSummary,
    pub what: String,
    pub created: String,
}

#[derive(askama::Template)]
#[template(path = "deployments.html")]
struct DeploymentsPage {
    nav: Nav,
    rows: Vec<DeploymentRow>,
    /// Tenants where this person may start a deployment (the form shows when not empty).
    deploy_tenants: Vec<(String, String)>,
}

pub async fn deployments(
    State(state): State<WebState>,
    user: WebUser,
) -> Result<Response, WebError> {
    let mut list = Vec::new();
    for op in user.scoped_actors() {
        list.extend(deployments::list(&state.app, &op).await?);
    }
    list.sort_by(|a, b| b.created_at.cmp(&a.created_at));
    let rows = list
        .into_iter()
        .map(|s| DeploymentRow {
            what: selection_text(&s.selection),
            created: short_time(&s.created_at),
            s,
        })
        .collect();
    Ok(render(&DeploymentsPage {
        nav: Nav::new(&user, "deployments"),
        rows,
        deploy_tenants: super::deploy_form::deploy_tenants(&user),
    }))
}

#[derive(askama::Template)]
#[template(path = "deployment_live.html")]
struct LiveFragment {
    v: DeploymentView,
    final_state: bool,
}

#[derive(askama::Template)]
#[template(path = "deployment.html")]
struct DeploymentPage {
    nav: Nav,
    id: String,
    tenant: String,
    what: String,
    created: String,
    live: String,
    final_state: bool,
    can_approve: bool,
    can_reject: bool,
    can_halt: bool,
    can_resume: bool,
    can_cancel: bool,
}

/// An object this person may not see is a 404 page saying so; other errors are theirs.
fn not_found(e: AppError, message: &str) -> WebError {
    match e {
        AppError::NotFound(_) => page_error(StatusCode::NOT_FOUND, message),
        other => other.into(),
    }
}

/// A device this person may see (else 404, as if it did not exist).
pub(super) async fn visible_device(
    state: &WebState,
    user: &WebUser,
    id: &str,
) -> Result<patchwarden_app::records::Device, WebError> {
    patchwarden_app::scope::visible_device(&state.app, &user.actor(None), id)
        .await
        .map_err(|e| not_found(e, &format!("No device {id}.")))
}

/// The deployment and its tenant id, if this person may see it (else 404, as if it did not
/// exist).
async fn visible_deployment(
    state: &WebState,
    user: &WebUser,
    id: &str,
) -> Result<(DeploymentView, String), WebError> {
    let d = patchwarden_app::scope::visible_deployment(&state.app, &user.actor(None), id)
        .await
        .map_err(|e| not_found(e, &format!("No deployment {id}.")))?;
    let v = deployments::get(&state.app, &user.actor(Some(&d.tenant_id)), id).await?;
    Ok((v, d.tenant_id))
}

fn live_html(v: DeploymentView) -> Result<String, WebError> {
    let final_state = v.status.is_final();
    askama::Template::render(&LiveFragment { v, final_state }).map_err(|e| {
        tracing::error!(error = %e, "template rendering failed");
        page_error(StatusCode::INTERNAL_SERVER_ERROR, "Rendering failed.")
    })
}

pub async fn deployment(
    State(state): State<WebState>,
    user: WebUser,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    let (v, tenant_id) = visible_deployment(&state, &user, &id).await?;
    let may = |a: Action| user.access.can(&tenant_id, a.permission()) && a.allowed_from(v.status);
    Ok(render(&DeploymentPage {
        nav: Nav::new(&user, "deployments"),
        id: v.id.clone(),
        tenant: v.tenant.clone(),
        what: selection_text(&v.selection),
        created: short_time(&v.created_at),
        final_state: v.status.is_final(),
        can_approve: may(Action::Approve),
        can_reject: may(Action::Reject),
        can_halt: may(Action::Halt),
        can_resume: may(Action::Resume),
        can_cancel: may(Action::Cancel),
        live: live_html(v)?,
    }))
}

/// The live part of a deployment page (status, rings, per-device rows), fetched by the
/// page's script every 2 s.
pub async fn deployment_live(
    State(state): State<WebState>,
    user: WebUser,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    let (v, _) = visible_deployment(&state, &user, &id).await?;
    Ok(axum::response::Html(live_html(v)?).into_response())
}

#[derive(Debug, Deserialize)]
pub struct ActionForm {
    #[serde(default)]
    pub csrf: String,
    #[serde(default)]
    pub reason: Option<String>,
}

pub async fn deployment_action(
    State(state): State<WebState>,
    user: WebUser,
    Path((id, action)): Path<(String, String)>,
    Form(form): Form<ActionForm>,
) -> Result<Response, WebError> {
    let Some(action) = Action::parse(&action) else {
        return Err(page_error(StatusCode::NOT_FOUND, "No such action."));
    };
    user.check_csrf(&form.csrf)?;
    let d = patchwarden_app::scope::visible_deployment(&state.app, &user.actor(None), &id)
        .await
        .map_err(|e| not_found(e, &format!("No deployment {id}.")))?;
    user.audit.tenant(Some(&d.tenant_id));
    if !user.access.can(&d.tenant_id, action.permission()) {
        user.audit
            .detail(&format!("role does not allow {action:?}"));
        tracing::warn!(user = %user.user.login, deployment = %id, ?action, "action refused: role");
        return Err(page_error(
            StatusCode::FORBIDDEN,
            &format!(
                "Your role in tenant {:?} does not allow this action.",
                user.tenant_name(&d.tenant_id)
            ),
        ));
    }
    let op = user.actor(Some(&d.tenant_id));
    actions::act(&state.app, &op, &id, action, form.reason).await?;
    Ok(Redirect::to(&format!("/deployments/{}", url_encode(&id))).into_response())
}

// ---------------------------------------------------------------------------------------
// Failures

#[derive(Debug, Deserialize, Default)]
pub struct FailuresPageQuery {
    pub class: Option<String>,
    /// `true`: also resolved failures and accepted risks.
    pub all: Option<String>,
}

/// One failure of the queue, with what this person may do about it.
pub struct QueueRow {
    pub f: FailureRow,
    /// `3 d 4 h` since the first failure of the streak.
    pub age: String,
    pub deadline: String,
    /// Assign, resolve (operator, admin).
    pub can_remediate: bool,
    /// Retry: a one-device deployment (operator, admin).
    pub can_retry: bool,
    /// Accept the risk (approver, admin).
    pub can_accept: bool,
}

pub struct FailureGroupView {
    pub class: String,
    pub meaning: &'static str,
    pub rows: Vec<QueueRow>,
}

#[derive(askama::Template)]
#[template(path = "failures.html")]
struct FailuresPage {
    nav: Nav,
    class: String,
    all: bool,
    classes: Vec<&'static str>,
    total: usize,
    groups: Vec<FailureGroupView>,
    /// Tomorrow and a year from today (`YYYY-MM-DD`): the accepted-risk date input's bounds.
    min_until: String,
    max_until: String,
}

/// `3 d 4 h`, `5 h 12 min`, `40 min`.
pub fn human_age(secs: i64) -> String {
    let (d, h, m) = (secs / 86_400, (secs % 86_400) / 3600, (secs % 3600) / 60);
    if d > 0 {
        format!("{d} d {h} h")
    } else if h > 0 {
        format!("{h} h {m} min")
    } else {
        format!("{m} min")
    }
}

pub async fn failures(
    State(state): State<WebState>,
    user: WebUser,
    Query(q): Query<FailuresPageQuery>,
) -> Result<Response, WebError> {
    let class = non_empty(&q.class).map(str::to_owned);
    let all = matches!(non_empty(&q.all), Some("true" | "on" | "1"));
    let mut groups: BTreeMap<FailureClass, Vec<FailureRow>> = BTreeMap::new();
    for op in user.scoped_actors() {
        let query = FailuresQuery {
            class: class.clone(),
            device: None,
            all,
        };
        let view = history::failures(&state.app, &op, &query).await?;
        for g in view.groups {
            groups.entry(g.class).or_default().extend(g.failures);
        }
    }
    // Each row's tenant decides which actions this person sees.
    let mut tenant_of: BTreeMap<String, String> = BTreeMap::new();
    for f in groups.values().flatten() {
        if !tenant_of.contains_key(&f.device) {
            if let Ok(d) =
                patchwarden_app::scope::visible_device(&state.app, &user.actor(None), &f.device)
                    .await
            {
                tenant_of.insert(d.id, d.tenant_id);
            }
        }
    }
    let row = |f: FailureRow| {
        let tenant = tenant_of.get(&f.device).map(String::as_str).unwrap_or("");
        QueueRow {
            age: human_age(f.age_secs),
            deadline: f.deadline.as_deref().map(short_time).unwrap_or_default(),
            can_remediate: user.access.can(tenant, Permission::Remediate),
            can_retry: user.access.can(tenant, Permission::Deploy),
            can_accept: user.access.can(tenant, Permission::Approve),
            f,
        }
    };
    let mut groups: Vec<FailureGroupView> = groups
        .into_iter()
        .map(|(c, rows)| FailureGroupView {
            class: c.as_str().to_owned(),
            meaning: class_meaning(c),
            rows: rows.into_iter().map(row).collect(),
        })
        .collect();
    groups.sort_by(|a, b| b.rows.len().cmp(&a.rows.len()).then(a.class.cmp(&b.class)));
    let day = |ms: i64| rfc3339(ms).get(..10).unwrap_or_default().to_owned();
    let now = state.app.now_ms();
    Ok(render(&FailuresPage {
        nav: Nav::new(&user, "failures"),
        class: class.unwrap_or_default(),
        all,
        classes: FailureClass::ALL.iter().map(|c| c.as_str()).collect(),
        total: groups.iter().map(|g| g.rows.len()).sum(),
        groups,
        min_until: day(now + 24 * 3600 * 1000),
        max_until: day(now + 365 * 24 * 3600 * 1000),
    }))
}

#[derive(Debug, Deserialize)]
pub struct FailureActionForm {
    #[serde(default)]
    pub csrf: String,
    #[serde(default)]
    pub device: String,
    #[serde(default)]
    pub package: String,
    #[serde(default)]
    pub assignee: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub until: Option<String>,
}

/// `POST /failures/{assign,resolve,accept-risk,retry}`: the queue's action forms. The role is
/// checked here (403 page) and again by the API handler it calls on the person's behalf.
pub async fn failure_action(
    State(state): State<WebState>,
    user: WebUser,
    Path(action): Path<String>,
    Form(form): Form<FailureActionForm>,
) -> Result<Response, WebError> {
    let permission = match action.as_str() {
        "assign" | "resolve" => Permission::Remediate,
        "retry" => Permission::Deploy,
        "accept-risk" => Permission::Approve,
        _ => return Err(page_error(StatusCode::NOT_FOUND, "No such action.")),
    };
    user.check_csrf(&form.csrf)?;
    let d = visible_device(&state, &user, form.device.trim()).await?;
    user.audit.tenant(Some(&d.tenant_id));
    if !user.access.can(&d.tenant_id, permission) {
        user.audit
            .detail(&format!("role does not allow failure {action}"));
        tracing::warn!(user = %user.user.login, device = %d.id, %action, "failure action refused: role");
        return Err(page_error(
            StatusCode::FORBIDDEN,
            &format!(
                "Your role in tenant {:?} does not allow this action.",
                user.tenant_name(&d.tenant_id)
            ),
        ));
    }
    let op = user.actor(Some(&d.tenant_id));
    let req = patchwarden_wire::api::FailureActionRequest {
        device: d.id.clone(),
        package: form.package,
        assignee: form.assignee,
        reason: form.reason,
        until: form.until,
    };
    let app = &state.app;
    match action.as_str() {
        "assign" => {
            triage::assign(app, &op, &req).await?;
        }
        "resolve" => {
            triage::resolve(app, &op, &req).await?;
        }
        "accept-risk" => {
            triage::accept_risk(app, &op, &req).await?;
        }
        _ => {
            let r = triage::retry(app, &op, &req).await?;
            if let Some(dep) = r.deployment {
                return Ok(
                    Redirect::to(&format!("/deployments/{}", url_encode(&dep))).into_response()
                );
            }
        }
    }
    Ok(Redirect::to("/failures").into_response())
}
