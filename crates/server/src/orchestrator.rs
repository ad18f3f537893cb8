//! Rollout control: releases a deployment's jobs ring by ring within the concurrency limit,
//! promotes the next ring when the gate holds, and halts by itself when the circuit breaker
//! trips. The decisions are core's pure functions (`core::rings`); this module reads the
//! state from the store, applies them, and records why.

use crate::AppState;
use jiff::{SignedDuration, Timestamp};
use patchwarden_core::rings::{
    breaker_trips, concurrency_limit, gate_decision, Breaker, Concurrency, Gate, GateDecision,
    RingTally,
};
use patchwarden_core::schedule::{current_or_next_window, upcoming_windows, WindowSpec};
use patchwarden_core::{FailureClass, PackageState};
use patchwarden_store::{Deployment, JobStatus, StoreError};
use patchwarden_wire::api::{GateRequest, RingView};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// What a deployment was asked to do beyond its selection; stored as JSON with it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Plan {
    /// Ring names, in order; empty means one ring.
    #[serde(default)]
    pub rings: Vec<String>,
    #[serde(default)]
    pub gate: Option<GateRequest>,
    #[serde(default)]
    pub halt_failure_rate: Option<f64>,
    #[serde(default)]
    pub halt_min_finished: Option<u32>,
    #[serde(default)]
    pub concurrency: Option<String>,
    /// Recurring maintenance window (see `core::schedule`), evaluated in each device's zone.
    #[serde(default)]
    pub window: Option<String>,
    #[serde(default)]
    pub window_duration_secs: Option<u64>,
    /// Reboots after installs (mode, loop guard, come-back budget): `crate::reboots`.
    #[serde(default)]
    pub reboot: Option<patchwarden_wire::api::RebootRequest>,
    /// Expedited: released at once, whatever the window.
    #[serde(default)]
    pub expedite: bool,
    /// `immediately`: a device that missed its window catches up at its next check-in.
    #[serde(default)]
    pub offline: Option<String>,
    #[serde(default)]
    pub retry: Option<patchwarden_wire::api::RetryRequest>,
    #[serde(default)]
    pub preflight: Option<patchwarden_wire::api::PreflightPolicy>,
    /// Spread start times across the window by device.
    #[serde(default)]
    pub spread: bool,
    /// The policy that created it.
    #[serde(default)]
    pub policy: Option<String>,
}

impl Plan {
    pub fn ring_names(&self) -> Vec<String> {
        if self.rings.is_empty() {
            vec!["all".to_owned()]
        } else {
            self.rings.clone()
        }
    }

    fn gate(&self) -> Gate {
        let g = self.gate.clone().unwrap_or(GateRequest {
            min_success_rate: 0.95,
            min_successes: 1,
            soak_secs: 0,
        });
        Gate {
            min_success_rate: g.min_success_rate,
            min_successes: g.min_successes,
            soak: SignedDuration::from_secs(g.soak_secs as i64),
        }
    }

    fn breaker(&self) -> Option<Breaker> {
        self.halt_failure_rate.map(|rate| Breaker {
            max_failure_rate: rate,
            min_finished: self.halt_min_finished.unwrap_or(1),
        })
    }

    /// The maintenance window (none when expedited).
    pub fn window(&self) -> Option<WindowSpec> {
        if self.expedite {
            return None;
        }
        window_spec(self.window.as_deref(), self.window_duration_secs)
    }

    fn concurrency(&self) -> Concurrency {
        self.concurrency
            .as_deref()
            .and_then(|c| parse_concurrency(c).ok())
            .unwrap_or(Concurrency::Unlimited)
    }
}

/// A recurring window (`core::schedule`) of this length (default 4 h); none when absent or
/// not a valid form.
pub fn window_spec(window: Option<&str>, duration_secs: Option<u64>) -> Option<WindowSpec> {
    Some(WindowSpec {
        recurrence: window?.parse().ok()?,
        duration: SignedDuration::from_secs(duration_secs.unwrap_or(4 * 3600) as i64),
    })
}

/// The retry policy a request asks for (defaults filled in), or why it is invalid.
pub fn retry_policy(
    r: &patchwarden_wire::api::RetryRequest,
) -> Result<patchwarden_core::policy::RetryPolicy, String> {
    let mut p = patchwarden_core::policy::RetryPolicy::default();
    if let Some(n) = r.max_attempts {
        if !(1..=10).contains(&n) {
            return Err(format!("retry max_attempts must be 1 to 10, not {n}"));
        }
        p.max_attempts = n;
    }
    if let Some(b) = r.backoff_secs {
        if !(1..=86_400).contains(&b) {
            return Err(format!(
                "retry backoff must be 1 second to 1 day, not {b} s"
            ));
        }
        p.backoff = SignedDuration::from_secs(b as i64);
    }
    if !r.classes.is_empty() {
        p.classes = r
            .classes
            .iter()
            .map(|c| {
                c.parse::<FailureClass>()
                    .map_err(|_| format!("unknown failure class {c:?} in retry classes"))
            })
            .collect::<Result<_, _>>()?;
    }
    Ok(p)
}

/// After a job's result: hands it back for another attempt when the plan's retry policy says
/// so (exponential backoff; every attempt stays in the history). Returns whether it did.
pub async fn retry_if_due(state: &AppState, job_id: &str) -> Result<bool, StoreError> {
    let Some(job) = state.store.job(job_id).await? else {
        return Ok(false);
    };
    let Some(d) = state.store.deployment(&job.deployment_id).await? else {
        return Ok(false);
    };
    let plan = plan_of(&d);
    let Some(policy) = plan.retry.as_ref().and_then(|r| retry_policy(r).ok()) else {
        return Ok(false);
    };
    if job.status != JobStatus::Done || d.status != "running" {
        return Ok(false);
    }
    let failed: Vec<FailureClass> = state
        .store
        .packages_of_deployment(&d.id)
        .await?
        .into_iter()
        .filter(|p| p.job_id == job.id && p.state == "failed")
        .filter_map(|p| p.class.and_then(|c| c.parse().ok()))
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
pub async fn requeue_window_refusal(state: &AppState, job_id: &str) -> Result<bool, StoreError> {
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
    if d.status != "running" {
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
        && packages
            .iter()
            .all(|p| p.state == "failed" && p.class.as_deref() == Some("window_missed"));
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

/// `5` (devices) or `10%`.
pub fn parse_concurrency(s: &str) -> Result<Concurrency, String> {
    let bad =
        || format!("invalid concurrency {s:?}: use a number of devices (5) or a percentage (10%)");
    match s.strip_suffix('%') {
        Some(p) => match p.trim().parse::<u8>() {
            Ok(p) if (1..=100).contains(&p) => Ok(Concurrency::Percent(p)),
            _ => Err(bad()),
        },
        None => match s.trim().parse::<u32>() {
            Ok(n) if n >= 1 => Ok(Concurrency::Devices(n)),
            _ => Err(bad()),
        },
    }
}

pub fn plan_of(d: &Deployment) -> Plan {
    serde_json::from_str(&d.plan_json).unwrap_or_default()
}

pub(crate) fn ts(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// Per-ring progress, from the jobs and their package rows.
pub async fn ring_views(
    state: &AppState,
    d: &Deployment,
) -> Result<(Vec<RingView>, Vec<RingTally>, Vec<Option<i64>>), StoreError> {
    let plan = plan_of(d);
    let names = plan.ring_names();
    let jobs = state.store.jobs_of_deployment(&d.id).await?;
    let packages = state.store.packages_of_deployment(&d.id).await?;
    let mut outcomes: HashMap<&str, Vec<(PackageState, Option<FailureClass>)>> = HashMap::new();
    for p in &packages {
        let s = p.state.parse().unwrap_or(PackageState::Pending);
        let c = p.class.as_deref().and_then(|c| c.parse().ok());
        outcomes.entry(p.job_id.as_str()).or_default().push((s, c));
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
                "done"
            } else if released > 0 {
                "running"
            } else {
                "waiting"
            }
            .to_owned(),
        });
        tallies.push(tally);
    }
    Ok((views, tallies, finished))
}

/// Moves one deployment forward. Serialised server-wide so that two ticks never release or
/// promote twice.
pub async fn tick(state: &AppState, deployment_id: &str) -> Result<(), StoreError> {
    let _guard = state.orchestrator_lock.lock().await;
    let Some(mut d) = state.store.deployment(deployment_id).await? else {
        return Ok(());
    };
    if d.status != "running" {
        return Ok(());
    }
    let now = state.clock.now_ms();
    let plan = plan_of(&d);
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
                    state
                        .store
                        .release_job_in_window(&j.id, now, &payload, end)
                        .await?;
                    state.notifier.wake(&j.device_id);
                    released_in_window += 1;
                }
            }
        }
        if !release.is_empty() {
            state.store.release_jobs(&release, now).await?;
            for j in ring_jobs.iter().filter(|j| release.contains(&j.id)) {
                state.notifier.wake(&j.device_id);
            }
            tracing::info!(deployment = %d.id, ring = %rings.get(ring).cloned().unwrap_or_default(), released = release.len(), "jobs released");
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
            d.status = "completed".into();
            d.status_reason = None;
            d.updated_at = Some(now);
            state.store.update_deployment(&d).await?;
            tracing::info!(deployment = %d.id, "deployment completed");
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
                state.store.update_deployment(&d).await?;
                tracing::info!(deployment = %d.id, ring = %rings[ring + 1], "gate passed; next ring");
                continue;
            }
            GateDecision::Wait { reason, .. } => {
                let reason = format!("ring {}: {reason}", rings[ring]);
                if d.status_reason.as_deref() != Some(reason.as_str()) {
                    d.status_reason = Some(reason);
                    d.updated_at = Some(now);
                    state.store.update_deployment(&d).await?;
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
    state: &AppState,
    d: &Deployment,
    plan: &Plan,
) -> Result<(HashMap<String, String>, std::collections::HashSet<String>), StoreError> {
    let mut excluded = HashMap::new();
    if plan.preflight.as_ref().is_some_and(|p| p.exclude_failing) {
        for p in state.store.predictions_of_deployment(&d.id).await? {
            if p.state == "failed" {
                excluded.entry(p.device_id).or_insert(format!(
                    "{} for {}",
                    p.class.as_deref().unwrap_or("a failure"),
                    p.package
                ));
            }
        }
    }
    let mut offline = std::collections::HashSet::new();
    if plan.offline.as_deref() == Some("immediately") {
        for p in state.store.packages_of_deployment(&d.id).await? {
            if p.state == "device_offline" || p.class.as_deref() == Some("device_offline") {
                offline.insert(p.job_id);
            }
        }
    }
    Ok((excluded, offline))
}

/// Pre-flight ahead of the window: each device not yet checked gets its pre-flight once its
/// next window is within the plan's lead time (at once without a window).
async fn preflight_ahead(
    state: &AppState,
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

/// The device's time zone from its inventory (UTC when unknown or not a zone name).
pub(crate) async fn device_zone(state: &AppState, device_id: &str) -> jiff::tz::TimeZone {
    let zone = async {
        // A `timezone` label (per device, or its group's) overrides what the agent reports.
        if let Some(tz) = state
            .store
            .device(device_id)
            .await
            .ok()
            .flatten()
            .and_then(|d| d.labels.get(crate::policies::TIMEZONE_LABEL).cloned())
            .and_then(|z| patchwarden_core::schedule::zone(&z).ok())
        {
            return Some(tz);
        }
        let json = state.store.device_inventory_json(device_id).await.ok()??;
        let inv: patchwarden_wire::agent::Inventory = serde_json::from_str(&json).ok()?;
        patchwarden_core::schedule::zone(inv.timezone.as_deref()?).ok()
    };
    zone.await.unwrap_or(jiff::tz::TimeZone::UTC)
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
    state: &AppState,
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
                "device_offline",
                "device_offline",
                format!("the device did not check in during its window (closed {}); it catches up in its next window", crate::rfc3339(end)),
            )
        } else {
            (
                "failed",
                "window_missed",
                format!("the maintenance window closed at {} before the install started; it is retried in the next window", crate::rfc3339(end)),
            )
        };
        tracing::warn!(deployment = %d.id, device = %j.device_id, class, "window closed before the job started");
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
            .any(|p| p.job_id == j.id && p.state != "pending")
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
                .unrelease_job(&j.id, now, "failed", "window_missed", &why)
                .await?;
        }
    }
    Ok(())
}

async fn halt(
    state: &AppState,
    d: &mut Deployment,
    now: i64,
    reason: String,
) -> Result<(), StoreError> {
    tracing::warn!(deployment = %d.id, reason = %reason, "deployment halted");
    d.status = "halted".into();
    d.status_reason = Some(reason);
    d.updated_at = Some(now);
    state.store.update_deployment(d).await
}

/// Ticks every active deployment; run periodically (soak timers, leases) by the server.
pub async fn tick_all(state: &AppState) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrency_forms() {
        assert_eq!(parse_concurrency("5"), Ok(Concurrency::Devices(5)));
        assert_eq!(parse_concurrency("10%"), Ok(Concurrency::Percent(10)));
        for bad in ["0", "0%", "150%", "five", "-1", ""] {
            assert!(parse_concurrency(bad).is_err(), "{bad}");
        }
    }
}
