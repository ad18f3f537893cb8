//! Debian version comparison, delegated to the `debversion` crate (dpkg's algorithm).

use std::cmp::Ordering;

#[derive(Debug, thiserror::Error)]
#[error("invalid Debian version {version:?}: {reason}")]
pub struct InvalidVersion {
    pub version: String,
    pub reason: String,
}

/// A parsed Debian package version; comparison follows `dpkg --compare-versions`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DebVersion(debversion::Version);

impl DebVersion {
    pub fn parse(s: &str) -> Result<Self, InvalidVersion> {
        s.trim()
            .parse::<debversion::Version>()
            .map(DebVersion)
            .map_err(|e| InvalidVersion {
                version: s.to_owned(),
                reason: e.to_string(),
            })
    }
}

/// Compares two Debian versions; `None` if either does not parse.
pub fn compare_deb(a: &str, b: &str) -> Option<Ordering> {
    Some(DebVersion::parse(a).ok()?.cmp(&DebVersion::parse(b).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::*;

    #[test]
    fn dpkg_ordering_cases() {
        // (a, b, expected) as `dpkg --compare-versions` orders them.
        let cases = [
            ("1.0", "1.0", Equal),
            ("1.0-1", "1.0-2", Less),
            ("1:1.0", "2.0", Greater),
            ("1.0~rc1", "1.0", Less),
            ("2.36-9+deb12u4", "2.36-9+deb12u10", Less),
            ("9.2p1-2+deb12u3", "9.2p1-2+deb12u2", Greater),
            ("1.0+really0.9", "1.0", Greater),
            ("5.10~bpo11+1", "5.10", Less),
            ("1.0a", "1.0", Greater),
            ("01", "1", Equal),
        ];
        for (a, b, want) in cases {
            assert_eq!(compare_deb(a, b), Some(want), "{a} vs {b}");
        }
    }
}
