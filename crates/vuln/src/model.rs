//! The normalized vocabulary every feed parser produces and the matcher consumes: releases,
//! package advisories (one per feed statement about a package in a release), severities.

use crate::version::Scheme;
use std::fmt;

/// A distribution family, as far as matching is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Distro {
    Debian,
    Ubuntu,
    Alpine,
    /// Red Hat Enterprise Linux (OSV ecosystem `Red Hat`).
    Rhel,
    Rocky,
    Alma,
}

impl Distro {
    pub fn scheme(self) -> Scheme {
        match self {
            Distro::Debian | Distro::Ubuntu => Scheme::Deb,
            Distro::Alpine => Scheme::Apk,
            Distro::Rhel | Distro::Rocky | Distro::Alma => Scheme::Rpm,
        }
    }

    /// Whether advisories name source packages (Debian, Ubuntu) rather than binary ones.
    pub fn keys_on_source(self) -> bool {
        matches!(self, Distro::Debian | Distro::Ubuntu)
    }

    /// The distribution named by an os-release `ID` (and `ID_LIKE` is not consulted: a Rocky
    /// host is matched against Rocky advisories, not Red Hat's).
    pub fn from_os_release_id(id: &str) -> Option<Distro> {
        Some(match id.trim().to_ascii_lowercase().as_str() {
            "debian" => Distro::Debian,
            "ubuntu" => Distro::Ubuntu,
            "alpine" => Distro::Alpine,
            "rhel" => Distro::Rhel,
            "rocky" => Distro::Rocky,
            "almalinux" => Distro::Alma,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Distro::Debian => "debian",
            Distro::Ubuntu => "ubuntu",
            Distro::Alpine => "alpine",
            Distro::Rhel => "rhel",
            Distro::Rocky => "rocky",
            Distro::Alma => "almalinux",
        }
    }
}

/// A release stream: Debian `12` (or `sid`), Ubuntu `22.04`, Alpine `3.19`, RHEL-family `9`.
/// Normalized so that an OSV ecosystem, a tracker codename and a device's os-release meet.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Release {
    pub distro: Distro,
    pub version: String,
}

const DEBIAN_CODENAMES: &[(&str, &str)] = &[
    ("jessie", "8"),
    ("stretch", "9"),
    ("buster", "10"),
    ("bullseye", "11"),
    ("bookworm", "12"),
    ("trixie", "13"),
    ("forky", "14"),
    ("duke", "15"),
];

impl Release {
    pub fn new(distro: Distro, version: impl Into<String>) -> Self {
        Release {
            distro,
            version: version.into(),
        }
    }

    /// A Debian release from a tracker codename (`bookworm` → 12); `sid` stays `sid`.
    pub fn debian_codename(codename: &str) -> Option<Release> {
        if codename == "sid" {
            return Some(Release::new(Distro::Debian, "sid"));
        }
        DEBIAN_CODENAMES
            .iter()
            .find(|(c, _)| *c == codename)
            .map(|(_, v)| Release::new(Distro::Debian, *v))
    }

    /// The release a device runs, from os-release `ID`, `VERSION_ID` and `VERSION_CODENAME`.
    /// Debian without `VERSION_ID` (testing/unstable) uses its codename; Alpine keeps
    /// major.minor (`3.19.1` → `3.19`); RHEL-family keeps the major (`9.4` → `9`).
    pub fn from_os_release(
        id: &str,
        version_id: Option<&str>,
        codename: Option<&str>,
    ) -> Option<Release> {
        let distro = Distro::from_os_release_id(id)?;
        let version_id = version_id.map(str::trim).filter(|v| !v.is_empty());
        let version = match distro {
            Distro::Debian => match version_id {
                Some(v) => v.split('.').next().unwrap_or(v).to_owned(),
                None => return Release::debian_codename(codename?.trim()),
            },
            Distro::Ubuntu => version_id?.to_owned(),
            Distro::Alpine => {
                let v = version_id?;
                let v = v.strip_prefix('v').unwrap_or(v);
                v.split('.').take(2).collect::<Vec<_>>().join(".")
            }
            Distro::Rhel | Distro::Rocky | Distro::Alma => {
                let v = version_id?;
                v.split('.').next().unwrap_or(v).to_owned()
            }
        };
        Some(Release { distro, version })
    }
}

impl fmt::Display for Release {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.distro.as_str(), self.version)
    }
}

/// A qualitative rating: CVSS's bands, with `Unknown` for "not yet assessed".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rating {
    Unknown,
    /// Negligible: CVSS 0.0, Debian `unimportant`, Ubuntu `negligible`.
    None,
    Low,
    Medium,
    High,
    Critical,
}

impl Rating {
    pub fn from_cvss_score(score: f64) -> Rating {
        match score {
            s if s >= 9.0 => Rating::Critical,
            s if s >= 7.0 => Rating::High,
            s if s >= 4.0 => Rating::Medium,
            s if s > 0.0 => Rating::Low,
            _ => Rating::None,
        }
    }

    /// A distribution's urgency word (Debian tracker urgency, Ubuntu priority, OSV
    /// `database_specific.severity`); unknown words are `Unknown`, not errors.
    pub fn from_distro_urgency(word: &str) -> Rating {
        // The tracker marks guessed urgencies with trailing `*` (e.g. `low*`).
        match word
            .trim()
            .trim_end_matches('*')
            .to_ascii_lowercase()
            .as_str()
        {
            "unimportant" | "negligible" | "none" => Rating::None,
            "low" => Rating::Low,
            "medium" | "moderate" => Rating::Medium,
            "high" | "important" => Rating::High,
            "critical" => Rating::Critical,
            _ => Rating::Unknown,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Rating::Unknown => "unknown",
            Rating::None => "none",
            Rating::Low => "low",
            Rating::Medium => "medium",
            Rating::High => "high",
            Rating::Critical => "critical",
        }
    }
}

impl fmt::Display for Rating {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A CVSS v3 base vector with its base score (computed by the `cvss` crate).
#[derive(Debug, Clone, PartialEq)]
pub struct Cvss {
    pub vector: String,
    pub base_score: f64,
}

impl Cvss {
    pub fn parse(vector: &str) -> Result<Cvss, String> {
        let v: cvss::v3::Vector = vector.trim().parse().map_err(|e| format!("{e}"))?;
        // The crate scores incomplete vectors; a base vector needs all eight metrics.
        let missing: Vec<&str> = [
            ("AV", v.av.is_none()),
            ("AC", v.ac.is_none()),
            ("PR", v.pr.is_none()),
            ("UI", v.ui.is_none()),
            ("S", v.s.is_none()),
            ("C", v.c.is_none()),
            ("I", v.i.is_none()),
            ("A", v.a.is_none()),
        ]
        .into_iter()
        .filter_map(|(m, absent)| absent.then_some(m))
        .collect();
        if !missing.is_empty() {
            return Err(format!("missing base metric(s) {}", missing.join(", ")));
        }
        Ok(Cvss {
            vector: vector.trim().to_owned(),
            base_score: v.base_score().value(),
        })
    }

    pub fn rating(&self) -> Rating {
        Rating::from_cvss_score(self.base_score)
    }
}

/// The severity of an exposure: CVSS where a feed gives a vector, else the distribution's
/// urgency word mapped to a [`Rating`].
#[derive(Debug, Clone, PartialEq)]
pub struct Severity {
    pub rating: Rating,
    pub cvss: Option<Cvss>,
    /// The distribution's own word when it decided the rating (e.g. `unimportant`).
    pub urgency: Option<String>,
}

impl Severity {
    pub fn unknown() -> Self {
        Severity {
            rating: Rating::Unknown,
            cvss: None,
            urgency: None,
        }
    }
}

/// Whether a feed names a source package (Debian, Ubuntu, Alpine origin) or a binary one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NameKind {
    Source,
    Binary,
}

/// One affected range `[introduced, fixed)` or `[introduced, last_affected]`; no end means
/// every later version is affected too (no fix yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AffectedRange {
    /// `None` = from the beginning (OSV `"0"`).
    pub introduced: Option<String>,
    pub fixed: Option<String>,
    pub last_affected: Option<String>,
}

impl AffectedRange {
    pub fn all() -> Self {
        AffectedRange {
            introduced: None,
            fixed: None,
            last_affected: None,
        }
    }

    pub fn fixed_in(v: impl Into<String>) -> Self {
        AffectedRange {
            introduced: None,
            fixed: Some(v.into()),
            last_affected: None,
        }
    }
}

/// What a feed says about one package in one release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Statement {
    /// The package as shipped in this release was never affected (tracker `fixed_version`
    /// "0", secdb fix version "0").
    NotAffected,
    /// Versions inside any range or equal to a listed version are affected.
    Affected {
        ranges: Vec<AffectedRange>,
        versions: Vec<String>,
    },
    /// Affected, and the distribution decided not to fix it in this release (tracker
    /// `nodsa_reason: ignored`, urgency `end-of-life`).
    WillNotFix { reason: String },
    /// The distribution has not decided whether the release is affected (tracker
    /// `undetermined`); reported, flagged as such.
    Undetermined,
}

/// The normalized record: one feed's statement about one package of one release, for one or
/// more CVEs (a DSA covers several).
#[derive(Debug, Clone, PartialEq)]
pub struct PackageAdvisory {
    pub feed: crate::feeds::FeedKind,
    /// The feed's record id (`DSA-5724-1`, `CVE-2024-6387`, `UBUNTU-CVE-2024-6387`, ...).
    pub advisory_id: String,
    /// CVE ids (the record id when it is one, aliases, Ubuntu's `upstream`). Records with no
    /// CVE keep their own id here so that nothing is dropped silently.
    pub cves: Vec<String>,
    pub release: Release,
    pub package: String,
    pub name_kind: NameKind,
    pub statement: Statement,
    /// Distribution urgency/priority word, when the feed gives one.
    pub urgency: Option<String>,
    /// CVSS v3 vectors the record carries (OSV `severity[]`).
    pub cvss: Option<Cvss>,
    /// Ubuntu's source → binary map (`ecosystem_specific.binaries`): binaries built from the
    /// source, with the version that carries the fix.
    pub binaries: Vec<(String, String)>,
    pub summary: Option<String>,
}

/// A CVE id check: `CVE-YYYY-NNNN...`.
pub fn is_cve_id(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("CVE-") else {
        return false;
    };
    let Some((year, num)) = rest.split_once('-') else {
        return false;
    };
    year.len() == 4
        && year.bytes().all(|b| b.is_ascii_digit())
        && num.len() >= 4
        && num.bytes().all(|b| b.is_ascii_digit())
}
