//! The matcher as it was before [`super::Matcher`] (one device at a time, no memo), kept
//! as the reference of the differential test: both must give the same exposures.

use super::*;
use crate::index::FastMap;

/// [`match_device`] by the reference algorithm.
pub(crate) fn match_device(
    index: &AdvisoryIndex,
    facts: &DeviceFacts,
) -> (Vec<Exposure>, Vec<(String, String)>) {
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    if let Some(release) = facts.release() {
        match_core(index, facts, &release, &mut out, &mut skipped);
    }
    (out, skipped)
}

/// How an installed version is affected, borrowing from the index (no allocation).
enum Verdict<'a> {
    Fixed(&'a Version),
    NoFixYet,
    WillNotFix(&'a str),
    Undetermined,
}

impl Verdict<'_> {
    fn to_fix(&self) -> Fix {
        match self {
            Verdict::Fixed(v) => Fix::Fixed {
                version: v.as_str().to_owned(),
            },
            Verdict::NoFixYet => Fix::NoFixYet,
            Verdict::WillNotFix(r) => Fix::WillNotFix {
                reason: (*r).to_owned(),
            },
            Verdict::Undetermined => Fix::Undetermined,
        }
    }
}

/// Installed binaries grouped under one advisory package name.
struct Group<'a> {
    package: &'a str,
    entries: &'a [Entry],
    /// (binary name, index into the device's parsed versions).
    members: Vec<(&'a str, usize)>,
}

/// Matches into `out` from index 0 (reusing what is there); returns the number of exposures
/// written (the caller truncates).
pub(crate) fn match_core(
    index: &AdvisoryIndex,
    facts: &DeviceFacts,
    release: &Release,
    out: &mut Vec<Exposure>,
    skipped: &mut Vec<(String, String)>,
) -> usize {
    let mut n = 0;
    let Some(pkgs) = index.releases.get(release) else {
        return n;
    };
    let scheme = release.distro.scheme();
    let running = facts.running_kernel.as_deref();

    // 1. Group the installed binaries that the index knows, parsing each version once.
    let mut groups: Vec<Group<'_>> = Vec::new();
    // Parsed versions: (as installed, as compared for the fix (backport-stripped)).
    let mut versions: Vec<(Version, Option<Version>)> = Vec::new();
    let mut group_of: FastMap<&str, usize> = Default::default();
    group_of.reserve(facts.installed.len().min(pkgs.names.len()));
    for p in &facts.installed {
        let (name, signed) = lookup_name(index, release, &p.name, p.source.as_deref());
        let Some(key) = pkgs.key(&name) else {
            continue;
        };
        let (package, entries) = (pkgs.name(key), pkgs.entries(key));
        // Kernel filter after the lookup: most packages are not in the index, and then their
        // binary name (a cache miss per package) is not read at all.
        match scheme {
            Scheme::Deb => match deb_kernel(&p.name) {
                KernelPkg::Meta => continue,
                KernelPkg::Versioned(k) if running.is_some_and(|r| r != k) => continue,
                _ => {}
            },
            Scheme::Rpm if RPM_KERNEL_NAMES.contains(&p.name.as_str()) => {
                if let Some(r) = running {
                    if !rpm_kernel_is_running(&p.version, r) {
                        continue;
                    }
                }
            }
            _ => {}
        }
        let raw = match scheme {
            Scheme::Deb | Scheme::Apk => p.source_version.as_deref().unwrap_or(&p.version),
            Scheme::Rpm => &p.version,
        };
        let owned;
        let raw = if signed {
            owned = signed_to_linux_version(raw);
            owned.as_str()
        } else {
            raw
        };
        let gi = *group_of.entry(package).or_insert_with(|| {
            groups.push(Group {
                package,
                entries,
                members: Vec::new(),
            });
            groups.len() - 1
        });
        let group = &mut groups[gi];
        // Binaries of one source usually share the version: reuse the parse.
        if let Some(&(_, vi)) = group
            .members
            .iter()
            .find(|(_, vi)| versions[*vi].0.as_str() == raw)
        {
            group.members.push((&p.name, vi));
            continue;
        }
        let installed = match Version::parse(scheme, raw) {
            Ok(v) => v,
            Err(e) => {
                skipped.push((p.name.clone(), e.to_string()));
                continue;
            }
        };
        // A backport carries the fixes of the version it was built from.
        let effective = match scheme {
            Scheme::Deb if raw.contains("~bpo") => Version::parse(scheme, strip_bpo(raw)).ok(),
            _ => None,
        };
        versions.push((installed, effective));
        group.members.push((&p.name, versions.len() - 1));
    }
    // Output order: by package, then CVE (entries are sorted by CVE in the index).
    groups.sort_unstable_by(|a, b| a.package.cmp(b.package));

    // 2. Evaluate each (package, CVE) once per distinct installed version.
    let mut candidates: Option<HashMap<String, Vec<Version>>> = None;
    let mut binaries: Vec<&str> = Vec::new();
    for g in &groups {
        for entry in g.entries {
            binaries.clear();
            let mut lowest: Option<(&Version, Verdict<'_>)> = None;
            for (bin, vi) in &g.members {
                let (installed, effective) = &versions[*vi];
                let Some(verdict) = evaluate_entry(entry, effective.as_ref().unwrap_or(installed))
                else {
                    continue;
                };
                if !binaries.contains(bin) {
                    binaries.push(bin);
                }
                if lowest
                    .as_ref()
                    .is_none_or(|(l, _)| installed.try_cmp(l) == Some(Ordering::Less))
                {
                    lowest = Some((installed, verdict));
                }
            }
            let Some((installed, verdict)) = lowest else {
                continue;
            };
            let fixed_by_update = match verdict {
                Verdict::Fixed(fixed) => candidates
                    .get_or_insert_with(|| candidate_versions(index, release, facts))
                    .get(g.package)
                    .and_then(|cands| {
                        cands
                            .iter()
                            .filter(|c| c.try_cmp(fixed).is_some_and(|o| o != Ordering::Less))
                            .max_by(|a, b| a.try_cmp(b).unwrap_or(Ordering::Equal))
                    })
                    .map(Version::as_str),
                _ => None,
            };
            let info = index.infos.get(entry.info as usize);
            let (rating, cvss) = match info.and_then(|i| i.cvss.as_ref()) {
                Some(c) => (c.rating(), Some(c)),
                None => (
                    entry
                        .urgency
                        .as_deref()
                        .map(Rating::from_distro_urgency)
                        .unwrap_or(Rating::Unknown),
                    None,
                ),
            };
            out.push(Exposure {
                cve: entry.cve.to_string(),
                advisory_ids: entry.advisory_ids.clone(),
                release: release.clone(),
                package: g.package.to_owned(),
                binaries: binaries.iter().map(|b| (*b).to_owned()).collect(),
                installed_version: installed.as_str().to_owned(),
                fix: verdict.to_fix(),
                fixed_by_update: fixed_by_update.map(str::to_owned),
                severity: Severity {
                    rating,
                    cvss: cvss.cloned(),
                    urgency: entry.urgency.as_deref().map(str::to_owned),
                },
                kev: info.and_then(|i| i.kev.clone()),
                epss: info.and_then(|i| i.epss),
                summary: info.and_then(|i| i.summary.clone()),
            });
            n += 1;
        }
    }
    n
}
/// Update candidates by advisory package name, with the version to compare.
fn candidate_versions(
    index: &AdvisoryIndex,
    release: &Release,
    facts: &DeviceFacts,
) -> HashMap<String, Vec<Version>> {
    let scheme = release.distro.scheme();
    let mut out: HashMap<String, Vec<Version>> = HashMap::new();
    let mut installed_sources: Option<HashMap<&str, &str>> = None;
    for c in &facts.upgradable {
        // The candidate's source is the installed package's when the agent did not say.
        let source = match c.source.as_deref() {
            Some(s) => Some(s),
            None => installed_sources
                .get_or_insert_with(|| {
                    facts
                        .installed
                        .iter()
                        .filter_map(|p| Some((p.name.as_str(), p.source.as_deref()?)))
                        .collect()
                })
                .get(c.name.as_str())
                .copied(),
        };
        let (name, signed) = lookup_name(index, release, &c.name, source);
        let raw = match scheme {
            Scheme::Deb | Scheme::Apk => c.source_version.as_deref().unwrap_or(&c.version),
            Scheme::Rpm => &c.version,
        };
        let raw = if signed {
            signed_to_linux_version(raw)
        } else {
            raw.to_owned()
        };
        if let Ok(v) = Version::parse(scheme, &raw) {
            out.entry(name.into_owned()).or_default().push(v);
        }
    }
    out
}

/// [`evaluate`] for an entry, by its quick form when it has one (same result).
fn evaluate_entry<'a>(entry: &'a Entry, v: &Version) -> Option<Verdict<'a>> {
    if let Quick::AllAffected = entry.quick {
        return Some(Verdict::NoFixYet);
    }
    if let Quick::DebFixedIn {
        epoch,
        upstream_len,
        revision_len,
        bytes,
    } = &entry.quick
    {
        if let Some((ev, uv, rv)) = v.deb_parts() {
            let u = usize::from(*upstream_len);
            let r = usize::from(*revision_len);
            let less = ev
                .cmp(epoch)
                .then_with(|| crate::deb::verrevcmp(uv, &bytes[..u]))
                .then_with(|| crate::deb::verrevcmp(rv, &bytes[u..u + r]))
                == Ordering::Less;
            if !less {
                return None;
            }
            // Affected: the fixed version (cold) is read only now.
            if let EntryState::Affected { ranges, .. } = &entry.state {
                if let Some(f) = ranges.first().and_then(|r| r.fixed.as_ref()) {
                    return Some(Verdict::Fixed(f));
                }
            }
        }
    }
    evaluate(&entry.state, v)
}

/// Whether `v` is affected by the statement, and how it is (or is not) fixed.
fn evaluate<'a>(state: &'a EntryState, v: &Version) -> Option<Verdict<'a>> {
    let lt = |a: &Version, b: &Version| a.try_cmp(b) == Some(Ordering::Less);
    let le = |a: &Version, b: &Version| a.try_cmp(b).is_some_and(|o| o != Ordering::Greater);
    match state {
        EntryState::NotAffected => None,
        EntryState::WillNotFix(reason) => Some(Verdict::WillNotFix(reason)),
        EntryState::Undetermined => Some(Verdict::Undetermined),
        EntryState::Affected { ranges, versions } => {
            let mut best: Option<&Version> = None;
            let mut unfixed = false;
            for r in ranges {
                if r.introduced.as_ref().is_some_and(|i| lt(v, i)) {
                    continue;
                }
                match (&r.fixed, &r.last_affected) {
                    (Some(f), _) => {
                        if lt(v, f) && best.is_none_or(|b| lt(f, b)) {
                            best = Some(f);
                        }
                    }
                    (None, Some(la)) => {
                        if le(v, la) {
                            unfixed = true;
                        }
                    }
                    (None, None) => unfixed = true,
                }
            }
            if let Some(f) = best {
                return Some(Verdict::Fixed(f));
            }
            if unfixed
                || versions
                    .iter()
                    .any(|x| x.try_cmp(v) == Some(Ordering::Equal))
            {
                return Some(Verdict::NoFixYet);
            }
            None
        }
    }
}
