//! Conformance: a deployment's state changes are conditional writes (a halt is never
//! overwritten by a concurrent tick), and a deployment that is not running releases and starts
//! nothing, checked in the statement that releases or starts.

use super::*;
use patchwarden_core::DeploymentStatus::{self, *};

/// A deployment's write as a transition: what it writes, what it expects to find.
struct Step {
    what: &'static str,
    to: DeploymentStatus,
    to_ring: i64,
    expected: &'static [DeploymentStatus],
    ring: Option<i64>,
    wins: bool,
}

pub(crate) async fn deployment_transitions_are_conditional(store: &dyn Store) {
    let d = enrolled(store, "a").await;
    let mut current = deployment("dep1", &d.tenant_id);
    store
        .create_deployment(&current, &[], &[])
        .await
        .expect("create");
    let steps = [
        Step {
            what: "halt from running",
            to: Halted,
            to_ring: 0,
            expected: &[Running],
            ring: Some(0),
            wins: true,
        },
        Step {
            what: "approve: not pending approval",
            to: Running,
            to_ring: 0,
            expected: &[PendingApproval],
            ring: None,
            wins: false,
        },
        Step {
            what: "resume from halted",
            to: Running,
            to_ring: 0,
            expected: &[Halted],
            ring: Some(0),
            wins: true,
        },
        Step {
            what: "promote from a ring it is not in",
            to: Running,
            to_ring: 2,
            expected: &[Running],
            ring: Some(1),
            wins: false,
        },
        Step {
            what: "promote",
            to: Running,
            to_ring: 1,
            expected: &[Running],
            ring: Some(0),
            wins: true,
        },
        Step {
            what: "halt by a writer that read ring 0",
            to: Halted,
            to_ring: 0,
            expected: &[Running],
            ring: Some(0),
            wins: false,
        },
        Step {
            what: "no status expected",
            to: Halted,
            to_ring: 1,
            expected: &[],
            ring: None,
            wins: false,
        },
        Step {
            what: "complete",
            to: Completed,
            to_ring: 1,
            expected: &[Running],
            ring: Some(1),
            wins: true,
        },
        Step {
            what: "cancel a completed one",
            to: Cancelled,
            to_ring: 1,
            expected: &[PendingApproval, Running, Halted],
            ring: None,
            wins: false,
        },
    ];
    for (i, s) in steps.iter().enumerate() {
        let at = 1_000 + i as i64;
        let write = Deployment {
            status: s.to,
            status_reason: Some(s.what.into()),
            current_ring: s.to_ring,
            approved_by: Some(format!("by {i}")),
            approved_at: Some(at),
            updated_at: Some(at),
            resumed_at: Some(at),
            ..current.clone()
        };
        let won = store
            .transition_deployment(&write, s.expected, s.ring, None)
            .await
            .expect("transition");
        assert_eq!(won, s.wins, "{}", s.what);
        if won {
            current = write;
        }
        assert_eq!(
            store.deployment("dep1").await.expect("db").as_ref(),
            Some(&current),
            "{}: every field as the last winning write left it",
            s.what
        );
    }
    let ghost = deployment("nobody", &d.tenant_id);
    assert!(!store
        .transition_deployment(&ghost, &[Running], None, None)
        .await
        .expect("db"));
    assert_eq!(store.deployment("nobody").await.expect("db"), None);
}

/// An operator's halt or cancel and the orchestrator's promotion, at the same moment, from
/// the same read (running, ring 0): exactly one of them is written; a cancel that lost closes
/// no job.
pub(crate) async fn concurrent_transitions_have_one_winner(store: &dyn Store) {
    let d = enrolled(store, "a").await;
    for i in 0..12 {
        let read = deployment(&format!("dep{i}"), &d.tenant_id);
        let j = job(&format!("j{i}"), &read, &d.id);
        store
            .create_deployment(
                &read,
                std::slice::from_ref(&j),
                &[pkg(&j, "p", PackageState::Pending)],
            )
            .await
            .expect("create");
        let operator = Deployment {
            status: if i % 2 == 0 { Halted } else { Cancelled },
            status_reason: Some("operator".into()),
            updated_at: Some(500),
            ..read.clone()
        };
        let promotion = Deployment {
            current_ring: 1,
            updated_at: Some(600),
            ..read.clone()
        };
        let halt_or_cancel = store.transition_deployment(
            &operator,
            &[Running, Halted],
            Some(read.current_ring),
            Some("not started: cancelled"),
        );
        let promote =
            store.transition_deployment(&promotion, &[Running], Some(read.current_ring), None);
        // Either one sent first, in turn.
        let (by_operator, by_tick) = if i % 4 < 2 {
            tokio::join!(halt_or_cancel, promote)
        } else {
            let (t, o) = tokio::join!(promote, halt_or_cancel);
            (o, t)
        };
        let (by_operator, by_tick) = (by_operator.expect("db"), by_tick.expect("db"));
        assert!(
            by_operator != by_tick,
            "dep{i}: exactly one wins ({by_operator}, {by_tick})"
        );
        let stored = store
            .deployment(&read.id)
            .await
            .expect("db")
            .expect("exists");
        let winner = if by_operator { &operator } else { &promotion };
        assert_eq!(&stored, winner, "dep{i}: the winner's write, whole");
        let job = store.job(&j.id).await.expect("db").expect("job");
        let closed = stored.status == Cancelled;
        assert_eq!(
            job.status,
            if closed {
                JobStatus::Done
            } else {
                JobStatus::Queued
            },
            "dep{i}: the job is closed exactly when the cancel won"
        );
    }
}

/// A cancel closes the jobs that have not started, in the same transaction as the status; a
/// cancel that finds the deployment moved on closes nothing.
pub(crate) async fn cancel_closes_unstarted_jobs_atomically(store: &dyn Store) {
    let (a, b, c) = (
        enrolled(store, "a").await,
        enrolled(store, "b").await,
        enrolled(store, "c").await,
    );
    let dep = deployment("dep1", &a.tenant_id);
    let j1 = job("j1", &dep, &a.id);
    let mut j2 = job("j2", &dep, &b.id);
    j2.released_at = None;
    let j3 = job("j3", &dep, &c.id);
    let jobs = [j1.clone(), j2.clone(), j3.clone()];
    let rows: Vec<JobPackage> = jobs
        .iter()
        .map(|j| pkg(j, "p", PackageState::Pending))
        .collect();
    store
        .create_deployment(&dep, &jobs, &rows)
        .await
        .expect("create");
    assert_eq!(
        store.mark_job_started("j3", &c.id, 200).await.expect("db"),
        StartOutcome::Started
    );
    let cancel = Deployment {
        status: Cancelled,
        status_reason: Some("cancelled by ann".into()),
        updated_at: Some(700),
        ..dep.clone()
    };
    let view = || async {
        let jobs = store.jobs_of_deployment("dep1").await.expect("jobs");
        let rows = store.packages_of_deployment("dep1").await.expect("rows");
        (
            jobs.into_iter()
                .map(|j| (j.id, j.status, j.finished_at, j.error))
                .collect::<Vec<_>>(),
            rows.into_iter()
                .map(|r| (r.job_id, r.state, r.evidence))
                .collect::<Vec<_>>(),
        )
    };
    let before = view().await;
    assert!(!store
        .transition_deployment(&cancel, &[PendingApproval], None, Some("x"))
        .await
        .expect("db"));
    assert_eq!(view().await, before, "a refused cancel closes nothing");
    assert!(store
        .transition_deployment(&cancel, &[Running, Halted, PendingApproval], None, None)
        .await
        .expect("cancel"));
    let closed = Some("not started: the deployment was cancelled".to_owned());
    let (jobs, rows) = view().await;
    assert_eq!(
        jobs,
        vec![
            ("j1".into(), JobStatus::Done, Some(700), closed.clone()),
            ("j2".into(), JobStatus::Done, Some(700), closed.clone()),
            ("j3".into(), JobStatus::Running, None, None),
        ]
    );
    let evidence = vec!["not started: the deployment was cancelled".to_owned()];
    assert_eq!(
        rows,
        vec![
            ("j1".into(), PackageState::Skipped, evidence.clone()),
            ("j2".into(), PackageState::Skipped, evidence),
            ("j3".into(), PackageState::Pending, vec![]),
        ],
        "the started job runs to its end"
    );
}

/// Halted or cancelled: no release and no start, whatever the orchestrator or the device
/// asks; running again: both are allowed.
pub(crate) async fn halted_or_cancelled_deployments_start_nothing(store: &dyn Store) {
    let (a, b, c) = (
        enrolled(store, "a").await,
        enrolled(store, "b").await,
        enrolled(store, "c").await,
    );
    let mut dep = deployment("dep1", &a.tenant_id);
    let j1 = job("j1", &dep, &a.id);
    let mut j2 = job("j2", &dep, &b.id);
    j2.released_at = None;
    let mut j3 = job("j3", &dep, &c.id);
    j3.released_at = None;
    store
        .create_deployment(&dep, &[j1, j2, j3], &[])
        .await
        .expect("create");
    let mut move_to = |to: DeploymentStatus, from: DeploymentStatus| {
        dep.status = to;
        let d = dep.clone();
        async move {
            assert!(
                store
                    .transition_deployment(&d, &[from], Some(0), None)
                    .await
                    .expect("db"),
                "{from} → {to}"
            );
        }
    };
    let j2_id = vec!["j2".to_owned()];

    move_to(Halted, Running).await;
    assert_eq!(store.release_jobs(&j2_id, 300).await.expect("db"), 0);
    assert!(!store
        .release_job_in_window("j3", 300, "{\"w\":1}", 5_000)
        .await
        .expect("db"));
    assert_eq!(
        store.mark_job_started("j1", &a.id, 300).await.expect("db"),
        StartOutcome::NotOnOffer
    );
    let j1 = store.job("j1").await.expect("db").expect("j1");
    assert_eq!((j1.status, j1.started_at), (JobStatus::Queued, None));
    let j2 = store.job("j2").await.expect("db").expect("j2");
    assert_eq!(j2.released_at, None, "not released while halted");

    move_to(Running, Halted).await;
    assert_eq!(store.release_jobs(&j2_id, 400).await.expect("db"), 1);
    assert_eq!(
        store.release_jobs(&j2_id, 450).await.expect("db"),
        0,
        "already released"
    );
    assert!(store
        .release_job_in_window("j3", 400, "{\"w\":1}", 5_000)
        .await
        .expect("db"));
    let j3 = store.job("j3").await.expect("db").expect("j3");
    assert_eq!(
        (j3.released_at, j3.window_end, j3.payload.as_str()),
        (Some(400), Some(5_000), "{\"w\":1}")
    );
    for (id, device) in [("j1", &a.id), ("j2", &b.id)] {
        assert_eq!(
            store.mark_job_started(id, device, 500).await.expect("db"),
            StartOutcome::Started,
            "{id}"
        );
    }

    move_to(Cancelled, Running).await;
    assert!(!store
        .release_job_in_window("j3", 600, "{}", 5_000)
        .await
        .expect("db"));
    assert_eq!(
        store.mark_job_started("j3", &c.id, 600).await.expect("db"),
        StartOutcome::NotOnOffer
    );
    assert_eq!(
        store.mark_job_started("j1", &a.id, 600).await.expect("db"),
        StartOutcome::Started,
        "started before the cancel: a re-delivered start is still answered"
    );

    // A cancelled deployment's unreleased job is never released.
    let other = Deployment {
        status: Cancelled,
        ..deployment("dep2", &a.tenant_id)
    };
    let mut late = job("late", &other, &a.id);
    late.released_at = None;
    store
        .create_deployment(&other, &[late], &[])
        .await
        .expect("create");
    assert_eq!(
        store
            .release_jobs(&["late".to_owned()], 700)
            .await
            .expect("db"),
        0
    );
}

/// What the job was before the device asks to start it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Before {
    Queued,
    Started,
    Done,
}

/// One case of a start: the job's offer, its deployment's status, the time of the start.
struct StartCase {
    what: &'static str,
    released: bool,
    window_end: Option<i64>,
    not_before: Option<i64>,
    before: Before,
    status: DeploymentStatus,
    now: i64,
    want: StartOutcome,
}

const fn case(what: &'static str, want: StartOutcome) -> StartCase {
    StartCase {
        what,
        released: true,
        window_end: None,
        not_before: None,
        before: Before::Queued,
        status: Running,
        now: 1_000,
        want,
    }
}

/// The start's conditions are the offer's: released, deployment running, window open, retry
/// due; a running job is started again (a re-delivery); anything else is not on offer.
pub(crate) async fn a_start_is_checked_against_the_offer(store: &dyn Store) {
    use StartOutcome::*;
    let cases = [
        case("released", Started),
        StartCase {
            released: false,
            ..case("not released", NotOnOffer)
        },
        StartCase {
            window_end: Some(1_001),
            ..case("window open", Started)
        },
        StartCase {
            window_end: Some(1_000),
            ..case("window closed", NotOnOffer)
        },
        StartCase {
            not_before: Some(1_001),
            ..case("retry not due", NotOnOffer)
        },
        StartCase {
            not_before: Some(1_000),
            ..case("retry due", Started)
        },
        StartCase {
            status: PendingApproval,
            ..case("pending approval", NotOnOffer)
        },
        StartCase {
            status: Halted,
            ..case("halted", NotOnOffer)
        },
        StartCase {
            status: Cancelled,
            ..case("cancelled", NotOnOffer)
        },
        StartCase {
            status: Completed,
            ..case("completed", NotOnOffer)
        },
        StartCase {
            before: Before::Started,
            ..case("running: a re-delivered start", Started)
        },
        StartCase {
            before: Before::Started,
            status: Halted,
            ..case("running when the halt came", Started)
        },
        StartCase {
            before: Before::Done,
            ..case("done", NotOnOffer)
        },
    ];
    let d = enrolled(store, "a").await;
    for (i, c) in cases.iter().enumerate() {
        let dep = deployment(&format!("dep{i}"), &d.tenant_id);
        let mut j = job(&format!("j{i}"), &dep, &d.id);
        j.released_at = c.released.then_some(100);
        j.not_before = c.not_before;
        store
            .create_deployment(
                &dep,
                std::slice::from_ref(&j),
                &[pkg(&j, "p", PackageState::Pending)],
            )
            .await
            .expect("create");
        if let Some(end) = c.window_end {
            assert!(store
                .release_job_in_window(&j.id, 100, "{}", end)
                .await
                .expect("db"));
        }
        match c.before {
            Before::Queued => {}
            Before::Started => assert_eq!(
                store.mark_job_started(&j.id, &d.id, 150).await.expect("db"),
                Started
            ),
            Before::Done => assert_eq!(
                store
                    .store_job_result(&j.id, &d.id, &outcome_of(&j, 200, vec![]))
                    .await
                    .expect("db"),
                ResultStored::Stored
            ),
        }
        if c.status != Running {
            let moved = Deployment {
                status: c.status,
                ..dep.clone()
            };
            assert!(store
                .transition_deployment(&moved, &[Running], None, None)
                .await
                .expect("db"));
        }
        let before = store.job(&j.id).await.expect("db").expect("job");
        let got = store
            .mark_job_started(&j.id, &d.id, c.now)
            .await
            .expect("db");
        assert_eq!(got, c.want, "{}", c.what);
        let after = store.job(&j.id).await.expect("db").expect("job");
        if got == Started {
            assert_eq!(
                (after.status, after.started_at),
                (JobStatus::Running, Some(c.now)),
                "{}",
                c.what
            );
        } else {
            assert_eq!(after, before, "{}: a refused start changes nothing", c.what);
        }
    }
    assert_eq!(
        store
            .mark_job_started("j0", "someone-else", 1_000)
            .await
            .expect("db"),
        UnknownJob,
        "another device's job"
    );
    assert_eq!(
        store
            .mark_job_started("nothing", &d.id, 1_000)
            .await
            .expect("db"),
        UnknownJob
    );
}

/// A job released for a window that closed before it started is taken back, with why on its
/// packages and in their history; a started job is never taken back.
pub(crate) async fn a_job_past_its_window_is_taken_back(store: &dyn Store) {
    let (a, b) = (enrolled(store, "a").await, enrolled(store, "b").await);
    let dep = deployment("dep1", &a.tenant_id);
    let mut j1 = job("j1", &dep, &a.id);
    j1.released_at = None;
    let mut j2 = job("j2", &dep, &b.id);
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
    for j in ["j1", "j2"] {
        assert!(store
            .release_job_in_window(j, 100, "{}", 1_000)
            .await
            .expect("db"));
    }
    assert_eq!(
        store.mark_job_started("j2", &b.id, 500).await.expect("db"),
        StartOutcome::Started
    );
    assert!(store
        .jobs_past_window("dep1", 999)
        .await
        .expect("db")
        .is_empty());
    let past = store.jobs_past_window("dep1", 1_000).await.expect("db");
    assert_eq!(
        past.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(),
        ["j1"],
        "not the started one"
    );
    for j in ["j1", "j2"] {
        store
            .unrelease_job(
                j,
                1_000,
                PackageState::Failed,
                FailureClass::WindowMissed,
                "the window closed before it started",
            )
            .await
            .expect("unrelease");
    }
    let j1 = store.job("j1").await.expect("db").expect("j1");
    assert_eq!((j1.released_at, j1.window_end), (None, None));
    assert_eq!(
        store
            .mark_job_started("j1", &a.id, 1_000)
            .await
            .expect("db"),
        StartOutcome::NotOnOffer
    );
    let rows = store.packages_of_deployment("dep1").await.expect("rows");
    assert_eq!(
        rows.iter()
            .map(|r| (r.job_id.as_str(), r.state, r.class, r.evidence.clone()))
            .collect::<Vec<_>>(),
        vec![
            (
                "j1",
                PackageState::Failed,
                Some(FailureClass::WindowMissed),
                vec!["the window closed before it started".to_owned()]
            ),
            ("j2", PackageState::Pending, None, vec![]),
        ]
    );
    let history = store.attempts_of_device(&a.id, 10).await.expect("history");
    assert_eq!(
        history
            .iter()
            .map(|h| (h.state, h.class, h.action.as_str(), h.at))
            .collect::<Vec<_>>(),
        vec![(
            PackageState::Failed,
            Some(FailureClass::WindowMissed),
            "none: window closed",
            1_000
        )]
    );
    assert!(store
        .attempts_of_device(&b.id, 10)
        .await
        .expect("history")
        .is_empty());
}
