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
use crate::index::{AdvisoryIndex, CveInfo, Entry, EntryState, PackageKey, Quick, ReleaseIndex};
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

/// How an installed version is affected by an entry. `Fixed(i)`: fixed in the fixed version
/// of the entry's range `i` (the lowest fixed version above the installed one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Fixed(u32),
    NoFixYet,
    WillNotFix,
    Undetermined,
}

/// The fixed version of range `i` of an entry.
fn fixed_version(entry: &Entry, i: u32) -> Option<&Version> {
    match &entry.state {
        EntryState::Affected { ranges, .. } => {
            ranges.get(i as usize).and_then(|r| r.fixed.as_ref())
        }
        _ => None,
    }
}

impl Verdict {
    fn to_fix(self, entry: &Entry) -> Fix {
        match self {
            Verdict::Fixed(i) => match fixed_version(entry, i) {
                Some(v) => Fix::Fixed {
                    version: v.as_str().to_owned(),
                },
                None => Fix::NoFixYet,
            },
            Verdict::NoFixYet => Fix::NoFixYet,
            Verdict::WillNotFix => Fix::WillNotFix {
                reason: match &entry.state {
                    EntryState::WillNotFix(r) => r.clone(),
                    _ => String::new(),
                },
            },
            Verdict::Undetermined => Fix::Undetermined,
        }
    }
}

/// Matches one device. Packages whose version does not parse under the release's scheme are
/// skipped (see [`match_device_report`] to see them).
/// Exposures come ordered by package, then CVE. To match many devices, use one [`Matcher`].
pub fn match_device(index: &AdvisoryIndex, facts: &DeviceFacts) -> Vec<Exposure> {
    let mut out = Vec::new();
    match_device_into(index, facts, &mut out);
    out
}

/// [`match_device`] into a caller-owned buffer: `out` is overwritten with this device's
/// exposures, and the exposures already in it are reused in place (their strings and vectors
/// keep their capacity). Same result as [`match_device`]. For many devices in a row,
/// [`Matcher`] (which also remembers verdicts across devices) is the fast path.
pub fn match_device_into(index: &AdvisoryIndex, facts: &DeviceFacts, out: &mut Vec<Exposure>) {
    Matcher::new(index).match_device(facts).write_into(out);
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
    let mut matcher = Matcher::new(index);
    let m = matcher.match_device(facts);
    MatchReport {
        exposures: m.to_vec(),
        release: m.release().cloned(),
        skipped: m.skipped().to_vec(),
    }
}

/// Above this many remembered (package, version) verdicts a [`Matcher`] starts afresh, so a
/// long batch stays bounded in memory (a few hundred bytes each: ~100 MB at most).
const MEMO_LIMIT: usize = 1 << 19;

/// No update candidate closes the exposure.
const NO_UPDATE: u32 = u32::MAX;

/// A remembered evaluation: one (release, package key, installed version text) against all
/// of the key's entries.
#[derive(Debug)]
struct Rec {
    release: u32,
    key: u32,
    /// The compared text (source version; Debian signed kernels already as `linux`'s),
    /// inline when short: checking a remembered record then reads no other memory.
    text: Text,
    /// The parsed version, or why it does not parse (the package is then skipped).
    installed: Result<Version, String>,
    /// Range in [`Matcher::rec_hits`]: (entry offset within the key, verdict) for every
    /// entry this version is affected by, in entry (CVE) order.
    hits: (u32, u32),
}

/// An installed binary whose package the index knows.
#[derive(Debug, Clone, Copy)]
struct Member {
    key: u32,
    /// Index into the device's `installed`.
    pkg: u32,
    rec: u32,
    /// The record's `hits` (copied: the exposures are built without reading the record).
    hits: (u32, u32),
}

/// The binaries of one device under one package key.
#[derive(Debug, Clone, Copy)]
struct GroupAcc {
    key: u32,
    count: u32,
    start: u32,
    fill: u32,
}

/// One exposure in compact form (ids into the index, the device's facts and the matcher).
#[derive(Debug, Clone, Copy)]
struct Hit {
    /// Position in the release's `entries`.
    entry: u32,
    key: u32,
    /// The lowest affected installed version's record.
    rec: u32,
    verdict: Verdict,
    /// Range in `bins`.
    bins: (u32, u32),
    /// Index into `cands`, or [`NO_UPDATE`].
    update: u32,
}

/// The fast path for matching many devices against one index (a full rematch, the
/// benchmark): keeps its buffers between devices and remembers, per (release, package,
/// installed version), which of the package's statements affect that version — fleets run
/// the same versions, so most packages of most devices are answered without parsing or
/// comparing a version. One `Matcher` per thread; its results borrow it until the next
/// device. Same results as [`match_device`] (a differential test checks it).
#[derive(Debug)]
pub struct Matcher<'i> {
    index: &'i AdvisoryIndex,
    memo: crate::index::FastMap<u64, u32>,
    recs: Vec<Rec>,
    rec_hits: Vec<(u32, Verdict)>,
    /// Per key id of the current device's release: (epoch, group index).
    stamps: Vec<(u32, u32)>,
    epoch: u32,
    groups: Vec<GroupAcc>,
    members: Vec<Member>,
    sorted: Vec<Member>,
    hits: Vec<Hit>,
    bins: Vec<u32>,
    cands: Vec<(u32, Version)>,
    skipped: Vec<(String, String)>,
    release: Option<Release>,
}

const INLINE_TEXT: usize = 30;

/// A version text, inline up to [`INLINE_TEXT`] bytes (almost every version), else boxed.
#[derive(Debug)]
enum Text {
    Inline { len: u8, bytes: [u8; INLINE_TEXT] },
    Boxed(Box<str>),
}

impl Text {
    fn new(s: &str) -> Text {
        if s.len() <= INLINE_TEXT {
            let mut bytes = [0u8; INLINE_TEXT];
            bytes[..s.len()].copy_from_slice(s.as_bytes());
            Text::Inline {
                len: s.len() as u8,
                bytes,
            }
        } else {
            Text::Boxed(s.into())
        }
    }

    fn is(&self, s: &str) -> bool {
        match self {
            Text::Inline { len, bytes } => bytes.get(..usize::from(*len)) == Some(s.as_bytes()),
            Text::Boxed(b) => **b == *s,
        }
    }
}

fn memo_hash(release: u32, key: u32, text: &str) -> u64 {
    use std::hash::Hasher;
    let mut h = crate::index::FxHasher::default();
    h.write(&((u64::from(release) << 32) | u64::from(key)).to_le_bytes());
    h.write(text.as_bytes());
    h.finish()
}

impl<'i> Matcher<'i> {
    pub fn new(index: &'i AdvisoryIndex) -> Self {
        Matcher {
            index,
            memo: Default::default(),
            recs: Vec::new(),
            rec_hits: Vec::new(),
            stamps: Vec::new(),
            epoch: 0,
            groups: Vec::new(),
            members: Vec::new(),
            sorted: Vec::new(),
            hits: Vec::new(),
            bins: Vec::new(),
            cands: Vec::new(),
            skipped: Vec::new(),
            release: None,
        }
    }

    /// The index this matcher reads.
    pub fn index(&self) -> &'i AdvisoryIndex {
        self.index
    }

    /// Matches one device; the result borrows this matcher until the next call.
    pub fn match_device<'m>(&'m mut self, facts: &'m DeviceFacts) -> Matches<'m> {
        self.run(facts);
        let index = self.index;
        let rel = self.release.as_ref().and_then(|r| index.releases.get(r));
        Matches {
            index,
            rel,
            release: self.release.as_ref(),
            facts,
            hits: if rel.is_some() { &self.hits } else { &[] },
            bins: &self.bins,
            recs: &self.recs,
            cands: &self.cands,
            skipped: &self.skipped,
        }
    }

    /// The record of (key, text), evaluated now unless remembered.
    fn rec(&mut self, rel: &ReleaseIndex, key: u32, text: &str, scheme: Scheme) -> u32 {
        let h = memo_hash(rel.id, key, text);
        let cached = self.memo.get(&h).copied();
        if let Some(r) = cached {
            let rec = &self.recs[r as usize];
            if rec.key == key && rec.release == rel.id && rec.text.is(text) {
                return r;
            }
        }
        let installed = Version::parse(scheme, text).map_err(|e| e.to_string());
        let start = self.rec_hits.len() as u32;
        if let Ok(v) = &installed {
            // A backport carries the fixes of the version it was built from.
            let effective = match scheme {
                Scheme::Deb if text.contains("~bpo") => {
                    Version::parse(scheme, strip_bpo(text)).ok()
                }
                _ => None,
            };
            let v = effective.as_ref().unwrap_or(v);
            for (off, e) in rel.entries(key).iter().enumerate() {
                if let Some(verdict) = evaluate_entry(e, v) {
                    self.rec_hits.push((off as u32, verdict));
                }
            }
        }
        let r = self.recs.len() as u32;
        self.recs.push(Rec {
            release: rel.id,
            key,
            text: Text::new(text),
            installed,
            hits: (start, self.rec_hits.len() as u32),
        });
        // On a (64-bit) hash collision the newer record is not remembered.
        if cached.is_none() {
            self.memo.insert(h, r);
        }
        r
    }

    fn run(&mut self, facts: &DeviceFacts) {
        self.hits.clear();
        self.bins.clear();
        self.cands.clear();
        self.skipped.clear();
        self.groups.clear();
        self.members.clear();
        self.sorted.clear();
        self.release = facts.release();
        let index = self.index;
        let Some(release) = self.release.take() else {
            return;
        };
        let Some(rel) = index.releases.get(&release) else {
            self.release = Some(release);
            return;
        };
        if self.recs.len() > MEMO_LIMIT {
            self.memo.clear();
            self.recs.clear();
            self.rec_hits.clear();
        }
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            self.stamps.fill((0, 0));
            self.epoch = 1;
        }
        if self.stamps.len() < rel.names.len() {
            self.stamps.resize(rel.names.len(), (0, 0));
        }
        let scheme = release.distro.scheme();
        let running = facts.running_kernel.as_deref();

        // 1. The installed binaries the index knows, each with its version's record.
        for (pi, p) in facts.installed.iter().enumerate() {
            let (name, signed) = lookup_name(index, &release, &p.name, p.source.as_deref());
            let Some(key) = rel.key(&name) else {
                continue;
            };
            // Kernel filter after the lookup: most packages are not in the index, and then
            // their binary name is not read at all.
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
            let r = if signed {
                self.rec(rel, key, &signed_to_linux_version(raw), scheme)
            } else {
                self.rec(rel, key, raw, scheme)
            };
            let rec = &self.recs[r as usize];
            if let Err(reason) = &rec.installed {
                self.skipped.push((p.name.clone(), reason.clone()));
                continue;
            }
            let hits = rec.hits;
            let st = &mut self.stamps[key as usize];
            let g = if st.0 == self.epoch {
                st.1
            } else {
                let g = self.groups.len() as u32;
                self.groups.push(GroupAcc {
                    key,
                    count: 0,
                    start: 0,
                    fill: 0,
                });
                *st = (self.epoch, g);
                g
            };
            self.groups[g as usize].count += 1;
            self.members.push(Member {
                key,
                pkg: pi as u32,
                rec: r,
                hits,
            });
        }

        // 2. Groups in key (= package name) order, members in installed order.
        self.groups.sort_unstable_by_key(|g| g.key);
        let mut at = 0;
        for (i, g) in self.groups.iter_mut().enumerate() {
            g.start = at;
            at += g.count;
            self.stamps[g.key as usize].1 = i as u32;
        }
        self.sorted.resize(
            self.members.len(),
            Member {
                key: 0,
                pkg: 0,
                rec: 0,
                hits: (0, 0),
            },
        );
        for m in &self.members {
            let g = &mut self.groups[self.stamps[m.key as usize].1 as usize];
            self.sorted[(g.start + g.fill) as usize] = *m;
            g.fill += 1;
        }

        // 3. Exposures, by package then CVE.
        let Matcher {
            recs,
            rec_hits,
            groups,
            sorted,
            hits,
            bins,
            cands,
            ..
        } = self;
        let mut cands_loaded = false;
        let installed = |r: u32| recs[r as usize].installed.as_ref().ok();
        let name = |pkg: u32| facts.installed[pkg as usize].name.as_str();
        for g in groups.iter() {
            let members = &sorted[g.start as usize..(g.start + g.count) as usize];
            let Some(first) = members.first() else {
                continue;
            };
            let base = rel.start(g.key);
            let entries = rel.entries(g.key);
            let mut push = |hits: &mut Vec<Hit>, off: u32, rec: u32, verdict, b: (u32, u32)| {
                let update = match verdict {
                    Verdict::Fixed(i) if !facts.upgradable.is_empty() => {
                        match fixed_version(&entries[off as usize], i) {
                            Some(fixed) => {
                                if !cands_loaded {
                                    load_candidates(index, &release, rel, facts, cands);
                                    cands_loaded = true;
                                }
                                best_update(cands, g.key, fixed)
                            }
                            None => NO_UPDATE,
                        }
                    }
                    _ => NO_UPDATE,
                };
                hits.push(Hit {
                    entry: base + off,
                    key: g.key,
                    rec,
                    verdict,
                    bins: b,
                    update,
                });
            };
            if members.iter().all(|m| m.rec == first.rec) {
                // The common case: every binary of the package at one version.
                let (a, b) = first.hits;
                if a == b {
                    continue;
                }
                let bstart = bins.len();
                for m in members {
                    if !bins[bstart..].iter().any(|&o| name(o) == name(m.pkg)) {
                        bins.push(m.pkg);
                    }
                }
                let br = (bstart as u32, bins.len() as u32);
                for &(off, verdict) in &rec_hits[a as usize..b as usize] {
                    push(hits, off, first.rec, verdict, br);
                }
                continue;
            }
            // Binaries at different versions: per entry, the affected binaries and the
            // lowest affected installed version.
            for off in 0..entries.len() as u32 {
                let bstart = bins.len();
                let mut lowest: Option<(u32, Verdict)> = None;
                for m in members {
                    let (a, b) = m.hits;
                    let list = &rec_hits[a as usize..b as usize];
                    let Ok(i) = list.binary_search_by_key(&off, |h| h.0) else {
                        continue;
                    };
                    let verdict = list[i].1;
                    if !bins[bstart..].iter().any(|&o| name(o) == name(m.pkg)) {
                        bins.push(m.pkg);
                    }
                    let lower = match (lowest, installed(m.rec)) {
                        (None, _) => true,
                        (Some((l, _)), Some(v)) => {
                            installed(l).is_some_and(|l| v.try_cmp(l) == Some(Ordering::Less))
                        }
                        _ => false,
                    };
                    if lower {
                        lowest = Some((m.rec, verdict));
                    }
                }
                match lowest {
                    Some((rec, verdict)) => {
                        push(hits, off, rec, verdict, (bstart as u32, bins.len() as u32))
                    }
                    None => bins.truncate(bstart),
                }
            }
        }
        self.release = Some(release);
    }
}

/// The device's update candidates under the index's keys (in the device's order, stable by
/// key), with the version to compare.
fn load_candidates(
    index: &AdvisoryIndex,
    release: &Release,
    rel: &ReleaseIndex,
    facts: &DeviceFacts,
    out: &mut Vec<(u32, Version)>,
) {
    out.clear();
    let scheme = release.distro.scheme();
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
        let Some(key) = rel.key(&name) else {
            continue;
        };
        let raw = match scheme {
            Scheme::Deb | Scheme::Apk => c.source_version.as_deref().unwrap_or(&c.version),
            Scheme::Rpm => &c.version,
        };
        let parsed = if signed {
            Version::parse(scheme, &signed_to_linux_version(raw))
        } else {
            Version::parse(scheme, raw)
        };
        if let Ok(v) = parsed {
            out.push((key, v));
        }
    }
    out.sort_by_key(|c| c.0);
}

/// The highest candidate of `key` at or above `fixed` (the last of equals, as `max_by`).
fn best_update(cands: &[(u32, Version)], key: u32, fixed: &Version) -> u32 {
    let lo = cands.partition_point(|c| c.0 < key);
    let mut best: Option<usize> = None;
    for (i, (k, c)) in cands.iter().enumerate().skip(lo) {
        if *k != key {
            break;
        }
        if c.try_cmp(fixed).is_none_or(|o| o == Ordering::Less) {
            continue;
        }
        if best
            .is_none_or(|b| cands[b].1.try_cmp(c).unwrap_or(Ordering::Equal) != Ordering::Greater)
        {
            best = Some(i);
        }
    }
    best.map_or(NO_UPDATE, |b| b as u32)
}

/// One device's exposures from a [`Matcher`], in compact form: each is read through an
/// [`ExposureRef`] (borrowing the index and the device's facts, nothing copied) or copied
/// out as an owned [`Exposure`].
#[derive(Debug, Clone, Copy)]
pub struct Matches<'a> {
    index: &'a AdvisoryIndex,
    rel: Option<&'a ReleaseIndex>,
    release: Option<&'a Release>,
    facts: &'a DeviceFacts,
    hits: &'a [Hit],
    bins: &'a [u32],
    recs: &'a [Rec],
    cands: &'a [(u32, Version)],
    skipped: &'a [(String, String)],
}

impl<'a> Matches<'a> {
    pub fn len(&self) -> usize {
        self.hits.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hits.is_empty()
    }

    /// `None` when the OS is not a supported release (then there are no exposures).
    pub fn release(&self) -> Option<&'a Release> {
        self.release
    }

    /// Installed packages skipped because their version does not parse: (binary, reason).
    pub fn skipped(&self) -> &'a [(String, String)] {
        self.skipped
    }

    pub fn get(&self, i: usize) -> Option<ExposureRef<'a>> {
        let hit = self.hits.get(i)?;
        let rel = self.rel?;
        let release = self.release?;
        let entry = &rel.entries[hit.entry as usize];
        Some(ExposureRef {
            hit,
            entry,
            info: self.index.infos.get(entry.info as usize),
            package: rel.name(hit.key),
            release,
            facts: self.facts,
            bins: &self.bins[hit.bins.0 as usize..hit.bins.1 as usize],
            installed: self.recs[hit.rec as usize]
                .installed
                .as_ref()
                .map(Version::as_str)
                .unwrap_or(""),
            update: self.cands.get(hit.update as usize).map(|c| c.1.as_str()),
        })
    }

    pub fn iter(&self) -> impl Iterator<Item = ExposureRef<'a>> + 'a {
        let m = *self;
        (0..m.hits.len()).filter_map(move |i| m.get(i))
    }

    /// Owned exposures (as [`match_device`] returns them).
    pub fn to_vec(&self) -> Vec<Exposure> {
        let mut out = Vec::with_capacity(self.len());
        self.write_into(&mut out);
        out
    }

    /// Overwrites `out` with owned exposures, reusing the strings of those already there.
    pub fn write_into(&self, out: &mut Vec<Exposure>) {
        let mut n = 0;
        for i in 0..self.hits.len() {
            if let Some(e) = self.get(i) {
                match out.get_mut(n) {
                    Some(slot) => e.write_to(slot),
                    None => out.push(e.to_exposure()),
                }
                n += 1;
            }
        }
        out.truncate(n);
    }
}

/// One exposure found by a [`Matcher`], borrowed: the same facts as an [`Exposure`].
#[derive(Debug, Clone, Copy)]
pub struct ExposureRef<'a> {
    hit: &'a Hit,
    entry: &'a Entry,
    info: Option<&'a CveInfo>,
    package: &'a str,
    release: &'a Release,
    facts: &'a DeviceFacts,
    bins: &'a [u32],
    installed: &'a str,
    update: Option<&'a str>,
}

impl<'a> ExposureRef<'a> {
    pub fn cve(&self) -> &'a str {
        &self.entry.cve
    }

    pub fn advisory_ids(&self) -> &'a [String] {
        &self.entry.advisory_ids
    }

    pub fn release(&self) -> &'a Release {
        self.release
    }

    /// The package the advisory names (source for Debian/Ubuntu/Alpine).
    pub fn package(&self) -> &'a str {
        self.package
    }

    /// Installed binary packages through which the device is exposed.
    pub fn binaries(&self) -> impl ExactSizeIterator<Item = &'a str> + 'a {
        let facts = self.facts;
        self.bins
            .iter()
            .map(move |&p| facts.installed[p as usize].name.as_str())
    }

    /// The installed version compared (the lowest, if binaries disagree).
    pub fn installed_version(&self) -> &'a str {
        self.installed
    }

    pub fn fix(&self) -> Fix {
        self.hit.verdict.to_fix(self.entry)
    }

    /// The fixed version, when there is one.
    pub fn fixed_version(&self) -> Option<&'a str> {
        match self.hit.verdict {
            Verdict::Fixed(i) => fixed_version(self.entry, i).map(Version::as_str),
            _ => None,
        }
    }

    /// An update candidate on this device whose version is >= the fixed version.
    pub fn fixed_by_update(&self) -> Option<&'a str> {
        self.update
    }

    pub fn cvss(&self) -> Option<&'a crate::model::Cvss> {
        self.info.and_then(|i| i.cvss.as_ref())
    }

    /// From CVSS when given, else the distribution's urgency.
    pub fn rating(&self) -> Rating {
        match self.cvss() {
            Some(c) => c.rating(),
            None => self.entry.urgency_rating,
        }
    }

    pub fn urgency(&self) -> Option<&'a str> {
        self.entry.urgency.as_deref()
    }

    pub fn severity(&self) -> Severity {
        Severity {
            rating: self.rating(),
            cvss: self.cvss().cloned(),
            urgency: self.urgency().map(str::to_owned),
        }
    }

    pub fn kev(&self) -> Option<&'a KevEntry> {
        self.info.and_then(|i| i.kev.as_ref())
    }

    pub fn epss(&self) -> Option<Epss> {
        self.info.and_then(|i| i.epss)
    }

    pub fn summary(&self) -> Option<&'a str> {
        self.info.and_then(|i| i.summary.as_deref())
    }

    pub fn to_exposure(&self) -> Exposure {
        Exposure {
            cve: self.cve().to_owned(),
            advisory_ids: self.advisory_ids().to_vec(),
            release: self.release.clone(),
            package: self.package.to_owned(),
            binaries: self.binaries().map(str::to_owned).collect(),
            installed_version: self.installed.to_owned(),
            fix: self.fix(),
            fixed_by_update: self.update.map(str::to_owned),
            severity: self.severity(),
            kev: self.kev().cloned(),
            epss: self.epss(),
            summary: self.summary().map(str::to_owned),
        }
    }

    /// [`Self::to_exposure`] over an existing exposure, reusing its allocations.
    pub fn write_to(&self, e: &mut Exposure) {
        set_str(&mut e.cve, self.cve());
        set_strs(
            &mut e.advisory_ids,
            self.advisory_ids().iter().map(String::as_str),
        );
        if e.release != *self.release {
            e.release.clone_from(self.release);
        }
        set_str(&mut e.package, self.package);
        set_strs(&mut e.binaries, self.binaries());
        set_str(&mut e.installed_version, self.installed);
        match (&mut e.fix, self.hit.verdict, self.fixed_version()) {
            (Fix::Fixed { version }, Verdict::Fixed(_), Some(v)) => set_str(version, v),
            (fix, _, _) => *fix = self.fix(),
        }
        set_opt(&mut e.fixed_by_update, self.update);
        e.severity.rating = self.rating();
        match (&mut e.severity.cvss, self.cvss()) {
            (Some(d), Some(s)) if d == s => {}
            (d, s) => *d = s.cloned(),
        }
        set_opt(&mut e.severity.urgency, self.urgency());
        match (&mut e.kev, self.kev()) {
            (Some(d), Some(s)) if d == s => {}
            (d, s) => *d = s.cloned(),
        }
        e.epss = self.epss();
        set_opt(&mut e.summary, self.summary());
    }
}

fn set_str(dst: &mut String, src: &str) {
    dst.clear();
    dst.push_str(src);
}

fn set_opt(dst: &mut Option<String>, src: Option<&str>) {
    match (dst, src) {
        (Some(d), Some(s)) => set_str(d, s),
        (d, s) => *d = s.map(str::to_owned),
    }
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

/// Whether an installed rpm kernel (`[E:]V-R`) is the running one (`V-R.ARCH`).
fn rpm_kernel_is_running(evr: &str, running: &str) -> bool {
    let vr = evr.split_once(':').map_or(evr, |(_, vr)| vr);
    running == vr
        || running
            .strip_prefix(vr)
            .is_some_and(|rest| rest.starts_with('.'))
}

/// [`evaluate`] for an entry, by its quick form when it has one (same result).
pub(crate) fn evaluate_entry(entry: &Entry, v: &Version) -> Option<Verdict> {
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
            // The quick form is one range with a fixed version and nothing else.
            return less.then_some(Verdict::Fixed(0));
        }
    }
    evaluate(&entry.state, v)
}

/// Whether `v` is affected by the statement, and how it is (or is not) fixed.
pub(crate) fn evaluate(state: &EntryState, v: &Version) -> Option<Verdict> {
    let lt = |a: &Version, b: &Version| a.try_cmp(b) == Some(Ordering::Less);
    let le = |a: &Version, b: &Version| a.try_cmp(b).is_some_and(|o| o != Ordering::Greater);
    match state {
        EntryState::NotAffected => None,
        EntryState::WillNotFix(_) => Some(Verdict::WillNotFix),
        EntryState::Undetermined => Some(Verdict::Undetermined),
        EntryState::Affected { ranges, versions } => {
            let mut best: Option<(u32, &Version)> = None;
            let mut unfixed = false;
            for (i, r) in ranges.iter().enumerate() {
                if r.introduced.as_ref().is_some_and(|i| lt(v, i)) {
                    continue;
                }
                match (&r.fixed, &r.last_affected) {
                    (Some(f), _) => {
                        if lt(v, f) && best.is_none_or(|(_, b)| lt(f, b)) {
                            best = Some((i as u32, f));
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
            if let Some((i, _)) = best {
                return Some(Verdict::Fixed(i));
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
#[path = "matching_reference.rs"]
mod reference;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feeds::{EpssScores, FeedKind, KevCatalog};
    use crate::index::ParsedRange;
    use crate::model::{AffectedRange, NameKind, PackageAdvisory, Statement};

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
                urgency_rating: Rating::Unknown,
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
                    evaluate_entry(&entry, &v).map(|x| x.to_fix(&entry)),
                    evaluate(&entry.state, &v).map(|x| x.to_fix(&entry)),
                    "installed {v}, fixed {f}"
                );
                assert_eq!(
                    evaluate_entry(&open_entry, &v).map(|x| x.to_fix(&open_entry)),
                    evaluate(&open_entry.state, &v).map(|x| x.to_fix(&open_entry)),
                );
            }
        }
    }

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
            xs[self.below(xs.len())]
        }
    }

    const DEB: &[&str] = &[
        "1.0-1",
        "1.0-1+deb12u1",
        "1.0-1+deb12u2",
        "1:1.0-1",
        "1.0~rc1-1",
        "0.9-3",
        "2.0-1",
        "1.0-1~bpo12+1",
        "1.1-1~bpo12+1",
        "1.0-01",
        "1.00-1",
        "1.0a-1",
        "1.0+really0.9-1",
        "0:1.0-1",
        // Longer than the matcher's inline text.
        "1.0+dfsg1-2+deb12u1~really0.9.99+git20240101-1",
        "1.0+dfsg1-2+deb12u1~really0.9.99+git20240101-2",
    ];
    const RPM: &[&str] = &[
        "1.0-1.el9",
        "1:1.0-1.el9",
        "1.0-2.el9",
        "0.9-1.el9",
        "1.0~rc1-1.el9",
        "1.0^git1-1.el9",
    ];
    const APK: &[&str] = &[
        "1.0-r0",
        "1.0-r1",
        "1.1-r0",
        "0.9_rc1-r0",
        "1.0_p1-r0",
        "2.0-r0",
    ];

    fn statement(rng: &mut Rng, vs: &[&str]) -> Statement {
        let range = |rng: &mut Rng| AffectedRange {
            introduced: (rng.below(3) == 0).then(|| rng.pick(vs).to_owned()),
            fixed: (rng.below(4) != 0).then(|| rng.pick(vs).to_owned()),
            last_affected: (rng.below(4) == 0).then(|| rng.pick(vs).to_owned()),
        };
        match rng.below(10) {
            0..=3 => Statement::Affected {
                ranges: vec![AffectedRange::fixed_in(rng.pick(vs))],
                versions: vec![],
            },
            4 => Statement::Affected {
                ranges: vec![AffectedRange::all()],
                versions: vec![],
            },
            5 | 6 => Statement::Affected {
                ranges: (0..1 + rng.below(3)).map(|_| range(rng)).collect(),
                versions: (0..rng.below(3)).map(|_| rng.pick(vs).to_owned()).collect(),
            },
            7 => Statement::NotAffected,
            8 => Statement::WillNotFix {
                reason: "ignored".into(),
            },
            _ => Statement::Undetermined,
        }
    }

    fn dataset(rng: &mut Rng) -> (Vec<PackageAdvisory>, KevCatalog, EpssScores) {
        let releases = [
            (Release::new(Distro::Debian, "12"), DEB),
            (Release::new(Distro::Ubuntu, "22.04"), DEB),
            (Release::new(Distro::Rocky, "9"), RPM),
            (Release::new(Distro::Alpine, "3.19"), APK),
        ];
        let mut out = Vec::new();
        for (release, vs) in &releases {
            let mut packages: Vec<String> = (0..12).map(|i| format!("src{i}")).collect();
            packages.extend(["linux", "linux-aws", "kernel-core", "kernel"].map(String::from));
            for package in &packages {
                for c in 0..1 + rng.below(4) {
                    let cve = format!("CVE-2024-{:04}", rng.below(40) + c);
                    for feed in [FeedKind::DebianTracker, FeedKind::Osv, FeedKind::Osv] {
                        if rng.below(3) == 0 {
                            continue;
                        }
                        out.push(PackageAdvisory {
                            feed,
                            advisory_id: format!("ADV-{}", rng.below(100)),
                            cves: vec![cve.clone()],
                            release: release.clone(),
                            package: package.clone(),
                            name_kind: NameKind::Source,
                            statement: statement(rng, vs),
                            urgency: [None, Some("low"), Some("high*"), Some("unimportant")]
                                [rng.below(4)]
                            .map(str::to_owned),
                            cvss: (rng.below(4) == 0).then(|| {
                                crate::model::Cvss::parse(
                                    "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
                                )
                                .expect("valid vector")
                            }),
                            binaries: if release.distro == Distro::Ubuntu && rng.below(2) == 0 {
                                vec![(format!("{package}-bin0"), String::new())]
                            } else {
                                vec![]
                            },
                            summary: (rng.below(2) == 0).then(|| format!("summary {cve}")),
                        });
                    }
                }
            }
        }
        let mut kev = KevCatalog::default();
        let mut epss = EpssScores::default();
        for i in 0..50 {
            let cve = format!("CVE-2024-{i:04}");
            if i % 5 == 0 {
                kev.entries.insert(
                    cve.clone(),
                    KevEntry {
                        cve: cve.clone(),
                        vendor_project: "v".into(),
                        product: "p".into(),
                        vulnerability_name: "n".into(),
                        date_added: time::macros::date!(2024 - 01 - 01),
                        due_date: Some(time::macros::date!(2024 - 01 - 22)),
                        known_ransomware: i % 10 == 0,
                    },
                );
            }
            if i % 3 == 0 {
                epss.scores.insert(
                    cve,
                    Epss {
                        score: 0.5,
                        percentile: 0.9,
                    },
                );
            }
        }
        (out, kev, epss)
    }

    fn device(rng: &mut Rng) -> DeviceFacts {
        let (os_id, version, vs) = [
            ("debian", "12", DEB),
            ("ubuntu", "22.04", DEB),
            ("rocky", "9.4", RPM),
            ("alpine", "3.19.1", APK),
            ("debian", "11", DEB),
        ][rng.below(5)];
        let mut installed = Vec::new();
        let mut upgradable = Vec::new();
        let deb = vs == DEB;
        for _ in 0..rng.below(30) {
            let s = rng.below(14);
            let source = format!("src{s}");
            let version = if rng.below(8) == 0 {
                "not a version!".to_owned()
            } else {
                rng.pick(vs).to_owned()
            };
            for b in 0..1 + rng.below(3) {
                let own = rng.below(4) == 0;
                installed.push(InstalledPackage {
                    // Sometimes the same binary twice (multi-arch).
                    name: format!("{source}-bin{}", if rng.below(5) == 0 { 0 } else { b }),
                    version: if own {
                        rng.pick(vs).to_owned()
                    } else {
                        version.clone()
                    },
                    source: (rng.below(6) != 0).then(|| source.clone()),
                    source_version: (deb && rng.below(3) == 0).then(|| rng.pick(vs).to_owned()),
                });
            }
            if rng.below(3) == 0 {
                upgradable.push(UpdateCandidate {
                    name: format!("{source}-bin0"),
                    version: rng.pick(vs).to_owned(),
                    source: (rng.below(2) == 0).then(|| source.clone()),
                    source_version: None,
                });
            }
        }
        if deb {
            for (name, source, version) in [
                (
                    "linux-image-6.1.0-18-amd64",
                    "linux-signed-amd64",
                    "6.1.76+1",
                ),
                (
                    "linux-image-6.1.0-17-amd64",
                    "linux-signed-amd64",
                    "6.1.69+1",
                ),
                ("linux-image-amd64", "linux-signed-amd64", "6.1.76+1"),
                ("linux-headers-6.1.0-18-amd64", "linux", "6.1.76-1"),
                (
                    "linux-image-6.8.0-1008-aws",
                    "linux-signed-aws",
                    "6.8.0-1008.8",
                ),
            ] {
                if rng.below(2) == 0 {
                    installed.push(InstalledPackage {
                        name: name.into(),
                        version: version.into(),
                        source: Some(source.into()),
                        source_version: None,
                    });
                }
            }
        } else if vs == RPM {
            for v in ["5.14.0-427.13.1.el9_4", "5.14.0-362.8.1.el9_3"] {
                installed.push(InstalledPackage {
                    name: "kernel-core".into(),
                    version: v.into(),
                    source: Some("kernel".into()),
                    source_version: None,
                });
            }
        }
        // Installed order is the agent's, not sorted.
        for i in (1..installed.len()).rev() {
            installed.swap(i, rng.below(i + 1));
        }
        DeviceFacts {
            os_id: os_id.into(),
            os_version_id: Some(version.into()),
            os_codename: None,
            running_kernel: [
                None,
                Some("6.1.0-18-amd64"),
                Some("5.14.0-427.13.1.el9_4.x86_64"),
                Some("6.8.0-1008-aws"),
            ][rng.below(4)]
            .map(str::to_owned),
            installed,
            upgradable,
        }
    }

    /// The fast path (one `Matcher` for every device: remembered verdicts, reused buffers,
    /// the flat index) gives exactly the reference matcher's exposures, in the same order.
    #[test]
    fn matcher_agrees_with_the_reference_matcher() {
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        let mut exposures = 0;
        for _ in 0..20 {
            let (advisories, kev, epss) = dataset(&mut rng);
            let index = AdvisoryIndex::build(&advisories, Some(&kev), Some(&epss)).expect("index");
            let mut matcher = Matcher::new(&index);
            let mut buf = Vec::new();
            for _ in 0..100 {
                let d = device(&mut rng);
                let (want, want_skipped) = reference::match_device(&index, &d);
                let m = matcher.match_device(&d);
                assert_eq!(m.to_vec(), want, "{d:#?}");
                assert_eq!(m.skipped(), &want_skipped[..]);
                m.write_into(&mut buf);
                assert_eq!(buf, want);
                assert_eq!(match_device(&index, &d), want);
                let report = match_device_report(&index, &d);
                assert_eq!(report.exposures, want);
                assert_eq!(report.skipped, want_skipped);
                exposures += want.len();
            }
        }
        // The generator reaches every path.
        assert!(exposures > 5_000, "{exposures}");
    }
}
