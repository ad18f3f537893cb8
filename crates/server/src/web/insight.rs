//! The dashboard's history, vulnerability and report pages: the overview's charts over the
//! last 90 days and exposure figures, `/vulns`, `/vulns/{cve}`, the device page's
//! vulnerabilities and compliance, and the compliance report (`/reports`, its downloads).

use super::chart::{line_chart, LineChart};
use super::pages::{non_empty, scope_for, url_encode, visible_tenants};
use super::session::WebUser;
use super::{page_error, render, Nav, WebError, WebState};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::response::Response;
use patchwarden_app::records::{DevicePageQuery, ExposureStats, TenantScope};
use patchwarden_app::reports::{self, ComplianceReport, Format, ReportQuery};
use patchwarden_app::snapshots::day_of;
use patchwarden_app::{dashboard, vulns};
use patchwarden_wire::api::{VulnQuery, VulnRow};
use serde::Deserialize;
use std::collections::BTreeMap;

/// Days shown by the overview's charts.
pub const CHART_DAYS: i64 = 90;
/// Rows shown by the vulnerability list (the API has them all).
pub const VULN_ROWS: usize = 500;

// ---------------------------------------------------------------------------------------
// Overview: exposure figures and charts

pub struct ExposureRow {
    pub name: String,
    pub s: ExposureStats,
}

pub struct NamedChart {
    pub id: &'static str,
    pub title: &'static str,
    pub chart: LineChart,
}

/// What the overview adds from this module.
pub struct OverviewExtras {
    pub exposure_rows: Vec<ExposureRow>,
    pub exposure_total: ExposureStats,
    pub charts: Vec<NamedChart>,
}

pub async fn overview_extras(
    state: &WebState,
    user: &WebUser,
    scope: &TenantScope,
) -> Result<OverviewExtras, WebError> {
    let now = state.app.now_ms();
    let op = user.actor(None);
    // Each tenant's breaches by its own SLA policy.
    let stats = dashboard::exposure_stats(&state.app, &op, scope).await?;
    let mut total = ExposureStats {
        tenant_id: String::new(),
        ..Default::default()
    };
    for s in &stats {
        total.open += s.open;
        total.critical += s.critical;
        total.high += s.high;
        total.medium += s.medium;
        total.low += s.low;
        total.other += s.other;
        total.kev += s.kev;
        total.sla_breaches += s.sla_breaches;
        total.devices_breaching += s.devices_breaching;
    }
    let exposure_rows = stats
        .into_iter()
        .map(|s| ExposureRow {
            name: user.tenant_name(&s.tenant_id),
            s,
        })
        .collect();

    // The last 90 days, summed over the tenants in view.
    let day_ms = 86_400_000;
    let days: Vec<String> = (0..CHART_DAYS)
        .rev()
        .map(|k| day_of(now - k * day_ms))
        .collect();
    let snaps =
        dashboard::snapshots(&state.app, &op, scope, &days[0], &days[days.len() - 1]).await?;
    #[derive(Default)]
    struct Day {
        devices: i64,
        patched: i64,
        open: i64,
        crit_high: i64,
        kev: i64,
        breaches: i64,
        failures: BTreeMap<String, i64>,
    }
    let mut by_day: BTreeMap<&str, Day> = BTreeMap::new();
    let mut class_totals: BTreeMap<String, i64> = BTreeMap::new();
    for s in &snaps {
        let d = by_day.entry(s.day.as_str()).or_default();
        d.devices += s.devices;
        d.patched += s.fully_patched;
        d.open += s.exposures_open;
        d.crit_high += s.critical + s.high;
        d.kev += s.kev_open;
        d.breaches += s.sla_breaches;
        for (c, n) in &s.failures {
            *d.failures.entry(c.clone()).or_default() += n;
            *class_totals.entry(c.clone()).or_default() += n;
        }
    }
    let series = |f: &dyn Fn(&Day) -> Option<f64>| -> Vec<Option<f64>> {
        days.iter()
            .map(|d| by_day.get(d.as_str()).and_then(f))
            .collect()
    };
    let coverage = line_chart(
        &days,
        &[(
            "coverage".into(),
            series(&|d| {
                (d.devices > 0)
                    .then(|| (d.patched as f64 * 1000.0 / d.devices as f64).round() / 10.0)
            }),
        )],
        " %",
        Some(100.0),
    );
    let exposure = line_chart(
        &days,
        &[
            ("open exposures".into(), series(&|d| Some(d.open as f64))),
            (
                "critical and high".into(),
                series(&|d| Some(d.crit_high as f64)),
            ),
            ("known exploited".into(), series(&|d| Some(d.kev as f64))),
            ("SLA breaches".into(), series(&|d| Some(d.breaches as f64))),
        ],
        "",
        None,
    );
    let mut top: Vec<(String, i64)> = class_totals.into_iter().collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let failure_series: Vec<(String, Vec<Option<f64>>)> = top
        .iter()
        .take(5)
        .map(|(c, _)| {
            let c = c.clone();
            let values = series(&|d| Some(d.failures.get(&c).copied().unwrap_or(0) as f64));
            (c, values)
        })
        .collect();
    let failures = line_chart(&days, &failure_series, "", None);
    Ok(OverviewExtras {
        exposure_rows,
        exposure_total: total,
        charts: vec![
            NamedChart {
                id: "coverage",
                title: "Patch coverage, last 90 days",
                chart: coverage,
            },
            NamedChart {
                id: "exposure",
                title: "Open exposure, last 90 days",
                chart: exposure,
            },
            NamedChart {
                id: "failures",
                title: "Current failures by class, last 90 days",
                chart: failures,
            },
        ],
    })
}

// ---------------------------------------------------------------------------------------
// Vulnerabilities

/// Whether an API row's SLA state is a breach (`breached { overdue: … }`).
pub fn breached(r: &VulnRow) -> bool {
    r.sla_state.starts_with("breached")
}

/// The exposures this person may see, through the same use case as the API, per tenant in
/// view.
async fn visible_rows(
    state: &WebState,
    user: &WebUser,
    scope: TenantScope,
    q: impl Fn() -> VulnQuery,
    cve: Option<&str>,
) -> Result<Vec<VulnRow>, WebError> {
    let scopes: Vec<Option<String>> = match scope {
        None => vec![None],
        Some(ids) => ids.into_iter().map(Some).collect(),
    };
    let mut out = Vec::new();
    for t in scopes {
        let op = user.actor(t.as_deref());
        let rows = match cve {
            Some(c) => vulns::show(&state.app, &op, c).await?,
            None => vulns::list(&state.app, &op, &q()).await?,
        };
        out.extend(rows);
    }
    out.sort_by(|a, b| {
        b.priority
            .total_cmp(&a.priority)
            .then(a.cve.cmp(&b.cve))
            .then(a.hostname.cmp(&b.hostname))
    });
    Ok(out)
}

#[derive(Debug, Deserialize, Default)]
pub struct VulnsQuery {
    pub tenant: Option<String>,
    pub severity: Option<String>,
    pub kev: Option<String>,
    pub device: Option<String>,
}

#[derive(askama::Template)]
#[template(path = "vulns.html")]
struct VulnsPage {
    nav: Nav,
    tenants: Vec<(String, String)>,
    tenant: String,
    severity: String,
    kev: bool,
    device: String,
    rows: Vec<VulnRow>,
    total: usize,
    breaches: usize,
    kev_count: usize,
    cves: usize,
}

pub async fn vulns_page(
    State(state): State<WebState>,
    user: WebUser,
    Query(q): Query<VulnsQuery>,
) -> Result<Response, WebError> {
    let tenant = non_empty(&q.tenant).map(str::to_owned);
    let mut scope = scope_for(&user, tenant.as_deref())?;
    let severity = non_empty(&q.severity).map(str::to_owned);
    if let Some(s) = &severity {
        if !["low", "medium", "high", "critical"].contains(&s.as_str()) {
            return Err(page_error(
                StatusCode::BAD_REQUEST,
                "Unknown severity: use low, medium, high or critical.",
            ));
        }
    }
    let kev = matches!(non_empty(&q.kev), Some("1" | "on" | "true"));
    let device = non_empty(&q.device).map(str::to_owned);
    if let Some(d) = &device {
        // Narrow to the device's tenant (an unknown or invisible device: 404).
        let found = match super::pages::visible_device(&state, &user, d).await {
            Ok(x) => Some(x),
            Err(_) => dashboard::device_page(
                &state.app,
                &user.actor(None),
                &DevicePageQuery {
                    scope: scope.clone(),
                    search: Some(d.clone()),
                    limit: 50,
                    now: state.app.now_ms(),
                    ..Default::default()
                },
            )
            .await?
            .0
            .into_iter()
            .find(|x| &x.hostname == d),
        };
        match found {
            Some(x) => scope = Some(vec![x.tenant_id]),
            None => {
                return Err(page_error(
                    StatusCode::NOT_FOUND,
                    &format!("No device {d}."),
                ))
            }
        }
    }
    let query = || VulnQuery {
        kev,
        severity: severity.clone(),
        device: device.clone(),
        closed: false,
    };
    let mut rows = visible_rows(&state, &user, scope, query, None).await?;
    let total = rows.len();
    let breaches = rows.iter().filter(|r| breached(r)).count();
    let kev_count = rows.iter().filter(|r| r.kev).count();
    let cves = rows
        .iter()
        .map(|r| r.cve.as_str())
        .collect::<std::collections::HashSet<_>>()
        .len();
    rows.truncate(VULN_ROWS);
    Ok(render(&VulnsPage {
        nav: Nav::new(&user, "vulns"),
        tenants: visible_tenants(&user),
        tenant: tenant.unwrap_or_default(),
        severity: severity.unwrap_or_default(),
        kev,
        device: device.unwrap_or_default(),
        rows,
        total,
        breaches,
        kev_count,
        cves,
    }))
}

#[derive(askama::Template)]
#[template(path = "vuln.html")]
struct VulnPage {
    nav: Nav,
    cve: String,
    head: VulnRow,
    open: Vec<VulnRow>,
    closed: Vec<VulnRow>,
    breaches: usize,
}

pub async fn vuln_page(
    State(state): State<WebState>,
    user: WebUser,
    Path(cve): Path<String>,
) -> Result<Response, WebError> {
    let cve = cve.trim().to_owned();
    let rows = visible_rows(
        &state,
        &user,
        user.access.scope(),
        VulnQuery::default,
        Some(&cve),
    )
    .await?;
    let Some(head) = rows.first().cloned() else {
        return Err(page_error(
            StatusCode::NOT_FOUND,
            &format!("No device in view is or was exposed to {cve}."),
        ));
    };
    let (closed, open): (Vec<VulnRow>, Vec<VulnRow>) =
        rows.into_iter().partition(|r| r.closed_at.is_some());
    Ok(render(&VulnPage {
        nav: Nav::new(&user, "vulns"),
        breaches: open.iter().filter(|r| breached(r)).count(),
        cve,
        head,
        open,
        closed,
    }))
}

/// The device page's vulnerabilities and compliance.
pub struct DeviceVulns {
    pub rows: Vec<VulnRow>,
    pub breaches: usize,
    /// The earliest deadline still ahead.
    pub next_due: Option<String>,
    pub compliant: bool,
}

pub async fn device_vulns(
    state: &WebState,
    user: &WebUser,
    device_id: &str,
    tenant_id: &str,
) -> Result<DeviceVulns, WebError> {
    let op = user.actor(Some(tenant_id));
    let q = VulnQuery {
        device: Some(device_id.to_owned()),
        ..VulnQuery::default()
    };
    let rows = vulns::list(&state.app, &op, &q).await?;
    let breaches = rows.iter().filter(|r| breached(r)).count();
    let next_due = rows
        .iter()
        .filter(|r| !breached(r))
        .filter_map(|r| r.sla_due.clone())
        .min();
    Ok(DeviceVulns {
        compliant: breaches == 0,
        rows,
        breaches,
        next_due,
    })
}

// ---------------------------------------------------------------------------------------
// Reports

#[derive(Debug, Deserialize, Default)]
pub struct ReportPageQuery {
    pub tenant: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub format: Option<String>,
}

#[derive(askama::Template)]
#[template(path = "report.html")]
struct ReportPage {
    nav: Nav,
    tenants: Vec<(String, String)>,
    tenant: String,
    from: String,
    to: String,
    r: Option<ComplianceReport>,
    links: Vec<(&'static str, String)>,
}

#[derive(askama::Template)]
#[template(path = "report_doc.html")]
struct ReportDocument<'a> {
    r: &'a ComplianceReport,
}

/// The printable report as a standalone HTML document (the API's `format=html`).
pub fn report_document(r: &ComplianceReport) -> Response {
    render(&ReportDocument { r })
}

fn bad(msg: String) -> WebError {
    page_error(StatusCode::BAD_REQUEST, &msg)
}

/// `/reports`: choose a tenant and period, see the report, download it (`format=pdf|csv|json|html`).
pub async fn reports_page(
    State(state): State<WebState>,
    user: WebUser,
    Query(q): Query<ReportPageQuery>,
) -> Result<Response, WebError> {
    let tenants = visible_tenants(&user);
    let now = state.app.now_ms();
    let period = reports::period(q.from.as_deref(), q.to.as_deref(), now).map_err(bad)?;
    let format = match non_empty(&q.format) {
        None => None,
        Some(f) => Some(reports::format(Some(f)).map_err(bad)?),
    };
    let chosen = non_empty(&q.tenant)
        .map(str::to_owned)
        .or_else(|| (tenants.len() == 1).then(|| tenants[0].1.clone()));
    let tenant_id = match &chosen {
        None => None,
        Some(name) => match scope_for(&user, Some(name))? {
            Some(ids) => ids.into_iter().next(),
            None => None,
        },
    };
    let report = match &tenant_id {
        Some(id) => {
            let query = ReportQuery {
                tenant: Some(id.clone()),
                from: Some(period.from.to_string()),
                to: Some(period.to.to_string()),
                format: None,
            };
            let op = user.actor(Some(id));
            Some(reports::compliance_report(&state.app, &op, &query).await?.0)
        }
        None => None,
    };
    if let (Some(f), Some(r)) = (format, &report) {
        return Ok(report_response(r, f));
    }
    let (from, to) = (period.from.to_string(), period.to.to_string());
    let links = match &report {
        Some(r) => [("PDF", "pdf"), ("CSV", "csv"), ("JSON", "json")]
            .iter()
            .map(|(label, f)| {
                (
                    *label,
                    format!(
                        "/reports?tenant={}&from={from}&to={to}&format={f}",
                        url_encode(&r.tenant)
                    ),
                )
            })
            .collect(),
        None => Vec::new(),
    };
    Ok(render(&ReportPage {
        nav: Nav::new(&user, "reports"),
        tenants,
        tenant: chosen.unwrap_or_default(),
        from,
        to,
        r: report,
        links,
    }))
}

/// A report in the format asked for: JSON, a download (CSV, PDF), or the printable page
/// (the API's `format=` and the dashboard's download links).
pub fn report_response(r: &ComplianceReport, f: Format) -> Response {
    match f {
        Format::Json => axum::Json(r).into_response(),
        Format::Html => report_document(r),
        Format::Csv | Format::Pdf => match reports::download(r, f) {
            Some((content_type, name, bytes)) => (
                [
                    (axum::http::header::CONTENT_TYPE, content_type.to_owned()),
                    (
                        axum::http::header::CONTENT_DISPOSITION,
                        format!("attachment; filename=\"{name}\""),
                    ),
                ],
                bytes,
            )
                .into_response(),
            None => axum::Json(r).into_response(),
        },
    }
}
