//! The agent's loops: check-in (heartbeat plus inventory when it changed), long-poll for work,
//! run jobs one at a time, and deliver results at least once through the outbox.

use crate::client::{Client, ClientError};
use crate::inventory::{current_boot_id, HostPaths};
use crate::jobs::{execute, WorkVerifier};
use crate::pkg::PackageManager;
use crate::state::{checked_job_id, State, StateDir, StateError};
use patchwarden_wire::agent::{CheckinRequest, CheckinResponse, JobResult, WorkEnvelope};
use patchwarden_wire::PROTOCOL_VERSION;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::Duration;
use tracing::{debug, error, info, warn};

pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");
/// Long-poll hold time asked of the server.
const POLL_WAIT_SECS: u64 = 30;
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Mean delay of the check-in that follows a job.
const POST_JOB_CHECKIN_DELAY: Duration = Duration::from_secs(8);
/// Result upload retries within one flush: 1 s, 2 s, 4 s ... capped at 30 s.
const UPLOAD_ATTEMPTS: u32 = 6;
const UPLOAD_MAX_DELAY: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("this agent is not enrolled; run `patchwarden-agent enroll --server URL --token TOKEN` first")]
    NotEnrolled,
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Client(#[from] ClientError),
}

pub struct Options {
    pub report_only: bool,
    /// Overrides the server's check-in interval.
    pub checkin_interval: Option<Duration>,
}

pub struct Agent {
    dir: StateDir,
    state: Mutex<State>,
    client: Client,
    pm: Box<dyn PackageManager>,
    verifier: Box<dyn WorkVerifier>,
    options: Options,
    /// Held while a job runs or the inventory is collected: one package-manager user at a time.
    pm_lock: Mutex<()>,
}

/// What a cycle asks of the check-in loop.
enum Wake {
    CheckinNow,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not wedge the agent: the data is still usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Agent {
    pub fn new(
        dir: StateDir,
        pm: Box<dyn PackageManager>,
        verifier: Box<dyn WorkVerifier>,
        options: Options,
    ) -> Result<Self, AgentError> {
        let state = dir.load()?.ok_or(AgentError::NotEnrolled)?;
        let client = Client::new(&state.server_url, Some(state.device_secret.clone()));
        info!(device = %state.device_id, server = %state.server_url, report_only = options.report_only, "agent starting");
        Ok(Agent {
            dir,
            state: Mutex::new(state),
            client,
            pm,
            verifier,
            options,
            pm_lock: Mutex::new(()),
        })
    }

    fn interval(&self) -> Duration {
        self.options
            .checkin_interval
            .unwrap_or_else(|| Duration::from_secs(lock(&self.state).checkin_interval_secs.max(5)))
    }

    /// One check-in. Sends the inventory when it differs from the last acknowledged one (or when
    /// `force_inventory`), and again at once if the server asks for it.
    pub fn checkin(&self, force_inventory: bool) -> Result<CheckinResponse, AgentError> {
        let inventory = {
            let _pm = lock(&self.pm_lock);
            self.pm.collect_inventory()
        };
        let hash = crate::inventory::inventory_hash(&inventory);
        let mut send = force_inventory
            || lock(&self.state).last_acked_inventory_hash.as_deref() != Some(hash.as_str());
        for _ in 0..2 {
            let req = CheckinRequest {
                agent_version: AGENT_VERSION.to_owned(),
                protocol_version: PROTOCOL_VERSION,
                inventory_hash: hash.clone(),
                inventory: send.then(|| inventory.clone()),
            };
            let resp = self.client.checkin(&req)?;
            {
                let mut st = lock(&self.state);
                let mut changed = false;
                if send && st.last_acked_inventory_hash.as_deref() != Some(hash.as_str()) {
                    st.last_acked_inventory_hash = Some(hash.clone());
                    changed = true;
                }
                if resp.checkin_interval_secs > 0
                    && resp.checkin_interval_secs != st.checkin_interval_secs
                {
                    st.checkin_interval_secs = resp.checkin_interval_secs;
                    changed = true;
                }
                if resp.inventory_wanted && send {
                    // It had the inventory and still wants it: forget the ack, send next time.
                    st.last_acked_inventory_hash = None;
                    changed = true;
                }
                if changed {
                    self.dir.save(&st)?;
                }
            }
            debug!(
                sent_inventory = send,
                work_pending = resp.work_pending,
                "checked in"
            );
            if resp.inventory_wanted && !send {
                send = true;
                continue;
            }
            return Ok(resp);
        }
        Err(AgentError::Client(ClientError::BadResponse(
            "server keeps asking for the inventory".into(),
        )))
    }

    /// Uploads every stored result. Connection errors are retried with bounded backoff; the
    /// results stay in the outbox when the server stays away.
    pub fn flush_outbox(&self) -> Result<(), AgentError> {
        for (job_id, result) in self.dir.outbox_pending()? {
            self.upload(&job_id, &result)?;
        }
        self.dir.prune_done();
        Ok(())
    }

    fn upload(&self, job_id: &str, result: &JobResult) -> Result<(), AgentError> {
        let mut delay = Duration::from_secs(1);
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.client.job_result(job_id, result) {
                Ok(()) => {
                    self.dir.outbox_acked(job_id)?;
                    info!(job = %job_id, "result delivered");
                    return Ok(());
                }
                Err(ClientError::Rejected {
                    status,
                    error,
                    message,
                }) => {
                    // The server will never take it (unknown job, not this device's): stop
                    // retrying, keep it in done/ for the record.
                    warn!(job = %job_id, status, error = %error, message = %message, "result refused; dropping it from the outbox");
                    self.dir.outbox_acked(job_id)?;
                    return Ok(());
                }
                Err(e) if e.is_retryable() && attempt < UPLOAD_ATTEMPTS => {
                    warn!(job = %job_id, attempt, error = %e, "result upload failed; retrying");
                    thread::sleep(delay);
                    delay = (delay * 2).min(UPLOAD_MAX_DELAY);
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Handles one work item: re-sends a known result, or runs the job and stores its result
    /// before uploading it.
    pub fn handle(&self, envelope: &WorkEnvelope) -> Result<(), AgentError> {
        let job_id = envelope.job_id.as_str();
        if let Err(e) = checked_job_id(job_id) {
            error!(error = %e, "ignoring work item");
            return Ok(());
        }
        if let Some(result) = self.dir.known_result(job_id)? {
            info!(job = %job_id, "job offered again; re-sending its stored result instead of running it twice");
            return self.upload(job_id, &result);
        }
        match self.client.job_started(job_id) {
            Ok(()) => {}
            // The server took the offer back (its window closed, the deployment was halted):
            // starting now would install outside what the operator allowed.
            Err(ClientError::Rejected {
                status: 409,
                message,
                ..
            }) => {
                info!(job = %job_id, reason = %message, "the server no longer offers this job; not running it");
                return Ok(());
            }
            Err(e) => {
                warn!(job = %job_id, error = %e, "could not report the job as started; running it anyway");
            }
        }
        info!(job = %job_id, "running job");
        let mut result = {
            let _pm = lock(&self.pm_lock);
            execute(
                envelope,
                self.verifier.as_ref(),
                self.pm.as_ref(),
                self.options.report_only,
            )
        };
        // The boot the job ended in: the server confirms a `pending_reboot` package once a
        // later check-in reports another one.
        if result.boot_id.is_none() {
            result.boot_id = current_boot_id(&HostPaths::default());
        }
        info!(job = %job_id, exit_code = ?result.exit_code, error = ?result.error,
            states = ?result.packages.iter().map(|p| (p.package.as_str(), p.state.as_str())).collect::<Vec<_>>(), "job finished");
        self.dir.outbox_put(job_id, &result)?;
        let delivered = self.upload(job_id, &result);
        // The result is in the outbox (and was offered to the server): a reboot loses nothing.
        self.reboot_if_due(job_id, &envelope.payload, &result)?;
        delivered
    }

    /// Reboots the device when the job's reboot policy asks for it, once per job: the job is
    /// recorded in the state file before the reboot command runs.
    fn reboot_if_due(
        &self,
        job_id: &str,
        payload: &str,
        result: &JobResult,
    ) -> Result<(), AgentError> {
        if self.options.report_only {
            return Ok(());
        }
        let Some(mode) =
            crate::reboot::reboot_due(payload, result, time::OffsetDateTime::now_utc())
        else {
            return Ok(());
        };
        {
            let mut st = lock(&self.state);
            if !crate::reboot::claim(&mut st, job_id) {
                warn!(job = %job_id, "already rebooted for this job; not rebooting again");
                return Ok(());
            }
            self.dir.save(&st)?;
        }
        let argv = crate::reboot::reboot_command();
        warn!(job = %job_id, mode = mode.as_str(), command = %argv.join(" "), "rebooting the device after the install");
        match crate::reboot::run_reboot_command(&argv) {
            Ok(()) => info!(job = %job_id, "reboot command returned"),
            Err(e) => {
                error!(job = %job_id, error = %e, "the reboot command failed; not retried for this job")
            }
        }
        Ok(())
    }

    /// Fetches and runs the queued work; returns how many items there were.
    fn work_once(&self, wait_secs: u64) -> Result<usize, AgentError> {
        let work = self.client.work(wait_secs)?;
        for item in &work.items {
            self.handle(item)?;
        }
        Ok(work.items.len())
    }

    /// `run --once`: deliver, report, work, report again.
    pub fn run_once(&self) -> Result<(), AgentError> {
        self.flush_outbox()?;
        self.checkin(false)?;
        let n = self.work_once(0)?;
        if n > 0 {
            self.checkin(false)?;
        }
        Ok(())
    }

    /// The daemon: never returns except when the credential is rejected.
    pub fn run_forever(self: Arc<Self>) -> Result<(), AgentError> {
        let (wake_tx, wake_rx) = mpsc::channel();
        let poller = Arc::clone(&self);
        let poll_thread = thread::Builder::new()
            .name("work-poll".into())
            .spawn(move || poller.poll_loop(wake_tx))
            .map_err(|e| {
                AgentError::Client(ClientError::BadResponse(format!(
                    "cannot start the work thread: {e}"
                )))
            })?;
        self.checkin_loop(wake_rx)?;
        // The work loop stopped: it only does so when the credential is rejected.
        match poll_thread.join() {
            Ok(r) => r,
            Err(_) => Err(AgentError::Client(ClientError::BadResponse(
                "the work thread panicked".into(),
            ))),
        }
    }

    /// Returns `Ok` when the work loop has stopped, `Err` when the credential is rejected here.
    fn checkin_loop(&self, wake: Receiver<Wake>) -> Result<(), AgentError> {
        let mut backoff = Backoff::default();
        loop {
            let outcome = self.flush_outbox().and_then(|()| self.checkin(false));
            let pause = match outcome {
                Ok(_) => {
                    backoff.reset();
                    jitter(self.interval())
                }
                Err(AgentError::Client(e @ ClientError::Unauthorized { .. })) => {
                    error!(error = %e, "the server rejected this device's credential; stopping");
                    return Err(e.into());
                }
                Err(e) => {
                    let d = backoff.next_delay();
                    warn!(error = %e, retry_in_secs = d.as_secs(), "check-in failed");
                    d
                }
            };
            match wake.recv_timeout(pause) {
                Ok(Wake::CheckinNow) => {
                    // The result already told the server what was installed; the fresh
                    // inventory can wait a few seconds, so that a fleet finishing a deployment
                    // does not simulate upgrades while its slower members still install.
                    thread::sleep(POST_JOB_CHECKIN_DELAY.mul_f64(0.5 + fastrand::f64()));
                    // Collapse a burst of wake-ups into one check-in.
                    while wake.try_recv().is_ok() {}
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Ok(()),
            }
        }
    }

    fn poll_loop(&self, wake: Sender<Wake>) -> Result<(), AgentError> {
        let mut backoff = Backoff::default();
        loop {
            match self.work_once(POLL_WAIT_SECS) {
                Ok(0) => backoff.reset(),
                Ok(_) => {
                    backoff.reset();
                    // Let the server see the new versions now, not at the next interval.
                    let _ = wake.send(Wake::CheckinNow);
                }
                Err(AgentError::Client(e @ ClientError::Unauthorized { .. })) => {
                    error!(error = %e, "the server rejected this device's credential; work loop stopping");
                    return Err(e.into());
                }
                Err(e) => {
                    let d = backoff.next_delay();
                    warn!(error = %e, retry_in_secs = d.as_secs(), "fetching work failed");
                    thread::sleep(d);
                }
            }
        }
    }
}

/// ±10 % so that a fleet started together does not check in together.
pub fn jitter(d: Duration) -> Duration {
    let factor = 0.9 + fastrand::f64() * 0.2;
    d.mul_f64(factor)
}

/// Bounded exponential backoff with jitter: 1 s, 2 s, 4 s ... up to 60 s.
#[derive(Debug, Default)]
pub struct Backoff {
    failures: u32,
}

impl Backoff {
    pub fn next_delay(&mut self) -> Duration {
        let base = Duration::from_secs(1u64 << self.failures.min(6)).min(MAX_BACKOFF);
        self.failures = self.failures.saturating_add(1);
        jitter(base)
    }

    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_bounded() {
        let mut b = Backoff::default();
        let delays: Vec<Duration> = (0..10).map(|_| b.next_delay()).collect();
        assert!(delays[0] <= Duration::from_millis(1100));
        assert!(delays[3] >= Duration::from_millis(7200));
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(66)));
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(1100));
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        for _ in 0..1000 {
            let d = jitter(Duration::from_secs(60));
            assert!(
                d >= Duration::from_secs(54) && d <= Duration::from_secs(66),
                "{d:?}"
            );
        }
    }
}
