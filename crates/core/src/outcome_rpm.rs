//! The end state of each targeted package after a dnf run, decided from the rpm database
//! first and dnf's output second: the rpm counterpart of [`crate::outcome::decide_with_findings`]
//! (same [`Decision`], [`RunEvidence`] and evidence bound).
//!
//! rpm has no "half-configured" state: after a failed `%post` the database shows the new
//! version, installed, and dnf exits 0. So a package at the intended version is `verified` only
//! when no scriptlet failure names it; otherwise it is `failed`/`install_script_failed`.

use crate::classify::Finding;
use crate::outcome::{Decision, RunEvidence, MAX_EVIDENCE_LINES};
use crate::rpm::compare_rpm;
use crate::{FailureClass, PackageState};
use std::cmp::Ordering;

fn decision(
    state: PackageState,
    class: Option<FailureClass>,
    mut evidence: Vec<String>,
) -> Decision {
    evidence.truncate(MAX_EVIDENCE_LINES);
    Decision {
        state,
        class,
        evidence,
    }
}

/// `installed` is at or above `intended` (`1.1-1` reaches `1.1`: a target without a release
/// accepts any release).
pub fn reaches(installed: &str, intended: &str) -> bool {
    installed == intended
        || matches!(
            compare_rpm(installed, intended),
            Some(Ordering::Equal | Ordering::Greater)
        )
}

/// Decides one package's end state from its rpm versions before and after the run (`None`:
/// not installed), the run, and the run's [`crate::classify_dnf::classify_dnf`] findings.
///
/// - At (or above) `intended`, no scriptlet failure naming it: `verified`, or `pending_reboot`
///   when it is in `reboot_required_pkgs`.
/// - At `intended` but a scriptlet of it failed: `failed`, `install_script_failed`.
/// - Not at `intended`: `failed`, with `lock_held` if the run was killed while waiting for the
///   dnf lock (dnf 4 waits forever), else `timeout` if it was killed, else the class of a finding
///   naming this package, else of one naming none, else of the first; with no finding:
///   `verification_failed` if dnf exited 0, else `unknown`.
pub fn decide_rpm(
    package: &str,
    intended: &str,
    before: Option<&str>,
    after: Option<&str>,
    run: &RunEvidence,
    findings: &[Finding],
    reboot_required_pkgs: &[String],
) -> Decision {
    let after_line = match after {
        Some(v) => format!("rpm: {package} {v} installed"),
        None => format!("rpm: {package} is not installed"),
    };
    let about_me = |f: &&Finding| f.package.as_deref() == Some(package);
    let at_or_above = after.is_some_and(|v| reaches(v, intended));
    let script_failures: Vec<&Finding> = findings
        .iter()
        .filter(about_me)
        .filter(|f| f.class == FailureClass::InstallScriptFailed)
        .collect();

    if at_or_above {
        let mut evidence = vec![after_line];
        if !script_failures.is_empty() {
            evidence.extend(
                script_failures
                    .iter()
                    .flat_map(|f| f.evidence.iter().cloned()),
            );
            evidence.push(format!(
                "rpm shows {package} at the new version, but its scriptlet failed: it may not be set up"
            ));
            return decision(
                PackageState::Failed,
                Some(FailureClass::InstallScriptFailed),
                evidence,
            );
        }
        if after != Some(intended)
            && after.is_none_or(|v| compare_rpm(v, intended) != Some(Ordering::Equal))
        {
            evidence.push(format!(
                "installed version is newer than the intended {intended}"
            ));
        }
        if reboot_required_pkgs.iter().any(|p| p == package) {
            evidence.push(format!("{package} needs a reboot to take effect"));
            return decision(
                PackageState::PendingReboot,
                Some(FailureClass::RebootPending),
                evidence,
            );
        }
        return decision(PackageState::Verified, None, evidence);
    }

    let mut evidence = vec![format!("{after_line} (intended {intended})")];
    if before != after {
        evidence.push(match before {
            Some(v) => format!("before: {package} {v}"),
            None => format!("before: {package} not installed"),
        });
    }
    if run.timed_out {
        let lock = findings.iter().find(|f| f.class == FailureClass::LockHeld);
        evidence.push("the time budget ran out and the run was killed".into());
        if let Some(f) = lock {
            evidence.extend(f.evidence.iter().cloned());
            return decision(PackageState::Failed, Some(FailureClass::LockHeld), evidence);
        }
        return decision(PackageState::Failed, Some(FailureClass::Timeout), evidence);
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
                "dnf exited 0 but the rpm database does not show {package} at {intended}"
            ));
            FailureClass::VerificationFailed
        }
        None => {
            evidence.push(match run.exit_code {
                Some(c) => format!("dnf exited {c} with no recognised message"),
                None => "dnf did not exit normally".to_owned(),
            });
            FailureClass::Unknown
        }
    };
    decision(PackageState::Failed, Some(class), evidence)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify_dnf::classify_dnf;
    use FailureClass::*;
    use PackageState::*;

    fn captured(name: &str) -> (String, String, Option<i32>) {
        let path = format!("{}/tests/fixtures/dnf/{name}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let exit = text
            .lines()
            .find_map(|l| l.strip_prefix("# exit: "))
            .and_then(|c| c.trim().parse().ok());
        let o = text.find("--- stdout\n").expect("stdout") + 11;
        let e = text.find("--- stderr\n").expect("stderr");
        (text[o..e].to_owned(), text[e + 11..].to_owned(), exit)
    }

    struct Case {
        name: &'static str,
        fixture: &'static str,
        package: &'static str,
        intended: &'static str,
        before: Option<&'static str>,
        after: Option<&'static str>,
        timed_out: bool,
        reboot: &'static [&'static str],
        want: (PackageState, Option<FailureClass>),
        evidence_has: &'static str,
    }

    fn base(name: &'static str, fixture: &'static str) -> Case {
        Case {
            name,
            fixture,
            package: "pw-ok",
            intended: "2.0-1",
            before: Some("1.0-1"),
            after: Some("2.0-1"),
            timed_out: false,
            reboot: &[],
            want: (Verified, None),
            evidence_has: "rpm: pw-ok 2.0-1 installed",
        }
    }

    fn check(c: Case) {
        let (out, err, exit) = captured(c.fixture);
        let run = RunEvidence {
            exit_code: if c.timed_out { None } else { exit },
            stdout: &out,
            stderr: &err,
            timed_out: c.timed_out,
        };
        let findings = classify_dnf(&out, &err, run.exit_code);
        let reboot: Vec<String> = c.reboot.iter().map(|s| s.to_string()).collect();
        let d = decide_rpm(
            c.package, c.intended, c.before, c.after, &run, &findings, &reboot,
        );
        assert_eq!((d.state, d.class), c.want, "{}: {d:#?}", c.name);
        assert!(
            d.evidence.iter().any(|e| e.contains(c.evidence_has)),
            "{}: evidence {:?} lacks {:?}",
            c.name,
            d.evidence,
            c.evidence_has
        );
    }

    #[test]
    fn decisions_on_captured_runs() {
        let cases = vec![
            base("plain upgrade", "install-ok.txt"),
            Case {
                reboot: &["pw-ok"],
                want: (PendingReboot, Some(RebootPending)),
                evidence_has: "reboot",
                ..base("reboot needed", "install-ok.txt")
            },
            Case {
                package: "pw-postfail",
                after: Some("2.0-1"),
                want: (Failed, Some(InstallScriptFailed)),
                evidence_has: "%post(pw-postfail-2.0-1.noarch) scriptlet failed",
                ..base(
                    "failed %post, exit 0, new version in rpm: never verified",
                    "install-postfail.txt",
                )
            },
            Case {
                ..base(
                    "the other package of the same transaction is verified",
                    "install-two-postfail.txt",
                )
            },
            Case {
                package: "pw-prefail",
                after: Some("1.0-1"),
                want: (Failed, Some(InstallScriptFailed)),
                evidence_has: "Error in PREIN scriptlet",
                ..base("failed %pre keeps the old version", "install-prefail.txt")
            },
            Case {
                package: "pw-dep",
                after: Some("1.0-1"),
                want: (Failed, Some(DependencyConflict)),
                evidence_has: "nothing provides pw-missing",
                ..base("unmet dependency", "dep-unmet.txt")
            },
            Case {
                after: Some("1.0-1"),
                want: (Failed, Some(DependencyConflict)),
                evidence_has: "Problem",
                ..base(
                    "another package's problem aborts the transaction",
                    "dep-unmet.txt",
                )
            },
            Case {
                after: Some("1.0-1"),
                want: (Failed, Some(RepoUnreachable)),
                evidence_has: "Couldn't connect to server",
                ..base("repository down", "repo-down.txt")
            },
            Case {
                after: Some("1.0-1"),
                timed_out: true,
                want: (Failed, Some(LockHeld)),
                evidence_has: "Waiting for process with pid",
                ..base("killed while waiting for the dnf lock", "lock-held.txt")
            },
            Case {
                after: Some("1.0-1"),
                timed_out: true,
                want: (Failed, Some(Timeout)),
                evidence_has: "time budget",
                ..base("killed mid-transaction", "install-ok.txt")
            },
            Case {
                after: Some("1.0-1"),
                want: (Failed, Some(VerificationFailed)),
                evidence_has: "exited 0",
                ..base("exit 0 but the old version", "install-ok.txt")
            },
            Case {
                intended: "1.5",
                evidence_has: "newer than the intended",
                ..base(
                    "newer than intended, target without release",
                    "install-ok.txt",
                )
            },
            Case {
                intended: "1:1.0-1",
                want: (Failed, Some(VerificationFailed)),
                evidence_has: "intended 1:1.0-1",
                ..base("an epoch outranks any version", "install-ok.txt")
            },
        ];
        for c in cases {
            check(c);
        }
    }
}
