//! Exact version order per packaging scheme: dpkg (validated by `patchwarden_core::version`,
//! compared by [`crate::deb`] without allocating), rpm (`patchwarden_core::rpm`) and apk
//! ([`crate::apk`]). Versions are parsed once
//! ([`Version`]) so that matching compares without re-parsing.

use patchwarden_core::rpm::RpmVersion;
use std::cmp::Ordering;
use std::fmt;

/// A packaging scheme: which version order applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scheme {
    Deb,
    Rpm,
    Apk,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Deb => "deb",
            Scheme::Rpm => "rpm",
            Scheme::Apk => "apk",
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Scheme {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "deb" | "dpkg" => Ok(Scheme::Deb),
            "rpm" => Ok(Scheme::Rpm),
            "apk" => Ok(Scheme::Apk),
            _ => Err(format!(
                "unknown version scheme {s:?} (expected deb, rpm or apk)"
            )),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {scheme} version {version:?}: {reason}")]
pub struct VersionError {
    pub scheme: Scheme,
    pub version: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Parsed {
    /// Validated here; compared by dpkg's algorithm ([`crate::deb`]) on the text, split once:
    /// epoch, then byte ranges of upstream and revision.
    Deb {
        epoch: u64,
        upstream: (u32, u32),
        revision: (u32, u32),
    },
    Rpm(RpmVersion),
    Apk,
}

/// A version validated and parsed under one scheme; keeps the text as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    raw: Box<str>,
    parsed: Parsed,
}

impl Version {
    pub fn parse(scheme: Scheme, s: &str) -> Result<Self, VersionError> {
        let err = |reason: String| VersionError {
            scheme,
            version: s.to_owned(),
            reason,
        };
        let t = s.trim();
        if t.is_empty() {
            return Err(err("empty".into()));
        }
        let parsed = match scheme {
            Scheme::Deb => {
                // debversion accepts some strings dpkg refuses; refuse them here.
                if let Some(c) = t
                    .chars()
                    .find(|c| !(c.is_ascii_alphanumeric() || ".+-~:".contains(*c)))
                {
                    return Err(err(format!("character {c:?} is not allowed")));
                }
                let (epoch, rest) = t.split_once(':').unwrap_or(("0", t));
                if epoch.is_empty() || !epoch.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(err("the epoch is not a number".into()));
                }
                if !rest.starts_with(|c: char| c.is_ascii_digit()) {
                    return Err(err("the version does not start with a digit".into()));
                }
                if let Some((_, rev)) = rest.rsplit_once('-') {
                    if rev.is_empty() {
                        return Err(err("empty revision after '-'".into()));
                    }
                    if rev.contains(':') {
                        return Err(err("':' in the revision".into()));
                    }
                }
                let epoch_num: u64 = match t.split_once(':') {
                    Some((e, _)) => e
                        .parse()
                        .map_err(|_| err("the epoch is too large".into()))?,
                    None => 0,
                };
                let start = t.find(':').map_or(0, |i| i + 1);
                let len = t.len();
                let (up, rev) = match t[start..].rfind('-') {
                    Some(j) => ((start, start + j), (start + j + 1, len)),
                    None => ((start, len), (len, len)),
                };
                let offset = |(a, b): (usize, usize)| (a as u32, b as u32);
                if len > u32::MAX as usize {
                    return Err(err("too long".into()));
                }
                Parsed::Deb {
                    epoch: epoch_num,
                    upstream: offset(up),
                    revision: offset(rev),
                }
            }
            Scheme::Rpm => Parsed::Rpm(RpmVersion::parse(t).map_err(|e| err(e.reason.into()))?),
            Scheme::Apk => {
                crate::apk::validate(t).map_err(|r| err(r.into()))?;
                Parsed::Apk
            }
        };
        Ok(Version {
            raw: t.into(),
            parsed,
        })
    }

    pub fn scheme(&self) -> Scheme {
        match self.parsed {
            Parsed::Deb { .. } => Scheme::Deb,
            Parsed::Rpm(_) => Scheme::Rpm,
            Parsed::Apk => Scheme::Apk,
        }
    }

    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// A Debian version's epoch, upstream and revision (`None` for other schemes).
    pub(crate) fn deb_parts(&self) -> Option<(u64, &[u8], &[u8])> {
        match self.parsed {
            Parsed::Deb {
                epoch,
                upstream,
                revision,
            } => {
                let b = self.raw.as_bytes();
                Some((epoch, part(b, upstream), part(b, revision)))
            }
            _ => None,
        }
    }

    /// The order of two versions of the same scheme; `None` across schemes.
    pub fn try_cmp(&self, other: &Version) -> Option<Ordering> {
        match (&self.parsed, &other.parsed) {
            (
                Parsed::Deb {
                    epoch: ea,
                    upstream: ua,
                    revision: ra,
                },
                Parsed::Deb {
                    epoch: eb,
                    upstream: ub,
                    revision: rb,
                },
            ) => {
                let (a, b) = (self.raw.as_bytes(), other.raw.as_bytes());
                Some(ea.cmp(eb).then_with(|| {
                    crate::deb::verrevcmp(part(a, *ua), part(b, *ub))
                        .then_with(|| crate::deb::verrevcmp(part(a, *ra), part(b, *rb)))
                }))
            }
            (Parsed::Rpm(a), Parsed::Rpm(b)) => Some(a.cmp(b)),
            (Parsed::Apk, Parsed::Apk) => Some(crate::apk::compare(&self.raw, &other.raw)),
            _ => None,
        }
    }
}

fn part(s: &[u8], (x, y): (u32, u32)) -> &[u8] {
    s.get(x as usize..y as usize).unwrap_or_default()
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

/// Orders `a` and `b` under `scheme`, as `dpkg --compare-versions`, rpm's `rpmvercmp` (on
/// `[E:]V[-R]`) or `apk version -t` would. Both must be valid versions of the scheme.
pub fn compare(scheme: Scheme, a: &str, b: &str) -> Result<Ordering, VersionError> {
    let a = Version::parse(scheme, a)?;
    let b = Version::parse(scheme, b)?;
    // Same scheme by construction.
    Ok(a.try_cmp(&b).unwrap_or(Ordering::Equal))
}
