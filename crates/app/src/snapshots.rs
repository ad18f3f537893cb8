//! The daily history behind the dashboard's charts and the compliance report: one snapshot
//! per tenant and UTC day, taken on a timer from the live figures (fleet, current failures,
//! open exposures with SLA breaches). Taking it twice on one day changes nothing.

use crate::App;
use patchwarden_store::{Snapshot, StoreError};
use std::collections::{BTreeMap, HashSet};

/// `YYYY-MM-DD` (UTC) of a time in unix milliseconds.
pub fn day_of(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        .date()
        .to_string()
}

/// Takes today's snapshot (by `state.clock`) of every tenant that has none yet; returns how
/// many were stored.
pub async fn take(state: &App) -> Result<usize, StoreError> {
    let now = state.clock.now_ms();
    let day = day_of(now);
    let store = &state.store;
    let tenants = store.list_tenants().await?;
    let done: HashSet<String> = store.snapshot_tenants(&day).await?.into_iter().collect();
    if tenants.iter().all(|t| done.contains(&t.id)) {
        return Ok(0);
    }
    let fleet = store.fleet_stats(&None, now).await?;
    let failures = store.failure_counts(&None).await?;
    // Each tenant's breaches by its own SLA policy.
    let exposures = crate::sla::exposure_stats(state, &None, now).await?;
    let mut stored = 0;
    for t in tenants.iter().filter(|t| !done.contains(&t.id)) {
        let f = fleet
            .iter()
            .find(|f| f.tenant_id == t.id)
            .cloned()
            .unwrap_or_default();
        let e = exposures
            .iter()
            .find(|e| e.tenant_id == t.id)
            .cloned()
            .unwrap_or_default();
        let by_class: BTreeMap<String, i64> = failures
            .iter()
            .filter(|c| c.tenant_id == t.id)
            .map(|c| (c.class.as_str().to_owned(), c.count))
            .collect();
        let snapshot = Snapshot {
            tenant_id: t.id.clone(),
            day: day.clone(),
            taken_at: now,
            devices: f.devices,
            fully_patched: f.fully_patched,
            security_pending: f.security_pending,
            reboot_pending: f.reboot_pending,
            stale: f.stale,
            exposures_open: e.open,
            critical: e.critical,
            high: e.high,
            medium: e.medium,
            low: e.low,
            other: e.other,
            kev_open: e.kev,
            sla_breaches: e.sla_breaches,
            failures: by_class,
        };
        if store.put_snapshot(&snapshot).await? {
            stored += 1;
        }
    }
    if stored > 0 {
        tracing::info!(day = %day, tenants = stored, "daily history snapshot taken");
    }
    Ok(stored)
}

/// Checks every `every` whether today's snapshots are there (cheap when they are).
pub async fn run_timer(state: App, every: std::time::Duration) {
    let mut interval = tokio::time::interval(every);
    loop {
        interval.tick().await;
        if let Err(e) = take(&state).await {
            tracing::warn!(error = %e, "daily history snapshot failed; retried at the next tick");
        }
    }
}
