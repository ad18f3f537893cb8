//! Reboots after installs with an injected clock: the policy reaches the agent in the work
//! payload, the loop guard withholds a reboot after K in 24 h (and allows it again a day
//! later), a reboot that does not clear the requirement is flagged `reboot_loop` and never
//! asked again for that package, and a device that does not come back within its budget is
//! flagged `device_offline` until it does.

use patchwarden_server::ManualClock;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod support;

use support::App;

const T0: i64 = 1_800_000_000_000; // 2027-01-15

fn spawn_app() -> (App, Arc<ManualClock>) {
    let clock = ManualClock::at(T0);
    let app = support::spawn_app_with_clock(Some(clock.clone()));
    (app, clock)
}

fn advance(clock: &ManualClock, secs: i64) {
    clock
        .0
        .fetch_add(secs * 1000, std::sync::atomic::Ordering::SeqCst);
}

struct Device {
    id: String,
    url: String,
    secret: String,
    name: String,
}

impl Device {
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        support::call(
            method,
            &format!("{}{path}", self.url),
            Some(&self.secret),
            body,
        )
    }

    /// Checks in an inventory: `pw-demo` at `installed` with `candidate` available, this boot
    /// id, and the reboot flag (with `pw-demo` named in reboot-required.pkgs) when `required`.
    fn checkin(&self, installed: &str, candidate: Option<&str>, boot: &str, required: bool) {
        let upgradable: Vec<Value> = candidate
            .map(|c| json!({"name": "pw-demo", "installed_version": installed, "candidate_version": c, "arch": "all", "security": true}))
            .into_iter()
            .collect();
        let inv = json!({"hostname": self.name, "kernel": "6.1.0-28-amd64", "boot_id": boot, "package_manager": "apt", "timezone": "UTC",
            "os": {"id": "debian", "version": "12", "codename": "bookworm", "pretty_name": "Debian 12"},
            "packages": [{"name": "pw-demo", "source": "pw-demo", "version": installed, "source_version": installed, "arch": "all", "status": "ii"}],
            "upgradable": upgradable, "held": [],
            "reboot_required": required,
            "reboot_required_packages": if required { vec!["pw-demo"] } else { vec![] },
            "health": {"interrupted": false, "broken_packages": []},
            "disk": {"root_free_bytes": 1, "cache_free_bytes": 1}});
        let hash = format!("{}-{installed}-{boot}-{required}-{candidate:?}", self.name);
        let body = json!({"agent_version": "t", "protocol_version": 1, "inventory_hash": hash, "inventory": inv});
        let (status, v) = self.call("POST", "/api/v1/agent/checkin", Some(body));
        assert_eq!(status, 200, "{v}");
    }

    /// The one job on offer: (job id, decoded operation).
    fn offered(&self) -> (String, Value) {
        let (status, v) = self.call("GET", "/api/v1/agent/work?wait=0", None);
        assert_eq!(status, 200, "{v}");
        let items = v["items"].as_array().cloned().unwrap_or_default();
        assert_eq!(items.len(), 1, "one job on offer: {v}");
        let op: Value =
            serde_json::from_str(items[0]["payload"].as_str().expect("payload")).expect("op");
        (items[0]["job_id"].as_str().expect("id").to_owned(), op)
    }

    /// Starts the job and reports `pw-demo` upgraded and verified (no reboot required).
    fn report_verified(&self, job: &str, from: &str, to: &str, boot: &str) {
        let (status, v) = self.call("POST", &format!("/api/v1/agent/jobs/{job}/start"), None);
        assert_eq!(status, 204, "{v}");
        let result = json!({"started_at": "2026-11-19T10:00:00Z", "finished_at": "2026-11-19T10:00:05Z",
            "commands": ["apt-get install -y pw-demo"], "exit_code": 0, "duration_ms": 5000, "output": "",
            "boot_id": boot,
            "packages": [{"package": "pw-demo", "state": "verified",
                "from_version": from, "to_version": to, "installed_version": to,
                "evidence": ["dpkg: pw-demo {to} ii"]}]});
        let (status, v) = self.call(
            "POST",
            &format!("/api/v1/agent/jobs/{job}/result"),
            Some(result),
        );
        assert_eq!(status, 200, "{v}");
    }

    /// Starts the job and reports `pw-demo` installed at `to`, pending a reboot, in `boot`.
    fn report_pending_reboot(&self, job: &str, from: &str, to: &str, boot: &str) {
        let (status, v) = self.call("POST", &format!("/api/v1/agent/jobs/{job}/start"), None);
        assert_eq!(status, 204, "{v}");
        let result = json!({"started_at": "2026-11-19T10:00:00Z", "finished_at": "2026-11-19T10:00:05Z",
            "commands": ["apt-get install -y pw-demo"], "exit_code": 0, "duration_ms": 5000, "output": "",
            "boot_id": boot,
            "packages": [{"package": "pw-demo", "state": "pending_reboot", "class": "reboot_pending",
                "from_version": from, "to_version": to, "installed_version": to,
                "evidence": ["/run/reboot-required: *** System restart required ***"]}]});
        let (status, v) = self.call(
            "POST",
            &format!("/api/v1/agent/jobs/{job}/result"),
            Some(result),
        );
        assert_eq!(status, 200, "{v}");
    }
}

fn device(app: &App, name: &str) -> Device {
    let (_, tok) = app.op("POST", "/api/v1/enroll-tokens", Some(json!({})));
    let body = json!({"token": tok["token"], "hostname": name, "agent_version": "t", "protocol_version": 1});
    let (status, d) = support::call(
        "POST",
        &format!("{}/api/v1/agent/enroll", app.url),
        None,
        Some(body),
    );
    assert_eq!(status, 200, "{d}");
    Device {
        id: d["device_id"].as_str().expect("id").to_owned(),
        url: app.url.clone(),
        secret: d["device_secret"].as_str().expect("secret").to_owned(),
        name: name.to_owned(),
    }
}

fn deploy(app: &App, d: &Device, reboot: Value) -> String {
    let (status, v) = app.op(
        "POST",
        "/api/v1/deployments",
        Some(json!({"target": {"devices": [d.name]}, "selection": {"kind": "security"}, "reboot": reboot})),
    );
    assert_eq!(status, 201, "{v}");
    v["id"].as_str().expect("id").to_owned()
}

/// The `pw-demo` row of the deployment view.
fn row(app: &App, dep: &str) -> Value {
    let (status, v) = app.op("GET", &format!("/api/v1/deployments/{dep}"), None);
    assert_eq!(status, 200, "{v}");
    v["results"][0].clone()
}

fn evidence(row: &Value) -> String {
    row["evidence"]
        .as_array()
        .map(|e| {
            e.iter()
                .filter_map(|x| x.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

#[test]
fn reboot_requests_are_validated() {
    let (app, _clock) = spawn_app();
    let d = device(&app, "val-1");
    d.checkin("1.0", Some("1.1"), "b1", false);
    for (reboot, needle) in [
        (
            json!({"mode": "when_required", "max_per_day": 0}),
            "max_per_day",
        ),
        (
            json!({"mode": "when_required", "max_per_day": 11}),
            "max_per_day",
        ),
        (
            json!({"mode": "always", "come_back_secs": 59}),
            "come_back_secs",
        ),
        (
            json!({"mode": "always", "come_back_secs": 86_401}),
            "come_back_secs",
        ),
    ] {
        let (status, v) = app.op(
            "POST",
            "/api/v1/deployments",
            Some(json!({"target": {"devices": ["val-1"]}, "selection": {"kind": "security"}, "reboot": reboot})),
        );
        assert_eq!(status, 400, "{reboot}: {v}");
        assert!(
            v["message"].as_str().unwrap_or_default().contains(needle),
            "{v}"
        );
    }
    // No reboot policy: the agent is told never.
    let dep = deploy(&app, &d, Value::Null);
    let (_, op) = d.offered();
    assert_eq!(op["reboot"], "never", "{op}");
    let _ = dep;
}

#[test]
fn loop_guard_withholds_after_k_reboots_a_day_and_allows_again_later() {
    let (app, clock) = spawn_app();
    let d = device(&app, "k-1");
    d.checkin("1.0", Some("1.1"), "b1", false);
    let policy = json!({"mode": "when_required", "max_per_day": 1});
    let first = deploy(&app, &d, policy.clone());
    let (_, view) = app.op("GET", &format!("/api/v1/deployments/{first}"), None);
    assert_eq!(
        view["reboot"], "when_required (at most 1 a day, back within 900 s)",
        "{view}"
    );
    let (job, op) = d.offered();
    assert_eq!(op["reboot"], "when_required", "{op}");
    d.report_pending_reboot(&job, "1.0", "1.1", "b1");
    let r = row(&app, &first);
    assert_eq!(r["state"], "pending_reboot");
    assert!(
        evidence(&r).contains(
            "the agent reboots the device after the install (reboot policy when_required)"
        ),
        "{r}"
    );
    // Back with a new boot id, requirement cleared: verified.
    advance(&clock, 120);
    d.checkin("1.1", Some("1.2"), "b2", false);
    let r = row(&app, &first);
    assert_eq!(r["state"], "verified", "{r}");

    // A second deployment the same day: the device had its one reboot; sent `never`.
    advance(&clock, 3600);
    let second = deploy(&app, &d, policy);
    let (job2, op) = d.offered();
    assert_eq!(op["reboot"], "never", "{op}");
    // Offered again 24 h after the first reboot: the guard allows it once more.
    advance(&clock, 23 * 3600);
    let (again, op) = d.offered();
    assert_eq!(again, job2);
    assert_eq!(op["reboot"], "when_required", "{op}");
    // Back within the day window: withheld, and the result says why.
    advance(&clock, -3600);
    let (_, op) = d.offered();
    assert_eq!(op["reboot"], "never", "{op}");
    d.report_pending_reboot(&job2, "1.1", "1.2", "b2");
    let r = row(&app, &second);
    assert_eq!(r["state"], "pending_reboot");
    assert!(
        evidence(&r).contains("reboot withheld by the loop guard: this device was rebooted 1 time(s) in the last 24 h (at most 1 a day)"),
        "{r}"
    );
}

#[test]
fn a_reboot_that_does_not_clear_the_requirement_is_flagged_and_not_repeated() {
    let (app, clock) = spawn_app();
    let d = device(&app, "loop-1");
    d.checkin("1.0", Some("1.1"), "b1", false);
    let policy = json!({"mode": "when_required", "max_per_day": 5});
    let first = deploy(&app, &d, policy.clone());
    let (job, op) = d.offered();
    assert_eq!(op["reboot"], "when_required");
    d.report_pending_reboot(&job, "1.0", "1.1", "b1");
    // It rebooted (new boot id) but still requires a reboot for pw-demo.
    advance(&clock, 60);
    d.checkin("1.1", Some("1.2"), "b2", true);
    let r = row(&app, &first);
    assert_eq!(r["state"], "pending_reboot", "{r}");
    assert_eq!(r["class"], "reboot_loop", "{r}");
    assert!(
        evidence(&r).contains("still requires a reboot for pw-demo"),
        "{r}"
    );
    // The failure is listed under its class.
    let (status, f) = app.op("GET", "/api/v1/failures?class=reboot_loop", None);
    assert_eq!(status, 200, "{f}");
    assert_eq!(f["total"], 1, "{f}");
    // Another deployment of pw-demo: never rebooted for it again, whatever the daily budget.
    let second = deploy(&app, &d, policy.clone());
    let (job2, op) = d.offered();
    assert_eq!(op["reboot"], "never", "{op}");
    d.report_pending_reboot(&job2, "1.1", "1.2", "b2");
    let r = row(&app, &second);
    assert!(
        evidence(&r)
            .contains("an earlier reboot of this device did not clear the requirement for pw-demo"),
        "{r}"
    );
    // A later reboot that does clear it (an operator's) verifies the latest install.
    d.checkin("1.2", Some("1.3"), "b3", false);
    assert_eq!(row(&app, &second)["state"], "verified");
    assert_ne!(row(&app, &first)["class"], "reboot_loop");
    // The operator resets the device's failure state: the loop guard forgets the loop.
    let (status, v) = app.op(
        "POST",
        &format!("/api/v1/devices/{}/reset-failures", d.id),
        None,
    );
    assert_eq!(status, 200, "{v}");
    deploy(&app, &d, policy);
    let (_, op) = d.offered();
    assert_eq!(op["reboot"], "when_required", "{op}");
}

#[test]
fn a_device_that_does_not_come_back_in_time_is_flagged() {
    let (app, clock) = spawn_app();
    let d = device(&app, "late-1");
    d.checkin("1.0", Some("1.1"), "b1", false);
    let dep = deploy(&app, &d, json!({"mode": "always", "come_back_secs": 300}));
    let (job, op) = d.offered();
    assert_eq!(op["reboot"], "always");
    d.report_pending_reboot(&job, "1.0", "1.1", "b1");
    // Within its budget: nothing flagged.
    advance(&clock, 299);
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(row(&app, &dep)["class"], "reboot_pending");
    // Past it: the server's ticker flags it (no real waiting for the budget).
    advance(&clock, 2);
    let deadline = Instant::now() + Duration::from_secs(15);
    let r = loop {
        let r = row(&app, &dep);
        if r["class"] == "device_offline" {
            break r;
        }
        assert!(Instant::now() < deadline, "not flagged: {r}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(r["state"], "pending_reboot");
    assert!(
        evidence(&r).contains("did not come back within 300 s"),
        "{r}"
    );
    // It comes back later: verified after all.
    advance(&clock, 600);
    d.checkin("1.1", None, "b2", false);
    let r = row(&app, &dep);
    assert_eq!(r["state"], "verified", "{r}");
}

#[test]
fn always_reboots_after_any_change_and_when_required_only_when_required() {
    let (app, clock) = spawn_app();
    let d = device(&app, "always-1");
    d.checkin("1.0", Some("1.1"), "b1", false);
    // `always`: a verified upgrade is followed by a reboot, said on the package.
    let dep = deploy(&app, &d, json!({"mode": "always", "max_per_day": 3}));
    let (job, op) = d.offered();
    assert_eq!(op["reboot"], "always");
    d.report_verified(&job, "1.0", "1.1", "b1");
    let r = row(&app, &dep);
    assert_eq!(r["state"], "verified");
    assert!(
        evidence(&r)
            .contains("the agent reboots the device after the install (reboot policy always)"),
        "{r}"
    );
    // Back in time: nothing is flagged later.
    advance(&clock, 30);
    d.checkin("1.1", Some("1.2"), "b2", false);
    advance(&clock, 3600);
    std::thread::sleep(Duration::from_millis(2500));
    let r = row(&app, &dep);
    assert!(!evidence(&r).contains("did not come back"), "{r}");
    // `when_required` with nothing requiring a reboot: no reboot, no deadline.
    let dep = deploy(
        &app,
        &d,
        json!({"mode": "when_required", "come_back_secs": 60}),
    );
    let (job, op) = d.offered();
    assert_eq!(op["reboot"], "when_required");
    d.report_verified(&job, "1.1", "1.2", "b2");
    advance(&clock, 120);
    std::thread::sleep(Duration::from_millis(2500));
    let r = row(&app, &dep);
    assert_eq!(r["state"], "verified");
    assert!(!evidence(&r).contains("reboot"), "{r}");
}
