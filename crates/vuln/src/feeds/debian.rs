//! The Debian Security Tracker JSON (<https://security-tracker.debian.org/tracker/data/json>):
//! `{ source: { issue: { description, scope, debianbug, releases: { codename: { status,
//! repositories, fixed_version, urgency, nodsa, nodsa_reason, next_point_update }}}}}`.
//!
//! Per release: `resolved` + `fixed_version` "0" = never affected; `resolved` + version =
//! fixed there; `open` = affected, no fix yet, unless `nodsa_reason` is `ignored` or the
//! urgency is `end-of-life` (then: will not fix); `undetermined` = not yet triaged. `nodsa`
//! with reason `postponed` or empty stays "no fix yet" (a later point release may fix it).

use super::{parse_json, FeedError, FeedKind, Location};
use crate::model::{AffectedRange, NameKind, PackageAdvisory, Release, Statement};
use crate::version::{Scheme, Version};
use serde::Deserialize;
use std::collections::BTreeMap;

const FEED: FeedKind = FeedKind::DebianTracker;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct DebianTrackerImport {
    pub advisories: Vec<PackageAdvisory>,
    pub packages: usize,
    pub issues: usize,
    /// Release codenames the tracker lists that no device can run (unknown names), counted.
    pub skipped_releases: BTreeMap<String, usize>,
}

#[derive(Deserialize)]
struct RawIssue {
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    scope: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    debianbug: Option<u64>,
    releases: BTreeMap<String, RawRelease>,
}

#[derive(Deserialize)]
struct RawRelease {
    status: String,
    #[serde(default)]
    #[allow(dead_code)]
    repositories: Option<BTreeMap<String, String>>,
    #[serde(default)]
    fixed_version: Option<String>,
    #[serde(default)]
    urgency: Option<String>,
    #[serde(default)]
    nodsa: Option<String>,
    #[serde(default)]
    nodsa_reason: Option<String>,
}

pub fn parse_debian_tracker(bytes: &[u8]) -> Result<DebianTrackerImport, FeedError> {
    let raw: BTreeMap<String, BTreeMap<String, RawIssue>> = parse_json(FEED, bytes)?;
    let mut out = DebianTrackerImport {
        packages: raw.len(),
        ..DebianTrackerImport::default()
    };
    for (pkg, issues) in &raw {
        for (issue, data) in issues {
            out.issues += 1;
            for (codename, rel) in &data.releases {
                let path = format!(".{pkg}.{issue}.releases.{codename}");
                let loc = |field: &str| Location {
                    id: Some(issue.clone()),
                    path: Some(format!("{path}{field}")),
                    ..Location::default()
                };
                let Some(release) = Release::debian_codename(codename) else {
                    *out.skipped_releases.entry(codename.clone()).or_default() += 1;
                    continue;
                };
                let urgency = rel.urgency.clone().filter(|u| !u.is_empty());
                let statement = match rel.status.as_str() {
                    "resolved" => match rel.fixed_version.as_deref() {
                        Some("0") => Statement::NotAffected,
                        Some(v) => {
                            Version::parse(Scheme::Deb, v).map_err(|e| {
                                FeedError::new(FEED, loc(".fixed_version"), e.to_string())
                            })?;
                            Statement::Affected {
                                ranges: vec![AffectedRange::fixed_in(v)],
                                versions: vec![],
                            }
                        }
                        None => {
                            return Err(FeedError::new(
                                FEED,
                                loc(".fixed_version"),
                                "status resolved without a fixed_version",
                            ))
                        }
                    },
                    "open" => {
                        let reason = rel.nodsa_reason.as_deref().unwrap_or("");
                        if reason == "ignored" {
                            Statement::WillNotFix {
                                reason: match rel.nodsa.as_deref() {
                                    Some(n) if !n.is_empty() => format!("ignored: {n}"),
                                    _ => "ignored".into(),
                                },
                            }
                        } else if urgency.as_deref() == Some("end-of-life") {
                            Statement::WillNotFix {
                                reason: "end-of-life: no longer supported in this release".into(),
                            }
                        } else {
                            Statement::Affected {
                                ranges: vec![AffectedRange::all()],
                                versions: vec![],
                            }
                        }
                    }
                    "undetermined" => Statement::Undetermined,
                    other => {
                        return Err(FeedError::new(
                            FEED,
                            loc(".status"),
                            format!(
                            "unknown status {other:?} (expected resolved, open or undetermined)"
                        ),
                        ))
                    }
                };
                out.advisories.push(PackageAdvisory {
                    feed: FEED,
                    advisory_id: issue.clone(),
                    cves: vec![issue.clone()],
                    release,
                    package: pkg.clone(),
                    name_kind: NameKind::Source,
                    statement,
                    urgency,
                    cvss: None,
                    binaries: vec![],
                    summary: data.description.clone(),
                });
            }
        }
    }
    Ok(out)
}
