//! Reboots Patchwarden asked a device for: what each job was sent (the deployment's reboot
//! policy after the loop guard), whether the device was expected to reboot, and whether it
//! came back (in time, still requiring a reboot, or not at all). Part of the [`crate::Store`]
//! interface (a supertrait).

use crate::Result;
use async_trait::async_trait;

/// `status` of a [`RebootRecord`]: the job was offered with this mode, no result yet.
pub const REBOOT_OFFERED: &str = "offered";
/// The result came back and no reboot follows it.
pub const REBOOT_NONE: &str = "none";
/// The agent reboots after this result; the device has until `deadline` to come back.
pub const REBOOT_REBOOTING: &str = "rebooting";
/// It came back (a new boot id) and no longer requires a reboot for the job's packages.
pub const REBOOT_BACK: &str = "back";
/// It did not come back by `deadline` (it may still, later: then `back` or `loop`).
pub const REBOOT_LATE: &str = "late";
/// It came back still requiring a reboot for `packages`: never rebooted again for them.
pub const REBOOT_LOOP: &str = "loop";
/// A loop whose flag an operator reset (`device reset-failures`): the guard forgets it.
pub const REBOOT_LOOP_RESET: &str = "loop_reset";

/// One job's reboot (one row per job).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RebootRecord {
    pub job_id: String,
    pub tenant_id: String,
    pub deployment_id: String,
    pub device_id: String,
    /// The mode sent to the device: `never`, `when_required` or `always`.
    pub mode: String,
    /// Why the loop guard sent `never` instead of the deployment's mode.
    pub withheld: Option<String>,
    pub status: String,
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
        matches!(
            self.status.as_str(),
            REBOOT_REBOOTING | REBOOT_BACK | REBOOT_LATE | REBOOT_LOOP | REBOOT_LOOP_RESET
        )
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
