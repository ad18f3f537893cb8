//! The server over real HTTP on a random loopback port with a fresh SQLite file
//! (`spawn_app`), exercised as an agent and an operator would.

use patchwarden_wire::agent::*;
use patchwarden_wire::api::*;
use patchwarden_wire::{FailureClass, PackageState, PROTOCOL_VERSION};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::{Duration, Instant};

struct App {
    url: String,
    admin: String,
    data_dir: PathBuf,
    _dir: Option<tempfile::TempDir>,
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

fn spawn_app() -> App {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("data");
    let mut app = spawn_on(data_dir);
    app._dir = Some(dir);
    app
}

fn spawn_on(data_dir: PathBuf) -> App {
    let _ = std::fs::remove_file(data_dir.join("server-url"));
    let config = patchwarden_server::ServerConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        data_dir: data_dir.clone(),
        database_url: None,
        checkin_interval_secs: 60,
        stale_after_secs: None,
        offline_after_secs: None,
    };
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        rt.block_on(async move {
            patchwarden_server::run(config, async move {
                let _ = rx.await;
            })
            .await
            .expect("server runs");
        });
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let url = loop {
        if let Ok(u) = std::fs::read_to_string(data_dir.join("server-url")) {
            break u.trim().to_owned();
        }
        assert!(Instant::now() < deadline, "server did not start");
        std::thread::sleep(Duration::from_millis(20));
    };
    let admin = std::fs::read_to_string(data_dir.join("admin-token"))
        .expect("admin token")
        .trim()
        .to_owned();
    App {
        url,
        admin,
        data_dir,
        _dir: None,
        stop: Some(tx),
        thread: Some(thread),
    }
}

/// (status, body) of a request; `token` goes in the Authorization header.
fn call(method: &str, url: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
    let mut req = ureq::request(method, url).timeout(Duration::from_secs(90));
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

impl App {
    fn op(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        call(
            method,
            &format!("{}{path}", self.url),
            Some(&self.admin),
            body,
        )
    }
    fn enroll_token(&self, body: Value) -> String {
        let (status, v) = self.op("POST", "/api/v1/enroll-tokens", Some(body));
        assert_eq!(status, 201, "{v}");
        v["token"].as_str().expect("token").to_owned()
    }
    fn enroll(&self, token: &str, hostname: &str) -> (u16, Value) {
        let req = EnrollRequest {
            token: token.into(),
            hostname: hostname.into(),
            machine_id: "0123".into(),
            agent_version: "test".into(),
            protocol_version: PROTOCOL_VERSION,
        };
        call(
            "POST",
            &format!("{}/api/v1/agent/enroll", self.url),
            None,
            Some(serde_json::to_value(req).expect("json")),
        )
    }
    fn device(&self, hostname: &str, labels: Value) -> Agent {
        let token = self.enroll_token(json!({"labels": labels}));
        let (status, v) = self.enroll(&token, hostname);
        assert_eq!(status, 200, "{v}");
        let r: EnrollResponse = serde_json::from_value(v).expect("enroll response");
        Agent {
            url: self.url.clone(),
            id: r.device_id,
            secret: r.device_secret,
        }
    }
}

struct Agent {
    url: String,
    id: String,
    secret: String,
}

impl Agent {
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        call(
            method,
            &format!("{}{path}", self.url),
            Some(&self.secret),
            body,
        )
    }
    fn checkin(&self, inv: Option<&Inventory>, hash: &str) -> CheckinResponse {
        let req = CheckinRequest {
            agent_version: "test".into(),
            protocol_version: PROTOCOL_VERSION,
            inventory_hash: hash.into(),
            inventory: inv.cloned(),
        };
        let (status, v) = self.call(
            "POST",
            "/api/v1/agent/checkin",
            Some(serde_json::to_value(req).expect("json")),
        );
        assert_eq!(status, 200, "{v}");
        serde_json::from_value(v).expect("checkin response")
    }
    fn work(&self, wait: u64) -> Vec<WorkEnvelope> {
        let (status, v) = self.call("GET", &format!("/api/v1/agent/work?wait={wait}"), None);
        assert_eq!(status, 200, "{v}");
        serde_json::from_value::<WorkResponse>(v)
            .expect("work")
            .items
    }
}

fn inventory(demo_version: &str, candidate: Option<&str>) -> Inventory {
    Inventory {
        hostname: "h".into(),
        os: OsInfo {
            id: "debian".into(),
            version: "12".into(),
            codename: "bookworm".into(),
            pretty_name: "Debian GNU/Linux 12 (bookworm)".into(),
        },
        kernel: "6.1.0".into(),
        boot_id: "b1".into(),
        package_manager: "apt".into(),
        packages: vec![InstalledPackage {
            name: "pw-demo".into(),
            source: "pw-demo".into(),
            version: demo_version.into(),
            source_version: demo_version.into(),
            arch: "all".into(),
            status: "ii".into(),
        }],
        upgradable: candidate
            .map(|c| {
                vec![UpgradablePackage {
                    name: "pw-demo".into(),
                    installed_version: demo_version.into(),
                    candidate_version: c.into(),
                    arch: "all".into(),
                    security: true,
                    origins: vec!["lab".into()],
                    held: false,
                }]
            })
            .unwrap_or_default(),
        ..Default::default()
    }
}

fn result_for(package: &str, state: PackageState, installed: &str) -> JobResult {
    JobResult {
        started_at: "2026-11-25T10:00:00Z".into(),
        finished_at: "2026-11-25T10:00:05Z".into(),
        commands: vec!["apt-get install -y pw-demo=1.1".into()],
        exit_code: Some(0),
        duration_ms: 5000,
        output: "Setting up pw-demo (1.1) ...".into(),
        packages: vec![PackageResult {
            package: package.into(),
            state,
            class: None,
            from_version: Some("1.0".into()),
            to_version: Some("1.1".into()),
            installed_version: Some(installed.into()),
            evidence: vec![],
        }],
        error: None,
        boot_id: None,
    }
}

#[test]
fn first_start_writes_a_private_admin_token_and_the_cli_url() {
    use std::os::unix::fs::PermissionsExt;
    let app = spawn_app();
    let mode = std::fs::metadata(app.data_dir.join("admin-token"))
        .expect("token file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(app.admin.starts_with("pwa_"));
    let (status, _) = call(
        "GET",
        &format!("{}/api/v1/devices", app.url),
        Some("pwa_wrong"),
        None,
    );
    assert_eq!(status, 401);
    let (status, _) = call("GET", &format!("{}/api/v1/devices", app.url), None, None);
    assert_eq!(status, 401);
}

#[test]
fn enrollment_tokens_expire_are_revocable_limited_and_stored_hashed() {
    let app = spawn_app();
    // Unknown, then single-use.
    let (status, v) = app.enroll("pwe_nope", "a");
    assert_eq!(
        (status, v["error"].as_str()),
        (401, Some("invalid_enroll_token"))
    );
    let once = app.enroll_token(json!({"max_uses": 1}));
    assert_eq!(app.enroll(&once, "a").0, 200);
    let (status, v) = app.enroll(&once, "b");
    assert_eq!(status, 401);
    assert!(
        v["message"]
            .as_str()
            .unwrap_or("")
            .contains("used as many times"),
        "{v}"
    );
    // Revoked.
    let (_, created) = app.op("POST", "/api/v1/enroll-tokens", Some(json!({})));
    let id = created["id"].as_str().expect("id");
    assert_eq!(
        app.op("DELETE", &format!("/api/v1/enroll-tokens/{id}"), None)
            .0,
        204
    );
    let (status, v) = app.enroll(created["token"].as_str().expect("token"), "c");
    assert_eq!(status, 401);
    assert!(
        v["message"].as_str().unwrap_or("").contains("revoked"),
        "{v}"
    );
    // Expired.
    let short = app.enroll_token(json!({"ttl_secs": 1}));
    std::thread::sleep(Duration::from_millis(1100));
    let (status, v) = app.enroll(&short, "d");
    assert_eq!(status, 401);
    assert!(
        v["message"].as_str().unwrap_or("").contains("expired"),
        "{v}"
    );
    // Bad input is named.
    let (status, v) = app.op(
        "POST",
        "/api/v1/enroll-tokens",
        Some(json!({"ttl_secs": 0})),
    );
    assert_eq!(status, 400, "{v}");
    let (status, v) = app.op(
        "POST",
        "/api/v1/enroll-tokens",
        Some(json!({"tenant": "no spaces"})),
    );
    assert_eq!(status, 400, "{v}");
    // Hashed at rest: the token text appears nowhere in the database files.
    let mut db = Vec::new();
    for f in ["patchwarden.db", "patchwarden.db-wal"] {
        db.extend(std::fs::read(app.data_dir.join(f)).unwrap_or_default());
    }
    for secret in [&once, &short, &app.admin] {
        assert!(
            !db.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "token stored in clear"
        );
    }
}

#[test]
fn inventory_is_sent_whole_only_when_it_changed() {
    let app = spawn_app();
    let agent = app.device("web1", json!({"env": "prod"}));
    let first = agent.checkin(None, "h1");
    assert!(first.inventory_wanted, "the server holds no inventory yet");
    assert!(
        !agent
            .checkin(Some(&inventory("1.0", Some("1.1"))), "h1")
            .inventory_wanted
    );
    assert!(
        !agent.checkin(None, "h1").inventory_wanted,
        "same hash: a heartbeat is enough"
    );
    assert!(
        agent.checkin(None, "h2").inventory_wanted,
        "new hash without data: ask for it"
    );
    let (_, devices) = app.op("GET", "/api/v1/devices", None);
    let d = &devices[0];
    assert_eq!(d["id"].as_str(), Some(agent.id.as_str()));
    assert_eq!(d["hostname"], "h");
    assert_eq!(d["pending_updates"], 1);
    assert_eq!(d["security_updates"], 1);
    assert_eq!(d["status"], "online");
    assert_eq!(d["labels"]["env"], "prod");
    assert_eq!(d["os"], "Debian GNU/Linux 12 (bookworm)");
}

#[test]
fn deployment_work_reaches_only_its_devices_and_results_are_stored_once() {
    let app = spawn_app();
    let a = app.device("a", json!({"ring": "pilot"}));
    let b = app.device("b", json!({"ring": "broad"}));
    a.checkin(Some(&inventory("1.0", Some("1.1"))), "ha");
    b.checkin(Some(&inventory("1.0", Some("1.1"))), "hb");

    let (status, v) = app.op(
        "POST",
        "/api/v1/deployments",
        Some(json!({"target": {"labels": {"ring": "pilot"}}, "selection": {"kind": "security"}})),
    );
    assert_eq!(status, 201, "{v}");
    let dep = v["id"].as_str().expect("id").to_owned();
    assert!(b.work(0).is_empty(), "b is not targeted");
    let items = a.work(0);
    assert_eq!(items.len(), 1);
    let op: Operation = serde_json::from_str(&items[0].payload).expect("operation");
    match op {
        Operation::Install {
            packages,
            deployment_id,
            ..
        } => {
            assert_eq!(deployment_id, dep);
            assert_eq!(
                packages,
                vec![PackageTarget {
                    name: "pw-demo".into(),
                    version: Some("1.1".into())
                }]
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    let job = &items[0].job_id;
    // Another device can neither start nor complete this job.
    assert_eq!(
        b.call("POST", &format!("/api/v1/agent/jobs/{job}/start"), None)
            .0,
        404
    );
    let body =
        serde_json::to_value(result_for("pw-demo", PackageState::Verified, "1.1")).expect("json");
    assert_eq!(
        b.call(
            "POST",
            &format!("/api/v1/agent/jobs/{job}/result"),
            Some(body.clone())
        )
        .0,
        404
    );

    assert_eq!(
        a.call("POST", &format!("/api/v1/agent/jobs/{job}/start"), None)
            .0,
        204
    );
    assert!(
        a.work(0).is_empty(),
        "a running job is not offered again while its lease holds"
    );
    let (status, ack) = a.call(
        "POST",
        &format!("/api/v1/agent/jobs/{job}/result"),
        Some(body.clone()),
    );
    assert_eq!((status, ack["stored"].as_bool()), (200, Some(true)));
    // Re-delivery after a lost response: acknowledged, not stored twice, not changed.
    let mut changed = result_for("pw-demo", PackageState::Failed, "1.0");
    changed.packages[0].class = Some(FailureClass::Unknown);
    let (status, ack) = a.call(
        "POST",
        &format!("/api/v1/agent/jobs/{job}/result"),
        Some(serde_json::to_value(changed).expect("json")),
    );
    assert_eq!((status, ack["stored"].as_bool()), (200, Some(false)));

    let (_, view) = app.op("GET", &format!("/api/v1/deployments/{dep}"), None);
    let view: DeploymentView = serde_json::from_value(view).expect("view");
    assert_eq!(view.status.as_str(), "completed");
    assert_eq!(view.results.len(), 1);
    let row = &view.results[0];
    assert_eq!(row.state, PackageState::Verified);
    assert_eq!(row.installed_version.as_deref(), Some("1.1"));
    assert_eq!(row.from_version.as_deref(), Some("1.0"));
    assert_eq!(row.exit_code, Some(0));
    assert!(a.work(0).is_empty(), "done work is not offered again");
}

#[test]
fn a_held_work_request_wakes_within_two_seconds_of_new_work() {
    let app = spawn_app();
    let agent = app.device("a", json!({}));
    agent.checkin(Some(&inventory("1.0", Some("1.1"))), "h");
    let waiter = std::thread::spawn(move || {
        let t = Instant::now();
        let items = agent.work(30);
        (items.len(), t.elapsed())
    });
    std::thread::sleep(Duration::from_millis(500));
    let created = Instant::now();
    let (status, v) = app.op(
        "POST",
        "/api/v1/deployments",
        Some(json!({"target": {"all": true}, "selection": {"kind": "packages", "packages": [{"name": "pw-demo"}]}})),
    );
    assert_eq!(status, 201, "{v}");
    let (n, waited) = waiter.join().expect("waiter");
    assert_eq!(n, 1);
    assert!(
        created.elapsed() < Duration::from_secs(2),
        "work arrived {:?} after creation",
        created.elapsed()
    );
    assert!(
        waited >= Duration::from_millis(400),
        "the request was held until work existed"
    );
}

#[test]
fn deployment_requests_are_validated_with_clear_errors() {
    let app = spawn_app();
    let a = app.device("a", json!({}));
    a.checkin(Some(&inventory("1.1", None)), "h");
    let cases = [
        (
            json!({"target": {}, "selection": {"kind": "security"}}),
            "exactly one",
        ),
        (
            json!({"target": {"all": true, "devices": ["a"]}, "selection": {"kind": "security"}}),
            "exactly one",
        ),
        (
            json!({"target": {"devices": ["nope"]}, "selection": {"kind": "security"}}),
            "no device \"nope\"",
        ),
        (
            json!({"target": {"all": true}, "selection": {"kind": "packages", "packages": [{"name": "x; rm"}]}}),
            "invalid package name",
        ),
        (
            json!({"target": {"all": true}, "selection": {"kind": "security"}}),
            "anything to install",
        ),
        (
            json!({"target": {"labels": {"env": "x"}}, "selection": {"kind": "security"}}),
            "matches the target",
        ),
    ];
    for (body, want) in cases {
        let (status, v) = app.op("POST", "/api/v1/deployments", Some(body.clone()));
        assert_eq!(status, 400, "{body}: {v}");
        assert!(
            v["message"].as_str().unwrap_or("").contains(want),
            "{body}: {v}"
        );
    }
    // Malformed bodies get an ErrorBody naming the problem, not a bare text response.
    for (body, want) in [
        (
            json!({"target": {"all": true}}),
            "missing field `selection`",
        ),
        (
            json!({"target": {"all": "yes"}, "selection": {"kind": "security"}}),
            "invalid type",
        ),
        (
            json!({"target": {"all": true}, "selection": {"kind": "everything"}}),
            "unknown variant `everything`",
        ),
    ] {
        let (status, v) = app.op("POST", "/api/v1/deployments", Some(body.clone()));
        assert_eq!(status, 422, "{body}: {v}");
        assert_eq!(v["error"], "invalid_body", "{body}: {v}");
        assert!(
            v["message"].as_str().unwrap_or("").contains(want),
            "{body}: {v}"
        );
    }
    let (_, list) = app.op("GET", "/api/v1/deployments", None);
    assert_eq!(
        list.as_array().map(Vec::len),
        Some(0),
        "nothing half-created"
    );
}

#[test]
fn acknowledged_results_survive_a_server_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("data");
    let app = spawn_on(data_dir.clone());
    let a = app.device("a", json!({}));
    a.checkin(Some(&inventory("1.0", Some("1.1"))), "h");
    let (_, v) = app.op(
        "POST",
        "/api/v1/deployments",
        Some(json!({"target": {"all": true}, "selection": {"kind": "all_updates"}})),
    );
    let dep = v["id"].as_str().expect("id").to_owned();
    let job = a.work(0)[0].job_id.clone();
    let body =
        serde_json::to_value(result_for("pw-demo", PackageState::Verified, "1.1")).expect("json");
    assert_eq!(
        a.call(
            "POST",
            &format!("/api/v1/agent/jobs/{job}/result"),
            Some(body)
        )
        .0,
        200
    );
    let admin = app.admin.clone();
    drop(app);

    let app = spawn_on(data_dir);
    assert_eq!(app.admin, admin, "the administrator token is created once");
    let (_, view) = app.op("GET", &format!("/api/v1/deployments/{dep}"), None);
    assert_eq!(view["results"][0]["state"], "verified", "{view}");
    assert_eq!(view["status"], "completed");
}

#[test]
fn openapi_documents_every_route() {
    let app = spawn_app();
    let (status, doc) = call(
        "GET",
        &format!("{}/api/v1/openapi.json", app.url),
        None,
        None,
    );
    assert_eq!(status, 200);
    let paths = doc["paths"].as_object().expect("paths");
    for p in [
        "/api/v1/agent/enroll",
        "/api/v1/agent/checkin",
        "/api/v1/agent/work",
        "/api/v1/agent/jobs/{job_id}/start",
        "/api/v1/agent/jobs/{job_id}/result",
        "/api/v1/enroll-tokens",
        "/api/v1/enroll-tokens/{id}",
        "/api/v1/devices",
        "/api/v1/devices/{id}",
        "/api/v1/deployments",
        "/api/v1/deployments/{id}",
        "/api/v1/failures",
    ] {
        assert!(paths.contains_key(p), "{p} is not documented");
    }
    // Every documented operation is routed: an unrouted path gets axum's bare 404 with no
    // body, while our handlers always answer with an ErrorBody.
    for (path, item) in paths {
        for method in ["get", "post", "delete"] {
            if item.get(method).is_none() {
                continue;
            }
            let concrete = path.replace("{job_id}", "nope").replace("{id}", "nope");
            let body = (method == "post").then(|| json!({}));
            let (status, v) = call(
                &method.to_uppercase(),
                &format!("{}{concrete}", app.url),
                Some(&app.admin),
                body,
            );
            assert!(
                !(status == 404 && v.is_null()),
                "{method} {path} is documented but not routed"
            );
            assert!(
                status != 405,
                "{method} {path} is documented but not routed for that method"
            );
        }
    }
    for field in [
        "device",
        "package",
        "state",
        "from_version",
        "to_version",
        "installed_version",
        "class",
        "evidence",
        "exit_code",
    ] {
        assert!(
            doc["components"]["schemas"]["ResultRow"]["properties"]
                .get(field)
                .is_some(),
            "ResultRow.{field}"
        );
    }
}

fn with_boot(mut inv: Inventory, boot: &str, demo_version: &str) -> Inventory {
    inv.boot_id = boot.into();
    inv.packages[0].version = demo_version.into();
    inv
}

#[test]
fn pending_reboot_becomes_verified_only_after_a_new_boot_id() {
    let app = spawn_app();
    let a = app.device("a", json!({}));
    a.checkin(
        Some(&with_boot(inventory("1.0", Some("1.1")), "boot-1", "1.0")),
        "h0",
    );
    let (_, v) = app.op(
        "POST",
        "/api/v1/deployments",
        Some(json!({"target": {"all": true}, "selection": {"kind": "all_updates"}})),
    );
    let dep = v["id"].as_str().expect("id").to_owned();
    let job = a.work(0)[0].job_id.clone();
    let mut result = result_for("pw-demo", PackageState::PendingReboot, "1.1");
    result.packages[0].class = Some(FailureClass::RebootPending);
    result.boot_id = Some("boot-1".into());
    let body = serde_json::to_value(result).expect("json");
    assert_eq!(
        a.call(
            "POST",
            &format!("/api/v1/agent/jobs/{job}/result"),
            Some(body)
        )
        .0,
        200
    );
    let state = |app: &App| {
        let (_, view) = app.op("GET", &format!("/api/v1/deployments/{dep}"), None);
        view["results"][0]["state"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    };
    assert_eq!(state(&app), "pending_reboot");
    // Same boot, new inventory: still pending.
    a.checkin(
        Some(&with_boot(inventory("1.0", None), "boot-1", "1.1")),
        "h1",
    );
    assert_eq!(state(&app), "pending_reboot");
    // A new boot with the version in place: verified, and the history says how.
    a.checkin(
        Some(&with_boot(inventory("1.0", None), "boot-2", "1.1")),
        "h2",
    );
    assert_eq!(state(&app), "verified");
    let (_, detail) = app.op("GET", &format!("/api/v1/devices/{}", a.id), None);
    let history = detail["history"].as_array().cloned().unwrap_or_default();
    assert_eq!(history.len(), 2, "{detail:#}");
    assert_eq!(history[0]["action"], "confirmed after reboot");
    assert_eq!(history[0]["state"], "verified");
    assert!(
        history[0]["evidence"][0]
            .as_str()
            .unwrap_or("")
            .contains("boot-1 → boot-2"),
        "{history:#?}"
    );
    assert_eq!(history[1]["state"], "pending_reboot");
}

#[test]
fn current_failures_are_grouped_by_class_and_filterable() {
    let app = spawn_app();
    let a = app.device("a", json!({}));
    let b = app.device("b", json!({}));
    for (agent, hash) in [(&a, "ha"), (&b, "hb")] {
        agent.checkin(Some(&inventory("1.0", Some("1.1"))), hash);
    }
    let (_, _) = app.op(
        "POST",
        "/api/v1/deployments",
        Some(json!({"target": {"all": true}, "selection": {"kind": "all_updates"}})),
    );
    for (agent, class) in [
        (&a, FailureClass::InstallScriptFailed),
        (&b, FailureClass::LockHeld),
    ] {
        let job = agent.work(0)[0].job_id.clone();
        let mut r = result_for("pw-demo", PackageState::Failed, "1.0");
        r.packages[0].class = Some(class);
        r.packages[0].evidence = vec![format!("evidence for {class}")];
        r.exit_code = Some(100);
        let body = serde_json::to_value(r).expect("json");
        assert_eq!(
            agent
                .call(
                    "POST",
                    &format!("/api/v1/agent/jobs/{job}/result"),
                    Some(body)
                )
                .0,
            200
        );
    }
    let (status, all) = app.op("GET", "/api/v1/failures", None);
    assert_eq!(status, 200);
    assert_eq!(all["total"], 2, "{all:#}");
    let classes: Vec<&str> = all["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .filter_map(|g| g["class"].as_str())
        .collect();
    assert_eq!(classes, vec!["lock_held", "install_script_failed"]);
    let (_, locks) = app.op("GET", "/api/v1/failures?class=lock_held", None);
    assert_eq!(locks["total"], 1);
    assert_eq!(
        locks["groups"][0]["failures"][0]["evidence"][0],
        "evidence for lock_held"
    );
    assert_eq!(locks["groups"][0]["failures"][0]["exit_code"], 100);
    let (_, of_a) = app.op("GET", &format!("/api/v1/failures?device={}", a.id), None);
    assert_eq!(of_a["groups"][0]["class"], "install_script_failed");
    let (status, bad) = app.op("GET", "/api/v1/failures?class=bogus", None);
    assert_eq!(status, 400, "{bad}");
    assert!(bad["message"].as_str().unwrap_or("").contains("bogus"));
}

/// Posts a result for the device's one offered job; returns false when it had no work.
fn report(agent: &Agent, state: PackageState, class: Option<FailureClass>) -> bool {
    let items = agent.work(0);
    let Some(item) = items.first() else {
        return false;
    };
    let mut r = result_for(
        "pw-demo",
        state,
        if state == PackageState::Verified {
            "1.1"
        } else {
            "1.0"
        },
    );
    r.packages[0].class = class;
    let body = serde_json::to_value(r).expect("json");
    let (status, v) = agent.call(
        "POST",
        &format!("/api/v1/agent/jobs/{}/result", item.job_id),
        Some(body),
    );
    assert_eq!(status, 200, "{v}");
    true
}

fn fleet(app: &App, n: usize) -> Vec<Agent> {
    (0..n)
        .map(|i| {
            let a = app.device(&format!("d{i}"), json!({}));
            a.checkin(Some(&inventory("1.0", Some("1.1"))), &format!("h{i}"));
            a
        })
        .collect()
}

fn deploy(app: &App, extra: Value) -> (u16, Value) {
    let mut body = json!({"target": {"all": true}, "selection": {"kind": "all_updates"}});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    app.op("POST", "/api/v1/deployments", Some(body))
}

#[test]
fn a_failing_pilot_ring_halts_the_deployment_and_the_broad_ring_is_never_offered() {
    let app = spawn_app();
    let agents = fleet(&app, 3);
    let rings = json!({"rings": [{"name": "pilot", "devices": [agents[0].id]}, {"name": "broad", "rest": true}]});
    let (status, v) = deploy(&app, rings);
    assert_eq!(status, 201, "{v}");
    let dep = v["id"].as_str().expect("id").to_owned();
    assert!(
        agents[1].work(0).is_empty() && agents[2].work(0).is_empty(),
        "broad waits for the pilot"
    );
    assert!(report(
        &agents[0],
        PackageState::Failed,
        Some(FailureClass::InstallScriptFailed)
    ));
    let (_, view) = app.op("GET", &format!("/api/v1/deployments/{dep}"), None);
    assert_eq!(view["status"], "halted", "{view:#}");
    assert!(
        view["status_reason"]
            .as_str()
            .unwrap_or("")
            .contains("gate of ring pilot"),
        "{view:#}"
    );
    assert_eq!(view["rings"][1]["released"], 0);
    assert!(
        agents[1].work(0).is_empty() && agents[2].work(0).is_empty(),
        "halted: broad never touched"
    );
    // An operator who knows better resumes: the gate is overridden and broad runs.
    let (status, v) = app.op(
        "POST",
        &format!("/api/v1/deployments/{dep}/resume"),
        Some(json!({"reason": "known flaky host"})),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["status"], "running");
    assert!(report(&agents[1], PackageState::Verified, None));
    assert!(report(&agents[2], PackageState::Verified, None));
    let (_, view) = app.op("GET", &format!("/api/v1/deployments/{dep}"), None);
    assert_eq!(view["status"], "completed", "{view:#}");
}

#[test]
fn a_good_pilot_promotes_the_broad_ring_at_once() {
    let app = spawn_app();
    let agents = fleet(&app, 4);
    let (_, v) = deploy(
        &app,
        json!({"rings": [{"name": "pilot", "percent": 25}, {"name": "broad", "rest": true}]}),
    );
    let dep = v["id"].as_str().expect("id").to_owned();
    let offered: Vec<usize> = (0..4).filter(|i| !agents[*i].work(0).is_empty()).collect();
    assert_eq!(offered.len(), 1, "25% of 4 devices: one pilot");
    assert!(report(&agents[offered[0]], PackageState::Verified, None));
    for (i, a) in agents.iter().enumerate() {
        if i != offered[0] {
            assert!(
                report(a, PackageState::Verified, None),
                "broad device {i} got its work after the gate"
            );
        }
    }
    let (_, view) = app.op("GET", &format!("/api/v1/deployments/{dep}"), None);
    assert_eq!(view["status"], "completed", "{view:#}");
    assert_eq!(view["counts"]["verified"], 4);
    assert_eq!(view["rings"][0]["succeeded"], 1);
    assert_eq!(view["rings"][1]["succeeded"], 3);
}

#[test]
fn approval_concurrency_breaker_and_cancel() {
    let app = spawn_app();
    let agents = fleet(&app, 3);
    // Manual approval: nothing is offered until approved; a rejection skips everything.
    let (_, v) = deploy(&app, json!({"require_approval": true}));
    let dep = v["id"].as_str().expect("id").to_owned();
    assert!(agents.iter().all(|a| a.work(0).is_empty()));
    let (status, _) = app.op("POST", &format!("/api/v1/deployments/{dep}/halt"), None);
    assert_eq!(status, 409, "cannot halt what is not running");
    let (status, v) = app.op(
        "POST",
        &format!("/api/v1/deployments/{dep}/reject"),
        Some(json!({"reason": "known bad"})),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["status"], "cancelled");
    assert_eq!(v["counts"]["skipped"], 3, "{v:#}");
    assert!(
        v["results"][0]["evidence"][0]
            .as_str()
            .unwrap_or("")
            .contains("known bad"),
        "{v:#}"
    );

    // The rejected update is blocked for every deployment until un-rejected.
    let (status, v) = deploy(&app, json!({}));
    assert_eq!(status, 400, "{v}");
    let (status, v) = app.op(
        "POST",
        "/api/v1/rejected-updates/unreject",
        Some(json!({"package": "pw-demo"})),
    );
    assert_eq!(status, 200, "{v}");

    // Concurrency 1 and a breaker at 50%: the first failure halts before anyone else starts.
    let (_, v) = deploy(&app, json!({"concurrency": "1", "halt_failure_rate": 0.5}));
    let dep = v["id"].as_str().expect("id").to_owned();
    let offered: Vec<usize> = (0..3).filter(|i| !agents[*i].work(0).is_empty()).collect();
    assert_eq!(offered.len(), 1, "one at a time");
    assert!(report(
        &agents[offered[0]],
        PackageState::Failed,
        Some(FailureClass::DependencyConflict)
    ));
    let (_, view) = app.op("GET", &format!("/api/v1/deployments/{dep}"), None);
    assert_eq!(view["status"], "halted", "{view:#}");
    assert!(
        view["status_reason"]
            .as_str()
            .unwrap_or("")
            .contains("circuit breaker"),
        "{view:#}"
    );
    assert!(
        agents.iter().all(|a| a.work(0).is_empty()),
        "halted: nothing new starts"
    );
    let (_, v) = app.op("POST", &format!("/api/v1/deployments/{dep}/cancel"), None);
    assert_eq!(v["status"], "cancelled");
    assert_eq!(
        (
            v["counts"]["failed"].as_u64(),
            v["counts"]["skipped"].as_u64()
        ),
        (Some(1), Some(2)),
        "{v:#}"
    );

    // A device-side failure (disk full) does not trip the breaker.
    let (_, v) = deploy(&app, json!({"concurrency": "1", "halt_failure_rate": 0.5}));
    let dep = v["id"].as_str().expect("id").to_owned();
    let first = (0..3)
        .find(|i| !agents[*i].work(0).is_empty())
        .expect("one offered");
    assert!(report(
        &agents[first],
        PackageState::Failed,
        Some(FailureClass::DiskFull)
    ));
    let (_, view) = app.op("GET", &format!("/api/v1/deployments/{dep}"), None);
    assert_eq!(view["status"], "running", "{view:#}");

    for (body, want) in [
        (
            json!({"rings": [{"name": "a", "percent": 10}]}),
            "in no ring",
        ),
        (
            json!({"rings": [{"name": "a", "rest": true, "percent": 5}]}),
            "exactly one of",
        ),
        (
            json!({"rings": [{"name": "a", "rest": true}, {"name": "a", "rest": true}]}),
            "unique",
        ),
        (json!({"concurrency": "0"}), "invalid concurrency"),
        (json!({"halt_failure_rate": 2.0}), "halt_failure_rate"),
    ] {
        let (status, v) = deploy(&app, body.clone());
        assert_eq!(status, 400, "{body}: {v}");
        assert!(
            v["message"].as_str().unwrap_or("").contains(want),
            "{body}: {v}"
        );
    }
}

#[test]
fn a_devices_failure_state_is_reset_in_one_command_and_the_history_keeps_it() {
    let app = spawn_app();
    let a = app.device("a", json!({}));
    a.checkin(Some(&inventory("1.0", Some("1.1"))), "h");
    let (_, _) = app.op(
        "POST",
        "/api/v1/deployments",
        Some(json!({"target": {"all": true}, "selection": {"kind": "all_updates"}})),
    );
    let job = a.work(0)[0].job_id.clone();
    let mut r = result_for("pw-demo", PackageState::Failed, "1.0");
    r.packages[0].class = Some(FailureClass::LockHeld);
    assert_eq!(
        a.call(
            "POST",
            &format!("/api/v1/agent/jobs/{job}/result"),
            Some(serde_json::to_value(r).expect("json"))
        )
        .0,
        200
    );
    let (_, before) = app.op("GET", "/api/v1/failures", None);
    assert_eq!(before["total"], 1);
    let (status, v) = app.op(
        "POST",
        &format!("/api/v1/devices/{}/reset-failures", a.id),
        None,
    );
    assert_eq!((status, v["reset"].as_u64()), (200, Some(1)), "{v}");
    let (_, after) = app.op("GET", "/api/v1/failures", None);
    assert_eq!(after["total"], 0, "{after:#}");
    let (_, detail) = app.op("GET", &format!("/api/v1/devices/{}", a.id), None);
    let history = detail["history"].as_array().cloned().unwrap_or_default();
    assert_eq!(history.len(), 2, "{detail:#}");
    assert_eq!(history[0]["action"], "failures reset by admin");
    assert_eq!(history[1]["class"], "lock_held");
    let (status, _) = app.op("POST", "/api/v1/devices/nope/reset-failures", None);
    assert_eq!(status, 404);
}

#[test]
fn a_hostname_several_devices_carry_is_refused_and_ids_come_first() {
    let app = spawn_app();
    let web = app.device("web1", json!({}));
    let mut own = inventory("1.0", Some("1.1"));
    own.hostname = "web1".into();
    web.checkin(Some(&own), "hw");
    // Another device renames itself to web1 (a cloned image, or a hostile agent).
    let clone = app.device("clone", json!({}));
    let mut renamed = inventory("1.0", Some("1.1"));
    renamed.hostname = "web1".into();
    clone.checkin(Some(&renamed), "hc");
    let by_name = json!({"target": {"devices": ["web1"]}, "selection": {"kind": "all_updates"}});
    let (status, v) = app.op("POST", "/api/v1/deployments", Some(by_name));
    assert_eq!(status, 400, "{v}");
    let message = v["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&web.id) && message.contains(&clone.id),
        "the error lists the devices: {v}"
    );
    assert_eq!(v["field"], "target", "{v}");
    // Named by id: that device, even when another device calls itself by that id.
    renamed.hostname = web.id.clone();
    clone.checkin(Some(&renamed), "hc2");
    let by_id = json!({"target": {"devices": [web.id]}, "selection": {"kind": "all_updates"}});
    let (status, v) = app.op("POST", "/api/v1/deployments", Some(by_id));
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["devices"], 1, "{v}");
    assert_eq!(web.work(0).len(), 1);
    assert!(clone.work(0).is_empty(), "the renamed device took no job");
}
