//! The advisory index: every feed's statements, keyed by (release, package) with versions
//! parsed once, plus per-CVE enrichment (CVSS, KEV, EPSS). Built whole from the imported
//! feeds; [`AdvisoryIndex::changed_keys`] compares two builds so the caller rematches only
//! the devices that have a changed package.

use crate::feeds::{Epss, EpssScores, FeedKind, KevCatalog, KevEntry};
use crate::model::{Cvss, Distro, NameKind, PackageAdvisory, Rating, Release, Statement};
use crate::version::{Version, VersionError};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// FxHash (rustc's hasher) with a murmur3 finalizer: the index is keyed by trusted feed data, and SipHash was a tenth
/// of the matching time.
#[derive(Default, Clone, Copy)]
pub(crate) struct FxHasher(u64);

impl std::hash::Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x517c_c1b7_2722_0a95;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.0 = (self.0.rotate_left(5) ^ u64::from(i)).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
    fn finish(&self) -> u64 {
        // Fx leaves the low bits (hashbrown's bucket index) poorly mixed: finalize (fmix64).
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

pub(crate) type FastMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<FxHasher>>;

/// A matching key: a package (source for Debian/Ubuntu/Alpine, binary for RHEL-family) in a
/// release.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PackageKey {
    pub release: Release,
    pub package: String,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ParsedRange {
    pub introduced: Option<Version>,
    pub fixed: Option<Version>,
    pub last_affected: Option<Version>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum EntryState {
    NotAffected,
    Affected {
        ranges: Vec<ParsedRange>,
        versions: Vec<Version>,
    },
    WillNotFix(String),
    Undetermined,
}

/// Marks an [`Entry`] whose CVE has no enrichment (default [`CveInfo`]).
pub(crate) const NO_INFO: u32 = u32::MAX;

/// The commonest Debian statement, "fixed in F" (one range, no introduced, no listed
/// versions), with F's parts inline: evaluating it then reads only the entry, not the range
/// and version text behind two more pointers (matching is bound by cache misses on the
/// index). Build-derived, so not part of equality.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Quick {
    /// Use the general rules on `state`.
    None,
    /// Every version is affected and there is no fix (one open range, no listed versions).
    AllAffected,
    DebFixedIn {
        epoch: u64,
        upstream_len: u8,
        revision_len: u8,
        /// Upstream then revision.
        bytes: [u8; QUICK_BYTES],
    },
}

pub(crate) const QUICK_BYTES: usize = 46;

impl Quick {
    #[cfg(test)]
    pub(crate) fn of_for_tests(state: &EntryState) -> Quick {
        Quick::of(state)
    }

    fn of(state: &EntryState) -> Quick {
        let EntryState::Affected { ranges, versions } = state else {
            return Quick::None;
        };
        if !versions.is_empty() {
            return Quick::None;
        }
        let fixed = match ranges.as_slice() {
            [ParsedRange {
                introduced: None,
                fixed: Some(fixed),
                last_affected: None,
            }] => fixed,
            [ParsedRange {
                introduced: None,
                fixed: None,
                last_affected: None,
            }] => return Quick::AllAffected,
            _ => return Quick::None,
        };
        let Some((epoch, up, rev)) = fixed.deb_parts() else {
            return Quick::None;
        };
        if up.len() + rev.len() > QUICK_BYTES {
            return Quick::None;
        }
        let mut bytes = [0u8; QUICK_BYTES];
        bytes[..up.len()].copy_from_slice(up);
        bytes[up.len()..up.len() + rev.len()].copy_from_slice(rev);
        Quick::DebFixedIn {
            epoch,
            upstream_len: up.len() as u8,
            revision_len: rev.len() as u8,
            bytes,
        }
    }
}

/// One (key, CVE) statement after merging the feeds that speak about it.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub cve: Arc<str>,
    /// Index into [`AdvisoryIndex::infos`], or [`NO_INFO`]: the matcher reaches the CVE's
    /// enrichment without hashing the CVE id (that lookup was a fifth of matching).
    /// Build-local, so not part of equality.
    pub info: u32,
    /// A fast form of `state` (set at the end of the build).
    pub quick: Quick,
    pub advisory_ids: Vec<String>,
    pub feed: FeedKind,
    pub state: EntryState,
    /// Interned: a handful of distinct values, shared and so cache-hot when matching.
    pub urgency: Option<Arc<str>>,
    /// `urgency` as a rating (build-derived, so not part of equality).
    pub urgency_rating: Rating,
    pub name_kind: NameKind,
}

impl PartialEq for Entry {
    fn eq(&self, o: &Entry) -> bool {
        self.cve == o.cve
            && self.advisory_ids == o.advisory_ids
            && self.feed == o.feed
            && self.state == o.state
            && self.urgency == o.urgency
            && self.name_kind == o.name_kind
    }
}

/// What the index knows about a CVE beyond package statements.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CveInfo {
    pub cvss: Option<Cvss>,
    pub kev: Option<KevEntry>,
    pub epss: Option<Epss>,
    pub summary: Option<String>,
}

/// A release's entries by package while the index is built.
type PackageEntries = FastMap<Box<str>, Vec<Entry>>;

/// One release's statements, flat: package names interned to dense ids (in name order, so
/// sorting by id is sorting by name), and every entry in one contiguous array grouped by
/// package (then sorted by CVE), so the matcher touches a few cache lines per package.
#[derive(Debug, Clone, Default)]
pub(crate) struct ReleaseIndex {
    /// Dense id of this release within the index (memo keys in the matcher).
    pub id: u32,
    /// Package name → key id.
    pub ids: FastMap<Box<str>, u32>,
    /// Key id → package name.
    pub names: Vec<Box<str>>,
    /// Key id `k`'s entries are `entries[starts[k]..starts[k + 1]]`.
    pub starts: Vec<u32>,
    pub entries: Vec<Entry>,
}

impl ReleaseIndex {
    pub fn key(&self, name: &str) -> Option<u32> {
        self.ids.get(name).copied()
    }

    pub fn name(&self, key: u32) -> &str {
        &self.names[key as usize]
    }

    /// The first entry's position of `key` in `entries`.
    pub fn start(&self, key: u32) -> u32 {
        self.starts[key as usize]
    }

    pub fn entries(&self, key: u32) -> &[Entry] {
        let k = key as usize;
        &self.entries[self.starts[k] as usize..self.starts[k + 1] as usize]
    }

    fn get(&self, name: &str) -> Option<&[Entry]> {
        self.key(name).map(|k| self.entries(k))
    }

    /// (name, entries) per key, in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[Entry])> + '_ {
        (0..self.names.len() as u32).map(|k| (self.name(k), self.entries(k)))
    }

    fn flatten(id: u32, pkgs: PackageEntries) -> ReleaseIndex {
        let mut pkgs: Vec<(Box<str>, Vec<Entry>)> = pkgs.into_iter().collect();
        pkgs.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out = ReleaseIndex {
            id,
            starts: Vec::with_capacity(pkgs.len() + 1),
            entries: Vec::with_capacity(pkgs.iter().map(|p| p.1.len()).sum()),
            ..ReleaseIndex::default()
        };
        for (k, (name, entries)) in pkgs.into_iter().enumerate() {
            out.starts.push(out.entries.len() as u32);
            out.ids.insert(name.clone(), k as u32);
            out.names.push(name);
            out.entries.extend(entries);
        }
        out.starts.push(out.entries.len() as u32);
        out
    }
}

#[derive(Debug, Clone, Default)]
pub struct AdvisoryIndex {
    pub(crate) releases: HashMap<Release, ReleaseIndex>,
    /// CVE id → index into `infos`.
    pub(crate) cves: FastMap<Arc<str>, u32>,
    pub(crate) infos: Vec<CveInfo>,
    /// Ubuntu's binary → source map (from OSV `ecosystem_specific.binaries`), used when a
    /// device reports a binary without its source.
    pub(crate) binary_sources: HashMap<Release, HashMap<Box<str>, Box<str>>>,
}

/// Which keys and CVEs differ between two index builds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangedKeys {
    /// Package statements changed: rematch devices that have these packages.
    pub packages: BTreeSet<PackageKey>,
    /// Only enrichment changed (CVSS, KEV, EPSS, summary): re-score exposures to these CVEs,
    /// no rematch needed.
    pub cves: BTreeSet<String>,
}

impl ChangedKeys {
    pub fn is_empty(&self) -> bool {
        self.packages.is_empty() && self.cves.is_empty()
    }
}

/// Which feed wins when several speak about the same (key, CVE): for Debian the tracker is
/// the source of Debian's OSV records and is fresher; otherwise OSV, then secdb.
fn precedence(distro: Distro, feed: FeedKind) -> u8 {
    match (distro, feed) {
        (Distro::Debian, FeedKind::DebianTracker) => 3,
        (Distro::Alpine, FeedKind::AlpineSecdb) => 1,
        (_, FeedKind::Osv) => 2,
        _ => 0,
    }
}

fn parse_opt(distro: Distro, v: &Option<String>) -> Result<Option<Version>, VersionError> {
    v.as_deref()
        .map(|s| Version::parse(distro.scheme(), s))
        .transpose()
}

impl AdvisoryIndex {
    /// Builds the index from every feed's advisories plus the KEV catalog and EPSS scores.
    /// Withdrawn OSV records are already absent from the parsers' output. Fails only when an
    /// advisory carries a version its scheme rejects (the parsers never produce one).
    pub fn build<'a>(
        advisories: impl IntoIterator<Item = &'a PackageAdvisory>,
        kev: Option<&KevCatalog>,
        epss: Option<&EpssScores>,
    ) -> Result<AdvisoryIndex, VersionError> {
        let mut index = AdvisoryIndex::default();
        let mut releases: HashMap<Release, PackageEntries> = HashMap::new();
        let mut interned: HashMap<String, Arc<str>> = HashMap::new();
        for adv in advisories {
            let distro = adv.release.distro;
            let state = match &adv.statement {
                Statement::NotAffected => EntryState::NotAffected,
                Statement::WillNotFix { reason } => EntryState::WillNotFix(reason.clone()),
                Statement::Undetermined => EntryState::Undetermined,
                Statement::Affected { ranges, versions } => EntryState::Affected {
                    ranges: ranges
                        .iter()
                        .map(|r| {
                            Ok(ParsedRange {
                                introduced: parse_opt(distro, &r.introduced)?,
                                fixed: parse_opt(distro, &r.fixed)?,
                                last_affected: parse_opt(distro, &r.last_affected)?,
                            })
                        })
                        .collect::<Result<_, VersionError>>()?,
                    versions: versions
                        .iter()
                        .map(|v| Version::parse(distro.scheme(), v))
                        .collect::<Result<_, _>>()?,
                },
            };
            if !adv.binaries.is_empty() {
                let map = index.binary_sources.entry(adv.release.clone()).or_default();
                for (bin, _) in &adv.binaries {
                    map.entry(bin.as_str().into())
                        .or_insert_with(|| adv.package.as_str().into());
                }
            }
            let pkgs = releases.entry(adv.release.clone()).or_default();
            let entries = pkgs.entry(adv.package.as_str().into()).or_default();
            for cve in &adv.cves {
                let cve: Arc<str> = interned
                    .entry(cve.clone())
                    .or_insert_with(|| Arc::from(cve.as_str()))
                    .clone();
                let infos = &mut index.infos;
                let idx = *index.cves.entry(cve.clone()).or_insert_with(|| {
                    infos.push(CveInfo::default());
                    (infos.len() - 1) as u32
                });
                let info = &mut index.infos[idx as usize];
                if let Some(c) = &adv.cvss {
                    if info
                        .cvss
                        .as_ref()
                        .is_none_or(|old| c.base_score > old.base_score)
                    {
                        info.cvss = Some(c.clone());
                    }
                }
                if info.summary.is_none() {
                    info.summary.clone_from(&adv.summary);
                }
                let new = Entry {
                    cve: cve.clone(),
                    info: idx,
                    quick: Quick::None,
                    advisory_ids: vec![adv.advisory_id.clone()],
                    feed: adv.feed,
                    state: state.clone(),
                    urgency: adv.urgency.as_deref().map(|u| {
                        interned
                            .entry(u.to_owned())
                            .or_insert_with(|| Arc::from(u))
                            .clone()
                    }),
                    urgency_rating: Rating::Unknown,
                    name_kind: adv.name_kind,
                };
                match entries.iter_mut().find(|e| e.cve == cve) {
                    None => entries.push(new),
                    Some(old) => merge(distro, old, new),
                }
            }
        }
        for pkgs in releases.values_mut() {
            for entries in pkgs.values_mut() {
                entries.sort_by(|a, b| a.cve.cmp(&b.cve));
            }
        }
        if let Some(kev) = kev {
            for (cve, e) in &kev.entries {
                let infos = &mut index.infos;
                let idx = *index
                    .cves
                    .entry(Arc::from(cve.as_str()))
                    .or_insert_with(|| {
                        infos.push(CveInfo::default());
                        (infos.len() - 1) as u32
                    });
                index.infos[idx as usize].kev = Some(e.clone());
            }
        }
        if let Some(epss) = epss {
            // Only CVEs some advisory mentions: EPSS lists ~250k CVEs, most irrelevant here.
            for (cve, &idx) in index.cves.iter() {
                index.infos[idx as usize].epss = epss.scores.get(&**cve).copied();
            }
        }
        let default = CveInfo::default();
        for pkgs in releases.values_mut() {
            for entries in pkgs.values_mut() {
                for e in entries {
                    e.quick = Quick::of(&e.state);
                    e.urgency_rating = e
                        .urgency
                        .as_deref()
                        .map(Rating::from_distro_urgency)
                        .unwrap_or(Rating::Unknown);
                    if index.infos[e.info as usize] == default {
                        e.info = NO_INFO;
                    }
                }
            }
        }
        let mut releases: Vec<(Release, PackageEntries)> = releases.into_iter().collect();
        releases.sort_by(|a, b| a.0.cmp(&b.0));
        for (id, (release, pkgs)) in releases.into_iter().enumerate() {
            index
                .releases
                .insert(release, ReleaseIndex::flatten(id as u32, pkgs));
        }
        Ok(index)
    }

    /// Number of (release, package, CVE) statements.
    pub fn len(&self) -> usize {
        self.releases.values().map(|r| r.entries.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn cve(&self, cve: &str) -> Option<&CveInfo> {
        self.cves.get(cve).map(|&i| &self.infos[i as usize])
    }

    /// Keys that have statements (e.g. for `vuln show`).
    pub fn keys_for_cve(&self, cve: &str) -> Vec<PackageKey> {
        let mut out = Vec::new();
        for (release, pkgs) in &self.releases {
            for (name, entries) in pkgs.iter() {
                if entries.iter().any(|e| &*e.cve == cve) {
                    out.push(PackageKey {
                        release: release.clone(),
                        package: name.to_string(),
                    });
                }
            }
        }
        out.sort();
        out
    }

    /// What changed from `old` to `self`: package keys whose statements differ (added,
    /// removed or edited), and CVEs whose enrichment alone differs.
    pub fn changed_keys(&self, old: &AdvisoryIndex) -> ChangedKeys {
        let mut out = ChangedKeys::default();
        let empty = ReleaseIndex::default();
        let releases: BTreeSet<&Release> =
            self.releases.keys().chain(old.releases.keys()).collect();
        for release in releases {
            let new_p = self.releases.get(release).unwrap_or(&empty);
            let old_p = old.releases.get(release).unwrap_or(&empty);
            for name in new_p.names.iter().chain(old_p.names.iter()) {
                if new_p.get(name) != old_p.get(name) {
                    out.packages.insert(PackageKey {
                        release: release.clone(),
                        package: name.to_string(),
                    });
                }
            }
        }
        let default = CveInfo::default();
        for cve in self.cves.keys().chain(old.cves.keys()) {
            let a = self.cve(cve).unwrap_or(&default);
            let b = old.cve(cve).unwrap_or(&default);
            if a != b {
                out.cves.insert(cve.to_string());
            }
        }
        out
    }
}

/// Two statements about the same (key, CVE): the higher-precedence feed wins; within one
/// feed, affected ranges are united (conservative) and advisory ids collected.
fn merge(distro: Distro, old: &mut Entry, new: Entry) {
    let (po, pn) = (precedence(distro, old.feed), precedence(distro, new.feed));
    if pn > po {
        *old = new;
        return;
    }
    if pn < po {
        return;
    }
    for id in new.advisory_ids {
        if !old.advisory_ids.contains(&id) {
            old.advisory_ids.push(id);
        }
    }
    if old.urgency.is_none() {
        old.urgency = new.urgency;
    }
    match (&mut old.state, new.state) {
        (
            EntryState::Affected { ranges, versions },
            EntryState::Affected {
                ranges: r2,
                versions: v2,
            },
        ) => {
            for r in r2 {
                if !ranges.contains(&r) {
                    ranges.push(r);
                }
            }
            for v in v2 {
                if !versions.contains(&v) {
                    versions.push(v);
                }
            }
        }
        (EntryState::NotAffected, s) => old.state = s,
        (
            EntryState::Undetermined,
            s @ (EntryState::Affected { .. } | EntryState::WillNotFix(_)),
        ) => old.state = s,
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn fx_hash_spreads_low_bits() {
        let b = std::hash::BuildHasherDefault::<FxHasher>::default();
        let mut seen = std::collections::HashSet::new();
        for i in 0..4096 {
            seen.insert(b.hash_one(format!("src{i}")) & 0xfff);
        }
        // A uniform hash fills about 63% of 4096 buckets with 4096 keys.
        assert!(seen.len() > 2400, "{}", seen.len());
    }
}
