//! SLA policies per tenant: remediation deadlines (days from first seen) per severity rating
//! and for known-exploited CVEs. A tenant without a stored policy uses the defaults of
//! `patchwarden_vuln::SlaPolicy`. Part of the [`crate::Store`] interface (a supertrait).

use crate::Result;
use async_trait::async_trait;

/// A tenant's stored SLA policy. `None` for a rating = no deadline for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlaPolicyRecord {
    pub tenant_id: String,
    /// Known exploited (CISA KEV): days from first seen, unless CISA's due date applies.
    pub kev_days: i64,
    /// Use CISA's due date for KEV entries when it is still ahead at first sight.
    pub honor_kev_due_date: bool,
    pub critical_days: Option<i64>,
    pub high_days: Option<i64>,
    pub medium_days: Option<i64>,
    pub low_days: Option<i64>,
    /// Negligible severity.
    pub none_days: Option<i64>,
    /// Not yet rated.
    pub unknown_days: Option<i64>,
    pub updated_at: i64,
    /// Who set it (user or token name).
    pub updated_by: String,
}

#[async_trait]
pub trait SlaStore: Send + Sync {
    /// The tenant's stored policy; `None` when it has none (the defaults apply).
    async fn sla_policy(&self, tenant_id: &str) -> Result<Option<SlaPolicyRecord>>;
    /// Every stored policy (one per tenant that has one), by tenant id.
    async fn list_sla_policies(&self) -> Result<Vec<SlaPolicyRecord>>;
    /// Stores the tenant's policy whole, replacing the previous one.
    async fn put_sla_policy(&self, policy: &SlaPolicyRecord) -> Result<()>;
    /// Removes the tenant's policy (back to the defaults); true when there was one.
    async fn delete_sla_policy(&self, tenant_id: &str) -> Result<bool>;
}
