//! Patchwarden's vulnerability core: advisory feeds parsed into normalized records, exact
//! version order (deb, rpm, apk), exposure matching per device, priority and SLA clocks.
//!
//! Architecture Invariant: pure. Parsers take bytes (`&[u8]`/`&str`), the caller reads files
//! and URLs; the clock is a parameter. A malformed feed is an error naming where it broke,
//! never a partial result.

pub mod apk;
pub mod deb;
pub mod feeds;
pub mod index;
pub mod matching;
pub mod model;
pub mod priority;
pub mod sla;
pub mod version;

pub use feeds::{FeedError, FeedKind, Location};
pub use index::{AdvisoryIndex, ChangedKeys, PackageKey};
pub use matching::{
    match_device, match_device_into, DeviceFacts, Exposure, ExposureRef, Fix, InstalledPackage,
    Matcher, Matches, UpdateCandidate,
};
pub use model::{Distro, PackageAdvisory, Rating, Release, Severity};
pub use priority::{priority, Priority};
pub use sla::{sla_clock, SlaClock, SlaPolicy, SlaState};
pub use version::{compare, Scheme, Version, VersionError};
