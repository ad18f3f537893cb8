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
use crate::index::{AdvisoryIndex, Entry, EntryState, PackageKey};
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
    match_device_report(index, facts).exposures
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
    let Some(release) = report.release.clone() else {
        return report;
    };
    let Some(pkgs) = index.releases.get(&release) else {
        return report;
    };
    let scheme = release.distro.scheme();
    let running = facts.running_kernel.as_deref();

    // 1. Group the installed binaries that the index knows, parsing each version once.
    let mut groups: Vec<Group<'_>> = Vec::new();
    // Parsed versions: (as installed, as compared for the fix (backport-stripped)).
    let mut versions: Vec<(Version, Option<Version>)> = Vec::new();
    let mut group_of: crate::index::FastMap<&str, usize> = Default::default();
    for p in &facts.installed {
        // Kernel filter first: it is cheap and decides whether to look at all.
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
        let (name, signed) = lookup_name(index, &release, &p.name, p.source.as_deref());
        let Some((package, entries)) = pkgs.get_key_value(&*name) else {
            continue;
        };
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
                report.skipped.push((p.name.clone(), e.to_string()));
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
    for g in &groups {
        for entry in g.entries {
            let mut binaries: Vec<String> = Vec::new();
            let mut lowest: Option<(&Version, Verdict<'_>)> = None;
            for (bin, vi) in &g.members {
                let (installed, effective) = &versions[*vi];
                let Some(verdict) = evaluate(&entry.state, effective.as_ref().unwrap_or(installed))
                else {
                    continue;
                };
                if !binaries.iter().any(|b| b == bin) {
                    binaries.push((*bin).to_owned());
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
                    .get_or_insert_with(|| candidate_versions(index, &release, facts))
                    .get(g.package)
                    .and_then(|cands| {
                        cands
                            .iter()
                            .filter(|c| c.try_cmp(fixed).is_some_and(|o| o != Ordering::Less))
                            .max_by(|a, b| a.try_cmp(b).unwrap_or(Ordering::Equal))
                    })
                    .map(|c| c.as_str().to_owned()),
                _ => None,
            };
            let info = index.cves.get(&entry.cve);
            let severity = match info.and_then(|i| i.cvss.clone()) {
                Some(c) => Severity {
                    rating: c.rating(),
                    cvss: Some(c),
                    urgency: entry.urgency.clone(),
                },
                None => Severity {
                    rating: entry
                        .urgency
                        .as_deref()
                        .map(Rating::from_distro_urgency)
                        .unwrap_or(Rating::Unknown),
                    cvss: None,
                    urgency: entry.urgency.clone(),
                },
            };
            report.exposures.push(Exposure {
                cve: entry.cve.to_string(),
                advisory_ids: entry.advisory_ids.clone(),
                release: release.clone(),
                package: g.package.to_owned(),
                binaries,
                installed_version: installed.as_str().to_owned(),
                fix: verdict.to_fix(),
                fixed_by_update,
                severity,
                kev: info.and_then(|i| i.kev.clone()),
                epss: info.and_then(|i| i.epss),
                summary: info.and_then(|i| i.summary.clone()),
            });
        }
    }
    report
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
