//! Dashboard render time with 10,000 devices: the real server (`run_with_clock`) on a real
//! SQLite file seeded through the `Store` API with 10,000 devices in 10 tenants, each with an
//! inventory, pending updates on a third, three exposures each (some past their SLA deadline,
//! some KEV) and 89 days of daily history; then pages are fetched over loopback HTTP with a
//! logged-in session and timed (median, p95, max of 20 after a warm-up).
//!
//! Run: `cargo bench -p patchwarden-server --bench render` (DEVICES=N to change the size,
//! KEEP=1 to keep the database for a look with sqlite3).
//! Results: docs/BENCHMARKS.md. No assertion: this measures.

use patchwarden_store::{
    DeviceInventorySummary, EnrollToken, ExposureRecord, HistoryStore, InventoryUpdate, Snapshot,
    SqliteStore, Store,
};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const DAY: i64 = 86_400_000;

fn now_ms() -> i64 {
    patchwarden_server::now_ms()
}

fn device(i: usize, tenant: &str) -> patchwarden_store::Device {
    patchwarden_store::Device {
        id: format!("dev_{i:05}"),
        tenant_id: tenant.into(),
        hostname: format!("host-{i:05}.example.net"),
        machine_id: format!("m{i}"),
        labels: BTreeMap::from([("env".to_owned(), ["prod", "staging"][i % 2].to_owned())]),
        secret_hash: format!("secret-{i}"),
        enroll_token_id: None,
        enrolled_at: 0,
        last_seen: None,
        agent_version: "bench".into(),
        checkin_interval_secs: 60,
        inventory_hash: None,
        inventory_at: None,
        summary: DeviceInventorySummary::default(),
    }
}

fn inventory_json(host: &str, pending: bool) -> String {
    let packages: Vec<serde_json::Value> = (0..60)
        .map(|k| {
            serde_json::json!({"name": format!("pkg{k}"), "source": format!("pkg{k}"),
                "version": "1.0-1", "source_version": "1.0-1", "arch": "amd64", "status": "ii"})
        })
        .collect();
    let upgradable: Vec<serde_json::Value> = if pending {
        vec![
            serde_json::json!({"name": "openssl", "installed_version": "3.0.11-1~deb12u1",
            "candidate_version": "3.0.15-1~deb12u1", "arch": "amd64", "security": true,
            "origins": ["Debian-Security"], "held": false}),
        ]
    } else {
        vec![]
    };
    serde_json::json!({"hostname": host, "os": {"id": "debian", "version": "12",
        "codename": "bookworm", "pretty_name": "Debian GNU/Linux 12 (bookworm)"},
        "kernel": "6.1.0-28-amd64", "boot_id": "b", "package_manager": "apt",
        "packages": packages, "upgradable": upgradable})
    .to_string()
}

async fn seed(store: &SqliteStore, devices: usize, now: i64) {
    let started = Instant::now();
    let mut tenants = Vec::new();
    for t in 0..10 {
        let tenant = store
            .ensure_tenant(&format!("customer-{t:02}"), 0)
            .await
            .expect("tenant");
        store
            .insert_enroll_token(&EnrollToken {
                id: format!("et{t}"),
                tenant_id: tenant.id.clone(),
                token_hash: format!("bench-{t}"),
                labels: BTreeMap::new(),
                created_at: 0,
                expires_at: i64::MAX,
                revoked_at: None,
                uses: 0,
                max_uses: None,
            })
            .await
            .expect("token");
        tenants.push(tenant);
    }
    for i in 0..devices {
        let t = &tenants[i % tenants.len()];
        let d = store
            .enroll_device(&format!("bench-{}", i % tenants.len()), 0, device(i, &t.id))
            .await
            .expect("db")
            .expect("enrolled");
        let pending = i % 3 == 0;
        let host = d.hostname.clone();
        store
            .record_checkin(
                &d.id,
                now - (i as i64 % 5) * 3_600_000 * 7,
                "bench",
                Some(&InventoryUpdate {
                    hash: format!("h{i}"),
                    json: inventory_json(&host, pending),
                    summary: DeviceInventorySummary {
                        os: "Debian GNU/Linux 12 (bookworm)".into(),
                        kernel: "6.1.0-28-amd64".into(),
                        pending_updates: i64::from(pending),
                        security_updates: i64::from(pending),
                        reboot_required: i % 11 == 0,
                    },
                    hostname: host,
                }),
            )
            .await
            .expect("checkin");
        let exposures: Vec<ExposureRecord> = (0..3)
            .map(|k| ExposureRecord {
                device_id: d.id.clone(),
                tenant_id: t.id.clone(),
                cve: format!("CVE-2026-{:04}", (i * 3 + k) % 400),
                package: "openssl".into(),
                installed_version: "3.0.11-1~deb12u1".into(),
                fix_state: "fixed".into(),
                fixed_version: Some("3.0.15-1~deb12u1".into()),
                rating: ["critical", "high", "medium", "low"][(i + k) % 4].into(),
                kev: (i + k) % 17 == 0,
                priority: 10.0 + k as f64,
                ..Default::default()
            })
            .collect();
        // First seen between 0 and 60 days ago: some deadlines have passed.
        let seen = now - (i as i64 % 60) * DAY;
        store
            .sync_device_exposures(&d.id, seen, &exposures)
            .await
            .expect("exposures");
    }
    for t in &tenants {
        let n = (devices / tenants.len()) as i64;
        for back in 1..90 {
            let day = time::OffsetDateTime::from_unix_timestamp((now - back * DAY) / 1000)
                .expect("day")
                .date()
                .to_string();
            store
                .put_snapshot(&Snapshot {
                    tenant_id: t.id.clone(),
                    day,
                    taken_at: now - back * DAY,
                    devices: n,
                    fully_patched: n * 2 / 3 - back,
                    security_pending: n / 3 + back,
                    exposures_open: n * 3 + back * 5,
                    critical: n * 3 / 4 + back,
                    high: n * 3 / 4,
                    kev_open: n / 6,
                    sla_breaches: back * 3,
                    failures: BTreeMap::from([
                        ("lock_held".to_owned(), back % 7),
                        ("dependency_conflict".to_owned(), back % 4),
                    ]),
                    ..Default::default()
                })
                .await
                .expect("snapshot");
        }
    }
    eprintln!(
        "seeded {devices} devices, {} exposures, 89 days of history in {:.1} s",
        devices * 3,
        started.elapsed().as_secs_f64()
    );
}

/// A session cookie for `admin`.
fn login(base: &str, password: &str) -> String {
    let agent = ureq::AgentBuilder::new().redirects(0).build();
    let form = agent
        .get(&format!("{base}/login"))
        .call()
        .expect("login form");
    let cookie = form
        .all("set-cookie")
        .iter()
        .map(|c| c.split(';').next().unwrap_or_default().to_owned())
        .collect::<Vec<_>>()
        .join("; ");
    let body = form.into_string().expect("body");
    let marker = "name=\"csrf\" value=\"";
    let start = body.find(marker).expect("csrf") + marker.len();
    let csrf = &body[start..start + body[start..].find('"').expect("end")];
    let resp = match agent
        .post(&format!("{base}/login"))
        .set("Cookie", &cookie)
        .send_form(&[
            ("login", "admin"),
            ("password", password),
            ("csrf", csrf),
            ("next", "/"),
        ]) {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("login: {e}"),
    };
    resp.all("set-cookie")
        .iter()
        .map(|c| c.split(';').next().unwrap_or_default().to_owned())
        .collect::<Vec<_>>()
        .join("; ")
}

fn time_page(base: &str, cookie: &str, path: &str, token: &str) {
    let agent = ureq::AgentBuilder::new()
        .redirects(0)
        .timeout(Duration::from_secs(120))
        .build();
    let get = || {
        let t = Instant::now();
        let mut req = agent.get(&format!("{base}{path}")).set("Cookie", cookie);
        if path.starts_with("/api/") {
            req = req.set("Authorization", &format!("Bearer {token}"));
        }
        let resp = req.call().unwrap_or_else(|e| panic!("{path}: {e}"));
        let len = resp.into_string().expect("body").len();
        (t.elapsed(), len)
    };
    let (_, len) = get();
    let mut times: Vec<Duration> = (0..20).map(|_| get().0).collect();
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{path:<58} median {:>7.1} ms  p95 {:>7.1} ms  max {:>7.1} ms  ({} KiB)",
        ms(times[10]),
        ms(times[18]),
        ms(times[19]),
        len / 1024
    );
}

fn main() {
    let devices: usize = std::env::var("DEVICES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    // tmpfs when there is one: seeding is 30,000 durable transactions.
    let root = if std::path::Path::new("/dev/shm").is_dir() {
        tempfile::tempdir_in("/dev/shm")
    } else {
        tempfile::tempdir()
    }
    .expect("tempdir");
    let data_dir = root.path().join("data");
    let config = patchwarden_server::ServerConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        data_dir: data_dir.clone(),
        database_url: None,
        checkin_interval_secs: 60,
        stale_after_secs: None,
        offline_after_secs: None,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = rt.spawn(patchwarden_server::run(config, async move {
        let _ = stopped.await;
    }));
    let deadline = Instant::now() + Duration::from_secs(30);
    let base = loop {
        if let Ok(u) = std::fs::read_to_string(data_dir.join("server-url")) {
            break u.trim().to_owned();
        }
        assert!(Instant::now() < deadline, "server did not start");
        std::thread::sleep(Duration::from_millis(20));
    };
    let db = data_dir.join("patchwarden.db").display().to_string();
    let now = now_ms();
    rt.block_on(async {
        let store = SqliteStore::open(&db).await.expect("store");
        seed(&store, devices, now).await;
    });
    let read = |f: &str| {
        std::fs::read_to_string(data_dir.join(f))
            .expect("credential")
            .trim()
            .to_owned()
    };
    let (token, password) = (read("admin-token"), read("admin-password"));
    let t = Instant::now();
    let resp = ureq::post(&format!("{base}/api/v1/history/snapshot"))
        .set("Authorization", &format!("Bearer {token}"))
        .call()
        .expect("snapshot");
    println!(
        "{:<58} {:>7.1} ms  {}",
        "POST /api/v1/history/snapshot (10 tenants)",
        t.elapsed().as_secs_f64() * 1000.0,
        resp.into_string().unwrap_or_default()
    );
    let cookie = login(&base, &password);
    for path in [
        "/",
        "/?tenant=customer-03",
        "/devices",
        "/devices?page=150",
        "/devices?sort=security&dir=desc",
        "/devices?q=host-0999&status=stale",
        "/devices?patch=security&tenant=customer-05",
        "/devices/dev_04242",
        "/vulns?severity=critical&kev=1",
        "/vulns?tenant=customer-01&severity=critical",
        "/reports?tenant=customer-02",
        "/api/v1/reports/compliance?tenant=customer-02&format=pdf",
    ] {
        time_page(&base, &cookie, path, &token);
    }
    let _ = stop.send(());
    let _ = rt.block_on(server);
    if std::env::var_os("KEEP").is_some() {
        let kept = root.keep();
        eprintln!("kept {}", kept.display());
    }
}
