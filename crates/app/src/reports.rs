//! The compliance report of one tenant over a period of UTC days: coverage, SLA compliance,
//! mean time to remediate, the exposure trend (from the daily history), failures by class
//! and the devices out of compliance. One computation ([`compliance`]), four renderings:
//! JSON, CSV (long format: `section,item,metric,value`), PDF (`pdf-writer`, uncompressed
//! text so that it stays greppable) here, and a printable HTML page (the dashboard's
//! template, in the server).
//!
//! Definitions (the period is `[from 00:00, to + 1 day 00:00)` UTC, cut at the time of the
//! request when it reaches into the future — its *end*):
//! - coverage: the live figures when the period reaches today, else the last daily
//!   snapshot in the period (absent when there is none);
//! - SLA compliance: of the exposures whose deadline falls in the period before its end,
//!   the share closed on or before the deadline;
//! - mean time to remediate: mean of `closed_at - first_seen` over exposures closed in the
//!   period;
//! - devices out of compliance: devices with an exposure open at the end and past its
//!   deadline;
//! - failures by class: failed attempts in the period.

use crate::actor::Actor;
use crate::authz::Permission;
use crate::error::{AppError, AppResult};
use crate::snapshots::day_of;
use crate::{rfc3339, App};
use patchwarden_store::{ExposureFilter, Tenant};
pub use patchwarden_wire::report::*;
use std::collections::BTreeMap;

const DAY_MS: i64 = 86_400_000;
/// Longest period a report covers.
pub const MAX_DAYS: i64 = 3 * 366;

/// A period of whole UTC days.
#[derive(Debug, Clone, PartialEq)]
pub struct Period {
    pub from: time::Date,
    pub to: time::Date,
}

impl Period {
    pub fn start_ms(&self) -> i64 {
        self.from.midnight().assume_utc().unix_timestamp() * 1000
    }
    /// Exclusive: midnight after `to`.
    pub fn end_ms(&self) -> i64 {
        self.to.midnight().assume_utc().unix_timestamp() * 1000 + DAY_MS
    }
}

fn parse_day(what: &str, s: &str) -> Result<time::Date, String> {
    time::Date::parse(
        s.trim(),
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .map_err(|_| format!("{what}: expected a date YYYY-MM-DD, got {s:?}"))
}

/// The period asked for; both ends default to the last 30 days up to today (by `now`).
pub fn period(from: Option<&str>, to: Option<&str>, now: i64) -> Result<Period, String> {
    let today = time::Date::parse(
        &day_of(now),
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .map_err(|e| e.to_string())?;
    let to = match to.filter(|s| !s.trim().is_empty()) {
        Some(s) => parse_day("to", s)?,
        None => today,
    };
    let from = match from.filter(|s| !s.trim().is_empty()) {
        Some(s) => parse_day("from", s)?,
        None => to - time::Duration::days(29),
    };
    if from > to {
        return Err(format!("from ({from}) is after to ({to})"));
    }
    if (to - from).whole_days() >= MAX_DAYS {
        return Err(format!("the period is longer than {MAX_DAYS} days"));
    }
    Ok(Period { from, to })
}

fn pct(part: i64, whole: i64) -> Option<f64> {
    (whole > 0).then(|| (part as f64 * 1000.0 / whole as f64).round() / 10.0)
}

/// Computes the report of `tenant` over `period` at `now`.
pub async fn compliance(
    state: &App,
    tenant: &Tenant,
    period: &Period,
    now: i64,
) -> Result<ComplianceReport, patchwarden_store::StoreError> {
    let store = &state.store;
    let start = period.start_ms();
    let end = period.end_ms().min(now.max(start));
    let scope = Some(vec![tenant.id.clone()]);
    let (from_day, to_day) = (period.from.to_string(), period.to.to_string());
    let snapshots = store.snapshots(&scope, &from_day, &to_day).await?;
    let coverage = if to_day >= day_of(now) {
        store
            .fleet_stats(&scope, now)
            .await?
            .into_iter()
            .next()
            .map(|f| Coverage {
                as_of: "now".into(),
                devices: f.devices,
                fully_patched: f.fully_patched,
                security_pending: f.security_pending,
                reboot_pending: f.reboot_pending,
                percent: pct(f.fully_patched, f.devices),
            })
            .or(Some(Coverage {
                as_of: "now".into(),
                devices: 0,
                fully_patched: 0,
                security_pending: 0,
                reboot_pending: 0,
                percent: None,
            }))
    } else {
        snapshots.last().map(|s| Coverage {
            as_of: s.day.clone(),
            devices: s.devices,
            fully_patched: s.fully_patched,
            security_pending: s.security_pending,
            reboot_pending: s.reboot_pending,
            percent: pct(s.fully_patched, s.devices),
        })
    };

    let exposures = store
        .list_exposures(&ExposureFilter {
            tenant_id: Some(tenant.id.clone()),
            include_closed: true,
            ..Default::default()
        })
        .await?;
    let devices: BTreeMap<String, String> = store
        .list_devices(Some(&tenant.id))
        .await?
        .into_iter()
        .map(|d| (d.id, d.hostname))
        .collect();
    let policy = crate::sla::policy_for(state, &tenant.id).await?;
    let end_t = time::OffsetDateTime::from_unix_timestamp(end / 1000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let (mut due, mut met) = (0, 0);
    let (mut closed, mut closed_ms) = (0i64, 0i64);
    let mut out: BTreeMap<String, (i64, i64, Vec<String>)> = BTreeMap::new();
    for e in &exposures {
        if e.tenant_id != tenant.id {
            continue;
        }
        let clock = crate::sla::sla_of(&policy, e, end_t);
        let deadline = clock.due.map(|d| d.unix_timestamp() * 1000);
        if let Some(dl) = deadline.filter(|dl| *dl >= start && *dl < end) {
            due += 1;
            if e.closed_at.is_some_and(|c| c <= dl) {
                met += 1;
            }
        }
        if let Some(c) = e.closed_at.filter(|c| *c >= start && *c < end) {
            closed += 1;
            closed_ms += c - e.first_seen;
        }
        let open_at_end = e.first_seen < end && e.closed_at.is_none_or(|c| c >= end);
        if let Some(dl) = deadline.filter(|dl| open_at_end && *dl < end) {
            let entry = out
                .entry(e.device_id.clone())
                .or_insert((0, i64::MAX, Vec::new()));
            entry.0 += 1;
            entry.1 = entry.1.min(dl);
            if !entry.2.contains(&e.cve) {
                entry.2.push(e.cve.clone());
            }
        }
    }
    let mut devices_out: Vec<DeviceOutOfCompliance> = out
        .into_iter()
        .map(|(id, (n, oldest, cves))| DeviceOutOfCompliance {
            hostname: devices.get(&id).cloned().unwrap_or_else(|| id.clone()),
            device: id,
            breached: n,
            oldest_due: day_of(oldest),
            cves,
        })
        .collect();
    devices_out.sort_by(|a, b| {
        b.breached
            .cmp(&a.breached)
            .then(a.hostname.cmp(&b.hostname))
    });
    let mean_hours = (closed > 0)
        .then(|| (closed_ms as f64 / closed as f64 / 3_600_000.0 * 10.0).round() / 10.0);
    let failures = store
        .failed_attempts_by_class(&tenant.id, start, period.end_ms())
        .await?;
    Ok(ComplianceReport {
        tenant: tenant.name.clone(),
        from: from_day,
        to: to_day,
        generated_at: rfc3339(now),
        coverage,
        sla: SlaCompliance {
            due,
            met,
            missed: due - met,
            percent: pct(met, due),
        },
        remediation: Remediation {
            closed,
            mean_hours,
            mean_days: mean_hours.map(|h| (h / 24.0 * 10.0).round() / 10.0),
        },
        exposure_trend: snapshots
            .iter()
            .map(|s| TrendPoint {
                day: s.day.clone(),
                devices: s.devices,
                coverage_percent: pct(s.fully_patched, s.devices),
                open: s.exposures_open,
                critical: s.critical,
                high: s.high,
                medium: s.medium,
                low: s.low,
                other: s.other,
                kev: s.kev_open,
                sla_breaches: s.sla_breaches,
            })
            .collect(),
        failures_by_class: failures
            .into_iter()
            .map(|(class, count)| ClassCount { class, count })
            .collect(),
        devices_out_of_compliance: devices_out,
    })
}

fn opt(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.1}")).unwrap_or_default()
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// The report as CSV in long format: `section,item,metric,value`, one figure per line.
pub fn to_csv(r: &ComplianceReport) -> String {
    let mut rows: Vec<[String; 4]> = Vec::new();
    let mut row = |a: &str, b: &str, c: &str, d: String| {
        rows.push([a.to_owned(), b.to_owned(), c.to_owned(), d]);
    };
    row("report", "", "tenant", r.tenant.clone());
    row("report", "", "from", r.from.clone());
    row("report", "", "to", r.to.clone());
    row("report", "", "generated_at", r.generated_at.clone());
    if let Some(c) = &r.coverage {
        row("coverage", "", "as_of", c.as_of.clone());
        row("coverage", "", "devices", c.devices.to_string());
        row("coverage", "", "fully_patched", c.fully_patched.to_string());
        row(
            "coverage",
            "",
            "security_pending",
            c.security_pending.to_string(),
        );
        row(
            "coverage",
            "",
            "reboot_pending",
            c.reboot_pending.to_string(),
        );
        row("coverage", "", "percent", opt(c.percent));
    }
    row("sla", "", "due", r.sla.due.to_string());
    row("sla", "", "met", r.sla.met.to_string());
    row("sla", "", "missed", r.sla.missed.to_string());
    row("sla", "", "percent", opt(r.sla.percent));
    row(
        "remediation",
        "",
        "closed",
        r.remediation.closed.to_string(),
    );
    row(
        "remediation",
        "",
        "mean_hours",
        opt(r.remediation.mean_hours),
    );
    row("remediation", "", "mean_days", opt(r.remediation.mean_days));
    for t in &r.exposure_trend {
        for (m, v) in [
            ("devices", t.devices),
            ("open", t.open),
            ("critical", t.critical),
            ("high", t.high),
            ("medium", t.medium),
            ("low", t.low),
            ("other", t.other),
            ("kev", t.kev),
            ("sla_breaches", t.sla_breaches),
        ] {
            row("trend", &t.day, m, v.to_string());
        }
        row("trend", &t.day, "coverage_percent", opt(t.coverage_percent));
    }
    for f in &r.failures_by_class {
        row("failures", &f.class, "count", f.count.to_string());
    }
    for d in &r.devices_out_of_compliance {
        row(
            "out_of_compliance",
            &d.hostname,
            "breached",
            d.breached.to_string(),
        );
        row(
            "out_of_compliance",
            &d.hostname,
            "oldest_due",
            d.oldest_due.clone(),
        );
        row("out_of_compliance", &d.hostname, "cves", d.cves.join(" "));
    }
    let mut out = String::from("section,item,metric,value\n");
    for r in rows {
        let line: Vec<String> = r.iter().map(|f| csv_field(f)).collect();
        out.push_str(&line.join(","));
        out.push('\n');
    }
    out
}

/// The report as text lines (the PDF's body).
fn text_lines(r: &ComplianceReport) -> Vec<(bool, String)> {
    let mut out: Vec<(bool, String)> = vec![
        (true, format!("Compliance report: {}", r.tenant)),
        (
            false,
            format!(
                "Tenant: {}    Period: {} to {} (UTC)    Generated: {}",
                r.tenant, r.from, r.to, r.generated_at
            ),
        ),
    ];
    let head = |out: &mut Vec<(bool, String)>, s: &str| out.push((true, s.to_owned()));
    head(&mut out, "Patch coverage");
    match &r.coverage {
        Some(c) => out.push((
            false,
            format!(
                "{} of {} devices fully patched ({} %), as of {}; {} with security updates pending, {} reboots pending",
                c.fully_patched,
                c.devices,
                opt(c.percent),
                c.as_of,
                c.security_pending,
                c.reboot_pending
            ),
        )),
        None => out.push((false, "No figures recorded in this period.".into())),
    }
    head(&mut out, "SLA compliance");
    out.push((
        false,
        format!(
            "{} of {} deadlines in the period met ({} %); {} missed",
            r.sla.met,
            r.sla.due,
            opt(r.sla.percent),
            r.sla.missed
        ),
    ));
    head(&mut out, "Mean time to remediate");
    out.push((
        false,
        match r.remediation.mean_hours {
            Some(h) => format!(
                "{h:.1} hours ({} days) over {} exposures closed in the period",
                opt(r.remediation.mean_days),
                r.remediation.closed
            ),
            None => "No exposure was closed in the period.".into(),
        },
    ));
    head(&mut out, "Exposure trend (open exposures per day)");
    if r.exposure_trend.is_empty() {
        out.push((false, "No daily history in this period.".into()));
    }
    for p in &r.exposure_trend {
        out.push((
            false,
            format!(
                "{}  open {}  critical {}  high {}  medium {}  low {}  KEV {}  SLA breaches {}  coverage {} %",
                p.day,
                p.open,
                p.critical,
                p.high,
                p.medium,
                p.low,
                p.kev,
                p.sla_breaches,
                opt(p.coverage_percent)
            ),
        ));
    }
    head(
        &mut out,
        "Failures by class (failed attempts in the period)",
    );
    if r.failures_by_class.is_empty() {
        out.push((false, "None.".into()));
    }
    for f in &r.failures_by_class {
        out.push((false, format!("{}: {}", f.class, f.count)));
    }
    head(&mut out, "Devices out of compliance");
    if r.devices_out_of_compliance.is_empty() {
        out.push((false, "None.".into()));
    }
    for d in &r.devices_out_of_compliance {
        out.push((
            false,
            format!(
                "{}: {} past deadline since {} ({})",
                d.hostname,
                d.breached,
                d.oldest_due,
                d.cves.join(", ")
            ),
        ));
    }
    out
}

/// Latin-1 only (the standard Helvetica font's WinAnsi encoding); anything else is `?`.
fn latin1(s: &str) -> Vec<u8> {
    s.chars()
        .map(|c| match c as u32 {
            0x20..=0x7e | 0xa0..=0xff => c as u32 as u8,
            _ => b'?',
        })
        .collect()
}

/// Splits a line to at most `n` characters per line.
fn wrap(s: &str, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for word in s.split(' ') {
        if !cur.is_empty() && cur.chars().count() + 1 + word.chars().count() > n {
            out.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push(' ');
        }
        cur.push_str(word);
    }
    out.push(cur);
    out
}

/// The report as a PDF (A4, Helvetica, text streams left uncompressed).
pub fn to_pdf(r: &ComplianceReport) -> Vec<u8> {
    use pdf_writer::{Content, Finish, Name, Pdf, Rect, Ref, Str, TextStr};
    const TOP: f32 = 800.0;
    const BOTTOM: f32 = 50.0;
    const LEFT: f32 = 50.0;
    let mut lines: Vec<(bool, String)> = Vec::new();
    for (heading, text) in text_lines(r) {
        if heading && !lines.is_empty() {
            lines.push((false, String::new()));
        }
        for part in wrap(&text, if heading { 70 } else { 100 }) {
            lines.push((heading, part));
        }
    }
    // Pages of lines.
    let mut pages: Vec<Vec<(bool, String)>> = vec![Vec::new()];
    let mut y = TOP;
    for line in lines {
        let step = if line.0 { 18.0 } else { 13.0 };
        if y - step < BOTTOM {
            pages.push(Vec::new());
            y = TOP;
        }
        y -= step;
        if let Some(p) = pages.last_mut() {
            p.push(line);
        }
    }
    let catalog = Ref::new(1);
    let tree = Ref::new(2);
    let font = Ref::new(3);
    let bold = Ref::new(4);
    let info = Ref::new(5);
    let first_page = 10;
    let page_ids: Vec<Ref> = (0..pages.len())
        .map(|i| Ref::new(first_page + 2 * i as i32))
        .collect();
    let mut pdf = Pdf::new();
    pdf.catalog(catalog).pages(tree);
    pdf.pages(tree)
        .kids(page_ids.iter().copied())
        .count(page_ids.len() as i32);
    pdf.type1_font(font)
        .base_font(Name(b"Helvetica"))
        .encoding_predefined(Name(b"WinAnsiEncoding"));
    pdf.type1_font(bold)
        .base_font(Name(b"Helvetica-Bold"))
        .encoding_predefined(Name(b"WinAnsiEncoding"));
    pdf.document_info(info)
        .title(TextStr(&format!("Compliance report {}", r.tenant)))
        .producer(TextStr("Patchwarden"));
    let total = pages.len();
    for (i, lines) in pages.iter().enumerate() {
        let page_id = page_ids[i];
        let content_id = Ref::new(page_id.get() + 1);
        let mut page = pdf.page(page_id);
        page.parent(tree)
            .media_box(Rect::new(0.0, 0.0, 595.0, 842.0))
            .contents(content_id);
        let mut res = page.resources();
        let mut fonts = res.fonts();
        fonts.pair(Name(b"F1"), font).pair(Name(b"F2"), bold);
        fonts.finish();
        res.finish();
        page.finish();
        let mut c = Content::new();
        let mut y = TOP;
        for (heading, text) in lines {
            y -= if *heading { 18.0 } else { 13.0 };
            c.begin_text();
            if *heading {
                c.set_font(Name(b"F2"), 13.0);
            } else {
                c.set_font(Name(b"F1"), 9.5);
            }
            c.next_line(LEFT, y);
            c.show(Str(&latin1(text)));
            c.end_text();
        }
        c.begin_text();
        c.set_font(Name(b"F1"), 8.0);
        c.next_line(LEFT, 30.0);
        c.show(Str(&latin1(&format!(
            "Patchwarden compliance report, {} {}..{}, page {} of {}",
            r.tenant,
            r.from,
            r.to,
            i + 1,
            total
        ))));
        c.end_text();
        pdf.stream(content_id, &c.finish());
    }
    pdf.finish()
}

/// The tenant a report is for: by name or id, checked against the caller's scope (another
/// tenant answers 404, as if it did not exist).
pub async fn resolve_tenant(
    state: &App,
    scope: Option<&str>,
    tenant: Option<&str>,
) -> AppResult<Tenant> {
    let tenants = state.store.list_tenants().await?;
    let wanted = tenant.map(str::trim).filter(|t| !t.is_empty());
    let found = match (wanted, scope) {
        (Some(t), _) => tenants.into_iter().find(|x| x.name == t || x.id == t),
        (None, Some(own)) => tenants.into_iter().find(|x| x.id == own),
        (None, None) => {
            return Err(AppError::invalid(
                "tenant",
                "tenant is required (name or id) with a provider-level token",
            ))
        }
    };
    match found {
        Some(t) if scope.is_none_or(|s| s == t.id) => Ok(t),
        _ => Err(AppError::not_found(format!(
            "no tenant {:?}",
            wanted.unwrap_or_default()
        ))),
    }
}

/// The format asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Csv,
    Pdf,
    Html,
}

pub fn format(s: Option<&str>) -> Result<Format, String> {
    match s.map(str::trim).filter(|s| !s.is_empty()) {
        None | Some("json") => Ok(Format::Json),
        Some("csv") => Ok(Format::Csv),
        Some("pdf") => Ok(Format::Pdf),
        Some("html") => Ok(Format::Html),
        Some(other) => Err(format!(
            "unknown format {other:?}: use json, csv, pdf or html"
        )),
    }
}

fn file_name(r: &ComplianceReport, ext: &str) -> String {
    let safe: String = r
        .tenant
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("compliance-{safe}-{}-{}.{ext}", r.from, r.to)
}

/// A report in a download format: (content type, file name, bytes). JSON and HTML are
/// the front end's.
pub fn download(r: &ComplianceReport, f: Format) -> Option<(&'static str, String, Vec<u8>)> {
    match f {
        Format::Csv => Some((
            "text/csv; charset=utf-8",
            file_name(r, "csv"),
            to_csv(r).into_bytes(),
        )),
        Format::Pdf => Some(("application/pdf", file_name(r, "pdf"), to_pdf(r))),
        Format::Json | Format::Html => None,
    }
}

/// The compliance report an operator asks for, and the format asked for.
pub async fn compliance_report(
    state: &App,
    op: &Actor,
    q: &ReportQuery,
) -> AppResult<(ComplianceReport, Format)> {
    let f = format(q.format.as_deref()).map_err(|e| AppError::invalid("format", e))?;
    let now = state.clock.now_ms();
    let p = period(q.from.as_deref(), q.to.as_deref(), now)
        .map_err(|e| AppError::invalid("period", e))?;
    let tenant = resolve_tenant(state, op.tenant_scope(), q.tenant.as_deref()).await?;
    op.require(Permission::View, &tenant.id)?;
    let report = compliance(state, &tenant, &p, now).await?;
    tracing::info!(tenant = %tenant.name, from = %report.from, to = %report.to, format = ?f, "compliance report");
    Ok((report, f))
}

/// Takes today's daily snapshot now (the server also takes it on its own timer); idempotent.
pub async fn take_snapshot(state: &App, op: &Actor) -> AppResult<SnapshotTaken> {
    // The daily history covers every tenant: a provider-wide role is needed.
    op.require_provider(Permission::Operate)?;
    let stored = crate::snapshots::take(state).await?;
    Ok(SnapshotTaken {
        day: day_of(state.clock.now_ms()),
        stored: stored as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_and_formats() {
        // 2026-11-26T12:00:00Z
        let now = 1_795_694_400_000;
        let p = period(None, None, now).expect("default");
        assert_eq!(
            (p.from.to_string(), p.to.to_string()),
            ("2026-10-28".into(), "2026-11-26".into())
        );
        assert_eq!(p.end_ms() - p.start_ms(), 30 * DAY_MS);
        assert_eq!(
            period(Some("2026-13-01"), None, now).err().as_deref(),
            Some("from: expected a date YYYY-MM-DD, got \"2026-13-01\"")
        );
        assert!(period(Some("2026-11-02"), Some("2026-11-01"), now)
            .err()
            .is_some_and(|e| e.contains("after")));
        assert!(period(Some("2020-01-01"), Some("2026-01-01"), now).is_err());
        assert_eq!(format(Some("pdf")), Ok(Format::Pdf));
        assert!(format(Some("docx"))
            .err()
            .is_some_and(|e| e.contains("json, csv, pdf or html")));
        assert_eq!(csv_field("a,\"b\""), "\"a,\"\"b\"\"\"");
        assert_eq!(wrap("aa bb cc", 5), vec!["aa bb", "cc"]);
        assert_eq!(latin1("é€"), vec![0xe9, b'?']);
    }
}
