//! The lab: real, sandboxed Debian hosts for integration tests, benchmarks and demos.
//! A cached base root, overlay hosts run in private namespaces, tiny .deb packages and loopback apt repositories.
//!
//! Everything here needs root and a few Debian tools; call [`lab_unavailable`] (or
//! [`require_lab!`]) first so a test is skipped with a printed reason instead of failing.
//! See /work/shared/LAB.md for the recipes this automates.
//!
//! ```no_run
//! use patchwarden_lab::{require_lab, AptRepo, BaseRoot, DebPackage, Host};
//!
//! fn lab_upgrade() -> anyhow::Result<()> {
//!     require_lab!(Ok(()));
//!     let base = BaseRoot::get(&[])?; // cached under /var/cache/patchwarden-lab
//!     let repo = AptRepo::new()?; // served on 127.0.0.1:<random port>
//!     repo.add(&DebPackage::new("pw-demo", "1.1"))?;
//!     repo.publish()?;
//!     let host = Host::create(&base, "web-1")?;
//!     host.set_apt_sources(&[repo.source_line()])?;
//!     host.exec_ok(&["apt-get", "update"])?;
//!     host.exec_ok(&["apt-get", "install", "-y", "pw-demo"])?;
//!     let pkg = host.dpkg_version("pw-demo")?;
//!     assert_eq!(pkg.map(|p| (p.version, p.status)), Some(("1.1".into(), "ii".into())));
//!     Ok(())
//! }
//! ```
//!
//! Caveats: hosts share the machine's network namespace (they reach loopback, and nothing
//! else since the base has no apt sources); /dev is the machine's, bind-mounted (so
//! /dev/pts exists and apt runs dpkg on a pty: dpkg's messages come on apt's stdout);
//! the kernel boot id is the machine's, hence [`BOOT_ID_FILE`].

mod base;
mod deb;
pub mod fleet;
mod host;
pub mod netns;
pub mod proxy;
mod repo;
pub mod rpm;
mod serve;
mod util;

pub use base::BaseRoot;
pub use deb::DebPackage;
pub use host::{Host, HostProcess, InstalledPackage, BOOT_ID_ENV, BOOT_ID_FILE};
pub use repo::AptRepo;
pub use rpm::{RpmPackage, RpmRepo};
pub use util::{mounts_under, processes_under};

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Tools the lab shells out to; all must be on PATH.
const REQUIRED_TOOLS: &[&str] = &[
    "mmdebstrap",
    "unshare",
    "dpkg-deb",
    "apt-ftparchive",
    "mount",
    "umount",
    "chroot",
    "tar",
];

/// `None` when the lab can run here, otherwise the reason it cannot (not root, a missing
/// tool, overlay mounts refused). The probe runs once per process.
pub fn lab_unavailable() -> Option<String> {
    static RESULT: OnceLock<Option<String>> = OnceLock::new();
    RESULT.get_or_init(probe).clone()
}

fn probe() -> Option<String> {
    if !rustix::process::geteuid().is_root() {
        return Some("not root".to_string());
    }
    let missing: Vec<&str> = REQUIRED_TOOLS
        .iter()
        .copied()
        .filter(|t| util::which(t).is_none())
        .collect();
    if !missing.is_empty() {
        return Some(format!("missing tools on PATH: {}", missing.join(", ")));
    }
    if let Err(e) = util::probe_overlay() {
        return Some(format!("overlay mount not possible: {e:#}"));
    }
    None
}

/// Skip the current test, printing why, when the lab cannot run here; under CI (`CI=true`)
/// fail it instead, so that a green CI run means every lab test ran.
///
/// `require_lab!()` in a test returning `()`, `require_lab!(Ok(()))` in one returning a
/// `Result`. The reason is written straight to stderr, past libtest's output capture, so a
/// skipped test is visible in `cargo test` output even though it passes.
#[macro_export]
macro_rules! require_lab {
    () => {
        $crate::require_lab!(())
    };
    ($ret:expr) => {
        if let Some(reason) = $crate::lab_unavailable() {
            $crate::print_skip(&reason);
            return $ret;
        }
    };
}

/// Print `SKIP: lab unavailable: REASON` to the real stderr (not captured by libtest).
/// Under CI (`CI=true`) a lab test may not skip: this panics, failing the test.
pub fn print_skip(reason: &str) {
    use std::io::Write;
    if in_ci() {
        panic!("lab unavailable under CI=true (a CI run must run every lab test): {reason}");
    }
    let _ = writeln!(std::io::stderr(), "SKIP: lab unavailable: {reason}");
}

/// Whether this runs under CI (`CI=true`, as `.ci/run` sets it).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// Path of a binary built from this workspace (e.g. `patchwarden-agent`).
///
/// Honours `PATCHWARDEN_BIN_DIR`; otherwise looks in the target directory of the running
/// test (`target/<profile>/deps/..`), preferring the same profile, then debug and release.
pub fn workspace_bin(name: &str) -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("PATCHWARDEN_BIN_DIR") {
        let p = Path::new(&dir).join(name);
        if p.is_file() {
            return Ok(p);
        }
        bail!(
            "{} not found (PATCHWARDEN_BIN_DIR={}); build it first with `cargo build --workspace`",
            name,
            Path::new(&dir).display()
        );
    }
    let exe = std::env::current_exe().context("current_exe")?;
    let mut candidates = Vec::new();
    let mut dir = exe.parent();
    // target/debug/deps/test-bin -> target/debug ; target/debug/demo -> target/debug
    if let Some(d) = dir {
        if d.file_name().is_some_and(|n| n == "deps") {
            dir = d.parent();
        }
    }
    if let Some(profile_dir) = dir {
        candidates.push(profile_dir.join(name));
        if let Some(target) = profile_dir.parent() {
            for profile in ["debug", "release"] {
                candidates.push(target.join(profile).join(name));
            }
        }
    }
    for c in &candidates {
        if c.is_file() {
            return Ok(c.clone());
        }
    }
    bail!(
        "binary {name} not found (looked in {}); build it first with `cargo build --workspace`",
        candidates
            .iter()
            .map(|c| c.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )
}
