//! Reboots Patchwarden asked a device for: what each job was sent (the deployment's reboot
//! policy after the loop guard), whether the device was expected to reboot, and whether it
//! came back (in time, still requiring a reboot, or not at all). Part of the [`crate::Store`]
//! interface (a supertrait).

use crate::Result;
use async_trait::async_trait;
use patchwarden_core::{RebootMode, RebootStatus};

/// One job's reboot (one row per job).
#[derive(Debug, Clone, PartialEq)]
pub struct RebootRecord {
    pub job_id: String,
    pub tenant_id: String,
    pub deployment_id: String,
    pub device_id: String,
    /// The mode sent to the device.
    pub mode: RebootMode,
    /// Why the loop guard sent `never` instead of the deployment's mode.
    pub withheld: Option<String>,
    /// `offered` until the result; then `none`, or `rebooting` until the device is `back`
    /// (or `late` past `deadline`, or a `loop`: still requiring a reboot for `packages`).
    pub status: RebootStatus,
    /// The packages that required the reboot (`rebooting`), or still require one (`loop`).
    pub packages: Vec<String>,
    pub boot_id_before: Option<String>,
    /// When the result that makes the agent reboot arrived.
    pub requested_at: Option<i64>,
    /// Come-back budget: the device must report a new boot id by then.
    pub deadline: Option<i64>,
    pub came_back_at: Option<i64>,
    pub boot_id_after: Option<String>,
    pub updated_at: i64,
}

impl RebootRecord {
    /// A reboot the device was asked for (whatever came of it).
    pub fn was_requested(&self) -> bool {
        self.status.was_requested()
    }
}

#[async_trait]
pub trait RebootStore: Send + Sync {
    /// Records what a job is offered with. Inserts, or updates the mode, reason and boot id of
    /// a row still `offered` (a job offered again); a row past `offered` is left alone.
    async fn put_reboot_offer(&self, record: &RebootRecord) -> Result<()>;
    async fn reboot_of_job(&self, job_id: &str) -> Result<Option<RebootRecord>>;
    /// Writes a row's mutable fields (status, packages, times, boot ids).
    async fn update_reboot(&self, record: &RebootRecord) -> Result<()>;
    /// A device's rows, newest `requested_at` (then `updated_at`) first.
    async fn reboots_of_device(&self, device_id: &str) -> Result<Vec<RebootRecord>>;
    /// Rows `rebooting` whose deadline has passed by `now`.
    async fn overdue_reboots(&self, now: i64) -> Result<Vec<RebootRecord>>;
    /// Forgets the device's reboot loops (`loop` becomes `loop_reset`; the reboots still count
    /// against the daily limit). Returns how many.
    async fn reset_reboot_loops(&self, device_id: &str, now: i64) -> Result<u64>;
}
