//! The dashboard in a real headless Chromium (Debian's `chromium` + `chromium-driver`),
//! driven over WebDriver with fantoccini: log in, read the overview, open a device and its
//! failure evidence, watch a deployment's progress change without a reload, approve as an
//! approver. Screenshots go to `target/screenshots/` (or `PATCHWARDEN_SCREENSHOTS`).
//! Skipped, with a printed reason, when chromium or chromedriver is missing.

mod support;

use fantoccini::{Client, ClientBuilder, Locator};
use patchwarden_app::authz::Role;
use patchwarden_wire::PackageState;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const PW: &str = "correct horse battery staple";

/// chromedriver, killed by its pid when dropped.
struct Driver {
    child: Child,
    port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn start_driver() -> Driver {
    let port = free_port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .arg("--allowed-ips=127.0.0.1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let driver = Driver { child, port };
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    driver
}

fn screenshots_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("PATCHWARDEN_SCREENSHOTS") {
        return PathBuf::from(dir);
    }
    let target = std::env::var("CARGO_TARGET_DIR").map_or_else(
        |_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"),
        PathBuf::from,
    );
    target.join("screenshots")
}

async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.expect("screenshot");
    let dir = screenshots_dir();
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    let path = dir.join(format!("{name}.png"));
    std::fs::write(&path, png).expect("write screenshot");
    println!("screenshot: {}", path.display());
}

async fn text_of(c: &Client, css: &str) -> String {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .text()
        .await
        .expect("text")
}

/// Waits (at most `secs`) until the element's text contains `want`.
async fn wait_text(c: &Client, css: &str, want: &str, secs: u64) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let text = match c.find(Locator::Css(css)).await {
            Ok(e) => e.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if text.contains(want) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{css} never showed {want:?}; last: {text:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn login(c: &Client, url: &str, user: &str, password: &str) {
    c.goto(&format!("{url}/login")).await.expect("login page");
    c.find(Locator::Id("login"))
        .await
        .expect("login field")
        .send_keys(user)
        .await
        .expect("type login");
    c.find(Locator::Id("password"))
        .await
        .expect("password field")
        .send_keys(password)
        .await
        .expect("type password");
    c.find(Locator::Css("form button[type=submit]"))
        .await
        .expect("submit")
        .click()
        .await
        .expect("click");
    wait_text(c, "h1", "Where we stand", 15).await;
}

async fn logout(c: &Client) {
    c.find(Locator::Css("header form button"))
        .await
        .expect("logout button")
        .click()
        .await
        .expect("logout");
    wait_text(c, "h2", "Log in", 15).await;
}

/// A KEV exposure first seen 40 days ago (past its deadline) and a medium one, on `device`.
fn seed_exposures(app: &App, device: &str) {
    use patchwarden_store::Store;
    let db = app.data_dir.join("patchwarden.db").display().to_string();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let store = patchwarden_store::SqliteStore::open(&db)
            .await
            .expect("store");
        let tenant = store
            .device(device)
            .await
            .expect("db")
            .expect("device")
            .tenant_id;
        let e = |cve: &str, rating: &str, kev: bool| patchwarden_store::ExposureRecord {
            device_id: device.into(),
            tenant_id: tenant.clone(),
            cve: cve.into(),
            package: "pw-demo".into(),
            installed_version: "1.0".into(),
            fix_state: "fixed".into(),
            fixed_version: Some("1.1".into()),
            fixed_by_update: Some("1.1".into()),
            rating: rating.into(),
            kev,
            priority: if kev { 90.0 } else { 30.0 },
            summary: Some("demo advisory".into()),
            ..Default::default()
        };
        let seen = patchwarden_server::now_ms() - 40 * 86_400_000;
        store
            .sync_device_exposures(
                device,
                seen,
                &[
                    e("CVE-2026-0001", "critical", true),
                    e("CVE-2026-0002", "medium", false),
                ],
            )
            .await
            .expect("exposures");
    });
}

#[test]
fn dashboard_in_headless_chromium() {
    for (what, path) in [("chromium", CHROMIUM), ("chromedriver", CHROMEDRIVER)] {
        if !Path::new(path).exists() {
            println!("SKIP: {what} not found at {path} (apt-get install chromium chromium-driver)");
            return;
        }
    }
    let app = spawn_app();
    let s = seed(&app);
    app.user(
        "approver@acme.example",
        PW,
        &[(Some("acme"), Role::Approver)],
    );
    seed_exposures(&app, &s.web1.id);
    let driver = start_driver();
    let profile = tempfile::tempdir().expect("profile dir");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": CHROMIUM,
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.path().display())],
            }),
        );
        let c = tokio::time::timeout(
            Duration::from_secs(60),
            ClientBuilder::rustls()
                .expect("tls")
                .capabilities(caps)
                .connect(&format!("http://127.0.0.1:{}", driver.port)),
        )
        .await
        .expect("chromium started in time")
        .expect("webdriver session");
        c.update_timeouts(fantoccini::wd::TimeoutConfiguration::new(
            Some(Duration::from_secs(30)),
            Some(Duration::from_secs(30)),
            Some(Duration::from_secs(0)),
        ))
        .await
        .expect("timeouts");
        let url = app.url.clone();

        // Log in as the first administrator; the overview shows the seeded estate.
        login(&c, &url, "admin", &app.admin_password).await;
        let kpis = text_of(&c, ".kpis").await;
        assert!(kpis.contains("25 %"), "{kpis}");
        assert!(kpis.contains("1 of 4 devices fully patched"), "{kpis}");
        let chart = c.find(Locator::Id("chart-d")).await.expect("chart");
        let desc = chart
            .prop("textContent")
            .await
            .expect("desc")
            .unwrap_or_default();
        assert_eq!(desc, "install_script_failed: 1");
        shot(&c, "overview").await;

        // The device list, then the device with the failure and its evidence.
        c.goto(&format!("{url}/devices")).await.expect("devices");
        wait_text(&c, "#count", "of 4", 10).await;
        shot(&c, "devices").await;
        c.find(Locator::LinkText("acme-web-1"))
            .await
            .expect("device link")
            .click()
            .await
            .expect("open device");
        wait_text(&c, "h1", "acme-web-1", 10).await;
        let evidence = text_of(&c, ".failure pre.evidence").await;
        assert!(
            evidence.contains("post-installation script subprocess returned error exit status 1")
        );
        assert!(text_of(&c, ".failure h3")
            .await
            .contains("install_script_failed"));
        shot(&c, "device").await;

        c.goto(&format!("{url}/failures")).await.expect("failures");
        wait_text(&c, "h2", "install_script_failed", 10).await;
        // Triage from the queue: assign the failure (a real form post with CSRF).
        c.find(Locator::Id("assignee-install_script_failed-1"))
            .await
            .expect("assignee input")
            .send_keys("admin")
            .await
            .expect("type assignee");
        c.find(Locator::Css(".assign-form button"))
            .await
            .expect("assign button")
            .click()
            .await
            .expect("assign");
        wait_text(&c, ".failure dd.assignee", "admin", 10).await;
        assert!(text_of(&c, ".failure dd.deadline").await.contains("UTC"));
        shot(&c, "failures").await;

        // Vulnerabilities (a breached KEV exposure seeded on acme-web-1), one CVE, a report.
        c.goto(&format!("{url}/vulns")).await.expect("vulns");
        wait_text(&c, "tr.breached", "CVE-2026-0001", 10).await;
        shot(&c, "vulns").await;
        c.find(Locator::LinkText("CVE-2026-0001"))
            .await
            .expect("cve link")
            .click()
            .await
            .expect("open cve");
        wait_text(&c, "h1", "CVE-2026-0001", 10).await;
        shot(&c, "vuln").await;
        c.goto(&format!("{url}/reports?tenant=acme"))
            .await
            .expect("report");
        wait_text(&c, "#rep-out + *", "acme-web-1", 10).await;
        shot(&c, "report").await;

        // A running deployment: a result posted through the agent API shows up without reload.
        c.goto(&format!("{url}/deployments/{}", s.globex_deployment))
            .await
            .expect("deployment");
        wait_text(&c, "#dep-progress", "0 of 1 devices done", 10).await;
        c.execute("window.__noReload = true;", vec![])
            .await
            .expect("mark page");
        let globex = support::Agent {
            url: s.globex1.url.clone(),
            id: s.globex1.id.clone(),
            secret: s.globex1.secret.clone(),
        };
        let agent = s.globex1;
        tokio::task::spawn_blocking(move || {
            assert!(agent.report(PackageState::Verified, None, &[]));
        })
        .await
        .expect("report");
        wait_text(&c, "#dep-progress", "1 of 1 devices done", 15).await;
        wait_text(&c, "#dep-status", "completed", 15).await;
        let same_page = c
            .execute("return window.__noReload === true;", vec![])
            .await
            .expect("js");
        assert_eq!(
            same_page,
            serde_json::json!(true),
            "the page was not reloaded"
        );
        shot(&c, "deployment-live").await;
        c.goto(&format!("{url}/deployments"))
            .await
            .expect("deployments");
        wait_text(&c, "h1", "Deployments", 10).await;
        shot(&c, "deployments").await;

        // Start a deployment from the dashboard's form and watch it finish without reload.
        c.find(Locator::Css("details.new-deployment summary"))
            .await
            .expect("form summary")
            .click()
            .await
            .expect("open form");
        c.find(Locator::Id("nd-tenant"))
            .await
            .expect("tenant select")
            .select_by_label("globex")
            .await
            .expect("choose globex");
        c.find(Locator::Css("input[name=target][value=devices]"))
            .await
            .expect("named devices")
            .click()
            .await
            .expect("choose named");
        c.find(Locator::Id("nd-devices"))
            .await
            .expect("devices input")
            .send_keys("globex-app-1")
            .await
            .expect("type device");
        shot(&c, "deployment-form").await;
        c.find(Locator::Id("nd-submit"))
            .await
            .expect("submit")
            .click()
            .await
            .expect("start");
        wait_text(&c, "#dep-status", "running", 15).await;
        wait_text(&c, "#dep-progress", "0 of 1 devices done", 10).await;
        tokio::task::spawn_blocking(move || {
            assert!(globex.report(PackageState::Verified, None, &[]));
        })
        .await
        .expect("report");
        wait_text(&c, "#dep-status", "completed", 15).await;
        logout(&c).await;

        // An approver of acme approves the waiting deployment.
        login(&c, &url, "approver@acme.example", PW).await;
        c.goto(&format!("{url}/deployments/{}", s.pending_deployment))
            .await
            .expect("pending deployment");
        wait_text(&c, "#dep-status", "pending_approval", 10).await;
        assert!(
            c.find(Locator::Id("cancel")).await.is_err(),
            "no cancel for an approver"
        );
        shot(&c, "approval").await;
        c.find(Locator::Id("reason"))
            .await
            .expect("reason")
            .send_keys("reviewed in the browser test")
            .await
            .expect("type reason");
        c.find(Locator::Id("approve"))
            .await
            .expect("approve button")
            .click()
            .await
            .expect("approve");
        wait_text(&c, "#dep-status", "running", 15).await;
        assert!(text_of(&c, ".status-line")
            .await
            .contains("approved by approver@acme.example"));

        // A phone-sized window still shows the overview.
        c.set_window_size(390, 844).await.expect("phone size");
        c.goto(&format!("{url}/")).await.expect("overview");
        wait_text(&c, "h1", "Where we stand", 10).await;
        shot(&c, "overview-phone").await;
        c.close().await.expect("close session");
    });
    drop(driver);
    let (_, v) = app.op(
        "GET",
        &format!("/api/v1/deployments/{}", s.pending_deployment),
        None,
    );
    assert_eq!(v["status"], "running");
}
