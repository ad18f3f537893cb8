//! The agent's loops: check-in (heartbeat plus inventory when it changed), long-poll for work,
//! run jobs one at a time, and deliver results at least once through the outbox.

use crate::client::{Client, ClientError};
use crate::inventory::{current_boot_id, HostPaths};
use crate::jobs::{execute, WorkVerifier};
use crate::pkg::PackageManager;
use crate::state::{State, StateDir, StateError};
use patchwarden_wire::agent::{CheckinRequest, CheckinResponse, JobResult, WorkEnvelope};
use patchwarden_wire::{WorkId, PROTOCOL_VERSION};
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

/// What became of one offered work item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    /// Run now; its result is in the outbox and was offered to the server.
    Ran,
    /// Run before: its stored result was sent again instead.
    Resent,
    /// The server took the offer back when asked to confirm the start (409): not run.
    Withdrawn,
    /// Not run, and left on offer: the agent cannot take it now (a work id it cannot use,
    /// a start the server did not confirm). It comes back in a later offer, after a pause.
    Declined,
}

/// How long to wait before asking for work again after a round whose items were `handled`:
/// none after a round that ran something (or had nothing to do: the long poll is the
/// pause), else the next delay of `backoff`, so that an item the agent cannot take never
/// makes it ask again at once.
pub fn pause_after_round(handled: &[Handled], backoff: &mut Backoff) -> Option<Duration> {
    if handled.is_empty() || handled.contains(&Handled::Ran) {
        backoff.reset();
        return None;
    }
    Some(backoff.next_delay())
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
        for (work_id, result) in self.dir.outbox_pending()? {
            self.upload(&work_id, &result)?;
        }
        self.dir.prune_done();
        Ok(())
    }

    fn upload(&self, work_id: &WorkId, result: &JobResult) -> Result<(), AgentError> {
        let mut delay = Duration::from_secs(1);
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.client.job_result(work_id, result) {
                Ok(()) => {
                    self.dir.outbox_acked(work_id)?;
                    info!(job = %work_id, "result delivered");
                    return Ok(());
                }
                Err(ClientError::Rejected {
                    status,
                    error,
                    message,
                }) => {
                    // The server will never take it (unknown job, not this device's): stop
                    // retrying, keep it in done/ for the record.
                    warn!(job = %work_id, status, error = %error, message = %message, "result refused; dropping it from the outbox");
                    self.dir.outbox_acked(work_id)?;
                    return Ok(());
                }
                Err(e) if e.is_retryable() && attempt < UPLOAD_ATTEMPTS => {
                    warn!(job = %work_id, attempt, error = %e, "result upload failed; retrying");
                    thread::sleep(delay);
                    delay = (delay * 2).min(UPLOAD_MAX_DELAY);
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Handles one work item: re-sends a known result, or, once the server confirmed the
    /// start, runs the job and stores its result before uploading it. Only a rejected
    /// credential or a state directory that cannot be written is an error.
    pub fn handle(&self, envelope: &WorkEnvelope) -> Result<Handled, AgentError> {
        let work_id = match WorkId::parse(&envelope.job_id) {
            Ok(id) => id,
            Err(e) => {
                error!(error = %e, "cannot take this work item; asking again after a pause");
                return Ok(Handled::Declined);
            }
        };
        if let Some(result) = self.dir.known_result(&work_id)? {
            info!(job = %work_id, "job offered again; re-sending its stored result instead of running it twice");
            self.upload(&work_id, &result)?;
            return Ok(Handled::Resent);
        }
        if let Some(declined) = self.confirm_start(&work_id)? {
            return Ok(declined);
        }
        info!(job = %work_id, attempt = work_id.attempt(), "running job");
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
        info!(job = %work_id, exit_code = ?result.exit_code, error = ?result.error,
            states = ?result.packages.iter().map(|p| (p.package.as_str(), p.state.as_str())).collect::<Vec<_>>(), "job finished");
        self.dir.outbox_put(&work_id, &result)?;
        let delivered = self.upload(&work_id, &result);
        // The result is in the outbox (and was offered to the server): a reboot loses nothing.
        self.reboot_if_due(work_id.as_str(), &envelope.payload, &result)?;
        delivered.map(|()| Handled::Ran)
    }

    /// Asks the server to confirm the start (`POST jobs/{id}/start`). `None`: confirmed, run
    /// it. Anything else means do not run: the server took the offer back (its window
    /// closed, the deployment was halted: starting now would install outside what the
    /// operator allowed), or the server's answer never came (unreachable, 5xx, another
    /// refusal), and work the server did not confirm is never run.
    fn confirm_start(&self, work_id: &WorkId) -> Result<Option<Handled>, AgentError> {
        match self.client.job_started(work_id) {
            Ok(()) => Ok(None),
            Err(ClientError::Rejected {
                status: 409,
                message,
                ..
            }) => {
                info!(job = %work_id, reason = %message, "the server no longer offers this job; not running it");
                Ok(Some(Handled::Withdrawn))
            }
            Err(e @ ClientError::Unauthorized { .. }) => Err(e.into()),
            Err(e) => {
                warn!(job = %work_id, error = %e, "the server did not confirm the start; not running the job now, it stays on offer");
                Ok(Some(Handled::Declined))
            }
        }
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

    /// Fetches the queued work and handles each item; says what became of each.
    fn work_once(&self, wait_secs: u64) -> Result<Vec<Handled>, AgentError> {
        let work = self.client.work(wait_secs)?;
        work.items.iter().map(|item| self.handle(item)).collect()
    }

    /// `run --once`: deliver, report, work, report again. Work it could not take stays on
    /// offer for the next run.
    pub fn run_once(&self) -> Result<(), AgentError> {
        self.flush_outbox()?;
        self.checkin(false)?;
        let handled = self.work_once(0)?;
        if handled.contains(&Handled::Ran) {
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
        // Separate from the error backoff: the server answers, the agent cannot take an item.
        let mut declined = Backoff::default();
        loop {
            match self.work_once(POLL_WAIT_SECS) {
                Ok(handled) => {
                    backoff.reset();
                    if handled.contains(&Handled::Ran) {
                        // Let the server see the new versions now, not at the next interval.
                        let _ = wake.send(Wake::CheckinNow);
                    }
                    if let Some(d) = pause_after_round(&handled, &mut declined) {
                        info!(
                            items = handled.len(),
                            retry_in_ms = d.as_millis() as u64,
                            "no offered work could be taken; pausing before asking again"
                        );
                        thread::sleep(d);
                    }
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
    use crate::jobs::AcceptUnsigned;
    use crate::pkg::InstallOptions;
    use patchwarden_wire::agent::{Inventory, PackageResult, PackageTarget};
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// How the fake server answers one request: a status, or a connection closed unanswered.
    #[derive(Clone, Copy)]
    enum Reply {
        Status(u16),
        Disconnect,
    }

    /// A real HTTP server on loopback that answers the agent's calls from a table (the first
    /// route whose marker is in the request line) and records every request line.
    struct FakeServer {
        url: String,
        seen: Arc<Mutex<Vec<String>>>,
    }

    impl FakeServer {
        fn start(routes: Vec<(&'static str, Reply)>) -> FakeServer {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            let url = format!("http://{}", listener.local_addr().expect("addr"));
            let seen = Arc::new(Mutex::new(Vec::new()));
            let log = Arc::clone(&seen);
            thread::spawn(move || {
                for conn in listener.incoming() {
                    let Ok(conn) = conn else { return };
                    let line = answer(conn, &routes);
                    lock(&log).push(line);
                }
            });
            FakeServer { url, seen }
        }

        fn seen(&self) -> Vec<String> {
            lock(&self.seen).clone()
        }
    }

    /// Reads one request, answers it per `routes`; returns its request line.
    fn answer(conn: TcpStream, routes: &[(&'static str, Reply)]) -> String {
        let mut reader = BufReader::new(conn.try_clone().expect("clone"));
        let mut head = String::new();
        loop {
            let mut l = String::new();
            if reader.read_line(&mut l).unwrap_or(0) == 0 || l == "\r\n" {
                break;
            }
            head.push_str(&l);
        }
        let length = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse().unwrap_or(0))
            })
            .unwrap_or(0usize);
        let mut body = vec![0; length];
        let _ = reader.read_exact(&mut body);
        let line = head.lines().next().unwrap_or_default().to_owned();
        let reply = routes
            .iter()
            .find(|(marker, _)| line.contains(marker))
            .map(|(_, r)| *r)
            .unwrap_or(Reply::Status(404));
        let mut conn = conn;
        if let Reply::Status(status) = reply {
            let body = match status {
                200 => r#"{"items":[]}"#.to_owned(),
                204 => String::new(),
                _ => format!(r#"{{"error":"e{status}","message":"fake {status}"}}"#),
            };
            let _ = write!(
                conn,
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
        let _ = conn.shutdown(std::net::Shutdown::Both);
        line
    }

    /// Counts installs instead of installing.
    #[derive(Clone, Default)]
    struct CountingPm(Arc<AtomicUsize>);

    impl PackageManager for CountingPm {
        fn name(&self) -> &'static str {
            "test"
        }
        fn collect_inventory(&self) -> Inventory {
            Inventory::default()
        }
        fn install(&self, targets: &[PackageTarget], _: Duration, _: InstallOptions) -> JobResult {
            self.0.fetch_add(1, Ordering::SeqCst);
            let mut r = crate::jobs::error_result(String::new());
            r.error = None;
            r.packages = targets
                .iter()
                .map(|t| PackageResult {
                    package: t.name.clone(),
                    state: patchwarden_core::PackageState::Verified,
                    class: None,
                    from_version: Some("1.0".into()),
                    to_version: t.version.clone(),
                    installed_version: t.version.clone(),
                    evidence: vec![],
                })
                .collect();
            r
        }
    }

    fn agent(server: &FakeServer) -> (Agent, CountingPm, tempfile::TempDir) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = StateDir::open(tmp.path()).expect("state dir");
        dir.save(&State {
            server_url: server.url.clone(),
            device_id: "dev_1".into(),
            device_secret: "secret".into(),
            tenant: "acme".into(),
            checkin_interval_secs: 60,
            last_acked_inventory_hash: None,
            work_signing_key: None,
            rebooted_for_jobs: vec![],
        })
        .expect("save");
        let pm = CountingPm::default();
        let agent = Agent::new(
            dir,
            Box::new(pm.clone()),
            Box::new(AcceptUnsigned),
            Options {
                report_only: false,
                checkin_interval: None,
            },
        )
        .expect("agent");
        (agent, pm, tmp)
    }

    fn install_item(job_id: &str) -> WorkEnvelope {
        WorkEnvelope {
            job_id: job_id.into(),
            payload: r#"{"type":"install","deployment_id":"d1","packages":[{"name":"pw-ok","version":"2.0"}],"timeout_secs":600}"#.into(),
            signature: None,
            key_id: None,
        }
    }

    #[test]
    fn work_is_run_only_once_the_server_confirmed_its_start() {
        // (how the server answers the start, what the agent makes of the item)
        let cases = [
            (Reply::Status(204), Handled::Ran),
            (Reply::Status(409), Handled::Withdrawn),
            (Reply::Status(500), Handled::Declined),
            (Reply::Status(503), Handled::Declined),
            (Reply::Status(404), Handled::Declined),
            (Reply::Status(400), Handled::Declined),
            (Reply::Disconnect, Handled::Declined),
        ];
        for (start, want) in cases {
            let server =
                FakeServer::start(vec![("/start ", start), ("/result ", Reply::Status(204))]);
            let (agent, pm, tmp) = agent(&server);
            let got = agent.handle(&install_item("job_abc")).expect("handled");
            assert_eq!(got, want);
            let ran = want == Handled::Ran;
            assert_eq!(
                pm.0.load(Ordering::SeqCst),
                usize::from(ran),
                "installs ({want:?})"
            );
            let posted = server.seen().iter().any(|l| l.contains("/result "));
            assert_eq!(
                posted,
                ran,
                "a result only for work that ran: {:?}",
                server.seen()
            );
            let done = tmp.path().join("done/job_abc.json").is_file();
            assert_eq!(done, ran);
        }
    }

    #[test]
    fn a_start_refused_for_the_credential_stops_the_agent() {
        let server = FakeServer::start(vec![("/start ", Reply::Status(401))]);
        let (agent, pm, _tmp) = agent(&server);
        let got = agent.handle(&install_item("job_abc"));
        assert!(
            matches!(
                got,
                Err(AgentError::Client(ClientError::Unauthorized { .. }))
            ),
            "{got:?}"
        );
        assert_eq!(pm.0.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_retry_runs_under_its_own_work_id() {
        let server = FakeServer::start(vec![
            ("/start ", Reply::Status(204)),
            ("/result ", Reply::Status(204)),
        ]);
        let (agent, pm, _tmp) = agent(&server);
        assert_eq!(
            agent.handle(&install_item("job_abc")).expect("first"),
            Handled::Ran
        );
        // Offered again under the same id: its stored result is re-sent, nothing re-runs.
        assert_eq!(
            agent.handle(&install_item("job_abc")).expect("again"),
            Handled::Resent
        );
        assert_eq!(
            agent.handle(&install_item("job_abc~2")).expect("retry"),
            Handled::Ran
        );
        assert_eq!(
            agent.handle(&install_item("job_abc~3")).expect("retry"),
            Handled::Ran
        );
        assert_eq!(pm.0.load(Ordering::SeqCst), 3);
        let starts: Vec<String> = server
            .seen()
            .into_iter()
            .filter(|l| l.contains("/start "))
            .collect();
        assert_eq!(starts.len(), 3, "{starts:?}");
        assert!(
            starts[1].contains("/agent/jobs/job_abc~2/start"),
            "{starts:?}"
        );
    }

    #[test]
    fn an_item_with_an_unusable_id_is_declined_without_a_call() {
        let server = FakeServer::start(vec![("/start ", Reply::Status(204))]);
        let (agent, pm, tmp) = agent(&server);
        for bad in [
            "",
            "j1",
            "job_../../etc/passwd",
            "job_a/b",
            "job_abc~1",
            "job_abc~x",
            &format!("job_{}", "a".repeat(200)),
        ] {
            assert_eq!(
                agent.handle(&install_item(bad)).expect("handled"),
                Handled::Declined,
                "{bad:?}"
            );
        }
        assert_eq!(pm.0.load(Ordering::SeqCst), 0);
        assert!(server.seen().is_empty(), "{:?}", server.seen());
        assert_eq!(
            std::fs::read_dir(tmp.path().join("outbox"))
                .expect("outbox")
                .count(),
            0
        );
    }

    #[test]
    fn a_round_that_runs_nothing_pauses_before_the_next_poll() {
        use Handled::*;
        let mut b = Backoff::default();
        // Nothing offered: the long poll itself waited; something ran: ask again at once.
        assert_eq!(pause_after_round(&[], &mut b), None);
        assert_eq!(pause_after_round(&[Ran], &mut b), None);
        assert_eq!(pause_after_round(&[Declined, Ran], &mut b), None);
        // Offers the agent cannot take, the same again and again: a growing pause, bounded.
        let pauses: Vec<Duration> = (0..10)
            .map(|_| pause_after_round(&[Declined], &mut b).expect("a pause"))
            .collect();
        assert!(pauses[0] >= Duration::from_millis(900), "{pauses:?}");
        assert!(pauses[3] >= Duration::from_millis(7200), "{pauses:?}");
        assert!(
            pauses.iter().all(|d| *d <= Duration::from_secs(66)),
            "{pauses:?}"
        );
        for round in [&[Withdrawn][..], &[Resent], &[Declined, Withdrawn]] {
            assert!(pause_after_round(round, &mut b).is_some(), "{round:?}");
        }
        // Progress resets it.
        assert_eq!(pause_after_round(&[Ran], &mut b), None);
        let p = pause_after_round(&[Declined], &mut b).expect("a pause");
        assert!(
            p >= Duration::from_millis(900) && p <= Duration::from_millis(1100),
            "{p:?}"
        );
    }

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
