//! Conformance checks of the per-tenant SLA policies.

use super::*;

fn policy(tenant: &str, critical: Option<i64>, at: i64) -> SlaPolicyRecord {
    SlaPolicyRecord {
        tenant_id: tenant.into(),
        kev_days: 14,
        honor_kev_due_date: true,
        critical_days: critical,
        high_days: Some(30),
        medium_days: Some(90),
        low_days: Some(180),
        none_days: None,
        unknown_days: Some(90),
        updated_at: at,
        updated_by: "admin".into(),
    }
}

pub(crate) async fn sla_policies_per_tenant(store: &dyn Store) {
    let a = store.ensure_tenant("a", 0).await.expect("tenant a");
    let b = store.ensure_tenant("b", 0).await.expect("tenant b");
    assert_eq!(store.sla_policy(&a.id).await.expect("db"), None);
    assert!(store.list_sla_policies().await.expect("db").is_empty());

    let pa = policy(&a.id, Some(7), 10);
    store.put_sla_policy(&pa).await.expect("put a");
    assert_eq!(store.sla_policy(&a.id).await.expect("db"), Some(pa.clone()));
    assert_eq!(
        store.sla_policy(&b.id).await.expect("db"),
        None,
        "b is untouched"
    );

    // A second put replaces the whole policy (a rating without deadline stays NULL).
    let mut pa2 = policy(&a.id, None, 20);
    pa2.kev_days = 3;
    pa2.honor_kev_due_date = false;
    pa2.none_days = Some(365);
    pa2.updated_by = "ops-token".into();
    store.put_sla_policy(&pa2).await.expect("put a again");
    assert_eq!(
        store.sla_policy(&a.id).await.expect("db"),
        Some(pa2.clone())
    );

    let pb = policy(&b.id, Some(30), 30);
    store.put_sla_policy(&pb).await.expect("put b");
    assert_eq!(store.list_sla_policies().await.expect("db"), {
        let mut v = vec![pa2.clone(), pb.clone()];
        v.sort_by(|x, y| x.tenant_id.cmp(&y.tenant_id));
        v
    });

    // A policy belongs to an existing tenant.
    assert!(store
        .put_sla_policy(&policy("t_nobody", Some(1), 40))
        .await
        .is_err());

    assert!(store.delete_sla_policy(&a.id).await.expect("delete"));
    assert!(!store.delete_sla_policy(&a.id).await.expect("delete again"));
    assert_eq!(store.sla_policy(&a.id).await.expect("db"), None);
    assert_eq!(store.sla_policy(&b.id).await.expect("db"), Some(pb));
}
