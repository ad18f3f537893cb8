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

    fn concurrency(&self) -> Concurrency {
        self.concurrency
            .as_deref()
            .and_then(|c| parse_concurrency(c).ok())
            .unwrap_or(Concurrency::Unlimited)
    }
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

fn ts(ms: i64) -> Timestamp {
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

    loop {
        let ring = d.current_ring as usize;
        let jobs = state.store.jobs_of_deployment(&d.id).await?;
        let ring_jobs: Vec<_> = jobs.iter().filter(|j| j.ring == ring as i64).collect();
        // Release within the concurrency limit.
        let active = ring_jobs
            .iter()
            .filter(|j| j.released_at.is_some() && j.status != JobStatus::Done)
            .count();
        let limit = concurrency_limit(plan.concurrency(), ring_jobs.len());
        let release: Vec<String> = ring_jobs
            .iter()
            .filter(|j| j.released_at.is_none())
            .take(limit.saturating_sub(active))
            .map(|j| j.id.clone())
            .collect();
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
