//! Conformance checks of the daily history and the open-exposure figures (SLA in SQL).

use super::*;

const DAY: i64 = 86_400_000;
/// 2001-09-09T01:46:40Z.
const T0: i64 = 1_000_000_000_000;

fn sla() -> SlaDays {
    SlaDays {
        critical: Some(15),
        high: Some(30),
        medium: Some(90),
        low: Some(180),
        none: None,
        unknown: Some(90),
        kev: 14,
        honor_kev_due_date: true,
    }
}

fn exp(d: &Device, cve: &str, rating: &str, kev: Option<&str>) -> ExposureRecord {
    ExposureRecord {
        device_id: d.id.clone(),
        tenant_id: d.tenant_id.clone(),
        cve: cve.into(),
        package: "openssl".into(),
        installed_version: "3.0.1".into(),
        fix_state: "fixed".into(),
        rating: rating.into(),
        kev: kev.is_some(),
        kev_due: kev.filter(|k| !k.is_empty()).map(str::to_owned),
        priority: 1.0,
        ..Default::default()
    }
}

pub(crate) async fn history_and_exposure_stats(store: &dyn Store) {
    let a = enrolled(store, "a").await;
    let other = store.ensure_tenant("other", 0).await.expect("tenant");
    let mut b = enrolled(store, "b").await;
    b.tenant_id = other.id.clone();
    let open = vec![
        exp(&a, "CVE-1", "critical", None),
        // KEV: CISA's date (end of 2001-09-14, 5 days after first seen) is the deadline.
        exp(&a, "CVE-3", "low", Some("2001-09-14")),
        exp(&a, "CVE-4", "none", None),
        exp(&a, "CVE-5", "unknown", None),
        // KEV with a due date before first seen: 14 days from first seen.
        exp(&a, "CVE-6", "high", Some("2001-01-01")),
        exp(&a, "CVE-2", "high", None),
    ];
    store
        .sync_device_exposures(&a.id, T0, &open)
        .await
        .expect("sync a");
    // Device b's exposure is stored under its own tenant (the record carries it).
    store
        .sync_device_exposures(&b.id, T0, &[exp(&b, "CVE-9", "critical", None)])
        .await
        .expect("sync b");
    let scope_a: TenantScope = Some(vec![a.tenant_id.clone()]);
    let at = |days: i64| T0 + days * DAY;
    let stats = store
        .exposure_stats(&scope_a, at(20), &sla())
        .await
        .expect("stats");
    assert_eq!(
        stats,
        vec![ExposureStats {
            tenant_id: a.tenant_id.clone(),
            open: 6,
            critical: 1,
            high: 2,
            medium: 0,
            low: 1,
            other: 2,
            kev: 2,
            // CVE-1 (15 d), CVE-3 (CISA date), CVE-6 (14 d); not CVE-2 (30 d), CVE-4 (none),
            // CVE-5 (90 d).
            sla_breaches: 3,
            devices_breaching: 1,
        }]
    );
    let early = store
        .exposure_stats(&scope_a, at(10), &sla())
        .await
        .expect("stats");
    assert_eq!(early[0].sla_breaches, 1, "only CISA's date has passed");
    let no_kev_date = SlaDays {
        honor_kev_due_date: false,
        ..sla()
    };
    let early = store
        .exposure_stats(&scope_a, at(10), &no_kev_date)
        .await
        .expect("stats");
    assert_eq!(early[0].sla_breaches, 0, "14 days for every KEV entry");
    // The list's filters: KEV only, ratings.
    let listed = |kev_only: bool, ratings: Option<&[&str]>| {
        let f = ExposureFilter {
            kev_only,
            ratings: ratings.map(|r| r.iter().map(|x| x.to_string()).collect()),
            ..Default::default()
        };
        async move {
            let mut cves: Vec<String> = store
                .list_exposures(&f)
                .await
                .expect("list")
                .into_iter()
                .map(|e| e.cve)
                .collect();
            cves.sort();
            cves
        }
    };
    assert_eq!(listed(true, None).await, vec!["CVE-3", "CVE-6"]);
    assert_eq!(
        listed(false, Some(&["critical", "high"])).await,
        vec!["CVE-1", "CVE-2", "CVE-6", "CVE-9"]
    );
    assert_eq!(listed(true, Some(&["high"])).await, vec!["CVE-6"]);
    let all = store
        .exposure_stats(&None, at(20), &sla())
        .await
        .expect("all");
    assert_eq!(all.len(), 2);
    // Closed exposures are not counted.
    store
        .sync_device_exposures(&a.id, at(21), &open[..1])
        .await
        .expect("close");
    let later = store
        .exposure_stats(&scope_a, at(22), &sla())
        .await
        .expect("stats");
    assert_eq!((later[0].open, later[0].sla_breaches), (1, 1));

    // Snapshots: once per tenant and day, the first one stays.
    let snap = |day: &str, devices: i64| Snapshot {
        tenant_id: a.tenant_id.clone(),
        day: day.into(),
        taken_at: T0,
        devices,
        fully_patched: 1,
        exposures_open: 6,
        critical: 1,
        sla_breaches: 3,
        failures: BTreeMap::from([("lock_held".to_owned(), 2)]),
        ..Default::default()
    };
    assert!(store
        .put_snapshot(&snap("2001-09-09", 3))
        .await
        .expect("put"));
    assert!(!store
        .put_snapshot(&snap("2001-09-09", 9))
        .await
        .expect("again"));
    assert!(store
        .put_snapshot(&snap("2001-09-10", 4))
        .await
        .expect("next"));
    let mut b_snap = snap("2001-09-10", 7);
    b_snap.tenant_id = other.id.clone();
    assert!(store.put_snapshot(&b_snap).await.expect("b"));
    assert_eq!(
        store
            .snapshot_tenants("2001-09-10")
            .await
            .expect("tenants")
            .len(),
        2
    );
    let got = store
        .snapshots(&scope_a, "2001-09-01", "2001-09-30")
        .await
        .expect("list");
    assert_eq!(got, vec![snap("2001-09-09", 3), snap("2001-09-10", 4)]);
    let one = store
        .snapshots(&None, "2001-09-10", "2001-09-10")
        .await
        .expect("list");
    assert_eq!(one.len(), 2);
    assert!(store
        .failed_attempts_by_class(&a.tenant_id, 0, i64::MAX)
        .await
        .expect("attempts")
        .is_empty());
}
