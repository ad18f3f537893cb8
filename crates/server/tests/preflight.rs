//! Pre-flight over real HTTP: the check is offered at once (even pending approval), its answer
//! is stored as predictions (never as results, nothing installs), the deployment view shows
//! them, and after the real run the view reports how many outcomes matched.

mod support;

use patchwarden_wire::agent::{JobResult, Operation, PackageResult};
use patchwarden_wire::{FailureClass, PackageState};
use serde_json::{json, Value};
use support::*;

/// The device's offered work items, as (job id, decoded operation).
fn work(agent: &Agent) -> Vec<(String, Operation)> {
    let (status, v) = agent.call("GET", "/api/v1/agent/work?wait=0", None);
    assert_eq!(status, 200, "{v}");
    v["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| {
            let payload = i["payload"].as_str().expect("payload");
            (
                i["job_id"].as_str().expect("job id").to_owned(),
                serde_json::from_str(payload).expect("operation"),
            )
        })
        .collect()
}

fn answer(agent: &Agent, job: &str, state: PackageState, class: Option<FailureClass>) -> Value {
    let r = JobResult {
        started_at: "2026-11-25T10:00:00Z".into(),
        finished_at: "2026-11-25T10:00:02Z".into(),
        commands: vec!["apt-get -s install --no-remove --only-upgrade pw-demo=1.1".into()],
        exit_code: None,
        duration_ms: 2000,
        output: String::new(),
        packages: vec![PackageResult {
            package: "pw-demo".into(),
            state,
            class,
            from_version: Some("1.0".into()),
            to_version: Some("1.1".into()),
            installed_version: Some("1.0".into()),
            evidence: vec!["prediction: what the check found".into()],
        }],
        error: None,
        boot_id: None,
    };
    let (status, v) = agent.call(
        "POST",
        &format!("/api/v1/agent/jobs/{job}/result"),
        Some(serde_json::to_value(r).expect("json")),
    );
    assert_eq!(status, 200, "{v}");
    v
}

#[test]
fn preflight_predicts_before_approval_and_the_accuracy_is_reported_after_the_run() {
    let app = spawn_app();
    let good = app.device("default", "good", true);
    let full = app.device("default", "full", true);
    let wrong = app.device("default", "wrong", true);
    let (status, created) = app.op(
        "POST",
        "/api/v1/deployments",
        Some(json!({"target": {"all": true}, "selection": {"kind": "all_updates"}, "require_approval": true})),
    );
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    // Pending approval: no install is offered.
    assert!(work(&good).is_empty());

    let (status, started) = app.op("POST", &format!("/api/v1/deployments/{id}/preflight"), None);
    assert_eq!(status, 200, "{started}");
    assert_eq!(
        (started["queued"].as_u64(), started["total"].as_u64()),
        (Some(3), Some(3))
    );
    // Asking again while the checks are queued queues nothing more.
    let (_, again) = app.op("POST", &format!("/api/v1/deployments/{id}/preflight"), None);
    assert_eq!(again["queued"], 0, "{again}");

    let mut jobs = Vec::new();
    for agent in [&good, &full, &wrong] {
        let items = work(agent);
        assert_eq!(
            items.len(),
            1,
            "only the pre-flight check is offered: {items:?}"
        );
        let (job, op) = &items[0];
        let Operation::Preflight {
            deployment_id,
            packages,
            respect_holds,
        } = op
        else {
            panic!("not a pre-flight operation: {op:?}");
        };
        assert_eq!(deployment_id, &id);
        assert!(respect_holds, "holds are respected by default");
        assert_eq!(packages.len(), 1);
        assert_eq!(packages[0].name, "pw-demo");
        assert_eq!(packages[0].version.as_deref(), Some("1.1"));
        let (status, v) = agent.call("POST", &format!("/api/v1/agent/jobs/{job}/start"), None);
        assert_eq!(status, 204, "{v}");
        jobs.push(job.clone());
    }
    // Another device's pre-flight job is not reachable.
    let (status, _) = good.call(
        "POST",
        &format!("/api/v1/agent/jobs/{}/start", jobs[1]),
        None,
    );
    assert_eq!(status, 404);

    assert_eq!(
        answer(&good, &jobs[0], PackageState::Verified, None)["stored"],
        true
    );
    assert_eq!(
        answer(
            &full,
            &jobs[1],
            PackageState::Failed,
            Some(FailureClass::DiskFull)
        )["stored"],
        true
    );
    assert_eq!(
        answer(&wrong, &jobs[2], PackageState::Verified, None)["stored"],
        true
    );
    // A re-delivery is acknowledged and stores nothing.
    assert_eq!(
        answer(&full, &jobs[1], PackageState::Verified, None)["stored"],
        false
    );

    let (_, view) = app.op("GET", &format!("/api/v1/deployments/{id}"), None);
    assert_eq!(view["status"], "pending_approval");
    assert_eq!(view["preflight_pending"], 0);
    let preds = view["predictions"].as_array().expect("predictions");
    assert_eq!(preds.len(), 3, "{view:#}");
    let pred = |host: &str| {
        preds
            .iter()
            .find(|p| p["hostname"] == host)
            .unwrap_or_else(|| panic!("no prediction for {host}: {view:#}"))
            .clone()
    };
    assert_eq!(pred("full")["state"], "failed");
    assert_eq!(pred("full")["class"], "disk_full");
    assert_eq!(pred("good")["state"], "verified");
    // Predictions are not results: every real row is still pending, with its prediction.
    for r in view["results"].as_array().expect("results") {
        assert_eq!(r["state"], "pending", "{r}");
        assert!(r["predicted_state"].is_string(), "{r}");
    }
    assert!(view["prediction_accuracy"].is_null(), "{view:#}");
    assert!(work(&good).is_empty(), "nothing is offered before approval");

    // The real run: good and full as predicted, wrong fails although predicted to succeed.
    let (status, v) = app.op(
        "POST",
        &format!("/api/v1/deployments/{id}/approve"),
        Some(json!({})),
    );
    assert_eq!(status, 200, "{v}");
    assert!(good.report(PackageState::Verified, None, &[]));
    assert!(full.report(
        PackageState::Failed,
        Some(FailureClass::DiskFull),
        &["You don't have enough free space in /var/cache/apt/archives/."]
    ));
    assert!(wrong.report(
        PackageState::Failed,
        Some(FailureClass::InstallScriptFailed),
        &[EVIDENCE]
    ));
    let (_, view) = app.op("GET", &format!("/api/v1/deployments/{id}"), None);
    assert_eq!(view["status"], "completed", "{view:#}");
    let acc = &view["prediction_accuracy"];
    assert_eq!(acc["packages_compared"], 3, "{view:#}");
    assert_eq!(acc["packages_matched"], 2, "{view:#}");
    assert_eq!(acc["devices_compared"], 3);
    assert_eq!(acc["devices_matched"], 2);
    let pct = acc["percent"].as_f64().expect("percent");
    assert!((pct - 200.0 / 3.0).abs() < 0.01, "{pct}");
    let row = view["results"]
        .as_array()
        .expect("results")
        .iter()
        .find(|r| r["hostname"] == "full")
        .expect("row")
        .clone();
    assert_eq!(row["predicted_class"], "disk_full");
    assert_eq!(row["class"], "disk_full");

    // A finished deployment is not pre-flighted again; an unknown one is a 404.
    let (status, _) = app.op("POST", &format!("/api/v1/deployments/{id}/preflight"), None);
    assert_eq!(status, 409);
    let (status, _) = app.op("POST", "/api/v1/deployments/nope/preflight", None);
    assert_eq!(status, 404);
}

#[test]
fn respect_holds_false_reaches_the_install_and_its_preflight() {
    let app = spawn_app();
    let agent = app.device("default", "held", true);
    for (respect, expect) in [(json!(false), false), (json!(null), true)] {
        let (status, created) = app.op(
            "POST",
            "/api/v1/deployments",
            Some(
                json!({"target": {"all": true}, "selection": {"kind": "all_updates"},
                "require_approval": true, "respect_holds": respect}),
            ),
        );
        assert_eq!(status, 201, "{created}");
        let id = created["id"].as_str().expect("id").to_owned();
        let (status, v) = app.op("POST", &format!("/api/v1/deployments/{id}/preflight"), None);
        assert_eq!(status, 200, "{v}");
        let items = work(&agent);
        let Some((job, Operation::Preflight { respect_holds, .. })) = items.first() else {
            panic!("no pre-flight offered: {items:?}");
        };
        assert_eq!(*respect_holds, expect, "pre-flight of {respect}");
        answer(&agent, job, PackageState::Verified, None);
        let (status, v) = app.op("POST", &format!("/api/v1/deployments/{id}/approve"), None);
        assert_eq!(status, 200, "{v}");
        let items = work(&agent);
        let Some((_, Operation::Install { respect_holds, .. })) = items.first() else {
            panic!("no install offered: {items:?}");
        };
        assert_eq!(*respect_holds, expect, "install of {respect}");
        let (status, v) = app.op("POST", &format!("/api/v1/deployments/{id}/cancel"), None);
        assert!(status == 200, "{status} {v}");
    }
}
