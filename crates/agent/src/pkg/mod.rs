//! The package-manager layer: what the agent needs from apt (and later dnf), behind one trait.

pub mod apt;

use patchwarden_wire::agent::{Inventory, JobResult, PackageTarget};
use std::time::Duration;

pub trait PackageManager: Send + Sync {
    /// `apt` or `dnf`, as the inventory reports it.
    fn name(&self) -> &'static str;

    /// The whole inventory. Never fails: what could not be read is listed in
    /// `collection_errors`.
    fn collect_inventory(&self) -> Inventory;

    /// Upgrades the installed `targets` within `budget`, and reports each one's end state as the
    /// package database shows it afterwards.
    fn install(&self, targets: &[PackageTarget], budget: Duration) -> JobResult;
}
