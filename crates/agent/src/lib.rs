//! The Patchwarden endpoint agent: enrolls, reports inventory, runs typed operations (package
//! installs) and delivers their results at least once. Blocking and small on purpose: no async
//! runtime, no database, no server code.
//!
//! Map: [`cli`] arguments, [`enroll`], [`daemon`] (loops, check-in, outbox delivery), [`jobs`]
//! (work item to result), [`pkg`] (package managers: apt and dnf backends, their install and
//! pre-flight steps, and what they share in `pkg::common`), [`inventory`] (host facts,
//! hash), [`exec`] (commands under a time budget), [`client`] (HTTP), [`state`] (files).

pub mod cli;
pub mod client;
pub mod daemon;
pub mod enroll;
pub mod exec;
pub mod inventory;
pub mod jobs;
pub mod pkg;
pub mod reboot;
pub mod state;
pub mod timefmt;

use pkg::apt::Apt;
use pkg::dnf::Dnf;
use pkg::PackageManager;

/// The package manager of this host: dnf on the RHEL family (os-release ID or ID_LIKE) when
/// `dnf` is installed, else apt (Debian, Ubuntu, and the fallback).
pub fn system_package_manager(settings: &pkg::Settings) -> Box<dyn PackageManager> {
    let paths = inventory::HostPaths::default();
    let os = std::fs::read_to_string(paths.at("/etc/os-release"))
        .map(|t| patchwarden_core::apt::parse_os_release(&t))
        .unwrap_or_default();
    let has = |tool: &str| {
        ["/usr/bin", "/usr/sbin", "/bin", "/sbin"]
            .iter()
            .any(|d| paths.at(&format!("{d}/{tool}")).is_file())
    };
    if has("dnf") && patchwarden_core::rpm::is_rhel_family(&os.id, &os.id_like) {
        return Box::new(Dnf::new(exec::SystemRunner, paths).with_lock_wait(settings.lock_wait));
    }
    Box::new(Apt::new(exec::SystemRunner, paths).with_lock_wait(settings.lock_wait))
}
