//! The failure queue's triage over real HTTP: assign, resolve (and reopen on a new failure),
//! accept a risk (approver only, with a reason and an expiry within a year), retry (a
//! one-device deployment the agent then gets), tenant isolation, age and deadline, and the
//! dashboard's action forms per role. Time comes from a `ManualClock`.

mod support;

use patchwarden_app::authz::Role;
use patchwarden_server::ManualClock;
use patchwarden_wire::{FailureClass, PackageState};
use serde_json::{json, Value};
use std::sync::Arc;
use support::*;

const PW: &str = "correct horse battery staple";
const DAY_MS: i64 = 24 * 3600 * 1000;

fn ms(rfc3339: &str) -> i64 {
    let t = time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .expect("time");
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

/// The seeded estate (a failed `pw-demo` on `acme-web-1`, reported at 2026-11-25T10:00:05Z)
/// with the server's clock a day later.
fn setup() -> (App, Seeded, Arc<ManualClock>) {
    let clock = ManualClock::at(ms("2026-11-26T10:00:05Z"));
    let app = spawn_app_with_clock(Some(clock.clone()));
    let s = seed(&app);
    (app, s, clock)
}

fn token(app: &App, tenant: &str, role: &str) -> String {
    let (status, v) = app.op(
        "POST",
        "/api/v1/tokens",
        Some(json!({"name": format!("{tenant}-{role}"), "role": role, "tenant": tenant})),
    );
    assert_eq!(status, 201, "{v}");
    v["token"].as_str().expect("token").to_owned()
}

fn act(app: &App, token: &str, action: &str, body: Value) -> (u16, Value) {
    call(
        "POST",
        &format!("{}/api/v1/failures/{action}", app.url),
        Some(token),
        Some(body),
    )
}

/// Every row of `GET /api/v1/failures` (`?all=true` with `all`).
fn rows(app: &App, token: &str, all: bool) -> Vec<Value> {
    let q = if all { "?all=true" } else { "" };
    let (status, v) = call(
        "GET",
        &format!("{}/api/v1/failures{q}", app.url),
        Some(token),
        None,
    );
    assert_eq!(status, 200, "{v}");
    v["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["failures"].as_array().cloned().unwrap_or_default())
        .collect()
}

fn row_of<'a>(rows: &'a [Value], device: &str) -> Option<&'a Value> {
    rows.iter()
        .find(|r| r["device"] == device && r["package"] == "pw-demo")
}

fn fail_again(app: &App, agent: &Agent, tenant: &str) {
    app.deploy(tenant, &[agent], false);
    assert!(agent.report(
        PackageState::Failed,
        Some(FailureClass::InstallScriptFailed),
        &[EVIDENCE]
    ));
}

#[test]
fn assign_then_resolve_leaves_the_queue_and_a_new_failure_reopens_it() {
    let (app, s, clock) = setup();
    let op = token(&app, "acme", "operator");
    app.user("ann@acme.example", PW, &[(Some("acme"), Role::Operator)]);
    app.user(
        "carol@globex.example",
        PW,
        &[(Some("globex"), Role::Viewer)],
    );

    let queue = rows(&app, &op, false);
    let r = row_of(&queue, &s.web1.id).expect("the seeded failure is in the queue");
    assert_eq!(r["status"], "open");
    assert_eq!(r["assignee"], Value::Null);
    assert_eq!(r["attempts"], 1);
    assert_eq!(r["first_failed_at"], "2026-11-25T10:00:05.000Z");
    assert_eq!(r["age_secs"], 86_400);
    // No vulnerability covers it: 14 days after the first failure.
    assert_eq!(r["deadline"], "2026-12-09T10:00:05.000Z");
    assert_eq!(r["deadline_basis"], "14 days after the first failure");
    assert_eq!(r["breached"], false);

    // Assign by hostname; only to an active person of this tenant.
    let (status, v) = act(
        &app,
        &op,
        "assign",
        json!({"device": "acme-web-1", "package": "pw-demo", "assignee": "ann@acme.example"}),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (v["assignee"].as_str(), v["status"].as_str()),
        (Some("ann@acme.example"), Some("open"))
    );
    for (who, why) in [
        ("nobody@acme.example", "no active user"),
        ("carol@globex.example", "no role"),
    ] {
        let (status, v) = act(
            &app,
            &op,
            "assign",
            json!({"device": s.web1.id, "package": "pw-demo", "assignee": who}),
        );
        assert_eq!(status, 400, "{v}");
        assert!(
            v["message"].as_str().unwrap_or_default().contains(why),
            "{v}"
        );
    }
    let queue = rows(&app, &op, false);
    assert_eq!(
        row_of(&queue, &s.web1.id).expect("row")["assignee"],
        "ann@acme.example"
    );
    // A package that has no current failure there.
    let (status, v) = act(
        &app,
        &op,
        "resolve",
        json!({"device": s.web1.id, "package": "curl"}),
    );
    assert_eq!(status, 404, "{v}");

    // Resolved: out of the queue, still listed with ?all=true.
    let (status, v) = act(
        &app,
        &op,
        "resolve",
        json!({"device": s.web1.id, "package": "pw-demo", "reason": "postinst fixed by hand"}),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["status"], "resolved");
    assert!(row_of(&rows(&app, &op, false), &s.web1.id).is_none());
    let all = rows(&app, &op, true);
    let r = row_of(&all, &s.web1.id).expect("listed with all");
    assert_eq!(
        (r["status"].as_str(), r["reason"].as_str()),
        (Some("resolved"), Some("postinst fixed by hand"))
    );

    // The device's own page lists it too, with its triage.
    let (status, d) = call(
        "GET",
        &format!("{}/api/v1/devices/{}", app.url, s.web1.id),
        Some(&op),
        None,
    );
    assert_eq!(status, 200, "{d}");
    let f = &d["failures"][0];
    assert_eq!(
        (
            f["status"].as_str(),
            f["assignee"].as_str(),
            f["age_secs"].as_i64()
        ),
        (Some("resolved"), Some("ann@acme.example"), Some(86_400)),
        "{d}"
    );

    // A newer failure of the same package reopens it: same streak, assignee kept.
    fail_again(&app, &s.web1, "acme");
    let queue = rows(&app, &op, false);
    let r = row_of(&queue, &s.web1.id).expect("reopened");
    assert_eq!(r["status"], "open");
    assert_eq!(r["assignee"], "ann@acme.example");
    assert_eq!(r["attempts"], 2);
    assert_eq!(r["first_failed_at"], "2026-11-25T10:00:05.000Z");

    // Past the deadline: breached.
    clock.advance(std::time::Duration::from_millis((14 * DAY_MS) as u64));
    let queue = rows(&app, &op, false);
    assert_eq!(row_of(&queue, &s.web1.id).expect("row")["breached"], true);

    // The actions are in the audit log, with the failure they were about.
    let (status, log) = app.op("GET", "/api/v1/audit", None);
    assert_eq!(status, 200);
    let text = log.to_string();
    assert!(
        text.contains(&format!("failure/{}/pw-demo", s.web1.id)),
        "{text}"
    );
    assert!(text.contains("assigned to ann@acme.example"), "{text}");
}

#[test]
fn accepting_a_risk_needs_an_approver_a_reason_and_an_expiry_within_a_year() {
    let (app, s, clock) = setup();
    let approver = token(&app, "acme", "approver");
    let operator = token(&app, "acme", "operator");
    let body = |reason: Option<&str>, until: &str| json!({"device": s.web1.id, "package": "pw-demo", "reason": reason, "until": until});
    let (status, v) = act(
        &app,
        &operator,
        "accept-risk",
        body(Some("x"), "2027-01-31"),
    );
    assert_eq!(status, 403, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap_or_default()
            .contains("approver"),
        "{v}"
    );
    for (b, why) in [
        (body(None, "2027-01-31"), "reason"),
        (body(Some("x"), "2026-11-20"), "not in the future"),
        (body(Some("x"), "2027-12-31"), "more than one year"),
        (body(Some("x"), "next tuesday"), "2027-01-31"),
    ] {
        let (status, v) = act(&app, &approver, "accept-risk", b);
        assert_eq!(status, 400, "{v}");
        assert!(
            v["message"].as_str().unwrap_or_default().contains(why),
            "{why}: {v}"
        );
    }
    // Nothing was recorded by the refusals.
    assert_eq!(
        row_of(&rows(&app, &approver, false), &s.web1.id).expect("row")["status"],
        "open"
    );

    let (status, v) = act(
        &app,
        &approver,
        "accept-risk",
        body(Some("vendor fix due next quarter"), "2027-01-31"),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["status"], "accepted_risk");
    assert_eq!(v["accepted_until"], "2027-01-31T23:59:59.999Z");
    assert!(row_of(&rows(&app, &approver, false), &s.web1.id).is_none());
    // A new failure does not end an accepted risk...
    fail_again(&app, &s.web1, "acme");
    assert!(row_of(&rows(&app, &approver, false), &s.web1.id).is_none());
    let all = rows(&app, &approver, true);
    let r = row_of(&all, &s.web1.id).expect("listed with all");
    assert_eq!(r["status"], "accepted_risk");
    assert_eq!(r["reason"], "vendor fix due next quarter");
    // ...its expiry does.
    clock.set(ms("2027-02-01T00:00:00Z"));
    let queue = rows(&app, &approver, false);
    assert_eq!(
        row_of(&queue, &s.web1.id).expect("back in the queue")["status"],
        "open"
    );
}

#[test]
fn retry_creates_a_one_device_deployment_that_the_agent_gets() {
    let (app, s, _clock) = setup();
    let operator = token(&app, "acme", "operator");
    let viewer = token(&app, "acme", "viewer");
    let req = json!({"device": "acme-web-1", "package": "pw-demo"});
    let (status, v) = act(&app, &viewer, "retry", req.clone());
    assert_eq!(status, 403, "{v}");
    // A rejected update is not retried either.
    let pending = app.deploy("acme", &[&s.web1], true);
    let (status, v) = app.op(
        "POST",
        &format!("/api/v1/deployments/{pending}/reject"),
        Some(json!({"reason": "bad build"})),
    );
    assert_eq!(status, 200, "{v}");
    let (status, v) = act(&app, &operator, "retry", req.clone());
    assert_eq!(status, 400, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap_or_default()
            .contains("rejected"),
        "{v}"
    );
    let (status, v) = app.op(
        "POST",
        "/api/v1/rejected-updates/unreject",
        Some(json!({"tenant": "acme", "package": "pw-demo"})),
    );
    assert_eq!(status, 200, "{v}");
    let (status, v) = act(&app, &operator, "retry", req);
    assert_eq!(status, 201, "{v}");
    let dep = v["deployment"].as_str().expect("deployment id").to_owned();
    let (status, d) = app.op("GET", &format!("/api/v1/deployments/{dep}"), None);
    assert_eq!(status, 200, "{d}");
    assert_eq!(d["devices_total"], 1, "{d}");
    assert_eq!(d["selection"]["packages"][0]["name"], "pw-demo", "{d}");
    let (status, work) = s.web1.call("GET", "/api/v1/agent/work?wait=0", None);
    assert_eq!(status, 200, "{work}");
    let payload = work["items"][0]["payload"]
        .as_str()
        .expect("a job for the device");
    assert!(
        payload.contains(&dep) && payload.contains("pw-demo"),
        "{payload}"
    );
    // The retry succeeds: the failure is no longer current.
    assert!(s.web1.report(PackageState::Verified, None, &[]));
    assert!(row_of(&rows(&app, &operator, true), &s.web1.id).is_none());
}

#[test]
fn another_tenant_cannot_act_on_the_failure() {
    let (app, s, _clock) = setup();
    let globex = token(&app, "globex", "admin");
    let acme = token(&app, "acme", "admin");
    for action in ["assign", "resolve", "accept-risk", "retry"] {
        for device in [s.web1.id.as_str(), "acme-web-1"] {
            let (status, v) = act(
                &app,
                &globex,
                action,
                json!({"device": device, "package": "pw-demo", "assignee": "admin",
                    "reason": "x", "until": "2027-01-31"}),
            );
            assert_eq!(status, 404, "{action} {device}: {v}");
        }
    }
    assert!(
        rows(&app, &globex, true).is_empty(),
        "globex sees none of acme's failures"
    );
    let (status, v) = act(
        &app,
        &acme,
        "resolve",
        json!({"device": s.globex1.id, "package": "pw-demo"}),
    );
    assert_eq!(status, 404, "{v}");
    // Unchanged for acme.
    assert_eq!(
        row_of(&rows(&app, &acme, false), &s.web1.id).expect("row")["status"],
        "open"
    );
}

#[test]
fn the_dashboard_shows_each_role_its_actions_and_refuses_forced_ones() {
    let (app, s, _clock) = setup();
    app.user("vera@acme.example", PW, &[(Some("acme"), Role::Viewer)]);
    app.user("otto@acme.example", PW, &[(Some("acme"), Role::Operator)]);
    app.user("abby@acme.example", PW, &[(Some("acme"), Role::Approver)]);
    let forms = [
        "/failures/assign",
        "/failures/resolve",
        "/failures/retry",
        "/failures/accept-risk",
    ];
    let login = |who: &str| {
        let mut web = Web::new(&app.url);
        assert_eq!(web.login(who, PW).status, 303);
        web
    };

    // A viewer: the failure with its age and deadline, no action; a forced POST is refused.
    let mut viewer = login("vera@acme.example");
    let page = viewer.get("/failures");
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("acme-web-1") && page.body.contains("unassigned"),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("1 d 0 h") && page.body.contains("2026-12-09 10:00 UTC"),
        "{}",
        page.body
    );
    for f in forms {
        assert!(
            !page.body.contains(&format!("action=\"{f}\"")),
            "viewer sees {f}"
        );
    }
    let csrf = viewer.csrf();
    let device = s.web1.id.as_str();
    let forced = viewer.post(
        "/failures/resolve",
        &[("csrf", &csrf), ("device", device), ("package", "pw-demo")],
    );
    assert_eq!(forced.status, 403, "{}", forced.body);

    // An operator: assign, resolve, retry; no accept-risk. A form without CSRF is refused.
    let mut operator = login("otto@acme.example");
    let page = operator.get("/failures");
    for f in &forms[..3] {
        assert!(
            page.body.contains(&format!("action=\"{f}\"")),
            "operator lacks {f}"
        );
    }
    assert!(!page.body.contains("action=\"/failures/accept-risk\""));
    assert!(
        page.body
            .contains("<label for=\"assignee-install_script_failed-1\">"),
        "labelled inputs"
    );
    let no_csrf = operator.post(
        "/failures/assign",
        &[
            ("device", device),
            ("package", "pw-demo"),
            ("assignee", "otto@acme.example"),
        ],
    );
    assert_ne!(no_csrf.status, 303, "no CSRF token: refused");
    let csrf = operator.csrf();
    let done = operator.post(
        "/failures/assign",
        &[
            ("csrf", &csrf),
            ("device", device),
            ("package", "pw-demo"),
            ("assignee", "otto@acme.example"),
        ],
    );
    assert_eq!(
        (done.status, done.location.as_deref()),
        (303, Some("/failures")),
        "{}",
        done.body
    );
    assert!(operator.get("/failures").body.contains("otto@acme.example"));
    let forced = operator.post(
        "/failures/accept-risk",
        &[
            ("csrf", &csrf),
            ("device", device),
            ("package", "pw-demo"),
            ("reason", "x"),
            ("until", "2027-01-31"),
        ],
    );
    assert_eq!(forced.status, 403, "{}", forced.body);

    // An operator of another tenant: the device does not exist for them.
    app.user(
        "gus@globex.example",
        PW,
        &[(Some("globex"), Role::Operator)],
    );
    let mut other = login("gus@globex.example");
    assert!(!other.get("/failures").body.contains("acme-web-1"));
    let csrf_other = other.csrf();
    let forced = other.post(
        "/failures/resolve",
        &[
            ("csrf", &csrf_other),
            ("device", device),
            ("package", "pw-demo"),
        ],
    );
    assert_eq!(forced.status, 404, "{}", forced.body);

    // An approver: only accept-risk; accepting takes it out of the queue.
    let mut approver = login("abby@acme.example");
    let page = approver.get("/failures");
    assert!(page.body.contains("action=\"/failures/accept-risk\""));
    for f in &forms[..3] {
        assert!(
            !page.body.contains(&format!("action=\"{f}\"")),
            "approver sees {f}"
        );
    }
    let csrf = approver.csrf();
    let done = approver.post(
        "/failures/accept-risk",
        &[
            ("csrf", &csrf),
            ("device", device),
            ("package", "pw-demo"),
            ("reason", "compensating control"),
            ("until", "2027-01-31"),
        ],
    );
    assert_eq!(done.status, 303, "{}", done.body);
    assert!(!approver.get("/failures").body.contains("acme-web-1"));
    let all = approver.get("/failures?all=true");
    assert!(
        all.body.contains("accepted_risk") && all.body.contains("compensating control"),
        "{}",
        all.body
    );
}

/// The deadline of a failure whose update fixes a vulnerability is that vulnerability's SLA
/// deadline (here: CVE-2024-6387, not yet rated, 90 days from first seen), not the 14 days.
#[test]
fn the_deadline_is_the_sla_of_a_vulnerability_the_update_fixes() {
    use base64::Engine;
    let clock = ManualClock::at(ms("2026-01-01T00:00:00Z"));
    let app = spawn_app_with_clock(Some(clock.clone()));
    let (status, tok) = app.op(
        "POST",
        "/api/v1/enroll-tokens",
        Some(json!({"tenant": "acme"})),
    );
    assert_eq!(status, 201, "{tok}");
    let (status, dev) = call(
        "POST",
        &format!("{}/api/v1/agent/enroll", app.url),
        None,
        Some(
            json!({"token": tok["token"], "hostname": "acme-ssh", "agent_version": "t", "protocol_version": 1}),
        ),
    );
    assert_eq!(status, 200, "{dev}");
    let agent = Agent {
        url: app.url.clone(),
        id: dev["device_id"].as_str().expect("id").to_owned(),
        secret: dev["device_secret"].as_str().expect("secret").to_owned(),
    };
    let old = "1:9.2p1-2+deb12u2";
    let new = "1:9.2p1-2+deb12u3";
    let inventory = json!({
        "hostname": "acme-ssh", "kernel": "6.1.0-18-amd64", "boot_id": "b1", "package_manager": "apt",
        "os": {"id": "debian", "version": "12", "codename": "bookworm", "pretty_name": "Debian GNU/Linux 12 (bookworm)"},
        "packages": [{"name": "openssh-server", "source": "openssh", "version": old, "source_version": old, "arch": "amd64", "status": "ii"}],
        "upgradable": [{"name": "openssh-server", "installed_version": old, "candidate_version": new, "arch": "amd64",
            "security": true, "origins": ["Debian-Security"], "held": false}],
        "held": [], "reboot_required": false,
        "health": {"interrupted": false, "broken_packages": []},
        "disk": {"root_free_bytes": 1, "cache_free_bytes": 1}
    });
    let (status, v) = agent.call(
        "POST",
        "/api/v1/agent/checkin",
        Some(json!({"agent_version": "t", "protocol_version": 1, "inventory_hash": "inv-ssh", "inventory": inventory})),
    );
    assert_eq!(status, 200, "{v}");
    let tracker = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../vuln/tests/fixtures/debian_tracker.json"),
    )
    .expect("fixture");
    let (status, v) = app.op(
        "POST",
        "/api/v1/feeds",
        Some(json!({"kind": "debian-tracker",
            "content_base64": base64::engine::general_purpose::STANDARD.encode(tracker)})),
    );
    assert_eq!(status, 200, "{v}");

    // The fix fails to install a day later.
    clock.set(ms("2026-01-02T00:00:00Z"));
    let (status, v) = app.op(
        "POST",
        "/api/v1/deployments",
        Some(json!({"tenant": "acme", "target": {"devices": [agent.id]},
            "selection": {"kind": "packages", "packages": [{"name": "openssh-server"}]}})),
    );
    assert_eq!(status, 201, "{v}");
    let (status, work) = agent.call("GET", "/api/v1/agent/work?wait=0", None);
    assert_eq!(status, 200, "{work}");
    let job = work["items"][0]["job_id"].as_str().expect("job").to_owned();
    let result = json!({
        "started_at": "2026-01-02T00:00:00Z", "finished_at": "2026-01-02T00:00:05Z",
        "commands": [format!("apt-get install -y openssh-server={new}")], "exit_code": 100,
        "duration_ms": 5000, "output": "",
        "packages": [{"package": "openssh-server", "state": "failed", "class": "install_script_failed",
            "from_version": old, "to_version": new, "installed_version": old,
            "evidence": ["openssh-server.postinst returned error exit status 1"]}]
    });
    let (status, v) = agent.call(
        "POST",
        &format!("/api/v1/agent/jobs/{job}/result"),
        Some(result),
    );
    assert_eq!(status, 200, "{v}");

    let queue = rows(&app, &app.admin, false);
    let r = queue
        .iter()
        .find(|r| r["package"] == "openssh-server")
        .expect("the failure");
    assert_eq!(r["first_failed_at"], "2026-01-02T00:00:05.000Z");
    assert_eq!(r["deadline"], "2026-04-01T00:00:00.000Z", "{r}");
    assert_eq!(r["deadline_basis"], "SLA of CVE-2024-6387");
    assert_eq!(r["breached"], false);
}
