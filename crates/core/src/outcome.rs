//! The end state of each targeted package after an install run, decided from the package
//! database (dpkg) first and the command's output second; the exit code alone decides nothing.

use crate::apt::{is_clean_status, is_present_status};
use crate::classify::{classify_apt, Finding};
use crate::version::compare_deb;
use crate::{FailureClass, PackageState};
use std::cmp::Ordering;

/// Most evidence lines attached to one decision (the wire protocol's bound as well).
pub const MAX_EVIDENCE_LINES: usize = 20;

/// What dpkg says about one package. `version: None` means not installed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PkgDb {
    pub version: Option<String>,
    /// dpkg status abbreviation (`ii`, `iF`, ...).
    pub status: Option<String>,
}

impl PkgDb {
    pub fn installed(version: &str, status: &str) -> Self {
        PkgDb {
            version: Some(version.to_owned()),
            status: Some(status.to_owned()),
        }
    }

    /// Files on disk at some version (a `rc` package, config files only, is not installed).
    pub fn is_installed(&self) -> bool {
        self.version.is_some() && self.status.as_deref().is_none_or(is_present_status)
    }

    fn describe(&self, package: &str) -> String {
        match (&self.version, &self.status) {
            (Some(v), Some(s)) if self.is_installed() => format!("dpkg: {package} {v} {s}"),
            _ => format!("dpkg: {package} is not installed"),
        }
    }
}

/// What the install command did.
#[derive(Debug, Clone, Copy)]
pub struct RunEvidence<'a> {
    pub exit_code: Option<i32>,
    pub stdout: &'a str,
    pub stderr: &'a str,
    /// The time budget ran out and the command was killed.
    pub timed_out: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub state: PackageState,
    pub class: Option<FailureClass>,
    pub evidence: Vec<String>,
}

impl Decision {
    fn new(state: PackageState, class: Option<FailureClass>, mut evidence: Vec<String>) -> Self {
        evidence.truncate(MAX_EVIDENCE_LINES);
        Decision {
            state,
            class,
            evidence,
        }
    }
}

/// Decides one package's end state.
///
/// - Installed at (or above) `intended` with a clean status: `verified`, or `pending_reboot`
///   when the package is in /run/reboot-required.pkgs. This holds even when apt exited 100
///   because another package's script failed, or when the budget ran out after dpkg finished.
/// - At `intended` but not clean (`iF`, `iU`, ...): `failed`, `install_script_failed` (or
///   `timeout` when the run was killed), with the script-failure lines naming the package.
/// - Not at `intended`: `failed`, with `timeout` if the run was killed, else the class of a
///   finding naming this package, else of a finding naming none, else of the first finding;
///   with no finding at all: `verification_failed` if apt exited 0 (it claimed success), else
///   `unknown`.
pub fn decide(
    package: &str,
    intended: &str,
    before: &PkgDb,
    after: &PkgDb,
    run: &RunEvidence,
    reboot_required_pkgs: &[String],
) -> Decision {
    let findings = classify_apt(run.stdout, run.stderr, run.exit_code);
    decide_with_findings(
        package,
        intended,
        before,
        after,
        run,
        &findings,
        reboot_required_pkgs,
    )
}

/// [`decide`] with findings already computed (classify once, decide for many packages).
pub fn decide_with_findings(
    package: &str,
    intended: &str,
    before: &PkgDb,
    after: &PkgDb,
    run: &RunEvidence,
    findings: &[Finding],
    reboot_required_pkgs: &[String],
) -> Decision {
    let after_line = after.describe(package);
    let at_or_above = after.is_installed()
        && after
            .version
            .as_deref()
            .is_some_and(|v| reaches(v, intended));
    let clean = after.status.as_deref().is_some_and(is_clean_status);

    if at_or_above && clean {
        let mut evidence = vec![after_line];
        if after.version.as_deref() != Some(intended) {
            evidence.push(format!(
                "installed version is newer than the intended {intended}"
            ));
        }
        if reboot_required_pkgs.iter().any(|p| p == package) {
            evidence.push(format!("{package} is listed in /run/reboot-required.pkgs"));
            return Decision::new(
                PackageState::PendingReboot,
                Some(FailureClass::RebootPending),
                evidence,
            );
        }
        return Decision::new(PackageState::Verified, None, evidence);
    }

    let mut evidence = Vec::new();
    if at_or_above {
        // Unpacked at the right version but not configured: a maintainer script failed, or the
        // run was killed in the middle of it.
        let class = if run.timed_out {
            FailureClass::Timeout
        } else {
            FailureClass::InstallScriptFailed
        };
        evidence.push(after_line);
        let about_me = findings
            .iter()
            .filter(|f| f.package.as_deref() == Some(package));
        let script = about_me
            .clone()
            .filter(|f| f.class == FailureClass::InstallScriptFailed);
        let chosen: Vec<&Finding> = if script.clone().next().is_some() {
            script.collect()
        } else {
            about_me.collect()
        };
        evidence.extend(chosen.into_iter().flat_map(|f| f.evidence.iter().cloned()));
        if run.timed_out {
            evidence.push("the time budget ran out and the run was killed".into());
        }
        return Decision::new(PackageState::Failed, Some(class), evidence);
    }

    let before_line = match &before.version {
        Some(v) if before.is_installed() => format!("before: {package} {v}"),
        _ => format!("before: {package} not installed"),
    };
    evidence.push(format!("{after_line} (intended {intended})"));
    if before.version != after.version || !after.is_installed() {
        evidence.push(before_line);
    }
    if run.timed_out {
        evidence.push("the time budget ran out and the run was killed".into());
        return Decision::new(PackageState::Failed, Some(FailureClass::Timeout), evidence);
    }
    let chosen = findings
        .iter()
        .find(|f| f.package.as_deref() == Some(package))
        .or_else(|| findings.iter().find(|f| f.package.is_none()))
        .or_else(|| findings.first());
    let class = match chosen {
        Some(f) => {
            evidence.extend(f.evidence.iter().cloned());
            f.class
        }
        None if run.exit_code == Some(0) => {
            evidence.push(format!(
                "apt-get exited 0 but the package database does not show {package} at {intended}"
            ));
            FailureClass::VerificationFailed
        }
        None => {
            evidence.push(match run.exit_code {
                Some(c) => format!("apt-get exited {c} with no recognised message"),
                None => "apt-get did not exit normally".to_owned(),
            });
            FailureClass::Unknown
        }
    };
    Decision::new(PackageState::Failed, Some(class), evidence)
}

/// `installed` is at or above `intended`; exact string equality counts even when a version
/// does not parse.
fn reaches(installed: &str, intended: &str) -> bool {
    installed == intended
        || matches!(
            compare_deb(installed, intended),
            Some(Ordering::Equal | Ordering::Greater)
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use FailureClass::*;
    use PackageState::*;

    const POSTFAIL_OUT: &str = "Setting up pw-big (2.0) ...\nSetting up pw-postfail (2.0) ...\npw-postfail: configuring failed on purpose\ndpkg: error processing package pw-postfail (--configure):\n installed pw-postfail package post-installation script subprocess returned error exit status 1\nErrors were encountered while processing:\n pw-postfail\n";
    const DPKG_ERR: &str = "E: Sub-process /usr/bin/dpkg returned an error code (1)\n";

    struct Case {
        name: &'static str,
        package: &'static str,
        intended: &'static str,
        before: PkgDb,
        after: PkgDb,
        exit: Option<i32>,
        stdout: &'static str,
        stderr: &'static str,
        timed_out: bool,
        reboot: &'static [&'static str],
        want: (PackageState, Option<FailureClass>),
        evidence_has: &'static str,
    }

    fn base(name: &'static str) -> Case {
        Case {
            name,
            package: "pw-ok",
            intended: "2.0",
            before: PkgDb::installed("1.0", "ii"),
            after: PkgDb::installed("2.0", "ii"),
            exit: Some(0),
            stdout: "",
            stderr: "",
            timed_out: false,
            reboot: &[],
            want: (Verified, None),
            evidence_has: "dpkg: pw-ok 2.0 ii",
        }
    }

    fn check(c: Case) {
        let reboot: Vec<String> = c.reboot.iter().map(|s| s.to_string()).collect();
        let run = RunEvidence {
            exit_code: c.exit,
            stdout: c.stdout,
            stderr: c.stderr,
            timed_out: c.timed_out,
        };
        let d = decide(c.package, c.intended, &c.before, &c.after, &run, &reboot);
        assert_eq!((d.state, d.class), c.want, "{}: {d:#?}", c.name);
        assert!(
            d.evidence.iter().any(|e| e.contains(c.evidence_has)),
            "{}: evidence {:?} lacks {:?}",
            c.name,
            d.evidence,
            c.evidence_has
        );
        assert!(d.evidence.len() <= MAX_EVIDENCE_LINES);
    }

    #[test]
    fn decisions() {
        let cases = vec![
            base("plain success"),
            Case {
                reboot: &["pw-ok"],
                want: (PendingReboot, Some(RebootPending)),
                evidence_has: "reboot-required.pkgs",
                ..base("reboot required")
            },
            Case {
                // The postinst-fail capture: pw-big reached 2.0 cleanly while pw-postfail failed.
                package: "pw-big",
                exit: Some(100),
                stdout: POSTFAIL_OUT,
                stderr: DPKG_ERR,
                evidence_has: "dpkg: pw-big 2.0 ii",
                ..base("verified despite exit 100 from another package")
            },
            Case {
                package: "pw-postfail",
                after: PkgDb::installed("2.0", "iF"),
                exit: Some(100),
                stdout: POSTFAIL_OUT,
                stderr: DPKG_ERR,
                want: (Failed, Some(InstallScriptFailed)),
                evidence_has: "installed pw-postfail package post-installation script",
                ..base("half-configured at the intended version")
            },
            Case {
                package: "pw-postfail",
                after: PkgDb::installed("2.0", "iF"),
                exit: None,
                timed_out: true,
                want: (Failed, Some(Timeout)),
                evidence_has: "time budget",
                ..base("killed in the middle of a postinst")
            },
            Case {
                after: PkgDb::installed("1.0", "ii"),
                exit: Some(100),
                stderr: "E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process 5 (apt-get)\n",
                want: (Failed, Some(LockHeld)),
                evidence_has: "Could not get lock",
                ..base("lock held")
            },
            Case {
                after: PkgDb::installed("1.0", "ii"),
                exit: Some(0),
                want: (Failed, Some(VerificationFailed)),
                evidence_has: "exited 0",
                ..base("exit 0 but old version: never verified")
            },
            Case {
                after: PkgDb::installed("1.0", "ii"),
                exit: Some(100),
                stderr: "E: Something nobody has seen\n",
                want: (Failed, Some(Unknown)),
                evidence_has: "Something nobody",
                ..base("unknown failure")
            },
            Case {
                package: "pw-ok",
                after: PkgDb::installed("1.0", "ii"),
                exit: Some(100),
                stdout: "The following packages have unmet dependencies:\n pw-dep : Depends: pw-missing (>= 1) but it is not installable\n",
                stderr: "E: Unable to correct problems, you have held broken packages.\n",
                want: (Failed, Some(DependencyConflict)),
                evidence_has: "held broken packages",
                ..base("another package's conflict aborts the whole transaction")
            },
            Case {
                package: "pw-dep",
                after: PkgDb::installed("1.0", "ii"),
                exit: Some(100),
                stdout: "The following packages have unmet dependencies:\n pw-dep : Depends: pw-missing (>= 1) but it is not installable\n",
                stderr: "E: Unable to correct problems, you have held broken packages.\n",
                want: (Failed, Some(DependencyConflict)),
                evidence_has: "pw-missing",
                ..base("this package's own dependency line is preferred")
            },
            Case {
                package: "pw-ok",
                after: PkgDb::installed("1.0", "ii"),
                exit: Some(100),
                stdout: POSTFAIL_OUT,
                stderr: "E: Could not get lock /var/lib/dpkg/lock-frontend.\n",
                want: (Failed, Some(LockHeld)),
                evidence_has: "Could not get lock",
                ..base("a general finding beats one about another package")
            },
            Case {
                after: PkgDb::installed("2.1", "ii"),
                evidence_has: "newer than the intended",
                ..base("newer than intended counts as verified")
            },
            Case {
                after: PkgDb::installed("1.0", "ii"),
                exit: None,
                timed_out: true,
                want: (Failed, Some(Timeout)),
                evidence_has: "time budget",
                ..base("timed out before anything happened")
            },
            Case {
                after: PkgDb { version: Some("2.0".into()), status: Some("rc".into()) },
                exit: Some(0),
                want: (Failed, Some(VerificationFailed)),
                evidence_has: "not installed",
                ..base("config files only is not installed")
            },
            Case {
                intended: "1:2.0-1",
                after: PkgDb::installed("1:2.0-1", "hi"),
                evidence_has: "hi",
                ..base("held but installed at the version is clean")
            },
        ];
        for c in cases {
            check(c);
        }
    }
}
