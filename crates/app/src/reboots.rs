//! Reboots after installs: the deployment's policy (`never`, `when_required`, `always`), the
//! loop guard applied each time a job is handed to a device (at most K reboots of a device in
//! 24 h; never again for packages a reboot did not satisfy), and the come-back budget (a device
//! told to reboot must report a new boot id in time, else its packages are flagged).
//!
//! The decisions are core's (`core::reboot`); this module keeps one [`RebootRecord`] per job:
//! `offered` (with the mode sent and why the guard withheld a reboot), then `rebooting` (the
//! result makes the agent reboot: same rule as the agent, `reboot_after_install`) or `none`,
//! then `back`, `loop` or `late`.

use crate::plan::Plan;
use crate::App;
use patchwarden_core::reboot::{
    guard, reboot_after_install, still_requiring, GuardDecision, GuardInput, Mode,
};
use patchwarden_core::{FailureClass, PackageState, RebootStatus};
use patchwarden_store::{Attempt, Device, Job, JobPackage, RebootRecord, StoreError};
use patchwarden_wire::agent::{Inventory, JobResult, Operation};
use patchwarden_wire::api::RebootRequest;

/// Loop guard default: reboots of one device per 24 hours.
pub const DEFAULT_MAX_PER_DAY: u32 = 2;
/// Come-back budget default.
pub const DEFAULT_COME_BACK_SECS: u64 = 900;
const DAY_MS: i64 = 24 * 3600 * 1000;

/// "when_required (at most 2 a day, back within 900 s)" for views; `None` for never.
pub fn describe(r: Option<&RebootRequest>) -> Option<String> {
    let r = r?;
    let mode = r.mode;
    (mode != Mode::Never).then(|| {
        format!(
            "{} (at most {} a day, back within {} s)",
            mode.as_str(),
            r.max_per_day.unwrap_or(DEFAULT_MAX_PER_DAY),
            r.come_back_secs.unwrap_or(DEFAULT_COME_BACK_SECS)
        )
    })
}

async fn boot_id_of(state: &App, device_id: &str) -> Option<String> {
    let json = state.store.device_inventory_json(device_id).await.ok()??;
    let inv: Inventory = serde_json::from_str(&json).ok()?;
    (!inv.boot_id.is_empty()).then_some(inv.boot_id)
}

/// The payload to hand `job` to `device`: the install with the deployment's reboot mode, or
/// `never` when the loop guard says no. Records the offer. Other payloads pass unchanged.
pub async fn payload_for_offer(
    state: &App,
    device: &Device,
    job: &Job,
) -> Result<String, StoreError> {
    let Ok(mut op) = serde_json::from_str::<Operation>(&job.payload) else {
        return Ok(job.payload.clone());
    };
    let Operation::Install {
        packages, reboot, ..
    } = &mut op
    else {
        return Ok(job.payload.clone());
    };
    let Some(d) = state.store.deployment(&job.deployment_id).await? else {
        return Ok(job.payload.clone());
    };
    let Some(req) = Plan::of(&d)?.reboot else {
        return Ok(job.payload.clone());
    };
    let wanted = req.mode;
    if wanted == Mode::Never {
        return Ok(job.payload.clone());
    }
    let now = state.clock.now_ms();
    // A retry of a job (a later attempt): one reboot per job, whatever the attempt.
    if let Some(mut earlier) = state.store.reboot_of_job(&job.id).await? {
        if earlier.was_requested() {
            *reboot = Mode::Never;
            return Ok(serde_json::to_string(&op).unwrap_or_else(|_| job.payload.clone()));
        }
        if earlier.status == RebootStatus::None {
            earlier.status = RebootStatus::Offered;
            earlier.updated_at = now;
            state.store.update_reboot(&earlier).await?;
        }
    }
    let history = state.store.reboots_of_device(&device.id).await?;
    let reboots_last_day = history
        .iter()
        .filter(|r| r.job_id != job.id && r.was_requested())
        .filter(|r| r.requested_at.is_some_and(|at| at > now - DAY_MS))
        .count() as u32;
    let looped: Vec<String> = history
        .iter()
        .filter(|r| r.status == RebootStatus::Loop)
        .flat_map(|r| r.packages.iter().cloned())
        .collect();
    let names: Vec<String> = packages.iter().map(|p| p.name.clone()).collect();
    let decision = guard(GuardInput {
        mode: wanted,
        reboots_last_day,
        max_per_day: req.max_per_day.unwrap_or(DEFAULT_MAX_PER_DAY),
        looped: &looped,
        packages: &names,
    });
    let (mode, withheld) = match decision {
        GuardDecision::Allow(m) => (m, None),
        GuardDecision::Withhold(why) => {
            tracing::warn!(device = %device.id, job = %job.id, reason = %why, "reboot withheld");
            (Mode::Never, Some(why))
        }
    };
    state
        .store
        .put_reboot_offer(&RebootRecord {
            job_id: job.id.clone(),
            tenant_id: job.tenant_id.clone(),
            deployment_id: job.deployment_id.clone(),
            device_id: device.id.clone(),
            mode,
            withheld,
            status: RebootStatus::Offered,
            packages: vec![],
            boot_id_before: boot_id_of(state, &device.id).await,
            requested_at: None,
            deadline: None,
            came_back_at: None,
            boot_id_after: None,
            updated_at: now,
        })
        .await?;
    *reboot = mode;
    Ok(serde_json::to_string(&op).unwrap_or_else(|_| job.payload.clone()))
}

fn parse_time_ms(s: &str) -> Option<i64> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

/// Appends a line to these package rows' evidence (and their attempt history), optionally
/// changing their class.
async fn annotate(
    state: &App,
    rows: &[JobPackage],
    line: &str,
    class: Option<FailureClass>,
    action: &str,
) -> Result<(), StoreError> {
    let now = state.clock.now_ms();
    for row in rows {
        if row.evidence.iter().any(|e| e == line) {
            continue;
        }
        let mut updated = row.clone();
        if let Some(c) = class {
            updated.class = Some(c);
        }
        updated.evidence.push(line.to_owned());
        let attempt = Attempt {
            id: 0,
            tenant_id: row.tenant_id.clone(),
            device_id: row.device_id.clone(),
            deployment_id: row.deployment_id.clone(),
            job_id: row.job_id.clone(),
            package: row.package.clone(),
            at: now,
            state: updated.state,
            class: updated.class,
            installed_version: updated.installed_version.clone(),
            evidence: vec![line.to_owned()],
            action: action.to_owned(),
            exit_code: None,
        };
        state
            .store
            .update_package_outcome(&updated, &attempt)
            .await?;
    }
    Ok(())
}

async fn job_rows(state: &App, job: &Job) -> Result<Vec<JobPackage>, StoreError> {
    Ok(state
        .store
        .packages_of_deployment(&job.deployment_id)
        .await?
        .into_iter()
        .filter(|p| p.job_id == job.id)
        .collect())
}

/// After a job's result is stored: does the agent reboot now (the agent's own rule, on the
/// mode it was sent)? Then the come-back clock starts; else a withheld reboot is explained on
/// the packages left `pending_reboot`.
pub async fn after_result(state: &App, job_id: &str, result: &JobResult) -> Result<(), StoreError> {
    let Some(mut rec) = state.store.reboot_of_job(job_id).await? else {
        return Ok(());
    };
    if rec.status != RebootStatus::Offered {
        return Ok(());
    }
    let Some(job) = state.store.job(job_id).await? else {
        return Ok(());
    };
    let now = state.clock.now_ms();
    let mode = rec.mode;
    let finished = parse_time_ms(&result.finished_at).unwrap_or(now);
    let window_open = job.window_end.is_none_or(|end| finished < end);
    let outcomes: Vec<(PackageState, bool)> = result
        .packages
        .iter()
        .map(|p| {
            let changed = p.installed_version.is_some() && p.installed_version != p.from_version;
            (p.state, changed)
        })
        .collect();
    let rows = job_rows(state, &job).await?;
    let pending: Vec<JobPackage> = rows
        .iter()
        .filter(|r| r.state == PackageState::PendingReboot)
        .cloned()
        .collect();
    if reboot_after_install(mode, &outcomes, window_open) {
        let d = state.store.deployment(&job.deployment_id).await?;
        let budget = d
            .map(|d| Plan::of(&d))
            .transpose()?
            .and_then(|p| p.reboot)
            .and_then(|r| r.come_back_secs)
            .unwrap_or(DEFAULT_COME_BACK_SECS);
        let deadline = now + budget as i64 * 1000;
        rec.status = RebootStatus::Rebooting;
        rec.packages = result
            .packages
            .iter()
            .filter(|p| {
                p.state == PackageState::PendingReboot
                    || (mode == Mode::Always && p.state == PackageState::Verified)
            })
            .map(|p| p.package.clone())
            .collect();
        if let Some(b) = &result.boot_id {
            rec.boot_id_before = Some(b.clone());
        }
        rec.requested_at = Some(now);
        rec.deadline = Some(deadline);
        rec.updated_at = now;
        state.store.update_reboot(&rec).await?;
        tracing::info!(device = %job.device_id, job = %job.id, mode = mode.as_str(), deadline = %crate::rfc3339(deadline), "device reboots after the install");
        let line = format!(
            "the agent reboots the device after the install (reboot policy {}); it must be back by {} ({budget} s)",
            mode.as_str(),
            crate::rfc3339(deadline)
        );
        // On the packages that caused it (with `always`, the verified ones too).
        let caused: Vec<JobPackage> = rows
            .iter()
            .filter(|r| rec.packages.contains(&r.package))
            .cloned()
            .collect();
        annotate(state, &caused, &line, None, "reboot requested").await?;
    } else {
        rec.status = RebootStatus::None;
        rec.updated_at = now;
        state.store.update_reboot(&rec).await?;
        let why = match &rec.withheld {
            Some(w) => Some(w.clone()),
            None if mode != Mode::Never && !window_open && !pending.is_empty() => Some(
                "not rebooted: the maintenance window had ended when the install finished"
                    .to_owned(),
            ),
            None => None,
        };
        if let Some(why) = why.filter(|_| !pending.is_empty()) {
            annotate(state, &pending, &why, None, "reboot withheld").await?;
        }
    }
    Ok(())
}

/// When an inventory arrives (before pending reboots are confirmed): a device that was told to
/// reboot and reports another boot id is back; if it still requires a reboot for the packages
/// that caused it, the reboot is a loop and the device is never rebooted for them again.
pub async fn on_inventory(state: &App, device: &Device, inv: &Inventory) -> Result<(), StoreError> {
    let now = state.clock.now_ms();
    for mut rec in state.store.reboots_of_device(&device.id).await? {
        if rec.status != RebootStatus::Rebooting && rec.status != RebootStatus::Late {
            continue;
        }
        if inv.boot_id.is_empty() || rec.boot_id_before.as_deref() == Some(inv.boot_id.as_str()) {
            continue;
        }
        let still = still_requiring(
            inv.reboot_required,
            &inv.reboot_required_packages,
            &rec.packages,
        );
        rec.came_back_at = Some(now);
        rec.boot_id_after = Some(inv.boot_id.clone());
        rec.updated_at = now;
        if still.is_empty() {
            rec.status = RebootStatus::Back;
            tracing::info!(device = %device.id, job = %rec.job_id, "device back after its reboot");
        } else {
            tracing::warn!(device = %device.id, job = %rec.job_id, packages = ?still, "device back after its reboot, still requiring one: reboot loop, not rebooted again for these packages");
            rec.status = RebootStatus::Loop;
            rec.packages = still;
        }
        state.store.update_reboot(&rec).await?;
    }
    Ok(())
}

/// Devices told to reboot that have not reported a new boot id within the come-back budget:
/// their packages are flagged (`device_offline` on those still `pending_reboot`, evidence on
/// all). Run periodically by the server.
pub async fn check_overdue(state: &App) -> Result<u32, StoreError> {
    let now = state.clock.now_ms();
    let mut flagged = 0;
    for mut rec in state.store.overdue_reboots(now).await? {
        rec.status = RebootStatus::Late;
        rec.updated_at = now;
        state.store.update_reboot(&rec).await?;
        flagged += 1;
        let Some(job) = state.store.job(&rec.job_id).await? else {
            continue;
        };
        let budget_secs = match (rec.requested_at, rec.deadline) {
            (Some(a), Some(b)) => (b - a) / 1000,
            _ => DEFAULT_COME_BACK_SECS as i64,
        };
        let line = format!(
            "the device was told to reboot at {} and did not come back within {budget_secs} s (no check-in with a new boot id)",
            crate::rfc3339(rec.requested_at.unwrap_or(now))
        );
        tracing::warn!(device = %rec.device_id, job = %rec.job_id, "device did not come back from its reboot in time");
        let rows = job_rows(state, &job).await?;
        let pending: Vec<JobPackage> = rows
            .iter()
            .filter(|r| r.state == PackageState::PendingReboot)
            .cloned()
            .collect();
        annotate(
            state,
            &pending,
            &line,
            Some(FailureClass::DeviceOffline),
            "reboot come-back budget exceeded",
        )
        .await?;
        let others: Vec<JobPackage> = rows
            .iter()
            .filter(|r| rec.packages.contains(&r.package))
            .filter(|r| r.state != PackageState::PendingReboot)
            .cloned()
            .collect();
        annotate(
            state,
            &others,
            &line,
            None,
            "reboot come-back budget exceeded",
        )
        .await?;
    }
    Ok(flagged)
}

/// [`check_overdue`] for the periodic ticker: errors are logged.
pub async fn tick(state: &App) {
    if let Err(e) = check_overdue(state).await {
        tracing::error!(error = %e, "checking reboot come-back budgets failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::validate_reboot as validate;

    #[test]
    fn reboot_request_bounds() {
        let r = |k: Option<u32>, s: Option<u64>| RebootRequest {
            mode: Mode::WhenRequired,
            max_per_day: k,
            come_back_secs: s,
        };
        assert!(validate(&r(None, None)).is_ok());
        assert!(validate(&r(Some(1), Some(60))).is_ok());
        assert!(validate(&r(Some(10), Some(86_400))).is_ok());
        for bad in [r(Some(0), None), r(Some(11), None)] {
            assert!(validate(&bad)
                .err()
                .unwrap_or_default()
                .contains("max_per_day"));
        }
        for bad in [r(None, Some(59)), r(None, Some(86_401))] {
            assert!(validate(&bad)
                .err()
                .unwrap_or_default()
                .contains("come_back_secs"));
        }
        assert_eq!(
            describe(Some(&r(None, None))).as_deref(),
            Some("when_required (at most 2 a day, back within 900 s)")
        );
        assert_eq!(
            describe(Some(&RebootRequest::default())),
            None,
            "never is not shown"
        );
    }
}
