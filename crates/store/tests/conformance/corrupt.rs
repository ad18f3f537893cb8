//! Conformance: a stored name that is not one of core's (a row written by hand, by a newer
//! server, or damaged) is an error naming the table, the row, the column and the value, never
//! read as a default. The rows are damaged with the backend's own SQL (`raw`).

use super::*;
use patchwarden_core::{JobStatus, RebootMode, RebootStatus, Role};
use std::future::Future;

/// A reading method that meets the damaged row.
#[derive(Debug, Clone, Copy)]
enum Read {
    Deployment,
    Job,
    Packages,
    Attempts,
    CurrentFailures,
    FailureCounts,
    Memberships,
    ApiToken,
    Triage,
    Reboot,
    PreflightJobs,
    Predictions,
    Audit,
}

async fn read(store: &dyn Store, what: Read) -> Result<()> {
    match what {
        Read::Deployment => store.deployment("dep1").await.map(drop),
        Read::Job => store.job("j1").await.map(drop),
        Read::Packages => store.packages_of_deployment("dep1").await.map(drop),
        Read::Attempts => store.attempts_of_device("a", 10).await.map(drop),
        Read::CurrentFailures => store
            .current_failures(&FailureFilter::default())
            .await
            .map(drop),
        Read::FailureCounts => store.failure_counts(&None).await.map(drop),
        Read::Memberships => store.memberships_of("u1").await.map(drop),
        Read::ApiToken => store.api_token("t1").await.map(drop),
        Read::Triage => store.triage("a", "p").await.map(drop),
        Read::Reboot => store.reboot_of_job("j1").await.map(drop),
        Read::PreflightJobs => store.preflight_jobs_of_deployment("dep1").await.map(drop),
        Read::Predictions => store.predictions_of_deployment("dep1").await.map(drop),
        Read::Audit => store.list_audit(&AuditFilter::default()).await.map(drop),
    }
}

/// One of each kind of row, all valid.
async fn seed(store: &dyn Store) {
    let d = enrolled(store, "a").await;
    let dep = deployment("dep1", &d.tenant_id);
    let j = job("j1", &dep, &d.id);
    store
        .create_deployment(
            &dep,
            std::slice::from_ref(&j),
            &[pkg(&j, "p", PackageState::Pending)],
        )
        .await
        .expect("deployment");
    let mut failed = pkg(&j, "p", PackageState::Failed);
    failed.class = Some(FailureClass::LockHeld);
    store
        .store_job_result("j1", &d.id, &outcome_of(&j, 1_000, vec![failed]))
        .await
        .expect("result");
    store
        .create_user(
            &User {
                id: "u1".into(),
                login: "ann".into(),
                password_hash: "x".into(),
                created_at: 1,
                disabled: false,
            },
            &[Membership {
                user_id: "u1".into(),
                tenant_id: None,
                role: Role::Viewer,
            }],
        )
        .await
        .expect("user");
    store
        .insert_api_token(&ApiToken {
            id: "t1".into(),
            tenant_id: None,
            name: "ci".into(),
            role: Role::Operator,
            token_hash: "h".into(),
            created_at: 1,
            revoked_at: None,
        })
        .await
        .expect("token");
    store
        .assign_failure(&d.tenant_id, &d.id, "p", Some("ann"), "admin", 2_000)
        .await
        .expect("triage");
    store
        .put_reboot_offer(&RebootRecord {
            job_id: "j1".into(),
            tenant_id: d.tenant_id.clone(),
            deployment_id: "dep1".into(),
            device_id: d.id.clone(),
            mode: RebootMode::WhenRequired,
            withheld: None,
            status: RebootStatus::Offered,
            packages: vec![],
            boot_id_before: None,
            requested_at: None,
            deadline: None,
            came_back_at: None,
            boot_id_after: None,
            updated_at: 900,
        })
        .await
        .expect("reboot");
    store
        .queue_preflight_jobs(&[PreflightJob {
            id: "pf1".into(),
            tenant_id: d.tenant_id.clone(),
            deployment_id: "dep1".into(),
            device_id: d.id.clone(),
            payload: "{}".into(),
            status: JobStatus::Queued,
            created_at: 100,
            started_at: None,
            finished_at: None,
        }])
        .await
        .expect("preflight");
    let prediction = Prediction {
        deployment_id: "dep1".into(),
        device_id: d.id.clone(),
        package: "p".into(),
        tenant_id: d.tenant_id.clone(),
        job_id: "pf1".into(),
        state: PackageState::Failed,
        class: Some(FailureClass::HeldBack),
        evidence: vec![],
        at: 200,
    };
    store
        .store_preflight_result("pf1", &d.id, 200, "{}", &[prediction])
        .await
        .expect("prediction");
}

pub(crate) async fn unknown_stored_values_are_errors_naming_the_row<F, Fut>(
    store: &dyn Store,
    raw: F,
) where
    F: Fn(String) -> Fut,
    Fut: Future<Output = ()>,
{
    seed(store).await;
    for what in [
        Read::Deployment,
        Read::Job,
        Read::Packages,
        Read::Attempts,
        Read::CurrentFailures,
        Read::FailureCounts,
        Read::Memberships,
        Read::ApiToken,
        Read::Triage,
        Read::Reboot,
        Read::PreflightJobs,
        Read::Predictions,
        Read::Audit,
    ] {
        read(store, what)
            .await
            .unwrap_or_else(|e| panic!("{what:?} reads before any damage: {e}"));
    }
    // (damage, repair, the method that reads it, the start of the message).
    let cases: &[(&str, Option<&str>, Read, &str)] = &[
        (
            "UPDATE deployments SET status = 'paused' WHERE id = 'dep1'",
            Some("UPDATE deployments SET status = 'running' WHERE id = 'dep1'"),
            Read::Deployment,
            "deployments row dep1: status \"paused\" is not a deployment status \
             (use pending_approval, running, halted, cancelled, completed)",
        ),
        (
            "UPDATE jobs SET status = 'stuck' WHERE id = 'j1'",
            Some("UPDATE jobs SET status = 'done' WHERE id = 'j1'"),
            Read::Job,
            "jobs row j1: status \"stuck\" is not a job status (use queued, running, done)",
        ),
        (
            "UPDATE job_packages SET state = 'weird' WHERE job_id = 'j1'",
            Some("UPDATE job_packages SET state = 'failed' WHERE job_id = 'j1'"),
            Read::Packages,
            "job_packages row (j1, p): state \"weird\" is not a package state (use pending, ",
        ),
        (
            "UPDATE job_packages SET class = 'cosmic_ray' WHERE job_id = 'j1'",
            Some("UPDATE job_packages SET class = 'lock_held' WHERE job_id = 'j1'"),
            Read::Packages,
            "job_packages row (j1, p): class \"cosmic_ray\" is not a failure class (use ",
        ),
        (
            "UPDATE attempts SET state = 'weird' WHERE job_id = 'j1'",
            Some("UPDATE attempts SET state = 'failed' WHERE job_id = 'j1'"),
            Read::Attempts,
            "attempts row 1: state \"weird\" is not a package state (use ",
        ),
        (
            "UPDATE attempts SET class = 'cosmic_ray' WHERE job_id = 'j1'",
            Some("UPDATE attempts SET class = 'lock_held' WHERE job_id = 'j1'"),
            Read::CurrentFailures,
            "attempts row 1: class \"cosmic_ray\" is not a failure class (use ",
        ),
        (
            "UPDATE attempts SET class = 'cosmic_ray' WHERE job_id = 'j1'",
            Some("UPDATE attempts SET class = 'lock_held' WHERE job_id = 'j1'"),
            Read::FailureCounts,
            "attempts row 1: class \"cosmic_ray\" is not a failure class (use ",
        ),
        (
            "UPDATE memberships SET role = 'root' WHERE user_id = 'u1'",
            Some("UPDATE memberships SET role = 'viewer' WHERE user_id = 'u1'"),
            Read::Memberships,
            "memberships row 1: role \"root\" is not a role (use admin, operator, approver, viewer)",
        ),
        (
            "UPDATE api_tokens SET role = 'root' WHERE id = 't1'",
            Some("UPDATE api_tokens SET role = 'operator' WHERE id = 't1'"),
            Read::ApiToken,
            "api_tokens row t1: role \"root\" is not a role (use ",
        ),
        (
            "UPDATE failure_triage SET status = 'maybe' WHERE device_id = 'a'",
            Some("UPDATE failure_triage SET status = 'open' WHERE device_id = 'a'"),
            Read::Triage,
            "failure_triage row (a, p): status \"maybe\" is not a triage status \
             (use open, resolved, accepted_risk)",
        ),
        (
            "UPDATE reboots SET mode = 'sometimes' WHERE job_id = 'j1'",
            Some("UPDATE reboots SET mode = 'when_required' WHERE job_id = 'j1'"),
            Read::Reboot,
            "reboots row j1: mode \"sometimes\" is not a reboot mode \
             (use never, when_required, always)",
        ),
        (
            "UPDATE reboots SET status = 'gone' WHERE job_id = 'j1'",
            Some("UPDATE reboots SET status = 'offered' WHERE job_id = 'j1'"),
            Read::Reboot,
            "reboots row j1: status \"gone\" is not a reboot status (use offered, ",
        ),
        (
            "UPDATE preflight_jobs SET status = 'paused' WHERE id = 'pf1'",
            Some("UPDATE preflight_jobs SET status = 'done' WHERE id = 'pf1'"),
            Read::PreflightJobs,
            "preflight_jobs row pf1: status \"paused\" is not a job status (use ",
        ),
        (
            "UPDATE predictions SET state = 'likely' WHERE job_id = 'pf1'",
            Some("UPDATE predictions SET state = 'failed' WHERE job_id = 'pf1'"),
            Read::Predictions,
            "predictions row (dep1, a, p): state \"likely\" is not a package state (use ",
        ),
        (
            "UPDATE predictions SET class = 'cosmic_ray' WHERE job_id = 'pf1'",
            Some("UPDATE predictions SET class = 'held_back' WHERE job_id = 'pf1'"),
            Read::Predictions,
            "predictions row (dep1, a, p): class \"cosmic_ray\" is not a failure class (use ",
        ),
        // The audit log is append-only: the bad entry is appended, and stays.
        (
            "INSERT INTO audit_log (at, actor_kind, actor, via, action, outcome, status) \
             VALUES (1, 'token', 'ci', 'api', 'POST x', 'meh', 200)",
            None,
            Read::Audit,
            "audit_log row 1: outcome \"meh\" is not an audit outcome (use ok, denied, failed)",
        ),
    ];
    for (damage, repair, what, message) in cases {
        raw(damage.to_string()).await;
        match read(store, *what).await {
            Err(StoreError::Corrupt(m)) => assert!(
                m.starts_with(message),
                "{what:?} after {damage:?}:\n got  {m}\n want {message}…"
            ),
            other => panic!("{what:?} after {damage:?}: {other:?}, want Corrupt({message}…)"),
        }
        if let Some(repair) = repair {
            raw(repair.to_string()).await;
            read(store, *what)
                .await
                .unwrap_or_else(|e| panic!("{what:?} after {repair:?}: {e}"));
        }
    }
}
