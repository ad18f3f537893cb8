//! What a deployment was asked to do beyond its selection (rings, gate, breaker,
//! concurrency, window, reboots, retries, pre-flight), as stored with it, and the checks that
//! turn a request into one. A stored plan that does not decode is an error naming the
//! deployment, never the default plan.

use crate::error::{AppError, AppResult};
use jiff::SignedDuration;
use patchwarden_core::rings::{Breaker, Concurrency, Gate, RingMembers, RingSpec};
use patchwarden_core::schedule::WindowSpec;
use patchwarden_core::FailureClass;
use patchwarden_store::{Deployment, StoreError};
use patchwarden_wire::api::{CreateDeploymentRequest, GateRequest, RebootRequest, Selection};
use serde::{Deserialize, Serialize};

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
    /// The plan stored with a deployment.
    pub fn of(d: &Deployment) -> Result<Plan, StoreError> {
        serde_json::from_str(&d.plan_json).map_err(|e| {
            StoreError::Corrupt(format!(
                "deployment {}: its stored plan does not decode: {e}",
                d.id
            ))
        })
    }

    pub fn ring_names(&self) -> Vec<String> {
        if self.rings.is_empty() {
            vec!["all".to_owned()]
        } else {
            self.rings.clone()
        }
    }

    pub(crate) fn gate(&self) -> Gate {
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

    pub(crate) fn breaker(&self) -> Option<Breaker> {
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

    pub(crate) fn concurrency(&self) -> Concurrency {
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

/// The selection stored with a deployment.
pub fn selection_of(d: &Deployment) -> Result<Selection, StoreError> {
    serde_json::from_str(&d.selection_json).map_err(|e| {
        StoreError::Corrupt(format!(
            "deployment {}: its stored selection does not decode: {e}",
            d.id
        ))
    })
}

/// Checks a deployment's reboot request: `max_per_day` 1 to 10, `come_back_secs` 60 to 86400.
pub fn validate_reboot(r: &RebootRequest) -> Result<(), String> {
    if let Some(k) = r.max_per_day {
        if !(1..=10).contains(&k) {
            return Err(format!(
                "reboot max_per_day must be between 1 and 10 (got {k})"
            ));
        }
    }
    if let Some(s) = r.come_back_secs {
        if !(60..=86_400).contains(&s) {
            return Err(format!(
                "reboot come_back_secs must be between 60 and 86400 (got {s})"
            ));
        }
    }
    Ok(())
}

/// `low`, `medium`, `high` or `critical` (or absent).
pub(crate) fn validate_severity(field: &'static str, s: Option<&str>) -> AppResult<()> {
    match s {
        None => Ok(()),
        Some(v) if patchwarden_core::policy::severity_rank(v).is_some_and(|r| r >= 2) => Ok(()),
        Some(v) => Err(AppError::invalid(
            field,
            format!("invalid severity {v:?}: use low, medium, high or critical"),
        )),
    }
}

/// Checks the rollout options and turns them into the stored plan and core's ring specs.
pub(crate) fn validate_plan(req: &CreateDeploymentRequest) -> AppResult<(Plan, Vec<RingSpec>)> {
    let mut specs = Vec::new();
    for (i, r) in req.rings.iter().enumerate() {
        if r.name.is_empty() || req.rings[..i].iter().any(|x| x.name == r.name) {
            return Err(AppError::invalid(
                "rings",
                format!("ring names must be unique and not empty: {:?}", r.name),
            ));
        }
        let forms = [!r.devices.is_empty(), r.percent.is_some(), r.rest];
        if forms.iter().filter(|f| **f).count() != 1 {
            return Err(AppError::invalid(
                "rings",
                format!(
                    "ring {:?}: give exactly one of devices, percent or rest",
                    r.name
                ),
            ));
        }
        let members = if r.rest {
            RingMembers::Rest
        } else if let Some(p) = r.percent {
            if p > 100 {
                return Err(AppError::invalid(
                    "rings",
                    format!("ring {:?}: percent must be 0 to 100", r.name),
                ));
            }
            RingMembers::Percent(p)
        } else {
            RingMembers::Devices(r.devices.clone())
        };
        specs.push(RingSpec {
            name: r.name.clone(),
            members,
        });
    }
    if specs.is_empty() {
        specs.push(RingSpec {
            name: "all".into(),
            members: RingMembers::Rest,
        });
    }
    if let Some(g) = &req.gate {
        if !(0.0..=1.0).contains(&g.min_success_rate) {
            return Err(AppError::invalid(
                "gate",
                "gate min_success_rate must be between 0 and 1",
            ));
        }
    }
    if let Some(rate) = req.halt_failure_rate {
        if !(rate > 0.0 && rate <= 1.0) {
            return Err(AppError::invalid(
                "halt_failure_rate",
                "halt_failure_rate must be above 0 and at most 1",
            ));
        }
    }
    if let Some(c) = &req.concurrency {
        parse_concurrency(c).map_err(|e| AppError::invalid("concurrency", e))?;
    }
    if let Some(w) = &req.window {
        w.parse::<patchwarden_core::schedule::Recurrence>()
            .map_err(|e| AppError::invalid("window", e.to_string()))?;
    }
    if let Some(d) = req.window_duration_secs {
        if d == 0 || d > 7 * 24 * 3600 {
            return Err(AppError::invalid(
                "window_duration_secs",
                "window duration must be between 1 second and 7 days",
            ));
        }
    }
    if let Some(r) = &req.reboot {
        validate_reboot(r).map_err(|e| AppError::invalid("reboot", e))?;
    }
    match req.offline.as_deref() {
        None | Some("next_window") | Some("immediately") => {}
        Some(other) => {
            return Err(AppError::invalid(
                "offline",
                format!("invalid offline policy {other:?}: use next_window or immediately"),
            ))
        }
    }
    if let Some(r) = &req.retry {
        retry_policy(r).map_err(|e| AppError::invalid("retry", e))?;
    }
    if let Some(p) = &req.preflight {
        if p.lead_secs.is_some_and(|l| l > 30 * 24 * 3600) {
            return Err(AppError::invalid(
                "preflight",
                "pre-flight lead time must be at most 30 days",
            ));
        }
    }
    let plan = Plan {
        reboot: req.reboot.clone(),
        window: req.window.clone(),
        window_duration_secs: req.window_duration_secs,
        rings: req.rings.iter().map(|r| r.name.clone()).collect(),
        gate: req.gate.clone(),
        halt_failure_rate: req.halt_failure_rate,
        halt_min_finished: req.halt_min_finished,
        concurrency: req.concurrency.clone(),
        expedite: req.expedite,
        offline: req.offline.clone(),
        retry: req.retry.clone(),
        preflight: req.preflight.clone(),
        spread: req.spread,
        policy: req.policy.clone(),
    };
    Ok((plan, specs))
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

    #[test]
    fn a_plan_that_does_not_decode_is_an_error_naming_the_deployment() {
        let d = Deployment {
            id: "dep_x".into(),
            tenant_id: "t".into(),
            created_at: 0,
            created_by: String::new(),
            selection_json: "{\"kind\":\"nonsense\"}".into(),
            timeout_secs: 60,
            status: patchwarden_core::DeploymentStatus::Running,
            status_reason: None,
            plan_json: "{\"rings\": 7}".into(),
            current_ring: 0,
            approved_by: None,
            approved_at: None,
            updated_at: None,
            resumed_at: None,
        };
        let e = Plan::of(&d).expect_err("corrupt plan").to_string();
        assert!(e.contains("dep_x") && e.contains("plan"), "{e}");
        let e = selection_of(&d).expect_err("corrupt selection").to_string();
        assert!(e.contains("dep_x") && e.contains("selection"), "{e}");
        let ok = Deployment {
            plan_json: "{}".into(),
            ..d
        };
        assert_eq!(Plan::of(&ok).expect("empty plan").ring_names(), vec!["all"]);
    }
}
