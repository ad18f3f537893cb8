//! Work ids: the one definition of how a work item is named between server and agent.
//!
//! - `job_<id>`: an install job's first attempt;
//! - `job_<id>~<n>`: its n-th attempt (n ≥ 2, no leading zero): a retry, or a job requeued
//!   after a refusal. An agent never runs one work id twice, so each attempt has its own;
//! - `pf_<id>`: a pre-flight check (one attempt only).
//!
//! `<id>` is ASCII letters, digits, `_` and `-`; the whole id is at most [`MAX_LEN`] bytes.
//! An agent uses a work id as a file name (its outbox) and a URL path segment, so nothing
//! outside that alphabet ever reaches either. Parsing accepts exactly what [`WorkId`]'s
//! `Display` writes: `WorkId::parse(s)?.to_string() == s`.

use std::fmt;
use std::str::FromStr;

/// Prefix of install jobs' ids.
pub const JOB_PREFIX: &str = "job_";
/// Prefix of pre-flight checks' ids.
pub const PREFLIGHT_PREFIX: &str = "pf_";
/// Separates a job id from its attempt number.
pub const ATTEMPT_SEPARATOR: char = '~';
/// Most bytes in a work id, attempt suffix included.
pub const MAX_LEN: usize = 128;

/// What a work id names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WorkKind {
    Install,
    Preflight,
}

/// A valid work id; see the module documentation for the format.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkId {
    /// The canonical text, e.g. `job_0193…~2`.
    text: String,
    /// Length of the job id part (before `~`).
    job_len: usize,
    attempt: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkIdError {
    #[error("work id {0:?} is empty")]
    Empty(String),
    #[error("work id {0:?} is longer than {MAX_LEN} bytes")]
    TooLong(String),
    #[error("work id {0:?} starts with neither {JOB_PREFIX:?} nor {PREFLIGHT_PREFIX:?}")]
    UnknownKind(String),
    #[error(
        "work id {0:?} has characters other than ASCII letters, digits, '_' and '-' in its id"
    )]
    BadCharacter(String),
    #[error(
        "work id {0:?} has an invalid attempt suffix (expected `~N`, N from 2, no leading zero)"
    )]
    BadAttempt(String),
    #[error("pre-flight work id {0:?} cannot carry an attempt suffix")]
    PreflightAttempt(String),
}

fn is_id_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

impl WorkId {
    /// Parses a work id as the server sends it.
    pub fn parse(s: &str) -> Result<WorkId, WorkIdError> {
        let bad = |f: fn(String) -> WorkIdError| f(s.to_owned());
        if s.is_empty() {
            return Err(bad(WorkIdError::Empty));
        }
        if s.len() > MAX_LEN {
            return Err(bad(WorkIdError::TooLong));
        }
        let (job, attempt) = match s.split_once(ATTEMPT_SEPARATOR) {
            Some((job, n)) => (job, Some(n)),
            None => (s, None),
        };
        let prefix = if job.starts_with(JOB_PREFIX) {
            JOB_PREFIX
        } else if job.starts_with(PREFLIGHT_PREFIX) {
            PREFLIGHT_PREFIX
        } else {
            return Err(bad(WorkIdError::UnknownKind));
        };
        let rest = &job[prefix.len()..];
        if rest.is_empty() || !rest.bytes().all(is_id_byte) {
            return Err(bad(WorkIdError::BadCharacter));
        }
        let attempt = match attempt {
            None => 1,
            Some(_) if prefix == PREFLIGHT_PREFIX => {
                return Err(bad(WorkIdError::PreflightAttempt))
            }
            Some(n) => {
                let canonical =
                    !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) && !n.starts_with('0');
                match n.parse::<u32>() {
                    Ok(v) if canonical && v >= 2 => v,
                    _ => return Err(bad(WorkIdError::BadAttempt)),
                }
            }
        };
        Ok(WorkId {
            text: s.to_owned(),
            job_len: job.len(),
            attempt,
        })
    }

    /// The work id of attempt `attempt` (1 = the first) of install job `job_id` (`job_…`).
    pub fn install(job_id: &str, attempt: u32) -> Result<WorkId, WorkIdError> {
        if !job_id.starts_with(JOB_PREFIX) || job_id.contains(ATTEMPT_SEPARATOR) {
            return Err(WorkIdError::UnknownKind(job_id.to_owned()));
        }
        if attempt > 1 {
            WorkId::parse(&format!("{job_id}{ATTEMPT_SEPARATOR}{attempt}"))
        } else {
            WorkId::parse(job_id)
        }
    }

    pub fn kind(&self) -> WorkKind {
        if self.text.starts_with(PREFLIGHT_PREFIX) {
            WorkKind::Preflight
        } else {
            WorkKind::Install
        }
    }

    /// The job (or pre-flight check) this is an attempt of, without the attempt suffix.
    pub fn job_id(&self) -> &str {
        &self.text[..self.job_len]
    }

    /// 1 for a first attempt (and every pre-flight check).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The id as sent on the wire: also a safe file name and URL path segment.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for WorkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for WorkId {
    type Err = WorkIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        WorkId::parse(s)
    }
}

impl AsRef<str> for WorkId {
    fn as_ref(&self) -> &str {
        &self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a valid id parses into: (kind, job id, attempt).
    type Parsed<'a> = (WorkKind, &'a str, u32);

    #[test]
    fn parses_exactly_the_documented_format() {
        let long_ok = format!("job_{}", "a".repeat(MAX_LEN - 4));
        let long_bad = format!("job_{}", "a".repeat(MAX_LEN - 3));
        let long_retry = format!("job_{}~2", "a".repeat(MAX_LEN - 6));
        let cases: Vec<(&str, Option<Parsed>)> = vec![
            (
                "job_0193a8e27f1c",
                Some((WorkKind::Install, "job_0193a8e27f1c", 1)),
            ),
            ("job_abc~2", Some((WorkKind::Install, "job_abc", 2))),
            ("job_abc~10", Some((WorkKind::Install, "job_abc", 10))),
            (
                "job_a-b_C9~4294967295",
                Some((WorkKind::Install, "job_a-b_C9", u32::MAX)),
            ),
            ("pf_job_abc", Some((WorkKind::Preflight, "pf_job_abc", 1))),
            (&long_ok, Some((WorkKind::Install, &long_ok, 1))),
            (
                &long_retry,
                Some((WorkKind::Install, &long_retry[..MAX_LEN - 2], 2)),
            ),
            ("", None),
            (&long_bad, None),
            ("job_", None),
            ("pf_", None),
            ("j1", None),
            ("job-1", None),
            ("JOB_abc", None),
            ("job_abc~", None),
            ("job_abc~1", None),
            ("job_abc~0", None),
            ("job_abc~02", None),
            ("job_abc~-2", None),
            ("job_abc~+2", None),
            ("job_abc~2~3", None),
            ("job_abc~4294967296", None),
            ("pf_job_abc~2", None),
            ("job_../etc/passwd", None),
            ("job_a/b", None),
            ("job_a b", None),
            ("job_a.json", None),
            ("job_é", None),
            ("job_a\n", None),
        ];
        for (input, want) in cases {
            let got = WorkId::parse(input);
            match want {
                Some((kind, job, attempt)) => {
                    let id = got.unwrap_or_else(|e| panic!("{input:?}: {e}"));
                    assert_eq!((id.kind(), id.job_id(), id.attempt()), (kind, job, attempt));
                    assert_eq!(id.to_string(), input, "canonical");
                    assert_eq!(id.as_str().parse::<WorkId>().as_ref(), Ok(&id));
                }
                None => assert!(got.is_err(), "{input:?} should be refused: {got:?}"),
            }
        }
    }

    #[test]
    fn formats_attempts_as_the_server_numbers_them() {
        let first = WorkId::install("job_abc", 1).expect("first");
        assert_eq!(first.as_str(), "job_abc");
        let third = WorkId::install("job_abc", 3).expect("third");
        assert_eq!(
            (third.as_str(), third.job_id(), third.attempt()),
            ("job_abc~3", "job_abc", 3)
        );
        assert!(WorkId::install("pf_job_abc", 1).is_err());
        assert!(WorkId::install("job_abc~2", 3).is_err());
        assert!(WorkId::install("job_a/b", 2).is_err());
    }
}
