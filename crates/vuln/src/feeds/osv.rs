//! OSV records (<https://ossf.github.io/osv-schema/>): one JSON object, a JSON array, a set of
//! files, or a zip archive (as osv.dev publishes per ecosystem). Distribution ecosystems
//! become [`PackageAdvisory`] records; other ecosystems are validated and counted, not kept.

use super::{from_value, parse_json, FeedError, FeedKind, Location};
use crate::model::{
    is_cve_id, AffectedRange, Cvss, Distro, NameKind, PackageAdvisory, Release, Statement,
};
use crate::version::Version;
use serde::Deserialize;
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};
use std::io::Read;

const FEED: FeedKind = FeedKind::Osv;

/// The result of parsing OSV input.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OsvImport {
    pub advisories: Vec<PackageAdvisory>,
    /// Records read (including withdrawn and other-ecosystem ones).
    pub records: usize,
    /// Ids of withdrawn records (kept out of `advisories`).
    pub withdrawn: Vec<String>,
    /// Affected entries skipped because their ecosystem is not a supported distribution
    /// release (e.g. `PyPI`, `Ubuntu:Pro:18.04:LTS`), counted per ecosystem.
    pub skipped_ecosystems: BTreeMap<String, usize>,
}

impl OsvImport {
    fn merge(&mut self, other: OsvImport) {
        self.advisories.extend(other.advisories);
        self.records += other.records;
        self.withdrawn.extend(other.withdrawn);
        for (k, v) in other.skipped_ecosystems {
            *self.skipped_ecosystems.entry(k).or_default() += v;
        }
    }
}

#[derive(Deserialize)]
struct RawRecord {
    id: String,
    modified: String,
    #[serde(default)]
    withdrawn: Option<String>,
    #[serde(default)]
    aliases: Option<Vec<String>>,
    #[serde(default)]
    upstream: Option<Vec<String>>,
    #[serde(default)]
    summary: Option<String>,
    #[serde(default)]
    details: Option<String>,
    #[serde(default)]
    severity: Option<Vec<RawSeverity>>,
    #[serde(default)]
    affected: Option<Vec<RawAffected>>,
}

#[derive(Deserialize)]
struct RawSeverity {
    #[serde(rename = "type")]
    kind: String,
    score: String,
}

#[derive(Deserialize)]
struct RawAffected {
    #[serde(default)]
    package: Option<RawPackage>,
    #[serde(default)]
    severity: Option<Vec<RawSeverity>>,
    #[serde(default)]
    ranges: Option<Vec<RawRange>>,
    #[serde(default)]
    versions: Option<Vec<String>>,
    #[serde(default)]
    ecosystem_specific: Option<Value>,
    #[serde(default)]
    database_specific: Option<Value>,
}

#[derive(Deserialize)]
struct RawPackage {
    ecosystem: String,
    name: String,
}

#[derive(Deserialize)]
struct RawRange {
    #[serde(rename = "type")]
    kind: String,
    events: Vec<RawEvent>,
}

#[derive(Deserialize)]
struct RawEvent {
    #[serde(default)]
    introduced: Option<String>,
    #[serde(default)]
    fixed: Option<String>,
    #[serde(default)]
    last_affected: Option<String>,
    #[serde(default)]
    limit: Option<String>,
}

#[derive(Deserialize)]
struct RawBinary {
    binary_name: String,
    #[serde(default)]
    binary_version: Option<String>,
}

/// The release an OSV ecosystem string names, `None` when unsupported. `Red Hat` streams
/// other than `enterprise_linux:N` (EUS, AUS, ...) keep their stream in the version so that
/// they only match devices that say they run it.
pub fn release_of_ecosystem(ecosystem: &str) -> Option<Release> {
    let mut parts = ecosystem.split(':');
    let name = parts.next()?;
    let rest: Vec<&str> = parts.collect();
    let first = rest.first().copied().filter(|s| !s.is_empty());
    match name {
        "Debian" => Some(Release::new(Distro::Debian, first?)),
        // `Ubuntu:22.04:LTS`, `Ubuntu:24.10`; `Ubuntu:Pro:...` needs a subscription: skipped.
        "Ubuntu" if first? != "Pro" => Some(Release::new(Distro::Ubuntu, first?)),
        "Alpine" => Some(Release::new(
            Distro::Alpine,
            first?.strip_prefix('v').unwrap_or(first?),
        )),
        "Rocky Linux" => Some(Release::new(Distro::Rocky, first?)),
        "AlmaLinux" => Some(Release::new(Distro::Alma, first?)),
        "Red Hat" => {
            // `Red Hat:enterprise_linux:9::baseos`
            let stream = first?;
            let ver = rest.get(1).copied().filter(|s| !s.is_empty())?;
            if stream == "enterprise_linux" {
                Some(Release::new(Distro::Rhel, ver))
            } else {
                Some(Release::new(Distro::Rhel, format!("{stream}:{ver}")))
            }
        }
        _ => None,
    }
}

/// Parses one OSV JSON document: a single record or an array of records.
pub fn parse_osv(bytes: &[u8]) -> Result<OsvImport, FeedError> {
    let value: Value = parse_json(FEED, bytes)?;
    let mut out = OsvImport::default();
    let mut seen = HashSet::new();
    match value {
        Value::Array(records) => {
            for (i, v) in records.into_iter().enumerate() {
                out.merge(parse_value(v, Some(i), &mut seen)?);
            }
        }
        v @ Value::Object(_) => out.merge(parse_value(v, None, &mut seen)?),
        _ => {
            return Err(FeedError::new(
                FEED,
                Location::default(),
                "expected an OSV record (object) or an array of records",
            ))
        }
    }
    Ok(out)
}

/// Parses a set of OSV files (`(name, bytes)`, e.g. a directory read by the caller). Every
/// file must parse; errors name the file. A record id present twice is an error.
pub fn parse_osv_files<'a>(
    files: impl IntoIterator<Item = (&'a str, &'a [u8])>,
) -> Result<OsvImport, FeedError> {
    let mut out = OsvImport::default();
    let mut seen = HashSet::new();
    for (name, bytes) in files {
        out.merge(parse_file(name, bytes, &mut seen)?);
    }
    Ok(out)
}

/// Parses a zip archive of OSV records (`*.json` entries; others are ignored).
pub fn parse_osv_zip(bytes: &[u8]) -> Result<OsvImport, FeedError> {
    let zip_err = |e: zip::result::ZipError, file: Option<String>| {
        FeedError::new(
            FEED,
            Location {
                file,
                ..Location::default()
            },
            format!("unreadable zip archive: {e}"),
        )
    };
    let mut archive =
        zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|e| zip_err(e, None))?;
    let mut out = OsvImport::default();
    let mut seen = HashSet::new();
    let mut buf = Vec::new();
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(|e| zip_err(e, None))?;
        let name = entry
            .name()
            .map_err(|e| zip_err(e, Some(format!("entry {i}"))))?
            .into_owned();
        if entry.is_dir() || !name.ends_with(".json") {
            continue;
        }
        buf.clear();
        entry.read_to_end(&mut buf).map_err(|e| {
            FeedError::new(
                FEED,
                Location {
                    file: Some(name.clone()),
                    record: Some(i),
                    ..Location::default()
                },
                format!("unreadable zip entry: {e}"),
            )
        })?;
        out.merge(parse_file(&name, &buf, &mut seen)?);
    }
    Ok(out)
}

fn parse_file(
    name: &str,
    bytes: &[u8],
    seen: &mut HashSet<String>,
) -> Result<OsvImport, FeedError> {
    let value: Value = parse_json(FEED, bytes).map_err(|e| e.in_file(name))?;
    let mut out = OsvImport::default();
    match value {
        Value::Array(records) => {
            for (i, v) in records.into_iter().enumerate() {
                out.merge(parse_value(v, Some(i), seen).map_err(|e| e.in_file(name))?);
            }
        }
        v => out.merge(parse_value(v, None, seen).map_err(|e| e.in_file(name))?),
    }
    Ok(out)
}

fn parse_value(
    v: Value,
    record: Option<usize>,
    seen: &mut HashSet<String>,
) -> Result<OsvImport, FeedError> {
    let id = v.get("id").and_then(Value::as_str).map(str::to_owned);
    let raw: RawRecord = from_value(FEED, v, record, id.clone())?;
    let loc = |path: String| Location {
        record,
        id: Some(raw.id.clone()),
        path: Some(path),
        ..Location::default()
    };
    if raw.id.trim().is_empty() {
        return Err(FeedError::new(FEED, loc(".id".into()), "empty id"));
    }
    if raw.modified.trim().is_empty() {
        return Err(FeedError::new(
            FEED,
            loc(".modified".into()),
            "empty modified timestamp",
        ));
    }
    if !seen.insert(raw.id.clone()) {
        return Err(FeedError::new(
            FEED,
            loc(".id".into()),
            "duplicate record id",
        ));
    }
    let mut out = OsvImport {
        records: 1,
        ..OsvImport::default()
    };

    let mut cves: Vec<String> = Vec::new();
    let candidates = std::iter::once(&raw.id)
        .chain(raw.aliases.iter().flatten())
        .chain(raw.upstream.iter().flatten());
    for c in candidates {
        if is_cve_id(c) && !cves.contains(c) {
            cves.push(c.clone());
        }
    }
    if cves.is_empty() {
        cves.push(raw.id.clone());
    }

    let (record_cvss, record_urgency) =
        severities(raw.severity.as_deref().unwrap_or_default(), &|p| {
            loc(format!(".severity{p}"))
        })?;

    let mut advisories = Vec::new();
    for (ai, aff) in raw.affected.iter().flatten().enumerate() {
        let apath = format!(".affected[{ai}]");
        let Some(pkg) = &aff.package else {
            // Schema allows affected entries without a package (git-only): nothing to match.
            continue;
        };
        let Some(release) = release_of_ecosystem(&pkg.ecosystem) else {
            *out.skipped_ecosystems
                .entry(pkg.ecosystem.clone())
                .or_default() += 1;
            // Still validate the structure of the events, so a broken record is rejected.
            for (ri, r) in aff.ranges.iter().flatten().enumerate() {
                for (ei, e) in r.events.iter().enumerate() {
                    event_kind(e).map_err(|m| {
                        FeedError::new(FEED, loc(format!("{apath}.ranges[{ri}].events[{ei}]")), m)
                    })?;
                }
            }
            continue;
        };
        if pkg.name.trim().is_empty() {
            return Err(FeedError::new(
                FEED,
                loc(format!("{apath}.package.name")),
                "empty package name",
            ));
        }
        let scheme = release.distro.scheme();
        let check = |v: &str, path: String| -> Result<(), FeedError> {
            Version::parse(scheme, v)
                .map(|_| ())
                .map_err(|e| FeedError::new(FEED, loc(path), e.to_string()))
        };

        let mut ranges = Vec::new();
        for (ri, r) in aff.ranges.iter().flatten().enumerate() {
            let rpath = format!("{apath}.ranges[{ri}]");
            // Validate every event first, whatever the range type.
            let mut kinds = Vec::new();
            for (ei, e) in r.events.iter().enumerate() {
                kinds.push(
                    event_kind(e).map_err(|m| {
                        FeedError::new(FEED, loc(format!("{rpath}.events[{ei}]")), m)
                    })?,
                );
            }
            if r.kind != "ECOSYSTEM" {
                continue;
            }
            let mut current: Option<AffectedRange> = None;
            for (ei, (kind, v)) in kinds.into_iter().enumerate() {
                let epath = format!("{rpath}.events[{ei}].{kind}");
                if !(kind == "introduced" && v == "0") {
                    check(v, epath.clone())?;
                }
                match kind {
                    "introduced" => {
                        if let Some(open) = current.take() {
                            ranges.push(open);
                        }
                        current = Some(AffectedRange {
                            introduced: (v != "0").then(|| v.to_owned()),
                            fixed: None,
                            last_affected: None,
                        });
                    }
                    "fixed" | "last_affected" => {
                        let Some(mut r) = current.take() else {
                            return Err(FeedError::new(
                                FEED,
                                loc(epath),
                                format!("{kind} event without a preceding introduced event"),
                            ));
                        };
                        if kind == "fixed" {
                            r.fixed = Some(v.to_owned());
                        } else {
                            r.last_affected = Some(v.to_owned());
                        }
                        ranges.push(r);
                    }
                    _ => {} // limit: only meaningful for GIT ranges
                }
            }
            if let Some(open) = current.take() {
                ranges.push(open);
            }
        }
        let mut versions = Vec::new();
        for (vi, v) in aff.versions.iter().flatten().enumerate() {
            check(v, format!("{apath}.versions[{vi}]"))?;
            versions.push(v.clone());
        }

        let (aff_cvss, aff_urgency) =
            severities(aff.severity.as_deref().unwrap_or_default(), &|p| {
                loc(format!("{apath}.severity{p}"))
            })?;
        let urgency = aff_urgency
            .or_else(|| specific_urgency(aff.ecosystem_specific.as_ref()))
            .or_else(|| specific_urgency(aff.database_specific.as_ref()))
            .or_else(|| record_urgency.clone());

        let mut binaries = Vec::new();
        if let Some(bins) = aff
            .ecosystem_specific
            .as_ref()
            .and_then(|e| e.get("binaries"))
        {
            let bins: Vec<RawBinary> = from_value(FEED, bins.clone(), record, Some(raw.id.clone()))
                .map_err(|mut e| {
                    let inner = e.location.path.take().unwrap_or_default();
                    e.location.path = Some(format!("{apath}.ecosystem_specific.binaries{inner}"));
                    e
                })?;
            for (bi, b) in bins.into_iter().enumerate() {
                if let Some(v) = &b.binary_version {
                    check(
                        v,
                        format!("{apath}.ecosystem_specific.binaries[{bi}].binary_version"),
                    )?;
                }
                binaries.push((b.binary_name, b.binary_version.unwrap_or_default()));
            }
        }

        advisories.push(PackageAdvisory {
            feed: FEED,
            advisory_id: raw.id.clone(),
            cves: cves.clone(),
            release,
            package: pkg.name.clone(),
            name_kind: if release_is_source_keyed(&pkg.ecosystem) {
                NameKind::Source
            } else {
                NameKind::Binary
            },
            statement: Statement::Affected { ranges, versions },
            urgency,
            cvss: aff_cvss.or_else(|| record_cvss.clone()),
            binaries,
            summary: raw.summary.clone().or_else(|| {
                raw.details
                    .as_ref()
                    .map(|d| d.lines().next().unwrap_or("").to_owned())
            }),
        });
    }

    if raw.withdrawn.is_some() {
        out.withdrawn.push(raw.id.clone());
    } else {
        out.advisories = advisories;
    }
    Ok(out)
}

fn release_is_source_keyed(ecosystem: &str) -> bool {
    // Debian and Ubuntu OSV name source packages; Alpine names the origin (aport).
    ecosystem.starts_with("Debian")
        || ecosystem.starts_with("Ubuntu")
        || ecosystem.starts_with("Alpine")
}

fn event_kind(e: &RawEvent) -> Result<(&'static str, &str), String> {
    let set: Vec<(&'static str, &str)> = [
        ("introduced", &e.introduced),
        ("fixed", &e.fixed),
        ("last_affected", &e.last_affected),
        ("limit", &e.limit),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.as_deref().map(|v| (k, v)))
    .collect();
    match set.as_slice() {
        [one] => Ok(*one),
        [] => Err("event has none of introduced, fixed, last_affected, limit".into()),
        _ => Err("event has more than one of introduced, fixed, last_affected, limit".into()),
    }
}

/// CVSS v3 (highest base score wins) and a distribution word from a `severity[]` list.
fn severities(
    list: &[RawSeverity],
    loc: &dyn Fn(String) -> Location,
) -> Result<(Option<Cvss>, Option<String>), FeedError> {
    let mut cvss: Option<Cvss> = None;
    let mut word = None;
    for (i, s) in list.iter().enumerate() {
        match s.kind.as_str() {
            "CVSS_V3" => {
                let c = Cvss::parse(&s.score).map_err(|e| {
                    FeedError::new(
                        FEED,
                        loc(format!("[{i}].score")),
                        format!("invalid CVSS v3 vector {:?}: {e}", s.score),
                    )
                })?;
                if cvss
                    .as_ref()
                    .is_none_or(|old| c.base_score > old.base_score)
                {
                    cvss = Some(c);
                }
            }
            "Ubuntu" => word = Some(s.score.clone()),
            _ => {} // CVSS_V2, CVSS_V4: not used for the rating
        }
    }
    Ok((cvss, word))
}

fn specific_urgency(v: Option<&Value>) -> Option<String> {
    let v = v?;
    ["urgency", "severity", "priority"]
        .iter()
        .find_map(|k| v.get(k).and_then(Value::as_str).map(str::to_owned))
}
