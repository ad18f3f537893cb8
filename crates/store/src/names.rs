//! Core's vocabulary as stored: every enum is written by its `as_str` name and read back with
//! [`decode`], whose failure names the row. An unknown stored value is corruption, never a default.

use crate::{Result, StoreError};
use patchwarden_core::{
    AuditOutcome, DeploymentStatus, FailureClass, JobStatus, PackageState, RebootMode,
    RebootStatus, Role, TriageStatus,
};
use std::fmt::Display;
use std::str::FromStr;

/// An enum stored as its name.
pub(crate) trait StoredName: FromStr {
    /// What a value is, with its article, as a message says it ("a deployment status").
    const WHAT: &'static str;
    /// Every valid name, for the message.
    fn names() -> Vec<&'static str>;
}

macro_rules! stored_names {
    ($($ty:ty => $what:literal),+ $(,)?) => {$(
        impl StoredName for $ty {
            const WHAT: &'static str = $what;
            fn names() -> Vec<&'static str> {
                <$ty>::ALL.iter().map(|v| v.as_str()).collect()
            }
        }
    )+};
}

stored_names! {
    Role => "a role",
    DeploymentStatus => "a deployment status",
    JobStatus => "a job status",
    PackageState => "a package state",
    FailureClass => "a failure class",
    RebootMode => "a reboot mode",
    RebootStatus => "a reboot status",
    TriageStatus => "a triage status",
    AuditOutcome => "an audit outcome",
}

/// Reads the stored name `value` of `column` in the row `key` of `table`.
pub(crate) fn decode<T: StoredName>(
    table: &str,
    key: impl Display,
    column: &str,
    value: &str,
) -> Result<T> {
    value.parse().map_err(|_| {
        StoreError::Corrupt(format!(
            "{table} row {key}: {column} {value:?} is not {} (use {})",
            T::WHAT,
            T::names().join(", ")
        ))
    })
}

/// [`decode`] of a nullable column: `NULL` is `None`.
pub(crate) fn decode_opt<T: StoredName>(
    table: &str,
    key: impl Display,
    column: &str,
    value: Option<&str>,
) -> Result<Option<T>> {
    value.map(|v| decode(table, key, column, v)).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check<T: StoredName + std::fmt::Debug>(value: &str, want: std::result::Result<T, &str>) {
        let got = decode::<T>("deployments", "dep_1", "status", value);
        match (got, want) {
            (Ok(g), Ok(w)) => assert_eq!(format!("{g:?}"), format!("{w:?}"), "{value}"),
            (Err(StoreError::Corrupt(m)), Err(w)) => assert_eq!(m, w, "{value}"),
            (g, w) => panic!("{value}: got {g:?}, want {w:?}"),
        }
    }

    #[test]
    fn names_decode_and_unknown_ones_name_the_row() {
        check("running", Ok(DeploymentStatus::Running));
        check(
            "paused",
            Err::<DeploymentStatus, _>(
                "deployments row dep_1: status \"paused\" is not a deployment status \
                 (use pending_approval, running, halted, cancelled, completed)",
            ),
        );
        check("pending_reboot", Ok(PackageState::PendingReboot));
        check("unknown", Ok(FailureClass::Unknown));
        check(
            "",
            Err::<AuditOutcome, _>(
                "deployments row dep_1: status \"\" is not an audit outcome (use ok, denied, failed)",
            ),
        );
        check(
            "Running",
            Err::<JobStatus, _>(
                "deployments row dep_1: status \"Running\" is not a job status \
                 (use queued, running, done)",
            ),
        );
        assert_eq!(
            decode_opt::<FailureClass>("attempts", 7, "class", None).ok(),
            Some(None)
        );
        assert!(matches!(
            decode_opt::<FailureClass>("attempts", 7, "class", Some("cosmic_ray")),
            Err(StoreError::Corrupt(m)) if m.starts_with("attempts row 7: class \"cosmic_ray\" is not a failure class (use device_offline, ")
        ));
    }
}
