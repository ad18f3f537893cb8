//! The storage conformance suite: every backend must pass every check here. Each check takes
//! a fresh, empty store. (PostgreSQL joins with its own `fresh()` when that backend lands.)

use patchwarden_core::{DeploymentStatus, FailureClass, PackageState};
use patchwarden_store::*;
use std::collections::BTreeMap;

async fn fresh_sqlite() -> (SqliteStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("t.db").display().to_string())
        .await
        .expect("open");
    (store, dir)
}

fn enroll_token(id: &str, tenant: &str, expires_at: i64, max_uses: Option<i64>) -> EnrollToken {
    EnrollToken {
        id: id.into(),
        tenant_id: tenant.into(),
        token_hash: format!("hash-{id}"),
        labels: BTreeMap::from([("env".to_owned(), "lab".to_owned())]),
        created_at: 0,
        expires_at,
        revoked_at: None,
        uses: 0,
        max_uses,
    }
}

fn device(id: &str) -> Device {
    Device {
        id: id.into(),
        tenant_id: String::new(),
        hostname: format!("host-{id}"),
        machine_id: "m".into(),
        labels: BTreeMap::new(),
        secret_hash: format!("secret-{id}"),
        enroll_token_id: None,
        enrolled_at: 10,
        last_seen: Some(10),
        agent_version: "1".into(),
        checkin_interval_secs: 60,
        inventory_hash: None,
        inventory_at: None,
        summary: DeviceInventorySummary::default(),
    }
}

async fn enrolled(store: &dyn Store, id: &str) -> Device {
    let t = store.ensure_tenant("default", 0).await.expect("tenant");
    store
        .insert_enroll_token(&enroll_token(&format!("tok-{id}"), &t.id, 1_000, None))
        .await
        .expect("token");
    store
        .enroll_device(&format!("hash-tok-{id}"), 1, device(id))
        .await
        .expect("db")
        .expect("enrolled")
}

fn job(id: &str, dep: &Deployment, device: &str) -> Job {
    Job {
        id: id.into(),
        tenant_id: dep.tenant_id.clone(),
        deployment_id: dep.id.clone(),
        device_id: device.into(),
        payload: "{}".into(),
        status: JobStatus::Queued,
        created_at: 100,
        started_at: None,
        finished_at: None,
        exit_code: None,
        commands: vec![],
        duration_ms: None,
        output: None,
        error: None,
        ring: 0,
        released_at: Some(100),
        window_end: None,
        attempt: 1,
        not_before: None,
    }
}

fn pkg(job: &Job, name: &str, state: PackageState) -> JobPackage {
    JobPackage {
        job_id: job.id.clone(),
        package: name.into(),
        tenant_id: job.tenant_id.clone(),
        deployment_id: job.deployment_id.clone(),
        device_id: job.device_id.clone(),
        state,
        class: None,
        from_version: Some("1.0".into()),
        to_version: Some("1.1".into()),
        installed_version: None,
        evidence: vec![],
    }
}

fn deployment(id: &str, tenant: &str) -> Deployment {
    Deployment {
        id: id.into(),
        tenant_id: tenant.into(),
        created_at: 100,
        created_by: "admin".into(),
        selection_json: "{}".into(),
        timeout_secs: 60,
        status: DeploymentStatus::Running,
        status_reason: None,
        plan_json: "{}".into(),
        current_ring: 0,
        approved_by: None,
        approved_at: None,
        updated_at: None,
        resumed_at: None,
    }
}

async fn tenants_are_unique_by_name(store: &dyn Store) {
    let a = store.ensure_tenant("acme", 1).await.expect("create");
    let b = store.ensure_tenant("acme", 2).await.expect("again");
    assert_eq!(a, b);
    assert_eq!(store.list_tenants().await.expect("list").len(), 1);
}

async fn enrollment_refusals_are_specific(store: &dyn Store) {
    let t = store.ensure_tenant("default", 0).await.expect("tenant");
    store
        .insert_enroll_token(&enroll_token("old", &t.id, 50, None))
        .await
        .expect("insert");
    store
        .insert_enroll_token(&enroll_token("once", &t.id, 1_000, Some(1)))
        .await
        .expect("insert");
    store
        .insert_enroll_token(&enroll_token("gone", &t.id, 1_000, None))
        .await
        .expect("insert");
    assert!(store.revoke_enroll_token("gone", 60).await.expect("revoke"));
    assert!(!store
        .revoke_enroll_token("missing", 60)
        .await
        .expect("revoke"));

    let r = |hash: &'static str, id: &'static str| async move {
        store
            .enroll_device(hash, 100, device(id))
            .await
            .expect("db")
    };
    assert_eq!(
        r("hash-none", "d0").await.err(),
        Some(EnrollRefusal::UnknownToken)
    );
    assert_eq!(
        r("hash-old", "d1").await.err(),
        Some(EnrollRefusal::Expired)
    );
    assert_eq!(
        r("hash-gone", "d2").await.err(),
        Some(EnrollRefusal::Revoked)
    );
    let ok = r("hash-once", "d3").await.expect("first use");
    assert_eq!(ok.tenant_id, t.id);
    assert_eq!(
        ok.labels.get("env").map(String::as_str),
        Some("lab"),
        "labels come from the token"
    );
    assert_eq!(
        r("hash-once", "d4").await.err(),
        Some(EnrollRefusal::Exhausted)
    );
    assert_eq!(
        store.list_devices(None).await.expect("list").len(),
        1,
        "refusals create nothing"
    );
}

async fn checkins_store_inventory_and_summary(store: &dyn Store) {
    let d = enrolled(store, "a").await;
    store
        .record_checkin(&d.id, 20, "2", None)
        .await
        .expect("heartbeat");
    let inv = InventoryUpdate {
        hash: "h1".into(),
        json: "{\"x\":1}".into(),
        summary: DeviceInventorySummary {
            os: "Debian 12".into(),
            kernel: "6.1".into(),
            pending_updates: 3,
            security_updates: 1,
            reboot_required: true,
        },
        hostname: "renamed".into(),
    };
    store
        .record_checkin(&d.id, 30, "2", Some(&inv))
        .await
        .expect("inventory");
    let got = store.device(&d.id).await.expect("db").expect("device");
    assert_eq!(got.last_seen, Some(30));
    assert_eq!(got.inventory_hash.as_deref(), Some("h1"));
    assert_eq!(got.summary, inv.summary);
    assert_eq!(got.hostname, "renamed");
    assert_eq!(
        store
            .device_inventory_json(&d.id)
            .await
            .expect("db")
            .as_deref(),
        Some("{\"x\":1}")
    );
    assert_eq!(
        store
            .device_by_secret_hash("secret-a")
            .await
            .expect("db")
            .map(|d| d.id),
        Some(d.id)
    );
}

async fn deployments_are_all_or_nothing(store: &dyn Store) {
    let d = enrolled(store, "a").await;
    let dep = deployment("dep1", &d.tenant_id);
    let j = job("j1", &dep, &d.id);
    // The same job twice violates a key: nothing of the deployment may remain.
    let err = store
        .create_deployment(&dep, &[j.clone(), j.clone()], &[])
        .await;
    assert!(err.is_err());
    assert!(store.deployment("dep1").await.expect("db").is_none());
    assert!(store
        .offerable_jobs(&d.id, 100, 0)
        .await
        .expect("db")
        .is_empty());
    store
        .create_deployment(
            &dep,
            std::slice::from_ref(&j),
            &[pkg(&j, "pw-demo", PackageState::Pending)],
        )
        .await
        .expect("create");
    assert_eq!(store.jobs_of_deployment("dep1").await.expect("db").len(), 1);
    assert_eq!(
        store
            .list_deployments(Some(&d.tenant_id))
            .await
            .expect("db")
            .len(),
        1
    );
    assert_eq!(
        store
            .list_deployments(Some("other"))
            .await
            .expect("db")
            .len(),
        0
    );
}

async fn results_are_stored_once_and_jobs_leased(store: &dyn Store) {
    let d = enrolled(store, "a").await;
    let dep = deployment("dep1", &d.tenant_id);
    let j = job("j1", &dep, &d.id);
    store
        .create_deployment(
            &dep,
            std::slice::from_ref(&j),
            &[pkg(&j, "pw-demo", PackageState::Pending)],
        )
        .await
        .expect("create");
    assert_eq!(
        store
            .offerable_jobs(&d.id, 100, 1_000)
            .await
            .expect("db")
            .len(),
        1
    );
    assert_eq!(
        store
            .mark_job_started("j1", "someone-else", 200)
            .await
            .expect("db"),
        StartOutcome::UnknownJob
    );
    assert_eq!(
        store.mark_job_started("j1", &d.id, 200).await.expect("db"),
        StartOutcome::Started
    );
    assert_eq!(
        store.mark_job_started("j1", &d.id, 200).await.expect("db"),
        StartOutcome::Started,
        "idempotent"
    );
    assert!(
        store
            .offerable_jobs(&d.id, 300, 1_000)
            .await
            .expect("db")
            .is_empty(),
        "lease holds"
    );
    // timeout 60 s + grace 1 s after the start at 200 ms.
    assert_eq!(
        store
            .offerable_jobs(&d.id, 200 + 61_001, 1_000)
            .await
            .expect("db")
            .len(),
        1,
        "lease expired"
    );

    let mut verified = pkg(&j, "pw-demo", PackageState::Verified);
    verified.installed_version = Some("1.1".into());
    verified.from_version = None;
    let outcome = JobOutcome {
        finished_at: 400,
        started_at: Some(200),
        exit_code: Some(0),
        commands: vec!["apt-get install".into()],
        duration_ms: 200,
        output: "ok".into(),
        error: None,
        result_json: "{}".into(),
        packages: vec![verified],
        boot_id: Some("boot-1".into()),
        attempt: None,
    };
    assert_eq!(
        store
            .store_job_result("j1", "intruder", &outcome)
            .await
            .expect("db"),
        ResultStored::UnknownJob
    );
    assert_eq!(
        store
            .store_job_result("j1", &d.id, &outcome)
            .await
            .expect("db"),
        ResultStored::Stored
    );
    let mut again = outcome.clone();
    again.packages[0].state = PackageState::Failed;
    assert_eq!(
        store
            .store_job_result("j1", &d.id, &again)
            .await
            .expect("db"),
        ResultStored::Duplicate
    );
    let rows = store.packages_of_deployment("dep1").await.expect("db");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].state, PackageState::Verified);
    assert_eq!(
        rows[0].from_version.as_deref(),
        Some("1.0"),
        "the planned version is kept"
    );
    assert_eq!(rows[0].installed_version.as_deref(), Some("1.1"));
    assert!(store
        .offerable_jobs(&d.id, 1_000_000, 0)
        .await
        .expect("db")
        .is_empty());
    let jobs = store.jobs_of_deployment("dep1").await.expect("db");
    assert_eq!(jobs[0].status, JobStatus::Done);
    assert_eq!(jobs[0].commands, vec!["apt-get install".to_owned()]);
}

/// Many devices reporting at once (a fleet finishing a deployment): every result is stored
/// at the first try, none is refused as "database busy".
async fn concurrent_results_are_all_stored(store: &dyn Store) {
    let t = store.ensure_tenant("default", 0).await.expect("tenant");
    store
        .insert_enroll_token(&enroll_token("tok", &t.id, 1_000, None))
        .await
        .expect("token");
    let dep = deployment("dep1", &t.id);
    let mut jobs = Vec::new();
    for i in 0..20 {
        let d = store
            .enroll_device("hash-tok", 1, device(&format!("d{i}")))
            .await
            .expect("db")
            .expect("enrolled");
        jobs.push(job(&format!("j{i}"), &dep, &d.id));
    }
    let rows: Vec<JobPackage> = jobs
        .iter()
        .map(|j| pkg(j, "pw-demo", PackageState::Pending))
        .collect();
    store
        .create_deployment(&dep, &jobs, &rows)
        .await
        .expect("create");
    let outcome = |j: &Job| JobOutcome {
        finished_at: 400,
        started_at: Some(200),
        exit_code: Some(0),
        commands: vec![],
        duration_ms: 200,
        output: String::new(),
        error: None,
        result_json: "{}".into(),
        packages: vec![pkg(j, "pw-demo", PackageState::Verified)],
        boot_id: None,
        attempt: None,
    };
    let results = futures_join_all(jobs.iter().map(|j| {
        let o = outcome(j);
        async move { store.store_job_result(&j.id, &j.device_id, &o).await }
    }))
    .await;
    for r in results {
        assert_eq!(
            r.expect("stored without a busy error"),
            ResultStored::Stored
        );
    }
}

/// Runs futures concurrently on the current task (enough to interleave database calls).
async fn futures_join_all<F: std::future::Future>(futs: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut set = Vec::new();
    for f in futs {
        set.push(Box::pin(f));
    }
    let mut out = Vec::with_capacity(set.len());
    // Poll all of them together by joining pairwise through a select-free loop.
    let mut pending: Vec<_> = set.into_iter().map(Some).collect();
    let mut results: Vec<Option<F::Output>> = (0..pending.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut done = true;
        for (i, slot) in pending.iter_mut().enumerate() {
            if let Some(f) = slot {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => {
                        results[i] = Some(v);
                        *slot = None;
                    }
                    std::task::Poll::Pending => done = false,
                }
            }
        }
        if done {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    out.extend(results.into_iter().flatten());
    out
}

fn outcome_of(j: &Job, at: i64, rows: Vec<JobPackage>) -> JobOutcome {
    JobOutcome {
        finished_at: at,
        started_at: Some(at - 1),
        exit_code: Some(100),
        commands: vec!["apt-get install -y x".into()],
        duration_ms: 1,
        output: String::new(),
        error: None,
        result_json: format!("{{\"job\":\"{}\"}}", j.id),
        packages: rows,
        boot_id: Some("boot-1".into()),
        attempt: None,
    }
}

/// Attempts are kept per package; a failure is current until a later attempt succeeds; a
/// pending reboot is listed until confirmed.
async fn attempts_history_and_current_failures(store: &dyn Store) {
    let d = enrolled(store, "a").await;
    let t = d.tenant_id.clone();
    let (dep1, dep2) = (deployment("dep1", &t), deployment("dep2", &t));
    let (j1, j2) = (job("j1", &dep1, &d.id), job("j2", &dep2, &d.id));
    store
        .create_deployment(
            &dep1,
            std::slice::from_ref(&j1),
            &[
                pkg(&j1, "tool", PackageState::Pending),
                pkg(&j1, "kern", PackageState::Pending),
            ],
        )
        .await
        .expect("dep1");
    store
        .create_deployment(
            &dep2,
            std::slice::from_ref(&j2),
            &[pkg(&j2, "tool", PackageState::Pending)],
        )
        .await
        .expect("dep2");

    let mut failed = pkg(&j1, "tool", PackageState::Failed);
    failed.class = Some(FailureClass::InstallScriptFailed);
    failed.evidence =
        vec!["post-installation script subprocess returned error exit status 1".into()];
    let reboot = pkg(&j1, "kern", PackageState::PendingReboot);
    store
        .store_job_result("j1", &d.id, &outcome_of(&j1, 1_000, vec![failed, reboot]))
        .await
        .expect("j1");

    let current = store
        .current_failures(&FailureFilter::default())
        .await
        .expect("failures");
    assert_eq!(
        current
            .iter()
            .map(|a| (a.package.as_str(), a.class))
            .collect::<Vec<_>>(),
        vec![("tool", Some(FailureClass::InstallScriptFailed))]
    );
    let by_class = FailureFilter {
        class: Some(FailureClass::LockHeld),
        ..Default::default()
    };
    assert!(store
        .current_failures(&by_class)
        .await
        .expect("failures")
        .is_empty());
    let other = FailureFilter {
        tenant_id: Some("other".into()),
        ..Default::default()
    };
    assert!(
        store
            .current_failures(&other)
            .await
            .expect("failures")
            .is_empty(),
        "tenant filter"
    );

    let pending = store.pending_reboots(&d.id).await.expect("pending");
    assert_eq!(pending.len(), 1);
    assert_eq!(
        (
            pending[0].package.package.as_str(),
            pending[0].boot_id.as_deref()
        ),
        ("kern", Some("boot-1"))
    );
    let mut confirmed = pending[0].package.clone();
    confirmed.state = PackageState::Verified;
    let attempt = Attempt {
        id: 0,
        tenant_id: t.clone(),
        device_id: d.id.clone(),
        deployment_id: "dep1".into(),
        job_id: "j1".into(),
        package: "kern".into(),
        at: 1_500,
        state: PackageState::Verified,
        class: None,
        installed_version: Some("1.1".into()),
        evidence: vec!["boot id changed".into()],
        action: "confirmed after reboot".into(),
        exit_code: None,
    };
    store
        .update_package_outcome(&confirmed, &attempt)
        .await
        .expect("confirm");
    assert!(store
        .pending_reboots(&d.id)
        .await
        .expect("pending")
        .is_empty());

    // A later successful attempt at the same package clears the failure; history keeps all.
    store
        .store_job_result(
            "j2",
            &d.id,
            &outcome_of(&j2, 2_000, vec![pkg(&j2, "tool", PackageState::Verified)]),
        )
        .await
        .expect("j2");
    assert!(store
        .current_failures(&FailureFilter::default())
        .await
        .expect("failures")
        .is_empty());
    let history = store.attempts_of_device(&d.id, 10).await.expect("history");
    let summary: Vec<(&str, &str, i64)> = history
        .iter()
        .map(|a| (a.package.as_str(), a.state.as_str(), a.at))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("tool", "verified", 2_000),
            ("kern", "verified", 1_500),
            ("kern", "pending_reboot", 1_000),
            ("tool", "failed", 1_000)
        ]
    );
    assert_eq!(history[3].action, "apt-get install -y x");
    assert_eq!(history[3].exit_code, Some(100));
}

/// Only released jobs of running deployments are offered; cancelling closes what has not
/// started.
async fn rollout_controls_what_is_offered(store: &dyn Store) {
    let d = enrolled(store, "a").await;
    let e = enrolled(store, "b").await;
    let mut dep = deployment("dep1", &d.tenant_id);
    let j1 = job("j1", &dep, &d.id);
    let mut j2 = job("j2", &dep, &e.id);
    j2.ring = 1;
    j2.released_at = None;
    store
        .create_deployment(
            &dep,
            &[j1.clone(), j2.clone()],
            &[
                pkg(&j1, "p", PackageState::Pending),
                pkg(&j2, "p", PackageState::Pending),
            ],
        )
        .await
        .expect("create");
    assert_eq!(store.active_deployments().await.expect("active").len(), 1);
    assert_eq!(
        store.offerable_jobs(&d.id, 200, 0).await.expect("db").len(),
        1
    );
    assert!(
        store
            .offerable_jobs(&e.id, 200, 0)
            .await
            .expect("db")
            .is_empty(),
        "not released"
    );
    dep.status = DeploymentStatus::Halted;
    dep.status_reason = Some("why".into());
    assert!(store
        .transition_deployment(&dep, &[DeploymentStatus::Running], Some(0), None)
        .await
        .expect("halt"));
    assert!(
        store
            .offerable_jobs(&d.id, 200, 0)
            .await
            .expect("db")
            .is_empty(),
        "halted: nothing new starts"
    );
    assert_eq!(
        store
            .deployment("dep1")
            .await
            .expect("db")
            .and_then(|x| x.status_reason)
            .as_deref(),
        Some("why")
    );
    assert!(store.active_deployments().await.expect("active").is_empty());
    dep.status = DeploymentStatus::Running;
    assert!(store
        .transition_deployment(&dep, &[DeploymentStatus::Halted], Some(0), None)
        .await
        .expect("resume"));
    assert_eq!(
        store
            .release_jobs(&["j2".to_owned()], 300)
            .await
            .expect("release"),
        1
    );
    assert_eq!(
        store.offerable_jobs(&e.id, 400, 0).await.expect("db").len(),
        1
    );
    assert_eq!(
        store
            .mark_job_started("j1", &d.id, 500)
            .await
            .expect("start"),
        StartOutcome::Started
    );
    dep.status = DeploymentStatus::Cancelled;
    dep.updated_at = Some(600);
    assert!(store
        .transition_deployment(
            &dep,
            &[DeploymentStatus::Running, DeploymentStatus::Halted],
            Some(0),
            Some("cancelled by admin"),
        )
        .await
        .expect("cancel"));
    let jobs = store.jobs_of_deployment("dep1").await.expect("jobs");
    assert_eq!(
        jobs.iter()
            .map(|j| (j.id.as_str(), j.status, j.finished_at))
            .collect::<Vec<_>>(),
        vec![
            ("j1", JobStatus::Running, None),
            ("j2", JobStatus::Done, Some(600))
        ],
        "exactly the unstarted job is closed, at the cancellation"
    );
    let rows = store.packages_of_deployment("dep1").await.expect("rows");
    let states: Vec<(&str, PackageState)> =
        rows.iter().map(|r| (r.job_id.as_str(), r.state)).collect();
    assert_eq!(
        states,
        vec![("j1", PackageState::Pending), ("j2", PackageState::Skipped)],
        "a started job runs to its end"
    );
    assert_eq!(rows[1].evidence, vec!["cancelled by admin".to_owned()]);
}

#[path = "conformance/people.rs"]
mod people;
use people::*;

#[path = "conformance/reboots.rs"]
mod reboots;
use reboots::*;

#[path = "conformance/audit.rs"]
mod audit;
use audit::*;

#[path = "conformance/history.rs"]
mod history;
use history::*;

#[path = "conformance/sla.rs"]
mod sla;
use sla::*;

#[path = "conformance/triage.rs"]
mod triage;
use triage::*;

#[path = "conformance/transitions.rs"]
mod transitions;
use transitions::*;

#[path = "conformance/corrupt.rs"]
mod corrupt;

fn exposure(d: &Device, cve: &str) -> ExposureRecord {
    ExposureRecord {
        device_id: d.id.clone(),
        tenant_id: d.tenant_id.clone(),
        cve: cve.into(),
        package: "openssh".into(),
        installed_version: "1:9.2p1-2+deb12u2".into(),
        fix_state: "fixed".into(),
        fixed_version: Some("1:9.2p1-2+deb12u3".into()),
        rating: "high".into(),
        priority: 50.0,
        ..Default::default()
    }
}

/// Exposures open, stay open with their first-seen time, close, and reopen; a failed feed
/// import keeps the previous content.
async fn exposures_and_feeds(store: &dyn Store) {
    let d = enrolled(store, "a").await;
    let open = |cves: &[&str]| cves.iter().map(|c| exposure(&d, c)).collect::<Vec<_>>();
    assert_eq!(
        store
            .sync_device_exposures(&d.id, 100, &open(&["CVE-1", "CVE-2"]))
            .await
            .expect("sync"),
        (2, 0)
    );
    assert_eq!(
        store
            .sync_device_exposures(&d.id, 200, &open(&["CVE-1"]))
            .await
            .expect("sync"),
        (0, 1)
    );
    let all = store
        .list_exposures(&ExposureFilter {
            include_closed: true,
            ..Default::default()
        })
        .await
        .expect("list");
    let summary: Vec<(&str, i64, Option<i64>)> = all
        .iter()
        .map(|e| (e.cve.as_str(), e.first_seen, e.closed_at))
        .collect();
    assert_eq!(
        summary,
        vec![("CVE-1", 100, None), ("CVE-2", 100, Some(200))]
    );
    assert_eq!(
        store
            .list_exposures(&ExposureFilter::default())
            .await
            .expect("open")
            .len(),
        1
    );
    assert_eq!(
        store
            .sync_device_exposures(&d.id, 300, &open(&["CVE-1", "CVE-2"]))
            .await
            .expect("reopen"),
        (1, 0)
    );
    let reopened = store
        .list_exposures(&ExposureFilter {
            cve: Some("CVE-2".into()),
            ..Default::default()
        })
        .await
        .expect("list");
    assert_eq!((reopened[0].first_seen, reopened[0].closed_at), (300, None));

    let feed = FeedRecord {
        source: "tracker".into(),
        kind: "debian-tracker".into(),
        records: 3,
        imported_at: Some(10),
        last_attempt_at: Some(10),
        ..Default::default()
    };
    store.put_feed(&feed, b"{\"good\":1}").await.expect("put");
    store
        .feed_failed("tracker", "debian-tracker", None, 20, "truncated at line 3")
        .await
        .expect("fail");
    let feeds = store.list_feeds().await.expect("feeds");
    assert_eq!(
        (
            feeds[0].records,
            feeds[0].imported_at,
            feeds[0].last_error.as_deref()
        ),
        (3, Some(10), Some("truncated at line 3"))
    );
    assert_eq!(
        store.feed_contents().await.expect("contents"),
        vec![("debian-tracker".to_owned(), b"{\"good\":1}".to_vec())]
    );
}

/// Policies are unique by name per tenant; a cycle gets one deployment whatever happens;
/// rejections are kept until lifted; a retry requeues a done job once per attempt.
async fn policies_runs_rejections_and_retries(store: &dyn Store) {
    let t = store.ensure_tenant("default", 1).await.expect("tenant");
    let p = Policy {
        id: "pol_1".into(),
        tenant_id: t.id.clone(),
        name: "monthly".into(),
        spec_json: "{}".into(),
        enabled: true,
        revision: 1,
        created_at: 1,
        created_by: "admin".into(),
        updated_at: 1,
        problem: None,
    };
    store.create_policy(&p).await.expect("create");
    let twin = Policy {
        id: "pol_2".into(),
        ..p.clone()
    };
    assert!(matches!(
        store.create_policy(&twin).await,
        Err(StoreError::Conflict(_))
    ));
    let other = store.ensure_tenant("other", 1).await.expect("tenant");
    store
        .create_policy(&Policy {
            id: "pol_3".into(),
            tenant_id: other.id.clone(),
            ..p.clone()
        })
        .await
        .expect("same name in another tenant");
    let edited = Policy {
        revision: 2,
        spec_json: "{\"x\":1}".into(),
        ..p.clone()
    };
    assert!(store.update_policy(&edited).await.expect("update"));
    assert_eq!(
        store.policy("pol_1").await.expect("get"),
        Some(edited.clone())
    );
    assert_eq!(
        store
            .policy_by_name(&t.id, "monthly")
            .await
            .expect("by name")
            .map(|p| p.id),
        Some("pol_1".into())
    );
    assert_eq!(
        store.list_policies(Some(&t.id)).await.expect("list").len(),
        1
    );
    assert_eq!(store.list_policies(None).await.expect("list").len(), 2);

    // A policy the scheduler cannot run keeps its problem until it is cleared; an update of
    // the spec leaves it alone (the next scheduler pass decides).
    let problem = PolicyProblem {
        at: 7,
        message: "policy \"monthly\": rings: ring names must be unique".into(),
    };
    assert!(store
        .set_policy_problem("pol_1", Some(&problem))
        .await
        .expect("problem"));
    let read = store.policy("pol_1").await.expect("get").expect("policy");
    assert_eq!(read.problem, Some(problem.clone()));
    assert!(store.update_policy(&edited).await.expect("update"));
    assert_eq!(
        store
            .policy("pol_1")
            .await
            .expect("get")
            .and_then(|p| p.problem),
        Some(problem)
    );
    assert!(store
        .set_policy_problem("pol_1", None)
        .await
        .expect("clear"));
    assert_eq!(
        store.policy("pol_1").await.expect("get"),
        Some(edited.clone())
    );
    assert!(!store
        .set_policy_problem("pol_nope", None)
        .await
        .expect("no such policy"));

    // One deployment per cycle: the second claim creates nothing at all.
    let d = enrolled(store, "dev1").await;
    let dep1 = deployment("dep_1", &d.tenant_id);
    let j1 = job("job_1", &dep1, &d.id);
    let run = PolicyRun {
        policy_id: "pol_1".into(),
        cycle: "2026-12-10".into(),
        deployment_id: "dep_1".into(),
        created_at: 5,
    };
    assert!(store
        .create_policy_deployment(
            &run,
            &dep1,
            std::slice::from_ref(&j1),
            &[pkg(&j1, "curl", PackageState::Pending)]
        )
        .await
        .expect("first"));
    let dep2 = deployment("dep_2", &d.tenant_id);
    let j2 = job("job_2", &dep2, &d.id);
    let again = PolicyRun {
        deployment_id: "dep_2".into(),
        ..run.clone()
    };
    assert!(!store
        .create_policy_deployment(
            &again,
            &dep2,
            std::slice::from_ref(&j2),
            &[pkg(&j2, "curl", PackageState::Pending)]
        )
        .await
        .expect("second"));
    assert!(
        store.deployment("dep_2").await.expect("get").is_none(),
        "nothing of the second"
    );
    assert_eq!(
        store.policy_run("pol_1", "2026-12-10").await.expect("run"),
        Some(run)
    );
    assert_eq!(store.policy_runs("pol_1").await.expect("runs").len(), 1);

    // Rejections.
    let r = RejectedUpdate {
        tenant_id: t.id.clone(),
        package: "curl".into(),
        version: "8.0".into(),
        deployment_id: Some("dep_1".into()),
        rejected_by: "alice".into(),
        reason: Some("breaks".into()),
        rejected_at: 9,
    };
    store
        .reject_updates(&[r.clone(), r.clone()])
        .await
        .expect("reject");
    assert_eq!(
        store.rejected_updates(Some(&t.id)).await.expect("list"),
        vec![r]
    );
    assert_eq!(
        store.rejected_updates(Some(&other.id)).await.expect("list"),
        vec![]
    );
    assert_eq!(
        store
            .unreject_update(&t.id, "curl", Some("7.0"))
            .await
            .expect("unreject"),
        0
    );
    assert_eq!(
        store
            .unreject_update(&t.id, "curl", None)
            .await
            .expect("unreject"),
        1
    );

    // Retries: only a done job on the named attempt; offered again only after not_before.
    assert_eq!(
        store
            .release_jobs(&["job_1".into()], 10)
            .await
            .expect("release"),
        0,
        "released when it was created"
    );
    assert!(!store
        .requeue_job("job_1", 1, 100)
        .await
        .expect("not done yet"));
    store
        .store_job_result(
            "job_1",
            &d.id,
            &outcome_of(&j1, 20, vec![pkg(&j1, "curl", PackageState::Failed)]),
        )
        .await
        .expect("result");
    assert!(store.requeue_job("job_1", 1, 100).await.expect("requeue"));
    assert!(!store
        .requeue_job("job_1", 1, 100)
        .await
        .expect("once per attempt"));
    assert!(store
        .offerable_jobs(&d.id, 99, 0)
        .await
        .expect("offer")
        .is_empty());
    let offered = store.offerable_jobs(&d.id, 100, 0).await.expect("offer");
    assert_eq!(
        offered.iter().map(|j| j.attempt).collect::<Vec<_>>(),
        vec![2]
    );
    // A late result of attempt 1 is a re-delivery; attempt 2's is stored.
    let mut late = outcome_of(&j1, 30, vec![pkg(&j1, "curl", PackageState::Failed)]);
    late.attempt = Some(1);
    assert_eq!(
        store
            .store_job_result("job_1", &d.id, &late)
            .await
            .expect("late"),
        ResultStored::Duplicate
    );
    let mut second = outcome_of(&j1, 120, vec![pkg(&j1, "curl", PackageState::Verified)]);
    second.attempt = Some(2);
    assert_eq!(
        store
            .store_job_result("job_1", &d.id, &second)
            .await
            .expect("second"),
        ResultStored::Stored
    );
    assert!(store
        .skip_job("job_1", 130, "x", "skip")
        .await
        .is_ok_and(|done| !done));
}

macro_rules! conformance {
    ($($check:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $check() {
                    let (store, _dir) = super::fresh_sqlite().await;
                    super::$check(&store).await;
                }
            )*
        }
    };
}

conformance!(
    tenants_are_unique_by_name,
    enrollment_refusals_are_specific,
    checkins_store_inventory_and_summary,
    deployments_are_all_or_nothing,
    results_are_stored_once_and_jobs_leased,
    concurrent_results_are_all_stored,
    attempts_history_and_current_failures,
    rollout_controls_what_is_offered,
    users_memberships_and_sessions,
    audit_log_is_appended_and_filtered,
    api_tokens_are_listed_and_revoked,
    dashboard_figures_and_device_page,
    exposures_and_feeds,
    reboots_offered_requested_and_overdue,
    history_and_exposure_stats,
    sla_policies_per_tenant,
    policies_runs_rejections_and_retries,
    triage_assign_resolve_reopen_and_streaks,
    deployment_transitions_are_conditional,
    concurrent_transitions_have_one_winner,
    cancel_closes_unstarted_jobs_atomically,
    halted_or_cancelled_deployments_start_nothing,
    a_start_is_checked_against_the_offer,
    a_job_past_its_window_is_taken_back,
);

/// Damages rows with the backend's own SQL (a backend joins with its own executor).
#[tokio::test]
async fn sqlite_unknown_stored_values_are_errors_naming_the_row() {
    let (store, _dir) = fresh_sqlite().await;
    let pool = store.pool().clone();
    corrupt::unknown_stored_values_are_errors_naming_the_row(&store, |sql| {
        let pool = pool.clone();
        async move {
            sqlx::query(&sql)
                .execute(&pool)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
    })
    .await;
}

#[tokio::test]
async fn sqlite_data_survives_reopening() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("t.db").display().to_string();
    {
        let store = SqliteStore::open(&path).await.expect("open");
        enrolled(&store, "a").await;
    }
    let store = SqliteStore::open(&path).await.expect("reopen");
    assert_eq!(store.list_devices(None).await.expect("list").len(), 1);
}
