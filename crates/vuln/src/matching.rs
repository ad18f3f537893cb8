//! Exposure matching: a device's facts (release, running kernel, installed packages, update
//! candidates) against the [`AdvisoryIndex`]. Pure and per device, so a new inventory
//! rematches one device and a feed change rematches only devices with changed keys.
//!
//! Rules (each has a test in `tests/matching.rs`):
//! - Debian/Ubuntu advisories name SOURCE packages: a binary is matched by its source name
//!   and the SOURCE version is compared (libldb2 2:2.6.2+samba4.17.12… belongs to samba
//!   2:4.17.12…). Without a source version the binary version is used.
//! - Versions compare with the scheme's exact order (missing epoch = 0, `~` sorts first).
//! - A backport `X~bpoN+M` is built from `X` and carries its fixes: it is compared as `X`.
//! - Kernels: versioned kernel packages (`linux-image-6.1.0-18-amd64`, rpm `kernel-core`)
//!   are exposed only for the running kernel; kernel metapackages carry no code and are never
//!   exposed, but their update candidates count as fixes. Debian's signed kernel source
//!   (`linux-signed-amd64`, version `6.1.76+1`) is matched as `linux` `6.1.76-1`.

use crate::feeds::{Epss, KevEntry};
use crate::index::{AdvisoryIndex, CveInfo, Entry, EntryState, PackageKey, Quick};
use crate::model::{Distro, Rating, Release, Severity};
use crate::version::{Scheme, Version};
use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InstalledPackage {
    /// Binary package name.
    pub name: String,
    /// Binary version (`dpkg ${Version}`, rpm `[E:]V-R`, apk `V-rN`).
    pub version: String,
    /// Source package (`dpkg ${source:Package}`, rpm SOURCERPM name, apk origin).
    pub source: Option<String>,
    /// Source version (`dpkg ${source:Version}`); `None` = same as `version`.
    pub source_version: Option<String>,
}

/// An available update on the device (from `apt-get -s upgrade`, `dnf check-update`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UpdateCandidate {
    pub name: String,
    pub version: String,
    pub source: Option<String>,
    pub source_version: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeviceFacts {
    /// os-release `ID` (`debian`, `ubuntu`, `alpine`, `rhel`, `rocky`, `almalinux`).
    pub os_id: String,
    /// os-release `VERSION_ID` (`12`, `22.04`, `3.19.1`, `9.4`).
    pub os_version_id: Option<String>,
    /// os-release `VERSION_CODENAME` (`bookworm`).
    pub os_codename: Option<String>,
    /// `uname -r` (`6.1.0-18-amd64`, `5.14.0-427.13.1.el9_4.x86_64`); `None` = unknown, and
    /// then every installed kernel counts as exposed.
    pub running_kernel: Option<String>,
    pub installed: Vec<InstalledPackage>,
    pub upgradable: Vec<UpdateCandidate>,
}

impl DeviceFacts {
    pub fn release(&self) -> Option<Release> {
        Release::from_os_release(
            &self.os_id,
            self.os_version_id.as_deref(),
            self.os_codename.as_deref(),
        )
    }
}

/// The remediation state of an exposure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fix {
    /// Fixed in this version (of the package named by the exposure: the source for Debian).
    Fixed { version: String },
    /// Affected and no fixed version exists yet.
    NoFixYet,
    /// The distribution decided not to fix it in this release.
    WillNotFix { reason: String },
    /// The distribution has not triaged this release yet.
    Undetermined,
}

/// A device is exposed to a CVE through a package.
#[derive(Debug, Clone, PartialEq)]
pub struct Exposure {
    pub cve: String,
    pub advisory_ids: Vec<String>,
    pub release: Release,
    /// The package the advisory names (source for Debian/Ubuntu/Alpine).
    pub package: String,
    /// Installed binary packages through which the device is exposed.
    pub binaries: Vec<String>,
    /// The installed version compared (the lowest, if binaries disagree).
    pub installed_version: String,
    pub fix: Fix,
    /// An update candidate on this device whose version is >= the fixed version.
    pub fixed_by_update: Option<String>,
    pub severity: Severity,
    pub kev: Option<KevEntry>,
    pub epss: Option<Epss>,
    pub summary: Option<String>,
}

impl Exposure {
    pub fn key(&self) -> PackageKey {
        PackageKey {
            release: self.release.clone(),
            package: self.package.clone(),
        }
    }
}

/// The keys under which a device's packages are looked up: the caller indexes devices by
/// these to find whom a [`crate::ChangedKeys`] concerns.
pub fn device_keys(index: &AdvisoryIndex, facts: &DeviceFacts) -> Vec<PackageKey> {
    let Some(release) = facts.release() else {
        return Vec::new();
    };
    let mut keys: Vec<PackageKey> = facts
        .installed
        .iter()
        .map(|p| PackageKey {
            release: release.clone(),
            package: lookup_name(index, &release, p.name.as_str(), p.source.as_deref())
                .0
                .into_owned(),
        })
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

enum KernelPkg<'a> {
    NotKernel,
    Meta,
    Versioned(&'a str),
}

const DEB_KERNEL_PREFIXES: &[&str] = &[
    "linux-image-",
    "linux-modules-extra-",
    "linux-modules-",
    "linux-headers-",
    "linux-tools-",
    "linux-cloud-tools-",
    "linux-buildinfo-",
];

const RPM_KERNEL_NAMES: &[&str] = &[
    "kernel",
    "kernel-core",
    "kernel-modules",
    "kernel-modules-core",
    "kernel-modules-extra",
    "kernel-devel",
    "kernel-rt",
    "kernel-rt-core",
];

fn deb_kernel(name: &str) -> KernelPkg<'_> {
    for p in DEB_KERNEL_PREFIXES {
        if let Some(rest) = name.strip_prefix(p) {
            let rest = rest.strip_prefix("unsigned-").unwrap_or(rest);
            let rest = rest.strip_suffix("-dbg").unwrap_or(rest);
            let rest = rest.strip_suffix("-unsigned").unwrap_or(rest);
            return if rest.starts_with(|c: char| c.is_ascii_digit()) {
                KernelPkg::Versioned(rest)
            } else {
                KernelPkg::Meta
            };
        }
    }
    KernelPkg::NotKernel
}

/// The package name an advisory would use for this installed package, and a version
/// transform to apply (Debian signed kernels).
fn lookup_name<'a>(
    index: &'a AdvisoryIndex,
    release: &Release,
    binary: &'a str,
    source: Option<&'a str>,
) -> (Cow<'a, str>, bool) {
    match release.distro {
        Distro::Debian | Distro::Ubuntu => {
            let src = match source {
                Some(s) => s,
                None => index
                    .binary_sources
                    .get(release)
                    .and_then(|m| m.get(binary))
                    .map(|s| &**s)
                    .unwrap_or(binary),
            };
            normalize_deb_source(release.distro, src)
        }
        Distro::Alpine => (Cow::Borrowed(source.unwrap_or(binary)), false),
        Distro::Rhel | Distro::Rocky | Distro::Alma => (Cow::Borrowed(binary), false),
    }
}

/// Debian's `linux-signed-<arch>` → `linux` (its version `X+N` stands for `X-N`); Ubuntu's
/// `linux-signed[-flavour]` → `linux[-flavour]` (same version).
fn normalize_deb_source(distro: Distro, src: &str) -> (Cow<'_, str>, bool) {
    if let Some(rest) = src.strip_prefix("linux-signed") {
        if distro == Distro::Debian && matches!(rest, "-amd64" | "-arm64" | "-i386") {
            return (Cow::Borrowed("linux"), true);
        }
        if distro == Distro::Ubuntu {
            return (Cow::Owned(format!("linux{rest}")), false);
        }
    }
    (Cow::Borrowed(src), false)
}

fn signed_to_linux_version(v: &str) -> String {
    v.replacen('+', "-", 1)
}

/// Strips a Debian backport suffix: `1.2-3~bpo12+1` → `1.2-3`.
fn strip_bpo(v: &str) -> &str {
    match v.find("~bpo") {
        Some(i) => &v[..i],
        None => v,
    }
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

/// Matches one device. Packages whose version does not parse under the release's scheme are
/// skipped (see [`match_device_report`] to see them).
/// Exposures come ordered by package, then CVE.
pub fn match_device(index: &AdvisoryIndex, facts: &DeviceFacts) -> Vec<Exposure> {
    let mut out = Vec::new();
    match_device_into(index, facts, &mut out);
    out
}

/// [`match_device`] into a caller-owned buffer, for matching many devices in a row: `out` is
/// overwritten with this device's exposures, and the exposures already in it are reused in
/// place (their strings and vectors keep their capacity), so that after the first devices
/// matching allocates almost nothing. Same result as [`match_device`].
pub fn match_device_into(index: &AdvisoryIndex, facts: &DeviceFacts, out: &mut Vec<Exposure>) {
    let mut skipped = Vec::new();
    let n = match facts.release() {
        Some(release) => match_core(index, facts, &release, out, &mut skipped),
        None => 0,
    };
    out.truncate(n);
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct MatchReport {
    pub exposures: Vec<Exposure>,
    /// `None` when the OS is not a supported release (then there are no exposures).
    pub release: Option<Release>,
    /// Installed packages skipped: (binary name, reason).
    pub skipped: Vec<(String, String)>,
}

pub fn match_device_report(index: &AdvisoryIndex, facts: &DeviceFacts) -> MatchReport {
    let mut report = MatchReport {
        release: facts.release(),
        ..MatchReport::default()
    };
    if let Some(release) = &report.release {
        let n = match_core(
            index,
            facts,
            release,
            &mut report.exposures,
            &mut report.skipped,
        );
        report.exposures.truncate(n);
    }
    report
}

fn set_str(dst: &mut String, src: &str) {
    dst.clear();
    dst.push_str(src);
}

fn set_strs<'a>(dst: &mut Vec<String>, src: impl ExactSizeIterator<Item = &'a str>) {
    dst.truncate(src.len());
    for (i, s) in src.enumerate() {
        match dst.get_mut(i) {
            Some(d) => set_str(d, s),
            None => dst.push(s.to_owned()),
        }
    }
}

/// Writes exposure number `n` of the output: in place over an old one when there is one.
#[allow(clippy::too_many_arguments)]
fn put_exposure(
    out: &mut Vec<Exposure>,
    n: usize,
    entry: &Entry,
    info: Option<&CveInfo>,
    release: &Release,
    package: &str,
    binaries: &[&str],
    installed: &str,
    verdict: &Verdict<'_>,
    fixed_by_update: Option<&str>,
) {
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
    let Some(e) = out.get_mut(n) else {
        out.push(Exposure {
            cve: entry.cve.to_string(),
            advisory_ids: entry.advisory_ids.clone(),
            release: release.clone(),
            package: package.to_owned(),
            binaries: binaries.iter().map(|b| (*b).to_owned()).collect(),
            installed_version: installed.to_owned(),
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
        return;
    };
    set_str(&mut e.cve, &entry.cve);
    set_strs(
        &mut e.advisory_ids,
        entry.advisory_ids.iter().map(String::as_str),
    );
    if e.release.distro != release.distro || e.release.version != release.version {
        e.release.clone_from(release);
    }
    set_str(&mut e.package, package);
    set_strs(&mut e.binaries, binaries.iter().copied());
    set_str(&mut e.installed_version, installed);
    match (&mut e.fix, verdict) {
        (Fix::Fixed { version }, Verdict::Fixed(v)) => set_str(version, v.as_str()),
        (fix, v) => *fix = v.to_fix(),
    }
    match (&mut e.fixed_by_update, fixed_by_update) {
        (Some(d), Some(s)) => set_str(d, s),
        (d, s) => *d = s.map(str::to_owned),
    }
    e.severity.rating = rating;
    match cvss {
        Some(c) => e.severity.cvss = Some(c.clone()),
        None => e.severity.cvss = None,
    }
    match (&mut e.severity.urgency, entry.urgency.as_deref()) {
        (Some(d), Some(s)) => set_str(d, s),
        (d, s) => *d = s.map(str::to_owned),
    }
    e.kev = info.and_then(|i| i.kev.clone());
    e.epss = info.and_then(|i| i.epss);
    match (&mut e.summary, info.and_then(|i| i.summary.as_deref())) {
        (Some(d), Some(s)) => set_str(d, s),
        (d, s) => *d = s.map(str::to_owned),
    }
}

/// Matches into `out` from index 0 (reusing what is there); returns the number of exposures
/// written (the caller truncates).
fn match_core(
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
    let mut group_of: crate::index::FastMap<&str, usize> = Default::default();
    group_of.reserve(facts.installed.len().min(pkgs.len()));
    for p in &facts.installed {
        let (name, signed) = lookup_name(index, release, &p.name, p.source.as_deref());
        let Some((package, entries)) = pkgs.get_key_value(&*name) else {
            continue;
        };
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
        let gi = *group_of.entry(&**package).or_insert_with(|| {
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
            put_exposure(
                out,
                n,
                entry,
                info,
                release,
                g.package,
                &binaries,
                installed.as_str(),
                &verdict,
                fixed_by_update,
            );
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

/// Whether an installed rpm kernel (`[E:]V-R`) is the running one (`V-R.ARCH`).
fn rpm_kernel_is_running(evr: &str, running: &str) -> bool {
    let vr = evr.split_once(':').map_or(evr, |(_, vr)| vr);
    running == vr
        || running
            .strip_prefix(vr)
            .is_some_and(|rest| rest.starts_with('.'))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::ParsedRange;

    #[test]
    fn quick_form_agrees_with_the_general_rules() {
        let vs = [
            "1.0-1",
            "1.0-1+deb12u1",
            "1.0-1+deb12u2",
            "1:1.0-1",
            "1.0~rc1-1",
            "1.0",
            "1.0-1~bpo12+1",
            "2:0.9-3",
            "1.0-01",
            "1.00-1",
            "1.0a-1",
            "1.0+really0.9-1",
            "0:1.0-1",
        ];
        let parse = |s: &str| Version::parse(Scheme::Deb, s).expect("valid");
        for f in vs {
            let state = EntryState::Affected {
                ranges: vec![ParsedRange {
                    introduced: None,
                    fixed: Some(parse(f)),
                    last_affected: None,
                }],
                versions: vec![],
            };
            let entry = Entry {
                cve: "CVE-2024-0001".into(),
                info: crate::index::NO_INFO,
                quick: Quick::of_for_tests(&state),
                advisory_ids: vec![],
                feed: crate::FeedKind::DebianTracker,
                state,
                urgency: None,
                name_kind: crate::model::NameKind::Source,
            };
            assert!(matches!(entry.quick, Quick::DebFixedIn { .. }), "{f}");
            let open = EntryState::Affected {
                ranges: vec![ParsedRange {
                    introduced: None,
                    fixed: None,
                    last_affected: None,
                }],
                versions: vec![],
            };
            assert!(matches!(Quick::of_for_tests(&open), Quick::AllAffected));
            let open_entry = Entry {
                quick: Quick::AllAffected,
                state: open,
                ..entry.clone()
            };
            for v in vs {
                let v = parse(v);
                assert_eq!(
                    evaluate_entry(&entry, &v).map(|x| x.to_fix()),
                    evaluate(&entry.state, &v).map(|x| x.to_fix()),
                    "installed {v}, fixed {f}"
                );
                assert_eq!(
                    evaluate_entry(&open_entry, &v).map(|x| x.to_fix()),
                    evaluate(&open_entry.state, &v).map(|x| x.to_fix()),
                );
            }
        }
    }
}
