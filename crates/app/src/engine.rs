//! Deployment planning: which packages, at which versions, each targeted device gets.
//! Pure functions of the selection and each device's last inventory; no I/O, no HTTP.

use patchwarden_store::ExposureRecord;
use patchwarden_wire::agent::{Inventory, PackageTarget};
use patchwarden_wire::api::Selection;

/// One package a device is asked to install, with what the inventory said it had.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedPackage {
    pub target: PackageTarget,
    pub from_version: Option<String>,
}

/// The packages `selection` means for a device with this inventory (empty: nothing to do).
pub fn plan_device(
    selection: &Selection,
    inventory: Option<&Inventory>,
    exposures: &[ExposureRecord],
) -> Vec<PlannedPackage> {
    let installed = |name: &str| {
        inventory.and_then(|inv| {
            inv.packages
                .iter()
                .find(|p| p.name == name)
                .map(|p| p.version.clone())
        })
    };
    let mut planned: Vec<PlannedPackage> = match selection {
        Selection::Security | Selection::AllUpdates => {
            let security_only = matches!(selection, Selection::Security);
            inventory
                .map(|inv| {
                    inv.upgradable
                        .iter()
                        .filter(|u| !security_only || u.security)
                        .map(|u| PlannedPackage {
                            target: PackageTarget {
                                name: u.name.clone(),
                                version: Some(u.candidate_version.clone()),
                            },
                            from_version: Some(u.installed_version.clone()),
                        })
                        .collect()
                })
                .unwrap_or_default()
        }
        Selection::Vulnerabilities {
            min_severity,
            kev,
            cves,
        } => {
            let wanted = |e: &&ExposureRecord| {
                e.closed_at.is_none()
                    && e.fixed_by_update.is_some()
                    && (cves.is_empty() || cves.iter().any(|c| c.eq_ignore_ascii_case(&e.cve)))
                    && ((*kev && e.kev)
                        || min_severity
                            .as_deref()
                            .is_some_and(|m| patchwarden_core::policy::at_least(&e.rating, m))
                        || (!*kev && min_severity.is_none()))
            };
            let binaries: std::collections::BTreeSet<&str> = exposures
                .iter()
                .filter(wanted)
                .flat_map(|e| e.binaries.iter().map(String::as_str))
                .collect();
            inventory
                .map(|inv| {
                    inv.upgradable
                        .iter()
                        .filter(|u| binaries.contains(u.name.as_str()))
                        .map(|u| PlannedPackage {
                            target: PackageTarget {
                                name: u.name.clone(),
                                version: Some(u.candidate_version.clone()),
                            },
                            from_version: Some(u.installed_version.clone()),
                        })
                        .collect()
                })
                .unwrap_or_default()
        }
        Selection::Packages { packages } => packages
            .iter()
            .map(|t| {
                // No version asked: the device's own candidate, when the inventory knows it;
                // otherwise the agent resolves the candidate itself.
                let version = t.version.clone().or_else(|| {
                    inventory.and_then(|inv| {
                        inv.upgradable
                            .iter()
                            .find(|u| u.name == t.name)
                            .map(|u| u.candidate_version.clone())
                    })
                });
                PlannedPackage {
                    target: PackageTarget {
                        name: t.name.clone(),
                        version,
                    },
                    from_version: installed(&t.name),
                }
            })
            .collect(),
    };
    planned.sort_by(|a, b| a.target.name.cmp(&b.target.name));
    planned.dedup_by(|a, b| a.target.name == b.target.name);
    planned
}

/// Checks an explicit package list: names and versions as Debian and RPM allow them.
pub fn validate_packages(packages: &[PackageTarget]) -> Result<(), String> {
    if packages.is_empty() {
        return Err("no package named: give at least one --package NAME[=VERSION]".into());
    }
    for p in packages {
        let ok_name = !p.name.is_empty()
            && p.name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-._".contains(c))
            && p.name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphanumeric());
        if !ok_name {
            return Err(format!("invalid package name {:?}", p.name));
        }
        if let Some(v) = &p.version {
            let ok_version = !v.is_empty()
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.~:_^".contains(c));
            if !ok_version {
                return Err(format!("invalid version {v:?} for package {}", p.name));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use patchwarden_wire::agent::{InstalledPackage, UpgradablePackage};

    fn inventory() -> Inventory {
        let pkg = |name: &str, version: &str| InstalledPackage {
            name: name.into(),
            source: name.into(),
            version: version.into(),
            source_version: version.into(),
            arch: "amd64".into(),
            status: "ii".into(),
        };
        let up = |name: &str, from: &str, to: &str, security: bool| UpgradablePackage {
            name: name.into(),
            installed_version: from.into(),
            candidate_version: to.into(),
            arch: "amd64".into(),
            security,
            origins: vec![],
            held: false,
        };
        Inventory {
            packages: vec![
                pkg("openssl", "3.0.11-1"),
                pkg("pw-demo", "1.0"),
                pkg("bash", "5.2.15-2"),
            ],
            upgradable: vec![
                up("openssl", "3.0.11-1", "3.0.15-1~deb12u1", true),
                up("pw-demo", "1.0", "1.1", false),
            ],
            ..Default::default()
        }
    }

    fn names(p: &[PlannedPackage]) -> Vec<String> {
        p.iter()
            .map(|p| {
                format!(
                    "{}={}",
                    p.target.name,
                    p.target.version.clone().unwrap_or_default()
                )
            })
            .collect()
    }

    #[test]
    fn selections_plan_the_right_packages() {
        let inv = inventory();
        let cases: Vec<(Selection, Vec<&str>)> = vec![
            (Selection::Security, vec!["openssl=3.0.15-1~deb12u1"]),
            (
                Selection::AllUpdates,
                vec!["openssl=3.0.15-1~deb12u1", "pw-demo=1.1"],
            ),
            (
                Selection::Packages {
                    packages: vec![PackageTarget {
                        name: "pw-demo".into(),
                        version: None,
                    }],
                },
                vec!["pw-demo=1.1"],
            ),
            (
                Selection::Packages {
                    packages: vec![PackageTarget {
                        name: "bash".into(),
                        version: Some("5.2.15-3".into()),
                    }],
                },
                vec!["bash=5.2.15-3"],
            ),
            (
                Selection::Packages {
                    packages: vec![PackageTarget {
                        name: "absent".into(),
                        version: None,
                    }],
                },
                vec!["absent="],
            ),
        ];
        for (selection, want) in cases {
            assert_eq!(
                names(&plan_device(&selection, Some(&inv), &[])),
                want,
                "{selection:?}"
            );
        }
        assert!(plan_device(&Selection::Security, None, &[]).is_empty());
    }

    #[test]
    fn package_lists_are_validated() {
        let t = |n: &str, v: Option<&str>| {
            vec![PackageTarget {
                name: n.into(),
                version: v.map(Into::into),
            }]
        };
        assert!(validate_packages(&t("libc6", Some("2.36-9+deb12u4"))).is_ok());
        assert!(validate_packages(&t("openssh-server", Some("1:9.2p1-2+deb12u3"))).is_ok());
        assert!(validate_packages(&t("rm -rf", None)).is_err());
        assert!(validate_packages(&t("-x", None)).is_err());
        assert!(validate_packages(&t("a", Some("1;reboot"))).is_err());
        assert!(validate_packages(&[]).is_err());
    }
}
