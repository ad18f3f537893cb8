//! Rollout control: releases a deployment's jobs ring by ring within the concurrency limit,
//! promotes the next ring when the gate holds, and halts by itself when the circuit breaker
//! trips. The decisions are core's pure functions (`core::rings`); this module reads the
//! state from the store, applies them, and records why.

use crate::inventory::zone as device_zone;
use crate::plan::{retry_policy, Plan};
use crate::{ts, App};
use jiff::SignedDuration;
use patchwarden_core::rings::{
    breaker_trips, concurrency_limit, gate_decision, GateDecision, RingTally,
};
use patchwarden_core::schedule::{current_or_next_window, upcoming_windows, WindowSpec};
use patchwarden_core::{DeploymentStatus, FailureClass, PackageState, RingState};
use patchwarden_store::{Deployment, JobStatus, StoreError};
use patchwarden_wire::api::RingView;
use std::collections::HashMap;

/// After a job's result: hands it back for another attempt when the plan's retry policy says
/// so (exponential backoff; every attempt stays in the history). Returns whether it did.
pub async fn retry_if_due(state: &App, job_id: &str) -> Result<bool, StoreError> {
    let Some(job) = state.store.job(job_id).await? else {
        return Ok(false);
    };
    let Some(d) = state.store.deployment(&job.deployment_id).await? else {
        return Ok(false);
    };
    let plan = Plan::of(&d)?;
    let Some(policy) = plan.retry.as_ref().and_then(|r| retry_policy(r).ok()) else {
        return Ok(false);
    };
    if job.status != JobStatus::Done || d.status != DeploymentStatus::Running {
        return Ok(false);
    }
    let failed: Vec<FailureClass> = state
        .store
        .packages_of_deployment(&d.id)
        .await?
        .into_iter()
        .filter(|p| p.job_id == job.id && p.state == PackageState::Failed)
        .filter_map(|p| p.class)
        .collect();
    let attempt = job.attempt.max(1) as u32;
    let Some(delay) = patchwarden_core::policy::retry_after(&policy, attempt, &failed) else {
        return Ok(false);
    };
    let now = state.clock.now_ms();
    let at = now + delay.as_millis() as i64;
    let requeued = state.store.requeue_job(&job.id, job.attempt, at).await?;
    if requeued {
        tracing::info!(deployment = %d.id, device = %job.device_id, attempt = attempt + 1, at = %crate::rfc3339(at), classes = ?failed, "retry scheduled");
    }
    Ok(requeued)
}

/// After a job's result: a device that refused to start the job because, by its own clock,
/// the window had closed (nothing run, `window_missed` on every package) is caught up in its
/// next window like any job a window closed on. The job goes back to the queue as a new
/// attempt (a new work id: the agent never runs one id twice), not offered before the
/// window's end; then `close_missed_windows` takes it back and the next window releases it.
pub async fn requeue_window_refusal(state: &App, job_id: &str) -> Result<bool, StoreError> {
    let Some(job) = state.store.job(job_id).await? else {
        return Ok(false);
    };
    let Some(end) = job.window_end else {
        return Ok(false);
    };
    if job.status != JobStatus::Done || !job.commands.is_empty() {
        return Ok(false);
    }
    let Some(d) = state.store.deployment(&job.deployment_id).await? else {
        return Ok(false);
    };
    if d.status != DeploymentStatus::Running {
        return Ok(false);
    }
    let packages: Vec<_> = state
        .store
        .packages_of_deployment(&d.id)
        .await?
        .into_iter()
        .filter(|p| p.job_id == job.id)
        .collect();
    let refused = !packages.is_empty()
        && packages.iter().all(|p| {
            p.state == PackageState::Failed && p.class == Some(FailureClass::WindowMissed)
        });
    if !refused {
        return Ok(false);
    }
    let at = end.max(state.clock.now_ms());
    let requeued = state.store.requeue_job(&job.id, job.attempt, at).await?;
    if requeued {
        tracing::warn!(deployment = %d.id, device = %job.device_id, window_end = %crate::rfc3339(end), "the device found the window closed; it catches up in its next window");
    }
    Ok(requeued)
}

/// Per-ring progress, from the jobs and their package rows.
pub async fn ring_views(
    state: &App,
    d: &Deployment,
) -> Result<(Vec<RingView>, Vec<RingTally>, Vec<Option<i64>>), StoreError> {
    let plan = Plan::of(d)?;
    let names = plan.ring_names();
    let jobs = state.store.jobs_of_deployment(&d.id).await?;
    let packages = state.store.packages_of_deployment(&d.id).await?;
    let mut outcomes: HashMap<&str, Vec<(PackageState, Option<FailureClass>)>> = HashMap::new();
    for p in &packages {
        outcomes
            .entry(p.job_id.as_str())
            .or_default()
            .push((p.state, p.class));
    }
    let mut views = Vec::new();
    let mut tallies = Vec::new();
    let mut finished = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let ring_jobs: Vec<_> = jobs.iter().filter(|j| j.ring == i as i64).collect();
        let mut tally = RingTally::default();
        for j in &ring_jobs {
            let o = outcomes.get(j.id.as_str()).cloned().unwrap_or_default();
            if j.status == JobStatus::Done {
                tally.add_device(&o);
            } else {
                tally.pending += 1;
            }
        }
        let done = ring_jobs
            .iter()
            .filter(|j| j.status == JobStatus::Done)
            .count() as u32;
        let released = ring_jobs.iter().filter(|j| j.released_at.is_some()).count() as u32;
        let total = ring_jobs.len() as u32;
        let all_done = done == total;
        finished.push(if all_done {
            ring_jobs
                .iter()
                .filter_map(|j| j.finished_at)
                .max()
                .or(Some(d.created_at))
        } else {
            None
        });
        views.push(RingView {
            name: name.clone(),
            devices: total,
            released,
            done,
            succeeded: tally.succeeded,
            failed_patch: tally.failed_patch,
            failed_other: tally.failed_other,
            state: if all_done && total > 0 && released == total {
                RingState::Done
            } else if released > 0 {
                RingState::Running
            } else {
                RingState::Waiting
            },
        });
        tallies.push(tally);
    }
    Ok((views, tallies, finished))
}

/// Moves one deployment forward. Serialised server-wide so that two ticks never release or
/// promote twice.
pub async fn tick(state: &App, deployment_id: &str) -> Result<(), StoreError> {
    let _guard = state.orchestrator_lock.lock().await;
    let Some(mut d) = state.store.deployment(deployment_id).await? else {
        return Ok(());
    };
    if d.status != DeploymentStatus::Running {
        return Ok(());
    }
    let now = state.clock.now_ms();
    let plan = Plan::of(&d)?;
    let rings = plan.ring_names();
    let (_, tallies, finished) = ring_views(state, &d).await?;

    // The breaker looks at every ring started so far; an operator's resume stands it down.
    if d.resumed_at.is_none() {
        if let Some(breaker) = plan.breaker() {
            let mut started = RingTally::default();
            for t in tallies.iter().take(d.current_ring as usize + 1) {
                started.succeeded += t.succeeded;
                started.failed_patch += t.failed_patch;
                started.failed_other += t.failed_other;
                started.pending += t.pending;
            }
            if let Some(reason) = breaker_trips(&breaker, &started) {
                return halt(state, &mut d, now, format!("circuit breaker: {reason}")).await;
            }
        }
    }

    preflight_ahead(state, &d, &plan, now).await?;
    let window = plan.window();
    if let Some(spec) = &window {
        close_missed_windows(state, &d, spec, now).await?;
    }
    loop {
        let ring = d.current_ring as usize;
        let jobs = state.store.jobs_of_deployment(&d.id).await?;
        let ring_jobs: Vec<_> = jobs.iter().filter(|j| j.ring == ring as i64).collect();
        // Release within the concurrency limit (and, with a window, only inside the device's).
        let active = ring_jobs
            .iter()
            .filter(|j| j.released_at.is_some() && j.status != JobStatus::Done)
            .count();
        let limit = concurrency_limit(plan.concurrency(), ring_jobs.len());
        let mut release: Vec<String> = Vec::new();
        let mut released_in_window = 0;
        let unreleased: Vec<_> = ring_jobs
            .iter()
            .filter(|j| j.released_at.is_none() && j.status == JobStatus::Queued)
            .collect();
        let (predicted_failures, offline_jobs) = if unreleased.is_empty() {
            Default::default()
        } else {
            release_context(state, &d, &plan).await?
        };
        for j in unreleased {
            if release.len() + released_in_window >= limit.saturating_sub(active) {
                break;
            }
            if let Some(why) = predicted_failures.get(&j.device_id) {
                let evidence = format!("excluded by the policy: pre-flight predicted {why}");
                if state
                    .store
                    .skip_job(&j.id, now, &evidence, "excluded after pre-flight")
                    .await?
                {
                    tracing::warn!(deployment = %d.id, device = %j.device_id, "excluded after a failed pre-flight");
                }
                continue;
            }
            // A device that was offline in its window catches up at once if the plan says so.
            let window = window.as_ref().filter(|_| !offline_jobs.contains(&j.id));
            match window {
                None => release.push(j.id.clone()),
                Some(spec) => {
                    let tz = device_zone(state, &j.device_id).await;
                    let Some(w) = current_or_next_window(spec, &tz, ts(now)) else {
                        continue;
                    };
                    if !w.contains(ts(now)) {
                        continue;
                    }
                    if plan.spread {
                        let budget = SignedDuration::from_secs(d.timeout_secs);
                        let offset = patchwarden_core::rings::spread_offset(
                            &j.device_id,
                            spec.duration,
                            budget,
                        );
                        if ts(now) < w.start.checked_add(offset).unwrap_or(w.start) {
                            continue;
                        }
                    }
                    let end = w.end.as_millisecond();
                    let payload = with_not_after(&j.payload, end);
                    // Conditional on the deployment still running: a halt that came in
                    // meanwhile releases nothing.
                    if state
                        .store
                        .release_job_in_window(&j.id, now, &payload, end)
                        .await?
                    {
                        state.notifier.wake(&j.device_id);
                        released_in_window += 1;
                    }
                }
            }
        }
        if !release.is_empty() {
            let released = state.store.release_jobs(&release, now).await?;
            if released == 0 {
                // Halted or cancelled meanwhile (the release is conditional on `running`).
                return Ok(());
            }
            for j in ring_jobs.iter().filter(|j| release.contains(&j.id)) {
                state.notifier.wake(&j.device_id);
            }
            tracing::info!(deployment = %d.id, ring = %rings.get(ring).cloned().unwrap_or_default(), released, "jobs released");
        }
        let Some(done_at) = finished
            .get(ring)
            .copied()
            .flatten()
            .filter(|_| ring_jobs.iter().all(|j| j.status == JobStatus::Done))
        else {
            return Ok(());
        };
        if ring + 1 >= rings.len() {
            d.status = DeploymentStatus::Completed;
            d.status_reason = None;
            d.updated_at = Some(now);
            if transition(state, &d, ring).await? {
                tracing::info!(deployment = %d.id, "deployment completed");
            }
            return Ok(());
        }
        let overridden = d.resumed_at.is_some_and(|r| r >= done_at);
        let decision = if overridden {
            GateDecision::Promote
        } else {
            gate_decision(&plan.gate(), &tallies[ring], Some(ts(done_at)), ts(now))
        };
        match decision {
            GateDecision::Promote => {
                d.current_ring += 1;
                d.status_reason = None;
                d.updated_at = Some(now);
                if !transition(state, &d, ring).await? {
                    return Ok(());
                }
                tracing::info!(deployment = %d.id, ring = %rings[ring + 1], "gate passed; next ring");
                continue;
            }
            GateDecision::Wait { reason, .. } => {
                let reason = format!("ring {}: {reason}", rings[ring]);
                if d.status_reason.as_deref() != Some(reason.as_str()) {
                    d.status_reason = Some(reason);
                    d.updated_at = Some(now);
                    transition(state, &d, ring).await?;
                }
                return Ok(());
            }
            GateDecision::Hold { reason } => {
                return halt(
                    state,
                    &mut d,
                    now,
                    format!("gate of ring {} not met: {reason}", rings[ring]),
                )
                .await;
            }
        }
    }
}

/// What the release loop needs beyond the jobs: devices a failed pre-flight excludes (with
/// the predicted class), and jobs that may catch up at once after a missed window.
async fn release_context(
    state: &App,
    d: &Deployment,
    plan: &Plan,
) -> Result<(HashMap<String, String>, std::collections::HashSet<String>), StoreError> {
    let mut excluded = HashMap::new();
    if plan.preflight.as_ref().is_some_and(|p| p.exclude_failing) {
        for p in state.store.predictions_of_deployment(&d.id).await? {
            if p.state == PackageState::Failed {
                excluded.entry(p.device_id).or_insert(format!(
                    "{} for {}",
                    p.class.map_or("a failure", FailureClass::as_str),
                    p.package
                ));
            }
        }
    }
    let mut offline = std::collections::HashSet::new();
    if plan.offline.as_deref() == Some("immediately") {
        for p in state.store.packages_of_deployment(&d.id).await? {
            if p.state == PackageState::DeviceOffline
                || p.class == Some(FailureClass::DeviceOffline)
            {
                offline.insert(p.job_id);
            }
        }
    }
    Ok((excluded, offline))
}

/// Pre-flight ahead of the window: each device not yet checked gets its pre-flight once its
/// next window is within the plan's lead time (at once without a window).
async fn preflight_ahead(
    state: &App,
    d: &Deployment,
    plan: &Plan,
    now: i64,
) -> Result<(), StoreError> {
    let Some(pf) = &plan.preflight else {
        return Ok(());
    };
    let lead = SignedDuration::from_secs(pf.lead_secs.unwrap_or(24 * 3600) as i64);
    let done: std::collections::HashSet<String> = state
        .store
        .preflight_jobs_of_deployment(&d.id)
        .await?
        .into_iter()
        .map(|p| p.device_id)
        .collect();
    let window = plan.window();
    let mut due = Vec::new();
    for j in state.store.jobs_of_deployment(&d.id).await? {
        if j.released_at.is_some() || j.status != JobStatus::Queued || done.contains(&j.device_id) {
            continue;
        }
        let soon = match &window {
            None => true,
            Some(spec) => {
                let tz = device_zone(state, &j.device_id).await;
                current_or_next_window(spec, &tz, ts(now))
                    .and_then(|w| w.start.checked_sub(lead).ok())
                    .is_some_and(|t| ts(now) >= t)
            }
        };
        if soon {
            due.push(j);
        }
    }
    if !due.is_empty() {
        match crate::preflight::queue(state, due).await {
            Ok((queued, _)) => {
                tracing::info!(deployment = %d.id, queued, "pre-flight queued ahead of the window")
            }
            Err(e) => tracing::error!(deployment = %d.id, error = ?e, "cannot queue pre-flight"),
        }
    }
    Ok(())
}

/// The payload to offer for a job: its `not_after` is the end of the window the job is
/// released in, and none when it is released outside any window (an offline device caught up
/// `immediately`), so that a window end left from an earlier release does not make the agent
/// refuse it. Unchanged bytes when nothing differs.
pub(crate) fn payload_for_window(payload: &str, window_end: Option<i64>) -> String {
    let Ok(mut op) = serde_json::from_str::<patchwarden_wire::agent::Operation>(payload) else {
        return payload.to_owned();
    };
    let want = window_end.map(crate::rfc3339);
    match &mut op {
        patchwarden_wire::agent::Operation::Install { not_after, .. } if *not_after != want => {
            *not_after = want;
            serde_json::to_string(&op).unwrap_or_else(|_| payload.to_owned())
        }
        _ => payload.to_owned(),
    }
}

/// The job's install operation with the window's end as its `not_after`.
fn with_not_after(payload: &str, end_ms: i64) -> String {
    let Ok(mut op) = serde_json::from_str::<patchwarden_wire::agent::Operation>(payload) else {
        return payload.to_owned();
    };
    if let patchwarden_wire::agent::Operation::Install { not_after, .. } = &mut op {
        *not_after = Some(crate::rfc3339(end_ms));
    }
    serde_json::to_string(&op).unwrap_or_else(|_| payload.to_owned())
}

/// Work that did not start inside its window waits for the next one. A device that did not
/// ask for work during the window is `device_offline`; one that was there but was not reached
/// (the window closed first, e.g. under a concurrency limit) is `window_missed`. Either way no
/// install starts after the window's end, and the next window catches the device up once.
async fn close_missed_windows(
    state: &App,
    d: &Deployment,
    spec: &WindowSpec,
    now: i64,
) -> Result<(), StoreError> {
    // Released but never started.
    for j in state.store.jobs_past_window(&d.id, now).await? {
        let end = j.window_end.unwrap_or(now);
        let seen = state
            .store
            .device(&j.device_id)
            .await?
            .and_then(|x| x.last_seen)
            .unwrap_or(0);
        let released = j.released_at.unwrap_or(end);
        let (st, class, why) = if seen <= released {
            (
                PackageState::DeviceOffline,
                FailureClass::DeviceOffline,
                format!("the device did not check in during its window (closed {}); it catches up in its next window", crate::rfc3339(end)),
            )
        } else {
            (
                PackageState::Failed,
                FailureClass::WindowMissed,
                format!("the maintenance window closed at {} before the install started; it is retried in the next window", crate::rfc3339(end)),
            )
        };
        tracing::warn!(deployment = %d.id, device = %j.device_id, class = class.as_str(), "window closed before the job started");
        state
            .store
            .unrelease_job(&j.id, now, st, class, &why)
            .await?;
    }
    // Never released: the device's first window since the deployment began has closed.
    let packages = state.store.packages_of_deployment(&d.id).await?;
    for j in state.store.jobs_of_deployment(&d.id).await? {
        if j.released_at.is_some() || j.status != JobStatus::Queued || j.ring != d.current_ring {
            continue;
        }
        if packages
            .iter()
            .any(|p| p.job_id == j.id && p.state != PackageState::Pending)
        {
            continue;
        }
        let tz = device_zone(state, &j.device_id).await;
        let Some(first) = upcoming_windows(spec, &tz, ts(d.created_at), 1)
            .into_iter()
            .next()
        else {
            continue;
        };
        let end = first.end.as_millisecond();
        if end <= now {
            let why = format!(
                "the maintenance window closed at {} before this device's turn; it is retried in the next window",
                crate::rfc3339(end)
            );
            state
                .store
                .unrelease_job(
                    &j.id,
                    now,
                    PackageState::Failed,
                    FailureClass::WindowMissed,
                    &why,
                )
                .await?;
        }
    }
    Ok(())
}

/// Writes the orchestrator's change to a running deployment, only if it is still running at
/// the ring the decision was made for (an operator's halt or cancel meanwhile wins).
async fn transition(state: &App, d: &Deployment, ring: usize) -> Result<bool, StoreError> {
    let written = state
        .store
        .transition_deployment(d, &[DeploymentStatus::Running], Some(ring as i64), None)
        .await?;
    if !written {
        tracing::info!(deployment = %d.id, "deployment changed meanwhile; the orchestrator's decision is dropped");
    }
    Ok(written)
}

async fn halt(state: &App, d: &mut Deployment, now: i64, reason: String) -> Result<(), StoreError> {
    let ring = d.current_ring as usize;
    d.status = DeploymentStatus::Halted;
    d.status_reason = Some(reason.clone());
    d.updated_at = Some(now);
    if transition(state, d, ring).await? {
        tracing::warn!(deployment = %d.id, reason = %reason, "deployment halted");
    }
    Ok(())
}

/// Ticks every active deployment; run periodically (soak timers, leases) by the server.
pub async fn tick_all(state: &App) {
    let active = match state.store.active_deployments().await {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(error = %e, "cannot list active deployments");
            return;
        }
    };
    for d in active {
        if let Err(e) = tick(state, &d.id).await {
            tracing::error!(deployment = %d.id, error = %e, "orchestrator tick failed");
        }
    }
}
