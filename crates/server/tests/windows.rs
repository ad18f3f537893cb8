//! Maintenance windows with an injected clock (no test sleeps through a real window): work is
//! released only inside each device's window, carries the window's end, a device that stays
//! away is `device_offline` and caught up exactly once in the next window, and devices not
//! reached before the window closed are `window_missed` with nothing started after the end.

use patchwarden_server::ManualClock;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod support;

use support::App;

fn ms(rfc3339: &str) -> i64 {
    let t = time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .expect("time");
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

fn spawn_app(start: &str) -> (App, Arc<ManualClock>) {
    let clock = ManualClock::at(ms(start));
    let app = support::spawn_app_with_clock(Some(clock.clone()));
    (app, clock)
}

fn call(method: &str, url: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    support::call(method, url, Some(token), body)
}

struct Device {
    url: String,
    secret: String,
    name: String,
}

impl Device {
    fn work(&self, wait: u64) -> Vec<Value> {
        let (_, v) = call(
            "GET",
            &format!("{}/api/v1/agent/work?wait={wait}", self.url),
            &self.secret,
            None,
        );
        v["items"].as_array().cloned().unwrap_or_default()
    }
    fn finish(&self, job: &str) {
        let start = call(
            "POST",
            &format!("{}/api/v1/agent/jobs/{job}/start", self.url),
            &self.secret,
            None,
        );
        assert_eq!(start.0, 204);
        let result = json!({"started_at": "2026-11-25T02:10:00Z", "finished_at": "2026-11-25T02:11:00Z",
            "commands": ["apt-get install"], "exit_code": 0, "duration_ms": 1, "output": "",
            "packages": [{"package": "pw-demo", "state": "verified", "from_version": "1.0", "to_version": "1.1", "installed_version": "1.1"}]});
        let (status, v) = call(
            "POST",
            &format!("{}/api/v1/agent/jobs/{job}/result", self.url),
            &self.secret,
            Some(result),
        );
        assert_eq!(status, 200, "{v}");
    }
}

fn device(app: &App, name: &str) -> Device {
    let (_, tok) = call(
        "POST",
        &format!("{}/api/v1/enroll-tokens", app.url),
        &app.admin,
        Some(json!({})),
    );
    let body = json!({"token": tok["token"], "hostname": name, "agent_version": "t", "protocol_version": 1});
    let (_, d) = call(
        "POST",
        &format!("{}/api/v1/agent/enroll", app.url),
        "x",
        Some(body),
    );
    let secret = d["device_secret"].as_str().expect("secret").to_owned();
    let inv = json!({"hostname": name, "kernel": "6.1", "boot_id": "b", "package_manager": "apt", "timezone": "UTC",
        "os": {"id": "debian", "version": "12", "codename": "bookworm", "pretty_name": "Debian 12"},
        "packages": [{"name": "pw-demo", "source": "pw-demo", "version": "1.0", "source_version": "1.0", "arch": "all", "status": "ii"}],
        "upgradable": [{"name": "pw-demo", "installed_version": "1.0", "candidate_version": "1.1", "arch": "all", "security": false}],
        "held": [], "reboot_required": false, "health": {"interrupted": false, "broken_packages": []},
        "disk": {"root_free_bytes": 1, "cache_free_bytes": 1}});
    let body = json!({"agent_version": "t", "protocol_version": 1, "inventory_hash": name, "inventory": inv});
    assert_eq!(
        call(
            "POST",
            &format!("{}/api/v1/agent/checkin", app.url),
            &secret,
            Some(body)
        )
        .0,
        200
    );
    Device {
        url: app.url.clone(),
        secret,
        name: name.to_owned(),
    }
}

fn view(app: &App, dep: &str) -> Value {
    call(
        "GET",
        &format!("{}/api/v1/deployments/{dep}", app.url),
        &app.admin,
        None,
    )
    .1
}

fn row<'a>(v: &'a Value, host: &str) -> &'a Value {
    v["results"]
        .as_array()
        .and_then(|r| r.iter().find(|x| x["hostname"] == host))
        .unwrap_or_else(|| panic!("{host}: {v:#}"))
}

/// Waits (bounded) for the server's 2 s ticker to act on the new time.
fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(8);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn work_runs_only_in_the_window_offline_devices_catch_up_once_and_late_ones_miss_it() {
    let (app, clock) = spawn_app("2026-11-25T01:00:00Z");
    let (a, b, c) = (device(&app, "a"), device(&app, "b"), device(&app, "c"));
    let body = json!({"target": {"all": true}, "selection": {"kind": "all_updates"},
        "window": "daily 02:00", "window_duration_secs": 3600, "concurrency": "1"});
    let (status, v) = call(
        "POST",
        &format!("{}/api/v1/deployments", app.url),
        &app.admin,
        Some(body),
    );
    assert_eq!(status, 201, "{v}");
    let dep = v["id"].as_str().expect("id").to_owned();
    assert!(
        a.work(0).is_empty() && b.work(0).is_empty() && c.work(0).is_empty(),
        "outside the window"
    );

    // 02:10: inside the window; one device at a time.
    clock.set(ms("2026-11-25T02:10:00Z"));
    let mut first = None;
    until("the first release", || {
        first = [&a, &b, &c]
            .into_iter()
            .find(|d| !d.work(0).is_empty())
            .map(|d| d.name.clone());
        first.is_some()
    });
    let first = [&a, &b, &c]
        .into_iter()
        .find(|d| Some(&d.name) == first.as_ref())
        .expect("device");
    let item = first.work(0).remove(0);
    let payload: Value =
        serde_json::from_str(item["payload"].as_str().expect("payload")).expect("json");
    assert_eq!(
        payload["not_after"], "2026-11-25T03:00:00.000Z",
        "the work carries the window's end"
    );
    first.finish(item["job_id"].as_str().expect("job"));
    // The next device is released; it never asks (offline).
    let v = view(&app, &dep);
    let second = v["jobs"]
        .as_array()
        .and_then(|j| j.iter().find(|x| x["status"] == "queued"))
        .map(|x| x["hostname"].clone())
        .expect("second released");
    let third = ["a", "b", "c"]
        .into_iter()
        .find(|h| *h != first.name && Some(*h) != second.as_str())
        .expect("third");

    // 03:05: the window has closed.
    clock.set(ms("2026-11-25T03:05:00Z"));
    until("the window to close", || {
        row(&view(&app, &dep), third)["class"] == "window_missed"
    });
    let v = view(&app, &dep);
    assert_eq!(row(&v, &first.name)["state"], "verified");
    let offline = row(&v, second.as_str().expect("name"));
    assert_eq!(
        (offline["state"].as_str(), offline["class"].as_str()),
        (Some("device_offline"), Some("device_offline")),
        "{v:#}"
    );
    assert_eq!(row(&v, third)["state"], "failed");
    assert!(
        row(&v, third)["evidence"][0]
            .as_str()
            .unwrap_or("")
            .contains("window closed"),
        "{v:#}"
    );
    assert!(
        a.work(0).is_empty() && b.work(0).is_empty() && c.work(0).is_empty(),
        "nothing starts after the window end"
    );
    assert_eq!(v["status"], "running");

    // Next day's window: each remaining device is caught up exactly once.
    clock.set(ms("2026-11-26T02:05:00Z"));
    for _ in 0..2 {
        let mut done = false;
        until("a catch-up release", || {
            for d in [&a, &b, &c] {
                if let Some(item) = d.work(0).first() {
                    d.finish(item["job_id"].as_str().expect("job"));
                    done = true;
                    return true;
                }
            }
            false
        });
        assert!(done);
    }
    let v = view(&app, &dep);
    assert_eq!(v["status"], "completed", "{v:#}");
    assert_eq!(v["counts"]["verified"], 3);
    assert_eq!(
        v["jobs"].as_array().map(Vec::len),
        Some(3),
        "one job per device, never two"
    );
    let (_, detail) = call(
        "GET",
        &format!(
            "{}/api/v1/devices/{}",
            app.url,
            offline["device"].as_str().expect("id")
        ),
        &app.admin,
        None,
    );
    // (The fake results carry fixed agent timestamps, so compare as a set.)
    let mut states: Vec<&str> = detail["history"]
        .as_array()
        .expect("history")
        .iter()
        .filter_map(|h| h["state"].as_str())
        .collect();
    states.sort_unstable();
    assert_eq!(
        states,
        vec!["device_offline", "verified"],
        "offline, then caught up once"
    );
}

/// An offer can reach a device late (its response held up while the network was down). The
/// server, not the device's clock, decides: a job whose window has closed, or whose deployment
/// is halted, cannot be started; in its next window it starts normally.
#[test]
fn a_late_offer_cannot_start_after_the_window_closed_nor_once_halted() {
    let (app, clock) = spawn_app("2026-11-25T02:10:00Z");
    let a = device(&app, "a");
    let start = |job: &str| {
        call(
            "POST",
            &format!("{}/api/v1/agent/jobs/{job}/start", a.url),
            &a.secret,
            None,
        )
    };
    let body = json!({"target": {"all": true}, "selection": {"kind": "all_updates"},
        "window": "daily 02:00", "window_duration_secs": 3600});
    let (status, v) = call(
        "POST",
        &format!("{}/api/v1/deployments", app.url),
        &app.admin,
        Some(body),
    );
    assert_eq!(status, 201, "{v}");
    let dep = v["id"].as_str().expect("id").to_owned();
    let item = a.work(0).pop().expect("offered inside the window");
    let job = item["job_id"].as_str().expect("job").to_owned();

    // The window closes before the device gets to start it.
    clock.set(ms("2026-11-25T03:05:00Z"));
    let (status, v) = start(&job);
    assert_eq!(
        (status, v["error"].as_str()),
        (409, Some("not_on_offer")),
        "{v}"
    );
    until("the window to close", || {
        row(&view(&app, &dep), "a")["state"] != "pending"
    });
    assert_eq!(start(&job).0, 409, "still refused after the window closed");
    let v = view(&app, &dep);
    assert_eq!(
        v["jobs"][0]["started_at"],
        Value::Null,
        "never marked started: {v:#}"
    );

    // Next window: offered again and started once.
    clock.set(ms("2026-11-26T02:05:00Z"));
    let mut again = Vec::new();
    until("the next window's offer", || {
        again = a.work(0);
        !again.is_empty()
    });
    assert_eq!(again[0]["job_id"], job.as_str(), "the same job, caught up");
    a.finish(&job);
    let v = view(&app, &dep);
    assert_eq!(v["status"], "completed", "{v:#}");
    assert_eq!(row(&v, "a")["state"], "verified");

    // A halted deployment starts no new install, even from an offer already delivered.
    let b = device(&app, "b");
    let body = json!({"target": {"devices": [device_id_of(&app, "b")]}, "selection": {"kind": "all_updates"}});
    let (status, v) = call(
        "POST",
        &format!("{}/api/v1/deployments", app.url),
        &app.admin,
        Some(body),
    );
    assert_eq!(status, 201, "{v}");
    let dep = v["id"].as_str().expect("id").to_owned();
    let item = b.work(0).pop().expect("offered");
    let job = item["job_id"].as_str().expect("job").to_owned();
    let (status, v) = call(
        "POST",
        &format!("{}/api/v1/deployments/{dep}/halt", app.url),
        &app.admin,
        Some(json!({"reason": "bad patch"})),
    );
    assert_eq!(status, 200, "{v}");
    let (status, v) = call(
        "POST",
        &format!("{}/api/v1/agent/jobs/{job}/start", b.url),
        &b.secret,
        None,
    );
    assert_eq!(status, 409, "{v}");
}

/// A device's id by hostname.
fn device_id_of(app: &App, hostname: &str) -> String {
    let (_, v) = call(
        "GET",
        &format!("{}/api/v1/devices", app.url),
        &app.admin,
        None,
    );
    v.as_array()
        .and_then(|d| d.iter().find(|x| x["hostname"] == hostname))
        .and_then(|d| d["id"].as_str())
        .unwrap_or_else(|| panic!("{hostname}: {v}"))
        .to_owned()
}

/// The agent refuses to start work whose window has closed by its own clock (a clock a little
/// ahead of the server's, or an offer that arrived late): its `window_missed` result is not
/// the end of the job. Like any job a window closed on, it is caught up in the next window,
/// once, under a new work id (the agent never runs one id twice).
#[test]
fn a_job_the_agent_refused_for_its_window_is_caught_up_in_the_next_window() {
    let (app, clock) = spawn_app("2026-11-25T02:10:00Z");
    let a = device(&app, "a");
    let body = json!({"target": {"all": true}, "selection": {"kind": "all_updates"},
        "window": "daily 02:00", "window_duration_secs": 3600});
    let (status, v) = call(
        "POST",
        &format!("{}/api/v1/deployments", app.url),
        &app.admin,
        Some(body),
    );
    assert_eq!(status, 201, "{v}");
    let dep = v["id"].as_str().expect("id").to_owned();
    let item = a.work(0).pop().expect("offered inside the window");
    let job = item["job_id"].as_str().expect("job").to_owned();

    // 02:59:58 on the server; the device's clock says the window is over. It reports what
    // the agent reports then: nothing run, window_missed.
    clock.set(ms("2026-11-25T02:59:58Z"));
    let (status, _) = call(
        "POST",
        &format!("{}/api/v1/agent/jobs/{job}/start", a.url),
        &a.secret,
        None,
    );
    assert_eq!(status, 204);
    let refused = json!({"started_at": "2026-11-25T03:00:01Z", "finished_at": "2026-11-25T03:00:01Z",
        "commands": [], "exit_code": null, "duration_ms": 0, "output": "",
        "packages": [{"package": "pw-demo", "state": "failed", "class": "window_missed", "to_version": "1.1",
            "evidence": ["the maintenance window closed at 2026-11-25T03:00:00.000Z before the install could start; nothing was changed"]}]});
    let (status, v) = call(
        "POST",
        &format!("{}/api/v1/agent/jobs/{job}/result", a.url),
        &a.secret,
        Some(refused),
    );
    assert_eq!(status, 200, "{v}");
    let v = view(&app, &dep);
    assert_eq!(v["status"], "running", "not the end of it: {v:#}");
    assert!(
        a.work(0).is_empty(),
        "not offered again in the closing window"
    );

    // The window closes; the next one catches it up, once.
    clock.set(ms("2026-11-25T03:05:00Z"));
    until("the window to close", || {
        view(&app, &dep)["jobs"][0]["status"] == "waiting"
    });
    assert!(a.work(0).is_empty(), "nothing between windows");
    clock.set(ms("2026-11-26T02:05:00Z"));
    let mut again = Vec::new();
    until("the next window's offer", || {
        again = a.work(0);
        !again.is_empty()
    });
    let retry = again[0]["job_id"].as_str().expect("job").to_owned();
    assert_ne!(retry, job, "a new work id, so the agent runs it");
    a.finish(&retry);
    let v = view(&app, &dep);
    assert_eq!(v["status"], "completed", "{v:#}");
    assert_eq!(row(&v, "a")["state"], "verified", "{v:#}");
    assert_eq!(
        v["jobs"].as_array().map(Vec::len),
        Some(1),
        "one job: {v:#}"
    );
}

/// `offline: immediately`: a device that was away for its window catches up as soon as it is
/// back, and the work it then gets carries no stale window end (which its agent would refuse).
#[test]
fn an_offline_device_caught_up_immediately_gets_work_without_the_closed_windows_end() {
    let (app, clock) = spawn_app("2026-11-25T02:10:00Z");
    let a = device(&app, "a");
    let body = json!({"target": {"all": true}, "selection": {"kind": "all_updates"},
        "window": "daily 02:00", "window_duration_secs": 3600, "offline": "immediately"});
    let (status, v) = call(
        "POST",
        &format!("{}/api/v1/deployments", app.url),
        &app.admin,
        Some(body),
    );
    assert_eq!(status, 201, "{v}");
    let dep = v["id"].as_str().expect("id").to_owned();
    // The device stays away; the window closes.
    clock.set(ms("2026-11-25T03:05:00Z"));
    until("device_offline", || {
        row(&view(&app, &dep), "a")["state"] == "device_offline"
    });
    // Back at 03:10, outside any window: work at once, with no window end to refuse it by.
    clock.set(ms("2026-11-25T03:10:00Z"));
    let mut items = Vec::new();
    until("the catch-up offer", || {
        items = a.work(0);
        !items.is_empty()
    });
    let payload: Value =
        serde_json::from_str(items[0]["payload"].as_str().expect("payload")).expect("json");
    assert_eq!(payload["not_after"], Value::Null, "{payload:#}");
    a.finish(items[0]["job_id"].as_str().expect("job"));
    let v = view(&app, &dep);
    assert_eq!(v["status"], "completed", "{v:#}");
    assert_eq!(row(&v, "a")["state"], "verified");
}
