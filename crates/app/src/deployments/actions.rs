//! The deployment state machine: what operators do to a deployment (approve, reject, halt,
//! resume, cancel), each allowed only from the states that permit it.
//!
//! Every transition is a conditional update in the store (`transition_deployment`: the
//! status it may be in is part of the write), so a halt can never be overwritten by a
//! concurrent orchestrator tick, and two people acting at once get one success and one
//! conflict. The orchestrator's own transitions (promote, complete, halt by gate or breaker)
//! use the same call (`crate::orchestrator`).

use crate::actor::Actor;
use crate::authz::Permission;
use crate::error::{AppError, AppResult};
use crate::App;
use patchwarden_core::DeploymentStatus::{self, Cancelled, Halted, PendingApproval, Running};
use patchwarden_store::{Deployment, RejectedUpdate, StoreError};
use patchwarden_wire::api::DeploymentView;
use std::collections::BTreeSet;

/// What an operator can do to a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Approve,
    Reject,
    Halt,
    Resume,
    Cancel,
}

impl Action {
    pub const ALL: [Action; 5] = [
        Action::Approve,
        Action::Reject,
        Action::Halt,
        Action::Resume,
        Action::Cancel,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Approve => "approve",
            Action::Reject => "reject",
            Action::Halt => "halt",
            Action::Resume => "resume",
            Action::Cancel => "cancel",
        }
    }

    pub fn parse(s: &str) -> Option<Action> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }

    /// The statuses this action may start from, and the status it leads to.
    pub fn transition(self) -> (&'static [DeploymentStatus], DeploymentStatus) {
        match self {
            Action::Approve => (&[PendingApproval], Running),
            Action::Reject => (&[PendingApproval], Cancelled),
            Action::Halt => (&[Running], Halted),
            Action::Resume => (&[Halted], Running),
            Action::Cancel => (&[Running, Halted, PendingApproval], Cancelled),
        }
    }

    /// The permission it needs: approving and rejecting are the customer's oversight,
    /// halting, resuming and cancelling are operating the rollout.
    pub fn permission(self) -> Permission {
        match self {
            Action::Approve | Action::Reject => Permission::Approve,
            Action::Halt | Action::Resume | Action::Cancel => Permission::Operate,
        }
    }

    /// Whether a deployment in `status` allows this action.
    pub fn allowed_from(self, status: DeploymentStatus) -> bool {
        self.transition().0.contains(&status)
    }
}

/// Applies `action` to deployment `id` on behalf of `op`, and answers the deployment as it
/// is afterwards. A deployment of another tenant is not found; a role that does not allow
/// the action is forbidden; a status that does not allow it (or a concurrent change that got
/// there first) is a conflict.
pub async fn act(
    state: &App,
    op: &Actor,
    id: &str,
    action: Action,
    reason: Option<String>,
) -> AppResult<DeploymentView> {
    let reason = reason
        .map(|r| r.trim().to_owned())
        .filter(|r| !r.is_empty());
    if reason.as_ref().is_some_and(|r| r.chars().count() > 2000) {
        return Err(AppError::invalid(
            "reason",
            "reason is too long (at most 2000 characters)",
        ));
    }
    let mut checked = false;
    // A concurrent tick may promote a ring between our read and our write (the write then
    // fails: it is conditional on the status and ring read); read again and decide again.
    for _ in 0..5 {
        let d = match state.store.deployment(id).await? {
            Some(d) if op.can_access(&d.tenant_id) => d,
            _ => return Err(AppError::not_found(format!("no deployment {id}"))),
        };
        if !checked {
            op.require(action.permission(), &d.tenant_id)?;
            if let Some(r) = &reason {
                op.audit().detail(r);
            }
            checked = true;
        }
        if !action.allowed_from(d.status) {
            return Err(AppError::invalid_state(format!(
                "cannot {} deployment {} while it is {}",
                action.as_str(),
                d.id,
                d.status
            )));
        }
        let (expected, ring) = (d.status, d.current_ring);
        let d = apply(
            action,
            d,
            op.name(),
            reason.as_deref(),
            state.clock.now_ms(),
        );
        let skip = (d.status == Cancelled).then(|| {
            format!(
                "not started: {}",
                d.status_reason.clone().unwrap_or_default()
            )
        });
        if !state
            .store
            .transition_deployment(&d, &[expected], Some(ring), skip.as_deref())
            .await?
        {
            continue;
        }
        if action == Action::Reject {
            record_rejection(state, &d.id, op.name(), reason.as_deref()).await?;
        }
        tracing::info!(deployment = %d.id, action = action.as_str(), by = %op.name(), "deployment action");
        crate::orchestrator::tick(state, &d.id).await?;
        let d = state
            .store
            .deployment(&d.id)
            .await?
            .ok_or_else(|| AppError::not_found(format!("no deployment {id}")))?;
        let tenant = crate::scope::tenant_name(state, &d.tenant_id).await?;
        return super::view(state, d, tenant).await;
    }
    Err(AppError::invalid_state(format!(
        "deployment {id} keeps changing; try to {} it again",
        action.as_str()
    )))
}

/// Records the updates of a rejected deployment: no deployment installs them until
/// un-rejected.
async fn record_rejection(
    state: &App,
    deployment_id: &str,
    by: &str,
    reason: Option<&str>,
) -> Result<(), StoreError> {
    let Some(d) = state.store.deployment(deployment_id).await? else {
        return Ok(());
    };
    let now = state.clock.now_ms();
    let mut seen = BTreeSet::new();
    let mut rows = Vec::new();
    for p in state.store.packages_of_deployment(deployment_id).await? {
        let Some(version) = p.to_version else {
            continue;
        };
        if seen.insert((p.package.clone(), version.clone())) {
            rows.push(RejectedUpdate {
                tenant_id: d.tenant_id.clone(),
                package: p.package,
                version,
                deployment_id: Some(deployment_id.to_owned()),
                rejected_by: by.to_owned(),
                reason: reason.map(str::to_owned),
                rejected_at: now,
            });
        }
    }
    state.store.reject_updates(&rows).await
}

/// The deployment after `action` by `who` (its status allows the action).
fn apply(
    action: Action,
    mut d: Deployment,
    who: &str,
    reason: Option<&str>,
    now: i64,
) -> Deployment {
    let because = |what: &str| match reason {
        Some(r) => format!("{what} by {who}: {r}"),
        None => format!("{what} by {who}"),
    };
    d.status = action.transition().1;
    d.updated_at = Some(now);
    match action {
        Action::Approve => {
            d.status_reason = None;
            d.approved_by = Some(who.to_owned());
            d.approved_at = Some(now);
        }
        Action::Reject => d.status_reason = Some(because("rejected")),
        Action::Halt => d.status_reason = Some(because("halted")),
        Action::Resume => {
            d.status_reason = None;
            d.resumed_at = Some(now);
        }
        Action::Cancel => d.status_reason = Some(because("cancelled")),
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_machine() {
        use DeploymentStatus::*;
        // (action, statuses it may start from)
        let table: [(Action, &[DeploymentStatus]); 5] = [
            (Action::Approve, &[PendingApproval]),
            (Action::Reject, &[PendingApproval]),
            (Action::Halt, &[Running]),
            (Action::Resume, &[Halted]),
            (Action::Cancel, &[PendingApproval, Running, Halted]),
        ];
        for (action, allowed) in table {
            for s in DeploymentStatus::ALL {
                assert_eq!(
                    action.allowed_from(*s),
                    allowed.contains(s),
                    "{action:?} from {s}"
                );
            }
            assert_eq!(Action::parse(action.as_str()), Some(action));
        }
        assert!(
            Action::ALL
                .iter()
                .all(|a| !a.allowed_from(Completed) && !a.allowed_from(Cancelled)),
            "final states allow nothing"
        );
    }
}
