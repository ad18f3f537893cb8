//! Vulnerability management over real HTTP: feeds imported all-or-nothing, devices matched
//! on their inventory, exposures closed when a fixed version is reported.

use base64::Engine;
use serde_json::{json, Value};
use std::path::PathBuf;

fn fixture(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../vuln/tests/fixtures")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

mod support;

use support::{spawn_app, App};

fn call(method: &str, url: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    support::call(method, url, Some(token), body)
}

trait Feeds {
    fn import(&self, kind: &str, bytes: &[u8]) -> (u16, Value);
}

impl Feeds for App {
    fn import(&self, kind: &str, bytes: &[u8]) -> (u16, Value) {
        let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
        self.op(
            "POST",
            "/api/v1/feeds",
            Some(json!({"kind": kind, "content_base64": b64})),
        )
    }
}

/// A bookworm device with openssh-server (source openssh) at `version`, and libldb2 whose
/// binary version differs from its source (samba).
fn inventory(ssh: &str, boot: &str) -> Value {
    let pkg = |name: &str, source: &str, version: &str, source_version: &str| json!({"name": name, "source": source, "version": version, "source_version": source_version, "arch": "amd64", "status": "ii"});
    json!({
        "hostname": "web1", "kernel": "6.1.0-18-amd64", "boot_id": boot, "package_manager": "apt",
        "os": {"id": "debian", "version": "12", "codename": "bookworm", "pretty_name": "Debian GNU/Linux 12 (bookworm)"},
        "packages": [
            pkg("openssh-server", "openssh", ssh, ssh),
            pkg("sudo", "sudo", "1.9.13p3-1+deb12u1", "1.9.13p3-1+deb12u1"),
        ],
        "upgradable": [{"name": "openssh-server", "installed_version": ssh, "candidate_version": "1:9.2p1-2+deb12u3",
                        "arch": "amd64", "security": true}],
        "held": [], "reboot_required": false, "health": {"interrupted": false, "broken_packages": []},
        "disk": {"root_free_bytes": 1, "cache_free_bytes": 1}
    })
}

#[test]
fn feeds_match_devices_and_exposures_close_when_fixed() {
    let app = spawn_app();
    // Enroll a device and report an inventory with the vulnerable openssh.
    let (_, tok) = app.op("POST", "/api/v1/enroll-tokens", Some(json!({})));
    let enroll = json!({"token": tok["token"], "hostname": "web1", "agent_version": "t", "protocol_version": 1});
    let (status, dev) = call(
        "POST",
        &format!("{}/api/v1/agent/enroll", app.url),
        "none",
        Some(enroll),
    );
    assert_eq!(status, 200, "{dev}");
    let secret = dev["device_secret"].as_str().expect("secret").to_owned();
    let checkin = |ssh: &str, hash: &str| {
        let body = json!({"agent_version": "t", "protocol_version": 1, "inventory_hash": hash, "inventory": inventory(ssh, "b1")});
        let (status, v) = call(
            "POST",
            &format!("{}/api/v1/agent/checkin", app.url),
            &secret,
            Some(body),
        );
        assert_eq!(status, 200, "{v}");
    };
    checkin("1:9.2p1-2+deb12u2", "h1");

    // A truncated feed is rejected whole, naming where it broke; nothing is imported.
    let (status, v) = app.import(
        "debian-tracker",
        &fixture("malformed/debian_tracker_truncated.json"),
    );
    assert_eq!(status, 400, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap_or("")
            .contains("previous data stays in force"),
        "{v}"
    );
    let (_, vulns) = app.op("GET", "/api/v1/vulns", None);
    assert_eq!(vulns.as_array().map(Vec::len), Some(0));

    // Good feeds: the tracker, KEV and EPSS.
    for (kind, file) in [
        ("debian-tracker", "debian_tracker.json"),
        ("cisa-kev", "kev.json"),
        ("epss", "epss.csv"),
    ] {
        let (status, v) = app.import(kind, &fixture(file));
        assert_eq!(status, 200, "{kind}: {v}");
        assert!(v["records"].as_u64() > Some(0), "{v}");
    }
    let (_, feeds) = app.op("GET", "/api/v1/feeds", None);
    let tracker = feeds
        .as_array()
        .and_then(|f| f.iter().find(|x| x["source"] == "debian-tracker"))
        .cloned()
        .expect("tracker");
    assert!(
        tracker["last_error"].is_null(),
        "a good import clears the error: {tracker}"
    );
    assert!(tracker["last_success"].is_string());

    // Matched at import (incremental rematch of the affected device).
    let (_, vulns) = app.op("GET", "/api/v1/vulns", None);
    let rows = vulns.as_array().cloned().unwrap_or_default();
    let ssh = rows
        .iter()
        .find(|r| r["cve"] == "CVE-2024-6387")
        .cloned()
        .unwrap_or_else(|| panic!("{vulns:#}"));
    assert_eq!(ssh["package"], "openssh");
    assert_eq!(ssh["binaries"], json!(["openssh-server"]));
    assert_eq!(ssh["installed_version"], "1:9.2p1-2+deb12u2");
    assert_eq!(ssh["fixed_version"], "1:9.2p1-2+deb12u3");
    assert_eq!(
        ssh["fixed_by_update"], "1:9.2p1-2+deb12u3",
        "the pending update closes it"
    );
    assert!(ssh["sla_due"].is_string(), "{ssh}");
    assert!(
        rows.iter().all(|r| r["cve"] != "CVE-2021-3156"),
        "sudo 1.9.13 is fixed in bookworm"
    );
    // A malformed re-import keeps the previous data in force.
    let (status, _) = app.import(
        "debian-tracker",
        &fixture("malformed/debian_tracker_bad_version.json"),
    );
    assert_eq!(status, 400);
    let (_, feeds) = app.op("GET", "/api/v1/feeds", None);
    let tracker = feeds
        .as_array()
        .and_then(|f| f.iter().find(|x| x["source"] == "debian-tracker"))
        .cloned()
        .expect("tracker");
    assert!(tracker["last_error"].is_string(), "{tracker}");
    let (_, still) = app.op("GET", "/api/v1/vulns/CVE-2024-6387", None);
    assert_eq!(still.as_array().map(Vec::len), Some(1), "{still:#}");
    // Filters.
    let (status, bad) = app.op("GET", "/api/v1/vulns?severity=extreme", None);
    assert_eq!(status, 400, "{bad}");

    // The device upgrades: its next inventory closes the exposure, with the close time.
    checkin("1:9.2p1-2+deb12u3", "h2");
    let (_, open) = app.op("GET", "/api/v1/vulns", None);
    assert!(
        open.as_array()
            .is_some_and(|r| r.iter().all(|x| x["cve"] != "CVE-2024-6387")),
        "{open:#}"
    );
    let (_, history) = app.op("GET", "/api/v1/vulns/CVE-2024-6387", None);
    assert!(history[0]["closed_at"].is_string(), "{history:#}");
}

/// Serves `bodies` in turn, one HTTP response per connection, on loopback.
fn serve(bodies: Vec<Vec<u8>>) -> (String, std::thread::JoinHandle<()>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/feed", listener.local_addr().expect("addr"));
    let handle = std::thread::spawn(move || {
        for body in bodies {
            let Ok((mut conn, _)) = listener.accept() else {
                return;
            };
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = conn.write_all(head.as_bytes());
            let _ = conn.write_all(&body);
        }
    });
    (url, handle)
}

#[test]
fn feeds_from_a_url_are_refreshed_on_their_schedule() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let store =
            patchwarden_store::SqliteStore::open(&dir.path().join("t.db").display().to_string())
                .await
                .expect("db");
        let clock = patchwarden_app::ManualClock::at(1_000_000);
        let state = patchwarden_app::App::new(
            std::sync::Arc::new(store),
            patchwarden_app::AppConfig::default(),
            clock.clone(),
        );
        // First fetch: the KEV catalog; the scheduled one gets a truncated catalog.
        let (url, server) = serve(vec![
            fixture("kev.json"),
            fixture("malformed/kev_truncated.json"),
        ]);
        let first =
            patchwarden_app::vulns::import(&state, "kev", "cisa-kev", Some(&url), None, Some(3600))
                .await
                .expect("import");
        assert!(first.records > 0);
        // Not due yet: nothing fetched.
        clock.set(1_000_000 + 1_800_000);
        patchwarden_app::vulns::refresh_due(&state).await;
        let feeds = state.store().list_feeds().await.expect("feeds");
        assert_eq!(feeds[0].last_attempt_at, Some(1_000_000));
        // Due: fetched, rejected as truncated, the previous catalog stays in force.
        clock.set(1_000_000 + 3_600_001);
        patchwarden_app::vulns::refresh_due(&state).await;
        let feeds = state.store().list_feeds().await.expect("feeds");
        assert_eq!(feeds[0].last_attempt_at, Some(1_000_000 + 3_600_001));
        assert!(
            feeds[0]
                .last_error
                .as_deref()
                .is_some_and(|e| !e.is_empty()),
            "{feeds:?}"
        );
        assert_eq!(
            feeds[0].records as u64, first.records,
            "the previous data stays"
        );
        assert_eq!(feeds[0].imported_at, Some(1_000_000));
        let _ = server.join();
    });
}
