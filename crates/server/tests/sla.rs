//! SLA policies per tenant over real HTTP: a tenant's policy moves its own exposures'
//! deadlines and breach state (and no other tenant's); bad input is refused naming the field,
//! with nothing stored; a tenant-scoped token reaches only its own tenant's policy.

mod support;

use base64::Engine;
use patchwarden_server::ManualClock;
use patchwarden_store::{ApiToken, HistoryStore, Store};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use support::{call, spawn_app_with_clock, App};

/// 2026-01-01T00:00:00Z.
const T0: i64 = 1_767_225_600_000;
const DAY: i64 = 86_400_000;

fn fixture(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../vuln/tests/fixtures")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// A bookworm host with a vulnerable openssh (CVE-2024-6387, not yet rated; CVE-2099-10001,
/// low) running a vulnerable kernel (CVE-2024-1086, in CISA KEV).
fn inventory(hostname: &str) -> Value {
    let pkg = |name: &str, source: &str, version: &str| json!({"name": name, "source": source, "version": version, "source_version": version, "arch": "amd64", "status": "ii"});
    json!({
        "hostname": hostname, "kernel": "6.1.0-18-amd64", "boot_id": "b1", "package_manager": "apt",
        "os": {"id": "debian", "version": "12", "codename": "bookworm", "pretty_name": "Debian GNU/Linux 12 (bookworm)"},
        "packages": [
            pkg("openssh-server", "openssh", "1:9.2p1-2+deb12u2"),
            pkg("linux-image-6.1.0-18-amd64", "linux-signed-amd64", "6.1.69+1"),
        ],
        "upgradable": [], "held": [], "reboot_required": false,
        "health": {"interrupted": false, "broken_packages": []},
        "disk": {"root_free_bytes": 1, "cache_free_bytes": 1}
    })
}

fn enroll(app: &App, tenant: &str, hostname: &str) {
    let (status, tok) = app.op(
        "POST",
        "/api/v1/enroll-tokens",
        Some(json!({"tenant": tenant})),
    );
    assert_eq!(status, 201, "{tok}");
    let (status, dev) = call(
        "POST",
        &format!("{}/api/v1/agent/enroll", app.url),
        None,
        Some(
            json!({"token": tok["token"], "hostname": hostname, "agent_version": "t", "protocol_version": 1}),
        ),
    );
    assert_eq!(status, 200, "{dev}");
    let secret = dev["device_secret"].as_str().expect("secret");
    let (status, v) = call(
        "POST",
        &format!("{}/api/v1/agent/checkin", app.url),
        Some(secret),
        Some(
            json!({"agent_version": "t", "protocol_version": 1, "inventory_hash": format!("inv-{hostname}"), "inventory": inventory(hostname)}),
        ),
    );
    assert_eq!(status, 200, "{v}");
}

fn import(app: &App, kind: &str, file: &str) {
    let b64 = base64::engine::general_purpose::STANDARD.encode(fixture(file));
    let (status, v) = app.op(
        "POST",
        "/api/v1/feeds",
        Some(json!({"kind": kind, "content_base64": b64})),
    );
    assert_eq!(status, 200, "{kind}: {v}");
}

/// (hostname, CVE) → (sla_due, sla_state, sla_seconds_left, sla_basis) of open exposures.
fn deadlines(app: &App) -> BTreeMap<(String, String), (Value, String, Value, String)> {
    let (status, rows) = app.op("GET", "/api/v1/vulns", None);
    assert_eq!(status, 200, "{rows}");
    rows.as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            (
                (
                    r["hostname"].as_str().unwrap_or("").to_owned(),
                    r["cve"].as_str().unwrap_or("").to_owned(),
                ),
                (
                    r["sla_due"].clone(),
                    r["sla_state"].as_str().unwrap_or("").to_owned(),
                    r["sla_seconds_left"].clone(),
                    r["sla_basis"].as_str().unwrap_or("").to_owned(),
                ),
            )
        })
        .collect()
}

fn key(host: &str, cve: &str) -> (String, String) {
    (host.to_owned(), cve.to_owned())
}

fn policy(app: &App, tenant: &str) -> Value {
    let (status, v) = app.op("GET", &format!("/api/v1/sla-policy?tenant={tenant}"), None);
    assert_eq!(status, 200, "{v}");
    v
}

#[test]
fn a_tenants_sla_policy_moves_its_own_deadlines_only() {
    let clock = ManualClock::at(T0);
    let app = spawn_app_with_clock(Some(clock.clone()));
    enroll(&app, "acme", "acme-web");
    enroll(&app, "globex", "globex-web");
    import(&app, "debian-tracker", "debian_tracker.json");
    import(&app, "cisa-kev", "kev.json");

    // The defaults: low 180 days, not yet rated 90, KEV 14 (CISA's date is long past).
    let p = policy(&app, "acme");
    assert_eq!(p["default"], true, "{p}");
    assert_eq!(
        (
            &p["kev_days"],
            &p["critical_days"],
            &p["high_days"],
            &p["medium_days"],
            &p["low_days"]
        ),
        (&json!(14), &json!(15), &json!(30), &json!(90), &json!(180))
    );
    let before = deadlines(&app);
    for host in ["acme-web", "globex-web"] {
        let low = &before[&key(host, "CVE-2099-10001")];
        assert_eq!(low.0, "2026-06-30", "{low:?}");
        assert_eq!(low.1, "on_track");
        assert_eq!(low.2, json!(180 * 86_400));
        assert_eq!(before[&key(host, "CVE-2024-6387")].0, "2026-04-01");
        let kev = &before[&key(host, "CVE-2024-1086")];
        assert_eq!(kev.0, "2026-01-15", "{kev:?}");
        assert!(kev.3.contains("known exploited: 14 days"), "{kev:?}");
    }

    // acme tightens low to 7 days and KEV to 3 days.
    let (status, v) = app.op(
        "PUT",
        "/api/v1/sla-policy",
        Some(json!({"tenant": "acme", "low_days": 7, "kev_days": 3})),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["default"], false);
    assert_eq!((&v["low_days"], &v["kev_days"]), (&json!(7), &json!(3)));
    assert_eq!(v["high_days"], 30, "the others are kept: {v}");
    assert!(v["updated_by"].is_string(), "{v}");
    assert_eq!(policy(&app, "acme"), v);
    assert_eq!(policy(&app, "globex")["default"], true);

    let after = deadlines(&app);
    let acme_low = &after[&key("acme-web", "CVE-2099-10001")];
    assert_eq!(acme_low.0, "2026-01-08", "{acme_low:?}");
    assert!(acme_low.3.contains("7 days"), "{acme_low:?}");
    assert_eq!(after[&key("acme-web", "CVE-2024-1086")].0, "2026-01-04");
    assert_eq!(
        after[&key("acme-web", "CVE-2024-6387")].0,
        "2026-04-01",
        "not yet rated keeps its 90 days"
    );
    for cve in ["CVE-2099-10001", "CVE-2024-1086", "CVE-2024-6387"] {
        assert_eq!(
            after[&key("globex-web", cve)],
            before[&key("globex-web", cve)],
            "globex's deadlines do not move ({cve})"
        );
    }

    // Ten days later acme's low exposure is breached (3 days overdue); globex's is on track.
    clock.set(T0 + 10 * DAY);
    let later = deadlines(&app);
    let acme_low = &later[&key("acme-web", "CVE-2099-10001")];
    assert_eq!(acme_low.1, "breached", "{acme_low:?}");
    assert_eq!(acme_low.2, json!(-3 * 86_400));
    assert_eq!(later[&key("acme-web", "CVE-2024-1086")].1, "breached");
    let globex_low = &later[&key("globex-web", "CVE-2099-10001")];
    assert_eq!(globex_low.1, "on_track");
    assert_eq!(globex_low.2, json!(170 * 86_400));
    // The compliance report and the daily snapshot count breaches by each tenant's policy.
    let report = |tenant: &str| {
        let (status, r) = app.op(
            "GET",
            &format!(
                "/api/v1/reports/compliance?tenant={tenant}&from=2026-01-01&to=2026-01-11&format=json"
            ),
            None,
        );
        assert_eq!(status, 200, "{r}");
        r["devices_out_of_compliance"].clone()
    };
    let acme_out = report("acme");
    assert_eq!(acme_out[0]["hostname"], "acme-web", "{acme_out}");
    assert_eq!(acme_out[0]["breached"], 2, "{acme_out}");
    assert_eq!(report("globex"), json!([]));
    let (status, v) = app.op("POST", "/api/v1/history/snapshot", None);
    assert_eq!(status, 200, "{v}");
    let db = app.data_dir.join("patchwarden.db").display().to_string();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let breaches: BTreeMap<String, i64> = rt.block_on(async {
        let store = patchwarden_store::SqliteStore::open(&db)
            .await
            .expect("store");
        let names: BTreeMap<String, String> = store
            .list_tenants()
            .await
            .expect("tenants")
            .into_iter()
            .map(|t| (t.id, t.name))
            .collect();
        store
            .snapshots(&None, "2026-01-11", "2026-01-11")
            .await
            .expect("snapshots")
            .into_iter()
            .map(|s| (names[&s.tenant_id].clone(), s.sla_breaches))
            .collect()
    });
    assert_eq!(breaches.get("acme"), Some(&2), "{breaches:?}");
    assert_eq!(breaches.get("globex"), Some(&0), "{breaches:?}");
    // `vuln show` carries the same deadlines.
    let (_, show) = app.op("GET", "/api/v1/vulns/CVE-2099-10001", None);
    let acme_row = show
        .as_array()
        .and_then(|r| r.iter().find(|x| x["hostname"] == "acme-web"))
        .cloned()
        .expect("acme row");
    assert_eq!(
        (&acme_row["sla_due"], &acme_row["sla_state"]),
        (&json!("2026-01-08"), &json!("breached"))
    );

    // Bad input is refused naming the field; nothing changes, no tenant is created.
    let stored = policy(&app, "acme");
    for (body, field) in [
        (
            json!({"tenant": "acme", "critical_days": 0}),
            "critical_days",
        ),
        (json!({"tenant": "acme", "high_days": 3651}), "high_days"),
        (json!({"tenant": "acme", "kev_days": -5}), "kev_days"),
        (
            json!({"tenant": "acme", "medium_days": "soon"}),
            "medium_days",
        ),
        (json!({"tenant": "acme", "critcal_days": 7}), "critcal_days"),
        (json!({"tenant": "newco", "low_days": 0}), "low_days"),
        (json!({"tenant": "bad name!", "low_days": 5}), "tenant name"),
    ] {
        let (status, v) = app.op("PUT", "/api/v1/sla-policy", Some(body.clone()));
        // 400, or 422 for a body that does not fit the type (the API's invalid_body).
        assert!(status == 400 || status == 422, "{body}: {status} {v}");
        let message = v["message"].as_str().unwrap_or("");
        assert!(message.contains(field), "{body}: {message}");
    }
    assert_eq!(policy(&app, "acme"), stored, "nothing stored changed");
    assert_eq!(policy(&app, "globex")["default"], true);
    let (status, v) = app.op("GET", "/api/v1/sla-policy?tenant=newco", None);
    assert_eq!(status, 404, "no tenant was created: {v}");
    assert_eq!(deadlines(&app), later);

    // A token of globex sees and sets only globex's policy.
    rt.block_on(async {
        let store = patchwarden_store::SqliteStore::open(&db)
            .await
            .expect("store");
        let globex = store.ensure_tenant("globex", 0).await.expect("tenant");
        store
            .insert_api_token(&ApiToken {
                id: "tok_globex_admin".into(),
                tenant_id: Some(globex.id),
                name: "globex admin".into(),
                role: patchwarden_app::authz::Role::Admin,
                token_hash: patchwarden_app::actor::hash_token("globex-secret"),
                created_at: 0,
                revoked_at: None,
            })
            .await
            .expect("token");
    });
    let globex = |method: &str, path: &str, body: Option<Value>| {
        call(
            method,
            &format!("{}{path}", app.url),
            Some("globex-secret"),
            body,
        )
    };
    let (status, v) = globex("GET", "/api/v1/sla-policy", None);
    assert_eq!((status, &v["tenant"]), (200, &json!("globex")), "{v}");
    let (status, v) = globex("GET", "/api/v1/sla-policy?tenant=acme", None);
    assert_eq!(status, 403, "{v}");
    let (status, v) = globex(
        "PUT",
        "/api/v1/sla-policy",
        Some(json!({"tenant": "initech", "low_days": 1})),
    );
    assert_eq!(status, 403, "{v}");
    let (status, _) = app.op("GET", "/api/v1/sla-policy?tenant=initech", None);
    assert_eq!(status, 404, "a tenant token creates no tenant");
    let (status, v) = globex(
        "PUT",
        "/api/v1/sla-policy",
        Some(json!({"tenant": "acme", "low_days": 1})),
    );
    assert_eq!(status, 403, "{v}");
    assert_eq!(policy(&app, "acme"), stored);
    let (status, v) = globex(
        "PUT",
        "/api/v1/sla-policy",
        Some(json!({"critical_days": 5})),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (&v["tenant"], &v["critical_days"]),
        (&json!("globex"), &json!(5))
    );

    // Back to the defaults.
    let (status, v) = app.op(
        "PUT",
        "/api/v1/sla-policy",
        Some(json!({"tenant": "acme", "reset": true})),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["low_days"], 180);
    assert_eq!(
        deadlines(&app)[&key("acme-web", "CVE-2099-10001")].0,
        "2026-06-30"
    );
}
