//! The Patchwarden endpoint agent: enrolls, reports inventory, runs typed operations (package
//! installs) and delivers their results at least once. Blocking and small on purpose: no async
//! runtime, no database, no server code.
//!
//! Map: [`cli`] arguments, [`enroll`], [`daemon`] (loops, check-in, outbox delivery), [`jobs`]
//! (work item to result), [`pkg`] (package managers, apt first), [`inventory`] (host facts,
//! hash), [`exec`] (commands under a time budget), [`client`] (HTTP), [`state`] (files).

pub mod cli;
pub mod client;
pub mod daemon;
pub mod enroll;
pub mod exec;
pub mod inventory;
pub mod jobs;
pub mod pkg;
pub mod state;
pub mod timefmt;

use pkg::apt::Apt;
use pkg::PackageManager;

/// The package manager of this host.
pub fn system_package_manager(settings: &pkg::Settings) -> Box<dyn PackageManager> {
    Box::new(
        Apt::new(exec::SystemRunner, inventory::HostPaths::default())
            .with_lock_wait(settings.lock_wait),
    )
}
