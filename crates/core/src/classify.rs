//! Failure classification of apt/dpkg output: a table of rules (regular expressions over lines)
//! that turns what apt printed into taxonomy classes, with the evidence lines and, when a line
//! names one, the package it is about.
//!
//! # Precedence
//!
//! [`APT_RULES`] is ordered from the most decisive cause to the least; findings come back in that
//! order, so the first finding is the main cause of a failed run:
//!
//! 1. `lock_held`, `interrupted_state`: apt refused to start; nothing else it printed happened.
//! 2. `disk_full`: beats the dpkg/script errors it causes.
//! 3. `repo_invalid` before `repo_unreachable`: a 404 or a bad signature is also a "Failed to
//!    fetch", but retrying will not fix it.
//! 4. `package_not_found`, `held_back`: apt refused the request as asked.
//! 5. `install_script_failed`, then `dependency_conflict` (which includes file clashes).
//!
//! Rules with [`Scope::AptMessage`] only look at apt's own `E:`/`W:` lines. That is how a lock
//! message inside a dependency error resolves: ` foo : Depends: lockfile-progs but it is not
//! installable` is a dependency line (it is not an `E:` line, so the lock rule cannot see it),
//! whereas `E: Could not get lock /var/lib/dpkg/lock-frontend` is the lock.

use crate::FailureClass;
use regex::Regex;
use std::sync::LazyLock;

/// Which lines a rule looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Only apt's own messages: lines starting with `E: ` or `W: `.
    AptMessage,
    /// Any line of stdout or stderr (dpkg's messages, the indented detail of `Err:` lines).
    AnyLine,
}

/// One classification rule. `pattern` may capture the package it is about as `(?P<pkg>...)`.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    pub class: FailureClass,
    pub pattern: &'static str,
    pub scope: Scope,
}

const fn rule(class: FailureClass, scope: Scope, pattern: &'static str) -> Rule {
    Rule {
        class,
        pattern,
        scope,
    }
}

use FailureClass::*;
use Scope::*;

/// A package name as dpkg allows it, with an optional `:arch` qualifier (dropped).
macro_rules! pkg {
    () => {
        r"(?P<pkg>[a-z0-9][a-z0-9+.\-]+)(?::[a-z0-9\-]+)?"
    };
}

/// The apt rules, most decisive first (see the module documentation).
pub const APT_RULES: &[Rule] = &[
    rule(LockHeld, AptMessage, r"Could not get lock /"),
    // apt waiting under `-o DPkg::Lock::Timeout=N`: names the lock and its holder.
    rule(
        LockHeld,
        AnyLine,
        r"^Waiting for cache lock: Could not get lock /",
    ),
    rule(
        LockHeld,
        AptMessage,
        r"Unable to acquire the dpkg frontend lock",
    ),
    rule(
        LockHeld,
        AptMessage,
        r"Unable to lock (the )?(administration |download |)directory",
    ),
    rule(
        InterruptedState,
        AptMessage,
        r"dpkg was interrupted, you must manually run",
    ),
    rule(DiskFull, AptMessage, r"You don't have enough free space in"),
    rule(DiskFull, AnyLine, r"No space left on device"),
    rule(RepoInvalid, AnyLine, r"Hash Sum mismatch"),
    rule(RepoInvalid, AnyLine, r"NO_PUBKEY [0-9A-F]+"),
    rule(
        RepoInvalid,
        AptMessage,
        r"The repository '[^']*' is not signed",
    ),
    rule(
        RepoInvalid,
        AptMessage,
        r"The repository '[^']*' does not have a Release file",
    ),
    rule(
        RepoInvalid,
        AptMessage,
        r"The repository '[^']*' no longer has a Release file",
    ),
    rule(RepoInvalid, AptMessage, r"Release file for \S+ is expired"),
    rule(
        RepoInvalid,
        AptMessage,
        r"Release file for \S+ is not valid yet",
    ),
    rule(
        RepoInvalid,
        AnyLine,
        r"(is no longer valid|EXPKEYSIG|KEYEXPIRED|BADSIG)",
    ),
    rule(RepoInvalid, AptMessage, r"Failed to fetch \S+\s+4\d\d\s"),
    rule(
        RepoInvalid,
        AptMessage,
        r"Failed to fetch \S+\s+(File has unexpected size|Clearsigned file isn't valid)",
    ),
    rule(
        RepoUnreachable,
        AptMessage,
        r"Failed to fetch .*(Connection refused|Could not resolve|Network is unreachable|Connection timed out|Could not connect|Temporary failure resolving|No route to host|Connection failed|Unable to connect)",
    ),
    rule(RepoUnreachable, AnyLine, r"Temporary failure resolving '"),
    rule(
        RepoUnreachable,
        AptMessage,
        r"Unable to fetch some archives",
    ),
    rule(
        PackageNotFound,
        AptMessage,
        concat!(r"Unable to locate package ", pkg!()),
    ),
    rule(
        PackageNotFound,
        AptMessage,
        concat!(r"Version '[^']+' for '", pkg!(), r"' was not found"),
    ),
    rule(
        PackageNotFound,
        AptMessage,
        concat!(r"Package '", pkg!(), r"' has no installation candidate"),
    ),
    rule(
        HeldBack,
        AptMessage,
        r"Held packages were changed and -y was used",
    ),
    rule(
        InstallScriptFailed,
        AnyLine,
        concat!(
            r"(installed|new|old) ",
            pkg!(),
            r" package (pre|post)-(installation|removal) script subprocess returned error exit status"
        ),
    ),
    rule(
        InstallScriptFailed,
        AnyLine,
        r"subprocess (installed |new |old )?(pre|post)-(installation|removal) script returned error exit status",
    ),
    rule(
        DependencyConflict,
        AnyLine,
        r"trying to overwrite '[^']+', which is also in package",
    ),
    rule(
        DependencyConflict,
        AnyLine,
        concat!(r"^\s*", pkg!(), r" : (Pre)?Depends: .* but "),
    ),
    rule(
        DependencyConflict,
        AnyLine,
        concat!(r"^\s*", pkg!(), r" : (Conflicts|Breaks): "),
    ),
    rule(
        DependencyConflict,
        AnyLine,
        r"^\s+(Pre)?Depends: .* but .* (installable|installed|to be installed)",
    ),
    rule(DependencyConflict, AnyLine, r"^\s+(Conflicts|Breaks): "),
    rule(DependencyConflict, AptMessage, r"Unmet dependencies"),
    rule(
        DependencyConflict,
        AptMessage,
        r"you have held broken packages",
    ),
    rule(
        DependencyConflict,
        AnyLine,
        r"^The following packages have unmet dependencies",
    ),
];

/// Lines that name the package the following lines are about: dpkg's `error processing` and
/// apt's ` foo : Depends:` header. Used when a matching line names no package itself.
static CONTEXT: LazyLock<Vec<Regex>> = LazyLock::new(|| {
    [
        concat!(r"dpkg: error processing package ", pkg!(), r" \("),
        r"dpkg: error processing archive \S*?/?(?P<pkg>[a-z0-9][a-z0-9+.\-]+)_[^/_\s]+_[a-z0-9\-]+\.deb",
        concat!(r"^ ", pkg!(), r" : "),
    ]
    .iter()
    .map(|p| Regex::new(p).expect("context patterns are valid"))
    .collect()
});

static COMPILED: LazyLock<Vec<Regex>> = LazyLock::new(|| {
    APT_RULES
        .iter()
        .map(|r| Regex::new(r.pattern).expect("rule patterns are valid"))
        .collect()
});

/// How far back to look for a context line.
const CONTEXT_LINES: usize = 4;
/// Most evidence lines kept per finding.
const EVIDENCE_PER_FINDING: usize = 6;

/// One recognised cause, with the lines that show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub class: FailureClass,
    /// The package the evidence names, when it names one (the package being processed, not the
    /// other party of a file clash or dependency).
    pub package: Option<String>,
    pub evidence: Vec<String>,
}

/// Classifies the output of one apt-get run. Findings are merged per (class, package) and
/// ordered by rule precedence, then by first appearance. A run that exited nonzero without any
/// recognised line yields one `unknown` finding carrying apt's `E:` lines (or the last lines).
pub fn classify_apt(stdout: &str, stderr: &str, exit_code: Option<i32>) -> Vec<Finding> {
    // (rule index, line order, finding)
    let mut found: Vec<(usize, usize, Finding)> = Vec::new();
    let lines: Vec<&str> = stdout.lines().chain(stderr.lines()).collect();
    for (n, line) in lines.iter().enumerate() {
        let is_apt_message = line.starts_with("E: ") || line.starts_with("W: ");
        let hit = APT_RULES
            .iter()
            .zip(COMPILED.iter())
            .enumerate()
            .find(|(_, (rule, re))| (rule.scope == AnyLine || is_apt_message) && re.is_match(line));
        let Some((idx, (rule, re))) = hit else {
            continue;
        };
        let mut evidence = Vec::new();
        let mut package = re
            .captures(line)
            .and_then(|c| c.name("pkg"))
            .map(|m| m.as_str().to_owned());
        if package.is_none() && !is_apt_message {
            if let Some((ctx_line, pkg)) = context_before(&lines, n) {
                package = Some(pkg);
                evidence.push(ctx_line.trim().to_owned());
            }
        }
        evidence.push(line.trim().to_owned());
        match found
            .iter_mut()
            .find(|(_, _, f)| f.class == rule.class && f.package == package)
        {
            Some((best, _, f)) => {
                *best = (*best).min(idx);
                for e in evidence {
                    if !f.evidence.contains(&e) && f.evidence.len() < EVIDENCE_PER_FINDING {
                        f.evidence.push(e);
                    }
                }
            }
            None => found.push((
                idx,
                n,
                Finding {
                    class: rule.class,
                    package,
                    evidence,
                },
            )),
        }
    }
    found.sort_by_key(|(idx, n, _)| (*idx, *n));
    let mut findings: Vec<Finding> = found.into_iter().map(|(_, _, f)| f).collect();
    if findings.is_empty() && exit_code.is_some_and(|c| c != 0) {
        let mut evidence: Vec<String> = lines
            .iter()
            .filter(|l| l.starts_with("E: "))
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

fn context_before<'a>(lines: &[&'a str], n: usize) -> Option<(&'a str, String)> {
    let from = n.saturating_sub(CONTEXT_LINES);
    lines[from..n].iter().rev().find_map(|l| {
        CONTEXT
            .iter()
            .find_map(|re| re.captures(l))
            .map(|c| (*l, c["pkg"].to_owned()))
    })
}

/// The main cause of a run: the first finding.
pub fn primary(findings: &[Finding]) -> Option<&Finding> {
    findings.first()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Splits a captured fixture (`# exit: N`, `--- stdout`, `--- stderr`) into its parts.
    fn captured(name: &str) -> (String, String, Option<i32>) {
        let path = format!("{}/tests/fixtures/apt/{name}", env!("CARGO_MANIFEST_DIR"));
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

    /// Checks the classes (in order) and the package of each finding, and that each evidence
    /// contains `needle`.
    type Want<'a> = &'a [(FailureClass, Option<&'a str>)];

    fn check(
        stdout: &str,
        stderr: &str,
        exit: Option<i32>,
        want: &[(FailureClass, Option<&str>)],
        needle: &str,
    ) {
        let got = classify_apt(stdout, stderr, exit);
        let got_keys: Vec<(FailureClass, Option<&str>)> = got
            .iter()
            .map(|f| (f.class, f.package.as_deref()))
            .collect();
        assert_eq!(got_keys, want, "findings: {got:#?}");
        if let Some(first) = got.first() {
            assert!(
                first.evidence.iter().any(|e| e.contains(needle)),
                "evidence {:?} lacks {needle:?}",
                first.evidence
            );
        }
    }

    fn check_fixture(name: &str, want: &[(FailureClass, Option<&str>)], needle: &str) {
        let (out, err, exit) = captured(name);
        check(&out, &err, exit, want, needle);
    }

    #[test]
    fn captured_lab_failures() {
        // All captured in a throwaway bookworm root; see tests/fixtures/apt/README.md.
        let cases: &[(&str, Want, &str)] = &[
            ("lock-held.txt", &[(LockHeld, None)], "Could not get lock"),
            (
                "interrupted.txt",
                &[(InterruptedState, None)],
                "dpkg --configure -a",
            ),
            (
                "disk-full-cache.txt",
                &[(DiskFull, None)],
                "enough free space",
            ),
            (
                "update-refused.txt",
                &[(RepoUnreachable, None)],
                "Connection refused",
            ),
            (
                "update-refused-default.txt",
                &[(RepoUnreachable, None)],
                "Connection refused",
            ),
            (
                "update-dns.txt",
                &[(RepoUnreachable, None)],
                "Could not resolve",
            ),
            ("update-404.txt", &[(RepoInvalid, None)], "404"),
            (
                "update-hashsum.txt",
                &[(RepoInvalid, None)],
                "Hash Sum mismatch",
            ),
            (
                "update-unsigned.txt",
                &[(RepoInvalid, None)],
                "is not signed",
            ),
            ("update-nopubkey.txt", &[(RepoInvalid, None)], "NO_PUBKEY"),
            ("update-expired.txt", &[(RepoInvalid, None)], "is expired"),
            (
                "not-found-package.txt",
                &[(PackageNotFound, Some("pw-nonexistent"))],
                "Unable to locate",
            ),
            (
                "not-found-version.txt",
                &[(PackageNotFound, Some("pw-ok"))],
                "Version '9.9'",
            ),
            (
                "held.txt",
                &[(HeldBack, None)],
                "Held packages were changed",
            ),
            (
                "dep-unmet.txt",
                &[
                    (DependencyConflict, Some("pw-dep")),
                    (DependencyConflict, None),
                ],
                "pw-missing",
            ),
            (
                "file-clash.txt",
                &[(DependencyConflict, Some("pw-clash-a"))],
                "trying to overwrite",
            ),
            (
                "postinst-fail.txt",
                &[(InstallScriptFailed, Some("pw-postfail"))],
                "post-installation script subprocess returned error exit status 1",
            ),
            (
                "after-postfail-other-install.txt",
                &[(InstallScriptFailed, Some("pw-postfail"))],
                "installed pw-postfail package",
            ),
            (
                "lock-wait-timeout.txt",
                &[(LockHeld, None)],
                "Waiting for cache lock: Could not get lock /var/lib/dpkg/lock-frontend",
            ),
            (
                "install-deb-404.txt",
                &[(RepoInvalid, None), (RepoUnreachable, None)],
                "404  Not Found",
            ),
            (
                "dep-unmet-lockish-names.txt",
                &[
                    (DependencyConflict, Some("pw-lock")),
                    (DependencyConflict, None),
                ],
                "pw-dpkg-lock-frontend",
            ),
            ("install-ok-reboot.txt", &[], ""),
            ("sim-with-iF.txt", &[], ""),
        ];
        for (name, want, needle) in cases {
            eprintln!("fixture {name}");
            check_fixture(name, want, needle);
        }
    }

    #[test]
    fn synthetic_lines() {
        // Messages not captured here, in the exact wording of apt 2.6 / dpkg 1.21 sources.
        let cases: &[(&str, &str, Option<i32>, Want, &str)] = &[
            (
                "",
                "E: Failed to fetch http://deb.debian.org/debian/dists/bookworm/InRelease  Temporary failure resolving 'deb.debian.org'",
                Some(100),
                &[(RepoUnreachable, None)],
                "Temporary failure",
            ),
            (
                "Err:1 http://10.0.0.1/debian bookworm InRelease\n  Could not connect to 10.0.0.1:80 (10.0.0.1). - connect (101: Network is unreachable)",
                "E: Failed to fetch http://10.0.0.1/debian/dists/bookworm/InRelease  Could not connect to 10.0.0.1:80 (10.0.0.1). - connect (101: Network is unreachable)",
                Some(100),
                &[(RepoUnreachable, None)],
                "Network is unreachable",
            ),
            (
                "",
                "E: The repository 'http://example.invalid/debian bookworm Release' does not have a Release file.",
                Some(100),
                &[(RepoInvalid, None)],
                "Release file",
            ),
            (
                "",
                "E: Package 'foo' has no installation candidate",
                Some(100),
                &[(PackageNotFound, Some("foo"))],
                "no installation candidate",
            ),
            (
                "dpkg: error processing archive /var/cache/apt/archives/big_2.0_amd64.deb (--unpack):\n cannot copy extracted data for './usr/share/big/blob' to '/usr/share/big/blob.dpkg-new': failed to write (No space left on device)",
                "E: Sub-process /usr/bin/dpkg returned an error code (1)",
                Some(100),
                &[(DiskFull, Some("big"))],
                "No space left",
            ),
            (
                "dpkg: error processing archive /var/cache/apt/archives/foo_1.1_amd64.deb (--unpack):\n new foo package pre-installation script subprocess returned error exit status 1",
                "",
                Some(100),
                &[(InstallScriptFailed, Some("foo"))],
                "pre-installation",
            ),
            (
                "dpkg: error processing package bar:amd64 (--configure):\n subprocess installed post-installation script returned error exit status 2",
                "",
                Some(100),
                &[(InstallScriptFailed, Some("bar"))],
                "error processing package bar",
            ),
            (
                // A lock-looking word inside a dependency error is a dependency problem...
                "The following packages have unmet dependencies:\n foo : Depends: lockfile-progs but it is not installable\n       Breaks: bar (< 2)",
                "E: Unable to correct problems, you have held broken packages.",
                Some(100),
                &[(DependencyConflict, Some("foo")), (DependencyConflict, None)],
                "lockfile-progs",
            ),
            (
                // ...while apt's own lock message wins over everything it printed after.
                "",
                "E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process 42 (apt-get)\nE: Unmet dependencies. Try 'apt --fix-broken install' with no packages (or specify a solution).",
                Some(100),
                &[(LockHeld, None), (DependencyConflict, None)],
                "held by process 42",
            ),
            ("", "E: Something new and strange happened", Some(100), &[(Unknown, None)], "strange"),
            ("all fine", "", Some(0), &[], ""),
        ];
        for (out, err, exit, want, needle) in cases {
            check(out, err, *exit, want, needle);
        }
    }

    /// Outputs in which several signals appear: the decisive one comes first, the others
    /// are kept as further findings.
    #[test]
    fn several_signals_in_one_output() {
        // Captured: the lock-ish words are package names inside a dependency error.
        check_fixture(
            "dep-unmet-lockish-names.txt",
            &[
                (DependencyConflict, Some("pw-lock")),
                (DependencyConflict, None),
            ],
            "Depends: pw-dpkg-lock-frontend (>= 1) but it is not installable",
        );
        // Captured: a .deb that vanished is a 404 (not retryable) before the generic
        // "Unable to fetch some archives".
        check_fixture(
            "install-deb-404.txt",
            &[(RepoInvalid, None), (RepoUnreachable, None)],
            "pw-ok_2.0_all.deb  404",
        );
        // Two captured update outputs in one run (one repository tampered, another down):
        // the bad index is the main cause.
        let (out1, err1, _) = captured("update-hashsum.txt");
        let (out2, err2, _) = captured("update-refused.txt");
        check(
            &format!("{out1}{out2}"),
            &format!("{err1}{err2}"),
            Some(100),
            &[(RepoInvalid, None), (RepoUnreachable, None)],
            "Hash Sum mismatch",
        );
        // Captured: apt waited for the lock, then gave up; the waiting lines name the lock.
        let (out, err, exit) = captured("lock-wait-timeout.txt");
        let got = classify_apt(&out, &err, exit);
        assert_eq!(got.len(), 1, "{got:#?}");
        assert!(got[0]
            .evidence
            .iter()
            .any(|e| e.starts_with("E: Unable to acquire the dpkg frontend lock")));
        // A script failure of another package in a run whose lock message came later.
        let (out, err, exit) = captured("postinst-fail.txt");
        check(
            &out,
            &format!("{err}E: Could not get lock /var/cache/apt/archives/lock. It is held by process 9 (apt-get)\n"),
            exit,
            &[(LockHeld, None), (InstallScriptFailed, Some("pw-postfail"))],
            "Could not get lock",
        );
    }

    #[test]
    fn every_rule_compiles() {
        assert_eq!(COMPILED.len(), APT_RULES.len());
        assert!(!CONTEXT.is_empty());
    }
}
