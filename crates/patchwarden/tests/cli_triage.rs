//! The `patchwarden` binary end to end for the failure queue: the server as a process, a
//! failed install written into its SQLite file through the store (as a job result would),
//! then `failures`, `failure assign|resolve|accept-risk|retry` as an operator would type them.
//! (Roles, reopening, retries the agent gets and the dashboard are in
//! crates/server/tests/triage.rs.)

mod support;

use support::{json, ok, run, start};

use patchwarden_store::*;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// A device `web-1` in tenant `acme` whose install of `openssl` failed a day ago.
fn seed_failure(data: &Path) {
    let db = data.join("patchwarden.db").display().to_string();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let store = SqliteStore::open(&db).await.expect("store");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis() as i64;
        let t = store.ensure_tenant("acme", now).await.expect("tenant");
        store
            .insert_enroll_token(&EnrollToken {
                id: "et1".into(),
                tenant_id: t.id.clone(),
                token_hash: "h-et1".into(),
                labels: BTreeMap::new(),
                created_at: now,
                expires_at: now + 60_000,
                revoked_at: None,
                uses: 0,
                max_uses: None,
            })
            .await
            .expect("token");
        let d = store
            .enroll_device(
                "h-et1",
                now,
                Device {
                    id: "dev_web1".into(),
                    tenant_id: String::new(),
                    hostname: "web-1".into(),
                    machine_id: "m".into(),
                    labels: BTreeMap::new(),
                    secret_hash: "s-web1".into(),
                    enroll_token_id: None,
                    enrolled_at: now,
                    last_seen: Some(now),
                    agent_version: "test".into(),
                    checkin_interval_secs: 60,
                    inventory_hash: None,
                    inventory_at: None,
                    summary: DeviceInventorySummary::default(),
                },
            )
            .await
            .expect("db")
            .expect("enrolled");
        let dep = Deployment {
            id: "dep_1".into(),
            tenant_id: t.id.clone(),
            created_at: now,
            created_by: "admin".into(),
            selection_json: "{}".into(),
            timeout_secs: 60,
            status: patchwarden_core::DeploymentStatus::Running,
            status_reason: None,
            plan_json: "{}".into(),
            current_ring: 0,
            approved_by: None,
            approved_at: None,
            updated_at: None,
            resumed_at: None,
        };
        let job = Job {
            id: "job_1".into(),
            tenant_id: t.id.clone(),
            deployment_id: dep.id.clone(),
            device_id: d.id.clone(),
            payload: "{}".into(),
            status: JobStatus::Queued,
            created_at: now,
            started_at: None,
            finished_at: None,
            exit_code: None,
            commands: vec![],
            duration_ms: None,
            output: None,
            error: None,
            ring: 0,
            released_at: None,
            window_end: None,
            attempt: 1,
            not_before: None,
        };
        let mut row = JobPackage {
            job_id: job.id.clone(),
            package: "openssl".into(),
            tenant_id: t.id.clone(),
            deployment_id: dep.id.clone(),
            device_id: d.id.clone(),
            state: patchwarden_core::PackageState::Pending,
            class: None,
            from_version: Some("3.0.14-1".into()),
            to_version: Some("3.0.15-1".into()),
            installed_version: None,
            evidence: vec![],
        };
        // Cancelled as far as the orchestrator is concerned: it leaves the job alone.
        let mut stored = dep.clone();
        stored.status = patchwarden_core::DeploymentStatus::Cancelled;
        store
            .create_deployment(
                &stored,
                std::slice::from_ref(&job),
                std::slice::from_ref(&row),
            )
            .await
            .expect("deployment");
        row.state = patchwarden_core::PackageState::Failed;
        row.class = Some(patchwarden_core::FailureClass::InstallScriptFailed);
        row.evidence = vec!["openssl.postinst returned error exit status 1".into()];
        let at = now - 24 * 3600 * 1000;
        let outcome = JobOutcome {
            finished_at: at,
            started_at: Some(at - 1000),
            exit_code: Some(100),
            commands: vec!["apt-get install -y openssl=3.0.15-1".into()],
            duration_ms: 1000,
            output: String::new(),
            error: None,
            result_json: "{}".into(),
            packages: vec![row],
            boot_id: None,
            attempt: None,
        };
        store
            .store_job_result(&job.id, &d.id, &outcome)
            .await
            .expect("result");
    });
}

#[test]
fn failure_actions_from_the_cli() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let _server = start(&data);
    seed_failure(&data);

    // The queue: status, assignee, age and deadline columns.
    let table = ok(&data, &["failures"]);
    for col in [
        "STATUS", "ASSIGNEE", "AGE", "DEADLINE", "web-1", "openssl", "open", "1d 0h",
    ] {
        assert!(table.contains(col), "{col} missing:\n{table}");
    }

    let v = json(
        &data,
        &[
            "failure", "assign", "web-1", "openssl", "--to", "admin", "--json",
        ],
    );
    assert_eq!(
        (v["assignee"].as_str(), v["status"].as_str()),
        (Some("admin"), Some("open"))
    );
    let out = ok(
        &data,
        &[
            "failure", "resolve", "web-1", "openssl", "--reason", "rebuilt",
        ],
    );
    assert!(
        out.contains("web-1 openssl: resolved, assigned to admin (rebuilt)"),
        "{out}"
    );
    assert!(ok(&data, &["failures"]).contains("no current failures"));
    let all = json(&data, &["failures", "--all", "--json"]);
    assert_eq!(all["groups"][0]["failures"][0]["status"], "resolved");

    // Accepting a risk: a date more than a year ahead is refused with the reason.
    let far = run(
        &data,
        &[
            "failure",
            "accept-risk",
            "web-1",
            "openssl",
            "--reason",
            "x",
            "--until",
            "2999-01-01",
        ],
    );
    assert!(!far.status.success());
    assert!(String::from_utf8_lossy(&far.stderr).contains("more than one year"));
    let until = {
        let t = std::time::SystemTime::now() + Duration::from_secs(30 * 86_400);
        let secs = t
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs() as i64;
        // days since the epoch → civil date (UTC)
        let z = secs.div_euclid(86_400) + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        let y = yoe + era * 400 + i64::from(m <= 2);
        format!("{y:04}-{m:02}-{d:02}")
    };
    let v = json(
        &data,
        &[
            "failure",
            "accept-risk",
            "web-1",
            "openssl",
            "--reason",
            "vendor fix pending",
            "--until",
            &until,
            "--json",
        ],
    );
    assert_eq!(v["status"], "accepted_risk");
    assert_eq!(v["accepted_until"], format!("{until}T23:59:59.999Z"));

    // A retry: a deployment of the package to this device alone.
    let out = ok(&data, &["failure", "retry", "web-1", "openssl"]);
    assert!(out.contains("retry deployment dep_"), "{out}");
    // An unknown device is named.
    let unknown = run(&data, &["failure", "resolve", "web-9", "openssl"]);
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no device web-9"));
}
