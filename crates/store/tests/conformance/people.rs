//! Conformance checks of users, memberships, sessions and the dashboard read models.

use super::*;
use patchwarden_core::{DeviceStatus, Role};

fn user(id: &str, login: &str) -> User {
    User {
        id: id.into(),
        login: login.into(),
        password_hash: "$argon2id$fake".into(),
        created_at: 5,
        disabled: false,
    }
}

pub(crate) async fn users_memberships_and_sessions(store: &dyn Store) {
    let acme = store.ensure_tenant("acme", 0).await.expect("tenant");
    assert_eq!(store.count_users().await.expect("count"), 0);
    let roles = [
        Membership {
            user_id: "u1".into(),
            tenant_id: None,
            role: Role::Viewer,
        },
        Membership {
            user_id: "u1".into(),
            tenant_id: Some(acme.id.clone()),
            role: Role::Approver,
        },
    ];
    store
        .create_user(&user("u1", "ann@example.org"), &roles)
        .await
        .expect("create");
    let taken = store.create_user(&user("u2", "ann@example.org"), &[]).await;
    assert!(
        matches!(taken, Err(StoreError::Conflict(_))),
        "a login is unique: {taken:?}"
    );
    assert_eq!(store.count_users().await.expect("count"), 1);
    let got = store
        .user_by_login("ann@example.org")
        .await
        .expect("by login")
        .expect("found");
    assert_eq!(got, user("u1", "ann@example.org"));
    assert_eq!(store.user("u1").await.expect("by id"), Some(got));
    assert_eq!(store.memberships_of("u1").await.expect("roles"), roles);
    assert!(store.set_user_disabled("u1", true).await.expect("disable"));
    assert!(store.user("u1").await.expect("u").expect("u").disabled);
    assert!(!store.set_user_disabled("nobody", true).await.expect("none"));

    let session = Session {
        id_hash: "h1".into(),
        user_id: "u1".into(),
        created_at: 100,
        expires_at: 200,
        last_seen: 100,
        csrf_token: "c".into(),
    };
    store.insert_session(&session).await.expect("session");
    assert_eq!(
        store.live_session("h1", 150).await.expect("live"),
        Some(session.clone())
    );
    assert_eq!(store.live_session("h1", 200).await.expect("expired"), None);
    assert_eq!(
        store.live_session("nope", 150).await.expect("unknown"),
        None
    );
    store.touch_session("h1", 160).await.expect("touch");
    let touched = store.live_session("h1", 170).await.expect("live");
    assert_eq!(touched.map(|s| s.last_seen), Some(160));
    store.delete_session("h1").await.expect("delete");
    assert_eq!(store.live_session("h1", 150).await.expect("gone"), None);
    let mut old = session.clone();
    old.id_hash = "h2".into();
    store.insert_session(&old).await.expect("session");
    assert_eq!(store.delete_expired_sessions(300).await.expect("purge"), 1);
}

/// A device enrolled in `tenant`, checked in at `seen` with these pending updates.
async fn seeded(
    store: &dyn Store,
    id: &str,
    tenant: &str,
    seen: i64,
    pending: i64,
    security: i64,
    reboot: bool,
) -> Device {
    let t = store.ensure_tenant(tenant, 0).await.expect("tenant");
    store
        .insert_enroll_token(&enroll_token(&format!("tok-{id}"), &t.id, 1_000, None))
        .await
        .expect("token");
    let d = store
        .enroll_device(&format!("hash-tok-{id}"), 1, device(id))
        .await
        .expect("db")
        .expect("enrolled");
    let update = InventoryUpdate {
        hash: format!("inv-{id}"),
        json: "{}".into(),
        summary: DeviceInventorySummary {
            os: "Debian 12".into(),
            kernel: "6.1".into(),
            pending_updates: pending,
            security_updates: security,
            reboot_required: reboot,
        },
        hostname: format!("host-{id}"),
    };
    store
        .record_checkin(&d.id, seen, "1", Some(&update))
        .await
        .expect("checkin");
    d
}

pub(crate) async fn dashboard_figures_and_device_page(store: &dyn Store) {
    let now = 10 * 24 * 3600 * 1000;
    let a1 = seeded(store, "a1", "acme", now - 1_000, 0, 0, false).await;
    seeded(store, "a2", "acme", now - 3_600_000, 3, 1, true).await;
    seeded(store, "a3", "acme", now - 3 * 24 * 3600 * 1000, 2, 0, false).await;
    let b1 = seeded(store, "b1", "beta", now - 1_000, 5, 2, false).await;
    let acme = a1.tenant_id.clone();
    let beta = b1.tenant_id.clone();

    let stats = store.fleet_stats(&None, now).await.expect("stats");
    assert_eq!(stats.len(), 2);
    let s = stats.iter().find(|s| s.tenant_id == acme).expect("acme");
    assert_eq!(
        (
            s.devices,
            s.fully_patched,
            s.security_pending,
            s.reboot_pending
        ),
        (3, 1, 1, 1)
    );
    assert_eq!(
        (s.online, s.stale, s.offline, s.never_seen),
        (1, 1, 1, 0),
        "status by last check-in"
    );
    let only_beta = store
        .fleet_stats(&Some(vec![beta.clone()]), now)
        .await
        .expect("scoped");
    assert_eq!(only_beta.len(), 1);
    assert_eq!(only_beta[0].tenant_id, beta);
    assert!(store
        .fleet_stats(&Some(vec![]), now)
        .await
        .expect("empty scope")
        .is_empty());

    // A failure in beta only.
    let dep = deployment("dep-b", &beta);
    let j = job("jb", &dep, &b1.id);
    store
        .create_deployment(
            &dep,
            std::slice::from_ref(&j),
            &[pkg(&j, "tool", PackageState::Pending)],
        )
        .await
        .expect("deployment");
    let mut failed = pkg(&j, "tool", PackageState::Failed);
    failed.class = Some(FailureClass::LockHeld);
    store
        .store_job_result("jb", &b1.id, &outcome_of(&j, 1_000, vec![failed]))
        .await
        .expect("result");
    let counts = store.failure_counts(&None).await.expect("counts");
    assert_eq!(
        counts,
        vec![FailureCount {
            tenant_id: beta.clone(),
            class: FailureClass::LockHeld,
            count: 1
        }]
    );
    assert!(store
        .failure_counts(&Some(vec![acme.clone()]))
        .await
        .expect("acme counts")
        .is_empty());

    let page = |q: DevicePageQuery| async move { store.device_page(&q).await.expect("page") };
    let base = DevicePageQuery {
        limit: 50,
        now,
        ..Default::default()
    };
    let (all, total) = page(base.clone()).await;
    assert_eq!(total, 4);
    assert_eq!(
        all.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        vec!["a1", "a2", "a3", "b1"],
        "by hostname"
    );
    let (scoped, total) = page(DevicePageQuery {
        scope: Some(vec![acme.clone()]),
        ..base.clone()
    })
    .await;
    assert_eq!((scoped.len(), total), (3, 3), "scope");
    let (_, total) = page(DevicePageQuery {
        scope: Some(vec![acme.clone()]),
        tenant_id: Some(beta.clone()),
        ..base.clone()
    })
    .await;
    assert_eq!(total, 0, "a tenant filter never widens the scope");
    let (stale, _) = page(DevicePageQuery {
        status: Some(DeviceStatus::Stale),
        ..base.clone()
    })
    .await;
    assert_eq!(
        stale.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        vec!["a2"]
    );
    let (sec, _) = page(DevicePageQuery {
        patch: Some(PatchFilter::Security),
        sort: DeviceSort::SecurityUpdates,
        descending: true,
        ..base.clone()
    })
    .await;
    assert_eq!(
        sec.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        vec!["b1", "a2"]
    );
    let (found, total) = page(DevicePageQuery {
        search: Some("HOST-B".into()),
        ..base.clone()
    })
    .await;
    assert_eq!((found.len(), total), (1, 1), "search ignores case");
    let (second, total) = page(DevicePageQuery {
        limit: 2,
        offset: 2,
        ..base.clone()
    })
    .await;
    assert_eq!(total, 4, "the total ignores paging");
    assert_eq!(
        second.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        vec!["a3", "b1"]
    );

    // The server's rule: stale after 2 h, offline after 4 days (a2 is online, a3 stale).
    store.set_status_rule(StatusRule {
        stale_after_ms: Some(2 * 3600 * 1000),
        offline_after_ms: 4 * 24 * 3600 * 1000,
    });
    let stats = store
        .fleet_stats(&Some(vec![acme.clone()]), now)
        .await
        .expect("stats");
    assert_eq!(
        (stats[0].online, stats[0].stale, stats[0].offline),
        (2, 1, 0),
        "figures follow the configured rule"
    );
    let (stale, _) = page(DevicePageQuery {
        status: Some(DeviceStatus::Stale),
        ..base.clone()
    })
    .await;
    assert_eq!(
        stale.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        vec!["a3"],
        "the list filter too"
    );
    store.set_status_rule(StatusRule::default());
}
