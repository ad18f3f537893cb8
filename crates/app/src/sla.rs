//! SLA policies per tenant: reading and setting one ([`get`], [`put`]), and the policy a
//! tenant's deadlines are computed with ([`policy_for`], [`Policies`]). A
//! tenant without a stored policy uses the product defaults (`patchwarden_vuln::SlaPolicy`).

use crate::actor::Actor;
use crate::authz::Permission;
use crate::error::{AppError, AppResult};
use crate::{rfc3339, App};
use patchwarden_store::{ExposureRecord, SlaPolicyRecord, Tenant};
use patchwarden_vuln::SlaPolicy;
use patchwarden_wire::api::{SlaPolicyUpdate, SlaPolicyView};
use std::collections::HashMap;

/// The longest deadline a policy may set (about ten years).
pub const MAX_DAYS: i64 = 3650;

fn days(d: Option<i64>) -> Option<u32> {
    d.and_then(|d| u32::try_from(d).ok())
}

/// The policy a stored record stands for.
pub fn to_policy(r: &SlaPolicyRecord) -> SlaPolicy {
    let default = SlaPolicy::default();
    SlaPolicy {
        kev_days: u32::try_from(r.kev_days).unwrap_or(default.kev_days),
        honor_kev_due_date: r.honor_kev_due_date,
        critical_days: days(r.critical_days),
        high_days: days(r.high_days),
        medium_days: days(r.medium_days),
        low_days: days(r.low_days),
        none_days: days(r.none_days),
        unknown_days: days(r.unknown_days),
    }
}

fn to_record(tenant_id: &str, p: &SlaPolicy, at: i64, by: &str) -> SlaPolicyRecord {
    let d = |x: Option<u32>| x.map(i64::from);
    SlaPolicyRecord {
        tenant_id: tenant_id.to_owned(),
        kev_days: i64::from(p.kev_days),
        honor_kev_due_date: p.honor_kev_due_date,
        critical_days: d(p.critical_days),
        high_days: d(p.high_days),
        medium_days: d(p.medium_days),
        low_days: d(p.low_days),
        none_days: d(p.none_days),
        unknown_days: d(p.unknown_days),
        updated_at: at,
        updated_by: by.to_owned(),
    }
}

/// The SLA policy of one tenant (the defaults when it has none).
pub async fn policy_for(
    state: &App,
    tenant_id: &str,
) -> Result<SlaPolicy, patchwarden_store::StoreError> {
    Ok(state
        .store
        .sla_policy(tenant_id)
        .await?
        .map(|r| to_policy(&r))
        .unwrap_or_default())
}

/// Every tenant's SLA policy, for views spanning tenants.
#[derive(Debug, Clone, Default)]
pub struct Policies {
    stored: HashMap<String, SlaPolicy>,
    default: SlaPolicy,
}

impl Policies {
    pub async fn load(state: &App) -> AppResult<Policies> {
        Ok(Policies {
            stored: state
                .store
                .list_sla_policies()
                .await?
                .iter()
                .map(|r| (r.tenant_id.clone(), to_policy(r)))
                .collect(),
            default: SlaPolicy::default(),
        })
    }

    /// The policy of this tenant (the defaults when it has none).
    pub fn of(&self, tenant_id: &str) -> &SlaPolicy {
        self.stored.get(tenant_id).unwrap_or(&self.default)
    }
}

fn view(tenant: &Tenant, stored: Option<&SlaPolicyRecord>) -> SlaPolicyView {
    let p = stored.map(to_policy).unwrap_or_default();
    SlaPolicyView {
        tenant: tenant.name.clone(),
        default: stored.is_none(),
        kev_days: p.kev_days,
        honor_kev_due_date: p.honor_kev_due_date,
        critical_days: p.critical_days,
        high_days: p.high_days,
        medium_days: p.medium_days,
        low_days: p.low_days,
        none_days: p.none_days,
        unknown_days: p.unknown_days,
        updated_at: stored.map(|r| rfc3339(r.updated_at)),
        updated_by: stored.map(|r| r.updated_by.clone()),
    }
}

/// Checks every day count given; the error names the field and the allowed range.
pub fn validate(u: &SlaPolicyUpdate) -> AppResult<()> {
    for (field, value) in [
        ("kev_days", u.kev_days),
        ("critical_days", u.critical_days),
        ("high_days", u.high_days),
        ("medium_days", u.medium_days),
        ("low_days", u.low_days),
        ("none_days", u.none_days),
        ("unknown_days", u.unknown_days),
    ] {
        if let Some(v) = value {
            if !(1..=MAX_DAYS).contains(&v) {
                return Err(AppError::invalid(
                    field,
                    format!(
                        "{field} must be a number of days from 1 to {MAX_DAYS}, got {v}; nothing was changed"
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// `u` applied over `base`.
pub fn apply(base: &SlaPolicy, u: &SlaPolicyUpdate) -> SlaPolicy {
    let d = |new: Option<i64>, old: Option<u32>| match new {
        Some(v) => u32::try_from(v).ok(),
        None => old,
    };
    SlaPolicy {
        kev_days: u
            .kev_days
            .and_then(|v| u32::try_from(v).ok())
            .unwrap_or(base.kev_days),
        honor_kev_due_date: u.honor_kev_due_date.unwrap_or(base.honor_kev_due_date),
        critical_days: d(u.critical_days, base.critical_days),
        high_days: d(u.high_days, base.high_days),
        medium_days: d(u.medium_days, base.medium_days),
        low_days: d(u.low_days, base.low_days),
        none_days: d(u.none_days, base.none_days),
        unknown_days: d(u.unknown_days, base.unknown_days),
    }
}

/// The tenant a request names: by name, else the token's own tenant, else `default`. A
/// missing tenant is created (`create`) only for a provider-level caller; a tenant-scoped
/// token naming another tenant is refused whether it exists or not.
async fn named_tenant(
    state: &App,
    op: &Actor,
    name: Option<&str>,
    create: bool,
) -> AppResult<Tenant> {
    if name.is_none() {
        if let Some(scope) = op.tenant_scope() {
            return state
                .store
                .tenant_by_id(scope)
                .await?
                .ok_or_else(|| AppError::not_found(format!("no tenant {scope}")));
        }
    }
    let name = name.unwrap_or("default");
    crate::scope::check_tenant_name(name)?;
    let found = state
        .store
        .list_tenants()
        .await?
        .into_iter()
        .find(|t| t.name == name);
    match found {
        Some(t) => Ok(t),
        None if op.tenant_scope().is_some() => Err(AppError::forbidden(format!(
            "this token may not act on tenant {name:?}"
        ))),
        None if create => crate::scope::resolve_tenant(state, op, Some(name)).await,
        None => Err(AppError::not_found(format!("no tenant named {name:?}"))),
    }
}

/// A tenant's SLA policy (`tenant`: name; default: the caller's tenant, or `default`).
pub async fn get(state: &App, op: &Actor, tenant: Option<&str>) -> AppResult<SlaPolicyView> {
    let tenant = named_tenant(state, op, tenant, false).await?;
    op.require(Permission::View, &tenant.id)?;
    let stored = state.store.sla_policy(&tenant.id).await?;
    Ok(view(&tenant, stored.as_ref()))
}

/// Sets a tenant's SLA policy (the fields given, over the stored or default policy).
pub async fn put(state: &App, op: &Actor, u: &SlaPolicyUpdate) -> AppResult<SlaPolicyView> {
    // Refuse bad input before anything else happens (no tenant is created, nothing stored).
    validate(u)?;
    let tenant = named_tenant(state, op, u.tenant.as_deref(), true).await?;
    op.require(Permission::ManagePolicies, &tenant.id)?;
    let base = match state.store.sla_policy(&tenant.id).await? {
        Some(r) if !u.reset => to_policy(&r),
        _ => SlaPolicy::default(),
    };
    let policy = apply(&base, u);
    let record = to_record(&tenant.id, &policy, state.clock.now_ms(), op.name());
    state.store.put_sla_policy(&record).await?;
    let summary = format!(
        "SLA policy: kev {}d{}, critical {}, high {}, medium {}, low {}",
        policy.kev_days,
        if policy.honor_kev_due_date {
            " or CISA due date"
        } else {
            ""
        },
        show(policy.critical_days),
        show(policy.high_days),
        show(policy.medium_days),
        show(policy.low_days),
    );
    op.audit().object(&format!("sla-policy/{}", tenant.name));
    op.audit().detail(&summary);
    tracing::info!(tenant = %tenant.name, by = %op.name(), %summary, "SLA policy set");
    Ok(view(&tenant, Some(&record)))
}

fn show(d: Option<u32>) -> String {
    d.map_or_else(|| "none".to_owned(), |d| format!("{d}d"))
}

/// The store's open-exposure figures (SLA breaches in SQL) with each tenant's own policy:
/// one query with the defaults, and one more per tenant in scope that has a policy.
pub async fn exposure_stats(
    state: &App,
    scope: &patchwarden_store::TenantScope,
    now: i64,
) -> Result<Vec<patchwarden_store::ExposureStats>, patchwarden_store::StoreError> {
    let default = sla_days(&SlaPolicy::default());
    let mut stats = state.store.exposure_stats(scope, now, &default).await?;
    for r in state.store.list_sla_policies().await? {
        if scope.as_ref().is_some_and(|s| !s.contains(&r.tenant_id)) {
            continue;
        }
        let own = sla_days(&to_policy(&r));
        let one = Some(vec![r.tenant_id.clone()]);
        let theirs = state.store.exposure_stats(&one, now, &own).await?;
        stats.retain(|s| s.tenant_id != r.tenant_id);
        stats.extend(theirs);
    }
    stats.sort_by(|a, b| a.tenant_id.cmp(&b.tenant_id));
    Ok(stats)
}

/// The API's name of an SLA state.
pub fn sla_state_name(s: &patchwarden_vuln::SlaState) -> &'static str {
    use patchwarden_vuln::SlaState;
    match s {
        SlaState::NoDeadline => "no_deadline",
        SlaState::OnTrack { .. } => "on_track",
        SlaState::Breached { .. } => "breached",
        SlaState::Met => "met",
        SlaState::ClosedLate { .. } => "closed_late",
    }
}

/// Seconds left before an open exposure's deadline (negative when overdue).
pub fn sla_seconds_left(s: &patchwarden_vuln::SlaState) -> Option<i64> {
    use patchwarden_vuln::SlaState;
    match s {
        SlaState::OnTrack { remaining } => Some(remaining.whole_seconds()),
        SlaState::Breached { overdue } => Some(-overdue.whole_seconds()),
        _ => None,
    }
}

fn at(ms: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(ms / 1000).unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

/// The SLA clock of a stored exposure at `now` (deadline, state, basis).
pub fn sla_of(
    policy: &SlaPolicy,
    e: &ExposureRecord,
    now: time::OffsetDateTime,
) -> patchwarden_vuln::SlaClock {
    let rating = match e.rating.as_str() {
        "critical" => patchwarden_vuln::Rating::Critical,
        "high" => patchwarden_vuln::Rating::High,
        "medium" => patchwarden_vuln::Rating::Medium,
        "low" => patchwarden_vuln::Rating::Low,
        "none" => patchwarden_vuln::Rating::None,
        _ => patchwarden_vuln::Rating::Unknown,
    };
    let kev_entry = e.kev.then(|| patchwarden_vuln::feeds::KevEntry {
        cve: e.cve.clone(),
        vendor_project: String::new(),
        product: String::new(),
        vulnerability_name: String::new(),
        date_added: now.date(),
        due_date: e.kev_due.as_deref().and_then(|d| {
            time::Date::parse(d, time::macros::format_description!("[year]-[month]-[day]")).ok()
        }),
        known_ransomware: e.ransomware,
    });
    patchwarden_vuln::sla_clock(
        policy,
        rating,
        kev_entry.as_ref(),
        at(e.first_seen),
        e.closed_at.map(at),
        now,
    )
}

/// The policy's deadlines for the store's SQL figures.
pub fn sla_days(policy: &SlaPolicy) -> patchwarden_store::SlaDays {
    let d = |x: Option<u32>| x.map(i64::from);
    patchwarden_store::SlaDays {
        critical: d(policy.critical_days),
        high: d(policy.high_days),
        medium: d(policy.medium_days),
        low: d(policy.low_days),
        none: d(policy.none_days),
        unknown: d(policy.unknown_days),
        kev: i64::from(policy.kev_days),
        honor_kev_due_date: policy.honor_kev_due_date,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_field_and_apply_keeps_the_rest() {
        for (u, field) in [
            (
                SlaPolicyUpdate {
                    critical_days: Some(0),
                    ..Default::default()
                },
                "critical_days",
            ),
            (
                SlaPolicyUpdate {
                    high_days: Some(3651),
                    ..Default::default()
                },
                "high_days",
            ),
            (
                SlaPolicyUpdate {
                    kev_days: Some(-1),
                    ..Default::default()
                },
                "kev_days",
            ),
        ] {
            let e = validate(&u).expect_err("refused");
            assert!(
                matches!(&e, AppError::Invalid { field: f, message } if *f == field && message.starts_with(field)),
                "{e:?}"
            );
        }
        let u = SlaPolicyUpdate {
            critical_days: Some(7),
            low_days: Some(3650),
            kev_days: Some(1),
            ..Default::default()
        };
        validate(&u).expect("valid");
        let p = apply(&SlaPolicy::default(), &u);
        assert_eq!(
            (
                p.critical_days,
                p.high_days,
                p.medium_days,
                p.low_days,
                p.kev_days
            ),
            (Some(7), Some(30), Some(90), Some(3650), 1)
        );
        assert_eq!(to_policy(&to_record("t", &p, 0, "x")), p);
    }
}
