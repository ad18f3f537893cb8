//! Alpine secdb JSON (<https://secdb.alpinelinux.org/v3.19/main.json>): per origin package,
//! `secfixes` maps the version that fixed something to the ids it fixed. Version "0" means
//! the package in this release was never affected. An entry may carry several ids separated
//! by spaces (`"CVE-2023-48795 GHSA-45x7-px36-x8w8"`).

use super::{parse_json, FeedError, FeedKind, Location};
use crate::model::{
    is_cve_id, AffectedRange, Distro, NameKind, PackageAdvisory, Release, Statement,
};
use crate::version::{Scheme, Version};
use serde::Deserialize;
use std::collections::BTreeMap;

const FEED: FeedKind = FeedKind::AlpineSecdb;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlpineImport {
    pub release: Option<Release>,
    pub reponame: String,
    pub advisories: Vec<PackageAdvisory>,
    pub packages: usize,
}

#[derive(Deserialize)]
struct RawSecdb {
    distroversion: String,
    reponame: String,
    packages: Vec<RawWrap>,
}

#[derive(Deserialize)]
struct RawWrap {
    pkg: RawPkg,
}

#[derive(Deserialize)]
struct RawPkg {
    name: String,
    #[serde(default)]
    secfixes: BTreeMap<String, Option<Vec<String>>>,
}

pub fn parse_alpine_secdb(bytes: &[u8]) -> Result<AlpineImport, FeedError> {
    let raw: RawSecdb = parse_json(FEED, bytes)?;
    let ver = raw.distroversion.trim();
    let ver = ver.strip_prefix('v').unwrap_or(ver);
    if ver.is_empty() {
        return Err(FeedError::new(
            FEED,
            Location {
                path: Some(".distroversion".into()),
                ..Location::default()
            },
            "empty distroversion",
        ));
    }
    let release = Release::new(Distro::Alpine, ver);
    let mut out = AlpineImport {
        release: Some(release.clone()),
        reponame: raw.reponame,
        packages: raw.packages.len(),
        advisories: Vec::new(),
    };
    for (i, w) in raw.packages.into_iter().enumerate() {
        let pkg = w.pkg;
        for (fixed, ids) in pkg.secfixes {
            let loc = || Location {
                record: Some(i),
                id: Some(pkg.name.clone()),
                path: Some(format!(".packages[{i}].pkg.secfixes.{fixed:?}")),
                ..Location::default()
            };
            let statement = if fixed == "0" {
                Statement::NotAffected
            } else {
                Version::parse(Scheme::Apk, &fixed)
                    .map_err(|e| FeedError::new(FEED, loc(), e.to_string()))?;
                Statement::Affected {
                    ranges: vec![AffectedRange::fixed_in(fixed.clone())],
                    versions: vec![],
                }
            };
            for entry in ids.unwrap_or_default() {
                let tokens: Vec<&str> = entry.split_whitespace().collect();
                let Some(first) = tokens.first() else {
                    return Err(FeedError::new(FEED, loc(), "empty advisory id"));
                };
                let cves: Vec<String> = tokens
                    .iter()
                    .filter(|t| is_cve_id(t))
                    .map(|t| t.to_string())
                    .collect();
                out.advisories.push(PackageAdvisory {
                    feed: FEED,
                    advisory_id: first.to_string(),
                    cves: if cves.is_empty() {
                        vec![first.to_string()]
                    } else {
                        cves
                    },
                    release: release.clone(),
                    package: pkg.name.clone(),
                    name_kind: NameKind::Source,
                    statement: statement.clone(),
                    urgency: None,
                    cvss: None,
                    binaries: vec![],
                    summary: None,
                });
            }
        }
    }
    Ok(out)
}
