//! Who may see and do what in the dashboard: roles per tenant (memberships), the tenants a
//! person can see, and the permission each deployment action needs.

use crate::operator_api::Action;
use patchwarden_store::{Membership, TenantScope};
use std::collections::BTreeMap;

/// A role, per tenant or provider-wide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Admin,
    Operator,
    Approver,
    Viewer,
}

/// What a role may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    View,
    /// Approve or reject a deployment (the customer's oversight).
    Approve,
    /// Halt, resume or cancel a deployment.
    Operate,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Admin, Role::Operator, Role::Approver, Role::Viewer];

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "operator" => Some(Role::Operator),
            "approver" => Some(Role::Approver),
            "viewer" => Some(Role::Viewer),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Approver => "approver",
            Role::Viewer => "viewer",
        }
    }

    /// The roles matrix.
    pub fn allows(self, p: Permission) -> bool {
        matches!(
            (self, p),
            (_, Permission::View)
                | (Role::Admin, _)
                | (Role::Operator, Permission::Operate)
                | (Role::Approver, Permission::Approve)
        )
    }
}

pub fn permission_for(action: Action) -> Permission {
    match action {
        Action::Approve | Action::Reject => Permission::Approve,
        Action::Halt | Action::Resume | Action::Cancel => Permission::Operate,
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
            // An unknown role (from a newer server) grants nothing.
            let Some(role) = Role::parse(&m.role) else {
                continue;
            };
            match &m.tenant_id {
                None => a.provider.push(role),
                Some(t) => a.tenants.entry(t.clone()).or_default().push(role),
            }
        }
        a
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
        self.roles_in(tenant_id).iter().any(|r| r.allows(p))
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
            role: role.into(),
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
                    role.allows(View),
                    role.allows(Approve),
                    role.allows(Operate)
                ],
                [view, approve, operate],
                "{role:?}"
            );
        }
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
        let none = Access::from_memberships(&[m(None, "superuser")]);
        assert_eq!(none.scope(), Some(vec![]), "an unknown role grants nothing");
    }
}
