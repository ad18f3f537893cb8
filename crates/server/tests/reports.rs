//! The daily history and the compliance report over real HTTP (API and dashboard), on a
//! seeded estate whose exposures are written with known times; every number below is
//! computed by hand in the comments.

mod support;

use patchwarden_app::authz::Role;
use patchwarden_server::ManualClock;
use patchwarden_store::{ApiToken, ExposureRecord, Store};
use serde_json::Value;
use std::collections::BTreeMap;
use support::*;

// Noon UTC of each day.
const SEP_01: i64 = 1_788_264_000_000;
const SEP_22: i64 = 1_790_078_400_000;
const OCT_02: i64 = 1_790_942_400_000;
const OCT_10: i64 = 1_791_633_600_000;
const OCT_15: i64 = 1_792_065_600_000;
const OCT_27: i64 = 1_793_102_400_000;
const OCT_28: i64 = 1_793_188_800_000;
const NOV_01: i64 = 1_793_534_400_000;
const PW: &str = "correct horse battery staple";

fn exposure(device: &str, tenant: &str, cve: &str, rating: &str) -> ExposureRecord {
    ExposureRecord {
        device_id: device.into(),
        tenant_id: tenant.into(),
        cve: cve.into(),
        package: "openssl".into(),
        installed_version: "3.0.11-1~deb12u1".into(),
        fix_state: "fixed".into(),
        fixed_version: Some("3.0.15-1~deb12u1".into()),
        rating: rating.into(),
        priority: 10.0,
        ..Default::default()
    }
}

fn get(url: &str, token: &str) -> (u16, String, String) {
    let resp = match ureq::get(url)
        .set("Authorization", &format!("Bearer {token}"))
        .call()
    {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{url}: {e}"),
    };
    let status = resp.status();
    let ctype = resp.content_type().to_owned();
    let mut body = Vec::new();
    std::io::Read::read_to_end(&mut resp.into_reader(), &mut body).expect("body");
    (status, ctype, String::from_utf8_lossy(&body).into_owned())
}

struct Estate {
    app: App,
    globex_token: String,
}

/// acme: web-1 (security update pending, a failed install on Oct 10), mail-1 (patched),
/// db-1 (pending); globex: app-1. Exposures (first seen Sep 22 noon):
/// - web-1 CVE-A critical (due Oct 7 noon), closed Oct 2: met, 10 days = 240 h;
/// - web-1 CVE-B high (due Oct 22 noon), closed Oct 27: missed, 35 days = 840 h;
/// - web-1 CVE-D critical (due Oct 7 noon), never closed: breached;
/// - db-1 CVE-C medium (due Dec 21): on track;
/// - globex app-1 CVE-G critical (due Oct 7): breached.
///
/// Snapshots on Oct 15 (open B, C, D; breached D) and Oct 28 (open C, D; breached D).
fn estate() -> Estate {
    let clock = ManualClock::at(SEP_01);
    let app = spawn_app_with_clock(Some(clock.clone()));
    clock.set(OCT_10);
    let s = seed(&app);
    let db = app.data_dir.join("patchwarden.db").display().to_string();
    let token = "pw_test_globex_viewer_token_0123456789";
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let store = rt
        .block_on(patchwarden_store::SqliteStore::open(&db))
        .expect("store");
    let tenant_of = |id: &str| {
        rt.block_on(store.device(id))
            .expect("db")
            .expect("device")
            .tenant_id
    };
    let (acme, globex) = (tenant_of(&s.web1.id), tenant_of(&s.globex1.id));
    let sync = |device: &str, tenant: &str, at: i64, open: &[(&str, &str)]| {
        let list: Vec<ExposureRecord> = open
            .iter()
            .map(|(c, r)| exposure(device, tenant, c, r))
            .collect();
        rt.block_on(store.sync_device_exposures(device, at, &list))
            .expect("sync");
    };
    let snapshot = |expected: u64| {
        let (status, v) = app.op("POST", "/api/v1/history/snapshot", None);
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["stored"], expected, "{v}");
    };
    sync(
        &s.web1.id,
        &acme,
        SEP_22,
        &[
            ("CVE-A", "critical"),
            ("CVE-B", "high"),
            ("CVE-D", "critical"),
        ],
    );
    sync(&s.db1.id, &acme, SEP_22, &[("CVE-C", "medium")]);
    sync(&s.globex1.id, &globex, SEP_22, &[("CVE-G", "critical")]);
    sync(
        &s.web1.id,
        &acme,
        OCT_02,
        &[("CVE-B", "high"), ("CVE-D", "critical")],
    );
    clock.set(OCT_15);
    snapshot(3); // default, acme, globex
    snapshot(0); // idempotent per tenant and day
    sync(&s.web1.id, &acme, OCT_27, &[("CVE-D", "critical")]);
    clock.set(OCT_28);
    snapshot(3);
    clock.set(NOV_01);
    rt.block_on(store.insert_api_token(&ApiToken {
        id: "tok_globex".into(),
        tenant_id: Some(globex.clone()),
        name: "globex viewer".into(),
        role: patchwarden_app::authz::Role::Viewer,
        token_hash: patchwarden_app::actor::hash_token(token),
        created_at: 0,
        revoked_at: None,
    }))
    .expect("token");
    Estate {
        app,
        globex_token: token.into(),
    }
}

fn csv_map(csv: &str) -> BTreeMap<String, String> {
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("section,item,metric,value"));
    lines
        .map(|l| {
            let (k, v) = l.rsplit_once(',').expect("4 columns");
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

#[test]
fn compliance_report_history_and_pages() {
    let e = estate();
    let app = &e.app;
    let base = format!("{}/api/v1/reports/compliance", app.url);

    // October, acme: a past period, so coverage comes from the Oct 28 snapshot.
    let (status, ctype, body) = get(
        &format!("{base}?tenant=acme&from=2026-10-01&to=2026-10-31"),
        &app.admin,
    );
    assert_eq!(status, 200, "{body}");
    assert!(ctype.starts_with("application/json"), "{ctype}");
    let r: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(r["tenant"], "acme");
    assert_eq!(r["coverage"]["as_of"], "2026-10-28");
    // 3 devices, only mail-1 without pending updates.
    assert_eq!(r["coverage"]["devices"], 3);
    assert_eq!(r["coverage"]["fully_patched"], 1);
    assert_eq!(r["coverage"]["percent"], 33.3);
    // Deadlines in October: A (met), D and B (missed). 1 of 3.
    assert_eq!(r["sla"]["due"], 3, "{r}");
    assert_eq!(r["sla"]["met"], 1);
    assert_eq!(r["sla"]["missed"], 2);
    assert_eq!(r["sla"]["percent"], 33.3);
    // A and B closed in October: (240 h + 840 h) / 2 = 540 h = 22.5 days.
    assert_eq!(r["remediation"]["closed"], 2);
    assert_eq!(r["remediation"]["mean_hours"], 540.0);
    assert_eq!(r["remediation"]["mean_days"], 22.5);
    let trend: Vec<(String, i64, i64, i64)> = r["exposure_trend"]
        .as_array()
        .expect("trend")
        .iter()
        .map(|p| {
            (
                p["day"].as_str().unwrap_or_default().to_owned(),
                p["open"].as_i64().unwrap_or(-1),
                p["critical"].as_i64().unwrap_or(-1),
                p["sla_breaches"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    assert_eq!(
        trend,
        vec![
            ("2026-10-15".to_owned(), 3, 1, 1),
            ("2026-10-28".to_owned(), 2, 1, 1)
        ]
    );
    // The seeded failed install finished (agent time) on Nov 25: not in October.
    assert_eq!(r["failures_by_class"], serde_json::json!([]));
    let out = r["devices_out_of_compliance"].as_array().expect("out");
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0]["hostname"], "acme-web-1");
    assert_eq!(out[0]["breached"], 1);
    assert_eq!(out[0]["oldest_due"], "2026-10-07");
    assert_eq!(out[0]["cves"], serde_json::json!(["CVE-D"]));
    assert!(
        !body.contains("globex"),
        "tenant A's report names B: {body}"
    );

    // The same as CSV.
    let (status, ctype, csv) = get(
        &format!("{base}?tenant=acme&from=2026-10-01&to=2026-10-31&format=csv"),
        &app.admin,
    );
    assert_eq!(status, 200);
    assert!(ctype.starts_with("text/csv"), "{ctype}");
    let m = csv_map(&csv);
    for (k, v) in [
        ("report,,tenant", "acme"),
        ("coverage,,percent", "33.3"),
        ("sla,,due", "3"),
        ("sla,,met", "1"),
        ("sla,,percent", "33.3"),
        ("remediation,,mean_hours", "540.0"),
        ("trend,2026-10-15,open", "3"),
        ("trend,2026-10-28,open", "2"),
        ("out_of_compliance,acme-web-1,breached", "1"),
        ("out_of_compliance,acme-web-1,cves", "CVE-D"),
    ] {
        assert_eq!(m.get(k).map(String::as_str), Some(v), "{k} in\n{csv}");
    }
    assert!(!csv.contains("globex"));

    // PDF and printable HTML.
    let (status, ctype, pdf) = get(
        &format!("{base}?tenant=acme&from=2026-10-01&to=2026-10-31&format=pdf"),
        &app.admin,
    );
    assert_eq!((status, ctype.as_str()), (200, "application/pdf"));
    assert!(pdf.starts_with("%PDF-"), "{}", &pdf[..20.min(pdf.len())]);
    assert!(
        pdf.contains("(Compliance report: acme)"),
        "tenant name in the text"
    );
    assert!(pdf.contains("acme-web-1: 1 past deadline since 2026-10-07"));
    assert!(pdf.trim_end().ends_with("%%EOF"));
    let (status, ctype, html) = get(
        &format!("{base}?tenant=acme&from=2026-10-01&to=2026-10-31&format=html"),
        &app.admin,
    );
    assert_eq!(status, 200);
    assert!(ctype.starts_with("text/html"));
    assert!(html.contains("Compliance report: acme"));
    assert!(html.contains("22.5"));

    // A period reaching today: live coverage; the failed attempt of Nov 25 counts.
    let (_, _, body) = get(
        &format!("{base}?tenant=acme&from=2026-10-20&to=2026-11-30"),
        &app.admin,
    );
    let r: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(r["coverage"]["as_of"], "now");
    assert_eq!(r["coverage"]["percent"], 33.3);
    assert_eq!(r["remediation"]["closed"], 1, "only B closed after Oct 20");
    assert_eq!(
        r["failures_by_class"],
        serde_json::json!([{"class": "install_script_failed", "count": 1}])
    );

    // Tenant isolation: globex's report never shows acme's devices; a globex token cannot
    // ask for acme (404, as if it did not exist) and gets its own tenant by default.
    let (_, _, body) = get(
        &format!("{base}?tenant=globex&from=2026-10-01&to=2026-10-31"),
        &app.admin,
    );
    let r: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(
        r["devices_out_of_compliance"][0]["hostname"],
        "globex-app-1"
    );
    assert!(!body.contains("acme"), "{body}");
    let (status, _, body) = get(&format!("{base}?tenant=acme"), &e.globex_token);
    assert_eq!(status, 404, "{body}");
    let (status, _, body) = get(
        &format!("{base}?from=2026-10-01&to=2026-10-31"),
        &e.globex_token,
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("globex-app-1") && !body.contains("acme"));
    let (status, _, body) = get(
        &format!("{}/api/v1/history/snapshot", app.url),
        &e.globex_token,
    );
    assert_eq!(status, 405, "snapshot is POST only: {body}");

    // Bad input: clear 400s.
    for (query, needle) in [
        (
            "tenant=acme&from=2026-13-01",
            "from: expected a date YYYY-MM-DD",
        ),
        ("tenant=acme&to=yesterday", "to: expected a date YYYY-MM-DD"),
        ("tenant=acme&from=2026-10-31&to=2026-10-01", "is after to"),
        ("tenant=acme&format=docx", "unknown format"),
        ("from=2026-10-01", "tenant is required"),
    ] {
        let (status, _, body) = get(&format!("{base}?{query}"), &app.admin);
        assert_eq!(status, 400, "{query}: {body}");
        assert!(body.contains(needle), "{query}: {body}");
    }

    // The dashboard: overview charts and exposure, vulnerability pages, device compliance,
    // the report page and its downloads; a globex viewer sees none of acme.
    let mut web = Web::new(&app.url);
    assert_eq!(web.login("admin", &app.admin_password).status, 303);
    let page = web.get("/");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("SLA breaches"));
    assert!(page.body.contains("Patch coverage, last 90 days"));
    assert!(
        page.body.matches("<polyline").count() >= 2,
        "coverage and exposure lines"
    );
    assert!(
        page.body.contains("From 2026-08-04 to 2026-11-01."),
        "chart text"
    );
    let page = web.get("/vulns?severity=critical");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("CVE-D") && page.body.contains("CVE-G"));
    assert!(!page.body.contains("CVE-C"), "medium filtered out");
    assert!(page.body.contains("class=\"breached\""));
    let page = web.get("/vulns/CVE-D");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("acme-web-1") && page.body.contains("2026-10-07"));
    assert_eq!(web.get("/vulns?severity=urgent").status, 400);
    let page = web.get("/reports?tenant=acme&from=2026-10-01&to=2026-10-31");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Compliance report: acme") && page.body.contains("33.3 %"));
    let page = web.get("/reports?tenant=acme&from=2026-10-01&to=2026-10-31&format=csv");
    assert_eq!(
        csv_map(&page.body).get("sla,,due").map(String::as_str),
        Some("3")
    );
    assert_eq!(web.get("/reports?tenant=acme&from=10/01/2026").status, 400);

    app.user("gv", PW, &[(Some("globex"), Role::Viewer)]);
    let mut viewer = Web::new(&app.url);
    assert_eq!(viewer.login("gv", PW).status, 303);
    let page = viewer.get("/vulns");
    assert!(page.body.contains("CVE-G") && !page.body.contains("acme-web-1"));
    assert_eq!(viewer.get("/vulns/CVE-D").status, 404);
    assert_eq!(viewer.get("/reports?tenant=acme").status, 404);
    let page = viewer.get("/reports");
    assert!(
        page.body.contains("Compliance report: globex"),
        "the only tenant is chosen"
    );
}
