//! When a `pending_reboot` package becomes `verified`: only after the device reports another
//! boot id, with the package still at the installed version and, for a kernel, that kernel
//! running. Pure: the caller supplies what the device last reported.

use crate::{FailureClass, PackageState};

/// What the device reports now, after (perhaps) a reboot.
#[derive(Debug, Clone, Copy)]
pub struct DeviceNow<'a> {
    pub boot_id: &'a str,
    /// `uname -r`.
    pub running_kernel: &'a str,
    /// The package's installed version now, from the package database (None: not installed).
    pub installed_version: Option<&'a str>,
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

#[cfg(test)]
mod tests {
    use super::*;

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
        };
        let got = confirm_after_reboot(package, intended, at_install, now).map(|c| c.state);
        assert_eq!(
            got, want,
            "{package} {intended} at {at_install:?} now {boot} {kernel} {installed:?}"
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
