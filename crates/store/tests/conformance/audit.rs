//! Conformance: the audit log (append-only, filtered by tenant and time, newest first) and
//! API token listing and revocation.

use patchwarden_core::{AuditOutcome, Role};
use patchwarden_store::*;

fn entry(at: i64, tenant: Option<&str>, action: &str, outcome: AuditOutcome) -> AuditEntry {
    AuditEntry {
        id: 0,
        at,
        tenant_id: tenant.map(str::to_owned),
        actor_kind: "token".into(),
        actor: "ci".into(),
        actor_id: Some("tok_1".into()),
        via: "api".into(),
        action: action.into(),
        object: Some("dep_1".into()),
        detail: Some("because".into()),
        outcome,
        status: if outcome == AuditOutcome::Ok {
            200
        } else {
            403
        },
        address: Some("192.0.2.7".into()),
    }
}

pub async fn audit_log_is_appended_and_filtered(store: &dyn Store) {
    let a = store.ensure_tenant("a", 1).await.expect("tenant").id;
    let b = store.ensure_tenant("b", 1).await.expect("tenant").id;
    let first = store
        .append_audit(&entry(1000, Some(&a), "POST approve", AuditOutcome::Ok))
        .await
        .expect("append");
    let second = store
        .append_audit(&entry(2000, Some(&b), "POST halt", AuditOutcome::Denied))
        .await
        .expect("append");
    store
        .append_audit(&entry(3000, None, "POST /api/v1/feeds", AuditOutcome::Ok))
        .await
        .expect("append");
    assert!(second > first, "ids increase");

    let all = store
        .list_audit(&AuditFilter::default())
        .await
        .expect("list");
    assert_eq!(
        all.iter().map(|e| e.at).collect::<Vec<_>>(),
        vec![3000, 2000, 1000],
        "newest first, provider level sees entries without a tenant too"
    );
    let mut expected = entry(1000, Some(&a), "POST approve", AuditOutcome::Ok);
    expected.id = first;
    assert_eq!(all[2], expected, "every field round-trips");

    let only_a = AuditFilter {
        tenants: Some(vec![a.clone()]),
        ..Default::default()
    };
    let rows = store.list_audit(&only_a).await.expect("list");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].tenant_id.as_deref(), Some(a.as_str()));
    let none = AuditFilter {
        tenants: Some(vec![]),
        ..Default::default()
    };
    assert!(store.list_audit(&none).await.expect("list").is_empty());

    let window = AuditFilter {
        from: Some(2000),
        to: Some(3000),
        ..Default::default()
    };
    let rows = store.list_audit(&window).await.expect("list");
    assert_eq!(rows.len(), 1, "from inclusive, to exclusive");
    assert_eq!(rows[0].outcome, AuditOutcome::Denied);
    let limited = AuditFilter {
        limit: Some(2),
        ..Default::default()
    };
    assert_eq!(store.list_audit(&limited).await.expect("list").len(), 2);
}

pub async fn api_tokens_are_listed_and_revoked(store: &dyn Store) {
    let a = store.ensure_tenant("a", 1).await.expect("tenant").id;
    let token = |id: &str, tenant: Option<&str>, at: i64| ApiToken {
        id: id.into(),
        tenant_id: tenant.map(str::to_owned),
        name: format!("name-{id}"),
        role: Role::Viewer,
        token_hash: format!("hash-{id}"),
        created_at: at,
        revoked_at: None,
    };
    store
        .insert_api_token(&token("t1", None, 1))
        .await
        .expect("insert");
    store
        .insert_api_token(&token("t2", Some(&a), 2))
        .await
        .expect("insert");
    let all = store.list_api_tokens(None).await.expect("list");
    assert_eq!(
        all.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
        ["t1", "t2"]
    );
    let of_a = store.list_api_tokens(Some(&a)).await.expect("list");
    assert_eq!(of_a, vec![token("t2", Some(&a), 2)]);
    assert!(store.revoke_api_token("t2", 50).await.expect("revoke"));
    assert!(
        !store.revoke_api_token("t2", 60).await.expect("revoke"),
        "already revoked"
    );
    assert!(!store.revoke_api_token("nope", 60).await.expect("revoke"));
    let t2 = store.api_token("t2").await.expect("get").expect("exists");
    assert_eq!(t2.revoked_at, Some(50), "the first revocation time is kept");
    assert_eq!(store.api_token("nope").await.expect("get"), None);
}
