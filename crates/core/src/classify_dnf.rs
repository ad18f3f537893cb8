//! Failure classification of dnf/rpm output: a rule table (regular expressions over lines) with
//! the same shape and [`Finding`]s as the apt one in [`crate::classify`].
//!
//! # Precedence
//!
//! [`DNF_RULES`] is ordered from the most decisive cause to the least; findings come back in
//! that order, so the first finding is the main cause of a failed run:
//!
//! 1. `lock_held`: dnf 4 waits for the lock forever, so this line is all a killed run shows.
//! 2. `disk_full`: beats the transaction errors it causes.
//! 3. `repo_invalid` before `repo_unreachable`: a checksum mismatch or a 404 also ends in
//!    "All mirrors were tried", but retrying will not fix it.
//! 4. `package_not_found`.
//! 5. `install_script_failed`, then `dependency_conflict`.
//!
//! dnf's decisive facts differ from apt's: a failed `%post` is only a warning (dnf exits 0 and
//! rpm shows the new version), so [`crate::outcome_rpm::decide_rpm`] must look at the findings
//! even when the version is right. Lines name packages as NEVRAs (`pw-dep-2.0-1.noarch`); the
//! rules capture the name part.

use crate::classify::{Finding, Rule, Scope};
use crate::FailureClass;
use regex::Regex;
use std::sync::LazyLock;

use FailureClass::*;
use Scope::AnyLine;

const fn rule(class: FailureClass, pattern: &'static str) -> Rule {
    Rule {
        class,
        pattern,
        scope: AnyLine,
    }
}

/// The name of a package written as NAME-[EPOCH:]VERSION-RELEASE.ARCH, captured as `pkg`.
macro_rules! nevra {
    () => {
        r"(?P<pkg>[A-Za-z0-9_+.\-]+?)-(?:\d+:)?[^\s:\-()]+-[^\s\-()]+\.[A-Za-z0-9_]+"
    };
}

/// The dnf rules, most decisive first (see the module documentation).
pub const DNF_RULES: &[Rule] = &[
    rule(LockHeld, r"Waiting for process with pid \d+ to finish"),
    rule(LockHeld, r"another copy is running"),
    rule(LockHeld, r"Existing lock /\S+: another copy is running"),
    rule(DiskFull, r"No space left on device"),
    rule(
        DiskFull,
        r"needs [\d.,]+\s*[KMGT]?B more space on the \S+ filesystem",
    ),
    rule(DiskFull, r"At least [\d.,]+\s*[KMGT]?B more space needed"),
    // librepo could not write a download into the full cache (/var/cache/dnf).
    rule(
        DiskFull,
        r"Curl error \(23\): Failed writing received data to disk",
    ),
    rule(
        RepoInvalid,
        concat!(
            r"\[MIRROR\] ",
            nevra!(),
            r"\.rpm: Downloading successful, but checksum doesn't match"
        ),
    ),
    rule(
        RepoInvalid,
        r"checksum doesn't match|Checksum mismatch|Package does not match intended download",
    ),
    rule(RepoInvalid, r"GPG check FAILED"),
    rule(RepoInvalid, r"Public key for \S+ is not installed"),
    rule(
        RepoInvalid,
        r"GPG signature verification error|Bad GPG signature|is not signed",
    ),
    rule(RepoInvalid, r"Curl error \(22\)|Status code: 4\d\d for"),
    rule(RepoUnreachable, r"Curl error \((5|6|7|28|35|52|56)\)"),
    rule(
        RepoUnreachable,
        r"Couldn't connect to server|Could not resolve host|Connection refused|Network is unreachable|Operation timed out",
    ),
    rule(RepoUnreachable, r"Failed to download metadata for repo"),
    rule(RepoUnreachable, r"Cannot download repomd\.xml"),
    rule(PackageNotFound, r"No match for argument: (?P<pkg>\S+)"),
    rule(PackageNotFound, r"Unable to find a match: (?P<pkg>\S+)"),
    rule(PackageNotFound, r"No package (?P<pkg>\S+) available"),
    rule(
        InstallScriptFailed,
        r"Error in (PRE|POST)(IN|UN|TRANS) scriptlet in rpm package (?P<pkg>\S+)",
    ),
    rule(
        InstallScriptFailed,
        concat!(
            r"%(pre|post|prein|postun|preun|pretrans|posttrans)\(",
            nevra!(),
            r"\) scriptlet failed"
        ),
    ),
    rule(
        DependencyConflict,
        concat!(r"nothing provides .+ needed by ", nevra!(), r"\s*$"),
    ),
    rule(
        DependencyConflict,
        concat!(
            r"file \S+ from install of ",
            nevra!(),
            r" conflicts with file from package"
        ),
    ),
    rule(
        DependencyConflict,
        concat!(
            r"package ",
            nevra!(),
            r" (conflicts with|obsoletes|requires) "
        ),
    ),
    rule(
        DependencyConflict,
        concat!(
            r"cannot install the best update candidate for package ",
            nevra!(),
            r"\s*$"
        ),
    ),
    rule(DependencyConflict, r"^\s*Problem( \d+)?: "),
    rule(DependencyConflict, r"conflicting requests"),
    rule(
        DependencyConflict,
        r"Skipping packages with (broken dependencies|conflicts)",
    ),
];

static COMPILED: LazyLock<Vec<Regex>> = LazyLock::new(|| {
    DNF_RULES
        .iter()
        .map(|r| Regex::new(r.pattern).expect("rule patterns are valid"))
        .collect()
});

/// Most evidence lines kept per finding.
const EVIDENCE_PER_FINDING: usize = 6;

/// Classifies the output of one dnf run. Findings are merged per (class, package) and ordered
/// by rule precedence, then by first appearance. A run that exited nonzero without any
/// recognised line yields one `unknown` finding carrying dnf's `Error:` lines (or the last
/// lines).
pub fn classify_dnf(stdout: &str, stderr: &str, exit_code: Option<i32>) -> Vec<Finding> {
    let mut found: Vec<(usize, usize, Finding)> = Vec::new();
    let lines: Vec<&str> = stdout.lines().chain(stderr.lines()).collect();
    for (n, line) in lines.iter().enumerate() {
        let hit = DNF_RULES
            .iter()
            .zip(COMPILED.iter())
            .enumerate()
            .find(|(_, (_, re))| re.is_match(line));
        let Some((idx, (rule, re))) = hit else {
            continue;
        };
        let package = re
            .captures(line)
            .and_then(|c| c.name("pkg"))
            .map(|m| m.as_str().to_owned());
        let evidence = line.trim().to_owned();
        match found
            .iter_mut()
            .find(|(_, _, f)| f.class == rule.class && f.package == package)
        {
            Some((best, _, f)) => {
                *best = (*best).min(idx);
                if !f.evidence.contains(&evidence) && f.evidence.len() < EVIDENCE_PER_FINDING {
                    f.evidence.push(evidence);
                }
            }
            None => found.push((
                idx,
                n,
                Finding {
                    class: rule.class,
                    package,
                    evidence: vec![evidence],
                },
            )),
        }
    }
    found.sort_by_key(|(idx, n, _)| (*idx, *n));
    let mut findings: Vec<Finding> = found.into_iter().map(|(_, _, f)| f).collect();
    if findings.is_empty() && exit_code.is_some_and(|c| c != 0) {
        let mut evidence: Vec<String> = lines
            .iter()
            .filter(|l| l.starts_with("Error") || l.starts_with("error:"))
            .map(|l| l.trim().to_owned())
            .collect();
        if evidence.is_empty() {
            let tail = lines.len().saturating_sub(3);
            evidence = lines[tail..].iter().map(|l| l.trim().to_owned()).collect();
        }
        evidence.truncate(EVIDENCE_PER_FINDING);
        findings.push(Finding {
            class: Unknown,
            package: None,
            evidence,
        });
    }
    findings
}

/// Renames findings whose package is one of the command-line specs dnf echoed back
/// (`No match for argument: pw-ok-9.9-1`) to the package name the spec was built from.
pub fn attribute_specs(findings: &mut [Finding], specs: &[(String, String)]) {
    for f in findings.iter_mut() {
        if let Some(p) = &f.package {
            if let Some((_, name)) = specs.iter().find(|(spec, _)| spec == p) {
                f.package = Some(name.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Splits a captured fixture (`# exit: N`, `--- stdout`, `--- stderr`) into its parts.
    fn captured(name: &str) -> (String, String, Option<i32>) {
        let path = format!("{}/tests/fixtures/dnf/{name}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let exit = text
            .lines()
            .find_map(|l| l.strip_prefix("# exit: "))
            .and_then(|c| c.trim().parse().ok());
        let out_start = text.find("--- stdout\n").expect("stdout section") + 11;
        let err_start = text.find("--- stderr\n").expect("stderr section");
        (
            text[out_start..err_start].to_owned(),
            text[err_start + 11..].to_owned(),
            exit,
        )
    }

    type Want<'a> = &'a [(FailureClass, Option<&'a str>)];

    /// Checks the classes (in order) and packages of the findings, and that the first
    /// finding's evidence contains `needle`.
    fn check(stdout: &str, stderr: &str, exit: Option<i32>, want: Want, needle: &str) {
        let got = classify_dnf(stdout, stderr, exit);
        let keys: Vec<(FailureClass, Option<&str>)> = got
            .iter()
            .map(|f| (f.class, f.package.as_deref()))
            .collect();
        assert_eq!(keys, want, "findings: {got:#?}");
        if let Some(first) = got.first() {
            assert!(
                first.evidence.iter().any(|e| e.contains(needle)),
                "evidence {:?} lacks {needle:?}",
                first.evidence
            );
        }
    }

    #[test]
    fn captured_lab_failures() {
        // All captured in a lab rpm host; see tests/fixtures/dnf/README.md.
        let cases: &[(&str, Want, &str)] = &[
            ("install-ok.txt", &[], ""),
            (
                "install-postfail.txt",
                &[(InstallScriptFailed, Some("pw-postfail"))],
                "%post(pw-postfail-2.0-1.noarch) scriptlet failed",
            ),
            (
                "install-two-postfail.txt",
                &[(InstallScriptFailed, Some("pw-postfail"))],
                "Error in POSTIN scriptlet",
            ),
            (
                "install-prefail.txt",
                &[(InstallScriptFailed, Some("pw-prefail"))],
                "%prein(pw-prefail-2.0-1.noarch) scriptlet failed",
            ),
            (
                "dep-unmet.txt",
                &[(DependencyConflict, Some("pw-dep"))],
                "nothing provides pw-missing >= 1 needed by pw-dep-2.0-1.noarch",
            ),
            (
                "conflict.txt",
                &[
                    (DependencyConflict, Some("pw-clash")),
                    (DependencyConflict, None),
                ],
                "conflicts with pw-ok",
            ),
            (
                "file-clash.txt",
                &[(DependencyConflict, Some("pw-fileclash"))],
                "conflicts with file from package pw-ok",
            ),
            (
                "not-found-package.txt",
                &[(PackageNotFound, Some("pw-nonexistent"))],
                "No match for argument: pw-nonexistent",
            ),
            (
                "not-found-version.txt",
                &[(PackageNotFound, Some("pw-ok-9.9-1"))],
                "No match for argument",
            ),
            (
                "not-found-version-install.txt",
                &[(PackageNotFound, Some("pw-sec-9.9-1"))],
                "Unable to find a match",
            ),
            (
                "checksum-mismatch.txt",
                &[(RepoInvalid, Some("pw-corrupt"))],
                "checksum doesn't match",
            ),
            (
                "repo-down.txt",
                &[(RepoUnreachable, None)],
                "Curl error (7): Couldn't connect to server",
            ),
            (
                "repoquery-repo-down.txt",
                &[(RepoUnreachable, None)],
                "Failed to download metadata for repo 'lab'",
            ),
            (
                "lock-held.txt",
                &[(LockHeld, None)],
                "Waiting for process with pid 1 to finish",
            ),
            ("updateinfo-none.txt", &[], ""),
        ];
        for (name, want, needle) in cases {
            eprintln!("fixture {name}");
            let (out, err, exit) = captured(name);
            check(&out, &err, exit, want, needle);
        }
    }

    #[test]
    fn synthetic_lines() {
        // Not captured here; wording from dnf 4 / librepo / rpm 4.18 sources.
        let cases: &[(&str, &str, Option<i32>, Want, &str)] = &[
            (
                "",
                "Error: Transaction test error:\n  installing package big-2.0-1.x86_64 needs 120MB more space on the / filesystem",
                Some(1),
                &[(DiskFull, None)],
                "more space",
            ),
            (
                "",
                "Error: Error downloading packages:\n  Curl error (23): Failed writing received data to disk/application [Failed writing body]\n  [Errno 28] No space left on device",
                Some(1),
                &[(DiskFull, None)],
                "No space left",
            ),
            (
                "",
                "Errors during downloading metadata for repository 'baseos':\n  - Curl error (6): Couldn't resolve host name for https://mirrors.example/repomd.xml [Could not resolve host: mirrors.example]\nError: Failed to download metadata for repo 'baseos': Cannot download repomd.xml: Cannot download repodata/repomd.xml: All mirrors were tried",
                Some(1),
                &[(RepoUnreachable, None)],
                "Curl error (6)",
            ),
            (
                "",
                "Errors during downloading metadata for repository 'lab':\n  - Status code: 404 for http://127.0.0.1:1/repodata/repomd.xml (IP: 127.0.0.1)\nError: Failed to download metadata for repo 'lab': Cannot download repomd.xml: Cannot download repodata/repomd.xml: All mirrors were tried",
                Some(1),
                &[(RepoInvalid, None), (RepoUnreachable, None)],
                "Status code: 404",
            ),
            (
                "",
                "Public key for openssl-3.0.7-27.el9.x86_64.rpm is not installed. Failing package is: openssl-1:3.0.7-27.el9.x86_64\nError: GPG check FAILED",
                Some(1),
                &[(RepoInvalid, None)],
                "Public key",
            ),
            (
                "",
                "Error: \n Problem: conflicting requests\n  - nothing provides libfoo.so.2()(64bit) needed by bar-2.0-1.el9.x86_64",
                Some(1),
                &[(DependencyConflict, Some("bar")), (DependencyConflict, None)],
                "libfoo",
            ),
            (
                "",
                "Error: Something nobody has seen",
                Some(1),
                &[(Unknown, None)],
                "nobody",
            ),
            ("Complete!", "", Some(0), &[], ""),
        ];
        for (out, err, exit, want, needle) in cases {
            check(out, err, *exit, want, needle);
        }
    }

    #[test]
    fn specs_are_attributed_to_their_package() {
        let (out, err, exit) = captured("not-found-version.txt");
        let mut f = classify_dnf(&out, &err, exit);
        attribute_specs(&mut f, &[("pw-ok-9.9-1".into(), "pw-ok".into())]);
        assert_eq!(f[0].package.as_deref(), Some("pw-ok"));
    }

    #[test]
    fn every_rule_compiles() {
        assert_eq!(COMPILED.len(), DNF_RULES.len());
    }

    #[test]
    fn a_download_into_a_full_cache_is_disk_full() {
        let out = "Downloading Packages:\n[MIRROR] pw-big-2.0-1.noarch.rpm: Curl error (23): Failed writing received data to disk/application for http://127.0.0.1:41273/pw-big-2.0-1.noarch.rpm [Failure writing output to destination]\nError: Error downloading packages:\n  pw-big-2.0-1.noarch: Download failed: Curl error (23): Failed writing received data to disk/application for http://127.0.0.1:41273/pw-big-2.0-1.noarch.rpm [Failure writing output to destination]\n";
        check(
            out,
            "",
            Some(1),
            &[(DiskFull, None)],
            "Failed writing received data to disk",
        );
    }
}
