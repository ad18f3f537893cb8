//! Feed parsers. Each takes the feed's bytes and returns normalized records or a
//! [`FeedError`] that names where the input broke (file, record, id, line/column, JSON path or
//! CSV field). All-or-nothing: a malformed feed never yields a partial result, so the caller
//! keeps the previous import in force.

pub mod alpine;
pub mod debian;
pub mod epss;
pub mod kev;
pub mod osv;

use serde::de::DeserializeOwned;
use std::fmt;

pub use alpine::{parse_alpine_secdb, AlpineImport};
pub use debian::{parse_debian_tracker, DebianTrackerImport};
pub use epss::{parse_epss_csv, Epss, EpssScores};
pub use kev::{parse_kev, KevCatalog, KevEntry};
pub use osv::{parse_osv, parse_osv_files, parse_osv_zip, OsvImport};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FeedKind {
    Osv,
    DebianTracker,
    Kev,
    Epss,
    AlpineSecdb,
}

impl FeedKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FeedKind::Osv => "osv",
            FeedKind::DebianTracker => "debian-tracker",
            FeedKind::Kev => "cisa-kev",
            FeedKind::Epss => "epss",
            FeedKind::AlpineSecdb => "alpine-secdb",
        }
    }
}

impl fmt::Display for FeedKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a feed broke. Every part is optional; [`fmt::Display`] prints the known ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Location {
    /// A file inside a set of files or a zip archive.
    pub file: Option<String>,
    /// 0-based index of the record (JSON array element, CSV data row, zip entry).
    pub record: Option<usize>,
    /// The record's id when known (OSV id, CVE id, package name).
    pub id: Option<String>,
    /// 1-based line (and column) in the input text.
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// JSON path (`.affected[0].ranges[0].events[1].fixed`) or CSV column name.
    pub path: Option<String>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(file) = &self.file {
            parts.push(format!("file {file}"));
        }
        if let Some(r) = self.record {
            parts.push(format!("record {r}"));
        }
        if let Some(id) = &self.id {
            parts.push(format!("id {id}"));
        }
        match (self.line, self.column) {
            (Some(l), Some(c)) => parts.push(format!("line {l} column {c}")),
            (Some(l), None) => parts.push(format!("line {l}")),
            _ => {}
        }
        if let Some(p) = &self.path {
            parts.push(format!("at {p}"));
        }
        if parts.is_empty() {
            f.write_str("the start of the input")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

/// A rejected feed: which feed, where, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{feed} feed rejected: {location}: {reason}")]
pub struct FeedError {
    pub feed: FeedKind,
    /// Boxed to keep `Result<_, FeedError>` small.
    pub location: Box<Location>,
    pub reason: String,
}

impl FeedError {
    pub(crate) fn new(feed: FeedKind, location: Location, reason: impl Into<String>) -> Self {
        FeedError {
            feed,
            location: Box::new(location),
            reason: reason.into(),
        }
    }

    pub(crate) fn in_file(mut self, file: &str) -> Self {
        self.location.file = Some(file.to_owned());
        self
    }
}

/// serde_json's message without its trailing " at line L column C" (kept separately).
fn bare_message(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match s.rfind(" at line ") {
        Some(i) => s[..i].to_owned(),
        None => s,
    }
}

/// Deserializes a whole JSON document into `T`; errors carry line, column and JSON path.
/// Trailing non-whitespace after the document is an error too.
pub(crate) fn parse_json<T: DeserializeOwned>(
    feed: FeedKind,
    bytes: &[u8],
) -> Result<T, FeedError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.inner();
        let location = Location {
            line: Some(inner.line()),
            column: Some(inner.column()),
            path: (path != ".").then_some(path),
            ..Location::default()
        };
        let reason = if inner.is_eof() {
            format!("truncated input: {}", bare_message(inner))
        } else {
            bare_message(inner)
        };
        FeedError::new(feed, location, reason)
    })?;
    de.end().map_err(|e| {
        FeedError::new(
            feed,
            Location {
                line: Some(e.line()),
                column: Some(e.column()),
                ..Location::default()
            },
            bare_message(&e),
        )
    })?;
    Ok(value)
}

/// Deserializes an already-parsed JSON value (one record) into `T`; errors carry the path.
pub(crate) fn from_value<T: DeserializeOwned>(
    feed: FeedKind,
    value: serde_json::Value,
    record: Option<usize>,
    id: Option<String>,
) -> Result<T, FeedError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        FeedError::new(
            feed,
            Location {
                record,
                id,
                path: (path != ".").then_some(path),
                ..Location::default()
            },
            e.inner().to_string(),
        )
    })
}

/// A `YYYY-MM-DD` date.
pub(crate) fn parse_date(s: &str) -> Result<time::Date, String> {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(s.trim(), &fmt).map_err(|e| format!("{s:?} is not a YYYY-MM-DD date: {e}"))
}
