//! The package-manager layer: what the agent needs from apt and dnf, behind one trait.
//! Each backend's install and pre-flight check read as named steps (`apt/install.rs`,
//! `apt/preflight.rs`, `dnf/…`); what the backends share lives once in `common`.

pub mod apt;
mod common;
pub mod dnf;

pub use common::BackendError;

use patchwarden_wire::agent::{Inventory, JobResult, PackageTarget};
use std::time::Duration;

/// Default of `patchwarden-agent run --lock-wait`.
pub const DEFAULT_LOCK_WAIT: Duration = Duration::from_secs(120);

/// How the agent drives its package manager, from the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// How long to wait for another package-manager process to release its lock before the
    /// job's packages fail as `lock_held`.
    pub lock_wait: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            lock_wait: DEFAULT_LOCK_WAIT,
        }
    }
}

/// How one install (or its pre-flight prediction) runs, from the operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstallOptions {
    /// Respect package holds (`apt-mark hold`, dnf versionlock and excludes): a held target is
    /// `skipped`/`held_back`. `false` upgrades it anyway and keeps the hold afterwards.
    pub respect_holds: bool,
}

impl Default for InstallOptions {
    fn default() -> Self {
        InstallOptions {
            respect_holds: true,
        }
    }
}

pub trait PackageManager: Send + Sync {
    /// `apt` or `dnf`, as the inventory reports it.
    fn name(&self) -> &'static str;

    /// The whole inventory. Never fails: what could not be read is listed in
    /// `collection_errors`.
    fn collect_inventory(&self) -> Inventory;

    /// Upgrades the installed `targets` within `budget`, and reports each one's end state as the
    /// package database shows it afterwards.
    fn install(
        &self,
        targets: &[PackageTarget],
        budget: Duration,
        options: InstallOptions,
    ) -> JobResult;

    /// Predicts what `install` of `targets` would do, changing nothing: every package's state
    /// is a prediction (`verified`: would succeed). Backends without a pre-flight check
    /// report every target `skipped`.
    fn preflight(&self, targets: &[PackageTarget], options: InstallOptions) -> JobResult {
        let _ = options;
        let mut r = crate::jobs::error_result(String::new());
        r.error = None;
        r.packages = targets
            .iter()
            .map(|t| patchwarden_wire::agent::PackageResult {
                package: t.name.clone(),
                state: patchwarden_core::PackageState::Skipped,
                class: None,
                from_version: None,
                to_version: t.version.clone(),
                installed_version: None,
                evidence: vec![format!(
                    "prediction: the {} backend has no pre-flight check",
                    self.name()
                )],
            })
            .collect();
        r
    }
}
