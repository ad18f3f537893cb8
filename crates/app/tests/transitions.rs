//! Atomic transitions, driven through the application's use cases on a real SQLite file:
//! operators halt (or cancel) deployments while the orchestrator ticks them at the same
//! moment, on a multi-threaded runtime. A halt is never overwritten by a tick, and a halted
//! deployment starts nothing: no job of a later ring is released after it, no work is offered
//! and no start is accepted.

use patchwarden_app::actor::{authenticate_device, authenticate_operator};
use patchwarden_app::audit::AuditSlot;
use patchwarden_app::deployments::actions::{act, Action};
use patchwarden_app::records::{DeploymentStatus, Device, PackageState};
use patchwarden_app::{
    agent, deployments, enrollment, orchestrator, people, Actor, App, AppConfig, AppError,
    ManualClock,
};
use patchwarden_wire::agent::*;
use patchwarden_wire::api::*;
use patchwarden_wire::PROTOCOL_VERSION;
use std::sync::Arc;
use std::time::Duration;

struct Fixture {
    app: App,
    admin: Actor,
    clock: Arc<ManualClock>,
    _dir: tempfile::TempDir,
}

/// 2026-11-25T10:00:00Z: results below finish at 10:00:05.
const T0: i64 = 1_795_600_800_000;

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let clock = ManualClock::at(T0);
    let app = App::open(&url, AppConfig::default(), clock.clone())
        .await
        .expect("app");
    let mut token = String::new();
    people::bootstrap_admin_token(&app, |t| {
        token = t.to_owned();
        Ok(())
    })
    .await
    .expect("admin token");
    let admin = authenticate_operator(&app, Some(&token), AuditSlot::default())
        .await
        .expect("admin");
    Fixture {
        app,
        admin,
        clock,
        _dir: dir,
    }
}

fn inventory(hostname: &str, candidate: &str) -> Inventory {
    Inventory {
        hostname: hostname.into(),
        boot_id: "b1".into(),
        packages: vec![InstalledPackage {
            name: "pw-demo".into(),
            source: "pw-demo".into(),
            version: "1.0".into(),
            source_version: "1.0".into(),
            arch: "all".into(),
            status: "ii".into(),
        }],
        upgradable: vec![UpgradablePackage {
            name: "pw-demo".into(),
            installed_version: "1.0".into(),
            candidate_version: candidate.into(),
            arch: "all".into(),
            security: true,
            origins: vec![],
            held: false,
        }],
        ..Default::default()
    }
}

/// A device with pw-demo 1.0 installed and `candidate` available.
async fn device(f: &Fixture, hostname: &str, candidate: &str) -> Device {
    let token = enrollment::create_token(&f.app, &f.admin, &CreateEnrollTokenRequest::default())
        .await
        .expect("token");
    let enrolled = enrollment::enroll(
        &f.app,
        &EnrollRequest {
            token: token.token,
            hostname: hostname.into(),
            machine_id: hostname.into(),
            agent_version: "test".into(),
            protocol_version: PROTOCOL_VERSION,
        },
    )
    .await
    .expect("enroll");
    let device = authenticate_device(&f.app, &enrolled.device_secret)
        .await
        .expect("device");
    agent::checkin(
        &f.app,
        &device,
        &CheckinRequest {
            agent_version: "test".into(),
            protocol_version: PROTOCOL_VERSION,
            inventory_hash: format!("h-{hostname}"),
            inventory: Some(inventory(hostname, candidate)),
        },
    )
    .await
    .expect("checkin");
    device
}

/// The device's offered work, run to `verified`.
async fn install(f: &Fixture, d: &Device) {
    let work = agent::work(&f.app, d, Duration::ZERO).await.expect("work");
    let item = work.items.first().expect("work offered");
    agent::start(&f.app, d, &item.job_id).await.expect("start");
    let result = JobResult {
        started_at: "2026-11-25T10:00:00Z".into(),
        finished_at: "2026-11-25T10:00:05Z".into(),
        commands: vec!["apt-get install -y pw-demo=1.1".into()],
        exit_code: Some(0),
        duration_ms: 5000,
        output: String::new(),
        packages: vec![PackageResult {
            package: "pw-demo".into(),
            state: PackageState::Verified,
            class: None,
            from_version: Some("1.0".into()),
            to_version: Some("1.1".into()),
            installed_version: Some("1.1".into()),
            evidence: vec![],
        }],
        error: None,
        boot_id: None,
    };
    assert!(agent::result(&f.app, d, &item.job_id, &result)
        .await
        .expect("result"));
}

/// A two-ring deployment (the pilot device, then the rest) whose pilot is done and whose
/// gate's soak has just passed: the next tick promotes the second ring.
async fn pilot_done(f: &Fixture, pilot: &Device, rest: &[Device]) -> String {
    let mut targets = vec![pilot.id.clone()];
    targets.extend(rest.iter().map(|d| d.id.clone()));
    let mut req = CreateDeploymentRequest::new(
        None,
        TargetSpec {
            devices: targets,
            ..Default::default()
        },
        Selection::Security,
    );
    req.rings = vec![
        RingRequest {
            name: "pilot".into(),
            devices: vec![pilot.id.clone()],
            percent: None,
            rest: false,
        },
        RingRequest {
            name: "broad".into(),
            devices: vec![],
            percent: None,
            rest: true,
        },
    ];
    req.gate = Some(GateRequest {
        min_success_rate: 1.0,
        min_successes: 1,
        soak_secs: 60,
    });
    let created = deployments::create(&f.app, &f.admin, &req)
        .await
        .expect("deployment");
    install(f, pilot).await;
    let view = deployments::get(&f.app, &f.admin, &created.id)
        .await
        .expect("view");
    assert_eq!(view.status, DeploymentStatus::Running);
    assert_eq!(
        view.current_ring, 0,
        "the gate soaks: {:?}",
        view.status_reason
    );
    // The soak has passed: whoever ticks next promotes the broad ring.
    f.clock.set(T0 + 120_000);
    created.id
}

#[test]
fn concurrent_halts_and_ticks_never_lose_the_halt() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let f = fixture().await;
        let mut halts_won = 0;
        let mut ticks_won = 0;
        for round in 0..12 {
            f.clock.set(T0);
            let pilot = device(&f, &format!("pilot-{round}"), "1.1").await;
            let rest = vec![
                device(&f, &format!("broad-{round}-a"), "1.1").await,
                device(&f, &format!("broad-{round}-b"), "1.1").await,
            ];
            let id = pilot_done(&f, &pilot, &rest).await;
            let view = deployments::get(&f.app, &f.admin, &id).await.expect("view");
            // The halt races ticks that promote the broad ring and release its jobs.
            let (app, admin, dep) = (f.app.clone(), f.admin.clone(), id.clone());
            let halt = tokio::spawn(async move {
                act(&app, &admin, &dep, Action::Halt, Some("stop".into())).await
            });
            let (app2, dep2) = (f.app.clone(), id.clone());
            let ticks = tokio::spawn(async move {
                for _ in 0..3 {
                    orchestrator::tick(&app2, &dep2).await.expect("tick");
                }
            });
            let halted = halt.await.expect("join");
            ticks.await.expect("join");
            match &halted {
                Ok(_) => halts_won += 1,
                Err(AppError::Conflict { .. }) => ticks_won += 1,
                Err(e) => panic!("round {round}: halt failed: {e}"),
            }
            // More ticks afterwards change nothing once halted.
            for _ in 0..3 {
                orchestrator::tick(&f.app, &id).await.expect("tick");
            }
            let after = deployments::get(&f.app, &f.admin, &id).await.expect("view");
            if halted.is_ok() {
                assert_eq!(
                    after.status,
                    DeploymentStatus::Halted,
                    "round {round}: the halt was overwritten: {:?} (before: {:?})",
                    after.status_reason,
                    view.status
                );
                // A halted deployment starts nothing: released or not, no broad device gets
                // work, and a start sent anyway is refused.
                for d in &rest {
                    let work = agent::work(&f.app, d, Duration::ZERO).await.expect("work");
                    assert!(
                        work.items.is_empty(),
                        "round {round}: work offered while halted"
                    );
                    let job = after
                        .jobs
                        .iter()
                        .find(|j| j.device == d.id)
                        .expect("job of the broad ring");
                    let started = agent::start(&f.app, d, &job.id).await;
                    assert!(
                        matches!(started, Err(AppError::Conflict { .. })),
                        "round {round}: a start was accepted while halted: {started:?}"
                    );
                }
            } else {
                assert_ne!(after.status, DeploymentStatus::Halted, "round {round}");
            }
        }
        assert!(halts_won > 0, "no halt won in 12 rounds");
        eprintln!("halts won {halts_won}, lost to a concurrent change {ticks_won}");
    });
}

#[test]
fn a_halt_and_a_cancel_at_once_give_one_winner() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let f = fixture().await;
        for round in 0..8 {
            f.clock.set(T0);
            // A new version each round: a rejected one is never planned again.
            let d = device(&f, &format!("h-{round}"), &format!("2.{round}")).await;
            let mut req = CreateDeploymentRequest::new(
                None,
                TargetSpec {
                    devices: vec![d.id.clone()],
                    ..Default::default()
                },
                Selection::Security,
            );
            req.require_approval = true;
            let id = deployments::create(&f.app, &f.admin, &req)
                .await
                .expect("deployment")
                .id;
            // Approve and reject race: exactly one wins, the other is a conflict.
            let (a1, o1, i1) = (f.app.clone(), f.admin.clone(), id.clone());
            let (a2, o2, i2) = (f.app.clone(), f.admin.clone(), id.clone());
            let (approve, reject) = tokio::join!(
                tokio::spawn(async move { act(&a1, &o1, &i1, Action::Approve, None).await }),
                tokio::spawn(
                    async move { act(&a2, &o2, &i2, Action::Reject, Some("no".into())).await }
                )
            );
            let (approve, reject) = (approve.expect("join"), reject.expect("join"));
            assert!(
                approve.is_ok() != reject.is_ok(),
                "round {round}: exactly one of approve and reject wins: {approve:?} {reject:?}"
            );
            let after = deployments::get(&f.app, &f.admin, &id).await.expect("view");
            let expected = if approve.is_ok() {
                DeploymentStatus::Running
            } else {
                DeploymentStatus::Cancelled
            };
            assert_eq!(after.status, expected, "round {round}");
            if reject.is_ok() {
                // The reject closed the unstarted job in the same transaction.
                assert!(
                    after
                        .results
                        .iter()
                        .all(|r| r.state == PackageState::Skipped),
                    "round {round}: {:?}",
                    after.results
                );
                assert!(agent::work(&f.app, &d, Duration::ZERO)
                    .await
                    .expect("work")
                    .items
                    .is_empty());
            }
        }
    });
}
