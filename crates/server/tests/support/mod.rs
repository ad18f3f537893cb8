//! Shared by the dashboard tests (`web.rs`, `browser.rs`): the server on a random loopback
//! port with a fresh SQLite file, seeded through the real agent and operator APIs, and a
//! small cookie-keeping HTTP client that does not follow redirects.
#![allow(dead_code)]

use patchwarden_app::authz::Role;
use patchwarden_store::Store;
use patchwarden_wire::agent::*;
use patchwarden_wire::{FailureClass, PackageState, PROTOCOL_VERSION};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub struct App {
    pub url: String,
    pub admin: String,
    pub admin_password: String,
    pub data_dir: PathBuf,
    _dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for App {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub fn spawn_app() -> App {
    spawn_app_with_clock(None)
}

/// The server with its time taken from `clock` (tests move a `ManualClock` instead of sleeping).
pub fn spawn_app_with_clock(clock: Option<std::sync::Arc<dyn patchwarden_server::Clock>>) -> App {
    let clock = clock.unwrap_or_else(|| std::sync::Arc::new(patchwarden_server::SystemClock));
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("data");
    let (url, stop, thread) = start_server(&data_dir, clock);
    let read = |f: &str| {
        std::fs::read_to_string(data_dir.join(f))
            .unwrap_or_else(|e| panic!("{f}: {e}"))
            .trim()
            .to_owned()
    };
    App {
        url,
        admin: read("admin-token"),
        admin_password: read("admin-password"),
        data_dir,
        _dir: dir,
        stop: Some(stop),
        thread: Some(thread),
    }
}

/// Runs the server on its own thread and runtime over `data_dir`, on a random loopback
/// port; returns its URL, the sender that stops it, and the thread to join.
fn start_server(
    data_dir: &std::path::Path,
    clock: std::sync::Arc<dyn patchwarden_server::Clock>,
) -> (
    String,
    tokio::sync::oneshot::Sender<()>,
    std::thread::JoinHandle<()>,
) {
    let _ = std::fs::remove_file(data_dir.join("server-url"));
    let config = patchwarden_server::ServerConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        data_dir: data_dir.to_owned(),
        database_url: None,
        checkin_interval_secs: 60,
        stale_after_secs: None,
        offline_after_secs: None,
    };
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        rt.block_on(async move {
            patchwarden_server::run_with_clock(config, clock, async move {
                let _ = rx.await;
            })
            .await
            .expect("server runs");
        });
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let url = loop {
        if let Ok(u) = std::fs::read_to_string(data_dir.join("server-url")) {
            break u.trim().to_owned();
        }
        assert!(Instant::now() < deadline, "server did not start");
        std::thread::sleep(Duration::from_millis(20));
    };
    (url, tx, thread)
}

/// (status, JSON body) of an API request with a bearer token.
pub fn call(method: &str, url: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
    let mut req = ureq::request(method, url).timeout(Duration::from_secs(30));
    if let Some(t) = token {
        req = req.set("Authorization", &format!("Bearer {t}"));
    }
    let result = match body {
        Some(b) => req.send_json(b),
        None => req.call(),
    };
    let resp = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{method} {url}: {e}"),
    };
    let status = resp.status();
    let text = resp.into_string().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

pub struct Agent {
    pub url: String,
    pub id: String,
    pub secret: String,
}

impl Agent {
    pub fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        call(
            method,
            &format!("{}{path}", self.url),
            Some(&self.secret),
            body,
        )
    }
    pub fn checkin(&self, inv: &Inventory) {
        let req = CheckinRequest {
            agent_version: "test".into(),
            protocol_version: PROTOCOL_VERSION,
            inventory_hash: format!("h-{}", self.id),
            inventory: Some(inv.clone()),
        };
        let (status, v) = self.call(
            "POST",
            "/api/v1/agent/checkin",
            Some(serde_json::to_value(req).expect("json")),
        );
        assert_eq!(status, 200, "{v}");
    }
    /// Reports the one offered job (if any) with this outcome for `pw-demo`.
    pub fn report(
        &self,
        state: PackageState,
        class: Option<FailureClass>,
        evidence: &[&str],
    ) -> bool {
        let (status, v) = self.call("GET", "/api/v1/agent/work?wait=0", None);
        assert_eq!(status, 200, "{v}");
        let Some(job) = v["items"][0]["job_id"].as_str() else {
            return false;
        };
        let verified = state == PackageState::Verified;
        let r = JobResult {
            started_at: "2026-11-25T10:00:00Z".into(),
            finished_at: "2026-11-25T10:00:05Z".into(),
            commands: vec!["apt-get install -y pw-demo=1.1".into()],
            exit_code: Some(if verified { 0 } else { 100 }),
            duration_ms: 5000,
            output: "Setting up pw-demo (1.1) ...".into(),
            packages: vec![PackageResult {
                package: "pw-demo".into(),
                state,
                class,
                from_version: Some("1.0".into()),
                to_version: Some("1.1".into()),
                installed_version: Some(if verified { "1.1" } else { "1.0" }.into()),
                evidence: evidence.iter().map(|s| (*s).to_owned()).collect(),
            }],
            error: None,
            boot_id: None,
        };
        let (status, v) = self.call(
            "POST",
            &format!("/api/v1/agent/jobs/{job}/result"),
            Some(serde_json::to_value(r).expect("json")),
        );
        assert_eq!(status, 200, "{v}");
        true
    }
}

/// An inventory with `pw-demo` 1.0 installed and, when `pending`, 1.1 available (security).
pub fn inventory(hostname: &str, pending: bool) -> Inventory {
    Inventory {
        hostname: hostname.into(),
        os: OsInfo {
            id: "debian".into(),
            version: "12".into(),
            codename: "bookworm".into(),
            pretty_name: "Debian GNU/Linux 12 (bookworm)".into(),
        },
        kernel: "6.1.0-28-amd64".into(),
        boot_id: "b1".into(),
        package_manager: "apt".into(),
        packages: vec![InstalledPackage {
            name: "pw-demo".into(),
            source: "pw-demo".into(),
            version: "1.0".into(),
            source_version: "1.0".into(),
            arch: "all".into(),
            status: "ii".into(),
        }],
        upgradable: if pending {
            vec![UpgradablePackage {
                name: "pw-demo".into(),
                installed_version: "1.0".into(),
                candidate_version: "1.1".into(),
                arch: "all".into(),
                security: true,
                origins: vec!["Debian-Security".into()],
                held: false,
            }]
        } else {
            vec![]
        },
        ..Default::default()
    }
}

pub const EVIDENCE: &str =
    "dpkg: error processing package pw-demo (--configure): installed pw-demo package post-installation script subprocess returned error exit status 1";

impl App {
    pub fn op(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        call(
            method,
            &format!("{}{path}", self.url),
            Some(&self.admin),
            body,
        )
    }

    /// Enrolls a device in `tenant` and checks in its inventory.
    pub fn device(&self, tenant: &str, hostname: &str, pending: bool) -> Agent {
        let (status, v) = self.op(
            "POST",
            "/api/v1/enroll-tokens",
            Some(json!({"tenant": tenant, "labels": {"env": "prod"}})),
        );
        assert_eq!(status, 201, "{v}");
        let req = EnrollRequest {
            token: v["token"].as_str().expect("token").into(),
            hostname: hostname.into(),
            machine_id: "0123".into(),
            agent_version: "test".into(),
            protocol_version: PROTOCOL_VERSION,
        };
        let (status, v) = call(
            "POST",
            &format!("{}/api/v1/agent/enroll", self.url),
            None,
            Some(serde_json::to_value(req).expect("json")),
        );
        assert_eq!(status, 200, "{v}");
        let r: EnrollResponse = serde_json::from_value(v).expect("enroll response");
        let agent = Agent {
            url: self.url.clone(),
            id: r.device_id,
            secret: r.device_secret,
        };
        agent.checkin(&inventory(hostname, pending));
        agent
    }

    /// Creates a deployment of security updates to these devices; returns its id.
    pub fn deploy(&self, tenant: &str, devices: &[&Agent], approval: bool) -> String {
        let ids: Vec<&str> = devices.iter().map(|a| a.id.as_str()).collect();
        let (status, v) = self.op(
            "POST",
            "/api/v1/deployments",
            Some(json!({"tenant": tenant, "target": {"devices": ids},
                "selection": {"kind": "security"}, "require_approval": approval})),
        );
        assert_eq!(status, 201, "{v}");
        v["id"].as_str().expect("id").to_owned()
    }

    /// Creates a dashboard user directly in the store. `tenant`: a tenant name, or None for
    /// every tenant.
    pub fn user(&self, login: &str, password: &str, roles: &[(Option<&str>, Role)]) {
        let db = self.data_dir.join("patchwarden.db").display().to_string();
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        rt.block_on(async {
            let store = patchwarden_store::SqliteStore::open(&db)
                .await
                .expect("store");
            let mut ms = Vec::new();
            for (t, r) in roles {
                let id = match t {
                    Some(name) => Some(store.ensure_tenant(name, 0).await.expect("tenant").id),
                    None => None,
                };
                ms.push((id, *r));
            }
            let app = patchwarden_app::App::new(
                std::sync::Arc::new(store),
                patchwarden_app::AppConfig::default(),
                std::sync::Arc::new(patchwarden_app::SystemClock),
            );
            patchwarden_app::sessions::create_user(&app, login, password, &ms)
                .await
                .expect("user");
        });
    }
}

/// The seeded estate: tenant `acme` with a failed install (evidence) on `acme-web-1`, a
/// patched `acme-mail-1`, a deployment waiting for approval on `acme-db-1`; tenant `globex`
/// with `globex-app-1`.
pub struct Seeded {
    pub web1: Agent,
    pub mail1: Agent,
    pub db1: Agent,
    pub globex1: Agent,
    pub failed_deployment: String,
    pub pending_deployment: String,
    pub globex_deployment: String,
}

pub fn seed(app: &App) -> Seeded {
    let web1 = app.device("acme", "acme-web-1", true);
    let mail1 = app.device("acme", "acme-mail-1", false);
    let db1 = app.device("acme", "acme-db-1", true);
    let globex1 = app.device("globex", "globex-app-1", true);
    let failed_deployment = app.deploy("acme", &[&web1], false);
    assert!(web1.report(
        PackageState::Failed,
        Some(FailureClass::InstallScriptFailed),
        &[EVIDENCE]
    ));
    let pending_deployment = app.deploy("acme", &[&db1], true);
    let globex_deployment = app.deploy("globex", &[&globex1], false);
    Seeded {
        web1,
        mail1,
        db1,
        globex1,
        failed_deployment,
        pending_deployment,
        globex_deployment,
    }
}

/// A browser-like HTTP client: keeps cookies, does not follow redirects.
pub struct Web {
    pub base: String,
    agent: ureq::Agent,
    pub cookies: BTreeMap<String, String>,
}

pub struct Page {
    pub status: u16,
    pub location: Option<String>,
    pub set_cookies: Vec<String>,
    pub body: String,
}

impl Web {
    pub fn new(base: &str) -> Self {
        Web {
            base: base.to_owned(),
            agent: ureq::AgentBuilder::new()
                .redirects(0)
                .timeout(Duration::from_secs(30))
                .build(),
            cookies: BTreeMap::new(),
        }
    }

    fn send(&mut self, req: ureq::Request, form: Option<&[(&str, &str)]>) -> Page {
        let cookie = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let req = if cookie.is_empty() {
            req
        } else {
            req.set("Cookie", &cookie)
        };
        let result = match form {
            Some(f) => req.send_form(f),
            None => req.call(),
        };
        let resp = match result {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("request failed: {e}"),
        };
        let set_cookies: Vec<String> = resp
            .all("set-cookie")
            .iter()
            .map(|s| s.to_string())
            .collect();
        for c in &set_cookies {
            let first = c.split(';').next().unwrap_or_default();
            if let Some((k, v)) = first.split_once('=') {
                if v.is_empty() || c.contains("Max-Age=0") {
                    self.cookies.remove(k);
                } else {
                    self.cookies.insert(k.to_owned(), v.to_owned());
                }
            }
        }
        Page {
            status: resp.status(),
            location: resp.header("location").map(str::to_owned),
            set_cookies,
            body: resp.into_string().unwrap_or_default(),
        }
    }

    pub fn get(&mut self, path: &str) -> Page {
        let req = self.agent.get(&format!("{}{path}", self.base));
        self.send(req, None)
    }

    pub fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let req = self.agent.post(&format!("{}{path}", self.base));
        self.send(req, Some(form))
    }

    /// Opens the login form and submits it.
    pub fn login(&mut self, login: &str, password: &str) -> Page {
        let form = self.get("/login");
        assert_eq!(form.status, 200);
        let csrf = hidden(&form.body, "csrf").expect("login csrf");
        self.post(
            "/login",
            &[
                ("login", login),
                ("password", password),
                ("csrf", &csrf),
                ("next", "/"),
            ],
        )
    }

    /// The CSRF token of the session (from any page's logout form).
    pub fn csrf(&mut self) -> String {
        hidden(&self.get("/logout").body, "csrf").expect("session csrf")
    }
}

/// The value of a hidden input in a page.
pub fn hidden(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')? + start;
    Some(html[start..end].to_owned())
}

impl App {
    /// Stops the server and starts it again on the same data directory (same SQLite file),
    /// with `clock`: what a restart mid-deployment looks like to the scheduler.
    pub fn restart(mut self, clock: std::sync::Arc<dyn patchwarden_server::Clock>) -> App {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let (url, stop, thread) = start_server(&self.data_dir, clock);
        let dir = std::mem::replace(&mut self._dir, tempfile::tempdir().expect("tempdir"));
        App {
            url,
            admin: self.admin.clone(),
            admin_password: self.admin_password.clone(),
            data_dir: self.data_dir.clone(),
            _dir: dir,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}
