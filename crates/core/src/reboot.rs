//! When a `pending_reboot` package becomes `verified`: only after the device reports another
//! boot id, with the package still at the installed version and, for a kernel, that kernel
//! running. Pure: the caller supplies what the device last reported.
//!
//! Also the reboot policy's decisions: whether an install is followed by a reboot
//! ([`reboot_after_install`], the agent's rule, which the server mirrors), the loop guard
//! ([`guard`]: at most K reboots of a device per day, never again for packages a reboot did
//! not satisfy), and which packages still require a reboot after one ([`still_requiring`]).

use crate::{FailureClass, PackageState};

/// What the device reports now, after (perhaps) a reboot.
#[derive(Debug, Clone, Copy)]
pub struct DeviceNow<'a> {
    pub boot_id: &'a str,
    /// `uname -r`.
    pub running_kernel: &'a str,
    /// The package's installed version now, from the package database (None: not installed).
    pub installed_version: Option<&'a str>,
    /// The device still says it requires a reboot for this package (apt's
    /// /run/reboot-required.pkgs names it, or the device requires one without naming packages).
    pub still_requires_reboot: bool,
}

/// The new state of a package that was left `pending_reboot`, or `None` while nothing changed.
#[derive(Debug, Clone, PartialEq)]
pub struct Confirmation {
    pub state: PackageState,
    pub class: Option<FailureClass>,
    pub evidence: Vec<String>,
}

/// The kernel release a package installs, when it is a versioned kernel image:
/// Debian/Ubuntu `linux-image-6.1.0-13-amd64` → `6.1.0-13-amd64`; RHEL family `kernel`,
/// `kernel-core` at `5.14.0-427.el9` → a release starting with `5.14.0-427.el9`.
fn kernel_release(package: &str, version: &str) -> Option<String> {
    if let Some(rest) = package.strip_prefix("linux-image-") {
        return rest
            .chars()
            .next()
            .filter(char::is_ascii_digit)
            .map(|_| rest.to_owned());
    }
    if matches!(package, "kernel" | "kernel-core") {
        let without_epoch = version.split_once(':').map_or(version, |(_, v)| v);
        return Some(without_epoch.to_owned());
    }
    None
}

pub fn confirm_after_reboot(
    package: &str,
    intended: &str,
    boot_id_at_install: Option<&str>,
    now: DeviceNow<'_>,
) -> Option<Confirmation> {
    match boot_id_at_install {
        Some(before) if before != now.boot_id => {}
        // Same boot, or unknown boot at install time: not confirmed yet.
        _ => return None,
    }
    let before = boot_id_at_install.unwrap_or_default();
    if now.installed_version != Some(intended) {
        return Some(Confirmation {
            state: PackageState::Failed,
            class: Some(FailureClass::VerificationFailed),
            evidence: vec![format!(
                "after the reboot the package database reports {package} {}, not the installed {intended}",
                now.installed_version.unwrap_or("(not installed)")
            )],
        });
    }
    if now.still_requires_reboot {
        return Some(Confirmation {
            state: PackageState::PendingReboot,
            class: Some(FailureClass::RebootLoop),
            evidence: vec![format!(
                "rebooted (boot id {before} → {}), but the device still requires a reboot for {package}: a reboot did not clear it; not rebooted again for it",
                now.boot_id
            )],
        });
    }
    if let Some(release) = kernel_release(package, intended) {
        if !now.running_kernel.starts_with(&release) {
            return Some(Confirmation {
                state: PackageState::PendingReboot,
                class: Some(FailureClass::RebootPending),
                evidence: vec![format!(
                    "rebooted (boot id {before} → {}), but the running kernel is {}, not the installed {release}",
                    now.boot_id, now.running_kernel
                )],
            });
        }
    }
    Some(Confirmation {
        state: PackageState::Verified,
        class: None,
        evidence: vec![format!(
            "verified after reboot: boot id {before} → {}; {package} {intended} installed; running kernel {}",
            now.boot_id, now.running_kernel
        )],
    })
}

/// The reboot policy of a deployment.
pub use crate::vocab::RebootMode as Mode;

/// Whether the agent reboots after an install: never with `Never` or once the window has
/// ended; with `WhenRequired` when a package is left `pending_reboot`; with `Always` when
/// anything changed (`changed`: the installed version differs from the one before).
pub fn reboot_after_install(
    mode: Mode,
    packages: &[(PackageState, bool)],
    window_open: bool,
) -> bool {
    if !window_open {
        return false;
    }
    match mode {
        Mode::Never => false,
        Mode::WhenRequired => packages
            .iter()
            .any(|(s, _)| *s == PackageState::PendingReboot),
        Mode::Always => packages.iter().any(|(s, changed)| {
            *changed && matches!(s, PackageState::Verified | PackageState::PendingReboot)
        }),
    }
}

/// What the loop guard looks at when a job is handed to a device.
#[derive(Debug, Clone, Copy)]
pub struct GuardInput<'a> {
    /// The deployment's policy.
    pub mode: Mode,
    /// Reboots of this device Patchwarden asked for in the last 24 hours.
    pub reboots_last_day: u32,
    pub max_per_day: u32,
    /// Packages for which a reboot of this device did not clear the requirement.
    pub looped: &'a [String],
    /// The job's packages.
    pub packages: &'a [String],
}

/// The loop guard's answer: the mode to send, and why a reboot was withheld.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuardDecision {
    Allow(Mode),
    /// Send `Never`: the device is not rebooted, for this reason.
    Withhold(String),
}

pub fn guard(input: GuardInput<'_>) -> GuardDecision {
    if input.mode == Mode::Never {
        return GuardDecision::Allow(Mode::Never);
    }
    let looped: Vec<&str> = input
        .packages
        .iter()
        .filter(|p| input.looped.contains(p))
        .map(String::as_str)
        .collect();
    if !looped.is_empty() {
        return GuardDecision::Withhold(format!(
            "reboot withheld by the loop guard: an earlier reboot of this device did not clear the requirement for {}",
            looped.join(", ")
        ));
    }
    if input.reboots_last_day >= input.max_per_day {
        return GuardDecision::Withhold(format!(
            "reboot withheld by the loop guard: this device was rebooted {} time(s) in the last 24 h (at most {} a day)",
            input.reboots_last_day, input.max_per_day
        ));
    }
    GuardDecision::Allow(input.mode)
}

/// Which of `packages` still require a reboot, from what the device reports after one: those
/// its reboot-required list names, or all of them when it requires a reboot without naming
/// packages (dnf's needs-restarting).
pub fn still_requiring(
    reboot_required: bool,
    required_packages: &[String],
    packages: &[String],
) -> Vec<String> {
    if !reboot_required {
        return vec![];
    }
    if required_packages.is_empty() {
        return packages.to_vec();
    }
    packages
        .iter()
        .filter(|p| required_packages.contains(p))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reboot_after_install_cases() {
        use PackageState::*;
        // (mode, packages (state, changed), window open, expected)
        type Case<'a> = (Mode, &'a [(PackageState, bool)], bool, bool);
        let cases: &[Case] = &[
            (Mode::Never, &[(PendingReboot, true)], true, false),
            (Mode::WhenRequired, &[(PendingReboot, true)], true, true),
            (
                Mode::WhenRequired,
                &[(Verified, true), (PendingReboot, true)],
                true,
                true,
            ),
            (Mode::WhenRequired, &[(Verified, true)], true, false),
            (Mode::WhenRequired, &[(PendingReboot, true)], false, false),
            (Mode::WhenRequired, &[], true, false),
            (Mode::Always, &[(Verified, true)], true, true),
            (Mode::Always, &[(Verified, false)], true, false),
            (Mode::Always, &[(Failed, true)], true, false),
            (
                Mode::Always,
                &[(Skipped, false), (PendingReboot, true)],
                true,
                true,
            ),
            (Mode::Always, &[(Verified, true)], false, false),
        ];
        for (mode, packages, open, want) in cases {
            assert_eq!(
                reboot_after_install(*mode, packages, *open),
                *want,
                "{mode:?} {packages:?} open={open}"
            );
        }
    }

    #[test]
    fn loop_guard_cases() {
        let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
        // (mode, reboots in 24 h, max, looped, job packages, expected: Some(mode) or None = withheld)
        type Case = (Mode, u32, u32, Vec<String>, Vec<String>, Option<Mode>);
        let cases: Vec<Case> = vec![
            (Mode::Never, 5, 2, s(&["a"]), s(&["a"]), Some(Mode::Never)),
            (
                Mode::WhenRequired,
                0,
                2,
                s(&[]),
                s(&["a"]),
                Some(Mode::WhenRequired),
            ),
            (
                Mode::WhenRequired,
                1,
                2,
                s(&[]),
                s(&["a"]),
                Some(Mode::WhenRequired),
            ),
            (Mode::WhenRequired, 2, 2, s(&[]), s(&["a"]), None),
            (Mode::Always, 3, 2, s(&[]), s(&["a"]), None),
            (Mode::Always, 0, 1, s(&[]), s(&["a"]), Some(Mode::Always)),
            (Mode::WhenRequired, 0, 2, s(&["a"]), s(&["a", "b"]), None),
            (
                Mode::WhenRequired,
                0,
                2,
                s(&["c"]),
                s(&["a", "b"]),
                Some(Mode::WhenRequired),
            ),
        ];
        for (mode, n, max, looped, packages, want) in cases {
            let got = guard(GuardInput {
                mode,
                reboots_last_day: n,
                max_per_day: max,
                looped: &looped,
                packages: &packages,
            });
            match (&got, want) {
                (GuardDecision::Allow(m), Some(w)) => assert_eq!(*m, w),
                (GuardDecision::Withhold(why), None) => {
                    assert!(why.contains("loop guard"), "{why}");
                    if looped.iter().any(|l| packages.contains(l)) {
                        assert!(why.contains("did not clear the requirement for a"), "{why}");
                    } else {
                        assert!(why.contains(&format!("{n} time(s)")), "{why}");
                    }
                }
                _ => panic!("{mode:?} {n}/{max} looped={looped:?} packages={packages:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn still_requiring_cases() {
        let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
        // (reboot required, listed packages, job packages, expected)
        let cases = [
            (false, s(&["a"]), s(&["a"]), s(&[])),
            (true, s(&["a"]), s(&["a", "b"]), s(&["a"])),
            (true, s(&["c"]), s(&["a", "b"]), s(&[])),
            (true, s(&[]), s(&["a", "b"]), s(&["a", "b"])),
        ];
        for (required, listed, packages, want) in cases {
            assert_eq!(
                still_requiring(required, &listed, &packages),
                want,
                "{required} {listed:?} {packages:?}"
            );
        }
    }

    fn check(
        package: &str,
        intended: &str,
        at_install: Option<&str>,
        boot: &str,
        kernel: &str,
        installed: Option<&str>,
        want: Option<PackageState>,
    ) {
        let now = DeviceNow {
            boot_id: boot,
            running_kernel: kernel,
            installed_version: installed,
            still_requires_reboot: false,
        };
        let got = confirm_after_reboot(package, intended, at_install, now).map(|c| c.state);
        assert_eq!(
            got, want,
            "{package} {intended} at {at_install:?} now {boot} {kernel} {installed:?}"
        );
    }

    #[test]
    fn a_reboot_that_does_not_clear_the_requirement_is_a_loop() {
        let now = DeviceNow {
            boot_id: "B",
            running_kernel: "6.1.0-9-amd64",
            installed_version: Some("1.1"),
            still_requires_reboot: true,
        };
        let c = confirm_after_reboot("pw-demo", "1.1", Some("A"), now).expect("changed");
        assert_eq!(c.state, PackageState::PendingReboot);
        assert_eq!(c.class, Some(FailureClass::RebootLoop));
        assert!(c.evidence[0].contains("still requires a reboot for pw-demo"));
        // Same boot: nothing to say yet.
        let same = DeviceNow {
            boot_id: "A",
            ..now
        };
        assert_eq!(
            confirm_after_reboot("pw-demo", "1.1", Some("A"), same),
            None
        );
    }

    #[test]
    fn reboot_confirmation_cases() {
        use PackageState::*;
        // (package, intended, boot at install, boot now, running kernel, installed now, expected)
        check(
            "pw-demo",
            "1.1",
            Some("A"),
            "A",
            "6.1.0-9-amd64",
            Some("1.1"),
            None,
        );
        check(
            "pw-demo",
            "1.1",
            None,
            "B",
            "6.1.0-9-amd64",
            Some("1.1"),
            None,
        );
        check(
            "pw-demo",
            "1.1",
            Some("A"),
            "B",
            "6.1.0-9-amd64",
            Some("1.1"),
            Some(Verified),
        );
        check(
            "pw-demo",
            "1.1",
            Some("A"),
            "B",
            "6.1.0-9-amd64",
            Some("1.0"),
            Some(Failed),
        );
        check(
            "pw-demo",
            "1.1",
            Some("A"),
            "B",
            "6.1.0-9-amd64",
            None,
            Some(Failed),
        );
        check(
            "linux-image-6.1.0-13-amd64",
            "6.1.55-1",
            Some("A"),
            "B",
            "6.1.0-13-amd64",
            Some("6.1.55-1"),
            Some(Verified),
        );
        check(
            "linux-image-6.1.0-13-amd64",
            "6.1.55-1",
            Some("A"),
            "B",
            "6.1.0-9-amd64",
            Some("6.1.55-1"),
            Some(PendingReboot),
        );
        // The meta package names no release: a reboot is enough.
        check(
            "linux-image-amd64",
            "6.1.55-1",
            Some("A"),
            "B",
            "6.1.0-9-amd64",
            Some("6.1.55-1"),
            Some(Verified),
        );
        check(
            "kernel-core",
            "5.14.0-427.el9",
            Some("A"),
            "B",
            "5.14.0-427.el9.x86_64",
            Some("5.14.0-427.el9"),
            Some(Verified),
        );
        check(
            "kernel-core",
            "5.14.0-427.el9",
            Some("A"),
            "B",
            "5.14.0-362.el9.x86_64",
            Some("5.14.0-427.el9"),
            Some(PendingReboot),
        );
    }
}
