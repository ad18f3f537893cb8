//! Policies over real HTTP with an injected clock: CRUD and idempotent apply, the scheduler
//! creating each cycle's deployment once (also across a restart), approval modes, rejected
//! updates as a hard block, retries with exponential backoff, spread, pre-flight ahead of the
//! window with exclusion, and the expedite trigger from a known-exploited vulnerability.

use base64::Engine;
use patchwarden_server::ManualClock;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod support;

use support::{Agent, App};

fn ms(rfc3339: &str) -> i64 {
    let t = time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .expect("time");
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

fn app_at(start: &str) -> (App, Arc<ManualClock>) {
    let clock = ManualClock::at(ms(start));
    (support::spawn_app_with_clock(Some(clock.clone())), clock)
}

/// Polls until `f` gives Some (the server's scheduler ticks every 2 s), at most 20 s.
fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(t) = f() {
            return t;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Lets the scheduler run a few times.
fn let_ticks_pass() {
    std::thread::sleep(Duration::from_millis(4500));
}

fn work(a: &Agent) -> Vec<Value> {
    let (status, v) = a.call("GET", "/api/v1/agent/work?wait=0", None);
    assert_eq!(status, 200, "{v}");
    v["items"].as_array().cloned().unwrap_or_default()
}

fn finish(a: &Agent, job: &str, state: &str, class: Option<&str>) -> Value {
    let (s, v) = a.call("POST", &format!("/api/v1/agent/jobs/{job}/start"), None);
    assert!(s == 204 || s == 200, "start {job}: {s} {v}");
    let result = json!({"started_at": "2026-12-05T02:10:00Z", "finished_at": "2026-12-05T02:11:00Z",
        "commands": ["apt-get install"], "exit_code": if state == "verified" {0} else {100}, "duration_ms": 1, "output": "",
        "packages": [{"package": "pw-demo", "state": state, "class": class, "from_version": "1.0", "to_version": "1.1",
            "installed_version": if state == "verified" {"1.1"} else {"1.0"},
            "evidence": if class.is_some() {vec!["E: Could not get lock /var/lib/dpkg/lock-frontend"]} else {vec![]}}]});
    let (status, v) = a.call(
        "POST",
        &format!("/api/v1/agent/jobs/{job}/result"),
        Some(result),
    );
    assert_eq!(status, 200, "{v}");
    v
}

fn policy(app: &App, name: &str) -> Value {
    let (status, v) = app.op("GET", &format!("/api/v1/policies/{name}"), None);
    assert_eq!(status, 200, "{v}");
    v
}

fn weekly(name: &str, extra: Value) -> Value {
    let mut p = json!({"name": name, "target": {"labels": {"env": "prod"}}, "what": {"kind": "security"},
        "schedule": "weekly saturday 02:00", "window_duration_secs": 7200, "spread": false});
    for (k, v) in extra.as_object().cloned().unwrap_or_default() {
        p[k] = v;
    }
    p
}

#[test]
fn policies_crud_and_apply_are_idempotent() {
    let (app, _clock) = app_at("2026-12-03T00:00:00Z");
    let (s, v) = app.op(
        "POST",
        "/api/v1/policies",
        Some(weekly("monthly", json!({}))),
    );
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["action"], "created");
    let (s, v) = app.op(
        "POST",
        "/api/v1/policies",
        Some(weekly("monthly", json!({}))),
    );
    assert_eq!(s, 409, "a second policy with the same name: {v}");

    // Bad input names what is wrong, and loses nothing.
    let bad = [
        (weekly("x", json!({"schedule": "fortnightly"})), "schedule"),
        (weekly("x", json!({"approval": "sometimes"})), "approval"),
        (
            weekly("x", json!({"exclude": ["[abc"]})),
            "exclusion pattern",
        ),
        (
            weekly("x", json!({"target": {"all": true, "devices": ["a"]}})),
            "target",
        ),
        (weekly("x", json!({"concurrency": "lots"})), "concurrency"),
        (
            weekly("x", json!({"retry": {"classes": ["bad_luck"]}})),
            "bad_luck",
        ),
        (weekly("x", json!({"schedul": "daily 01:00"})), "schedul"),
        (weekly("bad/name", json!({})), "policy name"),
    ];
    for (body, needle) in bad {
        let (s, v) = app.op("POST", "/api/v1/policies", Some(body.clone()));
        assert!(s == 400 || s == 422, "{body}: {s} {v}");
        let msg = v["message"].as_str().unwrap_or("").to_owned() + &v.to_string();
        assert!(msg.contains(needle), "{needle:?} not named in {v}");
    }
    let (_, list) = app.op("GET", "/api/v1/policies", None);
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");

    // Apply: create, then the same again changes nothing, then an edit is one update.
    let file = json!({"policies": [weekly("monthly", json!({})), weekly("pilot", json!({"approval": "manual"}))]});
    let (s, v) = app.op("POST", "/api/v1/apply", Some(file.clone()));
    assert_eq!(s, 200, "{v}");
    let actions: Vec<&str> = v
        .as_array()
        .expect("present")
        .iter()
        .map(|o| o["action"].as_str().expect("present"))
        .collect();
    assert_eq!(actions, ["unchanged", "created"]);
    let (_, v) = app.op("POST", "/api/v1/apply", Some(file));
    let actions: Vec<&str> = v
        .as_array()
        .expect("present")
        .iter()
        .map(|o| o["action"].as_str().expect("present"))
        .collect();
    assert_eq!(actions, ["unchanged", "unchanged"]);
    let edited = json!({"policies": [weekly("pilot", json!({"approval": "automatic"}))]});
    let (_, v) = app.op("POST", "/api/v1/apply", Some(edited));
    assert_eq!(v[0]["action"], "updated", "{v}");
    assert_eq!(policy(&app, "pilot")["revision"], 2);
    // A file with one bad policy saves none of it.
    let mixed = json!({"policies": [weekly("third", json!({})), weekly("pilot", json!({"schedule": "never"}))]});
    let (s, _) = app.op("POST", "/api/v1/apply", Some(mixed));
    assert_eq!(s, 400);
    let (s, _) = app.op("GET", "/api/v1/policies/third", None);
    assert_eq!(s, 404, "nothing of a rejected file is stored");
    assert_eq!(policy(&app, "pilot")["revision"], 2);

    // Show: the next cycle is the next Saturday (devices without a zone: UTC).
    let p = policy(&app, "monthly");
    assert_eq!(p["next_cycle"], "2026-12-05", "{p}");
    assert_eq!(p["next_window_start"], "2026-12-05T02:00:00.000Z");

    // Edit by id, then delete.
    let id = p["id"].as_str().expect("present").to_owned();
    let (s, v) = app.op(
        "PUT",
        &format!("/api/v1/policies/{id}"),
        Some(weekly("monthly", json!({"enabled": false}))),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(policy(&app, "monthly")["spec"]["enabled"], false);
    let (s, _) = app.op("DELETE", &format!("/api/v1/policies/{id}"), None);
    assert_eq!(s, 204);
    let (s, _) = app.op("GET", &format!("/api/v1/policies/{id}"), None);
    assert_eq!(s, 404);
}

#[test]
fn a_cycle_gets_exactly_one_deployment_even_across_a_restart() {
    let (app, clock) = app_at("2026-12-03T00:00:00Z");
    let a = app.device("default", "web1", true);
    let b = app.device("default", "web2", true);
    let (s, v) = app.op(
        "POST",
        "/api/v1/policies",
        Some(weekly("weekly", json!({"lead_secs": 86400}))),
    );
    assert_eq!(s, 201, "{v}");

    // Thursday: Saturday's window is more than the lead time away: nothing yet.
    let_ticks_pass();
    assert_eq!(policy(&app, "weekly")["runs"], json!([]));

    // Friday 03:00 UTC: within 24 h of the window: the cycle's deployment, once.
    clock.set(ms("2026-12-04T03:00:00Z"));
    let run = eventually("the cycle's deployment", || {
        policy(&app, "weekly")["runs"]
            .as_array()
            .and_then(|r| r.first().cloned())
    });
    assert_eq!(run["cycle"], "2026-12-05");
    let dep = run["deployment"].as_str().expect("present").to_owned();
    let (_, d) = app.op("GET", &format!("/api/v1/deployments/{dep}"), None);
    assert_eq!(d["status"], "running", "{d}");
    assert!(work(&a).is_empty(), "nothing is released before the window");

    // The server restarts before the window: still one deployment for the cycle.
    let app = app.restart(clock.clone());
    let_ticks_pass();
    assert_eq!(
        policy(&app, "weekly")["runs"].as_array().map(Vec::len),
        Some(1)
    );

    // Inside the window: both devices get their work, once.
    clock.set(ms("2026-12-05T02:05:00Z"));
    let agents: Vec<Agent> = [a, b]
        .into_iter()
        .map(|x| Agent {
            url: app.url.clone(),
            ..x
        })
        .collect();
    for x in &agents {
        let items = eventually("work in the window", || {
            Some(work(x)).filter(|w| !w.is_empty())
        });
        assert_eq!(items.len(), 1);
        assert!(
            items[0]["payload"]
                .as_str()
                .expect("present")
                .contains("\"not_after\":\"2026-12-05T04:00:00"),
            "{}",
            items[0]
        );
        finish(
            x,
            items[0]["job_id"].as_str().expect("present"),
            "verified",
            None,
        );
    }
    let d = eventually("completion", || {
        let (_, d) = app.op("GET", &format!("/api/v1/deployments/{dep}"), None);
        (d["status"] == "completed").then_some(d)
    });
    assert_eq!(d["counts"]["verified"], 2, "{d}");
    let_ticks_pass();
    assert_eq!(
        policy(&app, "weekly")["runs"].as_array().map(Vec::len),
        Some(1)
    );
    let (_, all) = app.op("GET", "/api/v1/deployments", None);
    assert_eq!(
        all.as_array().map(Vec::len),
        Some(1),
        "no second deployment: {all}"
    );

    // The next week's cycle comes by itself.
    clock.set(ms("2026-12-11T03:00:00Z"));
    let runs = eventually("next cycle", || {
        let r = policy(&app, "weekly")["runs"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        (r.len() == 2).then_some(r)
    });
    assert_eq!(runs[0]["cycle"], "2026-12-12");
}

#[test]
fn manual_approval_and_rejected_updates_are_a_hard_block() {
    let (app, clock) = app_at("2026-12-04T03:00:00Z");
    let a = app.device("default", "web1", true);
    let (s, v) = app.op(
        "POST",
        "/api/v1/policies",
        Some(weekly("gated", json!({"approval": "manual"}))),
    );
    assert_eq!(s, 201, "{v}");
    let dep = eventually("the cycle's deployment", || {
        policy(&app, "gated")["runs"][0]["deployment"]
            .as_str()
            .map(str::to_owned)
    });
    let (_, d) = app.op("GET", &format!("/api/v1/deployments/{dep}"), None);
    assert_eq!(d["status"], "pending_approval", "{d}");
    clock.set(ms("2026-12-05T02:05:00Z"));
    let_ticks_pass();
    assert!(
        work(&a).is_empty(),
        "nothing installs before approval, even in the window"
    );

    // Rejected: pw-demo 1.1 is blocked for every deployment until un-rejected.
    let (s, v) = app.op(
        "POST",
        &format!("/api/v1/deployments/{dep}/reject"),
        Some(json!({"reason": "breaks nginx"})),
    );
    assert_eq!(s, 200, "{v}");
    let (_, rej) = app.op("GET", "/api/v1/rejected-updates", None);
    assert_eq!(rej[0]["package"], "pw-demo", "{rej}");
    assert_eq!(rej[0]["version"], "1.1");
    let (s, v) = app.op(
        "POST",
        "/api/v1/deployments",
        Some(json!({"target": {"devices": [a.id]}, "selection": {"kind": "security"}})),
    );
    assert_eq!(s, 400, "{v}");
    assert!(
        v["message"].as_str().expect("present").contains("rejected"),
        "{v}"
    );
    assert!(
        v["message"]
            .as_str()
            .expect("present")
            .contains("pw-demo=1.1"),
        "{v}"
    );

    // The dashboard shows the policy, its cycle's deployment, and the rejection.
    let mut web = support::Web::new(&app.url);
    assert_eq!(web.login("admin", &app.admin_password).status, 303);
    let page = web.get("/policies");
    assert_eq!(page.status, 200, "{}", page.body);
    for needle in [
        "gated",
        "weekly saturday 02:00",
        "manual",
        &format!("/deployments/{dep}"),
        "pw-demo",
        "breaks nginx",
    ] {
        assert!(page.body.contains(needle), "{needle:?} not on /policies");
    }

    let (s, v) = app.op(
        "POST",
        "/api/v1/rejected-updates/unreject",
        Some(json!({"package": "pw-demo", "version": "1.1"})),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["lifted"], 1);
    let (s, v) = app.op(
        "POST",
        "/api/v1/rejected-updates/unreject",
        Some(json!({"package": "pw-demo"})),
    );
    assert_eq!(s, 404, "nothing left to lift: {v}");
    let (s, v) = app.op(
        "POST",
        "/api/v1/deployments",
        Some(json!({"target": {"devices": [a.id]}, "selection": {"kind": "security"}})),
    );
    assert_eq!(s, 201, "after un-rejecting: {v}");
}

#[test]
fn retries_back_off_exponentially_and_keep_every_attempt() {
    let (app, clock) = app_at("2026-12-05T02:00:00Z");
    let a = app.device("default", "web1", true);
    let (s, v) = app.op("POST", "/api/v1/deployments", Some(json!({"target": {"devices": [a.id]},
        "selection": {"kind": "security"}, "retry": {"max_attempts": 3, "backoff_secs": 60, "classes": ["lock_held"]}})));
    assert_eq!(s, 201, "{v}");
    let dep = v["id"].as_str().expect("present").to_owned();

    let first = work(&a);
    let job1 = first[0]["job_id"].as_str().expect("present").to_owned();
    finish(&a, &job1, "failed", Some("lock_held"));
    assert!(work(&a).is_empty(), "the retry waits for its backoff");
    clock.advance(Duration::from_secs(59));
    assert!(work(&a).is_empty(), "not before 60 s");
    clock.advance(Duration::from_secs(1));
    let second = work(&a);
    let job2 = second[0]["job_id"].as_str().expect("present").to_owned();
    assert_eq!(
        job2,
        format!("{job1}~2"),
        "a retry is a new work id for the agent"
    );

    // A late re-delivery of the first attempt's result changes nothing.
    let late = finish(&a, &job1, "failed", Some("lock_held"));
    assert_eq!(late["stored"], false, "{late}");

    finish(&a, &job2, "failed", Some("lock_held"));
    clock.advance(Duration::from_secs(119));
    assert!(work(&a).is_empty(), "second backoff is 120 s");
    clock.advance(Duration::from_secs(1));
    let third = work(&a);
    let job3 = third[0]["job_id"].as_str().expect("present").to_owned();
    assert_eq!(job3, format!("{job1}~3"));
    finish(&a, &job3, "verified", None);

    let (_, d) = app.op("GET", &format!("/api/v1/deployments/{dep}"), None);
    assert_eq!(d["status"], "completed", "{d}");
    assert_eq!(d["counts"]["verified"], 1, "{d}");
    let (_, dev) = app.op("GET", &format!("/api/v1/devices/{}", a.id), None);
    let attempts = dev["history"].as_array().cloned().unwrap_or_default();
    let states: Vec<&str> = attempts
        .iter()
        .map(|x| x["state"].as_str().expect("present"))
        .collect();
    assert_eq!(
        states,
        ["verified", "failed", "failed"],
        "newest first: {dev:#}"
    );

    // Classes not worth a retry, and attempts used up, end there.
    let b = app.device("default", "web2", true);
    let (_, v) = app.op("POST", "/api/v1/deployments", Some(json!({"target": {"devices": [b.id]},
        "selection": {"kind": "security"}, "retry": {"max_attempts": 3, "classes": ["lock_held"]}})));
    let dep = v["id"].as_str().expect("present").to_owned();
    let job = work(&b)[0]["job_id"].as_str().expect("present").to_owned();
    finish(&b, &job, "failed", Some("dependency_conflict"));
    clock.advance(Duration::from_secs(3600));
    assert!(work(&b).is_empty(), "dependency_conflict is not retried");
    let (_, d) = app.op("GET", &format!("/api/v1/deployments/{dep}"), None);
    assert_eq!(d["status"], "completed", "{d}");
}

#[test]
fn spread_staggers_start_times_by_device() {
    let (app, clock) = app_at("2026-12-05T01:00:00Z");
    let agents: Vec<Agent> = (0..6)
        .map(|i| app.device("default", &format!("web{i}"), true))
        .collect();
    let ids: Vec<&str> = agents.iter().map(|a| a.id.as_str()).collect();
    let (s, v) = app.op("POST", "/api/v1/deployments", Some(json!({"target": {"devices": ids},
        "selection": {"kind": "security"}, "window": "weekly saturday 02:00", "window_duration_secs": 7200,
        "timeout_secs": 600, "spread": true})));
    assert_eq!(s, 201, "{v}");
    // The spread puts each device at a fixed offset in [0, 2 h - 10 min): count who has work
    // at a few points of the window; it only grows, and not everyone starts at once.
    let mut seen = Vec::new();
    for t in [
        "2026-12-05T02:00:00Z",
        "2026-12-05T02:40:00Z",
        "2026-12-05T03:20:00Z",
        "2026-12-05T03:50:00Z",
    ] {
        clock.set(ms(t));
        let_ticks_pass();
        let n = agents.iter().filter(|a| !work(a).is_empty()).count();
        seen.push(n);
    }
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
    assert!(
        seen[0] < 6,
        "not all devices start at the window's opening: {seen:?}"
    );
    assert_eq!(
        seen[3], 6,
        "every device starts before the window's end minus its budget: {seen:?}"
    );
}

#[test]
fn preflight_runs_ahead_of_the_window_and_excludes_predicted_failures() {
    let (app, clock) = app_at("2026-12-03T00:00:00Z");
    let a = app.device("default", "web1", true);
    let b = app.device("default", "web2", true);
    let (s, v) = app.op("POST", "/api/v1/deployments", Some(json!({"target": {"devices": [a.id, b.id]},
        "selection": {"kind": "security"}, "window": "weekly saturday 02:00", "window_duration_secs": 7200,
        "preflight": {"lead_secs": 43200, "exclude_failing": true}})));
    assert_eq!(s, 201, "{v}");
    let dep = v["id"].as_str().expect("present").to_owned();
    assert!(
        work(&a).is_empty(),
        "no pre-flight 2 days ahead with a 12 h lead"
    );

    clock.set(ms("2026-12-04T15:00:00Z"));
    let answer = |x: &Agent, state: &str, class: Option<&str>| {
        let items = eventually("the pre-flight", || Some(work(x)).filter(|w| !w.is_empty()));
        let job = items[0]["job_id"].as_str().expect("present").to_owned();
        assert!(job.starts_with("pf_"), "{items:?}");
        assert!(items[0]["payload"]
            .as_str()
            .expect("present")
            .contains("\"type\":\"preflight\""));
        finish(x, &job, state, class);
    };
    answer(&a, "verified", None);
    answer(&b, "failed", Some("dependency_conflict"));

    clock.set(ms("2026-12-05T02:05:00Z"));
    let items = eventually("a's install", || Some(work(&a)).filter(|w| !w.is_empty()));
    assert!(!items[0]["job_id"]
        .as_str()
        .expect("present")
        .starts_with("pf_"));
    let_ticks_pass();
    assert!(
        work(&b).is_empty(),
        "b is excluded by its failed pre-flight"
    );
    let (_, d) = app.op("GET", &format!("/api/v1/deployments/{dep}"), None);
    let row = d["results"]
        .as_array()
        .and_then(|r| {
            r.iter()
                .find(|x| x["device_id"] == b.id.as_str() || x["device"] == b.id.as_str())
        })
        .cloned()
        .unwrap_or_else(|| panic!("{d:#}"));
    assert_eq!(row["state"], "skipped", "{row}");
    assert!(
        row.to_string()
            .contains("pre-flight predicted dependency_conflict"),
        "{row}"
    );
}

#[test]
fn a_known_exploited_fix_is_expedited_once() {
    let (app, _clock) = app_at("2026-11-25T10:00:00Z");
    // A device with the vulnerable openssh and its fix pending.
    let a = app.device("default", "web1", false);
    let inv = json!({
        "hostname": "web1", "kernel": "6.1.0-18-amd64", "boot_id": "b1", "package_manager": "apt",
        "os": {"id": "debian", "version": "12", "codename": "bookworm", "pretty_name": "Debian GNU/Linux 12 (bookworm)"},
        "packages": [{"name": "openssh-server", "source": "openssh", "version": "1:9.2p1-2+deb12u2", "source_version": "1:9.2p1-2+deb12u2", "arch": "amd64", "status": "ii"}],
        "upgradable": [{"name": "openssh-server", "installed_version": "1:9.2p1-2+deb12u2", "candidate_version": "1:9.2p1-2+deb12u3", "arch": "amd64", "security": true}],
        "held": [], "reboot_required": false, "health": {"interrupted": false, "broken_packages": []},
        "disk": {"root_free_bytes": 1, "cache_free_bytes": 1}});
    let (s, v) = a.call("POST", "/api/v1/agent/checkin", Some(json!({"agent_version": "t", "protocol_version": 1, "inventory_hash": "h2", "inventory": inv})));
    assert_eq!(s, 200, "{v}");
    let tracker = std::fs::read(
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../vuln/tests/fixtures/debian_tracker.json"),
    )
    .expect("fixture");
    // regreSSHion listed as known exploited (a KEV catalogue of one entry).
    let kev = json!({"title": "CISA Catalog of Known Exploited Vulnerabilities", "catalogVersion": "2026.11.25",
        "dateReleased": "2026-11-25T00:00:00Z", "count": 1, "vulnerabilities": [{"cveID": "CVE-2024-6387",
        "vendorProject": "OpenBSD", "product": "OpenSSH", "vulnerabilityName": "regreSSHion", "dateAdded": "2026-11-20",
        "shortDescription": "race", "requiredAction": "Apply updates per vendor instructions.", "dueDate": "2026-12-11",
        "knownRansomwareCampaignUse": "Unknown", "notes": ""}]});
    for (kind, bytes) in [
        ("debian-tracker", tracker),
        ("cisa-kev", kev.to_string().into_bytes()),
    ] {
        let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
        let (s, v) = app.op(
            "POST",
            "/api/v1/feeds",
            Some(json!({"kind": kind, "content_base64": b64})),
        );
        assert_eq!(s, 200, "{kind}: {v}");
    }
    let (_, vulns) = app.op("GET", "/api/v1/vulns?kev=true", None);
    assert!(vulns.to_string().contains("CVE-2024-6387"), "{vulns}");

    // A policy with only an expedite rule (no schedule): KEV with a fix → deployed at once.
    let (s, v) = app.op(
        "POST",
        "/api/v1/policies",
        Some(json!({"name": "kev", "target": {"all": true},
        "what": {"kind": "security"}, "expedite": {"kev": true, "min_severity": "critical"}})),
    );
    assert_eq!(s, 201, "{v}");
    let run = eventually("the expedited deployment", || {
        policy(&app, "kev")["runs"]
            .as_array()
            .and_then(|r| r.first().cloned())
    });
    assert!(
        run["cycle"]
            .as_str()
            .expect("present")
            .starts_with("expedite:"),
        "{run}"
    );
    let dep = run["deployment"].as_str().expect("present").to_owned();
    let (_, d) = app.op("GET", &format!("/api/v1/deployments/{dep}"), None);
    assert_eq!(d["status"], "running", "{d}");
    let items = work(&a);
    assert_eq!(items.len(), 1, "released at once, no window: {d:#}");
    let payload = items[0]["payload"].as_str().expect("present");
    assert!(
        payload.contains("openssh-server") && payload.contains("1:9.2p1-2+deb12u3"),
        "{payload}"
    );
    assert!(payload.contains("\"not_after\":null"), "{payload}");
    let_ticks_pass();
    assert_eq!(
        policy(&app, "kev")["runs"].as_array().map(Vec::len),
        Some(1),
        "not twice"
    );
}

#[test]
fn a_timezone_label_overrides_the_reported_zone() {
    let (app, _clock) = app_at("2026-12-01T00:00:00Z");
    let a = app.device("default", "web1", true);
    let (s, v) = app.op(
        "POST",
        "/api/v1/policies",
        Some(weekly("weekly", json!({}))),
    );
    assert_eq!(s, 201, "{v}");
    assert_eq!(
        policy(&app, "weekly")["next_window_start"],
        "2026-12-05T02:00:00.000Z"
    );

    // Saturday 02:00 in Sydney (AEDT, UTC+11) is Friday 15:00 UTC.
    let (s, v) = app.op(
        "PUT",
        &format!("/api/v1/devices/{}/labels", a.id),
        Some(json!({"labels": {"env": "prod", "timezone": "Australia/Sydney"}})),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        policy(&app, "weekly")["next_window_start"],
        "2026-12-04T15:00:00.000Z"
    );

    for (labels, needle) in [
        (json!({"timezone": "Mars/Olympus"}), "Mars/Olympus"),
        (json!({"bad key": "x"}), "invalid label"),
    ] {
        let (s, v) = app.op(
            "PUT",
            &format!("/api/v1/devices/{}/labels", a.id),
            Some(json!({"labels": labels})),
        );
        assert_eq!(s, 400, "{v}");
        assert!(
            v["message"].as_str().expect("present").contains(needle),
            "{v}"
        );
    }
    let (_, d) = app.op("GET", &format!("/api/v1/devices/{}", a.id), None);
    assert_eq!(
        d["summary"]["labels"]["timezone"], "Australia/Sydney",
        "a refused change keeps the labels"
    );
}

#[test]
fn a_policy_broken_for_another_reason_than_nothing_to_install_says_why() {
    let (app, clock) = app_at("2026-12-03T00:00:00Z");
    let a = app.device("default", "web1", true);
    // Rings by device that do not end with a ring for the rest: valid as written, broken as
    // soon as a targeted device is in no ring.
    let (s, v) = app.op(
        "POST",
        "/api/v1/policies",
        Some(weekly(
            "pilot-only",
            json!({"lead_secs": 86400, "rings": [{"name": "pilot", "devices": [a.id]}]}),
        )),
    );
    assert_eq!(s, 201, "{v}");
    // A policy with nothing to install is not a problem: another one, for a device without
    // updates.
    let (s, v) = app.op(
        "POST",
        "/api/v1/policies",
        Some(json!({"name": "idle", "target": {"labels": {"none": "such"}}, "what": {"kind": "security"},
            "schedule": "weekly saturday 02:00", "lead_secs": 86400})),
    );
    assert_eq!(s, 201, "{v}");
    let b = app.device("default", "web2", true);
    clock.set(ms("2026-12-04T03:00:00Z"));
    let problem = eventually("the policy's problem", || {
        Some(policy(&app, "pilot-only")["problem"].clone()).filter(|p| !p.is_null())
    });
    let message = problem["message"].as_str().expect("message");
    assert!(
        message.contains(&b.id) && message.contains("in no ring"),
        "{problem}"
    );
    assert_eq!(policy(&app, "pilot-only")["runs"], json!([]));
    let_ticks_pass();
    assert!(
        policy(&app, "idle")["problem"].is_null(),
        "nothing to install is not a problem"
    );
    // The dashboard shows it too.
    let mut web = support::Web::new(&app.url);
    assert_eq!(web.login("admin", &app.admin_password).status, 303);
    let html = web.get("/policies").body;
    assert!(html.contains("in no ring"), "{html}");

    // Fixed by an edit: the next pass runs it and clears the problem.
    let (s, v) = app.op(
        "PUT",
        "/api/v1/policies/pilot-only",
        Some(weekly(
            "pilot-only",
            json!({"lead_secs": 86400, "rings": [{"name": "pilot", "devices": [a.id]}, {"name": "rest", "rest": true}]}),
        )),
    );
    assert_eq!(s, 200, "{v}");
    eventually("the cycle's deployment", || {
        let p = policy(&app, "pilot-only");
        (p["problem"].is_null() && p["runs"].as_array().is_some_and(|r| r.len() == 1)).then_some(())
    });
}
