//! Conformance checks of failure triage: assignee, decisions, reopening, and failure streaks.

use super::*;
use patchwarden_core::TriageStatus;

fn failed(j: &Job, name: &str) -> JobPackage {
    let mut p = pkg(j, name, PackageState::Failed);
    p.class = Some(FailureClass::InstallScriptFailed);
    p
}

pub(crate) async fn triage_assign_resolve_reopen_and_streaks(store: &dyn Store) {
    let d = enrolled(store, "a").await;
    let t = d.tenant_id.clone();
    let deps: Vec<Deployment> = (1..=4)
        .map(|i| deployment(&format!("dep{i}"), &t))
        .collect();
    let jobs: Vec<Job> = deps
        .iter()
        .enumerate()
        .map(|(i, dep)| job(&format!("j{}", i + 1), dep, &d.id))
        .collect();
    for (dep, j) in deps.iter().zip(&jobs) {
        store
            .create_deployment(
                dep,
                std::slice::from_ref(j),
                &[pkg(j, "tool", PackageState::Pending)],
            )
            .await
            .expect("deployment");
    }
    assert_eq!(store.triage(&d.id, "tool").await.expect("db"), None);

    // Two failures in a row: one streak, since the first.
    for (j, at) in [(&jobs[0], 1_000), (&jobs[1], 2_000)] {
        store
            .store_job_result(&j.id, &d.id, &outcome_of(j, at, vec![failed(j, "tool")]))
            .await
            .expect("result");
    }
    let filter = FailureFilter {
        tenant_id: Some(t.clone()),
        ..Default::default()
    };
    let streaks = store.failure_streaks(&filter).await.expect("streaks");
    assert_eq!(
        streaks
            .iter()
            .map(|s| (s.package.as_str(), s.first_at, s.attempts))
            .collect::<Vec<_>>(),
        vec![("tool", 1_000, 2)]
    );
    let other = FailureFilter {
        tenant_id: Some("other".into()),
        ..Default::default()
    };
    assert!(store.failure_streaks(&other).await.expect("db").is_empty());

    // Assigned: status stays open; reassigning replaces; the decision keeps the assignee.
    let tr = store
        .assign_failure(&t, &d.id, "tool", Some("ann@example.com"), "admin", 2_100)
        .await
        .expect("assign");
    assert_eq!(
        (tr.assignee.as_deref(), tr.status, tr.assigned_at),
        (Some("ann@example.com"), TriageStatus::Open, Some(2_100))
    );
    let current = store.current_failures(&filter).await.expect("failures");
    let latest = current[0].id;
    let tr = store
        .decide_failure(&TriageDecision {
            tenant_id: t.clone(),
            device_id: d.id.clone(),
            package: "tool".into(),
            status: TriageStatus::Resolved,
            reason: Some("fixed the postinst by hand".into()),
            accepted_until: None,
            failure_attempt_id: Some(latest),
            by: "bob".into(),
            at: 2_200,
        })
        .await
        .expect("resolve");
    assert_eq!(tr.assignee.as_deref(), Some("ann@example.com"));
    assert_eq!(tr.status, TriageStatus::Resolved);
    assert_eq!(tr.effective_status(latest, 2_300), TriageStatus::Resolved);
    assert_eq!(
        store.list_triage(Some(&t)).await.expect("list"),
        vec![tr.clone()]
    );
    assert!(store
        .list_triage(Some("other"))
        .await
        .expect("list")
        .is_empty());

    // A newer failed attempt reopens the resolved failure (same streak, one more attempt).
    store
        .store_job_result(
            &jobs[2].id,
            &d.id,
            &outcome_of(&jobs[2], 3_000, vec![failed(&jobs[2], "tool")]),
        )
        .await
        .expect("result");
    let newer = store.current_failures(&filter).await.expect("failures")[0].id;
    assert!(newer > latest);
    let tr = store.triage(&d.id, "tool").await.expect("db").expect("row");
    assert_eq!(tr.effective_status(newer, 3_100), TriageStatus::Open);
    assert_eq!(
        store.failure_streaks(&filter).await.expect("db")[0].attempts,
        3
    );

    // An accepted risk holds through newer failures until it expires.
    let tr = store
        .decide_failure(&TriageDecision {
            tenant_id: t.clone(),
            device_id: d.id.clone(),
            package: "tool".into(),
            status: TriageStatus::AcceptedRisk,
            reason: Some("vendor fix next quarter".into()),
            accepted_until: Some(10_000),
            failure_attempt_id: Some(newer),
            by: "carol".into(),
            at: 3_200,
        })
        .await
        .expect("accept");
    assert_eq!(
        tr.effective_status(newer + 5, 9_999),
        TriageStatus::AcceptedRisk
    );
    assert_eq!(tr.effective_status(newer + 5, 10_000), TriageStatus::Open);
    assert_eq!(tr.reason.as_deref(), Some("vendor fix next quarter"));

    // A success ends the streak: no current failure, no streak.
    let mut ok = pkg(&jobs[3], "tool", PackageState::Verified);
    ok.installed_version = Some("1.1".into());
    store
        .store_job_result(&jobs[3].id, &d.id, &outcome_of(&jobs[3], 4_000, vec![ok]))
        .await
        .expect("result");
    assert!(store.failure_streaks(&filter).await.expect("db").is_empty());
    // Unassigning clears the assignee only.
    let tr = store
        .assign_failure(&t, &d.id, "tool", None, "admin", 4_100)
        .await
        .expect("unassign");
    assert_eq!((tr.assignee, tr.status), (None, TriageStatus::AcceptedRisk));
}
