//! Conformance checks of the reboot records (the loop guard's memory and the come-back budget).

use super::*;
use patchwarden_core::{RebootMode, RebootStatus};

fn offer(j: &Job, mode: RebootMode, at: i64) -> RebootRecord {
    RebootRecord {
        job_id: j.id.clone(),
        tenant_id: j.tenant_id.clone(),
        deployment_id: j.deployment_id.clone(),
        device_id: j.device_id.clone(),
        mode,
        withheld: None,
        status: RebootStatus::Offered,
        packages: vec![],
        boot_id_before: Some("boot-a".into()),
        requested_at: None,
        deadline: None,
        came_back_at: None,
        boot_id_after: None,
        updated_at: at,
    }
}

pub(crate) async fn reboots_offered_requested_and_overdue(store: &dyn Store) {
    let d = enrolled(store, "a").await;
    let dep = deployment("dep1", &d.tenant_id);
    let dep2 = deployment("dep2", &d.tenant_id);
    let j1 = job("j1", &dep, &d.id);
    let j2 = job("j2", &dep2, &d.id);
    store
        .create_deployment(
            &dep,
            std::slice::from_ref(&j1),
            &[pkg(&j1, "p", PackageState::Pending)],
        )
        .await
        .expect("create");
    store
        .create_deployment(
            &dep2,
            std::slice::from_ref(&j2),
            &[pkg(&j2, "q", PackageState::Pending)],
        )
        .await
        .expect("create 2");
    assert_eq!(store.reboot_of_job("j1").await.expect("db"), None);
    // An offer, offered again with another decision: the row follows while still `offered`.
    store
        .put_reboot_offer(&offer(&j1, RebootMode::WhenRequired, 100))
        .await
        .expect("offer");
    let mut again = offer(&j1, RebootMode::Never, 110);
    again.withheld = Some("loop guard".into());
    store.put_reboot_offer(&again).await.expect("offer again");
    let mut r = store.reboot_of_job("j1").await.expect("db").expect("row");
    assert_eq!(
        (r.mode, r.withheld.as_deref(), r.updated_at),
        (RebootMode::Never, Some("loop guard"), 110)
    );
    // The result makes the agent reboot: a deadline.
    r.mode = RebootMode::WhenRequired;
    r.withheld = None;
    r.status = RebootStatus::Rebooting;
    r.packages = vec!["p".into()];
    r.requested_at = Some(200);
    r.deadline = Some(1_100);
    r.updated_at = 200;
    store.update_reboot(&r).await.expect("update");
    assert!(r.was_requested());
    // A late re-offer does not undo it.
    store
        .put_reboot_offer(&offer(&j1, RebootMode::Never, 300))
        .await
        .expect("offer after");
    assert_eq!(
        store.reboot_of_job("j1").await.expect("db"),
        Some(r.clone())
    );
    store
        .put_reboot_offer(&offer(&j2, RebootMode::Always, 150))
        .await
        .expect("offer j2");
    assert!(store.overdue_reboots(1_099).await.expect("db").is_empty());
    let overdue = store.overdue_reboots(1_100).await.expect("db");
    assert_eq!(overdue.len(), 1);
    assert_eq!(overdue[0].job_id, "j1");
    // Newest request first; a row without a request sorts by its update time.
    let mine = store.reboots_of_device(&d.id).await.expect("db");
    let ids: Vec<&str> = mine.iter().map(|x| x.job_id.as_str()).collect();
    assert_eq!(ids, ["j1", "j2"]);
    assert!(store
        .reboots_of_device("nobody")
        .await
        .expect("db")
        .is_empty());
    // It came back still requiring one: a loop, no longer overdue.
    r.status = RebootStatus::Loop;
    r.came_back_at = Some(1_200);
    r.boot_id_after = Some("boot-b".into());
    store.update_reboot(&r).await.expect("loop");
    assert!(store.overdue_reboots(5_000).await.expect("db").is_empty());
    let back = store.reboot_of_job("j1").await.expect("db").expect("row");
    assert_eq!(back, r);
    assert!(back.was_requested());
    // An operator resets the device's failures: the loop is forgotten, the reboot still counts.
    assert_eq!(
        store.reset_reboot_loops(&d.id, 1_300).await.expect("reset"),
        1
    );
    assert_eq!(
        store.reset_reboot_loops(&d.id, 1_400).await.expect("again"),
        0
    );
    let reset = store.reboot_of_job("j1").await.expect("db").expect("row");
    assert_eq!(
        (reset.status, reset.updated_at),
        (RebootStatus::LoopReset, 1_300)
    );
    assert!(reset.was_requested());
}
