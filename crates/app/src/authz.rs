//! Who may do what: the roles table ([`allows`]), the permission each action needs, and a
//! person's or token's roles per tenant ([`Access`]). The one place behind every check, in
//! the API and the dashboard alike ([`crate::actor::Actor::require`]).

pub use patchwarden_core::Role;
use patchwarden_store::{Membership, TenantScope};
use std::collections::BTreeMap;

/// What a role may do; [`allows`] is the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// Read devices, deployments, failures, vulnerabilities, feeds.
    View,
    /// Approve or reject a deployment, accept a risk (the customer's oversight).
    Approve,
    /// Halt, resume or cancel a deployment.
    Operate,
    /// Create deployments and request pre-flight checks.
    Deploy,
    /// Remediate: reset a device's failures, import vulnerability feeds.
    Remediate,
    /// Create, change and apply policies (deployment and SLA policies).
    ManagePolicies,
    /// Create, list and revoke enrollment tokens (bring devices in).
    Enroll,
    /// Read the audit log.
    ReadAudit,
    /// Manage users and API tokens.
    Administer,
}

impl Permission {
    /// What it allows, for error messages: "… may not deploy in this tenant".
    pub fn describe(self) -> &'static str {
        match self {
            Permission::View => "view data",
            Permission::Approve => "approve or reject",
            Permission::Operate => "halt, resume or cancel deployments",
            Permission::Deploy => "deploy",
            Permission::Remediate => "remediate (reset failures, import feeds)",
            Permission::ManagePolicies => "manage policies",
            Permission::Enroll => "manage enrollment tokens",
            Permission::ReadAudit => "read the audit log",
            Permission::Administer => "manage users and API tokens",
        }
    }

    /// The roles that allow it, e.g. `admin or operator`.
    pub fn roles(self) -> String {
        Role::ALL
            .iter()
            .filter(|r| allows(**r, self))
            .map(|r| r.as_str())
            .collect::<Vec<_>>()
            .join(" or ")
    }
}

/// The roles table: `admin` everything; `operator` deploys, operates, remediates, enrolls and
/// manages policies; `approver` approves and reads the audit log; everyone views.
pub fn allows(role: Role, p: Permission) -> bool {
    use Permission::*;
    match role {
        Role::Admin => true,
        Role::Operator => matches!(
            p,
            View | Operate | Deploy | Remediate | ManagePolicies | Enroll
        ),
        Role::Approver => matches!(p, View | Approve | ReadAudit),
        Role::Viewer => matches!(p, View),
    }
}

/// A person's roles: provider-wide and per tenant id.
#[derive(Debug, Clone, Default)]
pub struct Access {
    provider: Vec<Role>,
    tenants: BTreeMap<String, Vec<Role>>,
}

impl Access {
    pub fn from_memberships(ms: &[Membership]) -> Self {
        let mut a = Access::default();
        for m in ms {
            let role = m.role;
            match &m.tenant_id {
                None => a.provider.push(role),
                Some(t) => a.tenants.entry(t.clone()).or_default().push(role),
            }
        }
        a
    }

    /// The access of an API token: one role, in its tenant or (no tenant) provider-wide.
    pub fn of_token(tenant_id: Option<&str>, role: Role) -> Self {
        Self::from_memberships(&[Membership {
            user_id: String::new(),
            tenant_id: tenant_id.map(str::to_owned),
            role,
        }])
    }

    /// Whether a provider-wide role allows this (provider-level things: shared feeds,
    /// provider-level users and tokens, entries of the audit log without a tenant).
    pub fn can_provider(&self, p: Permission) -> bool {
        self.provider.iter().any(|r| allows(*r, p))
    }

    /// Whether some role, in some tenant, allows this.
    pub fn can_somewhere(&self, p: Permission) -> bool {
        self.provider
            .iter()
            .chain(self.tenants.values().flatten())
            .any(|r| allows(*r, p))
    }

    /// The strongest provider-wide role held, if any.
    pub fn strongest_provider_role(&self) -> Option<Role> {
        self.provider.iter().min().copied()
    }

    pub fn is_provider(&self) -> bool {
        !self.provider.is_empty()
    }

    /// The tenants this person may see: `None` = all.
    pub fn scope(&self) -> TenantScope {
        if self.is_provider() {
            None
        } else {
            Some(self.tenants.keys().cloned().collect())
        }
    }

    pub fn can_see(&self, tenant_id: &str) -> bool {
        self.is_provider() || self.tenants.contains_key(tenant_id)
    }

    /// The roles that apply in this tenant, strongest first.
    pub fn roles_in(&self, tenant_id: &str) -> Vec<Role> {
        let mut roles = self.provider.clone();
        roles.extend(self.tenants.get(tenant_id).into_iter().flatten().copied());
        roles.sort();
        roles.dedup();
        roles
    }

    pub fn can(&self, tenant_id: &str, p: Permission) -> bool {
        self.roles_in(tenant_id).iter().any(|r| allows(*r, p))
    }

    /// The strongest role held in this tenant (for the API token that stands for the person).
    pub fn role_in(&self, tenant_id: &str) -> Option<Role> {
        self.roles_in(tenant_id).first().copied()
    }

    /// A short description for the page header, e.g. `admin (all tenants)`.
    pub fn describe(&self, names: &BTreeMap<String, String>) -> String {
        let mut parts: Vec<String> = self
            .provider
            .iter()
            .map(|r| format!("{} (all tenants)", r.as_str()))
            .collect();
        for (t, roles) in &self.tenants {
            let name = names.get(t).map_or(t.as_str(), String::as_str);
            for r in roles {
                parts.push(format!("{} ({name})", r.as_str()));
            }
        }
        if parts.is_empty() {
            "no role".to_owned()
        } else {
            parts.join(", ")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(tenant: Option<&str>, role: &str) -> Membership {
        Membership {
            user_id: "u".into(),
            tenant_id: tenant.map(str::to_owned),
            role: role.parse().expect("a role"),
        }
    }

    #[test]
    fn roles_matrix() {
        use Permission::*;
        let expect = [
            (Role::Admin, [true, true, true]),
            (Role::Operator, [true, false, true]),
            (Role::Approver, [true, true, false]),
            (Role::Viewer, [true, false, false]),
        ];
        for (role, [view, approve, operate]) in expect {
            assert_eq!(
                [
                    allows(role, View),
                    allows(role, Approve),
                    allows(role, Operate)
                ],
                [view, approve, operate],
                "{role:?}"
            );
        }
    }

    #[test]
    fn every_permission_by_role() {
        use Permission::*;
        // (permission, [admin, operator, approver, viewer])
        let table = [
            (View, [true, true, true, true]),
            (Deploy, [true, true, false, false]),
            (Operate, [true, true, false, false]),
            (Remediate, [true, true, false, false]),
            (ManagePolicies, [true, true, false, false]),
            (Enroll, [true, true, false, false]),
            (Approve, [true, false, true, false]),
            (ReadAudit, [true, false, true, false]),
            (Administer, [true, false, false, false]),
        ];
        for (p, expected) in table {
            let got: Vec<bool> = Role::ALL.iter().map(|r| allows(*r, p)).collect();
            assert_eq!(got, expected, "{p:?}");
            assert!(!p.roles().is_empty() && !p.describe().is_empty());
        }
        assert_eq!(Approve.roles(), "admin or approver");
        let token = Access::of_token(Some("t_a"), Role::Operator);
        assert!(token.can("t_a", Deploy) && !token.can("t_b", View));
        assert!(!token.can_provider(View) && token.can_somewhere(Deploy));
        let provider = Access::of_token(None, Role::Approver);
        assert!(provider.can_provider(ReadAudit) && !provider.can_provider(Deploy));
        assert!(Access::from_memberships(&[]).scope() == Some(vec![]));
    }

    #[test]
    fn tenant_roles_apply_only_in_their_tenant() {
        let a = Access::from_memberships(&[m(Some("t_a"), "approver"), m(Some("t_b"), "viewer")]);
        assert_eq!(a.scope(), Some(vec!["t_a".to_owned(), "t_b".to_owned()]));
        assert!(a.can("t_a", Permission::Approve));
        assert!(!a.can("t_b", Permission::Approve));
        assert!(!a.can("t_c", Permission::View));
        assert!(!a.can_see("t_c"));
        let p = Access::from_memberships(&[m(None, "viewer"), m(Some("t_a"), "operator")]);
        assert_eq!(p.scope(), None);
        assert!(p.can("t_z", Permission::View));
        assert!(!p.can("t_z", Permission::Operate));
        assert!(p.can("t_a", Permission::Operate));
        assert_eq!(p.role_in("t_a"), Some(Role::Operator));
        let none = Access::from_memberships(&[]);
        assert_eq!(none.scope(), Some(vec![]), "no role grants nothing");
        assert!(!none.can_somewhere(Permission::View));
    }
}
